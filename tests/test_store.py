"""The store contract, run against every store, and what only SQLite adds.

:class:`StoreContract` is the Protocol's test suite; each concrete TestCase
below runs it against one store (memory, SQLite with batched commits, SQLite
with a commit per operation, each SQLite one on a real file).  The SQLite
classes then check what only a file has: reopening, the schema, locking,
batching and query plans.
"""

from __future__ import annotations

import math
import operator
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Generator, Iterator
from typing import Any, ClassVar, Literal

import attrs
from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from fetchq.store import (
    Claimed,
    Counts,
    ItemState,
    MemoryStore,
    NewItem,
    Record,
    SQLiteStore,
    Store,
    StoreError,
)
from fetchq.store import sqlite as sqlite_module
from tests import redis_server


class TempDirTestCase(TestCase):
    """A SynchronousTestCase whose ``mktemp()`` paths live in a fresh
    directory under the system's temp dir, removed after the test.

    Trial's own ``mktemp()`` makes paths relative to the working directory,
    which under pytest is the repository; these tests write real files, so
    they go where nobody else looks.
    """

    def mktemp(self) -> str:
        """A path that does not exist yet, in a directory of its own."""
        base = getattr(self, "_store_tmp", None)
        if base is None:
            base = tempfile.mkdtemp(prefix="fetchq-store-")
            self._store_tmp = base
            self.addCleanup(shutil.rmtree, base, True)
        return os.path.join(tempfile.mkdtemp(dir=base), "temp")


def items(*ids: str, priority: float = 0, key: str | None = None) -> list[NewItem]:
    """New items with the given ids, each with ``{"id": id}`` as argument."""
    return [NewItem(i, {"id": i}, priority, key) for i in ids]


def ids(claimed: list[Claimed]) -> list[str]:
    """The ids of claimed items, in order."""
    return [c.id for c in claimed]


