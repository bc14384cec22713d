"""The typed configuration a recipe becomes.

These are plain frozen values: the loader (:mod:`fetchq.recipe.loader`) builds
them once, after checking everything, so code that receives one can trust
every field.  Durations are seconds (float), sizes bytes (int), rates
launches per second (float), paths absolute.  Values that came from the
environment are :class:`~fetchq.recipe.env.Secret` values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import attrs
from twisted.python.failure import Failure

from fetchq.breaker import DEFAULT as DEFAULT_MAX_FAILURES
from fetchq.breaker import MaxFailures
from fetchq.retry import RetryPolicy
from fetchq.secrets import Secret, reveal

if TYPE_CHECKING:
    from fetchq.api.config import ApiConfig
    from fetchq.sms.config import SmsConfig
    from fetchq.sms.sender import Message

__all__ = [
    "LINE_FIELD",
    "AdminSpec",
    "ApiInputSpec",
    "ApiRecipe",
    "ApiSpec",
    "BodyName",
    "Durability",
    "FetchRecipe",
    "FetchSpec",
    "InputFormat",
    "InputSpec",
    "LaneSpec",
    "OutputSpec",
    "PaginationSpec",
    "QueueKwargs",
    "QueueSpec",
    "Recipe",
    "RecordsMode",
    "RetrySpec",
    "RowFormat",
    "RunSpec",
    "SaveBodiesSpec",
    "SmsInputSpec",
    "SmsRecipe",
    "SmsSpec",
    "StateSpec",
    "StatusSet",
    "TlsSpec",
]

InputFormat = Literal["lines", "jsonl", "csv"]
RowFormat = Literal["jsonl", "csv"]
RecordsMode = Literal["page", "item"]

LINE_FIELD = "value"
"""The one field of a row read from ``lines`` input by an ``api`` recipe."""
Durability = Literal["normal", "full"]
BodyName = Literal["sha256", "id"]


class StatusSet(frozenset[int]):
    """A set of HTTP statuses whose ``repr()`` is compact: ``StatusSet('2xx, 304')``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"StatusSet({self.describe()!r})"

    def describe(self) -> str:
        """The statuses as a recipe would write them: ``"2xx, 304, 500-504"``."""
        parts: list[str] = []
        ordered = sorted(self)
        start = 0
        while start < len(ordered):
            end = start
            while end + 1 < len(ordered) and ordered[end + 1] == ordered[end] + 1:
                end += 1
            low, high = ordered[start], ordered[end]
            if low % 100 == 0 and high == low + 99:
                parts.append(f"{low // 100}xx")
            elif low == high:
                parts.append(str(low))
            else:
                parts.append(f"{low}-{high}")
            start = end + 1
        return ", ".join(parts)


@attrs.frozen
class InputSpec:
    """Where the work comes from.

    Attributes:
        path: the input file (absolute).
        format: ``lines`` (one URL a line), ``jsonl`` or ``csv`` (rows).
        url_field: the field or column holding the URL (rows only).
        priority_field: the field holding a job's priority, if any.
        id_field: the field holding a job's stable identity, if any.
    """

    path: Path
    format: InputFormat
    url_field: str
    priority_field: str | None
    id_field: str | None


@attrs.frozen
class SmsInputSpec:
    """Where the messages come from: one row per message.

    Attributes:
        path: the input file (absolute).
        format: ``jsonl`` or ``csv`` (an SMS needs rows, not lines).
        to_field: the field or column holding the recipient's number.
        body_field: the field or column holding the message text, used when
            the recipe's ``sms.body`` template is None (and None only then).
        from_field: the field or column holding each message's sender, or
            None for the recipe's ``sms.from`` / ``sms.messaging_service_sid``
            (a row whose field is empty also falls back to those).
        priority_field: the field holding a job's priority, if any.
        id_field: the field holding a job's stable identity, if any.
    """

    path: Path
    format: RowFormat
    to_field: str
    body_field: str | None
    from_field: str | None
    priority_field: str | None
    id_field: str | None


