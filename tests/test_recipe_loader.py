"""Tests for :mod:`fetchq.recipe`: loading, defaults, secrets and problems.

The corpus of broken recipes (``tests/recipes/broken``) is run by
``test_recipe_corpus.py``; these tests cover what a corpus file cannot show
(the typed values, the environment, unreadable files, the error classes).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import textwrap
import tracemalloc
from pathlib import Path
from typing import NoReturn
from unittest import SkipTest

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fetchq import FetchqError, ResizableDispatchQueue, RetryPolicy
from fetchq.recipe import (
    ApiRecipe,
    FetchRecipe,
    Problem,
    RecipeError,
    Secret,
    StatusSet,
    load_recipe,
    loader,
    parse_recipe,
    reveal,
)

MINIMAL = """\
kind: fetch
input:
  path: data/urls.txt
output:
  path: out/results.jsonl
"""


class RecipeDir:
    """A temporary directory holding recipes and their input files."""

    def __init__(self, case: SynchronousTestCase) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="fetchq-recipe-"))
        case.addCleanup(shutil.rmtree, self.root, True)
        (self.root / "data").mkdir()
        (self.root / "data" / "urls.txt").write_text("https://example.com/\n")
        (self.root / "data" / "rows.csv").write_text("url,prio,key\nhttps://a/,1,a\n")

    def write(self, text: str, name: str = "recipe.yaml") -> Path:
        """Write a recipe (dedented) and return its path."""
        path = self.root / name
        path.write_text(textwrap.dedent(text))
        return path

    def load(self, text: str, environ: dict[str, str] | None = None) -> FetchRecipe:
        """Load recipe text with ``environ`` (default: empty)."""
        return load_recipe(self.write(text), environ={} if environ is None else environ)

    def problems(self, text: str, environ: dict[str, str] | None = None) -> list[str]:
        """The problem lines for recipe text, with the directory left out."""
        path = self.write(text)
        try:
            load_recipe(path, environ={} if environ is None else environ)
        except RecipeError as exc:
            prefix = f"{self.root}{os.sep}"
            lines = [str(problem) for problem in exc.problems]
            for line in lines:
                assert line.startswith(prefix), line
            return [line[len(prefix) :] for line in lines]
        raise AssertionError("the recipe loaded without a problem")


class DefaultsTests(SynchronousTestCase):
    def test_minimal_recipe_gets_every_default(self) -> None:
        """A recipe with only kind, input and output loads with the documented
        defaults, as typed values (seconds, bytes, per-second rates)."""
        recipes = RecipeDir(self)
        recipe = recipes.load(MINIMAL)
        self.assertEqual(recipe.kind, "fetch")
        self.assertEqual(recipe.source, recipes.root / "recipe.yaml")
        self.assertEqual(recipe.input.path, recipes.root / "data" / "urls.txt")
        self.assertEqual(recipe.input.format, "lines")
        self.assertEqual(recipe.input.url_field, "url")
        self.assertIsNone(recipe.input.priority_field)
        self.assertIsNone(recipe.input.id_field)
        self.assertEqual(recipe.output.path, recipes.root / "out" / "results.jsonl")
        self.assertEqual(
            recipe.state.path, recipes.root / "out" / "results.jsonl.state.sqlite"
        )
        self.assertEqual(recipe.state.durability, "normal")
        queue = recipe.queue
        self.assertEqual((queue.width, queue.rate, queue.burst), (16, None, 1))
        lane = queue.lanes
        self.assertEqual((lane.width, lane.rate, lane.burst), (8, None, 1))
        self.assertEqual(
            (
                recipe.retry.max_attempts,
                recipe.retry.base_delay,
                recipe.retry.max_delay,
            ),
            (5, 1.0, 300.0),
        )
        fetch = recipe.fetch
        self.assertEqual(fetch.method, "GET")
        self.assertEqual((dict(fetch.headers), dict(fetch.params)), ({}, {}))
        self.assertIsNone(fetch.body)
        self.assertEqual(
            (fetch.connect_timeout, fetch.headers_timeout, fetch.body_timeout),
            (10.0, 30.0, 120.0),
        )
        self.assertEqual(fetch.max_body, 10 * 1024 * 1024)
        self.assertEqual(fetch.max_redirects, 10)
        self.assertTrue(fetch.allow_private)
        self.assertEqual(fetch.ok_statuses, set(range(200, 300)))
        self.assertEqual(fetch.retry_statuses, {408, 429, 500, 502, 503, 504})
        self.assertEqual(fetch.throttle_statuses, {429, 503})
        self.assertIsNone(fetch.save_bodies)

    def test_paths_are_relative_to_the_recipe(self) -> None:
        """Relative paths resolve against the recipe's directory, whatever
        the current directory, and come out absolute and normalised."""
        recipes = RecipeDir(self)
        recipe = recipes.load(
            """\
            kind: fetch
            input:
              path: ./data/../data/urls.txt
            output:
              path: results.jsonl
            state:
              path: state/run.sqlite
            fetch:
              save_bodies:
                dir: bodies
            """
        )
        self.assertNotEqual(Path.cwd(), recipes.root)
        self.assertEqual(recipe.input.path, recipes.root / "data" / "urls.txt")
        self.assertEqual(recipe.state.path, recipes.root / "state" / "run.sqlite")
        assert recipe.fetch.save_bodies is not None
        self.assertEqual(recipe.fetch.save_bodies.dir, recipes.root / "bodies")
        self.assertEqual(recipe.fetch.save_bodies.name, "sha256")

    def test_format_from_extension_and_csv_columns(self) -> None:
        """A .csv input is read as CSV and its named columns are accepted
        when the header has them."""
        recipes = RecipeDir(self)
        recipe = recipes.load(
            """\
            kind: fetch
            input:
              path: data/rows.csv
              priority_field: prio
              id_field: key
            output:
              path: out.jsonl
            """
        )
        self.assertEqual(recipe.input.format, "csv")
        self.assertEqual(recipe.input.priority_field, "prio")
        self.assertEqual(recipe.input.id_field, "key")

    def test_values_are_normalised(self) -> None:
        """A lower-case method is upper-cased; a single status class, ranges
        and anchors/aliases work; null sections mean all defaults."""
        recipes = RecipeDir(self)
        recipe = recipes.load(
            """\
            kind: fetch
            input: {path: data/urls.txt}
            output: {path: out.jsonl}
            state:
            retry:
              base_delay: &pause 2s
              max_delay: *pause
            fetch:
              method: post
              ok_statuses: 2xx
              retry_statuses: [500-502, 504]
              throttle_statuses: []
            """
        )
        self.assertEqual(recipe.fetch.method, "POST")
        self.assertEqual(recipe.fetch.ok_statuses, set(range(200, 300)))
        self.assertEqual(recipe.fetch.retry_statuses, {500, 501, 502, 504})
        self.assertEqual(recipe.fetch.throttle_statuses, set())
        self.assertEqual((recipe.retry.base_delay, recipe.retry.max_delay), (2.0, 2.0))
        self.assertEqual(recipe.state.durability, "normal")

    def test_status_sets_print_compactly(self) -> None:
        """A StatusSet's repr writes classes and ranges, not 100 numbers."""
        self.assertEqual(
            repr(StatusSet({*range(200, 300), 304, 500, 501, 502, 504})),
            "StatusSet('2xx, 304, 500-502, 504')",
        )

    def test_queue_kwargs_build_a_queue(self) -> None:
        """``queue_kwargs()`` are accepted as they are by
        ResizableDispatchQueue, and ``retry.policy()`` is a RetryPolicy with
        the recipe's numbers."""
        recipe = RecipeDir(self).load(
            MINIMAL
            + textwrap.dedent(
                """\
                queue:
                  width: 3
                  rate: 120/min
                  burst: 4
                  per_host: {width: 2, rate: 1/s, burst: 2}
                retry: {max_attempts: 2, base_delay: 250ms, max_delay: 1m}
                """
            )
        )
        kwargs = recipe.queue.queue_kwargs()
        self.assertEqual(
            kwargs,
            {
                "width": 3,
                "rate": 2.0,
                "burst": 4,
                "lane_width": 2,
                "lane_rate": 1.0,
                "lane_burst": 2,
            },
        )
        policy = recipe.retry.policy(retry_on=(ConnectionError,))
        queue = ResizableDispatchQueue(
            lambda arg: arg, **kwargs, clock=Clock(), retry=policy
        )
        self.assertEqual(queue.width, 3)
        self.assertEqual(
            policy,
            RetryPolicy(
                max_attempts=2,
                base_delay=0.25,
                max_delay=60.0,
                retry_on=(ConnectionError,),
            ),
        )

    def test_parse_recipe_text(self) -> None:
        """``parse_recipe`` checks text with paths relative to the named
        file's directory and names that file in problems."""
        recipes = RecipeDir(self)
        recipe = parse_recipe(MINIMAL, recipes.root / "virtual.yaml", environ={})
        self.assertEqual(recipe.input.path, recipes.root / "data" / "urls.txt")
        with self.assertRaises(RecipeError) as caught:
            parse_recipe("kind: fetch\n", "nowhere/r.yaml", environ={})
        self.assertEqual(
            [str(problem) for problem in caught.exception.problems],
            [
                "nowhere/r.yaml:1:1: missing required key 'input'",
                "nowhere/r.yaml:1:1: missing required key 'output'",
            ],
        )


