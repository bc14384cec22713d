"""The fetcher against a misbehaving server on 127.0.0.1: every fault ends in
its exact outcome, and no connection or timer is left behind (trial's dirty
reactor check and :meth:`FaultServer.close` both enforce that)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import socket
import tempfile
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.ssl import Certificate
from twisted.trial.unittest import TestCase
from twisted.web.client import BrowserLikePolicyForHTTPS

from fetchq.fetch import (
    DEFAULT_USER_AGENT,
    BadURL,
    BodyTimeout,
    BodyTooLarge,
    ConnectionFailed,
    ConnectTimeout,
    ContentDecodingError,
    FetchConfig,
    Fetcher,
    FetchResult,
    FetchTimeout,
    ForbiddenAddress,
    HeadersTimeout,
    HTTPRetryAfter,
    HTTPStatusError,
    HTTPThrottled,
    RequestTimeout,
    RetryableStatus,
    SaveError,
    TLSCertificateError,
    TooManyRedirects,
    TruncatedBody,
)
from tests.fetch_server import (
    FaultServer,
    ServerTLS,
    body_for,
    lean_variants,
    self_signed,
)

FAST = FetchConfig(
    connect_timeout=0.5,
    headers_timeout=0.5,
    body_timeout=0.5,
    max_body=1_000_000,
    default_retry_after=0.25,
)


def sha(data: bytes) -> str:
    """The hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


class FaultTestCase(TestCase):
    """Starts a :class:`FaultServer` and closes it (and fetchers) after."""

    http = "treq"  # the fetchers' ``http``: "lean" in the Lean copies

    def setUp(self) -> None:
        self.server = FaultServer(reactor).start()
        self.addCleanup(self.server.close)

    def fetcher(self, config: FetchConfig = FAST, **changes: Any) -> Fetcher:
        """A Fetcher of ``config`` with ``changes``, closed after the test."""
        changes.setdefault("http", self.http)
        fetcher = Fetcher(attrs.evolve(config, **changes), reactor, pool_size=4)
        self.addCleanup(fetcher.close)
        return fetcher

    async def fetch(self, path: str, **changes: Any) -> FetchResult:
        """Fetch ``path`` of the server with a fresh fetcher."""
        return await self.fetcher(**changes).fetch(self.server.url(path))

    async def outcome(self, path: str, **changes: Any) -> BaseException:
        """The exception fetching ``path`` ends with (failing if it succeeds)."""
        try:
            result = await self.fetch(path, **changes)
        except BaseException as e:
            return e
        raise self.failureException(f"{path} succeeded: {result!r}")


