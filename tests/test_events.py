"""Tests for the queue's observer events (:mod:`fetchq.events`)."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any, ClassVar

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

import fetchq.events
import fetchq.lanes
import fetchq.queue
from fetchq import (
    Job,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobLaunched,
    JobQueued,
    JobState,
    JobWithdrawn,
    LaneHeld,
    Outcome,
    RateChanged,
    ResizableDispatchQueue,
    RetryAfter,
    RetryPolicy,
    Throttled,
    WidthChanged,
)
from fetchq.job import TRANSITIONS
from tests._clock import advance_to


class FlakyError(Exception):
    """Retryable under the policy used here."""


class FatalError(Exception):
    """Not retryable."""


class BoomError(Exception):
    """Raised by a broken observer."""


HANG = object()
"""A script step whose Deferred never fires by itself (only by cancelling)."""


class ScriptedWorker:
    """A fake job function.  ``script[arg]`` lists, per attempt, ``(duration,
    outcome)``: the attempt's Deferred fires ``duration`` seconds after launch
    (via ``clock.callLater``) with ``outcome``, or fails with it if it is an
    exception; ``HANG`` never fires.  Args without a script are held in
    ``running`` for the test to fire."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.script: dict[Any, list[tuple[float, Any]]] = {}
        self.running: dict[Any, Deferred[Any]] = {}
        self.launches: list[tuple[Any, float]] = []

    def __call__(self, arg: Any) -> Deferred[Any]:
        self.launches.append((arg, self.clock.seconds()))
        d: Deferred[Any] = Deferred()
        steps = self.script.get(arg)
        if not steps:
            self.running[arg] = d
            return d
        duration, outcome = steps.pop(0)
        if outcome is HANG:
            return d
        self.clock.callLater(duration, _fire, d, outcome)
        return d


def _fire(d: Deferred[Any], outcome: Any) -> None:
    """Fire ``d`` with ``outcome`` (an exception fails it), unless it was
    already fired (by cancellation)."""
    if d.called:
        return
    if isinstance(outcome, BaseException):
        d.errback(outcome)
    else:
        d.callback(outcome)