class StoreContract:
    """The :class:`fetchq.store.Store` contract.  Mixed into a TestCase that
    defines :meth:`make_store`."""

    def make_store(self) -> Any:
        """A new, empty store, or a Deferred of one (closed after the
        test)."""
        raise NotImplementedError

    # These come from the TestCase this is mixed into.
    assertEqual: Any
    assertIs: Any
    assertIsNone: Any
    assertRaises: Any
    assertTrue: Any
    assertFalse: Any
    addCleanup: Any
    fail: Any

    @defer.inlineCallbacks
    def store(self) -> Generator[Any, Any, Store]:
        """A new store, closed after the test."""
        store = yield self.make_store()
        self.addCleanup(store.close)
        return store

    @defer.inlineCallbacks
    def fails(
        self, error: type[BaseException], call: Any, *args: Any, **kw: Any
    ) -> Generator[Any, Any, BaseException]:
        """``call(*args, **kw)`` raises ``error``, at once or through the
        Deferred it returns (a store over the network finds some errors
        only on the server)."""
        try:
            yield call(*args, **kw)
        except error as e:
            return e
        self.fail(f"{call} did not raise {error.__name__}")

    @defer.inlineCallbacks
    def test_implements_protocol(self) -> Generator[Any, Any, None]:
        """The store is a Store as far as ``isinstance`` can tell."""
        self.assertTrue(isinstance((yield self.store()), Store))

    @defer.inlineCallbacks
    def test_add_returns_new_count(self) -> Generator[Any, Any, None]:
        """add() counts only ids it did not know, including duplicates within
        one call, and all items start pending."""
        store = yield self.store()
        self.assertEqual((yield store.add(items("a", "b", "a"))), 2)
        self.assertEqual((yield store.add(items("b", "c"))), 1)
        self.assertEqual((yield store.add([])), 0)
        self.assertEqual((yield store.counts()), Counts(pending=3, claimed=0))
        self.assertEqual((yield store.counts()).total, 3)

    @defer.inlineCallbacks
    def test_add_ignores_known_ids_in_any_state(self) -> Generator[Any, Any, None]:
        """Re-adding a claimed or done id neither changes it nor revives it,
        and the first argument and priority are kept."""
        store = yield self.store()
        yield store.add(items("a", "b", "c"))
        yield store.claim(1, 0.0, 10.0)  # a
        yield store.ack("b", "ok", None, 0.0)
        again = [NewItem(i, "other", priority=-5) for i in ("a", "b", "c")]
        self.assertEqual((yield store.add(again)), 0)
        a = yield store.get("a")
        b = yield store.get("b")
        c = yield store.get("c")
        assert a is not None and b is not None and c is not None
        self.assertEqual(
            (a.state, a.arg, a.priority), (ItemState.CLAIMED, {"id": "a"}, 0)
        )
        self.assertEqual((b.state, b.arg), (ItemState.DONE, {"id": "b"}))
        self.assertEqual((c.state, c.arg), (ItemState.PENDING, {"id": "c"}))

    @defer.inlineCallbacks
    def test_add_keeps_items_before_a_failure(self) -> Generator[Any, Any, None]:
        """When the iterable given to add() raises, the items it yielded
        before are added and the error propagates."""
        store = yield self.store()

        def feed() -> Iterator[NewItem]:
            yield from items(*(f"i{n}" for n in range(600)))
            raise OSError("input went away")

        yield self.fails(OSError, store.add, feed())
        self.assertEqual((yield store.counts()).pending, 600)
        self.assertEqual((yield store.add(items("i0", "i599", "new"))), 1)

    @defer.inlineCallbacks
    def test_claim_order(self) -> Generator[Any, Any, None]:
        """claim() hands out the lowest priority first, then insertion order,
        ints and floats compared by value."""
        store = yield self.store()
        (
            yield store.add(
                [
                    NewItem("late", 1, priority=2),
                    NewItem("first", 2, priority=-1.5),
                    NewItem("mid1", 3, priority=1),
                    NewItem("mid2", 4, priority=1.0),
                    NewItem("mid3", 5, priority=1),
                    NewItem("zero", 6),
                ]
            )
        )
        got = (yield store.claim(2, 0.0, 5.0)) + (yield store.claim(10, 0.0, 5.0))
        self.assertEqual(ids(got), ["first", "zero", "mid1", "mid2", "mid3", "late"])

    @defer.inlineCallbacks
    def test_claim_returns_item_and_marks_claimed(self) -> Generator[Any, Any, None]:
        """A claimed item carries its argument, priority, key and attempt
        number, and is claimed until now + lease."""
        store = yield self.store()
        yield store.add([NewItem("a", {"url": "http://x/", "n": [1, 2]}, 3, "x")])
        (claimed,) = yield store.claim(5, 10.0, 30.0)
        self.assertEqual(
            claimed, Claimed("a", {"url": "http://x/", "n": [1, 2]}, 3, "x", 1)
        )
        item = yield store.get("a")
        assert item is not None
        self.assertEqual((item.state, item.attempts), (ItemState.CLAIMED, 1))
        self.assertEqual(item.lease_until, 40.0)
        self.assertEqual((yield store.counts()), Counts(pending=0, claimed=1))
        self.assertEqual((yield store.claim(5, 39.9, 30.0)), [])

    @defer.inlineCallbacks
    def test_claim_limit(self) -> Generator[Any, Any, None]:
        """claim() returns at most ``limit`` items and nothing for 0."""
        store = yield self.store()
        yield store.add(items(*"abcde"))
        self.assertEqual((yield store.claim(0, 0.0, 1.0)), [])
        self.assertEqual(ids((yield store.claim(3, 0.0, 1.0))), ["a", "b", "c"])
        self.assertEqual((yield store.counts()), Counts(pending=2, claimed=3))

    @defer.inlineCallbacks
    def test_claim_rejects_bad_arguments(self) -> Generator[Any, Any, None]:
        """A negative or non-int limit, a lease that is not positive and a NaN
        or infinite ``now`` raise ValueError at the call."""
        store = yield self.store()
        yield store.add(items("a"))
        for limit, now, lease in [
            (-1, 0.0, 1.0),
            (1.5, 0.0, 1.0),
            (True, 0.0, 1.0),
            (1, 0.0, 0.0),
            (1, 0.0, -1.0),
            (1, 0.0, math.nan),
            (1, math.nan, 1.0),
            (1, math.inf, 1.0),
        ]:
            yield self.fails(ValueError, store.claim, limit, now, lease)
        self.assertEqual((yield store.counts()), Counts(pending=1, claimed=0))

    @defer.inlineCallbacks
    def test_expired_lease_is_claimed_again(self) -> Generator[Any, Any, None]:
        """Once ``now`` reaches an item's lease end, claim() hands it out
        again with one more attempt, in priority order with pending items."""
        store = yield self.store()
        yield store.add(items("a", "b", priority=1))
        yield store.add(items("c", priority=2))
        self.assertEqual(ids((yield store.claim(1, 0.0, 10.0))), ["a"])
        self.assertEqual(
            (yield store.claim(1, 9.999, 10.0)), [Claimed("b", {"id": "b"}, 1, None, 1)]
        )
        again = yield store.claim(5, 10.0, 10.0)
        self.assertEqual(ids(again), ["a", "c"])
        self.assertEqual(again[0].attempts, 2)
        self.assertEqual((yield store.counts()), Counts(pending=0, claimed=3))

    @defer.inlineCallbacks
    def test_infinite_lease_never_expires(self) -> Generator[Any, Any, None]:
        """An infinite lease keeps an item claimed until acked or released."""
        store = yield self.store()
        yield store.add(items("a"))
        yield store.claim(1, 0.0, math.inf)
        self.assertEqual((yield store.claim(1, 1e12, 1.0)), [])
        self.assertEqual((yield store.release(1e12)), 1)
        self.assertEqual(ids((yield store.claim(1, 1e12, 1.0))), ["a"])

    @defer.inlineCallbacks
    def test_ack(self) -> Generator[Any, Any, None]:
        """ack() finishes a claimed or a pending item once; a second ack is
        refused and keeps the first outcome and record."""
        store = yield self.store()
        yield store.add(items("a", "b"))
        yield store.claim(1, 0.0, 10.0)
        self.assertTrue((yield store.ack("a", "ok", {"status": 200}, 1.0)))
        self.assertTrue((yield store.ack("b", "failed", {"error": "bad url"}, 2.0)))
        self.assertFalse((yield store.ack("a", "failed", {"status": 500}, 3.0)))
        self.assertEqual((yield store.counts()), Counts(0, 0, {"ok": 1, "failed": 1}))
        self.assertEqual((yield store.counts()).finished, 2)
        item = yield store.get("a")
        assert item is not None
        self.assertEqual(
            (item.state, item.outcome, item.record, item.record_seq, item.done_at),
            (ItemState.DONE, "ok", {"status": 200}, 1, 1.0),
        )
        self.assertIsNone(item.lease_until)
        self.assertEqual(
            (yield store.records()),
            [
                Record(1, "a", "ok", {"status": 200}),
                Record(2, "b", "failed", {"error": "bad url"}),
            ],
        )
        self.assertEqual((yield store.claim(5, 100.0, 1.0)), [])

    @defer.inlineCallbacks
    def test_ack_without_record(self) -> Generator[Any, Any, None]:
        """An ack with no record still finishes the item and lists it."""
        store = yield self.store()
        yield store.add(items("a"))
        self.assertTrue((yield store.ack("a", "skipped", None, 0.0)))
        self.assertEqual((yield store.records()), [Record(1, "a", "skipped", None)])

    @defer.inlineCallbacks
    def test_late_ack_after_lease_expiry(self) -> Generator[Any, Any, None]:
        """When a lease expires and another claim takes the item, the first
        ack to arrive wins and the other is refused."""
        store = yield self.store()
        yield store.add(items("a"))
        yield store.claim(1, 0.0, 5.0)
        (second,) = yield store.claim(1, 6.0, 5.0)
        self.assertEqual(second.attempts, 2)
        self.assertTrue((yield store.ack("a", "ok", {"by": "first"}, 7.0)))
        self.assertFalse((yield store.ack("a", "ok", {"by": "second"}, 8.0)))
        self.assertEqual(
            (yield store.records()), [Record(1, "a", "ok", {"by": "first"})]
        )
        self.assertEqual((yield store.counts()), Counts(0, 0, {"ok": 1}))
        self.assertEqual((yield store.claim(1, 100.0, 5.0)), [])

    @defer.inlineCallbacks
    def test_ack_misuse(self) -> Generator[Any, Any, None]:
        """ack() raises KeyError for an unknown id, TypeError for a non-str id
        or a record that is not a dict, ValueError for an empty outcome, and
        changes nothing."""
        store = yield self.store()
        yield store.add(items("a"))
        yield self.fails(KeyError, store.ack, "nope", "ok", None, 0.0)
        yield self.fails(TypeError, store.ack, 1, "ok", None, 0.0)
        yield self.fails(TypeError, store.ack, "a", "ok", ["not", "a", "dict"], 0.0)
        yield self.fails(ValueError, store.ack, "a", "", None, 0.0)
        yield self.fails(ValueError, store.ack, "a", None, None, 0.0)
        yield self.fails(ValueError, store.ack, "a", "ok", None, math.nan)
        self.assertEqual((yield store.counts()), Counts(pending=1, claimed=0))
        self.assertEqual((yield store.records()), [])

    @defer.inlineCallbacks
    def test_requeue_later(self) -> Generator[Any, Any, None]:
        """A requeued item with ``not_before`` is pending and not claimed
        before that time, then claimed with one more attempt."""
        store = yield self.store()
        yield store.add(items("a", "b"))
        yield store.claim(1, 0.0, 10.0)
        self.assertTrue((yield store.requeue("a", 5.0, 1.0)))
        self.assertEqual((yield store.counts()), Counts(pending=2, claimed=0))
        item = yield store.get("a")
        assert item is not None
        self.assertEqual(
            (item.state, item.not_before, item.lease_until),
            (ItemState.PENDING, 5.0, None),
        )
        self.assertEqual(ids((yield store.claim(5, 4.9, 10.0))), ["b"])
        (again,) = yield store.claim(5, 5.0, 10.0)
        self.assertEqual((again.id, again.attempts), ("a", 2))
        item = yield store.get("a")
        assert item is not None
        self.assertIsNone(item.not_before)

    @defer.inlineCallbacks
    def test_requeue_now_keeps_insertion_order(self) -> Generator[Any, Any, None]:
        """An item requeued with no ``not_before`` (or one already past) is
        available at once, in its original place in the order."""
        store = yield self.store()
        yield store.add(items("a", "b", "c"))
        self.assertEqual(ids((yield store.claim(2, 0.0, 10.0))), ["a", "b"])
        self.assertTrue((yield store.requeue("b", None, 1.0)))
        self.assertTrue((yield store.requeue("a", 0.5, 1.0)))
        self.assertEqual(ids((yield store.claim(5, 1.0, 10.0))), ["a", "b", "c"])

    @defer.inlineCallbacks
    def test_requeue_pending_item(self) -> Generator[Any, Any, None]:
        """Requeueing a pending item can postpone it, and bring it forward
        again; it is never duplicated."""
        store = yield self.store()
        yield store.add(items("a", "b"))
        yield store.requeue("a", 50.0, 0.0)
        yield store.requeue("a", 50.0, 0.0)
        self.assertEqual(ids((yield store.claim(5, 1.0, 100.0))), ["b"])
        yield store.requeue("a", None, 2.0)
        self.assertEqual(ids((yield store.claim(5, 2.0, 100.0))), ["a"])
        self.assertEqual((yield store.claim(5, 60.0, 100.0)), [])
        self.assertEqual((yield store.counts()), Counts(pending=0, claimed=2))

    @defer.inlineCallbacks
    def test_requeue_done_item_is_refused(self) -> Generator[Any, Any, None]:
        """requeue() of a done item returns False and leaves it done."""
        store = yield self.store()
        yield store.add(items("a"))
        yield store.ack("a", "ok", {"x": 1}, 0.0)
        self.assertFalse((yield store.requeue("a", None, 1.0)))
        self.assertEqual((yield store.counts()), Counts(0, 0, {"ok": 1}))
        self.assertEqual((yield store.claim(1, 1.0, 1.0)), [])

    @defer.inlineCallbacks
    def test_requeue_misuse(self) -> Generator[Any, Any, None]:
        """requeue() raises KeyError for an unknown id and ValueError for a
        NaN time."""
        store = yield self.store()
        yield store.add(items("a"))
        yield self.fails(KeyError, store.requeue, "nope", None, 0.0)
        yield self.fails(ValueError, store.requeue, "a", math.nan, 0.0)
        yield self.fails(ValueError, store.requeue, "a", None, math.nan)

    @defer.inlineCallbacks
    def test_release(self) -> Generator[Any, Any, None]:
        """release() moves every claimed item (expired or not) back to
        available, and leaves pending, waiting and done items alone."""
        store = yield self.store()
        yield store.add(items(*"abcde"))
        yield store.claim(4, 0.0, 10.0)
        yield store.ack("a", "ok", None, 1.0)
        yield store.requeue("b", 100.0, 1.0)
        self.assertEqual((yield store.release(2.0)), 2)
        self.assertEqual(
            (yield store.counts()), Counts(pending=4, claimed=0, done={"ok": 1})
        )
        self.assertEqual((yield store.release(2.0)), 0)
        got = yield store.claim(10, 3.0, 10.0)
        self.assertEqual(ids(got), ["c", "d", "e"])
        self.assertEqual([c.attempts for c in got], [2, 2, 1])
        item = yield store.get("b")
        assert item is not None
        self.assertEqual((item.state, item.not_before), (ItemState.PENDING, 100.0))

    @defer.inlineCallbacks
    def test_release_then_expiry_does_not_duplicate(self) -> Generator[Any, Any, None]:
        """An item released and claimed again is not handed out a second time
        when its first lease's time comes."""
        store = yield self.store()
        yield store.add(items("a", "b"))
        yield store.claim(1, 0.0, 5.0)
        yield store.release(1.0)
        yield store.claim(1, 1.0, 100.0)
        self.assertEqual(ids((yield store.claim(5, 6.0, 100.0))), ["b"])
        self.assertEqual((yield store.claim(5, 7.0, 100.0)), [])

    @defer.inlineCallbacks
    def test_records_paging(self) -> Generator[Any, Any, None]:
        """records() pages through the ack order by ``after_seq`` and
        ``limit``, with no gaps."""
        store = yield self.store()
        names = [f"r{n:02}" for n in range(25)]
        yield store.add(items(*names))
        for n, name in enumerate(reversed(names)):
            yield store.ack(name, "ok", {"n": n}, float(n))
        seen: list[Record] = []
        after = 0
        while page := (yield store.records(after, 10)):
            self.assertTrue(len(page) <= 10)
            seen += page
            after = page[-1].seq
        self.assertEqual([r.seq for r in seen], list(range(1, 26)))
        self.assertEqual([r.id for r in seen], list(reversed(names)))
        self.assertEqual(
            (yield store.records(24, 10)), [Record(25, "r00", "ok", {"n": 24})]
        )
        self.assertEqual((yield store.records(0, 0)), [])
        yield self.fails(ValueError, store.records, -1)

    @defer.inlineCallbacks
    def test_amend(self) -> Generator[Any, Any, None]:
        """amend() replaces a done item's record in place (same seq, same
        outcome, same ack order); a pending or claimed item is left alone
        (False), an unknown id is a KeyError (``fetchq sms status`` on every
        engine)."""
        store = yield self.store()
        yield store.add(items("a", "b", "c"))
        yield store.ack("a", "ok", {"sid": "SM1"}, 1.0)
        yield store.ack("b", "failed", {"error": "x"}, 2.0)
        yield store.flush()
        amended = {"sid": "SM1", "delivery": {"status": "delivered"}}
        self.assertTrue((yield store.amend("a", amended, 3.0)))
        self.assertFalse((yield store.amend("c", {"no": 1}, 3.0)))
        yield store.claim(1, 3.0, 10.0)  # c
        self.assertFalse((yield store.amend("c", {"no": 1}, 3.0)))
        yield self.fails(KeyError, store.amend, "zz", {}, 3.0)
        yield store.flush()
        self.assertEqual(
            (yield store.records(0, 10)),
            [Record(1, "a", "ok", amended), Record(2, "b", "failed", {"error": "x"})],
        )
        self.assertEqual((yield store.counts()).done, {"ok": 1, "failed": 1})

    @defer.inlineCallbacks
    def test_get(self) -> Generator[Any, Any, None]:
        """get() returns None for an unknown id and the item's full state for
        a known one."""
        store = yield self.store()
        self.assertIsNone((yield store.get("a")))
        yield store.add([NewItem("a", ["x", 1, None, True, 2.5], 7.5, "k")])
        item = yield store.get("a")
        assert item is not None
        self.assertEqual(
            attrs.asdict(item, recurse=False),
            {
                "id": "a",
                "arg": ["x", 1, None, True, 2.5],
                "priority": 7.5,
                "key": "k",
                "state": ItemState.PENDING,
                "attempts": 0,
                "not_before": None,
                "lease_until": None,
                "outcome": None,
                "record": None,
                "record_seq": None,
                "done_at": None,
            },
        )

    @defer.inlineCallbacks
    def test_meta(self) -> Generator[Any, Any, None]:
        """meta_set() values come back from meta_get(), the last one wins, and
        unknown keys give the default."""
        store = yield self.store()
        self.assertIsNone((yield store.meta_get("recipe")))
        self.assertEqual((yield store.meta_get("offset", 0)), 0)
        yield store.meta_set("recipe", "abc123")
        yield store.meta_set("offset", 10)
        yield store.meta_set("offset", 20)
        yield store.meta_set("info", {"files": ["a", "b"]})
        self.assertEqual((yield store.meta_get("recipe")), "abc123")
        self.assertEqual((yield store.meta_get("offset", 0)), 20)
        self.assertEqual((yield store.meta_get("info")), {"files": ["a", "b"]})
        yield self.fails(TypeError, store.meta_set, "bad", {1, 2})
        yield self.fails(ValueError, store.meta_set, "bad", math.inf)
        yield self.fails(TypeError, store.meta_set, 5, "x")

    @defer.inlineCallbacks
    def test_closed_store(self) -> Generator[Any, Any, None]:
        """After close() every call but close() raises RuntimeError."""
        store = yield self.make_store()
        yield store.add(items("a"))
        yield store.close()
        yield store.close()
        for call, args in [
            (store.add, (items("b"),)),
            (store.claim, (1, 0.0, 1.0)),
            (store.ack, ("a", "ok", None, 0.0)),
            (store.requeue, ("a", None, 0.0)),
            (store.release, (0.0,)),
            (store.counts, ()),
            (store.records, ()),
            (store.get, ("a",)),
            (store.meta_get, ("k",)),
            (store.meta_set, ("k", 1)),
            (store.flush, ()),
        ]:
            self.assertRaises(RuntimeError, call, *args)

    @defer.inlineCallbacks
    def test_many_items_in_order(self) -> Generator[Any, Any, None]:
        """A thousand items with mixed priorities, claimed in small batches
        with some requeued and some acked, come out in exactly the order a
        sort by (priority, insertion) gives."""
        store = yield self.store()
        prios = [(n * 7919) % 13 - 6 for n in range(1000)]
        yield store.add(NewItem(f"{n}", n, p) for n, p in enumerate(prios))
        expected = [
            f"{n}" for n, _ in sorted(enumerate(prios), key=lambda t: (t[1], t[0]))
        ]
        got: list[str] = []
        now = 0.0
        while batch := (yield store.claim(17, now, 1000.0)):
            got += ids(batch)
            for c in batch:
                yield store.ack(c.id, "ok", None, now)
            now += 0.001
        self.assertEqual(got, expected)
        self.assertEqual((yield store.counts()), Counts(0, 0, {"ok": 1000}))

    @defer.inlineCallbacks
    def test_known(self) -> Generator[Any, Any, None]:
        """known() names the given ids the store has, in any state, and
        nothing else."""
        store = yield self.store()
        yield store.add(items("a", "b", "c"))
        yield store.claim(1, 0.0, 10.0)
        yield store.ack("b", "ok", None, 0.0)
        self.assertEqual((yield store.known(["a", "b", "c", "d"])), {"a", "b", "c"})
        self.assertEqual((yield store.known([])), set())
        many = [f"x{n}" for n in range(1500)]
        yield store.add(items(*many[::2]))
        self.assertEqual((yield store.known(many)), set(many[::2]))

    @defer.inlineCallbacks
    def test_add_done_items(self) -> Generator[Any, Any, None]:
        """An item added with an outcome is done at once with its record,
        in order with the records of acks; it is never claimed."""
        store = yield self.store()
        yield store.add(items("a"))
        yield store.claim(1, 0.0, 10.0)
        yield store.ack("a", "ok", {"n": 1}, 0.0)
        added = yield store.add(
            [
                NewItem("b", {}, outcome="invalid", record={"n": 2}),
                NewItem("c", {"id": "c"}),
                NewItem("a", {}, outcome="invalid", record={"n": 9}),
            ]
        )
        self.assertEqual(added, 2)
        self.assertEqual(
            [(r.seq, r.id, r.outcome, r.record) for r in (yield store.records())],
            [(1, "a", "ok", {"n": 1}), (2, "b", "invalid", {"n": 2})],
        )
        self.assertEqual((yield store.counts()), Counts(1, 0, {"ok": 1, "invalid": 1}))
        self.assertEqual(ids((yield store.claim(5, 1.0, 10.0))), ["c"])
        item = yield store.get("b")
        assert item is not None
        self.assertEqual(item.state, ItemState.DONE)

    @defer.inlineCallbacks
    def test_add_with_meta(self) -> Generator[Any, Any, None]:
        """add(meta=) keeps the values as meta_set() would."""
        store = yield self.store()
        yield store.add(items("a"), meta={"input": {"offset": 3}, "n": 1})
        self.assertEqual((yield store.meta_get("input")), {"offset": 3})
        self.assertEqual((yield store.meta_get("n")), 1)

    @defer.inlineCallbacks
    def lanes(
        self, store: Store, *spec: tuple[str | None, int]
    ) -> Generator[Any, Any, None]:
        """Add ``n`` items to each lane, lane by lane (input sorted by lane):
        ids are the lane name and a number."""
        for key, n in spec:
            yield store.add(NewItem(f"{key}{i}", {"k": key}, 0, key) for i in range(n))

    @defer.inlineCallbacks
    def test_claim_by_lane_shares_the_limit(self) -> Generator[Any, Any, None]:
        """With per_lane, items come lane by lane however they were added:
        three lanes added one after the other each give an even share of the
        limit (at most per_lane), in their own order."""
        store = yield self.store()
        yield self.lanes(store, ("a", 5), ("b", 5), ("c", 5))
        got = ids((yield store.claim(6, 0.0, 10.0, per_lane=10)))
        self.assertEqual(sorted(got), ["a0", "a1", "b0", "b1", "c0", "c1"])
        got = ids((yield store.claim(9, 0.0, 10.0, per_lane=1)))
        self.assertEqual(sorted(got), ["a2", "b2", "c2"])
        got = ids((yield store.claim(2, 0.0, 10.0, per_lane=5)))
        self.assertEqual(len(got), 2)
        self.assertEqual(len({g[0] for g in got}), 2, got)

    @defer.inlineCallbacks
    def test_claim_by_lane_round_robin(self) -> Generator[Any, Any, None]:
        """Successive claims of one item go round the lanes: every lane with
        available items is served before any is served twice, items without
        a key being a lane too."""
        store = yield self.store()
        yield self.lanes(store, ("b", 3), ("a", 3), (None, 3), ("c", 3))
        order = []
        for _ in range(12):
            (got,) = yield store.claim(1, 0.0, 10.0, per_lane=1)
            order.append(got.id)
        for start in range(0, 12, 4):
            lanes = [i[:-1] for i in order[start : start + 4]]
            self.assertEqual(sorted(lanes), ["None", "a", "b", "c"], order)
        self.assertEqual((yield store.claim(1, 0.0, 10.0, per_lane=1)), [])

    @defer.inlineCallbacks
    def test_claim_by_lane_priority_within_a_lane(self) -> Generator[Any, Any, None]:
        """Within a lane, claims by lane follow priority, then insertion."""
        store = yield self.store()
        (
            yield store.add(
                [
                    NewItem("x1", 1, 5, "x"),
                    NewItem("x2", 2, -1, "x"),
                    NewItem("y1", 3, 0, "y"),
                    NewItem("x3", 4, -1, "x"),
                ]
            )
        )
        got = ids((yield store.claim(10, 0.0, 10.0, per_lane=4)))
        self.assertEqual([g for g in got if g[0] == "x"], ["x2", "x3", "x1"])

    @defer.inlineCallbacks
    def test_claim_by_lane_skip(self) -> Generator[Any, Any, None]:
        """Lanes in ``skip`` give nothing (None skips items without a key),
        and are served again once no longer skipped."""
        store = yield self.store()
        yield self.lanes(store, ("a", 2), ("b", 2), (None, 2))
        got = ids((yield store.claim(10, 0.0, 10.0, per_lane=5, skip={"a", None})))
        self.assertEqual(got, ["b0", "b1"])
        self.assertEqual(
            (yield store.claim(10, 0.0, 10.0, per_lane=5, skip={"a", None})), []
        )
        got = ids((yield store.claim(10, 0.0, 10.0, per_lane=5)))
        self.assertEqual(sorted(got), ["None0", "None1", "a0", "a1"])

    @defer.inlineCallbacks
    def test_claim_by_lane_takes_what_came_due(self) -> Generator[Any, Any, None]:
        """Claims by lane also hand out expired leases and requeued items
        whose time has come, and nothing before."""
        store = yield self.store()
        yield self.lanes(store, ("a", 1), ("b", 1))
        yield store.claim(2, 0.0, 10.0, per_lane=1)
        yield store.requeue("b0", 5.0, 1.0)
        self.assertEqual((yield store.claim(5, 4.0, 10.0, per_lane=1)), [])
        self.assertEqual(ids((yield store.claim(5, 5.0, 10.0, per_lane=1))), ["b0"])
        got = yield store.claim(5, 10.0, 10.0, per_lane=1)
        self.assertEqual([(c.id, c.attempts) for c in got], [("a0", 2)])

    @defer.inlineCallbacks
    def test_claim_by_lane_rejects_bad_per_lane(self) -> Generator[Any, Any, None]:
        """per_lane must be an integer of at least 1."""
        store = yield self.store()
        for bad in (0, -1, 1.5, True):
            yield self.fails(ValueError, store.claim, 1, 0.0, 1.0, per_lane=bad)

    @defer.inlineCallbacks
    def test_reopen(self) -> Generator[Any, Any, None]:
        """reopen() puts the items done with an outcome back to pending as
        new (attempts from 0, no record), leaves other outcomes alone, and
        records() then skips the gaps their records left; acked again, they
        get new records at the end."""
        store = yield self.store()
        yield store.add(items("a", "b", "c", "d"))
        yield store.claim(4, 0.0, 10.0)
        yield store.ack("a", "ok", {"n": 1}, 1.0)
        yield store.ack("b", "failed", {"n": 2}, 1.0)
        yield store.ack("c", "ok", {"n": 3}, 1.0)
        yield store.ack("d", "failed", {"n": 4}, 1.0)
        self.assertEqual((yield store.reopen("failed", 2.0)), 2)
        self.assertEqual((yield store.reopen("failed", 2.0)), 0)
        self.assertEqual((yield store.counts()), Counts(2, 0, {"ok": 2}))
        self.assertEqual([r.id for r in (yield store.records())], ["a", "c"])
        item = yield store.get("b")
        assert item is not None
        self.assertEqual(
            (item.state, item.attempts, item.record), (ItemState.PENDING, 0, None)
        )
        got = yield store.claim(5, 3.0, 10.0)
        self.assertEqual([(c.id, c.attempts) for c in got], [("b", 1), ("d", 1)])
        yield store.ack("d", "ok", {"n": 5}, 4.0)
        records = yield store.records(3)
        self.assertEqual([(r.id, r.record) for r in records], [("d", {"n": 5})])
        self.assertTrue(records[0].seq > 4)

    @defer.inlineCallbacks
    def test_reset(self) -> Generator[Any, Any, None]:
        """reset() forgets every item, record and meta value; the store is
        then as new and usable."""
        store = yield self.store()
        yield store.add(items("a", "b"))
        yield store.claim(1, 0.0, 10.0)
        yield store.ack("b", "ok", None, 0.0)
        yield store.meta_set("k", 1)
        yield store.reset()
        self.assertEqual((yield store.counts()), Counts(0, 0))
        self.assertEqual((yield store.records()), [])
        self.assertIsNone((yield store.meta_get("k")))
        self.assertIsNone((yield store.get("a")))
        self.assertEqual((yield store.add(items("a"))), 1)

    @defer.inlineCallbacks
    def test_flush(self) -> Generator[Any, Any, None]:
        """flush() can be called at any time, with or without pending
        writes."""
        store = yield self.store()
        yield store.flush()
        yield store.add(items("a"))
        yield store.flush()
        yield store.flush()
        self.assertEqual((yield store.counts()).pending, 1)