class SuccessTests(FaultTestCase):
    """Bodies that arrive whole become exact FetchResults."""

    async def test_ok_body(self) -> None:
        """A 200 with a Content-Length body gives its status, size, SHA-256,
        content type and URL, with no redirects and a plausible elapsed time
        (no more than the fetch took, measured around it)."""
        url = self.server.url("/ok?size=5000")
        fetcher = self.fetcher()
        before = reactor.seconds()
        result = await fetcher.fetch(url)
        took = reactor.seconds() - before
        self.assertEqual(result.url, url)
        self.assertEqual(result.final_url, url)
        self.assertEqual(result.status, 200)
        self.assertEqual(result.bytes, 5000)
        self.assertEqual(result.sha256, sha(body_for(5000)))
        self.assertEqual(result.content_type, "text/plain")
        self.assertEqual(result.redirects, 0)
        self.assertIsNone(result.body_path)
        self.assertTrue(0 <= result.elapsed <= took, (result.elapsed, took))

    async def test_empty_and_chunked_and_close_delimited(self) -> None:
        """An empty body, a chunked body and a body ended by closing the
        connection are all read whole."""
        empty = await self.fetch("/ok?size=0")
        self.assertEqual((empty.bytes, empty.sha256), (0, sha(b"")))
        chunked = await self.fetch("/chunked?size=12345")
        self.assertEqual(chunked.bytes, 12345)
        self.assertEqual(chunked.sha256, sha(body_for(12345)))
        closed = await self.fetch("/close?size=777")
        self.assertEqual((closed.bytes, closed.sha256), (777, sha(body_for(777))))

    async def test_body_exactly_at_max_body(self) -> None:
        """A body of exactly max_body bytes is accepted."""
        result = await self.fetch("/chunked?size=4096", max_body=4096)
        self.assertEqual(result.bytes, 4096)

    async def test_gzip_counted_decoded(self) -> None:
        """A gzip body is decoded: size and SHA-256 are of the decoded bytes."""
        result = await self.fetch("/gzip?size=30000")
        self.assertEqual(result.bytes, 30000)
        self.assertEqual(result.sha256, sha(body_for(30000)))
        self.assertEqual(self.server.requests[-1][2]["accept-encoding"], "gzip")

    async def test_head_and_no_content(self) -> None:
        """A HEAD request and a 204 have empty bodies, even with a length."""
        head = await self.fetch("/ok?size=500", method="HEAD")
        self.assertEqual((head.status, head.bytes), (200, 0))
        empty = await self.fetch("/status?code=204")
        self.assertEqual((empty.status, empty.bytes), (204, 0))

    async def test_connection_reused(self) -> None:
        """Sequential fetches of one host share one pooled connection."""
        fetcher = self.fetcher()
        for _ in range(3):
            await fetcher.fetch(self.server.url("/ok?size=10"))
            await fetcher.fetch(self.server.url("/chunked?size=10"))
        self.assertEqual(self.server.accepted, 1)

    async def test_pool_size_is_the_per_host_cache(self) -> None:
        """The pool keeps pool_size connections per host, not Twisted's 2."""
        fetcher = Fetcher(attrs.evolve(FAST, http=self.http), reactor, pool_size=7)
        self.addCleanup(fetcher.close)
        self.assertEqual(fetcher.pool.maxPersistentPerHost, 7)
        self.assertTrue(fetcher.pool.persistent)

    async def test_request_method_headers_params_body(self) -> None:
        """Method, headers (with the default User-Agent), params and body are
        sent as configured."""
        result_server = self.server
        fetcher = self.fetcher(
            method="post",
            headers={"X-Test": "yes"},
            params={"a": "1", "b": "two words"},
            body=b"payload",
            save_dir=self.mktemp_dir(),
        )
        result = await fetcher.fetch(result_server.url("/echo?x=0"))
        assert result.body_path is not None
        with open(result.body_path, "rb") as f:
            seen = json.loads(f.read())
        self.assertEqual(seen["method"], "POST")
        self.assertEqual(seen["target"], "/echo?x=0&a=1&b=two%20words")
        self.assertEqual(seen["headers"]["user-agent"], DEFAULT_USER_AGENT)
        self.assertEqual(seen["headers"]["x-test"], "yes")
        self.assertEqual(seen["body"], "payload")
        self.assertIn("?x=0&a=1", result.final_url)

    async def test_no_cookies_between_jobs(self) -> None:
        """A cookie set by one response is not sent with the next request."""
        fetcher = self.fetcher()
        await fetcher.fetch(self.server.url("/cookie"))
        await fetcher.fetch(self.server.url("/echo"))
        self.assertNotIn("cookie", self.server.requests[-1][2])

    def mktemp_dir(self) -> str:
        """A new empty directory, removed after the test."""
        path = tempfile.mkdtemp(prefix="fetchq-test-")
        self.addCleanup(shutil.rmtree, path, True)
        return path

    async def test_save_content_addressed(self) -> None:
        """With save_dir, the body is saved under its SHA-256, and no
        temporary file is left."""
        directory = self.mktemp_dir()
        result = await self.fetch("/ok?size=2048", save_dir=directory)
        self.assertEqual(result.body_path, os.path.join(directory, result.sha256))
        with open(os.path.join(directory, result.sha256), "rb") as f:
            self.assertEqual(f.read(), body_for(2048))
        self.assertEqual(os.listdir(directory), [result.sha256])

    async def test_save_by_id(self) -> None:
        """save_name="id" names the file after the job id (made safe), and a
        job without id falls back to the SHA-256."""
        directory = self.mktemp_dir()
        fetcher = self.fetcher(save_dir=directory, save_name="id")
        url = self.server.url("/ok?size=10")
        named = await fetcher({"url": url, "id": "job/1"})
        self.assertEqual(named.body_path, os.path.join(directory, "job%2F1"))
        anonymous = await fetcher(url)
        self.assertEqual(anonymous.body_path, os.path.join(directory, anonymous.sha256))

    async def test_save_dir_gone(self) -> None:
        """If save_dir disappears after configuration, the fetch fails with
        SaveError and the unread body's connection is closed."""
        directory = self.mktemp_dir()
        fetcher = self.fetcher(save_dir=directory)
        os.rmdir(directory)
        d = fetcher.fetch(self.server.url("/ok?size=100"))
        error = await self.assertFailure(d, SaveError)
        self.assertIn("cannot save body", str(error))

    async def test_failed_body_leaves_no_file(self) -> None:
        """A body that fails midway leaves nothing in save_dir."""
        directory = self.mktemp_dir()
        error = await self.outcome("/truncated?size=1000&sent=10", save_dir=directory)
        self.assertIsInstance(error, TruncatedBody)
        self.assertEqual(os.listdir(directory), [])


