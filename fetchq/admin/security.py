"""The admin server's locks: where it listens, its token, who may ask.

- It listens on 127.0.0.1 unless told otherwise (:func:`parse_listen`), and
  says so loudly when told to listen on an interface that is not loopback.
- A random bearer token per run (or ``$FETCHQ_ADMIN_TOKEN``), written to a
  file only its owner can read (:func:`write_token_file`); it is compared in
  constant time (:func:`same_token`) and shown in logs only as its first
  characters (:func:`masked`).
- ``Host`` and ``Origin`` must name the address the server is bound to
  (:class:`Origins`): a page elsewhere cannot post to it, and a DNS name
  rebound to 127.0.0.1 cannot read from it.
- The page gets the token through a one-time link (:class:`LoginCodes`) and
  keeps it in a ``SameSite=Strict; HttpOnly`` cookie.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
from pathlib import Path
from typing import Any

__all__ = [
    "TOKEN_ENV",
    "LoginCodes",
    "Origins",
    "is_loopback",
    "make_token",
    "masked",
    "parse_listen",
    "same_token",
    "write_token_file",
]

TOKEN_ENV = "FETCHQ_ADMIN_TOKEN"
"""The environment variable a token may come from (else a random one)."""

_MIN_TOKEN = 16


def make_token(env: dict[str, str] | None = None) -> str:
    """``$FETCHQ_ADMIN_TOKEN`` if set, else 32 random bytes, URL-safe.

    Raises:
        ValueError: the variable is set but shorter than 16 characters.
    """
    source = os.environ if env is None else env
    given = source.get(TOKEN_ENV, "").strip()
    if given:
        if len(given) < _MIN_TOKEN:
            raise ValueError(
                f"${TOKEN_ENV} is too short: use at least {_MIN_TOKEN} characters"
            )
        return given
    return secrets.token_urlsafe(32)


def masked(token: str) -> str:
    """The token as a log line may show it: its first 4 characters."""
    return token[:4] + "\u2026"


def same_token(given: str | bytes | None, token: str) -> bool:
    """Whether ``given`` is the token, in time that does not depend on
    where they differ."""
    if given is None:
        return False
    if isinstance(given, str):
        given = given.encode("utf-8", "replace")
    return hmac.compare_digest(given, token.encode("utf-8"))


def write_token_file(path: Path, token: str, url: str) -> None:
    """Write ``{"url": ..., "token": ...}`` to ``path``, readable and
    writable by its owner only (0600), replacing any older file; ``fetchq
    ctl RECIPE ...`` reads it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps({"url": url, "token": token}) + "\n")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def read_token_file(path: Path) -> dict[str, Any]:
    """What :func:`write_token_file` wrote.

    Raises:
        ValueError: the file is missing or not one of ours.
    """
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ValueError(
            f"{path}: no admin file (is the run going, with --admin?)"
        ) from None
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the admin file ({e})") from None
    if not isinstance(data, dict) or not {"url", "token"} <= set(data):
        raise ValueError(f"{path}: not a fetchq admin file")
    return data


def parse_listen(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` (``[::1]:PORT`` for IPv6) as ``(host, port)``; the
    host is 127.0.0.1 when not given.

    Raises:
        ValueError: naming what is wrong.
    """
    text = str(text).strip()
    host = "127.0.0.1"
    port_text = text
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(f"expected [HOST]:PORT, not {text!r}")
        host, port_text = text[1:end], text[end + 2 :]
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
    if not host:
        raise ValueError(f"no host before the port in {text!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"the port must be a number, not {port_text!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"the port must be 0-65535, not {port}")
    return host, port


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Origins:
    """The ``Host`` and ``Origin`` values a request may carry: the bound
    address and port, and for loopback the usual names of it.

    Args:
        host: the address the server is bound to.
        port: its port.
    """

    def __init__(self, host: str, port: int) -> None:
        names = {host}
        if is_loopback(host):
            names |= {"127.0.0.1", "localhost", "::1"}
        if host in ("0.0.0.0", "::"):
            names = set()  # any interface: only the ones named at start
        self.port = port
        self.hosts = {_host_port(n, port) for n in names}
        self.origins = {f"http://{h}" for h in self.hosts}

    def allow_host(self, host: str) -> None:
        """Also accept ``host`` (a name the operator reaches the server by)."""
        self.hosts.add(_host_port(host, self.port))
        self.origins = {f"http://{h}" for h in self.hosts}

    def host_ok(self, value: bytes | None) -> bool:
        """Whether a ``Host`` header names this server."""
        if value is None:
            return False
        return value.decode("latin-1").strip().lower() in self.hosts

    def origin_ok(self, value: bytes | None) -> bool:
        """Whether an ``Origin`` header is this server's own."""
        if value is None:
            return False
        return value.decode("latin-1").strip().lower() in self.origins


def _host_port(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{shown.lower()}:{port}"


class LoginCodes:
    """One-time codes for the page's login link: each works once, for
    ``ttl`` seconds, and is never the token itself.

    Args:
        clock: provides ``seconds()``.
        ttl: seconds a code stays good.
    """

    def __init__(self, clock: Any, ttl: float = 600.0) -> None:
        self.clock = clock
        self.ttl = ttl
        self._codes: dict[str, float] = {}

    def new(self) -> str:
        """A fresh code."""
        now = self.clock.seconds()
        self._codes = {c: t for c, t in self._codes.items() if t > now}
        code = secrets.token_urlsafe(24)
        self._codes[code] = now + self.ttl
        return code

    def use(self, code: str | None) -> bool:
        """Whether ``code`` is good; a good code is spent."""
        if not code:
            return False
        now = self.clock.seconds()
        for known, until in list(self._codes.items()):
            if hmac.compare_digest(known.encode(), code.encode("utf-8", "replace")):
                del self._codes[known]
                return bool(until > now)
        return False
