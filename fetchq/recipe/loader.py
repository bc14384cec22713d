"""Read a YAML recipe into typed configuration, or say everything wrong with it.

The YAML is *composed*, not loaded: every node keeps its line and column, so
each problem can point at its place.  A first pass finds duplicate keys
(which PyYAML would silently resolve to the last one); then the schema
(:mod:`fetchq.recipe.schema`) is walked, converting every key and collecting
every problem; then checks that span several keys run; and only a recipe with
no problem at all is built into its typed value.

Settings can be changed without editing the file: each *override*
(``fetchq run RECIPE --set queue.width=8``, see :mod:`fetchq.recipe.overrides`)
replaces or adds one value in the composed tree before the schema is walked,
so it is converted and checked exactly as if the file held it, and a problem
with it is located at the override (``--set queue.width=0: queue.width: must
be at least 1, got 0``) instead of a line of the file.  A section may be
written as one plain value (``input: urls.txt`` for ``input: {path:
urls.txt}``; see :attr:`~fetchq.recipe.schema.Section.shorthand`).  Checked
*without its environment* (``no_env``), a recipe's ``${NAME}`` references to
variables that are not set are not problems: the values holding them are
left unchecked and listed (:attr:`Checked.unchecked`).

Loading is bounded, so a recipe cannot exhaust the machine: a file over
:data:`MAX_RECIPE_BYTES` is refused before it is parsed (and never read past
the cap), a recipe may hold at most :data:`MAX_RECIPE_VALUES` values with
its YAML aliases expanded (a few hundred bytes of nested aliases could
otherwise stand for billions; the refusal points at the alias or value
that goes over), an alias inside the value it names is refused, and running
out of memory anyway is a problem, not a :class:`MemoryError`.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml
from yaml.events import AliasEvent, Event, ScalarEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from fetchq.recipe.convert import Context, Invalid, Unset, describe, is_null, join
from fetchq.recipe.errors import Problem, RecipeError
from fetchq.recipe.model import Recipe
from fetchq.recipe.overrides import apply_overrides, shorthand_node
from fetchq.recipe.schema import COMMON, KINDS, Key, Section, all_paths, build
from fetchq.secrets import Secret

__all__ = [
    "MAX_RECIPE_BYTES",
    "MAX_RECIPE_VALUES",
    "Checked",
    "check_recipe",
    "load_recipe",
    "parse_recipe",
]

MAX_RECIPE_BYTES = 1024 * 1024
"""The largest recipe, in bytes (1 MiB): hundreds of times the examples
(under 2 KB each); at the cap, checking takes seconds, not minutes."""

MAX_RECIPE_VALUES = 100_000
"""The most values a recipe may hold: each scalar, list and mapping (keys
included) counts one, and a YAML alias as many as the value it repeats.
The largest example holds about 100."""

_MAX_DEPTH = 50
_TOO_LARGE = (
    f"the recipe is larger than {MAX_RECIPE_BYTES // (1024 * 1024)} MiB "
    f"({MAX_RECIPE_BYTES:,} bytes), the most a recipe may be"
)
_NO_MEMORY = "out of memory while loading the recipe"


@attrs.frozen
class Checked:
    """A recipe that loaded, and what could not be checked in it.

    Attributes:
        recipe: the typed recipe.
        unchecked: with ``no_env``, the dotted path of each value that names
            environment variables not set, with their names (in the order
            of the file); such a value holds a stand-in, so the recipe is for
            looking at, not for running.  Empty otherwise.
    """

    recipe: Recipe
    unchecked: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)


def load_recipe(
    path: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Sequence[str] = (),
) -> Recipe:
    """Load and check the recipe file at ``path``.

    Relative paths inside it are relative to its directory; ``${NAME}``
    references are expanded from ``environ`` (default: ``os.environ``).

    Args:
        path: the recipe file.
        environ: where ``${NAME}`` is looked up.
        overrides: ``KEY=VALUE`` texts (``queue.width=8``; VALUE is YAML),
            applied in order over the file's values before anything is
            checked (see :mod:`fetchq.recipe.overrides`).

    Raises:
        RecipeError: listing every problem found, each located as
            ``path:LINE:COL`` (``path`` as given here), or at the override
            (``--set KEY=VALUE: ...``).
    """
    return check_recipe(path, environ=environ, overrides=overrides).recipe


def check_recipe(
    path: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Sequence[str] = (),
    no_env: bool = False,
) -> Checked:
    """Check the recipe file at ``path`` as :func:`load_recipe` does; with
    ``no_env``, ``${NAME}`` of variables not set (or empty) is no problem,
    and the values that hold one are listed instead of checked.

    Raises:
        RecipeError: listing every problem found.
    """
    shown = os.fspath(path)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_RECIPE_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise RecipeError(
            [Problem(shown, 1, 1, f"cannot read the recipe: {reason.lower()}")]
        ) from None
    except MemoryError:
        raise RecipeError([Problem(shown, 1, 1, _NO_MEMORY)]) from None
    if len(data) > MAX_RECIPE_BYTES:
        raise RecipeError([Problem(shown, 1, 1, _TOO_LARGE)])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise RecipeError(
            [Problem(shown, line, column, "the recipe is not UTF-8 text")]
        ) from None
    return _checked(text, shown, environ, overrides, no_env)


def parse_recipe(
    text: str,
    path: str | os.PathLike[str] = "<recipe>",
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Sequence[str] = (),
) -> Recipe:
    """Check recipe ``text`` as if read from the file ``path``.

    ``path`` is used in messages and as the base of relative paths (its
    directory; the current directory for ``"<recipe>"``); ``overrides`` as
    for :func:`load_recipe`.

    Raises:
        RecipeError: listing every problem found.
    """
    return _checked(text, os.fspath(path), environ, overrides, False).recipe


def _checked(
    text: str,
    shown: str,
    environ: Mapping[str, str] | None,
    overrides: Sequence[str],
    no_env: bool,
) -> Checked:
    if len(text) > MAX_RECIPE_BYTES or (
        4 * len(text) > MAX_RECIPE_BYTES
        and len(text.encode("utf-8", "surrogatepass")) > MAX_RECIPE_BYTES
    ):
        raise RecipeError([Problem(shown, 1, 1, _TOO_LARGE)])
    try:
        return _parse(text, shown, environ, overrides, no_env)
    except MemoryError:
        # Raised from here, the frames that held the memory are gone.
        raise RecipeError([Problem(shown, 1, 1, _NO_MEMORY)]) from None


def _parse(
    text: str,
    shown: str,
    environ: Mapping[str, str] | None,
    overrides: Sequence[str],
    no_env: bool,
) -> Checked:
    ctx = Context(
        path=shown,
        base=Path(shown).absolute().parent,
        environ=os.environ if environ is None else environ,
        no_env=no_env,
    )
    root = _compose(text, ctx)
    if root is None:
        raise RecipeError(ctx.problems)
    apply_overrides(root, overrides, ctx, compose_value, lambda: _schema_for(root)[0])
    _find_duplicates(root, "", ctx, set(), 0)
    schema, lenient = _schema_for(root)
    checks: list[tuple[Section, dict[str, Any], str]] = []
    values = _walk(schema, root, root, "", ctx, checks, schema, lenient=lenient)
    for section, section_values, where in checks:
        if section.check is not None:
            section.check(section_values, ctx, where)
    if ctx.problems:
        origins = ctx.origins
        problems = sorted(
            ctx.problems,
            key=lambda p: (
                -1 if p.origin is None else origins.get(p.origin, 0),
                p.line,
                p.column,
            ),
        )
        raise RecipeError(problems)
    values["source"] = Path(shown).absolute()
    recipe: Recipe = build(schema, values)
    return Checked(recipe, dict(ctx.unchecked))


def compose_value(text: str, name: str, ctx: Context) -> Node | None:
    """The YAML ``text`` of an override's value, its nodes marked as coming
    from ``name`` (``--set KEY=VALUE``); None after reporting why not.
    Empty text is null."""
    if not text.strip():
        mark = yaml.Mark(name, 0, 0, 0, None, 0)
        return ScalarNode("tag:yaml.org,2002:null", "", mark, mark)
    node: Node | None = _compose(text, ctx, name=name, mapping=False)
    return node


def _compose(
    text: str, ctx: Context, *, name: str | None = None, mapping: bool = True
) -> Any:
    """The top-level mapping node (with ``mapping``; else any node), or None
    after reporting why not.  ``name`` marks the nodes as coming from an
    override rather than the file."""

    def problem(line: int, column: int, message: str) -> Problem:
        if name is not None:
            return Problem(ctx.path, 1, 1, message, name)
        return Problem(ctx.path, line, column, message)

    try:
        loader = _Loader(text)
        if name is not None:
            loader.name = name
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except _TooMuch as exc:
        ctx.problems.append(problem(exc.line, exc.column, exc.message))
        return None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = _one_line(exc.problem or exc.context or "")
        if exc.context and exc.problem:
            context = _one_line(exc.context)
            start = exc.context_mark
            if start is not None and mark is not None and start.line != mark.line:
                context += f" (from line {start.line + 1})"
            message = f"{context}, {message}"
        message = f"YAML syntax error: {message}"
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        ctx.problems.append(problem(line, column, message))
        return None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        ctx.problems.append(
            problem(line, column, f"the character U+{code:04X} is not allowed in YAML")
        )
        return None
    except RecursionError:
        ctx.problems.append(problem(1, 1, "the YAML is nested too deeply"))
        return None
    except yaml.YAMLError as exc:
        ctx.problems.append(problem(1, 1, _one_line(f"YAML error: {exc}")))
        return None
    if not mapping:
        return root
    if root is None or is_null(root):
        ctx.problems.append(
            Problem(
                ctx.path,
                1,
                1,
                "the recipe is empty; expected a mapping with kind, input and output",
            )
        )
        return None
    if not isinstance(root, MappingNode):
        ctx.report(
            root,
            "expected a mapping of keys such as kind, input and output at the "
            f"top level, got {describe(root)}",
        )
        return None
    return root


class _TooMuch(Exception):
    """The recipe holds too much from here on: stop composing."""

    def __init__(self, at: tuple[int, int], message: str) -> None:
        super().__init__(message)
        self.line, self.column = at
        self.message = message


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, counting the recipe's values as it composes.

    Each value (scalar, list or mapping, keys included) counts one, and an
    alias counts as many as the value it names holds, which is known once
    that value is composed.  The value or alias that takes the count past
    :data:`MAX_RECIPE_VALUES` stops composition there, and so does an alias
    that names a value still being composed (one it is inside).  So the work
    is proportional to the text, whatever the aliases stand for.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._sizes: dict[int, int] = {}
        self._count = 0
        self._where: list[str] = []

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        # ``index`` is a list item's index, or a mapping value's key node
        # (PyYAML's stub says int only).
        event: Event = self.peek_event()  # type: ignore[no-untyped-call]
        step = _step(parent, index, event)
        mark = event.start_mark
        at = (1, 1) if mark is None else (mark.line + 1, mark.column + 1)
        if isinstance(event, AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None:  # else PyYAML reports an undefined alias
                self._add_alias(target, event, at, step)
            return super().compose_node(parent, index)
        self._count += 1
        if self._count > MAX_RECIPE_VALUES:
            raise _TooMuch(
                at,
                self._at(
                    step,
                    f"the recipe holds more than {MAX_RECIPE_VALUES:,} values, "
                    "the most a recipe may",
                ),
            )
        self._where.append(step)
        node = super().compose_node(parent, index)
        self._where.pop()
        assert node is not None
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = node.value
        elif isinstance(node, MappingNode):
            children = [part for pair in node.value for part in pair]
        self._sizes[id(node)] = 1 + sum(self._sizes[id(child)] for child in children)
        return node

    def _add_alias(
        self, target: Node, event: AliasEvent, at: tuple[int, int], step: str
    ) -> None:
        size = self._sizes.get(id(target))
        if size is None:
            raise _TooMuch(
                at,
                self._at(
                    step,
                    f"the alias *{event.anchor} is inside the value it names, "
                    "so it would repeat forever",
                ),
            )
        self._count += size
        if self._count > MAX_RECIPE_VALUES:
            values = "value" if size == 1 else "values"
            raise _TooMuch(
                at,
                self._at(
                    step,
                    f"the alias *{event.anchor} repeats {size:,} {values}, which "
                    f"takes the recipe past {MAX_RECIPE_VALUES:,} values, the "
                    "most a recipe may hold (aliases expanded)",
                ),
            )

    def _at(self, step: str, message: str) -> str:
        where = "".join([*self._where, step]).lstrip(".")
        return f"{where}: {message}" if where else message


def _step(parent: Node | None, index: object, event: object) -> str:
    """The part of a dotted path that the composer's ``(parent, index)``
    names for the node that ``event`` starts: a key's value, a list item,
    or a key itself."""
    if isinstance(index, int):
        return f"[{index}]"
    if isinstance(index, ScalarNode):
        return f".{index.value}"
    if isinstance(parent, MappingNode):  # a key, or the value of a complex key
        return f".{event.value}" if isinstance(event, ScalarEvent) else ".<key>"
    return ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _find_duplicates(
    node: Node, where: str, ctx: Context, seen: set[int], depth: int
) -> None:
    """Report every key given twice in one mapping, anywhere in the file."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if depth > _MAX_DEPTH:
        shown = re.sub(r"(\[\d+\])+", "[...]", where)
        ctx.report(node, f"{shown}: nested more than {_MAX_DEPTH} levels deep")
        return
    if isinstance(node, MappingNode):
        first: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode):
                name = str(key_node.value)
                here = join(where, name)
                if name in first:
                    ctx.report(
                        key_node,
                        f"{here}: duplicate key (first given at line "
                        f"{first[name].start_mark.line + 1})",
                    )
                else:
                    first[name] = key_node
                _find_duplicates(value_node, here, ctx, seen, depth + 1)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            _find_duplicates(item, f"{where}[{index}]", ctx, seen, depth + 1)


