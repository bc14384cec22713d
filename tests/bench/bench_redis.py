"""The Redis engine (issue 10): the client, whole runs, and a shared rate.

1. **Client.**  Claim/ack round trips through the store's own Lua scripts
   (``claim`` with the run's limits, by lane; then ``ack``) on a
   ``redis-server`` started for the benchmark, each client in a process of
   its own: txredisapi (Twisted; what fetchq uses, a pool of 4 as
   ``RedisStore.connect`` makes) and redis-py's ``redis.asyncio`` (on plain
   asyncio, a ``BlockingConnectionPool`` as wide as the concurrency; skipped
   when ``redis`` is not installed: ``pip install redis``).  *Unbatched*:
   50 loops each claiming 1 item and acking it; *batched*: 4 loops each
   claiming 50 and acking them in one script call (what a worker does: one
   claim per free width, the acks of a reactor turn in one call).  Items
   claimed and acked per second, best of ``--repeats``.
2. **Runs.**  10,000 URLs of 1 KB from nginx (else twisted.web, in another
   process; see ``_fetch_server``), width 50: ``fetchq run`` with its SQLite
   state file against the same recipe with ``state.url`` (one worker; Redis
   with ``appendonly yes``, ``appendfsync everysec``), and ``fetchq run
   --workers 1`` against ``--workers 2``.  Wall time of each command, runs
   alternated, best of ``--repeats``, and the CPU seconds its processes
   used (so a figure taken on a busy machine can be read), and the
   redis-server's own CPU per row (what bounds a run that many machines
   share: one Redis runs every script of the run on one core).  Targets: Redis
   at least 0.8x SQLite; 2 workers at least 1.5x one.
3. **Memory.**  ``used_memory`` per row through the store: 100,000 rows
   (55-byte URLs on 1,000 hosts) pending, then all leased, then all done
   with a 208-byte record each (what the output is written from).
4. **A shared rate.**  ``fetchq run --workers 3`` with ``queue.rate: 200/s``
   and ``per_host.width: 4`` over 4,000 URLs on three hosts (the counting
   site of ``tests/counting_site.py`` in its own process, 10 ms a request):
   the rate the site saw (from its first request to its last, and its
   slowest and fastest whole second) and the most requests it answered at
   once for one host.  Target: 200/s +- 5% over 20 s; never more than 4 at
   once per host.

5. **kill -9.**  The same run (3 workers, 200/s, 4,000 URLs) with one
   worker killed with SIGKILL after about 5 s; the other two finish.  Counted:
   records in the output (each row exactly once), rows done before the kill
   (``fetchq output`` just before it) that the site saw again (target:
   none), and paths the site saw twice (the rows the dead worker held).

Run: ``.venv/bin/python -m tests.bench.bench_redis`` (about 4 minutes on 2
cores; ``--quick`` for one round of each; ``--only PART``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.bench._common import table

ROOT = Path(__file__).resolve().parents[2]
ITEMS = 20_000


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


# -- 1. the client -------------------------------------------------------------


def _args_claim(worker: str, limit: int) -> list[str]:
    # now (server time), worker, limit, per_lane, lease ms, limits
    return ["", worker, str(limit), str(limit), "60000", "1"]


def _args_ack(ids: list[str]) -> list[str]:
    args = [""]
    for item in ids:
        args += [item, "ok", '{"ok":1}']
    return args


def _args_add(start: int, n: int) -> list[str]:
    args = ["", ""]
    for i in range(start, start + n):
        args += [f"i{i}", "0", f"+lane{i % 100}", '{"url":"http://x/"}', "", "null"]
    return args


def _claimed_ids(reply: Any) -> list[str]:
    """The ids a claim took (its reply is one JSON text: [wake, id, item,
    at, ...])."""
    items = json.loads(reply)
    return [items[i] for i in range(1, len(items), 3)]


def client_txredisapi(url: str, run: str, loops: int, batch: int) -> float:
    """Items per second with txredisapi on the Twisted reactor."""
    import txredisapi
    from twisted.internet import defer, reactor

    from fetchq.store.redis import _scripts, parse_url

    scripts = _scripts()
    cfg = f"{{fetchq:{run}}}:cfg"
    s = parse_url(url)
    result: list[Any] = []

    async def main() -> float:
        client = txredisapi.lazyConnectionPool(
            s["host"], s["port"], dbid=s["db"], poolsize=4, convertNumbers=False
        )
        await client.ping()
        for start in range(0, ITEMS, 1000):
            await client.eval(scripts["add"], keys=[cfg], args=_args_add(start, 1000))

        async def loop(worker: str) -> None:
            while True:
                reply = await client.eval(
                    scripts["claim"], keys=[cfg], args=_args_claim(worker, batch)
                )
                ids = _claimed_ids(reply)
                if not ids:
                    return
                await client.eval(scripts["ack"], keys=[cfg], args=_args_ack(ids))

        began = time.perf_counter()
        await defer.gatherResults(
            [defer.Deferred.fromCoroutine(loop(f"w{n}")) for n in range(loops)]
        )
        elapsed = time.perf_counter() - began
        await client.disconnect()
        return ITEMS / elapsed

    d = defer.Deferred.fromCoroutine(main())
    d.addBoth(result.append).addBoth(lambda _: reactor.stop())
    reactor.run()  # type: ignore[attr-defined]
    if not isinstance(result[0], float):
        result[0].raiseException()
    return float(result[0])


def client_redispy(url: str, run: str, loops: int, batch: int) -> float:
    """Items per second with redis-py's asyncio client on asyncio."""
    import redis.asyncio as aioredis

    from fetchq.store.redis import _scripts

    scripts = _scripts()
    cfg = f"{{fetchq:{run}}}:cfg"

    async def main() -> float:
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=loops)
        client = aioredis.Redis(connection_pool=pool)
        add = client.register_script(scripts["add"])
        claim = client.register_script(scripts["claim"])
        ack = client.register_script(scripts["ack"])
        for start in range(0, ITEMS, 1000):
            await add(keys=[cfg], args=_args_add(start, 1000))

        async def loop(worker: str) -> None:
            while True:
                reply = await claim(keys=[cfg], args=_args_claim(worker, batch))
                ids = _claimed_ids(reply)
                if not ids:
                    return
                await ack(keys=[cfg], args=_args_ack(ids))

        began = time.perf_counter()
        await asyncio.gather(*(loop(f"w{n}") for n in range(loops)))
        elapsed = time.perf_counter() - began
        await client.aclose()
        return ITEMS / elapsed

    return asyncio.run(main())


