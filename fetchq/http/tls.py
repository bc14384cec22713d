"""TLS for fetches: which CAs are trusted, our client certificate, and a
certificate failure told apart from any other handshake failure.

:class:`TLSPolicy` is the ``IPolicyForHTTPS`` the fetcher's endpoints ask
for each host.  It trusts the system's CAs (OpenSSL's default paths, which
``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` override) or, given a CA bundle,
exactly the CAs of that PEM file, as curl's ``--cacert`` and httpx's
``verify="bundle.pem"`` do.  It sends a client certificate if given one, and
checks the server's host name as Twisted does (``service_identity``).

When the server's certificate is refused, the connection fails with a
:class:`~fetchq.http.errors.TLSCertificateError` that says why, in
OpenSSL's words where OpenSSL gives them ("certificate has expired",
"unable to get local issuer certificate") and names the host, so a fetcher
neither retries it nor reports it as a mere connection failure.  With
``verify=False`` nothing is checked (the caller warns the user).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from OpenSSL import SSL
from service_identity import VerificationError
from service_identity.hazmat import DNS_ID, IPAddress_ID, verify_service_identity
from service_identity.pyopenssl import extract_patterns
from twisted.internet._idna import _idnaBytes
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.python.failure import Failure
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer  # type: ignore[import-untyped]

from fetchq.http.errors import TLSCertificateError

__all__ = ["TLSPolicy", "certificate_problem", "load_pem_certificates", "load_pem_key"]

_PEM_CERT = b"-----BEGIN CERTIFICATE-----"

# X509_V_ERR_* codes (openssl/x509_vfy.h) and what kind of problem each is.
_KINDS = {
    2: "untrusted",  # unable to get issuer certificate
    9: "not-yet-valid",
    10: "expired",
    13: "not-yet-valid",  # format error in notBefore
    14: "expired",  # format error in notAfter
    18: "untrusted",  # self-signed certificate
    19: "untrusted",  # self-signed certificate in certificate chain
    20: "untrusted",  # unable to get local issuer certificate
    21: "untrusted",  # unable to verify the first certificate
    23: "revoked",
    24: "untrusted",  # invalid CA certificate
    27: "untrusted",  # certificate not trusted
    28: "untrusted",  # certificate rejected
    62: "hostname",
    64: "hostname",  # IP address mismatch
}
_TEXTS = {
    2: "unable to get issuer certificate",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    23: "certificate revoked",
    24: "invalid CA certificate",
    27: "certificate not trusted",
    28: "certificate rejected",
}
# TLS alerts by which a server refuses the client's certificate (or its lack).
_CLIENT_REFUSED = (
    "certificate required",
    "bad certificate",
    "unknown ca",
    "certificate unknown",
    "certificate expired",
    "certificate revoked",
    "unsupported certificate",
    "peer did not return a certificate",
)


def _verify_text(code: int) -> str:
    """OpenSSL's words for verification error ``code``."""
    try:
        from OpenSSL._util import ffi, lib  # pyOpenSSL's own binding

        return str(ffi.string(lib.X509_verify_cert_error_string(code)).decode())
    except Exception:
        return _TEXTS.get(code, f"certificate verification error {code}")


def certificate_problem(error: BaseException) -> tuple[str, str] | None:
    """``(problem, kind)`` when a TLS failure that reached the fetcher is the
    server refusing our client certificate (an alert naming a certificate),
    else None."""
    text = _openssl_reason(error).lower()
    for alert in _CLIENT_REFUSED:
        if alert in text:
            return text, "client-refused"
    return None


def _openssl_reason(error: BaseException) -> str:
    details = error.args[0] if error.args else None
    if isinstance(details, list) and details and isinstance(details[-1], tuple):
        return str(details[-1][-1])
    return str(error)


def _at(what: str, path: str | Path) -> str:
    return f"{what} {str(path)!r}: " if what else ""


def load_pem_certificates(path: str | Path, what: str = "") -> list[Certificate]:
    """Every certificate of a PEM file.

    Raises:
        ValueError: the file cannot be read, holds no certificate, or one
            does not parse; the message starts with ``what`` and the file
            when ``what`` is given.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"{_at(what, path)}{e.strerror or e}") from None
    certificates = []
    start = data.find(_PEM_CERT)
    while start != -1:
        end = data.find(b"-----END CERTIFICATE-----", start)
        if end == -1:
            raise ValueError(f"{_at(what, path)}a certificate is cut short")
        block = data[start : end + len(b"-----END CERTIFICATE-----")]
        try:
            certificates.append(Certificate.loadPEM(block))
        except Exception as e:
            raise ValueError(
                f"{_at(what, path)}certificate {len(certificates) + 1} "
                f"does not parse ({_openssl_reason(e) or type(e).__name__})"
            ) from None
        start = data.find(_PEM_CERT, end)
    if not certificates:
        raise ValueError(f"{_at(what, path)}no PEM certificate in it")
    return certificates


def load_pem_key(path: str | Path, what: str = "") -> Any:
    """The unencrypted private key of a PEM file.

    Raises:
        ValueError: the file cannot be read, holds no key, an encrypted one,
            or one that does not parse.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"{_at(what, path)}{e.strerror or e}") from None
    if b"PRIVATE KEY-----" not in data:
        raise ValueError(f"{_at(what, path)}no PEM private key in it")
    if b"ENCRYPTED" in data:
        raise ValueError(
            f"{_at(what, path)}the key is encrypted; give an unencrypted key"
        )
    try:
        return load_pem_private_key(data, None)
    except Exception as e:
        raise ValueError(
            f"{_at(what, path)}the private key does not parse "
            f"({_openssl_reason(e) or type(e).__name__})"
        ) from None


