"""``kind: sms``: one message per input row, lanes by sender.

A row's fields give the recipient, the body (or fill the recipe's body
template) and optionally the sender.  Rows that fail the checks (not E.164,
an empty or too long body, no sender) are recorded as failed input and never
sent.  Each sent message's sid is committed the moment its job completes
(``commit_each``): after a crash, only a message the provider accepted in
the moment before that commit can be sent again, and with ``resend_check``
the sender first asks the provider's message list whether it was (see
:mod:`fetchq.sms`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred

from fetchq.inputs import InputRow
from fetchq.job import Job
from fetchq.kinds.base import BadRow, error_fields
from fetchq.queue import ResizableDispatchQueue
from fetchq.retry import RetryPolicy
from fetchq.sms import (
    BadMessage,
    Message,
    SmsConfig,
    SmsSender,
    check_message,
    sms_retry_policy,
)
from fetchq.store import Claimed, NewItem

__all__ = ["SmsKind", "row_message"]


def row_message(row: Mapping[str, Any], id: str | None = None) -> Message:
    """The message of a row with ``to``, ``body`` and optionally ``from``
    fields (a recipe builds its own from its field names and body template).

    Raises:
        BadMessage: for a row without a recipient or a body.
    """
    for name in ("to", "body"):
        if row.get(name) in (None, ""):
            raise BadMessage(f"the row has no {name!r} field", name)
    return Message(to=row["to"], body=row["body"], from_=row.get("from") or None, id=id)


class SmsKind:
    """Sends one SMS per row.

    Args:
        config: the provider account and limits.
        reactor: time and sockets.
        message: builds the (unchecked) message of a row's fields and id;
            a recipe's is :meth:`~fetchq.recipe.SmsRecipe.message`.
        to_field: the row field named in a bad row's record.
        retry: the retry policy (default :func:`~fetchq.sms.sms_retry_policy`).
        pool_size: persistent connections to the provider.
        first_send_at: a callable giving the wall-clock time (epoch seconds)
            the run first sent anything; a message claimed again after a
            crash may have been accepted since then.
        http: a treq-like client (tests pass a ``StubTreq``).
    """

    commit_each = True

    def __init__(
        self,
        config: SmsConfig,
        reactor: Any,
        *,
        message: Callable[[Mapping[str, Any], str | None], Message] = row_message,
        to_field: str = "to",
        retry: RetryPolicy | None = None,
        pool_size: int = 10,
        first_send_at: Any = None,
        http: Any = None,
    ) -> None:
        self.config = config
        self.sender = SmsSender(config, reactor, http, pool_size=pool_size)
        self._message = message
        self._to_field = to_field
        self.retry = sms_retry_policy() if retry is None else retry
        self._first_send_at = first_send_at

    @property
    def job(self) -> SmsSender:
        return self.sender

    def message(self, row: InputRow) -> Message:
        """The checked message of a row.

        Raises:
            BadRow: what is wrong with it.
        """
        try:
            return check_message(self._message(row.extra, row.id), self.config)
        except BadMessage as e:
            raise BadRow(str(e)) from None

    def item(self, row: InputRow) -> NewItem:
        message = self.message(row)
        return NewItem(
            row.id, message.to_json(), row.priority, self.sender.lane_key(message)
        )

    def bad_record(self, row: InputRow, reason: str) -> dict[str, Any]:
        return {
            "id": row.id,
            "to": row.extra.get(self._to_field),
            "outcome": "failed",
            "attempts": 0,
            "error": {"name": "BadInput", "message": reason},
            "maybe_sent": False,
        }

    def arg(self, claimed: Claimed) -> Any:
        if claimed.attempts > 1 and self._first_send_at is not None:
            # Claimed before, by a run that stopped without a record of it:
            # it may have been accepted, at the earliest when sending began.
            since = self._first_send_at()
            if since is not None:
                return {**claimed.arg, "unsure_since": since}
        return claimed.arg

    def record(self, job: Job, outcome: str) -> dict[str, Any]:
        result = job.result
        if result is not None:
            return {**result.record(), "outcome": outcome, "attempts": job.attempts}
        arg = job.arg
        record: dict[str, Any] = {
            "id": job.id,
            "to": arg.get("to"),
            "from": arg.get("from"),
            "outcome": outcome,
            "attempts": job.attempts,
        }
        failure = job.failure
        error: Any = None if failure is None else failure.value
        if error is not None and callable(getattr(error, "record", None)):
            fields = error.record()
            record["error"] = {
                "name": fields.pop("error"),
                "message": fields.pop("message"),
            }
            record.update(fields)
        else:
            record.update(error_fields(failure))
            record["maybe_sent"] = arg.get("unsure_since") is not None
        return record

    def follow_ups(self, job: Job) -> list[NewItem]:
        return []

    def bind(self, queue: ResizableDispatchQueue) -> None:
        pass

    def close(self) -> Deferred[None]:
        return self.sender.close()
