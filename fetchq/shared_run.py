"""A run whose state is in Redis: every ``fetchq run`` of the recipe, on any
machine, joins it.

What differs from a run on a local state (:class:`~fetchq.run.Run`):

- **One loader.**  The process that takes the input's load lease reads the
  input into Redis, with back-pressure (at most ``read_ahead`` rows
  pending), and renews the lease as it goes; every process works as soon as
  rows arrive.  A loader that dies is replaced when its lease runs out: the
  next one goes on from the checkpoint in Redis (checked against its own
  copy of the input, as a resumed run is).  A loader that lost its lease
  cannot add rows behind its successor's back (its writes are fenced).
- **Shared limits.**  A claim hands out only what may launch now under the
  run's limits, kept in Redis for every worker: the global width (every
  worker's leases), the global rate, each lane's width, rate and hold.  The
  local queue therefore applies none of them; its width is only how many
  jobs this process runs at once.  A hold (429, a spent quota) seen by one
  worker holds the lane for all.  Between claims a worker sleeps until the
  claim said something may next be launchable (at most a quarter second).
- **The run's end is the whole run's**: once the input is loaded and no row
  is pending or leased anywhere.  The output is written then, from Redis, by
  every process that sees the end (``fetchq output RECIPE`` writes it at
  any time, from any machine).
- **Stopping together.**  A fatal failure or the failure breaker in one
  worker stops every worker (``run.stop`` in the run's meta); Ctrl-C stops
  only the process it reaches, whose leased rows go back for the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from twisted.internet import defer

from fetchq.control import AdaptiveController
from fetchq.events import Event, JobFinished, LaneHeld
from fetchq.job import Outcome
from fetchq.recipe import Recipe
from fetchq.run import (
    _CHUNK,
    _META_INPUT_DONE,
    EXIT_FAILURES,
    EXIT_FATAL,
    EXIT_OK,
    EXIT_PROBLEMS,
    Run,
    _maybe,
)
from fetchq.shared.control import SharedControl
from fetchq.store import Claimed, StoreError, when
from fetchq.store.redis import RedisStore

__all__ = ["META_STOP", "SharedRun"]

META_STOP = "run.stop"
"""Meta key: ``{"code": N, "message": ...}`` once a worker stopped the run."""
_LOADER = "loader"
_LIMITS = "run.limits"  # the recipe's limits the run's were last set from
_POLL = 0.25  # most seconds between claims while nothing can launch
_WITHDRAW_RETRY = 0.5  # a job retrying later than this hands its slot back
_OPERATOR_STOP = 143  # an operator's stop of the whole run (as SIGTERM)
_LEADER_LEASE = 5.0  # a dead controller leader is replaced within this


class SharedRun(Run):
    """A :class:`~fetchq.run.Run` on the Redis engine (see the module).

    Args:
        recipe: a recipe with ``state.url``.
        reactor: the reactor.
        write_output: write the output file when the run ends (``fetchq run
            --workers`` children leave it to their parent).
        read_ahead: most rows pending in Redis before the loader waits.
        store: an open :class:`~fetchq.store.redis.RedisStore` (default:
            connect to ``state.url`` when the run starts).
        kw: as for :class:`~fetchq.run.Run`.
    """

    def __init__(
        self,
        recipe: Recipe,
        reactor: Any,
        stream: IO[str] | None = None,
        *,
        write_output: bool = True,
        read_ahead: int | None = 100_000,
        store: RedisStore | None = None,
        **kw: Any,
    ) -> None:
        if recipe.state.url is None and store is None:
            raise ValueError("a SharedRun needs a recipe with state.url")
        super().__init__(
            recipe, reactor, stream, store=store, read_ahead=read_ahead, **kw
        )
        self._stream_output = False
        self._write_final = write_output
        self._lease = recipe.state.lease
        self._loader = False
        self._wake: Any = None
        self._last_check = -1.0
        self._outage = False
        self._backoff = 0.0
        self.queue.subscribe(self._on_retry)
        if hasattr(self.kind, "share_lane_rate"):
            # A site's Crawl-delay paces its host for every worker, not only
            # for the one that read its robots.txt.
            self.kind.share_lane_rate = self._share_lane_rate
        if isinstance(self.controller, AdaptiveController):
            # One controller for the whole run: the leader's, fed by every
            # worker, setting the run's limits in Redis (fetchq.shared.control).
            self.controller = SharedControl(
                self.controller,
                lambda: self.store,
                reactor,
                lease=min(_LEADER_LEASE, self._lease),
            )

    def _queue_kwargs(self) -> dict[str, Any]:
        """Only the local width: Redis applies the rate and the lane limits
        to every worker together when it hands work out (an adaptive run's
        width may grow to ``max_width``, so this process may run as many)."""
        queue = self.recipe.queue
        width = queue.width
        if queue.adaptive is not None:
            width = max(width, queue.adaptive.max_width)
        return {"width": width}

    def _where(self) -> str:
        return f"redis run {self.recipe.state.run!r}"

    # -- starting ------------------------------------------------------------

    async def _start(self) -> None:
        if self.store is None:
            state = self.recipe.state
            assert state.url is not None
            try:
                self.store = await RedisStore.connect(
                    state.url, state.run, self.reactor
                )
            except StoreError as e:
                self._say(f"fetchq: {e}")
                self._finish(EXIT_PROBLEMS)
                return
        await self._set_limits()
        await self._forget_operator_stop()
        share = getattr(self.kind, "share", None)
        if share is not None:
            share(self.store)  # what the kind keeps per run (an API's quota)
        await super()._start()

    async def _set_limits(self) -> None:
        """Give the run the recipe's limits, unless they are the ones it was
        last given (an operator may have changed them since)."""
        queue = self.recipe.queue
        limits = {
            "width": queue.width,
            "rate": queue.rate,
            "burst": queue.burst,
            "lane_width": queue.lanes.width,
            "lane_rate": queue.lanes.rate,
            "lane_burst": queue.lanes.burst,
        }
        if await self.store.meta_get(_LIMITS) == limits:
            return
        await self.store.configure(**limits)
        await self.store.meta_set(_LIMITS, limits)

    async def _forget_operator_stop(self) -> None:
        """An operator's stop (``fetchq ctl stop``) stopped the workers of
        then; running the recipe again is the operator going on."""
        stop = await self.store.meta_get(META_STOP)
        if isinstance(stop, dict) and stop.get("code") == _OPERATOR_STOP:
            await self.store.meta_set(META_STOP, None)

    def follow_width(self, width: int | None) -> None:
        """The run's width changed (an operator's, or seen in Redis): this
        worker may run up to that many jobs at once (every worker's leases
        count against it in Redis)."""
        local = self._queue_kwargs()["width"] if width is None else width
        if local != self.queue.width and not self._stopping:
            self.queue.setWidth(local)

    _seen_width: Any = "unseen"

    def _follow_limits(self, limits: dict[str, Any]) -> None:
        """Follow the run's width when it changes in Redis (an operator's,
        or the run's adaptive controller's: see fetchq.shared.control)."""
        width = limits.get("width")
        if not self._closed and width != self._seen_width:
            self._seen_width = width
            self.follow_width(None if width is None else int(width))

    async def _release(self, now: float) -> None:
        """Nothing: other workers hold leases; a dead one's run out."""

    async def _open_input(self) -> None:
        """Open the input only if this process is the loader."""
        done = await self.store.meta_get(_META_INPUT_DONE)
        if done:
            self._input_done = True
            return
        if await self.store.lease(_LOADER, self._lease):
            self._loader = True
            await super()._open_input()

    def _add_options(self) -> dict[str, Any]:
        return {"fence": _LOADER}

    # -- claiming --------------------------------------------------------------

    def _claim_request(self) -> dict[str, Any] | None:
        underway, pending = self.queue.size()
        free = self.queue.width - underway - pending
        if free <= 0:
            return None
        cap = self.recipe.queue.lanes.width or self.queue.width
        return {
            "limit": free,
            "now": self.reactor.seconds(),
            "lease": self._lease,
            "per_lane": max(1, cap),
            "limits": True,
        }

    def _claimed_now(self, claimed: list[Claimed]) -> None:
        """Sleep until something may be launchable (or at most a while)."""
        wake = self.store.last_wake
        delay = _POLL if wake is None else min(_POLL, max(wake, 0.001))
        if claimed and self.queue.size()[0] < self.queue.width:
            delay = 0.0  # there may be more now
        when_due = self.reactor.seconds() + delay
        if self._wake is not None and self._wake.active():
            if self._wake.getTime() <= when_due:
                return
            self._wake.cancel()
        self._wake = self.reactor.callLater(delay, self._pump)

    def _on_event(self, event: Event) -> None:
        super()._on_event(event)
        if event.__class__ is LaneHeld and self.store is not None:
            assert isinstance(event, LaneHeld)
            if event.key is not None and not self._closed:
                seconds = event.until - event.time
                self._watch(self.store.hold_lane(event.key, seconds))

    def _share_lane_rate(self, key: str, rate: float) -> None:
        if self.store is not None and not self._closed:
            self._watch(self.store.set_lane(key, rate=rate))

    def _on_retry(self, event: Event) -> None:
        """A job that will retry later hands its slot back (its row goes
        back to Redis until the retry is due), so retries never hold the
        run's width."""
        if event.__class__ is not JobFinished:
            return
        assert isinstance(event, JobFinished)
        job = event.job
        if event.outcome is not Outcome.RETRIED or job.not_before is None:
            return
        if job.not_before - event.time >= _WITHDRAW_RETRY:
            self.reactor.callLater(0, self._withdraw_one, job)

    def _withdraw_one(self, job: Any) -> None:
        if self._closed or self._stopping:
            return
        for gone in self.queue.withdraw(job.key, only=[job]):
            now = self.reactor.seconds()
            self._watch(self.store.requeue(gone.id, gone.not_before, now))
            self._lane_done(gone.key)

    # -- Redis going away ----------------------------------------------------------

    def _store_failed(self, failure: Any) -> None:
        """A lost connection is waited out (launching pauses: claims fail
        until Redis is back, writes are retried); anything else stops."""
        if _transient(failure.value):
            if not self._outage:
                self._outage = True
                self._say(
                    f"fetchq: redis unreachable ({_short(failure.value)}); "
                    "pausing until it is back"
                )
            return
        super()._store_failed(failure)

    def _claim_failed(self, failure: Any) -> None:
        self._claiming = False
        if _transient(failure.value) and not self._closed:
            self._store_failed(failure)
            self._backoff = min(5.0, max(0.25, self._backoff * 2))
            self.reactor.callLater(self._backoff, self._pump)
            return
        super()._claim_failed(failure)

    def _put_claimed(self, claimed: list[Claimed]) -> None:
        if self._outage:
            self._outage = False
            self._backoff = 0.0
            self._say("fetchq: redis is back; going on")
        super()._put_claimed(claimed)

    # -- the end -----------------------------------------------------------------

    def _tick(self) -> None:
        super()._tick()
        if self._closed or self.store is None:
            return
        if self._loader and not self._input_done:
            renewed = self.store.lease(_LOADER, self._lease, "renew")
            self._watch(when(renewed, self._lost_lease))
        elif not self._loader and not self._input_done and not self._stopping:
            # The loader may have finished, or died: take over if it did.
            self._watch(defer.Deferred.fromCoroutine(self._follow_input()))
        self._watch(when(self.store.meta_get(META_STOP), self._stopped_elsewhere))
        self._watch(when(self.store.limits(), self._follow_limits))

    def _lost_lease(self, held: bool) -> None:
        if not held and not self._input_done:
            self._say("fetchq: lost the input's load lease; another process goes on")
            self._loader = False
            self._rows = None

    async def _follow_input(self) -> None:
        await self._open_input()
        if self._loader and self._rows is not None:
            await _maybe(self._read_chunk(_CHUNK))
            self._read_soon()

    def _stopped_elsewhere(self, stop: Any) -> None:
        if stop and not self._stopping and not self._closed:
            why = f"stopped by another worker: {stop['message']}"
            self._stop(int(stop["code"]), why)

    def _stop(self, code: int, message: str) -> None:
        if code in (EXIT_FATAL, EXIT_FAILURES) and not self._stopping and self.store:
            self._watch(
                self.store.meta_set(META_STOP, {"code": code, "message": message})
            )
        super()._stop(code, message)

    def _check_finished(self) -> None:
        """The run's end: input loaded, nothing pending or leased anywhere
        (asked at most every tick)."""
        if not self._input_done or self._closed or self.store is None:
            return
        underway, pending = self.queue.size()
        now = self.reactor.seconds()
        if underway or pending or now - self._last_check < self.tick_seconds:
            return
        self._last_check = now

        def check(counts: Any) -> None:
            if counts.pending == 0 and counts.claimed == 0 and not self._closed:
                self._ack_streak()
                self._finish(EXIT_OK)

        self._watch(when(self.store.counts(), check))

    async def _write_output(self, code: int) -> None:
        if code == EXIT_OK and self._write_final:
            await write_output(self.store, self.output.path)
            self._say(f"output: {self.output.path}")

    def _finish(self, code: int) -> None:
        if self._wake is not None and self._wake.active():
            self._wake.cancel()
        if self._loader and self.store is not None and not self._closed:
            self._watch(self.store.lease(_LOADER, self._lease, "drop"))
        super()._finish(code)


async def write_output(store: Any, path: Path) -> int:
    """Write every record of ``store`` to ``path`` (JSONL, one line per
    record; a list record is a line per element), through a temporary file
    replaced in one rename.  Returns how many records."""
    import os
    import tempfile

    from fetchq.output import output_lines

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    count = 0
    try:
        with open(fd, "w", encoding="utf-8") as f:
            seq = 0
            while batch := await _maybe(store.records(seq, 5000)):
                f.write(output_lines(batch))
                seq = batch[-1].seq
                count += len(batch)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return count


def _transient(error: BaseException) -> bool:
    """Whether a store error is Redis being unreachable (wait it out) rather
    than a refusal (a script error, a fence, bad data: stop)."""
    import txredisapi

    if isinstance(error, txredisapi.ResponseError):
        return False
    return isinstance(
        error, (txredisapi.ConnectionError, ConnectionError, OSError)
    ) or (type(error).__module__.startswith("twisted.internet.error"))


def _short(error: BaseException) -> str:
    return " ".join(str(error).split())[:200] or type(error).__name__
