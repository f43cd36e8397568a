"""Every screen of the web client in one list: ``api/app.py`` registers ``router()`` under /app.
A new screen's module adds its handlers here (and a rule per page in ``api/access/rules.py``)."""

from __future__ import annotations

from litestar import Router

from web import console, volunteer
from web.accounts import AccountPages
from web.admin import RosterPages
from web.auditor import AuditPages
from web.imports import ImportPages
from web.pages import web_router
from web.supervisor import SupervisionPages

SCREENS: list[object] = [
    *volunteer.HANDLERS,
    *console.HANDLERS,
    SupervisionPages,
    AuditPages,
    RosterPages,
    AccountPages,
    ImportPages,
]


def router() -> Router:
    return web_router(*SCREENS)
