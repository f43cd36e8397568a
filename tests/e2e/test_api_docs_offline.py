"""The API docs render in a real browser with the network cut off (issue 12): ReDoc at /schema and
Swagger UI at /schema/swagger load their scripts and styles from the application itself, and
their Content-Security-Policy allows nothing from elsewhere."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route

from api.docs import DOCS_CSP
from tests.api_support import ApiServer, api_server  # noqa: F401 - fixtures
from tests.browser import ARTIFACTS, browser  # noqa: F401 - fixture

TITLE = "Guanai (关爱) API"


class Offline:
    """A browser context that reaches the test server and nothing else, and remembers what it
    tried to reach and what the page complained about."""

    def __init__(self, browser: Browser, base_url: str) -> None:
        self.base_url = base_url
        self.refused: list[str] = []
        self.complaints: list[str] = []
        self.context: BrowserContext = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.route("**/*", self._only_the_server)

    def _only_the_server(self, route: Route) -> None:
        url = route.request.url
        if url.startswith((self.base_url + "/", "data:", "blob:")):
            route.continue_()
        else:
            self.refused.append(url)
            route.abort("internetdisconnected")

    def open(self, path: str) -> Page:
        page = self.context.new_page()
        page.on("console", lambda m: self.complaints.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.complaints.append(str(e)))
        page.goto(self.base_url + path)
        return page


def shot(page: Page, name: str) -> None:
    """What the reader sees first (a full-page shot of ReDoc's long page times out under load)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


@pytest.fixture
def offline(browser: Browser, api_server: ApiServer) -> Iterator[Offline]:
    o = Offline(browser, api_server.base_url)
    try:
        yield o
    finally:
        o.context.close()


def test_redoc_renders_the_api_from_the_application_alone(offline: Offline) -> None:
    page = offline.open("/schema")
    page.get_by_role("heading", name=TITLE).first.wait_for(timeout=30_000)
    # An operation of the API, listed and described.
    page.get_by_text("/persons/{person_id}/erase").first.wait_for(timeout=30_000)
    shot(page, "api-docs-redoc-offline")
    assert offline.refused == []
    assert [c for c in offline.complaints if "Content Security Policy" in c] == []


def test_swagger_ui_renders_the_api_from_the_application_alone(offline: Offline) -> None:
    page = offline.open("/schema/swagger")
    page.get_by_role("heading", name=TITLE).first.wait_for(timeout=30_000)
    page.locator(".opblock-summary-path", has_text="/persons/{person_id}/erase").first.wait_for(timeout=30_000)
    shot(page, "api-docs-swagger-offline")
    assert offline.refused == []
    assert [c for c in offline.complaints if "Content Security Policy" in c] == []


def test_the_docs_pages_allow_their_own_assets_only(api_server: ApiServer) -> None:
    for path in ("/schema", "/schema/swagger", "/schema/redoc"):
        page = httpx.get(api_server.base_url + path, timeout=30)
        assert page.status_code == 200 and page.headers["content-security-policy"] == DOCS_CSP
        assert "http" not in page.text.replace('content="width=device-width', "")  # no outside URL at all
        assert "<script>" not in page.text  # no inline script: CSP allows 'self' only
    assert "script-src 'self';" in DOCS_CSP and "unsafe-eval" not in DOCS_CSP and "https:" not in DOCS_CSP
    for asset in (
        "redoc/redoc.standalone.js",
        "swagger-ui/swagger-ui-bundle.js",
        "swagger-ui/swagger-ui.css",
        "swagger-ui/swagger-ui-standalone-preset.js",
        "swagger-init.js",
        "redoc/LICENSE",
        "swagger-ui/LICENSE",
    ):
        r = httpx.get(f"{api_server.base_url}/schema/assets/{asset}", timeout=30)
        assert r.status_code == 200 and len(r.content) > 100, asset
