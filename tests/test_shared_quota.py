"""An API endpoint's quota budget shared through Redis: the budget's rules
across workers (one probe, every worker's requests in flight counted, a
refusal seen by one spending the budget for all, a dead worker's requests
running out), and three SharedRuns of an api recipe against the fake X API
on a real port spending one quota without a 429."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from fetchq import ResizableDispatchQueue
from fetchq.api import ApiCaller, ApiConfig, Quota, api_retry_policy
from fetchq.recipe import load_recipe
from fetchq.shared.quota import RedisBudget
from fetchq.shared_run import SharedRun
from fetchq.store.redis import RedisStore
from fetchq.testing.api import FakeXAPI
from fetchq.testing.served import serve_resource
from tests import redis_server
from tests.test_shared_limits import sleep

TWEETS = "/2/users/{id}/tweets"


class BudgetTests(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def budgets(
        self, n: int = 2, window: float | None = None, **kw: Any
    ) -> Generator[Any, Any, list[RedisBudget]]:
        name = redis_server.run_name("quota")
        config = ApiConfig(
            base_url="http://127.0.0.1:1", path=TWEETS, reset_margin=0.1, window=window
        )
        self.holds: list[tuple[int, float, bool]] = []
        made = []
        for i in range(n):
            store = yield RedisStore.connect(redis_server.shared().url, name, reactor)
            self.addCleanup(store.close)
            budget = RedisBudget(store, config, reactor, **kw)
            budget.bind(lambda s, ahead, i=i: self.holds.append((i, s, ahead)))
            made.append(budget)
        return made

    def quota(self, remaining: int, reset_in: float, limit: int = 15) -> Quota:
        return Quota(limit, remaining, reactor.seconds() + reset_in, "x-rate-limit")

    def answer(
        self,
        budget: RedisBudget,
        ticket: Any,
        quota: Quota | None,
        throttle: Any = None,
        status: int = 200,
    ) -> Any:
        return budget.answered(ticket, status, quota, throttle, 0.02, reactor.seconds())

    @defer.inlineCallbacks
    def test_one_probe_then_everyone(self) -> Generator[Any, Any, None]:
        """Before any answer one request goes and the other worker waits;
        once it is answered the other may go, and each sees both workers'
        requests in flight."""
        a, b = yield self.budgets()
        first = yield a.admit(reactor.seconds())
        self.assertTrue(first.go)
        waiting = yield b.admit(reactor.seconds())
        self.assertTrue(waiting.wait)
        yield self.answer(a, first.ticket, self.quota(14, 3.0))
        second = yield b.admit(reactor.seconds())
        third = yield a.admit(reactor.seconds())
        self.assertTrue(second.go and third.go)
        self.assertEqual(a.snapshot().in_flight, 2)
        self.assertEqual(a.snapshot().remaining, 14)
        self.assertEqual(a.snapshot().limit, 15)

    @defer.inlineCallbacks
    def test_workers_spend_one_budget(self) -> Generator[Any, Any, None]:
        """With 3 calls left the workers together get 3; a fourth waits for
        their answers (the server may not have counted them yet); the answer
        that says 0 is left holds the lane ahead until the reset and margin,
        and then a launch is refused for as long; after it a new window
        begins with a probe."""
        a, b = yield self.budgets()
        probe = yield a.admit(reactor.seconds())
        yield self.answer(a, probe.ticket, self.quota(3, 1.0, 4))
        got = []
        for budget in (a, b, a):
            got.append((yield budget.admit(reactor.seconds())))
        self.assertTrue(all(g.go for g in got))
        fourth = yield b.admit(reactor.seconds())
        self.assertTrue(fourth.wait)
        for g, left, budget in zip(got, (2, 1, 0), (a, b, a), strict=True):
            yield self.answer(budget, g.ticket, self.quota(left, 1.0, 4))
        ahead = [(i, s) for i, s, is_ahead in self.holds if is_ahead]
        self.assertEqual(len(ahead), 1)
        self.assertGreater(ahead[0][1], 0.5)
        self.assertLessEqual(ahead[0][1], 1.1 + 0.01)
        refused = yield b.admit(reactor.seconds())
        self.assertFalse(refused.go or refused.wait)
        self.assertLessEqual(refused.delay, 1.1 + 0.01)
        yield sleep(refused.delay + 0.05)
        again = yield b.admit(reactor.seconds())
        self.assertTrue(again.go)  # the new window's probe
        self.assertIsNone(b.snapshot().remaining)
        after = yield a.admit(reactor.seconds())
        self.assertTrue(after.wait)

    @defer.inlineCallbacks
    def test_a_known_window_ends_by_its_first_answer(
        self,
    ) -> Generator[Any, Any, None]:
        """With the window's length known (0.5 s), a window spent with its
        reset announced 3 s away (whole seconds, rounded up) is held until
        its first answer plus the length and the margin, not the reset; then
        a late answer of that window (its reset) does not spend the next one,
        whose probe goes."""
        a, b = yield self.budgets(window=0.5)
        reset = reactor.seconds() + 3.0
        probe = yield a.admit(reactor.seconds())
        yield self.answer(a, probe.ticket, Quota(3, 2, reset, "x-rate-limit"))
        first = yield a.admit(reactor.seconds())
        late = yield b.admit(reactor.seconds())
        self.assertTrue(first.go and late.go)
        yield self.answer(a, first.ticket, Quota(3, 0, reset, "x-rate-limit"))
        refused = yield a.admit(reactor.seconds())
        self.assertFalse(refused.go or refused.wait)
        self.assertLessEqual(refused.delay, 0.5 + 0.1 + 0.01)
        self.assertLessEqual(a.snapshot().reset_at or 0.0, reactor.seconds() + 0.6)
        yield sleep(refused.delay + 0.05)
        waiting = yield a.admit(reactor.seconds())
        self.assertTrue(waiting.wait)  # a new window; an answer is on its way
        yield self.answer(b, late.ticket, Quota(3, 0, reset, "x-rate-limit"))
        again = yield a.admit(reactor.seconds())
        self.assertTrue(again.go)  # the new window's probe, not spent to 3 s
        self.assertIsNone(a.snapshot().remaining)

    @defer.inlineCallbacks
    def test_a_refusal_spends_the_budget_for_all(self) -> Generator[Any, Any, None]:
        """A 429 with Retry-After 2 s answered to one worker: that worker
        holds its lane at once, and the other is refused for those 2 s (less
        the time gone by)."""
        a, b = yield self.budgets()
        probe = yield a.admit(reactor.seconds())
        yield self.answer(
            a, probe.ticket, self.quota(10, 60.0), (2.0, "retry-after"), status=429
        )
        self.assertIn((0, 2.0, False), self.holds)
        refused = yield b.admit(reactor.seconds())
        self.assertFalse(refused.go)
        self.assertGreater(refused.delay, 1.5)
        self.assertLessEqual(refused.delay, 2.0)

    @defer.inlineCallbacks
    def test_a_dead_workers_requests_run_out(self) -> Generator[Any, Any, None]:
        """A worker that took the last call and died (never answered) holds
        it only for its lease: the other waits for its answer meanwhile, then
        may go."""
        a, b = yield self.budgets(lease=0.3)
        probe = yield a.admit(reactor.seconds())
        yield self.answer(a, probe.ticket, self.quota(1, 60.0))
        taken = yield a.admit(reactor.seconds())
        self.assertTrue(taken.go)
        waiting = yield b.admit(reactor.seconds())
        self.assertTrue(waiting.wait)
        yield sleep(0.4)
        again = yield b.admit(reactor.seconds())
        self.assertTrue(again.go)

    @defer.inlineCallbacks
    def test_no_announced_quota_means_full_width(self) -> Generator[Any, Any, None]:
        """An endpoint that announces no quota: once the probe's 200 comes
        back, every worker goes at once, without limit."""
        a, b = yield self.budgets()
        probe = yield a.admit(reactor.seconds())
        yield self.answer(a, probe.ticket, None)
        got = []
        for budget in (a, b) * 5:
            got.append((yield budget.admit(reactor.seconds())))
        self.assertTrue(all(g.go for g in got))


API_RECIPE = """\
kind: api
input:
  path: users.jsonl
  id_field: id
