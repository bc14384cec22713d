"""robots.txt obeyed (``fetch.robots: obey``): the cache's rules on a
``task.Clock`` with a scripted reader, then the fetcher and a run against a
local site that serves a robots.txt."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

import attrs
from hyperlink import DecodedURL
from twisted.internet import defer, reactor
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from fetchq.fetch import (
    DEFAULT_USER_AGENT,
    DNSFailed,
    FetchConfig,
    Fetcher,
    HTTPStatusError,
    HTTPThrottled,
    RobotsDisallowed,
    RobotsUnavailable,
    fetch_retry_policy,
)
from fetchq.fetch.robots import MAX_ROBOTS, RobotsCache
from fetchq.kinds.fetch import FetchKind
from fetchq.queue import ResizableDispatchQueue
from fetchq.recipe import load_recipe
from fetchq.run import Run
from tests.fetch_server import FaultServer, lean_variants

RULES = b"""\
User-agent: fetchq
Disallow: /private
Crawl-delay: 4

User-agent: *
Disallow: /
"""


def url(text: str) -> DecodedURL:
    """A parsed URL."""
    return DecodedURL.from_text(text)


class CacheTests(SynchronousTestCase):
    """The cache's rules, with a reader that answers what a test says."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.asked: list[str] = []
        self.answers: list[Any] = []  # (status, body), an exception, or a Deferred
        self.rates: list[tuple[str, float]] = []

    def read(self, where: str) -> Deferred[tuple[int, bytes]]:
        self.asked.append(where)
        answer = self.answers.pop(0)
        if isinstance(answer, Deferred):
            return answer
        if isinstance(answer, Exception):
            return fail(answer)
        return succeed(answer)

    def cache(self, agent: str = DEFAULT_USER_AGENT, **kw: Any) -> RobotsCache:
        return RobotsCache(
            self.read, self.clock, agent, lambda k, r: self.rates.append((k, r)), **kw
        )

    def test_rules_for_our_agent_and_read_once(self) -> None:
        """The group naming fetchq applies to fetchq/<version>; robots.txt is
        read once per site; its Crawl-delay goes to on_rate with the lane
        key."""
        self.answers = [(200, RULES)]
        cache = self.cache()
        self.successResultOf(cache.check(url("https://a.example/page")))
        failure = self.failureResultOf(
            cache.check(url("https://a.example/private/x")), RobotsDisallowed
        )
        self.assertIn("/private/x", str(failure.value))
        self.assertEqual(self.asked, ["https://a.example/robots.txt"])
        self.assertEqual(self.rates, [("a.example", 0.25)])

    def test_other_agent_gets_the_star_group(self) -> None:
        """Another User-Agent falls under "*", which disallows everything."""
        self.answers = [(200, RULES)]
        cache = self.cache("somebot/2.0")
        self.failureResultOf(
            cache.check(url("http://a.example/page")), RobotsDisallowed
        )

    def test_sites_are_scheme_host_and_port(self) -> None:
        """http, https and another port are three sites, each read once; a
        non-default port is part of the robots.txt URL and the lane key."""
        self.answers = [
            (404, b""),
            (404, b""),
            (200, b"User-agent: *\nRequest-rate: 1/10s\n"),
        ]
        cache = self.cache()
        for text in ("http://a.example/", "https://a.example/", "http://a.example:81/"):
            self.successResultOf(cache.check(url(text)))
            self.successResultOf(cache.check(url(text + "again")))
        self.assertEqual(
            self.asked,
            [
                "http://a.example/robots.txt",
                "https://a.example/robots.txt",
                "http://a.example:81/robots.txt",
            ],
        )
        self.assertEqual(self.rates, [("a.example:81", 0.1)])

    def test_4xx_allows_everything(self) -> None:
        """404, 410, 401 and 403: no rules."""
        for status in (404, 410, 401, 403):
            self.answers = [(status, b"User-agent: *\nDisallow: /\n")]
            self.successResultOf(self.cache().check(url("http://a.example/x")))

    def test_5xx_holds_the_site_then_asks_again(self) -> None:
        """A 503 (or 429) robots.txt: every check fails RobotsUnavailable, a
        Throttled whose delay is what is left of the retry period, without
        asking again; after it, robots.txt is read again."""
        self.answers = [(503, b""), (200, b"User-agent: *\nDisallow: /no\n")]
        cache = self.cache(retry=60.0)
        error = self.failureResultOf(
            cache.check(url("http://a.example/x")), RobotsUnavailable
        ).value
        self.assertEqual(error.delay, 60.0)
        self.assertIn("HTTP 503", str(error))
        self.clock.advance(45)
        error = self.failureResultOf(
            cache.check(url("http://a.example/y")), RobotsUnavailable
        ).value
        self.assertEqual(error.delay, 15.0)
        self.assertEqual(len(self.asked), 1)
        self.clock.advance(15)
        self.successResultOf(cache.check(url("http://a.example/y")))
        self.failureResultOf(cache.check(url("http://a.example/no")), RobotsDisallowed)
        self.assertEqual(len(self.asked), 2)

    def test_no_answer_is_the_fetch_error_and_asked_again(self) -> None:
        """A robots.txt that cannot be fetched at all (DNS) fails the check
        with that error, and the next check asks again."""
        self.answers = [DNSFailed("DNS lookup failed"), (404, b"")]
        cache = self.cache()
        self.failureResultOf(cache.check(url("http://a.example/x")), DNSFailed)
        self.successResultOf(cache.check(url("http://a.example/x")))
        self.assertEqual(len(self.asked), 2)

    def test_checks_wait_for_one_read(self) -> None:
        """Checks of a site arriving while its robots.txt is read wait for
        that one read; a cancelled waiter leaves the others be."""
        reading: Deferred[tuple[int, bytes]] = Deferred()
        self.answers = [reading]
        cache = self.cache()
        first = cache.check(url("http://a.example/1"))
        second = cache.check(url("http://a.example/private"))
        third = cache.check(url("http://a.example/3"))
        third.cancel()
        self.failureResultOf(third, CancelledError)
        self.assertNoResult(first)
        reading.callback((200, RULES))
        self.successResultOf(first)
        self.failureResultOf(second, RobotsDisallowed)
        self.assertEqual(len(self.asked), 1)

    def test_bounded(self) -> None:
        """The cache keeps at most ``size`` sites, dropping the least
        recently used."""
        self.answers = [(404, b"")] * 4
        cache = self.cache(size=2)
        for host in ("a", "b", "a", "c"):
            self.successResultOf(cache.check(url(f"http://{host}.example/")))
        self.assertEqual(len(cache), 2)
        self.successResultOf(cache.check(url("http://a.example/")))
        self.assertEqual(len(self.asked), 3)  # a kept, b dropped


