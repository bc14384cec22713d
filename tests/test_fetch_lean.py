"""What only the lean HTTP/1.1 path (``http: lean``) has to get right on
its own: the request it writes, the responses its parser refuses, and when
a connection may be reused.  (Every fault test of the fetcher runs over both
paths too: the ``Lean*`` copies in ``test_fetch_faults.py`` and its
neighbours.)"""

from __future__ import annotations

import gzip
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from fetchq.fetch import (
    ConnectionFailed,
    FetchConfig,
    Fetcher,
    HeadersTimeout,
    TruncatedBody,
)
from fetchq.http.lean import MAX_HEADER_BYTES
from fetchq.recipe import RecipeError, load_recipe
from tests.fetch_server import FaultServer, body_for
from tests.test_fetch_faults import sha

LEAN = FetchConfig(connect_timeout=2, headers_timeout=5, body_timeout=5, http="lean")


class LeanTestCase(TestCase):
    def setUp(self) -> None:
        self.server = FaultServer(reactor).start()
        self.addCleanup(self.server.close)

    def fetcher(self, config: FetchConfig = LEAN) -> Fetcher:
        fetcher = Fetcher(config, reactor, 4, environ={})
        self.addCleanup(fetcher.close)
        return fetcher

    def raw(self, name: str, data: bytes, close: bool = False) -> str:
        """The URL of ``/raw`` answering ``data``."""
        self.server.raw[name] = data
        return self.server.url(f"/raw?name={name}" + ("&close=1" if close else ""))

    async def outcome(self, url: str) -> BaseException:
        try:
            result = await self.fetcher().fetch(url)
        except BaseException as e:
            return e
        raise self.failureException(f"{url} succeeded: {result!r}")

    async def settle(self) -> None:
        for _ in range(10):
            await deferLater(reactor, 0.01, lambda: None)


class RequestTests(LeanTestCase):
    async def test_the_same_request_as_the_agent(self) -> None:
        """The server sees the same method, target and headers from both
        paths (Host, User-Agent, the configured headers, Accept-Encoding:
        gzip), names compared as HTTP compares them."""
        seen = []
        for http in ("treq", "lean"):
            config = FetchConfig(headers={"X-Team": "a b", "Accept": "*/*"}, http=http)
            await self.fetcher(config).fetch(self.server.url("/echo?q=1&r=%20"))
            method, target, headers, body = self.server.requests[-1]
            headers.pop("connection", None)  # Twisted says nothing either
            seen.append((method, target, headers, body))
        self.assertEqual(seen[0], seen[1])
        self.assertEqual(seen[1][2]["accept-encoding"], "gzip")
        self.assertEqual(seen[1][2]["host"], f"127.0.0.1:{self.server.port_number}")

    async def test_a_configured_host_header_is_the_only_one(self) -> None:
        """A ``Host`` in the fetcher's headers (a virtual host reached by
        address) is sent alone on both paths, not beside one of ours."""
        for http in ("treq", "lean"):
            config = FetchConfig(headers={"Host": "example.test"}, http=http)
            await self.fetcher(config).fetch(self.server.url("/echo"))
            head = self.server.requests[-1][2]
            self.assertEqual(head["host"], "example.test", http)
        # (The server keeps one value per name: the raw request says more.)
        raw = self.server.raw_heads[-2:]
        for data in raw:
            self.assertEqual(data.lower().count(b"\r\nhost:"), 1, data)

    async def test_other_methods_and_bodies_take_the_agent(self) -> None:
        """HEAD and a POST with a body go through treq's Agent (its pool),
        GETs through the lean one."""
        fetcher = self.fetcher()
        await fetcher.fetch(self.server.url("/ok?size=3"))
        head = Fetcher(FetchConfig(method="HEAD", http="lean"), reactor, 2)
        self.addCleanup(head.close)
        result = await head.fetch(self.server.url("/ok?size=3"))
        self.assertEqual((result.status, result.bytes), (200, 0))
        post = Fetcher(FetchConfig(method="POST", body=b"x=1", http="lean"), reactor)
        self.addCleanup(post.close)
        await post.fetch(self.server.url("/echo"))
        self.assertEqual([r[0] for r in self.server.requests], ["GET", "HEAD", "POST"])
        self.assertEqual(self.server.requests[-1][3], b"x=1")
        self.assertEqual(fetcher.pool.idle, 1)
        self.assertEqual(post.pool.idle, 0)  # the lean pool: POST did not use it


