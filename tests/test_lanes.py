"""Tests for lanes: per-key width, rate and hold inside one queue."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fetchq import JobCancelled, LaneInfo, ResizableDispatchQueue
from tests._clock import advance_to


class Worker:
    """A fake job function: records ``(arg, clock time)`` per call and returns
    a Deferred the test fires with :meth:`finish` (or, with ``duration``, one
    that fires by itself that many seconds later; with ``instant``, a plain
    value)."""

    def __init__(
        self, clock: Clock, duration: float | None = None, instant: bool = False
    ) -> None:
        self.clock = clock
        self.duration = duration
        self.instant = instant
        self.launches: list[tuple[Any, float]] = []
        self.running: dict[Any, Deferred[Any]] = {}

    def __call__(self, arg: Any) -> Any:
        self.launches.append((arg, self.clock.seconds()))
        if self.instant:
            return arg
        d: Deferred[Any] = Deferred()
        if self.duration is not None:
            self.clock.callLater(self.duration, d.callback, arg)
        else:
            self.running[arg] = d
        return d

    def finish(self, arg: Any, value: Any = None) -> None:
        """Make the running job ``arg`` succeed."""
        self.running.pop(arg).callback(value)

    @property
    def args(self) -> list[Any]:
        """Launched args in launch order."""
        return [a for a, _ in self.launches]

    @property
    def times(self) -> list[float]:
        """Launch times in launch order."""
        return [t for _, t in self.launches]

    def times_of(self, prefix: str) -> list[float]:
        """Launch times of args starting with ``prefix``."""
        return [t for a, t in self.launches if str(a).startswith(prefix)]


class LaneTestCase(SynchronousTestCase):
    """Makes a queue on a Clock with a Worker."""

    def make(
        self,
        width: int = 10,
        duration: float | None = None,
        instant: bool = False,
        **kw: Any,
    ) -> tuple[ResizableDispatchQueue, Worker, Clock]:
        clock = Clock()
        worker = Worker(clock, duration, instant)
        q = ResizableDispatchQueue(worker, width, clock=clock, **kw)
        return q, worker, clock

    def lane(self, q: ResizableDispatchQueue, key: Any) -> LaneInfo:
        """The snapshot of lane ``key`` (fails if it does not exist)."""
        found = [info for info in q.lanes() if info.key == key]
        self.assertEqual(len(found), 1, f"lane {key!r} in {q.lanes()!r}")
        return found[0]


class LaneWidthTests(LaneTestCase):
    """Per-lane width: constructor default, overrides, live changes."""

    def test_lane_width_default(self) -> None:
        """lane_width=1: one job per key at a time, other keys unaffected; the
        next job of a key launches when its predecessor ends."""
        q, worker, _ = self.make(lane_width=1)
        q.put("a1", key="a")
        q.put("a2", key="a")
        q.put("b1", key="b")
        q.put("b2", key="b")
        q.put("n1")
        self.assertEqual(worker.args, ["a1", "b1", "n1"])
        self.assertEqual(q.size(), (3, 2))
        self.assertEqual(q.lane_width, 1)
        worker.finish("b1")
        self.assertEqual(worker.args, ["a1", "b1", "n1", "b2"])
        worker.finish("a1")
        self.assertEqual(worker.args, ["a1", "b1", "n1", "b2", "a2"])
        self.assertEqual(q.size(), (3, 0))

    def test_no_lane_width_means_queue_width_only(self) -> None:
        """Without lane_width, keyed jobs are limited only by the queue width."""
        q, worker, _ = self.make(width=3)
        for i in range(5):
            q.put(f"a{i}", key="a")
        self.assertEqual(worker.args, ["a0", "a1", "a2"])
        self.assertIsNone(self.lane(q, "a").width)

    def test_set_lane_width_override_live(self) -> None:
        """set_lane_width(key, w) applies to that key only and at once:
        widening launches waiting jobs immediately; narrowing interrupts
        nothing but holds launches until the lane is under the new width."""
        q, worker, _ = self.make(lane_width=1)
        for i in range(5):
            q.put(f"a{i}", key="a")
            q.put(f"b{i}", key="b")
        self.assertEqual(worker.args, ["a0", "b0"])
        q.set_lane_width("a", 3)
        self.assertEqual(worker.args, ["a0", "b0", "a1", "a2"])
        self.assertEqual(self.lane(q, "a").width, 3)
        self.assertEqual(self.lane(q, "b").width, 1)
        q.set_lane_width("a", 1)
        worker.finish("a0")
        worker.finish("a1")
        self.assertEqual(worker.args, ["a0", "b0", "a1", "a2"])
        worker.finish("a2")
        self.assertEqual(worker.args, ["a0", "b0", "a1", "a2", "a3"])

    def test_set_lane_width_none_for_key_restores_default(self) -> None:
        """set_lane_width(key, None) drops the override: the key is back to the
        default width (here 1)."""
        q, worker, _ = self.make(lane_width=1)
        q.set_lane_width("a", 2)
        for i in range(4):
            q.put(f"a{i}", key="a")
        self.assertEqual(worker.args, ["a0", "a1"])
        q.set_lane_width("a", None)
        self.assertEqual(self.lane(q, "a").width, 1)
        worker.finish("a0")
        self.assertEqual(worker.args, ["a0", "a1"])
        worker.finish("a1")
        self.assertEqual(worker.args, ["a0", "a1", "a2"])

    def test_set_lane_width_default_live(self) -> None:
        """set_lane_width(None, w) changes the default for every lane without
        an override, at once and for lanes made later; width None lifts the
        cap for them."""
        q, worker, _ = self.make(width=20, lane_width=1)
        q.set_lane_width("c", 1)
        for key in "abc":
            for i in range(4):
                q.put(f"{key}{i}", key=key)
        self.assertEqual(worker.args, ["a0", "b0", "c0"])
        q.set_lane_width(None, 2)
        self.assertEqual(q.lane_width, 2)
        self.assertEqual(worker.args, ["a0", "b0", "c0", "a1", "b1"])
        q.put("d0", key="d")
        q.put("d1", key="d")
        q.put("d2", key="d")
        self.assertEqual(worker.args[-2:], ["d0", "d1"])
        self.assertEqual(self.lane(q, "d").width, 2)
        q.set_lane_width(None, None)
        self.assertIsNone(q.lane_width)
        self.assertEqual(
            sorted(a for a in worker.args if a[0] in "abd"),
            ["a0", "a1", "a2", "a3", "b0", "b1", "b2", "b3", "d0", "d1", "d2"],
        )
        # c kept its own width of 1.
        self.assertEqual([a for a in worker.args if a[0] == "c"], ["c0"])
        self.assertEqual(q.size(), (12, 3))

    def test_lane_width_zero_blocks_only_that_lane(self) -> None:
        """A lane of width 0 launches nothing; other keys and unkeyed jobs go
        on, and widening it later launches its jobs."""
        q, worker, _ = self.make()
        q.set_lane_width("a", 0)
        q.put("a0", key="a", priority=-10)
        q.put("b0", key="b")
        q.put("n0")
        self.assertEqual(worker.args, ["b0", "n0"])
        q.set_lane_width("a", 1)
        self.assertEqual(worker.args, ["b0", "n0", "a0"])

    def test_bad_lane_width(self) -> None:
        """Negative, float and bool lane widths raise ValueError."""
        q, _, _ = self.make()
        for bad in (-1, 1.5, True, "2"):
            self.assertRaises(ValueError, q.set_lane_width, "a", bad)
            self.assertRaises(ValueError, q.set_lane_width, None, bad)
            self.assertRaises(
                ValueError,
                ResizableDispatchQueue,
                str,
                1,
                clock=Clock(),
                lane_width=bad,
            )


class LaneRateTests(LaneTestCase):
    """Per-lane rate: constructor default, overrides, live changes."""

    def test_lane_rate_default(self) -> None:
        """lane_rate=2 (burst 1): each key launches at 0, 0.5, 1.0 on its own
        schedule; unkeyed jobs are not limited."""
        q, worker, clock = self.make(instant=True, lane_rate=2)
        for i in range(3):
            q.put(f"a{i}", key="a")
            q.put(f"b{i}", key="b")
            q.put(f"n{i}")
        self.assertEqual(worker.times_of("n"), [0.0, 0.0, 0.0])
        advance_to(clock, 10.0)
        self.assertEqual(worker.times_of("a"), [0.0, 0.5, 1.0])
        self.assertEqual(worker.times_of("b"), [0.0, 0.5, 1.0])
        self.assertEqual(self.lanes_keys(q), [])

    def lanes_keys(self, q: ResizableDispatchQueue) -> list[Any]:
        return sorted(info.key for info in q.lanes())

    def test_lane_burst_default(self) -> None:
        """lane_rate=2, lane_burst=2: two at once per key, then every 0.5 s."""
        q, worker, clock = self.make(instant=True, lane_rate=2, lane_burst=2)
        for i in range(4):
            q.put(f"a{i}", key="a")
        advance_to(clock, 10.0)
        self.assertEqual(worker.times, [0.0, 0.0, 0.5, 1.0])

    def test_set_lane_rate_override(self) -> None:
        """set_lane_rate(key, rate, burst) limits that key only."""
        q, worker, clock = self.make(instant=True)
        q.set_lane_rate("a", 1, 2)
        for i in range(4):
            q.put(f"a{i}", key="a")
            q.put(f"b{i}", key="b")
        advance_to(clock, 10.0)
        self.assertEqual(worker.times_of("a"), [0.0, 0.0, 1.0, 2.0])
        self.assertEqual(worker.times_of("b"), [0.0] * 4)

    def test_set_lane_rate_faster_live(self) -> None:
        """Lane rate 1/s raised to 4/s at t=0.25: next launch of the lane at
        0.4375 (the earned quarter token is kept), then every 0.25 s."""
        q, worker, clock = self.make(instant=True, lane_rate=1)
        for i in range(4):
            q.put(f"a{i}", key="a")
        advance_to(clock, 0.25)
        q.set_lane_rate("a", 4)
        self.assertEqual(self.lane(q, "a").rate, 4.0)
        advance_to(clock, 10.0)
        self.assertEqual(worker.times, [0.0, 0.4375, 0.6875, 0.9375])

    def test_set_lane_rate_slower_live(self) -> None:
        """Lane rate 4/s lowered to 1/s at t=0.125: next launch at 0.625."""
        q, worker, clock = self.make(instant=True, lane_rate=4)
        for i in range(3):
            q.put(f"a{i}", key="a")
        advance_to(clock, 0.125)
        q.set_lane_rate("a", 1)
        advance_to(clock, 10.0)
        self.assertEqual(worker.times, [0.0, 0.625, 1.625])

    def test_set_lane_rate_none_releases_lane(self) -> None:
        """set_lane_rate(key, None) lifts that lane's limit at once."""
        q, worker, clock = self.make(instant=True, lane_rate=1)
        for i in range(4):
            q.put(f"a{i}", key="a")
        advance_to(clock, 0.5)
        q.set_lane_rate("a", None)
        self.assertEqual(worker.times, [0.0, 0.5, 0.5, 0.5])
        self.assertEqual(q.size(), (0, 0))

    def test_set_lane_rate_default_live(self) -> None:
        """set_lane_rate(None, ...) changes the default of every lane without
        an override, at once, and of lanes made later."""
        q, worker, clock = self.make(instant=True, lane_rate=1)
        q.set_lane_rate("c", 1)
        for key in "abc":
            for i in range(3):
                q.put(f"{key}{i}", key=key)
        advance_to(clock, 0.5)
        q.set_lane_rate(None, None)
        self.assertEqual(worker.times_of("a"), [0.0, 0.5, 0.5])
        self.assertEqual(worker.times_of("b"), [0.0, 0.5, 0.5])
        self.assertEqual(worker.times_of("c"), [0.0])
        q.set_lane_rate(None, 2)
        q.put("d0", key="d")
        q.put("d1", key="d")
        advance_to(clock, 10.0)
        self.assertEqual(worker.times_of("c"), [0.0, 1.0, 2.0])
        self.assertEqual(worker.times_of("d"), [0.5, 1.0])

    def test_lane_rate_and_width_together(self) -> None:
        """Lane width 1 and lane rate 2/s with jobs of 1 s: the width decides
        (launches at 0, 1, 2) for that lane."""
        q, worker, clock = self.make(duration=1.0, lane_width=1, lane_rate=2)
        for i in range(3):
            q.put(f"a{i}", key="a")
        advance_to(clock, 10.0)
        self.assertEqual(worker.times, [0.0, 1.0, 2.0])


