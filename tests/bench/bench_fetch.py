"""Fetching 5,000 URLs from a local server: fetchq against treq with a
DeferredSemaphore and against Scrapy, requests per second and peak RSS.

A server in another process (nginx if ``shutil.which("nginx")`` finds it,
else a twisted.web server, see ``_fetch_server``) serves ``/page/0`` ..
``/page/4999``, 1 KB each, on 127.0.0.1.  Each client then fetches every page
once, 50 at a time, in a child process of its own (its own reactor, its own
peak RSS), ``--repeats`` rounds with the clients interleaved; the best
requests/s of each is kept, and the largest peak RSS:

- *treq + DeferredSemaphore(50)*: a plain loop; one ``HTTPClient`` over one
  ``HTTPConnectionPool(persistent=True)`` with ``maxPersistentPerHost=50``,
  every body read with ``treq.content``, nothing written.
- *fetchq, in memory*: ``FetchRun`` on a generated recipe (a text file of the
  URLs in, JSONL out, queue width 50, per-host width 50, no rate) with
  ``store=MemoryStore()``.
- *fetchq, durable*: the same with the recipe's default SQLite state file.
- *Scrapy* (if it imports): ``CONCURRENT_REQUESTS=50`` (and per domain),
  AutoThrottle, robots.txt, cookies and telnet off, no delay.

Each child times from its first request to its last response (for fetchq:
from ``run()`` to the end of the run, the final commit and output write
included) and prints one JSON line: requests/s, ``ru_maxrss``, CPU seconds.
Every fetchq run must write 5,000 ``ok`` records (checked against the
input), and every client must get 5,000 ``200`` answers of 1 KB, or the
benchmark fails.  The targets come from issue 3, section 6.

Run: ``.venv/bin/python -m tests.bench.bench_fetch`` from the repository root
(about a minute on 2 cores; ``--help`` for the options).  Scrapy is optional:
``pip install scrapy`` to include it.

One client by hand, with a profile, against a server started with
``python -m tests.bench._fetch_server``::

    python -m tests.bench.bench_fetch --client fetchq-memory \\
        --url http://127.0.0.1:PORT --profile /tmp/fetchq.prof
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.bench._common import table

BODY_SIZE = 1024  # the server's page size (tests.bench._fetch_server)
ROOT = Path(__file__).resolve().parents[2]

CLIENTS = {
    "treq": "treq + DeferredSemaphore",
    "fetchq-memory": "fetchq, in memory (MemoryStore)",
    "fetchq-sqlite": "fetchq, durable (SQLite state)",
    "scrapy": "Scrapy",
}
BASELINE = "treq"


# -- the child side: one client, one run ---------------------------------------


class Window:
    """The measured stretch of a run: wall time, CPU time, optional profile."""

    def __init__(self, profile: str | None) -> None:
        self.profile = profile
        self._profiler = cProfile.Profile() if profile else None
        self.seconds = 0.0
        self.cpu = 0.0

    def start(self) -> None:
        self._cpu0 = time.process_time()
        if self._profiler is not None:
            self._profiler.enable()
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        self.seconds = time.perf_counter() - self._t0
        if self._profiler is not None:
            self._profiler.disable()
            self._profiler.dump_stats(self.profile)
        self.cpu = time.process_time() - self._cpu0


def run_reactor(main: Callable[[Any], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Run ``main(reactor)`` on the default reactor; its result or its error."""
    from twisted.internet import defer, reactor
    from twisted.python.failure import Failure

    outcome: list[Any] = []

    def done(result: object) -> None:
        outcome.append(result)
        reactor.stop()  # type: ignore[attr-defined]

    def go() -> None:
        defer.ensureDeferred(main(reactor)).addBoth(done)  # type: ignore[arg-type]

    reactor.callWhenRunning(go)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    result = outcome[0]
    if isinstance(result, Failure):
        result.raiseException()
    assert isinstance(result, dict)
    return result


