"""The SMS adapter: number and body checks, the configuration, the error tree,
the sender against the fake provider in-process (task.Clock + StubTreq) and
over a loopback port, the resend check, and the issue's pacing figure."""

from __future__ import annotations

import base64
import random
from typing import Any

import attrs
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from fetchq import JobFailed, ResizableDispatchQueue, Throttled
from fetchq.control import Signal, classify_error
from fetchq.secrets import Secret
from fetchq.sms import (
    AmbiguousSend,
    AuthFailed,
    BadMessage,
    BadResponse,
    ConnectionLost,
    Message,
    ProviderError,
    ProviderRejected,
    ProviderThrottled,
    SmsConfig,
    SmsConnectionFailed,
    SmsResult,
    SmsSender,
    SmsTimeout,
    body_length,
    check_e164,
    check_message,
    check_sender,
    is_e164,
    lane_key,
    sms_retry_policy,
)
from fetchq.testing import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    FakeSMSProvider,
    advance_and_flush,
    run_until_idle,
    serve_sms,
)

SENDER = "+12125550100"
SENDERS = [f"+1212555010{i}" for i in range(5)]


def config(**changes: Any) -> SmsConfig:
    """A configuration for the fake provider (in-process URL)."""
    values: dict[str, Any] = {
        "account_sid": DEFAULT_ACCOUNT_SID,
        "auth_token": DEFAULT_AUTH_TOKEN,
        "base_url": "http://sms.test",
        "from_number": SENDER,
        "timeout": 5.0,
    }
    values.update(changes)
    return SmsConfig(**values)


def recipient(n: int) -> str:
    """A distinct valid recipient number."""
    return f"+1917555{n:04d}"


class NumberTests(SynchronousTestCase):
    """E.164: common formatting is normalised, anything ambiguous is refused
    with a reason that says what is wrong."""

    def test_good_numbers(self) -> None:
        """Bare E.164 passes unchanged; spaces, dashes, dots and one pair of
        parentheses around digits are removed."""
        cases = {
            "+12125550100": "+12125550100",
            "+1 (212) 555-0100": "+12125550100",
            "+44 20.7946.0958": "+442079460958",
            "  +33 6 12 34 56 78 ": "+33612345678",
            "+49-30-1234567": "+49301234567",
            "+1 800 555 0199": "+18005550199",
        }
        for given, expected in cases.items():
            self.assertEqual(check_e164(given), expected, given)
            self.assertTrue(is_e164(expected))

    def test_bad_numbers_with_reasons(self) -> None:
        """Each refused number raises BadMessage (a ValueError) for field "to"
        whose reason names the problem."""
        cases: dict[object, str] = {
            "2125550100": "no country code",
            "0044 20 7946 0958": "international dialling prefix",
            "011 44 20 7946 0958": "international dialling prefix",
            "+44 (0)20 7946 0958": "'(0)' is a trunk prefix",
            "+1 800 FLOWERS": "letters are not allowed",
            "+1 212 555 0100 x12": "letters are not allowed",
            "+0123456": "cannot start with 0",
            "+1": "2 to 15 digits, this has 1",
            "+1234567890123456": "2 to 15 digits, this has 16",
            "+1 (212 555 0100": "'(' without ')'",
            "+1 212) 555 0100": "')' without '('",
            "+1 ((212)) 5550100": "nested parentheses",
            "+1 (212) (555) 0100": "more than one parenthesised group",
            "+1 () 2125550100": "empty parentheses",
            "+1+2125550100": "'+' may only start",
            "+\u0661\u0662\u0663\u0664\u0665": "non-ASCII digit",
            "+1_212_555_0100": "unexpected character '_'",
            "": "empty phone number",
            "   ": "empty phone number",
            12125550100: "must be text, not int",
            None: "must be text, not NoneType",
        }
        for given, reason in cases.items():
            with self.assertRaises(BadMessage, msg=repr(given)) as caught:
                check_e164(given)
            error = caught.exception
            self.assertIsInstance(error, ValueError)
            self.assertEqual(error.field, "to")
            self.assertIn(reason, error.reason, repr(given))
            self.assertEqual(error.name, "BadMessage")
            self.assertTrue(str(error).startswith("to: "), str(error))

    def test_senders(self) -> None:
        """A sender may be E.164 (normalised), a short code or an alphanumeric
        id; a national number or an over-long id is refused for "from"."""
        self.assertEqual(check_sender("+1 212 555 0100"), "+12125550100")
        self.assertEqual(check_sender("12345"), "12345")
        self.assertEqual(check_sender("MyShop"), "MyShop")
        for bad in ("2125550100", "My Shop Ltd 2", "", "12", "shop!", 5):
            with self.assertRaises(BadMessage, msg=repr(bad)) as caught:
                check_sender(bad)
            self.assertEqual(caught.exception.field, "from")


