"""``fetchq run RECIPE --workers N``: N worker processes on this machine
(one per core, say) on one run in Redis, under one parent that shows one
progress display and one summary.

- The recipe must keep its state in Redis (``state.url``): the workers are
  ordinary ``fetchq run`` processes of the same run (any other machine may
  join it too), each with its own reactor, so a run uses every core.
- The parent does what must happen once: ``--fresh`` and
  ``--retry-failed`` before the workers start, the progress display (run
  counts from Redis: done, to do, underway anywhere), and at the end the
  output file (from Redis, once) and the summary (the workers' tallies added
  together).
- Its workers' messages are shown once each (``worker 2: ...``; the same
  message from several workers only the first time).
- Ctrl-C (or SIGTERM) reaches the parent only (the workers have process
  groups of their own) and is passed on: the workers stop launching, let
  what is underway finish and hand the rest back; a second Ctrl-C cancels
  what is underway.  The parent says once how to resume.
- The exit status is the run's: 0 once the run ended (every row has its
  record, even if a worker died on the way: its rows went back to the
  others); else the most telling of the workers' (3 a fatal failure, 4 the
  failure breaker, 2 a problem before anything ran, 130/143 interrupted).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from typing import IO, Any

from twisted.internet import defer, protocol, task
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.process import reapAllProcesses

from fetchq.output import write_output
from fetchq.progress import ProgressDisplay, RunStats
from fetchq.recipe import Recipe
from fetchq.run import (
    _META_INPUT_DONE,
    EXIT_FAILURES,
    EXIT_FATAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PROBLEMS,
)
from fetchq.store import Counts, StoreError
from fetchq.store.redis import RedisStore

__all__ = ["Workers"]

_SEVERITY = (EXIT_FATAL, EXIT_FAILURES, EXIT_PROBLEMS)
_REAP_AFTER = (0.0, 0.01, 0.05, 0.2)  # seconds after a worker's output closed


class RunCounts(RunStats):
    """The parent's view of the run: counts from Redis while it goes on
    (every worker's, on any machine), the workers' tallies added together
    for the summary at the end."""

    def __init__(self, clock: Any, workers: int) -> None:
        super().__init__(clock)
        self.workers = workers
        self.alive = workers
        self.counts: Counts | None = None
        self._first: int | None = None
        self.final = False
        self.by_worker: list[tuple[int, int]] = []  # (worker, jobs done)

    def update(self, counts: Counts, input_done: bool) -> None:
        """The run's counts now."""
        self.counts = counts
        if self._first is None:
            self._first = counts.finished
        if input_done:
            self.total = counts.total

    @property
    def done(self) -> int:
        """Rows finished in this run (all workers, Redis's count until the
        workers' tallies are in)."""
        if self.final or self.counts is None or self._first is None:
            return super().done
        return self.counts.finished - self._first

    def summary(self) -> str:
        """The summary of every worker's tallies, and what each did."""
        text = super().summary()
        if self.by_worker:
            text += "\nworkers: " + ", ".join(
                f"{n} {done}" for n, done in self.by_worker
            )
        return text

    def line(self) -> str:
        """One line of progress: the whole run's counts."""
        c = self.counts
        if c is None or self.final:
            return super().line()
        total = f"/{self.total}" if self.total is not None else ""
        done = ", ".join(f"{k} {v}" for k, v in sorted(c.done.items())) or "none yet"
        return (
            f"done {c.finished}{total} ({done}), to do {c.pending}, "
            f"underway {c.claimed}, {self.alive}/{self.workers} workers, "
            f"{self.rate():.1f}/s"
        )


class _Worker(protocol.ProcessProtocol):
    """One worker process: its messages go to the parent as lines, its
    tallies (its last stdout line) are kept."""

    def __init__(self, parent: Workers, number: int) -> None:
        self.parent = parent
        self.number = number
        self.out = b""
        self.err = b""
        self.code: int | None = None
        self.signal: int | None = None
        self.ended: defer.Deferred[None] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data
        *lines, self.err = self.err.split(b"\n")
        for line in lines:
            self.parent.relay(self.number, line.decode("utf-8", "replace"))

    def childConnectionLost(self, fd: int) -> None:
        super().childConnectionLost(fd)
        if fd in (1, 2):
            self.parent.reap_soon()  # its output closed: it is ending

    def processEnded(self, reason: Any) -> None:
        if self.err:
            self.parent.relay(self.number, self.err.decode("utf-8", "replace"))
        self.code = reason.value.exitCode
        self.signal = reason.value.signal
        self.ended.callback(None)

    def tallies(self) -> dict[str, Any] | None:
        for line in reversed(self.out.decode("utf-8", "replace").splitlines()):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
        return None

    def describe(self) -> str:
        """How it ended: ``exit 3``, ``killed by signal 9``."""
        if self.signal is not None:
            return f"killed by signal {self.signal}"
        return f"exit {self.code}"


class Workers:
    """Run ``workers`` worker processes of one recipe (see the module).

    Args:
        recipe: a recipe with ``state.url``.
        reactor: the reactor (processes, time, signals).
        workers: how many worker processes.
        worker_args: more arguments for each worker's ``fetchq run``
            (``--max-failures``, ``--read-ahead``).
        stream: where progress and the summary go (default stderr).
        fresh: forget the run's state first (once, before the workers).
        retry_failed: run the failed rows again (once, before the workers).
        tick: seconds between progress updates.
        progress_every: seconds between plain progress lines when piped.
        handle_signals: take over SIGINT/SIGTERM (the command does).
        command: how to start ``fetchq`` (default: this Python, ``-m
            fetchq``).
    """

    def __init__(
        self,
        recipe: Recipe,
        reactor: Any,
        workers: int,
        *,
        worker_args: list[str] | None = None,
        stream: IO[str] | None = None,
        fresh: bool = False,
        retry_failed: bool = False,
        tick: float = 0.5,
        progress_every: float = 5.0,
        handle_signals: bool = False,
        command: list[str] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        if recipe.state.url is None:
            raise ValueError("workers share a run through Redis: state.url is unset")
        self.recipe = recipe
        self.reactor = reactor
        self.workers = workers
        self.worker_args = list(worker_args or [])
        self.stream = stream
        self.fresh = fresh
        self.retry_failed = retry_failed
        self.tick_seconds = tick
        self.handle_signals = handle_signals
        self.command = command or [sys.executable, "-m", "fetchq"]
        self.stats = RunCounts(reactor, workers)
        self.progress_every = progress_every
        self.display: ProgressDisplay | None = None  # once Redis answers
        self.store: RedisStore | None = None
        self.children: list[_Worker] = []
        self._transports: list[Any] = []
        self._said: set[str] = set()
        self._signal: int | None = None
        self._ticker = task.LoopingCall(self._tick)
        self._counting = False
        self._reaps: list[Any] = []  # DelayedCalls of reap_soon

    def run(self) -> defer.Deferred[int]:
        """Run the workers to their end; fires with the exit status."""
        return defer.Deferred.fromCoroutine(self._run())

    def _say(self, text: str) -> None:
        if self.display is None:
            print(text, file=self.stream or sys.stderr, flush=True)
        else:
            self.display.console.print(text, highlight=False, markup=False)

    def relay(self, number: int, line: str) -> None:
        """A worker's message, shown once whichever workers say it."""
        line = line.rstrip()
        if line and line not in self._said:
            self._said.add(line)
            self._say(f"worker {number}: {line}")

    async def _run(self) -> int:
        state = self.recipe.state
        assert state.url is not None
        try:
            self.store = await RedisStore.connect(
                state.url, state.run, self.reactor, renew=False
            )
        except StoreError as e:
            self._say(f"fetchq: {e}")
            return EXIT_PROBLEMS
        store = self.store
        self.display = ProgressDisplay(self.stats, self.stream, self.progress_every)
        try:
            if self.fresh:
                await store.reset()
                self._say("starting afresh: the state of earlier runs is forgotten")
            if self.retry_failed:
                again = await store.reopen("failed", self.reactor.seconds())
                self._say(f"retrying {again} failed rows")
            counts = await store.counts()
            if counts.finished:
                left = counts.pending + counts.claimed
                self._say(f"resuming: {counts.finished} done, {left} to do")
            self._start_workers()
            if self.handle_signals:
                self._install_signals()
            self._ticker.clock = self.reactor
            self._ticker.start(self.tick_seconds, now=True)
            await defer.gatherResults([child.ended for child in self.children])
            self._ticker.stop()
            return await self._end()
        finally:
            if self._ticker.running:
                self._ticker.stop()
            for call in self._reaps:
                if call.active():
                    call.cancel()
            await store.close()

    def _start_workers(self) -> None:
        recipe = str(self.recipe.source)
        for number in range(1, self.workers + 1):
            child = _Worker(self, number)
            child.ended.addCallback(self._worker_ended, child)
            args = [*self.command, "run", recipe, "--as-worker", *self.worker_args]
            transport = self.reactor.spawnProcess(
                child, args[0], args, env=dict(os.environ), path=os.getcwd()
            )
            self.children.append(child)
            self._transports.append(transport)

    def _worker_ended(self, _: Any, child: _Worker) -> None:
        self.stats.alive -= 1
        if child.code != EXIT_OK and self._signal is None:
            self.relay(child.number, f"ended ({child.describe()})")

    def reap_soon(self) -> None:
        """A worker closed its output, as it does when it exits: look for
        ended workers now and a few times shortly after (the command runs
        the reactor without signal handlers, so no SIGCHLD says so), rather
        than at the next tick, up to half a second later."""
        self._reaps = [c for c in self._reaps if c.active()]
        for delay in _REAP_AFTER:
            self._reaps.append(self.reactor.callLater(delay, reapAllProcesses))

    def _tick(self) -> None:
        # The command runs the reactor without signal handlers, so no
        # SIGCHLD tells Twisted a worker ended: look for ended ones here.
        reapAllProcesses()
        if self._counting or self.store is None:
            return
        self._counting = True
        store = self.store

        async def count() -> None:
            counts = await store.counts()
            done = await store.meta_get(_META_INPUT_DONE)
            self.stats.update(counts, bool(done))
            if self.display is not None:
                self.display.tick()

        d = defer.Deferred.fromCoroutine(count())
        d.addErrback(lambda _: None)  # Redis away: the workers say so
        d.addBoth(lambda _: setattr(self, "_counting", False))

    # -- signals -------------------------------------------------------------

    def _install_signals(self) -> None:
        def handler(signum: int, frame: Any) -> None:
            self.reactor.callFromThread(self.interrupt, signum)

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, handler)

    def interrupt(self, signum: int) -> None:
        """Pass an interrupt on to every worker (see the module)."""
        if self._signal is None:
            self._signal = signum
            self._say(
                "interrupted: the workers let underway jobs finish "
                "(Ctrl-C again to cancel)"
            )
        else:
            self._say("second interrupt: cancelling underway jobs")
        for child, transport in zip(self.children, self._transports, strict=True):
            if not child.ended.called:
                with contextlib.suppress(OSError, ProcessExitedAlready):
                    transport.signalProcess(signum)  # unless it has just ended

    # -- the end ---------------------------------------------------------------

    async def _end(self) -> int:
        stats = self.stats
        stats.final = True
        for child in self.children:
            tallies = child.tallies()
            if tallies is not None:
                outcomes = tallies.get("outcomes", {})
                done = sum(outcomes.get(k, 0) for k in ("ok", "failed", "cancelled"))
                stats.by_worker.append((child.number, done))
                stats.add(tallies)
        code = self._exit_status()
        assert self.store is not None
        if code == EXIT_OK:
            try:
                await write_output(self.store, self.recipe.output.path)
            except Exception as e:
                self._say(
                    f"fetchq: cannot write the output: {_one_line(e)}; write it "
                    f"with: fetchq output {self.recipe.source}"
                )
                code = EXIT_FATAL
            else:
                self._say(f"output: {self.recipe.output.path}")
        else:
            await self._resume_line()
        if self.display is not None:
            self.display.close()
        return code

    def _exit_status(self) -> int:
        if self._signal is not None:
            return EXIT_INTERRUPTED.get(self._signal, 130)
        codes = [c.code for c in self.children]
        for code in _SEVERITY:
            if code in codes:
                return code
        if EXIT_OK in codes:
            return EXIT_OK  # a worker ends 0 only once the whole run has
        self._say(
            "fetchq: every worker ended before the run did ("
            + ", ".join(f"worker {c.number}: {c.describe()}" for c in self.children)
            + ")"
        )
        return EXIT_FATAL

    async def _resume_line(self) -> None:
        assert self.store is not None
        try:
            counts = await self.store.counts()
            done = await self.store.meta_get(_META_INPUT_DONE)
        except Exception:
            left = "rows left to do"
        else:
            left = f"{counts.pending + counts.claimed} rows left to do"
            if not done:
                left += " (and the rest of the input)"
        self._say(
            f"state saved in redis run {self.recipe.state.run!r}; {left}; "
            f"resume with: fetchq run {self.recipe.source} --workers {self.workers}"
        )


def _one_line(error: object) -> str:
    return " ".join(str(error).split()) or type(error).__name__