class Recorder:
    """An observer recording each event with the clock time and the job's
    state and attempts at the moment it was emitted."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.events: list[Any] = []
        self.log: list[tuple[Any, float, JobState | None, int | None]] = []

    def __call__(self, event: Any) -> None:
        self.events.append(event)
        job = getattr(event, "job", None)
        self.log.append(
            (
                event,
                self.clock.seconds(),
                None if job is None else job.state,
                None if job is None else job.attempts,
            )
        )

    def of(self, job: Job) -> list[Any]:
        """The events about ``job``, in order."""
        return [e for e in self.events if getattr(e, "job", None) is job]

    def kinds(self, job: Job) -> list[str]:
        """Short names of the events about ``job``."""
        names = []
        for e in self.of(job):
            if isinstance(e, JobFinished):
                names.append(e.outcome.value)
            else:
                names.append(type(e).__name__)
        return names


FINISHED_STATE = {
    Outcome.OK: JobState.SUCCEEDED,
    Outcome.FAILED: JobState.FAILED,
    Outcome.CANCELLED: JobState.CANCELLED,
    Outcome.RETRIED: JobState.RETRYING,
    Outcome.THROTTLED: JobState.RETRYING,
}


class EventTestCase(SynchronousTestCase):
    """Helpers shared by the event tests."""

    def make(
        self, width: int = 10, **kw: Any
    ) -> tuple[ResizableDispatchQueue, ScriptedWorker, Clock, Recorder]:
        clock = Clock()
        worker = ScriptedWorker(clock)
        q = ResizableDispatchQueue(worker, width, clock=clock, **kw)
        rec = Recorder(clock)
        q.subscribe(rec)
        return q, worker, clock, rec

    def check_history(self, rec: Recorder, jobs: list[Job]) -> None:
        """
        For every job: exactly one JobQueued, first; the state sequence rebuilt
        from the events moves only along TRANSITIONS and ends in the job's
        state; the job's state at each event matches it; each launch is
        followed by exactly one finish whose latency is the clock time between
        them; event times are the clock times of emission.
        """
        for event, when, _, _ in rec.log:
            if hasattr(event, "time"):
                self.assertEqual(event.time, when, event)
        for job in jobs:
            entries = [e for e in rec.log if getattr(e[0], "job", None) is job]
            self.assertIsInstance(entries[0][0], JobQueued, job)
            self.assertEqual(sum(isinstance(e[0], JobQueued) for e in entries), 1, job)
            state = JobState.PENDING
            self.assertIs(entries[0][2], JobState.PENDING)
            launched_at: float | None = None
            launches = 0
            for event, when, seen_state, seen_attempts in entries[1:]:
                if isinstance(event, JobLaunched):
                    if state is JobState.RETRYING:
                        self.assertIn(JobState.PENDING, TRANSITIONS[state], job)
                        state = JobState.PENDING
                    self.assertIn(JobState.UNDERWAY, TRANSITIONS[state], job)
                    self.assertIsNone(launched_at, f"two launches: {job!r}")
                    state = JobState.UNDERWAY
                    launched_at = when
                    launches += 1
                    self.assertEqual(seen_attempts, launches, job)
                elif isinstance(event, JobFinished):
                    new = FINISHED_STATE[event.outcome]
                    self.assertIn(new, TRANSITIONS[state], (job, state, new))
                    if state is JobState.UNDERWAY:
                        assert launched_at is not None
                        self.assertEqual(event.latency, when - launched_at, job)
                        launched_at = None
                    elif state is JobState.PENDING and launches == 0:
                        self.assertIsNone(event.latency, job)
                    state = new
                else:
                    self.fail(f"unexpected event {event!r}")
                self.assertIs(seen_state, state, (job, event))
            self.assertIs(job.state, state, job)
            self.assertEqual(job.attempts, launches, job)


class EventKindsTests(EventTestCase):
    """Each event type, with exact contents."""

    def test_success_events(self) -> None:
        """put() emits JobQueued then JobLaunched at t=0; a success at t=2.5
        emits JobFinished(ok, latency 2.5, time 2.5)."""
        q, worker, clock, rec = self.make()
        worker.script["a"] = [(2.5, "v")]
        d = q.put("a")
        job = d.job  # type: ignore[attr-defined]
        advance_to(clock, 5.0)
        self.assertEqual(
            rec.events,
            [
                JobQueued(job, 0.0),
                JobLaunched(job, 0.0),
                JobFinished(job, Outcome.OK, 2.5, 2.5),
            ],
        )
        self.assertIs(self.successResultOf(d), job)

    def test_failed_events(self) -> None:
        """A failure emits JobFinished(failed) with the attempt's latency."""
        q, worker, clock, rec = self.make()
        worker.script["a"] = [(1.5, FatalError())]
        clock.advance(1)
        d = q.put("a")
        job = d.job  # type: ignore[attr-defined]
        advance_to(clock, 5.0)
        self.assertEqual(
            rec.events,
            [
                JobQueued(job, 1.0),
                JobLaunched(job, 1.0),
                JobFinished(job, Outcome.FAILED, 1.5, 2.5),
            ],
        )
        self.failureResultOf(d, JobFailed)

    def test_retried_and_throttled_events(self) -> None:
        """A retryable failure emits JobFinished(retried), a Throttled one
        JobFinished(throttled), each followed by a new JobLaunched when due."""
        policy = RetryPolicy(retry_on=(FlakyError,), base_delay=0.0)
        q, worker, clock, rec = self.make(retry=policy)
        worker.script["a"] = [(1, FlakyError()), (1, Throttled(3)), (1, "v")]
        d = q.put("a")
        job = d.job  # type: ignore[attr-defined]
        advance_to(clock, 20.0)
        self.assertEqual(
            rec.events,
            [
                JobQueued(job, 0.0),
                JobLaunched(job, 0.0),
                JobFinished(job, Outcome.RETRIED, 1.0, 1.0),
                JobLaunched(job, 1.0),
                LaneHeld(None, 5.0, 2.0),
                JobFinished(job, Outcome.THROTTLED, 1.0, 2.0),
                JobLaunched(job, 5.0),
                JobFinished(job, Outcome.OK, 1.0, 6.0),
            ],
        )
        self.assertEqual(self.successResultOf(d).attempts, 3)

    def test_lane_held_events(self) -> None:
        """hold() emits LaneHeld with the lane and the hold's end when a hold
        begins or is extended, and nothing for a hold that extends nothing."""
        q, _, clock, rec = self.make()
        clock.advance(1)
        q.hold(5, key="k")
        q.hold(2, key="k")  # ends before the hold there is: nothing
        q.hold(10, key="k")
        q.hold(3)
        self.assertEqual(
            rec.events,
            [
                LaneHeld("k", 6.0, 1.0),
                LaneHeld("k", 11.0, 1.0),
                LaneHeld(None, 4.0, 1.0),
            ],
        )

    def test_withdraw(self) -> None:
        """withdraw(key) takes that lane's pending and retrying jobs out (in
        dispatch order) without firing their Deferreds, leaves underway jobs
        and other lanes alone, keeps a retrying job's not_before, and emits
        JobWithdrawn for each; the jobs can be requeued elsewhere."""
        policy = RetryPolicy(retry_on=(FlakyError,), base_delay=4.0)
        q, worker, clock, rec = self.make(width=2, retry=policy)
        q.set_lane_width("k", 1)
        worker.script["k1"] = [(1, FlakyError()), (1, "v")]
        worker.script["k2"] = [(1, "v")]
        worker.script["k3"] = [(1, "v")]
        worker.script["o"] = [(5, "v")]
        ds = [q.put(a, key="o" if a == "o" else "k") for a in ("k1", "k2", "k3", "o")]
        advance_to(clock, 1.0)  # k1 failed, waits to retry; k2 underway
        self.assertEqual(sorted(j.arg for j in q.underway()), ["k2", "o"])
        rec.events.clear()
        jobs = q.withdraw("k")
        self.assertEqual([j.arg for j in jobs], ["k3", "k1"])
        self.assertIsNone(jobs[0].not_before)
        self.assertIsNotNone(jobs[1].not_before)
        self.assertEqual([j.state for j in jobs], [JobState.PENDING] * 2)
        self.assertEqual(rec.events, [JobWithdrawn(j, 1.0) for j in jobs])
        self.assertEqual(q.size(), (2, 0))
        advance_to(clock, 20.0)
        launched = [arg for arg, _ in worker.launches]
        self.assertEqual(launched.count("k1"), 1)  # never retried here
        self.assertNoResult(ds[0])
        self.assertNoResult(ds[2])
        self.successResultOf(ds[1])
        self.assertIsNone(q.lane("k"))
        again = ResizableDispatchQueue(worker, 1, clock=clock)
        d = again.requeue(jobs[0])
        clock.advance(1)
        self.assertEqual(self.successResultOf(d).result, "v")

    def test_lane_snapshot(self) -> None:
        """lane(key) is one lane's LaneInfo, or None once the queue keeps
        nothing for it."""
        q, worker, clock, _ = self.make(width=1)
        worker.script["a"] = [(1, "v")]
        worker.script["b"] = [(1, "v")]
        q.put("a", key="k")
        q.put("b", key="k")
        info = q.lane("k")
        assert info is not None
        self.assertEqual((info.pending, info.underway), (1, 1))
        self.assertIsNone(q.lane("other"))
        advance_to(clock, 5.0)
        self.assertIsNone(q.lane("k"))

    def test_cancel_pending_event(self) -> None:
        """Cancelling a job that never launched emits JobFinished(cancelled)
        with latency None."""
        q, _, clock, rec = self.make(width=0)
        d = q.put("a")
        job = d.job  # type: ignore[attr-defined]
        clock.advance(2)
        d.cancel()
        self.failureResultOf(d, JobCancelled)
        self.assertEqual(
            rec.events,
            [JobQueued(job, 0.0), JobFinished(job, Outcome.CANCELLED, None, 2.0)],
        )

    def test_cancel_underway_event(self) -> None:
        """Cancelling an underway job emits one JobFinished(cancelled) whose
        latency is the time it ran."""
        q, worker, clock, rec = self.make()
        worker.script["a"] = [(0, HANG)]
        d = q.put("a")
        job = d.job  # type: ignore[attr-defined]
        clock.advance(3)
        job.cancel()
        self.failureResultOf(d, JobCancelled)
        self.assertEqual(
            rec.events,
            [
                JobQueued(job, 0.0),
                JobLaunched(job, 0.0),
                JobFinished(job, Outcome.CANCELLED, 3.0, 3.0),
            ],
        )

    def test_cancel_retrying_event_latency(self) -> None:
        """
        Cancelling a job that waits to retry emits one JobFinished(cancelled)
        with latency None: no attempt was running (the last attempt's 1 s
        already went out with the "retried" event).  The same for a job
        cancelled after it became pending again but before relaunching.  And
        job.latency keeps the last attempt's run time (1 s), not the time since
        that attempt was launched.
        """
        q, worker, clock, rec = self.make()
        worker.script["a"] = [(1, RetryAfter(10))]
        d = q.put("a")
        job = d.job  # type: ignore[attr-defined]
        advance_to(clock, 5.0)
        d.cancel()
        self.failureResultOf(d, JobCancelled)
        q2, worker2, clock2, rec2 = self.make()
        worker2.script["b"] = [(1, RetryAfter(2))]
        d2 = q2.put("b")
        job2 = d2.job  # type: ignore[attr-defined]
        advance_to(clock2, 1.5)
        q2.setWidth(0)
        advance_to(clock2, 4.0)
        self.assertIs(job2.state, JobState.PENDING)
        d2.cancel()
        self.failureResultOf(d2, JobCancelled)
        self.assertEqual(
            [rec.of(job)[-1], rec2.of(job2)[-1]],
            [
                JobFinished(job, Outcome.CANCELLED, None, 5.0),
                JobFinished(job2, Outcome.CANCELLED, None, 4.0),
            ],
        )
        # Job.latency ("seconds the latest attempt ran") is still that 1 s.
        self.assertEqual((job.latency, job2.latency), (1.0, 1.0))

    def test_width_changed(self) -> None:
        """setWidth(), the width setter and resume(width) emit WidthChanged
        with old and new; setting the same width emits nothing."""
        q, _, _, rec = self.make(width=2)
        q.setWidth(5)
        q.setWidth(5)
        q.width = 1
        q.pause()
        q.resume(3)
        q.resume()
        self.assertEqual(
            rec.events,
            [WidthChanged(2, 5), WidthChanged(5, 1), WidthChanged(1, 3)],
        )
        self.assertFalse(rec.events[0].lane)

    def test_lane_width_changed(self) -> None:
        """set_lane_width emits WidthChanged(lane=True) with the key (None for
        the default); dropping an override reports the default it falls back
        to."""
        q, _, _, rec = self.make(lane_width=1)
        q.set_lane_width("a", 3)
        q.set_lane_width(None, 2)
        q.set_lane_width("a", None)
        self.assertEqual(
            rec.events,
            [
                WidthChanged(1, 3, lane=True, key="a"),
                WidthChanged(1, 2, lane=True, key=None),
                WidthChanged(3, 2, lane=True, key="a"),
            ],
        )

    def test_rate_changed(self) -> None:
        """set_rate, the rate setter and set_lane_rate emit RateChanged with
        old rate, new rate and burst (lane=True and the key for lanes)."""
        q, _, _, rec = self.make(lane_rate=4)
        q.set_rate(2, 3)
        q.rate = 5
        q.set_rate(None)
        q.set_lane_rate("a", 1, 2)
        q.set_lane_rate(None, None)
        self.assertEqual(
            rec.events,
            [
                RateChanged(None, 2, 3),
                RateChanged(2.0, 5, 3),
                RateChanged(5.0, None, 1),
                RateChanged(4, 1, 2, lane=True, key="a"),
                RateChanged(4, None, 1, lane=True, key=None),
            ],
        )


