"""Content encodings over real loopback sockets: every layer of a body is
inflated in bounded steps and counted against ``max_body``, any stack of
gzip and deflate decodes to the right bytes, and an encoding fetchq cannot
decode is a named error instead of an ``ok`` record of undecoded bytes."""

from __future__ import annotations

import gc
import gzip
import hashlib
import shutil
import tempfile
import tracemalloc
import zlib
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import GzipDecoder
from twisted.web.http_headers import Headers

from fetchq.fetch import (
    BodyTooLarge,
    ContentDecodingError,
    FetchConfig,
    Fetcher,
    FetchResult,
    HTTPStatusError,
    UnsupportedEncoding,
)
from fetchq.http.body import content_encodings
from tests.fetch_server import FaultServer, body_for, encode, lean_variants

MAX_BODY = 1_000_000

CONFIG = FetchConfig(
    connect_timeout=5,
    headers_timeout=5,
    body_timeout=30,
    max_body=MAX_BODY,
)

_BOMB: list[bytes] = []


def double_gzip_bomb() -> bytes:
    """200 MB of zeros gzipped twice: under 600 bytes on the wire (made once,
    in 1 MiB steps, so building it holds no 200 MB buffer either)."""
    if not _BOMB:
        packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        zeros = bytes(1 << 20)
        once = b"".join(packer.compress(zeros) for _ in range(200)) + packer.flush()
        _BOMB.append(gzip.compress(once, mtime=0))
    return _BOMB[0]


def sha(data: bytes) -> str:
    """The hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


class EncodingTestCase(TestCase):
    """Starts a :class:`FaultServer`; closes it and the fetchers after."""

    http = "treq"  # "lean" in the Lean copies

    def setUp(self) -> None:
        self.server = FaultServer(reactor).start()
        self.addCleanup(self.server.close)

    def fetcher(self, **changes: Any) -> Fetcher:
        """A Fetcher of CONFIG with ``changes``, closed after the test."""
        changes.setdefault("http", self.http)
        fetcher = Fetcher(attrs.evolve(CONFIG, **changes), reactor, pool_size=2)
        self.addCleanup(fetcher.close)
        return fetcher

    async def fetch(self, path: str, **changes: Any) -> FetchResult:
        """Fetch ``path`` of the server with a fresh fetcher."""
        return await self.fetcher(**changes).fetch(self.server.url(path))

    async def outcome(self, path: str, **changes: Any) -> BaseException:
        """The exception fetching ``path`` ends with (failing if it succeeds)."""
        try:
            result = await self.fetch(path, **changes)
        except BaseException as e:
            return e
        raise self.failureException(f"{path} succeeded: {result!r}")


class BombTests(EncodingTestCase):
    """A body that inflates past the cap stops at the cap, whatever its
    layers, and never holds more than a few steps of it in memory."""

    async def test_double_gzip_bomb_stops_at_max_body_in_bounded_memory(self) -> None:
        """``Content-Encoding: gzip, gzip`` with 200 MB of zeros (under 600
        bytes sent) fails with BodyTooLarge, and the Python heap's peak while
        fetching it (tracemalloc, zlib's own buffers included: CPython
        allocates them through PyMem) stays under max_body + 4 MB.  Inflating
        the inner layer whole, as Twisted's GzipDecoder does, peaks at
        hundreds of MB."""
        bomb = double_gzip_bomb()
        self.assertLess(len(bomb), 600)
        self.server.canned["bomb"] = (200, bomb, {"Content-Encoding": "gzip, gzip"})
        fetcher = self.fetcher()
        url = self.server.url("/canned?name=bomb")
        gc.collect()
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        try:
            await fetcher.fetch(url)
        except BodyTooLarge:
            pass
        else:
            self.fail("a 200 MB body was accepted under max_body=1MB")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        grown = peak - start
        self.assertLess(grown, MAX_BODY + 4 * 1024 * 1024, f"peak grew {grown:,d} B")

    async def test_every_layer_counts_decoded_bytes(self) -> None:
        """Bombs in each single encoding and in stacks (deflate, raw deflate,
        x-gzip, deflate under gzip) all end in BodyTooLarge."""
        for enc in ("deflate", "deflate-raw", "x-gzip", "deflate,gzip"):
            error = await self.outcome(f"/encoded?enc={enc}&size=5000000&zeros=1")
            self.assertIs(type(error), BodyTooLarge, enc)

    async def test_at_the_cap_is_accepted(self) -> None:
        """A double-gzip body of exactly max_body decoded bytes is a result:
        the cap is on decoded bytes, not one step short of them."""
        result = await self.fetch(f"/encoded?enc=gzip,gzip&size={MAX_BODY}")
        self.assertEqual(result.bytes, MAX_BODY)
        self.assertEqual(result.sha256, sha(body_for(MAX_BODY)))


class StackTests(EncodingTestCase):
    """Every stack of gzip and deflate decodes to the original bytes."""

    async def test_double_gzip_decodes(self) -> None:
        """``gzip, gzip`` gives the original body's size and SHA-256."""
        result = await self.fetch("/encoded?enc=gzip,gzip&size=300000")
        self.assertEqual(result.bytes, 300000)
        self.assertEqual(result.sha256, sha(body_for(300000)))

    async def test_deflate_both_forms(self) -> None:
        """``deflate`` is decoded whether the server sends the zlib-wrapped
        stream (RFC 1950, as the RFC says) or a bare RFC 1951 one (as some
        servers do, and browsers and curl accept)."""
        for enc in ("deflate", "deflate-raw"):
            result = await self.fetch(f"/encoded?enc={enc}&size=70000")
            self.assertEqual(result.bytes, 70000, enc)
            self.assertEqual(result.sha256, sha(body_for(70000)), enc)

    async def test_mixed_stacks(self) -> None:
        """x-gzip, and stacks of three mixed layers, decode; ``identity``
        between them changes nothing."""
        for enc in ("x-gzip", "deflate-raw,gzip", "gzip,identity,deflate,x-gzip"):
            result = await self.fetch(f"/encoded?enc={enc}&size=123457")
            self.assertEqual(result.sha256, sha(body_for(123457)), enc)

    async def test_saved_body_is_decoded(self) -> None:
        """The saved file holds the decoded bytes of a stacked body."""
        directory = tempfile.mkdtemp(prefix="fetchq-test-")
        self.addCleanup(shutil.rmtree, directory, True)
        result = await self.fetch(
            "/encoded?enc=deflate,gzip&size=5000", save_dir=directory
        )
        assert result.body_path is not None
        with open(result.body_path, "rb") as f:
            self.assertEqual(f.read(), body_for(5000))

    async def test_concatenated_gzip_members(self) -> None:
        """A gzip body of two members (RFC 1952 allows several) is decoded
        whole, not cut after the first."""
        plain = body_for(9000)
        packed = gzip.compress(plain[:4000]) + gzip.compress(plain[4000:])
        self.server.canned["two"] = (200, packed, {"Content-Encoding": "gzip"})
        result = await self.fetch("/canned?name=two")
        self.assertEqual((result.bytes, result.sha256), (9000, sha(plain)))

    async def test_empty_encoded_bodies(self) -> None:
        """A HEAD answer announcing gzip, and a 200 with an empty body
        labelled gzip, are empty results, not decoding errors."""
        head = await self.fetch("/encoded?enc=gzip,deflate&size=100", method="HEAD")
        self.assertEqual((head.status, head.bytes), (200, 0))
        self.server.canned["empty"] = (200, b"", {"Content-Encoding": "gzip"})
        empty = await self.fetch("/canned?name=empty")
        self.assertEqual(empty.bytes, 0)


