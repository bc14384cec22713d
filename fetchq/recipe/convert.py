"""Converters: YAML nodes to typed values, with located, precise messages.

A converter takes a YAML node, a :class:`Context` and the key's dotted path,
and returns the typed value or raises :class:`Invalid`.  A converter that can
find several problems in one value (a mapping of headers, a list of
statuses) reports them through the context and carries on.  Each converter
also says, in words, what it accepts (:attr:`Conv.doc`), for the reference.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import string
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from fetchq.recipe.env import EnvError, Secret, expand
from fetchq.recipe.errors import Problem
from fetchq.recipe.model import StatusSet
from fetchq.recipe.units import (
    DURATION_PATTERN,
    RATE_PATTERN,
    SIZE_PATTERN,
    format_duration,
    parse_duration,
    parse_rate,
    parse_size,
)

__all__ = [
    "Context",
    "Conv",
    "Invalid",
    "Unset",
    "boolean",
    "choice",
    "describe",
    "dotted",
    "duration",
    "flow_placeholder",
    "host_headers",
    "host_list",
    "identifier",
    "integer",
    "is_null",
    "join",
    "json_value",
    "listen_address",
    "method",
    "path",
    "proxy_url",
    "rate",
    "secret",
    "secret_text",
    "sender",
    "size",
    "statuses",
    "string_map",
    "template",
    "template_fields",
    "template_nodes",
    "text",
    "url",
]

_NULL = "tag:yaml.org,2002:null"
_STR = "tag:yaml.org,2002:str"
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_METHOD = re.compile(r"[A-Z][A-Z0-9_-]*")
_STATUS_CLASS = re.compile(r"([1-5])xx", re.IGNORECASE)
_STATUS_RANGE = re.compile(r"(\d{3})\s*-\s*(\d{3})")
_SENSITIVE = ("auth", "cookie", "token", "secret", "password", "key", "session")
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_MERGE = "tag:yaml.org,2002:merge"
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_IDENTIFIER = re.compile(r"[A-Za-z0-9_-]+")
_REFERENCES = re.compile(r"\$\$\{|\$\{[^}]*\}")
_MAX_JSON_DEPTH = 50
_CIDR = re.compile(r"[0-9A-Fa-f:.]+/[0-9]{1,3}")


class Unset(Exception):
    """A value names environment variables that are not set, and the recipe
    is checked without its environment (``fetchq validate --no-env``): the
    value cannot be checked, and is not wrong.

    Args:
        names: the variables not set.
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__(", ".join(names))
        self.names = names