class MessageTests(SynchronousTestCase):
    """Messages are checked and normalised before queueing; bodies over the
    limit are refused up front."""

    def test_body_limit(self) -> None:
        """A body of exactly max_body passes; one more is refused with both
        numbers in the reason; emoji count as two (UTF-16)."""
        cfg = config()
        self.assertEqual(cfg.max_body, 1600)
        check_message(Message(recipient(1), "a" * 1600), cfg)
        with self.assertRaises(BadMessage) as caught:
            check_message(Message(recipient(1), "a" * 1601), cfg)
        self.assertEqual(caught.exception.field, "body")
        self.assertIn(
            "1601 characters, more than the limit of 1600", str(caught.exception)
        )
        self.assertEqual(body_length("\U0001f600" * 800), 1600)
        check_message(Message(recipient(1), "\U0001f600" * 800), cfg)
        with self.assertRaises(BadMessage):
            check_message(Message(recipient(1), "\U0001f600" * 801), cfg)
        with self.assertRaises(BadMessage):
            check_message(Message(recipient(1), "abcdef"), config(max_body=5))

    def test_empty_body_and_no_sender(self) -> None:
        """A blank body, a non-text body and a message with no sender at all
        are refused, each naming its field."""
        for body, field in (("", "body"), ("  \n", "body"), (b"hi", "body")):
            with self.assertRaises(BadMessage) as caught:
                check_message(Message(recipient(1), body), config())  # type: ignore[arg-type]
            self.assertEqual(caught.exception.field, field)
        with self.assertRaises(BadMessage) as caught:
            check_message(Message(recipient(1), "hi"), config(from_number=None))
        self.assertEqual(caught.exception.field, "from")
        mss = config(from_number=None, messaging_service_sid="MG" + "a" * 32)
        self.assertEqual(
            check_message(Message(recipient(1), "hi"), mss).to, recipient(1)
        )

    def test_normalised_and_mapping(self) -> None:
        """check_message normalises To and from_, reads a mapping of JSON
        fields, refuses unknown fields, and to_json/from_json round-trip."""
        message = check_message(
            {
                "to": "+1 (917) 555-0001",
                "body": "hi",
                "from": "+1 212 555 0101",
                "id": "7",
            },
            config(),
        )
        self.assertEqual(message, Message("+19175550001", "hi", "+12125550101", "7"))
        self.assertEqual(Message.from_json(message.to_json()), message)
        again = attrs.evolve(message, unsure_since=12.5)
        self.assertEqual(Message.from_json(again.to_json()), again)
        with self.assertRaises(BadMessage):
            check_message({"to": recipient(1), "body": "x", "cc": "y"}, config())
        with self.assertRaises(BadMessage):
            check_message({"to": recipient(1)}, config())
        with self.assertRaises(BadMessage):
            check_message(("+19175550001", "hi"), config())  # type: ignore[arg-type]

    def test_lane_key(self) -> None:
        """The lane is the message's sender, else the configured number, else
        the messaging service."""
        self.assertEqual(
            lane_key(Message(recipient(1), "x", SENDERS[3]), config()), SENDERS[3]
        )
        self.assertEqual(lane_key(Message(recipient(1), "x"), config()), SENDER)
        mss = config(from_number=None, messaging_service_sid="MGabc")
        self.assertEqual(lane_key(Message(recipient(1), "x"), mss), "MGabc")


class ConfigTests(SynchronousTestCase):
    """SmsConfig checks every field at construction and never shows the token."""

    def test_token_hidden_and_secret_accepted(self) -> None:
        """A text token becomes a Secret: it is absent from repr(); a Secret
        is kept; an empty one is refused."""
        cfg = config(auth_token="s3cr3t-value")
        self.assertNotIn("s3cr3t-value", repr(cfg))
        self.assertEqual(cfg.auth_token.reveal(), "s3cr3t-value")
        secret = Secret("tok", sources=("TOKEN",))
        self.assertIs(config(auth_token=secret).auth_token, secret)
        with self.assertRaisesRegex(ValueError, "auth_token is empty"):
            config(auth_token="")

    def test_bad_values(self) -> None:
        """Bad values raise ValueError naming the field."""
        cases: list[tuple[dict[str, Any], str]] = [
            ({"base_url": "ftp://x"}, "base_url"),
            ({"base_url": "https://x/?a=1"}, "base_url"),
            ({"account_sid": "AC/../x"}, "account_sid"),
            ({"from_number": "2125550100"}, "from_number"),
            ({"messaging_service_sid": "MGx"}, "not both"),
            ({"max_body": 0}, "max_body"),
            ({"timeout": 0}, "timeout"),
            ({"status_callback": "not a url"}, "status_callback"),
            ({"resend_check": "yes"}, "resend_check"),
            ({"probe_skew": 0.5}, "probe_skew"),
        ]
        for changes, needle in cases:
            with self.assertRaisesRegex(ValueError, needle, msg=repr(changes)):
                config(**changes)

    def test_base_url_and_messages_url(self) -> None:
        """The Messages URL is built from the base URL (path prefix kept,
        trailing slash dropped) and the account SID."""
        cfg = config(base_url="https://example.test/api/laml/")
        self.assertEqual(
            cfg.messages_url,
            f"https://example.test/api/laml/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}"
            "/Messages.json",
        )

    def test_from_env(self) -> None:
        """from_env reads the SID and token variables (the token as a Secret
        naming its variable); a missing variable is named, no value shown."""
        env = {
            "TWILIO_ACCOUNT_SID": DEFAULT_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": "tok-123",
        }
        cfg = SmsConfig.from_env(env, from_number=SENDER)
        self.assertEqual(cfg.account_sid, DEFAULT_ACCOUNT_SID)
        self.assertEqual(cfg.auth_token.reveal(), "tok-123")
        self.assertIn("TWILIO_AUTH_TOKEN", repr(cfg.auth_token))
        with self.assertRaises(ValueError) as caught:
            SmsConfig.from_env({"TWILIO_ACCOUNT_SID": "AC1"})
        self.assertIn("TWILIO_AUTH_TOKEN", str(caught.exception))
        self.assertNotIn("AC1", str(caught.exception))


class ErrorTests(SynchronousTestCase):
    """The error tree: signals for the controller, maybe_sent, records, and
    what the retry policy retries."""

    def test_signals(self) -> None:
        """Throttles are THROTTLE (and fetchq.Throttled); timeouts, lost
        connections, refused connections and 503/504 are DROP; rejections and
        other 5xx are IGNORE; classify_error reads them."""
        cases: list[tuple[Exception, Signal]] = [
            (ProviderThrottled(1.0, 429, 20429), Signal.THROTTLE),
            (ProviderRejected(400, 21211, "bad"), Signal.IGNORE),
            (AuthFailed(401, 20003, "Authenticate"), Signal.IGNORE),
            (ProviderError(503), Signal.DROP),
            (ProviderError(504), Signal.DROP),
            (ProviderError(500), Signal.IGNORE),
            (SmsTimeout(5.0), Signal.DROP),
            (ConnectionLost("gone"), Signal.DROP),
            (SmsConnectionFailed("refused"), Signal.DROP),
            (SmsConnectionFailed("dns", Signal.IGNORE), Signal.IGNORE),
            (BadMessage("x", "to"), Signal.IGNORE),
            (BadResponse(201, "no sid"), Signal.IGNORE),
        ]
        for error, signal in cases:
            self.assertIs(classify_error(error), signal, repr(error))
        self.assertIsInstance(ProviderThrottled(2.0), Throttled)

    def test_maybe_sent_and_record(self) -> None:
        """Only errors after which the provider may hold the message say
        maybe_sent; record() carries name, message, status and code."""
        self.assertTrue(SmsTimeout(1).maybe_sent)
        self.assertTrue(ConnectionLost("x").maybe_sent)
        self.assertTrue(ProviderError(500).maybe_sent)
        self.assertTrue(BadResponse(201, "x").maybe_sent)
        self.assertFalse(ProviderRejected(400, 21211, "x").maybe_sent)
        self.assertFalse(ProviderThrottled(1).maybe_sent)
        self.assertFalse(SmsConnectionFailed("x").maybe_sent)
        self.assertEqual(
            ProviderRejected(400, 21614, "not a mobile").record(),
            {
                "error": "ProviderRejected",
                "message": "HTTP 400 code 21614: not a mobile",
                "status": 400,
                "code": 21614,
                "maybe_sent": False,
            },
        )

    def test_retry_policy(self) -> None:
        """sms_retry_policy retries throttles, connection failures, timeouts,
        lost connections and 5xx, but not rejections, bad input or a 2xx
        without a sid; retry_maybe_sent=False stops the maybe-sent ones."""
        policy = sms_retry_policy()
        again = sms_retry_policy(retry_maybe_sent=False)
        retried = [
            ProviderThrottled(1),
            SmsConnectionFailed("x"),
            SmsTimeout(1),
            ConnectionLost("x"),
            ProviderError(500),
        ]
        for error in retried:
            self.assertTrue(policy.is_retryable(Failure(error)), repr(error))
        for error in (
            ProviderRejected(400, 1, "x"),
            BadMessage("x"),
            BadResponse(201, "x"),
        ):
            self.assertFalse(policy.is_retryable(Failure(error)), repr(error))
        self.assertTrue(again.is_retryable(Failure(SmsConnectionFailed("x"))))
        self.assertFalse(again.is_retryable(Failure(SmsTimeout(1))))
        self.assertFalse(again.is_retryable(Failure(ProviderError(503))))


