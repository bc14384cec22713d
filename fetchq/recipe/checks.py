"""Checks that look at several keys of a recipe together.

Each runs after the whole recipe has been converted, with the converted
values of its section (a key whose value was wrong is missing) and the
:class:`~fetchq.recipe.convert.Context` to report through.  A check may also
fill in a default that depends on other keys.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from yaml.nodes import ScalarNode

from fetchq.recipe.convert import Context
from fetchq.recipe.units import format_duration

__all__ = [
    "check_fetch",
    "check_files",
    "check_input",
    "check_retry",
    "check_save_bodies",
]

_EXTENSIONS = {
    ".txt": "lines",
    ".lines": "lines",
    ".list": "lines",
    ".urls": "lines",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
}


def _raw(ctx: Context, where: str) -> str:
    node = ctx.nodes.get(where)
    return str(node.value) if isinstance(node, ScalarNode) else where


def check_input(values: dict[str, Any], ctx: Context, where: str) -> None:
    """Infer the format from the extension; reject row settings for plain
    lines; check that a CSV file's header has the named columns."""
    file = values.get("path")
    if file is None or "format" not in values:
        return
    fmt = values["format"]
    if fmt is None:
        fmt = _EXTENSIONS.get(file.suffix.lower())
        if fmt is None:
            shown = repr(file.suffix) if file.suffix else "no extension"
            ctx.report(
                ctx.locate(f"{where}.path"),
                f"{where}.path: cannot tell the format from {shown}: "
                f"set {where}.format to lines, jsonl or csv",
            )
            return
        values["format"] = fmt
    fields = ("url_field", "priority_field", "id_field")
    if fmt == "lines":
        for name in fields:
            if ctx.given(f"{where}.{name}"):
                ctx.report(
                    ctx.keys[f"{where}.{name}"],
                    f"{where}.{name}: only applies to jsonl and csv input, "
                    "not to lines",
                )
    elif fmt == "csv":
        _check_csv_header(values, ctx, where, file, fields)


def _check_csv_header(
    values: dict[str, Any],
    ctx: Context,
    where: str,
    file: Path,
    fields: tuple[str, ...],
) -> None:
    raw = _raw(ctx, f"{where}.path")
    try:
        with file.open(newline="", encoding="utf-8-sig", errors="replace") as stream:
            header = next(csv.reader(stream), None)
    except (OSError, csv.Error) as exc:
        ctx.report(
            ctx.locate(f"{where}.path"), f"{where}.path: cannot read {raw!r}: {exc}"
        )
        return
    if not header:
        ctx.report(
            ctx.locate(f"{where}.path"),
            f"{where}.path: {raw!r} has no header row; a CSV input's first row "
            "names its columns",
        )
        return
    columns = [column.strip() for column in header]
    for name in fields:
        column = values.get(name)
        if column is not None and column not in columns:
            shown = ", ".join(columns[:10]) + (", ..." if len(columns) > 10 else "")
            ctx.report(
                ctx.locate(f"{where}.{name}", f"{where}.path"),
                f"{where}.{name}: no column {column!r} in the header of {raw!r} "
                f"(columns: {shown})",
            )


def check_adaptive(values: dict[str, Any], ctx: Context, where: str) -> None:
    """The width's floor must not be above its ceiling."""
    low, high = values.get("min_width"), values.get("max_width")
    if low is not None and high is not None and high < low:
        ctx.report(
            ctx.locate(f"{where}.max_width", f"{where}.min_width"),
            f"{where}.max_width: {high} is less than {where}.min_width ({low})",
        )


def check_retry(values: dict[str, Any], ctx: Context, where: str) -> None:
    """The backoff cap must not be below the first backoff."""
    base, cap = values.get("base_delay"), values.get("max_delay")
    if base is not None and cap is not None and cap < base:
        ctx.report(
            ctx.locate(f"{where}.max_delay", f"{where}.base_delay"),
            f"{where}.max_delay: {format_duration(cap)} is less than "
            f"{where}.base_delay ({format_duration(base)})",
        )


def check_fetch(values: dict[str, Any], ctx: Context, where: str) -> None:
    """A status cannot be both a success and retried."""
    ok = values.get("ok_statuses")
    if ok is None:
        return
    for other in ("retry_statuses", "throttle_statuses"):
        both = sorted(ok & values.get(other, frozenset()))
        if both:
            shown = ", ".join(map(str, both[:8])) + (", ..." if len(both) > 8 else "")
            verb = "is" if len(both) == 1 else "are"
            ctx.report(
                ctx.locate(f"{where}.ok_statuses", f"{where}.{other}"),
                f"{where}.ok_statuses: {shown} {verb} also in {where}.{other}; "
                "a status cannot be both ok and retried",
            )


def check_save_bodies(values: dict[str, Any], ctx: Context, where: str) -> None:
    """The bodies directory, if it exists, must be a directory."""
    directory = values.get("dir")
    if directory is not None and directory.exists() and not directory.is_dir():
        ctx.report(
            ctx.locate(f"{where}.dir"),
            f"{where}.dir: {_raw(ctx, where + '.dir')!r} exists and is not a directory",
        )


def _same(a: Path, b: Path) -> bool:
    try:
        return a == b or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_files(values: dict[str, Any], ctx: Context, where: str) -> None:
    """Default the state file next to the output; input, output and state
    must be three different files."""
    input_ = (values.get("input") or {}).get("path")
    output = (values.get("output") or {}).get("path")
    state = values.get("state") or {}
    if output is not None:
        if output.is_dir():
            ctx.report(
                ctx.locate("output.path"),
                f"output.path: {_raw(ctx, 'output.path')!r} is a directory; "
                "expected a file",
            )
        if "path" in state and state["path"] is None:
            state["path"] = output.with_name(output.name + ".state.sqlite")
        if input_ is not None and _same(output, input_):
            ctx.report(
                ctx.locate("output.path"),
                "output.path: is the input file; the output would overwrite it",
            )
    state_path = state.get("path")
    if state_path is not None:
        for other, file in (("input", input_), ("output", output)):
            if file is not None and _same(state_path, file):
                ctx.report(
                    ctx.locate("state.path", "output.path"),
                    f"state.path: is the {other} file; give the state its own file",
                )
                break
