"""Browser sessions for the web client's tests: a context signed in as someone, console errors
collected (a page that breaks its own CSP or throws is a failing page), and screenshots at the
two widths every screen is checked at."""

from __future__ import annotations

import hashlib
import inspect
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from playwright.sync_api import Browser, BrowserContext, Page

from api.auth import issue_token
from domain.vocabulary import ActorRole
from tests.api_support import SECRET, ApiServer, token
from tests.browser import screenshot

WIDTHS = {"360": {"width": 360, "height": 780}, "1280": {"width": 1280, "height": 860}}


def sign_in_with_cookie(
    context: BrowserContext, server: ApiServer, role: ActorRole | str, org: Any = None, subject: str | None = None
) -> str:
    """The cookies the accounts API's cookie sign-in sets (``guanai_access``, ``guanai_csrf``),
    made from a minted token; returns the token. Once the accounts issue is merged its
    ``issue_token`` takes extra claims, and a cookie session's token names the hash of its CSRF
    token (``cth``), which its guard checks on every change: the minted token carries it too."""
    csrf = secrets.token_urlsafe(16)
    if "claims" in inspect.signature(issue_token).parameters:
        minted = issue_token(
            SECRET, subject=subject or f"u-{uuid.uuid4().hex[:8]}", role=ActorRole(role),
            org_unit_id=uuid.UUID(str(org)) if org else None, ttl=timedelta(hours=1),
            claims={"cth": hashlib.sha256(csrf.encode()).hexdigest()},
        )  # fmt: skip
    else:
        minted = token(role, org, subject)
    context.add_cookies([
        {"name": "guanai_access", "value": minted, "url": server.base_url, "httpOnly": True, "sameSite": "Strict"},
        {"name": "guanai_csrf", "value": csrf, "url": server.base_url, "sameSite": "Strict"},
    ])  # fmt: skip
    return minted


class Watched:
    """A page whose console errors and failed requests are kept, to assert there were none."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def no_errors(self, *allowed: str) -> None:
        left = [e for e in self.errors if not any(a in e for a in allowed)]
        assert not left, left


@contextmanager
def session(
    browser: Browser,
    server: ApiServer,
    role: ActorRole | str | None = None,
    org: Any = None,
    subject: str | None = None,
    width: str = "360",
    **options: Any,
) -> Iterator[tuple[BrowserContext, Watched]]:
    context = browser.new_context(viewport=WIDTHS[width], locale="zh-CN", timezone_id="Asia/Shanghai", **options)
    try:
        if role is not None:
            sign_in_with_cookie(context, server, role, org, subject or f"u-{uuid.uuid4().hex[:8]}")
        yield context, Watched(context.new_page())
    finally:
        context.close()


def both_widths(page: Page, name: str) -> None:
    """Screenshots of the page as it is at 360 px and at 1280 px (then back to where it was)."""
    before = page.viewport_size
    for width, size in WIDTHS.items():
        page.set_viewport_size(size)
        screenshot(page, f"{name}-{width}")
    if before:
        page.set_viewport_size(before)
