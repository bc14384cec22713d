"""The :class:`Kind` protocol a run is built on."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from twisted.python.failure import Failure

from fetchq.errors import FetchqError

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from fetchq.inputs import InputRow
    from fetchq.job import Job
    from fetchq.queue import ResizableDispatchQueue
    from fetchq.retry import RetryPolicy
    from fetchq.store import Claimed, NewItem

__all__ = ["BadRow", "Kind", "error_fields"]


class BadRow(FetchqError, ValueError):
    """An input row that cannot become a job; recorded as failed input."""


class Kind(Protocol):
    """The part of a run that depends on the recipe's kind."""

    @property
    def job(self) -> Callable[[Any], Any]:
        """The queue's job function."""
        ...

    @property
    def retry(self) -> RetryPolicy:
        """The queue's retry policy."""
        ...

    @property
    def commit_each(self) -> bool:
        """Whether every finished job must be committed at once (not in the
        next batch): an SMS's sid, which alone prevents a second send."""
        ...

    def item(self, row: InputRow) -> NewItem:
        """The store item for a good input row.

        Raises:
            BadRow: why the row cannot be used.
        """
        ...

    def bad_record(self, row: InputRow, reason: str) -> dict[str, Any]:
        """The output record of a row that could not be used."""
        ...

    def arg(self, claimed: Claimed) -> Any:
        """The job argument for an item claimed from the store."""
        ...

    def record(self, job: Job, outcome: str) -> dict[str, Any] | list[dict[str, Any]]:
        """The output record(s) of a finished job (``ok`` or ``failed``)."""
        ...

    def follow_ups(self, job: Job) -> list[NewItem]:
        """Store items a successful job adds (an API's next page)."""
        ...

    def bind(self, queue: ResizableDispatchQueue) -> None:
        """Called once the queue exists (a kind that holds lanes keeps it)."""
        ...

    def close(self) -> Deferred[None]:
        """Release connections; fires when done."""
        ...


def error_fields(failure: Failure | None) -> dict[str, Any]:
    """``error: {name, message}`` (and ``status``) of a failed job."""
    if failure is None:
        return {"error": None}
    error = failure.value
    fields: dict[str, Any] = {
        "error": {
            "name": getattr(error, "name", type(error).__name__),
            "message": str(error),
        }
    }
    status = getattr(error, "status", None)
    if status is not None:
        fields["status"] = status
    return fields
