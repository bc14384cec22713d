"""The in-memory store: plain dicts and heaps, gone when the process ends.

The default for programmatic use.  Arguments and records are kept as given
(not copied, not serialised), so they may be any Python object; only a
durable store needs them to be JSON.

Design notes
------------
Pending items that are available sit in a heap of ``(priority, seq, tick,
slot)`` entries, and the same entry sits in its lane's heap too (one heap
per lane key, in an ordered dict kept in least-recently-served order for
claiming by lane); items waiting for their ``not_before`` sit in a heap
keyed by that time, and claimed items in a heap keyed by their lease's end.
All of them use lazy deletion: an entry is live only while the item is still
in the state (and at the time) the entry was made for, so ack, requeue and
release never search a heap.  ``claim()`` first moves the waiting items whose
time has come and the claimed items whose lease expired into the available
heaps, then pops one: O(log n) per item.  Heaps full of stale entries are
rebuilt now and then.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from fetchq.store._checks import check_ack, check_claim, check_id, check_limit
from fetchq.store._checks import check_time as _check_time
from fetchq.store.base import (
    Claimed,
    Counts,
    Item,
    ItemState,
    JSONRecord,
    NewItem,
    Record,
)

__all__ = ["MemoryStore"]

_READY = 0  # pending, available now
_DELAYED = 1  # pending, waiting for not_before
_CLAIMED = 2
_DONE = 3

_STATES = {
    _READY: ItemState.PENDING,
    _DELAYED: ItemState.PENDING,
    _CLAIMED: ItemState.CLAIMED,
    _DONE: ItemState.DONE,
}

_heappush = heapq.heappush
_heappop = heapq.heappop

_Entry = tuple[Any, int, int, "_Slot"]


class _Slot:
    """One item's mutable state."""

    __slots__ = (
        "arg",
        "attempts",
        "done_at",
        "id",
        "key",
        "lease_until",
        "not_before",
        "outcome",
        "priority",
        "ready_entry",
        "record",
        "record_seq",
        "seq",
        "state",
    )

    def __init__(self, item: NewItem, seq: int) -> None:
        self.id = item.id
        self.arg = item.arg
        self.priority = item.priority
        self.key = item.key
        self.seq = seq
        self.state = _READY
        self.attempts = 0
        self.not_before: float | None = None
        self.lease_until: float | None = None
        self.outcome: str | None = None
        self.record: JSONRecord = None
        self.record_seq: int | None = None
        self.done_at: float | None = None
        self.ready_entry: _Entry | None = None


