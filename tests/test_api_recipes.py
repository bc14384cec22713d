"""The shipped recipes for real APIs, run end to end (``Run``, the reactor,
real loopback sockets) against fakes built from those APIs' documentation:
``recipes/x-user-tweets.yaml`` against the fake X API v2 and
``recipes/github-issues.yaml`` against the fake GitHub REST API, only their
base URL and output moved."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from fetchq.recipe import load_recipe
from fetchq.run import Run
from fetchq.testing.api import serve as serve_x
from fetchq.testing.github import DEFAULT_TOKEN
from fetchq.testing.github import serve as serve_github

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class RecipeRunTests(TestCase):
    def setUp(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fetchq-api-recipes-"))
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.devnull = open(os.devnull, "w")  # noqa: SIM115
        self.addCleanup(self.devnull.close)

    def recipe(self, name: str, base: str, env: dict[str, str], *more: str) -> Any:
        """The shipped recipe, pointed at ``base``, writing to the test's
        folder."""
        out = self.folder / "out.jsonl"
        return load_recipe(
            RECIPES / name,
            environ=env,
            overrides=[f"api.base_url={base}", f"output.path={out}", *more],
        )

    @defer.inlineCallbacks
    def test_x_user_tweets(self) -> Generator[Any, Any, None]:
        """x-user-tweets.yaml against the fake X API with a quota of 4 calls
        per 2 s window: 3 users x 3 pages of 100 posts, following
        meta.next_token, and the fake never had to answer 429 (each window's
        spent quota held the lane until its reset)."""
        served = serve_x(
            reactor,
            quotas={"/2/users/{id}/tweets": (4, 2.0)},
            latency=0.01,
            pages=3,
            items_per_page=100,
        )
        self.addCleanup(served.stop)
        recipe = self.recipe(
            "x-user-tweets.yaml",
            served.url,
            {"X_BEARER_TOKEN": served.fake.token},
            "api.reset_margin=100ms",
        )
        started = reactor.seconds()
        code = yield Run(recipe, reactor, stream=self.devnull).run()
        self.assertEqual(code, 0)
        self.assertGreater(reactor.seconds() - started, 4.0)  # two resets
        self.assertEqual(sum(served.fake.throttled.values()), 0)
        self.assertEqual(served.fake.statuses[429], 0)
        self.assertEqual(served.fake.requests["/2/users/{id}/tweets"], 9)
        records = read_jsonl(self.folder / "out.jsonl")
        self.assertEqual(len(records), 3 * 300)
        self.assertEqual({r["outcome"] for r in records}, {"ok"})
        pages = {(r["id"], r["page"]) for r in records}
        self.assertEqual(
            pages,
            {(u, p) for u in ("2244994945", "783214", "17874544") for p in (1, 2, 3)},
        )
        tokens = {r["request"]["token"] for r in records if r["page"] > 1}
        self.assertTrue(tokens and None not in tokens)

    @defer.inlineCallbacks
    def test_github_issues(self) -> Generator[Any, Any, None]:
        """github-issues.yaml against the fake GitHub with a primary limit of
        3 calls per 2 s and two secondary limits on the way (a 403 with
        Retry-After, then a 429 with Retry-After): every issue of both
        repositories is recorded once, pages followed by the Link header,
        the primary limit never refused a call, and both refusals were
        waited out and retried."""
        served = serve_github(
            reactor,
            repos={"octocat/hello-world": 250, "fetchq/fetchq": 7},
            limit=3,
            window=2.0,
            latency=0.01,
        )
        self.addCleanup(served.stop)
        fake = served.fake
        fake.inject(403, retry_after=0.5)
        recipe = self.recipe(
            "github-issues.yaml",
            served.url,
            {"GITHUB_TOKEN": DEFAULT_TOKEN},
            "api.reset_margin=100ms",
            "retry.base_delay=100ms",
        )
        run = Run(recipe, reactor, stream=self.devnull)
        fake.inject(429, retry_after=0.5)
        code = yield run.run()
        self.assertEqual(code, 0)
        self.assertEqual(fake.secondary, 2)
        self.assertEqual((fake.statuses[403], fake.statuses[429]), (1, 1))
        self.assertEqual(fake.primary, 0)
        self.assertEqual(fake.requests, 4)  # 3 pages + 1
        records = read_jsonl(self.folder / "out.jsonl")
        self.assertEqual({r["outcome"] for r in records}, {"ok"})
        by_repo: dict[str, list[int]] = {}
        for r in records:
            by_repo.setdefault(r["id"], []).append(r["item"]["number"])
        self.assertEqual(sorted(by_repo["hello-world"]), list(range(1, 251)))
        self.assertEqual(sorted(by_repo["fetchq"]), list(range(1, 8)))
        urls = {r["request"]["url"] for r in records if r["page"] > 1}
        self.assertTrue(all("/repositories/" in url for url in urls), urls)

    @defer.inlineCallbacks
    def test_github_secondary_without_retry_after(self) -> Generator[Any, Any, None]:
        """A secondary limit answered 403 without Retry-After is waited out
        for default_retry_after (a minute in the recipe, as GitHub asks;
        shortened here), then retried."""
        served = serve_github(
            reactor,
            repos={"octocat/hello-world": 5, "fetchq/fetchq": 5},
            retry_after_on_secondary=False,
            per_minute=1,
            latency=0.01,
        )
        self.addCleanup(served.stop)
        recipe = self.recipe(
            "github-issues.yaml",
            served.url,
            {"GITHUB_TOKEN": DEFAULT_TOKEN},
            "api.default_retry_after=0.3s",
            "retry.base_delay=100ms",
        )
        run = Run(recipe, reactor, stream=self.devnull)
        served.fake.per_minute = 1  # the second call is over the minute's budget

        def allow_more() -> None:
            # Once the limit has been hit (not after a moment of the wall
            # clock, which a busy machine may spend starting the run).
            if served.fake.secondary >= 1:
                served.fake.per_minute = 900
                watch.stop()

        watch = task.LoopingCall(allow_more)
        watch.start(0.01)
        self.addCleanup(lambda: watch.running and watch.stop())
        code = yield run.run()
        self.assertEqual(code, 0)
        self.assertGreaterEqual(served.fake.secondary, 1)
        records = read_jsonl(self.folder / "out.jsonl")
        self.assertEqual(len(records), 10)
