"""Tests for :class:`fetchq.ratelimit.TokenBucket` and the queue's global rate."""

from __future__ import annotations

import math
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fetchq import QueueStopped, RateChanged, ResizableDispatchQueue
from fetchq.ratelimit import TokenBucket, check_rate
from tests._clock import GuardedClock, advance_to

BAD_RATES: list[Any] = [0, 0.0, -1, -0.5, math.inf, -math.inf, math.nan, "2", True]
BAD_BURSTS: list[Any] = [0, -1, 1.5, "2", True, None]


class Worker:
    """A fake job function.

    Every call records ``(arg, clock time)``.  With ``duration`` None the job
    succeeds at once (returns a plain value); otherwise it returns a Deferred
    that fires ``duration`` seconds later through ``clock.callLater``.
    """

    def __init__(self, clock: Clock, duration: float | None = None) -> None:
        self.clock = clock
        self.duration = duration
        self.launches: list[tuple[Any, float]] = []

    def __call__(self, arg: Any) -> Any:
        self.launches.append((arg, self.clock.seconds()))
        if self.duration is None:
            return arg
        d: Deferred[Any] = Deferred()
        self.clock.callLater(self.duration, d.callback, arg)
        return d

    @property
    def times(self) -> list[float]:
        """Launch times, in launch order."""
        return [t for _, t in self.launches]

    @property
    def args(self) -> list[Any]:
        """Launched args, in launch order."""
        return [a for a, _ in self.launches]


# ---------------------------------------------------------------------------
# TokenBucket


