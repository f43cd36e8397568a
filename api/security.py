"""What every request and response passes through before the controllers see it.

- **Security headers** on every response (a ``before_send`` hook, so 404s and errors get them):
  ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``, ``X-Frame-Options: DENY``,
  a Content-Security-Policy that allows nothing (the API serves data, never pages; the ``/schema``
  docs pages get ``api.docs.DOCS_CSP``: their self-hosted scripts and styles, nothing from elsewhere), ``Cache-Control: no-store`` (responses carry
  personal data; a handler may set its own), and ``Strict-Transport-Security`` when the request
  came over TLS (uvicorn takes ``X-Forwarded-Proto`` from trusted proxies).
- **CORS**, closed unless ``GUANAI_CORS_ORIGINS`` names origins: a preflight from any other origin
  is answered 403 with problem details, and no response carries ``Access-Control-Allow-Origin``.
- **Body checks** before any decoding (middleware): JSON bodies only (415 otherwise), at most
  ``max_body_bytes`` (413), strict UTF-8, no duplicated keys (msgspec would silently keep the
  last), nesting at most ``MAX_DEPTH`` deep, and no NUL characters (PostgreSQL text cannot hold
  them); a NUL in the query string is refused too. Then the values' JSON types, strictly
  (``api/body_types.py``: a number is never taken for a time).
- **Rate limits** (``RateLimiter``): failed authentications per client address (``api/auth.py``)
  and emergency report filing per actor (the ``limit_report_filing`` guard), answered 429 with
  ``Retry-After``. Buckets live in each process: with N API processes the limits are N times
  looser, which is still a limit.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from litestar.utils.scope.state import ScopeState

from api.auth import actor_of
from api.body_types import check_types
from api.docs import DOCS_CSP
from api.problems import ProblemError, too_many_requests
from infrastructure.settings import Settings

MAX_DEPTH = 32
DOCS_PREFIX = "/schema"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; sandbox"
# The web client's pages (web/, under /app): their own scripts, styles, images and calls to this
# origin only; no inline script, no eval, no other origin (a county intranet may have no internet).
WEB_PREFIX = "/app"
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "manifest-src 'self'; worker-src 'self'; media-src 'self'; font-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
CORS_ALLOW_HEADERS = "Authorization, Content-Type, If-Match, Idempotency-Key, X-Request-ID, Last-Event-ID, X-CSRF-Token"
CORS_EXPOSE_HEADERS = "ETag, Location, Retry-After, X-Request-ID"
HSTS = "max-age=31536000; includeSubDomains"


class RateLimiter:
    """Token buckets per key: ``per_minute`` events a minute on average, bursts up to ``burst``."""

    def __init__(
        self,
        per_minute: int,
        *,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.rate = per_minute / 60.0
        self.max_keys = max_keys
        self.burst = float(burst or per_minute)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def wait_time(self, key: str) -> float:
        """Seconds until ``key`` may act again (0: now), without spending anything."""
        with self._lock:
            level = self._level(key, self.clock())
        return 0.0 if level >= 1 else (1 - level) / self.rate

    def take(self, key: str) -> float:
        """Spend one event for ``key``: 0 if allowed, else the seconds to wait (nothing spent)."""
        with self._lock:
            now = self.clock()
            level = self._level(key, now)
            if level < 1:
                return (1 - level) / self.rate
            if len(self._buckets) >= self.max_keys:
                self._shrink(now)
            self._buckets[key] = (level - 1, now)
            return 0.0

    def give_back(self, key: str) -> None:
        """Return one event taken for ``key`` that turned out not to count (never above the burst)."""
        with self._lock:
            now = self.clock()
            if key in self._buckets:
                self._buckets[key] = (min(self.burst, self._level(key, now) + 1), now)

    def _shrink(self, now: float) -> None:
        # A full bucket is the same as no bucket: drop those. Under a flood of fresh keys, drop the
        # oldest too (they get a fresh burst, a bounded loss) so memory and sweeps stay bounded.
        for key in [k for k in self._buckets if self._level(k, now) >= self.burst]:
            del self._buckets[key]
        excess = len(self._buckets) - int(self.max_keys * 0.9)
        for key in list(self._buckets)[: max(0, excess)]:
            del self._buckets[key]


@dataclass(frozen=True)
class SecurityState:
    max_body_bytes: int
    cors_origins: frozenset[str]
    report_limiter: RateLimiter | None
    # Routes that take a file (multipart/form-data) instead of JSON, with their own size limit:
    # the registry import (POST /imports, api/imports.py, and its page, POST /app/imports, web/imports.py).
    uploads: dict[str, int] = field(default_factory=dict)
    # JSON routes allowed a larger body than ``max_body_bytes``: a device's backlog of visit logs
    # (POST /visit-logs/batch, api/visit_batches.py).
    json_limits: dict[str, int] = field(default_factory=dict)


UPLOAD_FRAMING_BYTES = 64 * 1024


def configure(app: Any, settings: Settings, *, max_body_bytes: int, json_limits: dict[str, int] | None = None) -> None:
    """Put the limiters and limits on the app's state (create_app calls this)."""
    origins = frozenset(o.strip().rstrip("/") for o in settings.cors_origins.split(",") if o.strip())
    reports = RateLimiter(settings.reports_per_minute) if settings.reports_per_minute > 0 else None
    # The upload's limit plus the multipart framing and its few form fields.
    uploads = dict.fromkeys(("/imports", "/app/imports"), settings.import_max_bytes + UPLOAD_FRAMING_BYTES)
    app.state.security = SecurityState(
        max_body_bytes=max_body_bytes,
        cors_origins=origins,
        report_limiter=reports,
        uploads=uploads,
        json_limits=dict(json_limits or {}),
    )
    per_minute = settings.auth_failures_per_minute
    app.state.auth_limiter = RateLimiter(per_minute) if per_minute > 0 else None


