"""How a fetch can end other than with a result: one named class per outcome.

::

    FetchqError                          fetchq's root (fetchq.errors)
    ├── FetchError                       base of every fetch outcome below
    │   ├── BadURL (also ValueError)     malformed URL, scheme not allowed, no host
    │   ├── ForbiddenAddress             host resolved only to refused addresses
    │   ├── ConnectionFailed             refused, reset, lost early, TLS handshake
    │   │   ├── DNSFailed                the host name did not resolve
    │   │   ├── TruncatedBody            the connection died before the body ended
    │   │   └── ProxyError               the proxy unreachable, or it could not
    │   │                                reach the site (CONNECT answered 5xx)
    │   ├── TLSCertificateError          a certificate refused: unknown CA, expired,
    │   │                                wrong host name (or ours, by the server)
    │   ├── ProxyRefused                 the proxy refused the request (4xx)
    │   │   └── ProxyAuthRequired        407: fatal, the run stops
    │   ├── RobotsDisallowed             robots.txt disallows the URL
    │   ├── RobotsUnavailable            robots.txt unreachable (5xx, no answer):
    │   │   (Throttled)                  the host waits, as RFC 9309 asks
    │   ├── FetchTimeout                 a deadline passed
    │   │   ├── ConnectTimeout           ...while connecting
    │   │   ├── HeadersTimeout           ...before the response headers
    │   │   ├── BodyTimeout              ...before the whole body arrived
    │   │   └── RequestTimeout           ...before the whole attempt ended
    │   ├── BodyTooLarge                 more than ``max_body`` bytes (decoded)
    │   ├── ContentDecodingError         a gzip/deflate body that does not decode
    │   │   └── UnsupportedEncoding      an encoding not decoded (br, zstd, ...)
    │   ├── SaveError                    the body could not be written to save_dir
    │   ├── TooManyRedirects             more than ``max_redirects`` hops
    │   ├── LocalResourceError           this process ran short, not the URL
    │   │   └── TooManyOpenFiles         no file descriptor left (EMFILE/ENFILE)
    │   ├── HTTPStatusError              a status that is neither ok nor retried
    │   │   └── RetryableStatus          a retry status without Retry-After
    │   ├── HTTPRetryAfter (RetryAfter)  a retry status with Retry-After
    │   └── HTTPThrottled (Throttled)    a throttle status (429/503): holds the lane
    └── RetryAfter ── Throttled          (fetchq.errors)

Every class has a stable :attr:`FetchError.name` (its class name) for output
records and a short message.  :class:`HTTPRetryAfter` and
:class:`HTTPThrottled` are :class:`fetchq.RetryAfter` / :class:`fetchq.Throttled`
too, so the queue retries them after the server's delay, and a throttle also
holds the job's lane (its host) for that long.

Each error also carries the :class:`~fetchq.control.Signal` an adaptive
controller reads (``error.signal``): timeouts, broken connections and 429,
503 and 504 answers are drops (throttles when they came with a delay); a bad
URL, a DNS failure, a refused address, a local shortage
(:class:`LocalResourceError`) and other statuses say nothing about the pace.
"""

from __future__ import annotations

from fetchq.control.signals import Signal
from fetchq.errors import FetchqError, RetryAfter, Throttled

__all__ = [
    "BadURL",
    "BodyTimeout",
    "BodyTooLarge",
    "ConnectTimeout",
    "ConnectionFailed",
    "ContentDecodingError",
    "DNSFailed",
    "FetchError",
    "FetchTimeout",
    "ForbiddenAddress",
    "HTTPRetryAfter",
    "HTTPStatusError",
    "HTTPThrottled",
    "HeadersTimeout",
    "LocalResourceError",
    "ProxyAuthRequired",
    "ProxyError",
    "ProxyRefused",
    "RequestTimeout",
    "RetryableStatus",
    "RobotsDisallowed",
    "RobotsUnavailable",
    "SaveError",
    "TLSCertificateError",
    "TooManyOpenFiles",
    "TooManyRedirects",
    "TruncatedBody",
    "UnsupportedEncoding",
]


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


DROP_STATUSES = frozenset({429, 503, 504})
"""Statuses that mean the server is overloaded or refusing work."""


def _status_signal(status: int, delay: bool = False) -> Signal:
    if status not in DROP_STATUSES:
        return Signal.IGNORE
    return Signal.THROTTLE if delay else Signal.DROP


class FetchError(FetchqError):
    """Base class of every way a fetch can fail."""

    signal: Signal = Signal.IGNORE

    @property
    def name(self) -> str:
        """The class name, stable across releases, for output records."""
        return type(self).__name__


class BadURL(FetchError, ValueError):
    """A URL that cannot be fetched: empty, unparseable, no scheme, a scheme
    not allowed, no host, a bad port.

    Args:
        reason: what is wrong, naming the bad part.
        url: the URL as given.
    """

    def __init__(self, reason: str, url: object = "") -> None:
        super().__init__(reason, url)
        self.reason = reason
        self.url = url

    def __str__(self) -> str:
        if self.url in ("", None):
            return self.reason
        return f"{self.reason}: {_short(repr(self.url))}"