def _client_child(args: argparse.Namespace) -> None:
    run = f"bench-{os.getpid()}-{time.monotonic_ns()}"
    fn = client_txredisapi if args.client == "txredisapi" else client_redispy
    print(json.dumps({"per_s": fn(args.url, run, args.loops, args.batch)}))


def clients(repeats: int, url: str) -> list[list[str]]:
    names = ["txredisapi"]
    if importlib.util.find_spec("redis") is not None:
        names.append("redispy")
    else:
        print("(redis-py is not installed: pip install redis to compare it)")
    rows = []
    for mode, loops, batch in (("unbatched", 50, 1), ("batched", 4, 50)):
        best: dict[str, float] = {}
        for _ in range(repeats):
            for name in names:
                out = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "tests.bench.bench_redis",
                        "--client",
                        name,
                        "--url",
                        url,
                        "--loops",
                        str(loops),
                        "--batch",
                        str(batch),
                    ],
                    env=_env(),
                    capture_output=True,
                    text=True,
                    check=True,
                )
                per_s = json.loads(out.stdout.splitlines()[-1])["per_s"]
                best[name] = max(best.get(name, 0.0), per_s)
        row = [
            f"{mode} ({loops} loops x {batch})",
            f"{best['txredisapi']:,.0f}",
        ]
        if "redispy" in best:
            row += [
                f"{best['redispy']:,.0f}",
                f"{best['txredisapi'] / best['redispy']:.2f}",
            ]
        rows.append(row)
    return rows


# -- 2. whole runs ---------------------------------------------------------------