class QuietTests(LeanTestCase):
    async def test_connections_log_nothing(self) -> None:
        """Making and closing connections logs nothing (a Twisted factory
        says "Starting factory" for each unless told not to: a line per
        connection in a run's log)."""
        from twisted.logger import globalLogPublisher

        seen: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        fetcher = self.fetcher()
        self.server.raw["close"] = (
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx"
        )
        for _ in range(3):
            await fetcher.fetch(self.server.url("/raw?name=close"))
        await fetcher.close()
        await self.settle()
        factories = [e for e in seen if "factory" in str(e.get("log_format", ""))]
        self.assertEqual(factories, [])


class RefusedResponseTests(LeanTestCase):
    async def test_endless_headers_are_cut_at_the_cap(self) -> None:
        """A server that sends header after header (and never ends them)
        fails the request as soon as they pass MAX_HEADER_BYTES, long
        before the headers timeout, and the connection is dropped."""
        lines = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"v" * 100) for i in range(2000))
        url = self.raw("endless", b"HTTP/1.1 200 OK\r\n" + lines)
        error = await self.outcome(url)
        self.assertIs(type(error), ConnectionFailed)
        self.assertIn(f"response headers over {MAX_HEADER_BYTES} bytes", str(error))
        await self.settle()
        self.assertEqual(len(self.server.connections), 0)

    async def test_one_endless_header_line(self) -> None:
        """One header line that never ends (2 MB and counting): the parser
        would keep it whole in memory until its end, so the bytes before the
        end of the headers are capped too: refused at the cap, not at the
        headers timeout, and not held."""
        url = self.raw("line", b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 2_000_000)
        error = await self.outcome(url)
        self.assertIs(type(error), ConnectionFailed)
        self.assertIn(f"response headers over {MAX_HEADER_BYTES} bytes", str(error))

    async def test_endless_trailer_or_chunk_line(self) -> None:
        """Past the headers, bytes that are not body (a trailer that never
        ends, a chunk extension of megabytes) are capped as the headers
        are: the fetch fails at once (a truncated body, retried), not at
        the body timeout."""
        shapes = {
            "trailer": b"0\r\nX-T: " + b"a" * 2_000_000,
            "extension": b"5;" + b"e" * 2_000_000,
        }
        for name, tail in shapes.items():
            head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            url = self.raw(name, head + b"5\r\nhello\r\n" + tail)
            error = await self.outcome(url)
            self.assertIs(type(error), TruncatedBody, name)

    async def test_not_http(self) -> None:
        """Bytes that are not an HTTP response: ConnectionFailed naming the
        parser's complaint."""
        error = await self.outcome(self.raw("ssh", b"SSH-2.0-OpenSSH_9.6\r\n"))
        self.assertIs(type(error), ConnectionFailed)
        self.assertIn("BadResponse", str(error))

    async def test_upgrade_refused(self) -> None:
        """101 Switching Protocols is not an answer to a GET."""
        response = (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\n"
        )
        error = await self.outcome(self.raw("upgrade", response))
        self.assertIn("switched protocols", str(error))

    async def test_smuggling_shapes_refused(self) -> None:
        """Content-Length with Transfer-Encoding, two different
        Content-Lengths, a bare LF inside a header: refused, not guessed."""
        shapes = {
            "both": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            "two": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
            b"Content-Length: 4\r\n\r\nabcd",
            "lf": b"HTTP/1.1 200 OK\r\nX-A: 1\nX-B: 2\r\nContent-Length: 1\r\n\r\na",
        }
        for name, data in shapes.items():
            error = await self.outcome(self.raw(name, data))
            self.assertIs(type(error), ConnectionFailed, name)
            self.assertIn("BadResponse", str(error), name)

    async def test_silent_server_still_times_out(self) -> None:
        """Half a status line, then nothing: the headers timeout applies."""
        config = FetchConfig(headers_timeout=0.3, http="lean")
        url = self.raw("half", b"HTTP/1.1 20")
        with self.assertRaises(HeadersTimeout):
            await self.fetcher(config).fetch(url)


