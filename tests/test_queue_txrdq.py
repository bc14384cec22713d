"""What fetchq keeps of txrdq 0.2.14's behaviour, one behaviour per test.

txrdq's own test suite runs against fetchq in ``tests/test_txrdq_suite.py``;
these tests pin the same behaviours on a ``task.Clock``, without the network,
each docstring naming what txrdq did.  What fetchq deliberately does
differently is listed in the README's "Coming from txrdq".
"""

from __future__ import annotations

import pickle
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fetchq import (
    Job,
    JobCancelled,
    JobFailed,
    JobState,
    ResizableDispatchQueue,
)
from fetchq.job import JobList


class Work:
    """A job function whose Deferreds the test fires, by argument."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.running: dict[Any, Deferred[Any]] = {}

    def __call__(self, arg: Any) -> Deferred[Any]:
        self.calls.append(arg)
        d: Deferred[Any] = Deferred(lambda _: self.running.pop(arg, None))
        self.running[arg] = d
        return d

    def finish(self, arg: Any) -> None:
        self.running.pop(arg).callback(("done", arg))


def make(width: int) -> tuple[ResizableDispatchQueue, Work, Clock]:
    clock = Clock()
    work = Work()
    return ResizableDispatchQueue(work, width, clock=clock), work, clock


class NoneFuncTests(SynchronousTestCase):
    """txrdq called ``func`` only at launch, so its queues could be made with
    None (its own tests do); fetchq accepts None too."""

    def test_none_func_queue_holds_jobs(self) -> None:
        """
        ResizableDispatchQueue(None) (width 0) takes puts, counts them,
        widens, narrows, pauses and stops, returning the jobs unrun.
        """
        queue = ResizableDispatchQueue(None, clock=Clock())
        for n in range(3):
            queue.put(n, priority=-n)
        self.assertEqual(queue.size(), (0, 3))
        queue.width = 0
        self.successResultOf(queue.pause())
        queue.resume()
        jobs = self.successResultOf(queue.stop())
        self.assertEqual([j.jobarg for j in jobs], [2, 1, 0])

    def test_none_func_fails_at_launch_with_a_clear_error(self) -> None:
        """
        A job launched by a queue made with None fails (as txrdq's did when it
        called None), and its failure is a TypeError that names the cause;
        the queue carries on.
        """
        queue = ResizableDispatchQueue(None, 1, clock=Clock())
        d = queue.put("x")
        failure = self.failureResultOf(d, JobFailed)
        job = failure.value.job
        self.assertIs(job.state, JobState.FAILED)
        assert job.failure is not None
        self.assertIsInstance(job.failure.value, TypeError)
        self.assertIn("func=None", str(job.failure.value))
        self.assertEqual(queue.size(), (0, 0))
        self.failureResultOf(queue.put("y"), JobFailed)

    def test_other_non_callables_are_still_refused(self) -> None:
        """A func that is neither callable nor None raises TypeError at once."""
        with self.assertRaises(TypeError) as caught:
            ResizableDispatchQueue("send_sms", 1, clock=Clock())  # type: ignore[arg-type]
        self.assertIn("'send_sms'", str(caught.exception))


class PendingStopsTests(SynchronousTestCase):
    """txrdq's ``pendingStops``: slots still to be given up after a narrowing."""

    def queue(self, width: int) -> ResizableDispatchQueue:
        return ResizableDispatchQueue(None, width, clock=Clock())

    def test_none_on_creation(self) -> None:
        """A new queue, of width 0 or 10, has no pending stops."""
        self.assertEqual(self.queue(0).pendingStops, 0)
        self.assertEqual(self.queue(10).pendingStops, 0)

    def test_narrowing_counts_and_widening_takes_back(self) -> None:
        """
        As txrdq counted them: 5 -> 3 leaves 2; 10 -> 7 -> 8 leaves 3 then 2;
        10 -> 0 leaves 10; 10 -> 1000 -> 100 -> 500 leaves 0, 900, 500.
        """
        queue = self.queue(5)
        queue.width = 3
        self.assertEqual(queue.pendingStops, 2)
        queue = self.queue(10)
        queue.width = 7
        self.assertEqual(queue.pendingStops, 3)
        queue.width = 8
        self.assertEqual(queue.pendingStops, 2)
        queue.width = 0
        self.assertEqual(queue.pendingStops, 10)
        queue = self.queue(10)
        seen = []
        for width in (1000, 100, 500):
            queue.width = width
            seen.append(queue.pendingStops)
        self.assertEqual(seen, [0, 900, 500])

    def test_given_up_as_jobs_end(self) -> None:
        """
        Narrowing 3 busy slots to 1 leaves 2 stops; each job end gives one up
        (the jobs beyond the width); idle slots go at the first job end.
        """
        queue, work, _ = make(3)
        for arg in "abcd":
            queue.put(arg)
        queue.width = 1
        self.assertEqual(queue.pendingStops, 2)
        work.finish("a")
        self.assertEqual(queue.pendingStops, 1)
        work.finish("b")
        self.assertEqual(queue.pendingStops, 0)
        self.assertEqual(work.calls, ["a", "b", "c"])
        queue.width = 5
        queue.width = 2
        self.assertEqual(queue.pendingStops, 3)
        work.finish("c")
        self.assertEqual(queue.pendingStops, 0)
        self.assertEqual(queue.size(), (1, 0))

    def test_only_a_narrowed_queue_pays_for_them(self) -> None:
        """
        Counting them costs a job's end nothing unless a narrowing is still
        unabsorbed: the queue's own _slot_freed runs again once the last
        stop is given up, or once widening takes them all back.
        """
        queue, work, _ = make(2)
        for arg in "abc":
            queue.put(arg)
        self.assertNotIn("_slot_freed", vars(queue))
        queue.width = 1
        self.assertIn("_slot_freed", vars(queue))
        work.finish("a")
        self.assertEqual(queue.pendingStops, 0)
        self.assertNotIn("_slot_freed", vars(queue))
        queue.width = 0
        self.assertEqual(queue.pendingStops, 1)
        queue.width = 1
        self.assertEqual(queue.pendingStops, 0)
        self.assertNotIn("_slot_freed", vars(queue))
        work.finish("b")
        self.assertEqual(work.calls, ["a", "b", "c"])


