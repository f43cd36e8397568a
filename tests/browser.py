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


_shared: dict[str, Any] = {}


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    # The sync API refuses to start inside a running event loop; the session's asyncio loop is not
    # running while a plain (sync) test runs, so sync tests are the place for browser flows.
    # Every module importing this fixture gets a definition (and so a session-long instance) of
    # its own, but a second sync Playwright in one process finds the first one's loop running and
    # refuses to start: the modules share one, which the first finalizer closes.
    if "browser" not in _shared:
        playwright = sync_playwright().start()
        _shared["playwright"] = playwright
        _shared["browser"] = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
    yield _shared["browser"]
    if "browser" in _shared:
        _shared.pop("browser").close()
        _shared.pop("playwright").stop()


def screenshot(page: Page, name: str, **options: Any) -> Path:
    """Save a full-page screenshot as a test artifact and return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True, **options)
    return path