class FakeTestCase(SynchronousTestCase):
    """A fake provider on a task.Clock, a StubTreq over it, and helpers."""

    def make(self, cfg: SmsConfig | None = None, **fake: Any) -> SmsSender:
        """Make self.clock, self.provider, self.stub; return a sender."""
        self.clock = Clock()
        self.provider = FakeSMSProvider(self.clock, **fake)
        self.stub = StubTreq(self.provider)
        return SmsSender(cfg or config(), self.clock, http=self.stub)

    def settle(self) -> None:
        """Run the clock until nothing is scheduled, flushing the stub."""
        run_until_idle(self.clock, self.stub)

    def sent(self, sender: SmsSender, message: Message) -> SmsResult:
        """Send and run to the end; the result (failing the test otherwise)."""
        d = sender.send(message)
        self.settle()
        result: SmsResult = self.successResultOf(d)
        return result

    def error(self, sender: SmsSender, message: Message) -> BaseException:
        """Send and run to the end; the exception it failed with."""
        d = sender.send(message)
        self.settle()
        failure = self.failureResultOf(d)
        assert failure.value is not None
        return failure.value

    def queue(
        self, sender: SmsSender, width: int = 10, **kw: Any
    ) -> ResizableDispatchQueue:
        """A queue running ``sender`` on self.clock with the SMS retry policy."""
        kw.setdefault("retry", sms_retry_policy(base_delay=1.0))
        return ResizableDispatchQueue(
            sender, width, clock=self.clock, rng=random.Random(5), **kw
        )


