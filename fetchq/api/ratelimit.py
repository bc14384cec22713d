"""Reading a server's rate-limit announcements: pure functions, no I/O.

An API that meters its callers says how much of its quota is left on every
answer.  :func:`parse_quota` turns those headers, whichever family they come
in, into one :class:`Quota`; :func:`throttle_delay` says how long a throttled
caller should wait.  Families, tried in this order (the first one whose
*remaining* count parses wins; a malformed family is skipped, never raised
on)::

    source        headers                                   reset means
    ------------  ----------------------------------------  -----------------
    x-rate-limit  x-rate-limit-limit/-remaining/-reset      epoch seconds
                  (X / Twitter)
    x-ratelimit   X-RateLimit-Limit/-Remaining/-Reset       epoch seconds if
                  (GitHub and many others)                  >= 1e9, else delta
    ratelimit     RateLimit: limit=100, remaining=50,       delta seconds
                  reset=30 (IETF draft, dictionary form),
                  or RateLimit: "default";r=50;t=30 (later
                  drafts), with RateLimit-Policy for the
                  limit: 100;w=60 or "default";q=100;w=60
    ratelimit-    RateLimit-Limit/-Remaining/-Reset         delta seconds
    fields        (earliest IETF drafts)

**Epoch or delta.**  ``X-RateLimit-Reset`` is an epoch time at GitHub and a
number of seconds at others.  A value of at least :data:`EPOCH_THRESHOLD`
(1e9, September 2001) is an epoch time; anything smaller is seconds from now
(no real delay is 31 years long, and no real epoch time is that small).  On a
test clock that starts near 0, send ``x-rate-limit-reset`` (always epoch) or
start the clock at a realistic time.

Header names are matched without regard to case; a header sent more than
once counts by its first value (structured fields by all values, joined).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import TypeAlias

import attrs

from fetchq.http.urls import parse_retry_after

__all__ = [
    "EPOCH_THRESHOLD",
    "HeaderSource",
    "Quota",
    "header_map",
    "parse_quota",
    "reset_time",
    "throttle_delay",
]

EPOCH_THRESHOLD = 1e9
"""A reset value at least this large is an epoch time; smaller is a delay."""

HeaderSource: TypeAlias = (
    Mapping[str, str]
    | Mapping[str, bytes]
    | Iterable[tuple[str, str]]
    | Iterable[tuple[bytes, bytes]]
)
"""Response headers: a mapping or name/value pairs, text or bytes."""

_INTEGER = re.compile(r"[0-9]{1,18}")
_NUMBER = re.compile(r"[0-9]{1,18}(?:\.[0-9]+)?")


@attrs.frozen
class Quota:
    """What a response said about the caller's quota.

    Attributes:
        limit: requests allowed per window, or None when not announced.
        remaining: requests left in the current window.
        reset_at: clock time (epoch seconds) the window resets, or None.
        source: which header family it came from (``"x-rate-limit"``,
            ``"x-ratelimit"``, ``"ratelimit"``, ``"ratelimit-fields"``).
        window: the window's length in seconds, when a policy gave it.
    """

    limit: int | None
    remaining: int
    reset_at: float | None
    source: str
    window: float | None = None

    def reset_in(self, now: float) -> float | None:
        """Seconds from ``now`` to the reset (0 if past), or None."""
        if self.reset_at is None:
            return None
        return max(0.0, self.reset_at - now)


def header_map(headers: HeaderSource) -> dict[str, list[str]]:
    """Headers as ``{lower-case name: [values]}``; bytes decoded as latin-1."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    result: dict[str, list[str]] = {}
    for name, value in items:
        key = name.decode("latin-1") if isinstance(name, bytes) else str(name)
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        result.setdefault(key.strip().lower(), []).append(text)
    return result


def reset_time(value: float, now: float, *, epoch: bool | None = None) -> float:
    """The clock time a reset value means.

    Args:
        value: the header's number.
        now: the current clock time (epoch seconds).
        epoch: True if the value is an epoch time, False if a delay, None to
            decide by magnitude (at least :data:`EPOCH_THRESHOLD`: epoch).
    """
    if epoch is None:
        epoch = value >= EPOCH_THRESHOLD
    return value if epoch else now + value


def parse_quota(headers: HeaderSource, now: float) -> Quota | None:
    """The quota a response announced, or None if it announced none.

    Args:
        headers: the response headers (see :data:`HeaderSource`).
        now: the current clock time (epoch seconds), to turn delays into
            reset times.

    Returns:
        The first family (see the module's table) that has a well-formed
        remaining count; its limit and reset are None when missing or
        malformed.  None when no family has a usable remaining count.
    """
    found = header_map(headers)
    for parse in (_x_rate_limit, _x_ratelimit, _ietf_field, _ietf_fields):
        quota = parse(found, now)
        if quota is not None:
            return quota
    return None


def throttle_delay(
    headers: HeaderSource,
    now: float,
    default: float,
    *,
    margin: float = 0.0,
    cap: float = math.inf,
) -> tuple[float, str]:
    """How long to wait after a throttled answer, and where that came from.

    ``Retry-After`` wins; else the announced reset (plus ``margin`` for clock
    skew); else ``default``.  The result is capped at ``cap``.

    Returns:
        ``(seconds, basis)`` where basis is ``"retry-after"``, ``"reset"`` or
        ``"default"``.
    """
    found = header_map(headers)
    retry = found.get("retry-after")
    after = parse_retry_after(retry[0], now) if retry else None
    if after is not None:
        return min(after, cap), "retry-after"
    quota = parse_quota(headers, now)
    if quota is not None and quota.reset_at is not None:
        return min(max(0.0, quota.reset_at - now) + margin, cap), "reset"
    return min(default, cap), "default"


