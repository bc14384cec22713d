"""One run, many workers, state in Redis (``SharedRun``), against a real
``redis-server`` and sites on real loopback sockets.

- In one process (one reactor): several ``SharedRun`` on one recipe share
  the rows (each row exactly one record, every worker did work), for every
  recipe kind; per-host width holds across workers, as the site counts it;
  a fatal failure in one worker stops them all.
- Real ``fetchq run`` processes: kill -9 one of three workers (and the
  loader), Redis down at start, Redis killed and restarted mid-run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Generator
from pathlib import Path
from typing import Any

from twisted.internet import defer, protocol, reactor, task
from twisted.trial.unittest import SynchronousTestCase, TestCase

from fetchq import cli
from fetchq.demo import DemoSite, SiteBehaviour
from fetchq.recipe import load_recipe
from fetchq.run import EXIT_FATAL, Run
from fetchq.shared_run import _POLL, SharedRun
from fetchq.store.redis import RedisStore
from fetchq.testing.api import serve as serve_api
from fetchq.testing.sms import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, FakeSMSProvider
from fetchq.testing.sms import serve as serve_sms
from tests import redis_server
from tests.counting_site import CountingSite

ROOT = Path(__file__).resolve().parent.parent

STATE = """\
state:
  url: {url}
  run: {run}
  lease: {lease}
"""

FETCH_RECIPE = """\
kind: fetch
input:
  path: urls.txt
output:
  path: out/result.jsonl
queue:
  width: {width}
  per_host:
    width: {host_width}
retry:
  max_attempts: 3
  base_delay: 10ms
  max_delay: 100ms
fetch:
  connect_timeout: 5s
  headers_timeout: 10s
  body_timeout: 10s
"""

SMS_RECIPE = """\
kind: sms
input:
  path: messages.csv
  id_field: id
  from_field: from
output:
  path: out/sent.jsonl
queue:
  width: 6
  per_sender:
    rate: {rate}/s
retry:
  max_attempts: 4
  base_delay: 100ms
sms:
  base_url: {base}
  account_sid: ${{TWILIO_ACCOUNT_SID}}
  auth_token: ${{TWILIO_AUTH_TOKEN}}
  body: "Hi {{name}}"
"""

API_RECIPE = """\
kind: api
input:
  path: users.jsonl
  id_field: id
output:
  path: out/tweets.jsonl
queue:
  width: 4
retry:
  max_attempts: 8
  base_delay: 100ms
api:
  base_url: {base}
  path: /2/users/{{id}}/tweets
  token: ${{API_TOKEN}}
  pagination:
    max_pages: 3
  records: page
  reset_margin: 100ms