class MemoryStore:
    """A :class:`~fetchq.store.base.Store` in plain Python objects.

    Nothing survives the process; ``flush()`` does nothing.  Every operation
    is O(log n) in the number of items, except ``release()`` (O(claimed)).
    """

    def __init__(self) -> None:
        self._closed = False
        self._empty()

    def _empty(self) -> None:
        """Start with no item, record or meta value."""
        self._items: dict[str, _Slot] = {}
        self._ready: list[_Entry] = []
        self._lanes: OrderedDict[str | None, list[_Entry]] = OrderedDict()
        self._delayed: list[tuple[float, int, _Slot]] = []
        self._leases: list[tuple[float, int, _Slot]] = []
        self._records: list[Record | None] = []  # None: reopened
        self._seq = itertools.count(1)
        self._tick = itertools.count()
        self._n_ready = 0
        self._n_delayed = 0
        self._n_claimed = 0
        self._done: dict[str, int] = {}
        self._meta: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<MemoryStore {'closed' if self._closed else repr(self.counts())}>"

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this store is closed")

    def _make_ready(self, slot: _Slot) -> None:
        slot.state = _READY
        entry = (slot.priority, slot.seq, next(self._tick), slot)
        slot.ready_entry = entry
        _heappush(self._ready, entry)
        lane = self._lanes.get(slot.key)
        if lane is None:
            self._lanes[slot.key] = [entry]
        else:
            _heappush(lane, entry)
        self._n_ready += 1

    def _leave(self, slot: _Slot) -> None:
        """Take ``slot`` out of its current (not done) state's count."""
        state = slot.state
        if state == _READY:
            self._n_ready -= 1
            slot.ready_entry = None
        elif state == _DELAYED:
            self._n_delayed -= 1
        else:
            self._n_claimed -= 1
            slot.lease_until = None

    # ------------------------------------------------------------------
    # The Store protocol

    def add(
        self, items: Iterable[NewItem], meta: Mapping[str, Any] | None = None
    ) -> int:
        """Insert ``items`` (pending, or done with their record); known ids
        are skipped.  Returns how many were new (see
        :meth:`fetchq.store.base.Store.add`)."""
        self._check_open()
        known = self._items
        seq = self._seq
        added = 0
        for item in items:
            if item.id in known:
                continue
            slot = _Slot(item, next(seq))
            known[item.id] = slot
            if item.outcome is None:
                self._make_ready(slot)
            else:
                self._n_claimed += 1  # _finish takes it out of claimed
                slot.state = _CLAIMED
                self._finish(slot, item.outcome, item.record, None)
            added += 1
        for name, value in (meta or {}).items():
            self.meta_set(name, value)
        return added

    def known(self, ids: Iterable[str]) -> set[str]:
        """Which of ``ids`` the store has."""
        self._check_open()
        return {i for i in ids if i in self._items}

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
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            when, _, slot = _heappop(delayed)
            if slot.state == _DELAYED and slot.not_before == when:
                self._n_delayed -= 1
                self._make_ready(slot)
        leases = self._leases
        while leases and leases[0][0] <= now:
            when, _, slot = _heappop(leases)
            if slot.state == _CLAIMED and slot.lease_until == when:
                self._n_claimed -= 1
                slot.lease_until = None
                self._make_ready(slot)
        claimed: list[Claimed] = []
        until = now + lease
        if per_lane is None:
            ready = self._ready
            while len(claimed) < limit and ready:
                entry = _heappop(ready)
                if entry[3].ready_entry is entry:
                    self._take(entry[3], until, claimed)
        elif limit:
            self._claim_by_lane(limit, per_lane, skip, until, claimed)
        self._n_ready -= len(claimed)
        self._n_claimed += len(claimed)
        if len(leases) > 2 * self._n_claimed + 1024:
            self._compact_leases()
        if len(self._ready) > 2 * self._n_ready + 1024:
            self._compact_ready()
        return claimed

    def _take(self, slot: _Slot, until: float, claimed: list[Claimed]) -> None:
        """Claim one available item until ``until``."""
        slot.ready_entry = None
        slot.state = _CLAIMED
        slot.attempts += 1
        slot.not_before = None
        slot.lease_until = until
        _heappush(self._leases, (until, next(self._tick), slot))
        claimed.append(
            Claimed(slot.id, slot.arg, slot.priority, slot.key, slot.attempts)
        )

    def _claim_by_lane(
        self,
        limit: int,
        per_lane: int,
        skip: Collection[str | None],
        until: float,
        claimed: list[Claimed],
    ) -> None:
        """Up to ``limit`` items from lanes in least-recently-served order."""
        lanes = self._lanes
        found: list[tuple[str | None, list[_Entry]]] = []
        for key in list(lanes):
            heap = lanes[key]
            while heap and heap[0][3].ready_entry is not heap[0]:
                _heappop(heap)
            if not heap:
                del lanes[key]
                continue
            if key in skip:
                continue
            found.append((key, heap))
            if len(found) >= limit:
                break
        if not found:
            return
        share = min(per_lane, math.ceil(limit / len(found)))
        for key, heap in found:
            taken = 0
            while heap and taken < share and len(claimed) < limit:
                entry = _heappop(heap)
                if entry[3].ready_entry is entry:
                    self._take(entry[3], until, claimed)
                    taken += 1
            if heap:
                lanes.move_to_end(key)
            else:
                del lanes[key]
            if len(claimed) >= limit:
                break

    def _compact_ready(self) -> None:
        """Drop stale entries from the available heap (left there by claims
        made by lane)."""
        live = [entry for entry in self._ready if entry[3].ready_entry is entry]
        heapq.heapify(live)
        self._ready = live

    def _compact_leases(self) -> None:
        """Drop the lease entries of items no longer claimed (acked or
        requeued long before their lease would end), so a long run's heap
        holds about as many entries as there are items underway."""
        live = [
            entry
            for entry in self._leases
            if entry[2].state == _CLAIMED and entry[2].lease_until == entry[0]
        ]
        heapq.heapify(live)
        self._leases = live

    def _slot(self, item_id: str) -> _Slot:
        check_id(item_id)
        self._check_open()
        try:
            return self._items[item_id]
        except KeyError:
            raise KeyError(item_id) from None

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
        slot = self._slot(item_id)
        if slot.state == _DONE:
            return False
        self._finish(slot, outcome, record, now)
        return True

    def _finish(
        self, slot: _Slot, outcome: str, record: JSONRecord, now: float | None
    ) -> None:
        self._leave(slot)
        slot.state = _DONE
        slot.not_before = None
        slot.outcome = outcome
        slot.record = record
        slot.done_at = now
        seq = len(self._records) + 1
        slot.record_seq = seq
        self._records.append(Record(seq, slot.id, outcome, record))
        self._done[outcome] = self._done.get(outcome, 0) + 1

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
        slot = self._slot(item_id)
        if slot.state != _DONE or slot.record_seq is None:
            return False
        slot.record = record
        old = self._records[slot.record_seq - 1]
        assert old is not None
        new = Record(old.seq, old.id, old.outcome, record)
        self._records[slot.record_seq - 1] = new
        return True

    def requeue(self, item_id: str, not_before: float | None, now: float) -> bool:
        """Back to pending, available from ``not_before``; False if done (see
        :meth:`fetchq.store.base.Store.requeue`)."""
        _check_time(now)
        if not_before is not None:
            _check_time(not_before, "not_before")
        slot = self._slot(item_id)
        state = slot.state
        if state == _DONE:
            return False
        if not_before is None or not_before <= now:
            if state != _READY:
                self._leave(slot)
                self._make_ready(slot)
        else:
            self._leave(slot)
            slot.state = _DELAYED
            self._n_delayed += 1
            _heappush(self._delayed, (not_before, next(self._tick), slot))
        slot.not_before = not_before
        return True

    def reopen(self, outcome: str, now: float) -> int:
        """Every item done with ``outcome`` back to pending, its record
        dropped and its attempts from 0 (see
        :meth:`fetchq.store.base.Store.reopen`)."""
        _check_time(now)
        self._check_open()
        records = self._records
        moved = 0
        for slot in self._items.values():
            if slot.state != _DONE or slot.outcome != outcome:
                continue
            assert slot.record_seq is not None
            records[slot.record_seq - 1] = None
            slot.outcome = slot.record = slot.record_seq = slot.done_at = None
            slot.attempts = 0
            self._make_ready(slot)
            moved += 1
        if moved:
            self._done[outcome] -= moved
            if not self._done[outcome]:
                del self._done[outcome]
        return moved

    def reset(self) -> None:
        """Forget every item, record and meta value."""
        self._check_open()
        self._empty()

    def release(self, now: float) -> int:
        """Every claimed item back to pending; returns how many (see
        :meth:`fetchq.store.base.Store.release`)."""
        _check_time(now)
        self._check_open()
        moved = 0
        for when, _, slot in self._leases:
            if slot.state == _CLAIMED and slot.lease_until == when:
                self._leave(slot)
                self._make_ready(slot)
                moved += 1
        self._leases = []
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
        found: list[Record] = []
        if not limit:
            return found
        for record in itertools.islice(self._records, after_seq, None):
            if record is not None:
                found.append(record)
                if len(found) >= limit:
                    break
        return found

    def get(self, item_id: str) -> Item | None:
        """Everything known of one item, or None."""
        check_id(item_id)
        self._check_open()
        slot = self._items.get(item_id)
        if slot is None:
            return None
        return Item(
            id=slot.id,
            arg=slot.arg,
            priority=slot.priority,
            key=slot.key,
            state=_STATES[slot.state],
            attempts=slot.attempts,
            not_before=slot.not_before,
            lease_until=slot.lease_until,
            outcome=slot.outcome,
            record=slot.record,
            record_seq=slot.record_seq,
            done_at=slot.done_at,
        )

    def meta_get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, else ``default``."""
        self._check_open()
        value = self._meta.get(key)
        return default if value is None else json.loads(value)

    def meta_set(self, key: str, value: Any) -> None:
        """Keep a JSON-serialisable ``value`` under ``key`` (checked, like a
        durable store would, so the two behave alike)."""
        if not isinstance(key, str):
            raise TypeError(f"meta key must be a str, not {key!r}")
        self._check_open()
        self._meta[key] = json.dumps(value, allow_nan=False)

    def flush(self) -> None:
        """Nothing to do: an in-memory store has nothing to commit."""
        self._check_open()

    def close(self) -> None:
        """Drop everything; later calls (but ``close()``) raise RuntimeError."""
        if self._closed:
            return
        self._closed = True
        self._items.clear()
        self._ready.clear()
        self._lanes.clear()
        self._delayed.clear()
        self._leases.clear()
        self._records.clear()