class AdminViewTests(SynchronousTestCase):
    """underway(), size() and pending() as txrdq's callers read them."""

    def test_underway_equals_a_set(self) -> None:
        """
        underway() equals the set txrdq returned (set() when idle, the set of
        running jobs otherwise) while staying a list in launch order.
        """
        queue, work, _ = make(2)
        self.assertEqual(queue.underway(), set())
        self.assertEqual(set(), queue.underway())
        for arg in "abc":
            queue.put(arg)
        underway = queue.underway()
        self.assertIsInstance(underway, JobList)
        self.assertIsInstance(underway, list)
        self.assertEqual(underway, set(underway))
        self.assertEqual(frozenset(underway), underway)
        self.assertNotEqual(underway, set(underway[:1]))
        self.assertEqual([j.arg for j in underway], ["a", "b"])
        self.assertEqual(underway, list(underway))
        work.finish("a")
        self.assertEqual({j.jobarg for j in queue.underway()}, {"b", "c"})

    def test_size_and_pending_after_stop(self) -> None:
        """
        After stop() has fired, size() and pending() still count the jobs it
        left pending, as txrdq's did (its queue kept them); cancelled underway
        jobs are not among them.
        """
        queue, work, _ = make(2)
        ds = [queue.put(arg) for arg in "abcd"]
        jobs = self.successResultOf(queue.stop(cancelUnderway=True))
        for d in ds[:2]:
            self.failureResultOf(d, JobCancelled)
        self.assertEqual([j.arg for j in jobs], ["a", "b", "c", "d"])
        self.assertEqual(queue.size(), (0, 2))
        self.assertEqual(len(queue), 2)
        self.assertEqual(queue.pending(), jobs[2:])
        self.assertEqual(queue.clearQueue(cancelPending=False), jobs[2:])
        self.assertEqual(queue.size(), (0, 0))
        self.assertEqual(queue.pending(), [])
        self.assertEqual(work.calls, ["a", "b"])

    def test_size_while_stopping_counts_pending(self) -> None:
        """
        Between stop() and its firing, size() is (underway, pending); once it
        fires, (0, pending left): the count txrdq's callers compare with the
        length of stop()'s list.
        """
        queue, work, _ = make(1)
        for arg in "abc":
            queue.put(arg)
        stopped = queue.stop()
        self.assertEqual(queue.size(), (1, 2))
        work.finish("a")
        jobs = self.successResultOf(stopped)
        self.assertEqual(queue.size(), (0, len(jobs)))


