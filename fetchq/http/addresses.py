"""Where fetches connect: TCP or TLS endpoints, and the private-address guard.

With ``allow_private=False`` every connection (the first URL's and each
redirect's, since each hop asks :class:`EndpointFactory` for an endpoint)
resolves its host itself, keeps only the addresses that
:func:`forbidden_kind` passes, and connects to one of those very addresses.
So a redirect to ``http://127.0.0.1/``, a name that resolves to ``10.0.0.5``
or a name that resolves to a public and a private address all end on a
checked address or on :class:`~fetchq.http.errors.ForbiddenAddress`, with
no gap between the check and the connection for DNS tricks to use.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from typing import Any, cast

from twisted.internet.address import HostnameAddress, IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.error import (
    ConnectError,
    ConnectingCancelledError,
    DNSLookupError,
)
from twisted.internet.interfaces import (
    IAddress,
    IHostResolution,
    IProtocol,
    IProtocolFactory,
    IResolutionReceiver,
    IStreamClientEndpoint,
)
from twisted.web.client import URI, BrowserLikePolicyForHTTPS
from twisted.web.iweb import IAgentEndpointFactory, IPolicyForHTTPS
from zope.interface import implementer  # type: ignore[import-untyped]

from fetchq.http.errors import ForbiddenAddress

__all__ = ["EndpointFactory", "GuardedEndpoint", "check_public", "forbidden_kind"]


def forbidden_kind(address: str) -> str | None:
    """Why ``allow_private=False`` refuses an IP address, or None if it is a
    public address.

    Returns:
        ``"unspecified"``, ``"loopback"``, ``"link-local"``, ``"multicast"``,
        ``"private"``, ``"reserved"`` or ``"non-public"`` (shared, documentation
        and other special ranges); None for a global unicast address.
        IPv4-mapped and 6to4 IPv6 addresses are judged by their IPv4 address.

    Raises:
        ValueError: if ``address`` is not an IP address.
    """
    ip = ipaddress.ip_address(address.partition("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            kind = forbidden_kind(str(embedded))
            if kind is not None:
                return kind
    for kind, flagged in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if flagged:
            return kind
    return None if ip.is_global else "non-public"


@implementer(IResolutionReceiver)
class _Addresses:
    """Collects a resolution's IP addresses into a Deferred list."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.addresses: list[str] = []
        self.done: Deferred[list[str]] = Deferred(self._cancel)
        self._port = port

    def _cancel(self, d: Deferred[list[str]]) -> None:
        address = HostnameAddress(self.host.encode("idna"), self._port)
        d.errback(ConnectingCancelledError(address))  # type: ignore[no-untyped-call]

    def resolutionBegan(self, resolution: IHostResolution) -> None:
        """Part of ``IResolutionReceiver``; nothing to do."""

    def addressResolved(self, address: IAddress) -> None:
        """Keep an IPv4 or IPv6 address, once."""
        if (
            isinstance(address, (IPv4Address, IPv6Address))
            and address.host not in self.addresses
        ):
            self.addresses.append(address.host)

    def resolutionComplete(self) -> None:
        """Fire ``done``, unless it was cancelled meanwhile."""
        if self.done.called:
            return
        if self.addresses:
            self.done.callback(self.addresses)
        else:
            self.done.errback(DNSLookupError(f"no addresses for {self.host!r}"))


def _resolve(reactor: Any, host: str, port: int) -> Deferred[list[str]]:
    """The IP addresses of ``host`` (itself, if it is one)."""
    try:
        ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        pass
    else:
        return succeed([host])
    receiver = _Addresses(host, port)
    reactor.nameResolver.resolveHostName(receiver, host, port)
    return receiver.done


def check_public(reactor: Any, host: str, port: int) -> Deferred[None]:
    """Check that every address ``host`` resolves to is a public one, for a
    connection that someone else makes (a proxy resolves the name itself, so
    no address can be pinned: one refused address refuses the host).

    Fails with ``ForbiddenAddress`` naming the first refused address, or with
    ``DNSLookupError`` if the name does not resolve here.
    """

    def judge(addresses: list[str]) -> None:
        for address in addresses:
            kind = forbidden_kind(address)
            if kind is not None:
                raise ForbiddenAddress(host, address, kind)

    return _resolve(reactor, host, port).addCallback(judge)


