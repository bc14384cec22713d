"""The SMS sender: a fetchq job function for a Twilio-shaped provider API.

::

    sender = SmsSender(SmsConfig.from_env(from_number="+12125550100"), reactor)
    queue = ResizableDispatchQueue(
        sender, 10, retry=sms_retry_policy(), clock=reactor, lane_rate=1.0
    )
    message = check_message({"to": "+1 212 555 0199", "body": "Hi"}, sender.config)
    queue.put(message, key=sender.lane_key(message))

One message is one ``POST {base_url}/2010-04-01/Accounts/{sid}/Messages.json``
with HTTP Basic auth and the form fields ``To``, ``From`` (or
``MessagingServiceSid``), ``Body`` and optionally ``StatusCallback``.  A 201
becomes an :class:`SmsResult`; everything else one of the errors of
:mod:`fetchq.sms.errors`.
"""

from __future__ import annotations

import base64
import email.utils
import json
import math
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Protocol, cast
from urllib.parse import urlencode, urlsplit

import attrs
import treq
from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import (
    ConnectError,
    ConnectingCancelledError,
    DNSLookupError,
)
from twisted.internet.error import TimeoutError as ConnectTimeoutError
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    HTTPConnectionPool,
    RequestTransmissionFailed,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http_headers import Headers

from fetchq.control.signals import Signal
from fetchq.http.deadline import deadline
from fetchq.http.urls import parse_retry_after
from fetchq.retry import RetryPolicy
from fetchq.sms.config import SmsConfig
from fetchq.sms.errors import (
    ACCOUNT_CODES,
    SENDER_CODES,
    THROTTLE_CODE,
    AmbiguousSend,
    AuthFailed,
    BadMessage,
    BadResponse,
    ConnectionLost,
    ProviderError,
    ProviderRejected,
    ProviderThrottled,
    SmsConnectionFailed,
    SmsError,
    SmsTimeout,
)
from fetchq.sms.numbers import check_e164, check_sender
from fetchq.sms.status import Delivery

__all__ = [
    "HTTPClientLike",
    "Message",
    "SmsResult",
    "SmsSender",
    "body_length",
    "check_message",
    "lane_key",
    "sms_retry_policy",
]

_RECENT_SIDS = 10_000  # sids this sender was given, kept to tell messages apart


class HTTPClientLike(Protocol):
    """What the sender uses of an HTTP client: the ``treq`` module, a
    ``treq.client.HTTPClient`` or ``treq.testing.StubTreq(resource)``."""

    def request(self, method: str, url: str, **kwargs: Any) -> Any: ...


