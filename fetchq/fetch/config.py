"""What a fetch does: one frozen, validated configuration value."""

from __future__ import annotations

import os
import string
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import attrs

import fetchq
from fetchq._validate import (
    integer_at_least,
    non_negative_number,
    optional_positive_number,
    positive_number,
)
from fetchq.http.urls import DEFAULT_SCHEMES
from fetchq.secrets import Secret, reveal

__all__ = ["DEFAULT_USER_AGENT", "FetchConfig", "host_pattern"]

DEFAULT_USER_AGENT = f"fetchq/{fetchq.__version__}"
"""The User-Agent sent unless the configured headers name another."""

_TOKEN = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")
_Pairs = tuple[tuple[str, str | Secret], ...]
_Given = Mapping[str, str | Secret] | Iterable[tuple[str, str | Secret]]


def _pairs(value: _Given, what: str) -> _Pairs:
    items = value.items() if isinstance(value, Mapping) else value
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise ValueError(f"{what} must be a mapping or name/value pairs, not {value!r}")
    pairs = []
    for item in items:
        try:
            name, text = item
        except (TypeError, ValueError):
            raise ValueError(f"{what} must be name/value pairs, not {item!r}") from None
        if not isinstance(name, str) or not isinstance(text, (str, Secret)):
            raise ValueError(
                f"{what} names and values must be text (or Secret): {item!r}"
            )
        pairs.append((name, text))
    return tuple(pairs)


def _headers(value: _Given) -> _Pairs:
    pairs = _pairs(value, "headers")
    for name, text in pairs:
        if not name or not set(name) <= _TOKEN:
            raise ValueError(f"bad header name {name!r}")
        text = reveal(text)
        if "\r" in text or "\n" in text:
            raise ValueError(f"header {name!r} has a line break in its value")
    if not any(name.lower() == "user-agent" for name, _ in pairs):
        pairs = (("User-Agent", DEFAULT_USER_AGENT), *pairs)
    return pairs


def _params(value: _Given) -> _Pairs:
    return _pairs(value, "params")


def _method(value: str) -> str:
    if not isinstance(value, str) or not value or not set(value) <= _TOKEN:
        raise ValueError(f"bad HTTP method {value!r}")
    return value.upper()


def _statuses(value: Iterable[int]) -> frozenset[int]:
    if not isinstance(value, Iterable):
        raise ValueError(f"statuses must be a collection of integers, not {value!r}")
    statuses = frozenset(value)
    for status in statuses:
        if isinstance(status, bool) or not isinstance(status, int):
            raise ValueError(f"HTTP status must be an integer, not {status!r}")
        if not 100 <= status <= 599:
            raise ValueError(f"HTTP status {status} is not in 100-599")
    return statuses


def _schemes(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"allowed_schemes must be a tuple of schemes, not {value!r}")
    schemes = tuple(s.lower() if isinstance(s, str) else s for s in value)
    if not schemes:
        raise ValueError("allowed_schemes must not be empty")
    for scheme in schemes:
        if scheme not in DEFAULT_SCHEMES:
            raise ValueError(f"unsupported scheme {scheme!r} (only http, https)")
    return schemes


def _proxy(value: str | Secret | None) -> str | Secret | None:
    """A proxy URL (kept a Secret when it holds credentials), ``"none"``, or
    None; checked here, so a bad one fails at construction."""
    if value is None:
        return None
    if not isinstance(value, (str, Secret)):
        raise ValueError(f"proxy must be a URL, 'none' or None, not {value!r}")
    text = reveal(value).strip()
    if text.lower() == "none":
        return "none"
    from fetchq.http.proxy import parse_proxy

    proxy = parse_proxy(value, "proxy")
    if proxy.authorization is not None and not isinstance(value, Secret):
        return Secret(text, ())
    return value


def _no_proxy(value: str | Iterable[str] | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Iterable):
        items = list(value)
        if all(isinstance(item, str) for item in items):
            return ",".join(items)
    raise ValueError(f"no_proxy must be text or a list of hosts, not {value!r}")


