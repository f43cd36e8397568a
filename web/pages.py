"""The web client's frame pages and assembly: the start page, sign-in, the service worker and
manifest, static files, and ``web_router()``, which ``api/app.py`` registers under ``/app``.

Each page route has its rule in ``api/access/rules.py`` (resource ``web pages``) and goes through the
app's one guard like any API route.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, get
from litestar.config.compression import CompressionConfig
from litestar.datastructures import CacheControlHeader
from litestar.middleware.base import DefineMiddleware
from litestar.middleware.compression import CompressionMiddleware
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router

from api.dependencies import Caller
from web.frame import PAGE_EXCEPTION_HANDLERS, PREFIX, RESPONDERS, STATIC, VOLUNTEERS, lang_of, page
from web.i18n import translator

# Pages and assets are sent compressed (the volunteer's first load is budgeted in compressed
# bytes); the JSON API is left as it was.
COMPRESSION = DefineMiddleware(CompressionMiddleware, config=CompressionConfig(backend="gzip", minimum_size=500))
# Vendored files carry their version in the path, our own are small: a day, revalidated by the
# service worker, which keeps the app shell for offline use anyway.
STATIC_CACHE = CacheControlHeader(max_age=86400, public=True)


@get("/", sync_to_thread=True)
def home(request: Request[Any, Any, Any], actor: Caller) -> Template | Redirect:
    """The start page: a volunteer's visits, a responder's console, else the menu."""
    if actor.role in VOLUNTEERS:
        return Redirect(f"{PREFIX}/visits", status_code=303)
    if actor.role in RESPONDERS:
        return Redirect(f"{PREFIX}/console", status_code=303)
    return page(request, "home.html")


@get("/sign-in", sync_to_thread=True)
def sign_in(request: Request[Any, Any, Any], next: FromQuery[str | None] = None) -> Template:
    """The sign-in form; it posts to the accounts API's ``POST /auth/sign-in``."""
    return page(request, "sign_in.html", next_url=_within_app(next))


@get("/second-factor", sync_to_thread=True)
def second_factor(request: Request[Any, Any, Any], next: FromQuery[str | None] = None) -> Template:
    """Enrolling an authenticator app. Public: a session still without its second factor reaches
    only the /auth routes, which this page's script calls."""
    return page(request, "second_factor.html", next_url=_within_app(next))


def _within_app(target: str | None) -> str:
    return target if target and target.startswith(PREFIX) and not target.startswith("//") else PREFIX


@get("/{rest:path}", sync_to_thread=True)
def nowhere(request: Request[Any, Any, Any], rest: FromPath[str]) -> Template:
    """Any other address under /app: the not-found page (404)."""
    return page(request, "error.html", status=404, kind="not_found")


@get("/sw.js", media_type="text/javascript")
async def service_worker() -> Response[bytes]:
    """The service worker, served from /app so that its scope is every page of the client."""
    body = (STATIC / "js" / "sw.js").read_bytes()
    return Response(body, media_type="text/javascript", headers={"Cache-Control": "no-cache"})


@get("/manifest.webmanifest", sync_to_thread=True)
def manifest(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """The web app manifest: the client installs on a phone's home screen."""
    t = translator(lang_of(request))
    body = {
        "name": f"{t('app.name')} · {t('app.tagline')}",
        "short_name": t("app.name"),
        "start_url": f"{PREFIX}/",
        "scope": f"{PREFIX}/",
        "display": "standalone",
        "background_color": "#ffffff",
        "theme_color": "#9a3412",
        "lang": "zh-CN" if lang_of(request) == "zh" else "en",
        "icons": [{"src": f"{PREFIX}/static/icon.svg", "sizes": "any", "type": "image/svg+xml"}],
    }
    return Response(body, media_type="application/manifest+json", headers={"Cache-Control": "no-cache"})


FRAME_HANDLERS = [home, sign_in, second_factor, nowhere, service_worker, manifest]


def web_router(*page_handlers: Any) -> Router:
    """Every page under /app: the frame's routes, the static files and the screens' handlers
    (``web/routes.py`` lists them)."""
    static = create_static_files_router(
        path="/static", directories=[STATIC], cache_control=STATIC_CACHE, name="web-static"
    )
    return Router(
        path=PREFIX,
        route_handlers=[*FRAME_HANDLERS, static, *page_handlers],
        exception_handlers=PAGE_EXCEPTION_HANDLERS,
        middleware=[COMPRESSION],
        include_in_schema=False,
    )
