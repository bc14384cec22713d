"""Following a run end to end, over real loopback sockets: the progress line's
total (the input's rows, counted first) for a run and a resumed one, and the
report of the whole run across resumes (kept in the state, SQLite or
Redis), never an empty one."""

from __future__ import annotations

import io
import json
import re
import shutil
import signal
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from fetchq.demo import DemoSite, SiteBehaviour
from fetchq.recipe import load_recipe
from fetchq.report.history import META_INDEX
from fetchq.run import FetchRun
from tests import redis_server
from tests.test_run import RECIPE, when_served

SCRIPT_RE = re.compile(
    r'<script type="application/json" id="fetchq-timeline">(.*?)</script>', re.S
)
FIG_RE = re.compile(r'<div class="fig"><b>([^<]*)</b><span>([^<]*)</span></div>')


class FollowTestCase(TestCase):
    def setUp(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fetchq-follow-"))
        self.addCleanup(shutil.rmtree, self.folder, True)

    def start_site(self, pages: int, **kw: Any) -> str:
        self.site = DemoSite(reactor, SiteBehaviour(pages=pages, **kw))
        port = self.site.listen()
        self.addCleanup(port.stopListening)
        return f"http://127.0.0.1:{port.getHost().port}"

    def write(self, base: str, pages: int, width: int = 4, extra: str = "") -> Path:
        lines = [f"{base}/page/{i}" for i in range(pages)]
        lines += ["", "# a comment", "not a url", "ftp://127.0.0.1/nope"]
        (self.folder / "urls.txt").write_text("\n".join(lines) + "\n")
        recipe = self.folder / "recipe.yaml"
        recipe.write_text(RECIPE.format(width=width) + extra)
        return recipe

    def report(self, path: Path) -> tuple[str, dict[str, Any], dict[str, str]]:
        text = path.read_text(encoding="utf-8")
        timeline = json.loads(SCRIPT_RE.findall(text)[0])
        tiles = {label: value for value, label in FIG_RE.findall(text)}
        return text, timeline, tiles


class ProgressTotalTests(FollowTestCase):
    @defer.inlineCallbacks
    def test_total_for_a_run_and_a_resumed_run(self) -> Generator[Any, Any, None]:
        """The progress line says done/total (%) from the start, the total
        being the input's rows (blank lines and comments are not rows, bad
        input is); resumed, the total is the same and done starts at the
        rows the state already finished."""
        base = self.start_site(300, latency=0.02, error_every=10**6)
        recipe = load_recipe(self.write(base, 300))
        out = io.StringIO()
        first = FetchRun(recipe, reactor, stream=out, tick=0.05, progress_every=0.05)
        when_served(self.site, 60, first.interrupt, signal.SIGINT)
        code = yield first.run()
        self.assertEqual(code, 130)
        self.assertEqual(first.stats.total, 302)
        lines = [
            line for line in out.getvalue().splitlines() if line.startswith("done")
        ]
        self.assertTrue(lines, out.getvalue())
        self.assertRegex(lines[0], r"^done [\d,]+/302 \(\d+%\), [\d.]+/s")
        before = first.stats.store_counts.finished
        self.assertGreater(before, 0)

        out = io.StringIO()
        second = FetchRun(recipe, reactor, stream=out, tick=0.05, progress_every=0.05)
        code = yield second.run()
        self.assertEqual(code, 0)
        self.assertEqual(second.stats.done_before, before)
        self.assertEqual(second.stats.total, 302)
        lines = [
            line for line in out.getvalue().splitlines() if line.startswith("done")
        ]
        self.assertTrue(lines, out.getvalue())
        done = int(lines[0].split()[1].split("/")[0].replace(",", ""))
        self.assertGreaterEqual(done, before)
        self.assertIn(
            f"whole run: 302 rows done ({before} before this run)", out.getvalue()
        )


class ReportAcrossResumesTests(FollowTestCase):
    @defer.inlineCallbacks
    def test_report_covers_every_run(self) -> Generator[Any, Any, None]:
        """A run interrupted without --report, resumed with one: the report
        covers both (two rows of history, one timeline laid end to end, the
        tiles the state's rows); running the finished recipe again writes
        the same whole-run report, not an empty one."""
        base = self.start_site(
            300, latency=0.02, error_every=10**6, missing_every=10**6
        )
        recipe = load_recipe(self.write(base, 300))
        quiet = io.StringIO()
        first = FetchRun(recipe, reactor, stream=quiet, tick=0.05)
        when_served(self.site, 60, first.interrupt, signal.SIGINT)
        self.assertEqual((yield first.run()), 130)
        attempts_before = first.timeline.to_json()["totals"]["launched"]

        path = self.folder / "report.html"
        second = FetchRun(recipe, reactor, stream=quiet, report=path)
        self.assertEqual((yield second.run()), 0)
        text, timeline, tiles = self.report(path)
        attempts_after = second.timeline.to_json()["totals"]["launched"]
        self.assertEqual(len(timeline["segments"]), 2)
        self.assertEqual(
            timeline["totals"]["launched"], attempts_before + attempts_after
        )
        self.assertEqual(
            (tiles["rows"], tiles["ok"], tiles["failed (2 bad input)"]),
            ("302", "300", "2"),
        )
        history = text.split("<h2>Run history</h2>")[1].split("</table>")[0]
        self.assertEqual(history.count("<tr><td>"), 2)
        self.assertIn("<td>interrupted</td>", history)
        self.assertIn("<td>finished</td>", history)
        self.assertIn("<dt>started</dt>", text)

        third = FetchRun(recipe, reactor, stream=quiet, report=path)
        self.assertEqual((yield third.run()), 0)
        _, timeline_again, tiles_again = self.report(path)
        self.assertEqual(tiles_again, tiles)
        self.assertEqual(timeline_again["totals"], timeline["totals"])
        self.assertIn("nothing done in this run", quiet.getvalue())


class SharedRunTests(FollowTestCase):
    @defer.inlineCallbacks
    def test_counts_and_history_from_redis(self) -> Generator[Any, Any, None]:
        """On Redis the progress counts come from the store (every worker's
        rows), the total is the input's rows, and the run's history is kept
        in Redis: its report has the run's segment."""
        from fetchq.shared_run import SharedRun

        server = redis_server.shared()
        name = redis_server.run_name()
        base = self.start_site(120, latency=0.01, error_every=10**6)
        extra = f"state:\n  url: {server.url}\n  run: {name}\n"
        recipe = load_recipe(self.write(base, 120, extra=extra))
        path = self.folder / "report.html"
        run = SharedRun(recipe, reactor, io.StringIO(), tick=0.05, report=path)
        self.assertEqual((yield run.run()), 0)
        counts = run.stats.store_counts
        self.assertEqual(counts.finished, 122)
        self.assertEqual(run.stats.total, 122)
        self.assertEqual(run.stats.progress(), (122, 122))
        _, timeline, tiles = self.report(path)
        self.assertEqual(len(timeline["segments"]), 1)
        self.assertEqual(tiles["rows"], "122")
        from fetchq.store.redis import RedisStore

        store = yield RedisStore.connect(server.url, name, reactor)
        self.addCleanup(store.close)
        index = yield store.meta_get(META_INDEX)
        self.assertEqual(len(index), 1)