class SenderTests(FakeTestCase):
    """The sender against the fake provider, in-process."""

    def test_success(self) -> None:
        """A 201 gives the provider's sid and status; the provider got To,
        From and Body; the record carries them for the output line."""
        sender = self.make()
        result = self.sent(sender, Message("+1 917 555 0001", "hello", id="row-1"))
        [accepted] = self.provider.messages
        self.assertEqual(result.sid, accepted.sid)
        self.assertTrue(result.sid.startswith("SM"))
        self.assertEqual(result.status, "queued")
        self.assertEqual((result.to, result.from_), ("+19175550001", SENDER))
        self.assertEqual(
            (accepted.to, accepted.from_, accepted.body),
            ("+19175550001", SENDER, "hello"),
        )
        self.assertFalse(result.recovered)
        self.assertAlmostEqual(result.elapsed, 0.05)
        record = result.record()
        self.assertEqual(record["id"], "row-1")
        self.assertEqual(record["sid"], accepted.sid)
        self.assertEqual(record["from"], SENDER)
        self.assertEqual(record["segments"], 1)

    def test_basic_auth(self) -> None:
        """The fake checks HTTP Basic auth: the configured SID and token pass;
        a wrong token is AuthFailed (401, code 20003) and nothing is sent."""
        sender = self.make(cfg=config(auth_token="wrong"))
        error = self.error(sender, Message(recipient(1), "hi"))
        self.assertIsInstance(error, AuthFailed)
        assert isinstance(error, AuthFailed)
        self.assertEqual((error.status, error.code), (401, 20003))
        self.assertEqual(self.provider.messages, [])
        good = self.make()
        self.sent(good, Message(recipient(1), "hi"))
        self.assertEqual(len(self.provider.messages), 1)
        token = base64.b64encode(f"{DEFAULT_ACCOUNT_SID}:{DEFAULT_AUTH_TOKEN}".encode())
        self.assertEqual(good._authorization, b"Basic " + token)

    def test_messaging_service(self) -> None:
        """With a messaging service the form carries MessagingServiceSid, the
        provider answers "accepted", and the lane is the service."""
        mss = "MG" + "1" * 32
        sender = self.make(cfg=config(from_number=None, messaging_service_sid=mss))
        result = self.sent(sender, Message(recipient(2), "hi"))
        self.assertEqual(result.status, "accepted")
        self.assertEqual(result.messaging_service_sid, mss)
        self.assertIsNone(result.from_)
        self.assertEqual(self.provider.messages[0].messaging_service_sid, mss)
        self.assertEqual(sender.lane_key(Message(recipient(2), "hi")), mss)

    def test_bad_message_never_sent(self) -> None:
        """A bad row fails with BadMessage and makes no request at all."""
        sender = self.make()
        for message in (Message("2125550100", "hi"), Message(recipient(1), "x" * 1601)):
            self.assertIsInstance(self.error(sender, message), BadMessage)
        self.assertEqual(sum(self.provider.requests.values()), 0)

    def test_rejections_not_retried(self) -> None:
        """21211 (invalid number) and 21614 (not a mobile) are ProviderRejected
        with the provider's code and message, tried once through a queue."""
        sender = self.make(
            invalid={recipient(1)}, not_mobile=lambda n: n == recipient(2)
        )
        queue = self.queue(sender)
        d1 = queue.put(Message(recipient(1), "a"), key=SENDER)
        d2 = queue.put(Message(recipient(2), "b"), key=SENDER)
        self.settle()
        for d, code, text in (
            (d1, 21211, "not a valid phone number"),
            (d2, 21614, "not a valid mobile number"),
        ):
            failure = self.failureResultOf(d, JobFailed)
            job = failure.value.job
            self.assertEqual(job.attempts, 1)
            error = job.failure.value
            self.assertIsInstance(error, ProviderRejected)
            self.assertEqual((error.status, error.code), (400, code))
            self.assertIn(text, error.message)
            self.assertEqual(error.record()["code"], code)
        self.assertEqual(self.provider.requests["POST"], 2)
        self.assertEqual(self.provider.messages, [])

    def test_throttled_20429_retried(self) -> None:
        """Over the fake's concurrency cap the second request gets 429/20429:
        ProviderThrottled (a Throttled, default 1 s), retried, then accepted;
        each message is accepted exactly once."""
        sender = self.make(concurrency=1, latency=0.5)
        queue = self.queue(sender, width=2)
        d1 = queue.put(Message(recipient(1), "a", SENDERS[0]), key=SENDERS[0])
        d2 = queue.put(Message(recipient(2), "b", SENDERS[1]), key=SENDERS[1])
        self.settle()
        jobs = [self.successResultOf(d1), self.successResultOf(d2)]
        self.assertEqual([job.attempts for job in jobs], [1, 2])
        self.assertEqual(self.provider.codes[20429], 1)
        self.assertEqual(self.provider.statuses[429], 1)
        self.assertEqual(len(self.provider.messages), 2)
        self.assertEqual(self.provider.duplicates(), [])
        # retried after the default 1 s (the throttle came at t=0)
        self.assertAlmostEqual(self.provider.messages[1].created_at, 1.0)

    def test_throttle_delay(self) -> None:
        """Retry-After sets a throttle's delay, capped by max_retry_after;
        without it the default applies."""
        sender = self.make(cfg=config(max_retry_after=10.0, default_retry_after=2.0))
        self.provider.fail_next(429, code=20429, retry_after=3)
        self.provider.fail_next(429, code=20429, retry_after=600)
        self.provider.fail_next(429, code=20429)
        delays = []
        for _ in range(3):
            error = self.error(sender, Message(recipient(1), "a"))
            assert isinstance(error, ProviderThrottled)
            self.assertEqual(error.code, 20429)
            delays.append(error.delay)
        self.assertEqual(delays, [3.0, 10.0, 2.0])

    def test_5xx_retried(self) -> None:
        """500 then 503 are ProviderError, retried with backoff; the third
        attempt is accepted, once."""
        sender = self.make()
        self.provider.fail_next(500, code=20500)
        self.provider.fail_next(503)
        queue = self.queue(sender)
        d = queue.put(Message(recipient(1), "a"), key=SENDER)
        self.settle()
        job = self.successResultOf(d)
        self.assertEqual(job.attempts, 3)
        self.assertEqual(self.provider.statuses[500], 1)
        self.assertEqual(self.provider.statuses[503], 1)
        self.assertEqual(len(self.provider.messages), 1)

    def test_timeout(self) -> None:
        """An answer slower than the timeout is SmsTimeout after exactly the
        timeout; the fake had committed the message (the ambiguous case)."""
        sender = self.make(cfg=config(timeout=1.0), latency=3.0)
        d = sender.send(Message(recipient(1), "slow"))
        advance_and_flush(self.clock, self.stub, 0.999)
        self.assertNoResult(d)
        advance_and_flush(self.clock, self.stub, 0.001)
        error = self.failureResultOf(d, SmsTimeout).value
        self.assertIsInstance(error, AmbiguousSend)
        self.assertTrue(error.maybe_sent)
        self.settle()
        self.assertEqual(len(self.provider.messages), 1)
        self.assertEqual(self.provider.abandoned, 1)

    def test_phase_timeouts(self) -> None:
        """``headers_timeout`` bounds the wait for the answer within the
        whole ``timeout``: an answer slower than it is an SmsTimeout naming
        it, at exactly that time, and the message may have been sent."""
        sender = self.make(
            cfg=config(timeout=10.0, headers_timeout=2.0, body_timeout=2.0),
            latency=3.0,
        )
        d = sender.send(Message(recipient(1), "slow"))
        advance_and_flush(self.clock, self.stub, 1.999)
        self.assertNoResult(d)
        advance_and_flush(self.clock, self.stub, 0.001)
        error = self.failureResultOf(d, SmsTimeout).value
        self.assertEqual(error.seconds, 2.0)
        self.assertTrue(error.maybe_sent)

    def test_cancel(self) -> None:
        """Cancelling a send under way fails it with CancelledError (not a
        timeout) and, with resend_check, leaves the message marked unsure:
        the provider had it already."""
        sender = self.make(cfg=config(resend_check=True), latency=3.0)
        self.clock.advance(10)
        message = Message(recipient(1), "x")
        d = sender.send(message)
        self.clock.advance(1)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(sender.unsure(message), 10.0)
        self.settle()
        self.assertEqual(len(self.provider.messages), 1)

    def test_maybe_sent_sticks(self) -> None:
        """A message whose earlier attempt timed out (and was accepted) and
        whose last attempt was refused fails with maybe_sent True: the record
        must not claim it was not sent.  The same for a message a resumed run
        marked unsure."""
        sender = self.make(cfg=config(timeout=1.0), latency=3.0)
        queue = self.queue(sender, retry=sms_retry_policy(max_attempts=2))
        d = queue.put(Message(recipient(1), "x"), key=SENDER)
        advance_and_flush(self.clock, self.stub, 1.0)
        self.provider.latency = 0.05
        self.provider.fail_next(400, code=21610, message="unsubscribed")
        self.settle()
        error = self.failureResultOf(d, JobFailed).value.job.failure.value
        self.assertIsInstance(error, ProviderRejected)
        self.assertEqual(error.code, 21610)
        self.assertTrue(error.record()["maybe_sent"])
        self.provider.fail_next(400, code=21610)
        later = self.error(sender, Message(recipient(2), "y", unsure_since=0.0))
        self.assertTrue(later.maybe_sent)  # type: ignore[attr-defined]
        self.provider.fail_next(400, code=21610)
        plain = self.error(sender, Message(recipient(3), "z"))
        self.assertFalse(plain.maybe_sent)  # type: ignore[attr-defined]

    def test_bad_2xx(self) -> None:
        """A 2xx without a sid is BadResponse: maybe sent, not retried."""
        sender = self.make()
        self.provider.fail_next(201, message="")
        error = self.error(sender, Message(recipient(1), "x"))
        self.assertIsInstance(error, BadResponse)
        self.assertFalse(sms_retry_policy().is_retryable(Failure(error)))


