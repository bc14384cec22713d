"""The API adapter: rate-limit header parsing, request templates, the caller
against the fake X API in-process (task.Clock + StubTreq) and on a loopback
port, and the issue's figure: 2,000 calls against a quota of 450 per window
with zero 429s, close to the quota's lower bound of time."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from fetchq import (
    JobFailed,
    JobFinished,
    JobLaunched,
    Outcome,
    ResizableDispatchQueue,
    Throttled,
)
from fetchq.api import (
    EPOCH_THRESHOLD,
    ApiBadResponse,
    ApiCaller,
    ApiConfig,
    ApiConnectionFailed,
    ApiError,
    ApiPage,
    ApiRequest,
    ApiServerError,
    ApiStatusError,
    ApiThrottled,
    ApiTimeout,
    BadRequestRow,
    Quota,
    QuotaExhausted,
    api_retry_policy,
    parse_quota,
    reset_time,
    throttle_delay,
)
from fetchq.control import Signal, classify
from fetchq.recipe import Secret
from fetchq.testing.api import (
    TOO_MANY_REQUESTS,
    FakeXAPI,
    run_until_idle,
    serve,
)

TWEETS = "/2/users/{id}/tweets"
SEARCH = "/2/tweets/search/recent"
BASE = "https://api.x.com"
NOW = 1_700_000_000.0


def config(**changes: Any) -> ApiConfig:
    """The timeline endpoint with the fake's token, and ``changes``."""
    values: dict[str, Any] = {"base_url": BASE, "path": TWEETS, "token": "test-token"}
    values.update(changes)
    return ApiConfig(**values)


# ----------------------------------------------------------------------
# Header parsing


