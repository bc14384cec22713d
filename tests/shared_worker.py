"""A worker process for the SharedLimits tests: a queue attached to shared
limits, running jobs that call the test's counting server.

    python -m tests.shared_worker REDIS_URL NAME COUNT_URL JOBS [--hang | --lead]

Each job GETs ``COUNT_URL?key=K`` (the server counts how many are in flight
at once); keys cycle over ``a``, ``b``, ``c``.  It prints ``grant KEY T``
for each slot granted (T: the Redis server's clock) and ``done N`` at the
end.  With ``--hang`` the jobs never end: it prints ``holding N`` as slots
come, and waits to be killed.  With ``--lead`` it stands for the run's
controller instead (see :func:`lead`).
"""

from __future__ import annotations

import sys
from typing import Any

import treq
from twisted.internet import defer, task

from fetchq import ResizableDispatchQueue
from fetchq.control import AIMD, AdaptiveController
from fetchq.shared import SharedLimits
from fetchq.shared.control import SharedControl
from fetchq.store.redis import RedisStore


async def main(reactor: Any, argv: list[str]) -> None:
    url, name, count_url, jobs = argv[:4]
    hang = "--hang" in argv
    if "--lead" in argv:
        await lead(reactor, url, name)
        return
    granted = 0

    def on_grant(key: Any, server: float) -> None:
        nonlocal granted
        granted += 1
        print(f"grant {key} {server:.3f}", flush=True)
        if hang:
            print(f"holding {granted}", flush=True)

    limits = await SharedLimits.connect(
        url, name, reactor, lease=1.0, poll=0.05, on_grant=on_grant
    )

    async def job(key: str) -> None:
        if hang:
            await defer.Deferred()  # never ends
        response = await treq.get(f"{count_url}?key={key}")
        await response.content()

    queue = ResizableDispatchQueue(
        lambda key: defer.Deferred.fromCoroutine(job(key)), 10, clock=reactor
    )
    limits.attach(queue)
    keys = "abc"
    puts = [queue.put(keys[n % 3], key=keys[n % 3]) for n in range(int(jobs))]
    await defer.gatherResults(puts)
    print(f"done {len(puts)}", flush=True)
    await limits.close()


async def lead(reactor: Any, url: str, name: str) -> None:
    """Stand for the run's controller; print ``leading EPOCH`` once leading,
    then wait to be killed."""
    store = await RedisStore.connect(url, name, reactor)
    queue = ResizableDispatchQueue(lambda n: n, 10, clock=reactor)
    control = SharedControl(AdaptiveController(AIMD()), store, reactor, lease=1.0)
    control.attach(queue)
    while not control.leading:
        await task.deferLater(reactor, 0.02, lambda: None)
    print(f"leading {control.epoch}", flush=True)
    await defer.Deferred()


if __name__ == "__main__":
    task.react(
        lambda reactor: defer.Deferred.fromCoroutine(main(reactor, sys.argv[1:]))
    )
