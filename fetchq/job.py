"""Jobs: one argument on its way through a queue, with its timing and outcome.

A job's lifecycle is declared as data in :data:`TRANSITIONS`::

    pending ──► underway ──► succeeded
       │  ▲         │ ├────► failed
       │  │         │ └────► retrying ──► pending (when its delay is up)
       │  └─────────┼───────────┘
       └────────────┴──────────────────► cancelled  (from pending, underway or retrying)

The queue is the only thing that moves a job between states; observers see
every move as an event (see :mod:`fetchq.events`).
"""

from __future__ import annotations

import enum
import reprlib
from typing import TYPE_CHECKING, Any

from twisted.python.failure import Failure

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

__all__ = ["TRANSITIONS", "Job", "JobList", "JobState", "Outcome"]


class JobState(enum.Enum):
    """Where a job is in its lifecycle."""

    PENDING = "pending"
    """Waiting for a free slot (and a rate token, and its lane)."""
    UNDERWAY = "underway"
    """Its function has been called and has not finished."""
    RETRYING = "retrying"
    """An attempt failed retryably; pending again once ``not_before`` passes."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_pending(self) -> bool:
        """True for states counted by ``pending()``: pending and retrying."""
        return self in (JobState.PENDING, JobState.RETRYING)

    @property
    def is_final(self) -> bool:
        """True once the job's put() Deferred has fired for good."""
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class Outcome(enum.Enum):
    """How one attempt of a job ended, as reported to observers."""

    OK = "ok"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RETRIED = "retried"
    """The attempt failed and the job will be tried again."""
    THROTTLED = "throttled"
    """The remote side asked us to slow down; the job will be tried again."""


