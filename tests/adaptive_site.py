"""``fetchq run`` of an adaptive recipe in one process against the demo site
in another, over loopback: shared by ``tests/test_adaptive_run.py`` (what
holds however loaded the machine is) and ``tests/bench/bench_adaptive_run.py``
(the widths and times it reaches, which depend on the machine)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from fetchq.demo.site import SiteProcess

ROOT = Path(__file__).resolve().parent.parent

CAPACITY = (
    "--latency=0.05",
    "--capacity=24",
    "--overload-latency=0.002",
    "--client-rate=100000",
    "--no-faults",
)
"""A site of known capacity: 24 requests in flight at 50 ms; past that each
answer slows by 2 ms per extra request.  No quota, no faults."""

QUOTA = ("--latency=0.01", "--capacity=1000", "--client-rate=100", "--no-faults")
"""A site with a request-rate quota instead: 100 requests/s per client, 429
with Retry-After past it, which width alone cannot obey."""

RECIPE = """\
kind: fetch
input:
  path: urls.txt
output:
  path: out.jsonl
queue:
  width: 2
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


def run_recipe(
    folder: Path, site: SiteProcess, pages: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Write the URLs and the recipe, ``fetchq run --report``; the report's
    embedded timeline and the output records (checked: one per page, each
    ok, and the controller announced on stderr)."""
    with open(folder / "urls.txt", "w", encoding="utf-8") as f:
        for i in range(pages):
            f.write(f"{site.url}/page/{i}\n")
    (folder / "recipe.yaml").write_text(RECIPE, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "fetchq", "run", "recipe.yaml", "--report", "r.html"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "controller: default" in done.stderr
    html = (folder / "r.html").read_text(encoding="utf-8")
    found = re.search(
        r'<script type="application/json" id="fetchq-timeline">(.*?)</script>',
        html,
        re.S,
    )
    assert found is not None
    timeline: dict[str, Any] = json.loads(found.group(1))
    records = [
        json.loads(line)
        for line in (folder / "out.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert len(records) == pages
    assert {r["outcome"] for r in records} == {"ok"}
    return timeline, records
