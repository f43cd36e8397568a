"""Request id and access log: every request gets a correlation id (``X-Request-ID``), which
is recorded on the events it causes and bound to its log lines."""

from __future__ import annotations

import os
import re
import time
from typing import Any

import structlog
from litestar.types import ASGIApp, Message, Receive, Scope, Send

_VALID_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# What a path segment may be to reach the log: a route's own word, an id, or a division code.
_LOGGABLE_SEGMENT = re.compile(
    r"^(?:[a-z][a-z.-]{0,40}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9]{12})$"
)
log = structlog.get_logger("guanai.api")


def loggable_path(path: str) -> str:
    """The path with every segment that is not a route word, an id or a code replaced by ``…``:
    a parameter taken as text holds whatever a client typed (a name, a phone number, a newline)."""
    return "/".join(s if not s or _LOGGABLE_SEGMENT.match(s) else "…" for s in path.split("/"))


def new_request_id() -> str:
    """A random UUID (version 4) as 32 hex digits, as ``uuid.uuid4().hex`` writes it, without
    building a UUID object (a fifth of the cost)."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    return b.hex()


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        sent = next((v for k, v in scope.get("headers") or () if k == b"x-request-id"), b"").decode("latin-1")
        request_id = sent if _VALID_ID.match(sent) else new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id  # type: ignore[typeddict-unknown-key]
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status: dict[str, Any] = {"code": 0}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}  # type: ignore[typeddict-item]
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            log.info(
                "request",
                method=scope.get("method"),
                path=loggable_path(scope.get("path") or ""),
                status=status["code"],
                ms=round((time.perf_counter() - started) * 1000, 1),
            )

    return middleware