class EnvironmentTests(SynchronousTestCase):
    SECRET = "s3cr3t-Vv9-token"

    def test_expanded_header_is_a_masked_secret(self) -> None:
        """``${NAME}`` in a header expands from the environment into a Secret:
        the value is there for the sender, never in repr() or str()."""
        recipe = RecipeDir(self).load(
            MINIMAL
            + "fetch:\n  headers:\n    Authorization: Bearer ${API_TOKEN}\n"
            + "    Accept: text/html\n",
            environ={"API_TOKEN": self.SECRET},
        )
        value = recipe.fetch.headers["Authorization"]
        assert isinstance(value, Secret)
        self.assertEqual(value.reveal(), f"Bearer {self.SECRET}")
        self.assertEqual(value.sources, ("API_TOKEN",))
        self.assertEqual(reveal(value), f"Bearer {self.SECRET}")
        self.assertEqual(recipe.fetch.headers["Accept"], "text/html")
        self.assertEqual(
            recipe.fetch.header_items(),
            [("Authorization", f"Bearer {self.SECRET}"), ("Accept", "text/html")],
        )
        for shown in (repr(recipe), str(recipe), repr(value), str(value), f"{value}"):
            self.assertNotIn(self.SECRET, shown)
        self.assertEqual(repr(value), "Secret('***' from ${API_TOKEN})")
        self.assertEqual(str(value), "***")

    def test_params_and_body_expand_too(self) -> None:
        """Query parameters and the body take ``${NAME}`` as headers do."""
        recipe = RecipeDir(self).load(
            MINIMAL
            + "fetch:\n  params:\n    key: ${KEY}\n    page: 1\n"
            + '  body: \'{"token": "${KEY}"}\'\n',
            environ={"KEY": self.SECRET},
        )
        self.assertEqual(
            recipe.fetch.param_items(), [("key", self.SECRET), ("page", "1")]
        )
        self.assertEqual(
            reveal(recipe.fetch.body or ""), f'{{"token": "{self.SECRET}"}}'
        )
        self.assertNotIn(self.SECRET, repr(recipe))

    def test_sensitive_header_names_are_secrets(self) -> None:
        """A credential written into the recipe under a header such as
        Authorization or Cookie is masked too."""
        recipe = RecipeDir(self).load(
            MINIMAL + "fetch:\n  headers:\n    Cookie: sid=abc123\n    X-Api-Key: k1\n"
        )
        self.assertIsInstance(recipe.fetch.headers["Cookie"], Secret)
        self.assertIsInstance(recipe.fetch.headers["X-Api-Key"], Secret)
        self.assertNotIn("abc123", repr(recipe))
        self.assertEqual(repr(recipe.fetch.headers["Cookie"]), "Secret('***')")

    def test_escaped_reference_is_literal(self) -> None:
        """``$${`` writes a literal ``${`` and a lone ``$`` stays as it is:
        nothing is looked up, and the value is a plain string."""
        recipe = RecipeDir(self).load(
            MINIMAL + "fetch:\n  headers:\n    X-Template: $${NOT_SET} costs $5\n"
        )
        self.assertEqual(recipe.fetch.headers["X-Template"], "${NOT_SET} costs $5")

    def test_missing_variable_is_located(self) -> None:
        """An unset variable is one problem at the value that names it."""
        recipes = RecipeDir(self)
        self.assertEqual(
            recipes.problems(MINIMAL + "fetch:\n  headers:\n    X-Token: ${NOPE}\n"),
            [
                "recipe.yaml:8:14: fetch.headers.X-Token: environment variable "
                "NOPE is not set"
            ],
        )

    def test_empty_variable_is_a_problem(self) -> None:
        """A variable that is set but empty is reported: an empty credential
        is a mistake, not a value."""
        recipes = RecipeDir(self)
        self.assertEqual(
            recipes.problems(
                MINIMAL + "fetch:\n  params:\n    token: ${EMPTY}\n",
                environ={"EMPTY": ""},
            ),
            [
                "recipe.yaml:8:12: fetch.params.token: "
                "environment variable EMPTY is empty"
            ],
        )

    def test_secret_never_in_error_messages(self) -> None:
        """A secret that would smuggle a line break into a header is refused
        with a message naming the variable, never showing its value."""
        recipes = RecipeDir(self)
        evil = f"{self.SECRET}\r\nX-Injected: 1"
        problems = recipes.problems(
            MINIMAL + "fetch:\n  headers:\n    Authorization: Bearer ${API_TOKEN}\n",
            environ={"API_TOKEN": evil},
        )
        self.assertEqual(
            problems,
            [
                "recipe.yaml:8:20: fetch.headers.Authorization: the value has a line "
                "break or NUL character after expanding ${API_TOKEN}"
            ],
        )
        self.assertNotIn(self.SECRET, "\n".join(problems))
        self.assertNotIn("Injected", "\n".join(problems))

    def test_other_problems_do_not_show_secrets(self) -> None:
        """When a recipe with a good secret fails for another reason, neither
        the problems nor the exception show the secret."""
        recipes = RecipeDir(self)
        path = recipes.write(
            MINIMAL
            + "queue:\n  width: ten\n"
            + "fetch:\n  headers:\n    Authorization: ${API_TOKEN}\n"
        )
        with self.assertRaises(RecipeError) as caught:
            load_recipe(path, environ={"API_TOKEN": self.SECRET})
        self.assertNotIn(self.SECRET, str(caught.exception))
        self.assertNotIn(self.SECRET, repr(caught.exception))
        self.assertEqual(len(caught.exception.problems), 1)

    def test_default_environment_is_os_environ(self) -> None:
        """Without ``environ=``, references are looked up in os.environ."""
        os.environ["FETCHQ_TEST_RECIPE_VAR"] = "from-os"
        self.addCleanup(os.environ.pop, "FETCHQ_TEST_RECIPE_VAR", None)
        path = RecipeDir(self).write(
            MINIMAL + "fetch:\n  params:\n    v: ${FETCHQ_TEST_RECIPE_VAR}\n"
        )
        self.assertEqual(load_recipe(path).fetch.param_items(), [("v", "from-os")])


