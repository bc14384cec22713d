"""fetchq: slow remote work at a controlled pace, on Twisted.

The core is :class:`ResizableDispatchQueue`: put jobs in with a priority; a
width caps how many run at once and can change at any moment; an optional
rate caps launches per second; lanes give per-key limits; jobs can be
cancelled, reprioritised, retried, paused, resumed, and a clean stop returns
the jobs not yet processed.
"""

from fetchq.dpq import DeferredPriorityQueue
from fetchq.errors import (
    AlreadyQueued,
    FetchqError,
    JobCancelled,
    JobError,
    JobFailed,
    QueueStopped,
    RetryAfter,
    Throttled,
)
from fetchq.events import (
    ControlDecision,
    Event,
    JobFinished,
    JobLaunched,
    JobQueued,
    JobWithdrawn,
    LaneHeld,
    LaneReleased,
    Observer,
    RateChanged,
    WidthChanged,
)
from fetchq.job import Job, JobState, Outcome
from fetchq.lanes import LaneInfo
from fetchq.pool import DeferredPool
from fetchq.queue import ResizableDispatchQueue
from fetchq.retry import RetryPolicy

__version__ = "0.1.0"

__all__ = [
    "AlreadyQueued",
    "ControlDecision",
    "DeferredPool",
    "DeferredPriorityQueue",
    "Event",
    "FetchqError",
    "Job",
    "JobCancelled",
    "JobError",
    "JobFailed",
    "JobFinished",
    "JobLaunched",
    "JobQueued",
    "JobState",
    "JobWithdrawn",
    "LaneHeld",
    "LaneInfo",
    "LaneReleased",
    "Observer",
    "Outcome",
    "QueueStopped",
    "RateChanged",
    "ResizableDispatchQueue",
    "RetryAfter",
    "RetryPolicy",
    "Throttled",
    "WidthChanged",
    "__version__",
]