RUN_RECIPE = """\
kind: fetch
input:
  path: urls.txt
output:
  path: out/result.jsonl
queue:
  width: 50
  per_host:
    width: 50
retry:
  max_attempts: 2
fetch:
  http: {http}
{state}"""


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(folder: Path, *args: str) -> tuple[float, float]:
    """Wall seconds of one ``fetchq`` command, and the CPU seconds of its
    processes (workers included)."""
    cpu = _cpu()
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "fetchq", *args],
        cwd=folder,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"fetchq {' '.join(args)} failed: {done.stderr[-2000:]}")
    records = (folder / "out" / "result.jsonl").read_text().splitlines()
    if len(records) != 10_000 or any('"outcome":"ok"' not in r for r in records):
        raise SystemExit(f"fetchq {' '.join(args)}: not 10,000 ok records")
    return elapsed, _cpu() - cpu


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runs(repeats: int, http: str = "treq") -> list[list[str]]:
    from tests.bench._fetch_server import serve
    from tests.redis_server import RedisServer

    redis = RedisServer("--appendonly", "yes", "--appendfsync", "everysec")
    try:
        with serve(10_000) as server:
            print(f"(server: {server.version})")
            folder = Path(tempfile.mkdtemp(prefix="fetchq-bench-redis-"))
            urls = "".join(f"{server.base}/page/{n}\n" for n in range(10_000))
            (folder / "urls.txt").write_text(urls)
            (folder / "sqlite.yaml").write_text(RUN_RECIPE.format(state="", http=http))
            state = f"state:\n  url: {redis.url}\n  run: bench\n"
            redis_recipe = RUN_RECIPE.format(state=state, http=http)
            (folder / "redis.yaml").write_text(redis_recipe)
            cases = {
                "SQLite state, 1 process": ("run", "sqlite.yaml", "--fresh"),
                "Redis state, 1 process": ("run", "redis.yaml", "--fresh"),
                "Redis, --workers 1": (
                    "run",
                    "redis.yaml",
                    "--fresh",
                    "--workers",
                    "1",
                ),
                "Redis, --workers 2": (
                    "run",
                    "redis.yaml",
                    "--fresh",
                    "--workers",
                    "2",
                ),
            }
            best: dict[str, float] = {}
            cpu: dict[str, float] = {}
            server_cpu: dict[str, float] = {}
            assert redis.process is not None
            for _ in range(repeats):
                for name, args in cases.items():
                    before = _process_cpu(redis.process.pid)
                    elapsed, used = _timed(folder, *args)
                    if elapsed < best.get(name, 1e9):
                        best[name], cpu[name] = elapsed, used
                        server_cpu[name] = _process_cpu(redis.process.pid) - before
    finally:
        redis.stop()
    rows = []
    base = {
        "SQLite state, 1 process": None,
        "Redis state, 1 process": "SQLite state, 1 process",
        "Redis, --workers 1": None,
        "Redis, --workers 2": "Redis, --workers 1",
    }
    for name, elapsed in best.items():
        against = base[name]
        ratio = "" if against is None else f"{best[against] / elapsed:.2f}x"
        rows.append(
            [
                name,
                f"{elapsed:.2f}",
                f"{10_000 / elapsed:,.0f}",
                ratio,
                f"{cpu[name]:.1f}",
                f"{server_cpu[name] / 10_000 * 1e6:.0f}",
            ]
        )
    return rows


# -- 3. a shared rate ------------------------------------------------------------

RATE_RECIPE = """\
kind: fetch
input:
  path: urls.txt
output:
  path: out/result.jsonl
queue:
  width: 30
  rate: 200/s
  per_host:
    width: 4
state:
  url: {url}
  run: rate
"""


