"""The one interface the admin server talks to, and its local implementation.

The server (:mod:`fetchq.admin.server`) never touches a queue or a store: it
calls a :class:`Controls`, which answers with plain JSON-ready dicts (or
Deferreds of them) and changes things only through public methods:

- :class:`QueueControls` over any :class:`~fetchq.queue.ResizableDispatchQueue`
  (a program's queue, the SMS web form's);
- :class:`RunControls` over a ``fetchq run`` on a local state: the queue plus
  the run's store (whole-run counts, rows waiting in the store) and its clean
  stop;
- :class:`~fetchq.admin.shared.SharedControls` over a run on the Redis engine,
  where every change goes to Redis for every worker.

Misuse (a bad value, an unknown job or lane) raises :class:`AdminError`
with the HTTP status it stands for.
"""

from __future__ import annotations

import math
import signal
from typing import TYPE_CHECKING, Any, Protocol, cast

from twisted.internet import defer, task
from twisted.logger import Logger

from fetchq.admin.watch import Watch
from fetchq.errors import FetchqError
from fetchq.job import Job, JobState
from fetchq.report.timeline import Timeline
from fetchq.store import when

if TYPE_CHECKING:
    from fetchq.control import AdaptiveController
    from fetchq.queue import ResizableDispatchQueue
    from fetchq.run import Run

__all__ = [
    "EVERY_LANE",
    "KEEP",
    "AdminError",
    "Controls",
    "QueueControls",
    "RunControls",
    "describe_arg",
    "job_handle",
]

log = Logger(namespace="fetchq.admin")

KEEP: Any = "keep"
"""A lane setting left as it is (``set_lane(key, width=KEEP)``)."""

EVERY_LANE = "*"
"""The lane key that means every lane: its width and rate are the default
of lanes without their own, its hold holds the whole queue."""

_DEFAULT_PAGE = 50
MAX_PAGE = 500
"""Most jobs or lanes one answer lists."""


class AdminError(FetchqError, ValueError):
    """An admin request that cannot be done: ``status`` is the HTTP status
    (400 a bad value, 404 no such job or lane, 409 not possible now)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Controls(Protocol):
    """What the admin server can ask and do.  Every method may return a
    Deferred (a Redis-backed run answers over the network).

    ``cause`` is set by the server around each change (``"admin"``), so the
    structured log can say why a width or rate moved.
    """

    engine: str
    name: str
    cause: str | None
    timeline: Timeline | None

    def start(self) -> None:
        """Begin sampling (throughput); the server calls it when it listens."""

    def close(self) -> None:
        """Stop sampling and observing."""

    def status(self) -> Any:
        """Counts, width, rate, in flight, throughput, controller, holds."""

    def lanes(self, limit: int, cursor: int, sort: str) -> Any:
        """A page of lanes, by ``backlog`` (most first) or ``name``."""

    def jobs(self, state: str, lane: str | None, limit: int, cursor: str | None) -> Any:
        """A page of ``pending`` or ``underway`` jobs, in dispatch order."""

    def set_width(self, width: int) -> Any:
        """The width (jobs underway at once; run-wide on Redis)."""

    def set_rate(self, rate: float | None, burst: int | None) -> Any:
        """The launch rate per second (None: unlimited)."""

    def set_lane(
        self,
        key: str,
        width: Any = KEEP,
        rate: Any = KEEP,
        hold: float | None = None,
        release: bool = False,
    ) -> Any:
        """A lane's own width or rate (None: no limit; ``"default"``: back to
        the default), a hold of ``hold`` seconds, or the end of its hold."""

    def pause(self) -> Any:
        """Launch nothing more until ``resume()``."""

    def resume(self) -> Any:
        """Launch again."""

    def cancel(self, job_id: str) -> Any:
        """Cancel one job (pending or underway)."""

    def reprioritize(self, job_id: str, priority: float) -> Any:
        """Give a pending job a new priority."""

    def controller(
        self, attach: bool | None, min_width: int | None, max_width: int | None
    ) -> Any:
        """Attach or detach the adaptive controller, or change its range."""

    def stop(self) -> Any:
        """A clean stop, as SIGTERM: underway work finishes, the rest is kept."""


def job_handle(job: Job) -> str:
    """The id a job is known by in the API: its own, or one made from the
    object for a job put without an id."""
    return f"obj-{id(job):x}" if job.id is None else str(job.id)


def describe_arg(arg: Any) -> str:
    """A short, safe description of a job's argument: its URL, its To, or
    its type, never its whole contents (which may carry credentials)."""
    for name in ("url", "to"):
        value = arg.get(name) if isinstance(arg, dict) else getattr(arg, name, None)
        if isinstance(value, str):
            return value[:300]
    if isinstance(arg, (int, float, str)) and not isinstance(arg, bool):
        return str(arg)[:80]
    return type(arg).__name__


def _num(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, 6)


def _job_json(job: Job, now: float, position: Any = None) -> dict[str, Any]:
    started = job.startTime
    out: dict[str, Any] = {
        "id": job_handle(job),
        "lane": None if job.key is None else str(job.key),
        "priority": job.priority,
        "state": job.state.value,
        "attempts": job.attempts,
        "what": describe_arg(job.arg),
        "queued_for": _num(now - job.queuedTime),
        "running_for": None if started is None else _num(now - started),
    }
    if position is not None:
        out["position"] = position
    return out


def _cursor_text(position: tuple[float, int]) -> str:
    return f"{position[0]!r}:{position[1]}"


def parse_cursor(text: str | None) -> tuple[float, int] | None:
    """A ``pending`` page's cursor back to a queue position."""
    if not text:
        return None
    priority, _, n = text.rpartition(":")
    try:
        value = float(priority)
        return (int(value) if value.is_integer() else value, int(n))
    except ValueError:
        raise AdminError(f"bad cursor {text!r}") from None


