"""``fetchq demo``: what it shows happens on any machine (the site's rate
limit is met before its capacity, so 429s come and the controller backs
off), and a demo in a ``--dir`` resumes after an interrupt, its report
covering the whole run."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from fetchq.demo import DemoSite
from fetchq.demo.run import BAD_LINES, DEMO_SITE, demo_recipe_text
from fetchq.fetch import fetch_retry_policy
from fetchq.http.errors import HTTPStatusError, HTTPThrottled, RetryableStatus
from fetchq.progress import RunStats
from fetchq.queue import ResizableDispatchQueue
from fetchq.recipe import FetchRecipe, load_recipe
from fetchq.run import make_controller

ROOT = Path(__file__).resolve().parent.parent
SCRIPT_RE = re.compile(
    r'<script type="application/json" id="fetchq-timeline">(.*?)</script>', re.S
)
FIG_RE = re.compile(r'<div class="fig"><b>([^<]*)</b><span>([^<]*)</span></div>')


def demo_recipe(folder: Path) -> FetchRecipe:
    (folder / "data").mkdir()
    (folder / "data" / "demo-urls.txt").write_text("http://127.0.0.1/\n")
    (folder / "demo.yaml").write_text(demo_recipe_text(), encoding="utf-8")
    recipe = load_recipe(folder / "demo.yaml")
    assert isinstance(recipe, FetchRecipe)
    return recipe


class DemoThrottlingTests(SynchronousTestCase):
    """The demo site and the demo recipe's queue, retries and controller in
    simulated time (the site's own code answering each request), so what
    holds does not depend on how fast or busy the machine is."""

    def test_the_rate_limit_comes_first(self) -> None:
        """Crawling the demo's pages from the recipe's starting width, the
        controller meets the site's rate limit long before its capacity:
        429s come, each a drop for which the controller cuts the width, the
        run keeps close to the site's rate (never above it) with widths well
        under the capacity, and the summary says so."""
        folder = Path(tempfile.mkdtemp(prefix="fetchq-demo-sim-"))
        self.addCleanup(shutil.rmtree, folder, True)
        recipe = demo_recipe(folder)
        clock = Clock()
        behaviour = attrs.evolve(DEMO_SITE, slow_every=10**9)
        site = DemoSite(clock, behaviour)

        def respond(request: DummyRequest) -> int:
            code = int(request.responseCode or 200)
            if code == 429:
                [after] = request.responseHeaders.getRawHeaders(b"retry-after")
                raise HTTPThrottled(429, float(after))
            if code == 500:
                raise RetryableStatus(500)
            if code >= 400:
                raise HTTPStatusError(code)
            return code

        def fetch(number: int) -> Any:
            request = DummyRequest([b"page", str(number).encode()])
            request.path = f"/page/{number}".encode()
            if site.render(request) is not NOT_DONE_YET:
                return respond(request)
            done: Deferred[Any] = request.notifyFinish()
            return done.addCallback(lambda _: respond(request))

        retry = recipe.retry
        queue = ResizableDispatchQueue(
            fetch,
            **recipe.queue.queue_kwargs(),
            retry=fetch_retry_policy(
                retry.max_attempts, retry.base_delay, retry.max_delay
            ),
            clock=clock,
        )
        stats = RunStats(clock)
        queue.subscribe(stats)
        widths: list[int] = []
        queue.subscribe(
            lambda e: widths.append(e.width) if hasattr(e, "controller") else None
        )
        assert recipe.queue.adaptive is not None
        controller = make_controller(recipe.queue.adaptive)
        controller.attach(queue)
        pages = behaviour.pages
        for i in range(pages):
            queue.put(i, key="127.0.0.1").addErrback(lambda f: None)
        while clock.calls and stats.done < pages and clock.seconds() < 300:
            clock.advance(max(0.0, clock.calls[0].getTime() - clock.seconds()))
        controller.detach()
        elapsed = clock.seconds()
        self.assertEqual(stats.done, pages)
        missing = len([i for i in range(1, pages) if i % behaviour.missing_every == 0])
        self.assertEqual(stats.outcomes["ok"], pages - missing)
        self.assertGreater(site.served[429], 0)
        self.assertEqual(stats.statuses[429], site.served[429])
        control = stats.control
        assert control is not None
        self.assertGreater(control.cuts, 0)
        self.assertGreater(control.throttles, 0)
        rate = behaviour.client_rate
        assert rate is not None
        bound = (pages - behaviour.client_burst) / rate  # the site allows no less
        self.assertGreaterEqual(elapsed, bound)
        self.assertLess(elapsed, 1.5 * bound)
        self.assertLess(max(widths), behaviour.capacity)
        summary = stats.summary()
        self.assertIn(f"throttled {stats.outcomes['throttled']}", summary)
        self.assertRegex(summary, r"\d+ drops \(\d+ throttled\), width cut for drops")


def _demo(folder: Path, *extra: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "fetchq", "demo", "--dir", str(folder), *extra],
        cwd=folder.parent,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )


def _records(folder: Path) -> list[dict[str, Any]]:
    path = folder / "out" / "demo.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):  # a line being written
            out.append(json.loads(line))
    return out


class DemoResumeTests(SynchronousTestCase):
    def test_interrupted_demo_resumes(self) -> None:
        """``fetchq demo --dir D`` interrupted (SIGINT once 40 records are
        out) says how to resume on one line; run again, the site comes back
        on the same port, the URL file is left as it was, and every page is
        fetched (none refused): one record per row, 2 of them the bad lines
        the demo adds on purpose, which its first line explains.  Its report
        covers both runs, and running the finished demo again keeps it so."""
        folder = Path(tempfile.mkdtemp(prefix="fetchq-demo-resume-")) / "run"
        self.addCleanup(shutil.rmtree, folder.parent, True)
        pages = 300
        first = _demo(folder, "--pages", str(pages))
        deadline = time.monotonic() + 120
        while len(_records(folder)) < 40 and first.poll() is None:
            if time.monotonic() > deadline:
                first.kill()
                self.fail("the demo wrote no records in 120 s")
            time.sleep(0.02)
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
        self.assertEqual(first.returncode, 130, err)
        lines = err.splitlines()
        self.assertIn(
            f"crawling {pages} of its URLs, and 2 bad lines on purpose "
            f"(recorded as bad input): {pages + 2} rows",
            lines[0],
        )
        [resume] = [line for line in lines if "resume with:" in line]
        self.assertTrue(resume.endswith(f"resume with: fetchq demo --dir {folder}"))
        urls = (folder / "data" / "demo-urls.txt").read_bytes()
        done_before = len(_records(folder))
        self.assertLess(done_before, pages + 2)

        second = _demo(folder)
        _, err = second.communicate(timeout=120)
        self.assertEqual(second.returncode, 0, err)
        self.assertIn("again; resuming the demo in", err)
        self.assertEqual((folder / "data" / "demo-urls.txt").read_bytes(), urls)
        records = _records(folder)
        self.assertEqual(len(records), pages + 2)
        self.assertEqual(len({r["id"] for r in records}), pages + 2)
        names = {r.get("error", {}).get("name") for r in records} - {None}
        self.assertLessEqual(names, {"HTTPStatusError", "BadInput"}, names)
        bad = [r for r in records if r.get("error", {}).get("name") == "BadInput"]
        self.assertEqual(sorted(r["url"] for r in bad), sorted(BAD_LINES))
        report = (folder / "report.html").read_text(encoding="utf-8")
        timeline = json.loads(SCRIPT_RE.findall(report)[0])
        tiles = {label: value for value, label in FIG_RE.findall(report)}
        self.assertEqual(len(timeline["segments"]), 2)
        self.assertEqual(tiles["rows"], str(pages + 2))

        third = _demo(folder)
        _, err = third.communicate(timeout=120)
        self.assertEqual(third.returncode, 0, err)
        again = (folder / "report.html").read_text(encoding="utf-8")
        self.assertEqual(len(json.loads(SCRIPT_RE.findall(again)[0])["segments"]), 2)
        self.assertEqual(
            {label: value for value, label in FIG_RE.findall(again)}, tiles
        )
