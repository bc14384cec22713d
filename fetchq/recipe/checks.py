"""Checks that look at several keys of a recipe together.

Each runs after the whole recipe has been converted, with the converted
values of its section (a key whose value was wrong is missing) and the
:class:`~fetchq.recipe.convert.Context` to report through.  A check may also
fill in a default that depends on other keys.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode

from fetchq.inputs import InputError, csv_header
from fetchq.recipe.convert import Context, template_nodes
from fetchq.recipe.model import LINE_FIELD
from fetchq.recipe.units import format_duration

__all__ = [
    "check_adaptive",
    "check_api",
    "check_api_input",
    "check_api_recipe",
    "check_common_input",
    "check_fetch",
    "check_files",
    "check_input",
    "check_retry",
    "check_save_bodies",
    "check_sms",
    "check_sms_input",
    "check_sms_recipe",
]

_EXTENSIONS = {
    ".txt": "lines",
    ".lines": "lines",
    ".list": "lines",
    ".urls": "lines",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
}


def _raw(ctx: Context, where: str) -> str:
    node = ctx.nodes.get(where)
    return str(node.value) if isinstance(node, ScalarNode) else where


def _format(values: dict[str, Any], ctx: Context, where: str) -> str | None:
    """The input's format, inferred from the extension when not given (and
    written back into ``values``); None after reporting why not, or when the
    path or format was wrong."""
    file = values.get("path")
    if file is None or "format" not in values:
        return None
    fmt: str | None = values["format"]
    if fmt is None:
        fmt = _EXTENSIONS.get(file.suffix.lower())
        if fmt is None:
            shown = repr(file.suffix) if file.suffix else "no extension"
            ctx.report(
                ctx.locate(f"{where}.path"),
                f"{where}.path: cannot tell the format from {shown}: "
                f"set {where}.format to lines, jsonl or csv",
            )
            return None
        values["format"] = fmt
    return fmt


def _lines_refuse(
    values: dict[str, Any], ctx: Context, where: str, fields: tuple[str, ...]
) -> None:
    """Report each row setting given for plain lines."""
    for name in fields:
        if ctx.given(f"{where}.{name}"):
            ctx.report(
                ctx.keys[f"{where}.{name}"],
                f"{where}.{name}: only applies to jsonl and csv input, not to lines",
            )


def check_input(values: dict[str, Any], ctx: Context, where: str) -> None:
    """Infer the format from the extension; reject row settings for plain
    lines; check that a CSV file's header has the named columns."""
    fmt = _format(values, ctx, where)
    fields = ("url_field", "priority_field", "id_field")
    if fmt == "lines":
        _lines_refuse(values, ctx, where, fields)
    elif fmt == "csv":
        columns = _csv_columns(values, ctx, where)
        if columns is not None:
            _check_columns(values, ctx, where, columns, fields)


def check_common_input(values: dict[str, Any], ctx: Context, where: str) -> None:
    """For a recipe of no known kind: only infer the format."""
    _format(values, ctx, where)


def check_sms_input(values: dict[str, Any], ctx: Context, where: str) -> None:
    """Infer the format from the extension and refuse lines: a message needs
    a row.  (Columns are checked with the sms section, which says which.)"""
    if _format(values, ctx, where) == "lines":
        raw = _raw(ctx, f"{where}.path")
        values.pop("format")
        ctx.report(
            ctx.locate(f"{where}.path"),
            f"{where}.path: {raw!r} would be read as lines, but an sms recipe "
            "reads rows: use a .jsonl or .csv file, or set input.format",
        )


def check_api_input(values: dict[str, Any], ctx: Context, where: str) -> None:
    """Infer the format from the extension; reject row settings for plain
    lines.  (Columns are checked with the api section's templates.)"""
    if _format(values, ctx, where) == "lines":
        _lines_refuse(values, ctx, where, ("priority_field", "id_field"))