class ResendCheckTests(FakeTestCase):
    """resend_check: a message whose earlier attempt may have been accepted is
    looked up before it is sent again."""

    def test_timeout_then_retry_finds_it(self) -> None:
        """After a timeout the retry lists the provider's messages, finds the
        one the provider accepted, and returns its sid without a second POST."""
        sender = self.make(cfg=config(timeout=1.0, resend_check=True), latency=3.0)
        queue = self.queue(sender)
        d = queue.put(Message(recipient(1), "hello"), key=SENDER)
        advance_and_flush(self.clock, self.stub, 1.0)  # the POST times out
        self.assertEqual(sender.unsure(Message(recipient(1), "hello")), 0.0)
        self.provider.latency = 0.05
        self.settle()
        job = self.successResultOf(d)
        self.assertEqual(job.attempts, 2)
        self.assertTrue(job.result.recovered)
        self.assertEqual(job.result.sid, self.provider.messages[0].sid)
        self.assertEqual(self.provider.requests, {"POST": 1, "GET": 1})
        self.assertEqual(self.provider.duplicates(), [])
        self.assertIsNone(sender.unsure(Message(recipient(1), "hello")))

    def test_without_resend_check_it_sends_twice(self) -> None:
        """The same timeout without resend_check sends the message twice: the
        at-least-once gap the check is for."""
        sender = self.make(cfg=config(timeout=1.0), latency=3.0)
        queue = self.queue(sender)
        d = queue.put(Message(recipient(1), "hello"), key=SENDER)
        # the first attempt times out; let the retry be fast
        advance_and_flush(self.clock, self.stub, 1.0)
        self.provider.latency = 0.05
        self.settle()
        self.successResultOf(d)
        self.assertEqual(len(self.provider.duplicates()), 1)

    def test_5xx_after_commit_and_before(self) -> None:
        """A 500 from a provider that had committed is found by the check; a
        500 from one that had not leads to one send."""
        sender = self.make(cfg=config(resend_check=True))
        self.provider.fail_next(500, accept=True)
        queue = self.queue(sender)
        d = queue.put(Message(recipient(1), "a"), key=SENDER)
        self.settle()
        self.assertTrue(self.successResultOf(d).result.recovered)
        self.provider.fail_next(500, accept=False)
        d = queue.put(Message(recipient(2), "b"), key=SENDER)
        self.settle()
        self.assertFalse(self.successResultOf(d).result.recovered)
        self.assertEqual(len(self.provider.messages), 2)
        self.assertEqual(self.provider.duplicates(), [])
        self.assertEqual(self.provider.requests["GET"], 2)

    def test_after_a_crash(self) -> None:
        """A new sender (a resumed run) given unsure_since finds the message a
        crashed run had sent, and sends nothing."""
        first = self.make(cfg=config(resend_check=True))
        self.clock.advance(1000)
        sent = self.sent(first, Message(recipient(1), "hi", id="9"))
        # crash: the sid never reached the store
        self.clock.advance(600)
        resumed = SmsSender(config(resend_check=True), self.clock, http=self.stub)
        posts = self.provider.requests["POST"]
        again = self.sent(
            resumed, Message(recipient(1), "hi", id="9", unsure_since=999.0)
        )
        self.assertTrue(again.recovered)
        self.assertEqual(again.sid, sent.sid)
        self.assertEqual(again.id, "9")
        self.assertEqual(self.provider.requests["POST"], posts)

    def test_window_and_own_sids(self) -> None:
        """The check ignores messages created before unsure_since - probe_skew
        and sids this sender was given for another message."""
        sender = self.make(cfg=config(resend_check=True, probe_skew=60.0))
        self.clock.advance(1000)
        earlier = self.sent(sender, Message(recipient(1), "same", id="a"))
        # an identical message this sender itself sent is not taken for it
        second = self.sent(
            sender, Message(recipient(1), "same", id="b", unsure_since=990.0)
        )
        self.assertFalse(second.recovered)
        self.assertNotEqual(second.sid, earlier.sid)
        # a fresh sender looking from well after both does not see them
        self.clock.advance(500)
        fresh = SmsSender(config(resend_check=True), self.clock, http=self.stub)
        found = fresh.find_sent(Message(recipient(1), "same"), since=1400.0)
        self.settle()
        self.assertIsNone(self.successResultOf(found))
        found = fresh.find_sent(Message(recipient(1), "same"), since=1050.0)
        self.settle()
        self.assertEqual(self.successResultOf(found).sid, second.sid)

    def test_paging(self) -> None:
        """The check follows next_page_uri to find an older match."""
        sender = self.make(
            cfg=config(resend_check=True, probe_page_size=2, probe_pages=3)
        )
        self.clock.advance(100)
        target = self.sent(sender, Message(recipient(1), "target"))
        for n in range(4):
            self.sent(sender, Message(recipient(1), f"later {n}"))
        fresh = SmsSender(
            config(probe_page_size=2, probe_pages=3), self.clock, http=self.stub
        )
        found = fresh.find_sent(Message(recipient(1), "target"), since=100.0)
        self.settle()
        self.assertEqual(self.successResultOf(found).sid, target.sid)
        self.assertEqual(self.provider.requests["GET"], 3)

    def test_list_lag_is_the_remaining_gap(self) -> None:
        """When the provider's list lags behind the retry, the check does not
        see the accepted message and it is sent again: the documented gap."""
        sender = self.make(
            cfg=config(timeout=1.0, resend_check=True), latency=3.0, list_lag=60.0
        )
        queue = self.queue(sender)
        d = queue.put(Message(recipient(1), "hello"), key=SENDER)
        advance_and_flush(self.clock, self.stub, 1.0)
        self.provider.latency = 0.05
        self.settle()
        self.assertFalse(self.successResultOf(d).result.recovered)
        self.assertEqual(len(self.provider.duplicates()), 1)


