"""Tests for :class:`fetchq.retry.RetryPolicy` and retries in the queue."""

from __future__ import annotations

import math
import random
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from fetchq import (
    JobCancelled,
    JobFailed,
    JobState,
    ResizableDispatchQueue,
    RetryAfter,
    RetryPolicy,
    Throttled,
)
from fetchq.retry import DEFAULT_RETRY
from tests._clock import advance_to


class FlakyError(Exception):
    """A retryable failure in these tests."""


class FatalError(Exception):
    """A non-retryable failure in these tests."""


class SubFlakyError(FlakyError):
    """A subclass of a retryable type."""


class Worker:
    """A fake job function: records ``(arg, clock time)`` per call and returns
    a Deferred the test fires (by arg) with :meth:`finish` or :meth:`fail`.
    ``script`` may give, per arg, a list of exceptions to raise synchronously
    on successive calls (None = return a Deferred as usual)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.launches: list[tuple[Any, float]] = []
        self.running: dict[Any, Deferred[Any]] = {}
        self.script: dict[Any, list[BaseException | None]] = {}

    def __call__(self, arg: Any) -> Any:
        self.launches.append((arg, self.clock.seconds()))
        plan = self.script.get(arg)
        if plan:
            exc = plan.pop(0)
            if exc is not None:
                raise exc
        d: Deferred[Any] = Deferred()
        self.running[arg] = d
        return d

    def finish(self, arg: Any, value: Any = None) -> None:
        """Make the running attempt of ``arg`` succeed."""
        self.running.pop(arg).callback(value)

    def fail(self, arg: Any, exc: BaseException) -> None:
        """Make the running attempt of ``arg`` fail with ``exc``."""
        self.running.pop(arg).errback(exc)

    def times_of(self, arg: Any) -> list[float]:
        """Launch times of ``arg``."""
        return [t for a, t in self.launches if a == arg]

    @property
    def args(self) -> list[Any]:
        """Launched args in launch order."""
        return [a for a, _ in self.launches]


# ---------------------------------------------------------------------------
# RetryPolicy on its own


class RetryPolicyTests(SynchronousTestCase):
    """Validation, backoff and retryability of RetryPolicy."""

    def test_defaults(self) -> None:
        """The default policy: 5 attempts, 1 s base, 300 s cap, and only
        RetryAfter retries."""
        self.assertEqual(DEFAULT_RETRY, RetryPolicy())
        self.assertEqual(
            (DEFAULT_RETRY.max_attempts, DEFAULT_RETRY.base_delay),
            (5, 1.0),
        )
        self.assertEqual(DEFAULT_RETRY.max_delay, 300.0)
        self.assertFalse(DEFAULT_RETRY.is_retryable(Failure(FlakyError())))
        self.assertTrue(DEFAULT_RETRY.is_retryable(Failure(RetryAfter(1))))
        self.assertTrue(DEFAULT_RETRY.is_retryable(Failure(Throttled(1))))

    def test_bad_max_attempts(self) -> None:
        """max_attempts must be an integer >= 1."""
        for bad in (0, -1, 1.5, True, "3", None):
            self.assertRaises(ValueError, RetryPolicy, max_attempts=bad)
        self.assertEqual(RetryPolicy(max_attempts=1).max_attempts, 1)

    def test_bad_delays(self) -> None:
        """base_delay and max_delay must be numbers >= 0 (0 is allowed)."""
        for bad in (-1, -0.001, True, "1", None):
            self.assertRaises(ValueError, RetryPolicy, base_delay=bad)
            self.assertRaises(ValueError, RetryPolicy, max_delay=bad)
        self.assertEqual(RetryPolicy(base_delay=0, max_delay=0).base_delay, 0)

    def test_nan_delays_rejected(self) -> None:
        """
        NaN is not a number >= 0 and must be refused, like NaN rates: with
        max_delay=NaN the backoff is NaN, and a job scheduled to retry at NaN
        would never be retried.
        """
        self.assertRaises(ValueError, RetryPolicy, base_delay=math.nan)
        self.assertRaises(ValueError, RetryPolicy, max_delay=math.nan)

    def test_backoff_full_jitter_bounds(self) -> None:
        """backoff(n) is a uniform draw in [0, min(max_delay, base * 2**(n-1))]
        from the given rng: it reproduces ``rng.uniform(0, cap)`` exactly, stays
        within bounds, and reaches near the cap over many draws."""
        policy = RetryPolicy(base_delay=0.5, max_delay=10.0)
        rng = random.Random(1234)
        twin = random.Random(1234)
        for attempt in range(1, 12):
            cap = min(10.0, 0.5 * 2 ** (attempt - 1))
            draws = [policy.backoff(attempt, rng) for _ in range(300)]
            self.assertEqual(draws, [twin.uniform(0.0, cap) for _ in range(300)])
            self.assertGreaterEqual(min(draws), 0.0)
            self.assertLessEqual(max(draws), cap)
            self.assertGreater(max(draws), 0.9 * cap)
            self.assertLess(min(draws), 0.1 * cap)

    def test_backoff_huge_attempt_is_capped(self) -> None:
        """A huge attempt number neither overflows nor exceeds max_delay."""
        policy = RetryPolicy(max_attempts=10_000, base_delay=1.0, max_delay=60.0)
        rng = random.Random(7)
        for attempt in (64, 100, 5000):
            self.assertLessEqual(policy.backoff(attempt, rng), 60.0)

    def test_backoff_zero_base(self) -> None:
        """base_delay 0 means retry at once."""
        policy = RetryPolicy(base_delay=0.0)
        self.assertEqual(policy.backoff(3, random.Random(1)), 0.0)

    def test_retry_on_types(self) -> None:
        """retry_on makes the listed types (and subclasses) retryable, and
        nothing else (besides RetryAfter)."""
        policy = RetryPolicy(retry_on=(FlakyError, KeyError))
        self.assertTrue(policy.is_retryable(Failure(FlakyError())))
        self.assertTrue(policy.is_retryable(Failure(SubFlakyError())))
        self.assertTrue(policy.is_retryable(Failure(KeyError("k"))))
        self.assertFalse(policy.is_retryable(Failure(FatalError())))
        self.assertTrue(policy.is_retryable(Failure(RetryAfter(2))))

    def test_retry_if_predicate(self) -> None:
        """retry_if is called with the Failure and decides."""
        seen: list[Failure] = []

        def transient(failure: Failure) -> bool:
            seen.append(failure)
            return "transient" in str(failure.value)

        policy = RetryPolicy(retry_if=transient)
        ok = Failure(FatalError("transient glitch"))
        no = Failure(FatalError("permanent"))
        self.assertTrue(policy.is_retryable(ok))
        self.assertFalse(policy.is_retryable(no))
        self.assertEqual(seen, [ok, no])

    def test_delay_for(self) -> None:
        """delay_for(): None once attempts reach max_attempts or for a
        non-retryable failure; RetryAfter's own delay; else the backoff."""
        policy = RetryPolicy(max_attempts=3, base_delay=2.0, retry_on=(FlakyError,))
        flaky = Failure(FlakyError())
        rng = random.Random(5)
        twin = random.Random(5)
        self.assertEqual(policy.delay_for(flaky, 1, rng), twin.uniform(0, 2.0))
        self.assertEqual(policy.delay_for(flaky, 2, rng), twin.uniform(0, 4.0))
        self.assertIsNone(policy.delay_for(flaky, 3, rng))
        self.assertIsNone(policy.delay_for(Failure(FatalError()), 1, rng))
        self.assertEqual(policy.delay_for(Failure(RetryAfter(7)), 1, rng), 7.0)
        self.assertEqual(policy.delay_for(Failure(Throttled(500)), 2, rng), 500.0)
        self.assertIsNone(policy.delay_for(Failure(RetryAfter(7)), 3, rng))

    def test_retry_after_validation(self) -> None:
        """RetryAfter refuses negative and NaN delays."""
        self.assertRaises(ValueError, RetryAfter, -1)
        self.assertRaises(ValueError, RetryAfter, math.nan)
        self.assertRaises(ValueError, Throttled, -0.5)
        self.assertEqual(RetryAfter(3, "busy").delay, 3.0)
        self.assertEqual(str(Throttled(2.5, "429")), "retry after 2.5s: 429")


