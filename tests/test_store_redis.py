"""What only the Redis store does, against a real redis-server: limits that
every worker obeys together (global width by leases, GCRA rates, lane width,
rate and holds), leases renewed on the server's clock, named leases with
fencing, batched writes that survive a lost connection, and the layout's
memory per pending item.  (The Store contract itself runs on Redis in
tests/test_store.py.)"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase

from fetchq.store import MemoryStore, NewItem
from fetchq.store.base import StoreError
from fetchq.store.redis import RedisStore, bucket, parse_url
from tests import redis_server


def items(lane: str | None, n: int, start: int = 0) -> list[NewItem]:
    return [NewItem(f"{lane}-{i}", {"i": i}, 0, lane) for i in range(start, start + n)]


class RedisTestCase(TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def connect(
        self, run: str | None = None, **kw: Any
    ) -> Generator[Any, Any, RedisStore]:
        server = redis_server.shared()
        store = yield RedisStore.connect(
            server.url, run or redis_server.run_name(), reactor, **kw
        )
        self.addCleanup(store.close)
        return store


class LimitTests(RedisTestCase):
    """Limits on a simulated clock: every deadline from the test's ``now``."""

    @defer.inlineCallbacks
    def test_global_width_counts_every_workers_leases(
        self,
    ) -> Generator[Any, Any, None]:
        """Two workers (two connections) never hold more than the run's width
        between them; a slot comes back when its item is acked, and a dead
        worker's slots come back when its leases run out."""
        run = redis_server.run_name()
        a = yield self.connect(run, server_time=False, renew=False)
        b = yield self.connect(run, server_time=False, renew=False)
        yield a.configure(width=3)
        yield a.add(items("x", 10))
        got_a = yield a.claim(2, 0.0, 10.0, per_lane=10, limits=True)
        got_b = yield b.claim(5, 0.0, 60.0, per_lane=10, limits=True)
        self.assertEqual((len(got_a), len(got_b)), (2, 1))
        self.assertEqual((yield b.claim(5, 1.0, 60.0, per_lane=10, limits=True)), [])
        yield a.ack(got_a[0].id, "ok", None, 1.0)
        self.assertEqual(
            len((yield b.claim(5, 1.0, 60.0, per_lane=10, limits=True))), 1
        )
        # a dies: its remaining lease ends at 10 s; then its slot is free
        self.assertEqual((yield b.claim(5, 9.9, 60.0, per_lane=10, limits=True)), [])
        again = yield b.claim(5, 10.0, 60.0, per_lane=10, limits=True)
        self.assertEqual([c.id for c in again], [got_a[1].id])
        self.assertEqual(again[0].attempts, 2)

    @defer.inlineCallbacks
    def test_global_rate_is_gcra(self) -> Generator[Any, Any, None]:
        """At 10/s with a burst of 2, two launches come at once, then one
        every 100 ms, however the claims are spread over workers.  A claim
        takes the launch slots due within 50 ms, each with its launch time
        (so a claim that reaches Redis late loses nothing), and says when
        to claim next."""
        run = redis_server.run_name()
        a = yield self.connect(run, server_time=False, renew=False)
        b = yield self.connect(run, server_time=False, renew=False)
        yield a.configure(rate=10, burst=2)
        yield a.add(items("x", 20))
        got = yield a.claim(10, 0.0, 60.0, per_lane=10, limits=True)
        self.assertEqual(len(got), 2)
        self.assertEqual(a.last_delays, {})  # both now
        self.assertAlmostEqual(a.last_wake, 0.05, places=3)
        self.assertEqual((yield b.claim(10, 0.04, 60.0, per_lane=10, limits=True)), [])
        got = yield b.claim(10, 0.06, 60.0, per_lane=10, limits=True)
        self.assertEqual(len(got), 1)
        self.assertAlmostEqual(b.last_delays[got[0].id], 0.04, places=3)
        launches = [0.0, 0.0, 0.1]
        t = 0.11
        while t < 1.0 - 1e-9:
            for store in (a, b):
                got = yield store.claim(10, t, 60.0, per_lane=10, limits=True)
                launches += [t + store.last_delays.get(c.id, 0.0) for c in got]
            t = round(t + 0.05, 3)
        # one every 100 ms, each at its slot: 0.2, 0.3, ... 1.0
        self.assertEqual(
            [round(x, 3) for x in launches[2:]], [k / 10 for k in range(1, 11)]
        )

    @defer.inlineCallbacks
    def test_lane_width_rate_and_hold(self) -> Generator[Any, Any, None]:
        """A lane's width caps its leases; its rate spaces its launches; a
        hold from any worker stops it until the hold ends, while the other
        lanes go on."""
        store = yield self.connect(server_time=False, renew=False)
        yield store.configure(lane_width=2)
        yield store.set_lane("slow", rate=1)
        yield store.add(items("wide", 5) + items("slow", 5) + items("held", 5))
        yield store.hold_lane("held", 30.0, now=0.0)
        got = yield store.claim(20, 0.0, 60.0, per_lane=10, limits=True)
        lanes = sorted(c.key or "" for c in got)
        self.assertEqual(lanes, ["slow", "wide", "wide"])
        got = yield store.claim(20, 0.5, 60.0, per_lane=10, limits=True)
        self.assertEqual(got, [])  # wide at width, slow's next at 1 s
        got = yield store.claim(20, 1.0, 60.0, per_lane=10, limits=True)
        self.assertEqual([c.key for c in got], ["slow"])

    @defer.inlineCallbacks
    def test_paused_and_configure_reach_every_worker(
        self,
    ) -> Generator[Any, Any, None]:
        """paused=True hands out nothing to any worker; limits() reads back
        what configure() set."""
        run = redis_server.run_name()
        a = yield self.connect(run, server_time=False, renew=False)
        b = yield self.connect(run, server_time=False, renew=False)
        yield a.add(items("x", 3))
        yield a.configure(paused=True, width=7, rate=2.5)
        self.assertEqual((yield b.claim(5, 0.0, 9.0, per_lane=5, limits=True)), [])
        limits = yield b.limits()
        self.assertEqual(
            (limits["width"], limits["rate"], limits["paused"]), (7, 2.5, True)
        )
        yield a.configure(paused=None, width=None, rate=None)
        self.assertEqual(len((yield b.claim(5, 0.0, 9.0, per_lane=5, limits=True))), 3)

    @defer.inlineCallbacks
    def test_a_claim_that_fills_the_share_says_wait(
        self,
    ) -> Generator[Any, Any, None]:
        """A claim that takes every slot the width leaves its worker (here
        its share: two workers, width 4) says to claim again only when a
        lease can end, not at once: claiming again before one of its own
        jobs ends would only be answered with nothing.  A claim that the
        worker's own limit cut short still says at once."""
        run = redis_server.run_name()
        a = yield self.connect(run, server_time=False, renew=False)
        b = yield self.connect(run, server_time=False, renew=False)
        yield a.configure(width=4)
        yield a.add(items("x", 10))
        yield b.claim(1, 0.0, 60.0, per_lane=10, limits=True)  # b shares it
        self.assertEqual(
            len((yield a.claim(1, 0.0, 60.0, per_lane=10, limits=True))), 1
        )
        self.assertLess(a.last_wake, 0.01)  # a may take one more of its 2
        self.assertEqual(
            len((yield a.claim(5, 0.0, 60.0, per_lane=10, limits=True))), 1
        )
        self.assertAlmostEqual(a.last_wake, 60.0, places=3)  # its first lease's end
        self.assertEqual((yield a.claim(5, 0.0, 60.0, per_lane=10, limits=True)), [])

    @defer.inlineCallbacks
    def test_a_claim_finds_the_slots_acked_before_it(
        self,
    ) -> Generator[Any, Any, None]:
        """Acks are batched (sent on the next reactor turn); a claim made in
        the same turn as an ack still finds the slot the ack frees: the
        store sends its queued writes first, over the same connection, so
        Redis runs them before the claim."""
        store = yield self.connect(renew=False)
        yield store.configure(width=1)
        yield store.add(items("x", 3))
        first = yield store.claim(5, 0.0, 60.0, per_lane=5, limits=True)
        self.assertEqual(len(first), 1)
        acked = store.ack(first[0].id, "ok", None, 0.0)
        second = yield store.claim(5, 0.0, 60.0, per_lane=5, limits=True)
        self.assertTrue((yield acked))
        self.assertEqual(len(second), 1)
        self.assertNotEqual(second[0].id, first[0].id)