class NewItemTests(SynchronousTestCase):
    """The values the stores take and give."""

    def test_new_item_checks(self) -> None:
        """NewItem refuses a non-str id or key and a non-number or NaN
        priority at construction."""
        self.assertRaises(TypeError, NewItem, 1, "x")
        self.assertRaises(TypeError, NewItem, "a", "x", "1")
        self.assertRaises(TypeError, NewItem, "a", "x", True)
        self.assertRaises(ValueError, NewItem, "a", "x", math.nan)
        self.assertRaises(TypeError, NewItem, "a", "x", 0, 5)
        self.assertEqual(NewItem("a", None), NewItem("a", None, 0, None))

    def test_counts_value(self) -> None:
        """Counts is immutable, sums its parts and compares by value."""
        done = {"ok": 2, "failed": 1}
        counts = Counts(1, 2, done)
        done["ok"] = 100
        self.assertEqual(counts, Counts(1, 2, {"failed": 1, "ok": 2}))
        self.assertEqual((counts.finished, counts.total), (3, 6))
        self.assertRaises(TypeError, operator.setitem, counts.done, "ok", 3)
        self.assertRaises(
            attrs.exceptions.FrozenInstanceError, setattr, counts, "pending", 5
        )
        self.assertEqual(hash(counts), hash(Counts(1, 2, {})))


