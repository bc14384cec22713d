"""The adaptive controller of a run shared by many workers.

One controller decides for the whole run, fed by every worker:

- **Every worker publishes** what its queue does: each launch and each
  finished attempt (its latency and its signal -- sample, drop, throttle or
  ignore -- classified where the error is known), a few bytes each, sent
  as one entry of the run's ``signals`` stream (a Redis STREAM, capped at
  about 10,000 entries) every ``interval``: one Redis call per worker per
  interval, whatever the number of jobs.
- **One leader decides.**  The workers compete for the run's ``control``
  lease (:meth:`~fetchq.store.redis.RedisStore.lease`); the holder runs the
  :class:`~fetchq.control.AdaptiveController` against :class:`RemoteQueue`,
  a queue-like view of the run whose ``subscribe`` delivers every worker's
  launches and finishes (their times mapped from the Redis server's clock
  to the leader's) and whose ``setWidth``, ``set_rate``,
  ``set_lane_width`` and ``set_lane_rate`` write the run's shared limits.
  Every claim of every worker obeys those at once.
- **Fenced writes.**  Taking the lease bumps its epoch; every write carries
  the holder's name and epoch and Redis refuses it unless both are still
  current, so a leader that stalled past its lease (a pause, a partition)
  can never overwrite its successor's decisions: its first refused write
  makes it step down.
- **Takeover.**  A leader that dies stops renewing; when its lease runs out
  (``lease`` seconds) another worker takes it, reads the limits as they
  stand and goes on from them (a new controller starts with a probe).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from fetchq.control.controller import AdaptiveController
from fetchq.control.signals import Classifier, Signal, classify
from fetchq.events import (
    Event,
    JobFinished,
    JobLaunched,
    Observer,
)
from fetchq.job import Job, Outcome
from fetchq.store.redis import RedisStore, lane_name

__all__ = ["LEADER", "RemoteQueue", "SharedControl", "SignalPublisher"]

log = Logger()

LEADER = "control"
"""The name of the leader's lease in the run."""

_RS, _US = "\x1e", "\x1f"
_MAXLEN = "10000"
_READ = 2000  # stream entries read at once
_CODES = {
    Signal.SAMPLE: "S",
    Signal.DROP: "D",
    Signal.THROTTLE: "T",
    Signal.IGNORE: "I",
}
_SIGNALS = {code: signal for signal, code in _CODES.items()}