def _csv_columns(values: dict[str, Any], ctx: Context, where: str) -> list[str] | None:
    """The header of the CSV input, or None after reporting why not."""
    file: Path = values["path"]
    raw = _raw(ctx, f"{where}.path")
    try:
        header = csv_header(file, raw)
    except InputError as exc:
        ctx.report(ctx.locate(f"{where}.path"), f"{where}.path: {exc}")
        return None
    if not header:
        ctx.report(
            ctx.locate(f"{where}.path"),
            f"{where}.path: {raw!r} has no header row; a CSV input's first row "
            "names its columns",
        )
        return None
    return header


def _shown(columns: list[str]) -> str:
    return ", ".join(columns[:10]) + (", ..." if len(columns) > 10 else "")


def _check_columns(
    values: dict[str, Any],
    ctx: Context,
    where: str,
    columns: list[str],
    fields: Iterable[str],
) -> None:
    raw = _raw(ctx, f"{where}.path")
    for name in fields:
        column = values.get(name)
        if column is not None and column not in columns:
            ctx.report(
                ctx.locate(f"{where}.{name}", f"{where}.path"),
                f"{where}.{name}: no column {column!r} in the header of {raw!r} "
                f"(columns: {_shown(columns)})",
            )


def _check_placeholders(
    ctx: Context,
    places: Iterable[tuple[str, Node]],
    fmt: str | None,
    columns: list[str] | None,
) -> None:
    """Every ``{field}`` in the templates ``places`` (dotted path and value
    node) must name a field the input's rows have: ``value`` for lines, a
    header column for CSV (JSONL rows cannot be known in advance)."""
    if fmt == "lines":
        known = [LINE_FIELD]
    elif fmt == "csv" and columns is not None:
        known = columns
    else:
        return
    raw = _raw(ctx, "input.path")
    done: set[tuple[int, str]] = set()
    for place, node in places:
        for name, holder, here in template_nodes(node, place):
            if name in known or (id(holder), name) in done:
                continue
            done.add((id(holder), name))
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {{{close[0]}}}?" if close else ""
            if fmt == "lines":
                message = (
                    f"{here}: placeholder {{{name}}}: a line of lines input is "
                    f"a row with one field, {{{LINE_FIELD}}}"
                )
            else:
                message = (
                    f"{here}: placeholder {{{name}}} is not a column of {raw!r}"
                    f"{hint} (columns: {_shown(columns or [])})"
                )
            ctx.report(holder, message)


def _key(ctx: Context, *paths: str) -> Node | None:
    """The key node of the first of ``paths`` given in the recipe."""
    for where in paths:
        if where in ctx.keys:
            return ctx.keys[where]
    return None


def _entry(ctx: Context, where: str, name: str) -> Node | None:
    """The key node of entry ``name`` of the mapping at ``where``, or the
    mapping's own key node."""
    node = ctx.nodes.get(where)
    if isinstance(node, MappingNode):
        for key_node, _value in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value == name:
                return key_node
    return _key(ctx, where)


def check_sms(values: dict[str, Any], ctx: Context, where: str) -> None:
    """A message goes from one sender or through one messaging service; the
    account is reached with its auth token or with an API key and secret."""
    names = ("auth_token", "api_key", "api_secret")
    if all(name in values for name in names):
        token, key, secret = (values[name] for name in names)
        if token is None and key is None and secret is None:
            ctx.report(
                _key(ctx, where),
                f"{where}: no credentials: give {where}.auth_token, or "
                f"{where}.api_key and {where}.api_secret",
            )
        elif token is not None and (key is not None or secret is not None):
            ctx.report(
                _key(ctx, f"{where}.api_key", f"{where}.api_secret"),
                f"{where}: give {where}.auth_token, or {where}.api_key and "
                f"{where}.api_secret, not both",
            )
        elif (key is None) != (secret is None):
            given, missing = (
                ("api_key", "api_secret")
                if secret is None
                else (
                    "api_secret",
                    "api_key",
                )
            )
            ctx.report(
                _key(ctx, f"{where}.{given}"),
                f"{where}.{given}: needs {where}.{missing} too",
            )
    if values.get("from") is not None and values.get("messaging_service_sid"):
        ctx.report(
            _key(ctx, f"{where}.messaging_service_sid"),
            f"{where}.messaging_service_sid: give {where}.from or "
            f"{where}.messaging_service_sid, not both (the service picks the "
            "sender)",
        )


