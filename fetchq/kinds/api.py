"""``kind: api``: one API call per input row and page, lanes by endpoint.

A row's fields fill the recipe's path, query and body templates.  The caller
keeps each endpoint's announced quota and holds the endpoint's lane until
the reset, so a server that announces its quota is never overrun.  When a
page names a next page, the next page is added to the store in the same
commit as the page's own record, so a crash can neither lose nor repeat it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from fetchq.api import ApiCaller, ApiConfig, BadRequestRow, api_retry_policy
from fetchq.inputs import InputRow
from fetchq.job import Job
from fetchq.kinds.base import BadRow, error_fields
from fetchq.queue import ResizableDispatchQueue
from fetchq.retry import RetryPolicy
from fetchq.store import Claimed, NewItem

__all__ = ["ApiKind"]


class ApiKind:
    """Calls an API once per row (and per page).

    Args:
        config: the API, its templates and pagination.
        reactor: time and sockets.
        retry: the retry policy (default :func:`~fetchq.api.api_retry_policy`).
        pool_size: persistent connections.
        http: a treq-like client (tests pass a ``StubTreq``).
    """

    commit_each = False

    def __init__(
        self,
        config: ApiConfig,
        reactor: Any,
        *,
        retry: RetryPolicy | None = None,
        pool_size: int = 10,
        http: Any = None,
    ) -> None:
        self.config = config
        self._reactor = reactor
        self.caller = ApiCaller(config, reactor, http, pool_size=pool_size)
        self.retry = api_retry_policy() if retry is None else retry

    @property
    def job(self) -> ApiCaller:
        return self.caller

    def item(self, row: InputRow) -> NewItem:
        try:
            request = self.caller.first_page(row.extra, id=row.id)
        except BadRequestRow as e:
            raise BadRow(str(e)) from None
        return NewItem(
            row.id, request.to_json(), row.priority, self.caller.lane_key(request)
        )

    def bad_record(self, row: InputRow, reason: str) -> dict[str, Any]:
        return {
            "id": row.id,
            "page": 1,
            "outcome": "failed",
            "attempts": 0,
            "error": {"name": "BadInput", "message": reason},
        }

    def arg(self, claimed: Claimed) -> Any:
        return claimed.arg

    def record(self, job: Job, outcome: str) -> list[dict[str, Any]]:
        page = job.result
        if page is not None:
            return [
                {**record, "outcome": outcome, "attempts": job.attempts}
                for record in page.records()
            ]
        arg = job.arg
        record: dict[str, Any] = {
            "id": arg.get("id"),
            "page": arg.get("page", 1),
            "outcome": outcome,
            "attempts": job.attempts,
        }
        record.update(error_fields(job.failure))
        return [record]

    def follow_ups(self, job: Job) -> list[NewItem]:
        page = job.result
        following = None if page is None else page.next_request()
        if following is None:
            return []
        root = str(following.id if following.id is not None else job.id)
        return [
            NewItem(
                f"{root}#page{following.page}",
                following.to_json(),
                job.priority,
                self.caller.lane_key(following),
            )
        ]

    def bind(self, queue: ResizableDispatchQueue) -> None:
        self.caller.bind(queue)

    def share(self, store: Any) -> None:
        """A run on Redis: the endpoint's quota budget is every worker's
        (:class:`fetchq.shared.quota.RedisBudget`)."""
        from fetchq.shared.quota import RedisBudget

        self.caller.use_budget(RedisBudget(store, self.config, self._reactor))

    def close(self) -> Deferred[None]:
        return self.caller.close()