# ----------------------------------------------------------------------
# The families


def _first(found: Mapping[str, list[str]], name: str) -> str | None:
    values = found.get(name)
    return values[0].strip() if values else None


def _integer(text: str | None) -> int | None:
    if text is None or not _INTEGER.fullmatch(text):
        return None
    return int(text)


def _number(text: str | None) -> float | None:
    if text is None or not _NUMBER.fullmatch(text):
        return None
    return float(text)


def _prefixed(
    found: Mapping[str, list[str]],
    prefix: str,
    now: float,
    epoch: bool | None,
    source: str,
) -> Quota | None:
    remaining = _integer(_first(found, prefix + "remaining"))
    if remaining is None:
        return None
    reset = _number(_first(found, prefix + "reset"))
    return Quota(
        limit=_integer(_first(found, prefix + "limit")),
        remaining=remaining,
        reset_at=None if reset is None else reset_time(reset, now, epoch=epoch),
        source=source,
    )


def _x_rate_limit(found: Mapping[str, list[str]], now: float) -> Quota | None:
    return _prefixed(found, "x-rate-limit-", now, True, "x-rate-limit")


def _x_ratelimit(found: Mapping[str, list[str]], now: float) -> Quota | None:
    return _prefixed(found, "x-ratelimit-", now, None, "x-ratelimit")


def _ietf_fields(found: Mapping[str, list[str]], now: float) -> Quota | None:
    # RateLimit-Limit may carry policies after the number: "100, 100;w=60".
    quota = _prefixed(found, "ratelimit-", now, False, "ratelimit-fields")
    if quota is None:
        return None
    limit = quota.limit
    if limit is None:
        members = _members(", ".join(found.get("ratelimit-limit", ())))
        if members and members[0][0] is None:
            limit = _integer(members[0][1])
    policy_limit, window = _policy(found)
    return attrs.evolve(
        quota,
        limit=policy_limit if limit is None else limit,
        window=window,
    )


def _ietf_field(found: Mapping[str, list[str]], now: float) -> Quota | None:
    values = found.get("ratelimit")
    if not values:
        return None
    members = _members(", ".join(values))
    policy_limit, window = _policy(found)
    keyed = {key: value for key, value, _ in members if key is not None}
    if keyed:
        # Dictionary form: limit=100, remaining=50, reset=30
        remaining = _integer(keyed.get("remaining"))
        if remaining is None:
            return None
        limit = _integer(keyed.get("limit"))
        reset = _number(keyed.get("reset"))
        return Quota(
            limit=policy_limit if limit is None else limit,
            remaining=remaining,
            reset_at=None if reset is None else now + reset,
            source="ratelimit",
            window=window,
        )
    # List form: "policy";r=50;t=30 -- the most restrictive policy counts.
    best: Quota | None = None
    for _, name, params in members:
        remaining = _integer(params.get("r"))
        if remaining is None:
            continue
        reset = _number(params.get("t"))
        limit, length = _policy(found, name)
        quota = Quota(
            limit=limit,
            remaining=remaining,
            reset_at=None if reset is None else now + reset,
            source="ratelimit",
            window=length,
        )
        if best is None or quota.remaining < best.remaining:
            best = quota
    return best


def _policy(
    found: Mapping[str, list[str]], name: str | None = None
) -> tuple[int | None, float | None]:
    """(limit, window) from RateLimit-Policy: ``100;w=60`` (first item) or
    ``"name";q=100;w=60`` (the item called ``name``, else the first)."""
    values = found.get("ratelimit-policy")
    if not values:
        return None, None
    members = [m for m in _members(", ".join(values)) if m[0] is None]
    chosen = None
    for member in members:
        if name is not None and member[1] == name:
            chosen = member
            break
    if chosen is None:
        if not members:
            return None, None
        chosen = members[0]
    _, item, params = chosen
    limit = _integer(item) if not item.startswith('"') else _integer(params.get("q"))
    return limit, _number(params.get("w"))


_Member = tuple[str | None, str, dict[str, str]]


def _members(text: str) -> list[_Member]:
    """A tolerant reading of a structured field (RFC 8941) list or dictionary:
    ``[(key or None, value, params)]``.  A dictionary member ``key=value``
    has its key; a bare list item (``100``, ``"default"``) has None.  Quoted
    strings keep their quotes in the value, so names compare as sent."""
    members: list[_Member] = []
    for part in _split(text, ","):
        pieces = _split(part, ";")
        head = pieces[0].strip()
        if not head:
            continue
        params: dict[str, str] = {}
        for piece in pieces[1:]:
            key, _, value = piece.strip().partition("=")
            params[key.strip().lower()] = value.strip()
        key, eq, value = head.partition("=")
        if eq and not head.startswith('"'):
            members.append((key.strip().lower(), value.strip(), params))
        else:
            members.append((None, head, params))
    return members


def _split(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator`` outside double quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts
