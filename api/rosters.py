"""/rosters/{org_unit_id}: the responders of a township or county, their shifts, the
acknowledgement deadlines per severity, and who is on duty at a given time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from api.common import Phone, etag
from api.dependencies import Care, ExpectedVersion, MetaFor
from application.care import CareApplication
from domain.roster import ResponderRoster, Tier

Seconds = Annotated[int, msgspec.Meta(ge=1, le=7 * 24 * 3600)]
ResponderId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")]


class Shift(msgspec.Struct, forbid_unknown_fields=True):
    days: Annotated[list[int], msgspec.Meta(min_length=1, max_length=7, description="0 = Monday ... 6 = Sunday")]
    start: Annotated[str, msgspec.Meta(pattern=r"^\d\d:\d\d$")]
    end: Annotated[str, msgspec.Meta(pattern=r"^\d\d:\d\d$", description="before start: runs past midnight")]


class AckDeadlines(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    critical: Seconds | None = None
    high: Seconds | None = None
    normal: Seconds | None = None

    def given(self) -> dict[str, int]:
        return {k: v for k, v in msgspec.structs.asdict(self).items() if v is not None}


class RosterCreate(msgspec.Struct, forbid_unknown_fields=True):
    ack_deadlines: AckDeadlines = msgspec.field(default_factory=AckDeadlines)
    utc_offset_minutes: Annotated[int, msgspec.Meta(ge=-720, le=840)] = 480
    occurred_at: datetime | None = None


class ResponderIn(msgspec.Struct, forbid_unknown_fields=True):
    responder_id: ResponderId
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    phone: Phone
    tier: Tier = Tier.PRIMARY
    shifts: Annotated[list[Shift], msgspec.Meta(max_length=21, description="none: always on duty")] = []
    occurred_at: datetime | None = None


class ShiftsIn(msgspec.Struct, forbid_unknown_fields=True):
    shifts: Annotated[list[Shift], msgspec.Meta(max_length=21)]
    occurred_at: datetime | None = None


class RosterOut(msgspec.Struct):
    org_unit_id: UUID
    level: str
    ack_deadlines: dict[str, int]
    utc_offset_minutes: int
    responders: list[dict[str, Any]]
    version: int
    position: int | None = None


class OnDuty(msgspec.Struct):
    at: datetime
    primary: list[str]
    further: list[str]


def roster_out(r: ResponderRoster, position: int | None = None) -> RosterOut:
    responders = [{"responder_id": rid, **entry} for rid, entry in sorted(r.responders.items())]
    return RosterOut(
        org_unit_id=r.org_unit_id, level=r.level.value, ack_deadlines=r.ack_seconds,
        utc_offset_minutes=r.utc_offset_minutes, responders=responders, version=r.version, position=position,
    )  # fmt: skip


class RosterController(Controller):
    path = "/rosters/{org_unit_id:uuid}"
    tags = ["emergencies"]

    def _answer(
        self, care: CareApplication, org_unit_id: UUID, position: int | None, status: int = 200
    ) -> Response[RosterOut]:
        roster = care.load_roster(org_unit_id)
        return Response(roster_out(roster, position), status_code=status, headers=etag(roster.version))

    @post("/", sync_to_thread=True, status_code=201)
    def set_up(
        self,
        care: Care,
        meta_for: MetaFor,
        org_unit_id: FromPath[UUID],
        data: JSONBody[RosterCreate],
    ) -> Response[RosterOut]:
        """Start the roster of a township or county (deadlines default to 300/900/3600 s)."""
        meta = meta_for(data.occurred_at)
        result = care.set_up_roster(org_unit_id, data.ack_deadlines.given(), meta, data.utc_offset_minutes)
        return self._answer(care, org_unit_id, result.position, 201 if result.created else 200)

    @get("/", sync_to_thread=True)
    def read(self, care: Care, org_unit_id: FromPath[UUID]) -> Response[RosterOut]:
        return self._answer(care, org_unit_id, None)

    @get("/on-duty", sync_to_thread=True)
    def on_duty(self, care: Care, org_unit_id: FromPath[UUID], at: FromQuery[datetime | None] = None) -> OnDuty:
        """Who would be alerted at ``at`` (default now)."""
        roster = care.load_roster(org_unit_id)
        when = at if at is not None and at.tzinfo is not None else datetime.now(UTC)
        return OnDuty(at=when, primary=roster.on_duty(when, Tier.PRIMARY), further=roster.on_duty(when, Tier.FURTHER))

    @post("/responders", sync_to_thread=True, status_code=200)
    def add(
        self,
        care: Care,
        meta_for: MetaFor,
        expected_version: ExpectedVersion,
        org_unit_id: FromPath[UUID],
        data: JSONBody[ResponderIn],
    ) -> Response[RosterOut]:
        meta = meta_for(data.occurred_at)
        result = care.add_roster_responder(
            org_unit_id, responder_id=data.responder_id, name=data.name, phone=data.phone, tier=data.tier,
            shifts=msgspec.to_builtins(data.shifts), meta=meta, expected_version=expected_version(),
        )  # fmt: skip
        return self._answer(care, org_unit_id, result.position)

    @post(
        "/responders/{responder_id:str}/shifts",
        sync_to_thread=True,
        status_code=200,
    )
    def shifts(
        self,
        care: Care,
        meta_for: MetaFor,
        expected_version: ExpectedVersion,
        org_unit_id: FromPath[UUID],
        responder_id: FromPath[str],
        data: JSONBody[ShiftsIn],
    ) -> Response[RosterOut]:
        meta = meta_for(data.occurred_at)
        result = care.change_roster_shifts(
            org_unit_id, responder_id, msgspec.to_builtins(data.shifts), meta, expected_version()
        )
        return self._answer(care, org_unit_id, result.position)

    @delete("/responders/{responder_id:str}", sync_to_thread=True, status_code=200)
    def remove(
        self,
        care: Care,
        meta_for: MetaFor,
        expected_version: ExpectedVersion,
        org_unit_id: FromPath[UUID],
        responder_id: FromPath[str],
    ) -> Response[RosterOut]:
        meta = meta_for(None)
        result = care.remove_roster_responder(
            org_unit_id, responder_id, "removed from the roster", meta, expected_version()
        )
        return self._answer(care, org_unit_id, result.position)

    @post("/deadlines", sync_to_thread=True, status_code=200)
    def deadlines(
        self,
        care: Care,
        meta_for: MetaFor,
        expected_version: ExpectedVersion,
        org_unit_id: FromPath[UUID],
        data: JSONBody[AckDeadlines],
    ) -> Response[RosterOut]:
        """Change the acknowledgement deadline (seconds) of one or more severities."""
        meta = meta_for(None)
        result = care.change_ack_deadlines(org_unit_id, data.given(), meta, expected_version())
        return self._answer(care, org_unit_id, result.position)
