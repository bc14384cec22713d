"""Tests for :mod:`fetchq.recipe.units`: durations, sizes and rates."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from fetchq.recipe.units import (
    format_duration,
    format_rate,
    format_size,
    parse_duration,
    parse_rate,
    parse_size,
)


class DurationTests(SynchronousTestCase):
    def test_units(self) -> None:
        """Each unit, compounds, spaces, case and bare numbers give the
        seconds they say."""
        for text, seconds in [
            ("10s", 10.0),
            ("250ms", 0.25),
            ("2m", 120.0),
            ("1h", 3600.0),
            ("1d", 86400.0),
            ("1.5s", 1.5),
            ("1m30s", 90.0),
            ("1h 30m", 5400.0),
            (" 10 s ", 10.0),
            ("10S", 10.0),
            ("2 minutes", 120.0),
            ("3 hours", 10800.0),
            ("10", 10.0),
            ("0", 0.0),
            (".5s", 0.5),
        ]:
            self.assertEqual(parse_duration(text), seconds, text)

    def test_numbers(self) -> None:
        """A YAML number is seconds, as a float."""
        self.assertEqual(parse_duration(10), 10.0)
        self.assertIsInstance(parse_duration(10), float)
        self.assertEqual(parse_duration(0.25), 0.25)

    def test_milliseconds_are_exact(self) -> None:
        """``250ms`` and ``3ms`` are exactly 0.25 and 0.003: milliseconds are
        divided, not multiplied by an inexact 0.001."""
        self.assertEqual(parse_duration("3ms"), 0.003)
        self.assertEqual(parse_duration("7ms"), 7 / 1000)

    def test_message_names_the_text_and_the_form(self) -> None:
        """A bad duration's message quotes it and shows the expected form."""
        with self.assertRaises(ValueError) as caught:
            parse_duration("10x")
        self.assertEqual(
            str(caught.exception),
            "bad duration '10x': expected a number and a unit such as 10s, "
            "250ms, 2m or 1h",
        )

    def test_refused(self) -> None:
        """Unknown units, words, empties, negatives, infinities, NaN, booleans
        and non-numbers are ValueErrors."""
        for bad in [
            "10x",
            "ten",
            "",
            "s",
            "10s5",
            "-5s",
            -1,
            "1e400s",
            math.inf,
            math.nan,
            True,
            [1],
            None,
        ]:
            with self.assertRaises(ValueError, msg=repr(bad)):
                parse_duration(bad)  # type: ignore[arg-type]

    def test_negative_message(self) -> None:
        """A negative duration says so rather than "expected a number"."""
        with self.assertRaises(ValueError) as caught:
            parse_duration("-1s")
        self.assertEqual(
            str(caught.exception), "bad duration '-1s': must not be negative"
        )

    def test_format_idioms(self) -> None:
        """Durations are written the way a person would write them."""
        for seconds, text in [
            (0, "0s"),
            (0.25, "250ms"),
            (10, "10s"),
            (90, "90s"),
            (120, "2m"),
            (3600, "1h"),
            (86400, "1d"),
            (1.5, "1.5s"),
        ]:
            self.assertEqual(format_duration(seconds), text)

    @given(st.floats(min_value=0, max_value=1e15, allow_nan=False))
    def test_round_trip(self, seconds: float) -> None:
        """Any duration formats to text that parses back to exactly it."""
        self.assertEqual(parse_duration(format_duration(seconds)), seconds)

    @given(st.integers(0, 10**6), st.integers(0, 59), st.integers(0, 59))
    def test_compound_round_trip(self, hours: int, minutes: int, seconds: int) -> None:
        """``XhYmZs`` is the sum of its parts."""
        text = f"{hours}h{minutes}m{seconds}s"
        self.assertEqual(parse_duration(text), hours * 3600 + minutes * 60 + seconds)

    @given(st.integers(0, 10**9))
    def test_milliseconds_round_trip(self, ms: int) -> None:
        """``Nms`` is N / 1000 seconds, exactly as Python divides it."""
        self.assertEqual(parse_duration(f"{ms}ms"), ms / 1000)


