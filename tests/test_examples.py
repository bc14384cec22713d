"""The examples run to completion on the real reactor and say what they did."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise AssertionError(f"{name} exited {proc.returncode}:\n{proc.stderr}")
    return proc.stdout


class ExampleTests(SynchronousTestCase):
    def test_queue_demo(self) -> None:
        """`make demo`'s script resizes, pauses, stops, saves and re-queues,
        and accounts for every one of its 300 jobs."""
        out = run_example("queue_demo.py")
        for expected in (
            "queued 300 messages at width 5",
            "width 5 -> 20",
            "width 20 -> 7",
            "pausing",
            "width 7 -> 8",
            "saved ",
            "re-queues the saved jobs",
        ):
            self.assertIn(expected, out)
        self.assertRegex(out, r"done: \d+ sent of 300 queued \(1 cancelled")

    def test_lanes_demo(self) -> None:
        """The lanes example finishes every request, is throttled exactly
        three times by busy.example, and ends with no lanes left."""
        out = run_example("lanes_demo.py")
        self.assertIn("fast.example  ok 12  throttled 0", out)
        self.assertIn("busy.example  ok 12  throttled 3", out)
        self.assertIn("lanes 0.2 s later: 0", out)

    def test_adaptive_demo(self) -> None:
        """The adaptive example's controller widens past 20 while the server
        takes 30 at once, is down to near 10 from 3 s after the capacity falls
        to 10 until it rises, is past 20 again 5 s after that, and detaches
        with every job done."""
        out = run_example("adaptive_demo.py")
        rows = [
            (int(m["time"]), int(m["capacity"]), int(m["width"]))
            for m in re.finditer(
                r"^ *(?P<time>\d+) s +(?P<capacity>\d+) +(?P<width>\d+) ",
                out,
                re.MULTILINE,
            )
        ]
        self.assertGreaterEqual(len(rows), 15)
        first = [w for t, c, w in rows if t <= 6 and c == 30]
        low = [w for t, c, w in rows if 9 <= t <= 11 and c == 10]
        later = [w for t, c, w in rows if t >= 17 and c == 30]
        self.assertGreater(max(first), 20)
        self.assertTrue(low and all(8 <= w <= 13 for w in low), low)
        self.assertTrue(later and all(w > 20 for w in later), later)
        self.assertRegex(out, r"all 15,000 jobs done at [\d.]+ s; detached")
