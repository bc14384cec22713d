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
