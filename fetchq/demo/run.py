"""``fetchq demo``: crawl the embedded demo site with ``recipes/demo.yaml``."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer

from fetchq.demo.site import DemoSite, SiteBehaviour

__all__ = ["demo_recipe_path", "demo_run"]


def demo_recipe_path() -> Path:
    """``recipes/demo.yaml`` of this checkout."""
    return Path(__file__).resolve().parent.parent.parent / "recipes" / "demo.yaml"


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
    shutil.copyfile(demo_recipe_path(), recipe_path)
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