S = JobState
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    S.PENDING: frozenset({S.UNDERWAY, S.CANCELLED}),
    S.UNDERWAY: frozenset({S.SUCCEEDED, S.FAILED, S.RETRYING, S.CANCELLED}),
    S.RETRYING: frozenset({S.PENDING, S.CANCELLED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}
"""Every state a job may move to from each state; nothing else ever happens."""

_PICKLED = (
    "arg",
    "priority",
    "key",
    "id",
    "state",
    "attempts",
    "queued_at",
    "launched_at",
    "stopped_at",
    "not_before",
)


class Job:
    """One job: the argument given to ``put()``, its priority, lane key and
    identity, its state, and when it was queued, launched and stopped.

    Jobs are made by the queue.  One made by hand (``Job(arg, priority)``,
    as txrdq's tests do) belongs to no queue: reprioritising it raises
    ``KeyError`` and cancelling it does nothing.  A finished job is what the
    ``put()`` Deferred fires with (or, for a failure or cancellation, what the
    ``JobError`` it errbacks with carries as ``.job``).  Jobs returned by
    ``pending()``, ``underway()`` and ``stop()`` can be cancelled,
    reprioritised, and pickled: a pickled job holds no Deferred or function,
    only what is needed to ``requeue()`` it into a new queue.

    Attributes:
        arg: the job argument passed to the queue's function.
        key: the lane key given to ``put()``, or None.
        id: the caller's stable identity for the job (JSON-friendly), or None.
        state: a :class:`JobState`.
        attempts: how many times the function has been called for this job.
        queued_at: clock time of ``put()``.
        launched_at: clock time the latest attempt started, or None.
        stopped_at: clock time the job (or its latest attempt) stopped, or None.
        not_before: while retrying, the clock time of the next attempt.

    txrdq's names still work: ``jobarg`` (``arg``), ``queuedTime``,
    ``startTime`` and ``stopTime`` (``queued_at``, ``launched_at``,
    ``stopped_at``), and the state constants ``Job.PENDING``,
    ``Job.UNDERWAY``, ``Job.FINISHED`` (succeeded), ``Job.FAILED`` and
    ``Job.CANCELLED``, which are :class:`JobState` members rather than ints.
    """

    # Kept small on purpose: a million pending jobs must fit in ~400 bytes each.
    # ``priority`` lives in the heap entry, not in a slot of its own.
    __slots__ = (
        "_d",
        "_entry",
        "_outcome",
        "arg",
        "attempts",
        "id",
        "key",
        "launched_at",
        "not_before",
        "queued_at",
        "state",
        "stopped_at",
    )

    PENDING = JobState.PENDING
    UNDERWAY = JobState.UNDERWAY
    FINISHED = JobState.SUCCEEDED
    FAILED = JobState.FAILED
    CANCELLED = JobState.CANCELLED

    arg: Any
    key: Any
    id: Any
    state: JobState
    attempts: int
    queued_at: float
    launched_at: float | None
    stopped_at: float | None
    not_before: float | None
    _entry: tuple[Any, int, Job]
    _d: Deferred[Job] | None
    _outcome: Any

    def __init__(
        self,
        arg: Any,
        priority: Any = 0,
        seq: int = 0,
        key: Any = None,
        job_id: Any = None,
        queued_at: float = 0.0,
        attempts: int = 0,
    ) -> None:
        self.arg = arg
        self.key = key
        self.id = job_id
        self.state = JobState.PENDING
        self.attempts = attempts
        self.queued_at = queued_at
        self.launched_at = None
        self.stopped_at = None
        self.not_before = None
        self._entry = (priority, seq, self)
        self._d = None
        self._outcome = None

    @property
    def priority(self) -> Any:
        """The job's priority: lower runs first."""
        return self._entry[0]

    @property
    def jobarg(self) -> Any:
        """txrdq's name for :attr:`arg`."""
        return self.arg

    @property
    def queuedTime(self) -> float:
        """txrdq's name for :attr:`queued_at`."""
        return self.queued_at

    @property
    def startTime(self) -> float | None:
        """txrdq's name for :attr:`launched_at`."""
        return self.launched_at

    @property
    def stopTime(self) -> float | None:
        """txrdq's name for :attr:`stopped_at`."""
        return self.stopped_at

    @property
    def result(self) -> Any:
        """What the function returned, once the job has succeeded; else None."""
        return self._outcome if self.state is JobState.SUCCEEDED else None

    @property
    def failure(self) -> Failure | None:
        """The latest failure (a failed, cancelled or retrying job), else None."""
        outcome = self._outcome
        return outcome if isinstance(outcome, Failure) else None

    @property
    def latency(self) -> float | None:
        """Seconds the latest attempt ran, once it has stopped; else None."""
        if self.launched_at is None or self.stopped_at is None:
            return None
        return self.stopped_at - self.launched_at

    def cancel(self) -> None:
        """Cancel the job, exactly as cancelling its ``put()`` Deferred does.

        A pending job is removed; an underway job's Deferred is cancelled.
        Does nothing once the job has finished or left its queue.
        """
        d = self._d
        if d is not None:
            d.cancel()

    def __repr__(self) -> str:
        return (
            f"<Job id={self.id!r} arg={reprlib.repr(self.arg)} "
            f"priority={self.priority!r} key={self.key!r} state={self.state.value}>"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = {name: getattr(self, name) for name in _PICKLED}
        state["state"] = self.state.value
        if self.state is JobState.SUCCEEDED:
            state["result"] = self._outcome
        elif isinstance(self._outcome, Failure):
            failure = self._outcome
            failure.cleanFailure()  # type: ignore[no-untyped-call]
            state["failure"] = failure
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name in _PICKLED:
            if name not in ("priority", "state"):
                object.__setattr__(self, name, state[name])
        self.state = JobState(state["state"])
        self._entry = (state["priority"], 0, self)
        self._d = None
        self._outcome = state.get("result", state.get("failure"))


class JobList(list[Job]):
    """A list of jobs that also compares equal to a set of the same jobs.

    ``underway()`` returns one: a list in launch order, as the seed describes
    (``pending`` and ``underway`` "return lists of job instances"), that still
    equals the set txrdq's ``underway()`` returned (``underway() == set()``).
    """

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (set, frozenset)):
            return len(other) == len(self) and other.issuperset(self)
        return list.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None
