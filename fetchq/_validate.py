"""Argument checks shared by the queue's public methods: misuse fails at the
call, with a message that names the bad value."""

from __future__ import annotations

import math

__all__ = ["check_priority", "check_width"]


def check_width(width: object, what: str = "width") -> int:
    if isinstance(width, bool) or not isinstance(width, int):
        raise ValueError(f"{what} must be a non-negative integer, not {width!r}")
    if width < 0:
        raise ValueError(f"{what} must be a non-negative integer, not {width!r}")
    return width


def check_priority(priority: object) -> None:
    if priority.__class__ is int:
        return
    if isinstance(priority, bool) or not isinstance(priority, (int, float)):
        raise TypeError(f"priority must be an int or float, not {priority!r}")
    if math.isnan(priority):
        raise ValueError("priority must not be NaN")