def limit_report_filing(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A guard: at most ``GUANAI_REPORTS_PER_MINUTE`` reports a minute from one actor. A filing
    that turns out to repeat a stored report gives its event back (``report_not_new``)."""
    limiter: RateLimiter | None = connection.app.state.security.report_limiter
    if limiter is not None and (wait := limiter.take(actor_of(connection).subject)) > 0:
        raise too_many_requests(wait, "too many reports filed by this account")


def report_not_new(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """The filing the guard counted was a repeat of a stored report (a retry after a lost
    answer): it does not count, so a reporter's retries never lock them out of filing."""
    limiter: RateLimiter | None = connection.app.state.security.report_limiter
    if limiter is not None:
        limiter.give_back(actor_of(connection).subject)


# ---- response headers --------------------------------------------------------------------


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers") or []:
        if key == name:
            return value.decode("latin-1")
    return ""


async def security_headers(message: Message, scope: Scope) -> None:
    """before_send: the headers every response carries (see the module docstring)."""
    if message["type"] != "http.response.start":
        return
    headers = list(message.get("headers") or [])
    present = {k.lower() for k, _ in headers}
    add = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]
    path = scope.get("path", "")
    if path == WEB_PREFIX or path.startswith(WEB_PREFIX + "/"):
        add.append((b"content-security-policy", PAGE_CSP.encode()))
        if b"cache-control" not in present:
            add.append((b"cache-control", b"no-store"))
    elif not path.startswith(DOCS_PREFIX):
        add.append((b"content-security-policy", API_CSP.encode()))
        if b"cache-control" not in present:
            add.append((b"cache-control", b"no-store"))
    else:
        add.append((b"content-security-policy", DOCS_CSP.encode()))  # the self-hosted assets only
    if scope.get("scheme") == "https":
        add.append((b"strict-transport-security", HSTS.encode()))
    origin = _header(scope, b"origin")
    state: SecurityState | None = getattr(scope["app"].state, "security", None) if "app" in scope else None
    if origin and state is not None and origin in state.cors_origins:
        add += [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-expose-headers", CORS_EXPOSE_HEADERS.encode()),
            (b"vary", b"Origin"),
        ]
    message["headers"] = headers + [(k, v) for k, v in add if k not in present]  # type: ignore[typeddict-item]


