"""The example recipes in ``recipes/`` load, validate and mean what they say."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from fetchq.recipe import (
    ApiRecipe,
    LaneSpec,
    RecipeError,
    Secret,
    SmsRecipe,
    load_recipe,
)
from fetchq.sms import BadMessage, check_message

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"
DATA = RECIPES / "data"
OUT = RECIPES / "out"
ENV = {
    "API_TOKEN": "example-token-123",
    "TWILIO_ACCOUNT_SID": "AC" + "f" * 32,
    "TWILIO_AUTH_TOKEN": "example-auth-token-456",
    "X_BEARER_TOKEN": "example-x-token-789",
    "GITHUB_TOKEN": "ghp_example0123",
}
KINDS = {  # the others are fetch recipes
    "sms.yaml": "sms",
    "api.yaml": "api",
    "x-user-tweets.yaml": "api",
    "github-issues.yaml": "api",
}


class ExampleRecipeTests(SynchronousTestCase):
    def test_all_validate(self) -> None:
        """``fetchq validate recipes/*.yaml`` (with API_TOKEN and the Twilio
        variables set) says ok for every example and exits 0."""
        names = sorted(path.name for path in RECIPES.glob("*.yaml"))
        self.assertEqual(
            names,
            [
                "api.yaml",
                "fetch-jsonl.yaml",
                "fetch-urls.yaml",
                "github-issues.yaml",
                "polite-crawl.yaml",
                "sms.yaml",
                "x-user-tweets.yaml",
            ],
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
            kind = KINDS.get(name, "fetch")
            self.assertTrue(line.startswith(f"recipes/{name}: ok (kind {kind}"), line)

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

    def test_sms(self) -> None:
        """sms.yaml sends a templated text to each row of messages.csv from
        one number, through the fake provider, with full-durability state and
        the resend check; its SmsConfig carries the credentials from the
        environment (the token masked), and one row's number is refused."""
        recipe = load_recipe(RECIPES / "sms.yaml", environ=ENV)
        assert isinstance(recipe, SmsRecipe)
        self.assertEqual(recipe.kind, "sms")
        spec = recipe.input
        self.assertEqual((spec.path, spec.format), (DATA / "messages.csv", "csv"))
        self.assertEqual(
            (spec.to_field, spec.body_field, spec.from_field, spec.id_field),
            ("to", None, None, "id"),
        )
        self.assertEqual(recipe.output.path, OUT / "messages.jsonl")
        self.assertEqual(recipe.state.durability, "full")
        self.assertEqual(
            recipe.queue.queue_kwargs(),
            {
                "width": 10,
                "rate": None,
                "burst": 1,
                "lane_width": None,
                "lane_rate": 1.0,
                "lane_burst": 1,
            },
        )
        self.assertEqual(recipe.sms.body, "Hi {name}, your code is {code}.")
        config = recipe.sms.config()
        self.assertEqual(config.base_url, "http://127.0.0.1:8099")
        self.assertEqual(config.account_sid, ENV["TWILIO_ACCOUNT_SID"])
        self.assertEqual(config.auth_token.reveal(), ENV["TWILIO_AUTH_TOKEN"])
        self.assertEqual(config.auth_token.sources, ("TWILIO_AUTH_TOKEN",))
        self.assertEqual(config.from_number, "+12125550100")
        self.assertIsNone(config.messaging_service_sid)
        self.assertEqual((config.max_body, config.resend_check), (320, True))
        self.assertEqual((config.connect_timeout, config.timeout), (10.0, 30.0))
        for shown in (repr(recipe), repr(config)):
            self.assertNotIn(ENV["TWILIO_AUTH_TOKEN"], shown)

        with (DATA / "messages.csv").open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        sent, refused = [], []
        for row in rows:
            message = recipe.message(row, id=row["id"])
            try:
                sent.append(check_message(message, config))
            except BadMessage as exc:
                refused.append((row["id"], exc.field))
        self.assertEqual(refused, [("order-1004", "to")])
        self.assertEqual(len(sent), len(rows) - 1)
        self.assertEqual(sent[0].body, "Hi Ada, your code is 481516.")
        self.assertEqual(sent[1].to, "+12125550102")
        self.assertEqual({message.from_ for message in sent}, {None})

    def test_sms_needs_its_credentials(self) -> None:
        """Without the Twilio variables, sms.yaml has one problem at each
        line that names one."""
        with self.assertRaises(RecipeError) as caught:
            load_recipe(RECIPES / "sms.yaml", environ={"API_TOKEN": "x"})
        self.assertEqual(
            [problem.message for problem in caught.exception.problems],
            [
                "sms.account_sid: environment variable TWILIO_ACCOUNT_SID is not set",
                "sms.auth_token: environment variable TWILIO_AUTH_TOKEN is not set",
            ],
        )

    def test_api(self) -> None:
        """api.yaml calls the fake X API's timeline endpoint for each user of
        users.jsonl, three pages at most, one record per tweet; its ApiConfig
        carries the bearer token from the environment, masked."""
        recipe = load_recipe(RECIPES / "api.yaml", environ=ENV)
        assert isinstance(recipe, ApiRecipe)
        self.assertEqual(recipe.kind, "api")
        spec = recipe.input
        self.assertEqual((spec.path, spec.format), (DATA / "users.jsonl", "jsonl"))
        self.assertEqual((spec.priority_field, spec.id_field), ("priority", "id"))
        self.assertEqual(recipe.state.durability, "normal")
        self.assertEqual(recipe.queue.width, 4)
        self.assertEqual(recipe.queue.lanes, LaneSpec(width=None, rate=10.0, burst=1))
        config = recipe.api.config()
        self.assertEqual(config.base_url, "http://127.0.0.1:8098")
        self.assertEqual(config.endpoint, "GET /2/users/{id}/tweets")
        assert config.token is not None
        self.assertEqual(config.token.reveal(), ENV["API_TOKEN"])
        self.assertEqual(
            config.params, (("max_results", "20"), ("tweet.fields", "created_at"))
        )
        self.assertEqual(
            (config.token_field, config.token_param, config.max_pages),
            ("meta.next_token", "pagination_token", 3),
        )
        self.assertEqual((config.records, config.items_field), ("item", "data"))
        self.assertEqual(config.max_retry_after, 1200.0)
        self.assertEqual(config.fields, frozenset({"id"}))
        self.assertNotIn(ENV["API_TOKEN"], repr(config))
        self.assertNotIn(ENV["API_TOKEN"], repr(recipe))
        with (DATA / "users.jsonl").open(encoding="utf-8") as f:
            paths = [config.fill_path(json.loads(line)) for line in f]
        self.assertEqual(paths[0], "/2/users/2244994945/tweets")
        self.assertEqual(len(paths), 4)

    def test_x_user_tweets(self) -> None:
        """x-user-tweets.yaml calls the real X API v2's user timeline with
        the bearer token from X_BEARER_TOKEN, 100 posts a page, following
        meta.next_token as pagination_token for up to 5 pages, one record
        per post."""
        recipe = load_recipe(RECIPES / "x-user-tweets.yaml", environ=ENV)
        assert isinstance(recipe, ApiRecipe)
        config = recipe.api.config()
        self.assertEqual(config.base_url, "https://api.x.com")
        self.assertEqual(config.endpoint, "GET /2/users/{id}/tweets")
        assert config.token is not None
        self.assertEqual(config.token.reveal(), ENV["X_BEARER_TOKEN"])
        self.assertEqual(
            (config.pagination, config.token_field, config.token_param),
            ("token", "meta.next_token", "pagination_token"),
        )
        self.assertEqual(config.max_pages, 5)
        self.assertEqual((config.records, config.items_field), ("item", "data"))
        self.assertIn(("max_results", "100"), config.params)
        self.assertNotIn(ENV["X_BEARER_TOKEN"], repr(recipe))

    def test_github_issues(self) -> None:
        """github-issues.yaml lists each repository's issues from GitHub's
        REST API with a bearer token, GitHub's media type and API version,
        100 a page following the Link header, one request at a time, a
        minute's wait for a secondary limit without Retry-After."""
        recipe = load_recipe(RECIPES / "github-issues.yaml", environ=ENV)
        assert isinstance(recipe, ApiRecipe)
        self.assertEqual(recipe.queue.width, 1)
        config = recipe.api.config()
        self.assertEqual(config.base_url, "https://api.github.com")
        self.assertEqual(config.endpoint, "GET /repos/{owner}/{repo}/issues")
        self.assertEqual(config.pagination, "link")
        self.assertEqual(config.max_pages, 50)
        headers = dict(config.headers)
        self.assertEqual(headers["X-GitHub-Api-Version"], "2022-11-28")
        self.assertEqual(headers["Accept"], "application/vnd.github+json")
        self.assertEqual(config.params, (("state", "all"), ("per_page", "100")))
        self.assertEqual((config.records, config.items_field), ("item", ""))
        self.assertEqual(config.default_retry_after, 60.0)
        self.assertEqual(config.fields, frozenset({"owner", "repo"}))