class SizeTests(SynchronousTestCase):
    def test_decimal_and_binary_units(self) -> None:
        """KB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB powers of
        1024; case does not matter; bare numbers are bytes."""
        for text, size in [
            ("512B", 512),
            ("10KB", 10_000),
            ("10MB", 10_000_000),
            ("1GB", 1_000_000_000),
            ("1TB", 10**12),
            ("512KiB", 524_288),
            ("10MiB", 10_485_760),
            ("1GiB", 1024**3),
            ("1TiB", 1024**4),
            ("10mb", 10_000_000),
            ("10 MB", 10_000_000),
            ("1.5KiB", 1536),
            ("1.1MB", 1_100_000),
            ("4096", 4096),
            ("1e3", 1000),
        ]:
            self.assertEqual(parse_size(text), size, text)
        self.assertEqual(parse_size(4096), 4096)
        self.assertEqual(parse_size(1e6), 1_000_000)

    def test_message_names_the_text_and_the_form(self) -> None:
        """The message for a bad unit quotes the text and shows both kinds
        of unit."""
        with self.assertRaises(ValueError) as caught:
            parse_size("10 MBs")
        self.assertEqual(
            str(caught.exception),
            "bad size '10 MBs': expected a number and a unit such as 10MB or 512KiB",
        )

    def test_fractional_bytes_refused(self) -> None:
        """A size must come to a whole number of bytes; the message says what
        it came to."""
        with self.assertRaises(ValueError) as caught:
            parse_size("0.3KiB")
        self.assertEqual(
            str(caught.exception),
            "bad size '0.3KiB': not a whole number of bytes (307.2)",
        )
        with self.assertRaises(ValueError):
            parse_size(1.5)

    def test_refused(self) -> None:
        """Unknown units, words, negatives, booleans and non-numbers are
        ValueErrors."""
        for bad in ["10 MBs", "10k", "MB", "", "-1MB", -1, True, math.inf, [1]]:
            with self.assertRaises(ValueError, msg=repr(bad)):
                parse_size(bad)  # type: ignore[arg-type]

    def test_format_idioms(self) -> None:
        """Sizes are written in the unit that makes them shortest."""
        self.assertEqual(format_size(10_485_760), "10MiB")
        self.assertEqual(format_size(10_000_000), "10MB")
        self.assertEqual(format_size(524_288), "512KiB")
        self.assertEqual(format_size(1234), "1234B")
        self.assertEqual(format_size(0), "0B")

    @given(st.integers(0, 2**70))
    def test_round_trip(self, size: int) -> None:
        """Any size formats to text that parses back to exactly it."""
        self.assertEqual(parse_size(format_size(size)), size)

    @given(st.integers(0, 10**6), st.sampled_from(["KiB", "MiB", "GiB", "KB", "MB"]))
    def test_unit_multiplies(self, count: int, unit: str) -> None:
        """``N<unit>`` is N times the unit's size."""
        factor = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "KB": 1000, "MB": 10**6}
        self.assertEqual(parse_size(f"{count}{unit}"), count * factor[unit])


class RateTests(SynchronousTestCase):
    def test_units(self) -> None:
        """Per second, minute, hour and day, with or without spaces; a bare
        number is per second."""
        for text, rate in [
            ("50/s", 50.0),
            ("600/min", 10.0),
            ("3600/h", 1.0),
            ("0.5/s", 0.5),
            ("86400/day", 1.0),
            ("5 / sec", 5.0),
            ("120/minute", 2.0),
            ("2", 2.0),
        ]:
            self.assertEqual(parse_rate(text), rate, text)
        self.assertEqual(parse_rate(2), 2.0)
        self.assertEqual(parse_rate(0.25), 0.25)

    def test_message_names_the_text_and_the_form(self) -> None:
        """A bad rate's message quotes it and shows the expected form."""
        with self.assertRaises(ValueError) as caught:
            parse_rate("50/fortnight")
        self.assertEqual(
            str(caught.exception),
            "bad rate '50/fortnight': expected a count per unit of time such as "
            "50/s, 600/min or 3600/h",
        )

    def test_zero_refused(self) -> None:
        """A rate of 0 would never launch anything: it is refused, and the
        message says why."""
        with self.assertRaises(ValueError) as caught:
            parse_rate("0/s")
        self.assertEqual(str(caught.exception), "bad rate '0/s': must be more than 0")

    def test_refused(self) -> None:
        """Unknown units, sub-second units, words, zero, negatives and booleans
        are ValueErrors."""
        for bad in ["50/fortnight", "50/ms", "fast", "/s", "", "0", 0, "-1/s", True]:
            with self.assertRaises(ValueError, msg=repr(bad)):
                parse_rate(bad)  # type: ignore[arg-type]

    def test_format_idioms(self) -> None:
        """Rates are written in the unit that keeps them whole."""
        self.assertEqual(format_rate(50), "50/s")
        self.assertEqual(format_rate(0.5), "30/min")
        self.assertEqual(format_rate(1 / 3600), "1/h")

    @given(st.floats(min_value=1e-9, max_value=1e12, allow_nan=False))
    def test_round_trip(self, rate: float) -> None:
        """Any rate formats to text that parses back to exactly it."""
        self.assertEqual(parse_rate(format_rate(rate)), rate)

    @given(st.integers(1, 10**6))
    def test_per_minute(self, count: int) -> None:
        """``N/min`` is N / 60 per second."""
        self.assertEqual(parse_rate(f"{count}/min"), count / 60)
