"""Edge cases of :class:`fetchq.queue.ResizableDispatchQueue`.

Width changes, priority order, cancellation, reprioritising, the admin views,
pause/stop/clear, the kinds of job function, the size limit and job pickling.
Every test runs on a ``task.Clock``; job functions are fakes whose Deferreds
the tests fire.
"""

from __future__ import annotations

import math
import pickle
import random
from typing import Any

from twisted.internet.defer import (
    CancelledError,
    Deferred,
    QueueOverflow,
    fail,
    succeed,
)
from twisted.internet.task import Clock, deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from fetchq import (
    Job,
    JobCancelled,
    JobFailed,
    JobState,
    QueueStopped,
    ResizableDispatchQueue,
    RetryAfter,
)


class BoomError(Exception):
    """The failure job functions raise in these tests."""


class Work:
    """A fake job function: each call returns a Deferred the test fires.

    ``calls`` lists the arguments in launch order, ``running`` maps each
    argument to its unfired Deferred and ``cancelled`` lists the arguments
    whose Deferred the queue cancelled (a plain cancel: the Deferred then
    errbacks with CancelledError, as any Twisted Deferred does).
    """

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.running: dict[Any, Deferred[Any]] = {}
        self.cancelled: list[Any] = []

    def __call__(self, arg: Any) -> Deferred[Any]:
        self.calls.append(arg)

        def canceller(_: Deferred[Any]) -> None:
            self.cancelled.append(arg)
            del self.running[arg]

        d: Deferred[Any] = Deferred(canceller)
        self.running[arg] = d
        return d

    def finish(self, arg: Any, value: Any = None) -> None:
        """Fire ``arg``'s Deferred with ``value`` (default ``("done", arg)``)."""
        self.running.pop(arg).callback(("done", arg) if value is None else value)

    def fail(self, arg: Any, exc: BaseException) -> None:
        """Fail ``arg``'s Deferred with ``exc``."""
        self.running.pop(arg).errback(exc)


class StubbornDeferred(Deferred[Any]):
    """Work that ignores cancellation: cancel() is recorded and does nothing."""

    cancel_calls = 0

    def cancel(self) -> None:
        self.cancel_calls += 1


def make(
    width: int = 1, size: int | None = None
) -> tuple[ResizableDispatchQueue, Work, Clock]:
    """A queue of ``width`` over a fresh Work fake on a fresh Clock."""
    clock = Clock()
    work = Work()
    return ResizableDispatchQueue(work, width, size, clock=clock), work, clock


def args(jobs: list[Job]) -> list[Any]:
    """The arguments of ``jobs``, in order."""
    return [job.arg for job in jobs]


def drain(queue: ResizableDispatchQueue, work: Work) -> None:
    """Finish the oldest underway job until nothing is underway."""
    while queue.underway():
        work.finish(queue.underway()[0].arg)


class WidthTests(SynchronousTestCase):
    """Changing the width, and what widths are accepted."""

    def test_widening_launches_at_once(self) -> None:
        """Each widening launches exactly the newly allowed jobs, at once."""
        queue, work, _ = make(0)
        for n in range(6):
            queue.put(n)
        self.assertEqual(work.calls, [])
        self.assertEqual(queue.size(), (0, 6))
        queue.width = 2
        self.assertEqual(work.calls, [0, 1])
        self.assertEqual(queue.size(), (2, 4))
        queue.setWidth(5)
        self.assertEqual(work.calls, [0, 1, 2, 3, 4])
        self.assertEqual(queue.size(), (5, 1))
        queue.setWidth(9)
        self.assertEqual(work.calls, [0, 1, 2, 3, 4, 5])
        self.assertEqual(queue.size(), (6, 0))

    def test_narrowing_takes_effect_as_jobs_finish(self) -> None:
        """
        Narrowing below the underway count cancels nothing; underway drops
        one per finished job until it is below the new width, and only then
        do pending jobs launch again.
        """
        queue, work, _ = make(4)
        for n in range(8):
            queue.put(n)
        self.assertEqual(queue.size(), (4, 4))
        queue.setWidth(1)
        self.assertEqual(queue.width, 1)
        self.assertEqual(queue.size(), (4, 4))
        self.assertEqual(work.cancelled, [])
        steps = [
            (0, (3, 4), [0, 1, 2, 3]),
            (1, (2, 4), [0, 1, 2, 3]),
            (2, (1, 4), [0, 1, 2, 3]),
            (3, (1, 3), [0, 1, 2, 3, 4]),
            (4, (1, 2), [0, 1, 2, 3, 4, 5]),
        ]
        for finished, size, calls in steps:
            work.finish(finished)
            self.assertEqual(queue.size(), size)
            self.assertEqual(work.calls, calls)

    def test_narrowing_to_zero_then_widening(self) -> None:
        """Width 0 after jobs started lets them finish and launches no more."""
        queue, work, _ = make(2)
        for n in range(4):
            queue.put(n)
        queue.width = 0
        work.finish(0)
        work.finish(1)
        self.assertEqual(queue.size(), (0, 2))
        self.assertEqual(work.calls, [0, 1])
        queue.width = 1
        self.assertEqual(work.calls, [0, 1, 2])

    def test_width_zero_launches_nothing(self) -> None:
        """A width-0 queue (the default) queues jobs but never launches one."""
        clock = Clock()
        work = Work()
        queue = ResizableDispatchQueue(work, clock=clock)
        self.assertEqual(queue.width, 0)
        ds = [queue.put(n) for n in range(3)]
        clock.advance(3600)
        self.assertEqual(work.calls, [])
        self.assertEqual(queue.size(), (0, 3))
        for d in ds:
            self.assertNoResult(d)

    def test_bad_widths_raise_value_error(self) -> None:
        """
        A negative, float (even 2.0), bool or str width raises ValueError from
        setWidth, from the width property and from the constructor, and
        leaves the width unchanged.
        """
        queue, work, _ = make(2)
        for bad in (-1, 2.5, 2.0, True, False, "3"):
            with self.subTest(width=bad):
                self.assertRaises(ValueError, queue.setWidth, bad)
                with self.assertRaises(ValueError):
                    queue.width = bad
                with self.assertRaises(ValueError):
                    ResizableDispatchQueue(work, bad, clock=Clock())
                self.assertEqual(queue.width, 2)

    def test_widening_while_paused_launches_nothing_until_resume(self) -> None:
        """While paused a wider width is kept; resume() then launches up to it."""
        queue, work, _ = make(1)
        for n in range(5):
            queue.put(n)
        queue.pause()
        queue.setWidth(3)
        self.assertEqual(queue.width, 3)
        self.assertEqual(work.calls, [0])
        work.finish(0)
        self.assertEqual(work.calls, [0])
        self.assertEqual(queue.size(), (0, 4))
        queue.resume()
        self.assertEqual(work.calls, [0, 1, 2, 3])
        self.assertEqual(queue.size(), (3, 1))

    def test_resume_without_width_keeps_width_in_force(self) -> None:
        """resume() with no width launches up to the width set before pause()."""
        queue, work, _ = make(2)
        queue.pause()
        for n in range(5):
            queue.put(n)
        self.assertEqual(work.calls, [])
        queue.resume()
        self.assertEqual(queue.width, 2)
        self.assertEqual(work.calls, [0, 1])
        self.assertEqual(queue.size(), (2, 3))

    def test_resume_with_width(self) -> None:
        """resume(n) sets the width to n and launches up to it."""
        queue, work, _ = make(2)
        queue.pause()
        for n in range(5):
            queue.put(n)
        queue.resume(4)
        self.assertEqual(queue.width, 4)
        self.assertEqual(work.calls, [0, 1, 2, 3])
        self.assertRaises(ValueError, queue.resume, -1)