class TokenBucketTests(SynchronousTestCase):
    """The token bucket on its own."""

    def test_starts_full(self) -> None:
        """A new bucket holds ``burst`` tokens: exactly that many takes are
        ready at its start time, and then it is empty."""
        bucket = TokenBucket(2, 3, 10.0)
        for _ in range(3):
            self.assertTrue(bucket.ready(10.0))
            bucket.take()
        self.assertFalse(bucket.ready(10.0))
        self.assertEqual(bucket.rate, 2.0)
        self.assertEqual(bucket.burst, 3)

    def test_wait(self) -> None:
        """wait() is 0 while a token is there, else the exact time to the next
        token: (1 - tokens) / rate."""
        bucket = TokenBucket(4, 1, 0.0)
        self.assertEqual(bucket.wait(0.0), 0.0)
        bucket.take()
        self.assertEqual(bucket.wait(0.0), 0.25)
        self.assertEqual(bucket.wait(0.125), 0.125)
        self.assertFalse(bucket.ready(0.125))
        self.assertTrue(bucket.ready(0.25))
        self.assertEqual(bucket.wait(0.25), 0.0)

    def test_refill_is_capped_at_burst(self) -> None:
        """After a long quiet spell the bucket holds ``burst`` tokens, no more."""
        bucket = TokenBucket(10, 2, 0.0)
        bucket.take()
        bucket.take()
        self.assertTrue(bucket.ready(1000.0))
        bucket.take()
        bucket.take()
        self.assertFalse(bucket.ready(1000.0))
        self.assertEqual(bucket.wait(1000.0), 0.1)

    def test_ready_does_not_take(self) -> None:
        """ready() only looks: calling it many times leaves the token there."""
        bucket = TokenBucket(1, 1, 0.0)
        for _ in range(5):
            self.assertTrue(bucket.ready(0.0))
        bucket.take()
        self.assertFalse(bucket.ready(0.0))

    def test_full_in(self) -> None:
        """full_in() is the time until ``burst`` tokens are back: 0 when full,
        (burst - tokens) / rate otherwise."""
        bucket = TokenBucket(2, 3, 0.0)
        self.assertEqual(bucket.full_in(0.0), 0.0)
        bucket.take()
        self.assertEqual(bucket.full_in(0.0), 0.5)
        bucket.take()
        bucket.take()
        self.assertEqual(bucket.full_in(0.0), 1.5)
        self.assertEqual(bucket.full_in(1.0), 0.5)
        self.assertEqual(bucket.full_in(1.5), 0.0)
        self.assertEqual(bucket.full_in(99.0), 0.0)

    def test_timer_at_refill_moment_finds_token(self) -> None:
        """
        Float tolerance: at ``now + wait(now)`` a token is always ready, even
        where float rounding leaves 0.9999999999999998 tokens (rate 3 from
        t=0.1 hits such moments), so a timer set for that moment never spins.
        """
        bucket = TokenBucket(3, 1, 0.1)
        now = 0.1
        short = 0
        for _ in range(60):
            self.assertTrue(bucket.ready(now))
            bucket.take()
            wait = bucket.wait(now)
            self.assertGreater(wait, 0.0)
            later = now + wait
            raw = bucket.tokens + (later - bucket.stamp) * bucket.rate
            if raw < 1.0:
                short += 1
            now = later
        # The scenario really exercises the rounding case.
        self.assertGreater(short, 0)

    def test_configure_keeps_earned_tokens(self) -> None:
        """configure() keeps the tokens earned at the old rate and uses the new
        rate from then on: rate 1, empty at 0, switched to 4/s at 0.25 (0.25
        tokens earned) has its next token at 0.25 + 0.75 / 4 = 0.4375."""
        bucket = TokenBucket(1, 1, 0.0)
        bucket.take()
        bucket.configure(4, 1, 0.25)
        self.assertEqual(bucket.rate, 4.0)
        self.assertEqual(bucket.wait(0.25), 0.1875)
        self.assertFalse(bucket.ready(0.4))
        self.assertTrue(bucket.ready(0.4375))

    def test_configure_caps_tokens_at_new_burst(self) -> None:
        """Lowering the burst drops tokens above it; raising it adds none."""
        bucket = TokenBucket(1, 5, 0.0)
        bucket.configure(1, 2, 0.0)
        bucket.take()
        bucket.take()
        self.assertFalse(bucket.ready(0.0))
        bucket.configure(1, 10, 0.0)
        self.assertFalse(bucket.ready(0.0))
        self.assertEqual(bucket.full_in(0.0), 10.0)
        self.assertEqual(bucket.burst, 10)

    def test_bad_arguments(self) -> None:
        """Bad rates and bursts raise ValueError in the constructor, in
        configure() (leaving the bucket as it was) and in check_rate()."""
        for rate in BAD_RATES:
            self.assertRaises(ValueError, TokenBucket, rate, 1, 0.0)
            self.assertRaises(ValueError, check_rate, rate, 1)
        for burst in BAD_BURSTS:
            self.assertRaises(ValueError, TokenBucket, 1, burst, 0.0)
            self.assertRaises(ValueError, check_rate, 1, burst)
        bucket = TokenBucket(2, 1, 0.0)
        for rate in BAD_RATES:
            self.assertRaises(ValueError, bucket.configure, rate, 1, 0.0)
        for burst in BAD_BURSTS:
            self.assertRaises(ValueError, bucket.configure, 1, burst, 0.0)
        self.assertEqual((bucket.rate, bucket.burst), (2.0, 1))
        check_rate(None, 1)
        check_rate(0.001, 1)


# ---------------------------------------------------------------------------
# The queue's global rate


