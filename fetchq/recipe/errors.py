"""What goes wrong with a recipe, and where.

A recipe is checked as a whole: every problem found is kept, each with the
file, line and column it is about, and they are raised together as one
:class:`RecipeError`.  Its place in fetchq's exception tree::

    FetchqError
    └── RecipeError (also a ValueError)   .problems: one Problem per line
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from fetchq.errors import FetchqError

__all__ = ["Problem", "RecipeError"]


def _at_least_one(
    instance: object, attribute: attrs.Attribute[int], value: int
) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} is 1-based: must be >= 1, not {value!r}")


@attrs.frozen
class Problem:
    """One thing wrong with a recipe.

    Args:
        path: the recipe file, as the user named it.
        line: 1-based line of the offending text.
        column: 1-based column of the offending text.
        message: what is wrong, starting with the key it concerns
            (``"queue.width: expected an integer, got 'ten'"``).
        origin: where the offending text came from when it is not the file:
            a command-line override as typed (``"--set queue.width=0"``),
            shown instead of ``path:LINE:COL``; None for the file itself.
    """

    path: str
    line: int = attrs.field(validator=_at_least_one)
    column: int = attrs.field(validator=_at_least_one)
    message: str
    origin: str | None = None

    def __str__(self) -> str:
        if self.origin is not None:
            return f"{self.origin}: {self.message}"
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


class RecipeError(FetchqError, ValueError):
    """A recipe could not be loaded.

    ``str()`` gives one ``path:LINE:COL: message`` line per problem, in the
    order they appear in the file, then one ``--set KEY=VALUE: message``
    line per problem with a command-line override, in the order given.

    Args:
        problems: everything found wrong (at least one).
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        if not self.problems:
            raise ValueError("a RecipeError needs at least one Problem")
        super().__init__(*self.problems)

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)
