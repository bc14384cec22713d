"""Reading a run's input: a text file of URLs, or JSONL/CSV rows.

Rows are streamed one at a time, so a file of millions of URLs is never held
in memory.  A row that cannot be used (bad JSON, no URL field, a priority that
is not a number) becomes an :class:`InputRow` with ``error`` set: it is
recorded as failed input with its reason, never crashed on.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

__all__ = ["InputRow", "read_rows"]


@attrs.frozen
class InputRow:
    """One unit of input.

    Attributes:
        index: the row's number (from 0; blank and comment lines not counted).
        id: the job's stable identity: the id field, or the row number.
        url: the URL (or the raw text, when ``error`` is set).
        priority: the job's priority (0 unless the input gives one).
        extra: the row's other fields, passed through to the output.
        error: why the row cannot be used, or None.
    """

    index: int
    id: str
    url: str
    priority: float = 0
    extra: dict[str, Any] = attrs.field(factory=dict)
    error: str | None = None


def _priority(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"priority must be a number, not {value!r}")
    number = float(value) if isinstance(value, str) else value
    if not math.isfinite(number):
        raise ValueError(f"priority must be a finite number, not {value!r}")
    return int(number) if float(number).is_integer() else float(number)


def _from_fields(
    index: int,
    fields: dict[str, Any],
    url_field: str | None,
    priority_field: str | None,
    id_field: str | None,
) -> InputRow:
    row_id = str(index)
    if id_field is not None and fields.get(id_field) not in (None, ""):
        row_id = str(fields[id_field])
    url = "" if url_field is None else fields.get(url_field)
    if url_field is not None and (not isinstance(url, str) or not url.strip()):
        return InputRow(index, row_id, str(url), error=f"no {url_field!r} field")
    assert isinstance(url, str)
    priority: float = 0
    if priority_field is not None and fields.get(priority_field) not in (None, ""):
        try:
            priority = _priority(fields[priority_field])
        except ValueError as e:
            return InputRow(index, row_id, url, error=str(e))
    if url_field is None:
        extra = dict(fields)  # every field may fill a template, the id's too
    else:
        extra = {
            k: v
            for k, v in fields.items()
            if k not in (url_field, priority_field, id_field)
        }
    return InputRow(index, row_id, url.strip(), priority, extra)


def read_rows(
    path: Path,
    format: str,
    url_field: str | None = "url",
    priority_field: str | None = None,
    id_field: str | None = None,
    start: int = 0,
) -> Iterator[InputRow]:
    """Yield the rows of an input file from row number ``start`` on.

    Args:
        path: the input file.
        format: ``lines`` (one URL a line; blank lines and ``#`` comments
            skipped), ``jsonl`` (one JSON object a line) or ``csv`` (with a
            header row).
        url_field, priority_field, id_field: field names (rows only).  With
            ``url_field`` None, rows need no URL: every field but the
            priority and id goes to ``extra``, and a line of ``lines``
            input becomes ``extra={"value": line}``.
        start: rows to skip (already read by an earlier run).
    """
    with open(path, encoding="utf-8", newline="") as f:
        if format == "csv":
            reader = csv.DictReader(f)
            for index, fields in enumerate(reader):
                if index >= start:
                    yield _from_fields(
                        index, dict(fields), url_field, priority_field, id_field
                    )
            return
        index = -1
        for line in f:
            text = line.strip()
            if not text or (format == "lines" and text.startswith("#")):
                continue
            index += 1
            if index < start:
                continue
            if format == "lines":
                if url_field is None:
                    yield InputRow(index, str(index), "", extra={"value": text})
                else:
                    yield InputRow(index, str(index), text)
                continue
            try:
                fields = json.loads(text)
            except ValueError as e:
                yield InputRow(index, str(index), text[:200], error=f"bad JSON: {e}")
                continue
            if not isinstance(fields, dict):
                yield InputRow(index, str(index), text[:200], error="not a JSON object")
                continue
            yield _from_fields(index, fields, url_field, priority_field, id_field)