@attrs.frozen
class ApiInputSpec:
    """Where the calls come from: one row per call (and its pages).

    Attributes:
        path: the input file (absolute).
        format: ``lines``, ``jsonl`` or ``csv``.  Each line of ``lines`` input
            is a row with one field, :data:`LINE_FIELD` (``value``), so a
            template names it as ``{value}``.
        priority_field: the field holding a job's priority, if any (rows only).
        id_field: the field holding a job's stable identity, if any (rows only).
    """

    path: Path
    format: InputFormat
    priority_field: str | None
    id_field: str | None


@attrs.frozen
class OutputSpec:
    """Where results go: one JSON line per input item.

    Attributes:
        path: the JSONL output file (absolute).
    """

    path: Path


@attrs.frozen
class StateSpec:
    """The durable state that lets a run resume.

    Attributes:
        path: the SQLite file (absolute).
        durability: ``normal`` (batched commits) or ``full`` (fsync each).
        url: a Redis URL (possibly a Secret) to keep the state there, shared
            by every process of the run; None for the SQLite file.
        run: the run's name in Redis.
        lease: seconds a worker's claim on a row lasts (Redis).
    """

    path: Path
    durability: Durability
    url: str | Secret | None = None
    run: str = "run"
    lease: float = 30.0


@attrs.frozen
class LaneSpec:
    """Limits applied to each lane (for fetching: each host) on its own.

    Attributes:
        width: most jobs underway in one lane (None: no per-lane cap).
        rate: most launches per second in one lane (None: unlimited).
        burst: launches a lane's rate allows back to back.
    """

    width: int | None
    rate: float | None
    burst: int


class QueueKwargs(TypedDict):
    """Keyword arguments for :class:`~fetchq.queue.ResizableDispatchQueue`."""

    width: int
    rate: float | None
    burst: int
    lane_width: int | None
    lane_rate: float | None
    lane_burst: int


@attrs.frozen
class AdaptiveSpec:
    """Adaptive width: a controller sets the width from latency and drops.

    Attributes:
        algorithm: ``default``, ``gradient`` or ``aimd``.
        min_width: the width never goes below this.
        max_width: ... nor above this.
        per_lane: steer each lane (host, sender, endpoint) on its own instead
            of the whole queue.
        pace: pace launches when drops persist at the least useful width.
        interval: seconds between decisions.
        probe_every: seconds between re-measurements of the latency baseline.
    """

    algorithm: str
    min_width: int
    max_width: int
    per_lane: bool
    pace: bool
    interval: float
    probe_every: float


@attrs.frozen
class QueueSpec:
    """The pace of the whole run.

    Attributes:
        width: most jobs underway at once.
        rate: most launches per second overall (None: unlimited).
        burst: launches the rate allows back to back.
        lanes: limits for each lane on its own (a host, a sender number, an
            API endpoint: the recipe's kind says which).
        adaptive: the adaptive controller's settings, or None for a fixed
            width.
    """

    width: int
    rate: float | None
    burst: int
    lanes: LaneSpec
    adaptive: AdaptiveSpec | None = None

    def queue_kwargs(self) -> QueueKwargs:
        """These settings as ``ResizableDispatchQueue`` keyword arguments::

        ResizableDispatchQueue(func, **recipe.queue.queue_kwargs(), retry=...)
        """
        return QueueKwargs(
            width=self.width,
            rate=self.rate,
            burst=self.burst,
            lane_width=self.lanes.width,
            lane_rate=self.lanes.rate,
            lane_burst=self.lanes.burst,
        )


@attrs.frozen
class RetrySpec:
    """How failed attempts are retried.

    Attributes:
        max_attempts: most attempts per job (1: no retries).
        base_delay: backoff before the second attempt, before jitter (seconds).
        max_delay: the backoff cap (seconds).
    """

    max_attempts: int
    base_delay: float
    max_delay: float

    def policy(
        self,
        *,
        retry_on: tuple[type[BaseException], ...] = (),
        retry_if: Callable[[Failure], bool] | None = None,
    ) -> RetryPolicy:
        """A :class:`~fetchq.retry.RetryPolicy` with these numbers; the adapter
        says which failures are retryable (``retry_on``/``retry_if``)."""
        return RetryPolicy(
            max_attempts=self.max_attempts,
            base_delay=self.base_delay,
            max_delay=self.max_delay,
            retry_on=retry_on,
            retry_if=retry_if,
        )


