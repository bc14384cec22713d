"""A run's history across resumes (:mod:`fetchq.report.history`): timelines
thinned and laid end to end, figures added up, and the segments kept in a
store's meta, bounded, on SQLite, in memory and on Redis."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from fetchq import ResizableDispatchQueue
from fetchq.progress import MAX_LANES_SAVED, RunStats
from fetchq.report import Timeline
from fetchq.report.history import (
    META_INDEX,
    META_SEGMENT,
    RunHistory,
    combine,
    downsample,
    fold,
    merge_stats,
    report_data,
)
from fetchq.store import MemoryStore, SQLiteStore
from tests import redis_server
from tests._clock import advance_to
from tests.test_report import Timed, simulate_run


def steady(seconds: float, width: int = 2, every: float = 0.25) -> Timeline:
    """A timeline of jobs of ``every`` seconds at ``width``, for ``seconds``."""
    clock = Clock()
    queue = ResizableDispatchQueue(Timed(clock), width, clock=clock)
    timeline = Timeline(clock, 1.0)
    timeline.start(queue)
    queue.subscribe(timeline)
    for _ in range(int(seconds / every) * width):
        queue.put((every, "ok"))
    advance_to(clock, seconds)
    return timeline


class DownsampleTests(SynchronousTestCase):
    def test_thinned_keeps_totals(self) -> None:
        """Thinned to at most N buckets (pairs merged, the interval doubled):
        counts and totals are kept exactly, the peak in flight and p99 are
        the larger, the width the later, the throughput recomputed."""
        timeline, _ = simulate_run(90.0)
        data = timeline.to_json()
        small = downsample(data, 20, 10)
        self.assertLessEqual(len(small["t"]), 20)
        self.assertEqual(small["interval"], data["interval"] * 8)  # 91 -> 12
        for name in ("ok", "failed", "launched", "bytes", "drops"):
            self.assertEqual(sum(small[name]), sum(data[name]), name)
        self.assertEqual(max(small["in_flight"]), max(data["in_flight"]))
        self.assertEqual(max(small["p99"]), max(v for v in data["p99"] if v))
        self.assertEqual(small["width"][-1], data["width"][-1])
        self.assertEqual(small["throughput"][0], small["ok"][0] / small["interval"])
        self.assertLessEqual(len(small["decisions"]), 10)
        self.assertEqual(json.loads(json.dumps(small)), small)

    def test_small_is_unchanged(self) -> None:
        """A timeline within the limits comes back as it was."""
        data = steady(5.0).to_json()
        self.assertEqual(downsample(data, 20), data)


class CombineTests(SynchronousTestCase):
    def test_segments_end_to_end(self) -> None:
        """Two runs an hour apart are laid end to end, the hour cut out: the
        second starts where the first ended, the totals add up, and the
        segments say where each starts, when (wall clock) and the gap."""
        a = steady(10.0).to_json()
        b = steady(6.0, width=3).to_json()
        out = combine(
            [
                {"started": 100.0 + 3600, "timeline": b},
                {"started": 100.0, "timeline": a},
            ]
        )
        self.assertEqual(
            [(s["n"], s["t"], s["end"], s["started"]) for s in out["segments"]],
            [(1, 0.0, 10.0, 100.0), (2, 10.0, 16.0, 3700.0)],
        )
        self.assertEqual(out["segments"][1]["gap"], 3600.0 - 10.0)
        self.assertEqual(out["end"], 16.0)
        self.assertEqual(out["totals"]["ok"], a["totals"]["ok"] + b["totals"]["ok"])
        self.assertEqual(sum(out["ok"]), out["totals"]["ok"])
        self.assertEqual(out["width"][:10], [2] * 10)
        self.assertEqual(out["width"][10:], [3] * 6)
        self.assertEqual(out["origin"], 100.0)

    def test_resume_starts_on_a_bucket_edge(self) -> None:
        """A run that ended mid-bucket: its resume starts on the next bucket's
        edge, so each of its buckets is one of the axis's, none empty (a
        gap in the charts) and none given a whole second's oks in a
        fraction of one (a spike); the counts add up."""
        a = steady(5.5).to_json()
        b = steady(3.9, width=3, every=0.3).to_json()
        parts = [{"started": 0.0, "timeline": a}, {"started": 99.0, "timeline": b}]
        out = combine(parts)
        self.assertEqual([s["t"] for s in out["segments"]], [0.0, 6.0])
        self.assertEqual(out["end"], 9.9)
        self.assertEqual(out["width"], [2] * 6 + [3] * 4)
        self.assertEqual(out["ok"][6:], b["ok"])
        self.assertEqual(out["totals"]["ok"], a["totals"]["ok"] + b["totals"]["ok"])
        # The resume's rates as its own timeline had them; the short last
        # bucket rated over its own 0.9 s.
        self.assertEqual(out["throughput"][6:9], b["throughput"][:3])
        self.assertAlmostEqual(out["throughput"][9], b["ok"][3] / 0.9, places=4)
        self.assertNotIn(None, out["throughput"])

    def test_buckets_straddling_the_axis_are_shared(self) -> None:
        """Workers that start together but not on a bucket's edge: a bucket
        that straddles two of the axis's is shared between them by time."""
        a = steady(4.0).to_json()
        b = steady(4.0).to_json()
        out = combine(
            [{"started": 10.0, "timeline": a}, {"started": 10.5, "timeline": b}]
        )
        self.assertEqual([s["t"] for s in out["segments"]], [0.0, 0.5])
        self.assertEqual(out["end"], 4.5)
        self.assertAlmostEqual(sum(out["ok"]), a["totals"]["ok"] + b["totals"]["ok"])
        self.assertEqual(out["ok"][0], a["ok"][0] + b["ok"][0] / 2)
        self.assertEqual(out["width"][1], 4)  # both running

    def test_overlapping_segments_add_up(self) -> None:
        """Workers running together: their buckets are added up (jobs in
        flight and widths summed), not laid end to end."""
        a = steady(10.0).to_json()
        b = steady(10.0).to_json()
        out = combine(
            [{"started": 50.0, "timeline": a}, {"started": 50.0, "timeline": b}]
        )
        self.assertEqual(out["end"], 10.0)
        self.assertEqual(out["in_flight"][3], 4)
        self.assertEqual(out["width"][3], 4)
        self.assertEqual(out["totals"]["ok"], 2 * a["totals"]["ok"])
        self.assertEqual([s["t"] for s in out["segments"]], [0.0, 0.0])

    def test_one_segment_as_it_was(self) -> None:
        """One segment's timeline comes back unchanged (segments added)."""
        data = steady(4.0).to_json()
        out = combine([{"started": 9.0, "timeline": data}])
        self.assertEqual(out.pop("segments")[0]["started"], 9.0)
        self.assertEqual(out, data)

    def test_long_history_is_bounded(self) -> None:
        """Many long segments still make at most COMBINED_BUCKETS buckets."""
        data = steady(400.0, every=1.0).to_json()
        parts = [{"started": i * 1000.0, "timeline": data} for i in range(8)]
        out = combine(parts)
        self.assertLessEqual(len(out["t"]), 1200)
        self.assertEqual(out["totals"]["ok"], 8 * data["totals"]["ok"])