class FigureTests(FakeTestCase):
    """The issue's figure: 500 messages over 5 sender numbers at 1/s each."""

    def run_batch(self, concurrency: int, width: int = 10) -> float:
        """Put 500 messages (100 per sender) through a queue with lanes keyed
        by From at 1/s; return the time the last one finished."""
        sender = self.make(concurrency=concurrency, latency=0.05)
        queue = self.queue(
            sender, width=width, lane_rate=1.0, retry=sms_retry_policy(max_attempts=50)
        )
        finished: list[float] = []
        for n in range(500):
            message = check_message(
                Message(recipient(n), f"message {n}", SENDERS[n % 5], id=str(n)),
                sender.config,
            )
            d = queue.put(message, key=sender.lane_key(message))
            d.addCallback(lambda job: finished.append(self.clock.seconds()))
        self.settle()
        self.assertEqual(len(finished), 500)
        return max(finished)

    def test_500_over_5_senders(self) -> None:
        """With the queue's width (10) within the provider's cap (10), 500
        messages finish in about 100 s: each lane launches at t = 0, 1, ...,
        99 and the last answer comes 0.05 s later.  No 429, no duplicate,
        every message accepted exactly once, and the provider never had to
        queue one (each is sent the moment it is accepted)."""
        last = self.run_batch(concurrency=10)
        self.assertTrue(99.0 <= last <= 100.0, last)
        self.assertAlmostEqual(last, 99.05)
        self.assertEqual(self.provider.statuses[429], 0)
        self.assertEqual(self.provider.codes[20429], 0)
        self.assertEqual(self.provider.duplicates(), [])
        self.assertEqual(len(self.provider.messages), 500)
        bodies = sorted(m.body for m in self.provider.messages)
        self.assertEqual(bodies, sorted(f"message {n}" for n in range(500)))
        self.assertEqual(
            max(m.sent_at - m.created_at for m in self.provider.messages), 0.0
        )
        self.assertLessEqual(self.provider.max_in_flight, 10)
        per_sender = {
            s: [m.created_at for m in self.provider.messages if m.from_ == s]
            for s in SENDERS
        }
        for times in per_sender.values():
            self.assertEqual(times, [float(t) for t in range(100)])

    def test_over_the_cap_throttles_but_never_duplicates(self) -> None:
        """The contrast: a provider cap (3) under the 5 lanes answers 20429s;
        they are retried, and still every message is accepted exactly once."""
        self.run_batch(concurrency=3)
        self.assertGreater(self.provider.codes[20429], 0)
        self.assertEqual(self.provider.duplicates(), [])
        self.assertEqual(len(self.provider.messages), 500)


