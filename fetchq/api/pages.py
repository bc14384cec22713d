"""Pagination: how the next page of an API's answer is found and asked for.

Five styles, as real APIs page (``ApiConfig.pagination``)::

    style     the next page is...                          as at
    --------  -------------------------------------------  ---------------------
    token     a token in the body (token_field), sent as   X (meta.next_token,
              a query parameter (token_param)              pagination_token)
    link      the Link header's rel="next" URL (RFC 8288)  GitHub, GitLab
    next_url  a URL in the body (next_field), resolved     Twilio (next_page_uri),
              against the request's URL                    Django REST (next)
    page      the page number + 1 (page_param, from        many: ?page=2
              page_start)
    offset    the offset + the items of this page          many: ?offset=100
              (offset_param)

What is carried from one page to the next is a *cursor*: the token, the next
URL, or the page number or offset as text (:attr:`ApiRequest.token
<fetchq.api.ApiRequest.token>`, kept in the state as it is).

**Where a URL may lead.**  A next URL (link, next_url) is followed only to
the origin of ``base_url`` (same scheme, host and port): the bearer token
goes with every request, and a server (or whoever controls a response) must
not be able to send it elsewhere.  A URL to another origin ends the row's
pages, with a warning in the log.

**When it ends.**  No token, no next link or URL, or, for page and offset,
an empty page, a page with fewer items than ``page_size`` (when given), or
the items seen reaching the body's ``total_field`` (when given); and always
``max_pages``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import attrs
from twisted.logger import Logger

if TYPE_CHECKING:
    from fetchq.api.caller import ApiRequest
    from fetchq.api.config import ApiConfig

__all__ = [
    "STYLES",
    "Link",
    "next_cursor",
    "page_url",
    "parse_links",
    "same_origin",
]

STYLES = ("token", "link", "next_url", "page", "offset")
"""The pagination styles (see the module docstring)."""

log = Logger(namespace="fetchq.api.pages")

_DEFAULT_PORTS = {"http": 80, "https": 443}
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


@attrs.frozen
class Link:
    """One link of a ``Link`` header (RFC 8288).

    Attributes:
        target: the URI reference between ``<`` and ``>``, as written.
        rels: its relation types, lower case (``rel="next last"`` is two).
        params: its other parameters, names lower case, values unquoted
            (the first of each name).
    """

    target: str
    rels: tuple[str, ...]
    params: Mapping[str, str] = attrs.field(factory=dict)


def parse_links(values: Sequence[str]) -> list[Link]:
    """Every link of one or more ``Link`` header values, in order.

    Follows RFC 8288's grammar: ``<target>`` then ``;``-separated parameters
    whose values are tokens or quoted strings (``\\"`` escapes, and commas
    or semicolons inside quotes are text); links are separated by commas.
    A malformed link is skipped, not raised on: the rest still count.
    """
    links: list[Link] = []
    for value in values:
        links.extend(_links(value))
    return links


def _links(text: str) -> list[Link]:
    found: list[Link] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t,":
            i += 1
        if i >= n:
            break
        if text[i] != "<":
            i = _skip_link(text, i)
            continue
        end = text.find(">", i + 1)
        if end < 0:
            break
        target = text[i + 1 : end].strip()
        i = end + 1
        params: dict[str, str] = {}
        rels: list[str] = []
        ok = True
        while True:
            while i < n and text[i] in " \t":
                i += 1
            if i >= n or text[i] == ",":
                break
            if text[i] != ";":
                ok = False
                i = _skip_link(text, i)
                break
            i += 1
            while i < n and text[i] in " \t":
                i += 1
            start = i
            while i < n and text[i] in _TOKEN_CHARS:
                i += 1
            name = text[start:i].lower()
            while i < n and text[i] in " \t":
                i += 1
            value = ""
            if i < n and text[i] == "=":
                i += 1
                while i < n and text[i] in " \t":
                    i += 1
                if i < n and text[i] == '"':
                    value, i = _quoted(text, i)
                else:
                    start = i
                    while i < n and text[i] not in ";, \t":
                        i += 1
                    value = text[start:i]
            if not name:
                continue
            if name == "rel" and "rel" not in params:
                rels = [r.lower() for r in value.split()]
            params.setdefault(name, value)
        if ok and target is not None:
            params.pop("rel", None)
            found.append(Link(target, tuple(rels), params))
    return found


def _quoted(text: str, i: int) -> tuple[str, int]:
    """A quoted string starting at ``text[i] == '"'``: (its value, the index
    after it)."""
    out: list[str] = []
    i += 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if char == '"':
            return "".join(out), i + 1
        out.append(char)
        i += 1
    return "".join(out), i


def _skip_link(text: str, i: int) -> int:
    """The index after the comma that ends a malformed link (quotes kept)."""
    quoted = False
    while i < len(text):
        char = text[i]
        if quoted and char == "\\":
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            return i + 1
        i += 1
    return i


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme)


def same_origin(url: str, base_url: str) -> bool:
    """Whether ``url`` has the scheme, host and port of ``base_url``."""
    return _origin(url) == _origin(base_url)


def _dig(document: Any, dotted: str) -> Any:
    if not dotted:
        return document
    for part in dotted.split("."):
        if not isinstance(document, Mapping) or part not in document:
            return None
        document = document[part]
    return document


def _number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def next_cursor(
    config: ApiConfig,
    request: ApiRequest,
    url: str,
    document: Any,
    items: Sequence[Any],
    headers: Sequence[tuple[str, str]],
) -> str | None:
    """The next page's cursor, or None on the last page.

    Args:
        config: the endpoint's configuration (its pagination settings).
        request: the request this page answers.
        url: the URL it was sent to (next URLs are resolved against it).
        document: the decoded body.
        items: the page's items.
        headers: the answer's headers as name/value pairs.
    """
    style = config.pagination
    if style == "token":
        if not config.token_field:
            return None
        return _token(_dig(document, config.token_field))
    if style in ("link", "next_url"):
        if style == "link":
            values = [v for name, v in headers if name.lower() == "link"]
            target = next(
                (link.target for link in parse_links(values) if "next" in link.rels),
                None,
            )
        else:
            found = _dig(document, config.next_field)
            target = found if isinstance(found, str) and found.strip() else None
        if target is None:
            return None
        absolute = urljoin(url, target.strip())
        if not same_origin(absolute, config.base_url):
            log.warn(
                "not following a next page at another origin: {url}",
                url=_masked(config, absolute),
                event="api.next_elsewhere",
            )
            return None
        return absolute
    # page and offset: counted here
    if not items:
        return None
    size = config.page_size
    if size is not None and len(items) < size:
        return None
    if style == "page":
        seen = (request.page - 1) * (size or len(items)) + len(items)
        following = str(config.page_start + request.page)
    else:
        seen = (_number(request.token) or 0) + len(items)
        following = str(seen)
    if config.total_field:
        total = _number(_dig(document, config.total_field))
        if total is not None and seen >= total:
            return None
    return following


def _token(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return None


def page_url(
    config: ApiConfig, request: ApiRequest, sent: str, shown: str
) -> tuple[str, str]:
    """The URL to send for ``request`` and the one to show, given those of
    its first page (``sent``, and ``shown`` with secrets masked): the
    cursor's parameter added, or the next URL itself."""
    cursor = request.token
    if cursor is None:
        return sent, shown
    style = config.pagination
    if style in ("link", "next_url"):
        return cursor, _masked(config, cursor)
    name = {
        "token": config.token_param,
        "page": config.page_param,
        "offset": config.offset_param,
    }[style]
    extra = urlencode([(name, cursor)])
    join = "&" if "?" in sent else "?"
    return sent + join + extra, shown + join + extra


def _masked(config: ApiConfig, url: str) -> str:
    """``url`` with the values of the configured secret parameters shown as
    ``***`` (a next URL repeats the query it was asked with)."""
    from fetchq.secrets import Secret

    secret = {name for name, value in config.params if isinstance(value, Secret)}
    if not secret:
        return url
    parts = urlsplit(url)
    query = [
        (name, "***" if name in secret else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))