class BatchTests(RedisTestCase):
    """The scripts read and write a batch at a time (a claim pops a lane's
    list without looking at its head again, an ack finds every lease and
    owner in one call, counters are written once a script): checked
    against MemoryStore, the model, on one lane."""

    @defer.inlineCallbacks
    def test_claims_and_batched_acks_agree_with_the_model(
        self,
    ) -> Generator[Any, Any, None]:
        """400 random steps (adds at 3 priorities, claims by lane, requeues
        now or later, batches of acks sent in one turn with an id twice)
        give what MemoryStore gives: each call's result, the counts and the
        records."""
        store = yield self.connect(server_time=False, renew=False)
        model = MemoryStore()
        rng = random.Random(13)
        made, claimed, now = 0, [], 0.0
        for _ in range(400):
            op = rng.choice("aaccrrkkt")
            if op == "a":
                new = [
                    NewItem(f"i{made + k}", {"k": made + k}, rng.choice((0, 1, 2)), "x")
                    for k in range(rng.randint(1, 6))
                ]
                made += len(new)
                self.assertEqual((yield store.add(new)), model.add(new))
            elif op == "c":
                n = rng.randint(1, 8)
                got = yield store.claim(n, now, 1000.0, per_lane=n)
                want = model.claim(n, now, 1000.0, per_lane=n)
                self.assertEqual(
                    [(c.id, c.attempts) for c in got],
                    [(c.id, c.attempts) for c in want],
                )
                claimed += [c.id for c in got]
            elif op == "r" and claimed:
                item = claimed.pop(rng.randrange(len(claimed)))
                later = rng.choice((None, now + 2.0))
                self.assertEqual(
                    (yield store.requeue(item, later, now)),
                    model.requeue(item, later, now),
                )
            elif op == "k" and claimed:
                batch = rng.sample(claimed, min(len(claimed), rng.randint(1, 5)))
                batch.append(batch[0])  # the same id twice in one batch
                outcome = rng.choice(("ok", "failed"))
                sent = [store.ack(i, outcome, {"i": i}, now) for i in batch]
                got = yield defer.gatherResults(sent)
                want = [model.ack(i, outcome, {"i": i}, now) for i in batch]
                self.assertEqual(got, want)
                self.assertEqual(got[-1], False)
                claimed = [i for i in claimed if i not in batch]
            elif op == "t":
                now += 1.0
            self.assertEqual((yield store.counts()), model.counts())
        self.assertEqual((yield store.records(0, 10_000)), model.records(0, 10_000))
        lanes = yield store.lanes_page(0, 10)
        in_flight = {lane["key"]: lane["in_flight"] for lane in lanes["lanes"]}
        self.assertEqual(in_flight.get("x", 0), model.counts().claimed)