def rate(urls: int) -> list[list[str]]:
    from tests.redis_server import RedisServer

    redis = RedisServer()
    site = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.counting_site",
            "--hosts",
            "3",
            "--latency",
            "0.01",
        ],
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert site.stdout is not None
        port = int(site.stdout.readline().split()[1])
        folder = Path(tempfile.mkdtemp(prefix="fetchq-bench-rate-"))
        lines = [f"http://127.0.0.{n % 3 + 1}:{port}/page/{n}\n" for n in range(urls)]
        (folder / "urls.txt").write_text("".join(lines))
        (folder / "r.yaml").write_text(RATE_RECIPE.format(url=redis.url))
        done = subprocess.run(
            [sys.executable, "-m", "fetchq", "run", "r.yaml", "--workers", "3"],
            cwd=folder,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            raise SystemExit(f"the rate run failed: {done.stderr[-2000:]}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats") as answer:
            stats = json.load(answer)
    finally:
        site.terminate()
        site.wait()
        redis.stop()
    times = sorted(stats["times"])
    span = times[-1] - times[0]
    achieved = (len(times) - 1) / span
    seconds = [0] * int(span)
    for t in times:
        second = int(t - times[0])
        if second < len(seconds):
            seconds[second] += 1
    widest = max(stats["max_inflight"].values())
    return [
        [
            f"{len(times):,} requests over {span:.1f} s",
            f"{achieved:.1f}/s ({100 * (achieved / 200 - 1):+.1f}%)",
            f"{min(seconds)}-{max(seconds)}",
            f"{widest} (limit 4)",
        ]
    ]


# -- 5. kill -9 one of three workers --------------------------------------------


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _site_stats(port: int) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats") as answer:
        return json.load(answer)


def kill(urls: int, after: float = 5.0) -> list[list[str]]:
    """``fetchq run --workers 3`` at 200/s; SIGKILL one worker after
    ``after`` seconds of requests; the run must still end 0 with one record
    per row and no row done before the kill fetched again."""
    import signal

    from tests.redis_server import RedisServer

    redis = RedisServer("--appendonly", "yes", "--appendfsync", "everysec")
    site = subprocess.Popen(
        [sys.executable, "-m", "tests.counting_site", "--hosts=3", "--latency=0.01"],
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert site.stdout is not None
        port = int(site.stdout.readline().split()[1])
        folder = Path(tempfile.mkdtemp(prefix="fetchq-bench-kill-"))
        lines = [f"http://127.0.0.{n % 3 + 1}:{port}/page/{n}\n" for n in range(urls)]
        (folder / "urls.txt").write_text("".join(lines))
        (folder / "r.yaml").write_text(
            RATE_RECIPE.format(url=redis.url).replace("run: rate", "run: kill")
        )
        parent = subprocess.Popen(
            [sys.executable, "-m", "fetchq", "run", "r.yaml", "--workers", "3"],
            cwd=folder,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while not _site_stats(port)["times"]:
            if time.monotonic() > deadline or parent.poll() is not None:
                raise SystemExit("the kill run never started fetching")
            time.sleep(0.05)
        time.sleep(after)
        snap = subprocess.run(
            [sys.executable, "-m", "fetchq", "output", "r.yaml"],
            cwd=folder,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if snap.returncode != 0:
            raise SystemExit(f"fetchq output failed: {snap.stderr[-2000:]}")
        before = {
            json.loads(line)["url"].split(f":{port}", 1)[1]
            for line in (folder / "out" / "result.jsonl").read_text().splitlines()
        }
        workers = _children(parent.pid)
        if len(workers) != 3:
            raise SystemExit(f"expected 3 workers, found {workers}")
        os.kill(workers[1], signal.SIGKILL)
        killed_at = len(_site_stats(port)["times"])
        _, err = parent.communicate(timeout=900)
        if parent.returncode != 0:
            raise SystemExit(f"the kill run ended {parent.returncode}: {err[-2000:]}")
        stats = _site_stats(port)
    finally:
        site.terminate()
        site.wait()
        redis.stop()
    records = [
        json.loads(line)
        for line in (folder / "out" / "result.jsonl").read_text().splitlines()
    ]
    ids = [r["url"].split(f":{port}", 1)[1] for r in records]
    wanted = {f"/page/{n}" for n in range(urls)}
    requests = stats["requests"]
    again = sorted(p for p in before if requests.get(p, 0) > 1)
    twice = sorted(p for p, n in requests.items() if p.startswith("/page/") and n > 1)
    return [
        [
            f"{urls:,}",
            f"{len(before):,} / {killed_at:,}",
            f"{len(records):,} ({len(set(ids)):,} rows; "
            f"{len(wanted - set(ids))} missing)",
            str(len(again)),
            str(len(twice)),
            ", ".join(sorted({str(r.get("outcome")) for r in records})),
        ]
    ]


# -- 4. memory ---------------------------------------------------------------


def _memory_child(url: str, rows: int) -> None:
    """Bytes of Redis memory per pending row, per leased row and per done
    row (its record kept for the output), through the store itself."""
    from twisted.internet import defer, task

    from fetchq.store import NewItem
    from fetchq.store.redis import RedisStore

    async def main(reactor: Any) -> None:
        store = await RedisStore.connect(url, "memory", reactor, renew=False)

        async def used() -> int:
            info = await store._client.execute_command("INFO", "memory")
            return int(str(info).split("used_memory:")[1].split()[0])

        empty = await used()
        for start in range(0, rows, 1000):
            await store.add(
                NewItem(
                    str(i),
                    {"url": f"https://host{i % 1000:03}.example.com/a/page-{i:08}"},
                    0,
                    f"host{i % 1000:03}.example.com",
                )
                for i in range(start, start + 1000)
            )
        pending = await used()
        leased: list[str] = []
        while len(leased) < rows:
            got = await store.claim(1000, reactor.seconds(), 600.0, per_lane=1000)
            leased += [c.id for c in got]
        claimed = await used()
        record = {
            "id": "0",
            "url": "https://host000.example.com/a/page-00000000",
            "outcome": "ok",
            "status": 200,
            "bytes": 1024,
            "sha256": "0" * 64,
            "attempts": 1,
            "elapsed": 0.012,
        }
        for n, item in enumerate(leased):
            store.ack(item, "ok", record, reactor.seconds())
            if n % 1000 == 999:
                await store.flush()
        await store.flush()
        done = await used()
        await store.reset()
        await store.close()
        print(
            json.dumps(
                {
                    "pending": (pending - empty) / rows,
                    "leased": (claimed - empty) / rows,
                    "done": (done - empty) / rows,
                    "record": len(json.dumps(record, separators=(",", ":"))),
                }
            )
        )

    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor)))


def memory(rows: int) -> list[list[str]]:
    from tests.redis_server import RedisServer

    server = RedisServer()
    try:
        command = [sys.executable, "-m", "tests.bench.bench_redis"]
        command += ["--memory-child", "--url", server.url, "--rows", str(rows)]
        out = subprocess.run(
            command,
            env=_env(),
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        server.stop()
    got = json.loads(out.stdout.splitlines()[-1])
    return [
        [
            f"{rows:,} rows, 1,000 hosts, 55-byte URLs",
            f"{got['pending']:.0f}",
            f"{got['leased']:.0f}",
            f"{got['done']:.0f} (record {got['record']} B)",
        ]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round of each")
    parser.add_argument(
        "--only",
        choices=("clients", "runs", "rate", "memory", "kill"),
        default=None,
        help="one part",
    )
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--client", choices=("txredisapi", "redispy"))
    parser.add_argument("--url")
    parser.add_argument("--loops", type=int, default=50)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument(
        "--http", choices=("treq", "lean"), default="treq", help="runs' fetch.http"
    )
    args = parser.parse_args()
    if args.client:
        _client_child(args)
        return
    if args.memory_child:
        _memory_child(args.url, args.rows)
        return
    repeats = 1 if args.quick else args.repeats
    if args.only in (None, "clients"):
        from tests.redis_server import RedisServer

        server = RedisServer()
        try:
            rows = clients(repeats, server.url)
        finally:
            server.stop()
        header = ["claim + ack", "txredisapi items/s"]
        if rows and len(rows[0]) > 2:
            header += ["redis-py asyncio items/s", "txredisapi / redis-py"]
        print(table("Claim/ack round trips through the store's scripts", header, rows))
    if args.only in (None, "runs"):
        rows = runs(repeats, args.http)
        print(
            table(
                "10,000 URLs of 1 KB, width 50 (best of "
                f"{repeats}; wall time, process start-up included; "
                f"fetch.http: {args.http})",
                [
                    "run",
                    "seconds",
                    "URLs/s",
                    "ratio",
                    "CPU s (fetchq)",
                    "redis-server CPU us/row",
                ],
                rows,
            )
        )
    if args.only in (None, "memory"):
        rows = memory(args.rows)
        print(
            table(
                "Redis memory per row (used_memory, bytes)",
                ["rows", "pending", "leased", "done"],
                rows,
            )
        )
    if args.only in (None, "rate"):
        rows = rate(4000)
        print(
            table(
                "3 workers, queue.rate 200/s, per_host.width 4, 3 hosts",
                ["the site saw", "rate", "per whole second", "most at once per host"],
                rows,
            )
        )

    if args.only in (None, "kill"):
        rows = kill(4000)
        print(
            table(
                "3 workers at 200/s, one killed with SIGKILL after 5 s of requests",
                [
                    "rows",
                    "done before the kill / requests by then",
                    "records",
                    "done-before-kill fetched again",
                    "paths fetched twice",
                    "outcomes",
                ],
                rows,
            )
        )


if __name__ == "__main__":
    main()
