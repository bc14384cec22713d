"""Stores: where work items live between claims, runs and crashes.

:class:`MemoryStore` is the default for programmatic use; :class:`SQLiteStore`
keeps a run's state in a SQLite file that survives ``kill -9``.  Both
implement the :class:`Store` protocol (see :mod:`fetchq.store.base`).  The
core queue never imports this package: a runner connects a store to a queue.

A runner's life with a store, in outline::

    store = SQLiteStore("run.state")            # resumes if the file exists
    store.release(now)                          # nobody else holds leases
    store.add(NewItem(str(n), url) for n, url in enumerate(lines))
    for c in store.claim(100, now, lease=300):  # feed these to the queue
        ...
    store.ack(c.id, "ok", {"url": c.arg, "status": 200}, now)  # on success
    store.requeue(c.id, now + 30, now)          # a retry later
    store.flush()                               # on a timer, e.g. every 0.5 s
    for r in store.records(written):            # then write output that is
        ...                                     # durable, exactly once
    store.close()

Output written only from :meth:`Store.records` after a :meth:`Store.flush`
never holds a record that a crash could take back, so after any crash and
re-run every item ends with exactly one output line.
"""

from fetchq.store.base import (
    Claimed,
    Counts,
    Item,
    ItemState,
    NewItem,
    Record,
    Store,
    StoreError,
    as_deferred,
    when,
)
from fetchq.store.memory import MemoryStore
from fetchq.store.sqlite import SQLiteStore

__all__ = [
    "Claimed",
    "Counts",
    "Item",
    "ItemState",
    "MemoryStore",
    "NewItem",
    "Record",
    "SQLiteStore",
    "Store",
    "StoreError",
    "as_deferred",
    "when",
]
