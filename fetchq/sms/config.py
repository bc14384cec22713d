"""What an SMS sender talks to and how: one frozen, validated value."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import attrs
from hyperlink import DecodedURL, URLParseError

import fetchq
from fetchq._validate import (
    integer_at_least,
    non_negative_number,
    optional_positive_number,
    positive_number,
)
from fetchq.secrets import Secret
from fetchq.sms.numbers import check_sender

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_USER_AGENT", "TWILIO_MAX_BODY", "SmsConfig"]

DEFAULT_BASE_URL = "https://api.twilio.com"
"""Twilio's REST API; any provider with the same shape works (its base URL may
carry a path prefix, e.g. ``https://example.signalwire.com/api/laml``)."""

TWILIO_MAX_BODY = 1600
"""Twilio's limit on a message body, in characters (UTF-16 code units)."""

DEFAULT_USER_AGENT = f"fetchq/{fetchq.__version__} (sms)"

_PATH_SAFE = re.compile(r"[A-Za-z0-9_-]+")


def _base_url(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"base_url must be an http(s) URL, not {value!r}")
    text = value.strip()
    try:
        url = DecodedURL.from_text(text)
    except (URLParseError, ValueError) as e:
        raise ValueError(f"base_url {text!r} does not parse ({e})") from None
    if url.scheme not in ("http", "https"):
        raise ValueError(f"base_url must start with http:// or https://, not {text!r}")
    if not url.host:
        raise ValueError(f"base_url {text!r} has no host")
    if url.query or url.fragment:
        raise ValueError(f"base_url {text!r} must not have a query or fragment")
    return text.rstrip("/")


