"""A web site that records what it saw, for the multi-worker tests and
benchmarks: requests per path, concurrent requests per ``Host`` header (now
and at most), and when each request arrived.

It listens on one port on several loopback addresses (``127.0.0.1``,
``127.0.0.2``, ...), so one server is several hosts to a fetcher (a lane
each), and counts what every worker sent it together: the site's own view of
per-host width, whoever the workers are.

- In a test: ``site = CountingSite(reactor, latency=0.02)``, ``base =
  site.listen(hosts=3)`` (a list of base URLs, one per host).
- In another process (benchmarks): ``python -m tests.counting_site --hosts 3
  --latency 0.01`` prints ``PORT <n>`` once it listens; ``GET /_stats``
  answers its counters as JSON, ``GET /_reset`` clears them.
"""

from __future__ import annotations

import argparse
import json
import socket
from collections import Counter
from typing import Any

from twisted.web import server
from twisted.web.resource import Resource

__all__ = ["CountingSite"]


def _free_port(hosts: int) -> int:
    """A port free on 127.0.0.1 .. 127.0.0.N (tried until one is)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        try:
            for n in range(2, hosts + 1):
                with socket.socket() as s:
                    s.bind((f"127.0.0.{n}", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no port free on every loopback address")


class CountingSite(Resource):
    """Answers ``/page/N`` with 200 and ``size`` bytes after ``latency``
    seconds (``/missing/N``: 404 at once), counting as it goes.

    Attributes:
        requests: requests per path (``/page/7``).
        inflight: requests being answered now, per ``Host`` header.
        max_inflight: the most ever answered at once, per ``Host`` header.
        max_total: the most ever answered at once, all hosts together.
        times: when each ``/page/`` request arrived (reactor seconds).
    """

    isLeaf = True

    def __init__(self, reactor: Any, latency: float = 0.0, size: int = 512) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.reactor = reactor
        self.latency = latency
        self.body = b"x" * size
        self.reset()

    def reset(self) -> None:
        """Forget every count."""
        self.requests: Counter[str] = Counter()
        self.inflight: Counter[str] = Counter()
        self.max_inflight: Counter[str] = Counter()
        self.total = 0
        self.max_total = 0
        self.times: list[float] = []

    def stats(self) -> dict[str, Any]:
        """The counters as JSON-ready values."""
        return {
            "requests": dict(self.requests),
            "max_inflight": dict(self.max_inflight),
            "max_total": self.max_total,
            "times": self.times,
        }

    def listen(self, hosts: int = 1, port: int = 0) -> list[str]:
        """Listen on 127.0.0.1 .. 127.0.0.``hosts``, one port; the base URL of
        each host (``http://127.0.0.2:PORT``)."""
        if port == 0:
            port = _free_port(hosts)
        site = server.Site(self)  # type: ignore[no-untyped-call]
        self.ports = [
            self.reactor.listenTCP(port, site, interface=f"127.0.0.{n}")
            for n in range(1, hosts + 1)
        ]
        return [f"http://127.0.0.{n}:{port}" for n in range(1, hosts + 1)]

    def stop(self) -> Any:
        """Stop listening."""
        from twisted.internet import defer

        return defer.gatherResults([p.stopListening() for p in self.ports])

    def render_GET(self, request: Any) -> bytes | int:
        path = request.path.decode("ascii", "replace")
        if path == "/_stats":
            request.setHeader(b"content-type", b"application/json")
            return json.dumps(self.stats()).encode()
        if path == "/_reset":
            self.reset()
            return b"ok\n"
        self.requests[path] += 1
        if not path.startswith("/page/"):
            request.setResponseCode(404)
            return b"no such page\n"
        self.times.append(self.reactor.seconds())
        host = (request.getHeader(b"host") or b"?").decode("ascii", "replace")
        self.inflight[host] += 1
        self.max_inflight[host] = max(self.max_inflight[host], self.inflight[host])
        self.total += 1
        self.max_total = max(self.max_total, self.total)
        done = False

        def finish(_: Any = None) -> None:
            nonlocal done
            if not done:
                done = True
                self.inflight[host] -= 1
                self.total -= 1

        def answer() -> None:
            finish()  # counted out before the client can see the answer
            request.setHeader(b"content-length", str(len(self.body)).encode())
            request.write(self.body)
            request.finish()

        call = self.reactor.callLater(self.latency, answer)

        def gone(_: Any) -> None:
            if call.active():
                call.cancel()
            finish()

        request.notifyFinish().addErrback(gone)
        return server.NOT_DONE_YET


def main(argv: list[str] | None = None) -> None:
    """Serve until killed; print ``PORT <n>`` once listening."""
    from twisted.internet import reactor

    parser = argparse.ArgumentParser(prog="python -m tests.counting_site")
    parser.add_argument("--hosts", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args(argv)
    site = CountingSite(reactor, args.latency, args.size)
    bases = site.listen(args.hosts)
    print("PORT", bases[0].rsplit(":", 1)[1], flush=True)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
