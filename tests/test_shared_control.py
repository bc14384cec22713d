"""The adaptive controller of a run shared by many workers, against a real
redis-server: one leader by lease, takeover when it dies (in-process and a
killed process), fenced writes, and decisions made from every worker's
signals that land in the run's limits; and in a SharedRun."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet import error as tx_error
from twisted.trial.unittest import TestCase

from fetchq import ControlDecision, ResizableDispatchQueue
from fetchq.control import AIMD, AdaptiveController
from fetchq.demo import DemoSite, SiteBehaviour
from fetchq.recipe import load_recipe
from fetchq.shared.control import LEADER, SharedControl
from fetchq.shared_run import SharedRun
from fetchq.store.redis import RedisStore
from tests import redis_server
from tests.test_shared_limits import eventually, sleep

ROOT = Path(__file__).resolve().parent.parent


def controller() -> AdaptiveController:
    return AdaptiveController(
        AIMD(),
        min_width=1,
        max_width=20,
        initial=10,
        probe_width=10,
        interval=0.05,
        pace=False,
    )


class ControlTestCase(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.name = redis_server.run_name("ctl")

    @defer.inlineCallbacks
    def store(self) -> Generator[Any, Any, RedisStore]:
        store = yield RedisStore.connect(redis_server.shared().url, self.name, reactor)
        self.addCleanup(store.close)
        return store

    @defer.inlineCallbacks
    def worker(
        self, func: Any = None, lease: float = 0.6
    ) -> Generator[Any, Any, tuple[SharedControl, ResizableDispatchQueue]]:
        store = yield self.store()
        queue = ResizableDispatchQueue(func or (lambda n: n), 10, clock=reactor)
        control = SharedControl(controller(), store, reactor, lease=lease)
        control.attach(queue)
        self.addCleanup(control.detach)
        return control, queue

    def crash(self, control: SharedControl) -> None:
        """Stop a worker as a crash would: no more renewals, no hand-over."""
        for loop in (control._elect, control._read):
            if loop.running:
                loop.stop()
        control.controller.detach()
        if control._publisher is not None:
            control._publisher.detach()
        control._queue = None


class ElectionTests(ControlTestCase):
    @defer.inlineCallbacks
    def test_one_leader_then_takeover(self) -> Generator[Any, Any, None]:
        """Of three workers exactly one leads; when it crashes (no renewal,
        no hand-over) another takes over once its lease runs out, with the
        next epoch, and reads the limits as they stand."""
        admin = yield self.store()
        yield admin.configure(width=10)
        workers = []
        for _ in range(3):
            workers.append((yield self.worker()))
        controls = [c for c, _ in workers]
        yield eventually("a leader", lambda: any(c.leading for c in controls))
        yield sleep(0.5)
        leaders = [c for c in controls if c.leading]
        self.assertEqual(len(leaders), 1)
        first = leaders[0]
        self.crash(first)
        others = [c for c in controls if c is not first]
        yield eventually("a new leader", lambda: any(c.leading for c in others))
        second = next(c for c in others if c.leading)
        self.assertEqual(int(second.epoch or 0), int(first.epoch or 0) + 1)
        self.assertEqual(second.remote.width if second.remote else None, 10)
        self.assertEqual(sum(c.leading for c in others), 1)

    @defer.inlineCallbacks
    def test_a_killed_leader_process_is_replaced(self) -> Generator[Any, Any, None]:
        """A worker process that leads is killed with SIGKILL: while it lived
        the worker here never led; within its 1 s lease after the kill, this
        one leads, at the next epoch."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.shared_worker",
                redis_server.shared().url,
                self.name,
                "-",
                "0",
                "--lead",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            text=True,
        )
        self.addCleanup(lambda: (proc.poll() is None and proc.kill(), proc.wait(10)))
        lines: list[str] = []

        def leading() -> bool:
            line = proc.stdout.readline() if proc.stdout else ""
            lines.append(line)
            return line.startswith("leading") or proc.poll() is not None

        yield eventually("the process to lead", leading, 30)
        self.assertTrue(lines[-1].startswith("leading"), "".join(lines))
        epoch = int(lines[-1].split()[1])
        here, _ = yield self.worker(lease=1.0)
        yield sleep(1.5)
        self.assertFalse(here.leading)
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
        yield eventually("this worker to lead", lambda: here.leading, 10)
        self.assertEqual(int(here.epoch or 0), epoch + 1)

    @defer.inlineCallbacks
    def test_a_deposed_leaders_writes_are_refused(self) -> Generator[Any, Any, None]:
        """A leader that stalls past its lease (its renewals stop) while
        another takes over: its next write of the width is refused by Redis
        (fenced by holder and epoch), the width stays the new leader's, and
        the stalled one steps down."""
        admin = yield self.store()
        yield admin.configure(width=10)
        a, _ = yield self.worker()
        yield eventually("A to lead", lambda: a.leading)
        a._elect.stop()  # a pause: A still believes it leads
        b, _ = yield self.worker()
        yield eventually("B to lead", lambda: b.leading)
        self.assertTrue(a.leading)
        assert b.remote is not None and a.remote is not None
        b.remote.setWidth(6)
        yield eventually("B's width", lambda: b.remote is not None and b.remote.written)
        a.remote.setWidth(77)
        yield eventually("A to step down", lambda: not a.leading)
        self.assertEqual(a.remote.refused, 1)
        limits = yield admin.limits()
        self.assertEqual(limits["width"], 6)
        holder = yield admin.command("GET", admin.prefix + f"lease:{LEADER}")
        self.assertEqual(holder, b.store.worker)


