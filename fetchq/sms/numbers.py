"""Phone numbers and sender ids, checked before anything is queued.

A recipient (``To``) must be an E.164 number: ``+``, then 2 to 15 digits, the
first not 0.  :func:`check_e164` accepts the usual ways people write such a
number and returns it bare, and refuses whatever could mean two things:

- **Accepted and removed:** spaces, dashes, dots and one pair of parentheses
  around digits, as in ``+1 (212) 555-0100`` or ``+44 20.7946.0958``.
- **Refused:** no leading ``+`` (``2125550100`` is a US number to some and
  not to others; ``0044...``/``011...`` international prefixes depend on the
  country dialled from), a ``(0)`` trunk prefix (``+44 (0)20 ...``: the 0 is
  dialled at home and not from abroad), letters (vanity numbers, ``ext``/``x``
  extensions), other characters, non-ASCII digits, and too few or too many
  digits.

Nothing guesses a country.  A refused number raises :class:`BadMessage` whose
reason says what to write instead; record it as failed input, never send it.

A sender (``From``) may also be a short code (3 to 8 digits) or an
alphanumeric sender id (1 to 11 letters, digits and spaces, with at least one
letter); :func:`check_sender` accepts those as given.
"""

from __future__ import annotations

import re

from fetchq.sms.errors import BadMessage

__all__ = ["check_e164", "check_sender", "is_e164"]

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_SEPARATORS = frozenset(" -.")
_ASCII_DIGITS = frozenset("0123456789")
_SHORT_CODE = re.compile(r"[0-9]{3,8}")
_ALPHANUMERIC = re.compile(r"[A-Za-z0-9 ]{1,11}")


def is_e164(text: str) -> bool:
    """Whether ``text`` is already a bare E.164 number (``+`` and digits)."""
    return _E164.fullmatch(text) is not None


def check_e164(number: object, field: str = "to") -> str:
    """The bare E.164 form of a phone number written with common formatting.

    Args:
        number: the number as given.
        field: the message field named in errors (``"to"``, ``"from"``).

    Returns:
        ``+`` followed by the digits, e.g. ``"+12125550100"``.

    Raises:
        BadMessage: naming what is wrong (see the module's rules).
    """
    if not isinstance(number, str):
        raise BadMessage(
            f"a phone number must be text, not {type(number).__name__}", field, number
        )
    text = number.strip()
    if not text:
        raise BadMessage("empty phone number", field, number)
    if _E164.fullmatch(text):
        return text  # the common case: already bare
    if not text.startswith("+"):
        if not any(char in _ASCII_DIGITS for char in text):
            raise BadMessage("not a phone number: it has no digits", field, number)
        if text.startswith("00") or text.startswith("011"):
            reason = "an international dialling prefix depends on the country: "
        else:
            reason = "no country code: "
        raise BadMessage(reason + "write it as +<country code><number>", field, number)
    digits = _digits(text[1:], field, number)
    if len(digits) < 2 or len(digits) > 15:
        raise BadMessage(
            f"E.164 numbers have 2 to 15 digits, this has {len(digits)}", field, number
        )
    if digits[0] == "0":
        raise BadMessage("a country code cannot start with 0", field, number)
    return "+" + digits


def _digits(text: str, field: str, given: str) -> str:
    """The digits of the part after ``+``, checking its formatting."""
    out: list[str] = []
    group: list[str] | None = None  # digits inside the open parenthesis
    groups = 0
    for char in text:
        if char in _ASCII_DIGITS:
            out.append(char)
            if group is not None:
                group.append(char)
        elif char in _SEPARATORS:
            continue
        elif char == "(":
            if group is not None:
                raise BadMessage("nested parentheses", field, given)
            if groups:
                raise BadMessage("more than one parenthesised group", field, given)
            group = []
        elif char == ")":
            if group is None:
                raise BadMessage("')' without '('", field, given)
            if not group:
                raise BadMessage("empty parentheses", field, given)
            if group == ["0"]:
                raise BadMessage(
                    "'(0)' is a trunk prefix dialled only at home: drop it",
                    field,
                    given,
                )
            group = None
            groups += 1
        elif char == "+":
            raise BadMessage("'+' may only start the number", field, given)
        elif char.isalpha():
            raise BadMessage(
                "letters are not allowed (a vanity number or an extension?)",
                field,
                given,
            )
        elif char.isdigit():
            raise BadMessage(f"non-ASCII digit {char!r}", field, given)
        else:
            raise BadMessage(f"unexpected character {char!r}", field, given)
    if group is not None:
        raise BadMessage("'(' without ')'", field, given)
    return "".join(out)


def check_sender(sender: object) -> str:
    """A ``From``: an E.164 number (normalised as by :func:`check_e164`), a
    short code, or an alphanumeric sender id (returned as given, stripped).

    Raises:
        BadMessage: for anything else (field ``"from"``).
    """
    if not isinstance(sender, str):
        raise BadMessage(
            f"a sender must be text, not {type(sender).__name__}", "from", sender
        )
    text = sender.strip()
    if text.startswith("+"):
        return check_e164(text, "from")
    if _SHORT_CODE.fullmatch(text):
        return text
    if _ALPHANUMERIC.fullmatch(text) and any(c.isalpha() for c in text):
        return text
    raise BadMessage(
        "expected an E.164 number (+<country code><number>), a short code "
        "(3-8 digits) or an alphanumeric sender id (1-11 letters, digits, spaces)",
        "from",
        sender,
    )
