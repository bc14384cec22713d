"""A local web site with the manners of a real one.

- Latency grows when too many requests are in flight (``capacity``), so a
  client that pushes harder gets slower answers.
- Each client address has a rate limit; past it the site answers
  ``429 Too Many Requests`` with ``Retry-After``.
- Some pages fail with ``500`` on their first request (a transient error that a
  retry cures), some are ``404``, and some send their body slowly.

Everything is decided by the page number, so a run is reproducible, and all of
it runs on an injected reactor/clock.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import attrs
from twisted.internet.interfaces import IListeningPort
from twisted.web import server
from twisted.web.resource import Resource

__all__ = ["DemoSite", "SiteBehaviour", "SiteProcess", "page_body"]


@attrs.frozen
class SiteBehaviour:
    """How the demo site behaves.

    Attributes:
        pages: how many pages exist (``/page/0`` ... ``/page/{pages-1}``).
        latency: seconds to answer when not overloaded.
        capacity: requests in flight before answers slow down.
        overload_latency: extra seconds per request in flight above capacity.
        client_rate: requests per second each client may make (None = no limit).
        client_burst: requests a client may make back to back.
        retry_after: seconds the site asks a too-fast client to wait (0: its
            429s carry no Retry-After).
        error_every: page numbers divisible by this fail once with 500.
        missing_every: page numbers divisible by this are 404.
        slow_every: page numbers divisible by this send their body slowly.
        slow_seconds: how long a slow body takes.
        body_size: bytes in a page body (about).
    """

    pages: int = 2000
    latency: float = 0.005
    capacity: int = 40
    overload_latency: float = 0.002
    client_rate: float | None = 1500.0
    client_burst: int = 100
    retry_after: int = 1
    error_every: int = 97
    missing_every: int = 101
    slow_every: int = 89
    slow_seconds: float = 0.2
    body_size: int = 1024


def page_body(number: int, size: int) -> bytes:
    """The body of page ``number``: HTML of about ``size`` bytes, with links."""
    head = (
        f"<html><head><title>page {number}</title></head><body>"
        f'<a href="/page/{number + 1}">next</a> '
        f'<a href="/page/{number * 7 % 1000}">elsewhere</a><p>'
    ).encode()
    tail = b"</p></body></html>"
    filler = hashlib.sha256(str(number).encode()).hexdigest().encode()
    room = max(0, size - len(head) - len(tail))
    return head + (filler * (room // len(filler) + 1))[:room] + tail


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class DemoSite(Resource):
    """The site's root resource.

    Args:
        reactor: provides ``seconds()`` and ``callLater()``.
        behaviour: a :class:`SiteBehaviour`.

    Attributes:
        inflight: requests being answered now.
        served: responses by status code.
        requests: requests received per page number.
    """

    isLeaf = True

    def __init__(self, reactor: Any, behaviour: SiteBehaviour | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.reactor = reactor
        self.behaviour = behaviour or SiteBehaviour()
        self.inflight = 0
        self.served: dict[int, int] = {}
        self.requests: dict[int, int] = {}
        self._failed_once: set[int] = set()
        self._buckets: dict[str, _Bucket] = {}

    def listen(self, port: int = 0) -> IListeningPort:
        """Listen on 127.0.0.1 (``port`` 0: a free one); the listening port."""
        listening: IListeningPort = self.reactor.listenTCP(
            port,
            server.Site(self),  # type: ignore[no-untyped-call]
            interface="127.0.0.1",
        )
        return listening

    def _allow(self, client: str) -> bool:
        rate = self.behaviour.client_rate
        if rate is None:
            return True
        now = self.reactor.seconds()
        burst = self.behaviour.client_burst
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = _Bucket(float(burst), now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def render_GET(self, request: Any) -> bytes | int:
        """Answer after a delay that grows with the load (NOT_DONE_YET)."""
        b = self.behaviour
        client = request.getClientAddress()
        host = getattr(client, "host", "?")
        if not self._allow(host):
            return self._finish_now(request, 429, b"slow down\n", b.retry_after)
        path = request.path.decode("ascii", "replace").strip("/").split("/")
        number = -1
        if len(path) == 2 and path[0] == "page" and path[1].isdigit():
            number = int(path[1])
        if number >= 0:
            self.requests[number] = self.requests.get(number, 0) + 1
        if not 0 <= number < b.pages or (number and number % b.missing_every == 0):
            return self._finish_now(request, 404, b"no such page\n")
        self.inflight += 1
        delay = b.latency + b.overload_latency * max(0, self.inflight - b.capacity)
        call = self.reactor.callLater(delay, self._answer, request, number)
        request.notifyFinish().addErrback(lambda _: call.active() and call.cancel())
        request.notifyFinish().addBoth(self._done)
        return server.NOT_DONE_YET

    def _done(self, result: object) -> None:
        self.inflight -= 1

    def _finish_now(
        self, request: Any, status: int, body: bytes, retry: int = 0
    ) -> bytes:
        request.setResponseCode(status)
        if retry:
            request.setHeader(b"retry-after", str(retry).encode())
        self.served[status] = self.served.get(status, 0) + 1
        return body

    def _answer(self, request: Any, number: int) -> None:
        b = self.behaviour
        if number and number % b.error_every == 0 and number not in self._failed_once:
            self._failed_once.add(number)
            request.setResponseCode(500)
            self.served[500] = self.served.get(500, 0) + 1
            request.write(b"try again\n")
            request.finish()
            return
        body = page_body(number, b.body_size)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"content-length", str(len(body)).encode())
        self.served[200] = self.served.get(200, 0) + 1
        if number and number % b.slow_every == 0:
            half = len(body) // 2
            request.write(body[:half])
            self.reactor.callLater(
                b.slow_seconds, self._write_rest, request, body[half:]
            )
            return
        request.write(body)
        request.finish()

    def _write_rest(self, request: Any, rest: bytes) -> None:
        if not request.finished and request.channel is not None:  # still there
            request.write(rest)
            request.finish()


def main(argv: list[str] | None = None) -> None:
    """``python -m fetchq.demo.site``: serve the demo site until killed.

    Prints ``http://127.0.0.1:PORT`` on its first line once listening, so a
    test or a user's script can start it in another process and read where.
    """
    import argparse
    import sys

    from twisted.internet import reactor as _reactor
    from twisted.internet.error import CannotListenError

    reactor: Any = _reactor
    parser = argparse.ArgumentParser(prog="python -m fetchq.demo.site")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.005, help="seconds")
    parser.add_argument("--capacity", type=int, default=40)
    parser.add_argument("--overload-latency", type=float, default=0.002)
    parser.add_argument("--client-rate", type=float, default=1500.0)
    parser.add_argument("--client-burst", type=int, default=100)
    parser.add_argument(
        "--retry-after", type=int, default=1, help="seconds; 0: a 429 says none"
    )
    parser.add_argument("--no-faults", action="store_true", help="no 500/404/slow")
    args = parser.parse_args(argv)
    faults: dict[str, Any] = {}
    if args.no_faults:
        never = 10**12
        faults = {"error_every": never, "missing_every": never, "slow_every": never}
    behaviour = SiteBehaviour(
        pages=args.pages,
        latency=args.latency,
        capacity=args.capacity,
        overload_latency=args.overload_latency,
        client_rate=args.client_rate,
        client_burst=args.client_burst,
        retry_after=args.retry_after,
        **faults,
    )
    site = DemoSite(reactor, behaviour)
    try:
        port: Any = site.listen(args.port)
    except CannotListenError as e:
        reason = getattr(e.socketError, "strerror", None) or e.socketError
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {reason}", flush=True)
        sys.exit(1)
    host: Any = port.getHost()
    print(f"http://127.0.0.1:{host.port}", flush=True)
    reactor.run()  # SIGTERM/SIGINT stop it
    # What it served, for whoever started it.
    print(json.dumps({"served": site.served, "requests": len(site.requests)}))
    sys.stdout.flush()


# ``-m fetchq.demo.site`` would import the module twice (the package imports
# it first), so the child calls main() directly.
_MAIN = "import sys; from fetchq.demo.site import main; main(sys.argv[1:])"


class SiteProcess:
    """The demo site in a child process (``python -m fetchq.demo.site``), so
    that a client measured against it does not share its CPU.

    Args:
        options: command-line options for the site (``--capacity 16``, ...).

    Raises:
        RuntimeError: if the site does not start.
    """

    def __init__(self, *options: str) -> None:
        import subprocess
        import sys

        self._process = subprocess.Popen(
            [sys.executable, "-c", _MAIN, *options],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if not line.startswith("http://"):
            self._process.kill()
            self._process.wait()
            said = line.removeprefix("error: ") if line else "nothing"
            raise RuntimeError(f"the demo site did not start: {said}")
        self.url = line
        """Where it listens: ``http://127.0.0.1:PORT``."""

    def stop(self) -> dict[int, int]:
        """Stop the site; what it served, by status."""
        import signal
        import subprocess

        self._process.send_signal(signal.SIGTERM)
        try:
            out, _ = self._process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.communicate()
            return {}
        for line in reversed(out.splitlines()):
            if line.startswith("{"):
                served = json.loads(line)["served"]
                return {int(k): int(v) for k, v in served.items()}
        return {}


if __name__ == "__main__":
    main()