class HoldTests(LaneTestCase):
    """hold(seconds, key) and hold(seconds)."""

    def test_hold_one_lane(self) -> None:
        """hold(5, 'a') keeps lane a from launching until t=5 and returns 5.0;
        other keys and unkeyed jobs launch meanwhile."""
        q, worker, clock = self.make(instant=True)
        self.assertEqual(q.hold(5, "a"), 5.0)
        q.put("a0", key="a", priority=-1)
        q.put("b0", key="b")
        q.put("n0")
        self.assertEqual(worker.args, ["b0", "n0"])
        self.assertEqual(self.lane(q, "a").held_until, 5.0)
        advance_to(clock, 4.5)
        self.assertEqual(worker.args, ["b0", "n0"])
        advance_to(clock, 10.0)
        self.assertEqual(worker.launches, [("b0", 0.0), ("n0", 0.0), ("a0", 5.0)])

    def test_hold_only_extends(self) -> None:
        """A shorter hold does not shorten a longer one."""
        q, worker, clock = self.make(instant=True)
        q.hold(5, "a")
        self.assertEqual(q.hold(2, "a"), 5.0)
        q.put("a0", key="a")
        advance_to(clock, 10.0)
        self.assertEqual(worker.launches, [("a0", 5.0)])
        self.assertEqual(q.hold(3), 13.0)
        self.assertEqual(q.hold(1), 13.0)

    def test_hold_existing_busy_lane(self) -> None:
        """Holding a lane that is launching stops it at once: its pending jobs
        wait for the hold, the underway ones are not touched."""
        q, worker, clock = self.make()
        q.set_lane_width("a", 1)
        for i in range(3):
            q.put(f"a{i}", key="a")
        q.hold(4, "a")
        worker.finish("a0")
        self.assertEqual(worker.args, ["a0"])
        self.assertEqual(
            self.lane(q, "a"),
            LaneInfo(key="a", pending=2, underway=0, width=1, rate=None, held_until=4),
        )
        advance_to(clock, 4.0)
        self.assertEqual(worker.launches, [("a0", 0.0), ("a1", 4.0)])

    def test_hold_whole_queue(self) -> None:
        """hold(5) with no key holds every job, keyed or not, until t=5."""
        q, worker, clock = self.make(instant=True)
        self.assertEqual(q.hold(5), 5.0)
        q.put("a0", key="a")
        q.put("n0")
        advance_to(clock, 4.5)
        self.assertEqual(worker.args, [])
        self.assertEqual(q.size(), (0, 2))
        advance_to(clock, 10.0)
        self.assertEqual(worker.launches, [("a0", 5.0), ("n0", 5.0)])

    def test_held_lane_does_not_block_others(self) -> None:
        """A held lane full of high-priority jobs blocks no other lane: with
        width 2, lower-priority b jobs and unkeyed jobs fill the width."""
        q, worker, clock = self.make(width=2)
        q.hold(10, "a")
        for i in range(50):
            q.put(f"a{i}", key="a", priority=-100)
        q.put("b0", key="b", priority=5)
        q.put("n0", priority=7)
        q.put("b1", key="b", priority=5)
        self.assertEqual(worker.args, ["b0", "n0"])
        worker.finish("b0")
        self.assertEqual(worker.args, ["b0", "n0", "b1"])
        worker.finish("n0")
        worker.finish("b1")
        advance_to(clock, 10.0)
        self.assertEqual(worker.args, ["b0", "n0", "b1", "a0", "a1"])

    def test_hold_bad_seconds(self) -> None:
        """hold() refuses negative, NaN and non-number seconds."""
        q, _, _ = self.make()
        self.assertRaises(ValueError, q.hold, -1, "a")
        self.assertRaises(ValueError, q.hold, float("nan"))
        self.assertRaises(TypeError, q.hold, "1")
        self.assertRaises(TypeError, q.hold, True, "a")
        self.assertEqual(q.lanes(), [])

    def test_held_idle_lane_dropped_after_hold(self) -> None:
        """A hold on a key with no jobs makes a lane that lives until the hold
        ends, then disappears."""
        q, _, clock = self.make()
        q.hold(3, "x")
        self.assertEqual(
            q.lanes(),
            [LaneInfo("x", pending=0, underway=0, width=None, rate=None, held_until=3)],
        )
        advance_to(clock, 3.0)
        self.assertEqual(q.lanes(), [])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_a_stopped_queue_keeps_no_timer(self) -> None:
        """Once stop() has finished, a hold (a lane's, or the queue's: say a
        quota's answer that came late) arms no timer: a stopped queue leaves
        nothing in the reactor."""
        q, _, clock = self.make()
        self.successResultOf(q.stop())
        q.hold(3, "x")
        q.hold(3)
        self.assertEqual(clock.getDelayedCalls(), [])


