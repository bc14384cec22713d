"""``fetchq demo``: crawl the embedded demo site with the demo recipe,
``demo.yaml`` in this package (package data, so an installed fetchq has it)."""

from __future__ import annotations

import sys
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

from twisted.internet import defer

from fetchq.demo.site import DemoSite, SiteBehaviour

__all__ = ["demo_recipe_text", "demo_run"]


def demo_recipe_text() -> str:
    """The demo recipe (``fetchq/demo/demo.yaml``), read from the installed
    package, wherever and however it is installed."""
    return resources.files("fetchq.demo").joinpath("demo.yaml").read_text("utf-8")


@defer.inlineCallbacks
def demo_run(reactor: Any, pages: int = 3000, where: str | None = None) -> Any:
    """Start the site, write its URLs beside a copy of the demo recipe, run it.

    Returns (through a Deferred) the run's exit status.
    """
    from fetchq.recipe import load_recipe
    from fetchq.run import FetchRun

    # A per-client limit below the recipe's rate, so the crawl meets 429s.
    site = DemoSite(reactor, SiteBehaviour(pages=pages, client_rate=400.0))
    port: Any = site.listen()
    base = f"http://127.0.0.1:{port.getHost().port}"
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
    try:
        code = yield FetchRun(recipe, reactor, handle_signals=True).run()
    finally:
        yield port.stopListening()
    served = ", ".join(f"{k} {v}" for k, v in sorted(site.served.items()))
    print(f"the site answered: {served}", file=sys.stderr)
    print(f"output: {recipe.output.path}", file=sys.stderr)
    return code