@attrs.frozen
class RunSpec:
    """How the run behaves as a whole.

    Attributes:
        max_failures: when the run stops for failures (see
            :mod:`fetchq.breaker`).
    """

    max_failures: MaxFailures = DEFAULT_MAX_FAILURES


@attrs.frozen
class AdminSpec:
    """The admin server a run serves (see :mod:`fetchq.admin`).

    Attributes:
        listen: a port or ``HOST:PORT`` (127.0.0.1 when no host is given).
        metrics_open: serve ``/metrics`` without the admin token.
    """

    listen: str
    metrics_open: bool = False


@attrs.frozen
class SaveBodiesSpec:
    """Where response bodies are saved.

    Attributes:
        dir: the directory (absolute; created when the run starts).
        name: file names by ``sha256`` of the body or by job ``id``.
    """

    dir: Path
    name: BodyName


@attrs.frozen
class TlsSpec:
    """TLS settings for https URLs (and https proxies).

    Attributes:
        ca_bundle: a PEM file of the CAs to trust instead of the system's.
        client_cert: a PEM file with the client certificate (and its key
            unless ``client_key`` is given), for servers that ask (mTLS).
        client_key: a PEM file with the client certificate's key.
        verify: False to check no certificate at all (a run warns loudly).
    """

    ca_bundle: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    verify: bool = True


@attrs.frozen
class FetchSpec:
    """How each URL is fetched and what its response means.

    Attributes:
        method: the HTTP method, upper case.
        headers: request headers; values from the environment or under
            sensitive names (Authorization, Cookie, ...) are ``Secret``.
        params: query parameters added to every URL.
        body: the request body, if any.
        connect_timeout: seconds to establish a connection.
        headers_timeout: seconds from sending to the response headers.
        body_timeout: seconds for the whole body to arrive.
        timeout: seconds for the whole of one attempt, redirects included
            (None: no deadline beyond the phases').
        max_body: most bytes of (decoded) body accepted.
        max_redirects: redirects followed (0: none).
        allow_private: whether private and loopback addresses may be fetched.
        ok_statuses: statuses that count as success.
        retry_statuses: statuses retried with backoff.
        throttle_statuses: statuses that mean "slow down": retried after
            ``Retry-After`` and the host's lane held meanwhile.
        save_bodies: where to save bodies (None: record size and sha256 only).
        proxy: a proxy URL for every URL (a Secret when it holds
            credentials or came from ``${NAME}``), ``"none"``, or None for
            the environment's (when ``trust_env``).
        trust_env: read ``HTTPS_PROXY``, ``NO_PROXY``, ... from the
            environment.
        no_proxy: hosts reached directly, or None for the environment's.
        tls: the CA bundle, client certificate and whether to verify.
        host_headers: headers sent only to some hosts, by host pattern
            (``api.example.com``, ``*.example.com``).
        robots: ``obey`` or ``ignore`` the sites' robots.txt.
        http: ``treq`` or ``lean`` (the lean HTTP/1.1 client for GETs).
    """

    method: str
    headers: Mapping[str, str | Secret]
    params: Mapping[str, str | Secret]
    body: str | Secret | None
    connect_timeout: float
    headers_timeout: float
    body_timeout: float
    timeout: float | None
    max_body: int
    max_redirects: int
    allow_private: bool
    ok_statuses: StatusSet
    retry_statuses: StatusSet
    throttle_statuses: StatusSet
    save_bodies: SaveBodiesSpec | None
    proxy: str | Secret | None = None
    trust_env: bool = True
    no_proxy: tuple[str, ...] | None = None
    tls: TlsSpec = TlsSpec()
    host_headers: Mapping[str, Mapping[str, str | Secret]] = attrs.Factory(dict)
    robots: Literal["obey", "ignore"] = "ignore"
    http: Literal["treq", "lean"] = "treq"

    def header_items(self) -> list[tuple[str, str]]:
        """The headers with secrets revealed, for the code that sends them."""
        return [(name, reveal(value)) for name, value in self.headers.items()]

    def param_items(self) -> list[tuple[str, str]]:
        """The query parameters with secrets revealed."""
        return [(name, reveal(value)) for name, value in self.params.items()]