class HeadOfLineTests(LaneTestCase):
    """No head-of-line blocking: the best *launchable* job launches."""

    def test_saturated_lane_does_not_block_others(self) -> None:
        """
        Width 10; lane A (width 1) has 100 pending jobs of priority 0 and B
        has jobs of priority 5: B fills the other 9 slots while A is
        saturated; when A's job ends, A's next job (better priority) takes the
        slot, not a B job.
        """
        q, worker, _ = self.make(width=10)
        q.set_lane_width("A", 1)
        for i in range(100):
            q.put(f"A{i}", key="A", priority=0)
        for i in range(20):
            q.put(f"B{i}", key="B", priority=5)
        self.assertEqual(worker.args, ["A0"] + [f"B{i}" for i in range(9)])
        self.assertEqual(q.size(), (10, 110))
        worker.finish("A0")
        self.assertEqual(worker.args[-1], "A1")
        worker.finish("B0")
        self.assertEqual(worker.args[-1], "B9")
        self.assertEqual(q.size(), (10, 108))
        self.assertEqual(self.lane(q, "A").pending, 98)
        self.assertEqual(self.lane(q, "B").pending, 10)

    def test_saturated_lane_put_first_with_b_added_later(self) -> None:
        """B jobs put while A is saturated launch at put() time."""
        q, worker, _ = self.make(width=10, lane_width=1)
        q.set_lane_width("B", None)
        q.set_lane_width("B", 5)
        for i in range(100):
            q.put(f"A{i}", key="A", priority=-1)
        self.assertEqual(worker.args, ["A0"])
        for i in range(7):
            q.put(f"B{i}", key="B", priority=9)
        self.assertEqual(worker.args, ["A0"] + [f"B{i}" for i in range(5)])
        q.put("n", priority=100)
        self.assertEqual(worker.args[-1], "n")

    def test_best_launchable_job_launches(self) -> None:
        """
        Paused, then resumed with width 3: unkeyed u0 (prio 0), a1 (prio 1)
        and b3 (prio 3) launch; a2 (prio 2) is better than u4 and b3 but its
        lane (width 1) is full.  Finishing a1 launches a2 before u4.
        """
        q, worker, _ = self.make(width=3)
        q.set_lane_width("a", 1)
        q.pause()
        q.put("u4", priority=4)
        q.put("a1", key="a", priority=1)
        q.put("a2", key="a", priority=2)
        q.put("b3", key="b", priority=3)
        q.put("u0", priority=0)
        self.assertEqual([j.arg for j in q.pending()], ["u0", "a1", "a2", "b3", "u4"])
        q.resume()
        self.assertEqual(worker.args, ["u0", "a1", "b3"])
        self.assertEqual([j.arg for j in q.pending()], ["a2", "u4"])
        worker.finish("b3")
        self.assertEqual(worker.args, ["u0", "a1", "b3", "u4"])
        worker.finish("a1")
        self.assertEqual(worker.args, ["u0", "a1", "b3", "u4", "a2"])

    def test_keyed_and_unkeyed_mix_by_priority(self) -> None:
        """Width 1: keyed and unkeyed jobs launch strictly by priority, FIFO
        within a priority, regardless of lane."""
        q, worker, _ = self.make(width=1)
        q.put("first")
        q.put("a-p2", key="a", priority=2)
        q.put("n-p1", priority=1)
        q.put("b-p1", key="b", priority=1)
        q.put("a-p1", key="a", priority=1)
        q.put("n-p0", priority=0)
        q.put("b-p3", key="b", priority=3)
        for arg in ["first", "n-p0", "n-p1", "b-p1", "a-p1", "a-p2", "b-p3"]:
            self.assertEqual(worker.args[-1], arg)
            worker.finish(arg)
        self.assertEqual(q.size(), (0, 0))

    def test_rate_limited_lane_does_not_block_others(self) -> None:
        """A lane out of rate tokens holds back only its own jobs."""
        q, worker, clock = self.make(width=1, instant=True)
        q.set_lane_rate("a", 1)
        q.pause()
        for i in range(3):
            q.put(f"a{i}", key="a", priority=-1)
        for i in range(3):
            q.put(f"b{i}", key="b", priority=1)
        q.resume()
        self.assertEqual(worker.args, ["a0", "b0", "b1", "b2"])
        advance_to(clock, 5.0)
        self.assertEqual(worker.times_of("a"), [0.0, 1.0, 2.0])


