"""Durations, sizes and rates as people write them in recipes.

=========  ==========================================================
Durations  ``10s``, ``250ms``, ``2m``, ``1h``, ``1d``, compounds such as
           ``1m30s``; a bare number is seconds.  Result: seconds (float).
Sizes      ``512B``, ``10KB``, ``10MB``, ``1GB``, ``1TB`` are decimal
           (powers of 1000); ``512KiB``, ``10MiB``, ``1GiB``, ``1TiB`` are
           binary (powers of 1024).  Units are case-insensitive and always
           count bytes (``10Mb`` is 10 megabytes, not megabits).  A bare
           number is bytes.  Result: bytes (int).
Rates      ``50/s``, ``600/min``, ``3600/h``, ``0.5/s``, ``100/day``; a bare
           number is per second.  Result: launches per second (float).
=========  ==========================================================

Every parser raises :class:`ValueError` with a message that quotes the bad
text and shows what was expected.  The ``format_*`` functions write a value
back in the shortest form that parses to exactly the same value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation

__all__ = [
    "DURATION_PATTERN",
    "RATE_PATTERN",
    "SIZE_PATTERN",
    "format_duration",
    "format_rate",
    "format_size",
    "parse_duration",
    "parse_rate",
    "parse_size",
]

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"

_SECONDS = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hrs": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
}

_BYTES = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}

_BARE = re.compile(rf"\s*({_NUMBER})\s*")
_DURATION = re.compile(rf"(?:\s*{_NUMBER}\s*[A-Za-z]+)+\s*")
_DURATION_PART = re.compile(rf"({_NUMBER})\s*([A-Za-z]+)")
_SIZE = re.compile(rf"\s*({_NUMBER})\s*([A-Za-z]*)\s*")
_RATE = re.compile(rf"\s*({_NUMBER})\s*(?:/\s*([A-Za-z]+)\s*)?")


def _any_case(words: Iterable[str]) -> str:
    """An ECMA-262 (JSON Schema) alternation of ``words`` in any letter case:
    editors' regular expressions have no case-insensitive flag."""
    spelled = sorted((str(word) for word in words if word), key=len, reverse=True)
    return (
        "(?:"
        + "|".join(
            "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)
            for word in spelled
        )
        + ")"
    )


_SCHEMA_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
DURATION_PATTERN = (
    rf"^\s*(?:{_SCHEMA_NUMBER}|(?:{_SCHEMA_NUMBER}\s*{_any_case(_SECONDS)}\s*)+)\s*$"
)
"""A duration as text (``10s``, ``1m30s``, ``5``), as a JSON Schema pattern."""
SIZE_PATTERN = rf"^\s*{_SCHEMA_NUMBER}\s*{_any_case(_BYTES)}?\s*$"
"""A size as text (``10MB``, ``512KiB``), as a JSON Schema pattern."""
RATE_PATTERN = (
    rf"^\s*{_SCHEMA_NUMBER}\s*(?:/\s*"
    rf"{_any_case([u for u, f in _SECONDS.items() if f >= 1])}\s*)?$"
)
"""A rate as text (``50/s``, ``600/min``), as a JSON Schema pattern."""

