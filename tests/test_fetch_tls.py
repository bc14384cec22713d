"""TLS options of the fetcher against https servers on 127.0.0.1 whose
certificates a test CA signs: a CA bundle trusts them, a certificate failure
is a named, permanent error saying which failure it was, a client
certificate opens an mTLS server's door, and ``verify: false`` is loud."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from fetchq.fetch import (
    ConnectionFailed,
    FetchConfig,
    Fetcher,
    TLSCertificateError,
    fetch_retry_policy,
)
from fetchq.fetch.fetcher import NO_VERIFY_WARNING
from fetchq.http.tls import TLSPolicy
from fetchq.queue import ResizableDispatchQueue
from tests.fetch_server import FaultServer, body_for, lean_variants
from tests.tls_ca import ServerTLS, TestCA, write

FAST = FetchConfig(connect_timeout=2.0, headers_timeout=2.0, body_timeout=2.0)


class TLSTestCase(TestCase):
    """A CA, a directory for PEM files, and https servers closed after."""

    ca = TestCA()
    other_ca = TestCA("another CA")
    http = "treq"  # "lean" in the Lean copies

    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp())
        self.bundle = write(self.dir, "ca.pem", self.ca.cert_pem)

    def serve(
        self, host: str = "localhost", *, expired: bool = False, mtls: bool = False
    ) -> FaultServer:
        """An https server with a certificate of our CA for ``host``."""
        cert, key = self.ca.issue(host, expired=expired)
        tls = ServerTLS(cert, key, self.ca.cert_pem if mtls else None)
        server = FaultServer(reactor).start(tls=tls)
        self.addCleanup(server.close)
        return server

    def fetcher(self, **changes: Any) -> Fetcher:
        """A fetcher of ``FAST`` with ``changes``, closed after the test."""
        changes.setdefault("http", self.http)
        fetcher = Fetcher(attrs.evolve(FAST, **changes), reactor, 2, environ={})
        self.addCleanup(fetcher.close)
        return fetcher


class CertificateTests(TLSTestCase):
    """Which certificates are trusted, and how a refusal is named."""

    async def test_ca_bundle_trusts_the_server(self) -> None:
        """With the CA in ca_bundle, the server's certificate is trusted and
        the body arrives whole."""
        server = self.serve()
        result = await self.fetcher(ca_bundle=str(self.bundle)).fetch(
            server.url("/ok?size=2000", host="localhost")
        )
        self.assertEqual(result.status, 200)
        self.assertEqual(result.sha256, hashlib.sha256(body_for(2000)).hexdigest())

    async def test_unknown_ca_is_named_and_not_retried(self) -> None:
        """Without the CA (the system's CAs do not know it), the fetch fails
        with TLSCertificateError of kind "untrusted" in OpenSSL's words, and
        a queue with the fetch retry policy makes exactly one attempt."""
        server = self.serve()
        fetcher = self.fetcher()
        queue = ResizableDispatchQueue(
            fetcher, 1, retry=fetch_retry_policy(5, 0.01, 0.01), clock=reactor
        )
        d = queue.put(server.url("/ok", host="localhost"))
        failure = await self.assertFailure(d, Exception)
        job = failure.job  # type: ignore[attr-defined]
        error = job.failure.value
        self.assertIsInstance(error, TLSCertificateError)
        self.assertNotIsInstance(error, ConnectionFailed)
        self.assertEqual(error.kind, "untrusted")
        self.assertEqual(error.host, "localhost")
        self.assertIn("unable to get local issuer certificate", str(error))
        self.assertEqual(job.attempts, 1)
        self.assertEqual(server.requests, [])

    async def test_another_ca_is_not_trusted(self) -> None:
        """A bundle of another CA replaces the system's and does not trust
        the server: untrusted."""
        server = self.serve()
        other = write(self.dir, "other.pem", self.other_ca.cert_pem)
        d = self.fetcher(ca_bundle=str(other)).fetch(
            server.url("/ok", host="localhost")
        )
        error = await self.assertFailure(d, TLSCertificateError)
        self.assertEqual(error.kind, "untrusted")

    async def test_expired_certificate_is_named(self) -> None:
        """An expired certificate of a trusted CA: kind "expired", "certificate
        has expired"."""
        server = self.serve(expired=True)
        d = self.fetcher(ca_bundle=str(self.bundle)).fetch(
            server.url("/ok", host="localhost")
        )
        error = await self.assertFailure(d, TLSCertificateError)
        self.assertEqual(error.kind, "expired")
        self.assertIn("certificate has expired", str(error))

    async def test_wrong_host_name_is_named(self) -> None:
        """A trusted certificate for another name (fetched as 127.0.0.1, made
        for localhost): kind "hostname", naming the host asked for."""
        server = self.serve("localhost")
        d = self.fetcher(ca_bundle=str(self.bundle)).fetch(server.url("/ok"))
        error = await self.assertFailure(d, TLSCertificateError)
        self.assertEqual(error.kind, "hostname")
        self.assertEqual(error.host, "127.0.0.1")
        self.assertIn("not for '127.0.0.1'", str(error))
        self.assertEqual(server.requests, [])

    async def test_verify_false_accepts_anything_and_warns(self) -> None:
        """verify=False fetches from an untrusted, wrongly named server, and
        the fetcher carries the warning a run shows."""
        server = self.serve("elsewhere.example", expired=True)
        fetcher = self.fetcher(verify=False)
        result = await fetcher.fetch(server.url("/ok?size=10"))
        self.assertEqual(result.bytes, 10)
        self.assertEqual(fetcher.warnings, [NO_VERIFY_WARNING])
        self.assertEqual(self.fetcher().warnings, [])


class ClientCertificateTests(TLSTestCase):
    """An mTLS server that requires a certificate of our CA."""

    async def test_client_certificate_opens_the_door(self) -> None:
        """With client_cert and client_key (separate files) the request is
        answered."""
        server = self.serve(mtls=True)
        cert, key = self.ca.issue("fetchq client", client=True)
        fetcher = self.fetcher(
            ca_bundle=str(self.bundle),
            client_cert=str(write(self.dir, "client.pem", cert)),
            client_key=str(write(self.dir, "client.key", key)),
        )
        result = await fetcher.fetch(server.url("/ok?size=5", host="localhost"))
        self.assertEqual(result.status, 200)
        self.assertEqual(len(server.requests), 1)

    async def test_certificate_and_key_in_one_file(self) -> None:
        """client_cert alone may hold the key too."""
        server = self.serve(mtls=True)
        cert, key = self.ca.issue("fetchq client", client=True)
        fetcher = self.fetcher(
            ca_bundle=str(self.bundle),
            client_cert=str(write(self.dir, "both.pem", cert, key)),
        )
        result = await fetcher.fetch(server.url("/ok?size=5", host="localhost"))
        self.assertEqual(result.status, 200)

    async def test_without_client_certificate_refused(self) -> None:
        """Without one, the server refuses the handshake: a TLSCertificateError
        of kind "client-refused", and no request is answered."""
        server = self.serve(mtls=True)
        d = self.fetcher(ca_bundle=str(self.bundle)).fetch(
            server.url("/ok", host="localhost")
        )
        error = await self.assertFailure(d, TLSCertificateError)
        self.assertEqual(error.kind, "client-refused")
        self.assertIn("refused our client certificate", str(error))
        self.assertEqual(server.requests, [])


class PolicyFileTests(SynchronousTestCase):
    """Bad TLS files fail at construction, naming the file and the fault."""

    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp())

    def test_bundle_without_certificates(self) -> None:
        """A file with no PEM certificate is refused as such."""
        path = write(self.dir, "empty.pem", b"nothing here\n")
        with self.assertRaisesRegex(ValueError, "no PEM certificate"):
            TLSPolicy(ca_bundle=path)

    def test_key_that_does_not_match(self) -> None:
        """A key of another certificate is refused."""
        ca = TestCA()
        cert, _ = ca.issue("a", client=True)
        _, other_key = ca.issue("b", client=True)
        with self.assertRaisesRegex(ValueError, "does not match"):
            TLSPolicy(
                client_cert=write(self.dir, "c.pem", cert),
                client_key=write(self.dir, "k.pem", other_key),
            )

    def test_encrypted_key_refused(self) -> None:
        """An encrypted key is refused with a message that says so."""
        path = write(
            self.dir,
            "enc.pem",
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n"
            b"-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        cert, _ = TestCA().issue("a", client=True)
        with self.assertRaisesRegex(ValueError, "encrypted"):
            TLSPolicy(client_cert=write(self.dir, "c.pem", cert), client_key=path)


lean_variants(globals(), CertificateTests, ClientCertificateTests)
