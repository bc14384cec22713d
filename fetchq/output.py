"""A run's JSONL output, written only from records a store has committed.

On start the whole file is rewritten from the store's records (so after a
crash and a re-run every row has exactly one line), then the records
committed since are appended on each tick.  The rewrite goes to a temporary
file made in the output's directory with a name no other file can have
(``tempfile.mkstemp``), then replaces the output in one rename: a reader
never sees half a file, and no input or other file next to the output is
ever overwritten.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any

from fetchq.store import Record, Store

__all__ = ["OutputFile", "output_lines", "text_lines", "write_output"]

_json_line = json.JSONEncoder(separators=(",", ":")).encode  # as json.dumps
_BATCH = 5000  # records read at a time


def output_lines(records: list[Record]) -> str:
    """The output lines of ``records``: one JSON object each (a record that
    is a list, such as an API page's items, is one line per element)."""
    lines: list[str] = []
    for r in records:
        record: Any = r.record
        if isinstance(record, list):
            lines.extend(_json_line(one) + "\n" for one in record)
        else:
            lines.append(_json_line(record) + "\n")
    return "".join(lines)


def text_lines(texts: list[tuple[int, str | None]]) -> str:
    """The output lines of records given as the JSON texts a store keeps
    them in (``(seq, text)``, None for no record), as :func:`output_lines`
    writes the records they decode to.  A store's text is compact JSON with
    characters past ``~`` as they are (the output escapes them, DEL too):
    the text of an object with none is its own line, as encoding its
    decoded object again would give (the same keys in the same order, the
    same numbers and escapes), so it is not decoded; any other text (a
    list, such characters) is."""
    lines: list[str] = []
    for _, text in texts:
        if text is None:
            lines.append("null\n")
        elif text[:1] == "{" and text.isascii() and "\x7f" not in text:
            lines.append(text + "\n")
        else:
            record: Any = json.loads(text)
            if isinstance(record, list):
                lines.extend(_json_line(one) + "\n" for one in record)
            else:
                lines.append(_json_line(record) + "\n")
    return "".join(lines)


def _read(store: Any, after_seq: int) -> Any:
    """The next batch of records: their texts (``record_texts``) from a
    store that has them, else its ``records`` (either may be a Deferred)."""
    read = getattr(store, "record_texts", None)
    if read is not None:
        return read(after_seq, _BATCH)
    return store.records(after_seq, _BATCH)


def _lines(batch: list[Any]) -> tuple[str, int]:
    """A batch's output lines and its last record's seq."""
    if isinstance(batch[0], Record):
        return output_lines(batch), batch[-1].seq
    return text_lines(batch), batch[-1][0]


class OutputFile:
    """The run's JSONL output, written only from committed store records."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seq = 0
        self._file: IO[str] | None = None

    def rebuild(self, store: Store) -> int:
        """Rewrite the file from every record in the store; how many."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        count = 0
        try:
            with open(fd, "w", encoding="utf-8") as f:
                self.seq = 0
                while batch := _read(store, self.seq):
                    lines, self.seq = _lines(batch)
                    f.write(lines)
                    count += len(batch)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        return count

    def catch_up(self, store: Store) -> None:
        """Append the records committed since the last call."""
        assert self._file is not None
        while batch := _read(store, self.seq):
            lines, self.seq = _lines(batch)
            self._file.write(lines)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


async def write_output(store: Any, path: Path) -> int:
    """Write every record of ``store`` (a local or a network store) to
    ``path`` (JSONL, one line per record; a list record is a line per
    element), through a temporary file replaced in one rename.  Returns how
    many records."""
    from twisted.internet.defer import Deferred

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    count = 0
    try:
        with open(fd, "w", encoding="utf-8") as f:
            seq = 0
            while True:
                batch = _read(store, seq)
                if isinstance(batch, Deferred):
                    batch = await batch
                if not batch:
                    break
                lines, seq = _lines(batch)
                f.write(lines)
                count += len(batch)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return count