@attrs.frozen
class FetchRecipe:
    """A ``kind: fetch`` recipe: fetch every URL of the input.

    Attributes:
        source: the recipe file (absolute).
        kind: always ``"fetch"``.
        input: where the URLs come from.
        output: where results go.
        state: the durable state file.
        queue: width and rates.
        retry: the retry policy's numbers.
        fetch: how to fetch and classify responses.
        run: how the run behaves as a whole (``max_failures``).
        admin: the admin server the run serves, or None.
    """

    source: Path
    kind: Literal["fetch"]
    input: InputSpec
    output: OutputSpec
    state: StateSpec
    queue: QueueSpec
    retry: RetrySpec
    fetch: FetchSpec
    run: RunSpec = RunSpec()
    admin: AdminSpec | None = None


@attrs.frozen
class SmsSpec:
    """Where and how the messages are sent (a Twilio-shaped provider).

    Attributes:
        base_url: the provider API's root, without ``/2010-04-01``.
        account_sid: the account SID (not a secret: it is part of every URL).
        auth_token: the account's auth token, a :class:`Secret`, or None
            with an API key.
        api_key: an API key SID, the HTTP Basic user instead of the account
            SID, or None.
        api_secret: the API key's secret, a :class:`Secret`, or None.
        default_region: the region of numbers written without ``+``, or None.
        number_check: ``valid`` or ``possible`` (with ``phonenumbers``).
        from_number: the default sender (E.164 number, short code or
            alphanumeric id, normalised), or None.
        messaging_service_sid: a messaging service that picks the sender
            instead, or None.
        body: the message text as a template over the row's fields
            (``"Hi {name}"``; ``{{`` is a literal brace), or None to take each
            message's text from the input's ``body_field``.
        max_body: the longest body, in UTF-16 code units.
        connect_timeout: seconds to connect.
        headers_timeout: seconds from sending a request to its headers
            (None: only ``timeout`` bounds them).
        body_timeout: seconds from the headers to the end of the answer
            (None: only ``timeout`` bounds it).
        timeout: seconds from starting a request to the whole answer.
        resend_check: look for an earlier attempt in the provider's message
            list before sending a message again (see :mod:`fetchq.sms`).
        status_callback: a URL the provider calls with delivery updates, or
            None.
    """

    base_url: str
    account_sid: str
    auth_token: Secret | None
    from_number: str | None
    messaging_service_sid: str | None
    body: str | None
    max_body: int
    connect_timeout: float
    headers_timeout: float | None
    body_timeout: float | None
    timeout: float
    resend_check: bool
    status_callback: str | None
    api_key: str | None = None
    api_secret: Secret | None = None
    default_region: str | None = None
    number_check: str = "valid"

    def config(self) -> SmsConfig:
        """The :class:`~fetchq.sms.SmsConfig` for an
        :class:`~fetchq.sms.SmsSender`; the auth token stays a Secret, revealed
        only when a request is signed."""
        from fetchq.sms.config import SmsConfig

        return SmsConfig(
            account_sid=self.account_sid,
            auth_token=self.auth_token,
            base_url=self.base_url,
            from_number=self.from_number,
            messaging_service_sid=self.messaging_service_sid,
            max_body=self.max_body,
            connect_timeout=self.connect_timeout,
            headers_timeout=self.headers_timeout,
            body_timeout=self.body_timeout,
            timeout=self.timeout,
            status_callback=self.status_callback,
            resend_check=self.resend_check,
            api_key=self.api_key,
            api_secret=self.api_secret,
            default_region=self.default_region,
            number_check=self.number_check,
        )