class RefusedTests(EncodingTestCase):
    """What fetchq cannot decode ends in a named error, never in ``ok``."""

    async def test_unknown_encoding_named(self) -> None:
        """``br``, ``zstd`` and ``compress`` (alone or under gzip) fail with
        UnsupportedEncoding naming the encoding, a ContentDecodingError."""
        for label in ("br", "zstd", "gzip, br", "compress"):
            packed, _ = encode(body_for(1000), "gzip")
            self.server.canned[label] = (200, packed, {"Content-Encoding": label})
            error = await self.outcome(f"/canned?name={label}")
            self.assertIs(type(error), UnsupportedEncoding, label)
            self.assertIsInstance(error, ContentDecodingError)
            self.assertIn(repr(label.rpartition(" ")[2]), str(error))

    async def test_too_many_layers(self) -> None:
        """More than four layers are refused by name, before any inflating."""
        error = await self.outcome("/encoded?enc=gzip,gzip,gzip,gzip,gzip&size=10")
        self.assertIs(type(error), UnsupportedEncoding)
        self.assertIn("5 content encodings", str(error))

    async def test_corrupt_inner_layer(self) -> None:
        """A good outer gzip around a broken inner one, and a double-gzip
        body cut short, are ContentDecodingErrors."""
        inner = b"not gzip at all" * 20
        self.server.canned["bad"] = (
            200,
            gzip.compress(inner),
            {"Content-Encoding": "gzip, gzip"},
        )
        error = await self.outcome("/canned?name=bad")
        self.assertIs(type(error), ContentDecodingError)
        packed, header = encode(body_for(50000), "gzip,gzip")
        self.server.canned["cut"] = (200, packed[:-30], {"Content-Encoding": header})
        error = await self.outcome("/canned?name=cut")
        self.assertIs(type(error), ContentDecodingError)

    async def test_refused_status_body_not_decoded(self) -> None:
        """A 404 whose body is in an unknown encoding is still HTTP 404: a
        body that is only drained is never decoded."""
        self.server.canned["gone"] = (404, b"\x00" * 50, {"Content-Encoding": "br"})
        error = await self.outcome("/canned?name=gone")
        self.assertIs(type(error), HTTPStatusError)


class LayerTests(SynchronousTestCase):
    """``content_encodings`` finds the raw response under each wrapping."""

    def test_each_wrapping(self) -> None:
        """The agent's own ``GzipDecoder`` (the fetcher's bodyless path), the
        same inside a treq-style wrapper (``original``) and a bare response
        all give the raw response and the layers, gzip last."""

        @attrs.define
        class Raw:
            headers: Headers
            length: Any = None

        @attrs.define
        class Wrapper:
            original: Any

        raw = Raw(Headers({b"content-encoding": [b"deflate"]}))
        decoder = GzipDecoder(raw)  # type: ignore[no-untyped-call]
        self.assertEqual(content_encodings(decoder), (raw, ["deflate", "gzip"]))
        self.assertEqual(
            content_encodings(Wrapper(decoder)), (raw, ["deflate", "gzip"])
        )
        self.assertEqual(content_encodings(raw), (raw, ["deflate"]))
        plain = Raw(Headers())
        self.assertEqual(content_encodings(plain), (plain, []))


lean_variants(globals(), BombTests, StackTests, RefusedTests)