"""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class SharedRunTestCase(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.redis = redis_server.shared()
        self.run_name = redis_server.run_name("sr")
        self.folder = Path(tempfile.mkdtemp(prefix="fetchq-shared-"))
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.log = self.folder / "said.txt"

    def set_env(self, **values: str) -> None:
        for name, value in values.items():
            old = os.environ.get(name)
            os.environ[name] = value
            if old is None:
                self.addCleanup(os.environ.pop, name, None)
            else:
                self.addCleanup(os.environ.__setitem__, name, old)

    def write_recipe(
        self, body: str, lease: float = 30.0, url: str | None = None
    ) -> Path:
        state = STATE.format(
            url=url or self.redis.url, run=self.run_name, lease=f"{lease:g}s"
        )
        path = self.folder / "recipe.yaml"
        path.write_text(body + state)
        return path

    def write_urls(self, urls: list[str]) -> list[str]:
        (self.folder / "urls.txt").write_text("".join(u + "\n" for u in urls))
        return [str(i) for i in range(len(urls))]

    def stream(self) -> Any:
        f = open(self.log, "a")  # noqa: SIM115
        self.addCleanup(f.close)
        return f

    def said(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def workers(self, recipe: Path, n: int, **kw: Any) -> list[SharedRun]:
        """``n`` SharedRuns of ``recipe``, each with its own Redis
        connection (the recipe loaded again for each, as each process
        would)."""
        return [
            SharedRun(load_recipe(recipe), reactor, stream=self.stream(), **kw)
            for _ in range(n)
        ]

    @defer.inlineCallbacks
    def run_all(self, runs: list[SharedRun]) -> Generator[Any, Any, list[int]]:
        codes = yield defer.gatherResults([r.run() for r in runs])
        return list(codes)

    @defer.inlineCallbacks
    def store(self) -> Generator[Any, Any, RedisStore]:
        store = yield RedisStore.connect(self.redis.url, self.run_name, reactor)
        self.addCleanup(store.close)
        return store

    def check_one_record_per_row(
        self, path: Path, ids: list[str]
    ) -> dict[str, dict[str, Any]]:
        records = read_jsonl(path)
        got = [r["id"] for r in records]
        self.assertEqual(len(got), len(set(got)), "a row has two records")
        self.assertEqual(sorted(got), sorted(ids))
        return {r["id"]: r for r in records}


class _ClaimsHeld:
    """A store whose claims answer only when the test says (a claim on its
    way to Redis)."""

    def __init__(self) -> None:
        self.last_wake: float | None = None
        self.last_delays: dict[str, float] = {}
        self.claims: list[defer.Deferred[Any]] = []

    def claim(self, **kw: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.claims.append(d)
        return d


class ClaimWakeTests(SynchronousTestCase):
    """When a worker claims again (on a simulated clock, claims answered
    by hand)."""

    def setUp(self) -> None:
        folder = Path(tempfile.mkdtemp(prefix="fetchq-wake-"))
        self.addCleanup(shutil.rmtree, folder, True)
        (folder / "urls.txt").write_text("http://127.0.0.1:1/a\n")
        recipe = folder / "recipe.yaml"
        recipe.write_text(
            "kind: fetch\ninput:\n  path: urls.txt\noutput:\n"
            "  path: out/result.jsonl\nqueue:\n  width: 4\n"
            "state:\n  url: redis://127.0.0.1:1/0\n  run: wake\n"
        )
        self.clock = task.Clock()
        self.store = _ClaimsHeld()
        self.run = SharedRun(load_recipe(recipe), self.clock, store=self.store)  # type: ignore[arg-type]

    def test_jobs_ending_while_a_claim_is_out_claim_again_at_once(self) -> None:
        """A pump asked for while a claim is on its way (jobs ended: their
        slots came free after Redis answered it) is not lost: the worker
        claims again as soon as that claim lands, instead of sleeping the
        poll interval with nothing to run."""
        self.run._pump()
        self.run._pump()  # a job ended meanwhile
        self.assertEqual(len(self.store.claims), 1)
        self.store.claims[0].callback([])
        self.clock.advance(0)
        self.assertEqual(len(self.store.claims), 2)

    def test_an_empty_claim_otherwise_waits(self) -> None:
        """Without such a pump, a claim that found nothing to do waits the
        poll interval (or until the claim says something comes due)."""
        self.run._pump()
        self.store.claims[0].callback([])
        self.clock.advance(_POLL - 0.01)
        self.assertEqual(len(self.store.claims), 1)
        self.clock.advance(0.01)
        self.assertEqual(len(self.store.claims), 2)


class InProcessTests(SharedRunTestCase):
    """Several SharedRuns on one reactor: each is a worker of its own (its
    own Redis connection and worker name), as separate processes are."""

    @defer.inlineCallbacks
    def test_three_workers_one_record_per_row(self) -> Generator[Any, Any, None]:
        """Three workers on one fetch recipe: every row (pages, 404s, pages
        that fail once with 500, bad input) has exactly one record in the
        output, every worker did some of the work, and no page was fetched
        more often than its failures demand."""
        site = DemoSite(
            reactor,
            SiteBehaviour(pages=600, latency=0.005, error_every=97, missing_every=101),
        )
        port = site.listen()
        self.addCleanup(port.stopListening)
        base = f"http://127.0.0.1:{port.getHost().port}"
        ids = self.write_urls([f"{base}/page/{i}" for i in range(600)] + ["not a url"])
        recipe = self.write_recipe(FETCH_RECIPE.format(width=6, host_width=6))
        runs = self.workers(recipe, 3)
        codes = yield self.run_all(runs)
        self.assertEqual(codes, [0, 0, 0], self.said())
        records = self.check_one_record_per_row(
            self.folder / "out" / "result.jsonl", ids
        )
        self.assertEqual(records["1"]["status"], 200)
        self.assertEqual(records["97"]["attempts"], 2)
        self.assertEqual(records["101"]["error"]["name"], "HTTPStatusError")
        self.assertEqual(records["600"]["error"]["name"], "BadInput")
        for run in runs:
            self.assertGreater(run.stats.done, 0, "a worker did nothing")
        self.assertEqual(sum(run.stats.done for run in runs), 601)  # + bad input
        again = {
            n: k
            for n, k in site.requests.items()
            if k > (2 if n and n % 97 == 0 else 1)
        }
        self.assertEqual(again, {})

    @defer.inlineCallbacks
    def test_failures_at_the_end_are_recorded(self) -> Generator[Any, Any, None]:
        """The last rows all fail (404): each worker holds its streak of
        failures back (the failure breaker may yet stop the run) and the run
        still ends, once nothing else is left anywhere, with every failure
        recorded, whichever worker held it."""
        site = CountingSite(reactor, latency=0.01)
        base = site.listen()[0]
        self.addCleanup(site.stop)
        urls = [f"{base}/page/{i}" for i in range(60)]
        urls += [f"{base}/missing/{i}" for i in range(30)]
        ids = self.write_urls(urls)
        recipe = self.write_recipe(FETCH_RECIPE.format(width=6, host_width=6))
        codes = yield self.run_all(self.workers(recipe, 2))
        self.assertEqual(codes, [0, 0], self.said())
        records = self.check_one_record_per_row(
            self.folder / "out" / "result.jsonl", ids
        )
        failed = [r for r in records.values() if r["outcome"] == "failed"]
        self.assertEqual(len(failed), 30)

    @defer.inlineCallbacks
    def test_fresh_keeps_the_recipes_limits(self) -> Generator[Any, Any, None]:
        """A run started afresh forgets the run's state and then gives it
        the recipe's limits (forgetting them after would leave the run with
        no width, no rate)."""
        site = CountingSite(reactor)
        base = site.listen()[0]
        self.addCleanup(site.stop)
        ids = self.write_urls([f"{base}/page/{i}" for i in range(20)])
        recipe = self.write_recipe(FETCH_RECIPE.format(width=3, host_width=2))
        for fresh in (False, True):
            run = SharedRun(
                load_recipe(recipe), reactor, stream=self.stream(), fresh=fresh
            )
            code = yield run.run()
            self.assertEqual(code, 0, self.said())
        self.assertIn("starting afresh", self.said())
        self.check_one_record_per_row(self.folder / "out" / "result.jsonl", ids)
        self.assertEqual(set(site.requests.values()), {2})
        store = yield self.store()
        limits = yield store.limits()
        self.assertEqual((limits["width"], limits["lane_width"]), (3, 2))

    @defer.inlineCallbacks
    def test_sms_recipe_on_redis(self) -> Generator[Any, Any, None]:
        """An sms recipe with its state in Redis, two workers: every message
        accepted by the provider exactly once, one record per row, and each
        sender's rate kept between the two workers."""
        provider = FakeSMSProvider(reactor, latency=0.01)
        served = serve_sms(reactor, provider=provider)
        self.addCleanup(served.stop)
        self.set_env(
            TWILIO_ACCOUNT_SID=DEFAULT_ACCOUNT_SID, TWILIO_AUTH_TOKEN=DEFAULT_AUTH_TOKEN
        )
        lines = ["id,to,from,name"]
        for i in range(40):
            lines.append(f"m{i},+1646555{2000 + i},+1212555{1000 + i % 4},Ann{i}")
        (self.folder / "messages.csv").write_text("\n".join(lines) + "\n")
        recipe = self.write_recipe(SMS_RECIPE.format(base=served.url, rate=8))
        runs = self.workers(recipe, 2)
        codes = yield self.run_all(runs)
        self.assertEqual(codes, [0, 0], self.said())
        records = self.check_one_record_per_row(
            self.folder / "out" / "sent.jsonl", [f"m{i}" for i in range(40)]
        )
        self.assertEqual({r["outcome"] for r in records.values()}, {"ok"})
        self.assertEqual(len(provider.messages), 40)
        self.assertEqual(provider.duplicates(), [])
        self.assertTrue(all(run.stats.done for run in runs))
        # Each sender's lane kept its pace (8/s) across both workers: its
        # 10 messages took at least 9/8 s from first to last (less 0.2 s
        # for the first one arriving late).  A lower bound on a span only
        # grows on a loaded machine; gaps between arrivals would not hold.
        for k in range(4):
            times = sorted(
                m.created_at
                for m in provider.messages
                if m.from_ == f"+1212555{1000 + k}"
            )
            self.assertEqual(len(times), 10)
            self.assertGreater(times[-1] - times[0], 9 / 8 - 0.2, times)

    @defer.inlineCallbacks
    def test_api_recipe_on_redis(self) -> Generator[Any, Any, None]:
        """An api recipe with its state in Redis, two workers: each user's
        pages are followed (the next page queued in Redis with the page's
        record), one record per page, nothing called twice."""
        served = serve_api(reactor, latency=0.05, pages=3, items_per_page=2)
        self.addCleanup(served.stop)
        self.set_env(API_TOKEN="test-token")
        rows = [json.dumps({"id": str(100 + i)}) for i in range(20)]
        (self.folder / "users.jsonl").write_text("\n".join(rows) + "\n")
        recipe = self.write_recipe(API_RECIPE.format(base=served.url))
        runs = self.workers(recipe, 2)
        codes = yield self.run_all(runs)
        self.assertEqual(codes, [0, 0], self.said())
        records = read_jsonl(self.folder / "out" / "tweets.jsonl")
        self.assertEqual(len(records), 60)
        pages = sorted((r["id"], r.get("page")) for r in records)
        self.assertEqual(len(pages), len(set(pages)), pages)
        self.assertEqual({r["outcome"] for r in records}, {"ok"})
        self.assertEqual(sum(served.fake.requests.values()), 60)
        self.assertTrue(all(run.stats.done for run in runs))

    @defer.inlineCallbacks
    def test_per_host_width_across_workers(self) -> Generator[Any, Any, None]:
        """Three workers, each with a local width of 8, on three hosts with
        ``per_host.width: 2`` and a run width of 5: the site never sees more
        than 2 requests at once from one host's lane, nor more than 5 in
        all, although the workers could launch 24 at once between them."""
        site = CountingSite(reactor, latency=0.02)
        bases = site.listen(hosts=3)
        self.addCleanup(site.stop)
        urls = [f"{bases[i % 3]}/page/{i}" for i in range(450)]
        ids = self.write_urls(urls)
        body = FETCH_RECIPE.format(width=5, host_width=2)
        recipe = self.write_recipe(body)
        runs = self.workers(recipe, 3)
        for run in runs:
            run.queue.setWidth(8)  # locally wider than the run's width
        codes = yield self.run_all(runs)
        self.assertEqual(codes, [0, 0, 0], self.said())
        self.check_one_record_per_row(self.folder / "out" / "result.jsonl", ids)
        self.assertEqual(len(site.max_inflight), 3)
        self.assertEqual(max(site.max_inflight.values()), 2, site.max_inflight)
        self.assertLessEqual(site.max_total, 5)
        self.assertEqual(set(site.requests.values()), {1})
        self.assertTrue(all(run.stats.done for run in runs))

    @defer.inlineCallbacks
    def test_fatal_failure_in_one_worker_stops_every_worker(
        self,
    ) -> Generator[Any, Any, None]:
        """One worker's token is wrong (issue 9's fatal failure): it stops
        with exit 3, and so does the other worker, whose token is right,
        saying why; the rows not sent are left to do, none recorded failed."""
        provider = FakeSMSProvider(reactor, latency=0.01)
        served = serve_sms(reactor, provider=provider)
        self.addCleanup(served.stop)
        lines = ["id,to,from,name"]
        for i in range(60):
            lines.append(f"m{i},+1646555{2000 + i},+12125551000,Ann{i}")
        (self.folder / "messages.csv").write_text("\n".join(lines) + "\n")
        recipe = self.write_recipe(SMS_RECIPE.format(base=served.url, rate=5))
        self.set_env(
            TWILIO_ACCOUNT_SID=DEFAULT_ACCOUNT_SID, TWILIO_AUTH_TOKEN=DEFAULT_AUTH_TOKEN
        )
        good = SharedRun(load_recipe(recipe), reactor, stream=self.stream())
        self.set_env(TWILIO_AUTH_TOKEN="wrong")
        bad = SharedRun(load_recipe(recipe), reactor, stream=self.stream())
        codes = yield self.run_all([good, bad])
        self.assertEqual(codes, [EXIT_FATAL, EXIT_FATAL], self.said())
        said = self.said()
        self.assertIn("AuthFailed", said)
        self.assertIn("stopped by another worker", said)
        store = yield self.store()
        counts = yield store.counts()
        self.assertLessEqual(set(counts.done), {"ok"})
        self.assertEqual(counts.finished, len(provider.messages))
        self.assertEqual(counts.claimed, 0)
        self.assertEqual(counts.pending + counts.finished, 60)
        self.assertGreater(counts.pending, 0)
        self.assertEqual(read_jsonl(self.folder / "out" / "sent.jsonl"), [])