PaginationStyle = Literal["token", "link", "next_url", "page", "offset"]


@attrs.frozen
class PaginationSpec:
    """How the next page of an API answer is asked for (see
    :mod:`fetchq.api.pages`).

    Attributes:
        token_field: dotted path of the next page's token in an answer.
        token_param: the query parameter that carries it on the next request.
        max_pages: most pages per row (1: the first page only).
        style: ``token``, ``link``, ``next_url``, ``page`` or ``offset``.
        next_field: dotted path of the next page's URL (``next_url``).
        page_param: the page number's query parameter (``page``).
        page_start: the first page's number (``page``).
        offset_param: the offset's query parameter (``offset``).
        page_size: items in a full page, or None (``page``, ``offset``).
        total_field: dotted path of the total item count, or None.
    """

    token_field: str
    token_param: str
    max_pages: int
    style: PaginationStyle = "token"
    next_field: str = "next"
    page_param: str = "page"
    page_start: int = 1
    offset_param: str = "offset"
    page_size: int | None = None
    total_field: str | None = None


@attrs.frozen
class ApiSpec:
    """How each row becomes a call to a JSON API, and how answers are read.

    Attributes:
        base_url: scheme, host and optional path prefix.
        method: the HTTP method, upper case.
        path: the path template (``/2/users/{id}/tweets``).
        params: query parameters; plain values may hold ``{field}``
            templates, values from ``${NAME}`` (or under sensitive names) are
            ``Secret`` and used as they are.
        headers: extra request headers (``Secret`` as for params).
        body: a JSON body template (strings are templates), or None.
        token: the bearer token, a :class:`Secret`.
        connect_timeout: seconds to connect.
        headers_timeout: seconds from sending to the response headers.
        body_timeout: seconds from the headers to the whole body.
        timeout: seconds for the whole call (None: no deadline beyond the
            phases').
        max_body: most body bytes read.
        pagination: how further pages are asked for.
        records: ``page`` (one output record per page) or ``item`` (one per
            item of ``items_field``).
        items_field: dotted path of a page's items, or None for the page's
            body itself.
        reset_margin: seconds added to every announced quota reset.
        window: the quota window's length in seconds, as the provider
            documents it, or None.
        default_retry_after: the wait after a throttle that says nothing of
            when to come back.
        max_retry_after: the cap on any wait a server asks for.
    """

    base_url: str
    method: str
    path: str
    params: Mapping[str, str | Secret]
    headers: Mapping[str, str | Secret]
    body: Any
    token: Secret
    connect_timeout: float
    headers_timeout: float
    body_timeout: float
    timeout: float | None
    max_body: int
    pagination: PaginationSpec
    records: RecordsMode
    items_field: str | None
    reset_margin: float
    window: float | None
    default_retry_after: float
    max_retry_after: float

    def config(self) -> ApiConfig:
        """The :class:`~fetchq.api.ApiConfig` for an
        :class:`~fetchq.api.ApiCaller`; the token and secret params and headers
        stay Secrets, revealed only when a request is sent."""
        from fetchq.api.config import ApiConfig

        return ApiConfig(
            base_url=self.base_url,
            path=self.path,
            method=self.method,
            token=self.token,
            params=tuple(self.params.items()),
            body=self.body,
            headers=tuple(self.headers.items()),
            connect_timeout=self.connect_timeout,
            headers_timeout=self.headers_timeout,
            body_timeout=self.body_timeout,
            timeout=self.timeout,
            max_body=self.max_body,
            token_field=self.pagination.token_field,
            token_param=self.pagination.token_param,
            max_pages=self.pagination.max_pages,
            pagination=self.pagination.style,
            next_field=self.pagination.next_field,
            page_param=self.pagination.page_param,
            page_start=self.pagination.page_start,
            offset_param=self.pagination.offset_param,
            page_size=self.pagination.page_size,
            total_field=self.pagination.total_field or "",
            records=self.records,
            items_field="" if self.items_field is None else self.items_field,
            default_retry_after=self.default_retry_after,
            max_retry_after=self.max_retry_after,
            reset_margin=self.reset_margin,
            window=self.window,
        )


