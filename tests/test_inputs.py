"""The input reader: one decoding for every format, a located bad row for
everything that cannot be used, and checkpoints that resume exactly where
the last row ended and notice a changed input."""

from __future__ import annotations

import codecs
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from fetchq.inputs import (
    Checkpoint,
    InputChanged,
    InputError,
    InputReader,
    InputRow,
    RowCount,
    count_rows,
    csv_header,
)


class ReaderTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fetchq-inputs-"))
        self.addCleanup(shutil.rmtree, self.folder, True)

    def write(self, name: str, data: bytes) -> Path:
        path = self.folder / name
        path.write_bytes(data)
        return path

    def read(self, path: Path, fmt: str, **kw: Any) -> list[InputRow]:
        with InputReader(path, fmt, name=path.name, **kw) as reader:
            return list(reader)


class DecodingTests(ReaderTestCase):
    def test_undecodable_line_is_a_located_bad_row(self) -> None:
        """A line with a byte that is not UTF-8 becomes a bad row naming
        file:line and the byte, and the rows after it are read as usual
        (the reproduction of issue 9: 1,500 good lines, a bad one, 100 more)."""
        lines = [f"http://a.example/{n}".encode() for n in range(1500)]
        lines.append(b"http://x\xff/")
        lines += [f"http://b.example/{n}".encode() for n in range(100)]
        path = self.write("urls.txt", b"\n".join(lines) + b"\n")
        rows = self.read(path, "lines")
        self.assertEqual(len(rows), 1601)
        bad = [r for r in rows if r.error is not None]
        self.assertEqual(len(bad), 1)
        self.assertEqual(bad[0].index, 1500)
        self.assertEqual(bad[0].line, 1501)
        self.assertIn("urls.txt:1501: not UTF-8 (byte 0xff", bad[0].error)
        self.assertEqual(rows[-1].url, "http://b.example/99")

    def test_jsonl_nested_too_deep(self) -> None:
        """A JSON line nested 100,000 deep is a bad row, not a crash."""
        path = self.write(
            "rows.jsonl",
            b'{"url": "http://a/"}\n' + b"[" * 100_000 + b'\n{"url": "http://b/"}\n',
        )
        rows = self.read(path, "jsonl")
        self.assertEqual(
            [r.url for r in rows if r.error is None], ["http://a/", "http://b/"]
        )
        self.assertIn("rows.jsonl:2: bad JSON: nested too deeply", str(rows[1].error))

    def test_long_line_is_skipped_whole(self) -> None:
        """A line longer than max_row is a bad row (its bytes are not kept)
        and reading goes on at the next line."""
        path = self.write("urls.txt", b"http://a/\n" + b"x" * 5000 + b"\nhttp://b/\n")
        rows = self.read(path, "lines", max_row=1000)
        self.assertEqual(
            [r.url for r in rows if r.error is None], ["http://a/", "http://b/"]
        )
        self.assertIn("urls.txt:2: line longer than 1,000 bytes", str(rows[1].error))

    def test_bom_is_skipped_in_every_format(self) -> None:
        """A UTF-8 byte-order mark at the start is not part of the first
        line, header or field, whatever the format."""
        bom = b"\xef\xbb\xbf"
        cases = {
            "lines": (b"http://a/\n", "url"),
            "jsonl": (b'{"url": "http://a/"}\n', "url"),
            "csv": (b"url,n\nhttp://a/,1\n", "url"),
        }
        for fmt, (data, field) in cases.items():
            path = self.write(f"in.{fmt}", bom + data)
            rows = self.read(path, fmt, url_field=field)
            self.assertEqual(
                [(r.url, r.error) for r in rows], [("http://a/", None)], fmt
            )
        self.assertEqual(csv_header(self.folder / "in.csv"), ["url", "n"])

    def test_csv_rows(self) -> None:
        """CSV: quoted fields may span lines (the row's line is where it
        starts); a field over the csv module's default limit (131,072) is
        read; a row with more values than the header, or with bytes that are
        not UTF-8, is a located bad row; blank lines are skipped."""
        big = "y" * 200_000
        data = (
            'url,id\nhttp://a/,1\n"http://b/\nsecond",2\n\n'
            f"http://c/,{big}\n"
            "http://d/,4,extra\n"
        ).encode() + b"http://e\xfe/,5\nhttp://f/,6\n"
        path = self.write("in.csv", data)
        rows = self.read(path, "csv")
        self.assertEqual([r.line for r in rows], [2, 3, 6, 7, 8, 9])
        self.assertEqual(rows[1].url, "http://b/\nsecond")
        self.assertIsNone(rows[2].error)
        self.assertEqual(len(rows[2].extra["id"]), 200_000)
        self.assertIn(
            "in.csv:7: bad CSV: 3 fields, the header has 2", str(rows[3].error)
        )
        self.assertIn("in.csv:8: not UTF-8", str(rows[4].error))
        self.assertEqual(rows[5].url, "http://f/")

    def test_csv_row_over_the_cap(self) -> None:
        """A CSV field longer than max_row is a bad row; the next is read."""
        path = self.write("in.csv", b"url\n" + b"z" * 3000 + b"\nhttp://b/\n")
        rows = self.read(path, "csv", max_row=1000)
        self.assertIsNotNone(rows[0].error)
        self.assertEqual(rows[1].url, "http://b/")


