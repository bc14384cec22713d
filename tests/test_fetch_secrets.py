"""Secrets stay where they were meant to go.

A recipe's ``${ENV}`` values (and values under names such as ``api_key``)
are :class:`~fetchq.secrets.Secret` all the way into the fetcher: sent as
they are, shown as ``***`` in every URL and message a run keeps (output
records, the SQLite state, the progress stream), and a header carrying one
is not sent to another origin after a redirect.  Real runs and fetches over
loopback sockets against servers the tests start.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from fetchq.api import ApiCaller, ApiConfig, ApiStatusError
from fetchq.fetch import FetchConfig, Fetcher, TooManyRedirects
from fetchq.http.masking import secret_masker
from fetchq.recipe import load_recipe
from fetchq.run import FetchRun
from fetchq.secrets import Secret
from tests.fetch_server import FaultServer, lean_variants

# Distinctive, with characters a URL percent-encodes; "9f8e7d" never is.
SECRET = "sk-live/9f8e7d 6c+5b4a"
CORE = "9f8e7d"

RECIPE = """\
kind: fetch
input:
  path: urls.txt
output:
  path: out/result.jsonl
queue:
  width: 4
retry:
  max_attempts: 1
fetch:
  connect_timeout: 2s
  headers_timeout: 5s
  body_timeout: 5s
  max_redirects: 3
  params:
    api_key: ${FETCHQ_TEST_KEY}
  headers:
    X-Api-Key: ${FETCHQ_TEST_KEY}
    X-Plain: public
