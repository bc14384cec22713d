"""The corpus of broken recipes: each gives exactly its expected lines.

Every ``tests/recipes/broken/NAME.yaml`` starts with a comment saying what it
breaks; ``NAME.expected`` holds the exact problem lines, as
``NAME.yaml:LINE:COL: message``.  Each recipe is run through the loader and
through ``python -m fetchq validate`` in a subprocess (from the corpus
directory, so the path printed is the bare file name), which must print those
lines on stderr and nothing on stdout, exit 2, and show no traceback.

To add a case: write the YAML, run ``python -m fetchq validate NAME.yaml
2> NAME.expected`` in that directory, and read the result critically.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from fetchq.recipe import RecipeError, load_recipe

ROOT = Path(__file__).resolve().parent.parent
BROKEN = Path(__file__).resolve().parent / "recipes" / "broken"
CASES = sorted(BROKEN.glob("*.yaml"))


def expected_lines(case: Path) -> list[str]:
    """The lines ``case``'s .expected file holds."""
    return case.with_suffix(".expected").read_text(encoding="utf-8").splitlines()


def run_validate(*names: str) -> subprocess.CompletedProcess[str]:
    """``python -m fetchq validate NAMES...`` in the corpus directory, with
    this checkout first on the path and the corpus's variables unset."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("FETCHQ_TEST_UNSET")
    }
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return subprocess.run(
        [sys.executable, "-m", "fetchq", "validate", *names],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=BROKEN,
        env=env,
    )


def purpose(case: Path) -> str:
    """The case's first line, its comment saying what it breaks."""
    first = case.read_text(encoding="utf-8").splitlines()[0]
    return first.lstrip("# ").strip()


class CorpusTests(SynchronousTestCase):
    def test_corpus_is_large_and_complete(self) -> None:
        """There are at least 20 broken recipes, each with an .expected file
        of at least one line, each saying what it breaks, and no stray
        .expected files."""
        self.assertGreaterEqual(len(CASES), 20)
        for case in CASES:
            self.assertTrue(case.with_suffix(".expected").is_file(), case.name)
            self.assertTrue(expected_lines(case), case.name)
            self.assertTrue(case.read_text().startswith("# "), case.name)
        stems = {case.stem for case in CASES}
        for expected in BROKEN.glob("*.expected"):
            self.assertIn(expected.stem, stems, expected.name)

    def test_all_at_once(self) -> None:
        """Validating every broken recipe in one command prints each one's
        lines in order, and exits 2."""
        result = run_validate(*(case.name for case in CASES))
        wanted = [line for case in CASES for line in expected_lines(case)]
        self.assertEqual(result.stderr.splitlines(), wanted)
        self.assertEqual(result.stdout, "")
        self.assertEqual(result.returncode, 2)


def _loader_test(case: Path) -> Callable[[CorpusTests], None]:
    def test(self: CorpusTests) -> None:
        """The loader reports exactly the case's expected problems."""
        with self.assertRaises(RecipeError) as caught:
            load_recipe(case, environ={})
        prefix = str(BROKEN) + os.sep
        wanted = [prefix + line for line in expected_lines(case)]
        self.assertEqual(
            [str(problem) for problem in caught.exception.problems], wanted
        )

    test.__doc__ = (
        f"{case.name} ({purpose(case)}): the loader raises RecipeError with "
        "exactly the expected located problems."
    )
    return test


def _cli_test(case: Path) -> Callable[[CorpusTests], None]:
    def test(self: CorpusTests) -> None:
        """`fetchq validate` prints exactly the case's expected lines."""
        result = run_validate(case.name)
        self.assertEqual(result.stderr.splitlines(), expected_lines(case))
        self.assertNotIn("Traceback", result.stderr)
        self.assertEqual(result.stdout, "")
        self.assertEqual(result.returncode, 2)

    test.__doc__ = (
        f"{case.name} ({purpose(case)}): `fetchq validate` prints exactly the "
        "expected lines on stderr, nothing on stdout, no traceback, and exits 2."
    )
    return test


for _case in CASES:
    _name = _case.stem.replace("-", "_")
    setattr(CorpusTests, f"test_loader_{_name}", _loader_test(_case))
    setattr(CorpusTests, f"test_validate_{_name}", _cli_test(_case))
