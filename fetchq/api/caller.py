"""The API caller: a fetchq job function for a JSON REST API under a quota.

One :class:`ApiCaller` calls one endpoint (one :class:`~fetchq.api.ApiConfig`)
and keeps that endpoint's quota as the server announces it::

    caller = ApiCaller(config, reactor)
    queue = ResizableDispatchQueue(
        caller, 10, clock=reactor, retry=api_retry_policy()
    )
    caller.bind(queue)                        # so it can hold the lane

    def done(job):
        page = job.result
        write(page.records())
        follow = page.next_request()          # the next page, or None
        if follow is not None:
            queue.put(follow, key=caller.lane_key(follow)).addCallback(done)

    for n, row in enumerate(rows):
        request = caller.first_page(row, id=n)        # BadRequestRow: record it
        queue.put(request, key=caller.lane_key(request)).addCallback(done)

**Quota.**  Per endpoint the caller keeps the last announced quota (limit,
remaining, reset; see :mod:`fetchq.api.ratelimit`) and the requests in
flight.  The server may count each of those already or not yet, so the
budget is ``remaining - in_flight``:

- *When the budget is surely spent* (the server said ``remaining: 0``)
  the caller holds the endpoint's lane (``queue.hold``) until the reset
  plus ``reset_margin``, so the queue launches nothing more from it.  With
  the window's length known (``window``), the window ends by its first
  answer plus that length when that comes before the reset (a reset in
  whole seconds is rounded up), and the late answers of a window that
  ended so are not taken for the next one's.
- *When only an answer can tell* -- a probe is out, or the requests in
  flight may have spent what is left, or may not -- the lane is held in
  short steps (a quarter of the latest answer's time each), renewed until
  that answer comes.  A queue's hold can only be extended, never shortened, so the
  caller never holds for longer than it knows it must: a guess that an
  answer would have corrected (a reset taken to be a minute away, a budget
  taken to be spent by requests the server had already counted) would
  keep the lane shut long after the answer came.
- *A launch that finds the budget spent* (a queue without that lane, or an
  unbound caller) is not sent: it raises :class:`QuotaExhausted` (a
  ``Throttled`` for the time to the reset), and the queue holds the lane and
  runs the job again after the reset.  That costs the job an attempt, and
  nothing else: it is no 429, its signal is IGNORE, and ``stats.throttled``
  does not count it (``stats.quota_waits`` does).
- *Every answer* (ok or not) updates the budget from its headers.  Answers
  can arrive out of order, so within one window the lowest ``remaining``
  wins, and an answer from a window that has already reset is ignored.
- *Before the first answer*, and again *after each reset* (plus the
  margin), the window's budget is not known, not even assumed: one request
  goes alone (a probe), the lane is held until its answer says what is
  left, and launches that came meanwhile wait for it.  So a width above
  the quota cannot overrun it, nor spend a new window before knowing what
  it holds (another client may have used it; our clocks may disagree).  An
  endpoint that announces no quota is then called at full width.

A 429, or a GitHub-style secondary limit (403 with Retry-After, or with a
spent quota and a reset), still ends in :class:`ApiThrottled`: the lane is
held for Retry-After, else until the reset (plus the margin), else
``default_retry_after`` -- never less than ``min_retry_after`` (a refusal
that names a reset already past means the clocks disagree) -- and the job is
retried then.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from http.cookiejar import DefaultCookiePolicy
from typing import Any, Literal, Protocol
from urllib.parse import quote

import attrs
from treq.client import HTTPClient
from treq.cookies import IndexableCookieJar
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http_headers import Headers

from fetchq.api.budget import Admission, Budget, LocalBudget, QuotaBudget
from fetchq.api.config import ApiConfig
from fetchq.api.errors import (
    ApiAuthFailed,
    ApiBadResponse,
    ApiConnectionFailed,
    ApiServerError,
    ApiStatusError,
    ApiThrottled,
    ApiTimeout,
    BadRequestRow,
    QuotaExhausted,
)
from fetchq.api.pages import next_cursor, page_url
from fetchq.api.ratelimit import Quota, parse_quota, throttle_delay
from fetchq.http.body import BodySink, read_body, reasons
from fetchq.http.deadline import deadline
from fetchq.http.errors import (
    BodyTimeout,
    BodyTooLarge,
    ContentDecodingError,
    TruncatedBody,
)
from fetchq.http.masking import secret_masker
from fetchq.retry import RetryPolicy
from fetchq.secrets import Secret, reveal

__all__ = [
    "RETRYABLE",
    "ApiCaller",
    "ApiPage",
    "ApiRequest",
    "ApiStats",
    "Budget",
    "api_retry_policy",
]

RETRYABLE: tuple[type[BaseException], ...] = (
    ApiServerError,
    ApiTimeout,
    ApiConnectionFailed,
)
"""The API errors retried with backoff (throttles always retry)."""

_DETAIL_LIMIT = 64 * 1024  # most bytes read from a non-ok body for its message


def api_retry_policy(
    max_attempts: int = 8, base_delay: float = 1.0, max_delay: float = 60.0
) -> RetryPolicy:
    """A retry policy for API jobs: 5xx, timeouts and broken connections
    retry with exponential backoff and full jitter; :class:`ApiThrottled` and
    :class:`QuotaExhausted` retry after their delay; anything else fails at
    once.

    A :class:`QuotaExhausted` (not sent: the quota was spent) counts as an
    attempt too, which is why ``max_attempts`` is larger than the fetcher's.

    Args:
        max_attempts: most attempts per job (1 = no retries).
        base_delay: backoff before the second attempt, before jitter (s).
        max_delay: the backoff cap (s).
    """
    return RetryPolicy(
        max_attempts=max_attempts,
        base_delay=base_delay,
        max_delay=max_delay,
        retry_on=RETRYABLE,
    )


class Holder(Protocol):
    """What the caller uses of a queue: ``hold(seconds, key)``."""

    def hold(self, seconds: float, key: Any = None) -> float: ...


def _row(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise BadRequestRow(
            f"a row must be a mapping of fields, not {type(value).__name__}"
        )
    for key in value:
        if not isinstance(key, str):
            raise BadRequestRow(f"row field names must be text, not {key!r}")
    return dict(value)


def _page_number(instance: object, attribute: Any, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"page must be an integer >= 1, not {value!r}")


def _optional_text(instance: object, attribute: Any, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{attribute.name} must be text or None, not {value!r}")


@attrs.frozen
class ApiRequest:
    """One call to make: a row, and which page of its answer.

    A job argument for :class:`ApiCaller`.  :meth:`to_json` gives the form a
    durable store keeps; the caller takes that form as a job argument too.

    Attributes:
        row: the input row's fields (copied).
        page: the page number, from 1.
        token: the pagination token of this page (None for the first).
        id: the row's identity, carried into output records.
    """

    row: dict[str, Any] = attrs.field(converter=_row)
    page: int = attrs.field(default=1, validator=_page_number)
    token: str | None = attrs.field(default=None, validator=_optional_text)
    id: str | int | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable form (see :meth:`from_json`)."""
        return {"row": self.row, "page": self.page, "token": self.token, "id": self.id}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApiRequest:
        """The request :meth:`to_json` described.

        Raises:
            BadRequestRow: if ``data`` has no ``row`` mapping or unknown keys.
            ValueError: for a bad page or token.
        """
        unknown = set(data) - {"row", "page", "token", "id"}
        if unknown:
            names = ", ".join(sorted(map(str, unknown)))
            raise BadRequestRow(f"unknown keys in an API job argument: {names}")
        if "row" not in data:
            raise BadRequestRow("an API job argument needs a 'row'")
        return cls(data["row"], data.get("page", 1), data.get("token"), data.get("id"))

    def following(self, token: str) -> ApiRequest:
        """The request for the next page, which ``token`` names."""
        return attrs.evolve(self, page=self.page + 1, token=token)


