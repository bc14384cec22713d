"""A lean HTTP/1.1 client for plain GETs: a Twisted protocol and the
``httptools`` parser (llhttp, the parser of Node.js), in place of
``twisted.web.client.Agent`` for ``fetch.http: lean``.

Measured on this project's main job (see ``tests/bench/bench_main_job.py``),
the Agent's request and response objects, its line-by-line parser and its
producers are most of what a fetch costs in CPU.  :class:`LeanAgent` sends
the same request (the fetcher's headers, ``Host``, ``Accept-Encoding:
gzip``) in one write and parses the response in C; everything else is
shared with the Agent path, so the same guards hold:

- connections come from the same :class:`~fetchq.http.addresses.EndpointFactory`
  (connect timeout, TLS policy, the private-address guard on every
  resolved address) and are kept in a :class:`~fetchq.http.pool.BoundedPool`
  (per-host and total idle caps, idle timeouts, a request on a reused
  connection that the server closed meanwhile sent again once on a new one);
- the response is an ``IResponse`` as far as
  :func:`~fetchq.http.body.read_body` is concerned (``code``, ``headers``,
  ``length``, ``deliverBody``), so bodies are streamed, decoded layer by
  layer and capped, and timed out exactly as on the Agent path; the
  fetcher's headers and whole-request deadlines cancel the Deferred
  :meth:`LeanAgent.request` returns, which drops the connection;
- failures are Twisted's own (``ResponseNeverReceived``, ``ResponseFailed``
  with the reasons inside), so the fetcher names them the same way.

And a few more, since the parser is ours to bound: response headers are
capped at :data:`MAX_HEADER_BYTES` in all (Twisted caps each line only), an
upgrade or a malformed response fails the request with
:class:`BadResponse`, bytes the server sends when no request is out close
the connection, and a response that is not ``keep-alive`` (or that had
bytes past its end) is never reused.

Only bodyless GETs go this way; a request with a body, another method or a
proxy takes the Agent (treq's) path.
"""

from __future__ import annotations

from typing import Any

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python import failure
from twisted.web import _newclient
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH

from fetchq.http.origins import Origins, split_uri
from fetchq.http.pool import BoundedPool

__all__ = ["MAX_HEADER_BYTES", "BadResponse", "LeanAgent", "LeanPool"]

# Twisted's (untyped) failures and the exceptions its Agent fails with.
Failure: Any = failure.Failure
ResponseDone: Any = _newclient.ResponseDone
ResponseFailed: Any = _newclient.ResponseFailed
ResponseNeverReceived: Any = _newclient.ResponseNeverReceived

MAX_HEADER_BYTES = 64 * 1024
"""The most bytes of response header names and values accepted, in all."""

# The most bytes read before a response's headers end: the headers' cap and
# room for the status line, line ends and informational (1xx) answers.
_HEAD_LIMIT = MAX_HEADER_BYTES + 16 * 1024


class BadResponse(Exception):
    """The server's answer is not an HTTP/1.1 response this client takes
    (malformed, headers over :data:`MAX_HEADER_BYTES`, an upgrade)."""


def _headers_too_large() -> BadResponse:
    return BadResponse(f"response headers over {MAX_HEADER_BYTES} bytes")


class LeanHeaders:
    """A response's headers: ``getRawHeaders`` as Twisted's ``Headers``
    has it, for lower-case ``bytes`` names (what the fetcher asks)."""

    __slots__ = ("_raw",)

    def __init__(self) -> None:
        self._raw: dict[bytes, list[bytes]] = {}

    def add(self, name: bytes, value: bytes) -> None:
        """Add one header line (``name`` lower case)."""
        values = self._raw.get(name)
        if values is None:
            self._raw[name] = [value]
        else:
            values.append(value)

    def getRawHeaders(self, name: bytes, default: Any = None) -> list[bytes] | Any:
        """Every value of header ``name`` in the order sent, or ``default``."""
        return self._raw.get(name.lower(), default)

    def hasHeader(self, name: bytes) -> bool:
        """Whether the response has header ``name``."""
        return name.lower() in self._raw


