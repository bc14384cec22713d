"""``${NAME}`` references to the environment, and secrets that stay hidden.

A recipe never needs to hold a secret: ``Authorization: Bearer ${API_TOKEN}``
takes the token from the environment when the recipe is loaded.  A value that
came from the environment (or that sits in a header such as ``Authorization``)
is kept in a :class:`Secret`, whose ``repr()`` and ``str()`` are masked, so
printing a recipe, logging it or putting it in an error message never shows
the value.  Code that must send it calls :func:`reveal`.

``$${`` writes a literal ``${``; a ``$`` not followed by ``{`` is literal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from fetchq.secrets import Secret, reveal

__all__ = ["EnvError", "Secret", "expand", "reveal"]

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class EnvError(ValueError):
    """A ``${...}`` reference could not be expanded.  The message names the
    variable, never a value.

    Args:
        message: what is wrong.
        unset: the variables not set or empty, when that is all that is
            wrong (every reference is well-formed); else empty.
    """

    def __init__(self, message: str, unset: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.unset = unset


def expand(text: str, environ: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
    """Replace each ``${NAME}`` in ``text`` with ``environ[NAME]``.

    Returns:
        The expanded text and the names used, in order of first use (empty if
        ``text`` had no reference).

    Raises:
        EnvError: for a malformed reference, or a variable that is not set or
            is empty.  The message names the variables, never their values.
    """
    used: list[str] = []
    missing: list[str] = []
    empty: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole == "$${":
            return "${"
        name = match.group(1)
        if name is None:
            raise EnvError("'${' is not closed: write ${NAME}, or $${ for a literal ${")
        if not _NAME.fullmatch(name):
            shown = name if len(name) <= 30 else name[:27] + "..."
            raise EnvError(
                f"bad reference '${{{shown}}}': expected ${{NAME}} with letters, "
                "digits and underscores"
            )
        if name not in used:
            used.append(name)
        value = environ.get(name)
        if value is None:
            if name not in missing:
                missing.append(name)
            return ""
        if value == "" and name not in empty:
            empty.append(name)
        return value

    expanded = _REFERENCE.sub(substitute, text)
    if missing:
        raise EnvError(_which("not set", missing), (*missing, *empty))
    if empty:
        raise EnvError(_which("empty", empty), tuple(empty))
    return expanded, tuple(used)


def _which(state: str, names: list[str]) -> str:
    if len(names) == 1:
        return f"environment variable {names[0]} is {state}"
    return f"environment variables {', '.join(names)} are {state}"
