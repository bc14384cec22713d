"""SharedLimits against a real redis-server: queues in one process (each
with its own connection, as separate processes would have) and in real
worker processes share one width, one rate, lane limits and holds; a dead
process's slots come back; changes reach every attached queue.

Limits are measured with counting fakes (jobs that count how many of them
run at once; a loopback server that counts requests in flight) and with
the Redis server's own clock at each grant, never with the test's clock."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from fetchq import LaneHeld, ResizableDispatchQueue, Throttled, WidthChanged
from fetchq.shared import SharedLimits
from fetchq.store.redis import RedisStore
from tests import redis_server

ROOT = Path(__file__).resolve().parent.parent


def sleep(seconds: float) -> defer.Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def eventually(
    what: str, probe: Any, timeout: float = 10.0
) -> Generator[Any, Any, None]:
    """Wait (on the reactor) until ``probe()`` is true; fail naming ``what``
    after ``timeout`` seconds."""
    waited = 0.0
    while not probe():
        if waited > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        yield sleep(0.02)
        waited += 0.02


class Counting:
    """A job function that counts how many of its calls run at once, in
    total and per key."""

    def __init__(self, seconds: float = 0.03) -> None:
        self.seconds = seconds
        self.now = 0
        self.most = 0
        self.lane_now: Counter[Any] = Counter()
        self.lane_most: Counter[Any] = Counter()
        self.calls = 0

    @defer.inlineCallbacks
    def __call__(self, key: Any) -> Generator[Any, Any, Any]:
        self.calls += 1
        self.now += 1
        self.lane_now[key] += 1
        self.most = max(self.most, self.now)
        self.lane_most[key] = max(self.lane_most[key], self.lane_now[key])
        try:
            yield sleep(self.seconds)
        finally:
            self.now -= 1
            self.lane_now[key] -= 1
        return key


class SharedTestCase(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.name = redis_server.run_name("shared")
        self.grants: list[tuple[Any, float]] = []

    @defer.inlineCallbacks
    def limits(self, **kw: Any) -> Generator[Any, Any, SharedLimits]:
        kw.setdefault("poll", 0.05)
        kw.setdefault("refresh", 0.2)
        kw.setdefault("on_grant", lambda key, t: self.grants.append((key, t)))
        limits = yield SharedLimits.connect(
            redis_server.shared().url, self.name, reactor, **kw
        )
        self.addCleanup(limits.close)
        return limits

    @defer.inlineCallbacks
    def queues(
        self, n: int, func: Any, width: int = 10, **kw: Any
    ) -> Generator[Any, Any, list[tuple[SharedLimits, ResizableDispatchQueue]]]:
        made = []
        for _ in range(n):
            limits = yield self.limits(**kw)
            queue = ResizableDispatchQueue(func, width, clock=reactor)
            limits.attach(queue)
            made.append((limits, queue))
        return made


class WidthAndRateTests(SharedTestCase):
    @defer.inlineCallbacks
    def test_width_is_global(self) -> Generator[Any, Any, None]:
        """Three queues of width 10 under a shared width of 4 never run more
        than 4 jobs at once between them, and do reach several at once; each
        queue's width becomes the shared one."""
        counting = Counting()
        made = yield self.queues(3, counting)
        yield made[0][0].setWidth(4)
        puts = [queue.put(n, key=None) for n in range(20) for _, queue in made]
        yield defer.gatherResults(puts)
        self.assertEqual(counting.calls, 60)
        self.assertLessEqual(counting.most, 4)
        self.assertGreaterEqual(counting.most, 2)
        yield eventually(
            "every width mirrored", lambda: all(q.width == 4 for _, q in made)
        )

    @defer.inlineCallbacks
    def test_rate_is_global_gcra(self) -> Generator[Any, Any, None]:
        """At a shared 25/s with a burst of 2, the grants of three queues,
        on the Redis server's clock, never come faster than GCRA allows:
        any k consecutive grants span at least (k - 2) / 25 s."""
        made = yield self.queues(3, lambda n: n)
        yield made[0][0].set_rate(25, burst=2)
        puts = [queue.put(n) for n in range(10) for _, queue in made]
        yield defer.gatherResults(puts)
        times = sorted(t for _, t in self.grants)
        self.assertEqual(len(times), 30)
        for i in range(len(times)):
            for j in range(i + 1, len(times)):
                self.assertGreaterEqual(
                    times[j] - times[i] + 1e-3, (j - i + 1 - 2) / 25, (i, j)
                )
        # and the rate was used, not just obeyed: 30 grants in under 10 s
        self.assertLess(times[-1] - times[0], 10.0)

    @defer.inlineCallbacks
    def test_lane_width_and_rate(self) -> Generator[Any, Any, None]:
        """A lane width of 1 and a lane rate of 10/s hold across queues:
        never two jobs of lane ``a`` at once, grants of lane ``s`` at least
        0.1 s apart on the server's clock, while lane ``b`` is free."""
        counting = Counting(0.02)
        made = yield self.queues(2, counting)
        limits = made[0][0]
        yield limits.set_lane_width("a", 1)
        yield limits.set_lane_rate("s", 10)
        puts = [queue.put(key, key=key) for key in "aasbb" * 4 for _, queue in made]
        yield defer.gatherResults(puts)
        self.assertEqual(counting.lane_most["a"], 1)
        self.assertGreaterEqual(counting.lane_most["b"], 2)
        s_times = sorted(t for key, t in self.grants if key == "s")
        self.assertEqual(len(s_times), 8)
        gaps = [b - a for a, b in itertools.pairwise(s_times)]
        self.assertGreaterEqual(min(gaps) + 1e-3, 0.1)
        # lane a's own width was mirrored into both queues
        for _, queue in made:
            info = queue.lane("a")
            self.assertTrue(info is None or info.width == 1)


