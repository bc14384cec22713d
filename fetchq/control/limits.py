"""Limit algorithms: how a width moves, given what one window saw.

These are pure: no clock, no queue, no events.  The
:class:`~fetchq.control.AdaptiveController` gathers a :class:`Window` for each
scope (the queue, or one lane), measures the latency baseline, clamps the
result to ``min_width``/``max_width`` and paces launches when width alone
cannot help; an algorithm only answers "given this, what limit next?".

- :class:`AIMD` is loss-based: add ``increase`` per window while the width
  is actually in use, multiply by ``backoff`` on a drop.  It reads no
  latency, so against a server that only slows down and never drops (or
  times out), it grows to ``max_width``: use it where overload shows as
  429s, 503s and resets, or give it a tight ``max_width``.
- :class:`Gradient` is delay-based, in the line of Netflix
  concurrency-limits' Gradient2 and Envoy's adaptive concurrency filter:
  ``gradient = clamp(tolerance * baseline / latency, min_gradient, 1)``, then
  ``limit * gradient + headroom(limit)``, smoothed.  A drop counts as the
  worst gradient, so drops are never ignored.
- :class:`Default` grows and shrinks as :class:`Gradient` does and backs off
  multiplicatively on drops, as :class:`AIMD` does.

A limit is a float; the controller rounds it to a width.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import attrs

from fetchq._validate import fraction, positive_number

__all__ = ["AIMD", "Default", "Gradient", "Limit", "Step", "Window", "sqrt_headroom"]


@attrs.frozen
class Window:
    """What one scope saw since its last decision.

    Attributes:
        duration: seconds the window lasted.
        samples: successful attempts (latency samples).
        latency: their median latency in seconds, or None with no sample.
        drops: drops (throttles included).
        in_flight: most attempts underway at once.
    """

    duration: float
    samples: int
    latency: float | None
    drops: int
    in_flight: int


@attrs.frozen
class Step:
    """An algorithm's answer: the next limit and why."""

    limit: float
    reason: str
    gradient: float | None = None


class Limit(Protocol):
    """A limit algorithm (see the module docstring)."""

    @property
    def name(self) -> str:
        """A short name for decision events (``"aimd"``, ...)."""
        ...

    def on_window(self, limit: float, window: Window, baseline: float | None) -> Step:
        """The next limit after a window without a new drop."""
        ...

    def on_drop(self, limit: float) -> Step:
        """The next limit after a drop."""
        ...


def app_limited(limit: float, window: Window, ratio: float) -> bool:
    """Whether fewer jobs were underway than ``ratio`` of the limit: then the
    window says nothing about a larger limit, and nothing may grow."""
    return window.in_flight < limit * ratio


@attrs.frozen
class AIMD:
    """Loss-based: additive increase, multiplicative decrease.

    Args:
        increase: added to the limit per window while it is in use.
        backoff: the limit is multiplied by this on a drop.
        app_limited: no growth while fewer than this fraction of the limit
            were underway.
    """

    increase: float = attrs.field(default=1.0, validator=positive_number)
    backoff: float = attrs.field(default=0.9, validator=fraction)
    app_limited: float = attrs.field(default=0.5, validator=fraction)

    @property
    def name(self) -> str:
        return "aimd"

    def on_window(self, limit: float, window: Window, baseline: float | None) -> Step:
        if window.samples == 0 or app_limited(limit, window, self.app_limited):
            return Step(limit, "app-limited")
        return Step(limit + self.increase, "grow")

    def on_drop(self, limit: float) -> Step:
        return Step(limit * self.backoff, "drop")


def sqrt_headroom(limit: float) -> float:
    """Half the square root of the limit, at least 1: room to grow that is a
    large step for a small limit and a small fraction of a large one."""
    return max(1.0, math.sqrt(limit) / 2)


@attrs.frozen
class Gradient:
    """Delay-based: shrink as latency rises above the baseline.

    Args:
        tolerance: latency up to ``tolerance * baseline`` counts as unloaded
            (1.0 = none; Gradient2's 1.5 lets the limit creep upward under
            moderate overload, which is why it is not the default here).
        min_gradient: the smallest gradient, so one slow window cannot
            collapse the limit.
        smoothing: how far each window moves toward the new target (0..1].
        headroom: extra limit granted on top of ``limit * gradient``: the
            room to discover more capacity.
        app_limited: no growth while fewer than this fraction of the limit
            were underway.
    """

    tolerance: float = attrs.field(default=1.0, validator=positive_number)
    min_gradient: float = attrs.field(default=0.5, validator=fraction)
    smoothing: float = attrs.field(default=0.5, validator=fraction)
    headroom: Callable[[float], float] = sqrt_headroom
    app_limited: float = attrs.field(default=0.5, validator=fraction)

    @property
    def name(self) -> str:
        return "gradient"

    def on_window(self, limit: float, window: Window, baseline: float | None) -> Step:
        latency = window.latency
        if latency is None or baseline is None:
            return Step(limit, "no-sample")
        gradient = min(1.0, max(self.min_gradient, self.tolerance * baseline / latency))
        target = limit * gradient + self.headroom(limit)
        new = limit + self.smoothing * (target - limit)
        if new > limit:
            if app_limited(limit, window, self.app_limited):
                return Step(limit, "app-limited", gradient)
            return Step(new, "grow", gradient)
        return Step(new, "shrink", gradient)

    def on_drop(self, limit: float) -> Step:
        target = limit * self.min_gradient + self.headroom(limit)
        new = min(limit, limit + self.smoothing * (target - limit))
        return Step(new, "drop", self.min_gradient)


@attrs.frozen
class Default:
    """Delay-based growth and shrink (:class:`Gradient`), loss-based backoff
    (``limit * backoff`` on each drop, as :class:`AIMD`)."""

    gradient: Gradient = attrs.field(factory=Gradient)
    backoff: float = attrs.field(default=0.9, validator=fraction)

    @property
    def name(self) -> str:
        return "default"

    def on_window(self, limit: float, window: Window, baseline: float | None) -> Step:
        return self.gradient.on_window(limit, window, baseline)

    def on_drop(self, limit: float) -> Step:
        return Step(limit * self.backoff, "drop")