class MemoryStoreTests(StoreContract, TempDirTestCase):
    """The contract, on :class:`MemoryStore`."""

    def make_store(self) -> Store:
        """A new MemoryStore."""
        return MemoryStore()

    def test_finished_items_do_not_keep_lease_entries(self) -> None:
        """A long run claims and acks far more items than are ever underway;
        the lease heap (private: what this test is about) stays near the
        number underway instead of growing with every item ever claimed
        within an hour-long lease."""
        store = MemoryStore()
        store.add(NewItem(str(i), i) for i in range(20_000))
        now = 0.0
        while claimed := store.claim(50, now, lease=3600.0):
            for item in claimed:
                store.ack(item.id, "ok", None, now)
            now += 0.01
        self.assertEqual(store.counts().done, {"ok": 20_000})
        self.assertLess(len(store._leases), 2 * 50 + 1024 + 50)
        # An item still claimed keeps its lease, compaction or not.
        store.add([NewItem("late", 0)])
        self.assertEqual([c.id for c in store.claim(1, now, lease=1.0)], ["late"])
        self.assertEqual(store.claim(1, now + 0.5, lease=1.0), [])
        self.assertEqual([c.id for c in store.claim(1, now + 1.0, lease=1.0)], ["late"])

    def test_args_kept_as_given(self) -> None:
        """The memory store hands back the very argument and record objects
        it was given, JSON or not."""
        store = MemoryStore()
        arg = (object(), {"x"})
        record = {"body": b"raw"}
        store.add([NewItem("a", arg)])
        (claimed,) = store.claim(1, 0.0, 1.0)
        self.assertIs(claimed.arg, arg)
        store.ack("a", "ok", record, 0.0)
        self.assertIs(store.records()[0].record, record)


