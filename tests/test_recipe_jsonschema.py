"""The recipe schema as JSON Schema (``fetchq schema``), checked with the
``jsonschema`` library against the recipes the project ships and against
the broken-recipe corpus."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from twisted.trial.unittest import SynchronousTestCase

from fetchq.recipe.jsonschema import LIMITS, recipe_schema, schema_text
from fetchq.recipe.schema import KINDS, all_paths

from .test_cli import run

ROOT = Path(__file__).resolve().parent.parent
BROKEN = ROOT / "tests" / "recipes" / "broken"

STRUCTURAL = {
    # Every corpus case whose problems are all about shape: unknown keys,
    # wrong types, malformed units and values below their least.
    "adaptive-unknown-key",
    "api-bad-path",
    "api-max-pages-zero",
    "api-missing-token",
    "api-records-items",
    "api-unquoted-placeholder",
    "bad-bool",
    "bad-duration",
    "bad-env-reference",
    "bad-format",
    "bad-headers",
    "bad-method",
    "bad-rate",
    "bad-save-bodies",
    "bad-size",
    "bad-statuses",
    "many-problems",
    "misplaced-key",
    "missing-required",
    "run-max-failures",
    "section-not-mapping",
    "sms-lines-input",
    "sms-per-host",
    "sms-unknown-key",
    "timeout-names",
    "unknown-key-no-suggestion",
    "unknown-kind",
    "unknown-nested-key",
    "unknown-top-key",
    "width-zero",
    "wrong-type-width",
    "zero-rate",
}
"""Broken recipes JSON Schema must refuse too."""

BEYOND = {
    # What only ``fetchq validate`` can see (files, cross-key checks, the
    # environment, E.164 numbers, templates against the input's columns).
    "missing-input-file",
    "status-overlap",
    "output-is-input",
    "api-unset-token",
    "sms-bad-sender",
    "csv-missing-column",
    "api-csv-placeholder",
    "shorthand",
}
"""Broken recipes whose problems JSON Schema cannot express: they pass it."""


def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(recipe_schema())


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def readme_fragments() -> list[dict[str, Any]]:
    """The README's YAML examples, each made a whole recipe: a fragment
    without ``kind`` is put in a minimal fetch recipe."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL):
        doc = yaml.safe_load(block)
        if isinstance(doc, dict) and "kind" not in doc:
            doc = {"kind": "fetch", "input": "urls.txt", "output": "out.jsonl", **doc}
        found.append(doc)
    return found


class JsonSchemaTests(SynchronousTestCase):
    def test_is_a_valid_draft_2020_12_schema(self) -> None:
        """The schema is itself valid JSON Schema 2020-12, says what it leaves
        to ``fetchq validate``, and ``fetchq schema`` prints exactly it."""
        schema = recipe_schema()
        jsonschema.Draft202012Validator.check_schema(schema)
        self.assertEqual(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema"
        )
        self.assertIn(LIMITS, schema["description"])
        status, out, err = run("schema")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(json.loads(out), schema)
        self.assertEqual(out, schema_text())

    def test_every_key_of_every_kind_is_described(self) -> None:
        """Each kind's keys, and only those, are in its schema, each with a
        description (one source: the loader's schema)."""
        defs = recipe_schema()["$defs"]
        for kind, section in KINDS.items():
            found: list[str] = []

            def walk(node: dict[str, Any], where: str, found: list[str]) -> None:
                for name, sub in node.get("properties", {}).items():
                    here = f"{where}.{name}" if where else name
                    found.append(here)
                    self.assertTrue(sub.get("description"), here)
                    if sub.get("additionalProperties") is False:
                        walk(sub, here, found)

            walk(defs[kind], "", found)
            self.assertEqual(found, all_paths(section), kind)

    def test_shipped_recipes_pass(self) -> None:
        """Every recipe in recipes/, the demo recipe and the README's YAML
        examples are valid against the schema."""
        check = validator()
        paths = sorted((ROOT / "recipes").glob("*.yaml"))
        paths.append(ROOT / "fetchq" / "demo" / "demo.yaml")
        self.assertGreaterEqual(len(paths), 6)
        for path in paths:
            errors = [e.message for e in check.iter_errors(load(path))]
            self.assertEqual(errors, [], path.name)
        fragments = readme_fragments()
        self.assertGreaterEqual(len(fragments), 2)
        for doc in fragments:
            self.assertEqual([e.message for e in check.iter_errors(doc)], [], doc)

    def test_structural_corpus_cases_are_refused(self) -> None:
        """Broken recipes whose problems are about shape are refused by the
        schema too; those whose problems it cannot express (said in its
        description) pass it, so that description is honest."""
        check = validator()
        for name in sorted(STRUCTURAL):
            doc = load(BROKEN / f"{name}.yaml")
            self.assertTrue(list(check.iter_errors(doc)), f"{name} passed")
        for name in sorted(BEYOND):
            doc = load(BROKEN / f"{name}.yaml")
            self.assertEqual(list(check.iter_errors(doc)), [], name)

    def test_units_and_shorthand(self) -> None:
        """Durations, sizes and rates as text follow the units' grammar
        (any letter case, zero refused where the loader refuses it); a
        section with a shorthand takes a plain value."""
        check = validator()
        base = {"kind": "fetch", "input": "urls.txt", "output": "out.jsonl"}

        def ok(**changes: Any) -> bool:
            return not list(check.iter_errors({**base, **changes}))

        self.assertTrue(ok(queue={"rate": "600/MIN", "width": 3}))
        self.assertTrue(ok(queue={"rate": None}))
        self.assertFalse(ok(queue={"rate": "0/s"}))
        self.assertFalse(ok(queue={"rate": "5/fortnight"}))
        self.assertTrue(ok(fetch={"max_body": "512KiB", "timeout": "1m30s"}))
        self.assertFalse(ok(fetch={"max_body": "0MB"}))
        self.assertFalse(ok(fetch={"timeout": "0s"}))
        self.assertTrue(ok(retry={"base_delay": "0s"}))
        self.assertTrue(ok(state="redis://127.0.0.1:6379/0"))
        self.assertFalse(ok(input=["urls.txt"]))
        self.assertFalse(ok(kind="sms"))  # an sms recipe needs its sms section
