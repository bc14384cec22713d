"""Shared helpers for the benchmarks: timing with repeats, table printing."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable


def best_of(repeats: int, run: Callable[[], float]) -> float:
    """Run ``run`` (which returns seconds) ``repeats`` times; the fastest.

    The minimum is the figure least disturbed by other work on a shared machine.
    """
    results = []
    for _ in range(repeats):
        gc.collect()
        results.append(run())
    return min(results)


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, so the output pastes straight into the README."""
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