@implementer(IPolicyForHTTPS)
class TLSPolicy:
    """Client TLS settings for every https host a fetcher connects to.

    Args:
        ca_bundle: a PEM file of the CAs to trust instead of the system's,
            or None.
        client_cert: a PEM file with our certificate (and its chain, and the
            key if ``client_key`` is None), or None.
        client_key: a PEM file with the certificate's unencrypted private
            key, or None.
        verify: False to check nothing (the server's certificate, its host
            name): never silently; the caller warns.

    Raises:
        ValueError: a file that cannot be read or does not hold what it
            should, or a key that does not match the certificate; the message
            names the file.
    """

    def __init__(
        self,
        ca_bundle: str | Path | None = None,
        client_cert: str | Path | None = None,
        client_key: str | Path | None = None,
        verify: bool = True,
    ) -> None:
        if client_key is not None and client_cert is None:
            raise ValueError("client_key needs client_cert")
        self.verify = verify
        options: dict[str, Any] = {}
        if verify:
            options["trustRoot"] = (
                platformTrust()  # type: ignore[no-untyped-call]
                if ca_bundle is None
                else trustRootFromCertificates(  # type: ignore[no-untyped-call]
                    load_pem_certificates(ca_bundle, "ca_bundle")
                )
            )
        if client_cert is not None:
            chain = load_pem_certificates(client_cert, "client_cert")
            key = load_pem_key(
                client_key if client_key is not None else client_cert,
                "client_key" if client_key is not None else "client_cert",
            )
        self._options = CertificateOptions(**options)
        if client_cert is not None:
            # Set on the options' one context (it is cached), as cryptography
            # objects: pyOpenSSL's own are deprecated.
            context = self._options.getContext()
            try:
                context.use_certificate(chain[0].original.to_cryptography())
                for extra in chain[1:]:
                    context.add_extra_chain_cert(extra.original.to_cryptography())
                context.use_privatekey(key)
                context.check_privatekey()
            except SSL.Error as e:
                raise ValueError(
                    f"client_key does not match client_cert ({_openssl_reason(e)})"
                ) from None

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        """The connection creator for ``hostname`` (``IPolicyForHTTPS``)."""
        return _Creator(self._options, hostname.decode("ascii"), self.verify)


@implementer(IOpenSSLClientConnectionCreator)
class _Creator:
    """One host's TLS connections: SNI, and (when verifying) the chain and
    the host name checked, a refusal named by a TLSCertificateError."""

    def __init__(self, options: CertificateOptions, host: str, verify: bool) -> None:
        self._options = options
        self._host = host
        self._verify = verify
        self._dns = not (isIPAddress(host) or isIPv6Address(host))
        self._name = _idnaBytes(host) if self._dns else host.encode("ascii")

    def clientConnectionForTLS(self, tls: Any) -> SSL.Connection:
        connection = SSL.Connection(self._options.getContext(), None)
        if self._dns:
            connection.set_tlsext_host_name(self._name)
        if self._verify:
            connection.set_verify(
                SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
                self._checker(tls),
            )
        return connection

    def _checker(self, tls: Any) -> Any:
        host = self._host
        ident = DNS_ID(host) if self._dns else IPAddress_ID(host)
        failed = False

        def check(
            connection: SSL.Connection, cert: Any, code: int, depth: int, ok: int
        ) -> bool:
            nonlocal failed
            if failed:
                return False
            problem: TLSCertificateError | None = None
            if not ok:
                problem = TLSCertificateError(
                    host, _verify_text(code), _KINDS.get(code, "invalid")
                )
            elif depth == 0:
                try:
                    verify_service_identity(extract_patterns(cert), [ident], [])
                except VerificationError:
                    problem = TLSCertificateError(
                        host, f"the certificate is not for {host!r}", "hostname"
                    )
            if problem is None:
                return True
            failed = True
            tls.failVerification(Failure(problem))  # type: ignore[no-untyped-call]
            return False

        return check
