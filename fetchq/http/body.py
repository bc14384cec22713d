"""Streaming a response body: counted, hashed, size-capped, optionally saved.

A body is never held whole in memory.  :func:`read_body` delivers it to a
protocol that undoes its content encodings (gzip and deflate, stacked or
not, each layer inflated in bounded steps), counts each decoded chunk
against ``max_body``, feeds it to a
SHA-256 and, if a :class:`BodySink` has a file, writes it there; a deadline
covers the whole body, so a stalled or trickling one fails with
``BodyTimeout``.  Whenever reading stops early (too large, too slow,
cancelled) the connection is dropped, never returned to the pool half-read.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import GzipDecoder, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH

from fetchq.http.errors import (
    BodyTimeout,
    BodyTooLarge,
    ContentDecodingError,
    SaveError,
    TruncatedBody,
    UnsupportedEncoding,
)

__all__ = [
    "MAX_ENCODINGS",
    "BodySink",
    "content_encodings",
    "drop_body",
    "read_body",
    "reasons",
]


def reasons(failure: Failure | BaseException) -> Iterator[BaseException]:
    """Every exception in ``failure``, looking inside Twisted's wrappers
    (``ResponseFailed``, ``ResponseNeverReceived``, ...) that hold a list of
    ``Failure`` s as ``.reasons``."""
    error = failure.value if isinstance(failure, Failure) else failure
    if error is None:
        return
    yield error
    for inner in getattr(error, "reasons", None) or ():
        if isinstance(inner, (Failure, BaseException)):
            yield from reasons(inner)


class BodySink:
    """Where body bytes go: a running size and SHA-256, and optionally a
    temporary file in ``save_dir`` that :meth:`commit` renames into place.

    Args:
        save_dir: the directory to save into, or None to only hash.
    """

    def __init__(self, save_dir: str | None = None) -> None:
        self.size = 0
        self._hash = hashlib.sha256()
        self._dir = save_dir
        self._file: Any = None
        self._temp: str | None = None
        if save_dir is not None:
            fd, self._temp = tempfile.mkstemp(
                prefix=".fetchq-", suffix=".part", dir=save_dir
            )
            self._file = os.fdopen(fd, "wb")

    @property
    def sha256(self) -> str:
        """The hex SHA-256 of the bytes written so far."""
        return self._hash.hexdigest()

    def write(self, data: bytes) -> None:
        """Take the next chunk of the body."""
        self.size += len(data)
        self._hash.update(data)
        if self._file is not None:
            self._file.write(data)

    def commit(self, name: str) -> str | None:
        """Close the file and rename it to ``save_dir/name`` atomically
        (replacing any file of that name).

        Returns:
            The saved file's path, or None when not saving.
        """
        if self._file is None or self._temp is None or self._dir is None:
            return None
        self._file.close()
        path = os.path.join(self._dir, name)
        os.replace(self._temp, path)
        self._file = self._temp = None
        return path

    def discard(self) -> None:
        """Close and delete the temporary file, if any; safe to call twice."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._temp)
            self._temp = None


_INFLATE_STEP = 64 * 1024  # most bytes one layer makes from one inflate step
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_DECODED = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}
MAX_ENCODINGS = 4
"""The most content encodings stacked on one body that are decoded."""


def _zlib_header(data: bytes) -> bool:
    """Whether ``data`` starts with a zlib header (RFC 1950: method 8, and the
    first two bytes a multiple of 31), not a bare deflate stream."""
    return (data[0] & 0x0F) == 8 and ((data[0] << 8) | data[1]) % 31 == 0


class _Undecodable(Exception):
    """A layer's bytes do not decode; carries the layer's name."""


class _Layer:
    """One content encoding being undone: gzip (any number of members) or
    deflate (zlib-wrapped, RFC 1950, or bare, RFC 1951, told apart by the
    first two bytes as browsers and curl do), inflated in steps of at most
    ``_INFLATE_STEP`` decoded bytes."""

    __slots__ = ("_head", "_obj", "_trailing", "name", "started")

    def __init__(self, name: str) -> None:
        self.name = name  # "gzip" or "deflate"
        self.started = False  # any byte received
        self._obj: Any = zlib.decompressobj(_GZIP_WBITS) if name == "gzip" else None
        self._head = b""  # deflate: the first byte, until the second comes
        self._trailing = False  # bytes after the end of the stream: ignored

    def steps(self, data: bytes) -> Iterator[bytes]:
        """The decoded bytes of ``data``, in pieces of at most one step.

        Raises:
            _Undecodable: the bytes are not this encoding.
        """
        if not data or self._trailing:
            return
        self.started = True
        try:
            obj = self._obj
            if obj is None:
                data = self._head + data
                if len(data) < 2:
                    self._head = data
                    return
                self._head = b""
                wbits = zlib.MAX_WBITS if _zlib_header(data) else -zlib.MAX_WBITS
                obj = self._obj = zlib.decompressobj(wbits)
            while True:
                if obj.eof:
                    data = obj.unused_data + data
                    if not data:
                        return
                    if self.name == "gzip" and b"\x1f\x8b".startswith(data[:2]):
                        obj = self._obj = zlib.decompressobj(_GZIP_WBITS)
                    else:
                        self._trailing = True  # as before: bytes after the end
                        return
                out = obj.decompress(data, _INFLATE_STEP)
                data = obj.unconsumed_tail
                if out:
                    yield out
                # A full step may leave decoded bytes inside zlib: ask again.
                if not data and len(out) < _INFLATE_STEP and not obj.eof:
                    return
        except zlib.error:
            raise _Undecodable(f"{self.name} body does not decode") from None

    def ended(self) -> bool:
        """Whether the stream is complete (or never began: an empty body)."""
        if not self.started:
            return True
        return self._obj is not None and bool(self._obj.eof)


