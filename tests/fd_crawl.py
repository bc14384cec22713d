"""Child processes for the file-descriptor tests (tests/test_fetch_pool.py).

Each mode runs in a process of its own, because it lowers the process's
descriptor limit (``RLIMIT_NOFILE``) or runs in a network namespace of its
own, and prints one JSON line on stdout for the test to read:

``serve [--interface ADDR]``
    Two :class:`~tests.fetch_server.FaultServer` s on ``ADDR`` (127.0.0.1
    by default; ``0.0.0.0`` inside a private network namespace, where that
    is reachable only through loopback); prints ``{"ports": [N, M]}``,
    serves until its stdin closes.

``crawl --hosts N --width W --nofile L --addresses loopback|names``
    Starts a ``serve`` child (with the ordinary limit), lowers its own soft
    descriptor limit to ``L``, and runs ``fetchq run`` in-process on a
    recipe of ``N`` URLs, each on a host of its own: ``127.x.y.z`` addresses
    (``loopback``, with the server on 0.0.0.0; needs a namespace) or names
    ``hN.fetchq.test`` that a resolver installed on the reactor maps to
    127.0.0.1 (``names``).  Counts ``/proc/self/fd`` every 2 ms and prints
    the outcomes, the error names and the peak descriptor count.

``emfile --nofile L``
    Uses up every descriptor below the limit, starts two fetches (one that
    may wait for descriptors, one that may not), frees the descriptors
    after 0.3 s, and prints how each ended.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IHostnameResolver, IHostResolution
from zope.interface import implementer

ROOT = Path(__file__).resolve().parent.parent

RECIPE = """\
kind: fetch
input:
  path: urls.txt
output:
  path: out/result.jsonl
queue:
  width: {width}
  per_host:
    width: 2
retry:
  max_attempts: 1
fetch:
  connect_timeout: 20s
  headers_timeout: 30s
  body_timeout: 30s
"""


def open_fds() -> int:
    """Descriptors open in this process now."""
    return len(os.listdir("/proc/self/fd")) - 1  # less listdir's own


def fd_kinds() -> list[str]:
    """What each open descriptor is: socket, pipe, anon_inode (epoll,
    eventfd), or a file's suffix (``.db``, ``.jsonl``, ...)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor)
        kind = target.partition(":")[0] if ":" in target else Path(target).suffix
        found.append(kind or target)
    return found