def check_pages(
    statuses: Counter[int], size: int, errors: Counter[str], n: int
) -> None:
    """Fail loudly unless every page came back 200 with its 1 KB body."""
    if statuses != Counter({200: n}) or size != n * BODY_SIZE or errors:
        raise SystemExit(
            f"expected {n} answers 200 of {BODY_SIZE} bytes; got statuses "
            f"{dict(statuses)}, {size} bytes in all, errors {dict(errors)}"
        )


def treq_client(urls: list[str], width: int, window: Window) -> dict[str, Any]:
    import treq
    from treq.client import HTTPClient
    from twisted.internet.defer import DeferredSemaphore, gatherResults
    from twisted.python.failure import Failure
    from twisted.web.client import Agent, HTTPConnectionPool

    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    size = 0

    async def main(reactor: Any) -> dict[str, Any]:
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

        def failed(failure: Failure) -> None:
            errors[type(failure.value).__name__] += 1

        window.start()
        await gatherResults(
            [semaphore.run(fetch, url).addCallbacks(got, failed) for url in urls]
        )
        window.stop()
        await pool.closeCachedConnections()
        return {}

    run_reactor(main)
    check_pages(statuses, size, errors, len(urls))
    return {"requests": len(urls)}


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


def check_output(path: Path, urls: list[str]) -> int:
    """Fail loudly unless ``path`` holds one ok record of 1 KB per URL."""
    seen: Counter[str] = Counter()
    bad: list[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            seen[record["url"]] += 1
            if (
                record.get("outcome") != "ok"
                or record.get("status") != 200
                or record.get("bytes") != BODY_SIZE
            ):
                bad.append(line.strip())
    missing = set(urls) - set(seen)
    extra = set(seen) - set(urls)
    twice = [url for url, count in seen.items() if count > 1]
    if bad or missing or extra or twice or sum(seen.values()) != len(urls):
        raise SystemExit(
            f"{path}: expected {len(urls)} ok records, one per URL; "
            f"{sum(seen.values())} records, {len(bad)} not ok (first: "
            f"{bad[:1]}), {len(missing)} URLs missing, {len(extra)} unknown, "
            f"{len(twice)} twice"
        )
    return len(urls) - len(bad)


def fetchq_client(
    urls: list[str], width: int, window: Window, workdir: str, durable: bool
) -> dict[str, Any]:
    from fetchq.recipe import FetchRecipe, load_recipe
    from fetchq.run import FetchRun
    from fetchq.store import MemoryStore

    directory = Path(tempfile.mkdtemp(prefix="fetchq-run-", dir=workdir))
    (directory / "urls.txt").write_text("\n".join(urls) + "\n", encoding="utf-8")
    (directory / "recipe.yaml").write_text(RECIPE.format(width=width))
    recipe = load_recipe(directory / "recipe.yaml")
    assert isinstance(recipe, FetchRecipe)
    log = io.StringIO()

    async def main(reactor: Any) -> dict[str, Any]:
        run = FetchRun(
            recipe, reactor, stream=log, store=None if durable else MemoryStore()
        )
        window.start()
        code = await run.run()
        window.stop()
        return {"code": code}

    result = run_reactor(main)
    sys.stderr.write(log.getvalue())
    if result["code"] != 0:
        raise SystemExit(f"fetchq run ended with exit code {result['code']}")
    ok = check_output(recipe.output.path, urls)
    state = recipe.state.path
    if durable != state.exists():
        raise SystemExit(f"state file {state}: exists={state.exists()}")
    extra = {"state_bytes": state.stat().st_size} if durable else {}
    shutil.rmtree(directory)
    return {"requests": len(urls), "ok_records": ok, **extra}


def scrapy_client(urls: list[str], width: int, window: Window) -> dict[str, Any]:
    from tests.bench._scrapy_spider import crawl

    tally = crawl(urls, width)
    check_pages(tally.statuses, tally.bytes, tally.errors, len(urls))
    assert tally.first is not None and tally.last is not None
    window.seconds = tally.last - tally.first
    window.cpu = tally.cpu_last - tally.cpu_first
    return {"requests": len(urls)}


def child(args: argparse.Namespace) -> None:
    """Run one client once; print its figures as one JSON line."""
    if args.url is None:
        raise SystemExit("--client needs --url")
    urls = [f"{args.url.rstrip('/')}/page/{n}" for n in range(args.pages)]
    window = Window(args.profile)
    workdir = args.workdir or tempfile.gettempdir()
    if args.client == "treq":
        result = treq_client(urls, args.width, window)
    elif args.client in ("fetchq-memory", "fetchq-sqlite"):
        durable = args.client == "fetchq-sqlite"
        result = fetchq_client(urls, args.width, window, workdir, durable)
    else:
        if args.profile:
            raise SystemExit("--profile is not supported for scrapy")
        result = scrapy_client(urls, args.width, window)
    result.update(
        client=args.client,
        seconds=window.seconds,
        rps=result["requests"] / window.seconds,
        cpu_seconds=window.cpu,
        maxrss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    )
    print(json.dumps(result), flush=True)


# -- the parent side: server, children, tables ------------------------------------


def run_child(
    server: Any, client: str, args: argparse.Namespace, workdir: str
) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "tests.bench.bench_fetch",
        "--client",
        client,
        "--url",
        server.base,
        "--pages",
        str(args.pages),
        "--width",
        str(args.width),
        "--workdir",
        workdir,
    ]
    cpu = server.cpu_seconds()
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    server_cpu = server.cpu_seconds() - cpu
    if args.verbose and done.stderr:
        sys.stderr.write(done.stderr)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"the {client} run failed (exit status {done.returncode})")
    result: dict[str, Any] = json.loads(lines[-1])
    if client.startswith("fetchq") and result.get("ok_records") != args.pages:
        raise SystemExit(f"{client}: {result.get('ok_records')} ok records")
    result["server_cpu"] = server_cpu
    return result


