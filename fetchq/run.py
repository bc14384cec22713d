"""``fetchq run``: a recipe's input, through a durable store and the queue,
to one output record per input row.

The flow, and what makes it safe to kill at any moment::

    input rows ──add──► store ──claim by lane──► queue ──► the kind's job
                 (with the input's  ▲                 │     function (fetcher,
                  checkpoint)       └── ack(record) ◄─┘     SMS sender, API caller)
    every tick: store.flush() (commit), then append the newly committed
    records to the output file.

- The store is the truth.  A record reaches the output file only after the
  commit that made it durable, so nothing shown as done is fetched again.
- On start the output file is rebuilt from the store's records, so after a
  crash (or kill -9) and a re-run every input row has exactly one record.
  Jobs that were underway when the process died come back (at-least-once).
- **Every row gets exactly one record, or the run says why and stops.**
  Rows are read by :class:`~fetchq.inputs.InputReader`; each batch of rows
  goes into the store in one write with the input's checkpoint (bytes read,
  their SHA-256), so a crash can neither lose rows nor add them twice.  A
  row that cannot be used (undecodable, unparsable, a duplicate id, a bad
  URL) is recorded as failed input (``BadInput``, naming ``file:line``).  An
  I/O error stops the run (exit 3) with the rows not read still to do.
- **Re-running.**  The next run goes on from the checkpoint: rows appended
  to the input since are read and run; an input whose part already read has
  changed is refused (:class:`~fetchq.inputs.InputChanged`, exit 2) unless
  the run starts afresh (``fresh=True``, ``--fresh``).  ``retry_failed``
  (``--retry-failed``) runs the failed rows again and keeps the ok ones.
- **Lanes never block each other.**  Work is claimed from the store *by
  lane* (a host, a sender, an endpoint): round the lanes, each with a small
  look-ahead, so input sorted by host runs like shuffled input.  A lane held
  for a while (a 429's Retry-After, a spent quota) hands its waiting jobs
  back to the store and is passed over until the hold ends.
- **A run that cannot succeed stops** instead of marking every row done: a
  *fatal* failure (credentials refused, a recipe wrong for the service; see
  :attr:`fetchq.errors.FetchqError.fatal`) stops launching and leaves the
  rows to do (exit 3); so does the failure breaker (``max_failures``, by
  default 50 failures in a row; exit 4), which keeps the failures of the
  streak to do as well.
- Ctrl-C or SIGTERM stops launching and lets underway jobs finish (a second
  Ctrl-C cancels them), commits, says how to resume, and exits 130 or 143.

What differs between recipe kinds (how a row becomes a job, which job
function runs it, what record it leaves, follow-up pages) is a
:class:`~fetchq.kinds.Kind`; :class:`Run` is the same for all of them.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from twisted.internet import defer, task
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from fetchq import __version__
from fetchq.breaker import DEFAULT as DEFAULT_MAX_FAILURES
from fetchq.breaker import FailureBreaker, MaxFailures
from fetchq.control import AdaptiveController, Controller, algorithm
from fetchq.errors import JobCancelled, JobError
from fetchq.events import Event, LaneHeld, LaneReleased, WidthChanged
from fetchq.fetch import FetchConfig, fetch_retry_policy
from fetchq.inputs import (
    Checkpoint,
    InputChanged,
    InputError,
    InputReader,
    InputRow,
    count_rows,
)
from fetchq.job import Job
from fetchq.kinds import BadRow, Kind
from fetchq.output import OutputFile
from fetchq.progress import ProgressDisplay, RunStats
from fetchq.queue import ResizableDispatchQueue
from fetchq.recipe import ApiRecipe, FetchRecipe, Recipe, SmsRecipe
from fetchq.recipe.model import AdaptiveSpec
from fetchq.report import Timeline, write_report
from fetchq.report.history import RunHistory, report_data
from fetchq.report.html import format_wall
from fetchq.secrets import reveal
from fetchq.store import Claimed, Counts, NewItem, SQLiteStore, as_deferred, when

__all__ = [
    "EXIT_FAILURES",
    "EXIT_FATAL",
    "EXIT_OK",
    "EXIT_PROBLEMS",
    "FetchRun",
    "Run",
    "fetch_config",
    "make_kind",
]

EXIT_OK = 0
"""The run ended: every row has its record (failed rows included)."""
EXIT_PROBLEMS = 2
"""Nothing was run: a bad recipe, or an input that changed since it was read."""
EXIT_FATAL = 3
"""The run stopped because it cannot succeed (credentials refused, a recipe
wrong for the service, an input that cannot be read on): rows are left to do."""
EXIT_FAILURES = 4
"""The failure breaker stopped the run (``max_failures``): rows left to do."""
EXIT_INTERRUPTED: dict[int, int] = {int(signal.SIGINT): 130, int(signal.SIGTERM): 143}

INVALID = "invalid"
"""The store outcome of a row recorded as bad input (its record says
``failed``): ``--retry-failed`` does not run it again, the input must change."""

_META_INPUT = "input.checkpoint"  # Checkpoint.to_json() of the rows stored
_META_INPUT_DONE = "input.done"  # the input was read to its end (then)
_META_INPUT_NEXT = "input.next_row"  # fetchq 0.1 states: rows stored so far
_META_FIRST_START = "run.first_started"  # wall clock, epoch seconds

_HISTORY_EVERY = 10.0  # seconds between saves of the run's history
_COUNTS_EVERY = 1.0  # seconds between counts asked of a remote store
_ENDED = {
    0: "finished",
    2: "problems",
    3: "stopped: cannot go on",
    4: "stopped: failures",
    130: "interrupted",
    143: "terminated",
}
_LANE_NAMES = {"fetch": "host", "sms": "sender", "api": "endpoint"}

_LANE_AHEAD = 2.0  # seconds of a rate-limited lane's launches claimed ahead
_CHUNK = 1000  # rows read into the store in one write
_CHUNK_SECONDS = 0.01  # most time one read of the input holds the reactor
_LEASE = 3600.0  # one process owns a state file: leases only guard a crash
_WITHDRAW_AFTER = 1.0  # a lane held this long hands its waiting jobs back
CANCELLED = "cancelled"
"""The store outcome of a row an operator cancelled (``fetchq ctl cancel``)."""

log = Logger(namespace="fetchq.run")


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
    """The fetcher's configuration from a recipe's ``fetch`` section.  The
    bodies directory, if any, is created here (the run is starting)."""
    spec = recipe.fetch
    body = spec.body
    save = spec.save_bodies
    if save is not None:
        save.dir.mkdir(parents=True, exist_ok=True)
    return FetchConfig(
        method=spec.method,
        headers=tuple(spec.headers.items()),  # Secrets kept: the fetcher
        params=tuple(spec.params.items()),  # reveals them only to send
        body=None if body is None else reveal(body).encode(),
        connect_timeout=spec.connect_timeout,
        headers_timeout=spec.headers_timeout,
        body_timeout=spec.body_timeout,
        timeout=spec.timeout,
        max_body=spec.max_body,
        max_redirects=spec.max_redirects,
        allow_private=spec.allow_private,
        ok_statuses=spec.ok_statuses,
        retry_statuses=spec.retry_statuses,
        throttle_statuses=spec.throttle_statuses,
        max_retry_after=recipe.retry.max_delay,
        save_dir=None if save is None else str(save.dir),
        save_name="sha256" if save is None else save.name,
        proxy=spec.proxy,
        trust_env=spec.trust_env,
        no_proxy=None if spec.no_proxy is None else tuple(spec.no_proxy),
        ca_bundle=spec.tls.ca_bundle,
        client_cert=spec.tls.client_cert,
        client_key=spec.tls.client_key,
        verify=spec.tls.verify,
        host_headers=tuple(
            (host, tuple(headers.items()))
            for host, headers in spec.host_headers.items()
        ),
        robots=spec.robots,
        http=spec.http,
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


def _one_line(error: object) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _shown(path: Path) -> str:
    """A path as a message shows it: relative to here when under it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if relative.startswith("..") else relative


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
        fresh: start over: forget everything the state holds first.
        retry_failed: run the rows that failed again (their records are
            replaced); ok rows and bad input are kept.
        max_failures: when to stop for failures (default: the recipe's
            ``run.max_failures``, else 50 in a row).
        read_ahead: most pending rows in the store before reading more of
            the input (None: read it all, in chunks, as the run goes; a
            durable store holds them on disk).
        limit: read at most this many rows of the input in this run (the
            first ones on a fresh start, else the next ones after those
            earlier runs read); the rest stay unread, the input is not
            marked finished, and the next run goes on from there.  Rows
            earlier runs read and left to do are run too.
    """

    def __init__(
        self,
        recipe: Recipe,
        reactor: Any,
        stream: IO[str] | None = None,
        tick: float = 0.2,
        progress_every: float = 5.0,
        handle_signals: bool = False,
        store: Any = None,
        report: Path | None = None,
        kind: Kind | None = None,
        *,
        fresh: bool = False,
        retry_failed: bool = False,
        max_failures: MaxFailures | None = None,
        read_ahead: int | None = None,
        limit: int | None = None,
    ) -> None:
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise ValueError(f"limit must be an integer >= 1 or None, not {limit!r}")
        self.limit = limit
        self._rows_read = 0  # rows of the input read by this run
        self._limited = False  # the limit ended reading: the input is not done
        self.recipe = recipe
        self.reactor = reactor
        self.stream = stream
        self.tick_seconds = tick
        self.progress_every = progress_every
        self.handle_signals = handle_signals
        self.fresh = fresh
        self.retry_failed = retry_failed
        self.read_ahead = read_ahead
        if max_failures is None:
            max_failures = getattr(
                getattr(recipe, "run", None), "max_failures", DEFAULT_MAX_FAILURES
            )
        assert max_failures is not None
        self.breaker = FailureBreaker(max_failures)
        if store is None and recipe.state.url is None:
            recipe.state.path.parent.mkdir(parents=True, exist_ok=True)
            store = SQLiteStore(recipe.state.path, durability=recipe.state.durability)
        self.store: Any = store  # a SharedRun connects to Redis when it starts
        width = recipe.queue.width
        adaptive = recipe.queue.adaptive
        self.controller: Controller | None = (
            None if adaptive is None else make_controller(adaptive)
        )
        pool = width if adaptive is None else max(width, adaptive.max_width)
        if kind is None:
            kind = make_kind(recipe, reactor, self._first_started, pool)
        self.kind = kind
        self.queue = ResizableDispatchQueue(
            kind.job, **self._queue_kwargs(), retry=kind.retry, clock=reactor
        )
        kind.bind(self.queue)
        self.output = OutputFile(recipe.output.path)
        self.stats = RunStats(reactor)
        self.queue.subscribe(self.stats)
        self.queue.subscribe(self._on_event)
        self.report_path = report
        # Kept whether a report is asked for or not: it goes into the run's
        # history, so a later run's report covers this one too.
        self.timeline: Timeline | None = Timeline(reactor)
        self.timeline.start(self.queue)
        self.queue.subscribe(self.timeline)
        self._wall_start = time.time()
        self.history: RunHistory | None = None  # made when the store is open
        self._history_at = reactor.seconds()
        self._history_saving = False
        self._counts_at = -_COUNTS_EVERY
        self._counting = False
        self._remote_counts = False
        self._final: tuple[dict[str, Any], dict[str, Any]] | None = None
        self.resume_hint = f"fetchq run {recipe.source}"
        """The command that resumes the run, as the interrupted run says it."""
        self._reader: InputReader | None = None
        self._rows: Iterator[InputRow] | None = None
        self._skip_below = 0  # rows a fetchq 0.1 state already holds
        self._input_done = False
        self._read_scheduled = False
        self._reading = False
        self._claiming = False
        self._first_start: float | None = None
        self._lease = _LEASE
        self._stream_output = True  # write records as they are committed
        self._in_queue: dict[Any, int] = {}  # lane -> jobs put, not finished
        self._held: dict[Any, float] = {}  # lane -> hold end (clock time)
        self._streak: list[tuple[str, Any]] = []  # failures held back
        self._stopping = False
        self._exit = EXIT_OK
        self._signal: int | None = None
        self._finished: defer.Deferred[int] = defer.Deferred()
        self._closed = False  # set once _finish starts closing the store
        self._pump_scheduled = False
        self._later: list[Any] = []  # pumps at the ends of holds
        self._cancelling: set[str] = set()  # rows an operator cancelled
        self.display: ProgressDisplay | None = None  # made by run()
        self._ticker = task.LoopingCall(self._tick)

    def _queue_kwargs(self) -> dict[str, Any]:
        """The local queue's limits: the recipe's pace."""
        return dict(self.recipe.queue.queue_kwargs())

    # -- input -------------------------------------------------------------

    async def _open_input(self) -> None:
        """Open the input where the state says the rows stored end.

        Raises:
            InputChanged: the part already read is not what it was.
            InputError: the input cannot be read.
        """
        spec = self.recipe.input
        store = self.store
        start = Checkpoint.from_json(await as_deferred(store.meta_get(_META_INPUT)))
        if start is None:
            self._skip_below = int(
                await as_deferred(store.meta_get(_META_INPUT_NEXT, 0))
            )
        reader = InputReader(
            spec.path,
            spec.format,
            getattr(spec, "url_field", None),
            spec.priority_field,
            spec.id_field,
            start=start,
            name=_shown(spec.path),
        )
        try:
            reader.verify()
        except BaseException:
            reader.close()
            raise
        self._reader = reader
        self._rows = iter(reader)

    def _first_started(self) -> float | None:
        """When this recipe's first run started (wall clock; read at start)."""
        return self._first_start

    def _read_chunk(self, limit: int, seconds: float | None = None) -> Any:
        """Read up to ``limit`` rows (fewer if reading them takes more than
        ``seconds``) into the store, in one write with the input's
        checkpoint: good rows as pending items, bad rows (and rows whose id
        an earlier row has) as failed input.  Returns None, or a Deferred
        that fires once the rows are stored."""
        rows = self._rows
        reader = self._reader
        if self._input_done or rows is None or reader is None:
            return None
        kind = self.kind
        batch: list[tuple[InputRow, NewItem | str]] = []
        error: InputError | None = None
        deadline = None if seconds is None else time.perf_counter() + seconds
        try:
            for row in rows:
                if row.index < self._skip_below:
                    continue  # stored by an earlier run that kept no checkpoint
                self._rows_read += 1
                if row.error is not None:
                    batch.append((row, row.error))
                else:
                    try:
                        batch.append((row, kind.item(row)))
                    except BadRow as e:
                        batch.append((row, f"{reader.name}:{row.line}: {e}"))
                if self.limit is not None and self._rows_read >= self.limit:
                    self._limited = self._input_done = True  # no more this run
                    break
                if len(batch) >= limit:
                    break
                if (
                    deadline is not None
                    and not len(batch) & 63
                    and time.perf_counter() > deadline
                ):
                    break  # the reactor has other work: the rest next turn
            else:
                self._input_done = True
        except InputError as e:
            error = e
        meta = {
            _META_INPUT: reader.checkpoint().to_json(),
            _META_INPUT_DONE: self._input_done and not self._limited,
        }

        def store_rows(taken: set[str]) -> Any:
            items = self._items(batch, reader.name, taken)
            added = self.store.add(items, meta=meta, **self._add_options())
            return when(added, lambda _: stored(items))

        def stored(items: list[NewItem]) -> None:
            for item in items:
                if item.outcome is not None:
                    self.stats.bad_input(item.id, item.record)
            if self.kind.commit_each:
                self._watch(self.store.flush())
            if error is not None:
                self._stop(EXIT_FATAL, f"input: {error}")

        if self.recipe.input.id_field is None:
            return store_rows(set())
        ids = [item.id for _, item in batch if isinstance(item, NewItem)]
        return when(self.store.known(ids), store_rows)

    def _add_options(self) -> dict[str, Any]:
        """Extra keyword arguments for the store's ``add`` of input rows."""
        return {}

    def _items(
        self,
        batch: list[tuple[InputRow, NewItem | str]],
        name: str,
        taken: set[str],
    ) -> list[NewItem]:
        """The store items of a batch of rows: an id that an earlier row (in
        the store: ``taken``, or earlier in the batch) has makes the row bad
        input, recorded under its row number (``#N``)."""
        if self.recipe.input.id_field is not None:
            for n, (row, item) in enumerate(batch):
                if not isinstance(item, NewItem):
                    continue
                if item.id in taken:
                    reason = (
                        f"{name}:{row.line}: duplicate id {item.id!r} "
                        "(an earlier row has it)"
                    )
                    batch[n] = (
                        InputRow(
                            row.index,
                            f"#{row.index}",
                            row.url,
                            row.priority,
                            row.extra,
                            line=row.line,
                        ),
                        reason,
                    )
                else:
                    taken.add(item.id)
        kind = self.kind
        items: list[NewItem] = []
        for row, item in batch:
            if isinstance(item, NewItem):
                items.append(item)
            else:
                record = kind.bad_record(row, item)
                items.append(
                    NewItem(row.id, {"id": row.id}, outcome=INVALID, record=record)
                )
        return items

    def _read_soon(self) -> None:
        """Read the next chunk on a later reactor turn (so fetching goes on
        while a long input is stored)."""
        if not (self._read_scheduled or self._input_done or self._stopping):
            self._read_scheduled = True
            self.reactor.callLater(0, self._read_more)

    def _read_more(self) -> None:
        self._read_scheduled = False
        if self._input_done or self._stopping or self._closed or self._reading:
            return
        if self._rows is None:
            return  # another process reads the input
        self._reading = True

        def read(counts: Counts | None) -> Any:
            ahead = self.read_ahead
            if counts is not None and ahead is not None and counts.pending >= ahead:
                return None  # the pump calls again as the store drains
            return when(self._read_chunk(_CHUNK, _CHUNK_SECONDS), lambda _: True)

        def done(more: Any) -> None:
            self._reading = False
            if more and not self._closed:
                self._pump()
                self._read_soon()

        counts = None if self.read_ahead is None else self.store.counts()
        self._watch(when(when(counts, read), done))

    # -- feeding the queue ---------------------------------------------------

    def _skip(self, now: float, cap: int) -> set[Any]:
        """Lanes not to claim for now: held ones, and those whose waiting
        jobs already fill their look-ahead."""
        held = self._held
        for key in [k for k, until in held.items() if until <= now]:
            del held[key]
        skip = set(held)
        queue = self.queue
        for key, n in self._in_queue.items():
            if n >= cap:
                info = queue.lane(key)
                if info is not None and info.pending >= cap:
                    skip.add(key)
        return skip

    def _pump(self) -> None:
        """Keep the queue fed from the store, and the store from the input."""
        if self._stopping or self._closed:
            return
        if not self._claiming:
            request = self._claim_request()
            if request is not None:
                self._claiming = True
                claimed = self.store.claim(**request)
                result = when(claimed, self._put_claimed)
                if isinstance(result, defer.Deferred):
                    result.addErrback(self._claim_failed)
        self._check_finished()

    def _claim_request(self) -> dict[str, Any] | None:
        """The arguments of the next claim, or None if the queue is full
        enough."""
        queue = self.queue
        width = max(queue.width, 1)
        _, pending = queue.size()
        if pending >= width:  # refill in batches: one claim per ~width jobs
            return None
        now = self.reactor.seconds()
        cap = queue.lane_width or width
        rate = queue.lane_rate
        if rate is not None:
            # A lane launches no faster than its rate: more than two seconds
            # of its jobs would only wait in the queue, and hold places
            # (``pending >= width``) that other lanes' claims need.
            cap = min(cap, max(2, math.ceil(_LANE_AHEAD * rate)))
        return {
            "limit": 2 * width - pending,
            "now": now,
            "lease": self._lease,
            "per_lane": cap,
            "skip": self._skip(now, cap),
        }

    def _put_claimed(self, claimed: list[Claimed]) -> None:
        """Put claimed items into the queue."""
        self._claiming = False
        if self._closed or self._stopping:
            now = self.reactor.seconds()
            for item in claimed:  # not ours to run any more: back they go
                self._watch(self.store.requeue(item.id, None, now))
            return
        queue = self.queue
        arg = self.kind.arg
        in_queue = self._in_queue
        for item in claimed:
            key = item.key
            in_queue[key] = in_queue.get(key, 0) + 1
            d = queue.put(arg(item), item.priority, key=key, job_id=item.id)
            d.addCallbacks(self._succeeded, self._failed)
        if not self._input_done and self.read_ahead is not None:
            self._read_soon()
        self._claimed_now(claimed)

    def _claimed_now(self, claimed: list[Claimed]) -> None:
        """After a claim (a hook for runs that wait between claims)."""

    def _claim_failed(self, failure: Failure) -> None:
        self._claiming = False
        self._store_failed(failure)

    def _check_finished(self) -> None:
        """Finish if the input is read and every row is done."""
        if not self._input_done or self._closed:
            return
        underway, pending = self.queue.size()
        if underway or pending:
            return
        counts = self.store.counts()
        if counts.pending == 0 and counts.claimed == len(self._streak):
            self._ack_streak()
            if self._limited:
                self._say(
                    f"--limit {self.limit}: read {self._rows_read} rows of the "
                    "input; the rest is unread: run again (without --limit for "
                    "all of it) to go on"
                )
            self._finish(EXIT_OK)

    def _watch(self, result: Any) -> Any:
        """A store call whose result nobody waits for: report its failure."""
        if isinstance(result, defer.Deferred):
            result.addErrback(self._store_failed)
        return result

    def _store_failed(self, failure: Failure) -> None:
        """A store operation failed for good: stop, rows left to do."""
        if self._closed:
            return
        self._stop(EXIT_FATAL, f"state: {_one_line(failure.value)}")

    def _pump_soon(self) -> None:
        """Pump once on the next reactor turn, however many jobs end now."""
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self.reactor.callLater(0, self._scheduled_pump)

    def _scheduled_pump(self) -> None:
        self._pump_scheduled = False
        self._pump()

    def _on_event(self, event: Event) -> None:
        """A lane held for a while hands its waiting jobs back to the store
        and is passed over by claims until the hold ends.  A wider queue or
        lane is fed at once (an operator's change takes effect now, not when
        the next job ends)."""
        if event.__class__ is WidthChanged:
            assert isinstance(event, WidthChanged)
            if (event.new or 0) > (event.old or 0) or event.new is None:
                self._pump_soon()
            return
        if event.__class__ is LaneReleased:
            assert isinstance(event, LaneReleased)
            if event.key is not None and event.key in self._held:
                del self._held[event.key]
                self._pump_soon()
            return
        if event.__class__ is not LaneHeld:
            return
        assert isinstance(event, LaneHeld)
        key = event.key
        if key is None or self._closed:
            return
        self._held[key] = max(self._held.get(key, 0.0), event.until)
        wait = event.until - event.time
        if wait >= _WITHDRAW_AFTER:
            # Not from inside the queue's own call that held the lane.
            self.reactor.callLater(0, self._withdraw, key)
        later = [call for call in self._later if call.active()]
        later.append(self.reactor.callLater(wait, self._pump_soon))
        self._later = later

    def _withdraw(self, key: Any) -> None:
        if self._closed or self._stopping:
            return
        jobs = self.queue.withdraw(key)
        if not jobs:
            return
        now = self.reactor.seconds()
        for job in jobs:
            self._watch(self.store.requeue(job.id, job.not_before, now))
        self._lane_done(key, len(jobs))
        self._pump_soon()

    def _lane_done(self, key: Any, n: int = 1) -> None:
        in_queue = self._in_queue
        left = in_queue.get(key, 0) - n
        if left > 0:
            in_queue[key] = left
        else:
            in_queue.pop(key, None)

    # -- jobs ending ---------------------------------------------------------

    def _succeeded(self, job: Job) -> None:
        if self._closed:
            return
        self._lane_done(job.key)
        kind = self.kind
        self.breaker.succeeded()
        self._ack_streak()
        follow = kind.follow_ups(job)
        if follow:
            # In the same commit as this job's record: a crash can neither
            # lose the next page nor fetch it twice.
            self._watch(self.store.add(follow))
        record = kind.record(job, "ok")
        self._watch(self.store.ack(job.id, "ok", record, self.reactor.seconds()))
        if kind.commit_each:
            self._watch(self.store.flush())
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
        self._lane_done(job.key)
        now = self.reactor.seconds()
        if isinstance(error, JobCancelled) and job.id in self._cancelling:
            self._cancelling.discard(job.id)
            self._ack_as(job.id, CANCELLED, self.kind.record(job, CANCELLED), now)
            self._pump_soon()
            return
        cause = None if job.failure is None else job.failure.value
        if getattr(cause, "fatal", False):
            self._leave_to_do(job.id, now)
            self._stop(EXIT_FATAL, self._fatal_message(cause))
            return
        if self._exit == EXIT_FAILURES:
            self._leave_to_do(job.id, now)  # one more of the streak
            return
        record = self.kind.record(job, "failed")
        if getattr(cause, "neutral", False):
            # The row's own outcome (robots.txt disallows it), which says
            # nothing of the run: recorded, not counted by the breaker.
            self._ack(job.id, record, now)
            self._pump_soon()
            return
        trip = self.breaker.fail()
        if self.breaker.limit.in_a_row is not None:
            self._streak.append((job.id, record))
        else:
            self._ack(job.id, record, now)
        if trip is not None:
            self._stop(EXIT_FAILURES, self._breaker_message(trip, cause))
            return
        self._pump_soon()

    def _leave_to_do(self, item_id: str, now: float) -> None:
        """A job that failed is not recorded: back to the store, to do."""
        self._watch(self.store.requeue(item_id, None, now))
        self.stats.left_to_do()

    def _ack(self, item_id: str, record: Any, now: float) -> None:
        self._ack_as(item_id, "failed", record, now)

    def _ack_as(self, item_id: str, outcome: str, record: Any, now: float) -> None:
        self._watch(self.store.ack(item_id, outcome, record, now))
        if self.kind.commit_each:
            self._watch(self.store.flush())

    def cancel(self, item_id: str) -> Any:
        """Cancel one row for good (an operator's ``cancel``): a job of it
        in the queue is cancelled (an underway one is interrupted); a row
        still waiting in the store is recorded there at once.  Its record
        says ``cancelled``; the failure breaker does not count it.

        Returns:
            True if the row was cancelled, False if it is already done; or a
            Deferred of that (a network store).

        Raises:
            KeyError: the run has no such row.
        """
        for job in [*self.queue.underway(), *self.queue.pending()]:
            if job.id == item_id:
                self._cancelling.add(item_id)
                job.cancel()
                return True
        now = self.reactor.seconds()
        record = {"id": item_id, "outcome": CANCELLED, "error": "cancelled"}

        def acked(moved: bool) -> bool:
            if moved:
                log.info("row {id} cancelled", id=item_id, event="job.cancelled")
                if self.kind.commit_each:
                    self._watch(self.store.flush())
            return moved

        # Not watched: an unknown id is the caller's KeyError, not the run's.
        return when(self.store.ack(item_id, CANCELLED, record, now), acked)

    def _ack_streak(self) -> None:
        """The failures held back were the rows' own: record them."""
        if self._streak:
            now = self.reactor.seconds()
            streak, self._streak = self._streak, []
            for item_id, record in streak:
                self._ack(item_id, record, now)

    def _fatal_message(self, error: Any) -> str:
        name = getattr(error, "name", type(error).__name__)
        text = f"{name}: {error}"
        fix = getattr(error, "fix", "")
        if fix:
            text += f"; {fix}"
        return f"cannot go on: {text}"

    def _breaker_message(self, trip: str, error: Any) -> str:
        limit = self.breaker.limit.describe()
        last = ""
        if error is not None:
            last = f" (the last: {getattr(error, 'name', type(error).__name__)}"
            last += f": {error})"
        return (
            f"stopping: {trip}{last}, past max_failures {limit}; "
            "check the failures, then run again (--max-failures 0 never stops)"
        )

    def _stop(self, code: int, message: str) -> None:
        """Stop launching because the run cannot succeed: what is underway
        finishes, everything else is left to do."""
        if self._stopping:
            return
        self._stopping = True
        self._exit = code
        self._say(f"fetchq: {message}")
        log.emit(
            LogLevel.error if code in (EXIT_FATAL, EXIT_FAILURES) else LogLevel.info,
            "run stopping: {message}",
            event="run.stopping",
            code=code,
            message=message,
        )
        now = self.reactor.seconds()
        streak, self._streak = self._streak, []
        for item_id, _ in streak:
            self._leave_to_do(item_id, now)
        self.queue.stop().addCallback(self._stopped)

    # -- running -----------------------------------------------------------

    def _tick(self) -> None:
        self._watch(self.store.flush())
        if self._stream_output:
            self.output.catch_up(self.store)
        self._observe_store()
        if self.display is not None:
            self.display.tick()
        if self.reactor.seconds() - self._history_at >= _HISTORY_EVERY:
            self._save_history_soon()
        self._pump()

    # -- progress and history ------------------------------------------------

    def _count_input(self) -> None:
        """The input's rows, counted (streaming) for the progress total."""
        spec = self.recipe.input
        try:
            found = count_rows(spec.path, spec.format)
        except (OSError, ValueError):
            return  # unknown until the input is read: no ETA meanwhile
        self.stats.set_total(found.rows, found.exact)

    def _observe_store(self) -> None:
        """Give the stats the store's counts (the whole run's progress); a
        remote store's at most every second, one question at a time."""
        now = self.reactor.seconds()
        if self._counting or self._closed:
            return
        if self._remote_counts and now - self._counts_at < _COUNTS_EVERY:
            return
        counts = self.store.counts()
        if isinstance(counts, defer.Deferred):
            self._remote_counts = True
            self._counting = True
            self._counts_at = now

            def got(value: Counts) -> None:
                self._counting = False
                self._observed(value)

            def failed(_: Failure) -> None:
                self._counting = False  # progress waits; the run goes on

            counts.addCallbacks(got, failed)
            return
        self._observed(counts)

    def _observed(self, counts: Counts) -> None:
        self.stats.observe(counts)
        if self._input_done and not (self.stats.total_exact and self.stats.total):
            self.stats.set_total(counts.total)

    def _save_history_soon(self) -> None:
        if self._history_saving or self._closed:
            return
        self._history_at = self.reactor.seconds()
        saving = self._save_history(None)
        if saving is not None:
            self._history_saving = True

            def saved(_: object) -> None:
                self._history_saving = False

            saving.addBoth(saved)

    def _save_history(self, ended: str | None) -> defer.Deferred[None] | None:
        """Save this run's segment of the history (None while it has done
        nothing: a run with nothing left to do adds no segment)."""
        history = self.history
        timeline = self.timeline
        stats = self.stats
        if history is None or timeline is None:
            return None
        if not stats.outcomes and not stats.lanes:
            return None
        figures, events = stats.to_json(), timeline.to_json()
        if ended is not None:
            self._final = (figures, events)  # the report shows the same
        return history.save(figures, events, ended)

    def run(self) -> defer.Deferred[int]:
        """Run to the end (or to an interruption); fires with the exit code."""
        self.display = ProgressDisplay(self.stats, self.stream, self.progress_every)
        started = defer.Deferred.fromCoroutine(self._start())
        started.addErrback(self._start_failed)
        return self._finished

    def _start_failed(self, failure: Failure) -> None:
        self._say(f"fetchq: {_one_line(failure.value)}")
        self._finish(EXIT_FATAL)

    async def _start(self) -> None:
        store = self.store
        if self.fresh:
            await as_deferred(store.reset())
            self._say("starting afresh: the state of earlier runs is forgotten")
        first = await as_deferred(store.meta_get(_META_FIRST_START))
        if first is None:
            first = time.time()
            await as_deferred(store.meta_set(_META_FIRST_START, first))
            await as_deferred(store.flush())
        self._first_start = float(first)
        now = self.reactor.seconds()
        await self._release(now)
        if self.retry_failed:
            again = await as_deferred(store.reopen("failed", now))
            await as_deferred(store.flush())
            self._say(f"retrying {again} failed rows")
        if self._stream_output:
            self.output.rebuild(store)
        try:
            await self._open_input()
        except InputChanged as e:
            self._say(f"fetchq: {e}; to start over, run with --fresh")
            self._finish(EXIT_PROBLEMS)
            return
        except InputError as e:
            self._say(f"fetchq: input: {e}")
            self._finish(EXIT_FATAL)
            return
        counts = await as_deferred(store.counts())
        self._count_input()
        self._observed(counts)
        self.history = RunHistory(store, self._wall_start)
        self._ticker.clock = self.reactor
        self._ticker.start(self.tick_seconds, now=False)
        if counts.finished:
            self._say(f"resuming: {counts.finished} done, {counts.pending} to do")
            log.info(
                "run resumed: {done} done, {to_do} to do",
                event="run.resumed",
                done=counts.finished,
                to_do=counts.pending,
            )
        else:
            log.info("run started", event="run.started")
        for warning in getattr(self.kind, "warnings", ()):
            self._say(f"fetchq: WARNING: {warning}")
            self.stats.warnings.append(warning)
        if self.handle_signals:
            self._install_signals()
        if self.controller is not None:
            self.controller.attach(self.queue)
        await as_deferred(self._read_chunk(_CHUNK))
        self._pump()
        self._read_soon()

    async def _release(self, now: float) -> None:
        """Claims a crashed earlier run left: back to pending at once (one
        process owns a local state)."""
        await as_deferred(self.store.release(now))

    async def _write_report(self, counts: Counts | None) -> None:
        """The report of the whole run: this run's segment and every earlier
        one's (and, on Redis, other workers')."""
        if self.timeline is None or self.report_path is None:
            return
        recipe = self.recipe
        history = self.history
        segments: list[dict[str, Any]] = []
        if history is not None:
            try:
                segments = await history.segments()
            except Exception as e:
                self._say(f"fetchq: the run's history cannot be read: {_one_line(e)}")
        own = None if history is None else history.sid
        figures, events = self._final or (self.stats.to_json(), self.timeline.to_json())
        if not segments:
            segments = [{"sid": own, "started": self._wall_start}]
        data = report_data(segments, own, events, figures)
        rows = data["history"]
        elapsed = sum(float(row["elapsed"]) for row in rows)
        meta: dict[str, Any] = {
            "recipe": str(recipe.source),
            "output": str(recipe.output.path),
        }
        if rows and rows[0]["started"] is not None:
            meta["started"] = format_wall(float(rows[0]["started"]))
        runs = sum(int(row["runs"]) for row in rows)
        meta["elapsed"] = f"{elapsed:.1f}s" + (f" over {runs} runs" if runs > 1 else "")
        meta["pace"] = describe_pace(recipe)
        meta["fetchq"] = __version__
        write_report(
            self.report_path,
            data["timeline"],
            title=f"fetchq run: {recipe.source.name}",
            meta=meta,
            stats=data["stats"],
            history=rows,
            counts=counts,
            lane_name=_LANE_NAMES.get(recipe.kind, "lane"),
        )
        self._say(f"report: {self.report_path}")

    def _say(self, text: str) -> None:
        if self.display is not None:
            self.display.console.print(text, highlight=False, markup=False)

    def _install_signals(self) -> None:
        def handler(signum: int, frame: Any) -> None:
            self.reactor.callFromThread(self.interrupt, signum)

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, handler)

    def interrupt(self, signum: int) -> None:
        """Stop launching; on a second interrupt cancel underway jobs."""
        if self._signal is not None or self._stopping:
            if self._signal is None:
                self._signal = signum
            self._say("second interrupt: cancelling underway jobs")
            self.queue.stop(cancel_underway=True)
            return
        self._stopping = True
        self._signal = signum
        self._exit = EXIT_INTERRUPTED.get(signum, 130)
        self._ack_streak()
        self._say("interrupted: letting underway jobs finish (Ctrl-C again to cancel)")
        log.info(
            "run stopping: signal {signal}", event="run.stopping", signal=int(signum)
        )
        self.queue.stop().addCallback(self._stopped)

    def _stopped(self, unprocessed: list[Job]) -> None:
        now = self.reactor.seconds()
        for job in unprocessed:
            self._watch(self.store.requeue(job.id, None, now))

        def say(counts: Counts) -> None:
            left = counts.pending + counts.claimed
            more = "" if self._input_done else " (and the rest of the input)"
            self._say(
                f"state saved in {self._where()}; {left} rows left to do{more}; "
                f"resume with: {self.resume_hint}"
            )
            self._finish(self._exit)

        flushed = when(self.store.flush(), lambda _: self.store.counts())
        self._watch(when(flushed, say))

    def _where(self) -> str:
        """Where the state is, for messages."""
        return str(self.recipe.state.path)

    def _finish(self, code: int) -> None:
        if self._closed:
            return
        self._closed = True
        if self._ticker.running:
            self._ticker.stop()
        for call in self._later:
            if call.active():
                call.cancel()
        if self.controller is not None:
            self.controller.detach()
        if not self.queue.stopped:
            self.queue.stop()  # nothing is left; this drops its timers
        closing = defer.Deferred.fromCoroutine(self._close(code))
        closing.addErrback(lambda f: self._close_failed(f, code))

    async def _close(self, code: int) -> None:
        try:
            await as_deferred(self._save_history(_ENDED.get(code, f"exit {code}")))
        except Exception as e:
            self._say(f"fetchq: the run's history was not saved: {_one_line(e)}")
        await as_deferred(self.store.flush())
        log.info("run finished: exit {code}", event="run.finished", code=code)
        await self._write_output(code)
        self.output.close()
        if self._reader is not None:
            self._reader.close()
        counts: Counts | None = None
        try:
            counts = await as_deferred(self.store.counts())
        except Exception:
            counts = None  # the summary says this run's figures only
        if counts is not None:
            self._observed(counts)
        if self.display is not None:
            self.display.close()
        await self._write_report(counts)
        await as_deferred(self.store.close())
        await self.kind.close()
        self._finished.callback(code)

    async def _write_output(self, code: int) -> None:
        """The output's last records."""
        if self._stream_output:
            self.output.catch_up(self.store)

    def _close_failed(self, failure: Failure, code: int) -> None:
        self._say(f"fetchq: while closing: {_one_line(failure.value)}")
        if not self._finished.called:
            self._finished.callback(code if code != EXIT_OK else EXIT_FATAL)


FetchRun = Run
"""The name :class:`Run` had when ``fetch`` was the only kind."""
