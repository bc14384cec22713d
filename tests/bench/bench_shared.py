"""Limits shared through Redis, in real time on loopback.

1. **Shared API quota** (issue 10): three SharedRuns of one api recipe
   (each running at most 6 calls at once; the run widened to 48) against
   the fake X API on a port, 15 calls per 3 s window, 75 rows.  The figure
   is the span of the calls (first request to last answer) against the
   quota's bound, and the 429s; the baseline is the same run with each
   worker keeping its own budget (as before the shared budget).  Both the
   fake's X-style windows (a window starts at its first request; resets are
   whole seconds, rounded up) and aligned windows (at multiples of 3 s,
   resets exact) are measured.  The bound counts no time for the resets'
   rounding or the caller's margin; the last column compares with what the
   announced resets (rounded up, plus the 100 ms margin) allow.
2. **Callers launching at once**: three ApiCallers, each with its own
   queue (width 15), 45 calls at once against the same quota: one budget
   in Redis, or a budget each.
3. **SharedLimits throughput**: 3 queues (3 connections) attached to one
   shared width of 30 run 3,000 jobs that return at once: jobs per second,
   and Redis script calls per job.

Run: ``python -m tests.bench.bench_shared`` (needs redis-server on PATH).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer, task

from fetchq import ResizableDispatchQueue
from fetchq.api import ApiCaller, ApiConfig, api_retry_policy
from fetchq.recipe import load_recipe
from fetchq.shared import RedisBudget, SharedLimits
from fetchq.shared_run import SharedRun
from fetchq.store.redis import RedisStore
from fetchq.testing.api import FakeXAPI
from fetchq.testing.served import serve_resource
from tests import redis_server
from tests.bench._common import table

TWEETS = "/2/users/{id}/tweets"
LIMIT, WINDOW, LATENCY, ROWS, WORKERS, WIDTH = 15, 3.0, 0.05, 75, 3, 6
MARGIN = 0.1  # the recipe's reset_margin

RECIPE = """\
kind: api
input:
  path: users.jsonl
  id_field: id
output:
  path: out.jsonl
state:
  url: {url}
  run: {run}
queue:
  width: {width}
retry:
  max_attempts: 12
  base_delay: 100ms
api:
  base_url: {base}
  path: /2/users/{{id}}/tweets
  token: ${{API_TOKEN}}
  pagination:
    max_pages: 1
  records: page
  reset_margin: 100ms
{window}"""


class TimedXAPI(FakeXAPI):
    """The fake, noting when requests arrive and windows start."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.arrivals: list[float] = []
        self.starts: list[float] = []

    def render(self, request: Any) -> Any:
        self.arrivals.append(self.clock.seconds())
        return super().render(request)

    def _window(self, endpoint: str, now: float) -> Any:
        window = super()._window(endpoint, now)
        if not self.starts or self.starts[-1] != window.start:
            self.starts.append(window.start)
        return window


async def quota_run(
    reactor: Any, shared: bool, aligned: bool, window: bool = False
) -> dict[str, Any]:
    fake = TimedXAPI(
        reactor,
        quotas={TWEETS: (LIMIT, WINDOW)},
        latency=LATENCY,
        pages=1,
        aligned=aligned,
    )
    served = serve_resource(reactor, fake, 0, "127.0.0.1")
    folder = Path(tempfile.mkdtemp(prefix="bench-quota-"))
    run = redis_server.run_name("bench")
    url = redis_server.shared().url
    try:
        rows = [json.dumps({"id": str(1000 + i)}) for i in range(ROWS)]
        (folder / "users.jsonl").write_text("\n".join(rows) + "\n")
        recipe = folder / "api.yaml"
        known = f"  window: {WINDOW:g}s\n" if window else ""
        recipe.write_text(
            RECIPE.format(url=url, run=run, width=WIDTH, base=served.url, window=known)
        )
        admin = await RedisStore.connect(url, run, reactor)
        limits = {
            "width": WIDTH,
            "rate": None,
            "burst": 1,
            "lane_width": None,
            "lane_rate": None,
            "lane_burst": 1,
        }
        await admin.meta_set("run.limits", limits)
        await admin.configure(width=WIDTH * 8)
        with open(os.devnull, "w") as devnull:
            runs = [
                SharedRun(load_recipe(recipe), reactor, stream=devnull)
                for _ in range(WORKERS)
            ]
            if not shared:
                for one in runs:
                    one.kind.share = None  # type: ignore[attr-defined]
            codes = await defer.gatherResults([one.run() for one in runs])
        await admin.reset()
        await admin.close()
    finally:
        await served.stop()
        shutil.rmtree(folder, ignore_errors=True)
    first = fake.arrivals[0]
    span = fake.arrivals[-1] - first + LATENCY
    full = math.ceil(ROWS / LIMIT) - 1
    if aligned:
        bound = (math.floor(first / WINDOW) + full) * WINDOW - first + LATENCY
    else:
        bound = full * WINDOW + LATENCY
    # What the announced resets allow: each window's whole-second reset
    # (rounded up) plus the caller's margin, then the last answer.
    announced = LATENCY + sum(
        math.ceil(start + WINDOW) + MARGIN - start for start in fake.starts[:-1]
    )
    if aligned:
        announced = bound + full * MARGIN
    return {
        "codes": codes,
        "requests": len(fake.arrivals),
        "429": sum(fake.throttled.values()),
        "span": span,
        "bound": bound,
        "announced": announced,
    }


