"""Simulated servers on a :class:`twisted.internet.task.Clock`, to try a
controller's settings deterministically, in simulated time.

Each server is a job function: ``server(arg)`` returns a Deferred that fires
after the simulated latency, or fails with the error a real client would see.
:func:`simulate` runs a :class:`~fetchq.ResizableDispatchQueue` of ``jobs``
jobs against one, under a controller or a fixed width, and returns a
:class:`SimResult` with throughput, latency, first-try success and a timeline.

- :class:`CapacityServer`: capacity C; an arrival that finds n requests in
  flight (itself included) takes ``base`` seconds while n <= C, else
  ``base * n / C`` (``growth="linear"``: throughput stays at C/base) or
  ``base * (n / C) ** 2`` (``"quadratic"``: throughput falls past C).  The
  capacity may follow a schedule (40 -> 10 -> 40), and error bursts may be
  injected (500s, which say nothing of load, or resets, which are drops).
- :class:`QuotaServer`: a token bucket of ``rate`` per second (``burst``
  deep); a request without a token is answered 429, with a Retry-After
  (:class:`~fetchq.Throttled`) or without one (:class:`Rejected`, a drop).

Example::

    from fetchq.control import AdaptiveController
    from fetchq.control.sim import CapacityServer, simulate

    result = simulate(
        lambda clock: CapacityServer(clock, capacity=20, base=0.01),
        AdaptiveController(max_width=200),
        jobs=20_000,
    )
    print(result.throughput(5, result.elapsed), result.mean_latency(5, result.elapsed))
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet import error as tx_error
from twisted.internet.task import Clock

from fetchq.control.controller import Controller
from fetchq.control.signals import Signal
from fetchq.errors import FetchqError, Throttled
from fetchq.events import ControlDecision, Event, JobFinished, JobLaunched
from fetchq.job import Outcome
from fetchq.queue import ResizableDispatchQueue
from fetchq.retry import RetryPolicy

__all__ = [
    "CapacityServer",
    "QuotaServer",
    "Rejected",
    "ServerError",
    "SimResult",
    "simulate",
]


class Rejected(FetchqError):
    """A 429 without Retry-After: a drop, retried with backoff."""

    signal = Signal.DROP


class ServerError(FetchqError):
    """A 500: says nothing about load (ignored by controllers)."""

    signal = Signal.IGNORE


def _later(
    clock: Clock, delay: float, error: Exception | None = None
) -> defer.Deferred[Any]:
    d: defer.Deferred[Any] = defer.Deferred()
    if error is None:
        clock.callLater(delay, d.callback, None)
    else:
        clock.callLater(delay, d.errback, error)
    return d


@attrs.define
class Burst:
    """Requests arriving in ``[start, end)`` fail: ``kind`` "error" (HTTP
    500, ignored) or "reset" (connection reset, a drop)."""

    start: float
    end: float
    kind: str = "error"


class CapacityServer:
    """A server whose latency grows once more than its capacity is in flight.

    Args:
        clock: the simulated clock.
        capacity: C, or a schedule ``[(from_time, C), ...]`` (sorted).
        base: latency in seconds at or below capacity.
        growth: ``"linear"`` or ``"quadratic"`` past capacity.
        timeout: the client's timeout: an answer slower than this fails
            after ``timeout`` seconds with a timeout (a drop).
        bursts: error bursts.
    """

    def __init__(
        self,
        clock: Clock,
        capacity: int | Sequence[tuple[float, int]] = 20,
        base: float = 0.01,
        growth: str = "linear",
        timeout: float = 2.0,
        bursts: Sequence[Burst] = (),
    ) -> None:
        if growth not in ("linear", "quadratic"):
            raise ValueError(f"growth must be 'linear' or 'quadratic', not {growth!r}")
        self.clock = clock
        self.schedule = (
            [(0.0, capacity)] if isinstance(capacity, int) else list(capacity)
        )
        self.base = base
        self.power = 1 if growth == "linear" else 2
        self.timeout = timeout
        self.bursts = list(bursts)
        self.in_flight = 0
        self.served = 0

    def capacity(self, now: float) -> int:
        """The capacity at simulated time ``now``."""
        current = self.schedule[0][1]
        for start, capacity in self.schedule:
            if start <= now:
                current = capacity
        return current

    def __call__(self, arg: object) -> defer.Deferred[Any]:
        now = self.clock.seconds()
        for burst in self.bursts:
            if burst.start <= now < burst.end:
                if burst.kind == "reset":
                    return _later(self.clock, self.base / 2, tx_error.ConnectionLost())
                return _later(self.clock, self.base, ServerError("HTTP 500"))
        self.in_flight += 1
        load = self.in_flight / self.capacity(now)
        latency = self.base * max(1.0, load) ** self.power
        d: defer.Deferred[Any]
        if latency > self.timeout:
            d = _later(self.clock, self.timeout, defer.TimeoutError())
        else:
            d = _later(self.clock, latency)
        return d.addBoth(self._done)

    def _done(self, result: Any) -> Any:
        self.in_flight -= 1
        self.served += 1
        return result


class QuotaServer:
    """A server with a request-rate quota: a token bucket.

    Args:
        clock: the simulated clock.
        rate: requests allowed per second.
        burst: the bucket's depth.
        latency: seconds each answer takes.
        retry_after: answer 429s with a Retry-After (the time until a token)
            as :class:`~fetchq.Throttled`; else :class:`Rejected`.
    """

    def __init__(
        self,
        clock: Clock,
        rate: float = 100.0,
        burst: int = 10,
        latency: float = 0.01,
        retry_after: bool = True,
    ) -> None:
        self.clock = clock
        self.rate = rate
        self.burst = burst
        self.latency = latency
        self.retry_after = retry_after
        self.tokens = float(burst)
        self.stamp = clock.seconds()
        self.accepted = 0
        self.rejected = 0

    def __call__(self, arg: object) -> defer.Deferred[Any]:
        now = self.clock.seconds()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.accepted += 1
            return _later(self.clock, self.latency)
        self.rejected += 1
        wait = (1 - self.tokens) / self.rate
        error: Exception = (
            Throttled(wait, "HTTP 429") if self.retry_after else Rejected("HTTP 429")
        )
        return _later(self.clock, self.latency, error)


@attrs.define
class SimResult:
    """What a simulated run did.

    Attributes:
        elapsed: simulated seconds until the last job finished (or the limit).
        done: jobs that succeeded.
        failed: jobs that failed for good (out of attempts).
        first_try: jobs whose first attempt succeeded.
        attempts: attempts made.
        drops: attempts that failed.
        finished: ``(time, latency, attempt)`` of each success.
        widths: ``(time, width, rate)`` after each change.
        decisions: the controller's decisions.
    """

    elapsed: float = 0.0
    done: int = 0
    failed: int = 0
    first_try: int = 0
    attempts: int = 0
    drops: int = 0
    finished: list[tuple[float, float, int]] = attrs.Factory(list)
    widths: list[tuple[float, int, float | None]] = attrs.Factory(list)
    decisions: list[ControlDecision] = attrs.Factory(list)

    def throughput(self, start: float, end: float) -> float:
        """Successes per second in ``[start, end)``."""
        n = sum(1 for t, _, _ in self.finished if start <= t < end)
        return n / (end - start) if end > start else 0.0

    def mean_latency(self, start: float, end: float) -> float:
        """Mean latency of the successes in ``[start, end)``."""
        lat = [lat for t, lat, _ in self.finished if start <= t < end]
        return sum(lat) / len(lat) if lat else math.nan

    def first_try_ratio(self, start: float = 0.0) -> float:
        """Of the jobs that succeeded after ``start``, the share that
        succeeded on their first attempt."""
        after = [a for t, _, a in self.finished if t >= start]
        return sum(1 for a in after if a == 1) / len(after) if after else math.nan

    def width_at(self, time: float) -> int:
        """The queue's width at ``time``."""
        width = 0
        for t, w, _ in self.widths:
            if t > time:
                break
            width = w
        return width

    def max_width(self, start: float, end: float) -> int:
        """The largest width in force at any time in ``[start, end)``."""
        widest = self.width_at(start)
        for t, w, _ in self.widths:
            if start <= t < end:
                widest = max(widest, w)
        return widest

    def converged_at(
        self, ok: Callable[[float, float], bool], step: float = 0.5
    ) -> float | None:
        """The earliest time from which every ``step``-second window until the
        end satisfies ``ok(throughput, mean_latency)``; None if never."""
        end = self.elapsed
        windows = int(end // step)
        converged: float | None = None
        for i in range(windows - 1, -1, -1):
            start = i * step
            stop = start + step
            if not ok(self.throughput(start, stop), self.mean_latency(start, stop)):
                break
            converged = start
        return converged


def simulate(
    server: Callable[[Clock], Callable[[object], defer.Deferred[Any]]],
    controller: Controller | int,
    jobs: int = 10_000,
    limit: float = 600.0,
    retry: RetryPolicy | None = None,
    key: Callable[[int], Any] | None = None,
    width: int | None = None,
    seed: int = 0,
    lane_rate: float | None = None,
) -> SimResult:
    """Run ``jobs`` jobs against ``server(clock)`` in simulated time.

    Args:
        server: builds the server on the simulation's clock.
        controller: a controller, or a fixed width.
        jobs: how many jobs (all put at the start).
        limit: simulated seconds after which the run is cut short.
        retry: the retry policy (default: up to 20 attempts, drops retried
            with backoff from 10 ms).
        key: the lane key of job ``i`` (default: no lanes).
        width: the queue's starting width (default: the fixed width, or 1
            under a controller).
        seed: seeds the retry jitter, so a run repeats exactly.
        lane_rate: each lane's launch rate (the queue's ``lane_rate``).
    """
    clock = Clock()
    func = server(clock)
    if retry is None:
        retry = RetryPolicy(
            max_attempts=20,
            base_delay=0.01,
            max_delay=1.0,
            retry_on=(
                Rejected,
                tx_error.ConnectionLost,
                defer.TimeoutError,
                ServerError,
            ),
        )
    queue = ResizableDispatchQueue(
        func,
        width=width or (controller if isinstance(controller, int) else 1),
        clock=clock,
        retry=retry,
        rng=random.Random(seed),
        lane_rate=lane_rate,
    )
    result = SimResult()
    result.widths.append((0.0, queue.width, queue.rate))

    def observe(event: Event) -> None:
        if isinstance(event, JobLaunched):
            result.attempts += 1
        elif isinstance(event, JobFinished):
            if event.outcome is Outcome.OK:
                result.done += 1
                attempt = event.job.attempts
                if attempt == 1:
                    result.first_try += 1
                assert event.latency is not None
                result.finished.append((event.time, event.latency, attempt))
            elif event.outcome is not Outcome.CANCELLED:
                result.drops += 1
        elif isinstance(event, ControlDecision):
            result.decisions.append(event)
            if event.key is None:
                result.widths.append((event.time, queue.width, queue.rate))

    def count_failed(failure: Any) -> None:
        result.failed += 1

    queue.subscribe(observe)
    if not isinstance(controller, int):
        controller.attach(queue)
    for i in range(jobs):
        d = queue.put(i, key=None if key is None else key(i))
        d.addErrback(count_failed)
    while (
        clock.calls and clock.seconds() < limit and result.done + result.failed < jobs
    ):
        clock.advance(max(0.0, clock.calls[0].getTime() - clock.seconds()))
    result.elapsed = clock.seconds()
    if not isinstance(controller, int):
        controller.detach()
    return result