def content_encodings(response: Any) -> tuple[Any, list[str]]:
    """The response to read raw bytes from, and the content encodings of
    those bytes, in the order they were applied (``Content-Encoding`` order,
    lower case, ``identity`` left out).

    treq (or ``ContentDecoderAgent``, which treq uses and the fetcher calls
    directly) wraps a gzip response in Twisted's ``GzipDecoder`` (once per
    trailing ``gzip`` of the header, which it takes off the header), and
    that decoder inflates a whole socket read at once; the layers are
    peeled off here and put back in the list, so that every layer is read
    raw and inflated in bounded steps by :func:`read_body`.
    """
    # A treq response wraps the agent's (``original``); a response straight
    # from the agent may be the decoder itself.
    inner = (
        response
        if isinstance(response, GzipDecoder)
        else getattr(response, "original", None)
    )
    wrapped = 0
    if isinstance(inner, GzipDecoder):
        while isinstance(inner, GzipDecoder):
            wrapped += 1
            inner = inner.original
        response = inner
    header = response.headers.getRawHeaders(b"content-encoding")
    if not header and not wrapped:
        return response, []
    names = []
    for value in header or ():
        for part in value.split(b","):
            name = part.strip().lower().decode("latin-1")
            if name and name != "identity":
                names.append(name)
    names.extend(["gzip"] * wrapped)
    return response, names


