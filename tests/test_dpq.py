"""Tests for :class:`fetchq.dpq.DeferredPriorityQueue`."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    QueueOverflow,
    QueueUnderflow,
)
from twisted.trial.unittest import SynchronousTestCase

from fetchq import AlreadyQueued, FetchqError
from fetchq.dpq import DeferredPriorityQueue

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)

# A small item universe and a narrow priority range, so that random operation
# sequences often hit duplicates, missing items and priority ties.
ITEMS = st.integers(min_value=0, max_value=7)
PRIORITIES = st.integers(min_value=-2, max_value=2)
LIMITS = st.none() | st.integers(min_value=0, max_value=5)


class Unorderable:
    """A hashable value that refuses ordering comparisons."""

    def __lt__(self, other: object) -> bool:
        raise TypeError("Unorderable values cannot be ordered")

    def __gt__(self, other: object) -> bool:
        raise TypeError("Unorderable values cannot be ordered")


class ConstructionTests(SynchronousTestCase):
    """The size and backlog limits given to the constructor."""

    def test_defaults_are_unlimited(self) -> None:
        """With no arguments the queue starts empty and has no limits."""
        queue: DeferredPriorityQueue[int] = DeferredPriorityQueue()
        self.assertIsNone(queue.size)
        self.assertIsNone(queue.backlog)
        self.assertEqual(len(queue), 0)
        self.assertEqual(queue.waiting, 0)
        self.assertEqual(queue.pending(), [])

    def test_negative_size(self) -> None:
        """A negative size is rejected with ValueError."""
        self.assertRaises(ValueError, DeferredPriorityQueue, size=-1)

    def test_negative_backlog(self) -> None:
        """A negative backlog is rejected with ValueError."""
        self.assertRaises(ValueError, DeferredPriorityQueue, backlog=-1)

    def test_zero_limits_allowed(self) -> None:
        """Zero is a valid size and a valid backlog, and they are kept."""
        queue: DeferredPriorityQueue[int] = DeferredPriorityQueue(size=0, backlog=0)
        self.assertEqual((queue.size, queue.backlog), (0, 0))


class OrderTests(SynchronousTestCase):
    """The order in which get() hands items out."""

    def test_lowest_priority_first(self) -> None:
        """Items come out in ascending priority, whatever the put order."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("c", 3)
        queue.put("a", 1)
        queue.put("d", 4)
        queue.put("b", 2)
        got = [self.successResultOf(queue.get()) for _ in range(4)]
        self.assertEqual(got, ["a", "b", "c", "d"])

    def test_fifo_among_ties(self) -> None:
        """Items with equal priority come out in the order they were put."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        for name in ["x1", "x2", "x3"]:
            queue.put(name, 5)
        queue.put("first", 1)
        queue.put("x4", 5)
        got = [self.successResultOf(queue.get()) for _ in range(5)]
        self.assertEqual(got, ["first", "x1", "x2", "x3", "x4"])

    def test_default_priority_is_zero(self) -> None:
        """put() without a priority files the item at priority 0."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("positive", 1)
        queue.put("default")
        queue.put("negative", -1)
        self.assertEqual(queue.priority_of("default"), 0)
        self.assertEqual(queue.pending(), ["negative", "default", "positive"])

    def test_float_and_negative_priorities(self) -> None:
        """Float and negative priorities sort numerically."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("half", 0.5)
        queue.put("minus", -2)
        queue.put("quarter", 0.25)
        self.assertEqual(queue.pending(), ["minus", "quarter", "half"])

    def test_items_never_compared(self) -> None:
        """Items that cannot be ordered work, even with tied priorities."""
        queue: DeferredPriorityQueue[Unorderable] = DeferredPriorityQueue()
        items = [Unorderable() for _ in range(5)]
        for item in items:
            queue.put(item, 1)
        queue.reprioritize(items[0], 1)
        expected = items[1:] + items[:1]
        self.assertEqual(queue.pending(), expected)
        got = [self.successResultOf(queue.get()) for _ in range(5)]
        self.assertEqual(got, expected)

    def test_get_removes_item(self) -> None:
        """An item returned by get() is no longer in the queue."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("a")
        self.assertEqual(self.successResultOf(queue.get()), "a")
        self.assertNotIn("a", queue)
        self.assertEqual(len(queue), 0)
        self.assertRaises(KeyError, queue.priority_of, "a")