class LoopbackTests(TestCase):
    """The fake served on 127.0.0.1 and the sender's real treq client."""

    def setUp(self) -> None:
        served = serve_sms(reactor, latency=0.01, invalid={recipient(99)})
        self.addCleanup(served.stop)
        self.served = served
        self.provider: FakeSMSProvider = served.fake
        self.base_url = served.url

    def sender(self, **changes: Any) -> SmsSender:
        """A sender with its own connection pool, closed after the test."""
        sender = SmsSender(config(base_url=self.base_url, **changes), reactor)
        self.addCleanup(sender.close)
        return sender

    async def test_send_a_few(self) -> None:
        """Three messages go out over real HTTP with distinct sids, through a
        queue with lanes by sender; a bad number is rejected with its code."""
        sender = self.sender()
        queue = ResizableDispatchQueue(
            sender, 3, clock=reactor, retry=sms_retry_policy(), lane_rate=1.0
        )
        self.addCleanup(queue.stop)  # its lane buckets' timers
        ds: list[Deferred[Any]] = []
        for n in range(3):
            message = check_message(
                Message(recipient(n), f"loop {n}", SENDERS[n]), sender.config
            )
            ds.append(queue.put(message, key=sender.lane_key(message)))
        jobs = await gatherResults(ds)
        sids = {job.result.sid for job in jobs}
        self.assertEqual(sids, {m.sid for m in self.provider.messages})
        self.assertEqual(len(sids), 3)
        try:
            await sender.send(Message(recipient(99), "x"))
        except ProviderRejected as e:
            self.assertEqual(e.code, 21211)
        else:
            self.fail("an invalid number was accepted")
        self.assertEqual(self.provider.duplicates(), [])

    async def test_bad_token_and_refused_port(self) -> None:
        """A wrong token is AuthFailed over the wire; a closed port is
        SmsConnectionFailed (not sent, not maybe sent)."""
        try:
            await self.sender(auth_token="nope").send(Message(recipient(1), "x"))
        except AuthFailed as e:
            self.assertEqual(e.status, 401)
        else:
            self.fail("a wrong token was accepted")
        await self.served.stop()
        try:
            await self.sender().send(Message(recipient(1), "x"))
        except SmsConnectionFailed as e:
            self.assertFalse(e.maybe_sent)
        else:
            self.fail("sent to a closed port")
        self.assertEqual(self.provider.messages, [])
