"""The resizable dispatch queue: fetchq's core.

Jobs go in with a priority (lower first, FIFO within a priority) and,
optionally, a lane key.  A *width* caps how many run at once, an optional
*rate* caps launches per second, and each lane may have its own width, rate
and hold.  Everything can be changed while jobs run.  See the README for a
walk-through; the design notes below are for people changing this file.

Design notes
------------
*Pending jobs* live in heaps of entries ``(priority, seq, job)`` with lazy
deletion: an entry is live only while ``job._entry is entry`` and the job is
pending, so cancel and reprioritize are O(1) (they just make the old entry
stale) and a compaction pass drops stale entries when they pile up.

Jobs without a key sit in the *main heap* directly.  Each lane keeps its own
heap; while a lane can launch (it is *open*), its best job (``lane.rep``) also
has its entry in the main heap.  The dispatch loop pops the main heap: a job
whose lane turns out to be full, held or out of tokens closes that lane (its
jobs leave the main heap) and the loop goes on to the next best job, so a
blocked lane never blocks the others.  A closed lane reopens when one of its
jobs finishes or at its wake time.

One timer serves every delayed thing: retry waits, lane wake times, the global
rate and hold.  The dispatch loop is the hot path: with no lanes, rate,
observers or retries in use it costs a heap push/pop, a state change and the
function call; a ``put()`` that can launch at once skips the heap entirely.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Collection, Iterator
from inspect import iscoroutine
from typing import Any, Protocol, cast

from twisted.internet.defer import CancelledError, Deferred, QueueOverflow
from twisted.logger import Logger
from twisted.python.failure import Failure

from fetchq._validate import check_priority, check_width
from fetchq.errors import JobCancelled, JobFailed, QueueStopped, Throttled
from fetchq.events import (
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
from fetchq.job import Job, JobList, JobState, Outcome
from fetchq.lanes import Lane, LaneScheduling, live
from fetchq.ratelimit import EPSILON, TokenBucket, check_rate, reconfigure
from fetchq.retry import DEFAULT_RETRY, RetryPolicy

__all__ = ["ResizableDispatchQueue"]

_PENDING = JobState.PENDING
_UNDERWAY = JobState.UNDERWAY
_RETRYING = JobState.RETRYING
_CANCELLED = JobState.CANCELLED
_heappush = heapq.heappush
_heappop = heapq.heappop

# Stale heap entries are swept out once there are this many and they make up
# half the heap: rare enough to cost nothing, often enough to bound memory.
_COMPACT_AT = 4096
_ANY_LANE: Any = object()  # pending_page(): jobs of every lane

log = Logger()


class DelayedCallLike(Protocol):
    """What fetchq uses of a ``twisted.internet.base.DelayedCall``."""

    def getTime(self) -> float: ...

    def cancel(self) -> None: ...

    def active(self) -> bool: ...


class ClockLike(Protocol):
    """What fetchq uses of an ``IReactorTime``: the reactor or a ``task.Clock``."""

    def seconds(self) -> float: ...

    def callLater(
        self, delay: float, callable: Callable[..., object], *args: object
    ) -> DelayedCallLike: ...


def _failure(exc: BaseException | None = None) -> Failure:
    """A Failure of ``exc``, or of the exception being handled."""
    return Failure(exc)  # type: ignore[no-untyped-call]


class _JobDeferred(Deferred[Job]):
    """The Deferred ``put()`` returns; knows its job so it can cancel it."""

    job: Job
    queue: ResizableDispatchQueue


class ResizableDispatchQueue(LaneScheduling):
    """Run ``func(arg)`` for each job put in, at most ``width`` at a time.

    Args:
        func: the one-argument function that processes a job.  It may return
            a value, a Deferred or a coroutine, or raise.  None (as txrdq
            allowed) makes a queue whose jobs fail when they launch, each
            with a ``TypeError`` that says so.
        width: how many jobs may be underway at once (0 launches nothing).
        size: most jobs that may be pending; ``put()`` beyond raises
            ``twisted.internet.defer.QueueOverflow``.  None = unbounded.
        clock: where time comes from (an ``IReactorTime``); the global
            reactor if None.
        rate: most launches per second across the queue (None = unlimited).
        burst: launches the rate allows back to back after a quiet spell.
        lane_width: default width of each lane (None = no per-lane cap).
        lane_rate: default launch rate of each lane (None = unlimited).
        lane_burst: burst for ``lane_rate``.
        retry: the :class:`~fetchq.retry.RetryPolicy` (default: only
            ``RetryAfter``/``Throttled`` retry, up to 5 attempts).
        rng: the random source for backoff jitter (for tests).

    Raises:
        ValueError: for a negative or non-integer width, or a bad rate.
        TypeError: if ``func`` is neither callable nor None.
    """

    def __init__(
        self,
        func: Callable[[Any], Any] | None,
        width: int = 0,
        size: int | None = None,
        *,
        clock: ClockLike | None = None,
        rate: float | None = None,
        burst: int = 1,
        lane_width: int | None = None,
        lane_rate: float | None = None,
        lane_burst: int = 1,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if func is None:
            func = _no_func
        elif not callable(func):
            raise TypeError(f"func must be callable, not {func!r}")
        if clock is None:
            from twisted.internet import reactor

            clock = cast(ClockLike, reactor)
        self._func = func
        self._width = check_width(width)
        # txrdq's pendingStops: slots open above the width after a narrowing,
        # given up as jobs end (see pendingStops, _slot_freed_narrowed).
        self._slots = self._width
        if size is not None:
            check_width(size, "size")
        self._size = size
        self._clock = clock
        self._seconds = clock.seconds
        self._retry = DEFAULT_RETRY if retry is None else retry
        self._rng = random.Random() if rng is None else rng
        self._seq = itertools.count()
        self._canceller = self._cancel_deferred

        self._heap: list[tuple[Any, int, Job]] = []
        self._underway: dict[Job, Deferred[Any] | None] = {}
        self._npending = 0  # pending + retrying
        self._nwaiting = 0  # retrying
        self._garbage = 0  # stale entries left in the main heap (estimate)
        self._delayed: list[tuple[float, int, Job]] = []
        self._observers: tuple[Observer, ...] = ()

        self._lanes: dict[Any, Lane] = {}
        self._sleepers: list[tuple[float, int, Lane]] = []
        self._lane_width_default = (
            None if lane_width is None else check_width(lane_width, "lane_width")
        )
        check_rate(lane_rate, lane_burst)
        self._lane_rate_default: tuple[float | None, int] = (lane_rate, lane_burst)
        self._lane_width_overrides: dict[Any, int | None] = {}
        self._lane_rate_overrides: dict[Any, tuple[float | None, int]] = {}

        check_rate(rate, burst)
        self._bucket = (
            None if rate is None else TokenBucket(rate, burst, clock.seconds())
        )
        self._hold_until = 0.0
        self._timer: DelayedCallLike | None = None

        self._paused = False
        self._stopped = False
        self._dispatching = False
        self._fast = True  # put() may launch without touching the heap
        self._drain_waiters: list[Deferred[None]] = []
        self._stop_waiters: list[Deferred[list[Job]]] = []
        self._stop_result: list[Job] | None = None
        self._left: list[Job] = []  # pending when stop() finished; never run
        self._cancelled_underway: list[Job] = []
        self._refresh_fast()

    # ------------------------------------------------------------------
    # Putting jobs in

    def put(
        self,
        jobarg: Any,
        priority: float = 0,
        key: Any = None,
        job_id: Any = None,
    ) -> Deferred[Job]:
        """Queue a job.

        Args:
            jobarg: the argument ``func`` will be called with.
            priority: lower runs first; FIFO among equal priorities.
            key: the job's lane (a host, a sender, an endpoint), or None.
            job_id: the caller's stable identity for the job, or None.

        Returns:
            A Deferred that fires with the finished :class:`~fetchq.job.Job`,
            or errbacks with :class:`~fetchq.errors.JobFailed` /
            :class:`~fetchq.errors.JobCancelled` (``.job`` carries the job).
            Cancelling it cancels the job.

        Raises:
            QueueStopped: once ``stop()`` has been called.
            QueueOverflow: if ``size`` jobs are already pending.
            TypeError: if ``priority`` is not a number.
        """
        return self._put(jobarg, priority, key, job_id, 0)

    def requeue(self, job: Job) -> Deferred[Job]:
        """Queue again a job returned by ``stop()``, ``clear()`` or a pickle.

        A new job is made with the old one's argument, priority, key, id and
        attempt count; its Deferred is returned as from ``put()``.
        """
        return self._put(job.arg, job.priority, job.key, job.id, job.attempts)

    def _put(
        self, arg: Any, priority: Any, key: Any, job_id: Any, attempts: int
    ) -> Deferred[Job]:
        if self._stopped:
            raise QueueStopped("put() on a stopped queue")
        if priority.__class__ is not int:
            check_priority(priority)
        at_once = (
            key is None
            and self._fast
            and not self._heap
            and len(self._underway) < self._width
        )
        if not at_once and self._size is not None and self._npending >= self._size:
            raise QueueOverflow()
        now = self._seconds()
        job = Job(arg, priority, next(self._seq), key, job_id, now, attempts)
        d = _JobDeferred(self._canceller)
        d.job = job
        d.queue = self
        job._d = d
        if at_once and not self._observers:
            self._launch(job, now)
        else:
            # Queued before observers hear of it, so whatever they do (cancel
            # it, pause the queue) goes through the ordinary paths.
            self._enqueue(job, now)
            if self._observers:
                self._emit(JobQueued(job, now))
            if len(self._underway) < self._width:
                self._dispatch()
        return d

    def _enqueue(self, job: Job, now: float) -> None:
        """Make a pending job launchable: into the main heap or its lane."""
        self._npending += 1
        entry = job._entry
        key = job.key
        if key is None:
            _heappush(self._heap, entry)
            return
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._new_lane(key, now)
        _heappush(lane.heap, entry)
        lane.npending += 1
        if lane.open:
            rep = lane.rep
            if rep is None or entry < rep._entry:
                if rep is not None:
                    self._garbage += 1  # the old rep's main-heap entry
                lane.rep = job
                _heappush(self._heap, entry)

    # ------------------------------------------------------------------
    # The dispatch loop

    def _dispatch(self) -> None:
        """Launch the best launchable jobs while there is room."""
        if self._dispatching or self._paused or self._stopped:
            return
        self._dispatching = True
        try:
            heap = self._heap
            underway = self._underway
            while heap and len(underway) < self._width:
                now = self._seconds()
                if not self._fast and not self._gate_open(now):
                    break
                entry = heap[0]
                job = entry[2]
                if job._entry is not entry or job.state is not _PENDING:
                    _heappop(heap)
                    continue
                key = job.key
                _heappop(heap)
                if key is not None:
                    lane = self._lanes[key]
                    if lane.rep is not job:
                        continue
                    wait = self._lane_wait(lane, now)
                    if wait != 0.0:
                        self._close(lane, now, wait)
                        continue
                    self._take_from_lane(lane, entry)
                if self._bucket is not None:
                    self._bucket.take()
                self._npending -= 1
                self._launch(job, now)
            if not heap:
                self._garbage = 0
        finally:
            self._dispatching = False

    def _gate_open(self, now: float) -> bool:
        """Pause, stop, queue-wide hold and rate: may anything launch now?"""
        if self._paused or self._stopped:
            return False  # paused or stopped by a job or observer mid-pass
        if self._hold_until:
            if self._hold_until > now + EPSILON:
                self._wake_at(self._hold_until)
                return False
            self._hold_until = 0.0
            self._refresh_fast()
        bucket = self._bucket
        if bucket is not None and not bucket.ready(now):
            self._wake_at(now + bucket.wait(now))
            return False
        return True

    def _launch(self, job: Job, now: float) -> None:
        job.state = _UNDERWAY
        job.launched_at = now
        job.attempts += 1
        self._underway[job] = None
        if self._observers:
            self._emit(JobLaunched(job, now))
            if job.state is not _UNDERWAY:  # an observer cancelled it
                self._attempt_failed(_failure(CancelledError()), job)
                return
        try:
            result = self._func(job.arg)
        except Exception:
            self._attempt_failed(_failure(), job)
            return
        if not isinstance(result, Deferred):
            if not iscoroutine(result):
                self._attempt_succeeded(result, job)
                return
            result = Deferred.fromCoroutine(result)
        elif result.called and not result.paused:
            # Already fired with a value: take it, as Twisted's own chaining
            # does, rather than pay for a callback chain.
            value = result.result
            if not isinstance(value, (Failure, Deferred)):
                self._attempt_succeeded(value, job)
                return
        if job in self._underway:
            self._underway[job] = result
        result.addCallbacks(
            self._attempt_succeeded,
            self._attempt_failed,
            callbackArgs=(job,),
            errbackArgs=(job,),
        )
        if job.state is _CANCELLED and job in self._underway:
            result.cancel()  # the function cancelled its own job before returning

    # ------------------------------------------------------------------
    # Jobs ending

    def _attempt_succeeded(self, result: Any, job: Job) -> None:
        if isinstance(result, Failure):
            return self._attempt_failed(result, job)
        now = self._seconds()
        del self._underway[job]
        job.stopped_at = now
        if job.key is not None:
            self._lane_release(job.key, now)
        if job.state is _CANCELLED:
            self._fire_cancelled(job, now)
        else:
            job.state = JobState.SUCCEEDED
            job._outcome = result
            if self._observers:
                self._emit(JobFinished(job, Outcome.OK, job.latency, now))
            d = job._d
            job._d = None
            assert d is not None
            d.callback(job)
        self._slot_freed()
        return None

    def _attempt_failed(self, failure: Failure, job: Job) -> None:
        now = self._seconds()
        del self._underway[job]
        job.stopped_at = now
        key = job.key
        if job.state is _CANCELLED:
            if key is not None:
                self._lane_release(key, now)
            self._fire_cancelled(job, now)
            self._slot_freed()
            return None
        job._outcome = failure
        error = failure.value
        throttled = isinstance(error, Throttled)
        if isinstance(error, Throttled):
            # The remote side asked for a pause: honour it even when this job
            # has no attempts left, so the lane's other jobs wait too.
            self.hold(error.delay, key)
        delay = self._retry.delay_for(failure, job.attempts, self._rng)
        if delay is None:
            if key is not None:
                self._lane_release(key, now)
            job.state = JobState.FAILED
            if self._observers:
                self._emit(JobFinished(job, Outcome.FAILED, job.latency, now))
            d = job._d
            job._d = None
            assert d is not None
            d.errback(_failure(JobFailed(job)))
        else:
            if key is not None:
                self._lane_release(key, now)
            job.state = _RETRYING
            job.not_before = now + delay
            self._npending += 1
            self._nwaiting += 1
            _heappush(self._delayed, (job.not_before, next(self._seq), job))
            self._wake_at(job.not_before)
            if self._observers:
                outcome = Outcome.THROTTLED if throttled else Outcome.RETRIED
                self._emit(JobFinished(job, outcome, job.latency, now))
        self._slot_freed()
        return None

    def _fire_cancelled(self, job: Job, now: float, underway: bool = True) -> None:
        """Errback a cancelled job's Deferred, once.  ``underway``: whether an
        attempt was running (else the event's latency is None)."""
        d = job._d
        if d is None:
            return
        job._d = None
        job.state = _CANCELLED
        if underway or job.launched_at is None:
            job.stopped_at = now  # else keep the last attempt's, for latency
        failure = _failure(JobCancelled(job))
        if not isinstance(job._outcome, Failure):
            job._outcome = failure
        if self._observers:
            latency = None
            if underway and job.launched_at is not None:
                latency = now - job.launched_at
            self._emit(JobFinished(job, Outcome.CANCELLED, latency, now))
        d.errback(failure)

    def _slot_freed(self) -> None:
        if not self._underway:
            if self._drain_waiters:
                waiters, self._drain_waiters = self._drain_waiters, []
                for waiter in waiters:
                    waiter.callback(None)
            if self._stopped:
                self._finish_stop()
                return
        if self._heap:
            self._dispatch()

    def _slot_freed_narrowed(self) -> None:
        """``_slot_freed`` while a narrowing leaves slots open (pendingStops).

        setWidth puts it in the instance's dict, shadowing the method, so
        only a narrowed queue pays for this: a job ending gives up the idle
        slots and its own, and once none is left above the width the plain
        method is back.
        """
        self._slots = max(self._width, len(self._underway))
        if self._slots == self._width:
            vars(self).pop("_slot_freed", None)
        type(self)._slot_freed(self)

    # ------------------------------------------------------------------
    # Cancelling

    def _cancel_deferred(self, d: Deferred[Job]) -> None:
        """The canceller of every Deferred ``put()`` returns."""
        assert isinstance(d, _JobDeferred)
        job = d.job
        if job._d is not d:
            return  # detached by stop()/clear(): Twisted errbacks it plainly
        state = job.state
        now = self._seconds()
        if state is _PENDING or state is _RETRYING:
            self._unqueue(job, now)
            self._fire_cancelled(job, now, underway=False)
        elif state is _UNDERWAY:
            job.state = _CANCELLED
            running = self._underway.get(job)
            if running is not None:
                running.cancel()
            # If the work ignored the cancel, the caller still hears at once;
            # the slot stays taken until the work really ends.
            self._fire_cancelled(job, now)

    def _unqueue(self, job: Job, now: float) -> None:
        """Account for a pending or retrying job leaving; its entries go stale."""
        state = job.state
        job.state = _CANCELLED  # every entry of the job is stale from now on
        self._npending -= 1
        if state is _RETRYING:
            self._nwaiting -= 1
            return
        key = job.key
        if key is None:
            self._garbage += 1
            self._maybe_compact()
            return
        lane = self._lanes[key]
        lane.npending -= 1
        if lane.rep is job:
            self._push_rep(lane)
            self._garbage += 1
        self._lane_compact(lane)
        self._lane_changed(lane, now)

    def _maybe_compact(self) -> None:
        heap = self._heap
        if self._garbage > _COMPACT_AT and 2 * self._garbage > len(heap):
            lanes = self._lanes
            heap[:] = [
                e
                for e in heap
                if live(e) and (e[2].key is None or lanes[e[2].key].rep is e[2])
            ]
            heapq.heapify(heap)
            self._garbage = 0

    def clear(self, cancel_pending: bool = True) -> list[Job]:
        """Remove every pending (and retrying) job.

        Args:
            cancel_pending: errback their Deferreds with ``JobCancelled``
                (the default); if False they are dropped and never fire.

        Returns:
            The removed jobs, in dispatch order (re-queueable).
        """
        if not cancel_pending:
            return self._detach_pending()
        jobs = self.pending()
        for job in jobs:
            job.cancel()
        self._left = []
        return jobs

    def clearQueue(
        self,
        cancelPending: bool = True,  # noqa: N803 (txrdq's keyword)
        *,
        cancel_pending: bool | None = None,
    ) -> list[Job]:
        """:meth:`clear` under txrdq's name; takes txrdq's ``cancelPending``
        keyword as well as ``cancel_pending``."""
        return self.clear(cancelPending if cancel_pending is None else cancel_pending)

    def withdraw(self, key: Any, only: Collection[Job] | None = None) -> list[Job]:
        """Take lane ``key``'s pending and retrying jobs (or only those of
        them in ``only``) out of the queue.

        For a runner that keeps work elsewhere (a store) and would rather not
        hold a lane's jobs in memory while the lane cannot launch (held for a
        long time).  As with ``stop()``, their ``put()`` Deferreds are let go
        and never fire; observers get a :class:`~fetchq.events.JobWithdrawn`
        for each.  A job that was waiting to retry keeps its ``not_before``.

        Returns:
            The jobs, in dispatch order (re-queueable); their state is
            ``pending``.
        """
        if only is not None:
            jobs = [
                job
                for job in only
                if job.key == key
                and (job.state is _PENDING or job.state is _RETRYING)
                and isinstance(job._d, _JobDeferred)
                and job._d.queue is self
            ]
        else:
            jobs = [job for job in self.pending() if job.key == key]
        now = self._seconds()
        for job in jobs:
            self._unqueue(job, now)
            job.state = _PENDING
            job._d = None
            job._entry = (job.priority, 0, job)  # in no heap: old entries stale
            if self._observers:
                self._emit(JobWithdrawn(job, now))
        return jobs

    def _detach_pending(self) -> list[Job]:
        jobs = self.pending()
        self._left = []
        for job in jobs:
            job._d = None
            job._entry = (job.priority, 0, job)  # every old entry is now stale
        self._heap.clear()
        self._delayed.clear()
        self._npending = self._nwaiting = self._garbage = 0
        now = self._seconds()
        for lane in list(self._lanes.values()):
            lane.heap.clear()
            lane.npending = 0
            lane.rep = None
            self._lane_changed(lane, now)
        return jobs

    # ------------------------------------------------------------------
    # Width, rate, pause, stop

    @property
    def clock(self) -> ClockLike:
        """The clock the queue runs on (the reactor unless one was given)."""
        return self._clock

    @property
    def func(self) -> Callable[[Any], Any]:
        """The job function; settable.  Jobs launched from then on call the
        new one (a wrapper, such as :class:`fetchq.shared.SharedLimits`'s,
        that waits for a slot shared with other processes first)."""
        return self._func

    @func.setter
    def func(self, func: Callable[[Any], Any]) -> None:
        if not callable(func):
            raise TypeError(f"func must be callable, not {func!r}")
        self._func = func

    @property
    def width(self) -> int:
        """How many jobs may be underway at once; settable (see setWidth)."""
        return self._width

    @width.setter
    def width(self, width: int) -> None:
        self.setWidth(width)

    def getWidth(self) -> int:
        """txrdq's getter for :attr:`width` (the width, even while paused)."""
        return self._width

    def setWidth(self, width: int) -> None:
        """Change the width at any moment.

        Widening launches pending jobs at once; narrowing interrupts nothing
        and takes effect as underway jobs finish.  While paused the new width
        is kept for ``resume()``.

        Raises:
            ValueError: if ``width`` is negative or not an integer.
        """
        width = check_width(width)
        old, self._width = self._width, width
        if width >= self._slots:
            self._slots = width
            vars(self).pop("_slot_freed", None)
        else:
            vars(self)["_slot_freed"] = self._slot_freed_narrowed
        if self._observers and old != width:
            self._emit(WidthChanged(old, width))
        if width > old:
            self._dispatch()

    @property
    def pendingStops(self) -> int:
        """txrdq's count of launch slots still to be given up after a narrowing.

        Narrowing leaves the slots that were open above the new width; they
        are given up at the next job end (txrdq's idle slots gave theirs up
        on the next reactor turn), after which this is the number of jobs
        still underway beyond the width.  Widening takes them back first.
        fetchq never needs it: narrowing is immediate and interrupts nothing.
        """
        return max(0, self._slots - self._width)

    @property
    def rate(self) -> float | None:
        """Most launches per second (None = unlimited); settable."""
        return None if self._bucket is None else self._bucket.rate

    @rate.setter
    def rate(self, rate: float | None) -> None:
        self.set_rate(rate, 1 if self._bucket is None else self._bucket.burst)

    @property
    def burst(self) -> int:
        """Launches the rate allows back to back (1 without a rate)."""
        return 1 if self._bucket is None else self._bucket.burst

    def set_rate(self, rate: float | None, burst: int = 1) -> None:
        """Change the queue-wide launch rate (None = unlimited) and burst."""
        check_rate(rate, burst)
        old = self.rate
        now = self._seconds()
        self._bucket = reconfigure(self._bucket, rate, burst, now)
        self._refresh_fast()
        if self._observers:
            self._emit(RateChanged(old, rate, burst))
        self._dispatch()

    def hold(self, seconds: float, key: Any = None) -> float:
        """Launch nothing for ``seconds``: from the lane ``key``, or from the
        whole queue if ``key`` is None.  Holds only ever extend.

        Returns:
            The clock time the hold ends.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"seconds must be a number, not {seconds!r}")
        if not seconds >= 0:
            raise ValueError(f"seconds must be >= 0, not {seconds!r}")
        now = self._seconds()
        until = now + seconds
        if seconds <= EPSILON:
            return until  # nothing to hold
        if key is None:
            extended = until > self._hold_until
            self._hold_until = max(self._hold_until, until)
            self._refresh_fast()
            self._wake_at(self._hold_until)
            if extended and self._observers:
                self._emit(LaneHeld(None, until, now))
            return self._hold_until
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._new_lane(key, now)
        extended = until > lane.hold_until
        lane.hold_until = max(lane.hold_until, until)
        self._close(lane, now, lane.hold_until - now)
        if extended and self._observers:
            self._emit(LaneHeld(key, until, now))
        return lane.hold_until

    def release(self, key: Any = None) -> bool:
        """End a hold early: lane ``key``'s, or the whole queue's if ``key``
        is None (an operator's "go on now").  Lane width and rate still
        apply.  Emits :class:`~fetchq.events.LaneReleased` if a hold ended.

        Returns:
            Whether there was a hold to end.
        """
        now = self._seconds()
        if key is None:
            if self._hold_until <= now + EPSILON:
                return False
            self._hold_until = 0.0
            self._refresh_fast()
        else:
            lane = self._lanes.get(key)
            if lane is None or lane.hold_until <= now + EPSILON:
                return False
            lane.hold_until = 0.0
            lane.wake_at = None  # its wake-up for the hold's end is now stale
            self._lane_changed(lane, now)
        if self._observers:
            self._emit(LaneReleased(key, now))
        self._dispatch()
        return True

    def pause(self) -> Deferred[None]:
        """Stop launching jobs.

        Returns:
            A Deferred that fires (with None) once no job is underway.
        """
        self._paused = True
        self._refresh_fast()
        return self._when_drained()

    def resume(self, width: int | None = None) -> None:
        """Start launching again, with the width as it was, or ``width``.

        Raises:
            QueueStopped: if the queue has been stopped.
        """
        if self._stopped:
            raise QueueStopped("resume() on a stopped queue")
        if width is not None:
            self.setWidth(width)
        self._paused = False
        self._refresh_fast()
        self._dispatch()

    @property
    def paused(self) -> bool:
        """True between ``pause()`` and ``resume()``."""
        return self._paused

    @property
    def stopped(self) -> bool:
        """True once ``stop()`` has been called."""
        return self._stopped

    def stop(
        self,
        cancel_underway: bool = False,
        *,
        cancelUnderway: bool | None = None,  # noqa: N803 (txrdq's keyword)
    ) -> Deferred[list[Job]]:
        """Stop for good: launch nothing more, refuse new jobs.

        Args:
            cancel_underway: cancel underway jobs instead of waiting for them;
                they are then returned along with the pending ones.
            cancelUnderway: txrdq's spelling of ``cancel_underway``.

        Returns:
            A Deferred that fires, once nothing is underway, with the jobs not
            processed: any cancelled underway jobs first, then the pending and
            retrying ones in dispatch order.  They pickle, and ``requeue()``
            puts them into a new queue.  The pending jobs' ``put()`` Deferreds
            are let go and never fire; cancelled underway jobs' Deferreds
            errback with ``JobCancelled`` as any cancellation does.  The
            pending ones still show in ``pending()`` and ``size()``, as in
            txrdq, though they never run.
        """
        if cancelUnderway is not None:
            cancel_underway = cancelUnderway
        d: Deferred[list[Job]] = Deferred()
        if self._stop_result is not None:
            d.callback(list(self._stop_result))
            return d
        self._stopped = True
        self._refresh_fast()
        self._stop_waiters.append(d)
        if cancel_underway:
            for job in list(self._underway):
                if job.state is _UNDERWAY:
                    self._cancelled_underway.append(job)
                    job.cancel()
        if not self._underway:
            self._finish_stop()
        return d

    def _finish_stop(self) -> None:
        if self._stop_result is not None:
            return
        left = self._detach_pending()
        jobs = self._cancelled_underway + left
        self._left = left
        self._cancelled_underway = []
        self._stop_result = jobs
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._sleepers.clear()
        waiters, self._stop_waiters = self._stop_waiters, []
        for waiter in waiters:
            waiter.callback(list(jobs))

    def _when_drained(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if self._underway:
            self._drain_waiters.append(d)
        else:
            d.callback(None)
        return d

    def _refresh_fast(self) -> None:
        self._fast = not (
            self._paused
            or self._stopped
            or self._bucket is not None
            or self._hold_until
        )

    # ------------------------------------------------------------------
    # Admin views and reprioritising

    def pending(self) -> list[Job]:
        """A copy of the pending jobs in dispatch order: jobs that can run by
        (priority, arrival), then jobs waiting to retry by their retry time.
        Once stopped, the jobs ``stop()`` left pending (they never run)."""
        if self._left:
            return list(self._left)
        heap = self._heap
        pending = _PENDING
        if not self._lanes:
            entries = sorted(heap)
            if len(heap) == self._npending - self._nwaiting:
                jobs = [e[2] for e in entries]  # no stale entries to skip
            else:
                # Filter after sorting: jobs are then visited roughly in the
                # order they were made, which is kind to the CPU cache.
                jobs = [
                    e[2] for e in entries if e[2]._entry is e and e[2].state is pending
                ]
        else:
            entries = [e for e in heap if e[2].key is None and live(e)]
            for lane in self._lanes.values():
                entries.extend([e for e in lane.heap if live(e)])
            entries.sort()
            jobs = [e[2] for e in entries]
        if self._nwaiting:
            waiting = [e for e in self._delayed if _waiting(e)]
            waiting.sort()
            jobs.extend([e[2] for e in waiting])
        return jobs

    def pending_page(
        self,
        limit: int = 50,
        after: tuple[float, int] | None = None,
        key: Any = _ANY_LANE,
    ) -> list[tuple[tuple[float, int], Job]]:
        """A page of the jobs ready to launch, in dispatch order, for an
        admin view that must never copy a million jobs at once.

        Args:
            limit: most jobs to return.
            after: the position of the last job of the previous page (as
                returned here); None for the first page.
            key: only the jobs of this lane (None: jobs without a lane);
                every job if not given.

        Returns:
            ``(position, job)`` pairs; a position is ``(priority, n)``, n
            the job's turn within its priority.  Jobs waiting to retry are
            not listed (``pending()`` lists them).  Costs one pass over the
            pending jobs (of the lane, if one is given), no sort of them all.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be an int >= 0, not {limit!r}")
        if self._left:
            return []
        main = self._heap
        if key is _ANY_LANE:
            heaps = [main, *(lane.heap for lane in self._lanes.values())]
        elif key is None:
            heaps = [main]
        else:
            lane = self._lanes.get(key)
            heaps = [] if lane is None else [lane.heap]

        def entries() -> Iterator[tuple[Any, int, Job]]:
            for heap in heaps:
                for entry in heap:
                    job = entry[2]
                    if job._entry is not entry or job.state is not _PENDING:
                        continue  # stale
                    if heap is main and job.key is not None:
                        continue  # a lane's rep: listed from its lane's heap
                    if after is None or (entry[0], entry[1]) > after:
                        yield entry

        page = heapq.nsmallest(limit, entries())
        return [((e[0], e[1]), e[2]) for e in page]

    def underway(self) -> JobList:
        """A copy of the jobs underway, in launch order: a list that also
        equals the set of them (txrdq returned a set)."""
        return JobList(self._underway)

    def size(self) -> tuple[int, int]:
        """``(underway, pending)`` counts; pending includes retrying jobs and,
        once stopped, the jobs ``stop()`` left pending."""
        return len(self._underway), self._npending + len(self._left)

    def __len__(self) -> int:
        return self._npending + len(self._left)

    def reprioritize(self, job: Job, priority: float) -> None:
        """Give a pending (or retrying) job a new priority; it goes to the
        back of its new priority class.

        Raises:
            RuntimeError: if the job is not pending (underway or finished).
            KeyError: if the job is not in this queue.
        """
        check_priority(priority)
        state = job.state
        if state is not _PENDING and state is not _RETRYING:
            raise RuntimeError(
                f"cannot reprioritize a job that is {state.value}: {job!r}"
            )
        d = job._d
        if not isinstance(d, _JobDeferred) or d.queue is not self:
            raise KeyError(job)
        entry = (priority, next(self._seq), job)
        job._entry = entry
        if state is _RETRYING:
            return
        key = job.key
        if key is None:
            _heappush(self._heap, entry)
            self._garbage += 1
            self._maybe_compact()
            return
        lane = self._lanes[key]
        _heappush(lane.heap, entry)
        if lane.open:
            rep = lane.rep
            if rep is job:
                self._garbage += 1
                self._push_rep(lane)
            elif rep is None or entry < rep._entry:
                if rep is not None:
                    self._garbage += 1
                lane.rep = job
                _heappush(self._heap, entry)
        self._lane_compact(lane)
        self._maybe_compact()

    # ------------------------------------------------------------------
    # The one timer

    def _wake_at(self, when: float) -> None:
        if self._stop_result is not None:
            return  # stopped for good: nothing will launch, keep no timer
        timer = self._timer
        if timer is not None:
            if timer.getTime() <= when + EPSILON:
                return
            timer.cancel()
        delay = max(0.0, when - self._seconds())
        self._timer = self._clock.callLater(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self._seconds()
        due = now + EPSILON
        delayed = self._delayed
        while delayed and delayed[0][0] <= due:
            when, _, job = _heappop(delayed)
            if job.state is _RETRYING and job.not_before == when:
                job.state = _PENDING
                job.not_before = None
                job._entry = (job.priority, next(self._seq), job)
                self._npending -= 1
                self._nwaiting -= 1
                self._enqueue(job, now)
        sleepers = self._sleepers
        while sleepers and sleepers[0][0] <= due:
            when, _, lane = _heappop(sleepers)
            if lane.wake_at == when and self._lanes.get(lane.key) is lane:
                lane.wake_at = None
                self._lane_changed(lane, now)
        if self._hold_until and self._hold_until <= due:
            self._hold_until = 0.0
            self._refresh_fast()
        self._dispatch()
        if self._stopped and self._stop_result is not None:
            return
        nexts = [q[0][0] for q in (delayed, sleepers) if q]
        if nexts:
            self._wake_at(min(nexts))

    # ------------------------------------------------------------------
    # Observers

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Call ``observer(event)`` for every event from now on.

        Returns:
            A function that unsubscribes the observer.
        """
        self._observers = (*self._observers, observer)

        done = False

        def unsubscribe() -> None:
            nonlocal done
            if done:
                return
            done = True
            observers = list(self._observers)
            for i, subscribed in enumerate(observers):
                if subscribed is observer:
                    del observers[i]  # just this subscription
                    self._observers = tuple(observers)
                    return

        return unsubscribe

    def announce(self, event: Event) -> None:
        """Pass ``event`` to every observer, as the queue's own events are.

        For components that steer the queue (an adaptive controller) and want
        their decisions seen in order with the job events they follow from.
        """
        if self._observers:
            self._emit(event)

    def _emit(self, event: Event) -> None:
        for observer in self._observers:
            try:
                observer(event)
            except Exception:
                log.failure("fetchq observer {observer!r} failed", observer=observer)


def _no_func(arg: object) -> None:
    """The job function of a queue made with ``func=None``."""
    raise TypeError(
        "this ResizableDispatchQueue was made with func=None, so it cannot run"
        " jobs: give it a one-argument function"
    )


def _waiting(entry: tuple[float, int, Job]) -> bool:
    job = entry[2]
    return job.state is _RETRYING and job.not_before == entry[0]
