"""The seed's walk-through of the resizable dispatch queue, call by call.

Every call shown in ``resizable-dispatch-queue.txt`` (txrdq's original API
description) is made here as written there, with ``reactor`` replaced by a
``task.Clock`` and ``sendSMS`` by a fake whose Deferreds the tests fire.
"""

from __future__ import annotations

import pickle
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

import fetchq
from fetchq import (
    DeferredPool,
    DeferredPriorityQueue,
    Job,
    QueueStopped,
    ResizableDispatchQueue,
)
from fetchq.job import JobState

Sms = tuple[int, str]

START = 1000.0  # the clock's time when the queue is made


class SmsError(Exception):
    """What the fake SMS provider fails with."""


class FakeSms:
    """A fake ``sendSMS``: every call returns a Deferred the test fires.

    ``calls`` lists the (number, message) arguments in the order the queue
    launched them; ``running`` maps each argument to its unfired Deferred;
    ``cancelled`` lists the arguments whose Deferred the queue cancelled.
    """

    def __init__(self) -> None:
        self.calls: list[Sms] = []
        self.running: dict[Sms, Deferred[str]] = {}
        self.cancelled: list[Sms] = []

    def __call__(self, number_msg: Sms) -> Deferred[str]:
        self.calls.append(number_msg)

        def canceller(_: Deferred[str]) -> None:
            self.cancelled.append(number_msg)
            del self.running[number_msg]

        d: Deferred[str] = Deferred(canceller)
        self.running[number_msg] = d
        return d

    def deliver(self, number_msg: Sms) -> None:
        """The provider accepts this SMS: its Deferred fires with an id."""
        self.running.pop(number_msg).callback(f"sent:{number_msg[0]}")

    def reject(self, number_msg: Sms, exc: Exception) -> None:
        """The provider rejects this SMS: its Deferred fails with ``exc``."""
        self.running.pop(number_msg).errback(exc)


def sms(n: int) -> Sms:
    """The n-th test SMS."""
    return (5550000000 + n, f"Message {n}")


