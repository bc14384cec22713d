"""A fake X (Twitter) API v2: per-endpoint quotas, X's headers, pagination.

For unit tests it runs in-process on a ``task.Clock`` behind
``treq.testing.StubTreq``; for integration tests, and for a user to try a
recipe against, :func:`serve` puts it on a loopback port::

    clock = task.Clock()
    fake = FakeXAPI(clock, quotas={"/2/users/{id}/tweets": (450, 900)})
    stub = StubTreq(fake)
    caller = ApiCaller(config, clock, http=stub)
    d = caller(request)
    run_until_idle(clock, stub)          # advance the clock, flush the stub
    page = successResultOf(d)

**Answers arrive late.**  Each answer is written ``latency`` seconds after
the request (``clock.callLater``, the resource returns ``NOT_DONE_YET``),
plus up to ``jitter`` seconds more, drawn from a generator seeded with
``seed``: answers then overtake each other, the same way on every run.
StubTreq moves bytes only when flushed: a test must call ``stub.flush()``
after every clock advance.  :func:`run_until_idle` does both, one scheduled
call at a time, until nothing is left to happen.

**Quotas, X style.**  Each endpoint (path template) has ``(limit,
window_seconds)``, counted in fixed windows (not a sliding log or a bucket):
a window's count starts at 0 and only grows until the window ends, then
starts again.  A window starts with the first request after the previous
window ended (X's "15-minute window"), or, with ``aligned=True``, at the
multiples of the window on the clock.  Every authenticated answer of
an endpoint carries ``x-rate-limit-limit``, ``x-rate-limit-remaining`` (after
counting this request) and ``x-rate-limit-reset`` (epoch seconds, rounded
up, so it is never before the real reset).  Request ``limit + 1`` of a window
gets X's 429 body, with the headers, and is not counted against the window.
``rate_headers="on_429"`` sends the headers on 429s only (a server that does
not announce its quota in advance), ``"never"`` not even then;
``retry_after=True`` adds a Retry-After to 429s.

**Endpoints** (all GET, ``Authorization: Bearer <token>`` required):

- ``/2/users/{id}/tweets`` and ``/2/users/{id}/mentions``: ``max_results``
  (5-100), ``pagination_token``;
- ``/2/tweets/search/recent``: ``query`` (required), ``max_results``
  (10-100), ``next_token``;
- ``/2/users/{id}``: one user.

A timeline has ``pages * items_per_page`` tweets (page size
``items_per_page`` unless ``max_results`` says otherwise), newest first, the
same on every run: ``{"data": [...], "meta": {"result_count": n,
"newest_id": ..., "oldest_id": ..., "next_token": ...}}``, with no
``next_token`` on the last page.  A non-numeric id, an unknown parameter or
a bad token gets X's 400 body, a wrong bearer token a 401.

:meth:`FakeXAPI.inject` scripts the next answers (a GitHub-style secondary
limit: 403 with Retry-After; a 503).  Counters: ``requests`` and
``throttled`` (429s sent) per endpoint, ``statuses`` per status.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import random
from collections import Counter, deque
from collections.abc import Mapping
from typing import Any, Literal

import attrs
from twisted.web.http import RESPONSES
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from fetchq.testing.clock import run_until_idle
from fetchq.testing.served import Served, serve_resource

__all__ = [
    "DEFAULT_QUOTAS",
    "TOO_MANY_REQUESTS",
    "FakeXAPI",
    "ServedAPI",
    "run_until_idle",
    "serve",
]

DEFAULT_QUOTAS: dict[str, tuple[int, float]] = {
    "/2/users/{id}/tweets": (1500, 900.0),
    "/2/users/{id}/mentions": (450, 900.0),
    "/2/tweets/search/recent": (450, 900.0),
    "/2/users/{id}": (300, 900.0),
}
"""X's app-auth quotas per 15 minutes, for endpoints not given ``quotas``."""

TOO_MANY_REQUESTS = {
    "title": "Too Many Requests",
    "detail": "Too Many Requests",
    "type": "about:blank",
    "status": 429,
}
"""X's 429 body."""

SECONDARY_LIMIT = {
    "message": "You have exceeded a secondary rate limit. Please wait a few "
    "minutes before you try again.",
    "documentation_url": "https://docs.github.com/rest/overview/rate-limits",
}
"""GitHub's secondary-limit body, the default of an injected 403."""

_COMMON = frozenset(
    {"expansions", "tweet.fields", "user.fields", "media.fields", "place.fields"}
    | {"poll.fields"}
)
_TIMELINE = _COMMON | {
    "max_results",
    "pagination_token",
    "since_id",
    "until_id",
    "start_time",
    "end_time",
    "exclude",
}
_SEARCH = _COMMON | {
    "query",
    "max_results",
    "next_token",
    "since_id",
    "until_id",
    "start_time",
    "end_time",
    "sort_order",
}