class MergeStatsTests(SynchronousTestCase):
    def test_figures_add_up(self) -> None:
        """Counts, statuses, errors, attempts, bytes and latencies add up;
        lanes are merged by key; examples stay few; the controller's
        counts add up and its range widens."""
        _, a = simulate_run(10.0, seed=1)
        _, b = simulate_run(10.0, seed=2)
        ja, jb = a.to_json(), b.to_json()
        out = merge_stats([ja, None, jb])
        self.assertEqual(
            out["outcomes"]["ok"], ja["outcomes"]["ok"] + jb["outcomes"]["ok"]
        )
        self.assertEqual(out["done"], ja["done"] + jb["done"])
        self.assertEqual(out["bytes"], ja["bytes"] + jb["bytes"])
        self.assertEqual(
            sum(out["latency"].values()),
            sum(ja["latency"].values()) + sum(jb["latency"].values()),
        )
        lanes = {lane["key"]: lane for lane in out["lanes"]}
        self.assertEqual(set(lanes), {f"host-{i}" for i in range(5)})
        ra = {lane["key"]: lane["requests"] for lane in ja["lanes"]}
        rb = {lane["key"]: lane["requests"] for lane in jb["lanes"]}
        self.assertEqual(lanes["host-0"]["requests"], ra["host-0"] + rb["host-0"])
        for name, counts in out["errors"].items():
            want = [
                x + y
                for x, y in zip(
                    ja["errors"].get(name, [0, 0, 0]),
                    jb["errors"].get(name, [0, 0, 0]),
                    strict=True,
                )
            ]
            self.assertEqual(counts, want, name)
        self.assertTrue(all(len(v) <= 3 for v in out["examples"].values()))
        control = out["control"]
        self.assertEqual(
            control["decisions"],
            ja["control"]["decisions"] + jb["control"]["decisions"],
        )

    def test_lanes_stay_bounded(self) -> None:
        """Segments with different busy lanes merge into at most
        MAX_LANES_SAVED lanes, the rest added up with their count."""
        stats = []
        for part in range(3):
            clock = Clock()
            queue = ResizableDispatchQueue(lambda arg: None, 5, clock=clock)
            s = RunStats(clock)
            queue.subscribe(s)
            for i in range(MAX_LANES_SAVED):
                queue.put(i, key=f"p{part}-{i}")
            stats.append(s.to_json())
        out = merge_stats(stats)
        self.assertEqual(len(out["lanes"]), MAX_LANES_SAVED)
        self.assertEqual(out["other_lanes"]["count"], 2 * MAX_LANES_SAVED)
        total = sum(lane["requests"] for lane in out["lanes"])
        self.assertEqual(total + out["other_lanes"]["requests"], 3 * MAX_LANES_SAVED)


