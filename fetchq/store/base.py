"""The store contract: where work items live between claims, runs and crashes.

A *store* holds *items*: a stable string id chosen by the caller (an input
line number, a given id), a JSON-serialisable argument, a priority (lower
first) and an optional lane key.  Each item is in one of three states::

    pending ──claim()──► claimed ──ack()──► done (for good, with its record)
       ▲                    │
       └──── requeue() ─────┤  (a retry later, or work handed back)
             release()  ────┤  (every claimed item at once)
             lease expiry ──┘  (claim() takes it again: at-least-once)

``ack()`` may also finish a pending item directly (bad input recorded as
failed without ever being claimed).  A done item does not move again: a
second ``ack()`` is refused and ``requeue()`` leaves it alone, so every id
ends with exactly one record.  Only ``reopen()`` (a user asking for failed
items to be run again) takes done items back to pending, dropping their
records.

Stores never read a clock: every operation that depends on time takes
``now``, a float from the caller's clock (``reactor.seconds()``, a
``task.Clock``), and leases and retry times are on that same clock.

Stores sit beside the queue, not inside it: the core queue knows nothing of
them, and a runner moves work from a store into a queue (``claim``) and
results back (``ack``/``requeue``).  A store that cannot open its file raises
:class:`StoreError`; misuse (an unknown id, a closed store, a bad argument)
raises the builtin that fits, at the call.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Protocol, TypeAlias, runtime_checkable

import attrs
from twisted.internet.defer import Deferred, succeed

from fetchq._validate import check_priority
from fetchq.errors import FetchqError

__all__ = [
    "Claimed",
    "Counts",
    "Item",
    "ItemState",
    "NewItem",
    "Record",
    "Store",
    "StoreError",
    "as_deferred",
    "when",
]


JSONRecord: TypeAlias = dict[str, Any] | list[dict[str, Any]] | None
"""A finished item's output record: one JSON object, several (one output
line each, such as an API page's items), or None."""


class StoreError(FetchqError):
    """A store's backing file cannot be used: not a database, not a fetchq
    state file, written by a newer fetchq, or in use by another process.

    The message names the file and what is wrong with it, in one line.
    """


class ItemState(enum.Enum):
    """Where an item is, as :meth:`Store.get` reports it."""

    PENDING = "pending"
    """Waiting to be claimed (possibly not before ``not_before``)."""
    CLAIMED = "claimed"
    """Handed out by ``claim()``; its lease runs until ``lease_until``."""
    DONE = "done"
    """Acked: finished for good, with its outcome and record."""


def _check_id(instance: object, attribute: object, value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"item id must be a str, not {value!r}")


def _check_key(instance: object, attribute: object, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"item key must be a str or None, not {value!r}")


def _check_priority(instance: object, attribute: object, value: Any) -> None:
    check_priority(value)


def _check_outcome(instance: object, attribute: object, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"outcome must be a non-empty str or None, not {value!r}")


@attrs.frozen
class NewItem:
    """An item to :meth:`Store.add`.

    Attributes:
        id: the caller's stable identity for the item; adding an id the store
            already knows (in any state) does nothing, so re-reading an input
            after a restart neither loses nor duplicates work.
        arg: the job argument; durable stores keep it as JSON, so it must
            serialise to JSON (and comes back as JSON types: lists, not tuples).
        priority: an int or float; lower is claimed first, then insertion
            order.
        key: the lane key (a host name, say), or None.
        outcome: None for a pending item; else the item is added done with
            this outcome and ``record``, as if acked at once.
        record: the record of an item added done.

    Raises:
        TypeError: for an id that is not a str, a key that is neither a str
            nor None, or a priority that is not an int or float.
        ValueError: for a NaN priority or an empty outcome.
    """

    id: str = attrs.field(validator=_check_id)
    arg: Any
    priority: int | float = attrs.field(default=0, validator=_check_priority)
    key: str | None = attrs.field(default=None, validator=_check_key)
    outcome: str | None = attrs.field(default=None, validator=_check_outcome)
    record: JSONRecord = None


