"""The failure breaker: a run that cannot succeed stops instead of marking
every row failed.

A run whose every attempt fails the same way (the network is down, the site
is gone, the credentials were revoked) should stop and leave its rows to do,
so that a re-run, once the cause is fixed, does them.  :class:`MaxFailures`
is the limit a recipe (``run.max_failures``) or ``fetchq run --max-failures``
sets:

- ``N`` (an integer): stop when N jobs in a row have failed.  Those N stay
  to do (the run holds back the records of the failures in a row until a
  success shows they were the rows' own).
- ``P%``: stop when more than P% of the jobs finished in this run have
  failed, once at least :data:`MIN_SAMPLE` have finished.
- ``0``: never stop for failures.

The default, :data:`DEFAULT`, is 50 in a row.
"""

from __future__ import annotations

import re

import attrs

__all__ = ["DEFAULT", "MIN_SAMPLE", "FailureBreaker", "MaxFailures"]

MIN_SAMPLE = 50
"""Jobs that must have finished before a percentage limit applies."""

_LIMIT = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(%?)\s*")


@attrs.frozen
class MaxFailures:
    """When a run stops for failures.

    Attributes:
        in_a_row: stop after this many failures in a row (None: never).
        ratio: stop when more than this share (0 to 1) of the finished jobs
            failed (None: never).
    """

    in_a_row: int | None = 50
    ratio: float | None = None

    @classmethod
    def parse(cls, text: str | int) -> MaxFailures:
        """``"50"`` (in a row), ``"10%"`` (of the finished jobs) or ``"0"``
        (never).

        Raises:
            ValueError: for anything else, with a message saying what is
                expected.
        """
        if isinstance(text, bool):
            raise ValueError(
                f"expected a count (50) or a percentage (10%), not {text!r}"
            )
        match = _LIMIT.fullmatch(str(text))
        if match is None:
            raise ValueError(
                f"expected a count (50), a percentage (10%) or 0, not {text!r}"
            )
        number, percent = float(match.group(1)), match.group(2)
        if percent:
            if not 0 < number < 100:
                raise ValueError(
                    f"a percentage must be above 0 and below 100, not {text!r}"
                )
            return cls(in_a_row=None, ratio=number / 100)
        if not number.is_integer():
            raise ValueError(f"a count must be a whole number, not {text!r}")
        return cls(in_a_row=int(number) or None, ratio=None)

    def describe(self) -> str:
        """As a recipe would write it."""
        if self.ratio is not None:
            return f"{self.ratio * 100:g}%"
        return str(self.in_a_row or 0)


DEFAULT = MaxFailures()
"""50 failures in a row."""


class FailureBreaker:
    """Counts outcomes and says when a :class:`MaxFailures` is passed."""

    def __init__(self, limit: MaxFailures = DEFAULT) -> None:
        self.limit = limit
        self.in_a_row = 0
        self.ok = 0
        self.failed = 0

    def succeeded(self) -> None:
        """A job succeeded."""
        self.ok += 1
        self.in_a_row = 0

    def fail(self) -> str | None:
        """A job failed: why the run must stop now, or None."""
        self.failed += 1
        self.in_a_row += 1
        limit = self.limit
        if limit.in_a_row is not None and self.in_a_row >= limit.in_a_row:
            return f"{self.in_a_row} jobs in a row failed"
        finished = self.ok + self.failed
        if (
            limit.ratio is not None
            and finished >= MIN_SAMPLE
            and self.failed > limit.ratio * finished
        ):
            return (
                f"{self.failed} of {finished} jobs failed "
                f"(more than {limit.ratio * 100:g}%)"
            )
        return None
