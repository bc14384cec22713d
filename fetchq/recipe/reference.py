"""The recipe reference: a Markdown table of every key of each kind of
recipe, made from the schema.

The README holds a copy between ``<!-- recipe-reference:start -->`` and
``<!-- recipe-reference:end -->``; a test fails when the two differ.  To
bring the README up to date after changing the schema::

    python -m fetchq.recipe.reference --write
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from fetchq.recipe.convert import join
from fetchq.recipe.schema import KINDS, Key, Section

__all__ = [
    "END",
    "README",
    "START",
    "kind_table",
    "readme_section",
    "reference_markdown",
    "with_reference",
]

START = "<!-- recipe-reference:start -->"
END = "<!-- recipe-reference:end -->"
README = Path(__file__).resolve().parents[2] / "README.md"
"""The project's README (beside the ``fetchq`` package)."""


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def _default(field: Key | Section) -> str:
    if field.required:
        return "**required**"
    if isinstance(field, Section):
        return "none" if field.optional else ""
    if field.default is not None:
        return f"`{field.default}`"
    return field.default_doc or ""


def _rows(section: Section, where: str) -> Iterator[tuple[str, str, str, str]]:
    for field in section.fields:
        here = join(where, field.name)
        if isinstance(field, Section):
            kind, description = "mapping", field.description
            if field.shorthand is not None:
                kind = "mapping, or a path"
                description += f" A mapping, {field.shorthand_doc}."
            yield (f"`{here}`", kind, _default(field), description)
            yield from _rows(field, here)
        else:
            yield (f"`{here}`", field.type_doc, _default(field), field.description)


def kind_table(kind: str) -> str:
    """Every key of ``kind`` recipes as a Markdown table: key path, type,
    default, description."""
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    for row in _rows(KINDS[kind], ""):
        lines.append("| " + " | ".join(_cell(cell) for cell in row) + " |")
    return "\n".join(lines) + "\n"


def reference_markdown() -> str:
    """The reference: for each kind, a heading, what it does and its table
    (a kind's table lists every key it takes, shared ones included)."""
    return "\n".join(
        f"### `kind: {kind}`\n\n{schema.description}\n\n{kind_table(kind)}"
        for kind, schema in KINDS.items()
    )


def readme_section(readme: str) -> str:
    """The text between the reference markers of ``readme``.

    Raises:
        ValueError: if the markers are missing or out of order.
    """
    start, end = readme.find(START), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the README has no {START} ... {END} section")
    return readme[start + len(START) : end]


def with_reference(readme: str) -> str:
    """``readme`` with the current reference between its markers."""
    readme_section(readme)  # checks the markers
    start, end = readme.find(START) + len(START), readme.find(END)
    return readme[:start] + "\n" + reference_markdown() + readme[end:]


def main(argv: Sequence[str] | None = None) -> int:
    """Print the reference, or with ``--write`` put it into the README."""
    parser = argparse.ArgumentParser(
        prog="python -m fetchq.recipe.reference",
        description="Print the recipe reference table generated from the schema.",
    )
    parser.add_argument(
        "--write",
        action="store_true",
        help="replace the table between the README's markers instead",
    )
    parser.add_argument(
        "--readme", type=Path, default=README, help="(default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if not args.write:
        sys.stdout.write(reference_markdown())
        return 0
    try:
        old = args.readme.read_text(encoding="utf-8")
        new = with_reference(old)
        if new != old:
            args.readme.write_text(new, encoding="utf-8")
    except (OSError, ValueError) as exc:
        print(f"{args.readme}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.readme}: {'updated' if new != old else 'already up to date'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