class Proc(protocol.ProcessProtocol):
    """A ``fetchq`` child process: its exit status (-N if killed by signal
    N) through :attr:`done`, what it wrote, its pid."""

    def __init__(self) -> None:
        self.done: defer.Deferred[int] = defer.Deferred()
        self.out = b""
        self.err = b""
        self.transport: Any = None

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Any) -> None:
        value = reason.value
        code = value.exitCode
        self.done.callback(-value.signal if code is None else code)

    @property
    def pid(self) -> int:
        return int(self.transport.pid)

    def said(self) -> str:
        return self.err.decode("utf-8", "replace")


def fetchq(folder: Path, *args: str) -> Proc:
    """Start ``python -m fetchq ARGS`` in ``folder``."""
    proc = Proc()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "fetchq", *args]
    proc.transport = reactor.spawnProcess(
        proc, sys.executable, command, env=env, path=str(folder)
    )
    return proc


def bulk(reply: bytes) -> str | None:
    """The value of a RESP bulk-string reply."""
    if reply.startswith(b"$-1"):
        return None
    return reply.split(b"\r\n")[1].decode()


def flat(reply: bytes) -> list[str]:
    """The strings of a RESP array reply of bulk strings."""
    lines = reply.split(b"\r\n")
    return [lines[i].decode() for i in range(2, len(lines) - 1, 2)]


