"""The main job, whole: ``fetchq run RECIPE`` against a treq script, wall time
including process start-up (issue 13, section 4).

fetchq is byte-compiled first (:func:`compile_fetchq`), as an installed
package is.  A local nginx in a process of its own (see ``_fetch_server``: a generated
config, one worker, ``access_log off``, a free port on 127.0.0.1) serves
10,000 static files of 1 KB.  Two commands then fetch each of those URLs once,
alternated ``--repeats`` times, each timed from its start to its exit:

- *fetchq*: the ``fetchq`` command (``fetchq run recipe.yaml``) on a recipe of
  the URLs (a text file in, JSONL out, ``queue.width`` 50,
  ``queue.per_host.width`` 50, no rate) with the default durable SQLite
  state, in a fresh directory each round, its stdout and stderr to pipes (so
  the progress display is the one for a log, not a terminal);
- *treq*: ``python tests/bench/_treq_script.py urls.txt 50``, treq +
  ``DeferredSemaphore(50)`` over one persistent pool of 50 connections per
  host, every body read, nothing written.

Every fetchq round must leave one ``ok`` record of 1 KB per URL and a state
file, every treq round 10,000 answers 200 of 1 KB, or the benchmark fails.
The figure is the ratio of their speeds (treq's seconds over fetchq's), per
round and best against best; the target is at least 1.0x.  The table also
gives each command's CPU (user + system, from ``wait4``), peak RSS, the
server's CPU, and the load average before each round: this is a shared
machine, so read the rounds, not only the best.

Run: ``.venv/bin/python -m tests.bench.bench_main_job`` from the repository
root (about a minute; ``--help`` for the options).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.bench._common import table
from tests.bench.bench_fetch import BODY_SIZE, check_output, version

ROOT = Path(__file__).resolve().parents[2]
TREQ_SCRIPT = Path(__file__).resolve().with_name("_treq_script.py")

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
fetch:
  http: {http}
"""


def fetchq_command() -> list[str]:
    """The installed ``fetchq`` script beside this interpreter, else
    ``python -m fetchq``."""
    script = Path(sys.executable).with_name("fetchq")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "fetchq"]


def compile_fetchq() -> None:
    """Byte-compile fetchq as ``pip install`` does for an installed package.

    The treq script's imports (Twisted, treq) come compiled from
    site-packages; fetchq here is an editable install, and with
    ``PYTHONDONTWRITEBYTECODE`` set no ``__pycache__`` is ever written, so
    each round would compile ~70 modules from source (~0.3 s) where a user's
    installed fetchq would not.
    """
    import compileall

    compileall.compile_dir(ROOT / "fetchq", quiet=1)


def timed_process(command: list[str], cwd: Path) -> dict[str, Any]:
    """Run ``command`` to its end: wall seconds from spawn to exit, the
    child's CPU and peak RSS (``wait4``), its output."""
    out = cwd / "stdout.txt"
    err = cwd / "stderr.txt"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    return {
        "seconds": seconds,
        "cpu": usage.ru_utime + usage.ru_stime,
        "maxrss_kb": usage.ru_maxrss,
        "code": process.returncode,
        "stdout": out.read_text(errors="replace"),
        "stderr": err.read_text(errors="replace"),
    }


def run_fetchq(
    urls: list[str], width: int, workdir: Path, http: str = "treq"
) -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="fetchq-", dir=workdir))
    (directory / "urls.txt").write_text("\n".join(urls) + "\n", encoding="utf-8")
    (directory / "recipe.yaml").write_text(RECIPE.format(width=width, http=http))
    result = timed_process([*fetchq_command(), "run", "recipe.yaml"], directory)
    if result["code"] != 0:
        raise SystemExit(
            f"fetchq run exited {result['code']}: {result['stderr'][-2000:]}"
        )
    check_output(directory / "out" / "results.jsonl", urls)
    state = directory / "out" / "results.jsonl.state.sqlite"
    if not state.exists():
        raise SystemExit(f"fetchq run left no state file {state}")
    shutil.rmtree(directory)
    return result


