"""A fake Twilio-shaped SMS provider, for tests and for trying recipes.

:class:`FakeSMSProvider` is a ``twisted.web`` resource that answers the
Messages API the way Twilio does, in JSON:

- ``POST /2010-04-01/Accounts/{sid}/Messages.json`` (form fields ``To``,
  ``From`` or ``MessagingServiceSid``, ``Body``, ``StatusCallback``): 201 with
  the new message (``status`` ``queued``); 400 with a Twilio error code for
  bad input (21604 no To, 21603 no From, 21606 a From not on the account,
  21602 no body, 21617 body too long, 21211 invalid To, 21614 To not a
  mobile number); 401 (code 20003) on bad Basic auth; 429 (code 20429) when
  more than ``concurrency`` requests are in flight.
- ``GET .../Messages.json?To=&From=&PageSize=&Page=``: the account's messages,
  newest first, paged with ``next_page_uri``.
- ``GET .../Messages/{sid}.json``: one message, with its status as of now.

**Credentials** as Twilio takes them, HTTP Basic either way: the account SID
and its auth token, or an API key SID (``SK...``) and its secret
(``api_keys``), while the URL names the account in both cases.

Like the real API it *accepts* a message at once and *sends* it later: each
sender (``From``, or the messaging service) sends ``per_from_rate`` messages
per second, so every accepted :class:`FakeMessage` records ``created_at`` and
the ``sent_at`` its sender's queue gives it.  Its status then moves as
Twilio documents it: ``accepted`` (a messaging service's message) or
``queued`` until ``sent_at``, ``sending`` for ``sending_time``, then ``sent``
(with ``date_sent``), and ``receipt_delay`` later the carrier's receipt makes
it ``delivered``; ``outcomes`` makes a number's messages ``undelivered`` or
``failed`` (with an ``error_code`` and ``error_message``, such as 30003
"Unreachable destination handset"; ``failed`` straight from ``sending``), or
stay ``sent`` (a carrier that sends no receipts).  A message is committed when the
request arrives and answered ``latency`` seconds later, so a client that
gives up in between has sent it without knowing, the case a resend check is
for.  :meth:`FakeSMSProvider.fail_next` scripts faults (5xx, 20429, with or
without committing the message).

**In-process, on task.Clock**, through ``treq.testing.StubTreq``::

    clock = Clock()
    provider = FakeSMSProvider(clock, latency=0.05)
    stub = StubTreq(provider)
    sender = SmsSender(config_for(provider), clock, http=stub)
    d = sender.send(Message("+12125550199", "Hi", from_="+12125550100"))
    advance_and_flush(clock, stub, 0.05)    # or run_until_idle(clock, stub)

Answers are delayed with ``clock.callLater`` and ``NOT_DONE_YET``, so after
advancing the clock a test must call ``stub.flush()`` to carry the written
answer to the client: :func:`advance_and_flush` and :func:`run_until_idle`
do both, one delayed call at a time.

**On a loopback port**, for integration tests, or to point a recipe at::

    served = serve(reactor, port=0, latency=0.2)
    served.url, served.fake           # where it listens; the provider
    yield served.stop()               # stop listening, close connections

or from a shell: ``python -m fetchq.testing.sms --port 8099``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, TypeAlias
from urllib.parse import urlencode

import attrs
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from fetchq.sms.numbers import NumberRules, check_e164
from fetchq.testing.clock import advance_and_flush, run_until_idle
from fetchq.testing.served import Served, serve_resource

__all__ = [
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "DEFAULT_AUTH_TOKEN",
    "ERROR_MESSAGES",
    "FakeMessage",
    "FakeSMSProvider",
    "advance_and_flush",
    "run_until_idle",
    "serve",
]

DEFAULT_ACCOUNT_SID = "AC" + "f" * 32
"""The fake's account SID unless told otherwise."""

DEFAULT_AUTH_TOKEN = "fake-auth-token"
"""The fake's auth token unless told otherwise."""

DEFAULT_API_KEY = "SK" + "e" * 32
"""The API key SID the fake accepts unless told otherwise."""

DEFAULT_API_SECRET = "fake-api-secret"
"""That API key's secret."""

