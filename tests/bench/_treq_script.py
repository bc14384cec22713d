"""The baseline of ``bench_main_job``: treq + ``DeferredSemaphore`` as a script.

``python tests/bench/_treq_script.py URLS_FILE WIDTH`` reads one URL per line
and fetches each once, at most WIDTH at a time, through one ``HTTPClient``
over one ``HTTPConnectionPool(persistent=True)`` with
``maxPersistentPerHost=WIDTH`` (treq's default pool keeps only 2 idle
connections per host, which would make the baseline slower than it can be),
reading every body with ``treq.content``.  It writes nothing but one JSON
line at the end (statuses, bytes, errors), which the benchmark checks.

It is run as a file, not with ``-m``, so its start-up is a plain script's:
Python, Twisted and treq, nothing of fetchq or of the test package.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Any


def main(path: str, width: int) -> None:
    import treq
    from treq.client import HTTPClient
    from twisted.internet import reactor
    from twisted.internet.defer import DeferredSemaphore, gatherResults
    from twisted.web.client import Agent, HTTPConnectionPool

    with open(path, encoding="utf-8") as f:
        urls = [line.strip() for line in f if line.strip()]
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    size = 0

    async def run() -> None:
        nonlocal size
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = width
        client = HTTPClient(Agent(reactor, pool=pool))
        semaphore = DeferredSemaphore(width)

        def fetch(url: str) -> Any:
            def body(response: Any) -> Any:
                statuses[response.code] += 1
                return treq.content(response)

            return client.get(url).addCallback(body)

        def got(body: bytes) -> None:
            nonlocal size
            size += len(body)

        def failed(failure: Any) -> None:
            errors[type(failure.value).__name__] += 1

        await gatherResults(
            [semaphore.run(fetch, url).addCallbacks(got, failed) for url in urls]
        )
        await pool.closeCachedConnections()

    drive(run, errors)
    report(statuses, size, errors)


def drive(run: Any, errors: Counter[str]) -> None:
    """Run the coroutine function ``run`` on the reactor until it ends (its
    failure counted in ``errors``)."""
    from twisted.internet import defer, reactor

    def go() -> None:
        d = defer.ensureDeferred(run())
        d.addErrback(lambda f: errors.update([f.getErrorMessage()]))
        d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

    reactor.callWhenRunning(go)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


def report(statuses: Counter[int], size: int, errors: Counter[str]) -> None:
    """The one JSON line the benchmark checks."""
    print(
        json.dumps(
            {"statuses": {str(k): v for k, v in statuses.items()}, "bytes": size}
            | {"errors": dict(errors)}
        ),
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
