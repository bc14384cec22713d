"""Tests for the run report (:mod:`fetchq.report`): the timeline observer
driven by a real queue on a fake clock, the HTML file, and the page drawing
in headless Chromium."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock, LoopingCall
from twisted.trial.unittest import SynchronousTestCase

from fetchq import (
    ControlDecision,
    JobFailed,
    ResizableDispatchQueue,
    RetryAfter,
    RetryPolicy,
    Throttled,
)
from fetchq.progress import RunStats
from fetchq.report import Timeline, render_report, write_report
from fetchq.report.history import report_data
from fetchq.report.html import MAX_DECISION_ROWS, format_wall
from fetchq.store import Counts
from tests._clock import advance_to

ROOT = Path(__file__).resolve().parent.parent


class FlakyError(Exception):
    """Retryable under the policy used here."""


class FatalError(Exception):
    """Not retryable."""


class Timed:
    """A job function: ``arg`` is ``(seconds, outcome)``; the attempt ends
    ``seconds`` after launch with ``outcome`` (an exception fails it; a list
    gives one outcome per attempt)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.attempts: dict[Any, int] = {}

    def __call__(self, arg: tuple[float, Any]) -> Deferred[Any]:
        seconds, outcome = arg
        if isinstance(outcome, list):
            n = self.attempts.get(id(arg), 0)
            self.attempts[id(arg)] = n + 1
            outcome = outcome[n]
        d: Deferred[Any] = Deferred()
        self.clock.callLater(seconds, _fire, d, outcome)
        return d


@attrs.frozen
class Sized:
    """A result with a size, as a fetch's is."""

    bytes: int


def _fire(d: Deferred[Any], outcome: Any) -> None:
    if d.called:
        return
    if isinstance(outcome, BaseException):
        d.errback(outcome)
    else:
        d.callback(outcome)


def decision(
    time: float,
    width: int,
    *,
    key: Any = None,
    rate: float | None = None,
    drops: int = 0,
    throttles: int = 0,
    baseline: float | None = 0.1,
    reason: str = "grow",
) -> ControlDecision:
    return ControlDecision(
        controller="test",
        key=key,
        width=width,
        rate=rate,
        in_flight=width,
        samples=10,
        latency=0.12,
        baseline=baseline,
        gradient=None if baseline is None else baseline / 0.12,
        drops=drops,
        throttles=throttles,
        reason=reason,
        time=time,
    )


def make(
    width: int = 2, interval: float = 1.0, **kw: Any
) -> tuple[ResizableDispatchQueue, Timeline, Clock]:
    clock = Clock()
    queue = ResizableDispatchQueue(Timed(clock), width, clock=clock, **kw)
    timeline = Timeline(clock, interval)
    timeline.start(queue)
    queue.subscribe(timeline)
    return queue, timeline, clock


def swallow(d: Deferred[Any]) -> None:
    d.addErrback(lambda f: f.trap(JobFailed, Exception))


