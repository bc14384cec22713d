"""Broad crawls keep connections and file descriptors bounded.

The pool caps idle connections over all hosts (least recently used closed
first), a host's idle connections can be closed at once, and running out
of descriptors is a named local error (retried, ignored by the controller)
that the fetcher first tries to cure by shedding idle connections and
waiting.  Unit tests on a fake clock; the rest over real loopback sockets,
the descriptor-limit ones in child processes (``tests/fd_crawl.py``) that
lower their own ``RLIMIT_NOFILE``, one of them in a private network
namespace where thousands of ``127.x.y.z`` addresses are thousands of hosts.
"""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.error import ConnectBindError, ConnectionRefusedError
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from fetchq.control.signals import Signal, classify_error
from fetchq.fetch import (
    FetchConfig,
    Fetcher,
    LocalResourceError,
    TooManyOpenFiles,
    fetch_retry_policy,
)
from fetchq.http.pool import BoundedPool, default_max_idle, out_of_descriptors
from tests.fetch_server import FaultServer, lean_variants

ROOT = Path(__file__).resolve().parent.parent


class _Transport:
    def __init__(self) -> None:
        self.closed = False

    def loseConnection(self) -> None:
        self.closed = True


class _Connection:
    """What the pool sees of an HTTP11ClientProtocol."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.state = "QUIESCENT"
        self.transport = _Transport()

    def __repr__(self) -> str:
        return self.name


class BoundedPoolTests(SynchronousTestCase):
    """BoundedPool's bookkeeping, on a fake clock with fake connections."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.pool = BoundedPool(self.clock, per_host=2, max_idle=3)

    def put(self, host: str, name: str) -> _Connection:
        connection = _Connection(name)
        self.pool._putConnection((b"http", host.encode(), 80), connection)
        return connection

    def take(self, host: str) -> Any:
        return self.successResultOf(
            self.pool.getConnection((b"http", host.encode(), 80), None)
        )

    def test_idle_capped_over_hosts_least_recently_used_first(self) -> None:
        """Idle connections of four hosts under a cap of three: the oldest
        is closed; taking one and putting it back makes it the newest, so
        the next one over the cap is the oldest other one."""
        a, b, c = self.put("a", "a1"), self.put("b", "b1"), self.put("c", "c1")
        self.assertEqual(self.pool.idle, 3)
        d = self.put("d", "d1")
        self.assertTrue(a.transport.closed)
        self.assertEqual(self.pool.idle, 3)
        self.assertNotIn((b"http", b"a", 80), self.pool.idle_keys())
        taken = self.take("b")
        self.assertIs(getattr(taken, "_clientProtocol", taken), b)
        self.assertEqual(self.pool.idle, 2)
        self.pool._putConnection((b"http", b"b", 80), b)  # b is newest now
        self.put("e", "e1")
        self.assertTrue(c.transport.closed)
        self.assertFalse(b.transport.closed or d.transport.closed)
        self.assertEqual(self.pool.idle, 3)

    def test_per_host_cap_and_timeouts_keep_the_count(self) -> None:
        """The per-host cap still drops a host's oldest connection, an idle
        timeout removes one, and either way the total count and the
        cancelled timers stay right (no timer left behind)."""
        first = self.put("a", "a1")
        self.put("a", "a2")
        self.put("a", "a3")  # over per_host=2: a1 goes
        self.assertTrue(first.transport.closed)
        self.assertEqual(self.pool.idle, 2)
        self.clock.advance(self.pool.cachedConnectionTimeout + 1)
        self.assertEqual(self.pool.idle, 0)
        self.assertEqual(self.pool.idle_keys(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_lost_connections_are_skipped_and_forgotten(self) -> None:
        """A pooled connection the server closed meanwhile is passed over
        (and forgotten) when the host's next request takes one."""
        dead = self.put("a", "a1")
        live = self.put("a", "a2")
        dead.state = "CONNECTION_LOST"
        got = self.take("a")
        self.assertIs(getattr(got, "_clientProtocol", got), live)
        self.assertEqual(self.pool.idle, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_close_idle_matches_keys(self) -> None:
        """close_idle closes exactly the matching keys' connections."""
        a, b = self.put("a", "a1"), self.put("b", "b1")
        self.assertEqual(self.pool.close_idle(lambda key: key[1] == b"a"), 1)
        self.assertTrue(a.transport.closed)
        self.assertFalse(b.transport.closed)
        self.assertEqual(self.pool.idle, 1)
        self.assertEqual(self.pool.close_idle(lambda key: False), 0)

    def test_bad_bounds(self) -> None:
        """Bounds below 1 (or not integers) raise ValueError at once."""
        for per_host, max_idle in ((0, 3), (2, 0), (2, 1.5), (True, 3)):
            with self.assertRaises(ValueError):
                BoundedPool(self.clock, per_host, max_idle)  # type: ignore[arg-type]


class DefaultsTests(SynchronousTestCase):
    """The derived cap, and what counts as running out of descriptors."""

    def test_default_max_idle(self) -> None:
        """Twice the pool size, less under a low descriptor limit (half of
        it, less a reserve, is left once the pool size is busy), never 0."""
        self.assertEqual(default_max_idle(20, 256), 40)
        self.assertEqual(default_max_idle(50, 1024), 100)
        self.assertEqual(default_max_idle(50, 256), 46)
        self.assertEqual(default_max_idle(20, 100), 1)
        self.assertGreaterEqual(default_max_idle(10), 1)

    def test_out_of_descriptors(self) -> None:
        """EMFILE and ENFILE, as Twisted's bind error or an OSError, count;
        a refused connection does not."""
        bind = ConnectBindError(errno.EMFILE, "Too many open files")
        self.assertTrue(out_of_descriptors(bind))
        self.assertTrue(out_of_descriptors(OSError(errno.ENFILE, "table full")))
        self.assertFalse(out_of_descriptors(ConnectionRefusedError()))
        self.assertFalse(out_of_descriptors(OSError(errno.EACCES, "no")))

    def test_named_local_error(self) -> None:
        """TooManyOpenFiles is a LocalResourceError that the fetch retry
        policy retries and the controller ignores."""
        error = TooManyOpenFiles(256)
        self.assertIsInstance(error, LocalResourceError)
        self.assertEqual(error.name, "TooManyOpenFiles")
        self.assertIn("ulimit -n is 256", str(error))
        self.assertIs(classify_error(error), Signal.IGNORE)
        self.assertTrue(fetch_retry_policy().is_retryable(Failure(error)))


class PoolOverSocketsTests(TestCase):
    """The fetcher's pool against real servers, one port per host."""

    http = "treq"  # "lean" in the Lean copy

    def server(self) -> FaultServer:
        server = FaultServer(reactor).start()
        self.addCleanup(server.close)
        return server

    async def settle(self) -> None:
        """Let closed connections reach the servers."""
        for _ in range(20):
            await task.deferLater(reactor, 0.01, lambda: None)

    async def test_idle_connections_bounded_across_hosts(self) -> None:
        """With max_idle=2, fetching four hosts one after the other leaves
        only the last two connected; reusing one makes it the most recently
        used, so a fifth fetch pushes out the other."""
        servers = [self.server() for _ in range(4)]
        fetcher = Fetcher(FetchConfig(http=self.http), reactor, pool_size=4, max_idle=2)
        self.addCleanup(fetcher.close)
        for server in servers:
            await fetcher.fetch(server.url("/ok?size=10"))
        await self.settle()
        self.assertEqual([len(s.connections) for s in servers], [0, 0, 1, 1])
        self.assertEqual(fetcher.pool.idle, 2)
        await fetcher.fetch(servers[2].url("/ok?size=10"))  # reused
        await fetcher.fetch(servers[0].url("/ok?size=10"))  # new: evicts [3]
        await self.settle()
        self.assertEqual([s.accepted for s in servers], [2, 1, 1, 1])
        self.assertEqual([len(s.connections) for s in servers], [1, 0, 1, 0])

    async def test_close_idle_by_host_key(self) -> None:
        """close_idle("127.0.0.1:PORT") closes that host's idle connection
        and not the one to "localhost:PORT" (another host key on the same
        server); the next fetch of that host connects anew."""
        server = self.server()
        fetcher = Fetcher(FetchConfig(http=self.http), reactor)
        self.addCleanup(fetcher.close)
        port = server.port_number
        await fetcher.fetch(server.url("/ok?size=1"))
        await fetcher.fetch(server.url("/ok?size=1", host="localhost"))
        self.assertEqual(server.accepted, 2)
        self.assertEqual(fetcher.close_idle(f"127.0.0.1:{port}"), 1)
        self.assertEqual(fetcher.close_idle(f"127.0.0.1:{port}"), 0)
        self.assertEqual(fetcher.close_idle("127.0.0.1"), 0)  # port 80: none
        await self.settle()
        self.assertEqual(len(server.connections), 1)
        await fetcher.fetch(server.url("/ok?size=1", host="localhost"))
        await fetcher.fetch(server.url("/ok?size=1"))
        self.assertEqual(server.accepted, 3)


def child(*args: str, netns: bool = False) -> dict[str, Any]:
    """Run ``python -m tests.fd_crawl ARGS`` (in a new network namespace
    with its loopback up, if ``netns``); its JSON line."""
    command = [sys.executable, "-m", "tests.fd_crawl", *args]
    if netns:
        shell = "ip link set lo up && exec " + " ".join(command)
        command = ["unshare", "-n", "sh", "-c", shell]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    if done.returncode != 0:
        raise AssertionError(f"{args[0]} child failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def netns_available() -> str | None:
    """Why a private network namespace cannot be used here, or None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"no {tool!r} command"
    probe = subprocess.run(
        ["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True
    )
    if probe.returncode != 0:
        return f"unshare -n fails here: {probe.stderr.decode().strip()}"
    return None


WIDTH = 10
HOSTS = 1200
NOFILE = 128


class DescriptorLimitTests(SynchronousTestCase):
    """A whole ``fetchq run`` over many more hosts than the process may
    open descriptors, in a child with ``RLIMIT_NOFILE`` lowered."""

    def check_crawl(self, result: dict[str, Any]) -> None:
        """Every URL ok on its only attempt; open descriptors at the peak at
        most the baseline + 4 x width + a few (store, output, input), and
        sockets at most 4 x width: width in use, twice the width idle, and
        up to the width being closed."""
        summary = json.dumps(result)
        self.assertEqual(result.get("code"), 0, summary)
        self.assertEqual((result["records"], result["ok"]), (HOSTS, HOSTS), summary)
        self.assertEqual(result["pool_max_idle"], 2 * WIDTH, summary)
        self.assertLessEqual(
            result["peak_fds"], result["baseline_fds"] + 4 * WIDTH + 12, summary
        )
        self.assertLessEqual(result["peak_kinds"].get("socket", 0), 4 * WIDTH, summary)

    def test_many_loopback_addresses_in_a_network_namespace(self) -> None:
        """1,200 URLs on 1,200 distinct 127.x.y.z hosts (one server on
        0.0.0.0 inside a private network namespace), width 10, under
        ``ulimit -n 128``: all ok, descriptors bounded.  Before the pool had
        a total cap, 1,087 of them failed with "Couldn't bind: 24: Too many
        open files" and the run still exited 0."""
        why = netns_available()
        if why is not None:
            raise SkipTest(f"{why}; test_many_host_names covers the same ground")
        self.check_crawl(
            child(
                "crawl",
                f"--hosts={HOSTS}",
                f"--width={WIDTH}",
                f"--nofile={NOFILE}",
                "--addresses=loopback",
                netns=True,
            )
        )

    def test_many_host_names(self) -> None:
        """The same with 1,200 host names that the reactor's resolver maps
        to 127.0.0.1 (no namespace needed): all ok, descriptors bounded."""
        self.check_crawl(
            child(
                "crawl",
                f"--hosts={HOSTS}",
                f"--width={WIDTH}",
                f"--nofile={NOFILE}",
                "--addresses=names",
            )
        )

    def test_out_of_descriptors(self) -> None:
        """With every descriptor taken: a fetcher with no patience fails
        with TooManyOpenFiles (retryable, ignored by the controller, the
        message says it is a local limit); one with an idle connection to
        another host closes it and succeeds; one with nothing to shed waits
        (still waiting after 0.3 s) and succeeds once descriptors are free."""
        result = child("emfile", "--nofile=64")
        summary = json.dumps(result)
        self.assertGreater(result["filled"], 0, summary)
        hasty = result["hasty"]
        self.assertEqual(hasty["outcome"], "TooManyOpenFiles", summary)
        self.assertEqual((hasty["signal"], hasty["retryable"]), ("ignore", True))
        self.assertIn("not the URL's failure", hasty["message"])
        self.assertEqual(result["shedder"]["outcome"], "ok", summary)
        self.assertTrue(result["patient_waited"], summary)
        self.assertEqual(result["patient"]["outcome"], "ok", summary)


lean_variants(globals(), PoolOverSocketsTests)
