"""Lanes in the run, end to end: input sorted by host (or sender) against the
same input shuffled, through a real ``fetchq run``; and memory with a
million rows over a hundred thousand hosts.

1. **Hosts.**  A small web server in its own process answers on
   127.0.0.1-127.0.0.5 (five hosts, one port).  ``fetchq run`` fetches 5 x 60
   URLs with ``per_host.rate: 10/s``, the input sorted by host, then
   shuffled, alternated ``--repeats`` times; wall time of each process.
   Lower bound: 5.9 s (60 launches per host at 10/s).  Target: sorted within
   1.15x of shuffled.
2. **Senders.**  ``fetchq fake sms`` in its own process; an sms recipe sends
   5 senders x 20 messages sorted by sender at the default 1 message/s per
   sender.  Lower bound 19 s.  Target: within 1.15x of shuffled.
3. **Memory.**  The run pipeline with a stub fetcher (as
   ``bench_pipeline``) and the default SQLite state, over 100,000 rows on
   10,000 hosts and over 1,000,000 rows on 100,000 hosts, sorted by host:
   peak RSS of each (its own process).  Target: bounded -- the 10x input
   costs about the same memory (ratio near 1).

Run: ``.venv/bin/python -m tests.bench.bench_lanes`` (about 2 minutes;
``--quick`` skips the million rows).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench._common import table

HOSTS = 5

SERVER = """
import sys
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

class Ok(Resource):
    isLeaf = True
    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/plain")
        return b"x" * 512

site = Site(Ok())
port = reactor.listenTCP(0, site, interface="127.0.0.1")
number = port.getHost().port
for n in range(2, %d + 1):
    reactor.listenTCP(number, site, interface=f"127.0.0.{n}")
print(number, flush=True)
reactor.run()
"""

FETCH_RECIPE = """\
kind: fetch
input:
  path: urls.txt
output:
  path: out/result.jsonl
queue:
  width: 16
  per_host:
    width: 8
    rate: 10/s
"""

SMS_RECIPE = """\
kind: sms
input:
  path: messages.csv
  id_field: id
  from_field: from
output:
  path: out/sent.jsonl
sms:
  base_url: {base}
  account_sid: {sid}
  auth_token: {token}
  body: "Hello {{name}}"
