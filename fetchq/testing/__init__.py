"""Fakes of the services fetchq talks to, for tests and for trying recipes.

Each fake is a ``twisted.web`` resource on an injected clock: in-process on a
``task.Clock`` through ``treq.testing.StubTreq`` for unit tests, or served on
a loopback port for integration tests and for a person to point a recipe at.

- :mod:`fetchq.testing.sms`: :class:`FakeSMSProvider`, a Twilio-shaped
  Messages API with per-sender send rates, an account concurrency cap
  (20429), invalid-number errors and scripted faults; :func:`serve_sms` puts
  it on a port, and from a shell ``python -m fetchq.testing.sms --port 8099``.

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
    from fetchq.testing.sms import (
        DEFAULT_ACCOUNT_SID,
        DEFAULT_AUTH_TOKEN,
        FakeMessage,
        FakeSMSProvider,
        advance_and_flush,
        run_until_idle,
    )
    from fetchq.testing.sms import serve as serve_sms

__all__ = [
    "DEFAULT_ACCOUNT_SID",
    "DEFAULT_AUTH_TOKEN",
    "FakeMessage",
    "FakeSMSProvider",
    "advance_and_flush",
    "run_until_idle",
    "serve_sms",
]

# name here -> (module, name there)
_HOMES = {name: ("fetchq.testing.sms", name) for name in __all__}
_HOMES["serve_sms"] = ("fetchq.testing.sms", "serve")


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = home
    return getattr(importlib.import_module(module), attribute)