class RedisStoreTests(StoreContract, TempDirTestCase):
    """The contract, on :class:`RedisStore` against a real redis-server
    (its deadlines on the test's ``now`` rather than the server's clock)."""

    @defer.inlineCallbacks
    def make_store(self) -> Generator[Any, Any, Store]:
        """A new RedisStore, a run of its own on the shared server."""
        from fetchq.store.redis import RedisStore

        server = redis_server.shared()
        store = yield RedisStore.connect(
            server.url,
            redis_server.run_name(),
            reactor,
            server_time=False,
            renew=False,
        )
        return store


class SQLiteContract(StoreContract):
    """The contract, on :class:`SQLiteStore` with a real file, plus what only
    a file-backed store does.  Mixed into a TempDirTestCase that sets
    ``durability``."""

    durability: ClassVar[Literal["normal", "full"]]
    mktemp: Any
    assertFalse: Any

    def open(self, path: str, **kwargs: Any) -> SQLiteStore:
        """Open ``path`` with this class's durability (closed after the
        test)."""
        store = SQLiteStore(path, durability=self.durability, **kwargs)
        self.addCleanup(store.close)
        return store

    def make_store(self) -> Store:
        """A SQLiteStore on a new file."""
        return SQLiteStore(self.mktemp(), durability=self.durability)

    def test_reopen_keeps_everything(self) -> None:
        """Closing and reopening the file keeps every item's state, the
        records, the counts, the metadata and the claim order; claimed items
        are still claimed and come back on lease expiry."""
        path = self.mktemp()
        store = SQLiteStore(path, durability=self.durability)
        store.add(
            NewItem(f"i{n}", {"n": n}, n % 3, "k" if n % 2 else None) for n in range(20)
        )
        store.claim(3, 0.0, 10.0)
        store.ack("i3", "ok", {"status": 200}, 1.0)
        store.ack("i4", "failed", None, 1.0)
        store.requeue("i6", 50.0, 1.0)
        store.meta_set("offset", 20)
        before = {f"i{n}": store.get(f"i{n}") for n in range(20)}
        counts = store.counts()
        records = store.records()
        store.close()

        again = self.open(path)
        self.assertEqual(again.counts(), counts)
        self.assertEqual(again.records(), records)
        self.assertEqual({f"i{n}": again.get(f"i{n}") for n in range(20)}, before)
        self.assertEqual(again.meta_get("offset"), 20)
        self.assertEqual(again.add(items("i0", "i19", "i20")), 1)
        self.assertEqual(again.claim(1, 5.0, 10.0)[0].id, "i9")
        expired = ids(again.claim(20, 10.0, 10.0))
        self.assertEqual(expired[:3], ["i0", "i12", "i15"])
        self.assertEqual(len(expired), 17)
        self.assertTrue(again.ack("i5", "ok", None, 11.0))
        self.assertEqual(again.records()[-1].seq, 3)

    def test_schema(self) -> None:
        """A new file is WAL-journaled and marked with fetchq's application id
        and schema version."""
        path = self.mktemp()
        self.open(path).close()
        conn = sqlite3.connect(path)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("PRAGMA journal_mode").fetchone()[0], "wal")
        self.assertEqual(
            conn.execute("PRAGMA application_id").fetchone()[0],
            sqlite_module.APPLICATION_ID,
        )
        self.assertEqual(
            conn.execute("PRAGMA user_version").fetchone()[0],
            sqlite_module.SCHEMA_VERSION,
        )

    def crash(self, store: SQLiteStore) -> None:
        """Lose the uncommitted batch, as kill -9 would."""
        store._conn.close()
        store._closed = True

    def test_add_and_meta_commit_together(self) -> None:
        """The items and meta of one add() reach the file together or not at
        all, however many items it writes: an input's checkpoint never
        survives a crash without the rows it covers, or the other way."""
        for batch_ops, survives in ((100, True), (100_000, False)):
            path = self.mktemp()
            store = SQLiteStore(path, durability=self.durability, batch_ops=batch_ops)
            store.add(items(*[f"i{n}" for n in range(600)]), meta={"cp": 600})
            self.crash(store)
            if self.durability == "full":
                survives = True
            again = self.open(path)
            self.assertEqual(again.counts().pending, 600 if survives else 0)
            self.assertEqual(again.meta_get("cp"), 600 if survives else None)
            again.close()

    def test_upgrades_schema_1(self) -> None:
        """A state file of schema 1 (no lane index) opens: it is upgraded in
        place, keeps its items, and claims by lane."""
        path = self.mktemp()
        self.open(path).close()
        conn = sqlite3.connect(path)
        conn.execute("DROP INDEX items_lanes")
        conn.execute("PRAGMA user_version = 1")
        conn.commit()
        conn.close()
        store = self.open(path)
        store.add(items("a", key="h"))
        self.assertEqual(ids(store.claim(1, 0.0, 1.0, per_lane=1)), ["a"])
        indexes = [
            row[0]
            for row in store._conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index'"
            )
        ]
        self.assertIn("items_lanes", indexes)
        version = store._conn.execute("PRAGMA user_version").fetchone()[0]
        self.assertEqual(version, sqlite_module.SCHEMA_VERSION)

    def test_query_plans_use_indexes(self) -> None:
        """Every statement of the hot path finds its rows through an index
        (no full-table scan, no sort), so each costs O(log n) per row at
        millions of rows."""
        store = self.open(self.mktemp())
        store.add(items("a"))
        conn = store._conn
        names = [
            "_PROMOTE_DELAYED",
            "_PROMOTE_LEASED",
            "_NEXT_DELAYED",
            "_NEXT_LEASE",
            "_CLAIM_SELECT",
            "_CLAIM_UPDATE",
            "_FIND",
            "_ACK",
            "_REQUEUE",
            "_RELEASE",
            "_RECORDS",
            "_LAST_RECORD",
            "_GET",
            "_LANES_AFTER",
            "_NULL_LANE",
            "_CLAIM_LANE",
            "_CLAIM_NULL_LANE",
        ]
        for name in names:
            sql = getattr(sqlite_module, name)
            plan = [
                row[3]
                for row in conn.execute(
                    f"EXPLAIN QUERY PLAN {sql}", (1,) * sql.count("?")
                )
            ]
            text = " ".join(plan)
            self.assertTrue("INDEX" in text or "PRIMARY KEY" in text, f"{name}: {plan}")
            self.assertFalse("TEMP B-TREE" in text, f"{name}: {plan}")
            self.assertFalse(
                "SCAN items" in text and "USING INDEX" not in text, f"{name}: {plan}"
            )

    def test_args_must_be_json(self) -> None:
        """An argument that is not JSON raises at add(), after the items
        before it; JSON arguments come back as JSON types."""
        store = self.open(self.mktemp())
        bad = [NewItem("a", (1, 2)), NewItem("b", {1, 2}), NewItem("c", 3)]
        self.assertRaises(TypeError, store.add, bad)
        self.assertEqual(store.counts().pending, 1)
        self.assertRaises(ValueError, store.add, [NewItem("d", math.nan)])
        self.assertRaises(TypeError, store.ack, "a", "ok", {"x": object()}, 0.0)
        self.assertEqual(store.claim(5, 0.0, 1.0)[0].arg, [1, 2])
        self.assertEqual(store.counts(), Counts(pending=0, claimed=1))

    def test_second_opener_refused(self) -> None:
        """While one store has a file open, opening it again fails with a
        StoreError naming the file, instead of both writing it."""
        path = self.mktemp()
        first = self.open(path)
        first.add(items("a"))
        with self.assertRaises(StoreError) as caught:
            SQLiteStore(path, timeout=0.05)
        self.assertTrue(path in str(caught.exception))
        self.assertTrue("in use" in str(caught.exception))
        first.close()
        self.assertEqual(self.open(path).counts().pending, 1)

    def test_not_a_state_file(self) -> None:
        """A file that is not SQLite, a SQLite file of something else and a
        file from a newer fetchq are refused with a one-line StoreError."""
        junk = self.mktemp()
        with open(junk, "wb") as f:
            f.write(b"not a database at all" * 100)
        other = self.mktemp()
        conn = sqlite3.connect(other)
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
        conn.close()
        newer = self.mktemp()
        self.open(newer).close()
        conn = sqlite3.connect(newer)
        conn.execute("PRAGMA user_version = 99")
        conn.commit()
        conn.close()
        for path, why in [
            (junk, "not a database"),
            (other, "not a fetchq state file"),
            (newer, "newer fetchq (schema 99"),
        ]:
            with self.assertRaises(StoreError) as caught:
                SQLiteStore(path)
            message = str(caught.exception)
            self.assertTrue(message.startswith(f"{path}: "), message)
            self.assertTrue(why in message, message)
            self.assertFalse("\n" in message)

    def test_bad_options(self) -> None:
        """A bad durability, batch_ops or batch_ms raises ValueError before
        any file is touched."""
        path = self.mktemp()
        for kwargs in [
            {"durability": "fsync"},
            {"batch_ops": 0},
            {"batch_ops": 1.5},
            {"batch_ms": -1.0},
            {"batch_ms": math.nan},
        ]:
            self.assertRaises(ValueError, SQLiteStore, path, **kwargs)
        self.assertFalse(os.path.exists(path))

    def test_memory_database(self) -> None:
        """``":memory:"`` gives a working (non-durable) SQLite store."""
        store = self.open(":memory:")
        store.add(items("a"))
        self.assertEqual(ids(store.claim(1, 0.0, 1.0)), ["a"])


