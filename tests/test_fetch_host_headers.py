"""Per-host headers (``fetch.host_headers``) on the wire, against a server
on 127.0.0.1 reached as two hosts (``localhost`` and ``127.0.0.1``), and the
recipe keys of issue 12 loaded into the fetcher's configuration."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from fetchq.fetch import FetchConfig, Fetcher
from fetchq.fetch.fetcher import _HostHeaders
from fetchq.recipe import RecipeError, load_recipe
from fetchq.run import fetch_config
from fetchq.secrets import Secret
from tests.fetch_server import FaultServer, lean_variants
from tests.tls_ca import ServerTLS, TestCA, write

SECRET = "s3cr3t-t0ken-value"


class HostHeaderTests(TestCase):
    """Which request carries which host's headers."""

    http = "treq"  # "lean" in the Lean copy

    def setUp(self) -> None:
        self.server = FaultServer(reactor).start()
        self.addCleanup(self.server.close)

    def fetcher(self, **kw: Any) -> Fetcher:
        config = FetchConfig(
            headers={"X-Team": "all", "Accept": "*/*"},
            host_headers={
                "localhost": {"Authorization": Secret(SECRET), "X-Team": "local"}
            },
            **{"http": self.http, **kw},
        )
        fetcher = Fetcher(config, reactor, 2, environ={})
        self.addCleanup(fetcher.close)
        return fetcher

    def seen(self) -> list[dict[str, str]]:
        return [headers for _, _, headers, _ in self.server.requests]

    async def test_only_the_matching_host(self) -> None:
        """localhost gets its headers (replacing X-Team of the general ones);
        127.0.0.1, the same server under another name, gets none of them."""
        fetcher = self.fetcher()
        await fetcher.fetch(self.server.url("/echo", host="localhost"))
        await fetcher.fetch(self.server.url("/echo"))
        local, other = self.seen()
        self.assertEqual(local["authorization"], SECRET)
        self.assertEqual(local["x-team"], "local")
        self.assertEqual(local["accept"], "*/*")
        self.assertNotIn("authorization", other)
        self.assertEqual(other["x-team"], "all")

    async def test_not_sent_after_a_redirect_to_another_host(self) -> None:
        """A redirect from localhost to 127.0.0.1: the first request carries
        the header, the redirected one does not, and the secret shows
        nowhere in the result."""
        target = self.server.url("/echo")
        start = self.server.url(f"/redirect?to={target}", host="localhost")
        result = await self.fetcher().fetch(start)
        first, second = self.seen()
        self.assertEqual(first["authorization"], SECRET)
        self.assertNotIn("authorization", second)
        self.assertEqual(result.redirects, 1)
        self.assertNotIn(SECRET, json.dumps(result.final_url))

    async def test_not_sent_over_http_after_https(self) -> None:
        """A redirect from https://localhost to http://localhost (the same
        host, in clear text): the header goes with the https request only."""
        ca = TestCA()
        cert, key = ca.issue("localhost")
        tls_site = FaultServer(reactor).start(tls=ServerTLS(cert, key))
        self.addCleanup(tls_site.close)
        bundle = write(Path(tempfile.mkdtemp()), "ca.pem", ca.cert_pem)
        target = self.server.url("/echo", host="localhost")
        start = tls_site.url(f"/redirect?to={target}", host="localhost")
        await self.fetcher(ca_bundle=str(bundle)).fetch(start)
        self.assertEqual(tls_site.requests[0][2]["authorization"], SECRET)
        self.assertNotIn("authorization", self.seen()[0])


class MatchTests(SynchronousTestCase):
    """Host patterns."""

    def test_exact_and_suffix(self) -> None:
        """An exact pattern matches that host only; ``*.example.com`` the
        names under example.com, not example.com itself."""
        exact = _HostHeaders("api.example.com", [])
        self.assertTrue(exact.matches("api.example.com"))
        self.assertFalse(exact.matches("x.api.example.com"))
        wild = _HostHeaders("*.example.com", [])
        self.assertTrue(wild.matches("a.example.com"))
        self.assertTrue(wild.matches("a.b.example.com"))
        self.assertFalse(wild.matches("example.com"))
        self.assertFalse(wild.matches("badexample.com"))

    def test_bad_patterns_refused(self) -> None:
        """A URL, a port or a lone star is not a host pattern."""
        for bad in ("https://a.example", "a.example:443", "*", "*.", ""):
            with self.assertRaises(ValueError):
                FetchConfig(host_headers={bad: {"X": "y"}})


RECIPE = """\
kind: fetch
input:
  path: urls.txt
output:
  path: out.jsonl
fetch:
  proxy: http://${PROXY_USER}:${PROXY_PASSWORD}@proxy.internal:3128
  no_proxy: [localhost, ".corp.example", "10.0.0.0/8"]
  host_headers:
    api.example.com:
      Authorization: Bearer ${API_TOKEN}
  tls:
    verify: false
  robots: obey
"""


class RecipeTests(SynchronousTestCase):
    """The new fetch keys, from a recipe to a FetchConfig."""

    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp())
        (self.dir / "urls.txt").write_text("http://a.example/\n")

    def load(self, text: str, **environ: str) -> Any:
        path = self.dir / "recipe.yaml"
        path.write_text(text)
        return load_recipe(path, environ=environ)

    def test_keys_reach_the_fetcher(self) -> None:
        """Proxy credentials stay secret, no_proxy joins, host headers keep
        their Secret, robots and verify pass through."""
        recipe = self.load(
            RECIPE, PROXY_USER="ann", PROXY_PASSWORD="pw0rd", API_TOKEN="t0k"
        )
        config = fetch_config(recipe)
        self.assertIsInstance(config.proxy, Secret)
        self.assertNotIn("pw0rd", repr(config))
        self.assertNotIn("t0k", repr(config))
        self.assertEqual(config.no_proxy, "localhost,.corp.example,10.0.0.0/8")
        self.assertEqual(config.host_headers[0][0], "api.example.com")
        self.assertIsInstance(config.host_headers[0][1][0][1], Secret)
        self.assertEqual((config.robots, config.verify), ("obey", False))

    def test_unusable_environment_proxy_is_reported(self) -> None:
        """An environment proxy the fetcher cannot use (socks) is a located
        recipe problem that says how to ignore it; proxy: none silences it."""
        text = RECIPE.split("fetch:")[0] + "fetch:\n  robots: ignore\n"
        with self.assertRaises(RecipeError) as caught:
            self.load(text, ALL_PROXY="socks5://p:1080")
        message = str(caught.exception)
        self.assertIn("fetch.proxy: the environment's proxy cannot be used", message)
        self.assertIn("ALL_PROXY: socks5 proxies are not supported", message)
        self.load(text + "  proxy: none\n", ALL_PROXY="socks5://p:1080")


lean_variants(globals(), HostHeaderTests)