class WaitingGetTests(SynchronousTestCase):
    """get() on an empty queue, and cancelling such a get()."""

    def test_get_before_put(self) -> None:
        """A get() on an empty queue waits and then fires with the next put."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        d = queue.get()
        self.assertNoResult(d)
        self.assertEqual(queue.waiting, 1)
        queue.put("a", 9)
        self.assertEqual(self.successResultOf(d), "a")
        self.assertEqual(queue.waiting, 0)

    def test_put_to_waiter_is_not_stored(self) -> None:
        """An item handed to a waiting get() is never stored in the queue."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        d = queue.get()
        queue.put("a")
        self.assertEqual(len(queue), 0)
        self.assertNotIn("a", queue)
        self.assertEqual(queue.pending(), [])
        self.assertEqual(self.successResultOf(d), "a")

    def test_waiters_served_oldest_first(self) -> None:
        """Waiting get()s are served in the order they were made."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        first, second, third = queue.get(), queue.get(), queue.get()
        self.assertEqual(queue.waiting, 3)
        queue.put("a", 5)
        queue.put("b", 1)
        self.assertEqual(self.successResultOf(first), "a")
        self.assertEqual(self.successResultOf(second), "b")
        self.assertNoResult(third)
        self.assertEqual(queue.waiting, 1)

    def test_put_while_waiting_ignores_priority(self) -> None:
        """Each put() serves a waiter at once: no reordering by priority."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        first, second = queue.get(), queue.get()
        queue.put("low", 10)
        queue.put("high", -10)
        self.assertEqual(self.successResultOf(first), "low")
        self.assertEqual(self.successResultOf(second), "high")

    def test_cancel_waiting_get(self) -> None:
        """Cancelling a waiting get() fails it with CancelledError."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        d = queue.get()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(queue.waiting, 0)

    def test_cancel_then_put_goes_to_next_waiter(self) -> None:
        """After a waiter is cancelled, put() serves the next waiter."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        first, second = queue.get(), queue.get()
        first.cancel()
        self.failureResultOf(first, CancelledError)
        queue.put("a")
        self.assertEqual(self.successResultOf(second), "a")
        self.assertEqual(len(queue), 0)

    def test_cancel_middle_waiter(self) -> None:
        """Cancelling a waiter in the middle leaves the others in order."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        first, middle, last = queue.get(), queue.get(), queue.get()
        middle.cancel()
        self.failureResultOf(middle, CancelledError)
        queue.put("a")
        queue.put("b")
        self.assertEqual(self.successResultOf(first), "a")
        self.assertEqual(self.successResultOf(last), "b")

    def test_cancel_only_waiter_then_put_is_stored(self) -> None:
        """With its only waiter cancelled, a put() item is stored."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        d = queue.get()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        queue.put("a")
        self.assertEqual(len(queue), 1)
        self.assertEqual(queue.pending(), ["a"])

    def test_cancel_after_fire_is_harmless(self) -> None:
        """Cancelling a get() that already fired changes nothing."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("a")
        d = queue.get()
        d.cancel()
        self.assertEqual(self.successResultOf(d), "a")
        waiter = queue.get()
        queue.put("b")
        waiter.cancel()
        self.assertEqual(self.successResultOf(waiter), "b")
        self.assertEqual(queue.waiting, 0)

    def test_waiter_callback_may_get_again(self) -> None:
        """A waiter's callback can call get() again while the put is running."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        again: list[Deferred[str]] = []
        queue.get().addCallback(lambda _: again.append(queue.get()))
        queue.put("a")
        self.assertEqual(queue.waiting, 1)
        queue.put("b")
        self.assertEqual(self.successResultOf(again[0]), "b")