class RecordTextTests(RedisTestCase):
    @defer.inlineCallbacks
    def test_the_output_from_texts_is_the_output_from_records(
        self,
    ) -> Generator[Any, Any, None]:
        """write_output from the store's record texts writes the bytes the
        decoded records give (every kind of record of tests/test_output.py,
        no record included)."""
        from fetchq.output import write_output
        from tests.test_output import RECORDS

        store = yield self.connect(server_time=False, renew=False)
        yield store.add([NewItem(f"i{n}", {"n": n}) for n in range(len(RECORDS))])
        for n, record in enumerate(RECORDS):
            yield store.ack(f"i{n}", "ok", record, 1.0)

        class RecordsOnly:
            records = store.records

        folder = Path(tempfile.mkdtemp(prefix="fetchq-output-"))
        self.addCleanup(shutil.rmtree, folder, True)
        fast, slow = folder / "fast.jsonl", folder / "slow.jsonl"
        written = yield defer.Deferred.fromCoroutine(write_output(store, fast))
        self.assertEqual(written, len(RECORDS))
        yield defer.Deferred.fromCoroutine(write_output(RecordsOnly(), slow))
        self.assertEqual(fast.read_bytes(), slow.read_bytes())
        texts = yield store.record_texts(0, 3)
        self.assertEqual([seq for seq, _ in texts], [1, 2, 3])


