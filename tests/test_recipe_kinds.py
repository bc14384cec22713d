"""Tests for the ``sms`` and ``api`` recipe kinds: typed specs, defaults, the
adapter configurations they build, and the checks that span keys.

The corpus (``tests/recipes/broken/sms-*.yaml``, ``api-*.yaml``) shows the
exact messages of broken recipes; these tests cover the values.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import textwrap
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from fetchq.api import ApiConfig, Template
from fetchq.recipe import (
    ApiInputSpec,
    ApiRecipe,
    ApiSpec,
    FetchRecipe,
    LaneSpec,
    PaginationSpec,
    RecipeError,
    Secret,
    SmsInputSpec,
    SmsRecipe,
    SmsSpec,
    load_recipe,
)
from fetchq.recipe.convert import template_fields
from fetchq.sms import BadMessage, SmsConfig

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "tok-9f8e7d6c5b4a"

SMS = f"""\
kind: sms
input:
  path: data/messages.jsonl
output:
  path: out/sent.jsonl
sms:
  account_sid: {SID}
  auth_token: ${{TWILIO_AUTH_TOKEN}}
  from: +12125550100
"""

API = """\
kind: api
input:
  path: data/users.jsonl
output:
  path: out/tweets.jsonl
api:
  base_url: https://api.example.com/
  path: /2/users/{id}/tweets
  token: ${API_TOKEN}
