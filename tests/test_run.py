"""``fetchq run`` end to end, over real loopback sockets against the demo
site: one record per input row, resuming after an interrupt, and surviving
kill -9 at random moments without losing or repeating a record."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sys
import tempfile
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from twisted.internet import defer, protocol, reactor
from twisted.trial.unittest import TestCase

from fetchq.demo import DemoSite, SiteBehaviour
from fetchq.recipe import load_recipe
from fetchq.run import FetchRun

RECIPE = """
kind: fetch
input:
  path: urls.txt
output:
  path: out/result.jsonl
queue:
  width: {width}
  per_host:
    width: {width}
retry:
  max_attempts: 4
  base_delay: 10ms
  max_delay: 200ms
fetch:
  connect_timeout: 2s
  headers_timeout: 5s
  body_timeout: 5s
"""

ROOT = Path(__file__).resolve().parent.parent


def read_output(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a JSONL output (a torn last line is ignored)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            records.append(json.loads(line))
    return records


class RunTests(TestCase):
    def setUp(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fetchq-run-test-"))
        self.addCleanup(lambda: __import__("shutil").rmtree(self.folder, True))

    def quiet(self) -> Any:
        """Somewhere for progress output to go."""
        devnull = open(os.devnull, "w")  # noqa: SIM115
        self.addCleanup(devnull.close)
        return devnull

    def start_site(self, pages: int, **kw: Any) -> str:
        self.site = DemoSite(reactor, SiteBehaviour(pages=pages, **kw))
        port = self.site.listen()
        self.addCleanup(port.stopListening)
        return f"http://127.0.0.1:{port.getHost().port}"

    def write_input(
        self, base: str, pages: int, width: int = 16, http: str = "treq"
    ) -> Path:
        lines = [f"{base}/page/{i}" for i in range(pages)]
        lines += ["not a url", "ftp://127.0.0.1/nope"]
        (self.folder / "urls.txt").write_text("\n".join(lines) + "\n")
        recipe = self.folder / "recipe.yaml"
        # (The fetch section is RECIPE's last.)
        recipe.write_text(RECIPE.format(width=width) + f"  http: {http}\n")
        self.expected_ids = {str(i) for i in range(len(lines))}
        return recipe

    def served_more(self, pages: int) -> Callable[[], bool]:
        """Whether the site has served ``pages`` more requests than now."""
        before = sum(self.site.requests.values())
        return lambda: sum(self.site.requests.values()) >= before + pages

    def check_output(self) -> list[dict[str, Any]]:
        records = read_output(self.folder / "out" / "result.jsonl")
        ids = [r["id"] for r in records]
        self.assertEqual(len(ids), len(set(ids)), "a record was written twice")
        self.assertEqual(set(ids), self.expected_ids)
        return records

    def test_one_record_per_row(self) -> defer.Deferred[None]:
        """A run writes exactly one record per input row: ok pages with
        status, size and sha256; 404s and bad input as named errors; pages
        that fail once with 500 are retried to success."""
        return self.one_record_per_row("treq")

    def test_one_record_per_row_lean(self) -> defer.Deferred[None]:
        """The same with ``fetch.http: lean``."""
        return self.one_record_per_row("lean")

    @defer.inlineCallbacks
    def one_record_per_row(self, http: str) -> Generator[Any, Any, None]:
        base = self.start_site(300, error_every=50, missing_every=101, slow_every=1000)
        recipe = load_recipe(self.write_input(base, 300, http=http))
        self.assertEqual(recipe.fetch.http, http)
        code = yield FetchRun(recipe, reactor, stream=self.quiet()).run()
        self.assertEqual(code, 0)
        records = {r["id"]: r for r in self.check_output()}
        self.assertEqual(records["1"]["status"], 200)
        self.assertEqual(records["1"]["bytes"], 1024)
        self.assertEqual(len(records["1"]["sha256"]), 64)
        self.assertEqual(records["50"]["outcome"], "ok")
        self.assertEqual(records["50"]["attempts"], 2)
        self.assertEqual(records["101"]["error"]["name"], "HTTPStatusError")
        self.assertEqual(records["300"]["error"]["name"], "BadInput")
        self.assertEqual(records["301"]["error"]["name"], "BadInput")
        self.assertIn("scheme", records["301"]["error"]["message"])

    @defer.inlineCallbacks
    def test_interrupt_and_resume(self) -> Generator[Any, Any, None]:
        """An interrupted run exits 130 and keeps what it finished; the next
        run does only the rest, and no page finished before is fetched again.
        (Interrupted once the site has served 50 pages, not at a moment of
        the wall clock, so a busy machine interrupts it as far along.)"""
        base = self.start_site(400, latency=0.02, error_every=10**6)
        recipe = load_recipe(self.write_input(base, 400, width=4))
        devnull = self.quiet()
        first = FetchRun(recipe, reactor, stream=devnull, tick=0.05)
        when_served(self.site, 50, first.interrupt, signal.SIGINT)
        code = yield first.run()
        self.assertEqual(code, 130)
        done_before = {
            r["id"] for r in read_output(self.folder / "out" / "result.jsonl")
        }
        self.assertTrue(10 < len(done_before) < 400, len(done_before))
        counts_before = dict(self.site.requests)
        code = yield FetchRun(recipe, reactor, stream=devnull).run()
        self.assertEqual(code, 0)
        self.check_output()
        refetched = [
            i
            for i in range(400)
            if str(i) in done_before and self.site.requests[i] != counts_before[i]
        ]
        self.assertEqual(refetched, [])

    @defer.inlineCallbacks
    def test_kill_9_then_rerun(self) -> Generator[Any, Any, None]:
        """A real `fetchq run` killed with SIGKILL at random moments, then run
        again to the end: every input row has exactly one record, and no page
        whose record was in the output at the kill is fetched again."""
        pages = 600
        base = self.start_site(pages, latency=0.01, error_every=10**6)
        recipe = self.write_input(base, pages, width=8)
        output = self.folder / "out" / "result.jsonl"
        rng = random.Random(4242)
        kills = 0
        for _ in range(3):
            delay = rng.uniform(0.3, 1.5)
            code = yield run_fetchq(recipe, kill_after=delay)
            if code == 0:
                break  # finished before the kill: nothing more to prove
            kills += 1
            shown = {r["id"] for r in read_output(output)}
            counts = dict(self.site.requests)
            code = yield run_fetchq(recipe, kill_after=rng.uniform(0.2, 0.6))
            again = [
                i
                for i in range(pages)
                if str(i) in shown and self.site.requests.get(i) != counts.get(i)
            ]
            self.assertEqual(again, [], "finished pages were fetched again")
        code = yield run_fetchq(recipe)
        self.assertEqual(code, 0)
        self.assertGreater(kills, 0, "every run finished before its kill")
        self.check_output()

    @defer.inlineCallbacks
    def test_ctrl_c_exits_130_and_resumes(self) -> Generator[Any, Any, None]:
        """SIGINT to a real `fetchq run` stops it with exit status 130 and a
        line saying how to resume (SIGTERM: 143); the next run finishes.
        Each signal goes once the run is fetching (the site has served 20
        more pages), not after a fixed time, which a busy machine can spend
        still importing (then Ctrl-C is only "fetchq: interrupted")."""
        base = self.start_site(1000, latency=0.02, error_every=10**6)
        recipe = self.write_input(base, 1000, width=8)
        proto = run_fetchq(recipe, signal_when=(self.served_more(20), "INT"))
        code = yield proto
        self.assertEqual(code, 130)
        self.assertIn(b"resume with: fetchq run", proto.stderr)
        code = yield run_fetchq(recipe, signal_when=(self.served_more(20), "TERM"))
        self.assertEqual(code, 143)
        code = yield run_fetchq(recipe)
        self.assertEqual(code, 0)
        self.check_output()


class _Exit(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.done: defer.Deferred[int] = defer.Deferred()
        self.err = b""

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Any) -> None:
        code = reason.value.exitCode
        self.done.callback(-9 if code is None else code)


def when_served(site: DemoSite, pages: int, f: Callable[..., Any], *args: Any) -> None:
    """Call ``f(*args)`` once ``site`` has served ``pages`` requests (checked
    every 10 ms)."""

    def check() -> None:
        if sum(site.requests.values()) >= pages:
            f(*args)
        else:
            reactor.callLater(0.01, check)

    check()


def run_fetchq(
    recipe: Path,
    kill_after: float | None = None,
    signal_after: tuple[float, str] | None = None,
    signal_when: tuple[Callable[[], bool], str] | None = None,
) -> defer.Deferred[int]:
    """Run ``python -m fetchq run RECIPE`` in a child process; with
    ``kill_after``, SIGKILL it after that many seconds, with ``signal_after``
    (seconds, name) send that signal, with ``signal_when`` (predicate, name)
    send it once the predicate holds (checked every 10 ms).  Fires with the
    exit status (-9 if killed); the Deferred's ``stderr`` attribute holds
    what it printed."""
    proto = _Exit()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    transport = reactor.spawnProcess(
        proto,
        sys.executable,
        [sys.executable, "-m", "fetchq", "run", str(recipe)],
        env=env,
        path=str(recipe.parent),
    )
    if signal_after is None and kill_after is not None:
        signal_after = (kill_after, "KILL")
    if signal_after is not None:
        delay, name = signal_after

        def send() -> None:
            if not proto.done.called:
                transport.signalProcess(name)

        call = reactor.callLater(delay, send)
        proto.done.addBoth(lambda r: (call.active() and call.cancel(), r)[1])
    if signal_when is not None:
        ready, signal_name = signal_when
        polls: list[Any] = []

        def poll() -> None:
            polls.clear()
            if proto.done.called:
                return
            if ready():
                transport.signalProcess(signal_name)
            else:
                polls.append(reactor.callLater(0.01, poll))

        poll()
        proto.done.addBoth(lambda r: ([c.cancel() for c in polls if c.active()], r)[1])
    proto.done.addBoth(lambda r: (setattr(proto.done, "stderr", proto.err), r)[1])
    return proto.done
