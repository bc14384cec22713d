"""The adaptive controller in a real run: ``fetchq run`` in one process
against the demo site in another, over loopback.

The site's capacity is known (24 requests in flight at 50 ms; past that each
answer slows by 2 ms per extra request), so the width the controller settles
on can be checked against it; a second site has a request-rate quota instead,
which width alone cannot obey.  Bounds are loose on purpose: these are real
sockets on a shared machine, and the exact figures live in the simulator's
tests (tests/test_control.py).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.trial.unittest import TestCase

from fetchq.demo.site import SiteProcess

ROOT = Path(__file__).resolve().parent.parent

RECIPE = """\
kind: fetch
input:
  path: urls.txt
output:
  path: out.jsonl
queue:
  width: 2
  adaptive:
    algorithm: default
    max_width: 100
  per_host:
    width: null
retry:
  max_attempts: 10
  base_delay: 50ms
  max_delay: 2s
fetch:
  allow_private: true
"""


def run_recipe(folder: Path, site: SiteProcess, pages: int) -> dict[str, Any]:
    """Write the URLs and the recipe, ``fetchq run --report``; the report's
    embedded timeline."""
    with open(folder / "urls.txt", "w", encoding="utf-8") as f:
        for i in range(pages):
            f.write(f"{site.url}/page/{i}\n")
    (folder / "recipe.yaml").write_text(RECIPE, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "fetchq", "run", "recipe.yaml", "--report", "r.html"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "controller: default" in done.stderr
    html = (folder / "r.html").read_text(encoding="utf-8")
    found = re.search(
        r'<script type="application/json" id="fetchq-timeline">(.*?)</script>',
        html,
        re.S,
    )
    assert found is not None
    timeline: dict[str, Any] = json.loads(found.group(1))
    records = [
        json.loads(line)
        for line in (folder / "out.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert len(records) == pages
    assert {r["outcome"] for r in records} == {"ok"}
    return timeline


class AdaptiveRunTests(TestCase):
    def setUp(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fetchq-adaptive-"))

    def test_settles_near_the_sites_capacity(self) -> None:
        pages = 2500
        site = SiteProcess(
            f"--pages={pages}",
            "--latency=0.05",
            "--capacity=24",
            "--overload-latency=0.002",
            "--client-rate=100000",
            "--no-faults",
        )
        try:
            timeline = run_recipe(self.folder, site, pages)
        finally:
            served = site.stop()
        self.assertEqual(served, {200: pages})
        queue_wide = [d for d in timeline["decisions"] if d["key"] is None]
        widths = [d["width"] for d in queue_wide]
        # It climbed from 2 to around the capacity ...
        self.assertGreaterEqual(max(widths), 16)
        # ... and held there: the second half stays within C/2 .. 2C.
        end = timeline["end"]
        late = [d["width"] for d in queue_wide if d["t"] >= end / 2]
        self.assertTrue(late)
        self.assertGreaterEqual(statistics.median(late), 12)
        self.assertLessEqual(max(late), 48)
        # No overload signal came back from this site: no drops at all.
        self.assertEqual(sum(d["drops"] for d in queue_wide), 0)

    def test_keeps_to_a_request_rate_quota(self) -> None:
        """100 requests/s per client, answered 429 + Retry-After past it:
        each 429 holds the host until the Retry-After and counts as a drop,
        so few requests are refused and the run takes about as long as the
        quota allows, no longer."""
        pages = 800
        site = SiteProcess(
            f"--pages={pages}",
            "--latency=0.01",
            "--capacity=1000",
            "--client-rate=100",
            "--no-faults",
        )
        try:
            timeline = run_recipe(self.folder, site, pages)
        finally:
            served = site.stop()
        self.assertEqual(served.get(200), pages)
        refused = served.get(429, 0)
        self.assertGreater(refused, 0)  # it did meet the quota
        self.assertLessEqual(refused, 0.15 * pages, served)
        # The quota's lower bound is (800 - 100 burst) / 100 = 7 s.
        self.assertLessEqual(timeline["end"], 1.5 * pages / 100)
        drops = sum(d["throttles"] for d in timeline["decisions"])
        self.assertGreater(drops, 0)