class LaneLifetimeTests(LaneTestCase):
    """lanes() snapshots and idle-lane dropping."""

    def test_lanes_snapshot(self) -> None:
        """lanes() reports each lane's pending, underway, width, rate and hold
        exactly, and is a snapshot that later changes do not alter."""
        q, worker, _ = self.make(width=10, lane_width=2)
        q.set_lane_rate("b", 5, 3)
        for i in range(3):
            q.put(f"a{i}", key="a")
        q.put("b0", key="b")
        q.hold(7, "c")
        snap = sorted(q.lanes(), key=lambda info: info.key)
        self.assertEqual(
            snap,
            [
                LaneInfo(
                    "a", pending=1, underway=2, width=2, rate=None, held_until=None
                ),
                LaneInfo(
                    "b", pending=0, underway=1, width=2, rate=5.0, held_until=None
                ),
                LaneInfo("c", pending=0, underway=0, width=2, rate=None, held_until=7),
            ],
        )
        worker.finish("a0")
        self.assertEqual(snap[0].underway, 2)
        self.assertEqual(self.lane(q, "a").pending, 0)
        self.assertEqual(self.lane(q, "a").underway, 2)

    def test_lane_dropped_when_idle(self) -> None:
        """A lane exists while it has jobs and is gone once its last job ends."""
        q, worker, _ = self.make(lane_width=1)
        q.put("a0", key="a")
        q.put("a1", key="a")
        worker.finish("a0")
        self.assertEqual(len(q.lanes()), 1)
        worker.finish("a1")
        self.assertEqual(q.lanes(), [])

    def test_ten_thousand_keys_leave_no_lanes(self) -> None:
        """After 10,000 distinct keys each ran one job, lanes() is empty and
        no timer is left."""
        q, worker, clock = self.make(width=100, instant=True, lane_width=1)
        for i in range(10_000):
            q.put(i, key=f"host{i}")
        self.assertEqual(len(worker.launches), 10_000)
        self.assertEqual(q.lanes(), [])
        self.assertEqual(q.size(), (0, 0))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_ten_thousand_keys_with_slow_jobs(self) -> None:
        """The same with jobs that end later: the lanes live while their jobs
        run and are all gone once they have ended."""
        q, worker, clock = self.make(width=20_000, lane_width=1)
        for i in range(10_000):
            q.put(i, key=f"host{i}")
        self.assertEqual(len(q.lanes()), 10_000)
        for i in range(5_000):
            worker.finish(i)
        self.assertEqual(len(q.lanes()), 5_000)
        for i in range(5_000, 10_000):
            worker.finish(i)
        self.assertEqual(q.lanes(), [])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_ten_thousand_keys_with_lane_rate(self) -> None:
        """With a lane rate, a lane outlives its job until its bucket would be
        full again (1 s at 1/s), then is dropped: all 10,000 are gone after
        the clock advances 1 s, and no timer is left."""
        q, worker, clock = self.make(width=100, instant=True, lane_rate=1)
        for i in range(10_000):
            q.put(i, key=f"host{i}")
        self.assertEqual(len(worker.launches), 10_000)
        self.assertEqual(len(q.lanes()), 10_000)
        advance_to(clock, 0.5)
        self.assertEqual(len(q.lanes()), 10_000)
        advance_to(clock, 1.0)
        self.assertEqual(q.lanes(), [])
        self.assertEqual(clock.getDelayedCalls(), [])


