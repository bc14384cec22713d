"""HTTP(S) proxies: which URL goes through which proxy, and how.

**Which.**  :class:`ProxyRoutes` answers, for a URL's scheme, host and
port, the :class:`Proxy` to use or None.  A configured proxy serves every
scheme; otherwise, as curl, httpx and Python's ``urllib`` read the
environment, ``https_proxy`` serves https URLs, ``http_proxy`` http URLs
and ``all_proxy`` both where those are unset (lower-case names first, then
upper-case; ``HTTP_PROXY`` is ignored when ``REQUEST_METHOD`` is set, the
"httpoxy" rule of CGI).  :class:`NoProxy` (``no_proxy``/``NO_PROXY``) lists
hosts reached directly: ``*`` (all), a domain (``example.com`` or
``.example.com``: the domain and every name under it, as curl reads it),
an IP address, a CIDR block (``10.0.0.0/8``, for IP-literal hosts) and any
of those with ``:port`` (only that port).

**How.**  An http URL goes to the proxy as an absolute-form request
(``GET http://host/path``) on a pooled connection to the proxy
(:class:`ProxyingAgent`); an https URL goes through a CONNECT tunnel
(:class:`TunnelEndpoint`), and TLS runs end to end inside it, checked
against the URL's host.  A proxy URL's ``user:password`` becomes a
``Proxy-Authorization: Basic`` header sent to the proxy only (never to a
site).  A 407 answer is :class:`~fetchq.http.errors.ProxyAuthRequired`
(fatal for a run), another 4xx :class:`~fetchq.http.errors.ProxyRefused`,
and a proxy that cannot be reached, breaks the connection or answers 5xx
:class:`~fetchq.http.errors.ProxyError` (a connection failure, retried).

With the private-address guard on, the *target* host is checked (resolved
here, every address public: :func:`~fetchq.http.addresses.check_public`);
the proxy itself may be a private address, as proxies usually are.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

import attrs
from hyperlink import URL
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import ConnectError, TimeoutError
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import URI, Agent
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse
from zope.interface import implementer  # type: ignore[import-untyped]

from fetchq.http.addresses import EndpointFactory, check_public
from fetchq.http.body import drop_body
from fetchq.http.errors import ProxyAuthRequired, ProxyError, ProxyRefused
from fetchq.secrets import Secret, reveal

__all__ = [
    "NoProxy",
    "Proxy",
    "ProxyEndpoint",
    "ProxyEndpointFactory",
    "ProxyRoutes",
    "ProxyingAgent",
    "TunnelEndpoint",
    "parse_proxy",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_CONNECT_ANSWER = 64 * 1024  # most bytes of a CONNECT answer's head


@attrs.frozen
class Proxy:
    """One proxy server.

    Attributes:
        scheme: ``"http"`` (plain to the proxy) or ``"https"`` (TLS to it).
        host: its host name or IP address.
        port: its port.
        authorization: the ``Proxy-Authorization`` value (``Basic ...``)
            from the URL's credentials, a Secret; or None.
    """

    scheme: str
    host: str
    port: int
    authorization: Secret | None = attrs.field(default=None, repr=False)

    @property
    def shown(self) -> str:
        """``host:port``, for messages (never the credentials)."""
        return f"{self.host}:{self.port}"


def parse_proxy(value: str | Secret, source: str = "") -> Proxy:
    """A :class:`Proxy` from its URL: ``http://[user:password@]host[:port]``
    (``https://`` for TLS to the proxy; no scheme means ``http://``; the
    port defaults to the scheme's, 80 or 443).

    Args:
        value: the URL (a Secret when it came from ``${NAME}``).
        source: where it came from (``HTTPS_PROXY``), to start messages
            with; none if empty.

    Raises:
        ValueError: naming what is wrong, never showing the credentials.
    """
    text = reveal(value).strip()
    if not text:
        raise ValueError(f"{_at(source)}empty proxy URL")
    if "://" not in text:
        text = "http://" + text
    scheme = text.split("://", 1)[0].lower()
    if scheme.startswith("socks"):
        raise ValueError(
            f"{_at(source)}{scheme} proxies are not supported (only http:// and https://)"
        )
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(
            f"{_at(source)}proxy scheme {scheme!r} is not supported "
            "(only http:// and https://)"
        )
    try:
        url = URL.from_text(text)
        port = url.port
    except ValueError:
        raise ValueError(f"{_at(source)}not a proxy URL (http://host:port)") from None
    if not url.host:
        raise ValueError(f"{_at(source)}the proxy URL has no host")
    if url.path not in ((), ("",)) or url.query or url.fragment:
        raise ValueError(
            f"{_at(source)}a proxy URL has no path or query (http://host:port)"
        )
    if port is None or not 0 < port < 65536:
        raise ValueError(f"{_at(source)}bad proxy port")
    authorization = None
    if url.userinfo:
        user, _, password = url.userinfo.partition(":")
        pair = f"{unquote(user)}:{unquote(password)}".encode()
        authorization = Secret("Basic " + base64.b64encode(pair).decode("ascii"), ())
    return Proxy(scheme, url.host.lower(), port, authorization)


def _at(source: str) -> str:
    return f"{source}: " if source else ""


@attrs.frozen
class _Entry:
    domain: str | None  # a name: itself and names under it
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    port: int | None


def _split_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return host, int(port) if port.isdigit() else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        if port.isdigit():
            return host, int(port)
    return text, None


@attrs.frozen
class NoProxy:
    """The hosts reached directly, not through the proxy (``NO_PROXY``).

    Attributes:
        everything: ``*`` was given: no URL uses the proxy.
        entries: the parsed entries.
    """

    everything: bool = False
    entries: tuple[_Entry, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> NoProxy:
        """Parse a ``NO_PROXY`` value: entries separated by commas (or
        spaces); an entry that means nothing is ignored, as curl does."""
        if not text:
            return cls()
        entries: list[_Entry] = []
        for raw in text.replace(",", " ").split():
            item = raw.strip().lower()
            if item == "*":
                return cls(everything=True)
            host, port = _split_port(item)
            try:
                network = ipaddress.ip_network(host, strict=False)
            except ValueError:
                network = None
            if network is not None:
                entries.append(_Entry(None, network, port))
                continue
            host = host.removeprefix("*").lstrip(".").rstrip(".")
            if host:
                entries.append(_Entry(host, None, port))
        return cls(False, tuple(entries))

    def matches(self, host: str, port: int) -> bool:
        """Whether ``host`` (lower case) on ``port`` is reached directly."""
        if self.everything:
            return True
        if not self.entries:
            return False
        host = host.strip("[]").rstrip(".")
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None
        for entry in self.entries:
            if entry.port is not None and entry.port != port:
                continue
            if entry.network is not None:
                if address is not None and address in entry.network:
                    return True
            elif entry.domain is not None and (
                host == entry.domain or host.endswith("." + entry.domain)
            ):
                return True
        return False


def _environment_value(environ: Mapping[str, str], name: str) -> tuple[str, str]:
    """``(variable, value)`` of ``name_proxy``, lower case first; empty
    when unset."""
    lower = f"{name}_proxy"
    value = environ.get(lower)
    if value is not None:
        return lower, value.strip()
    upper = lower.upper()
    if upper == "HTTP_PROXY" and "REQUEST_METHOD" in environ:
        return upper, ""  # httpoxy: a CGI request's Proxy header, not ours
    return upper, environ.get(upper, "").strip()


@attrs.frozen
class ProxyRoutes:
    """Which proxy, if any, each URL goes through.

    Attributes:
        http: the proxy for http URLs, or None.
        https: the proxy for https URLs, or None.
        bypass: the hosts reached directly.
    """

    http: Proxy | None = None
    https: Proxy | None = None
    bypass: NoProxy = NoProxy()

    @classmethod
    def build(
        cls,
        proxy: str | Secret | None,
        trust_env: bool,
        no_proxy: str | None,
        environ: Mapping[str, str],
    ) -> ProxyRoutes:
        """The routes a fetch configuration asks for.

        Args:
            proxy: a proxy URL for every URL, ``"none"`` for none at all, or
                None for the environment's (when ``trust_env``).
            trust_env: read ``*_proxy`` and ``no_proxy`` from ``environ``.
            no_proxy: hosts reached directly (as ``NO_PROXY``), or None for
                the environment's (when ``trust_env``).
            environ: the environment.

        Raises:
            ValueError: a proxy URL that cannot be used, naming where it came
                from (``fetch.proxy``, ``HTTPS_PROXY``).
        """
        if isinstance(proxy, str) and proxy.strip().lower() == "none":
            return cls()
        bypass_text = no_proxy
        if bypass_text is None and trust_env:
            bypass_text = _environment_value(environ, "no")[1]
        bypass = NoProxy.parse(bypass_text)
        if proxy is not None:
            one = parse_proxy(proxy, "fetch.proxy")
            return cls(one, one, bypass)
        if not trust_env:
            return cls()
        found: dict[str, Proxy | None] = {}
        for name in ("http", "https", "all"):
            variable, value = _environment_value(environ, name)
            found[name] = parse_proxy(value, variable) if value else None
        return cls(
            found["http"] or found["all"], found["https"] or found["all"], bypass
        )

    @property
    def any(self) -> bool:
        """Whether any URL may go through a proxy."""
        return self.http is not None or self.https is not None

    def route(self, scheme: bytes | str, host: bytes | str, port: int) -> Proxy | None:
        """The proxy for a URL, or None to connect directly."""
        if isinstance(scheme, bytes):
            scheme = scheme.decode("ascii")
        proxy = self.https if scheme == "https" else self.http
        if proxy is None:
            return None
        if isinstance(host, bytes):
            host = host.decode("ascii")
        if self.bypass.matches(host.lower(), port):
            return None
        return proxy


class _Tunnel(Protocol):
    """The connection to the proxy: sends CONNECT, reads the answer's head,
    then hands the connection to the protocol the tunnel was made for and
    passes every byte and the end of the connection through to it."""

    def __init__(self, endpoint: TunnelEndpoint, factory: IProtocolFactory) -> None:
        self.endpoint = endpoint
        self.target_factory: Any = factory
        self.established: Deferred[IProtocol] = Deferred(self._cancel)
        self.inner: Any = None
        self.buffer = b""
        self.timer: Any = None

    def _cancel(self, d: Deferred[IProtocol]) -> None:
        self._stop_timer()
        if self.transport is not None:
            self._abort()

    def _abort(self) -> None:
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def _stop_timer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    def connectionMade(self) -> None:
        endpoint = self.endpoint
        target = f"{endpoint.host}:{endpoint.port}".encode("ascii")
        lines = [b"CONNECT " + target + b" HTTP/1.1", b"Host: " + target]
        if endpoint.proxy.authorization is not None:
            value = reveal(endpoint.proxy.authorization).encode("latin-1")
            lines.append(b"Proxy-Authorization: " + value)
        transport: Any = self.transport
        transport.write(b"\r\n".join(lines) + b"\r\n\r\n")
        self.timer = endpoint.reactor.callLater(endpoint.timeout, self._timed_out)

    def _timed_out(self) -> None:
        self.timer = None
        if not self.established.called:
            self.established.errback(
                TimeoutError(  # type: ignore[no-untyped-call]
                    f"proxy {self.endpoint.proxy.shown}", "no CONNECT answer"
                )
            )
        if self.transport is not None:
            self._abort()

    def _fail(self, error: Exception) -> None:
        self._stop_timer()
        if not self.established.called:
            self.established.errback(error)
        if self.transport is not None:
            self._abort()

    def dataReceived(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.dataReceived(data)
            return
        if self.established.called:
            return  # failed or cancelled: the connection is going away
        self.buffer += data
        head, sep, rest = self.buffer.partition(b"\r\n\r\n")
        proxy = self.endpoint.proxy
        if not sep:
            if len(self.buffer) > _MAX_CONNECT_ANSWER:
                self._fail(ProxyError(f"proxy {proxy.shown}: oversized CONNECT answer"))
            return
        status_line = head.split(b"\r\n", 1)[0]
        parts = status_line.split(None, 2)
        if (
            len(parts) < 2
            or not parts[0].startswith(b"HTTP/")
            or not parts[1].isdigit()
        ):
            self._fail(
                ProxyError(
                    f"proxy {proxy.shown} answered CONNECT with "
                    f"{status_line[:60]!r}, not HTTP"
                )
            )
            return
        status = int(parts[1])
        if status == 407:
            self._fail(ProxyAuthRequired(status, proxy.shown))
        elif 400 <= status < 500:
            self._fail(ProxyRefused(status, proxy.shown))
        elif not 200 <= status < 300:
            self._fail(
                ProxyError(
                    f"proxy {proxy.shown} could not open a tunnel to "
                    f"{self.endpoint.host}:{self.endpoint.port} (HTTP {status})"
                )
            )
        else:
            self._stop_timer()
            self.buffer = b""
            transport: Any = self.transport
            inner = self.target_factory.buildProtocol(transport.getPeer())
            if inner is None:
                self._fail(ProxyError("the tunnel's protocol refused the connection"))
                return
            self.inner = inner
            inner.makeConnection(transport)
            self.established.callback(inner)
            if rest:
                inner.dataReceived(rest)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stop_timer()
        if self.inner is not None:
            self.inner.connectionLost(reason)
        elif not self.established.called:
            self.established.errback(
                ProxyError(
                    f"proxy {self.endpoint.proxy.shown} closed the connection "
                    "before answering CONNECT"
                )
            )


@implementer(IStreamClientEndpoint)
class TunnelEndpoint:
    """A client endpoint to ``host:port`` through an HTTP proxy's CONNECT
    tunnel; wrap it in TLS (``wrapClientTLS``) for an https site.

    Args:
        reactor: time (the CONNECT answer's deadline) and name resolution
            (the guard).
        proxy: the proxy.
        proxy_endpoint: an endpoint to the proxy (TLS-wrapped for an
            ``https://`` proxy).
        host: the site's host.
        port: the site's port.
        timeout: seconds allowed for the proxy's answer to CONNECT.
        guard: check that ``host`` resolves only to public addresses first.
    """

    def __init__(
        self,
        reactor: Any,
        proxy: Proxy,
        proxy_endpoint: Any,
        host: str,
        port: int,
        timeout: float,
        guard: bool = False,
    ) -> None:
        self.reactor = reactor
        self.proxy = proxy
        self.proxy_endpoint = proxy_endpoint
        self.host = host
        self.port = port
        self.timeout = timeout
        self.guard = guard

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        """Connect to the proxy, open the tunnel, and fire with the protocol
        ``factory`` built on it."""
        return Deferred.fromCoroutine(self._connect(factory))

    async def _connect(self, factory: IProtocolFactory) -> IProtocol:
        if self.guard:
            await check_public(self.reactor, self.host, self.port)
        tunnel_factory = Factory.forProtocol(lambda: _Tunnel(self, factory))
        tunnel = await self.proxy_endpoint.connect(tunnel_factory)
        established: IProtocol = await tunnel.established
        return established


@implementer(IStreamClientEndpoint)
class ProxyEndpoint:
    """An endpoint to a proxy whose connection failures name the proxy: a
    :class:`~fetchq.http.errors.ProxyError` ("cannot connect to proxy
    10.0.0.5:3128 (connection refused)"); a timeout stays a timeout.

    Args:
        proxy: the proxy.
        endpoint: the endpoint that connects to it.
    """

    def __init__(self, proxy: Proxy, endpoint: Any) -> None:
        self.proxy = proxy
        self._endpoint = endpoint

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        """Connect to the proxy."""
        d: Deferred[IProtocol] = self._endpoint.connect(factory)
        return d.addErrback(self._failed)

    def _failed(self, failure: Failure) -> Failure:
        error = failure.value
        if isinstance(error, ConnectError) and not isinstance(error, TimeoutError):
            reason = str(error).strip().rstrip(".") or type(error).__name__
            raise ProxyError(f"cannot connect to proxy {self.proxy.shown} ({reason})")
        return failure


class ProxyingAgent(Agent):
    """An ``Agent`` that sends http URLs routed to a proxy as absolute-form
    requests to that proxy (with its ``Proxy-Authorization``), on pooled
    connections to it, and everything else as ``Agent`` does (an https URL
    routed to a proxy gets its tunnel from the endpoint factory).

    Args:
        reactor: the reactor.
        endpoint_factory: the endpoints for direct and tunnelled connections.
        pool: the connection pool.
        routes: which URL goes through which proxy.
        proxy_endpoint: the endpoint to a proxy (``Proxy`` -> endpoint).
        guard: check each proxied http URL's host (public addresses only).
    """

    def __init__(
        self,
        reactor: Any,
        endpoint_factory: Any,
        pool: Any,
        routes: ProxyRoutes,
        proxy_endpoint: Any,
        guard: bool,
    ) -> None:
        super().__init__(reactor, pool=pool)  # type: ignore[no-untyped-call]
        self._endpointFactory = endpoint_factory
        self._routes = routes
        self._proxy_endpoint = proxy_endpoint
        self._guard = guard

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: Any = None,  # noqa: N803 (IAgent's name)
    ) -> Deferred[IResponse]:
        """Send a request, through a proxy when the routes say so."""
        uri = uri.strip()
        parsed = URI.fromBytes(uri)  # type: ignore[no-untyped-call]
        proxy = None
        if parsed.scheme == b"http":
            proxy = self._routes.route(parsed.scheme, parsed.host, parsed.port)
        if proxy is None:
            return super().request(method, uri, headers, bodyProducer)
        headers = Headers() if headers is None else headers.copy()
        if proxy.authorization is not None:
            headers.setRawHeaders(
                b"Proxy-Authorization",
                [reveal(proxy.authorization).encode("latin-1")],
            )
        key = (b"http-proxy", proxy.host.encode("idna"), proxy.port)
        endpoint = self._proxy_endpoint(proxy)

        def send(_: object = None) -> Deferred[IResponse]:
            d = self._requestWithEndpoint(
                key, endpoint, method, parsed, headers, bodyProducer, uri
            )
            return d.addCallback(answered)

        def answered(response: Any) -> Any:
            if response.code != 407:
                return response
            dropped = drop_body(response, self._reactor)
            return dropped.addCallback(_raise, ProxyAuthRequired(407, proxy.shown))

        if not self._guard:
            return send()
        check = check_public(self._reactor, parsed.host.decode("ascii"), parsed.port)
        return check.addCallback(send)


def _raise(_: object, error: Exception) -> None:
    raise error


class ProxyEndpointFactory(EndpointFactory):
    """:class:`~fetchq.http.addresses.EndpointFactory` whose https endpoints
    go through a CONNECT tunnel when the routes send the host to a proxy
    (TLS inside it, checked against the host), and which makes the
    endpoints to the proxies themselves (:meth:`proxy_endpoint`).

    Args:
        reactor: the reactor to connect with.
        connect_timeout: seconds for each connection attempt, and for a
            proxy's answer to CONNECT.
        allow_private: False to refuse non-public sites (the proxy itself
            may be private).
        tls_policy: an ``IPolicyForHTTPS`` for the sites and https proxies.
        routes: which URL goes through which proxy.
    """

    def __init__(
        self,
        reactor: Any,
        connect_timeout: float,
        allow_private: bool,
        tls_policy: Any,
        routes: ProxyRoutes,
    ) -> None:
        super().__init__(reactor, connect_timeout, allow_private, tls_policy)
        self._routes = routes
        self._proxies: dict[Proxy, ProxyEndpoint] = {}

    def proxy_endpoint(self, proxy: Proxy) -> ProxyEndpoint:
        """The endpoint to ``proxy`` (TLS to it for an ``https://`` one)."""
        endpoint = self._proxies.get(proxy)
        if endpoint is None:
            inner: Any = HostnameEndpoint(
                self._reactor, proxy.host, proxy.port, timeout=self._timeout
            )
            if proxy.scheme == "https":
                creator = self._tls_policy.creatorForNetloc(
                    proxy.host.encode("idna"), proxy.port
                )
                inner = wrapClientTLS(creator, inner)
            endpoint = self._proxies[proxy] = ProxyEndpoint(proxy, inner)
        return endpoint

    def _make_endpoint(self, uri: URI) -> IStreamClientEndpoint:
        proxy = None
        if uri.scheme == b"https":
            proxy = self._routes.route(uri.scheme, uri.host, uri.port)
        if proxy is None:
            return super()._make_endpoint(uri)
        tunnel = TunnelEndpoint(
            self._reactor,
            proxy,
            self.proxy_endpoint(proxy),
            uri.host.decode("ascii"),
            uri.port,
            self._timeout,
            guard=not self._allow_private,
        )
        creator = self._tls_policy.creatorForNetloc(uri.host, uri.port)
        endpoint: Any = tunnel
        wrapped: IStreamClientEndpoint = wrapClientTLS(creator, endpoint)
        return wrapped
