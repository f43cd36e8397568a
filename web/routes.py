"""Every screen of the web client in one list: ``api/app.py`` registers ``router()`` under /app.
A new screen's module adds its handlers here (and a rule per page in ``api/access.py``)."""

from __future__ import annotations

from litestar import Router

from web import console, volunteer
from web.pages import web_router

SCREENS: list[object] = [*volunteer.HANDLERS, *console.HANDLERS]


def router() -> Router:
    return web_router(*SCREENS)