class LaneCancelReprioritizeTests(LaneTestCase):
    """Cancel and reprioritize of keyed jobs keep order and counts right."""

    def test_cancel_lane_best_job_in_full_lane(self) -> None:
        """Lane a (width 1) busy with a0; cancelling a1 (its best pending job)
        errbacks JobCancelled, leaves [a2, a3], and a2 launches next."""
        q, worker, _ = self.make(lane_width=1)
        q.put("a0", key="a")
        d1 = q.put("a1", key="a")
        q.put("a2", key="a")
        q.put("a3", key="a")
        d1.cancel()
        self.failureResultOf(d1, JobCancelled)
        self.assertEqual([j.arg for j in q.pending()], ["a2", "a3"])
        self.assertEqual(q.size(), (1, 2))
        self.assertEqual(self.lane(q, "a").pending, 2)
        worker.finish("a0")
        self.assertEqual(worker.args, ["a0", "a2"])

    def test_cancel_rep_of_open_lane(self) -> None:
        """Global width full; lane a open with a1 (prio 1) as its best job in
        the dispatch heap.  Cancelling a1 lets b (prio 1.5) go before a2
        (prio 2) when a slot frees."""
        q, worker, _ = self.make(width=1)
        q.put("busy")
        j1 = self.pending_job(q.put("a1", key="a", priority=1))
        q.put("a2", key="a", priority=2)
        q.put("b", key="b", priority=1.5)
        j1.cancel()
        self.assertEqual([j.arg for j in q.pending()], ["b", "a2"])
        self.assertEqual(q.size(), (1, 2))
        worker.finish("busy")
        self.assertEqual(worker.args, ["busy", "b"])
        worker.finish("b")
        self.assertEqual(worker.args, ["busy", "b", "a2"])

    def pending_job(self, d: Deferred[Any]) -> Any:
        d.addErrback(lambda f: f.trap(JobCancelled))
        return d.job  # type: ignore[attr-defined]

    def test_cancel_last_job_drops_lane(self) -> None:
        """Cancelling a lane's only pending job drops the lane."""
        q, _, _ = self.make(width=0)
        d = q.put("a0", key="a")
        self.assertEqual(len(q.lanes()), 1)
        d.cancel()
        self.failureResultOf(d, JobCancelled)
        self.assertEqual(q.lanes(), [])
        self.assertEqual(q.size(), (0, 0))

    def test_reprioritize_lane_best_job_worse(self) -> None:
        """Reprioritising the lane's best job to a worse priority lets the
        lane's next job and other lanes' jobs go first."""
        q, worker, _ = self.make(width=1)
        q.put("busy")
        j1 = self.pending_job(q.put("a1", key="a", priority=1))
        q.put("a2", key="a", priority=2)
        q.put("b5", key="b", priority=5)
        q.reprioritize(j1, 10)
        self.assertEqual(j1.priority, 10)
        self.assertEqual([j.arg for j in q.pending()], ["a2", "b5", "a1"])
        self.assertEqual(q.size(), (1, 3))
        for arg in ["busy", "a2", "b5", "a1"]:
            self.assertEqual(worker.args[-1], arg)
            worker.finish(arg)
        self.assertEqual(q.size(), (0, 0))

    def test_reprioritize_other_job_to_best(self) -> None:
        """Reprioritising a lane's back job to the best priority makes it the
        lane's (and queue's) next job, in a lane that is full and in one that
        is open."""
        q, worker, _ = self.make(width=2)
        q.set_lane_width("a", 1)
        q.put("a0", key="a")
        q.put("busy")
        q.put("a1", key="a", priority=1)
        j2 = self.pending_job(q.put("a2", key="a", priority=2))
        j3 = self.pending_job(q.put("b3", key="b", priority=3))
        j4 = self.pending_job(q.put("b4", key="b", priority=4))
        q.reprioritize(j2, 0)
        q.reprioritize(j4, 0)
        self.assertEqual([j.arg for j in q.pending()], ["a2", "b4", "a1", "b3"])
        worker.finish("busy")
        self.assertEqual(worker.args[-1], "b4")
        worker.finish("a0")
        self.assertEqual(worker.args[-1], "a2")
        self.assertEqual([j.arg for j in q.pending()], ["a1", "b3"])
        self.assertEqual(j3.priority, 3)

    def test_reprioritize_equal_priority_goes_to_back(self) -> None:
        """Reprioritising to the same priority moves a keyed job to the back of
        its class, across lanes."""
        q, worker, _ = self.make(width=0)
        j1 = self.pending_job(q.put("a1", key="a"))
        q.put("b1", key="b")
        q.put("a2", key="a")
        q.reprioritize(j1, 0)
        self.assertEqual([j.arg for j in q.pending()], ["b1", "a2", "a1"])
        q.setWidth(1)
        for arg in ["b1", "a2", "a1"]:
            self.assertEqual(worker.args[-1], arg)
            worker.finish(arg)