"""


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    return dict(os.environ, PYTHONPATH=root)


def _timed_run(folder: Path, recipe: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "fetchq", "run", recipe],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"fetchq run failed: {done.stderr[-2000:]}")
    return elapsed


def hosts(repeats: int) -> list[list[str]]:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER % HOSTS], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        urls = [
            f"http://127.0.0.{h}:{port}/p/{n}"
            for h in range(1, HOSTS + 1)
            for n in range(60)
        ]
        shuffled = list(urls)
        random.Random(5).shuffle(shuffled)
        times: dict[str, list[float]] = {"sorted": [], "shuffled": []}
        for _ in range(repeats):
            for name, order in (("sorted", urls), ("shuffled", shuffled)):
                folder = Path(tempfile.mkdtemp(prefix="fetchq-bench-lanes-"))
                (folder / "urls.txt").write_text("".join(u + "\n" for u in order))
                (folder / "r.yaml").write_text(FETCH_RECIPE)
                times[name].append(_timed_run(folder, "r.yaml", _env()))
    finally:
        server.terminate()
        server.wait()
    best = {k: min(v) for k, v in times.items()}
    return [
        [
            f"{HOSTS} hosts x 60 URLs, 10/s each",
            "5.9",
            f"{best['sorted']:.2f}",
            f"{best['shuffled']:.2f}",
            f"{best['sorted'] / best['shuffled']:.2f}",
        ]
    ]


def senders(repeats: int) -> list[list[str]]:
    from fetchq.testing.sms import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN

    port = _free_port()
    fake = subprocess.Popen(
        [sys.executable, "-m", "fetchq", "fake", "sms", "--port", str(port)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert fake.stdout is not None
        fake.stdout.readline()
        rows = [
            (f"m{s}-{n}", f"+1646555{2000 + 20 * s + n}", f"+1212555{1000 + s}")
            for s in range(5)
            for n in range(20)
        ]
        shuffled = list(rows)
        random.Random(5).shuffle(shuffled)
        times: dict[str, list[float]] = {"sorted": [], "shuffled": []}
        for _ in range(repeats):
            for name, order in (("sorted", rows), ("shuffled", shuffled)):
                folder = Path(tempfile.mkdtemp(prefix="fetchq-bench-senders-"))
                lines = ["id,to,from,name"] + [f"{i},{t},{f},Ann" for i, t, f in order]
                (folder / "messages.csv").write_text("\n".join(lines) + "\n")
                (folder / "sms.yaml").write_text(
                    SMS_RECIPE.format(
                        base=f"http://127.0.0.1:{port}",
                        sid=DEFAULT_ACCOUNT_SID,
                        token=DEFAULT_AUTH_TOKEN,
                    )
                )
                times[name].append(_timed_run(folder, "sms.yaml", _env()))
    finally:
        fake.terminate()
        fake.wait()
    best = {k: min(v) for k, v in times.items()}
    return [
        [
            "5 senders x 20 messages, 1/s each",
            "19",
            f"{best['sorted']:.2f}",
            f"{best['shuffled']:.2f}",
            f"{best['sorted'] / best['shuffled']:.2f}",
        ]
    ]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def memory_child(rows: int, hosts: int) -> None:
    """One run over ``rows`` URLs on ``hosts`` hosts, sorted by host, with a
    stub fetcher; print peak RSS and the queue's largest size."""
    from twisted.internet import defer, reactor

    import fetchq.kinds.fetch
    import fetchq.run
    from fetchq.recipe import load_recipe
    from tests.bench.bench_pipeline import StubFetcher

    fetchq.kinds.fetch.Fetcher = StubFetcher  # type: ignore[assignment,misc]
    folder = Path(tempfile.mkdtemp(prefix="fetchq-bench-lanes-mem-"))
    per_host = rows // hosts
    with open(folder / "urls.txt", "w") as f:
        for h in range(hosts):
            for n in range(per_host):
                f.write(f"http://h{h}.example/p/{n}\n")
    (folder / "r.yaml").write_text(
        "kind: fetch\ninput:\n  path: urls.txt\noutput:\n  path: out.jsonl\n"
        "queue:\n  width: 50\n  per_host:\n    width: 2\n"
    )
    recipe = load_recipe(folder / "r.yaml")
    run = fetchq.run.Run(recipe, reactor, stream=io.StringIO())
    most = [0]

    def watch() -> None:
        underway, pending = run.queue.size()
        most[0] = max(most[0], underway + pending)
        reactor.callLater(0.05, watch)

    outcome: dict[str, Any] = {}

    def go() -> None:
        watch()
        d = defer.ensureDeferred(run.run())
        d.addBoth(lambda result: outcome.update(code=result))
        d.addBoth(lambda _: reactor.stop())

    start = time.perf_counter()
    reactor.callWhenRunning(go)
    reactor.run()
    if outcome.get("code") != 0:
        raise SystemExit(f"the run failed: {outcome}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {"rss_mb": peak, "most": most[0], "seconds": time.perf_counter() - start}
        )
    )


def memory(quick: bool) -> list[list[str]]:
    sizes = [(100_000, 10_000)] if quick else [(100_000, 10_000), (1_000_000, 100_000)]
    found = []
    for rows, hosts_n in sizes:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.bench.bench_lanes",
                "--memory-child",
                f"{rows},{hosts_n}",
            ],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if done.returncode != 0:
            raise SystemExit(done.stderr[-2000:] or done.stdout)
        found.append((rows, hosts_n, json.loads(done.stdout.splitlines()[-1])))
    base = found[0][2]["rss_mb"]
    return [
        [
            f"{rows:,}",
            f"{hosts_n:,}",
            f"{r['rss_mb']:.1f}",
            f"{r['rss_mb'] / base:.2f}",
            str(r["most"]),
            f"{r['seconds']:.0f}",
        ]
        for rows, hosts_n, r in found
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.memory_child:
        rows, hosts_n = map(int, args.memory_child.split(","))
        memory_child(rows, hosts_n)
        return
    header = ["input", "bound (s)", "sorted (s)", "shuffled (s)", "sorted / shuffled"]
    rows = hosts(args.repeats) + senders(args.repeats)
    print(
        table(
            f"fetchq run, sorted against shuffled (best of {args.repeats})",
            header,
            rows,
        )
    )
    print(
        table(
            "Memory: the run pipeline (stub fetcher, SQLite state), sorted by host",
            [
                "rows",
                "hosts",
                "peak RSS (MB)",
                "vs the first",
                "most jobs in the queue",
                "seconds",
            ],
            memory(args.quick),
        )
    )


if __name__ == "__main__":
    main()
