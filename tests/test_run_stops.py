"""A run that cannot succeed stops instead of marking every row done (issue
9, part 2): fatal failures (credentials refused, a recipe wrong for the
service) and the failure breaker, against the fakes and a real site on
loopback sockets."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from fetchq.breaker import FailureBreaker, MaxFailures
from fetchq.demo import DemoSite, SiteBehaviour
from fetchq.recipe import RecipeError, load_recipe
from fetchq.run import EXIT_FAILURES, EXIT_FATAL, Run
from fetchq.store import SQLiteStore
from fetchq.testing.api import serve as serve_api
from fetchq.testing.sms import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, FakeSMSProvider
from fetchq.testing.sms import serve as serve_sms

SMS_RECIPE = """\
kind: sms
input:
  path: messages.csv
  id_field: id
output:
  path: out/sent.jsonl
queue:
  width: 4
  per_sender:
    rate: 100/s
sms:
  base_url: {base}
  account_sid: ${{TWILIO_ACCOUNT_SID}}
  auth_token: ${{TWILIO_AUTH_TOKEN}}
  from: "{sender}"
  body: "Hi {{name}}"
"""

API_RECIPE = """\
kind: api
input:
  path: users.jsonl
  id_field: id
output:
  path: out/tweets.jsonl
queue:
  width: 4
api:
  base_url: {base}
  path: /2/users/{{id}}/tweets
  token: ${{API_TOKEN}}
"""

FETCH_RECIPE = """\
kind: fetch
input:
  path: urls.txt
output:
  path: out/result.jsonl
queue:
  width: 4
