"""A small HTTP proxy for the fetch tests, on 127.0.0.1, that records what it
saw.

It does what a forward proxy does, by hand: ``CONNECT host:port`` opens a
TCP connection there, answers ``200`` and then passes bytes both ways (the
tunnel an https fetch runs its TLS in); any other request, in absolute form
(``GET http://host:port/path``), is passed to its host with the
``Proxy-Authorization`` header taken out, and the answer passed back.  With
``credentials`` it answers 407 to a request without the matching
``Proxy-Authorization: Basic``; with ``connect_status`` it answers CONNECT
with that status instead of opening the tunnel.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.defer import maybeDeferred
from twisted.internet.protocol import ClientFactory, Factory, Protocol, connectionDone
from twisted.python.failure import Failure


class _Upstream(Protocol):
    """The proxy's connection to a site: answers go back to the client."""

    def __init__(self, client: _Client) -> None:
        self.client = client

    def connectionMade(self) -> None:
        self.client.server.upstreams.add(self)
        self.client.upstream_ready(self)

    def dataReceived(self, data: bytes) -> None:
        if self.client.transport is not None:
            self.client.transport.write(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.client.server.upstreams.discard(self)
        self.client.upstream_lost(self)


class _UpstreamFactory(ClientFactory):
    def __init__(self, client: _Client) -> None:
        self.client = client

    def buildProtocol(self, addr: Any) -> _Upstream:
        return _Upstream(self.client)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        self.client.answer(502, "Bad Gateway", close=True)


class _Client(Protocol):
    """One client connection to the proxy."""

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.buffer = b""
        self.tunnel = False
        self.upstream: _Upstream | None = None
        self.upstream_key: tuple[str, int] | None = None
        self.pending: list[bytes] = []  # bytes for an upstream still connecting

    def connectionMade(self) -> None:
        self.server.clients.add(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.server.clients.discard(self)
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.loseConnection()

    def answer(
        self, code: int, reason: str, close: bool = False, **headers: str
    ) -> None:
        if self.transport is None:
            return
        lines = [f"HTTP/1.1 {code} {reason}", "Content-Length: 0"]
        lines += [
            f"{name.replace('_', '-')}: {value}" for name, value in headers.items()
        ]
        if close:
            lines.append("Connection: close")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if close:
            self.transport.loseConnection()

    def send_up(self, data: bytes) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.write(data)
        else:
            self.pending.append(data)

    def upstream_ready(self, upstream: _Upstream) -> None:
        self.upstream = upstream
        if self.tunnel:
            self.answer(200, "Connection established")
        pending, self.pending = self.pending, []
        for data in pending:
            self.send_up(data)

    def upstream_lost(self, upstream: _Upstream) -> None:
        if upstream is self.upstream:
            self.upstream = None
            self.upstream_key = None
            if self.tunnel and self.transport is not None:
                self.transport.loseConnection()

    def connect_up(self, host: str, port: int) -> None:
        if self.upstream_key == (host, port):
            return
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.loseConnection()
        self.upstream = None
        self.upstream_key = (host, port)
        self.server.reactor.connectTCP(host, port, _UpstreamFactory(self))

    def dataReceived(self, data: bytes) -> None:
        if self.tunnel:
            self.send_up(data)
            return
        self.buffer += data
        while not self.tunnel:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(rest) < length:
                return
            body, self.buffer = rest[:length], rest[length:]
            self.server.seen.append((method, target, headers))
            if not self.authorized(headers):
                self.answer(
                    407,
                    "Proxy Authentication Required",
                    close=True,
                    Proxy_Authenticate='Basic realm="test"',
                )
                return
            if method == "CONNECT":
                status = self.server.connect_status
                if status is not None:
                    self.answer(status, "No", close=True)
                    return
                host, _, port = target.rpartition(":")
                self.server.tunnels.append(target)
                self.tunnel = True
                self.pending.append(self.buffer)
                self.buffer = b""
                self.connect_up(host, int(port))
                return
            parts = urlsplit(target)
            kept = [line for line in lines[1:] if not line.lower().startswith("proxy-")]
            forwarded = "\r\n".join([lines[0], *kept]).encode("latin-1")
            self.connect_up(parts.hostname or "", parts.port or 80)
            self.send_up(forwarded + b"\r\n\r\n" + body)

    def authorized(self, headers: dict[str, str]) -> bool:
        credentials = self.server.credentials
        if credentials is None:
            return True
        expected = base64.b64encode(":".join(credentials).encode()).decode()
        return headers.get("proxy-authorization") == f"Basic {expected}"


class ProxyServer:
    """The proxy: start it, point a fetcher at :meth:`url`, close it in a
    cleanup.

    Attributes:
        seen: ``(method, target, headers)`` of every request it received
            (header names lower case).
        tunnels: the ``host:port`` of every tunnel it opened.
    """

    def __init__(
        self,
        reactor: Any,
        credentials: tuple[str, str] | None = None,
        connect_status: int | None = None,
    ) -> None:
        self.reactor = reactor
        self.credentials = credentials
        self.connect_status = connect_status
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.tunnels: list[str] = []
        self.clients: set[_Client] = set()
        self.upstreams: set[_Upstream] = set()
        self.port: Any = None

    def start(self) -> ProxyServer:
        """Listen on a free port of 127.0.0.1."""
        factory = Factory.forProtocol(lambda: _Client(self))
        self.port = self.reactor.listenTCP(0, factory, interface="127.0.0.1")
        return self

    @property
    def port_number(self) -> int:
        """The port listened on."""
        return int(self.port.getHost().port)

    def url(self, user: str | None = None, password: str | None = None) -> str:
        """The proxy's URL, with credentials if given."""
        auth = "" if user is None else f"{user}:{password}@"
        return f"http://{auth}127.0.0.1:{self.port_number}"

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        await maybeDeferred(self.port.stopListening)
        for connection in [*self.clients, *self.upstreams]:
            if connection.transport is not None:
                connection.transport.abortConnection()  # type: ignore[attr-defined]