class LeaseTests(RedisTestCase):
    @defer.inlineCallbacks
    def test_leases_renew_while_a_job_runs(self) -> Generator[Any, Any, None]:
        """On the server's clock, a held item's lease (0.3 s) is renewed
        while this process holds it: after 1 s another worker still cannot
        claim it; once the holder stops renewing, it can."""
        run = redis_server.run_name()
        a = yield self.connect(run)
        b = yield self.connect(run, renew=False)
        yield a.add(items("x", 1))
        (got,) = yield a.claim(1, 0.0, 0.3, per_lane=1)
        yield task.deferLater(reactor, 1.0, lambda: None)
        self.assertEqual((yield b.claim(1, 0.0, 0.3, per_lane=1)), [])
        assert a._renewer is not None
        a._renewer.stop()
        yield task.deferLater(reactor, 0.5, lambda: None)
        (again,) = yield b.claim(1, 0.0, 5.0, per_lane=1)
        self.assertEqual((again.id, again.attempts), (got.id, 2))

    @defer.inlineCallbacks
    def test_named_lease_and_fence(self) -> Generator[Any, Any, None]:
        """A named lease has one holder; a process that lost it cannot add
        rows fenced by it; the new holder can."""
        run = redis_server.run_name()
        a = yield self.connect(run)
        b = yield self.connect(run)
        self.assertTrue((yield a.lease("loader", 0.2)))
        self.assertFalse((yield b.lease("loader", 0.2)))
        self.assertEqual((yield a.add(items("x", 1), fence="loader")), 1)
        yield task.deferLater(reactor, 0.4, lambda: None)
        self.assertTrue((yield b.lease("loader", 5.0)))
        error = yield self.assertFailure(
            a.add(items("x", 1, 1), fence="loader"), Exception
        )
        self.assertIn("FENCED", str(error))
        self.assertEqual((yield b.add(items("x", 1, 1), fence="loader")), 1)
        self.assertFalse((yield a.lease("loader", 5.0, "renew")))

    @defer.inlineCallbacks
    def test_add_expects_the_checkpoint_last_written(
        self,
    ) -> Generator[Any, Any, None]:
        """An add that expects a meta value finds it (absent counts as
        None) or adds nothing and fails with STALE: a loader whose last
        write Redis lost cannot write its next rows past the gap."""
        store = yield self.connect()
        first = {"line": 2, "offset": 10}
        added = yield store.add(
            items("x", 2), meta={"cp": first}, fence=None, expect=("cp", None)
        )
        self.assertEqual(added, 2)
        # Redis lost the next write: it still holds `first`, the writer
        # expects what it wrote after it.
        error = yield self.assertFailure(
            store.add(
                items("x", 2, 2),
                meta={"cp": {"line": 6}},
                expect=("cp", {"line": 4, "offset": 20}),
            ),
            Exception,
        )
        self.assertIn("STALE", str(error))
        self.assertEqual((yield store.counts()).pending, 2)
        self.assertEqual((yield store.meta_get("cp")), first)
        # Taken up from what Redis holds (as read back), the write lands.
        held = yield store.meta_get("cp")
        added = yield store.add(
            items("x", 2, 2), meta={"cp": {"line": 4}}, expect=("cp", held)
        )
        self.assertEqual(added, 2)


