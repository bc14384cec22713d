"""The run's output file: lines written from the record texts a store
keeps are the lines its decoded records give."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fetchq.output import OutputFile, output_lines, text_lines, write_output
from fetchq.store import NewItem, Record, SQLiteStore
from fetchq.store.sqlite import _dumps

RECORDS: list[Any] = [
    {"url": "http://example.com/a", "status": 200, "elapsed": 0.027244},
    {"floats": [0.1, 1e-07, 1e300, -0.0, 2.5e-320], "big": 2**80, "neg": -7},
    {"escapes": '"\\\n\t\u0001/\u007f', "empty": {}, "nested": [[], {"a": None}]},
    {"title": "café", "ja": "日本語", "emoji": "🙂", "sep": "\u2028"},
    {"ключ": "value"},
    [{"id": "1", "text": "a"}, {"id": "2", "text": "ü"}],  # an API page: a line each
    [],
    None,
    {},
    {"b": 1, "a": 2},  # key order kept
]


def test_text_lines_are_the_decoded_records_lines() -> None:
    """For each kind of record (ASCII or not, numbers, escapes, a list, no
    record) the line written from the store's text is the line written from
    the record itself."""
    for seq, record in enumerate(RECORDS, 1):
        text = None if record is None else _dumps(record)
        expected = output_lines([Record(seq, str(seq), "ok", record)])
        assert text_lines([(seq, text)]) == expected, record
    texts = [(n, None if r is None else _dumps(r)) for n, r in enumerate(RECORDS, 1)]
    records = [Record(n, str(n), "ok", r) for n, r in enumerate(RECORDS, 1)]
    assert text_lines(texts) == output_lines(records)


class _RecordsOnly:
    """A store that lists decoded records only (as MemoryStore)."""

    def __init__(self, store: SQLiteStore) -> None:
        self.records = store.records


def _store(path: Path) -> SQLiteStore:
    store = SQLiteStore(str(path))
    store.add(NewItem(f"i{n}", {"n": n}) for n in range(len(RECORDS)))
    for n, record in enumerate(RECORDS):
        store.ack(f"i{n}", "ok", record, 1.0)
    store.flush()
    return store


def test_the_file_from_texts_is_the_file_from_records(tmp_path: Path) -> None:
    """write_output, OutputFile.rebuild and catch_up on a store with record
    texts write the same bytes as from a store with decoded records only."""
    store = _store(tmp_path / "state.sqlite")
    try:
        assert store.record_texts(0, 100)[0] == (1, _dumps(RECORDS[0]))
        fast, slow = tmp_path / "fast.jsonl", tmp_path / "slow.jsonl"
        assert asyncio.run(write_output(store, fast)) == len(RECORDS)
        asyncio.run(write_output(_RecordsOnly(store), slow))
        assert fast.read_bytes() == slow.read_bytes()
        lines = fast.read_text(encoding="utf-8").splitlines()
        assert len(lines) == len(RECORDS)  # the API page is two lines, [] none
        out = OutputFile(tmp_path / "rebuilt.jsonl")
        assert out.rebuild(store) == len(RECORDS)
        store.add([NewItem("late", None)])
        store.ack("late", "ok", {"late": "é"}, 2.0)
        store.flush()
        out.catch_up(store)
        out.close()
        text = (tmp_path / "rebuilt.jsonl").read_text(encoding="utf-8")
        assert text == fast.read_text(encoding="utf-8") + '{"late":"\\u00e9"}\n'
    finally:
        store.close()