@attrs.frozen
class Claimed:
    """An item handed out by :meth:`Store.claim`.

    Attributes:
        id: the item's id.
        arg: its argument.
        priority: its priority.
        key: its lane key, or None.
        attempts: how many times it has been claimed, this time included
            (1 on the first claim; more after a retry or a crash).
    """

    id: str
    arg: Any
    priority: int | float
    key: str | None
    attempts: int


@attrs.frozen
class Record:
    """A finished item's record, as :meth:`Store.records` lists them.

    Attributes:
        seq: its position in ack order, from 1, increasing (an item
            reopened and acked again leaves a gap where its first record
            was).
        id: the item's id.
        outcome: the outcome given to ``ack()`` (``"ok"``, ``"failed"``, ...).
        record: the record given to ``ack()`` (the output line), or None.
    """

    seq: int
    id: str
    outcome: str
    record: JSONRecord


def _frozen_counts(done: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(sorted(done.items())))


def _repr_done(done: Mapping[str, int]) -> str:
    return repr(dict(done))


@attrs.frozen
class Counts:
    """How many items a store holds, by state.

    Attributes:
        pending: items waiting to be claimed (including those waiting for
            their ``not_before``).
        claimed: items claimed and not yet acked, requeued or released
            (including those whose lease has expired but that no ``claim()``
            has taken back yet).
        done: finished items by outcome, e.g. ``{"ok": 10, "failed": 2}``;
            outcomes with no items are absent.
    """

    pending: int
    claimed: int
    done: Mapping[str, int] = attrs.field(
        factory=dict, converter=_frozen_counts, hash=False, repr=_repr_done
    )

    @property
    def finished(self) -> int:
        """How many items are done, whatever their outcome."""
        return sum(self.done.values())

    @property
    def total(self) -> int:
        """How many items the store holds: pending + claimed + finished."""
        return self.pending + self.claimed + self.finished


@attrs.frozen
class Item:
    """Everything a store knows of one item, as :meth:`Store.get` returns it.

    Attributes:
        id: the item's id.
        arg: its argument.
        priority: its priority.
        key: its lane key, or None.
        state: an :class:`ItemState`.
        attempts: how many times it has been claimed.
        not_before: while pending, the time given to the last ``requeue()``
            (it is not claimed before then), else None.
        lease_until: while claimed, when its lease expires, else None.
        outcome: once done, the outcome given to ``ack()``, else None.
        record: once done, the record given to ``ack()`` (may be None).
        record_seq: once done, its :attr:`Record.seq`, else None.
        done_at: once done, the ``now`` given to ``ack()``, else None.
    """

    id: str
    arg: Any
    priority: int | float
    key: str | None
    state: ItemState
    attempts: int
    not_before: float | None
    lease_until: float | None
    outcome: str | None
    record: JSONRecord
    record_seq: int | None
    done_at: float | None


def as_deferred(result: Any) -> Deferred[Any]:
    """A store method's result as a Deferred (already fired for a local
    store's value), for code that awaits it whatever the store."""
    if isinstance(result, Deferred):
        return result
    return succeed(result)


def when(result: Any, then: Callable[[Any], Any]) -> Any:
    """Call ``then`` with a store method's result, now if it is a value, or
    once it fires if it is a Deferred (a store over the network); returns
    what ``then`` returns, or a Deferred of it.

    A runner written with ``when`` works with every store, and pays nothing
    for Deferreds with a local one.
    """
    if isinstance(result, Deferred):
        return result.addCallback(then)
    return then(result)


