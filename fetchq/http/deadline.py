"""The deadline of a whole request: one timer over every phase of it.

Each HTTP adapter bounds the phases of a request on its own (connecting, the
response headers, the body); a recipe's ``timeout`` bounds the whole of one
attempt as well.  :func:`deadline` is that bound, the same for every kind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

__all__ = ["deadline"]

T = TypeVar("T")


def deadline(
    d: Deferred[T],
    seconds: float | None,
    clock: Any,
    error: Callable[[], BaseException],
) -> Deferred[T]:
    """``d``, cancelled if it has not fired within ``seconds`` of now; it then
    fails with ``error()`` whatever the cancellation made of it.

    Args:
        d: the request's Deferred (cancelling it must abandon the request).
        seconds: the deadline, or None for none (``d`` is returned as it is).
        clock: an ``IReactorTime``.
        error: makes the exception of a request that ran out of time.
    """
    if seconds is None:
        return d
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        d.cancel()

    timer = clock.callLater(seconds, expire)

    def done(result: Any) -> Any:
        if timer.active():
            timer.cancel()
        if expired and isinstance(result, Failure):
            return Failure(error())  # type: ignore[no-untyped-call]
        return result

    return d.addBoth(done)