_DURATION_HELP = "expected a number and a unit such as 10s, 250ms, 2m or 1h"
_SIZE_HELP = "expected a number and a unit such as 10MB or 512KiB"
_RATE_HELP = "expected a count per unit of time such as 50/s, 600/min or 3600/h"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(value: object, what: str, help_text: str) -> float | None:
    """``value`` as a float if it is a plain number, else None (it is text)."""
    if isinstance(value, bool):
        raise ValueError(f"bad {what} {_show(value)}: {help_text}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"bad {what} {_show(value)}: must be finite")
        if value < 0:
            raise ValueError(f"bad {what} {_show(value)}: must not be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"bad {what} {_show(value)}: {help_text}")
    if value.strip().startswith("-"):
        raise ValueError(f"bad {what} {_show(value)}: must not be negative")
    return None


def parse_duration(value: str | float) -> float:
    """Seconds in a duration such as ``"10s"``, ``"250ms"``, ``"1m30s"`` or ``5``.

    Raises:
        ValueError: for anything else, or a negative or infinite duration.
    """
    number = _number(value, "duration", _DURATION_HELP)
    if number is not None:
        return number
    assert isinstance(value, str)
    bare = _BARE.fullmatch(value)
    if bare:
        seconds = float(bare.group(1))
    elif _DURATION.fullmatch(value):
        seconds = 0.0
        for amount, unit in _DURATION_PART.findall(value):
            factor = _SECONDS.get(unit.lower())
            if factor is None:
                raise ValueError(f"bad duration {_show(value)}: {_DURATION_HELP}")
            # Divide for milliseconds: 250 / 1000 rounds once, 250 * 0.001 twice.
            if factor < 1:
                seconds += float(amount) / 1000
            else:
                seconds += float(amount) * factor
    else:
        raise ValueError(f"bad duration {_show(value)}: {_DURATION_HELP}")
    if not math.isfinite(seconds):
        raise ValueError(f"bad duration {_show(value)}: must be finite")
    return seconds


def parse_size(value: str | int | float) -> int:
    """Bytes in a size such as ``"10MB"`` (10,000,000), ``"512KiB"`` (524,288)
    or ``4096``.

    Raises:
        ValueError: for anything else, a negative size, or a size that is not
            a whole number of bytes (``"0.3KiB"``).
    """
    number = _number(value, "size", _SIZE_HELP)
    if number is not None:
        amount, factor = Decimal(repr(value)), 1
    else:
        assert isinstance(value, str)
        match = _SIZE.fullmatch(value)
        if match is None:
            raise ValueError(f"bad size {_show(value)}: {_SIZE_HELP}")
        unit = match.group(2)
        if unit.lower() not in _BYTES:
            raise ValueError(f"bad size {_show(value)}: {_SIZE_HELP}")
        try:
            amount = Decimal(match.group(1))
        except InvalidOperation:  # pragma: no cover - the regex admits only numbers
            raise ValueError(f"bad size {_show(value)}: {_SIZE_HELP}") from None
        factor = _BYTES[unit.lower()]
    total = amount * factor
    if total != total.to_integral_value():
        raise ValueError(
            f"bad size {_show(value)}: not a whole number of bytes ({total:f})"
        )
    return int(total)


def parse_rate(value: str | float) -> float:
    """Launches per second in a rate such as ``"50/s"``, ``"600/min"`` or ``2``.

    Raises:
        ValueError: for anything else, or a rate that is not more than 0.
    """
    number = _number(value, "rate", _RATE_HELP)
    if number is None:
        assert isinstance(value, str)
        match = _RATE.fullmatch(value)
        if match is None:
            raise ValueError(f"bad rate {_show(value)}: {_RATE_HELP}")
        unit = match.group(2)
        per = 1.0 if unit is None else _SECONDS.get(unit.lower())
        if per is None or per < 1:
            raise ValueError(f"bad rate {_show(value)}: {_RATE_HELP}")
        number = float(match.group(1)) / per
    if not math.isfinite(number):
        raise ValueError(f"bad rate {_show(value)}: must be finite")
    if number <= 0:
        raise ValueError(f"bad rate {_show(value)}: must be more than 0")
    return number


def _plain(number: float) -> str:
    """``number`` without a needless ``.0``."""
    return (
        str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)
    )


def format_duration(seconds: float) -> str:
    """The shortest of ``"2h"``, ``"5m"``, ``"10s"``, ``"250ms"`` that means
    exactly ``seconds``, falling back to ``"0.1234s"``."""
    seconds = float(seconds)
    if seconds == 0:
        return "0s"
    candidates = [
        _plain(seconds / factor) + unit
        for unit, factor in (("d", 86400.0), ("h", 3600.0), ("m", 60.0))
        if (seconds / factor).is_integer()
    ]
    if (seconds * 1000).is_integer():
        candidates.append(_plain(seconds * 1000) + "ms")
    candidates.append(_plain(seconds) + "s")
    exact = [c for c in candidates if parse_duration(c) == seconds]
    return min(exact or [repr(float(seconds)) + "s"], key=len)


def format_size(size: int) -> str:
    """The shortest exact form of ``size`` bytes: ``"10MB"``, ``"512KiB"``,
    ``"1234B"``."""
    best = f"{size}B"
    for unit in ("KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB"):
        factor = _BYTES[unit.lower()]
        if size and size % factor == 0:
            text = f"{size // factor}{unit}"
            if len(text) < len(best):
                best = text
    return best


def format_rate(per_second: float) -> str:
    """The shortest exact form of a rate: ``"50/s"``, ``"600/min"``, ``"1/h"``."""
    per_second = float(per_second)
    candidates = [
        _plain(per_second * factor) + unit
        for unit, factor in (
            ("/s", 1.0),
            ("/min", 60.0),
            ("/h", 3600.0),
            ("/day", 86400.0),
        )
        if (per_second * factor).is_integer()
    ]
    exact = [c for c in candidates if parse_rate(c) == per_second]
    return min(exact or [repr(float(per_second)) + "/s"], key=len)
