"""The URL fetcher: a fetchq job function built on treq.

One :class:`Fetcher` holds one persistent connection pool for all its
requests.  It follows redirects itself, so every hop passes the same URL and
address checks, and it reads bodies as streams (see :mod:`fetchq.http.body`).
What comes back is a :class:`FetchResult`, or one of the named exceptions of
:mod:`fetchq.http.errors`::

    fetcher = Fetcher(FetchConfig(), reactor, pool_size=20)
    queue = ResizableDispatchQueue(
        fetcher, 20, retry=fetch_retry_policy(), clock=reactor, lane_width=4
    )
    queue.put(url, key=host_key(url))   # lanes by host: 429/503 hold the host

Cookies are neither stored nor sent, so each job stands alone.

**Secrets.**  Header and param values of the
:class:`~fetchq.fetch.config.FetchConfig` may be
:class:`~fetchq.secrets.Secret` (a recipe's ``${ENV}`` values, and values
under names such as ``Authorization`` or ``api_key``).  They are revealed
only to be sent.  The rule for where they go and what is shown:

- a header whose value is a Secret is sent to the first URL's origin
  (scheme, host, port) and to same-origin redirects only: it is dropped at
  the first redirect to another origin, as ``Authorization``, ``Cookie``
  and ``Proxy-Authorization`` always are (secret or not);
- a Secret's text never shows: ``final_url`` and every error's message
  (a ``TooManyRedirects`` whose next hop a server filled with the key, a
  ``BadURL`` redirect) show it as ``***``, plain or percent-encoded (see
  :mod:`fetchq.http.masking` for the exact rule).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from http.cookiejar import DefaultCookiePolicy
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import attrs
from hyperlink import DecodedURL, EncodedURL
from service_identity import VerificationError
from treq.client import HTTPClient
from treq.cookies import IndexableCookieJar
from twisted.internet.defer import CancelledError, Deferred, fail, gatherResults
from twisted.internet.error import (
    ConnectError,
    ConnectingCancelledError,
    ConnectionRefusedError,
    DNSLookupError,
)
from twisted.internet.error import TimeoutError as ConnectTimeoutError
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.web.client import (
    ContentDecoderAgent,
    GzipDecoder,
    RequestTransmissionFailed,
    ResponseNeverReceived,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS

from fetchq.fetch.config import FetchConfig
from fetchq.fetch.robots import MAX_ROBOTS, RobotsCache
from fetchq.http.addresses import EndpointFactory
from fetchq.http.body import BodySink, drop_body, read_body, reasons
from fetchq.http.deadline import deadline
from fetchq.http.errors import (
    BadURL,
    BodyTooLarge,
    ConnectionFailed,
    ConnectTimeout,
    DNSFailed,
    FetchError,
    FetchTimeout,
    HeadersTimeout,
    HTTPRetryAfter,
    HTTPStatusError,
    HTTPThrottled,
    LocalResourceError,
    RequestTimeout,
    RetryableStatus,
    SaveError,
    TLSCertificateError,
    TooManyOpenFiles,
    TooManyRedirects,
)
from fetchq.http.masking import secret_masker
from fetchq.http.origins import DirectAgent
from fetchq.http.pool import (
    BoundedPool,
    default_max_idle,
    descriptor_limit,
    descriptors_exhausted,
    out_of_descriptors,
)
from fetchq.http.proxy import ProxyEndpointFactory, ProxyingAgent, ProxyRoutes
from fetchq.http.tls import TLSPolicy, certificate_problem
from fetchq.http.urls import (
    check_url,
    is_quick_uri,
    parse_retry_after,
    quick_uri,
    uri_text,
)
from fetchq.retry import RetryPolicy
from fetchq.secrets import Secret, reveal

if TYPE_CHECKING:
    from fetchq.http.lean import LeanAgent

__all__ = ["RETRYABLE", "FetchResult", "Fetcher", "fetch_retry_policy"]

RETRYABLE: tuple[type[BaseException], ...] = (
    ConnectionFailed,
    FetchTimeout,
    RetryableStatus,
    LocalResourceError,
)
"""The fetch errors retried with backoff (``RetryAfter`` ones always retry)."""

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {b"http": 80, b"https": 443}
_SENSITIVE = frozenset({"authorization", "cookie", "proxy-authorization"})
"""Headers never sent to another origin after a redirect, secret or not."""
_DRAIN_LIMIT = 64 * 1024  # most bytes read from a non-ok body to reuse its connection
_FD_WAIT_FIRST = 0.05  # the first wait for file descriptors (s); doubles
_FD_WAIT_MAX = 2.0  # the longest single wait
_ROBOTS_STATUSES = frozenset(range(100, 600)) - _REDIRECTS  # all but redirects
NO_VERIFY_WARNING = (
    "TLS certificates are NOT checked (fetch.tls.verify: false): any server "
    "can pose as any https site, and what is fetched may not come from it"
)
"""The warning a run shows when certificate checks are off."""


def fetch_retry_policy(
    max_attempts: int = 5, base_delay: float = 1.0, max_delay: float = 60.0
) -> RetryPolicy:
    """A retry policy for fetch jobs: connection errors, timeouts,
    :class:`~fetchq.http.errors.RetryableStatus` and running out of file
    descriptors (:class:`~fetchq.http.errors.TooManyOpenFiles`) retry with
    exponential backoff and full jitter; ``HTTPRetryAfter``/``HTTPThrottled``
    retry after the server's delay; anything else fails at once.

    Args:
        max_attempts: most attempts per job (1 = no retries).
        base_delay: backoff before the second attempt, before jitter (s).
        max_delay: the backoff cap (s).
    """
    return RetryPolicy(
        max_attempts=max_attempts,
        base_delay=base_delay,
        max_delay=max_delay,
        retry_on=RETRYABLE,
    )


@attrs.frozen
class FetchResult:
    """A fetched URL.

    Attributes:
        url: the URL as given.
        final_url: the URL (in URI form) whose response this is, after
            redirects and with the configured query parameters; the value
            of every :class:`~fetchq.secrets.Secret` shows as ``***``.
        status: the HTTP status code.
        content_type: the Content-Type header, or None.
        bytes: the body's size, decoded (gzip is decoded).
        sha256: the hex SHA-256 of the decoded body.
        body_path: where the body was saved, or None.
        elapsed: seconds from the start of the fetch to the end of the body,
            on the reactor's clock.
        redirects: how many redirects were followed.
    """

    url: str
    final_url: str
    status: int
    content_type: str | None
    bytes: int
    sha256: str
    body_path: str | None
    elapsed: float
    redirects: int


class Fetcher:
    """Fetches URLs under a :class:`~fetchq.fetch.config.FetchConfig`;
    callable as a fetchq job function.

    Args:
        config: what to fetch and the limits.
        reactor: the reactor (``IReactorTCP``, ``IReactorTime``,
            ``IReactorPluggableNameResolver``), also the clock of every
            timeout and of ``elapsed``.
        pool_size: persistent connections kept per host; use the queue's
            width (Twisted's default keeps only 2).
        tls_policy: an ``IPolicyForHTTPS`` for https (default: a
            :class:`~fetchq.http.tls.TLSPolicy` from the configuration's CA
            bundle, client certificate and ``verify``).
        max_idle: idle connections kept over all hosts, the least recently
            used closed beyond it (default:
            :func:`~fetchq.http.pool.default_max_idle`: twice ``pool_size``,
            less if the descriptor limit is low), so a crawl of many hosts
            holds at most ``max_idle`` + width sockets.
        descriptor_wait: seconds one fetch waits in all, shedding idle
            connections and backing off, when the process has no file
            descriptor left for its connection, before it fails with
            :class:`~fetchq.http.errors.TooManyOpenFiles` (which the retry
            policy retries too).
        environ: where ``HTTPS_PROXY`` and the like are read (default:
            ``os.environ``), when the configuration's ``trust_env`` says so.

    Attributes:
        warnings: what the user must be told about this fetcher's settings
            (certificate checks turned off), once, by whoever runs it.
        on_robots_rate: with ``robots="obey"``, called with a host's lane key
            and the most requests per second its robots.txt asks for
            (``Crawl-delay``, ``Request-rate``); a run sets it.

    Raises:
        ValueError: if ``pool_size`` or ``max_idle`` is not an integer >= 1,
            ``descriptor_wait`` is negative, a proxy (configured or from
            the environment) cannot be used, or a TLS file cannot be read;
            the message says which.
    """

    def __init__(
        self,
        config: FetchConfig,
        reactor: Any,
        pool_size: int = 10,
        *,
        tls_policy: IPolicyForHTTPS | TLSPolicy | None = None,
        max_idle: int | None = None,
        descriptor_wait: float = 30.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if isinstance(pool_size, bool) or not isinstance(pool_size, int):
            raise ValueError(f"pool_size must be an integer >= 1, not {pool_size!r}")
        if pool_size < 1:
            raise ValueError(f"pool_size must be an integer >= 1, not {pool_size!r}")
        if not descriptor_wait >= 0:
            raise ValueError(f"descriptor_wait must be >= 0, not {descriptor_wait!r}")
        self._descriptor_wait = descriptor_wait
        self._config = config
        self._clock = reactor
        # Secrets are revealed here, once, for sending; what is shown of a
        # fetch (final_url, messages) goes through ``_mask``, and a header
        # that carries one stays with its origin.
        self._headers = tuple((name, reveal(value)) for name, value in config.headers)
        self._params = tuple((name, reveal(value)) for name, value in config.params)
        self._origin_bound = _SENSITIVE | {
            name.lower() for name, value in config.headers if isinstance(value, Secret)
        }
        self._host_headers = tuple(
            _HostHeaders(pattern, pairs) for pattern, pairs in config.host_headers
        )
        self._mask = secret_masker(
            value
            for _, value in (
                *config.headers,
                *config.params,
                *(pair for _, pairs in config.host_headers for pair in pairs),
            )
        )
        self.warnings: list[str] = []
        if tls_policy is None:
            tls_policy = TLSPolicy(
                config.ca_bundle, config.client_cert, config.client_key, config.verify
            )
        if not config.verify:
            self.warnings.append(NO_VERIFY_WARNING)
        self.proxies = ProxyRoutes.build(
            config.proxy,
            config.trust_env,
            config.no_proxy,
            os.environ if environ is None else environ,
        )
        if max_idle is None:
            max_idle = default_max_idle(pool_size)
        self._pool = BoundedPool(reactor, per_host=pool_size, max_idle=max_idle)
        # ``http="lean"``: bodyless GETs (most of a crawl) through the lean
        # agent, with its own pool of the same bounds; anything else, and
        # everything when a proxy may be in the way, through treq's Agent.
        self._lean: LeanAgent | None = None
        self._direct: DirectAgent | None = None
        self._lean_pool: BoundedPool | None = None
        self._header_blocks: dict[tuple[tuple[str, str], ...], tuple[bytes, bool]] = {}
        agent: Any
        policy: Any = tls_policy
        if self.proxies.any:
            proxied = ProxyEndpointFactory(
                reactor,
                config.connect_timeout,
                config.allow_private,
                policy,
                self.proxies,
            )
            agent = ProxyingAgent(
                reactor,
                proxied,
                self._pool,
                self.proxies,
                proxied.proxy_endpoint,
                guard=not config.allow_private,
            )
        else:
            factory = EndpointFactory(
                reactor, config.connect_timeout, config.allow_private, policy
            )
            agent = self._direct = DirectAgent.with_endpoints(
                reactor, factory, self._pool
            )
            if config.http == "lean":
                from fetchq.http.lean import LeanAgent, LeanPool

                lean_pool = LeanPool(reactor, per_host=pool_size, max_idle=max_idle)
                self._lean_pool = lean_pool
                self._lean = LeanAgent(factory, lean_pool)
        no_cookies = IndexableCookieJar(DefaultCookiePolicy(allowed_domains=[]))
        self._client = HTTPClient(agent, cookiejar=no_cookies)
        # A request without a body goes straight to the agent stack treq
        # builds for it (gzip accepted and decoded by ``ContentDecoderAgent``)
        # without treq's per-request work: its URL parse (``sent`` is parsed
        # already), a cookie jar made and merged, and a ``CookieAgent`` whose
        # jar refuses every cookie, so it adds no header and keeps nothing.
        self._agent = ContentDecoderAgent(  # type: ignore[no-untyped-call]
            agent, [(b"gzip", GzipDecoder)]
        )
        self.on_robots_rate: Any = None
        self._robots: RobotsCache | None = None
        self._robots_config = config
        if config.robots == "obey":
            self._robots_config = attrs.evolve(
                config,
                method="GET",
                body=None,
                params=(),
                max_body=MAX_ROBOTS,
                max_redirects=5,
                ok_statuses=_ROBOTS_STATUSES,
                retry_statuses=(),
                throttle_statuses=(),
                save_dir=None,
                robots="ignore",
            )
            agent_name = next(
                reveal(value)
                for name, value in config.headers
                if name.lower() == "user-agent"
            )
            self._robots = RobotsCache(
                self._read_robots, reactor, agent_name, self._robots_rate
            )

    @property
    def config(self) -> FetchConfig:
        """The configuration this fetcher was made with."""
        return self._config

    @property
    def robots(self) -> RobotsCache | None:
        """The sites' robots.txt rules, when the configuration obeys them."""
        return self._robots

    def _robots_rate(self, key: str, rate: float) -> None:
        if self.on_robots_rate is not None:
            self.on_robots_rate(key, rate)

    def _read_robots(self, url: str) -> Deferred[tuple[int, bytes]]:
        """Fetch a robots.txt: ``(status, body)``, the body cut to whole
        lines within ``MAX_ROBOTS`` bytes."""
        try:
            read: Any = _Fetch(self, url, None, robots=True).send()
        except Exception:
            read = fail()
        answer: Deferred[tuple[int, bytes]] = read
        return answer

    @property
    def pool(self) -> BoundedPool:
        """The connection pool of bodyless GETs (with ``http="lean"``, the
        lean agent's; requests with a body have a pool of their own)."""
        return self._pool if self._lean_pool is None else self._lean_pool

    def _pools(self) -> tuple[BoundedPool, ...]:
        lean = self._lean_pool
        return (self._pool,) if lean is None else (self._pool, lean)

    def _header_block(self, headers: tuple[tuple[str, str], ...]) -> tuple[bytes, bool]:
        """``headers`` as the lines of a request (checked for line breaks
        when the configuration was made), and whether one is a ``Host``
        (then none is added, as the Agent adds none); kept per set."""
        known = self._header_blocks.get(headers)
        if known is None:
            block = b"".join(
                b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1"))
                for name, value in headers
            )
            known = (block, any(name.lower() == "host" for name, _ in headers))
            if len(self._header_blocks) < 64:
                self._header_blocks[headers] = known
        return known

    def close_idle(self, host_key: str) -> int:
        """Close the idle pooled connections to one host, at once: for a
        caller that knows the host has nothing more pending (its lane went
        idle), so its sockets need not wait to be pushed out of the pool.

        Args:
            host_key: the host as :func:`~fetchq.fetch.host_key` gives it
                (``example.com``, ``example.com:8080``); every scheme.

        Returns:
            How many connections were closed.
        """
        host, sep, port = host_key.rpartition(":")
        if not (sep and port.isdigit()):
            host, port = host_key, ""
        host = host.lower()
        if not host.isascii():  # pool keys hold the host in IDNA form
            host = DecodedURL.from_text(f"http://{host}/").to_uri().host
        wanted = host.encode("ascii")
        number = int(port) if port else None

        def match(key: Any) -> bool:
            scheme, key_host, key_port = key
            if key_host.lower() != wanted:
                return False
            if number is None:
                return bool(_DEFAULT_PORTS.get(scheme) == key_port)
            return bool(key_port == number)

        return sum(pool.close_idle(match) for pool in self._pools())

    def close(self) -> Deferred[None]:
        """Close the idle pooled connections (call when done, before the
        reactor stops).  Returns a Deferred that fires once they are closed."""
        closed = [pool.closeCachedConnections() for pool in self._pools()]
        if len(closed) == 1:
            return closed[0]
        return gatherResults(closed).addCallback(lambda _: None)

    def __call__(self, job_arg: object) -> Deferred[FetchResult]:
        """Fetch as a queue job function.

        Args:
            job_arg: a URL, or a mapping with ``"url"`` and optional ``"id"``
                (the id names the saved body when ``save_name="id"``).
        """
        if isinstance(job_arg, Mapping):
            if "url" not in job_arg:
                return _failed(BadURL("job argument has no 'url'", job_arg))
            return self.fetch(job_arg["url"], job_arg.get("id"))
        return self.fetch(job_arg)

    def fetch(self, url: object, job_id: object = None) -> Deferred[FetchResult]:
        """Fetch one URL.

        Args:
            url: the URL text (or a ``DecodedURL``).
            job_id: the job's identity, for ``save_name="id"``.

        Returns:
            A Deferred firing with a :class:`FetchResult`, or failing with a
            :class:`~fetchq.http.errors.FetchError` (throttles and
            Retry-After answers are ``fetchq.Throttled``/``RetryAfter`` too).
            Cancelling it closes the connection and cleans up.
        """
        try:
            if self._robots is None:
                d = _Fetch(self, url, job_id).send()
            else:
                d = _Fetch(self, url, job_id).allowed()
        except Exception:
            d = fail()  # a bad URL fails the Deferred, as any error does
        seconds = self._config.timeout
        d = deadline(d, seconds, self._clock, lambda: RequestTimeout(seconds or 0))
        if self._mask is not None:
            d.addErrback(self._masked)
        return d

    def _masked(self, failure: Failure) -> Failure:
        """``failure`` with every secret in its error's text masked (a
        server may echo a secret param into a Location, say)."""
        mask = self._mask
        error = failure.value
        if mask is not None and isinstance(error, Exception):
            for name, value in vars(error).items():
                if isinstance(value, str):
                    setattr(error, name, mask(value))
            error.args = tuple(
                mask(arg) if isinstance(arg, str) else arg for arg in error.args
            )
        return failure

    def _request_error(self, error: Exception, expired: bool, host: str) -> Exception:
        """The named error for a request that got no response headers."""
        found = list(reasons(error))
        if expired:
            seconds = self._config.headers_timeout
            if any(isinstance(e, ConnectingCancelledError) for e in found):
                return ConnectTimeout(seconds)
            return HeadersTimeout(seconds)
        for e in found:
            if isinstance(e, FetchError):
                return e
            if isinstance(e, (CancelledError, ConnectingCancelledError)):
                return CancelledError()  # cancelled from outside: stay cancelled
        for e in found:
            if out_of_descriptors(e):
                return TooManyOpenFiles(descriptor_limit())
            if isinstance(e, VerificationError):  # a caller's tls_policy
                return TLSCertificateError(
                    host, f"the certificate is not for {host!r}", "hostname"
                )
            if type(e).__module__.startswith("OpenSSL"):
                reason = _short_tls(e)
                if "certificate verify failed" in reason:  # a caller's tls_policy
                    return TLSCertificateError(host, reason, "invalid")
                refused = certificate_problem(e)
                if refused is not None:
                    return TLSCertificateError(host, *refused)
                return ConnectionFailed(f"TLS failed ({reason})")
            if isinstance(e, ConnectTimeoutError):
                return ConnectTimeout(self._config.connect_timeout)
            if isinstance(e, DNSLookupError):
                if descriptors_exhausted():  # getaddrinfo could not open files
                    return TooManyOpenFiles(descriptor_limit())
                return DNSFailed(f"DNS lookup failed ({e})")
            if isinstance(e, ConnectionRefusedError):
                return ConnectionFailed("connection refused")
            if isinstance(e, ConnectError):
                return ConnectionFailed(f"cannot connect ({e})")
        if isinstance(error, ResponseNeverReceived):
            return ConnectionFailed("connection closed before the response")
        if isinstance(error, RequestTransmissionFailed):
            return ConnectionFailed("connection lost while sending the request")
        inner = found[-1]
        return ConnectionFailed(f"{type(inner).__name__}: {inner}".rstrip(": "))

    def _status_error(self, status: int, response: Any) -> Exception:
        """The exception for a status that is not ok and not followed."""
        config = self._config
        if status not in config.throttle_statuses | config.retry_statuses:
            return HTTPStatusError(status)
        delay = parse_retry_after(
            _header(response, b"retry-after"), self._clock.seconds()
        )
        if delay is not None:
            delay = min(delay, config.max_retry_after)
        if status in config.throttle_statuses:
            if delay is not None:
                return HTTPThrottled(status, delay)
            default = min(config.default_retry_after, config.max_retry_after)
            return HTTPThrottled(status, default, guessed=True)
        if delay is None:
            return RetryableStatus(status)
        return HTTPRetryAfter(status, delay)

    def _file_name(self, sha256: str, job_id: object) -> str:
        """The saved body's file name: its SHA-256, or its job id made safe."""
        if self._config.save_name != "id" or job_id is None:
            return sha256
        text = str(job_id)
        name = quote(text, safe="-_.~@+=,")
        if name.startswith(".") or not 0 < len(name) <= 200:
            return "id-" + hashlib.sha256(text.encode()).hexdigest()
        return name


class _Fetch:
    """One call of :meth:`Fetcher.fetch`: its requests, up to the last
    response's body, as a chain of callbacks on one Deferred.

    (Written as callbacks, not as a coroutine: fetching is the hot path of
    a run, and resuming a coroutine over Deferreds costs several times as
    much as a callback.)  Cancelling the Deferred :meth:`send` returns
    cancels whatever is underway: the request, or the reading of a body.
    """

    __slots__ = (
        "_quick",
        "_sent",
        "body",
        "config",
        "current",
        "downgraded",
        "expired",
        "fd_wait",
        "fetcher",
        "headers",
        "job_id",
        "keep",
        "method",
        "redirects",
        "request",
        "started",
        "timer",
        "url",
    )

    def __init__(
        self, fetcher: Fetcher, url: object, job_id: object, robots: bool = False
    ) -> None:
        config = fetcher._robots_config if robots else fetcher._config
        self.config = config
        self.keep = robots  # a robots.txt: its body is kept and returned
        self.fetcher = fetcher
        self.url = url
        self.job_id = job_id
        self.started: float = fetcher._clock.seconds()
        # Most URLs are plain text already in URI form (``_quick``): it goes
        # on the wire as it is, and is parsed (cheaply, see ``quick_uri``)
        # only if something asks for ``sent``.  Anything else is parsed fully
        # now, as is a redirect's target (``current``).
        self.current: DecodedURL | None = None
        self._quick: str | None = None
        self._sent: DecodedURL | EncodedURL | None = None
        if (
            isinstance(url, str)
            and not config.params
            and is_quick_uri(url, config.allowed_schemes)
        ):
            self._quick = url
        else:
            current = check_url(url, config.allowed_schemes)
            for name, value in () if robots else fetcher._params:
                current = current.add(name, value)
            self.current = self._sent = current
        self.method = config.method
        self.body = config.body
        self.headers = fetcher._headers
        self.redirects = 0
        self.downgraded = False  # a redirect went from https to http
        self.fd_wait = 0.0  # seconds waited for file descriptors so far
        self.expired = False
        self.request: Deferred[Any] | None = None
        self.timer: Any = None

    @property
    def sent(self) -> DecodedURL | EncodedURL:
        """The URL of the request being sent (parsed on first use for a URL
        in the quick shape)."""
        sent = self._sent
        if sent is None:
            assert self._quick is not None
            sent = self._sent = quick_uri(self._quick, self.config.allowed_schemes)
            assert sent is not None  # is_quick_uri said so
        return sent

    # -- one request, up to its response headers, within headers_timeout

    def allowed(self) -> Deferred[FetchResult]:
        """Send the request once robots.txt allows the URL."""
        robots = self.fetcher._robots
        assert robots is not None
        current = self.current
        if current is None:
            current = self.current = check_url(self.url, self.config.allowed_schemes)
        return robots.check(current).addCallback(self._send)

    def _send(self, _: object) -> Deferred[FetchResult]:
        return self.send()

    def send(self) -> Deferred[FetchResult]:
        """Send the request; the returned Deferred fires with the result."""
        fetcher = self.fetcher
        headers = self.headers
        if fetcher._host_headers and not self.downgraded:
            headers = self._with_host_headers()
        self.expired = False
        d: Deferred[Any]
        if self.body is None:
            quick = self._quick
            if quick is not None:
                uri = quick.encode("ascii")  # its own URI form
            else:
                sent = self.sent
                encoded = sent.encoded_url if isinstance(sent, DecodedURL) else sent
                uri = encoded.to_uri().to_text().encode("ascii")
            if fetcher._lean is not None and self.method == "GET":
                block, has_host = fetcher._header_block(headers)
                d = fetcher._lean.request(uri, block, add_host=not has_host)
            elif fetcher._direct is not None:
                method = self.method.encode("ascii").upper()
                d = fetcher._direct.send(method, uri, headers)
            else:
                d = fetcher._agent.request(  # type: ignore[no-untyped-call]
                    self.method.encode("ascii").upper(), uri, _raw(headers), None
                )
        else:
            raw = _raw(headers)
            d = fetcher._client.request(
                self.method,
                self.sent,
                headers=raw,
                data=self.body,
                allow_redirects=False,
                unbuffered=True,
            )
        self.request = d
        self.timer = fetcher._clock.callLater(self.config.headers_timeout, self._expire)
        return d.addBoth(self._got_headers)

    def _with_host_headers(self) -> tuple[tuple[str, str], ...]:
        """The headers, with those of ``host_headers`` for this request's
        host in place of any of the same name."""
        host = str(self.sent.host).lower()
        extra: list[tuple[str, str]] = []
        for entry in self.fetcher._host_headers:
            if entry.matches(host):
                extra.extend(entry.pairs)
        if not extra:
            return self.headers
        replaced = {name.lower() for name, _ in extra}
        return (
            *((n, v) for n, v in self.headers if n.lower() not in replaced),
            *extra,
        )

    def _expire(self) -> None:
        self.expired = True
        assert self.request is not None
        self.request.cancel()

    def _got_headers(self, result: Any) -> Any:
        timer = self.timer
        if timer.active():
            timer.cancel()
        self.request = None
        if isinstance(result, Failure):
            error = result.value
            if not isinstance(error, Exception):
                return result
            problem = self.fetcher._request_error(
                error, self.expired, str(self.sent.host)
            )
            if isinstance(problem, TooManyOpenFiles):
                return self._wait_for_descriptors(problem)
            raise problem
        return self._response(result)

    def _wait_for_descriptors(self, problem: TooManyOpenFiles) -> Any:
        """No descriptor for the connection: free the pool's idle ones and
        send again after a backoff, for up to ``descriptor_wait`` seconds in
        all; the URL is not at fault, so this is no attempt of the job's."""
        fetcher = self.fetcher
        delay = min(_FD_WAIT_MAX, max(_FD_WAIT_FIRST, self.fd_wait))
        if self.fd_wait + delay > fetcher._descriptor_wait:
            raise problem
        self.fd_wait += delay
        for pool in fetcher._pools():
            pool.close_idle(_every_key)
        return deferLater(fetcher._clock, delay, self.send)

    # -- what the response means

    def _response(self, response: Any) -> Any:
        fetcher = self.fetcher
        config = self.config
        status: int = response.code
        if status in config.ok_statuses:
            return self._save(response, status)
        location = _location(response) if status in _REDIRECTS else None
        # Read and discard a non-ok body so its connection can be reused; a
        # long, slow or broken one is dropped with its connection instead
        # (and the status stays the outcome).  Its bytes are not decoded.
        limit = min(config.max_body, _DRAIN_LIMIT)
        drained = read_body(
            response, None, limit, config.body_timeout, fetcher._clock, decode=False
        )
        drained.addErrback(_ignore_fetch_error)
        return drained.addCallback(self._drained, response, status, location)

    def _drained(
        self, _: object, response: Any, status: int, location: str | None
    ) -> Any:
        config = self.config
        if location is None:
            raise self.fetcher._status_error(status, response)
        if self.redirects >= config.max_redirects:
            raise TooManyRedirects(config.max_redirects, location)
        self.redirects += 1
        current = self.current
        if current is None:
            current = check_url(self.url, config.allowed_schemes)
        target = _redirect_target(current, location, config.allowed_schemes)
        if _origin(target) != _origin(current):
            bound = self.fetcher._origin_bound
            self.headers = tuple(h for h in self.headers if h[0].lower() not in bound)
        if (status == 303 and self.method != "HEAD") or (
            status in (301, 302) and self.method == "POST"
        ):
            self.method, self.body = "GET", None
        if current.scheme == "https" and target.scheme == "http":
            self.downgraded = True
        self.current = self._sent = target
        self._quick = None
        robots = self.fetcher._robots
        if robots is not None and not self.keep:
            return robots.check(target).addCallback(self._send)
        return self.send()

    # -- an ok body, streamed: its size, SHA-256 and saved path

    def _save(self, response: Any, status: int) -> Any:
        fetcher = self.fetcher
        config = self.config
        if self.keep:
            return self._keep(response, status)
        try:
            sink = BodySink(config.save_dir)
        except OSError as e:
            error: Exception = SaveError(f"cannot save body: {e}")
            if out_of_descriptors(e):
                error = TooManyOpenFiles(descriptor_limit())
            return drop_body(response, fetcher._clock).addCallback(_raise, error)
        d = read_body(
            response, sink, config.max_body, config.body_timeout, fetcher._clock
        )
        d.addCallbacks(
            self._saved,
            _save_error,
            callbackArgs=(sink, response, status),
        )
        return d.addBoth(_discard, sink)

    def _keep(self, response: Any, status: int) -> Any:
        """Read a robots.txt body into memory: ``(status, body)``; one past
        the size cap is cut to its whole lines within it."""
        sink = _KeptBody()
        config = self.config
        d = read_body(
            response,
            sink,
            config.max_body,
            config.body_timeout,
            self.fetcher._clock,
            truncate=True,
        )
        return d.addCallbacks(
            lambda _: (status, b"".join(sink.chunks)),
            _cut_body,
            errbackArgs=(status, sink),
        )

    def _saved(self, size: int, sink: BodySink, response: Any, status: int) -> Any:
        fetcher = self.fetcher
        sha256 = sink.sha256
        try:
            path = sink.commit(fetcher._file_name(sha256, self.job_id))
        except OSError as e:
            raise SaveError(f"cannot save body: {e}") from None
        url = self.url
        current = self.current
        if current is None:
            assert isinstance(url, str)
            given = final_url = url  # quick_uri: the text is its URI form
        else:
            given = url if isinstance(url, str) else current.to_text()
            final_url = uri_text(current)
        if fetcher._mask is not None:
            final_url = fetcher._mask(final_url)
        return FetchResult(
            url=given,
            final_url=final_url,
            status=status,
            content_type=_header(response, b"content-type"),
            bytes=size,
            sha256=sha256,
            body_path=path,
            elapsed=fetcher._clock.seconds() - self.started,
            redirects=self.redirects,
        )


def _raw(headers: Sequence[tuple[str, str]]) -> Headers:
    raw = Headers()
    for name, value in headers:
        raw.addRawHeader(name, value)
    return raw


def _every_key(key: object) -> bool:
    return True


class _HostHeaders:
    """The ``host_headers`` of one host pattern, their secrets revealed."""

    __slots__ = ("exact", "pairs", "suffix")

    def __init__(self, pattern: str, pairs: Sequence[tuple[str, str | Secret]]):
        self.exact = None if pattern.startswith("*.") else pattern
        self.suffix = pattern[1:] if pattern.startswith("*.") else None
        self.pairs = tuple((name, reveal(value)) for name, value in pairs)

    def matches(self, host: str) -> bool:
        if self.exact is not None:
            return host == self.exact
        assert self.suffix is not None
        return host.endswith(self.suffix) and len(host) > len(self.suffix)


class _KeptBody(BodySink):
    """A body kept in memory (a robots.txt: at most ``MAX_ROBOTS`` bytes)."""

    def __init__(self) -> None:
        super().__init__(None)
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        super().write(data)
        self.chunks.append(data)


def _cut_body(failure: Failure, status: int, sink: _KeptBody) -> Any:
    """A robots.txt past the size cap: its whole lines within the cap."""
    if not isinstance(failure.value, BodyTooLarge):
        return failure
    body = b"".join(sink.chunks)
    return status, body[: body.rfind(b"\n") + 1]


def _ignore_fetch_error(failure: Failure) -> Failure | None:
    return None if isinstance(failure.value, FetchError) else failure


def _save_error(failure: Failure) -> Failure:
    error = failure.value
    if isinstance(error, OSError):
        raise SaveError(f"cannot save body: {error}") from None
    return failure


def _discard(result: Any, sink: BodySink) -> Any:
    sink.discard()
    return result


def _raise(_: object, error: Exception) -> None:
    raise error


def _short_tls(error: BaseException) -> str:
    """The reason of an OpenSSL error, e.g. "certificate verify failed"."""
    details = error.args[0] if error.args else None
    if isinstance(details, list) and details and isinstance(details[-1], tuple):
        return str(details[-1][-1])
    return str(error) or type(error).__name__


def _failed(error: Exception) -> Deferred[FetchResult]:
    d: Deferred[FetchResult] = Deferred()
    d.errback(error)
    return d


def _header(response: Any, name: bytes) -> str | None:
    values = response.headers.getRawHeaders(name)
    return values[0].decode("latin-1") if values else None


def _location(response: Any) -> str | None:
    location = _header(response, b"location")
    return location.strip() if location and location.strip() else None


def _origin(url: DecodedURL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host.lower(), url.port)


def _redirect_target(
    current: DecodedURL, location: str, allowed_schemes: Sequence[str]
) -> DecodedURL:
    """Where a redirect points, checked like a first URL."""
    try:
        target = current.click(location)
    except ValueError as e:
        raise BadURL(f"redirect to an unparseable Location ({e})", location) from None
    try:
        return check_url(target.to_text(), allowed_schemes)
    except BadURL as e:
        raise BadURL(f"redirect: {e.reason}", location) from None
