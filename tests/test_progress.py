"""Run statistics and the progress display, driven by real queue events."""

from __future__ import annotations

import io
import math
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fetchq import ResizableDispatchQueue, RetryAfter
from fetchq.progress import LatencyHistogram, ProgressDisplay, RunStats


@attrs.frozen
class Result:
    status: int
    bytes: int


class StatusError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class HistogramTests(SynchronousTestCase):
    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.floats(1e-4, 100.0), min_size=1, max_size=300))
    def test_percentiles_within_two_percent(self, samples: list[float]) -> None:
        """Every percentile is within the 2% bucket width of the exact one
        (the nearest-rank definition)."""
        h = LatencyHistogram()
        for s in samples:
            h.add(s)
        ordered = sorted(samples)
        for p in (1, 50, 90, 99, 100):
            exact = ordered[max(1, math.ceil(len(ordered) * p / 100)) - 1]
            got = h.percentile(p)
            assert got is not None
            self.assertLessEqual(abs(got - exact) / exact, 0.021)

    def test_empty(self) -> None:
        """No samples, no percentile."""
        self.assertIsNone(LatencyHistogram().percentile(50))


class RunStatsTests(SynchronousTestCase):
    def run_scenario(self) -> tuple[RunStats, Clock]:
        clock = Clock()
        pending: dict[str, Deferred[Any]] = {}
        tries: dict[str, int] = {}

        def work(arg: str) -> Any:
            tries[arg] = tries.get(arg, 0) + 1
            if arg == "flaky" and tries[arg] == 1:
                raise RetryAfter(1)
            if arg == "missing":
                raise StatusError(404)
            d: Deferred[Any] = Deferred()
            pending[arg] = d
            return d

        q = ResizableDispatchQueue(work, 2, clock=clock)
        stats = RunStats(clock, total=4)
        q.subscribe(stats)
        ds = [q.put(a) for a in ("a", "flaky", "missing", "cancel-me")]
        for d in ds:
            d.addErrback(lambda f: None)
        self.assertEqual((stats.queued, stats.underway, stats.retrying), (4, 2, 1))
        clock.advance(0.25)
        pending.pop("a").callback(Result(200, 1000))
        ds[3].cancel()
        clock.advance(1)
        clock.advance(0.5)
        pending.pop("flaky").callback(Result(200, 24))
        return stats, clock

    def test_counts(self) -> None:
        """Outcomes, statuses (from results and errors), bytes and the
        underway/retrying gauges follow the jobs."""
        stats, _ = self.run_scenario()
        self.assertEqual(
            dict(stats.outcomes),
            {"ok": 2, "failed": 1, "cancelled": 1, "retried": 1},
        )
        self.assertEqual(dict(stats.statuses), {200: 2, 404: 1})
        self.assertEqual(stats.bytes, 1024)
        self.assertEqual((stats.done, stats.underway, stats.retrying), (4, 0, 0))
        self.assertEqual(stats.latency.count, 5)  # every attempt that ran

    def test_summary(self) -> None:
        """The summary names the counts, statuses, percentiles and bytes."""
        stats, _ = self.run_scenario()
        text = stats.summary()
        self.assertIn("finished 4 jobs in 1.8s", text)
        self.assertIn("outcomes: cancelled 1, failed 1, ok 2, retried 1", text)
        self.assertIn("statuses: 200 2, 404 1", text)
        self.assertIn("latency: p50 ", text)
        self.assertIn("bytes: 1,024", text)


class ProgressDisplayTests(SynchronousTestCase):
    def test_plain_lines_when_piped(self) -> None:
        """Not on a terminal: one plain line per `every` seconds, no escape
        codes, and the summary at close."""
        clock = Clock()
        stats = RunStats(clock, total=10)
        out = io.StringIO()
        display = ProgressDisplay(stats, stream=out, every=5.0)
        display.tick()
        clock.advance(4)
        display.tick()
        self.assertEqual(out.getvalue(), "")
        clock.advance(1)
        display.tick()
        display.close()
        text = out.getvalue()
        self.assertTrue(text.startswith("done 0/10: ok 0, failed 0"), text)
        self.assertIn("finished 0 jobs", text)
        self.assertNotIn("\x1b[", text)
