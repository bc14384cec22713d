"""Requests on URIs the fetcher has checked already, without parsing them
again: an origin cache shared by both HTTP paths, and
:class:`DirectAgent`, twisted.web's ``Agent`` for such URIs.

The fetcher hands each path a URI in its wire form (absolute, ASCII,
percent-encoded, checked by :mod:`fetchq.http.urls`).  Twisted's
``Agent.request`` would validate and ``urlparse`` it again on every
request, and treq's ``ContentDecoderAgent`` would copy the headers to add
``Accept-Encoding``: the fetcher alone took 319 µs of CPU per request
before this module and 219-232 µs after it
(``tests/bench/bench_main_job_parts.py --http treq``).  Here the origin
(``scheme://host:port``) is parsed once and kept with its pool key,
endpoint and ``Host`` value; the rest of the URI is only split.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.web.client import URI, Agent
from twisted.web.http_headers import Headers

__all__ = ["DirectAgent", "Origin", "Origins", "split_uri"]

_ORIGINS = 1024  # origins whose endpoint and Host value are kept
_HEADER_SETS = 64  # header sets whose Headers object is kept, per origin


def split_uri(uri: bytes) -> tuple[bytes, bytes]:
    """``uri`` (absolute, in URI form) as its origin
    (``b"http://host:port"``) and its origin-form target (path and query,
    ``/`` for an empty path, the fragment left off)."""
    start = uri.find(b"://") + 3
    end = len(uri)
    for stop in (b"/", b"?", b"#"):
        at = uri.find(stop, start, end)
        if at >= 0:
            end = at
    path = uri[end:].partition(b"#")[0]
    if not path or path[:1] == b"?":
        path = b"/" + path
    return uri[:end], path


class Origin:
    """One origin, parsed once: its pool key, endpoint and ``Host``
    value (the port only when not the scheme's default)."""

    __slots__ = (
        "endpoint",
        "headers",
        "host",
        "host_value",
        "key",
        "netloc",
        "port",
        "scheme",
    )

    def __init__(self, parsed: Any, endpoint: Any) -> None:
        self.scheme: bytes = parsed.scheme
        self.netloc: bytes = parsed.netloc
        self.host: bytes = parsed.host
        self.port: int = parsed.port
        self.key = (parsed.scheme, parsed.host, parsed.port)
        self.endpoint = endpoint
        host = parsed.host
        if b":" in host:
            host = b"[" + host + b"]"
        if (parsed.scheme, parsed.port) not in ((b"http", 80), (b"https", 443)):
            host = b"%b:%d" % (host, parsed.port)
        self.host_value: bytes = host
        # header set -> the request's Headers (Host and Accept-Encoding in)
        self.headers: dict[tuple[tuple[str, str], ...], Headers] = {}


class Origins:
    """The origins seen lately (at most :data:`_ORIGINS`, the least
    recently used dropped first), each parsed once.

    Args:
        endpoints: an ``IAgentEndpointFactory`` (``endpointForURI``).
    """

    def __init__(self, endpoints: Any) -> None:
        self._endpoints = endpoints
        self._known: OrderedDict[bytes, Origin] = OrderedDict()

    def __getitem__(self, origin: bytes) -> Origin:
        known = self._known.get(origin)
        if known is not None:
            self._known.move_to_end(origin)
        else:
            parsed = URI.fromBytes(origin)  # type: ignore[no-untyped-call]
            known = self._known[origin] = Origin(
                parsed, self._endpoints.endpointForURI(parsed)
            )
            if len(self._known) > _ORIGINS:
                self._known.popitem(last=False)
        return known


class DirectAgent(Agent):
    """twisted.web's ``Agent`` (its pool, protocol, parser and failures)
    with :meth:`send` for a URI that is checked already.

    Make it with :meth:`with_endpoints`; ``request`` works as the Agent's
    does.
    """

    _origins: Origins

    @classmethod
    def with_endpoints(cls, reactor: Any, endpoints: Any, pool: Any) -> DirectAgent:
        """An agent connecting through ``endpoints`` (an
        ``IAgentEndpointFactory``), keeping connections in ``pool``."""
        agent: DirectAgent = cls.usingEndpointFactory(  # type: ignore[no-untyped-call]
            reactor, endpoints, pool=pool
        )
        agent._origins = Origins(endpoints)
        return agent

    def send(
        self, method: bytes, uri: bytes, headers: tuple[tuple[str, str], ...]
    ) -> Deferred[Any]:
        """``method`` on ``uri`` (absolute, in URI form, checked by the
        caller) with ``headers`` (checked for line breaks by the caller),
        no body.  ``Accept-Encoding: gzip`` is added as treq's
        ``ContentDecoderAgent`` adds it (the response is not wrapped: the
        body reader decodes it), and ``Host`` unless ``headers`` has one.

        Returns:
            A Deferred firing with the response, as ``Agent.request``'s.
        """
        origin_text, target = split_uri(uri)
        origin = self._origins[origin_text]
        raw = origin.headers.get(headers)
        if raw is None:
            raw = _request_headers(headers, origin.host_value)
            if len(origin.headers) < _HEADER_SETS:
                origin.headers[headers] = raw
        path, _, query = target.partition(b"?")
        parsed = URI(  # type: ignore[no-untyped-call]
            origin.scheme,
            origin.netloc,
            origin.host,
            origin.port,
            path,
            b"",
            query,
            b"",
        )
        result: Deferred[Any] = self._requestWithEndpoint(
            origin.key, origin.endpoint, method, parsed, raw, None, target
        )
        return result


def _request_headers(headers: Sequence[tuple[str, str]], host: bytes) -> Headers:
    """The request's ``Headers`` as ``Agent.request`` under treq's
    ``ContentDecoderAgent`` makes them: the given ones, ``Accept-Encoding:
    gzip`` added, then ``Host`` unless one is given.  Only read once made
    (the Agent copies headers before it changes them), so kept."""
    raw = Headers()
    for name, value in headers:
        raw.addRawHeader(name, value)
    raw.addRawHeader(b"Accept-Encoding", b"gzip")
    if not raw.hasHeader(b"Host"):
        raw.addRawHeader(b"Host", host)
    return raw
