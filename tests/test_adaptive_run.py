"""The adaptive controller in a real run: ``fetchq run`` in one process
against the demo site in another, over loopback.

Only what holds however loaded the machine is checked here: every page is
fetched once and recorded, and the controller runs and reports decisions
within its bounds.  How wide it gets, how long a run takes and how much of a
request-rate quota it meets depend on the CPU the run gets: they are
measured by ``python -m tests.bench.bench_adaptive_run`` (part of ``make
bench``), and asserted exactly on simulated servers on ``task.Clock``
(``tests/test_control.py``: settling near capacity, quotas with and
without Retry-After).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from twisted.trial.unittest import TestCase

from fetchq.demo.site import SiteProcess
from tests.adaptive_site import CAPACITY, run_recipe


class AdaptiveRunTests(TestCase):
    def setUp(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fetchq-adaptive-"))
        self.addCleanup(shutil.rmtree, self.folder, True)

    def test_adapts_within_its_bounds(self) -> None:
        """Against a site of known capacity that never refuses: every page is
        fetched once, at its first attempt; the controller announces itself,
        makes decisions, each width between 1 and its max_width of 100, and
        counts no drop (nothing came back that means overload)."""
        pages = 200
        site = SiteProcess(f"--pages={pages}", *CAPACITY)
        try:
            timeline, records = run_recipe(self.folder, site, pages)
        finally:
            served = site.stop()
        self.assertEqual(served, {200: pages})
        self.assertEqual({r["attempts"] for r in records}, {1})
        queue_wide = [d for d in timeline["decisions"] if d["key"] is None]
        self.assertTrue(queue_wide)
        for decision in queue_wide:
            self.assertTrue(1 <= decision["width"] <= 100, decision)
        self.assertEqual(sum(d["drops"] for d in queue_wide), 0)
