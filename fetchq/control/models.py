"""Simulated servers and a simulated busy client, as real ones behave.

The servers of :mod:`fetchq.control.sim` are the textbook shapes (a
capacity, a token bucket).  These are the shapes that real deployments
answer with, where a controller that is exact in simulation is not yet
exact against a real server:

- :class:`LeakyBucketServer`: a per-client request-rate limit as nginx's
  ``limit_req`` (``rate=100r/s burst=20 nodelay``), Envoy's local rate limit
  and API gateways keep it: a leaky bucket that refuses with 429 and *no*
  Retry-After.  The client's adapter then guesses a wait (the fetch
  adapter's ``default_retry_after``): the refusal is a
  :class:`GuessedThrottle`, as :class:`~fetchq.fetch.HTTPThrottled` is.
- :class:`WorkerPoolServer`: an application server with a fixed pool of
  workers, each taking ``service`` seconds per request, the rest queued FIFO
  (gunicorn's sync workers, a thread pool): past the pool, latency grows
  with the queue while throughput stays flat.
- :class:`StrictSenderServer`: a Twilio-shaped provider that refuses
  (20429) a second message from one sender within ``interval`` of the last
  one it accepted, timed at the provider, where each request arrives with
  network jitter.
- :class:`ClientCPU`: the client's own CPU.  Launching and finishing a job
  cost CPU time on one core shared with anything else the process does, so
  when the client is saturated, answers wait for the event loop and the
  latency the client measures grows although the server is not slower.  It
  is also the controller's :class:`~fetchq.control.load.ClientLoad`: it says
  how late a timer would fire and how busy the core was.

Each server is a job function for :func:`~fetchq.control.sim.simulate`;
every random draw comes from a seeded :class:`random.Random`.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from fetchq.control.load import LoadReading
from fetchq.control.signals import Signal
from fetchq.errors import Throttled

__all__ = [
    "ClientCPU",
    "GuessedThrottle",
    "LeakyBucketServer",
    "StrictSenderServer",
    "WorkerPoolServer",
]

Job = Callable[[object], "defer.Deferred[Any]"]


class GuessedThrottle(Throttled):
    """A 429 without Retry-After: the client waits a delay of its own choosing
    (``guessed``), as the fetch and SMS adapters do with their
    ``default_retry_after``."""

    signal = Signal.THROTTLE
    guessed = True


def _later(
    clock: Clock, delay: float, error: Exception | None = None
) -> defer.Deferred[Any]:
    d: defer.Deferred[Any] = defer.Deferred()
    if error is None:
        clock.callLater(delay, d.callback, None)
    else:
        clock.callLater(delay, d.errback, error)
    return d


class LeakyBucketServer:
    """A request-rate limit as nginx's ``limit_req`` keeps it.

    The bucket's level (``excess``, in requests) drains at ``rate`` per
    second; a request that would raise it above ``burst`` is refused and
    leaves it as it was, any other raises it by one (the first request of an
    empty bucket leaves it at zero, as nginx's does): ``burst + 1`` requests
    pass back to back, then one per ``1 / rate``.

    Args:
        clock: the simulated clock.
        rate: requests per second the bucket drains.
        burst: the most requests above the rate it lets through at once.
        latency: seconds each answer takes (static files: 1 ms).
        guess: the wait the client guesses for a refusal without
            Retry-After (the fetch adapter's ``default_retry_after``).
    """

    def __init__(
        self,
        clock: Clock,
        rate: float = 100.0,
        burst: int = 20,
        latency: float = 0.001,
        guess: float = 1.0,
    ) -> None:
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self.latency = latency
        self.guess = guess
        self.excess: float | None = None  # None: no request seen yet
        self.stamp = clock.seconds()
        self.accepted = 0
        self.refused = 0

    def admit(self, now: float) -> bool:
        """Whether a request arriving at ``now`` passes (and count it)."""
        if self.excess is None:
            self.excess, self.stamp = 0.0, now
            self.accepted += 1
            return True
        excess = max(0.0, self.excess - (now - self.stamp) * self.rate) + 1.0
        if excess > self.burst + 1e-9:
            self.refused += 1
            return False
        self.excess, self.stamp = excess, now
        self.accepted += 1
        return True

    def __call__(self, arg: object) -> defer.Deferred[Any]:
        if self.admit(self.clock.seconds()):
            return _later(self.clock, self.latency)
        error = GuessedThrottle(self.guess, "HTTP 429")
        return _later(self.clock, self.latency, error)


class WorkerPoolServer:
    """An application server with ``workers`` workers and a FIFO queue.

    A request is served by the first free worker in ``service`` seconds;
    while all are busy it waits in line.  The server's own latency (arrival
    to answer) of every request is kept, so a run can be judged by what the
    server saw, not only by what the client measured.

    Args:
        clock: the simulated clock.
        workers: the pool's size.
        service: seconds a worker takes per request.
    """

    def __init__(self, clock: Clock, workers: int = 16, service: float = 0.04) -> None:
        self.clock = clock
        self.workers = workers
        self.service = service
        self.busy = 0
        self.waiting: deque[tuple[float, defer.Deferred[Any]]] = deque()
        self.latencies: list[tuple[float, float]] = []  # (answered at, latency)
        self.most_waiting = 0

    def __call__(self, arg: object) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        now = self.clock.seconds()
        if self.busy < self.workers:
            self._serve(now, d)
        else:
            self.waiting.append((now, d))
            self.most_waiting = max(self.most_waiting, len(self.waiting))
        return d

    def _serve(self, arrived: float, d: defer.Deferred[Any]) -> None:
        self.busy += 1
        self.clock.callLater(self.service, self._done, arrived, d)

    def _done(self, arrived: float, d: defer.Deferred[Any]) -> None:
        now = self.clock.seconds()
        self.busy -= 1
        self.latencies.append((now, now - arrived))
        if self.waiting:
            self._serve(*self.waiting.popleft())
        d.callback(None)

    def latency(self, start: float, end: float, q: float = 0.5) -> float:
        """The ``q`` quantile of the server's own latency of the requests
        answered in ``[start, end)``."""
        found = sorted(lat for t, lat in self.latencies if start <= t < end)
        if not found:
            return math.nan
        return found[min(len(found) - 1, int(q * len(found)))]


class StrictSenderServer:
    """A provider that allows one message per sender per ``interval``, timed
    where it counts: at the provider, after the network's jitter.

    A request leaves the client, reaches the provider ``delay`` seconds later
    (``latency / 2`` plus a uniform draw within ``±jitter``), and is refused
    with 20429 if the provider accepted a message from the same sender less
    than ``interval`` earlier; the answer takes another ``latency / 2``.
    Refused messages are not counted against the sender.

    Args:
        clock: the simulated clock.
        sender: the sender (lane key) of a job's argument.
        interval: the least time between two accepted messages of a sender.
        jitter: the most a request's arrival strays from ``latency / 2``.
        latency: the round trip without jitter.
        guess: the wait the client guesses for a 20429 without Retry-After
            (the SMS adapter's ``default_retry_after``).
        rng: the source of jitter.
        connect: what a sender's first request spends more on its way (a new
            connection: name lookup, TCP, TLS): ~50 ms measured for a
            ``fetchq run`` against a provider on loopback.
    """

    def __init__(
        self,
        clock: Clock,
        sender: Callable[[object], Any],
        interval: float = 1.0,
        jitter: float = 0.02,
        latency: float = 0.1,
        guess: float = 1.0,
        rng: random.Random | None = None,
        connect: float = 0.0,
    ) -> None:
        self.clock = clock
        self.sender = sender
        self.interval = interval
        self.jitter = jitter
        self.latency = latency
        self.guess = guess
        self.rng = random.Random(0) if rng is None else rng
        self.connect = connect
        self.connected: set[Any] = set()
        self.last: dict[Any, float] = {}
        self.accepted = 0
        self.refused = 0
        self.accepted_at: list[tuple[Any, float]] = []
        self.refused_at: list[tuple[Any, float]] = []

    def __call__(self, arg: object) -> defer.Deferred[Any]:
        key = self.sender(arg)
        half = self.latency / 2
        arrive = max(0.0, half + self.rng.uniform(-self.jitter, self.jitter))
        if key not in self.connected:
            self.connected.add(key)
            arrive += self.connect
        d: defer.Deferred[Any] = defer.Deferred()
        self.clock.callLater(arrive, self._arrive, key, d)
        return d

    def _arrive(self, key: Any, d: defer.Deferred[Any]) -> None:
        now = self.clock.seconds()
        last = self.last.get(key)
        half = self.latency / 2
        if last is not None and now - last < self.interval - 1e-9:
            self.refused += 1
            self.refused_at.append((key, now))
            error = GuessedThrottle(self.guess, "HTTP 429 code 20429")
            self.clock.callLater(half, d.errback, error)
            return
        self.last[key] = now
        self.accepted += 1
        self.accepted_at.append((key, now))
        self.clock.callLater(half, d.callback, None)


class ClientCPU:
    """The client's CPU: one core, shared by launching and finishing jobs and
    by anything else the process does (a hog).

    Sending a request takes ``send`` seconds of CPU and handling its answer
    ``receive`` seconds, one piece of work at a time in arrival order: a
    request leaves when the core gets to it, an answer is seen when the core
    has handled it.  ``hog`` is the share of the core something else takes:
    with ``slice`` 0, a hog in the same process (every piece of work takes
    ``1 / (1 - hog)`` times as long); with a ``slice``, another process on a
    loaded machine, which holds the core for ``slice`` seconds out of every
    ``slice / hog`` (the client's work waits meanwhile, however little of it
    there is).  The most jobs the client can finish per second is
    ``(1 - hog) / (send + receive)``.

    Use :meth:`wrap` for the server the client talks to and pass the same
    object as the controller's ``load``: the controller then reads the lag a
    timer would have (the work queued ahead of it) and the client's own share
    of the core (as :class:`~fetchq.control.load.ProcessLoad` reads the
    loop's thread: not the hog's).

    Args:
        send: CPU seconds to launch one request.
        receive: CPU seconds to handle one answer.
        hog: the share of the core taken by other work, in [0, 1).
        slice: seconds the other work holds the core at a time (0: it
            shares every moment, as a hog in the same process).
    """

    def __init__(
        self,
        send: float = 0.001,
        receive: float = 0.0015,
        hog: float = 0.0,
        slice: float = 0.0,
    ) -> None:
        if not 0 <= hog < 1:
            raise ValueError(f"hog must be in [0, 1), not {hog!r}")
        if not slice >= 0:
            raise ValueError(f"slice must be >= 0, not {slice!r}")
        self.send = send
        self.receive = receive
        self.hog = hog
        self.slice = slice if hog else 0.0
        self.clock: Clock | None = None
        self.free_at = 0.0  # the core is busy until then
        self.busy = 0.0  # CPU seconds of the client's own work
        self._read_at: tuple[float, float] | None = None

    def _work(self, now: float, cost: float) -> float:
        """Queue ``cost`` CPU seconds at ``now``; when it is done."""
        start = max(now, self.free_at)
        if not self.slice:
            done = start + cost / (1 - self.hog)
        else:
            done = self._sliced(start, cost)
        self.busy += cost  # the loop's own CPU (as ProcessLoad reads it)
        self.free_at = done
        return done

    def _sliced(self, start: float, cost: float) -> float:
        """When ``cost`` seconds of work started at ``start`` end, running
        only while the other process does not hold the core (it does for the
        first ``slice`` seconds of every period)."""
        period = self.slice / self.hog
        begun = math.floor(start / period) * period  # this period's start
        t = max(start, begun + self.slice)  # the other process holds [begun, +slice)
        while True:
            room = begun + period - t
            if cost <= room:
                return t + cost
            cost -= room
            begun += period
            t = begun + self.slice

    def wrap(self, clock: Clock, server: Job) -> Job:
        """``server`` as this client sees it, on ``clock``."""
        self.clock = clock

        def job(arg: object) -> defer.Deferred[Any]:
            d: defer.Deferred[Any] = defer.Deferred()
            sent = self._work(clock.seconds(), self.send)
            clock.callLater(sent - clock.seconds(), self._send, server, arg, d)
            return d

        return job

    def _send(self, server: Job, arg: object, d: defer.Deferred[Any]) -> None:
        answer = server(arg)
        answer.addBoth(self._answered, d)

    def _answered(self, result: Any, d: defer.Deferred[Any]) -> None:
        assert self.clock is not None
        now = self.clock.seconds()
        seen = self._work(now, self.receive)
        if isinstance(result, Failure):
            self.clock.callLater(seen - now, d.errback, result)
        else:
            self.clock.callLater(seen - now, d.callback, result)

    # -- ClientLoad ---------------------------------------------------------

    def read(self, due: float, now: float) -> LoadReading:
        """How late a timer due at ``due`` fires (the work queued ahead of
        it, and the other process's slice), and the core's busy share since
        the last reading."""
        # The work queued ahead of it, and on average half of the other
        # process's slice whenever the timer falls due inside one.
        lag = max(0.0, self.free_at - due) + self.hog * self.slice / 2
        cpu: float | None = None
        busy = self.busy - self._ahead(now)
        last = self._read_at
        if last is not None and now > last[0]:
            cpu = min(1.0, max(0.0, (busy - last[1]) / (now - last[0])))
        self._read_at = (now, busy)
        return LoadReading(lag, cpu)

    def _ahead(self, now: float) -> float:
        """CPU seconds of work queued but not yet done at ``now``."""
        if self.free_at <= now:
            return 0.0
        if not self.slice:
            return self.free_at - now
        # Approximately: the share of the time left the client runs.
        return (self.free_at - now) * (1 - self.hog)