# ---- request checks ----------------------------------------------------------------------


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.path: list[str] = []


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                refused = _Refused("appears more than once (duplicated keys are refused, not merged)")
                refused.path.append(key)  # where the object sits is unknown here; its key is enough
                raise refused
            seen.add(key)
    return value


def _walk(value: Any, depth: int) -> None:
    """Depth and NUL checks over a decoded body; raises _Refused naming the path."""
    if depth > MAX_DEPTH:
        raise _Refused(f"nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        if "\x00" in value:
            raise _Refused("contains a NUL character")
    elif isinstance(value, dict):
        for key, item in value.items():
            try:
                if "\x00" in key:
                    raise _Refused("a key contains a NUL character")
                _walk(item, depth + 1)
            except _Refused as e:
                e.path.insert(0, key)
                raise
    elif isinstance(value, list):
        for n, item in enumerate(value):
            try:
                _walk(item, depth + 1)
            except _Refused as e:
                e.path.insert(0, f"[{n}]")
                raise


def _field(path: list[str]) -> str:
    return "".join(p if p.startswith("[") else f".{p}" for p in path).lstrip(".") or "body"


_NOT_DECODED: Any = object()  # check_json's answer when only the exact (slow) check read the body


def _clean(value: Any, depth: int) -> bool:
    """Whether a decoded body passes the depth and NUL checks."""
    if depth > MAX_DEPTH:
        return False
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, dict):
        return all("\x00" not in key and _clean(item, depth + 1) for key, item in value.items())
    if isinstance(value, list):
        return all(_clean(item, depth + 1) for item in value)
    return True


def check_json(body: bytes) -> Any:
    """Refuse a JSON body msgspec would accept but must not (see the module docstring); return
    the body decoded (msgspec, as Litestar decodes it), or ``_NOT_DECODED``.

    The body is decoded once, with msgspec, and encoded again (both in C). Duplicated keys are
    what a decoded value cannot show: a key and its value dropped take at least one colon with
    them, and msgspec writes every colon of a string as itself, so the two texts hold as many
    colons exactly when nothing was dropped (an escaped colon, ``\\u003a``, sends the body to
    the exact check). A NUL in any string or key is encoded as ``\\u0000``; the depth needs no
    walk when the text holds at most ``MAX_DEPTH`` brackets. Whatever msgspec refuses, or the
    quick check doubts, is read again by the exact check (the standard library's parser, key by
    key), which names what is wrong.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProblemError(
            400, "malformed-request", "Malformed request", f"the body is not UTF-8 (byte {e.start})"
        ) from None
    if b"\\u003a" not in body and b"\\u003A" not in body and not text.startswith("\ufeff"):
        try:
            value = msgspec.json.decode(body)
        except (msgspec.DecodeError, RecursionError):
            pass
        else:
            again = msgspec.json.encode(value)
            if (
                again.count(b":") == body.count(b":")
                and b"\\u0000" not in again
                and (again.count(b"[") + again.count(b"{") <= MAX_DEPTH or _clean(value, 0))
            ):
                return value
    _check_exactly(text)
    return _NOT_DECODED


def _check_exactly(text: str) -> None:
    try:
        _walk(json.loads(text, object_pairs_hook=_no_duplicates), 0)
    except _Refused as e:
        errors = [{"field": _field(e.path), "reason": e.reason, "in": "body"}]
        raise ProblemError(
            400, "malformed-request", "Malformed request", f"{_field(e.path)}: {e.reason}", errors=errors
        ) from None
    except RecursionError:
        raise ProblemError(
            400, "malformed-request", "Malformed request", f"nested more than {MAX_DEPTH} levels deep"
        ) from None
    except ValueError as e:
        raise ProblemError(400, "malformed-request", "Malformed request", f"the body is not valid JSON: {e}") from None


def _is_json(content_type: str) -> bool:
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if not (media == "application/json" or (media.startswith("application/") and media.endswith("+json"))):
        return False
    charset = next(
        (p.split("=", 1)[1].strip().strip('"').lower() for p in params.split(";") if "charset=" in p.lower()), "utf-8"
    )
    return charset in {"utf-8", "utf8"}


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None when the client went away; 413 past ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ProblemError(413, "body-too-large", "Body too large", f"the body may be at most {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _preflight(scope: Scope, state: SecurityState) -> dict[str, str]:
    origin = _header(scope, b"origin")
    if origin not in state.cors_origins:
        raise ProblemError(
            403,
            "cors-refused",
            "Cross-origin request refused",
            "this origin may not call the API from a browser (GUANAI_CORS_ORIGINS)",
        )
    return {
        "access-control-allow-origin": origin,
        "access-control-allow-methods": "GET, POST, PUT, PATCH, DELETE",
        "access-control-allow-headers": CORS_ALLOW_HEADERS,
        "access-control-max-age": "600",
        "vary": "Origin",
    }


def _is_page_form(scope: Scope, content_type: str) -> bool:
    """An HTML form posted to a page of the web client (``/app/...``), which browsers send
    URL-encoded; the API's own routes take JSON only."""
    return scope.get("path", "").startswith("/app/") and content_type.split(";")[0].strip().lower() == (
        "application/x-www-form-urlencoded"
    )


