"""The seed's SMS web service scaled out: several processes behind a port
each (or a load balancer), each with its own queue, sharing one width and
one pace per sender through Redis.

Each worker is ``examples/sms_web_form.py``'s web form and queue (its
checks, its status, its clean stop), with one difference: its queue is
attached to a :class:`~fetchq.shared.SharedLimits` called ``--name``, so

- the account's requests in flight (the *width*) are counted across every
  worker: the provider's concurrency cap is never passed, however many
  workers there are;
- each sender number (a lane) sends at most one message a second across
  every worker: the provider never has to queue a message;
- a width or rate set through any worker (``POST /admin/width`` or
  ``/admin/rate``, or straight in Redis) reaches every worker within half a
  second, and a 429 seen by one worker holds that sender for all of them.

Run the demonstration (a redis-server, the fake provider and 3 workers,
all started here; 18 messages sent through them; the width changed through
one worker while they go out)::

    python examples/sms_web_service.py                    # redis-server on PATH
    python examples/sms_web_service.py --redis-url redis://127.0.0.1:6379/0

Or serve until Ctrl-C: ``--serve`` (the workers' URLs are printed; send
through any of them).  One worker alone::

    python examples/sms_web_service.py --worker --redis-url URL --provider-url URL

(with ``--fake-credentials`` for the fake provider; otherwise the account
comes from ``TWILIO_ACCOUNT_SID`` and ``TWILIO_AUTH_TOKEN``).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import treq
from twisted.internet import defer, protocol, task
from twisted.web.server import NOT_DONE_YET, Site

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sms_web_form import (
    DEFAULT_SENDERS,
    Request,
    SmsService,
    WebApp,
    field,
    load_state,
    page,
    say,
)

from fetchq import ResizableDispatchQueue
from fetchq.shared import SharedLimits
from fetchq.sms import (
    SmsConfig,
    SmsSender,
    check_sender,
    sms_retry_policy,
)
from fetchq.testing import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    serve_sms,
)

SENDERS = [*DEFAULT_SENDERS, "+12125550102"]
HERE = Path(__file__).resolve()

# ----------------------------------------------------------------------
# A worker: the web form's service, its queue attached to shared limits


@attrs.define
class SharedSmsService(SmsService):
    """The web form's service whose width and rate are everyone's."""

    limits: SharedLimits | None = None
    grants: list[tuple[str, float]] = attrs.Factory(list)

    def set_width(self, width: int) -> None:
        """The width of every worker (ValueError if bad)."""
        assert self.limits is not None
        self._log(self.limits.setWidth(width))

    def set_rate(self, rate: float) -> None:
        """Every sender's messages per second, on every worker."""
        assert self.limits is not None
        self._log(self.limits.set_lane_rate(None, rate))

    def _log(self, d: defer.Deferred[None]) -> None:
        d.addErrback(lambda f: say(f"shared limits: {f.value}"))

    def status(self) -> dict[str, Any]:
        out = super().status()
        assert self.limits is not None
        out["shared"] = {"name": self.limits.name, **self.limits.limits_seen}
        out["grants"] = self.grants
        return out


class SharedWebApp(WebApp):
    """The web form, and three routes for an admin (on 127.0.0.1 only):
    ``POST /admin/width`` and ``/admin/rate`` change every worker's, ``POST
    /admin/stop`` stops this worker (saving its unsent messages)."""

    def __init__(self, service: SharedSmsService, stop: Any) -> None:
        super().__init__(service)
        self.shared = service
        self.stop_process = stop
        self.routes[(b"POST", b"/admin/width")] = self.width
        self.routes[(b"POST", b"/admin/rate")] = self.rate
        self.routes[(b"POST", b"/admin/stop")] = self.stop

    def width(self, request: Request) -> bytes:
        return self._change(request, "width", int, self.shared.set_width)

    def rate(self, request: Request) -> bytes:
        return self._change(request, "rate", float, self.shared.set_rate)

    def _change(self, request: Request, name: str, parse: Any, apply: Any) -> bytes:
        text = field(request, name)
        try:
            apply(parse(text))
        except ValueError as e:
            request.setResponseCode(400)
            return page("SMS queue", "", f"{name} {text!r} not set: {e}", error=True)
        return page("SMS queue", "", f"{name} is now {text}, for every worker")

    def stop(self, request: Request) -> int:
        def done(saved: int) -> None:
            request.write(page("SMS queue stopped", "", f"{saved} unsent saved."))
            request.finish()
            self.stop_process()

        self.shared.shutdown().addCallback(done)
        return NOT_DONE_YET


