"""Watching a run: counts, rate, ETA and a final summary, from queue events.

:class:`RunStats` is a queue observer that keeps counts by outcome and status,
bytes, a latency histogram (constant memory, about 2% resolution), the
errors by name with a few examples, attempts per job and the same figures
per lane (host, sender, endpoint), and writes the closing summary.  Given the
input's row count (:func:`fetchq.inputs.count_rows`) and the store's counts
(:meth:`RunStats.observe`, which also covers rows finished by earlier runs and
by other workers), it knows done/total, the recent rate and an ETA.
:meth:`RunStats.to_json` gives all of it, bounded, for the run's history
(:mod:`fetchq.report.history`).

:class:`ProgressDisplay` shows it live: a rich progress bar (done/total, %,
rate, ETA) on a terminal, or one plain line every few seconds when the output
is piped, so logs stay clean; piped lines are never wrapped.
"""

from __future__ import annotations

import math
import os
import sys
from collections import Counter, deque
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import Progress

from fetchq.events import (
    ControlDecision,
    Event,
    JobFinished,
    JobLaunched,
    JobQueued,
    JobWithdrawn,
)
from fetchq.job import Outcome

__all__ = [
    "LatencyHistogram",
    "PlainConsole",
    "ProgressDisplay",
    "RunStats",
    "format_duration",
]

_log = math.log

MAX_LANES = 1000
"""Lanes whose figures are kept one by one; later ones are added up as one."""
MAX_LANES_SAVED = 50
"""Lanes :meth:`RunStats.to_json` keeps one by one (the busiest)."""
MAX_EXAMPLES = 3
"""Examples kept per status code and per error name."""
MAX_EXAMPLE_KEYS = 60
"""Status codes and error names that get examples."""
RATE_WINDOW = 30.0
"""Seconds of progress the recent rate (and so the ETA) is measured over."""


def format_duration(seconds: float) -> str:
    """``<1s``, ``42s``, ``3:05`` or ``1:02:03``."""
    if seconds < 1:
        return "<1s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    whole = round(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _what(job: Any) -> str | None:
    """What a job works on, for an example: its URL if it has one."""
    arg = job.arg
    if isinstance(arg, dict):
        url = arg.get("url")
        if isinstance(url, str):
            return url[:300]
    return None


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

    def merge(self, other: LatencyHistogram) -> None:
        """Add ``other``'s samples."""
        self.buckets.update(other.buckets)
        self.count += other.count

    def to_json(self) -> dict[str, int]:
        """The buckets as a JSON object (bucket index → samples)."""
        return {str(k): v for k, v in sorted(self.buckets.items()) if v}

    @classmethod
    def from_json(cls, value: Any) -> LatencyHistogram:
        """The histogram :meth:`to_json` gave (empty for anything else)."""
        hist = cls()
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, int) and v > 0 and str(k).lstrip("-").isdigit():
                    hist.buckets[int(k)] += v
                    hist.count += v
        return hist


