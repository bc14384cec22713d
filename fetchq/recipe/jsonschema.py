"""The recipe schema as JSON Schema (draft 2020-12), for editors.

``fetchq schema > fetchq.schema.json`` writes it; an editor's YAML support
(the YAML language server behind VS Code, Neovim, Helix, JetBrains IDEs...)
pointed at it completes keys, shows each key's description and default, and
flags unknown keys, wrong types and malformed units as you type.  It is made
from the same declaration as the loader and the README's reference
(:mod:`fetchq.recipe.schema`): each key's converter gives the JSON Schema of
the values it accepts (:attr:`~fetchq.recipe.convert.Conv.json`), so the
three cannot drift apart.

It checks a recipe's *shape*; ``fetchq validate`` checks everything.  What
JSON Schema cannot say is written in the schema's own description
(:data:`LIMITS`).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import yaml

from fetchq.recipe.schema import KIND, KINDS, Key, Section

__all__ = ["LIMITS", "SCHEMA_ID", "recipe_schema", "schema_text"]

SCHEMA_ID = "https://json-schema.org/draft/2020-12/schema"

LIMITS = (
    "This schema checks a recipe's shape: its keys (a kind's own keys only), "
    "the type of every value, the syntax of durations, sizes, rates, statuses, "
    "URLs and ${NAME} references, and the least values allowed.  `fetchq "
    "validate RECIPE` checks everything, and some of it JSON Schema cannot "
    "express: that input files exist and CSV headers have the columns named; "
    "that template placeholders name the input's fields; checks across keys "
    "(max_delay not below base_delay, max_width not below min_width, a status "
    "not both ok and retried, input, output, state and saved bodies being "
    "different files, one sender); that ${NAME} variables are set (`fetchq "
    "validate --no-env` checks without them); E.164 numbers, URL hosts and "
    "header values after ${NAME} expansion; and the adapters' own checks of "
    "an sms or api section."
)
"""What this schema leaves to ``fetchq validate`` (its description says so)."""


def _default(key: Key) -> Any:
    return None if key.default is None else yaml.safe_load(key.default)


def _key(key: Key) -> dict[str, Any]:
    shape = dict(key.conv.json)
    shape["description"] = key.description
    if key.default is not None:
        shape["default"] = _default(key)
    elif key.default_doc:
        shape["description"] += f" Default: {key.default_doc}."
    return shape


def _section(section: Section, *, top: bool = False) -> dict[str, Any]:
    """A section: a mapping of its keys and no others (also a plain value
    when it has a shorthand, and null when it is not required)."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in section.fields:
        if isinstance(field, Section):
            properties[field.name] = _section(field)
        else:
            properties[field.name] = _key(field)
        if field.required:
            required.append(field.name)
    types = ["object"]
    if section.shorthand is not None:
        types.insert(0, "string")
    if not section.required:  # null: every key takes its default
        types.append("null")
    description = section.description
    if section.shorthand_doc:
        description += f" A mapping, {section.shorthand_doc}."
    shape: dict[str, Any] = {
        "description": description,
        "type": "object" if top else types if len(types) > 1 else types[0],
    }
    if section.shorthand is not None:
        shape["pattern"] = r"\S"
    shape["properties"] = properties
    shape["additionalProperties"] = False
    if required:
        shape["required"] = required
    return shape


@cache
def recipe_schema() -> dict[str, Any]:
    """The JSON Schema of every kind of recipe: the top level dispatches on
    ``kind`` (``if``/``then``) to each kind's schema in ``$defs``."""
    kinds = list(KINDS)
    return {
        "$schema": SCHEMA_ID,
        "title": "fetchq recipe",
        "description": "A fetchq recipe (`fetchq run RECIPE`). " + LIMITS,
        "type": "object",
        "required": ["kind", "input", "output"],
        "properties": {
            "kind": {"description": KIND.description, "enum": kinds},
        },
        "allOf": [
            {
                "if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
                "then": {"$ref": f"#/$defs/{kind}"},
            }
            for kind in kinds
        ],
        "$defs": {kind: _section(KINDS[kind], top=True) for kind in kinds},
    }


def schema_text() -> str:
    """:func:`recipe_schema` as JSON text (what ``fetchq schema`` prints)."""
    return json.dumps(recipe_schema(), indent=2, ensure_ascii=False) + "\n"
