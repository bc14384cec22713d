"""A million pending jobs: bytes each, and the cost of put, cancel,
reprioritize and a pending() snapshot, against a plain heap of tuples.

The baseline is what any heap-based priority queue must hold and do: a
``heapq`` of ``(priority, seq, arg)`` tuples; a snapshot in dispatch order is
``sorted(heap)`` and a raw copy is ``list(heap)``.  Job arguments are made
before measuring, so both sides count only what the queue itself holds.

Run: ``make bench`` or ``.venv/bin/python -m tests.bench.bench_memory``.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import itertools
import random
import time
import tracemalloc

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from fetchq import ResizableDispatchQueue
from tests.bench._common import table


class Holder:
    """Stands for a Job in the allocation floor: a slotted object."""

    __slots__ = ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l")


def traced_bytes(build: object) -> int:
    """Bytes still allocated after calling ``build`` (kept alive meanwhile)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()  # type: ignore[operator]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return after - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    n = args.jobs
    jobargs = list(range(n))  # the callers' data: not the queue's cost
    priorities = [i % 10 for i in range(n)]

    def plain_heap() -> list[tuple[int, int, int]]:
        heap: list[tuple[int, int, int]] = []
        seq = itertools.count()
        for arg, prio in zip(jobargs, priorities, strict=True):
            heapq.heappush(heap, (prio, next(seq), arg))
        return heap

    def fill(q: ResizableDispatchQueue) -> list[object]:
        return [q.put(arg, prio) for arg, prio in zip(jobargs, priorities, strict=True)]

    def queue_with_deferreds() -> tuple[ResizableDispatchQueue, list[object]]:
        q = ResizableDispatchQueue(succeed, 0, clock=Clock())
        return q, fill(q)

    def queue_alone() -> ResizableDispatchQueue:
        q = ResizableDispatchQueue(succeed, 0, clock=Clock())
        for arg, prio in zip(jobargs, priorities, strict=True):
            q.put(arg, prio)
        return q

    heap_bytes = traced_bytes(plain_heap) / n
    queue_bytes = traced_bytes(queue_alone) / n
    print(
        table(
            f"Memory per pending job ({n:,} pending; target ≤ 400 B)",
            ["structure", "bytes per job"],
            [
                ["plain heap of (priority, seq, arg) tuples", f"{heap_bytes:.0f}"],
                ["fetchq queue (Job + Deferred + heap entry)", f"{queue_bytes:.0f}"],
            ],
        )
    )

    # Timings, without tracemalloc.
    gc.collect()
    start = time.perf_counter()
    heap = plain_heap()
    heap_put = (time.perf_counter() - start) / n
    q = ResizableDispatchQueue(succeed, 0, clock=Clock())
    gc.collect()
    start = time.perf_counter()
    deferreds = fill(q)
    put = (time.perf_counter() - start) / n
    # The same fill with CPython's cyclic GC paused, and the bare cost of
    # allocating what a pending job must hold (a small object, a Deferred and
    # a heap tuple): the GC's scans of a million live objects dominate put().
    q2 = ResizableDispatchQueue(succeed, 0, clock=Clock())
    gc.collect()
    gc.disable()
    start = time.perf_counter()
    kept = fill(q2)
    put_nogc = (time.perf_counter() - start) / n
    gc.enable()
    del q2, kept
    gc.collect()
    start = time.perf_counter()
    kept = [
        (p, a, Holder(), Deferred()) for a, p in zip(jobargs, priorities, strict=True)
    ]
    floor = (time.perf_counter() - start) / n
    del kept

    def best(fn: object, repeats: int = 3) -> float:
        times = []
        for _ in range(repeats):
            gc.collect()
            start = time.perf_counter()
            fn()  # type: ignore[operator]
            times.append(time.perf_counter() - start)
        return min(times)

    for d in deferreds:  # callers that cancel handle the cancellation
        d.addErrback(lambda f: None)  # type: ignore[attr-defined]
    rng = random.Random(1)
    rounds = 3
    victims = rng.sample(q.pending(), 2 * rounds * args.samples)

    def per_op(op: object, jobs: list[object]) -> float:
        gc.collect()  # don't charge earlier garbage-collection debt to these
        start = time.perf_counter()
        for job in jobs:
            op(job)  # type: ignore[operator]
        return (time.perf_counter() - start) / len(jobs)

    chunks = [victims[i :: 2 * rounds] for i in range(2 * rounds)]
    reprio = min(per_op(lambda j: q.reprioritize(j, -1), c) for c in chunks[:rounds])
    cancel = min(per_op(lambda j: j.cancel(), c) for c in chunks[rounds:])
    clean = best(q.pending)  # snapshot with stale entries present: filtered path

    sorted_copy = best(lambda: sorted(heap))
    raw_copy = best(lambda: list(heap))
    snapshot = clean
    us = 1e6
    print(
        table(
            f"Operations at {n:,} pending (µs; best of 3 for snapshots)",
            ["operation", "plain heap", "fetchq", "ratio", "target"],
            [
                [
                    "put, per job",
                    f"{heap_put * us:.2f}",
                    f"{put * us:.2f}",
                    "",
                    "≤ 3 µs",
                ],
                ["put, per job, cyclic GC paused", "", f"{put_nogc * us:.2f}", "", ""],
                [
                    "allocation floor: object + Deferred + tuple",
                    "",
                    f"{floor * us:.2f}",
                    "",
                    "",
                ],
                ["reprioritize one job", "", f"{reprio * us:.2f}", "", "≤ 10 µs"],
                ["cancel one job", "", f"{cancel * us:.2f}", "", "≤ 10 µs"],
                [
                    "pending() snapshot vs sorted(heap)",
                    f"{sorted_copy * us:,.0f}",
                    f"{snapshot * us:,.0f}",
                    f"{snapshot / sorted_copy:.2f}",
                    "≤ 2x",
                ],
                [
                    "pending() snapshot vs list(heap) (unordered)",
                    f"{raw_copy * us:,.0f}",
                    f"{snapshot * us:,.0f}",
                    f"{snapshot / raw_copy:.1f}",
                    "(for reference)",
                ],
            ],
        )
    )


if __name__ == "__main__":
    main()
