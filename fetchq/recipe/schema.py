"""The recipe schema, declared as data.

Each :class:`Key` names one setting: its converter (which also says, in
words, what type it takes), its default written as YAML text exactly as a
user would write it, and a description.  A :class:`Section` groups keys (and
sections), says which typed value they become, and may carry a check that
looks at several keys together (:mod:`fetchq.recipe.checks`).  The loader
walks this declaration; the README's reference table is generated from it
(:mod:`fetchq.recipe.reference`), so the two cannot drift.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from functools import cache
from typing import Any

import attrs
import yaml
from yaml.nodes import Node

from fetchq.recipe.checks import (
    check_adaptive,
    check_api,
    check_api_input,
    check_api_recipe,
    check_common_input,
    check_fetch,
    check_files,
    check_input,
    check_retry,
    check_save_bodies,
    check_sms,
    check_sms_input,
    check_sms_recipe,
)
from fetchq.recipe.convert import (
    Context,
    Conv,
    Invalid,
    boolean,
    choice,
    describe,
    dotted,
    duration,
    failure_limit,
    host_headers,
    host_list,
    identifier,
    integer,
    join,
    json_value,
    listen_address,
    method,
    path,
    proxy_url,
    rate,
    redis_url,
    secret,
    secret_text,
    sender,
    size,
    statuses,
    string_map,
    template,
    text,
    url,
)
from fetchq.recipe.model import (
    AdaptiveSpec,
    AdminSpec,
    ApiInputSpec,
    ApiRecipe,
    ApiSpec,
    FetchRecipe,
    FetchSpec,
    InputSpec,
    LaneSpec,
    OutputSpec,
    PaginationSpec,
    QueueSpec,
    RetrySpec,
    RunSpec,
    SaveBodiesSpec,
    SmsInputSpec,
    SmsRecipe,
    SmsSpec,
    StateSpec,
    TlsSpec,
)

__all__ = [
    "API_RECIPE",
    "COMMON",
    "FETCH_RECIPE",
    "KIND",
    "KINDS",
    "PLANNED_KINDS",
    "SMS_RECIPE",
    "Key",
    "Section",
    "all_paths",
    "build",
    "kind",
    "queue_section",
    "state_section",
    "timeouts",
]

_KIND_NAMES = ("fetch", "sms", "api")  # the keys of KINDS, known before KINDS is built


@attrs.frozen
class Key:
    """One setting.

    Attributes:
        name: the key as written in YAML.
        conv: turns the YAML value into the typed value.
        description: one or two sentences for the reference.
        default: the default as YAML text (``"10s"``), or None when the key
            is required or its default is worked out (see ``default_doc``).
        default_doc: how the default is worked out, for the reference.
        required: whether the recipe must give it.
        also: names people coming from other tools write for it
            (``download_timeout``, ``read_timeout``): an unknown key of that
            name suggests this one.
    """

    name: str
    conv: Conv
    description: str
    default: str | None = None
    default_doc: str | None = None
    required: bool = False
    also: tuple[str, ...] = ()

    @property
    def type_doc(self) -> str:
        """What the key takes, in words."""
        return self.conv.doc

    def default_node(self) -> Node | None:
        """The default as a YAML node, ready for :attr:`conv`."""
        return None if self.default is None else _compose(self.default)


@cache
def _compose(text: str) -> Node:
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    assert node is not None, f"empty default {text!r}"
    return node


Check = Callable[[dict[str, Any], Context, str], None]


@attrs.frozen
class Section:
    """A mapping of keys that becomes one typed value.

    Attributes:
        name: the key as written in YAML ("" for the top level).
        description: one sentence for the reference.
        fields: its keys and sub-sections, in the order documented.
        build: makes the typed value from the converted keys (by name).
        check: looks at several converted keys together (run after the
            whole recipe is converted; keys that failed are missing).
        required: whether the recipe must give it.
        optional: if absent, the value is None rather than all defaults.
        open: other keys are not reported (they may belong to a kind: used
            only when the recipe's kind is unknown).
        shorthand: for a section that may be written as one plain value
            (``input: urls.txt``), the key that value stands for, given the
            value (``path``; ``url`` for ``state: redis://...``).
        shorthand_doc: the shorthand in words, for the reference.
    """

    name: str
    description: str
    fields: tuple[Key | Section, ...]
    build: Callable[..., Any]
    check: Check | None = None
    required: bool = False
    optional: bool = False
    open: bool = False
    shorthand: Callable[[str], str] | None = None
    shorthand_doc: str = ""

    def field(self, name: str) -> Key | Section | None:
        """The key or section called ``name``, if any."""
        for field in self.fields:
            if field.name == name:
                return field
        return None


def all_paths(section: Section, where: str = "") -> list[str]:
    """Dotted paths of every key and section under ``section``."""
    paths: list[str] = []
    for field in section.fields:
        here = join(where, field.name)
        paths.append(here)
        if isinstance(field, Section):
            paths.extend(all_paths(field, here))
    return paths


def build(section: Section, values: dict[str, Any]) -> Any:
    """The typed value of a section whose keys all converted."""
    built = dict(values)
    for field in section.fields:
        if isinstance(field, Section) and built.get(field.name) is not None:
            built[field.name] = build(field, built[field.name])
    return section.build(**built)


def _complete(section: Section, values: dict[str, Any]) -> bool:
    """Whether every key of ``section`` (and of its sub-sections) converted."""
    for field in section.fields:
        if field.name not in values:
            return False
        sub = values[field.name]
        if isinstance(field, Section) and sub is not None and not _complete(field, sub):
            return False
    return True


def _check_config(check: Check) -> Check:
    """``check``, then, if it found nothing wrong and every key converted,
    build the section's adapter configuration (``.config()``) and report
    what it refuses: the configuration is what the runner will build, so a
    recipe that loads must build it.  For the ``sms`` and ``api`` sections,
    each named as its kind."""

    def checked(values: dict[str, Any], ctx: Context, where: str) -> None:
        before = len(ctx.problems)
        check(values, ctx, where)
        section = KINDS[where].field(where)
        assert isinstance(section, Section), where
        if len(ctx.problems) > before or not _complete(section, values):
            return
        if any(path.startswith(where + ".") for path in ctx.unchecked):
            return  # a stand-in for a value from the environment: not built
        try:
            build(section, values).config()
        except ValueError as exc:
            ctx.report(ctx.keys.get(where), f"{where}: {exc}")

    return checked


def kind() -> Conv:
    """The recipe's kind: one of :data:`KINDS`."""

    def convert(node: Node, ctx: Context, where: str) -> str:
        known = ", ".join(KINDS)
        value = ctx.scalar(node, f"a kind ({known})")
        if not isinstance(value, str):
            raise Invalid(f"expected a kind ({known}), got {describe(node)}")
        if value in KINDS:
            return value
        if value in PLANNED_KINDS:
            raise Invalid(
                f"{value!r} recipes are not available yet (known kinds: {known})"
            )
        close = difflib.get_close_matches(value, list(KINDS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise Invalid(f"unknown kind {value!r}{hint} (known kinds: {known})")

    return Conv(" | ".join(f"`{name}`" for name in _KIND_NAMES), convert)


KIND = Key(
    "kind",
    kind(),
    "What the recipe does: `fetch` fetches every URL of the input; `sms` sends "
    "one text message per input row; `api` calls a JSON API once per input row "
    "(following its pages). Each kind has its own keys, listed below.",
    required=True,
)


def _input_path() -> Key:
    return Key(
        "path",
        path(existing_file=True),
        "The input file, relative to the recipe's directory.",
        required=True,
    )


def _priority_field() -> Key:
    return Key(
        "priority_field",
        text(nullable=True),
        "The field or column holding a number: lower runs first, FIFO "
        "within a priority.",
        default_doc="none: every job has priority 0",
    )


def _id_field(use: str) -> Key:
    return Key(
        "id_field",
        text(nullable=True),
        f"The field or column holding each job's stable identity ({use}).",
        default_doc="none: the line or row number",
    )


def _path_shorthand(value: str) -> str:
    return "path"


def _state_shorthand(value: str) -> str:
    """A URL (or a ``${NAME}``, which only ``url`` expands) is Redis; any
    other value is the SQLite file."""
    text = value.strip()
    return "url" if "://" in text or text.startswith("${") else "path"


def _shorthand_doc(section: str, example: str) -> str:
    return (
        f"or just the path: `{section}: {example}` is `{section}: {{path: {example}}}`"
    )


_FORMAT_DEFAULT = (
    "from the extension: `.txt` `.lines` `.list` `.urls` → lines, "
    "`.jsonl` `.ndjson` → jsonl, `.csv` → csv"
)

INPUT = Section(
    "input",
    "Where the work comes from.",
    (
        _input_path(),
        Key(
            "format",
            choice("lines", "jsonl", "csv", nullable=True),
            "`lines`: one URL a line (blank lines and `#` comments skipped); "
            "`jsonl`: one JSON object a line; `csv`: rows under a header row.",
            default_doc=_FORMAT_DEFAULT,
        ),
        Key(
            "url_field",
            text(),
            "The field (jsonl) or column (csv) that holds the URL.",
            default="url",
        ),
        _priority_field(),
        _id_field("used for resuming and for `save_bodies.name: id`"),
    ),
    build=InputSpec,
    check=check_input,
    required=True,
    shorthand=_path_shorthand,
    shorthand_doc=_shorthand_doc("input", "urls.txt"),
)

SMS_INPUT = Section(
    "input",
    "Where the messages come from: one row per message.",
    (
        _input_path(),
        Key(
            "format",
            choice(
                "jsonl",
                "csv",
                nullable=True,
                refuse={
                    "lines": "an sms recipe reads rows (jsonl or csv), not "
                    "lines: a message needs its number and text in named fields"
                },
            ),
            "`jsonl`: one JSON object a line; `csv`: rows under a header row "
            "(`lines` is refused: a message needs a row).",
            default_doc="from the extension: `.jsonl` `.ndjson` → jsonl, `.csv` → csv",
        ),
        Key(
            "to_field",
            text(),
            "The field or column holding the recipient's phone number (E.164, "
            "such as `+12125550100`; a row with a bad number is recorded as "
            "failed, never sent).",
            default="to",
        ),
        Key(
            "body_field",
            text(nullable=True),
            "The field or column holding the message text, used when `sms.body` "
            "is null; with `sms.body` set, leave it out or write null (rows need "
            "no such field).",
            default="body",
        ),
        Key(
            "from_field",
            text(nullable=True),
            "The field or column holding each message's sender; a row without "
            "one is sent from `sms.from` or `sms.messaging_service_sid`.",
            default="null",
        ),
        _priority_field(),
        _id_field(
            "used for resuming: a message with a recorded result is never sent again"
        ),
    ),
    build=SmsInputSpec,
    check=check_sms_input,
    required=True,
    shorthand=_path_shorthand,
    shorthand_doc=_shorthand_doc("input", "messages.csv"),
)

API_INPUT = Section(
    "input",
    "Where the calls come from: one row per call (and its further pages).",
    (
        _input_path(),
        Key(
            "format",
            choice("lines", "jsonl", "csv", nullable=True),
            "`lines`: each line (blank lines and `#` comments skipped) is a row "
            "with one field, `value` (a template names it `{value}`); `jsonl`: "
            "one JSON object a line; `csv`: rows under a header row.",
            default_doc=_FORMAT_DEFAULT,
        ),
        _priority_field(),
        _id_field("used for resuming"),
    ),
    build=ApiInputSpec,
    check=check_api_input,
    required=True,
    shorthand=_path_shorthand,
    shorthand_doc=_shorthand_doc("input", "users.jsonl"),
)

COMMON_INPUT = Section(
    "input",
    "Where the work comes from.",
    (
        _input_path(),
        Key(
            "format",
            choice("lines", "jsonl", "csv", nullable=True),
            "The input's format.",
            default_doc=_FORMAT_DEFAULT,
        ),
    ),
    build=dict,
    check=check_common_input,
    required=True,
    open=True,
    shorthand=_path_shorthand,
    shorthand_doc=_shorthand_doc("input", "urls.txt"),
)

OUTPUT = Section(
    "output",
    "Where results go: one JSON line per input item.",
    (
        Key(
            "path",
            path(),
            "The JSONL output file, relative to the recipe's directory.",
            required=True,
        ),
    ),
    build=OutputSpec,
    required=True,
    shorthand=_path_shorthand,
    shorthand_doc=_shorthand_doc("output", "out.jsonl"),
)


def state_section(durability: str, why: str = "") -> Section:
    """The ``state`` section, with a kind's default durability (``why`` says
    why it is not ``normal``)."""
    return Section(
        "state",
        "The durable state that lets a run resume after a crash.",
        (
            Key(
                "path",
                path(),
                "The SQLite state file, relative to the recipe's directory.",
                default_doc="next to the output: `<output.path>.state.sqlite`",
            ),
            Key(
                "durability",
                choice("normal", "full"),
                "`normal`: batched commits (a crash may redo a few jobs); "
                "`full`: fsync on every commit (slower)." + (f" {why}" if why else ""),
                default=durability,
            ),
            Key(
                "url",
                redis_url(),
                "Keep the state in Redis instead of a file: every `fetchq run` of "
                "this recipe, on any machine, joins the same run and shares its "
                "limits (see Many machines).  A password from the environment: "
                "`redis://:${REDIS_PASSWORD}@host:6379/0`.",
                default="null",
            ),
            Key(
                "run",
                identifier("run name", nullable=True),
                "The run's name in Redis (several runs can share one Redis).",
                default_doc="the recipe's and the input's file names: "
                "`<recipe stem>-<input name>` (letters, digits, `-`, `_`)",
            ),
            Key(
                "lease",
                duration(positive=True),
                "With Redis: how long a worker's claim on a row lasts before "
                "another worker may take it (renewed while the job runs; a "
                "worker that dies frees its rows when their leases end).",
                default="30s",
            ),
        ),
        build=StateSpec,
        shorthand=_state_shorthand,
        shorthand_doc=_shorthand_doc("state", "state.sqlite")
        + "; a URL is Redis: `state: redis://host:6379/0` is "
        "`state: {url: redis://host:6379/0}`",
    )


STATE = state_section("normal")

ADAPTIVE = Section(
    "adaptive",
    "Adaptive width: a controller finds the width (and, against a request-rate "
    "quota, the pace) from latency, drops and throttling; `queue.width` is "
    "where it starts.",
    (
        Key(
            "algorithm",
            choice("default", "gradient", "aimd"),
            "`default`: delay-based growth and shrink, loss-based backoff; "
            "`gradient`: delay-based only; `aimd`: loss-based only.",
            default="default",
        ),
        Key("min_width", integer(1), "The width never goes below this.", default="1"),
        Key("max_width", integer(1), "The width never goes above this.", default="256"),
        Key(
            "per_lane",
            boolean(),
            "Steer each lane's (host's, sender's, endpoint's) width and pace "
            "instead of the whole queue's.",
            default="false",
        ),
        Key(
            "pace",
            boolean(),
            "Also pace launches when drops persist at the least useful width.",
            default="true",
        ),
        Key(
            "interval",
            duration(positive=True),
            "Time between the controller's decisions.",
            default="100ms",
        ),
        Key(
            "probe_every",
            duration(positive=True),
            "Time between re-measurements of the unloaded latency.",
            default="30s",
        ),
    ),
    build=AdaptiveSpec,
    check=check_adaptive,
    optional=True,
)


def queue_section(
    lane: str,
    lane_description: str,
    lane_keys: tuple[Key, Key, Key],
    *,
    width: str,
    width_description: str = "Most requests underway at once.",
    rate_description: str = "Most requests started per unit of time overall.",
) -> Section:
    """The ``queue`` section of a kind whose lanes are ``lane`` (``per_host``,
    ``per_sender``, ``per_endpoint``): its keys ``lane_keys`` (width, rate,
    burst) hold that kind's defaults, and ``width`` is the overall default."""

    def build_queue(**values: Any) -> QueueSpec:
        return QueueSpec(lanes=values.pop(lane), **values)

    return Section(
        "queue",
        "The pace of the whole run.",
        (
            Key("width", integer(1), width_description, default=width),
            Key("rate", rate(), rate_description, default="null"),
            Key(
                "burst",
                integer(1),
                "Requests the rate allows back to back after a quiet spell.",
                default="1",
            ),
            Section(lane, lane_description, lane_keys, build=LaneSpec),
            ADAPTIVE,
        ),
        build=build_queue,
    )


def _lane_width(what: str, default: str) -> Key:
    return Key(
        "width",
        integer(1, nullable=True, none=f"no per-{what} cap"),
        f"Most requests underway for one {what}.",
        default=default,
    )


def _lane_rate(what: str, default: str, more: str = "") -> Key:
    return Key(
        "rate",
        rate(),
        f"Most requests started per {what} per unit of time." + more,
        default=default,
    )


def _lane_burst(what: str) -> Key:
    article = "an" if what[0] in "aeiou" else "a"
    return Key(
        "burst",
        integer(1),
        f"Requests {article} {what}'s rate allows back to back after a quiet spell.",
        default="1",
    )


QUEUE = queue_section(
    "per_host",
    "Limits that apply to each host on its own; a busy host never blocks others.",
    (_lane_width("host", "8"), _lane_rate("host", "null"), _lane_burst("host")),
    width="16",
)

SMS_QUEUE = queue_section(
    "per_sender",
    "Limits that apply to each sender (a `from` number, or the messaging "
    "service) on its own.",
    (
        _lane_width("sender", "null"),
        _lane_rate(
            "sender",
            "1/s",
            " A long code sends about one message a second (faster only fills "
            "the provider's queue); toll-free numbers and short codes send more.",
        ),
        _lane_burst("sender"),
    ),
    width="10",
    width_description="Most requests to the provider underway at once, "
    "account-wide: keep it at or under the account's concurrency limit, past "
    "which the provider answers 429.",
    rate_description="Most messages sent per unit of time overall.",
)

API_QUEUE = queue_section(
    "per_endpoint",
    "Limits that apply to each endpoint (method and path template: what a quota "
    "counts) on its own; an endpoint whose announced quota is spent is held "
    "until its reset whatever these say.",
    (
        _lane_width("endpoint", "null"),
        _lane_rate("endpoint", "null"),
        _lane_burst("endpoint"),
    ),
    width="10",
    rate_description="Most calls started per unit of time overall.",
)

COMMON_QUEUE = Section(
    "queue",
    "The pace of the whole run.",
    (
        Key("width", integer(1), "Most requests underway at once.", default="16"),
        Key("rate", rate(), "Most requests started overall.", default="null"),
        Key("burst", integer(1), "Requests back to back.", default="1"),
        ADAPTIVE,
    ),
    build=dict,
    open=True,
)

RETRY = Section(
    "retry",
    "How failed attempts are retried (exponential backoff with full jitter).",
    (
        Key(
            "max_attempts",
            integer(1),
            "Most attempts per job (a URL, a message, a call), the first "
            "included (1: no retries).",
            default="5",
        ),
        Key(
            "base_delay",
            duration(positive=False),
            "Backoff before the second attempt; it doubles each attempt.",
            default="1s",
        ),
        Key(
            "max_delay",
            duration(positive=False),
            "The backoff cap; also caps how long a `Retry-After` is honoured.",
            default="5m",
        ),
    ),
    build=RetrySpec,
    check=check_retry,
)

RUN = Section(
    "run",
    "How the run behaves as a whole.",
    (
        Key(
            "max_failures",
            failure_limit(),
            "Stop the run, leaving its rows to do, once this many jobs in a row "
            "have failed (the failures of the streak are left to do too), or "
            "once more than this percentage of the jobs finished in the run "
            "have failed (after 50); `0` never stops. A run that cannot "
            "succeed (the network or the service down) stops instead of "
            "marking every row failed; `fetchq run --max-failures` overrides it.",
            default="50",
        ),
    ),
    build=RunSpec,
)

ADMIN = Section(
    "admin",
    "An admin server beside the run: JSON API, live page, `/metrics` "
    "(see Watching and steering a run); `fetchq run --admin` overrides it.",
    (
        Key(
            "listen",
            listen_address(),
            "Where it listens: a port (on 127.0.0.1) or `HOST:PORT`; an "
            "address that is not loopback is warned about.",
            required=True,
        ),
        Key(
            "metrics_open",
            boolean(),
            "Serve `/metrics` without the admin token, for a scraper; every "
            "other route still needs it.",
            default="false",
        ),
    ),
    build=AdminSpec,
    optional=True,
)


def timeouts(
    *,
    connect: str = "10s",
    headers: str | None = "30s",
    body: str | None,
    whole: str | None = None,
    redirects: bool = False,
) -> tuple[Key, Key, Key, Key]:
    """The four timeouts every kind takes, with the same names and meanings
    (each kind has its own defaults): ``connect_timeout``,
    ``headers_timeout`` and ``body_timeout`` bound one phase of a request
    each, ``timeout`` the whole of one attempt.  A default of None makes the
    key nullable, null meaning no bound beyond the others'."""

    def phase(
        name: str, default: str | None, text: str, also: tuple[str, ...] = ()
    ) -> Key:
        if default is None:
            text += " Null: only `timeout` bounds it."
        return Key(
            name,
            duration(positive=True, nullable=default is None),
            text,
            default="null" if default is None else default,
            also=also,
        )

    return (
        phase(
            "connect_timeout",
            connect,
            "Time allowed to connect (TCP and TLS), for each address tried.",
            ("connection_timeout",),
        ),
        phase(
            "headers_timeout",
            headers,
            "Time allowed from sending a request to its response headers "
            "(connecting included).",
            ("read_timeout", "response_timeout", "first_byte_timeout"),
        ),
        phase(
            "body_timeout",
            body,
            "Time allowed from the response headers to the end of the body, "
            "even one that trickles in.",
        ),
        Key(
            "timeout",
            duration(positive=True, nullable=whole is None),
            "The deadline of one attempt, from sending the request to the end "
            "of the answer: connecting, headers and body"
            + (", redirects" if redirects else "")
            + " included."
            + (" Null: none beyond the phases' own." if whole is None else ""),
            default="null" if whole is None else whole,
            also=("download_timeout", "request_timeout", "total_timeout", "deadline"),
        ),
    )


SAVE_BODIES = Section(
    "save_bodies",
    "Save response bodies to files; without it only their size and sha256 "
    "are recorded.",
    (
        Key(
            "dir",
            path(),
            "The directory for bodies, relative to the recipe's directory "
            "(created when the run starts).",
            required=True,
        ),
        Key(
            "name",
            choice("sha256", "id"),
            "Name each file by the body's sha256 (identical bodies are stored "
            "once) or by the job's id.",
            default="sha256",
        ),
    ),
    build=SaveBodiesSpec,
    check=check_save_bodies,
    optional=True,
)

TLS = Section(
    "tls",
    "How https servers are checked, and the client certificate to show them.",
    (
        Key(
            "ca_bundle",
            path(existing_file=True, nullable=True),
            "A PEM file of the CAs to trust, instead of the system's (which "
            "`SSL_CERT_FILE` and `SSL_CERT_DIR` override), as curl's `--cacert`: "
            "for a private CA or a TLS-inspecting proxy.",
            default="null",
        ),
        Key(
            "client_cert",
            path(existing_file=True, nullable=True),
            "A PEM file with the client certificate (and its chain) for "
            "servers that ask for one (mTLS); its private key too, unless "
            "`client_key` is given.",
            default="null",
        ),
        Key(
            "client_key",
            path(existing_file=True, nullable=True),
            "A PEM file with `client_cert`'s private key (not encrypted).",
            default="null",
        ),
        Key(
            "verify",
            boolean(),
            "Check servers' certificates and host names. `false` checks "
            "nothing, so any server can pose as the site: a run warns on "
            "stderr and in its summary. A refused certificate (unknown CA, "
            "expired, another host's) fails the URL as `TLSCertificateError`, "
            "not retried.",
            default="true",
        ),
    ),
    build=TlsSpec,
)

FETCH = Section(
    "fetch",
    "How each URL is fetched and what its response means.",
    (
        Key("method", method(), "The HTTP method.", default="GET"),
        Key(
            "headers",
            string_map("header"),
            "Request headers; `User-Agent` defaults to fetchq and its version. "
            "Values from `${NAME}`, and values of headers such as Authorization "
            "or Cookie, are secrets: never shown or logged.",
            default="{}",
        ),
        Key(
            "params",
            string_map("parameter"),
            "Query parameters added to every URL (secrets as for headers).",
            default="{}",
        ),
        Key("body", secret_text(), "The request body.", default="null"),
        *timeouts(body="2m", redirects=True),
        Key(
            "max_body",
            size(),
            "Largest body accepted (decoded bytes); a larger one fails early.",
            default="10MiB",
        ),
        Key(
            "max_redirects",
            integer(0),
            "Redirects followed before giving up (0: none).",
            default="10",
        ),
        Key(
            "allow_private",
            boolean(),
            "Whether private and loopback addresses may be fetched (checked "
            "when the host name is resolved, redirects included); set false "
            "for URLs you did not choose.",
            default="true",
        ),
        Key(
            "ok_statuses",
            statuses(nonempty=True),
            "Statuses that count as success.",
            default="[2xx]",
        ),
        Key(
            "retry_statuses",
            statuses(),
            "Statuses retried with backoff (as are connection errors and timeouts).",
            default="[408, 429, 500, 502, 503, 504]",
        ),
        Key(
            "throttle_statuses",
            statuses(),
            'Statuses that mean "slow down": retried after `Retry-After`, and '
            "the host is held meanwhile. Any status in none of the three lists "
            "is a permanent failure; one in both retry and throttle lists is "
            "throttled.",
            default="[429, 503]",
        ),
        Key(
            "host_headers",
            host_headers(),
            "Headers sent only to some hosts, such as `{api.example.com: "
            "{Authorization: 'Bearer ${TOKEN}'}}` (`*.example.com`: the names "
            "under example.com). Matched on each request's host, redirects "
            "included, so never sent to another host (nor over plain http "
            "after a redirect from https); they replace `headers` of the same "
            "name. Secrets as for `headers`.",
            default="{}",
        ),
        Key(
            "proxy",
            proxy_url(),
            "The proxy for every URL; `https` URLs go through a CONNECT "
            "tunnel (TLS end to end, checked against the site), `http` URLs "
            "as requests to the proxy. Credentials from the environment: "
            "`http://${PROXY_USER}:${PROXY_PASSWORD}@proxy:3128`. A 407 "
            "answer stops the run. null: `HTTPS_PROXY`, `HTTP_PROXY` and "
            "`ALL_PROXY` (or lower case) as curl reads them; `none`: no "
            "proxy, whatever the environment says.",
            default="null",
        ),
        Key(
            "no_proxy",
            host_list(),
            "Hosts reached directly, not through the proxy.",
            default_doc="the environment's `NO_PROXY` (or `no_proxy`)",
        ),
        Key(
            "trust_env",
            boolean(),
            "Read the proxy settings (`HTTPS_PROXY`, `NO_PROXY`, ...) from "
            "the environment, as curl and httpx do; `false` ignores them.",
            default="true",
        ),
        TLS,
        Key(
            "robots",
            choice("obey", "ignore"),
            "`obey`: read each site's robots.txt first (once per site, "
            "through the same limits and proxy) and fetch nothing it "
            "disallows for our `User-Agent`: such a URL is recorded as "
            "`RobotsDisallowed`, not retried, not counted by "
            "`run.max_failures`; its `Crawl-delay` or `Request-rate` slows "
            "the site's lane (never speeds it). A robots.txt answering 5xx "
            "or 429 holds the site for a minute (RFC 9309), its URLs retried "
            "after; 4xx means no rules.",
            default="ignore",
        ),
        Key(
            "http",
            choice("treq", "lean"),
            "`lean`: GETs without a body and not through a proxy go through "
            "fetchq's own HTTP/1.1 client (a Twisted protocol and the "
            "`httptools` parser, `pip install 'fetchq[lean]'`): the same "
            "timeouts, size caps, decoding, redirects and address guard, a "
            "fraction of the CPU per request, so more requests per second "
            "from one core. `treq`: every request through treq's `Agent`.",
            default="treq",
        ),
        SAVE_BODIES,
    ),
    build=FetchSpec,
    check=check_fetch,
)

FETCH_RECIPE = Section(
    "",
    "A recipe that fetches every URL of its input.",
    (KIND, INPUT, OUTPUT, STATE, QUEUE, RETRY, FETCH, RUN, ADMIN),
    build=FetchRecipe,
    check=check_files,
)


def _build_sms(**values: Any) -> SmsSpec:
    return SmsSpec(from_number=values.pop("from"), **values)


SMS = Section(
    "sms",
    "Where and how the messages are sent: a Twilio-shaped provider's Messages API.",
    (
        Key(
            "base_url",
            url(base=True),
            "The provider API's root, without `/2010-04-01` (a provider with the "
            "same API may have a path prefix); `http://127.0.0.1:8099` for "
            "`fetchq fake sms`.",
            default="https://api.twilio.com",
        ),
        Key(
            "account_sid",
            identifier("an account SID"),
            "The account SID (`AC` and 32 hex digits at Twilio), typically "
            "`${TWILIO_ACCOUNT_SID}`. Not a secret: it is part of every URL.",
            required=True,
        ),
        Key(
            "auth_token",
            secret(nullable=True),
            "The account's auth token, typically `${TWILIO_AUTH_TOKEN}`: a "
            "secret, never shown or logged. Give it, or `api_key` and "
            "`api_secret`.",
            default="null",
        ),
        Key(
            "api_key",
            identifier("an API key SID", nullable=True),
            "An API key SID (`SK` and 32 hex digits at Twilio), typically "
            "`${TWILIO_API_KEY}`, sent as the user name instead of the "
            "account SID (the URL still names the account): a key can be "
            "revoked alone, so Twilio recommends keys over the auth token.",
            default="null",
        ),
        Key(
            "api_secret",
            secret(nullable=True),
            "The API key's secret, typically `${TWILIO_API_SECRET}`: never "
            "shown or logged.",
            default="null",
        ),
        Key(
            "from",
            sender(),
            "The sender of every message whose row names none: an E.164 number "
            "(quote it or not), a short code or an alphanumeric sender id.",
            default="null",
        ),
        Key(
            "messaging_service_sid",
            identifier("a messaging service SID", nullable=True),
            "Send through a messaging service, which picks the sender, instead "
            "of `from` (give one of the two, or `input.from_field`).",
            default="null",
        ),
        Key(
            "body",
            template(nullable=True),
            "The message text as a template over the row's fields, such as "
            "`'Hi {name}, your code is {code}'` (`{{` is a literal brace); "
            "null: each row's `input.body_field`. Quote a value that starts "
            "with `{`; `${NAME}` is not expanded here (`$` is literal).",
            default="null",
        ),
        Key(
            "default_region",
            text(nullable=True),
            "The region (ISO 3166 code such as `US` or `GB`) of numbers "
            "written without `+`: `(212) 555-0100` is then sent as "
            "`+12125550100`. Any region needs the `phonenumbers` package "
            "(`pip install 'fetchq[phones]'`); without it only the +1 "
            "regions (US, CA, ...). null: every number must start with `+`.",
            default="null",
        ),
        Key(
            "number_check",
            choice("valid", "possible"),
            "With `phonenumbers` installed, `valid`: a number must be in a "
            "range its country assigns; `possible`: of a length its country "
            "uses (for ranges newer than the installed metadata). Without "
            "it, a built-in check refuses country codes no country has and "
            "+1 numbers the plan does not allow (`+1 012...`).",
            default="valid",
        ),
        Key(
            "max_body",
            integer(1),
            "The longest text, in UTF-16 code units as the provider counts "
            "them (an emoji is 2); a longer message is recorded as failed, "
            "never sent.",
            default="1600",
        ),
        *timeouts(headers=None, body=None, whole="30s"),
        Key(
            "resend_check",
            boolean(),
            "Before sending again a message whose earlier attempt may have been "
            "accepted (a timeout, a crash), look for it in the provider's "
            "message list and take its sid instead. Shrinks the window in "
            "which a message can go out twice; turn it off only when identical "
            "messages to one number are meant to go out close together.",
            default="true",
        ),
        Key(
            "status_callback",
            url(nullable=True),
            "A URL the provider calls with each message's delivery updates.",
            default="null",
        ),
    ),
    build=_build_sms,
    check=_check_config(check_sms),
    required=True,
)

SMS_RECIPE = Section(
    "",
    "A recipe that sends one text message per input row.",
    (
        KIND,
        SMS_INPUT,
        OUTPUT,
        state_section(
            "full",
            "sms recipes default to `full`: a sent message's recorded sid is on "
            "disk at once, so no crash loses it and makes a resumed run send "
            "the message again.",
        ),
        SMS_QUEUE,
        RETRY,
        SMS,
        RUN,
        ADMIN,
    ),
    build=SmsRecipe,
    check=check_sms_recipe,
)

PAGINATION = Section(
    "pagination",
    "How further pages of an answer are found and asked for.",
    (
        Key(
            "style",
            choice("token", "link", "next_url", "page", "offset"),
            "`token`: a token in the body (`token_field`) sent back as a "
            "query parameter (`token_param`), as X does; `link`: the `Link` "
            'header\'s `rel="next"` URL (RFC 8288), as GitHub does; '
            "`next_url`: a URL in the body (`next_field`), as Twilio's "
            "`next_page_uri`; `page`: a page number (`page_param`) counting "
            "from `page_start`; `offset`: an offset (`offset_param`) "
            "advanced by each page's items. A next URL is followed only to "
            "`base_url`'s scheme, host and port (the token never goes "
            "elsewhere).",
            default="token",
        ),
        Key(
            "token_field",
            dotted(),
            "Where an answer holds the next page's token (a dotted path); "
            "an answer without it is the last page.",
            default="meta.next_token",
        ),
        Key(
            "token_param",
            text(),
            "The query parameter that carries the token on the next request.",
            default="pagination_token",
        ),
        Key(
            "next_field",
            dotted(),
            "`next_url`: where an answer holds the next page's URL (a dotted "
            "path; relative URLs are resolved against the request's).",
            default="next",
        ),
        Key(
            "page_param",
            text(),
            "`page`: the query parameter that carries the page number.",
            default="page",
        ),
        Key(
            "page_start",
            integer(0),
            "`page`: the first page's number (its request carries none).",
            default="1",
        ),
        Key(
            "offset_param",
            text(),
            "`offset`: the query parameter that carries the offset (the first "
            "request carries none: offset 0).",
            default="offset",
        ),
        Key(
            "page_size",
            integer(1, nullable=True, none="only an empty page is the last"),
            "`page`, `offset`: the items of a full page (set the matching "
            "parameter, such as `per_page`, in `params`): a page with fewer "
            "is the last.",
            default="null",
        ),
        Key(
            "total_field",
            dotted(nullable=True, none="no total"),
            "`page`, `offset`: where an answer holds the total number of "
            "items: the pages end once that many were read.",
            default="null",
        ),
        Key(
            "max_pages",
            integer(1),
            "Most pages fetched for one row (1: the first page only).",
            default="1",
        ),
    ),
    build=PaginationSpec,
)

API = Section(
    "api",
    "The endpoint each row calls, and how its answers are read.",
    (
        Key(
            "base_url",
            url(base=True),
            "Scheme, host and optional path prefix (`https://api.x.com`; "
            "`http://127.0.0.1:8098` for `fetchq fake api`).",
            required=True,
        ),
        Key("method", method(), "The HTTP method.", default="GET"),
        Key(
            "path",
            template(url_path=True),
            "The path, a template over the row's fields, each value URL-quoted "
            "(`/2/users/{id}/tweets`); no query: use `params`.",
            required=True,
        ),
        Key(
            "params",
            string_map("parameter", templates=True),
            "Query parameters; values may be templates (`'{since}'`). A value "
            "with `${NAME}`, or under a name such as `api_key`, is a secret and "
            "sent as it is.",
            default="{}",
        ),
        Key(
            "headers",
            string_map("header"),
            "Extra request headers (not templates); `User-Agent` and `Accept: "
            "application/json` are added unless given. Secrets as for params; "
            "the token goes in `token`, not here.",
            default="{}",
        ),
        Key(
            "body",
            json_value(),
            "A JSON body: any YAML value, its strings templates; a string that "
            "is exactly one placeholder (`'{count}'`) takes the field's value as "
            "it is (a number stays a number). `${NAME}` is not expanded here: "
            "`$` is literal and `{NAME}` a placeholder.",
            default="null",
        ),
        Key(
            "token",
            secret(),
            "The bearer token (`Authorization: Bearer ...`), typically "
            "`${API_TOKEN}`: a secret, never shown or logged.",
            required=True,
        ),
        *timeouts(body="1m"),
        Key("max_body", size(), "Largest body read.", default="10MiB"),
        PAGINATION,
        Key(
            "records",
            choice("page", "item"),
            "`page`: one output record per page; `item`: one per item of "
            "`items_field`.",
            default="page",
        ),
        Key(
            "items_field",
            dotted(nullable=True, none="the page itself"),
            "Where a page holds its items (a dotted path), for `records: item`.",
            default="data",
        ),
        Key(
            "reset_margin",
            duration(positive=False),
            "Time added to every announced quota reset before the endpoint is "
            "called again (for clock skew).",
            default="1s",
        ),
        Key(
            "window",
            duration(positive=True, nullable=True),
            "The quota window's length, as the provider documents it (X: "
            "`15m`). A window holds the requests it counted, so it ends at the "
            "latest this long after its first answer: sooner than a reset "
            "announced in whole seconds and rounded up. Too short, and calls "
            "go early and are refused (then sent again). Null: unknown.",
            default="null",
        ),
        Key(
            "default_retry_after",
            duration(positive=False),
            "The wait after a throttle that says neither Retry-After nor a "
            "reset, and the hold for a spent quota whose reset is unknown.",
            default="1m",
        ),
        Key(
            "max_retry_after",
            duration(positive=False),
            "The cap on any wait a server asks for (at least 1s).",
            default="1d",
        ),
    ),
    build=ApiSpec,
    check=_check_config(check_api),
    required=True,
)

API_RECIPE = Section(
    "",
    "A recipe that calls a JSON API once per input row, following its pages.",
    (KIND, API_INPUT, OUTPUT, STATE, API_QUEUE, RETRY, API, RUN, ADMIN),
    build=ApiRecipe,
    check=check_api_recipe,
)

COMMON = Section(
    "",
    "The keys every kind of recipe shares.",
    (KIND, COMMON_INPUT, OUTPUT, STATE, COMMON_QUEUE, RETRY, RUN, ADMIN),
    build=dict,
    check=check_files,
)
"""What is checked when the kind is missing or unknown: only keys every kind
has; the input and queue sections let other keys pass (they may be the
kind's)."""

KINDS: dict[str, Section] = {
    "fetch": FETCH_RECIPE,
    "sms": SMS_RECIPE,
    "api": API_RECIPE,
}
"""The schema of each kind of recipe."""
assert tuple(KINDS) == _KIND_NAMES

PLANNED_KINDS: tuple[str, ...] = ()
"""Kinds that are named in the design but not yet available (none now)."""
