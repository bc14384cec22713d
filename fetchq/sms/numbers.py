"""Phone numbers and sender ids, checked before anything is queued.

A recipient (``To``) must be a phone number that can be written in E.164:
``+``, then the country code and the national number, 15 digits at most.
:func:`check_e164` accepts the usual ways people write such a number,
returns it bare (``+12125550100``), and refuses whatever could mean two
things or cannot be a number at all:

- **Accepted and removed:** spaces, dashes, dots and one pair of parentheses
  around digits, as in ``+1 (212) 555-0100`` or ``+44 20.7946.0958``.
- **Refused as ambiguous:** a ``(0)`` trunk prefix (``+44 (0)20 ...``: the 0
  is dialled at home and not from abroad), letters (vanity numbers,
  ``ext``/``x`` extensions), other characters, non-ASCII digits, and, unless
  a default region is set, no leading ``+`` (``2125550100`` is a US number to
  some and not to others; ``0044...``/``011...`` international prefixes
  depend on the country dialled from).
- **Refused as no such number:** too few or too many digits, a country code
  that does not exist (``+999...``), and a number its country's plan does
  not allow.

**Two ways to check, one answer shape.**  With the optional ``phonenumbers``
package (``pip install 'fetchq[phones]'``, Google's libphonenumber
metadata), a number must be *valid* for its region (``number_check:
valid``, the default: its length and its prefixes are ones the region
assigns) or at least *possible* (``number_check: possible``: a length the
region uses; for ranges newer than the installed metadata).  Without it, a
built-in check refuses country codes that no country has and, for ``+1``
(the North American Numbering Plan), anything but ten digits whose area
code and exchange start with 2-9 (``+1 012 ...`` is no number) and area
codes of the N11 service form (``+1 911 ...``).

**National numbers.**  With :attr:`NumberRules.default_region` (an ISO 3166
region such as ``US`` or ``GB``), input without a ``+`` is read as that
region's people write it (``(212) 555-0100``, ``1 212 555 0100`` and ``011
44 20 7946 0958`` in the US; ``020 7946 0958`` in the UK) and returned in
E.164.  Any region needs ``phonenumbers``; without it only the ``+1``
regions (US, CA, PR, ...) are known, whose numbers the built-in check can
read (an optional leading ``1``, or ``011`` then an international number).

Nothing else guesses a country.  A refused number raises
:class:`BadMessage` whose reason says what to write instead; record it as
failed input, never send it.

A sender (``From``) may also be a short code (3 to 8 digits) or an
alphanumeric sender id (1 to 11 letters, digits and spaces, with at least one
letter); :func:`check_sender` accepts those as given.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import attrs

from fetchq.sms.errors import BadMessage

_phonenumbers: Any
try:  # the optional extra: fetchq[phones]
    import phonenumbers as _phonenumbers
except ImportError:  # pragma: no cover - depends on the environment
    _phonenumbers = None

__all__ = [
    "COUNTRY_CODES",
    "HAVE_PHONENUMBERS",
    "NANP_REGIONS",
    "NumberRules",
    "check_e164",
    "check_sender",
    "is_e164",
]

HAVE_PHONENUMBERS: bool = _phonenumbers is not None
"""Whether the optional ``phonenumbers`` package is installed."""

COUNTRY_CODES: frozenset[int] = frozenset(
    {1, 7, 20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49}
    | {51, 52, 53, 54, 55, 56, 57, 58, 60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86}
    | {90, 91, 92, 93, 94, 95, 98, 211, 212, 213, 216, 218}
    | set(range(220, 270)) - {259}
    | {290, 291, 297, 298, 299}
    | set(range(350, 360))
    | set(range(370, 390)) - {379, 384, 388}
    | {420, 421, 423}
    | set(range(500, 510))
    | set(range(590, 600))
    | {670, *range(672, 693)} - {684}
    | {800, 808, 850, 852, 853, 855, 856, 870, 878, 880, 881, 882, 883, 886, 888}
    | set(range(960, 969))
    | set(range(970, 980)) - {978}
    | {992, 993, 994, 995, 996, 998}
)
"""The country calling codes in use (ITU-T E.164 assignments, as
libphonenumber 9.0 lists them), for the built-in check."""

NANP_REGIONS: frozenset[str] = frozenset(
    {"AG", "AI", "AS", "BB", "BM", "BS", "CA", "DM", "DO", "GD", "GU", "JM", "KN"}
    | {"KY", "LC", "MP", "MS", "PR", "SX", "TC", "TT", "US", "VC", "VG", "VI"}
)
"""The regions of the North American Numbering Plan (country code 1)."""

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_REGION = re.compile(r"[A-Z]{2}")
_SEPARATORS = frozenset(" -.")
_ASCII_DIGITS = frozenset("0123456789")
_SHORT_CODE = re.compile(r"[0-9]{3,8}")
_ALPHANUMERIC = re.compile(r"[A-Za-z0-9 ]{1,11}")
_INSTALL = "pip install 'fetchq[phones]'"


def _region(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not _REGION.fullmatch(value):
        raise ValueError(
            f"default_region must be a two-letter region code such as 'US' or "
            f"'GB', not {value!r}"
        )


def _check(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in ("valid", "possible"):
        raise ValueError(f"number_check must be 'valid' or 'possible', not {value!r}")


def _library(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"library must be True or False, not {value!r}")
    if value and not HAVE_PHONENUMBERS:
        raise ValueError(f"the phonenumbers package is not installed ({_INSTALL})")


@attrs.frozen
class NumberRules:
    """How phone numbers are read and checked.

    Args:
        default_region: the region of numbers written without ``+`` (``US``,
            ``GB``), or None to refuse such numbers.
        number_check: ``"valid"`` (the number must be one its region
            assigns) or ``"possible"`` (a length its region uses); the
            built-in check makes no difference between them.
        library: check with ``phonenumbers`` (default: when installed); False
            forces the built-in check.

    Raises:
        ValueError: for a bad region code, a region the built-in check
            cannot read numbers of (anything but the ``+1`` regions without
            ``phonenumbers``), or ``library=True`` without ``phonenumbers``.
    """

    default_region: str | None = attrs.field(default=None, validator=_region)
    number_check: Literal["valid", "possible"] = attrs.field(
        default="valid", validator=_check
    )
    library: bool = attrs.field(default=HAVE_PHONENUMBERS, validator=_library)

    def __attrs_post_init__(self) -> None:
        region = self.default_region
        if region is None:
            return
        if self.library:
            assert _phonenumbers is not None
            if region not in _phonenumbers.SUPPORTED_REGIONS:
                raise ValueError(f"default_region {region!r} is no region code known")
        elif region not in NANP_REGIONS:
            raise ValueError(
                f"default_region {region!r} needs the phonenumbers package "
                f"({_INSTALL}); without it only the +1 regions (US, CA, ...) "
                "are known"
            )


DEFAULT_RULES = NumberRules()
"""E.164 input only, checked with ``phonenumbers`` when installed."""


def is_e164(text: str) -> bool:
    """Whether ``text`` is already a bare E.164 number (``+`` and digits)."""
    return _E164.fullmatch(text) is not None


def check_e164(
    number: object, field: str = "to", rules: NumberRules | None = None
) -> str:
    """The bare E.164 form of a phone number written with common formatting.

    Args:
        number: the number as given.
        field: the message field named in errors (``"to"``, ``"from"``).
        rules: the default region and how strict to be (default: E.164
            input, validated; see :class:`NumberRules`).

    Returns:
        ``+`` followed by the digits, e.g. ``"+12125550100"``.

    Raises:
        BadMessage: naming what is wrong (see the module's rules).
    """
    if rules is None:
        rules = DEFAULT_RULES
    if not isinstance(number, str):
        raise BadMessage(
            f"a phone number must be text, not {type(number).__name__}", field, number
        )
    text = number.strip()
    if not text:
        raise BadMessage("empty phone number", field, number)
    if _E164.fullmatch(text):
        bare = text  # the common case: already bare
    elif text.startswith("+"):
        bare = "+" + _digits(text[1:], field, number)
    else:
        if not any(char in _ASCII_DIGITS for char in text):
            raise BadMessage("not a phone number: it has no digits", field, number)
        if rules.default_region is None:
            if text.startswith("00") or text.startswith("011"):
                reason = "an international dialling prefix depends on the country: "
            else:
                reason = "no country code: "
            raise BadMessage(
                reason + "write it as +<country code><number> (or set "
                "sms.default_region)",
                field,
                number,
            )
        return _national(_digits(text, field, number), field, number, rules)
    digits = bare[1:]
    if len(digits) < 2 or len(digits) > 15:
        raise BadMessage(
            f"E.164 numbers have 2 to 15 digits, this has {len(digits)}", field, number
        )
    if digits[0] == "0":
        raise BadMessage("a country code cannot start with 0", field, number)
    _country_code(digits, field, number)  # the same answer either way
    if rules.library:
        return _library_check(bare, None, field, number, rules)
    _builtin_check(digits, field, number)
    return bare


def _national(digits: str, field: str, given: str, rules: NumberRules) -> str:
    """A number written without ``+``, in ``rules.default_region``."""
    region = rules.default_region
    assert region is not None
    if rules.library:
        return _library_check(digits, region, field, given, rules)
    # The built-in reading of the +1 regions' numbers.
    if digits.startswith("011"):
        return check_e164("+" + digits[3:], field, rules)
    if len(digits) == 11 and digits[0] == "1":
        digits = digits[1:]
    if len(digits) != 10:
        raise BadMessage(
            f"a {region} number has 10 digits (an area code and 7 more), this "
            f"has {len(digits)}",
            field,
            given,
        )
    _builtin_check("1" + digits, field, given)
    return "+1" + digits


def _country_code(digits: str, field: str, given: str) -> None:
    """Refuse a number whose country code no country has."""
    if not any(int(digits[:n]) in COUNTRY_CODES for n in (1, 2, 3) if len(digits) > n):
        raise BadMessage(
            f"no country has a calling code that starts +{digits[:3]}...",
            field,
            given,
        )


def _builtin_check(digits: str, field: str, given: str) -> None:
    """Refuse a country code nobody has, and a +1 number the plan does not
    allow."""
    _country_code(digits, field, given)
    if digits[0] != "1":
        if len(digits) < 7:
            raise BadMessage(
                f"too short: no country's numbers have fewer than 7 digits with "
                f"the country code, this has {len(digits)}",
                field,
                given,
            )
        return
    national = digits[1:]
    if len(national) != 10:
        raise BadMessage(
            f"a +1 number has 10 digits after the 1 (an area code and 7 more), "
            f"this has {len(national)}",
            field,
            given,
        )
    if national[0] in "01":
        raise BadMessage(
            f"no such +1 area code {national[:3]}: area codes cannot start with 0 or 1",
            field,
            given,
        )
    if national[1:3] == "11":
        raise BadMessage(
            f"no such +1 area code {national[:3]}: N11 codes are service "
            "numbers, not area codes",
            field,
            given,
        )
    if national[3] in "01":
        raise BadMessage(
            f"no such +1 number: the exchange {national[3:6]} cannot start with 0 or 1",
            field,
            given,
        )


_TOO = {
    "TOO_SHORT": "too short",
    "TOO_LONG": "too long",
    "INVALID_LENGTH": "the wrong length",
    "IS_POSSIBLE_LOCAL_ONLY": "a local number (dialled without its area code)",
}


def _library_check(
    text: str, region: str | None, field: str, given: str, rules: NumberRules
) -> str:
    """Parse and check with ``phonenumbers``; the E.164 form."""
    lib = _phonenumbers
    assert lib is not None
    try:
        parsed = lib.parse(text, region)
    except lib.NumberParseException as exc:
        if exc.error_type == lib.NumberParseException.INVALID_COUNTRY_CODE:
            reason = (
                "no country has this calling code"
                if text.startswith("+")
                else "no country code: write it as +<country code><number>"
            )
        else:
            detail = re.sub(r"^\(\d+\)\s*", "", str(exc)).rstrip(".")
            reason = f"not a phone number ({detail})"
        raise BadMessage(reason, field, given) from None
    where = lib.region_code_for_country_code(parsed.country_code)
    where_text = f"+{parsed.country_code}" + (
        f" ({where})" if where and where != "001" else ""
    )
    possible = lib.is_possible_number_with_reason(parsed)
    if possible != lib.ValidationResult.IS_POSSIBLE:
        if possible == lib.ValidationResult.INVALID_COUNTRY_CODE:
            raise BadMessage("no country has this calling code", field, given)
        names = {
            getattr(lib.ValidationResult, name): name
            for name in _TOO
            if hasattr(lib.ValidationResult, name)
        }
        too = _TOO.get(names.get(possible, ""), "not a possible length")
        raise BadMessage(f"not a {where_text} number: it is {too}", field, given)
    if rules.number_check == "valid" and not lib.is_valid_number(parsed):
        raise BadMessage(
            f"not a valid {where_text} number: its numbering plan has no such "
            "range (sms.number_check: possible takes any possible length)",
            field,
            given,
        )
    formatted: str = lib.format_number(parsed, lib.PhoneNumberFormat.E164)
    return formatted


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


def check_sender(sender: object, rules: NumberRules | None = None) -> str:
    """A ``From``: an E.164 number (normalised as by :func:`check_e164`), a
    short code, or an alphanumeric sender id (returned as given, stripped);
    with a default region (``rules``), also a national number.

    Raises:
        BadMessage: for anything else (field ``"from"``).
    """
    if not isinstance(sender, str):
        raise BadMessage(
            f"a sender must be text, not {type(sender).__name__}", "from", sender
        )
    text = sender.strip()
    if text.startswith("+"):
        return check_e164(text, "from", rules)
    if _SHORT_CODE.fullmatch(text):
        return text
    if _ALPHANUMERIC.fullmatch(text) and any(c.isalpha() for c in text):
        return text
    if rules is not None and rules.default_region is not None:
        return check_e164(text, "from", rules)
    raise BadMessage(
        "expected an E.164 number (+<country code><number>), a short code "
        "(3-8 digits) or an alphanumeric sender id (1-11 letters, digits, spaces)",
        "from",
        sender,
    )
