"""End to end in headless Chromium: load the page, type a query, see result thumbnails, screenshot.

Needs Debian's ``chromium`` (installed by ``.ci/run``) and the ``playwright`` package. Without them
the test is skipped with its reason in the summary, unless ``XMODAL_REQUIRE_BROWSER=1`` (set by
``.ci/run``): then a missing browser is a failure, so CI always drives the real page."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "serve_search.png"


def _missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[index]')"
    if not (os.environ.get("XMODAL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")):
        return "no chromium on PATH (apt-get install chromium, or set XMODAL_CHROMIUM)"
    return None


@pytest.fixture
def chromium() -> str:
    """The browser's path; skips loudly without one, fails when XMODAL_REQUIRE_BROWSER=1."""
    reason = _missing()
    if reason is not None:
        if os.environ.get("XMODAL_REQUIRE_BROWSER") == "1":
            pytest.fail(f"XMODAL_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(f"BROWSER TEST NOT RUN: {reason}; the search page was not checked in a browser")
    return os.environ.get("XMODAL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def test_search_page_in_headless_chromium(chromium, live_server):
    from playwright.sync_api import sync_playwright

    ARTIFACT.parent.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            page.goto(live_server + "/")
            page.fill("#q", "a red circle")
            page.press("#q", "Enter")
            page.wait_for_selector(".result img", timeout=20_000)
            page.wait_for_function("[...document.querySelectorAll('.result img')].every(i => i.complete && i.naturalWidth > 0)",
                                   timeout=20_000)
            assert page.locator(".result").count() >= 10
            assert page.locator(".result img").count() >= 1 and page.locator(".result video").count() >= 1
            assert page.locator(".result audio").count() >= 1
            assert "results" in page.inner_text("#status")
            page.screenshot(path=str(ARTIFACT), full_page=True)
        finally:
            browser.close()
    assert ARTIFACT.stat().st_size > 1000
