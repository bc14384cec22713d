"""The demo recipe is package data: ``fetchq demo`` needs no source checkout.

A wheel is built from a copy of the source tree (no build isolation, no
index: nothing is downloaded) and installed, not editable, into an empty
directory; the demo then runs from there.  Everything is written in a
temporary directory, never in the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from fetchq.demo.run import demo_recipe_text
from fetchq.recipe import FetchRecipe, load_recipe

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "fetchq" / "demo" / "demo.yaml"


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command; its stdout, or a failure that shows its output."""
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"{args[:4]} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done.stdout


class DemoRecipeTests(SynchronousTestCase):
    def test_recipe_is_the_packaged_file(self) -> None:
        """demo_recipe_text() reads fetchq/demo/demo.yaml (the one copy), and
        that is a valid recipe with the pace the README describes."""
        self.assertEqual(demo_recipe_text(), SOURCE.read_text(encoding="utf-8"))
        self.assertFalse((ROOT / "recipes" / "demo.yaml").exists())
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "data").mkdir()
            (folder / "data" / "demo-urls.txt").write_text("http://127.0.0.1/\n")
            (folder / "demo.yaml").write_text(demo_recipe_text(), encoding="utf-8")
            recipe = load_recipe(folder / "demo.yaml")
        assert isinstance(recipe, FetchRecipe)
        self.assertEqual(recipe.input.path, folder / "data" / "demo-urls.txt")
        self.assertEqual((recipe.queue.width, recipe.queue.rate), (4, None))
        self.assertIsNone(recipe.queue.lanes.width)
        adaptive = recipe.queue.adaptive
        assert adaptive is not None
        self.assertEqual((adaptive.algorithm, adaptive.max_width), ("default", 64))
        self.assertEqual(recipe.retry.max_attempts, 4)
        self.assertTrue(recipe.fetch.allow_private)


class InstalledDemoTests(SynchronousTestCase):
    def test_demo_runs_from_a_wheel(self) -> None:
        """The wheel holds fetchq/demo/demo.yaml byte for byte; installed from
        it into an empty directory, fetchq is imported from there and
        ``python -m fetchq demo`` crawls the site with the packaged recipe:
        one record per URL written, exit status 0."""
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            src = work / "src"
            shutil.copytree(
                ROOT / "fetchq",
                src / "fetchq",
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )
            for name in ("pyproject.toml", "README.md", "LICENSE"):
                shutil.copy(ROOT / name, src / name)
            pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
            dist = work / "dist"
            _run(*pip, "wheel", "-q", "--no-deps", "--no-build-isolation",
                 "--no-index", "-w", dist, src, cwd=work)  # fmt: skip
            [wheel] = dist.glob("fetchq-*.whl")
            with zipfile.ZipFile(wheel) as archive:
                self.assertIn("fetchq/demo/demo.yaml", archive.namelist())
                packaged = archive.read("fetchq/demo/demo.yaml")
            self.assertEqual(packaged, SOURCE.read_bytes())

            site = work / "site"
            _run(*pip, "install", "-q", "--no-deps", "--no-index", "--target",
                 site, wheel, cwd=work)  # fmt: skip
            env = dict(os.environ, PYTHONPATH=str(site))
            where = _run(
                sys.executable,
                "-c",
                "import fetchq.demo.run as m; print(m.__file__)",
                cwd=work,
                env=env,
            )
            self.assertTrue(Path(where.strip()).is_relative_to(site), where)

            run = work / "run"
            _run(sys.executable, "-m", "fetchq", "demo", "--pages", "20",
                 "--dir", run, cwd=work, env=env)  # fmt: skip
            self.assertEqual((run / "demo.yaml").read_bytes(), SOURCE.read_bytes())
            lines = (run / "out" / "demo.jsonl").read_text().splitlines()
            records = [json.loads(line) for line in lines]
            # 20 pages, then the two bad lines the demo adds on purpose.
            self.assertEqual(len(records), 22)
            self.assertEqual(len({r["id"] for r in records}), 22)
            bad = [r for r in records if r.get("error", {}).get("name") == "BadInput"]
            self.assertEqual(len(bad), 2)
