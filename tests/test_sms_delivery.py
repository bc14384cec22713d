"""Delivery statuses: the fake's statuses moving over (simulated) time as
Twilio documents them, ``SmsSender.delivery``, and ``fetchq sms status``:
in-process on a task.Clock, and as a real command against the fake on a
loopback port."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

from treq.testing import StubTreq
from twisted.internet import defer, reactor, task
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from fetchq.recipe import load_recipe
from fetchq.sms import (
    AuthFailed,
    Message,
    ProviderRejected,
    ProviderThrottled,
    SmsSender,
)
from fetchq.sms_status import DeliveryCheck
from fetchq.store import NewItem, SQLiteStore
from fetchq.testing import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    DEFAULT_AUTH_TOKEN,
    FakeSMSProvider,
    run_until_idle,
    serve_sms,
)
from tests import redis_server

ROOT = Path(__file__).resolve().parent.parent
SENDER = "+12125550100"
DELIVERED = "+19175550001"
UNREACHABLE = "+19175550002"
FILTERED = "+19175550003"
NO_RECEIPT = "+19175550004"
OUTCOMES: dict[str, tuple[str, int | None]] = {
    UNREACHABLE: ("undelivered", 30003),
    FILTERED: ("failed", 30007),
    NO_RECEIPT: ("sent", None),
}

RECIPE = """\
kind: sms
input:
  path: messages.csv
  id_field: id
output:
  path: out/sent.jsonl
queue:
  width: {width}
retry:
  max_attempts: 4
  base_delay: 1s
sms:
  base_url: {base}
  account_sid: {account}
{credentials}
  from: "{sender}"
  body: "Hi {{name}}"
"""
TOKEN = f"  auth_token: {DEFAULT_AUTH_TOKEN}"
KEY = f"  api_key: {DEFAULT_API_KEY}\n  api_secret: {DEFAULT_API_SECRET}"


def write_recipe(
    folder: Path, base: str, *, width: int = 4, credentials: str = TOKEN
) -> Path:
    """A recipe in ``folder`` (its input holds a header only: the state
    says what was sent)."""
    (folder / "messages.csv").write_text("id,to,name\n")
    path = folder / "sms.yaml"
    path.write_text(
        RECIPE.format(
            width=width,
            base=base,
            account=DEFAULT_ACCOUNT_SID,
            credentials=credentials,
            sender=SENDER,
        )
    )
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class FakeStatusTests(SynchronousTestCase):
    """The fake's statuses move queued -> sending -> sent -> final, on its
    clock, with Twilio's fields."""

    def test_timeline(self) -> None:
        """A delivered message is queued, sending, sent (with date_sent),
        then delivered after the receipt delay; undelivered carries 30003
        and its message; failed comes straight from sending; a number
        without receipts stays sent."""
        clock = Clock()
        provider = FakeSMSProvider(
            clock,
            latency=0,
            per_from_rate=100.0,
            sending_time=1.0,
            receipt_delay=4.0,
            outcomes=OUTCOMES,
        )
        stub = StubTreq(provider)
        sender = SmsSender(_config("http://sms.test"), clock, http=stub)  # sends at t=0
        sids = {}
        for to in (DELIVERED, UNREACHABLE, FILTERED, NO_RECEIPT):
            d = sender.send(Message(to, "hi"))
            run_until_idle(clock, stub)
            sids[to] = self.successResultOf(d).sid

        def status(to: str) -> dict[str, Any]:
            d = sender.delivery(sids[to])
            run_until_idle(clock, stub)
            return self.successResultOf(d).record()

        self.assertIn(status(DELIVERED)["status"], ("queued", "sending"))
        clock.advance(1.5)
        sent = status(DELIVERED)
        self.assertEqual(sent["status"], "sent")
        self.assertIsNotNone(sent["date_sent"])
        self.assertFalse(sent["final"])
        self.assertEqual(status(FILTERED)["status"], "failed")
        self.assertEqual(status(FILTERED)["error_code"], 30007)
        clock.advance(5)
        done = status(DELIVERED)
        self.assertEqual((done["status"], done["final"]), ("delivered", True))
        self.assertIsNone(done["error_code"])
        lost = status(UNREACHABLE)
        self.assertEqual(
            (lost["status"], lost["error_code"], lost["error_message"]),
            ("undelivered", 30003, "Unreachable destination handset"),
        )
        clock.advance(3600)
        self.assertEqual(status(NO_RECEIPT)["status"], "sent")

    def test_errors(self) -> None:
        """An unknown sid is ProviderRejected 404 / 20404; a scripted 20429
        on a read is ProviderThrottled with the provider's delay; a read
        without credentials is AuthFailed."""
        clock = Clock()
        provider = FakeSMSProvider(clock, latency=0)
        stub = StubTreq(provider)
        sender = SmsSender(_config("http://sms.test"), clock, http=stub)
        d = sender.delivery("SM" + "0" * 32)
        run_until_idle(clock, stub)
        missing = self.failureResultOf(d).value
        self.assertIsInstance(missing, ProviderRejected)
        assert isinstance(missing, ProviderRejected)
        self.assertEqual((missing.status, missing.code), (404, 20404))
        provider.fail_next(429, code=20429, retry_after=7, method="GET")
        d = sender.delivery("SM" + "0" * 32)
        run_until_idle(clock, stub)
        throttled = self.failureResultOf(d).value
        self.assertIsInstance(throttled, ProviderThrottled)
        assert isinstance(throttled, ProviderThrottled)
        self.assertEqual(throttled.delay, 7)
        other = SmsSender(
            _config("http://sms.test", auth_token="wrong"), clock, http=stub
        )
        d = other.delivery("SM" + "0" * 32)
        run_until_idle(clock, stub)
        self.assertIsInstance(self.failureResultOf(d).value, AuthFailed)