ERROR_MESSAGES: dict[int, str] = {
    30001: "Queue overflow",
    30002: "Account suspended",
    30003: "Unreachable destination handset",
    30004: "Message blocked",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered",
    30008: "Unknown error",
}
"""Twilio's delivery error codes (30001-30008) and their messages."""

FINAL_STATUSES = frozenset({"delivered", "undelivered", "failed"})

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_MESSAGES = re.compile(r"/2010-04-01/Accounts/([^/]+)/Messages\.json")
_MESSAGE = re.compile(r"/2010-04-01/Accounts/([^/]+)/Messages/([^/]+)\.json")
_GSM_PLAIN = frozenset(
    "@$\n\r !\"#%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "abcdefghijklmnopqrstuvwxyz_"
)
_Numbers: TypeAlias = Collection[str] | Callable[[str], bool]


def _predicate(numbers: _Numbers) -> Callable[[str], bool]:
    if callable(numbers):
        return numbers
    members = frozenset(numbers)
    return members.__contains__


def _rfc2822(when: float) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(when))


def _units(body: str) -> int:
    return len(body) + sum(1 for char in body if ord(char) > 0xFFFF)


def _segments(body: str) -> int:
    """SMS segments, roughly as a provider counts them: GSM-7 (160, or 153 per
    part) for plain text, UCS-2 (70, or 67 per part) otherwise."""
    if set(body) <= _GSM_PLAIN:
        return 1 if len(body) <= 160 else math.ceil(len(body) / 153)
    units = _units(body)
    return 1 if units <= 70 else math.ceil(units / 67)


@attrs.define
class FakeMessage:
    """A message the fake provider accepted.

    Attributes:
        sid: its sid (``SM`` + 32 hex digits, in order of acceptance).
        to: the recipient.
        from_: the ``From`` given, or None (a messaging service's message).
        body: the text.
        messaging_service_sid: the ``MessagingServiceSid`` given, or None.
        status_callback: the ``StatusCallback`` given, or None.
        created_at: clock time the provider accepted it.
        sent_at: clock time its sender's queue sends it (>= created_at).
        sending_time: seconds it is ``sending`` from ``sent_at``.
        receipt_delay: seconds from ``sent`` to its final status.
        outcome: its final status (``delivered``, ``undelivered``,
            ``failed``, or ``sent``: no receipt ever comes).
        error_code: the error code of an undelivered or failed message.
    """

    sid: str
    to: str
    from_: str | None
    body: str
    messaging_service_sid: str | None
    status_callback: str | None
    created_at: float
    sent_at: float
    sending_time: float = 0.5
    receipt_delay: float = 2.0
    outcome: str = "delivered"
    error_code: int | None = None

    @property
    def sender(self) -> str:
        """The queue it waits in: its From, or its messaging service."""
        return self.from_ or self.messaging_service_sid or ""

    @property
    def left_at(self) -> float:
        """When it is ``sent`` (or ``failed``): after ``sending_time``."""
        return self.sent_at + self.sending_time

    @property
    def final_at(self) -> float:
        """When its final status comes (``failed``: as it leaves)."""
        if self.outcome == "failed":
            return self.left_at
        return self.left_at + self.receipt_delay

    def status_at(self, now: float) -> str:
        """``queued`` (``accepted`` for a messaging service) until its
        sender's queue reaches it, ``sending``, ``sent``, then its final
        status."""
        if now < self.sent_at:
            return "queued" if self.from_ is not None else "accepted"
        if now < self.left_at:
            return "sending"
        if now < self.final_at or self.outcome == "sent":
            return "sent"
        return self.outcome

    def updated_at(self, now: float) -> float:
        """When its status last changed, as of ``now``."""
        for when in (self.final_at, self.left_at, self.sent_at):
            if now >= when and (when != self.final_at or self.outcome != "sent"):
                return when
        return self.created_at

    def to_json(self, account_sid: str, now: float) -> dict[str, Any]:
        """The message as the API shows it at ``now``."""
        status = self.status_at(now)
        sent = now >= self.left_at and status != "failed"
        final = status in FINAL_STATUSES and status != "delivered"
        code = self.error_code if final else None
        return {
            "account_sid": account_sid,
            "api_version": "2010-04-01",
            "body": self.body,
            "date_created": _rfc2822(self.created_at),
            "date_sent": _rfc2822(self.left_at) if sent else None,
            "date_updated": _rfc2822(self.updated_at(now)),
            "direction": "outbound-api",
            "error_code": code,
            "error_message": None if code is None else ERROR_MESSAGES.get(code),
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": "0",
            "num_segments": str(_segments(self.body)),
            "price": None,
            "price_unit": "USD",
            "sid": self.sid,
            "status": status,
            "to": self.to,
            "uri": f"/2010-04-01/Accounts/{account_sid}/Messages/{self.sid}.json",
        }