class _BodyReader(Protocol):
    """Receives one response body; ``done`` fires with its size or fails.

    A failure found while Twisted is delivering data (too large, undecodable)
    drops the connection at once but fails ``done`` on the next reactor turn,
    once Twisted has finished with the response, so that whatever the caller
    does next does not run inside Twisted's HTTP parser.
    """

    def __init__(
        self,
        sink: BodySink | None,
        limit: int,
        clock: Any,
        layers: Sequence[_Layer] = (),
        truncate: bool = False,
        refuse: BaseException | None = None,
    ) -> None:
        self.done: Deferred[int] = Deferred(self._cancel)
        # Refused before the first byte: stopped as soon as it has the
        # transport, whether or not the body has all come already.
        self._refuse = refuse
        self._truncate = truncate
        self.size = 0
        self._sink = sink
        self._limit = limit
        self._clock = clock
        self._stopping: Any = None  # the delayed call that fails ``done``
        self._stopped = False
        self._layers = layers  # in decoding order: the last one applied first

    def connectionMade(self) -> None:
        if self._refuse is not None:
            self.stop(self._refuse)

    def dataReceived(self, data: bytes) -> None:
        if self._stopped:
            return
        if not self._layers:
            self._take(data)
            return
        try:
            self._inflate(data, 0)
        except _Undecodable as e:
            self.stop(ContentDecodingError(str(e)))

    def _inflate(self, data: bytes, depth: int) -> None:
        """Undo layer ``depth`` and those under it, a bounded step at a time,
        so a bomb in any layer is caught at most one step past the limit."""
        layers = self._layers
        if depth == len(layers):
            self._take(data)
            return
        for piece in layers[depth].steps(data):
            self._inflate(piece, depth + 1)
            if self._stopped:
                return

    def _take(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self._limit:
            if self._truncate and self._sink is not None:
                keep = len(data) - (self.size - self._limit)
                if keep > 0:
                    self._sink.write(data[:keep])
            self.stop(BodyTooLarge(self._limit))
        elif self._sink is not None and data:
            try:
                self._sink.write(data)
            except OSError as e:
                self.stop(SaveError(f"cannot save body: {e}"))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._stopped:
            return
        if not reason.check(ResponseDone, PotentialDataLoss):  # type: ignore[no-untyped-call]
            self._stopped = True
            if any(isinstance(e, zlib.error) for e in reasons(reason)):
                self.done.errback(ContentDecodingError("body does not decode"))
            else:
                message = f"connection lost after {self.size} body bytes"
                self.done.errback(TruncatedBody(message))
            return
        # (PotentialDataLoss: no length and no chunking, so the end of the
        # connection is the end of the body, HTTP/1.0 style.)  Every layer
        # that began must have ended.
        for layer in self._layers:
            if not layer.ended():
                self._stopped = True
                self.done.errback(ContentDecodingError(f"{layer.name} body ends early"))
                return
        if not self._stopped:
            self._stopped = True
            self.done.callback(self.size)

    def stop(self, error: BaseException) -> None:
        """Drop the connection now; fail ``done`` with ``error`` next turn."""
        if self._stopped:
            return
        self._stopped = True
        if self.transport is not None:
            self.transport.stopProducing()  # closes the connection
        self._stopping = self._clock.callLater(0, self._fail, error)

    def time_out(self, seconds: float) -> None:
        """The body's deadline passed: stop with ``BodyTimeout``."""
        self.stop(BodyTimeout(seconds))

    def _fail(self, error: BaseException) -> None:
        self._stopping = None
        if not self.done.called:
            self.done.errback(error)

    def _cancel(self, d: Deferred[int]) -> None:
        # Deferred.cancel() fails ``done`` with CancelledError after this.
        if self._stopping is not None:
            self._stopping.cancel()
            self._stopping = None
        elif not self._stopped:
            self._stopped = True
            if self.transport is not None:
                self.transport.stopProducing()


def read_body(
    response: Any,
    sink: BodySink | None,
    limit: int,
    timeout: float,
    clock: Any,
    *,
    decode: bool = True,
    truncate: bool = False,
) -> Deferred[int]:
    """Stream ``response``'s body into ``sink``.

    Every content encoding of the body (gzip or x-gzip, deflate in either
    form, stacked in any order, at most :data:`MAX_ENCODINGS` of them) is
    undone layer by layer, each inflated in bounded steps, and the decoded
    bytes are counted against ``limit`` as they come: a bomb stops one step
    past the limit, in any layer, and memory stays bounded.  Any other
    encoding (br, zstd, compress, ...) fails at once with
    ``UnsupportedEncoding`` and the body is not read.

    Args:
        response: an ``IResponse`` (a treq response is one).
        sink: where the (decoded) bytes go, or None to discard them.
        limit: most decoded bytes allowed; a larger Content-Length of a body
            that is not encoded fails at once.
        timeout: seconds for the whole body.
        clock: an ``IReactorTime`` for the deadline.
        decode: False to take the bytes as sent, encoded or not (to drain a
            body that is thrown away: nothing is inflated).
        truncate: a body past ``limit`` still fails with ``BodyTooLarge``,
            but ``sink`` has had its first ``limit`` bytes (for a file read
            only up to a size, as robots.txt is).

    Returns:
        A Deferred that fires with the body's decoded size, or fails with
        ``BodyTooLarge``, ``BodyTimeout``, ``TruncatedBody``,
        ``ContentDecodingError`` (``UnsupportedEncoding``) or ``SaveError``;
        cancelling it drops the connection.
    """
    raw, names = content_encodings(response)
    refused: BaseException | None = None
    layers: list[_Layer] = []
    if names and decode:
        if len(names) > MAX_ENCODINGS:
            refused = UnsupportedEncoding(
                ", ".join(names),
                f"{len(names)} content encodings (at most {MAX_ENCODINGS} are decoded)",
            )
        for name in reversed(names):
            kind = _DECODED.get(name)
            if kind is None:
                refused = UnsupportedEncoding(name)
                break
            layers.append(_Layer(kind))
    length = raw.length
    if (
        refused is None
        and not (layers or truncate)
        and length is not UNKNOWN_LENGTH
        and length > limit
    ):
        refused = BodyTooLarge(limit, declared=length)
    reader = _BodyReader(sink, limit, clock, layers, truncate, refused)
    raw.deliverBody(reader)
    if reader.done.called or refused is not None:
        return reader.done
    timer = clock.callLater(timeout, reader.time_out, timeout)

    def stop_timer(result: object) -> object:
        if timer.active():
            timer.cancel()
        return result

    reader.done.addBoth(stop_timer)
    return reader.done


def drop_body(response: Any, clock: Any) -> Deferred[None]:
    """Refuse ``response``'s body unread: the connection is closed.

    Returns:
        A Deferred that fires (with None) on the next reactor turn, once
        Twisted is done with the response.
    """
    reader = _BodyReader(None, 0, clock, refuse=BodyTooLarge(0))
    response.deliverBody(reader)
    dropped: Deferred[None] = reader.done.addCallbacks(lambda _: None, lambda _: None)
    return dropped
