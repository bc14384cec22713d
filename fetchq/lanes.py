"""Lanes: per-key limits inside one queue.

``put(arg, key=...)`` puts a job in the lane named by ``key`` (a host, a
sender number, an API endpoint).  A lane may have its own width (jobs underway
at once) and rate (launches per second), and may be held until a time (a
server's Retry-After).  Jobs without a key have no lane and pay nothing for
lanes.  A lane exists only while it has something to remember (pending or
underway jobs, a hold, a rate bucket that is not yet full): a million distinct
hosts that each saw one job cost nothing once they are done.
"""

from __future__ import annotations

from typing import Any

import attrs

from fetchq.ratelimit import TokenBucket

__all__ = ["LaneInfo"]


@attrs.frozen
class LaneInfo:
    """A snapshot of one lane, for an admin view.

    Attributes:
        key: the lane's key.
        pending: jobs waiting in the lane (not counting jobs waiting to retry).
        underway: the lane's jobs underway now.
        width: the lane's width (None = only the queue's width applies).
        rate: the lane's launch rate per second (None = unlimited).
        held_until: clock time the lane is held until, or None.
    """

    key: Any
    pending: int
    underway: int
    width: int | None
    rate: float | None
    held_until: float | None


class Lane:
    """The mutable state of one lane (internal to the queue).

    ``heap`` holds the lane's pending entries ``(priority, seq, job)`` with lazy
    deletion.  While the lane is *open*, its best live job (``rep``) also has
    its entry in the queue's main heap, so the queue always launches the best
    launchable job across lanes.  A lane that cannot launch (at its width,
    held, or out of rate tokens) is closed: its jobs leave the main heap and
    block nothing else, until a job of the lane finishes or its wake time comes.
    """

    __slots__ = (
        "bucket",
        "heap",
        "hold_until",
        "key",
        "npending",
        "open",
        "rep",
        "underway",
        "wake_at",
        "width",
    )

    def __init__(self, key: Any, width: int | None, bucket: TokenBucket | None):
        self.key = key
        self.heap: list[tuple[Any, int, Any]] = []
        self.npending = 0
        self.underway = 0
        self.rep: Any = None
        self.open = True
        self.hold_until = 0.0
        self.wake_at: float | None = None
        self.width = width
        self.bucket = bucket

    def info(self) -> LaneInfo:
        """A snapshot of this lane."""
        return LaneInfo(
            key=self.key,
            pending=self.npending,
            underway=self.underway,
            width=self.width,
            rate=None if self.bucket is None else self.bucket.rate,
            held_until=self.hold_until or None,
        )
