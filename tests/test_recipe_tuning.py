"""Tuning a recipe without editing it (issue 12, section 3): ``--set``
overrides, the shorthand sections, checking without the environment, and
one set of timeout names for every kind."""

from __future__ import annotations

import io
import shutil
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from fetchq import cli
from fetchq.recipe import RecipeError, Secret, check_recipe, load_recipe
from fetchq.recipe.overrides import parse_override

FETCH = """\
kind: fetch
input: urls.txt
output: out.jsonl
queue:
  width: 4
  rate: 10/s
defaults: &h {X-A: b}
"""

SMS = """\
kind: sms
input: messages.csv
output: out.jsonl
sms:
  account_sid: ${FETCHQ_TEST_UNSET_SID}
  auth_token: ${FETCHQ_TEST_UNSET_TOKEN}
  from: "+12125550100"
  body: "Hi {name}"
"""


def cli_run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = cli.main(list(argv))
    return status, out.getvalue(), err.getvalue()


class Folder(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="fetchq-tuning-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        (self.dir / "urls.txt").write_text("https://a.example/\n")
        (self.dir / "other.txt").write_text("https://b.example/\n")
        (self.dir / "messages.csv").write_text("to,name\n+12125550101,Ann\n")

    def write(self, text: str, name: str = "r.yaml") -> Path:
        path = self.dir / name
        path.write_text(text)
        return path

    def problems(self, path: Path, *overrides: str, **kw: object) -> list[str]:
        with self.assertRaises(RecipeError) as caught:
            load_recipe(path, overrides=overrides, **kw)  # type: ignore[arg-type]
        return [str(problem) for problem in caught.exception.problems]


class OverrideTests(Folder):
    def test_values_go_through_the_same_converters(self) -> None:
        """Overrides replace the file's values and add missing keys and
        sections, each VALUE read as YAML and converted as the file's would
        be (units, mappings, null)."""
        path = self.write(FETCH.replace("defaults: &h {X-A: b}\n", ""))
        recipe = load_recipe(
            path,
            overrides=[
                "queue.width=8",
                "queue.rate=50/s",
                "fetch.max_body=1MB",
                'fetch.headers={"X-A": "b"}',
                "fetch.headers.X-C=d",
                "queue.per_host.rate=",
                "retry.max_delay=1m",
                "queue.width=9",
            ],
        )
        self.assertEqual((recipe.queue.width, recipe.queue.rate), (9, 50.0))
        self.assertEqual(recipe.fetch.max_body, 1_000_000)
        self.assertEqual(dict(recipe.fetch.headers), {"X-A": "b", "X-C": "d"})
        self.assertIsNone(recipe.queue.lanes.rate)
        self.assertEqual(recipe.retry.max_delay, 60.0)

    def test_dotted_entry_of_a_mapping_key(self) -> None:
        """Past a key whose value is a mapping, the rest of the path is one
        entry, dots included (X's ``tweet.fields`` parameter)."""
        path = self.write(
            "kind: api\ninput: urls.txt\noutput: out.jsonl\napi:\n"
            "  base_url: https://api.example.com\n  path: /2/tweets\n"
            "  token: t\n"
        )
        recipe = load_recipe(path, overrides=["api.params.tweet.fields=created_at"])
        self.assertEqual(dict(recipe.api.params), {"tweet.fields": "created_at"})

    def test_problems_are_located_at_the_override(self) -> None:
        """A wrong value, an unknown key (with the did-you-mean the file
        would get) and a malformed override are each one line naming the
        override as typed; problems of the file come first, with their
        lines."""
        path = self.write(FETCH.replace("width: 4", "width: four"))
        self.assertEqual(
            self.problems(
                path,
                "queue.rate=0",
                "queue.widht=8",
                "queue.per_hots.width=2",
                "fetch.timeout=soon",
                "queue",
                "queue..width=1",
                "queue.width=[1",
            ),
            [
                f"{path}:5:10: queue.width: expected an integer, got 'four'",
                f"{path}:7:1: defaults: unknown key; expected one of: kind, input, "
                "output, state, queue, retry, fetch, run, admin",
                "--set queue.rate=0: queue.rate: bad rate 0: must be more than 0; "
                "write null for no limit",
                "--set queue.widht=8: queue.widht: unknown key; did you mean 'width'?",
                "--set queue.per_hots.width=2: queue.per_hots: unknown key; did you "
                "mean 'per_host'?",
                "--set fetch.timeout=soon: fetch.timeout: bad duration 'soon': "
                "expected a number and a unit such as 10s, 250ms, 2m or 1h",
                "--set queue: expected KEY=VALUE, such as queue.width=8",
                "--set queue..width=1: 'queue..width' has an empty part",
                "--set queue.width=[1: YAML syntax error: while parsing a flow "
                "sequence, expected ',' or ']', but got '<stream end>'",
            ],
        )

    def test_cannot_set_inside_a_plain_value(self) -> None:
        """Setting a key inside a value the file gives as a plain value is
        one problem at the override naming the file's line."""
        path = self.write(FETCH)
        self.assertIn(
            "--set queue.rate.x=1: queue.rate: cannot set a key inside it: the "
            "recipe gives '10/s' (line 6), not a mapping",
            self.problems(path, "queue.rate.x=1"),
        )

    def test_anchored_value_elsewhere_is_untouched(self) -> None:
        """An override changes a mapping the file names with an anchor only
        where the override points, not where the alias is used."""
        path = self.write(
            "kind: fetch\ninput: urls.txt\noutput: out.jsonl\n"
            "fetch:\n  headers: &h {X-A: b}\n  params: *h\n"
        )
        recipe = load_recipe(path, overrides=["fetch.headers.X-A=c"])
        self.assertEqual(dict(recipe.fetch.headers), {"X-A": "c"})
        self.assertEqual(dict(recipe.fetch.params), {"X-A": "b"})

    def test_paths_relative_to_the_recipe_and_kind(self) -> None:
        """A path given by an override is relative to the recipe's directory
        (as in the file); changing the input's path to another file is
        checked like the file's own; the kind can be overridden too."""
        path = self.write(FETCH.replace("defaults: &h {X-A: b}\n", ""))
        recipe = load_recipe(path, overrides=["input=other.txt"])
        self.assertEqual(recipe.input.path, self.dir / "other.txt")
        self.assertEqual(
            self.problems(path, "input.path=missing.txt"),
            [
                "--set input.path=missing.txt: input.path: file not found: "
                "'missing.txt' (relative to the recipe's directory)"
            ],
        )
        self.assertIn(
            f"{path}:1:1: missing required key 'sms'", self.problems(path, "kind=sms")
        )

    def test_parse_override(self) -> None:
        """KEY=VALUE splits at the first '='; the value may hold more."""
        self.assertEqual(
            parse_override("fetch.params.q=a=b"), (["fetch", "params", "q"], "a=b")
        )
        for bad in ("queue", "=1", ".a=1", "a.=1"):
            with self.assertRaises(ValueError):
                parse_override(bad)

    def test_cli_validate_and_run(self) -> None:
        """``--set`` on validate and run: located one-line problems on stderr
        and exit 2; validate shows the overridden pace."""
        path = self.write(FETCH.replace("defaults: &h {X-A: b}\n", ""))
        status, out, err = cli_run(
            "validate", str(path), "--set", "queue.width=12", "--set", "queue.rate="
        )
        self.assertEqual((status, err), (0, ""))
        self.assertIn("width 12,", out)
        self.assertNotIn("rate", out)
        for command in ("validate", "run"):
            status, out, err = cli_run(command, str(path), "--set", "queue.width=0")
            self.assertEqual(
                (status, out, err),
                (
                    2,
                    "",
                    "--set queue.width=0: queue.width: must be at least 1, got 0\n",
                ),
            )


class ShorthandTests(Folder):
    def test_plain_values_stand_for_their_path(self) -> None:
        """``input: urls.txt``, ``output: out.jsonl`` and ``state:
        state.sqlite`` mean ``{path: ...}``; ``state: redis://...`` (or a
        ``${NAME}``) means ``{url: ...}``."""
        path = self.write(FETCH.replace("defaults: &h {X-A: b}\n", "state: s.sqlite\n"))
        recipe = load_recipe(path)
        self.assertEqual(
            (recipe.input.path, recipe.output.path, recipe.state.path),
            (self.dir / "urls.txt", self.dir / "out.jsonl", self.dir / "s.sqlite"),
        )
        self.assertEqual(recipe.input.format, "lines")
        redis = load_recipe(path, overrides=["state=redis://127.0.0.1:6379/2"])
        self.assertEqual(redis.state.url, "redis://127.0.0.1:6379/2")
        env = load_recipe(
            path,
            overrides=["state=${FETCHQ_TEST_REDIS}"],
            environ={"FETCHQ_TEST_REDIS": "redis://127.0.0.1/0"},
        )
        self.assertIsInstance(env.state.url, Secret)

    def test_shorthand_problems_are_located(self) -> None:
        """A shorthand value is checked as its long form is, at its place; a
        list or a number is not a shorthand."""
        path = self.write(
            "kind: fetch\ninput: missing.txt\noutput: [out.jsonl]\n"
            "state: redis://host:port/0\n"
        )
        self.assertEqual(
            self.problems(path),
            [
                f"{path}:2:8: input.path: file not found: 'missing.txt' (relative "
                "to the recipe's directory)",
                f"{path}:3:9: output: expected a mapping or a path, got a list",
                f"{path}:4:8: state.url: the Redis URL's port is not a number",
            ],
        )

    def test_override_inside_a_shorthand(self) -> None:
        """An override of a key inside a section the file gives as a plain
        value keeps that value (``input.format`` with ``input: urls.txt``)."""
        (self.dir / "urls.dat").write_text("https://a.example/\n")
        path = self.write("kind: fetch\ninput: urls.dat\noutput: out.jsonl\n")
        recipe = load_recipe(path, overrides=["input.format=lines"])
        self.assertEqual(
            (recipe.input.path, recipe.input.format), (self.dir / "urls.dat", "lines")
        )


class NoEnvTests(Folder):
    def test_unset_variables_are_listed_not_refused(self) -> None:
        """With ``no_env``, values naming unset variables are left unchecked
        (and listed, with their variables); everything else is still
        checked, malformed references included."""
        path = self.write(SMS)
        checked = check_recipe(path, environ={}, no_env=True)
        self.assertEqual(
            dict(checked.unchecked),
            {
                "sms.account_sid": ("FETCHQ_TEST_UNSET_SID",),
                "sms.auth_token": ("FETCHQ_TEST_UNSET_TOKEN",),
            },
        )
        self.assertEqual(checked.recipe.sms.from_number, "+12125550100")
        with self.assertRaises(RecipeError) as caught:
            check_recipe(path, environ={}, overrides=["sms.from=12x!"], no_env=True)
        self.assertIn("sms.from:", str(caught.exception))
        broken = self.write(SMS.replace("${FETCHQ_TEST_UNSET_TOKEN}", "${1BAD}"))
        with self.assertRaises(RecipeError) as caught:
            check_recipe(broken, environ={}, no_env=True)
        self.assertIn("sms.auth_token: bad reference '${1BAD}'", str(caught.exception))

    def test_set_variables_are_checked(self) -> None:
        """A variable that is set is expanded and checked as usual, even
        with ``no_env``; without ``no_env`` an unset one is a problem."""
        path = self.write(SMS)
        environ = {
            "FETCHQ_TEST_UNSET_SID": "not an sid!",
            "FETCHQ_TEST_UNSET_TOKEN": "t",
        }
        with self.assertRaises(RecipeError) as caught:
            check_recipe(path, environ=environ, no_env=True)
        self.assertIn("sms.account_sid: expected an account SID", str(caught.exception))
        with self.assertRaises(RecipeError) as caught:
            check_recipe(path, environ={})
        self.assertIn("FETCHQ_TEST_UNSET_SID is not set", str(caught.exception))

    def test_headers_and_redis_url(self) -> None:
        """Unset variables in a header value and in ``state.url`` are listed
        one by one; the rest of the mapping is checked."""
        path = self.write(
            FETCH.replace("defaults: &h {X-A: b}\n", "")
            + "state: redis://:${FETCHQ_TEST_UNSET_PW}@127.0.0.1/0\n"
            "fetch:\n  headers:\n    Authorization: Bearer ${FETCHQ_TEST_UNSET_T}\n"
            "    Bad Name: x\n"
        )
        with self.assertRaises(RecipeError) as caught:
            check_recipe(path, environ={}, no_env=True)
        self.assertEqual(
            [p.message for p in caught.exception.problems],
            ["fetch.headers: 'Bad Name' is not a valid header name"],
        )
        fixed = self.write(path.read_text().replace("    Bad Name: x\n", ""))
        checked = check_recipe(fixed, environ={}, no_env=True)
        self.assertEqual(
            list(checked.unchecked),
            ["state.url", "fetch.headers.Authorization"],
        )

    def test_cli(self) -> None:
        """``fetchq validate --no-env`` says ok and names what it could not
        check; without it, the unset variables are problems."""
        path = self.write(SMS)
        status, out, err = cli_run("validate", "--no-env", str(path))
        self.assertEqual((status, err), (0, ""))
        self.assertIn(
            "; not checked without the environment: sms.account_sid "
            "(${FETCHQ_TEST_UNSET_SID}), sms.auth_token (${FETCHQ_TEST_UNSET_TOKEN})",
            out,
        )
        status, out, err = cli_run("validate", str(path))
        self.assertEqual(status, 2)
        self.assertIn("FETCHQ_TEST_UNSET_SID is not set", err)


class TimeoutNameTests(Folder):
    def test_same_four_names_in_every_kind(self) -> None:
        """connect_timeout, headers_timeout, body_timeout and timeout are
        keys of every kind, with the same meaning, reaching each adapter's
        configuration."""
        fetch = load_recipe(
            self.write(FETCH.replace("defaults: &h {X-A: b}\n", "")),
            overrides=["fetch.timeout=45s", "fetch.connect_timeout=3s"],
        )
        self.assertEqual(
            (fetch.fetch.connect_timeout, fetch.fetch.headers_timeout),
            (3.0, 30.0),
        )
        self.assertEqual((fetch.fetch.body_timeout, fetch.fetch.timeout), (120.0, 45.0))
        sms = load_recipe(
            self.write(SMS),
            environ={"FETCHQ_TEST_UNSET_SID": "AC1", "FETCHQ_TEST_UNSET_TOKEN": "t"},
            overrides=["sms.headers_timeout=5s", "sms.body_timeout=6s"],
        ).sms.config()
        self.assertEqual(
            (sms.connect_timeout, sms.headers_timeout, sms.body_timeout, sms.timeout),
            (10.0, 5.0, 6.0, 30.0),
        )
        api = load_recipe(
            self.write(
                "kind: api\ninput: urls.txt\noutput: out.jsonl\napi:\n"
                "  base_url: https://api.example.com\n  path: /x\n  token: t\n"
                "  connect_timeout: 2s\n  headers_timeout: 4s\n  timeout: 1m\n"
            )
        ).api.config()
        self.assertEqual(
            (api.connect_timeout, api.headers_timeout, api.body_timeout, api.timeout),
            (2.0, 4.0, 60.0, 60.0),
        )

    def test_names_from_other_tools_suggest_ours(self) -> None:
        """read_timeout, download_timeout, request_timeout and
        connection_timeout suggest fetchq's names in every kind."""
        path = self.write(FETCH.replace("defaults: &h {X-A: b}\n", ""))
        self.assertEqual(
            self.problems(
                path,
                "fetch.read_timeout=1s",
                "fetch.download_timeout=1s",
                "fetch.request_timeout=1s",
                "fetch.connection_timeout=1s",
            ),
            [
                "--set fetch.read_timeout=1s: fetch.read_timeout: unknown key; did "
                "you mean 'headers_timeout'?",
                "--set fetch.download_timeout=1s: fetch.download_timeout: unknown "
                "key; did you mean 'timeout'?",
                "--set fetch.request_timeout=1s: fetch.request_timeout: unknown "
                "key; did you mean 'timeout'?",
                "--set fetch.connection_timeout=1s: fetch.connection_timeout: "
                "unknown key; did you mean 'connect_timeout'?",
            ],
        )
