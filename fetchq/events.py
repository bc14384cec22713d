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
  launched is cancelled, with the :class:`~fetchq.job.Outcome`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias

import attrs

from fetchq.job import Job, Outcome

__all__ = [
    "Event",
    "JobFinished",
    "JobLaunched",
    "JobQueued",
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


Event: TypeAlias = JobQueued | JobLaunched | JobFinished | WidthChanged | RateChanged
Observer: TypeAlias = Callable[[Event], object]
