"""Fetching through HTTP proxies that the tests start on 127.0.0.1: plain
http as absolute-form requests, https through CONNECT tunnels with TLS
checked end to end, proxy credentials, the environment's ``HTTPS_PROXY``
and ``NO_PROXY``, and every way a proxy can fail, each named."""

from __future__ import annotations

import base64
import hashlib
import tempfile
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

from fetchq.fetch import (
    ConnectionFailed,
    ConnectTimeout,
    FetchConfig,
    Fetcher,
    ForbiddenAddress,
    ProxyAuthRequired,
    ProxyError,
    ProxyRefused,
    fetch_retry_policy,
)
from fetchq.http.proxy import NoProxy, ProxyRoutes, parse_proxy
from fetchq.queue import ResizableDispatchQueue
from fetchq.secrets import Secret
from tests.fetch_server import FaultServer, body_for, lean_variants
from tests.proxy_server import ProxyServer
from tests.tls_ca import ServerTLS, TestCA, write

FAST = FetchConfig(connect_timeout=2.0, headers_timeout=3.0, body_timeout=3.0)


def sha(data: bytes) -> str:
    """The hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


class ProxyTestCase(TestCase):
    """A plain site, an https site of a test CA, and fetchers closed after."""

    ca = TestCA()
    http = "treq"  # "lean" in the Lean copies: proxied requests take the Agent

    def setUp(self) -> None:
        self.site = FaultServer(reactor).start()
        self.addCleanup(self.site.close)
        cert, key = self.ca.issue("localhost")
        self.tls_site = FaultServer(reactor).start(tls=ServerTLS(cert, key))
        self.addCleanup(self.tls_site.close)
        self.bundle = str(write(Path(tempfile.mkdtemp()), "ca.pem", self.ca.cert_pem))

    def proxy(self, **options: Any) -> ProxyServer:
        """A proxy, closed after the test (after the fetchers)."""
        proxy = ProxyServer(reactor, **options).start()
        self.addCleanup(proxy.close)
        return proxy

    def fetcher(self, environ: dict[str, str] | None = None, **changes: Any) -> Fetcher:
        """A fetcher of ``FAST`` with ``changes`` trusting the test CA, with
        ``environ`` for its environment (empty by default)."""
        changes.setdefault("http", self.http)
        config = attrs.evolve(FAST, ca_bundle=self.bundle, **changes)
        fetcher = Fetcher(config, reactor, 2, environ=environ or {})
        self.addCleanup(fetcher.close)
        return fetcher


class ThroughProxyTests(ProxyTestCase):
    """What goes through a proxy, and how."""

    async def test_http_goes_as_absolute_form(self) -> None:
        """An http URL goes to the proxy as an absolute-form GET; the body
        arrives whole."""
        proxy = self.proxy()
        url = self.site.url("/ok?size=3000")
        result = await self.fetcher(proxy=proxy.url()).fetch(url)
        self.assertEqual(result.sha256, sha(body_for(3000)))
        self.assertEqual([(m, t) for m, t, _ in proxy.seen], [("GET", url)])
        self.assertEqual(proxy.tunnels, [])

    async def test_https_goes_through_a_tunnel(self) -> None:
        """An https URL opens a CONNECT tunnel to the site's host and port;
        the proxy sees only the CONNECT (TLS is end to end), the site gets
        the request."""
        proxy = self.proxy()
        url = self.tls_site.url("/ok?size=2500", host="localhost")
        fetcher = self.fetcher(proxy=proxy.url())
        result = await fetcher.fetch(url)
        second = await fetcher.fetch(url)
        target = f"localhost:{self.tls_site.port_number}"
        self.assertEqual(result.sha256, sha(body_for(2500)))
        self.assertEqual(second.status, 200)
        self.assertEqual([(m, t) for m, t, _ in proxy.seen], [("CONNECT", target)])
        self.assertEqual(proxy.tunnels, [target])  # the tunnel was reused
        self.assertEqual(len(self.tls_site.requests), 2)

    async def test_tunnel_checks_the_site_certificate(self) -> None:
        """TLS inside the tunnel is checked against the site: without the
        CA the certificate is refused, named as such."""
        proxy = self.proxy()
        config = attrs.evolve(FAST, proxy=proxy.url(), http=self.http)
        fetcher = Fetcher(config, reactor, 2, environ={})
        self.addCleanup(fetcher.close)
        d = fetcher.fetch(self.tls_site.url("/ok", host="localhost"))
        error = await self.assertFailure(d, Exception)
        self.assertEqual(type(error).__name__, "TLSCertificateError")
        self.assertEqual(self.tls_site.requests, [])

    async def test_credentials_go_to_the_proxy_only(self) -> None:
        """user:password of the proxy URL become Proxy-Authorization: Basic,
        sent to the proxy for http and for CONNECT, never to the sites."""
        proxy = self.proxy(credentials=("ann", "s3cret"))
        fetcher = self.fetcher(proxy=proxy.url("ann", "s3cret"))
        await fetcher.fetch(self.site.url("/ok"))
        await fetcher.fetch(self.tls_site.url("/ok", host="localhost"))
        expected = "Basic " + base64.b64encode(b"ann:s3cret").decode()
        self.assertEqual(
            [h.get("proxy-authorization") for _, _, h in proxy.seen],
            [expected, expected],
        )
        for site in (self.site, self.tls_site):
            for _, _, headers, _ in site.requests:
                self.assertNotIn("proxy-authorization", headers)

    async def test_407_is_fatal_for_https(self) -> None:
        """A proxy that wants credentials we lack answers CONNECT 407:
        ProxyAuthRequired, fatal (a run stops), not retried."""
        proxy = self.proxy(credentials=("ann", "s3cret"))
        fetcher = self.fetcher(proxy=proxy.url())
        queue = ResizableDispatchQueue(
            fetcher, 1, retry=fetch_retry_policy(5, 0.01, 0.01), clock=reactor
        )
        failure = await self.assertFailure(
            queue.put(self.tls_site.url("/ok", host="localhost")), Exception
        )
        job = failure.job  # type: ignore[attr-defined]
        error = job.failure.value
        self.assertIsInstance(error, ProxyAuthRequired)
        self.assertTrue(error.fatal)
        self.assertEqual(job.attempts, 1)
        self.assertIn("requires authentication", str(error))

    async def test_407_is_fatal_for_http(self) -> None:
        """The same for a plain http URL: the proxy's 407 answer is not taken
        for the site's status."""
        proxy = self.proxy(credentials=("ann", "s3cret"))
        d = self.fetcher(proxy=proxy.url("ann", "wrong")).fetch(self.site.url("/ok"))
        error = await self.assertFailure(d, ProxyAuthRequired)
        self.assertEqual(error.status, 407)
        self.assertNotIn("wrong", str(error))
        self.assertEqual(self.site.requests, [])

    async def test_proxy_refusing_the_tunnel(self) -> None:
        """A CONNECT answered 403 is ProxyRefused (not retried); one answered
        502 is ProxyError, a connection failure (retried)."""
        refusing = self.proxy(connect_status=403)
        url = self.tls_site.url("/ok", host="localhost")
        error = await self.assertFailure(
            self.fetcher(proxy=refusing.url()).fetch(url), ProxyRefused
        )
        self.assertEqual(error.status, 403)
        self.assertNotIsInstance(error, ConnectionFailed)
        failing = self.proxy(connect_status=502)
        error = await self.assertFailure(
            self.fetcher(proxy=failing.url()).fetch(url), ProxyError
        )
        self.assertIsInstance(error, ConnectionFailed)
        self.assertIn("HTTP 502", str(error))

    async def test_unreachable_proxy_is_a_connection_failure(self) -> None:
        """A proxy nothing listens on: ProxyError (a ConnectionFailed) naming
        the proxy, never its credentials."""
        port = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        number = port.getHost().port
        await port.stopListening()
        fetcher = self.fetcher(proxy=f"http://ann:pw@127.0.0.1:{number}")
        for url in (self.site.url("/ok"), self.tls_site.url("/ok", host="localhost")):
            error = await self.assertFailure(fetcher.fetch(url), ProxyError)
            self.assertIn(f"cannot connect to proxy 127.0.0.1:{number}", str(error))
            self.assertNotIn("pw", str(error))

    async def test_silent_proxy_times_out(self) -> None:
        """A proxy that never answers CONNECT: ConnectTimeout."""
        port = reactor.listenTCP(
            0, Factory.forProtocol(Protocol), interface="127.0.0.1"
        )
        self.addCleanup(port.stopListening)
        fetcher = self.fetcher(
            proxy=f"http://127.0.0.1:{port.getHost().port}", connect_timeout=0.2
        )
        d = fetcher.fetch(self.tls_site.url("/ok", host="localhost"))
        await self.assertFailure(d, ConnectTimeout)

    async def test_guard_checks_the_target_not_the_proxy(self) -> None:
        """With allow_private false, a loopback site is refused before the
        proxy is asked; a public one goes to the (loopback) proxy, which here
        refuses it, so nothing leaves this machine."""
        proxy = self.proxy(connect_status=403)
        fetcher = self.fetcher(proxy=proxy.url(), allow_private=False)
        for url in (self.site.url("/ok"), self.tls_site.url("/ok", host="localhost")):
            await self.assertFailure(fetcher.fetch(url), ForbiddenAddress)
        self.assertEqual(proxy.seen, [])
        d = fetcher.fetch("https://8.8.8.8/")
        await self.assertFailure(d, ProxyRefused)
        self.assertEqual([t for _, t, _ in proxy.seen], ["8.8.8.8:443"])


