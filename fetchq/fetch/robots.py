"""Obeying robots.txt (``fetch.robots: obey``), read with Protego, Scrapy's
parser.

Each site (scheme, host and port) has its robots.txt read once, by the
fetcher that fetches its pages (the same timeouts, proxies, address guard
and TLS settings; at most :data:`MAX_ROBOTS` bytes are parsed, the rest
ignored, as RFC 9309 allows), and kept for the rest of the run in a
bounded LRU cache.  Fetches of one site that arrive while its robots.txt is
being read wait for that one request.  What its answer means (RFC 9309):

- **2xx**: the rules are parsed; a URL they disallow for our user agent
  (the ``User-Agent`` header's product token, matched as Protego matches
  it) fails with :class:`~fetchq.http.errors.RobotsDisallowed`, which is
  not retried and which a run's failure breaker does not count.  Its
  ``Crawl-delay`` (and ``Request-rate``) become the site's pace: the
  ``on_rate`` callback gets the host's lane key and the rate, which a run
  applies only if slower than its own per-host rate.
- **4xx other than 429**, a redirect loop, a body that does not decode:
  "unavailable": everything is allowed.
- **5xx or 429**: "unreachable": nothing of the site is fetched for
  :data:`RETRY_UNREACHABLE` seconds; each fetch meanwhile fails with
  :class:`~fetchq.http.errors.RobotsUnavailable` (a ``Throttled``: the job
  is retried after that delay and the host's lane held), and the next fetch
  after it reads robots.txt again.
- **No answer at all** (connection refused, DNS, a timeout): the fetch
  fails with that very error (the page could not have been fetched either),
  retried as such; robots.txt is asked for again on the next attempt.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from hyperlink import DecodedURL
from protego import Protego
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from fetchq.http.errors import (
    BadURL,
    ContentDecodingError,
    RobotsDisallowed,
    RobotsUnavailable,
    TooManyRedirects,
)
from fetchq.http.urls import uri_text

__all__ = ["CACHE_SIZE", "MAX_ROBOTS", "RETRY_UNREACHABLE", "RobotsCache"]

MAX_ROBOTS = 500 * 1024
"""The most bytes of a robots.txt parsed (RFC 9309 asks for at least 500 KiB)."""

RETRY_UNREACHABLE = 60.0
"""Seconds a site whose robots.txt answered 5xx or 429 is left alone before
its robots.txt is asked for again."""

CACHE_SIZE = 4096
"""Sites whose robots.txt is kept at once (least recently used dropped)."""

_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]
ReadRobots = Callable[[str], "Deferred[tuple[int, bytes]]"]


class _Site:
    """What is known of one site's robots.txt."""

    __slots__ = ("cause", "rules", "until", "waiters")

    def __init__(self) -> None:
        self.rules: Protego | None = None  # None: everything allowed
        self.until = 0.0  # unreachable until then (clock time)
        self.cause = ""
        self.waiters: list[Deferred[None]] | None = None  # reading now


