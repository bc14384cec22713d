"""Run statistics and the progress display, driven by real queue events."""

from __future__ import annotations

import io
import json
import math
from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fetchq import ResizableDispatchQueue, RetryAfter
from fetchq.progress import (
    MAX_LANES_SAVED,
    LatencyHistogram,
    ProgressDisplay,
    RunStats,
)
from fetchq.store import Counts


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
        self.assertTrue(text.startswith("done 0/10 (0%), 0.0/s: ok 0, failed 0"), text)
        self.assertIn("nothing done in this run", text)
        self.assertNotIn("\x1b[", text)

    def test_long_lines_are_not_wrapped_when_piped(self) -> None:
        """Piped, a message far wider than 80 columns (a resume command in a
        deep directory) stays one line, so it can be pasted back whole."""
        clock = Clock()
        out = io.StringIO()
        display = ProgressDisplay(RunStats(clock), stream=out)
        command = "fetchq run " + "/very/deep/directory" * 12 + "/recipe.yaml"
        display.console.print(f"state saved; resume with: {command}", highlight=False)
        lines = out.getvalue().splitlines()
        self.assertEqual(lines, [f"state saved; resume with: {command}"])
        self.assertGreater(len(lines[0]), 200)

    def test_bar_on_a_terminal(self) -> None:
        """On a terminal the bar has a total: done/total, the percentage,
        the rate and the ETA; for a resumed run it starts at the rows the
        state already has finished."""
        clock = Clock()
        stats = RunStats(clock)
        stats.set_total(200)
        stats.observe(Counts(pending=150, claimed=0, done={"ok": 50}))
        out = Terminal()
        display = ProgressDisplay(stats, stream=out)
        self.addCleanup(display.close)
        assert display._progress is not None
        [task] = display._progress.tasks
        self.assertEqual((task.total, task.completed), (200, 50))
        for done in (60, 70, 80):
            clock.advance(1)
            stats.observe(Counts(pending=200 - done, claimed=0, done={"ok": done}))
            display.tick()
        [task] = display._progress.tasks
        self.assertEqual((task.total, task.completed), (200, 80))
        self.assertEqual(task.percentage, 40.0)
        detail = task.fields["detail"]
        self.assertTrue(detail.startswith("80/200 | 10.0/s | ETA 12s"), detail)


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class TotalAndEtaTests(SynchronousTestCase):
    """done/total, %, the recent rate and the ETA, for a run and a resumed
    one, from the store's counts."""

    def test_fresh_run(self) -> None:
        """The line says done/total and the percentage; the rate is over the
        last RATE_WINDOW seconds, the ETA what is left at that rate."""
        clock = Clock()
        stats = RunStats(clock)
        stats.set_total(1000)
        stats.sample()
        self.assertIsNone(stats.eta())
        for second in range(1, 41):
            clock.advance(1)
            # 5/s for 20 s, then 20/s: the window forgets the slow start.
            done = 5 * min(second, 20) + 20 * max(0, second - 20)
            stats.observe(Counts(pending=1000 - done, claimed=0, done={"ok": done}))
            stats.sample()
        self.assertEqual(stats.progress(), (500, 1000))
        rate = stats.recent_rate()
        assert rate is not None
        self.assertAlmostEqual(rate, (500 - 5 * 10) / 30)  # 40 s - 30 s window
        eta = stats.eta()
        assert eta is not None
        self.assertAlmostEqual(eta, 500 / rate)
        line = stats.line()
        self.assertTrue(line.startswith("done 500/1,000 (50%), 15.0/s, ETA 33s"), line)

    def test_resumed_run(self) -> None:
        """A resumed run counts the rows the state already finished as done
        (the total is the input's rows), says so at the end, and shows the
        whole run's ok and failed (bad input among the failed)."""
        clock = Clock()
        stats = RunStats(clock)
        stats.set_total(100)
        stats.observe(Counts(pending=60, claimed=0, done={"ok": 38, "invalid": 2}))
        self.assertEqual(stats.done_before, 40)
        self.assertTrue(stats.line().startswith("done 40/100 (40%)"), stats.line())
        self.assertIn("ok 38, failed 2", stats.line())
        clock.advance(2)
        stats.observe(Counts(pending=0, claimed=0, done={"ok": 98, "invalid": 2}))
        self.assertIn(
            "whole run: 100 rows done (40 before this run): ok 98, failed 2",
            stats.summary(),
        )

    def test_estimate_and_growth(self) -> None:
        """An estimated total shows as "~"; a store holding more rows than
        the total (follow-up pages) raises it."""
        stats = RunStats(Clock())
        stats.set_total(10, exact=False)
        self.assertIn("done 0/~10 (0%)", stats.line())
        stats.observe(Counts(pending=12, claimed=0, done={}))
        self.assertEqual(stats.progress(), (0, 12))


