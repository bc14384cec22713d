"""Property tests: the queue against a simple model, driven by Hypothesis."""

from __future__ import annotations

import itertools
import random
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from fetchq import (
    Job,
    JobCancelled,
    JobFailed,
    JobState,
    ResizableDispatchQueue,
    RetryAfter,
    RetryPolicy,
    Throttled,
)
from tests._clock import GuardedClock

KEYS = st.sampled_from([None, "a", "b"])
LANE_KEYS = st.sampled_from(["a", "b"])
PRIORITIES = st.integers(min_value=-2, max_value=2)
WIDTHS = st.integers(min_value=0, max_value=4)
LANE_WIDTHS = st.none() | st.integers(min_value=0, max_value=2)
PICKS = st.integers(min_value=0, max_value=63)


class QueueMachine(RuleBasedStateMachine):
    """Drives a ResizableDispatchQueue and a model of it side by side.

    The model keeps, per job, its key and its order ``(priority, seq)`` (seq
    bumped by put and by reprioritize), the sets of pending and underway jobs,
    the widths and whether the queue is paused.  Every launch is checked as it
    happens (inside the job function); everything else after every step.
    """

    def __init__(self, case: SynchronousTestCase) -> None:
        super().__init__()
        self.case = case
        self.clock = Clock()
        self.q = ResizableDispatchQueue(self.func, 0, clock=self.clock)
        self.seq = itertools.count()
        self.ids = itertools.count()
        self.width = 0
        self.lane_default: int | None = None
        self.lane_override: dict[str, int] = {}
        self.paused = False
        self.order: dict[int, tuple[int, int]] = {}
        self.keys: dict[int, Any] = {}
        self.jobs: dict[int, Job] = {}
        self.pending: set[int] = set()
        self.underway: list[int] = []  # launch order
        self.running: dict[int, Deferred[Any]] = {}
        self.fired: dict[int, list[Any]] = {}
        self.expected: dict[int, str] = {}
        self.allowed = 0  # most jobs that may be underway after this step
        self.violations: list[str] = []

    # -- the model's rules -------------------------------------------------

    def lane_width(self, key: Any) -> int | None:
        """The model's width for lane ``key`` (None = no cap)."""
        if key is None:
            return None
        return self.lane_override.get(key, self.lane_default)

    def lane_full(self, key: Any, underway: list[int], skip: int | None) -> bool:
        """Whether lane ``key`` is at its width, counting ``underway`` jobs
        except ``skip``."""
        width = self.lane_width(key)
        if width is None:
            return False
        busy = sum(1 for j in underway if self.keys[j] == key and j != skip)
        return busy >= width

    # -- the job function: every launch is checked here --------------------

    def func(self, arg: int) -> Deferred[Any]:
        # The queue turns an exception from its function into a job failure,
        # so a failed check is kept for the ``launches_were_legal`` invariant
        # rather than raised here.
        try:
            self.check_launch(arg)
        except self.case.failureException as e:
            self.violations.append(str(e))
        self.pending.discard(arg)
        self.underway.append(arg)
        d: Deferred[Any] = Deferred()
        self.running[arg] = d
        return d

    def check_launch(self, arg: int) -> None:
        """Check that launching ``arg`` now is legal and the best choice."""
        case = self.case
        case.assertFalse(self.paused, f"job {arg} launched while paused")
        case.assertIn(arg, self.pending, f"job {arg} launched but not pending")
        underway_now = [j.arg for j in self.q.underway()]
        case.assertIn(arg, underway_now)
        case.assertLessEqual(len(underway_now), self.width, "launch over width")
        case.assertLessEqual(len(underway_now), self.q.width)
        key = self.keys[arg]
        case.assertFalse(
            self.lane_full(key, underway_now, skip=arg),
            f"job {arg} launched into full lane {key!r}",
        )
        # Best launchable first: every better pending job must be blocked.
        for other in self.pending:
            if other == arg or self.order[other] > self.order[arg]:
                continue
            case.assertTrue(
                self.lane_full(self.keys[other], underway_now, skip=arg),
                f"job {arg} {self.order[arg]} launched before better "
                f"launchable job {other} {self.order[other]}",
            )

    def record(self, job_id: int) -> Any:
        def fired(result: Any) -> None:
            self.fired[job_id].append(result)

        return fired

    # -- rules -------------------------------------------------------------

    @initialize(width=st.integers(min_value=1, max_value=4))
    def start(self, width: int) -> None:
        self.width = width
        self.q.setWidth(width)
        self.allowed = width

    @rule(batch=st.lists(st.tuples(PRIORITIES, KEYS), min_size=2, max_size=5))
    def put_batch(self, batch: list[tuple[int, Any]]) -> None:
        for priority, key in batch:
            self.put(priority, key)

    @rule(priority=PRIORITIES, key=KEYS)
    def put(self, priority: int, key: Any) -> None:
        job_id = next(self.ids)
        self.order[job_id] = (priority, next(self.seq))
        self.keys[job_id] = key
        self.pending.add(job_id)
        self.fired[job_id] = []
        self.allowed = max(self.width, len(self.underway))
        d = self.q.put(job_id, priority=priority, key=key)
        self.jobs[job_id] = d.job  # type: ignore[attr-defined]
        d.addBoth(self.record(job_id))

    @precondition(lambda self: self.pending)
    @rule(pick=PICKS, via_deferred=st.booleans())
    def cancel_pending(self, pick: int, via_deferred: bool) -> None:
        job_id = sorted(self.pending)[pick % len(self.pending)]
        self.pending.remove(job_id)
        self.expected[job_id] = "cancelled"
        self.allowed = max(self.width, len(self.underway))
        if via_deferred:
            d = self.jobs[job_id]._d
            assert d is not None
            d.cancel()
        else:
            self.jobs[job_id].cancel()

    @precondition(lambda self: self.underway)
    @rule(pick=PICKS)
    def cancel_underway(self, pick: int) -> None:
        job_id = self.underway[pick % len(self.underway)]
        self.underway.remove(job_id)
        self.running.pop(job_id)
        self.expected[job_id] = "cancelled"
        self.allowed = max(self.width, len(self.underway))
        self.jobs[job_id].cancel()

    @precondition(lambda self: self.pending)
    @rule(pick=PICKS, priority=PRIORITIES)
    def reprioritize(self, pick: int, priority: int) -> None:
        job_id = sorted(self.pending)[pick % len(self.pending)]
        self.order[job_id] = (priority, next(self.seq))
        self.allowed = max(self.width, len(self.underway))
        self.q.reprioritize(self.jobs[job_id], priority)

    @precondition(lambda self: self.underway)
    @rule(pick=PICKS)
    def finish(self, pick: int) -> None:
        job_id = self.underway[pick % len(self.underway)]
        self.underway.remove(job_id)
        self.expected[job_id] = "ok"
        self.allowed = max(self.width, len(self.underway))
        self.running.pop(job_id).callback(("result", job_id))

    @precondition(lambda self: self.underway)
    @rule(picks=st.lists(PICKS, min_size=2, max_size=4))
    def finish_batch(self, picks: list[int]) -> None:
        for pick in picks:
            if self.underway:
                self.finish(pick)

    @rule(width=WIDTHS)
    def set_width(self, width: int) -> None:
        self.width = width
        self.allowed = max(self.width, len(self.underway))
        self.q.setWidth(width)

    @rule(key=LANE_KEYS, width=LANE_WIDTHS)
    def set_lane_width(self, key: str, width: int | None) -> None:
        if width is None:
            self.lane_override.pop(key, None)
        else:
            self.lane_override[key] = width
        self.allowed = max(self.width, len(self.underway))
        self.q.set_lane_width(key, width)

    @rule(width=LANE_WIDTHS)
    def set_default_lane_width(self, width: int | None) -> None:
        self.lane_default = width
        self.allowed = max(self.width, len(self.underway))
        self.q.set_lane_width(None, width)

    @precondition(lambda self: not self.paused)
    @rule()
    def pause(self) -> None:
        self.paused = True
        self.allowed = len(self.underway)
        self.q.pause()

    @precondition(lambda self: self.paused)
    @rule()
    def resume(self) -> None:
        self.paused = False
        self.allowed = max(self.width, len(self.underway))
        self.q.resume()

    # -- invariants --------------------------------------------------------

    @invariant()
    def launches_were_legal(self) -> None:
        self.case.assertEqual(self.violations, [])

    @invariant()
    def counts_agree(self) -> None:
        self.case.assertEqual(self.q.size(), (len(self.underway), len(self.pending)))
        self.case.assertEqual(len(self.q), len(self.pending))
        self.case.assertEqual([j.arg for j in self.q.underway()], self.underway)
        self.case.assertEqual(self.q.width, self.width)
        self.case.assertEqual(self.q.paused, self.paused)

    @invariant()
    def pending_order_agrees(self) -> None:
        expected = sorted(self.pending, key=self.order.__getitem__)
        jobs = self.q.pending()
        self.case.assertEqual([j.arg for j in jobs], expected)
        for job in jobs:
            self.case.assertIs(job.state, JobState.PENDING)
            self.case.assertEqual(job.priority, self.order[job.arg][0])

    @invariant()
    def width_respected(self) -> None:
        # Narrowing interrupts nothing, so more than ``width`` may be underway,
        # but never more than were underway when the step began its work.
        self.case.assertLessEqual(len(self.underway), self.allowed)

    @invariant()
    def no_head_of_line_blocking(self) -> None:
        if self.paused or len(self.underway) >= self.width:
            return
        for job_id in self.pending:
            self.case.assertTrue(
                self.lane_full(self.keys[job_id], self.underway, skip=None),
                f"job {job_id} (key {self.keys[job_id]!r}) is launchable but "
                f"pending with {len(self.underway)}/{self.width} underway",
            )

    @invariant()
    def lanes_agree(self) -> None:
        infos = {info.key: info for info in self.q.lanes()}
        for key in ("a", "b"):
            pending = sum(1 for j in self.pending if self.keys[j] == key)
            underway = sum(1 for j in self.underway if self.keys[j] == key)
            if pending or underway:
                self.case.assertIn(key, infos)
                info = infos[key]
                self.case.assertEqual(
                    (info.pending, info.underway, info.width),
                    (pending, underway, self.lane_width(key)),
                )
            else:
                self.case.assertNotIn(key, infos)

    @invariant()
    def deferreds_fired_once_correctly(self) -> None:
        for job_id, results in self.fired.items():
            expected = self.expected.get(job_id)
            if expected is None:
                self.case.assertEqual(results, [], f"job {job_id} fired early")
                continue
            self.case.assertEqual(len(results), 1, f"job {job_id}: {results!r}")
            (result,) = results
            job = self.jobs[job_id]
            if expected == "ok":
                self.case.assertIs(result, job)
                self.case.assertEqual(job.result, ("result", job_id))
                self.case.assertIs(job.state, JobState.SUCCEEDED)
            else:
                self.case.assertIsInstance(result, Failure)
                self.case.assertIsInstance(result.value, JobCancelled)
                self.case.assertIs(result.value.job, job)
                self.case.assertIs(job.state, JobState.CANCELLED)