class ResponseShapeTests(LeanTestCase):
    async def test_informational_responses_are_skipped(self) -> None:
        """100 Continue and 103 Early Hints before the answer are passed
        over; the connection is reused after."""
        data = (
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: a/b\r\n\r\nhello"
        )
        fetcher = self.fetcher()
        result = await fetcher.fetch(self.raw("hints", data))
        self.assertEqual((result.status, result.bytes), (200, 5))
        self.assertEqual(result.content_type, "a/b")
        await fetcher.fetch(self.server.url("/ok?size=3"))
        self.assertEqual(self.server.accepted, 1)

    async def test_close_and_http10_are_not_reused(self) -> None:
        """``Connection: close`` and an HTTP/1.0 answer without keep-alive:
        the body is read whole and the client closes the connection (the
        server here does not)."""
        answers = {
            "close": b"HTTP/1.1 200 OK\r\nConnection: close\r\n"
            b"Content-Length: 2\r\n\r\nok",
            "old": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
        }
        fetcher = self.fetcher()
        for name, data in answers.items():
            result = await fetcher.fetch(self.raw(name, data))
            self.assertEqual(result.bytes, 2, name)
            await self.settle()
            self.assertEqual(len(self.server.connections), 0, name)
            self.assertEqual(fetcher.pool.idle, 0, name)

    async def test_two_answers_to_one_request(self) -> None:
        """A second response behind the first (response splitting, or a
        confused server): the first is the answer and the connection is not
        reused, so the second can never be taken for the next request's."""
        data = (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo"
        )
        fetcher = self.fetcher()
        result = await fetcher.fetch(self.raw("two", data))
        self.assertEqual(result.sha256, sha(b"one"))
        after = await fetcher.fetch(self.server.url("/ok?size=9"))
        self.assertEqual(after.sha256, sha(body_for(9)))
        self.assertEqual(self.server.accepted, 2)

    async def test_talking_out_of_turn_closes_the_idle_connection(self) -> None:
        """Bytes on an idle pooled connection: it is closed, not reused."""
        fetcher = self.fetcher()
        await fetcher.fetch(self.server.url("/ok?size=3"))
        (connection,) = self.server.connections
        connection.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
        await self.settle()
        self.assertEqual(len(self.server.connections), 0)
        result = await fetcher.fetch(self.server.url("/ok?size=5"))
        self.assertEqual(result.sha256, sha(body_for(5)))
        self.assertEqual(self.server.accepted, 2)

    async def test_reused_connection_closed_by_the_server_is_retried(self) -> None:
        """The server closes a kept-alive connection as the next request
        arrives (its idle timeout): the GET is sent again, once, on a new
        connection, and succeeds."""
        fetcher = self.fetcher()
        await fetcher.fetch(self.server.url("/ok?size=3"))
        self.server.drop_reused = True
        result = await fetcher.fetch(self.server.url("/ok?size=4"))
        self.assertEqual(result.sha256, sha(body_for(4)))
        self.assertEqual(self.server.accepted, 2)

    async def test_closed_while_idle(self) -> None:
        """A pooled connection the server closed while idle is skipped."""
        fetcher = self.fetcher()
        await fetcher.fetch(self.server.url("/ok?size=3"))
        for connection in list(self.server.connections):
            assert connection.transport is not None
            connection.transport.loseConnection()
        await self.settle()
        result = await fetcher.fetch(self.server.url("/ok?size=6"))
        self.assertEqual(result.bytes, 6)
        self.assertEqual(self.server.accepted, 2)

    async def test_body_delivered_after_it_has_all_come(self) -> None:
        """A response read whole before its reader asks is given whole (the
        end after the bytes), many times over one connection."""
        fetcher = self.fetcher()
        sizes: list[Any] = []
        for size in (0, 1, 1000, 70_000):
            result = await fetcher.fetch(self.server.url(f"/ok?size={size}"))
            sizes.append((result.bytes, result.sha256 == sha(body_for(size))))
        self.assertEqual(sizes, [(0, True), (1, True), (1000, True), (70_000, True)])
        self.assertEqual(self.server.accepted, 1)


