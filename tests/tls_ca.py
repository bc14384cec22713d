"""A throwaway certificate authority for the TLS tests: a CA, server
certificates it signs (for a host name, expired or not), client
certificates, and server TLS settings that may require a client
certificate (mTLS).  Everything is made fresh, in memory, per test class.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet.interfaces import IOpenSSLContextFactory
from zope.interface import implementer


def _pem_key(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


class TestCA:
    """A CA that signs certificates.

    Attributes:
        cert_pem: the CA's certificate (PEM), to trust.
    """

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, name: str = "fetchq test CA") -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(timezone.utc)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert_pem = self._cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self, host: str = "localhost", *, expired: bool = False, client: bool = False
    ) -> tuple[bytes, bytes]:
        """A certificate signed by this CA: ``(cert_pem, key_pem)``.

        Args:
            host: the DNS name it is for (the common name of a client's).
            expired: make one whose validity ended yesterday.
            client: a client certificate (clientAuth) rather than a server's.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(timezone.utc)
        start, end = now - timedelta(days=1), now + timedelta(days=1)
        if expired:
            start, end = now - timedelta(days=10), now - timedelta(days=1)
        usage = (
            ExtendedKeyUsageOID.CLIENT_AUTH
            if client
            else ExtendedKeyUsageOID.SERVER_AUTH
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .add_extension(x509.ExtendedKeyUsage([usage]), False)
        )
        if not client:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(host)]), False
            )
        cert = builder.sign(self._key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def write(directory: Path, name: str, *parts: bytes) -> Path:
    """``parts`` written one after the other to ``directory/name``."""
    path = directory / name
    path.write_bytes(b"".join(parts))
    return path


@implementer(IOpenSSLContextFactory)
class ServerTLS:
    """Server TLS settings for ``listenSSL``; with ``client_ca``, a client
    certificate signed by that CA is required (mTLS)."""

    def __init__(
        self, cert_pem: bytes, key_pem: bytes, client_ca: bytes | None = None
    ) -> None:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
        from OpenSSL import SSL, crypto

        self._context = SSL.Context(SSL.TLS_SERVER_METHOD)
        self._context.use_certificate(x509.load_pem_x509_certificate(cert_pem))
        self._context.use_privatekey(load_pem_private_key(key_pem, None))  # type: ignore[arg-type]
        if client_ca is not None:
            store = self._context.get_cert_store()
            assert store is not None
            store.add_cert(
                crypto.X509.from_cryptography(x509.load_pem_x509_certificate(client_ca))
            )
            self._context.set_verify(
                SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
                lambda conn, cert, errno, depth, ok: bool(ok),
            )

    def getContext(self) -> Any:
        """The OpenSSL context (Twisted's ``ContextFactory`` interface)."""
        return self._context