def run_treq(
    urls: list[str],
    width: int,
    workdir: Path,
    script: Path = TREQ_SCRIPT,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The treq script (or another ``script`` that prints the same tally,
    with ``extra`` arguments) over ``urls``, checked."""
    directory = Path(tempfile.mkdtemp(prefix="treq-", dir=workdir))
    (directory / "urls.txt").write_text("\n".join(urls) + "\n", encoding="utf-8")
    command = [sys.executable, str(script), "urls.txt", str(width), *extra]
    result = timed_process(command, directory)
    lines = [x for x in result["stdout"].splitlines() if x.startswith("{")]
    if result["code"] != 0 or not lines:
        raise SystemExit(f"the treq script failed: {result['stderr'][-2000:]}")
    tally = json.loads(lines[-1])
    statuses = Counter({int(k): v for k, v in tally["statuses"].items()})
    if (
        statuses != Counter({200: len(urls)})
        or tally["bytes"] != len(urls) * BODY_SIZE
        or tally["errors"]
    ):
        raise SystemExit(f"the treq script got {tally}")
    shutil.rmtree(directory)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=10_000, help="URLs (distinct)")
    parser.add_argument("--width", type=int, default=50, help="requests at once")
    parser.add_argument("--repeats", type=int, default=3, help="rounds, alternated")
    parser.add_argument(
        "--server", choices=["auto", "nginx", "twisted"], default="nginx"
    )
    parser.add_argument(
        "--http",
        choices=["treq", "lean", "both"],
        default="both",
        help="fetchq's fetch.http (both: a round runs each)",
    )
    args = parser.parse_args()
    paths = ["treq", "lean"] if args.http == "both" else [args.http]
    names = ["treq", *(f"fetchq {http}" for http in paths)]

    from tests.bench._fetch_server import serve

    compile_fetchq()
    workdir = Path(tempfile.mkdtemp(prefix="fetchq-bench-main-"))
    rounds: list[dict[str, Any]] = []
    try:
        with serve(args.pages, args.server) as server:
            urls = [f"{server.base}/page/{n}" for n in range(args.pages)]
            print(
                f"Server: {server.version} ({server.kind}) at {server.base}, "
                f"{args.pages:,} pages of {BODY_SIZE} bytes.  Clients: Python "
                f"{platform.python_version()}, Twisted {version('twisted')}, "
                f"treq {version('treq')}; {os.cpu_count()} CPUs.  fetchq: "
                f"{' '.join(fetchq_command())} run recipe.yaml\n",
                flush=True,
            )
            for n in range(1, args.repeats + 1):
                row: dict[str, Any] = {"round": n}
                # Alternate which goes first, so neither always follows the
                # other's leftovers (TIME_WAIT sockets, a warm page cache).
                order = names if n % 2 else names[::-1]
                for name in order:
                    load = os.getloadavg()[0]
                    cpu = server.cpu_seconds()
                    if name == "treq":
                        result = run_treq(urls, args.width, workdir)
                    else:
                        http = name.split()[1]
                        result = run_fetchq(urls, args.width, workdir, http)
                    result["server_cpu"] = server.cpu_seconds() - cpu
                    result["load"] = load
                    row[name] = result
                    print(
                        f"  round {n} {name}: {result['seconds']:.2f} s, "
                        f"CPU {result['cpu']:.2f} s, load {load:.2f}",
                        file=sys.stderr,
                        flush=True,
                    )
                rounds.append(row)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(report(rounds, args))


def report(rounds: list[dict[str, Any]], args: argparse.Namespace) -> str:
    def mb(kb: float) -> str:
        return f"{kb / 1024:.1f}"

    def per_request(cpu: float) -> str:
        return f"{cpu / args.pages * 1e6:.0f}"

    names = [name for name in rounds[0] if name.startswith("fetchq")]
    rows = []
    for row in rounds:
        t = row["treq"]
        every = [t, *(row[name] for name in names)]
        rows.append(
            [
                str(row["round"]),
                " / ".join(f"{r['seconds']:.2f}" for r in every),
                " / ".join(
                    f"{t['seconds'] / row[name]['seconds']:.2f}x" for name in names
                ),
                " / ".join(per_request(r["cpu"]) for r in every),
                " / ".join(mb(r["maxrss_kb"]) for r in every),
                " / ".join(f"{r['server_cpu']:.2f}" for r in every),
                " / ".join(f"{r['load']:.2f}" for r in every),
            ]
        )
    best_t = min(r["treq"]["seconds"] for r in rounds)
    who = " / ".join(["treq", *names])
    targets = []
    for name in names:
        best_f = min(r[name]["seconds"] for r in rounds)
        ratio = best_t / best_f
        worst = min(r["treq"]["seconds"] / r[name]["seconds"] for r in rounds)
        targets.append(
            [
                f"{name} (durable SQLite state) ≥ 1.0x treq + "
                "DeferredSemaphore, best against best (worst round)",
                f"{best_t:.2f} s / {best_f:.2f} s = {ratio:.2f}x ({worst:.2f}x)",
                "met" if ratio >= 1.0 else "**missed**",
            ]
        )
    out = [
        table(
            f"{args.pages:,} URLs of {BODY_SIZE} bytes from a local nginx, width "
            f"{args.width}, wall time of the whole process (alternated "
            f"{args.repeats} times)",
            [
                "round",
                f"seconds {who}",
                "speed vs treq",
                f"CPU µs/request {who}",
                f"peak RSS MB {who}",
                f"server CPU s {who}",
                f"load avg (1 min) before {who}",
            ],
            rows,
        ),
        table("Target (issue 13, section 4)", ["target", "measured", ""], targets),
    ]
    return "\n".join(out)


if __name__ == "__main__":
    main()
