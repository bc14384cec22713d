"""How sending an SMS can end other than with a result: one class per outcome.

::

    FetchqError                            fetchq's root (fetchq.errors)
    └── SmsError                           base of every SMS outcome below
        ├── BadMessage (also ValueError)   bad input: a To that is not E.164, an
        │                                  empty or too long body, no sender;
        │                                  refused before queueing, never sent
        ├── ProviderRejected               a 4xx answer: permanent, never retried
        │   └── AuthFailed                 401/403: the account SID or token
        ├── ProviderThrottled (Throttled)  429 or code 20429: retried after
        │                                  Retry-After (or a default); holds the lane
        ├── ProviderError                  a 5xx answer: retried with backoff
        ├── SmsConnectionFailed            no connection (refused, DNS, connect
        │                                  timeout): the request was not sent
        ├── AmbiguousSend                  the request went out and no answer came
        │   ├── SmsTimeout                 ...within ``timeout``
        │   └── ConnectionLost             ...before the connection broke
        └── BadResponse                    a 2xx answer without a message sid

Every class has a stable :attr:`SmsError.name` (its class name) for output
records, a short message, and :meth:`SmsError.record` for the output line.

**Was it sent?** :attr:`SmsError.maybe_sent` says whether the provider may
have accepted the message despite the error: True for :class:`AmbiguousSend`,
:class:`ProviderError` (a 5xx may come after the provider committed) and
:class:`BadResponse`; False for answers that say no (4xx, 429) and for
requests that never left (:class:`SmsConnectionFailed`), unless an earlier
attempt of the same message may have been accepted: then the sender sets it
True on whatever error the message finally fails with.  With
``resend_check`` the sender looks for a maybe-sent message before sending it
again (see :mod:`fetchq.sms`).

Each error also carries the :class:`~fetchq.control.Signal` an adaptive
controller reads (``error.signal``): throttles are ``THROTTLE``; timeouts,
broken connections and 503/504 are ``DROP``; everything else says nothing
about the pace (``IGNORE``).
"""

from __future__ import annotations

from typing import Any

from fetchq.control.signals import Signal
from fetchq.errors import FetchqError, Throttled

__all__ = [
    "ACCOUNT_CODES",
    "SENDER_CODES",
    "AmbiguousSend",
    "AuthFailed",
    "BadMessage",
    "BadResponse",
    "ConnectionLost",
    "ProviderError",
    "ProviderRejected",
    "ProviderThrottled",
    "SmsConnectionFailed",
    "SmsError",
    "SmsTimeout",
]

DROP_STATUSES = frozenset({503, 504})
"""5xx statuses that mean the provider is overloaded (signal ``DROP``)."""

THROTTLE_CODE = 20429
"""Twilio's "Too Many Requests": more concurrent requests than the account may
make.  Always safe to retry: the message was not accepted."""


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SmsError(FetchqError):
    """Base class of every way sending an SMS can fail."""

    signal: Signal = Signal.IGNORE
    maybe_sent: bool = False
    """Whether the provider may have accepted the message all the same."""

    @property
    def name(self) -> str:
        """The class name, stable across releases, for output records."""
        return type(self).__name__

    def record(self) -> dict[str, Any]:
        """The fields of a failed message's output line: ``error`` (the
        :attr:`name`), ``message``, ``maybe_sent``, and the provider's
        ``status`` and ``code`` where there are any."""
        out: dict[str, Any] = {"error": self.name, "message": str(self)}
        status = getattr(self, "status", None)
        if status is not None:
            out["status"] = status
        code = getattr(self, "code", None)
        if code is not None:
            out["code"] = code
        out["maybe_sent"] = self.maybe_sent
        return out


class BadMessage(SmsError, ValueError):
    """A message that cannot be sent as given; found before it is queued.

    Args:
        reason: what is wrong, naming the bad part.
        field: which part: ``"to"``, ``"from"``, ``"body"`` or ``"message"``.
        value: the value as given (shown shortened in the message).
    """

    def __init__(self, reason: str, field: str = "message", value: object = "") -> None:
        super().__init__(reason, field, value)
        self.reason = reason
        self.field = field
        self.value = value

    def __str__(self) -> str:
        if self.value in ("", None):
            return f"{self.field}: {self.reason}"
        return f"{self.field}: {self.reason}: {_short(repr(self.value), 80)}"


