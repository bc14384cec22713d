"""What an SMS sender talks to and how: one frozen, validated value."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

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
from fetchq.sms.numbers import NumberRules, check_sender

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_USER_AGENT", "TWILIO_MAX_BODY", "SmsConfig"]

DEFAULT_BASE_URL = "https://api.twilio.com"
"""Twilio's REST API; any provider with the same shape works (its base URL may
carry a path prefix, e.g. ``https://example.signalwire.com/api/laml``)."""

TWILIO_MAX_BODY = 1600
"""Twilio's limit on a message body, in characters (UTF-16 code units)."""

TWILIO_HOST = "api.twilio.com"

DEFAULT_USER_AGENT = f"fetchq/{fetchq.__version__} (sms)"

_LENIENT = NumberRules(number_check="possible")
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


def _secret_of(name: str) -> Any:
    def convert(value: object) -> Secret | None:
        if value is None:
            return None
        if isinstance(value, Secret):
            secret = value
        elif isinstance(value, str):
            secret = Secret(value)
        else:
            raise ValueError(
                f"{name} must be text or a Secret, not {type(value).__name__}"
            )
        if not secret.reveal():
            raise ValueError(f"{name} is empty")
        return secret

    return convert


def _auth_token(value: object) -> Secret | None:
    converted: Secret | None = _secret_of("auth_token")(value)
    return converted


def _api_secret(value: object) -> Secret | None:
    converted: Secret | None = _secret_of("api_secret")(value)
    return converted


def _optional_path_safe(
    instance: object, attribute: attrs.Attribute[Any], value: Any
) -> None:
    if value is not None:
        _path_safe(instance, attribute, value)


def _sender(value: object) -> str | None:
    if value is None:
        return None
    try:  # the configured number_check applies once the config is made
        return check_sender(value, _LENIENT)
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

    **Credentials.**  Either the account's auth token (HTTP Basic
    ``account_sid:auth_token``), or an API key and its secret (HTTP Basic
    ``api_key:api_secret``, as Twilio recommends for production: a key can
    be revoked alone), not both.  Either way the URL names the account.

    Args:
        account_sid: the account SID (``AC`` + 32 hex digits at Twilio): part
            of every URL, and the HTTP Basic user with an auth token.
        auth_token: the account's auth token, the HTTP Basic password: a
            :class:`~fetchq.secrets.Secret` (as a recipe's ``${TOKEN}``
            gives) or text, kept as a Secret so it never shows in a repr.
            None with an API key.
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
        api_key: an API key SID (``SK`` + 32 hex digits at Twilio), the HTTP
            Basic user instead of the account SID; with ``api_secret``,
            instead of ``auth_token``.
        api_secret: the API key's secret (a Secret or text), the password.
        default_region: the region of numbers written without ``+`` (``US``),
            or None: every number must be E.164 (see
            :class:`~fetchq.sms.numbers.NumberRules`).
        number_check: ``"valid"`` or ``"possible"``: how strictly numbers
            are checked with ``phonenumbers`` installed.
    """

    account_sid: str = attrs.field(validator=_path_safe)
    auth_token: Secret | None = attrs.field(
        default=None, converter=_auth_token, repr=False
    )
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
    api_key: str | None = attrs.field(default=None, validator=_optional_path_safe)
    api_secret: Secret | None = attrs.field(
        default=None, converter=_api_secret, repr=False
    )
    default_region: str | None = None
    number_check: str = "valid"
    numbers: NumberRules = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._check_credentials()
        object.__setattr__(
            self,
            "numbers",
            NumberRules(self.default_region, self.number_check),  # type: ignore[arg-type]
        )
        if self.from_number is not None and self.from_number.startswith("+"):
            try:
                check_sender(self.from_number, self.numbers)
            except ValueError as e:
                raise ValueError(f"from_number: {e}") from None
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

    def _check_credentials(self) -> None:
        if self.api_key is None:
            if self.api_secret is not None:
                raise ValueError("api_secret without api_key: give both, or neither")
            if self.auth_token is None:
                raise ValueError(
                    "no credentials: give auth_token, or api_key and api_secret"
                )
            return
        if self.auth_token is not None:
            raise ValueError(
                "give auth_token, or api_key and api_secret, not both (the key "
                "is the user name, its secret the password)"
            )
        if self.api_secret is None:
            raise ValueError("api_key without api_secret: give both")
        if self.api_key.startswith("AC"):
            raise ValueError(
                "api_key is an account SID (AC...): an API key SID starts with "
                "SK (give the account SID as account_sid)"
            )
        if urlsplit(self.base_url).hostname == TWILIO_HOST and not (
            self.api_key.startswith("SK")
        ):
            raise ValueError(
                f"api_key {self.api_key!r} is no Twilio API key SID (SK followed "
                "by 32 hex digits)"
            )

    @property
    def basic_auth(self) -> tuple[str, str]:
        """The HTTP Basic user and password: the API key and its secret, or
        the account SID and auth token (revealed: sign requests only)."""
        if self.api_key is not None:
            assert self.api_secret is not None
            return self.api_key, self.api_secret.reveal()
        assert self.auth_token is not None
        return self.account_sid, self.auth_token.reveal()

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        sid_variable: str = "TWILIO_ACCOUNT_SID",
        token_variable: str = "TWILIO_AUTH_TOKEN",
        key_variable: str = "TWILIO_API_KEY",
        secret_variable: str = "TWILIO_API_SECRET",
        **changes: Any,
    ) -> SmsConfig:
        """A configuration whose account SID and credentials come from the
        environment, as Twilio's own libraries read them: an API key and its
        secret when ``key_variable`` is set, else the auth token; ``changes``
        give the other fields.

        Args:
            environ: where to look (default ``os.environ``).
            sid_variable: the variable holding the account SID.
            token_variable: the variable holding the auth token.
            key_variable: the variable holding an API key SID (``SK...``).
            secret_variable: the variable holding that key's secret.

        Raises:
            ValueError: naming a variable that is not set or empty (never
                showing a value), or a bad field.
        """
        env = os.environ if environ is None else environ
        with_key = bool(env.get(key_variable))
        needed = (
            (sid_variable, key_variable, secret_variable)
            if with_key
            else (sid_variable, token_variable)
        )
        missing = [name for name in needed if not env.get(name)]
        if missing:
            raise ValueError(
                f"environment variable {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not set or empty"
            )
        if with_key:
            secret = Secret(env[secret_variable], sources=(secret_variable,))
            return cls(
                account_sid=env[sid_variable],
                api_key=env[key_variable],
                api_secret=secret,
                **changes,
            )
        token = Secret(env[token_variable], sources=(token_variable,))
        return cls(account_sid=env[sid_variable], auth_token=token, **changes)

    @property
    def messages_url(self) -> str:
        """The Messages resource:
        ``{base_url}/2010-04-01/Accounts/{account_sid}/Messages.json``."""
        return f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    def message_url(self, sid: str) -> str:
        """One message: ``.../Accounts/{account_sid}/Messages/{sid}.json``.

        Raises:
            ValueError: for a sid that is not letters, digits, '-' and '_'.
        """
        if not isinstance(sid, str) or not _PATH_SAFE.fullmatch(sid):
            raise ValueError(f"not a message sid: {sid!r}")
        return (
            f"{self.base_url}/2010-04-01/Accounts/{self.account_sid}/Messages/"
            f"{sid}.json"
        )
