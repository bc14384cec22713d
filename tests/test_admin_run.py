"""``fetchq ctl`` against a real ``fetchq run --admin`` in its own process:
every command reaches the running run, no answer and no log line carries
the recipe's secret or the whole token, and ``ctl stop`` stops it cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.admin_target import SECRET, Target

ROOT = Path(__file__).resolve().parent.parent


def ctl(*argv: str) -> subprocess.CompletedProcess[str]:
    """``python -m fetchq ctl ARGV...``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("FETCHQ_ADMIN_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "fetchq", "ctl", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )


class CtlTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="fetchq-ctl-"))
        in_recipe = self._testMethodName == "test_no_secret_in_any_answer_or_log"
        self.target = Target(self.dir / "run", in_recipe=in_recipe)
        self.addCleanup(self.target.stop)
        self.recipe = str(self.target.recipe)

    def until(self, check: object, timeout: float = 20.0) -> None:
        """Poll the run's status until ``check(status)`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            _, status = self.target.call("GET", "/api/v1/status")
            if check(status):  # type: ignore[operator]
                return
            if time.monotonic() > deadline:
                self.fail(f"never: {status}")
            time.sleep(0.05)

    def test_ctl_steers_the_run_and_stops_it(self) -> None:
        """status, width, rate, pause/resume, hold/release, cancel and stop,
        each through ``fetchq ctl RECIPE ...`` (the token from the admin
        file), each seen in the run's status; stop ends the run with 143."""
        done = ctl(self.recipe, "status")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("run", done.stdout.splitlines()[0])
        self.until(lambda s: s["in_flight"] == 2)

        done = ctl(self.recipe, "width", "6")
        self.assertEqual((done.returncode, done.stderr), (0, ""))
        self.until(lambda s: s["width"] == 6 and s["in_flight"] == 6)

        self.assertEqual(ctl(self.recipe, "rate", "40/s").returncode, 0)
        self.until(lambda s: s["rate"] == 40.0)
        self.assertEqual(ctl(self.recipe, "rate", "none").returncode, 0)
        self.until(lambda s: s["rate"] is None)

        self.assertEqual(ctl(self.recipe, "pause").returncode, 0)
        self.until(lambda s: s["state"] == "paused" and s["in_flight"] == 0)
        self.assertEqual(ctl(self.recipe, "resume").returncode, 0)
        self.until(lambda s: s["state"] == "running" and s["in_flight"] > 0)

        lanes = json.loads(ctl(self.recipe, "lanes", "--json").stdout)["lanes"]
        host = lanes[0]["lane"]
        self.assertEqual(ctl(self.recipe, "hold", host, "60s").returncode, 0)
        self.until(lambda s: [h["lane"] for h in s["holds"]] == [host])
        self.until(lambda s: s["in_flight"] == 0)
        self.assertEqual(ctl(self.recipe, "release", host).returncode, 0)
        self.until(lambda s: not s["holds"] and s["in_flight"] > 0)

        jobs = json.loads(ctl(self.recipe, "jobs", "pending", "--json").stdout)
        victim = jobs["jobs"][-1]["id"]
        done = ctl(self.recipe, "cancel", victim)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.until(lambda s: s["rows"]["done"].get("cancelled") == 1)
        again = ctl(self.recipe, "cancel", victim)
        self.assertEqual(again.returncode, 1)
        self.assertIn("409", again.stderr)

        refused = ctl(self.recipe, "width", "lots")
        self.assertEqual(refused.returncode, 2)
        self.assertEqual(refused.stdout, "")

        done = ctl(self.recipe, "stop")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(self.target.wait(), 143)
        self.assertFalse(self.target.admin_file.exists())

    def test_no_secret_in_any_answer_or_log(self) -> None:
        """The recipe's Authorization header (a secret) is in no API answer,
        not in /metrics, the page or the log; the token is in the log only
        as its first characters.  This run's admin server comes from the
        recipe's ``admin`` section (``metrics_open: true``): /metrics answers
        without the token, the API still refuses without it."""
        self.until(lambda s: s["done"] > 3)
        target = self.target
        from fetchq.admin.ctl import request

        self.assertEqual(request(target.url, "", "GET", "/metrics")[0], 200)
        self.assertEqual(request(target.url, "", "GET", "/api/v1/status")[0], 401)
        answers = []
        for path in (
            "/api/v1/status",
            "/api/v1/lanes",
            "/api/v1/jobs?state=pending",
            "/api/v1/jobs?state=underway",
            "/api/v1/timeline",
            "/metrics",
        ):
            code, answer = target.call("GET", path)
            self.assertEqual(code, 200, path)
            answers.append(
                json.dumps(answer) if not isinstance(answer, str) else answer
            )
        _, link = target.call("POST", "/api/v1/login-link", {})
        self.assertNotIn(target.token, link["url"])
        for text in answers:
            self.assertNotIn("s3cret-header-value", text)
        self.assertIn("fetchq_jobs_total", answers[-1])
        ctl(self.recipe, "stop")
        target.wait()
        log = target.log()
        self.assertNotIn("s3cret-header-value", log)
        self.assertNotIn(target.token, log)
        self.assertIn(target.token[:4], log)
        self.assertIn("run.started", log.replace("run started", "run.started"))
        self.assertNotIn(SECRET, log)