# ---------------------------------------------------------------------------
# Retries in the queue


class QueueRetryTests(SynchronousTestCase):
    """Retries driven by the queue."""

    SEED = 99

    def make(
        self, width: int = 10, **kw: Any
    ) -> tuple[ResizableDispatchQueue, Worker, Clock]:
        clock = Clock()
        worker = Worker(clock)
        q = ResizableDispatchQueue(
            worker, width, clock=clock, rng=random.Random(self.SEED), **kw
        )
        return q, worker, clock

    def test_retry_after_backoff_then_success(self) -> None:
        """
        A job failing retryably at t=1 and t=(1+d1)+1 is relaunched after each
        backoff (d1 = uniform(0, 2), d2 = uniform(0, 4) from the seeded rng),
        shows as retrying with not_before while it waits, and its put()
        Deferred fires only once the third attempt succeeds.
        """
        policy = RetryPolicy(max_attempts=3, base_delay=2.0, retry_on=(FlakyError,))
        q, worker, clock = self.make(retry=policy)
        twin = random.Random(self.SEED)
        d1 = twin.uniform(0, 2.0)
        d2 = twin.uniform(0, 4.0)
        d = q.put("job")
        job = d.job  # type: ignore[attr-defined]
        self.assertEqual(job.attempts, 1)
        clock.advance(1)
        worker.fail("job", FlakyError("first"))
        self.assertNoResult(d)
        self.assertIs(job.state, JobState.RETRYING)
        self.assertEqual(job.not_before, 1 + d1)
        self.assertEqual(q.pending(), [job])
        self.assertEqual(q.underway(), [])
        self.assertEqual(q.size(), (0, 1))
        self.assertEqual(len(q), 1)
        clock.advance(d1 * 0.999)
        self.assertEqual(worker.times_of("job"), [0.0])
        advance_to(clock, 1 + d1)
        self.assertEqual(worker.times_of("job"), [0.0, 1 + d1])
        self.assertEqual(job.attempts, 2)
        self.assertIs(job.state, JobState.UNDERWAY)
        self.assertIsNone(job.not_before)
        self.assertEqual(q.size(), (1, 0))
        second_fail = clock.seconds() + 1
        advance_to(clock, second_fail)
        worker.fail("job", FlakyError("second"))
        self.assertEqual(job.not_before, second_fail + d2)
        advance_to(clock, second_fail + d2)
        self.assertEqual(len(worker.times_of("job")), 3)
        self.assertAlmostEqual(worker.times_of("job")[2], second_fail + d2, places=9)
        self.assertNoResult(d)
        worker.finish("job", "done")
        self.assertIs(self.successResultOf(d), job)
        self.assertEqual(job.result, "done")
        self.assertEqual(job.attempts, 3)
        self.assertIs(job.state, JobState.SUCCEEDED)
        self.assertEqual(q.size(), (0, 0))

    def test_gives_up_after_max_attempts(self) -> None:
        """After max_attempts retryable failures the put() Deferred errbacks
        JobFailed; job.attempts == max_attempts and job.failure is the last
        error."""
        policy = RetryPolicy(max_attempts=3, base_delay=1.0, retry_on=(FlakyError,))
        q, worker, clock = self.make(retry=policy)
        d = q.put("job")
        errors = [FlakyError(n) for n in range(3)]
        for n, exc in enumerate(errors):
            self.assertEqual(len(worker.times_of("job")), n + 1)
            self.assertNoResult(d)
            worker.fail("job", exc)
            advance_to(clock, clock.seconds() + 1.0)
        failure = self.failureResultOf(d, JobFailed)
        job = failure.value.job
        self.assertEqual(job.attempts, 3)
        self.assertIs(job.failure.value, errors[2])
        self.assertIs(job.state, JobState.FAILED)
        self.assertEqual(len(worker.times_of("job")), 3)
        self.assertEqual(q.size(), (0, 0))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_non_retryable_fails_at_once(self) -> None:
        """A failure not covered by the policy fails the job on its first
        attempt, with no retry scheduled."""
        policy = RetryPolicy(max_attempts=5, retry_on=(FlakyError,))
        q, worker, clock = self.make(retry=policy)
        d = q.put("job")
        exc = FatalError("nope")
        worker.fail("job", exc)
        failure = self.failureResultOf(d, JobFailed)
        self.assertEqual(failure.value.job.attempts, 1)
        self.assertIs(failure.value.job.failure.value, exc)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(q.size(), (0, 0))

    def test_default_policy_plain_failure_fails_at_once(self) -> None:
        """With the default policy a plain exception (even raised synchronously)
        fails at once."""
        q, worker, clock = self.make()
        worker.script["job"] = [FlakyError("x")]
        d = q.put("job")
        failure = self.failureResultOf(d, JobFailed)
        self.assertEqual(failure.value.job.attempts, 1)
        self.assertEqual(worker.times_of("job"), [0.0])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_retry_if_in_queue(self) -> None:
        """A retry_if predicate decides retries inside the queue too."""
        policy = RetryPolicy(
            max_attempts=4,
            base_delay=0.0,
            retry_if=lambda f: "again" in str(f.value),
        )
        q, worker, clock = self.make(retry=policy)
        d = q.put("job")
        worker.fail("job", FatalError("again"))
        clock.advance(0)
        worker.fail("job", FatalError("stop"))
        failure = self.failureResultOf(d, JobFailed)
        self.assertEqual(failure.value.job.attempts, 2)

    def test_retry_after_exact_delay_default_policy(self) -> None:
        """``raise RetryAfter(7)`` retries after exactly 7 s with the default
        policy, both when raised synchronously and when the Deferred fails."""
        q, worker, clock = self.make()
        worker.script["sync"] = [RetryAfter(7)]
        d_sync = q.put("sync")
        clock.advance(2)
        d_async = q.put("async")
        worker.fail("async", RetryAfter(7))
        self.assertEqual(q.size(), (0, 2))
        advance_to(clock, 6.5)
        self.assertEqual(worker.args, ["sync", "async"])
        advance_to(clock, 7.0)
        self.assertEqual(worker.times_of("sync"), [0.0, 7.0])
        advance_to(clock, 9.0)
        self.assertEqual(worker.times_of("async"), [2.0, 9.0])
        worker.finish("sync", 1)
        worker.finish("async", 2)
        self.assertEqual(self.successResultOf(d_sync).attempts, 2)
        self.assertEqual(self.successResultOf(d_async).attempts, 2)

    def test_retry_after_beyond_max_delay(self) -> None:
        """RetryAfter's delay is used as given, even above the policy's
        max_delay."""
        q, worker, clock = self.make(retry=RetryPolicy(max_delay=1.0))
        q.put("job")
        worker.fail("job", RetryAfter(30))
        advance_to(clock, 29.0)
        self.assertEqual(worker.times_of("job"), [0.0])
        advance_to(clock, 30.0)
        self.assertEqual(worker.times_of("job"), [0.0, 30.0])

    def test_retry_after_respects_max_attempts(self) -> None:
        """RetryAfter retries only within max_attempts."""
        q, worker, clock = self.make(retry=RetryPolicy(max_attempts=2))
        d = q.put("job")
        worker.fail("job", RetryAfter(1))
        advance_to(clock, 1.0)
        worker.fail("job", RetryAfter(1))
        failure = self.failureResultOf(d, JobFailed)
        self.assertEqual(failure.value.job.attempts, 2)
        self.assertIsInstance(failure.value.job.failure.value, RetryAfter)

    def test_throttled_holds_lane(self) -> None:
        """``Throttled(5)`` from a keyed job retries it after 5 s and holds its
        lane for 5 s: another job of the same key waits, other keys and
        unkeyed jobs do not."""
        q, worker, clock = self.make()
        q.put("a0", key="a")
        advance_to(clock, 1.0)
        worker.fail("a0", Throttled(5))
        self.assertEqual(
            [(i.key, i.held_until) for i in q.lanes()],
            [("a", 6.0)],
        )
        q.put("a1", key="a")
        q.put("b1", key="b")
        q.put("n1")
        self.assertEqual(worker.args, ["a0", "b1", "n1"])
        advance_to(clock, 5.5)
        self.assertEqual(worker.args, ["a0", "b1", "n1"])
        advance_to(clock, 6.0)
        # a1 was pending first; the retried a0 joins the back of its class.
        self.assertEqual(
            worker.launches,
            [("a0", 0.0), ("b1", 1.0), ("n1", 1.0), ("a1", 6.0), ("a0", 6.0)],
        )

    def test_throttled_unkeyed_holds_queue(self) -> None:
        """``Throttled(5)`` from a job without a key holds the whole queue for
        5 s: keyed and unkeyed jobs alike wait."""
        q, worker, clock = self.make()
        q.put("n0")
        advance_to(clock, 1.0)
        worker.fail("n0", Throttled(5))
        q.put("a1", key="a")
        q.put("n1")
        advance_to(clock, 5.5)
        self.assertEqual(worker.args, ["n0"])
        self.assertEqual(q.size(), (0, 3))
        advance_to(clock, 6.0)
        self.assertEqual(
            worker.launches,
            [("n0", 0.0), ("a1", 6.0), ("n1", 6.0), ("n0", 6.0)],
        )

    def test_throttled_on_last_attempt_still_holds_lane(self) -> None:
        """
        The remote side's "slow down" applies to the lane even when the job
        that heard it has no attempts left: with max_attempts=1, a keyed job
        failing with Throttled(5) fails, and the lane is still held for 5 s
        (Throttled's docstring: the job's lane is held so no other job of that
        lane launches meanwhile).
        """
        q, worker, clock = self.make(retry=RetryPolicy(max_attempts=1))
        q.set_lane_width("a", 1)
        d = q.put("a0", key="a")
        q.put("a1", key="a", priority=1)
        worker.fail("a0", Throttled(5))
        self.failureResultOf(d, JobFailed)
        self.assertEqual(worker.args, ["a0"])
        advance_to(clock, 5.0)
        self.assertEqual(worker.launches, [("a0", 0.0), ("a1", 5.0)])

    def test_cancel_retrying_job(self) -> None:
        """Cancelling a job while it waits to retry errbacks JobCancelled at
        once and it is never relaunched; counts drop to zero."""
        q, worker, clock = self.make()
        d = q.put("job", key="k")
        worker.fail("job", RetryAfter(3))
        job = d.job  # type: ignore[attr-defined]
        self.assertIs(job.state, JobState.RETRYING)
        advance_to(clock, 1.0)
        d.cancel()
        failure = self.failureResultOf(d, JobCancelled)
        self.assertIs(failure.value.job, job)
        self.assertIs(job.state, JobState.CANCELLED)
        self.assertEqual(q.size(), (0, 0))
        self.assertEqual(q.pending(), [])
        advance_to(clock, 10.0)
        self.assertEqual(worker.args, ["job"])
        self.assertEqual(q.lanes(), [])

    def test_job_cancel_of_retrying_job(self) -> None:
        """job.cancel() on a retrying job does the same as cancelling its
        Deferred, and later jobs run normally."""
        q, worker, clock = self.make(width=1)
        d = q.put("job")
        worker.fail("job", RetryAfter(3))
        d.job.cancel()  # type: ignore[attr-defined]
        self.failureResultOf(d, JobCancelled)
        q.put("next")
        self.assertEqual(worker.args, ["job", "next"])
        advance_to(clock, 5.0)
        self.assertEqual(worker.args, ["job", "next"])

    def test_reprioritize_retrying_job(self) -> None:
        """
        Width 1.  j1 (prio 0) fails with RetryAfter(5); j2 (prio 1) runs; j3
        (prio 2) waits.  Reprioritising the retrying j1 to 3 keeps it listed
        as retrying, and once it is due again it goes after j3.
        """
        q, worker, clock = self.make(width=1)
        worker.script["j1"] = [RetryAfter(5)]
        d1 = q.put("j1", priority=0)
        j1 = d1.job  # type: ignore[attr-defined]
        q.put("j2", priority=1)
        q.put("j3", priority=2)
        self.assertEqual(worker.args, ["j1", "j2"])
        q.reprioritize(j1, 3)
        self.assertEqual(j1.priority, 3)
        self.assertIs(j1.state, JobState.RETRYING)
        self.assertEqual([j.arg for j in q.pending()], ["j3", "j1"])
        self.assertEqual(q.size(), (1, 2))
        advance_to(clock, 5.0)
        self.assertEqual([j.arg for j in q.pending()], ["j3", "j1"])
        self.assertIs(j1.state, JobState.PENDING)
        worker.finish("j2")
        self.assertEqual(worker.args, ["j1", "j2", "j3"])
        worker.finish("j3")
        self.assertEqual(worker.args, ["j1", "j2", "j3", "j1"])
        self.assertEqual(worker.times_of("j1"), [0.0, 5.0])

    def test_reprioritize_retrying_job_better(self) -> None:
        """A retrying job reprioritised to the best priority goes first once
        due, ahead of jobs that were pending before it."""
        q, worker, clock = self.make(width=1)
        worker.script["j1"] = [RetryAfter(2)]
        d1 = q.put("j1", priority=5)
        q.put("busy", priority=0)
        q.put("j3", priority=1)
        q.reprioritize(d1.job, -1)  # type: ignore[attr-defined]
        advance_to(clock, 2.0)
        worker.finish("busy")
        self.assertEqual(worker.args, ["j1", "busy", "j1"])

    def test_pending_lists_retrying_after_launchable(self) -> None:
        """pending() lists launchable jobs first, then retrying jobs by retry
        time, each retrying job with state retrying and its not_before."""
        q, worker, _ = self.make(width=2)
        worker.script["late"] = [RetryAfter(9)]
        worker.script["soon"] = [RetryAfter(4)]
        q.put("late", priority=-5)
        q.put("soon", priority=-5)
        q.setWidth(0)
        q.put("p", priority=50)
        pending = q.pending()
        self.assertEqual([j.arg for j in pending], ["p", "soon", "late"])
        self.assertEqual(
            [(j.state, j.not_before) for j in pending],
            [
                (JobState.PENDING, None),
                (JobState.RETRYING, 4.0),
                (JobState.RETRYING, 9.0),
            ],
        )
        self.assertEqual(q.size(), (0, 3))

    def test_stop_returns_retrying_jobs(self) -> None:
        """stop() returns pending and retrying jobs (retrying last, with their
        state); nothing relaunches after and no timer is left."""
        q, worker, clock = self.make(width=1)
        worker.script["r"] = [RetryAfter(5)]
        q.put("r")
        q.put("busy")
        q.put("p")
        stopped = q.stop()
        self.assertNoResult(stopped)
        worker.finish("busy")
        jobs = self.successResultOf(stopped)
        self.assertEqual([j.arg for j in jobs], ["p", "r"])
        self.assertEqual([j.state for j in jobs], [JobState.PENDING, JobState.RETRYING])
        self.assertEqual(jobs[1].attempts, 1)
        advance_to(clock, 20.0)
        self.assertEqual(worker.args, ["r", "busy"])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_stop_while_underway_job_then_retries(self) -> None:
        """A job underway at stop() that then fails retryably is returned by
        stop() as retrying, not relaunched."""
        q, worker, clock = self.make()
        q.put("job")
        stopped = q.stop()
        worker.fail("job", RetryAfter(1))
        jobs = self.successResultOf(stopped)
        self.assertEqual([(j.arg, j.state) for j in jobs], [("job", JobState.RETRYING)])
        advance_to(clock, 5.0)
        self.assertEqual(worker.args, ["job"])

    def test_requeue_keeps_attempts(self) -> None:
        """A retrying job from stop(), requeued into a new queue, counts its
        earlier attempts against max_attempts."""
        q, worker, _ = self.make()
        q.put("job")
        worker.fail("job", RetryAfter(1))
        (job,) = self.successResultOf(q.stop())
        q2, worker2, _ = self.make(retry=RetryPolicy(max_attempts=2))
        d = q2.requeue(job)
        worker2.fail("job", RetryAfter(1))
        failure = self.failureResultOf(d, JobFailed)
        self.assertEqual(failure.value.job.attempts, 2)

    def test_many_retrying_jobs_release_in_time_order(self) -> None:
        """Jobs retrying with different delays relaunch at exactly their own
        times, with one timer at a time."""
        q, worker, clock = self.make()
        for n, delay in enumerate([3, 1, 2, 5, 4]):
            worker.script[n] = [RetryAfter(delay)]
            q.put(n)
        self.assertLessEqual(len(clock.getDelayedCalls()), 1)
        advance_to(clock, 10.0)
        relaunches = [(a, t) for a, t in worker.launches if t > 0]
        self.assertEqual(relaunches, [(1, 1.0), (2, 2.0), (0, 3.0), (4, 4.0), (3, 5.0)])