class _BodyTransport:
    """What a body protocol sees as its transport: it can pause, resume or
    stop (drop the connection) the delivery of its own body, and nothing
    once that body has ended."""

    __slots__ = ("connection",)

    def __init__(self, connection: LeanConnection) -> None:
        self.connection: LeanConnection | None = connection

    def stopProducing(self) -> None:
        connection = self.connection
        if connection is not None:
            self.connection = None
            connection.drop()

    def pauseProducing(self) -> None:
        if self.connection is not None and self.connection.transport is not None:
            self.connection.transport.pauseProducing()

    def resumeProducing(self) -> None:
        if self.connection is not None and self.connection.transport is not None:
            self.connection.transport.resumeProducing()


class LeanResponse:
    """One response (``IResponse`` as :func:`~fetchq.http.body.read_body`
    uses it): its body is kept until :meth:`deliverBody` is called, then
    handed over as it comes."""

    __slots__ = (
        "_body",
        "_end",
        "_protocol",
        "_transport",
        "code",
        "headers",
        "length",
        "phrase",
        "version",
    )

    def __init__(
        self, code: int, headers: LeanHeaders, length: int | object, transport: Any
    ) -> None:
        self.code = code
        self.phrase = b""
        self.version = (b"HTTP", 1, 1)
        self.headers = headers
        self.length = length
        self._transport = transport
        self._protocol: Any = None
        self._body: list[bytes] = []
        self._end: failure.Failure | None = None

    def deliverBody(self, protocol: Any) -> None:
        """Give the body to ``protocol``: what came already, then the rest
        as it comes, then ``connectionLost`` with ``ResponseDone`` (whole),
        ``PotentialDataLoss`` (ended by the close) or ``ResponseFailed``."""
        if self._protocol is not None:
            raise RuntimeError("the body of a response is delivered once")
        self._protocol = protocol
        protocol.makeConnection(self._transport)
        body, self._body = self._body, []
        for data in body:
            protocol.dataReceived(data)
        end = self._end
        if end is not None:
            self._transport.connection = None
            protocol.connectionLost(end)

    def _data(self, data: bytes) -> None:
        protocol = self._protocol
        if protocol is None:
            self._body.append(data)
        else:
            protocol.dataReceived(data)

    def _finish(self, reason: failure.Failure) -> None:
        if self._end is not None:
            return
        self._end = reason
        protocol = self._protocol
        if protocol is not None:
            self._transport.connection = None
            protocol.connectionLost(reason)


class _Request:
    """What the pool's retrying wrapper asks of a request (its method and
    that it has no body), and the bytes to send."""

    __slots__ = ("data", "method")

    bodyProducer = None

    def __init__(self, method: bytes, data: bytes) -> None:
        self.method = method
        self.data = data


