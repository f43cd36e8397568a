"""``GET /metrics``: this process's figures in the Prometheus text format, and the count of the
API's requests by route template and status (infrastructure/metrics.py defines every metric).

Public in the access table (no account's token: a monitoring host has none), but when
``GUANAI_METRICS_TOKEN`` is set it must come as ``Authorization: Bearer <token>``; otherwise 401.
Labels carry route templates (``/persons/{person_id}``), never the ids or text of a path.
"""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, Response, get
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import ProblemError
from infrastructure import metrics


@get("/metrics", tags=["operations"], media_type=MediaType.TEXT, include_in_schema=False, sync_to_thread=True)
def metrics_page(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The process's metrics (the API's, and in ``guanai serve`` the projector's, relay's and workers' too)."""
    if not metrics.token_allows(request.app.state.settings.metrics_token, request.headers.get("authorization")):
        raise ProblemError(
            401,
            "unauthorized",
            "Unauthorized",
            "metrics need the bearer token of GUANAI_METRICS_TOKEN",
            headers={"WWW-Authenticate": "Bearer"},
        )
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


def metrics_middleware(app: ASGIApp) -> ASGIApp:
    """Counts each answered request under its route template (a matched route: Litestar answers
    unknown paths before any middleware, so a scan of made-up paths adds no series)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        status = {"code": 500}

        async def send_counting(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_counting)
        finally:
            key = (scope.get("method", "?"), str(scope.get("path_template") or "unmatched"), status["code"])
            counter = _counters.get(key)
            if counter is None:
                counter = _counters[key] = metrics.HTTP_REQUESTS.labels(key[0], key[1], str(key[2]))
            counter.inc()

    return middleware


# The counter of each (method, route template, status), as ``labels`` gives it: looking it up
# there costs three times the increment. Bounded as the series are: matched routes only.
_counters: dict[tuple[str, str, int], Any] = {}
