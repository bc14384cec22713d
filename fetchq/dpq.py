"""A priority queue whose :meth:`~DeferredPriorityQueue.get` returns a Deferred.

:class:`DeferredPriorityQueue` behaves like
:class:`twisted.internet.defer.DeferredQueue`, except that items come out in
priority order (lowest priority value first, first-in first-out among equal
priorities) rather than in plain arrival order. Items already in the queue can
be deleted or given a new priority without scanning the queue.

The queue is a :mod:`heapq` of ``(priority, seq, item)`` entries plus a dict
mapping each queued item to its one live entry. Deleting or reprioritizing an
item only updates the dict; the old heap entry goes stale and is skipped when
it reaches the top of the heap. The heap is rebuilt from the live entries
whenever stale entries make up more than half of it, so churn does not make
it grow without bound.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

from twisted.internet.defer import (
    Deferred,
    QueueOverflow,
    QueueUnderflow,
    succeed,
)

from fetchq.errors import AlreadyQueued

__all__ = ["DeferredPriorityQueue"]

T = TypeVar("T", bound=Hashable)


class DeferredPriorityQueue(Generic[T]):
    """A queue of hashable items, handed out by priority through Deferreds.

    The item with the lowest priority value comes out first; items with equal
    priorities come out in the order they were put (or last reprioritized).
    When :meth:`get` is called on an empty queue, it returns a Deferred that
    fires with the next item :meth:`put` into the queue. Waiting
    :meth:`get` calls are served oldest first.

    Each item may be in the queue at most once, because the queue finds items
    by hashing them; this is what lets :meth:`delete` and
    :meth:`reprioritize` avoid a scan.

    Example::

        queue: DeferredPriorityQueue[str] = DeferredPriorityQueue()
        queue.put("later", priority=5)
        queue.put("sooner", priority=1)
        queue.get().addCallback(print)  # prints "sooner" at once
        queue.reprioritize("later", 0)
        queue.delete("later")
        d = queue.get()  # queue is empty: d waits
        queue.put("next")  # d fires with "next"; nothing is stored

    Attributes:
        size: The most items the queue holds at once, or ``None`` for no
            limit.
        backlog: The most :meth:`get` Deferreds that may wait at once, or
            ``None`` for no limit.
    """

    def __init__(self, size: int | None = None, backlog: int | None = None) -> None:
        """Create an empty queue.

        Args:
            size: The most items the queue may hold at once; a :meth:`put`
                beyond it raises :class:`~twisted.internet.defer.QueueOverflow`.
                ``None`` (the default) means no limit.
            backlog: The most :meth:`get` Deferreds that may wait at once; a
                :meth:`get` beyond it raises
                :class:`~twisted.internet.defer.QueueUnderflow`. ``None`` (the
                default) means no limit.

        Raises:
            ValueError: If ``size`` or ``backlog`` is negative.
        """
        if size is not None and size < 0:
            raise ValueError(f"size must be None or >= 0, not {size!r}")
        if backlog is not None and backlog < 0:
            raise ValueError(f"backlog must be None or >= 0, not {backlog!r}")
        self.size = size
        self.backlog = backlog
        self._heap: list[tuple[float, int, T]] = []
        self._live: dict[T, tuple[float, int, T]] = {}
        self._stale = 0
        self._seq = 0
        self._waiters: list[Deferred[T]] = []

    def __len__(self) -> int:
        """Return the number of items in the queue.

        Returns:
            How many items are queued; deleted items and stale heap entries
            are not counted.
        """
        return len(self._live)

    def __contains__(self, item: object) -> bool:
        """Tell whether an item is in the queue.

        Args:
            item: The item to look for.

        Returns:
            ``True`` if ``item`` is queued, else ``False``.
        """
        return item in self._live

    @property
    def waiting(self) -> int:
        """The number of :meth:`get` Deferreds waiting for an item."""
        return len(self._waiters)

    def put(self, obj: T, priority: float = 0) -> None:
        """Add an item to the queue, or hand it to a waiting :meth:`get`.

        If any :meth:`get` Deferred is waiting, the oldest one fires with
        ``obj`` at once and the item is not stored. Otherwise the item is
        stored behind every queued item with the same priority.

        Args:
            obj: The item to add. It must be hashable. (Named as in
                :meth:`twisted.internet.defer.DeferredQueue.put` and txrdq.)
            priority: Where the item sorts; lower values come out first.

        Raises:
            fetchq.AlreadyQueued: If ``obj`` is already in the queue; it is
                both a ``ValueError`` and a ``RuntimeError`` (txrdq's).
            twisted.internet.defer.QueueOverflow: If no :meth:`get` is
                waiting and the queue already holds ``size`` items.
        """
        if obj in self._live:
            raise AlreadyQueued(f"{obj!r} is already in the queue")
        if self._waiters:
            self._waiters.pop(0).callback(obj)
        elif self.size is None or len(self._live) < self.size:
            self._push(obj, priority)
        else:
            raise QueueOverflow()

    def get(self) -> Deferred[T]:
        """Remove and return the best item, through a Deferred.

        If the queue holds items, the returned Deferred has already fired
        with the one with the lowest priority value (the oldest of those, on
        a tie). Otherwise it fires with the next item passed to :meth:`put`,
        after any :meth:`get` Deferreds already waiting have been served.
        Cancelling a waiting Deferred withdraws it from the queue; it then
        fails with :class:`~twisted.internet.defer.CancelledError`.

        Returns:
            A Deferred that fires with the item.

        Raises:
            twisted.internet.defer.QueueUnderflow: If the queue is empty and
                ``backlog`` Deferreds are already waiting.
        """
        if self._live:
            return succeed(self._pop())
        if self.backlog is None or len(self._waiters) < self.backlog:
            d: Deferred[T] = Deferred(canceller=self._cancel_get)
            self._waiters.append(d)
            return d
        raise QueueUnderflow()

    def delete(self, item: T) -> None:
        """Remove an item from the queue without returning it.

        This takes amortized constant time: the item's heap entry is only
        marked stale, and is dropped later.

        Args:
            item: The item to remove.

        Raises:
            KeyError: If ``item`` is not in the queue.
        """
        del self._live[item]
        self._stale += 1
        self._maybe_compact()

    def reprioritize(self, item: T, priority: float) -> None:
        """Give a queued item a new priority.

        The item moves to the back of its new priority class, behind every
        item already queued with that priority, even if the priority is
        unchanged.

        Args:
            item: The item to move.
            priority: Its new priority; lower values come out first.

        Raises:
            KeyError: If ``item`` is not in the queue.
        """
        del self._live[item]
        self._stale += 1
        self._push(item, priority)
        self._maybe_compact()

    def priority_of(self, item: T) -> float:
        """Return the priority an item is queued with.

        Args:
            item: The item to look up.

        Returns:
            The priority given to ``item`` by :meth:`put` or, if it was moved
            since, by :meth:`reprioritize`.

        Raises:
            KeyError: If ``item`` is not in the queue.
        """
        return self._live[item][0]

    def pending(self) -> list[T]:
        """Return the queued items without removing them.

        Returns:
            A new list of the queued items, in the order :meth:`get` would
            return them.
        """
        return [entry[2] for entry in sorted(self._live.values())]

    def asGenerator(self) -> Iterator[T]:
        """txrdq's view of the queued items: an iterator over a snapshot of
        :meth:`pending` (txrdq's gave them in heap order, unsorted)."""
        return iter(self.pending())

    def clear(self) -> list[T]:
        """Remove every item from the queue.

        Waiting :meth:`get` Deferreds are left waiting.

        Returns:
            The removed items, in the order :meth:`get` would have returned
            them.
        """
        items = self.pending()
        self._heap = []
        self._live.clear()
        self._stale = 0
        return items

    def _push(self, item: T, priority: float) -> None:
        """Store ``item`` as the newest entry of its priority class."""
        entry = (priority, self._seq, item)
        self._seq += 1
        self._live[item] = entry
        heapq.heappush(self._heap, entry)

    def _pop(self) -> T:
        """Remove and return the best live item; the queue must not be empty."""
        while True:
            entry = heapq.heappop(self._heap)
            item = entry[2]
            if self._live.get(item) is entry:
                del self._live[item]
                self._maybe_compact()
                return item
            self._stale -= 1

    def _maybe_compact(self) -> None:
        """Rebuild the heap from live entries once over half of it is stale."""
        if self._stale * 2 > len(self._heap):
            self._heap = list(self._live.values())
            heapq.heapify(self._heap)
            self._stale = 0

    def _cancel_get(self, d: Deferred[T]) -> None:
        """Withdraw a waiting :meth:`get` Deferred that is being cancelled."""
        self._waiters.remove(d)