"""

ENV = {"TWILIO_AUTH_TOKEN": TOKEN, "API_TOKEN": TOKEN}


class Recipes:
    """A temporary directory holding recipes and their input files."""

    def __init__(self, case: SynchronousTestCase) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="fetchq-kinds-"))
        case.addCleanup(shutil.rmtree, self.root, True)
        data = self.root / "data"
        data.mkdir()
        (data / "messages.jsonl").write_text(
            '{"to": "+12125550101", "body": "Hello", "name": "Ada"}\n'
        )
        (data / "messages.csv").write_text(
            "to,name,code,sender\n+12125550101,Ada,481516,+12125550100\n"
        )
        (data / "users.jsonl").write_text('{"id": "2244994945"}\n')
        (data / "users.csv").write_text("id,since,rank\n2244994945,1,0\n")
        (data / "handles.txt").write_text("dev\n# a comment\nsupport\n")

    def write(self, text: str) -> Path:
        path = self.root / "recipe.yaml"
        path.write_text(textwrap.dedent(text))
        return path

    def sms(self, text: str, environ: dict[str, str] | None = None) -> SmsRecipe:
        recipe = load_recipe(
            self.write(text), environ=ENV if environ is None else environ
        )
        assert isinstance(recipe, SmsRecipe), recipe
        return recipe

    def api(self, text: str, environ: dict[str, str] | None = None) -> ApiRecipe:
        recipe = load_recipe(
            self.write(text), environ=ENV if environ is None else environ
        )
        assert isinstance(recipe, ApiRecipe), recipe
        return recipe

    def problems(self, text: str, environ: dict[str, str] | None = None) -> list[str]:
        """The problem lines, with the directory left out."""
        try:
            load_recipe(self.write(text), environ=ENV if environ is None else environ)
        except RecipeError as exc:
            prefix = f"{self.root}{os.sep}"
            return [str(problem).removeprefix(prefix) for problem in exc.problems]
        raise AssertionError("the recipe loaded without a problem")


def replace(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


class SmsKindTests(SynchronousTestCase):
    def test_minimal_sms_recipe_gets_every_default(self) -> None:
        """An sms recipe with only its required keys and a sender loads as
        an SmsRecipe with the documented defaults: full durability, width 10,
        one message a second per sender, Twilio's API, the resend check on."""
        recipes = Recipes(self)
        recipe = recipes.sms(SMS)
        self.assertEqual(recipe.kind, "sms")
        self.assertEqual(
            recipe.input,
            SmsInputSpec(
                path=recipes.root / "data" / "messages.jsonl",
                format="jsonl",
                to_field="to",
                body_field="body",
                from_field=None,
                priority_field=None,
                id_field=None,
            ),
        )
        self.assertEqual(recipe.state.durability, "full")
        self.assertEqual(
            recipe.state.path, recipes.root / "out" / "sent.jsonl.state.sqlite"
        )
        queue = recipe.queue
        self.assertEqual((queue.width, queue.rate, queue.burst), (10, None, 1))
        self.assertEqual(queue.lanes, LaneSpec(width=None, rate=1.0, burst=1))
        self.assertIsNone(queue.adaptive)
        sms = recipe.sms
        self.assertEqual(sms.base_url, "https://api.twilio.com")
        self.assertEqual(sms.account_sid, SID)
        self.assertEqual(sms.from_number, "+12125550100")
        self.assertIsNone(sms.messaging_service_sid)
        self.assertIsNone(sms.body)
        self.assertEqual(sms.max_body, 1600)
        self.assertEqual((sms.connect_timeout, sms.timeout), (10.0, 30.0))
        self.assertTrue(sms.resend_check)
        self.assertIsNone(sms.status_callback)

    def test_config_builds_the_sender_configuration(self) -> None:
        """``sms.config()`` is the SmsConfig the recipe describes; the auth
        token stays a Secret (from ${TWILIO_AUTH_TOKEN}) in the recipe and in
        the config, and its value shows in neither repr."""
        recipe = Recipes(self).sms(
            SMS
            + "  base_url: http://127.0.0.1:8099/\n"
            + "  max_body: 320\n"
            + "  connect_timeout: 2s\n"
            + "  timeout: 1m\n"
            + "  resend_check: false\n"
            + "  status_callback: https://hooks.example.com/sms\n"
        )
        self.assertIsInstance(recipe.sms.auth_token, Secret)
        config = recipe.sms.config()
        self.assertEqual(
            config,
            SmsConfig(
                account_sid=SID,
                auth_token=recipe.sms.auth_token,
                base_url="http://127.0.0.1:8099",
                from_number="+12125550100",
                max_body=320,
                connect_timeout=2.0,
                timeout=60.0,
                resend_check=False,
                status_callback="https://hooks.example.com/sms",
            ),
        )
        self.assertEqual(config.auth_token.reveal(), TOKEN)
        self.assertEqual(config.auth_token.sources, ("TWILIO_AUTH_TOKEN",))
        self.assertEqual(
            config.messages_url,
            f"http://127.0.0.1:8099/2010-04-01/Accounts/{SID}/Messages.json",
        )
        for shown in (repr(recipe), str(recipe), repr(config)):
            self.assertNotIn(TOKEN, shown)

    def test_senders(self) -> None:
        """``from`` takes an E.164 number quoted or not (YAML would read an
        unquoted one as a number) and normalises its formatting; a short
        code, an alphanumeric id or ${NAME} also work."""
        recipes = Recipes(self)
        for written, expected in [
            ("+12125550100", "+12125550100"),
            ('"+1 (212) 555-0100"', "+12125550100"),
            ("'+44 20 7946 0958'", "+442079460958"),
            ("12345", "12345"),
            ("ACME Ltd", "ACME Ltd"),
            ("${SENDER}", "+12125550199"),
        ]:
            recipe = recipes.sms(
                replace(SMS, "from: +12125550100", f"from: {written}"),
                environ={**ENV, "SENDER": "+1 212 555 0199"},
            )
            self.assertEqual(recipe.sms.from_number, expected, written)
            self.assertEqual(recipe.sms.config().from_number, expected)

    def test_messaging_service_or_row_sender(self) -> None:
        """A messaging service may replace ``from``; with ``input.from_field``
        neither is needed (each row names its sender)."""
        recipes = Recipes(self)
        msid = "MG" + "f" * 32
        recipe = recipes.sms(
            replace(SMS, "from: +12125550100", f"messaging_service_sid: {msid}")
        )
        self.assertIsNone(recipe.sms.from_number)
        self.assertEqual(recipe.sms.config().messaging_service_sid, msid)
        recipe = recipes.sms(
            replace(
                replace(SMS, "  from: +12125550100\n", ""),
                "path: data/messages.jsonl",
                "path: data/messages.jsonl\n  from_field: sender",
            )
        )
        self.assertEqual(recipe.input.from_field, "sender")
        config = recipe.sms.config()
        self.assertIsNone(config.from_number)
        self.assertIsNone(config.messaging_service_sid)

    def test_sender_cross_checks(self) -> None:
        """Both a number and a service, or neither (and no from_field), is a
        located problem."""
        recipes = Recipes(self)
        self.assertEqual(
            recipes.problems(SMS + "  messaging_service_sid: MG1\n"),
            [
                "recipe.yaml:10:3: sms.messaging_service_sid: give sms.from or "
                "sms.messaging_service_sid, not both (the service picks the sender)"
            ],
        )
        self.assertEqual(
            recipes.problems(replace(SMS, "  from: +12125550100\n", "")),
            [
                "recipe.yaml:6:1: sms: no sender: set sms.from or "
                "sms.messaging_service_sid, or input.from_field to take each "
                "message's sender from its row"
            ],
        )

    def test_template_body_and_body_field(self) -> None:
        """With ``sms.body`` a template, rows need no body field and
        ``message()`` fills the template; without it, the row's body field is
        the text.  A row lacking a field is a BadMessage, not a crash."""
        recipes = Recipes(self)
        recipe = recipes.sms(SMS)
        message = recipe.message({"to": "+12125550101", "body": "Hello"}, id="7")
        self.assertEqual(
            (message.to, message.body, message.from_, message.id),
            ("+12125550101", "Hello", None, "7"),
        )
        with self.assertRaises(BadMessage) as caught:
            recipe.message({"to": "+12125550101"})
        self.assertEqual(caught.exception.field, "body")

        recipe = recipes.sms(
            replace(
                SMS,
                "path: data/messages.jsonl",
                "path: data/messages.jsonl\n  body_field: null",
            )
            + '  body: "Hi {name}, it\'s {{literally}} {n}"\n'
        )
        self.assertIsNone(recipe.input.body_field)
        self.assertEqual(
            recipe.message_body({"name": "Ada", "n": 3}), "Hi Ada, it's {literally} 3"
        )
        with self.assertRaises(BadMessage) as caught:
            recipe.message_body({"name": "Ada"})
        self.assertEqual(caught.exception.field, "body")
        self.assertIn("'n'", str(caught.exception))
        with self.assertRaises(BadMessage) as caught:
            recipe.message({"name": "Ada", "n": 1})
        self.assertEqual(caught.exception.field, "to")

    def test_body_sources(self) -> None:
        """No body source at all is a problem; a body_field written beside a
        template is a problem (it would be ignored); the default body_field
        beside a template is fine."""
        recipes = Recipes(self)
        no_field = replace(
            SMS, "path: data/messages.jsonl", "path: data/messages.jsonl\n  body_field:"
        )
        self.assertEqual(
            recipes.problems(no_field),
            [
                "recipe.yaml:4:3: input.body_field: no message text: set "
                "input.body_field, or sms.body to a template such as 'Hi {name}'"
            ],
        )
        both = replace(
            SMS,
            "path: data/messages.jsonl",
            "path: data/messages.jsonl\n  body_field: text",
        )
        self.assertEqual(
            recipes.problems(both + "  body: Hi {name}\n"),
            [
                "recipe.yaml:4:3: input.body_field: not used: sms.body gives every "
                "message's text (write null here, or name the field in sms.body "
                "as {text})"
            ],
        )
        self.assertEqual(recipes.sms(SMS + "  body: Hi {name}\n").sms.body, "Hi {name}")

    def test_csv_columns(self) -> None:
        """A CSV input's header must hold the named columns and the template's
        placeholders (the body field is not needed with a template)."""
        recipes = Recipes(self)
        csv_sms = replace(SMS, "messages.jsonl", "messages.csv")
        self.assertEqual(
            recipes.problems(csv_sms),
            [
                "recipe.yaml:3:9: input.body_field: no column 'body' in the header "
                "of 'data/messages.csv' (columns: to, name, code, sender)"
            ],
        )
        recipe = recipes.sms(
            replace(
                csv_sms,
                "path: data/messages.csv",
                "path: data/messages.csv\n  from_field: sender",
            )
            + "  body: 'Hi {name}, your code is {code}'\n"
        )
        self.assertEqual(recipe.input.format, "csv")
        self.assertEqual(recipe.input.from_field, "sender")
        self.assertEqual(
            recipes.problems(csv_sms + "  body: 'Hi {nmae} {code} {zip}'\n"),
            [
                "recipe.yaml:10:9: sms.body: placeholder {nmae} is not a column of "
                "'data/messages.csv'; did you mean {name}? "
                "(columns: to, name, code, sender)",
                "recipe.yaml:10:9: sms.body: placeholder {zip} is not a column of "
                "'data/messages.csv' (columns: to, name, code, sender)",
            ],
        )

    def test_state_and_queue_can_be_set(self) -> None:
        """The sms defaults are defaults: durability normal and a faster
        sender lane may be asked for; per_host belongs to fetch recipes."""
        recipes = Recipes(self)
        recipe = recipes.sms(
            SMS
            + "state:\n  durability: normal\n"
            + "queue:\n  width: 3\n  per_sender: {rate: 30/s, burst: 5, width: 2}\n"
        )
        self.assertEqual(recipe.state.durability, "normal")
        self.assertEqual(
            recipe.queue.queue_kwargs(),
            {
                "width": 3,
                "rate": None,
                "burst": 1,
                "lane_width": 2,
                "lane_rate": 30.0,
                "lane_burst": 5,
            },
        )

    def test_secrets_and_ids_from_the_environment(self) -> None:
        """account_sid may come from ${NAME} (as plain text: it is in every
        URL); a missing auth token variable is a located problem."""
        recipes = Recipes(self)
        recipe = recipes.sms(
            replace(SMS, f"account_sid: {SID}", "account_sid: ${SID}"),
            environ={**ENV, "SID": SID},
        )
        self.assertEqual(recipe.sms.account_sid, SID)
        self.assertEqual(
            recipes.problems(SMS, environ={}),
            [
                "recipe.yaml:8:15: sms.auth_token: environment variable "
                "TWILIO_AUTH_TOKEN is not set"
            ],
        )
        self.assertEqual(
            recipes.problems(
                replace(SMS, f"account_sid: {SID}", "account_sid: AC/../x")
            ),
            [
                "recipe.yaml:7:16: sms.account_sid: expected an account SID "
                "(letters, digits, '-' and '_'), got 'AC/../x'"
            ],
        )


