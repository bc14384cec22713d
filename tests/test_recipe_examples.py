"""The example recipes in ``recipes/`` load, validate and mean what they say."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from fetchq.recipe import LaneSpec, RecipeError, Secret, load_recipe

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"
DATA = RECIPES / "data"
OUT = RECIPES / "out"
ENV = {"API_TOKEN": "example-token-123"}


class ExampleRecipeTests(SynchronousTestCase):
    def test_all_validate(self) -> None:
        """``fetchq validate recipes/*.yaml`` (with API_TOKEN set) says ok for
        every example and exits 0."""
        names = sorted(path.name for path in RECIPES.glob("*.yaml"))
        self.assertEqual(
            names,
            ["fetch-jsonl.yaml", "fetch-urls.yaml", "polite-crawl.yaml"],
        )
        env = dict(os.environ, **ENV)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "fetchq",
                "validate",
                *(f"recipes/{n}" for n in names),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=env,
        )
        self.assertEqual(result.stderr, "")
        self.assertEqual(result.returncode, 0)
        lines = result.stdout.splitlines()
        self.assertEqual(len(lines), len(names))
        for name, line in zip(names, lines, strict=True):
            self.assertTrue(
                line.startswith(f"recipes/{name}: ok (kind fetch, input "), line
            )

    def test_fetch_urls(self) -> None:
        """fetch-urls.yaml reads a text file of URLs with its stated pace,
        retries and limits, and every other setting at its default."""
        recipe = load_recipe(RECIPES / "fetch-urls.yaml", environ={})
        self.assertEqual(recipe.input.path, DATA / "urls.txt")
        self.assertEqual(recipe.input.format, "lines")
        self.assertEqual(recipe.output.path, OUT / "urls.jsonl")
        self.assertEqual(recipe.state.path, OUT / "urls.jsonl.state.sqlite")
        self.assertEqual((recipe.queue.width, recipe.queue.rate), (16, 20.0))
        self.assertEqual(recipe.queue.lanes, LaneSpec(width=8, rate=None, burst=1))
        self.assertEqual(
            (
                recipe.retry.max_attempts,
                recipe.retry.base_delay,
                recipe.retry.max_delay,
            ),
            (3, 0.5, 30.0),
        )
        fetch = recipe.fetch
        self.assertEqual(
            (fetch.connect_timeout, fetch.headers_timeout, fetch.body_timeout),
            (5.0, 15.0, 60.0),
        )
        self.assertEqual((fetch.max_body, fetch.max_redirects), (5_000_000, 5))
        self.assertEqual(dict(fetch.headers), {})

    def test_fetch_jsonl(self) -> None:
        """fetch-jsonl.yaml reads url/priority/id rows, keeps full-durability
        state where it says, and saves bodies by id."""
        recipe = load_recipe(RECIPES / "fetch-jsonl.yaml", environ={})
        self.assertEqual(recipe.input.format, "jsonl")
        self.assertEqual(
            (
                recipe.input.url_field,
                recipe.input.priority_field,
                recipe.input.id_field,
            ),
            ("url", "priority", "id"),
        )
        self.assertEqual(recipe.state.path, OUT / "pages.state.sqlite")
        self.assertEqual(recipe.state.durability, "full")
        self.assertEqual((recipe.queue.width, recipe.queue.rate), (8, 10.0))
        self.assertEqual(
            dict(recipe.fetch.headers),
            {"Accept": "text/html,application/xhtml+xml", "Accept-Language": "en"},
        )
        self.assertEqual(recipe.fetch.ok_statuses, {*range(200, 300), 304})
        save = recipe.fetch.save_bodies
        assert save is not None
        self.assertEqual((save.dir, save.name), (OUT / "bodies", "id"))

    def test_polite_crawl(self) -> None:
        """polite-crawl.yaml reads CSV columns, limits each host to 2 at a time
        and 1/s, refuses private addresses, and carries the API token as a
        masked secret."""
        recipe = load_recipe(RECIPES / "polite-crawl.yaml", environ=ENV)
        self.assertEqual(recipe.input.format, "csv")
        self.assertEqual(
            (recipe.input.url_field, recipe.input.priority_field), ("page", "rank")
        )
        self.assertEqual(
            recipe.queue.queue_kwargs(),
            {
                "width": 32,
                "rate": 50.0,
                "burst": 10,
                "lane_width": 2,
                "lane_rate": 1.0,
                "lane_burst": 1,
            },
        )
        self.assertEqual(recipe.retry.max_delay, 600.0)
        fetch = recipe.fetch
        self.assertFalse(fetch.allow_private)
        token = fetch.headers["Authorization"]
        self.assertIsInstance(token, Secret)
        self.assertIn(
            ("Authorization", "Bearer example-token-123"), fetch.header_items()
        )
        self.assertNotIn("example-token-123", repr(recipe))
        self.assertEqual(fetch.param_items(), [("format", "json")])
        self.assertEqual(fetch.retry_statuses, {408, 500, 501, 502, 503, 504})
        self.assertEqual(fetch.throttle_statuses, {429, 503})

    def test_polite_crawl_needs_its_token(self) -> None:
        """Without API_TOKEN in the environment, polite-crawl.yaml has one
        problem, at the header that needs it."""
        with self.assertRaises(RecipeError) as caught:
            load_recipe(RECIPES / "polite-crawl.yaml", environ={})
        [problem] = caught.exception.problems
        self.assertEqual(
            problem.message,
            "fetch.headers.Authorization: environment variable API_TOKEN is not set",
        )
        line = (
            (RECIPES / "polite-crawl.yaml").read_text().splitlines()[problem.line - 1]
        )
        self.assertIn("Authorization: Bearer ${API_TOKEN}", line)
