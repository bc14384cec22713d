"""Pacing against real services, on this machine's wall clock (issue 13).

Each section runs ``fetchq run`` (in its own process, as a user would)
against a real server in another process, and prints a Markdown table with
the target, the figure and the machine's load average (``os.getloadavg``)
before and after.  The same behaviours are asserted, in simulated time, by
``tests/test_control_pacing.py``; the ``sim`` section prints those figures
too.

1. ``leaky``: nginx (``/usr/sbin/nginx`` or on PATH) in front of static
   files, ``limit_req zone=... rate=R burst=B nodelay; limit_req_status
   429;`` (no Retry-After), a fetch recipe with ``queue.adaptive`` (default
   algorithm), started at width W, no rate set.  Pages: the issue's 1,500
   at 100/s, else 15 s of the quota's work plus the burst (30 s for 10/s).
   Targets: every page ok, run time <= 1.2x the lower bound
   ``(pages - burst - 1) / rate``, <= 5% of requests refused.  By default
   the issue's case (100/s, burst 20, width 50) and two corners; ``--grid``
   runs quotas 10, 100, 1,000/s by bursts 1, 20, 100 by widths 4, 50.
2. ``sms``: the fake provider (``python -m fetchq.testing.sms --strict
   --jitter 0.02``) refusing (20429) a sender's second message within 1 s,
   acceptance times jittered by +-20 ms; an sms recipe of 100 messages over
   5 senders at ``per_sender.rate: 1/s``, with and without
   ``adaptive.per_lane: true``.  Targets (adaptive): <= 5 refusals per 100
   messages, run time <= 1.3x the bound (19 s: each sender's 20 messages
   1 s apart).
3. ``pool``: an application server with 16 workers at 40 ms and a FIFO line
   (``tests/bench/_pool_server.py``), 4,000 URLs, fixed widths 12, 16, 20,
   24 and ``queue.adaptive`` from width 4, ``--repeat`` times each (the
   median is reported).  Targets: adaptive within 1.1x of the best fixed
   width's time, the server's own median latency <= 1.5x its service time.
4. ``hog``: the demo site of capacity 24 (50 ms, +2 ms per request over)
   with ``--hogs`` busy processes on the machine (default 2: both cores of
   this machine), adaptive from width 2 against fixed 13 and 24, 2,500
   pages.  Reported: run times, the width in the second half, and the
   summary's controller line ("client-bound at N% CPU" when the client was
   the bottleneck).  ``hogthread`` (not in the default set): the same
   with a thread spinning inside the run's own process instead.
5. ``sim``: the same targets on the simulated servers of
   :mod:`fetchq.control.models`, exact and repeatable.

Run: ``python -m tests.bench.bench_pacing`` (about 4 minutes; ``--grid``
about 12 more; ``--only leaky,sms,pool,hog,hogthread,sim`` picks
sections).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fetchq.control import AdaptiveController
from fetchq.control.load import LoadReading
from fetchq.control.models import (
    ClientCPU,
    LeakyBucketServer,
    StrictSenderServer,
    WorkerPoolServer,
)
from fetchq.control.sim import CapacityServer, simulate
from fetchq.demo.site import SiteProcess
from fetchq.testing.sms import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from tests.adaptive_site import CAPACITY
from tests.bench._common import table
from tests.bench._fetch_server import free_port, page_body
from tests.bench._pool_server import PoolServer

ROOT = Path(__file__).resolve().parents[2]


def load() -> str:
    """The 1-minute load average, as text."""
    return f"{os.getloadavg()[0]:.2f}"


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


# ``fetchq run`` with a thread that spins in the same process: it takes the
# GIL from the reactor for 5 ms slices, so the run's own loop runs late.
_HOGGED = """\
import sys, threading
def burn():
    while True:
        pass