def _schema_for(root: MappingNode) -> tuple[Section, bool]:
    """The schema for the recipe's kind; with no known kind, the keys all
    kinds share (other keys are not reported: they may belong to the kind)."""
    for key_node, value_node in root.value:
        if isinstance(key_node, ScalarNode) and key_node.value == "kind":
            if isinstance(value_node, ScalarNode) and value_node.value in KINDS:
                return KINDS[str(value_node.value)], False
            break
    return COMMON, True


def _walk(
    section: Section,
    node: MappingNode | None,
    anchor: Node,
    where: str,
    ctx: Context,
    checks: list[tuple[Section, dict[str, Any], str]],
    root: Section,
    *,
    lenient: bool = False,
) -> dict[str, Any]:
    """Convert the keys of ``section`` found in ``node`` (None: none given).

    Problems go to ``ctx``; a key whose value is wrong is left out of the
    result.  ``anchor`` is where a missing key is reported; ``root`` is the
    recipe's schema, for suggestions.
    """
    pairs: dict[str, tuple[Node, Node]] = {}
    for key_node, value_node in node.value if node is not None else ():
        if not isinstance(key_node, ScalarNode) or is_null(key_node):
            ctx.report(
                key_node, _at(where, f"expected a key name, got {describe(key_node)}")
            )
            continue
        pairs.setdefault(str(key_node.value), (key_node, value_node))

    if not (lenient or section.open):
        for name, (key_node, _value) in pairs.items():
            if section.field(name) is None:
                ctx.report(key_node, _unknown(name, section, where, root))

    values: dict[str, Any] = {}
    for field in section.fields:
        here = join(where, field.name)
        given = pairs.get(field.name)
        if given is not None and isinstance(field, Section):
            expanded = shorthand_node(field, given[1])
            if expanded is not None:  # ``input: urls.txt`` is {path: urls.txt}
                given = (given[0], expanded)
        if given is not None:
            key_node, value_node = given
            ctx.keys[here] = key_node
            ctx.nodes[here] = value_node
        if isinstance(field, Section):
            if given is None or is_null(given[1]):
                if field.required and given is None:
                    ctx.report(
                        anchor, _at(where, f"missing required key '{field.name}'")
                    )
                    continue
                if field.optional:
                    values[field.name] = None
                    continue
                sub_anchor = anchor if given is None else given[0]
                values[field.name] = _walk(
                    field, None, sub_anchor, here, ctx, checks, root
                )
            elif not isinstance(given[1], MappingNode):
                what = "a mapping or a path" if field.shorthand else "a mapping"
                ctx.report(
                    given[1], f"{here}: expected {what}, got {describe(given[1])}"
                )
            else:
                values[field.name] = _walk(
                    field, given[1], given[1], here, ctx, checks, root
                )
        elif given is not None:
            _convert(field, given[1], here, ctx, values)
        elif field.required:
            ctx.report(anchor, _at(where, f"missing required key '{field.name}'"))
        else:
            default = field.default_node()
            if default is None:
                values[field.name] = None
            else:
                _convert(field, default, here, ctx, values)
    checks.append((section, values, where))
    return values


