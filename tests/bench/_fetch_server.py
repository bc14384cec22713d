"""The local HTTP server for ``bench_fetch``, always in another process.

- :func:`serve` starts nginx when ``shutil.which("nginx")`` finds it (5,000
  generated files of 1 KB in a temporary directory, a generated config, one
  process, a free port on 127.0.0.1), otherwise this module as a twisted.web
  server in a subprocess.
- ``python -m tests.bench._fetch_server [--port N]`` is that twisted.web
  server: every ``/page/N`` answers 200 with the same 1 KB body, anything else
  404, no artificial latency.  It prints ``PORT <n>`` once it listens.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BODY_SIZE = 1024


def page_body(n: int | None = None) -> bytes:
    """A 1 KB HTML page (numbered for nginx's files; fixed for twisted.web)."""
    head = f"<!doctype html><title>page {'' if n is None else n}</title><p>"
    text = head.encode() + b"x" * BODY_SIZE
    return text[: BODY_SIZE - 5] + b"</p>\n"


@dataclass
class Server:
    """A running server: its kind, base URL and process."""

    kind: str
    base: str
    process: subprocess.Popen[bytes]
    version: str

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server process has used so far."""
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_ready(server: Server, timeout: float = 15.0) -> None:
    """Until /page/0 answers 200 with a 1 KB body (or fail)."""
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"the {server.kind} server exited at start")
        try:
            with urllib.request.urlopen(f"{server.base}/page/0", timeout=2) as r:
                body = r.read()
            if r.status != 200 or len(body) != BODY_SIZE:
                raise RuntimeError(f"bad answer: {r.status}, {len(body)} bytes")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


_NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log stderr warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    types {{ }}
    default_type text/html;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 120s;
    keepalive_requests 1000000;
    open_file_cache max=10000 inactive=60s;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        root {dir}/www;
        location /page/ {{ }}
    }}
}}
"""


def _start_nginx(nginx: str, directory: Path, pages: int) -> Server:
    www = directory / "www" / "page"
    www.mkdir(parents=True)
    (directory / "tmp").mkdir()
    for n in range(pages):
        (www / str(n)).write_bytes(page_body(n))
    port = free_port()
    conf = directory / "nginx.conf"
    conf.write_text(_NGINX_CONF.format(dir=directory, port=port))
    version = subprocess.run(
        [nginx, "-v"], capture_output=True, text=True, check=False
    ).stderr.strip()
    base = [nginx, "-p", str(directory), "-c", str(conf)]
    # -e (nginx >= 1.19.5) keeps the start-up log off /var/log/nginx.
    for command in ([*base, "-e", "stderr"], base):
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        server = Server("nginx", f"http://127.0.0.1:{port}", process, version)
        try:
            _wait_ready(server)
        except (OSError, RuntimeError):
            process.kill()
            process.wait()
            continue
        return server
    raise RuntimeError(f"nginx would not start with {conf}")


def _start_twisted() -> Server:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.bench._fetch_server"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode().split()
    if len(line) != 2 or line[0] != "PORT":
        process.kill()
        raise RuntimeError(f"the twisted.web server said {line!r}, not PORT <n>")
    import twisted

    server = Server(
        "twisted.web",
        f"http://127.0.0.1:{line[1]}",
        process,
        f"Twisted {twisted.__version__}",
    )
    _wait_ready(server)
    return server


@contextmanager
def serve(pages: int, kind: str = "auto") -> Iterator[Server]:
    """A server answering ``/page/0`` .. ``/page/{pages-1}``, stopped after.

    Args:
        pages: how many pages nginx serves (twisted.web answers any N).
        kind: ``auto`` (nginx if found), ``nginx`` or ``twisted``.
    """
    nginx = shutil.which("nginx")
    if kind == "nginx" and nginx is None:
        raise SystemExit("--server nginx: no nginx on PATH")
    directory = Path(tempfile.mkdtemp(prefix="fetchq-bench-server-"))
    server = None
    try:
        if kind in ("auto", "nginx") and nginx is not None:
            server = _start_nginx(nginx, directory, pages)
        else:
            server = _start_twisted()
        yield server
    finally:
        if server is not None:
            server.process.terminate()
            try:
                server.process.wait(10)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="the bench_fetch twisted.web server")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    from twisted.internet import reactor
    from twisted.web.resource import Resource
    from twisted.web.server import Request, Site

    body = page_body()

    class Pages(Resource):
        isLeaf = True

        def render_GET(self, request: Request) -> bytes:
            path = request.path
            if path.startswith(b"/page/") and path[6:].isdigit():
                request.setHeader(b"content-type", b"text/html")
                return body
            request.setResponseCode(404)
            return b"not found\n"

    site = Site(Pages())
    site.displayTracebacks = False
    port = reactor.listenTCP(  # type: ignore[attr-defined]
        args.port, site, backlog=1024, interface="127.0.0.1"
    )
    print(f"PORT {port.getHost().port}", flush=True)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