class ApiKindTests(SynchronousTestCase):
    def test_minimal_api_recipe_gets_every_default(self) -> None:
        """An api recipe with only its required keys loads as an ApiRecipe
        with the documented defaults, and its config() is the ApiConfig with
        the same values (the token a Secret, shown in no repr)."""
        recipes = Recipes(self)
        recipe = recipes.api(API)
        self.assertEqual(recipe.kind, "api")
        self.assertEqual(
            recipe.input,
            ApiInputSpec(
                path=recipes.root / "data" / "users.jsonl",
                format="jsonl",
                priority_field=None,
                id_field=None,
            ),
        )
        self.assertEqual(recipe.state.durability, "normal")
        self.assertEqual(
            (recipe.queue.width, recipe.queue.lanes), (10, LaneSpec(None, None, 1))
        )
        api = recipe.api
        self.assertEqual(api.base_url, "https://api.example.com")
        self.assertEqual((api.method, api.path), ("GET", "/2/users/{id}/tweets"))
        self.assertEqual(
            (dict(api.params), dict(api.headers), api.body), ({}, {}, None)
        )
        self.assertIsInstance(api.token, Secret)
        self.assertEqual(
            (api.connect_timeout, api.headers_timeout, api.body_timeout, api.timeout),
            (10.0, 30.0, 60.0, None),
        )
        self.assertEqual(api.max_body, 10 * 1024 * 1024)
        self.assertEqual(
            api.pagination, PaginationSpec("meta.next_token", "pagination_token", 1)
        )
        self.assertEqual((api.records, api.items_field), ("page", "data"))
        self.assertEqual(
            (api.reset_margin, api.default_retry_after, api.max_retry_after),
            (1.0, 60.0, 86400.0),
        )
        config = api.config()
        self.assertEqual(
            config,
            ApiConfig(
                base_url="https://api.example.com",
                path="/2/users/{id}/tweets",
                token=api.token,
            ),
        )
        assert config.token is not None
        self.assertEqual(config.token.reveal(), TOKEN)
        for shown in (repr(recipe), repr(config)):
            self.assertNotIn(TOKEN, shown)

    def test_everything_set(self) -> None:
        """Every api key reaches the ApiConfig: templates in the path, params
        and a JSON body, secret params and headers, pagination and items."""
        recipe = Recipes(self).api(
            replace(API, "path: /2/users/{id}/tweets", "path: /users/{id}/search")
            + textwrap.indent(
                textwrap.dedent(
                    """\
                    method: post
                    params:
                      q: "from:{id}"
                      max_results: 100
                      api_key: ${KEY}
                    headers:
                      X-Client: fetchq-test
                      X-Secret: ${KEY}
                    body:
                      user: "{id}"
                      count: "{n}"
                      flags: [true, null, 1.5, "x{{y}}", "${n} off"]
                      nested: {deep: ["{id}-{n}"]}
                    headers_timeout: 5s
                    body_timeout: 2m
                    timeout: 3m
                    max_body: 1MB
                    pagination:
                      token_field: meta.cursor
                      token_param: cursor
                      max_pages: 10
                    records: item
                    items_field: null
                    reset_margin: 250ms
                    default_retry_after: 30s
                    max_retry_after: 1h
                    """
                ),
                "  ",
            ),
            environ={**ENV, "KEY": "k-123"},
        )
        api = recipe.api
        self.assertIsInstance(api.params["api_key"], Secret)
        self.assertIsInstance(api.headers["X-Secret"], Secret)
        self.assertIsNone(api.items_field)
        config = api.config()
        self.assertEqual(config.endpoint, "POST /users/{id}/search")
        self.assertEqual(config.fields, frozenset({"id", "n"}))
        row = {"id": "42", "n": 7}
        self.assertEqual(config.fill_path(row), "/users/42/search")
        filled = [(name, str(value)) for name, value in config.fill_params(row)]
        self.assertEqual(
            filled, [("q", "from:42"), ("max_results", "100"), ("api_key", "***")]
        )
        self.assertEqual(
            config.fill_body(row),
            b'{"user":"42","count":7,"flags":[true,null,1.5,"x{y}","$7 off"],'
            b'"nested":{"deep":["42-7"]}}',
        )
        self.assertIn(("X-Client", "fetchq-test"), config.headers)
        self.assertEqual(
            (
                config.headers_timeout,
                config.body_timeout,
                config.timeout,
                config.max_body,
            ),
            (5.0, 120.0, 180.0, 1_000_000),
        )
        self.assertEqual(
            (config.token_field, config.token_param, config.max_pages),
            ("meta.cursor", "cursor", 10),
        )
        self.assertEqual((config.records, config.items_field), ("item", ""))
        self.assertEqual(
            (config.reset_margin, config.default_retry_after, config.max_retry_after),
            (0.25, 30.0, 3600.0),
        )
        self.assertNotIn("k-123", repr(config))

    def test_lines_input_is_value(self) -> None:
        """Lines input makes rows with one field, ``value``: ``{value}`` is
        accepted, any other placeholder is a problem, as are row settings."""
        recipes = Recipes(self)
        lines = replace(
            replace(API, "users.jsonl", "handles.txt"),
            "/2/users/{id}/tweets",
            "/2/users/by/username/{value}",
        )
        recipe = recipes.api(lines)
        self.assertEqual(recipe.input.format, "lines")
        self.assertEqual(
            recipe.api.config().fill_path({"value": "dev"}),
            "/2/users/by/username/dev",
        )
        self.assertEqual(
            recipes.problems(
                replace(lines, "{value}", "{handle}").replace(
                    "handles.txt", "handles.txt\n  id_field: id"
                )
            ),
            [
                "recipe.yaml:4:3: input.id_field: only applies to jsonl and csv "
                "input, not to lines",
                "recipe.yaml:9:9: api.path: placeholder {handle}: a line of lines "
                "input is a row with one field, {value}",
            ],
        )

    def test_csv_placeholders(self) -> None:
        """With CSV input every placeholder must be a header column; with
        JSONL nothing can be known and nothing is checked."""
        recipes = Recipes(self)
        text = API + '  params:\n    since_id: "{since}"\n    rank: "{rnak}"\n'
        self.assertEqual(recipes.api(text).api.params["since_id"], "{since}")
        self.assertEqual(
            recipes.problems(
                replace(text, "users.jsonl", "users.csv").replace(
                    "users.csv", "users.csv\n  priority_field: rank"
                )
            ),
            [
                "recipe.yaml:13:11: api.params.rank: placeholder {rnak} is not a "
                "column of 'data/users.csv'; did you mean {rank}? "
                "(columns: id, since, rank)"
            ],
        )

    def test_cross_checks(self) -> None:
        """A secret param cannot hold placeholders; max_retry_after must allow
        the least wait; the safety net reports nothing for a good recipe."""
        recipes = Recipes(self)
        self.assertEqual(
            recipes.problems(
                API + '  params:\n    api_key: "{key}"\n    q: "x-{id}-${KEY}"\n',
                environ={**ENV, "KEY": "k"},
            ),
            [
                "recipe.yaml:11:14: api.params.api_key: a value under a name such as "
                "'api_key' is a secret, sent as it is: it cannot hold {field} "
                "placeholders such as {key}",
                "recipe.yaml:12:8: api.params.q: a value with ${NAME} is a secret, "
                "sent as it is: it cannot hold {field} placeholders such as {id}",
            ],
        )
        self.assertEqual(
            recipes.problems(API + "  max_retry_after: 500ms\n"),
            [
                "recipe.yaml:10:20: api.max_retry_after: must be at least 1s (the "
                "least wait after a refusal), got 0.5s"
            ],
        )

    def test_config_is_built_while_loading(self) -> None:
        """Whatever the adapter's configuration refuses is a located problem
        at load time, never an exception from ``config()`` in the runner."""
        recipes = Recipes(self)
        self.assertEqual(
            recipes.problems(API + '  params:\n    "": x\n'),
            ["recipe.yaml:11:5: api.params: a parameter name must not be empty"],
        )

        def refuse(spec: object) -> object:
            raise ValueError("refused for the test")

        self.patch(ApiSpec, "config", refuse)
        self.assertEqual(
            recipes.problems(API), ["recipe.yaml:6:1: api: refused for the test"]
        )
        self.patch(SmsSpec, "config", refuse)
        self.assertEqual(
            recipes.problems(SMS), ["recipe.yaml:6:1: sms: refused for the test"]
        )

    def test_body_scalars(self) -> None:
        """A body may be a bare string or list, not only a mapping; a
        template's ``{{`` stays a literal brace."""
        recipes = Recipes(self)
        self.assertEqual(recipes.api(API + "  body: '{id}'\n").api.body, "{id}")
        self.assertEqual(
            recipes.api(API + "  body: [1, '{{a}}']\n").api.config().fill_body({}),
            b'[1,"{a}"]',
        )


