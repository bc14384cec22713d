"""``fetchq run``: a recipe's input, through a durable store and the queue,
to one output record per input row.

The flow, and what makes it safe to kill at any moment::

    input rows ──add──► store ──claim──► queue ──► the kind's job function
                          ▲                          │    (fetcher, SMS
                          └───────── ack(record) ◄───┘     sender, API caller)
    every tick: store.flush() (commit), then append the newly committed
    records to the output file.

- The store is the truth.  A record reaches the output file only after the
  commit that made it durable, so nothing shown as done is fetched again.
- On start the output file is rebuilt from the store's records, so after a
  crash (or kill -9) and a re-run every input row has exactly one record.
  Jobs that were underway when the process died come back (at-least-once).
- Input is read in batches only while the store holds few pending rows
  (back-pressure): memory stays flat however long the input is.
- Ctrl-C or SIGTERM stops launching and lets underway jobs finish (a second
  Ctrl-C cancels them), commits, says how to resume, and exits 130 or 143.

What differs between recipe kinds (how a row becomes a job, which job
function runs it, what record it leaves, follow-up pages) is a
:class:`~fetchq.kinds.Kind`; :class:`Run` is the same for all of them.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from twisted.internet import defer, task
from twisted.python.failure import Failure

from fetchq import __version__
from fetchq.control import AdaptiveController, algorithm
from fetchq.errors import JobCancelled, JobError
from fetchq.fetch import FetchConfig, fetch_retry_policy
from fetchq.inputs import InputRow, read_rows
from fetchq.job import Job
from fetchq.kinds import BadRow, Kind
from fetchq.progress import ProgressDisplay, RunStats
from fetchq.queue import ResizableDispatchQueue
from fetchq.recipe import ApiRecipe, FetchRecipe, Recipe, SmsRecipe
from fetchq.recipe.model import AdaptiveSpec
from fetchq.report import Timeline, write_report
from fetchq.secrets import reveal
from fetchq.store import NewItem, Record, SQLiteStore, Store

__all__ = ["FetchRun", "Run", "fetch_config", "make_kind"]

EXIT_OK = 0
EXIT_INTERRUPTED: dict[int, int] = {int(signal.SIGINT): 130, int(signal.SIGTERM): 143}

_META_INPUT_NEXT = "input.next_row"
_META_INPUT_DONE = "input.done"
_META_FIRST_START = "run.first_started"  # wall clock, epoch seconds


def make_controller(spec: AdaptiveSpec) -> AdaptiveController:
    """The adaptive controller a recipe's ``queue.adaptive`` asks for."""
    return AdaptiveController(
        algorithm(spec.algorithm),
        min_width=spec.min_width,
        max_width=spec.max_width,
        per_lane=spec.per_lane,
        pace=spec.pace,
        interval=spec.interval,
        probe_every=spec.probe_every,
    )


def describe_pace(recipe: Recipe) -> str:
    """The recipe's pace in a few words."""
    queue = recipe.queue
    text = f"width {queue.width}"
    if queue.rate is not None:
        text += f", rate {queue.rate:g}/s"
    adaptive = queue.adaptive
    if adaptive is not None:
        text += (
            f", adaptive ({adaptive.algorithm}, "
            f"{adaptive.min_width}-{adaptive.max_width})"
        )
    return text


def fetch_config(recipe: FetchRecipe) -> FetchConfig:
    """The fetcher's configuration from a recipe's ``fetch`` section."""
    spec = recipe.fetch
    body = spec.body
    return FetchConfig(
        method=spec.method,
        headers=tuple(spec.headers.items()),  # Secrets kept: the fetcher
        params=tuple(spec.params.items()),  # reveals them only to send
        body=None if body is None else reveal(body).encode(),
        connect_timeout=spec.connect_timeout,
        headers_timeout=spec.headers_timeout,
        body_timeout=spec.body_timeout,
        max_body=spec.max_body,
        max_redirects=spec.max_redirects,
        allow_private=spec.allow_private,
        ok_statuses=spec.ok_statuses,
        retry_statuses=spec.retry_statuses,
        throttle_statuses=spec.throttle_statuses,
        max_retry_after=recipe.retry.max_delay,
        save_dir=None if spec.save_bodies is None else str(spec.save_bodies.dir),
        save_name="sha256" if spec.save_bodies is None else spec.save_bodies.name,
    )