class ExactlyOnceTests(EventTestCase):
    """Observers see every transition exactly once, in a mixed scenario."""

    def run_scenario(
        self, cancel_underway_at_stop: bool
    ) -> tuple[Recorder, dict[str, Deferred[Any]], list[Job], ScriptedWorker]:
        policy = RetryPolicy(max_attempts=3, base_delay=1.0, retry_on=(FlakyError,))
        q, worker, clock, rec = self.make(width=3, retry=policy, rng=random.Random(3))
        worker.script.update(
            {
                "ok": [(1, "v")],
                "fatal": [(1, FatalError())],
                "flaky": [(1, FlakyError()), (1, "v")],
                "thr": [(0.5, Throttled(2)), (1, "v")],
                "a2": [(1, "v")],
                "exhaust": [(0.5, FlakyError())] * 3,
                "c-under": [(0, HANG)],
                "c-retry": [(0.5, RetryAfter(50))],
                "ok2": [(2, "v")],
                "slow": [(10, "v")],
                "r-stop": [(0.5, RetryAfter(100))],
                "late1": [(1, "v")],
                "late2": [(1, "v")],
            }
        )
        ds: dict[str, Deferred[Any]] = {}

        def put(arg: str, priority: int = 0, key: str | None = None) -> None:
            ds[arg] = q.put(arg, priority=priority, key=key)

        def cancel_when(arg: str, outcome: type | None) -> None:
            """Cancel ``arg`` 0.25 s after it launches (outcome None) or after
            it finishes an attempt with a retry (outcome JobFinished)."""

            def watch(event: Any) -> None:
                if getattr(event, "job", None) is None or event.job.arg != arg:
                    return
                if outcome is None and isinstance(event, JobLaunched):
                    clock.callLater(0.25, ds[arg].cancel)
                if (
                    outcome is JobFinished
                    and isinstance(event, JobFinished)
                    and event.outcome is Outcome.RETRIED
                ):
                    clock.callLater(0.25, ds[arg].cancel)

            q.subscribe(watch)

        cancel_when("c-under", None)
        cancel_when("c-retry", JobFinished)
        q.set_lane_width("a", 1)
        put("ok")
        put("fatal")
        put("flaky")
        put("c-pend", priority=5)
        put("thr", key="a")
        put("a2", key="a")
        put("exhaust", priority=-1)
        put("c-under", priority=1)
        put("c-retry", priority=1)
        put("ok2", priority=2)
        clock.advance(0.1)
        ds["c-pend"].cancel()
        advance_to(clock, 12.0)
        q.setWidth(1)
        put("r-stop")
        put("slow")
        advance_to(clock, 13.0)
        put("late1")
        put("late2", key="b")
        stopped = q.stop(cancel_underway=cancel_underway_at_stop)
        advance_to(clock, 40.0)
        leftover = self.successResultOf(stopped)
        return rec, ds, leftover, worker

    EXPECTED: ClassVar[dict[str, list[str]]] = {
        "ok": ["JobQueued", "JobLaunched", "ok"],
        "fatal": ["JobQueued", "JobLaunched", "failed"],
        "c-pend": ["JobQueued", "cancelled"],
        "flaky": ["JobQueued", "JobLaunched", "retried", "JobLaunched", "ok"],
        "thr": ["JobQueued", "JobLaunched", "throttled", "JobLaunched", "ok"],
        "a2": ["JobQueued", "JobLaunched", "ok"],
        "exhaust": ["JobQueued"]
        + ["JobLaunched", "retried"] * 2
        + ["JobLaunched", "failed"],
        "c-under": ["JobQueued", "JobLaunched", "cancelled"],
        "c-retry": ["JobQueued", "JobLaunched", "retried", "cancelled"],
        "ok2": ["JobQueued", "JobLaunched", "ok"],
        "r-stop": ["JobQueued", "JobLaunched", "retried"],
        "late1": ["JobQueued"],
        "late2": ["JobQueued"],
    }

    def check_scenario(self, cancel_underway_at_stop: bool) -> None:
        rec, ds, leftover, worker = self.run_scenario(cancel_underway_at_stop)
        jobs = {d.job.arg: d.job for d in ds.values()}  # type: ignore[attr-defined]
        self.check_history(rec, list(jobs.values()))
        expected = dict(self.EXPECTED)
        if cancel_underway_at_stop:
            expected["slow"] = ["JobQueued", "JobLaunched", "cancelled"]
        else:
            expected["slow"] = ["JobQueued", "JobLaunched", "ok"]
        self.assertEqual({arg: rec.kinds(job) for arg, job in jobs.items()}, expected)
        # The put() Deferreds agree with the events.
        for arg, job in jobs.items():
            d = ds[arg]
            if job.state is JobState.SUCCEEDED:
                self.assertIs(self.successResultOf(d), job)
            elif job.state is JobState.FAILED:
                self.assertIs(self.failureResultOf(d, JobFailed).value.job, job)
            elif job.state is JobState.CANCELLED:
                self.assertIs(self.failureResultOf(d, JobCancelled).value.job, job)
            else:
                self.assertNoResult(d)
        # stop() handed back exactly the jobs whose last event left them queued.
        back = [j.arg for j in leftover]
        if cancel_underway_at_stop:
            self.assertEqual(back, ["slow", "late1", "late2", "r-stop"])
        else:
            self.assertEqual(back, ["late1", "late2", "r-stop"])
        # Lane a (width 1) was held by thr's throttle: a2 launched only once
        # the 2 s hold was over, and thr's retry then waited for a2.
        throttled_at = [
            e.time
            for e in rec.of(jobs["thr"])
            if isinstance(e, JobFinished) and e.outcome is Outcome.THROTTLED
        ]
        a2_launch = [t for a, t in worker.launches if a == "a2"]
        thr_launches = [t for a, t in worker.launches if a == "thr"]
        self.assertEqual(a2_launch, [throttled_at[0] + 2])
        self.assertEqual(thr_launches[1], a2_launch[0] + 1)
        self.assertEqual(
            len([e for e in rec.events if isinstance(e, JobQueued)]), len(ds)
        )

    def test_mixed_scenario_waiting_stop(self) -> None:
        """Successes, failures, retries, throttles, cancels of pending, underway
        and retrying jobs, then stop(): every job's events form a legal path
        through TRANSITIONS, each reported exactly once, with exact
        latencies."""
        self.check_scenario(cancel_underway_at_stop=False)

    def test_mixed_scenario_cancelling_stop(self) -> None:
        """The same with stop(cancel_underway=True): the job underway at stop
        gets exactly one cancelled event."""
        self.check_scenario(cancel_underway_at_stop=True)