class ResetLaneTests(LaneTestCase):
    """reset_lane(key): a lane's own width and rate go, the defaults apply."""

    def test_reset_lane_restores_the_defaults(self) -> None:
        q, worker, clock = self.make(lane_width=2, lane_rate=10.0)
        events: list[Any] = []
        q.subscribe(events.append)
        q.set_lane_width("a", 1)
        q.set_lane_rate("a", 1.0)
        for i in range(4):
            q.put(f"a{i}", key="a")
        self.assertEqual(worker.args, ["a0"])
        self.assertEqual((self.lane(q, "a").width, self.lane(q, "a").rate), (1, 1.0))
        events.clear()
        q.reset_lane("a")
        info = self.lane(q, "a")
        self.assertEqual((info.width, info.rate), (2, 10.0))
        self.assertEqual(q.lane_rate, 10.0)
        kinds = {(type(e).__name__, e.key, e.new) for e in events if e.key == "a"}
        self.assertEqual(kinds, {("WidthChanged", "a", 2), ("RateChanged", "a", 10.0)})
        # The lane's wider default applies at once (its rate permitting).
        advance_to(clock, 0.1)
        self.assertEqual(worker.args, ["a0", "a1"])

    def test_reset_of_a_lane_without_settings_does_nothing(self) -> None:
        q, _worker, _ = self.make(lane_width=2)
        events: list[Any] = []
        q.subscribe(events.append)
        q.reset_lane("nobody")
        q.put("x", key="b")
        q.reset_lane("b")
        self.assertEqual(self.lane(q, "b").width, 2)
        self.assertEqual(
            [type(e).__name__ for e in events], ["JobQueued", "JobLaunched"]
        )