def make_kind(
    recipe: Recipe, reactor: Any, first_started: Any = None, pool_size: int = 10
) -> Kind:
    """The :class:`~fetchq.kinds.Kind` of a recipe.

    Args:
        recipe: the loaded recipe.
        reactor: time and sockets.
        first_started: a callable giving when the run first started (wall
            clock, epoch seconds), for an SMS resend check.
        pool_size: persistent connections.
    """
    retry = recipe.retry
    if isinstance(recipe, SmsRecipe):
        from fetchq.kinds.sms import SmsKind
        from fetchq.sms import sms_retry_policy

        return SmsKind(
            recipe.sms.config(),
            reactor,
            message=recipe.message,
            to_field=recipe.input.to_field,
            retry=sms_retry_policy(
                retry.max_attempts, retry.base_delay, retry.max_delay
            ),
            pool_size=pool_size,
            first_send_at=first_started,
        )
    if isinstance(recipe, ApiRecipe):
        from fetchq.api import api_retry_policy
        from fetchq.kinds.api import ApiKind

        return ApiKind(
            recipe.api.config(),
            reactor,
            retry=api_retry_policy(
                retry.max_attempts, retry.base_delay, retry.max_delay
            ),
            pool_size=pool_size,
        )
    from fetchq.kinds.fetch import FetchKind

    return FetchKind(
        fetch_config(recipe),
        reactor,
        retry=fetch_retry_policy(retry.max_attempts, retry.base_delay, retry.max_delay),
        pool_size=pool_size,
    )


def _lines(records: list[Record]) -> str:
    """The output lines of ``records``: one JSON object each (a record that
    is a list, such as an API page's items, is one line per element)."""
    lines: list[str] = []
    for r in records:
        record: Any = r.record
        if isinstance(record, list):
            lines.extend(_json_line(one) + "\n" for one in record)
        else:
            lines.append(_json_line(record) + "\n")
    return "".join(lines)


_json_line = json.JSONEncoder(separators=(",", ":")).encode  # as json.dumps


