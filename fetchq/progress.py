"""Watching a run: counts, rate, ETA and a final summary, from queue events.

:class:`RunStats` is a queue observer that keeps counts by outcome and status,
bytes, and a latency histogram (constant memory, about 2% resolution), and
writes the closing summary.  :class:`ProgressDisplay` shows it live: a rich
progress bar on a terminal, or one plain line every few seconds when the
output is piped, so logs stay clean.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from fetchq.events import (
    ControlDecision,
    Event,
    JobFinished,
    JobLaunched,
    JobQueued,
    JobWithdrawn,
)
from fetchq.job import Outcome

__all__ = ["LatencyHistogram", "ProgressDisplay", "RunStats"]

_log = math.log


class LatencyHistogram:
    """Latencies in logarithmic buckets (each 2% wide): percentiles within
    about 2%, in memory that does not grow with the number of samples."""

    _STEP = math.log(1.02)
    _FLOOR = 1e-6

    def __init__(self) -> None:
        self.buckets: Counter[int] = Counter()
        self.count = 0

    def add(self, seconds: float) -> None:
        """Record one latency."""
        index = int(_log(max(seconds, self._FLOOR) / self._FLOOR) / self._STEP)
        self.buckets[index] += 1
        self.count += 1

    def percentile(self, p: float) -> float | None:
        """The ``p``-th percentile (0-100) in seconds, or None if empty."""
        if not self.count:
            return None
        rank = max(1, math.ceil(self.count * p / 100.0))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return self._FLOOR * math.exp((index + 0.5) * self._STEP)
        raise AssertionError("unreachable: ranks never exceed the count")


_RETRIED = Outcome.RETRIED
_THROTTLED = Outcome.THROTTLED
_OUTCOME_NAMES = {outcome: outcome.value for outcome in Outcome}


class ControlSummary:
    """What an adaptive controller did, from its decisions (queue-wide ones
    and each lane's alike)."""

    def __init__(self, controller: str) -> None:
        self.controller = controller
        self.decisions = 0
        self.last: ControlDecision | None = None
        self.widths: tuple[int, int] | None = None
        self.drops = 0
        self.throttles = 0
        self.paced = 0

    def add(self, event: ControlDecision) -> None:
        self.decisions += 1
        self.drops += event.drops
        self.throttles += event.throttles
        if event.reason == "pace":
            self.paced += 1
        if event.reason not in ("probe", "state") and event.key is None:
            low, high = self.widths or (event.width, event.width)
            self.widths = (min(low, event.width), max(high, event.width))
        if event.key is None:
            self.last = event

    def line(self) -> str:
        """One summary line."""
        parts = [f"controller: {self.controller}, {self.decisions} decisions"]
        last = self.last
        if last is not None:
            parts.append(f"width {last.width} at the end")
            if self.widths is not None:
                parts.append(f"range {self.widths[0]}-{self.widths[1]}")
            if last.baseline is not None:
                parts.append(f"baseline {1000 * last.baseline:.1f}ms")
            if last.rate is not None:
                parts.append(f"paced at {last.rate:.1f}/s")
        parts.append(f"{self.drops} drops ({self.throttles} throttled)")
        if self.paced:
            parts.append(f"pace cut {self.paced} times")
        return ", ".join(parts)


class RunStats:
    """A queue observer that tallies a run.

    Args:
        clock: provides ``seconds()``.
        total: how many jobs the run expects, if known (for the ETA).
    """

    def __init__(self, clock: Any, total: int | None = None) -> None:
        self.clock = clock
        self.started = clock.seconds()
        self.total = total
        self.queued = 0
        self.underway = 0
        self.retrying = 0
        self.outcomes: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.bytes = 0
        self.latency = LatencyHistogram()
        self.control: ControlSummary | None = None

    def left_to_do(self, n: int = 1) -> None:
        """``n`` jobs counted failed are left to do after all (a run that
        stopped because it cannot succeed hands them back)."""
        self.outcomes["failed"] -= n
        self.outcomes["left to do"] += n

    @property
    def done(self) -> int:
        """Jobs finished for good (ok, failed or cancelled)."""
        o = self.outcomes
        return o["ok"] + o["failed"] + o["cancelled"]

    def __call__(self, event: Event) -> None:
        # Called three times per job: the common events first, each job
        # property read once.
        if isinstance(event, JobFinished):
            self._finished(event)
        elif isinstance(event, JobLaunched):
            self.underway += 1
            if event.job.attempts > 1:
                self.retrying -= 1
        elif isinstance(event, JobQueued):
            self.queued += 1
        elif isinstance(event, JobWithdrawn):
            self.queued -= 1  # handed back to the store: queued again later
            if event.job.attempts:
                self.retrying -= 1
        elif isinstance(event, ControlDecision):
            if self.control is None:
                self.control = ControlSummary(event.controller)
            self.control.add(event)

    def _finished(self, event: JobFinished) -> None:
        outcome = event.outcome
        latency = event.latency
        job = event.job
        if latency is not None:
            self.underway -= 1
            self.latency.add(latency)
        if outcome is _RETRIED or outcome is _THROTTLED:
            self.retrying += 1
        elif latency is None and job.attempts > 1:
            self.retrying -= 1  # cancelled while waiting to retry
        self.outcomes[_OUTCOME_NAMES[outcome]] += 1
        result = job.result
        source: Any = result
        if result is None:
            failure = job.failure
            source = None if failure is None else failure.value
        status = getattr(source, "status", None)
        if isinstance(status, int):
            self.statuses[status] += 1
        size = getattr(result, "bytes", None)
        if isinstance(size, int):
            self.bytes += size

    def to_json(self) -> dict[str, Any]:
        """The tallies as JSON values (a worker hands them to its parent)."""
        return {
            "outcomes": dict(self.outcomes),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "bytes": self.bytes,
            "latency": {str(k): v for k, v in self.latency.buckets.items()},
        }

    def add(self, tallies: dict[str, Any]) -> None:
        """Add another process's :meth:`to_json` tallies to these."""
        self.outcomes.update(tallies.get("outcomes", {}))
        self.statuses.update(
            {int(k): v for k, v in tallies.get("statuses", {}).items()}
        )
        self.bytes += int(tallies.get("bytes", 0))
        for index, n in tallies.get("latency", {}).items():
            self.latency.buckets[int(index)] += n
            self.latency.count += n

    def rate(self) -> float:
        """Jobs finished for good per second so far."""
        elapsed = self.clock.seconds() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        """One line of progress, for logs."""
        o = self.outcomes
        total = f"/{self.total}" if self.total is not None else ""
        line = (
            f"done {self.done}{total}: ok {o['ok']}, failed {o['failed']}, "
            f"retrying {self.retrying}, underway {self.underway}, "
            f"{self.rate():.1f}/s"
        )
        control = self.control
        if control is not None and control.last is not None:
            line += f", width {control.last.width}"
            if control.last.rate is not None:
                line += f", paced {control.last.rate:.0f}/s"
        return line

    def summary(self) -> str:
        """The closing summary: counts by outcome and status, latency
        percentiles, bytes and elapsed time."""
        elapsed = self.clock.seconds() - self.started
        lines = [f"finished {self.done} jobs in {elapsed:.1f}s ({self.rate():.1f}/s)"]
        lines.append(
            "outcomes: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        )
        if self.statuses:
            lines.append(
                "statuses: "
                + ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
            )
        if self.latency.count:
            p = self.latency.percentile
            lines.append(
                "latency: "
                + ", ".join(f"p{q} {1000 * (p(q) or 0.0):.0f}ms" for q in (50, 90, 99))
                + f", max {1000 * (p(100) or 0.0):.0f}ms"
            )
        if self.bytes:
            lines.append(f"bytes: {self.bytes:,}")
        if self.control is not None:
            lines.append(self.control.line())
        return "\n".join(lines)


class ProgressDisplay:
    """Shows a :class:`RunStats` while a run goes on.

    On a terminal, a rich progress bar refreshed by rich; otherwise a plain
    :meth:`RunStats.line` every ``every`` seconds, driven by :meth:`tick`
    (call it from a ``LoopingCall``).

    Args:
        stats: what to show.
        stream: where to write (default stderr).
        every: seconds between plain lines when not on a terminal.
    """

    def __init__(
        self, stats: RunStats, stream: IO[str] | None = None, every: float = 5.0
    ) -> None:
        self.stats = stats
        self.console = Console(file=stream, stderr=stream is None)
        if not self.console.is_terminal:
            # Piped or logged: one line per message, never wrapped (a wrapped
            # resume command cannot be pasted back).
            self.console.soft_wrap = True
        self.every = every
        self._last_line = stats.clock.seconds()
        self._progress: Progress | None = None
        self._task: Any = None
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._task = self._progress.add_task("fetchq", total=stats.total, detail="")
            self._progress.start()

    def tick(self) -> None:
        """Refresh the display (rich) or print a line if it is time (plain)."""
        if self._progress is not None:
            self._progress.update(
                self._task, completed=self.stats.done, detail=self.stats.line()
            )
            return
        now = self.stats.clock.seconds()
        if now - self._last_line >= self.every:
            self._last_line = now
            self.console.print(self.stats.line(), highlight=False)

    def close(self) -> None:
        """Stop the live display and print the summary."""
        if self._progress is not None:
            self.tick()
            self._progress.stop()
        self.console.print(self.stats.summary(), highlight=False)