class LeanConnection(Protocol):
    """One persistent HTTP/1.1 connection, one request at a time.

    ``state`` is what :class:`~twisted.web.client.HTTPConnectionPool`
    reads: ``QUIESCENT`` when a request may be sent.
    """

    def __init__(self, quiescent: Any) -> None:
        self._quiescent = quiescent
        self.state = "CONNECTING"
        self._parser: HttpResponseParser | None = None
        self._waiting: Deferred[LeanResponse] | None = None
        self._response: LeanResponse | None = None
        self._ready: LeanResponse | None = None  # headers in, not yet given
        self._headers = LeanHeaders()
        self._header_bytes = 0
        self._informational = False
        self._complete = False
        self._extra = False  # bytes past the end of the response
        self._keep_alive = False  # what the whole response said
        self._received = False  # any byte of this response
        self._head_received = 0  # ... of it before its headers ended
        self._framing = 0  # ... of it read since the last body bytes
        self._dropped = False
        self._lost: list[Deferred[None]] = []

    # -- the pool's side

    def connectionMade(self) -> None:
        self.state = "QUIESCENT"
        self._parser = HttpResponseParser(self)

    def request(self, request: _Request) -> Deferred[LeanResponse]:
        """Send ``request``; the Deferred fires with the response once its
        headers are in (cancelling it drops the connection)."""
        if self.state != "QUIESCENT":
            return fail(ResponseNeverReceived([Failure(ConnectionAbortedError())]))
        self.state = "WAITING"
        self._complete = self._extra = self._received = False
        self._head_received = 0
        d: Deferred[LeanResponse] = Deferred(self._cancel)
        self._waiting = d
        transport: Any = self.transport
        transport.write(request.data)
        return d

    def abort(self) -> Deferred[None]:
        """Close the connection now; fires once it is closed."""
        if self.state == "CONNECTION_LOST":
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._lost.append(d)
        self.drop()
        return d

    def drop(self) -> None:
        """Drop the connection (a body's reader stops, a request is
        cancelled): it is never reused."""
        self._dropped = True
        if self.state != "CONNECTION_LOST":
            self.state = "DROPPED"
        if self.transport is not None:
            self.transport.abortConnection()

    def _close(self) -> None:
        transport: Any = self.transport
        transport.loseConnection()

    def _cancel(self, d: Deferred[LeanResponse]) -> None:
        self._waiting = None
        self.drop()
        d.errback(ResponseNeverReceived([Failure(CancelledError())]))

    # -- the server's side

    def dataReceived(self, data: bytes) -> None:
        if self.state not in ("WAITING", "BODY"):
            # Nothing was asked: a server that talks out of turn is not
            # trusted with the next request.
            if self.state == "QUIESCENT":
                self.state = "DROPPED"
                self._close()
            return
        self._received = True
        if self.state == "WAITING":
            # The parser keeps a header line whole until it ends, so one
            # endless line would grow in memory: what comes before the end
            # of the headers is fed up to _HEAD_LIMIT bytes, no further.
            room = _HEAD_LIMIT - self._head_received
            if len(data) > room:
                if not self._feed(data[:room]):
                    return
                if self.state == "WAITING":
                    self._bad(_headers_too_large())
                    return
                data = data[room:]
            else:
                self._head_received += len(data)
        elif not self._complete:
            # Likewise between body bytes: chunk lines, extensions, trailers.
            self._framing += len(data)
        if not self._feed(data):
            return
        if self.state == "BODY" and not self._complete and self._framing > _HEAD_LIMIT:
            self._bad(BadResponse(f"response framing over {_HEAD_LIMIT} bytes"))
            return
        self._advance()

    def _feed(self, data: bytes) -> bool:
        """Parse ``data``; False if the response was refused for it."""
        parser = self._parser
        assert parser is not None
        try:
            parser.feed_data(data)
        except HttpParserUpgrade:
            self._bad(BadResponse("the server switched protocols"))
            return False
        except HttpParserError as e:
            if self._complete:  # garbage after a whole response
                self._extra = True
            else:
                cause = e.__context__ if isinstance(e.__context__, BadResponse) else e
                self._bad(BadResponse(str(cause) or type(cause).__name__))
                return False
        return True

    def _advance(self) -> None:
        """After a read: hand over the response whose headers came, and end
        the one that is whole."""
        ready = self._ready
        if ready is not None:
            self._ready = None
            waiting = self._waiting
            self._waiting = None
            if self._complete:
                self._end_response(ready)
            if waiting is not None:
                waiting.callback(ready)
            return
        if self._complete and self._response is not None:
            self._end_response(self._response)

    def _end_response(self, response: LeanResponse) -> None:
        """The response is whole: the connection goes back to the pool
        (before the body's reader hears of it, so that whatever the end of
        this fetch starts finds it idle) or is closed."""
        self._response = None
        if self._dropped or self.state == "CONNECTION_LOST":
            pass
        elif self._extra or not self._keep_alive:
            self.state = "DROPPED"
            self._close()
        else:
            self.state = "QUIESCENT"
            self._quiescent(self)
        response._finish(Failure(ResponseDone()))

    def _bad(self, error: BadResponse) -> None:
        response = self._response or self._ready
        self._response = self._ready = None
        self.drop()
        waiting = self._waiting
        self._waiting = None
        failure = Failure(ResponseFailed([Failure(error)]))
        if waiting is not None:
            waiting.errback(failure)
        elif response is not None:
            response._finish(failure)

    def connectionLost(self, reason: failure.Failure = connectionDone) -> None:
        self.state = "CONNECTION_LOST"
        ready, response = self._ready, self._response
        self._ready = self._response = None
        waiting = self._waiting
        self._waiting = None
        if waiting is not None:
            if self._received:
                waiting.errback(ResponseFailed([reason]))
            else:
                waiting.errback(ResponseNeverReceived([reason]))
        response = response or ready
        if response is not None:
            delimited = response.length is UNKNOWN_LENGTH and not (
                response.headers.hasHeader(b"transfer-encoding")
            )
            if delimited and not self._dropped:
                # No length and no chunking: the close is the end (HTTP/1.0
                # style), as Twisted says it, ``PotentialDataLoss``.
                response._finish(Failure(PotentialDataLoss()))
            else:
                response._finish(Failure(ResponseFailed([reason])))
        lost, self._lost = self._lost, []
        for d in lost:
            d.callback(None)

    # -- httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        size = self._header_bytes = self._header_bytes + len(name) + len(value) + 4
        if size > MAX_HEADER_BYTES:
            raise _headers_too_large()
        if self._complete:
            self._extra = True
            return
        self._headers.add(name.lower(), value)

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        code = self._parser.get_status_code()
        headers, self._headers = self._headers, LeanHeaders()
        self._header_bytes = 0
        if self._complete:
            self._extra = True
            return
        if 100 <= code < 200:
            self._informational = True  # 100 Continue, 103 Early Hints
            return
        length: int | object = UNKNOWN_LENGTH
        declared = headers.getRawHeaders(b"content-length")
        if declared and not headers.hasHeader(b"transfer-encoding"):
            length = int(declared[-1])  # llhttp checked it
        if code in (204, 304):
            length = 0
        response = LeanResponse(code, headers, length, _BodyTransport(self))
        self._response = self._ready = response
        self.state = "BODY"
        self._framing = 0

    def on_body(self, body: bytes) -> None:
        self._framing = 0
        response = self._response
        if self._complete:
            self._extra = True  # a body past the end of the response
        elif response is not None and not self._dropped:
            response._data(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if self._complete:
            self._extra = True
            return
        self._complete = True
        # (Asked now: once the message is over, llhttp forgets.)
        assert self._parser is not None
        self._keep_alive = self._parser.should_keep_alive()


class _LeanFactory(Factory):
    """Makes the pool's connections (``HTTPConnectionPool._factory``)."""

    noisy = False  # one per connection: no "Starting factory" log lines

    def __init__(self, quiescent: Any, metadata: object) -> None:
        self._quiescent = quiescent

    def buildProtocol(self, addr: object) -> LeanConnection:
        return LeanConnection(self._quiescent)


class LeanPool(BoundedPool):
    """A :class:`~fetchq.http.pool.BoundedPool` of :class:`LeanConnection` s."""

    _factory = _LeanFactory  # type: ignore[assignment]


class LeanAgent:
    """Sends GETs over a :class:`LeanPool`.

    Args:
        endpoints: an ``IAgentEndpointFactory`` (``endpointForURI``).
        pool: the connections.
    """

    def __init__(self, endpoints: Any, pool: LeanPool) -> None:
        self._origins = Origins(endpoints)
        self._pool = pool

    def request(
        self, uri: bytes, header_block: bytes, add_host: bool = True
    ) -> Deferred[LeanResponse]:
        """GET ``uri`` (absolute, in URI form) with the header lines of
        ``header_block`` (each ending ``\\r\\n``); ``Host`` (unless
        ``add_host`` is false: the block has one) and ``Accept-Encoding:
        gzip`` are added.

        Returns:
            A Deferred firing with the response once its headers are in, or
            failing as the Agent's does; cancelling it drops the connection.
        """
        origin_text, path = split_uri(uri)
        origin = self._origins[origin_text]
        data = b"".join(
            (
                b"GET ",
                path,
                b" HTTP/1.1\r\n",
                b"Host: " + origin.host_value + b"\r\n" if add_host else b"",
                header_block,
                b"Accept-Encoding: gzip\r\n\r\n",
            )
        )
        d: Deferred[Any] = self._pool.getConnection(origin.key, origin.endpoint)
        return d.addCallback(_send, _Request(b"GET", data))


def _send(connection: Any, request: _Request) -> Deferred[LeanResponse]:
    answer: Deferred[LeanResponse] = connection.request(request)
    return answer