class EnvironmentTests(ProxyTestCase):
    """The environment's proxy variables, as curl and httpx read them."""

    async def test_environment_proxy_used_by_default(self) -> None:
        """http_proxy and HTTPS_PROXY route each scheme through the proxy."""
        proxy = self.proxy()
        environ = {"http_proxy": proxy.url(), "HTTPS_PROXY": proxy.url()}
        fetcher = self.fetcher(environ)
        await fetcher.fetch(self.site.url("/ok"))
        await fetcher.fetch(self.tls_site.url("/ok", host="localhost"))
        self.assertEqual([m for m, _, _ in proxy.seen], ["GET", "CONNECT"])

    async def test_no_proxy_bypasses(self) -> None:
        """NO_PROXY naming the host (localhost; 127.0.0.0/8) sends it
        direct: the proxy sees nothing."""
        proxy = self.proxy()
        environ = {"ALL_PROXY": proxy.url(), "NO_PROXY": "localhost, 127.0.0.0/8"}
        fetcher = self.fetcher(environ)
        await fetcher.fetch(self.site.url("/ok"))
        await fetcher.fetch(self.tls_site.url("/ok", host="localhost"))
        self.assertEqual(proxy.seen, [])

    async def test_proxy_none_and_trust_env_false_ignore_it(self) -> None:
        """proxy "none", or trust_env false, connect directly whatever the
        environment says."""
        proxy = self.proxy()
        environ = {"ALL_PROXY": proxy.url()}
        await self.fetcher(environ, proxy="none").fetch(self.site.url("/ok"))
        await self.fetcher(environ, trust_env=False).fetch(self.site.url("/ok"))
        self.assertEqual(proxy.seen, [])