@attrs.frozen
class ApiPage:
    """One page of an API's answer.

    Attributes:
        request: the request it answers.
        method: the HTTP method.
        url: the URL as sent, with ``Secret`` query values shown as ``***``.
        status: the HTTP status code.
        started: clock time the request was sent.
        elapsed: seconds from sending to the end of the body.
        body: the decoded JSON body (None for an empty body).
        items: the page's items (``items_field``; ``[]`` if absent; a single
            object is one item).
        next_token: the next page's token, if the answer gave one.
        quota: the quota the answer announced, if any.
        mode: ``"page"`` or ``"item"``: what :meth:`records` makes.
    """

    request: ApiRequest
    method: str
    url: str
    status: int
    started: float
    elapsed: float
    body: Any
    items: list[Any]
    next_token: str | None
    quota: Quota | None
    mode: Literal["page", "item"] = "page"
    _next: ApiRequest | None = attrs.field(default=None, alias="next", repr=False)

    def next_request(self) -> ApiRequest | None:
        """The request for the following page, in the same lane; None when
        there is no next token, ``max_pages`` is reached, or the server gave
        the same token again."""
        return self._next

    def records(self) -> list[dict[str, Any]]:
        """Output records: one for the page, or one per item (none for a page
        without items), each with the request, status and timing."""
        request = {
            "method": self.method,
            "url": self.url,
            "page": self.request.page,
            "token": self.request.token,
        }
        head: dict[str, Any] = {
            "id": self.request.id,
            "page": self.request.page,
            "request": request,
            "status": self.status,
            "started": self.started,
            "elapsed": self.elapsed,
        }
        if self.mode == "item":
            return [
                {**head, "index": i, "item": item} for i, item in enumerate(self.items)
            ]
        quota = None
        if self.quota is not None:
            quota = {
                "limit": self.quota.limit,
                "remaining": self.quota.remaining,
                "reset_at": self.quota.reset_at,
            }
        return [
            {
                **head,
                "result_count": len(self.items),
                "next_token": self.next_token,
                "quota": quota,
                "body": self.body,
            }
        ]