class QueueModelTests(SynchronousTestCase):
    """The queue agrees with the model under random operation sequences."""

    def test_queue_matches_model(self) -> None:
        """
        Random interleavings of put (priorities -2..2, keys None/a/b), cancel
        of pending and underway jobs, reprioritize, finish, setWidth (0..4),
        lane widths for a/b and the default (None..2), pause and resume keep
        counts, pending order, width and lane limits, the no-head-of-line-
        blocking rule and the put() outcomes in agreement with the model.
        """
        run_state_machine_as_test(
            lambda: QueueMachine(self),
            settings=settings(max_examples=150, deadline=None, stateful_step_count=40),
        )


class FlakyError(Exception):
    """A failure the timed machine's retry policy retries."""


BEHAVIOURS = st.sampled_from(
    ["ok", "ok", "flaky", "retry-after", "throttled", "fail", "instant"]
)
RATES = st.sampled_from([None, 0.5, 2.0, 4.0])
DELAYS = st.sampled_from([0.0, 0.25, 0.5, 1.0, 3.0])


class TimedQueueMachine(RuleBasedStateMachine):
    """Lanes, rates, holds and retries against the clock.

    Without a timing model, this checks what must hold at every step (counts,
    views and put() outcomes agree with each other and with the job states)
    and, at the end, liveness: once every limit is lifted and time passes,
    every job reaches a final state and its put() Deferred fires exactly once.
    """

    def __init__(self, case: SynchronousTestCase) -> None:
        super().__init__()
        self.case = case
        self.clock = GuardedClock()
        policy = RetryPolicy(max_attempts=3, base_delay=0.5, retry_on=(FlakyError,))
        self.q = ResizableDispatchQueue(
            self.func,
            2,
            clock=self.clock,
            retry=policy,
            rng=random.Random(0),
        )
        self.ids = itertools.count()
        self.behaviour: dict[int, str] = {}
        self.running: dict[int, Deferred[Any]] = {}
        self.jobs: dict[int, Job] = {}
        self.fired: dict[int, list[Any]] = {}
        self.stopped = False

    def func(self, arg: int) -> Any:
        behaviour = self.behaviour[arg]
        attempt = self.jobs[arg].attempts if arg in self.jobs else 1
        if behaviour == "instant":
            return arg
        d: Deferred[Any] = Deferred()
        self.running[arg] = d
        if behaviour == "fail" and attempt == 1:
            self.clock.callLater(0.5, self.fail, arg, ValueError("fatal"))
        elif behaviour == "flaky" and attempt < 3:
            self.clock.callLater(0.25, self.fail, arg, FlakyError())
        elif behaviour == "retry-after" and attempt == 1:
            self.clock.callLater(0.25, self.fail, arg, RetryAfter(1.5))
        elif behaviour == "throttled" and attempt == 1:
            self.clock.callLater(0.25, self.fail, arg, Throttled(2))
        return d

    def fail(self, arg: int, exc: Exception) -> None:
        d = self.running.get(arg)
        if d is not None and not d.called:
            del self.running[arg]
            d.errback(exc)

    @rule(batch=st.lists(st.tuples(PRIORITIES, KEYS, BEHAVIOURS), max_size=6))
    def put_batch(self, batch: list[tuple[int, Any, str]]) -> None:
        for priority, key, behaviour in batch:
            self.put(priority, key, behaviour)

    @rule(priority=PRIORITIES, key=KEYS, behaviour=BEHAVIOURS)
    def put(self, priority: int, key: Any, behaviour: str) -> None:
        if self.stopped:
            return
        job_id = next(self.ids)
        self.behaviour[job_id] = behaviour
        self.fired[job_id] = []
        d = self.q.put(job_id, priority=priority, key=key)
        self.jobs[job_id] = d.job  # type: ignore[attr-defined]
        d.addBoth(self.fired[job_id].append)

    @rule(dt=DELAYS)
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)

    @precondition(lambda self: self.running)
    @rule(pick=PICKS)
    def finish(self, pick: int) -> None:
        arg = sorted(self.running)[pick % len(self.running)]
        self.running.pop(arg).callback(("result", arg))

    @precondition(lambda self: self.jobs)
    @rule(pick=PICKS)
    def cancel(self, pick: int) -> None:
        arg = sorted(self.jobs)[pick % len(self.jobs)]
        self.jobs[arg].cancel()

    @precondition(lambda self: self.jobs)
    @rule(pick=PICKS, priority=PRIORITIES)
    def reprioritize(self, pick: int, priority: int) -> None:
        job = self.jobs[sorted(self.jobs)[pick % len(self.jobs)]]
        if job.state.is_pending and job._d is not None:
            self.q.reprioritize(job, priority)

    @rule(width=WIDTHS)
    def set_width(self, width: int) -> None:
        self.q.setWidth(width)

    @rule(key=st.sampled_from([None, "a", "b"]), width=LANE_WIDTHS)
    def set_lane_width(self, key: Any, width: int | None) -> None:
        self.q.set_lane_width(key, width)

    @rule(rate=RATES, burst=st.integers(min_value=1, max_value=2))
    def set_rate(self, rate: float | None, burst: int) -> None:
        self.q.set_rate(rate, burst)

    @rule(key=st.sampled_from([None, "a", "b"]), rate=RATES)
    def set_lane_rate(self, key: Any, rate: float | None) -> None:
        self.q.set_lane_rate(key, rate)

    @rule(key=KEYS, seconds=DELAYS)
    def hold(self, key: Any, seconds: float) -> None:
        self.q.hold(seconds, key)

    @rule()
    def pause(self) -> None:
        self.q.pause()

    @rule()
    def resume(self) -> None:
        if not self.stopped:
            self.q.resume()

    @invariant()
    def views_agree(self) -> None:
        case = self.case
        self.clock.scheduled = 0
        underway = self.q.underway()
        pending = self.q.pending()
        case.assertEqual(self.q.size(), (len(underway), len(pending)))
        for job in underway:
            case.assertIn(job.state, (JobState.UNDERWAY, JobState.CANCELLED))
        for job in pending:
            case.assertIn(job.state, (JobState.PENDING, JobState.RETRYING))
            case.assertEqual(job.not_before is not None, job.state is JobState.RETRYING)
        launchable = [j for j in pending if j.state is JobState.PENDING]
        waiting = [j for j in pending if j.state is JobState.RETRYING]
        case.assertEqual(pending, launchable + waiting)
        priorities = [j.priority for j in launchable]
        case.assertEqual(priorities, sorted(priorities))
        times = [j.not_before for j in waiting]
        case.assertEqual(times, sorted(times))  # type: ignore[type-var]
        listed = {id(j) for j in underway + pending}
        for job_id, job in self.jobs.items():
            results = self.fired[job_id]
            case.assertLessEqual(len(results), 1, f"job {job_id} fired twice")
            if job.state.is_final:
                case.assertEqual(len(results), 1, f"{job!r} final, not fired")
                case.assertNotIn(id(job), listed)
            elif not self.stopped:
                case.assertEqual(results, [], f"{job!r} fired early")
                case.assertIn(id(job), listed, f"{job!r} lost")
        for info in self.q.lanes():
            case.assertEqual(
                info.pending, sum(1 for j in launchable if j.key == info.key)
            )
            case.assertEqual(
                info.underway, sum(1 for j in underway if j.key == info.key)
            )

    def teardown(self) -> None:
        """Lift every limit, let time pass and finish everything: every job
        must end, each put() Deferred firing once with its outcome."""
        if self.stopped:
            return
        q = self.q
        q.set_rate(None)
        q.set_lane_rate(None, None)
        q.set_lane_width(None, None)
        for key in ("a", "b"):
            q.set_lane_width(key, None)
            q.set_lane_rate(key, None)
        q.resume(10)
        for _ in range(20):
            self.clock.scheduled = 0
            for arg in sorted(self.running):
                d = self.running.pop(arg, None)
                if d is not None and not d.called:
                    d.callback(("result", arg))
            self.clock.advance(10)
            if q.size() == (0, 0) and not self.running:
                break
        self.case.assertEqual(q.size(), (0, 0))
        for job_id, job in self.jobs.items():
            self.case.assertTrue(job.state.is_final, f"{job!r} never ended")
            (result,) = self.fired[job_id]
            if job.state is JobState.SUCCEEDED:
                self.case.assertIs(result, job)
            elif job.state is JobState.FAILED:
                self.case.assertIsInstance(result.value, JobFailed)
            else:
                self.case.assertIsInstance(result.value, JobCancelled)
        self.case.assertEqual(q.lanes(), [])


class TimedQueueModelTests(SynchronousTestCase):
    """Lanes, rates, holds and retries under random interleavings."""

    def test_timed_queue_stays_consistent_and_live(self) -> None:
        """
        Random interleavings of puts (jobs that succeed, fail, retry,
        RetryAfter or Throttle), clock advances, finishes, cancels,
        reprioritisations, width/lane-width/rate/lane-rate changes, holds and
        pause/resume keep size(), pending(), underway(), lanes() and the put()
        outcomes consistent; no timer spins; and once every limit is lifted
        every job ends with its Deferred fired exactly once.
        """
        run_state_machine_as_test(
            lambda: TimedQueueMachine(self),
            settings=settings(max_examples=100, deadline=None, stateful_step_count=40),
        )
