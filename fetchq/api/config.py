"""What an API call does: one frozen, validated configuration value, and the
templates that turn an input row into a request.

A request is described once and filled from each input row: ``{field}`` in
the path, in query parameter values and in the JSON body's strings is
replaced by the row's field::

    ApiConfig(
        base_url="https://api.x.com",
        path="/2/users/{id}/tweets",          # {id} URL-quoted into the path
        params={"max_results": "100", "since_id": "{since}"},
        token=Secret(os.environ["X_BEARER_TOKEN"]),
        max_pages=5,                           # follow meta.next_token
        records="item",                        # one record per tweet
    )

``{{`` and ``}}`` are literal braces.  A body string that is exactly one
placeholder (``"{count}"``) takes the field's value as it is (a number stays a
number, a list a list); anywhere else a value is written as text (``true``/
``false`` for booleans).  A value that cannot fill its place raises
:class:`~fetchq.api.errors.BadRequestRow` naming the field and the place.
"""

from __future__ import annotations

import json
import math
import string
from collections.abc import Iterable, Mapping
from typing import Any, Literal
from urllib.parse import quote

import attrs

from fetchq._validate import (
    integer_at_least,
    non_negative_number,
    optional_positive_number,
    positive_number,
)
from fetchq.api.errors import BadRequestRow
from fetchq.fetch.config import DEFAULT_USER_AGENT
from fetchq.http.errors import BadURL
from fetchq.http.urls import check_url
from fetchq.secrets import Secret, reveal

__all__ = ["ApiConfig", "Template"]

_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")
_IDENTIFIER_START = frozenset(string.ascii_letters + "_")
_IDENTIFIER = frozenset(string.ascii_letters + string.digits + "_")
_Pairs = tuple[tuple[str, str | Secret], ...]


def _field_name(name: str) -> bool:
    return bool(name) and name[0] in _IDENTIFIER_START and set(name) <= _IDENTIFIER


@attrs.frozen
class Template:
    """A text with ``{field}`` placeholders.

    Attributes:
        text: the template as written.
        parts: ``(literal, field)`` pairs in order; ``field`` is None after
            the last placeholder.
    """

    text: str
    parts: tuple[tuple[str, str | None], ...]

    @classmethod
    def parse(cls, text: str, where: str) -> Template:
        """Parse ``text``; ``where`` names it in errors.

        Raises:
            ValueError: for an unmatched brace, an empty ``{}``, a name that is
                not letters, digits and underscores, or a format spec.
        """
        if not isinstance(text, str):
            raise ValueError(f"{where} must be text, not {text!r}")
        parts: list[tuple[str, str | None]] = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as e:
            raise ValueError(
                f"{where}: {e} in {text!r} (write {{{{ for a brace)"
            ) from None
        for literal, name, spec, conversion in parsed:
            if name is not None:
                if not _field_name(name):
                    raise ValueError(
                        f"{where}: bad placeholder {{{name}}} in {text!r}: expected "
                        "{field} with letters, digits and underscores"
                    )
                if spec or conversion:
                    raise ValueError(
                        f"{where}: placeholder {{{name}}} in {text!r} takes no "
                        "format or conversion"
                    )
            parts.append((literal, name))
        return cls(text, tuple(parts))

    @property
    def fields(self) -> tuple[str, ...]:
        """The placeholders' field names, in order (repeats kept)."""
        return tuple(name for _, name in self.parts if name is not None)

    @property
    def whole(self) -> str | None:
        """The field name if the template is exactly one placeholder."""
        if len(self.parts) == 1 and not self.parts[0][0]:
            return self.parts[0][1]
        return None

    def fill(self, row: Mapping[str, Any], where: str, *, in_path: bool = False) -> str:
        """The text with each placeholder replaced by its field.

        Args:
            row: the input row.
            where: names the place in errors (``"path"``, ``"param 'q'"``).
            in_path: URL-quote each value (``/`` too), and refuse empty
                values and ``.``/``..``, which would change the path.

        Raises:
            BadRequestRow: for a missing field or a value that does not fit.
        """
        out: list[str] = []
        for literal, name in self.parts:
            out.append(literal)
            if name is None:
                continue
            text = _text(row, name, where, self.text)
            if in_path:
                if text in ("", ".", ".."):
                    shown = "empty" if not text else f"{text!r}"
                    raise BadRequestRow(
                        f"field {name!r} is {shown}, which cannot fill {where} "
                        f"{self.text!r}",
                        name,
                    )
                text = quote(text, safe="")
            out.append(text)
        return "".join(out)


