"""Reading a run's input: a text file of URLs, or JSONL/CSV rows.

Rows are streamed one at a time, so a file of millions of URLs is never held
in memory.  There is one reader and one decoding for every format and every
caller (``fetchq validate`` and ``fetchq run`` alike): the file is read as
bytes, a UTF-8 byte-order mark at its start is skipped, and each line is
decoded as strict UTF-8.

**Nothing is skipped silently.**  A row that cannot be used becomes an
:class:`InputRow` with ``error`` set, naming its place (``urls.txt:1502``):
bytes that are not UTF-8, a line longer than ``max_row`` bytes, JSON that
does not parse or nests too deeply, a CSV row the ``csv`` module refuses, no
URL field, a priority that is not a number, an id that cannot be one.  Such a
row is recorded as failed input (``BadInput``) by the run, never crashed on.
Only an error that prevents reading on (an ``OSError``) escapes, as
:class:`InputError`, and then the input is not finished.

**Resuming.**  :class:`InputReader` knows, after each row, how many bytes it
has consumed and the SHA-256 of those bytes (a :class:`Checkpoint`).  A run
keeps the checkpoint in its state; the next run starts reading at that byte
offset after checking that the bytes before it are unchanged
(:class:`InputChanged` if the file is shorter or different), so rows appended
since are picked up and nothing already read is read twice.

**Ids.**  Without ``id_field`` a row's id is its row number (``"0"``,
``"1"``, ...: blank lines and ``#`` comments of ``lines`` input are not
rows).  With ``id_field``, a row's id is that field's value (a string or an
integer; ``7`` and ``"7"`` are the same id); a row without one gets ``#`` and
its row number (``"#12"``).  Ids of that form are reserved, so an explicit id
can never collide with a row-number id.  Duplicates are found by the store,
which knows every id (see :meth:`fetchq.store.Store.add`).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import attrs

from fetchq.errors import FetchqError

__all__ = [
    "MAX_ROW",
    "Checkpoint",
    "InputChanged",
    "InputError",
    "InputReader",
    "InputRow",
    "RowCount",
    "count_rows",
    "csv_header",
    "read_rows",
]

MAX_ROW = 1 << 20
"""The longest row read, in bytes (1 MiB): a longer one is bad input."""

_BOM = codecs.BOM_UTF8
_HASH_BLOCK = 1 << 20
_RESERVED_ID = re.compile(r"#[0-9]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InputError(FetchqError, OSError):
    """The input cannot be read on (an I/O error): the message names the file
    and the line reached.  The rows read before it stand; the input is not
    finished."""


class InputChanged(FetchqError, ValueError):
    """The part of the input an earlier run already read is not what it was:
    the file is shorter (truncated or replaced) or its bytes differ."""


@attrs.frozen
class InputRow:
    """One unit of input.

    Attributes:
        index: the row's number (from 0; blank and comment lines not counted).
        id: the job's stable identity: the id field, or the row number.
        url: the URL (or the raw text, when ``error`` is set).
        priority: the job's priority (0 unless the input gives one).
        extra: the row's other fields, passed through to the output.
        error: why the row cannot be used (starting with its place,
            ``file:line``), or None.
        line: the file's line (from 1) where the row starts; 0 if unknown.
    """

    index: int
    id: str
    url: str
    priority: float = 0
    extra: dict[str, Any] = attrs.field(factory=dict)
    error: str | None = None
    line: int = 0


@attrs.frozen
class Checkpoint:
    """How far an input has been read: enough to go on from there later and
    to notice if what was read has changed.

    Attributes:
        offset: bytes consumed (a row boundary).
        sha256: hex SHA-256 of those bytes.
        index: the next row's number.
        line: lines consumed.
    """

    offset: int = 0
    sha256: str = hashlib.sha256().hexdigest()
    index: int = 0
    line: int = 0

    def to_json(self) -> dict[str, Any]:
        """A JSON value for a store's meta."""
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> Checkpoint | None:
        """The checkpoint a store kept (None if ``value`` is not one)."""
        if not isinstance(value, dict):
            return None
        try:
            return cls(
                offset=int(value["offset"]),
                sha256=str(value["sha256"]),
                index=int(value["index"]),
                line=int(value["line"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


def _priority(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"priority must be a number, not {value!r}")
    number = float(value) if isinstance(value, str) else value
    if not math.isfinite(number):
        raise ValueError(f"priority must be a finite number, not {value!r}")
    return int(number) if float(number).is_integer() else float(number)


def _explicit_id(value: Any) -> str:
    """The id a row gives, as a string.

    Raises:
        ValueError: for a value that cannot be an id.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"an id must be a string or an integer, not {value!r}")
    text = str(value)
    if _RESERVED_ID.fullmatch(text):
        raise ValueError(
            f"id {text!r}: ids of the form #N are reserved for rows without an id"
        )
    if _CONTROL.search(text):
        raise ValueError(f"id {text!r} contains control characters")
    if len(text) > 1000:
        raise ValueError(f"id of {len(text)} characters (at most 1000)")
    return text


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class InputReader:
    """Reads an input file row by row, remembering how far it got.

    Iterate over it for :class:`InputRow` s; after each row,
    :meth:`checkpoint` says how far the reader got.

    Args:
        path: the input file.
        format: ``lines`` (one URL a line; blank lines and ``#`` comments
            skipped), ``jsonl`` (one JSON object a line) or ``csv`` (with a
            header row).
        url_field, priority_field, id_field: field names (rows only).  With
            ``url_field`` None, rows need no URL: every field but the
            priority and id goes to ``extra``, and a line of ``lines``
            input becomes ``extra={"value": line}``.
        start: where to start: a :class:`Checkpoint` from an earlier read of
            the same file (checked with :meth:`verify` first), or None for
            the beginning.
        name: the file's name in messages (default: ``path`` as given).
        max_row: the longest row in bytes; a longer one is bad input.

    Raises:
        InputError: if the file cannot be opened.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        format: str,
        url_field: str | None = "url",
        priority_field: str | None = None,
        id_field: str | None = None,
        *,
        start: Checkpoint | None = None,
        name: str | None = None,
        max_row: int = MAX_ROW,
    ) -> None:
        if format not in ("lines", "jsonl", "csv"):
            raise ValueError(f"format must be lines, jsonl or csv, not {format!r}")
        self.path = Path(path)
        self.name = str(path) if name is None else name
        self.format = format
        self.url_field = url_field
        self.priority_field = priority_field
        self.id_field = id_field
        self.max_row = max_row
        self._start = Checkpoint() if start is None else start
        self._offset = self._start.offset
        self._line = self._start.line
        self._index = self._start.index
        self._hash: Any = None  # made by verify() or on the first read
        # (offset, index, line, hash) at the end of the last row yielded
        self._mark: tuple[int, int, int, Any] | None = None
        self._header: list[str] | None = None
        self._file: IO[bytes] | None = None
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115
        except OSError as e:
            raise InputError(f"{self.name}: cannot open: {e.strerror or e}") from e

    # -- where we are --------------------------------------------------------

    def checkpoint(self) -> Checkpoint:
        """How far the rows yielded so far go: the end of the last row (or,
        once every row has been read, the end of the file)."""
        mark = self._mark
        if mark is None:
            return Checkpoint(
                offset=self._offset,
                sha256=self._digest().hexdigest(),
                index=self._index,
                line=self._line,
            )
        offset, index, line, hasher = mark
        return Checkpoint(offset, hasher.hexdigest(), index, line)

    def _marked(self, row: InputRow) -> InputRow:
        """``row``, after noting that the reader is at its end."""
        self._mark = (self._offset, self._index, self._line, self._hash.copy())
        return row

    @property
    def offset(self) -> int:
        """Bytes consumed so far."""
        return self._offset

    def size(self) -> int:
        """The file's size now, in bytes."""
        assert self._file is not None
        return os.fstat(self._file.fileno()).st_size

    def at_end(self) -> bool:
        """Whether every byte of the file (as it is now) has been consumed."""
        return self._offset >= self.size()

    def _digest(self) -> Any:
        if self._hash is None:
            self.verify()
        return self._hash

    def verify(self) -> None:
        """Check that the bytes before the start are those an earlier read
        consumed, and hash them so the checkpoint can go on from there.

        Raises:
            InputChanged: the file is shorter than the start, or different.
            InputError: it cannot be read.
        """
        start = self._start
        if self._hash is not None:
            return
        hasher = hashlib.sha256()
        if start.offset:
            size = self.size()
            if size < start.offset:
                raise InputChanged(
                    f"{self.name}: the input is shorter ({size:,} bytes) than the "
                    f"{start.offset:,} bytes an earlier run already read: it was "
                    "truncated or replaced"
                )
            assert self._file is not None
            self._file.seek(0)
            left = start.offset
            try:
                while left:
                    block = self._file.read(min(left, _HASH_BLOCK))
                    if not block:
                        break
                    hasher.update(block)
                    left -= len(block)
            except OSError as e:
                raise InputError(f"{self.name}: cannot read: {e}") from e
            if left or hasher.hexdigest() != start.sha256:
                raise InputChanged(
                    f"{self.name}: the first {start.offset:,} bytes, which an earlier "
                    "run already read, have changed since"
                )
        self._hash = hasher

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> InputReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------

    def _raw_lines(self) -> Iterator[tuple[int, bytes | None]]:
        """``(line number, bytes)`` from the current offset on, each line
        consumed (hashed, counted) as it is yielded; ``bytes`` is None for a
        line longer than ``max_row`` (skipped to its end)."""
        f = self._file
        assert f is not None
        self.verify()
        f.seek(self._offset)
        hasher = self._hash
        cap = self.max_row
        while True:
            try:
                data = f.readline(cap + 1)
            except OSError as e:
                raise InputError(
                    f"{self.name}:{self._line + 1}: cannot read on: {e}"
                ) from e
            if not data:
                return
            hasher.update(data)
            self._offset += len(data)
            self._line += 1
            if len(data) > cap and not data.endswith(b"\n"):
                # Too long: consume the rest of the line without keeping it.
                while True:
                    try:
                        more = f.readline(_HASH_BLOCK)
                    except OSError as e:
                        raise InputError(
                            f"{self.name}:{self._line}: cannot read on: {e}"
                        ) from e
                    if not more:
                        break
                    hasher.update(more)
                    self._offset += len(more)
                    if more.endswith(b"\n"):
                        break
                yield self._line, None
                continue
            if self._line == 1 and data.startswith(_BOM):
                data = data[len(_BOM) :]
            yield self._line, data

    @staticmethod
    def _decode(data: bytes) -> tuple[str, str | None]:
        """The line's text, and why it is not UTF-8 (None if it is)."""
        try:
            return data.decode("utf-8"), None
        except UnicodeDecodeError as e:
            return (
                data.decode("utf-8", "replace"),
                f"not UTF-8 (byte 0x{data[e.start]:02x} at column {e.start + 1})",
            )

    def _bad(self, line: int, text: str, reason: str) -> InputRow:
        index = self._index
        self._index += 1
        return InputRow(
            index,
            self._fallback_id(index),
            _short(text),
            error=f"{self.name}:{line}: {reason}",
            line=line,
        )

    def _fallback_id(self, index: int) -> str:
        return str(index) if self.id_field is None else f"#{index}"

    def __iter__(self) -> Iterator[InputRow]:
        rows = self._csv_rows() if self.format == "csv" else self._line_rows()
        for row in rows:
            yield self._marked(row)
        self._mark = None  # the end of the file: the checkpoint is there

    def _line_rows(self) -> Iterator[InputRow]:
        lines_format = self.format == "lines"
        for line, data in self._raw_lines():
            if data is None:
                yield self._bad(line, "", f"line longer than {self.max_row:,} bytes")
                continue
            text, undecodable = self._decode(data)
            text = text.strip()
            if undecodable is not None:
                yield self._bad(line, text, undecodable)
                continue
            if not text or (lines_format and text.startswith("#")):
                continue
            if lines_format:
                index = self._index
                self._index += 1
                if self.url_field is None:
                    yield InputRow(
                        index, str(index), "", extra={"value": text}, line=line
                    )
                else:
                    yield InputRow(index, str(index), text, line=line)
                continue
            try:
                fields = json.loads(text)
            except RecursionError:
                yield self._bad(line, text, "bad JSON: nested too deeply")
                continue
            except ValueError as e:
                yield self._bad(line, text, f"bad JSON: {e}")
                continue
            if not isinstance(fields, dict):
                yield self._bad(line, text, "not a JSON object")
                continue
            yield self._from_fields(line, fields, text)

    def _csv_rows(self) -> Iterator[InputRow]:
        """CSV rows under the header row.  The ``csv`` module reads lines
        one at a time as a row needs them, so after each row the reader's
        offset is that row's end."""
        state: dict[str, Any] = {"first": 0, "error": None}

        def lines() -> Iterator[str]:
            for line, data in self._raw_lines():
                if not state["first"]:
                    state["first"] = line
                if data is None:
                    if state["error"] is None:
                        state["error"] = (line, f"longer than {self.max_row:,} bytes")
                    yield "\n"
                    continue
                text, undecodable = self._decode(data)
                if undecodable is not None and state["error"] is None:
                    state["error"] = (line, undecodable)
                yield text

        if csv.field_size_limit() < self.max_row:
            csv.field_size_limit(self.max_row)
        source = lines()
        header = self._read_header(source, state)
        if header is None:
            return
        reader = csv.reader(source)
        while True:
            state["first"] = 0
            state["error"] = None
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield self._bad(state["first"] or self._line, "", f"bad CSV: {e}")
                continue
            first = state["first"] or self._line
            error = state["error"]
            if error is not None:
                where, reason = error
                if where != first:
                    reason = f"line {where}: {reason}"
                yield self._bad(first, ",".join(values), reason)
                continue
            if not values or values == [""]:
                continue  # a blank line
            if len(values) > len(header) and any(v for v in values[len(header) :]):
                yield self._bad(
                    first,
                    ",".join(values),
                    f"bad CSV: {len(values)} fields, the header has {len(header)}",
                )
                continue
            fields = dict(zip(header, values, strict=False))
            yield self._from_fields(first, fields, ",".join(values))

    def _read_header(
        self, source: Iterator[str], state: dict[str, Any]
    ) -> list[str] | None:
        """The CSV header: read from the file's start even when resuming
        (the header is part of what the checkpoint's hash covers)."""
        if self._header is not None:
            return self._header
        if self._start.offset == 0:
            try:
                header = next(csv.reader(source))
            except StopIteration:
                return None
            except csv.Error as e:
                raise InputError(f"{self.name}:1: bad CSV header: {e}") from e
            if state["error"] is not None:
                raise InputError(f"{self.name}:1: bad CSV header: {state['error'][1]}")
            header = [column.strip() for column in header]
        else:
            header = self._header_from_start()
        self._header = header
        return header

    def _header_from_start(self) -> list[str]:
        header = csv_header(self.path, self.name)
        if header is None:
            raise InputError(f"{self.name}:1: no CSV header row")
        return header

    def _from_fields(self, line: int, fields: dict[str, Any], text: str) -> InputRow:
        index = self._index
        self._index += 1
        url_field = self.url_field
        priority_field = self.priority_field
        id_field = self.id_field
        row_id = self._fallback_id(index)

        def bad(reason: str, url: str = text) -> InputRow:
            return InputRow(
                index,
                row_id,
                _short(url),
                error=f"{self.name}:{line}: {reason}",
                line=line,
            )

        if id_field is not None and fields.get(id_field) not in (None, ""):
            try:
                row_id = _explicit_id(fields[id_field])
            except ValueError as e:
                return bad(str(e))
        url = "" if url_field is None else fields.get(url_field)
        if url_field is not None and (not isinstance(url, str) or not url.strip()):
            return bad(f"no {url_field!r} field", str(url if url is not None else ""))
        assert isinstance(url, str)
        priority: float = 0
        if priority_field is not None and fields.get(priority_field) not in (None, ""):
            try:
                priority = _priority(fields[priority_field])
            except ValueError as e:
                return bad(str(e), url)
        if url_field is None:
            extra = dict(fields)  # every field may fill a template, the id's too
        else:
            extra = {
                k: v
                for k, v in fields.items()
                if k not in (url_field, priority_field, id_field)
            }
        return InputRow(index, row_id, url.strip(), priority, extra, line=line)


def csv_header(
    path: str | os.PathLike[str], name: str | None = None
) -> list[str] | None:
    """The column names of a CSV file's header row (stripped), read as the
    run reads them (a UTF-8 byte-order mark skipped, strict UTF-8); None if
    the file is empty.

    Raises:
        InputError: the file cannot be read, or its header is not UTF-8 or
            not CSV.
    """
    shown = str(path) if name is None else name
    try:
        with open(path, "rb") as f:
            data = f.readline(MAX_ROW + 1)
    except OSError as e:
        raise InputError(f"{shown}: cannot read: {e.strerror or e}") from e
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    if not data.strip():
        return None
    try:
        text = data.decode("utf-8")
        return [column.strip() for column in next(csv.reader([text]))]
    except UnicodeDecodeError as e:
        raise InputError(f"{shown}:1: the header row is not UTF-8: {e}") from e
    except csv.Error as e:
        raise InputError(f"{shown}:1: bad CSV header: {e}") from e


@attrs.frozen
class RowCount:
    """How many rows an input holds, as :func:`count_rows` found.

    Attributes:
        rows: the number of rows (good and bad alike: each gets a record).
        exact: False when it is an estimate (a large CSV file with quoted
            fields, whose lines may not all be rows).
    """

    rows: int
    exact: bool = True


# Lines that are not rows: blank ones (and, in ``lines`` input, comments).
# Each pattern matches at the newline before such a line; a block is read
# to a line's end and given a leading newline, so every line has one.
_NOT_ROWS = {
    "lines": re.compile(rb"\n[ \t\r\f\v]*(?=[\n#])"),
    "jsonl": re.compile(rb"\n[ \t\r\f\v]*(?=\n)"),
    "csv": re.compile(rb"\n\r?(?=\n)"),
}
_CSV_EXACT_LIMIT = 64 << 20  # quoted CSV up to this size is parsed to count


def count_rows(path: str | os.PathLike[str], format: str) -> RowCount:
    """Count an input's rows, streaming: the number a run will read.

    For ``lines`` and ``jsonl`` input, and CSV without a double quote, it
    counts newlines in blocks of bytes (hundreds of MB a second): every line
    is a row but blank ones (and ``#`` comments of ``lines`` input; a CSV's
    header).  A CSV with quotes may have newlines inside fields, so it is
    parsed with the ``csv`` module, or, past 64 MB, its lines are counted and
    the count is marked as an estimate.

    Raises:
        InputError: the file cannot be read.
        ValueError: for an unknown format.
    """
    if format not in _NOT_ROWS:
        raise ValueError(f"format must be lines, jsonl or csv, not {format!r}")
    not_rows = _NOT_ROWS[format]
    lines = skipped = 0
    quotes = False
    last = b"\n"
    try:
        with open(path, "rb") as f:
            head = f.read(len(_BOM))
            if head != _BOM:
                f.seek(0)
            while block := f.read(_HASH_BLOCK):
                if not block.endswith(b"\n"):
                    block += f.readline()
                lines += block.count(b"\n")
                skipped += len(not_rows.findall(b"\n" + block))
                quotes = quotes or b'"' in block
                last = block
            tail = b"" if last.endswith(b"\n") else last.rsplit(b"\n", 1)[-1]
            if tail.strip() if format != "csv" else tail not in (b"", b"\r"):
                # A last line with no newline counts too (a comment there is
                # among the lines skipped already).
                lines += 1
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from e
    rows = lines - skipped
    if format != "csv":
        return RowCount(rows)
    if not quotes:
        return RowCount(max(0, rows - 1))  # the header
    if os.path.getsize(path) > _CSV_EXACT_LIMIT:
        return RowCount(max(0, rows - 1), exact=False)
    return RowCount(_count_csv(path))


def _count_csv(path: str | os.PathLike[str]) -> int:
    """Rows of a CSV file under its header, parsed as the reader does."""
    if csv.field_size_limit() < MAX_ROW:
        csv.field_size_limit(MAX_ROW)
    rows = -1
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
        reader = csv.reader(f)
        while True:
            try:
                values = next(reader)
            except StopIteration:
                break
            except csv.Error:
                values = ["?"]  # a bad row is a row (recorded as bad input)
            if rows >= 0 and (not values or values == [""]):
                continue
            rows += 1
    return max(0, rows)


def read_rows(
    path: Path,
    format: str,
    url_field: str | None = "url",
    priority_field: str | None = None,
    id_field: str | None = None,
    start: int = 0,
) -> Iterator[InputRow]:
    """Yield the rows of an input file from row number ``start`` on.

    A convenience over :class:`InputReader` (same arguments) for callers that
    need no checkpoint; ``start`` skips rows by reading them.
    """
    with InputReader(path, format, url_field, priority_field, id_field) as reader:
        for row in reader:
            if row.index >= start:
                yield row
