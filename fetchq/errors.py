"""The exceptions fetchq raises, in one small tree.

::

    FetchqError                      base of everything fetchq raises
    ├── QueueStopped                 put()/resume() on a queue that was stopped
    ├── AlreadyQueued                DeferredPriorityQueue.put() of an item it
    │   (ValueError, RuntimeError)   holds (RuntimeError as in txrdq)
    ├── JobError                     a job did not succeed; ``.job`` is the Job
    │   ├── JobFailed                its function failed (``job.failure`` holds why)
    │   └── JobCancelled             cancelled (also a Twisted ``CancelledError``)
    ├── RetryAfter                   raised *by a job function*: run me again later
    │   └── Throttled                ...because the remote side said "slow down"
    ├── StoreError                   a state file cannot be used (fetchq.store)
    ├── RecipeError (ValueError)     a recipe has problems, each file:LINE:COL
    │                                (fetchq.recipe)
    └── FetchError                   how a fetch failed (fetchq.fetch): BadURL,
                                     ForbiddenAddress, ConnectionFailed,
                                     FetchTimeout, BodyTooLarge,
                                     TooManyRedirects, HTTPStatusError, ...

The last three live beside the layers that raise them, so the core never
imports them.  Misuse of an API (a negative width, reprioritising an unknown
job) raises the builtin that fits (``ValueError``, ``KeyError``,
``RuntimeError``) at call time.
Failures while running travel as a ``Failure`` whose value is a ``JobError``
carrying the job, so the caller always has the job's details.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError

if TYPE_CHECKING:
    from fetchq.job import Job

__all__ = [
    "AlreadyQueued",
    "FetchqError",
    "JobCancelled",
    "JobError",
    "JobFailed",
    "QueueStopped",
    "RetryAfter",
    "Throttled",
]


class FetchqError(Exception):
    """Base class of every exception fetchq raises."""

    fatal: bool = False
    """True when a job failed in a way no other job can avoid either, so a
    run must stop rather than fail every row: credentials the service
    refuses, a recipe that is wrong for the service.  A class or an
    instance may set it; :attr:`fix` then says what to change."""

    fix: str = ""
    """For a fatal error: what the user should fix, in a few words."""

    neutral: bool = False
    """True when a job's failure says nothing about whether the run can
    succeed (a URL the site's robots.txt disallows): the job is recorded as
    failed, but a run's failure breaker neither counts it nor takes it for
    a success."""


class QueueStopped(FetchqError):
    """Raised by ``put()`` (and ``resume()``) once ``stop()`` has been called."""


class AlreadyQueued(FetchqError, ValueError, RuntimeError):
    """``DeferredPriorityQueue.put()`` of an item the queue already holds.

    A ``ValueError`` (what fetchq raised before) and a ``RuntimeError`` (what
    txrdq raised), so code written for either catches it.
    """


def _job_attribute(name: str) -> Any:
    """A read-only property of a JobError that reads ``name`` off its job."""

    def read(self: JobError) -> Any:
        return getattr(self.job, name)

    return property(read, doc=f"``self.job.{name}`` (txrdq errbacked with the job).")


class JobError(FetchqError):
    """A job ended without a result.

    txrdq errbacked with the Job itself; code that reads the job's attributes
    off ``failure.value`` keeps working, because a JobError reads them through
    from its job: ``state``, ``jobarg``, ``priority``, ``failure``,
    ``result``, ``queuedTime``, ``startTime`` and ``stopTime``.

    Args:
        job: the job, with its timing, attempts and (for failures) the original
            ``Failure`` in ``job.failure``.
    """

    def __init__(self, job: Job) -> None:
        super().__init__(job)
        self.job = job

    state = _job_attribute("state")
    jobarg = _job_attribute("jobarg")
    priority = _job_attribute("priority")
    failure = _job_attribute("failure")
    result = _job_attribute("result")
    queuedTime = _job_attribute("queued_at")
    startTime = _job_attribute("launched_at")
    stopTime = _job_attribute("stopped_at")

    def __str__(self) -> str:
        return f"{type(self).__name__}: {self.job!r}"


class JobFailed(JobError):
    """The job's function raised or its Deferred failed (after any retries)."""


class JobCancelled(JobError, CancelledError):
    """The job was cancelled: by ``d.cancel()``, ``job.cancel()``, ``clear()`` or
    ``stop(cancel_underway=True)``.

    It is also a :class:`twisted.internet.defer.CancelledError`, so code that
    already handles Twisted cancellation handles this too.
    """


class RetryAfter(FetchqError):
    """Raise this from a job function (or fail its Deferred with it) to have the
    job run again after ``delay`` seconds, within the queue's retry policy's
    ``max_attempts``.

    Args:
        delay: seconds to wait before the next attempt (``>= 0``).
        reason: a short human-readable reason, kept for logs and events.
    """

    def __init__(self, delay: float, reason: str = "") -> None:
        if not delay >= 0:
            raise ValueError(f"RetryAfter delay must be >= 0, not {delay!r}")
        super().__init__(delay, reason)
        self.delay = float(delay)
        self.reason = reason

    def __str__(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return f"retry after {self.delay:g}s{why}"


class Throttled(RetryAfter):
    """The remote side throttled us (HTTP 429/503 with Retry-After, a provider's
    rate-limit code).  Like :class:`RetryAfter`, and in addition the job's lane
    (if it has a key) is held for ``delay`` seconds so no other job of that lane
    launches meanwhile.  Observers see the outcome ``"throttled"``, which an
    adaptive controller treats differently from a plain error.
    """
