"""The admin server of a run on the Redis engine: one worker serves it, and
what it changes reaches every worker of the run; its status is the whole
run's.  Two SharedRuns of one recipe in this process, on a real
redis-server, against a site whose every page takes 0.2 s."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import treq
from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from fetchq.admin.attach import attach_admin
from fetchq.events import JobFinished
from fetchq.job import Outcome
from fetchq.recipe import load_recipe
from fetchq.shared_run import SharedRun
from tests import redis_server
from tests.admin_target import Slow

RECIPE = """\
kind: fetch
input: urls.txt
output: out.jsonl
state:
  url: {url}
  run: {run}
queue:
  width: 2
  per_host:
    width: null
fetch:
  allow_private: true
"""


class SharedAdminTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fetchq-admin-shared-"))
        self.addCleanup(shutil.rmtree, self.folder, True)
        port = reactor.listenTCP(0, Site(Slow()), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        base = f"http://127.0.0.1:{port.getHost().port}"
        with open(self.folder / "urls.txt", "w") as f:
            f.writelines(f"{base}/page/{i}\n" for i in range(2000))
        path = self.folder / "recipe.yaml"
        path.write_text(
            RECIPE.format(url=redis_server.shared().url, run=redis_server.run_name())
        )
        self.recipe = load_recipe(path)
        self.devnull = open(os.devnull, "w")  # noqa: SIM115
        self.addCleanup(self.devnull.close)

    def call(self, server: Any, method: str, path: str, body: Any = None) -> Any:
        headers = {
            "Authorization": [f"Bearer {server.token}"],
            "Host": [f"127.0.0.1:{server.port}"],
            "Content-Type": ["application/json"],
        }
        data = None if body is None else json.dumps(body).encode()
        d = treq.request(
            method, server.url + path, data=data, headers=headers, persistent=False
        )
        return d.addCallback(lambda r: treq.json_content(r))

    @defer.inlineCallbacks
    def until(self, check: Callable[[], bool]) -> Generator[Any, Any, None]:
        """Wait (on events, not a deadline: the test's timeout bounds it)
        until ``check()`` holds."""
        while not check():
            yield task.deferLater(reactor, 0.02, lambda: None)

    @defer.inlineCallbacks
    def test_width_reaches_every_worker_and_stop_stops_all(
        self,
    ) -> Generator[Any, Any, None]:
        """The run starts at width 2 in all; a width of 8 posted to the
        first worker's admin puts 8 jobs in flight across both workers, the
        second worker running some of them; the status counts both workers'
        rows; a stop posted to the first worker stops both (exit 143)."""
        runs = [SharedRun(self.recipe, reactor, stream=self.devnull) for _ in range(2)]
        done = [0, 0]  # rows each worker finished for good

        def counter(n: int) -> Callable[[Any], None]:
            def count(event: Any) -> None:
                if isinstance(event, JobFinished) and event.outcome is Outcome.OK:
                    done[n] += 1

            return count

        for n, run in enumerate(runs):
            run.queue.subscribe(counter(n))
        finished = [run.run() for run in runs]
        yield self.until(lambda: all(run.store is not None for run in runs))
        server = attach_admin(runs[0], reactor, "0")

        def in_flight() -> list[int]:
            return [run.queue.size()[0] for run in runs]

        yield self.until(lambda: sum(in_flight()) == 2)
        self.assertLessEqual(sum(in_flight()), 2)
        answer = yield self.call(server, "POST", "/api/v1/width", {"width": 8})
        self.assertEqual(answer["width"], 8)
        yield self.until(lambda: sum(in_flight()) == 8 and min(in_flight()) > 0)
        self.assertEqual(sum(in_flight()), 8)  # the run's width, not each one's
        yield self.until(lambda: min(done) > 0)
        before = list(done)
        # Both workers' rows (their acks reach Redis a moment later): more
        # than the serving worker's own.
        status: dict[str, Any] = {"done": -1}
        while status["done"] < sum(before):
            status = yield self.call(server, "GET", "/api/v1/status")
        self.assertEqual(status["engine"], "redis")
        self.assertEqual(status["width"], 8)
        self.assertGreater(status["done"], before[0])
        yield self.call(server, "POST", "/api/v1/stop", {})
        codes = yield defer.gatherResults(finished)
        self.assertEqual(codes, [143, 143])