def version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def mb(kb: float) -> str:
    return f"{kb / 1024:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=5000, help="URLs (distinct)")
    parser.add_argument("--width", type=int, default=50, help="requests at once")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (best of)")
    parser.add_argument(
        "--server", choices=["auto", "nginx", "twisted"], default="auto"
    )
    parser.add_argument(
        "--clients", nargs="+", choices=list(CLIENTS), default=list(CLIENTS)
    )
    parser.add_argument("--verbose", action="store_true", help="show child stderr")
    child_options = parser.add_argument_group("one child run (internal)")
    child_options.add_argument("--client", choices=list(CLIENTS))
    child_options.add_argument("--url", help="the server's base URL")
    child_options.add_argument("--workdir", help="where fetchq runs write")
    child_options.add_argument("--profile", help="write a cProfile dump here")
    args = parser.parse_args()
    if args.client:
        child(args)
        return

    from tests.bench._fetch_server import serve

    clients = [c for c in CLIENTS if c in args.clients]
    if BASELINE not in clients:
        raise SystemExit(f"--clients must include {BASELINE} (the baseline)")
    notes = []
    if "scrapy" in clients and importlib.util.find_spec("scrapy") is None:
        clients.remove("scrapy")
        notes.append(
            "Scrapy could not be imported in this interpreter "
            f"({sys.executable}): its runs were skipped."
        )
    workdir = tempfile.mkdtemp(prefix="fetchq-bench-fetch-")
    results: dict[str, list[dict[str, Any]]] = {c: [] for c in clients}
    try:
        with serve(args.pages, args.server) as server:
            print(
                f"Server: {server.version} ({server.kind}) at {server.base}, "
                f"{args.pages:,} pages of {BODY_SIZE} bytes.  Client: Python "
                f"{platform.python_version()}, Twisted {version('twisted')}, "
                f"treq {version('treq')}, Scrapy {version('scrapy')}; "
                f"{os.cpu_count()} CPUs.\n",
                flush=True,
            )
            for round_ in range(1, args.repeats + 1):
                for client in clients:
                    r = run_child(server, client, args, workdir)
                    results[client].append(r)
                    print(
                        f"  round {round_} {client}: {r['rps']:,.0f} req/s, "
                        f"peak RSS {mb(r['maxrss_kb'])} MB",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(report(results, server.kind, args, notes))


def report(
    results: dict[str, list[dict[str, Any]]],
    server_kind: str,
    args: argparse.Namespace,
    notes: list[str],
) -> str:
    best = {c: max(results[c], key=lambda r: r["rps"]) for c in results}
    rps = {c: best[c]["rps"] for c in results}
    rss = {c: max(r["maxrss_kb"] for r in results[c]) for c in results}
    scrapy = rps.get("scrapy")

    def name(client: str) -> str:
        label = CLIENTS[client]
        if client == "treq":
            label += f"({args.width})"
        elif client == "scrapy":
            label += f" {version('scrapy')}"
        return label

    rows = []
    for c in results:
        rows.append(
            [
                name(c),
                f"{rps[c]:,.0f}",
                f"{rps[c] / rps[BASELINE]:.2f}x",
                "n/a" if scrapy is None else f"{rps[c] / scrapy:.2f}x",
                mb(rss[c]),
                f"{(rss[c] - rss[BASELINE]) / 1024:+.1f}",
            ]
        )
    out = [
        table(
            f"Fetching {args.pages:,} URLs of {BODY_SIZE} bytes from {server_kind} "
            f"on 127.0.0.1, width {args.width} (best of {args.repeats})",
            [
                "client",
                "req/s",
                "vs treq+semaphore",
                "vs Scrapy",
                "peak RSS (MB)",
                "RSS vs treq+semaphore (MB)",
            ],
            rows,
        )
    ]

    rows = []
    for c in results:
        b = best[c]
        rows.append(
            [
                name(c),
                ", ".join(f"{r['rps']:,.0f}" for r in results[c]),
                f"{b['cpu_seconds'] / b['requests'] * 1e6:.0f}",
                f"{b['cpu_seconds'] / b['seconds']:.0%}",
                f"{b['server_cpu'] / b['seconds']:.0%}",
            ]
        )
    out.append(
        table(
            "Where the time goes (best run; CPU % of its wall time)",
            [
                "client",
                "req/s, each round",
                "client CPU µs/request",
                "client CPU",
                "server CPU",
            ],
            rows,
        )
    )

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    targets = []
    if "fetchq-memory" in results:
        ratio = rps["fetchq-memory"] / rps[BASELINE]
        targets.append(
            [
                "fetchq in memory ≥ 0.9x treq+semaphore",
                f"{ratio:.2f}x",
                verdict(ratio >= 0.9),
            ]
        )
        if scrapy is None:
            targets.append(["fetchq in memory ≥ 5x Scrapy", "not measured", "n/a"])
        else:
            ratio = rps["fetchq-memory"] / scrapy
            targets.append(
                ["fetchq in memory ≥ 5x Scrapy", f"{ratio:.2f}x", verdict(ratio >= 5)]
            )
    for c, label in (("fetchq-memory", "in memory"), ("fetchq-sqlite", "durable")):
        if c in results:
            extra = (rss[c] - rss[BASELINE]) / 1024
            targets.append(
                [
                    f"fetchq {label}: peak RSS ≤ treq+semaphore + 30 MB",
                    f"{extra:+.1f} MB",
                    verdict(extra <= 30),
                ]
            )
    if "fetchq-memory" in results and "fetchq-sqlite" in results:
        ratio = rps["fetchq-sqlite"] / rps["fetchq-memory"]
        targets.append(
            ["fetchq durable ≥ 0.5x in memory", f"{ratio:.2f}x", verdict(ratio >= 0.5)]
        )
    out.append(
        table("Targets (issue 3, section 6)", ["target", "measured", ""], targets)
    )
    out += [f"Note: {note}\n" for note in notes]
    return "\n".join(out)


if __name__ == "__main__":
    main()
