"""The admin's :class:`~fetchq.admin.controls.Controls` over a run on the
Redis engine (:class:`~fetchq.shared_run.SharedRun`).

Every change is written to Redis, where every worker's next claim reads it
(a worker claims at least every quarter second), so it reaches the whole
run within a second, whichever worker serves the admin:

- width, rate and pause are the run's shared limits (``configure``); every
  worker's local width follows the run's width at its next tick;
- a lane's width, rate and hold are the lane's shared ones (``set_lane``,
  ``hold_lane``, ``release_lane``);
- a stop is the run's stop (``run.stop`` in the run's meta): every worker
  lets its underway jobs finish and hands the rest back, exit 143;
- a cancel records the row as cancelled in Redis (a worker running it then
  has its own record refused); a job of this worker's is interrupted.

``status`` is the whole run's: rows by state and outcome from Redis, the
in-flight count from every worker's leases, throughput from the run's
finished rows, the limits as Redis has them.  The charts are this worker's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from fetchq.admin.controls import (
    EVERY_LANE,
    KEEP,
    AdminError,
    RunControls,
    _num,
    describe_arg,
)
from fetchq.store import when

if TYPE_CHECKING:
    from fetchq.shared_run import SharedRun

__all__ = ["OPERATOR_STOP", "SharedControls"]

OPERATOR_STOP = 143
"""The exit status of every worker after an operator's stop (as SIGTERM)."""