_FLOOR = LatencyHistogram._FLOOR
_STEP = LatencyHistogram._STEP
_OK = Outcome.OK
_FAILED = Outcome.FAILED
_CANCELLED = Outcome.CANCELLED
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
        self.cuts = 0
        self.measured = 0  # decisions with a reading of the client's load
        self.client_bound = 0  # ... that found the client the bottleneck
        self.bound_cpu: list[float] = []  # the CPU share in those

    def add(self, event: ControlDecision) -> None:
        self.decisions += 1
        self.drops += event.drops
        self.throttles += event.throttles
        if event.lag is not None or event.cpu is not None:
            self.measured += 1
            if event.client_bound:
                self.client_bound += 1
                if event.cpu is not None:
                    self.bound_cpu.append(event.cpu)
        if event.reason == "pace":
            self.paced += 1
        elif event.reason == "drop":
            self.cuts += 1
        if event.reason not in ("probe", "state") and event.key is None:
            low, high = self.widths or (event.width, event.width)
            self.widths = (min(low, event.width), max(high, event.width))
        if event.key is None:
            self.last = event

    def to_json(self) -> dict[str, Any]:
        """The summary as plain JSON (for the run's history)."""
        last = self.last
        return {
            "controller": self.controller,
            "decisions": self.decisions,
            "drops": self.drops,
            "throttles": self.throttles,
            "paced": self.paced,
            "cuts": self.cuts,
            "widths": None if self.widths is None else list(self.widths),
            "width": None if last is None else last.width,
            "rate": None if last is None else last.rate,
            "baseline": None if last is None else last.baseline,
        }

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
        if self.cuts:
            parts.append(f"width cut for drops {self.cuts} times")
        if self.paced:
            parts.append(f"pace cut {self.paced} times")
        if self.client_bound and self.client_bound >= 0.1 * self.measured:
            # The client, not the server, held the width back often enough
            # to say so.
            share = self.client_bound / self.measured
            where = "client-bound"
            if self.bound_cpu:
                cpu = sum(self.bound_cpu) / len(self.bound_cpu)
                where += f" at {100 * cpu:.0f}% CPU"
            parts.append(f"{where} ({share:.0%} of decisions)")
        return ", ".join(parts)


class _Lane:
    """One lane's figures."""

    __slots__ = ("bytes", "failed", "latency", "ok", "requests", "retried", "throttled")

    def __init__(self) -> None:
        self.requests = 0
        self.ok = 0
        self.failed = 0
        self.retried = 0
        self.throttled = 0
        self.bytes = 0
        self.latency = LatencyHistogram()

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "ok": self.ok,
            "failed": self.failed,
            "retried": self.retried,
            "throttled": self.throttled,
            "bytes": self.bytes,
            "latency": self.latency.to_json(),
        }


_OTHER_LANES = object()  # the lane that adds up lanes past MAX_LANES


