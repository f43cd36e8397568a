"""A real browser for tests of what a person sees: Playwright driving Debian's Chromium.

Playwright's own browser builds cannot be downloaded here, so the tests launch the system's
Chromium (``/usr/bin/chromium``, or ``GUANAI_CHROMIUM``) through ``executable_path``. ``./run test``
installs it with ``fonts-wqy-microhei`` (Chinese renders as boxes without a CJK font) when missing.

Use in a test module::

    from tests.browser import browser, screenshot  # noqa: F401  (pytest fixtures)

    def test_page(browser, api_server):
        page = browser.new_page(viewport={"width": 360, "height": 780})
        page.goto(api_server.base_url + "/app")
        screenshot(page, "volunteer-tasks-360")

Screenshots go to ``test-artifacts/screens/`` (ignored by git); look at them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screens"

# Without the background-networking flags Chromium keeps dialling out of a machine whose network
# is closed; --no-sandbox because the tests run as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_path() -> str:
    configured = os.environ.get("GUANAI_CHROMIUM")
    found = configured or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise RuntimeError(
            "browser tests need Debian's chromium: apt-get install chromium fonts-wqy-microhei "
            "(./run test installs them when run as root), or set GUANAI_CHROMIUM"
        )
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # One Playwright per test module, stopped at the module's end: a sync Playwright keeps its
    # event loop set on the thread while it lives, so a session-long one would break every later
    # test that calls asyncio.run(), and a second one cannot start beside it. Sync tests only: the
    # sync API refuses to start inside a running event loop.
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


def screenshot(page: Page, name: str, **options: Any) -> Path:
    """Save a full-page screenshot as a test artifact and return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True, **options)
    return path