class ProblemTests(SynchronousTestCase):
    def test_error_classes(self) -> None:
        """RecipeError is a FetchqError and a ValueError; its str() is one
        ``path:LINE:COL: message`` line per problem."""
        error = RecipeError(
            [Problem("r.yaml", 3, 5, "first"), Problem("r.yaml", 9, 1, "second")]
        )
        self.assertIsInstance(error, FetchqError)
        self.assertIsInstance(error, ValueError)
        self.assertEqual(str(error), "r.yaml:3:5: first\nr.yaml:9:1: second")
        self.assertEqual(len(error.problems), 2)

    def test_problem_positions_are_one_based(self) -> None:
        """A Problem refuses line or column 0, and an empty RecipeError is
        refused."""
        with self.assertRaises(ValueError):
            Problem("r.yaml", 0, 1, "x")
        with self.assertRaises(ValueError):
            Problem("r.yaml", 1, 0, "x")
        with self.assertRaises(ValueError):
            RecipeError([])

    def test_problems_are_in_file_order(self) -> None:
        """Problems found in different passes (duplicates, values, checks)
        come out sorted by line and column."""
        problems = RecipeDir(self).problems(
            """\
            kind: fetch
            input:
              path: data/urls.txt
            output:
              path: out.jsonl
            retry:
              base_delay: 10s
              max_delay: 1s
              max_attempts: 0
            queue:
              width: 2
              width: 3
            """
        )
        self.assertEqual(
            problems,
            [
                "recipe.yaml:8:14: retry.max_delay: 1s is less than "
                "retry.base_delay (10s)",
                "recipe.yaml:9:17: retry.max_attempts: must be at least 1, got 0",
                "recipe.yaml:12:3: queue.width: duplicate key (first given at line 11)",
            ],
        )

    def test_duplicate_keys_anywhere(self) -> None:
        """Duplicate keys are found inside free-form mappings such as headers
        too, where the schema does not name the keys."""
        problems = RecipeDir(self).problems(
            MINIMAL + "fetch:\n  headers:\n    Accept: a\n    Accept: b\n"
        )
        self.assertEqual(
            problems,
            [
                "recipe.yaml:9:5: fetch.headers.Accept: "
                "duplicate key (first given at line 8)"
            ],
        )

    def test_unreadable_recipe(self) -> None:
        """A missing file or a directory is one problem at 1:1 naming the
        reason, not an OSError."""
        recipes = RecipeDir(self)
        for target, reason in [
            (recipes.root / "missing.yaml", "no such file or directory"),
            (recipes.root / "data", "is a directory"),
        ]:
            with self.assertRaises(RecipeError) as caught:
                load_recipe(target)
            self.assertEqual(
                [str(problem) for problem in caught.exception.problems],
                [f"{target}:1:1: cannot read the recipe: {reason}"],
            )

    def test_not_utf8(self) -> None:
        """Bytes that are not UTF-8 are located at their line and column."""
        recipes = RecipeDir(self)
        path = recipes.root / "latin1.yaml"
        path.write_bytes(b"kind: fetch\ninput:\n  path: caf\xe9.txt\n")
        with self.assertRaises(RecipeError) as caught:
            load_recipe(path)
        self.assertEqual(
            [str(problem) for problem in caught.exception.problems],
            [f"{path}:3:12: the recipe is not UTF-8 text"],
        )

    def test_byte_order_mark_is_accepted(self) -> None:
        """A UTF-8 byte order mark (as some editors write) is not a problem."""
        recipes = RecipeDir(self)
        path = recipes.root / "bom.yaml"
        path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
        self.assertEqual(load_recipe(path, environ={}).kind, "fetch")

    def test_control_character(self) -> None:
        """A character YAML cannot hold is located, not a traceback."""
        problems = RecipeDir(self).problems("kind: fetch\ninput:\n  path: a\x07b\n")
        self.assertEqual(
            problems, ["recipe.yaml:3:10: the character U+0007 is not allowed in YAML"]
        )

    def test_pathological_nesting(self) -> None:
        """YAML nested thousands deep is a located problem, not a
        RecursionError."""
        deep = "kind: fetch\nextra: " + "[" * 5000 + "]" * 5000 + "\n"
        with self.assertRaises(RecipeError) as caught:
            parse_recipe(deep, "deep.yaml", environ={})
        self.assertEqual(
            [str(problem) for problem in caught.exception.problems],
            ["deep.yaml:1:1: the YAML is nested too deeply"],
        )

    def test_nesting_limit(self) -> None:
        """Nesting that YAML accepts but no recipe needs stops at a limit
        with a located message."""
        text = MINIMAL + "extra: " + "[" * 60 + "]" * 60 + "\n"
        with self.assertRaises(RecipeError) as caught:
            parse_recipe(text, "deep.yaml", environ={})
        messages = [problem.message for problem in caught.exception.problems]
        self.assertIn(
            "extra: unknown key; expected one of: kind, input, output, "
            "state, queue, retry, fetch, run, admin",
            messages,
        )
        self.assertIn("extra[...]: nested more than 50 levels deep", messages)