class RunStats:
    """A queue observer that tallies a run.

    Args:
        clock: provides ``seconds()``.
        total: how many jobs the run expects, if known (for the ETA); see
            also :meth:`set_total`.

    Attributes:
        outcomes: attempts by outcome; ``failed`` counts jobs that failed for
            good, bad input rows included (:meth:`bad_input`).
        statuses: attempts by status code (from results and errors).
        errors: error name → ``[failed, retried, throttled]`` attempts.
        examples: ``"status 404"`` or an error name → a few
            ``{"id", "url", "message"}`` examples.
        attempts: attempts per job, over the jobs finished for good.
        lanes: lane key → its figures (the first :data:`MAX_LANES` lanes).
        store_counts: the store's counts when last observed (the whole run's
            rows, every worker's and every earlier run's).
    """

    def __init__(self, clock: Any, total: int | None = None) -> None:
        self.clock = clock
        self.started = clock.seconds()
        self.total = total
        self.total_exact = True
        self.queued = 0
        self.underway = 0
        self.retrying = 0
        self.outcomes: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.bytes = 0
        self.latency = LatencyHistogram()
        self.control: ControlSummary | None = None
        self.warnings: list[str] = []  # shown again at the end of the summary
        self.bad_rows = 0
        self.errors: dict[str, list[int]] = {}
        self.examples: dict[str, list[dict[str, Any]]] = {}
        self.attempts: Counter[int] = Counter()
        self.lanes: dict[Any, _Lane] = {}
        self.store_counts: Any = None
        self.done_before: int | None = None  # finished when first observed
        self._samples: deque[tuple[float, int]] = deque()

    def left_to_do(self, n: int = 1) -> None:
        """``n`` jobs counted failed are left to do after all (a run that
        stopped because it cannot succeed hands them back)."""
        self.outcomes["failed"] -= n
        self.outcomes["left to do"] += n

    def bad_input(self, item_id: Any, record: Any) -> None:
        """A row recorded as bad input (its ``record`` says why): counted as
        failed, under the error name ``BadInput``, with an example."""
        self.outcomes["failed"] += 1
        self.bad_rows += 1
        self.attempts[0] += 1
        error = record.get("error") if isinstance(record, dict) else None
        name = "BadInput"
        message = ""
        if isinstance(error, dict):
            name = str(error.get("name") or name)
            message = str(error.get("message") or "")
        self.errors.setdefault(name, [0, 0, 0])[0] += 1
        url = record.get("url") if isinstance(record, dict) else None
        self._example(name, item_id, url if isinstance(url, str) else None, message)

    def set_total(self, rows: int | None, exact: bool = True) -> None:
        """The number of rows the run has in all (None: unknown); ``exact``
        False for an estimate."""
        self.total = rows
        self.total_exact = exact

    def observe(self, counts: Any) -> None:
        """The store's counts (:class:`~fetchq.store.Counts`) now: the whole
        run's progress, rows finished by earlier runs and other workers
        included."""
        self.store_counts = counts
        if self.done_before is None:
            self.done_before = counts.finished
        if self.total is not None and counts.total > self.total:
            self.total = counts.total  # follow-up pages, or a low estimate

    @property
    def done(self) -> int:
        """Jobs finished for good (ok, failed or cancelled) by this run."""
        o = self.outcomes
        return o["ok"] + o["failed"] + o["cancelled"]

    def progress(self) -> tuple[int, int | None]:
        """(done, total) for the whole run: the store's count of finished
        rows once observed, else this run's; total None if unknown."""
        counts = self.store_counts
        done = self.done if counts is None else counts.finished
        total = self.total
        if total is not None and done > total:
            total = done
        return done, total

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

    def _new_lane(self, key: Any) -> _Lane:
        lanes = self.lanes
        if len(lanes) >= MAX_LANES:
            lane = lanes.get(_OTHER_LANES)
            if lane is None:
                lane = lanes[_OTHER_LANES] = _Lane()
            return lane
        lane = lanes[key] = _Lane()
        return lane

    def _finished(self, event: JobFinished) -> None:
        outcome = event.outcome
        latency = event.latency
        job = event.job
        lane = self.lanes.get(job.key)
        if lane is None:
            lane = self._new_lane(job.key)
        if latency is not None:  # an attempt that ran: a request
            self.underway -= 1
            lane.requests += 1
            # One bucket index for both histograms (LatencyHistogram.add).
            index = int(_log(max(latency, _FLOOR) / _FLOOR) / _STEP)
            hist = self.latency
            hist.buckets[index] += 1
            hist.count += 1
            hist = lane.latency
            hist.buckets[index] += 1
            hist.count += 1
        if outcome is _RETRIED or outcome is _THROTTLED:
            self.retrying += 1
        elif latency is None and job.attempts > 1:
            self.retrying -= 1  # cancelled while waiting to retry
        self.outcomes[_OUTCOME_NAMES[outcome]] += 1
        result = job.result
        source: Any = result
        error: Any = None
        if result is None:
            failure = job.failure
            source = error = None if failure is None else failure.value
        status = getattr(source, "status", None)
        if isinstance(status, int):
            self.statuses[status] += 1
        if outcome is _OK:
            lane.ok += 1
            size = getattr(result, "bytes", None)
            if isinstance(size, int):
                self.bytes += size
                lane.bytes += size
        elif outcome is _RETRIED:
            lane.retried += 1
        elif outcome is _THROTTLED:
            lane.throttled += 1
        elif outcome is _FAILED:
            lane.failed += 1
        if outcome is not _RETRIED and outcome is not _THROTTLED:
            self.attempts[job.attempts] += 1
        if error is not None and outcome is not _CANCELLED:
            self._error(job, outcome, error, status)

    def _error(self, job: Any, outcome: Outcome, error: Any, status: Any) -> None:
        name = str(getattr(error, "name", None) or type(error).__name__)
        counts = self.errors.get(name)
        if counts is None:
            counts = self.errors[name] = [0, 0, 0]
        column = 1 if outcome is _RETRIED else 2 if outcome is _THROTTLED else 0
        counts[column] += 1
        what = _what(job)
        message = " ".join(str(error).split())[:300]
        self._example(name, job.id, what, message)
        if isinstance(status, int):
            self._example(f"status {status}", job.id, what, message)

    def _example(self, key: str, item_id: Any, what: str | None, message: str) -> None:
        examples = self.examples.get(key)
        if examples is None:
            if len(self.examples) >= MAX_EXAMPLE_KEYS:
                return
            examples = self.examples[key] = []
        if len(examples) >= MAX_EXAMPLES:
            return
        shown = None if item_id is None else str(item_id)
        if any(e["id"] == shown for e in examples):
            return  # the same job again (a retry): one example is enough
        examples.append({"id": shown, "url": what, "message": message[:300]})

    def tallies(self) -> dict[str, Any]:
        """The tallies as JSON values (a worker hands them to its parent;
        :meth:`to_json` is the whole of it, for the run's history)."""
        return {
            "outcomes": dict(self.outcomes),
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "bytes": self.bytes,
            "latency": {str(k): v for k, v in self.latency.buckets.items()},
        }

    def add(self, tallies: dict[str, Any]) -> None:
        """Add another process's :meth:`tallies` to these."""
        self.outcomes.update(tallies.get("outcomes", {}))
        self.statuses.update(
            {int(k): v for k, v in tallies.get("statuses", {}).items()}
        )
        self.bytes += int(tallies.get("bytes", 0))
        for index, n in tallies.get("latency", {}).items():
            self.latency.buckets[int(index)] += n
            self.latency.count += n

    def rate(self) -> float:
        """Jobs finished for good per second so far (this run)."""
        elapsed = self.clock.seconds() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def sample(self) -> None:
        """Note the progress now, for :meth:`recent_rate` (the display calls
        it on each refresh)."""
        now = self.clock.seconds()
        done = self.progress()[0]
        samples = self._samples
        samples.append((now, done))
        while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW:
            samples.popleft()

    def recent_rate(self) -> float | None:
        """Rows finished per second over the last :data:`RATE_WINDOW`
        seconds (every worker's), or None before two samples."""
        samples = self._samples
        if len(samples) < 2:
            return None
        (t0, d0), (t1, d1) = samples[0], samples[-1]
        if t1 <= t0:
            return None
        return max(0.0, (d1 - d0) / (t1 - t0))

    def eta(self) -> float | None:
        """Seconds left at the recent rate, or None if unknown."""
        done, total = self.progress()
        rate = self.recent_rate()
        if total is None or not rate:
            return None
        return max(0, total - done) / rate

    def _outcome_counts(self) -> tuple[int, int]:
        """(ok, failed) rows: the whole run's from the store when it has
        been observed, else this run's."""
        counts = self.store_counts
        if counts is None:
            return self.outcomes["ok"], self.outcomes["failed"]
        done = counts.done
        failed = sum(v for k, v in done.items() if k != "ok")
        return done.get("ok", 0), failed

    def detail(self) -> str:
        """Progress after the bar: done/total, rate, ETA, ok and failed."""
        done, total = self.progress()
        if total is None:
            parts = [f"{done:,} done"]
        else:
            about = "" if self.total_exact else "~"
            parts = [f"{done:,}/{about}{total:,}"]
        rate = self.recent_rate()
        parts.append("-/s" if rate is None else f"{rate:,.1f}/s")
        eta = self.eta()
        if eta is not None and done < (total or 0):
            parts.append(f"ETA {format_duration(eta)}")
        ok, failed = self._outcome_counts()
        parts.append(f"ok {ok:,}, failed {failed:,}")
        parts.append(f"retrying {self.retrying}, underway {self.underway}")
        control = self.control
        if control is not None and control.last is not None:
            parts.append(f"width {control.last.width}")
            if control.last.rate is not None:
                parts.append(f"paced {control.last.rate:.0f}/s")
        return " | ".join(parts)

    def line(self) -> str:
        """One line of progress, for logs: ``done D/T (P%), R/s, ETA E:``
        then counts."""
        done, total = self.progress()
        head = f"done {done:,}"
        if total is not None:
            about = "" if self.total_exact else "~"
            pct = 100.0 * done / total if total else 100.0
            head += f"/{about}{total:,} ({pct:.0f}%)"
        rate = self.recent_rate()
        if rate is None:
            rate = self.rate()
        head += f", {rate:.1f}/s"
        eta = self.eta()
        if eta is not None and total is not None and done < total:
            head += f", ETA {format_duration(eta)}"
        ok, failed = self._outcome_counts()
        line = (
            f"{head}: ok {ok:,}, failed {failed:,}, "
            f"retrying {self.retrying}, underway {self.underway}"
        )
        control = self.control
        if control is not None and control.last is not None:
            line += f", width {control.last.width}"
            if control.last.rate is not None:
                line += f", paced {control.last.rate:.0f}/s"
        return line

    def summary(self) -> str:
        """The closing summary: counts by outcome, error and status, latency
        percentiles, bytes and elapsed time; the whole run's rows when
        earlier runs did some of them."""
        elapsed = self.clock.seconds() - self.started
        if not self.outcomes and not self.lanes:
            idle = f"nothing done in this run ({elapsed:.1f}s)"
            return "\n".join([idle, *self._whole()])
        lines = [f"finished {self.done} jobs in {elapsed:.1f}s ({self.rate():.1f}/s)"]
        bad = f" ({self.bad_rows} bad input)" if self.bad_rows else ""
        outcomes = ", ".join(
            f"{k} {v}{bad if k == 'failed' else ''}"
            for k, v in sorted(self.outcomes.items())
        )
        lines.append("outcomes: " + outcomes)
        failed = [(v[0], k) for k, v in self.errors.items() if v[0]]
        if failed:
            lines.append(
                "failed: "
                + ", ".join(f"{name} {n}" for n, name in sorted(failed, reverse=True))
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
        lines.extend(self._whole())
        lines.extend(f"WARNING: {warning}" for warning in self.warnings)
        return "\n".join(lines)

    def _whole(self) -> list[str]:
        """The whole run's line, when earlier runs (or other workers) did
        some of it."""
        counts = self.store_counts
        if counts is None or not self.done_before:
            return []
        ok, failed = self._outcome_counts()
        left = counts.pending + counts.claimed
        return [
            f"whole run: {counts.finished:,} rows done ({self.done_before:,} "
            f"before this run): ok {ok:,}, failed {failed:,}"
            + (f"; {left:,} left to do" if left else "")
        ]

    def to_json(self) -> dict[str, Any]:
        """Everything :meth:`summary` and the report need, as plain JSON of
        bounded size: the busiest :data:`MAX_LANES_SAVED` lanes one by one,
        the others added up (``other_lanes``)."""
        ranked = sorted(
            ((k, v) for k, v in self.lanes.items() if k is not _OTHER_LANES),
            key=lambda kv: -kv[1].requests,
        )
        other = _Lane()
        other_count = 0
        for _, lane in ranked[MAX_LANES_SAVED:]:
            _add_lane(other, lane)
            other_count += 1
        rest = self.lanes.get(_OTHER_LANES)
        if rest is not None:
            _add_lane(other, rest)
            other_count += max(1, len(self.lanes) - MAX_LANES)
        return {
            "elapsed": round(self.clock.seconds() - self.started, 3),
            "done": self.done,
            "outcomes": dict(self.outcomes),
            "bad_input": self.bad_rows,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "bytes": self.bytes,
            "latency": self.latency.to_json(),
            "errors": {k: list(v) for k, v in self.errors.items()},
            "examples": {k: list(v) for k, v in self.examples.items()},
            "attempts": {str(k): v for k, v in sorted(self.attempts.items())},
            "lanes": [
                {"key": _lane_key(k), **lane.to_json()}
                for k, lane in ranked[:MAX_LANES_SAVED]
            ],
            "other_lanes": (
                None if not other_count else {"count": other_count, **other.to_json()}
            ),
            "control": None if self.control is None else self.control.to_json(),
        }


def _add_lane(into: _Lane, lane: _Lane) -> None:
    into.requests += lane.requests
    into.ok += lane.ok
    into.failed += lane.failed
    into.retried += lane.retried
    into.throttled += lane.throttled
    into.bytes += lane.bytes
    into.latency.merge(lane.latency)


def _lane_key(key: Any) -> Any:
    if key is None or isinstance(key, (str, int, float, bool)):
        return key
    return str(key)


class PlainConsole:
    """What :class:`ProgressDisplay` prints through when the output is not
    a terminal: each message as it is, one line, never wrapped, flushed
    (rich, ~40 ms of imports, is loaded only for a terminal).

    Args:
        stream: where to write (default: ``sys.stderr`` at each print).
    """

    is_terminal = False

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream

    def print(self, *objects: Any, sep: str = " ", end: str = "\n", **_: Any) -> None:
        """Write ``objects`` as text (rich's options, such as ``highlight``
        and ``markup``, are accepted and mean nothing here)."""
        stream = sys.stderr if self.stream is None else self.stream
        stream.write(sep.join(str(o) for o in objects) + end)
        stream.flush()


def _maybe_terminal(stream: IO[str] | None) -> bool:
    """Whether rich could take ``stream`` (default stderr) for a terminal:
    it says it is a tty, or the environment forces one (rich's
    ``TTY_COMPATIBLE=1``, ``FORCE_COLOR``).  Only the other case is
    certain to be plain."""
    env = os.environ
    if env.get("TTY_COMPATIBLE") == "1" or env.get("FORCE_COLOR"):
        return True
    isatty = getattr(sys.stderr if stream is None else stream, "isatty", None)
    try:
        return bool(isatty is not None and isatty())
    except ValueError:  # closed
        return False


class ProgressDisplay:
    """Shows a :class:`RunStats` while a run goes on.

    On a terminal, a rich progress bar (done/total, %, rate, ETA) refreshed
    by rich; otherwise a plain :meth:`RunStats.line` every ``every`` seconds,
    driven by :meth:`tick` (call it from a ``LoopingCall``).  Piped output
    is never wrapped, so a resume command stays one line.

    Args:
        stats: what to show.
        stream: where to write (default stderr).
        every: seconds between plain lines when not on a terminal.
    """

    def __init__(
        self, stats: RunStats, stream: IO[str] | None = None, every: float = 5.0
    ) -> None:
        self.stats = stats
        self.console: Any = PlainConsole(stream)
        if _maybe_terminal(stream):
            from rich.console import Console

            self.console = Console(file=stream, stderr=stream is None)
            if not self.console.is_terminal:
                # Piped or logged: one line per message, never wrapped (a
                # wrapped resume command cannot be pasted back).
                self.console.soft_wrap = True
        self.every = every
        self._last_line = stats.clock.seconds()
        self._progress: Progress | None = None
        self._task: Any = None
        if self.console.is_terminal:
            from rich.progress import (
                BarColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[detail]}"),
                console=self.console,
                transient=False,
            )
            done, total = stats.progress()
            self._task = self._progress.add_task(
                "fetchq", total=total, completed=done, detail=""
            )
            self._progress.start()

    def tick(self) -> None:
        """Refresh the display (rich) or print a line if it is time (plain)."""
        stats = self.stats
        stats.sample()
        if self._progress is not None:
            done, total = stats.progress()
            self._progress.update(
                self._task, completed=done, total=total, detail=stats.detail()
            )
            return
        now = stats.clock.seconds()
        if now - self._last_line >= self.every:
            self._last_line = now
            self.console.print(stats.line(), highlight=False)

    def close(self) -> None:
        """Stop the live display and print the summary."""
        if self._progress is not None:
            self.tick()
            self._progress.stop()
        self.console.print(self.stats.summary(), highlight=False)
