"""Where the main job's time goes, per request (issue 13, section 4).

``bench_main_job`` times ``fetchq run`` whole against a treq script; this
splits fetchq's CPU per request into parts that can be timed alone, each the
best of ``--repeats``:

- *start-up*: CPU (user + system, ``wait4``) of ``fetchq run`` on a one-URL
  input minus that of the treq script on the same URL (Python, Twisted and
  treq are paid by both), spread over ``--pages`` requests;
- *URL check*: the per-row host key and the fetcher's check that the URL
  goes on the wire as it is (``checked_host_key`` and ``is_quick_uri``) on
  a URL of the benchmark's shape;
- *store*: the durable SQLite state as ``Run`` drives it, per item: ``add``
  in chunks, ``claim`` 100 at a time, one ``ack`` with a fetch record each,
  ``flush`` every 500 acks, ``records`` read back for the output;
- *record encoding*: ``FetchKind``-shaped record built, and the output line
  written (``output_lines``);
- *HTTP path*: fetchq's :class:`~fetchq.fetch.Fetcher` alone
  (``_fetcher_script.py``: the URLs through ``Fetcher.fetch`` with the
  run's ``fetch.http``, ``--http``, at most ``--width`` at a time, every
  body read and hashed, no queue, store nor records), its start-up taken
  off; beside it, for reference, the treq script's CPU per request (treq
  and twisted.web's ``Agent`` with treq's URL parse and cookie handling,
  start-up off).

What is left of ``fetchq run``'s CPU per request once these are taken off is
the queue, the run's pump, Deferred plumbing, events and progress.

Run: ``.venv/bin/python -m tests.bench.bench_main_job_parts`` (about half a
minute).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.bench._common import best_of, table
from tests.bench.bench_fetch import BODY_SIZE
from tests.bench.bench_main_job import compile_fetchq, run_fetchq, run_treq

FETCHER_SCRIPT = Path(__file__).resolve().with_name("_fetcher_script.py")


def per_item(repeats: int, n: int, run: Callable[[int], float]) -> float:
    """Best-of microseconds per item of ``run(n)`` (which returns seconds)."""
    return best_of(repeats, lambda: run(n)) / n * 1e6


def url_check(n: int) -> float:
    from fetchq.http.urls import checked_host_key, is_quick_uri

    urls = [f"http://127.0.0.1:8080/page/{i}" for i in range(n)]
    start = time.process_time()
    for url in urls:
        checked_host_key(url)
        is_quick_uri(url)
    return time.process_time() - start


def record(i: int) -> dict[str, object]:
    return {
        "id": str(i),
        "url": f"http://127.0.0.1:8080/page/{i}",
        "outcome": "ok",
        "attempts": 1,
        "elapsed": 0.012345,
        "final_url": f"http://127.0.0.1:8080/page/{i}",
        "status": 200,
        "bytes": BODY_SIZE,
        "content_type": "text/html",
        "sha256": "0" * 64,
    }


def store(n: int) -> float:
    from fetchq.store import NewItem, SQLiteStore

    directory = Path(tempfile.mkdtemp(prefix="fetchq-bench-parts-"))
    try:
        s = SQLiteStore(directory / "state.sqlite")
        now = 1000.0
        start = time.process_time()
        for first in range(0, n, 1000):
            s.add(
                NewItem(str(i), {"url": f"http://127.0.0.1:8080/page/{i}"}, key="h")
                for i in range(first, min(n, first + 1000))
            )
        done = 0
        seq = 0
        while claimed := s.claim(100, now, 3600.0, per_lane=100):
            for c in claimed:
                now += 0.0001
                s.ack(c.id, "ok", record(int(c.id)), now)
                done += 1
                if done % 500 == 0:
                    s.flush()
                    while batch := s.records(seq, 5000):
                        seq = batch[-1].seq
        s.flush()
        while batch := s.records(seq, 5000):
            seq = batch[-1].seq
        seconds = time.process_time() - start
        s.close()
        assert seq == n, (seq, n)
        return seconds
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def encoding(n: int) -> float:
    from fetchq.output import output_lines
    from fetchq.store import Record

    start = time.process_time()
    for i in range(n):
        output_lines([Record(i + 1, str(i), "ok", record(i))])
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=10_000, help="URLs (distinct)")
    parser.add_argument("--width", type=int, default=50, help="requests at once")
    parser.add_argument("--repeats", type=int, default=3, help="best of")
    parser.add_argument(
        "--http", choices=["treq", "lean"], default="treq", help="fetch.http"
    )
    args = parser.parse_args()

    from tests.bench._fetch_server import serve

    compile_fetchq()
    n = args.pages
    rows: list[list[str]] = []
    workdir = Path(tempfile.mkdtemp(prefix="fetchq-bench-parts-"))
    load = os.getloadavg()[0]
    try:
        with serve(n, "nginx") as server:
            urls = [f"{server.base}/page/{i}" for i in range(n)]

            def cpu(
                run: Callable[[list[str]], dict[str, float]], some: list[str]
            ) -> float:
                return min(run(some)["cpu"] for _ in range(args.repeats))

            def fetchq(some: list[str]) -> dict[str, float]:
                return run_fetchq(some, args.width, workdir, args.http)

            def treq(some: list[str]) -> dict[str, float]:
                return run_treq(some, args.width, workdir)

            def fetcher(some: list[str]) -> dict[str, float]:
                extra = (args.http,)
                return run_treq(some, args.width, workdir, FETCHER_SCRIPT, extra)

            fetchq_one, treq_one = cpu(fetchq, urls[:1]), cpu(treq, urls[:1])
            fetchq_all, treq_all = cpu(fetchq, urls), cpu(treq, urls)
            fetcher_one, fetcher_all = cpu(fetcher, urls[:1]), cpu(fetcher, urls)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    def us(seconds: float) -> float:
        return seconds / n * 1e6

    parts = {
        "start-up (fetchq's imports, recipe, state file, beyond the treq script's)": us(
            fetchq_one - treq_one
        ),
        "URL check (checked_host_key + is_quick_uri)": per_item(
            args.repeats, n, url_check
        ),
        "store (SQLite add, claim, ack, flush, records)": per_item(
            args.repeats, n, store
        ),
        "record encoding (output line)": per_item(args.repeats, n, encoding),
        f"HTTP path (Fetcher alone, http: {args.http}, start-up off)": us(
            fetcher_all - fetcher_one
        ),
    }
    total = us(fetchq_all)
    rest = total - sum(parts.values())
    for name, value in parts.items():
        rows.append([name, f"{value:.0f}"])
    rest_name = "the rest: queue, run pump, Deferreds, events, progress"
    rows.append([rest_name, f"{rest:.0f}"])
    rows.append(
        [
            f"**fetchq run, whole, http: {args.http} (CPU per request)**",
            f"**{total:.0f}**",
        ]
    )
    rows.append(["treq script, whole (CPU per request)", f"{us(treq_all):.0f}"])
    rows.append(
        [
            "(treq/Agent: the treq script, start-up off)",
            f"{us(treq_all - treq_one):.0f}",
        ]
    )
    print(
        table(
            f"CPU µs per request of fetchq run, {n:,} URLs of {BODY_SIZE} bytes "
            f"from a local nginx, width {args.width}, best of {args.repeats} "
            f"(load avg {load:.2f} at start, {os.getloadavg()[0]:.2f} at end; "
            f"Python {sys.version.split()[0]})",
            ["part", "µs/request"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
