"""The API's composition: ``create_app`` builds a Litestar app over one CareApplication, the
views, and a NATS connection used for health now and alerts later. Nothing connects until the
app starts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import nats
import structlog
from litestar import Litestar, MediaType, Request, Response, get
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.template import TemplateConfig
from litestar.types import ControllerRouterHandler

from api.access import DOCS_PATH, access_guard, guards_in_place, unchecked_guard
from api.accounts import AccountController
from api.audit import AuditController
from api.auth import actor_of, key_ring, revoke_token
from api.csv_export import SupervisionCsvController
from api.dependencies import DEPENDENCIES, resolve_in_turn
from api.docs import SelfHostedRedoc, SelfHostedSwagger, docs_assets_router
from api.emergencies import EmergencyController
from api.helpers import GroupController, HelperController
from api.imports import ImportController, RegistryXlsxController, start_imports, stop_imports
from api.metrics import metrics_middleware, metrics_page
from api.middleware import request_id_middleware
from api.org_units import OrgUnitController
from api.pairings import PairingController
from api.persons import PersonController
from api.problems import EXCEPTION_HANDLERS, ProblemError
from api.proofs import ProofsController
from api.revocations import start_revocations, stop_revocations
from api.rosters import RosterController
from api.security import configure as configure_security
from api.security import security_headers, security_middleware
from api.sessions import ROUTES as SESSION_ROUTES
from api.sessions import start_accounts, stop_accounts
from api.supervision import SupervisionController
from api.timeline import TimelineController
from api.views import ReadSide
from api.visit_batches import MAX_BATCH_BYTES, VisitLogBatchController
from api.visits import VisitController, VisitLogController, helper_visits
from application.care import CareApplication
from domain.vocabulary import ActorRole
from infrastructure.audit import Audit
from infrastructure.progress import Watch, relay_progress, worker_progress
from infrastructure.settings import Settings, nats_servers, redacted_url

log = structlog.get_logger("guanai.api")
MAX_BODY_BYTES = 256 * 1024


@dataclass
class Connections:
    """Where the API's resources live; filled on startup, emptied on shutdown."""

    database_url: str
    nats_url: str | None
    nats: Any = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