API_HEAD = """\
kind: api
input:
  path: data/users.jsonl
output:
  path: out.jsonl
api:
  base_url: https://api.example.com
  method: POST
  path: /2/users/{id}/tweets
  token: not-a-real-token
"""


def alias_bomb(levels: int) -> str:
    """An api recipe whose body is a "billion laughs": a list of ten strings,
    then ``levels - 1`` lists of ten aliases of the list before, so that the
    last expands to ``10 ** levels`` strings (from lines 12 on)."""
    names = "abcdefghij"[:levels]
    lines = [f"    a: &a [{', '.join(['lol'] * 10)}]"]
    for before, name in itertools.pairwise(names):
        lines.append(f"    {name}: &{name} [{', '.join([f'*{before}'] * 10)}]")
    return API_HEAD + "  body:\n" + "\n".join(lines) + "\n"


class LimitTests(SynchronousTestCase):
    """A recipe cannot make loading it take unbounded time or memory."""

    def setUp(self) -> None:
        self.recipes = RecipeDir(self)
        (self.recipes.root / "data" / "users.jsonl").write_text('{"id": "1"}\n')

    def test_alias_bomb_is_refused_at_the_alias(self) -> None:
        """A few hundred bytes of aliases that would expand to a million
        values in api.body are refused at the alias that takes the recipe
        past 100,000 values (e[7]: 12,373 before e's first alias, then 11,111
        each), as one located problem, and loading it never holds more than
        a few MB (it held ~150 MB, and one level more ~1 GB, before)."""
        text = alias_bomb(6)
        self.assertLess(len(text), 600)
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        try:
            problems = self.recipes.problems(text)
        finally:
            _size, peak = tracemalloc.get_traced_memory()
        self.assertEqual(
            problems,
            [
                "recipe.yaml:16:40: api.body.e[7]: the alias *d repeats 11,111 "
                "values, which takes the recipe past 100,000 values, the most a "
                "recipe may hold (aliases expanded)"
            ],
        )
        self.assertLess(peak, 8_000_000)

    def test_value_budget_boundary(self) -> None:
        """A recipe of exactly 100,000 values loads, aliases expanded in its
        body (22 values before the body, 1 for the body, 101 for ``numbers``,
        2 + 998 x 100 for ``copies``, 74 for ``pad``); one value more, plain
        or through an alias, is refused where it is."""
        numbers = ", ".join(["0"] * 99)
        copies = ", ".join(["*n"] * 998)
        pad = ", ".join(["0"] * 72)
        body = (
            f"  body:\n    numbers: &n [{numbers}]\n    copies: [{copies}]\n"
            f"    pad: [{pad}]\n"
        )
        recipe = self.recipes.load(API_HEAD + body)
        assert isinstance(recipe, ApiRecipe)
        self.assertEqual(recipe.api.body["copies"], [[0] * 99] * 998)
        self.assertEqual(
            self.recipes.problems(API_HEAD + body.replace("pad: [", "pad: [0, ")),
            [
                "recipe.yaml:14:227: api.body.pad[72]: the recipe holds more than "
                "100,000 values, the most a recipe may"
            ],
        )
        self.assertEqual(
            self.recipes.problems(API_HEAD + body.replace("pad: [0, ", "pad: [*n, ")),
            [
                "recipe.yaml:14:11: api.body.pad[0]: the alias *n repeats 100 "
                "values, which takes the recipe past 100,000 values, the most a "
                "recipe may hold (aliases expanded)"
            ],
        )

    def test_recursive_alias(self) -> None:
        """An alias inside the value it names (which would repeat forever,
        and made loading spin for good) is one located problem."""
        self.assertEqual(
            self.recipes.problems(API_HEAD + "  body: &x [1, *x, *x]\n"),
            [
                "recipe.yaml:11:16: api.body[1]: the alias *x is inside the value "
                "it names, so it would repeat forever"
            ],
        )

    def test_size_cap(self) -> None:
        """A recipe of exactly 1 MiB (padded with a comment) loads; one byte
        more is one problem at 1:1 saying what the cap is, from the file and
        from text alike (counted in UTF-8 bytes, not characters)."""
        cap = 1024 * 1024
        padding = "#" * (cap - len(MINIMAL) - 1) + "\n"
        path = self.recipes.write(MINIMAL + padding)
        self.assertEqual(path.stat().st_size, cap)
        self.assertEqual(load_recipe(path, environ={}).kind, "fetch")
        message = (
            "the recipe is larger than 1 MiB (1,048,576 bytes), the most a "
            "recipe may be"
        )
        self.assertEqual(
            self.recipes.problems(MINIMAL + "#" + padding),
            [f"recipe.yaml:1:1: {message}"],
        )
        with self.assertRaises(RecipeError) as caught:
            parse_recipe(MINIMAL + "#é" + padding[2:], "big.yaml", environ={})
        self.assertEqual(
            [str(problem) for problem in caught.exception.problems],
            [f"big.yaml:1:1: {message}"],
        )

    def test_endless_file(self) -> None:
        """A file that never ends (/dev/zero) is refused after reading just
        past the cap, not read until memory runs out."""
        if not os.path.exists("/dev/zero"):
            raise SkipTest("no /dev/zero here")
        with self.assertRaises(RecipeError) as caught:
            load_recipe("/dev/zero")
        self.assertEqual(
            [str(problem) for problem in caught.exception.problems],
            [
                "/dev/zero:1:1: the recipe is larger than 1 MiB (1,048,576 "
                "bytes), the most a recipe may be"
            ],
        )

    def test_memory_error_is_a_problem(self) -> None:
        """Running out of memory anywhere in loading (composing the YAML,
        converting the keys, building the typed value) is one problem at
        1:1, not a MemoryError."""
        path = self.recipes.write(MINIMAL)
        for stage in ("_compose", "_walk", "build"):

            def exhausted(*args: object, **kwargs: object) -> NoReturn:
                raise MemoryError

            with self.subTest(stage):
                patched = self.patch(loader, stage, exhausted)
                try:
                    with self.assertRaises(RecipeError) as caught:
                        load_recipe(path, environ={})
                finally:
                    patched.restore()
                self.assertEqual(
                    [str(problem) for problem in caught.exception.problems],
                    [f"{path}:1:1: out of memory while loading the recipe"],
                )
