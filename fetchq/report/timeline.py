"""A run's history in fixed time buckets, for the report and a live admin page.

:class:`Timeline` is a queue observer.  It sorts events into buckets of
``interval`` seconds of the queue's clock and keeps, per bucket: launches,
finishes by outcome, throughput (ok per second), latency percentiles of the
successful attempts, the most jobs underway at once, the width and rate as
set, the drops and throttles the adaptive controller counted, the
controller's baseline latency and the bytes received.  It also keeps the
controller's decisions (:class:`~fetchq.events.ControlDecision`), thinned
evenly once there are many.

Memory stays bounded however long or busy the run: the open bucket holds one
fixed log-scale latency histogram (reused from bucket to bucket), a closed
bucket is about 17 numbers in compact arrays, and when ``max_buckets`` have
closed, neighbours are merged in pairs and the interval doubles.  Merged
buckets keep exact counts, the larger peak and the later width and rate;
their p50 and p90 are the count-weighted means of the two and their p99 the
larger of the two, so after merging percentiles are approximate.

Usage::

    timeline = Timeline(queue.clock, interval=1.0)
    timeline.start(queue)          # time zero, the initial width and rate
    queue.subscribe(timeline)
    ...
    data = timeline.to_json()      # a plain dict, see Timeline.to_json
"""

from __future__ import annotations

import math
from array import array
from typing import Any, Protocol

from fetchq.events import (
    ControlDecision,
    Event,
    JobFinished,
    JobLaunched,
    JobQueued,
    RateChanged,
    WidthChanged,
)
from fetchq.job import Outcome

__all__ = ["TOTALS", "Timeline"]

TOTALS = (
    "launched",
    "ok",
    "failed",
    "retried",
    "throttled",
    "cancelled",
    "drops",
    "throttles",
    "bytes",
)
"""The counts a timeline's ``totals`` hold (a run history's too)."""

_NAN = math.nan
_log = math.log
_isnan = math.isnan

# The per-bucket latency histogram: bins 2% wide from 10 microseconds up to
# a little over a day (clamped at both ends): 1,163 bins, one list, reused.
_FLOOR = 1e-5
_INV_FLOOR = 1.0 / _FLOOR
_STEP = math.log(1.02)
_INV_STEP = 1.0 / _STEP
_NBINS = int(math.log(1e5 / _FLOOR) / _STEP) + 1
_ZEROS = [0] * _NBINS

_OK = Outcome.OK
_FAILED = Outcome.FAILED
_RETRIED = Outcome.RETRIED
_THROTTLED = Outcome.THROTTLED

# Column names of the closed-bucket arrays, in the order of to_json().
_INT_COLUMNS = (
    "launched",
    "ok",
    "failed",
    "retried",
    "throttled",
    "cancelled",
    "in_flight",
    "width",
    "drops",
    "throttles",
    "decisions",
    "bytes",
)
_FLOAT_COLUMNS = ("rate", "p50", "p90", "p99", "baseline")
_UNKNOWN_WIDTH = -1
_MAX_KEYS = 10_000  # lanes whose last decision is remembered (for "changed")


class _Clock(Protocol):
    def seconds(self) -> float: ...


class _QueueLike(Protocol):
    @property
    def width(self) -> int: ...

    @property
    def rate(self) -> float | None: ...

    def size(self) -> tuple[int, int]: ...


def _bin_value(index: int) -> float:
    return _FLOOR * math.exp((index + 0.5) * _STEP)


def _percentiles(hist: list[int]) -> tuple[float, float, float]:
    """p50, p90 and p99 in seconds from a histogram (NaN if it is empty)."""
    count = sum(hist)
    if not count:
        return _NAN, _NAN, _NAN
    ranks = [max(1, math.ceil(count * p / 100.0)) for p in (50, 90, 99)]
    out: list[float] = []
    seen = 0
    want = ranks[0]
    for index, n in enumerate(hist):
        if not n:
            continue
        seen += n
        while seen >= want:
            out.append(_bin_value(index))
            if len(out) == 3:
                return out[0], out[1], out[2]
            want = ranks[len(out)]
    raise AssertionError("unreachable: ranks never exceed the count")


