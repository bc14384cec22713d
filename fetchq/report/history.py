"""A run's history across resumes, kept in its state, for a report of the
whole run.

Every process that works on a run is a *segment*: a run and each resume of it
(and, on Redis, each worker).  :class:`RunHistory` keeps one record per
segment in the store's meta (``report.segment.<id>``, listed in order under
``report.segments``): when it started (wall clock), how it ended, its
:meth:`~fetchq.progress.RunStats.to_json` figures and its timeline
(:meth:`~fetchq.report.Timeline.to_json`) thinned to at most
:data:`SEGMENT_BUCKETS` buckets and :data:`SEGMENT_DECISIONS` decisions.  A
process writes only its own record (so workers never overwrite each other's),
at intervals and when it ends; the list of segments is bounded too: past
:data:`MAX_SEGMENTS`, the oldest ended ones are folded into one.

:func:`combine` lays the segments' timelines on one time axis, the gaps
between runs cut out (segments that overlap, workers running together, are
added up bucket by bucket), with each segment's start marked;
:func:`merge_stats` adds their figures up; :func:`report_data` does both for
the report.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from twisted.internet import defer

from fetchq.progress import (
    MAX_EXAMPLE_KEYS,
    MAX_EXAMPLES,
    MAX_LANES_SAVED,
    LatencyHistogram,
)
from fetchq.report.timeline import TOTALS
from fetchq.store.base import as_deferred

__all__ = [
    "MAX_SEGMENTS",
    "META_INDEX",
    "META_SEGMENT",
    "SEGMENT_BUCKETS",
    "SEGMENT_DECISIONS",
    "RunHistory",
    "combine",
    "downsample",
    "merge_stats",
    "report_data",
]

META_INDEX = "report.segments"
"""Meta key: the ids of the run's segments, oldest first."""
META_SEGMENT = "report.segment."
"""Meta key prefix: one segment's record, under ``report.segment.<id>``."""
MAX_SEGMENTS = 48
"""Segments listed before the oldest ended ones are folded into one."""
SEGMENT_BUCKETS = 240
"""Most time buckets a segment's saved timeline keeps."""
SEGMENT_DECISIONS = 120
"""Most controller decisions a segment's saved timeline keeps."""
COMBINED_BUCKETS = 1200
"""Most time buckets of a combined timeline."""
COMBINED_DECISIONS = 2048
"""Most controller decisions of a combined timeline."""
DEAD_AFTER = 3600.0
"""Seconds after its last save that a segment that never ended (killed) may
be folded."""

_SUMS = (
    "launched",
    "ok",
    "failed",
    "retried",
    "throttled",
    "cancelled",
    "drops",
    "throttles",
    "decision_counts",
    "bytes",
)


def _column(tl: Mapping[str, Any], name: str, n: int) -> list[Any]:
    values = tl.get(name)
    if not isinstance(values, list) or len(values) != n:
        return [0 if name in _SUMS else None] * n
    return values


def _later(a: Any, b: Any) -> Any:
    return a if b is None else b


def _weighted(a: Any, b: Any, na: int, nb: int) -> Any:
    if a is None or not na:
        return b
    if b is None or not nb:
        return a
    return (a * na + b * nb) / (na + nb)


def _throughput(
    ok: list[int], t: list[float], interval: float, end: float
) -> list[Any]:
    out: list[Any] = [_round(v / interval) for v in ok]
    if t:
        elapsed = end - t[-1]
        if 0 < elapsed < interval:
            out[-1] = _round(ok[-1] / elapsed) if elapsed >= interval / 2 else None
    return out


def _round(value: float | None, digits: int = 6) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    if value == 0:
        return 0.0
    return round(value, max(0, digits - 1 - math.floor(math.log10(abs(value)))))


