"""An API endpoint's quota budget shared by every worker of a run.

:class:`RedisBudget` is a :class:`~fetchq.api.budget.QuotaBudget` kept in
Redis, next to the run (``{fetchq:RUN}:quota:ENDPOINT``): the same rules as
:class:`~fetchq.api.budget.LocalBudget` -- ``remaining - in_flight``, the
lowest announced count of a window winning, a new window unknown until its
first answer (one probe goes first, for every worker), waiting for answers
while only they can tell -- applied by one Lua script on the server's clock,
so that every worker's requests in flight count against the one budget and
a spent budget is spent for all of them.

- An announced reset is turned into a delay on the worker that read it
  (epoch times are the API server's clock) and into a server time in Redis,
  so workers' clocks never mix.
- A request in flight is a ticket with a deadline (``lease``): a worker
  killed mid-request stops counting once its tickets' deadlines pass.
- A worker waiting for an answer (someone else's probe) asks again every
  ``poll`` seconds, or at once when an answer comes here.  (The local
  budget also holds the lane in short steps meanwhile; a shared one lets
  the launches wait.)

A :class:`~fetchq.shared_run.SharedRun` of an ``api`` recipe uses it by
itself; with a queue of your own::

    caller.use_budget(RedisBudget(store, caller.config, reactor))
"""

from __future__ import annotations

import itertools
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from fetchq.api.budget import Admission, Budget, Hold
from fetchq.api.config import ApiConfig
from fetchq.api.ratelimit import Quota
from fetchq.store.redis import RedisStore

__all__ = ["RedisBudget"]

log = Logger()


class RedisBudget:
    """An endpoint's budget in Redis, shared by every worker (see the
    module).

    Args:
        store: the run's store.
        config: the endpoint's configuration (its margins and defaults).
        reactor: time.
        lease: seconds a request counts in flight without an answer
            (default: the config's connect and headers timeouts plus 5 s).
        poll: seconds between asks while another worker's probe is out.
    """

    def __init__(
        self,
        store: RedisStore,
        config: ApiConfig,
        reactor: Any,
        *,
        lease: float | None = None,
        poll: float = 0.05,
    ) -> None:
        self._store = store
        self._config = config
        self._reactor = reactor
        if lease is None:  # an answer comes by then, or the call fails
            lease = config.connect_timeout + config.headers_timeout + 5.0
        self.lease = lease
        self.poll = poll
        self._tickets = itertools.count(1)
        self._waiters: list[Deferred[None]] = []
        self._hold: Hold = lambda seconds, ahead: None
        self._closed = False
        self._seen = Budget(None, None, None, 0)
        self._backoff = 0.0
        self.errors = 0
        """Redis calls that failed (each waited out and tried again)."""

    def _args(self, action: str, ticket: str) -> list[Any]:
        config = self._config
        return [
            "",
            action,
            config.endpoint,
            _ms(config.reset_margin),
            _ms(config.default_retry_after),
            _ms(config.max_retry_after),
            "" if config.window is None else _ms(config.window),
            ticket,
        ]

    def _note(self, reply: list[Any], at: int) -> None:
        """The budget as the script's reply ends with it."""
        limit, remaining, reset, in_flight = reply[at : at + 4]
        now = self._reactor.seconds()
        self._seen = Budget(
            None if limit in ("", None) else int(float(limit)),
            None if remaining in ("", None) else int(float(remaining)),
            None if reset in ("", None) else now + int(reset) / 1000.0,
            int(in_flight),
        )

    def bind(self, hold: Hold) -> None:
        self._hold = hold

    def snapshot(self) -> Budget:
        return self._seen

    def close(self) -> None:
        self._closed = True
        self._wake()

    def sent(self, ticket: Any, now: float) -> None:
        pass

    def admit(self, now: float) -> Deferred[Admission]:
        ticket = f"{self._store.worker}:{next(self._tickets)}"
        args = [*self._args("take", ticket), _ms(self.lease)]
        d = self._store.script("quota", args)

        def answer(reply: list[Any]) -> Admission:
            self._backoff = 0.0
            self._note(reply, 2)
            code, ms = str(reply[0]), int(reply[1])
            if code == "go":
                return Admission(True, ticket)
            if code == "wait":
                return Admission(False, wait=True)
            return Admission(False, delay=ms / 1000.0)

        def failed(failure: Any) -> Admission:
            # Redis unreachable: nothing goes out until it is back.
            self.errors += 1
            self._backoff = min(5.0, max(self.poll, 2 * self._backoff))
            log.warn(
                "fetchq: shared quota of {endpoint}: {why}; waiting",
                endpoint=self._config.endpoint,
                why=str(failure.value)[:200],
            )
            return Admission(False, wait=True)

        return d.addCallbacks(answer, failed)

    def until_answer(self) -> Deferred[None]:
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        delay = max(self.poll, self._backoff)
        self._reactor.callLater(delay, self._wake_one, waiter)
        return waiter

    def _wake_one(self, waiter: Deferred[None]) -> None:
        if not waiter.called:
            self._waiters.remove(waiter)
            waiter.callback(None)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.called:
                waiter.callback(None)

    def answered(
        self,
        ticket: Any,
        status: int,
        quota: Quota | None,
        throttle: tuple[float, str] | None,
        latency: float,
        now: float,
    ) -> Deferred[None]:
        fields = [str(status), "", "", "", ""]
        if quota is not None:
            fields[1] = "" if quota.limit is None else str(quota.limit)
            fields[2] = str(quota.remaining)
            if quota.reset_at is not None:
                fields[3] = str(_ms(quota.reset_at - now))
        if throttle is not None:
            fields[4] = str(_ms(throttle[0]))
            self._hold(throttle[0], False)  # at once: the refusal is known here
        d = self._store.script("quota", [*self._args("answer", str(ticket)), *fields])
        return d.addCallbacks(self._gate, self._failed)

    def _gate(self, reply: list[Any]) -> None:
        """Hold the lane ahead if the budget is now surely spent; wake the
        launches waiting here for an answer."""
        self._note(reply, 1)
        ms = int(reply[0])
        if ms >= 0 and not self._closed:
            self._hold(ms / 1000.0, True)
        self._wake()

    def _failed(self, failure: Any) -> None:
        self.errors += 1
        log.warn(
            "fetchq: shared quota of {endpoint}: an answer was not recorded "
            "({why}); its ticket runs out by itself",
            endpoint=self._config.endpoint,
            why=str(failure.value)[:200],
        )
        self._wake()

    def abandoned(self, ticket: Any, now: float) -> None:
        d = self._store.script("quota", self._args("forget", str(ticket)))
        d.addCallbacks(self._gate, self._failed)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