class ConnectTests(RedisTestCase):
    @defer.inlineCallbacks
    def test_unreachable_redis_is_a_clear_error(self) -> Generator[Any, Any, None]:
        """A Redis that does not answer is a StoreError naming the host and
        port, never the password, within the timeout."""
        error = yield self.assertFailure(
            RedisStore.connect(
                "redis://:hunter2@127.0.0.1:1/0", "x", reactor, timeout=0.5
            ),
            StoreError,
        )
        self.assertIn("127.0.0.1:1", str(error))
        self.assertIn("cannot connect", str(error))
        self.assertNotIn("hunter2", str(error))

    @defer.inlineCallbacks
    def test_credentials_refused_at_once(self) -> Generator[Any, Any, None]:
        """A password Redis refuses is said at once (not after the timeout,
        with no error left unhandled), naming the host, never the password;
        the right one connects."""
        server = redis_server.RedisServer()
        self.addCleanup(server.stop)
        server.command("CONFIG", "SET", "requirepass", "right-one")
        url = f"redis://:wrong-one@127.0.0.1:{server.port}/0"
        error = yield self.assertFailure(
            RedisStore.connect(url, "x", reactor, timeout=30.0), StoreError
        )
        self.assertIn(f"127.0.0.1:{server.port}: cannot auth: WRONGPASS", str(error))
        self.assertNotIn("wrong-one", str(error))
        store = yield RedisStore.connect(
            url.replace("wrong-one", "right-one"), "x", reactor
        )
        yield store.close()

    def test_parse_url(self) -> None:
        """redis:// and rediss:// URLs parse; anything else is a ValueError
        that names the part."""
        self.assertEqual(
            parse_url("rediss://u:p%40ss@h.example:6380/3"),
            {
                "host": "h.example",
                "port": 6380,
                "db": 3,
                "username": "u",
                "password": "p@ss",
                "tls": True,
            },
        )
        for bad in ("http://h/", "redis:///0", "redis://h/x", "redis://h:99999/0"):
            self.assertRaises(ValueError, parse_url, bad)

    @defer.inlineCallbacks
    def test_writes_survive_a_lost_connection(self) -> Generator[Any, Any, None]:
        """Acks made while Redis is down land once it is back (retried with
        backoff), and flush() fires only then."""
        server = redis_server.RedisServer(
            "--appendonly", "yes", "--appendfsync", "always"
        )
        self.addCleanup(server.stop)
        store = yield RedisStore.connect(server.url, "r", reactor, renew=False)
        self.addCleanup(store.close)
        yield store.add(items("x", 3))
        got = yield store.claim(3, 0.0, 60.0, per_lane=3)
        server.kill()
        acks = [store.ack(c.id, "ok", {"n": 1}, 0.0) for c in got]
        yield task.deferLater(reactor, 0.5, lambda: None)
        server.start()
        yield store.flush()
        self.assertEqual((yield defer.gatherResults(acks)), [True, True, True])
        counts = yield store.counts()
        self.assertEqual(dict(counts.done), {"ok": 3})


class LayoutTests(RedisTestCase):
    def test_bucket_matches_the_scripts(self) -> None:
        """The Python bucket of an id is the one the scripts compute."""
        self.assertEqual(bucket("abc"), "a99")  # sha1("abc") = a9993e36...

    @defer.inlineCallbacks
    def test_memory_per_pending_item(self) -> Generator[Any, Any, None]:
        """A pending fetch row (a 55-byte URL, on 100 hosts) costs at most
        250 bytes of Redis memory (used_memory before and after 20,000)."""
        server = redis_server.RedisServer()
        self.addCleanup(server.stop)
        store = yield RedisStore.connect(server.url, "mem", reactor)
        self.addCleanup(store.close)

        def used() -> int:
            info = server.command("INFO", "memory").decode()
            return int(info.split("used_memory:")[1].split("\r")[0])

        before = used()
        n = 20_000
        for start in range(0, n, 1000):
            yield store.add(
                NewItem(
                    str(i),
                    {
                        "url": f"https://host{i % 100:03}.example.com"
                        f"/path/page-{i:08}.html",
                        "id": str(i),
                    },
                    0,
                    f"host{i % 100:03}.example.com",
                )
                for i in range(start, start + 1000)
            )
        per_item = (used() - before) / n
        self.assertLessEqual(per_item, 250, per_item)