class OutputFile:
    """The run's JSONL output, written only from committed store records."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seq = 0
        self._file: IO[str] | None = None

    def rebuild(self, store: Store) -> int:
        """Rewrite the file from every record in the store; how many."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        count = 0
        with open(tmp, "w", encoding="utf-8") as f:
            self.seq = 0
            while batch := store.records(self.seq, 5000):
                f.write(_lines(batch))
                self.seq = batch[-1].seq
                count += len(batch)
        os.replace(tmp, self.path)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        return count

    def catch_up(self, store: Store) -> None:
        """Append the records committed since the last call."""
        assert self._file is not None
        while batch := store.records(self.seq, 5000):
            self._file.write(_lines(batch))
            self.seq = batch[-1].seq
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Run:
    """One run (or resumed run) of a recipe, of any kind.

    Args:
        recipe: the loaded recipe.
        reactor: the reactor (time, sockets, signals).
        stream: where progress and the summary go (default stderr).
        tick: seconds between commits/output/progress updates.
        progress_every: seconds between plain progress lines when piped.
        handle_signals: take over SIGINT/SIGTERM (the command does; a
            program embedding a run calls :meth:`interrupt` itself).
        store: where state lives; default the recipe's SQLite state file
            (a :class:`~fetchq.store.MemoryStore` makes a run that cannot
            resume, for benchmarks and tests).
        report: write a self-contained HTML report of the run here at the
            end (charts of width, throughput, latency and the controller's
            decisions, and the summary).
        kind: what the recipe's kind adds (default: :func:`make_kind`).
    """

    def __init__(
        self,
        recipe: Recipe,
        reactor: Any,
        stream: IO[str] | None = None,
        tick: float = 0.2,
        progress_every: float = 5.0,
        handle_signals: bool = False,
        store: Store | None = None,
        report: Path | None = None,
        kind: Kind | None = None,
    ) -> None:
        self.recipe = recipe
        self.reactor = reactor
        self.stream = stream
        self.tick_seconds = tick
        self.progress_every = progress_every
        self.handle_signals = handle_signals
        if store is None:
            recipe.state.path.parent.mkdir(parents=True, exist_ok=True)
            store = SQLiteStore(recipe.state.path, durability=recipe.state.durability)
        self.store: Store = store
        width = recipe.queue.width
        adaptive = recipe.queue.adaptive
        self.controller = None if adaptive is None else make_controller(adaptive)
        pool = width if adaptive is None else max(width, adaptive.max_width)
        if kind is None:
            kind = make_kind(recipe, reactor, self._first_started, pool)
        self.kind = kind
        self.queue = ResizableDispatchQueue(
            kind.job, **recipe.queue.queue_kwargs(), retry=kind.retry, clock=reactor
        )
        kind.bind(self.queue)
        self.output = OutputFile(recipe.output.path)
        self.stats = RunStats(reactor)
        self.queue.subscribe(self.stats)
        self.report_path = report
        self.timeline: Timeline | None = None
        if report is not None:
            self.timeline = Timeline(reactor)
            self.timeline.start(self.queue)
            self.queue.subscribe(self.timeline)
        self._rows: Iterator[InputRow] | None = None
        self._input_done = False
        self._next_row = 0
        self._store_pending = 0
        self._stopping = False
        self._signal: int | None = None
        self._finished: defer.Deferred[int] = defer.Deferred()
        self._closed = False  # set once _finish starts closing the store
        self._pump_scheduled = False
        self.display: ProgressDisplay | None = None  # made by run()
        self._ticker = task.LoopingCall(self._tick)

    # -- input -------------------------------------------------------------

    def _open_input(self) -> None:
        spec = self.recipe.input
        self._next_row = int(self.store.meta_get(_META_INPUT_NEXT, 0))
        self._input_done = bool(self.store.meta_get(_META_INPUT_DONE, False))
        if not self._input_done:
            self._rows = read_rows(
                spec.path,
                spec.format,
                getattr(spec, "url_field", None),
                spec.priority_field,
                spec.id_field,
                start=self._next_row,
            )

    def _first_started(self) -> float | None:
        """When this recipe's first run started (wall clock)."""
        value = self.store.meta_get(_META_FIRST_START)
        return None if value is None else float(value)

    def _read_input(self, limit: int) -> None:
        """Add up to ``limit`` rows to the store; bad rows are recorded as
        failed input at once."""
        if self._input_done or self._rows is None:
            return
        now = self.reactor.seconds()
        item = self.kind.item
        items: list[NewItem] = []
        bad: list[tuple[InputRow, str]] = []
        for row in self._rows:
            self._next_row = row.index + 1
            if row.error is not None:
                bad.append((row, row.error))
            else:
                try:
                    items.append(item(row))
                except BadRow as e:
                    bad.append((row, str(e)))
            if len(items) + len(bad) >= limit:
                break
        else:
            self._input_done = True
        self._store_pending += self.store.add(items)
        if bad:
            self.store.add(NewItem(r.id, {"id": r.id}, 0) for r, _ in bad)
            for row, reason in bad:
                record = self.kind.bad_record(row, reason)
                self.store.ack(row.id, "failed", record, now)
                self.stats.outcomes["failed"] += 1
        self.store.meta_set(_META_INPUT_NEXT, self._next_row)
        self.store.meta_set(_META_INPUT_DONE, self._input_done)

    # -- feeding the queue ---------------------------------------------------

    def _pump(self) -> None:
        """Keep the queue fed from the store, and the store from the input."""
        if self._stopping or self._closed:
            return
        width = max(self.queue.width, 1)
        if self._store_pending < 4 * width:
            self._read_input(max(1000, 8 * width))
        underway, pending = self.queue.size()
        want = 2 * width - pending
        if pending < width:  # refill in batches: one claim per ~width jobs
            claimed = self.store.claim(want, self.reactor.seconds(), lease=3600.0)
            self._store_pending = max(0, self._store_pending - len(claimed))
            arg = self.kind.arg
            for item in claimed:
                d = self.queue.put(
                    arg(item), item.priority, key=item.key, job_id=item.id
                )
                d.addCallbacks(self._succeeded, self._failed)
            underway, pending = self.queue.size()
        if self._input_done and not (underway or pending):
            counts = self.store.counts()
            if counts.pending == 0 and counts.claimed == 0:
                self._finish(EXIT_OK)

    def _pump_soon(self) -> None:
        """Pump once on the next reactor turn, however many jobs end now."""
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self.reactor.callLater(0, self._scheduled_pump)

    def _scheduled_pump(self) -> None:
        self._pump_scheduled = False
        self._pump()

    def _succeeded(self, job: Job) -> None:
        if self._closed:
            return
        kind = self.kind
        follow = kind.follow_ups(job)
        if follow:
            # In the same commit as this job's record: a crash can neither
            # lose the next page nor fetch it twice.
            self._store_pending += self.store.add(follow)
        self.store.ack(job.id, "ok", kind.record(job, "ok"), self.reactor.seconds())
        if kind.commit_each:
            self.store.flush()
        self._pump_soon()

    def _failed(self, failure: Failure) -> None:
        error = failure.value
        if not isinstance(error, JobError):
            failure.raiseException()
        if isinstance(error, JobCancelled) and self._stopping:
            return  # handed back to the store by stop()
        job = error.job
        if self._closed:
            return
        record = self.kind.record(job, "failed")
        self.store.ack(job.id, "failed", record, self.reactor.seconds())
        if self.kind.commit_each:
            self.store.flush()
        self._pump_soon()

    # -- running -----------------------------------------------------------

    def _tick(self) -> None:
        self.store.flush()
        self.output.catch_up(self.store)
        if self.display is not None:
            self.display.tick()

    def run(self) -> defer.Deferred[int]:
        """Run to the end (or to an interruption); fires with the exit code."""
        if self.store.meta_get(_META_FIRST_START) is None:
            self.store.meta_set(_META_FIRST_START, time.time())
            self.store.flush()
        self.store.release(self.reactor.seconds())
        self.output.rebuild(self.store)
        self._open_input()
        counts = self.store.counts()
        self.display = ProgressDisplay(self.stats, self.stream, self.progress_every)
        self._ticker.clock = self.reactor
        self._ticker.start(self.tick_seconds, now=False)
        if counts.finished:
            self._say(f"resuming: {counts.finished} done, {counts.pending} to do")
        if self.handle_signals:
            self._install_signals()
        if self.controller is not None:
            self.controller.attach(self.queue)
        self._pump()
        return self._finished

    def _write_report(self) -> None:
        if self.timeline is None or self.report_path is None:
            return
        recipe = self.recipe
        write_report(
            self.report_path,
            self.timeline,
            {"Summary": self.stats.summary()},
            title=f"fetchq run: {recipe.source.name}",
            meta={
                "recipe": str(recipe.source),
                "output": str(recipe.output.path),
                "width": describe_pace(recipe),
                "fetchq": __version__,
            },
        )
        self._say(f"report: {self.report_path}")

    def _say(self, text: str) -> None:
        if self.display is not None:
            self.display.console.print(text, highlight=False)

    def _install_signals(self) -> None:
        def handler(signum: int, frame: Any) -> None:
            self.reactor.callFromThread(self.interrupt, signum)

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, handler)

    def interrupt(self, signum: int) -> None:
        """Stop launching; on a second interrupt cancel underway jobs."""
        if self._stopping:
            self._say("second interrupt: cancelling underway jobs")
            self.queue.stop(cancel_underway=True)
            return
        self._stopping = True
        self._signal = signum
        self._say("interrupted: letting underway jobs finish (Ctrl-C again to cancel)")
        self.queue.stop().addCallback(self._stopped)

    def _stopped(self, unprocessed: list[Job]) -> None:
        now = self.reactor.seconds()
        for job in unprocessed:
            self.store.requeue(job.id, None, now)
        assert self._signal is not None
        self._say(
            f"state saved in {self.recipe.state.path}; resume with: "
            f"fetchq run {self.recipe.source}"
        )
        self._finish(EXIT_INTERRUPTED.get(self._signal, 130))

    def _finish(self, code: int) -> None:
        if self._closed:
            return
        self._closed = True
        if self._ticker.running:
            self._ticker.stop()
        if self.controller is not None:
            self.controller.detach()
        if not self.queue.stopped:
            self.queue.stop()  # nothing is left; this drops its timers
        self.store.flush()
        self.output.catch_up(self.store)
        self.output.close()
        if self.display is not None:
            self.display.close()
        self._write_report()
        self.store.close()
        self.kind.close().addBoth(lambda _: self._finished.callback(code))


FetchRun = Run
"""The name :class:`Run` had when ``fetch`` was the only kind."""