class ForbiddenAddress(FetchError):
    """``allow_private=False`` and the host resolved to no permitted address.

    Args:
        host: the host name from the URL.
        address: the (first) refused address.
        kind: why it was refused (``"loopback"``, ``"private"``, ...).
    """

    def __init__(self, host: str, address: str, kind: str) -> None:
        super().__init__(host, address, kind)
        self.host = host
        self.address = address
        self.kind = kind

    def __str__(self) -> str:
        where = "" if self.host == self.address else f" for {self.host!r}"
        return f"refused {self.kind} address {self.address}{where}"


class ConnectionFailed(FetchError):
    """The connection could not be made or broke: refused, reset, DNS lookup
    failed, closed before the response.  Retryable with
    :func:`~fetchq.fetch.fetch_retry_policy`."""

    signal = Signal.DROP


class DNSFailed(ConnectionFailed):
    """The host name did not resolve (says nothing about the server's load)."""

    signal = Signal.IGNORE


class TruncatedBody(ConnectionFailed):
    """The connection ended before the body did (fewer bytes than the
    Content-Length said, or a broken chunked encoding)."""


class ProxyError(ConnectionFailed):
    """The proxy could not be reached, broke the connection, or could not
    reach the site itself (a CONNECT answered 502, 503, 504 ...).  Retried as
    connection failures are.

    Args:
        reason: what happened, naming the proxy (never its credentials).
    """


class ProxyRefused(FetchError):
    """The proxy refused the request with a 4xx answer to CONNECT (its
    policy forbids the site, say): not retried.

    Args:
        status: the proxy's status code.
        proxy: the proxy as ``host:port``.
    """

    def __init__(self, status: int, proxy: str) -> None:
        super().__init__(status, proxy)
        self.status = status
        self.proxy = proxy

    def __str__(self) -> str:
        return f"proxy {self.proxy} refused the tunnel (HTTP {self.status})"


class ProxyAuthRequired(ProxyRefused):
    """The proxy answered 407 Proxy Authentication Required: no credentials
    were given, or it refused them.  Every other request would fail the same
    way, so this is fatal: a run stops and leaves its rows to do."""

    fatal = True
    fix = (
        "give the proxy's user and password in fetch.proxy "
        "(http://${PROXY_USER}:${PROXY_PASSWORD}@host:port) or check them"
    )

    def __str__(self) -> str:
        return f"proxy {self.proxy} requires authentication (HTTP {self.status})"


class TLSCertificateError(FetchError):
    """A TLS certificate was refused: the server's (signed by a CA that is not
    trusted, self-signed, expired or not yet valid, revoked, or issued for
    another host name), or ours by the server (mTLS).  Retrying cannot
    help, so it is not retried.

    Args:
        host: the host whose certificate it was.
        problem: what is wrong, as OpenSSL says it where it says
            (``"certificate has expired"``).
        kind: ``"untrusted"``, ``"expired"``, ``"not-yet-valid"``,
            ``"hostname"``, ``"revoked"``, ``"client-refused"`` or
            ``"invalid"`` (anything else).
    """

    def __init__(self, host: str, problem: str, kind: str) -> None:
        super().__init__(host, problem, kind)
        self.host = host
        self.problem = problem
        self.kind = kind

    def __str__(self) -> str:
        if self.kind == "client-refused":
            return f"{self.host} refused our client certificate ({self.problem})"
        hint = ""
        if self.kind == "untrusted":
            hint = "; fetch.tls.ca_bundle names the CAs to trust"
        return f"certificate of {self.host} refused: {self.problem}{hint}"


class RobotsDisallowed(FetchError):
    """The site's robots.txt disallows the URL for our user agent
    (``fetch.robots: obey``).  Not retried, and not a failure of the site:
    the failure breaker does not count it.

    Args:
        url: the URL disallowed.
        agent: the user agent robots.txt was read for.
    """

    neutral = True

    def __init__(self, url: str, agent: str) -> None:
        super().__init__(url, agent)
        self.url = url
        self.agent = agent

    def __str__(self) -> str:
        return f"robots.txt disallows {_short(self.url)} for {self.agent!r}"


class RobotsUnavailable(Throttled, FetchError):
    """The site's robots.txt could not be read (a 5xx or 429 answer, a
    connection failure, a timeout): as RFC 9309 asks, nothing of the site is
    fetched until it can be.  The job is retried after ``delay`` and its lane
    (the host) held meanwhile.

    Args:
        origin: the site (``https://host[:port]``).
        delay: seconds until robots.txt is asked for again.
        cause: why it could not be read.
    """

    signal = Signal.IGNORE

    def __init__(self, origin: str, delay: float, cause: str) -> None:
        super().__init__(delay, f"robots.txt of {origin} unavailable ({cause})")
        self.origin = origin
        self.cause = cause


class ContentDecodingError(FetchError):
    """The body claimed a content encoding (gzip, deflate) that did not
    decode, or that ended early."""


