"""Shared limits: one width, one rate, one set of lanes for queues in many
processes, kept in Redis.

::

    limits = yield SharedLimits.connect("redis://10.0.0.5:6379/0", "sms", reactor)
    yield limits.configure(width=10, lane_rate=1.0)   # once, from anywhere
    limits.attach(queue)                              # in every process

From then on a job of ``queue`` launches only when the run's global width
has a slot free, the global rate allows a launch, and the job's lane (its
key) is under its width and rate and not held -- counting every job of every
queue, in every process, attached to the same name.  The limits are those
of :class:`~fetchq.store.redis.RedisStore` (the same Lua, the same keys:
``{fetchq:NAME}:``), so a :class:`~fetchq.shared_run.SharedRun` of the same
name shares them too.

How a job launches: the queue launches it as usual (it counts as underway
locally from then on), but its job function first asks Redis for a *slot*;
while the answer is "not yet" the job waits, cancellably, then runs, then
gives the slot back.  Asks, releases and holds made in one reactor turn go
to Redis as one script call.  Jobs that wait for the same reason (the
global width or rate, or one lane) wait in a line, and only its head asks
again, when its wait is over or a slot frees here (and at least every
``poll`` seconds), so a full width costs a few calls a second, not one per
waiting job.

- **Slots are leases.**  A slot is leased for ``lease`` seconds and renewed
  every third of that while its job runs; a process killed with ``kill -9``
  loses its slots when their leases run out, and the other processes get
  them.
- **Holds are everyone's.**  A job that fails with
  :class:`~fetchq.errors.Throttled` (a 429 and its Retry-After) holds its
  lane in its queue, as always; that :class:`~fetchq.events.LaneHeld` is
  sent to Redis, so no process launches from the lane until the hold ends,
  and each attached queue holds its own lane too once it asks for it.
- **Changes reach every queue.**  :meth:`setWidth`, :meth:`set_rate`,
  :meth:`set_lane_width`, :meth:`set_lane_rate`, :meth:`hold` (or anyone's
  ``RedisStore.configure``) change the limits in Redis; every process reads
  them at least every ``refresh`` seconds and mirrors them into its queues
  (``setWidth``, ``set_rate``, lane widths, rates and holds), whose
  observers see the usual events.  A queue's own width and rate come back
  when the shared ones are removed.

A queue-wide hold (``queue.hold(s)`` without a key) stays local.
"""

from __future__ import annotations

import collections
import itertools
import math
from collections.abc import Callable
from inspect import iscoroutine
from typing import Any

from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from fetchq._validate import check_width
from fetchq.events import Event, JobLaunched, LaneHeld
from fetchq.queue import ResizableDispatchQueue
from fetchq.ratelimit import check_rate
from fetchq.secrets import Secret
from fetchq.store.redis import RedisStore

__all__ = ["SharedLimits"]

log = Logger()

_LANE_REASONS = frozenset({"held", "lane-width", "lane-rate"})
_UNCAPPED = 1 << 30  # a lane Redis gives no width, whatever the default
_VIEW_LANES = 100  # most lanes of a refresh
_LIMITS = ("width", "rate", "burst", "lane_width", "lane_rate", "lane_burst")


def lane_of(key: Any) -> str:
    """The Redis lane name of a queue's lane key."""
    return "+" + (key if isinstance(key, str) else str(key))


class _Ask:
    """One job's request for a slot."""

    __slots__ = ("d", "key", "lane", "line", "sent", "token")

    def __init__(self, key: Any, token: str) -> None:
        self.key = key
        self.lane = "" if key is None else lane_of(key)
        self.token = token
        self.d: Deferred[str] = Deferred(self._cancel)
        self.line: _Line | None = None
        self.sent = False  # in the batch on its way to Redis

    def _cancel(self, d: Deferred[str]) -> None:
        line = self.line
        if line is not None:
            line.remove(self)


class _Line:
    """Jobs waiting for the same thing (the global limits, or one lane's);
    only the head asks again."""

    __slots__ = ("asks", "key", "owner", "parked", "timer")

    def __init__(self, owner: SharedLimits, key: Any = None) -> None:
        self.owner = owner
        self.key = key  # the lane's key; None for the global line
        self.asks: collections.deque[_Ask] = collections.deque()
        self.parked = False  # the head waits for a slot to free
        self.timer: Any = None

    def remove(self, ask: _Ask) -> None:
        was_head = bool(self.asks) and self.asks[0] is ask
        self.asks.remove(ask)
        ask.line = None
        if was_head:
            self.owner._advance(self)