def check_sms_recipe(values: dict[str, Any], ctx: Context, where: str) -> None:
    """As for every kind (:func:`check_files`); and a message must have a
    sender and a text, and a CSV input the columns the recipe names."""
    check_files(values, ctx, where)
    input_ = values.get("input") or {}
    sms = values.get("sms") or {}
    if (
        {"from", "messaging_service_sid"} <= sms.keys()
        and "from_field" in input_
        and sms["from"] is None
        and sms["messaging_service_sid"] is None
        and input_["from_field"] is None
    ):
        ctx.report(
            _key(ctx, "sms"),
            "sms: no sender: set sms.from or sms.messaging_service_sid, or "
            "input.from_field to take each message's sender from its row",
        )
    if "body" in sms and "body_field" in input_:
        if sms["body"] is None and input_["body_field"] is None:
            ctx.report(
                _key(ctx, "input.body_field", "sms"),
                "input.body_field: no message text: set input.body_field, or "
                "sms.body to a template such as 'Hi {name}'",
            )
        elif (
            sms["body"] is not None
            and input_["body_field"] is not None
            and ctx.given("input.body_field")
        ):
            ctx.report(
                ctx.keys["input.body_field"],
                "input.body_field: not used: sms.body gives every message's "
                "text (write null here, or name the field in sms.body as "
                f"{{{input_['body_field']}}})",
            )
    if input_.get("format") != "csv" or input_.get("path") is None:
        return
    columns = _csv_columns(input_, ctx, "input")
    if columns is None:
        return
    fields = ["to_field", "from_field", "priority_field", "id_field"]
    if sms.get("body", "") is None:
        fields.insert(1, "body_field")
    _check_columns(input_, ctx, "input", columns, fields)
    if sms.get("body") is not None and "sms.body" in ctx.nodes:
        _check_placeholders(ctx, [("sms.body", ctx.nodes["sms.body"])], "csv", columns)


def check_api(values: dict[str, Any], ctx: Context, where: str) -> None:
    """The token is not also a header, the page token's parameter is not
    also a fixed parameter, and a server's wait can be honoured."""
    for name in values.get("headers") or {}:
        if name.lower() == "authorization":
            ctx.report(
                _entry(ctx, f"{where}.headers", name),
                f"{where}.headers.{name}: give the bearer token as {where}.token, "
                "not as a header",
            )
    pagination = values.get("pagination") or {}
    key = {"token": "token_param", "page": "page_param", "offset": "offset_param"}.get(
        pagination.get("style", "token"), ""
    )
    param = pagination.get(key)
    if param is not None and param in (values.get("params") or {}):
        ctx.report(
            _entry(ctx, f"{where}.params", param),
            f"{where}.params.{param}: is {where}.pagination.{key}, which "
            "is set for each page",
        )
    cap = values.get("max_retry_after")
    if cap is not None and cap < 1:
        ctx.report(
            ctx.locate(f"{where}.max_retry_after"),
            f"{where}.max_retry_after: must be at least 1s (the least wait after "
            f"a refusal), got {format_duration(cap)}",
        )


def check_api_recipe(values: dict[str, Any], ctx: Context, where: str) -> None:
    """As for every kind (:func:`check_files`); and every template
    placeholder must name a field the input's rows have (lines: ``value``;
    CSV: a header column), as must the CSV columns the recipe names."""
    check_files(values, ctx, where)
    input_ = values.get("input") or {}
    fmt = input_.get("format")
    if input_.get("path") is None or fmt not in ("lines", "csv"):
        return
    columns = None
    if fmt == "csv":
        columns = _csv_columns(input_, ctx, "input")
        if columns is None:
            return
        _check_columns(input_, ctx, "input", columns, ("priority_field", "id_field"))
    api = values.get("api") or {}
    places: list[tuple[str, Node]] = []
    for name in ("path", "body"):
        if name in api and f"api.{name}" in ctx.nodes:
            places.append((f"api.{name}", ctx.nodes[f"api.{name}"]))
    params = ctx.nodes.get("api.params")
    if isinstance(params, MappingNode):
        for key_node, value_node in params.value:
            # a secret value is sent as it is: it holds no placeholder
            if isinstance((api.get("params") or {}).get(key_node.value), str):
                places.append((f"api.params.{key_node.value}", value_node))
    _check_placeholders(ctx, places, fmt, columns)


