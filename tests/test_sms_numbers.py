"""Phone numbers checked two ways (the built-in check, and ``phonenumbers``
when installed), national numbers with a default region, and the SMS
credentials: an auth token, or an API key and its secret."""

from __future__ import annotations

import base64
import unittest
from typing import Any

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from fetchq.sms import (
    HAVE_PHONENUMBERS,
    AuthFailed,
    BadMessage,
    Message,
    NumberRules,
    SmsConfig,
    SmsSender,
    check_e164,
    check_message,
    check_sender,
)
from fetchq.sms.numbers import COUNTRY_CODES, NANP_REGIONS
from fetchq.testing import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    DEFAULT_AUTH_TOKEN,
    FakeSMSProvider,
    run_until_idle,
)

BUILTIN = NumberRules(library=False)
BUILTIN_US = NumberRules(default_region="US", library=False)
needs_phonenumbers = unittest.skipUnless(
    HAVE_PHONENUMBERS, "phonenumbers is not installed (pip install 'fetchq[phones]')"
)


def refused(rules: NumberRules, number: str, field: str = "to") -> str:
    """The reason ``number`` is refused under ``rules`` (fails otherwise)."""
    try:
        check_e164(number, field, rules)
    except BadMessage as e:
        assert e.field == field
        return e.reason
    raise AssertionError(f"{number!r} was accepted")


