"""A fault-injection HTTP/1.1 server for the fetch tests, on 127.0.0.1.

It speaks just enough HTTP by hand (keep-alive, Content-Length request
bodies) to misbehave in exactly the ways a test asks for.  Each path is one
behaviour; query parameters tune it:

==================  =========================================================
``/ok``             200, ``size`` bytes of :func:`body_for` (Content-Length)
``/chunked``        200, the same body chunked
``/close``          200, no length: the body ends when the connection closes
``/status``         status ``code``; ``after``: Retry-After seconds;
                    ``date``: Retry-After as an HTTP-date ``date`` s from now
``/flaky``          status ``code`` for the first ``fail`` hits of ``key``,
                    then 200 with ``size`` bytes
``/redirect``       ``code`` (302) to ``/redirect?n=n-1``; at 0, ``/ok``;
                    ``to``: redirect there instead
``/loop``           302 to ``/loop?at=b`` and back to ``?at=a``: forever
``/mirror``         302 to itself with ``n`` one less and the rest of the
                    query echoed as it came; at ``n=0``, 200 with the target
``/reset``          reads the request, then resets the connection (RST)
``/stall-headers``  reads the request, never answers
``/stall-body``     Content-Length ``size``, sends ``sent`` bytes, stalls
``/trickle``        Content-Length ``size``, one byte every ``interval`` s
``/huge``           chunked, no length, sends until the client gives up
``/declared``       Content-Length ``size`` (huge), then stalls
``/truncated``      Content-Length ``size``, sends ``sent`` bytes, closes
``/overlong``       Content-Length ``size``, sends ``extra`` bytes more
``/gzip``           gzip of :func:`body_for` ``size`` (or zeros: ``zeros=1``),
                    only the first ``cut`` bytes of it if given
``/bad-gzip``       Content-Encoding gzip, body not gzip
``/encoded``        :func:`body_for` ``size`` (or zeros: ``zeros=1``) through
                    the encodings ``enc`` names (comma-separated, applied in
                    order, see :func:`encode`); the header lists them
``/canned``         the response :attr:`FaultServer.canned` holds under ``name``
``/raw``            the bytes :attr:`FaultServer.raw` holds under ``name``, as
                    they are (``close=1``: then close the connection)
``/cookie``         200 with a Set-Cookie header
``/echo``           200, JSON of the request: method, target, headers, body
``/robots.txt``     :attr:`FaultServer.robots` (status, body) if set, else 404
==================  =========================================================
"""

from __future__ import annotations

import email.utils
import gzip
import json
import socket
import struct
import zlib
from collections import Counter
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IOpenSSLContextFactory
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

_PATTERN = bytes(range(256)) * 16


def body_for(size: int) -> bytes:
    """The known body of ``size`` bytes the server sends."""
    reps = size // len(_PATTERN) + 1
    return (_PATTERN * reps)[:size]


def encode(data: bytes, encodings: str) -> tuple[bytes, str]:
    """``data`` through each encoding of ``encodings`` in turn, and the
    Content-Encoding header that says so.

    ``gzip``, ``x-gzip``, ``deflate`` (zlib-wrapped, RFC 1950) and
    ``deflate-raw`` (a bare RFC 1951 stream, labelled ``deflate`` as some
    servers send it) are applied; any other name (``br``, ...) is only
    labelled, the bytes left as they are.
    """
    names = []
    for name in (n.strip() for n in encodings.split(",")):
        if name in ("gzip", "x-gzip"):
            data = gzip.compress(data, mtime=0)
        elif name == "deflate":
            data = zlib.compress(data)
        elif name == "deflate-raw":
            packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
            data = packer.compress(data) + packer.flush()
            name = "deflate"
        names.append(name)
    return data, ", ".join(names)