class PriorityOrderTests(SynchronousTestCase):
    """Lower priority first, FIFO within a priority."""

    def test_mixed_priorities_launch_in_order(self) -> None:
        """
        With width 1, 300 puts of mixed priorities launch sorted by priority
        and, within a priority, in the order they were put.
        """
        queue, work, _ = make(1)
        queue.put("blocker", priority=100)
        rng = random.Random(1234)
        items = [(rng.randrange(-3, 4), n) for n in range(300)]
        for priority, n in items:
            queue.put((priority, n), priority=priority)
        self.assertEqual(queue.size(), (1, 300))
        drain(queue, work)
        self.assertEqual(work.calls, ["blocker", *sorted(items)])
        self.assertEqual(queue.size(), (0, 0))

    def test_float_priorities(self) -> None:
        """Float and int priorities mix; equal values (1 and 1.0) stay FIFO."""
        queue, work, _ = make(0)
        for name, priority in [
            ("a", 1.5),
            ("b", 1),
            ("c", 0.5),
            ("d", -2.25),
            ("e", 1.0),
            ("f", 1.5),
            ("g", math.inf),
            ("h", -math.inf),
        ]:
            queue.put(name, priority=priority)
        self.assertEqual(args(queue.pending()), list("hdcbeafg"))
        queue.width = 1
        drain(queue, work)
        self.assertEqual(work.calls, list("hdcbeafg"))

    def test_non_number_priority_is_type_error(self) -> None:
        """A str, None, list or bool priority raises TypeError and queues nothing."""
        queue, work, _ = make(1)
        for bad in ("high", None, [1], True):
            with self.subTest(priority=bad):
                self.assertRaises(TypeError, queue.put, "x", priority=bad)
        self.assertEqual(queue.size(), (0, 0))
        self.assertEqual(work.calls, [])

    def test_nan_priority_is_value_error(self) -> None:
        """A NaN priority raises ValueError from put() and reprioritize()."""
        queue, _, _ = make(0)
        self.assertRaises(ValueError, queue.put, "x", priority=math.nan)
        self.assertEqual(queue.size(), (0, 0))
        queue.put("y", priority=1)
        [job] = queue.pending()
        self.assertRaises(ValueError, queue.reprioritize, job, math.nan)
        self.assertRaises(TypeError, queue.reprioritize, job, "1")
        self.assertEqual(job.priority, 1)


