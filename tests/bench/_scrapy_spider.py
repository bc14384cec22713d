"""The Scrapy side of ``bench_fetch``: one spider fetching every page once.

Imported only in the Scrapy child process (``bench_fetch --client scrapy``),
so nothing else pays for importing Scrapy.  Settings follow the issue:
50 requests at once (50 per domain), no AutoThrottle, no robots.txt, no
delay, no cookies, no telnet console, warnings only.  Everything else is
Scrapy's default, its asyncio reactor included.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import scrapy
from scrapy.crawler import CrawlerProcess
from twisted.python.failure import Failure


def settings(width: int) -> dict[str, Any]:
    return {
        "CONCURRENT_REQUESTS": width,
        "CONCURRENT_REQUESTS_PER_DOMAIN": width,
        "AUTOTHROTTLE_ENABLED": False,
        "ROBOTSTXT_OBEY": False,
        "DOWNLOAD_DELAY": 0,
        "RANDOMIZE_DOWNLOAD_DELAY": False,
        "COOKIES_ENABLED": False,
        "TELNETCONSOLE_ENABLED": False,
        "LOG_LEVEL": "WARNING",
    }


class Tally:
    """What the spider saw, and when the first request and last response were."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last: float | None = None
        self.statuses: Counter[int] = Counter()
        self.bytes = 0
        self.errors: Counter[str] = Counter()
        self.cpu_first = 0.0
        self.cpu_last = 0.0


class PagesSpider(scrapy.Spider):
    name = "pages"

    def __init__(self, urls: list[str], tally: Tally, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.urls = urls
        self.tally = tally

    async def start(self) -> AsyncIterator[Any]:
        tally = self.tally
        tally.first = time.perf_counter()
        tally.cpu_first = time.process_time()
        for url in self.urls:
            yield scrapy.Request(url, callback=self.parse, errback=self.failed)

    def parse(self, response: scrapy.http.Response) -> None:
        tally = self.tally
        tally.statuses[response.status] += 1
        tally.bytes += len(response.body)
        tally.last = time.perf_counter()
        tally.cpu_last = time.process_time()

    def failed(self, failure: Failure) -> None:
        self.tally.errors[type(failure.value).__name__] += 1
        self.tally.last = time.perf_counter()


def crawl(urls: list[str], width: int) -> Tally:
    """Fetch every URL with Scrapy (starts and stops the reactor)."""
    tally = Tally()
    process = CrawlerProcess(settings(width))
    process.crawl(PagesSpider, urls=urls, tally=tally)
    process.start()
    return tally