class DeleteTests(SynchronousTestCase):
    """delete()."""

    def test_delete(self) -> None:
        """A deleted item leaves the queue and is never returned by get()."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("a", 1)
        queue.put("b", 2)
        queue.put("c", 3)
        queue.delete("a")
        self.assertNotIn("a", queue)
        self.assertEqual(len(queue), 2)
        self.assertEqual(queue.pending(), ["b", "c"])
        self.assertEqual(self.successResultOf(queue.get()), "b")
        self.assertEqual(self.successResultOf(queue.get()), "c")
        self.assertNoResult(queue.get())

    def test_delete_missing(self) -> None:
        """Deleting an item that was never queued raises KeyError."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("a")
        self.assertRaises(KeyError, queue.delete, "b")
        self.assertEqual(len(queue), 1)

    def test_delete_twice(self) -> None:
        """Deleting an item a second time raises KeyError."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("a")
        queue.delete("a")
        self.assertRaises(KeyError, queue.delete, "a")
        self.assertEqual(len(queue), 0)

    def test_delete_after_get(self) -> None:
        """Deleting an item already returned by get() raises KeyError."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("a")
        self.successResultOf(queue.get())
        self.assertRaises(KeyError, queue.delete, "a")

    def test_put_again_after_delete(self) -> None:
        """A deleted item can be put again, and takes its new place."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("a", 1)
        queue.put("b", 1)
        queue.delete("a")
        queue.put("a", 1)
        self.assertEqual(len(queue), 2)
        self.assertEqual(queue.pending(), ["b", "a"])
        self.assertEqual(self.successResultOf(queue.get()), "b")
        self.assertEqual(self.successResultOf(queue.get()), "a")
        self.assertEqual(len(queue), 0)

    def test_delete_everything_then_get_waits(self) -> None:
        """With every item deleted, get() waits instead of returning one."""
        queue: DeferredPriorityQueue[int] = DeferredPriorityQueue()
        for i in range(4):
            queue.put(i, i)
        for i in range(4):
            queue.delete(i)
        d = queue.get()
        self.assertNoResult(d)
        queue.put(99)
        self.assertEqual(self.successResultOf(d), 99)


class ReprioritizeTests(SynchronousTestCase):
    """reprioritize() and priority_of()."""

    def test_reprioritize_moves_item(self) -> None:
        """A reprioritized item comes out in its new priority's position."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("a", 1)
        queue.put("b", 2)
        queue.put("c", 3)
        queue.reprioritize("c", 0)
        self.assertEqual(queue.priority_of("c"), 0)
        self.assertEqual(queue.pending(), ["c", "a", "b"])
        queue.reprioritize("c", 10)
        got = [self.successResultOf(queue.get()) for _ in range(3)]
        self.assertEqual(got, ["a", "b", "c"])

    def test_reprioritize_to_back_of_class(self) -> None:
        """A reprioritized item goes behind the items already in its class."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("x", 1)
        queue.put("y", 1)
        queue.put("moved", 5)
        queue.put("z", 1)
        queue.reprioritize("moved", 1)
        self.assertEqual(queue.pending(), ["x", "y", "z", "moved"])

    def test_reprioritize_same_priority_goes_to_back(self) -> None:
        """Reprioritizing to the current priority moves the item to the back."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("a", 1)
        queue.put("b", 1)
        queue.put("c", 1)
        queue.reprioritize("a", 1)
        self.assertEqual(queue.pending(), ["b", "c", "a"])
        got = [self.successResultOf(queue.get()) for _ in range(3)]
        self.assertEqual(got, ["b", "c", "a"])

    def test_reprioritize_missing(self) -> None:
        """Reprioritizing an item that is not queued raises KeyError."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        self.assertRaises(KeyError, queue.reprioritize, "a", 1)
        self.assertEqual(len(queue), 0)

    def test_reprioritize_after_delete(self) -> None:
        """Reprioritizing a deleted item raises KeyError and does not revive it."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("a", 1)
        queue.delete("a")
        self.assertRaises(KeyError, queue.reprioritize, "a", 0)
        self.assertNotIn("a", queue)
        self.assertEqual(len(queue), 0)
        self.assertNoResult(queue.get())

    def test_reprioritize_after_get(self) -> None:
        """Reprioritizing an item already returned by get() raises KeyError."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("a", 1)
        self.successResultOf(queue.get())
        self.assertRaises(KeyError, queue.reprioritize, "a", 0)

    def test_repeated_reprioritize_returns_item_once(self) -> None:
        """An item reprioritized many times is still returned exactly once."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("a", 0)
        queue.put("b", 50)
        for priority in range(100):
            queue.reprioritize("a", priority)
        self.assertEqual(len(queue), 2)
        self.assertEqual(self.successResultOf(queue.get()), "b")
        self.assertEqual(self.successResultOf(queue.get()), "a")
        self.assertNoResult(queue.get())

    def test_priority_of_missing(self) -> None:
        """priority_of() raises KeyError for an item that is not queued."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        self.assertRaises(KeyError, queue.priority_of, "a")
        queue.put("a", 3)
        self.assertEqual(queue.priority_of("a"), 3)
        queue.delete("a")
        self.assertRaises(KeyError, queue.priority_of, "a")


class SizeAndMembershipTests(SynchronousTestCase):
    """__len__, __contains__, the size and backlog limits, duplicates."""

    def test_len_after_each_operation(self) -> None:
        """len() counts live items after put, get, delete and reprioritize."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("a", 1)
        self.assertEqual(len(queue), 1)
        queue.put("b", 2)
        queue.put("c", 3)
        self.assertEqual(len(queue), 3)
        queue.reprioritize("a", 5)
        self.assertEqual(len(queue), 3)
        queue.delete("b")
        self.assertEqual(len(queue), 2)
        self.successResultOf(queue.get())
        self.assertEqual(len(queue), 1)
        queue.reprioritize("a", 0)
        self.assertEqual(len(queue), 1)
        self.successResultOf(queue.get())
        self.assertEqual(len(queue), 0)
        queue.put("a")
        self.assertEqual(len(queue), 1)
        queue.clear()
        self.assertEqual(len(queue), 0)

    def test_contains(self) -> None:
        """``in`` is true exactly for the items currently queued."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        self.assertNotIn("a", queue)
        queue.put("a")
        queue.put("b")
        self.assertIn("a", queue)
        queue.reprioritize("a", 3)
        self.assertIn("a", queue)
        queue.delete("a")
        self.assertNotIn("a", queue)
        self.successResultOf(queue.get())
        self.assertNotIn("b", queue)

    def test_size_overflow(self) -> None:
        """A put() beyond size raises QueueOverflow and stores nothing."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue(size=2)
        queue.put("a")
        queue.put("b")
        self.assertRaises(QueueOverflow, queue.put, "c")
        self.assertNotIn("c", queue)
        self.assertEqual(queue.pending(), ["a", "b"])

    def test_size_counts_live_items_only(self) -> None:
        """Deleting or getting an item frees room under the size limit."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue(size=2)
        queue.put("a")
        queue.put("b")
        queue.delete("a")
        queue.put("c")
        self.assertRaises(QueueOverflow, queue.put, "d")
        self.successResultOf(queue.get())
        queue.put("d")
        self.assertEqual(queue.pending(), ["c", "d"])

    def test_size_zero_still_serves_waiters(self) -> None:
        """With size 0 nothing is stored, but a waiting get() still gets items."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue(size=0)
        self.assertRaises(QueueOverflow, queue.put, "a")
        d = queue.get()
        queue.put("b")
        self.assertEqual(self.successResultOf(d), "b")

    def test_backlog_underflow(self) -> None:
        """A get() beyond backlog waiters raises QueueUnderflow."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue(backlog=2)
        first, second = queue.get(), queue.get()
        self.assertRaises(QueueUnderflow, queue.get)
        self.assertEqual(queue.waiting, 2)
        first.cancel()
        self.failureResultOf(first, CancelledError)
        third = queue.get()
        queue.put("a")
        queue.put("b")
        self.assertEqual(self.successResultOf(second), "a")
        self.assertEqual(self.successResultOf(third), "b")

    def test_backlog_zero(self) -> None:
        """With backlog 0, get() on an empty queue raises, but not otherwise."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue(backlog=0)
        self.assertRaises(QueueUnderflow, queue.get)
        queue.put("a")
        self.assertEqual(self.successResultOf(queue.get()), "a")
        self.assertRaises(QueueUnderflow, queue.get)

    def test_duplicate_put(self) -> None:
        """Putting an item already queued raises ValueError, changing nothing."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("a", 5)
        queue.put("b", 6)
        self.assertRaises(ValueError, queue.put, "a", 0)
        self.assertEqual(queue.priority_of("a"), 5)
        self.assertEqual(queue.pending(), ["a", "b"])
        self.assertEqual(len(queue), 2)

    def test_duplicate_put_raises_runtime_error_as_txrdq(self) -> None:
        """
        The duplicate-item error is fetchq.AlreadyQueued, which is also a
        RuntimeError, as txrdq raised, so txrdq-era handlers still catch it.
        """
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("a", 5)
        with self.assertRaises(RuntimeError) as caught:
            queue.put("a", 0)
        self.assertIsInstance(caught.exception, AlreadyQueued)
        self.assertIsInstance(caught.exception, ValueError)
        self.assertIsInstance(caught.exception, FetchqError)
        self.assertIn("'a'", str(caught.exception))
        self.assertEqual(queue.pending(), ["a"])

    def test_put_takes_txrdq_keywords(self) -> None:
        """
        put(obj=..., priority=...), as txrdq's and Twisted's DeferredQueue's
        keyword is spelled, queues the item.
        """
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put(obj="b", priority=2)
        queue.put(obj="a", priority=1)
        self.assertEqual(queue.pending(), ["a", "b"])

    def test_put_again_after_get(self) -> None:
        """An item returned by get() may be put again."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("a")
        self.successResultOf(queue.get())
        queue.put("a")
        self.assertEqual(queue.pending(), ["a"])

    def test_unhashable_item(self) -> None:
        """An unhashable item is refused with TypeError."""
        queue: DeferredPriorityQueue[object] = DeferredPriorityQueue()
        self.assertRaises(TypeError, queue.put, [])
        self.assertEqual(len(queue), 0)