class Invalid(Exception):
    """A value is wrong.

    Args:
        message: what is wrong (the loader prefixes the key's dotted path).
        node: the node to point at, if not the value's own node.
    """

    def __init__(self, message: str, node: Node | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.node = node


@attrs.define
class Context:
    """What converters and checks need while one recipe is loaded.

    Attributes:
        path: the recipe file as the user named it (for problems).
        base: the recipe's directory (absolute), for relative paths.
        environ: where ``${NAME}`` references are looked up.
        problems: everything found wrong so far.
        nodes: the value node of every key given, by dotted path.
        keys: the key node of every key given, by dotted path.
        origins: the names that the marks of nodes from command-line
            overrides carry (``--set queue.width=8``), each with its place
            in the order given: a problem at such a node names the override
            instead of a line of the file.
        no_env: ``${NAME}`` of a variable that is not set (or empty) is not
            a problem: the value is left unchecked (see :class:`Unset`).
        unchecked: the dotted paths of values left unchecked that way, each
            with the variables it names.
    """

    path: str
    base: Path
    environ: Mapping[str, str]
    problems: list[Problem] = attrs.Factory(list)
    nodes: dict[str, Node] = attrs.Factory(dict)
    keys: dict[str, Node] = attrs.Factory(dict)
    constructor: SafeConstructor = attrs.Factory(SafeConstructor)
    origins: dict[str, int] = attrs.Factory(dict)
    no_env: bool = False
    unchecked: dict[str, tuple[str, ...]] = attrs.Factory(dict)

    def report(self, node: Node | None, message: str) -> None:
        """Record a problem at ``node`` (the top of the file if None)."""
        line = column = 1
        origin = None
        if node is not None:
            line, column = node.start_mark.line + 1, node.start_mark.column + 1
            if node.start_mark.name in self.origins:
                origin, line, column = node.start_mark.name, 1, 1
        self.problems.append(Problem(self.path, line, column, message, origin))

    def expand(self, text: str) -> tuple[str, tuple[str, ...]]:
        """``${NAME}`` references in ``text`` expanded from :attr:`environ`.

        Raises:
            Invalid: for a malformed reference or an unset or empty variable.
            Unset: instead, with :attr:`no_env`, for variables not set (or
                empty) in a well-formed text.
        """
        try:
            return expand(text, self.environ)
        except EnvError as exc:
            if self.no_env and exc.unset:
                raise Unset(exc.unset) from None
            raise Invalid(str(exc)) from None

    def given(self, where: str) -> bool:
        """Whether the recipe itself holds the key at dotted path ``where``."""
        return where in self.nodes

    def locate(self, *paths: str) -> Node | None:
        """The value node of the first of ``paths`` given in the recipe, or
        else of the nearest given section enclosing the first."""
        for where in paths:
            if where in self.nodes:
                return self.nodes[where]
        where = paths[0]
        while "." in where:
            where = where.rsplit(".", 1)[0]
            if where in self.nodes:
                return self.nodes[where]
        return None

    def scalar(self, node: Node, expected: str) -> object:
        """The Python value of a scalar node.

        Raises:
            Invalid: for a list or mapping (``expected ..., got a list``) or a
                value YAML cannot build (an unknown ``!tag``).
        """
        if not isinstance(node, ScalarNode):
            raise Invalid(f"expected {expected}, got {describe(node)}")
        try:
            return self.constructor.construct_object(node)
        except yaml.constructor.ConstructorError:
            raise Invalid(
                f"the YAML tag {_short_tag(node.tag)!r} is not allowed in a recipe"
            ) from None
        except (yaml.YAMLError, ValueError, TypeError):
            raise Invalid(
                f"expected {expected}, got {node.value!r} tagged "
                f"{_short_tag(node.tag)!r}"
            ) from None


def _short_tag(tag: str) -> str:
    prefix = "tag:yaml.org,2002:"
    return "!!" + tag[len(prefix) :] if tag.startswith(prefix) else tag


def describe(node: Node) -> str:
    """A short description of a value for ``got ...`` messages."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "nothing" if node.value in ("", "~") else str(node.value)
    text = str(node.value)
    if node.tag == _STR:
        text = repr(text)
    return text if len(text) <= 50 else text[:47] + "..."


def join(where: str, name: str) -> str:
    """The dotted path of key ``name`` in the section at ``where``."""
    return f"{where}.{name}" if where else name


def is_null(node: Node) -> bool:
    """Whether ``node`` is YAML's null (``~``, ``null`` or nothing at all)."""
    return isinstance(node, ScalarNode) and node.tag == _NULL


# ---------------------------------------------------------------------------
# Converters


Convert = Callable[[Node, Context, str], Any]


@attrs.frozen
class Conv:
    """A converter and the type it accepts: in words (for the reference) and
    as a JSON Schema (for editors; :mod:`fetchq.recipe.jsonschema`), which
    checks the shape of a value where the converter checks everything."""

    doc: str
    func: Convert
    json: Mapping[str, Any] = attrs.field(factory=dict)

    def __call__(self, node: Node, ctx: Context, where: str) -> Any:
        return self.func(node, ctx, where)


def _or_null(schema: Mapping[str, Any], nullable: bool = True) -> dict[str, Any]:
    """``schema`` (whose ``type`` is a name or a list of names), or also null
    when ``nullable``.  Schemas stay flat (one ``type`` list, each keyword
    applying to the types it concerns) so an editor's message names the
    keyword a value breaks rather than "not valid under any of"."""
    flat = dict(schema)
    if nullable:
        types = flat["type"]
        flat["type"] = [*(types if isinstance(types, list) else [types]), "null"]
    return flat


_POSITIVE = r"(?!\s*(?:0+\.?0*|\.0+)(?:[eE][+-]?[0-9]+)?\s*(?:[^0-9.\s]|$))"
"""A JSON Schema lookahead refusing text whose number is zero (``0/s``)."""


_ENV_TEXT = r"(?:[^$]|\$(?!\{)|\$\$\{|\$\{[A-Za-z_][A-Za-z0-9_]*\})*"
"""Text whose ``${...}`` references are well-formed (JSON Schema pattern)."""


def integer(minimum: int, *, nullable: bool = False, none: str = "") -> Conv:
    """An integer of at least ``minimum`` (or null, meaning ``none``)."""

    def convert(node: Node, ctx: Context, where: str) -> int | None:
        if nullable and is_null(node):
            return None
        value = ctx.scalar(node, "an integer")
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"expected an integer, got {describe(node)}")
        if value < minimum:
            raise Invalid(f"must be at least {minimum}, got {value}")
        return value

    doc = f"integer ≥ {minimum}" + (f", or null ({none})" if nullable else "")
    return Conv(
        doc, convert, _or_null({"type": "integer", "minimum": minimum}, nullable)
    )


def failure_limit() -> Conv:
    """A failure breaker's limit: a count in a row (``50``), a percentage of
    the finished jobs (``10%``) or ``0`` (never stop)."""

    def convert(node: Node, ctx: Context, where: str) -> Any:
        from fetchq.breaker import MaxFailures

        value = ctx.scalar(node, "a count (50) or a percentage (10%)")
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise Invalid(
                f"expected a count (50), a percentage (10%) or 0, got {describe(node)}"
            )
        try:
            return MaxFailures.parse(value)
        except ValueError as e:
            raise Invalid(str(e)) from None

    return Conv(
        "count of failures in a row (`50`), percentage of finished jobs "
        "(`10%`), or `0` (never)",
        convert,
        {
            "type": ["integer", "string"],
            "minimum": 0,
            "pattern": r"^\s*(?:[0-9]+|[0-9]{1,2}(?:\.[0-9]+)?\s*%)\s*$",
        },
    )


def boolean() -> Conv:
    """``true`` or ``false``."""

    def convert(node: Node, ctx: Context, where: str) -> bool:
        value = ctx.scalar(node, "true or false")
        if not isinstance(value, bool):
            raise Invalid(f"expected true or false, got {describe(node)}")
        return value

    return Conv("true or false", convert, {"type": "boolean"})


