"""Argument checks shared by the stores: misuse fails at the call, with a
message that names the bad value."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["check_ack", "check_claim", "check_id", "check_limit", "check_time"]


def check_time(value: float, what: str = "now") -> None:
    """Refuse a NaN time (every comparison with it would be false)."""
    if value != value:
        raise ValueError(f"{what} must not be NaN")


def check_limit(limit: object, what: str = "limit") -> None:
    """Refuse anything but a non-negative int."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"{what} must be a non-negative integer, not {limit!r}")


def check_claim(
    limit: int, now: float, lease: float, per_lane: int | None = None
) -> None:
    """Check ``claim()``'s arguments."""
    check_limit(limit)
    if per_lane is not None and (
        isinstance(per_lane, bool) or not isinstance(per_lane, int) or per_lane < 1
    ):
        raise ValueError(f"per_lane must be an integer >= 1 or None, not {per_lane!r}")
    check_time(now)
    if not lease > 0:
        raise ValueError(f"lease must be > 0 seconds, not {lease!r}")
    if math.isinf(now):
        raise ValueError(f"now must be finite, not {now!r}")


def check_ack(outcome: object, record: object, now: float) -> None:
    """Check ``ack()``'s arguments."""
    if not isinstance(outcome, str) or not outcome:
        raise ValueError(f"outcome must be a non-empty str, not {outcome!r}")
    if not (
        record is None
        or isinstance(record, dict)
        or (isinstance(record, list) and all(isinstance(r, dict) for r in record))
    ):
        raise TypeError(
            f"record must be a dict, a list of dicts or None, not {record!r}"
        )
    check_time(now)


def check_id(item_id: Any) -> None:
    """Refuse an id that is not a str (it could never match an item)."""
    if not isinstance(item_id, str):
        raise TypeError(f"item id must be a str, not {item_id!r}")
