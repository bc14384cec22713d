"""fetchq's HTTP path alone, as ``_treq_script.py`` runs treq's: for
``bench_main_job_parts``.

``python tests/bench/_fetcher_script.py URLS_FILE WIDTH HTTP`` fetches each
URL once through one :class:`~fetchq.fetch.Fetcher` (``http`` = ``treq`` or
``lean``, ``pool_size`` WIDTH), at most WIDTH at a time with a
``DeferredSemaphore``, every body read, hashed and counted as a run does
(no queue, no store, no records), and prints one JSON line at the end
(statuses, bytes, errors) for the benchmark to check.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

from _treq_script import drive, report  # run as a file: its folder is on the path


def main(path: str, width: int, http: str) -> None:
    from twisted.internet import reactor
    from twisted.internet.defer import DeferredSemaphore, gatherResults

    from fetchq.fetch import FetchConfig, Fetcher

    with open(path, encoding="utf-8") as f:
        urls = [line.strip() for line in f if line.strip()]
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    size = 0

    async def run() -> None:
        fetcher = Fetcher(FetchConfig(http=http), reactor, pool_size=width)
        semaphore = DeferredSemaphore(width)

        def got(result: Any) -> None:
            nonlocal size
            statuses[result.status] += 1
            size += result.bytes

        def failed(failure: Any) -> None:
            errors[type(failure.value).__name__] += 1

        await gatherResults(
            [
                semaphore.run(fetcher.fetch, url).addCallbacks(got, failed)
                for url in urls
            ]
        )
        await fetcher.close()

    drive(run, errors)
    report(statuses, size, errors)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
