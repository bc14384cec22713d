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
- **Shared limits.**  A claim hands out only what may launch under the
  run's limits, kept in Redis for every worker: the global width (every
  worker's leases; each worker gets at most its share of it), the global
  rate, each lane's width, rate and hold.  Under the rates a claim reserves
  launch slots up to 50 ms ahead, and the worker puts each job in its queue
  at its slot (:attr:`RedisStore.last_delays`), so the rates hold over time
  whatever a claim's round trip costs.  The local queue applies none of the
  limits; its width is only how many jobs this process runs at once.  A
  hold (429, a spent quota) seen by one worker holds the lane for all.
  Between claims a worker sleeps until the claim said something may next
  be claimable (at most a quarter second), or until one of its jobs ends
  (jobs that end while a claim is on its way make it claim again as soon
  as that claim lands).
- **The run's end is the whole run's**: once the input is loaded and no row
  is pending or leased anywhere.  The output is written then, from Redis, by
  every process that sees the end (``fetchq output RECIPE`` writes it at
  any time, from any machine).
- **Stopping together.**  A fatal failure or the failure breaker in one
  worker stops every worker (``run.stop`` in the run's meta; a stop an
  earlier run left is not this run's); Ctrl-C stops only the process it
  reaches, whose leased rows go back for the others.  Failures held back
  for the breaker are recorded once the worker has nothing else to run:
  their leases count against the run's width.
- **Redis away.**  Unreachable at start: one line, exit 2.  While running:
  claims fail and launching pauses, writes are retried until they land,
  and the run goes on when Redis is back (loading its data, too).  A loader
  whose write failed drops its reader; the input is taken up again from the
  checkpoint.
"""

from __future__ import annotations

import json
import math
import sys
from typing import IO, Any

from twisted.internet import defer

from fetchq.control import AdaptiveController
from fetchq.events import Event, JobFinished, LaneHeld
from fetchq.job import Outcome
from fetchq.output import write_output
from fetchq.progress import ProgressDisplay, RunStats
from fetchq.recipe import Recipe
from fetchq.run import (
    _CHUNK,
    _CHUNK_SECONDS,
    _META_INPUT,
    _META_INPUT_DONE,
    EXIT_FAILURES,
    EXIT_FATAL,
    EXIT_OK,
    EXIT_PROBLEMS,
    Run,
)
from fetchq.shared.control import SharedControl
from fetchq.store import Claimed, StoreError, as_deferred, when
from fetchq.store.redis import RedisStore

__all__ = ["META_STOP", "SharedRun", "WorkerDisplay", "write_output"]

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
        write_output: write the output file when the run ends.
        worker: a worker under ``fetchq run --workers``: no progress, no
            summary, no resume line (the parent shows them), its tallies as
            one JSON line on stdout at the end; the output is left to the
            parent.
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
        worker: bool = False,
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
        self._worker = worker
        self._write_final = write_output and not worker
        self._hush = False
        self._stop_seen: Any = None
        self._following = False
        self._chunk_in_flight = False
        self._expect: Any = None  # the input checkpoint last written or read
        self._scheduled: dict[str, tuple[Any, Claimed]] = {}  # id -> (call, item)
        self._lease = recipe.state.lease
        self._loader = False
        self._wake: Any = None
        self._pump_wanted = False  # a pump asked for while a claim was out
        self._last_check = -1.0
        self._end_check: Any = None  # a _check_finished made when the tick is up
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

    def run(self) -> defer.Deferred[int]:
        """Connect, then run to the end (or to an interruption, or to a stop
        by any worker); fires with the exit code."""
        started = defer.Deferred.fromCoroutine(self._connect())
        started.addErrback(self._start_failed)
        return self._finished

    async def _connect(self) -> None:
        if self.store is None:
            state = self.recipe.state
            assert state.url is not None
            try:
                self.store = await RedisStore.connect(
                    state.url, state.run, self.reactor
                )
            except StoreError as e:
                self._abort(f"fetchq: {e}")
                return
        if self._worker:
            self.display = WorkerDisplay(self.stats, self.stream)
        else:
            self.display = ProgressDisplay(self.stats, self.stream, self.progress_every)
        if self.fresh:
            # Before the limits are set: forgetting the run forgets them too.
            await self.store.reset()
            self._say("starting afresh: the state of earlier runs is forgotten")
            self.fresh = False
        await self._set_limits()
        await self._forget_operator_stop()
        # A stop an earlier run left is not this run's: only a new one counts.
        self._stop_seen = await self.store.meta_get(META_STOP)
        share = getattr(self.kind, "share", None)
        if share is not None:
            share(self.store)  # what the kind keeps per run (an API's quota)
        await self._start()

    def _start_failed(self, failure: Any) -> None:
        if self.display is None:
            self._abort(f"fetchq: {_short(failure.value)}", EXIT_FATAL)
        else:
            super()._start_failed(failure)

    def _abort(self, line: str, code: int = EXIT_PROBLEMS) -> None:
        """Nothing started (Redis out of reach): one line, no summary."""
        print(line, file=self.stream or sys.stderr, flush=True)
        self._closed = True
        closed = defer.ensureDeferred(self.kind.close())
        closed.addBoth(lambda _: self._finished.callback(code))

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
            self._expect = await self.store.meta_get(_META_INPUT)

    def _read_chunk(self, limit: int, seconds: float | None = None) -> Any:
        """As :meth:`Run._read_chunk`, in chunks of at most ``read_ahead``
        rows (so Redis never holds much more than that pending), one chunk
        at a time (each must find the checkpoint the one before wrote)."""
        if self.read_ahead is not None:
            limit = max(1, min(limit, self.read_ahead))
        result = super()._read_chunk(limit, seconds)
        if isinstance(result, defer.Deferred):
            self._chunk_in_flight = True

            def landed(passed: Any) -> Any:
                self._chunk_in_flight = False
                return passed

            result.addBoth(landed)
        return result

    def _add_options(self) -> dict[str, Any]:
        """The rows' write is fenced by the load lease, and must find the
        checkpoint this loader last wrote (or read): if Redis lost that
        write, the write fails and the input is taken up again from the
        checkpoint Redis has."""
        expect = self._expect
        if self._reader is not None:
            self._expect = self._reader.checkpoint().to_json()
        return {"fence": _LOADER, "expect": (_META_INPUT, expect)}

    # -- claiming --------------------------------------------------------------

    def _pump(self) -> None:
        """As :meth:`Run._pump`, once Redis is connected (a width set before
        the run starts asks for a pump, and nothing can be claimed yet)."""
        if self.store is None:
            return
        if self._claiming:
            # Jobs ended (or a hold ended, a width grew) while the claim was
            # on its way: that claim may have been answered before their
            # slots came free, so claim again when it lands.
            self._pump_wanted = True
        super()._pump()

    def _claim_request(self) -> dict[str, Any] | None:
        underway, pending = self.queue.size()
        free = self.queue.width - underway - pending - len(self._scheduled)
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
        """Sleep until something may be launchable (or at most a while).

        A worker with nothing to run records the failures it holds back for
        the breaker: their rows are leased, and leases count against the
        run's width and each lane's, so held any longer they could keep
        every worker from claiming (or the run from ending)."""
        if not claimed and self._streak and self.queue.size() == (0, 0):
            self._ack_streak()
        wake = self.store.last_wake
        # (A claim that took every slot the width leaves this worker says
        # so by its wake: only a slot coming free helps then, and this
        # worker's own jobs ending pump it.)
        delay = _POLL if wake is None else min(_POLL, max(wake, 0.001))
        if self._pump_wanted:
            # Slots came free while the claim was out: nothing else would
            # wake this worker (its jobs may all have ended), so claim now.
            self._pump_wanted = False
            delay = 0.0
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
        if self._closed:
            return  # calls cut short by closing the store
        if "FENCED" in str(failure.value):
            self._say("fetchq: lost the input's load lease; another process goes on")
            return
        if "STALE" in str(failure.value):
            self._say(
                "fetchq: the input's checkpoint in redis is not the one this "
                "process wrote (redis lost writes?); reading on from it"
            )
            return
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
        self._pump_wanted = False  # the retry below claims again
        if _transient(failure.value) and not self._closed:
            self._store_failed(failure)
            self._backoff = min(5.0, max(0.25, self._backoff * 2))
            self.reactor.callLater(self._backoff, self._pump)
            return
        super()._claim_failed(failure)

    def _put_claimed(self, claimed: list[Claimed]) -> None:
        """Into the queue now, or at the launch time the claim reserved for
        them under the rates (see :attr:`RedisStore.last_delays`)."""
        if self._outage:
            self._outage = False
            self._backoff = 0.0
            self._say("fetchq: redis is back; going on")
        delays = self.store.last_delays
        if delays and not (self._closed or self._stopping):
            now: list[Claimed] = []
            for item in claimed:
                delay = delays.get(item.id, 0.0)
                if delay > 0.001:
                    call = self.reactor.callLater(delay, self._launch, item)
                    self._scheduled[item.id] = (call, item)
                else:
                    now.append(item)
            claimed = now
        super()._put_claimed(claimed)

    def _launch(self, item: Claimed) -> None:
        """An item whose launch time has come: into the queue."""
        del self._scheduled[item.id]
        if self._closed or self._stopping:
            self._watch(self.store.requeue(item.id, None, self.reactor.seconds()))
            return
        key = item.key
        self._in_queue[key] = self._in_queue.get(key, 0) + 1
        d = self.queue.put(self.kind.arg(item), item.priority, key=key, job_id=item.id)
        d.addCallbacks(self._succeeded, self._failed)

    def _hand_back_scheduled(self) -> None:
        """Items waiting for their launch time go back to Redis."""
        now = self.reactor.seconds()
        for call, item in self._scheduled.values():
            call.cancel()
            self._watch(self.store.requeue(item.id, None, now))
        self._scheduled.clear()

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
        if not held and not self._input_done and self._loader:
            self._say("fetchq: lost the input's load lease; another process goes on")
            self._drop_reader()

    def _drop_reader(self) -> None:
        """Stop loading; whoever takes the lease next (this process too)
        goes on from the checkpoint in Redis, which is exactly what landed:
        each chunk of rows is stored with its checkpoint in one script."""
        self._loader = False
        self._rows = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    async def _follow_input(self) -> None:
        if self._following:
            return
        self._following = True
        try:
            await self._open_input()
            if self._loader and self._rows is not None:
                await self._guarded(self._read_chunk(_CHUNK))
                self._read_soon()
        finally:
            self._following = False

    def _read_more(self) -> None:
        """As :meth:`Run._read_more`, but a chunk that could not be stored
        (Redis away, or the lease lost: its write fenced) drops the reader
        instead of stopping the run: the input is taken up again from the
        checkpoint."""
        self._read_scheduled = False
        if self._input_done or self._stopping or self._closed or self._reading:
            return
        if self._rows is None or self._chunk_in_flight:
            return  # another process reads the input, or a chunk is on its way
        self._reading = True
        ahead = self.read_ahead

        def read(counts: Any) -> Any:
            if ahead is not None and counts.pending >= ahead:
                return None  # the pump calls again as the store drains
            chunk = self._read_chunk(_CHUNK, _CHUNK_SECONDS)
            return self._guarded(chunk).addCallback(lambda _: True)

        def done(more: Any) -> None:
            self._reading = False
            if more and not self._closed:
                self._pump()
                self._read_soon()

        def failed(failure: Any) -> Any:
            self._reading = False
            return failure

        self._watch(self.store.counts().addCallback(read).addCallbacks(done, failed))

    def _guarded(self, result: Any) -> defer.Deferred[Any]:
        """A read's store writes: if they fail, the reader is dropped."""

        def failed(failure: Any) -> Any:
            if self._loader:
                self._drop_reader()
            return failure

        return as_deferred(result).addErrback(failed)

    def _stopped_elsewhere(self, stop: Any) -> None:
        if stop == self._stop_seen:
            return
        if stop and not self._stopping and not self._closed:
            why = f"stopped by another worker: {stop['message']}"
            self._stop(int(stop["code"]), why)

    def _stop(self, code: int, message: str) -> None:
        if code in (EXIT_FATAL, EXIT_FAILURES) and not self._stopping and self.store:
            stop = {"code": code, "message": message, "by": self.store.worker}
            self._stop_seen = stop  # said here already
            self._watch(self.store.meta_set(META_STOP, stop))
        super()._stop(code, message)

    def _check_finished(self) -> None:
        """The run's end: input loaded, nothing pending or leased anywhere
        (asked at most every tick: a check that comes sooner is made when
        the tick is up, so the last job's end is not left for the next
        claim; and the counts are read once this worker's writes, its last
        acks among them, have landed)."""
        if not self._input_done or self._closed or self.store is None:
            return
        underway, pending = self.queue.size()
        now = self.reactor.seconds()
        if underway or pending or self._scheduled:
            return
        wait = self._last_check + self.tick_seconds - now
        if wait > 0:
            if self._end_check is None or not self._end_check.active():
                self._end_check = self.reactor.callLater(wait, self._check_finished)
            return
        self._last_check = now
        store = self.store

        def check(counts: Any) -> None:
            if counts.pending == 0 and counts.claimed == 0 and not self._closed:
                self._finish(EXIT_OK)

        self._watch(when(store.flush(), lambda _: when(store.counts(), check)))

    async def _write_output(self, code: int) -> None:
        if code == EXIT_OK and self._write_final:
            await write_output(self.store, self.output.path)
            self._say(f"output: {self.output.path}")

    # -- a worker under `fetchq run --workers` -------------------------------

    def interrupt(self, signum: int) -> None:
        """As :meth:`Run.interrupt`; a worker leaves saying so to its parent."""
        self._hush = self._worker
        try:
            super().interrupt(signum)
        finally:
            self._hush = False

    def _say(self, text: str) -> None:
        if self._hush or (self._worker and text.startswith("resuming: ")):
            return  # the parent says it, once
        super()._say(text)

    def _stopped(self, unprocessed: list[Any]) -> None:
        self._hand_back_scheduled()
        if not self._worker:
            super()._stopped(unprocessed)
            return
        now = self.reactor.seconds()
        for job in unprocessed:
            self._watch(self.store.requeue(job.id, None, now))
        self._finish(self._exit)  # the parent says how to resume

    def _finish(self, code: int) -> None:
        for call in (self._wake, self._end_check):
            if call is not None and call.active():
                call.cancel()
        if not self._closed and self.store is not None:
            self._hand_back_scheduled()
        if self._loader and self.store is not None and not self._closed:
            self._watch(self.store.lease(_LOADER, self._lease, "drop"))
        super()._finish(code)


_WAIT_OUT = frozenset(
    ("LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "READONLY", "CLUSTERDOWN")
)


def _transient(error: BaseException) -> bool:
    """Whether a store error is Redis being unreachable (wait it out) rather
    than a refusal (a script error, a fence, bad data: stop)."""
    import txredisapi

    if isinstance(error, txredisapi.ResponseError):
        # Redis starting (loading its AOF), busy with a slow script, or a
        # replica not yet promoted: wait those out too.
        return str(error).split(" ", 1)[0] in _WAIT_OUT
    return isinstance(
        error, (txredisapi.ConnectionError, ConnectionError, OSError)
    ) or (type(error).__module__.startswith("twisted.internet.error"))


def _short(error: BaseException) -> str:
    return " ".join(str(error).split())[:200] or type(error).__name__


class WorkerDisplay(ProgressDisplay):
    """What a worker under ``fetchq run --workers`` shows: its messages
    only (the parent shows progress and the summary), and at the end its
    tallies (:meth:`RunStats.tallies`) as one JSON line on stdout, for the
    parent's summary."""

    def __init__(self, stats: RunStats, stream: IO[str] | None = None) -> None:
        super().__init__(stats, stream, every=math.inf)
        if self._progress is not None:  # a terminal after all: no bar
            self._progress.stop()
            self._progress = None

    def tick(self) -> None:
        """Nothing: the parent shows the progress."""

    def close(self) -> None:
        """Hand the tallies to the parent."""
        sys.stdout.write(json.dumps(self.stats.tallies()) + "\n")
        sys.stdout.flush()
