"""``fetchq run`` and its input, end to end over real loopback sockets: every
row gets exactly one record or the run says why and stops; re-runs pick up
appended rows, refuse a changed input, start afresh or retry the failed rows
when asked (issue 9, part 1)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, threads
from twisted.trial.unittest import TestCase

from fetchq.demo import DemoSite, SiteBehaviour
from fetchq.recipe import load_recipe
from fetchq.run import EXIT_FATAL, EXIT_PROBLEMS, Run
from fetchq.store import SQLiteStore

ROOT = Path(__file__).resolve().parent.parent

RECIPE = """
kind: fetch
input:
  path: {input}
{input_extra}
output:
  path: out/result.jsonl
queue:
  width: 8
  per_host:
    width: 8
retry:
  max_attempts: 2
  base_delay: 10ms
  max_delay: 50ms
fetch:
  connect_timeout: 2s
  headers_timeout: 5s
  body_timeout: 5s
{fetch_extra}
"""


def read_output(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class InputRunTests(TestCase):
    def setUp(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fetchq-input-run-"))
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

    def recipe(
        self, input_name: str, input_extra: str = "", fetch_extra: str = ""
    ) -> Path:
        path = self.folder / "recipe.yaml"
        path.write_text(
            RECIPE.format(
                input=input_name, input_extra=input_extra, fetch_extra=fetch_extra
            )
        )
        return path

    def url(self, n: int) -> str:
        return f"{self.base}/page/{n}"

    def run_recipe(self, recipe: Path, **kw: Any) -> defer.Deferred[int]:
        return Run(load_recipe(recipe), reactor, stream=self.devnull, **kw).run()

    def output(self) -> list[dict[str, Any]]:
        return read_output(self.folder / "out" / "result.jsonl")

    @defer.inlineCallbacks
    def test_undecodable_line_late_in_the_input(self) -> Generator[Any, Any, None]:
        """Issue 9's reproduction: 1,500 good URLs, a line with a byte that
        is not UTF-8, 100 more: the run ends 0 with 1,601 records, the bad
        line a BadInput naming urls.txt:1501, and a re-run has nothing to
        do and fetches nothing."""
        lines = [self.url(n).encode() for n in range(1500)]
        lines.append(b"http://x\xff/")
        lines += [self.url(n).encode() for n in range(1500, 1600)]
        (self.folder / "urls.txt").write_bytes(b"\n".join(lines) + b"\n")
        recipe = self.recipe("urls.txt")
        code = yield self.run_recipe(recipe)
        self.assertEqual(code, 0)
        records = self.output()
        self.assertEqual(len(records), 1601)
        self.assertEqual(len({r["id"] for r in records}), 1601)
        (bad,) = [r for r in records if r["outcome"] == "failed"]
        self.assertEqual(bad["error"]["name"], "BadInput")
        self.assertIn("urls.txt:1501: not UTF-8", bad["error"]["message"])
        fetched = sum(self.site.requests.values())
        code = yield self.run_recipe(recipe)
        self.assertEqual(code, 0)
        self.assertEqual(sum(self.site.requests.values()), fetched)
        self.assertEqual(len(self.output()), 1601)

    @defer.inlineCallbacks
    def test_duplicate_ids(self) -> Generator[Any, Any, None]:
        """JSONL ids "1", none (row 1), "x", "x", 7, "7": six rows, six
        records; the second "x" and the "7" after 7 are BadInput naming the
        duplicate; the row without an id is "#1" and never collides with
        the explicit "1"."""
        rows = [
            {"url": self.url(0), "id": "1"},
            {"url": self.url(1)},
            {"url": self.url(2), "id": "x"},
            {"url": self.url(3), "id": "x"},
            {"url": self.url(4), "id": 7},
            {"url": self.url(5), "id": "7"},
        ]
        (self.folder / "rows.jsonl").write_text(
            "\n".join(json.dumps(r) for r in rows) + "\n"
        )
        code = yield self.run_recipe(self.recipe("rows.jsonl", "  id_field: id"))
        self.assertEqual(code, 0)
        records = {r["id"]: r for r in self.output()}
        self.assertEqual(sorted(records), ["#1", "#3", "#5", "1", "7", "x"])
        for dup, value in (("#3", "'x'"), ("#5", "'7'")):
            self.assertEqual(records[dup]["error"]["name"], "BadInput")
            self.assertIn(
                f"rows.jsonl:{int(dup[1:]) + 1}: duplicate id {value}",
                records[dup]["error"]["message"],
            )
        self.assertEqual(records["#1"]["outcome"], "ok")
        self.assertEqual(records["1"]["url"], self.url(0))

    @defer.inlineCallbacks
    def test_csv_with_bom(self) -> Generator[Any, Any, None]:
        """A CSV input that starts with a UTF-8 byte-order mark validates
        and runs: the url column is found in every row."""
        data = "\ufeffurl,n\n" + "".join(f"{self.url(i)},{i}\n" for i in range(20))
        (self.folder / "in.csv").write_text(data, encoding="utf-8")
        code = yield self.run_recipe(self.recipe("in.csv"))
        self.assertEqual(code, 0)
        records = self.output()
        self.assertEqual(len(records), 20)
        self.assertEqual({r["outcome"] for r in records}, {"ok"})

    @defer.inlineCallbacks
    def test_input_named_like_the_output_temp(self) -> Generator[Any, Any, None]:
        """An input named <output>.tmp is read, not overwritten by the
        output's rewrite."""
        (self.folder / "out").mkdir()
        name = "out/result.jsonl.tmp"
        text = "".join(f"{self.url(i)}\n" for i in range(10))
        (self.folder / name).write_text(text)
        code = yield self.run_recipe(self.recipe(name, "  format: lines"))
        self.assertEqual(code, 0)
        self.assertEqual((self.folder / name).read_text(), text)
        self.assertEqual(len(self.output()), 10)
        code = yield self.run_recipe(self.recipe(name, "  format: lines"))
        self.assertEqual((self.folder / name).read_text(), text)

    @defer.inlineCallbacks
    def test_bodies_dir_is_created(self) -> Generator[Any, Any, None]:
        """fetch.save_bodies.dir that does not exist yet is created when the
        run starts (as the README says), and the bodies are saved there."""
        (self.folder / "urls.txt").write_text(f"{self.url(1)}\n{self.url(2)}\n")
        recipe = self.recipe(
            "urls.txt", fetch_extra="  save_bodies:\n    dir: out/bodies/deep"
        )
        code = yield self.run_recipe(recipe)
        self.assertEqual(code, 0)
        saved = list((self.folder / "out" / "bodies" / "deep").iterdir())
        self.assertEqual(len(saved), 2)

    @defer.inlineCallbacks
    def test_appended_rows_are_run(self) -> Generator[Any, Any, None]:
        """Rows appended to the input after a finished run are read and run
        by the next run; the rows already done are not fetched again."""
        path = self.folder / "urls.txt"
        path.write_text(f"{self.url(0)}\n{self.url(1)}\n")
        recipe = self.recipe("urls.txt")
        self.assertEqual((yield self.run_recipe(recipe)), 0)
        with open(path, "a") as f:
            f.write(f"{self.url(2)}\n{self.url(3)}\n{self.url(4)}\n")
        self.assertEqual((yield self.run_recipe(recipe)), 0)
        self.assertEqual(
            sorted(r["id"] for r in self.output()), ["0", "1", "2", "3", "4"]
        )
        self.assertEqual([self.site.requests[n] for n in range(5)], [1] * 5)

    @defer.inlineCallbacks
    def test_changed_input_is_refused_unless_fresh(self) -> Generator[Any, Any, None]:
        """An input changed (or truncated) in the part already read is
        refused with exit 2 and nothing is run or lost; with fresh=True the
        run starts over and the output has the new input's records only."""
        path = self.folder / "urls.txt"
        path.write_text(f"{self.url(0)}\n{self.url(1)}\n{self.url(2)}\n")
        recipe = self.recipe("urls.txt")
        self.assertEqual((yield self.run_recipe(recipe)), 0)
        for changed in (
            f"{self.url(7)}\n{self.url(1)}\n{self.url(2)}\n",
            f"{self.url(0)}\n",
        ):
            path.write_text(changed)
            stream = self.folder / "err.txt"
            with open(stream, "w") as err:
                code = yield Run(load_recipe(recipe), reactor, stream=err).run()
            self.assertEqual(code, EXIT_PROBLEMS)
            said = stream.read_text()
            self.assertIn("urls.txt", said)
            self.assertIn("--fresh", said)
            self.assertEqual(len(self.output()), 3)
        path.write_text(f"{self.url(8)}\n{self.url(9)}\n")
        self.assertEqual((yield self.run_recipe(recipe, fresh=True)), 0)
        self.assertEqual(
            sorted(r["url"] for r in self.output()), [self.url(8), self.url(9)]
        )

    @defer.inlineCallbacks
    def test_retry_failed(self) -> Generator[Any, Any, None]:
        """retry_failed runs the failed rows again and keeps the ok ones and
        the bad input: the 404 that now exists becomes ok."""
        path = self.folder / "urls.txt"
        path.write_text(
            f"{self.url(0)}\n{self.base}/page/99999\nnot a url\n{self.url(1)}\n"
        )
        recipe = self.recipe("urls.txt")
        self.assertEqual((yield self.run_recipe(recipe)), 0)
        before = {r["id"]: r["outcome"] for r in self.output()}
        self.assertEqual(before, {"0": "ok", "1": "failed", "2": "failed", "3": "ok"})
        self.site.behaviour = SiteBehaviour(
            pages=100_000,
            latency=0.001,
            error_every=10**6,
            missing_every=10**6,
            slow_every=10**6,
            client_rate=None,
        )
        ok_fetches = self.site.requests[0]
        self.assertEqual((yield self.run_recipe(recipe, retry_failed=True)), 0)
        after = {r["id"]: r for r in self.output()}
        self.assertEqual(sorted(after), ["0", "1", "2", "3"])
        self.assertEqual(after["1"]["outcome"], "ok")
        self.assertEqual(after["2"]["error"]["name"], "BadInput")
        self.assertEqual(self.site.requests[0], ok_fetches)

    @defer.inlineCallbacks
    def test_unreadable_input_stops_the_run(self) -> Generator[Any, Any, None]:
        """An input that cannot be read stops the run with exit 3 and a
        located message; nothing is marked done."""
        path = self.folder / "urls.txt"
        path.write_text(f"{self.url(0)}\n")
        recipe = self.recipe("urls.txt")
        loaded = load_recipe(recipe)
        path.unlink()
        stream = self.folder / "err.txt"
        with open(stream, "w") as err:
            code = yield Run(loaded, reactor, stream=err).run()
        self.assertEqual(code, EXIT_FATAL)
        self.assertIn("urls.txt: cannot open", stream.read_text())
        with SQLiteStore(loaded.state.path) as store:
            self.assertEqual(store.counts().finished, 0)


