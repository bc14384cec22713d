"""URL checks, lane keys and Retry-After parsing: pure functions, no I/O.

Check every URL with :func:`check_url` *before* it is queued, so malformed
input becomes a failed input record with a reason instead of a job; give each
job its host's lane with :func:`host_key`::

    try:
        url = check_url(line)
    except BadURL as e:
        record_failed_input(line, e.name, str(e))
    else:
        queue.put(line, key=host_key(url))
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterable
from datetime import timezone

from hyperlink import DecodedURL, EncodedURL, URLParseError

from fetchq.http.errors import BadURL

__all__ = [
    "DEFAULT_SCHEMES",
    "check_url",
    "checked_host_key",
    "host_key",
    "parse_retry_after",
    "quick_uri",
]

DEFAULT_SCHEMES = ("http", "https")
"""The schemes fetchq can fetch, and the default allow-list."""

_DEFAULT_PORTS = {"http": 80, "https": 443}
_DELTA = re.compile(r"[0-9]+(?:\.[0-9]+)?")


# Hosts hyperlink can always encode for a request: lower-case ASCII names and
# IPv4 literals (no IDNA, no underscore, no IPv6 brackets).
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_PLAIN_HOST = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")

# URLs in the shape nearly every fetched URL has, for which the answers of
# check_url, host_key and hyperlink's to_uri() are known without hyperlink:
# http or https in lower case, a plain host (labels of at most 63 characters;
# no "--", so no punycode and nothing IDNA refuses), an optional port that is
# not the scheme's default, then a path and query made only of characters a
# URI keeps as they are (unreserved, sub-delims, ":", "@", "/", and %XX).
# No userinfo, no fragment, no empty query.  Such text is already its own URI
# form.  tests/test_fetch_units.py checks all this against hyperlink with
# generated URLs; anything else takes the full path.  (A "%" is allowed by
# the pattern and its two hex digits checked apart: one character class is
# much faster to match than an alternation.)
_URI_CHAR = r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%]"
_LABEL63 = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_QUICK_URL = re.compile(
    rf"(https?)://((?:{_LABEL63}\.)*{_LABEL63})(?::([1-9][0-9]{{0,4}}))?"
    rf"(?:/{_URI_CHAR}*(?:\?{_URI_CHAR}+)?)?"
)
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def check_url(
    url: object, allowed_schemes: Iterable[str] = DEFAULT_SCHEMES
) -> DecodedURL:
    """Parse and check a URL before anything is queued.

    Args:
        url: the URL text (surrounding whitespace is ignored), or a
            ``DecodedURL``.
        allowed_schemes: lower-case schemes that may be fetched.

    Returns:
        The parsed URL, its scheme lower-cased.

    Raises:
        BadURL: naming the bad part: not text, empty, unparseable, no
            scheme, a scheme not allowed, no host, a bad port, or a host that
            cannot be encoded for a request.
    """
    if isinstance(url, DecodedURL):
        parsed = url
        given: object = url.to_text()
    else:
        if not isinstance(url, str):
            raise BadURL(f"URL must be text, not {type(url).__name__}", url)
        given = url
        text = url.strip()
        if not text:
            raise BadURL("empty URL", url)
        try:
            parsed = DecodedURL.from_text(text, lazy=True)
        except (URLParseError, ValueError) as e:
            raise BadURL(f"unparseable URL ({e})", url) from None
    scheme = parsed.scheme.lower()
    if not scheme:
        raise BadURL("no scheme (expected http:// or https://)", given)
    allowed = tuple(allowed_schemes)
    if scheme not in allowed:
        names = ", ".join(allowed) or "none"
        raise BadURL(f"scheme {scheme!r} not allowed (allowed: {names})", given)
    if not _host(parsed):
        raise BadURL("no host", given)
    port = parsed.port
    if port is not None and not 0 < port < 65536:
        raise BadURL(f"bad port {port}", given)
    if not _plain(parsed.encoded_url.host):
        try:
            # treq sends the URI form; a host hyperlink cannot encode (an IPv6
            # literal, an underscore: hyperlink issue #68) could not be
            # fetched.  A plain ASCII host always encodes, and skipping the
            # IDNA check for it is most of the cost of checking a URL.
            parsed.to_uri()
        except ValueError as e:
            raise BadURL(
                f"host {parsed.host!r} cannot be encoded ({e})", given
            ) from None
    if scheme != parsed.scheme:
        parsed = parsed.replace(scheme=scheme)
    return parsed


def _quick_key(url: str, allowed_schemes: Iterable[str]) -> str | None:
    """The host key of a URL in the quick shape (see ``_QUICK_URL``) whose
    scheme is allowed, else None (the caller takes the full path)."""
    match = _QUICK_URL.fullmatch(url)
    if match is None:
        return None
    scheme, host, port = match.groups()
    if scheme not in allowed_schemes or "--" in host or len(host) > 253:
        return None
    if "%" in url and _BAD_PERCENT.search(url):
        return None
    if port is None:
        return host
    number = int(port)
    if number > 65535 or number == _DEFAULT_PORTS[scheme]:
        return None  # hyperlink refuses the first and drops the second
    return f"{host}:{port}"


def checked_host_key(
    url: object, allowed_schemes: Iterable[str] = DEFAULT_SCHEMES
) -> str:
    """Check a URL as :func:`check_url` does and return its :func:`host_key`.

    The same answers and the same errors as ``host_key(check_url(url,
    allowed_schemes))``, without parsing the URL at all when it has the
    common shape (``http://host[:port]/path?query`` in plain ASCII), which
    is what a runner checking millions of input rows wants.

    Raises:
        BadURL: as :func:`check_url`.
    """
    if isinstance(url, str):
        allowed = tuple(allowed_schemes)
        key = _quick_key(url, allowed)
        if key is not None:
            return key
        return host_key(check_url(url, allowed))
    return host_key(check_url(url, allowed_schemes))


class _URIForm(EncodedURL):
    """An ``EncodedURL`` made by :func:`quick_uri` from text that is already
    its own URI form: ``to_uri()`` is the URL itself and ``to_text()`` the
    text it came from.  Hyperlink would otherwise run the host through IDNA
    and rebuild the whole URL on every request (treq calls ``to_uri()``).
    A URL derived from it (``replace()``, ``click()``, ...) is an ordinary
    one: only the instances :func:`quick_uri` makes carry ``_text``."""

    _text: str | None = None

    def to_uri(self) -> EncodedURL:
        return self if self._text is not None else super().to_uri()

    def to_text(self, with_password: bool = False) -> str:
        text = self._text  # never has userinfo, so no password to hide
        return text if text is not None else str(super().to_text(with_password))


def quick_uri(
    url: str, allowed_schemes: Iterable[str] = DEFAULT_SCHEMES
) -> EncodedURL | None:
    """The URL to hand treq for text in the common shape, else None.

    For a URL that :func:`check_url` accepts and that is already in the
    form sent on the wire (plain ASCII host, no default port, nothing to
    percent-encode), this returns an ``EncodedURL`` whose ``to_uri()`` and
    ``to_text()`` cost nothing; ``to_text()`` is ``url``.  For anything
    else (and any text :func:`check_url` would refuse) it returns None, and
    the caller uses :func:`check_url`.
    """
    if _quick_key(url, allowed_schemes) is None:
        return None
    parsed = _URIForm.from_text(url)
    assert isinstance(parsed, _URIForm)
    parsed._text = url
    return parsed


def host_key(url: str | DecodedURL) -> str:
    """The lane key for a URL: its lower-case host, plus ``:port`` when the
    port is not the scheme's default.

    Put fetch jobs with ``key=host_key(url)`` so per-lane width, rate and
    throttle holds (HTTP 429/503) apply per host.

    Args:
        url: URL text, or a ``DecodedURL`` that :func:`check_url` returned
            (then it is not checked again).

    Raises:
        BadURL: if URL text does not pass :func:`check_url` (any scheme).
    """
    if isinstance(url, DecodedURL):
        parsed = url
    else:
        parsed = check_url(url, allowed_schemes=(_scheme_of(url),))
    host = _host(parsed).lower()
    if parsed.port != _DEFAULT_PORTS.get(parsed.scheme):
        return f"{host}:{parsed.port}"
    return host


def _plain(raw_host: str) -> bool:
    """A host that needs no IDNA work: at most 253 characters of plain ASCII
    labels with no ``--`` (``xn--`` is punycode, IDNA refuses other labels
    with ``--`` in their third and fourth places, and a longer name, so
    such hosts get the full check)."""
    return (
        len(raw_host) <= 253
        and bool(_PLAIN_HOST.fullmatch(raw_host))
        and "--" not in raw_host
    )


def _host(parsed: DecodedURL) -> str:
    """The decoded host.  ``DecodedURL.host`` runs an IDNA decode on every
    access; a plain host is its own decoding, so that is skipped."""
    raw: str = parsed.encoded_url.host
    return raw if _plain(raw) else str(parsed.host)


def uri_text(url: DecodedURL) -> str:
    """The URL as sent on the wire (its URI form), as text.  A URL in the
    quick shape (see ``_QUICK_URL``) is already in that form, which skips
    hyperlink's IDNA encoding.  (Being ASCII with a plain host is not enough:
    a space or a quote in the path is still percent-encoded on the wire.)"""
    encoded: str = url.encoded_url.to_text()
    if _quick_key(encoded, DEFAULT_SCHEMES) is not None:
        return encoded
    return str(url.to_uri().to_text())


def _scheme_of(url: object) -> str:
    if isinstance(url, DecodedURL):
        return url.scheme.lower()
    if isinstance(url, str):
        head, sep, _ = url.strip().partition(":")
        if sep:
            return head.lower()
    return ""


def parse_retry_after(value: str | bytes | None, now: float) -> float | None:
    """Seconds to wait, from a Retry-After header value.

    Both forms are understood: delta-seconds (``"120"``; a decimal fraction
    is tolerated) and an HTTP-date (``"Wed, 21 Oct 2015 07:28:00 GMT"``, also
    the obsolete RFC 850 and asctime forms).  A date in the past gives 0.

    Args:
        value: the header value, or None when absent.
        now: the current time in seconds since the epoch (the reactor's
            ``seconds()``), against which a date is measured.

    Returns:
        A delay ``>= 0``, or None for an absent, negative or unparseable value.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    text = value.strip()
    if not text:
        return None
    if _DELTA.fullmatch(text):
        return float(text)
    when = _parse_http_date(text)
    if when is None:
        return None
    return max(0.0, when - now)


def _parse_http_date(text: str) -> float | None:
    """Epoch seconds of an HTTP-date (IMF-fixdate, RFC 850 or asctime), or None."""
    try:
        parsed = email.utils.parsedate_to_datetime(text)
        if parsed.tzinfo is None:  # asctime and "-0000" carry no zone: GMT
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