def _convert(
    key: Key, node: Node, where: str, ctx: Context, values: dict[str, Any]
) -> None:
    try:
        values[key.name] = key.conv(node, ctx, where)
    except Invalid as exc:
        ctx.report(exc.node or node, f"{where}: {exc.message}")
    except Unset as exc:  # checked without the environment: a stand-in
        ctx.unchecked[where] = exc.names
        raw = node.value if isinstance(node, ScalarNode) else ""
        values[key.name] = Secret(str(raw), exc.names)


def _at(where: str, message: str) -> str:
    return f"{where}: {message}" if where else message


def _unknown(name: str, section: Section, where: str, root: Section) -> str:
    """ "unknown key" with the likeliest key meant: a near miss in this
    section, or the same name in another section of this kind of recipe; or
    else, when another kind of recipe has the key, which kind."""
    here = join(where, name)
    if name == "<<":
        return f"{here}: YAML merge keys ('<<') are not supported in recipes"
    names = [field.name for field in section.fields]
    close = _synonym(name, section) or _suggest(name, names)
    this = next((kind for kind, schema in KINDS.items() if schema is root), None)
    others = [
        kind
        for kind, schema in KINDS.items()
        if schema is not root and here in all_paths(schema)
    ]
    if this is not None and others:
        hint = (
            f"did you mean '{close}'?"
            if close
            else f"expected one of: {', '.join(names)}"
        )
        return (
            f"{here}: not a key of {this} recipes (only of "
            f"{' and '.join(others)} recipes); {hint}"
        )
    if close:
        return f"{here}: unknown key; did you mean '{close}'?"
    elsewhere = sorted(
        {
            other
            for other in all_paths(root)
            if other.rsplit(".", 1)[-1] == name and other != here
        },
        key=lambda other: (len(other), other),
    )
    if elsewhere:
        return f"{here}: unknown key; did you mean '{elsewhere[0]}'?"
    return f"{here}: unknown key; expected one of: {', '.join(names)}"


def _synonym(name: str, section: Section) -> str | None:
    """The key of ``section`` that people coming from other tools call
    ``name`` (``download_timeout`` for ``timeout``), if any."""
    lowered = name.lower().replace("-", "_")
    for field in section.fields:
        if isinstance(field, Key) and lowered in field.also:
            return field.name
    return None


def _suggest(name: str, names: list[str]) -> str | None:
    """The name in ``names`` most like ``name``: a near miss in spelling, or
    one that begins with the other (``throttle`` for ``throttle_statuses``)."""
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.65)
    if close:
        return close[0]
    lowered = name.lower()
    for candidate in names:
        shorter = min(lowered, candidate, key=len)
        if len(shorter) >= 4 and (
            candidate.startswith(lowered) or lowered.startswith(candidate)
        ):
            return candidate
    return None
