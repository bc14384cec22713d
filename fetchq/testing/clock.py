"""Driving a ``task.Clock`` and a ``treq.testing.StubTreq`` together.

A fake on a ``task.Clock`` writes its answer when the clock reaches the
answer's time; the answer reaches the client only when the stub is flushed.
These helpers advance the clock one scheduled call at a time and flush after
each, so every answer arrives at its own simulated time.
"""

from __future__ import annotations

from typing import Any

__all__ = ["advance_and_flush", "run_until_idle"]


def run_until_idle(
    clock: Any, stub: Any, until: float | None = None, max_steps: int = 10_000_000
) -> float:
    """Run ``clock`` call by call, flushing ``stub`` after each, until nothing
    is scheduled (or the next call is after ``until``, when the clock is moved
    to ``until``).

    Returns:
        The clock's time at the end.

    Raises:
        RuntimeError: after ``max_steps`` calls (something re-arms forever).
    """
    stub.flush()
    for _ in range(max_steps):
        calls = clock.getDelayedCalls()
        when = min((call.getTime() for call in calls), default=None)
        if when is None or (until is not None and when > until):
            if until is not None and clock.seconds() < until:
                clock.advance(until - clock.seconds())
                stub.flush()
            return float(clock.seconds())
        clock.advance(max(0.0, when - clock.seconds()))
        stub.flush()
    raise RuntimeError(f"still busy after {max_steps} scheduled calls")


def advance_and_flush(clock: Any, stub: Any, seconds: float) -> None:
    """Run ``clock`` forward ``seconds``, each scheduled call at its own time,
    flushing ``stub`` after each."""
    if not seconds >= 0:
        raise ValueError(f"seconds must be >= 0, not {seconds!r}")
    run_until_idle(clock, stub, clock.seconds() + seconds)