def check_adaptive(values: dict[str, Any], ctx: Context, where: str) -> None:
    """The width's floor must not be above its ceiling."""
    low, high = values.get("min_width"), values.get("max_width")
    if low is not None and high is not None and high < low:
        ctx.report(
            ctx.locate(f"{where}.max_width", f"{where}.min_width"),
            f"{where}.max_width: {high} is less than {where}.min_width ({low})",
        )


def check_retry(values: dict[str, Any], ctx: Context, where: str) -> None:
    """The backoff cap must not be below the first backoff."""
    base, cap = values.get("base_delay"), values.get("max_delay")
    if base is not None and cap is not None and cap < base:
        ctx.report(
            ctx.locate(f"{where}.max_delay", f"{where}.base_delay"),
            f"{where}.max_delay: {format_duration(cap)} is less than "
            f"{where}.base_delay ({format_duration(base)})",
        )


def check_fetch(values: dict[str, Any], ctx: Context, where: str) -> None:
    """A status cannot be both a success and retried; the TLS files must
    hold what they should; a proxy from the environment must be usable."""
    _check_tls(values.get("tls") or {}, ctx, f"{where}.tls")
    _check_environment_proxy(values, ctx, where)
    if values.get("http") == "lean":
        from fetchq.fetch.config import lean_available

        if not lean_available():
            ctx.report(
                ctx.locate(f"{where}.http"),
                f"{where}.http: lean needs the httptools package "
                "(pip install 'fetchq[lean]')",
            )
    ok = values.get("ok_statuses")
    if ok is None:
        return
    for other in ("retry_statuses", "throttle_statuses"):
        both = sorted(ok & values.get(other, frozenset()))
        if both:
            shown = ", ".join(map(str, both[:8])) + (", ..." if len(both) > 8 else "")
            verb = "is" if len(both) == 1 else "are"
            ctx.report(
                ctx.locate(f"{where}.ok_statuses", f"{where}.{other}"),
                f"{where}.ok_statuses: {shown} {verb} also in {where}.{other}; "
                "a status cannot be both ok and retried",
            )


def _check_tls(values: dict[str, Any], ctx: Context, where: str) -> None:
    """Each file holds what it should (certificates, a key that matches);
    a key needs a certificate; a CA bundle means nothing unverified."""
    from fetchq.http.tls import TLSPolicy, load_pem_certificates, load_pem_key

    bad = False
    for name in ("ca_bundle", "client_cert"):
        path = values.get(name)
        if path is not None:
            try:
                load_pem_certificates(path)
            except ValueError as exc:
                ctx.report(ctx.locate(f"{where}.{name}"), f"{where}.{name}: {exc}")
                bad = True
    cert, key = values.get("client_cert"), values.get("client_key")
    if key is not None:
        if cert is None and ctx.given(f"{where}.client_key"):
            ctx.report(
                ctx.locate(f"{where}.client_key"),
                f"{where}.client_key: needs {where}.client_cert (the certificate "
                "the key belongs to)",
            )
            bad = True
        try:
            load_pem_key(key)
        except ValueError as exc:
            ctx.report(ctx.locate(f"{where}.client_key"), f"{where}.client_key: {exc}")
            bad = True
    elif cert is not None and not bad:
        try:
            load_pem_key(cert)
        except ValueError as exc:
            ctx.report(
                ctx.locate(f"{where}.client_cert"),
                f"{where}.client_cert: {exc}; give the key in {where}.client_key",
            )
            bad = True
    if cert is not None and not bad:
        try:
            TLSPolicy(None, cert, key, verify=False)
        except ValueError as exc:
            ctx.report(
                ctx.locate(f"{where}.client_key", f"{where}.client_cert"),
                f"{where}: {exc}",
            )
    if values.get("verify") is False and values.get("ca_bundle") is not None:
        ctx.report(
            ctx.locate(f"{where}.ca_bundle"),
            f"{where}.ca_bundle: means nothing with {where}.verify false "
            "(no certificate is checked); drop one of the two",
        )


