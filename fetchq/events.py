"""Events a queue emits to its observers.

An observer is any callable taking one event.  Attach it with
``queue.subscribe(observer)``, which returns a function that detaches it.
Progress displays, metrics, the admin interface and the adaptive controller
all listen here; none of them reaches into the queue's internals.  With no
observer attached no event object is ever built.

Every job move is reported exactly once:

- :class:`JobQueued` when ``put()`` or ``requeue()`` accepts a job;
- :class:`JobLaunched` each time an attempt starts;
- :class:`JobFinished` each time an attempt ends, and when a job that never
  launched is cancelled, with the :class:`~fetchq.job.Outcome`;
- :class:`JobWithdrawn` when ``withdraw()`` hands a pending job back.

:class:`LaneHeld` says a lane (or the whole queue) is held until a time;
:class:`LaneReleased` that such a hold was ended early.

:class:`ControlDecision` is not the queue's own: an adaptive controller
announces each decision through ``queue.announce()``, so that every observer
of the queue (the summary, the report, metrics) reads the same numbers in the
same order as the job events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import attrs

from fetchq.job import Job, Outcome

__all__ = [
    "ControlDecision",
    "Event",
    "JobFinished",
    "JobLaunched",
    "JobQueued",
    "JobWithdrawn",
    "LaneHeld",
    "LaneReleased",
    "Observer",
    "RateChanged",
    "WidthChanged",
]


@attrs.frozen
class JobQueued:
    """A job was accepted by ``put()`` or ``requeue()``."""

    job: Job
    time: float


@attrs.frozen
class JobLaunched:
    """An attempt of a job started; ``job.attempts`` is its number (from 1)."""

    job: Job
    time: float


@attrs.frozen
class JobFinished:
    """An attempt of a job ended, or a never-launched job was cancelled.

    Attributes:
        outcome: ``ok``, ``failed``, ``cancelled``, ``retried`` or ``throttled``.
        latency: seconds the attempt ran, or None if it never launched.
    """

    job: Job
    outcome: Outcome
    latency: float | None
    time: float


@attrs.frozen
class JobWithdrawn:
    """A pending (or retrying) job left the queue without running or being
    cancelled: ``queue.withdraw()`` handed it back to whoever keeps it."""

    job: Job
    time: float


@attrs.frozen
class WidthChanged:
    """A width changed: the queue's (``key`` None) or a lane's default/override.

    ``lane`` is False for the queue-wide width, True for lane widths (then
    ``key`` None means the default for lanes without their own setting).
    """

    old: int | None
    new: int | None
    lane: bool = False
    key: Any = None


@attrs.frozen
class RateChanged:
    """A launch rate changed (launches per second; None = unlimited)."""

    old: float | None
    new: float | None
    burst: int
    lane: bool = False
    key: Any = None


@attrs.frozen
class LaneHeld:
    """A lane (or, with ``key`` None, the whole queue) is held: nothing of it
    launches before ``until`` (a server's Retry-After, a spent quota, an
    admin's hold).  Sent when a hold begins or is extended.

    Attributes:
        key: the lane's key, or None for the whole queue.
        until: clock time the hold ends.
        time: clock time of the hold.
    """

    key: Any
    until: float
    time: float


@attrs.frozen
class LaneReleased:
    """A hold ended early: ``queue.release(key)`` (an operator's release)
    ended lane ``key``'s hold, or the whole queue's with ``key`` None."""

    key: Any
    time: float


@attrs.frozen
class ControlDecision:
    """One decision of an adaptive controller, for the queue or one lane.

    Attributes:
        controller: the algorithm's name (``"default"``, ``"gradient"``, ...).
        key: the lane's key, or None for the queue-wide width.
        width: the width after the decision.
        rate: the launch rate after the decision (None = not paced).
        in_flight: most jobs underway at once during the interval.
        samples: latency samples (successes) in the interval.
        latency: the interval's median latency in seconds, or None.
        baseline: the latency the controller compares against, or None.
        gradient: baseline / latency as the algorithm used it, or None.
        drops: drops (timeouts, resets, 429/503, ...) in the interval.
        throttles: drops that carried a time to wait (Retry-After, a reset).
        reason: why the width or rate moved (``"grow"``, ``"shrink"``,
            ``"drop"``, ``"app-limited"``, ``"probe"``, ``"pace"``, ...).
        time: clock time of the decision.
    """

    controller: str
    key: Any
    width: int
    rate: float | None
    in_flight: int
    samples: int
    latency: float | None
    baseline: float | None
    gradient: float | None
    drops: int
    throttles: int
    reason: str
    time: float


Event: TypeAlias = (
    JobQueued
    | JobLaunched
    | JobFinished
    | JobWithdrawn
    | WidthChanged
    | RateChanged
    | LaneHeld
    | LaneReleased
    | ControlDecision
)
Observer: TypeAlias = Callable[[Event], object]
