"""``fetchq sms status RECIPE``: what became of each message a run sent.

The provider's 201 says a message was *accepted*; whether it reached the
phone is known later.  This command reads the run's state, and for every
message with a sid whose record has no final ``delivery`` yet, reads its
status (``GET .../Messages/{sid}.json``) and adds it to the message's record
as ``delivery``::

    {"id": "m1", "sid": "SM...", "status": "queued", "outcome": "ok", ...,
     "delivery": {"status": "undelivered", "final": true, "error_code": 30003,
                  "error_message": "Unreachable destination handset",
                  "date_sent": "...", "date_updated": "...", "price": "-0.0079",
                  "price_unit": "USD", "checked_at": 1767225600.0}}

then rewrites the output file from the state, so each message still has
exactly one line, now with its delivery.

- **Paced like the run.**  Reads go through a queue with the recipe's
  ``queue.width`` (the account's requests in flight) and ``queue.rate``;
  the per-sender pace is for sending and does not apply.  A 429 / 20429
  holds every read for the provider's delay; timeouts, lost connections and
  5xx answers are retried with the recipe's ``retry`` backoff (a read
  changes nothing, so retrying is always safe).  Credentials refused stop
  the check (exit 3).
- **Resumable and idempotent.**  A final status (``delivered``,
  ``undelivered``, ``failed``, ...) is kept in the state and never read
  again; any other (``queued``, ``sending``, ``sent``) is written too, and
  read again by the next invocation.  A message whose status could not be
  read (after the retries) keeps its record as it was and is tried again
  next time.  Interrupting (Ctrl-C) keeps what was read.
- **Waiting.**  ``wait`` (``--wait 10m``) checks again every ``every``
  seconds (``--every``, default 30 s) until every message is final or the
  wait is over; ``sent`` can be final in practice where carriers send no
  receipts, so the wait is a cap, not a promise.
- A message the provider does not know (404, code 20404: deleted, or sent
  from another account) gets ``delivery.status: not_found``, final.

A local state file must not be in use by a run at the same time (it is
locked while the run goes); with ``state.url`` (Redis) the records are read
and amended in Redis, and the output is written from Redis as ``fetchq
output`` writes it (safe beside a running run: each amend is one script).
"""

from __future__ import annotations

import signal
from collections import Counter
from typing import IO, Any

from twisted.internet import defer, task
from twisted.python.failure import Failure

from fetchq.errors import JobError
from fetchq.output import OutputFile
from fetchq.queue import ResizableDispatchQueue
from fetchq.recipe import SmsRecipe
from fetchq.sms import ProviderRejected, SmsSender
from fetchq.sms.status import Delivery, delivery_retry_policy, is_final
from fetchq.store import SQLiteStore, as_deferred

__all__ = ["EXIT_FATAL", "EXIT_OK", "DeliveryCheck", "Target"]

EXIT_OK = 0
"""Every status that could be read was written (final or not)."""
EXIT_PROBLEMS = 2
"""The state could not be reached (Redis down, credentials refused)."""
EXIT_FATAL = 3
"""The provider refused our credentials: nothing more can be read."""
EXIT_INTERRUPTED = {int(signal.SIGINT): 130, int(signal.SIGTERM): 143}

_NOT_FOUND = 20404
_PAGE = 5000  # records read from the state at a time


class Target:
    """A message to check: its state id, sid and current record."""

    __slots__ = ("id", "record", "sid")

    def __init__(self, item_id: str, sid: str, record: dict[str, Any]) -> None:
        self.id = item_id
        self.sid = sid
        self.record = record