class SignalPublisher:
    """Sends a queue's launches and finished attempts to the run's signal
    stream, batched every ``interval`` seconds.

    Args:
        store: the run's store.
        reactor: time.
        interval: seconds between sends.
        classify: turns a finished attempt into a signal (the controller's).
        keys: send each job's lane key (a controller per lane needs them).
    """

    def __init__(
        self,
        store: RedisStore,
        reactor: Any,
        *,
        interval: float = 0.1,
        classify: Classifier = classify,
        keys: bool = False,
    ) -> None:
        self._store = store
        self._reactor = reactor
        self._classify = classify
        self._keys = keys
        self._stream = store.prefix + "signals"
        self._records: list[tuple[str, float, float, Any]] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._loop = task.LoopingCall(self.flush)
        self._loop.clock = reactor
        self.interval = interval
        self.sent = 0
        """Records sent so far."""

    def attach(self, queue: Any) -> None:
        """Start publishing ``queue``'s events."""
        self._unsubscribe = queue.subscribe(self._observe)
        self._loop.start(self.interval, now=False)

    def detach(self) -> Deferred[None]:
        """Stop; fires once what was gathered is sent."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._loop.running:
            self._loop.stop()
        return self.flush()

    def _observe(self, event: Event) -> None:
        kind = event.__class__
        if kind is JobLaunched:
            assert isinstance(event, JobLaunched)
            key = event.job.key if self._keys else None
            self._records.append(("L", event.time, 0.0, key))
        elif kind is JobFinished:
            assert isinstance(event, JobFinished)
            if event.latency is None:
                return  # cancelled before it launched: never counted
            code = _CODES[self._classify(event)]
            key = event.job.key if self._keys else None
            self._records.append((code, event.time, event.latency, key))

    def flush(self) -> Deferred[None]:
        """Send what was gathered (one XADD)."""
        records, self._records = self._records, []
        if not records:
            return defer.succeed(None)
        now = self._reactor.seconds()
        parts = []
        for code, when, latency, key in records:
            age = max(0, round((now - when) * 1000))
            fields = [code, str(age), f"{latency * 1000:.3f}"]
            if key is not None:
                fields.append(key if isinstance(key, str) else str(key))
            parts.append(_US.join(fields))
        self.sent += len(records)
        d = self._store.command(
            "XADD", self._stream, "MAXLEN", "~", _MAXLEN, "*", "r", _RS.join(parts)
        )

        def failed(failure: Any) -> None:
            log.warn(
                "fetchq: could not publish {n} control signals: {why}",
                n=len(records),
                why=str(failure.value)[:200],
            )

        return d.addCallbacks(lambda _: None, failed)


class _Signalled(Exception):
    """What a remote failed attempt carries: its signal."""

    def __init__(self, signal: Signal) -> None:
        super().__init__(signal.value)
        self.signal = signal


class _Failure:
    __slots__ = ("value",)

    def __init__(self, value: BaseException) -> None:
        self.value = value


class _RemoteJob:
    """The little a controller reads of a job another worker ran."""

    __slots__ = ("failure", "key")

    def __init__(self, key: Any, failure: _Failure | None) -> None:
        self.key = key
        self.failure = failure


_FAILURES = {
    code: _Failure(_Signalled(signal))
    for code, signal in _SIGNALS.items()
    if signal is not Signal.SAMPLE
}


class RemoteQueue:
    """The run as a queue, for an
    :class:`~fetchq.control.AdaptiveController` on the leader: events from
    every worker in, the run's shared limits out (fenced).

    Args:
        store: the run's store.
        reactor: the leader's clock.
        epoch: the leader lease's epoch when it was taken.
        limits: the run's limits when it was taken (``store.limits()``).
        local: the leader's own queue, which also hears every decision
            announced (for its summary and report).
        on_fenced: called once when Redis refuses a write (a successor took
            the lease).
    """

    def __init__(
        self,
        store: RedisStore,
        reactor: Any,
        epoch: str,
        limits: dict[str, Any],
        *,
        local: Any = None,
        on_fenced: Callable[[], object] = lambda: None,
    ) -> None:
        self._store = store
        self.clock = reactor
        self.epoch = epoch
        self._local = local
        self._on_fenced = on_fenced
        self._observers: tuple[Observer, ...] = ()
        self._width = int(limits.get("width") or 1)
        self._rate: float | None = limits.get("rate")
        self._lane_width: int | None = limits.get("lane_width")
        self._lane_rate: float | None = limits.get("lane_rate")
        self.writable = True
        self.refused = 0
        """Writes Redis refused (fenced)."""
        self.written = 0

    # -- what the controller reads -----------------------------------------

    @property
    def width(self) -> int:
        return self._width

    @property
    def rate(self) -> float | None:
        return self._rate

    @property
    def lane_width(self) -> int | None:
        return self._lane_width

    @property
    def lane_rate(self) -> float | None:
        return self._lane_rate

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        self._observers = (*self._observers, observer)

        def unsubscribe() -> None:
            self._observers = tuple(o for o in self._observers if o is not observer)

        return unsubscribe

    def announce(self, event: Event) -> None:
        self.deliver(event)
        if self._local is not None:
            self._local.announce(event)

    def deliver(self, event: Event) -> None:
        """Pass ``event`` to the observers (the controller)."""
        for observer in self._observers:
            try:
                observer(event)
            except Exception:
                log.failure("fetchq control observer {o!r} failed", o=observer)

    # -- what the controller sets --------------------------------------------

    def setWidth(self, width: int) -> None:
        self._width = width
        self._write("", "width", str(width))

    def set_rate(self, rate: float | None, burst: int = 1) -> None:
        self._rate = rate
        self._write(
            "", "rate", _text(rate), "burst", "" if rate is None else str(burst)
        )

    def set_lane_width(self, key: Any, width: int | None) -> None:
        if key is None:
            self._lane_width = width
            self._write("", "lane_width", _text(width))
        else:
            self._write(lane_name(_key(key)), "width", _text(width))

    def set_lane_rate(self, key: Any, rate: float | None, burst: int = 1) -> None:
        if key is None:
            self._lane_rate = rate
            self._write(
                "",
                "lane_rate",
                _text(rate),
                "lane_burst",
                "" if rate is None else str(burst),
            )
        else:
            # None on a lane: no limit of its own (back to the default).
            self._write(
                lane_name(_key(key)), "rate", _text(rate), "burst", _text(burst)
            )

    def reset_lane(self, key: Any) -> None:
        self._write(lane_name(_key(key)), "width", "", "rate", "", "burst", "")

    def _write(self, target: str, *pairs: str) -> None:
        if not self.writable:
            return
        args: list[str] = ["", LEADER, self._store.worker, self.epoch]
        for i in range(0, len(pairs), 2):
            args += [target, pairs[i], pairs[i + 1]]
        d = self._store.script("set_limits", args)

        def landed(_: Any) -> None:
            self.written += 1

        def refused(failure: Any) -> None:
            if "FENCED" in str(failure.value):
                self.refused += 1
                if self.writable:
                    self.writable = False
                    self._on_fenced()
            else:
                log.warn(
                    "fetchq: the controller's limits were not written: {why}",
                    why=str(failure.value)[:200],
                )

        d.addCallbacks(landed, refused)


class SharedControl:
    """An adaptive controller for a run on Redis: attach it where an
    :class:`~fetchq.control.AdaptiveController` would be attached (it is a
    :class:`~fetchq.control.Controller`); see the module docstring.

    Args:
        controller: the controller the leader runs (made for the recipe).
        store: the run's store, or a function returning it (a run connects
            when it starts).
        reactor: time.
        lease: seconds a leader holds the lease without renewing it: how
            long a dead leader's run goes without a controller.
    """

    def __init__(
        self,
        controller: AdaptiveController,
        store: RedisStore | Callable[[], RedisStore],
        reactor: Any,
        *,
        lease: float = 5.0,
    ) -> None:
        self.controller = controller
        self._store = store
        self._reactor = reactor
        self.lease = lease
        self._queue: Any = None
        self._publisher: SignalPublisher | None = None
        self._elect = task.LoopingCall(self._campaign)
        self._elect.clock = reactor
        self._read = task.LoopingCall(self._read_signals)
        self._read.clock = reactor
        self._reading = False
        self._cursor = ""
        self._server_offset = 0.0
        self._leading = False
        self._taking = False
        self.remote: RemoteQueue | None = None
        """The run as the leader's controller sees it (while leading)."""
        self.epoch: str | None = None
        self.terms = 0
        """How many times this process became the leader."""

    @property
    def store(self) -> RedisStore:
        store = self._store
        return store if isinstance(store, RedisStore) else store()

    @property
    def leading(self) -> bool:
        """Whether this process's controller decides for the run now."""
        return self._leading

    @property
    def attached(self) -> bool:
        return self._queue is not None

    @property
    def min_width(self) -> int:
        """The controller's range (an admin may change it; the leader's
        controller takes it at its next decision)."""
        return self.controller.min_width

    @min_width.setter
    def min_width(self, width: int) -> None:
        self.controller.min_width = width

    @property
    def max_width(self) -> int:
        return self.controller.max_width

    @max_width.setter
    def max_width(self, width: int) -> None:
        self.controller.max_width = width

    @property
    def name(self) -> str:
        """The algorithm's name."""
        return self.controller.algorithm.name

    def attach(self, queue: Any) -> None:
        """Publish ``queue``'s events and stand for leader."""
        if self._queue is not None:
            raise RuntimeError("this controller is already attached to a queue")
        self._queue = queue
        controller = self.controller
        self._publisher = SignalPublisher(
            self.store,
            self._reactor,
            interval=controller.interval,
            classify=controller.classifier,
            keys=controller.per_lane,
        )
        self._publisher.attach(queue)
        self._elect.start(max(0.05, self.lease / 3), now=True)

    def detach(self) -> None:
        """Stop publishing; a leader stops deciding and hands the lease on
        (the limits stay as last set, for the next leader)."""
        if self._queue is None:
            return
        self._queue = None
        if self._elect.running:
            self._elect.stop()
        if self._publisher is not None:
            self._publisher.detach()
        if self._leading:
            self._step_down()
            dropped = self.store.lease(LEADER, self.lease, "drop")
            dropped.addErrback(self._lease_failed)  # it runs out anyway

    def scopes(self) -> list[Any]:
        """The leader's controller's scopes (none on other workers)."""
        return self.controller.scopes() if self._leading else []

    # -- the lease -------------------------------------------------------------

    def _campaign(self) -> None:
        if self._taking or self._queue is None:
            return
        self._taking = True
        action = "renew" if self._leading else "take"
        d = self.store.lease(LEADER, self.lease, action)
        d.addCallback(self._lease_answer)
        d.addErrback(self._lease_failed)

    def _lease_answer(self, held: bool) -> Any:
        if self._queue is None:
            self._taking = False
            if held and not self._leading:
                return self.store.lease(LEADER, self.lease, "drop")
            return None
        if self._leading and not held:
            log.warn("fetchq: lost the controller's lease; another worker leads")
            self._step_down()
        elif held and not self._leading:
            return defer.Deferred.fromCoroutine(self._take_office())
        self._taking = False
        return None

    def _lease_failed(self, failure: Any) -> None:
        self._taking = False
        log.warn("fetchq: controller lease: {why}", why=str(failure.value)[:200])

    async def _take_office(self) -> None:
        try:
            store = self.store
            epoch = await store.command("GET", store.prefix + f"lease:{LEADER}:epoch")
            limits = await store.limits()
            reply = await store.script("signals", ["", "", "0"])
        finally:
            self._taking = False
        if self._queue is None:
            return
        self._sync_clock(reply)
        self._cursor = str(reply[1])
        self.epoch = str(epoch)
        self.remote = RemoteQueue(
            store,
            self._reactor,
            self.epoch,
            limits,
            local=self._queue,
            on_fenced=self._fenced,
        )
        self._leading = True
        self.terms += 1
        self.controller.attach(cast(Any, self.remote))
        self._read.start(self.controller.interval, now=False)

    def _fenced(self) -> None:
        log.warn("fetchq: the controller's write was refused: another worker leads")
        self._reactor.callLater(0, self._step_down)

    def _step_down(self) -> None:
        if not self._leading:
            return
        self._leading = False
        if self._read.running:
            self._read.stop()
        remote = self.remote
        if remote is not None:
            remote.writable = False  # the limits stay as last set
        self.controller.detach()

    # -- the signals -----------------------------------------------------------------

    def _sync_clock(self, reply: list[Any]) -> None:
        """The leader's clock minus the Redis server's (seconds)."""
        self._server_offset = self._reactor.seconds() - float(reply[0]) / 1000.0

    def _read_signals(self) -> None:
        if self._reading or not self._leading:
            return
        self._reading = True
        d = self.store.script("signals", ["", self._cursor, _READ])

        def got(reply: list[Any]) -> None:
            self._reading = False
            if not self._leading:
                return
            self._sync_clock(reply)
            self._cursor = str(reply[1])
            self._deliver(reply)
            if len(reply) - 2 >= 2 * _READ:
                self._reactor.callLater(0, self._read_signals)

        def failed(failure: Any) -> None:
            self._reading = False
            log.warn(
                "fetchq: reading control signals: {why}", why=str(failure.value)[:200]
            )

        d.addCallbacks(got, failed)

    def _deliver(self, reply: list[Any]) -> None:
        remote = self.remote
        if remote is None:
            return
        offset = self._server_offset
        for i in range(2, len(reply), 2):
            stamp = int(str(reply[i]).split("-", 1)[0])
            for record in str(reply[i + 1]).split(_RS):
                fields = record.split(_US)
                code = fields[0]
                when = (stamp - int(fields[1])) / 1000.0 + offset
                key = fields[3] if len(fields) > 3 else None
                if code == "L":
                    job = _RemoteJob(key, None)
                    remote.deliver(JobLaunched(cast(Job, job), when))
                    continue
                latency = float(fields[2]) / 1000.0
                failure = _FAILURES.get(code)
                outcome = Outcome.OK if failure is None else Outcome.FAILED
                job = _RemoteJob(key, failure)
                remote.deliver(JobFinished(cast(Job, job), outcome, latency, when))


def _text(value: float | int | None) -> str:
    if value is None:
        return ""
    return repr(value)


def _key(key: Any) -> str:
    return key if isinstance(key, str) else str(key)