@get("/health", tags=["operations"], media_type=MediaType.JSON)
async def health(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """Database, NATS, views, relay and workers: 200 when the event store answers, 503 when it
    does not. ``status`` is ``degraded`` when NATS is away, or when the relay or a worker makes
    no progress while work waits for it (``relay.stalled``, ``workers.<name>.stalled``)."""
    state = request.app.state
    loop = asyncio.get_running_loop()
    try:
        position = await loop.run_in_executor(None, lambda: state.care.recorder.max_notification_id() or 0)
        database = {"ok": True, "position": position}
    except Exception as e:  # noqa: BLE001 - health reports, it does not raise
        database = {"ok": False, "error": type(e).__name__}
    nc = state.connections.nats
    nats_status: dict[str, Any] = {
        "ok": bool(nc and nc.is_connected),
        "url_configured": state.connections.nats_url is not None,
    }
    if state.connections.nats_url is not None and _is_administrator(request):
        nats_status["url"] = redacted_url(state.connections.nats_url)  # where devices subscribe to alerts
    try:
        views = await loop.run_in_executor(None, state.read_side.lag)
    except Exception as e:  # noqa: BLE001
        views = {"ok": False, "error": type(e).__name__}
    try:
        relay = await loop.run_in_executor(None, _relay_progress, state)
    except Exception as e:  # noqa: BLE001
        relay = {"ok": False, "error": type(e).__name__}
    workers: dict[str, Any] = {}
    if nats_status["ok"]:
        try:
            workers = await asyncio.wait_for(worker_progress(nc.jetstream(), state.watch), timeout=3)
        except Exception as e:  # noqa: BLE001
            workers = {"error": type(e).__name__}
    ok = database["ok"]
    moving = relay.get("stalled") is not True and not any(
        isinstance(w, dict) and w.get("stalled") for w in workers.values()
    )
    status = "ok" if ok and nats_status["ok"] and moving else ("degraded" if ok else "down")
    body = {
        "status": status,
        "database": database,
        "nats": nats_status,
        "views": views,
        "relay": relay,
        "workers": workers,
    }
    return Response(body, status_code=200 if ok else 503)


def _relay_progress(state: Any) -> dict[str, Any]:
    with state.read_side.runner.pool.connection() as conn:
        return relay_progress(state.care, conn, state.watch)


def _is_administrator(request: Request[Any, Any, Any]) -> bool:
    """Whether the caller of the public /health showed an administrator's token (anything else,
    a bad token too, simply gets the public answer)."""
    if not request.headers.get("authorization"):
        return False
    try:
        return actor_of(request).role == ActorRole.ADMINISTRATOR
    except (HTTPException, ProblemError):
        return False


async def _connect_nats(app: Litestar) -> None:
    conns: Connections = app.state.connections
    if conns.nats_url is None:
        return

    async def connect() -> None:
        try:
            conns.nats = await nats.connect(
                nats_servers(conns.nats_url),
                name="guanai-api",
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                connect_timeout=3,
            )
        except Exception as e:  # noqa: BLE001 - the API serves the registry without NATS; health says so
            log.warning("nats_unavailable", error=type(e).__name__)

    conns.tasks.append(asyncio.create_task(connect()))


def _start(app: Litestar) -> None:
    settings: Settings = app.state.settings
    conns: Connections = app.state.connections
    app.state.care = app.state.make_care()
    # A wrong GUANAI_MASTER_KEY stops the API at start, not at the first person it reads.
    app.state.care.store.check()
    app.state.read_side = ReadSide.open(
        app.state.care, conns.database_url, pool_size=max(2, settings.db_pool_size // 2)
    )
    app.state.view = app.state.read_side.view
    app.state.projector = app.state.read_side
    app.state.audit = Audit(app.state.care, conns.database_url)


async def _stop(app: Litestar) -> None:
    conns: Connections = app.state.connections
    for task in conns.tasks:
        task.cancel()
    if conns.nats is not None:
        await conns.nats.close()
    if getattr(app.state, "read_side", None) is not None:
        app.state.read_side.close()
    if getattr(app.state, "care", None) is not None:
        app.state.care.close()


def create_app(
    settings: Settings,
    *,
    database_url: str,
    nats_url: str | None,
    jwt_secret: str,
    make_care: Callable[[], CareApplication],
    debug: bool = False,
    protections: bool = True,
    pages: Sequence[ControllerRouterHandler] = (),
    template_config: TemplateConfig[Any] | None = None,
    watch: Watch | None = None,
) -> Litestar:
    """The API over the application ``make_care`` builds when the app starts (the composition
    root, guanai/bootstrap.py, passes it). ``protections=False`` checks tokens only (no access
    table; the bootstrap stores personal fields unsealed with it): it exists for
    ``bench/protections.py`` to measure what they cost, and no setting or command reaches it.
    ``pages`` (the web client, web/, one layer above) are served by the same app behind the same
    guard, with their ``template_config``.

    ``watch`` names the relay and consumers ``/health`` watches (default: the workers' own names)."""
    openapi = OpenAPIConfig(
        title="Guanai (关爱) API",
        version="0.1.0",
        description=(
            "Registry, helpers, groups and pairings for the care of left-behind elders and children. "
            "Errors are RFC 9457 problem details. Send `Authorization: Bearer <token>` (see `guanai token`)."
        ),
        path=DOCS_PATH,
        render_plugins=[SelfHostedRedoc(), SelfHostedSwagger(path="/swagger"), JsonRenderPlugin()],
        use_handler_docstrings=True,
        components=Components(
            security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")}
        ),
        security=[{"bearer": []}],
    )
    app = Litestar(
        route_handlers=[
            health,
            metrics_page,
            OrgUnitController,
            PersonController,
            HelperController,
            GroupController,
            PairingController,
            EmergencyController,
            RosterController,
            TimelineController,
            SupervisionController,
            SupervisionCsvController,
            VisitController,
            VisitLogController,
            VisitLogBatchController,
            helper_visits,
            revoke_token,
            AuditController,
            ProofsController,
            docs_assets_router(),
            AccountController,
            *SESSION_ROUTES,
            ImportController,
            RegistryXlsxController,
            *pages,
        ],
        # One guard for every route: the access table (api/access/rules.py) says who may do what.
        guards=[access_guard if protections else unchecked_guard],
        # What handlers are given by name (api/dependencies.py): the application, views, settings, caller.
        dependencies=DEPENDENCIES,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[request_id_middleware, metrics_middleware, security_middleware],
        template_config=template_config,
        before_send=[security_headers],
        on_startup=[_start, start_imports, _connect_nats, start_revocations, start_accounts],
        on_shutdown=[stop_accounts, stop_revocations, stop_imports, _stop],
        openapi_config=openapi,
        request_max_body_size=MAX_BODY_BYTES,
        debug=debug,
    )
    resolve_in_turn(app)
    guards_in_place(app)
    app.state.settings = settings
    app.state.protections = protections
    app.state.make_care = make_care
    app.state.jwt_secret = jwt_secret
    app.state.jwt_keys = key_ring(jwt_secret, settings.jwt_previous_secrets)
    configure_security(app, settings, max_body_bytes=MAX_BODY_BYTES, json_limits={"/visit-logs/batch": MAX_BATCH_BYTES})
    app.state.connections = Connections(database_url=database_url, nats_url=nats_url)
    app.state.watch = watch or Watch()
    return app