retry:
  max_attempts: 1
{run}
"""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class StopTestCase(TestCase):
    def setUp(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fetchq-stops-"))
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.err = self.folder / "stderr.txt"

    def set_env(self, **values: str) -> None:
        for name, value in values.items():
            old = os.environ.get(name)
            os.environ[name] = value
            if old is None:
                self.addCleanup(os.environ.pop, name, None)
            else:
                self.addCleanup(os.environ.__setitem__, name, old)

    @defer.inlineCallbacks
    def run_recipe(self, recipe: Path, **kw: Any) -> Generator[Any, Any, int]:
        with open(self.err, "w") as err:
            code = yield Run(load_recipe(recipe), reactor, stream=err, **kw).run()
        return code

    def said(self) -> str:
        return self.err.read_text()


class FatalTests(StopTestCase):
    def sms(
        self, sender: str = "+12125551000", **kw: Any
    ) -> tuple[FakeSMSProvider, Path]:
        provider = FakeSMSProvider(reactor, latency=0.005, **kw)
        served = serve_sms(reactor, provider=provider)
        self.addCleanup(served.stop)
        rows = ["id,to,name"] + [f"m{i},+1646555{2000 + i},Ann{i}" for i in range(30)]
        (self.folder / "messages.csv").write_text("\n".join(rows) + "\n")
        recipe = self.folder / "sms.yaml"
        recipe.write_text(SMS_RECIPE.format(base=served.url, sender=sender))
        return provider, recipe

    @defer.inlineCallbacks
    def test_sms_wrong_token_stops_and_leaves_rows_to_do(
        self,
    ) -> Generator[Any, Any, None]:
        """Issue 9's reproduction: an sms recipe with a wrong token.  The run
        stops with exit 3 and says what to fix; no row is recorded failed
        (all 30 are left to do); the re-run with the right token sends each
        message once and ends 0."""
        provider, recipe = self.sms()
        self.set_env(TWILIO_ACCOUNT_SID=DEFAULT_ACCOUNT_SID, TWILIO_AUTH_TOKEN="wrong")
        code = yield self.run_recipe(recipe)
        self.assertEqual(code, EXIT_FATAL)
        said = self.said()
        self.assertIn("AuthFailed", said)
        self.assertIn("sms.auth_token", said)
        self.assertEqual(read_jsonl(self.folder / "out" / "sent.jsonl"), [])
        state = load_recipe(recipe).state.path
        with SQLiteStore(state) as store:
            counts = store.counts()
        self.assertEqual((counts.finished, counts.pending + counts.claimed), (0, 30))
        self.assertEqual(provider.messages, [])
        self.set_env(TWILIO_AUTH_TOKEN=DEFAULT_AUTH_TOKEN)
        code = yield self.run_recipe(recipe)
        self.assertEqual(code, 0, self.said())
        records = read_jsonl(self.folder / "out" / "sent.jsonl")
        self.assertEqual(len(records), 30)
        self.assertEqual({r["outcome"] for r in records}, {"ok"})
        self.assertEqual(len(provider.messages), 30)
        self.assertEqual(provider.duplicates(), [])

    @defer.inlineCallbacks
    def test_sms_sender_not_on_the_account(self) -> Generator[Any, Any, None]:
        """The recipe's own sender refused by the provider (21606: not one of
        the account's numbers) is fatal too: exit 3, nothing failed."""
        _, recipe = self.sms(sender="+12125559999", senders=["+12125551000"])
        self.set_env(
            TWILIO_ACCOUNT_SID=DEFAULT_ACCOUNT_SID, TWILIO_AUTH_TOKEN=DEFAULT_AUTH_TOKEN
        )
        code = yield self.run_recipe(recipe)
        self.assertEqual(code, EXIT_FATAL)
        self.assertIn("21606", self.said())
        self.assertIn("sms.from", self.said())
        self.assertEqual(read_jsonl(self.folder / "out" / "sent.jsonl"), [])

    @defer.inlineCallbacks
    def test_api_wrong_token(self) -> Generator[Any, Any, None]:
        """An api recipe whose token the API refuses (401) stops with exit 3
        naming api.token; every row is left to do."""
        served = serve_api(reactor)
        self.addCleanup(served.stop)
        rows = [json.dumps({"id": str(100 + i)}) for i in range(12)]
        (self.folder / "users.jsonl").write_text("\n".join(rows) + "\n")
        recipe = self.folder / "api.yaml"
        recipe.write_text(API_RECIPE.format(base=served.url))
        self.set_env(API_TOKEN="not-the-token")
        code = yield self.run_recipe(recipe)
        self.assertEqual(code, EXIT_FATAL)
        self.assertIn("ApiAuthFailed", self.said())
        self.assertIn("api.token", self.said())
        self.assertEqual(read_jsonl(self.folder / "out" / "tweets.jsonl"), [])
        with SQLiteStore(load_recipe(recipe).state.path) as store:
            self.assertEqual(store.counts().finished, 0)


