"""Pagination: Link headers parsed per RFC 8288, the five styles (token,
link, next_url, page, offset) through the caller against fakes in-process,
next URLs kept to the base URL's origin, and the configuration's checks."""

from __future__ import annotations

import base64
import json
from typing import Any

import attrs
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from fetchq.api import ApiCaller, ApiConfig, ApiPage, ApiRequest
from fetchq.api.pages import Link, next_cursor, page_url, parse_links, same_origin
from fetchq.secrets import Secret
from fetchq.testing import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    FakeGitHub,
    FakeSMSProvider,
    run_until_idle,
)
from fetchq.testing.github import DEFAULT_TOKEN


class LinkHeaderTests(SynchronousTestCase):
    """``parse_links`` reads RFC 8288's grammar, not a regular expression's
    guess at it."""

    def test_github_header(self) -> None:
        """GitHub's four links, in order, with their rels."""
        value = (
            '<https://api.github.com/repositories/1/issues?page=2>; rel="next", '
            '<https://api.github.com/repositories/1/issues?page=5>; rel="last"'
        )
        links = parse_links([value])
        self.assertEqual(
            [(link.target[-6:], link.rels) for link in links],
            [("page=2", ("next",)), ("page=5", ("last",))],
        )

    def test_grammar(self) -> None:
        """Quoted values keep their commas and semicolons; ``\\"`` escapes;
        rel may list several types (matched without case); token values
        need no quotes; several header lines add up; parameters other than
        rel are kept (first of each name); a malformed link is skipped."""
        values = [
            '<  /a  >; title="x, y; z"; rel="Prev First", </b>;rel=next;'
            ' title="q \\"quoted\\""; title="second"',
            'junk; rel="next", </c>; rel="last" ; type="text/html"',
        ]
        links = parse_links(values)
        self.assertEqual(
            links,
            [
                Link("/a", ("prev", "first"), {"title": "x, y; z"}),
                Link("/b", ("next",), {"title": 'q "quoted"'}),
                Link("/c", ("last",), {"type": "text/html"}),
            ],
        )

    def test_empty_and_broken(self) -> None:
        """Empty values, a target without its ``>`` and stray text give no
        links and raise nothing."""
        self.assertEqual(parse_links(["", " , ", "<unterminated; rel=next"]), [])
        self.assertEqual(parse_links(['<x>; rel="next'])[0].rels, ("next",))


def config(**changes: Any) -> ApiConfig:
    values: dict[str, Any] = {
        "base_url": "https://api.example.com/v1",
        "path": "/items",
        "token": "t0ken",
        "max_pages": 10,
    }
    values.update(changes)
    return ApiConfig(**values)