class CancelTests(SynchronousTestCase):
    """Cancelling jobs: pending, underway, stubborn, finishing, finished."""

    def test_cancel_pending_job(self) -> None:
        """
        A cancelled pending job's function is never called, size() drops,
        and its Deferred errbacks JobCancelled carrying the job.
        """
        queue, work, clock = make(1)
        da = queue.put("a")
        db = queue.put("b")
        dc = queue.put("c")
        clock.advance(7)
        db.cancel()
        failure = self.failureResultOf(db, JobCancelled)
        job = failure.value.job
        self.assertEqual(job.arg, "b")
        self.assertIs(job.state, JobState.CANCELLED)
        self.assertIsNone(job.launched_at)
        self.assertEqual(job.stopped_at, 7)
        self.assertEqual(job.attempts, 0)
        self.assertEqual(queue.size(), (1, 1))
        self.assertEqual(args(queue.pending()), ["c"])
        work.finish("a")
        work.finish("c")
        self.assertEqual(work.calls, ["a", "c"])
        self.assertEqual(self.successResultOf(da).arg, "a")
        self.assertEqual(self.successResultOf(dc).arg, "c")
        self.assertEqual(queue.size(), (0, 0))

    def test_cancel_underway_job(self) -> None:
        """
        Cancelling an underway job cancels its Deferred, errbacks the put()
        Deferred with JobCancelled, frees the slot and launches the next job.
        """
        queue, work, clock = make(1)
        da = queue.put("a")
        queue.put("b")
        [job] = queue.underway()
        clock.advance(3)
        da.cancel()
        self.assertEqual(work.cancelled, ["a"])
        failure = self.failureResultOf(da, JobCancelled)
        self.assertIsInstance(failure.value, CancelledError)
        self.assertIs(failure.value.job, job)
        self.assertIs(job.state, JobState.CANCELLED)
        self.assertEqual(job.stopped_at, 3)
        self.assertEqual(job.attempts, 1)
        self.assertIsNone(job.result)
        self.assertEqual(work.calls, ["a", "b"])
        self.assertEqual(queue.size(), (1, 0))
        self.assertEqual(args(queue.underway()), ["b"])

    def test_cancel_underway_job_whose_work_ignores_cancel(self) -> None:
        """
        If the work's Deferred ignores cancel(), the put() Deferred still
        errbacks JobCancelled at once, but the slot stays taken until the
        work really ends; its late result does not make the job succeed.
        """
        clock = Clock()
        stubborn: dict[str, StubbornDeferred] = {}
        calls: list[str] = []

        def func(arg: str) -> Deferred[Any]:
            calls.append(arg)
            d = stubborn[arg] = StubbornDeferred()
            return d

        queue = ResizableDispatchQueue(func, 1, clock=clock)
        da = queue.put("a")
        db = queue.put("b")
        [job] = queue.underway()
        da.cancel()
        self.assertEqual(stubborn["a"].cancel_calls, 1)
        failure = self.failureResultOf(da, JobCancelled)
        self.assertIs(failure.value.job, job)
        self.assertIs(job.state, JobState.CANCELLED)
        self.assertEqual(queue.size(), (1, 1))
        self.assertEqual(queue.underway(), [job])
        self.assertEqual(calls, ["a"])
        clock.advance(10)
        self.assertEqual(calls, ["a"])
        stubborn["a"].callback("late result")
        self.assertIs(job.state, JobState.CANCELLED)
        self.assertIsNone(job.result)
        self.assertEqual(job.stopped_at, 10)
        self.assertEqual(calls, ["a", "b"])
        self.assertEqual(queue.size(), (1, 0))
        self.assertNoResult(db)

    def test_stubborn_work_failing_late_stays_cancelled(self) -> None:
        """
        Work that ignored cancel and later fails leaves the job cancelled,
        with no second firing of its put() Deferred and no logged error.
        """
        clock = Clock()
        stubborn = StubbornDeferred()
        queue = ResizableDispatchQueue(lambda arg: stubborn, 1, clock=clock)
        d = queue.put("a")
        [job] = queue.underway()
        job.cancel()
        self.failureResultOf(d, JobCancelled)
        self.assertEqual(queue.size(), (1, 0))
        stubborn.errback(BoomError("late"))
        self.assertIs(job.state, JobState.CANCELLED)
        self.assertEqual(queue.size(), (0, 0))
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_work_that_succeeds_when_cancelled_stays_cancelled(self) -> None:
        """
        Work whose canceller fires it with a value (it finished anyway) still
        leaves the job cancelled, result-less, and frees the slot at once.
        """
        clock = Clock()
        calls: list[str] = []

        def func(arg: str) -> Deferred[str]:
            calls.append(arg)
            return Deferred(lambda d: d.callback("finished anyway"))

        queue = ResizableDispatchQueue(func, 1, clock=clock)
        d = queue.put("a")
        queue.put("b")
        d.cancel()
        job = self.failureResultOf(d, JobCancelled).value.job
        self.assertIs(job.state, JobState.CANCELLED)
        self.assertIsNone(job.result)
        self.assertEqual(calls, ["a", "b"])
        self.assertEqual(queue.size(), (1, 0))

    def test_cancel_from_own_success_callback(self) -> None:
        """
        job.cancel() and d.cancel() called from inside the put() Deferred's
        own callback raise nothing; the job stays succeeded with its result.
        """
        queue, work, _ = make(1)
        d = queue.put("a")
        queue.put("b")
        seen: list[Any] = []

        def on_done(job: Job) -> Job:
            job.cancel()
            d.cancel()
            seen.append((job.state, job.result))
            return job

        d.addCallback(on_done)
        work.finish("a", "ok")
        self.assertEqual(seen, [(JobState.SUCCEEDED, "ok")])
        job = self.successResultOf(d)
        self.assertIs(job.state, JobState.SUCCEEDED)
        self.assertEqual(job.result, "ok")
        self.assertEqual(work.cancelled, [])
        self.assertEqual(work.calls, ["a", "b"])
        self.assertEqual(queue.size(), (1, 0))

    def test_cancel_finished_job_is_noop(self) -> None:
        """
        Cancelling a succeeded or a failed job (by job or by Deferred)
        changes nothing: state, result, failure and size() stay the same.
        """
        queue, work, _ = make(2)
        ok = queue.put("ok")
        bad = queue.put("bad")
        queue.put("other")
        work.finish("ok", 42)
        work.fail("bad", BoomError("x"))
        ok_job = self.successResultOf(ok)
        bad_job = self.failureResultOf(bad, JobFailed).value.job
        for job, d in ((ok_job, ok), (bad_job, bad)):
            job.cancel()
            d.cancel()
        self.assertIs(ok_job.state, JobState.SUCCEEDED)
        self.assertEqual(ok_job.result, 42)
        self.assertIs(bad_job.state, JobState.FAILED)
        self.assertIsInstance(bad_job.failure.value, BoomError)
        self.assertEqual(queue.size(), (1, 0))
        self.assertEqual(work.cancelled, [])

    def test_cancel_twice(self) -> None:
        """A second cancel of an already cancelled job is a no-op."""
        queue, work, _ = make(1)
        queue.put("a")
        d = queue.put("b")
        [job] = queue.pending()
        job.cancel()
        job.cancel()
        d.cancel()
        self.failureResultOf(d, JobCancelled)
        self.assertEqual(queue.size(), (1, 0))
        work.finish("a")
        self.assertEqual(work.calls, ["a"])

    def test_deferred_cancel_and_job_cancel_are_equivalent(self) -> None:
        """
        For a pending and for an underway job, d.cancel() and job.cancel()
        give the same state, error, size(), work cancellations and launches.
        """
        outcomes = []
        for how in ("deferred", "job"):
            queue, work, _ = make(1)
            ds = {name: queue.put(name) for name in "abcd"}
            jobs = {j.arg: j for j in queue.underway() + queue.pending()}
            for name in ("c", "a"):
                if how == "deferred":
                    ds[name].cancel()
                else:
                    jobs[name].cancel()
            errors = {name: type(self.failureResultOf(ds[name]).value) for name in "ac"}
            outcomes.append(
                (
                    errors,
                    {name: jobs[name].state for name in "abcd"},
                    queue.size(),
                    list(work.cancelled),
                    list(work.calls),
                )
            )
        self.assertEqual(outcomes[0], outcomes[1])
        self.assertEqual(
            outcomes[0],
            (
                {"a": JobCancelled, "c": JobCancelled},
                {
                    "a": JobState.CANCELLED,
                    "b": JobState.UNDERWAY,
                    "c": JobState.CANCELLED,
                    "d": JobState.PENDING,
                },
                (1, 1),
                ["a"],
                ["a", "b"],
            ),
        )

    def test_cancel_retrying_job(self) -> None:
        """
        Cancelling a job waiting to retry errbacks JobCancelled, drops it from
        pending() and size(), and it is not run again when its time comes.
        """
        queue, work, clock = make(1)
        d = queue.put("a")
        work.fail("a", RetryAfter(5))
        [job] = queue.pending()
        self.assertIs(job.state, JobState.RETRYING)
        self.assertEqual(queue.size(), (0, 1))
        job.cancel()
        self.failureResultOf(d, JobCancelled)
        self.assertEqual(queue.size(), (0, 0))
        self.assertEqual(queue.pending(), [])
        clock.advance(10)
        self.assertEqual(work.calls, ["a"])