class ProcessTestCase(SharedRunTestCase):
    """Helpers for tests with real ``fetchq`` processes."""

    timeout = 180

    def setUp(self) -> None:
        super().setUp()
        self.procs: list[Proc] = []
        self.addCleanup(self.kill_all)

    def kill_all(self) -> None:
        for proc in self.procs:
            if not proc.done.called:
                with contextlib.suppress(Exception):
                    proc.transport.signalProcess("KILL")

    def start(self, *args: str) -> Proc:
        proc = fetchq(self.folder, *args)
        self.procs.append(proc)
        return proc

    def key(self, name: str) -> str:
        return f"{{fetchq:{self.run_name}}}:{name}"

    @defer.inlineCallbacks
    def wait_for(
        self, condition: Any, what: str, limit: float = 60.0
    ) -> Generator[Any, Any, None]:
        deadline = reactor.seconds() + limit
        while not (yield defer.maybeDeferred(condition)):
            if reactor.seconds() > deadline:
                self.fail(f"timed out waiting for {what}")
            if any(p.done.called for p in self.procs):
                said = "\n".join(p.said() for p in self.procs)
                self.fail(f"a process ended while waiting for {what}: {said}")
            yield task.deferLater(reactor, 0.05, lambda: None)

    def site_and_recipe(
        self, pages: int, latency: float, lease: float = 30.0, **kw: Any
    ) -> tuple[CountingSite, Path, list[str]]:
        site = CountingSite(reactor, latency=latency)
        bases = site.listen(hosts=3)
        self.addCleanup(site.stop)
        urls = [f"{bases[i % 3]}/page/{i}" for i in range(pages)]
        ids = self.write_urls(urls)
        body = FETCH_RECIPE.format(width=kw.get("width", 6), host_width=2)
        recipe = self.write_recipe(body, lease=lease, url=kw.get("url"))
        return site, recipe, ids

    @defer.inlineCallbacks
    def stop_and_look(
        self, victim: Proc, site: CountingSite
    ) -> Generator[Any, Any, tuple[set[str], dict[str, int], set[str]]]:
        """SIGSTOP ``victim`` (it can ack nothing more), then read what is
        done, what the site saw, and which rows ``victim`` holds; then
        SIGKILL it."""
        victim.transport.signalProcess("STOP")
        yield task.deferLater(reactor, 0.3, lambda: None)  # its acks land
        store = yield self.store()
        done = set()
        seq = 0
        while batch := (yield store.records(seq, 5000)):
            done |= {r.id for r in batch}
            seq = batch[-1].seq
        seen = dict(site.requests)
        owners = flat(self.redis.command("HGETALL", self.key("owner")))
        held = {
            owners[i]
            for i in range(0, len(owners), 2)
            if owners[i + 1].split(":")[1] == str(victim.pid)
        }
        victim.transport.signalProcess("KILL")
        return done, seen, held

    def check_after_kill(
        self,
        site: CountingSite,
        urls_ids: list[str],
        done: set[str],
        seen: dict[str, int],
        held: set[str],
    ) -> None:
        self.check_one_record_per_row(self.folder / "out" / "result.jsonl", urls_ids)
        again = [i for i in done if site.requests[f"/page/{i}"] != seen[f"/page/{i}"]]
        self.assertEqual(again, [], "rows done before the kill were fetched again")
        self.assertTrue(held, "the killed worker held no rows")
        self.assertFalse(held & done)
        back = [
            i for i in held if site.requests[f"/page/{i}"] > seen.get(f"/page/{i}", 0)
        ]
        self.assertEqual(sorted(back), sorted(held))