class SharedControls(RunControls):
    """:class:`~fetchq.admin.controls.Controls` over a SharedRun (see the
    module)."""

    engine = "redis"

    def __init__(self, run: SharedRun, *, timeline: bool = True) -> None:
        super().__init__(run, timeline=timeline)
        self.shared = run
        self._limits: dict[str, Any] = {}

    @property
    def store(self) -> Any:
        store = self.shared.store
        if store is None or getattr(self.shared, "_closed", False):
            raise AdminError("the run is not connected to Redis (yet)", 409)
        return store

    def _sample(self) -> None:
        self.watch.sample(None)
        store = self.shared.store
        if store is None or getattr(self.shared, "_closed", False):
            return

        def keep(results: list[Any]) -> None:
            counts, limits = results
            self.watch._samples.pop()  # this worker's count: the run's instead
            self.watch.sample(counts.finished)
            self._last_rows = {
                "pending": counts.pending,
                "claimed": counts.claimed,
                "done": counts.finished,
            }
            self._limits = limits

        both = defer.gatherResults([store.counts(), store.limits()], consumeErrors=True)
        both.addCallbacks(keep, lambda _: None)

    def gauges(self) -> dict[str, Any]:
        out = super().gauges()
        limits = self._limits
        if limits:
            out["width"] = limits.get("width") or out["width"]
            out["rate"] = limits.get("rate")
            out["paused"] = 1 if limits.get("paused") else 0
        if self._last_rows:
            out["in_flight"] = self._last_rows["claimed"]
            out["pending"] = self._last_rows["pending"]
        return out

    # -- reading -------------------------------------------------------------

    def status(self) -> Any:
        store = self.store
        got = defer.gatherResults(
            [store.counts(), store.limits(), store.lanes_page(0, 20, "held")],
            consumeErrors=True,
        )

        def make(results: list[Any]) -> dict[str, Any]:
            counts, limits, held = results
            out = self._run_status(counts)
            local_width = self.queue.width
            out["worker"] = {
                "id": store.worker,
                "width": local_width,
                "in_flight": out["in_flight"],
                "outcomes": out["outcomes"],
            }
            out["outcomes"] = dict(counts.done)
            out["done"] = counts.finished
            out["width"] = limits.get("width")
            out["rate"] = limits.get("rate")
            out["burst"] = limits.get("burst")
            out["lane_width"] = limits.get("lane_width")
            out["lane_rate"] = limits.get("lane_rate")
            out["in_flight"] = counts.claimed
            out["pending"] = counts.pending
            paused = bool(limits.get("paused"))
            if out["state"] == "running" and paused:
                out["state"] = "paused"
            out["holds"] = [
                {"lane": lane["key"], "until": lane["held_until"]}
                for lane in held["lanes"]
                if lane["held_until"]
            ]
            out["run"] = self.shared.recipe.state.run
            return out

        return got.addCallback(make).addErrback(_unwrap)

    def lanes(self, limit: int, cursor: int, sort: str) -> Any:
        if sort not in ("backlog", "name"):
            raise AdminError(f"sort must be backlog or name, not {sort!r}")
        store = self.store

        def make(page: dict[str, Any]) -> dict[str, Any]:
            rows = [
                {
                    "lane": lane["key"],
                    "pending": lane["pending"],
                    "underway": lane["in_flight"],
                    "width": lane["width"],
                    "rate": lane["rate"],
                    "held_until": lane["held_until"],
                }
                for lane in page["lanes"]
            ]
            end = cursor + len(rows)
            return {
                "lanes": rows,
                "total": page["total"],
                "cut": page["cut"],
                "next": end if end < page["total"] else None,
            }

        return store.lanes_page(cursor, limit, sort).addCallback(make)

    def jobs(self, state: str, lane: str | None, limit: int, cursor: str | None) -> Any:
        from fetchq.store.redis import ALL_LANES

        store = self.store
        try:
            offset = int(cursor or 0)
        except ValueError:
            raise AdminError(f"bad cursor {cursor!r}") from None
        if state == "underway":

            def leased(reply: tuple[int, list[Any]]) -> dict[str, Any]:
                total, rows = reply
                jobs = [
                    {
                        "id": item.id,
                        "lane": item.key,
                        "priority": item.priority,
                        "state": "underway",
                        "attempts": item.attempts,
                        "what": describe_arg(item.arg),
                        "worker": worker,
                        "lease_until": deadline,
                    }
                    for item, deadline, worker in rows
                    if lane is None or item.key == lane
                ]
                end = offset + len(rows)
                return {"jobs": jobs, "next": str(end) if end < total else None}

            return store.leased_page(offset, limit).addCallback(leased)
        if state != "pending":
            raise AdminError(f"state must be pending or underway, not {state!r}")

        def pending(reply: tuple[list[Any], bool]) -> dict[str, Any]:
            items, more = reply
            jobs = [
                {
                    "id": item.id,
                    "lane": item.key,
                    "priority": item.priority,
                    "state": "pending",
                    "attempts": item.attempts,
                    "what": describe_arg(item.arg),
                }
                for item in items
            ]
            return {"jobs": jobs, "next": str(offset + len(items)) if more else None}

        try:
            got = store.pending_page(ALL_LANES if lane is None else lane, offset, limit)
        except ValueError as e:
            raise AdminError(str(e)) from None
        return got.addCallback(pending)

    # -- changing ------------------------------------------------------------

    def set_width(self, width: int) -> Any:
        old = self._limits.get("width")
        done = self.store.configure(width=width)
        self.shared.follow_width(width)
        self._limits["width"] = width
        return done.addCallback(lambda _: {"width": width, "was": old})

    def set_rate(self, rate: float | None, burst: int | None) -> Any:
        old = self._limits.get("rate")
        limits: dict[str, Any] = {"rate": rate}
        if burst is not None:
            limits["burst"] = burst
        self._limits["rate"] = rate
        done = self.store.configure(**limits)
        return done.addCallback(lambda _: {"rate": rate, "burst": burst, "was": old})

    def set_lane(
        self,
        key: str,
        width: Any = KEEP,
        rate: Any = KEEP,
        hold: float | None = None,
        release: bool = False,
    ) -> Any:
        store = self.store
        out: dict[str, Any] = {"lane": key}
        steps: list[Any] = []
        if key == EVERY_LANE:
            if hold is not None or release or "default" in (width, rate):
                raise AdminError('"*" takes a width or rate (the lanes\' default)')
            limits = {}
            if width is not KEEP:
                limits["lane_width"] = out["width"] = width
            if rate is not KEEP:
                limits["lane_rate"] = out["rate"] = rate
            return store.configure(**limits).addCallback(lambda _: out)
        if width is not KEEP or rate is not KEEP:
            steps.append(store.set_lane(key, width=width, rate=rate))
            if width is not KEEP:
                out["width"] = width
            if rate is not KEEP:
                out["rate"] = rate
        if hold is not None:
            steps.append(store.hold_lane(key, hold))
            self.queue.hold(hold, key)  # this worker's jobs of it go back too
            out["held_for"] = _num(hold)
        if release:

            def released(was: bool) -> None:
                out["released"] = was

            steps.append(store.release_lane(key).addCallback(released))
            self.queue.release(key)
        done = defer.gatherResults(steps, consumeErrors=True)
        return done.addCallback(lambda _: out).addErrback(_unwrap)

    def pause(self) -> Any:
        self._limits["paused"] = True
        done = self.store.configure(paused=True)
        return done.addCallback(lambda _: {"state": "paused"})

    def resume(self) -> Any:
        self._limits["paused"] = False
        done = self.store.configure(paused=False)
        return done.addCallback(lambda _: {"state": "running"})

    def cancel(self, job_id: str) -> Any:
        self.store  # noqa: B018 (raises if not connected)
        return super().cancel(job_id)

    def reprioritize(self, job_id: str, priority: float) -> Any:
        if self._find(job_id) is not None:
            return super().reprioritize(job_id, priority)

        def done(moved: bool) -> dict[str, Any]:
            if not moved:
                raise AdminError(f"row {job_id!r} is not pending", 409)
            return {"id": job_id, "priority": priority}

        got = when(self.store.reprioritize(job_id, priority), done)
        return got.addErrback(_missing, job_id)

    def stop(self) -> Any:
        from fetchq.shared_run import META_STOP

        stop = {"code": OPERATOR_STOP, "message": "stopped by an operator"}
        done = self.store.meta_set(META_STOP, stop)
        return done.addCallback(lambda _: {"state": "stopping"})


def _unwrap(failure: Any) -> Any:
    """A failure from ``gatherResults``: the first error itself."""
    if isinstance(failure.value, defer.FirstError):
        return failure.value.subFailure
    return failure


def _missing(failure: Any, job_id: str) -> Any:
    failure.trap(KeyError)
    raise AdminError(f"no row {job_id!r}", 404)
