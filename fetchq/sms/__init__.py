"""The SMS adapter: send text messages through a Twilio-shaped provider API.

::

    from twisted.internet import reactor
    from fetchq import ResizableDispatchQueue
    from fetchq.sms import (
        BadMessage, SmsConfig, SmsSender, check_message, sms_retry_policy,
    )

    config = SmsConfig.from_env(from_number="+12125550100", resend_check=True)
    sender = SmsSender(config, reactor, pool_size=10)
    queue = ResizableDispatchQueue(
        sender, 10, retry=sms_retry_policy(), clock=reactor, lane_rate=1.0
    )
    for row in rows:
        try:
            message = check_message(row, config)   # before queueing: bad rows
        except BadMessage as e:                    # are recorded, never sent
            record(row, **e.record())
        else:
            queue.put(message, key=sender.lane_key(message))

**Input.** :func:`check_message` normalises the ``To`` to E.164 (see
:mod:`fetchq.sms.numbers` for what is accepted and what is refused as
ambiguous) and refuses empty bodies and bodies over ``max_body`` (1600, as
the provider counts: UTF-16 code units).  A refused row raises
:class:`BadMessage` with a reason; it is never queued.

**Pace.** Put each message with ``key=sender.lane_key(message)`` (its sender
number) and give the queue ``lane_rate=1.0``: a long code sends about one
message a second, and a faster pace only fills the provider's own queue.  The
queue's ``width`` is the account-wide number of requests in flight; keep it at
or under the provider's concurrency limit, past which it answers 429 / 20429.

**Outcomes.** A job ends with an :class:`SmsResult` (the provider's ``sid``
and ``status``; :meth:`SmsResult.record` is the output line) or one of the
errors of :mod:`fetchq.sms.errors`, each with ``.name``, ``.signal`` for an
adaptive controller and ``.record()``.  :func:`sms_retry_policy` retries
429/20429 after the provider's delay (:class:`ProviderThrottled` is a
``fetchq.Throttled``, so the sender's lane is held meanwhile), and 5xx answers,
timeouts and broken connections with backoff; 4xx answers
(:class:`ProviderRejected`, e.g. 21211 invalid number, 21614 not a mobile)
fail at once with the provider's code and message.

Sending twice: what is and is not guaranteed
--------------------------------------------
The provider has no idempotency key: every ``POST`` that it accepts is a
message, and a second ``POST`` of the same text is a second message.  It
commits the message while handling the request, *before* its 201 reaches us,
and only the 201 carries the ``sid`` that proves it.  So for one send::

    t1  the POST leaves            t3  the 201 arrives (SmsResult, with sid)
    t2  the provider commits       t4  the runner has written the sid durably

- **Guaranteed:** a message that has a record with a sid is never sent again
  by a resumed run; a message refused with a 4xx or 429, or whose connection
  failed before the request left (:class:`SmsConnectionFailed`), was not sent.
  Every failure record says whether the message may have gone out anyway
  (``maybe_sent``), and a result found by the check below says so
  (``recovered``).
- **Not guaranteed:** exactly once.  If the process dies between t2 and t4,
  the message was sent but the store still has it claimed, and a resumed run
  sends it again.  The same holds without a crash when an answer is lost
  between t1 and t3 (a timeout, a broken connection, a 5xx from a provider
  that had committed): :class:`AmbiguousSend` / :class:`ProviderError`, which
  the retry policy retries.  Delivery is *at least once*.

What makes the gap small:

1. **The runner writes the sid at once.**  When a job completes, the runner
   acks its item with ``result.record()`` and flushes the store before doing
   anything else, so t4 - t3 is one commit.  (That is the runner's part.)
2. **resend_check.**  With ``SmsConfig(resend_check=True)``, before sending a
   message whose earlier attempt may have been accepted, the sender lists the
   provider's messages to the same ``To`` from the same ``From``
   (``GET .../Messages.json?To=&From=&PageSize=``, newest first, at most
   ``probe_pages`` pages) and looks for one with the same body created no
   earlier than that attempt began (less ``probe_skew``).  If there is one,
   its sid is the job's result (``recovered=True``) and nothing is sent.  In
   one process this is automatic: a retry after a timeout, a lost
   connection, a 5xx or a cancel looks first.  After a crash the sender cannot
   know, so the runner says so: a message claimed again (``attempts > 1``)
   without a record goes in with ``Message.unsure_since`` set no later than
   the time its earlier attempt could have begun (for instance the first run's
   start, kept in the store's meta).
   ``DateSent`` is deliberately not used as a filter: a message still queued
   at the provider has no send date yet.

With resend_check a message is sent twice only if its earlier attempt was
accepted *and* the list does not show it when the check runs: the provider's
list lags behind its writes, more than ``probe_pages * probe_page_size``
messages went to that number since, the provider altered the stored body
(smart encoding, redaction), or its clock is off by more than
``probe_skew``.  The check can also err the other way: a *different* message
with the same To, sender and body, accepted in that window, whose sid this
process was not given (for example one recorded before a crash), is taken for
this one, and this one is not sent.  Do not use resend_check when identical
messages to one number are meant to go out close together.  If the list cannot
be read, the attempt fails with that error and nothing is sent.

The store's claim lease must outlast a job (``timeout`` times the attempts,
plus backoff), or another worker may claim a message that is still being
sent.
"""

from fetchq.sms.config import (
    DEFAULT_BASE_URL,
    DEFAULT_USER_AGENT,
    TWILIO_MAX_BODY,
    SmsConfig,
)
from fetchq.sms.errors import (
    AmbiguousSend,
    AuthFailed,
    BadMessage,
    BadResponse,
    ConnectionLost,
    ProviderError,
    ProviderRejected,
    ProviderThrottled,
    SmsConnectionFailed,
    SmsError,
    SmsTimeout,
)
from fetchq.sms.numbers import (
    HAVE_PHONENUMBERS,
    NumberRules,
    check_e164,
    check_sender,
    is_e164,
)
from fetchq.sms.sender import (
    HTTPClientLike,
    Message,
    SmsResult,
    SmsSender,
    body_length,
    check_message,
    lane_key,
    sms_retry_policy,
)
from fetchq.sms.status import (
    FINAL_STATUSES,
    Delivery,
    delivery_retry_policy,
    is_final,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_USER_AGENT",
    "FINAL_STATUSES",
    "HAVE_PHONENUMBERS",
    "TWILIO_MAX_BODY",
    "AmbiguousSend",
    "AuthFailed",
    "BadMessage",
    "BadResponse",
    "ConnectionLost",
    "Delivery",
    "HTTPClientLike",
    "Message",
    "NumberRules",
    "ProviderError",
    "ProviderRejected",
    "ProviderThrottled",
    "SmsConfig",
    "SmsConnectionFailed",
    "SmsError",
    "SmsResult",
    "SmsSender",
    "SmsTimeout",
    "body_length",
    "check_e164",
    "check_message",
    "check_sender",
    "delivery_retry_policy",
    "is_e164",
    "is_final",
    "lane_key",
    "sms_retry_policy",
]
