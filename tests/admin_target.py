"""A ``fetchq run --admin`` to steer from a test, in its own process.

    python -m tests.admin_target DIR [PAGES] [-- EXTRA fetchq run ARGS]

Serves a slow site (every page answers after 0.2 s) on a free loopback
port in this process, writes ``DIR/urls.txt`` (PAGES URLs, default 100000)
and ``DIR/recipe.yaml``, then runs ``fetchq run DIR/recipe.yaml --admin 0``
(plus EXTRA): the admin file beside the state says the URL and token.  With
``$ADMIN_TARGET_IN_RECIPE`` set, the recipe's ``admin`` section says where
to listen (``metrics_open: true``) instead of ``--admin``; with
``$ADMIN_TARGET_STATE_URL`` the run's state is that Redis.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

RECIPE = """\
kind: fetch
input:
  path: urls.txt
output:
  path: out.jsonl
state:
  path: state.sqlite
queue:
  width: 2
  per_host:
    width: null
fetch:
  allow_private: true
  headers:
    Authorization: ${ADMIN_TEST_SECRET}
"""


class Slow(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> Any:
        def answer() -> None:
            if not request._disconnected:
                request.write(b"ok")
                request.finish()

        reactor.callLater(0.2, answer)  # type: ignore[attr-defined]
        return NOT_DONE_YET


def main(argv: list[str]) -> int:
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    folder = Path(argv[0])
    pages = int(argv[1]) if len(argv) > 1 else 100_000
    port = reactor.listenTCP(0, Site(Slow()), interface="127.0.0.1")  # type: ignore[attr-defined]
    base = f"http://127.0.0.1:{port.getHost().port}"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "urls.txt", "w", encoding="utf-8") as f:
        for i in range(pages):
            f.write(f"{base}/page/{i}\n")
    recipe, admin = RECIPE, ["--admin", "0"]
    if os.environ.get("ADMIN_TARGET_STATE_URL"):
        name = f"reach{os.getpid()}"
        recipe = recipe.replace(
            "  path: state.sqlite\n",
            f"  url: {os.environ['ADMIN_TARGET_STATE_URL']}\n  run: {name}\n",
        )
    if os.environ.get("ADMIN_TARGET_IN_RECIPE"):
        recipe += "admin:\n  listen: 0\n  metrics_open: true\n"
        admin = []
    (folder / "recipe.yaml").write_text(recipe, encoding="utf-8")
    from fetchq import cli

    return cli.main(["run", str(folder / "recipe.yaml"), *admin, *extra])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


# -- for the tests that start it --------------------------------------------

SECRET = "Bearer s3cret-header-value-7f3a9c"
"""The recipe's Authorization header: must never appear in an answer."""


class Target:
    """``python -m tests.admin_target`` in a subprocess, until ``stop()``."""

    def __init__(
        self,
        folder: Path,
        pages: int = 100_000,
        *extra: str,
        in_recipe: bool = False,
    ) -> None:
        import json
        import os
        import subprocess
        import time

        root = Path(__file__).resolve().parent.parent
        self.folder = folder
        self.recipe = folder / "recipe.yaml"
        self.admin_file = folder / "state.sqlite.admin"
        if os.environ.get("ADMIN_TARGET_STATE_URL"):  # beside the default path
            self.admin_file = folder / "out.jsonl.state.sqlite.admin"
        env = dict(os.environ, PYTHONPATH=str(root), ADMIN_TEST_SECRET=SECRET)
        env.pop("FETCHQ_ADMIN_TOKEN", None)
        if in_recipe:
            env["ADMIN_TARGET_IN_RECIPE"] = "1"
        self.stderr = open(folder.parent / f"{folder.name}.stderr", "w+")  # noqa: SIM115
        argv = [sys.executable, "-m", "tests.admin_target", str(folder), str(pages)]
        if extra:
            argv += ["--", *extra]
        self.process = subprocess.Popen(
            argv, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=self.stderr
        )
        deadline = time.monotonic() + 60
        while not self.admin_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                said = self.log()
                self.stop()
                raise RuntimeError(f"the admin target did not start: {said}")
            time.sleep(0.05)
        data = json.loads(self.admin_file.read_text())
        self.url: str = data["url"]
        self.token: str = data["token"]

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One API call with the token."""
        from fetchq.admin.ctl import request

        return request(self.url, self.token, method, path, body)

    def log(self) -> str:
        """What the run wrote on stderr so far."""
        self.stderr.flush()
        self.stderr.seek(0)
        return self.stderr.read()

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the run to end; its exit status."""
        return self.process.wait(timeout)

    def stop(self) -> None:
        """Kill the run if it still goes."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.stderr.close()
