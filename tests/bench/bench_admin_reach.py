"""How soon an operator's width change takes effect: ``POST /api/v1/width``
to a running ``fetchq run --admin`` until the run has that many jobs in
flight.

The run is ``tests.admin_target`` (a site answering every page after 0.2 s,
100,000 URLs, width 2) in its own process: on the local engine (SQLite),
and on the Redis engine with three ``fetchq run`` processes of the recipe
(the admin served by the first; a change is written to Redis and every
worker's next claim reads it, and ``in_flight`` is then the whole run's).
Each round lowers the width to 2,
waits for the run to settle there, raises it to 12 and polls ``status``
every 5 ms until ``in_flight`` reaches 12: the time from sending the POST
to that answer is the figure (it includes the poll's own round trip, so it
is an upper bound).  Targets (issue 11): 100 ms locally, 1 s on Redis.

Run: ``.venv/bin/python -m tests.bench.bench_admin_reach`` (about a minute;
the Redis half needs ``redis-server`` on PATH).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.admin_target import Target
from tests.bench._common import table

LOW, HIGH = 2, 12


def until(target: Target, check: object, timeout: float = 30.0) -> float:
    """Poll status every 5 ms until ``check(status)``; the monotonic time."""
    deadline = time.monotonic() + timeout
    while True:
        _, status = target.call("GET", "/api/v1/status")
        if check(status):  # type: ignore[operator]
            return time.monotonic()
        if time.monotonic() > deadline:
            raise SystemExit(f"never reached: {status}")
        time.sleep(0.005)


def rounds(target: Target, count: int) -> list[float]:
    """Seconds from each raise of the width to the run at that width."""
    until(target, lambda s: s.get("in_flight", 0) >= LOW)
    out = []
    for _ in range(count):
        target.call("POST", "/api/v1/width", {"width": LOW})
        until(target, lambda s: s.get("in_flight") == LOW and s.get("width") == LOW)
        time.sleep(0.3)
        began = time.monotonic()
        target.call("POST", "/api/v1/width", {"width": HIGH})
        reached = until(target, lambda s: s.get("in_flight", 0) >= HIGH)
        out.append(reached - began)
    return out


def more_workers(target: Target, n: int) -> list[subprocess.Popen[bytes]]:
    """``n`` more ``fetchq run`` processes of the target's recipe."""
    from tests.admin_target import SECRET

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root), ADMIN_TEST_SECRET=SECRET)
    command = [sys.executable, "-m", "fetchq", "run", str(target.recipe)]
    return [
        subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(n)
    ]


def measure(engine: str, count: int) -> list[float]:
    folder = Path(tempfile.mkdtemp(prefix=f"fetchq-bench-reach-{engine}-"))
    server = None
    workers: list[subprocess.Popen[bytes]] = []
    if engine == "redis":
        from tests.redis_server import RedisServer

        server = RedisServer()
        os.environ["ADMIN_TARGET_STATE_URL"] = server.url
    try:
        target = Target(folder / "run", 100_000)
        if engine == "redis":
            workers = more_workers(target, 2)
        try:
            return rounds(target, count)
        finally:
            for worker in workers:
                try:
                    worker.wait(30)
                except subprocess.TimeoutExpired:
                    worker.kill()
            target.call("POST", "/api/v1/stop", {})
            try:
                target.wait(30)
            finally:
                target.stop()
    finally:
        os.environ.pop("ADMIN_TARGET_STATE_URL", None)
        if server is not None:
            server.stop()
        shutil.rmtree(folder, True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--engine", choices=["local", "redis", "both"], default="both")
    args, _ = parser.parse_known_args()
    engines = ["local", "redis"] if args.engine == "both" else [args.engine]
    rows = []
    for engine in engines:
        if engine == "redis" and shutil.which("redis-server") is None:
            rows.append([engine, "skipped: no redis-server", "", ""])
            continue
        times = measure(engine, args.rounds)
        rows.append(
            [
                engine,
                f"{statistics.median(times) * 1000:.0f} ms",
                f"{max(times) * 1000:.0f} ms",
                str(len(times)),
            ]
        )
    print(
        table(
            f"width {LOW} -> {HIGH} through the admin API until {HIGH} in flight",
            ["engine", "median", "worst", "rounds"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