class IdTests(ReaderTestCase):
    def test_ids(self) -> None:
        """With id_field: a row's id is its field as a string (7 and "7" are
        the same id); a row without one gets '#' and its row number, a form
        explicit ids may not take; ids that are not strings or integers, or
        hold control characters, make bad rows."""
        rows_in = [
            {"url": "http://a/", "id": "1"},
            {"url": "http://a/"},
            {"url": "http://a/", "id": 7},
            {"url": "http://a/", "id": "#3"},
            {"url": "http://a/", "id": {"x": 1}},
            {"url": "http://a/", "id": "a\x00b"},
            {"url": "http://a/", "id": "#x"},
        ]
        path = self.write(
            "rows.jsonl", "\n".join(json.dumps(r) for r in rows_in).encode()
        )
        rows = self.read(path, "jsonl", id_field="id")
        self.assertEqual([r.id for r in rows], ["1", "#1", "7", "#3", "#4", "#5", "#x"])
        self.assertEqual(
            [r.error is None for r in rows],
            [True, True, True, False, False, False, True],
        )
        self.assertIn("reserved", str(rows[3].error))
        self.assertIn("control characters", str(rows[5].error))

    def test_row_numbers_without_id_field(self) -> None:
        """Without id_field, ids are row numbers; blank and comment lines of
        lines input are not rows."""
        path = self.write("urls.txt", b"\n# c\nhttp://a/\n\nhttp://b/\n")
        self.assertEqual(
            [(r.id, r.line) for r in self.read(path, "lines")], [("0", 3), ("1", 5)]
        )


class CheckpointTests(ReaderTestCase):
    def test_resume_reads_only_appended_rows(self) -> None:
        """A reader started at a checkpoint reads the rows appended since and
        numbers them on; a checkpoint taken mid-way ends at a row."""
        path = self.write("urls.txt", b"http://a/\nhttp://b/\n")
        with InputReader(path, "lines") as reader:
            rows = list(reader)
            done = reader.checkpoint()
        self.assertEqual((done.offset, done.index, done.line), (20, 2, 2))
        with open(path, "ab") as f:
            f.write(b"http://c/\n\nhttp://d/\n")
        with InputReader(path, "lines", start=done) as reader:
            more = list(reader)
        self.assertEqual(
            [(r.index, r.id, r.url) for r in more],
            [(2, "2", "http://c/"), (3, "3", "http://d/")],
        )
        self.assertEqual(len(rows), 2)

    def test_checkpoint_after_each_row(self) -> None:
        """checkpoint() after a row is that row's end, whatever the reader
        read ahead; resuming there yields exactly the rows after it."""
        path = self.write("in.csv", b'url\nhttp://a/\n"http://b/\nx"\nhttp://c/\n')
        reader = InputReader(path, "csv")
        it = iter(reader)
        next(it)
        next(it)
        mark = reader.checkpoint()
        reader.close()
        with InputReader(path, "csv", start=mark) as again:
            self.assertEqual([r.url for r in again], ["http://c/"])

    def test_changed_input_is_refused(self) -> None:
        """A checkpoint from another version of the file is refused: the file
        is shorter, or the bytes already read differ."""
        path = self.write("urls.txt", b"http://a/\nhttp://b/\n")
        with InputReader(path, "lines") as reader:
            list(reader)
            done = reader.checkpoint()
        path.write_bytes(b"http://a/\n")
        with InputReader(path, "lines", start=done) as reader:
            self.assertRaises(InputChanged, reader.verify)
        path.write_bytes(b"http://X/\nhttp://b/\nhttp://c/\n")
        with InputReader(path, "lines", start=done) as reader:
            error = self.assertRaises(InputChanged, reader.verify)
        self.assertIn("have changed", str(error))

    def test_checkpoint_json_round_trip(self) -> None:
        """A checkpoint survives JSON; anything else read back is None."""
        mark = Checkpoint(10, "ab", 2, 3)
        self.assertEqual(
            Checkpoint.from_json(json.loads(json.dumps(mark.to_json()))), mark
        )
        self.assertIsNone(Checkpoint.from_json({"offset": 1}))
        self.assertIsNone(Checkpoint.from_json(None))