class FetcherRobotsTests(TestCase):
    """The fetcher obeying a local site's robots.txt."""

    http = "treq"  # "lean" in the Lean copy

    def setUp(self) -> None:
        self.site = FaultServer(reactor).start()
        self.addCleanup(self.site.close)
        self.site.robots = (200, RULES)

    def fetcher(self, **changes: Any) -> Fetcher:
        config = FetchConfig(
            connect_timeout=2, headers_timeout=2, body_timeout=2, robots="obey"
        )
        changes.setdefault("http", self.http)
        fetcher = Fetcher(attrs.evolve(config, **changes), reactor, 2, environ={})
        self.addCleanup(fetcher.close)
        return fetcher

    def paths(self) -> list[str]:
        return [target.split("?")[0] for _, target, _, _ in self.site.requests]

    async def test_disallowed_never_fetched_and_not_retried(self) -> None:
        """A disallowed URL fails with RobotsDisallowed after one attempt and
        is never requested; an allowed one is; robots.txt is read once."""
        queue = ResizableDispatchQueue(
            self.fetcher(), 2, retry=fetch_retry_policy(5, 0.01, 0.01), clock=reactor
        )
        ok = await queue.put(self.site.url("/ok?size=10"))
        self.assertEqual(ok.result.status, 200)
        failure = await self.assertFailure(
            queue.put(self.site.url("/private/a")), Exception
        )
        job = failure.job  # type: ignore[attr-defined]
        self.assertIsInstance(job.failure.value, RobotsDisallowed)
        self.assertEqual(job.attempts, 1)
        self.assertEqual(self.paths(), ["/robots.txt", "/ok"])

    async def test_redirect_to_a_disallowed_path(self) -> None:
        """Each redirect hop is checked: a redirect to /private stops there."""
        d = self.fetcher().fetch(self.site.url("/redirect?to=/private/x"))
        await self.assertFailure(d, RobotsDisallowed)
        self.assertEqual(self.paths(), ["/robots.txt", "/redirect"])

    async def test_user_agent_header_is_the_agent(self) -> None:
        """With another User-Agent header, the "*" group applies."""
        fetcher = self.fetcher(headers={"User-Agent": "otherbot/1"})
        await self.assertFailure(fetcher.fetch(self.site.url("/ok")), RobotsDisallowed)
        self.assertEqual(self.site.requests[0][2]["user-agent"], "otherbot/1")

    async def test_unreachable_robots_holds_the_host(self) -> None:
        """A robots.txt answering 503: RobotsUnavailable, a Throttled (its
        lane is held), and the page is not fetched."""
        self.site.robots = (503, b"busy")
        d = self.fetcher().fetch(self.site.url("/ok"))
        error = await self.assertFailure(d, RobotsUnavailable)
        self.assertNotIsInstance(error, HTTPThrottled)
        self.assertEqual(self.paths(), ["/robots.txt"])

    async def test_only_the_first_500_kib_is_read(self) -> None:
        """A robots.txt past MAX_ROBOTS: the rules within it apply, those
        after it do not."""
        filler = b"# " + b"x" * 97 + b"\n"
        body = (
            b"User-agent: *\nDisallow: /early\n"
            + filler * (MAX_ROBOTS // len(filler) + 10)
            + b"Disallow: /late\n"
        )
        self.site.robots = (200, body)
        fetcher = self.fetcher()
        await self.assertFailure(
            fetcher.fetch(self.site.url("/early")), RobotsDisallowed
        )
        # /late is fetched (the server has no such path), not disallowed.
        error = await self.assertFailure(
            fetcher.fetch(self.site.url("/late")), HTTPStatusError
        )
        self.assertEqual(error.status, 404)

    async def test_crawl_delay_slows_the_lane(self) -> None:
        """Crawl-delay 4 sets the host's lane rate to 0.25/s when the recipe's
        per-host rate is faster, and leaves a slower one alone; the rate it
        sets is also handed to ``share_lane_rate`` (a shared run's store)."""
        config = FetchConfig(robots="obey")
        host = f"127.0.0.1:{self.site.port_number}"
        for recipe_rate, expected in ((10.0, 0.25), (0.1, 0.1)):
            kind = FetchKind(config, reactor)
            shared: list[tuple[str, float]] = []
            kind.share_lane_rate = lambda key, rate, to=shared: to.append((key, rate))
            self.addCleanup(kind.close)
            queue = ResizableDispatchQueue(
                kind.job, 2, clock=reactor, lane_rate=recipe_rate
            )
            self.addCleanup(queue.stop)
            kind.bind(queue)
            await queue.put(self.site.url("/ok?size=1"), key=host)
            lane = queue.lane(host)
            assert lane is not None
            self.assertEqual(lane.rate, expected)
            self.assertEqual(shared, [(host, 0.25)] if expected == 0.25 else [])


FETCH_RECIPE = """\
kind: fetch
input:
  path: urls.txt
output:
  path: out/result.jsonl
run:
  max_failures: 3
fetch:
  robots: obey
  connect_timeout: 2s
"""


class RunRobotsTests(TestCase):
    """A run with robots: obey."""

    def setUp(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fetchq-robots-"))
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.site = FaultServer(reactor).start()
        self.addCleanup(self.site.close)
        self.site.robots = (200, RULES)

    @defer.inlineCallbacks
    def test_disallowed_rows_recorded_not_counted(self) -> Generator[Any, Any, None]:
        """Ten disallowed URLs with max_failures 3 do not stop the run: each
        is recorded failed with error RobotsDisallowed, after one attempt.
        (No Crawl-delay here: at 4 s it would pace the 11 URLs over 8 s.)"""
        self.site.robots = (200, RULES.replace(b"Crawl-delay: 4\n", b""))
        urls = [self.site.url(f"/private/{n}") for n in range(10)]
        urls.append(self.site.url("/ok?size=3"))
        (self.folder / "urls.txt").write_text("".join(u + "\n" for u in urls))
        recipe = self.folder / "recipe.yaml"
        recipe.write_text(FETCH_RECIPE)
        with open(self.folder / "err.txt", "w") as err:
            code = yield Run(load_recipe(recipe), reactor, stream=err).run()
        self.assertEqual(code, 0)
        lines = (self.folder / "out" / "result.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines]
        failed = [r for r in records if r["outcome"] == "failed"]
        self.assertEqual(len(failed), 10)
        self.assertEqual({r["error"]["name"] for r in failed}, {"RobotsDisallowed"})
        self.assertEqual({r["attempts"] for r in failed}, {1})
        self.assertEqual(sum(r["outcome"] == "ok" for r in records), 1)

    @defer.inlineCallbacks
    def test_crawl_delay_shared_through_redis(self) -> Generator[Any, Any, None]:
        """On the Redis engine a site's Crawl-delay paces its host for every
        worker: the worker that read robots.txt writes the lane's rate into
        the run's shared lane limits, where every worker's claims obey it."""
        from fetchq.shared_run import SharedRun
        from fetchq.store.redis import RedisStore, lane_name
        from tests import redis_server

        self.site.robots = (200, b"User-agent: *\nCrawl-delay: 0.2\n")
        urls = [self.site.url(f"/ok?size=3&n={n}") for n in range(3)]
        (self.folder / "urls.txt").write_text("".join(u + "\n" for u in urls))
        server = redis_server.shared()
        name = redis_server.run_name()
        recipe = self.folder / "recipe.yaml"
        recipe.write_text(
            FETCH_RECIPE + f"state:\n  url: {server.url}\n  run: {name}\n"
        )
        with open(self.folder / "err.txt", "w") as err:
            code = yield SharedRun(load_recipe(recipe), reactor, stream=err).run()
        self.assertEqual(code, 0)
        store = yield RedisStore.connect(server.url, name, reactor)
        self.addCleanup(store.close)
        host = f"127.0.0.1:{self.site.port_number}"
        rate = yield store.command(
            "HGET", store.prefix + "lcfg:" + lane_name(host), "rate"
        )
        self.assertEqual(float(rate), 5.0)


lean_variants(globals(), FetcherRobotsTests)