@runtime_checkable
class Store(Protocol):
    """Where items live: the seam between a runner and its durable state.

    :class:`~fetchq.store.memory.MemoryStore` (the default for programmatic
    use) and :class:`~fetchq.store.sqlite.SQLiteStore` (durable, one machine)
    return results at once; :class:`~fetchq.store.redis.RedisStore` (many
    processes on many machines) returns a ``Deferred`` from each method that
    talks to the server.  A runner that supports both calls :func:`when`.

    Durable stores batch their writes: an operation is durable once
    :meth:`flush` has returned (or fired), or the store committed a batch on
    its own.  Everything :meth:`records` returns after a :meth:`flush` is
    durable.
    """

    def add(
        self, items: Iterable[NewItem], meta: Mapping[str, Any] | None = None
    ) -> int:
        """Insert ``items`` as pending, in order; ids already known (in any
        state, or earlier in ``items``) are skipped.  An item with an
        ``outcome`` is added done, with its ``record`` (bad input, recorded
        without ever being claimed).

        Args:
            items: the items.
            meta: values to :meth:`meta_set` in the same write: a durable
                store commits the items and these together or not at all
                (an input's checkpoint with the rows read up to it).

        Returns:
            How many items were new.
        """
        ...

    def known(self, ids: Iterable[str]) -> set[str]:
        """Which of ``ids`` the store has (in any state)."""
        ...

    def claim(
        self,
        limit: int,
        now: float,
        lease: float,
        *,
        per_lane: int | None = None,
        skip: Collection[str | None] = (),
    ) -> list[Claimed]:
        """Take up to ``limit`` available items.

        Available means pending with ``not_before`` unset or ``<= now``, or
        claimed with a lease that expired (``lease_until <= now``): work held
        by a worker that died is handed out again (at-least-once).  Each
        item taken becomes claimed until ``now + lease`` and its
        ``attempts`` goes up by one.

        Without ``per_lane``, items come lowest priority first, then in
        insertion order, whatever their lane.  With ``per_lane``, items come
        *by lane* (the item's key; None is a lane too): lanes are served in
        turn, each lane's items lowest priority first then in insertion
        order, at most ``per_lane`` from one lane per call, ``limit`` shared
        out evenly among the lanes found; lanes in ``skip`` are passed over.
        Successive calls go on round the lanes where the last one stopped,
        so every lane with available items is served before any is served
        twice.  That is what keeps an input sorted by host from feeding a
        runner one host at a time.

        Raises:
            ValueError: for a negative ``limit``, a ``per_lane`` below 1, a
                ``lease`` that is not positive, or a NaN ``now``.
        """
        ...

    def ack(
        self,
        item_id: str,
        outcome: str,
        record: JSONRecord,
        now: float,
    ) -> bool:
        """Finish an item for good with ``outcome`` and ``record``.

        Works on a pending or claimed item.  Returns True when it finished
        the item, False if the item was already done (its first record is
        kept).

        Raises:
            KeyError: for an unknown id.
            ValueError: for an empty outcome.
            TypeError: for a record that is not a dict or None.
        """
        ...

    def requeue(self, item_id: str, not_before: float | None, now: float) -> bool:
        """Put a pending or claimed item back to pending, to be claimed again
        once ``now >= not_before`` (at once if ``not_before`` is None).

        Returns True, or False (and does nothing) if the item is done.

        Raises:
            KeyError: for an unknown id.
        """
        ...

    def reopen(self, outcome: str, now: float) -> int:
        """Put every item done with ``outcome`` back to pending, as new: its
        record is dropped and its ``attempts`` start again from 0 (``fetchq
        run --retry-failed`` reopens ``"failed"``).  Returns how many."""
        ...

    def reset(self) -> Deferred[None] | None:
        """Forget everything: items, records and meta (``fetchq run
        --fresh``)."""
        ...

    def release(self, now: float) -> int:
        """Put every claimed item back to pending, available at once.

        For a clean shutdown, or a restart after a crash when the caller
        knows no other worker holds leases.  Returns how many moved.
        """
        ...

    def counts(self) -> Counts:
        """How many items are pending, claimed and done (by outcome)."""
        ...

    def records(self, after_seq: int = 0, limit: int = 1000) -> list[Record]:
        """Up to ``limit`` records of finished items with ``seq > after_seq``,
        in ack order, so a runner can stream (or rewrite) its output."""
        ...

    def get(self, item_id: str) -> Item | None:
        """Everything the store knows of one item, or None if unknown."""
        ...

    def meta_get(self, key: str, default: Any = None) -> Any:
        """The value :meth:`meta_set` stored under ``key``, else ``default``."""
        ...

    def meta_set(self, key: str, value: Any) -> Deferred[None] | None:
        """Keep a small JSON-serialisable value under ``key`` (a recipe hash,
        the input offset reached), written with the same batch as the
        operations around it."""
        ...

    def flush(self) -> Deferred[None] | None:
        """Make every operation so far durable (commit now)."""
        ...

    def close(self) -> Deferred[None] | None:
        """Flush, then release the store's resources.  Closing twice is
        harmless; any other call after closing raises ``RuntimeError``."""
        ...