def security_middleware(app: ASGIApp) -> ASGIApp:
    """Preflights and body checks, before any handler decodes anything."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        state: SecurityState = scope["app"].state.security
        method = scope["method"]
        if method == "OPTIONS" and _header(scope, b"origin") and _header(scope, b"access-control-request-method"):
            headers = _preflight(scope, state)
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [(k.encode(), v.encode("latin-1")) for k, v in headers.items()],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        if b"%00" in scope.get("query_string", b""):
            raise ProblemError(
                400, "malformed-request", "Malformed request", "the query string contains a NUL character"
            )
        if method not in BODY_METHODS:
            await app(scope, receive, send)
            return
        upload_limit = state.uploads.get(scope.get("path", "")) if method == "POST" else None
        limit = upload_limit or state.json_limits.get(scope.get("path", "")) or state.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > limit:
            raise ProblemError(413, "body-too-large", "Body too large", f"the body may be at most {limit} bytes")
        body = await _read_body(receive, limit)
        if body is None:
            return
        if body and upload_limit is not None:
            pass  # a file, not JSON: its handler takes multipart/form-data only (415), after the access guard
        elif body:
            content_type = _header(scope, b"content-type")
            if _is_page_form(scope, content_type):
                pass  # a page's HTML form: its handler decodes and checks the fields (web/)
            elif not _is_json(content_type):
                raise ProblemError(
                    415,
                    "unsupported-media-type",
                    "Unsupported media type",
                    f"send JSON with 'Content-Type: application/json' (got {content_type[:80] or 'none'!r})",
                )
            else:
                value = check_json(body)
                if check_types(scope, body):
                    # The handler's validation will take the body: the access guard may leave
                    # its check to the handler (api/access/guard.py), nothing answering first.
                    scope.setdefault("state", {})["body_taken"] = True
                # What the handler's Request reads, read once: Litestar (``Request.body``,
                # ``Request.json``) and the access guard take it from here.
                state = ScopeState.from_scope(scope)
                state.body = body
                if value is not _NOT_DECODED:
                    state.json = value
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await app(scope, replay, send)

    return middleware