@attrs.frozen
class SmsRecipe:
    """A ``kind: sms`` recipe: send one text message per input row.

    Attributes:
        source: the recipe file (absolute).
        kind: always ``"sms"``.
        input: where the messages come from.
        output: where results go.
        state: the durable state file.
        queue: width and rates (lanes are senders).
        retry: the retry policy's numbers.
        sms: the provider and the message.
        run: how the run behaves as a whole (``max_failures``).
        admin: the admin server the run serves, or None.
    """

    source: Path
    kind: Literal["sms"]
    input: SmsInputSpec
    output: OutputSpec
    state: StateSpec
    queue: QueueSpec
    retry: RetrySpec
    sms: SmsSpec
    run: RunSpec = RunSpec()
    admin: AdminSpec | None = None

    def message_body(self, row: Mapping[str, Any]) -> str:
        """The text of the message for ``row``: ``sms.body`` filled from the
        row, or the row's ``input.body_field``.

        Raises:
            BadMessage: (from :mod:`fetchq.sms`) naming a field the row lacks
                or a value that cannot fill the template.
        """
        from fetchq.api.config import Template
        from fetchq.api.errors import BadRequestRow
        from fetchq.sms.errors import BadMessage

        if self.sms.body is None:
            field = self.input.body_field
            assert field is not None  # the loader sees to it
            if field not in row:
                raise BadMessage(f"the row has no {field!r} field", "body")
            value = row[field]
            if not isinstance(value, str):
                raise BadMessage(
                    f"field {field!r} must be text, not {type(value).__name__}",
                    "body",
                )
            return value
        try:
            return Template.parse(self.sms.body, "sms.body").fill(row, "sms.body")
        except BadRequestRow as exc:
            raise BadMessage(str(exc), "body") from None

    def message(self, row: Mapping[str, Any], id: str | None = None) -> Message:
        """The :class:`~fetchq.sms.Message` for ``row``, not yet checked (see
        :func:`~fetchq.sms.check_message`): its ``to`` from ``input.to_field``,
        its text from :meth:`message_body`, its sender from
        ``input.from_field`` when that is set and not empty in the row.

        Raises:
            BadMessage: for a row without a recipient or a text.
        """
        from fetchq.sms.errors import BadMessage
        from fetchq.sms.sender import Message

        to_field = self.input.to_field
        to = row.get(to_field)
        if to is None or to == "":
            raise BadMessage(f"the row has no {to_field!r} field", "to")
        sender = None
        if self.input.from_field is not None:
            sender = row.get(self.input.from_field)
            if sender == "":
                sender = None
        return Message(to=to, body=self.message_body(row), from_=sender, id=id)


@attrs.frozen
class ApiRecipe:
    """A ``kind: api`` recipe: call a JSON API once per input row, following
    its pages.

    Attributes:
        source: the recipe file (absolute).
        kind: always ``"api"``.
        input: where the rows come from.
        output: where results go.
        state: the durable state file.
        queue: width and rates (lanes are endpoints).
        retry: the retry policy's numbers.
        api: the endpoint, the request templates and how answers are read.
        run: how the run behaves as a whole (``max_failures``).
        admin: the admin server the run serves, or None.
    """

    source: Path
    kind: Literal["api"]
    input: ApiInputSpec
    output: OutputSpec
    state: StateSpec
    queue: QueueSpec
    retry: RetrySpec
    api: ApiSpec
    run: RunSpec = RunSpec()
    admin: AdminSpec | None = None


Recipe = FetchRecipe | SmsRecipe | ApiRecipe
"""Any recipe :func:`~fetchq.recipe.load_recipe` returns, discriminated by
``kind``: ``if recipe.kind == "sms": recipe.sms ...``."""
