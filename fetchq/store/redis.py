"""The Redis store: one run shared by many processes on many machines.

Everything a run keeps -- pending items by lane, leases, records, the input's
checkpoint, and the limits every worker obeys together (global width and
rate, each lane's width, rate and hold) -- lives in Redis (server 7, or
Valkey), under one hash tag per run, ``{fetchq:RUN}:``, so the Lua scripts
that change it run atomically and work on Redis Cluster too.

::

    store = yield RedisStore.connect("redis://127.0.0.1:6379/0", "crawl", reactor)
    yield store.add([NewItem("1", {"url": "https://example.com/"}, key="example.com")])
    claimed = yield store.claim(10, reactor.seconds(), lease=30.0, per_lane=4)
    yield store.ack(claimed[0].id, "ok", {"status": 200}, reactor.seconds())

It implements the :class:`~fetchq.store.base.Store` contract (every method
returns a ``Deferred``) and the same test suite runs against it.  What it
adds:

- **Server time.**  Every deadline (a lease, a retry time, a hold, a rate's
  next launch) is on the Redis server's clock (``TIME`` once per script),
  never a worker's.  The ``now`` the contract passes is ignored unless the
  store is made with ``server_time=False`` (tests on a simulated clock).
- **Leases, renewed.**  A claimed item is leased for ``lease`` seconds; the
  store renews the leases of the items this process holds every third of
  that, so a job may run as long as it needs, while a worker killed with
  ``kill -9`` loses nothing: its items go back to their lanes when the
  leases run out, for any worker to claim.
- **Limits shared by every worker** (:meth:`configure`, :meth:`set_lane`,
  :meth:`hold_lane`, ``claim(limits=True)``): a claim hands out only what
  may launch, counting every worker's leases against the width (a dead
  worker's slots come back with its leases; each worker gets at most its
  share, the width over the workers that claimed in the last 2 s, so one
  that frees a slot and claims again at once cannot starve the others),
  every worker's launches against the rates (GCRA on the server clock:
  launch slots up to 50 ms ahead are handed out with their launch times,
  :attr:`last_delays`), and a lane held by a 429 seen by any worker is
  held for all of them.
- **Batched writes.**  ``ack()`` and ``requeue()`` calls made in one reactor
  turn go to Redis as one script call; a write that fails (the connection
  dropped) is tried again, with backoff, until it lands (both are
  idempotent), and :meth:`flush` fires once every write so far has landed.
  Writes and claims share one connection of their own, and a claim sends
  the writes queued so far first: Redis runs them in that order, so a claim
  finds the slots this process's acks have freed.

Durability is Redis's: with ``appendonly yes`` and ``appendfsync
everysec`` a crash of the Redis *process* loses nothing written, a crash of
the machine up to about a second (2 s when fsync lags); with ``always``
nothing.  Work whose ack was lost is done again (at least once).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import socket
import uuid
from collections.abc import Collection, Iterable, Mapping
from importlib import resources
from typing import Any
from urllib.parse import unquote, urlsplit

from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from fetchq._validate import check_priority
from fetchq.secrets import Secret, reveal
from fetchq.store._checks import (
    check_ack,
    check_claim,
    check_id,
    check_limit,
    check_time,
)
from fetchq.store.base import (
    Claimed,
    Counts,
    Item,
    ItemState,
    JSONRecord,
    NewItem,
    Record,
    StoreError,
)

__all__ = ["ALL_LANES", "RedisStore", "bucket", "lane_name", "parse_url"]

log = Logger()

_US = "\x1f"
_META = "\x1emeta"
_FOREVER_MS = 2**52  # a lease or time that never comes
_SCRIPTS: dict[str, str] | None = None
_ORDERED = frozenset(("claim", "ack", "requeue"))  # over one connection, in order
_HOST = socket.gethostname().replace(" ", "_")
ALL_LANES: Any = object()
"""``pending_page(ALL_LANES, ...)``: the pending items of every lane."""

_dumps = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":")
).encode


def _scripts() -> dict[str, str]:
    """The Lua scripts by name: the file's common part, then each section,
    run as a function so that the counters it changed are written once
    when it ends (``flush``), even when it ends in an error."""
    global _SCRIPTS
    if _SCRIPTS is None:
        text = resources.files("fetchq.store").joinpath("redis.lua").read_text("utf-8")
        common, *sections = text.split("\n--@ ")
        scripts = {}
        for section in sections:
            name, _, body = section.partition("\n")
            scripts[name.strip()] = (
                f"#!lua\n{common}\nlocal function main()\n{body}\nend\n"
                "local ok, result = pcall(main)\nflush()\n"
                "if not ok then error(result, 0) end\nreturn result\n"
            )
        _SCRIPTS = scripts
    return _SCRIPTS


def bucket(item_id: str) -> str:
    """The hash bucket of an item id (3 hex digits of its SHA-1, as the
    scripts compute it)."""
    return hashlib.sha1(item_id.encode("utf-8")).hexdigest()[:3]


def lane_name(key: str | None) -> str:
    """The lane a key is stored under: ``+key``, or ``-`` for no key."""
    return "-" if key is None else "+" + key


def _key_of(lane: str) -> str | None:
    return None if lane == "-" else lane[1:]


def _priority_text(priority: int | float) -> str:
    """A priority as the scripts keep it: one text per value (1 and 1.0 are
    the same priority, and FIFO between them holds)."""
    if isinstance(priority, float) and priority.is_integer():
        return str(int(priority))
    return repr(priority)


def _priority(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def _claimed(item_id: str, raw: str) -> Claimed:
    prio, lane, attempts, _, arg = raw.split(_US, 4)
    return Claimed(
        item_id, json.loads(arg), _priority(prio), _key_of(lane), int(attempts)
    )


def parse_url(url: str | Secret) -> dict[str, Any]:
    """Connection settings from ``redis://[user:password@]host[:port][/db]``
    (``rediss://`` for TLS).

    Raises:
        ValueError: for anything else, naming the part that is wrong (never
            the password).
    """
    text = reveal(url)
    parts = urlsplit(text)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"expected a redis:// or rediss:// URL, not {parts.scheme}://")
    if not parts.hostname:
        raise ValueError("the Redis URL has no host")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError("the Redis URL's port is not a number") from None
    db = parts.path.strip("/") or "0"
    if not db.isdigit():
        raise ValueError(f"the Redis URL's database must be a number, not {db!r}")
    return {
        "host": parts.hostname,
        "port": port,
        "db": int(db),
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "tls": parts.scheme == "rediss",
    }


class RedisStore:
    """A :class:`~fetchq.store.base.Store` in Redis (see the module's
    docstring).

    Args:
        client: a txredisapi connection or pool (``convertNumbers=False``).
        run: the run's name; its keys are ``{fetchq:RUN}:...``.
        reactor: time, for batching and lease renewals.
        worker: this process's name among the workers (default:
            ``HOST:PID:RANDOM``, so an operator can tell who holds what).
        server_time: deadlines on the Redis server's clock (the default);
            False uses the ``now`` each call passes (tests).
        renew: renew this process's leases (every third of the lease).
    """

    distributed = True
    """Other processes may share this store: a runner must not release
    their leases, and the run's end is the whole run's."""

    def __init__(
        self,
        client: Any,
        run: str,
        reactor: Any,
        *,
        worker: str | None = None,
        server_time: bool = True,
        renew: bool = True,
        ordered: Any = None,
    ) -> None:
        if not run or any(c in run for c in "{}"):
            raise ValueError(f"a run name must be non-empty, without braces: {run!r}")
        self._client = client
        # Claims, acks and requeues go over one connection (``ordered``, if
        # given), so Redis runs them in the order this process sends them:
        # a claim sent after acks finds the slots they free (on the pool's
        # other connections it could overtake them and find them taken).
        self._ordered = client if ordered is None else ordered
        self.run = run
        self.prefix = f"{{fetchq:{run}}}:"
        self._cfg = self.prefix + "cfg"
        self._reactor = reactor
        self.worker = worker or f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._server_time = server_time
        self._closed = False
        self._closing: Deferred[None] | None = None
        self._claims: set[Deferred[Any]] = set()  # claims in flight
        self._held: dict[str, float] = {}  # ids this process holds -> lease (s)
        self._ops: list[tuple[str, list[str], float, Deferred[Any]]] = []
        self._sending = False
        self._send_scheduled = False
        self._inflight: list[Deferred[Any]] = []
        self.last_wake: float | None = None
        """After a claim: seconds until something may next be claimable
        (None: nothing pending, waiting or leased)."""
        self.last_delays: dict[str, float] = {}
        """After a claim with ``limits=True``: the items whose launch slot
        under the rates is later (by id: seconds from now).  The claim
        reserved those slots; launching at them keeps the rates exact."""
        self._renewer: task.LoopingCall | None = None
        self._renew = renew
        self._lease = 30.0

    @classmethod
    @defer.inlineCallbacks
    def connect(
        cls,
        url: str | Secret,
        run: str,
        reactor: Any,
        *,
        poolsize: int = 4,
        timeout: float = 10.0,
        **kw: Any,
    ) -> Any:
        """Connect to the Redis at ``url`` and check it is usable (Redis 7 or
        later, ``maxmemory-policy noeviction``).

        Returns (through a Deferred) the store.

        Raises:
            StoreError: Redis cannot be reached, refuses the credentials, or
                is not fit for a run; the message names the host, never the
                password.
        """
        import txredisapi

        settings = parse_url(url)
        where = f"redis at {settings['host']}:{settings['port']}"
        tls: Any = False
        if settings["tls"]:
            from twisted.internet.ssl import optionsForClientTLS

            tls = optionsForClientTLS(settings["host"])
        options = {
            "dbid": settings["db"],
            "password": settings["password"],
            "username": settings["username"],
            "ssl_context_factory": tls,
            "connectTimeout": timeout,
            "replyTimeout": timeout,
            "convertNumbers": False,
        }
        try:
            # One connection that does not retry first: an address that
            # refuses or does not answer, or credentials refused, are said at
            # once (the pool would keep trying in silence).
            probe: Deferred[Any] = txredisapi.Connection(
                settings["host"], settings["port"], reconnect=False, **options
            )
            probe.addTimeout(timeout + 1.0, reactor)
            connection = yield probe
        except Exception as e:
            raise StoreError(f"{where}: {_connect_error(e)}") from None
        yield connection.disconnect()

        def pool(size: int) -> Any:
            return txredisapi.lazyConnectionPool(
                settings["host"],
                settings["port"],
                dbid=settings["db"],
                poolsize=size,
                password=settings["password"],
                username=settings["username"],
                ssl_context_factory=tls,
                connectTimeout=timeout,
                replyTimeout=timeout,
                convertNumbers=False,
            )

        client = pool(poolsize)
        ordered = pool(1)
        try:
            for each in (client, ordered):
                yield defer.Deferred.fromCoroutine(
                    _wait_connected(each, timeout, reactor)
                )
            info = yield client.execute_command("INFO", "server")
            policy = yield client.execute_command("CONFIG", "GET", "maxmemory-policy")
        except Exception as e:
            for each in (client, ordered):
                with contextlib.suppress(Exception):
                    gone = each.disconnect()
                    gone.addTimeout(1.0, reactor)
                    yield gone
            raise StoreError(f"{where}: cannot use it: {_short(e)}") from None
        version = _info(info, "redis_version") or "0"
        refused = None
        if int(version.split(".")[0]) < 7:
            refused = f"{where}: Redis {version}; fetchq needs Redis 7 or later"
        elif (
            isinstance(policy, list) and len(policy) == 2 and policy[1] != "noeviction"
        ):
            refused = (
                f"{where}: maxmemory-policy is {policy[1]}; a run's state must not "
                "be evicted: set it to noeviction"
            )
        if refused is not None:
            yield client.disconnect()
            yield ordered.disconnect()
            raise StoreError(refused)
        return cls(client, run, reactor, ordered=ordered, **kw)

    def __repr__(self) -> str:
        return f"<RedisStore {self.prefix} worker {self.worker}>"

    # ------------------------------------------------------------------
    # Plumbing

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the store for run {self.run!r} is closed")

    def _now(self, now: float | None) -> str:
        """ARGV[1] of a script: "" for the server's clock; else the caller's
        ``now`` in ms (None: before any time a caller uses)."""
        if self._server_time:
            return ""
        return str(-_FOREVER_MS if now is None else _ms(now))

    def _eval(self, name: str, args: list[Any]) -> Deferred[Any]:
        client = self._ordered if name in _ORDERED else self._client
        d: Deferred[Any] = client.eval(
            _scripts()[name], keys=[self._cfg], args=[str(a) for a in args]
        )
        return d

    # ------------------------------------------------------------------
    # The Store protocol

    def add(
        self,
        items: Iterable[NewItem],
        meta: Mapping[str, Any] | None = None,
        *,
        fence: str | None = None,
        expect: tuple[str, Any] | None = None,
    ) -> Deferred[int]:
        """Insert ``items`` (pending, or done with their record) and ``meta``
        in one script: all or nothing.  Known ids are skipped.

        Args:
            fence: the name of a lease this process must still hold (see
                :meth:`lease`), or the add fails with ``FENCED``: a loader
                that lost its lease cannot add rows behind its successor.
            expect: ``(name, value)``: the meta ``name`` must hold
                ``value`` (None: nothing), or the add fails with ``STALE``:
                a loader whose last write Redis lost (a crash inside its
                fsync window) cannot add rows past the gap.
        """
        self._check_open()
        guard = "" if fence is None else f"{fence} {self.worker}"
        if expect is not None:
            guard += f"\n{expect[0]}\n{_dumps(expect[1])}"
        args: list[Any] = [self._now(None), guard]
        try:
            for item in items:
                args += [
                    item.id,
                    _priority_text(item.priority),
                    lane_name(item.key),
                    _dumps(item.arg),
                    item.outcome or "",
                    "null" if item.record is None else _dumps(item.record),
                ]
        except Exception as e:
            # As a local store: the items before the failure are added (and
            # not the meta), then the error.
            error = e
            d = self._eval("add", args) if len(args) > 2 else defer.succeed(0)
            return d.addCallback(lambda _: defer.fail(error))
        if meta:
            args.append(_META)
            for name, value in meta.items():
                args += [name, _dumps(value)]
        if len(args) == 2:
            return defer.succeed(0)
        return self._eval("add", args).addCallback(int)

    def known(self, ids: Iterable[str]) -> Deferred[set[str]]:
        """Which of ``ids`` the store has."""
        self._check_open()
        wanted = list(ids)
        if not wanted:
            return defer.succeed(set())
        return self._eval("known", ["", *wanted]).addCallback(set)

    def claim(
        self,
        limit: int,
        now: float,
        lease: float,
        *,
        per_lane: int | None = None,
        skip: Collection[str | None] = (),
        limits: bool = False,
    ) -> Deferred[list[Claimed]]:
        """Take up to ``limit`` available items (see the contract), leased
        until ``lease`` seconds from the server's now.

        Args:
            limits: hand out only what the run's shared limits let launch
                now (global width and rate; each lane's width, rate and
                hold); :attr:`last_wake` then says when to try again.
        """
        check_claim(limit, now, lease, per_lane)
        self._check_open()
        lease_ms = _FOREVER_MS if math.isinf(lease) else max(1, _ms(lease))
        self._lease = min(lease, 3600.0)
        args = [
            self._now(now),
            self.worker,
            limit,
            "" if per_lane is None else per_lane,
            lease_ms,
            "1" if limits else "",
            *(lane_name(key) for key in skip),
        ]
        if self._ops:
            # This process's acks and requeues first (on the same ordered
            # connection): the claim then finds the slots they free.
            self._send()
        d = self._eval("claim", args).addCallback(self._claimed, lease)
        self._claims.add(d)

        def landed(result: Any) -> Any:
            self._claims.discard(d)
            return result

        return d.addBoth(landed)

    def _claimed(self, text: str, lease: float) -> list[Claimed]:
        reply = json.loads(text)
        wake = float(reply[0])
        self.last_wake = None if wake < 0 else wake / 1000.0
        claimed = [_claimed(reply[i], reply[i + 1]) for i in range(1, len(reply), 3)]
        self.last_delays = {
            reply[i]: int(reply[i + 2]) / 1000.0
            for i in range(1, len(reply), 3)
            if reply[i + 2] != "0"
        }
        for item in claimed:
            self._held[item.id] = lease
        if claimed and self._renew and not math.isinf(lease):
            self._start_renewing()
        return claimed

    def ack(
        self, item_id: str, outcome: str, record: JSONRecord, now: float
    ) -> Deferred[bool]:
        """Finish an item (batched with the other writes of this turn)."""
        check_ack(outcome, record, now)
        check_id(item_id)
        self._check_open()
        self._held.pop(item_id, None)
        text = "null" if record is None else _dumps(record)
        return self._queue("ack", [item_id, outcome, text], now)

    def requeue(
        self, item_id: str, not_before: float | None, now: float
    ) -> Deferred[bool]:
        """Back to pending, from ``not_before`` (batched).  Without server
        time ``not_before`` is on the caller's clock; with it, only
        ``not_before - now`` counts (a delay from the server's now)."""
        check_time(now)
        if not_before is not None:
            check_time(not_before, "not_before")
        check_id(item_id)
        self._check_open()
        self._held.pop(item_id, None)
        if not_before is None:
            when = ""
        elif self._server_time:
            when = "+" + str(max(0, _ms(not_before - now)))
        else:
            when = str(_ms(not_before))
        return self._queue("requeue", [item_id, when], now)

    def _queue(self, name: str, args: list[str], now: float) -> Deferred[bool]:
        d: Deferred[bool] = Deferred()
        self._ops.append((name, args, now, d))
        if not self._send_scheduled:
            self._send_scheduled = True
            self._reactor.callLater(0, self._send)
        return d

    def _send(self) -> None:
        """Send the writes queued so far, one script per kind; try again
        (with backoff) while Redis cannot take them."""
        self._send_scheduled = False
        ops, self._ops = self._ops, []
        if not ops:
            return
        for name in ("ack", "requeue"):
            batch = [(args, d) for n, args, _, d in ops if n == name]
            if batch:
                now = max(when for n, _, when, _ in ops if n == name)
                self._send_batch(name, batch, self._now(now), 0.1)

    def _send_batch(
        self,
        name: str,
        batch: list[tuple[list[str], Deferred[bool]]],
        now: str,
        backoff: float,
    ) -> None:
        args: list[Any] = [now]
        for one, _ in batch:
            args += one
        sent = self._eval(name, args)
        self._inflight.append(sent)

        def landed(results: list[Any]) -> None:
            self._inflight.remove(sent)
            for (one, d), result in zip(batch, results, strict=True):
                code = int(result)
                if code < 0:
                    d.errback(KeyError(one[0]))
                else:
                    d.callback(code == 1)

        def failed(failure: Any) -> None:
            self._inflight.remove(sent)
            if self._closed:
                for _, d in batch:
                    d.errback(failure)
                return
            log.warn(
                "fetchq: redis write failed ({why}); trying again in {s:.1f}s",
                why=_short(failure.value),
                s=backoff,
            )
            self._reactor.callLater(
                backoff, self._send_batch, name, batch, now, min(2 * backoff, 5.0)
            )

        sent.addCallbacks(landed, failed)

    def flush(self) -> Deferred[None]:
        """Fires once every write made so far has landed in Redis."""
        self._check_open()
        return self._drain()

    def _drain(self) -> Deferred[None]:
        if self._send_scheduled or self._ops:
            self._send_scheduled = False
            self._send()
        waiting = list(self._inflight)
        if not waiting:
            return defer.succeed(None)
        done = defer.DeferredList(waiting, consumeErrors=True)
        return done.addCallback(lambda _: self._drain())

    def _start_renewing(self) -> None:
        if self._renewer is None:
            self._renewer = task.LoopingCall(self._renew_leases)
            self._renewer.clock = self._reactor
            self._renewer.start(max(0.05, self._lease / 3), now=False)

    def _renew_leases(self) -> None:
        if not self._held or self._closed:
            return
        ids = list(self._held)
        lease_ms = max(1, _ms(self._lease))
        d = self._eval("renew", [self._now(None), self.worker, lease_ms, *ids])

        def lost(ids_lost: list[str]) -> None:
            for item_id in ids_lost:
                if self._held.pop(item_id, None) is not None:
                    log.warn(
                        "fetchq: lost the lease of {id} (another worker may "
                        "run it too; its first record counts)",
                        id=item_id,
                    )

        d.addCallbacks(
            lost,
            lambda f: log.warn(
                "fetchq: lease renewal failed: {why}", why=_short(f.value)
            ),
        )

    def release(self, now: float) -> Deferred[int]:
        """Every claimed item (whichever worker holds it) back to pending."""
        check_time(now)
        self._check_open()
        self._held.clear()
        return self._eval("release", [self._now(now)]).addCallback(int)

    def reopen(self, outcome: str, now: float) -> Deferred[int]:
        """Every item done with ``outcome`` back to pending, as new."""
        check_time(now)
        self._check_open()
        return defer.Deferred.fromCoroutine(self._reopen(outcome, now))

    async def _reopen(self, outcome: str, now: float) -> int:
        moved = 0
        index = 0
        while index >= 0:
            reply = await self._eval("reopen", [self._now(now), outcome, index, 2000])
            moved += int(reply[0])
            index = int(reply[1])
        return moved

    def reset(self) -> Deferred[None]:
        """Forget the run: delete every key under its hash tag."""
        self._check_open()
        self._held.clear()
        return defer.Deferred.fromCoroutine(self._reset())

    async def _reset(self) -> None:
        cursor = "0"
        pattern = self.prefix.replace("{", "\\{").replace("}", "\\}") + "*"
        while True:
            reply = await self._client.execute_command(
                "SCAN", cursor, "MATCH", pattern, "COUNT", 1000
            )
            cursor, keys = reply[0], reply[1]
            if keys:
                await self._client.execute_command("UNLINK", *keys)
            if cursor == "0":
                return

    def counts(self) -> Deferred[Counts]:
        """How many items are pending, claimed and done, whole run."""
        self._check_open()

        def make(flat: Any) -> Counts:
            values = _pairs(flat)
            done = {
                name[5:]: int(n)
                for name, n in values.items()
                if name.startswith("done:") and int(n) > 0
            }
            return Counts(
                int(values.get("pending", 0)), int(values.get("claimed", 0)), done
            )

        d: Deferred[Any] = self._client.execute_command("HGETALL", self.prefix + "n")
        return d.addCallback(make)

    def records(self, after_seq: int = 0, limit: int = 1000) -> Deferred[list[Record]]:
        """Records with ``seq > after_seq``, in ack order."""

        def make(rows: list[tuple[int, str, str, str]]) -> list[Record]:
            return [Record(n, i, outcome, json.loads(t)) for n, i, outcome, t in rows]

        return self._record_rows(after_seq, limit).addCallback(make)

    def record_texts(
        self, after_seq: int = 0, limit: int = 1000
    ) -> Deferred[list[tuple[int, str | None]]]:
        """As :meth:`records`, each record as ``(seq, JSON text)`` (None for
        no record), not decoded: what :mod:`fetchq.output` writes from."""

        def make(rows: list[tuple[int, str, str, str]]) -> list[tuple[int, str | None]]:
            return [(seq, None if t == "null" else t) for seq, _, _, t in rows]

        return self._record_rows(after_seq, limit).addCallback(make)

    def _record_rows(
        self, after_seq: int, limit: int
    ) -> Deferred[list[tuple[int, str, str, str]]]:
        """``(seq, id, outcome, record text)`` of the records after
        ``after_seq``, in ack order."""
        check_limit(after_seq, "after_seq")
        check_limit(limit)
        self._check_open()
        if not limit:
            return defer.succeed([])

        def make(text: str) -> list[tuple[int, str, str, str]]:
            reply = json.loads(text)
            rows = []
            for i in range(0, len(reply), 2):
                outcome, seq, *_, record = reply[i + 1].split(_US, 8)
                rows.append((int(seq), reply[i], outcome, record))
            return rows

        return self._eval("records", ["", after_seq, limit]).addCallback(make)

    def amend(self, item_id: str, record: JSONRecord, now: float) -> Deferred[bool]:
        """Replace a done item's record, keeping its outcome and its place
        in ack order (as :meth:`fetchq.store.SQLiteStore.amend`: ``fetchq
        sms status`` adds each message's delivery to its record).  Fires
        with False, changing nothing, if the item is not done.

        Raises (through the Deferred):
            KeyError: for an unknown id.
        """
        check_ack("amended", record, now)
        check_id(item_id)
        self._check_open()
        text = "null" if record is None else _dumps(record)

        def make(code: Any) -> bool:
            if int(code) < 0:
                raise KeyError(item_id)
            return int(code) == 1

        return self._eval("amend", ["", item_id, text]).addCallback(make)

    def get(self, item_id: str) -> Deferred[Item | None]:
        """Everything known of one item, or None."""
        check_id(item_id)
        self._check_open()
        return self._eval("get", ["", item_id]).addCallback(_item, item_id)

    def meta_get(self, key: str, default: Any = None) -> Deferred[Any]:
        """The value stored under ``key``, else ``default``."""
        self._check_open()
        d: Deferred[Any] = self._client.execute_command(
            "HGET", self.prefix + "meta", key
        )
        return d.addCallback(lambda v: default if v is None else json.loads(v))

    def meta_set(self, key: str, value: Any) -> Deferred[None]:
        """Keep a JSON-serialisable value under ``key``."""
        if not isinstance(key, str):
            raise TypeError(f"meta key must be a str, not {key!r}")
        self._check_open()
        text = _dumps(value)
        d: Deferred[Any] = self._client.execute_command(
            "HSET", self.prefix + "meta", key, text
        )
        return d.addCallback(lambda _: None)

    def close(self) -> Deferred[None]:
        """Let every claim in flight come back (whoever asked for it may
        hand its items back: those writes are still taken) and every write
        land, then disconnect.  Closing twice is harmless."""
        if self._closing is not None:
            return self._closing
        if self._renewer is not None and self._renewer.running:
            self._renewer.stop()
        claims = defer.DeferredList(list(self._claims), consumeErrors=True)

        def drain(_: Any) -> Deferred[None]:
            return self._drain()

        def disconnect(_: Any) -> Any:
            self._closed = True
            if self._ordered is self._client:
                return self._client.disconnect()
            # Both in this turn: closing the pool only once the other had
            # closed left replies still arriving on it half-parsed.
            ordered: Deferred[Any] = self._ordered.disconnect()
            ordered.addErrback(lambda _: None)
            pool: Deferred[Any] = self._client.disconnect()
            return pool.addBoth(lambda result: ordered.addCallback(lambda _: result))

        d = claims.addCallback(drain).addBoth(disconnect).addCallback(lambda _: None)
        self._closing = d
        return d

    # ------------------------------------------------------------------
    # Limits every worker obeys together

    def configure(self, **limits: float | int | None) -> Deferred[None]:
        """Set the run's shared limits: ``width``, ``rate``, ``burst``,
        ``lane_width``, ``lane_rate``, ``lane_burst``, ``paused`` (None:
        no limit).  Every claim with ``limits=True`` reads them, so a
        change reaches every worker at its next claim."""
        self._check_open()
        known = {
            "width",
            "rate",
            "burst",
            "lane_width",
            "lane_rate",
            "lane_burst",
            "paused",
        }
        unknown = set(limits) - known
        if unknown:
            raise TypeError(f"unknown limits: {', '.join(sorted(unknown))}")
        args: list[Any] = []
        gone: list[str] = []
        for name, value in limits.items():
            if value is None:
                gone.append(name)
            else:
                args += [name, _limit_text(value)]
        ds: list[Deferred[Any]] = []
        if args:
            ds.append(self._client.execute_command("HSET", self._cfg, *args))
        if gone:
            ds.append(self._client.execute_command("HDEL", self._cfg, *gone))
        return defer.gatherResults(ds).addCallback(lambda _: None)

    def limits(self) -> Deferred[dict[str, float | int | None]]:
        """The run's shared limits as :meth:`configure` set them."""
        self._check_open()

        def make(flat: Any) -> dict[str, float | int | None]:
            values = _pairs(flat)
            return {
                name: _parse_limit(values.get(name))
                for name in (
                    "width",
                    "rate",
                    "burst",
                    "lane_width",
                    "lane_rate",
                    "lane_burst",
                )
            } | {"paused": values.get("paused") == "1"}

        d: Deferred[Any] = self._client.execute_command("HGETALL", self._cfg)
        return d.addCallback(make)

    def set_lane(
        self,
        key: str | None,
        *,
        width: int | str | None = "keep",
        rate: float | str | None = "keep",
        burst: int | None = None,
    ) -> Deferred[None]:
        """Give one lane its own width and/or rate (None: no limit for this
        lane, whatever the default; ``"default"``: back to the default)."""
        self._check_open()
        name = self.prefix + "lcfg:" + lane_name(key)
        args: list[Any] = []
        gone: list[str] = []
        for field, value in (("width", width), ("rate", rate), ("burst", burst)):
            if value == "keep" or (field == "burst" and value is None):
                continue
            if value == "default":
                gone.append(field)
            else:
                assert not isinstance(value, str)
                args += [field, "none" if value is None else _limit_text(value)]
        ds: list[Deferred[Any]] = []
        if args:
            ds.append(self._client.execute_command("HSET", name, *args))
        if gone:
            ds.append(self._client.execute_command("HDEL", name, *gone))
        return defer.gatherResults(ds).addCallback(lambda _: None)

    def lease(self, name: str, seconds: float, action: str = "take") -> Deferred[bool]:
        """Take (if free), renew or drop the named lease for this process
        (:attr:`worker`): one loader of the input, one leader of the
        controller.  Fires with whether this process holds it now."""
        self._check_open()
        if action not in ("take", "renew", "drop"):
            raise ValueError(f"action must be take, renew or drop, not {action!r}")
        d = self._eval("lease", ["", name, self.worker, max(1, _ms(seconds)), action])
        return d.addCallback(lambda held: int(held) == 1)

    def script(self, name: str, args: Iterable[Any]) -> Deferred[Any]:
        """Run the section ``name`` of ``redis.lua`` on this run's keys with
        ``args`` (ARGV[1] is ``now``: "" for the server's clock).  For the
        modules that share limits through the run (:mod:`fetchq.shared`)."""
        self._check_open()
        return self._eval(name, list(args))

    def command(self, *args: Any) -> Deferred[Any]:
        """Send one Redis command (keys under :attr:`prefix`)."""
        self._check_open()
        d: Deferred[Any] = self._client.execute_command(*args)
        return d

    def hold_lane(
        self, key: str | None, seconds: float, now: float | None = None
    ) -> Deferred[float]:
        """Launch nothing from lane ``key`` for ``seconds`` (from the
        server's now, or the caller's ``now`` without server time), for
        every worker; holds only ever extend.  Fires with ``seconds``."""
        self._check_open()
        at = "" if self._server_time else str(_ms(now or 0.0))
        d = self._eval("hold", [at, lane_name(key), f"{seconds:.3f}"])
        return d.addCallback(lambda _: seconds)

    # ------------------------------------------------------------------
    # For an admin view and an operator's changes (beyond the contract)

    def release_lane(self, key: str | None) -> Deferred[bool]:
        """End lane ``key``'s hold early, for every worker.  Fires with
        whether it was held."""
        self._check_open()
        d = self._eval("unhold", ["", lane_name(key)])
        return d.addCallback(lambda n: int(n) == 1)

    def lanes_page(
        self, offset: int, count: int, sort: str = "backlog", most: int = 20_000
    ) -> Deferred[dict[str, Any]]:
        """A page of the lanes with work (pending, in flight or held), by
        ``backlog``, ``name`` or ``held``; looks at ``most`` lanes at most.
        Fires with ``{"total", "cut", "lanes": [{"key", "pending",
        "in_flight", "held_until" (server seconds or None), "width",
        "rate"}]}``."""
        check_limit(offset, "offset")
        check_limit(count)
        self._check_open()
        if sort not in ("backlog", "name", "held"):
            raise ValueError(f"sort must be backlog, name or held, not {sort!r}")

        def make(reply: list[Any]) -> dict[str, Any]:
            lanes = []
            for i in range(2, len(reply), 6):
                name, pending, flight, held, width, rate = reply[i : i + 6]
                lanes.append(
                    {
                        "key": _key_of(name),
                        "pending": int(pending),
                        "in_flight": int(flight),
                        "held_until": int(held) / 1000.0 if int(held) else None,
                        "width": None if width in ("", "none") else _priority(width),
                        "rate": None if rate in ("", "none") else _priority(rate),
                    }
                )
            return {"total": int(reply[0]), "cut": int(reply[1]) == 1, "lanes": lanes}

        d = self._eval("lanes_page", ["", offset, count, sort, most])
        return d.addCallback(make)

    def pending_page(
        self, key: str | Any | None, offset: int, count: int
    ) -> Deferred[tuple[list[Claimed], bool]]:
        """Pending items ready to claim, in claim order: of lane ``key``, or
        of every lane (lane by lane) if ``key`` is :data:`ALL_LANES`.  Fires
        with ``(items, more)``; ``offset`` is at most 10,000."""
        check_limit(offset, "offset")
        check_limit(count)
        self._check_open()
        if offset > 10_000:
            raise ValueError("offset must be at most 10000 (list a lane instead)")
        lane = "" if key is ALL_LANES else lane_name(key)

        def make(reply: list[Any]) -> tuple[list[Claimed], bool]:
            items = [_claimed(reply[i], reply[i + 1]) for i in range(1, len(reply), 2)]
            return items, int(reply[0]) == 1

        return self._eval("pending_page", ["", lane, offset, count]).addCallback(make)

    def leased_page(
        self, offset: int, count: int
    ) -> Deferred[tuple[int, list[tuple[Claimed, float, str]]]]:
        """Items claimed now by any worker, by lease deadline: fires with
        ``(total, [(item, deadline in server seconds, worker), ...])``."""
        check_limit(offset, "offset")
        check_limit(count)
        self._check_open()

        def make(reply: list[Any]) -> tuple[int, list[tuple[Claimed, float, str]]]:
            rows = [
                (
                    _claimed(reply[i], reply[i + 1]),
                    int(reply[i + 2]) / 1000.0,
                    reply[i + 3],
                )
                for i in range(1, len(reply), 4)
            ]
            return int(reply[0]), rows

        return self._eval("leased_page", ["", offset, count]).addCallback(make)

    def reprioritize(self, item_id: str, priority: int | float) -> Deferred[bool]:
        """Give a pending item a new priority (it keeps its arrival order
        among that priority's items).  Fires with False if it is claimed or
        done.

        Raises (through the Deferred):
            KeyError: no such item.
        """
        check_id(item_id)
        check_priority(priority)
        self._check_open()

        def make(code: Any) -> bool:
            if int(code) < 0:
                raise KeyError(item_id)
            return int(code) == 1

        d = self._eval("reprioritize", ["", item_id, _priority_text(priority)])
        return d.addCallback(make)

    def server_time(self) -> Deferred[float]:
        """The Redis server's clock (seconds), which holds are kept on."""
        self._check_open()
        d: Deferred[Any] = self._client.execute_command("TIME")
        return d.addCallback(lambda t: int(t[0]) + int(t[1]) / 1e6)


def _connect_error(error: BaseException) -> str:
    """What went wrong connecting, in a few words (txredisapi's "Redis
    error: could not auth: WRONGPASS ..." as "cannot auth: WRONGPASS ...")."""
    if isinstance(error, defer.TimeoutError):
        return "cannot connect: no answer"
    text = _short(error).removeprefix("Redis error: ")
    if text.startswith("could not "):
        text = "cannot " + text[len("could not ") :]
    return text if text.startswith("cannot ") else f"cannot connect: {text}"


async def _wait_connected(client: Any, timeout: float, reactor: Any) -> None:
    """PING until the lazy pool answers, then wait until every connection of
    the pool is made (its SELECT of the database done), or raise after
    ``timeout``.  A store closed while one of them was still selecting its
    database would otherwise leave txredisapi's "could not set dbid: Lost
    connection" as an unhandled error."""
    d: Deferred[Any] = client.ping()
    d.addTimeout(timeout, reactor)
    try:
        await d
        every = getattr(client, "_connected", None)  # the pool's, all made
        if isinstance(every, Deferred) and not every.called:
            every.addTimeout(timeout, reactor)
            await every
    except defer.TimeoutError:
        raise StoreError(f"no answer within {timeout:g}s") from None


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _short(error: object) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _info(text: Any, field: str) -> str | None:
    for line in str(text).splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return None


def _pairs(flat: Any) -> dict[str, str]:
    if isinstance(flat, dict):
        return {str(k): str(v) for k, v in flat.items()}
    items = list(flat or [])
    return {str(items[i]): str(items[i + 1]) for i in range(0, len(items), 2)}


def _limit_text(value: float | int | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return repr(value)


def _parse_limit(text: str | None) -> float | int | None:
    if text is None or text == "":
        return None
    return _priority(text)


def _item(reply: list[Any], item_id: str) -> Item | None:
    if not reply:
        return None
    state, raw, when = reply
    if state == "done":
        outcome, seq, at, prio, lane, attempts, _, arg, record = raw.split(_US, 8)
        return Item(
            id=item_id,
            arg=json.loads(arg),
            priority=_priority(prio),
            key=_key_of(lane),
            state=ItemState.DONE,
            attempts=int(attempts),
            not_before=None,
            lease_until=None,
            outcome=outcome,
            record=json.loads(record),
            record_seq=int(seq),
            done_at=None if at == "" else float(at) / 1000.0,
        )
    prio, lane, attempts, _, arg = raw.split(_US, 4)
    claimed = state == "claimed"
    moment = None if when in ("", None) else float(when) / 1000.0
    return Item(
        id=item_id,
        arg=json.loads(arg),
        priority=_priority(prio),
        key=_key_of(lane),
        state=ItemState.CLAIMED if claimed else ItemState.PENDING,
        attempts=int(attempts),
        not_before=None if claimed else moment,
        lease_until=moment if claimed else None,
        outcome=None,
        record=None,
        record_seq=None,
        done_at=None,
    )
