"""Secrets: values that must never be shown.

A value that came from the environment (``${API_TOKEN}`` in a recipe), or that
sits where credentials go (an ``Authorization`` header, an ``api_key``
parameter), is kept in a :class:`Secret`, whose ``repr()`` and ``str()`` are
masked, so printing it, logging it or putting it in an error message never
shows the value.  Code that must send it calls :func:`reveal`.

Every layer uses this value type (recipes make secrets, adapters send them,
runs and reports must not show them), so it lives below all of them.
"""

from __future__ import annotations

import attrs

__all__ = ["Secret", "reveal"]


@attrs.frozen(repr=False)
class Secret:
    """A string that must not be shown: its ``repr()`` and ``str()`` are masked.

    Args:
        value: the secret text.
        sources: the environment variables it was expanded from, for messages.
    """

    _value: str = attrs.field(alias="value")
    sources: tuple[str, ...] = ()

    def reveal(self) -> str:
        """The secret text itself, for the code that sends it."""
        return self._value

    def __repr__(self) -> str:
        if self.sources:
            names = ", ".join(f"${{{name}}}" for name in self.sources)
            return f"Secret('***' from {names})"
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"


def reveal(value: str | Secret) -> str:
    """``value`` as plain text, whether or not it is a :class:`Secret`."""
    return value.reveal() if isinstance(value, Secret) else value