@attrs.frozen
class _Fault:
    status: int
    code: int | None
    message: str
    retry_after: str | None
    accept: bool


def _error(status: int, code: int | None, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": None
        if code is None
        else f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


_Answer = tuple[int, dict[str, Any], dict[str, str]]


class FakeSMSProvider(Resource):
    """A Twilio-shaped Messages API on a clock (see the module docstring).

    Args:
        clock: the clock of latency and send times (a ``task.Clock`` or the
            reactor).
        account_sid: the account; the Basic auth user and the URL's SID.
        auth_token: the Basic auth password.
        latency: seconds between a request's arrival and its answer.
        concurrency: most requests in flight at once; one more gets 429 with
            code 20429.
        per_from_rate: messages each sender sends per second (a US long code:
            1).
        invalid: numbers answered with 21211 (a collection or a predicate),
            besides anything that is not strict E.164.
        not_mobile: numbers answered with 21614 (a collection or predicate).
        senders: the account's ``From`` numbers (others get 21606), or None
            to take any.
        max_body: the longest body (UTF-16 code units); longer gets 21617.
        list_lag: seconds before an accepted message shows in the list.
        api_keys: ``{API key SID: secret}`` that authenticate for the
            account besides its auth token (default: :data:`DEFAULT_API_KEY`
            with :data:`DEFAULT_API_SECRET`; ``{}``: none).
        sending_time: seconds a message is ``sending``.
        receipt_delay: seconds from ``sent`` to the carrier's receipt.
        outcomes: ``{number: (status, error code)}`` for messages to that
            number: ``("undelivered", 30003)``, ``("failed", 30008)``, or
            ``("sent", None)`` for no receipt; others are ``delivered``.

    Attributes:
        messages: every accepted :class:`FakeMessage`, in order.
        requests: requests by method (``"POST"``, ``"GET"``).
        statuses: answers by HTTP status.
        codes: answers by Twilio error code (20429, 21211, ...).
        in_flight: requests accepted for processing and not yet answered.
        max_in_flight: the most there have been at once.
        abandoned: answers not delivered because the client had gone.
    """

    isLeaf = True

    def __init__(
        self,
        clock: Any,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        latency: float = 0.05,
        concurrency: int = 100,
        per_from_rate: float = 1.0,
        invalid: _Numbers = (),
        not_mobile: _Numbers = (),
        senders: Iterable[str] | None = None,
        max_body: int = 1600,
        list_lag: float = 0.0,
        api_keys: Mapping[str, str] | None = None,
        sending_time: float = 0.5,
        receipt_delay: float = 2.0,
        outcomes: Mapping[str, tuple[str, int | None]] | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        if not latency >= 0 or not list_lag >= 0:
            raise ValueError("latency and list_lag must be >= 0")
        if concurrency < 1 or not per_from_rate > 0 or max_body < 1:
            raise ValueError("concurrency, per_from_rate and max_body must be > 0")
        self.clock = clock
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.latency = latency
        self.concurrency = concurrency
        self.per_from_rate = per_from_rate
        self.max_body = max_body
        self.list_lag = list_lag
        self.api_keys = dict(
            {DEFAULT_API_KEY: DEFAULT_API_SECRET} if api_keys is None else api_keys
        )
        if not sending_time >= 0 or not receipt_delay >= 0:
            raise ValueError("sending_time and receipt_delay must be >= 0")
        self.sending_time = sending_time
        self.receipt_delay = receipt_delay
        self.outcomes = dict(outcomes or {})
        for number, (status, _) in self.outcomes.items():
            if status not in ("delivered", "undelivered", "failed", "sent"):
                raise ValueError(f"bad outcome {status!r} for {number}")
        self._invalid = _predicate(invalid)
        self._not_mobile = _predicate(not_mobile)
        self._senders = None if senders is None else frozenset(senders)
        self.messages: list[FakeMessage] = []
        self.requests: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.codes: Counter[int] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.abandoned = 0
        self._faults: dict[str, list[_Fault]] = {"POST": [], "GET": []}
        self._next_free: dict[str, float] = {}
        self._by_sid: dict[str, FakeMessage] = {}

    # ------------------------------------------------------------------
    # What a test uses

    @property
    def messages_path(self) -> str:
        """The Messages resource's path for this account."""
        return f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    def fail_next(
        self,
        status: int,
        *,
        code: int | None = None,
        message: str = "",
        retry_after: float | str | None = None,
        count: int = 1,
        accept: bool = False,
        method: str = "POST",
    ) -> None:
        """Answer the next ``count`` message POSTs (or, with ``method="GET"``,
        reads of one message) that pass auth and the concurrency cap with
        ``status`` and a Twilio error body.

        Args:
            status: the HTTP status (500, 503, 429...).
            code: the Twilio error code in the body.
            message: the error message (a default names the status).
            retry_after: a Retry-After header value, if any.
            count: how many POSTs this applies to.
            accept: accept (commit) the message all the same, as a provider
                that fails after committing does.
            method: ``"POST"`` (sending) or ``"GET"`` (``Messages/{sid}``).
        """
        if method not in self._faults:
            raise ValueError(f"method must be POST or GET, not {method!r}")
        fault = _Fault(
            status,
            code,
            message or f"fake fault {status}",
            None if retry_after is None else str(retry_after),
            accept,
        )
        self._faults[method].extend([fault] * count)

    def duplicates(self) -> list[tuple[FakeMessage, ...]]:
        """Groups of accepted messages with the same To, sender and body
        (each group has two or more), in order of first acceptance."""
        groups: dict[tuple[str, str, str], list[FakeMessage]] = {}
        for message in self.messages:
            groups.setdefault((message.to, message.sender, message.body), []).append(
                message
            )
        return [tuple(group) for group in groups.values() if len(group) > 1]

    def sent_to(self, to: str) -> list[FakeMessage]:
        """The accepted messages for ``to``, in order."""
        return [message for message in self.messages if message.to == to]

    # ------------------------------------------------------------------
    # The API

    def render(self, request: Any) -> bytes | int:
        """Answer one request (twisted.web calls this)."""
        method = request.method.decode("ascii", "replace")
        self.requests[method] += 1
        if not self._authorized(request):
            return self._answer_now(
                request,
                (
                    401,
                    _error(401, 20003, "Authenticate"),
                    {"WWW-Authenticate": 'Basic realm="Twilio API"'},
                ),
            )
        if self.in_flight >= self.concurrency:
            return self._answer_now(
                request, (429, _error(429, 20429, "Too Many Requests"), {})
            )
        return self._answer_later(request, self._route(method, request))

    def _authorized(self, request: Any) -> bool:
        user = request.getUser().decode("utf-8", "replace")
        password = request.getPassword().decode("utf-8", "replace")
        if user == self.account_sid:
            return bool(password == self.auth_token)
        secret = self.api_keys.get(user)
        return secret is not None and password == secret

    def _route(self, method: str, request: Any) -> _Answer:
        path = request.path.decode("utf-8", "replace")
        listing = _MESSAGES.fullmatch(path)
        single = _MESSAGE.fullmatch(path)
        found = listing or single
        if found is None or found.group(1) != self.account_sid:
            return (
                404,
                _error(404, 20404, f"The requested resource {path} was not found"),
                {},
            )
        if listing and method == "POST":
            return self._create(request)
        if listing and method == "GET":
            return self._list(request)
        if single and method == "GET":
            if self._faults["GET"]:
                return self._fault(self._faults["GET"].pop(0), None)
            message = self._by_sid.get(single.group(2))
            if message is None or not self._listed(message):
                return (
                    404,
                    _error(404, 20404, f"The requested resource {path} was not found"),
                    {},
                )
            return 200, message.to_json(self.account_sid, self.clock.seconds()), {}
        return 405, _error(405, 20004, "Method not allowed"), {}

    def _create(self, request: Any) -> _Answer:
        args = _form(request)
        if self._faults["POST"]:
            return self._fault(self._faults["POST"].pop(0), args)
        to = args.get("To", "")
        from_ = args.get("From") or None
        service = args.get("MessagingServiceSid") or None
        body = args.get("Body", "")
        if not to:
            return 400, _error(400, 21604, "A 'To' phone number is required."), {}
        if from_ is None and service is None:
            return 400, _error(400, 21603, "A 'From' phone number is required."), {}
        if (
            from_ is not None
            and self._senders is not None
            and from_ not in self._senders
        ):
            return (
                400,
                _error(
                    400,
                    21606,
                    f"The From phone number {from_} is not a valid, SMS-capable "
                    "inbound phone number or short code for your account.",
                ),
                {},
            )
        if not body:
            return 400, _error(400, 21602, "Message body is required."), {}
        if _units(body) > self.max_body:
            return (
                400,
                _error(
                    400,
                    21617,
                    f"The concatenated message body exceeds the {self.max_body} "
                    "character limit.",
                ),
                {},
            )
        if not _E164.fullmatch(to) or self._invalid(to) or not _dialable(to):
            return (
                400,
                _error(
                    400, 21211, f"The 'To' number {to} is not a valid phone number."
                ),
                {},
            )
        if self._not_mobile(to):
            return (
                400,
                _error(400, 21614, f"'To' number {to} is not a valid mobile number"),
                {},
            )
        message = self._accept(args)
        doc = message.to_json(self.account_sid, message.created_at)
        doc.update(status=message.status_at(-math.inf), date_sent=None)
        return 201, doc, {}

    def _fault(self, fault: _Fault, args: dict[str, str] | None) -> _Answer:
        if fault.accept and args is not None:
            self._accept(args)
        after = fault.retry_after
        headers = {} if after is None else {"Retry-After": after}
        return fault.status, _error(fault.status, fault.code, fault.message), headers

    def _accept(self, args: dict[str, str]) -> FakeMessage:
        now = self.clock.seconds()
        from_ = args.get("From") or None
        service = args.get("MessagingServiceSid") or None
        sender = from_ or service or ""
        sent_at = max(now, self._next_free.get(sender, now))
        self._next_free[sender] = sent_at + 1.0 / self.per_from_rate
        to = args.get("To", "")
        outcome, code = self.outcomes.get(to, ("delivered", None))
        message = FakeMessage(
            sid=f"SM{len(self.messages) + 1:032x}",
            to=args.get("To", ""),
            from_=from_,
            body=args.get("Body", ""),
            messaging_service_sid=service,
            status_callback=args.get("StatusCallback") or None,
            created_at=now,
            sent_at=sent_at,
            sending_time=self.sending_time,
            receipt_delay=self.receipt_delay,
            outcome=outcome,
            error_code=code,
        )
        self.messages.append(message)
        self._by_sid[message.sid] = message
        return message

    def _listed(self, message: FakeMessage) -> bool:
        now: float = self.clock.seconds()
        return message.created_at + self.list_lag <= now

    def _list(self, request: Any) -> _Answer:
        args = _form(request)
        try:
            size = min(max(int(args.get("PageSize", "50")), 1), 1000)
            page = max(int(args.get("Page", "0")), 0)
        except ValueError:
            return 400, _error(400, 20001, "Invalid PageSize or Page"), {}
        to = args.get("To")
        from_ = args.get("From")
        found = [
            m
            for m in reversed(self.messages)
            if (to is None or m.to == to)
            and (from_ is None or m.from_ == from_)
            and self._listed(m)
        ]
        chunk = found[page * size : (page + 1) * size]
        now = self.clock.seconds()

        def uri(number: int) -> str:
            query = [(k, v) for k, v in (("To", to), ("From", from_)) if v is not None]
            query += [("PageSize", str(size)), ("Page", str(number))]
            return f"{self.messages_path}?{urlencode(query)}"

        more = (page + 1) * size < len(found)
        return (
            200,
            {
                "messages": [m.to_json(self.account_sid, now) for m in chunk],
                "page": page,
                "page_size": size,
                "first_page_uri": uri(0),
                "previous_page_uri": uri(page - 1) if page > 0 else None,
                "next_page_uri": uri(page + 1) if more else None,
                "uri": uri(page),
            },
            {},
        )

    # ------------------------------------------------------------------
    # Answering

    def _answer_now(self, request: Any, answer: _Answer) -> bytes:
        """Set the status and headers of ``answer``; return its body."""
        status, doc, headers = answer
        self.statuses[status] += 1
        code = doc.get("code") if status >= 300 else None
        if isinstance(code, int):
            self.codes[code] += 1
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json")
        for name, value in headers.items():
            request.setHeader(name.encode("latin-1"), value.encode("latin-1"))
        return json.dumps(doc).encode("utf-8")

    def _answer_later(self, request: Any, answer: _Answer) -> bytes | int:
        if self.latency == 0:
            return self._answer_now(request, answer)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def respond() -> None:
            self.in_flight -= 1
            if gone:
                self.abandoned += 1
                return
            request.write(self._answer_now(request, answer))
            request.finish()

        self.clock.callLater(self.latency, respond)
        return NOT_DONE_YET


def _dialable(number: str) -> bool:
    """Whether an E.164 number has a country code in use and, for +1, a
    plan's area code and exchange (as Twilio answers 21211 otherwise)."""
    try:
        check_e164(number, "To", NumberRules(library=False))
    except ValueError:
        return False
    return True


def _form(request: Any) -> dict[str, str]:
    """The request's query or form fields, first value of each, as text."""
    out: dict[str, str] = {}
    for name, values in (request.args or {}).items():
        if values:
            out[name.decode("utf-8", "replace")] = values[0].decode("utf-8", "replace")
    return out


def serve(
    reactor: Any,
    port: int = 0,
    *,
    interface: str = "127.0.0.1",
    provider: FakeSMSProvider | None = None,
    **kw: Any,
) -> Served[FakeSMSProvider]:
    """Serve a fake provider over HTTP on ``interface:port``.

    Args:
        reactor: the reactor (``IReactorTCP`` and the provider's clock).
        port: the TCP port, 0 for any free one.
        interface: the address to listen on (loopback by default).
        provider: the provider to serve; else one is made with ``kw``.

    Returns:
        A :class:`~fetchq.testing.served.Served`: ``.fake`` is the provider,
        ``.url`` its base URL, ``.stop()`` stops it and closes connections.
    """
    if provider is None:
        provider = FakeSMSProvider(reactor, **kw)
    elif kw:
        raise TypeError("give a provider or its arguments, not both")
    return serve_resource(reactor, provider, port, interface)


def main(argv: list[str] | None = None) -> None:
    """Serve a fake provider until interrupted: ``python -m fetchq.testing.sms``."""
    parser = argparse.ArgumentParser(
        prog="python -m fetchq.testing.sms",
        description="A fake Twilio-shaped SMS provider on a loopback port.",
    )
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--per-from-rate", type=float, default=1.0)
    options = parser.parse_args(argv)
    from twisted.internet import reactor as default_reactor

    reactor: Any = default_reactor
    served = serve(
        reactor,
        options.port,
        interface=options.interface,
        account_sid=options.account_sid,
        auth_token=options.auth_token,
        latency=options.latency,
        concurrency=options.concurrency,
        per_from_rate=options.per_from_rate,
    )
    print(f"fake SMS provider on {served.url}")
    print(f"  TWILIO_ACCOUNT_SID={options.account_sid}")
    print(f"  TWILIO_AUTH_TOKEN={options.auth_token}")
    print(f"  or TWILIO_API_KEY={DEFAULT_API_KEY}")
    print(f"     TWILIO_API_SECRET={DEFAULT_API_SECRET}")
    reactor.run()


if __name__ == "__main__":
    main()
