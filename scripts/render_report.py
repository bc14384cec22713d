#!/usr/bin/env python3
"""Render a fetchq HTML report in headless Chromium: a screenshot, and a check
that its charts drew.

    python scripts/render_report.py REPORT.html OUT.png [--width 1200]
        [--height 2000] [--chromium PATH]

Prints ``rendered=ok`` and exits 0 when the page's charts drew without error
(``<body data-rendered="ok">`` in the DOM Chromium dumps); prints the errors
the page recorded and exits 1 otherwise; exits 2 if Chromium is missing.
Chromium runs with no network use of its own (no sync, no updates, no
first-run) and a throw-away profile.  Importable: :func:`dump_dom`,
:func:`screenshot`, :func:`find_chromium`, :func:`rendered_state`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
    "--hide-scrollbars",
    "--mute-audio",
    "--run-all-compositor-stages-before-draw",
    "--virtual-time-budget=5000",
)
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium(explicit: str | None = None) -> str | None:
    """The Chromium to use: ``explicit``, ``$CHROMIUM``, /usr/bin/chromium or
    the first of the usual names on PATH; None if there is none."""
    for name in (explicit, os.environ.get("CHROMIUM"), "/usr/bin/chromium"):
        if name and (found := shutil.which(name)):
            return found
    for name in CANDIDATES:
        if found := shutil.which(name):
            return found
    return None


def _run(
    chromium: str, args: list[str], timeout: float
) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="fetchq-chromium-") as profile:
        return subprocess.run(
            [chromium, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "HOME": profile},
        )


def dump_dom(chromium: str, report: Path, timeout: float = 60.0) -> str:
    """The report's DOM after its scripts ran (``chromium --dump-dom``)."""
    done = _run(chromium, ["--dump-dom", report.resolve().as_uri()], timeout)
    if done.returncode != 0 or "<body" not in done.stdout:
        raise RuntimeError(
            f"chromium --dump-dom failed ({done.returncode}): {done.stderr[-2000:]}"
        )
    return done.stdout


def screenshot(
    chromium: str,
    report: Path,
    out: Path,
    width: int = 1200,
    height: int = 2000,
    timeout: float = 60.0,
) -> None:
    """Save a ``width`` x ``height`` screenshot of the report to ``out``."""
    out = out.resolve()
    if out.exists():
        out.unlink()
    done = _run(
        chromium,
        [
            f"--screenshot={out}",
            f"--window-size={width},{height}",
            report.resolve().as_uri(),
        ],
        timeout,
    )
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(
            f"chromium --screenshot failed ({done.returncode}): {done.stderr[-2000:]}"
        )


def rendered_state(dom: str) -> tuple[str | None, str]:
    """``(state, errors)`` from a dumped DOM: the body's ``data-rendered``
    (``ok``, ``error``, ``pending`` or None) and the recorded error text."""
    body = re.search(r"<body\b[^>]*>", dom)
    state = None
    if body:
        found = re.search(r'\bdata-rendered="([^"]*)"', body.group(0))
        state = found.group(1) if found else None
    errors = re.search(r'<div id="report-errors"[^>]*>(.*?)</div>', dom, re.S)
    return state, (errors.group(1).strip() if errors else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=2000)
    parser.add_argument("--chromium")
    args = parser.parse_args(argv)
    chromium = find_chromium(args.chromium)
    if chromium is None:
        print("chromium not found (apt-get install chromium)", file=sys.stderr)
        return 2
    state, errors = rendered_state(dump_dom(chromium, args.report))
    screenshot(chromium, args.report, args.out, args.width, args.height)
    print(f"rendered={state} screenshot={args.out}")
    if state != "ok":
        print(errors or "(no error recorded: the charts never finished)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