class IOErrorTests(ReaderTestCase):
    def test_read_error_is_located_and_keeps_the_checkpoint(self) -> None:
        """An I/O error while reading raises InputError naming the file and
        the line it reached; the checkpoint stays at the end of the last row
        read, so nothing after it counts as read."""
        path = self.write("urls.txt", b"http://a/\nhttp://b/\nhttp://c/\n")
        reader = InputReader(path, "lines", name="urls.txt")
        real = reader._file
        assert real is not None
        calls = {"n": 0}

        class Flaky:
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def readline(self, size: int = -1) -> bytes:
                calls["n"] += 1
                if calls["n"] == 3:
                    raise OSError(5, "Input/output error")
                return real.readline(size)

        reader._file = Flaky()  # type: ignore[assignment]
        it = iter(reader)
        self.assertEqual(next(it).url, "http://a/")
        self.assertEqual(next(it).url, "http://b/")
        error = self.assertRaises(InputError, next, it)
        self.assertIn("urls.txt:3: cannot read on", str(error))
        self.assertEqual(reader.checkpoint().offset, 20)
        real.close()

    def test_missing_file(self) -> None:
        """An input that cannot be opened raises InputError naming it."""
        error = self.assertRaises(
            InputError, InputReader, self.folder / "nope.txt", "lines", name="nope.txt"
        )
        self.assertIn("nope.txt: cannot open", str(error))
        self.assertTrue(isinstance(error, OSError))


# Lines a row count must get right: rows, blank lines of every kind, comments,
# CRLF endings, quotes, commas, bytes that are not UTF-8, a last line without
# a newline.
_LINE_PARTS = st.sampled_from(
    [
        b"http://a.test/1",
        b"  http://a.test/2  ",
        b"",
        b"   ",
        b"\t",
        b"# a comment",
        b"  # indented comment",
        b"\r",
        b'{"url": "http://a.test/3"}',
        b"not json",
        b'"http://q.test/x",1',
        b"http://c.test/4,2",
        b"\xff\xfe",
        b"#",
    ]
)


class CountRowsTests(ReaderTestCase):
    """count_rows() is the number of rows the reader yields: what the
    progress bar's total and ETA are computed from."""

    def reader_rows(self, path: Path, fmt: str) -> int:
        with InputReader(path, fmt, name=path.name) as reader:
            return sum(1 for _ in reader)

    @settings(max_examples=150, deadline=None)
    @given(
        st.lists(_LINE_PARTS, max_size=40),
        st.booleans(),
        st.booleans(),
        st.sampled_from(["lines", "jsonl", "csv"]),
    )
    def test_same_as_the_reader(
        self, lines: list[bytes], final_newline: bool, bom: bool, fmt: str
    ) -> None:
        """For any mix of rows, blank lines, comments, CRLFs and bad bytes,
        in every format (a CSV with a header), with or without a BOM and a
        last newline, the count equals the rows the reader yields."""
        if fmt == "csv":
            lines = [b"url,priority", *lines]
        data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
        if bom:
            data = codecs.BOM_UTF8 + data
        path = self.write(f"in.{fmt}", data)
        found = count_rows(path, fmt)
        self.assertEqual(found, RowCount(self.reader_rows(path, fmt), True))

    def test_blocks_end_at_line_ends(self) -> None:
        """A file of several read blocks, blank lines and comments falling
        on block edges, is counted exactly."""
        block = b"http://a.test/x\n" * 70_000 + b"\n# c\n\n" + b"http://b.test/\n" * 3
        path = self.write("big.txt", block * 3)
        self.assertGreater(path.stat().st_size, 3 << 20)
        self.assertEqual(count_rows(path, "lines"), RowCount(3 * 70_003))

    def test_quoted_newlines_in_csv(self) -> None:
        """A CSV field with a newline inside quotes is one row, not two."""
        path = self.write(
            "q.csv", b'url,note\nhttp://a.test/,"two\nlines"\nhttp://b.test/,x\n\n'
        )
        self.assertEqual(count_rows(path, "csv"), RowCount(2))
        self.assertEqual(self.reader_rows(path, "csv"), 2)

    def test_large_quoted_csv_is_an_estimate(self) -> None:
        """Past the size a quoted CSV is parsed up to, its lines are counted
        and the count says it is an estimate."""
        path = self.write("q.csv", b'url,note\nhttp://a.test/,"two\nlines"\n')
        with patch("fetchq.inputs._CSV_EXACT_LIMIT", 10):
            self.assertEqual(count_rows(path, "csv"), RowCount(2, exact=False))

    def test_errors(self) -> None:
        """A file that cannot be read is an InputError naming it; an unknown
        format is a ValueError."""
        with self.assertRaises(InputError) as caught:
            count_rows(self.folder / "missing.txt", "lines")
        self.assertIn("missing.txt: cannot read", str(caught.exception))
        self.assertRaises(ValueError, count_rows, self.write("a", b""), "xml")
