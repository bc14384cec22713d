"""What watching a run costs: throughput of ``fetchq run`` with the admin
server, a Prometheus scraper and the live page polling, against without.

Each run is a child process (its own reactor) running the recipe on a
SQLite state with the stub fetcher of ``bench_pipeline`` (so the run is CPU
bound and any cost of the admin shows).  In the ``admin`` runs the child
serves the admin server (``attach_admin``, as ``fetchq run --admin``), and
this process polls it from threads as a scraper and an open page would:
``/metrics`` every second, and as ``admin.js`` does, ``status`` every
second, ``timeline`` every 2 s, ``lanes`` and ``jobs`` every 3 s.  Plain and
admin runs alternate; the best wall time and the best CPU time of each are
kept; the ratios are the admin's throughput over the plain one's, by wall
time and by the run process's own CPU time (steadier on a shared machine:
the wall time moves with whatever else runs).

Run: ``.venv/bin/python -m tests.bench.bench_admin`` (about a minute).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.bench._common import table
from tests.bench.bench_pipeline import RECIPE, StubFetcher

POLLS = (
    ("/metrics", 1.0),
    ("/api/v1/status", 1.0),
    ("/api/v1/timeline", 2.0),
    ("/api/v1/lanes?sort=backlog&limit=50", 3.0),
    ("/api/v1/jobs?state=underway&limit=50", 3.0),
)


def child(mode: str, jobs: int, width: int, folder: Path) -> None:
    """One run; print its wall and CPU seconds as a JSON line."""
    from twisted.internet import defer, reactor

    import fetchq.kinds.fetch
    import fetchq.run
    from fetchq.admin.attach import attach_admin
    from fetchq.recipe import FetchRecipe, load_recipe

    fetchq.kinds.fetch.Fetcher = StubFetcher  # type: ignore[assignment,misc]
    if mode == "admin":
        # Loaded before the clock starts: the admin's modules are imported on
        # first use (~0.1-0.3 s, once per process), and what is measured here
        # is what serving the admin costs while the run works.
        import fetchq.admin.controls
        import fetchq.admin.server
        import fetchq.shared_run
    with open(folder / "urls.txt", "w", encoding="utf-8") as f:
        for i in range(jobs):
            f.write(f"http://host{i % 200}.example:8080/page/{i}\n")
    (folder / "recipe.yaml").write_text(RECIPE.format(width=width))
    recipe = load_recipe(folder / "recipe.yaml")
    assert isinstance(recipe, FetchRecipe)
    outcome: dict[str, Any] = {}

    from fetchq.cli import _tune_gc

    _tune_gc()  # as fetchq run does, once the run's objects are made

    async def main() -> None:
        run = fetchq.run.FetchRun(recipe, reactor, stream=io.StringIO())
        started = time.perf_counter()
        cpu = time.process_time()
        finished = run.run()
        if mode == "admin":
            attach_admin(run, reactor, "0")
        outcome["code"] = await finished
        outcome["wall"] = time.perf_counter() - started
        outcome["cpu"] = time.process_time() - cpu

    def go() -> None:
        d = defer.ensureDeferred(main())
        d.addErrback(lambda f: outcome.update(error=f.getTraceback()))
        d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

    reactor.callWhenRunning(go)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    if "error" in outcome or outcome.get("code") != 0:
        raise SystemExit(f"the run failed: {outcome}")
    print(json.dumps({"wall": outcome["wall"], "cpu": outcome["cpu"]}), flush=True)


def poll(folder: Path, stop: threading.Event, counts: dict[str, int]) -> None:
    """Poll the child's admin server as a scraper and the page would."""
    from fetchq.admin.ctl import request

    while not (found := list(folder.rglob("*.admin"))):
        if stop.wait(0.01):
            return
    time.sleep(0.01)  # written whole by a rename; give the reader a moment
    data = json.loads(found[0].read_text())
    url, token = data["url"], data["token"]

    def loop(path: str, every: float) -> None:
        while not stop.is_set():
            began = time.monotonic()
            try:
                code, _ = request(url, token, "GET", path)
                key = "ok" if code == 200 else f"http {code}"
            except Exception:
                key = "unreachable"
            counts[key] = counts.get(key, 0) + 1
            stop.wait(max(0.0, every - (time.monotonic() - began)))

    threads = [
        threading.Thread(target=loop, args=(p, e), daemon=True) for p, e in POLLS
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def one(mode: str, jobs: int, width: int) -> tuple[float, float, dict[str, int]]:
    folder = Path(tempfile.mkdtemp(prefix=f"fetchq-bench-admin-{mode}-"))
    command = [sys.executable, "-m", "tests.bench.bench_admin", "--child", mode]
    command += ["--jobs", str(jobs), "--width", str(width), "--dir", str(folder)]
    stop = threading.Event()
    counts: dict[str, int] = {}
    poller = None
    if mode == "admin":
        poller = threading.Thread(target=poll, args=(folder, stop, counts))
        poller.start()
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=900, check=False
    )
    stop.set()
    if poller is not None:
        poller.join()
    if done.returncode != 0:
        raise SystemExit(f"{mode}: {done.stdout}{done.stderr}")
    figures = json.loads(done.stdout.splitlines()[-1])
    return figures["wall"], figures["cpu"], counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=60_000)
    parser.add_argument("--width", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=["plain", "admin"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.child:
        child(args.child, args.jobs, args.width, Path(args.dir))
        return
    best = {"plain": float("inf"), "admin": float("inf")}
    best_cpu = dict(best)
    polled: dict[str, int] = {}
    for _ in range(args.repeats):
        for mode in ("plain", "admin"):
            wall, cpu, counts = one(mode, args.jobs, args.width)
            best[mode] = min(best[mode], wall)
            best_cpu[mode] = min(best_cpu[mode], cpu)
            for key, n in counts.items():
                polled[key] = polled.get(key, 0) + n
    rate = {mode: args.jobs / wall for mode, wall in best.items()}
    per_job = {mode: cpu / args.jobs * 1e6 for mode, cpu in best_cpu.items()}
    rows = [
        [
            "without the admin",
            f"{rate['plain']:,.0f}",
            "1.000",
            f"{per_job['plain']:.1f}",
            "1.000",
        ],
        [
            "admin + scraper + page",
            f"{rate['admin']:,.0f}",
            f"{rate['admin'] / rate['plain']:.3f}",
            f"{per_job['admin']:.1f}",
            f"{per_job['plain'] / per_job['admin']:.3f}",
        ],
    ]
    print(
        table(
            f"fetchq run, stub fetcher, SQLite state: {args.jobs:,} jobs over 200 "
            f"hosts, width {args.width} (best of {args.repeats})",
            ["run", "jobs/s", "ratio", "CPU µs/job", "ratio (CPU)"],
            rows,
        )
    )
    print(f"admin requests answered: {polled}")


if __name__ == "__main__":
    main()