class ProviderRejected(SmsError):
    """The provider refused the message (a 4xx answer other than 429, e.g.
    21211 invalid To number, 21614 To is not a mobile number, 21617 body too
    long).  Permanent: sending it again would be refused again.

    Args:
        status: the HTTP status.
        code: the provider's error code, or None if the answer had none.
        message: the provider's message (or a description of the answer).
    """

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message

    def __str__(self) -> str:
        code = "" if self.code is None else f" code {self.code}"
        return f"HTTP {self.status}{code}: {_short(self.message)}"


class AuthFailed(ProviderRejected):
    """401 or 403: the account SID or auth token is wrong, or the account may
    not do this.  Every other message will fail the same way, so it is
    *fatal*: a run stops and leaves its messages to send."""

    fatal = True
    fix = (
        "check the account SID and auth token (sms.account_sid, sms.auth_token), "
        "or the API key and its secret (sms.api_key, sms.api_secret), and that "
        "the account may send messages"
    )


SENDER_CODES = frozenset({21212, 21603, 21606, 21659})
"""Twilio codes that mean the sender (``From``) cannot be used: invalid,
missing, not SMS-capable, not the account's.  When the sender is the
recipe's own (not a row's), every message fails the same way."""

ACCOUNT_CODES = frozenset({20003, 20404})
"""Twilio codes that mean the account or its credentials are wrong
(``Authenticate``; the account's resource not found)."""


class ProviderThrottled(Throttled, SmsError):
    """429, or any answer with code 20429: too many requests.  The message was
    not accepted; the queue retries it after ``delay`` and holds its lane
    meanwhile.

    Args:
        delay: seconds to wait (Retry-After, capped, or the default).
        status: the HTTP status.
        code: the provider's error code, or None.
    """

    signal = Signal.THROTTLE

    def __init__(
        self, delay: float, status: int = 429, code: int | None = None
    ) -> None:
        what = f"HTTP {status}" + ("" if code is None else f" code {code}")
        super().__init__(delay, what)
        self.status = status
        self.code = code


class ProviderError(SmsError):
    """A 5xx answer.  Retryable; the provider may have committed the message
    before failing, so it counts as maybe sent.

    Args:
        status: the HTTP status.
        code: the provider's error code, or None.
        message: the provider's message, or a description of the answer.
    """

    maybe_sent = True

    def __init__(self, status: int, code: int | None = None, message: str = "") -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message
        self.signal = Signal.DROP if status in DROP_STATUSES else Signal.IGNORE

    def __str__(self) -> str:
        code = "" if self.code is None else f" code {self.code}"
        why = f": {_short(self.message)}" if self.message else ""
        return f"HTTP {self.status}{code}{why}"


class SmsConnectionFailed(SmsError):
    """No connection to the provider: refused, no DNS answer, no connection
    within ``connect_timeout``, or the request could not be written whole.
    The provider cannot have accepted the message.  Retryable.

    Args:
        reason: what happened.
        signal: the pace signal (``DROP``; ``IGNORE`` for a DNS failure).
    """

    signal = Signal.DROP

    def __init__(self, reason: str, signal: Signal = Signal.DROP) -> None:
        super().__init__(reason)
        self.reason = reason
        self.signal = signal

    def __str__(self) -> str:
        return self.reason


class AmbiguousSend(SmsError):
    """The request reached the provider (or may have) and no answer came back:
    the message may or may not have been accepted.  Retryable; with
    ``resend_check`` the retry first looks for the message at the provider."""

    signal = Signal.DROP
    maybe_sent = True


class SmsTimeout(AmbiguousSend):
    """No whole answer within ``timeout`` seconds of starting the request.

    Args:
        seconds: the limit that passed.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds

    def __str__(self) -> str:
        return f"no answer within {self.seconds:g}s (the message may have been sent)"


class ConnectionLost(AmbiguousSend):
    """The connection broke after the request was sent, before the answer.

    Args:
        reason: what happened.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.reason} (the message may have been sent)"


class BadResponse(SmsError):
    """A 2xx answer that does not carry a message sid (not JSON, no ``sid``).
    The provider said yes, so the message is not sent again: it is recorded
    as failed with ``maybe_sent`` True, for a person to check.

    Args:
        status: the HTTP status.
        reason: what was wrong with the answer.
    """

    maybe_sent = True

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason

    def __str__(self) -> str:
        return f"HTTP {self.status} without a message sid: {self.reason}"
