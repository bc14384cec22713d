"""How busy the client is: its event loop's lag and its share of a core.

A controller reads latency to judge the server, but the latency a client
measures includes the time an answer waits for the client's own event loop.
On a busy client (a saturated core, a CPU-heavy job, other processes on a
small machine) that wait grows although the server is no slower, and a
delay-based controller would read it as congestion and shrink.  So the
controller also measures the client:

- **lag**: how late its own timer fires.  A timer due while the loop is
  busy waits for the work ahead of it, as an arriving answer does, so the
  lag is what the client adds to each latency; the controller subtracts a
  window's median lag from its latency (and a probe's from the baseline).
- **CPU share**: the event loop's thread's CPU time over wall time (a
  loop using a whole core is the bottleneck), for the summary
  ("client-bound at 97% CPU"); only measured when the clock runs at wall
  speed (on a simulated clock it would mean nothing).  The loop's thread,
  not the process: another thread computing beside it (a parser in a
  thread pool) takes CPU the loop does not need, and the loop waits for
  it only as far as its lag shows.

:class:`ProcessLoad` is the real thing; a simulated client
(:class:`~fetchq.control.models.ClientCPU`) answers the same
:class:`ClientLoad` protocol from its model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import attrs

__all__ = ["ClientLoad", "LoadReading", "ProcessLoad"]


@attrs.frozen
class LoadReading:
    """One reading of the client's load.

    Attributes:
        lag: seconds the timer fired after it was due (>= 0).
        cpu: the loop's share of one core since the previous reading
            (1.0 = a whole core), or None where it cannot be measured.
    """

    lag: float
    cpu: float | None


class ClientLoad(Protocol):
    """Measures the client's load at each of the controller's timer ticks."""

    def read(self, due: float, now: float) -> LoadReading:
        """A reading for a timer that was due at ``due`` and fired at ``now``
        (both on the controller's clock)."""
        ...


class ProcessLoad:
    """This process's load: the timer's lateness on the controller's clock,
    and the loop's CPU time (``cpu_time``) over wall time (``wall_time``).

    Both are only measured while the controller's clock advances with the
    wall clock (within 25% since the previous reading): under a
    ``task.Clock`` a timer "fires late" whenever a test advances time in
    large steps, and the CPU share would mean nothing, so the reading is
    then a lag of 0 and no CPU share (as it is for the first reading).

    Args:
        cpu_time: the CPU seconds of the thread that reads (the event
            loop's: ``time.thread_time``).
        wall_time: a monotonic wall clock (``time.monotonic``).
    """

    def __init__(
        self,
        cpu_time: Callable[[], float] = time.thread_time,
        wall_time: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cpu_time = cpu_time
        self._wall_time = wall_time
        self._last: tuple[float, float, float] | None = None

    def read(self, due: float, now: float) -> LoadReading:
        cpu_now, wall_now = self._cpu_time(), self._wall_time()
        last = self._last
        self._last = (now, cpu_now, wall_now)
        if last is None:
            return LoadReading(0.0, None)
        clock, cpu, wall = now - last[0], cpu_now - last[1], wall_now - last[2]
        if not (wall > 0 and abs(clock - wall) <= 0.25 * wall):
            return LoadReading(0.0, None)
        return LoadReading(max(0.0, now - due), max(0.0, cpu / wall))
