"""An endpoint's quota budget: what the caller may still send before the
reset.

The :class:`~fetchq.api.ApiCaller` asks its budget before every request and
tells it every answer; the budget says go, wait, or "spent until then".
The rules are in :mod:`fetchq.api.caller`'s docstring: ``remaining -
in_flight`` within a window, the lowest announced count winning, a fresh
window of ``limit`` at the reset plus the margin, one probe before the
first answer.

:class:`LocalBudget` keeps them in memory, for one process.
:class:`fetchq.shared.quota.RedisBudget` keeps the same numbers in Redis,
updated by scripts on the server's clock, so every worker of a run spends
one budget: three workers against a quota of 15 requests together send 15,
not 45.  Both implement :class:`QuotaBudget`.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred

from fetchq.api.config import ApiConfig
from fetchq.api.ratelimit import Quota

__all__ = ["Admission", "Budget", "LocalBudget", "QuotaBudget"]

SAME_WINDOW = 1.0  # resets this close belong to one window (delta resets jitter)
SLACK = 1e-6  # float error between a hold's end and the reset it came from


@attrs.frozen
class Budget:
    """A snapshot of what the caller knows of its endpoint's quota.

    Attributes:
        limit: the announced limit, or None.
        remaining: requests left as last announced (lowest in the window),
            or None when unknown (nothing announced, or a new window whose
            limit is unknown).
        reset_at: clock time of the reset, or None.
        in_flight: requests sent and not yet answered.
    """

    limit: int | None
    remaining: int | None
    reset_at: float | None
    in_flight: int

    @property
    def available(self) -> int | None:
        """``remaining - in_flight`` (None when unknown)."""
        return None if self.remaining is None else self.remaining - self.in_flight


@attrs.frozen
class Admission:
    """A budget's answer to "may I send?".

    Attributes:
        go: send now; the request is counted in flight until
            :meth:`QuotaBudget.answered` or :meth:`QuotaBudget.abandoned`.
        ticket: what to give back with the answer (when ``go``).
        ahead: when ``go``: this request spends the budget, so hold the
            lane for this many seconds (until the reset and margin).
        wait: not yet: no answer has come since the budget was last
            unknown; ask again after :meth:`QuotaBudget.until_answer`.
        delay: when neither: the budget is spent for this many seconds.
    """

    go: bool
    ticket: Any = None
    ahead: float | None = None
    wait: bool = False
    delay: float = 0.0


class QuotaBudget(Protocol):
    """What the caller needs of a budget (results may be Deferreds)."""

    def admit(self, now: float) -> Admission | Deferred[Admission]:
        """May a request go now?  A ``go`` counts it in flight."""
        ...

    def until_answer(self) -> Deferred[None]:
        """Fires when it is worth asking again after a ``wait``."""
        ...

    def answered(
        self,
        ticket: Any,
        quota: Quota | None,
        throttle: tuple[float, str] | None,
        now: float,
    ) -> float | Deferred[float | None] | None:
        """An answer came (its announced quota; ``(delay, basis)`` if it
        refused us).  Returns seconds to hold the lane ahead if the budget
        is now spent (not after a refusal: the caller holds for that)."""
        ...

    def abandoned(self, ticket: Any) -> None:
        """A request sent got no answer (a timeout, a lost connection)."""
        ...

    def snapshot(self) -> Budget:
        """What the budget knows now (for a shared one: as last seen)."""
        ...


class LocalBudget:
    """An endpoint's budget in this process's memory.

    Args:
        config: the endpoint's configuration (its margins and defaults).
    """

    def __init__(self, config: ApiConfig) -> None:
        self._config = config
        self._limit: int | None = None
        self._remaining: int | None = None
        self._reset_at: float | None = None
        self._in_flight = 0
        self._answered = False
        self._guessed = False  # the reset is default_retry_after's guess
        self._waiters: list[Deferred[None]] = []

    def snapshot(self) -> Budget:
        return Budget(self._limit, self._remaining, self._reset_at, self._in_flight)

    def admit(self, now: float) -> Admission:
        self._roll(now)
        if not self._answered and self._in_flight:
            return Admission(False, wait=True)
        if self._spent():
            if self._reset_at is None and self._in_flight:
                # Spent before any answer of this window said when it
                # resets: the answers on their way will.
                return Admission(False, wait=True)
            return Admission(False, delay=self._wait(now))
        self._in_flight += 1
        return Admission(True, ahead=self._ahead(now))

    def until_answer(self) -> Deferred[None]:
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def answered(
        self,
        ticket: Any,
        quota: Quota | None,
        throttle: tuple[float, str] | None,
        now: float,
    ) -> float | None:
        self._in_flight -= 1
        self._answered = True
        if quota is not None:
            self._learn(quota, now)
        ahead = None
        if throttle is not None:
            delay, basis = throttle
            self._remaining = 0
            self._reset_at = now + delay - self._config.reset_margin  # its word
            self._guessed = False
            if basis == "default":
                # The server refused without saying for how long: after the
                # hold, one request goes first again (a probe), not a burst.
                self._answered = False
        else:
            ahead = self._ahead(now)
        self._wake()
        return ahead

    def abandoned(self, ticket: Any) -> None:
        self._in_flight -= 1
        self._wake()

    def _spent(self) -> bool:
        return self._remaining is not None and self._remaining - self._in_flight <= 0

    def _ahead(self, now: float) -> float | None:
        """The hold for a budget just spent: until the reset and margin;
        None if not spent, or if the reset is unknown while answers are on
        their way (the one that tells it holds the lane)."""
        if not self._spent() or (self._reset_at is None and self._in_flight):
            return None
        return self._wait(now)

    def _wait(self, now: float) -> float:
        """Seconds until the spent budget comes back: the reset plus the
        margin.  With no announced reset, one ``default_retry_after`` away is
        assumed, so the budget does come back."""
        config = self._config
        if self._reset_at is None:
            self._reset_at = now + config.default_retry_after - config.reset_margin
            self._guessed = True
        delay = max(0.0, self._reset_at + config.reset_margin - now)
        return min(delay, config.max_retry_after)

    def _roll(self, now: float) -> None:
        """Past the reset (and margin): a fresh window of ``limit`` requests."""
        reset = self._reset_at
        if reset is not None and now + SLACK >= reset + self._config.reset_margin:
            self._remaining = self._limit
            self._reset_at = None
            self._guessed = False

    def _learn(self, quota: Quota, now: float) -> None:
        """Fold an announced quota into the budget."""
        if quota.limit is not None:
            self._limit = quota.limit
        new_reset = quota.reset_at
        if (
            new_reset is not None
            and new_reset + self._config.reset_margin <= now + SLACK
        ):
            return  # a window that is over says nothing about this one
        self._roll(now)
        old_reset = self._reset_at
        if (
            self._remaining is None
            or old_reset is None
            or new_reset is None
            or self._guessed  # an announced reset beats our guess
        ):
            self._remaining, self._reset_at = quota.remaining, new_reset
            self._guessed = False
        elif new_reset < old_reset - SAME_WINDOW:
            return  # a late answer from an earlier window
        elif new_reset > old_reset + SAME_WINDOW:
            self._remaining, self._reset_at = quota.remaining, new_reset
        else:  # the same window: the lowest count is the latest
            self._remaining = min(self._remaining, quota.remaining)
            self._reset_at = max(old_reset, new_reset)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.called:
                waiter.callback(None)
