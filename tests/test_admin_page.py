"""The admin page in a real browser (headless Chromium through playwright):
it logs in through a one-time link, draws the report's charts, and a width
typed on the page changes the running run's width."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.admin_target import Target

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def browser() -> tuple[Any, Any]:
    """(playwright, browser), or SkipTest saying why not."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SkipTest("playwright is not installed") from None
    if not os.path.exists(CHROMIUM):
        raise SkipTest(f"no chromium at {CHROMIUM}")
    pw = sync_playwright().start()
    try:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
    except Exception as e:
        pw.stop()
        raise SkipTest(f"chromium does not start: {e}") from None
    return pw, chromium


class PageTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.pw, self.browser = browser()
        self.addCleanup(self.pw.stop)
        self.addCleanup(self.browser.close)
        self.dir = Path(tempfile.mkdtemp(prefix="fetchq-page-"))
        self.target = Target(self.dir / "run")
        self.addCleanup(self.target.stop)
        self.shots = Path(os.environ.get("FETCHQ_SCREENSHOTS", str(self.dir)))
        self.shots.mkdir(parents=True, exist_ok=True)

    def test_page_changes_the_width_of_the_running_run(self) -> None:
        """The one-time link opens the page; its charts draw; setting the
        width on the page changes the run's width (seen through the API)
        and the page then shows it; a second use of the link is refused."""
        _, link = self.target.call("POST", "/api/v1/login-link", {})
        page = self.browser.new_page(viewport={"width": 1280, "height": 1400})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(link["url"])
        page.wait_for_selector('body[data-state="running"]', timeout=20_000)
        page.wait_for_selector('body[data-rendered="ok"]', timeout=20_000)
        page.wait_for_timeout(3500)  # a few polls: lanes, jobs, chart data
        page.screenshot(path=str(self.shots / "admin-before.png"), full_page=True)
        self.assertEqual(page.input_value("#width-input"), "2")

        page.fill("#width-input", "9")
        clicked = time.monotonic()
        page.click("#width-form button")
        page.wait_for_selector("#message:has-text('width is now 9')", timeout=10_000)
        answered = time.monotonic() - clicked
        _, status = self.target.call("GET", "/api/v1/status")
        self.assertEqual(status["width"], 9)
        page.wait_for_selector('body[data-width="9"]', timeout=10_000)
        page.wait_for_timeout(2500)
        page.screenshot(path=str(self.shots / "admin-after.png"), full_page=True)
        self.assertEqual(errors, [])
        print(f"width change answered {answered * 1000:.0f} ms after the click")

        again = self.browser.new_page()
        response = again.goto(link["url"])
        self.assertEqual(response.status, 403)