class DecisionTests(ControlTestCase):
    @defer.inlineCallbacks
    def test_decisions_come_from_every_worker(self) -> Generator[Any, Any, None]:
        """The leader runs no job itself: another worker's successes and a
        third worker's dropped connections reach its controller through the
        signal stream, its decisions count every sample, its cut for the
        drops lands in the run's width in Redis, and its own queue hears
        each decision."""
        admin = yield self.store()
        yield admin.configure(width=10)
        leader, leader_queue = yield self.worker()
        yield eventually("a leader", lambda: leader.leading)
        decisions: list[ControlDecision] = []
        leader_queue.subscribe(
            lambda e: decisions.append(e) if isinstance(e, ControlDecision) else None
        )

        @defer.inlineCallbacks
        def ok(n: int) -> Generator[Any, Any, int]:
            yield sleep(0.01)
            return n

        def lost(n: int) -> Any:
            raise tx_error.ConnectionLost("reset")

        _, good = yield self.worker(ok)
        _, bad = yield self.worker(lost)
        yield defer.gatherResults([good.put(n) for n in range(20)])
        for n in range(3):
            bad.put(n).addErrback(lambda f: None)

        def cut() -> bool:
            return any(d.reason == "drop" for d in decisions)

        yield eventually("a cut for the drops", cut)
        yield eventually(
            "every sample counted", lambda: sum(d.samples for d in decisions) >= 20
        )
        self.assertEqual(sum(d.samples for d in decisions), 20)
        self.assertGreaterEqual(sum(d.drops for d in decisions), 1)
        drop = next(d for d in decisions if d.reason == "drop")
        self.assertLess(drop.width, 10)

        @defer.inlineCallbacks
        def width_in_redis() -> Generator[Any, Any, Any]:
            return (yield admin.limits())["width"]

        found = yield width_in_redis()
        self.assertLess(found, 10)
        self.assertEqual(leader.leading, True)


RECIPE = """
kind: fetch
input:
  path: urls.txt
output:
  path: out.jsonl
state:
  url: {url}
  run: {run}
  lease: 2s
queue:
  width: 4
  adaptive:
    algorithm: aimd
    max_width: 12
    interval: 50ms
fetch:
  allow_private: true
"""


class SharedRunTests(ControlTestCase):
    @defer.inlineCallbacks
    def test_two_shared_runs_one_controller(self) -> Generator[Any, Any, None]:
        """Two SharedRuns of an adaptive recipe: each has the shared
        controller (not one on its own queue), exactly one of them leads,
        the leader's decisions set the run's width in Redis, both finish,
        and the output has every row once."""
        folder = Path(tempfile.mkdtemp(prefix="fetchq-ctl-"))
        self.addCleanup(shutil.rmtree, folder, True)
        site = DemoSite(reactor, SiteBehaviour(pages=200))
        port = site.listen()
        self.addCleanup(port.stopListening)
        base = f"http://127.0.0.1:{port.getHost().port}"
        (folder / "urls.txt").write_text(
            "".join(f"{base}/page/{i}\n" for i in range(200))
        )
        recipe_path = folder / "recipe.yaml"
        recipe_path.write_text(
            RECIPE.format(url=redis_server.shared().url, run=self.name)
        )
        devnull = open(os.devnull, "w")  # noqa: SIM115
        self.addCleanup(devnull.close)
        runs = [
            SharedRun(load_recipe(recipe_path), reactor, stream=devnull)
            for _ in range(2)
        ]
        for run in runs:
            self.assertIsInstance(run.controller, SharedControl)
            self.assertEqual(run.queue.width, 12)
        codes = yield defer.gatherResults([run.run() for run in runs])
        self.assertEqual(codes, [0, 0])
        controls = [
            c for c in (run.controller for run in runs) if isinstance(c, SharedControl)
        ]
        self.assertEqual(len(controls), 2)
        led = [c for c in controls if c.terms]
        self.assertGreaterEqual(len(led), 1)  # (the last to finish may lead last)
        self.assertTrue(all(c.remote is not None and c.remote.written for c in led))
        self.assertFalse(any(c.leading for c in controls))  # handed on at the end
        lines = (folder / "out.jsonl").read_text().splitlines()
        self.assertEqual(len(lines), 200)
