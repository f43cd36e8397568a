"""What every page shares: the template engine, the frame's context (who is signed in, in which
unit, in which language, with which menu), and the error pages.

Pages render ``web/templates/*.html`` through Litestar's Jinja support. ``page(request, name,
**context)`` adds the frame's context; an error raised by the guard or a handler of a page answers
the not-found, forbidden or sign-in page to a browser (``Accept: text/html``) and the API's
problem details to anything else, with the same status either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from uuid import UUID

import msgspec
from litestar import Request, Response
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.template.config import TemplateConfig

from api.auth import Actor, actor_of
from api.problems import EXCEPTION_HANDLERS
from domain.org_unit import OrgUnit
from domain.schedule import PROGRAMME_TZ
from domain.vocabulary import ActorRole
from web.i18n import LANG_COOKIE, catalogue_for_scripts, choose_lang, translator

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
PREFIX = "/app"
SIGN_IN = f"{PREFIX}/sign-in"
HTMX = "vendor/htmx.org-2.0.11/htmx.min.js"

R = ActorRole
VOLUNTEERS = (R.VOLUNTEER, R.VILLAGE_CADRE, R.CHILD_DIRECTOR)
RESPONDERS = (R.TOWNSHIP_RESPONDER, R.COUNTY_RESPONDER)
SUPERVISORS = (R.TOWNSHIP_SUPERVISOR, R.COUNTY_SUPERVISOR)


@dataclass(frozen=True)
class NavItem:
    href: str
    label: str  # a catalogue key
    roles: tuple[ActorRole, ...]
    # A role's own wording of the item, where the default would say something untrue for it.
    role_labels: tuple[tuple[ActorRole, str], ...] = ()

    def label_for(self, role: ActorRole) -> str:
        return dict(self.role_labels).get(role, self.label)


# The menu: each page shown to the roles its access rule lets in (the guard decides anyway).
# Helper pages of other screens add their items here.
NAV: list[NavItem] = [
    NavItem(f"{PREFIX}/visits", "nav.visits", (*VOLUNTEERS, R.ADMINISTRATOR)),
    # "我的服务对象" is true of a volunteer (a helper: the people of their pairings); a cadre, child
    # director or administrator sees the area's people unless they help someone themselves, which
    # the menu cannot know without a query on every page: it says "服务对象", the page says which.
    NavItem(
        f"{PREFIX}/people",
        "nav.people",
        (*VOLUNTEERS, R.ADMINISTRATOR),
        role_labels=tuple((role, "nav.people_any") for role in (R.VILLAGE_CADRE, R.CHILD_DIRECTOR, R.ADMINISTRATOR)),
    ),
    NavItem(
        f"{PREFIX}/console", "nav.console", (*RESPONDERS, R.TOWNSHIP_SUPERVISOR, R.COUNTY_SUPERVISOR, R.ADMINISTRATOR)
    ),
    NavItem(
        f"{PREFIX}/supervision",
        "nav.supervision",
        (*SUPERVISORS, R.VILLAGE_CADRE, R.CHILD_DIRECTOR, *RESPONDERS, R.AUDITOR, R.ADMINISTRATOR),
    ),
    NavItem(f"{PREFIX}/audit", "nav.audit", (R.AUDITOR, R.ADMINISTRATOR)),
    NavItem(f"{PREFIX}/rosters", "nav.rosters", (*SUPERVISORS, *RESPONDERS, R.AUDITOR, R.ADMINISTRATOR)),
    NavItem(f"{PREFIX}/imports", "nav.imports", (*SUPERVISORS, R.ADMINISTRATOR)),
    NavItem(
        f"{PREFIX}/accounts",
        "nav.accounts",
        (R.TOWNSHIP_SUPERVISOR, R.COUNTY_SUPERVISOR, R.VILLAGE_CADRE, R.AUDITOR, R.ADMINISTRATOR),
    ),
]


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    def configure(engine: JinjaTemplateEngine) -> None:
        engine.engine.globals["static"] = lambda path: f"{PREFIX}/static/{path}"
        engine.engine.globals["HTMX"] = HTMX
        engine.engine.filters["tojson_attr"] = lambda value: msgspec.json.encode(value).decode()

    return TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine, engine_callback=configure)


def local(moment: datetime | None, with_time: bool = True) -> str:
    """A moment as a person in the county reads it: China time, year first (2026-12-03 14:05),
    the one way every page writes a date."""
    if moment is None:
        return ""
    at = moment.astimezone(PROGRAMME_TZ)
    return at.strftime("%Y-%m-%d %H:%M") if with_time else at.strftime("%Y-%m-%d")


def lang_of(request: Request[Any, Any, Any]) -> str:
    return choose_lang(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE))


def actor_or_none(request: Request[Any, Any, Any]) -> Actor | None:
    """Who is signed in: the guard's decision, or on a public page (sign-in, not found) the
    session's, if it has a valid one."""
    actor = request.scope.get("state", {}).get("actor")
    if actor is None and (request.headers.get("authorization") or request.cookies.get("guanai_access")):
        try:
            actor = actor_of(request)
        except Exception:  # noqa: BLE001 - an expired or revoked session: the page shows nobody
            return None
    return actor