def set_nofile(limit: int) -> None:
    """Lower this process's soft descriptor limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


@implementer(IHostResolution)
class _Resolution:
    def __init__(self, name: str) -> None:
        self.name = name

    def cancel(self) -> None:
        pass


@implementer(IHostnameResolver)
class LoopbackNames:
    """Resolves every name to 127.0.0.1 (the reactor's resolver hook), so
    thousands of host names are thousands of pool keys on one server."""

    def resolveHostName(  # Twisted passes portNumber by name
        self,
        receiver: Any,
        name: str,
        portNumber: int = 0,  # noqa: N803
        *args: Any,
        **kwargs: Any,
    ) -> IHostResolution:
        resolution = _Resolution(name)
        receiver.resolutionBegan(resolution)
        receiver.addressResolved(IPv4Address("TCP", "127.0.0.1", portNumber))
        receiver.resolutionComplete()
        return resolution


def start_server(interface: str) -> tuple[subprocess.Popen[str], list[int]]:
    """A ``serve`` child and its two ports."""
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.fd_crawl", "serve", "--interface", interface],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    ports = [int(p) for p in json.loads(server.stdout.readline())["ports"]]
    return server, ports


def serve(args: argparse.Namespace) -> None:
    from twisted.internet import reactor, stdio
    from twisted.internet.protocol import Protocol

    from tests.fetch_server import FaultServer

    servers = [FaultServer(reactor).start(interface=args.interface) for _ in "ab"]
    print(json.dumps({"ports": [s.port_number for s in servers]}), flush=True)

    class StopOnEOF(Protocol):
        def connectionLost(self, reason: Any = None) -> None:
            reactor.stop()  # type: ignore[attr-defined]

    stdio.StandardIO(StopOnEOF())
    reactor.run()  # type: ignore[attr-defined]


def urls(count: int, addresses: str, port: int) -> list[str]:
    """``count`` URLs, each on a host of its own."""
    found = []
    for i in range(count):
        if addresses == "loopback":
            a, b, c = 1 + i // (254 * 254), 1 + i // 254 % 254, 1 + i % 254
            host = f"127.{a}.{b}.{c}"
        else:
            host = f"h{i}.fetchq.test"
        found.append(f"http://{host}:{port}/ok?size=100")
    return found


def crawl(args: argparse.Namespace) -> None:
    interface = "0.0.0.0" if args.addresses == "loopback" else "127.0.0.1"
    server, (port, _) = start_server(interface)
    folder = Path(tempfile.mkdtemp(prefix="fetchq-fd-crawl-"))
    try:
        (folder / "urls.txt").write_text(
            "\n".join(urls(args.hosts, args.addresses, port)) + "\n"
        )
        (folder / "recipe.yaml").write_text(RECIPE.format(width=args.width))
        summary = run_crawl(folder, args)
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)
        import shutil

        shutil.rmtree(folder, True)
    print(json.dumps(summary), flush=True)


def run_crawl(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    from twisted.internet import reactor, task
    from twisted.internet.defer import ensureDeferred

    from fetchq.recipe import load_recipe
    from fetchq.run import Run

    if args.addresses == "names":
        reactor.installNameResolver(LoopbackNames())  # type: ignore[attr-defined]
    set_nofile(args.nofile)
    recipe = load_recipe(folder / "recipe.yaml")
    result: dict[str, Any] = {}
    baseline = open_fds()
    peak = [baseline]
    kinds: dict[str, int] = {}

    def sample() -> None:
        try:
            now = open_fds()
        except OSError:  # not even one descriptor left to list them with
            now = args.nofile
            result["exhausted"] = True
        if now > peak[0]:
            peak[0] = now
            kinds.clear()
            with contextlib.suppress(OSError):
                kinds.update(Counter(fd_kinds()))

    sampler = task.LoopingCall(sample)
    sampler.start(0.002)

    async def main() -> None:
        with open(os.devnull, "w") as quiet:
            run = Run(recipe, reactor, stream=quiet)
            pool = getattr(run.kind.job, "pool", None)
            result["pool_max_idle"] = getattr(pool, "max_idle", None)
            result["code"] = await run.run()

    def done(outcome: Any) -> None:
        if sampler.running:
            sampler.stop()
        if outcome is not None:
            result["crash"] = repr(outcome)
        reactor.stop()  # type: ignore[attr-defined]

    reactor.callWhenRunning(  # type: ignore[attr-defined]
        lambda: ensureDeferred(main()).addBoth(done)
    )
    reactor.run()  # type: ignore[attr-defined]
    records = [
        json.loads(line)
        for line in (folder / "out" / "result.jsonl").read_text().splitlines()
    ]
    errors = Counter(
        f"{r['error']['name']}: {r['error']['message']}"
        for r in records
        if r["outcome"] != "ok"
    )
    return {
        **result,
        "records": len(records),
        "ok": sum(r["outcome"] == "ok" for r in records),
        "errors": dict(errors.most_common(5)),
        "baseline_fds": baseline,
        "peak_fds": peak[0],
        "peak_kinds": kinds,
        "nofile": args.nofile,
    }


def emfile(args: argparse.Namespace) -> None:
    from twisted.internet import reactor
    from twisted.internet.defer import ensureDeferred
    from twisted.internet.task import deferLater
    from twisted.python.failure import Failure

    from fetchq.control.signals import classify_error
    from fetchq.fetch import FetchConfig, Fetcher, fetch_retry_policy

    server, (port, other) = start_server("127.0.0.1")
    set_nofile(args.nofile)
    result: dict[str, Any] = {}
    url = f"http://127.0.0.1:{port}/ok?size=10"

    async def fetch(fetcher: Fetcher, name: str, where: str = url) -> None:
        try:
            got = await fetcher.fetch(where)
            result[name] = {"outcome": "ok", "status": got.status}
        except Exception as e:
            result[name] = {
                "outcome": type(e).__name__,
                "message": str(e),
                "signal": classify_error(e).value,
                "retryable": fetch_retry_policy().is_retryable(Failure(e)),
            }

    async def main() -> None:
        config = FetchConfig(headers_timeout=20)
        patient = Fetcher(config, reactor, descriptor_wait=15.0)
        hasty = Fetcher(config, reactor, descriptor_wait=0.0)
        shedder = Fetcher(config, reactor, descriptor_wait=15.0)
        await fetch(shedder, "warm-up")  # leaves one idle connection
        fillers = []
        try:
            while True:  # use up every descriptor
                fillers.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        result["filled"] = len(fillers)
        # No descriptor, no patience: the named error, at once.
        await fetch(hasty, "hasty")
        # Another host: its idle connection to the first is shed for it.
        await fetch(shedder, "shedder", f"http://127.0.0.1:{other}/ok?size=10")
        # Nothing to shed: waits until descriptors come back.
        waiting = ensureDeferred(fetch(patient, "patient"))
        await deferLater(reactor, 0.3, lambda: None)
        result["patient_waited"] = "patient" not in result
        for fd in fillers:
            os.close(fd)
        await waiting
        for fetcher in (patient, hasty, shedder):
            await fetcher.close()

    def done(outcome: Any) -> None:
        if outcome is not None:
            result["crash"] = repr(outcome)
        reactor.stop()  # type: ignore[attr-defined]

    reactor.callWhenRunning(  # type: ignore[attr-defined]
        lambda: ensureDeferred(main()).addBoth(done)
    )
    reactor.run()  # type: ignore[attr-defined]
    assert server.stdin is not None
    server.stdin.close()
    server.wait(10)
    print(json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    serving = sub.add_parser("serve")
    serving.add_argument("--interface", default="127.0.0.1")
    crawling = sub.add_parser("crawl")
    crawling.add_argument("--hosts", type=int, default=3000)
    crawling.add_argument("--width", type=int, default=20)
    crawling.add_argument("--nofile", type=int, default=256)
    crawling.add_argument(
        "--addresses", choices=("loopback", "names"), default="loopback"
    )
    exhausting = sub.add_parser("emfile")
    exhausting.add_argument("--nofile", type=int, default=128)
    args = parser.parse_args()
    {"serve": serve, "crawl": crawl, "emfile": emfile}[args.mode](args)


if __name__ == "__main__":
    main()