def _json_key(key: Any) -> Any:
    if key is None or isinstance(key, (str, int, float, bool)):
        return key
    return str(key)


def _num(value: float, digits: int = 6) -> float | None:
    """A float for JSON: None for NaN, rounded to ``digits`` significant."""
    if not math.isfinite(value):
        return None
    if value == 0:
        return 0.0
    return round(value, max(0, digits - 1 - math.floor(math.log10(abs(value)))))


def _opt(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else _num(float(value), digits)


class Timeline:
    """A queue observer that keeps a run's history in time buckets.

    Args:
        clock: the queue's clock (``seconds()``); read only for width and
            rate changes, whose events carry no time, and by :meth:`start`.
        interval: seconds per bucket (it doubles each time ``max_buckets``
            buckets have closed).
        width: the queue's width at time zero, if known; giving it says
            that ``rate`` is known too (None = unlimited).  Or call
            :meth:`start`.  Unknown widths are filled in from the first
            :class:`~fetchq.events.WidthChanged` (its ``old``).
        rate: the queue's launch rate at time zero, if known.
        max_buckets: closed buckets kept before neighbours are merged (even,
            at least 2).
        max_decisions: controller decisions kept; beyond it they are thinned
            evenly over the run (width and rate changes are kept longest).

    Raises:
        TypeError: for an interval that is not a number.
        ValueError: for an interval that is not positive, or bad limits.
    """

    __slots__ = (
        "_baseline",
        "_clock",
        "_cols",
        "_cur",
        "_decisions",
        "_decisions_seen",
        "_end",
        "_fcols",
        "_hist",
        "_interval",
        "_keep_changed",
        "_keep_same",
        "_last_setting",
        "_max_buckets",
        "_max_decisions",
        "_nchanged_seen",
        "_nlaunched",
        "_nok",
        "_nsame_seen",
        "_origin",
        "_peak",
        "_rate",
        "_rate_known",
        "_underway",
        "_width",
        "_width_known",
    )

    def __init__(
        self,
        clock: _Clock,
        interval: float = 1.0,
        *,
        width: int | None = None,
        rate: float | None = None,
        max_buckets: int = 2048,
        max_decisions: int = 2048,
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)):
            raise TypeError(f"interval must be a number, not {interval!r}")
        if not (interval > 0 and math.isfinite(interval)):
            raise ValueError(f"interval must be > 0, not {interval!r}")
        if not (isinstance(max_buckets, int) and max_buckets >= 2):
            raise ValueError(f"max_buckets must be an int >= 2, not {max_buckets!r}")
        if not (isinstance(max_decisions, int) and max_decisions >= 8):
            raise ValueError(
                f"max_decisions must be an int >= 8, not {max_decisions!r}"
            )
        self._clock = clock
        self._interval = float(interval)
        self._max_buckets = max_buckets + (max_buckets & 1)
        self._max_decisions = max_decisions
        self._origin: float | None = None
        self._end = -math.inf  # end of the open bucket; -inf before time zero
        self._cols: dict[str, array[int]] = {c: array("q") for c in _INT_COLUMNS}
        self._fcols: dict[str, array[float]] = {c: array("d") for c in _FLOAT_COLUMNS}
        # The open bucket: launches and oks in slots of their own (the hot
        # path), the other counts by _INT_COLUMNS index (2-5 and 8-11).
        self._nlaunched = 0
        self._nok = 0
        self._cur = [0] * len(_INT_COLUMNS)
        self._hist = list(_ZEROS)
        self._underway = 0
        self._peak = 0
        self._baseline = _NAN
        self._width_known = width is not None
        self._width = _UNKNOWN_WIDTH if width is None else int(width)
        self._rate_known = width is not None or rate is not None
        self._rate = _NAN if rate is None else float(rate)
        self._decisions: list[tuple[ControlDecision, bool]] = []
        self._decisions_seen = 0
        self._nsame_seen = 0
        self._nchanged_seen = 0
        self._keep_same = 1  # keep every n-th decision that changed nothing
        self._keep_changed = 1  # keep every n-th decision that changed something
        self._last_setting: dict[Any, tuple[int, float | None]] = {}

    # ------------------------------------------------------------------
    # Set-up

    def start(self, queue: _QueueLike) -> None:
        """Make now time zero and record the queue's width, rate and the
        jobs already underway.  Call it before ``queue.subscribe(self)``."""
        now = self._clock.seconds()
        if self._origin is None:
            self._begin(now)
        self._width = queue.width
        self._width_known = True
        rate = queue.rate
        self._rate = _NAN if rate is None else float(rate)
        self._rate_known = True
        self._underway = queue.size()[0]
        if self._underway > self._peak:
            self._peak = self._underway

    def _begin(self, now: float) -> None:
        self._origin = now
        self._end = now + self._interval

    @property
    def interval(self) -> float:
        """Seconds per bucket now (it doubles as buckets are merged)."""
        return self._interval

    @property
    def origin(self) -> float | None:
        """Clock time of time zero, or None before the first event."""
        return self._origin

    # ------------------------------------------------------------------
    # The hot path

    def __call__(self, event: Event) -> None:
        """Take one queue event."""
        if isinstance(event, JobFinished):
            now = event.time
            if now >= self._end:
                self._advance(now)
            latency = event.latency
            if latency is not None and self._underway:
                self._underway -= 1
            outcome = event.outcome
            if outcome is _OK:
                self._nok += 1
                size = getattr(event.job.result, "bytes", None)
                if size.__class__ is int:
                    self._cur[11] += size
                if latency is not None:
                    if latency > _FLOOR:
                        index = int(_log(latency * _INV_FLOOR) * _INV_STEP)
                        if index >= _NBINS:
                            index = _NBINS - 1
                    else:
                        index = 0
                    self._hist[index] += 1
            elif outcome is _RETRIED:
                self._cur[3] += 1
            elif outcome is _THROTTLED:
                self._cur[4] += 1
            elif outcome is _FAILED:
                self._cur[2] += 1
            else:
                self._cur[5] += 1
        elif isinstance(event, JobLaunched):
            now = event.time
            if now >= self._end:
                self._advance(now)
            self._nlaunched += 1
            underway = self._underway + 1
            self._underway = underway
            if underway > self._peak:
                self._peak = underway
        elif isinstance(event, JobQueued):
            if self._origin is None:  # only starts the clock
                self._begin(event.time)
        elif isinstance(event, ControlDecision):
            self._decision(event)
        elif isinstance(event, WidthChanged):
            if not event.lane:
                self._width_changed(event)
        elif isinstance(event, RateChanged) and not event.lane:
            self._rate_changed(event)

    # ------------------------------------------------------------------
    # Buckets

    def _advance(self, now: float) -> None:
        """Close buckets until ``now`` falls in the open one."""
        if self._origin is None:
            self._begin(now)
            return
        while now >= self._end:
            self._close()

    def _open_bucket(self) -> tuple[list[int], tuple[float, ...]]:
        """The open bucket's values, by _INT_COLUMNS and _FLOAT_COLUMNS."""
        ints = list(self._cur)
        ints[0] = self._nlaunched
        ints[1] = self._nok
        ints[6] = self._peak
        ints[7] = self._width
        p50, p90, p99 = _percentiles(self._hist) if self._nok else (_NAN,) * 3
        return ints, (self._rate, p50, p90, p99, self._baseline)

    def _close(self) -> None:
        """Close the open bucket and open the next (maybe merging first)."""
        cols = self._cols
        fcols = self._fcols
        ints, floats = self._open_bucket()
        for name, value in zip(_INT_COLUMNS, ints, strict=True):
            cols[name].append(value)
        for name, fvalue in zip(_FLOAT_COLUMNS, floats, strict=True):
            fcols[name].append(fvalue)
        if self._nok:
            self._hist = list(_ZEROS)
        self._nlaunched = 0
        self._nok = 0
        self._cur = [0] * len(_INT_COLUMNS)
        self._peak = self._underway
        self._baseline = _NAN
        closed = len(cols["ok"])
        if closed >= self._max_buckets and not closed & 1:
            self._merge()
            closed //= 2
        assert self._origin is not None
        self._end = self._origin + (closed + 1) * self._interval

    def _merge(self) -> None:
        """Merge closed buckets in pairs; the interval doubles."""
        cols = self._cols
        fcols = self._fcols
        ok = cols["ok"]  # counts before merging weigh p50 and p90
        for name in _FLOAT_COLUMNS:
            old = fcols[name]
            new = array("d")
            for i in range(0, len(old), 2):
                a, b = old[i], old[i + 1]
                if name == "rate":
                    new.append(b)  # as set at the (later) bucket's end
                elif _isnan(a) or _isnan(b) or name == "baseline":
                    new.append(a if _isnan(b) else b)  # the later, if known
                elif name == "p99":
                    new.append(max(a, b))
                else:
                    na, nb = ok[i], ok[i + 1]
                    new.append((a * na + b * nb) / (na + nb))
            fcols[name] = new
        for name in _INT_COLUMNS:
            counts = cols[name]
            if name == "in_flight":
                pairs = zip(counts[0::2], counts[1::2], strict=True)
                cols[name] = array("q", [max(a, b) for a, b in pairs])
            elif name == "width":
                cols[name] = counts[1::2]
            else:
                pairs = zip(counts[0::2], counts[1::2], strict=True)
                cols[name] = array("q", [a + b for a, b in pairs])
        self._interval *= 2

    # ------------------------------------------------------------------
    # Width, rate and decisions

    def _advance_to_now(self) -> None:
        now = self._clock.seconds()
        if now >= self._end:
            self._advance(now)

    def _width_changed(self, event: WidthChanged) -> None:
        self._advance_to_now()
        if not self._width_known and event.old is not None:
            _backfill(self._cols["width"], _UNKNOWN_WIDTH, event.old)
        self._width_known = True
        self._width = _UNKNOWN_WIDTH if event.new is None else event.new

    def _rate_changed(self, event: RateChanged) -> None:
        self._advance_to_now()
        if not self._rate_known:
            old = _NAN if event.old is None else event.old
            rates = self._fcols["rate"]
            for i, value in enumerate(rates):
                if _isnan(value):
                    rates[i] = old
        self._rate_known = True
        self._rate = _NAN if event.new is None else float(event.new)

    def _decision(self, event: ControlDecision) -> None:
        now = event.time
        if now >= self._end:
            self._advance(now)
        cur = self._cur
        cur[8] += event.drops
        cur[9] += event.throttles
        cur[10] += 1
        if event.key is None and event.baseline is not None:
            self._baseline = float(event.baseline)
        self._decisions_seen += 1
        setting = (event.width, event.rate)
        last_setting = self._last_setting
        previous = last_setting.get(event.key)
        if previous is None and len(last_setting) >= _MAX_KEYS:
            last_setting.clear()  # a crawl of many hosts: forget, stay small
        last_setting[event.key] = setting
        changed = previous != setting  # a key's first decision counts
        if changed:
            self._nchanged_seen += 1
            if (self._nchanged_seen - 1) % self._keep_changed:
                return
        else:
            self._nsame_seen += 1
            if (self._nsame_seen - 1) % self._keep_same:
                return
        self._decisions.append((event, changed))
        if len(self._decisions) >= self._max_decisions:
            self._thin()

    def _thin(self) -> None:
        """Halve the kept decisions: first those that changed nothing, then,
        if still more than three quarters full, the rest too."""
        kept: list[tuple[ControlDecision, bool]] = []
        same = 0
        for item in self._decisions:
            if not item[1]:
                same += 1
                if not same & 1:
                    continue
            kept.append(item)
        self._keep_same *= 2
        if len(kept) > self._max_decisions * 3 // 4:
            thinned: list[tuple[ControlDecision, bool]] = []
            changed = 0
            for item in kept:
                if item[1]:
                    changed += 1
                    if not changed & 1:
                        continue
                thinned.append(item)
            kept = thinned
            self._keep_changed *= 2
        self._decisions = kept

    # ------------------------------------------------------------------
    # Output

    def to_json(self) -> dict[str, Any]:
        """The timeline as a plain, JSON-able dict (the open bucket included).

        Times are seconds relative to time zero (:attr:`origin`).  Per-bucket
        series are lists of the same length as ``t`` (each bucket's start):
        ``launched``, ``ok``, ``failed``, ``retried``, ``throttled``,
        ``cancelled`` (attempts ended that way), ``throughput`` (ok per
        second; for the open bucket, over the part of it that has passed,
        or None while that is under half the interval), ``in_flight`` (most
        jobs underway at once), ``width`` and
        ``rate`` (as set at the bucket's end; None = unknown / unlimited),
        ``p50``/``p90``/``p99`` (seconds, successful attempts; None when
        there were none), ``baseline`` (the queue-wide controller's, seconds),
        ``drops`` and ``throttles`` (summed from the controller's decisions),
        ``decision_counts`` (how many it made) and ``bytes`` (received in
        successful attempts' bodies).  ``decisions`` at the top level
        is the list of kept :class:`~fetchq.events.ControlDecision` records
        (``t``, ``key``, ``controller``, ``width``, ``rate``, ``in_flight``,
        ``samples``, ``latency``, ``baseline``, ``gradient``, ``drops``,
        ``throttles``, ``reason``, ``changed``: whether width or rate moved
        since that key's previous decision); ``decisions_seen`` counts all.
        The last bucket is usually partial: ``end`` is the clock's time now.
        """
        interval = self._interval
        origin = self._origin
        n_closed = len(self._cols["ok"])
        out: dict[str, Any] = {"version": 1, "interval": interval}
        open_bucket = origin is not None
        n = n_closed + (1 if open_bucket else 0)
        out["origin"] = origin
        now = self._clock.seconds()
        out["end"] = 0.0 if origin is None else _num(max(0.0, now - origin))
        out["t"] = [_num(i * interval, 9) for i in range(n)]
        ints: dict[str, list[int]] = {
            name: self._cols[name].tolist() for name in _INT_COLUMNS
        }
        floats: dict[str, list[float]] = {
            name: self._fcols[name].tolist() for name in _FLOAT_COLUMNS
        }
        if open_bucket:
            open_ints, open_floats = self._open_bucket()
            for name, value in zip(_INT_COLUMNS, open_ints, strict=True):
                ints[name].append(value)
            for name, fvalue in zip(_FLOAT_COLUMNS, open_floats, strict=True):
                floats[name].append(fvalue)
        for name in ("launched", "ok", "failed", "retried", "throttled", "cancelled"):
            out[name] = ints[name]
        throughput: list[float | None] = [_num(ok / interval) for ok in ints["ok"]]
        if open_bucket and origin is not None:
            # The open bucket has run only so long: rate its oks over that,
            # or leave it out while it is too short to say much.
            elapsed = now - (origin + n_closed * interval)
            if elapsed < interval:
                ok = ints["ok"][-1]
                throughput[-1] = _num(ok / elapsed) if elapsed >= interval / 2 else None
        out["throughput"] = throughput
        out["in_flight"] = ints["in_flight"]
        out["width"] = [None if w == _UNKNOWN_WIDTH else w for w in ints["width"]]
        out["rate"] = [_num(r) for r in floats["rate"]]
        for name in ("p50", "p90", "p99", "baseline"):
            out[name] = [_num(v, 4) for v in floats[name]]
        for name in ("drops", "throttles", "bytes"):
            out[name] = ints[name]
        out["decision_counts"] = ints["decisions"]
        zero = origin if origin is not None else 0.0
        out["decisions"] = [
            {
                "t": _num(d.time - zero),
                "key": _json_key(d.key),
                "controller": d.controller,
                "width": d.width,
                "rate": _opt(d.rate),
                "in_flight": d.in_flight,
                "samples": d.samples,
                "latency": _opt(d.latency, 4),
                "baseline": _opt(d.baseline, 4),
                "gradient": _opt(d.gradient, 4),
                "drops": d.drops,
                "throttles": d.throttles,
                "reason": d.reason,
                "changed": changed,
                "lag": _opt(d.lag, 5),
                "cpu": _opt(d.cpu, 3),
                "client_bound": d.client_bound,
            }
            for d, changed in self._decisions
        ]
        out["decisions_seen"] = self._decisions_seen
        out["totals"] = {name: sum(ints[name]) for name in TOTALS}
        return out


def _backfill(column: array[int], missing: int, value: int) -> None:
    for i, v in enumerate(column):
        if v == missing:
            column[i] = value
