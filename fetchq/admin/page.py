# ruff: noqa: E501
"""The admin server's live page: the report's look and charts, kept fresh.

One HTML document with everything inlined (uPlot, the report's
``charts.js``, this page's ``admin.js``), so it makes no request but to its
own API.  Scripts carry a per-page nonce that the server's
``Content-Security-Policy`` names; nothing else may run.  The page polls
``status`` every second, the timeline every two and the lanes every three,
and posts changes as JSON (the cookie carries the token).
"""

from __future__ import annotations

import html
import secrets
from functools import cache
from importlib import resources

from fetchq.report.html import _CSS as REPORT_CSS
from fetchq.report.html import _asset as report_asset
from fetchq.report.html import _inline_script, _inline_style

__all__ = ["render_page"]


@cache
def _own(name: str) -> str:
    return (resources.files("fetchq.admin") / "assets" / name).read_text("utf-8")


_BODY = """
<main>
<header class="top">
  <h1>fetchq: <span id="run-name">{name}</span></h1>
  <span class="badge" id="state">…</span>
  <span class="note">engine <b id="engine">{engine}</b> · updated <span id="updated">never</span></span>
</header>
<div id="report-errors" role="alert"></div>
<div class="figures" id="figures"></div>
<section class="card controls">
  <form id="width-form"><label>Width <input id="width-input" name="width" type="number" min="0" size="6"></label>
    <button type="submit">Set width</button></form>
  <form id="rate-form"><label>Rate <input id="rate-input" name="rate" placeholder="50/s, blank: unlimited" size="16"></label>
    <button type="submit">Set rate</button></form>
  <button id="pause">Pause</button> <button id="resume">Resume</button>
  <form id="cancel-form"><label>Job id <input id="cancel-input" name="id" size="14"></label>
    <button type="submit">Cancel job</button></form>
  <button id="stop" class="danger">Stop the run</button>
  <p class="note" id="message" role="status"></p>
</section>
<section class="chart"><h2>Width and jobs in flight</h2><div id="chart-width"></div></section>
<section class="chart"><h2>Throughput</h2><div id="chart-throughput"></div></section>
<section class="chart"><h2>Latency</h2><div id="chart-latency"></div></section>
<h2>Lanes <span class="note">(by backlog; the busiest 50)</span></h2>
<div class="scroll"><table class="grid" id="lanes"><thead><tr><th>lane</th><th>pending</th>
<th>underway</th><th>width</th><th>rate/s</th><th>held for</th><th>hold / release</th></tr></thead>
<tbody></tbody></table></div>
<h2>Jobs underway <span class="note">(the first 50)</span></h2>
<div class="scroll"><table class="grid" id="jobs"><thead><tr><th>id</th><th>lane</th>
<th>what</th><th>attempt</th><th>running for</th><th></th></tr></thead><tbody></tbody></table></div>
<footer>fetchq admin.  Charts drawn with uPlot (MIT licence, bundled).</footer>
</main>
"""


def render_page(name: str, engine: str) -> tuple[str, str]:
    """The page's HTML and the nonce its scripts carry."""
    nonce = secrets.token_urlsafe(16)
    scripts = "\n".join(
        f'<script nonce="{nonce}">{_inline_script(code)}</script>'
        for code in (
            report_asset("uPlot.iife.min.js"),
            report_asset("charts.js"),
            _own("admin.js"),
        )
    )
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fetchq admin: {html.escape(name)}</title>
<style>{_inline_style(report_asset("uPlot.min.css"))}</style>
<style>{REPORT_CSS}</style>
<style>{_inline_style(_own("admin.css"))}</style>
</head>
<body data-rendered="pending" data-state="unknown">
{_BODY.format(name=html.escape(name), engine=html.escape(engine))}
{scripts}
</body>
</html>
"""
    return page, nonce