class ProcessTests(ProcessTestCase):
    """Real ``fetchq run`` processes, as on separate machines."""

    @defer.inlineCallbacks
    def test_kill_9_one_of_three_workers(self) -> Generator[Any, Any, None]:
        """Three `fetchq run` processes on one recipe; one is killed with
        SIGKILL mid-run (stopped first, so what it holds is known): the two
        others finish the run (exit 0), every row has exactly one record, no
        row done before the kill is fetched again, and every row the killed
        worker held comes back (fetched again once its lease ran out)."""
        site, recipe, ids = self.site_and_recipe(600, latency=0.03, lease=2.0)
        workers = [self.start("run", str(recipe)) for _ in range(3)]
        yield self.wait_for(lambda: sum(site.requests.values()) >= 150, "progress")
        loader = bulk(self.redis.command("GET", self.key("lease:loader")))
        victim = next(
            w for w in workers if loader is None or f":{w.pid}:" not in loader
        )

        def holds() -> bool:
            owners = flat(self.redis.command("HGETALL", self.key("owner")))
            return any(f":{victim.pid}:" in o for o in owners[1::2])

        yield self.wait_for(holds, "the victim to hold rows")
        done, seen, held = yield self.stop_and_look(victim, site)
        codes = yield defer.gatherResults([w.done for w in workers])
        self.assertEqual(
            sorted(codes), [-9, 0, 0], "\n".join(w.said() for w in workers)
        )
        self.check_after_kill(site, ids, done, seen, held)

    @defer.inlineCallbacks
    def test_kill_9_the_loader(self) -> Generator[Any, Any, None]:
        """The loader (the worker holding the input's load lease, reading
        100 rows at a time) is killed mid-load: once its lease runs out
        another worker takes the load over from the checkpoint in Redis,
        and the run ends with every row exactly once."""
        site, recipe, ids = self.site_and_recipe(900, latency=0.03, lease=2.0)
        args = ("run", str(recipe), "--read-ahead", "100")
        workers = [self.start(*args) for _ in range(3)]
        yield self.wait_for(lambda: sum(site.requests.values()) >= 150, "progress")
        loader = bulk(self.redis.command("GET", self.key("lease:loader")))
        self.assertIsNotNone(loader)
        assert loader is not None
        victim = next(w for w in workers if f":{w.pid}:" in loader)
        loaded = bulk(self.redis.command("HGET", self.key("meta"), "input.done"))
        self.assertEqual(loaded, "false", "the input was loaded before the kill")
        done, seen, held = yield self.stop_and_look(victim, site)
        codes = yield defer.gatherResults([w.done for w in workers])
        self.assertEqual(
            sorted(codes), [-9, 0, 0], "\n".join(w.said() for w in workers)
        )
        self.check_after_kill(site, ids, done, seen, held)
        epoch = bulk(self.redis.command("GET", self.key("lease:loader:epoch")))
        self.assertEqual(epoch, "2")  # taken once more, by another worker

    @defer.inlineCallbacks
    def test_redis_down_at_start(self) -> Generator[Any, Any, None]:
        """Redis not there: `fetchq run` (alone or with --workers) and
        `fetchq output` each say so in one line naming the address, and
        exit 2 (nothing was run)."""
        port = redis_server._free_port()
        _, recipe, _ = self.site_and_recipe(
            10, latency=0.0, url=f"redis://127.0.0.1:{port}/0"
        )
        for args in (
            ("run", str(recipe)),
            ("run", str(recipe), "--workers", "2"),
            ("output", str(recipe)),
        ):
            proc = self.start(*args)
            code = yield proc.done
            self.assertEqual(code, 2, proc.said())
            lines = proc.said().splitlines()
            self.assertEqual(len(lines), 1, lines)
            self.assertIn(f"redis at 127.0.0.1:{port}: cannot connect", lines[0])

    @defer.inlineCallbacks
    def test_redis_restarted_mid_run(self) -> Generator[Any, Any, None]:
        """Redis (AOF on, fsync always) killed with SIGKILL mid-run and
        started again a second later: the workers pause, reconnect and go
        on; the run ends 0 with every row exactly once, and no row done
        before the kill is fetched again (nothing acked was lost)."""
        server = redis_server.RedisServer(
            "--appendonly", "yes", "--appendfsync", "always"
        )
        self.addCleanup(server.stop)
        self.redis = server
        site, recipe, ids = self.site_and_recipe(
            900, latency=0.03, lease=3.0, url=server.url
        )
        parent = self.start("run", str(recipe), "--workers", "2")
        yield self.wait_for(lambda: sum(site.requests.values()) >= 200, "progress")
        store = yield self.store()
        done = set()
        seq = 0
        while batch := (yield store.records(seq, 5000)):
            done |= {r.id for r in batch}
            seq = batch[-1].seq
        seen = dict(site.requests)
        server.kill()
        yield task.deferLater(reactor, 1.0, lambda: None)
        stalled = sum(site.requests.values())
        server.start()
        code = yield parent.done
        self.assertEqual(code, 0, parent.said())
        self.assertGreater(sum(site.requests.values()), stalled + 100)
        self.check_one_record_per_row(self.folder / "out" / "result.jsonl", ids)
        again = [i for i in done if site.requests[f"/page/{i}"] != seen[f"/page/{i}"]]
        self.assertEqual(again, [], "rows done before the kill were fetched again")