class BreakerRunTests(StopTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.site = DemoSite(
            reactor,
            SiteBehaviour(
                pages=1000,
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

    def recipe(self, pages: list[int], run: str = "") -> Path:
        urls = "".join(f"{self.base}/page/{n}\n" for n in pages)
        (self.folder / "urls.txt").write_text(urls)
        path = self.folder / "recipe.yaml"
        path.write_text(FETCH_RECIPE.format(run=run))
        return path

    def output(self) -> list[dict[str, Any]]:
        return read_jsonl(self.folder / "out" / "result.jsonl")

    @defer.inlineCallbacks
    def test_first_fifty_fail_the_same_way(self) -> Generator[Any, Any, None]:
        """By default, a run whose first 50 jobs all fail (404: no such
        page) stops with exit 4: none of the 300 rows is recorded failed,
        all are left to do; with max_failures 0 the next run does them all."""
        recipe = self.recipe(list(range(5000, 5300)))
        code = yield self.run_recipe(recipe)
        self.assertEqual(code, EXIT_FAILURES)
        self.assertIn("50 jobs in a row failed", self.said())
        self.assertIn("HTTPStatusError", self.said())
        self.assertEqual(self.output(), [])
        fetched = sum(self.site.requests.values())
        self.assertLess(fetched, 60)
        code = yield self.run_recipe(recipe, max_failures=MaxFailures.parse("0"))
        self.assertEqual(code, 0)
        records = self.output()
        self.assertEqual(len(records), 300)
        self.assertEqual({r["outcome"] for r in records}, {"failed"})

    @defer.inlineCallbacks
    def test_failures_between_successes_do_not_stop(self) -> Generator[Any, Any, None]:
        """Failures that are not in a row (every other page missing) never
        trip the default breaker: every row is recorded."""
        pages = [n if n % 2 else 5000 + n for n in range(200)]
        code = yield self.run_recipe(self.recipe(pages))
        self.assertEqual(code, 0)
        records = self.output()
        self.assertEqual(len(records), 200)
        self.assertEqual(sum(r["outcome"] == "failed" for r in records), 100)

    @defer.inlineCallbacks
    def test_percentage_limit_from_the_recipe(self) -> Generator[Any, Any, None]:
        """run.max_failures: 30% stops a run in which half the jobs fail,
        once 50 have finished; what finished keeps its records and the rest
        is left to do."""
        pages = [n if n % 2 else 5000 + n for n in range(400)]
        recipe = self.recipe(pages, run="run:\n  max_failures: 30%")
        code = yield self.run_recipe(recipe)
        self.assertEqual(code, EXIT_FAILURES)
        self.assertIn("more than 30%", self.said())
        records = self.output()
        self.assertTrue(50 <= len(records) < 400, len(records))
        with SQLiteStore(load_recipe(recipe).state.path) as store:
            counts = store.counts()
        self.assertEqual(counts.pending + counts.claimed + counts.finished, 400)
        self.assertGreater(counts.pending, 0)


class BreakerTests(TestCase):
    def test_parse(self) -> None:
        """Limits parse from a count, a percentage or 0; anything else is a
        ValueError that says what is expected; a recipe's bad value is a
        located problem."""
        self.assertEqual(MaxFailures.parse("50"), MaxFailures(50, None))
        self.assertEqual(MaxFailures.parse(7), MaxFailures(7, None))
        self.assertEqual(MaxFailures.parse("12.5%"), MaxFailures(None, 0.125))
        self.assertEqual(MaxFailures.parse("0"), MaxFailures(None, None))
        for bad in ("x", "-1", "1.5", "150%", "0%", True):
            self.assertRaises(ValueError, MaxFailures.parse, bad)
        folder = Path(tempfile.mkdtemp(prefix="fetchq-breaker-"))
        self.addCleanup(shutil.rmtree, folder, True)
        (folder / "urls.txt").write_text("http://a/\n")
        (folder / "r.yaml").write_text(
            FETCH_RECIPE.format(run="run:\n  max_failures: lots")
        )
        error = self.assertRaises(RecipeError, load_recipe, folder / "r.yaml")
        self.assertIn("r.yaml:11:", str(error.problems[0]))
        self.assertIn("run.max_failures", str(error.problems[0]))

    def test_breaker(self) -> None:
        """In a row: trips at the Nth failure in a row, a success resets the
        count; percentage: trips only past the share and past 50 jobs."""
        breaker = FailureBreaker(MaxFailures(3, None))
        self.assertIsNone(breaker.fail())
        self.assertIsNone(breaker.fail())
        breaker.succeeded()
        self.assertIsNone(breaker.fail())
        self.assertIsNone(breaker.fail())
        self.assertEqual(breaker.fail(), "3 jobs in a row failed")
        share = FailureBreaker(MaxFailures(None, 0.5))
        trips = []
        for n in range(100):
            if n % 3 == 0:
                share.succeeded()
            else:
                trips.append(share.fail())
        first = next(i for i, t in enumerate(trips) if t is not None)
        self.assertEqual(share.ok + share.failed, 100)
        self.assertGreaterEqual(first, 32)
        never = FailureBreaker(MaxFailures(None, None))
        self.assertEqual({never.fail() for _ in range(1000)}, {None})