class BuiltinCheckTests(SynchronousTestCase):
    """Without phonenumbers: no country code nobody has, no +1 number the
    North American plan does not allow."""

    def test_refused(self) -> None:
        """+999..., +1 012..., an N11 area code, an exchange starting 0 or
        1, a +1 number of the wrong length and a number too short for any
        country are each refused with a reason naming the fault."""
        cases = {
            "+999 123 4567": "no country has a calling code that starts +999",
            "+1 012 555 0100": "area codes cannot start with 0 or 1",
            "+1 112 555 0100": "area codes cannot start with 0 or 1",
            "+1 911 555 0100": "N11 codes are service numbers",
            "+1 212 055 0100": "the exchange 055 cannot start with 0 or 1",
            "+1 212 555 010": "10 digits after the 1",
            "+44 1234": "too short",
        }
        for number, reason in cases.items():
            self.assertIn(reason, refused(BUILTIN, number), number)

    def test_accepted(self) -> None:
        """Numbers of real plans pass, returned bare; the built-in check
        cannot tell a fictional 555-01xx number from a real one."""
        cases = {
            "+1 (212) 555-0100": "+12125550100",
            "+44 20 7946 0958": "+442079460958",
            "+33 6 12 34 56 78": "+33612345678",
            "+683 4002": "+6834002",  # Niue: 4-digit national numbers
            "+1 555 555 0100": "+15555550100",
        }
        for number, bare in cases.items():
            self.assertEqual(check_e164(number, "to", BUILTIN), bare)

    def test_national_numbers_of_the_plus_one_regions(self) -> None:
        """With default_region US, (212) 555-0100, 1 212 555 0100 and 011
        (the US international prefix) 44 ... are read as a US caller means
        them; without a region they are refused as ambiguous."""
        cases = {
            "(212) 555-0100": "+12125550100",
            "1 212 555 0100": "+12125550100",
            "212.555.0100": "+12125550100",
            "011 44 20 7946 0958": "+442079460958",
        }
        for number, bare in cases.items():
            self.assertEqual(check_e164(number, "to", BUILTIN_US), bare)
            self.assertIn("sms.default_region", refused(BUILTIN, number))
        self.assertIn("has 10 digits", refused(BUILTIN_US, "555 0100"))
        self.assertIn("area codes", refused(BUILTIN_US, "(012) 555-0100"))
        self.assertIn("letters", refused(BUILTIN_US, "212 FLOWERS"))

    def test_regions_it_cannot_read(self) -> None:
        """Without phonenumbers only the +1 regions can be a default region;
        any other is refused when the rules are made, saying what to
        install; a region code must be two capitals."""
        with self.assertRaises(ValueError) as caught:
            NumberRules(default_region="GB", library=False)
        self.assertIn("fetchq[phones]", str(caught.exception))
        for region in sorted(NANP_REGIONS):
            NumberRules(default_region=region, library=False)
        for bad in ("us", "USA", "", 1):
            with self.assertRaises(ValueError):
                NumberRules(default_region=bad, library=False)  # type: ignore[arg-type]

    def test_country_codes_table(self) -> None:
        """The built-in table is the one phonenumbers has (when installed),
        so both checks refuse the same country codes."""
        self.assertIn(1, COUNTRY_CODES)
        self.assertNotIn(999, COUNTRY_CODES)
        if HAVE_PHONENUMBERS:
            import phonenumbers

            self.assertEqual(
                COUNTRY_CODES, frozenset(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
            )

    def test_senders(self) -> None:
        """A sender may be national with a default region; short codes and
        alphanumeric ids stay as given."""
        self.assertEqual(check_sender("(212) 555-0100", BUILTIN_US), "+12125550100")
        self.assertEqual(check_sender("12345", BUILTIN_US), "12345")
        self.assertEqual(check_sender("ACME", BUILTIN_US), "ACME")
        with self.assertRaises(BadMessage):
            check_sender("(212) 555-0100", BUILTIN)


@needs_phonenumbers
class PhonenumbersCheckTests(SynchronousTestCase):
    """With phonenumbers: numbers must be valid for their region (or, with
    number_check: possible, of a possible length); any region can be the
    default one."""

    def test_valid_and_possible(self) -> None:
        """+1 555 555 0100 is a possible but not a valid US number: refused
        by number_check valid, accepted by possible; +999 and +1 012 are
        refused either way."""
        valid = NumberRules(library=True)
        possible = NumberRules(number_check="possible", library=True)
        self.assertIn("not a valid +1 (US) number", refused(valid, "+15555550100"))
        self.assertEqual(check_e164("+15555550100", "to", possible), "+15555550100")
        for rules in (valid, possible):
            self.assertIn("+999", refused(rules, "+999 123 4567"))
            self.assertIn("+1", refused(rules, "+1 212 555 010"))
            self.assertEqual(check_e164("+442079460958", "to", rules), "+442079460958")
        self.assertIn("not a valid +1", refused(valid, "+1 012 555 0100"))
        self.assertIn("too short", refused(possible, "+44 12"))

    def test_national_numbers_of_any_region(self) -> None:
        """With default_region GB, 020 7946 0958 is +442079460958; an
        international number keeps its own country."""
        gb = NumberRules(default_region="GB", library=True)
        self.assertEqual(check_e164("020 7946 0958", "to", gb), "+442079460958")
        self.assertEqual(check_e164("+1 212 555 0100", "to", gb), "+12125550100")
        self.assertIn("not a valid", refused(gb, "020 7946 095"))
        with self.assertRaises(ValueError):
            NumberRules(default_region="ZZ", library=True)

    def test_config_and_messages(self) -> None:
        """An SmsConfig's default_region and number_check apply to the To
        and From of each message."""
        cfg = SmsConfig(
            account_sid=DEFAULT_ACCOUNT_SID,
            auth_token="t",
            from_number="+12125550100",
            default_region="US",
        )
        message = check_message(
            Message("(917) 555-0001", "hi", from_="(646) 555-2000"), cfg
        )
        self.assertEqual((message.to, message.from_), ("+19175550001", "+16465552000"))
        with self.assertRaises(BadMessage):
            check_message(Message("+15555550100", "hi"), cfg)
        lenient = SmsConfig(
            account_sid=DEFAULT_ACCOUNT_SID, auth_token="t", number_check="possible"
        )
        with self.assertRaises(ValueError):
            SmsConfig(
                account_sid=DEFAULT_ACCOUNT_SID,
                auth_token="t",
                from_number="+15555550100",
            )
        message = check_message(Message("+15555550100", "hi", "+12125550100"), lenient)
        self.assertEqual(message.to, "+15555550100")


class CredentialTests(SynchronousTestCase):
    """An auth token, or an API key (SK...) and its secret; the URL always
    names the account."""

    def config(self, **changes: Any) -> SmsConfig:
        values: dict[str, Any] = {
            "account_sid": DEFAULT_ACCOUNT_SID,
            "base_url": "http://sms.test",
            "from_number": "+12125550100",
        }
        values.update(changes)
        return SmsConfig(**values)

    def send(self, cfg: SmsConfig, **fake: Any) -> Any:
        """Send one message to a fake provider; the Deferred's outcome."""
        clock = Clock()
        self.provider = FakeSMSProvider(clock, **fake)
        stub = StubTreq(self.provider)
        sender = SmsSender(cfg, clock, http=stub)
        d = sender.send(Message("+19175550001", "hi"))
        run_until_idle(clock, stub)
        return d, sender

    def test_api_key_signs_requests(self) -> None:
        """With an API key, HTTP Basic carries the key and its secret, the
        URL the account SID, and the fake accepts it like Twilio does; the
        secret never shows in the config's repr."""
        cfg = self.config(api_key=DEFAULT_API_KEY, api_secret=DEFAULT_API_SECRET)
        self.assertNotIn(DEFAULT_API_SECRET, repr(cfg))
        d, sender = self.send(cfg)
        self.successResultOf(d)
        credentials = f"{DEFAULT_API_KEY}:{DEFAULT_API_SECRET}".encode()
        expected = b"Basic " + base64.b64encode(credentials)
        self.assertEqual(sender._authorization, expected)
        self.assertIn(DEFAULT_ACCOUNT_SID, cfg.messages_url)
        self.assertEqual(len(self.provider.messages), 1)

    def test_wrong_secret_and_unknown_key(self) -> None:
        """A wrong secret, or a key the account does not have, is
        AuthFailed (401, code 20003) and nothing is sent."""
        for changes, fake in (
            ({"api_secret": "wrong"}, {}),
            ({}, {"api_keys": {}}),
        ):
            values = {"api_key": DEFAULT_API_KEY, "api_secret": DEFAULT_API_SECRET}
            values.update(changes)
            d, _ = self.send(self.config(**values), **fake)
            error = self.failureResultOf(d).value
            self.assertIsInstance(error, AuthFailed)
            assert isinstance(error, AuthFailed)
            self.assertEqual((error.status, error.code), (401, 20003))
            self.assertEqual(self.provider.messages, [])

    def test_one_kind_of_credentials(self) -> None:
        """Both kinds, neither, a key without its secret (or the reverse),
        an account SID given as the key, and a non-SK key at Twilio are
        each refused with a message that says which."""
        cases: list[tuple[dict[str, Any], str]] = [
            (
                {"auth_token": "t", "api_key": DEFAULT_API_KEY, "api_secret": "s"},
                "not both",
            ),
            ({}, "no credentials"),
            ({"api_key": DEFAULT_API_KEY}, "without api_secret"),
            ({"api_secret": "s"}, "without api_key"),
            ({"api_key": DEFAULT_ACCOUNT_SID, "api_secret": "s"}, "starts with SK"),
            (
                {
                    "api_key": "KEY1",
                    "api_secret": "s",
                    "base_url": "https://api.twilio.com",
                },
                "no Twilio API key SID",
            ),
            ({"api_key": DEFAULT_API_KEY, "api_secret": ""}, "api_secret is empty"),
        ]
        for changes, words in cases:
            with self.assertRaises(ValueError, msg=repr(changes)) as caught:
                self.config(**changes)
            self.assertIn(words, str(caught.exception), changes)
        # Another provider's keys need not start with SK.
        self.config(api_key="KEY1", api_secret="s")

    def test_from_env(self) -> None:
        """from_env takes TWILIO_API_KEY and TWILIO_API_SECRET when the key
        is set (as Twilio's libraries do), else TWILIO_AUTH_TOKEN; a missing
        variable is named, its value never shown."""
        env = {
            "TWILIO_ACCOUNT_SID": DEFAULT_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": DEFAULT_AUTH_TOKEN,
            "TWILIO_API_KEY": DEFAULT_API_KEY,
            "TWILIO_API_SECRET": DEFAULT_API_SECRET,
        }
        keyed = SmsConfig.from_env(env)
        self.assertEqual(keyed.basic_auth, (DEFAULT_API_KEY, DEFAULT_API_SECRET))
        self.assertIsNone(keyed.auth_token)
        del env["TWILIO_API_KEY"]
        plain = SmsConfig.from_env(env)
        self.assertEqual(plain.basic_auth, (DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN))
        env["TWILIO_API_KEY"] = DEFAULT_API_KEY
        del env["TWILIO_API_SECRET"]
        with self.assertRaises(ValueError) as caught:
            SmsConfig.from_env(env)
        self.assertIn("TWILIO_API_SECRET is not set", str(caught.exception))
        self.assertNotIn(DEFAULT_AUTH_TOKEN, str(caught.exception))