class StatusTests(FaultTestCase):
    """Statuses become the outcome classes the retry policy acts on."""

    async def test_404_is_a_status_error(self) -> None:
        """A 404 fails with HTTPStatusError(404), which is not retryable."""
        error = await self.outcome("/status?code=404")
        self.assertIs(type(error), HTTPStatusError)
        assert isinstance(error, HTTPStatusError)
        self.assertEqual(
            (error.status, error.name, str(error)), (404, "HTTPStatusError", "HTTP 404")
        )

    async def test_500_is_retryable(self) -> None:
        """A 500 without Retry-After fails with RetryableStatus(500)."""
        error = await self.outcome("/status?code=500")
        self.assertIs(type(error), RetryableStatus)
        assert isinstance(error, RetryableStatus)
        self.assertEqual(error.status, 500)

    async def test_502_with_retry_after(self) -> None:
        """A retry status with Retry-After asks for exactly that delay."""
        error = await self.outcome("/status?code=502&after=7")
        self.assertIs(type(error), HTTPRetryAfter)
        assert isinstance(error, HTTPRetryAfter)
        self.assertEqual((error.status, error.delay), (502, 7.0))

    async def test_429_delta_seconds(self) -> None:
        """A 429 with Retry-After: 3 is a Throttled of 3 s."""
        error = await self.outcome("/status?code=429&after=3")
        self.assertIs(type(error), HTTPThrottled)
        assert isinstance(error, HTTPThrottled)
        self.assertEqual((error.status, error.delay), (429, 3.0))

    async def test_503_http_date(self) -> None:
        """A 503 with Retry-After as an HTTP-date 120 s ahead is a Throttled
        of about 120 s (the date has one-second resolution)."""
        error = await self.outcome("/status?code=503&date=120")
        assert isinstance(error, HTTPThrottled)
        self.assertEqual(error.status, 503)
        self.assertTrue(118 <= error.delay <= 121, error.delay)

    async def test_retry_after_capped(self) -> None:
        """A Retry-After beyond max_retry_after is cut to the cap."""
        error = await self.outcome("/status?code=429&after=99999", max_retry_after=60)
        assert isinstance(error, HTTPThrottled)
        self.assertEqual(error.delay, 60.0)

    async def test_throttle_without_retry_after(self) -> None:
        """A throttle status with no (or a garbage) Retry-After waits the
        default delay."""
        error = await self.outcome("/status?code=429&after=soon")
        assert isinstance(error, HTTPThrottled)
        self.assertEqual(error.delay, FAST.default_retry_after)

    async def test_statuses_are_configurable(self) -> None:
        """A status moved into ok_statuses is a result, with its body."""
        result = await self.fetch("/status?code=404", ok_statuses={200, 404})
        self.assertEqual((result.status, result.sha256), (404, sha(b"status body")))

    async def test_error_body_drained_for_reuse(self) -> None:
        """After a 404, 500 and 429 the connection is reused, not dropped."""
        fetcher = self.fetcher()
        for code in (404, 500, 429):
            d = fetcher.fetch(self.server.url(f"/status?code={code}"))
            await self.assertFailure(d, HTTPStatusError, HTTPThrottled)
        self.assertEqual(self.server.accepted, 1)