class _Dribble(Protocol):
    """Answers each request with the next of ``answers``, written in pieces
    of 1 to 7 bytes, one piece per reactor turn."""

    def __init__(self, answers: list[bytes], rng: random.Random) -> None:
        self.answers = answers
        self.rng = rng
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            _, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            self.write_slowly(self.answers.pop(0))

    def write_slowly(self, data: bytes) -> None:
        if data and self.transport is not None:
            size = self.rng.randint(1, 7)
            self.transport.write(data[:size])
            reactor.callLater(0, self.write_slowly, data[size:])


class PiecesTests(TestCase):
    async def test_answers_in_small_pieces(self) -> None:
        """Status line, headers, chunk sizes, chunk ends and a gzip body all
        cut at random places, a few bytes per read, over one kept-alive
        connection: every answer whole and exact, the connection reused."""
        body = body_for(3000)
        packed = gzip.compress(body)
        chunked = b"".join(
            b"%x;ext=1\r\n%s\r\n" % (len(part), part)
            for part in (body[:1000], body[1000:1001], body[1001:])
        )
        answers = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\nX-A: 1\r\n\r\n" + body,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunked
            + b"0\r\nX-Trailer: t\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"
            b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
            % len(packed)
            + packed,
        ]
        connections: list[_Dribble] = []

        def build() -> _Dribble:
            connections.append(_Dribble(answers, random.Random(7)))
            return connections[-1]

        port = reactor.listenTCP(0, Factory.forProtocol(build), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        fetcher = Fetcher(LEAN, reactor, 2, environ={})
        self.addCleanup(fetcher.close)
        base = f"http://127.0.0.1:{port.getHost().port}"
        for n in range(3):
            result = await fetcher.fetch(f"{base}/{n}")
            self.assertEqual((result.status, result.sha256), (200, sha(body)), n)
        self.assertEqual(len(connections), 1)
        self.assertEqual(answers, [])


class WithoutHttptoolsTests(TestCase):
    def test_refused_by_name_without_the_parser(self) -> None:
        """Without httptools, ``http: lean`` is refused where it is set: the
        fetcher's configuration names the extra to install, and a recipe's
        check points at ``fetch.http`` before anything runs."""
        with mock.patch("fetchq.fetch.config.lean_available", return_value=False):
            with self.assertRaises(ValueError) as caught:
                FetchConfig(http="lean")
            self.assertIn("pip install 'fetchq[lean]'", str(caught.exception))
            folder = Path(tempfile.mkdtemp())
            self.addCleanup(shutil.rmtree, folder, True)
            (folder / "urls.txt").write_text("http://example.com/\n")
            recipe = folder / "r.yaml"
            recipe.write_text("kind: fetch\ninput: urls.txt\nfetch:\n  http: lean\n")
            with self.assertRaises(RecipeError) as refused:
                load_recipe(recipe, environ={})
            message = str(refused.exception)
            self.assertIn("fetch.http: lean needs the httptools package", message)
            self.assertIn("r.yaml:4", message)
