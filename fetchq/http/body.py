"""Streaming a response body: counted, hashed, size-capped, optionally saved.

A body is never held whole in memory.  :func:`read_body` delivers it to a
protocol that counts each (decoded) chunk against ``max_body``, feeds it to a
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
from collections.abc import Iterator
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
)

__all__ = ["BodySink", "drop_body", "read_body", "reasons"]


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


_INFLATE_STEP = 64 * 1024  # most decoded bytes made from one gzip step


class _BodyReader(Protocol):
    """Receives one response body; ``done`` fires with its size or fails.

    A failure found while Twisted is delivering data (too large, undecodable)
    drops the connection at once but fails ``done`` on the next reactor turn,
    once Twisted has finished with the response, so that whatever the caller
    does next does not run inside Twisted's HTTP parser.
    """

    def __init__(
        self, sink: BodySink | None, limit: int, clock: Any, gzipped: bool = False
    ) -> None:
        self.done: Deferred[int] = Deferred(self._cancel)
        self.size = 0
        self._sink = sink
        self._limit = limit
        self._clock = clock
        self._stopping: Any = None  # the delayed call that fails ``done``
        self._stopped = False
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
        self._compressed = 0

    def dataReceived(self, data: bytes) -> None:
        if self._stopped:
            return
        inflater = self._inflater
        if inflater is None:
            self._take(data)
            return
        self._compressed += len(data)
        try:
            # Inflate in bounded steps, so a gzip bomb is caught after at most
            # one step past the limit, never inflated whole.
            while data and not self._stopped and not inflater.eof:
                self._take(inflater.decompress(data, _INFLATE_STEP))
                data = inflater.unconsumed_tail
        except zlib.error:
            self.stop(ContentDecodingError("gzip body does not decode"))

    def _take(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self._limit:
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
                self.done.errback(ContentDecodingError("gzip body does not decode"))
            else:
                message = f"connection lost after {self.size} body bytes"
                self.done.errback(TruncatedBody(message))
            return
        # PotentialDataLoss: no length and no chunking, so the end of the
        # connection is the end of the body (HTTP/1.0 style).
        inflater = self._inflater
        if inflater is not None and self._compressed:
            # A flush error shows as a stream that did not end, just below.
            with contextlib.suppress(zlib.error):
                self._take(inflater.flush())
            if not self._stopped and not inflater.eof:
                self._stopped = True
                self.done.errback(ContentDecodingError("gzip body ends early"))
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


def _unwrap(response: Any) -> tuple[Any, bool]:
    """The response to read from, and whether to gunzip its body.

    treq wraps a gzip response in Twisted's ``GzipDecoder``, which inflates a
    whole socket read at once and loses decoding errors; a single gzip layer
    is read from the raw response and inflated here instead, in steps.
    """
    inner = getattr(response, "original", None)
    if isinstance(inner, GzipDecoder) and not isinstance(inner.original, GzipDecoder):
        return inner.original, True
    return response, False


def read_body(
    response: Any,
    sink: BodySink | None,
    limit: int,
    timeout: float,
    clock: Any,
) -> Deferred[int]:
    """Stream ``response``'s body into ``sink``.

    Args:
        response: an ``IResponse`` (a treq response is one).
        sink: where the (decoded) bytes go, or None to discard them.
        limit: most decoded bytes allowed; a larger Content-Length of a body
            that is not encoded fails at once.
        timeout: seconds for the whole body.
        clock: an ``IReactorTime`` for the deadline.

    Returns:
        A Deferred that fires with the body's decoded size, or fails with
        ``BodyTooLarge``, ``BodyTimeout``, ``TruncatedBody``,
        ``ContentDecodingError`` or ``SaveError``; cancelling it drops the
        connection.
    """
    raw, gzipped = _unwrap(response)
    reader = _BodyReader(sink, limit, clock, gzipped)
    raw.deliverBody(reader)
    length = raw.length
    if not gzipped and length is not UNKNOWN_LENGTH and length > limit:
        reader.stop(BodyTooLarge(limit, declared=length))
        return reader.done
    if reader.done.called:
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
    reader = _BodyReader(None, 0, clock)
    response.deliverBody(reader)
    reader.stop(BodyTooLarge(0))
    dropped: Deferred[None] = reader.done.addCallbacks(lambda _: None, lambda _: None)
    return dropped