class InputCommandTests(TestCase):
    """The flags, through a real ``fetchq run``."""

    def setUp(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fetchq-input-cli-"))
        self.addCleanup(shutil.rmtree, self.folder, True)

    def fetchq(self, *args: str) -> defer.Deferred[subprocess.CompletedProcess[str]]:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        return threads.deferToThread(
            subprocess.run,
            [sys.executable, "-m", "fetchq", *args],
            cwd=self.folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    @defer.inlineCallbacks
    def test_fresh_flag(self) -> Generator[Any, Any, None]:
        """`fetchq run --fresh` starts over on a changed input that a plain
        re-run refuses (exit 2, saying to use --fresh)."""
        (self.folder / "urls.txt").write_text("not a url\n")
        recipe = self.folder / "r.yaml"
        recipe.write_text(
            "kind: fetch\ninput:\n  path: urls.txt\noutput:\n  path: out.jsonl\n"
        )
        done = yield self.fetchq("run", "r.yaml")
        self.assertEqual(done.returncode, 0, done.stderr)
        (self.folder / "urls.txt").write_text("still not a url\nnor this\n")
        refused = yield self.fetchq("run", "r.yaml")
        self.assertEqual(refused.returncode, 2)
        self.assertIn("--fresh", refused.stderr)
        fresh = yield self.fetchq("run", "r.yaml", "--fresh")
        self.assertEqual(fresh.returncode, 0, fresh.stderr)
        lines = (self.folder / "out.jsonl").read_text().splitlines()
        self.assertEqual(len(lines), 2)
