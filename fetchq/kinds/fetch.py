"""``kind: fetch``: one URL per input row, lanes by host.

With ``fetch.robots: obey``, a site's ``Crawl-delay`` (or ``Request-rate``)
becomes its lane's rate when it is slower than the recipe's per-host rate
(never faster).  The fetcher's warnings (certificate checks off) are the
kind's, which a run shows at its start and in its summary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred

from fetchq.fetch import BadURL, FetchConfig, Fetcher, fetch_retry_policy
from fetchq.http.urls import checked_host_key
from fetchq.inputs import InputRow
from fetchq.job import Job
from fetchq.kinds.base import BadRow, error_fields
from fetchq.queue import ResizableDispatchQueue
from fetchq.retry import RetryPolicy
from fetchq.store import Claimed, NewItem

__all__ = ["FetchKind"]


class FetchKind:
    """Fetches the URL of each row.

    Args:
        config: how to fetch and what the answers mean.
        reactor: time and sockets.
        retry: the retry policy (default :func:`~fetchq.fetch.fetch_retry_policy`).
        pool_size: persistent connections (the width, or the adaptive
            controller's ``max_width``).
    """

    commit_each = False

    def __init__(
        self,
        config: FetchConfig,
        reactor: Any,
        *,
        retry: RetryPolicy | None = None,
        pool_size: int = 10,
    ) -> None:
        self.fetcher = Fetcher(config, reactor, pool_size=pool_size)
        self.retry = fetch_retry_policy() if retry is None else retry
        self.warnings: list[str] = list(self.fetcher.warnings)
        self._queue: ResizableDispatchQueue | None = None
        self._paced: dict[str, float] = {}  # lane -> rate robots.txt set
        self.share_lane_rate: Callable[[str, float], object] | None = None
        """Also told each rate robots.txt sets (a shared run gives it to
        every worker through its store)."""

    @property
    def job(self) -> Fetcher:
        return self.fetcher

    def item(self, row: InputRow) -> NewItem:
        try:
            key = checked_host_key(row.url)  # plain URLs skip hyperlink
        except BadURL as e:
            raise BadRow(str(e)) from None
        # Only str values when there is no extra: CPython's collector then
        # leaves the dict alone (it holds no container).
        arg: dict[str, Any] = {"url": row.url, "id": row.id}
        if row.extra:
            arg["extra"] = row.extra
        return NewItem(row.id, arg, row.priority, key)

    def bad_record(self, row: InputRow, reason: str) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": row.id,
            "url": row.url,
            "outcome": "failed",
            "attempts": 0,
            "error": {"name": "BadInput", "message": reason},
        }
        if row.extra:
            record["extra"] = row.extra
        return record

    def arg(self, claimed: Claimed) -> Any:
        return claimed.arg

    def record(self, job: Job, outcome: str) -> dict[str, Any]:
        arg = job.arg
        latency = job.latency
        elapsed = None if latency is None else round(latency, 6)
        result = job.result
        record: dict[str, Any]
        if result is not None:
            record = {
                "id": job.id,
                "url": arg["url"],
                "outcome": outcome,
                "attempts": job.attempts,
                "elapsed": elapsed,
                "final_url": result.final_url,
                "status": result.status,
                "bytes": result.bytes,
                "content_type": result.content_type,
                "sha256": result.sha256,
            }
            if result.body_path is not None:
                record["body_path"] = result.body_path
        else:
            record = {
                "id": job.id,
                "url": arg["url"],
                "outcome": outcome,
                "attempts": job.attempts,
                "elapsed": elapsed,
            }
            record.update(error_fields(job.failure))
        extra = arg.get("extra")
        if extra:
            record["extra"] = extra
        return record

    def follow_ups(self, job: Job) -> list[NewItem]:
        return []

    def bind(self, queue: ResizableDispatchQueue) -> None:
        if self.fetcher.robots is not None:
            self._queue = queue
            self.fetcher.on_robots_rate = self.robots_rate

    def robots_rate(self, key: str, rate: float) -> None:
        """A site's robots.txt asks for at most ``rate`` requests per second:
        its lane gets that rate if it is slower than the lane's now."""
        queue = self._queue
        if queue is None:
            return
        current = self._paced.get(key, queue.lane_rate)
        if current is not None and current <= rate:
            return
        self._paced[key] = rate
        queue.set_lane_rate(key, rate)
        if self.share_lane_rate is not None:
            self.share_lane_rate(key, rate)

    def close(self) -> Deferred[None]:
        return self.fetcher.close()