class KindTests(SynchronousTestCase):
    def test_each_kind_loads_its_own_spec(self) -> None:
        """``kind`` picks the recipe type; each kind's keys are refused in
        the others."""
        recipes = Recipes(self)
        fetch = load_recipe(
            recipes.write(
                "kind: fetch\ninput: {path: data/handles.txt}\n"
                "output: {path: o.jsonl}\n"
            ),
            environ={},
        )
        self.assertIsInstance(fetch, FetchRecipe)
        self.assertIsInstance(recipes.sms(SMS), SmsRecipe)
        self.assertIsInstance(recipes.api(API), ApiRecipe)
        self.assertEqual(
            recipes.problems(API + "queue:\n  per_host: {width: 1}\n"),
            [
                "recipe.yaml:11:3: queue.per_host: not a key of api recipes (only "
                "of fetch recipes); expected one of: width, rate, burst, "
                "per_endpoint, adaptive"
            ],
        )
        self.assertEqual(
            recipes.problems(
                replace(SMS, "messages.jsonl\n", "messages.jsonl\n  url_field: to\n")
            ),
            [
                "recipe.yaml:4:3: input.url_field: not a key of sms recipes (only "
                "of fetch recipes); did you mean 'from_field'?"
            ],
        )

    def test_unknown_kind_checks_only_shared_keys(self) -> None:
        """With a misspelt kind, keys that belong to some kind (per_sender,
        to_field) are not reported; shared keys are still checked."""
        recipes = Recipes(self)
        text = replace(SMS, "kind: sms", "kind: smss") + (
            "queue:\n  width: 0\n  per_sender: {rate: 1/s}\n"
        )
        self.assertEqual(
            recipes.problems(text),
            [
                "recipe.yaml:1:7: kind: unknown kind 'smss'; did you mean 'sms'? "
                "(known kinds: fetch, sms, api)",
                "recipe.yaml:11:10: queue.width: must be at least 1, got 0",
            ],
        )

    def test_template_rules_agree_with_the_api_adapter(self) -> None:
        """The loader's template check accepts exactly what
        fetchq.api.Template accepts, so a loaded recipe always builds."""
        for text in [
            "plain",
            "{a}",
            "x{a}y{b_2}",
            "{{literal}}",
            "{a",
            "a}",
            "{}",
            "{0}",
            "{a.b}",
            "{a[0]}",
            "{a!r}",
            "{a:>5}",
            "{é}",
            "{ a }",
        ]:
            try:
                fields = template_fields(text)
            except ValueError:
                fields = None
            try:
                parsed = Template.parse(text, "t").fields
            except ValueError:
                parsed = None
            self.assertEqual(fields, parsed, text)