def check_page(limit: int | None) -> int:
    """A page size: default 50, at most :data:`MAX_PAGE`."""
    if limit is None:
        return _DEFAULT_PAGE
    if limit < 1:
        raise AdminError(f"limit must be >= 1, not {limit}")
    return min(limit, MAX_PAGE)


class QueueControls:
    """:class:`Controls` over a :class:`~fetchq.queue.ResizableDispatchQueue`.

    Args:
        queue: the queue to watch and steer.
        name: what the status calls it.
        controller: an adaptive controller that may be attached to it.
        on_stop: what a stop does (default: ``queue.stop()``).
        timeline: keep a timeline for the page's charts (default yes), or
            the :class:`~fetchq.report.timeline.Timeline` someone already
            keeps for this queue (a run's, for its report): one observer
            fewer on every event.
    """

    engine = "local"

    def __init__(
        self,
        queue: ResizableDispatchQueue,
        *,
        name: str = "queue",
        controller: AdaptiveController | None = None,
        on_stop: Any = None,
        timeline: bool | Timeline = True,
    ) -> None:
        self.queue = queue
        self.name = name
        self.cause: str | None = None
        self._controller = controller
        self._on_stop = on_stop
        self.clock: Any = queue.clock
        self.watch = Watch(self.clock)
        self._unsubscribe = [queue.subscribe(self.watch)]
        self.timeline: Timeline | None = None
        if isinstance(timeline, Timeline):
            self.timeline = timeline
        elif timeline:
            self.timeline = Timeline(self.clock, interval=1.0)
            self.timeline.start(queue)
            self._unsubscribe.append(queue.subscribe(self.timeline))
        self._sampler: task.LoopingCall | None = None
        self._lanes_cache: tuple[float, list[Any]] | None = None

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        if self._sampler is None:
            self._sampler = task.LoopingCall(self._sample)
            self._sampler.clock = self.clock
            self._sampler.start(1.0, now=True)

    def close(self) -> None:
        if self._sampler is not None and self._sampler.running:
            self._sampler.stop()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []

    def _sample(self) -> None:
        self.watch.sample()

    @property
    def controller_obj(self) -> AdaptiveController | None:
        """The adaptive controller, if there is one."""
        return self._controller

    # -- reading -------------------------------------------------------------

    def _state(self) -> str:
        queue = self.queue
        if queue.stopped:
            return "stopped"
        return "paused" if queue.paused else "running"

    def _holds(self) -> list[dict[str, Any]]:
        now = self.clock.seconds()
        return [
            {"lane": None if key is None else str(key), "for": _num(until - now)}
            for key, until in sorted(
                self.watch.active_holds().items(), key=lambda kv: kv[1]
            )
        ][:100]

    def _controller_json(self) -> dict[str, Any]:
        c = self._controller
        if c is None:
            return {"attached": False}
        out: dict[str, Any] = {
            "attached": c.attached,
            "algorithm": getattr(c, "name", None) or type(c).__name__,
            "min_width": c.min_width,
            "max_width": c.max_width,
            "decisions": dict(self.watch.decisions),
        }
        last = self.watch.last_decision
        if last is not None:
            out["last"] = {
                "reason": last.reason,
                "width": last.width,
                "rate": last.rate,
                "latency": _num(last.latency),
                "baseline": _num(last.baseline),
            }
        return out

    def _queue_status(self) -> dict[str, Any]:
        queue = self.queue
        watch = self.watch
        underway, pending = queue.size()
        return {
            "name": self.name,
            "engine": self.engine,
            "state": self._state(),
            "width": queue.width,
            "rate": queue.rate,
            "lane_width": queue.lane_width,
            "lane_rate": queue.lane_rate,
            "in_flight": underway,
            "pending": pending,
            "outcomes": dict(watch.outcomes),
            "done": watch.done,
            "attempts": watch.attempts,
            "retries": watch.retries,
            "throughput": _num(watch.throughput()),
            "uptime": _num(self.clock.seconds() - watch.started),
            "controller": self._controller_json(),
            "holds": self._holds(),
        }

    def status(self) -> Any:
        return self._queue_status()

    def _lane_infos(self) -> list[Any]:
        """The queue's lanes, taken at most once a second (a crawl of many
        hosts has many lanes; a page polling must not cost a run)."""
        now = self.clock.seconds()
        cached = self._lanes_cache
        if cached is None or now - cached[0] >= 1.0:
            cached = self._lanes_cache = (now, self.queue.lanes())
        return cached[1]

    def lanes(self, limit: int, cursor: int, sort: str) -> Any:
        infos = self._lane_infos()
        now = self.clock.seconds()
        if sort == "name":
            infos = sorted(infos, key=lambda i: str(i.key))
        elif sort == "backlog":
            infos = sorted(infos, key=lambda i: (-i.pending, -i.underway, str(i.key)))
        else:
            raise AdminError(f"sort must be backlog or name, not {sort!r}")
        page = infos[cursor : cursor + limit]
        rows = [
            {
                "lane": None if i.key is None else str(i.key),
                "pending": i.pending,
                "underway": i.underway,
                "width": i.width,
                "rate": i.rate,
                "held_for": None
                if i.held_until is None or i.held_until <= now
                else _num(i.held_until - now),
            }
            for i in page
        ]
        end = cursor + len(page)
        return {
            "lanes": rows,
            "total": len(infos),
            "next": end if end < len(infos) else None,
        }

    def _lane_key(self, text: str | None) -> Any:
        """The queue's lane key for the text an HTTP client sent."""
        if text is None:
            return None
        if self.queue.lane(text) is not None:
            return text
        for info in self._lane_infos():
            if info.key is not None and str(info.key) == text:
                return info.key
        return text

    def jobs(self, state: str, lane: str | None, limit: int, cursor: str | None) -> Any:
        now = self.clock.seconds()
        if state == "underway":
            start = int(cursor or 0)
            jobs = list(self.queue.underway())
            if lane is not None:
                jobs = [j for j in jobs if j.key is not None and str(j.key) == lane]
            page = jobs[start : start + limit]
            end = start + len(page)
            return {
                "jobs": [_job_json(j, now) for j in page],
                "next": str(end) if end < len(jobs) else None,
            }
        if state != "pending":
            raise AdminError(f"state must be pending or underway, not {state!r}")
        return self._queue_pending(lane, limit, cursor, now)

    def _queue_pending(
        self, lane: str | None, limit: int, cursor: str | None, now: float
    ) -> dict[str, Any]:
        after = parse_cursor(cursor)
        if lane is None:
            page = self.queue.pending_page(limit + 1, after)
        else:
            page = self.queue.pending_page(limit + 1, after, key=self._lane_key(lane))
        more = len(page) > limit
        page = page[:limit]
        return {
            "jobs": [_job_json(job, now, _cursor_text(pos)) for pos, job in page],
            "next": _cursor_text(page[-1][0]) if more else None,
        }

    def _find(self, job_id: str) -> Job | None:
        for job in self.queue.underway():
            if job_handle(job) == job_id:
                return job
        for job in self.queue.pending():
            if job_handle(job) == job_id:
                return job
        return None

    def gauges(self) -> dict[str, Any]:
        """Numbers for ``/metrics``, read without waiting on anything."""
        queue = self.queue
        underway, pending = queue.size()
        return {
            "width": queue.width,
            "rate": queue.rate,
            "in_flight": underway,
            "pending": pending,
            "holds": len(self.watch.active_holds()),
            "paused": 1 if queue.paused else 0,
        }

    # -- changing --------------------------------------------------------------

    def set_width(self, width: int) -> Any:
        old = self.queue.width
        try:
            self.queue.setWidth(width)
        except (TypeError, ValueError) as e:
            raise AdminError(str(e)) from None
        return {"width": self.queue.width, "was": old}

    def set_rate(self, rate: float | None, burst: int | None) -> Any:
        old = self.queue.rate
        if burst is None:
            burst = 1
        try:
            self.queue.set_rate(rate, burst)
        except (TypeError, ValueError) as e:
            raise AdminError(str(e)) from None
        return {"rate": self.queue.rate, "burst": burst, "was": old}

    def set_lane(
        self,
        key: str,
        width: Any = KEEP,
        rate: Any = KEEP,
        hold: float | None = None,
        release: bool = False,
    ) -> Any:
        queue = self.queue
        lane = None if key == EVERY_LANE else self._lane_key(key)
        out: dict[str, Any] = {"lane": key}
        if lane is None and (width == "default" or rate == "default"):
            raise AdminError('"default" is for one lane; "*" sets the default')
        try:
            if width == "default" or rate == "default":
                queue.reset_lane(lane)
            if width is not KEEP and width != "default":
                queue.set_lane_width(lane, width)
                out["width"] = width
            if rate is not KEEP and rate != "default":
                queue.set_lane_rate(lane, rate)
                out["rate"] = rate
            if hold is not None:
                until = queue.hold(hold, lane)
                out["held_for"] = _num(until - self.clock.seconds())
            if release:
                out["released"] = queue.release(lane)
        except (TypeError, ValueError) as e:
            raise AdminError(str(e)) from None
        self._lanes_cache = None
        return out

    def pause(self) -> Any:
        if self.queue.stopped:
            raise AdminError("the queue is stopped", 409)
        if not self.queue.paused:
            self.queue.pause()
            log.info("paused by {cause}", event="queue.paused", cause=self.cause)
        return {"state": self._state()}

    def resume(self) -> Any:
        if self.queue.stopped:
            raise AdminError("the queue is stopped", 409)
        if self.queue.paused:
            self.queue.resume()
            log.info("resumed by {cause}", event="queue.resumed", cause=self.cause)
        return {"state": self._state()}

    def cancel(self, job_id: str) -> Any:
        job = self._find(job_id)
        if job is None:
            raise AdminError(f"no pending or underway job {job_id!r}", 404)
        job.cancel()
        log.info("job {id} cancelled", event="job.cancelled", id=job_id)
        return {"id": job_id, "cancelled": True}

    def reprioritize(self, job_id: str, priority: float) -> Any:
        job = self._find(job_id)
        if job is None or job.state is JobState.UNDERWAY:
            raise AdminError(f"no pending job {job_id!r}", 404)
        try:
            self.queue.reprioritize(job, priority)
        except (TypeError, ValueError, RuntimeError) as e:
            raise AdminError(str(e), 409) from None
        return {"id": job_id, "priority": priority}

    def _new_controller(self, min_width: int, max_width: int) -> AdaptiveController:
        from fetchq.control import AdaptiveController, algorithm

        return AdaptiveController(
            algorithm("default"), min_width=min_width, max_width=max_width
        )

    def controller(
        self, attach: bool | None, min_width: int | None, max_width: int | None
    ) -> Any:
        c = self._controller
        low = c.min_width if c is not None and min_width is None else min_width
        high = c.max_width if c is not None and max_width is None else max_width
        low = 1 if low is None else low
        high = max(low, 4 * max(self.queue.width, 1)) if high is None else high
        if low < 1 or high < low:
            raise AdminError(f"need 1 <= min_width <= max_width, not {low}-{high}")
        if c is None:
            if not attach:
                return self._controller_json()
            c = self._controller = self._new_controller(low, high)
            self._adopt(c)
        c.min_width, c.max_width = low, high
        if attach and not c.attached:
            c.attach(self.queue)
            log.info("controller attached", event="controller.attached")
        elif attach is False and c.attached:
            c.detach()
            log.info("controller detached", event="controller.detached")
        return self._controller_json()

    def _adopt(self, controller: AdaptiveController) -> None:
        """A controller made here: whoever owns the queue should know it."""

    def stop(self) -> Any:
        log.info("stop asked by {cause}", event="stop.asked", cause=self.cause)
        if self._on_stop is not None:
            self._on_stop()
        elif not self.queue.stopped:
            self.queue.stop()
        return {"state": "stopping"}


