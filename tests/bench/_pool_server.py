"""An application server with a fixed pool of workers, in its own process.

``python -m tests.bench._pool_server --workers 16 --service 0.04``: each
``GET /page/N`` is served by one of ``workers`` workers in ``service``
seconds; while all are busy, requests wait in one FIFO line (gunicorn's sync
workers, a thread pool behind a listener).  It prints ``PORT <n>`` once it
listens and, on SIGTERM, one JSON line with what it saw: requests, the
server's own latency (arrival to answer) percentiles, the longest line.

:class:`PoolServer` starts it and reads that line back.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from collections import deque
from typing import Any

from tests.bench._fetch_server import page_body


def main() -> None:
    from twisted.internet import reactor as _reactor
    from twisted.web import resource, server

    reactor: Any = _reactor
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--service", type=float, default=0.04)
    args = parser.parse_args()
    body = page_body()
    latencies: list[float] = []
    line: deque[tuple[float, Any]] = deque()
    state = {"busy": 0, "longest": 0}

    def start(arrived: float, request: Any) -> None:
        state["busy"] += 1
        reactor.callLater(args.service, finish, arrived, request)

    def finish(arrived: float, request: Any) -> None:
        state["busy"] -= 1
        latencies.append(reactor.seconds() - arrived)
        if not request._disconnected:
            request.setHeader(b"content-type", b"text/html")
            request.write(body)
            request.finish()
        while line and state["busy"] < args.workers:
            start(*line.popleft())

    class Pool(resource.Resource):
        isLeaf = True

        def render_GET(self, request: Any) -> Any:
            arrived = reactor.seconds()
            if state["busy"] < args.workers:
                start(arrived, request)
            else:
                line.append((arrived, request))
                state["longest"] = max(state["longest"], len(line))
            return server.NOT_DONE_YET

    class Counting(server.Site):
        def buildProtocol(self, addr: Any) -> Any:
            state["connections"] += 1
            return super().buildProtocol(addr)

    state["connections"] = 0
    site = Counting(Pool())
    site.log = lambda request: None  # type: ignore[method-assign]
    port = reactor.listenTCP(args.port, site, interface="127.0.0.1")
    print(f"PORT {port.getHost().port}", flush=True)

    def stop(*_: Any) -> None:
        reactor.callFromThread(reactor.stop)

    signal.signal(signal.SIGTERM, stop)
    reactor.run(installSignalHandlers=False)
    ordered = sorted(latencies)

    def pct(q: float) -> float | None:
        if not ordered:
            return None
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    print(
        json.dumps(
            {
                "requests": len(ordered),
                "p50": pct(0.5),
                "p90": pct(0.9),
                "mean": sum(ordered) / len(ordered) if ordered else None,
                "longest_line": state["longest"],
                "connections": state["connections"],
            }
        ),
        flush=True,
    )


class PoolServer:
    """The pool server in a child process (see the module docstring)."""

    def __init__(self, workers: int = 16, service: float = 0.04) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.bench._pool_server",
                f"--workers={workers}",
                f"--service={service}",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline().split()
        if len(first) != 2 or first[0] != "PORT":
            self.process.kill()
            raise RuntimeError(f"the pool server did not start ({first!r})")
        self.url = f"http://127.0.0.1:{first[1]}"

    def stop(self) -> dict[str, Any]:
        """Stop it; what it saw (see the module docstring)."""
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=30)
        for text in reversed(out.splitlines()):
            if text.startswith("{"):
                seen: dict[str, Any] = json.loads(text)
                return seen
        return {}


if __name__ == "__main__":
    main()
