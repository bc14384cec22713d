"""Changing a recipe's settings without editing it: ``--set KEY=VALUE``.

An override names a key by its dotted path (``queue.width``,
``fetch.headers.X-Api-Key``) and gives its value as YAML (``8``, ``50/s``,
``'{"X-A": "b"}'``, ``[2xx, 304]``; nothing after ``=`` is null).  It is
applied to the recipe's composed YAML tree before the tree is checked: it
replaces the key's value in the file, or adds the key (and any section it
needs), so the value goes through the same converters and checks as one
written in the file, and an unknown key gets the same "did you mean".  Each
node an override adds carries the override's text as the name of its mark,
and a problem at such a node is shown as ``--set KEY=VALUE: message``.

Path parts name sections and keys of the recipe's kind; once a part names a
key whose value is a mapping (``headers``, ``params``, ``body``), the rest of
the path is one entry of it, dots included (``api.params.tweet.fields``).
Paths in an override's value are relative to the recipe's directory, as in
the file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from fetchq.recipe.convert import Context, describe, is_null, join
from fetchq.recipe.errors import Problem
from fetchq.recipe.schema import Key, Section

__all__ = ["apply_overrides", "parse_override", "shorthand_node"]

_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"


def parse_override(text: str) -> tuple[list[str], str]:
    """The dotted path and the YAML value text of ``KEY=VALUE``.

    Raises:
        ValueError: saying what is wrong (no ``=``, an empty key or part).
    """
    key, equals, value = text.partition("=")
    key = key.strip()
    if not equals:
        raise ValueError("expected KEY=VALUE, such as queue.width=8")
    if not key:
        raise ValueError("no key before '=': expected KEY=VALUE")
    parts = key.split(".")
    if not all(part.strip() for part in parts):
        raise ValueError(f"{key!r} has an empty part")
    return [part.strip() for part in parts], value


def shorthand_node(section: Section, node: Node) -> MappingNode | None:
    """For a section written as one plain value (``input: urls.txt``), the
    mapping it stands for (``{path: urls.txt}``), its key marked where the
    value is; None if ``node`` is not such a value."""
    if (
        section.shorthand is None
        or not isinstance(node, ScalarNode)
        or is_null(node)
        or node.tag != _STR
    ):
        return None
    key = ScalarNode(
        _STR, section.shorthand(str(node.value)), node.start_mark, node.end_mark
    )
    return MappingNode(_MAP, [(key, node)], node.start_mark, node.end_mark, True)


def apply_overrides(
    root: MappingNode,
    overrides: Sequence[str],
    ctx: Context,
    compose: Callable[[str, str, Context], Node | None],
    schema: Callable[[], Section],
) -> None:
    """Apply each ``KEY=VALUE`` of ``overrides`` to ``root`` in turn,
    reporting through ``ctx`` what cannot be applied.

    Args:
        root: the recipe's top-level mapping (changed in place; a mapping
            on the way to a key is copied before it changes, so an anchored
            value used elsewhere in the file stays as it was).
        overrides: the ``KEY=VALUE`` texts, in order (a later one wins).
        ctx: where problems go; each override's name is added to its
            :attr:`~fetchq.recipe.convert.Context.origins`.
        compose: composes a value's YAML text, marking its nodes with a
            name (see :func:`fetchq.recipe.loader.compose_value`).
        schema: the schema of the recipe's kind as the tree stands (an
            override may change the kind).
    """
    for index, text in enumerate(overrides):
        name = f"--set {text}"
        ctx.origins.setdefault(name, index)
        try:
            path, value_text = parse_override(text)
        except ValueError as exc:
            ctx.problems.append(Problem(ctx.path, 1, 1, str(exc), name))
            continue
        value = compose(value_text, name, ctx)
        if value is not None:
            _set(root, path, value, name, ctx, schema())


def _mark(name: str) -> yaml.Mark:
    return yaml.Mark(name, 0, 0, 0, None, 0)


def _set(
    root: MappingNode,
    path: list[str],
    value: Node,
    name: str,
    ctx: Context,
    schema: Section,
) -> None:
    """Put ``value`` at ``path`` under ``root``."""
    mapping = root
    section: Section | None = schema
    where = ""
    parts = list(path)
    while len(parts) > 1:
        part = parts[0]
        field = None if section is None else section.field(part)
        if isinstance(field, Key):  # a mapping-valued key: the rest is one entry
            parts = [part, ".".join(parts[1:])]
        child_mapping = _child_mapping(
            mapping, part, field, join(where, part), name, ctx
        )
        if child_mapping is None:
            return
        mapping = child_mapping
        section = field if isinstance(field, Section) else None
        where = join(where, part)
        parts = parts[1:]
    _put(mapping, parts[0], value, name)


def _child_mapping(
    mapping: MappingNode,
    part: str,
    field: Key | Section | None,
    where: str,
    name: str,
    ctx: Context,
) -> MappingNode | None:
    """The mapping under key ``part`` of ``mapping``, made (or copied) so it
    can change; None after reporting that the file holds something else."""
    for index, (key_node, value_node) in enumerate(mapping.value):
        if not (isinstance(key_node, ScalarNode) and key_node.value == part):
            continue
        child: MappingNode
        if is_null(value_node):
            child = MappingNode(_MAP, [], _mark(name), _mark(name), True)
        elif isinstance(value_node, MappingNode):
            child = MappingNode(
                value_node.tag,
                list(value_node.value),
                value_node.start_mark,
                value_node.end_mark,
                value_node.flow_style,
            )
        else:
            shorthand = (
                shorthand_node(field, value_node)
                if isinstance(field, Section)
                else None
            )
            if shorthand is None:
                line = value_node.start_mark.line + 1
                ctx.problems.append(
                    Problem(
                        ctx.path,
                        1,
                        1,
                        f"{where}: cannot set a key inside it: the recipe gives "
                        f"{describe(value_node)} (line {line}), not a mapping",
                        name,
                    )
                )
                return None
            child = MappingNode(
                _MAP,
                list(shorthand.value),
                shorthand.start_mark,
                shorthand.end_mark,
                False,
            )
        mapping.value[index] = (key_node, child)
        return child
    child = MappingNode(_MAP, [], _mark(name), _mark(name), True)
    mapping.value.append((ScalarNode(_STR, part, _mark(name), _mark(name)), child))
    return child


def _put(mapping: MappingNode, part: str, value: Node, name: str) -> None:
    """Set key ``part`` of ``mapping`` to ``value`` (its first occurrence,
    as the loader reads it), or add it."""
    for index, (key_node, _old) in enumerate(mapping.value):
        if isinstance(key_node, ScalarNode) and key_node.value == part:
            mapping.value[index] = (key_node, value)
            return
    mapping.value.append((ScalarNode(_STR, part, _mark(name), _mark(name)), value))