def _check_environment_proxy(values: dict[str, Any], ctx: Context, where: str) -> None:
    """A proxy the environment names (``HTTPS_PROXY``...) must be one the
    fetcher can use, or the run would fail at its start."""
    from fetchq.http.proxy import ProxyRoutes

    if values.get("proxy") is not None or values.get("trust_env") is not True:
        return
    try:
        ProxyRoutes.build(None, True, None, ctx.environ)
    except ValueError as exc:
        ctx.report(
            ctx.locate(f"{where}.proxy"),
            f"{where}.proxy: the environment's proxy cannot be used ({exc}); "
            f"set {where}.proxy to one, or to none (or {where}.trust_env: false) "
            "to ignore the environment",
        )


def check_save_bodies(values: dict[str, Any], ctx: Context, where: str) -> None:
    """The bodies directory, if it exists, must be a directory."""
    directory = values.get("dir")
    if directory is not None and directory.exists() and not directory.is_dir():
        ctx.report(
            ctx.locate(f"{where}.dir"),
            f"{where}.dir: {_raw(ctx, where + '.dir')!r} exists and is not a directory",
        )


def _same(a: Path, b: Path) -> bool:
    try:
        return a == b or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_files(values: dict[str, Any], ctx: Context, where: str) -> None:
    """Default the state file next to the output; input, output and state
    must be three different files."""
    input_ = (values.get("input") or {}).get("path")
    output = (values.get("output") or {}).get("path")
    state = values.get("state") or {}
    if output is not None:
        if output.is_dir():
            ctx.report(
                ctx.locate("output.path"),
                f"output.path: {_raw(ctx, 'output.path')!r} is a directory; "
                "expected a file",
            )
        if "path" in state and state["path"] is None:
            state["path"] = output.with_name(output.name + ".state.sqlite")
        if input_ is not None and _same(output, input_):
            ctx.report(
                ctx.locate("output.path"),
                "output.path: is the input file; the output would overwrite it",
            )
    if state.get("url") is not None:
        if ctx.given("state.path"):
            ctx.report(
                ctx.locate("state.path"),
                "state.path: give state.path (a SQLite file) or state.url "
                "(Redis), not both",
            )
        if state.get("run") is None:
            name = Path(ctx.path).stem + "-" + (input_.name if input_ else "input")
            state["run"] = re.sub(r"[^A-Za-z0-9_-]", "_", name)
    elif state.get("run") is None and "run" in state:
        state["run"] = "run"
    state_path = state.get("path")
    if state_path is not None:
        for other, file in (("input", input_), ("output", output)):
            if file is not None and _same(state_path, file):
                ctx.report(
                    ctx.locate("state.path", "output.path"),
                    f"state.path: is the {other} file; give the state its own file",
                )
                break
    bodies = ((values.get("fetch") or {}).get("save_bodies") or {}).get("dir")
    if bodies is not None:
        where = "fetch.save_bodies.dir"
        for other, file in (
            ("input", input_),
            ("output", output),
            ("state", state_path),
        ):
            if file is not None and (_same(bodies, file) or _inside(file, bodies)):
                ctx.report(
                    ctx.locate(where),
                    f"{where}: holds the {other} file, which a saved body could "
                    "overwrite; give the bodies a directory of their own",
                )
                break


def _inside(file: Path, directory: Path) -> bool:
    """Whether ``file`` is somewhere under ``directory``."""
    try:
        file.resolve().relative_to(directory.resolve())
    except (ValueError, OSError):
        return False
    return True
