"""Run every benchmark: ``python -m tests.bench`` (``make bench``)."""

from __future__ import annotations

import subprocess
import sys

for module in (
    "tests.bench.bench_dispatch",
    "tests.bench.bench_memory",
    "tests.bench.bench_store",
    "tests.bench.bench_control",
    "tests.bench.bench_pipeline",
    "tests.bench.bench_lanes",
    "tests.bench.bench_fetch",
    "tests.bench.bench_redis",
    "tests.bench.bench_adaptive_run",
    "tests.bench.bench_shared",
    "tests.bench.bench_admin",
    "tests.bench.bench_admin_reach",
    "tests.bench.bench_redis_client",
    "tests.bench.bench_main_job",
    "tests.bench.bench_main_job_parts",
    "tests.bench.bench_pacing",
):
    print(f"## {module}\n", flush=True)
    subprocess.run([sys.executable, "-m", module, *sys.argv[1:]], check=True)
