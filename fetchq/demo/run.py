"""``fetchq demo``: crawl the embedded demo site with the demo recipe,
``demo.yaml`` in this package (package data, so an installed fetchq has it).

The site is tuned so that what the demo shows happens on any machine, a
small busy one included: each client may make :data:`CLIENT_RATE` requests a
second, well under what the site could serve (24 in flight at 20 ms, about
1,200 a second) and under what even a loaded 2-core machine sends at width
4, so the adaptive controller meets the rate limit (429 with Retry-After)
long before the capacity: each 429 is a drop, the controller cuts the width,
the host is held for the Retry-After, and the run ends up at the site's
rate.

**Resuming.**  ``fetchq demo --dir D`` after an interrupt (or after the end)
goes on with the run in ``D``: the URLs stored in its state name the site's
address, so the site is started again on the same port (a real site keeps
its address too), and the URL file and recipe are left as they are.  If that
port is taken meanwhile, the demo says so and stops; a new ``--dir`` starts
afresh.
"""

from __future__ import annotations

import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
from twisted.internet import defer

from fetchq.demo.site import SiteBehaviour, SiteProcess

__all__ = [
    "BAD_LINES",
    "CLIENT_RATE",
    "DEMO_SITE",
    "demo_recipe_text",
    "demo_run",
    "site_options",
]

DEMO_SITE = SiteBehaviour(
    pages=1500,
    latency=0.02,
    capacity=24,
    overload_latency=0.002,
    client_rate=100.0,
    client_burst=100,
    retry_after=1,
)
"""The demo site: 20 ms answers, slower past 24 in flight (2 ms per extra
request): about 1,200 pages/s at best; and a per-client rate limit of 100
requests a second (100 back to back at first), answered past it with 429 and
Retry-After: 1, which the controller meets long before the capacity.  Some
pages fail once with 500, some are 404, some send their body slowly (the
site's defaults)."""

CLIENT_RATE = int(DEMO_SITE.client_rate or 0)
"""Requests per second the demo site allows a client before answering 429."""
BAD_LINES = ("not a url", "ftp://127.0.0.1/refused-scheme")
"""Lines the demo adds to its URLs on purpose: each is a row recorded as bad
input, so a demo of N pages has N + 2 rows."""


def site_options(behaviour: SiteBehaviour) -> list[str]:
    """The command-line options of ``python -m fetchq.demo.site`` for a
    behaviour (its pages, pace and rate limit; the faults are the site's)."""
    rate = 1e12 if behaviour.client_rate is None else behaviour.client_rate
    return [
        f"--pages={behaviour.pages}",
        f"--latency={behaviour.latency}",
        f"--capacity={behaviour.capacity}",
        f"--overload-latency={behaviour.overload_latency}",
        f"--client-rate={rate}",
        f"--client-burst={behaviour.client_burst}",
        f"--retry-after={behaviour.retry_after}",
    ]


def demo_recipe_text() -> str:
    """The demo recipe (``fetchq/demo/demo.yaml``), read from the installed
    package, wherever and however it is installed."""
    return resources.files("fetchq.demo").joinpath("demo.yaml").read_text("utf-8")


def _earlier_site(urls: Path) -> tuple[str, int] | None:
    """The site address (base URL, pages) an earlier demo in the folder
    wrote its URLs for, or None if there was none."""
    if not urls.exists():
        return None
    base = None
    pages = 0
    with open(urls, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("http://127.0.0.1:") and "/page/" in line:
                pages += 1
                if base is None:
                    base = line.split("/page/", 1)[0]
    if base is None or urlsplit(base).port is None:
        return None
    return base, pages


@defer.inlineCallbacks
def demo_run(
    reactor: Any, pages: int = 1500, where: str | None = None, report: str | None = None
) -> Any:
    """Start the site, write its URLs beside a copy of the demo recipe, run it
    and write its HTML report (``report``, default ``report.html`` beside it).
    A folder with an earlier demo in it is resumed (see the module).

    Returns (through a Deferred) the run's exit status.
    """
    from fetchq.recipe import load_recipe
    from fetchq.run import FetchRun

    folder = Path(where or tempfile.mkdtemp(prefix="fetchq-demo-"))
    (folder / "data").mkdir(parents=True, exist_ok=True)
    urls = folder / "data" / "demo-urls.txt"
    recipe_path = folder / "demo.yaml"
    earlier = _earlier_site(urls)
    port = []
    if earlier is not None:
        base, pages = earlier
        port = [f"--port={urlsplit(base).port}"]
    try:
        site = SiteProcess(*site_options(attrs.evolve(DEMO_SITE, pages=pages)), *port)
    except RuntimeError as e:
        print(f"fetchq demo: {e}", file=sys.stderr)
        if earlier is not None:
            print(
                f"fetchq demo: the URLs in {folder} point at {earlier[0]}; free "
                "that port to resume, or start a new demo with another --dir",
                file=sys.stderr,
            )
        return 2
    try:
        base = site.url
        if earlier is None or not recipe_path.exists():
            recipe_path.write_text(demo_recipe_text(), encoding="utf-8")
        bad = len(BAD_LINES)
        if earlier is None:
            with open(urls, "w", encoding="utf-8") as f:
                for i in range(pages):
                    f.write(f"{base}/page/{i}\n")
                for line in BAD_LINES:
                    f.write(f"{line}\n")
            print(
                f"demo site at {base}; crawling {pages:,} of its URLs, and {bad} "
                f"bad lines on purpose (recorded as bad input): {pages + bad:,} "
                f"rows; it allows {CLIENT_RATE} requests/s, then answers 429",
                file=sys.stderr,
            )
        else:
            print(
                f"demo site at {base} again; resuming the demo in {folder} "
                f"({pages:,} URLs and {bad} bad lines)",
                file=sys.stderr,
            )
        recipe = load_recipe(recipe_path)
        report_path = Path(report) if report else folder / "report.html"
        run = FetchRun(recipe, reactor, handle_signals=True, report=report_path)
        run.resume_hint = f"fetchq demo --dir {folder}"
        code = yield run.run()
    finally:
        served_counts = site.stop()
    served = ", ".join(f"{k} {v}" for k, v in sorted(served_counts.items()))
    print(f"the site answered: {served or 'nothing'}", file=sys.stderr)
    print(f"output: {recipe.output.path}", file=sys.stderr)
    return code