class ReprioritizeTests(SynchronousTestCase):
    """reprioritize(): errors, order and counts."""

    def test_job_from_another_queue_is_key_error(self) -> None:
        """A pending job of another queue raises KeyError and is left alone."""
        queue, _, _ = make(0)
        other, _, _ = make(0)
        other.put("x", priority=3)
        [job] = other.pending()
        self.assertRaises(KeyError, queue.reprioritize, job, 1)
        self.assertEqual(job.priority, 3)
        self.assertEqual(other.pending(), [job])
        self.assertEqual(queue.size(), (0, 0))

    def test_underway_finished_and_cancelled_are_runtime_error(self) -> None:
        """
        Reprioritising an underway, a succeeded, a failed or a cancelled job
        raises RuntimeError and changes no priority.
        """
        queue, work, _ = make(2)
        queue.put("ok", priority=1)
        dbad = queue.put("bad", priority=1)
        dcan = queue.put("cancelled", priority=1)
        jobs = {j.arg: j for j in queue.underway() + queue.pending()}
        self.assertRaises(RuntimeError, queue.reprioritize, jobs["ok"], 0)
        dcan.cancel()
        self.failureResultOf(dcan, JobCancelled)
        self.assertRaises(RuntimeError, queue.reprioritize, jobs["cancelled"], 0)
        work.finish("ok")
        work.fail("bad", BoomError())
        self.failureResultOf(dbad, JobFailed)
        self.assertRaises(RuntimeError, queue.reprioritize, jobs["ok"], 0)
        self.assertRaises(RuntimeError, queue.reprioritize, jobs["bad"], 0)
        self.assertEqual([j.priority for j in jobs.values()], [1, 1, 1])

    def test_goes_to_back_of_new_priority_class(self) -> None:
        """
        A reprioritised job goes behind every job already in its new priority
        class, even when the class is unchanged, and runs in that order.
        """
        queue, work, _ = make(0)
        for name, priority in (("a", 1), ("b", 1), ("c", 2), ("d", 2)):
            queue.put(name, priority=priority)
        jobs = {j.arg: j for j in queue.pending()}
        queue.reprioritize(jobs["a"], 2)
        self.assertEqual(args(queue.pending()), ["b", "c", "d", "a"])
        queue.reprioritize(jobs["d"], 1)
        self.assertEqual(args(queue.pending()), ["b", "d", "c", "a"])
        queue.reprioritize(jobs["b"], 1)
        self.assertEqual(args(queue.pending()), ["d", "b", "c", "a"])
        queue.reprioritize(jobs["a"], 0.5)
        self.assertEqual(args(queue.pending()), ["a", "d", "b", "c"])
        self.assertEqual([j.priority for j in queue.pending()], [0.5, 1, 1, 2])
        self.assertEqual(queue.size(), (0, 4))
        queue.width = 1
        drain(queue, work)
        self.assertEqual(work.calls, ["a", "d", "b", "c"])

    def test_size_after_reprioritize_and_cancel(self) -> None:
        """
        Repeated reprioritising and cancelling (including of reprioritised
        jobs) keep size() equal to the live jobs; exactly the survivors run.
        """
        queue, work, _ = make(0)
        ds = {n: queue.put(n, priority=n % 3) for n in range(12)}
        jobs = {j.arg: j for j in queue.pending()}
        for n in (0, 3, 3, 5, 7, 7, 7):
            queue.reprioritize(jobs[n], -n)
            self.assertEqual(queue.size(), (0, 12))
            self.assertEqual(len(queue.pending()), 12)
        for n in (3, 7, 8):
            jobs[n].cancel()
            self.failureResultOf(ds[n], JobCancelled)
        self.assertEqual(queue.size(), (0, 9))
        self.assertEqual(len(queue.pending()), 9)
        queue.reprioritize(jobs[5], 10)
        self.assertEqual(queue.size(), (0, 9))
        # Priority 0: 6 and 9 in put order, then 0 (reprioritised to 0 later);
        # priority 1: 1, 4, 10; priority 2: 2, 11; last 5 (now 10).
        self.assertEqual(args(queue.pending()), [6, 9, 0, 1, 4, 10, 2, 11, 5])
        queue.width = 3
        drain(queue, work)
        self.assertEqual(work.calls, [6, 9, 0, 1, 4, 10, 2, 11, 5])
        self.assertEqual(queue.size(), (0, 0))
        self.assertEqual(queue.pending(), [])
        self.assertEqual(len(queue), 0)

    def test_reprioritize_retrying_job(self) -> None:
        """
        A retrying job can be reprioritised; when its retry time comes it
        goes in with the new priority.
        """
        queue, work, clock = make(1)
        queue.put("a", priority=5)
        work.fail("a", RetryAfter(5))
        queue.put("b", priority=1)
        queue.put("c", priority=1)
        [_, job] = queue.pending()
        self.assertEqual(args(queue.pending()), ["c", "a"])
        self.assertIs(job.state, JobState.RETRYING)
        queue.reprioritize(job, 0)
        self.assertEqual(queue.size(), (1, 2))
        clock.advance(5)
        self.assertEqual(args(queue.pending()), ["a", "c"])
        work.finish("b")
        self.assertEqual(work.calls, ["a", "b", "a"])
        self.assertEqual(job.priority, 0)

    def test_many_reprioritizes_stay_correct(self) -> None:
        """
        Ten thousand reprioritisations of a few jobs (enough to trigger the
        heap's compaction of stale entries) keep pending() and size() right.
        """
        queue, work, _ = make(0)
        for n in range(5):
            queue.put(n, priority=0)
        jobs = queue.pending()
        for i in range(10000):
            job = jobs[i % 5]
            queue.reprioritize(job, (i * 7) % 11)
        expected = sorted(range(5), key=lambda n: ((9995 + n) * 7 % 11, 9995 + n))
        self.assertEqual(args(queue.pending()), expected)
        self.assertEqual(queue.size(), (0, 5))
        queue.width = 1
        drain(queue, work)
        self.assertEqual(work.calls, expected)


class ViewTests(SynchronousTestCase):
    """pending(), underway() and size()."""

    def test_pending_is_a_copy_in_dispatch_order(self) -> None:
        """Mutating pending()'s list changes neither the queue nor its order."""
        queue, work, _ = make(0)
        for name, priority in (("a", 2), ("b", 1), ("c", 2), ("d", 0)):
            queue.put(name, priority=priority)
        jobs = queue.pending()
        self.assertEqual(args(jobs), ["d", "b", "a", "c"])
        jobs.reverse()
        jobs.pop()
        jobs.clear()
        self.assertEqual(args(queue.pending()), ["d", "b", "a", "c"])
        self.assertIsNot(queue.pending(), queue.pending())
        queue.width = 1
        drain(queue, work)
        self.assertEqual(work.calls, ["d", "b", "a", "c"])

    def test_underway_is_a_copy_in_launch_order(self) -> None:
        """underway() lists the running jobs by launch time, as a copy."""
        queue, work, _ = make(3)
        for name in "abcd":
            queue.put(name)
        self.assertEqual(args(queue.underway()), ["a", "b", "c"])
        work.finish("b")
        self.assertEqual(args(queue.underway()), ["a", "c", "d"])
        queue.put("e")
        work.finish("a")
        copy = queue.underway()
        copy.clear()
        self.assertEqual(args(queue.underway()), ["c", "d", "e"])
        self.assertTrue(all(j.state is JobState.UNDERWAY for j in queue.underway()))

    def test_long_mixed_scenario_against_a_model(self) -> None:
        """
        Over 1500 random operations (put, cancel by job or Deferred, finish,
        fail, reprioritise, width changes, pause/resume), after every one:
        size() == (len(underway()), len(pending())), the pending and underway
        sets match a model, every launch is the model's best pending job, and
        no slot idles while jobs wait and the queue is not paused.
        """
        queue, work, _ = make(2)
        rng = random.Random(20240601)
        ds: dict[int, Deferred[Job]] = {}
        jobs: dict[int, Job] = {}
        model_pending: dict[int, tuple[int, int]] = {}
        model_underway: set[int] = set()
        order = 0
        paused = False
        next_arg = 0
        seen = 0  # how many of work.calls the model has accounted for
        counts = dict.fromkeys(
            ("put", "cancel-pending", "cancel-underway", "finish", "fail"), 0
        )

        def check() -> None:
            nonlocal seen
            for arg in work.calls[seen:]:
                best = min(model_pending, key=model_pending.__getitem__)
                self.assertEqual(arg, best)
                del model_pending[arg]
                model_underway.add(arg)
            seen = len(work.calls)
            underway, pending = queue.underway(), queue.pending()
            self.assertEqual(queue.size(), (len(underway), len(pending)))
            self.assertEqual(set(args(underway)), model_underway)
            self.assertEqual(
                args(pending), sorted(model_pending, key=model_pending.get)
            )
            if not paused and pending:
                self.assertGreaterEqual(len(underway), queue.width)

        for _ in range(1500):
            op = rng.random()
            if op < 0.35:
                priority = rng.randrange(4)
                model_pending[next_arg] = (priority, order)
                order += 1
                ds[next_arg] = queue.put(next_arg, priority=priority)
                [jobs[next_arg]] = [
                    j for j in queue.underway() + queue.pending() if j.arg == next_arg
                ]
                next_arg += 1
                counts["put"] += 1
            elif op < 0.45 and model_pending:
                arg = rng.choice(sorted(model_pending))
                del model_pending[arg]
                if rng.random() < 0.5:
                    ds[arg].cancel()
                else:
                    jobs[arg].cancel()
                self.failureResultOf(ds[arg], JobCancelled)
                counts["cancel-pending"] += 1
            elif op < 0.5 and model_underway:
                arg = rng.choice(sorted(model_underway))
                model_underway.discard(arg)
                jobs[arg].cancel()
                self.failureResultOf(ds[arg], JobCancelled)
                self.assertIn(arg, work.cancelled)
                counts["cancel-underway"] += 1
            elif op < 0.7 and model_underway:
                arg = rng.choice(sorted(model_underway))
                model_underway.discard(arg)
                work.finish(arg)
                self.assertEqual(self.successResultOf(ds[arg]).result, ("done", arg))
                counts["finish"] += 1
            elif op < 0.75 and model_underway:
                arg = rng.choice(sorted(model_underway))
                model_underway.discard(arg)
                work.fail(arg, BoomError(arg))
                self.failureResultOf(ds[arg], JobFailed)
                counts["fail"] += 1
            elif op < 0.87 and model_pending:
                arg = rng.choice(sorted(model_pending))
                priority = rng.randrange(4)
                model_pending[arg] = (priority, order)
                order += 1
                queue.reprioritize(jobs[arg], priority)
            elif op < 0.95:
                queue.width = rng.randrange(5)
            elif paused:
                paused = False
                queue.resume()
            else:
                paused = True
                queue.pause()
            check()
        self.assertGreater(len(work.calls), 200)
        self.assertGreater(min(counts.values()), 20, counts)