class SnapshotTests(SynchronousTestCase):
    """pending() and clear()."""

    def test_pending_is_snapshot_in_get_order(self) -> None:
        """pending() lists items in get() order without removing them."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("b", 2)
        queue.put("a", 1)
        queue.put("b2", 2)
        snapshot = queue.pending()
        self.assertEqual(snapshot, ["a", "b", "b2"])
        snapshot.clear()
        self.assertEqual(queue.pending(), ["a", "b", "b2"])
        self.assertEqual(len(queue), 3)
        got = [self.successResultOf(queue.get()) for _ in range(3)]
        self.assertEqual(got, ["a", "b", "b2"])

    def test_as_generator_is_txrdq_snapshot(self) -> None:
        """
        asGenerator(), txrdq's view, iterates the queued items (in get()
        order) from a snapshot: changing the queue meanwhile changes nothing.
        """
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("b", 2)
        queue.put("a", 1)
        queue.put("gone", 0)
        queue.delete("gone")
        items = queue.asGenerator()
        queue.put("c", 0)
        self.assertEqual(list(items), ["a", "b"])
        self.assertEqual(list(queue.asGenerator()), ["c", "a", "b"])

    def test_clear(self) -> None:
        """clear() empties the queue and returns the items in get() order."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("c", 3)
        queue.put("a", 1)
        queue.put("b", 2)
        queue.put("gone", 0)
        queue.delete("gone")
        queue.reprioritize("c", 0)
        self.assertEqual(queue.clear(), ["c", "a", "b"])
        self.assertEqual(len(queue), 0)
        self.assertEqual(queue.pending(), [])
        self.assertNotIn("a", queue)
        self.assertEqual(queue.clear(), [])

    def test_clear_then_reuse(self) -> None:
        """After clear(), get() waits and cleared items may be put again."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("a")
        queue.clear()
        d = queue.get()
        self.assertNoResult(d)
        queue.put("a")
        self.assertEqual(self.successResultOf(d), "a")
        queue.put("a")
        self.assertEqual(queue.pending(), ["a"])

    def test_clear_keeps_waiters(self) -> None:
        """clear() leaves waiting get()s waiting."""
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        d = queue.get()
        self.assertEqual(queue.clear(), [])
        self.assertEqual(queue.waiting, 1)
        queue.put("a")
        self.assertEqual(self.successResultOf(d), "a")


class CompactionTests(SynchronousTestCase):
    """Stale heap entries are dropped so churn does not leak memory."""

    def test_heap_bounded_under_churn(self) -> None:
        """
        Under long delete/reprioritize/get churn the private heap never holds
        more than twice as many entries as there are live items.
        """
        queue: DeferredPriorityQueue[int] = DeferredPriorityQueue()

        def check() -> None:
            self.assertLessEqual(len(queue._heap), 2 * len(queue))

        for i in range(10):
            queue.put(i, i)
        for step in range(5000):
            queue.reprioritize(step % 10, step % 7)
            check()
        for step in range(5000):
            item = step % 10
            queue.delete(item)
            check()
            queue.put(item, step % 3)
            check()
        self.assertEqual(len(queue), 10)
        expected = queue.pending()
        got = []
        for _ in range(10):
            got.append(self.successResultOf(queue.get()))
            check()
        self.assertEqual(got, expected)
        self.assertEqual(queue._heap, [])
        for i in range(100):
            queue.put(i, i)
        for i in range(100):
            queue.delete(i)
            check()
        self.assertEqual(queue._heap, [])

    def test_order_survives_compaction(self) -> None:
        """
        When stale entries trigger a heap rebuild, get() still returns items
        in priority order, including items whose live entries were created
        out of priority order.
        """
        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("a", 1)
        queue.put("b", 0)
        for _ in range(3):
            queue.reprioritize("b", 0)
        queue.put("c", 2)
        queue.put("d", -1)
        for _ in range(4):
            queue.put("gone", 9)
            queue.delete("gone")
        got = [self.successResultOf(queue.get()) for _ in range(4)]
        self.assertEqual(got, ["d", "b", "a", "c"])


class QueueModel:
    """Run operations on a queue and on a simple model, and compare them.

    The model keeps a plain list of ``(priority, counter, item)`` entries and
    sorts it whenever the order matters, plus a list of the get() Deferreds
    that should be waiting.
    """

    def __init__(
        self, case: SynchronousTestCase, size: int | None, backlog: int | None
    ) -> None:
        self.case = case
        self.size = size
        self.backlog = backlog
        self.queue: DeferredPriorityQueue[int] = DeferredPriorityQueue(size, backlog)
        self.entries: list[tuple[int, int, int]] = []
        self.counter = 0
        self.waiters: list[Deferred[int]] = []

    def _ordered(self) -> list[int]:
        return [item for _, _, item in sorted(self.entries)]

    def _find(self, item: int) -> int | None:
        for index, entry in enumerate(self.entries):
            if entry[2] == item:
                return index
        return None

    def _append(self, item: int, priority: int) -> None:
        self.entries.append((priority, self.counter, item))
        self.counter += 1

    def put(self, item: int, priority: int) -> None:
        if self._find(item) is not None:
            self.case.assertRaises(ValueError, self.queue.put, item, priority)
        elif self.waiters:
            waiter = self.waiters.pop(0)
            self.queue.put(item, priority)
            self.case.assertEqual(self.case.successResultOf(waiter), item)
        elif self.size is not None and len(self.entries) >= self.size:
            self.case.assertRaises(QueueOverflow, self.queue.put, item, priority)
        else:
            self.queue.put(item, priority)
            self._append(item, priority)

    def delete(self, item: int) -> None:
        index = self._find(item)
        if index is None:
            self.case.assertRaises(KeyError, self.queue.delete, item)
        else:
            self.queue.delete(item)
            del self.entries[index]

    def reprioritize(self, item: int, priority: int) -> None:
        index = self._find(item)
        if index is None:
            self.case.assertRaises(KeyError, self.queue.reprioritize, item, priority)
        else:
            self.queue.reprioritize(item, priority)
            del self.entries[index]
            self._append(item, priority)

    def get(self) -> None:
        if self.entries:
            expected = self._ordered()[0]
            self.case.assertEqual(self.case.successResultOf(self.queue.get()), expected)
            index = self._find(expected)
            assert index is not None
            del self.entries[index]
        elif self.backlog is not None and len(self.waiters) >= self.backlog:
            self.case.assertRaises(QueueUnderflow, self.queue.get)
        else:
            d = self.queue.get()
            self.case.assertNoResult(d)
            self.waiters.append(d)

    def cancel(self, index: int) -> None:
        if self.waiters:
            d = self.waiters.pop(index % len(self.waiters))
            d.cancel()
            self.case.failureResultOf(d, CancelledError)

    def check(self) -> None:
        queue = self.queue
        self.case.assertEqual(len(queue), len(self.entries))
        self.case.assertEqual(queue.pending(), self._ordered())
        self.case.assertEqual(queue.waiting, len(self.waiters))
        for item in range(8):
            index = self._find(item)
            if index is None:
                self.case.assertNotIn(item, queue)
                self.case.assertRaises(KeyError, queue.priority_of, item)
            else:
                self.case.assertIn(item, queue)
                self.case.assertEqual(queue.priority_of(item), self.entries[index][0])
        for waiter in self.waiters:
            self.case.assertNoResult(waiter)

    def drain(self) -> None:
        """Empty the queue with clear() and check it against the model."""
        self.case.assertEqual(self.queue.clear(), self._ordered())
        self.entries = []
        self.check()


OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), ITEMS, PRIORITIES),
        st.tuples(st.just("delete"), ITEMS),
        st.tuples(st.just("reprioritize"), ITEMS, PRIORITIES),
        st.tuples(st.just("get")),
        st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=5)),
    ),
    max_size=60,
)


class DPQMachine(RuleBasedStateMachine):
    """A state machine driving a queue and a :class:`QueueModel` together."""

    def __init__(self, case: SynchronousTestCase) -> None:
        super().__init__()
        self.case = case
        self.model = QueueModel(case, None, None)

    @initialize(size=LIMITS, backlog=LIMITS)
    def limits(self, size: int | None, backlog: int | None) -> None:
        self.model = QueueModel(self.case, size, backlog)

    @rule(item=ITEMS, priority=PRIORITIES)
    def put(self, item: int, priority: int) -> None:
        self.model.put(item, priority)

    @rule(item=ITEMS)
    def delete(self, item: int) -> None:
        self.model.delete(item)

    @rule(item=ITEMS, priority=PRIORITIES)
    def reprioritize(self, item: int, priority: int) -> None:
        self.model.reprioritize(item, priority)

    @rule()
    def get(self) -> None:
        self.model.get()

    @rule(index=st.integers(min_value=0, max_value=5))
    def cancel(self, index: int) -> None:
        self.model.cancel(index)

    @rule()
    def clear(self) -> None:
        self.model.drain()

    @invariant()
    def agrees_with_model(self) -> None:
        self.model.check()


class PropertyTests(SynchronousTestCase):
    """The queue against a simple sorted-list model, on random operations."""

    @PROPERTY_SETTINGS
    @given(size=LIMITS, backlog=LIMITS, operations=OPERATIONS)
    def test_operation_lists_match_model(
        self,
        size: int | None,
        backlog: int | None,
        operations: list[tuple[object, ...]],
    ) -> None:
        """
        For any list of put/delete/reprioritize/get/cancel operations, the
        queue raises, returns and hands to waiters exactly what the model
        does, and its len(), pending() order, membership, priorities and
        waiter count match the model after every step and after clear().
        """
        model = QueueModel(self, size, backlog)
        for operation in operations:
            name, *args = operation
            getattr(model, str(name))(*args)
            model.check()
        model.drain()

    @PROPERTY_SETTINGS
    @given(
        entries=st.lists(st.tuples(ITEMS, PRIORITIES), unique_by=lambda e: e[0]),
    )
    def test_gets_are_stable_sort(self, entries: list[tuple[int, int]]) -> None:
        """
        Putting distinct items and then calling get() until empty yields them
        in a stable sort by priority.
        """
        queue: DeferredPriorityQueue[int] = DeferredPriorityQueue()
        for item, priority in entries:
            queue.put(item, priority)
        got = [self.successResultOf(queue.get()) for _ in entries]
        expected = [item for item, _ in sorted(entries, key=lambda e: e[1])]
        self.assertEqual(got, expected)
        self.assertEqual(len(queue), 0)

    def test_state_machine_matches_model(self) -> None:
        """
        Hypothesis-driven interleavings of every operation, including clear()
        and cancelling waiters, under random size and backlog limits, keep the
        queue in agreement with the model after every step.
        """
        run_state_machine_as_test(
            lambda: DPQMachine(self),
            settings=settings(max_examples=200, deadline=None, stateful_step_count=40),
        )
