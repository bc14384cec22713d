"""``fetchq demo``: crawl the embedded demo site with the demo recipe,
``demo.yaml`` in this package (package data, so an installed fetchq has it)."""

from __future__ import annotations

import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from twisted.internet import defer

from fetchq.demo.site import SiteProcess

__all__ = ["demo_recipe_text", "demo_run"]


def demo_recipe_text() -> str:
    """The demo recipe (``fetchq/demo/demo.yaml``), read from the installed
    package, wherever and however it is installed."""
    return resources.files("fetchq.demo").joinpath("demo.yaml").read_text("utf-8")


@defer.inlineCallbacks
def demo_run(
    reactor: Any, pages: int = 3000, where: str | None = None, report: str | None = None
) -> Any:
    """Start the site, write its URLs beside a copy of the demo recipe, run it
    and write its HTML report (``report``, default ``report.html`` beside it).

    Returns (through a Deferred) the run's exit status.
    """
    from fetchq.recipe import load_recipe
    from fetchq.run import FetchRun

    # Capacity 24 at 50 ms: about 480 pages/s at best; past 24 in flight each
    # answer slows down by 2 ms per extra request, and past 600 requests/s a
    # client gets 429s.  The adaptive controller has to find the width.  The
    # site runs in a process of its own, as a real one would.
    site = SiteProcess(
        f"--pages={pages}",
        "--latency=0.05",
        "--capacity=24",
        "--overload-latency=0.002",
        "--client-rate=600",
    )
    try:
        base = site.url
        folder = Path(where or tempfile.mkdtemp(prefix="fetchq-demo-"))
        (folder / "data").mkdir(parents=True, exist_ok=True)
        recipe_path = folder / "demo.yaml"
        recipe_path.write_text(demo_recipe_text(), encoding="utf-8")
        with open(folder / "data" / "demo-urls.txt", "w", encoding="utf-8") as f:
            for i in range(pages):
                f.write(f"{base}/page/{i}\n")
            f.write("not a url\n")
            f.write("ftp://127.0.0.1/refused-scheme\n")
        print(f"demo site at {base}; crawling {pages} of its URLs", file=sys.stderr)
        recipe = load_recipe(recipe_path)
        report_path = Path(report) if report else folder / "report.html"
        run = FetchRun(recipe, reactor, handle_signals=True, report=report_path)
        code = yield run.run()
    finally:
        served_counts = site.stop()
    served = ", ".join(f"{k} {v}" for k, v in sorted(served_counts.items()))
    print(f"the site answered: {served}", file=sys.stderr)
    print(f"output: {recipe.output.path}", file=sys.stderr)
    return code