class _Attached:
    """What attaching changed in one queue (undone by detach)."""

    __slots__ = (
        "func",
        "launching",
        "overrides",
        "own",
        "paused",
        "queue",
        "unsubscribe",
    )

    def __init__(self, queue: ResizableDispatchQueue) -> None:
        self.queue = queue
        self.func = queue.func
        self.launching: Any = None
        # The queue's own limits, back when the shared ones are removed.
        self.own: dict[str, Any] = {
            "width": queue.width,
            "rate": (queue.rate, queue.burst),
            "lane_width": queue.lane_width,
            "lane_rate": (queue.lane_rate, queue.lane_burst),
        }
        self.paused = False  # paused by the shared limits
        self.overrides: dict[Any, tuple[str, str, str]] = {}
        self.unsubscribe: Callable[[], None] = lambda: None


class SharedLimits:
    """Limits shared by queues in any number of processes (see the module).

    Args:
        store: an open :class:`~fetchq.store.redis.RedisStore`; its run name
            is the name the processes share.
        reactor: time.
        lease: seconds a slot is leased for (renewed while its job runs):
            how long a dead process's slots stay taken.
        poll: most seconds a job waiting for a width waits before its line
            asks again (a slot freed here wakes it at once).
        refresh: seconds between readings of the limits when nothing else
            reads them: how soon an admin's change reaches the queues.
        on_grant: called with ``(key, server_time)`` for every slot granted
            (the Redis server's clock, in seconds): for metrics and tests.
    """

    def __init__(
        self,
        store: RedisStore,
        reactor: Any,
        *,
        lease: float = 10.0,
        poll: float = 0.2,
        refresh: float = 0.5,
        on_grant: Callable[[Any, float], object] | None = None,
    ) -> None:
        for name, value in (("lease", lease), ("poll", poll), ("refresh", refresh)):
            if isinstance(value, bool) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a number > 0, not {value!r}")
        self.store = store
        self.name = store.run
        self._reactor = reactor
        self.lease = lease
        self.poll = poll
        self.refresh = refresh
        self._on_grant = on_grant
        self._tokens = itertools.count(1)
        self._attached: list[_Attached] = []
        self._held: dict[str, Any] = {}  # slot member -> lane key
        self._holds: list[tuple[str, int]] = []
        self._releases: list[str] = []
        self._asks: list[_Ask] = []
        self._lines: dict[Any, _Line] = {}
        self._keys: dict[str, Any] = {}  # lane name -> key, for mirroring
        self._global = _Line(self)
        self._waiters: list[Deferred[None]] = []  # fire after the next call
        self._sending = False
        self._scheduled = False
        self._backoff = 0.0
        self._mirroring = False
        self._closed = False
        self._cfg: tuple[str, ...] | None = None
        self.limits_seen: dict[str, Any] = {}
        """The shared limits as last read (``width``, ``rate``, ... as
        :meth:`~fetchq.store.redis.RedisStore.limits` names them)."""
        self.stats: collections.Counter[str] = collections.Counter()
        """Slots ``granted``, ``released``, ``lost`` (a lease that ran out
        under a running job), and waits by reason (``wait:width``,
        ``wait:rate``, ``wait:lane-width``, ``wait:lane-rate``,
        ``wait:held``, ``wait:paused``)."""
        self._renewer = task.LoopingCall(self._renew)
        self._renewer.clock = reactor
        self._ticker = task.LoopingCall(self._tick)
        self._ticker.clock = reactor
        self._last_read = -math.inf
        self._last_view = -math.inf

    @classmethod
    @defer.inlineCallbacks
    def connect(cls, url: str | Secret, name: str, reactor: Any, **kw: Any) -> Any:
        """Connect to Redis at ``url`` and share the limits called ``name``.

        Returns (through a Deferred) the :class:`SharedLimits`.

        Raises:
            StoreError: Redis cannot be used (one line, no password).
        """
        store = yield RedisStore.connect(url, name, reactor, renew=False)
        return cls(store, reactor, **kw)

    def __repr__(self) -> str:
        return f"<SharedLimits {self.name!r} worker {self.store.worker}>"

    # ------------------------------------------------------------------
    # Setting the limits (for every process)

    @property
    def width(self) -> int | None:
        """The shared width as last read (None: none)."""
        width = self.limits_seen.get("width")
        return None if width is None else int(width)

    def configure(self, **limits: float | int | None) -> Deferred[None]:
        """Set several shared limits at once (``width``, ``rate``,
        ``burst``, ``lane_width``, ``lane_rate``, ``lane_burst``, ``paused``;
        None removes one), as :meth:`RedisStore.configure
        <fetchq.store.redis.RedisStore.configure>` does."""
        return self._changed(self.store.configure(**limits))

    def setWidth(self, width: int | None) -> Deferred[None]:
        """Jobs underway at once across every process (None: no shared
        width; each queue's own width applies)."""
        if width is not None:
            check_width(width)
        return self.configure(width=width)

    def set_rate(self, rate: float | None, burst: int = 1) -> Deferred[None]:
        """Launches per second across every process (None: no shared rate)."""
        check_rate(rate, burst)
        return self.configure(rate=rate, burst=None if rate is None else burst)

    def set_lane_width(self, key: Any, width: int | None) -> Deferred[None]:
        """Lane ``key``'s width, or the default of every lane if ``key`` is
        None; ``width`` None lifts the default, or puts a lane back on it."""
        if width is not None:
            check_width(width, "lane width")
        if key is None:
            return self.configure(lane_width=width)
        self._keys.setdefault(lane_of(key), key)
        value: int | str = "default" if width is None else width
        return self._changed(self.store.set_lane(_text(key), width=value))

    def set_lane_rate(
        self, key: Any, rate: float | None, burst: int = 1
    ) -> Deferred[None]:
        """Lane ``key``'s launch rate, or the default of every lane if
        ``key`` is None; ``rate`` None removes the limit."""
        check_rate(rate, burst)
        if key is None:
            return self.configure(
                lane_rate=rate, lane_burst=None if rate is None else burst
            )
        self._keys.setdefault(lane_of(key), key)
        return self._changed(self.store.set_lane(_text(key), rate=rate, burst=burst))

    def hold(self, seconds: float, key: Any) -> Deferred[None]:
        """Launch nothing from lane ``key`` for ``seconds``, in every
        process (holds only ever extend).

        Raises:
            ValueError: without a key (a queue-wide hold is not shared).
        """
        if key is None:
            raise ValueError("a shared hold needs a lane key")
        if isinstance(seconds, bool) or not seconds >= 0:
            raise ValueError(f"seconds must be >= 0, not {seconds!r}")
        self._keys.setdefault(lane_of(key), key)
        self._holds.append((lane_of(key), max(1, round(seconds * 1000))))
        return self._next_call()

    def limits(self) -> Deferred[dict[str, float | int | None]]:
        """The shared limits, read now."""
        return self.store.limits()

    def _changed(self, d: Deferred[None]) -> Deferred[None]:
        """After a change: read the limits back at once (this process's
        queues see it now; the others at their next reading)."""

        return d.addCallback(lambda _: self._next_call())

    def _next_call(self) -> Deferred[None]:
        """Fires once the next script call (with everything queued so far,
        and a fresh reading of the limits) has landed."""
        done: Deferred[None] = Deferred()
        self._waiters.append(done)
        self._schedule()
        return done

    # ------------------------------------------------------------------
    # Attaching queues

    def attach(self, queue: ResizableDispatchQueue) -> None:
        """Make ``queue``'s jobs launch under the shared limits.

        Raises:
            RuntimeError: if the queue is attached already, or this object
                is closed.
        """
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if any(a.queue is queue for a in self._attached):
            raise RuntimeError("this queue is attached already")
        attached = _Attached(queue)
        attached.unsubscribe = queue.subscribe(
            lambda event: self._observe(attached, event)
        )
        queue.func = self._gate(attached)
        self._attached.append(attached)
        if not self._ticker.running:
            self._ticker.start(min(self.poll, self.refresh), now=False)
        if self._cfg is not None:
            self._mirror_cfg(attached, self._cfg)
        self._schedule()

    def detach(self, queue: ResizableDispatchQueue) -> None:
        """Give ``queue`` back its own job function.  Jobs waiting for a
        slot go on waiting (and run under the limits); its width, rate and
        lane limits stay as last mirrored."""
        for attached in list(self._attached):
            if attached.queue is queue:
                attached.unsubscribe()
                queue.func = attached.func
                self._attached.remove(attached)

    def close(self) -> Deferred[None]:
        """Detach every queue, give back the slots this process holds, and
        disconnect.  Jobs still waiting for a slot fail (cancelled)."""
        if self._closed:
            return defer.succeed(None)
        for attached in list(self._attached):
            self.detach(attached.queue)
        for loop in (self._ticker, self._renewer):
            if loop.running:
                loop.stop()
        waiting = [*self._asks]
        for line in [self._global, *self._lines.values()]:
            waiting.extend(line.asks)
            if line.timer is not None and line.timer.active():
                line.timer.cancel()
        for ask in waiting:
            if not ask.d.called:
                ask.d.cancel()
        self._releases.extend(self._held)
        self._held.clear()
        done = self._flush()
        self._closed = True
        return done.addBoth(lambda _: self.store.close())

    def _flush(self) -> Deferred[None]:
        if not (self._holds or self._releases):
            return defer.succeed(None)
        return self._next_call()

    # ------------------------------------------------------------------
    # The gate: a job's function waits for its slot

    def _observe(self, attached: _Attached, event: Event) -> None:
        kind = event.__class__
        if kind is JobLaunched:
            assert isinstance(event, JobLaunched)
            attached.launching = event.job
        elif kind is LaneHeld and not self._mirroring:
            assert isinstance(event, LaneHeld)
            if event.key is not None and not self._closed:
                seconds = event.until - event.time
                self._keys.setdefault(lane_of(event.key), event.key)
                self._holds.append((lane_of(event.key), max(1, round(seconds * 1000))))
                self._schedule()

    def _gate(self, attached: _Attached) -> Callable[[Any], Deferred[Any]]:
        func = attached.func

        def gated(arg: Any) -> Deferred[Any]:
            job = attached.launching
            attached.launching = None
            key = job.key if job is not None and job.arg is arg else None
            return Deferred.fromCoroutine(self._run(func, key, arg))

        return gated

    async def _run(self, func: Callable[[Any], Any], key: Any, arg: Any) -> Any:
        member = await self._acquire(key)
        try:
            result = func(arg)
            if iscoroutine(result):
                result = Deferred.fromCoroutine(result)
            if isinstance(result, Deferred):
                result = await result
            return result
        finally:
            self._release(member, key)

    def _acquire(self, key: Any) -> Deferred[str]:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        ask = _Ask(key, f"{self.store.worker}:{next(self._tokens)}")
        if key is not None:
            self._keys.setdefault(ask.lane, key)
        line = self._lines.get(key) if key is not None else None
        if line is None or not line.asks:
            line = self._global if self._global.asks else None
        if line is not None:
            self._join(line, ask)
        else:
            self._send_ask(ask)
        return ask.d

    def _release(self, member: str, key: Any) -> None:
        self._held.pop(member, None)
        self._releases.append(member)
        self.stats["released"] += 1
        # A slot frees here: whoever waits for one asks again now.
        self._wake(self._global)
        if key is not None:
            line = self._lines.get(key)
            if line is not None:
                self._wake(line)
        if not self._closed:
            self._schedule()

    # ------------------------------------------------------------------
    # Lines

    def _join(self, line: _Line, ask: _Ask) -> None:
        ask.line = line
        line.asks.append(ask)

    def _send_ask(self, ask: _Ask) -> None:
        ask.sent = True
        self._asks.append(ask)
        self._schedule()

    def _advance(self, line: _Line) -> None:
        """The head left: the next one asks now."""
        if line.timer is not None and line.timer.active():
            line.timer.cancel()
        line.timer = None
        line.parked = False
        if line.asks:
            head = line.asks[0]
            if not head.sent:
                self._send_ask(head)
        elif line is not self._global and self._lines.get(line.key) is line:
            del self._lines[line.key]

    def _wake(self, line: _Line) -> None:
        """Let a line's head ask again now, if it waits for a slot."""
        if line.parked and line.asks and not line.asks[0].sent:
            line.parked = False
            self._send_ask(line.asks[0])

    def _retry(self, line: _Line) -> None:
        line.timer = None
        if line.asks and not line.asks[0].sent:
            self._send_ask(line.asks[0])

    def _denied(self, ask: _Ask, wait_ms: int, why: str) -> None:
        """Put a denied ask at the right place of the right line."""
        self.stats["wait:" + why] += 1
        if why in _LANE_REASONS and ask.key is not None:
            target = self._lines.get(ask.key)
            if target is None:
                target = self._lines[ask.key] = _Line(self, ask.key)
        else:
            target = self._global
        line = ask.line
        if line is not target:
            if line is not None:
                line.remove(ask)
            self._join(target, ask)
        if target.asks[0] is not ask:
            return  # it waits behind the head
        if target.timer is not None and target.timer.active():
            target.timer.cancel()
        target.timer = None
        if wait_ms < 0:
            target.parked = True
        else:
            target.parked = False
            target.timer = self._reactor.callLater(
                wait_ms / 1000.0, self._retry, target
            )

    def _granted(self, ask: _Ask, member: str, server: float) -> None:
        self.stats["granted"] += 1
        line = ask.line
        if ask.d.called:  # cancelled meanwhile: give it back
            self._releases.append(member)
            self._schedule()
            return
        self._held[member] = ask.key
        if not self._renewer.running:
            self._renewer.start(max(0.05, self.lease / 3), now=False)
        if line is not None:
            line.remove(ask)
        if self._on_grant is not None:
            self._on_grant(ask.key, server)
        ask.d.callback(member)

    # ------------------------------------------------------------------
    # Talking to Redis: one script call at a time, batching the rest

    def _schedule(self) -> None:
        if not self._scheduled and not self._sending:
            self._scheduled = True
            self._reactor.callLater(0, self._send)

    def _view(self) -> list[str]:
        """Lanes whose limits to read back (every ``refresh`` seconds, and
        after a change): lanes with jobs waiting in an attached queue, and
        lanes whose own limits were mirrored."""
        now = self._reactor.seconds()
        if self._closed or (now - self._last_view < self.refresh and not self._waiters):
            return []
        self._last_view = now
        names: dict[str, None] = {}
        for attached in self._attached:
            for key in attached.overrides:
                names[lane_of(key)] = None
            for info in attached.queue.lanes():
                if len(names) >= _VIEW_LANES:
                    break
                if info.pending and info.key is not None:
                    name = lane_of(info.key)
                    self._keys.setdefault(name, info.key)
                    names[name] = None
        return list(names)[:_VIEW_LANES]

    def _send(self) -> None:
        self._scheduled = False
        if self._sending:
            return
        if self._closed and not (self._holds or self._releases):
            return
        holds, self._holds = self._holds, []
        releases, self._releases = self._releases, []
        asks, self._asks = self._asks, []
        waiters, self._waiters = self._waiters, []
        lease_ms = max(1, round(self.lease * 1000))
        args: list[Any] = ["", self.store.worker, lease_ms, len(holds)]
        for lane, ms in holds:
            args += [lane, ms]
        args.append(len(releases))
        args += releases
        args.append(len(asks))
        for ask in asks:
            args += [ask.token, ask.lane]
        args += self._view()
        self._sending = True
        self._last_read = self._reactor.seconds()
        d = self.store.script("slots", args)

        def done(reply: list[Any]) -> None:
            self._sending = False
            self._backoff = 0.0
            self._answered(reply, asks)
            for waiter in waiters:
                waiter.callback(None)
            if self._holds or self._releases or self._asks or self._waiters:
                self._schedule()

        def failed(failure: Any) -> None:
            self._sending = False
            if self._closed:
                for waiter in waiters:
                    waiter.errback(failure)
                return
            self._backoff = min(5.0, max(0.1, 2 * self._backoff))
            log.warn(
                "fetchq: shared limits {name!r}: redis call failed ({why}); "
                "trying again in {s:.1f}s",
                name=self.name,
                why=str(failure.value)[:200],
                s=self._backoff,
            )
            self._holds[:0] = holds
            self._releases[:0] = releases
            # Asked again with the same tokens: a slot granted by a call
            # whose answer was lost is the same slot (its lease is renewed).
            self._asks[:0] = asks
            self._waiters.extend(waiters)
            self._scheduled = True
            self._reactor.callLater(self._backoff, self._send)

        d.addCallbacks(done, failed)

    def _answered(self, reply: list[Any], asks: list[_Ask]) -> None:
        server = float(reply[0]) / 1000.0
        cfg = tuple(str(v) for v in reply[1])
        answers = reply[2]
        for n, ask in enumerate(asks):
            ask.sent = False
            member, wait, why = answers[3 * n : 3 * n + 3]
            if member:
                self._granted(ask, str(member), server)
            elif not ask.d.called:  # (a cancelled ask has left its line)
                self._denied(ask, int(wait), str(why))
        if cfg != self._cfg:
            changed = self._cfg is not None
            self._cfg = cfg
            values = dict(zip(_LIMITS, (_number(v) for v in cfg[:6]), strict=True))
            self.limits_seen = {**values, "paused": cfg[6] == "1"}
            for attached in self._attached:
                self._mirror_cfg(attached, cfg)
            if changed:
                # Limits moved: every line asks again now.
                for line in [self._global, *self._lines.values()]:
                    self._wake(line)
                    if line.timer is not None and line.timer.active():
                        line.timer.cancel()
                        self._retry(line)
        lanes = reply[3]
        for i in range(0, len(lanes), 5):
            key = self._keys.get(str(lanes[i]))
            if key is None:
                continue
            own = (str(lanes[i + 1]), str(lanes[i + 2]), str(lanes[i + 3]))
            held = int(lanes[i + 4])
            for attached in self._attached:
                self._mirror_lane(attached, key, own, held)

    # ------------------------------------------------------------------
    # Mirroring the shared limits into the queues

    def _mirror_cfg(self, attached: _Attached, cfg: tuple[str, ...]) -> None:
        values = dict(zip(_LIMITS, (_number(v) for v in cfg[:6]), strict=True))
        queue = attached.queue
        own = attached.own
        width = values["width"]
        width = own["width"] if width is None else int(width)
        if queue.width != width:
            queue.setWidth(width)
        rate, burst = values["rate"], values["burst"]
        wanted = own["rate"] if rate is None else (rate, int(burst or 1))
        if (queue.rate, queue.burst) != wanted:
            queue.set_rate(*wanted)
        lane_width = values["lane_width"]
        lane_width = own["lane_width"] if lane_width is None else int(lane_width)
        if queue.lane_width != lane_width:
            queue.set_lane_width(None, lane_width)
        lane_rate, lane_burst = values["lane_rate"], values["lane_burst"]
        wanted = (
            own["lane_rate"] if lane_rate is None else (lane_rate, int(lane_burst or 1))
        )
        if (queue.lane_rate, queue.lane_burst) != wanted:
            queue.set_lane_rate(None, *wanted)
        paused = cfg[6] == "1"
        if paused and not attached.paused and not queue.paused:
            attached.paused = True
            queue.pause()
        elif not paused and attached.paused:
            attached.paused = False
            if not queue.stopped:
                queue.resume()

    def _mirror_lane(
        self, attached: _Attached, key: Any, own: tuple[str, str, str], held: int
    ) -> None:
        queue = attached.queue
        if held > 0:
            info = queue.lane(key)
            until = queue.clock.seconds() + held / 1000.0
            if info is None or (info.held_until or 0.0) < until - 0.05:
                self._mirroring = True
                try:
                    queue.hold(held / 1000.0, key)
                finally:
                    self._mirroring = False
        before = attached.overrides.get(key, ("", "", ""))
        if own == before:
            return
        width, rate, burst = own
        if own == ("", "", ""):
            del attached.overrides[key]
            queue.reset_lane(key)
            return
        attached.overrides[key] = own
        if width != before[0]:
            if width == "":
                queue.set_lane_width(key, None)
            else:
                queue.set_lane_width(
                    key, _UNCAPPED if width == "none" else int(float(width))
                )
        if rate != before[1] or burst != before[2]:
            if rate == "":
                queue.set_lane_rate(key, queue.lane_rate, queue.lane_burst)
            else:
                value = None if rate == "none" else float(rate)
                queue.set_lane_rate(key, value, int(float(burst)) if burst else 1)

    # ------------------------------------------------------------------
    # Housekeeping

    def _tick(self) -> None:
        """Parked lines ask again; the limits are read if nothing else read
        them lately."""
        for line in [self._global, *self._lines.values()]:
            self._wake(line)
        if self._reactor.seconds() - self._last_read >= self.refresh:
            self._schedule()

    def _renew(self) -> None:
        if not self._held or self._closed:
            if self._renewer.running and not self._held:
                self._renewer.stop()
            return
        members = list(self._held)
        lease_ms = max(1, round(self.lease * 1000))
        d = self.store.script("renew", ["", self.store.worker, lease_ms, *members])

        def lost(gone: list[Any]) -> None:
            for member in gone:
                if str(member) in self._held:
                    del self._held[str(member)]
                    self.stats["lost"] += 1
                    log.warn(
                        "fetchq: shared limits {name!r}: a slot's lease ran out "
                        "under a running job (another may take its place)",
                        name=self.name,
                    )

        d.addCallbacks(
            lost,
            lambda f: log.warn(
                "fetchq: shared limits {name!r}: renewal failed: {why}",
                name=self.name,
                why=str(f.value)[:200],
            ),
        )


def _text(key: Any) -> str:
    return key if isinstance(key, str) else str(key)


def _number(text: str) -> float | None:
    if text == "":
        return None
    value = float(text)
    return int(value) if value.is_integer() else value