async def worker(reactor: Any, options: argparse.Namespace) -> None:
    """Serve the web form with a queue under the shared limits."""
    senders = [check_sender(s) for s in options.senders or SENDERS]
    if options.fake_credentials:
        config = SmsConfig(
            DEFAULT_ACCOUNT_SID,
            DEFAULT_AUTH_TOKEN,
            base_url=options.provider_url,
            from_number=senders[0],
        )
    else:
        config = SmsConfig.from_env(
            base_url=options.provider_url, from_number=senders[0]
        )
    sender = SmsSender(config, reactor, pool_size=10)
    queue = ResizableDispatchQueue(
        sender, options.width, clock=reactor, retry=sms_retry_policy()
    )
    grants: list[tuple[str, float]] = []
    limits = await SharedLimits.connect(
        options.redis_url,
        options.name,
        reactor,
        lease=5.0,
        on_grant=lambda key, t: grants.append((key, t)),
    )
    limits.attach(queue)
    state = options.state or Path(tempfile.gettempdir()) / f"sms-{os.getpid()}.json"
    service = SharedSmsService(
        queue, sender, senders, state, None, limits=limits, grants=grants
    )
    service.requeue(load_state(state, config))

    def stop_soon() -> None:
        reactor.callLater(0.2, reactor.stop)

    site = Site(SharedWebApp(service, stop_soon))  # type: ignore[no-untyped-call]
    port = reactor.listenTCP(options.port, site, interface="127.0.0.1")
    say(f"worker on http://127.0.0.1:{port.getHost().port}/ (pid {os.getpid()})")

    async def shut() -> None:
        await service.shutdown()
        await limits.close()

    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: defer.Deferred.fromCoroutine(shut())
    )
    await defer.Deferred()  # until the reactor stops


# ----------------------------------------------------------------------
# The demonstration: redis-server, the fake provider, N workers


class RedisServer:
    """A throwaway redis-server on a free loopback port."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not on PATH: install it, or give --redis-url"
            )
        self.dir = tempfile.mkdtemp(prefix="sms-redis-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [
                *(binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--dir", self.dir, "--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Worker(protocol.ProcessProtocol):
    """A worker process; ``url`` fires with its address."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.url: defer.Deferred[str] = defer.Deferred()
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.output = ""

    def outReceived(self, data: bytes) -> None:
        self.output += data.decode("utf-8", "replace")
        if not self.url.called and "worker on " in self.output:
            line = self.output.split("worker on ", 1)[1]
            self.url.callback(line.split()[0].rstrip("/"))

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        if not self.url.called:
            self.url.errback(RuntimeError(f"worker exited:\n{self.output}"))
        self.ended.callback(None)


async def post(url: str, **fields: str) -> tuple[int, str]:
    response = await treq.post(url, data=fields)
    return response.code, await response.text("utf-8")


async def status(url: str) -> dict[str, Any]:
    response = await treq.get(url + "/status.json")
    doc: dict[str, Any] = json.loads(await response.text("utf-8"))
    return doc


async def demo(reactor: Any, options: argparse.Namespace) -> None:
    """Start everything, send messages through every worker, change the
    width on one, and report what the provider saw (``--serve``: start
    everything and wait for Ctrl-C)."""
    redis = None
    if options.redis_url is None:
        redis = RedisServer()
        options.redis_url = redis.url
        say(f"redis-server on {redis.url} (started by the example)")
    served = serve_sms(reactor, 0, latency=1.0, concurrency=3)
    provider = served.fake
    say(f"fake SMS provider on {served.url} (at most 3 requests at once, 1 s each)")
    name = options.name or f"sms-demo-{uuid.uuid4().hex[:8]}"
    admin = await SharedLimits.connect(options.redis_url, name, reactor)
    await admin.configure(width=3, lane_rate=1.0)
    say(f"shared limits {name!r}: width 3, 1 message a second per sender")

    workers = []
    for n in range(1, options.workers + 1):
        w = Worker(n)
        args = [sys.executable, str(HERE), "--worker", "--fake-credentials"]
        args += ["--redis-url", options.redis_url, "--name", name, "--port", "0"]
        args += ["--provider-url", served.url, "--width", "10"]
        for s in SENDERS:
            args += ["--from", s]
        reactor.spawnProcess(w, sys.executable, args, env=os.environ)
        workers.append(w)
    urls = [await w.url for w in workers]
    for n, url in enumerate(urls, 1):
        say(f"worker {n} on {url}/")
    try:
        if options.serve:
            done: defer.Deferred[None] = defer.Deferred()
            signal.signal(
                signal.SIGINT,
                lambda *_: reactor.callFromThread(done.callback, None),
            )
            say("serving; Ctrl-C stops every worker")
            await done
        else:
            await exercise(reactor, urls, provider, options)
    finally:
        for url in urls:
            with contextlib.suppress(Exception):  # it may be gone already
                await post(url + "/admin/stop")
        for w in workers:
            await w.ended
        await admin.close()
        await served.stop()
        if redis is not None:
            redis.stop()