output:
  path: out/tweets.jsonl
state:
  url: {url}
  run: {run}
  lease: 10s
queue:
  width: 6
retry:
  max_attempts: 8
  base_delay: 100ms
api:
  base_url: {base}
  path: /2/users/{{id}}/tweets
  token: ${{API_TOKEN}}
  pagination:
    max_pages: 1
  records: page
  reset_margin: 100ms
"""


class CountingXAPI(FakeXAPI):
    """The fake X API, noting when each quota window starts."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.starts: set[float] = set()

    def _window(self, endpoint: str, now: float) -> Any:
        window = super()._window(endpoint, now)
        self.starts.add(window.start)
        return window


class CallersQuotaTests(TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def calls(
        self, shared: bool, each: int
    ) -> Generator[Any, Any, tuple[CountingXAPI, int]]:
        """Three callers, each with its own queue of width 15 and ``each``
        rows, against one quota of 15 calls per 2 s on a real port; their
        budgets in Redis (``shared``) or each its own.  The fake, and how
        many calls were sent."""
        fake = CountingXAPI(reactor, quotas={TWEETS: (15, 2.0)}, latency=0.2, pages=1)
        served = serve_resource(reactor, fake, 0, "127.0.0.1")
        self.addCleanup(served.stop)
        config = ApiConfig(
            base_url=served.url, path=TWEETS, token="test-token", reset_margin=0.1
        )
        name = redis_server.run_name("callers")
        done = []
        callers = []
        for worker in range(3):
            caller = ApiCaller(config, reactor)
            self.addCleanup(caller.close)
            queue = ResizableDispatchQueue(
                caller, 15, clock=reactor, retry=api_retry_policy()
            )
            caller.bind(queue)
            self.addCleanup(queue.stop)  # (its lane stays held until the reset)
            if shared:
                store = yield RedisStore.connect(
                    redis_server.shared().url, name, reactor
                )
                self.addCleanup(store.close)
                caller.use_budget(RedisBudget(store, config, reactor))
            for n in range(each):
                request = caller.first_page({"id": str(100 * worker + n)})
                done.append(queue.put(request, key=caller.lane_key(request)))
            callers.append(caller)
        yield defer.gatherResults(done)
        return fake, sum(c.stats.sent for c in callers)

    @defer.inlineCallbacks
    def test_one_budget_for_three_callers(self) -> Generator[Any, Any, None]:
        """30 calls from three callers launching at once: with one budget in
        Redis, one probe goes, then the window's other 14, then the next
        window's, with no 429 and no window wasted.  With a budget each, the
        three probes' answers each let their caller send what is left, and
        the server refuses the overrun."""
        fake, sent = yield self.calls(shared=True, each=10)
        self.assertEqual(sum(fake.throttled.values()), 0)
        self.assertEqual(sent, 30)
        self.assertEqual(len(fake.starts), 2)
        apart, _ = yield self.calls(shared=False, each=10)
        self.assertGreater(sum(apart.throttled.values()), 0)


class SharedRunQuotaTests(TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_three_workers_one_quota_no_429(self) -> Generator[Any, Any, None]:
        """Three SharedRuns of one api recipe (30 rows) against a quota of
        15 calls per 2 s window on a real port, the run widened to 48 (each
        worker 6) so that several workers call at once: their callers keep
        one budget in Redis, there is no 429, every row is recorded once, and
        the calls fill exactly 2 windows (no window is wasted, so the time
        is the quota's bound, give or take the margins)."""
        os.environ["API_TOKEN"] = "test-token"
        folder = Path(tempfile.mkdtemp(prefix="fetchq-quota-"))
        self.addCleanup(shutil.rmtree, folder, True)
        fake = CountingXAPI(reactor, quotas={TWEETS: (15, 2.0)}, latency=0.2, pages=1)
        served = serve_resource(reactor, fake, 0, "127.0.0.1")
        self.addCleanup(served.stop)
        rows = [json.dumps({"id": str(100 + i)}) for i in range(30)]
        (folder / "users.jsonl").write_text("\n".join(rows) + "\n")
        recipe = folder / "api.yaml"
        run = redis_server.run_name("quota")
        recipe.write_text(
            API_RECIPE.format(url=redis_server.shared().url, run=run, base=served.url)
        )
        # An operator widened the run to 48; each worker still runs at most
        # 6, so a window's 15 calls come from all three at once.
        admin = yield RedisStore.connect(redis_server.shared().url, run, reactor)
        self.addCleanup(admin.close)
        yield admin.meta_set(
            "run.limits",
            {
                "width": 6,
                "rate": None,
                "burst": 1,
                "lane_width": None,
                "lane_rate": None,
                "lane_burst": 1,
            },
        )
        yield admin.configure(width=48)
        devnull = open(os.devnull, "w")  # noqa: SIM115
        self.addCleanup(devnull.close)
        runs = [
            SharedRun(load_recipe(recipe), reactor, stream=devnull) for _ in range(3)
        ]
        codes = yield defer.gatherResults([shared.run() for shared in runs])
        self.assertEqual(codes, [0, 0, 0])
        self.assertEqual(sum(fake.throttled.values()), 0)
        self.assertEqual(fake.requests[TWEETS], 30)
        self.assertEqual(len(fake.starts), 2, sorted(fake.starts))
        records = [
            json.loads(line)
            for line in (folder / "out" / "tweets.jsonl").read_text().splitlines()
        ]
        self.assertEqual(
            sorted(r["id"] for r in records), sorted(str(100 + i) for i in range(30))
        )
        self.assertEqual({r["outcome"] for r in records}, {"ok"})
        sent = [shared.kind.caller.stats.sent for shared in runs]
        self.assertEqual(sum(sent), 30)
        self.assertGreaterEqual(sum(1 for n in sent if n), 2)  # workers shared it
        # ... one budget, in Redis
        kept = yield admin.command("EXISTS", admin.prefix + "quota:GET " + TWEETS)
        self.assertEqual(int(kept), 1)