def unit_name(request: Request[Any, Any, Any], unit_id: UUID | None) -> str | None:
    """The name of a unit (the tree is public reference data). Read from the app's state, not an
    injected parameter: the frame is drawn for error pages too, whose handlers get no injection."""
    if unit_id is None:
        return None
    try:
        unit = request.app.state.care.repository.get(unit_id)
    except Exception:  # noqa: BLE001 - a header without the unit's name is still a page
        return None
    return unit.name if isinstance(unit, OrgUnit) else None


def frame_context(request: Request[Any, Any, Any]) -> dict[str, Any]:
    lang = lang_of(request)
    t = translator(lang)
    actor = actor_or_none(request)
    path = request.url.path
    nav = []
    if actor is not None:
        nav = [
            {
                "href": item.href,
                "label": t(item.label_for(actor.role)),
                "current": path == item.href or path.startswith(item.href + "/"),
            }
            for item in NAV
            if actor.role in item.roles
        ]
    other = "en" if lang == "zh" else "zh"
    return {
        "t": t,
        "lang": lang,
        "html_lang": "zh-CN" if lang == "zh" else "en",
        "actor": actor,
        "role_label": t(f"role.{actor.role.value}") if actor else None,
        "unit_label": unit_name(request, actor.org_unit_id) if actor else None,
        "nav": nav,
        "lang_href": f"{path}?lang={other}",
        "messages_json": msgspec.json.encode(catalogue_for_scripts(lang)).decode().replace("</", "<\\/"),
    }


def page(request: Request[Any, Any, Any], name: str, *, status: int = 200, **context: Any) -> Template:
    """A page: the template with the frame's context; a ``?lang=`` choice is kept in the cookie."""
    ctx = frame_context(request)
    ctx.update(context)
    response = Template(template_name=name, context=ctx, status_code=status, media_type="text/html")
    chosen = request.query_params.get("lang")
    if chosen in ("zh", "en"):
        response.set_cookie(LANG_COOKIE, chosen, max_age=365 * 24 * 3600, path="/", samesite="lax", httponly=True)
    return response


# ---- errors on pages -------------------------------------------------------------------------


def wants_html(request: Request[Any, Any, Any]) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _api_handler(exc: Exception) -> Callable[..., Response[Any]]:
    for cls in type(exc).__mro__:
        if cls in EXCEPTION_HANDLERS:
            return EXCEPTION_HANDLERS[cls]  # type: ignore[no-any-return]
    return EXCEPTION_HANDLERS[Exception]  # type: ignore[no-any-return]


def page_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A page's error: the API's answer, shown as a page to a browser."""
    answer = _api_handler(exc)(request, exc)
    if not wants_html(request):
        return answer
    status = answer.status_code
    if status == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return Redirect(f"{SIGN_IN}?next={quote(target, safe='')}", status_code=303)
    if status == 403:
        actor = actor_or_none(request)
        if actor is not None and getattr(actor, "restricted", False):
            # A role that signs in with a second factor and has none yet: enrol it, then go on.
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return Redirect(f"{PREFIX}/second-factor?next={quote(target, safe='')}", status_code=303)
        return page(request, "error.html", status=403, kind="forbidden")
    if status == 404:
        return page(request, "error.html", status=404, kind="not_found")
    return page(request, "error.html", status=status, kind="other")


PAGE_EXCEPTION_HANDLERS: dict[type[Exception], Any] = {cls: page_error for cls in EXCEPTION_HANDLERS}