class PauseTests(SynchronousTestCase):
    """pause() and resume()."""

    def test_pause_fires_when_underway_drains(self) -> None:
        """
        pause()'s Deferred fires (with None) only when the last underway job
        finishes, and no pending job launches meanwhile.
        """
        queue, work, clock = make(2)
        ds = {name: queue.put(name) for name in "abc"}
        paused = queue.pause()
        self.assertTrue(queue.paused)
        self.assertNoResult(paused)
        work.finish("a")
        self.assertNoResult(paused)
        self.assertEqual(work.calls, ["a", "b"])
        work.fail("b", BoomError())
        self.failureResultOf(ds["b"], JobFailed)
        self.assertIsNone(self.successResultOf(paused))
        clock.advance(100)
        self.assertEqual(work.calls, ["a", "b"])
        self.assertEqual(queue.size(), (0, 1))
        self.assertNoResult(ds["c"])

    def test_pause_with_nothing_underway_fires_at_once(self) -> None:
        """With nothing underway, pause() has already fired."""
        queue, work, _ = make(1)
        self.assertIsNone(self.successResultOf(queue.pause()))
        queue.put("a")
        self.assertEqual(work.calls, [])
        self.assertEqual(queue.size(), (0, 1))

    def test_two_pauses_both_fire(self) -> None:
        """Two pause() calls give two Deferreds, both fired on draining."""
        queue, work, _ = make(1)
        queue.put("a")
        first = queue.pause()
        second = queue.pause()
        self.assertNoResult(first)
        self.assertNoResult(second)
        work.finish("a")
        self.assertIsNone(self.successResultOf(first))
        self.assertIsNone(self.successResultOf(second))

    def test_stop_while_paused_returns_pending(self) -> None:
        """
        stop() on a paused queue with nothing underway fires at once with the
        pending jobs, whose own Deferreds never fire; pending() and size()
        still show them, as txrdq's did.
        """
        queue, work, clock = make(1)
        da = queue.put("a")
        db = queue.put("b", priority=2)
        dc = queue.put("c", priority=1)
        queue.pause()
        work.finish("a")
        self.successResultOf(da)
        jobs = self.successResultOf(queue.stop())
        self.assertEqual(args(jobs), ["c", "b"])
        self.assertTrue(all(j.state is JobState.PENDING for j in jobs))
        clock.advance(100)
        self.assertNoResult(db)
        self.assertNoResult(dc)
        self.assertEqual(work.calls, ["a"])
        self.assertEqual(queue.size(), (0, 2))
        self.assertEqual(queue.pending(), jobs)

    def test_resume_after_stop_raises(self) -> None:
        """resume() after stop() raises QueueStopped and launches nothing."""
        queue, work, _ = make(1)
        queue.pause()
        queue.put("a")
        self.successResultOf(queue.stop())
        self.assertRaises(QueueStopped, queue.resume)
        self.assertRaises(QueueStopped, queue.resume, 3)
        self.assertEqual(work.calls, [])


