"""The run report: one self-contained HTML file, charts and tables.

:func:`write_report` writes it (atomically); :func:`render_report` returns it
as a string.  The page inlines uPlot, its stylesheet and fetchq's chart code
(``assets/charts.js``, shared with a live admin page), embeds the timeline as
JSON, and makes no request of any kind, so it works offline and alone.  When
the charts have drawn, ``<body data-rendered="ok">``; an error while drawing
sets ``data-rendered="error"`` and is written into the page.

What it shows, top to bottom: the run's facts (recipe, when it started, how
long it took), tiles (rows ok and failed as the state counts them, attempts,
retries, throttles, bytes), five charts (width and jobs in flight with the
controller's decisions; ok per second; failures, retries and throttles per
second on an axis of their own; bytes per second; latency percentiles), each
resume marked; then tables: outcomes, status codes and errors with example
rows, one row per lane (host, sender, endpoint), attempts per job, the run's
history across resumes, and, folded, the controller's decisions.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeAlias

from fetchq.progress import LatencyHistogram, format_duration
from fetchq.report.timeline import Timeline

__all__ = ["Summary", "format_wall", "render_report", "write_report"]

Rows: TypeAlias = Sequence[tuple[Any, Any]]
Summary: TypeAlias = "Mapping[str, Rows | str] | str"
"""Summary sections: title → rows of (label, value), or a text block; or one
text block (such as ``RunStats.summary()``) for a section titled "Summary"."""

MAX_DECISION_ROWS = 200
MAX_STATUS_ROWS = 40
MAX_ERROR_ROWS = 40
_LINE = re.compile(r"^\s*([A-Za-z][\w .()/%-]{0,40}?):\s+(.*\S)\s*$")


@cache
def _asset(name: str) -> str:
    return (resources.files("fetchq.report") / "assets" / name).read_text("utf-8")


def _inline_script(code: str) -> str:
    # "</script" cannot end a script element if its "/" is escaped; in
    # JavaScript "<\/" means "</" inside strings, regexes and comments alike.
    return re.sub(r"</(?=script)", r"<\\/", code, flags=re.IGNORECASE)


def _inline_style(css: str) -> str:
    return re.sub(r"</(?=style)", r"<\\/", css, flags=re.IGNORECASE)


def json_for_script(data: Any) -> str:
    """``data`` as JSON that is safe inside ``<script type=application/json>``:
    ``<``, ``>`` and ``&`` are written as ``\\u003c`` and so on, so no ``</``
    (or ``<!--``) can appear; NaN and infinities are refused."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _text_rows(text: str) -> list[tuple[str, str] | str]:
    """A text block as rows: ``label: value`` lines split, others whole."""
    rows: list[tuple[str, str] | str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _LINE.match(line)
        rows.append((match[1], match[2]) if match else line.strip())
    return rows


def _table(rows: Iterable[tuple[Any, Any] | str]) -> str:
    out = ['<table class="kv">']
    for row in rows:
        if isinstance(row, str):
            out.append(f'<tr><td colspan="2" class="line">{_esc(row)}</td></tr>')
        else:
            label, value = row
            out.append(f"<tr><th>{_esc(label)}</th><td>{_esc(value)}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


def _summary_cards(summary: Summary | None) -> list[str]:
    """The summary sections as cards; a single text block is one card with
    no heading of its own (it sits under the "Summary" heading)."""
    if summary is None:
        return []
    sections: Mapping[Any, Rows | str]
    sections = {None: summary} if isinstance(summary, str) else summary
    parts = []
    for title, body in sections.items():
        rows: Iterable[tuple[Any, Any] | str]
        rows = _text_rows(body) if isinstance(body, str) else body
        head = "" if title is None else f"<h3>{_esc(title)}</h3>"
        parts.append(f'<div class="card">{head}{_table(rows)}</div>')
    return parts


def _summary_html(summary: Summary | None, more: Sequence[str] = ()) -> str:
    """One "Summary" heading over the cards."""
    parts = [*more, *_summary_cards(summary)]
    if not parts:
        return ""
    return '<h2>Summary</h2>\n<div class="cards">' + "\n".join(parts) + "</div>"


def format_wall(seconds: float) -> str:
    """A wall-clock time (epoch seconds) as local time with its zone:
    ``2025-01-31 14:05:09 CET``."""
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(seconds)).strip()


def _bytes(n: float) -> str:
    """``812 B``, ``3.0 kB``, ``41.2 MB`` (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    raise AssertionError("unreachable")


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "\u2013"
    ms = 1000.0 * seconds
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def _pct(part: float, whole: float) -> str:
    return "\u2013" if not whole else f"{100.0 * part / whole:.1f}%"


def _grid(head: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "") -> str:
    """A table of figures: the first column left-aligned, the rest right,
    a column headed "examples" left-aligned and wrapping."""
    th = "".join(
        f'<th class="ex">{_esc(h)}</th>' if h == "examples" else f"<th>{_esc(h)}</th>"
        for h in head
    )
    body = []
    for row in rows:
        cells = []
        for cell in row:
            if isinstance(cell, _Raw):
                cells.append(cell.html)
            else:
                cells.append(f"<td>{_esc(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="scroll {cls}"><table class="grid {cls}">'
        f"<thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


class _Raw:
    """A table cell already in HTML."""

    __slots__ = ("html",)

    def __init__(self, html: str) -> None:
        self.html = html


def _examples_cell(examples: Sequence[Mapping[str, Any]] | None) -> _Raw:
    items = []
    for e in examples or []:
        what = e.get("url") or ""
        ident = e.get("id")
        label = f"row {ident}" if ident is not None else ""
        message = e.get("message") or ""
        parts = [f"<b>{_esc(label)}</b>"] if label else []
        if what:
            parts.append(f"<code>{_esc(what)}</code>")
        if message:
            parts.append(f'<span class="msg">{_esc(message)}</span>')
        items.append("<div>" + " ".join(parts) + "</div>")
    return _Raw(f'<td class="ex">{"".join(items)}</td>')


def _stats_html(
    stats: Mapping[str, Any] | None,
    data: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]] | None,
    lane_name: str,
    summary: Summary | None = None,
) -> str:
    """The tables under the charts: the summary (outcomes, latency, the
    controller, and ``summary``'s sections), status codes, errors, lanes,
    attempts per job and the run's history."""
    if stats is None:
        return _summary_html(summary)
    out: list[str] = []
    outcomes = stats.get("outcomes") or {}
    bad = int(stats.get("bad_input") or 0)
    cards: list[tuple[str, Sequence[tuple[Any, Any] | str]]] = []
    rows: list[tuple[Any, Any] | str] = []
    for name in ("ok", "failed", "cancelled", "left to do"):
        n = int(outcomes.get(name) or 0)
        if n or name in ("ok", "failed"):
            label = f"{n:,}"
            if name == "failed" and bad:
                label += f" ({bad:,} of them bad input)"
            rows.append((f"jobs {name}", label))
    for name in ("retried", "throttled"):
        n = int(outcomes.get(name) or 0)
        if n:
            rows.append((f"attempts {name}", f"{n:,}"))
    cards.append(("Outcomes", rows))
    hist = LatencyHistogram.from_json(stats.get("latency"))
    if hist.count:
        p = hist.percentile
        cards.append(
            (
                "Latency (every attempt)",
                [(f"p{q}", _ms(p(q))) for q in (50, 90, 95, 99)]
                + [("max", _ms(p(100))), ("attempts", f"{hist.count:,}")],
            )
        )
    control = stats.get("control")
    if isinstance(control, Mapping):
        crow: list[tuple[Any, Any] | str] = [
            ("algorithm", control.get("controller")),
            ("decisions", f"{int(control.get('decisions') or 0):,}"),
        ]
        widths = control.get("widths")
        if widths:
            crow.append(("width range", f"{widths[0]}\u2013{widths[1]}"))
        if control.get("width") is not None:
            crow.append(("width at the end", control["width"]))
        if control.get("rate") is not None:
            crow.append(("paced at the end", f"{control['rate']:.1f}/s"))
        crow.append(
            (
                "drops",
                f"{int(control.get('drops') or 0):,} "
                f"({int(control.get('throttles') or 0):,} throttled)",
            )
        )
        if control.get("cuts"):
            crow.append(("width cut for drops", f"{int(control['cuts']):,} times"))
        if control.get("paced"):
            crow.append(("pace cut", f"{int(control['paced']):,} times"))
        if control.get("baseline") is not None:
            crow.append(("baseline latency", _ms(control["baseline"])))
        cards.append(("Adaptive controller", crow))
    out.append(
        _summary_html(
            summary,
            [
                f'<div class="card"><h3>{_esc(t)}</h3>{_table(r)}</div>'
                for t, r in cards
            ],
        )
    )
    examples = stats.get("examples") or {}
    statuses = stats.get("statuses") or {}
    if statuses:
        total = sum(int(v) for v in statuses.values())
        ranked = sorted(statuses.items(), key=lambda kv: (-int(kv[1]), kv[0]))
        out.append(
            "<h2>Status codes</h2>\n"
            '<p class="note">Every attempt that got an answer, by its status code, '
            "with a few rows that got it.</p>\n"
            + _grid(
                ("status", "attempts", "share", "examples"),
                (
                    (
                        code,
                        f"{int(n):,}",
                        _pct(int(n), total),
                        _examples_cell(examples.get(f"status {code}")),
                    )
                    for code, n in ranked[:MAX_STATUS_ROWS]
                ),
                "first-left",
            )
        )
    errors = stats.get("errors") or {}
    if errors:
        ranked_errors = sorted(
            errors.items(), key=lambda kv: (-sum(int(x) for x in kv[1]), kv[0])
        )
        out.append(
            "<h2>Errors</h2>\n"
            '<p class="note">Attempts that did not succeed, by error name: those '
            "that failed the job for good (bad input rows among them), those "
            "retried and those throttled (told to slow down), with examples."
            "</p>\n"
            + _grid(
                ("error", "failed", "retried", "throttled", "examples"),
                (
                    (
                        name,
                        f"{int(c[0]):,}",
                        f"{int(c[1]):,}",
                        f"{int(c[2]):,}",
                        _examples_cell(examples.get(name)),
                    )
                    for name, c in ranked_errors[:MAX_ERROR_ROWS]
                ),
                "first-left",
            )
        )
    lanes = list(stats.get("lanes") or [])
    other = stats.get("other_lanes")
    if lanes or other:
        lane_rows = []
        for lane in lanes:
            key = lane.get("key")
            lane_rows.append(_lane_row("(none)" if key is None else str(key), lane))
        if isinstance(other, Mapping):
            lane_rows.append(
                _lane_row(f"({int(other.get('count') or 0):,} others)", other)
            )
        out.append(
            f"<h2>Per {_esc(lane_name)}</h2>\n"
            f'<p class="note">Attempts to each {_esc(lane_name)} (the busiest '
            f"first): how they ended, the latency of all of them and the bytes "
            "received.</p>\n"
            + _grid(
                (
                    lane_name,
                    "requests",
                    "ok",
                    "failed",
                    "retried",
                    "throttled",
                    "p50",
                    "p95",
                    "bytes",
                ),
                lane_rows,
                "first-left",
            )
        )
    attempts = stats.get("attempts") or {}
    if attempts:
        total = sum(int(v) for v in attempts.values())
        ranked_attempts = sorted(attempts.items(), key=lambda kv: int(kv[0]))
        out.append(
            "<h2>Attempts per job</h2>\n"
            '<p class="note">How many attempts each finished job took (0: bad '
            "input, never tried).</p>\n"
            + _grid(
                ("attempts", "jobs", "share"),
                ((k, f"{int(v):,}", _pct(int(v), total)) for k, v in ranked_attempts),
                "first-left narrow",
            )
        )
    if history:
        out.append(_history_html(history, data))
    return "\n".join(out)


def _lane_row(name: str, lane: Mapping[str, Any]) -> list[Any]:
    hist = LatencyHistogram.from_json(lane.get("latency"))
    return [
        name,
        f"{int(lane.get('requests') or 0):,}",
        f"{int(lane.get('ok') or 0):,}",
        f"{int(lane.get('failed') or 0):,}",
        f"{int(lane.get('retried') or 0):,}",
        f"{int(lane.get('throttled') or 0):,}",
        _ms(hist.percentile(50)),
        _ms(hist.percentile(95)),
        _bytes(int(lane.get("bytes") or 0)),
    ]


def _history_html(history: Sequence[Mapping[str, Any]], data: Mapping[str, Any]) -> str:
    rows = []
    for h in history:
        started = h.get("started")
        runs = int(h.get("runs") or 1)
        label = str(h.get("n"))
        if runs > 1:
            label += f" ({runs} runs)"
        rows.append(
            (
                label,
                "\u2013" if started is None else format_wall(float(started)),
                format_duration(float(h.get("elapsed") or 0.0)),
                h.get("ended") or "killed, or still running",
                f"{int(h.get('done') or 0):,}",
                f"{int(h.get('ok') or 0):,}",
                f"{int(h.get('failed') or 0):,}",
                f"{int(h.get('throttled') or 0):,}",
                f"{int(h.get('attempts') or 0):,}",
                _bytes(int(h.get("bytes") or 0)),
            )
        )
    note = (
        "Each run of the recipe (each resume; on Redis, each worker) is one "
        "segment; the charts above lay them end to end, the time between "
        "them left out, each start marked."
    )
    return f'<h2>Run history</h2>\n<p class="note">{_esc(note)}</p>\n' + _grid(
        (
            "run",
            "started",
            "took",
            "ended",
            "jobs done",
            "ok",
            "failed",
            "throttled",
            "attempts",
            "bytes",
        ),
        rows,
        "first-left history",
    )


def _fmt(value: Any, unit: str = "", scale: float = 1.0, digits: int = 3) -> str:
    if value is None:
        return "\u2013"  # an en dash
    if isinstance(value, float):
        value *= scale
        return f"{value:.{digits}g}{unit}"
    return f"{value}{unit}"


def _fmt_time(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    whole = round(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _decisions_html(data: Mapping[str, Any], folded: bool = False) -> str:
    decisions: list[dict[str, Any]] = list(data.get("decisions", []))
    if not decisions:
        return ""
    changed = [d for d in decisions if d.get("changed")]
    chosen = changed or decisions
    shown = chosen[-MAX_DECISION_ROWS:][::-1]  # newest first
    what = "that changed the width or rate" if changed else ""
    seen = data.get("decisions_seen", len(decisions))
    note = (
        f"The last {len(shown)} of the controller's decisions {what}, "
        f"newest first ({seen} made"
        + (f", {len(decisions)} kept for the charts" if seen > len(decisions) else "")
        + ")."
    )
    head = (
        "<tr><th>time</th><th>lane</th><th>reason</th><th>width</th>"
        "<th>rate/s</th><th>in flight</th><th>samples</th><th>latency</th>"
        "<th>baseline</th><th>gradient</th><th>drops</th><th>throttles</th></tr>"
    )
    rows = []
    for d in shown:
        key = "(queue)" if d.get("key") is None else d["key"]
        rows.append(
            "<tr>"
            f"<td>{_esc(_fmt_time(d.get('t') or 0.0))}</td>"
            f"<td>{_esc(key)}</td>"
            f"<td>{_esc(d.get('reason', ''))}</td>"
            f"<td>{_esc(d.get('width'))}</td>"
            f"<td>{_esc(_fmt(d.get('rate')))}</td>"
            f"<td>{_esc(d.get('in_flight', ''))}</td>"
            f"<td>{_esc(d.get('samples', ''))}</td>"
            f"<td>{_esc(_fmt(d.get('latency'), ' ms', 1000.0))}</td>"
            f"<td>{_esc(_fmt(d.get('baseline'), ' ms', 1000.0))}</td>"
            f"<td>{_esc(_fmt(d.get('gradient')))}</td>"
            f"<td>{_esc(d.get('drops', ''))}</td>"
            f"<td>{_esc(d.get('throttles', ''))}</td>"
            "</tr>"
        )
    table = (
        f'<p class="note">{_esc(note)}</p>\n'
        '<div class="scroll"><table class="grid decisions">'
        f"<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table></div>"
    )
    if folded:
        return (
            '<details class="decisions"><summary><h2>Controller decisions '
            f"({seen:,})</h2></summary>\n{table}</details>"
        )
    return f"<h2>Controller decisions</h2>\n{table}"


def _meta_html(meta: Mapping[str, Any] | None) -> str:
    if not meta:
        return ""
    items = "".join(
        f"<div><dt>{_esc(k)}</dt><dd>{_esc(v)}</dd></div>" for k, v in meta.items()
    )
    return f'<dl class="meta">{items}</dl>'


def _tiles_html(
    data: Mapping[str, Any], stats: Mapping[str, Any] | None, counts: Any
) -> str:
    """The tiles: rows as the state counts them (the whole run: ok, failed
    with bad input, left to do), or as the figures do without a state;
    then attempts, retries, throttles, bytes and rates from the timeline."""
    if stats is None:
        return _totals_html(data)
    totals = data.get("totals") or {}
    outcomes = stats.get("outcomes") or {}
    bad = int(stats.get("bad_input") or 0)
    figures: list[tuple[str, Any]] = []
    if counts is not None:
        done = dict(counts.done)
        ok = int(done.pop("ok", 0))
        failed = sum(int(v) for v in done.values())
        left = int(counts.pending) + int(counts.claimed)
        figures.append(("rows", counts.total))
    else:
        ok = int(outcomes.get("ok") or 0)
        failed = int(outcomes.get("failed") or 0)
        left = int(outcomes.get("left to do") or 0)
    figures.append(("ok", ok))
    figures.append(("failed" + (f" ({bad:,} bad input)" if bad else ""), failed))
    if left:
        figures.append(("left to do", left))
    figures.append(("attempts", int(totals.get("launched") or 0)))
    for name in ("retried", "throttled"):
        if totals.get(name):
            figures.append((name, int(totals[name])))
    if stats.get("bytes"):
        figures.append(("received", _bytes(int(stats["bytes"]))))
    end = float(data.get("end") or 0.0)
    if end > 0 and totals.get("ok"):
        figures.append(("ok/s on average", f"{int(totals['ok']) / end:,.1f}"))
    figures.append(("most in flight", max(data.get("in_flight") or [0], key=_num0)))
    if data.get("decisions_seen"):
        figures.append(("decisions", data["decisions_seen"]))
    return _figures(figures)


def _num0(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else 0.0


def _figures(figures: Sequence[tuple[str, Any]]) -> str:
    cells = "".join(
        f'<div class="fig"><b>{_esc(f"{v:,}" if isinstance(v, int) else v)}</b>'
        f"<span>{_esc(k)}</span></div>"
        for k, v in figures
    )
    return f'<div class="figures">{cells}</div>'


def _totals_html(data: Mapping[str, Any]) -> str:
    totals = data.get("totals") or {}
    if not data.get("t"):
        return ""
    figures = [("attempts", totals.get("launched", 0)), ("ok", totals.get("ok", 0))]
    for name in ("failed", "retried", "throttled", "cancelled"):
        if totals.get(name):
            figures.append((name, totals[name]))
    peak = max(data.get("in_flight") or [0])
    figures.append(("most in flight", peak))
    throughput = [v for v in data.get("throughput") or [] if v is not None]
    if throughput:
        figures.append(("best ok/s", f"{max(throughput):,.1f}"))
    if data.get("decisions_seen"):
        figures.append(("decisions", data["decisions_seen"]))
    return _figures(figures)


_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f6f7f9; color: #1d2330;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue",
  Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 20px 24px 48px; }
h1 { font-size: 22px; margin: 4px 0 10px; }
h2 { font-size: 17px; margin: 28px 0 10px; }
h3 { font-size: 14px; margin: 0 0 8px; }
.meta { display: flex; flex-wrap: wrap; gap: 6px 22px; margin: 0 0 14px; }
.meta div { display: flex; gap: 6px; }
.meta dt { color: #667; }
.meta dt::after { content: ":"; }
.meta dd { margin: 0; font-weight: 600; }
.figures { display: flex; flex-wrap: wrap; gap: 10px; margin: 8px 0 4px; }
.fig { background: #fff; border: 1px solid #e1e4ea; border-radius: 6px;
  padding: 8px 14px; min-width: 110px; }
.fig b { display: block; font-size: 19px; }
.fig span { color: #667; font-size: 12px; }
.chart { background: #fff; border: 1px solid #e1e4ea; border-radius: 6px;
  padding: 12px 12px 6px; margin: 0 0 14px; }
.chart h2 { margin: 0 0 2px; font-size: 15px; }
.chart p.note { margin: 0 0 6px; }
.note { color: #667; font-size: 12.5px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr));
  gap: 12px; }
.card { background: #fff; border: 1px solid #e1e4ea; border-radius: 6px;
  padding: 12px 14px; }
table { border-collapse: collapse; width: 100%; }
table.kv th { text-align: left; font-weight: 500; color: #556; padding: 3px 12px 3px 0;
  white-space: nowrap; vertical-align: top; width: 1%; }
table.kv td { padding: 3px 0; font-variant-numeric: tabular-nums; }
table.kv td.line { color: #333; }
.scroll { max-height: 560px; overflow: auto; background: #fff;
  border: 1px solid #e1e4ea; border-radius: 6px; }
table.grid { font-size: 12.5px; font-variant-numeric: tabular-nums; }
table.grid th, table.grid td { padding: 4px 10px; border-bottom: 1px solid #eef0f3;
  text-align: right; white-space: nowrap; }
table.decisions th:nth-child(2), table.decisions td:nth-child(2),
table.decisions th:nth-child(3), table.decisions td:nth-child(3) { text-align: left; }
table.grid thead th { position: sticky; top: 0; background: #f0f2f5; }
#report-errors { display: none; background: #fdecea; color: #8a1c12;
  border: 1px solid #f5c2bd; border-radius: 6px; padding: 10px 12px;
  white-space: pre-wrap; }
body[data-rendered="error"] #report-errors { display: block; }
.fq-decision-legend { display: flex; flex-wrap: wrap; gap: 4px 14px;
  align-items: center; font-size: 12.5px; color: #445; margin: 2px 0 4px; }
.fq-reason i { display: inline-block; width: 9px; height: 9px; border-radius: 50%;
  margin-right: 5px; vertical-align: baseline; }
.fq-note { color: #889; }
.fq-empty { color: #889; padding: 20px 0; }
.fq-segment-note { font-size: 12px; color: #667; margin: 0 0 4px; }
table.first-left th:first-child, table.first-left td:first-child { text-align: left; }
table.grid th.ex { text-align: left; }
table.grid td.ex { text-align: left; white-space: normal; max-width: 640px;
  font-size: 12px; color: #334; }
table.grid td.ex div { margin: 1px 0; }
table.grid td.ex code { font-size: 11.5px; word-break: break-all; }
table.grid td.ex .msg { color: #778; }
div.scroll.narrow { display: inline-block; min-width: 320px; }
details.decisions { margin-top: 28px; }
details.decisions > summary { cursor: pointer; list-style-position: outside; }
details.decisions > summary h2 { display: inline; margin: 0; }
.uplot .u-legend { font-size: 12.5px; }
footer { margin-top: 32px; color: #889; font-size: 12px; }
"""

_ERROR_HOOK = """
(function () {
  function show(message) {
    document.body.dataset.rendered = "error";
    var box = document.getElementById("report-errors");
    box.textContent += (box.textContent ? "\\n" : "") + message;
  }
  window.fetchqReportError = show;
  window.addEventListener("error", function (e) {
    var where = e.lineno ? " (line " + e.lineno + ")" : "";
    show("error: " + (e.message || e.type) + where);
  });
  window.addEventListener("unhandledrejection", function (e) {
    show("error: " + e.reason);
  });
})();
"""

_BOOT = """
(function () {
  var fail = window.fetchqReportError;
  try {
    var source = document.getElementById("fetchq-timeline");
    var timeline = JSON.parse(source.textContent);
    FetchqCharts.render(timeline, {
      width: document.getElementById("chart-width"),
      throughput: document.getElementById("chart-throughput"),
      problems: document.getElementById("chart-problems"),
      bytes: document.getElementById("chart-bytes"),
      latency: document.getElementById("chart-latency")
    }, {
      onError: function (e) { fail("error: " + (e && e.stack || e)); },
      onReady: function () {
        if (document.body.dataset.rendered !== "error") {
          document.body.dataset.rendered = "ok";
        }
      }
    });
  } catch (e) {
    fail("error: " + (e && e.stack || e));
  }
})();
"""


def render_report(
    timeline: Timeline | Mapping[str, Any],
    summary: Summary | None = None,
    *,
    title: str = "fetchq run report",
    meta: Mapping[str, Any] | None = None,
    stats: Mapping[str, Any] | None = None,
    history: Sequence[Mapping[str, Any]] | None = None,
    counts: Any = None,
    lane_name: str = "lane",
) -> str:
    """The report as one HTML document.

    Args:
        timeline: a :class:`Timeline`, or the dict of its ``to_json()`` (or
            of :func:`fetchq.report.history.combine`).
        summary: section title → rows of (label, value) or a text block; or
            a single text block such as ``RunStats.summary()``.
        title: the page's title and heading.
        meta: run facts shown under the title (recipe, started, elapsed,
            version, ...), in the order given.
        stats: the run's figures (``RunStats.to_json()``, or several runs'
            added up by :func:`fetchq.report.history.merge_stats`): the
            tiles, outcomes, status codes, errors, lanes and attempts.
        history: one row per segment (:func:`fetchq.report.history.report_data`).
        counts: the state's :class:`~fetchq.store.Counts` at the end: the
            tiles' rows ok, failed and left to do.
        lane_name: what a lane is (``host``, ``sender``, ``endpoint``).
    """
    data = timeline.to_json() if isinstance(timeline, Timeline) else timeline
    interval = data.get("interval", 1.0)
    bucket = f"{interval:g} s" if isinstance(interval, (int, float)) else "?"
    charts = (
        ("chart-width", "Width and jobs in flight",
         "The width as set at the end of each bucket, the most jobs underway "
         "at once in it, and the launch rate when one was set.  Each dot is "
         "one of the controller's decisions, at the width it chose."),
        ("chart-throughput", "Throughput",
         "Attempts that ended ok, per second."),
        ("chart-problems", "Failures, retries and throttling",
         "Attempts per second that failed for good, will be retried, or were "
         "throttled (told to slow down: 429, Retry-After), and the drops and "
         "throttles the controller counted; on an axis of their own."),
        ("chart-bytes", "Bytes received",
         "Bytes of successful answers' bodies per second."),
        ("chart-latency", "Latency",
         "Percentiles of successful attempts in each bucket, and the "
         "controller's baseline when it ran."),
    )  # fmt: skip
    segments = data.get("segments") or []
    resumed = ""
    if len(segments) > 1:
        resumed = (
            f'<p class="note">The run in {len(segments)} parts (resumes or '
            "workers), laid end to end without the time between them; dashed "
            "lines mark where each starts.</p>"
        )
    chart_html = "\n".join(
        f'<section class="chart"><h2>{_esc(head)}</h2>'
        f'<p class="note">{_esc(note)} Buckets of {_esc(bucket)}.</p>'
        f'<div id="{cid}"></div></section>'
        for cid, head, note in charts
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="fetchq">
<title>{_esc(title)}</title>
<style>{_inline_style(_asset("uPlot.min.css"))}</style>
<style>{_CSS}</style>
</head>
<body data-rendered="pending">
<script>{_ERROR_HOOK}</script>
<main>
<h1>{_esc(title)}</h1>
{_meta_html(meta)}
{_tiles_html(data, stats, counts)}
<div id="report-errors" role="alert"></div>
<noscript><p class="note">The charts need JavaScript; the tables below do not.</p>
</noscript>
{resumed}
{chart_html}
{_stats_html(stats, data, history, lane_name, summary)}
{_decisions_html(data, folded=stats is not None)}
<footer>Written by fetchq.  Charts drawn with uPlot (MIT licence, bundled).</footer>
</main>
<script type="application/json" id="fetchq-timeline">{json_for_script(data)}</script>
<script>{_inline_script(_asset("uPlot.iife.min.js"))}</script>
<script>{_inline_script(_asset("charts.js"))}</script>
<script>{_BOOT}</script>
</body>
</html>
"""


def write_report(
    path: str | os.PathLike[str],
    timeline: Timeline | Mapping[str, Any],
    summary: Summary | None = None,
    *,
    title: str = "fetchq run report",
    meta: Mapping[str, Any] | None = None,
    stats: Mapping[str, Any] | None = None,
    history: Sequence[Mapping[str, Any]] | None = None,
    counts: Any = None,
    lane_name: str = "lane",
) -> Path:
    """Write the report to ``path`` atomically (a temporary file in the same
    directory, then a rename), and return the path.  Arguments as for
    :func:`render_report`."""
    target = Path(path)
    text = render_report(
        timeline,
        summary,
        title=title,
        meta=meta,
        stats=stats,
        history=history,
        counts=counts,
        lane_name=lane_name,
    )
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or "."
    )
    try:
        os.chmod(tmp, 0o644)  # mkstemp's 0600 is for secrets; this is not one
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target
