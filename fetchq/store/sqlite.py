"""The SQLite store: durable state for a run on one machine (stdlib sqlite3).

A state file survives ``kill -9`` at any moment: it is a WAL-journaled SQLite
database, written in transactions, so a crash loses at most the writes not yet
committed and never corrupts the file.  Re-opening it recovers: everything
acked and committed is still done, and items that were claimed come back
(when their lease expires, or at once with :meth:`SQLiteStore.release`).

Durability
----------
``durability="normal"`` (the default) uses ``synchronous=NORMAL`` and commits
in batches: after ``batch_ops`` written items, or once an operation's ``now``
is ``batch_ms`` past the first uncommitted one, or on :meth:`flush`.  A runner
flushes on a timer and before it reports anything as finished.  A crash of
the process loses only the uncommitted batch; a power cut may also lose the
last commits (the file stays intact).  ``durability="full"`` uses
``synchronous=FULL`` and commits every operation: each call is on disk when
it returns, at the cost of an fsync per call.

Design notes
------------
One table holds every item, keyed by ``seq`` (insertion order).  Its
``state`` is 0 (pending, available), 1 (pending, waiting for
``not_before``), 2 (claimed) or 3 (done).  Partial indexes keep every
operation O(log n) at millions of rows: ``(priority, seq)`` over available
items is the claim order, ``(key, priority, seq)`` over available items the
claim order within each lane (and, walked one distinct key at a time, the
lanes themselves), ``not_before`` over waiting items and ``lease_until``
over claimed ones find what has become available, and ``record_seq`` over
done items is the ack order.  Counts live in memory
(loaded by one scan at open) and a lower bound on the next time a waiting
item or a lease comes due spares ``claim()`` the promotion queries until
then.

The connection holds the file's lock from open to close (``locking_mode =
EXCLUSIVE``): one process owns a state file at a time, and a second one gets
a :class:`~fetchq.store.base.StoreError` instead of corrupting the counts.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Literal

from fetchq._validate import check_priority
from fetchq.store._checks import (
    check_ack,
    check_claim,
    check_id,
    check_limit,
    check_time,
)
from fetchq.store.base import (
    Claimed,
    Counts,
    Item,
    ItemState,
    JSONRecord,
    NewItem,
    Record,
    StoreError,
)

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SQLiteStore"]

SCHEMA_VERSION = 2
"""The schema this module writes (``PRAGMA user_version``).  Version 1
files (without the lane index) are upgraded when opened."""

APPLICATION_ID = 0x66657471
"""Marks a SQLite file as a fetchq state file (``PRAGMA application_id``,
"fetq" in ASCII)."""

_READY, _DELAYED, _CLAIMED, _DONE = 0, 1, 2, 3
_STATES = {
    _READY: ItemState.PENDING,
    _DELAYED: ItemState.PENDING,
    _CLAIMED: ItemState.CLAIMED,
    _DONE: ItemState.DONE,
}

_LANES_INDEX = (
    "CREATE INDEX IF NOT EXISTS items_lanes ON items (key, priority, seq) "
    "WHERE state = 0"
)

_SCHEMA = (
    """CREATE TABLE items (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        arg TEXT NOT NULL,
        priority NOT NULL,
        key TEXT,
        state INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        not_before REAL,
        lease_until REAL,
        outcome TEXT,
        record TEXT,
        record_seq INTEGER,
        done_at REAL
    )""",
    "CREATE INDEX items_ready ON items (priority, seq) WHERE state = 0",
    _LANES_INDEX,
    "CREATE INDEX items_delayed ON items (not_before) WHERE state = 1",
    "CREATE INDEX items_leased ON items (lease_until) WHERE state = 2",
    "CREATE UNIQUE INDEX items_records ON items (record_seq) WHERE state = 3",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    f"PRAGMA application_id = {APPLICATION_ID}",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

# The statements, named so tests can check their query plans.
_INSERT = (
    "INSERT OR IGNORE INTO items (id, arg, priority, key, state) VALUES (?, ?, ?, ?, 0)"
)
_PROMOTE_DELAYED = "UPDATE items SET state = 0 WHERE state = 1 AND not_before <= ?"
_PROMOTE_LEASED = (
    "UPDATE items SET state = 0, lease_until = NULL "
    "WHERE state = 2 AND lease_until <= ?"
)
_NEXT_DELAYED = "SELECT MIN(not_before) FROM items WHERE state = 1"
_NEXT_LEASE = "SELECT MIN(lease_until) FROM items WHERE state = 2"
_CLAIM_SELECT = (
    "SELECT seq, id, arg, priority, key, attempts FROM items "
    "WHERE state = 0 ORDER BY priority, seq LIMIT ?"
)
_CLAIM_UPDATE = (
    "UPDATE items SET state = 2, attempts = attempts + 1, not_before = NULL, "
    "lease_until = ? WHERE seq = ?"
)
# The lanes after a key (``_LANES_AFTER``) or from a key on (``_LANES_FROM``),
# one distinct key at a time through the lane index (a loose index scan:
# each step is one O(log n) seek).
_LANES = (
    "WITH RECURSIVE lanes(k, n) AS ("
    " SELECT (SELECT key FROM items WHERE state = 0 AND key {op} ?1"
    " ORDER BY key LIMIT 1), 1"
    " UNION ALL"
    " SELECT (SELECT key FROM items WHERE state = 0 AND key > lanes.k"
    " ORDER BY key LIMIT 1), n + 1"
    " FROM lanes WHERE lanes.k IS NOT NULL AND n < ?2"
    ") SELECT k FROM lanes WHERE k IS NOT NULL"
)
_LANES_AFTER = _LANES.format(op=">")
_LANES_FROM = _LANES.format(op=">=")
_NULL_LANE = "SELECT 1 FROM items WHERE state = 0 AND key IS NULL LIMIT 1"
_CLAIM_LANE = (
    "SELECT seq, id, arg, priority, key, attempts FROM items "
    "WHERE state = 0 AND key = ? ORDER BY priority, seq LIMIT ?"
)
_CLAIM_NULL_LANE = (
    "SELECT seq, id, arg, priority, key, attempts FROM items "
    "WHERE state = 0 AND key IS NULL ORDER BY priority, seq LIMIT ?"
)
_INSERT_DONE = (
    "INSERT OR IGNORE INTO items (id, arg, priority, key, state, outcome, record, "
    "record_seq) VALUES (?, ?, ?, ?, 3, ?, ?, ?)"
)
_FIND = "SELECT seq, state FROM items WHERE id = ?"
_KNOWN = "SELECT id FROM items WHERE id IN ({})"
_REOPEN = (
    "UPDATE items SET state = 0, attempts = 0, outcome = NULL, record = NULL, "
    "record_seq = NULL, done_at = NULL WHERE state = 3 AND outcome = ?"
)
_ACK = (
    "UPDATE items SET state = 3, outcome = ?, record = ?, record_seq = ?, "
    "done_at = ?, not_before = NULL, lease_until = NULL WHERE seq = ?"
)
# The common ack, of an item this process claimed: one statement by id (the
# state it leaves is known to be claimed), instead of a look-up and an update.
_ACK_CLAIMED = (
    "UPDATE items SET state = 3, outcome = ?, record = ?, record_seq = ?, "
    "done_at = ?, not_before = NULL, lease_until = NULL WHERE id = ? AND state = 2"
)
_AMEND = "UPDATE items SET record = ? WHERE seq = ? AND state = 3"
_REQUEUE = (
    "UPDATE items SET state = ?, not_before = ?, lease_until = NULL WHERE seq = ?"
)
_RELEASE = "UPDATE items SET state = 0, lease_until = NULL WHERE state = 2"
_RECORDS = (
    "SELECT record_seq, id, outcome, record FROM items "
    "WHERE state = 3 AND record_seq > ? ORDER BY record_seq LIMIT ?"
)
_LAST_RECORD = "SELECT MAX(record_seq) FROM items WHERE state = 3"
_COUNTS = "SELECT state, outcome, COUNT(*) FROM items GROUP BY state, outcome"
_GET = (
    "SELECT id, arg, priority, key, state, attempts, not_before, lease_until, "
    "outcome, record, record_seq, done_at FROM items WHERE id = ?"
)

_CHUNK = 512  # items per executemany() in add()

_ROUND_START = object()  # claim() by lane: next, the keyless lane, then all keys
_AFTER_NULL = object()  # claim() by lane: next, all keys

_dumps = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":")
).encode
_loads = json.loads


class SQLiteStore:
    """A :class:`~fetchq.store.base.Store` in a SQLite file.

    Args:
        path: the state file (created if missing), or ``":memory:"``.
        durability: ``"normal"`` (batched commits, ``synchronous=NORMAL``)
            or ``"full"`` (a commit per operation, ``synchronous=FULL``).
        batch_ops: in ``"normal"`` mode, commit once this many items have
            been written since the last commit.
        batch_ms: in ``"normal"`` mode, commit once an operation's ``now`` is
            this many milliseconds past the first uncommitted operation's
            (None: only ``batch_ops`` and :meth:`flush` commit).
        timeout: seconds to wait for another process to let go of the file
            before giving up.

    Raises:
        StoreError: if the file is not a SQLite database, is not a fetchq
            state file, was written by a newer fetchq, or is held by another
            process.
        ValueError: for a bad ``durability``, ``batch_ops`` or ``batch_ms``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Literal["normal", "full"] = "normal",
        batch_ops: int = 1000,
        batch_ms: float | None = 500.0,
        timeout: float = 2.0,
    ) -> None:
        if durability not in ("normal", "full"):
            raise ValueError(
                f"durability must be 'normal' or 'full', not {durability!r}"
            )
        if isinstance(batch_ops, bool) or not isinstance(batch_ops, int):
            raise ValueError(f"batch_ops must be a positive integer, not {batch_ops!r}")
        if batch_ops < 1:
            raise ValueError(f"batch_ops must be a positive integer, not {batch_ops!r}")
        if batch_ms is not None and not (batch_ms >= 0 and math.isfinite(batch_ms)):
            raise ValueError(f"batch_ms must be >= 0 or None, not {batch_ms!r}")
        self.path = os.fspath(path)
        """The state file's path."""
        self.durability = durability
        """``"normal"`` or ``"full"``."""
        self._full = durability == "full"
        self._batch_ops = 1 if self._full else batch_ops
        self._batch_s = math.inf if batch_ms is None else batch_ms / 1000.0
        self._batch_start: float | None = None
        self._uncommitted = 0
        self._closed = False
        self._conn = self._open(timeout)
        self._n_ready = self._n_delayed = self._n_claimed = 0
        self._done: dict[str, int] = {}
        self._record_seq = 0
        self._wake = -math.inf
        # Where claim() by lane goes on: _ROUND_START (the keyless lane, then
        # every key), _AFTER_NULL (every key) or the last key served.
        self._lane_cursor: object = _ROUND_START
        self._load()

    def _fail(self, conn: sqlite3.Connection, why: str) -> StoreError:
        conn.close()
        return StoreError(f"{self.path}: {why}")

    def _open(self, timeout: float) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as e:
            raise StoreError(f"{self.path}: cannot open: {e}") from e
        try:
            conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal" and self.path != ":memory:":
                raise self._fail(conn, f"cannot use a WAL journal (got {mode!r})")
            sync = "FULL" if self._full else "NORMAL"
            conn.execute(f"PRAGMA synchronous = {sync}")
            conn.execute("BEGIN IMMEDIATE")
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if app_id != APPLICATION_ID and (app_id != 0 or tables):
                raise self._fail(conn, "not a fetchq state file")
            if version > SCHEMA_VERSION:
                raise self._fail(
                    conn,
                    f"written by a newer fetchq (schema {version}; "
                    f"this one reads up to {SCHEMA_VERSION})",
                )
            if version == 0:
                for statement in _SCHEMA:
                    conn.execute(statement)
            elif version < SCHEMA_VERSION:
                conn.execute(_LANES_INDEX)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except sqlite3.OperationalError as e:
            why = str(e)
            if "locked" in why:
                why = "in use by another process (database is locked)"
            raise self._fail(conn, why) from e
        except sqlite3.DatabaseError as e:
            raise self._fail(conn, str(e)) from e
        return conn

    def _load(self) -> None:
        """Read the counts, the last record seq and the next due time."""
        conn = self._conn
        self._n_ready = self._n_delayed = self._n_claimed = 0
        done: dict[str, int] = {}
        for state, outcome, n in conn.execute(_COUNTS):
            if state == _READY:
                self._n_ready += n
            elif state == _DELAYED:
                self._n_delayed += n
            elif state == _CLAIMED:
                self._n_claimed += n
            else:
                done[outcome] = done.get(outcome, 0) + n
        self._done = done
        self._record_seq = conn.execute(_LAST_RECORD).fetchone()[0] or 0
        self._wake = -math.inf  # the next claim() looks for what came due

    def __repr__(self) -> str:
        state = "closed" if self._closed else repr(self.counts())
        return f"<SQLiteStore {self.path!r} {self.durability} {state}>"

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def uncommitted(self) -> int:
        """How many items have been written since the last commit (0 once
        :meth:`flush` returns, and always 0 with ``durability="full"``)."""
        return self._uncommitted

    # ------------------------------------------------------------------
    # Transactions

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the store for {self.path} is closed")

    def _begin(self) -> sqlite3.Connection:
        conn = self._conn
        if not conn.in_transaction:
            conn.execute("BEGIN IMMEDIATE")
        return conn

    def _wrote(self, n: int, now: float | None) -> None:
        """Count ``n`` written items; commit if the batch is full or old."""
        self._uncommitted += n
        if self._full:
            self._commit()
            return
        if now is not None:
            start = self._batch_start
            if start is None:
                self._batch_start = start = now
            if now - start >= self._batch_s:
                self._commit()
                return
        if self._uncommitted >= self._batch_ops:
            self._commit()

    def _commit(self) -> None:
        conn = self._conn
        if conn.in_transaction:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error:
                # The batch is lost; make the in-memory view match the file.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._load()
                self._uncommitted = 0
                self._batch_start = None
                raise
        self._uncommitted = 0
        self._batch_start = None

    # ------------------------------------------------------------------
    # The Store protocol

    def add(
        self, items: Iterable[NewItem], meta: Mapping[str, Any] | None = None
    ) -> int:
        """Insert ``items`` (pending, or done with their record); known ids
        are skipped.  Returns how many were new (see
        :meth:`fetchq.store.base.Store.add`).

        The items and ``meta`` are written in one transaction: a commit
        takes all of them or none.  If ``items`` raises, or an argument does
        not serialise to JSON (``TypeError``/``ValueError``), the items before
        it are added (and ``meta`` is not).
        """
        self._check_open()
        self._begin()
        added = 0
        pending: list[tuple[str, str, int | float, str | None]] = []
        try:
            for item in items:
                if item.outcome is not None:
                    added += self._insert(pending)
                    pending = []
                    added += self._insert_done(item)
                    continue
                pending.append((item.id, _dumps(item.arg), item.priority, item.key))
                if len(pending) >= _CHUNK:
                    added += self._insert(pending)
                    pending = []
            added += self._insert(pending)
            pending = []
            for name, value in (meta or {}).items():
                self._meta_write(name, value)
        finally:
            added += self._insert(pending)
            self._wrote(added + len(meta or ()), None)
        return added

    def _insert(self, rows: list[tuple[str, str, int | float, str | None]]) -> int:
        if not rows:
            return 0
        conn = self._conn
        before = conn.total_changes
        conn.executemany(_INSERT, rows)
        added = conn.total_changes - before
        self._n_ready += added
        return added

    def _insert_done(self, item: NewItem) -> int:
        assert item.outcome is not None
        text = None if item.record is None else _dumps(item.record)
        cursor = self._conn.execute(
            _INSERT_DONE,
            (
                item.id,
                _dumps(item.arg),
                item.priority,
                item.key,
                item.outcome,
                text,
                self._record_seq + 1,
            ),
        )
        if not cursor.rowcount:
            return 0
        self._record_seq += 1
        self._done[item.outcome] = self._done.get(item.outcome, 0) + 1
        return 1

    def known(self, ids: Iterable[str]) -> set[str]:
        """Which of ``ids`` the store has."""
        self._check_open()
        found: set[str] = set()
        wanted = list(ids)
        for start in range(0, len(wanted), _CHUNK):
            part = wanted[start : start + _CHUNK]
            sql = _KNOWN.format(",".join("?" * len(part)))
            found.update(k for (k,) in self._conn.execute(sql, part))
        return found

    def claim(
        self,
        limit: int,
        now: float,
        lease: float,
        *,
        per_lane: int | None = None,
        skip: Collection[str | None] = (),
    ) -> list[Claimed]:
        """Take up to ``limit`` available items for ``lease`` seconds, by
        priority or by lane (see :meth:`fetchq.store.base.Store.claim`)."""
        check_claim(limit, now, lease, per_lane)
        self._check_open()
        conn = self._conn
        promoted = self._promote(now) if now >= self._wake else 0
        rows: list[Any]
        if not limit:
            rows = []
        elif per_lane is None:
            rows = conn.execute(_CLAIM_SELECT, (limit,)).fetchall()
        else:
            rows = self._rows_by_lane(limit, per_lane, skip)
        if rows:
            until = now + lease
            self._begin().executemany(_CLAIM_UPDATE, [(until, r[0]) for r in rows])
            self._n_ready -= len(rows)
            self._n_claimed += len(rows)
            if until < self._wake:
                self._wake = until
        if rows or promoted:
            self._wrote(len(rows) + promoted, now)
        return [Claimed(r[1], _loads(r[2]), r[3], r[4], r[5] + 1) for r in rows]

    def _lanes_from(
        self,
        after: str | None,
        want: int,
        skip: Collection[str | None],
        found: list[str | None],
        stop: str | None = None,
    ) -> None:
        """Add to ``found`` up to ``want`` lanes (not in ``skip``) with
        available items, in key order after ``after`` (from the first key if
        None), up to ``stop`` included if given."""
        step = want + len(skip) + 1
        sql = _LANES_FROM if after is None else _LANES_AFTER
        first = "" if after is None else after
        while len(found) < want:
            keys = [k for (k,) in self._conn.execute(sql, (first, step))]
            for key in keys:
                if stop is not None and key > stop:
                    return
                if key not in skip:
                    found.append(key)
                    if len(found) >= want:
                        return
            if len(keys) < step:
                return
            sql, first = _LANES_AFTER, keys[-1]

    def _rows_by_lane(
        self, limit: int, per_lane: int, skip: Collection[str | None]
    ) -> list[Any]:
        """Available rows, shared out among the lanes that come next in the
        round (see :meth:`claim`): the lane of items without a key, then the
        lanes in key order."""
        conn = self._conn
        found: list[str | None] = []
        cursor = self._lane_cursor
        null_ok = None not in skip

        def null_lane() -> None:
            if null_ok and len(found) < limit and conn.execute(_NULL_LANE).fetchone():
                found.append(None)

        if cursor is _ROUND_START:
            null_lane()
            self._lanes_from(None, limit, skip, found)
        elif cursor is _AFTER_NULL:
            self._lanes_from(None, limit, skip, found)
            null_lane()  # round the end
        else:
            assert isinstance(cursor, str)
            self._lanes_from(cursor, limit, skip, found)
            null_lane()  # round the end, then the keys up to the cursor
            self._lanes_from(None, limit, skip, found, stop=cursor)
        if not found:
            self._lane_cursor = _ROUND_START
            return []
        share = min(per_lane, math.ceil(limit / len(found)))
        rows: list[Any] = []
        for key in found:
            n = min(share, limit - len(rows))
            if n <= 0:
                break
            if key is None:
                rows.extend(conn.execute(_CLAIM_NULL_LANE, (n,)))
                self._lane_cursor = _AFTER_NULL
            else:
                rows.extend(conn.execute(_CLAIM_LANE, (key, n)))
                self._lane_cursor = key
        return rows

    def _promote(self, now: float) -> int:
        """Make waiting items whose time came and expired leases available."""
        conn = self._conn
        began = not conn.in_transaction
        if began:
            conn.execute("BEGIN IMMEDIATE")
        delayed = conn.execute(_PROMOTE_DELAYED, (now,)).rowcount
        leased = conn.execute(_PROMOTE_LEASED, (now,)).rowcount
        self._n_delayed -= delayed
        self._n_claimed -= leased
        self._n_ready += delayed + leased
        due = [
            when
            for (when,) in (
                conn.execute(_NEXT_DELAYED).fetchone(),
                conn.execute(_NEXT_LEASE).fetchone(),
            )
            if when is not None
        ]
        self._wake = min(due, default=math.inf)
        if began and not delayed + leased:
            conn.execute("COMMIT")  # nothing changed: end the empty transaction
        return delayed + leased

    def _find(self, item_id: str) -> tuple[int, int]:
        check_id(item_id)
        self._check_open()
        row = self._conn.execute(_FIND, (item_id,)).fetchone()
        if row is None:
            raise KeyError(item_id)
        return row  # type: ignore[no-any-return]

    def _leave(self, state: int) -> None:
        if state == _READY:
            self._n_ready -= 1
        elif state == _DELAYED:
            self._n_delayed -= 1
        else:
            self._n_claimed -= 1

    def ack(
        self,
        item_id: str,
        outcome: str,
        record: JSONRecord,
        now: float,
    ) -> bool:
        """Finish an item for good; False if it was already done (see
        :meth:`fetchq.store.base.Store.ack`)."""
        check_ack(outcome, record, now)
        check_id(item_id)
        self._check_open()
        text = None if record is None else _dumps(record)
        record_seq = self._record_seq + 1
        conn = self._conn
        began = not conn.in_transaction
        if (
            self._begin()
            .execute(_ACK_CLAIMED, (outcome, text, record_seq, now, item_id))
            .rowcount
        ):
            state = _CLAIMED
        else:  # not claimed: pending, delayed, done or unknown
            try:
                seq, state = self._find(item_id)
            except KeyError:
                if began:
                    conn.execute("COMMIT")  # nothing written: end it as it began
                raise
            if state == _DONE:
                if began:
                    conn.execute("COMMIT")
                return False
            conn.execute(_ACK, (outcome, text, record_seq, now, seq))
        self._record_seq = record_seq
        self._leave(state)
        self._done[outcome] = self._done.get(outcome, 0) + 1
        self._wrote(1, now)
        return True

    def amend(self, item_id: str, record: JSONRecord, now: float) -> bool:
        """Replace a done item's record, keeping its outcome and its place
        in ack order (beyond the :class:`~fetchq.store.base.Store` contract:
        ``fetchq sms status`` adds each message's delivery to its record).
        Returns False, changing nothing, if the item is not done.

        Raises:
            KeyError: for an unknown id.
            TypeError: for a record that is not a dict, a list or None.
        """
        check_ack("amended", record, now)  # the record's and time's checks
        seq, state = self._find(item_id)
        if state != _DONE:
            return False
        text = None if record is None else _dumps(record)
        self._begin().execute(_AMEND, (text, seq))
        self._wrote(1, now)
        return True

    def requeue(self, item_id: str, not_before: float | None, now: float) -> bool:
        """Back to pending, available from ``not_before``; False if done (see
        :meth:`fetchq.store.base.Store.requeue`)."""
        check_time(now)
        if not_before is not None:
            check_time(not_before, "not_before")
        seq, state = self._find(item_id)
        if state == _DONE:
            return False
        new = _READY if not_before is None or not_before <= now else _DELAYED
        self._begin().execute(_REQUEUE, (new, not_before, seq))
        self._leave(state)
        if new == _READY:
            self._n_ready += 1
        else:
            self._n_delayed += 1
            if not_before is not None and not_before < self._wake:
                self._wake = not_before
        self._wrote(1, now)
        return True

    def reopen(self, outcome: str, now: float) -> int:
        """Every item done with ``outcome`` back to pending, its record
        dropped and its attempts from 0 (see
        :meth:`fetchq.store.base.Store.reopen`)."""
        check_time(now)
        self._check_open()
        if not self._done.get(outcome):
            return 0
        moved: int = self._begin().execute(_REOPEN, (outcome,)).rowcount
        last = self._record_seq
        self._load()
        self._record_seq = last  # new records come after every earlier one
        self._wrote(moved, now)
        return moved

    def reset(self) -> None:
        """Forget every item, record and meta value (and commit)."""
        self._check_open()
        conn = self._begin()
        conn.execute("DELETE FROM items")
        conn.execute("DELETE FROM meta")
        self._commit()
        self._load()
        self._lane_cursor = _ROUND_START

    def release(self, now: float) -> int:
        """Every claimed item back to pending; returns how many (see
        :meth:`fetchq.store.base.Store.release`)."""
        check_time(now)
        self._check_open()
        if not self._n_claimed:
            return 0
        moved: int = self._begin().execute(_RELEASE).rowcount
        self._n_claimed -= moved
        self._n_ready += moved
        self._wrote(moved, now)
        return moved

    def counts(self) -> Counts:
        """How many items are pending, claimed and done (by outcome)."""
        self._check_open()
        return Counts(self._n_ready + self._n_delayed, self._n_claimed, self._done)

    def records(self, after_seq: int = 0, limit: int = 1000) -> list[Record]:
        """Records with ``seq > after_seq``, in ack order, at most ``limit``."""
        check_limit(after_seq, "after_seq")
        check_limit(limit)
        self._check_open()
        rows = self._conn.execute(_RECORDS, (after_seq, limit))
        return [
            Record(seq, item_id, outcome, None if text is None else _loads(text))
            for seq, item_id, outcome, text in rows
        ]

    def record_texts(
        self, after_seq: int = 0, limit: int = 1000
    ) -> list[tuple[int, str | None]]:
        """As :meth:`records`, each record as ``(seq, JSON text)`` (None for
        no record), not decoded: what :mod:`fetchq.output` writes from."""
        check_limit(after_seq, "after_seq")
        check_limit(limit)
        self._check_open()
        rows = self._conn.execute(_RECORDS, (after_seq, limit))
        return [(seq, text) for seq, _id, _outcome, text in rows]

    def get(self, item_id: str) -> Item | None:
        """Everything known of one item, or None."""
        check_id(item_id)
        self._check_open()
        row = self._conn.execute(_GET, (item_id,)).fetchone()
        if row is None:
            return None
        record = row[9]
        return Item(
            id=row[0],
            arg=_loads(row[1]),
            priority=row[2],
            key=row[3],
            state=_STATES[row[4]],
            attempts=row[5],
            not_before=row[6],
            lease_until=row[7],
            outcome=row[8],
            record=None if record is None else _loads(record),
            record_seq=row[10],
            done_at=row[11],
        )

    def meta_get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, else ``default``."""
        self._check_open()
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,))
        found = row.fetchone()
        return default if found is None else _loads(found[0])

    def meta_set(self, key: str, value: Any) -> None:
        """Keep a JSON-serialisable ``value`` under ``key``, in the current
        batch (so it is committed with the operations before it)."""
        self._check_open()
        self._meta_write(key, value)
        self._wrote(1, None)

    def _meta_write(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"meta key must be a str, not {key!r}")
        text = _dumps(value)
        self._begin().execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, text)
        )

    def flush(self) -> None:
        """Commit every operation so far: they survive a crash from now on."""
        self._check_open()
        self._commit()

    # ------------------------------------------------------------------
    # For an admin view (beyond the Store contract)

    def pending_items(
        self,
        limit: int,
        after: tuple[Any, int] | None = None,
        key: str | None = None,
    ) -> list[tuple[tuple[Any, int], Item]]:
        """A page of the items ready to claim, in claim order (priority,
        then arrival), of every lane or of lane ``key``: ``(position,
        item)`` pairs, a position being ``(priority, seq)``; pass the last
        one as ``after`` for the next page.  One index range scan a page."""
        check_limit(limit)
        self._check_open()
        where = "state = 0"
        args: list[Any] = []
        if key is not None:
            where += " AND key = ?"
            args.append(key)
        if after is not None:
            where += " AND (priority, seq) > (?, ?)"
            args += [after[0], after[1]]
        rows = self._conn.execute(
            "SELECT seq, id, arg, priority, key, attempts, not_before FROM items "
            f"WHERE {where} ORDER BY priority, seq LIMIT ?",
            (*args, limit),
        )
        return [
            (
                (priority, seq),
                Item(
                    id=item_id,
                    arg=_loads(arg),
                    priority=priority,
                    key=lane,
                    state=ItemState.PENDING,
                    attempts=attempts,
                    not_before=not_before,
                    lease_until=None,
                    outcome=None,
                    record=None,
                    record_seq=None,
                    done_at=None,
                ),
            )
            for seq, item_id, arg, priority, lane, attempts, not_before in rows
        ]

    def reprioritize(self, item_id: str, priority: int | float) -> bool:
        """Give a pending item a new priority (it keeps its place among the
        items of that priority by arrival).  False if it is not pending.

        Raises:
            KeyError: no such item.
        """
        check_priority(priority)
        seq, state = self._find(item_id)
        if state not in (_READY, _DELAYED):
            return False
        self._begin().execute(
            "UPDATE items SET priority = ? WHERE seq = ?", (priority, seq)
        )
        self._wrote(1, None)
        return True

    def close(self) -> None:
        """Commit, then close the file (and let go of its lock).  Closing
        twice is harmless; any other call after closing raises
        ``RuntimeError``."""
        if self._closed:
            return
        try:
            self._commit()
        finally:
            self._closed = True
            self._conn.close()
