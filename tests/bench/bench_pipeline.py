"""The run pipeline alone: CPU per job of ``FetchRun`` with a stub fetcher.

``bench_fetch`` measures fetchq against real HTTP, where the fetcher and
the network dominate and figures move with the machine's load.  This one
takes them out: ``fetchq.kinds.fetch.Fetcher`` is replaced by a stub that answers
every request on the next reactor turn with a ready ``FetchResult``, so what
is measured is the rest of ``fetchq run`` -- reading and checking the input,
the store (add, claim, ack), the queue with lanes, the progress statistics,
building and writing one JSONL record per job -- in CPU microseconds per
job.  Each store runs in a child process of its own (its own reactor), best
of ``--repeats``; every run must write one record per input line.

Run: ``.venv/bin/python -m tests.bench.bench_pipeline`` (about 20 s).
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench._common import table

RECIPE = """\
kind: fetch
input:
  path: urls.txt
output:
  path: out/results.jsonl
queue:
  width: {width}
  per_host:
    width: {width}
"""


class StubFetcher:
    """Stands in for ``fetchq.fetch.Fetcher``: every call gets a Deferred
    that fires on the next reactor turn (all of a turn's at once) with a
    200 result of 1 KB."""

    warnings: tuple[str, ...] = ()
    robots = None

    def __init__(self, config: Any, reactor: Any, **options: Any) -> None:
        self._reactor = reactor
        self._waiting: list[tuple[Any, str]] = []

    def __call__(self, arg: Any) -> Any:
        from twisted.internet.defer import Deferred

        d: Deferred[Any] = Deferred()
        if not self._waiting:
            self._reactor.callLater(0, self._answer)
        self._waiting.append((d, arg["url"]))
        return d

    def _answer(self) -> None:
        from fetchq.fetch import FetchResult

        waiting, self._waiting = self._waiting, []
        for d, url in waiting:
            d.callback(
                FetchResult(url, url, 200, "text/html", 1024, "0" * 64, None, 0.001, 0)
            )

    def close(self) -> Any:
        from twisted.internet.defer import succeed

        return succeed(None)


def child(store: str, jobs: int, width: int) -> None:
    """One run; print its CPU seconds as a JSON line."""
    from twisted.internet import defer, reactor

    import fetchq.kinds.fetch
    import fetchq.run
    from fetchq.recipe import FetchRecipe, load_recipe
    from fetchq.store import MemoryStore

    fetchq.kinds.fetch.Fetcher = StubFetcher  # type: ignore[assignment,misc]
    folder = Path(tempfile.mkdtemp(prefix="fetchq-bench-pipeline-"))
    with open(folder / "urls.txt", "w", encoding="utf-8") as f:
        for i in range(jobs):
            f.write(f"http://127.0.0.1:8080/page/{i}\n")
    (folder / "recipe.yaml").write_text(RECIPE.format(width=width))
    recipe = load_recipe(folder / "recipe.yaml")
    assert isinstance(recipe, FetchRecipe)
    outcome: dict[str, Any] = {}

    async def main() -> None:
        run = fetchq.run.FetchRun(
            recipe,
            reactor,
            stream=io.StringIO(),
            store=MemoryStore() if store == "memory" else None,
        )
        cpu = time.process_time()
        outcome["code"] = await run.run()
        outcome["cpu"] = time.process_time() - cpu

    def go() -> None:
        d = defer.ensureDeferred(main())
        d.addErrback(lambda f: outcome.update(error=f.getTraceback()))
        d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

    reactor.callWhenRunning(go)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    if "error" in outcome or outcome.get("code") != 0:
        raise SystemExit(f"the run failed: {outcome}")
    lines = recipe.output.path.read_text(encoding="utf-8").splitlines()
    if len(lines) != jobs or len({json.loads(x)["id"] for x in lines}) != jobs:
        raise SystemExit(f"expected {jobs} records, one per line; got {len(lines)}")
    print(json.dumps({"cpu": outcome["cpu"]}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--width", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=["memory", "sqlite"], help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.child:
        child(args.child, args.jobs, args.width)
        return
    rows = []
    for store, label in (("memory", "MemoryStore"), ("sqlite", "SQLite state")):
        best = float("inf")
        for _ in range(args.repeats):
            command = [
                sys.executable,
                "-m",
                "tests.bench.bench_pipeline",
                "--child",
                store,
                "--jobs",
                str(args.jobs),
                "--width",
                str(args.width),
            ]
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=600, check=False
            )
            if done.returncode != 0:
                raise SystemExit(f"{store}: {done.stdout}{done.stderr}")
            cpu = json.loads(done.stdout.splitlines()[-1])["cpu"]
            best = min(best, cpu)
        rows.append([label, f"{best / args.jobs * 1e6:.1f}"])
    print(
        table(
            f"fetchq run with a stub fetcher: {args.jobs:,} jobs, width "
            f"{args.width} (best of {args.repeats})",
            ["store", "CPU µs per job"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