@attrs.frozen
class Message:
    """One SMS to send: the job argument.

    Attributes:
        to: the recipient, an E.164 number.
        body: the text.
        from_: the sender for this message (an E.164 number, short code or
            alphanumeric id), or None for the configured one.
        id: the caller's stable identity for the message (an input line, a
            database key), carried into the result's record.
        unsure_since: set when an earlier attempt of this message may have
            reached the provider (a run that crashed mid-send): the earliest
            time, in seconds since the epoch, it may have been accepted.  With
            ``resend_check`` the sender looks for it before sending again.
    """

    to: str
    body: str
    from_: str | None = None
    id: str | None = None
    unsure_since: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The message as JSON-ready fields (``from`` for ``from_``), without
        the ones that are None; :meth:`from_json` reads it back."""
        out: dict[str, Any] = {"to": self.to, "body": self.body}
        if self.from_ is not None:
            out["from"] = self.from_
        if self.id is not None:
            out["id"] = self.id
        if self.unsure_since is not None:
            out["unsure_since"] = self.unsure_since
        return out

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Message:
        """A message from :meth:`to_json`'s fields (``from`` or ``from_``),
        not yet checked (see :func:`check_message`).

        Raises:
            BadMessage: for a missing ``to`` or ``body`` or an unknown field.
        """
        unknown = set(value) - {"to", "body", "from", "from_", "id", "unsure_since"}
        if unknown:
            raise BadMessage(f"unknown fields {sorted(unknown)}", "message")
        for name in ("to", "body"):
            if name not in value:
                raise BadMessage(f"no {name!r}", name)
        return cls(
            to=value["to"],
            body=value["body"],
            from_=value.get("from", value.get("from_")),
            id=value.get("id"),
            unsure_since=value.get("unsure_since"),
        )


def body_length(body: str) -> int:
    """A body's length as SMS providers count it: UTF-16 code units (a
    character outside the Basic Multilingual Plane, such as an emoji, is 2)."""
    return len(body) + sum(1 for char in body if ord(char) > 0xFFFF)


def check_message(message: Message | Mapping[str, Any], config: SmsConfig) -> Message:
    """Check a message before it is queued; return it normalised.

    The ``To`` (and a per-message ``from_``) are normalised by
    :func:`~fetchq.sms.numbers.check_e164` / ``check_sender``; the body must be
    text, not blank, and at most ``config.max_body`` long (as
    :func:`body_length` counts); there must be a sender.

    Raises:
        BadMessage: naming the field and what is wrong.  Record it as failed
            input; never send the message.
    """
    if isinstance(message, Mapping):
        message = Message.from_json(message)
    elif not isinstance(message, Message):
        raise BadMessage(
            f"expected a Message or a mapping, not {type(message).__name__}"
        )
    rules = config.numbers
    to = check_e164(message.to, "to", rules)
    from_ = None if message.from_ is None else check_sender(message.from_, rules)
    if (
        from_ is None
        and config.from_number is None
        and config.messaging_service_sid is None
    ):
        raise BadMessage(
            "no sender: give the message a from_, or configure from_number "
            "or messaging_service_sid",
            "from",
        )
    body = message.body
    if not isinstance(body, str):
        raise BadMessage(f"the body must be text, not {type(body).__name__}", "body")
    if not body.strip():
        raise BadMessage("the body is empty", "body", body)
    length = body_length(body)
    if length > config.max_body:
        raise BadMessage(
            f"the body is {length} characters, more than the limit of "
            f"{config.max_body}",
            "body",
        )
    if message.id is not None and not isinstance(message.id, str):
        raise BadMessage(f"the id must be text, not {type(message.id).__name__}", "id")
    since = message.unsure_since
    if since is not None and (
        isinstance(since, bool)
        or not isinstance(since, (int, float))
        or not math.isfinite(since)
    ):
        raise BadMessage("unsure_since must be a time in seconds", "unsure_since")
    if to == message.to and from_ == message.from_:
        return message
    return attrs.evolve(message, to=to, from_=from_)


def lane_key(message: Message, config: SmsConfig) -> str:
    """The lane a message goes in: its sender (``from_``, else the configured
    ``from_number``, else the messaging service sid), so per-lane rate and
    throttle holds apply per sender number.

    Raises:
        BadMessage: if there is no sender at all.
    """
    key = message.from_ or config.from_number or config.messaging_service_sid
    if key is None:
        raise BadMessage("no sender", "from")
    return key


def sms_retry_policy(
    max_attempts: int = 5,
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    *,
    retry_maybe_sent: bool = True,
) -> RetryPolicy:
    """A retry policy for SMS jobs.

    Throttles (429/20429) retry after the provider's delay; connection
    failures retry with exponential backoff and full jitter; 4xx answers and
    bad input fail at once.

    Args:
        max_attempts: most attempts per message (1 = no retries).
        base_delay: backoff before the second attempt, before jitter (s).
        max_delay: the backoff cap (s).
        retry_maybe_sent: also retry timeouts, lost connections and 5xx
            answers, where the provider may have accepted the message
            (at-least-once; with ``resend_check`` a retry looks first).
            False: those fail at once (at-most-once for them).
    """
    retry_on: tuple[type[BaseException], ...] = (SmsConnectionFailed,)
    if retry_maybe_sent:
        retry_on = (*retry_on, AmbiguousSend, ProviderError)
    return RetryPolicy(
        max_attempts=max_attempts,
        base_delay=base_delay,
        max_delay=max_delay,
        retry_on=retry_on,
    )


@attrs.frozen
class SmsResult:
    """A message the provider accepted.

    Attributes:
        sid: the provider's message sid: the proof it was accepted.
        status: the provider's status (``queued``, ``accepted``, ``sent``...).
        to: the recipient.
        from_: the sender as the provider reports it (None while a messaging
            service has not picked one).
        id: the message's :attr:`Message.id`.
        messaging_service_sid: the messaging service, if one was used.
        price: the provider's price (text, often None until sent).
        error_code: the provider's error code for the message, if any.
        segments: how many SMS segments the body takes, if reported.
        date_created: the provider's creation time (RFC 2822 text).
        recovered: True when the sid came from the provider's message list
            (``resend_check`` found an earlier attempt) instead of a 201.
        elapsed: seconds this call took, on the sender's clock.
    """

    sid: str
    status: str
    to: str
    from_: str | None
    id: str | None = None
    messaging_service_sid: str | None = None
    price: str | None = None
    error_code: int | None = None
    segments: int | None = None
    date_created: str | None = None
    recovered: bool = False
    elapsed: float = 0.0

    def record(self) -> dict[str, Any]:
        """The output line for this message (JSON-ready; ``from`` for
        ``from_``).  Persist it as soon as the job completes: the sid is what
        keeps a resumed run from sending the message again."""
        return {
            "id": self.id,
            "sid": self.sid,
            "status": self.status,
            "to": self.to,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "price": self.price,
            "error_code": self.error_code,
            "segments": self.segments,
            "date_created": self.date_created,
            "recovered": self.recovered,
            "elapsed": round(self.elapsed, 6),
        }


class SmsSender:
    """Sends SMS under an :class:`~fetchq.sms.config.SmsConfig`; callable as
    a fetchq job function.

    Args:
        config: the provider, account and limits.
        reactor: the clock of timeouts and ``elapsed`` (an ``IReactorTime``;
            also ``IReactorTCP`` when ``http`` is None).
        http: a treq-like client (``treq``, an ``HTTPClient``,
            ``treq.testing.StubTreq(resource)``), or None to make one with a
            persistent connection pool of ``pool_size`` per host on
            ``reactor`` (then call :meth:`close` when done).
        pool_size: persistent connections kept when the sender makes its own
            client; use the queue's width.
    """

    def __init__(
        self,
        config: SmsConfig,
        reactor: Any,
        http: HTTPClientLike | None = None,
        *,
        pool_size: int = 10,
    ) -> None:
        if isinstance(pool_size, bool) or not isinstance(pool_size, int):
            raise ValueError(f"pool_size must be an integer >= 1, not {pool_size!r}")
        if pool_size < 1:
            raise ValueError(f"pool_size must be an integer >= 1, not {pool_size!r}")
        self._config = config
        self._clock = reactor
        self._pool: HTTPConnectionPool | None = None
        if http is None:
            pool = HTTPConnectionPool(reactor, persistent=True)  # type: ignore[no-untyped-call]
            pool.maxPersistentPerHost = pool_size
            agent: Any = Agent(  # type: ignore[no-untyped-call]
                reactor, connectTimeout=config.connect_timeout, pool=pool
            )
            http = cast(HTTPClientLike, HTTPClient(agent))
            self._pool = pool
        self._http: Any = http
        user, password = config.basic_auth
        credentials = f"{user}:{password}".encode()
        self._authorization = b"Basic " + base64.b64encode(credentials)
        origin = urlsplit(config.base_url)
        self._origin = f"{origin.scheme}://{origin.netloc}"
        self._unsure: dict[tuple[str, str | None, str, str | None], float] = {}
        self._recent: OrderedDict[str, None] = OrderedDict()

    @property
    def config(self) -> SmsConfig:
        """The configuration this sender was made with."""
        return self._config

    def close(self) -> Deferred[None]:
        """Close the idle pooled connections of a client the sender made (a
        no-op for an injected one).  Returns a Deferred that fires when done."""
        if self._pool is None:
            done: Deferred[None] = Deferred()
            done.callback(None)
            return done
        d: Deferred[None] = self._pool.closeCachedConnections()  # type: ignore[no-untyped-call]
        return d

    def lane_key(self, message: Message) -> str:
        """The lane for ``message``: its sender (see :func:`lane_key`)."""
        return lane_key(message, self._config)

    def unsure(self, message: Message) -> float | None:
        """When an earlier attempt of ``message`` in this process may have been
        accepted (a timeout, a lost connection, a 5xx, a cancel), or None.
        Cleared once the message is accepted or found.  With ``resend_check``
        the next attempt looks for it first; either way, later failures of
        the message say ``maybe_sent``."""
        return self._unsure.get(_identity(message))

    def __call__(self, job_arg: Message | Mapping[str, Any]) -> Deferred[SmsResult]:
        """Send as a queue job function (see :meth:`send`)."""
        return self.send(job_arg)

    def send(self, message: Message | Mapping[str, Any]) -> Deferred[SmsResult]:
        """Send one message.

        Args:
            message: a :class:`Message`, or a mapping of its JSON fields.

        Returns:
            A Deferred firing with an :class:`SmsResult`, or failing with an
            :class:`~fetchq.sms.errors.SmsError` (a throttle is a
            ``fetchq.Throttled`` too).  Cancelling it abandons the request.
        """
        return Deferred.fromCoroutine(self._send(message))

    def find_sent(
        self, message: Message | Mapping[str, Any], since: float
    ) -> Deferred[SmsResult | None]:
        """Look for ``message`` in the provider's message list: one accepted
        at or after ``since`` (less ``probe_skew``) with the same To, sender
        and body, whose sid this sender was not given for another message.

        Returns:
            A Deferred firing with the found message as a result with
            ``recovered=True``, or None if the list does not show it.
        """
        return Deferred.fromCoroutine(self._find_sent(message, since))

    def delivery(self, sid: str) -> Deferred[Delivery]:
        """Read what became of a sent message: ``GET .../Messages/{sid}.json``.

        Returns:
            A Deferred firing with its :class:`~fetchq.sms.status.Delivery`
            (``checked_at`` on the wall clock), or failing with an
            :class:`~fetchq.sms.errors.SmsError`: 404 (no such message in
            this account) is a :class:`ProviderRejected` with code 20404.
        """
        return Deferred.fromCoroutine(self._delivery(sid))

    async def _delivery(self, sid: str) -> Delivery:
        try:
            url = self._config.message_url(sid)
        except ValueError as e:
            raise BadMessage(str(e), "sid", sid) from None
        status, headers, body = await self._exchange("GET", url, None)
        if status != 200:
            raise self._status_error(status, headers, body, "status: ")
        doc = _json_object(body)
        if doc is None:
            raise BadResponse(status, "not a JSON object")
        return Delivery.from_json(doc, sid, time.time())

    async def _send(self, given: Message | Mapping[str, Any]) -> SmsResult:
        config = self._config
        started = self._clock.seconds()
        message = check_message(given, config)
        ident = _identity(message)
        since = _earliest(self._unsure.get(ident), message.unsure_since)
        try:
            if since is not None and config.resend_check:
                found = await self._find_sent(message, since, started)
                if found is not None:
                    self._unsure.pop(ident, None)
                    self._remember(found.sid)
                    return found
            attempt = self._clock.seconds()
            try:
                result = await self._post(message, started)
            except SmsError as e:
                if e.maybe_sent:
                    self._mark_unsure(ident, attempt)
                raise
            except CancelledError:
                self._mark_unsure(ident, attempt)
                raise
        except SmsError as e:
            if since is not None:
                # This attempt failed, but an earlier one may have gone out:
                # the record must not say "not sent".
                e.maybe_sent = True
            raise
        self._unsure.pop(ident, None)
        self._remember(result.sid)
        return result

    def _mark_unsure(
        self, ident: tuple[str, str | None, str, str | None], when: float
    ) -> None:
        self._unsure[ident] = _earliest(self._unsure.get(ident), when) or when

    def _remember(self, sid: str) -> None:
        recent = self._recent
        recent[sid] = None
        if len(recent) > _RECENT_SIDS:
            recent.popitem(last=False)

    async def _post(self, message: Message, started: float) -> SmsResult:
        config = self._config
        form = [("To", message.to)]
        from_ = message.from_ or config.from_number
        if from_ is not None:
            form.append(("From", from_))
        else:
            assert config.messaging_service_sid is not None  # check_message saw
            form.append(("MessagingServiceSid", config.messaging_service_sid))
        form.append(("Body", message.body))
        if config.status_callback is not None:
            form.append(("StatusCallback", config.status_callback))
        data = urlencode(form).encode("ascii")
        status, headers, body = await self._exchange("POST", config.messages_url, data)
        if not 200 <= status < 300:
            error = self._status_error(status, headers, body)
            code = getattr(error, "code", None)
            if (
                isinstance(error, ProviderRejected)
                and not error.fatal
                and (
                    code in ACCOUNT_CODES
                    or (code in SENDER_CODES and not message.from_)
                )
            ):
                # Not this message's fault: the account, or the recipe's own
                # sender, is wrong for every message.
                error.fatal = True
                error.fix = (
                    "check the account (sms.account_sid)"
                    if code in ACCOUNT_CODES
                    else "check the sender (sms.from, sms.messaging_service_sid)"
                )
            raise error
        doc = _json_object(body)
        if doc is None or not isinstance(doc.get("sid"), str) or not doc["sid"]:
            why = "not a JSON object" if doc is None else "no 'sid' in it"
            raise BadResponse(status, why)
        return _result(doc, message, self._clock.seconds() - started, recovered=False)

    async def _find_sent(
        self,
        given: Message | Mapping[str, Any],
        since: float,
        started: float | None = None,
    ) -> SmsResult | None:
        config = self._config
        if started is None:
            started = self._clock.seconds()
        message = check_message(given, config)
        from_ = message.from_ or config.from_number
        params = [("To", message.to)]
        if from_ is not None:
            params.append(("From", from_))
        params.append(("PageSize", str(config.probe_page_size)))
        url = f"{config.messages_url}?{urlencode(params)}"
        oldest = math.floor(since - config.probe_skew)
        for _ in range(config.probe_pages):
            status, headers, body = await self._exchange("GET", url, None)
            if status != 200:
                raise self._status_error(status, headers, body, "resend check: ")
            doc = _json_object(body)
            items = None if doc is None else doc.get("messages")
            if doc is None or not isinstance(items, list):
                raise ProviderError(status, None, "resend check: not a message list")
            newest_in_window = False
            for item in items:
                if not isinstance(item, dict):
                    continue
                created = _epoch(item.get("date_created"))
                if created is None or created < oldest:
                    continue
                newest_in_window = True
                if self._matches(item, message, from_):
                    elapsed = self._clock.seconds() - started
                    return _result(item, message, elapsed, recovered=True)
            next_page = doc.get("next_page_uri")
            if not newest_in_window or not isinstance(next_page, str) or not next_page:
                break
            url = next_page if "://" in next_page else self._origin + next_page
        return None

    def _matches(
        self, item: dict[str, Any], message: Message, from_: str | None
    ) -> bool:
        if item.get("to") != message.to or item.get("body") != message.body:
            return False
        if not str(item.get("direction") or "outbound").startswith("outbound"):
            return False
        if from_ is not None:
            if item.get("from") != from_:
                return False
        elif item.get("messaging_service_sid") != self._config.messaging_service_sid:
            return False
        sid = item.get("sid")
        return isinstance(sid, str) and bool(sid) and sid not in self._recent

    async def _exchange(
        self, method: str, url: str, data: bytes | None
    ) -> tuple[int, Headers, bytes]:
        """One request and its whole answer within ``timeout``: (status,
        headers, body), or the named error of a transport failure."""
        config = self._config
        headers = Headers(
            {
                b"Authorization": [self._authorization],
                b"Accept": [b"application/json"],
                b"User-Agent": [config.user_agent.encode("utf-8")],
            }
        )
        if data is not None:
            headers.addRawHeader(b"Content-Type", b"application/x-www-form-urlencoded")
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            d.cancel()

        d = Deferred.fromCoroutine(self._request(method, url, headers, data))
        timer = self._clock.callLater(config.timeout, expire)
        try:
            return await d
        except SmsError:
            raise
        except Exception as e:
            raise _transport_error(e, expired, config) from None
        finally:
            if timer.active():
                timer.cancel()

    async def _request(
        self, method: str, url: str, headers: Headers, data: bytes | None
    ) -> tuple[int, Headers, bytes]:
        config, clock = self._config, self._clock
        headers_timeout, body_timeout = config.headers_timeout, config.body_timeout
        response = await deadline(
            self._http.request(
                method, url, headers=headers, data=data, allow_redirects=False
            ),
            headers_timeout,
            clock,
            lambda: SmsTimeout(headers_timeout or 0),
        )
        body: bytes = await deadline(
            treq.content(response),
            body_timeout,
            clock,
            lambda: SmsTimeout(body_timeout or 0),
        )
        return int(response.code), response.headers, body

    def _status_error(
        self, status: int, headers: Headers, body: bytes, prefix: str = ""
    ) -> SmsError:
        """The error for a non-2xx answer."""
        config = self._config
        doc = _json_object(body)
        code = None if doc is None else doc.get("code")
        if isinstance(code, bool) or not isinstance(code, int):
            code = None
        text = None if doc is None else doc.get("message")
        if not isinstance(text, str) or not text:
            text = _describe(body)
        if status == 429 or code == THROTTLE_CODE:
            values = headers.getRawHeaders(b"retry-after")
            delay = parse_retry_after(
                values[0] if values else None, self._clock.seconds()
            )
            if delay is None:
                delay = config.default_retry_after
            return ProviderThrottled(min(delay, config.max_retry_after), status, code)
        if status >= 500:
            return ProviderError(status, code, prefix + text)
        if status in (401, 403):
            return AuthFailed(status, code, prefix + text)
        return ProviderRejected(status, code, prefix + text)


def _identity(message: Message) -> tuple[str, str | None, str, str | None]:
    return (message.to, message.from_, message.body, message.id)


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _describe(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return "no message (empty answer)"
    return "not a provider answer: " + (text if len(text) <= 80 else text[:77] + "...")


def _epoch(value: object) -> float | None:
    """Seconds since the epoch of an RFC 2822 date (the provider's format)."""
    if not isinstance(value, str):
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _optional_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _result(
    doc: Mapping[str, Any], message: Message, elapsed: float, *, recovered: bool
) -> SmsResult:
    return SmsResult(
        sid=doc["sid"],
        status=_optional_str(doc.get("status")) or "unknown",
        to=_optional_str(doc.get("to")) or message.to,
        from_=_optional_str(doc.get("from")),
        id=message.id,
        messaging_service_sid=_optional_str(doc.get("messaging_service_sid")),
        price=_optional_str(doc.get("price")),
        error_code=_optional_int(doc.get("error_code")),
        segments=_optional_int(doc.get("num_segments")),
        date_created=_optional_str(doc.get("date_created")),
        recovered=recovered,
        elapsed=elapsed,
    )


def _reasons(error: BaseException) -> list[BaseException]:
    """``error`` and every exception inside Twisted's wrappers (``.reasons``)."""
    found = [error]
    for inner in getattr(error, "reasons", None) or ():
        value = inner.value if isinstance(inner, Failure) else inner
        if isinstance(value, BaseException):
            found.extend(_reasons(value))
    return found


def _transport_error(error: Exception, expired: bool, config: SmsConfig) -> Exception:
    """The named error for a request that got no whole answer."""
    found = _reasons(error)
    if expired:
        if any(isinstance(e, ConnectingCancelledError) for e in found):
            return SmsConnectionFailed(f"no connection within {config.timeout:g}s")
        return SmsTimeout(config.timeout)
    if any(isinstance(e, (CancelledError, ConnectingCancelledError)) for e in found):
        return CancelledError()  # cancelled from outside: stay cancelled
    for e in found:
        if type(e).__module__.startswith("OpenSSL"):
            return SmsConnectionFailed(f"TLS failed ({e})")
        if isinstance(e, ConnectTimeoutError):
            return SmsConnectionFailed(
                f"no connection within {config.connect_timeout:g}s"
            )
        if isinstance(e, DNSLookupError):
            return SmsConnectionFailed(f"DNS lookup failed ({e})", Signal.IGNORE)
        if isinstance(e, ConnectError):
            return SmsConnectionFailed(f"cannot connect ({e})")
    if isinstance(error, RequestTransmissionFailed):
        return SmsConnectionFailed("connection lost while sending the request")
    if isinstance(error, ResponseNeverReceived):
        return ConnectionLost("connection closed before the answer")
    if isinstance(error, ResponseFailed):
        return ConnectionLost("connection lost while reading the answer")
    inner = found[-1]
    return ConnectionLost(f"{type(inner).__name__}: {inner}".rstrip(": "))
