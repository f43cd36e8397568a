"""The API docs pages, served with their assets from this application (no CDN, no fonts).

``/schema`` (ReDoc) and ``/schema/swagger`` (Swagger UI) are Litestar's render plugins with the
script and style URLs pointing at ``/schema/assets/...``: the vendored files in
``api/docs_assets`` (versions and licences in its README). The pages carry no inline script (the
spec is fetched from ``/schema/openapi.json``), so ``DOCS_CSP`` allows scripts, styles, fonts,
images and requests from this server only: on a county intranet without the internet they render
as they do anywhere.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from litestar import Request
from litestar.openapi.plugins import RedocRenderPlugin, SwaggerRenderPlugin
from litestar.router import Router
from litestar.static_files import create_static_files_router

from api.access import DOCS_PATH

ASSETS = Path(__file__).resolve().parent / "docs_assets"
ASSETS_PATH = DOCS_PATH + "/assets"
SPEC_PATH = DOCS_PATH + "/openapi.json"
REDOC_VERSION = "2.5.4"
SWAGGER_UI_VERSION = "5.35.0"

# Styles inline: ReDoc (styled-components) and Swagger UI write <style> elements at run time.
# Images and fonts as data: URIs are inside the bundles; ReDoc's search runs in a blob: worker.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)


def _head(title: str) -> str:
    return (
        f'<meta charset="utf-8"><title>{escape(title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
    )


class SelfHostedRedoc(RedocRenderPlugin):
    """ReDoc from ``/schema/assets/redoc``, started by its ``<redoc spec-url>`` element."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(js_url=f"{ASSETS_PATH}/redoc/redoc.standalone.js", google_fonts=False, favicon="", **kwargs)

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return (
            f'<!DOCTYPE html><html lang="zh-CN"><head>{_head(openapi_schema["info"]["title"])}</head>'
            # The bundle starts on the <redoc> element it finds when it runs: after it.
            f'<body><redoc spec-url="{SPEC_PATH}"></redoc><script src="{self.js_url}"></script></body></html>'
        ).encode()


class SelfHostedSwagger(SwaggerRenderPlugin):
    """Swagger UI from ``/schema/assets/swagger-ui``, started by ``swagger-init.js``."""

    def __init__(self, **kwargs: Any) -> None:
        base = f"{ASSETS_PATH}/swagger-ui"
        super().__init__(
            js_url=f"{base}/swagger-ui-bundle.js", css_url=f"{base}/swagger-ui.css",
            standalone_preset_js_url=f"{base}/swagger-ui-standalone-preset.js", favicon="", **kwargs,
        )  # fmt: skip

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return (
            f'<!DOCTYPE html><html lang="zh-CN"><head>{_head(openapi_schema["info"]["title"])}'
            f'<link rel="stylesheet" href="{self.css_url}">'
            f'<script src="{self.js_url}"></script><script src="{self.standalone_preset_js_url}"></script>'
            f'<script src="{ASSETS_PATH}/swagger-init.js"></script></head>'
            f'<body><div id="swagger-ui" data-spec-url="{SPEC_PATH}"></div></body></html>'
        ).encode()


def docs_assets_router() -> Router:
    """``GET /schema/assets/...``: the vendored files (public, like the pages; in the schema of nothing)."""
    return create_static_files_router(
        path=ASSETS_PATH, directories=[ASSETS], include_in_schema=False, name="docs-assets"
    )
