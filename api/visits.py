"""/visits (visit tasks), /visit-logs and /helpers/{id}/visits: claiming and logging visits.

Who is "me": a helper's token carries their helper id as ``sub`` (``guanai token --role
volunteer --org-unit <village> --subject <helper-id>``). Volunteers and other helpers act only
for themselves and their groups; coordinators (village cadres, child directors, supervisors,
administrators) may claim, assign and release for others. Auditors only read.

Offline-safe logs: the client chooses the log's ``id`` and sends the visit's ``occurred_at``;
the same log again answers 200 with the first answer's body; another log under that id, 409.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from api.auth import Actor
from api.common import (
    AsOf,
    CommandContext,
    Limit,
    LongText,
    MinPosition,
    Offset,
    Page,
    TimeAxis,
    Version,
    created_response,
    etag,
)
from api.dependencies import (
    AppSettings,
    Caller,
    Care,
    Command,
    ExpectedVersion,
    LoadForRead,
    MetaFor,
    RecordAccess,
    Views,
    Visible,
    WaitForViews,
)
from api.problems import ProblemError
from application.care import CareApplication, CommandResult
from domain.visit_log import (
    EmergencyKind,
    Health,
    LivingConditions,
    Mood,
    Need,
    SafetyRisk,
    ServiceCategory,
    ServiceItem,
    VisitLog,
)
from domain.visit_task import VisitTask
from domain.vocabulary import ActorRole, Cadence, VisitMode
from infrastructure.settings import Settings
from projections.visit_tasks import VisitTaskView

R = ActorRole
COORDINATORS = (R.ADMINISTRATOR, R.COUNTY_SUPERVISOR, R.TOWNSHIP_SUPERVISOR, R.VILLAGE_CADRE, R.CHILD_DIRECTOR)
Status = Annotated[str | None, QueryParameter(pattern="^(scheduled|claimed|completed|missed|cancelled)$")]


class ClaimIn(msgspec.Struct, forbid_unknown_fields=True):
    helper_id: UUID | None = None  # default: me
    group_id: UUID | None = None  # alone: the group claims as a team
    occurred_at: datetime | None = None


class AssignIn(msgspec.Struct, forbid_unknown_fields=True):
    helper_id: UUID
    occurred_at: datetime | None = None


class ReleaseIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=500)] = ""
    occurred_at: datetime | None = None


class BloodPressure(msgspec.Struct, forbid_unknown_fields=True):
    systolic: Annotated[int, msgspec.Meta(ge=50, le=300)]
    diastolic: Annotated[int, msgspec.Meta(ge=30, le=200)]


class Findings(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    living_conditions: LivingConditions | None = None
    health: Health | None = None
    mood: Mood | None = None
    safety_risks: Annotated[list[SafetyRisk], msgspec.Meta(max_length=20)] = []
    needs: Annotated[list[Need], msgspec.Meta(max_length=20)] = []
    blood_pressure: BloodPressure | None = None
    blood_sugar_mmol: Annotated[float, msgspec.Meta(ge=1, le=40)] | None = None
    notes: LongText = ""


class EmergencyIn(msgspec.Struct, forbid_unknown_fields=True):
    kind: EmergencyKind
    description: LongText = ""


class VisitLogIn(msgspec.Struct, forbid_unknown_fields=True):
    id: UUID  # chosen by the client, so that a resend is recognised
    occurred_at: datetime  # when the visit took place (may be days ago)
    mode: VisitMode
    helper_ids: Annotated[list[UUID], msgspec.Meta(max_length=10)] | None = None  # default: [me]
    findings: Findings = msgspec.field(default_factory=Findings)
    services: Annotated[list[ServiceCategory], msgspec.Meta(max_length=6)] = []
    service_items: Annotated[list[ServiceItem], msgspec.Meta(max_length=20)] = []
    follow_up_needed: bool = False
    follow_up_notes: LongText = ""
    raise_emergency: bool = False
    emergency: EmergencyIn | None = None


class UnplannedVisitLogIn(VisitLogIn, forbid_unknown_fields=True):
    pairing_id: UUID | None = None
    person_id: UUID | None = None


class VisitOut(msgspec.Struct):
    id: UUID
    pairing_id: UUID
    person_id: UUID
    org_path: list[UUID]
    group_id: UUID | None
    cadence: Cadence
    mode: VisitMode
    period_start: date
    due_until: date
    opens_at: datetime
    closes_at: datetime
    status: str
    holder_id: UUID | None
    holder_group_id: UUID | None
    claim_expires_at: datetime | None
    log_id: UUID | None
    visited_at: datetime | None
    completed_by: list[UUID]
    cancel_reason: str | None
    version: int
    position: int | None = None


class VisitRow(msgspec.Struct):
    id: UUID
    pairing_id: UUID
    person_id: UUID
    org_path: list[UUID]
    group_id: UUID | None
    cadence: str
    mode: str
    period_start: date
    due_until: date
    opens_at: datetime
    closes_at: datetime
    status: str
    holder_id: UUID | None
    holder_group_id: UUID | None
    claim_expires_at: datetime | None
    log_id: UUID | None
    visited_at: datetime | None
    completed_by: list[UUID]
    late: bool
    version: int


class EmergencyOut(msgspec.Struct):
    kind: str
    description: str


class VisitLogOut(msgspec.Struct):
    id: UUID
    task_id: UUID | None
    pairing_id: UUID
    person_id: UUID
    org_path: list[UUID]
    mode: VisitMode
    visited_at: datetime
    recorded_at: datetime
    helper_ids: list[UUID]
    findings: dict[str, Any]
    services: list[str]
    service_items: list[str]
    follow_up_needed: bool
    follow_up_notes: str
    raise_emergency: bool
    emergency: EmergencyOut | None
    version: int
    erased: bool = False  # findings and notes read as erased: the person's key was destroyed
    position: int | None = None


class VisitLogRow(msgspec.Struct):
    id: UUID
    task_id: UUID | None
    pairing_id: UUID
    person_id: UUID
    org_path: list[UUID]
    mode: str
    visited_at: datetime
    helper_ids: list[UUID]
    services: list[str]
    follow_up_needed: bool
    raise_emergency: bool
    emergency_kind: str | None
    recorded_at: datetime


def visit_out(t: VisitTask, position: int | None = None) -> VisitOut:
    fields = {f: getattr(t, f) for f in VisitOut.__struct_fields__ if f not in ("id", "version", "position")}
    return VisitOut(id=t.id, version=t.version, position=position, **fields)


def log_out(log: VisitLog, position: int | None = None) -> VisitLogOut:
    emergency = (
        EmergencyOut(log.emergency_kind, log.description) if log.raise_emergency and log.emergency_kind else None
    )
    return VisitLogOut(
        id=log.id, task_id=log.task_id, pairing_id=log.pairing_id, person_id=log.person_id, org_path=log.org_path,
        mode=log.mode, visited_at=log.visited_at, recorded_at=log.created_on, helper_ids=log.helper_ids,
        findings=log.findings, services=log.services, service_items=log.service_items,
        follow_up_needed=log.follow_up_needed, follow_up_notes=log.outcome_notes, raise_emergency=log.raise_emergency,
        emergency=emergency, version=log.version, position=position,
    )  # fmt: skip


def helper_id_of(actor: Actor) -> UUID | None:
    """The helper behind a token: its ``sub`` when that is a helper id."""
    try:
        return UUID(actor.subject)
    except ValueError:
        return None


def acting(actor: Actor) -> tuple[UUID | None, UUID | None]:
    """(me, acting helper): acting is None for a coordinator, who may act for others."""
    me = helper_id_of(actor)
    if actor.role in COORDINATORS:
        return me, None
    if me is None:
        raise ProblemError(
            403, "forbidden", "Not allowed",
            "this token's subject is not a helper id; a helper's token is issued with"
            " `guanai token --subject <helper-id>`",
        )  # fmt: skip
    return me, me


def claim_settings(settings: Settings) -> dict[str, Any]:
    return {"limit": settings.visit_claim_limit, "ttl": timedelta(hours=settings.visit_claim_hours)}


def task_view(request: Request[Any, Any, Any]) -> VisitTaskView:
    return VisitTaskView(request.app.state.read_side.runner.pool)


def _log_fields(data: VisitLogIn, me: UUID | None, task_id: UUID | None) -> dict[str, Any]:
    helper_ids = data.helper_ids if data.helper_ids is not None else ([me] if me else [])
    return {
        "task_id": task_id,
        "mode": data.mode,
        "helper_ids": helper_ids,
        "findings": msgspec.to_builtins(data.findings),
        "services": data.services,
        "service_items": data.service_items,
        "follow_up_needed": data.follow_up_needed,
        "outcome_notes": data.follow_up_notes,
        "raise_emergency": data.raise_emergency,
        "emergency_kind": data.emergency.kind if data.emergency else None,
        "description": data.emergency.description if data.emergency else "",
    }


def record_log(
    command: CommandContext,
    actor: Actor,
    data: VisitLogIn,
    task_id: UUID | None,
    **link: UUID | None,
) -> Response[VisitLogOut]:
    app = command.care
    me, actor_helper = acting(actor)
    meta = command.meta(data.occurred_at)
    result = command.run(
        lambda: app.record_visit(
            data.id, meta, acting_helper_id=actor_helper, now=datetime.now(UTC),
            **link, **_log_fields(data, me, task_id),
        )
    )  # fmt: skip
    log = app.saved(VisitLog, result)
    return created_response(log_out(log, result.position), result, log.version, f"/visit-logs/{log.id}")


class VisitController(Controller):
    path = "/visits"
    tags = ["visits"]

    @get("/", sync_to_thread=True)
    def list_visits(
        self,
        views: Views,
        wait_for_views: WaitForViews,
        visible: Visible,
        actor: Caller,
        org_unit_id: FromQuery[UUID | None] = None,
        status: Status = None,
        due_before: FromQuery[date | None] = None,
        claimable_by_me: FromQuery[bool] = False,
        pairing_id: FromQuery[UUID | None] = None,
        person_id: FromQuery[UUID | None] = None,
        limit: Limit = 50,
        offset: Offset = 0,
        min_position: MinPosition = None,
    ) -> Page[VisitRow]:
        """Visit tasks in due order. ``claimable_by_me``: those I may claim now (unclaimed or
        lapsed, window open, and I am a helper of the pairing or in its group)."""
        me = helper_id_of(actor)
        if claimable_by_me and me is None:
            raise ProblemError(
                400, "validation-error", "Invalid request", "claimable_by_me needs a helper's token (sub = helper id)",
                errors=[{"field": "claimable_by_me", "reason": "the token's subject is not a helper id", "in": "query"}],
            )  # fmt: skip
        position = wait_for_views(min_position)
        rows, total = VisitTaskView(views.pool).list_tasks(
            org_unit_id=org_unit_id, status=status, due_before=due_before, claimable_by=me if claimable_by_me else None,
            pairing_id=pairing_id, person_id=person_id, limit=limit, offset=offset, scope=visible,
        )  # fmt: skip
        return Page(
            items=msgspec.convert(rows, list[VisitRow]), total=total, limit=limit, offset=offset, position=position
        )

    @get("/{task_id:uuid}", sync_to_thread=True)
    def read(
        self,
        load_for_read: LoadForRead,
        task_id: FromPath[UUID],
        version: Version = None,
        as_of: AsOf = None,
        time: TimeAxis = "recorded",
    ) -> Response[VisitOut]:
        task = load_for_read(VisitTask, task_id, version, as_of, time)
        return Response(visit_out(task), headers=etag(task.version))

    def _after(self, care: CareApplication, task_id: UUID, result: CommandResult) -> Response[VisitOut]:
        task = care.saved(VisitTask, result, task_id)
        return Response(visit_out(task, result.position), headers=etag(task.version))

    @post("/{task_id:uuid}/claim", sync_to_thread=True, status_code=200)
    def claim(
        self,
        command: Command,
        actor: Caller,
        settings: AppSettings,
        task_id: FromPath[UUID],
        data: JSONBody[ClaimIn],
    ) -> Response[VisitOut]:
        """Take a visit: for myself (no body fields), for a helper (coordinators), or for the
        pairing's group as a team (``group_id`` alone), from the day its window opens until it
        closes; the claim lapses ``GUANAI_VISIT_CLAIM_HOURS`` after it is made. 409
        ``already-claimed`` names the holder; 409 ``not-open-yet`` (with ``opens_at``): the window
        has not opened (next period's task)."""
        care = command.care
        me, actor_helper = acting(actor)
        helper_id = data.helper_id if data.helper_id or data.group_id else me
        meta = command.meta(data.occurred_at)
        result = command.run(
            lambda: care.claim_visit(
                task_id, meta, helper_id=helper_id, group_id=data.group_id,
                acting_helper_id=actor_helper, **claim_settings(settings),
            )
        )  # fmt: skip
        return self._after(care, task_id, result)

    @post("/{task_id:uuid}/assign", sync_to_thread=True, status_code=200)
    def assign(
        self,
        actor: Caller,
        settings: AppSettings,
        care: Care,
        meta_for: MetaFor,
        task_id: FromPath[UUID],
        data: JSONBody[AssignIn],
    ) -> Response[VisitOut]:
        """A visit the group holds as a team goes to one of its members."""
        _, actor_helper = acting(actor)
        result = care.assign_visit(
            task_id,
            data.helper_id,
            meta_for(data.occurred_at),
            acting_helper_id=actor_helper,
            **claim_settings(settings),
        )
        return self._after(care, task_id, result)

    @post("/{task_id:uuid}/release", sync_to_thread=True, status_code=200)
    def release(
        self,
        actor: Caller,
        care: Care,
        meta_for: MetaFor,
        expected_version: ExpectedVersion,
        task_id: FromPath[UUID],
        data: JSONBody[ReleaseIn],
    ) -> Response[VisitOut]:
        """Give the visit back to the pool (the holder, a member of the holding group, or a coordinator)."""
        _, actor_helper = acting(actor)
        result = care.release_visit(
            task_id, data.reason, meta_for(data.occurred_at), acting_helper_id=actor_helper,
            expected_version=expected_version(),
        )  # fmt: skip
        return self._after(care, task_id, result)

    @post("/{task_id:uuid}/complete", sync_to_thread=True, status_code=201)
    def complete(
        self, command: Command, actor: Caller, task_id: FromPath[UUID], data: JSONBody[VisitLogIn]
    ) -> Response[VisitLogOut]:
        """Log the visit (走访日志) that completes this task; safe to resend (same ``id``)."""
        return record_log(command, actor, data, task_id)


class VisitLogController(Controller):
    path = "/visit-logs"
    tags = ["visits"]

    @post("/", sync_to_thread=True, status_code=201)
    def record(self, command: Command, actor: Caller, data: JSONBody[UnplannedVisitLogIn]) -> Response[VisitLogOut]:
        """Log an unplanned visit (no task), linked to the pairing; safe to resend (same ``id``)."""
        return record_log(command, actor, data, None, pairing_id=data.pairing_id, person_id=data.person_id)

    @get("/", sync_to_thread=True)
    def list_logs(
        self,
        views: Views,
        wait_for_views: WaitForViews,
        visible: Visible,
        helper_id: FromQuery[UUID | None] = None,
        pairing_id: FromQuery[UUID | None] = None,
        person_id: FromQuery[UUID | None] = None,
        limit: Limit = 50,
        offset: Offset = 0,
        min_position: MinPosition = None,
    ) -> Page[VisitLogRow]:
        position = wait_for_views(min_position)
        rows, total = VisitTaskView(views.pool).list_logs(
            helper_id=helper_id,
            pairing_id=pairing_id,
            person_id=person_id,
            limit=limit,
            offset=offset,
            scope=visible,
        )
        return Page(
            items=msgspec.convert(rows, list[VisitLogRow]), total=total, limit=limit, offset=offset, position=position
        )

    @get("/{log_id:uuid}", sync_to_thread=True)
    def read(
        self,
        care: Care,
        record_access: RecordAccess,
        load_for_read: LoadForRead,
        log_id: FromPath[UUID],
        version: Version = None,
        as_of: AsOf = None,
        time: TimeAxis = "recorded",
    ) -> Response[VisitLogOut]:
        log = load_for_read(VisitLog, log_id, version, as_of, time)
        record_access(log.person_id)  # findings are the person's health and circumstances
        out = log_out(log)
        out.erased = care.personal_data_erased(log.person_id)
        return Response(out, headers=etag(log.version))


@get("/helpers/{helper_id:uuid}/visits", sync_to_thread=True, tags=["visits"])
def helper_visits(
    views: Views,
    wait_for_views: WaitForViews,
    visible: Visible,
    helper_id: FromPath[UUID],
    status: Status = None,
    limit: Limit = 50,
    offset: Offset = 0,
    min_position: MinPosition = None,
) -> Page[VisitRow]:
    """The visits a helper holds or completed, latest window first. A volunteer sees only their own."""
    position = wait_for_views(min_position)
    rows, total = VisitTaskView(views.pool).helper_tasks(
        helper_id, status=status, limit=limit, offset=offset, scope=visible
    )
    return Page(items=msgspec.convert(rows, list[VisitRow]), total=total, limit=limit, offset=offset, position=position)
