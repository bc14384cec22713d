"""The run report: one self-contained HTML file, charts and tables.

:func:`write_report` writes it (atomically); :func:`render_report` returns it
as a string.  The page inlines uPlot, its stylesheet and fetchq's chart code
(``assets/charts.js``, shared with a live admin page), embeds the timeline as
JSON, and makes no request of any kind, so it works offline and alone.  When
the charts have drawn, ``<body data-rendered="ok">``; an error while drawing
sets ``data-rendered="error"`` and is written into the page.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeAlias

from fetchq.report.timeline import Timeline

__all__ = ["Summary", "render_report", "write_report"]

Rows: TypeAlias = Sequence[tuple[Any, Any]]
Summary: TypeAlias = "Mapping[str, Rows | str] | str"
"""Summary sections: title → rows of (label, value), or a text block; or one
text block (such as ``RunStats.summary()``) for a section titled "Summary"."""

MAX_DECISION_ROWS = 200
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


def _summary_html(summary: Summary | None) -> str:
    if summary is None:
        return ""
    if isinstance(summary, str):
        summary = {"Summary": summary}
    parts = []
    for title, body in summary.items():
        rows: Iterable[tuple[Any, Any] | str]
        rows = _text_rows(body) if isinstance(body, str) else body
        parts.append(f'<div class="card"><h3>{_esc(title)}</h3>{_table(rows)}</div>')
    if not parts:
        return ""
    return '<h2>Summary</h2>\n<div class="cards">' + "\n".join(parts) + "</div>"


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


def _decisions_html(data: Mapping[str, Any]) -> str:
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
    return (
        "<h2>Controller decisions</h2>\n"
        f'<p class="note">{_esc(note)}</p>\n'
        '<div class="scroll"><table class="grid">'
        f"<thead>{head}</thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _meta_html(meta: Mapping[str, Any] | None) -> str:
    if not meta:
        return ""
    items = "".join(
        f"<div><dt>{_esc(k)}</dt><dd>{_esc(v)}</dd></div>" for k, v in meta.items()
    )
    return f'<dl class="meta">{items}</dl>'


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
    cells = "".join(
        f'<div class="fig"><b>{_esc(f"{v:,}" if isinstance(v, int) else v)}</b>'
        f"<span>{_esc(k)}</span></div>"
        for k, v in figures
    )
    return f'<div class="figures">{cells}</div>'


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
table.grid th:nth-child(2), table.grid td:nth-child(2),
table.grid th:nth-child(3), table.grid td:nth-child(3) { text-align: left; }
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
) -> str:
    """The report as one HTML document.

    Args:
        timeline: a :class:`Timeline`, or the dict of its ``to_json()``.
        summary: section title → rows of (label, value) or a text block; or
            a single text block such as ``RunStats.summary()``.
        title: the page's title and heading.
        meta: run facts shown under the title (recipe, started, elapsed,
            version, ...), in the order given.
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
         "Attempts that ended ok per second (left axis); those that failed, "
         "will retry or were throttled, and the controller's drops and "
         "throttles, per second (right axis)."),
        ("chart-latency", "Latency",
         "Percentiles of successful attempts in each bucket, and the "
         "controller's baseline when it ran."),
    )  # fmt: skip
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
{_totals_html(data)}
<div id="report-errors" role="alert"></div>
<noscript><p class="note">The charts need JavaScript; the tables below do not.</p>
</noscript>
{chart_html}
{_summary_html(summary)}
{_decisions_html(data)}
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
) -> Path:
    """Write the report to ``path`` atomically (a temporary file in the same
    directory, then a rename), and return the path.  Arguments as for
    :func:`render_report`."""
    target = Path(path)
    text = render_report(timeline, summary, title=title, meta=meta)
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
