"""Hiding secret values in what an HTTP adapter shows: URLs, messages.

A :class:`~fetchq.secrets.Secret` sent as a query parameter is part of the
URL on the wire, and a server may echo it back (in a ``Location``, in an
error message).  :func:`secret_masker` makes a function that replaces it
with ``***`` in any text, in every form it takes in a URL::

    mask = secret_masker([Secret("k3y-value")])
    mask("https://api.example/v1?api_key=k3y-value")  # '...?api_key=***'

The rule: the text of a secret of at least :data:`MASK_ANYWHERE` characters
is masked wherever it appears, as it is and percent-encoded (as hyperlink
and treq send it, and as ``quote``/``quote_plus`` write it, either case of
hex digits); a shorter one (a PIN, a flag) only where it is a whole query
value (``name=<value>``), so that masking it does not garble the rest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

from hyperlink import DecodedURL, EncodedURL

from fetchq.secrets import Secret

__all__ = ["MASK", "MASK_ANYWHERE", "secret_masker"]

MASK = "***"
"""What a secret value is replaced with."""

MASK_ANYWHERE = 4
"""Secrets at least this long are masked anywhere in a text; shorter ones
only as whole query values."""

_BASE = DecodedURL(EncodedURL.from_text("http://h/"))


def _forms(text: str) -> set[str]:
    """The ways ``text`` can appear in a URL or message."""
    sent = _BASE.add("k", text).to_uri().query[0][1] or ""
    forms = {text, sent, quote(text, safe=""), quote(text), quote_plus(text)}
    forms.discard("")
    return forms


def secret_masker(values: Iterable[object]) -> Callable[[str], str] | None:
    """A function that replaces the text of every :class:`Secret` among
    ``values`` with :data:`MASK` (see the module's rule); None when there is
    no secret to hide, so callers pay nothing then.

    Args:
        values: any values; only ``Secret`` ones (with text) count.
    """
    anywhere: set[str] = set()
    whole: set[str] = set()
    for value in values:
        if not isinstance(value, Secret):
            continue
        text = value.reveal()
        if text:
            (anywhere if len(text) >= MASK_ANYWHERE else whole).update(_forms(text))
    if not anywhere and not whole:
        return None

    def alternation(forms: set[str]) -> str:
        return "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))

    patterns = []
    if anywhere:
        patterns.append(alternation(anywhere))
    if whole:
        patterns.append(f"(?<==)(?:{alternation(whole)})(?=[&#\\s]|$)")
    regex = re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)

    def mask(text: str) -> str:
        return regex.sub(MASK, text)

    return mask