class RedirectTests(FaultTestCase):
    """Redirects are followed by hand, each hop checked and counted."""

    async def test_chain(self) -> None:
        """A chain of 3 redirects ends on the final body with redirects=3."""
        url = self.server.url("/redirect?n=3&size=64")
        result = await self.fetcher().fetch(url)
        self.assertEqual((result.status, result.redirects), (200, 3))
        self.assertEqual(result.sha256, sha(body_for(64)))
        self.assertEqual(result.url, url)
        self.assertEqual(
            result.final_url, self.server.url("/redirect?n=0&size=64&code=302")
        )

    async def test_chain_at_the_limit(self) -> None:
        """Exactly max_redirects hops are allowed; one more is not."""
        result = await self.fetch("/redirect?n=2", max_redirects=2)
        self.assertEqual(result.redirects, 2)
        error = await self.outcome("/redirect?n=3", max_redirects=2)
        self.assertIsInstance(error, TooManyRedirects)

    async def test_loop(self) -> None:
        """A redirect loop ends with TooManyRedirects after max_redirects."""
        error = await self.outcome("/loop")
        self.assertIs(type(error), TooManyRedirects)
        self.assertEqual(len(self.server.requests), FAST.max_redirects + 1)

    async def test_redirect_to_disallowed_scheme(self) -> None:
        """A redirect to ftp:// fails with BadURL naming the scheme."""
        error = await self.outcome("/redirect?to=ftp://example.com/x")
        self.assertIs(type(error), BadURL)
        self.assertIn("scheme 'ftp' not allowed", str(error))

    async def test_post_becomes_get_on_303_but_not_307(self) -> None:
        """A POST redirected with 303 is re-sent as a GET without body; with
        307 it stays a POST with its body."""
        await self.fetch("/redirect?to=/echo&code=303", method="POST", body=b"x")
        self.assertEqual(self.server.requests[-1][:2], ("GET", "/echo"))
        self.assertEqual(self.server.requests[-1][3], b"")
        await self.fetch("/redirect?to=/echo&code=307", method="POST", body=b"x")
        self.assertEqual(self.server.requests[-1][0], "POST")
        self.assertEqual(self.server.requests[-1][3], b"x")

    async def test_credentials_dropped_across_hosts(self) -> None:
        """Authorization is kept on a same-origin hop and dropped when the
        redirect goes to another host."""
        config = attrs.evolve(FAST, headers={"Authorization": "secret"})
        same = self.server.url("/echo")
        await self.fetch(f"/redirect?to={same}", headers=config.headers)
        self.assertEqual(self.server.requests[-1][2].get("authorization"), "secret")
        other = self.server.url("/echo", host="localhost")
        await self.fetch(f"/redirect?to={other}", headers=config.headers)
        self.assertNotIn("authorization", self.server.requests[-1][2])