class CursorTests(SynchronousTestCase):
    """``next_cursor`` and ``page_url`` for each style."""

    def cursor(
        self,
        cfg: ApiConfig,
        document: Any = None,
        items: Any = (),
        headers: Any = (),
        request: ApiRequest | None = None,
        url: str = "https://api.example.com/v1/items",
    ) -> str | None:
        request = request or ApiRequest({})
        return next_cursor(cfg, request, url, document, list(items), list(headers))

    def test_token(self) -> None:
        """The token at token_field, sent as token_param; none: last page."""
        cfg = config()
        self.assertEqual(self.cursor(cfg, {"meta": {"next_token": "abc"}}), "abc")
        self.assertIsNone(self.cursor(cfg, {"meta": {}}))
        request = ApiRequest({}, page=2, token="abc")
        base = "https://api.example.com/v1/items?q=1"
        self.assertEqual(
            page_url(cfg, request, base, base),
            (base + "&pagination_token=abc",) * 2,
        )

    def test_link(self) -> None:
        """rel="next" is resolved against the request's URL; another
        origin (host, scheme or port) is not followed; the next URL is sent
        as it is, with secret params masked where it is shown."""
        cfg = config(pagination="link", params={"key": Secret("s3cret")})
        header = [("Link", '</v1/items?page=2&key=s3cret>; rel="next"')]
        cursor = self.cursor(cfg, headers=header)
        self.assertEqual(cursor, "https://api.example.com/v1/items?page=2&key=s3cret")
        for elsewhere in (
            "https://evil.example.net/v1/items?page=2",
            "http://api.example.com/v1/items?page=2",
            "https://api.example.com:8443/v1/items?page=2",
        ):
            header = [("link", f'<{elsewhere}>; rel="next"')]
            self.assertIsNone(self.cursor(cfg, headers=header), elsewhere)
        self.assertIsNone(self.cursor(cfg, headers=[("Link", '</x>; rel="last"')]))
        assert cursor is not None
        sent, shown = page_url(cfg, ApiRequest({}, 2, cursor), "first", "first")
        self.assertEqual(sent, cursor)
        self.assertEqual(shown, "https://api.example.com/v1/items?page=2&key=***")

    def test_next_url(self) -> None:
        """A next URL from the body, relative (Twilio's next_page_uri) or
        absolute, resolved against the request's URL."""
        cfg = config(pagination="next_url", next_field="next_page_uri")
        doc = {"next_page_uri": "/v1/items?Page=1&PageToken=PA1"}
        self.assertEqual(
            self.cursor(cfg, doc),
            "https://api.example.com/v1/items?Page=1&PageToken=PA1",
        )
        self.assertIsNone(self.cursor(cfg, {"next_page_uri": None}))
        self.assertIsNone(self.cursor(cfg, {"next_page_uri": "https://x.test/v1"}))

    def test_page(self) -> None:
        """Page numbers count from page_start; an empty page, a short page
        (with page_size) or reaching total_field ends them."""
        cfg = config(pagination="page", page_start=0)
        self.assertEqual(self.cursor(cfg, items=[1, 2]), "1")
        second = ApiRequest({}, page=2, token="1")
        self.assertEqual(self.cursor(cfg, items=[1], request=second), "2")
        self.assertIsNone(self.cursor(cfg, items=[]))
        sized = config(pagination="page", page_size=2, total_field="total")
        self.assertIsNone(self.cursor(sized, items=[1]))
        self.assertEqual(self.cursor(sized, {"total": 5}, items=[1, 2]), "2")
        last = ApiRequest({}, page=2, token="2")
        self.assertIsNone(self.cursor(sized, {"total": 4}, [1, 2], request=last))
        base = "https://api.example.com/v1/items"
        self.assertEqual(page_url(sized, last, base, base)[0], base + "?page=2")

    def test_offset(self) -> None:
        """The offset grows by each page's items; the total ends it."""
        cfg = config(pagination="offset", total_field="meta.total")
        self.assertEqual(self.cursor(cfg, {"meta": {"total": 5}}, [1, 2]), "2")
        at4 = ApiRequest({}, page=3, token="4")
        self.assertIsNone(self.cursor(cfg, {"meta": {"total": 5}}, [1], request=at4))
        self.assertIsNone(self.cursor(cfg, {}, []))

    def test_origin(self) -> None:
        """Default ports count as given; host names match without case."""
        self.assertTrue(
            same_origin("https://API.example.com:443/x", "https://api.example.com")
        )
        self.assertFalse(
            same_origin("https://api.example.com.evil/x", "https://api.example.com")
        )

    def test_config_checks(self) -> None:
        """An unknown style, a page or offset parameter also given as a
        fixed param, a next_url without a field, and a bad page size are
        refused, naming the setting."""
        cases: list[tuple[dict[str, Any], str]] = [
            ({"pagination": "cursor"}, "pagination must be one of"),
            ({"pagination": "page", "params": {"page": "1"}}, "page_param"),
            ({"pagination": "offset", "params": {"offset": "0"}}, "offset_param"),
            ({"pagination": "next_url", "next_field": ""}, "next_field"),
            ({"page_size": 0}, "page_size"),
        ]
        for changes, words in cases:
            with self.assertRaises(ValueError, msg=repr(changes)) as caught:
                config(**changes)
            self.assertIn(words, str(caught.exception))
        config(pagination="link", params={"pagination_token": "x"})  # not used


