"""The fetcher as a queue job function: a mixed crawl of a faulty server runs
to the end, every job ending ok or with its named error after the retries the
policy allows."""

from __future__ import annotations

import hashlib
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import DeferredList
from twisted.trial.unittest import TestCase

from fetchq import JobFailed, ResizableDispatchQueue
from fetchq.fetch import (
    BadURL,
    FetchConfig,
    Fetcher,
    FetchError,
    FetchResult,
    check_url,
    fetch_retry_policy,
    host_key,
)
from tests.fetch_server import FaultServer, body_for

ATTEMPTS = 3


def plan() -> list[tuple[str, str, int]]:
    """(path, expected outcome, expected attempts) for the crawl."""
    rows: list[tuple[str, str, int]] = []
    for i in range(15):
        rows.append((f"/ok?size={i * 997}", "ok", 1))
    for i in range(3):
        rows.append((f"/chunked?size={5000 + i}", "ok", 1))
        rows.append((f"/redirect?n=2&size={i}", "ok", 1))
    rows += [(f"/gzip?size={i * 3000}", "ok", 1) for i in (1, 2)]
    # Throttled once (Retry-After: 0), or failed with 500 twice, then fine.
    rows += [(f"/flaky?key=t{i}&fail=1&code=503&after=0", "ok", 2) for i in range(4)]
    rows += [(f"/flaky?key=e{i}&fail=2&code=500", "ok", 3) for i in range(2)]
    rows += [(f"/status?code=404&i={i}", "HTTPStatusError", 1) for i in range(4)]
    rows += [(f"/status?code=500&i={i}", "RetryableStatus", ATTEMPTS) for i in range(2)]
    rows += [("/status?code=429&after=0", "HTTPThrottled", ATTEMPTS)]
    rows += [(f"/loop?i={i}", "TooManyRedirects", 1) for i in range(2)]
    rows += [(f"/reset?i={i}", "ConnectionFailed", ATTEMPTS) for i in range(2)]
    rows += [(f"/stall-headers?i={i}", "HeadersTimeout", ATTEMPTS) for i in range(2)]
    rows += [
        ("/stall-body?size=1000", "BodyTimeout", ATTEMPTS),
        ("/trickle?size=1000&interval=0.02", "BodyTimeout", ATTEMPTS),
        ("/huge", "BodyTooLarge", 1),
        ("/declared?size=999999999", "BodyTooLarge", 1),
        ("/truncated?size=1000&sent=10", "TruncatedBody", ATTEMPTS),
        ("/truncated?size=1000&sent=900", "TruncatedBody", ATTEMPTS),
        ("/bad-gzip", "ContentDecodingError", 1),
    ]
    return rows


class QueueCrawlTests(TestCase):
    """ResizableDispatchQueue(fetcher, 10, retry=fetch_retry_policy(...))."""

    def setUp(self) -> None:
        self.server = FaultServer(reactor).start()
        self.addCleanup(self.server.close)
        # The stalling URLs must time out, and nothing else may: an answer
        # from this process's own server can take a good part of a second
        # when the machine is busy (0.15 s made ok pages time out and take
        # a second attempt), so the timeouts are a second each.
        config = FetchConfig(
            connect_timeout=1.0,
            headers_timeout=1.0,
            body_timeout=1.0,
            max_body=100_000,
            default_retry_after=0.01,
        )
        self.fetcher = Fetcher(config, reactor, pool_size=10)
        self.addCleanup(self.fetcher.close)

    async def test_mixed_crawl(self) -> None:
        """About fifty URLs on two hosts (two lanes), with bad input refused
        before queueing: the run finishes, every job ends ok with the exact
        body or with the expected named FetchError, after the expected number
        of attempts, and nothing is left pending or underway."""
        policy = fetch_retry_policy(
            max_attempts=ATTEMPTS, base_delay=0.01, max_delay=0.02
        )
        queue = ResizableDispatchQueue(self.fetcher, 10, retry=policy, clock=reactor)
        expected: dict[str, tuple[str, int]] = {}
        refused: dict[str, str] = {}
        puts = []
        inputs = ["ftp://example.com/file", "not a url", "http://:80/"]
        for n, (path, outcome, attempts) in enumerate(plan()):
            host = "127.0.0.1" if n % 2 else "localhost"
            url = self.server.url(path, host=host)
            expected[url] = (outcome, attempts)
            inputs.append(url)
        for line in inputs:
            try:
                check_url(line)
            except BadURL as e:
                refused[line] = e.name
                continue
            puts.append(queue.put(line, key=host_key(line)))
        self.assertEqual(len(refused), 3)
        self.assertGreaterEqual(len(puts), 45)
        lane_keys = {info.key for info in queue.lanes()}
        port = self.server.port_number
        self.assertEqual(lane_keys, {f"127.0.0.1:{port}", f"localhost:{port}"})

        results = await DeferredList(puts, consumeErrors=True)
        outcomes: dict[str, tuple[str, int]] = {}
        for ok, value in results:
            job: Any
            if ok:
                job = value
                result = job.result
                self.assertIsInstance(result, FetchResult)
                size = _size_of(job.arg)
                if size is not None:
                    digest = hashlib.sha256(body_for(size)).hexdigest()
                    self.assertEqual((result.bytes, result.sha256), (size, digest))
                outcomes[job.arg] = ("ok", job.attempts)
            else:
                error = value.value
                self.assertIsInstance(error, JobFailed)
                job = error.job
                cause = job.failure.value
                self.assertIsInstance(cause, FetchError, job.arg)
                outcomes[job.arg] = (cause.name, job.attempts)
            self.assertEqual(job.key, host_key(job.arg))
        self.assertEqual(outcomes, expected)
        self.assertEqual((queue.pending(), queue.underway()), ([], []))
        stopped = await queue.stop()
        self.assertEqual(stopped, [])


def _size_of(url: str) -> int | None:
    """The body size a successful URL of the plan must have (/flaky: 100)."""
    query = dict(part.partition("=")[::2] for part in url.split("?", 1)[-1].split("&"))
    return int(query.get("size", "100"))