def _path(value: str | os.PathLike[str] | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ValueError(f"expected a path or None, not {value!r}")
    return os.fspath(value)


def host_pattern(pattern: object) -> str:
    """A ``host_headers`` key checked: ``api.example.com`` or
    ``*.example.com`` (the names under example.com), lower case.

    Raises:
        ValueError: for anything else, saying what is expected.
    """
    if not isinstance(pattern, str) or not pattern.strip():
        raise ValueError(f"{pattern!r} is not a host name")
    text = pattern.strip().lower().rstrip(".")
    rest = text[2:] if text.startswith("*.") else text
    if not rest or any(c in rest for c in "*/:@ ") or rest.startswith("."):
        raise ValueError(
            f"{pattern!r} is not a host name such as api.example.com "
            "(or *.example.com for the names under it)"
        )
    return text


def _host_headers(value: Any) -> tuple[tuple[str, _Pairs], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise ValueError(f"host_headers must map host names to headers, not {value!r}")
    result = []
    for item in items:
        try:
            pattern, headers = item
        except (TypeError, ValueError):
            raise ValueError(
                f"host_headers must be host/headers pairs: {item!r}"
            ) from None
        pairs = _pairs(headers, "host_headers")
        for name, text in pairs:
            if not name or not set(name) <= _TOKEN:
                raise ValueError(f"bad header name {name!r}")
            if "\r" in reveal(text) or "\n" in reveal(text):
                raise ValueError(f"header {name!r} has a line break in its value")
        try:
            result.append((host_pattern(pattern), pairs))
        except ValueError as e:
            raise ValueError(f"host_headers: {e}") from None
    return tuple(result)


def _robots(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in ("obey", "ignore"):
        raise ValueError(f"robots must be 'obey' or 'ignore', not {value!r}")


def _http(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in ("treq", "lean"):
        raise ValueError(f"http must be 'treq' or 'lean', not {value!r}")
    if value == "lean" and not lean_available():
        raise ValueError(
            "http 'lean' needs the httptools package: pip install 'fetchq[lean]'"
        )


def lean_available() -> bool:
    """Whether ``http="lean"`` can be used (``httptools`` is installed)."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return False
    return True


def _save_dir(value: str | os.PathLike[str] | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ValueError(f"save_dir must be a path or None, not {value!r}")
    return os.fspath(value)


def _body(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, bytes):
        raise ValueError(f"body must be bytes or None, not {type(value).__name__}")


def _bool(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{attribute.name} must be True or False, not {value!r}")


def _save_name(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in ("sha256", "id"):
        raise ValueError(f"save_name must be 'sha256' or 'id', not {value!r}")


@attrs.frozen
class FetchConfig:
    """How to fetch: request, limits, which statuses mean what, where bodies go.

    Every value is checked at construction; a bad one raises ``ValueError``
    naming the field.  Change a value with ``attrs.evolve(config, ...)``.

    Args:
        method: the HTTP method (upper-cased).
        headers: request headers, a mapping or name/value pairs; a
            ``User-Agent: fetchq/<version>`` is added unless one is given.
            A value may be a :class:`~fetchq.secrets.Secret` (a recipe's
            ``${ENV}``, an Authorization): sent as its text, never shown, and
            not sent to another origin after a redirect (Authorization,
            Cookie and Proxy-Authorization never are, secret or not).
        params: query parameters added to every job's URL (not to
            redirects).  A :class:`~fetchq.secrets.Secret` value is sent as
            its text and shown as ``***`` in ``final_url`` and in messages
            (wherever a server echoes it, too).
        body: the request body, or None.
        connect_timeout: seconds to establish a connection (each address).
        headers_timeout: seconds from sending the request to the response
            headers (connecting included).
        body_timeout: seconds from the headers to the *whole* body, so a
            stalled or trickling body times out too.
        timeout: seconds for the whole of one fetch, from sending the
            request to the end of the body, redirects included
            (:class:`~fetchq.http.errors.RequestTimeout`); None: no deadline
            beyond the phases' own.
        max_body: most body bytes, counted decoded while streaming; a larger
            Content-Length is refused before reading, and the connection is
            dropped once the limit is passed.
        max_redirects: redirects followed, each checked like the first URL
            (0: a redirect fails with ``TooManyRedirects``).
        allowed_schemes: schemes that may be fetched, first URL or redirect.
        allow_private: if False, refuse private, loopback, link-local,
            multicast, reserved, unspecified and other non-public addresses,
            checked on the resolved addresses of every connection.
        ok_statuses: statuses that make a result (others put here, say 404,
            are results too; a redirect status put here is not followed).
        retry_statuses: statuses retried with backoff (``RetryableStatus``) or
            after their Retry-After (``HTTPRetryAfter``).
        throttle_statuses: statuses that mean "slow down" (``HTTPThrottled``):
            retried after Retry-After, holding the host's lane meanwhile.
        max_retry_after: the cap on a server's Retry-After, in seconds.
        default_retry_after: the delay of a throttle without Retry-After.
        save_dir: a directory to save bodies in, or None to only hash them.
        save_name: ``"sha256"`` (content-addressed) or ``"id"`` (the job id;
            the sha256 when the job has none).
        proxy: a proxy for every URL, ``http://[user:password@]host:port``
            (``https://`` for TLS to the proxy; see :mod:`fetchq.http.proxy`),
            ``"none"`` for no proxy at all, or None for the environment's
            (``HTTPS_PROXY``, ...) when ``trust_env``.  One with credentials
            is kept as a Secret.
        trust_env: read ``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY`` and
            ``NO_PROXY`` (lower case too) from the environment, as curl and
            httpx do.
        no_proxy: hosts reached directly (``NO_PROXY`` syntax, or a list),
            or None for the environment's (when ``trust_env``).
        ca_bundle: a PEM file of the CAs to trust instead of the system's.
        client_cert: a PEM file with a client certificate to present (mTLS),
            and its key unless ``client_key`` is given.
        client_key: a PEM file with the client certificate's unencrypted key.
        verify: False to check no server certificate at all (the user must
            be warned; a run does so).
        host_headers: headers for some hosts only, ``{"api.example.com":
            {"Authorization": ...}}``; ``*.example.com`` matches the names
            under example.com.  Matched on each request's host (redirects
            included), so never sent to another host; they replace
            ``headers`` of the same name, and are not sent again over plain
            http after a redirect from https.
        robots: ``"obey"`` to read each site's robots.txt and fetch nothing
            it disallows (see :mod:`fetchq.fetch.robots`); ``"ignore"``.
        http: ``"treq"``: every request through treq's ``Agent``;
            ``"lean"``: bodyless GETs not sent through a proxy go through
            :class:`~fetchq.http.lean.LeanAgent` (Twisted protocol and the
            ``httptools`` parser: the same guards, caps and timeouts, a
            fraction of the CPU), the rest through the Agent.
    """

    method: str = attrs.field(default="GET", converter=_method)
    headers: _Pairs = attrs.field(default=(), converter=_headers)
    params: _Pairs = attrs.field(default=(), converter=_params)
    body: bytes | None = attrs.field(default=None, validator=_body)
    connect_timeout: float = attrs.field(default=10.0, validator=positive_number)
    headers_timeout: float = attrs.field(default=30.0, validator=positive_number)
    body_timeout: float = attrs.field(default=60.0, validator=positive_number)
    timeout: float | None = attrs.field(
        default=None, validator=optional_positive_number
    )
    max_body: int = attrs.field(default=10 * 1024 * 1024, validator=integer_at_least(1))
    max_redirects: int = attrs.field(default=5, validator=integer_at_least(0))
    allowed_schemes: tuple[str, ...] = attrs.field(
        default=DEFAULT_SCHEMES, converter=_schemes
    )
    allow_private: bool = attrs.field(default=True, validator=_bool)
    ok_statuses: frozenset[int] = attrs.field(
        default=frozenset(range(200, 300)), converter=_statuses
    )
    retry_statuses: frozenset[int] = attrs.field(
        default=frozenset({408, 429, 500, 502, 503, 504}), converter=_statuses
    )
    throttle_statuses: frozenset[int] = attrs.field(
        default=frozenset({429, 503}), converter=_statuses
    )
    max_retry_after: float = attrs.field(default=300.0, validator=non_negative_number)
    default_retry_after: float = attrs.field(default=1.0, validator=non_negative_number)
    save_dir: str | None = attrs.field(default=None, converter=_save_dir)
    save_name: Literal["sha256", "id"] = attrs.field(
        default="sha256", validator=_save_name
    )
    proxy: str | Secret | None = attrs.field(default=None, converter=_proxy)
    trust_env: bool = attrs.field(default=True, validator=_bool)
    no_proxy: str | None = attrs.field(default=None, converter=_no_proxy)
    ca_bundle: str | None = attrs.field(default=None, converter=_path)
    client_cert: str | None = attrs.field(default=None, converter=_path)
    client_key: str | None = attrs.field(default=None, converter=_path)
    verify: bool = attrs.field(default=True, validator=_bool)
    host_headers: tuple[tuple[str, _Pairs], ...] = attrs.field(
        default=(), converter=_host_headers
    )
    robots: Literal["obey", "ignore"] = attrs.field(default="ignore", validator=_robots)
    http: Literal["treq", "lean"] = attrs.field(default="treq", validator=_http)

    def __attrs_post_init__(self) -> None:
        clash = self.ok_statuses & (self.retry_statuses | self.throttle_statuses)
        if clash:
            raise ValueError(
                f"statuses both ok and retried: {', '.join(map(str, sorted(clash)))}"
            )
        if self.save_dir is not None and not os.path.isdir(self.save_dir):
            raise ValueError(f"save_dir {self.save_dir!r} is not a directory")
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key needs client_cert")