def _config(base: str, **changes: Any) -> Any:
    from fetchq.sms import SmsConfig

    values: dict[str, Any] = {
        "account_sid": DEFAULT_ACCOUNT_SID,
        "auth_token": DEFAULT_AUTH_TOKEN,
        "base_url": base,
        "from_number": SENDER,
    }
    values.update(changes)
    return SmsConfig(**values)


class DeliveryCheckTests(SynchronousTestCase):
    """``fetchq sms status`` in-process: a fake provider on a task.Clock,
    the run's state in a real SQLite file."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.provider = FakeSMSProvider(
            self.clock,
            latency=0.05,
            per_from_rate=100.0,
            receipt_delay=5.0,
            outcomes=OUTCOMES,
        )
        self.stub = StubTreq(self.provider)
        self.folder = Path(tempfile.mkdtemp(prefix="fetchq-delivery-"))
        self.addCleanup(lambda: __import__("shutil").rmtree(self.folder, True))
        self.path = write_recipe(self.folder, "http://sms.test", width=2)
        self.recipe = load_recipe(self.path)

    def send(self, numbers: list[str]) -> dict[str, str]:
        """Send one message to each number and record it in the state as a
        run does (its record, with the sid, acked ok); {id: sid}."""
        sender = SmsSender(self.recipe.sms.config(), self.clock, http=self.stub)
        self.recipe.state.path.parent.mkdir(parents=True, exist_ok=True)
        store = SQLiteStore(self.recipe.state.path)
        sids = {}
        for n, to in enumerate(numbers):
            d = sender.send(Message(to, f"Hi {n}", id=f"m{n}"))
            run_until_idle(self.clock, self.stub)
            result = self.successResultOf(d)
            store.add([NewItem(f"m{n}", {"to": to})])
            record = {**result.record(), "outcome": "ok", "attempts": 1}
            store.ack(f"m{n}", "ok", record, self.clock.seconds())
            sids[f"m{n}"] = result.sid
        store.close()
        return sids

    def check(self, recipe: Any = None, **kw: Any) -> tuple[int, str]:
        """Run one ``fetchq sms status`` to its end: (exit code, what it
        said)."""
        out = io.StringIO()
        check = DeliveryCheck(
            recipe or self.recipe, self.clock, out, http=self.stub, **kw
        )
        d = check.run()
        run_until_idle(self.clock, self.stub)
        code: int = self.successResultOf(d)
        return code, out.getvalue()

    def records(self) -> dict[str, dict[str, Any]]:
        lines = read_jsonl(self.folder / "out" / "sent.jsonl")
        by_id = {line["id"]: line for line in lines}
        self.assertEqual(len(by_id), len(lines), "one line per message")
        return by_id

    def reads(self) -> int:
        return self.provider.requests["GET"]

    def test_final_statuses_written_and_kept(self) -> None:
        """Each message's delivery goes into its record (delivered;
        undelivered 30003; failed 30007; sent, not final); the next
        invocation reads only the one not final, and one more reads it
        again; the output keeps one line per message."""
        self.send([DELIVERED, UNREACHABLE, FILTERED, NO_RECEIPT])
        self.clock.advance(60)
        code, said = self.check()
        self.assertEqual(code, 0)
        self.assertEqual(self.reads(), 4)
        records = self.records()
        self.assertEqual(records["m0"]["delivery"]["status"], "delivered")
        self.assertTrue(records["m0"]["delivery"]["final"])
        self.assertEqual(records["m0"]["status"], "queued")  # as sent: kept
        self.assertEqual(
            (
                records["m1"]["delivery"]["status"],
                records["m1"]["delivery"]["error_code"],
            ),
            ("undelivered", 30003),
        )
        self.assertEqual(records["m2"]["delivery"]["status"], "failed")
        self.assertEqual(records["m2"]["delivery"]["error_code"], 30007)
        self.assertEqual(records["m3"]["delivery"]["status"], "sent")
        self.assertFalse(records["m3"]["delivery"]["final"])
        self.assertIn("delivered 1, undelivered 1, failed 1", said)
        self.assertIn("not final 1 (sent 1)", said)
        self.assertIn("30003 x1", said)
        self.assertIn("1 messages have no final status yet", said)
        code, said = self.check()
        self.assertEqual((code, self.reads()), (0, 5))
        self.assertIn("checking 1 messages (3 already final)", said)
        self.assertEqual(len(self.records()), 4)

    def test_nothing_to_check(self) -> None:
        """When every message is final, nothing is read."""
        self.send([DELIVERED])
        self.clock.advance(60)
        self.check()
        code, said = self.check()
        self.assertEqual((code, self.reads()), (0, 1))
        self.assertIn("nothing to check: 1 messages have a final status", said)

    def test_wait_polls_until_final(self) -> None:
        """Checked at once, the messages are queued; with a wait, they are
        read again every `every` seconds until final (then no more)."""
        self.send([DELIVERED, UNREACHABLE])
        code, said = self.check(wait=60, every=2)
        self.assertEqual(code, 0)
        records = self.records()
        self.assertEqual(records["m0"]["delivery"]["status"], "delivered")
        self.assertEqual(records["m1"]["delivery"]["status"], "undelivered")
        self.assertIn("2 not final yet: checking again in 2s", said)
        # Final after ~5.5 s: reads at about 0, 2, 4 and 6 s, then none.
        self.assertLessEqual(self.reads(), 10)
        self.assertGreaterEqual(self.reads(), 6)
        self.assertLess(self.clock.seconds(), 10)

    def test_wait_is_a_cap(self) -> None:
        """A message that stays sent (no receipts) is read until the wait
        is over, then left for a later invocation; the others are final."""
        self.send([DELIVERED, NO_RECEIPT])
        code, said = self.check(wait=20, every=5)
        self.assertEqual(code, 0)
        records = self.records()
        self.assertEqual(records["m0"]["delivery"]["status"], "delivered")
        self.assertEqual(records["m1"]["delivery"]["status"], "sent")
        self.assertIn("1 messages have no final status yet", said)
        self.assertLessEqual(self.clock.seconds(), 21)

    def test_throttles_and_errors_retried(self) -> None:
        """A 20429 with Retry-After 3 holds every read for 3 s, a 503 is
        retried with backoff, and every status is read in the end; the
        recipe's width caps the reads in flight."""
        self.send([DELIVERED, UNREACHABLE, FILTERED, NO_RECEIPT])
        self.clock.advance(60)
        start = self.clock.seconds()
        self.provider.max_in_flight = 0
        self.provider.fail_next(429, code=20429, retry_after=3, method="GET")
        self.provider.fail_next(503, method="GET")
        code, said = self.check()
        self.assertEqual(code, 0)
        self.assertGreaterEqual(self.clock.seconds() - start, 3)
        self.assertLessEqual(self.provider.max_in_flight, 2)
        self.assertEqual(self.provider.codes[20429], 1)
        self.assertEqual(self.provider.statuses[503], 1)
        self.assertTrue(all("delivery" in r for r in self.records().values()))
        self.assertNotIn("not read", said)

    def test_unreadable_left_for_later(self) -> None:
        """A read that fails every attempt (5xx) leaves the record as it
        was, says so, and is read by the next invocation."""
        self.send([DELIVERED])
        self.clock.advance(60)
        self.provider.fail_next(500, method="GET", count=4)
        code, said = self.check()
        self.assertEqual(code, 0)
        self.assertIn("not read 1 (1 ProviderError)", said)
        self.assertNotIn("delivery", self.records()["m0"])
        self.check()
        self.assertEqual(self.records()["m0"]["delivery"]["status"], "delivered")

    def test_refused_credentials_stop(self) -> None:
        """A refused token stops the check at once (exit 3), naming the
        fix, and changes no record."""
        self.send([DELIVERED, UNREACHABLE])
        self.clock.advance(60)
        wrong = load_recipe(self.path, overrides=["sms.auth_token=wrong"])
        code, said = self.check(wrong)
        self.assertEqual(code, 3)
        self.assertIn("cannot go on: AuthFailed", said)
        self.assertEqual(self.provider.statuses[401], 1)
        self.assertTrue(all("delivery" not in r for r in self.records().values()))

    def test_unknown_message(self) -> None:
        """A sid the provider does not know is recorded as not_found, final,
        and not read again."""
        self.send([DELIVERED])
        self.provider.messages.clear()
        self.provider._by_sid.clear()
        code, _ = self.check()
        self.assertEqual(code, 0)
        delivery = self.records()["m0"]["delivery"]
        self.assertEqual((delivery["status"], delivery["final"]), ("not_found", True))
        self.assertEqual(delivery["error_code"], 20404)
        self.check()
        self.assertEqual(self.reads(), 1)

    def test_api_key(self) -> None:
        """A recipe with an API key and secret reads statuses too."""
        self.send([DELIVERED])
        self.clock.advance(60)
        keyed = load_recipe(
            write_recipe(self.folder, "http://sms.test", credentials=KEY)
        )
        code, _ = self.check(keyed)
        self.assertEqual(code, 0)
        self.assertEqual(self.records()["m0"]["delivery"]["status"], "delivered")

    def test_no_state(self) -> None:
        """Without a state file there is nothing to check."""
        with self.assertRaises(ValueError) as caught:
            DeliveryCheck(self.recipe, self.clock)
        self.assertIn("nothing was sent yet", str(caught.exception))


