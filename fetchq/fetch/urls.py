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

from hyperlink import DecodedURL, URLParseError

from fetchq.fetch.errors import BadURL

__all__ = ["DEFAULT_SCHEMES", "check_url", "host_key", "parse_retry_after"]

DEFAULT_SCHEMES = ("http", "https")
"""The schemes fetchq can fetch, and the default allow-list."""

_DEFAULT_PORTS = {"http": 80, "https": 443}
_DELTA = re.compile(r"[0-9]+(?:\.[0-9]+)?")


# Hosts hyperlink can always encode for a request: lower-case ASCII names and
# IPv4 literals (no IDNA, no underscore, no IPv6 brackets).
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_PLAIN_HOST = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")


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
    """A host that needs no IDNA work: plain ASCII labels, none ``xn--``."""
    return bool(_PLAIN_HOST.fullmatch(raw_host)) and "xn--" not in raw_host


def _host(parsed: DecodedURL) -> str:
    """The decoded host.  ``DecodedURL.host`` runs an IDNA decode on every
    access; a plain host is its own decoding, so that is skipped."""
    raw: str = parsed.encoded_url.host
    return raw if _plain(raw) else str(parsed.host)


def uri_text(url: DecodedURL) -> str:
    """The URL as sent on the wire (its URI form), as text.  An all-ASCII URL
    with a plain host is already in that form, which skips hyperlink's IDNA
    encoding."""
    encoded: str = url.encoded_url.to_text()
    if encoded.isascii() and _plain(url.encoded_url.host):
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
