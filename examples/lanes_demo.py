"""Lanes: a polite crawl of three fake hosts through one queue.

Each host is a lane (``key=host``) limited to 2 requests at once and 20 a
second; the queue as a whole runs 6 at once.  ``slow.example`` answers slowly,
and ``busy.example`` throttles us (like an HTTP 429 with Retry-After) for its
first few requests, which holds its lane for a moment and retries the job,
while the other hosts carry on.

Run: ``python examples/lanes_demo.py`` (about two seconds).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator
from typing import Any

from twisted.internet import defer, task

from fetchq import JobFinished, ResizableDispatchQueue, Throttled

LATENCY = {"fast.example": 0.01, "slow.example": 0.15, "busy.example": 0.02}


class FakeWeb:
    """Answers "requests" after each host's latency; busy.example says 429
    to its first three requests."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.refusals = 3

    def fetch(self, url: tuple[str, str]) -> defer.Deferred[int]:
        host, _path = url
        if host == "busy.example" and self.refusals:
            self.refusals -= 1
            return task.deferLater(self.reactor, 0.01, self.throttle)
        return task.deferLater(self.reactor, LATENCY[host], lambda: 200)

    def throttle(self) -> int:
        raise Throttled(0.3, reason="429 Too Many Requests")


@defer.inlineCallbacks
def main(reactor: Any) -> Generator[defer.Deferred[Any], Any, None]:
    web = FakeWeb(reactor)
    q = ResizableDispatchQueue(web.fetch, 6, lane_width=2, lane_rate=20, clock=reactor)
    start = reactor.seconds()
    outcomes: Counter[tuple[str, str]] = Counter()
    finished_at: dict[str, float] = {}

    def observe(event: object) -> None:
        if isinstance(event, JobFinished):
            host = event.job.key
            outcomes[host, event.outcome.value] += 1
            finished_at[host] = event.time - start
            if event.outcome.value == "throttled":
                print(f"[{event.time - start:4.2f}s] {host} throttled us: lane held")

    q.subscribe(observe)
    ds = [q.put((host, f"/page/{i}"), key=host) for i in range(12) for host in LATENCY]
    print(f"queued {len(ds)} requests for {len(LATENCY)} hosts")
    yield defer.gatherResults(ds)
    for host in LATENCY:
        ok = outcomes[host, "ok"]
        throttled = outcomes[host, "throttled"]
        print(
            f"{host:13s} ok {ok:2d}  throttled {throttled}  "
            f"last done at {finished_at[host]:4.2f}s"
        )
    print(f"lanes right after the run: {len(q.lanes())} (rate buckets refilling)")
    yield task.deferLater(reactor, 0.2, lambda: None)
    print(f"lanes 0.2 s later: {len(q.lanes())} (idle lanes are dropped)")


if __name__ == "__main__":
    task.react(main)
