"""`fetchq run` with sms and api recipes, against the fakes on real sockets.

The fakes are served by the test process on loopback ports; the runs are
in-process (``Run``) or, for the crash test, a real ``fetchq run`` that is
killed with SIGKILL and run again.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from fetchq import JobLaunched
from fetchq.recipe import load_recipe
from fetchq.run import Run
from fetchq.testing.api import serve as serve_api
from fetchq.testing.sms import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    FakeSMSProvider,
)
from fetchq.testing.sms import serve as serve_sms

ROOT = Path(__file__).resolve().parent.parent

SMS_RECIPE = """\
kind: sms
input:
  path: messages.csv
  id_field: id
  from_field: from
output:
  path: out/sent.jsonl
queue:
  width: 10
  per_sender:
    rate: {rate}/s
retry:
  max_attempts: 4
  base_delay: 100ms
sms:
  base_url: {base}
  account_sid: ${{TWILIO_ACCOUNT_SID}}
  auth_token: ${{TWILIO_AUTH_TOKEN}}
  body: "Hi {{name}}, your code is {{code}}."
"""

API_RECIPE = """\
kind: api
input:
  path: users.jsonl
  id_field: id
output:
  path: out/tweets.jsonl
queue:
  width: 8
retry:
  max_attempts: 8
  base_delay: 100ms
api:
  base_url: {base}
  path: /2/users/{{id}}/tweets
  token: ${{API_TOKEN}}
  pagination:
    max_pages: 3
  records: {records}
  reset_margin: 100ms
"""


WIDE_API_RECIPE = """\
kind: api
input:
  path: users.jsonl
  id_field: id
output:
  path: out/pages.jsonl
queue:
  width: 50
api:
  base_url: {base}
  path: /2/users/{{id}}/tweets
  token: ${{API_TOKEN}}
  pagination:
    max_pages: 3
  reset_margin: 100ms