def choice(
    *options: str, nullable: bool = False, refuse: Mapping[str, str] | None = None
) -> Conv:
    """One of ``options``, with a "did you mean" for a near miss; a value in
    ``refuse`` gets its own message (a value other kinds accept, say)."""
    listed = ", ".join(options[:-1]) + " or " + options[-1]
    refused = refuse or {}

    def convert(node: Node, ctx: Context, where: str) -> str | None:
        if nullable and is_null(node):
            return None
        value = ctx.scalar(node, f"one of {listed}")
        if isinstance(value, str) and value in refused:
            raise Invalid(refused[value])
        if value not in options:
            hint = ""
            if isinstance(value, str):
                close = difflib.get_close_matches(value, options, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise Invalid(f"expected {listed}, got {describe(node)}{hint}")
        return str(value)

    return Conv(
        " | ".join(f"`{option}`" for option in options),
        convert,
        {"enum": [*options, *([None] if nullable else [])]},
    )


def text(*, nullable: bool = False) -> Conv:
    """A non-empty string (or null)."""

    def convert(node: Node, ctx: Context, where: str) -> str | None:
        if nullable and is_null(node):
            return None
        value = ctx.scalar(node, "a string")
        if not isinstance(value, str):
            raise Invalid(f"expected a string, got {describe(node)}")
        if not value.strip():
            raise Invalid("must not be empty")
        return value

    return Conv(
        "string" + (" or null" if nullable else ""),
        convert,
        _or_null({"type": "string", "pattern": r"\S"}, nullable),
    )


def listen_address() -> Conv:
    """Where a server listens: a port (``8765``, on 127.0.0.1) or
    ``HOST:PORT`` (``[::1]:8765`` for IPv6)."""

    def convert(node: Node, ctx: Context, where: str) -> str:
        from fetchq.admin.security import parse_listen

        value = ctx.scalar(node, "a port or HOST:PORT")
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise Invalid(f"expected a port or HOST:PORT, got {describe(node)}")
        try:
            parse_listen(str(value))
        except ValueError as e:
            raise Invalid(str(e)) from None
        return str(value)

    return Conv(
        "port (integer) or `HOST:PORT` string",
        convert,
        {"type": ["integer", "string"], "minimum": 0, "maximum": 65535},
    )


def path(*, existing_file: bool = False, nullable: bool = False) -> Conv:
    """A path relative to the recipe's directory, made absolute (or null)."""

    def convert(node: Node, ctx: Context, where: str) -> Path | None:
        if nullable and is_null(node):
            return None
        raw = ctx.scalar(node, "a path")
        if not isinstance(raw, str):
            raise Invalid(f"expected a path, got {describe(node)}")
        if not raw.strip():
            raise Invalid("must not be empty")
        if "\0" in raw:
            raise Invalid("a path cannot hold a NUL character")
        full = Path(os.path.normpath(ctx.base / raw))
        if existing_file:
            if not full.exists():
                raise Invalid(
                    f"file not found: {raw!r} (relative to the recipe's directory)"
                )
            if not full.is_file():
                raise Invalid(f"{raw!r} is not a file")
        return full

    doc = "path to an existing file" if existing_file else "path"
    schema: dict[str, Any] = {"type": "string", "pattern": r"\S"}
    if nullable:
        schema = {"anyOf": [schema, {"type": "null"}]}
    return Conv(doc + (", or null" if nullable else ""), convert, schema)


def duration(*, positive: bool, nullable: bool = False) -> Conv:
    """A duration (``10s``, ``250ms``, ``2m``, ``1h``; a bare number is
    seconds), in seconds (or null)."""

    def convert(node: Node, ctx: Context, where: str) -> float | None:
        if nullable and is_null(node):
            return None
        value = ctx.scalar(node, "a duration such as 10s or 250ms")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise Invalid(
                f"expected a duration such as 10s or 250ms, got {describe(node)}"
            )
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
        if positive and seconds <= 0:
            raise Invalid(f"must be more than 0, got {format_duration(seconds)}")
        return seconds

    shape: dict[str, Any] = {"type": ["number", "string"]}
    shape["exclusiveMinimum" if positive else "minimum"] = 0
    shape["pattern"] = (
        DURATION_PATTERN.replace("^", "^" + _POSITIVE, 1)
        if positive
        else DURATION_PATTERN
    )
    return Conv(
        "duration (`10s`, `250ms`, `2m`, `1h`, `1m30s`; a bare number is seconds)"
        + (", or null" if nullable else ""),
        convert,
        _or_null(shape, nullable),
    )


def size() -> Conv:
    """A size in bytes (``10MB``, ``512KiB``; a bare number is bytes), > 0."""

    def convert(node: Node, ctx: Context, where: str) -> int:
        value = ctx.scalar(node, "a size such as 10MB or 512KiB")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise Invalid(
                f"expected a size such as 10MB or 512KiB, got {describe(node)}"
            )
        try:
            count = parse_size(value)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
        if count <= 0:
            raise Invalid("must be more than 0 bytes")
        return count

    return Conv(
        "size (`10MB` = 10,000,000 bytes, `512KiB` = 524,288 bytes; "
        "a bare number is bytes)",
        convert,
        {
            "type": ["integer", "string"],
            "minimum": 1,
            "pattern": SIZE_PATTERN.replace("^", "^" + _POSITIVE, 1),
        },
    )


def rate() -> Conv:
    """Launches per second from ``50/s``, ``600/min``...; null: unlimited."""

    def convert(node: Node, ctx: Context, where: str) -> float | None:
        if is_null(node):
            return None
        value = ctx.scalar(node, "a rate such as 50/s or 600/min")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise Invalid(
                f"expected a rate such as 50/s or 600/min, got {describe(node)}"
            )
        try:
            return parse_rate(value)
        except ValueError as exc:
            hint = "; write null for no limit" if _is_zero_rate(value) else ""
            raise Invalid(f"{exc}{hint}") from None

    return Conv(
        "rate (`50/s`, `600/min`, `3600/h`; a bare number is per second), "
        "or null (unlimited)",
        convert,
        {
            "type": ["number", "string", "null"],
            "exclusiveMinimum": 0,
            "pattern": RATE_PATTERN.replace("^", "^" + _POSITIVE, 1),
        },
    )


def _is_zero_rate(value: str | float) -> bool:
    """Whether ``value`` is a rate of zero (``0``, ``"0/s"``)."""
    text = str(value).split("/", 1)[0].strip()
    try:
        return float(text) == 0
    except ValueError:
        return False


def method() -> Conv:
    """An HTTP method, upper-cased."""

    def convert(node: Node, ctx: Context, where: str) -> str:
        value = ctx.scalar(node, "an HTTP method such as GET or POST")
        if not isinstance(value, str) or not _METHOD.fullmatch(value.upper()):
            raise Invalid(
                f"expected an HTTP method such as GET or POST, got {describe(node)}"
            )
        return value.upper()

    return Conv(
        "HTTP method",
        convert,
        {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_-]*$"},
    )


def _sensitive(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SENSITIVE)


def _secret_text(
    node: Node, ctx: Context, *, sensitive: bool, header: bool
) -> str | Secret:
    """A string in which ``${NAME}`` expands; a Secret if anything expanded or
    ``sensitive``.  Messages never show the expanded value."""
    value = ctx.scalar(node, "a string")
    if (
        value is None
        or isinstance(value, bool)
        or not isinstance(value, (str, int, float))
    ):
        raise Invalid(f"expected a string, got {describe(node)}")
    raw = value if isinstance(value, str) else str(node.value)
    expanded, used = ctx.expand(raw)
    if header and any(char in expanded for char in "\r\n\0"):
        after = ""
        if used:
            after = " after expanding " + ", ".join(f"${{{name}}}" for name in used)
        raise Invalid(f"the value has a line break or NUL character{after}")
    if used or sensitive:
        return Secret(expanded, used)
    return expanded


def redis_url() -> Conv:
    """A ``redis://`` or ``rediss://`` URL in which ``${NAME}`` expands (a
    password from the environment), or null; kept as a Secret when anything
    expanded or it holds a password, and never shown."""

    def convert(node: Node, ctx: Context, where: str) -> str | Secret | None:
        if is_null(node):
            return None
        value = _secret_text(node, ctx, sensitive=False, header=True)
        from fetchq.store.redis import parse_url

        try:
            settings = parse_url(value)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
        if settings["password"] is not None and not isinstance(value, Secret):
            return Secret(value, ())
        return value

    return Conv(
        "`redis://[user:password@]host[:port][/db]` (`rediss://` for TLS; "
        "`${NAME}` expands; never shown), or null",
        convert,
        {"type": ["string", "null"], "pattern": r"^\s*(?:rediss?://|\$\{)"},
    )


def proxy_url() -> Conv:
    """A proxy: ``http://[user:password@]host[:port]`` (``${NAME}`` expands;
    kept as a Secret when it holds credentials or anything expanded),
    ``none`` (no proxy at all), or null (the environment's)."""

    def convert(node: Node, ctx: Context, where: str) -> str | Secret | None:
        from fetchq.http.proxy import parse_proxy

        if is_null(node):
            return None
        value = _secret_text(node, ctx, sensitive=False, header=True)
        if isinstance(value, str) and value.strip().lower() == "none":
            return "none"
        try:
            proxy = parse_proxy(value)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
        if proxy.authorization is not None and not isinstance(value, Secret):
            return Secret(value, ())
        return value

    return Conv(
        "proxy URL `http://[user:password@]host:port` (`https://` for TLS to "
        "the proxy; `${NAME}` expands; credentials never shown), `none` (no "
        "proxy), or null (from the environment)",
        convert,
    )


def host_list() -> Conv:
    """Hosts reached without the proxy: a list (or a comma-separated
    string) of names, ``.domain``, IP addresses, CIDR blocks, each with an
    optional ``:port``, or ``*``; null: the environment's ``NO_PROXY``."""

    def convert(node: Node, ctx: Context, where: str) -> tuple[str, ...] | None:
        if is_null(node):
            return None
        if isinstance(node, SequenceNode):
            items = [(f"{where}[{i}]", item) for i, item in enumerate(node.value)]
        elif isinstance(node, ScalarNode):
            items = [(where, node)]
        else:
            raise Invalid(
                f"expected a list of hosts such as [localhost, .internal.example], "
                f"got {describe(node)}"
            )
        hosts: list[str] = []
        for here, item in items:
            value = ctx.scalar(item, "a host")
            if not isinstance(value, str) or not value.strip():
                ctx.report(item, f"{here}: expected a host, got {describe(item)}")
                continue
            for part in value.replace(",", " ").split():
                if any(char in part for char in "/@") and not _CIDR.fullmatch(part):
                    ctx.report(
                        item,
                        f"{here}: {part!r} is not a host, domain, IP address "
                        "or CIDR block",
                    )
                    continue
                hosts.append(part)
        return tuple(hosts)

    return Conv(
        "list of hosts (`example.com`: it and the names under it; `.example.com`; "
        "an IP address; a CIDR block `10.0.0.0/8`; each with an optional "
        "`:port`; `*`: every host), or null (the environment's `NO_PROXY`)",
        convert,
    )


def host_headers() -> Conv:
    """Headers for some hosts only: a mapping of host pattern (a host name,
    or ``*.example.com``) to a mapping of headers (``${NAME}`` expands,
    secrets as for ``fetch.headers``)."""
    headers = string_map("header")

    def convert(
        node: Node, ctx: Context, where: str
    ) -> dict[str, dict[str, str | Secret]]:
        from fetchq.fetch.config import host_pattern

        if is_null(node):
            return {}
        if not isinstance(node, MappingNode):
            raise Invalid(
                "expected a mapping of host names to headers, got " + describe(node)
            )
        result: dict[str, dict[str, str | Secret]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or is_null(key_node):
                ctx.report(
                    key_node, f"{where}: expected a host, got {describe(key_node)}"
                )
                continue
            raw = str(key_node.value)
            try:
                pattern = host_pattern(raw)
            except ValueError as exc:
                ctx.report(key_node, f"{where}: {exc}")
                continue
            if pattern in result:
                ctx.report(
                    key_node,
                    f"{where}.{raw}: host {raw!r} is already given "
                    "(host names are case-insensitive)",
                )
                continue
            here = f"{where}.{raw}"
            try:
                result[pattern] = headers(value_node, ctx, here)
            except Invalid as exc:
                ctx.report(exc.node or value_node, f"{here}: {exc.message}")
        return result

    return Conv(
        "mapping of host (`api.example.com`, or `*.example.com` for the names "
        "under it) to a mapping of header name to string (`${NAME}` expands)",
        convert,
    )


def secret_text() -> Conv:
    """A string in which ``${NAME}`` expands, or null."""

    def convert(node: Node, ctx: Context, where: str) -> str | Secret | None:
        if is_null(node):
            return None
        return _secret_text(node, ctx, sensitive=False, header=False)

    return Conv(
        "string (`${NAME}` expands), or null",
        convert,
        {"type": ["string", "number", "null"], "pattern": f"^{_ENV_TEXT}$"},
    )


def string_map(what: str, *, templates: bool = False) -> Conv:
    """A mapping of header or parameter names to strings; ``${NAME}`` expands.
    Each entry is checked on its own, so every bad one is reported.  With
    ``templates``, a plain value may hold ``{field}`` placeholders (checked
    here); a secret one is sent as it is, so it may not."""
    header = what == "header"

    def convert(node: Node, ctx: Context, where: str) -> dict[str, str | Secret]:
        if is_null(node):
            return {}
        if not isinstance(node, MappingNode):
            raise Invalid(
                f"expected a mapping of {what} names to values, got {describe(node)}"
            )
        result: dict[str, str | Secret] = {}
        names: set[str] = set()
        seen: dict[str, str] = {}  # header names by lower case
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or is_null(key_node):
                ctx.report(
                    key_node,
                    f"{where}: expected a {what} name, got {describe(key_node)}",
                )
                continue
            name = str(key_node.value)
            here = f"{where}.{name}"
            if not name.strip():
                ctx.report(key_node, f"{where}: a {what} name must not be empty")
                continue
            if name in names:
                continue  # an exact duplicate: the loader reports those
            names.add(name)
            if header and not _TOKEN.fullmatch(name):
                ctx.report(key_node, f"{where}: {name!r} is not a valid header name")
                continue
            if header and name.lower() in seen:
                ctx.report(
                    key_node,
                    f"{here}: header {seen[name.lower()]!r} is already given "
                    "(header names are case-insensitive)",
                )
                continue
            seen[name.lower()] = name
            try:
                if templates and flow_placeholder(value_node):
                    raise Invalid(_FLOW_MESSAGE.format(_flow_name(value_node)))
                value = _secret_text(
                    value_node, ctx, sensitive=_sensitive(name), header=header
                )
                if templates:
                    _check_template_value(value, value_node, name)
                result[name] = value
            except Invalid as exc:
                ctx.report(exc.node or value_node, f"{here}: {exc.message}")
            except Unset as exc:  # checked without the environment
                ctx.unchecked[here] = exc.names
                result[name] = Secret(str(value_node.value), exc.names)
        return result

    if templates:
        doc = (
            f"mapping of {what} name to string (`{{field}}` templates; "
            "`${NAME}` expands)"
        )
    else:
        doc = f"mapping of {what} name to string (`${{NAME}}` expands)"
    names: dict[str, Any] = {"pattern": r"\S"}
    if header:
        names = {"pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"}
    values = {"type": ["string", "number"]}
    return Conv(
        doc,
        convert,
        {
            "type": ["object", "null"],
            "propertyNames": names,
            "additionalProperties": values,
        },
    )


def _check_template_value(value: str | Secret, node: Node, name: str) -> None:
    """A plain value must be a good template; a secret one (sent as it is)
    must not look like one."""
    if not isinstance(value, Secret):
        try:
            template_fields(value)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
        return
    raw = str(node.value) if isinstance(node, ScalarNode) else ""
    try:
        fields = template_fields(_REFERENCES.sub("", raw))
    except ValueError:
        fields = ()
    if fields:
        why = "with ${NAME}" if value.sources else f"under a name such as {name!r}"
        raise Invalid(
            f"a value {why} is a secret, sent as it is: it cannot hold "
            f"{{field}} placeholders such as {{{fields[0]}}}"
        )


def _status_set(node: Node, ctx: Context) -> set[int]:
    expected = "a status such as 404, a class such as 5xx or a range such as 500-504"
    value = ctx.scalar(node, expected)
    if isinstance(value, int) and not isinstance(value, bool):
        if not 100 <= value <= 599:
            raise Invalid(f"{value} is not an HTTP status (100-599)")
        return {value}
    if isinstance(value, str):
        match = _STATUS_CLASS.fullmatch(value.strip())
        if match:
            first = int(match.group(1)) * 100
            return set(range(first, first + 100))
        match = _STATUS_RANGE.fullmatch(value.strip())
        if match:
            low, high = int(match.group(1)), int(match.group(2))
            for status in (low, high):
                if not 100 <= status <= 599:
                    raise Invalid(f"{status} is not an HTTP status (100-599)")
            if low > high:
                raise Invalid(f"the range {value!r} is empty ({low} > {high})")
            return set(range(low, high + 1))
    raise Invalid(f"expected {expected}, got {describe(node)}")


def statuses(*, nonempty: bool = False) -> Conv:
    """A list of HTTP statuses: ``404``, classes ``5xx``, ranges ``500-504``."""

    def convert(node: Node, ctx: Context, where: str) -> StatusSet:
        if isinstance(node, SequenceNode):
            items = [
                (f"{where}[{index}]", item) for index, item in enumerate(node.value)
            ]
        elif is_null(node):
            items = []
        elif isinstance(node, ScalarNode):
            items = [(where, node)]
        else:
            raise Invalid(
                f"expected a list of statuses such as [200, 3xx], got {describe(node)}"
            )
        result: set[int] = set()
        failed = False
        for here, item in items:
            try:
                result |= _status_set(item, ctx)
            except Invalid as exc:
                ctx.report(item, f"{here}: {exc.message}")
                failed = True
        if nonempty and not result and not failed:
            raise Invalid("must list at least one status")
        return StatusSet(result)

    status: dict[str, Any] = {
        "type": ["integer", "string"],
        "minimum": 100,
        "maximum": 599,
        "pattern": r"^\s*(?:[1-5][xX][xX]|[0-9]{3}\s*-\s*[0-9]{3})\s*$",
    }
    shape = {**status, "type": ["array", "integer", "string"], "items": status}
    if nonempty:
        shape["minItems"] = 1
    return Conv(
        "list of statuses (`404`, `5xx`, `500-504`)",
        convert,
        _or_null(shape, not nonempty),
    )


# ---------------------------------------------------------------------------
# Converters for the sms and api kinds


_FLOW_MESSAGE = (
    "YAML reads a value that starts with '{{' as a mapping: put the template "
    "in quotes, e.g. '{{{0}}}'"
)


def flow_placeholder(node: Node) -> bool:
    """Whether ``node`` is what YAML makes of an unquoted ``{field}``: a flow
    mapping whose keys have no values."""
    return (
        isinstance(node, MappingNode)
        and bool(node.flow_style)
        and bool(node.value)
        and all(
            isinstance(value, ScalarNode) and is_null(value) and value.value == ""
            for _key, value in node.value
        )
    )


def _flow_name(node: Node) -> str:
    key = node.value[0][0] if isinstance(node, MappingNode) and node.value else None
    return str(key.value) if isinstance(key, ScalarNode) else "field"


def _shorten(text: str, most: int = 60) -> str:
    return text if len(text) <= most else text[: most - 3] + "..."


def template_fields(text: str) -> tuple[str, ...]:
    """The field names of the ``{field}`` placeholders in ``text``, in order.

    The rules are :class:`fetchq.api.Template`'s: ``{{`` and ``}}`` are
    literal braces; a placeholder is a name of letters, digits and
    underscores, with no format spec or conversion.

    Raises:
        ValueError: saying what is wrong with the template.
    """
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(
            f"bad template {_shorten(text)!r}: {exc} (write {{{{ or }}}} for a "
            "literal brace)"
        ) from None
    fields: list[str] = []
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if not _FIELD.fullmatch(name):
            raise ValueError(
                f"bad placeholder {{{_shorten(name, 30)}}} in {_shorten(text)!r}: "
                "expected {field} with letters, digits and underscores"
            )
        if spec or conversion:
            raise ValueError(
                f"placeholder {{{name}}} in {_shorten(text)!r} takes no format "
                "or conversion"
            )
        fields.append(name)
    return tuple(fields)


def template_nodes(node: Node, where: str) -> list[tuple[str, Node, str]]:
    """Every placeholder's field name in the string values under ``node``
    (the value at dotted path ``where``: mapping values, list items), each
    with the node that holds it and that node's dotted path; bad templates
    are skipped (their converter reports them)."""
    found: list[tuple[str, Node, str]] = []
    seen: set[int] = set()

    def visit(current: Node, here: str, depth: int) -> None:
        if id(current) in seen or depth > _MAX_JSON_DEPTH:
            return
        seen.add(id(current))
        if isinstance(current, MappingNode):
            for key, value in current.value:
                if isinstance(key, ScalarNode):
                    visit(value, f"{here}.{key.value}", depth + 1)
        elif isinstance(current, SequenceNode):
            for index, item in enumerate(current.value):
                visit(item, f"{here}[{index}]", depth + 1)
        elif current.tag == _STR:
            try:
                fields = template_fields(str(current.value))
            except ValueError:
                return
            found.extend((name, current, here) for name in fields)

    visit(node, where, 0)
    return found


def template(*, nullable: bool = False, url_path: bool = False) -> Conv:
    """A string with ``{field}`` placeholders filled from each input row;
    with ``url_path``, a URL's path: ``/`` first, no query or fragment."""

    def convert(node: Node, ctx: Context, where: str) -> str | None:
        if nullable and is_null(node):
            return None
        if flow_placeholder(node):
            raise Invalid(_FLOW_MESSAGE.format(_flow_name(node)))
        value = ctx.scalar(node, "a string")
        if not isinstance(value, str):
            raise Invalid(f"expected a string, got {describe(node)}")
        if not value.strip():
            raise Invalid("must not be empty")
        result = value
        if url_path and not result.startswith("/"):
            raise Invalid(f"a path starts with '/', got {describe(node)}")
        if url_path and ("?" in result or "#" in result):
            raise Invalid(
                "a path has no query or fragment: give query parameters in "
                f"params, got {describe(node)}"
            )
        try:
            template_fields(result)
        except ValueError as exc:
            raise Invalid(str(exc)) from None
        return result

    doc = "path template (`/users/{id}`)" if url_path else "template"
    doc += ": string with `{field}` placeholders" + (", or null" if nullable else "")
    shape = {"type": "string", "pattern": "^/[^?#]*$" if url_path else r"\S"}
    return Conv(doc, convert, _or_null(shape, nullable))


def json_value() -> Conv:
    """Any YAML value JSON can hold (mappings with string keys, lists,
    strings, numbers, booleans, null); strings are templates."""

    def convert(node: Node, ctx: Context, where: str) -> Any:
        if is_null(node):
            return None
        return _json(node, ctx, where, {}, 0)

    return Conv(
        "JSON value: mapping, list, string (`{field}` templates), number, "
        "boolean or null",
        convert,
        {},
    )


def _json(
    node: Node, ctx: Context, where: str, done: dict[int, Any], depth: int
) -> Any:
    """The plain value of ``node``; problems are reported and the bad part
    left out.  An aliased node is converted (and reported) once."""
    if id(node) in done:
        return done[id(node)]
    if depth > _MAX_JSON_DEPTH:
        return None  # reported by the loader's first pass
    result: Any
    if isinstance(node, MappingNode):
        if flow_placeholder(node):
            ctx.report(node, f"{where}: {_FLOW_MESSAGE.format(_flow_name(node))}")
            return None
        result = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                ctx.report(
                    key_node,
                    f"{where}.<<: YAML merge keys ('<<') are not supported in recipes",
                )
                continue
            if not isinstance(key_node, ScalarNode) or key_node.tag != _STR:
                ctx.report(
                    key_node,
                    f"{where}: a JSON key must be a string, got {describe(key_node)}; "
                    "put it in quotes",
                )
                continue
            name = str(key_node.value)
            if name not in result:
                result[name] = _json(
                    value_node, ctx, f"{where}.{name}", done, depth + 1
                )
    elif isinstance(node, SequenceNode):
        result = [
            _json(item, ctx, f"{where}[{index}]", done, depth + 1)
            for index, item in enumerate(node.value)
        ]
    else:
        result = _json_scalar(node, ctx, where)
    done[id(node)] = result
    return result


def _json_scalar(node: Node, ctx: Context, where: str) -> Any:
    try:
        value = ctx.scalar(node, "a JSON value")
        if isinstance(value, float) and not math.isfinite(value):
            raise Invalid(f"JSON has no number {describe(node)}")
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, str):
            try:
                template_fields(value)
            except ValueError as exc:
                raise Invalid(str(exc)) from None
            return value
        raise Invalid(
            f"JSON has no {type(value).__name__} value, got {describe(node)}; "
            "put it in quotes for a string"
        )
    except Invalid as exc:
        ctx.report(exc.node or node, f"{where}: {exc.message}")
        return None


def secret(*, nullable: bool = False) -> Conv:
    """A secret: a string in which ``${NAME}`` expands, always kept as a
    :class:`~fetchq.recipe.env.Secret` (or null, when ``nullable``)."""

    def convert(node: Node, ctx: Context, where: str) -> Secret | None:
        if nullable and is_null(node):
            return None
        value = _secret_text(node, ctx, sensitive=True, header=True)
        assert isinstance(value, Secret)
        if not value.reveal().strip():
            raise Invalid("must not be empty")
        return value

    return Conv(
        "secret string (`${NAME}` expands; never shown)"
        + (", or null" if nullable else ""),
        convert,
        _or_null({"type": "string", "pattern": rf"^(?=.*\S){_ENV_TEXT}$"}, nullable),
    )


def identifier(what: str, *, nullable: bool = False) -> Conv:
    """An account or service id: letters, digits, ``-`` and ``_``; ``${NAME}``
    expands (into plain text: an id is not a secret)."""

    def convert(node: Node, ctx: Context, where: str) -> str | None:
        if nullable and is_null(node):
            return None
        value = ctx.scalar(node, what)
        if not isinstance(value, str):
            raise Invalid(f"expected {what}, got {describe(node)}")
        expanded, used = ctx.expand(value)
        if not _IDENTIFIER.fullmatch(expanded):
            got = (
                "after expanding " + ", ".join(f"${{{name}}}" for name in used)
                if used
                else f"got {describe(node)}"
            )
            raise Invalid(f"expected {what} (letters, digits, '-' and '_'), {got}")
        return expanded

    doc = "string of letters, digits, `-`, `_` (`${NAME}` expands)" + (
        ", or null" if nullable else ""
    )
    shape = {
        "type": "string",
        "pattern": r"^(?:[A-Za-z0-9_-]|\$\{[A-Za-z_][A-Za-z0-9_]*\})+$",
    }
    return Conv(doc, convert, _or_null(shape, nullable))


def sender() -> Conv:
    """An SMS sender, or null: an E.164 number (normalised), a short code or
    an alphanumeric id, checked by :func:`fetchq.sms.check_sender`.  An
    unquoted ``+12125550100`` (which YAML reads as a number) is taken as
    written; ``${NAME}`` expands."""

    def convert(node: Node, ctx: Context, where: str) -> str | None:
        from fetchq.sms.errors import BadMessage
        from fetchq.sms.numbers import NumberRules, check_sender

        if is_null(node):
            return None
        expected = "an E.164 number such as '+12125550100', a short code or a sender id"
        if not isinstance(node, ScalarNode) or node.tag not in (_STR, _INT, _FLOAT):
            raise Invalid(f"expected {expected}, got {describe(node)}")
        expanded, used = ctx.expand(str(node.value))
        try:
            # sms.number_check applies when the configuration is built
            return check_sender(expanded, NumberRules(number_check="possible"))
        except BadMessage as exc:
            got = (
                "after expanding " + ", ".join(f"${{{name}}}" for name in used)
                if used
                else f"got {describe(node)}"
            )
            raise Invalid(f"{exc.reason}; {got}") from None

    return Conv(
        "E.164 number (`'+12125550100'`), short code or alphanumeric sender id, "
        "or null",
        convert,
        {"type": ["string", "integer", "null"]},
    )


def url(*, nullable: bool = False, base: bool = False) -> Conv:
    """An http(s) URL with a host; with ``base``, no query or fragment (and
    no trailing ``/``)."""

    def convert(node: Node, ctx: Context, where: str) -> str | None:
        from fetchq.http.errors import BadURL
        from fetchq.http.urls import check_url

        if nullable and is_null(node):
            return None
        value = ctx.scalar(node, "an http(s) URL")
        if not isinstance(value, str):
            raise Invalid(f"expected an http(s) URL, got {describe(node)}")
        text = value.strip()
        if not text:
            raise Invalid("must not be empty")
        try:
            parsed = check_url(text)
        except BadURL as exc:
            raise Invalid(f"{exc.reason}, got {describe(node)}") from None
        if base and (parsed.query or parsed.fragment):
            raise Invalid(f"a base URL has no query or fragment, got {describe(node)}")
        return text.rstrip("/") if base else text

    doc = "http(s) URL" + (" without query" if base else "")
    shape = {
        "type": "string",
        "pattern": "^\\s*[hH][tT][tT][pP][sS]?://" + ("[^?#]*$" if base else ""),
    }
    return Conv(
        doc + (", or null" if nullable else ""), convert, _or_null(shape, nullable)
    )


def dotted(*, nullable: bool = False, none: str = "") -> Conv:
    """A dotted path into a JSON answer (``meta.next_token``)."""

    def convert(node: Node, ctx: Context, where: str) -> str | None:
        if nullable and is_null(node):
            return None
        value = ctx.scalar(node, "a dotted path such as meta.next_token")
        if not isinstance(value, str) or not value.strip():
            raise Invalid(
                f"expected a dotted path such as meta.next_token, got {describe(node)}"
            )
        if not all(value.split(".")):
            raise Invalid(f"{value!r} has an empty part")
        return value

    doc = "dotted path (`data`, `meta.next_token`)" + (
        f", or null ({none})" if nullable else ""
    )
    shape = {"type": "string", "pattern": r"^[^.]+(?:\.[^.]+)*$"}
    return Conv(doc, convert, _or_null(shape, nullable))