@attrs.define
class _Window:
    start: float
    count: int = 0


@attrs.frozen
class _Answer:
    status: int
    body: Any
    headers: tuple[tuple[str, str], ...] = ()


def _problem(status: int) -> dict[str, Any]:
    title = RESPONSES.get(status, b"Error").decode()
    return {"title": title, "detail": title, "type": "about:blank", "status": status}


def _invalid(name: str, value: str, message: str | None = None) -> _Answer:
    return _Answer(
        400,
        {
            "errors": [
                {
                    "parameters": {name: [value]},
                    "message": message
                    or f"The `{name}` query parameter value [{value}] is not valid",
                }
            ],
            "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": "https://api.twitter.com/2/problems/invalid-request",
        },
    )


def _page_token(offset: int) -> str:
    return base64.b32encode(f"fq{offset}".encode()).decode().lower().rstrip("=")


def _offset(token: str) -> int | None:
    padded = token.upper() + "=" * (-len(token) % 8)
    try:
        text = base64.b32decode(padded).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not text.startswith("fq") or not text[2:].isdigit():
        return None
    return int(text[2:])


class FakeXAPI(Resource):
    """The fake API, a ``twisted.web`` resource (see the module docstring).

    Args:
        clock: an ``IReactorTime``: a ``task.Clock`` in-process, the reactor
            on a port.
        quotas: ``{path template: (limit, window seconds)}``, overriding
            :data:`DEFAULT_QUOTAS`.
        latency: seconds before each answer is written (0: at once).
        jitter: up to this many seconds more for each answer, uniformly
            drawn (0: none), so answers come out of order.
        seed: seeds the jitter's generator.
        pages: pages in every timeline and search result.
        items_per_page: tweets per page unless ``max_results`` is given.
        token: the bearer token it accepts.
        rate_headers: ``"always"``, ``"on_429"`` or ``"never"``: which answers
            carry the ``x-rate-limit-*`` headers.
        retry_after: add ``Retry-After`` (seconds to the reset) to 429s.
        aligned: windows at multiples of their length on the clock, instead
            of from the first request.

    Attributes:
        requests: authenticated requests per endpoint (429s included).
        throttled: 429 answers per endpoint.
        statuses: answers per status code.
    """

    isLeaf = True

    def __init__(
        self,
        clock: Any,
        quotas: Mapping[str, tuple[int, float]] | None = None,
        *,
        latency: float = 0.02,
        jitter: float = 0.0,
        seed: int = 0,
        pages: int = 3,
        items_per_page: int = 10,
        token: str = "test-token",
        rate_headers: Literal["always", "on_429", "never"] = "always",
        retry_after: bool = False,
        aligned: bool = False,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        if rate_headers not in ("always", "on_429", "never"):
            raise ValueError(
                f"rate_headers must be always/on_429/never: {rate_headers!r}"
            )
        if not latency >= 0:
            raise ValueError(f"latency must be >= 0, not {latency!r}")
        if not jitter >= 0:
            raise ValueError(f"jitter must be >= 0, not {jitter!r}")
        self.clock = clock
        self.quotas = dict(DEFAULT_QUOTAS)
        for endpoint, (limit, window) in (quotas or {}).items():
            if endpoint not in DEFAULT_QUOTAS:
                raise ValueError(f"no such endpoint {endpoint!r}")
            if limit < 0 or not window > 0:
                raise ValueError(f"bad quota for {endpoint}: {(limit, window)!r}")
            self.quotas[endpoint] = (limit, float(window))
        self.latency = latency
        self.jitter = jitter
        self._random = random.Random(seed)
        self.pages = pages
        self.items_per_page = items_per_page
        self.token = token
        self.rate_headers = rate_headers
        self.retry_after = retry_after
        self.aligned = aligned
        self.requests: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self._windows: dict[str, _Window] = {}
        self._scripted: deque[_Answer] = deque()
        self._routes: list[tuple[list[str], str]] = [
            (template.strip("/").split("/"), template) for template in DEFAULT_QUOTAS
        ]

    # ------------------------------------------------------------------
    # For tests

    def inject(
        self,
        status: int,
        *,
        retry_after: float | None = None,
        reset_in: float | None = None,
        body: Any = None,
        count: int = 1,
    ) -> None:
        """Answer the next ``count`` authenticated requests (any endpoint)
        with ``status``, not counted against their window.

        Args:
            status: the status, e.g. 403 for a GitHub-style secondary limit.
            retry_after: a Retry-After in seconds to send, or None.
            reset_in: send the endpoint's headers with ``remaining: 0`` and a
                reset this many seconds away (a spent primary quota).
            body: the JSON body (default: GitHub's secondary-limit message
                for 403, X's 429 body for 429, a problem document otherwise).
        """
        headers: list[tuple[str, str]] = []
        if retry_after is not None:
            headers.append(("Retry-After", f"{retry_after:g}"))
        if reset_in is not None:
            headers.append(("x-reset-in", f"{reset_in:g}"))  # marker, see render
        if body is None:
            if status == 403:
                body = SECONDARY_LIMIT
            elif status == 429:
                body = TOO_MANY_REQUESTS
            else:
                body = _problem(status)
        for _ in range(count):
            self._scripted.append(_Answer(status, body, tuple(headers)))

    def window(self, endpoint: str) -> tuple[int, int, float]:
        """``(limit, remaining, reset)`` of an endpoint's current window, as
        its next answer would announce them (before counting that request)."""
        window = self._window(endpoint, self.clock.seconds())
        limit, length = self.quotas[endpoint]
        return limit, max(0, limit - window.count), window.start + length

    # ------------------------------------------------------------------
    # Serving

    def render(self, request: Any) -> bytes | int:
        """Answer ``request`` now or, with a latency, later."""
        answer, endpoint = self._answer(request)
        self.statuses[answer.status] += 1
        if answer.status == 429 and endpoint is not None:
            self.throttled[endpoint] += 1
        delay = self.latency
        if self.jitter:
            delay += self._random.uniform(0.0, self.jitter)
        if not delay:
            return self._write(request, answer)
        call = self.clock.callLater(delay, self._finish, request, answer)
        request.notifyFinish().addErrback(
            lambda _: call.cancel() if call.active() else None
        )
        return NOT_DONE_YET

    def _finish(self, request: Any, answer: _Answer) -> None:
        request.write(self._write(request, answer))
        request.finish()

    def _write(self, request: Any, answer: _Answer) -> bytes:
        request.setResponseCode(answer.status)
        for name, value in answer.headers:
            request.setHeader(name, value)
        request.setHeader("Content-Type", "application/json; charset=utf-8")
        return json.dumps(answer.body, separators=(",", ":")).encode()

    def _answer(self, request: Any) -> tuple[_Answer, str | None]:
        """The answer to a request and the endpoint it hit (None: none)."""
        if request.getHeader("authorization") != f"Bearer {self.token}":
            return _Answer(401, _problem(401)), None
        path = (request.path or b"").decode("utf-8", "replace")
        route = self._route(path)
        if route is None:
            body = {
                "errors": [{"message": "Sorry, that page does not exist", "code": 34}]
            }
            return _Answer(404, body), None
        endpoint, ids = route
        if request.method != b"GET":
            return _Answer(405, _problem(405)), endpoint
        self.requests[endpoint] += 1
        now = self.clock.seconds()
        window = self._window(endpoint, now)
        limit, length = self.quotas[endpoint]
        if self._scripted:
            scripted = self._scripted.popleft()
            extra = dict(scripted.headers)
            reset_in = extra.pop("x-reset-in", None)
            headers = list(extra.items())
            if reset_in is not None:
                reset = math.ceil(now + float(reset_in))
                headers += self._rate(limit, 0, reset)
            elif self.rate_headers == "always":
                headers += self._rate(
                    limit, limit - window.count, window.start + length
                )
            return attrs.evolve(scripted, headers=tuple(headers)), endpoint
        reset_at = window.start + length
        if window.count >= limit:
            headers = (
                [] if self.rate_headers == "never" else self._rate(limit, 0, reset_at)
            )
            if self.retry_after:
                headers.append(("Retry-After", str(math.ceil(reset_at - now))))
            return _Answer(429, TOO_MANY_REQUESTS, tuple(headers)), endpoint
        window.count += 1
        answer = self._handle(endpoint, ids, _query(request))
        if self.rate_headers == "always":
            rate = self._rate(limit, limit - window.count, reset_at)
            answer = attrs.evolve(answer, headers=answer.headers + tuple(rate))
        return answer, endpoint

    def _rate(
        self, limit: int, remaining: int, reset_at: float
    ) -> list[tuple[str, str]]:
        return [
            ("x-rate-limit-limit", str(limit)),
            ("x-rate-limit-remaining", str(max(0, remaining))),
            ("x-rate-limit-reset", str(math.ceil(reset_at))),
        ]

    def _window(self, endpoint: str, now: float) -> _Window:
        length = self.quotas[endpoint][1]
        window = self._windows.get(endpoint)
        if window is None or now >= window.start + length:
            start = math.floor(now / length) * length if self.aligned else now
            window = self._windows[endpoint] = _Window(start)
        return window

    def _route(self, path: str) -> tuple[str, list[str]] | None:
        parts = path.strip("/").split("/")
        for pattern, template in self._routes:
            if len(pattern) != len(parts):
                continue
            ids = []
            for want, got in zip(pattern, parts, strict=True):
                if want.startswith("{"):
                    if not got:
                        break
                    ids.append(got)
                elif want != got:
                    break
            else:
                return template, ids
        return None

    # ------------------------------------------------------------------
    # The endpoints

    def _handle(self, endpoint: str, ids: list[str], query: dict[str, str]) -> _Answer:
        allowed = {
            "/2/users/{id}/tweets": _TIMELINE,
            "/2/users/{id}/mentions": _TIMELINE,
            "/2/tweets/search/recent": _SEARCH,
            "/2/users/{id}": _COMMON,
        }[endpoint]
        for name, value in query.items():
            if name not in allowed:
                names = ",".join(sorted(allowed))
                message = f"The query parameter [{name}] is not one of [{names}]"
                return _invalid(name, value, message)
        if ids and not (ids[0].isdigit() and len(ids[0]) <= 19):
            return _invalid("id", ids[0])
        if endpoint == "/2/users/{id}":
            user = ids[0]
            return _Answer(
                200,
                {
                    "data": {
                        "id": user,
                        "name": f"User {user}",
                        "username": f"user{user}",
                    }
                },
            )
        if endpoint == "/2/tweets/search/recent":
            topic = query.get("query")
            if not topic:
                return _invalid(
                    "query", "", "The `query` query parameter can not be empty"
                )
            seed = int.from_bytes(topic.encode()[:6].ljust(6, b"\0"), "big") % 10**9
            return self._timeline(seed, f"about {topic}", query, "next_token", 10)
        return self._timeline(
            int(ids[0]) % 10**9, f"by user {ids[0]}", query, "pagination_token", 5
        )

    def _timeline(
        self, seed: int, about: str, query: dict[str, str], token_name: str, least: int
    ) -> _Answer:
        size = self.items_per_page
        if "max_results" in query:
            text = query["max_results"]
            if not text.isdigit() or not least <= int(text) <= 100:
                message = (
                    f"The `max_results` query parameter value [{text}] is not between "
                    f"{least} and 100"
                )
                return _invalid("max_results", text, message)
            size = int(text)
        offset = 0
        if token_name in query:
            found = _offset(query[token_name])
            if found is None:
                return _invalid(token_name, query[token_name])
            offset = found
        total = self.pages * self.items_per_page
        chosen = range(offset, min(offset + size, total))
        tweets = [
            {
                "id": str(10**18 + seed * 10**6 + (total - 1 - k)),
                "text": f"Tweet {total - 1 - k} {about}",
                "edit_history_tweet_ids": [
                    str(10**18 + seed * 10**6 + (total - 1 - k))
                ],
            }
            for k in chosen
        ]
        meta: dict[str, Any] = {"result_count": len(tweets)}
        if tweets:
            meta["newest_id"] = tweets[0]["id"]
            meta["oldest_id"] = tweets[-1]["id"]
        if offset + size < total:
            meta["next_token"] = _page_token(offset + size)
        if offset > 0:
            meta["previous_token"] = _page_token(max(0, offset - size))
        body: dict[str, Any] = (
            {"data": tweets, "meta": meta} if tweets else {"meta": meta}
        )
        return _Answer(200, body)


def _query(request: Any) -> dict[str, str]:
    return {
        name.decode("utf-8", "replace"): values[0].decode("utf-8", "replace")
        for name, values in (request.args or {}).items()
        if values
    }


# ----------------------------------------------------------------------
# In-process driving and serving on a port


ServedAPI = Served
"""A :class:`FakeXAPI` on a port (see :class:`~fetchq.testing.served.Served`)."""


def serve(
    reactor: Any, port: int = 0, *, interface: str = "127.0.0.1", **kw: Any
) -> Served[FakeXAPI]:
    """Serve a :class:`FakeXAPI` (made with ``reactor`` as its clock and
    ``**kw``) on ``interface:port`` (0: any free port)."""
    return serve_resource(reactor, FakeXAPI(reactor, **kw), port, interface)


def main(argv: list[str] | None = None, reactor: Any = None) -> None:
    """``python -m fetchq.testing.api --port N``: serve the fake until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m fetchq.testing.api",
        description="A fake X-style API (quotas, x-rate-limit-* headers, "
        "pagination) on a loopback port.",
    )
    parser.add_argument("--port", type=int, default=8098)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--token", default="test-token")
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--jitter", type=float, default=0.0)
    options = parser.parse_args(argv)
    if reactor is None:
        from twisted.internet import reactor as default

        reactor = default
    served = serve(
        reactor,
        options.port,
        interface=options.interface,
        token=options.token,
        latency=options.latency,
        jitter=options.jitter,
    )
    print(f"fake X API on {served.url}", flush=True)
    print(f"  API_TOKEN={served.fake.token}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
