"""A token bucket: ``rate`` launches per second with bursts of up to ``burst``.

Times are plain floats from the queue's injected clock, so the bucket is
deterministic under :class:`twisted.internet.task.Clock`.
"""

from __future__ import annotations

import math

__all__ = ["TokenBucket", "check_rate", "reconfigure"]

# Tolerance for float rounding: a token due "now" must count as available, or
# a timer set for the exact refill moment would find 0.9999999 tokens and spin.
EPSILON = 1e-9


def check_rate(rate: float | None, burst: int) -> None:
    """Raise ``ValueError`` unless ``rate`` is None or a positive finite number
    and ``burst`` a positive integer."""
    if rate is not None and (
        isinstance(rate, bool)
        or not isinstance(rate, (int, float))
        or not math.isfinite(rate)
        or rate <= 0
    ):
        raise ValueError(
            f"rate must be a positive number of launches per second or None, "
            f"not {rate!r}"
        )
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ValueError(f"burst must be an integer >= 1, not {burst!r}")


class TokenBucket:
    """Tokens accrue at ``rate`` per second up to ``burst``; each launch takes
    one.  The bucket starts full.

    Args:
        rate: tokens per second (> 0).
        burst: most tokens held at once (>= 1).
        now: the clock time the bucket starts at.
    """

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        check_rate(rate, burst)
        self.rate = float(rate)
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def ready(self, now: float) -> bool:
        """True if a token is available at ``now`` (without taking it)."""
        self._refill(now)
        return self.tokens >= 1.0 - EPSILON

    def take(self) -> None:
        """Take one token; call only after :meth:`ready` said True."""
        self.tokens -= 1.0

    def wait(self, now: float) -> float:
        """Seconds from ``now`` until a token is available (0 if one is)."""
        self._refill(now)
        return max(0.0, (1.0 - self.tokens) / self.rate)

    def full_in(self, now: float) -> float:
        """Seconds from ``now`` until the bucket is full again (0 if it is)."""
        self._refill(now)
        return max(0.0, (self.burst - self.tokens) / self.rate)

    def configure(self, rate: float, burst: int, now: float) -> None:
        """Change rate and burst from ``now`` on; tokens already earned at the
        old rate are kept (up to the new burst)."""
        check_rate(rate, burst)
        self._refill(now)
        self.rate = float(rate)
        self.burst = burst
        self.tokens = min(self.tokens, float(burst))


def reconfigure(
    bucket: TokenBucket | None, rate: float | None, burst: int, now: float
) -> TokenBucket | None:
    """The bucket for a new ``rate`` (None: no bucket): a fresh full one if
    there was none, else the old one with its earned tokens kept."""
    if rate is None:
        return None
    if bucket is None:
        return TokenBucket(rate, burst, now)
    bucket.configure(rate, burst, now)
    return bucket
