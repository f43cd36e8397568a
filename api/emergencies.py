"""/emergencies: filing reports (anyone with a token), the responders' queue and console, and
the live alert stream (Server-Sent Events fed from NATS).

A report is accepted when its ``Reported`` event is committed: the 201 says so. The same
report sent again (same ``id``, or same ``Idempotency-Key`` from the same actor) answers 200 with
the first report; a different body under the same id or key answers 409 ``already-exists``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID, uuid4

import msgspec
import structlog
from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from nats.errors import Error as NatsError
from nats.js.api import DeliverPolicy

from api.access import Access, Kind
from api.auth import actor_of
from api.common import (
    CommandContext,
    LongText,
    MinPosition,
    Offset,
    app_of,
    created_response,
    etag,
)
from api.dependencies import Care, Checked, Command, RecordAccess, Views, Visible, WaitForViews
from api.problems import ProblemError
from api.revocations import RevocationUnavailable
from api.security import limit_report_filing, report_not_new
from application.care import CareApplication, CommandResult
from application.emergencies import ALERT_PREFIX, idempotent_report_id
from domain.base import CommandMeta
from domain.emergency import ActionKind, Category, EmergencyReport, Outcome, Severity
from domain.org_unit import OrgUnit
from domain.roster import LEVELS
from domain.vocabulary import ActorRole, OrgLevel
from infrastructure.alerts import ALERT_STREAM
from infrastructure.failpoints import failpoint
from projections.emergency_queue import OPEN, EmergencyQueueView

R = ActorRole

Notes = Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        min_length=1,
        max_length=200,
        required=False,
        description="a retry with the same key files nothing twice (scoped to the caller)",
    ),
]


class LocationIn(msgspec.Struct, forbid_unknown_fields=True):
    org_unit_id: UUID
    address: Annotated[str, msgspec.Meta(max_length=200)] = ""
    latitude: Annotated[float, msgspec.Meta(ge=-90, le=90)] | None = None
    longitude: Annotated[float, msgspec.Meta(ge=-180, le=180)] | None = None


class EmergencyCreate(msgspec.Struct, forbid_unknown_fields=True):
    category: Category
    severity: Severity
    description: LongText = ""
    person_id: UUID | None = None
    location: LocationIn | None = None
    id: UUID | None = None
    occurred_at: datetime | None = None


class When(msgspec.Struct, forbid_unknown_fields=True):
    occurred_at: datetime | None = None


class ActionIn(msgspec.Struct, forbid_unknown_fields=True):
    action: ActionKind
    notes: LongText = ""
    occurred_at: datetime | None = None


class NotesIn(msgspec.Struct, forbid_unknown_fields=True):
    notes: Notes
    occurred_at: datetime | None = None


class ResolveIn(msgspec.Struct, forbid_unknown_fields=True):
    outcome: Outcome
    notes: LongText = ""
    occurred_at: datetime | None = None


class CloseIn(msgspec.Struct, forbid_unknown_fields=True):
    notes: LongText = ""
    occurred_at: datetime | None = None


class LinkIn(msgspec.Struct, forbid_unknown_fields=True):
    duplicate_of: UUID
    occurred_at: datetime | None = None


class EmergencyOut(msgspec.Struct):
    id: UUID
    category: str
    severity: str
    status: str
    level: int
    level_name: str
    person_id: UUID | None
    location: dict[str, Any] | None
    description: str
    village_id: UUID | None
    township_id: UUID
    county_id: UUID
    reporter_id: str
    source: str
    reported_at: datetime
    deadline: datetime | None
    routings: list[dict[str, Any]]
    acknowledged_by: str | None
    actions: list[dict[str, Any]]
    escalations: list[dict[str, Any]]
    resolution: dict[str, Any] | None
    duplicate_of: UUID | None
    version: int
    erased: bool = False  # description, location and notes read as erased: the report's key was destroyed
    position: int | None = None


class EmergencyRow(msgspec.Struct):
    id: UUID
    category: str
    severity: str
    status: str
    level: int
    level_name: str
    person_id: UUID | None
    village_id: UUID | None
    township_id: UUID
    reported_at: datetime
    seconds_since_report: int
    deadline: datetime | None
    overdue: bool
    acknowledged_by: str | None
    escalations: int
    version: int


class Queue(msgspec.Struct):
    items: list[EmergencyRow]
    total: int
    limit: int
    offset: int
    position: int


def emergency_out(r: EmergencyReport, position: int | None = None, *, erased: bool = False) -> EmergencyOut:
    routings = [{"level": lv, "level_name": LEVELS[lv], **routing} for lv, routing in sorted(r.routings.items())]
    return EmergencyOut(
        id=r.id, category=r.category.value, severity=r.severity.value, status=r.status.value, level=r.level,
        level_name=LEVELS[r.level], person_id=r.person_id, location=r.location, description=r.description,
        village_id=r.village_id, township_id=r.township_id, county_id=r.county_id, reporter_id=r.reporter_id,
        source=r.source, reported_at=r.reported_at, deadline=r.deadline, routings=routings,
        acknowledged_by=r.acknowledged_by, actions=r.actions, escalations=r.escalations, resolution=r.resolution,
        duplicate_of=r.duplicate_of, version=r.version, position=position, erased=erased,
    )  # fmt: skip


def queue_row(row: dict[str, Any], now: datetime) -> EmergencyRow:
    deadline = row["deadline"] if row["status"] == "routed" else None
    return EmergencyRow(
        id=row["id"], category=row["category"], severity=row["severity"], status=row["status"], level=row["level"],
        level_name=LEVELS[row["level"]], person_id=row["person_id"], village_id=row["village_id"],
        township_id=row["township_id"], reported_at=row["reported_at"],
        seconds_since_report=max(0, int((now - row["reported_at"]).total_seconds())), deadline=deadline,
        overdue=deadline is not None and deadline <= now, acknowledged_by=row["acknowledged_by"],
        escalations=row["escalations"], version=row["version"],
    )  # fmt: skip


log = structlog.get_logger("guanai.api.emergencies")

AlertFilter = Callable[[dict[str, Any]], bool]


def token_still_valid(request: Request[Any, Any, Any]) -> Callable[[], bool]:
    """Whether the token a stream was opened with is still good: a stream lives for hours, and
    its token may expire or be revoked meanwhile (an unreadable revocation list counts as revoked)."""
    actor = actor_of(request)
    revocations = getattr(request.app.state, "revocations", None)

    def valid() -> bool:
        if actor.expires_at and actor.expires_at <= time.time():
            return False
        try:
            return revocations is None or not revocations.is_revoked(actor.token_id)
        except RevocationUnavailable:
            return False

    return valid


def alert_follow(request: Request[Any, Any, Any], access: Access) -> tuple[str, AlertFilter | None]:
    """The alert subject a console subscribes to, and which of its alerts it shows: a township
    responder's township (level 0), a county responder's county level, a supervisor's or
    auditor's subtree (narrowed by township code, or for a village by the report's org path)."""
    actor = access.actor
    if actor.org_unit_id is None:
        return f"{ALERT_PREFIX}.>", None
    app = app_of(request)
    unit = app.load(OrgUnit, actor.org_unit_id)
    county = app.load(OrgUnit, unit.path[0])
    if actor.role == R.COUNTY_RESPONDER:
        subject = f"{ALERT_PREFIX}.{county.code}.county"
    elif actor.role == R.TOWNSHIP_RESPONDER and len(unit.path) > 1:
        subject = f"{ALERT_PREFIX}.{county.code}.{app.load(OrgUnit, unit.path[1]).code}"
    else:
        subject = f"{ALERT_PREFIX}.{county.code}.>"
    if unit.level == OrgLevel.COUNTY:
        return subject, None
    if unit.level == OrgLevel.TOWNSHIP:
        return subject, lambda alert: alert.get("township_code") == unit.code
    return subject, lambda alert: unit.id in access.org_path(Kind.EMERGENCY, UUID(str(alert.get("report_id"))))


async def _follow(nc: Any, subject: str, last_seen: str | None) -> tuple[Any, bool]:
    """A live subscription to ``subject``; for a device coming back (``Last-Event-ID``) an ordered
    consumer on the alert stream from the start of its retention, so what it missed comes first.
    Without the alert stream (no router has run yet) it is live only, as before."""
    if last_seen is not None:
        try:
            sub = await nc.jetstream().subscribe(
                subject, stream=ALERT_STREAM, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
            )
            return sub, True
        except (NatsError, TimeoutError) as e:
            log.warning("alert_replay_unavailable", error=type(e).__name__)
    return await nc.subscribe(subject), False


async def _missed(sub: Any, last_seen: str) -> list[Any]:
    """The stored alerts after the one with id ``last_seen`` (all the stored ones when it is no
    longer kept, or was never sent here): read until the consumer has caught up."""
    stored: list[Any] = []
    while True:
        try:
            msg = await sub.next_msg(timeout=2)
        except TimeoutError:
            break  # nothing (more) stored
        stored.append(msg)
        if msg.metadata.num_pending == 0:
            break
    ids = [msgspec.json.decode(m.data).get("alert_id") for m in stored]
    return stored[ids.index(last_seen) + 1 :] if last_seen in ids else stored


class EmergencyController(Controller):
    path = "/emergencies"
    tags = ["emergencies"]

    @post("/", guards=[limit_report_filing], sync_to_thread=True, status_code=201)
    def file(
        self,
        request: Request[Any, Any, Any],
        command: Command,
        data: JSONBody[EmergencyCreate],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[EmergencyOut]:
        """File a report about a registered person (``person_id``) or someone found at a
        ``location`` (a village or township, and an address). 201 once it is stored; the
        township's on-duty responders are alerted within a second."""
        care = command.care
        meta = command.meta(data.occurred_at)
        report_id = data.id or (idempotent_report_id(meta.actor_id, idempotency_key) if idempotency_key else uuid4())
        location = msgspec.to_builtins(data.location) if data.location else None
        result = command.run(
            lambda: care.file_emergency(
                id=report_id,
                category=data.category,
                severity=data.severity,
                description=data.description,
                person_id=data.person_id,
                location=location,
                meta=meta,
            )
        )
        failpoint("api.after_file")
        if not result.created:
            report_not_new(request)
        report = care.saved(EmergencyReport, result)
        return created_response(
            emergency_out(report, result.position), result, report.version, f"/emergencies/{report.id}"
        )

    @get("/", sync_to_thread=True)
    def queue(
        self,
        wait_for_views: WaitForViews,
        visible: Visible,
        views: Views,
        status: Annotated[str, QueryParameter(pattern="^(open|resolved|closed|all)$")] = "open",
        severity: FromQuery[Severity | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        offset: Offset = 0,
        min_position: MinPosition = None,
    ) -> Queue:
        """My area's reports, oldest first, with the time since each was reported and the
        acknowledgement deadline it waits on (``overdue`` once passed)."""
        position = wait_for_views(min_position)
        statuses = {"open": OPEN, "resolved": ("resolved",), "closed": ("closed",), "all": None}[status]
        view = EmergencyQueueView(views.pool)
        rows, total = view.list(
            statuses=statuses, severity=severity.value if severity else None, limit=limit, offset=offset,
            scope=visible,
        )  # fmt: skip
        now = datetime.now(UTC)
        return Queue(
            items=[queue_row(r, now) for r in rows], total=total, limit=limit, offset=offset, position=position
        )

    @get("/stream")
    async def stream(self, request: Request[Any, Any, Any], access: Checked) -> ServerSentEvent:
        """Alerts as they are routed to my area (event ``alert``, JSON data with ids, category,
        severity, level and deadline: no names, no free text). The queue stays the truth: a
        console that reconnects reads ``GET /emergencies`` again."""
        nc = request.app.state.connections.nats
        if nc is None or not nc.is_connected:
            raise ProblemError(
                503,
                "alerts-unavailable",
                "Alerts unavailable",
                "NATS is not connected; read the queue",
                headers={"Retry-After": "2"},
            )
        loop = asyncio.get_running_loop()
        subject, shown = await loop.run_in_executor(None, alert_follow, request, access)
        last_seen = request.headers.get("last-event-id")
        sub, replaying = await _follow(nc, subject, last_seen)
        token_valid = token_still_valid(request)

        async def events() -> AsyncIterator[ServerSentEventMessage]:
            try:
                yield ServerSentEventMessage(comment=f"following {subject}", retry=2000, data=None)
                if last_seen is not None and replaying:
                    # What came after the last alert this device saw, from the alert stream;
                    # then the same subscription goes on live, so nothing falls in between.
                    for msg in await _missed(sub, last_seen):
                        alert = msgspec.json.decode(msg.data)
                        if shown is None or await loop.run_in_executor(None, shown, alert):
                            yield ServerSentEventMessage(
                                data=msg.data.decode(), event="alert", id=alert.get("alert_id")
                            )
                while True:
                    try:
                        msg = await sub.next_msg(timeout=15)
                    except TimeoutError:
                        if not token_valid():
                            return
                        yield ServerSentEventMessage(comment="keep-alive", data=None)
                        continue
                    if not token_valid():
                        return  # the console reconnects, and its token is refused

                    alert = msgspec.json.decode(msg.data)
                    if shown is None or await loop.run_in_executor(None, shown, alert):
                        yield ServerSentEventMessage(data=msg.data.decode(), event="alert", id=alert.get("alert_id"))
            finally:
                await sub.unsubscribe()

        return ServerSentEvent(events(), headers={"Cache-Control": "no-store"})

    @get("/{report_id:uuid}", sync_to_thread=True)
    def read(
        self, access: Checked, care: Care, record_access: RecordAccess, report_id: FromPath[UUID]
    ) -> Response[EmergencyOut]:
        """The whole report, always current. Reporters see their own reports; responders their area's."""
        report = access.loaded(EmergencyReport, report_id) or care.load(EmergencyReport, report_id)
        if report.person_id is not None:
            record_access(report.person_id)  # a report tells of the person's situation
        erased = care.personal_data_erased(report.id)
        return Response(emergency_out(report, erased=erased), headers=etag(report.version))

    def _change(
        self,
        command: CommandContext,
        report_id: UUID,
        occurred_at: datetime | None,
        change: Callable[[CareApplication, CommandMeta, int | None], CommandResult],
    ) -> Response[EmergencyOut]:
        app = command.care
        meta = command.meta(occurred_at)
        version = command.expected_version()
        result = command.run(lambda: change(app, meta, version))
        report = app.saved(EmergencyReport, result, report_id)
        if report.person_id is not None:
            command.record_access(report.person_id)  # the answer is the whole report, as a read is
        out = emergency_out(report, result.position, erased=app.personal_data_erased(report.id))
        return Response(out, headers=etag(report.version))

    @post("/{report_id:uuid}/acknowledge", sync_to_thread=True, status_code=200)
    def acknowledge(self, command: Command, report_id: FromPath[UUID], data: JSONBody[When]) -> Response[EmergencyOut]:
        """Take the report on (stops the escalation clock at this level)."""
        return self._change(
            command, report_id, data.occurred_at, lambda a, m, v: a.acknowledge_emergency(report_id, m, v)
        )

    @post("/{report_id:uuid}/actions", sync_to_thread=True, status_code=200)
    def action(self, command: Command, report_id: FromPath[UUID], data: JSONBody[ActionIn]) -> Response[EmergencyOut]:
        """Record what was done; acting first acknowledges the report if nobody had (help first, paperwork after)."""
        return self._change(
            command,
            report_id,
            data.occurred_at,
            lambda a, m, v: a.record_emergency_action(report_id, data.action, data.notes, m, v),
        )

    @post("/{report_id:uuid}/escalate", sync_to_thread=True, status_code=200)
    def escalate(self, command: Command, report_id: FromPath[UUID], data: JSONBody[NotesIn]) -> Response[EmergencyOut]:
        """Hand the report up a level now (e.g. the township needs the county)."""
        return self._change(
            command, report_id, data.occurred_at, lambda a, m, v: a.escalate_emergency(report_id, data.notes, m, v)
        )

    @post("/{report_id:uuid}/resolve", sync_to_thread=True, status_code=200)
    def resolve(self, command: Command, report_id: FromPath[UUID], data: JSONBody[ResolveIn]) -> Response[EmergencyOut]:
        return self._change(
            command,
            report_id,
            data.occurred_at,
            lambda a, m, v: a.resolve_emergency(report_id, data.outcome, data.notes, m, v),
        )

    @post("/{report_id:uuid}/reopen", sync_to_thread=True, status_code=200)
    def reopen(self, command: Command, report_id: FromPath[UUID], data: JSONBody[NotesIn]) -> Response[EmergencyOut]:
        return self._change(
            command, report_id, data.occurred_at, lambda a, m, v: a.reopen_emergency(report_id, data.notes, m, v)
        )

    @post("/{report_id:uuid}/close", sync_to_thread=True, status_code=200)
    def close(self, command: Command, report_id: FromPath[UUID], data: JSONBody[CloseIn]) -> Response[EmergencyOut]:
        """A supervisor closes a resolved report after review; it cannot be reopened."""
        return self._change(
            command, report_id, data.occurred_at, lambda a, m, v: a.close_emergency(report_id, data.notes, m, v)
        )

    @post("/{report_id:uuid}/link", sync_to_thread=True, status_code=200)
    def link(self, command: Command, report_id: FromPath[UUID], data: JSONBody[LinkIn]) -> Response[EmergencyOut]:
        """This report is about the same incident as ``duplicate_of``: linked and resolved as a duplicate."""
        return self._change(
            command,
            report_id,
            data.occurred_at,
            lambda a, m, v: a.link_duplicate_emergency(report_id, data.duplicate_of, m, v),
        )
