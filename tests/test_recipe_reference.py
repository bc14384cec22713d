"""The README's recipe reference is generated from the schema and up to date."""

from __future__ import annotations

import io
import shutil
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from fetchq.recipe import reference
from fetchq.recipe.convert import Context, join
from fetchq.recipe.schema import KINDS, Key, Section, all_paths

ROOT = Path(__file__).resolve().parent.parent


def keys(section: Section, where: str = "") -> list[tuple[str, Key]]:
    """Every key under ``section`` with its dotted path."""
    found: list[tuple[str, Key]] = []
    for field in section.fields:
        here = join(where, field.name)
        if isinstance(field, Section):
            found.extend(keys(field, here))
        else:
            found.append((here, field))
    return found


class ReferenceTests(SynchronousTestCase):
    def test_readme_is_up_to_date(self) -> None:
        """The table between the README's markers is exactly what the schema
        generates now."""
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        current = reference.readme_section(readme).strip()
        if current != reference.reference_markdown().strip():
            self.fail(
                "README.md's recipe reference differs from the schema; "
                "regenerate it with `python -m fetchq.recipe.reference --write`"
            )

    def test_every_key_is_documented(self) -> None:
        """Every key and section of every kind has a row with a type and a
        description."""
        table = reference.reference_markdown()
        for schema in KINDS.values():
            for where in all_paths(schema):
                self.assertIn(f"| `{where}` |", table)
            for where, key in keys(schema):
                self.assertTrue(key.type_doc and key.description, where)

    def test_one_table_per_kind(self) -> None:
        """Each kind has its own heading and table, listing exactly the keys
        that kind takes (a fetch key is not in the sms table), in order."""
        markdown = reference.reference_markdown()
        for kind, schema in KINDS.items():
            self.assertIn(f"### `kind: {kind}`\n\n{schema.description}\n", markdown)
            table = reference.kind_table(kind)
            self.assertIn(table, markdown)
            rows = [line for line in table.splitlines() if line.startswith("| `")]
            listed = [row.split(" | ")[0].removeprefix("| ").strip("`") for row in rows]
            self.assertEqual(listed, all_paths(schema), kind)
        self.assertNotIn("per_host", reference.kind_table("sms"))
        self.assertNotIn("url_field", reference.kind_table("api"))
        self.assertIn(
            "| `state.durability` | `normal` \\| `full` | `full` |",
            reference.kind_table("sms"),
        )

    def test_defaults_are_valid(self) -> None:
        """Every default, written as YAML text, converts with its own key's
        converter (so the documented default is the real one)."""
        ctx = Context(path="<defaults>", base=ROOT, environ={})
        for schema in KINDS.values():
            for where, key in keys(schema):
                node = key.default_node()
                if node is not None:
                    key.conv(node, ctx, where)
                else:
                    self.assertTrue(key.required or key.default_doc, where)
        self.assertEqual(ctx.problems, [])

    def test_write(self) -> None:
        """``--write`` replaces only the text between the markers, and a second
        run changes nothing."""
        work = Path(tempfile.mkdtemp(prefix="fetchq-ref-"))
        self.addCleanup(shutil.rmtree, work, True)
        readme = work / "README.md"
        readme.write_text(
            f"# Title\n\nBefore.\n\n{reference.START}\nold table\n"
            f"{reference.END}\n\nAfter.\n"
        )
        out = io.StringIO()
        with redirect_stdout(out):
            self.assertEqual(reference.main(["--write", "--readme", str(readme)]), 0)
        self.assertIn("updated", out.getvalue())
        text = readme.read_text()
        self.assertTrue(
            text.startswith(
                f"# Title\n\nBefore.\n\n{reference.START}\n### `kind: fetch`\n"
            )
        )
        self.assertTrue(text.endswith(f"|\n{reference.END}\n\nAfter.\n"))
        self.assertEqual(
            reference.readme_section(text).strip(),
            reference.reference_markdown().strip(),
        )
        with redirect_stdout(io.StringIO()) as again:
            reference.main(["--write", "--readme", str(readme)])
        self.assertIn("already up to date", again.getvalue())
        self.assertEqual(readme.read_text(), text)

    def test_write_without_markers(self) -> None:
        """``--write`` on a README without the markers says so and exits 1,
        leaving the file alone."""
        work = Path(tempfile.mkdtemp(prefix="fetchq-ref-"))
        self.addCleanup(shutil.rmtree, work, True)
        readme = work / "README.md"
        readme.write_text("# No markers\n")
        with redirect_stderr(io.StringIO()) as err:
            self.assertEqual(reference.main(["--write", "--readme", str(readme)]), 1)
        self.assertIn("has no <!-- recipe-reference:start -->", err.getvalue())
        self.assertEqual(readme.read_text(), "# No markers\n")

    def test_print(self) -> None:
        """Without ``--write`` the table is printed."""
        with redirect_stdout(io.StringIO()) as out:
            self.assertEqual(reference.main([]), 0)
        self.assertEqual(out.getvalue(), reference.reference_markdown())