class FaultTests(FaultTestCase):
    """Broken connections and slow servers end in named errors, on time."""

    def full_listener(self) -> int:
        """A port whose accept queue is full, so a new SYN goes unanswered."""
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        for _ in range(2):
            filler = socket.socket()
            self.addCleanup(filler.close)
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        return port

    async def test_refused(self) -> None:
        """Nothing listening: ConnectionFailed (connection refused)."""
        port = self.server.port_number
        await self.server.port.stopListening()
        d = self.fetcher().fetch(f"http://127.0.0.1:{port}/")
        error = await self.assertFailure(d, ConnectionFailed)
        self.assertIn("refused", str(error))

    async def test_reset_before_headers(self) -> None:
        """A reset after the request: ConnectionFailed."""
        error = await self.outcome("/reset")
        self.assertIs(type(error), ConnectionFailed)

    async def test_stall_before_headers(self) -> None:
        """No headers within headers_timeout: HeadersTimeout, and the
        connection is closed."""
        error = await self.outcome("/stall-headers", headers_timeout=0.2)
        self.assertIs(type(error), HeadersTimeout)
        self.assertEqual(str(error), "response headers timed out after 0.2s")

    async def test_stall_mid_body(self) -> None:
        """Headers and 10 bytes, then silence: BodyTimeout."""
        error = await self.outcome("/stall-body?size=1000&sent=10", body_timeout=0.2)
        self.assertIs(type(error), BodyTimeout)

    async def test_trickle_exceeds_body_timeout(self) -> None:
        """A body that keeps coming, a byte every 20 ms, but would take 20 s
        in all, fails with BodyTimeout at body_timeout although it never
        stalls.  (30 bytes are due in the 0.6 s; more than 5 came even if a
        busy machine runs the server's timer five times late.)"""
        error = await self.outcome("/trickle?size=1000&interval=0.02", body_timeout=0.6)
        self.assertIs(type(error), BodyTimeout)
        self.assertGreater(self.server.trickled, 5)  # bytes kept coming

    async def test_whole_request_timeout(self) -> None:
        """``timeout`` bounds the whole fetch: a body trickling in well
        within body_timeout fails with RequestTimeout at ``timeout``, and
        the connection is dropped (the server sees no more reads)."""
        error = await self.outcome(
            "/trickle?size=1000&interval=0.02", body_timeout=30.0, timeout=0.4
        )
        self.assertIs(type(error), RequestTimeout)
        self.assertIsInstance(error, FetchTimeout)
        self.assertEqual(str(error), "request timed out after 0.4s")

    async def test_whole_request_timeout_before_headers(self) -> None:
        """``timeout`` shorter than headers_timeout: RequestTimeout, not
        HeadersTimeout."""
        error = await self.outcome("/stall-headers", headers_timeout=30.0, timeout=0.2)
        self.assertIs(type(error), RequestTimeout)

    async def test_huge_chunked_body(self) -> None:
        """A chunked body with no length that never ends fails with
        BodyTooLarge once it passes max_body, not with BodyTimeout at the
        body timeout (30 s: what it would end with had it waited)."""
        error = await self.outcome("/huge", max_body=200_000, body_timeout=30)
        self.assertIs(type(error), BodyTooLarge)
        assert isinstance(error, BodyTooLarge)
        self.assertIsNone(error.declared)

    async def test_large_declared_length_rejected_early(self) -> None:
        """A Content-Length above max_body fails at once with BodyTooLarge
        naming it (the server sends no body: waiting would time out)."""
        error = await self.outcome("/declared?size=1000000000000", body_timeout=5)
        assert isinstance(error, BodyTooLarge)
        self.assertEqual(error.declared, 10**12)

    async def test_gzip_bomb_counted_decoded(self) -> None:
        """A small gzip body that inflates past max_body fails with
        BodyTooLarge: the limit counts decoded bytes."""
        self.assertLess(len(gzip.compress(bytes(5_000_000))), 100_000)
        error = await self.outcome("/gzip?size=5000000&zeros=1")
        self.assertIs(type(error), BodyTooLarge)

    async def test_truncated_gzip(self) -> None:
        """A gzip stream cut short (with a correct Content-Length) is a
        ContentDecodingError, not a shorter body."""
        error = await self.outcome("/gzip?size=50000&cut=20")
        self.assertIs(type(error), ContentDecodingError)

    async def test_bad_gzip(self) -> None:
        """A body labelled gzip that is not: ContentDecodingError."""
        error = await self.outcome("/bad-gzip")
        self.assertIs(type(error), ContentDecodingError)

    async def test_truncated_body(self) -> None:
        """Fewer bytes than the Content-Length, then close: TruncatedBody (a
        ConnectionFailed, so it is retried)."""
        error = await self.outcome("/truncated?size=1000&sent=300")
        self.assertIs(type(error), TruncatedBody)
        self.assertIsInstance(error, ConnectionFailed)

    async def test_more_bytes_than_content_length(self) -> None:
        """A body longer than its Content-Length: the declared bytes are the
        body, and the next fetch on the same pool still works."""
        fetcher = self.fetcher()
        result = await fetcher.fetch(self.server.url("/overlong?size=100&extra=50"))
        self.assertEqual((result.bytes, result.sha256), (100, sha(body_for(100))))
        after = await fetcher.fetch(self.server.url("/ok?size=7"))
        self.assertEqual(after.sha256, sha(body_for(7)))

    async def test_connect_timeout(self) -> None:
        """A server whose accept queue is full never answers the SYN: the
        connect fails with ConnectTimeout after connect_timeout."""
        port = self.full_listener()
        fetcher = self.fetcher(connect_timeout=0.2, headers_timeout=5)
        d = fetcher.fetch(f"http://127.0.0.1:{port}/")
        error = await self.assertFailure(d, ConnectTimeout)
        self.assertEqual(error.seconds, 0.2)

    async def test_headers_deadline_while_connecting(self) -> None:
        """When headers_timeout passes while still connecting, the outcome is
        ConnectTimeout (of headers_timeout), not HeadersTimeout."""
        port = self.full_listener()
        fetcher = self.fetcher(connect_timeout=5, headers_timeout=0.2)
        d = fetcher.fetch(f"http://127.0.0.1:{port}/")
        error = await self.assertFailure(d, ConnectTimeout)
        self.assertEqual(error.seconds, 0.2)

    async def test_cancel_mid_body(self) -> None:
        """Cancelling a fetch in the middle of a body fails it with
        CancelledError and closes the connection (the server sees it go)."""
        d = self.fetcher().fetch(self.server.url("/stall-body?size=1000"))
        waiter: Deferred[None] = Deferred()
        reactor.callLater(0.1, waiter.callback, None)
        await waiter
        d.cancel()
        await self.assertFailure(d, CancelledError)

    async def test_cancel_while_connecting(self) -> None:
        """Cancelling a fetch at once, before its connection is made, fails
        it with CancelledError: an address host is connected to directly,
        with no name resolution (in a thread) that a cancel would turn into
        a DNS failure ("Couldn't find the hostname '127.0.0.1'", seen under
        load when test_cancel_mid_body's cancel came that early)."""
        d = self.fetcher().fetch(self.server.url("/ok?size=10"))
        d.cancel()
        await self.assertFailure(d, CancelledError)

    async def test_cancel_before_headers(self) -> None:
        """Cancelling a fetch that waits for headers fails it with
        CancelledError, not a connection error."""
        d = self.fetcher().fetch(self.server.url("/stall-headers"))
        waiter: Deferred[None] = Deferred()
        reactor.callLater(0.1, waiter.callback, None)
        await waiter
        d.cancel()
        await self.assertFailure(d, CancelledError)