class CommandTests(TestCase):
    """`fetchq run` then `fetchq sms status --wait` as real commands against
    the fake on a loopback port."""

    @defer.inlineCallbacks
    def test_redis_away(self) -> Generator[Any, Any, None]:
        """A Redis state that cannot be reached is one line and exit 2,
        nothing written."""
        folder = Path(tempfile.mkdtemp(prefix="fetchq-status-"))
        self.addCleanup(lambda: __import__("shutil").rmtree(folder, True))
        path = write_recipe(folder, "http://sms.test")
        shared = load_recipe(path, overrides=["state.url=redis://127.0.0.1:1/0"])
        out = io.StringIO()
        code = yield DeliveryCheck(shared, reactor, out).run()
        self.assertEqual(code, 2)
        [line] = out.getvalue().splitlines()
        self.assertIn("fetchq: error:", line)
        self.assertIn("127.0.0.1:1", line)
        self.assertFalse((folder / "out" / "sent.jsonl").exists())

    def test_run_then_status(self) -> Any:
        """Two messages are sent by a real run; `fetchq sms status --wait`
        then waits until each is final and exits 0, and the output has one
        line per message with its delivery."""
        return self.run_then_status("")

    def test_run_then_status_on_redis(self) -> Any:
        """The same with the run's state in Redis: the delivery check reads
        and amends the records there and writes the output from Redis."""
        server = redis_server.shared()
        name = redis_server.run_name()
        return self.run_then_status(f"  url: {server.url}\n  run: {name}\n")

    @defer.inlineCallbacks
    def run_then_status(self, state: str) -> Generator[Any, Any, None]:
        folder = Path(tempfile.mkdtemp(prefix="fetchq-status-"))
        self.addCleanup(lambda: __import__("shutil").rmtree(folder, True))
        provider = FakeSMSProvider(
            reactor,
            latency=0.01,
            per_from_rate=50.0,
            sending_time=0.1,
            receipt_delay=0.5,
            outcomes=OUTCOMES,
        )
        served = serve_sms(reactor, provider=provider)
        self.addCleanup(served.stop)
        recipe = write_recipe(folder, served.url, credentials=KEY)
        if state:
            recipe.write_text(recipe.read_text() + "state:\n" + state)
        rows = [f"m{n},{to},Ann{n}" for n, to in enumerate((DELIVERED, UNREACHABLE))]
        (folder / "messages.csv").write_text("id,to,name\n" + "\n".join(rows) + "\n")
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        for command in (
            ["run", str(recipe)],
            ["sms", "status", str(recipe), "--wait", "30s", "--every", "200ms"],
        ):
            process = subprocess.Popen(
                [sys.executable, "-m", "fetchq", *command],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            self.addCleanup(lambda p=process: p.poll() is None and p.kill())
            while process.poll() is None:
                yield task.deferLater(reactor, 0.05, lambda: None)
            said = process.stderr.read().decode() if process.stderr else ""
            self.assertEqual(process.returncode, 0, said)
        self.assertIn("undelivered 1", said)
        records = {r["id"]: r for r in read_jsonl(folder / "out" / "sent.jsonl")}
        self.assertEqual(sorted(records), ["m0", "m1"])
        self.assertEqual(records["m0"]["delivery"]["status"], "delivered")
        self.assertEqual(records["m1"]["delivery"]["error_code"], 30003)
        self.assertEqual(len(provider.messages), 2)


class AmendTests(SynchronousTestCase):
    """``amend``, which the delivery check writes with, in the memory and
    SQLite stores: a done item's record changes, nothing else does."""

    def stores(self) -> list[Any]:
        from fetchq.store import MemoryStore

        folder = Path(tempfile.mkdtemp(prefix="fetchq-amend-"))
        self.addCleanup(lambda: __import__("shutil").rmtree(folder, True))
        return [MemoryStore(), SQLiteStore(folder / "state.sqlite")]

    def test_amend(self) -> None:
        """The record is replaced in its place (same seq, same outcome,
        counts unchanged); a pending item is not amended (False); an
        unknown id is a KeyError and a bad record a TypeError; in SQLite the
        change is there after reopening."""
        for store in self.stores():
            store.add([NewItem("a", {}), NewItem("b", {}), NewItem("c", {})])
            store.ack("a", "ok", {"n": 1}, 1.0)
            store.ack("b", "failed", {"n": 2}, 1.0)
            before = store.counts()
            self.assertTrue(store.amend("a", {"n": 1, "delivery": "x"}, 2.0))
            self.assertFalse(store.amend("c", {"n": 3}, 2.0))
            with self.assertRaises(KeyError):
                store.amend("z", {}, 2.0)
            with self.assertRaises(TypeError):
                store.amend("a", "text", 2.0)
            records = store.records()
            self.assertEqual(
                [(r.seq, r.id, r.outcome, r.record) for r in records],
                [
                    (1, "a", "ok", {"n": 1, "delivery": "x"}),
                    (2, "b", "failed", {"n": 2}),
                ],
            )
            self.assertEqual(store.counts(), before)
            store.flush()
            if isinstance(store, SQLiteStore):
                path = store.path
                store.close()
                store = SQLiteStore(path)
                self.assertEqual(store.get("a").record, {"n": 1, "delivery": "x"})
            store.close()
