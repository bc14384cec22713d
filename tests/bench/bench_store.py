"""Stores: items claimed and acked per second, memory against SQLite.

Each store is filled with ``--items`` items (priorities 0-9), then worked the
way a runner does: claim a batch, ack each item with a small record, repeat.
The figure is items finished (one claim and one ack each) per second,
including the final ``flush()``.  ``durability="full"`` pays an fsync per
call, so it works only the first ``--full-items`` of its (equally large)
store; the rate is what matters.  SQLite files live in a temporary directory
on the same disk as ``$TMPDIR``.

Run: ``.venv/bin/python -m tests.bench.bench_store``.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import tempfile
import time
from collections.abc import Callable

from fetchq.store import MemoryStore, NewItem, SQLiteStore, Store
from tests.bench._common import table


def fill(store: Store, n: int) -> float:
    """Add ``n`` items to ``store``, flushed; the seconds it took."""
    new = [
        NewItem(f"https://example.com/{i}", {"url": f"https://example.com/{i}"}, i % 10)
        for i in range(n)
    ]
    gc.collect()
    start = time.perf_counter()
    store.add(new)
    store.flush()
    return time.perf_counter() - start


def work(store: Store, n: int, batch: int) -> float:
    """Claim and ack ``n`` items in batches of ``batch``; the seconds it took."""
    now = 1000.0
    done = 0
    gc.collect()
    start = time.perf_counter()
    while done < n:
        claimed = store.claim(min(batch, n - done), now, 60.0)
        if not claimed:
            break
        for c in claimed:
            store.ack(c.id, "ok", {"url": c.arg["url"], "status": 200}, now)
        done += len(claimed)
        now += 0.01
    store.flush()
    elapsed = time.perf_counter() - start
    if done != n:
        raise RuntimeError(f"only {done} of {n} items were claimed")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--full-items", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=50, help="items per claim()")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="fetchq-bench-")
    n = args.items

    def sqlite(durability: str) -> Callable[[], Store]:
        def make() -> Store:
            path = os.path.join(directory, f"{durability}-{time.monotonic_ns()}.db")
            return SQLiteStore(path, durability=durability)  # type: ignore[arg-type]

        return make

    cases: list[tuple[str, Callable[[], Store], int]] = [
        ("MemoryStore", MemoryStore, n),
        ('SQLiteStore durability="normal"', sqlite("normal"), n),
        ('SQLiteStore durability="full"', sqlite("full"), min(n, args.full_items)),
    ]
    rows = []
    base = None
    try:
        for name, make, worked in cases:
            store = make()
            add_s = fill(store, n)
            work_s = work(store, worked, args.batch)
            store.close()
            rate = worked / work_s
            base = base or rate
            rows.append(
                [
                    name,
                    f"{n / add_s:,.0f}",
                    f"{worked:,}",
                    f"{rate:,.0f}",
                    f"{rate / base:.2f}x",
                    f"{1e6 / rate:.1f}",
                ]
            )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    header = [
        "store",
        "adds/s",
        "items worked",
        "claims+acks/s",
        "vs memory",
        "µs per item",
    ]
    title = f"Claim + ack, {n:,} items in the store, claim batches of {args.batch}"
    print(table(title, header, rows))


if __name__ == "__main__":
    main()