class InputTests(FaultTestCase):
    """Bad input and forbidden addresses never reach the network."""

    async def test_bad_url_is_a_failed_deferred(self) -> None:
        """A malformed URL fails the fetch with BadURL; nothing connects."""
        fetcher = self.fetcher()
        for url in ("", "not a url", "ftp://example.com/", "http://"):
            await self.assertFailure(fetcher.fetch(url), BadURL)
        await self.assertFailure(fetcher({"id": 3}), BadURL)
        self.assertEqual(self.server.accepted, 0)

    async def test_private_address_refused(self) -> None:
        """With allow_private=False a loopback URL fails with ForbiddenAddress
        naming the address and its kind, and no connection is made."""
        error = await self.outcome("/ok", allow_private=False)
        self.assertIs(type(error), ForbiddenAddress)
        self.assertEqual(str(error), "refused loopback address 127.0.0.1")
        self.assertEqual(self.server.accepted, 0)

    async def test_private_name_refused_at_resolution(self) -> None:
        """A host name that resolves to loopback (localhost) is refused once
        resolved, before any connection."""
        fetcher = self.fetcher(allow_private=False)
        d = fetcher.fetch(self.server.url("/ok", host="localhost"))
        error = await self.assertFailure(d, ForbiddenAddress)
        self.assertEqual(error.host, "localhost")
        self.assertEqual(error.kind, "loopback")
        self.assertEqual(self.server.accepted, 0)


class TLSTests(TestCase):
    """https goes through the same endpoints, with certificate checks."""

    http = "treq"

    def setUp(self) -> None:
        cert_pem, key_pem = self_signed("localhost")
        self.cert = Certificate.loadPEM(cert_pem)
        tls = ServerTLS(cert_pem, key_pem)
        self.server = FaultServer(reactor).start(tls=tls)
        self.addCleanup(self.server.close)

    def fetcher(self, policy: Any = None) -> Fetcher:
        """A Fetcher with TLS policy ``policy``, closed after the test."""
        config = attrs.evolve(FAST, http=self.http)
        fetcher = Fetcher(config, reactor, 2, tls_policy=policy)
        self.addCleanup(fetcher.close)
        return fetcher

    async def test_https_with_trusted_certificate(self) -> None:
        """A server whose certificate is trusted serves an exact result."""
        fetcher = self.fetcher(BrowserLikePolicyForHTTPS(trustRoot=self.cert))
        url = self.server.url("/ok?size=3000", host="localhost")
        result = await fetcher.fetch(url)
        self.assertTrue(url.startswith("https://"))
        self.assertEqual((result.bytes, result.sha256), (3000, sha(body_for(3000))))

    async def test_untrusted_certificate_refused(self) -> None:
        """With the default policy a self-signed certificate is refused:
        TLSCertificateError saying so (not a ConnectionFailed, which would be
        retried), and no request is answered."""
        d = self.fetcher().fetch(self.server.url("/ok", host="localhost"))
        error = await self.assertFailure(d, TLSCertificateError)
        self.assertNotIsInstance(error, ConnectionFailed)
        self.assertEqual(error.kind, "untrusted")
        self.assertIn("self-signed certificate", str(error))
        self.assertEqual(self.server.requests, [])


lean_variants(
    globals(),
    SuccessTests,
    StatusTests,
    RedirectTests,
    FaultTests,
    InputTests,
    TLSTests,
)