class SQLiteNormalTests(SQLiteContract, TempDirTestCase):
    """The contract and file behaviour with batched commits."""

    durability = "normal"

    def test_commits_every_batch_ops(self) -> None:
        """Writes accumulate until ``batch_ops`` items are written, then
        commit; flush() commits whatever is left."""
        store = self.open(self.mktemp(), batch_ops=10, batch_ms=None)
        store.add(items(*(f"i{n}" for n in range(4))))
        self.assertEqual(store.uncommitted, 4)
        store.claim(4, 0.0, 10.0)
        self.assertEqual(store.uncommitted, 8)
        store.ack("i0", "ok", None, 1.0)
        self.assertEqual(store.uncommitted, 9)
        store.ack("i1", "ok", None, 1.0)
        self.assertEqual(store.uncommitted, 0)
        self.assertFalse(store._conn.in_transaction)
        store.meta_set("k", 1)
        self.assertEqual(store.uncommitted, 1)
        store.flush()
        self.assertEqual(store.uncommitted, 0)
        self.assertFalse(store._conn.in_transaction)

    def test_commits_after_batch_ms(self) -> None:
        """A batch is committed once an operation's ``now`` is ``batch_ms``
        past the batch's first timed operation."""
        store = self.open(self.mktemp(), batch_ops=1000, batch_ms=100.0)
        store.add(items("a", "b", "c"))
        store.claim(1, 10.0, 5.0)
        store.ack("a", "ok", None, 10.05)
        self.assertEqual(store.uncommitted, 5)
        store.ack("b", "ok", None, 10.2)
        self.assertEqual(store.uncommitted, 0)
        store.ack("c", "ok", None, 20.0)
        self.assertEqual(store.uncommitted, 1)

    def test_reads_see_uncommitted_writes(self) -> None:
        """Counts, records and get() reflect writes not yet committed."""
        store = self.open(self.mktemp(), batch_ops=1000, batch_ms=None)
        store.add(items("a"))
        store.ack("a", "ok", {"x": 1}, 0.0)
        self.assertTrue(store.uncommitted > 0)
        self.assertEqual(store.records(), [Record(1, "a", "ok", {"x": 1})])
        item = store.get("a")
        assert item is not None
        self.assertIs(item.state, ItemState.DONE)


class SQLiteFullTests(SQLiteContract, TempDirTestCase):
    """The contract and file behaviour with a commit per operation."""

    durability = "full"

    def test_every_operation_commits(self) -> None:
        """With ``durability="full"`` nothing is ever left uncommitted."""
        store = self.open(self.mktemp(), batch_ops=1000, batch_ms=None)
        calls = [
            lambda: store.add(items("a", "b", "c")),
            lambda: store.claim(2, 0.0, 1.0),
            lambda: store.ack("a", "ok", None, 0.0),
            lambda: store.requeue("b", 5.0, 0.0),
            lambda: store.claim(1, 1.0, 1.0),
            lambda: store.release(2.0),
            lambda: store.meta_set("k", "v"),
        ]
        for call in calls:
            call()
            self.assertEqual(store.uncommitted, 0)
            self.assertFalse(store._conn.in_transaction)
