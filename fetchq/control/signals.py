"""What a finished attempt tells a controller.

An adapter knows what its errors mean; the controller only needs four answers:

- ``SAMPLE``: the attempt succeeded; its latency is a sample.
- ``DROP``: the remote side is overloaded or refusing work (a timeout, a
  connection reset, HTTP 429 or 503, a provider's "too many requests").
- ``THROTTLE``: a drop that came with a time to wait (Retry-After, a rate
  limit's reset).  The queue already holds the job's lane until then (the job
  function raised :class:`~fetchq.Throttled`); the controller counts it as a
  drop as well.
- ``IGNORE``: says nothing about the pace: a 4xx caused by the request itself,
  a DNS failure, a cancelled job.

A classifier is a function from a :class:`~fetchq.JobFinished` event to a
:class:`Signal`.  :func:`classify` is the generic one; an adapter's errors may
also carry a ``signal`` attribute, which :func:`classify` honours, so an
adapter can classify its own errors without a classifier of its own.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TypeAlias

from twisted.internet import defer
from twisted.internet import error as tx_error

from fetchq.errors import Throttled
from fetchq.events import JobFinished
from fetchq.job import Outcome

__all__ = ["Classifier", "Signal", "classify", "classify_error"]


class Signal(enum.Enum):
    """What one finished attempt says about the pace."""

    SAMPLE = "sample"
    DROP = "drop"
    THROTTLE = "throttle"
    IGNORE = "ignore"


Classifier: TypeAlias = Callable[[JobFinished], Signal]

_DROPS = (
    defer.TimeoutError,
    tx_error.TimeoutError,
    tx_error.ConnectionLost,
    tx_error.ConnectionRefusedError,
)


def classify_error(error: BaseException) -> Signal:
    """The signal of a failed attempt's exception.

    An exception's own ``signal`` attribute wins; else :class:`~fetchq.Throttled`
    is a throttle, Twisted's timeouts, lost connections and refusals are
    drops, and everything else (including cancellation) is ignored.
    """
    signal = getattr(error, "signal", None)
    if isinstance(signal, Signal):
        return signal
    if isinstance(error, defer.CancelledError):
        return Signal.IGNORE
    if isinstance(error, Throttled):
        return Signal.THROTTLE
    if isinstance(error, _DROPS):
        return Signal.DROP
    return Signal.IGNORE


def classify(event: JobFinished) -> Signal:
    """The signal of a finished attempt: success is a sample, a cancelled job
    is ignored, a failure is classified by :func:`classify_error`."""
    outcome = event.outcome
    if outcome is Outcome.OK:
        return Signal.SAMPLE
    if outcome is Outcome.CANCELLED:
        return Signal.IGNORE
    failure = event.job.failure
    if failure is None or failure.value is None:
        return Signal.IGNORE
    return classify_error(failure.value)
