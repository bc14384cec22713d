"""A fake on a loopback port, as both fakes' ``serve()`` return it."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import attrs
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.protocols.policies import WrappingFactory
from twisted.web.resource import Resource
from twisted.web.server import Site

__all__ = ["Served", "serve_resource"]

FakeT = TypeVar("FakeT", bound=Resource)


class _Tracking(WrappingFactory):
    """Remembers open connections so :meth:`Served.stop` can close them."""

    def __init__(self, factory: Any) -> None:
        super().__init__(factory)  # type: ignore[no-untyped-call]
        self._idle: list[Deferred[None]] = []

    def unregisterProtocol(self, p: Any) -> None:
        super().unregisterProtocol(p)  # type: ignore[no-untyped-call]
        if not self.protocols:
            waiters, self._idle = self._idle, []
            for waiter in waiters:
                waiter.callback(None)

    def closed(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if not self.protocols:
            d.callback(None)
            return d
        self._idle.append(d)
        for protocol in list(self.protocols):
            protocol.transport.loseConnection()
        return d


@attrs.define
class Served(Generic[FakeT]):
    """A fake listening on a port.

    Attributes:
        fake: the fake itself (its counters, its scripted faults).
        port: the listening port.
    """

    fake: FakeT
    port: Any
    _factory: _Tracking = attrs.field(alias="factory")

    @property
    def url(self) -> str:
        """The base URL, ``http://127.0.0.1:PORT``."""
        host = self.port.getHost()
        return f"http://{host.host}:{host.port}"

    def stop(self) -> Deferred[None]:
        """Stop listening and close every open connection; fires when done."""
        stopped: Deferred[Any] = maybeDeferred(self.port.stopListening)
        both = DeferredList([stopped, self._factory.closed()], fireOnOneErrback=True)
        return both.addCallback(lambda _: None)


def serve_resource(
    reactor: Any, fake: FakeT, port: int = 0, interface: str = "127.0.0.1"
) -> Served[FakeT]:
    """Serve ``fake`` over HTTP on ``interface:port`` (0: any free port)."""
    factory = _Tracking(Site(fake, reactor=reactor))  # type: ignore[no-untyped-call]
    listening = reactor.listenTCP(port, factory, interface=interface)
    return Served(fake, listening, factory)
