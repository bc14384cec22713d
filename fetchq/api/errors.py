"""How an API call can end other than with a page: one named class per outcome.

::

    FetchqError                          fetchq's root (fetchq.errors)
    ├── ApiError                         base of every API outcome below
    │   ├── BadRequestRow (ValueError)   a row that cannot fill the request
    │   ├── ApiStatusError               a status that is not ok: 4xx, permanent
    │   │   ├── ApiAuthFailed            401, or 403 that is no rate limit: fatal
    │   │   └── ApiServerError           a 5xx: retried with backoff
    │   ├── ApiBadResponse               an ok answer whose body is not JSON
    │   ├── ApiTimeout                   no response, or no whole body, in time
    │   ├── ApiConnectionFailed          refused, reset, lost, no such host
    │   ├── ApiThrottled (Throttled)     429, or a secondary-limit 403: the
    │   │                                server refused; the lane is held
    │   └── QuotaExhausted (Throttled)   *not sent*: the announced quota is
    │                                    spent until its reset; the lane is held
    └── RetryAfter ── Throttled          (fetchq.errors)

Every class has a stable :attr:`ApiError.name` (its class name) for output
records, a short message, and the :class:`~fetchq.control.Signal` an adaptive
controller reads (``error.signal``):

- ``ApiThrottled``: THROTTLE -- the server said "too many".
- ``ApiTimeout``, ``ApiConnectionFailed``, ``ApiServerError`` for 503/504:
  DROP.
- ``QuotaExhausted``: IGNORE.  It is fetchq pacing itself by the quota the
  server announced, not a refusal; counting it as a drop would shrink the
  width for nothing (the quota, not the width, sets the pace).
- Everything else: IGNORE (the request's own fault).

``ApiThrottled`` and ``QuotaExhausted`` are both :class:`fetchq.Throttled`, so
the queue holds the job's lane for ``delay`` and runs the job again then; the
queue reports both attempts with the outcome ``"throttled"``.  Only
``ApiThrottled`` stands for an answer from the server (``status`` 429 or
403); ``QuotaExhausted`` has no status, because no request was sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fetchq.control.signals import Signal
from fetchq.errors import FetchqError, Throttled

if TYPE_CHECKING:
    from fetchq.api.ratelimit import Quota

__all__ = [
    "ApiAuthFailed",
    "ApiBadResponse",
    "ApiConnectionFailed",
    "ApiError",
    "ApiServerError",
    "ApiStatusError",
    "ApiThrottled",
    "ApiTimeout",
    "BadRequestRow",
    "QuotaExhausted",
]

DROP_STATUSES = frozenset({503, 504})
"""Server-error statuses that mean the server is overloaded."""


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ApiError(FetchqError):
    """Base class of every way an API call can fail."""

    signal: Signal = Signal.IGNORE

    @property
    def name(self) -> str:
        """The class name, stable across releases, for output records."""
        return type(self).__name__


class BadRequestRow(ApiError, ValueError):
    """An input row that cannot fill the request: a field the path, the
    query or the body needs is missing, or its value does not fit.

    Args:
        reason: what is wrong, naming the field and where it was needed.
        field: the field's name, or None.
    """

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason, field)
        self.reason = reason
        self.field = field

    def __str__(self) -> str:
        return self.reason


class ApiStatusError(ApiError):
    """The API answered with a status that is neither ok nor a throttle (a
    4xx: the request itself is wrong, so it is not retried).

    Args:
        status: the HTTP status code.
        detail: what the body said (X's ``detail``, GitHub's ``message``).
    """

    def __init__(self, status: int, detail: str = "") -> None:
        super().__init__(status, detail)
        self.status = status
        self.detail = _short(detail)

    def __str__(self) -> str:
        return (
            f"HTTP {self.status}: {self.detail}"
            if self.detail
            else f"HTTP {self.status}"
        )


class ApiAuthFailed(ApiStatusError):
    """401, or a 403 that is no rate limit: the token is wrong, expired or
    may not call this endpoint.  Every other call fails the same way, so it
    is *fatal*: a run stops and leaves its calls to do."""

    fatal = True
    fix = "check the token (api.token) and what it may call"


class ApiServerError(ApiStatusError):
    """A 5xx answer: retried with backoff by
    :func:`~fetchq.api.api_retry_policy`.  503 and 504 are drops."""

    def __init__(self, status: int, detail: str = "") -> None:
        super().__init__(status, detail)
        self.signal = Signal.DROP if status in DROP_STATUSES else Signal.IGNORE


class ApiBadResponse(ApiError):
    """An ok answer whose body could not be used: not JSON, not UTF-8, too
    large, or cut short.

    Args:
        reason: what was wrong with it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class ApiTimeout(ApiError):
    """A deadline passed.  Retried with backoff.

    Args:
        seconds: the limit that was exceeded.
        phase: ``"response"`` (no headers in time), ``"body"`` or
            ``"request"`` (the whole call, ``timeout``).
    """

    signal = Signal.DROP

    def __init__(self, seconds: float, phase: str = "response") -> None:
        super().__init__(seconds, phase)
        self.seconds = seconds
        self.phase = phase

    def __str__(self) -> str:
        return f"{self.phase} timed out after {self.seconds:g}s"


class ApiConnectionFailed(ApiError):
    """The connection could not be made or broke before the answer ended.
    Retried with backoff.

    Args:
        reason: what happened, in a few words.
    """

    signal = Signal.DROP

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class ApiThrottled(Throttled, ApiError):
    """The API refused the call for its rate: a 429, or a GitHub-style
    secondary limit (a 403 with Retry-After, or with a spent quota and a
    reset).  The queue holds the endpoint's lane for ``delay`` and retries.

    Args:
        status: the HTTP status (429 or 403).
        delay: seconds to wait: Retry-After, else the announced reset (plus
            the caller's margin), else the configured default; capped.
        basis: where ``delay`` came from: ``"retry-after"``, ``"reset"`` or
            ``"default"``.
        quota: the quota the answer announced, if any.
    """

    signal = Signal.THROTTLE

    def __init__(
        self,
        status: int,
        delay: float,
        basis: str = "default",
        quota: Quota | None = None,
    ) -> None:
        super().__init__(delay, f"HTTP {status}, wait from {basis}")
        self.status = status
        self.basis = basis
        self.quota = quota


class QuotaExhausted(Throttled, ApiError):
    """Raised *before sending*: the quota the endpoint announced is spent
    (it announced ``remaining: 0``, or no answer is still to come that
    could show ``remaining`` minus the requests in flight above 0) until its
    reset.  No
    request was made; the queue holds the lane until the reset and runs the
    job again then.

    This attempt counts in ``job.attempts`` like any other (the queue cannot
    tell), so give :func:`~fetchq.api.api_retry_policy` room for it; it is
    not a 429: it has no ``status`` and its signal is IGNORE.

    Args:
        endpoint: the endpoint's lane key.
        delay: seconds until the reset, plus the caller's margin.
        quota: the quota last announced, if any.
    """

    signal = Signal.IGNORE
    status = None

    def __init__(self, endpoint: str, delay: float, quota: Quota | None = None) -> None:
        super().__init__(delay, f"quota of {endpoint} spent; not sent")
        self.endpoint = endpoint
        self.quota = quota