def _path_safe(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None and attribute.name == "messaging_service_sid":
        return
    if not isinstance(value, str) or not _PATH_SAFE.fullmatch(value):
        raise ValueError(
            f"{attribute.name} must be letters, digits, '-' and '_' "
            f"(e.g. AC followed by 32 hex digits), not {value!r}"
        )


def _secret(value: object) -> Secret:
    if isinstance(value, Secret):
        secret = value
    elif isinstance(value, str):
        secret = Secret(value)
    else:
        raise ValueError(
            f"auth_token must be text or a Secret, not {type(value).__name__}"
        )
    if not secret.reveal():
        raise ValueError("auth_token is empty")
    return secret


def _sender(value: object) -> str | None:
    if value is None:
        return None
    try:
        return check_sender(value)
    except ValueError as e:
        raise ValueError(f"from_number: {e}") from None


def _callback(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"status_callback must be a URL, not {value!r}")
    try:
        url = DecodedURL.from_text(value.strip())
    except (URLParseError, ValueError) as e:
        raise ValueError(f"status_callback {value!r} does not parse ({e})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"status_callback must be an http(s) URL, not {value!r}")
    return value.strip()


def _bool(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{attribute.name} must be True or False, not {value!r}")


def _user_agent(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value or "\r" in value or "\n" in value:
        raise ValueError(f"user_agent must be one line of text, not {value!r}")


@attrs.frozen
class SmsConfig:
    """Where to send SMS, as whom, and the limits.

    Every value is checked at construction; a bad one raises ``ValueError``
    naming the field (never showing the token).  Change a value with
    ``attrs.evolve(config, ...)``.

    Args:
        account_sid: the account SID (``AC`` + 32 hex digits at Twilio), the
            HTTP Basic user and part of the URL.
        auth_token: the account's auth token, the HTTP Basic password: a
            :class:`~fetchq.secrets.Secret` (as a recipe's ``${TOKEN}``
            gives) or text, kept as a Secret so it never shows in a repr.
        base_url: the API's root, without ``/2010-04-01``.
        from_number: the default sender (E.164 number, short code or
            alphanumeric id) for messages that do not name one.
        messaging_service_sid: alternatively, a messaging service that picks
            the sender; exclusive with ``from_number``.  With neither, every
            message must carry its own ``from_``.
        max_body: the longest body, in UTF-16 code units (what the provider
            counts; an emoji is 2).  Longer bodies are refused before queueing.
        connect_timeout: seconds to connect (when the sender makes its own
            HTTP client; an injected one brings its own).
        timeout: seconds from starting a request to the whole answer.
        headers_timeout: seconds from sending a request to its response
            headers, or None: only ``timeout`` bounds them.
        body_timeout: seconds from the headers to the end of the answer's
            body, or None: only ``timeout`` bounds it.
        status_callback: a URL the provider calls with delivery updates.
        default_retry_after: the wait after a throttle answer without
            Retry-After (Twilio sends none with 20429).
        max_retry_after: the cap on a provider's Retry-After.
        resend_check: before sending again a message whose earlier attempt
            may have been accepted, look for it in the provider's message
            list and take its sid instead (see :mod:`fetchq.sms`).
        probe_skew: seconds of clock difference allowed between us and the
            provider when matching a message's creation time (at least 1:
            the provider's times have whole seconds).
        probe_pages: most pages of the message list read by one check.
        probe_page_size: messages per page of that list.
        user_agent: the User-Agent header.
    """

    account_sid: str = attrs.field(validator=_path_safe)
    auth_token: Secret = attrs.field(converter=_secret, repr=False)
    base_url: str = attrs.field(default=DEFAULT_BASE_URL, converter=_base_url)
    from_number: str | None = attrs.field(default=None, converter=_sender)
    messaging_service_sid: str | None = attrs.field(default=None, validator=_path_safe)
    max_body: int = attrs.field(default=TWILIO_MAX_BODY, validator=integer_at_least(1))
    connect_timeout: float = attrs.field(default=10.0, validator=positive_number)
    timeout: float = attrs.field(default=30.0, validator=positive_number)
    headers_timeout: float | None = attrs.field(
        default=None, validator=optional_positive_number
    )
    body_timeout: float | None = attrs.field(
        default=None, validator=optional_positive_number
    )
    status_callback: str | None = attrs.field(default=None, converter=_callback)
    default_retry_after: float = attrs.field(default=1.0, validator=non_negative_number)
    max_retry_after: float = attrs.field(default=300.0, validator=non_negative_number)
    resend_check: bool = attrs.field(default=False, validator=_bool)
    probe_skew: float = attrs.field(default=60.0, validator=non_negative_number)
    probe_pages: int = attrs.field(default=3, validator=integer_at_least(1))
    probe_page_size: int = attrs.field(default=50, validator=integer_at_least(1))
    user_agent: str = attrs.field(default=DEFAULT_USER_AGENT, validator=_user_agent)

    def __attrs_post_init__(self) -> None:
        if self.from_number is not None and self.messaging_service_sid is not None:
            raise ValueError(
                "give from_number or messaging_service_sid, not both "
                "(the service picks the sender)"
            )
        if self.probe_skew < 1:
            raise ValueError(
                f"probe_skew must be >= 1 (the provider's times have whole "
                f"seconds), not {self.probe_skew!r}"
            )

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        sid_variable: str = "TWILIO_ACCOUNT_SID",
        token_variable: str = "TWILIO_AUTH_TOKEN",
        **changes: Any,
    ) -> SmsConfig:
        """A configuration whose account SID and auth token come from the
        environment; ``changes`` give the other fields.

        Args:
            environ: where to look (default ``os.environ``).
            sid_variable: the variable holding the account SID.
            token_variable: the variable holding the auth token.

        Raises:
            ValueError: naming a variable that is not set or empty (never
                showing a value), or a bad field.
        """
        env = os.environ if environ is None else environ
        missing = [name for name in (sid_variable, token_variable) if not env.get(name)]
        if missing:
            raise ValueError(
                f"environment variable {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not set or empty"
            )
        token = Secret(env[token_variable], sources=(token_variable,))
        return cls(account_sid=env[sid_variable], auth_token=token, **changes)

    @property
    def messages_url(self) -> str:
        """The Messages resource:
        ``{base_url}/2010-04-01/Accounts/{account_sid}/Messages.json``."""
        return f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}/Messages.json"
