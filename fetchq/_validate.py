"""Argument checks shared by the queue's public methods: misuse fails at the
call, with a message that names the bad value."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = [
    "check_priority",
    "check_width",
    "integer_at_least",
    "non_negative_number",
    "optional_positive_number",
    "positive_number",
]


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


# attrs validators for configuration values (used by the retry policy and the
# fetcher's configuration); each names the field in its message.


def positive_number(instance: object, attribute: Any, value: Any) -> None:
    """A finite number > 0 (not a bool)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 < value < math.inf
    ):
        raise ValueError(f"{attribute.name} must be a number > 0, not {value!r}")


def optional_positive_number(instance: object, attribute: Any, value: Any) -> None:
    """None, or a finite number > 0 (not a bool)."""
    if value is not None:
        positive_number(instance, attribute, value)


def non_negative_number(instance: object, attribute: Any, value: Any) -> None:
    """A finite number >= 0 (not a bool; NaN refused)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 <= value < math.inf
    ):
        raise ValueError(f"{attribute.name} must be a number >= 0, not {value!r}")


def fraction(instance: object, attribute: Any, value: Any) -> None:
    """A number in (0, 1] (not a bool)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 < value <= 1
    ):
        raise ValueError(f"{attribute.name} must be a number in (0, 1], not {value!r}")


def integer_at_least(minimum: int) -> Callable[[object, Any, Any], None]:
    """An attrs validator: an integer (not a bool) >= ``minimum``."""

    def check(instance: object, attribute: Any, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(
                f"{attribute.name} must be an integer >= {minimum}, not {value!r}"
            )

    return check