class SeedWalkThroughTests(SynchronousTestCase):
    """The seed's example use case, step by step."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.sendSMS = FakeSms()
        # Create a queue that will allow 5 simultaneous underway jobs.
        self.rdq = ResizableDispatchQueue(self.sendSMS, 5, clock=self.clock)

    def test_put_fires_with_job(self) -> None:
        """
        put((number, msg), priority=5) calls sendSMS with the tuple at once (a
        slot is free), and the Deferred calls back with a Job holding the
        argument, the result, the priority and the queued/launched/stopped
        times read from the clock.
        """
        d1 = self.rdq.put((2127399921, "Hello..."), priority=5)
        seen: list[Job] = []
        d1.addCallback(seen.append)
        self.assertEqual(self.sendSMS.calls, [(2127399921, "Hello...")])
        self.assertEqual(self.rdq.size(), (1, 0))
        self.assertEqual(seen, [])
        [job] = self.rdq.underway()
        self.assertIs(job.state, JobState.UNDERWAY)
        self.assertIsNone(job.result)
        self.assertIsNone(job.stopped_at)

        self.clock.advance(12.5)
        self.sendSMS.deliver((2127399921, "Hello..."))
        self.assertEqual(len(seen), 1)
        self.assertIs(seen[0], job)
        self.assertIsInstance(job, Job)
        self.assertEqual(job.arg, (2127399921, "Hello..."))
        self.assertEqual(job.result, "sent:2127399921")
        self.assertEqual(job.priority, 5)
        self.assertIs(job.state, JobState.SUCCEEDED)
        self.assertEqual(job.queued_at, START)
        self.assertEqual(job.launched_at, START)
        self.assertEqual(job.stopped_at, START + 12.5)
        self.assertEqual(job.latency, 12.5)
        self.assertEqual(job.attempts, 1)
        self.assertEqual(self.rdq.size(), (0, 0))

    def test_queued_launched_stopped_times_of_a_waiting_job(self) -> None:
        """
        A job that waits for a slot has queued_at (its put()), launched_at
        (when a slot freed) and stopped_at (when it finished) all different.
        """
        for n in range(5):
            self.rdq.put(sms(n), priority=5)
        self.clock.advance(1)
        d = self.rdq.put(sms(99), priority=5)
        self.clock.advance(2)
        self.sendSMS.deliver(sms(0))
        self.assertEqual(self.sendSMS.calls[-1], sms(99))
        self.clock.advance(4)
        self.sendSMS.deliver(sms(99))
        job = self.successResultOf(d)
        self.assertEqual(job.queued_at, START + 1)
        self.assertEqual(job.launched_at, START + 3)
        self.assertEqual(job.stopped_at, START + 7)
        self.assertEqual(job.result, f"sent:{sms(99)[0]}")

    def test_cancel_second_job_via_deferred(self) -> None:
        """
        d2.cancel() on an underway job cancels sendSMS's Deferred and errbacks
        d2 with fetchq.JobCancelled, which carries the job and is also a
        Twisted CancelledError; d1 is untouched.
        """
        d1 = self.rdq.put((2127399921, "Hello..."), priority=5)
        d2 = self.rdq.put((5052929919, "Test..."), priority=5)
        called: list[Job] = []
        d2.addCallback(called.append)
        self.assertEqual(self.rdq.size(), (2, 0))

        # Cancel the second job
        self.clock.advance(3)
        d2.cancel()

        failure = self.failureResultOf(d2, fetchq.JobCancelled)
        self.assertIsInstance(failure.value, CancelledError)
        self.assertIsInstance(failure.value, fetchq.JobError)
        self.assertEqual(called, [])
        job = failure.value.job
        self.assertIsInstance(job, Job)
        self.assertEqual(job.arg, (5052929919, "Test..."))
        self.assertEqual(job.priority, 5)
        self.assertIs(job.state, JobState.CANCELLED)
        self.assertIsNone(job.result)
        self.assertEqual(job.queued_at, START)
        self.assertEqual(job.launched_at, START)
        self.assertEqual(job.stopped_at, START + 3)
        self.assertEqual(self.sendSMS.cancelled, [(5052929919, "Test...")])
        self.assertEqual(self.rdq.size(), (1, 0))
        self.assertEqual(
            [j.arg for j in self.rdq.underway()], [(2127399921, "Hello...")]
        )
        self.assertNoResult(d1)
        self.sendSMS.deliver((2127399921, "Hello..."))
        self.assertEqual(self.successResultOf(d1).result, "sent:2127399921")

    def test_cancel_pending_job_never_sends(self) -> None:
        """
        Cancelling a job that is still pending errbacks it with JobCancelled
        and sendSMS is never called for it, even once slots free up.
        """
        for n in range(5):
            self.rdq.put(sms(n), priority=5)
        d = self.rdq.put(sms(5), priority=5)
        d.cancel()
        failure = self.failureResultOf(d, fetchq.JobCancelled)
        self.assertIsNone(failure.value.job.launched_at)
        self.assertEqual(failure.value.job.stopped_at, START)
        self.assertEqual(self.rdq.size(), (5, 0))
        for n in range(5):
            self.sendSMS.deliver(sms(n))
        self.assertEqual(self.sendSMS.calls, [sms(n) for n in range(5)])
        self.assertEqual(self.rdq.size(), (0, 0))

    def test_width_property_widens_and_narrows(self) -> None:
        """
        rdq.width = 10 launches five more jobs at once; rdq.width = 7 then
        interrupts nothing, and the narrower width shows as jobs finish.
        """
        for n in range(20):
            self.rdq.put(sms(n), priority=5)
        self.assertEqual(self.rdq.width, 5)
        self.assertEqual(self.rdq.size(), (5, 15))

        # Widen the outgoing pipeline to 10 simultaneous jobs.
        self.rdq.width = 10
        self.assertEqual(self.rdq.width, 10)
        self.assertEqual(self.rdq.size(), (10, 10))
        self.assertEqual(self.sendSMS.calls, [sms(n) for n in range(10)])

        # We're dispatching jobs too fast, turn it down a little.
        self.rdq.width = 7
        self.assertEqual(self.rdq.width, 7)
        self.assertEqual(self.rdq.size(), (10, 10))
        self.assertEqual(self.sendSMS.cancelled, [])
        expected_underway = [9, 8, 7, 7, 7]
        for n, underway in zip(range(5), expected_underway, strict=True):
            self.sendSMS.deliver(sms(n))
            self.assertEqual(self.rdq.size()[0], underway)
        self.assertEqual(self.sendSMS.calls, [sms(n) for n in range(12)])

    def test_pending_cancel_and_reprioritize(self) -> None:
        """
        rdq.pending() is a copy in dispatch order; job.cancel() on one of its
        jobs removes it for good, and rdq.reprioritize(job, -1) makes another
        run next.
        """
        puts = [self.rdq.put(sms(n), priority=5) for n in range(8)]
        # Get a copy of the list of pending jobs.
        jobs = self.rdq.pending()
        self.assertEqual([j.arg for j in jobs], [sms(5), sms(6), sms(7)])
        self.assertTrue(all(j.state is JobState.PENDING for j in jobs))

        # Cancel one of the pending jobs from the jobs list.
        job = jobs[0]
        job.cancel()
        self.assertIs(job.state, JobState.CANCELLED)
        failure = self.failureResultOf(puts[5], fetchq.JobCancelled)
        self.assertIs(failure.value.job, job)
        self.assertEqual(self.rdq.size(), (5, 2))
        self.assertEqual([j.arg for j in self.rdq.pending()], [sms(6), sms(7)])

        # Reprioritize one of the pending jobs from the jobs list.
        job = jobs[2]
        self.rdq.reprioritize(job, -1)
        self.assertEqual(job.priority, -1)
        self.assertEqual([j.arg for j in self.rdq.pending()], [sms(7), sms(6)])
        self.assertEqual(self.rdq.size(), (5, 2))

        self.sendSMS.deliver(sms(0))
        self.assertEqual(self.sendSMS.calls[-1], sms(7))
        self.sendSMS.deliver(sms(1))
        self.assertEqual(self.sendSMS.calls[-1], sms(6))
        self.assertEqual(len(self.sendSMS.calls), 7)
        self.assertNotIn(sms(5), self.sendSMS.calls)

    def test_call_later_set_width(self) -> None:
        """
        reactor.callLater(3600, rdq.setWidth, 20), on the clock, widens the
        queue exactly an hour later and not before.
        """
        for n in range(30):
            self.rdq.put(sms(n), priority=5)
        # Arrange to increase the number of jobs in one hour.
        self.clock.callLater(3600, self.rdq.setWidth, 20)
        self.clock.advance(3599)
        self.assertEqual(self.rdq.width, 5)
        self.assertEqual(self.rdq.size(), (5, 25))
        self.clock.advance(1)
        self.assertEqual(self.rdq.width, 20)
        self.assertEqual(self.rdq.size(), (20, 10))
        self.assertEqual(self.sendSMS.calls, [sms(n) for n in range(20)])
        self.assertEqual(self.rdq.underway()[-1].launched_at, START + 3600)

    def test_pause_and_resume_with_width(self) -> None:
        """
        rdq.pause() returns a Deferred that fires only once the underway jobs
        have finished; nothing launches meanwhile, not even new puts.
        rdq.resume(8) launches eight jobs and sets the width to 8.
        """
        for n in range(12):
            self.rdq.put(sms(n), priority=5)
        # Pause processing.
        paused = self.rdq.pause()
        self.assertTrue(self.rdq.paused)
        self.assertNoResult(paused)
        self.rdq.put(sms(12), priority=0)
        for n in range(4):
            self.sendSMS.deliver(sms(n))
            self.assertNoResult(paused)
            self.assertEqual(self.rdq.size(), (4 - n, 8))
        self.clock.advance(60)
        self.assertEqual(len(self.sendSMS.calls), 5)
        self.sendSMS.deliver(sms(4))
        self.assertIsNone(self.successResultOf(paused))
        self.assertEqual(self.rdq.size(), (0, 8))
        self.assertEqual(len(self.sendSMS.calls), 5)

        # Resume processing, with a new width of 8.
        self.rdq.resume(8)
        self.assertFalse(self.rdq.paused)
        self.assertEqual(self.rdq.width, 8)
        self.assertEqual(self.rdq.size(), (8, 0))
        self.assertEqual(
            self.sendSMS.calls[5:], [sms(12)] + [sms(n) for n in range(5, 12)]
        )

    def test_stop_save_and_requeue(self) -> None:
        """
        d = rdq.stop(); d.addCallback(saveJobs) waits for the underway jobs,
        then hands saveJobs the unprocessed jobs, which really pickle; loaded
        and requeue()d into a new queue they run with their original args and
        priorities, in their original order.  put() after stop() raises
        QueueStopped.
        """
        priorities = {n: (n % 3) * 2 - 1 for n in range(10)}  # -1, 1 or 3
        for n in range(10):
            self.rdq.put(sms(n), priority=priorities[n])
        launched = list(self.sendSMS.calls)
        self.assertEqual(launched, [sms(n) for n in range(5)])
        expected_left = [j.arg for j in self.rdq.pending()]
        # Priority first (-1, 1, 3), then the order they were put in.
        self.assertEqual(expected_left, [sms(6), sms(9), sms(7), sms(5), sms(8)])
        saved: list[bytes] = []

        # Shutdown. Wait for any underway jobs to complete, and save
        # the list of jobs not yet processed.
        def saveJobs(jobs: list[Job]) -> list[Job]:
            saved.append(pickle.dumps(jobs))
            return jobs

        d = self.rdq.stop()
        d.addCallback(saveJobs)
        self.assertTrue(self.rdq.stopped)
        with self.assertRaises(QueueStopped):
            self.rdq.put(sms(100), priority=5)
        for n in range(4):
            self.sendSMS.deliver(sms(n))
        self.assertNoResult(d)
        self.assertEqual(saved, [])
        self.sendSMS.deliver(sms(4))
        jobs = self.successResultOf(d)
        self.assertEqual([j.arg for j in jobs], expected_left)
        self.assertEqual(len(saved), 1)
        self.assertEqual(self.sendSMS.calls, launched)
        self.clock.advance(3600)
        self.assertEqual(self.sendSMS.calls, launched)

        loaded = pickle.loads(saved[0])
        self.assertEqual([j.arg for j in loaded], expected_left)
        self.assertEqual([j.priority for j in loaded], [-1, -1, 1, 3, 3])
        self.assertTrue(all(j.state is JobState.PENDING for j in loaded))

        sender = FakeSms()
        rdq2 = ResizableDispatchQueue(sender, 1, clock=self.clock)
        ds = [rdq2.requeue(job) for job in loaded]
        self.assertEqual(rdq2.size(), (1, 4))
        for _ in range(5):
            sender.deliver(sender.calls[-1])
        self.assertEqual(sender.calls, expected_left)
        done = [self.successResultOf(d) for d in ds]
        self.assertEqual([j.arg for j in done], expected_left)
        self.assertEqual([j.priority for j in done], [-1, -1, 1, 3, 3])
        self.assertEqual(
            [j.result for j in done], [f"sent:{a[0]}" for a in expected_left]
        )

    def test_failing_job_errbacks_job_failed(self) -> None:
        """
        When sendSMS fails, the put() Deferred errbacks with fetchq.JobFailed,
        a real Exception, whose .job.failure holds the original exception.
        """
        d = self.rdq.put(sms(1), priority=5)
        error = SmsError("number unreachable")
        self.clock.advance(2)
        self.sendSMS.reject(sms(1), error)
        failure = self.failureResultOf(d, fetchq.JobFailed)
        self.assertIsInstance(failure.value, Exception)
        job = failure.value.job
        self.assertEqual(job.arg, sms(1))
        self.assertIs(job.state, JobState.FAILED)
        self.assertIsNone(job.result)
        self.assertIsInstance(job.failure, Failure)
        self.assertIs(job.failure.value, error)
        self.assertEqual(job.stopped_at, START + 2)
        self.assertEqual(self.rdq.size(), (0, 0))

    def test_job_failed_caught_in_inline_callbacks(self) -> None:
        """
        Inside an @inlineCallbacks generator, ``try: yield d except JobFailed
        as e`` catches a job that failed later on the clock, and e.job holds
        the original failure; a job that succeeds returns normally.
        """

        def send_later(number_msg: Sms) -> Deferred[str]:
            d: Deferred[str] = Deferred()
            if number_msg[0] % 2:
                self.clock.callLater(5, d.errback, SmsError(f"bad {number_msg[0]}"))
            else:
                self.clock.callLater(5, d.callback, "ok")
            return d

        rdq = ResizableDispatchQueue(send_later, 5, clock=self.clock)
        outcomes: list[tuple[str, Any]] = []

        @defer.inlineCallbacks
        def send_both() -> Any:
            try:
                yield rdq.put((5550001, "odd"), priority=5)
            except fetchq.JobFailed as e:
                assert e.job.failure is not None
                outcomes.append(("failed", e.job.failure.value.args[0]))
            job = yield rdq.put((5550002, "even"), priority=5)
            outcomes.append(("ok", job.result))
            return len(outcomes)

        done = send_both()
        self.assertNoResult(done)
        self.clock.advance(5)
        self.assertEqual(outcomes, [("failed", "bad 5550001")])
        self.assertNoResult(done)
        self.clock.advance(5)
        self.assertEqual(self.successResultOf(done), 2)
        self.assertEqual(outcomes, [("failed", "bad 5550001"), ("ok", "ok")])

    def test_full_walk_through(self) -> None:
        """
        The whole seed example in one run, in its order: put, cancel, widen,
        narrow, pending, cancel and reprioritize from the list, a delayed
        setWidth, pause, resume(8), stop with saveJobs, and a restart that
        requeues the saved jobs; every count and launch order is checked.
        """
        rdq, send, clock = self.rdq, self.sendSMS, self.clock
        d1 = rdq.put((2127399921, "Hello..."), priority=5)
        results: list[Any] = []
        d1.addCallback(lambda job: results.append(("d1", job.result)))
        d2 = rdq.put((5052929919, "Test..."), priority=5)
        d2.addCallback(lambda job: results.append(("d2", job.result)))
        d2.addErrback(lambda f: results.append(("d2", f.type)))

        d2.cancel()
        self.assertEqual(results, [("d2", fetchq.JobCancelled)])
        self.assertEqual(send.cancelled, [(5052929919, "Test...")])
        self.assertEqual(rdq.size(), (1, 0))

        others = [rdq.put(sms(n), priority=5) for n in range(30)]
        self.assertEqual(rdq.size(), (5, 26))

        rdq.width = 10
        self.assertEqual(rdq.size(), (10, 21))
        rdq.width = 7
        self.assertEqual(rdq.size(), (10, 21))
        send.deliver((2127399921, "Hello..."))
        self.assertEqual(results[-1], ("d1", "sent:2127399921"))
        for n in range(3):
            send.deliver(sms(n))
        self.assertEqual(rdq.size(), (7, 20))  # one launched at the 4th finish
        self.assertEqual(send.calls[-1], sms(9))

        jobs = rdq.pending()
        self.assertEqual([j.arg for j in jobs], [sms(n) for n in range(10, 30)])
        job = jobs[0]
        job.cancel()
        self.failureResultOf(others[10], fetchq.JobCancelled)
        self.assertEqual(rdq.size(), (7, 19))
        job = jobs[-1]
        rdq.reprioritize(job, -1)
        self.assertEqual(rdq.pending()[0].arg, sms(29))
        send.deliver(sms(3))
        self.assertEqual(send.calls[-1], sms(29))
        self.assertEqual(rdq.size(), (7, 18))

        clock.callLater(3600, rdq.setWidth, 20)
        clock.advance(3600)
        self.assertEqual(rdq.size(), (20, 5))
        self.assertEqual(send.calls[-13:], [sms(n) for n in range(11, 24)])

        paused = rdq.pause()
        for arg in list(send.running)[:-1]:
            send.deliver(arg)
        self.assertNoResult(paused)
        self.assertEqual(rdq.size(), (1, 5))
        send.deliver(next(iter(send.running)))
        self.assertIsNone(self.successResultOf(paused))
        self.assertEqual(rdq.size(), (0, 5))

        rdq.resume(8)
        self.assertEqual(rdq.size(), (5, 0))
        self.assertEqual(send.calls[-5:], [sms(n) for n in range(24, 29)])
        for n, priority in ((40, 9), (41, 1), (42, 1), (43, 9), (44, 0)):
            rdq.put(sms(n), priority=priority)
        self.assertEqual(rdq.size(), (8, 2))
        self.assertEqual(send.calls[-3:], [sms(40), sms(41), sms(42)])

        saved: list[bytes] = []

        def saveJobs(jobs: list[Job]) -> None:
            saved.append(pickle.dumps(jobs))

        d = rdq.stop()
        d.addCallback(saveJobs)
        self.assertRaises(QueueStopped, rdq.put, sms(50))
        for arg in list(send.running):
            self.assertNoResult(d)
            send.deliver(arg)
        self.assertIsNone(self.successResultOf(d))
        [blob] = saved
        loaded = pickle.loads(blob)
        self.assertEqual(
            [(j.arg, j.priority) for j in loaded], [(sms(44), 0), (sms(43), 9)]
        )
        self.assertEqual(rdq.size(), (0, 2))  # the two left behind, never run
        self.assertEqual(len(send.calls), 2 + 30 - 1 + 3)

        rdq2 = ResizableDispatchQueue(send, 1, clock=clock)
        redone = [rdq2.requeue(job) for job in loaded]
        self.assertEqual(send.calls[-1], sms(44))
        send.deliver(sms(44))
        self.assertEqual(send.calls[-1], sms(43))
        send.deliver(sms(43))
        jobs = [self.successResultOf(d) for d in redone]
        self.assertEqual(
            [(j.arg, j.priority) for j in jobs], [(sms(44), 0), (sms(43), 9)]
        )


class ImportTests(SynchronousTestCase):
    """What the seed imports is importable from fetchq."""

    def test_public_names(self) -> None:
        """
        ResizableDispatchQueue, Job, QueueStopped, DeferredPriorityQueue and
        DeferredPool come straight from fetchq and are the real classes.
        """
        from fetchq.dpq import DeferredPriorityQueue as Dpq
        from fetchq.job import Job as JobClass
        from fetchq.pool import DeferredPool as Pool
        from fetchq.queue import ResizableDispatchQueue as Rdq

        self.assertIs(ResizableDispatchQueue, Rdq)
        self.assertIs(Job, JobClass)
        self.assertIs(DeferredPriorityQueue, Dpq)
        self.assertIs(DeferredPool, Pool)
        self.assertTrue(issubclass(QueueStopped, Exception))
        for name in (
            "ResizableDispatchQueue",
            "Job",
            "QueueStopped",
            "DeferredPriorityQueue",
            "DeferredPool",
            "JobFailed",
            "JobCancelled",
        ):
            self.assertIn(name, fetchq.__all__)

    def test_set_width_is_the_width_setter(self) -> None:
        """rdq.setWidth(n) and rdq.width = n do the same thing."""
        rdq = ResizableDispatchQueue(FakeSms(), 5, clock=Clock())
        rdq.setWidth(3)
        self.assertEqual(rdq.width, 3)
        rdq.width = 4
        self.assertEqual(rdq.width, 4)
