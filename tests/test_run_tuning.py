"""``fetchq run --limit`` and ``--dry-run`` (issue 12, section 3) over real
loopback sockets and real state files: a limited run reads only its rows and
leaves the input unfinished for the next run; a dry run shows the plan and
changes nothing."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Generator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from fetchq import cli
from fetchq.demo import DemoSite, SiteBehaviour
from fetchq.plan import dry_run, human, time_bound
from fetchq.recipe import load_recipe
from fetchq.run import Run
from fetchq.store import SQLiteStore

RECIPE = """\
kind: fetch
input: urls.txt
output: out/result.jsonl
queue:
  width: 4
retry:
  max_attempts: 1
fetch:
  connect_timeout: 2s
  headers_timeout: 5s
  body_timeout: 5s
"""


def read_output(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def cli_run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = cli.main(list(argv))
    return status, out.getvalue(), err.getvalue()


class LimitTests(TestCase):
    def setUp(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fetchq-tuning-"))
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.devnull = open(os.devnull, "w")  # noqa: SIM115
        self.addCleanup(self.devnull.close)
        self.site = DemoSite(
            reactor,
            SiteBehaviour(
                pages=5000,
                latency=0.001,
                error_every=10**6,
                missing_every=10**6,
                slow_every=10**6,
                client_rate=None,
            ),
        )
        port = self.site.listen()
        self.addCleanup(port.stopListening)
        self.base = f"http://127.0.0.1:{port.getHost().port}"
        self.recipe = self.folder / "recipe.yaml"
        self.recipe.write_text(RECIPE)

    def write_urls(self, first: int, last: int, mode: str = "w") -> None:
        with open(self.folder / "urls.txt", mode) as f:
            for n in range(first, last):
                f.write(f"{self.base}/page/{n}\n")

    def run_recipe(self, **kw: Any) -> defer.Deferred[int]:
        return Run(load_recipe(self.recipe), reactor, stream=self.devnull, **kw).run()

    def output(self) -> list[dict[str, Any]]:
        return read_output(self.folder / "out" / "result.jsonl")

    def fetched(self) -> int:
        return sum(self.site.requests.values())

    @defer.inlineCallbacks
    def test_limit_reads_only_its_rows_and_leaves_the_input_unfinished(
        self,
    ) -> Generator[Any, Any, None]:
        """``limit=3`` over 2,500 rows (more than one read chunk): exactly
        rows 0-2 are fetched and recorded, the checkpoint stops after row 2
        and the input is not marked read to its end; a second limited run
        takes the next 3; a run without a limit does the rest, each row
        fetched once in all."""
        self.write_urls(0, 2500)
        code = yield self.run_recipe(limit=3)
        self.assertEqual(code, 0)
        self.assertEqual(sorted(r["id"] for r in self.output()), ["0", "1", "2"])
        self.assertEqual(self.fetched(), 3)
        with SQLiteStore(self.folder / "out" / "result.jsonl.state.sqlite") as store:
            self.assertEqual(store.meta_get("input.checkpoint")["index"], 3)
            self.assertFalse(store.meta_get("input.done"))
            self.assertEqual(store.counts().pending, 0)
        code = yield self.run_recipe(limit=3)
        self.assertEqual(code, 0)
        self.assertEqual(len(self.output()), 6)
        self.assertEqual(self.fetched(), 6)
        code = yield self.run_recipe()
        self.assertEqual(code, 0)
        records = self.output()
        self.assertEqual(len(records), 2500)
        self.assertEqual(len({r["id"] for r in records}), 2500)
        self.assertEqual(self.fetched(), 2500)
        with SQLiteStore(self.folder / "out" / "result.jsonl.state.sqlite") as store:
            self.assertTrue(store.meta_get("input.done"))

    @defer.inlineCallbacks
    def test_limit_at_the_last_row(self) -> Generator[Any, Any, None]:
        """A limit that ends exactly at the input's last row: the input is
        still not marked finished by that run; the next run reads nothing,
        fetches nothing, and marks it finished."""
        self.write_urls(0, 4)
        code = yield self.run_recipe(limit=4)
        self.assertEqual((code, len(self.output()), self.fetched()), (0, 4, 4))
        state = self.folder / "out" / "result.jsonl.state.sqlite"
        with SQLiteStore(state) as store:
            self.assertFalse(store.meta_get("input.done"))
        code = yield self.run_recipe()
        self.assertEqual((code, len(self.output()), self.fetched()), (0, 4, 4))
        with SQLiteStore(state) as store:
            self.assertTrue(store.meta_get("input.done"))

    def test_limit_must_be_positive(self) -> None:
        """A limit below 1 (or not an integer) is refused at once."""
        self.write_urls(0, 1)
        recipe = load_recipe(self.recipe)
        for bad in (0, -1, 2.5, True):
            with self.assertRaises(ValueError):
                Run(recipe, reactor, stream=self.devnull, limit=bad)  # type: ignore[arg-type]

    @defer.inlineCallbacks
    def test_dry_run_shows_the_plan_and_changes_nothing(
        self,
    ) -> Generator[Any, Any, None]:
        """After a limited run, ``fetchq run --dry-run`` counts the input
        (a bad row named by place), says what the state holds and what a
        run would do (with ``--limit`` and ``--retry-failed`` too), exits
        0, contacts no server and leaves every file as it was; once the
        part already read changes, it says a run would refuse it."""
        self.write_urls(0, 10)
        with open(self.folder / "urls.txt", "a") as f:
            f.write("not a url\n")
        code = yield self.run_recipe(limit=4)
        self.assertEqual(code, 0)
        fetched = self.fetched()
        before = snapshot(self.folder)
        status, out, err = cli_run("run", str(self.recipe), "--dry-run")
        self.assertEqual((status, err), (0, ""))
        self.assertIn("input:   ", out)
        self.assertIn("11 rows, 1 bad", out)
        self.assertIn("urls.txt:11: no scheme", out)
        self.assertIn("4 done (4 ok), 0 left to do; earlier runs read 4 rows", out)
        self.assertIn("run:     7 rows to do (7 not yet read)", out)
        self.assertIn("pace:    width 4, no overall rate; per host: width 8", out)
        status, out, _ = cli_run(
            "run", str(self.recipe), "--dry-run", "--limit", "2", "--retry-failed"
        )
        self.assertEqual(status, 0)
        self.assertIn(
            "run:     2 rows to do (2 not yet read, --limit 2: 5 left unread), "
            "the 0 failed again",
            out,
        )
        self.assertEqual(snapshot(self.folder), before)
        self.assertEqual(self.fetched(), fetched)
        text = (self.folder / "urls.txt").read_text()
        (self.folder / "urls.txt").write_text("http://changed.example/\n" + text)
        status, out, _ = cli_run("run", str(self.recipe), "--dry-run")
        self.assertEqual(status, 0)
        self.assertIn("the input has changed", out)
        self.assertIn("a run would stop at once (exit 2)", out)


class DryRunTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fetchq-dry-"))
        self.addCleanup(shutil.rmtree, self.folder, True)

    def test_fresh_state_and_time_bound(self) -> None:
        """With no state yet, the plan says the run starts at the first row;
        with a per-host rate binding, the least time is the busiest host's
        rows at that rate (its burst going at once), and no state file or
        output directory is made."""
        urls = [f"https://a.example/{n}" for n in range(61)]
        urls += [f"https://b.example/{n}" for n in range(5)]
        (self.folder / "urls.txt").write_text("\n".join(urls) + "\n")
        recipe_path = self.folder / "r.yaml"
        recipe_path.write_text(
            RECIPE + "  timeout: 1m\n  save_bodies:\n    dir: out/bodies\n"
        )
        recipe = load_recipe(recipe_path, overrides=["queue.per_host.rate=1/s"])
        out = io.StringIO()
        self.assertEqual(dry_run(recipe, out), 0)
        text = out.getvalue()
        self.assertIn("none yet; the run starts at the input's first row", text)
        self.assertIn("run:     66 rows to do (66 not yet read)", text)
        self.assertIn(
            "time:    at least 1m: 61 rows for host a.example at 1/s per host", text
        )
        self.assertEqual(sorted(os.listdir(self.folder)), ["r.yaml", "urls.txt"])

    def test_time_bound(self) -> None:
        """The bound is the larger of the overall and the busiest lane's:
        rows beyond the burst, one each 1/rate; none without a rate."""
        (self.folder / "urls.txt").write_text("https://a.example/\n")
        recipe_path = self.folder / "r.yaml"
        recipe_path.write_text(RECIPE)
        recipe = load_recipe(recipe_path)
        self.assertIsNone(time_bound(100, {"a": 100}, recipe))
        rated = load_recipe(recipe_path, overrides=["queue.rate=10/s", "queue.burst=5"])
        self.assertEqual(time_bound(105, {"a": 1}, rated), (10.0, "105 rows at 10/s"))
        both = load_recipe(
            recipe_path, overrides=["queue.rate=10/s", "queue.per_host.rate=1/s"]
        )
        self.assertEqual(
            time_bound(105, {"a": 21, "b": 1}, both),
            (20.0, "21 rows for host a at 1/s per host"),
        )

    def test_human(self) -> None:
        """Durations for people, rounded up to the second, two units at most."""
        self.assertEqual(
            [human(s) for s in (0, 0.2, 59, 61, 3600, 3661, 90061)],
            ["0s", "1s", "59s", "1m 1s", "1h", "1h 1m", "1d 1h"],
        )


class CliTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fetchq-dry-cli-"))
        self.addCleanup(shutil.rmtree, self.folder, True)
        (self.folder / "urls.txt").write_text("https://a.example/\n")
        self.recipe = self.folder / "r.yaml"
        self.recipe.write_text(RECIPE)

    def test_limit_usage(self) -> None:
        """``--limit`` takes a whole number of at least 1; with a Redis
        state it is refused (the workers share one input), exit 2."""
        for bad in ("0", "x"):
            status, out, err = cli_run("run", str(self.recipe), "--limit", bad)
            self.assertEqual((status, out), (2, ""))
            self.assertIn("--limit", err)
        status, out, err = cli_run(
            "run",
            str(self.recipe),
            "--limit",
            "5",
            "--set",
            "state=redis://127.0.0.1:1/0",
        )
        self.assertEqual(status, 2)
        self.assertIn("--limit needs a local state", err)

    def test_dry_run_of_a_state_in_use(self) -> None:
        """A state file another process holds (a run going on) is said to be
        in use, exit 2; a Redis state is named, not contacted."""
        state = self.folder / "out" / "result.jsonl.state.sqlite"
        state.parent.mkdir()
        with SQLiteStore(state):
            status, out, _ = cli_run("run", str(self.recipe), "--dry-run")
        self.assertEqual(status, 2)
        self.assertIn("in use by another process", out)
        status, out, _ = cli_run(
            "run", str(self.recipe), "--dry-run", "--set", "state=redis://127.0.0.1:1/3"
        )
        self.assertEqual(status, 0)
        self.assertIn("redis run 'r-urls_txt' at 127.0.0.1:1/3 (not contacted", out)