class ObserverBehaviourTests(EventTestCase):
    """Broken observers, unsubscribing, and the no-observer fast path."""

    def test_raising_observer_does_not_break_queue(self) -> None:
        """An observer that raises is logged; observers after it still see
        every event and the jobs complete."""
        clock = Clock()
        worker = ScriptedWorker(clock)
        q = ResizableDispatchQueue(worker, 1, clock=clock)
        calls: list[Any] = []

        def broken(event: Any) -> None:
            calls.append(event)
            raise BoomError("observer bug")

        good = Recorder(clock)
        q.subscribe(broken)
        q.subscribe(good)
        worker.script["a"] = [(1, "v")]
        worker.script["b"] = [(1, "w")]
        da = q.put("a")
        db = q.put("b")
        advance_to(clock, 5.0)
        self.assertEqual(self.successResultOf(da).result, "v")
        self.assertEqual(self.successResultOf(db).result, "w")
        self.assertEqual(len(good.events), 6)
        self.assertEqual(calls, good.events)
        self.assertEqual(len(self.flushLoggedErrors(BoomError)), 6)
        self.assertEqual(q.size(), (0, 0))

    def test_unsubscribe_stops_delivery(self) -> None:
        """After unsubscribe() an observer gets nothing more; calling it twice
        is harmless; other observers are unaffected."""
        q, worker, clock, rec = self.make()
        other = Recorder(clock)
        unsub = q.subscribe(other)
        q.put("a")
        unsub()
        unsub()
        worker.running.pop("a").callback(None)
        q.put("b")
        self.assertEqual(len(other.events), 2)
        self.assertEqual(len(rec.events), 5)

    def test_unsubscribe_self_inside_callback(self) -> None:
        """An observer that unsubscribes itself from inside its callback gets
        that one event and no more; the others go on."""
        q, worker, _, rec = self.make()
        got: list[Any] = []
        unsub = None

        def once(event: Any) -> None:
            got.append(event)
            assert unsub is not None
            unsub()

        unsub = q.subscribe(once)
        d = q.put("a")
        worker.running.pop("a").callback(None)
        self.assertEqual(got, [JobQueued(d.job, 0.0)])  # type: ignore[attr-defined]
        self.assertEqual(len(rec.events), 3)

    def test_unsubscribe_other_inside_callback(self) -> None:
        """An observer that unsubscribes another one on the first launch stops
        delivery to it from the next event on."""
        q, worker, _, _ = self.make()
        later: list[Any] = []
        unsub_later = None

        def killer(event: Any) -> None:
            if isinstance(event, JobLaunched):
                assert unsub_later is not None
                unsub_later()

        q.subscribe(killer)
        unsub_later = q.subscribe(later.append)
        q.put("a")
        worker.running.pop("a").callback(None)
        q.put("b")
        self.assertFalse(any(isinstance(e, JobFinished) for e in later))
        self.assertLessEqual(len(later), 2)
        self.assertIsInstance(later[0], JobQueued)

    def test_no_events_built_without_observers(self) -> None:
        """With nobody subscribed no event object is ever constructed, through
        puts, launches, successes, failures, retries, throttles, cancels and
        width/rate changes; once someone subscribes they are."""
        counts: dict[str, int] = defaultdict(int)
        for name in (
            "JobQueued",
            "JobLaunched",
            "JobFinished",
            "WidthChanged",
            "RateChanged",
            "LaneHeld",
        ):
            real = getattr(fetchq.events, name)

            def wrapper(*a: Any, _real: Any = real, _n: str = name, **k: Any) -> Any:
                counts[_n] += 1
                return _real(*a, **k)

            for module in (fetchq.queue, fetchq.lanes):  # every module emitting
                if hasattr(module, name):
                    self.patch(module, name, wrapper)

        clock = Clock()
        worker = ScriptedWorker(clock)
        policy = RetryPolicy(retry_on=(FlakyError,), base_delay=0.5)
        q = ResizableDispatchQueue(
            worker, 2, clock=clock, retry=policy, rng=random.Random(0)
        )

        def scenario() -> None:
            worker.script.update(
                {
                    "ok": [(1, "v")],
                    "bad": [(1, FatalError())],
                    "flaky": [(1, FlakyError()), (1, "v")],
                    "thr": [(1, Throttled(1)), (1, "v")],
                    "hang": [(0, HANG)],
                }
            )
            ds = [
                q.put(a, key="k" if a == "thr" else None)
                for a in ("ok", "bad", "flaky", "thr", "hang", "pend")
            ]
            for d in ds:
                d.addErrback(lambda f: None)
            q.setWidth(3)
            q.set_rate(10, 2)
            q.set_lane_width("k", 2)
            q.set_lane_rate("k", 5)
            advance_to(clock, clock.seconds() + 10)
            ds[4].cancel()
            ds[5].cancel()
            advance_to(clock, clock.seconds() + 10)
            q.setWidth(2)
            q.set_rate(None)

        scenario()
        self.assertEqual(dict(counts), {})
        self.assertEqual(len(worker.launches), 8)
        rec = Recorder(clock)
        q.subscribe(rec)
        scenario()
        self.assertEqual(
            set(counts),
            {
                "JobQueued",
                "JobLaunched",
                "JobFinished",
                "WidthChanged",
                "RateChanged",
                "LaneHeld",
            },
        )
        self.assertEqual(sum(counts.values()), len(rec.events))

    def test_events_delivered_in_subscription_order(self) -> None:
        """Several observers each get every event, in subscription order."""
        q, _, _, _ = self.make()
        seen: list[tuple[str, Any]] = []
        q.subscribe(lambda e: seen.append(("first", e)))
        q.subscribe(lambda e: seen.append(("second", e)))
        q.put("a")
        names = [n for n, _ in seen]
        self.assertEqual(names, ["first", "second", "first", "second"])
        self.assertIs(seen[0][1], seen[1][1])