class FoldTests(SynchronousTestCase):
    def test_fold_keeps_totals(self) -> None:
        """Folded segments keep their figures and timeline totals."""
        timeline, stats = simulate_run(10.0)
        record = {
            "sid": "x",
            "started": 10.0,
            "updated": 20.0,
            "ended": "finished",
            "stats": stats.to_json(),
            "timeline": timeline.to_json(),
        }
        one = fold([record, {**record, "sid": "y", "started": 100.0}])
        self.assertEqual(one["runs"], 2)
        self.assertEqual(
            one["timeline"]["totals"]["ok"], 2 * timeline.to_json()["totals"]["ok"]
        )
        self.assertEqual(one["stats"]["done"], 2 * stats.done)


# ----------------------------------------------------------------------
# In a store


def _record_args(seconds: float = 5.0) -> tuple[dict[str, Any], dict[str, Any]]:
    timeline = steady(seconds)
    clock = Clock()
    stats = RunStats(clock)
    stats.outcomes["ok"] = 10
    return stats.to_json(), timeline.to_json()


class StoreHistoryMixin:
    """The same checks on every store: ``store()`` makes one."""

    def store(self) -> Any:
        raise NotImplementedError

    @defer.inlineCallbacks
    def test_saves_and_lists(self) -> Generator[Any, Any, None]:
        """A segment saved again replaces its record (one entry); segments
        are listed in the order they first saved."""
        store = yield self.store()
        stats, timeline = _record_args()
        first = RunHistory(store, 100.0, "one", wall=lambda: 1.0)
        yield first.save(stats, timeline)
        yield first.save(stats, timeline, "interrupted")
        second = RunHistory(store, 200.0, "two", wall=lambda: 2.0)
        yield second.save(stats, timeline, "finished")
        records = yield second.segments()
        self.assertEqual([r["sid"] for r in records], ["one", "two"])
        self.assertEqual([r["ended"] for r in records], ["interrupted", "finished"])
        index = yield store.meta_get(META_INDEX)
        self.assertEqual(index, ["one", "two"])
        data = report_data(records)
        self.assertEqual(len(data["history"]), 2)
        self.assertEqual(data["stats"]["outcomes"]["ok"], 20)

    @defer.inlineCallbacks
    def test_bounded_by_folding(self) -> Generator[Any, Any, None]:
        """Past max_segments, the oldest ended segments are folded into one:
        the list shrinks, the totals stay; a segment that may still run (not
        ended, saved lately) is not folded."""
        store = yield self.store()
        stats, timeline = _record_args(3.0)
        live = RunHistory(store, 0.5, "live", wall=lambda: 1000.0, max_segments=6)
        yield live.save(stats, timeline)  # never ends: another worker, say
        for n in range(9):
            history = RunHistory(
                store, 1.0 + n, f"s{n}", wall=lambda: 1000.0, max_segments=6
            )
            yield history.save(stats, timeline, "finished")
        records = yield history.segments()
        self.assertLessEqual(len(records), 6)
        sids = [r["sid"] for r in records]
        self.assertIn("live", sids)
        self.assertIn("s8", sids)
        runs = sum(r.get("runs", 1) for r in records)
        self.assertEqual(runs, 10)
        data = report_data(records)
        self.assertEqual(data["stats"]["outcomes"]["ok"], 100)
        self.assertEqual(
            data["timeline"]["totals"]["ok"], 10 * timeline["totals"]["ok"]
        )
        gone = yield store.meta_get(META_SEGMENT + "s0")
        self.assertIsNone(gone)


class MemoryHistoryTests(StoreHistoryMixin, TestCase):
    def store(self) -> Any:
        return defer.succeed(MemoryStore())


class SQLiteHistoryTests(StoreHistoryMixin, TestCase):
    def store(self) -> Any:
        folder = Path(tempfile.mkdtemp(prefix="fetchq-history-"))
        self.addCleanup(shutil.rmtree, folder, True)
        store = SQLiteStore(folder / "state.sqlite")
        self.addCleanup(store.close)
        return defer.succeed(store)


class RedisHistoryTests(StoreHistoryMixin, TestCase):
    @defer.inlineCallbacks
    def store(self) -> Generator[Any, Any, Any]:
        from fetchq.store.redis import RedisStore

        server = redis_server.shared()
        store = yield RedisStore.connect(server.url, redis_server.run_name(), reactor)
        self.addCleanup(store.close)
        return store
