"""The demo site over real loopback sockets: it slows down under load, rate
limits a greedy client with 429 + Retry-After, fails some pages once with 500,
has 404s and slow bodies."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import treq
from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from fetchq.demo import DemoSite, SiteBehaviour
from fetchq.demo.site import page_body


class DemoSiteTests(TestCase):
    def start(self, **kw: Any) -> str:
        site = DemoSite(reactor, SiteBehaviour(**kw))
        port = site.listen()
        self.addCleanup(port.stopListening)
        self.site = site
        return f"http://127.0.0.1:{port.getHost().port}"

    @defer.inlineCallbacks
    def get(self, url: str) -> Generator[Any, Any, tuple[int, bytes, Any]]:
        response = yield treq.get(url, persistent=False)
        body = yield response.content()
        return response.code, body, response.headers

    @defer.inlineCallbacks
    def test_pages_and_errors(self) -> Generator[Any, Any, None]:
        """A page answers 200 with its known body; a multiple of error_every
        answers 500 once and 200 after; a multiple of missing_every is 404,
        and so is a page past the end."""
        base = self.start(pages=300, error_every=7, missing_every=11, slow_every=1000)
        code, body, _ = yield self.get(f"{base}/page/5")
        self.assertEqual((code, body), (200, page_body(5, 1024)))
        self.assertEqual(len(body), 1024)
        first = yield self.get(f"{base}/page/14")
        second = yield self.get(f"{base}/page/14")
        self.assertEqual((first[0], second[0]), (500, 200))
        missing = yield self.get(f"{base}/page/22")
        beyond = yield self.get(f"{base}/page/300")
        self.assertEqual((missing[0], beyond[0]), (404, 404))

    @defer.inlineCallbacks
    def test_rate_limit(self) -> Generator[Any, Any, None]:
        """A client past its burst gets 429 with Retry-After.  (Its bucket
        refills one request per 100 s, so however slowly a busy machine sends
        the five, the fourth and fifth find it empty.)"""
        base = self.start(client_rate=0.01, client_burst=3, retry_after=2)
        results = yield defer.gatherResults(
            [self.get(f"{base}/page/{i}") for i in range(1, 6)]
        )
        codes = sorted(code for code, _, _ in results)
        self.assertEqual(codes, [200, 200, 200, 429, 429])
        limited = [h for code, _, h in results if code == 429]
        self.assertEqual(limited[0].getRawHeaders(b"retry-after"), [b"2"])

    @defer.inlineCallbacks
    def test_slow_body(self) -> Generator[Any, Any, None]:
        """A slow page takes at least slow_seconds."""
        base = self.start(slow_every=3, slow_seconds=0.2, capacity=1, latency=0.05)
        start = reactor.seconds()
        code, body, _ = yield self.get(f"{base}/page/3")
        self.assertEqual(code, 200)
        self.assertEqual(body, page_body(3, 1024))
        self.assertGreaterEqual(reactor.seconds() - start, 0.2)

    @defer.inlineCallbacks
    def test_load(self) -> Generator[Any, Any, None]:
        """With more requests in flight than capacity, the site records them
        all as in flight at once, and none once they are answered.  (Each
        takes 1 s, so all four are in flight together however slowly a busy
        machine sends them; the test watches for that moment.)"""
        base = self.start(capacity=1, latency=1.0, slow_every=1000)
        ds = [self.get(f"{base}/page/{i}") for i in (1, 2, 4, 5)]
        done = defer.gatherResults(ds)
        most = 0
        while not done.called:
            most = max(most, self.site.inflight)
            yield task.deferLater(reactor, 0.005, lambda: None)
        results = yield done
        self.assertEqual([code for code, _, _ in results], [200] * 4)
        self.assertEqual(most, 4)
        self.assertEqual(self.site.inflight, 0)
