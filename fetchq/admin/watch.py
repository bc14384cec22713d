"""What the admin server knows of a queue: one cheap observer of its events.

:class:`Watch` is subscribed to the queue like every other observer (the
progress display, the report's timeline, the adaptive controller).  It keeps
plain counters (no locks, no label look-ups on the hot path): attempts,
finishes by outcome, throttles by lane (bounded), a latency histogram with
Prometheus's bucket bounds, bytes, the controller's decisions by reason, the
holds in force and a ring of throughput samples.  ``/metrics`` and the
``status`` answer both read it; nothing here reaches into the queue.
"""

from __future__ import annotations

import bisect
from collections import Counter, deque
from typing import Any

from fetchq.events import (
    ControlDecision,
    Event,
    JobFinished,
    JobLaunched,
    LaneHeld,
    LaneReleased,
)
from fetchq.job import Outcome

__all__ = ["LATENCY_BUCKETS", "BoundedLanes", "Watch"]

LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
"""Upper bounds (seconds) of the latency histogram's buckets (+Inf last)."""

OTHER = "other"
"""The lane label every lane without a label of its own is counted under."""

_OK = Outcome.OK
_RETRIED = Outcome.RETRIED
_THROTTLED = Outcome.THROTTLED
_NAMES = {outcome: outcome.value for outcome in Outcome}
_MAX_TRACKED = 10_000  # lanes counted one by one before they get a label


class BoundedLanes:
    """Counts by lane with a bounded number of labels, for metrics.

    The first lanes to reach the top get a label of their own (at most
    ``labels``); every other lane is counted under ``"other"``.  A lane that
    gets its label later keeps its earlier counts in ``"other"``, so every
    series only ever grows (Prometheus counters must), and a crawl of 100,000
    hosts exports ``labels + 1`` series, not 100,000.

    Args:
        labels: most lanes with a label of their own.
    """

    def __init__(self, labels: int = 20) -> None:
        self.labels = labels
        self.total = 0
        self._counts: Counter[str] = Counter()  # lanes not labelled yet
        self._base: dict[str, int] = {}  # labelled lane -> count at labelling
        self._labelled: Counter[str] = Counter()

    def add(self, key: Any) -> None:
        """Count one for lane ``key``."""
        name = str(key)
        self.total += 1
        if name in self._labelled:
            self._labelled[name] += 1
        elif name in self._counts or len(self._counts) < _MAX_TRACKED:
            self._counts[name] += 1

    def series(self) -> list[tuple[str, int]]:
        """``(label, count)`` pairs: the labelled lanes, then ``"other"``."""
        free = self.labels - len(self._labelled)
        if free > 0 and self._counts:
            for name, n in self._counts.most_common(free):
                self._labelled[name] = n
                self._base[name] = n
                del self._counts[name]
        out = [(name, n - self._base[name]) for name, n in self._labelled.items()]
        out.append((OTHER, self.total - sum(n for _, n in out)))
        return out


class Watch:
    """A queue observer that tallies what an operator and a scraper ask for.

    Args:
        clock: provides ``seconds()``.
        lane_labels: most lanes labelled in per-lane metrics.
    """

    def __init__(self, clock: Any, lane_labels: int = 20) -> None:
        self.clock = clock
        self.started = clock.seconds()
        self.attempts = 0
        self.in_flight = 0
        self.outcomes: Counter[str] = Counter()
        self.throttled = BoundedLanes(lane_labels)
        self.latency_buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.bytes = 0
        self.decisions: Counter[str] = Counter()
        self.last_decision: ControlDecision | None = None
        self.holds: dict[Any, float] = {}  # lane key (None: queue) -> until
        self._samples: deque[tuple[float, int]] = deque(maxlen=120)

    @property
    def done(self) -> int:
        """Jobs finished for good (ok, failed, cancelled)."""
        o = self.outcomes
        return o["ok"] + o["failed"] + o["cancelled"]

    def __call__(self, event: Event) -> None:
        cls = event.__class__
        if cls is JobFinished:
            assert isinstance(event, JobFinished)
            self._finished(event)
        elif cls is JobLaunched:
            self.attempts += 1
            self.in_flight += 1
        elif cls is LaneHeld:
            assert isinstance(event, LaneHeld)
            until = max(self.holds.get(event.key, 0.0), event.until)
            self.holds[event.key] = until
        elif cls is LaneReleased:
            assert isinstance(event, LaneReleased)
            self.holds.pop(event.key, None)
        elif cls is ControlDecision:
            assert isinstance(event, ControlDecision)
            self.decisions[event.reason] += 1
            if event.key is None:
                self.last_decision = event

    def _finished(self, event: JobFinished) -> None:
        outcome = event.outcome
        self.outcomes[_NAMES[outcome]] += 1
        latency = event.latency
        if latency is not None:
            self.in_flight -= 1
            self.latency_buckets[bisect.bisect_left(LATENCY_BUCKETS, latency)] += 1
            self.latency_sum += latency
            self.latency_count += 1
        job = event.job
        if outcome is _THROTTLED:
            self.throttled.add(job.key)
        if outcome is _OK:
            size = getattr(job.result, "bytes", None)
            if isinstance(size, int):
                self.bytes += size

    @property
    def retries(self) -> int:
        """Attempts that ended in a retry (throttled ones included)."""
        return self.outcomes["retried"] + self.outcomes["throttled"]

    def active_holds(self) -> dict[Any, float]:
        """The holds still in force: lane key (None: the queue) -> until."""
        now = self.clock.seconds()
        for key in [k for k, until in self.holds.items() if until <= now]:
            del self.holds[key]
        return dict(self.holds)

    def sample(self, done: int | None = None) -> None:
        """Remember how many jobs were done now (call about every second;
        ``done`` for a count kept elsewhere, such as a whole shared run's)."""
        self._samples.append(
            (self.clock.seconds(), self.done if done is None else done)
        )

    def throughput(self, window: float = 10.0) -> float | None:
        """Jobs done per second over the last ``window`` seconds of samples
        (None until two samples span some time)."""
        samples = self._samples
        if len(samples) < 2:
            return None
        end_time, end_done = samples[-1]
        start_time, start_done = samples[0]
        for when, done in samples:
            if when >= end_time - window:
                start_time, start_done = when, done
                break
        span = end_time - start_time
        if span <= 0:
            return None
        return max(0.0, (end_done - start_done) / span)