class TxrdqKeywordTests(SynchronousTestCase):
    """txrdq's camelCase names and keywords, accepted beside fetchq's."""

    def test_get_width(self) -> None:
        """getWidth() reads the width txrdq's way, paused or not."""
        queue, _, _ = make(3)
        self.assertEqual(queue.getWidth(), 3)
        queue.pause()
        queue.setWidth(5)
        self.assertEqual(queue.getWidth(), 5)

    def test_stop_cancel_underway_keyword(self) -> None:
        """
        stop(cancelUnderway=True) cancels the underway jobs and returns them
        first, as stop(cancel_underway=True) does.
        """
        queue, _, _ = make(1)
        da = queue.put("a")
        queue.put("b")
        jobs = self.successResultOf(queue.stop(cancelUnderway=True))
        self.assertEqual([j.arg for j in jobs], ["a", "b"])
        self.assertEqual([j.state for j in jobs], [Job.CANCELLED, Job.PENDING])
        self.failureResultOf(da, JobCancelled)

    def test_clear_queue_cancel_pending_keyword(self) -> None:
        """
        clearQueue(cancelPending=True) errbacks the pending jobs with
        JobCancelled; cancelPending=False drops them silently.
        """
        queue, _, _ = make(0)
        da = queue.put("a")
        queue.clearQueue(cancelPending=True)
        self.failureResultOf(da, JobCancelled)
        db = queue.put("b")
        self.assertEqual([j.arg for j in queue.clearQueue(cancelPending=False)], ["b"])
        self.assertNoResult(db)
        self.assertEqual(queue.size(), (0, 0))


class JobNamesTests(SynchronousTestCase):
    """txrdq's Job names and the job read through from a JobError."""

    def test_txrdq_job_attribute_names(self) -> None:
        """
        job.jobarg, queuedTime, startTime and stopTime read arg, queued_at,
        launched_at and stopped_at, on live and unpickled jobs alike.
        """
        queue, work, clock = make(1)
        clock.advance(5)
        d = queue.put(("number", "message"))
        clock.advance(2)
        work.finish(("number", "message"))
        job = self.successResultOf(d)
        for j in (job, pickle.loads(pickle.dumps(job))):
            self.assertEqual(j.jobarg, ("number", "message"))
            self.assertEqual((j.queuedTime, j.startTime, j.stopTime), (5.0, 5.0, 7.0))

    def test_state_constants(self) -> None:
        """
        Job.PENDING, UNDERWAY, FINISHED, FAILED and CANCELLED are the states
        a job's ``state`` compares with (FINISHED is succeeded).
        """
        self.assertEqual(
            [Job.PENDING, Job.UNDERWAY, Job.FINISHED, Job.FAILED, Job.CANCELLED],
            [
                JobState.PENDING,
                JobState.UNDERWAY,
                JobState.SUCCEEDED,
                JobState.FAILED,
                JobState.CANCELLED,
            ],
        )
        queue, work, _ = make(1)
        d = queue.put("a")
        [job] = queue.underway()
        self.assertEqual(job.state, Job.UNDERWAY)
        work.finish("a")
        self.assertEqual(self.successResultOf(d).state, Job.FINISHED)

    def test_hand_made_job_is_in_no_queue(self) -> None:
        """
        Job(arg, priority), as txrdq's tests build one, is a pending job of no
        queue: reprioritize() raises KeyError and cancel() does nothing.
        """
        job = Job("x", 1)
        self.assertEqual((job.jobarg, job.priority, job.state), ("x", 1, Job.PENDING))
        queue, _, _ = make(1)
        self.assertRaises(KeyError, queue.reprioritize, job, 10)
        job.cancel()
        self.assertIs(job.state, JobState.PENDING)

    def test_job_error_reads_as_its_job(self) -> None:
        """
        txrdq errbacked with the Job; fetchq's JobFailed/JobCancelled read the
        same attributes through: state, jobarg, priority, failure, result and
        the txrdq time names.
        """
        clock = Clock()

        def boom(arg: Any) -> None:
            raise ZeroDivisionError(arg)

        queue = ResizableDispatchQueue(boom, 1, clock=clock)
        error = self.failureResultOf(queue.put("a", 3), JobFailed).value
        self.assertEqual(error.state, Job.FAILED)
        self.assertEqual((error.jobarg, error.priority), ("a", 3))
        self.assertIsInstance(error.failure.value, ZeroDivisionError)
        self.assertIsNone(error.result)
        self.assertEqual((error.queuedTime, error.startTime, error.stopTime), (0, 0, 0))

        queue.width = 0
        d = queue.put("b")
        d.cancel()
        cancelled = self.failureResultOf(d, JobCancelled).value
        self.assertEqual(cancelled.state, Job.CANCELLED)
        self.assertEqual(cancelled.jobarg, "b")
        self.assertIs(cancelled.job.state, JobState.CANCELLED)