class StopTests(SynchronousTestCase):
    """stop(), with and without cancelling underway jobs."""

    def test_stop_waits_for_underway(self) -> None:
        """
        stop() fires only after the underway jobs finish (their own Deferreds
        fire normally), launches nothing more and refuses new puts.
        """
        queue, work, _ = make(2)
        da = queue.put("a")
        db = queue.put("b")
        dc = queue.put("c")
        stopped = queue.stop()
        self.assertTrue(queue.stopped)
        self.assertRaises(QueueStopped, queue.put, "x")
        work.finish("a")
        self.assertNoResult(stopped)
        self.assertEqual(work.calls, ["a", "b"])
        self.assertEqual(self.successResultOf(da).result, ("done", "a"))
        work.finish("b")
        jobs = self.successResultOf(stopped)
        self.assertEqual(args(jobs), ["c"])
        self.assertEqual(self.successResultOf(db).result, ("done", "b"))
        self.assertNoResult(dc)
        self.assertEqual(work.calls, ["a", "b"])

    def test_stop_cancel_underway(self) -> None:
        """
        stop(cancel_underway=True) cancels the underway jobs and returns them
        first (launch order), then the pending ones (dispatch order); the
        cancelled ones errback JobCancelled, the pending ones never fire and
        are what size() and pending() count afterwards.
        """
        queue, work, clock = make(2)
        ds = {}
        for name, priority in (("a", 5), ("b", 5), ("c", 2), ("d", 1)):
            ds[name] = queue.put(name, priority=priority)
        stopped = queue.stop(cancel_underway=True)
        jobs = self.successResultOf(stopped)
        self.assertEqual(args(jobs), ["a", "b", "d", "c"])
        self.assertEqual(
            [j.state for j in jobs],
            [JobState.CANCELLED] * 2 + [JobState.PENDING] * 2,
        )
        self.assertEqual(work.cancelled, ["a", "b"])
        self.failureResultOf(ds["a"], JobCancelled)
        self.failureResultOf(ds["b"], JobCancelled)
        for job in jobs:
            job.cancel()
        clock.advance(100)
        self.assertNoResult(ds["c"])
        self.assertNoResult(ds["d"])
        self.assertEqual(work.calls, ["a", "b"])
        self.assertEqual(queue.size(), (0, 2))
        self.assertEqual(queue.pending(), jobs[2:])

    def test_stop_cancel_underway_waits_for_stubborn_work(self) -> None:
        """
        stop(cancel_underway=True) still waits for underway work that ignores
        cancellation, and then returns that job first.
        """
        clock = Clock()
        stubborn = StubbornDeferred()
        queue = ResizableDispatchQueue(lambda arg: stubborn, 1, clock=clock)
        d = queue.put("a")
        queue.put("b")
        stopped = queue.stop(cancel_underway=True)
        self.failureResultOf(d, JobCancelled)
        self.assertNoResult(stopped)
        stubborn.callback(None)
        jobs = self.successResultOf(stopped)
        self.assertEqual(args(jobs), ["a", "b"])
        self.assertEqual(
            [j.state for j in jobs], [JobState.CANCELLED, JobState.PENDING]
        )

    def test_cancel_pending_while_stopping(self) -> None:
        """
        While stop() waits for underway jobs, a pending job can still be
        cancelled: it errbacks JobCancelled and is left out of stop()'s list;
        requeue() is refused like put(), and the returned jobs cannot be
        reprioritised in the stopped queue.
        """
        queue, work, _ = make(1)
        queue.put("a")
        db = queue.put("b")
        queue.put("c")
        stopped = queue.stop()
        [job_b, job_c] = queue.pending()
        db.cancel()
        self.failureResultOf(db, JobCancelled)
        self.assertEqual(queue.size(), (1, 1))
        self.assertRaises(QueueStopped, queue.requeue, job_c)
        work.finish("a")
        jobs = self.successResultOf(stopped)
        self.assertEqual(jobs, [job_c])
        self.assertIs(job_b.state, JobState.CANCELLED)
        self.assertRaises(KeyError, queue.reprioritize, job_c, 0)
        self.assertEqual(work.calls, ["a"])

    def test_stop_twice_returns_same_jobs(self) -> None:
        """
        A second stop(), before or after the first has fired, fires with the
        same Job objects, in a list of its own.
        """
        queue, work, _ = make(1)
        for name in "abc":
            queue.put(name)
        first = queue.stop()
        second = queue.stop()
        self.assertNoResult(first)
        self.assertNoResult(second)
        work.finish("a")
        jobs1 = self.successResultOf(first)
        jobs2 = self.successResultOf(second)
        jobs3 = self.successResultOf(queue.stop())
        self.assertEqual(args(jobs1), ["b", "c"])
        self.assertEqual(len(jobs2), 2)
        self.assertEqual(len(jobs3), 2)
        for a, b, c in zip(jobs1, jobs2, jobs3, strict=True):
            self.assertIs(a, b)
            self.assertIs(a, c)
        jobs1.clear()
        self.assertEqual(args(self.successResultOf(queue.stop())), ["b", "c"])

    def test_retry_while_stopping_comes_back_retrying(self) -> None:
        """
        A job that raises RetryAfter(5) while the queue is stopping is
        returned by stop() in state retrying (after the pending jobs), its
        put() Deferred never fires and it is not run again; size() counts it
        with the pending job left behind.
        """
        clock = Clock()
        calls: list[str] = []
        running: dict[str, Deferred[Any]] = {}

        def func(arg: str) -> Deferred[Any]:
            calls.append(arg)
            d = running[arg] = Deferred()
            return d

        queue = ResizableDispatchQueue(func, 1, clock=clock)
        clock.advance(10)
        da = queue.put("a", priority=0)
        queue.put("b", priority=3)
        stopped = queue.stop()
        clock.advance(1)
        running["a"].errback(RetryAfter(5))
        jobs = self.successResultOf(stopped)
        self.assertEqual(args(jobs), ["b", "a"])
        job = jobs[1]
        self.assertIs(job.state, JobState.RETRYING)
        self.assertEqual(job.attempts, 1)
        self.assertEqual(job.not_before, 16)
        self.assertIsInstance(job.failure.value, RetryAfter)
        clock.advance(60)
        self.assertNoResult(da)
        self.assertEqual(calls, ["a"])
        self.assertEqual(queue.size(), (0, 2))


class ClearTests(SynchronousTestCase):
    """clear() and its txrdq alias clearQueue()."""

    def test_clear_cancels_pending_and_returns_them(self) -> None:
        """
        clear() errbacks every pending and retrying job with JobCancelled and
        returns them in dispatch order; underway jobs carry on.
        """
        queue, work, clock = make(1)
        da = queue.put("a")
        work.fail("a", RetryAfter(30))
        db = queue.put("b")
        dc = queue.put("c", priority=2)
        dd = queue.put("d", priority=1)
        self.assertEqual(queue.size(), (1, 3))
        jobs = queue.clear()
        self.assertEqual(args(jobs), ["d", "c", "a"])
        for d in (dc, dd, da):
            failure = self.failureResultOf(d, JobCancelled)
            self.assertIn(failure.value.job, jobs)
        self.assertTrue(all(j.state is JobState.CANCELLED for j in jobs))
        self.assertEqual(queue.size(), (1, 0))
        self.assertEqual(queue.pending(), [])
        work.finish("b")
        self.successResultOf(db)
        clock.advance(60)
        self.assertEqual(work.calls, ["a", "b"])
        queue.put("e")
        self.assertEqual(work.calls, ["a", "b", "e"])

    def test_clear_without_cancelling(self) -> None:
        """
        clear(cancel_pending=False) returns the pending jobs and drops them
        silently: their Deferreds never fire and they never run, but they can
        be requeued.
        """
        queue, work, clock = make(1)
        queue.put("a")
        db = queue.put("b")
        dc = queue.put("c")
        jobs = queue.clear(cancel_pending=False)
        self.assertEqual(args(jobs), ["b", "c"])
        self.assertEqual(queue.size(), (1, 0))
        work.finish("a")
        clock.advance(60)
        self.assertNoResult(db)
        self.assertNoResult(dc)
        self.assertEqual(work.calls, ["a"])
        redone = [queue.requeue(job) for job in jobs]
        drain(queue, work)
        self.assertEqual(work.calls, ["a", "b", "c"])
        self.assertEqual([self.successResultOf(d).arg for d in redone], ["b", "c"])
        self.assertNoResult(db)

    def test_clear_queue_alias(self) -> None:
        """clearQueue() is clear(): it cancels and returns the pending jobs."""
        queue, _, _ = make(1)
        queue.put("a")
        db = queue.put("b")
        jobs = queue.clearQueue()
        self.assertEqual(args(jobs), ["b"])
        self.failureResultOf(db, JobCancelled)
        self.assertEqual(queue.size(), (1, 0))
        self.assertEqual(args(queue.clearQueue(cancel_pending=False)), [])


