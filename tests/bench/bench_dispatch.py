"""Dispatch cost per job: fetchq's queue against Twisted's DeferredSemaphore.

Both run the same no-op job function in the same process, one after the
other, best of ``repeats``; the figure that matters is the ratio.

- *already fired*: the function returns ``succeed(None)``; each put() runs to
  completion at once (DeferredSemaphore cannot take a backlog of these: its
  release() recursion overflows the stack, so the backlog case is ours alone).
- *callLater(0)*: the function returns a Deferred the reactor fires on its next
  turn; all jobs are put first, so the backlog starts at N.

Run: ``make bench`` or ``.venv/bin/python -m tests.bench.bench_dispatch``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Generator
from functools import partial
from typing import Any

from twisted.internet import defer, task
from twisted.internet.defer import Deferred, DeferredSemaphore, succeed

from fetchq import ResizableDispatchQueue
from tests.bench._common import best_of, table, timed

WIDTHS = (1, 10, 100)


def noop(arg: object) -> Deferred[None]:
    return succeed(None)


def sem_fired(n: int, width: int) -> float:
    def run() -> None:
        sem = DeferredSemaphore(width)
        for i in range(n):
            sem.run(noop, i)

    return timed(run)


def rdq_fired(n: int, width: int) -> float:
    def run() -> None:
        q = ResizableDispatchQueue(noop, width)
        for i in range(n):
            q.put(i)

    return timed(run)


def rdq_fired_backlog(n: int, width: int) -> float:
    """Put n jobs at width 0, then time dispatching all of them."""
    q = ResizableDispatchQueue(noop, 0)
    for i in range(n):
        q.put(i)
    return timed(lambda: q.setWidth(width))


def later_fn(reactor: Any) -> Callable[[object], Deferred[None]]:
    def later(arg: object) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        reactor.callLater(0, d.callback, None)
        return d

    return later


class Countdown:
    """Fires ``done`` after ``n`` calls: cheaper than gatherResults, whose own
    cost would otherwise be added to both sides and hide the difference."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.done: Deferred[None] = Deferred()

    def __call__(self, result: object) -> None:
        self.left -= 1
        if not self.left:
            self.done.callback(None)


@defer.inlineCallbacks
def sem_later(reactor: Any, n: int, width: int) -> Generator[Any, Any, float]:
    fn = later_fn(reactor)
    count = Countdown(n)
    start = time.perf_counter()
    sem = DeferredSemaphore(width)
    for i in range(n):
        sem.run(fn, i).addCallback(count)
    yield count.done
    return time.perf_counter() - start


@defer.inlineCallbacks
def rdq_later(reactor: Any, n: int, width: int) -> Generator[Any, Any, float]:
    fn = later_fn(reactor)
    count = Countdown(n)
    start = time.perf_counter()
    q = ResizableDispatchQueue(fn, width, clock=reactor)
    for i in range(n):
        q.put(i).addCallback(count)
    yield count.done
    return time.perf_counter() - start


@defer.inlineCallbacks
def best_later(
    reactor: Any, fn: Any, repeats: int, n: int, width: int
) -> Generator[Any, Any, float]:
    import gc

    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        best = min(best, (yield fn(reactor, n, width)))
    return best


def us(seconds: float, n: int) -> str:
    return f"{seconds / n * 1e6:.2f}"


@defer.inlineCallbacks
def main(reactor: Any, argv: list[str]) -> Generator[Any, Any, None]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[50_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    rows = []
    for n in args.jobs:
        for width in WIDTHS:
            sem = best_of(args.repeats, partial(sem_fired, n, width))
            rdq = best_of(args.repeats, partial(rdq_fired, n, width))
            backlog = best_of(args.repeats, partial(rdq_fired_backlog, n, width))
            rows.append(
                [
                    f"{n:,}",
                    str(width),
                    us(sem, n),
                    us(rdq, n),
                    f"{rdq / sem:.2f}",
                    us(backlog, n),
                ]
            )
    print(
        table(
            "Already-fired jobs (µs per job; target ratio ≤ 1.0)",
            [
                "jobs",
                "width",
                "DeferredSemaphore",
                "fetchq",
                "ratio",
                "fetchq from backlog",
            ],
            rows,
        )
    )
    sys.stdout.flush()

    rows = []
    for n in args.jobs:
        for width in WIDTHS:
            sem = yield best_later(reactor, sem_later, args.repeats, n, width)
            rdq = yield best_later(reactor, rdq_later, args.repeats, n, width)
            rows.append(
                [f"{n:,}", str(width), us(sem, n), us(rdq, n), f"{rdq / sem:.2f}"]
            )
    print(
        table(
            "callLater(0)-fired jobs, all queued first "
            "(µs per job; target ratio ≤ 0.8)",
            ["jobs", "width", "DeferredSemaphore", "fetchq", "ratio"],
            rows,
        )
    )


if __name__ == "__main__":
    task.react(main, (sys.argv[1:],))
