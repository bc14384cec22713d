"""The seed's story, run for real: queue SMS jobs, steer the queue while it
works, stop it cleanly, save what was not sent, and send it after a "restart".

Run with ``make demo`` (or ``python examples/queue_demo.py``).  It takes about
six seconds of wall-clock time on the real reactor; the fake SMS provider
answers in 20-120 ms and fails now and then.
"""

from __future__ import annotations

import os
import pickle
import random
import sys
import tempfile
from collections import Counter
from collections.abc import Generator
from typing import Any

from twisted.internet import defer, task

from fetchq import (
    Job,
    JobCancelled,
    JobFailed,
    JobFinished,
    ResizableDispatchQueue,
    WidthChanged,
)

JOBS = 300


class FakeSMSProvider:
    """Sends an SMS in 20-120 ms; one message in 40 fails."""

    def __init__(self, reactor: Any, rng: random.Random) -> None:
        self.reactor = reactor
        self.rng = rng
        self.sent = 0

    def send_sms(self, job: tuple[int, str]) -> defer.Deferred[str]:
        number, _message = job
        delay = self.rng.uniform(0.02, 0.12)
        if self.rng.random() < 1 / 40:
            return task.deferLater(self.reactor, delay, self._fail, number)
        return task.deferLater(self.reactor, delay, self._ok, number)

    def _ok(self, number: int) -> str:
        self.sent += 1
        return f"sms-id-{number}"

    def _fail(self, number: int) -> str:
        raise ConnectionError(f"provider refused {number}")


class Monitor:
    """An observer: counts outcomes, and prints width changes as they happen."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.start = reactor.seconds()
        self.outcomes: Counter[str] = Counter()

    def say(self, text: str) -> None:
        print(f"[{self.reactor.seconds() - self.start:5.2f}s] {text}", flush=True)

    def __call__(self, event: object) -> None:
        if isinstance(event, JobFinished):
            self.outcomes[event.outcome.value] += 1
        elif isinstance(event, WidthChanged):
            self.say(f"width {event.old} -> {event.new}")


def sleep(reactor: Any, seconds: float) -> defer.Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


def status(q: ResizableDispatchQueue, monitor: Monitor) -> None:
    underway, pending = q.size()
    done = ", ".join(f"{k} {v}" for k, v in sorted(monitor.outcomes.items()))
    monitor.say(f"underway {underway:2d}, pending {pending:3d} | {done or '-'}")


@defer.inlineCallbacks
def main(reactor: Any) -> Generator[defer.Deferred[Any], Any, None]:
    rng = random.Random(2009)
    provider = FakeSMSProvider(reactor, rng)
    monitor = Monitor(reactor)

    # Create a queue that will allow 5 simultaneous underway jobs.
    rdq = ResizableDispatchQueue(provider.send_sms, 5, clock=reactor)
    rdq.subscribe(monitor)
    results: list[defer.Deferred[Job]] = []
    for i in range(JOBS):
        d = rdq.put((2127390000 + i, f"Hello #{i}"), priority=rng.randrange(10))
        d.addErrback(lambda f: f.trap(JobFailed, JobCancelled))
        results.append(d)
    monitor.say(f"queued {JOBS} messages at width {rdq.width}")

    jobs = rdq.pending()
    victim, urgent = jobs[-1], jobs[-2]
    victim.cancel()
    monitor.say(f"cancelled {victim.arg}: now {victim.state.value}")
    rdq.reprioritize(urgent, -1)
    monitor.say(f"reprioritised {urgent.arg} to -1: next up is {rdq.pending()[0].arg}")

    yield sleep(reactor, 0.5)
    status(rdq, monitor)
    rdq.width = 20  # Widen the outgoing pipeline.
    yield sleep(reactor, 0.5)
    status(rdq, monitor)
    rdq.width = 7  # We're dispatching too fast: turn it down a little.
    yield sleep(reactor, 0.5)
    status(rdq, monitor)

    monitor.say("pausing: waiting for underway messages to finish")
    yield rdq.pause()
    status(rdq, monitor)
    yield sleep(reactor, 0.5)
    monitor.say("resuming with width 8, at most 40 launches a second")
    rdq.set_rate(40)
    rdq.resume(8)
    yield sleep(reactor, 1.0)
    status(rdq, monitor)

    monitor.say("stopping: waiting for underway messages, saving the rest")
    unsent = yield rdq.stop()
    path = os.path.join(tempfile.mkdtemp(prefix="fetchq-demo-"), "unsent.pickle")
    with open(path, "wb") as f:
        pickle.dump(unsent, f)
    monitor.say(f"saved {len(unsent)} unsent jobs to {path}")
    status(rdq, monitor)

    monitor.say('"restart": a new queue re-queues the saved jobs at width 30')
    with open(path, "rb") as f:
        saved: list[Job] = pickle.load(f)
    again = ResizableDispatchQueue(provider.send_sms, 30, clock=reactor)
    again.subscribe(monitor)
    finals = []
    for job in saved:
        d = again.requeue(job)
        d.addErrback(lambda f: f.trap(JobFailed, JobCancelled))
        finals.append(d)
    yield defer.DeferredList(finals)
    status(again, monitor)
    monitor.say(
        f"done: {provider.sent} sent of {JOBS} queued "
        f"(1 cancelled, {monitor.outcomes['failed']} failed by the provider)"
    )
    if provider.sent + monitor.outcomes["failed"] + 1 != JOBS:
        print("error: some jobs were lost", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    task.react(main)