class JobFunctionTests(SynchronousTestCase):
    """The kinds of thing a job function may do."""

    def run_one(self, func: Any) -> tuple[Deferred[Job], ResizableDispatchQueue]:
        clock = Clock()
        clock.advance(50)
        queue = ResizableDispatchQueue(func, 1, clock=clock)
        return queue.put("arg"), queue

    def test_raising_synchronously(self) -> None:
        """
        A function that raises fails the job with JobFailed, job.failure
        holding the original exception, and frees its slot.
        """
        error = BoomError("sync")
        calls: list[str] = []

        def func(arg: str) -> None:
            calls.append(arg)
            if arg == "bad":
                raise error

        queue = ResizableDispatchQueue(func, 1, clock=Clock())
        d = queue.put("bad")
        failure = self.failureResultOf(d, JobFailed)
        job = failure.value.job
        self.assertIs(job.state, JobState.FAILED)
        self.assertIs(job.failure.value, error)
        self.assertIsNone(job.result)
        self.assertEqual(job.attempts, 1)
        self.assertEqual(queue.size(), (0, 0))
        self.assertEqual(self.successResultOf(queue.put("good")).result, None)
        self.assertEqual(calls, ["bad", "good"])

    def test_returning_plain_value(self) -> None:
        """A plain return value becomes job.result at once."""
        d, queue = self.run_one(lambda arg: {"echo": arg})
        job = self.successResultOf(d)
        self.assertEqual(job.result, {"echo": "arg"})
        self.assertIs(job.state, JobState.SUCCEEDED)
        self.assertEqual((job.launched_at, job.stopped_at), (50, 50))
        self.assertEqual(queue.size(), (0, 0))

    def test_returning_fired_deferred(self) -> None:
        """An already-fired Deferred's value becomes job.result."""
        d, queue = self.run_one(lambda arg: succeed(arg * 2))
        self.assertEqual(self.successResultOf(d).result, "argarg")
        self.assertEqual(queue.size(), (0, 0))

    def test_returning_failed_deferred(self) -> None:
        """An already-failed Deferred fails the job with its exception."""
        error = BoomError("already")
        d, queue = self.run_one(lambda arg: fail(error))
        job = self.failureResultOf(d, JobFailed).value.job
        self.assertIs(job.failure.value, error)
        self.assertIs(job.state, JobState.FAILED)
        self.assertEqual(queue.size(), (0, 0))

    def test_coroutine_function(self) -> None:
        """
        An async def function awaiting a Deferred the clock fires works: its
        return value becomes job.result once the clock gets there.
        """
        clock = Clock()

        async def func(arg: int) -> int:
            await deferLater(clock, 5, lambda: None)
            if arg < 0:
                raise BoomError(arg)
            return arg * 10

        queue = ResizableDispatchQueue(func, 1, clock=clock)
        d = queue.put(4)
        dbad = queue.put(-1)
        self.assertEqual(queue.size(), (1, 1))
        clock.advance(4.5)
        self.assertNoResult(d)
        clock.advance(0.5)
        job = self.successResultOf(d)
        self.assertEqual(job.result, 40)
        self.assertEqual((job.launched_at, job.stopped_at), (0, 5))
        self.assertEqual(queue.size(), (1, 0))
        clock.advance(5)
        failure = self.failureResultOf(dbad, JobFailed)
        self.assertIsInstance(failure.value.job.failure.value, BoomError)
        self.assertEqual(queue.size(), (0, 0))

    def test_cancel_underway_coroutine(self) -> None:
        """Cancelling an underway coroutine job cancels what it awaits."""
        clock = Clock()
        finished: list[int] = []

        async def func(arg: int) -> None:
            await deferLater(clock, 5, lambda: None)
            finished.append(arg)

        queue = ResizableDispatchQueue(func, 1, clock=clock)
        d = queue.put(1)
        queue.put(2)
        d.cancel()
        self.failureResultOf(d, JobCancelled)
        self.assertEqual(queue.size(), (1, 0))
        clock.advance(5)
        self.assertEqual(finished, [2])

    def test_put_from_inside_job_function(self) -> None:
        """
        Jobs put from inside a job function take their place by priority:
        one with a free slot and nothing pending starts at once; others wait
        behind better jobs.
        """
        clock = Clock()
        calls: list[str] = []
        running: dict[str, Deferred[Any]] = {}
        queue: ResizableDispatchQueue

        def func(arg: str) -> Deferred[Any]:
            calls.append(arg)
            if arg == "parent":
                queue.put("child-now", priority=50)
            elif arg == "parent2":
                queue.put("child-low", priority=9)
                queue.put("child-high", priority=-1)
            d = running[arg] = Deferred()
            return d

        queue = ResizableDispatchQueue(func, 2, clock=clock)
        queue.put("parent")
        self.assertEqual(calls, ["parent", "child-now"])
        self.assertEqual(args(queue.underway()), ["parent", "child-now"])
        queue.put("x", priority=0)
        queue.put("parent2", priority=-5)
        running.pop("child-now").callback(None)
        self.assertEqual(calls, ["parent", "child-now", "parent2"])
        self.assertEqual(args(queue.pending()), ["child-high", "x", "child-low"])
        for name in ("parent", "parent2", "child-high", "x"):
            running.pop(name).callback(None)
        self.assertEqual(
            calls,
            ["parent", "child-now", "parent2", "child-high", "x", "child-low"],
        )
        self.assertEqual(queue.size(), (1, 0))

    def test_function_cancelling_its_own_job(self) -> None:
        """
        A function that cancels its own job then returns a value: the job is
        cancelled (not succeeded), JobCancelled reaches the caller and the
        slot frees for the next job.
        """
        clock = Clock()
        calls: list[str] = []
        queue: ResizableDispatchQueue

        def func(arg: str) -> str:
            calls.append(arg)
            if arg == "self-cancel":
                [me] = [j for j in queue.underway() if j.arg == arg]
                me.cancel()
            return "value"

        queue = ResizableDispatchQueue(func, 1, clock=clock)
        queue.pause()
        d = queue.put("self-cancel")
        dnext = queue.put("next")
        queue.resume()
        job = self.failureResultOf(d, JobCancelled).value.job
        self.assertIs(job.state, JobState.CANCELLED)
        self.assertIsNone(job.result)
        self.assertEqual(calls, ["self-cancel", "next"])
        self.assertEqual(self.successResultOf(dnext).result, "value")
        self.assertEqual(queue.size(), (0, 0))

    def test_function_cancelling_its_own_job_then_returning_deferred(self) -> None:
        """
        A function that cancels its own job and then returns an unfired
        Deferred: the job was underway when cancelled, so (as for any
        cancelled underway job) the queue cancels that work Deferred and the
        slot frees at once for the next job.
        """
        clock = Clock()
        calls: list[str] = []
        cancelled: list[str] = []
        queue: ResizableDispatchQueue

        def func(arg: str) -> Deferred[Any]:
            calls.append(arg)
            if arg == "self-cancel":
                [me] = [j for j in queue.underway() if j.arg == arg]
                me.cancel()
            return Deferred(lambda _: cancelled.append(arg))

        queue = ResizableDispatchQueue(func, 1, clock=clock)
        queue.pause()
        d = queue.put("self-cancel")
        queue.put("next")
        queue.resume()
        job = self.failureResultOf(d, JobCancelled).value.job
        self.assertIs(job.state, JobState.CANCELLED)
        self.assertEqual(cancelled, ["self-cancel"])
        self.assertEqual(calls, ["self-cancel", "next"])
        self.assertEqual(args(queue.underway()), ["next"])
        self.assertEqual(queue.size(), (1, 0))