class ParseQuotaTests(SynchronousTestCase):
    """parse_quota reads every header family, tells epoch resets from delays,
    and ignores what is malformed or missing without raising."""

    def check(self, headers: Any, now: float, expected: Quota | None, why: str) -> None:
        self.assertEqual(parse_quota(headers, now), expected, why)

    def test_families(self) -> None:
        """Each family gives limit, remaining, reset time and its source."""
        table: list[tuple[Any, float, Quota | None, str]] = [
            (
                {
                    "x-rate-limit-limit": "450",
                    "x-rate-limit-remaining": "449",
                    "x-rate-limit-reset": "1700000900",
                },
                NOW,
                Quota(450, 449, 1_700_000_900.0, "x-rate-limit"),
                "X: reset is epoch seconds",
            ),
            (
                {"x-rate-limit-remaining": "3", "x-rate-limit-reset": "900"},
                0.0,
                Quota(None, 3, 900.0, "x-rate-limit"),
                "X's reset is epoch even when small (a test clock at 0)",
            ),
            (
                {
                    "X-RateLimit-Limit": "5000",
                    "X-RateLimit-Remaining": "4999",
                    "X-RateLimit-Reset": "1700003600",
                    "X-RateLimit-Used": "1",
                },
                NOW,
                Quota(5000, 4999, 1_700_003_600.0, "x-ratelimit"),
                "GitHub: a reset >= 1e9 is epoch",
            ),
            (
                {"X-RateLimit-Remaining": "7", "X-RateLimit-Reset": "60"},
                NOW,
                Quota(None, 7, NOW + 60, "x-ratelimit"),
                "X-RateLimit-Reset below 1e9 is seconds from now",
            ),
            (
                {"X-RateLimit-Remaining": "7", "X-RateLimit-Reset": "30"},
                100.0,
                Quota(None, 7, 130.0, "x-ratelimit"),
                "a delay on a small test clock too",
            ),
            (
                {"RateLimit": "limit=100, remaining=50, reset=30"},
                1000.0,
                Quota(100, 50, 1030.0, "ratelimit"),
                "IETF dictionary form: reset is a delay",
            ),
            (
                {"RateLimit": "remaining=5, reset=10", "RateLimit-Policy": "100;w=60"},
                1000.0,
                Quota(100, 5, 1010.0, "ratelimit", 60.0),
                "the limit from RateLimit-Policy when RateLimit has none",
            ),
            (
                {
                    "RateLimit": '"default";r=50;t=30',
                    "RateLimit-Policy": '"burst";q=10;w=1, "default";q=100;w=60',
                },
                1000.0,
                Quota(100, 50, 1030.0, "ratelimit", 60.0),
                "later drafts' list form, its policy found by name",
            ),
            (
                {"RateLimit": '"hour";r=90;t=3000, "minute";r=2;t=20'},
                1000.0,
                Quota(None, 2, 1020.0, "ratelimit"),
                "several policies: the most restrictive counts",
            ),
            (
                {
                    "RateLimit-Limit": "100, 100;w=60",
                    "RateLimit-Remaining": "0",
                    "RateLimit-Reset": "45",
                },
                1000.0,
                Quota(100, 0, 1045.0, "ratelimit-fields"),
                "earliest drafts: separate fields, reset a delay",
            ),
            (
                [(b"X-Rate-Limit-Remaining", b"12"), (b"x-rate-limit-limit", b"15")],
                0.0,
                Quota(15, 12, None, "x-rate-limit"),
                "bytes pairs, any case; no reset -> reset_at None",
            ),
            (
                {
                    "x-rate-limit-remaining": "1",
                    "x-rate-limit-reset": "900",
                    "x-ratelimit-remaining": "99",
                    "ratelimit": "limit=5, remaining=5, reset=1",
                },
                0.0,
                Quota(None, 1, 900.0, "x-rate-limit"),
                "X's family wins over the others",
            ),
        ]
        for headers, now, expected, why in table:
            self.check(headers, now, expected, why)

    def test_malformed_and_missing(self) -> None:
        """Malformed values are ignored: a family whose remaining count does
        not parse is skipped; a bad limit or reset is just left out."""
        table: list[tuple[Any, Quota | None, str]] = [
            ({}, None, "no headers: no quota"),
            ({"Content-Type": "application/json"}, None, "unrelated headers"),
            ({"x-rate-limit-remaining": "abc"}, None, "remaining not a number"),
            ({"x-rate-limit-remaining": "-1"}, None, "negative remaining"),
            ({"x-rate-limit-remaining": "1e3"}, None, "exponent"),
            ({"x-rate-limit-remaining": ""}, None, "empty"),
            ({"x-rate-limit-limit": "450"}, None, "limit without remaining"),
            (
                {"x-rate-limit-remaining": "abc", "X-RateLimit-Remaining": "4"},
                Quota(None, 4, None, "x-ratelimit"),
                "a malformed family falls through to the next",
            ),
            (
                {
                    "x-rate-limit-remaining": "4",
                    "x-rate-limit-limit": "lots",
                    "x-rate-limit-reset": "soon",
                },
                Quota(None, 4, None, "x-rate-limit"),
                "bad limit and reset are left out",
            ),
            ({"RateLimit": "garbage;;,,==;"}, None, "structured-field garbage"),
            ({"RateLimit": 'limit=100, remaining="x"'}, None, "quoted remaining"),
            ({"RateLimit": '"unclosed;r=5'}, None, "an unclosed quote"),
            ({"RateLimit": '"p";r=-2;t=5'}, None, "negative r"),
            ({"RateLimit-Policy": "100;w=60"}, None, "a policy alone"),
        ]
        for headers, expected, why in table:
            self.check(headers, 1000.0, expected, why)

    def test_reset_time_threshold(self) -> None:
        """The epoch/delay line is EPOCH_THRESHOLD; epoch= forces either."""
        self.assertEqual(reset_time(EPOCH_THRESHOLD, 5.0), EPOCH_THRESHOLD)
        self.assertEqual(reset_time(EPOCH_THRESHOLD - 1, 5.0), EPOCH_THRESHOLD + 4)
        self.assertEqual(reset_time(30, 5.0, epoch=True), 30)
        self.assertEqual(reset_time(2e9, 5.0, epoch=False), 2e9 + 5)

    def test_throttle_delay(self) -> None:
        """Retry-After wins (seconds or a date), then the reset plus the
        margin, then the default; all capped."""
        reset = {"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(NOW + 100)}
        self.assertEqual(
            throttle_delay({**reset, "Retry-After": "7"}, NOW, 60), (7.0, "retry-after")
        )
        self.assertEqual(
            throttle_delay(
                {"Retry-After": "Tue, 14 Nov 2023 22:14:20 GMT"}, 1_700_000_000, 60
            ),
            (60.0, "retry-after"),
        )
        self.assertEqual(throttle_delay(reset, NOW, 60, margin=1.5), (101.5, "reset"))
        self.assertEqual(throttle_delay({}, NOW, 60), (60.0, "default"))
        self.assertEqual(
            throttle_delay({"Retry-After": "soon"}, NOW, 60), (60.0, "default")
        )
        self.assertEqual(throttle_delay(reset, NOW, 60, cap=30), (30.0, "reset"))


# ----------------------------------------------------------------------
# Configuration and templates


class TemplateTests(SynchronousTestCase):
    """Rows fill the path (URL-quoted), the query and the JSON body; a row
    that cannot fill them is a BadRequestRow naming the field and place."""

    def test_path_filled_and_quoted(self) -> None:
        """Values are quoted into one path segment, '/' included."""
        c = config(path="/2/users/{id}/lists/{name}")
        self.assertEqual(
            c.fill_path({"id": 12, "name": "a/b c"}), "/2/users/12/lists/a%2Fb%20c"
        )
        self.assertEqual(
            c.fill_path({"id": "é", "name": True}), "/2/users/%C3%A9/lists/true"
        )
        self.assertEqual(
            c.fill_path({"id": 1.5, "name": "x", "extra": []}), "/2/users/1.5/lists/x"
        )
        self.assertEqual(
            config(path="/a/{{literal}}/{id}").fill_path({"id": 1}), "/a/{literal}/1"
        )

    def test_missing_field(self) -> None:
        """A missing field names itself and the template."""
        with self.assertRaises(BadRequestRow) as caught:
            config().fill_path({"user": 12})
        error = caught.exception
        self.assertEqual(error.field, "id")
        self.assertEqual(
            str(error), "row has no field 'id' (needed by path '/2/users/{id}/tweets')"
        )
        self.assertEqual(error.name, "BadRequestRow")
        self.assertIsInstance(error, ValueError)
        self.assertIs(error.signal, Signal.IGNORE)

    def test_values_that_do_not_fit(self) -> None:
        """Empty, '.', '..', null, lists and mappings cannot fill a path."""
        for value, words in [
            ("", "is empty"),
            (".", "is '.'"),
            ("..", "is '..'"),
            (None, "is null"),
            ([1], "is list"),
            ({"a": 1}, "is dict"),
            (float("nan"), "is float"),
        ]:
            with self.assertRaises(BadRequestRow) as caught:
                config().fill_path({"id": value})
            self.assertIn(words, str(caught.exception), value)
            self.assertIn("'id'", str(caught.exception))

    def test_params_and_body(self) -> None:
        """Query values are templates; a body string that is exactly one
        placeholder keeps the value's JSON type."""
        c = config(
            method="post",
            params={"query": "{q} lang:en", "max_results": 100},
            body={"ids": "{ids}", "text": "hi {name}", "n": 3, "deep": ["{name}"]},
        )
        row = {"q": "cats", "ids": [1, 2], "name": "Ann"}
        self.assertEqual(c.method, "POST")
        self.assertEqual(
            c.fill_params(row), [("query", "cats lang:en"), ("max_results", "100")]
        )
        self.assertEqual(
            json.loads(c.fill_body(row) or b""),
            {"ids": [1, 2], "text": "hi Ann", "n": 3, "deep": ["Ann"]},
        )
        self.assertEqual(c.fields, frozenset({"id", "q", "ids", "name"}))
        with self.assertRaises(BadRequestRow) as caught:
            c.fill_params({"id": 1})
        self.assertIn("param 'query'", str(caught.exception))
        with self.assertRaises(BadRequestRow) as caught:
            c.fill_body({"q": "x", "name": "y", "ids": object()})
        self.assertIn("field 'ids' is not a JSON value", str(caught.exception))

    def test_bad_configuration(self) -> None:
        """Every bad value is refused at construction, naming the field."""
        bad: list[tuple[dict[str, Any], str]] = [
            ({"path": "/2/users/{id"}, "path"),
            ({"path": "/2/users/{0}"}, "bad placeholder"),
            ({"path": "/2/users/{id!r}"}, "no format or conversion"),
            ({"path": "/2/users/{id:>3}"}, "no format or conversion"),
            ({"path": "2/users"}, "starting with '/'"),
            ({"path": "/2/users?x=1"}, "no query"),
            ({"base_url": "ftp://x"}, "base_url"),
            ({"base_url": "https://x/?q=1"}, "no query"),
            ({"method": "GE T"}, "bad HTTP method"),
            ({"token": ""}, "token is empty"),
            ({"token": 5}, "token must be text"),
            ({"headers": {"Authorization": "Bearer x"}}, "either token"),
            ({"headers": {"X-A": "a\nb"}}, "line break"),
            ({"params": {"q": ["x"]}}, "param 'q'"),
            ({"params": {"q": "{bad name}"}}, "param 'q'"),
            ({"params": {"pagination_token": "x"}}, "token_param"),
            ({"body": {"a": object()}}, "not JSON"),
            ({"body": {"a": float("inf")}}, "JSON cannot hold"),
            ({"records": "rows"}, "records"),
            ({"max_pages": 0}, "max_pages"),
            ({"timeout": 0}, "timeout"),
            ({"token_field": "meta..next"}, "token_field"),
            ({"reset_margin": -1}, "reset_margin"),
            (
                {"min_retry_after": 10, "max_retry_after": 5},
                "more than max_retry_after",
            ),
        ]
        for changes, words in bad:
            with self.assertRaises(ValueError) as caught:
                config(**changes)
            self.assertIn(words, str(caught.exception), changes)

    def test_token_never_shown(self) -> None:
        """A plain-text token is kept as a Secret, so repr() hides it."""
        c = config(token="sekret-value", headers={"X-Key": Secret("other-secret")})
        self.assertIsInstance(c.token, Secret)
        self.assertNotIn("sekret-value", repr(c))
        self.assertNotIn("other-secret", repr(c))
        self.assertEqual(c.endpoint, "GET /2/users/{id}/tweets")

    def test_request_json_form(self) -> None:
        """ApiRequest round-trips through JSON; bad forms are refused."""
        request = ApiRequest({"id": 3}, page=2, token="t", id="row-3")
        data = json.loads(json.dumps(request.to_json()))
        self.assertEqual(ApiRequest.from_json(data), request)
        self.assertEqual(request.following("u"), ApiRequest({"id": 3}, 3, "u", "row-3"))
        with self.assertRaises(BadRequestRow):
            ApiRequest.from_json({"id": 1})
        with self.assertRaises(BadRequestRow):
            ApiRequest.from_json({"row": {}, "color": "red"})
        with self.assertRaises(BadRequestRow):
            ApiRequest(["not", "a", "mapping"])  # type: ignore[arg-type]
        with self.assertRaises(ValueError):
            ApiRequest({}, page=0)


class ErrorTreeTests(SynchronousTestCase):
    """Every API error has a stable name, a message and its signal; the
    throttles are fetchq Throttled, so the queue holds the lane."""

    def test_names_signals_messages(self) -> None:
        """The table of outcomes."""
        table: list[tuple[ApiError, Signal, str]] = [
            (ApiStatusError(404, "Not Found"), Signal.IGNORE, "HTTP 404: Not Found"),
            (ApiServerError(500), Signal.IGNORE, "HTTP 500"),
            (ApiServerError(503), Signal.DROP, "HTTP 503"),
            (ApiTimeout(5.0), Signal.DROP, "response timed out after 5s"),
            (ApiConnectionFailed("refused"), Signal.DROP, "refused"),
            (ApiBadResponse("body is not JSON"), Signal.IGNORE, "body is not JSON"),
            (
                ApiThrottled(429, 12.0, "reset"),
                Signal.THROTTLE,
                "retry after 12s: HTTP 429, wait from reset",
            ),
            (
                QuotaExhausted("GET /x", 30.0),
                Signal.IGNORE,
                "retry after 30s: quota of GET /x spent; not sent",
            ),
            (BadRequestRow("no id", "id"), Signal.IGNORE, "no id"),
        ]
        for error, signal, message in table:
            self.assertEqual(error.name, type(error).__name__)
            self.assertIs(error.signal, signal, error.name)
            self.assertEqual(str(error), message)
        self.assertIsInstance(ApiThrottled(429, 1.0), Throttled)
        self.assertIsInstance(QuotaExhausted("e", 1.0), Throttled)
        self.assertNotIsInstance(QuotaExhausted("e", 1.0), ApiThrottled)
        self.assertIsNone(QuotaExhausted("e", 1.0).status)

    def test_retry_policy(self) -> None:
        """5xx, timeouts and broken connections retry; 4xx do not."""
        policy = api_retry_policy()
        self.assertEqual(policy.max_attempts, 8)
        self.assertEqual(
            policy.retry_on, (ApiServerError, ApiTimeout, ApiConnectionFailed)
        )
        self.assertNotIn(ApiStatusError, policy.retry_on)


# ----------------------------------------------------------------------
# In-process, on a task.Clock


class _Run:
    """A fake, a StubTreq over it, a caller and (optionally) a queue."""

    def __init__(
        self,
        width: int | None = None,
        bind: bool = True,
        server_clock: Callable[[Clock], Any] | None = None,
        resource: Resource | None = None,
        http: Any = None,
        conf: ApiConfig | None = None,
        **fake: Any,
    ) -> None:
        self.clock = Clock()
        self.fake = FakeXAPI(
            self.clock if server_clock is None else server_clock(self.clock), **fake
        )
        self.stub = StubTreq(self.fake if resource is None else resource)
        self.caller = ApiCaller(
            conf or config(), self.clock, http=self.stub if http is None else http
        )
        self.events: list[Any] = []
        self.seen: list[tuple[Any, BaseException | None, Signal | None]] = []
        self.done: list[Any] = []
        self.failed: list[Any] = []
        self.queue: ResizableDispatchQueue | None = None
        if width is not None:
            self.queue = ResizableDispatchQueue(
                self.caller, width, clock=self.clock, retry=api_retry_policy()
            )
            self.queue.subscribe(self._observe)
            if bind:
                self.caller.bind(self.queue)

    def _observe(self, event: Any) -> None:
        """Keep each event with, for a JobFinished, its error and signal as
        they were then (a retried job's failure is replaced later)."""
        error = None
        if isinstance(event, JobFinished) and event.job.failure is not None:
            error = event.job.failure.value
        signal = classify(event) if isinstance(event, JobFinished) else None
        self.events.append(event)
        self.seen.append((event, error, signal))

    def put(
        self, row: dict[str, Any], job_id: Any = None, follow: bool = False
    ) -> None:
        """Queue a row's first page (and, with ``follow``, its next pages)."""
        self._put(self.caller.first_page(row, id=job_id), follow)

    def _put(self, request: ApiRequest, follow: bool) -> None:
        assert self.queue is not None
        d = self.queue.put(
            request, key=self.caller.lane_key(request), job_id=request.id
        )

        def ok(job: Any) -> None:
            self.done.append(job)
            following = job.result.next_request()
            if follow and following is not None:
                self._put(following, follow)

        d.addCallbacks(ok, self.failed.append)

    def call(self, row: dict[str, Any], **request: Any) -> Deferred[ApiPage]:
        """Call the caller directly."""
        return self.caller(ApiRequest(row, **request))

    def run(self, until: float | None = None) -> float:
        """Advance and flush until idle (or ``until``)."""
        return run_until_idle(self.clock, self.stub, until)

    def finished(self, kind: type[BaseException]) -> list[tuple[Any, Any, Signal]]:
        """``(event, error, signal)`` of the JobFinished events whose attempt
        failed with ``kind``."""
        return [
            (event, error, signal)
            for event, error, signal in self.seen
            if isinstance(error, kind) and signal is not None
        ]


class PaginationTests(SynchronousTestCase):
    """Pages follow the answer's next token, each one a job in the
    endpoint's lane, up to max_pages; records per page or per item."""

    def test_follows_next_token_up_to_max_pages(self) -> None:
        """5 pages exist, max_pages=3: three pages, chained by token, each
        put in the same lane; the third offers no next request."""
        run = _Run(width=4, pages=5, items_per_page=3, conf=config(max_pages=3))
        run.put({"id": 7}, "row-7", follow=True)
        run.run()
        pages = [job.result for job in run.done]
        self.assertEqual([p.request.page for p in pages], [1, 2, 3])
        self.assertEqual({job.key for job in run.done}, {"GET /2/users/{id}/tweets"})
        self.assertIsNone(pages[0].request.token)
        for before, after in itertools.pairwise(pages):
            self.assertIsNotNone(before.next_token)
            self.assertEqual(after.request.token, before.next_token)
            self.assertIn(f"pagination_token={before.next_token}", after.url)
        self.assertIsNotNone(pages[2].next_token)  # more exist, but max_pages
        self.assertIsNone(pages[2].next_request())
        self.assertEqual(run.fake.requests["/2/users/{id}/tweets"], 3)
        records = [r for p in pages for r in p.records()]
        self.assertEqual(len(records), 3)
        first = records[0]
        self.assertEqual(first["id"], "row-7")
        self.assertEqual(first["status"], 200)
        self.assertEqual(first["result_count"], 3)
        self.assertEqual(first["request"]["url"], "https://api.x.com/2/users/7/tweets")
        self.assertAlmostEqual(first["elapsed"], 0.02)
        self.assertEqual(first["quota"]["limit"], 1500)
        self.assertEqual(len(first["body"]["data"]), 3)

    def test_stops_at_last_page_and_records_items(self) -> None:
        """With records='item' each tweet is a record; the last page has no
        next token, so two pages of two are all there is."""
        run = _Run(
            width=1,
            pages=2,
            items_per_page=2,
            conf=config(max_pages=10, records="item"),
        )
        run.put({"id": 9}, 1, follow=True)
        run.run()
        pages = [job.result for job in run.done]
        self.assertEqual(len(pages), 2)
        self.assertIsNone(pages[-1].next_token)
        records = [r for p in pages for r in p.records()]
        self.assertEqual(
            [(r["page"], r["index"]) for r in records], [(1, 0), (1, 1), (2, 0), (2, 1)]
        )
        ids = [int(r["item"]["id"]) for r in records]
        self.assertEqual(ids, sorted(ids, reverse=True))  # newest first, no repeats
        self.assertEqual(len(set(ids)), 4)

    def test_search_uses_next_token(self) -> None:
        """token_param is configurable: search takes next_token, and the
        fake, like X, refuses the other name (a 400, not retried)."""
        search = config(
            path=SEARCH, params={"query": "{q}"}, token_param="next_token", max_pages=3
        )
        run = _Run(width=2, pages=3, items_per_page=10, conf=search)
        run.put({"q": "cats"}, follow=True)
        run.run()
        self.assertEqual(len(run.done), 3)
        self.assertIn("next_token=", run.done[-1].result.url)
        wrong = _Run(
            width=2, pages=3, conf=attrs.evolve(search, token_param="pagination_token")
        )
        wrong.put({"q": "cats"}, follow=True)
        wrong.run()
        self.assertEqual(len(wrong.done), 1)
        [failure] = wrong.failed
        error = failure.value.job.failure.value
        self.assertIsInstance(error, ApiStatusError)
        self.assertEqual(error.status, 400)
        self.assertIn("pagination_token", str(error))


class ThrottleTests(SynchronousTestCase):
    """A 429 or a secondary-limit 403 holds the lane for Retry-After or
    until the reset, and the job is retried then."""

    def test_429_from_a_server_that_announces_nothing_beforehand(self) -> None:
        """Quota 3 per 60 s, headers only on the 429: job 4 gets a 429, is
        held until the reset (60) plus the margin (1), and then succeeds."""
        run = _Run(width=1, quotas={TWEETS: (3, 60)}, rate_headers="on_429")
        for n in range(5):
            run.put({"id": n}, n)
        run.run(until=1.0)
        throttled = run.finished(ApiThrottled)
        self.assertEqual(len(throttled), 1)
        event, error, signal = throttled[0]
        self.assertIs(event.outcome, Outcome.THROTTLED)
        self.assertIs(signal, Signal.THROTTLE)
        self.assertEqual((error.status, error.basis), (429, "reset"))
        refused_at = event.job.launched_at + 0.02  # the fake's latency
        self.assertAlmostEqual(error.delay, 61 - refused_at)
        assert run.queue is not None
        [lane] = run.queue.lanes()
        self.assertAlmostEqual(lane.held_until, 61.0)
        run.run()
        self.assertEqual(len(run.done), 5)
        self.assertEqual(run.fake.throttled[TWEETS], 1)
        self.assertEqual(run.caller.stats.status_429, 1)
        retried = next(j for j in run.done if j.id == 3)
        self.assertEqual(retried.attempts, 2)
        launches = [
            e.time for e in run.events if isinstance(e, JobLaunched) and e.job.id == 3
        ]
        self.assertGreaterEqual(launches[-1], 61.0)

    def test_429_without_any_headers(self) -> None:
        """No headers even on the 429: the default delay, then a probe."""
        run = _Run(
            quotas={TWEETS: (1, 60)},
            rate_headers="never",
            conf=config(default_retry_after=30),
        )
        self.successResultOf(_fired(run, run.call({"id": 1})))
        d = run.call({"id": 2})
        run.run()
        error = self.failureResultOf(d, ApiThrottled).value
        self.assertEqual(
            (error.status, error.delay, error.basis), (429, 30.0, "default")
        )
        self.assertIsNone(error.quota)
        self.assertEqual(
            json.dumps(TOO_MANY_REQUESTS, sort_keys=True),
            json.dumps(
                {
                    "detail": "Too Many Requests",
                    "status": 429,
                    "title": "Too Many Requests",
                    "type": "about:blank",
                },
                sort_keys=True,
            ),
        )

    def test_secondary_limit_403_with_retry_after(self) -> None:
        """A 403 with Retry-After is a throttle: the job waits 30 s and is
        retried; a 403 with a spent quota waits for its reset."""
        run = _Run(width=2)
        run.fake.inject(403, retry_after=30)
        run.put({"id": 1}, "a")
        run.run(until=1.0)
        [(_, error, _)] = run.finished(ApiThrottled)
        self.assertEqual(
            (error.status, error.delay, error.basis), (403, 30.0, "retry-after")
        )
        run.run()
        [job] = run.done
        self.assertEqual(job.attempts, 2)
        self.assertGreaterEqual(job.launched_at, 30.0)
        self.assertEqual(run.fake.statuses[403], 1)
        self.assertEqual(run.caller.stats.status_429, 0)

        spent = _Run()
        spent.fake.inject(403, reset_in=40)
        d = spent.call({"id": 1})
        spent.run()
        error = self.failureResultOf(d, ApiThrottled).value
        self.assertEqual((error.status, error.basis), (403, "reset"))
        self.assertAlmostEqual(error.delay, 40 + 1 - 0.02)

    def test_plain_403_and_other_4xx_are_permanent(self) -> None:
        """A 403 without Retry-After or spent quota, a bad id (400) and a bad
        token (401) fail at once, with the body's words, not retried."""
        run = _Run(width=2)
        run.fake.inject(403, body={"message": "Resource not accessible by integration"})
        run.put({"id": 1}, "forbidden")
        run.put({"id": "abc"}, "bad-id")
        run.run()
        errors = {f.value.job.id: f.value.job for f in run.failed}
        self.assertEqual(set(errors), {"forbidden", "bad-id"})
        forbidden = errors["forbidden"].failure.value
        self.assertEqual(
            str(forbidden), "HTTP 403: Resource not accessible by integration"
        )
        bad = errors["bad-id"].failure.value
        self.assertEqual(bad.status, 400)
        self.assertIn("The `id` query parameter value [abc] is not valid", bad.detail)
        self.assertEqual([j.attempts for j in errors.values()], [1, 1])
        self.assertTrue(all(isinstance(f.value, JobFailed) for f in run.failed))

        wrong = _Run(conf=config(token="not-the-token"))
        d = wrong.call({"id": 1})
        wrong.run()
        self.assertEqual(self.failureResultOf(d, ApiStatusError).value.status, 401)

    def test_5xx_retried_with_backoff(self) -> None:
        """Two 503s, then the call succeeds on the third attempt."""
        run = _Run(width=1)
        run.fake.inject(503, count=2)
        run.put({"id": 1})
        run.run()
        [job] = run.done
        self.assertEqual(job.attempts, 3)
        drops = run.finished(ApiServerError)
        self.assertEqual([e.outcome for e, _, _ in drops], [Outcome.RETRIED] * 2)
        self.assertEqual({signal for _, _, signal in drops}, {Signal.DROP})


class FailureTests(SynchronousTestCase):
    """Timeouts, broken connections and unusable bodies end in their
    named errors; a Secret query value never shows in the page's URL."""

    def test_timeout(self) -> None:
        """No response headers within headers_timeout: ApiTimeout of the
        response phase, in-flight count back to 0."""
        run = _Run(latency=100.0, conf=config(headers_timeout=5.0))
        d = run.call({"id": 1})
        run.run(until=6.0)
        error = self.failureResultOf(d, ApiTimeout).value
        self.assertEqual((error.seconds, error.phase), (5.0, "response"))
        self.assertEqual(run.caller.budget.in_flight, 0)

    def test_whole_call_timeout(self) -> None:
        """``timeout`` bounds the whole call: with the headers' own limit
        far off, the call fails at ``timeout`` with an ApiTimeout of the
        request phase, and nothing stays in flight."""
        run = _Run(latency=100.0, conf=config(headers_timeout=60.0, timeout=3.0))
        d = run.call({"id": 1})
        run.run(until=2.9)
        self.assertNoResult(d)
        run.run(until=3.1)
        error = self.failureResultOf(d, ApiTimeout).value
        self.assertEqual((error.seconds, error.phase), (3.0, "request"))
        self.assertEqual(run.caller.budget.in_flight, 0)

    def test_connection_refused(self) -> None:
        """A client that cannot connect: ApiConnectionFailed."""

        class Refusing:
            def request(self, *args: Any, **kw: Any) -> Deferred[Any]:
                return fail(ConnectionRefusedError())

        run = _Run(http=Refusing())
        d = run.call({"id": 1})
        error = self.failureResultOf(d, ApiConnectionFailed).value
        self.assertIn("ConnectionRefusedError", str(error))
        self.assertEqual(run.caller.budget.in_flight, 0)

    def test_bad_bodies_and_masked_secret(self) -> None:
        """Not JSON, too large: ApiBadResponse.  A Secret param is sent as
        itself but shown as ***."""
        echo = _Echo(b"not json")
        run = _Run(resource=echo, conf=config(path="/x", params={"key": Secret("k3y")}))
        d = run.call({})
        run.run()
        self.assertIn(
            "body is not JSON", str(self.failureResultOf(d, ApiBadResponse).value)
        )
        self.assertEqual(echo.uris, [b"/x?key=k3y"])

        echo.body = b'{"data": [1, 2], "meta": {}}'
        page = self.successResultOf(_fired(run, run.call({})))
        self.assertEqual(page.url, "https://api.x.com/x?key=***")
        self.assertEqual(page.items, [1, 2])

        echo.body = b"[" + b"1," * 100 + b"1]"
        small = _Run(resource=echo, conf=config(path="/x", max_body=50))
        d = small.call({})
        small.run()
        self.assertIn(
            "exceeds 50 bytes", str(self.failureResultOf(d, ApiBadResponse).value)
        )

    def test_job_argument_forms(self) -> None:
        """The caller takes an ApiRequest or its JSON form; anything else
        fails as a BadRequestRow, as does a row that cannot fill the path."""
        run = _Run()
        page = self.successResultOf(
            _fired(
                run, run.caller({"row": {"id": 5}, "page": 1, "token": None, "id": 1})
            )
        )
        self.assertEqual(page.status, 200)
        self.failureResultOf(run.caller("5"), BadRequestRow)  # type: ignore[arg-type]
        self.failureResultOf(run.caller({"row": {"id": 5}, "page": 0}), BadRequestRow)
        self.failureResultOf(run.caller(ApiRequest({"name": "x"})), BadRequestRow)
        with self.assertRaises(BadRequestRow):
            run.caller.first_page({"name": "x"})


class _Echo(Resource):
    """Answers every request with a fixed body; records the request URIs."""

    isLeaf = True

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body
        self.uris: list[bytes] = []

    def render(self, request: Any) -> bytes:
        self.uris.append(request.uri)
        return self.body


class _Manual(Resource):
    """Holds every request until the test answers it, in any order."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Any] = []

    def render(self, request: Any) -> int:
        self.requests.append(request)
        return NOT_DONE_YET

    def answer(
        self,
        index: int,
        remaining: int,
        reset: float,
        status: int = 200,
        limit: int = 10,
    ) -> None:
        request = self.requests[index]
        request.setResponseCode(status)
        request.setHeader("x-rate-limit-limit", str(limit))
        request.setHeader("x-rate-limit-remaining", str(remaining))
        request.setHeader("x-rate-limit-reset", str(reset))
        request.write(b"{}")
        request.finish()


def _fired(run: _Run, d: Deferred[Any]) -> Deferred[Any]:
    run.run()
    return d


class QuotaTests(SynchronousTestCase):
    """The caller's budget: remaining minus in flight, the lowest count of
    a window, the probe before the first answer, the hold until the reset
    plus the margin, and QuotaExhausted when a launch finds it spent."""

    def test_out_of_order_answers_keep_the_lowest(self) -> None:
        """Within a window the lowest remaining wins; an answer from a window
        already reset is ignored; a later window replaces the count."""
        manual = _Manual()
        run = _Run(resource=manual)
        first = run.call({"id": 1})
        second = run.call({"id": 2})  # waits for the first (the probe)
        self.assertEqual(len(manual.requests), 1)
        manual.answer(0, remaining=9, reset=100)
        run.stub.flush()
        self.successResultOf(first)
        self.assertEqual(len(manual.requests), 2)  # the waiting call went
        third = run.call({"id": 3})
        self.assertEqual(
            run.caller.budget, attrs.evolve(run.caller.budget, remaining=9, in_flight=2)
        )
        manual.answer(2, remaining=7, reset=100)
        manual.answer(1, remaining=8, reset=100)
        run.stub.flush()
        self.successResultOf(second)
        self.successResultOf(third)
        self.assertEqual(run.caller.budget.remaining, 7)
        self.assertEqual(run.caller.budget.available, 7)
        fourth = run.call({"id": 4})
        manual.answer(3, remaining=9, reset=40)  # from a window before
        run.stub.flush()
        self.successResultOf(fourth)
        self.assertEqual(run.caller.budget.remaining, 7)
        fifth = run.call({"id": 5})
        manual.answer(4, remaining=9, reset=200)  # a new window
        run.stub.flush()
        self.successResultOf(fifth)
        self.assertEqual(
            (run.caller.budget.remaining, run.caller.budget.reset_at), (9, 200.0)
        )

    def test_probe_first_when_width_exceeds_quota(self) -> None:
        """Width 50 against a quota of 20: before the first answer only one
        request goes; the whole run sees no 429."""
        run = _Run(width=50, quotas={TWEETS: (20, 60)})
        for n in range(100):
            run.put({"id": n}, n)
        self.assertEqual(run.fake.requests[TWEETS], 1)
        run.run()
        self.assertEqual(len(run.done), 100)
        self.assertEqual(sum(run.fake.throttled.values()), 0)
        self.assertEqual(run.fake.requests[TWEETS], 100)

    def test_hold_until_reset_plus_margin(self) -> None:
        """Sending the request that spends the quota holds the lane until
        the reset plus the margin; nothing is sent before then.  (Width 1:
        answers due at one instant come out of StubTreq in no set order, and
        the budget counts an unanswered request as unspent-by-the-server, so
        with more in flight one unit of a window may go unused.)"""
        run = _Run(width=1, quotas={TWEETS: (5, 60)}, conf=config(reset_margin=2.5))
        for n in range(7):
            run.put({"id": n}, n)
        run.run(until=10.0)
        self.assertEqual(len(run.done), 5)
        assert run.queue is not None
        [lane] = run.queue.lanes()
        self.assertEqual(lane.held_until, 62.5)
        self.assertEqual(run.caller.stats.holds, 1)
        run.run()
        self.assertEqual(len(run.done), 7)
        late = [j.launched_at for j in run.done if j.id in (5, 6)]
        self.assertTrue(all(t >= 62.5 for t in late), late)
        self.assertEqual(sum(run.fake.throttled.values()), 0)
        self.assertEqual(run.caller.stats.quota_waits, 0)

    def test_quota_exhausted_is_not_a_429(self) -> None:
        """An unbound caller cannot hold the lane, so launches that find the
        budget spent raise QuotaExhausted: not sent, the queue holds the
        lane and retries after the reset; an attempt, but no 429 and a
        signal the controller ignores."""
        run = _Run(width=10, bind=False, quotas={TWEETS: (15, 60)})
        for n in range(40):
            run.put({"id": n}, n)
        run.run()
        self.assertEqual(len(run.done), 40)
        self.assertEqual(sum(run.fake.throttled.values()), 0)
        self.assertEqual(run.fake.requests[TWEETS], 40)  # nothing sent twice
        waits = run.finished(QuotaExhausted)
        self.assertGreater(len(waits), 0)
        self.assertEqual(run.caller.stats.quota_waits, len(waits))
        self.assertEqual(run.caller.stats.status_429, 0)
        for event, error, signal in waits:
            self.assertIs(event.outcome, Outcome.THROTTLED)
            self.assertIs(signal, Signal.IGNORE)
            self.assertIsNone(error.status)
        # Each QuotaExhausted cost its job one attempt and nothing else.
        per_job = Counter(e.job.id for e, _, _ in waits)
        self.assertEqual(
            {j.id: j.attempts - 1 for j in run.done if j.attempts > 1}, dict(per_job)
        )

    def test_margin_covers_a_server_clock_behind_ours(self) -> None:
        """The server's clock is 0.5 s behind ours, so its whole-second reset
        (ceil(59.75) = 60 on its clock) is 0.25 s before the window really
        ends on ours (60.25): with the default 1 s margin no 429; with no
        margin the first request after each reset is early and refused."""

        def behind(clock: Clock) -> Any:
            return _Skewed(clock, -0.5)

        for margin, expect_429 in [(1.0, False), (0.0, True)]:
            run = _Run(
                width=3,
                server_clock=behind,
                quotas={TWEETS: (10, 60)},
                conf=config(reset_margin=margin),
            )
            run.clock.advance(0.25)  # the first window ends at 60.25, ours
            for n in range(25):
                run.put({"id": n}, n)
            run.run()
            self.assertEqual(len(run.done), 25)  # min_retry_after: no spin
            self.assertEqual(sum(run.fake.throttled.values()) > 0, expect_429, margin)

    def test_new_window_is_probed_and_held_to_its_reset(self) -> None:
        """Width 50 against 15 per 3 s window (windows from their first
        request, 1 s margin): after the first window's reset, one request
        (a probe) goes alone until its answer says what the new window
        holds; the window's calls then go, and the lane is held until that
        window's announced reset plus the margin (8 s), not for a guessed
        ``default_retry_after`` (it was 64 s: the burst of 15 at the reset
        spent an assumed budget before any answer)."""
        run = _Run(width=50, quotas={TWEETS: (15, 3.0)}, latency=0.02)
        for n in range(40):
            run.put({"id": n}, n)
        assert run.queue is not None
        run.run(until=3.99)
        self.assertEqual(run.fake.requests[TWEETS], 15)
        [lane] = run.queue.lanes()
        self.assertEqual(lane.held_until, 4.0)
        run.run(until=4.01)
        self.assertEqual(run.fake.requests[TWEETS], 16)  # the probe alone
        self.assertIsNone(run.caller.budget.remaining)  # not assumed: unknown
        run.run(until=7.99)
        self.assertEqual(run.fake.requests[TWEETS], 30)
        [lane] = run.queue.lanes()
        self.assertEqual(lane.held_until, 8.0)
        self.assertEqual(run.caller.budget.reset_at, 7.0)
        run.run()
        self.assertEqual(len(run.done), 40)
        self.assertEqual(sum(run.fake.throttled.values()), 0)
        self.assertEqual(run.caller.stats.quota_waits, 0)

    def test_answers_in_flight_shut_the_lane_only_until_they_come(self) -> None:
        """Width 10 against 15 per 60 s: after the probe, 10 go at once and
        their answers come back in the worst order (the last counted first,
        saying 4 left while 9 are in flight).  The lane is held only in
        short steps until the other answers show that 4 are indeed left;
        then 4 more go, the 15th spends the window and the lane is held until
        its reset plus the margin (61 s).  (The whole window, 60 s, was lost
        on the first answer before.)"""
        manual = _Manual()
        run = _Run(width=10, resource=manual)
        for n in range(20):
            run.put({"id": n}, n)
        assert run.queue is not None
        manual.answer(0, remaining=14, reset=60, limit=15)
        run.run(until=0.1)  # the probe's step of holding ends
        self.assertEqual(len(manual.requests), 11)
        for index, remaining in zip(range(10, 0, -1), range(4, 14), strict=True):
            manual.answer(index, remaining=remaining, reset=60, limit=15)
            run.stub.flush()
            if index == 10:
                [lane] = run.queue.lanes()
                assert lane.held_until is not None
                self.assertLess(lane.held_until, 0.2)  # a step, not the window
        run.run(until=0.2)
        self.assertEqual(len(manual.requests), 15)
        for index in range(11, 15):
            manual.answer(index, remaining=14 - index, reset=60, limit=15)
        run.stub.flush()
        run.run(until=2.0)
        self.assertEqual(len(manual.requests), 15)
        [lane] = run.queue.lanes()
        self.assertEqual(lane.held_until, 61.0)
        self.assertEqual(sum(1 for _ in run.finished(QuotaExhausted)), 0)


@attrs.frozen
class _Skewed:
    """A clock ``skew`` seconds off another (for the server)."""

    clock: Clock
    skew: float

    def seconds(self) -> float:
        return self.clock.seconds() + self.skew

    def callLater(self, delay: float, f: Any, *args: Any) -> Any:
        return self.clock.callLater(delay, f, *args)


# ----------------------------------------------------------------------
# The figure


class WideQueueTests(SynchronousTestCase):
    def test_a_window_spent_before_its_first_answer(self) -> None:
        """A queue wider than the quota sends a whole window's 15 calls
        before any of them is answered, so the budget is spent while its
        reset is unknown: the lane is held until the reset the answers then
        announce (plus the margin), not for default_retry_after (60 s), and
        45 calls take three windows with no 429."""
        run = _Run(width=20, quotas={TWEETS: (15, 3.0)}, latency=0.02, pages=1)
        for n in range(45):
            run.put({"id": n}, n)
        run.run()
        self.assertEqual(len(run.done), 45)
        self.assertEqual(sum(run.fake.throttled.values()), 0)
        last = max(job.stopped_at for job in run.done)
        # two resets, each at most 1 s of rounding and 1 s of margin away
        self.assertLessEqual(last, 2 * (3.0 + 2.0) + 0.1)


class FigureTests(SynchronousTestCase):
    """2,000 calls against 450 per 900 s window, lanes by endpoint: zero
    429s, and simulated time within 10% of the quota's lower bound.

    The bound: the fake's window starts at its first request, so with 450 a
    window, calls 1,801-2,000 fall in the 5th window, which cannot start
    before 4 x 900 s = 3,600 s; then the 200 calls of the tail take at least
    ceil(200 / width) answers of 0.02 s one after another.  The caller's
    margin (1 s) and X's whole-second resets cost about 1 s per window.
    """

    def figure(self, width: int) -> None:
        calls, limit, window, latency = 2000, 450, 900.0, 0.02
        run = _Run(
            width=width, quotas={TWEETS: (limit, window)}, latency=latency, pages=1
        )
        for n in range(calls):
            run.put({"id": n}, n)
        elapsed = run.run()
        full = math.ceil(calls / limit) - 1
        tail = calls - full * limit
        bound = full * window + math.ceil(tail / width) * latency
        self.assertEqual(len(run.done), calls)
        self.assertEqual(run.failed, [])
        self.assertEqual(sum(run.fake.throttled.values()), 0)
        self.assertEqual(run.caller.stats.status_429, 0)
        self.assertEqual(run.fake.requests[TWEETS], calls)
        self.assertGreaterEqual(elapsed, bound)
        self.assertLessEqual(elapsed, bound * 1.10)

    def test_width_1(self) -> None:
        """Width 1."""
        self.figure(1)

    def test_width_10(self) -> None:
        """Width 10."""
        self.figure(10)

    def test_width_50(self) -> None:
        """Width 50."""
        self.figure(50)


class FakeJitterTests(SynchronousTestCase):
    """The fake's ``jitter``: answers come back out of order, the same way
    for the same seed."""

    def order(self, **fake: Any) -> list[tuple[int, float]]:
        """(user, seconds taken) of each answer to 20 calls made at once,
        in the order the answers came (after a first call, the probe)."""
        run = _Run(latency=0.02, pages=1, **fake)
        self.successResultOf(_fired(run, run.call({"id": 100})))
        start = run.clock.seconds()
        answered: list[tuple[int, float]] = []
        for user in range(20):
            run.call({"id": user}).addCallback(
                lambda page: answered.append(
                    (page.request.row["id"], run.clock.seconds() - start)
                )
            )
        run.run()
        return answered

    def test_out_of_order_and_reproducible(self) -> None:
        """With a jitter of 30 ms, answers to calls sent in one instant take
        20-50 ms and do not come back in the order sent; the same seed gives
        the same order, another seed another; without, all take 20 ms."""
        jittered = self.order(jitter=0.03, seed=1)
        self.assertEqual(sorted(user for user, _ in jittered), list(range(20)))
        self.assertNotEqual([user for user, _ in jittered], list(range(20)))
        self.assertTrue(all(0.02 <= took <= 0.05 for _, took in jittered))
        self.assertEqual(self.order(jitter=0.03, seed=1), jittered)
        self.assertNotEqual(self.order(jitter=0.03, seed=2), jittered)
        plain = self.order()  # all at one instant, in no set order
        self.assertEqual(sorted(plain), [(user, 0.02) for user in range(20)])
        with self.assertRaises(ValueError):
            FakeXAPI(Clock(), jitter=-0.1)


def _jittered_run(
    width: int,
    quota: tuple[int, float],
    latency: float,
    conf: ApiConfig,
    aligned: bool = False,
) -> _Run:
    """A run of one page a call against the timeline endpoint's ``quota``
    (calls per window of seconds), answers taking ``latency`` plus up to
    30 ms, in any order."""
    return _Run(
        width=width,
        quotas={TWEETS: quota},
        latency=latency,
        jitter=0.03,
        pages=1,
        aligned=aligned,
        conf=conf,
    )


class AnyWidthTests(SynchronousTestCase):
    """Issue 9, item 7: 120 calls against 15 per 3 s window, announced in
    ``x-rate-limit-*``, at widths from 1 to 200 (below, at and above the
    quota): zero 429s, every call sent once and succeeding at its first
    attempt, the last answer within 1.2 times the lower bound of simulated
    time.  Answers take 20-50 ms (jitter), so they come back out of order.

    The bound is when the 8th window can start, plus the tail's answers
    (``ceil(15 / width)`` of 20 ms one after another):

    - fixed windows on the clock (``aligned``, as X describes them), with
      the default 1 s margin: the 8th starts at 7 x 3 s = 21 s, whatever
      the margin (it is spent inside each window);
    - windows from their first request, no margin: the same 21 s;
    - windows from their first request with the 1 s margin: a window can
      only start at the previous one's announced reset (whole epoch seconds)
      plus the margin, so each costs 4 s and the 8th starts at 28 s.

    Before the fix, at widths of 15 and more the last answer came at 364 s
    (each reset's burst spent the new window before any answer said when it
    would end, so the hold fell back to ``default_retry_after``, and the
    answers could not shorten it), and at width 10 at 33-44 s (a hold until
    the next reset whenever out-of-order answers made the requests in
    flight look as if they would spend the rest of the window).
    """

    calls, limit, window, latency = 120, 15, 3.0, 0.02

    def bound(self, width: int, aligned: bool, margin: float) -> float:
        """The lower bound of the docstring."""
        full = math.ceil(self.calls / self.limit) - 1
        start = 0.0
        for _ in range(full):
            start = (
                start + self.window
                if aligned
                else math.ceil(start + self.window) + margin
            )
        tail = self.calls - full * self.limit
        return start + math.ceil(tail / width) * self.latency

    def figure(self, width: int) -> None:
        for aligned, margin in [(True, 1.0), (False, 0.0), (False, 1.0)]:
            with self.subTest(aligned=aligned, margin=margin):
                run = _jittered_run(
                    width,
                    (self.limit, self.window),
                    self.latency,
                    config(reset_margin=margin),
                    aligned=aligned,
                )
                for n in range(self.calls):
                    run.put({"id": n}, n)
                run.run()
                self.assertEqual(len(run.done), self.calls)
                self.assertEqual(run.failed, [])
                self.assertEqual(sum(run.fake.throttled.values()), 0)
                self.assertEqual(run.fake.requests[TWEETS], self.calls)
                self.assertEqual({job.attempts for job in run.done}, {1})
                elapsed = max(e.time for e in run.events if isinstance(e, JobFinished))
                bound = self.bound(width, aligned, margin)
                self.assertGreaterEqual(elapsed, bound)
                self.assertLessEqual(elapsed, bound * 1.2, (elapsed, bound))

    def test_width_1(self) -> None:
        """Width 1."""
        self.figure(1)

    def test_width_10(self) -> None:
        """Width 10."""
        self.figure(10)

    def test_width_15(self) -> None:
        """Width 15: the quota."""
        self.figure(15)

    def test_width_16(self) -> None:
        """Width 16: one more than the quota."""
        self.figure(16)

    def test_width_50(self) -> None:
        """Width 50: the issue's."""
        self.figure(50)

    def test_width_200(self) -> None:
        """Width 200: more than there are calls."""
        self.figure(200)


# ----------------------------------------------------------------------
# Loopback


class LoopbackTests(TestCase):
    """The fake on a real port, the caller's own treq client."""

    def setUp(self) -> None:
        self.served = serve(reactor, pages=3, items_per_page=4, latency=0.001)
        self.addCleanup(self.served.stop)
        conf = config(base_url=self.served.url, max_pages=3, records="item")
        self.caller = ApiCaller(conf, reactor, pool_size=2)
        self.addCleanup(self.caller.close)

    async def test_paginated_calls(self) -> None:
        """Two users, three pages each, through a queue: 24 item records,
        pages chained by token, the quota read from real headers."""
        queue = ResizableDispatchQueue(
            self.caller, 2, clock=reactor, retry=api_retry_policy()
        )
        self.caller.bind(queue)
        pages: list[ApiPage] = []

        async def walk(user: int) -> None:
            request: ApiRequest | None = self.caller.first_page({"id": user}, id=user)
            while request is not None:
                job = await queue.put(request, key=self.caller.lane_key(request))
                pages.append(job.result)
                request = job.result.next_request()

        await Deferred.fromCoroutine(walk(1))
        await Deferred.fromCoroutine(walk(2))
        records = [r for p in pages for r in p.records()]
        self.assertEqual(len(pages), 6)
        self.assertEqual(len(records), 24)
        self.assertEqual([p.request.page for p in pages], [1, 2, 3, 1, 2, 3])
        self.assertEqual(pages[-1].next_token, None)
        self.assertEqual(self.served.fake.requests[TWEETS], 6)
        quota = pages[-1].quota
        assert quota is not None
        self.assertEqual((quota.limit, quota.remaining), (1500, 1494))
        self.assertGreater(quota.reset_at, reactor.seconds())


class KnownWindowTests(SynchronousTestCase):
    """``window``: the quota window's length, as the provider documents it.
    X-style windows (each starts at its first request; resets announced in
    whole epoch seconds, rounded up) end up to a second before the reset
    they announce: with the length known, a window ends by its first
    answer plus the length.  120 calls against 15 per 3 s, answers 20-50 ms
    (jitter), margin 0.1 s."""

    calls, limit, window, latency, margin = 120, 15, 3.0, 0.02, 0.1

    def elapsed(self, width: int, window: float | None) -> tuple[float, _Run]:
        run = _jittered_run(
            width,
            (self.limit, self.window),
            self.latency,
            config(reset_margin=self.margin, window=window),
        )
        for n in range(self.calls):
            run.put({"id": n}, n)
        run.run()
        self.assertEqual(len(run.done), self.calls)
        self.assertEqual(run.failed, [])
        refused = sum(run.fake.throttled.values())
        self.assertEqual(run.fake.requests[TWEETS], self.calls + refused)
        return max(e.time for e in run.events if isinstance(e, JobFinished)), run

    def test_a_known_window_ends_before_its_rounded_reset(self) -> None:
        """At widths 1, 15 and 50: no 429, within 1.2x of the strict bound
        (the 8th window at 7 x 3 s, then the tail), and sooner than
        without the length (each window then lasts to its whole-second
        reset: 1.2-1.3x)."""
        full = math.ceil(self.calls / self.limit) - 1
        for width in (1, 15, 50):
            with self.subTest(width=width):
                tail = math.ceil((self.calls - full * self.limit) / width)
                bound = full * self.window + tail * self.latency
                known, run = self.elapsed(width, self.window)
                self.assertEqual(sum(run.fake.throttled.values()), 0)
                self.assertEqual({job.attempts for job in run.done}, {1})
                self.assertGreaterEqual(known, bound)
                self.assertLessEqual(known, 1.2 * bound, (known, bound))
                unknown, _ = self.elapsed(width, None)
                self.assertLess(known, unknown)

    def test_a_window_declared_too_short_is_refused_not_lost(self) -> None:
        """A length shorter than the real one (2 s for 3 s) sends too soon:
        the server refuses, and every call still succeeds, once each (a
        refused call is sent again: the requests are the calls plus the
        refusals)."""
        _, run = self.elapsed(15, 2.0)
        self.assertGreater(sum(run.fake.throttled.values()), 0)
        rows = sorted(job.arg.row["id"] for job in run.done)
        self.assertEqual(rows, list(range(120)))