"""


def forms(secret: str) -> list[str]:
    """The secret as it is and in each percent-encoded form."""
    return [secret, quote(secret, safe=""), quote(secret), quote_plus(secret), CORE]


class RecipeRunTests(TestCase):
    """A whole ``kind: fetch`` run with a secret param and header."""

    def setUp(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fetchq-secrets-"))
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.here = FaultServer(reactor).start()
        self.addCleanup(self.here.close)
        self.there = FaultServer(reactor).start()  # another port: another origin
        self.addCleanup(self.there.close)

    async def test_secret_nowhere_in_records_state_or_messages(self) -> None:
        """With ``params: {api_key: ${KEY}}`` and ``X-Api-Key: ${KEY}``:
        the server gets the real key; the output records (ok ones with
        ``final_url``, one whose server echoed the key into its redirect,
        a TooManyRedirects whose next hop carries it, an HTTP 404), every
        file of the run (the SQLite state with its WAL) and the progress
        stream hold no form of the key, and ``final_url`` shows
        ``api_key=***``.  A redirect to another origin does not get
        ``X-Api-Key`` (a plain header still goes); a same-origin one does."""
        here, there = self.here, self.there
        urls = [
            here.url("/ok?size=10"),
            here.url("/mirror?n=1"),
            here.url("/mirror?n=99"),
            here.url("/status?code=404"),
            here.url("/redirect?to=" + quote(there.url("/echo"), safe="")),
            here.url("/redirect?to=" + quote(here.url("/echo"), safe="")),
        ]
        (self.folder / "urls.txt").write_text("\n".join(urls) + "\n")
        (self.folder / "recipe.yaml").write_text(RECIPE)
        recipe = load_recipe(
            self.folder / "recipe.yaml", environ={"FETCHQ_TEST_KEY": SECRET}
        )
        stream = io.StringIO()
        code = await FetchRun(recipe, reactor, stream=stream).run()
        self.assertEqual(code, 0)

        lines = (self.folder / "out" / "result.jsonl").read_text().splitlines()
        records = {r["id"]: r for r in map(json.loads, lines)}
        self.assertEqual(len(records), len(urls))
        ok = records["0"]
        self.assertEqual(ok["outcome"], "ok")
        self.assertEqual(ok["final_url"], urls[0] + "&api_key=***")
        self.assertEqual(records["1"]["outcome"], "ok")
        self.assertIn("api_key=***", records["1"]["final_url"])
        self.assertEqual(records["2"]["error"]["name"], "TooManyRedirects")
        self.assertIn("api_key=***", records["2"]["error"]["message"])
        self.assertEqual(records["3"]["error"]["name"], "HTTPStatusError")

        # The key was sent where it was meant to go ...
        sent = [target for _, target, _, _ in here.requests]
        self.assertIn(f"/ok?size=10&api_key={quote(SECRET, safe='')}", sent)
        same_origin = [h for _, t, h, _ in here.requests if t.startswith("/echo")]
        self.assertEqual([h.get("x-api-key") for h in same_origin], [SECRET])
        # ... and not to another origin, where a plain header still goes.
        crossed = [h for _, t, h, _ in there.requests if t.startswith("/echo")]
        self.assertEqual(len(crossed), 1)
        self.assertNotIn("x-api-key", crossed[0])
        self.assertEqual(crossed[0].get("x-plain"), "public")

        # No form of it anywhere the run wrote or showed.
        written = {
            path: path.read_bytes() for path in self.folder.rglob("*") if path.is_file()
        }
        self.assertTrue(any(p.suffix in (".db", ".sqlite") for p in written), written)
        shown = stream.getvalue()
        for form in forms(SECRET):
            self.assertNotIn(form, "\n".join(lines), form)
            self.assertNotIn(form, shown, form)
            for path, data in written.items():
                if path.name in ("urls.txt", "recipe.yaml"):
                    continue
                self.assertNotIn(form.encode(), data, f"{form!r} in {path}")


class FetcherTests(TestCase):
    """The fetcher alone, with Secret values in its FetchConfig."""

    http = "treq"  # "lean" in the Lean copy

    def setUp(self) -> None:
        self.server = FaultServer(reactor).start()
        self.addCleanup(self.server.close)

    def fetcher(self, **config: Any) -> Fetcher:
        config.setdefault("http", self.http)
        fetcher = Fetcher(FetchConfig(headers_timeout=5, **config), reactor)
        self.addCleanup(fetcher.close)
        return fetcher

    async def test_secret_header_dropped_cross_origin_only(self) -> None:
        """A header whose value is a Secret goes on a same-origin redirect
        and is dropped when the redirect changes origin (``localhost``
        against ``127.0.0.1``), as Authorization always is; the same header
        with a plain value is kept."""
        key = Secret("abc123secret")
        fetcher = self.fetcher(headers={"X-Api-Key": key, "X-Other": "plain"})
        same = self.server.url("/echo")
        other = self.server.url("/echo", host="localhost")
        await fetcher.fetch(self.server.url("/redirect?to=" + quote(same)))
        self.assertEqual(self.server.requests[-1][2]["x-api-key"], "abc123secret")
        await fetcher.fetch(self.server.url("/redirect?to=" + quote(other)))
        self.assertNotIn("x-api-key", self.server.requests[-1][2])
        self.assertEqual(self.server.requests[-1][2]["x-other"], "plain")
        plain = self.fetcher(headers={"X-Api-Key": "not-a-secret"})
        await plain.fetch(self.server.url("/redirect?to=" + quote(other)))
        self.assertEqual(self.server.requests[-1][2]["x-api-key"], "not-a-secret")

    async def test_config_repr_and_errors_hide_the_secret(self) -> None:
        """``repr(FetchConfig)`` shows a Secret param masked, and a
        TooManyRedirects whose next hop echoes it shows ``***``."""
        config = FetchConfig(params={"token": Secret(SECRET)})
        self.assertNotIn(CORE, repr(config))
        fetcher = self.fetcher(params={"token": Secret(SECRET)}, max_redirects=1)
        d = fetcher.fetch(self.server.url("/mirror?n=5"))
        error = await self.assertFailure(d, TooManyRedirects)
        self.assertIn("token=***", str(error))
        self.assertNotIn(CORE, str(error))
        self.assertNotIn(CORE, repr(error.args))


class ApiTests(TestCase):
    """The api kind's error messages hide its secrets too."""

    async def test_error_detail_echoing_the_key_is_masked(self) -> None:
        """An API that answers 400 with a detail quoting the secret
        ``api_key`` parameter gives an ApiStatusError whose message (which
        goes into the output record and the state) shows ``***``."""
        server = FaultServer(reactor).start()
        self.addCleanup(server.close)
        detail = json.dumps({"detail": f"api_key {SECRET} is not valid"}).encode()
        server.canned["bad-key"] = (400, detail, {"Content-Type": "application/json"})
        caller = ApiCaller(
            ApiConfig(
                base_url=server.url(""),
                path="/canned",
                params={"name": "bad-key", "api_key": Secret(SECRET)},
            ),
            reactor,
        )
        self.addCleanup(caller.close)
        d = caller.call(caller.first_page({}))
        error = await self.assertFailure(d, ApiStatusError)
        self.assertIn("api_key *** is not valid", str(error))
        self.assertNotIn(CORE, str(error))


class MaskerTests(SynchronousTestCase):
    """secret_masker: the rule the README states."""

    def test_forms_and_lengths(self) -> None:
        """A secret of 4+ characters is masked anywhere, plain or
        percent-encoded in any case; a shorter one only as a whole query
        value; no secret means no masker."""
        self.assertIsNone(secret_masker(["plain", None, Secret("")]))
        mask = secret_masker([Secret(SECRET), Secret("42"), "not secret"])
        assert mask is not None
        for form in forms(SECRET)[:-1]:
            self.assertEqual(mask(f"x?k={form}&pin=42"), "x?k=***&pin=***")
            self.assertEqual(mask(f"said {form.lower()}."), "said ***.")
        self.assertEqual(mask("page=420&id=1042"), "page=420&id=1042")
        self.assertEqual(mask("not secret"), "not secret")


lean_variants(globals(), FetcherTests)