class WorkersTests(ProcessTestCase):
    """`fetchq run RECIPE --workers N`: one parent, N worker processes."""

    def test_refused_without_redis(self) -> None:
        """--workers with a recipe whose state is a file is refused, saying
        what to set, before anything runs (exit 2)."""
        (self.folder / "urls.txt").write_text("http://127.0.0.1:1/\n")
        path = self.folder / "recipe.yaml"
        path.write_text(FETCH_RECIPE.format(width=2, host_width=2))
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = cli.main(["run", str(path), "--workers", "2"])
        self.assertEqual(code, 2)
        self.assertIn("--workers needs the run's state in Redis", err.getvalue())
        self.assertIn("state.url", err.getvalue())
        self.assertFalse((self.folder / "out").exists())

    def test_admin_refused_and_set_passed_on(self) -> None:
        """--admin with --workers is refused (N workers cannot serve one
        port), exit 2; the --set overrides reach every worker's command
        line, so the workers run the recipe the parent runs."""
        (self.folder / "urls.txt").write_text("http://127.0.0.1:1/\n")
        path = self.write_recipe(FETCH_RECIPE.format(width=2, host_width=2))
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = cli.main(
                ["run", str(path), "--workers", "2", "--admin", "127.0.0.1:0"]
            )
        self.assertEqual(code, 2)
        self.assertIn("--admin is for one process", err.getvalue())
        made: list[list[str]] = []

        class Workers:
            def __init__(self, *args: Any, worker_args: list[str], **kw: Any) -> None:
                made.append(worker_args)

            def run(self) -> Any:
                return defer.succeed(0)

        import fetchq.workers

        self.patch(fetchq.workers, "Workers", Workers)
        self.patch(cli, "_react", lambda start: 0 if start(reactor) else 1)
        code = cli.main(["run", str(path), "--workers", "2", "--set", "queue.width=3"])
        self.assertEqual(code, 0)
        self.assertEqual(made, [["--set", "queue.width=3"]])

    @defer.inlineCallbacks
    def test_workers_share_one_run(self) -> Generator[Any, Any, None]:
        """Two workers under one parent: exit 0, one record per row written
        once by the parent, one summary adding up both workers' jobs (each
        did some), no worker's own summary or progress."""
        site, recipe, ids = self.site_and_recipe(300, latency=0.02)
        parent = self.start("run", str(recipe), "--workers", "2")
        code = yield parent.done
        said = parent.said()
        self.assertEqual(code, 0, said)
        self.check_one_record_per_row(self.folder / "out" / "result.jsonl", ids)
        self.assertEqual(said.count("finished 300 jobs"), 1, said)
        self.assertEqual(said.count("output: "), 1, said)
        by_worker = [ln for ln in said.splitlines() if ln.startswith("workers: ")]
        self.assertEqual(len(by_worker), 1, said)
        counts = [int(part.split()[1]) for part in by_worker[0][9:].split(", ")]
        self.assertEqual(len(counts), 2)
        self.assertEqual(sum(counts), 300)
        self.assertTrue(all(counts), by_worker)
        self.assertNotIn("worker 1: finished", said)
        self.assertEqual(set(site.requests.values()), {1})

    @defer.inlineCallbacks
    def test_ctrl_c_stops_every_worker_once(self) -> Generator[Any, Any, None]:
        """SIGINT to the parent (what Ctrl-C sends it: the workers have
        process groups of their own) reaches every worker once: they let
        what is underway finish and hand the rest back; the parent says
        once how to resume and exits 130.  Resuming with the same command
        finishes the run, every row once, no row done before fetched
        again."""
        site, recipe, ids = self.site_and_recipe(450, latency=0.03)
        parent = self.start("run", str(recipe), "--workers", "2")
        yield self.wait_for(lambda: sum(site.requests.values()) >= 80, "progress")
        parent.transport.signalProcess("INT")
        code = yield parent.done
        said = parent.said()
        self.assertEqual(code, 130, said)
        self.assertEqual(said.count("resume with: fetchq run"), 1, said)
        self.assertIn("--workers 2", said)
        self.assertEqual(said.count("interrupted"), 1, said)
        store = yield self.store()
        counts = yield store.counts()
        self.assertEqual(counts.claimed, 0, "a worker kept rows leased")
        self.assertGreater(counts.pending, 0)
        seen = dict(site.requests)
        records = set()
        seq = 0
        while batch := (yield store.records(seq, 5000)):
            records |= {r.id for r in batch}
            seq = batch[-1].seq
        again = self.start("run", str(recipe), "--workers", "2")
        code = yield again.done
        self.assertEqual(code, 0, again.said())
        self.assertIn("resuming: ", again.said())
        self.check_one_record_per_row(self.folder / "out" / "result.jsonl", ids)
        refetched = [
            i for i in records if site.requests[f"/page/{i}"] != seen[f"/page/{i}"]
        ]
        self.assertEqual(refetched, [])

    @defer.inlineCallbacks
    def test_fatal_failure_stops_the_workers(self) -> Generator[Any, Any, None]:
        """An sms recipe with a wrong token under --workers 2: exit 3, the
        reason shown, every row left to do (none failed); with the right
        token, the same command sends each message once (the earlier stop is
        not taken for this run's)."""
        provider = FakeSMSProvider(reactor, latency=0.01)
        served = serve_sms(reactor, provider=provider)
        self.addCleanup(served.stop)
        lines = ["id,to,from,name"]
        for i in range(30):
            lines.append(f"m{i},+1646555{2000 + i},+1212555{1000 + i % 3},Ann{i}")
        (self.folder / "messages.csv").write_text("\n".join(lines) + "\n")
        recipe = self.write_recipe(SMS_RECIPE.format(base=served.url, rate=10))
        self.set_env(TWILIO_ACCOUNT_SID=DEFAULT_ACCOUNT_SID, TWILIO_AUTH_TOKEN="wrong")
        parent = self.start("run", str(recipe), "--workers", "2")
        code = yield parent.done
        self.assertEqual(code, EXIT_FATAL, parent.said())
        self.assertIn("AuthFailed", parent.said())
        self.assertEqual(parent.said().count("resume with: "), 1)
        self.assertEqual(provider.messages, [])
        store = yield self.store()
        counts = yield store.counts()
        self.assertEqual((counts.finished, counts.pending, counts.claimed), (0, 30, 0))
        self.set_env(TWILIO_AUTH_TOKEN=DEFAULT_AUTH_TOKEN)
        again = self.start("run", str(recipe), "--workers", "2")
        code = yield again.done
        self.assertEqual(code, 0, again.said())
        self.assertEqual(len(provider.messages), 30)
        self.assertEqual(provider.duplicates(), [])