class _Listing(Resource):
    """A JSON list of 7 items paged by ``page`` (from 1) or ``offset``, 3 a
    page, with the total; records every query it is sent."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[dict[str, str]] = []

    def render_GET(self, request: Any) -> bytes:
        query = {k.decode(): v[0].decode() for k, v in request.args.items()}
        self.queries.append(query)
        if "offset" in query:
            start = int(query["offset"])
        else:
            start = (int(query.get("page", "1")) - 1) * 3
        items = list(range(7))[start : start + 3]
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"results": items, "count": 7}).encode()


class CallerPagesTests(SynchronousTestCase):
    """The caller following each style's pages against in-process fakes."""

    def pages(self, caller: ApiCaller, clock: Clock, stub: StubTreq) -> list[ApiPage]:
        """Every page of one row, each next request made from the last."""
        found: list[ApiPage] = []
        request: ApiRequest | None = caller.first_page({"owner": "octocat"})
        while request is not None:
            d = caller(ApiRequest.from_json(request.to_json()))  # as stored
            run_until_idle(clock, stub)
            page = self.successResultOf(d)
            found.append(page)
            request = page.next_request()
        return found

    def test_github_link_pages(self) -> None:
        """45 issues at 20 a page: three pages through GitHub's Link URLs
        (/repositories/{id}/issues, not the path template), each sent with
        the bearer token, 45 distinct issues in all."""
        clock = Clock()
        fake = FakeGitHub(clock, latency=0.01)
        stub = StubTreq(fake)
        cfg = ApiConfig(
            base_url="http://github.test",
            path="/repos/{owner}/hello-world/issues",
            token=DEFAULT_TOKEN,
            params={"per_page": "20", "state": "all"},
            headers={"X-GitHub-Api-Version": "2022-11-28"},
            pagination="link",
            max_pages=10,
            items_field="",
            records="item",
        )
        caller = ApiCaller(cfg, clock, http=stub)
        pages = self.pages(caller, clock, stub)
        self.assertEqual([len(page.items) for page in pages], [20, 20, 5])
        numbers = {item["number"] for page in pages for item in page.items}
        self.assertEqual(numbers, set(range(1, 46)))
        repo = fake.repo_id("octocat/hello-world")
        self.assertIn(f"/repositories/{repo}/issues?", pages[1].url)
        self.assertIn("page=3", pages[2].url)
        self.assertEqual(fake.requests, 3)
        self.assertEqual(fake.statuses[200], 3)
        self.assertEqual(pages[0].quota.remaining if pages[0].quota else None, 4999)

    def test_twilio_next_page_uri(self) -> None:
        """Twilio's message list, 5 messages at PageSize 2: three pages by
        next_page_uri (relative, resolved against the request), HTTP Basic
        as a header."""
        clock = Clock()
        provider = FakeSMSProvider(clock, latency=0)
        stub = StubTreq(provider)
        for n in range(5):
            provider._accept({"To": f"+1917555000{n}", "From": "+12125550100"})
        basic = base64.b64encode(f"{DEFAULT_ACCOUNT_SID}:{DEFAULT_AUTH_TOKEN}".encode())
        cfg = ApiConfig(
            base_url="http://twilio.test",
            path=f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages.json",
            headers={"Authorization": Secret("Basic " + basic.decode())},
            params={"PageSize": "2"},
            pagination="next_url",
            next_field="next_page_uri",
            items_field="messages",
            max_pages=10,
        )
        caller = ApiCaller(cfg, clock, http=stub)
        pages = self.pages(caller, clock, stub)
        self.assertEqual([len(page.items) for page in pages], [2, 2, 1])
        sids = [item["sid"] for page in pages for item in page.items]
        self.assertEqual(len(set(sids)), 5)
        self.assertIn("Page=2", pages[2].url)

    def test_page_and_offset(self) -> None:
        """Page numbers and offsets against a listing of 7 at 3 a page: three
        pages each, ended by the total (offset) and by the short page
        (page); the first request carries neither parameter."""
        for style, extra in (
            ("page", {"page_size": 3}),
            ("offset", {"total_field": "count"}),
        ):
            clock = Clock()
            listing = _Listing()
            stub = StubTreq(listing)
            cfg = ApiConfig(
                base_url="http://list.test",
                path="/things",
                token="t",
                pagination=style,
                items_field="results",
                max_pages=10,
                **extra,
            )
            caller = ApiCaller(cfg, clock, http=stub)
            pages = self.pages(caller, clock, stub)
            items = [item for page in pages for item in page.items]
            self.assertEqual(items, list(range(7)), style)
            self.assertEqual(
                listing.queries,
                [
                    {},
                    {style: "2" if style == "page" else "3"},
                    {style: "3" if style == "page" else "6"},
                ],
            )

    def test_max_pages_and_same_cursor(self) -> None:
        """max_pages stops the pages; so does a server naming the page it
        just answered as the next one."""
        clock = Clock()
        fake = FakeGitHub(clock)
        stub = StubTreq(fake)
        cfg = ApiConfig(
            base_url="http://github.test",
            path="/repos/octocat/hello-world/issues",
            token=DEFAULT_TOKEN,
            params={"per_page": "5"},
            pagination="link",
            max_pages=2,
            items_field="",
        )
        caller = ApiCaller(cfg, clock, http=stub)
        self.assertEqual(len(self.pages(caller, clock, stub)), 2)
        again = _SelfLink()
        stub = StubTreq(again)
        cfg = attrs.evolve(cfg, base_url="http://loop.test", path="/loop", max_pages=10)
        caller = ApiCaller(cfg, clock, http=stub)
        self.assertEqual(len(self.pages(caller, clock, stub)), 2)
        self.assertEqual(again.hits, 2)  # the first, and the named next once


class _SelfLink(Resource):
    """Names its own second page as the next page, for ever."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.hits = 0

    def render_GET(self, request: Any) -> bytes:
        self.hits += 1
        request.setHeader(b"link", b'<http://loop.test/loop?page=2>; rel="next"')
        request.setHeader(b"content-type", b"application/json")
        return b"[]"