class DeliveryCheck:
    """One ``fetchq sms status`` (see the module docstring).

    Args:
        recipe: a loaded ``kind: sms`` recipe.
        reactor: time and sockets.
        stream: where progress and the summary go (default: nothing).
        wait: seconds to keep checking messages whose status is not final
            (None: one pass).
        every: seconds between passes while waiting.
        store: the run's state (default: the recipe's state file, which
            must exist, or its Redis run with ``state.url``).
        http: a treq-like client (tests pass a ``StubTreq``).
        handle_signals: take over SIGINT/SIGTERM (the command does).
        progress_every: seconds between progress lines within a pass.

    Raises:
        ValueError: for a state file that does not exist (nothing was sent
            yet).
        StoreError: for a state file that cannot be opened (another process
            holds it: the run is going).
    """

    def __init__(
        self,
        recipe: SmsRecipe,
        reactor: Any,
        stream: IO[str] | None = None,
        *,
        wait: float | None = None,
        every: float = 30.0,
        store: Any = None,
        http: Any = None,
        handle_signals: bool = False,
        progress_every: float = 5.0,
    ) -> None:
        if wait is not None and not wait >= 0:
            raise ValueError(f"wait must be >= 0, not {wait!r}")
        if not every > 0:
            raise ValueError(f"every must be > 0, not {every!r}")
        if store is None and recipe.state.url is None:
            path = recipe.state.path
            if not path.is_file():
                raise ValueError(
                    f"no state at {path}: nothing was sent yet (run the recipe first)"
                )
            store = SQLiteStore(path, durability=recipe.state.durability)
        self.recipe = recipe
        self.reactor = reactor
        self.stream = stream
        self.wait = wait
        self.every = every
        self.store: Any = store
        self.handle_signals = handle_signals
        self.progress_every = progress_every
        width = recipe.queue.width
        self.sender = SmsSender(recipe.sms.config(), reactor, http, pool_size=width)
        retry = recipe.retry
        self.retry = delivery_retry_policy(
            retry.max_attempts, retry.base_delay, retry.max_delay
        )
        self.statuses: Counter[str] = Counter()  # of the latest pass
        self.codes: Counter[int] = Counter()  # error codes of final failures
        self.unread: Counter[str] = Counter()  # errors of statuses not read
        self.already_final = 0
        self.passes = 0
        self._queue: ResizableDispatchQueue | None = None
        self._fatal: str | None = None
        self._exit = EXIT_OK
        self._interrupted = False
        self._sleep: defer.Deferred[None] | None = None
        self._pass_done: defer.Deferred[None] | None = None
        self._done = 0
        self._total = 0
        self._writes: list[defer.Deferred[Any]] = []  # amends not landed yet

    # -- what to check -------------------------------------------------------

    async def targets(self) -> list[Target]:
        """The sent messages whose record has no final delivery yet, in the
        order they were recorded (and count those that have one)."""
        found: list[Target] = []
        after = 0
        self.already_final = 0
        while batch := await as_deferred(self.store.records(after, _PAGE)):
            after = batch[-1].seq
            for record in batch:
                fields = record.record
                if record.outcome != "ok" or not isinstance(fields, dict):
                    continue
                sid = fields.get("sid")
                if not isinstance(sid, str) or not sid:
                    continue
                if is_final(fields.get("delivery")):
                    self.already_final += 1
                    continue
                found.append(Target(record.id, sid, fields))
        return found

    # -- running -------------------------------------------------------------

    def run(self) -> defer.Deferred[int]:
        """Check, write the output, close; fires with the exit status."""
        if self.handle_signals:
            self._install_signals()
        return defer.Deferred.fromCoroutine(self._run())

    async def _run(self) -> int:
        if self.store is None:
            from fetchq.store import StoreError
            from fetchq.store.redis import RedisStore

            state = self.recipe.state
            assert state.url is not None
            try:
                self.store = await RedisStore.connect(
                    state.url, state.run, self.reactor
                )
            except StoreError as e:
                self._say(f"fetchq: error: {e}")
                await self.sender.close()
                return EXIT_PROBLEMS
        try:
            targets = await self.targets()
            first = len(targets)
            if not targets:
                self._say(
                    f"nothing to check: {self.already_final} messages have a "
                    "final status"
                    if self.already_final
                    else "nothing to check: no message of this run has a sid yet"
                )
                return EXIT_OK
            self._say(
                f"checking {first} messages"
                + (
                    f" ({self.already_final} already final)"
                    if self.already_final
                    else ""
                )
            )
            deadline = None if self.wait is None else self._now() + self.wait
            while targets:
                await self._pass(targets)
                await self._landed()
                targets = [t for t in targets if not is_final(t.record.get("delivery"))]
                self._summary()
                if self._fatal is not None or self._interrupted:
                    break
                if not targets or deadline is None:
                    break
                if self._now() + self.every > deadline:
                    break
                self._say(
                    f"{len(targets)} not final yet: checking again in {self.every:g}s"
                )
                await self._pause(self.every)
                if self._interrupted:
                    break
            if targets and self._fatal is None:
                self._say(
                    f"{len(targets)} messages have no final status yet: run "
                    f"`fetchq sms status {self.recipe.source}` again later"
                    + ("" if self.wait else " (or with --wait 10m)")
                )
            return self._exit
        finally:
            await self._close()

    async def _pass(self, targets: list[Target]) -> None:
        """Read the status of each target once (with retries), through a
        queue at the recipe's pace; write each into its record."""
        self.passes += 1
        self.statuses.clear()
        self.codes.clear()
        self.unread.clear()
        self._done = 0
        self._total = len(targets)
        spec = self.recipe.queue
        queue = ResizableDispatchQueue(
            self.sender.delivery,
            spec.width,
            rate=spec.rate,
            burst=spec.burst,
            retry=self.retry,
            clock=self.reactor,
        )
        self._queue = queue
        progress = task.LoopingCall(self._progress)
        progress.clock = self.reactor
        progress.start(self.progress_every, now=False)
        self._pass_done = defer.Deferred()
        try:
            for target in targets:
                if queue.stopped:  # credentials refused, or interrupted
                    break
                queue.put(target.sid).addBoth(self._finished, target)
            await self._pass_done  # all read, or the queue stopped
        finally:
            progress.stop()
            self._queue = None
            await queue.stop()

    def _finished(self, result: Any, target: Target) -> None:
        """One read ended: write what it found into the record."""
        self._done += 1
        try:
            self._record(result, target)
        finally:
            if self._done >= self._total:
                self._end_pass()

    def _end_pass(self, _: object = None) -> None:
        done = self._pass_done
        if done is not None and not done.called:
            done.callback(None)

    def _stop_pass(self) -> None:
        """Stop the pass: underway reads are cancelled, pending ones dropped."""
        if self._queue is not None:
            self._queue.stop(cancel_underway=True).addBoth(self._end_pass)

    def _record(self, result: Any, target: Target) -> None:
        if not isinstance(result, Failure):
            self._write(target, result.result.record())
            return
        error = result.value
        cause = error
        if isinstance(error, JobError):
            failure = error.job.failure
            cause = None if failure is None else failure.value
        if isinstance(cause, ProviderRejected) and cause.status == 404:
            delivery = Delivery(target.sid, "not_found", cause.code or _NOT_FOUND)
            fields = delivery.record()
            fields["final"] = True
            fields["error_message"] = "the provider has no such message"
            self._write(target, fields)
            return
        if getattr(cause, "fatal", False) and self._fatal is None:
            fix = getattr(cause, "fix", "")
            self._fatal = f"{getattr(cause, 'name', type(cause).__name__)}: {cause}"
            self._say(
                f"fetchq: cannot go on: {self._fatal}" + (f"; {fix}" if fix else "")
            )
            self._exit = EXIT_FATAL
            self._stop_pass()
        if cause is None or self._fatal is not None or self._interrupted:
            return
        self.unread[getattr(cause, "name", type(cause).__name__)] += 1

    def _write(self, target: Target, delivery: dict[str, Any]) -> None:
        record = {**target.record, "delivery": delivery}
        written = self.store.amend(target.id, record, self.reactor.seconds())
        if isinstance(written, defer.Deferred):
            self._writes.append(written)
        target.record = record
        status = str(delivery.get("status"))
        self.statuses[status] += 1
        code = delivery.get("error_code")
        if delivery.get("final") and isinstance(code, int):
            self.codes[code] += 1

    # -- telling -------------------------------------------------------------

    def _summary(self) -> None:
        parts = []
        finals = [s for s in self.statuses if s in _ORDER]
        for status in sorted(finals, key=_ORDER.index):
            parts.append(f"{status} {self.statuses[status]}")
        others = {s: n for s, n in self.statuses.items() if s not in _ORDER}
        if others:
            shown = ", ".join(f"{s} {n}" for s, n in sorted(others.items()))
            parts.append(f"not final {sum(others.values())} ({shown})")
        if self.unread:
            shown = ", ".join(f"{n} {name}" for name, n in sorted(self.unread.items()))
            parts.append(f"not read {sum(self.unread.values())} ({shown})")
        line = f"pass {self.passes}: " + (", ".join(parts) or "nothing read")
        if self.codes:
            line += "; error codes: " + ", ".join(
                f"{code} x{n}" for code, n in sorted(self.codes.items())
            )
        self._say(line)

    def _progress(self) -> None:
        self._say(f"read {self._done} of {self._total}")

    def _say(self, text: str) -> None:
        if self.stream is not None:
            print(text, file=self.stream, flush=True)

    # -- time, signals, closing ----------------------------------------------

    def _now(self) -> float:
        now: float = self.reactor.seconds()
        return now

    async def _pause(self, seconds: float) -> None:
        sleep: defer.Deferred[None] = defer.Deferred()
        call = self.reactor.callLater(seconds, sleep.callback, None)
        self._sleep = sleep
        try:
            await sleep
        finally:
            self._sleep = None
            if call.active():
                call.cancel()

    def interrupt(self, signum: int) -> None:
        """Stop: underway reads are cancelled; what was read is kept."""
        if self._interrupted:
            return
        self._interrupted = True
        self._exit = EXIT_INTERRUPTED.get(signum, 130)
        self._say("interrupted: keeping the statuses read so far")
        self._stop_pass()
        sleep = self._sleep
        if sleep is not None and not sleep.called:
            sleep.callback(None)

    def _install_signals(self) -> None:
        def handler(signum: int, frame: Any) -> None:
            self.reactor.callFromThread(self.interrupt, signum)

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, handler)

    async def _landed(self) -> None:
        """Every amend so far is in the state (Redis answers later)."""
        writes, self._writes = self._writes, []
        if writes:
            await defer.gatherResults(writes, consumeErrors=True)
        await as_deferred(self.store.flush())

    async def _close(self) -> None:
        store = self.store
        path = self.recipe.output.path
        try:
            await self._landed()
            if self.recipe.state.url is not None:
                from fetchq.shared_run import write_output

                count = await write_output(store, path)
            else:
                output = OutputFile(path)
                try:
                    count = output.rebuild(store)
                finally:
                    output.close()
        finally:
            await as_deferred(store.close())
            await self.sender.close()
        self._say(f"output: {self.recipe.output.path} ({count} records)")


_ORDER = ["delivered", "read", "undelivered", "failed", "canceled", "not_found"]