def _thin_decisions(decisions: list[dict[str, Any]], most: int) -> list[dict[str, Any]]:
    """At most ``most`` decisions, those that changed the width or rate
    first, spread evenly over the run."""
    if len(decisions) <= most:
        return decisions
    changed = [d for d in decisions if d.get("changed")]
    same = [d for d in decisions if not d.get("changed")]
    if len(changed) >= most:
        kept = _spread(changed, most)
    else:
        kept = changed + _spread(same, most - len(changed))
    return sorted(kept, key=lambda d: d.get("t") or 0.0)


def _spread(items: list[Any], n: int) -> list[Any]:
    if n <= 0:
        return []
    if len(items) <= n:
        return list(items)
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def _max(a: Any, b: Any) -> Any:
    if a is None:
        return b
    return a if b is None else max(a, b)


def _halve(
    sums: dict[str, list[Any]], gauges: dict[str, list[Any]]
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """Buckets merged in pairs (a last odd one alone): counts added, the
    peak in flight and p99 the larger, p50 and p90 weighted by successes,
    width, rate and baseline as at the later bucket's end."""
    ok = sums["ok"]
    n = len(ok)
    pairs = range(0, n, 2)
    new_sums = {
        name: [v[i] + (v[i + 1] if i + 1 < n else 0) for i in pairs]
        for name, v in sums.items()
    }
    new_gauges: dict[str, list[Any]] = {}
    for name, v in gauges.items():
        merged: list[Any] = []
        for i in pairs:
            a = v[i]
            b = v[i + 1] if i + 1 < n else None
            if name in ("in_flight", "p99"):
                merged.append(_max(a, b))
            elif name in ("p50", "p90"):
                merged.append(_weighted(a, b, ok[i], ok[i + 1] if i + 1 < n else 0))
            else:
                merged.append(_later(a, b))
        new_gauges[name] = merged
    return new_sums, new_gauges


def downsample(
    timeline: Mapping[str, Any],
    max_buckets: int = SEGMENT_BUCKETS,
    max_decisions: int = SEGMENT_DECISIONS,
) -> dict[str, Any]:
    """A timeline's JSON (:meth:`~fetchq.report.Timeline.to_json`) with
    neighbouring buckets merged in pairs until at most ``max_buckets`` are
    left (the interval doubling each time, as the live timeline merges) and
    at most ``max_decisions`` decisions kept."""
    out = dict(timeline)
    t = list(out.get("t") or [])
    interval = float(out.get("interval") or 1.0)
    n = len(t)
    cols = {name: list(_column(out, name, n)) for name in _SUMS}
    keep = ("in_flight", "width", "rate", "p50", "p90", "p99", "baseline")
    other = {name: list(_column(out, name, n)) for name in keep}
    while len(t) > max_buckets:
        cols, other = _halve(cols, other)
        t = t[0::2]
        interval *= 2
    if len(t) != n:
        out["t"] = t
        out["interval"] = interval
        out.update(cols)
        out.update(other)
        end = float(out.get("end") or 0.0)
        out["throughput"] = _throughput(cols["ok"], t, interval, end)
    decisions = list(out.get("decisions") or [])
    out["decisions"] = _thin_decisions(decisions, max_decisions)
    return out


def _empty_timeline() -> dict[str, Any]:
    out: dict[str, Any] = {"version": 1, "interval": 1.0, "origin": None, "end": 0.0}
    out["t"] = []
    for name in (*_SUMS, "in_flight", "width", "rate", "p50", "p90", "p99"):
        out[name] = []
    out["baseline"] = []
    out["throughput"] = []
    out["decisions"] = []
    out["decisions_seen"] = 0
    out["totals"] = {name: 0 for name in TOTALS}
    out["segments"] = []
    return out


def _shares(
    offset: float, start: float, step: float, length: float, grid: float, n: int
) -> list[tuple[int, float]]:
    """Where a segment's bucket ``[start, start + step)`` (cut at the
    segment's ``length``) falls on the combined axis: each grid bucket it
    overlaps and the share of it there.  A bucket opened at the very end
    (no time of its own) goes whole into the last grid bucket it touches."""
    a = offset + start
    b = offset + min(start + step, length)
    if b <= a:
        g = min(n - 1, max(0, math.ceil(a / grid) - 1))
        return [(g, 1.0)]
    out = []
    g = min(n - 1, max(0, int(a / grid)))
    while g < n and g * grid < b:
        overlap = min(b, (g + 1) * grid) - max(a, g * grid)
        if overlap > 0:
            out.append((g, overlap / (b - a)))
        g += 1
    return out or [(min(n - 1, max(0, int(a / grid))), 1.0)]


def _count(value: float) -> float | int:
    """A count spread over buckets: an int when it is whole."""
    whole = round(value)
    return whole if abs(value - whole) < 1e-9 else round(value, 3)


def _lay_out(
    parts: Sequence[Mapping[str, Any]], grid: float
) -> tuple[list[float], list[int], list[dict[str, Any]], float]:
    """Where each segment starts on the axis, its group (segments that
    overlap in time run together), the segments' descriptions and the axis's
    length: groups one after another, each from the next multiple of
    ``grid``, the time between them cut out."""
    offsets: list[float] = []
    groups: list[int] = []
    segments: list[dict[str, Any]] = []
    run_end = 0.0  # the axis so far
    group_start = group_end = -math.inf
    group_offset = 0.0
    group = -1
    for n, part in enumerate(parts, 1):
        start = float(part.get("started") or 0.0)
        length = max(0.0, float(part["timeline"].get("end") or 0.0))
        gap = 0.0
        if start >= group_end:  # a new group: after a gap (or back to back)
            gap = 0.0 if n == 1 else start - group_end
            group_start, group_end = start, start + length
            group_offset = math.ceil(run_end / grid - 1e-9) * grid
            group += 1
        else:
            group_end = max(group_end, start + length)
        offset = group_offset + (start - group_start)
        offsets.append(offset)
        groups.append(group)
        run_end = max(run_end, group_offset + (group_end - group_start))
        segments.append(
            {
                "n": n,
                "t": _round(offset),
                "end": _round(offset + length),
                "started": start,
                "gap": _round(gap),
            }
        )
    return offsets, groups, segments, run_end


def combine(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One timeline from several segments' (each a mapping with
    ``started``, wall-clock seconds of its time zero, and ``timeline``).

    Segments are laid on one axis in the order they started, the time
    between them cut out (each run starting on a bucket's edge); segments
    that overlap (workers running together)
    are added up: counts, bytes, jobs in flight, widths and rates summed,
    percentiles weighted by successes (p99: the larger).  The result has the
    shape of :meth:`~fetchq.report.Timeline.to_json`, at most
    :data:`COMBINED_BUCKETS` buckets (a segment's bucket that straddles two
    of them is shared between them by time, so counts may be fractions),
    plus ``segments``: for each, ``n``,
    ``t`` (where it starts on the axis), ``end``, ``started`` (wall clock)
    and ``gap`` (seconds cut out before it).  One segment's timeline comes
    back as it was, with ``segments`` added.
    """
    kept = [
        p
        for p in parts
        if isinstance(p.get("timeline"), Mapping) and p["timeline"].get("t")
    ]
    kept.sort(key=lambda p: float(p.get("started") or 0.0))
    if not kept:
        return _empty_timeline()
    if len(kept) == 1:
        single = dict(kept[0]["timeline"])
        single["segments"] = [
            {
                "n": 1,
                "t": 0.0,
                "end": float(single.get("end") or 0.0),
                "started": kept[0].get("started"),
                "gap": 0.0,
            }
        ]
        return single
    # Groups of overlapping segments, laid end to end, each starting on a
    # bucket's edge (so a resume's buckets are the axis's own).
    grid = max(float(p["timeline"].get("interval") or 1.0) for p in kept)
    while True:
        offsets, groups, segments, span = _lay_out(kept, grid)
        if span / grid <= COMBINED_BUCKETS:
            break
        grid *= 2
    n_buckets = max(1, math.ceil(span / grid - 1e-9))
    sums: dict[str, list[float]] = {name: [0.0] * n_buckets for name in _SUMS}
    gauges: dict[str, list[Any]] = {
        name: [None] * n_buckets for name in ("in_flight", "width", "rate")
    }
    # Widths, rates and jobs in flight of segments running together add up;
    # of one run after another, the later width and rate, the larger peak.
    together: dict[int, dict[str, dict[int, Any]]] = {}
    weighted = {name: [0.0] * n_buckets for name in ("p50", "p90")}
    weights = [0.0] * n_buckets
    p99: list[Any] = [None] * n_buckets
    baseline: list[Any] = [None] * n_buckets
    decisions: list[dict[str, Any]] = []
    seen = 0
    for part, offset, group in zip(kept, offsets, groups, strict=True):
        tl = part["timeline"]
        t = tl["t"]
        m = len(t)
        cols = {name: _column(tl, name, m) for name in _SUMS}
        own: dict[str, dict[int, Any]] = {name: {} for name in gauges}
        in_flight = _column(tl, "in_flight", m)
        width = _column(tl, "width", m)
        rate = _column(tl, "rate", m)
        pcols = {name: _column(tl, name, m) for name in ("p50", "p90", "p99")}
        base = _column(tl, "baseline", m)
        length = max(0.0, float(tl.get("end") or 0.0))
        step = float(tl.get("interval") or 1.0)
        for i, when in enumerate(t):
            for g, share in _shares(offset, float(when), step, length, grid, n_buckets):
                for name, values in cols.items():
                    sums[name][g] += (values[i] or 0) * share
                if in_flight[i] is not None:
                    own["in_flight"][g] = max(own["in_flight"].get(g, 0), in_flight[i])
                if width[i] is not None:
                    own["width"][g] = width[i]
                own["rate"][g] = rate[i]
                ok = (cols["ok"][i] or 0) * share
                if ok:
                    for name in ("p50", "p90"):
                        if pcols[name][i] is not None:
                            weighted[name][g] += pcols[name][i] * ok
                    weights[g] += ok
                if pcols["p99"][i] is not None:
                    p99[g] = max(p99[g] or 0.0, pcols["p99"][i])
                if base[i] is not None:
                    baseline[g] = base[i]
        summed = together.setdefault(group, {name: {} for name in gauges})
        for name, by_bucket in own.items():
            added = summed[name]
            for g, value in by_bucket.items():
                if value is not None:
                    added[g] = (added.get(g) or 0) + value
        for d in tl.get("decisions") or []:
            moved = dict(d)
            moved["t"] = _round(offset + float(d.get("t") or 0.0))
            decisions.append(moved)
        seen += int(tl.get("decisions_seen") or len(tl.get("decisions") or []))
    for index in sorted(together):
        for name, by_g in together[index].items():
            gauge = gauges[name]
            for g, value in by_g.items():
                if name == "in_flight":
                    gauge[g] = max(gauge[g] or 0, value)
                else:
                    gauge[g] = value
    decisions.sort(key=lambda d: d["t"] or 0.0)
    # A bucket no data fell into (a quiet end of a run) keeps the width, rate
    # and jobs in flight of the one before.
    for g in range(1, n_buckets):
        for column in gauges.values():
            if column[g] is None:
                column[g] = column[g - 1]
    t_axis = [round(i * grid, 9) for i in range(n_buckets)]
    out: dict[str, Any] = {
        "version": 1,
        "interval": grid,
        "origin": segments[0]["started"],
        "end": _round(span),
        "t": t_axis,
    }
    counts = {name: [_count(v) for v in values] for name, values in sums.items()}
    for name in ("launched", "ok", "failed", "retried", "throttled", "cancelled"):
        out[name] = counts[name]
    # The axis has no gaps (runs are laid end to end), so a bucket covers its
    # interval, the last one up to the end.
    out["throughput"] = [
        _round(ok / min(grid, span - g * grid)) if span > g * grid else None
        for g, ok in enumerate(sums["ok"])
    ]
    out["in_flight"] = gauges["in_flight"]
    out["width"] = gauges["width"]
    out["rate"] = [_round(v) for v in gauges["rate"]]
    for name in ("p50", "p90"):
        out[name] = [
            _round(weighted[name][g] / weights[g], 4) if weights[g] else None
            for g in range(n_buckets)
        ]
    out["p99"] = [_round(v, 4) for v in p99]
    out["baseline"] = [_round(v, 4) for v in baseline]
    out["drops"] = counts["drops"]
    out["throttles"] = counts["throttles"]
    out["bytes"] = counts["bytes"]
    out["decision_counts"] = counts["decision_counts"]
    out["decisions"] = _thin_decisions(decisions, COMBINED_DECISIONS)
    out["decisions_seen"] = seen
    out["totals"] = {name: round(sum(sums[name])) for name in TOTALS}
    out["segments"] = segments
    return out


# ----------------------------------------------------------------------
# Figures


def _add_counts(into: dict[str, Any], more: Mapping[str, Any]) -> None:
    for k, v in more.items():
        if isinstance(v, int):
            into[k] = into.get(k, 0) + v


def _merge_lane(into: dict[str, Any], lane: Mapping[str, Any]) -> None:
    for name in ("requests", "ok", "failed", "retried", "throttled", "bytes"):
        into[name] = into.get(name, 0) + int(lane.get(name) or 0)
    hist = LatencyHistogram.from_json(into.get("latency"))
    hist.merge(LatencyHistogram.from_json(lane.get("latency")))
    into["latency"] = hist.to_json()


def merge_stats(stats: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """The figures of several segments (each
    :meth:`~fetchq.progress.RunStats.to_json`) added up, in the same form
    and still bounded."""
    out: dict[str, Any] = {
        "elapsed": 0.0,
        "done": 0,
        "outcomes": {},
        "bad_input": 0,
        "statuses": {},
        "bytes": 0,
        "latency": {},
        "errors": {},
        "examples": {},
        "attempts": {},
        "lanes": [],
        "other_lanes": None,
        "control": None,
    }
    latency = LatencyHistogram()
    lanes: dict[Any, dict[str, Any]] = {}
    other: dict[str, Any] | None = None
    for s in stats:
        if not isinstance(s, Mapping):
            continue
        out["elapsed"] = round(out["elapsed"] + float(s.get("elapsed") or 0.0), 3)
        out["done"] += int(s.get("done") or 0)
        out["bad_input"] += int(s.get("bad_input") or 0)
        out["bytes"] += int(s.get("bytes") or 0)
        for name in ("outcomes", "statuses", "attempts"):
            _add_counts(out[name], s.get(name) or {})
        latency.merge(LatencyHistogram.from_json(s.get("latency")))
        for name, counts in (s.get("errors") or {}).items():
            have = out["errors"].setdefault(name, [0, 0, 0])
            for i, v in enumerate(list(counts)[:3]):
                have[i] += int(v or 0)
        examples = out["examples"]
        for key, items in (s.get("examples") or {}).items():
            have = examples.get(key)
            if have is None:
                if len(examples) >= MAX_EXAMPLE_KEYS:
                    continue
                have = examples[key] = []
            for item in items:
                if len(have) < MAX_EXAMPLES and all(
                    e.get("id") != item.get("id") for e in have
                ):
                    have.append(dict(item))
        for lane in s.get("lanes") or []:
            key = lane.get("key")
            into = lanes.setdefault(key, {"key": key})
            _merge_lane(into, lane)
        rest = s.get("other_lanes")
        if isinstance(rest, Mapping):
            if other is None:
                other = {"count": 0}
            other["count"] += int(rest.get("count") or 0)
            _merge_lane(other, rest)
        out["control"] = _merge_control(out["control"], s.get("control"))
    out["latency"] = latency.to_json()
    ranked = sorted(lanes.values(), key=lambda lane: -int(lane.get("requests") or 0))
    for lane in ranked[MAX_LANES_SAVED:]:
        if other is None:
            other = {"count": 0}
        other["count"] += 1
        _merge_lane(other, lane)
    out["lanes"] = ranked[:MAX_LANES_SAVED]
    out["other_lanes"] = other
    return out


def _merge_control(a: Any, b: Any) -> Any:
    if not isinstance(b, Mapping):
        return a
    if not isinstance(a, Mapping):
        return dict(b)
    out = dict(b)  # the later one's controller, width, rate and baseline
    for name in ("decisions", "drops", "throttles", "paced", "cuts"):
        out[name] = int(a.get(name) or 0) + int(b.get(name) or 0)
    widths = [w for w in (a.get("widths"), b.get("widths")) if w]
    if widths:
        out["widths"] = [min(w[0] for w in widths), max(w[1] for w in widths)]
    return out


# ----------------------------------------------------------------------
# Kept in the store


class RunHistory:
    """A run's segments in a store's meta (see the module).

    Args:
        store: the run's store (``meta_get``/``meta_set`` may return
            Deferreds, as Redis's do).
        started: wall-clock seconds of this segment's time zero.
        sid: this segment's id (default: a new random one).
        wall: the wall clock (``time.time``), for when a segment last saved.
        max_segments: segments listed before old ones are folded.
    """

    def __init__(
        self,
        store: Any,
        started: float,
        sid: str | None = None,
        *,
        wall: Callable[[], float] = time.time,
        max_segments: int = MAX_SEGMENTS,
    ) -> None:
        if max_segments < 2:
            raise ValueError(f"max_segments must be at least 2, not {max_segments!r}")
        self.store = store
        self.started = started
        self.sid = sid or uuid.uuid4().hex[:12]
        self.wall = wall
        self.max_segments = max_segments

    def record(
        self,
        stats: Mapping[str, Any],
        timeline: Mapping[str, Any],
        ended: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """This segment's record: its figures and thinned timeline; ``ended``
        says how it ended (None while it runs)."""
        return {
            "sid": self.sid,
            "runs": 1,
            "started": self.started,
            "updated": self.wall(),
            "ended": ended,
            "stats": dict(stats),
            "timeline": downsample(timeline),
            **extra,
        }

    def save(
        self,
        stats: Mapping[str, Any],
        timeline: Mapping[str, Any],
        ended: str | None = None,
        **extra: Any,
    ) -> defer.Deferred[None]:
        """Write this segment's record and make sure the list names it."""
        record = self.record(stats, timeline, ended, **extra)
        return defer.Deferred.fromCoroutine(self._save(record))

    async def _save(self, record: dict[str, Any]) -> None:
        store = self.store
        await as_deferred(store.meta_set(META_SEGMENT + self.sid, record))
        listed = await as_deferred(store.meta_get(META_INDEX))
        index = [i for i in listed or [] if isinstance(i, str)]
        if self.sid in index:
            return
        index.append(self.sid)
        if len(index) > self.max_segments:
            index = await self._fold(index)
        await as_deferred(store.meta_set(META_INDEX, index))

    async def _fold(self, index: list[str]) -> list[str]:
        """Fold the oldest ended segments into one, so the list shrinks to
        half of ``max_segments``."""
        want = len(index) - self.max_segments // 2 + 1
        now = self.wall()
        folded: list[dict[str, Any]] = []
        for sid in index[:-1]:  # never this segment
            if len(folded) >= want:
                break
            record = await as_deferred(self.store.meta_get(META_SEGMENT + sid))
            if not isinstance(record, dict):
                folded.append({"sid": sid, "runs": 0})  # gone: drop its name
                continue
            dead = now - float(record.get("updated") or 0.0) > DEAD_AFTER
            if record.get("ended") is None and not dead:
                continue  # maybe still running (another worker): its own
            folded.append(record)
        real = [r for r in folded if "timeline" in r]
        if len(real) < 2 and len(folded) == len(real):
            return index
        names = {r["sid"] for r in folded}
        rest = [sid for sid in index if sid not in names]
        if real:
            one = fold(real)
            await as_deferred(self.store.meta_set(META_SEGMENT + one["sid"], one))
            rest.insert(0, one["sid"])
        for sid in names:
            await as_deferred(self.store.meta_set(META_SEGMENT + sid, None))
        return rest

    def segments(self) -> defer.Deferred[list[dict[str, Any]]]:
        """Every segment's record, oldest first (this one's as last saved)."""
        return defer.Deferred.fromCoroutine(self._segments())

    async def _segments(self) -> list[dict[str, Any]]:
        index = await as_deferred(self.store.meta_get(META_INDEX))
        out: list[dict[str, Any]] = []
        for sid in index if isinstance(index, list) else []:
            record = await as_deferred(self.store.meta_get(META_SEGMENT + str(sid)))
            if isinstance(record, dict):
                out.append(record)
        return out


def fold(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Several segments' records as one (their figures added up, their
    timelines combined and thinned)."""
    ordered = sorted(records, key=lambda r: float(r.get("started") or 0.0))
    timeline = combine(ordered)
    timeline.pop("segments", None)
    return {
        "sid": "folded-" + str(ordered[0].get("sid")),
        "runs": sum(int(r.get("runs") or 1) for r in ordered),
        "started": ordered[0].get("started"),
        "updated": max(float(r.get("updated") or 0.0) for r in ordered),
        "ended": ordered[-1].get("ended"),
        "stats": merge_stats(r.get("stats") for r in ordered),
        "timeline": downsample(timeline),
    }


def report_data(
    segments: Sequence[Mapping[str, Any]],
    own: str | None = None,
    own_timeline: Mapping[str, Any] | None = None,
    own_stats: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What the report of the whole run shows: ``timeline`` (combined),
    ``stats`` (added up) and ``history`` (one row per segment: ``n``,
    ``runs``, ``started``, ``elapsed``, ``ended``, ``done``, ``ok``,
    ``failed``, ``throttled``, ``attempts``, ``bytes``).  The segment ``own``
    (this process) uses ``own_timeline`` and ``own_stats``, the live ones,
    in full, instead of its saved record."""
    parts: list[dict[str, Any]] = []
    for record in segments:
        part = dict(record)
        if own is not None and part.get("sid") == own:
            if own_timeline is not None:
                part["timeline"] = own_timeline
            if own_stats is not None:
                part["stats"] = own_stats
        parts.append(part)
    parts.sort(key=lambda p: float(p.get("started") or 0.0))
    history = []
    for n, part in enumerate(parts, 1):
        stats = part.get("stats") or {}
        outcomes = stats.get("outcomes") or {}
        tl = part.get("timeline") or {}
        history.append(
            {
                "n": n,
                "runs": int(part.get("runs") or 1),
                "started": part.get("started"),
                "elapsed": float(tl.get("end") or stats.get("elapsed") or 0.0),
                "ended": part.get("ended"),
                "done": int(stats.get("done") or 0),
                "ok": int(outcomes.get("ok") or 0),
                "failed": int(outcomes.get("failed") or 0),
                "throttled": int(outcomes.get("throttled") or 0),
                "attempts": int((tl.get("totals") or {}).get("launched") or 0),
                "bytes": int(stats.get("bytes") or 0),
            }
        )
    return {
        "timeline": combine(parts),
        "stats": merge_stats(p.get("stats") for p in parts),
        "history": history,
    }