threading.Thread(target=burn, daemon=True).start()
from fetchq.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def run_recipe(
    folder: Path, recipe: str, *, hogged: bool = False
) -> tuple[dict[str, Any], str]:
    """``fetchq run recipe.yaml --report r.html`` in ``folder`` (``hogged``:
    with a spinning thread in the same process): the report's timeline and
    the run's stderr (its summary)."""
    (folder / "recipe.yaml").write_text(recipe, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TWILIO_AUTH_TOKEN=DEFAULT_AUTH_TOKEN)
    start = ["-c", _HOGGED] if hogged else ["-m", "fetchq"]
    done = subprocess.run(
        [sys.executable, *start, "run", "recipe.yaml", "--report", "r.html"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"fetchq run failed ({done.returncode}): {done.stderr}")
    html = (folder / "r.html").read_text(encoding="utf-8")
    found = re.search(
        r'<script type="application/json" id="fetchq-timeline">(.*?)</script>',
        html,
        re.S,
    )
    assert found is not None
    timeline: dict[str, Any] = json.loads(found.group(1))
    return timeline, done.stderr


def summary_line(stderr: str, start: str) -> str:
    """The summary line starting with ``start`` (empty if none)."""
    for line in stderr.splitlines():
        if line.startswith(start):
            return line
    return ""


@contextmanager
def scratch() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="fetchq-bench-pacing-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, True)


# -- 1. leaky bucket: nginx limit_req ------------------------------------------

_NGINX = """\
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    log_format status '$status';
    access_log {dir}/access.log status;
    types {{ }}
    default_type text/html;
    keepalive_timeout 120s;
    keepalive_requests 1000000;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    limit_req_zone $binary_remote_addr zone=perclient:1m rate={rate}r/s;
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        root {dir}/www;
        location /page/ {{
            limit_req zone=perclient burst={burst} nodelay;
            limit_req_status 429;
            limit_req_log_level info;
        }}
        location = /ready {{ return 204; }}
    }}
}}
"""

FETCH_RECIPE = """\
kind: fetch
input:
  path: urls.txt
output:
  path: out.jsonl
queue:
  width: {width}
  adaptive:
    algorithm: default
    max_width: 100
  per_host:
    width: null
retry:
  max_attempts: 10
  base_delay: 50ms
  max_delay: 2s
fetch:
  allow_private: true
"""


@contextmanager
def nginx(folder: Path, rate: int, burst: int, pages: int) -> Iterator[str]:
    """nginx with ``limit_req`` in front of ``pages`` static pages; its base
    URL."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    www = folder / "www" / "page"
    www.mkdir(parents=True)
    (folder / "tmp").mkdir()
    for n in range(pages):
        (www / str(n)).write_bytes(page_body(n))
    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(_NGINX.format(dir=folder, port=port, rate=rate, burst=burst))
    process = subprocess.Popen(
        [binary, "-p", str(folder), "-c", str(conf), "-e", "stderr"],
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"nginx exited at start ({conf})")
            try:
                import urllib.request

                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready") as r:
                    if r.status == 204:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        (folder / "access.log").write_text("")  # the readiness checks
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait()


def leaky_case(
    rate: int, burst: int, width: int, *, unlimited: bool = False
) -> list[str]:
    """One nginx run; ``unlimited`` lifts the quota (1,000,000/s) to show
    the client's own ceiling on this machine for the same pages."""
    if rate == 100 and burst == 20:
        pages = 1500
    else:
        pages = int((30 if rate <= 10 else 15) * rate) + burst
    bound = (pages - burst - 1) / rate
    before = load()
    with scratch() as folder:
        quota = (1_000_000, 10_000) if unlimited else (rate, burst)
        with nginx(folder, *quota, pages) as base:
            with open(folder / "urls.txt", "w") as f:
                for n in range(pages):
                    f.write(f"{base}/page/{n}\n")
            timeline, stderr = run_recipe(folder, FETCH_RECIPE.format(width=width))
        statuses: dict[str, int] = {}
        for line in (folder / "access.log").read_text().split():
            statuses[line] = statuses.get(line, 0) + 1
        records = [
            json.loads(line) for line in (folder / "out.jsonl").read_text().splitlines()
        ]
    ok = sum(r["outcome"] == "ok" for r in records)
    refused = statuses.get("429", 0)
    requests = sum(statuses.values())
    end = timeline["end"]
    ratio = end / bound
    share = refused / requests if requests else 0.0
    controller = summary_line(stderr, "controller:").replace("controller: ", "")
    if unlimited:
        return [
            f"no quota (client's ceiling), width {width}",
            f"{pages:,}",
            f"{ok:,}",
            f"{end:.1f} s ({pages / end:.0f}/s)",
            f"{refused}",
            f"{before}-{load()}",
            "(reference)",
            controller or "-",
        ]
    return [
        f"{rate}/s, burst {burst}, width {width}",
        f"{pages:,}",
        f"{ok:,}",
        f"{end:.1f} s / {bound:.1f} s = {ratio:.2f}",
        f"{refused} ({share:.1%})",
        f"{before}-{load()}",
        verdict(ok == pages and ratio <= 1.2 and share <= 0.05),
        controller or "-",
    ]


def leaky(grid: bool) -> None:
    if grid:
        cases = [
            (rate, burst, width)
            for rate in (10, 100, 1000)
            for burst in (1, 20, 100)
            for width in (4, 50)
        ]
    else:
        cases = [(100, 20, 50), (10, 1, 4), (1000, 100, 50)]
    rows = [leaky_case(*case) for case in cases]
    rows.append(leaky_case(1000, 100, 50, unlimited=True))
    print(
        table(
            "Leaky bucket without Retry-After (nginx limit_req), wall clock",
            [
                "quota, start",
                "pages",
                "ok",
                "run time / bound",
                "refused (429)",
                "load avg",
                "<= 1.2x, <= 5%",
                "controller",
            ],
            rows,
        ),
        flush=True,
    )


# -- 2. strict per-sender provider --------------------------------------------

SMS_RECIPE = """\
kind: sms
input:
  path: messages.csv
  to_field: to
  from_field: from
  body_field: body
  id_field: id
output:
  path: out.jsonl
queue:
  width: 10
  per_sender:
    rate: 1/s
{adaptive}retry:
  max_attempts: 20
  base_delay: 1s
sms:
  base_url: {url}
  account_sid: {sid}
  auth_token: ${{TWILIO_AUTH_TOKEN}}
  from: "+12125550100"
  resend_check: false
"""

SENDERS = [f"+1212555030{i}" for i in range(5)]


@contextmanager
def strict_provider() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fetchq.testing.sms",
            f"--port={port}",
            "--latency=0.05",
            "--strict",
            "--jitter=0.02",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "fake SMS provider on" not in line:
            raise RuntimeError(f"the fake provider did not start ({line!r})")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait()


def sms_case(adaptive: bool, messages: int = 100) -> list[str]:
    before = load()
    bound = (messages / len(SENDERS) - 1) * 1.0
    with scratch() as folder, strict_provider() as url:
        with open(folder / "messages.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["to", "from", "body", "id"])
            for n in range(messages):
                sender = SENDERS[n % len(SENDERS)]
                writer.writerow([f"+1917555{n:04d}", sender, f"message {n}", n])
        extra = "  adaptive:\n    per_lane: true\n    max_width: 10\n"
        recipe = SMS_RECIPE.format(
            adaptive=extra if adaptive else "", url=url, sid=DEFAULT_ACCOUNT_SID
        )
        timeline, stderr = run_recipe(folder, recipe)
        records = [
            json.loads(line) for line in (folder / "out.jsonl").read_text().splitlines()
        ]
    ok = sum(r["outcome"] == "ok" for r in records)
    # A throttled try is not an attempt (its retry does not spend one), so
    # the refusals are the summary's 429s.
    statuses = re.search(r"^statuses:.*\b429 (\d+)", stderr, re.M)
    refused = int(statuses.group(1)) if statuses else 0
    end = timeline["end"]
    ratio = end / bound
    target = ok == messages and refused <= 5 * messages / 100 and ratio <= 1.3
    return [
        "per_lane: true" if adaptive else "per_sender.rate 1/s only",
        f"{ok}/{messages}",
        f"{refused}",
        f"{end:.1f} s / {bound:.0f} s = {ratio:.2f}",
        f"{before}-{load()}",
        verdict(target) if adaptive else "(the contrast)",
    ]


def sms() -> None:
    rows = [sms_case(False), sms_case(True)]
    print(
        table(
            "Strict per-sender provider, +-20 ms jitter (100 messages, 5 senders)",
            [
                "recipe",
                "sent",
                "refusals (20429)",
                "run time / bound",
                "load avg",
                "<= 5 per 100, <= 1.3x",
            ],
            rows,
        ),
        flush=True,
    )


# -- 3. worker pool -----------------------------------------------------------


def pool_case(width: int, adaptive: bool, pages: int = 4000) -> dict[str, Any]:
    server = PoolServer(16, 0.04)
    try:
        with scratch() as folder:
            with open(folder / "urls.txt", "w") as f:
                for n in range(pages):
                    f.write(f"{server.url}/page/{n}\n")
            recipe = FETCH_RECIPE.format(width=width)
            if not adaptive:
                recipe = recipe.replace(
                    "  adaptive:\n    algorithm: default\n    max_width: 100\n", ""
                )
            timeline, stderr = run_recipe(folder, recipe)
    finally:
        seen = server.stop()
    widths = [
        d["width"]
        for d in timeline["decisions"]
        if d["key"] is None and d["t"] >= timeline["end"] / 2
    ]
    return {
        "end": timeline["end"],
        "p50": seen["p50"],
        "p90": seen["p90"],
        "width": statistics.median(widths) if widths else width,
        "controller": summary_line(stderr, "controller:"),
    }


def pool(repeat: int) -> None:
    before = load()
    results: dict[str, list[dict[str, Any]]] = {}
    for _ in range(repeat):
        for width in (12, 16, 20, 24):
            results.setdefault(f"fixed {width}", []).append(pool_case(width, False))
        results.setdefault("adaptive from 4", []).append(pool_case(4, True))
    medians = {
        name: statistics.median(r["end"] for r in runs)
        for name, runs in results.items()
    }
    best = min(v for k, v in medians.items() if k.startswith("fixed"))
    rows = []
    for name, runs in results.items():
        end = medians[name]
        p50 = statistics.median(r["p50"] for r in runs)
        p90 = statistics.median(r["p90"] for r in runs)
        target = ""
        if name.startswith("adaptive"):
            target = verdict(end <= 1.1 * best and p50 <= 1.5 * 0.04)
        rows.append(
            [
                name,
                ", ".join(f"{r['end']:.1f}" for r in runs),
                f"{end / best:.2f}",
                ", ".join(f"{r['width']:g}" for r in runs),
                f"{1000 * p50:.1f} / {1000 * p90:.1f} ms",
                target,
            ]
        )
    print(
        table(
            f"Worker pool of 16 at 40 ms, FIFO line (4,000 URLs; load avg "
            f"{before}-{load()})",
            [
                "run",
                "run times (s)",
                "median / best fixed",
                "width, 2nd half",
                "server p50 / p90",
                "<= 1.1x, p50 <= 60 ms",
            ],
            rows,
        ),
        flush=True,
    )
    for runs in results["adaptive from 4"]:
        print(f"    {runs['controller']}")
    print(flush=True)


# -- 4. a CPU hog on the machine ----------------------------------------------


def hog_case(
    width: int, adaptive: bool, pages: int = 2500, *, hogged: bool = False
) -> list[str]:
    before = load()
    site = SiteProcess(f"--pages={pages}", *CAPACITY)
    try:
        with scratch() as folder:
            with open(folder / "urls.txt", "w") as f:
                for n in range(pages):
                    f.write(f"{site.url}/page/{n}\n")
            recipe = FETCH_RECIPE.format(width=width)
            if not adaptive:
                recipe = recipe.replace(
                    "  adaptive:\n    algorithm: default\n    max_width: 100\n", ""
                )
            timeline, stderr = run_recipe(folder, recipe, hogged=hogged)
    finally:
        site.stop()
    widths = [
        d["width"]
        for d in timeline["decisions"]
        if d["key"] is None and d["t"] >= timeline["end"] / 2
    ]
    return [
        f"adaptive from {width}" if adaptive else f"fixed {width}",
        f"{timeline['end']:.1f} s",
        f"{statistics.median(widths):g}" if widths else str(width),
        summary_line(stderr, "controller:").replace("controller: ", "") or "-",
        f"{before}-{load()}",
    ]


def hogthread() -> None:
    """The same site with a spinning thread inside each run's process."""
    rows = [
        hog_case(2, True, hogged=True),
        hog_case(13, False, hogged=True),
        hog_case(24, False, hogged=True),
    ]
    print(
        table(
            "Capacity 24 at 50 ms, a spinning thread in the client's own "
            "process (2,500 pages)",
            ["run", "run time", "width, 2nd half", "controller", "load avg"],
            rows,
        ),
        flush=True,
    )


def hog(hogs: int) -> None:
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(hogs)
    ]
    try:
        time.sleep(1)
        rows = [hog_case(2, True), hog_case(13, False), hog_case(24, False)]
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    print(
        table(
            f"Capacity 24 at 50 ms with {hogs} CPU hogs on the machine (2,500 pages)",
            ["run", "run time", "width, 2nd half", "controller", "load avg"],
            rows,
        ),
        flush=True,
    )


# -- 5. the same in simulated time --------------------------------------------


class SpinningThread:
    """A client read as saturated at any width: a full core, the loop late
    by ``cpu``'s slices (what a thread spinning in the process showed while
    the CPU share was the process's; the loop's own thread is read now)."""

    def __init__(self, cpu: ClientCPU) -> None:
        self.cpu = cpu

    def read(self, due: float, now: float) -> LoadReading:
        return LoadReading(self.cpu.read(due, now).lag, 1.0)


def sim() -> None:
    rows = []
    for rate in (10, 100, 1000):
        for burst in (1, 20, 100):
            for width in (1, 50):
                jobs = max(1500, int(30 * rate) + burst)
                servers: list[LeakyBucketServer] = []

                def server(
                    clock: Any,
                    r: float = rate,
                    b: int = burst,
                    servers: list[LeakyBucketServer] = servers,
                ) -> Any:
                    servers.append(LeakyBucketServer(clock, r, b, latency=0.001))
                    return servers[-1]

                result = simulate(
                    server,
                    AdaptiveController(max_width=100, rng=random.Random(1)),
                    jobs=jobs,
                    width=width,
                )
                bucket = servers[-1]
                bound = (jobs - burst - 1) / rate
                share = bucket.refused / (bucket.accepted + bucket.refused)
                rows.append(
                    [
                        f"{rate}/s, burst {burst}, width {width}",
                        f"{jobs:,}",
                        f"{result.elapsed / bound:.2f}",
                        f"{bucket.refused} ({share:.1%})",
                        verdict(result.elapsed <= 1.2 * bound and share <= 0.05),
                    ]
                )
    print(
        table(
            "Simulated leaky buckets (1 ms answers; 30 s of work, >= 1,500 jobs)",
            ["quota, start", "jobs", "time / bound", "refused", "<= 1.2x, <= 5%"],
            rows,
        ),
        flush=True,
    )
    rows = []
    for seed in range(5):
        for per_lane in (False, True):
            strict: list[StrictSenderServer] = []

            def provider(
                clock: Any,
                seed: int = seed,
                strict: list[StrictSenderServer] = strict,
            ) -> Any:
                strict.append(
                    StrictSenderServer(
                        clock,
                        lambda arg: int(arg) % 5,  # type: ignore[call-overload]
                        jitter=0.02,
                        latency=0.1,
                        rng=random.Random(seed),
                        connect=0.05,  # a first request's connection
                    )
                )
                return strict[-1]

            controller: Any = (
                AdaptiveController(max_width=10, per_lane=True, rng=random.Random(seed))
                if per_lane
                else 10
            )
            result = simulate(
                provider,
                controller,
                jobs=100,
                key=lambda i: i % 5,
                width=10,
                lane_rate=1.0,
                seed=seed,
            )
            ratio = result.elapsed / 19.1
            rows.append(
                [
                    f"seed {seed}",
                    "per_lane" if per_lane else "1/s only",
                    str(strict[-1].refused),
                    f"{ratio:.2f}",
                    verdict(strict[-1].refused <= 5 and ratio <= 1.3)
                    if per_lane
                    else "",
                ]
            )
    print(
        table(
            "Simulated strict senders, +-20 ms jitter (100 messages, 5 senders)",
            ["run", "controller", "refusals", "time / bound", "<= 5, <= 1.3x"],
            rows,
        ),
        flush=True,
    )
    rows = []
    for label, hog, slice_ in (
        ("quiet", 0.0, 0.0),
        ("core shared, 5 ms slices", 0.3, 0.005),
        ("core half taken, 10 ms slices", 0.5, 0.01),
    ):
        fixed = {}
        for width in (12, 16, 20, 24):
            cpu = ClientCPU(0.0008, 0.0012, hog, slice_)
            fixed[width] = simulate(
                lambda c, cpu=cpu: cpu.wrap(c, WorkerPoolServer(c, 16, 0.04)),
                width,
                jobs=4000,
            ).elapsed
        pools: list[WorkerPoolServer] = []
        cpu = ClientCPU(0.0008, 0.0012, hog, slice_)

        def pool_server(
            clock: Any,
            cpu: ClientCPU = cpu,
            pools: list[WorkerPoolServer] = pools,
        ) -> Any:
            pools.append(WorkerPoolServer(clock, 16, 0.04))
            return cpu.wrap(clock, pools[-1])

        result = simulate(
            pool_server,
            AdaptiveController(max_width=100, load=cpu, rng=random.Random(1)),
            jobs=4000,
            width=4,
        )
        best = min(fixed.values())
        p50 = pools[-1].latency(0, result.elapsed)
        rows.append(
            [
                label,
                ", ".join(f"{w}: {t:.1f}" for w, t in fixed.items()),
                f"{result.elapsed:.1f} s ({result.elapsed / best:.2f}x)",
                f"{1000 * p50:.0f} ms",
                verdict(result.elapsed <= 1.1 * best and p50 <= 0.06),
            ]
        )
    for label, hog, slice_, spinning in (
        ("capacity 24, core half taken, 10 ms slices", 0.5, 0.01, False),
        ("capacity 24, client at 1/4 of a core", 0.75, 0.0, False),
        ("capacity 24, a thread spinning in the process", 0.5, 0.005, True),
    ):
        cpu = ClientCPU(0.0005, 0.001, hog, slice_)
        best = simulate(
            lambda c, cpu=cpu: cpu.wrap(c, CapacityServer(c, 24, 0.05)), 24, jobs=8000
        ).elapsed
        cpu = ClientCPU(0.0005, 0.001, hog, slice_)
        result = simulate(
            lambda c, cpu=cpu: cpu.wrap(c, CapacityServer(c, 24, 0.05)),
            AdaptiveController(
                max_width=100,
                load=SpinningThread(cpu) if spinning else cpu,
                rng=random.Random(1),
            ),
            jobs=8000,
            width=4,
        )
        bound = sum(d.client_bound for d in result.decisions)
        rows.append(
            [
                label,
                f"24: {best:.1f}",
                f"{result.elapsed:.1f} s ({result.elapsed / best:.2f}x)",
                f"client-bound in {bound} of {len(result.decisions)} decisions",
                verdict(result.elapsed <= 1.1 * best),
            ]
        )
    print(
        table(
            "Simulated busy clients (worker pool of 16 at 40 ms, 4,000 jobs; "
            "capacity 24 at 50 ms, 8,000 jobs), from width 4",
            ["client", "fixed widths (s)", "adaptive", "server p50 / note", "<= 1.1x"],
            rows,
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only",
        default="leaky,sms,pool,hog,sim",
        help="comma-separated sections (default: all)",
    )
    parser.add_argument("--grid", action="store_true", help="the whole nginx grid")
    parser.add_argument("--repeat", type=int, default=2, help="pool runs per width")
    parser.add_argument("--hogs", type=int, default=2, help="busy processes")
    args = parser.parse_args()
    started = time.perf_counter()
    chosen = set(args.only.split(","))
    print(f"{os.cpu_count()} CPUs, load average {load()} at the start.\n", flush=True)
    if "leaky" in chosen:
        leaky(args.grid)
    if "sms" in chosen:
        sms()
    if "pool" in chosen:
        pool(args.repeat)
    if "hog" in chosen:
        hog(args.hogs)
    if "hogthread" in chosen:
        hogthread()
    if "sim" in chosen:
        sim()
    print(f"({time.perf_counter() - started:.0f} s of wall time)")


if __name__ == "__main__":
    main()
