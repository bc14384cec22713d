"""Tests for the ``fetchq`` command (:mod:`fetchq.cli`)."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

import fetchq.recipe
import fetchq.recipe.loader
from fetchq import __version__, cli

ROOT = Path(__file__).resolve().parent.parent

GOOD = """\
kind: fetch
input:
  path: urls.txt
output:
  path: out.jsonl
queue:
  width: 4
  rate: 600/min
  per_host:
    rate: 1/s
"""


def run(*argv: str) -> tuple[int, str, str]:
    """``main(argv)`` in this process: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = cli.main(list(argv))
    return status, out.getvalue(), err.getvalue()


def run_module(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``python -m fetchq ARGV...`` with this checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return subprocess.run(
        [sys.executable, "-m", "fetchq", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env,
    )


class ValidateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="fetchq-cli-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        (self.dir / "urls.txt").write_text("https://example.com/\n" * 3)
        self.good = self.dir / "good.yaml"
        self.good.write_text(GOOD)
        self.bad = self.dir / "bad.yaml"
        self.bad.write_text(GOOD.replace("width: 4", "width: four"))

    def test_ok(self) -> None:
        """A good recipe prints one ``ok`` line on stdout with its kind, input
        size and pace, nothing on stderr, and exits 0."""
        status, out, err = run("validate", str(self.good))
        self.assertEqual(
            out,
            f"{self.good}: ok (kind fetch, input 63 bytes of lines, output out.jsonl, "
            "width 4, rate 10/s, per host width 8, per host rate 1/s)\n",
        )
        self.assertEqual((status, err), (0, ""))

    def test_problems(self) -> None:
        """A bad recipe prints its located problems on stderr, nothing on
        stdout, and exits 2."""
        status, out, err = run("validate", str(self.bad))
        self.assertEqual(
            err, f"{self.bad}:7:10: queue.width: expected an integer, got 'four'\n"
        )
        self.assertEqual((status, out), (2, ""))

    def test_several_recipes(self) -> None:
        """Every recipe named is checked; one bad recipe makes the exit
        status 2 while the good ones are still reported ok."""
        status, out, err = run("validate", str(self.bad), str(self.good))
        self.assertEqual(status, 2)
        self.assertIn(f"{self.good}: ok (", out)
        self.assertIn(f"{self.bad}:7:10: ", err)

    def test_path_shown_as_given(self) -> None:
        """Problems name the recipe as it was given on the command line."""
        result = run_module("validate", "bad.yaml", cwd=self.dir)
        self.assertEqual(
            result.stderr,
            "bad.yaml:7:10: queue.width: expected an integer, got 'four'\n",
        )
        self.assertEqual(result.returncode, 2)

    def test_missing_recipe(self) -> None:
        """A recipe file that does not exist is one located line, exit 2."""
        missing = self.dir / "nope.yaml"
        status, out, err = run("validate", str(missing))
        self.assertEqual(
            err, f"{missing}:1:1: cannot read the recipe: no such file or directory\n"
        )
        self.assertEqual((status, out), (2, ""))

    def test_unexpected_error_in_loader(self) -> None:
        """A bug while loading one recipe is one line naming the recipe and
        the error, exit 2, no traceback; the other recipes are still checked."""

        def broken(path: Any, **kwargs: Any) -> Any:
            if str(path) == str(self.bad):
                raise RuntimeError("boom\nsecond line")
            return real(path, **kwargs)

        real = fetchq.recipe.check_recipe
        self.patch(fetchq.recipe, "check_recipe", broken)
        status, out, err = run("validate", str(self.bad), str(self.good))
        self.assertEqual(
            err, f"{self.bad}:1:1: internal error: RuntimeError: boom second line\n"
        )
        self.assertIn(f"{self.good}: ok (", out)
        self.assertEqual(status, 2)

    def test_out_of_memory_while_loading(self) -> None:
        """Running out of memory while a recipe loads is one located line
        saying so, for validate and run alike, exit 2, no traceback (it was
        an "internal error: MemoryError" line)."""

        def exhausted(*args: Any, **kwargs: Any) -> Any:
            raise MemoryError

        self.patch(fetchq.recipe.loader, "_walk", exhausted)
        for command in ("validate", "run"):
            status, out, err = run(command, str(self.good))
            self.assertEqual(
                err, f"{self.good}:1:1: out of memory while loading the recipe\n"
            )
            self.assertEqual((status, out), (2, ""))

    def test_unexpected_error_in_command(self) -> None:
        """A bug anywhere in a command is one line on stderr and exit 2."""

        def broken(args: Any) -> int:
            raise KeyError("oops")

        self.patch(cli, "validate", broken)
        status, out, err = run("validate", str(self.good))
        self.assertEqual(err, "fetchq: internal error: KeyError: 'oops'\n")
        self.assertEqual((status, out), (2, ""))

    def test_interrupted(self) -> None:
        """Ctrl-C during a command exits 130 with a one-line note."""

        def interrupted(args: Any) -> int:
            raise KeyboardInterrupt

        self.patch(cli, "validate", interrupted)
        status, _out, err = run("validate", str(self.good))
        self.assertEqual((status, err), (130, "fetchq: interrupted\n"))


class CommandLineTests(SynchronousTestCase):
    def test_no_command(self) -> None:
        """``fetchq`` alone prints usage and a one-line error, exit 2."""
        status, out, err = run()
        self.assertEqual(status, 2)
        self.assertEqual(out, "")
        self.assertIn("usage: fetchq", err)
        self.assertIn("a command is required", err)

    def test_usage_error(self) -> None:
        """``fetchq validate`` without a recipe is a usage error: exit 2."""
        status, _out, err = run("validate")
        self.assertEqual(status, 2)
        self.assertIn("the following arguments are required: RECIPE", err)

    def test_commands_offered(self) -> None:
        """--help lists validate, run and demo; ``run`` with a broken recipe
        prints its located problems and exits 2 without starting anything."""
        status, out, _err = run("--help")
        self.assertEqual(status, 0)
        for command in ("validate", "run", "demo"):
            self.assertIn(command, out)
        folder = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, folder, True)
        broken = folder / "broken.yaml"
        broken.write_text("kind: fetch\nqueue: {widht: 3}\n")
        status, _out, err = run("run", str(broken))
        self.assertEqual(status, 2)
        self.assertIn(f"{broken}:2:9: queue.widht: unknown key", err)
        self.assertNotIn("Traceback", err)

    def test_version(self) -> None:
        """``fetchq --version`` prints the package version and exits 0."""
        status, out, _err = run("--version")
        self.assertEqual((status, out), (0, f"fetchq {__version__}\n"))

    def test_python_dash_m(self) -> None:
        """``python -m fetchq`` is the same command, with its exit status."""
        result = run_module("validate", "no-such-recipe.yaml")
        self.assertEqual(result.returncode, 2)
        self.assertEqual(
            result.stderr,
            "no-such-recipe.yaml:1:1: cannot read the recipe: "
            "no such file or directory\n",
        )
        self.assertEqual(run_module("--version").stdout, f"fetchq {__version__}\n")


class FakeCommandTests(SynchronousTestCase):
    """``fetchq fake sms|api``: a fake on a port, for trying recipes."""

    def serve(self, service: str) -> tuple[subprocess.Popen[str], str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "fetchq", "fake", service, "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        assert process.stdout is not None
        line = process.stdout.readline()
        url = line.split(" on ", 1)[1].strip()
        self.assertTrue(url.startswith("http://127.0.0.1:"), line)
        return process, url

    def test_fake_api_announces_its_quota(self) -> None:
        _, url = self.serve("api")
        request = urllib.request.Request(
            f"{url}/2/users/7/tweets", headers={"Authorization": "Bearer test-token"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read())
            self.assertEqual(response.status, 200)
            self.assertIsNotNone(response.headers["x-rate-limit-remaining"])
        self.assertIn("data", body)

    def test_fake_sms_accepts_a_message(self) -> None:
        _, url = self.serve("sms")
        sid, token = "ACffffffffffffffffffffffffffffffff", "fake-auth-token"
        data = urllib.parse.urlencode(
            {"To": "+15005550006", "From": "+15005550001", "Body": "hi"}
        ).encode()
        request = urllib.request.Request(
            f"{url}/2010-04-01/Accounts/{sid}/Messages.json", data=data
        )
        auth = base64.b64encode(f"{sid}:{token}".encode()).decode()
        request.add_header("Authorization", f"Basic {auth}")
        with urllib.request.urlopen(request, timeout=10) as response:
            self.assertEqual(response.status, 201)
            self.assertTrue(json.loads(response.read())["sid"].startswith("SM"))


class GarbageCollectorTests(SynchronousTestCase):
    """``fetchq run`` tunes the cyclic GC for the run, then puts it back."""

    def setUp(self) -> None:
        import gc

        self.thresholds = gc.get_threshold()
        self.addCleanup(gc.set_threshold, *self.thresholds)

    def test_tuned_then_restored(self) -> None:
        """While tuned, the young generation's threshold is GC_THRESHOLD and
        the objects alive at the start are frozen; restoring puts back the
        thresholds and unfreezes them."""
        import gc

        if gc.get_freeze_count():
            self.skipTest("objects already frozen in this process")
        restore = cli._tune_gc()
        try:
            self.assertEqual(
                gc.get_threshold(), (cli.GC_THRESHOLD, *self.thresholds[1:])
            )
            self.assertGreater(gc.get_freeze_count(), 0)
        finally:
            restore()
        self.assertEqual(gc.get_threshold(), self.thresholds)
        self.assertEqual(gc.get_freeze_count(), 0)

    def test_switch_interval_tuned_then_restored(self) -> None:
        """While a run goes on, another thread holds the GIL at most
        SWITCH_INTERVAL once the loop wants it; restoring puts back the
        process's own interval (a shorter one is kept)."""
        before = sys.getswitchinterval()
        self.addCleanup(sys.setswitchinterval, before)
        sys.setswitchinterval(0.005)
        restore = cli._tune_switching()
        self.assertAlmostEqual(sys.getswitchinterval(), cli.SWITCH_INTERVAL, places=5)
        restore()
        self.assertAlmostEqual(sys.getswitchinterval(), 0.005, places=5)
        sys.setswitchinterval(0.0001)
        cli._tune_switching()()
        self.assertAlmostEqual(sys.getswitchinterval(), 0.0001, places=5)

    def test_callers_freeze_left_alone(self) -> None:
        """Objects the caller froze before stay frozen after the restore."""
        import gc

        frozen = gc.get_freeze_count() == 0
        if frozen:
            gc.freeze()
            self.addCleanup(gc.unfreeze)
        before = gc.get_freeze_count()
        cli._tune_gc()()
        # Still frozen (an unfreeze would leave 0); a frozen object that dies
        # meanwhile, in this or another thread (pytest-xdist's), leaves the
        # permanent generation, so the count may be a few less.
        self.assertGreater(gc.get_freeze_count(), before * 0.99)
        self.assertEqual(gc.get_threshold(), self.thresholds)