def _lookup(row: Mapping[str, Any], name: str, where: str, template: str) -> Any:
    try:
        return row[name]
    except KeyError:
        raise BadRequestRow(
            f"row has no field {name!r} (needed by {where} {template!r})", name
        ) from None


def _text(row: Mapping[str, Any], name: str, where: str, template: str) -> str:
    value = _lookup(row, name, where, template)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    kind = "null" if value is None else type(value).__name__
    raise BadRequestRow(
        f"field {name!r} is {kind}; {where} {template!r} needs text or a number",
        name,
    )


# ----------------------------------------------------------------------
# Converters and validators


def _method(value: str) -> str:
    if not isinstance(value, str) or not value or not set(value) <= _TOKEN_CHARS:
        raise ValueError(f"bad HTTP method {value!r}")
    return value.upper()


def _base_url(value: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"base_url must be text, not {value!r}")
    try:
        url = check_url(value)
    except BadURL as e:
        raise ValueError(f"base_url: {e}") from None
    if url.query or url.fragment:
        raise ValueError(f"base_url must have no query or fragment: {value!r}")
    return value.strip().rstrip("/")


def _path(value: str) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"path must be text starting with '/', not {value!r}")
    if "?" in value or "#" in value:
        raise ValueError(f"path must have no query or fragment (use params): {value!r}")
    Template.parse(value, "path")
    return value


def _token(value: str | Secret | None) -> Secret | None:
    if value is None or isinstance(value, Secret):
        if isinstance(value, Secret) and not value.reveal():
            raise ValueError("token is empty")
        return value
    if not isinstance(value, str):
        raise ValueError(
            f"token must be text, a Secret or None, not {type(value).__name__}"
        )
    if not value:
        raise ValueError("token is empty")
    return Secret(value)  # masked in repr(config) and in messages


def _pairs(value: Any, what: str) -> list[tuple[str, Any]]:
    items = value.items() if isinstance(value, Mapping) else value
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise ValueError(f"{what} must be a mapping or name/value pairs, not {value!r}")
    pairs = []
    for item in items:
        try:
            name, text = item
        except (TypeError, ValueError):
            raise ValueError(f"{what} must be name/value pairs, not {item!r}") from None
        if not isinstance(name, str) or not name:
            raise ValueError(f"{what} names must be non-empty text: {item!r}")
        pairs.append((name, text))
    return pairs


def _headers(value: Any) -> _Pairs:
    pairs: list[tuple[str, str | Secret]] = []
    for name, text in _pairs(value, "headers"):
        if not set(name) <= _TOKEN_CHARS:
            raise ValueError(f"bad header name {name!r}")
        if not isinstance(text, (str, Secret)):
            raise ValueError(f"header {name!r} must be text, not {text!r}")
        if "\r" in reveal(text) or "\n" in reveal(text):
            raise ValueError(f"header {name!r} has a line break in its value")
        pairs.append((name, text))
    names = {name.lower() for name, _ in pairs}
    if "user-agent" not in names:
        pairs.insert(0, ("User-Agent", DEFAULT_USER_AGENT))
    if "accept" not in names:
        pairs.insert(1, ("Accept", "application/json"))
    return tuple(pairs)


def _params(value: Any) -> _Pairs:
    pairs: list[tuple[str, str | Secret]] = []
    for name, text in _pairs(value, "params"):
        if isinstance(text, bool) or not isinstance(text, (str, Secret, int, float)):
            raise ValueError(f"param {name!r} must be text or a number, not {text!r}")
        if isinstance(text, (int, float)):
            text = str(text)
        if isinstance(text, str):
            Template.parse(text, f"param {name!r}")
        pairs.append((name, text))
    return tuple(pairs)


def _json_template(value: Any, where: str = "body") -> None:
    """Check a JSON body template: JSON values only, strings parse."""
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} has a number JSON cannot hold: {value!r}")
        return
    if isinstance(value, str):
        Template.parse(value, where)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where} has a non-text key {key!r}")
            _json_template(item, f"{where}.{key}")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _json_template(item, f"{where}[{i}]")
        return
    raise ValueError(f"{where} holds {type(value).__name__}, which is not JSON")


def _body(value: Any) -> Any:
    _json_template(value)
    return None if value is None else json.loads(json.dumps(value))  # a deep copy


