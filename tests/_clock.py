"""Clock helpers shared by the tests."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock


def advance_to(clock: Clock, when: float) -> None:
    """Run ``clock`` up to ``when``, firing every call at its own scheduled time
    (so a launch made by a timer is recorded at the time the timer was set for,
    not at the end of one big ``advance``)."""
    while True:
        due = [c.getTime() for c in clock.getDelayedCalls() if c.getTime() <= when]
        if not due:
            break
        clock.rightNow = max(clock.rightNow, min(due))
        clock.advance(0)
    clock.rightNow = max(clock.rightNow, when)
    clock.advance(0)


class SpinningError(Exception):
    """A timer kept re-arming itself."""


class GuardedClock(Clock):
    """A Clock that counts ``callLater`` calls and raises once there are
    absurdly many (``limit``), so a timer that re-arms itself forever fails
    the test instead of hanging it."""

    limit = 10_000

    def __init__(self) -> None:
        super().__init__()
        self.scheduled = 0

    def callLater(self, delay: float, f: Any, *args: Any, **kw: Any) -> Any:
        self.scheduled += 1
        if self.scheduled > self.limit:
            raise SpinningError(f"{self.scheduled} calls scheduled")
        return super().callLater(delay, f, *args, **kw)