class HoldAndChangeTests(SharedTestCase):
    @defer.inlineCallbacks
    def test_a_throttle_in_one_queue_holds_the_lane_in_all(
        self,
    ) -> Generator[Any, Any, None]:
        """A job of queue A that fails with Throttled(1 s) holds lane ``h``
        in Redis: queue B's job of that lane is granted only after the hold
        ends (server clock), B's queue holds the lane itself (a LaneHeld),
        and lane ``free`` is not held."""
        throttled = []

        def a_func(key: str) -> Any:
            if key == "h" and not throttled:
                throttled.append(reactor.seconds())
                raise Throttled(1.0, "429")
            return key

        ((la, qa),) = yield self.queues(1, a_func)
        ((lb, qb),) = yield self.queues(1, lambda key: key)
        held_in_b: list[LaneHeld] = []
        qb.subscribe(lambda e: held_in_b.append(e) if isinstance(e, LaneHeld) else None)
        d = qa.put("h", key="h")
        yield eventually(
            "A's throttle to reach Redis", lambda: la.stats["granted"] >= 1
        )
        yield sleep(0.1)
        hold_seen = self.grants[0][1]
        yield qb.put("h", key="h")
        yield qb.put("free", key="free")
        yield d  # A's job retries after its hold, then succeeds
        b_grants = [t for key, t in self.grants[1:] if key == "h"]
        self.assertGreaterEqual(min(b_grants), hold_seen + 1.0 - 0.05)
        self.assertEqual([e.key for e in held_in_b], ["h"])
        self.assertGreaterEqual(lb.stats["wait:held"], 1)

    @defer.inlineCallbacks
    def test_width_change_reaches_every_queue(self) -> Generator[Any, Any, None]:
        """A width set through one SharedLimits, and then one set by an
        admin straight in Redis (RedisStore.configure), reach every
        attached queue: each emits WidthChanged to the new width; removing
        the shared width gives each queue its own back."""
        made = yield self.queues(3, lambda n: n, width=5)
        seen: list[list[int | None]] = [[] for _ in made]
        for (_, queue), log in zip(made, seen, strict=True):
            queue.subscribe(
                lambda e, log=log: (
                    log.append(e.new)
                    if isinstance(e, WidthChanged) and not e.lane
                    else None
                )
            )
        yield made[0][0].setWidth(7)
        yield eventually(
            "width 7 everywhere", lambda: all(q.width == 7 for _, q in made)
        )
        admin = yield RedisStore.connect(redis_server.shared().url, self.name, reactor)
        self.addCleanup(admin.close)
        yield admin.configure(width=9)
        yield eventually(
            "width 9 everywhere", lambda: all(q.width == 9 for _, q in made)
        )
        for log in seen:
            self.assertEqual(log[-2:], [7, 9])
        yield admin.configure(width=None)
        yield eventually("own widths back", lambda: all(q.width == 5 for _, q in made))

    @defer.inlineCallbacks
    def test_cancel_while_waiting(self) -> Generator[Any, Any, None]:
        """A job waiting for a slot can be cancelled: it never runs, and no
        slot is left taken (the next job runs as soon as the one underway
        ends)."""
        gate: defer.Deferred[None] = defer.Deferred()
        ran = []

        def func(n: int) -> Any:
            ran.append(n)
            return gate if n == 0 else n

        ((limits, queue),) = yield self.queues(1, func)
        yield limits.setWidth(1)
        first = queue.put(0)
        yield eventually("the first to run", lambda: ran == [0])
        second = queue.put(1)
        yield sleep(0.2)
        self.assertEqual(ran, [0])
        second.cancel()
        yield self.assertFailure(second, defer.CancelledError)
        third = queue.put(2)
        gate.callback(None)
        yield first
        yield third
        self.assertEqual(ran, [0, 2])
        yield eventually("no slot held", lambda: not limits._held)


