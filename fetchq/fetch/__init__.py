"""The URL fetcher adapter: fetch URLs as fetchq jobs, politely and safely.

::

    from twisted.internet import reactor
    from fetchq import ResizableDispatchQueue
    from fetchq.fetch import (
        BadURL, FetchConfig, Fetcher, check_url, fetch_retry_policy, host_key,
    )

    fetcher = Fetcher(FetchConfig(body_timeout=30.0), reactor, pool_size=20)
    queue = ResizableDispatchQueue(
        fetcher, 20, retry=fetch_retry_policy(), clock=reactor, lane_width=4
    )
    for line in urls:
        try:
            check_url(line)                # before queueing: bad input is
        except BadURL as e:                # recorded, not crashed on
            record(line, error=e.name, message=str(e))
        else:
            queue.put(line, key=host_key(line))

**Lanes.** Put each job with ``key=host_key(url)``: the queue's per-lane
width and rate then apply per host, and a throttle answer (429/503,
:class:`HTTPThrottled`, a ``fetchq.Throttled``) holds that host's lane for the
server's Retry-After while other hosts go on.

**Outcomes.** A job ends with a :class:`FetchResult` or one of the named
errors of :mod:`fetchq.http.errors` (each has ``.name`` and a short message).
:func:`fetch_retry_policy` retries connection errors, timeouts and retry
statuses; Retry-After answers retry after the server's delay.

**Limits.** Timeouts for connecting, for the response headers and for the
whole body; a body size cap counted on decoded bytes; redirects followed by
hand, each hop checked; optionally no private addresses, checked when the
name is resolved.  Encoded bodies (gzip, x-gzip, deflate zlib-wrapped or
bare, stacked up to four deep) are decoded, counted and hashed decoded, each
layer inflated in 64 KiB steps, so a bomb in any layer stops at the limit
with bounded memory; another encoding (br, zstd, ...) fails with
:class:`UnsupportedEncoding`.

**Connections.**  One pool per fetcher keeps up to ``pool_size`` idle
connections per host and ``max_idle`` (twice ``pool_size`` by default, less
under a low ``ulimit -n``) over all hosts, closing the least recently used,
so a crawl of many hosts holds at most ``max_idle`` + width sockets;
:meth:`Fetcher.close_idle` closes one host's at once.  If the process runs
out of file descriptors anyway, a fetch sheds the idle connections and
waits for descriptors (``descriptor_wait``), then fails with
:class:`TooManyOpenFiles`, a :class:`LocalResourceError`: retried by
:func:`fetch_retry_policy`, ignored by an adaptive controller.

**Real services.**  Proxies (``proxy``, or ``HTTPS_PROXY``/``NO_PROXY``
from the environment: :mod:`fetchq.http.proxy`), TLS settings (a CA
bundle, a client certificate, ``verify=False``: :mod:`fetchq.http.tls`; a
refused certificate is a :class:`TLSCertificateError`, not retried),
headers for some hosts only (``host_headers``) and robots.txt
(``robots="obey"``: :mod:`fetchq.fetch.robots`).

Cookies are neither kept nor sent.  IPv6-literal and underscore hosts are
refused as ``BadURL``: treq cannot encode them (hyperlink issue #68).
"""

from fetchq.fetch.config import DEFAULT_USER_AGENT, FetchConfig
from fetchq.fetch.fetcher import RETRYABLE, Fetcher, FetchResult, fetch_retry_policy
from fetchq.http.addresses import EndpointFactory, GuardedEndpoint, forbidden_kind
from fetchq.http.errors import (
    BadURL,
    BodyTimeout,
    BodyTooLarge,
    ConnectionFailed,
    ConnectTimeout,
    ContentDecodingError,
    DNSFailed,
    FetchError,
    FetchTimeout,
    ForbiddenAddress,
    HeadersTimeout,
    HTTPRetryAfter,
    HTTPStatusError,
    HTTPThrottled,
    LocalResourceError,
    ProxyAuthRequired,
    ProxyError,
    ProxyRefused,
    RequestTimeout,
    RetryableStatus,
    RobotsDisallowed,
    RobotsUnavailable,
    SaveError,
    TLSCertificateError,
    TooManyOpenFiles,
    TooManyRedirects,
    TruncatedBody,
    UnsupportedEncoding,
)
from fetchq.http.urls import (
    DEFAULT_SCHEMES,
    check_url,
    checked_host_key,
    host_key,
    parse_retry_after,
)

__all__ = [
    "DEFAULT_SCHEMES",
    "DEFAULT_USER_AGENT",
    "RETRYABLE",
    "BadURL",
    "BodyTimeout",
    "BodyTooLarge",
    "ConnectTimeout",
    "ConnectionFailed",
    "ContentDecodingError",
    "DNSFailed",
    "EndpointFactory",
    "FetchConfig",
    "FetchError",
    "FetchResult",
    "FetchTimeout",
    "Fetcher",
    "ForbiddenAddress",
    "GuardedEndpoint",
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
    "check_url",
    "checked_host_key",
    "fetch_retry_policy",
    "forbidden_kind",
    "host_key",
    "parse_retry_after",
]
