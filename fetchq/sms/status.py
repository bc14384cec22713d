"""A sent message's delivery: what the provider says became of it.

A 201 only says the provider *accepted* a message (``queued``, or
``accepted`` for a messaging service).  What happened next is read back
with ``GET .../Messages/{sid}.json`` (:meth:`fetchq.sms.SmsSender.delivery`),
as the status moves::

    accepted -> queued -> sending -> sent -> delivered
                                          -> undelivered (error_code 300xx)
                                  -> failed (error_code)

:data:`FINAL_STATUSES` do not change any more; any other status is checked
again later.  ``sent`` is final in practice where the carrier sends no
delivery receipts (some countries, some landlines): a check that waits for
more must give up at some point (``fetchq sms status --wait``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from fetchq.retry import RetryPolicy
from fetchq.sms.errors import AmbiguousSend, ProviderError, SmsConnectionFailed

__all__ = ["FINAL_STATUSES", "Delivery", "delivery_retry_policy", "is_final"]

FINAL_STATUSES = frozenset({"delivered", "undelivered", "failed", "read", "canceled"})
"""Statuses a message does not leave (``read``: WhatsApp and RCS;
``canceled``: a scheduled message cancelled before it went)."""


def is_final(delivery: object) -> bool:
    """Whether a record's ``delivery`` field says its status is final (a
    final status, or ``not_found``: the provider has no such message)."""
    return isinstance(delivery, Mapping) and delivery.get("final") is True


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _code(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


@attrs.frozen
class Delivery:
    """A message's status as the provider reported it.

    Attributes:
        sid: the message's sid.
        status: the provider's status (``delivered``, ``undelivered``,
            ``failed``, ``sent``, ``sending``, ``queued``...).
        error_code: the provider's error code (``30003``...), if any.
        error_message: its message, if the provider gave one.
        date_sent: when it left the provider (RFC 2822 text), if it did.
        date_updated: when its status last changed (RFC 2822 text).
        price: what it cost (text, with ``price_unit``), once known.
        price_unit: the price's currency.
        checked_at: when it was read (epoch seconds, wall clock).
    """

    sid: str
    status: str
    error_code: int | None = None
    error_message: str | None = None
    date_sent: str | None = None
    date_updated: str | None = None
    price: str | None = None
    price_unit: str | None = None
    checked_at: float | None = None

    @property
    def final(self) -> bool:
        """Whether the status will not change any more."""
        return self.status in FINAL_STATUSES

    @classmethod
    def from_json(
        cls, doc: Mapping[str, Any], sid: str, checked_at: float | None = None
    ) -> Delivery:
        """The delivery a message resource (the provider's JSON) shows."""
        return cls(
            sid=_text(doc.get("sid")) or sid,
            status=_text(doc.get("status")) or "unknown",
            error_code=_code(doc.get("error_code")),
            error_message=_text(doc.get("error_message")),
            date_sent=_text(doc.get("date_sent")),
            date_updated=_text(doc.get("date_updated")),
            price=_text(doc.get("price")),
            price_unit=_text(doc.get("price_unit")),
            checked_at=checked_at,
        )

    def record(self) -> dict[str, Any]:
        """The record's ``delivery`` field (JSON-ready)."""
        return {
            "status": self.status,
            "final": self.final,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "date_sent": self.date_sent,
            "date_updated": self.date_updated,
            "price": self.price,
            "price_unit": self.price_unit,
            "checked_at": (
                None if self.checked_at is None else round(self.checked_at, 3)
            ),
        }


def delivery_retry_policy(
    max_attempts: int = 5, base_delay: float = 1.0, max_delay: float = 60.0
) -> RetryPolicy:
    """A retry policy for reading statuses: a read changes nothing, so
    timeouts, lost connections and 5xx answers all retry with backoff (and
    throttles after the provider's delay); 4xx answers fail at once."""
    return RetryPolicy(
        max_attempts=max_attempts,
        base_delay=base_delay,
        max_delay=max_delay,
        retry_on=(SmsConnectionFailed, AmbiguousSend, ProviderError),
    )
