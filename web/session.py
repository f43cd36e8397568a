"""The browser's session: the access cookie carried to the API's one guard, with CSRF checked.

A signed-in browser holds its token in the HttpOnly cookie ``guanai_access`` and a random
``guanai_csrf`` cookie its scripts can read. For a request with no ``Authorization`` header this
middleware hands the cookie's token to the guard as a bearer token, so pages, the page scripts'
calls to the JSON API and the alert stream are all decided by ``api/access.py`` exactly as a
bearer token would be: there is no second authorization path. A cookie-carried request that
writes (any method but GET, HEAD, OPTIONS) must echo the CSRF cookie in ``X-CSRF-Token``
(double submit): another site can make the browser send the cookies, not read them.

The accounts issue's sign-in (``POST /auth/sign-in``) sets both cookies; until it is merged,
tests set them with a minted token (``tests/web_support.py``).
"""

from __future__ import annotations

import hmac

from litestar.types import ASGIApp, Receive, Scope, Send

from api.problems import ProblemError

ACCESS_COOKIE = "guanai_access"
CSRF_COOKIE = "guanai_csrf"
CSRF_HEADER = b"x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def cookies_of(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in scope.get("headers") or []:
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                name, sep, val = part.strip().partition("=")
                if sep and name not in out:
                    out[name] = val
    return out


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers") or []:
        if key == name:
            return value.decode("latin-1")
    return ""


def csrf_refused() -> ProblemError:
    return ProblemError(
        403, "csrf-failed", "Not allowed",
        "a change sent with the session cookie must carry the guanai_csrf cookie's value in X-CSRF-Token",
        errors=[{"field": "X-CSRF-Token", "reason": "missing or not the session's", "in": "header"}],
    )  # fmt: skip


def cookie_session_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _header(scope, b"authorization"):
            await app(scope, receive, send)
            return
        cookies = cookies_of(scope)
        token = cookies.get(ACCESS_COOKIE, "").strip()
        if token:
            if scope["method"] not in SAFE_METHODS:
                sent, expected = _header(scope, CSRF_HEADER), cookies.get(CSRF_COOKIE, "")
                if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
                    raise csrf_refused()
            headers = list(scope.get("headers") or [])
            headers.append((b"authorization", b"Bearer " + token.encode("latin-1")))
            scope = {**scope, "headers": headers}  # type: ignore[assignment]
        await app(scope, receive, send)

    return middleware