class OutputCommandTests(ProcessTestCase):
    """`fetchq output RECIPE`: the output file from the state."""

    @defer.inlineCallbacks
    def check_output_command(self, path: Path) -> Generator[Any, Any, None]:
        output = self.folder / "out" / "result.jsonl"
        written = output.read_text()
        output.unlink()
        proc = self.start("output", str(path))
        code = yield proc.done
        self.assertEqual(code, 0, proc.said())
        self.assertIn(b"output: ", proc.out)
        self.assertEqual(
            sorted(output.read_text().splitlines()), sorted(written.splitlines())
        )

    @defer.inlineCallbacks
    def test_output_from_redis(self) -> Generator[Any, Any, None]:
        """After a run in Redis, the output deleted: `fetchq output` writes
        it again, the same records (exit 0)."""
        _, recipe, _ = self.site_and_recipe(50, latency=0.0)
        code = yield SharedRun(load_recipe(recipe), reactor, stream=self.stream()).run()
        self.assertEqual(code, 0, self.said())
        yield self.check_output_command(recipe)

    @defer.inlineCallbacks
    def test_output_from_a_state_file(self) -> Generator[Any, Any, None]:
        """The same for a recipe whose state is a SQLite file; before any
        run, `fetchq output` says there is nothing (exit 2)."""
        site = CountingSite(reactor)
        base = site.listen()[0]
        self.addCleanup(site.stop)
        self.write_urls([f"{base}/page/{i}" for i in range(50)])
        path = self.folder / "recipe.yaml"
        path.write_text(FETCH_RECIPE.format(width=4, host_width=4))
        proc = self.start("output", str(path))
        code = yield proc.done
        self.assertEqual(code, 2)
        self.assertIn("has not run", proc.said())
        code = yield Run(load_recipe(path), reactor, stream=self.stream()).run()
        self.assertEqual(code, 0)
        yield self.check_output_command(path)