class Named(Exception):
    """An error with a fetchq-style stable name and a status."""

    def __init__(self, name: str, status: int | None = None) -> None:
        super().__init__(f"{name} {status}")
        self.name = name
        self.status = status


class BreakdownTests(SynchronousTestCase):
    """Errors by name with examples, attempts per job and per-lane figures,
    from real queue events."""

    def run_jobs(self) -> RunStats:
        clock = Clock()
        tries: dict[str, int] = {}

        def work(arg: dict[str, Any]) -> Any:
            url = arg["url"]
            tries[url] = tries.get(url, 0) + 1
            if "gone" in url:
                raise Named("HTTPStatusError", 404)
            if "flaky" in url and tries[url] == 1:
                raise RetryAfter(1)
            d: Deferred[Any] = Deferred()
            clock.callLater(0.1, d.callback, Result(200, 100))
            return d

        q = ResizableDispatchQueue(work, 4, clock=clock)
        stats = RunStats(clock)
        q.subscribe(stats)
        for i, (host, path) in enumerate(
            [("a", "ok1"), ("a", "ok2"), ("a", "gone1"), ("b", "flaky"), ("b", "gone2")]
        ):
            url = f"http://{host}.test/{path}"
            q.put({"url": url}, key=host, job_id=str(i)).addErrback(lambda f: None)
        clock.advance(0.1)
        clock.advance(1)
        clock.advance(0.1)
        stats.bad_input(
            "#9",
            {
                "url": "not a url",
                "error": {"name": "BadInput", "message": "in.txt:10: no scheme"},
            },
        )
        return stats

    def test_errors_examples_attempts(self) -> None:
        """Each error name counts failed, retried and throttled attempts and
        keeps examples (row id, URL, message); a status code keeps them too;
        bad input is a failed job with its own error name and 0 attempts."""
        stats = self.run_jobs()
        self.assertEqual(stats.errors["HTTPStatusError"], [2, 0, 0])
        self.assertEqual(stats.errors["RetryAfter"], [0, 1, 0])
        self.assertEqual(stats.errors["BadInput"], [1, 0, 0])
        self.assertEqual(stats.outcomes["failed"], 3)
        self.assertEqual(
            stats.examples["status 404"],
            [
                {
                    "id": "2",
                    "url": "http://a.test/gone1",
                    "message": "HTTPStatusError 404",
                },
                {
                    "id": "4",
                    "url": "http://b.test/gone2",
                    "message": "HTTPStatusError 404",
                },
            ],
        )
        self.assertEqual(
            stats.examples["BadInput"],
            [{"id": "#9", "url": "not a url", "message": "in.txt:10: no scheme"}],
        )
        self.assertEqual(dict(stats.attempts), {0: 1, 1: 4, 2: 1})
        self.assertIn("failed: HTTPStatusError 2, BadInput 1", stats.summary())
        self.assertIn("failed 3 (1 bad input)", stats.summary())

    def test_lanes(self) -> None:
        """Each lane counts its requests (attempts), ok, failed, retried,
        bytes and latencies."""
        stats = self.run_jobs()
        a, b = stats.lanes["a"], stats.lanes["b"]
        self.assertEqual((a.requests, a.ok, a.failed, a.retried), (3, 2, 1, 0))
        self.assertEqual((b.requests, b.ok, b.failed, b.retried), (3, 1, 1, 1))
        self.assertEqual((a.bytes, b.bytes), (200, 100))
        self.assertLess(abs((a.latency.percentile(50) or 0) - 0.1), 0.003)
        data = stats.to_json()
        self.assertEqual([lane["key"] for lane in data["lanes"]], ["a", "b"])
        self.assertIsNone(data["other_lanes"])

    def test_to_json_is_bounded(self) -> None:
        """With many lanes, to_json keeps the busiest MAX_LANES_SAVED one by
        one and adds up the rest; it is plain JSON."""
        clock = Clock()
        q = ResizableDispatchQueue(lambda arg: None, 10, clock=clock)
        stats = RunStats(clock)
        q.subscribe(stats)
        for i in range(MAX_LANES_SAVED + 30):
            for _ in range(1 + (i == 7)):
                q.put({"url": f"http://h{i}.test/"}, key=f"h{i}")
        data = stats.to_json()
        self.assertEqual(len(data["lanes"]), MAX_LANES_SAVED)
        self.assertEqual(data["lanes"][0]["key"], "h7")  # the busiest first
        self.assertEqual(data["other_lanes"]["count"], 30)
        self.assertEqual(data["other_lanes"]["requests"], 30)
        self.assertEqual(json.loads(json.dumps(data)), data)