async def exercise(
    reactor: Any, urls: list[str], provider: Any, options: argparse.Namespace
) -> None:
    total = options.messages
    for n in range(total):
        url = urls[n % len(urls)]
        code, _ = await post(url + "/send", to=f"+1917555{n:04d}", body=f"message {n}")
        if code != 200:
            raise RuntimeError(f"worker refused message {n}: {code}")
    say(f"queued {total} messages through {len(urls)} workers")

    async def sleep(seconds: float) -> None:
        await task.deferLater(reactor, seconds, lambda: None)

    await sleep(2.0)
    started = reactor.seconds()
    code, _ = await post(urls[-1] + "/admin/width", width="2")
    if code != 200:
        raise RuntimeError("the admin page refused the width")
    while True:
        widths = [(await status(url))["width"] for url in urls]
        if all(w == 2 for w in widths):
            break
        if reactor.seconds() - started > 10:
            raise RuntimeError(f"the width did not reach every worker: {widths}")
        await sleep(0.05)
    took = reactor.seconds() - started
    say(
        f"admin: width 3 -> 2 through worker {len(urls)}; "
        f"reached all {len(urls)} workers in {took:.1f} s"
    )
    deadline = reactor.seconds() + 60
    while reactor.seconds() < deadline:
        statuses = [await status(url) for url in urls]
        if sum(s["sent"] + s["failed"] for s in statuses) >= total:
            break
        await sleep(0.1)
    report(statuses, provider, total)


def report(statuses: list[dict[str, Any]], provider: Any, total: int) -> None:
    """What the provider and the workers saw."""
    bodies = [m.body for m in provider.messages]
    twice = len(bodies) - len(set(bodies))
    say(
        f"sent {sum(s['sent'] for s in statuses)} of {total}: "
        f"the provider accepted {len(set(bodies))}, more than once {twice}, "
        f"20429 answers {provider.codes[20429]}"
    )
    say(
        f"most requests in flight at the provider: {provider.max_in_flight} "
        "(the shared width: 3, then 2)"
    )
    say("each worker sent: " + ", ".join(str(s["sent"]) for s in statuses))
    grants: dict[str, list[float]] = defaultdict(list)
    for s in statuses:
        for key, t in s["grants"]:
            grants[key].append(t)
    arrived: dict[str, list[float]] = defaultdict(list)
    for m in provider.messages:
        arrived[m.from_].append(m.created_at)
    for sender in sorted(grants):
        times = sorted(grants[sender])
        gap = min((b - a for a, b in itertools.pairwise(times)), default=0.0)
        seen = sorted(arrived[sender])
        seen_gap = min((b - a for a, b in itertools.pairwise(seen)), default=0.0)
        say(
            f"{sender}: {len(times)} sent, min gap {gap:.3f} s on the Redis "
            f"clock ({seen_gap:.2f} s as the provider saw them arrive)"
        )


# ----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", help="default: start a redis-server here")
    parser.add_argument("--name", help="the shared limits' name (default: random)")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--messages", type=int, default=18)
    parser.add_argument("--serve", action="store_true", help="serve until Ctrl-C")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--provider-url", help="a Twilio-shaped API's base URL")
    parser.add_argument("--fake-credentials", action="store_true")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--width", type=int, default=10, help="a worker's own width")
    parser.add_argument("--state", type=Path, help="a worker's saved messages")
    parser.add_argument("--from", dest="senders", action="append", metavar="NUMBER")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_args(argv)

    def run(reactor: Any) -> defer.Deferred[None]:
        if options.worker:
            if not options.provider_url:
                raise SystemExit("a worker needs --provider-url")
            return defer.Deferred.fromCoroutine(worker(reactor, options))
        return defer.Deferred.fromCoroutine(demo(reactor, options))

    try:
        task.react(run)
    except SystemExit as e:
        if e.code not in (0, None):
            print(f"sms_web_service: {e.code}", file=sys.stderr)
        raise


if __name__ == "__main__":
    main()
