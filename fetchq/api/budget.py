"""An endpoint's quota budget: what the caller may still send before the
reset.

The :class:`~fetchq.api.ApiCaller` asks its budget before every request and
tells it every answer; the budget says go, wait, or "spent until then", and
holds the endpoint's lane through the caller while it must.  The rules are
in :mod:`fetchq.api.caller`'s docstring: ``remaining - in_flight`` within a
window, the lowest announced count winning, a new window unknown until its
first answer (one probe goes first), and waiting for answers rather than
guessing while only an answer can tell.

:class:`LocalBudget` keeps them in memory, for one process.
:class:`fetchq.shared.quota.RedisBudget` keeps the same numbers in Redis,
updated by scripts on the server's clock, so every worker of a run spends
one budget: three workers against a quota of 15 requests together send 15,
not 45.  Both implement :class:`QuotaBudget`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred

from fetchq.api.config import ApiConfig
from fetchq.api.ratelimit import Quota

__all__ = ["Admission", "Budget", "Hold", "LocalBudget", "QuotaBudget"]

SAME_WINDOW = 1.0  # resets this close belong to one window (delta resets jitter)
SLACK = 1e-6  # float error between a hold's end and the reset it came from
# Holding for an answer, a step is a quarter of the latest answer's time
# (so the lane opens at most that late after the answer), within these.
STEPS = (0.005, 0.5)
FIRST_STEP = 0.01  # before any answer

Hold = Callable[[float, bool], object]
"""How a budget holds its endpoint's lane: ``hold(seconds, ahead)``
(``ahead``: before any refusal, because the budget is spent)."""


@attrs.frozen
class Budget:
    """A snapshot of what the caller knows of its endpoint's quota.

    Attributes:
        limit: the announced limit, or None.
        remaining: requests left as last announced (lowest in the window),
            or None when unknown (nothing announced, or a new window that
            no answer has spoken for yet).
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
        go: send now; the request counts in flight until
            :meth:`QuotaBudget.answered` or :meth:`QuotaBudget.abandoned`.
        ticket: what to give back with the answer (when ``go``).
        wait: not yet: only an answer on its way can tell; ask again after
            :meth:`QuotaBudget.until_answer`.
        delay: when neither: the budget is surely spent for this many
            seconds.
    """

    go: bool
    ticket: Any = None
    wait: bool = False
    delay: float = 0.0


class QuotaBudget(Protocol):
    """What the caller needs of a budget (``admit`` may return a Deferred)."""

    def bind(self, hold: Hold) -> None:
        """How to hold the endpoint's lane (the caller's, once bound to a
        queue)."""
        ...

    def admit(self, now: float) -> Admission | Deferred[Admission]:
        """May a request go now?  A ``go`` counts it in flight."""
        ...

    def until_answer(self) -> Deferred[None]:
        """Fires when it is worth asking again after a ``wait``."""
        ...

    def sent(self, ticket: Any, now: float) -> None:
        """The admitted request went out."""
        ...

    def answered(
        self,
        ticket: Any,
        status: int,
        quota: Quota | None,
        throttle: tuple[float, str] | None,
        latency: float,
        now: float,
    ) -> Deferred[None] | None:
        """Its answer came: the status, the quota it announced, and
        ``(delay, basis)`` if it refused us for our rate.  (A shared budget
        returns a Deferred that fires once the answer is recorded.)"""
        ...

    def abandoned(self, ticket: Any, now: float) -> None:
        """It got no answer (a timeout, a lost connection)."""
        ...

    def snapshot(self) -> Budget:
        """What the budget knows now (a shared one: as last seen)."""
        ...

    def close(self) -> None:
        """Stop any timer."""
        ...


def _no_hold(seconds: float, ahead: bool) -> None:
    return None


class LocalBudget:
    """An endpoint's budget in this process's memory.

    Args:
        config: the endpoint's configuration (its margins and defaults).
        clock: an ``IReactorTime``.
    """

    def __init__(self, config: ApiConfig, clock: Any) -> None:
        self._config = config
        self._clock = clock
        self._hold: Hold = _no_hold
        self._bound = False
        self._limit: int | None = None
        self._remaining: int | None = None
        self._reset_at: float | None = None
        self._guessed = False  # the reset is default_retry_after's guess
        # With a known window length: the window's end at the latest (its
        # first answer plus the length), which may come before the reset.
        self._ends_by: float | None = None
        # The announced reset of the window that ended last, when it ended by
        # its length before that reset: its late answers still say so.
        self._ended: float | None = None
        self._in_flight = 0
        self._probing = True  # the window's budget is unknown: one at a time
        self._waiters: list[Deferred[None]] = []
        self._step_length = FIRST_STEP
        self._stepper: Any = None  # the DelayedCall renewing a step's hold

    def bind(self, hold: Hold) -> None:
        self._hold = hold
        self._bound = True

    def snapshot(self) -> Budget:
        return Budget(self._limit, self._remaining, self._due(), self._in_flight)

    def _due(self) -> float | None:
        """When the window ends: the reset, or sooner by its known length."""
        reset, ends_by = self._reset_at, self._ends_by
        if ends_by is None or (reset is not None and reset <= ends_by):
            return reset
        return ends_by

    def close(self) -> None:
        self._stop_stepping()

    def admit(self, now: float) -> Admission:
        self._roll(now)
        if self._unsure():
            return Admission(False, wait=True)
        if self._spent():
            return Admission(False, delay=self._wait(now))
        self._in_flight += 1
        return Admission(True)

    def until_answer(self) -> Deferred[None]:
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def sent(self, ticket: Any, now: float) -> None:
        self._gate(now)

    def answered(
        self,
        ticket: Any,
        status: int,
        quota: Quota | None,
        throttle: tuple[float, str] | None,
        latency: float,
        now: float,
    ) -> None:
        """One fewer in flight; learn the quota; hold the lane if the answer
        refused us; shut or open it for what is known now; then wake the
        launches waiting for an answer."""
        self._in_flight -= 1
        self._step_length = min(max(latency / 4, STEPS[0]), STEPS[1])
        if quota is not None:
            if self._learn(quota, now):
                self._probing = False
        elif (self._limit is None and self._remaining is None) or 200 <= status < 300:
            # No quota announced: an endpoint that never announces one, or
            # one that announces it only when it refuses.  (An error page
            # without the headers from an endpoint that has them says
            # nothing of the window: the probe goes on.)
            self._probing = False
        if throttle is not None:
            delay, _basis = throttle
            self._remaining = 0
            self._reset_at = now + delay - self._config.reset_margin  # its word
            self._guessed = False
            self._ends_by = None
            self._hold(delay, False)
        self._gate(now)
        self._wake()

    def abandoned(self, ticket: Any, now: float) -> None:
        self._in_flight -= 1
        self._gate(now)
        self._wake()

    def _spent(self) -> bool:
        return self._remaining is not None and self._remaining - self._in_flight <= 0

    def _unsure(self) -> bool:
        """Whether an answer still to come decides if a request may go: the
        probe's, or those of requests in flight that the server may or may
        not have counted in the ``remaining`` it announced."""
        if not self._in_flight:
            return False
        if self._probing:
            return True
        return self._remaining is not None and 0 < self._remaining <= self._in_flight

    def _gate(self, now: float) -> None:
        """Shut or open the endpoint's lane for what is known now: held in
        steps while an answer is awaited (:meth:`_unsure`; each step is
        renewed halfway through until then), until the reset once the budget
        is surely spent, else open."""
        if self._unsure():
            if self._bound:
                step = self._step_length
                self._hold(step, False)
                if self._stepper is None:
                    self._stepper = self._clock.callLater(step / 2, self._step)
            return
        self._stop_stepping()
        if self._spent():
            self._hold(self._wait(now), True)

    def _step(self) -> None:
        """Renew the hold of a step, if the answer has not come."""
        self._stepper = None
        self._gate(self._clock.seconds())

    def _stop_stepping(self) -> None:
        stepper, self._stepper = self._stepper, None
        if stepper is not None and stepper.active():
            stepper.cancel()

    def _wait(self, now: float) -> float:
        """Seconds until the spent budget comes back: the reset plus the
        margin.  With no announced reset, one ``default_retry_after`` away is
        assumed, so the budget does come back."""
        config = self._config
        if self._reset_at is None and self._ends_by is None:
            self._reset_at = now + config.default_retry_after - config.reset_margin
            self._guessed = True
        due = self._due()
        assert due is not None
        delay = max(0.0, due + config.reset_margin - now)
        return min(delay, config.max_retry_after)

    def _roll(self, now: float) -> None:
        """Past the reset (and margin): a new window, its budget unknown
        until its first answer (a probe goes first)."""
        due = self._due()
        if due is not None and now + SLACK >= due + self._config.reset_margin:
            # Ended by its length before the reset it announced: its answers
            # still on their way say that reset.
            early = not self._guessed and due != self._reset_at
            self._ended = self._reset_at if early else None
            self._remaining = None
            self._reset_at = None
            self._ends_by = None
            self._guessed = False
            self._probing = True

    def _learn(self, quota: Quota, now: float) -> bool:
        """Fold an announced quota into the budget; False if it was about a
        window that is over."""
        if quota.limit is not None:
            self._limit = quota.limit
        new_reset = quota.reset_at
        if (
            new_reset is not None
            and new_reset + self._config.reset_margin <= now + SLACK
        ):
            return False  # a window that is over says nothing about this one
        self._roll(now)
        ended = self._ended
        if (
            new_reset is not None
            and ended is not None
            and new_reset <= ended + SAME_WINDOW
        ):
            return False  # a late answer of the window that ended by its length
        old_reset = self._reset_at
        if (
            self._remaining is None
            or old_reset is None
            or new_reset is None
            or self._guessed  # an announced reset beats our guess
        ):
            self._remaining, self._reset_at = quota.remaining, new_reset
            self._guessed = False
            self._answered_in_window(now)
        elif new_reset < old_reset - SAME_WINDOW:
            return False  # a late answer from an earlier window
        elif new_reset > old_reset + SAME_WINDOW:
            self._remaining, self._reset_at = quota.remaining, new_reset
            self._ends_by = None  # a new window
            self._answered_in_window(now)
        else:  # the same window: the lowest count is the latest
            self._remaining = min(self._remaining, quota.remaining)
            self._reset_at = max(old_reset, new_reset)
            self._answered_in_window(now)
        return True

    def _answered_in_window(self, now: float) -> None:
        """An answer of the window came at ``now``: the window began before
        it, so with a known length it ends by ``now + window`` (the first
        answer's bound is the tightest)."""
        window = self._config.window
        if window is not None:
            bound = now + window
            if self._ends_by is None or bound < self._ends_by:
                self._ends_by = bound

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.called:
                waiter.callback(None)