class RoutesTests(SynchronousTestCase):
    """Which URL goes where: parsing proxies and NO_PROXY."""

    def test_no_proxy_entries(self) -> None:
        """Domains match themselves and the names under them (a leading dot
        or "*." too), IPs and CIDR blocks match IP-literal hosts, a port
        limits an entry to it, and "*" matches everything."""
        rules = NoProxy.parse(
            "example.com, .corp.example, *.internal, 10.0.0.0/8, 192.0.2.7, "
            "api.test:8443 [::1]"
        )
        yes = [
            ("example.com", 80),
            ("www.example.com", 443),
            ("corp.example", 80),
            ("a.b.corp.example", 80),
            ("x.internal", 80),
            ("10.1.2.3", 80),
            ("192.0.2.7", 443),
            ("api.test", 8443),
            ("::1", 80),
        ]
        no = [
            ("notexample.com", 80),
            ("example.org", 80),
            ("11.0.0.1", 80),
            ("api.test", 443),
            ("10.example", 80),
        ]
        for host, port in yes:
            self.assertTrue(rules.matches(host, port), (host, port))
        for host, port in no:
            self.assertFalse(rules.matches(host, port), (host, port))
        self.assertTrue(NoProxy.parse("*").matches("anything.at.all", 1))
        self.assertFalse(NoProxy.parse("").matches("example.com", 80))

    def test_environment_precedence(self) -> None:
        """Lower-case variables win over upper-case ones; all_proxy serves
        a scheme without its own; HTTP_PROXY is ignored under CGI
        (REQUEST_METHOD set: the httpoxy rule)."""
        routes = ProxyRoutes.build(
            None,
            True,
            None,
            {
                "HTTPS_PROXY": "http://upper:1",
                "https_proxy": "http://lower:2",
                "ALL_PROXY": "http://all:3",
            },
        )
        assert routes.https is not None and routes.http is not None
        self.assertEqual((routes.https.host, routes.https.port), ("lower", 2))
        self.assertEqual((routes.http.host, routes.http.port), ("all", 3))
        cgi = ProxyRoutes.build(
            None, True, None, {"HTTP_PROXY": "http://evil:1", "REQUEST_METHOD": "GET"}
        )
        self.assertIsNone(cgi.http)
        self.assertFalse(ProxyRoutes.build(None, False, None, {"ALL_PROXY": "x:1"}).any)

    def test_proxy_urls(self) -> None:
        """A bare host:port is http; the port defaults to the scheme's; a
        socks proxy is refused naming the variable; credentials become a
        Basic Proxy-Authorization, a Secret, never shown."""
        proxy = parse_proxy("proxy.corp:3128")
        self.assertEqual(
            (proxy.scheme, proxy.host, proxy.port), ("http", "proxy.corp", 3128)
        )
        self.assertEqual(parse_proxy("https://p.example").port, 443)
        with self.assertRaisesRegex(ValueError, "^ALL_PROXY: socks5 proxies are not"):
            ProxyRoutes.build(None, True, None, {"ALL_PROXY": "socks5://p:1080"})
        secret = parse_proxy(Secret("http://ann:p%40ss@p:8080"))
        assert secret.authorization is not None
        self.assertEqual(
            secret.authorization.reveal(),
            "Basic " + base64.b64encode(b"ann:p@ss").decode(),
        )
        self.assertNotIn("p@ss", repr(secret))
        with self.assertRaises(ValueError) as caught:
            parse_proxy("http://ann:pw@p:99999")
        self.assertNotIn("pw", str(caught.exception))

    def test_config_keeps_credentials_secret(self) -> None:
        """A proxy URL with credentials given as text is kept as a Secret in
        the configuration, so its repr does not show them."""
        config = FetchConfig(proxy="http://ann:hunter2@p:3128")
        self.assertIsInstance(config.proxy, Secret)
        self.assertNotIn("hunter2", repr(config))


lean_variants(globals(), ThroughProxyTests, EnvironmentTests)