def _dotted(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{attribute.name} must be a dotted path, not {value!r}")
    if value and not all(value.split(".")):
        raise ValueError(f"{attribute.name} has an empty part: {value!r}")


def _param_name(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name} must be a parameter name, not {value!r}")


def _style(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    from fetchq.api.pages import STYLES

    if value not in STYLES:
        raise ValueError(
            f"pagination must be one of {', '.join(STYLES)}, not {value!r}"
        )


def _optional_size(
    instance: object, attribute: attrs.Attribute[Any], value: Any
) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or value < 1
    ):
        raise ValueError(f"page_size must be an integer >= 1 or None, not {value!r}")


def _records(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in ("page", "item"):
        raise ValueError(f"records must be 'page' or 'item', not {value!r}")


@attrs.frozen
class ApiConfig:
    """How to call one endpoint of a JSON API, and how to read its answers.

    Every value is checked at construction; a bad one raises ``ValueError``
    naming the field.  Change a value with ``attrs.evolve(config, ...)``.

    Args:
        base_url: scheme, host and optional path prefix (``https://api.x.com``).
        path: the path template, ``{field}`` placeholders filled from the row
            and URL-quoted (``/2/users/{id}/tweets``).
        method: the HTTP method.
        token: the bearer token, sent as ``Authorization: Bearer ...``; a
            :class:`~fetchq.secrets.Secret` (a plain string is wrapped in
            one, so it never shows in a repr), or None to send none.
        params: query parameters, a mapping or pairs; values may hold
            ``{field}`` templates (a ``Secret`` value is used as it is, and
            masked in output).
        body: a JSON body template (any JSON value; strings are templates),
            or None for no body.
        headers: extra request headers (values may be ``Secret``); a
            ``User-Agent`` and ``Accept: application/json`` are added unless
            given.  Give the token as ``token``, not as an Authorization header.
        connect_timeout: seconds to connect (when the caller makes its own
            HTTP client; an injected one brings its own).
        headers_timeout: seconds from sending to the response headers
            (connecting included).
        body_timeout: seconds from the headers to the whole body.
        timeout: seconds for the whole call, from sending to the end of the
            body; None: no deadline beyond the phases' own.  (Before fetchq
            0.2 ``timeout`` was what ``headers_timeout`` is now.)
        max_body: most body bytes read.
        token_field: dotted path of the next page's token in the answer
            (``""``: no pagination).
        token_param: the query parameter that carries it on the next request
            (``pagination_token``, ``next_token``, ``cursor``, ...).
        max_pages: most pages per row (1: the first page only).
        pagination: how the next page is found (see :mod:`fetchq.api.pages`):
            ``"token"`` (``token_field``/``token_param``), ``"link"`` (the
            ``Link`` header's ``rel="next"``), ``"next_url"`` (a URL at
            ``next_field``), ``"page"`` (``page_param`` counting from
            ``page_start``) or ``"offset"`` (``offset_param``).
        next_field: dotted path of the next page's URL (``next_url``):
            ``next_page_uri`` at Twilio, ``next`` in Django REST framework.
        page_param: the page number's query parameter (``page``).
        page_start: the first page's number (1; Twilio's ``Page`` is 0).
        offset_param: the offset's query parameter (``offset``).
        page_size: items a full page has (``page`` and ``offset``): a page
            with fewer is the last; None: only an empty page is.
        total_field: dotted path of the total item count in a body
            (``page`` and ``offset``): the pages end when it is reached;
            ``""``: none.
        records: ``"page"`` (one output record per page) or ``"item"`` (one per
            item of ``items_field``).
        items_field: dotted path of the page's items (``""``: the body itself).
        default_retry_after: the wait after a throttle that gave neither
            Retry-After nor a reset, and the hold for a spent quota whose reset
            is unknown.
        max_retry_after: the cap on any wait a server asks for.
        min_retry_after: the least wait after a refusal (429, secondary 403),
            whatever the server said: a reset already past means our clocks
            disagree, and retrying at once would only be refused again.
        reset_margin: seconds added to every announced reset before the lane
            opens again, for clock skew between us and the server.
        window: the length of the endpoint's quota window in seconds, as its
            provider documents it (None: unknown).  Every window is that
            long and holds the requests it counted, so it ends at the latest
            that long after its first answer: earlier than a reset announced
            in whole seconds, rounded up, often is.
    """

    base_url: str = attrs.field(converter=_base_url)
    path: str = attrs.field(converter=_path)
    method: str = attrs.field(default="GET", converter=_method)
    token: Secret | None = attrs.field(default=None, converter=_token)
    params: _Pairs = attrs.field(default=(), converter=_params)
    body: Any = attrs.field(default=None, converter=_body)
    headers: _Pairs = attrs.field(default=(), converter=_headers)
    connect_timeout: float = attrs.field(default=10.0, validator=positive_number)
    headers_timeout: float = attrs.field(default=30.0, validator=positive_number)
    body_timeout: float = attrs.field(default=60.0, validator=positive_number)
    timeout: float | None = attrs.field(
        default=None, validator=optional_positive_number
    )
    max_body: int = attrs.field(default=10 * 1024 * 1024, validator=integer_at_least(1))
    token_field: str = attrs.field(default="meta.next_token", validator=_dotted)
    token_param: str = attrs.field(default="pagination_token", validator=_param_name)
    max_pages: int = attrs.field(default=1, validator=integer_at_least(1))
    pagination: Literal["token", "link", "next_url", "page", "offset"] = attrs.field(
        default="token", validator=_style
    )
    next_field: str = attrs.field(default="next", validator=_dotted)
    page_param: str = attrs.field(default="page", validator=_param_name)
    page_start: int = attrs.field(default=1, validator=integer_at_least(0))
    offset_param: str = attrs.field(default="offset", validator=_param_name)
    page_size: int | None = attrs.field(default=None, validator=_optional_size)
    total_field: str = attrs.field(default="", validator=_dotted)
    records: Literal["page", "item"] = attrs.field(default="page", validator=_records)
    items_field: str = attrs.field(default="data", validator=_dotted)
    default_retry_after: float = attrs.field(
        default=60.0, validator=non_negative_number
    )
    max_retry_after: float = attrs.field(default=86400.0, validator=non_negative_number)
    min_retry_after: float = attrs.field(default=1.0, validator=non_negative_number)
    reset_margin: float = attrs.field(default=1.0, validator=non_negative_number)
    window: float | None = attrs.field(default=None, validator=optional_positive_number)

    def __attrs_post_init__(self) -> None:
        if self.min_retry_after > self.max_retry_after:
            raise ValueError(
                f"min_retry_after {self.min_retry_after:g} is more than "
                f"max_retry_after {self.max_retry_after:g}"
            )
        if self.token is not None and any(
            name.lower() == "authorization" for name, _ in self.headers
        ):
            raise ValueError("give either token or an Authorization header, not both")
        per_page = {
            "token": ("token_param", self.token_param),
            "page": ("page_param", self.page_param),
            "offset": ("offset_param", self.offset_param),
        }.get(self.pagination)
        if per_page is not None and any(name == per_page[1] for name, _ in self.params):
            raise ValueError(
                f"param {per_page[1]!r} is the {per_page[0]}; it is set per page"
            )
        if self.pagination == "next_url" and not self.next_field:
            raise ValueError("pagination next_url needs a next_field")

    @property
    def endpoint(self) -> str:
        """The endpoint: method and path template (``GET /2/users/{id}/tweets``).
        Also the queue lane key of every call made under this configuration."""
        return f"{self.method} {self.path}"

    @property
    def fields(self) -> frozenset[str]:
        """Every row field a request needs (path, params and body)."""
        names = set(Template.parse(self.path, "path").fields)
        for name, value in self.params:
            if isinstance(value, str):
                names.update(Template.parse(value, f"param {name!r}").fields)
        names.update(_body_fields(self.body))
        return frozenset(names)

    def fill_path(self, row: Mapping[str, Any]) -> str:
        """The path with the row's fields URL-quoted into it."""
        return Template.parse(self.path, "path").fill(row, "path", in_path=True)

    def fill_params(self, row: Mapping[str, Any]) -> list[tuple[str, str | Secret]]:
        """The query parameters filled from the row (``Secret`` values kept)."""
        filled: list[tuple[str, str | Secret]] = []
        for name, value in self.params:
            if isinstance(value, str):
                where = f"param {name!r}"
                value = Template.parse(value, where).fill(row, where)
            filled.append((name, value))
        return filled

    def fill_body(self, row: Mapping[str, Any]) -> bytes | None:
        """The JSON body filled from the row, encoded, or None."""
        if self.body is None:
            return None
        value = _fill_json(self.body, row, "body")
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _body_fields(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(Template.parse(value, "body").fields)
    if isinstance(value, Mapping):
        return set().union(*(_body_fields(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_body_fields(v) for v in value))
    return set()


def _fill_json(value: Any, row: Mapping[str, Any], where: str) -> Any:
    if isinstance(value, str):
        template = Template.parse(value, where)
        whole = template.whole
        if whole is not None:
            found = _lookup(row, whole, where, value)
            try:
                json.dumps(found, allow_nan=False)
            except (TypeError, ValueError):
                raise BadRequestRow(
                    f"field {whole!r} is not a JSON value (needed by {where})", whole
                ) from None
            return found
        return template.fill(row, where)
    if isinstance(value, Mapping):
        return {k: _fill_json(v, row, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_json(v, row, f"{where}[{i}]") for i, v in enumerate(value)]
    return value