class RobotsCache:
    """Which URLs the sites' robots.txt files allow, read as needed.

    Args:
        read: fetches a robots.txt URL; fires with ``(status, body)`` (the
            body cut at :data:`MAX_ROBOTS`), or fails with a
            :class:`~fetchq.http.errors.FetchError`.
        clock: ``seconds()`` and ``callLater``.
        agent: the user agent matched against robots.txt groups.
        on_rate: called with a host's lane key and the most requests per
            second its robots.txt asks for, when it asks.
        size: sites kept at once.
        retry: seconds a site whose robots.txt answered 5xx or 429 is left
            alone.
    """

    def __init__(
        self,
        read: ReadRobots,
        clock: Any,
        agent: str,
        on_rate: Callable[[str, float], None] | None = None,
        size: int = CACHE_SIZE,
        retry: float = RETRY_UNREACHABLE,
    ) -> None:
        self._retry = retry
        self._read = read
        self._clock = clock
        self.agent = agent
        self.on_rate = on_rate
        self._size = size
        self._sites: OrderedDict[Origin, _Site] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sites)

    def check(self, url: DecodedURL) -> Deferred[None]:
        """Fires when ``url`` may be fetched; fails with ``RobotsDisallowed``
        if robots.txt disallows it, ``RobotsUnavailable`` if robots.txt
        answered 5xx or 429 lately, or the error that kept robots.txt from
        being read."""
        scheme = url.scheme
        port = url.port or _DEFAULT_PORTS.get(scheme, 0)
        origin = (scheme, url.host.lower(), port)
        sites = self._sites
        site = sites.get(origin)
        if site is not None:
            sites.move_to_end(origin)
            if site.waiters is not None:
                return self._wait(site).addCallback(self._judge, site, origin, url)
            if site.until and site.until <= self._clock.seconds():
                # Unreachable a while ago: ask again.
                return self._fetch(origin, site).addCallback(
                    self._judge, site, origin, url
                )
            return self._answer(site, origin, url)
        site = sites[origin] = _Site()
        self._trim()
        return self._fetch(origin, site).addCallback(self._judge, site, origin, url)

    def _trim(self) -> None:
        sites = self._sites
        while len(sites) > self._size:
            for origin, site in sites.items():
                if site.waiters is None:
                    del sites[origin]
                    break
            else:
                return

    def _wait(self, site: _Site) -> Deferred[None]:
        waiters = site.waiters
        assert waiters is not None

        def cancel(d: Deferred[None]) -> None:
            if d in waiters:
                waiters.remove(d)

        d: Deferred[None] = Deferred(cancel)
        waiters.append(d)
        return d

    def _fetch(self, origin: Origin, site: _Site) -> Deferred[None]:
        """Read the site's robots.txt; the returned Deferred fires once it is
        known (or fails with the error that kept it from being read)."""
        scheme, host, port = origin
        default = _DEFAULT_PORTS.get(scheme)
        where = host if port == default else f"{host}:{port}"
        site.waiters = []
        first = self._wait(site)
        reading = self._read(f"{scheme}://{where}/robots.txt")
        reading.addCallbacks(
            self._got, self._failed, callbackArgs=(origin, site), errbackArgs=(site,)
        )
        return first

    def _release(self, site: _Site, failure: Failure | None) -> None:
        waiters, site.waiters = site.waiters or [], None
        for d in waiters:
            if failure is None:
                d.callback(None)
            else:
                d.errback(failure)

    def _got(self, answer: tuple[int, bytes], origin: Origin, site: _Site) -> None:
        status, body = answer
        site.rules = None
        site.until = 0.0
        if 200 <= status < 300:
            text = body.decode("utf-8", "replace")
            if len(body) >= MAX_ROBOTS:
                text = text.rsplit("\n", 1)[0]  # a line cut short is dropped
            site.rules = Protego.parse(text)
            self._pace(origin, site.rules)
        elif status == 429 or status >= 500:
            site.until = self._clock.seconds() + self._retry
            site.cause = f"HTTP {status}"
        self._release(site, None)

    def _failed(self, failure: Failure, site: _Site) -> None:
        error = failure.value
        if isinstance(error, (TooManyRedirects, BadURL, ContentDecodingError)):
            site.rules = None  # unavailable: everything allowed
            site.until = 0.0
            self._release(site, None)
            return
        # No answer (or no way to it): the page could not be fetched either,
        # and that error is the fetch's.  The site is forgotten, so the next
        # attempt asks again.
        for origin, known in list(self._sites.items()):
            if known is site:
                del self._sites[origin]
        self._release(site, failure)

    def _pace(self, origin: Origin, rules: Protego) -> None:
        if self.on_rate is None:
            return
        rate = None
        delay = rules.crawl_delay(self.agent)
        if delay is not None and delay > 0:
            rate = 1.0 / delay
        request_rate = rules.request_rate(self.agent)
        if request_rate is not None and request_rate.seconds > 0:
            asked = request_rate.requests / request_rate.seconds
            if asked > 0:
                rate = asked if rate is None else min(rate, asked)
        if rate is not None:
            scheme, host, port = origin
            key = host if port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
            self.on_rate(key, rate)

    def _judge(self, _: object, site: _Site, origin: Origin, url: DecodedURL) -> Any:
        return self._answer(site, origin, url)

    def _answer(self, site: _Site, origin: Origin, url: DecodedURL) -> Deferred[None]:
        now = self._clock.seconds()
        if site.until > now:
            scheme, host, port = origin
            default = _DEFAULT_PORTS.get(scheme)
            where = f"{scheme}://{host}" + ("" if port == default else f":{port}")
            return fail(RobotsUnavailable(where, site.until - now, site.cause))
        rules = site.rules
        if rules is not None:
            text = uri_text(url)
            if not rules.can_fetch(text, self.agent):
                return fail(RobotsDisallowed(text, self.agent))
        return succeed(None)
