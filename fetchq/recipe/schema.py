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
    check_fetch,
    check_files,
    check_input,
    check_retry,
    check_save_bodies,
)
from fetchq.recipe.convert import (
    Context,
    Conv,
    Invalid,
    boolean,
    choice,
    describe,
    duration,
    integer,
    join,
    method,
    path,
    rate,
    secret_text,
    size,
    statuses,
    string_map,
    text,
)
from fetchq.recipe.model import (
    AdaptiveSpec,
    FetchRecipe,
    FetchSpec,
    InputSpec,
    LaneSpec,
    OutputSpec,
    QueueSpec,
    RetrySpec,
    SaveBodiesSpec,
    StateSpec,
)

__all__ = [
    "COMMON",
    "FETCH_RECIPE",
    "KINDS",
    "PLANNED_KINDS",
    "Key",
    "Section",
    "all_paths",
    "kind",
]

_KIND_NAMES = ("fetch",)  # the keys of KINDS, known before KINDS is built


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
    """

    name: str
    conv: Conv
    description: str
    default: str | None = None
    default_doc: str | None = None
    required: bool = False

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
    """

    name: str
    description: str
    fields: tuple[Key | Section, ...]
    build: Callable[..., Any]
    check: Check | None = None
    required: bool = False
    optional: bool = False

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
    "What the recipe does: `fetch` fetches every URL of the input. "
    "(`sms` and `api` are planned.)",
    required=True,
)

INPUT = Section(
    "input",
    "Where the work comes from.",
    (
        Key(
            "path",
            path(existing_file=True),
            "The input file, relative to the recipe's directory.",
            required=True,
        ),
        Key(
            "format",
            choice("lines", "jsonl", "csv", nullable=True),
            "`lines`: one URL a line (blank lines and `#` comments skipped); "
            "`jsonl`: one JSON object a line; `csv`: rows under a header row.",
            default_doc="from the extension: `.txt` `.lines` `.list` `.urls` → "
            "lines, `.jsonl` `.ndjson` → jsonl, `.csv` → csv",
        ),
        Key(
            "url_field",
            text(),
            "The field (jsonl) or column (csv) that holds the URL.",
            default="url",
        ),
        Key(
            "priority_field",
            text(nullable=True),
            "The field or column holding a number: lower runs first, FIFO "
            "within a priority.",
            default_doc="none: every job has priority 0",
        ),
        Key(
            "id_field",
            text(nullable=True),
            "The field or column holding each job's stable identity (used for resuming "
            "and for `save_bodies.name: id`).",
            default_doc="none: the line or row number",
        ),
    ),
    build=InputSpec,
    check=check_input,
    required=True,
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
)

STATE = Section(
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
            "`full`: fsync on every commit (slower).",
            default="normal",
        ),
    ),
    build=StateSpec,
)

PER_HOST = Section(
    "per_host",
    "Limits that apply to each host on its own; a busy host never blocks others.",
    (
        Key(
            "width",
            integer(1, nullable=True, none="no per-host cap"),
            "Most requests underway to one host.",
            default="8",
        ),
        Key(
            "rate",
            rate(),
            "Most requests started per host per unit of time.",
            default="null",
        ),
        Key(
            "burst",
            integer(1),
            "Requests a host's rate allows back to back after a quiet spell.",
            default="1",
        ),
    ),
    build=LaneSpec,
)

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

QUEUE = Section(
    "queue",
    "The pace of the whole run.",
    (
        Key("width", integer(1), "Most requests underway at once.", default="16"),
        Key(
            "rate",
            rate(),
            "Most requests started per unit of time overall.",
            default="null",
        ),
        Key(
            "burst",
            integer(1),
            "Requests the rate allows back to back after a quiet spell.",
            default="1",
        ),
        PER_HOST,
        ADAPTIVE,
    ),
    build=lambda per_host, **values: QueueSpec(lanes=per_host, **values),
)

RETRY = Section(
    "retry",
    "How failed attempts are retried (exponential backoff with full jitter).",
    (
        Key(
            "max_attempts",
            integer(1),
            "Most attempts per URL, the first included (1: no retries).",
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
        Key(
            "connect_timeout",
            duration(positive=True),
            "Time allowed to connect.",
            default="10s",
        ),
        Key(
            "headers_timeout",
            duration(positive=True),
            "Time allowed from sending the request to the response headers.",
            default="30s",
        ),
        Key(
            "body_timeout",
            duration(positive=True),
            "Time allowed for the whole body, even one that trickles in.",
            default="2m",
        ),
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
        SAVE_BODIES,
    ),
    build=FetchSpec,
    check=check_fetch,
)

FETCH_RECIPE = Section(
    "",
    "A recipe that fetches every URL of its input.",
    (KIND, INPUT, OUTPUT, STATE, QUEUE, RETRY, FETCH),
    build=FetchRecipe,
    check=check_files,
)

COMMON = Section(
    "",
    "The keys every kind of recipe shares.",
    (KIND, INPUT, OUTPUT, STATE, QUEUE, RETRY),
    build=dict,
    check=check_files,
)
"""What is checked when the kind is missing or unknown."""

KINDS: dict[str, Section] = {"fetch": FETCH_RECIPE}
"""The schema of each kind of recipe."""
assert tuple(KINDS) == _KIND_NAMES

PLANNED_KINDS = ("sms", "api")
"""Kinds that are named in the design but not yet available."""