class TimelineBucketTests(SynchronousTestCase):
    """What each bucket holds, from a real queue on a fake clock."""

    def assertClose(self, got: float | None, want: float) -> None:
        assert got is not None
        self.assertLess(abs(got - want) / want, 0.02, f"{got} != {want} within 2%")

    def test_counts_percentiles_and_in_flight(self) -> None:
        """Width 2, jobs of known durations: launches and oks land in the
        bucket of their time, p50/p90/p99 are those of the bucket's ok
        latencies (within the histogram's 2%), in-flight is the most
        underway at once, counting jobs still running from a bucket before."""
        queue, timeline, clock = make(width=2)
        for seconds in (0.2, 0.3, 0.25, 1.4, 0.5):
            queue.put((seconds, "ok"))
        # 0: launch .2, .3; .2: ok, launch .25; .3: ok, launch 1.4;
        # .45: ok, launch .5; .95: ok; 1.7: the 1.4 ok.
        advance_to(clock, 3.5)
        data = timeline.to_json()
        self.assertEqual(data["t"], [0.0, 1.0])
        self.assertEqual(data["launched"], [5, 0])
        self.assertEqual(data["ok"], [4, 1])
        self.assertEqual(data["throughput"], [4.0, 1.0])
        self.assertEqual(data["in_flight"], [2, 1])
        self.assertEqual(data["failed"], [0, 0])
        self.assertEqual(data["width"], [2, 2])
        self.assertEqual(data["rate"], [None, None])
        self.assertClose(data["p50"][0], 0.25)
        self.assertClose(data["p90"][0], 0.5)
        self.assertClose(data["p99"][0], 0.5)
        self.assertClose(data["p50"][1], 1.4)
        self.assertEqual(data["end"], 3.5)
        self.assertEqual(data["totals"]["ok"], 5)

    def test_bytes_per_bucket(self) -> None:
        """The bytes of successful attempts' results are summed in the
        bucket each ended in (results without a size add nothing), and in
        the totals; merged buckets keep the sum."""
        queue, timeline, clock = make(width=2)
        queue.put((0.5, Sized(1000)))
        queue.put((0.7, Sized(24)))
        queue.put((1.5, Sized(5)))  # ends at 2.0
        queue.put((0.1, "no size"))
        advance_to(clock, 2.5)
        data = timeline.to_json()
        self.assertEqual(data["bytes"], [1024, 0, 5])
        self.assertEqual(data["totals"]["bytes"], 1029)

    def test_percentiles_of_many(self) -> None:
        """With 1,000 latencies in one bucket the percentiles are the
        nearest-rank ones within 2%."""
        queue, timeline, clock = make(width=1000)
        rng = random.Random(7)
        latencies = sorted(rng.uniform(0.01, 0.9) for _ in range(1000))
        for seconds in latencies:
            queue.put((seconds, "ok"))
        advance_to(clock, 0.95)
        data = timeline.to_json()
        self.assertEqual(data["ok"], [1000])
        self.assertEqual(data["in_flight"], [1000])
        self.assertClose(data["p50"][0], latencies[499])
        self.assertClose(data["p90"][0], latencies[899])
        self.assertClose(data["p99"][0], latencies[989])

    def test_outcomes(self) -> None:
        """Failed, retried, throttled and cancelled attempts are counted in
        the bucket they ended in, and only oks give latencies; a cancelled
        underway job stops counting as in flight."""
        queue, timeline, clock = make(width=4)
        swallow(queue.put((0.5, FatalError())))  # failed at .5
        queue.put((0.2, [RetryAfter(1.2), "ok"]))  # retried at .2, ok at 1.6
        # throttled at 1.4 (holding only its lane), again at 1.5, ok at 2.9
        queue.put((1.4, [Throttled(0.1), "ok"]), key="c")
        hanging = queue.put((9.0, "ok"))
        swallow(hanging)
        waiting = queue.put((0.1, "ok"), priority=5)  # never launches
        swallow(waiting)
        waiting.cancel()  # cancelled at 0, not underway
        advance_to(clock, 2.5)
        hanging.cancel()  # cancelled at 2.5 while underway
        advance_to(clock, 3.5)
        data = timeline.to_json()
        self.assertEqual(data["failed"], [1, 0, 0])
        self.assertEqual(data["retried"], [1, 0, 0])
        self.assertEqual(data["throttled"], [0, 1, 0])
        self.assertEqual(data["cancelled"], [1, 0, 1])
        self.assertEqual(data["ok"], [0, 1, 1])
        self.assertEqual(data["launched"], [4, 2, 0])
        self.assertIsNone(data["p50"][0])
        self.assertClose(data["p50"][1], 0.2)
        self.assertClose(data["p50"][2], 1.4)
        # 0: four underway; 1: three carried over; 2: the throttled job's
        # retry and the hanging one, then the hanging one cancelled.
        self.assertEqual(data["in_flight"], [4, 3, 2])

    def test_width_and_rate_carried_forward(self) -> None:
        """The width and rate as set at each bucket's end, carried through
        buckets with no change, starting from the queue's own at start()."""
        queue, timeline, clock = make(width=3)
        for _ in range(40):
            queue.put((0.5, "ok"))
        advance_to(clock, 1.5)
        queue.setWidth(5)
        advance_to(clock, 2.5)
        queue.set_rate(10.0)
        advance_to(clock, 3.2)
        queue.setWidth(2)
        queue.setWidth(1)
        advance_to(clock, 5.5)
        queue.set_rate(None)
        advance_to(clock, 6.2)
        data = timeline.to_json()
        self.assertEqual(data["t"], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        self.assertEqual(data["width"], [3, 5, 5, 1, 1, 1, 1])
        self.assertEqual(data["rate"], [None, None, 10.0, 10.0, 10.0, None, None])

    def test_unknown_width_filled_in(self) -> None:
        """Without start() or width=, buckets before the first width change
        take that change's old width; until then the width is unknown."""
        clock = Clock()
        queue = ResizableDispatchQueue(Timed(clock), 4, clock=clock)
        timeline = Timeline(clock)
        queue.subscribe(timeline)
        for _ in range(20):
            queue.put((0.5, "ok"))
        advance_to(clock, 1.2)
        self.assertEqual(timeline.to_json()["width"], [None, None])
        queue.setWidth(6)
        advance_to(clock, 2.2)
        self.assertEqual(timeline.to_json()["width"], [4, 6, 6])

    def test_given_width_and_rate(self) -> None:
        """width= and rate= stand for start() when the queue is not at hand."""
        clock = Clock()
        queue = ResizableDispatchQueue(Timed(clock), 4, clock=clock, rate=50.0)
        timeline = Timeline(clock, 0.5, width=4, rate=50.0)
        queue.subscribe(timeline)
        queue.put((0.1, "ok"))
        advance_to(clock, 0.7)
        queue.put((0.1, "ok"))
        data = timeline.to_json()
        self.assertEqual(data["t"], [0.0, 0.5])
        self.assertEqual(data["width"], [4, 4])
        self.assertEqual(data["rate"], [50.0, 50.0])
        # the open bucket, 0.2 s old at 0.7, is too young for a throughput
        self.assertEqual(data["throughput"], [2.0, None])
        advance_to(clock, 0.9)
        self.assertEqual(timeline.to_json()["throughput"], [2.0, 1 / 0.4])

    def test_idle_gaps_are_empty_buckets(self) -> None:
        """A quiet spell gives buckets with no counts, the width carried and
        in-flight the jobs still running."""
        queue, timeline, clock = make(width=2)
        queue.put((3.5, "ok"))
        advance_to(clock, 4.0)
        data = timeline.to_json()
        self.assertEqual(data["launched"], [1, 0, 0, 0])
        self.assertEqual(data["ok"], [0, 0, 0, 1])
        self.assertEqual(data["in_flight"], [1, 1, 1, 1])
        self.assertEqual(data["p50"][:3], [None, None, None])

    def test_merging_keeps_memory_bounded(self) -> None:
        """After max_buckets buckets, neighbours merge and the interval
        doubles: totals are kept exactly, the peak in-flight too."""
        clock = Clock()
        queue = ResizableDispatchQueue(Timed(clock), 3, clock=clock)
        timeline = Timeline(clock, 1.0, max_buckets=8)
        timeline.start(queue)
        queue.subscribe(timeline)
        for i in range(300):
            queue.put((0.5 if i != 10 else 0.25, "ok"))
        advance_to(clock, 100.0)
        queue.setWidth(10)
        for _ in range(10):
            queue.put((0.5, "ok"))
        advance_to(clock, 101.0)
        data = timeline.to_json()
        # merged at 8 s (into 2 s buckets), 16 s (4 s), 32 s (8 s), 64 s (16 s)
        self.assertEqual(timeline.interval, 16.0)
        self.assertEqual(data["interval"], 16.0)
        self.assertEqual(data["t"], [0.0, 16.0, 32.0, 48.0, 64.0, 80.0, 96.0])
        self.assertEqual(sum(data["ok"]), 310)
        self.assertEqual(sum(data["launched"]), 310)
        self.assertEqual(max(data["in_flight"]), 10)
        self.assertEqual(data["width"][-1], 10)
        self.assertEqual(data["throughput"][0], sum(data["ok"][:1]) / 16.0)
        self.assertClose(data["p50"][0], 0.5)

    def test_decisions_recorded(self) -> None:
        """Announced decisions are kept with their numbers, times relative to
        time zero; their drops and throttles are summed per bucket, and the
        queue-wide baseline (not a lane's) is carried into the bucket."""
        queue, timeline, clock = make(width=2)
        clock.advance(10.0)  # time zero is 0; now at 10
        queue.announce(decision(10.2, 3, drops=2, throttles=1, baseline=0.08))
        queue.announce(decision(10.7, 3, drops=1, reason="hold"))
        queue.announce(decision(11.5, 5, key="host-a", drops=4, baseline=9.0))
        data = timeline.to_json()
        self.assertEqual(data["drops"][10:], [3, 4])
        self.assertEqual(data["throttles"][10:], [1, 0])
        self.assertEqual(data["decision_counts"][10:], [2, 1])
        self.assertEqual(data["baseline"][10:], [0.1, None])
        first, second, lane = data["decisions"]
        self.assertEqual(first["t"], 10.2)
        self.assertEqual(first["width"], 3)
        self.assertEqual(first["drops"], 2)
        self.assertEqual(first["baseline"], 0.08)
        self.assertEqual(first["reason"], "grow")
        self.assertTrue(first["changed"])  # a key's first decision
        self.assertFalse(second["changed"])  # width and rate as before
        self.assertEqual(lane["key"], "host-a")
        self.assertEqual(data["decisions_seen"], 3)
        self.assertEqual(data["totals"]["drops"], 7)

    def test_decisions_bounded(self) -> None:
        """Thousands of decisions keep at most max_decisions, spread over the
        run, every one that changed the width among them (while they fit),
        and drops are still summed from all of them."""
        clock = Clock()
        queue = ResizableDispatchQueue(Timed(clock), 1, clock=clock)
        timeline = Timeline(clock, 1.0, max_decisions=32)
        timeline.start(queue)
        queue.subscribe(timeline)
        changes = []
        width = 1
        for i in range(5000):
            now = i * 0.02
            if i % 400 == 0:
                width += 1
                changes.append(now)
            queue.announce(decision(now, width, drops=1, key=None))
        data = timeline.to_json()
        kept = data["decisions"]
        self.assertLessEqual(len(kept), 32)
        self.assertGreaterEqual(len(kept), 8)
        self.assertEqual(data["decisions_seen"], 5000)
        times = [d["t"] for d in kept]
        self.assertEqual(times, sorted(times))
        self.assertLess(times[0], 5.0)
        self.assertGreater(times[-1], 90.0)
        changed_times = [d["t"] for d in kept if d["changed"]]
        self.assertEqual(changed_times, [round(t, 6) for t in changes])
        self.assertEqual(data["totals"]["drops"], 5000)

    def test_to_json_round_trips(self) -> None:
        """to_json() is plain JSON: dumping (NaN refused) and loading gives
        the same dict, lane keys that JSON cannot hold are strings."""
        queue, timeline, clock = make(width=3)
        for i in range(20):
            queue.put((0.1 * (i % 7 + 1), "ok"))
        queue.announce(decision(0.3, 3, key=("host", 443)))
        advance_to(clock, 5.0)
        data = timeline.to_json()
        self.assertEqual(json.loads(json.dumps(data, allow_nan=False)), data)
        self.assertEqual(data["decisions"][0]["key"], "('host', 443)")

    def test_bad_arguments(self) -> None:
        """Misuse fails at once."""
        clock = Clock()
        self.assertRaises(ValueError, Timeline, clock, 0)
        self.assertRaises(ValueError, Timeline, clock, float("nan"))
        self.assertRaises(TypeError, Timeline, clock, "1")
        self.assertRaises(ValueError, Timeline, clock, 1.0, max_buckets=1)
        self.assertRaises(ValueError, Timeline, clock, 1.0, max_decisions=2)


# ----------------------------------------------------------------------
# A run worth drawing: a queue whose latency grows with load, a toy AIMD
# controller announcing its decisions, throttles, failures and a rate.


def simulate_run(seconds: float = 90.0, seed: int = 3) -> tuple[Timeline, RunStats]:
    """A simulated run on a fake clock: returns its timeline and stats."""
    clock = Clock()
    rng = random.Random(seed)
    load = {"underway": 0}

    def work(arg: int) -> Deferred[Any]:
        n = load["underway"]
        latency = 0.04 + 0.004 * max(0, n - 12) ** 1.5 + rng.expovariate(40)
        outcome: Any = "ok"
        roll = rng.random()
        if n > 30 and roll < 0.08:
            outcome = Throttled(0.5, "429")
        elif roll < 0.01:
            outcome = FatalError("500")
        elif roll < 0.03:
            outcome = FlakyError("reset")
        d: Deferred[Any] = Deferred()
        clock.callLater(latency, _fire, d, outcome)
        return d

    queue = ResizableDispatchQueue(
        work,
        4,
        clock=clock,
        retry=RetryPolicy(retry_on=(FlakyError,), base_delay=0.2),
        rng=random.Random(seed),
    )
    timeline = Timeline(clock, 1.0)
    timeline.start(queue)
    queue.subscribe(timeline)
    stats = RunStats(clock)
    queue.subscribe(stats)

    def count(event: Any) -> None:
        stats_underway = stats.underway
        load["underway"] = stats_underway

    queue.subscribe(count)
    window: dict[str, Any] = {"lat": [], "drops": 0, "throttles": 0, "peak": 0}
    baseline = {"value": None}

    def watch(event: Any) -> None:
        from fetchq import JobFinished, JobLaunched, Outcome

        if isinstance(event, JobLaunched):
            window["peak"] = max(window["peak"], stats.underway)
        elif isinstance(event, JobFinished):
            if event.outcome is Outcome.OK and event.latency is not None:
                window["lat"].append(event.latency)
            elif event.outcome is Outcome.THROTTLED:
                window["drops"] += 1
                window["throttles"] += 1
            elif event.outcome in (Outcome.RETRIED, Outcome.FAILED):
                window["drops"] += 1

    queue.subscribe(watch)

    def control() -> None:
        lat = window["lat"]
        mean = sum(lat) / len(lat) if lat else None
        if mean is not None:
            b = baseline["value"]
            baseline["value"] = mean if b is None else min(b * 1.01, mean)
        base = baseline["value"]
        gradient = None if mean is None or base is None else base / mean
        width = queue.width
        if window["throttles"]:
            width, reason = max(1, int(width * 0.7)), "drop"
        elif gradient is not None and gradient < 0.6:
            width, reason = max(1, width - 2), "shrink"
        elif window["peak"] < width:
            reason = "app-limited"
        else:
            width, reason = width + 2, "grow"
        queue.announce(
            ControlDecision(
                controller="aimd",
                key=None,
                width=width,
                rate=queue.rate,
                in_flight=window["peak"],
                samples=len(lat),
                latency=mean,
                baseline=base,
                gradient=gradient,
                drops=window["drops"],
                throttles=window["throttles"],
                reason=reason,
                time=clock.seconds(),
            )
        )
        queue.setWidth(width)
        window.update(lat=[], drops=0, throttles=0, peak=stats.underway)

    loop = LoopingCall(control)
    loop.clock = clock
    loop.start(0.5, now=False)
    for i in range(int(seconds * 220)):
        d = queue.put(i, key=f"host-{i % 5}")
        d.addErrback(lambda f: None)
    step = 0.005
    t = 0.0
    while t < seconds:
        t += step
        if abs(t - 30.0) < step / 2:
            queue.set_rate(150.0, burst=10)
        if abs(t - 45.0) < step / 2:
            queue.set_rate(None)
        clock.advance(step)
    loop.stop()
    return timeline, stats


# ----------------------------------------------------------------------
# The HTML file

SCRIPT_RE = re.compile(
    r'<script type="application/json" id="fetchq-timeline">(.*?)</script>', re.S
)


def test_report_is_one_file_with_no_external_requests(tmp_path: Path) -> None:
    """The report is a single file that loads nothing: no src= or href= to
    anything, no <link>, no @import or url() in its styles; uPlot and the
    chart code are inlined."""
    timeline, stats = simulate_run(20.0)
    path = write_report(tmp_path / "report.html", timeline, stats.summary())
    assert sorted(os.listdir(tmp_path)) == ["report.html"]
    text = path.read_text("utf-8")
    assert re.findall(r"""\b(?:src|href)\s*=""", text, re.I) == []
    assert "<link" not in text.lower()
    assert "@import" not in text
    assert re.search(r"url\(", text) is None
    assert re.search(r"""["'(]\s*(?:https?:)?//""", _without_comments(text)) is None
    assert "var uPlot=function()" in text  # inlined, not fetched
    assert "FetchqCharts" in text
    assert text.count("<script") == text.count("</script>") == 5


def _without_comments(text: str) -> str:
    """The page with the vendored code's licence banner (``/*! ... */``)
    taken out; it names uPlot's home page and loads nothing."""
    return re.sub(r"/\*!.*?\*/", "", text, flags=re.S)


def test_report_embeds_the_timeline(tmp_path: Path) -> None:
    """The JSON in the page loads back to exactly ``timeline.to_json()``."""
    timeline, _ = simulate_run(10.0)
    text = render_report(timeline)
    embedded = json.loads(SCRIPT_RE.findall(text)[0])
    assert embedded == timeline.to_json()
    assert embedded["decisions"], "the simulated controller decided things"


def test_report_escapes_script_endings_in_data(tmp_path: Path) -> None:
    """Data holding ``</script>`` (a lane key, a reason, a summary value, a
    title) cannot end a script element or inject markup, and loads back
    unchanged."""
    queue, timeline, clock = make(width=2)
    nasty = "</script><script>alert(1)</script><!--"
    queue.announce(decision(0.1, 2, key=nasty, reason=nasty))
    queue.put((0.2, "ok"))
    advance_to(clock, 1.0)
    text = render_report(
        timeline,
        {"Odd": [(nasty, nasty)], "Text": f"label: {nasty}"},
        title=nasty,
        meta={"recipe": nasty},
    )
    assert "alert(1)</script>" not in text
    assert "<script>alert" not in text
    assert text.count("</script>") == 5  # the page's own five
    embedded = json.loads(SCRIPT_RE.findall(text)[0])
    assert embedded["decisions"][0]["key"] == nasty
    assert embedded["decisions"][0]["reason"] == nasty
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in text  # in the tables


def test_summary_tables(tmp_path: Path) -> None:
    """Sections become tables: rows as given, and text such as
    RunStats.summary() split into ``label: value`` rows; meta facts show
    under the title."""
    timeline, stats = simulate_run(10.0)
    text = render_report(
        timeline,
        {
            "Run": stats.summary(),
            "Settings": [("width", 4), ("rate", "unlimited")],
        },
        title="demo run",
        meta={"recipe": "recipes/demo.yaml", "version": "0.1.0"},
    )
    assert "<title>demo run</title>" in text
    assert "<dt>recipe</dt><dd>recipes/demo.yaml</dd>" in text
    assert "<h3>Run</h3>" in text
    assert "<tr><th>outcomes</th><td>" in text
    assert "<tr><th>latency</th><td>p50 " in text
    assert '<td colspan="2" class="line">finished ' in text
    assert "<tr><th>width</th><td>4</td></tr>" in text
    plain = render_report(timeline, stats.summary())
    # One text block: one card under the one "Summary" heading, not two.
    assert plain.count(">Summary<") == 1
    assert "<h2>Summary</h2>" in plain
    assert "<tr><th>outcomes</th><td>" in plain


def test_decision_table_is_capped() -> None:
    """The decisions table lists the last decisions that changed the width or
    rate, newest first, at most MAX_DECISION_ROWS of them."""
    clock = Clock()
    timeline = Timeline(clock, 1.0, width=1)
    for i in range(600):
        timeline(decision(i * 0.1, 1 + i % 2))  # each one changes the width
    timeline(decision(60.0, 1))  # the last one changes too
    timeline(decision(60.1, 1, reason="same"))  # changes nothing
    text = render_report(timeline)
    table = text.split("<h2>Controller decisions</h2>")[1]
    rows = table.split("<tbody>")[1].split("</tbody>")[0]
    assert rows.count("<tr>") == MAX_DECISION_ROWS
    assert "same" not in rows
    assert rows.startswith(
        "<tr><td>60.0s</td><td>(queue)</td><td>grow</td><td>1</td><td>\u2013</td>"
        "<td>1</td><td>10</td><td>120 ms</td><td>100 ms</td><td>0.833</td>"
        "<td>0</td><td>0</td></tr>"
    )  # the 60 s decision, the last, first
    times = [float(t) for t in re.findall(r"<tr><td>([\d.]+)s</td>", rows)]
    assert times == sorted(times, reverse=True)
    assert times[-1] == 40.1  # 200 back: decisions 401 to 599, then the 60 s one


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed write leaves the old report whole and no temporary file."""
    path = tmp_path / "report.html"
    path.write_text("old report")
    clock = Clock()
    timeline = Timeline(clock)

    def broken(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        write_report(path, timeline)
    assert path.read_text() == "old report"
    assert os.listdir(tmp_path) == ["report.html"]
    monkeypatch.undo()
    write_report(path, timeline)
    assert path.read_text().startswith("<!DOCTYPE html>")
    assert os.listdir(tmp_path) == ["report.html"]


# ----------------------------------------------------------------------
# Drawing in headless Chromium


def _render_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "render_report", ROOT / "scripts" / "render_report.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _chromium() -> tuple[ModuleType, str]:
    render = _render_module()
    chromium = render.find_chromium()
    if chromium is None:
        pytest.skip(
            "chromium is not installed (apt-get install chromium); "
            "the report's drawing in a browser is not checked"
        )
    return render, chromium


def test_report_draws_in_chromium(tmp_path: Path) -> None:
    """Headless Chromium opens the report from a file, the five charts draw
    (the page marks data-rendered="ok") and no error is recorded."""
    render, chromium = _chromium()
    timeline, stats = simulate_run(60.0)
    path = write_report(
        tmp_path / "report.html",
        timeline,
        {"Run": stats.summary()},
        meta={"recipe": "simulated", "elapsed": "60s"},
    )
    dom = render.dump_dom(chromium, path)
    state, errors = render.rendered_state(dom)
    assert (state, errors) == ("ok", "")
    assert dom.count('class="uplot') == 5
    assert dom.count("<canvas") == 5
    assert "Controller decisions (" in dom  # the markers' legend


def test_broken_timeline_is_reported_in_chromium(tmp_path: Path) -> None:
    """A timeline the chart code cannot draw marks the page
    data-rendered="error" and shows the error, so the check above can fail."""
    render, chromium = _chromium()
    path = write_report(tmp_path / "report.html", {"t": [0.0, 1.0], "interval": 1})
    state, errors = render.rendered_state(render.dump_dom(chromium, path))
    assert state == "error"
    assert "error: " in errors


# ----------------------------------------------------------------------
# The report of a whole run: tiles, breakdowns, lanes, history


FIG_RE = re.compile(r'<div class="fig"><b>([^<]*)</b><span>([^<]*)</span></div>')


def whole_run(seconds: float = 20.0) -> dict[str, Any]:
    """A report's data from two simulated segments (a run and its resume),
    two bad input rows in the first."""
    first_tl, first = simulate_run(seconds, seed=3)
    for n in (1, 2):
        first.bad_input(
            f"#{n}",
            {
                "url": f"bad {n}",
                "error": {"name": "BadInput", "message": f"in.txt:{n}: no scheme"},
            },
        )
    second_tl, second = simulate_run(seconds / 2, seed=4)
    segments = [
        {"sid": "a", "started": 1_000.0, "ended": "interrupted",
         "timeline": first_tl.to_json(), "stats": first.to_json()},
        {"sid": "b", "started": 5_000.0, "ended": "finished",
         "timeline": second_tl.to_json(), "stats": second.to_json()},
    ]  # fmt: skip
    return report_data(segments)


def test_tiles_agree_with_the_summary() -> None:
    """The failed tile counts bad input rows as the summary does; with the
    state's counts the tiles are its rows (ok, failed with bad input, left
    to do), and the figures say the same."""
    data = whole_run()
    stats = data["stats"]
    failed = stats["outcomes"]["failed"]
    assert stats["bad_input"] == 2
    text = render_report(data["timeline"], stats=stats, history=data["history"])
    tiles = {label: value for value, label in FIG_RE.findall(text)}
    assert tiles["failed (2 bad input)"] == f"{failed:,}"
    assert tiles["ok"] == f"{stats['outcomes']['ok']:,}"
    assert f"<tr><th>jobs failed</th><td>{failed:,} (2 of them bad input)" in text
    counts = Counts(pending=3, claimed=1, done={"ok": 100, "failed": 5, "invalid": 2})
    text = render_report(data["timeline"], stats=stats, counts=counts)
    tiles = {label: value for value, label in FIG_RE.findall(text)}
    assert (tiles["rows"], tiles["ok"], tiles["left to do"]) == ("111", "100", "4")
    assert tiles["failed (2 bad input)"] == "7"


def test_breakdowns_lanes_attempts_and_history() -> None:
    """Below the charts: one "Summary" heading; status codes and errors by
    name with examples; a row per lane with requests, ok, failed, retried,
    throttled, p50/p95 and bytes; attempts per job; one row per segment of
    the run's history with its start time; the controller's decisions
    folded at the end.  The start time is under the title."""
    data = whole_run()
    stats = data["stats"]
    text = render_report(
        data["timeline"],
        stats=stats,
        history=data["history"],
        meta={"started": format_wall(1_000.0)},
        lane_name="host",
    )
    assert text.count(">Summary<") == 1
    assert f"<dt>started</dt><dd>{format_wall(1_000.0)}</dd>" in text
    errors = text.split("<h2>Errors</h2>")[1].split("</table>")[0]
    assert "<td>FatalError</td>" in errors
    assert "<td>BadInput</td><td>2</td><td>0</td><td>0</td>" in errors
    assert "<b>row #1</b> <code>bad 1</code>" in errors
    assert "in.txt:1: no scheme" in errors
    lanes = text.split("<h2>Per host</h2>")[1].split("</table>")[0]
    rows = re.findall(r"<tr><td>(host-\d)</td>((?:<td>[^<]*</td>)+)</tr>", lanes)
    assert sorted(r[0] for r in rows) == [f"host-{i}" for i in range(5)]
    requests = sum(
        int(re.findall(r"<td>([^<]*)</td>", cells)[0].replace(",", ""))
        for _, cells in rows
    )
    # Every attempt that ended, to one host or another (the simulation stops
    # with some underway: launched, not ended).
    assert requests == sum(stats["latency"].values())
    assert requests <= data["timeline"]["totals"]["launched"]
    assert "<th>p50</th><th>p95</th><th>bytes</th>" in lanes
    attempts = text.split("<h2>Attempts per job</h2>")[1].split("</table>")[0]
    assert "<tr><td>0</td><td>2</td>" in attempts  # the bad input rows
    history = text.split("<h2>Run history</h2>")[1].split("</table>")[0]
    assert history.count("<tr><td>") == 2
    assert format_wall(1_000.0) in history and format_wall(5_000.0) in history
    assert "<td>interrupted</td>" in history and "<td>finished</td>" in history
    details = text.split('<details class="decisions">')[1]
    assert details.startswith("<summary><h2>Controller decisions (")
    assert text.index("<h2>Run history</h2>") < text.index(
        '<details class="decisions">'
    )


def test_whole_report_draws_in_chromium(tmp_path: Path) -> None:
    """A whole run's report draws its five charts in Chromium with no
    error: ok/s on one y axis (failures have a chart and an axis of their
    own), each resume marked on every chart, and legends that show each
    series' average or last value when no point is hovered, never blanks."""
    render, chromium = _chromium()
    data = whole_run(30.0)
    path = write_report(
        tmp_path / "report.html",
        data["timeline"],
        stats=data["stats"],
        history=data["history"],
    )
    dom = render.dump_dom(chromium, path)
    assert render.rendered_state(dom) == ("ok", "")
    assert dom.count('class="uplot') == 5
    assert dom.count('data-segment-marks="1"') == 5
    ids = ("width", "throughput", "problems", "bytes", "latency")
    parts = {
        name: dom.split(f'id="chart-{name}"')[1].split('id="chart-')[0] for name in ids
    }
    assert parts["throughput"].count('class="u-axis"') == 2  # x and one y
    assert parts["problems"].count('class="u-axis"') == 2
    assert "failed/s" in parts["problems"] and "failed/s" not in parts["throughput"]
    values = re.findall(r'<td class="u-value">([^<]*)</td>', dom)
    assert len(values) >= 12
    assert all(v.strip() and v.strip() not in ("--", "\u2013") for v in values), values
    assert any(v.startswith("avg ") for v in values)