class SizeLimitTests(SynchronousTestCase):
    """The size= limit on pending jobs."""

    def test_put_beyond_size_overflows(self) -> None:
        """
        With size=2, a third pending job raises QueueOverflow and changes
        nothing; once a pending job launches there is room again.
        """
        queue, work, _ = make(1, size=2)
        queue.put("a")
        queue.put("b")
        queue.put("c")
        self.assertEqual(queue.size(), (1, 2))
        self.assertRaises(QueueOverflow, queue.put, "d")
        self.assertEqual(queue.size(), (1, 2))
        work.finish("a")
        queue.put("d")
        self.assertRaises(QueueOverflow, queue.put, "e")
        drain(queue, work)
        self.assertEqual(work.calls, ["a", "b", "c", "d"])

    def test_bad_size_is_value_error(self) -> None:
        """A negative or non-integer size raises ValueError."""
        for bad in (-1, 1.5, "2"):
            with self.subTest(size=bad), self.assertRaises(ValueError):
                ResizableDispatchQueue(Work(), 1, bad, clock=Clock())

    def test_size_counts_only_pending(self) -> None:
        """
        size is the most jobs that may be *pending*: with size=0, a job that
        launches at once (free slot, nothing pending) is accepted, as
        txrdq's DeferredQueue hands an item straight to a waiting consumer.
        """
        queue, work, _ = make(1, size=0)
        d = queue.put("a")
        self.assertEqual(work.calls, ["a"])
        self.assertRaises(QueueOverflow, queue.put, "b")
        work.finish("a")
        self.assertEqual(self.successResultOf(d).arg, "a")


class JobPicklingTests(SynchronousTestCase):
    """Jobs round-trip through pickle; repr is readable."""

    FIELDS = (
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

    def assert_round_trips(self, job: Job) -> list[Job]:
        """Every pickle protocol keeps every field; returns the copies."""
        copies = []
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            copy = pickle.loads(pickle.dumps(job, protocol))
            self.assertIsNot(copy, job)
            for name in self.FIELDS:
                self.assertEqual(
                    getattr(copy, name), getattr(job, name), (protocol, name)
                )
            copies.append(copy)
        return copies

    def test_pending_job(self) -> None:
        """
        A pending job (with key and id) round-trips; an unpickled copy's
        cancel() is a no-op and it requeues into a new queue with its
        argument, priority, key and id.
        """
        clock = Clock()
        clock.advance(3)
        work = Work()
        queue = ResizableDispatchQueue(work, 0, clock=clock)
        arg = ("GET", "http://x/")
        d = queue.put(arg, priority=2.5, key="x", job_id="j-1")
        [job] = queue.pending()
        copy = self.assert_round_trips(job)[-1]
        self.assertEqual(
            (copy.arg, copy.priority, copy.key, copy.id, copy.state),
            (arg, 2.5, "x", "j-1", JobState.PENDING),
        )
        self.assertEqual((copy.attempts, copy.queued_at), (0, 3))
        copy.cancel()
        self.assertIs(copy.state, JobState.PENDING)
        self.assertIs(job.state, JobState.PENDING)
        self.assertNoResult(d)
        self.assertEqual(queue.size(), (0, 1))
        self.assertRaises(KeyError, queue.reprioritize, copy, 0)

        work2 = Work()
        queue2 = ResizableDispatchQueue(work2, 1, clock=clock)
        d2 = queue2.requeue(copy)
        self.assertEqual(work2.calls, [arg])
        work2.finish(arg, "ok")
        redone = self.successResultOf(d2)
        self.assertEqual(
            (redone.arg, redone.priority, redone.key, redone.id, redone.result),
            (arg, 2.5, "x", "j-1", "ok"),
        )
        self.assertEqual(redone.attempts, 1)
        self.assertEqual(work.calls, [])

    def test_retrying_job(self) -> None:
        """
        A retrying job round-trips with its attempts, not_before and failure;
        requeued, its attempt count carries on.
        """
        queue, work, clock = make(1)
        clock.advance(1)
        queue.put("r", priority=4, job_id=7)
        clock.advance(2)
        work.fail("r", RetryAfter(5, "slow down"))
        [job] = queue.pending()
        self.assertIs(job.state, JobState.RETRYING)
        copy = self.assert_round_trips(job)[-1]
        self.assertEqual(
            (copy.state, copy.attempts, copy.not_before, copy.stopped_at),
            (JobState.RETRYING, 1, 8, 3),
        )
        self.assertIsInstance(copy.failure.value, RetryAfter)
        self.assertEqual(copy.failure.value.reason, "slow down")
        copy.cancel()
        self.assertIs(copy.state, JobState.RETRYING)
        queue2, work2, _ = make(1)
        d = queue2.requeue(copy)
        work2.finish("r")
        redone = self.successResultOf(d)
        self.assertEqual((redone.attempts, redone.priority, redone.id), (2, 4, 7))

    def test_cancelled_job_from_stop(self) -> None:
        """A job cancelled by stop(cancel_underway=True) round-trips as cancelled."""
        queue, _, clock = make(1)
        d = queue.put("c", priority=1, key="k", job_id="c-1")
        clock.advance(4)
        [job] = self.successResultOf(queue.stop(cancel_underway=True))
        self.failureResultOf(d, JobCancelled)
        copy = self.assert_round_trips(job)[-1]
        self.assertEqual(
            (copy.state, copy.attempts, copy.key, copy.stopped_at),
            (JobState.CANCELLED, 1, "k", 4),
        )
        self.assertIsInstance(copy.failure.value, JobCancelled)
        self.assertIsNone(copy.result)
        copy.cancel()
        self.assertIs(copy.state, JobState.CANCELLED)

    def test_succeeded_job(self) -> None:
        """A succeeded job round-trips with its result and timings."""
        queue, work, clock = make(1)
        d = queue.put(("a", 1), priority=-3, job_id="s")
        clock.advance(2)
        work.finish(("a", 1), {"status": 200})
        job = self.successResultOf(d)
        copy = self.assert_round_trips(job)[-1]
        self.assertEqual(copy.result, {"status": 200})
        self.assertEqual(copy.latency, 2)
        self.assertIs(copy.state, JobState.SUCCEEDED)
        copy.cancel()
        self.assertIs(copy.state, JobState.SUCCEEDED)

    def test_failed_job(self) -> None:
        """A failed job round-trips with its failure's exception."""
        queue, work, _ = make(1)
        d = queue.put("f")
        work.fail("f", BoomError("nope"))
        job = self.failureResultOf(d, JobFailed).value.job
        copy = self.assert_round_trips(job)[-1]
        self.assertIs(copy.state, JobState.FAILED)
        self.assertIsInstance(copy.failure, Failure)
        self.assertEqual(copy.failure.value.args, ("nope",))

    def test_repr(self) -> None:
        """repr shows id, arg, priority, key and state, and truncates a huge arg."""
        queue, _, _ = make(0)
        queue.put("small", priority=2, key=None, job_id="id-9")
        queue.put("x" * 100_000, priority=1)
        queue.put(list(range(100_000)), priority=3)
        huge, small, big_list = queue.pending()  # priorities 1, 2, 3
        self.assertEqual(
            repr(small),
            "<Job id='id-9' arg='small' priority=2 key=None state=pending>",
        )
        for job in (huge, big_list):
            text = repr(job)
            self.assertLess(len(text), 200)
            self.assertIn("...", text)
            self.assertTrue(text.startswith("<Job id=None arg="))
            self.assertIn(f"priority={job.priority}", text)
            self.assertTrue(text.endswith("state=pending>"))