class QueueRateTests(SynchronousTestCase):
    """``rate=``/``burst=``, ``set_rate()`` and the ``rate`` property."""

    def make(
        self, width: int = 10, duration: float | None = None, **kw: Any
    ) -> tuple[ResizableDispatchQueue, Worker, GuardedClock]:
        clock = GuardedClock()
        worker = Worker(clock, duration)
        q = ResizableDispatchQueue(worker, width, clock=clock, **kw)
        return q, worker, clock

    def test_rate_spaces_launches(self) -> None:
        """Rate 2/s, burst 1: launches at exactly t = 0, 0.5, 1.0, 1.5, 2.0."""
        q, worker, clock = self.make(rate=2)
        for i in range(5):
            q.put(i)
        self.assertEqual(worker.launches, [(0, 0.0)])
        advance_to(clock, 5.0)
        self.assertEqual(worker.launches, [(i, i * 0.5) for i in range(5)])
        self.assertEqual(q.size(), (0, 0))

    def test_burst_then_spaced(self) -> None:
        """Rate 2/s, burst 3: three launch at once, then one every 0.5 s."""
        q, worker, clock = self.make(rate=2, burst=3)
        for i in range(6):
            q.put(i)
        self.assertEqual(worker.times, [0.0, 0.0, 0.0])
        advance_to(clock, 10.0)
        self.assertEqual(worker.times, [0.0, 0.0, 0.0, 0.5, 1.0, 1.5])
        self.assertEqual(worker.args, list(range(6)))

    def test_burst_refills_after_quiet_spell(self) -> None:
        """After a quiet spell the bucket is full again: a new backlog gets a
        burst of 3 at once, then the spacing."""
        q, worker, clock = self.make(rate=2, burst=3)
        for i in range(3):
            q.put(i)
        advance_to(clock, 10.0)
        for i in range(3, 7):
            q.put(i)
        advance_to(clock, 20.0)
        self.assertEqual(worker.times, [0.0] * 3 + [10.0] * 3 + [10.5])

    def test_rate_respects_priority(self) -> None:
        """A rate-limited backlog is launched best priority first."""
        q, worker, clock = self.make(rate=1)
        q.put("first")
        q.put("low", priority=5)
        q.put("high", priority=-5)
        q.put("mid", priority=0)
        advance_to(clock, 10.0)
        self.assertEqual(
            worker.launches,
            [("first", 0.0), ("high", 1.0), ("mid", 2.0), ("low", 3.0)],
        )

    def test_width_tighter_than_rate(self) -> None:
        """Width 1 with jobs of 2 s and rate 2/s: the width decides, launches
        at 0, 2, 4 (tokens pile up meanwhile, capped at the burst)."""
        q, worker, clock = self.make(width=1, duration=2.0, rate=2)
        for i in range(3):
            q.put(i)
        advance_to(clock, 10.0)
        self.assertEqual(worker.times, [0.0, 2.0, 4.0])

    def test_rate_tighter_than_width(self) -> None:
        """Width 3 with jobs of 0.25 s and rate 1/s: the rate decides, launches
        at 0, 1, 2, 3, never more than one underway."""
        q, worker, clock = self.make(width=3, duration=0.25, rate=1)
        peak = 0

        def observe(_event: object) -> None:
            nonlocal peak
            peak = max(peak, q.size()[0])

        q.subscribe(observe)
        for i in range(4):
            q.put(i)
        advance_to(clock, 10.0)
        self.assertEqual(worker.times, [0.0, 1.0, 2.0, 3.0])
        self.assertEqual(peak, 1)

    def test_rate_and_width_take_turns(self) -> None:
        """Width 2, rate 4/s, jobs of 1 s: the rate spaces the first two
        (0, 0.25), then the width holds the next until a job ends (1.0,
        1.25), and so on."""
        q, worker, clock = self.make(width=2, duration=1.0, rate=4)
        for i in range(6):
            q.put(i)
        advance_to(clock, 10.0)
        self.assertEqual(worker.times, [0.0, 0.25, 1.0, 1.25, 2.0, 2.25])

    def test_set_rate_faster_takes_effect_at_once(self) -> None:
        """Rate 1/s switched to 4/s at t=0.25: the 0.25 token earned so far is
        kept, the next launch is at 0.4375 (not at 1.0), then every 0.25 s."""
        q, worker, clock = self.make(rate=1)
        for i in range(4):
            q.put(i)
        advance_to(clock, 0.25)
        q.set_rate(4)
        self.assertEqual(q.rate, 4.0)
        advance_to(clock, 10.0)
        self.assertEqual(worker.times, [0.0, 0.4375, 0.6875, 0.9375])

    def test_set_rate_slower_takes_effect_at_once(self) -> None:
        """Rate 4/s switched to 1/s at t=0.125 (half a token earned): the next
        launch is at 0.625 (not at 0.25), then every second."""
        q, worker, clock = self.make(rate=4)
        for i in range(4):
            q.put(i)
        advance_to(clock, 0.125)
        q.set_rate(1)
        advance_to(clock, 10.0)
        self.assertEqual(worker.times, [0.0, 0.625, 1.625, 2.625])

    def test_set_rate_none_releases_backlog(self) -> None:
        """set_rate(None) launches the whole rate-held backlog at once (up to
        the width) and later puts launch without delay."""
        q, worker, clock = self.make(width=3, duration=1.0, rate=1)
        for i in range(5):
            q.put(i)
        advance_to(clock, 0.5)
        self.assertEqual(worker.times, [0.0])
        q.set_rate(None)
        self.assertIsNone(q.rate)
        self.assertEqual(worker.times, [0.0, 0.5, 0.5])
        advance_to(clock, 1.0)
        self.assertEqual(worker.times, [0.0, 0.5, 0.5, 1.0])
        advance_to(clock, 1.5)
        self.assertEqual(worker.times, [0.0, 0.5, 0.5, 1.0, 1.5])

    def test_set_rate_on_unlimited_queue(self) -> None:
        """set_rate() on a queue made without a rate starts limiting at once,
        with a full bucket of ``burst``."""
        q, worker, clock = self.make(duration=None)
        q.set_rate(2, burst=2)
        for i in range(5):
            q.put(i)
        advance_to(clock, 10.0)
        self.assertEqual(worker.times, [0.0, 0.0, 0.5, 1.0, 1.5])

    def test_rate_property(self) -> None:
        """``rate`` reads the launches per second (None = unlimited); setting
        it keeps the current burst, and setting None lifts the limit."""
        q, worker, clock = self.make(rate=2, burst=2)
        self.assertEqual(q.rate, 2.0)
        q.rate = 4
        self.assertEqual(q.rate, 4.0)
        for i in range(4):
            q.put(i)
        advance_to(clock, 10.0)
        # Burst 2 was kept: two at once, then every 0.25 s.
        self.assertEqual(worker.times, [0.0, 0.0, 0.25, 0.5])
        q.rate = None
        self.assertIsNone(q.rate)
        unlimited, _, _ = self.make()
        self.assertIsNone(unlimited.rate)
        unlimited.rate = 3
        self.assertEqual(unlimited.rate, 3.0)

    def test_set_rate_emits_event(self) -> None:
        """set_rate() reports the change to observers."""
        q, _, _ = self.make(rate=2)
        events: list[object] = []
        q.subscribe(events.append)
        q.set_rate(5, 3)
        q.set_rate(None)
        self.assertEqual(events, [RateChanged(2.0, 5, 3), RateChanged(5.0, None, 1)])

    def test_pause_resume_with_rate(self) -> None:
        """Nothing launches while paused, however long; on resume the bucket
        (full again, burst 2) allows two at once, then the spacing."""
        q, worker, clock = self.make(rate=2, burst=2)
        for i in range(6):
            q.put(i)
        advance_to(clock, 0.25)
        self.assertEqual(worker.times, [0.0, 0.0])
        q.pause()
        advance_to(clock, 50.0)
        self.assertEqual(worker.times, [0.0, 0.0])
        self.assertEqual(q.size(), (0, 4))
        q.resume()
        advance_to(clock, 100.0)
        self.assertEqual(worker.times, [0.0, 0.0, 50.0, 50.0, 50.5, 51.0])
        self.assertEqual(worker.args, list(range(6)))

    def test_paused_rate_queue_does_not_spin(self) -> None:
        """A paused, rate-limited queue with a backlog schedules no timer loop:
        at most the one timer already set before the pause fires."""
        q, worker, clock = self.make(rate=1)
        for i in range(5):
            q.put(i)
        q.pause()
        before = clock.scheduled
        advance_to(clock, 100.0)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertLessEqual(clock.scheduled - before, 1)
        self.assertEqual(worker.times, [0.0])

    def test_stop_with_rate_limited_backlog(self) -> None:
        """stop() on a rate-held backlog fires at once with the pending jobs
        in dispatch order (still counted by size()); nothing launches after,
        no timer is left, and put() raises QueueStopped."""
        q, worker, clock = self.make(rate=1)
        for i in range(5):
            q.put(i, priority=-i if i else 0)
        advance_to(clock, 0.5)
        jobs = self.successResultOf(q.stop())
        self.assertEqual([j.arg for j in jobs], [4, 3, 2, 1])
        self.assertEqual(q.size(), (0, 4))
        advance_to(clock, 10.0)
        self.assertEqual(worker.args, [0])
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertRaises(QueueStopped, q.put, 9)

    def test_stop_waits_for_underway_then_returns_backlog(self) -> None:
        """stop() with a job underway and a rate-held backlog fires once the
        job ends, with the backlog; the backlog never launches."""
        q, worker, clock = self.make(duration=2.0, rate=1)
        for i in range(4):
            q.put(i)
        advance_to(clock, 1.5)
        self.assertEqual(worker.args, [0, 1])
        stopped = q.stop()
        self.assertNoResult(stopped)
        advance_to(clock, 2.0)
        self.assertNoResult(stopped)
        advance_to(clock, 3.0)
        jobs = self.successResultOf(stopped)
        self.assertEqual([j.arg for j in jobs], [2, 3])
        self.assertEqual(worker.args, [0, 1])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_bad_rates_raise(self) -> None:
        """Bad rates (0, negative, inf, NaN, str, bool) and bursts (0, 1.5, ...)
        raise ValueError from the constructor, set_rate() and the ``rate``
        setter; a refused change leaves the rate as it was."""
        clock = Clock()
        for rate in BAD_RATES:
            self.assertRaises(
                ValueError, ResizableDispatchQueue, str, 1, clock=clock, rate=rate
            )
        for burst in BAD_BURSTS:
            self.assertRaises(
                ValueError,
                ResizableDispatchQueue,
                str,
                1,
                clock=clock,
                rate=1,
                burst=burst,
            )
        q = ResizableDispatchQueue(str, 1, clock=clock, rate=3, burst=2)
        for rate in BAD_RATES:
            self.assertRaises(ValueError, q.set_rate, rate)
            with self.assertRaises(ValueError):
                q.rate = rate
        for burst in BAD_BURSTS:
            self.assertRaises(ValueError, q.set_rate, 1, burst)
        self.assertEqual(q.rate, 3.0)

    def test_drained_queue_does_not_spin(self) -> None:
        """Rate 2/s, 5 instant jobs: one timer per wait (4), and once drained
        no timer is left."""
        q, worker, clock = self.make(rate=2)
        for i in range(5):
            q.put(i)
        advance_to(clock, 2.0)
        self.assertEqual(len(worker.launches), 5)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertLessEqual(clock.scheduled, 4)
        drained = clock.scheduled
        advance_to(clock, 100.0)
        self.assertEqual(clock.scheduled, drained)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_awkward_rate_does_not_spin(self) -> None:
        """Rate 3/s from t=0.1 (float rounding at the refill moments): 20 jobs
        launch about 1/3 s apart with at most one timer per wait, and no timer
        is left after."""
        q, worker, clock = self.make(rate=3)
        clock.advance(0.1)
        for i in range(20):
            q.put(i)
        advance_to(clock, 100.0)
        self.assertEqual(worker.args, list(range(20)))
        for n, t in enumerate(worker.times):
            self.assertAlmostEqual(t, 0.1 + n / 3, places=9)
        self.assertLessEqual(clock.scheduled, 19)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_width_blocked_rate_queue_has_no_timer(self) -> None:
        """While the width is full the rate keeps no timer of its own: the only
        delayed call is the running job's."""
        q, worker, clock = self.make(width=1, duration=30.0, rate=1)
        for i in range(3):
            q.put(i)
        advance_to(clock, 10.0)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        self.assertEqual(worker.args, [0])
        advance_to(clock, 30.0)
        self.assertEqual(worker.times, [0.0, 30.0])