class RunControls(QueueControls):
    """:class:`Controls` over a ``fetchq run`` on a local state (SQLite, or
    memory): the run's queue, plus the store's whole-run counts, the rows
    still waiting in the store, and the run's clean stop."""

    def __init__(self, run: Run, *, timeline: bool = True) -> None:
        self.run = run
        kept = run.timeline  # the report's: the page's charts read it too
        super().__init__(
            run.queue,
            name=run.recipe.source.name,
            # (a SharedRun's SharedControl reads and sets as one)
            controller=cast("AdaptiveController | None", run.controller),
            timeline=kept if timeline and kept is not None else timeline,
        )

    def _adopt(self, controller: AdaptiveController) -> None:
        self.run.controller = controller  # detached when the run ends

    _last_rows: dict[str, int] | None = None

    def _sample(self) -> None:
        super()._sample()
        store = self.run.store
        if store is None or getattr(self.run, "_closed", False):
            return

        def keep(counts: Any) -> None:
            self._last_rows = {
                "pending": counts.pending,
                "claimed": counts.claimed,
                "done": counts.finished,
            }

        got = when(store.counts(), keep)
        if isinstance(got, defer.Deferred):
            got.addErrback(lambda _: None)

    def gauges(self) -> dict[str, Any]:
        out = super().gauges()
        out["rows"] = self._last_rows
        return out

    def _rows(self, counts: Any) -> dict[str, Any]:
        return {
            "pending": counts.pending,
            "claimed": counts.claimed,
            "done": dict(counts.done),
            "finished": counts.finished,
        }

    def _run_status(self, counts: Any) -> dict[str, Any]:
        out = self._queue_status()
        out["kind"] = self.run.recipe.kind
        out["rows"] = self._rows(counts)
        out["input_done"] = bool(getattr(self.run, "_input_done", False))
        return out

    def status(self) -> Any:
        return when(self.run.store.counts(), self._run_status)

    def jobs(self, state: str, lane: str | None, limit: int, cursor: str | None) -> Any:
        store = self.run.store
        if state != "pending" or not hasattr(store, "pending_items"):
            return super().jobs(state, lane, limit, cursor)
        now = self.clock.seconds()
        after = parse_cursor(cursor)
        got = store.pending_items(limit + 1, after, lane)

        def page(items: list[Any]) -> dict[str, Any]:
            more = len(items) > limit
            items = items[:limit]
            return {
                "jobs": [
                    {
                        "id": item.id,
                        "lane": item.key,
                        "priority": item.priority,
                        "state": "pending",
                        "attempts": item.attempts,
                        "what": describe_arg(item.arg),
                        "position": _cursor_text(pos),
                        "not_before": _num(
                            None if item.not_before is None else item.not_before - now
                        ),
                    }
                    for pos, item in items
                ],
                "next": _cursor_text(items[-1][0]) if more else None,
            }

        return when(got, page)

    def cancel(self, job_id: str) -> Any:
        def done(cancelled: bool) -> dict[str, Any]:
            if not cancelled:
                raise AdminError(f"row {job_id!r} is already done", 409)
            return {"id": job_id, "cancelled": True}

        try:
            result = self.run.cancel(job_id)
        except KeyError:
            raise AdminError(f"no row {job_id!r}", 404) from None
        if isinstance(result, defer.Deferred):
            result.addErrback(_not_found, job_id)
        return when(result, done)

    def reprioritize(self, job_id: str, priority: float) -> Any:
        if self._find(job_id) is not None:
            return super().reprioritize(job_id, priority)
        store = self.run.store
        if not hasattr(store, "reprioritize"):
            raise AdminError(f"row {job_id!r} is not in the queue", 409)

        def done(moved: bool) -> dict[str, Any]:
            if not moved:
                raise AdminError(f"no pending row {job_id!r}", 404)
            return {"id": job_id, "priority": priority}

        return when(store.reprioritize(job_id, priority), done)

    def stop(self) -> Any:
        log.info("stop asked by {cause}", event="stop.asked", cause=self.cause)
        self.run.interrupt(int(signal.SIGTERM))
        return {"state": "stopping"}


def _not_found(failure: Any, job_id: str) -> Any:
    failure.trap(KeyError)
    raise AdminError(f"no row {job_id!r}", 404)
