"""Fakes of the services fetchq talks to, for tests and for trying recipes.

Each fake is a ``twisted.web`` resource on an injected clock: in-process on a
``task.Clock`` through ``treq.testing.StubTreq`` for unit tests, or served on
a loopback port for integration tests and for a person to point a recipe at.

- :mod:`fetchq.testing.sms`: :class:`FakeSMSProvider`, a Twilio-shaped
  Messages API with per-sender send rates, an account concurrency cap
  (20429), invalid-number errors and scripted faults; :func:`serve_sms` puts
  it on a port, and from a shell ``python -m fetchq.testing.sms --port 8099``.
- :mod:`fetchq.testing.api`: :class:`FakeXAPI`, an X-style API with
  per-endpoint quota windows, ``x-rate-limit-*`` headers on every answer,
  X's 429 body and ``next_token`` pagination; :func:`serve_api` puts it on a
  port (``python -m fetchq.testing.api --port 8098``).
- :mod:`fetchq.testing.github`: :class:`FakeGitHub`, GitHub's REST API for
  repository issues, with ``Link`` pagination, ``x-ratelimit-*`` headers and
  secondary limits (403/429 with Retry-After); :func:`serve_github`.

``fetchq fake sms|api|github --port N`` serves each from the command line.

:func:`run_until_idle` and :func:`advance_and_flush` drive a ``task.Clock``
and a ``StubTreq`` together: answers written after a clock advance reach the
client only when the stub is flushed.

The names below are imported from their modules on first use, so importing
this package costs nothing and ``python -m fetchq.testing.sms`` runs cleanly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fetchq.testing.api import FakeXAPI, ServedAPI
    from fetchq.testing.api import serve as serve_api
    from fetchq.testing.clock import advance_and_flush, run_until_idle
    from fetchq.testing.github import FakeGitHub
    from fetchq.testing.github import serve as serve_github
    from fetchq.testing.served import Served
    from fetchq.testing.sms import (
        DEFAULT_ACCOUNT_SID,
        DEFAULT_API_KEY,
        DEFAULT_API_SECRET,
        DEFAULT_AUTH_TOKEN,
        FakeMessage,
        FakeSMSProvider,
    )
    from fetchq.testing.sms import serve as serve_sms

__all__ = [
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "DEFAULT_AUTH_TOKEN",
    "FakeGitHub",
    "FakeMessage",
    "FakeSMSProvider",
    "FakeXAPI",
    "Served",
    "ServedAPI",
    "advance_and_flush",
    "run_until_idle",
    "serve_api",
    "serve_github",
    "serve_sms",
]

# name here -> (module, name there)
_HOMES = {
    "DEFAULT_ACCOUNT_SID": ("fetchq.testing.sms", "DEFAULT_ACCOUNT_SID"),
    "DEFAULT_AUTH_TOKEN": ("fetchq.testing.sms", "DEFAULT_AUTH_TOKEN"),
    "DEFAULT_API_KEY": ("fetchq.testing.sms", "DEFAULT_API_KEY"),
    "DEFAULT_API_SECRET": ("fetchq.testing.sms", "DEFAULT_API_SECRET"),
    "FakeMessage": ("fetchq.testing.sms", "FakeMessage"),
    "FakeSMSProvider": ("fetchq.testing.sms", "FakeSMSProvider"),
    "serve_sms": ("fetchq.testing.sms", "serve"),
    "FakeXAPI": ("fetchq.testing.api", "FakeXAPI"),
    "ServedAPI": ("fetchq.testing.api", "ServedAPI"),
    "Served": ("fetchq.testing.served", "Served"),
    "serve_api": ("fetchq.testing.api", "serve"),
    "FakeGitHub": ("fetchq.testing.github", "FakeGitHub"),
    "serve_github": ("fetchq.testing.github", "serve"),
    "advance_and_flush": ("fetchq.testing.clock", "advance_and_flush"),
    "run_until_idle": ("fetchq.testing.clock", "run_until_idle"),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = home
    return getattr(importlib.import_module(module), attribute)