"""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class KindRunTests(TestCase):
    def setUp(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fetchq-kinds-"))
        self.addCleanup(lambda: __import__("shutil").rmtree(self.folder, True))
        os.environ["TWILIO_ACCOUNT_SID"] = DEFAULT_ACCOUNT_SID
        os.environ["TWILIO_AUTH_TOKEN"] = DEFAULT_AUTH_TOKEN
        os.environ["API_TOKEN"] = "test-token"
        self.devnull = open(os.devnull, "w")  # noqa: SIM115
        self.addCleanup(self.devnull.close)

    def sms_provider(self, **kw: Any) -> tuple[FakeSMSProvider, str]:
        provider = FakeSMSProvider(reactor, latency=0.01, **kw)
        served = serve_sms(reactor, provider=provider)
        self.addCleanup(served.stop)
        return provider, served.url

    def write_messages(self, rows: int, senders: int, base: str, rate: float) -> Path:
        lines = ["id,to,from,name,code"]
        for i in range(rows):
            sender = f"+1212555{1000 + i % senders}"
            lines.append(f"m{i},+1646555{2000 + i},{sender},Ann{i},{1000 + i}")
        lines.append("bad,12345,+12125551000,Bob,1")  # not E.164: never sent
        (self.folder / "messages.csv").write_text("\n".join(lines) + "\n")
        recipe = self.folder / "sms.yaml"
        recipe.write_text(SMS_RECIPE.format(base=base, rate=rate))
        return recipe

    @defer.inlineCallbacks
    def test_sms_recipe_sends_each_message_once(self) -> Generator[Any, Any, None]:
        """24 messages over 3 senders at 8/s each, and one bad row: each
        message is accepted once, with the body its template made, the bad
        row is recorded as BadInput and never sent, and each sender's lane
        launched its messages at least 1/8 s apart (on the run's own clock:
        when the provider received them depends on the machine's load)."""
        provider, base = self.sms_provider()
        recipe = load_recipe(self.write_messages(24, 3, base, rate=8))
        run = Run(recipe, reactor, stream=self.devnull)
        launches: dict[Any, list[float]] = {}

        def launched(event: Any) -> None:
            if isinstance(event, JobLaunched):
                launches.setdefault(event.job.key, []).append(event.time)

        run.queue.subscribe(launched)
        code = yield run.run()
        self.assertEqual(code, 0)
        records = {r["id"]: r for r in read_jsonl(self.folder / "out" / "sent.jsonl")}
        self.assertEqual(len(records), 25)
        self.assertEqual(records["bad"]["outcome"], "failed")
        self.assertEqual(records["bad"]["error"]["name"], "BadInput")
        self.assertFalse(records["bad"]["maybe_sent"])
        sent = [r for r in records.values() if r["outcome"] == "ok"]
        self.assertEqual(len(sent), 24)
        self.assertTrue(all(r["sid"].startswith("SM") for r in sent))
        # The provider accepted each once, with the body the template made.
        self.assertEqual(len(provider.messages), 24)
        self.assertEqual(provider.duplicates(), [])
        first = provider.sent_to("+16465552000")
        self.assertEqual([m.body for m in first], ["Hi Ann0, your code is 1000."])
        # Each sender's lane kept its pace: its token bucket (8/s, bursts of
        # 1) lets a launch go at least 1/8 s after the one before, however
        # late the reactor runs.
        self.assertEqual(sorted(launches), [f"+1212555{1000 + k}" for k in range(3)])
        for times in launches.values():
            self.assertGreaterEqual(len(times), 8)
            gaps = [b - a for a, b in itertools.pairwise(times)]
            self.assertGreaterEqual(min(gaps), 1 / 8 - 1e-9, gaps)

    @defer.inlineCallbacks
    def test_sms_kill_9_and_resume_sends_each_once(self) -> Generator[Any, Any, None]:
        """A real `fetchq run` killed with SIGKILL halfway, then run again:
        every message is accepted by the provider exactly once (the sid of
        each sent message was committed when it completed, and the resend
        check covers a message accepted just before the kill)."""
        provider, base = self.sms_provider()
        recipe = self.write_messages(30, 2, base, rate=6)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        command = [sys.executable, "-m", "fetchq", "run", str(recipe)]
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        deadline = time.monotonic() + 30
        while len(provider.messages) < 10 and time.monotonic() < deadline:
            yield task.deferLater(reactor, 0.02, lambda: None)
        self.assertIsNone(process.poll(), "the run ended before it could be killed")
        process.send_signal(signal.SIGKILL)
        yield task.deferLater(reactor, 0, lambda: None)
        while process.poll() is None:
            yield task.deferLater(reactor, 0.02, lambda: None)
        before = len(provider.messages)
        self.assertTrue(10 <= before < 30, before)
        rerun = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        while rerun.poll() is None:
            yield task.deferLater(reactor, 0.05, lambda: None)
        self.assertEqual(
            rerun.returncode, 0, rerun.stderr.read() if rerun.stderr else ""
        )
        self.assertEqual(provider.duplicates(), [])
        self.assertEqual(len(provider.messages), 30)
        records = read_jsonl(self.folder / "out" / "sent.jsonl")
        self.assertEqual(
            sorted(r["id"] for r in records),
            sorted([f"m{i}" for i in range(30)] + ["bad"]),
        )

    @defer.inlineCallbacks
    def test_api_recipe_follows_pages_without_a_429(self) -> Generator[Any, Any, None]:
        """12 users x 3 pages against a quota of 10 calls per 1 s window: the
        run waits for each reset instead of being refused, and writes one
        record per tweet."""
        served = serve_api(
            reactor,
            quotas={"/2/users/{id}/tweets": (10, 1.0)},
            latency=0.01,
            pages=3,
            items_per_page=5,
        )
        self.addCleanup(served.stop)
        rows = [json.dumps({"id": str(100 + i)}) for i in range(12)]
        (self.folder / "users.jsonl").write_text("\n".join(rows) + "\n")
        recipe_path = self.folder / "api.yaml"
        recipe_path.write_text(API_RECIPE.format(base=served.url, records="item"))
        started = reactor.seconds()
        code = yield Run(load_recipe(recipe_path), reactor, stream=self.devnull).run()
        elapsed = reactor.seconds() - started
        self.assertEqual(code, 0)
        self.assertEqual(sum(served.fake.throttled.values()), 0)
        records = read_jsonl(self.folder / "out" / "tweets.jsonl")
        self.assertEqual(len(records), 12 * 3 * 5)
        self.assertEqual({r["outcome"] for r in records}, {"ok"})
        pages = {(r["id"], r["page"]) for r in records}
        self.assertEqual(len(pages), 36)
        # 36 calls at 10 per window: the fourth window must start (3 s).
        self.assertGreater(elapsed, 3.0)

    @defer.inlineCallbacks
    def test_api_run_wider_than_the_quota(self) -> Generator[Any, Any, None]:
        """A real `fetchq run` (its own process) of an api recipe at width 50
        against 15 calls per 1 s window, the fake on a loopback port with
        answers taking 10-30 ms in any order: 20 users x 3 pages, and the
        fake served no 429, every page of every user has its record, and
        the run exits 0.  (Before the fix each window after the first held
        the lane for a guessed minute, so the run outlived the test's 120 s
        timeout.)"""
        served = serve_api(
            reactor,
            quotas={"/2/users/{id}/tweets": (15, 1.0)},
            latency=0.01,
            jitter=0.02,
            aligned=True,
            pages=3,
            items_per_page=5,
        )
        self.addCleanup(served.stop)
        rows = [json.dumps({"id": str(100 + i)}) for i in range(20)]
        (self.folder / "users.jsonl").write_text("\n".join(rows) + "\n")
        recipe = self.folder / "api.yaml"
        recipe.write_text(WIDE_API_RECIPE.format(base=served.url))
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        process = subprocess.Popen(
            [sys.executable, "-m", "fetchq", "run", str(recipe)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        while process.poll() is None:
            yield task.deferLater(reactor, 0.05, lambda: None)
        stderr = process.stderr.read() if process.stderr else b""
        self.assertEqual(process.returncode, 0, stderr)
        self.assertEqual(sum(served.fake.throttled.values()), 0)
        self.assertEqual(served.fake.statuses[429], 0)
        records = read_jsonl(self.folder / "out" / "pages.jsonl")
        self.assertEqual(
            sorted((r["id"], r["page"]) for r in records),
            sorted((str(100 + i), page) for i in range(20) for page in (1, 2, 3)),
        )
        self.assertEqual({r["outcome"] for r in records}, {"ok"})
        self.assertEqual(served.fake.requests["/2/users/{id}/tweets"], 60)