@attrs.define
class ApiStats:
    """What a caller has done.

    Attributes:
        sent: requests sent.
        answered: answers received (any status).
        throttled: answers that refused us for our rate (429, or a
            secondary-limit 403): :class:`ApiThrottled`.
        status_429: answers with status 429.
        quota_waits: launches not sent because the quota was spent
            (:class:`QuotaExhausted`).
        holds: lane holds the caller made itself, before any refusal.
    """

    sent: int = 0
    answered: int = 0
    throttled: int = 0
    status_429: int = 0
    quota_waits: int = 0
    holds: int = 0


class ApiCaller:
    """Calls one API endpoint under an :class:`~fetchq.api.ApiConfig`;
    callable as a fetchq job function.

    Args:
        config: the request and how to read its answers.
        reactor: an ``IReactorTime`` (and ``IReactorTCP`` when ``http`` is
            None); the clock of every timeout, quota and ``elapsed``.
        http: a treq-like client (``request(method, url, headers=..., data=...,
            allow_redirects=..., unbuffered=...)``): the ``treq`` module, a
            ``treq.client.HTTPClient``, or ``treq.testing.StubTreq(resource)``.
            None (the default) makes a ``treq`` ``HTTPClient`` with its own
            persistent connection pool on ``reactor``, keeping no cookies.
        pool_size: persistent connections kept per host when ``http`` is None.
    """

    def __init__(
        self, config: ApiConfig, reactor: Any, http: Any = None, *, pool_size: int = 10
    ) -> None:
        if not isinstance(config, ApiConfig):
            raise TypeError(f"config must be an ApiConfig, not {config!r}")
        if (
            isinstance(pool_size, bool)
            or not isinstance(pool_size, int)
            or pool_size < 1
        ):
            raise ValueError(f"pool_size must be an integer >= 1, not {pool_size!r}")
        self._config = config
        self._clock = reactor
        self._pool: HTTPConnectionPool | None = None
        if http is None:
            self._pool = HTTPConnectionPool(reactor, persistent=True)  # type: ignore[no-untyped-call]
            self._pool.maxPersistentPerHost = pool_size
            agent: Any = Agent(  # type: ignore[no-untyped-call]
                reactor, connectTimeout=config.connect_timeout, pool=self._pool
            )
            no_cookies = IndexableCookieJar(DefaultCookiePolicy(allowed_domains=[]))
            http = HTTPClient(agent, cookiejar=no_cookies)
        self._http = http
        self._queue: Holder | None = None
        self._headers = self._request_headers()
        # An error's detail comes from the server, which may quote a secret.
        self._mask = secret_masker(
            [config.token, *(v for _, v in (*config.params, *config.headers))]
        )
        self.stats = ApiStats()
        # The endpoint's budget (see the module docstring).
        self._budget: QuotaBudget = LocalBudget(config, reactor)
        self._quota: Quota | None = None
        self._held_until = 0.0

    # ------------------------------------------------------------------
    # Public face

    @property
    def config(self) -> ApiConfig:
        """The configuration this caller was made with."""
        return self._config

    @property
    def quota(self) -> Quota | None:
        """The quota the latest answer announced, or None."""
        return self._quota

    @property
    def budget(self) -> Budget:
        """What the caller knows of the endpoint's quota now."""
        return self._budget.snapshot()

    def use_budget(self, budget: QuotaBudget) -> None:
        """Keep the endpoint's budget in ``budget`` from now on: a
        :class:`fetchq.shared.quota.RedisBudget` makes every worker of a
        run spend one budget.  (The default is a
        :class:`~fetchq.api.budget.LocalBudget`, this process's alone.)"""
        self._budget.close()
        self._budget = budget
        if self._queue is not None:
            budget.bind(self._hold)

    def bind(self, queue: Holder) -> None:
        """Let the caller hold its endpoint's lane in ``queue`` (anything with
        ``hold(seconds, key)``) when the quota is spent.  Put every job with
        ``key=caller.lane_key(request)``."""
        if not callable(getattr(queue, "hold", None)):
            raise TypeError(f"{queue!r} has no hold(seconds, key)")
        self._queue = queue
        self._budget.bind(self._hold)

    def lane_key(self, request: ApiRequest | None = None) -> str:
        """The queue lane of a request: its endpoint, the method and the path
        *template* (``GET /2/users/{id}/tweets``), the unit a quota counts."""
        return self._config.endpoint

    def first_page(
        self, row: Mapping[str, Any], id: str | int | None = None
    ) -> ApiRequest:
        """The request for a row's first page, checked before it is queued.

        Raises:
            BadRequestRow: if the row cannot fill the path, query or body.
        """
        request = ApiRequest(row, id=id)
        config = self._config
        config.fill_path(request.row)
        config.fill_params(request.row)
        config.fill_body(request.row)
        return request

    def close(self) -> Deferred[None]:
        """Close the caller's idle pooled connections (when it made its own
        client).  Returns a Deferred that fires once they are closed."""
        self._budget.close()
        if self._pool is None:
            return succeed(None)
        d: Deferred[None] = self._pool.closeCachedConnections()  # type: ignore[no-untyped-call]
        return d

    def __call__(self, job_arg: ApiRequest | Mapping[str, Any]) -> Deferred[ApiPage]:
        """Make one call, as a queue job function.

        Args:
            job_arg: an :class:`ApiRequest`, or its :meth:`~ApiRequest.to_json`
                form.
        """
        try:
            if isinstance(job_arg, ApiRequest):
                request = job_arg
            elif isinstance(job_arg, Mapping):
                request = ApiRequest.from_json(job_arg)
            else:
                raise BadRequestRow(
                    f"job argument must be an ApiRequest, not {type(job_arg).__name__}"
                )
        except (BadRequestRow, ValueError) as e:
            error = e if isinstance(e, BadRequestRow) else BadRequestRow(str(e))
            failed: Deferred[ApiPage] = Deferred()
            failed.errback(error)
            return failed
        return self.call(request)

    def call(self, request: ApiRequest) -> Deferred[ApiPage]:
        """Make one call.

        Returns:
            A Deferred firing with an :class:`ApiPage`, or failing with an
            :class:`~fetchq.api.errors.ApiError`.  Cancelling it drops the
            connection.
        """
        seconds = self._config.timeout
        return deadline(
            Deferred.fromCoroutine(self._call(request)),
            seconds,
            self._clock,
            lambda: ApiTimeout(seconds or 0, "request"),
        )

    # ------------------------------------------------------------------
    # One call

    async def _call(self, request: ApiRequest) -> ApiPage:
        config = self._config
        row = request.row
        path = config.fill_path(row)
        params = config.fill_params(row)
        body = config.fill_body(row)
        url, shown = page_url(config, request, *self._url(path, params))
        budget = self._budget
        admission = await self._admit(budget)
        clock = self._clock
        started = clock.seconds()
        self.stats.sent += 1
        budget.sent(admission.ticket, started)
        answered = False
        try:
            response = await self._send(url, body)
            answered = True
            now = clock.seconds()
            status: int = response.code
            headers = _pairs(response.headers)
            quota = parse_quota(headers, now)
            throttle = self._throttle(status, headers, quota, now)
            self.stats.answered += 1
            if quota is not None:
                self._quota = quota
            if throttle is not None:
                self.stats.throttled += 1
            budget.answered(
                admission.ticket, status, quota, throttle, now - started, now
            )
        finally:
            if not answered:
                budget.abandoned(admission.ticket, clock.seconds())
        if throttle is not None:
            if status == 429:
                self.stats.status_429 += 1
            await self._drain(response)
            delay, basis = throttle
            raise ApiThrottled(status, delay, basis, quota)
        if not 200 <= status < 300:
            raise await self._status_error(status, response)
        data = await self._read(response, config.max_body, config.body_timeout)
        document = _decode(data)
        items = _items(_dig(document, config.items_field))
        token = next_cursor(config, request, url, document, items, headers)
        follow = None
        if (
            token is not None
            and request.page < config.max_pages
            and token != request.token
        ):
            follow = request.following(token)
        return ApiPage(
            request=request,
            method=config.method,
            url=shown,
            status=status,
            started=started,
            elapsed=clock.seconds() - started,
            body=document,
            items=items,
            next_token=token,
            quota=quota,
            mode=config.records,
            next=follow,
        )

    def _request_headers(self) -> Headers:
        raw = Headers()
        config = self._config
        for name, value in config.headers:
            raw.addRawHeader(name, reveal(value))
        if config.token is not None:
            raw.addRawHeader("Authorization", f"Bearer {config.token.reveal()}")
        if config.body is not None and not raw.hasHeader("content-type"):
            raw.addRawHeader("Content-Type", "application/json")
        return raw

    def _url(
        self, path: str, params: Sequence[tuple[str, str | Secret]]
    ) -> tuple[str, str]:
        """The URL to send and the URL to show (secrets masked)."""
        base = self._config.base_url + path
        if not params:
            return base, base
        sent = []
        shown = []
        for name, value in params:
            key = quote(name, safe="")
            sent.append(f"{key}={quote(reveal(value), safe='')}")
            shown.append(f"{key}=***" if isinstance(value, Secret) else sent[-1])
        return f"{base}?{'&'.join(sent)}", f"{base}?{'&'.join(shown)}"

    async def _send(self, url: str, body: bytes | None) -> Any:
        """The request, up to its response headers, within ``headers_timeout``."""
        config = self._config
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            d.cancel()

        d: Deferred[Any] = self._http.request(
            config.method,
            url,
            headers=self._headers.copy(),
            data=body,
            allow_redirects=False,
            unbuffered=True,
        )
        timer = self._clock.callLater(config.headers_timeout, expire)
        try:
            return await d
        except Exception as e:
            if expired:
                raise ApiTimeout(config.headers_timeout, "response") from None
            if any(isinstance(inner, CancelledError) for inner in reasons(e)):
                raise CancelledError() from None  # cancelled from outside
            raise ApiConnectionFailed(_describe(e)) from None
        finally:
            if timer.active():
                timer.cancel()

    async def _read(self, response: Any, limit: int, timeout: float) -> bytes:
        """The whole body, or the error it ended in."""
        sink = _Collector()
        try:
            await read_body(response, sink, limit, timeout, self._clock)
        except BodyTimeout:
            raise ApiTimeout(timeout, "body") from None
        except BodyTooLarge:
            raise ApiBadResponse(f"body exceeds {limit} bytes") from None
        except ContentDecodingError as e:
            raise ApiBadResponse(str(e)) from None
        except TruncatedBody as e:
            raise ApiConnectionFailed(str(e)) from None
        return sink.data()

    async def _drain(self, response: Any) -> None:
        """Read and drop a refused answer's body, so its connection is reused."""
        with contextlib.suppress(ApiBadResponse, ApiTimeout, ApiConnectionFailed):
            await self._read(response, _DETAIL_LIMIT, self._config.body_timeout)

    async def _status_error(self, status: int, response: Any) -> Exception:
        """The exception for an answer that is neither ok nor a throttle."""
        try:
            data = await self._read(response, _DETAIL_LIMIT, self._config.body_timeout)
        except (ApiBadResponse, ApiTimeout, ApiConnectionFailed):
            data = b""
        detail = _detail(data)
        if self._mask is not None:
            detail = self._mask(detail)
        if status >= 500:
            return ApiServerError(status, detail)
        if status == 403 and "rate limit" in detail.lower():
            # GitHub's secondary limit without Retry-After: "wait at least a
            # minute" (default_retry_after), not a credentials problem.
            config = self._config
            wait = max(config.default_retry_after, config.min_retry_after)
            return ApiThrottled(status, min(wait, config.max_retry_after))
        if status in (401, 403):
            return ApiAuthFailed(status, detail)
        return ApiStatusError(status, detail)

    def _throttle(
        self,
        status: int,
        headers: list[tuple[str, str]],
        quota: Quota | None,
        now: float,
    ) -> tuple[float, str] | None:
        """``(delay, basis)`` if the answer refused us for our rate: a 429, or
        a 403 with Retry-After or with a spent quota and its reset (GitHub's
        secondary and primary limits); else None."""
        if status == 403:
            retry_after = any(name.lower() == "retry-after" for name, _ in headers)
            spent = (
                quota is not None
                and quota.remaining == 0
                and quota.reset_at is not None
            )
            if not (retry_after or spent):
                return None
        elif status != 429:
            return None
        config = self._config
        delay, basis = throttle_delay(
            headers,
            now,
            config.default_retry_after,
            margin=config.reset_margin,
            cap=config.max_retry_after,
        )
        return max(delay, config.min_retry_after), basis

    # ------------------------------------------------------------------
    # The budget

    async def _admit(self, budget: QuotaBudget) -> Admission:
        """Wait while only an answer can say whether to send; refuse to send
        (QuotaExhausted) once the budget is surely spent; else the request's
        admission."""
        while True:
            result = budget.admit(self._clock.seconds())
            admission = await result if isinstance(result, Deferred) else result
            if admission.go:
                return admission
            if admission.wait:
                await budget.until_answer()
                continue
            self.stats.quota_waits += 1
            self._hold(admission.delay)
            raise QuotaExhausted(self._config.endpoint, admission.delay, self._quota)

    def _hold(self, seconds: float, ahead: bool = False) -> None:
        """Hold the endpoint's lane for ``seconds`` (if bound and longer than
        the hold already made); ``ahead``: before any refusal, counted in
        ``stats.holds``."""
        if self._queue is None or seconds <= 0:
            return
        until = self._clock.seconds() + seconds
        if until <= self._held_until:
            return
        self._held_until = until
        if ahead:
            self.stats.holds += 1
        self._queue.hold(seconds, self._config.endpoint)


