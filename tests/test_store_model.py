"""Property test: SQLiteStore against MemoryStore as its model.

Hypothesis drives both stores with the same operations (add, claim, ack,
requeue, release, time passing, flush, meta, and closing and reopening the
SQLite file) and after every step checks that they agree on everything the
Protocol exposes: what each call returned or raised, the counts, the records
and every item's full state.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from fetchq.store import MemoryStore, NewItem, SQLiteStore
from tests.test_store import TempDirTestCase

IDS = [f"id{n}" for n in range(10)]
ITEM_IDS = st.sampled_from(IDS)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)
PRIORITIES = st.integers(min_value=-2, max_value=2) | st.floats(
    min_value=-2, max_value=2, allow_nan=False
)
NEW_ITEMS = st.builds(
    NewItem,
    id=ITEM_IDS,
    arg=JSON,
    priority=PRIORITIES,
    key=st.none() | st.sampled_from(["a", "b"]),
)
RECORDS = st.none() | st.dictionaries(st.text(max_size=3), JSON, max_size=3)
# Times on a coarse grid, so leases and retry times often fall due exactly at
# ``now``: the boundary is where an off-by-one would hide.
TIMES = st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0])
LEASES = st.sampled_from([0.5, 1.0, 2.0, 3.5])
DELAYS = st.none() | st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0])


def outcome_of(call: Any, *args: Any) -> tuple[str, Any]:
    """What a call returned, or the type of what it raised."""
    try:
        return ("returned", call(*args))
    except Exception as e:
        return ("raised", type(e))


class StoreMachine(RuleBasedStateMachine):
    """Runs every operation on a SQLiteStore and a MemoryStore side by side.

    Time only moves forward (as a runner's clock does).  Reopening the file
    happens after a close, which commits, so the model stays exact.
    """

    directory = ""
    files = itertools.count()

    def __init__(self) -> None:
        super().__init__()
        self.model = MemoryStore()
        self.path = os.path.join(self.directory, f"model-{next(self.files)}.db")
        self.real: SQLiteStore | None = None
        self.now = 0.0

    @initialize(
        durability=st.sampled_from(["normal", "full"]),
        batch_ops=st.integers(min_value=1, max_value=5),
    )
    def open_store(self, durability: Any, batch_ops: int) -> None:
        self.durability = durability
        self.batch_ops = batch_ops
        self.real = SQLiteStore(self.path, durability=durability, batch_ops=batch_ops)

    @property
    def store(self) -> SQLiteStore:
        assert self.real is not None
        return self.real

    def both(self, name: str, *args: Any) -> Any:
        """Call ``name`` on both stores; they must agree."""
        expected = outcome_of(getattr(self.model, name), *args)
        got = outcome_of(getattr(self.store, name), *args)
        assert got == expected, (name, args, got, expected)
        return got[1]

    @rule(new=st.lists(NEW_ITEMS, max_size=4))
    def add(self, new: list[NewItem]) -> None:
        self.both("add", new)

    @rule(limit=st.integers(min_value=0, max_value=4), lease=LEASES)
    def claim(self, limit: int, lease: float) -> None:
        self.both("claim", limit, self.now, lease)

    @rule(
        item_id=ITEM_IDS,
        outcome=st.sampled_from(["ok", "failed"]),
        record=RECORDS,
    )
    def ack(self, item_id: str, outcome: str, record: Any) -> None:
        self.both("ack", item_id, outcome, record, self.now)

    @rule(item_id=ITEM_IDS, delay=DELAYS)
    def requeue(self, item_id: str, delay: float | None) -> None:
        not_before = None if delay is None else self.now + delay
        self.both("requeue", item_id, not_before, self.now)

    @rule()
    def release(self) -> None:
        self.both("release", self.now)

    @rule(dt=TIMES)
    def tick(self, dt: float) -> None:
        self.now += dt

    @rule()
    def flush(self) -> None:
        self.both("flush")

    @rule(key=st.sampled_from(["offset", "recipe"]), value=JSON)
    def meta(self, key: str, value: Any) -> None:
        self.both("meta_set", key, value)

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.real = SQLiteStore(
            self.path, durability=self.durability, batch_ops=self.batch_ops
        )

    @invariant()
    def agree(self) -> None:
        if self.real is None:
            return
        assert self.store.counts() == self.model.counts()
        assert self.store.records() == self.model.records()
        for item_id in IDS:
            assert self.store.get(item_id) == self.model.get(item_id), item_id
        for key in ("offset", "recipe"):
            assert self.store.meta_get(key) == self.model.meta_get(key)

    def teardown(self) -> None:
        if self.real is not None:
            self.real.close()


class StoreModelTests(TempDirTestCase):
    """SQLiteStore behaves exactly like MemoryStore."""

    def test_sqlite_matches_memory(self) -> None:
        """Under random sequences of every operation, with reopens in
        between, the SQLite store returns, raises and holds exactly what the
        memory store does."""
        directory = self.mktemp()
        os.mkdir(directory)
        StoreMachine.directory = directory
        run_state_machine_as_test(
            StoreMachine,
            settings=settings(max_examples=150, stateful_step_count=40, deadline=None),
        )