class _Connection(Protocol):
    """One server-side connection."""

    def __init__(self, server: FaultServer) -> None:
        self.server = server
        self.buffer = b""
        self.busy = False  # answering slowly: read nothing more
        self.timers: list[Any] = []
        self.sent = 0
        self.producing = False
        self.method = "GET"
        self.served = 0  # requests read on this connection

    def connectionMade(self) -> None:
        self.server.connections.add(self)
        self.server.accepted += 1

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.producing = False
        for timer in self.timers:
            if timer.active():
                timer.cancel()
        self.server.connection_lost(self)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while not self.busy and self.transport is not None:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            self.server.raw_heads.append(head + sep)
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
            self.served += 1
            if self.served > 1 and self.server.drop_reused:
                # As a server whose keep-alive timeout has just passed.
                self.server.drop_reused = False
                self.transport.loseConnection()
                return
            self.server.requests.append((method, target, headers, body))
            self.method = method
            self.handle(method, target, headers, body)

    # ------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.sent += len(data)
        self.transport.write(data)

    def head(self, code: int, headers: dict[str, str]) -> None:
        reason = (
            HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else ""
        )
        lines = [f"HTTP/1.1 {code} {reason}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def respond(
        self, code: int, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        extra = {"Content-Type": "text/plain", "Content-Length": str(len(body))}
        if code in (204, 304):
            body = b""
            del extra["Content-Length"]
        self.head(code, {**extra, **(headers or {})})
        if self.method != "HEAD":
            self.write(body)

    def later(self, delay: float, f: Any, *args: Any) -> None:
        self.timers.append(self.server.reactor.callLater(delay, f, *args))

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> None:
        parts = urlsplit(target)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        size = int(q.get("size", "100"))
        path = parts.path
        server = self.server
        if path == "/robots.txt" and server.robots is not None:
            self.respond(*server.robots)
        elif path == "/ok":
            self.respond(200, body_for(size))
        elif path == "/chunked":
            self.head(200, {"Transfer-Encoding": "chunked"})
            data = body_for(size)
            for i in range(0, len(data), 1000):
                piece = data[i : i + 1000]
                self.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.write(b"0\r\n\r\n")
        elif path == "/close":
            self.busy = True
            self.head(200, {"Connection": "close"})
            self.write(body_for(size))
            self.transport.loseConnection()  # type: ignore[union-attr]
        elif path == "/status":
            extra = {}
            if "after" in q:
                extra["Retry-After"] = q["after"]
            if "date" in q:
                when = server.reactor.seconds() + float(q["date"])
                extra["Retry-After"] = email.utils.formatdate(when, usegmt=True)
            self.respond(int(q.get("code", "500")), b"status body", extra)
        elif path == "/flaky":
            key = q.get("key", "")
            server.hits[key] += 1
            if server.hits[key] <= int(q.get("fail", "1")):
                extra = {"Retry-After": q["after"]} if "after" in q else {}
                self.respond(int(q.get("code", "503")), b"not yet", extra)
            else:
                self.respond(200, body_for(size))
        elif path == "/redirect":
            n = int(q.get("n", "1"))
            if "to" in q:
                location = q["to"]
            elif n > 0:
                location = f"/redirect?n={n - 1}&size={size}&code={q.get('code', 302)}"
            else:
                self.respond(200, body_for(size))
                return
            self.respond(int(q.get("code", "302")), b"moved", {"Location": location})
        elif path == "/mirror":
            n = int(q.get("n", "1"))
            if n <= 0:
                self.respond(200, target.encode())
                return
            rest = [p for p in parts.query.split("&") if not p.startswith("n=")]
            location = "/mirror?" + "&".join([f"n={n - 1}", *rest])
            self.respond(302, b"moved", {"Location": location})
        elif path == "/loop":
            other = "b" if q.get("at", "a") == "a" else "a"
            self.respond(302, b"", {"Location": f"/loop?at={other}"})
        elif path == "/reset":
            self.busy = True
            sock = self.transport.getHandle()  # type: ignore[union-attr]
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            self.transport.abortConnection()  # type: ignore[union-attr]
        elif path == "/stall-headers":
            self.busy = True
        elif path == "/stall-body":
            self.busy = True
            self.head(200, {"Content-Length": str(size)})
            self.write(body_for(size)[: int(q.get("sent", "10"))])
        elif path == "/trickle":
            self.busy = True
            self.head(200, {"Content-Length": str(size)})
            self.trickle(body_for(size), float(q.get("interval", "0.02")))
        elif path == "/huge":
            self.busy = True
            self.head(200, {"Transfer-Encoding": "chunked"})
            self.producing = True
            self.transport.registerProducer(self, False)  # type: ignore[union-attr]
        elif path == "/declared":
            self.busy = True
            self.head(200, {"Content-Length": str(size)})
        elif path == "/truncated":
            self.busy = True
            self.head(200, {"Content-Length": str(size)})
            self.write(body_for(size)[: int(q.get("sent", "10"))])
            self.transport.loseConnection()  # type: ignore[union-attr]
        elif path == "/overlong":
            self.head(200, {"Content-Length": str(size)})
            self.write(body_for(size + int(q.get("extra", "10"))))
        elif path == "/gzip":
            plain = bytes(size) if q.get("zeros") else body_for(size)
            packed = gzip.compress(plain)[: int(q.get("cut", "0")) or None]
            self.respond(200, packed, {"Content-Encoding": "gzip"})
        elif path == "/bad-gzip":
            self.respond(200, b"this is not gzip" * 10, {"Content-Encoding": "gzip"})
        elif path == "/encoded":
            plain = bytes(size) if q.get("zeros") else body_for(size)
            packed, header = encode(plain, q.get("enc", "gzip"))
            self.respond(200, packed, {"Content-Encoding": header})
        elif path == "/canned":
            code, canned, extra = server.canned[q["name"]]
            self.respond(code, canned, extra)
        elif path == "/raw":
            self.write(server.raw[q["name"]])
            if q.get("close") and self.transport is not None:
                self.transport.loseConnection()
        elif path == "/cookie":
            self.respond(200, b"have one", {"Set-Cookie": "session=secret; Path=/"})
        elif path == "/echo":
            seen = {
                "method": method,
                "target": target,
                "headers": headers,
                "body": body.decode("latin-1"),
            }
            self.respond(
                200, json.dumps(seen).encode(), {"Content-Type": "application/json"}
            )
        else:
            self.respond(404, b"no such path")

    def trickle(self, data: bytes, interval: float) -> None:
        if data and self.transport is not None:
            self.server.trickled += 1
            self.write(data[:1])
            self.later(interval, self.trickle, data[1:], interval)

    # A pull producer for /huge: Twisted asks for more as the socket drains.
    def resumeProducing(self) -> None:
        if self.producing:
            self.write(b"%x\r\n%s\r\n" % (65536, bytes(65536)))

    def stopProducing(self) -> None:
        self.producing = False


class FaultServer:
    """The server: start it, build URLs with :meth:`url`, close it in a cleanup.

    Attributes:
        accepted: connections accepted so far.
        requests: ``(method, target, headers, body)`` of every request.
        trickled: body bytes sent by ``/trickle`` so far.
        connections: the connections open now.
        canned: ``name -> (status, body, headers)`` answers for ``/canned``.
        robots: ``(status, body)`` of ``/robots.txt``, or None for a 404.
        raw: ``name -> bytes`` written as they are for ``/raw``.
        drop_reused: True to close, unanswered, the next connection that
            reads its second (or later) request (then False again).
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.accepted = 0
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.connections: set[_Connection] = set()
        self.hits: Counter[str] = Counter()
        self.trickled = 0
        self.canned: dict[str, tuple[int, bytes, dict[str, str]]] = {}
        self.raw: dict[str, bytes] = {}
        self.raw_heads: list[bytes] = []  # each request's head, as it came
        self.drop_reused = False
        self.robots: tuple[int, bytes] | None = None
        self.port: Any = None
        self.scheme = "http"
        self._empty_waiters: list[Deferred[None]] = []

    def start(self, tls: Any = None, interface: str = "127.0.0.1") -> FaultServer:
        """Listen on a free port of ``interface`` (127.0.0.1); speak TLS with
        ``tls`` (server options, e.g. ``PrivateCertificate.options()``) if
        given."""
        factory = Factory.forProtocol(lambda: _Connection(self))
        if tls is None:
            self.port = self.reactor.listenTCP(
                0, factory, backlog=128, interface=interface
            )
        else:
            self.port = self.reactor.listenSSL(0, factory, tls, interface=interface)
        self.scheme = "http" if tls is None else "https"
        return self

    @property
    def port_number(self) -> int:
        """The port listened on."""
        return int(self.port.getHost().port)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        """An absolute URL of ``path`` on this server."""
        return f"{self.scheme}://{host}:{self.port_number}{path}"

    async def close(self) -> None:
        """Stop listening and wait for every connection to end (the client
        must close its side).  Raises AssertionError, after aborting them, if
        any is still open after a second: the client leaked it."""
        await maybeDeferred(self.port.stopListening)
        await self._emptied(1.0)
        if self.connections:
            leaked = len(self.connections)
            for connection in list(self.connections):
                connection.transport.abortConnection()  # type: ignore[union-attr]
            await self._emptied(1.0)
            raise AssertionError(f"{leaked} connection(s) left open by the client")

    def _emptied(self, timeout: float) -> Deferred[None]:
        """Fires once no connection is open, or after ``timeout`` seconds."""
        done: Deferred[None] = Deferred()
        if not self.connections:
            done.callback(None)
            return done
        self._empty_waiters.append(done)
        timer = self.reactor.callLater(timeout, self._wake, done)
        done.addBoth(lambda r: timer.cancel() if timer.active() else None)
        return done

    def _wake(self, done: Deferred[None]) -> None:
        if not done.called:
            done.callback(None)

    def connection_lost(self, connection: _Connection) -> None:
        """Forget a connection; wake the waiters when none is left."""
        self.connections.discard(connection)
        if not self.connections:
            waiters, self._empty_waiters = self._empty_waiters, []
            for done in waiters:
                self._wake(done)


@implementer(IOpenSSLContextFactory)
class ServerTLS:
    """Server TLS settings for ``listenSSL`` from a PEM certificate and key."""

    def __init__(self, cert_pem: bytes, key_pem: bytes) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
        from OpenSSL import SSL

        self._context = SSL.Context(SSL.TLS_SERVER_METHOD)
        self._context.use_certificate(x509.load_pem_x509_certificate(cert_pem))
        self._context.use_privatekey(load_pem_private_key(key_pem, None))  # type: ignore[arg-type]

    def getContext(self) -> Any:
        """The OpenSSL context (Twisted's ``ContextFactory`` interface)."""
        return self._context


def self_signed(host: str = "localhost") -> tuple[bytes, bytes]:
    """A fresh self-signed certificate for ``host``: ``(cert_pem, key_pem)``."""
    from datetime import datetime, timedelta, timezone

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.now(timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def lean_variants(namespace: dict[str, Any], *cases: type) -> None:
    """Add to ``namespace`` (a test module's globals) a copy of each of
    ``cases`` named ``Lean<name>`` whose ``http`` is ``"lean"``: the same
    tests over :class:`~fetchq.http.lean.LeanAgent` (each case builds its
    fetchers with ``http=self.http``)."""
    for case in cases:
        name = f"Lean{case.__name__}"
        namespace[name] = type(
            name,
            (case,),
            {
                "http": "lean",
                "__module__": namespace["__name__"],
                "__qualname__": name,
                "__doc__": f"{case.__doc__} (Over ``http: lean``.)",
            },
        )