class UnsupportedEncoding(ContentDecodingError):
    """The body's ``Content-Encoding`` is one fetchq does not decode (``br``,
    ``zstd``, ``compress``, ...), or a stack of more layers than it decodes;
    the body is not read, so undecoded bytes are never taken for the body.

    Args:
        encoding: the encoding refused (or the whole stack).
        reason: the message, if not "unsupported Content-Encoding 'br'".
    """

    def __init__(self, encoding: str, reason: str = "") -> None:
        super().__init__(encoding, reason)
        self.encoding = encoding
        self.reason = reason or f"unsupported Content-Encoding {encoding!r}"

    def __str__(self) -> str:
        return self.reason


class SaveError(FetchError):
    """The body could not be written to ``save_dir`` (full disk, no
    permission); the message carries the operating system's reason."""


class FetchTimeout(FetchError):
    """A deadline passed.  Retryable with
    :func:`~fetchq.fetch.fetch_retry_policy`.

    Args:
        seconds: the limit that was exceeded.
    """

    phase = "fetch"
    signal = Signal.DROP

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds

    def __str__(self) -> str:
        return f"{self.phase} timed out after {self.seconds:g}s"


class ConnectTimeout(FetchTimeout):
    """No connection within ``connect_timeout``."""

    phase = "connect"


class HeadersTimeout(FetchTimeout):
    """No response headers within ``headers_timeout`` of sending the request."""

    phase = "response headers"


class BodyTimeout(FetchTimeout):
    """The whole body did not arrive within ``body_timeout`` of the headers,
    whether it stalled or trickled."""

    phase = "body"


class RequestTimeout(FetchTimeout):
    """The whole attempt (connecting, headers, body and redirects) did not
    end within ``timeout``."""

    phase = "request"


class BodyTooLarge(FetchError):
    """The body (counted decoded) is bigger than ``max_body``; the connection
    was dropped.

    Args:
        limit: ``max_body``.
        declared: the Content-Length, when that alone gave it away.
    """

    def __init__(self, limit: int, declared: int | None = None) -> None:
        super().__init__(limit, declared)
        self.limit = limit
        self.declared = declared

    def __str__(self) -> str:
        if self.declared is not None:
            return f"Content-Length {self.declared} exceeds {self.limit} bytes"
        return f"body exceeds {self.limit} bytes"


class TooManyRedirects(FetchError):
    """More than ``max_redirects`` redirects (a loop ends here too).

    Args:
        limit: ``max_redirects``.
        location: where the redirect that was not followed pointed.
    """

    def __init__(self, limit: int, location: str) -> None:
        super().__init__(limit, location)
        self.limit = limit
        self.location = location

    def __str__(self) -> str:
        return f"more than {self.limit} redirects (next: {_short(self.location)})"


class LocalResourceError(FetchError):
    """This process, not the URL or its server, ran short of something a
    fetch needs.  Retryable with :func:`~fetchq.fetch.fetch_retry_policy`;
    says nothing about the server's pace (the controller ignores it)."""


class TooManyOpenFiles(LocalResourceError):
    """No file descriptor was left for a connection or a saved body: the
    process's limit (``ulimit -n``, EMFILE) or the system's (ENFILE).  The
    fetcher sheds its idle connections and waits for descriptors before it
    gives up with this.

    Args:
        limit: the process's descriptor limit, if known.
    """

    def __init__(self, limit: int | None = None) -> None:
        super().__init__(limit)
        self.limit = limit

    def __str__(self) -> str:
        which = "" if self.limit is None else f" (ulimit -n is {self.limit})"
        return (
            f"too many open files in this process{which}: a local limit, not the "
            "URL's failure; raise the limit or lower the width"
        )


class HTTPStatusError(FetchError):
    """The server answered with a status that counts as a failure (404, ...).

    Args:
        status: the HTTP status code.
    """

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status
        self.signal = _status_signal(status)

    def __str__(self) -> str:
        return f"HTTP {self.status}"


class RetryableStatus(HTTPStatusError):
    """A retry status (408, 500, 502, 504 by default) with no Retry-After:
    retried with backoff by :func:`~fetchq.fetch.fetch_retry_policy`."""


class HTTPRetryAfter(RetryAfter, FetchError):
    """A retry status that came with a Retry-After header: retried after that
    delay (capped at ``max_retry_after``).

    Args:
        status: the HTTP status code.
        delay: seconds to wait.
    """

    def __init__(self, status: int, delay: float) -> None:
        super().__init__(delay, f"HTTP {status}")
        self.status = status
        self.signal = _status_signal(status, delay=True)


class HTTPThrottled(Throttled, FetchError):
    """A throttle status (429, 503 by default): retried after Retry-After
    (capped) or a default delay, and the job's lane is held meanwhile.

    Args:
        status: the HTTP status code.
        delay: seconds to wait.
    """

    signal = Signal.THROTTLE

    def __init__(self, status: int, delay: float) -> None:
        super().__init__(delay, f"HTTP {status}")
        self.status = status
