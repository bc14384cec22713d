"""Retry policy: how many attempts, which failures retry, and how long to wait.

Backoff is exponential with *full jitter* (a uniform draw between 0 and
``min(max_delay, base_delay * 2 ** (attempt - 1))``), which spreads retries of
many jobs that failed together instead of bunching them.  A job function can
also ask for a specific delay by raising :class:`~fetchq.errors.RetryAfter`
(or :class:`~fetchq.errors.Throttled`); that is always retryable, within
``max_attempts``.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs
from twisted.python.failure import Failure

from fetchq._validate import integer_at_least, non_negative_number
from fetchq.errors import RetryAfter

__all__ = ["DEFAULT_RETRY", "RetryPolicy"]


@attrs.frozen
class RetryPolicy:
    """When and how a failed job is tried again.

    Args:
        max_attempts: most calls of the function for one job (1 = no retries).
        base_delay: backoff before the second attempt, before jitter (seconds).
        max_delay: the backoff cap (seconds).
        retry_on: exception types that make an attempt retryable.
        retry_if: alternatively, a predicate on the ``Failure``.

    With neither ``retry_on`` nor ``retry_if``, only ``RetryAfter`` retries,
    so a plain failure fails at once, as in txrdq.
    """

    max_attempts: int = attrs.field(default=5, validator=integer_at_least(1))
    base_delay: float = attrs.field(default=1.0, validator=non_negative_number)
    max_delay: float = attrs.field(default=300.0, validator=non_negative_number)
    retry_on: tuple[type[BaseException], ...] = ()
    retry_if: Callable[[Failure], bool] | None = None

    def is_retryable(self, failure: Failure) -> bool:
        """Whether this failure, by itself, calls for another attempt."""
        if isinstance(failure.value, RetryAfter):
            return True
        if self.retry_on and failure.check(*self.retry_on) is not None:  # type: ignore[no-untyped-call]
            return True
        return self.retry_if is not None and bool(self.retry_if(failure))

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """The delay after failed attempt number ``attempt`` (from 1)."""
        exponent = min(max(attempt - 1, 0), 62)
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * 2.0**exponent))

    def delay_for(
        self, failure: Failure, attempts: int, rng: random.Random
    ) -> float | None:
        """Seconds to wait before the next attempt, or None to fail for good.

        Args:
            failure: how the latest attempt failed.
            attempts: attempts made so far, the latest included.
            rng: the source of jitter.
        """
        if attempts >= self.max_attempts or not self.is_retryable(failure):
            return None
        if isinstance(failure.value, RetryAfter):
            return failure.value.delay
        return self.backoff(attempts, rng)


DEFAULT_RETRY = RetryPolicy()
"""Up to 5 attempts, but only ``RetryAfter``/``Throttled`` retry by default."""
