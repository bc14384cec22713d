"""The recipe's ``admin`` section: where the run's admin server listens,
checked and located like every other key, and overridden by ``--admin``."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from fetchq import cli
from fetchq.recipe import RecipeError, load_recipe

RECIPE = """\
kind: fetch
input: urls.txt
output: out.jsonl
"""


class AdminSectionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="fetchq-admin-recipe-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        (self.dir / "urls.txt").write_text("https://a.example/\n")

    def load(self, admin: str) -> object:
        path = self.dir / "r.yaml"
        path.write_text(RECIPE + admin)
        return load_recipe(path)

    def problems(self, admin: str) -> list[str]:
        with self.assertRaises(RecipeError) as caught:
            self.load(admin)
        return [str(problem) for problem in caught.exception.problems]

    def test_no_section_no_server(self) -> None:
        """Without the section and without ``--admin`` there is no admin
        server."""
        recipe = self.load("")
        self.assertIsNone(recipe.admin)  # type: ignore[attr-defined]
        args = argparse.Namespace(admin=None, metrics_open=None)
        self.assertIsNone(cli._admin_options(recipe, args))

    def test_section_says_where_and_flag_overrides(self) -> None:
        """``admin.listen`` (a port or HOST:PORT) and ``metrics_open`` reach
        the run's options; ``--admin`` and ``--metrics-open`` on the command
        line win over them."""
        recipe = self.load("admin:\n  listen: '[::1]:8765'\n  metrics_open: true\n")
        none = argparse.Namespace(admin=None, metrics_open=None)
        self.assertEqual(
            cli._admin_options(recipe, none),
            {"listen": "[::1]:8765", "metrics_open": True},
        )
        flag = argparse.Namespace(admin="9000", metrics_open=False)
        self.assertEqual(
            cli._admin_options(recipe, flag), {"listen": "9000", "metrics_open": False}
        )
        port = self.load("admin:\n  listen: 8765\n")
        self.assertEqual(
            cli._admin_options(port, none), {"listen": "8765", "metrics_open": False}
        )

    def test_bad_addresses_are_located(self) -> None:
        """A port out of range, a missing host, a non-number and a missing
        ``listen`` are each one located problem naming the key."""
        cases = {
            "admin:\n  listen: 70000\n": "0-65535",
            "admin:\n  listen: ':80'\n": "no host",
            "admin:\n  listen: 'localhost:http'\n": "must be a number",
            "admin:\n  listen: [8765]\n": "expected a port or HOST:PORT",
            "admin:\n  metrics_open: true\n": "listen",
        }
        for text, words in cases.items():
            [problem] = self.problems(text)
            self.assertIn("r.yaml:", problem)
            self.assertIn("admin", problem)
            self.assertIn(words, problem)