class ProcessTests(SharedTestCase):
    """Real worker processes (tests/shared_worker.py)."""

    def counting_server(self) -> tuple[str, Any]:
        class Count(Resource):
            isLeaf = True

            def __init__(self) -> None:
                super().__init__()
                self.now = 0
                self.most = 0
                self.total = 0

            def render_GET(self, request: Any) -> Any:
                self.now += 1
                self.total += 1
                self.most = max(self.most, self.now)

                def answer() -> None:
                    self.now -= 1
                    request.write(b"ok")
                    request.finish()

                reactor.callLater(0.05, answer)
                return NOT_DONE_YET

        resource = Count()
        port = reactor.listenTCP(0, Site(resource), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return f"http://127.0.0.1:{port.getHost().port}/", resource

    def worker(self, count_url: str, jobs: int, *extra: str) -> Any:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.shared_worker",
                redis_server.shared().url,
                self.name,
                count_url,
                str(jobs),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            text=True,
        )

        def kill() -> None:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()

        self.addCleanup(kill)
        return proc

    @defer.inlineCallbacks
    def wait_exit(self, proc: Any, timeout: float = 45.0) -> Generator[Any, Any, str]:
        yield eventually("a worker to finish", lambda: proc.poll() is not None, timeout)
        out: str = proc.stdout.read()
        self.assertEqual(proc.returncode, 0, out)
        return out

    @defer.inlineCallbacks
    def test_processes_share_width_and_lane_rate(self) -> Generator[Any, Any, None]:
        """Three worker processes under a shared width of 3 and lane ``a``
        at 5/s: the counting server never sees more than 3 requests at
        once (and does see more than one), and lane ``a``'s grants, from
        all three processes, are at least 0.2 s apart on the server's
        clock."""
        url, counter = self.counting_server()
        admin = yield self.limits()
        yield admin.configure(width=3)
        yield admin.set_lane_rate("a", 5)
        procs = [self.worker(url, 12) for _ in range(3)]
        outs = []
        for proc in procs:
            outs.append((yield self.wait_exit(proc)))
        self.assertEqual(counter.total, 36)
        self.assertLessEqual(counter.most, 3)
        self.assertGreaterEqual(counter.most, 2)
        a_times = sorted(
            float(line.split()[2])
            for out in outs
            for line in out.splitlines()
            if line.startswith("grant a ")
        )
        self.assertEqual(len(a_times), 12)
        gaps = [b - a for a, b in itertools.pairwise(a_times)]
        self.assertGreaterEqual(min(gaps) + 1e-3, 0.2)

    @defer.inlineCallbacks
    def test_a_killed_process_gives_its_slots_back(self) -> Generator[Any, Any, None]:
        """A worker that holds all 3 slots of the shared width and is killed
        with SIGKILL gives them back when their 1 s leases run out: a queue
        here, which got none while it lived, then runs all its jobs."""
        url, _ = self.counting_server()
        admin = yield self.limits()
        yield admin.configure(width=3)
        proc = self.worker(url, 10, "--hang")
        lines: list[str] = []

        def holding() -> bool:
            line = proc.stdout.readline()
            lines.append(line)
            return line.startswith("holding 3") or proc.poll() is not None

        yield eventually("the worker to hold 3 slots", holding, 30)
        self.assertIn("holding 3\n", lines, "".join(lines))
        ran: list[int] = []
        queue = ResizableDispatchQueue(ran.append, 5, clock=reactor)
        admin.attach(queue)
        puts = [queue.put(n) for n in range(4)]
        yield sleep(0.3)
        self.assertEqual(ran, [])  # every slot is the worker's
        proc.kill()
        proc.wait(10)
        yield defer.gatherResults(puts)
        self.assertEqual(sorted(ran), [0, 1, 2, 3])
