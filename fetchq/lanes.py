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

import heapq
from collections.abc import Callable
from typing import Any

import attrs

from fetchq._validate import check_width
from fetchq.events import Event, Observer, RateChanged, WidthChanged
from fetchq.job import Job, JobState
from fetchq.ratelimit import EPSILON, TokenBucket, check_rate, reconfigure

__all__ = ["LaneInfo", "LaneScheduling"]

_heappush = heapq.heappush
_heappop = heapq.heappop
_PENDING = JobState.PENDING


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


def live(entry: tuple[Any, int, Job]) -> bool:
    """Whether a heap entry is still its job's current, pending entry."""
    job = entry[2]
    return job._entry is entry and job.state is _PENDING


class LaneScheduling:
    """The lane half of :class:`~fetchq.queue.ResizableDispatchQueue`: lane
    configuration, opening and closing lanes, and dropping idle ones.

    A mixin, kept apart so the queue's module reads as the dispatch loop and
    job lifecycle; it uses the queue's main heap, timer and observers.
    """

    _heap: list[tuple[Any, int, Job]]
    _lanes: dict[Any, Lane]
    _sleepers: list[tuple[float, int, Lane]]
    _lane_width_default: int | None
    _lane_rate_default: tuple[float | None, int]
    _lane_width_overrides: dict[Any, int | None]
    _lane_rate_overrides: dict[Any, tuple[float | None, int]]
    _observers: tuple[Observer, ...]
    _garbage: int
    _seconds: Callable[[], float]
    _seq: Any
    _dispatch: Callable[[], None]
    _wake_at: Callable[[float], None]
    _emit: Callable[[Event], None]

    def lanes(self) -> list[LaneInfo]:
        """A snapshot of every lane that currently exists."""
        return [lane.info() for lane in self._lanes.values()]

    def lane(self, key: Any) -> LaneInfo | None:
        """A snapshot of lane ``key``, or None if the queue keeps nothing for
        it (no job pending or underway, no hold)."""
        lane = self._lanes.get(key)
        return None if lane is None else lane.info()

    @property
    def lane_width(self) -> int | None:
        """The default width of lanes without their own (None = no cap)."""
        return self._lane_width_default

    def set_lane_width(self, key: Any, width: int | None) -> None:
        """Set lane ``key``'s width, or the default for all lanes if ``key``
        is None.  ``width`` None lifts the cap (for a key: back to default)."""
        if width is not None:
            check_width(width, "lane width")
        if key is None:
            old = self._lane_width_default
            self._lane_width_default = width
            targets = [
                lane
                for k, lane in self._lanes.items()
                if k not in self._lane_width_overrides
            ]
        else:
            old = self._lane_width_overrides.get(key, self._lane_width_default)
            if width is None:
                self._lane_width_overrides.pop(key, None)
                width = self._lane_width_default
            else:
                self._lane_width_overrides[key] = width
            lane = self._lanes.get(key)
            targets = [] if lane is None else [lane]
        now = self._seconds()
        for lane in targets:
            lane.width = width
            self._lane_changed(lane, now)
        if self._observers and old != width:
            self._emit(WidthChanged(old, width, lane=True, key=key))
        self._dispatch()

    def set_lane_rate(self, key: Any, rate: float | None, burst: int = 1) -> None:
        """Set lane ``key``'s launch rate, or the default for all lanes if
        ``key`` is None.  ``rate`` None removes the limit."""
        check_rate(rate, burst)
        if key is None:
            old = self._lane_rate_default[0]
            self._lane_rate_default = (rate, burst)
            targets = [
                lane
                for k, lane in self._lanes.items()
                if k not in self._lane_rate_overrides
            ]
        else:
            old = self._lane_rate_overrides.get(key, self._lane_rate_default)[0]
            self._lane_rate_overrides[key] = (rate, burst)
            lane = self._lanes.get(key)
            targets = [] if lane is None else [lane]
        now = self._seconds()
        for lane in targets:
            lane.bucket = reconfigure(lane.bucket, rate, burst, now)
            self._lane_changed(lane, now)
        if self._observers:
            self._emit(RateChanged(old, rate, burst, lane=True, key=key))
        self._dispatch()

    @property
    def lane_rate(self) -> float | None:
        """The default launch rate of lanes without their own (None = none)."""
        return self._lane_rate_default[0]

    @property
    def lane_burst(self) -> int:
        """The burst of the default lane rate."""
        return self._lane_rate_default[1]

    def reset_lane(self, key: Any) -> None:
        """Forget lane ``key``'s own width and rate: it follows the defaults
        again, and the queue keeps nothing for it once it is idle."""
        width = self._lane_width_overrides.pop(key, None)
        rate = self._lane_rate_overrides.pop(key, None)
        lane = self._lanes.get(key)
        if lane is None:
            return
        now = self._seconds()
        if width is not None:
            lane.width = self._lane_width_default
            if self._observers and width != lane.width:
                self._emit(WidthChanged(width, lane.width, lane=True, key=key))
        if rate is not None:
            rate_default, burst = self._lane_rate_default
            lane.bucket = reconfigure(lane.bucket, rate_default, burst, now)
            if self._observers and rate[0] != rate_default:
                self._emit(
                    RateChanged(rate[0], rate_default, burst, lane=True, key=key)
                )
        self._lane_changed(lane, now)
        self._dispatch()

    def _new_lane(self, key: Any, now: float) -> Lane:
        width = self._lane_width_overrides.get(key, self._lane_width_default)
        rate, burst = self._lane_rate_overrides.get(key, self._lane_rate_default)
        bucket = None if rate is None else TokenBucket(rate, burst, now)
        lane = self._lanes[key] = Lane(key, width, bucket)
        return lane

    def _lane_wait(self, lane: Lane, now: float) -> float | None:
        """0.0 if the lane may launch now; else seconds until it may (a hold
        or its rate), or None if it waits for one of its jobs to finish."""
        if lane.hold_until > now + EPSILON:
            return lane.hold_until - now
        if lane.width is not None and lane.underway >= lane.width:
            return None
        bucket = lane.bucket
        if bucket is not None and not bucket.ready(now):
            return bucket.wait(now)
        return 0.0

    def _take_from_lane(self, lane: Lane, entry: tuple[Any, int, Job]) -> None:
        """The lane's rep is launching: take it off the lane's heap."""
        heap = lane.heap
        while _heappop(heap) is not entry:
            pass  # everything above the rep is stale
        lane.npending -= 1
        lane.underway += 1
        if lane.bucket is not None:
            lane.bucket.take()
        if lane.width is not None and lane.underway >= lane.width:
            lane.open = False
            lane.rep = None
        else:
            self._push_rep(lane)

    def _push_rep(self, lane: Lane) -> None:
        """Make the lane's best live job its representative in the main heap."""
        heap = lane.heap
        while heap:
            entry = heap[0]
            if live(entry):
                lane.rep = entry[2]
                _heappush(self._heap, entry)
                return
            _heappop(heap)
        lane.rep = None

    def _close(self, lane: Lane, now: float, wait: float | None) -> None:
        """The lane cannot launch: take it out of the main heap until it can."""
        lane.open = False
        lane.rep = None
        if wait is not None:
            self._sleep(lane, now + wait)

    def _sleep(self, lane: Lane, when: float) -> None:
        if lane.wake_at is not None and lane.wake_at <= when:
            return
        lane.wake_at = when
        _heappush(self._sleepers, (when, next(self._seq), lane))
        self._wake_at(when)

    def _lane_release(self, key: Any, now: float) -> None:
        lane = self._lanes[key]
        lane.underway -= 1
        self._lane_changed(lane, now)

    def _lane_changed(self, lane: Lane, now: float) -> None:
        """Something that may unblock or idle the lane happened."""
        if not lane.open:
            wait = self._lane_wait(lane, now)
            if wait == 0.0:
                lane.open = True
                self._push_rep(lane)
            elif wait is not None:
                self._sleep(lane, now + wait)
        if lane.npending == 0 and lane.underway == 0:
            self._settle(lane, now)

    def _settle(self, lane: Lane, now: float) -> None:
        """Drop an idle lane unless a hold or a refilling bucket needs it."""
        if lane.hold_until > now + EPSILON:
            self._sleep(lane, lane.hold_until)
            return
        bucket = lane.bucket
        if bucket is not None:
            refill = bucket.full_in(now)
            if refill > EPSILON:
                self._sleep(lane, now + refill)
                return
        if self._lanes.get(lane.key) is lane:
            del self._lanes[lane.key]
        lane.wake_at = None

    def _lane_compact(self, lane: Lane) -> None:
        if len(lane.heap) > 2 * lane.npending + 64:
            lane.heap[:] = [e for e in lane.heap if live(e)]
            heapq.heapify(lane.heap)