class EndCheckTests(SynchronousTestCase):
    """When a worker's last job ends, the run's end is checked once its
    writes have landed, and a check that comes within a tick of the last
    one is made when the tick is up (not left for the next claim)."""

    def test_the_end_is_checked_after_the_writes_and_when_the_tick_is_up(
        self,
    ) -> None:
        from types import SimpleNamespace

        from fetchq.store import Counts

        clock = task.Clock()
        flushes: list[defer.Deferred[None]] = []
        reads: list[float] = []
        counts = [Counts(0, 1), Counts(0, 0)]  # the other worker's row, then none
        finished: list[int] = []

        def flush() -> defer.Deferred[None]:
            flushes.append(defer.Deferred())
            return flushes[-1]

        def read() -> Counts:
            reads.append(clock.seconds())
            return counts.pop(0)

        run: Any = SimpleNamespace(
            _input_done=True,
            _closed=False,
            store=SimpleNamespace(flush=flush, counts=read),
            queue=SimpleNamespace(size=lambda: (0, 0)),
            _scheduled={},
            reactor=clock,
            tick_seconds=0.2,
            _last_check=-1.0,
            _end_check=None,
            _watch=lambda d: d,
            _finish=finished.append,
        )
        run._check_finished = lambda: SharedRun._check_finished(run)
        run._check_finished()
        self.assertEqual((len(flushes), reads), (1, []))  # counts wait for the writes
        flushes[0].callback(None)
        self.assertEqual((reads, finished), ([0.0], []))  # a row still leased
        clock.advance(0.05)
        run._check_finished()  # within the tick: made when it is up
        self.assertEqual(len(flushes), 1)
        clock.advance(0.14)
        self.assertEqual(len(flushes), 1)
        clock.advance(0.01)
        self.assertEqual(len(flushes), 2)
        flushes[1].callback(None)
        self.assertEqual(([round(t, 6) for t in reads], finished), ([0.0, 0.2], [0]))
        self.assertEqual(clock.getDelayedCalls(), [])