class _Collector(BodySink):
    """A body sink that keeps the bytes."""

    def __init__(self) -> None:
        super().__init__(None)
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        super().write(data)
        self._chunks.append(data)

    def data(self) -> bytes:
        return b"".join(self._chunks)


def _pairs(headers: Headers) -> list[tuple[str, str]]:
    return [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, values in headers.getAllRawHeaders()
        for value in values
    ]


def _describe(error: BaseException) -> str:
    inner = list(reasons(error))[-1]
    text = str(inner).strip()
    return f"{type(inner).__name__}: {text}" if text else type(inner).__name__


def _decode(data: bytes) -> Any:
    if not data.strip():
        return None
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiBadResponse("body is not UTF-8") from None
    except ValueError as e:
        raise ApiBadResponse(f"body is not JSON ({e})") from None


def _dig(document: Any, dotted: str) -> Any:
    """The value at a dotted path, or None where the path does not exist."""
    if not dotted:
        return document
    for part in dotted.split("."):
        if not isinstance(document, Mapping) or part not in document:
            return None
        document = document[part]
    return document


def _items(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def _detail(data: bytes) -> str:
    """What an error body says: X's first error or detail, GitHub's message,
    an OAuth error description, or the start of a text body."""
    try:
        document = json.loads(data.decode("utf-8"))
    except ValueError:
        return data[:200].decode("utf-8", "replace")
    if not isinstance(document, Mapping):
        return ""
    errors = document.get("errors")  # X's specific reason comes first
    if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
        message = errors[0].get("message")
        if isinstance(message, str) and message:
            return message
    for key in ("detail", "message", "title", "error_description", "error"):
        value = document.get(key)
        if isinstance(value, str) and value:
            return value
    return ""