@implementer(IStreamClientEndpoint)
class GuardedEndpoint:
    """A TCP client endpoint that connects only to permitted addresses.

    Args:
        reactor: provides ``nameResolver`` (``IReactorPluggableNameResolver``),
            TCP connections and time.
        host: a host name or IP address.
        port: the TCP port.
        timeout: seconds for each connection attempt.
    """

    def __init__(self, reactor: Any, host: str, port: int, timeout: float) -> None:
        self._reactor = reactor
        self._host = host
        self._port = port
        self._timeout = timeout

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        """Resolve, drop refused addresses, connect to the first that answers.

        Fails with ``ForbiddenAddress`` if every address is refused, with
        ``DNSLookupError`` if there are none, else with the last connection
        error; cancelling fails it with ``ConnectingCancelledError``.
        """
        return Deferred.fromCoroutine(self._connect(factory))

    async def _connect(self, factory: IProtocolFactory) -> IProtocol:
        addresses = await self._resolve()
        allowed: list[str] = []
        refused: tuple[str, str] | None = None
        for address in addresses:
            kind = forbidden_kind(address)
            if kind is None:
                allowed.append(address)
            elif refused is None:
                refused = (address, kind)
        if not allowed:
            assert refused is not None
            raise ForbiddenAddress(self._host, *refused)
        error: ConnectError | None = None
        for address in allowed:
            cls = TCP6ClientEndpoint if ":" in address else TCP4ClientEndpoint
            endpoint = cls(self._reactor, address, self._port, timeout=self._timeout)
            try:
                return await endpoint.connect(factory)
            except ConnectError as e:
                error = e
        assert error is not None
        raise error

    def _resolve(self) -> Deferred[list[str]]:
        return _resolve(self._reactor, self._host, self._port)


@implementer(IAgentEndpointFactory)
class EndpointFactory:
    """Endpoints for an ``Agent``: TCP for http, TLS over TCP for https, with
    the connect timeout and, if asked, the private-address guard.

    Attributes:
        CACHE_SIZE: how many hosts' endpoints are kept for reuse.

    Args:
        reactor: the reactor to connect with.
        connect_timeout: seconds for each connection attempt.
        allow_private: False to connect through :class:`GuardedEndpoint`.
        tls_policy: an ``IPolicyForHTTPS`` (default: Twisted's browser-like
            certificate checks).
    """

    CACHE_SIZE = 1024

    def __init__(
        self,
        reactor: Any,
        connect_timeout: float,
        allow_private: bool,
        tls_policy: IPolicyForHTTPS | None = None,
    ) -> None:
        self._reactor = reactor
        self._timeout = connect_timeout
        self._allow_private = allow_private
        self._endpoints: OrderedDict[
            tuple[bytes, bytes, int], IStreamClientEndpoint
        ] = OrderedDict()
        self._tls_policy: Any = (
            BrowserLikePolicyForHTTPS()  # type: ignore[no-untyped-call]
            if tls_policy is None
            else tls_policy
        )

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        """The endpoint for ``uri`` (``IAgentEndpointFactory``).

        The Agent asks for one on every request, pooled connection or not,
        and making one costs an IDNA encoding of the host; endpoints hold no
        connection state, so the most recently used ones are kept and reused.
        """
        key = (uri.scheme, uri.host, uri.port)
        cache = self._endpoints
        endpoint = cache.get(key)
        if endpoint is not None:
            cache.move_to_end(key)
            return endpoint
        endpoint = cache[key] = self._make_endpoint(uri)
        if len(cache) > self.CACHE_SIZE:
            cache.popitem(last=False)
        return endpoint

    def _make_endpoint(self, uri: URI) -> IStreamClientEndpoint:
        host = uri.host.decode("ascii")
        endpoint: Any
        if self._allow_private:
            endpoint = _literal_endpoint(self._reactor, host, uri.port, self._timeout)
            if endpoint is None:
                endpoint = HostnameEndpoint(
                    self._reactor, host, uri.port, timeout=self._timeout
                )
        else:
            endpoint = GuardedEndpoint(self._reactor, host, uri.port, self._timeout)
        if uri.scheme == b"https":
            creator = self._tls_policy.creatorForNetloc(uri.host, uri.port)
            endpoint = wrapClientTLS(creator, endpoint)
        return cast(IStreamClientEndpoint, endpoint)


def _literal_endpoint(reactor: Any, host: str, port: int, timeout: float) -> Any:
    """A TCP endpoint for a host that is an IP address, else None.

    ``HostnameEndpoint`` resolves even an address through the reactor's
    resolver, a thread: each new connection waited for one, and a request
    cancelled while it did failed with "Couldn't find the hostname" (a DNS
    failure) instead of being cancelled."""
    if "%" in host:
        return None  # a scoped IPv6 address: resolved as before
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None  # a name: resolved as before
    cls = TCP6ClientEndpoint if address.version == 6 else TCP4ClientEndpoint
    return cls(reactor, host, port, timeout=timeout)