class ReentrantObserverTests(EventTestCase):
    """Observers (an admin view, an adaptive controller) and job functions
    that act on the queue from inside an event or a launch see the queue obey
    at once."""

    def test_pause_from_job_launched_observer(self) -> None:
        """
        An observer that pauses the queue at a JobLaunched: with five jobs
        released by resume(), only the first launches; the others wait for
        the next resume().
        """
        q, worker, _, _ = self.make(width=5)
        q.pause()
        for i in range(5):
            q.put(i)
        unsub = q.subscribe(lambda e: isinstance(e, JobLaunched) and q.pause())
        q.resume()
        self.assertTrue(q.paused)
        self.assertEqual(([a for a, _ in worker.launches], q.size()), ([0], (1, 4)))
        unsub()
        q.resume()
        self.assertEqual([a for a, _ in worker.launches], [0, 1, 2, 3, 4])

    def test_pause_from_throttled_observer(self) -> None:
        """
        An adaptive controller that pauses the queue on a throttled outcome:
        when the first job raises Throttled at once, no later job of the same
        dispatch pass launches; the throttled job waits to retry.
        """
        clock = Clock()
        launched: list[int] = []

        def work(arg: int) -> Deferred[None]:
            launched.append(arg)
            if arg == 0:
                raise Throttled(5)
            return Deferred()

        q = ResizableDispatchQueue(work, 5, clock=clock)
        q.subscribe(
            lambda e: (
                isinstance(e, JobFinished)
                and e.outcome is Outcome.THROTTLED
                and q.pause()
            )
        )
        q.pause()
        for i in range(5):
            q.put(i, key=f"k{i}")
        q.resume()
        self.assertEqual((launched, q.size()), ([0], (0, 5)))

    def test_job_function_pausing_queue(self) -> None:
        """A job function that pauses the queue (say, on seeing its quota run
        out): no other job launches in the same dispatch pass."""
        clock = Clock()
        launched: list[int] = []

        def work(arg: int) -> Deferred[None]:
            launched.append(arg)
            if arg == 0:
                q.pause()
            return Deferred()

        q = ResizableDispatchQueue(work, 5, clock=clock)
        q.pause()
        for i in range(5):
            q.put(i)
        q.resume()
        self.assertEqual((launched, q.size()), ([0], (1, 4)))

    def test_job_function_stopping_queue(self) -> None:
        """A job function that stops the queue: nothing launches after stop(),
        which hands back the four jobs not yet launched."""
        clock = Clock()
        launched: list[int] = []
        running: list[Deferred[None]] = []
        stopped: list[Deferred[list[Job]]] = []

        def work(arg: int) -> Deferred[None]:
            launched.append(arg)
            if arg == 0:
                stopped.append(q.stop())
            d: Deferred[None] = Deferred()
            running.append(d)
            return d

        q = ResizableDispatchQueue(work, 5, clock=clock)
        q.pause()
        for i in range(5):
            q.put(i)
        q.resume()
        self.assertEqual(launched, [0])
        for d in list(running):
            d.callback(None)
        leftover = self.successResultOf(stopped[0])
        self.assertEqual([j.arg for j in leftover], [1, 2, 3, 4])

    def check_pause_from_job_queued(self, key: Any) -> None:
        q, worker, _, _ = self.make(width=2)
        q.subscribe(lambda e: isinstance(e, JobQueued) and q.pause())
        d = q.put("a", key=key)
        self.assertTrue(q.paused)
        self.assertEqual(
            (worker.launches, q.size(), d.job.state),  # type: ignore[attr-defined]
            ([], (0, 1), JobState.PENDING),
        )
        q.resume()
        self.assertEqual([a for a, _ in worker.launches], ["a"])

    def test_pause_from_job_queued_observer_unkeyed(self) -> None:
        """
        An observer that pauses the queue when it sees a JobQueued: the job
        being queued (no key, room to launch at once) must not launch, since
        the queue is paused before put() goes on to launch it.
        """
        self.check_pause_from_job_queued(None)

    def test_pause_from_job_queued_observer_keyed(self) -> None:
        """The same for a keyed job: it stays pending until resume()."""
        self.check_pause_from_job_queued("k")

    def check_cancel_from_job_queued(self, key: Any) -> None:
        q, worker, _, rec = self.make(width=2)

        def reject(event: Any) -> None:
            if isinstance(event, JobQueued) and event.job.arg == "dup":
                event.job.cancel()

        q.subscribe(reject)
        d = q.put("dup", key=key)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual((worker.launches, q.size()), ([], (0, 0)))
        failure = self.failureResultOf(d, JobCancelled)
        job = failure.value.job
        self.assertIs(job.state, JobState.CANCELLED)
        self.assertEqual(rec.kinds(job), ["JobQueued", "cancelled"])
        q.put("x", key=key)
        q.put("y", key=key)
        q.put("z", key=key)
        self.assertEqual([a for a, _ in worker.launches], ["x", "y"])
        self.assertEqual(q.size(), (2, 1))
        self.assertEqual(len(q.pending()), 1)

    def test_cancel_from_job_queued_observer_unkeyed(self) -> None:
        """
        An observer that cancels a job as soon as it is queued (a duplicate
        filter, say): its put() Deferred errbacks JobCancelled, the function is
        never called, the counts stay right and the queue's full width remains
        available to later jobs.
        """
        self.check_cancel_from_job_queued(None)

    def test_cancel_from_job_queued_observer_keyed(self) -> None:
        """The same for a keyed job (whose lane does not exist yet when the
        JobQueued event goes out): no error is logged and its Deferred
        errbacks JobCancelled."""
        self.check_cancel_from_job_queued("k")

    def test_stop_from_job_queued_observer(self) -> None:
        """
        An observer that stops the queue on a JobQueued: nothing launches after
        stop(), and the job being queued is not lost: it is handed back by
        stop() (or its Deferred has fired).
        """
        q, worker, _, _ = self.make(width=2)
        results: list[Any] = []

        def stopper(event: Any) -> None:
            if isinstance(event, JobQueued):
                q.stop().addCallback(results.append)

        q.subscribe(stopper)
        d = q.put("a")
        self.assertEqual(worker.launches, [])
        (leftover,) = results
        self.assertTrue(d.job in leftover or d.called)  # type: ignore[attr-defined]

    def test_adaptive_controller_observer(self) -> None:
        """
        An observer that narrows the width to 1 and sets a rate of 1/s when it
        sees a throttled outcome: t is throttled at 0.75 (queue held to 1.75);
        from then on one job at a time and at most one launch a second.
        """
        q, worker, clock, _ = self.make(width=3)

        def controller(event: Any) -> None:
            if isinstance(event, JobFinished) and event.outcome is Outcome.THROTTLED:
                q.setWidth(1)
                q.set_rate(1)

        q.subscribe(controller)
        worker.script["t"] = [(0.5, Throttled(1)), (0.25, "v")]
        for arg in ("u", "v"):
            worker.script[arg] = [(2, "v")]
        for arg in ("w", "x", "y", "p1", "p2", "p3"):
            worker.script[arg] = [(0.25, "v")]
        for arg in ("w", "x", "y"):
            q.put(arg)
        q.put("t", priority=-1)
        q.put("u")
        q.put("v")
        for arg in ("p1", "p2", "p3"):
            q.put(arg, priority=1)
        advance_to(clock, 30.0)
        self.assertEqual(
            worker.launches,
            [
                ("w", 0.0),
                ("x", 0.0),
                ("y", 0.0),
                ("t", 0.25),
                ("u", 0.25),
                ("v", 0.25),
                ("t", 2.25),
                ("p1", 3.25),
                ("p2", 4.25),
                ("p3", 5.25),
            ],
        )
