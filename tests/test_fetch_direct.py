"""The default HTTP path's shortcut past ``Agent.request``
(:class:`fetchq.http.origins.DirectAgent`): the fetcher's checked URI goes
to Twisted's pool and protocol without being parsed again, and the request
on the wire must stay exactly the one treq's agent stack writes."""

from __future__ import annotations

import contextlib
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import succeed
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import (
    URI,
    Agent,
    ContentDecoderAgent,
    GzipDecoder,
    HTTPConnectionPool,
)
from twisted.web.http_headers import Headers

from fetchq.fetch import FetchConfig, Fetcher, HTTPStatusError
from fetchq.http import origins
from fetchq.http.origins import DirectAgent, Origins, split_uri
from tests.fetch_server import FaultServer

CONFIG = FetchConfig(connect_timeout=2, headers_timeout=5, body_timeout=5)


class SplitTests(SynchronousTestCase):
    def test_origin_and_target(self) -> None:
        cases = {
            b"http://a.test": (b"http://a.test", b"/"),
            b"http://a.test?q=1": (b"http://a.test", b"/?q=1"),
            b"http://a.test#top": (b"http://a.test", b"/"),
            b"http://a.test:8080/p/q;x?y=/z#f/g": (
                b"http://a.test:8080",
                b"/p/q;x?y=/z",
            ),
            b"https://[::1]:8443/a?b#c": (b"https://[::1]:8443", b"/a?b"),
            b"http://a.test/?#": (b"http://a.test", b"/?"),
        }
        for uri, expected in cases.items():
            self.assertEqual(split_uri(uri), expected, uri)

    def test_the_target_is_what_the_agent_sends(self) -> None:
        """The origin-form target is the one ``URI.fromBytes`` gives
        (``originForm``), so the request line cannot differ."""
        for uri in (
            b"http://a.test/p/q;x?y=/z",
            b"http://a.test/a;b;c/d?e;f",
            b"http://a.test",
            b"http://a.test/%20x?%41=%2F",
        ):
            self.assertEqual(split_uri(uri)[1], URI.fromBytes(uri).originForm, uri)

    def test_host_values(self) -> None:
        agent = Agent(reactor)
        for origin in (
            b"http://a.test",
            b"http://a.test:80",
            b"https://a.test:443",
            b"https://a.test:80",
            b"http://127.0.0.1:8080",
            b"http://[::1]:8080",
            b"https://[fe80::1]",
        ):
            parsed = URI.fromBytes(origin)
            expected = agent._computeHostValue(parsed.scheme, parsed.host, parsed.port)
            self.assertEqual(Origins(_Endpoints())[origin].host_value, expected, origin)


class _Endpoints:
    def __init__(self) -> None:
        self.made: list[bytes] = []

    def endpointForURI(self, uri: Any) -> object:
        self.made.append(uri.host)
        return object()


class OriginCacheTests(SynchronousTestCase):
    def test_each_origin_is_parsed_once_and_the_cache_is_bounded(self) -> None:
        endpoints = _Endpoints()
        cache = Origins(endpoints)
        self.patch(origins, "_ORIGINS", 3)
        first = cache[b"http://a.test"]
        self.assertIs(cache[b"http://a.test"], first)
        cache[b"http://b.test"]
        cache[b"http://c.test"]
        self.assertIs(cache[b"http://a.test"], first)  # used again: kept
        cache[b"http://d.test"]
        self.assertEqual(endpoints.made, [b"a.test", b"b.test", b"c.test", b"d.test"])
        # b.test was the least recently used: dropped, parsed again.
        self.assertIs(cache[b"http://a.test"], first)
        cache[b"http://b.test"]
        self.assertEqual(endpoints.made[-1], b"b.test")
        self.assertEqual(len(endpoints.made), 5)

    def test_the_header_sets_kept_per_origin_are_bounded(self) -> None:
        sent: list[Headers] = []

        class Recording(DirectAgent):
            def _requestWithEndpoint(self, *args: Any) -> Any:
                sent.append(args[4])
                return succeed(None)

        agent = Recording.with_endpoints(reactor, _Endpoints(), None)
        self.patch(origins, "_HEADER_SETS", 2)
        for i in range(4):
            agent.send(b"GET", b"http://a.test/", (("X-N", str(i)),))
        agent.send(b"GET", b"http://a.test/", (("X-N", "0"),))
        self.assertEqual(len(agent._origins[b"http://a.test"].headers), 2)
        self.assertIs(sent[4], sent[0])  # kept, not made again
        self.assertEqual(
            [h.getRawHeaders(b"x-n") for h in sent],
            [[b"0"], [b"1"], [b"2"], [b"3"], [b"0"]],
        )


class WireTests(TestCase):
    def setUp(self) -> None:
        self.server = FaultServer(reactor).start()
        self.addCleanup(self.server.close)

    async def treq_stack(self, url: str, headers: dict[str, str]) -> None:
        """One GET through the agent stack the fetcher used before
        (``ContentDecoderAgent`` over ``Agent``), as treq builds it."""
        pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        agent = ContentDecoderAgent(Agent(reactor, pool=pool), [(b"gzip", GzipDecoder)])
        raw = Headers()
        for name, value in headers.items():
            raw.addRawHeader(name, value)
        response = await agent.request(b"GET", url.encode("ascii"), raw)
        await treq.content(response)

    async def test_the_request_is_the_agent_stacks_byte_for_byte(self) -> None:
        """Method, target, header order and values, Host (with and without
        one configured), Accept-Encoding beside a configured one: the same
        bytes, on a first and a reused connection."""
        for headers in (
            {"X-Team": "a b", "Accept": "*/*"},
            {"Host": "example.test", "Accept-Encoding": "br"},
        ):
            config = FetchConfig(
                connect_timeout=2, headers_timeout=5, body_timeout=5, headers=headers
            )
            fetcher = Fetcher(config, reactor, 2, environ={})
            self.addCleanup(fetcher.close)
            for url in (
                self.server.url("/echo?q=1&r=%20"),
                self.server.url("/echo;p?q=%2F#frag"),
                self.server.url(""),
            ):
                with contextlib.suppress(HTTPStatusError):  # /echo;p: a 404
                    await fetcher.fetch(url)
                ours = self.server.raw_heads[-1]
                sent = dict(config.headers)  # the User-Agent filled in
                await self.treq_stack(url, sent)
                self.assertEqual(ours, self.server.raw_heads[-1], url)
            self.assertEqual(fetcher.pool.idle, 1)  # one connection, reused

    async def test_responses_are_not_wrapped_and_still_decoded(self) -> None:
        """Without ``ContentDecoderAgent`` a gzip body is decoded by the
        body reader, as before."""
        fetcher = Fetcher(CONFIG, reactor, 2, environ={})
        self.addCleanup(fetcher.close)
        result = await fetcher.fetch(self.server.url("/gzip?size=3000"))
        self.assertEqual((result.status, result.bytes), (200, 3000))