async def callers_run(reactor: Any, shared: bool) -> dict[str, Any]:
    """Three ApiCallers, each with its own queue (width 15, 15 rows),
    launching at once against one quota; budgets in Redis or apart."""
    fake = TimedXAPI(
        reactor, quotas={TWEETS: (LIMIT, WINDOW)}, latency=LATENCY, pages=1
    )
    served = serve_resource(reactor, fake, 0, "127.0.0.1")
    config = ApiConfig(
        base_url=served.url, path=TWEETS, token="test-token", reset_margin=MARGIN
    )
    name = redis_server.run_name("bench")
    stores, queues, callers, done = [], [], [], []
    for worker in range(WORKERS):
        caller = ApiCaller(config, reactor)
        queue = ResizableDispatchQueue(
            caller, 15, clock=reactor, retry=api_retry_policy()
        )
        caller.bind(queue)
        if shared:
            store = await RedisStore.connect(redis_server.shared().url, name, reactor)
            stores.append(store)
            caller.use_budget(RedisBudget(store, config, reactor))
        for n in range(LIMIT):
            request = caller.first_page({"id": str(1000 * worker + n)})
            done.append(queue.put(request, key=caller.lane_key(request)))
        queues.append(queue)
        callers.append(caller)
    await defer.gatherResults(done)
    for queue in queues:
        await queue.stop()
    for caller in callers:
        await caller.close()
    for store in stores:
        await store.close()
    await served.stop()
    calls = WORKERS * LIMIT
    full = math.ceil(calls / LIMIT) - 1
    span = fake.arrivals[-1] - fake.arrivals[0] + LATENCY
    announced = LATENCY + sum(
        math.ceil(start + WINDOW) + MARGIN - start for start in fake.starts[:-1]
    )
    return {
        "requests": len(fake.arrivals),
        "429": sum(fake.throttled.values()),
        "span": span,
        "bound": full * WINDOW + LATENCY,
        "announced": announced,
    }


async def throughput(reactor: Any) -> tuple[float, float]:
    name = redis_server.run_name("bench")
    url = redis_server.shared().url
    made = []
    for _ in range(3):
        limits = await SharedLimits.connect(url, name, reactor)
        queue = ResizableDispatchQueue(lambda n: n, 50, clock=reactor)
        limits.attach(queue)
        made.append((limits, queue))
    await made[0][0].setWidth(30)
    calls = 0
    for limits, _ in made:
        script = limits.store.script

        def counting(name: str, args: Any, script: Any = script) -> Any:
            nonlocal calls
            calls += 1
            return script(name, args)

        limits.store.script = counting  # type: ignore[method-assign]
    jobs = 3000
    started = reactor.seconds()
    puts = [queue.put(n) for n in range(jobs // 3) for _, queue in made]
    await defer.gatherResults(puts)
    elapsed = reactor.seconds() - started
    for limits, _ in made:
        await limits.close()
    return jobs / elapsed, calls / jobs


def _figures(got: dict[str, Any]) -> list[str]:
    """A run's requests, 429s, span, bound and the two ratios, as cells."""
    span = got["span"]
    return [
        str(got["requests"]),
        str(got["429"]),
        f"{span:.2f}",
        f"{got['bound']:.2f}",
        f"{span / got['bound']:.2f}",
        f"{span / got['announced']:.2f}",
    ]


async def main(reactor: Any) -> None:
    os.environ["API_TOKEN"] = "test-token"
    rows = []
    for aligned, shared, window in (
        (False, True, False),
        (False, False, False),
        (False, True, True),
        (True, True, False),
        (True, False, False),
        (True, True, True),
    ):
        got = await quota_run(reactor, shared, aligned, window)
        kind = "aligned" if aligned else "X-style (from the first request)"
        if window:
            kind += f", `api.window: {WINDOW:g}s`"
        rows.append(
            [
                kind,
                "one budget in Redis" if shared else "a budget per worker",
                *_figures(got),
            ]
        )
    print(
        table(
            f"{WORKERS} workers, {ROWS} calls, {LIMIT} per {WINDOW:g} s, "
            f"answers in {LATENCY * 1000:g} ms",
            [
                "windows",
                "budget",
                "requests",
                "429s",
                "span s",
                "bound s",
                "ratio",
                "ratio to the announced resets",
            ],
            rows,
        )
    )
    rows = []
    for shared in (True, False):
        got = await callers_run(reactor, shared)
        rows.append(
            [
                "one budget in Redis" if shared else "a budget per caller",
                *_figures(got),
            ]
        )
    print(
        table(
            f"{WORKERS} callers with their own queues (width 15) launching "
            f"{WORKERS * LIMIT} calls at once, X-style windows",
            [
                "budget",
                "requests",
                "429s",
                "span s",
                "bound s",
                "ratio",
                "ratio to the announced resets",
            ],
            rows,
        )
    )
    rate, per_job = await throughput(reactor)
    print(
        table(
            "SharedLimits: 3 queues, shared width 30, 3,000 instant jobs",
            ["jobs/s", "script calls per job"],
            [[f"{rate:,.0f}", f"{per_job:.2f}"]],
        )
    )


if __name__ == "__main__":
    redis_server.need_redis()
    sys.exit(task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor))))
