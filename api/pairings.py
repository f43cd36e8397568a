"""/pairings: helpers paired with people (一对一, 一对N, N对一) and the pairing's lifecycle."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated
from uuid import UUID, uuid4

import msgspec
from litestar import Controller, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from api.common import (
    AsOf,
    Limit,
    MinPosition,
    Offset,
    Page,
    TimeAxis,
    Version,
    created_response,
    etag,
)
from api.dependencies import Care, Command, ExpectedVersion, LoadForRead, MetaFor, Registry, Visible, WaitForViews
from application.care import CareApplication, CommandResult
from domain.pairing import Pairing
from domain.vocabulary import Cadence, PairingShape, VisitMode

Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
Members = Annotated[list[UUID], msgspec.Meta(min_length=1, max_length=50)]


class PairingCreate(msgspec.Struct, forbid_unknown_fields=True):
    shape: PairingShape
    helper_ids: Members
    person_ids: Members
    cadence: Cadence
    visit_mode: VisitMode
    starts_on: date
    group_id: UUID | None = None
    id: UUID | None = None
    occurred_at: datetime | None = None


class PersonChange(msgspec.Struct, forbid_unknown_fields=True):
    person_id: UUID
    occurred_at: datetime | None = None


class PersonRemoval(msgspec.Struct, forbid_unknown_fields=True):
    person_id: UUID
    reason: Reason
    occurred_at: datetime | None = None


class HelperChange(msgspec.Struct, forbid_unknown_fields=True):
    helper_id: UUID
    occurred_at: datetime | None = None


class CadenceChange(msgspec.Struct, forbid_unknown_fields=True):
    cadence: Cadence
    visit_mode: VisitMode
    occurred_at: datetime | None = None


class End(msgspec.Struct, forbid_unknown_fields=True):
    reason: Reason
    ends_on: date | None = None
    occurred_at: datetime | None = None


class PairingOut(msgspec.Struct):
    id: UUID
    shape: PairingShape
    helper_ids: list[UUID]
    person_ids: list[UUID]
    cadence: Cadence
    visit_mode: VisitMode
    starts_on: date
    group_id: UUID | None
    org_path: list[UUID]
    status: str
    ends_on: date | None
    end_reason: str | None
    version: int
    position: int | None = None


class PairingRow(msgspec.Struct):
    id: UUID
    shape: str
    helper_ids: list[UUID]
    person_ids: list[UUID]
    cadence: str
    visit_mode: str
    starts_on: date
    ends_on: date | None
    status: str
    version: int


def pairing_out(p: Pairing, position: int | None = None) -> PairingOut:
    return PairingOut(
        id=p.id,
        shape=p.shape,
        helper_ids=p.helper_ids,
        person_ids=p.person_ids,
        cadence=p.cadence,
        visit_mode=p.visit_mode,
        starts_on=p.starts_on,
        group_id=p.group_id,
        org_path=p.org_path,
        status="ended" if p.ended else "active",
        ends_on=p.ends_on,
        end_reason=p.end_reason,
        version=p.version,
        position=position,
    )


class PairingController(Controller):
    path = "/pairings"
    tags = ["pairings"]

    @post("/", sync_to_thread=True, status_code=201)
    def form(self, command: Command, data: JSONBody[PairingCreate]) -> Response[PairingOut]:
        """Pair helpers with people. The shape fixes the counts: one_to_one 1+1, one_to_many
        1 helper + 2 or more persons, many_to_one 2 or more helpers + 1 person."""
        care, meta = command.care, command.meta(data.occurred_at)
        result = command.run(
            lambda: care.form_pairing(
                id=data.id or uuid4(),
                shape=data.shape,
                helper_ids=data.helper_ids,
                person_ids=data.person_ids,
                cadence=data.cadence,
                visit_mode=data.visit_mode,
                starts_on=data.starts_on,
                group_id=data.group_id,
                meta=meta,
            )
        )
        pairing = care.saved(Pairing, result)
        return created_response(
            pairing_out(pairing, result.position), result, pairing.version, f"/pairings/{pairing.id}"
        )

    @get("/", sync_to_thread=True)
    def list_pairings(
        self,
        wait_for_views: WaitForViews,
        visible: Visible,
        registry: Registry,
        org_unit_id: FromQuery[UUID | None] = None,
        status: Annotated[str | None, QueryParameter(pattern="^(active|ended)$")] = None,
        shape: FromQuery[PairingShape | None] = None,
        helper_id: FromQuery[UUID | None] = None,
        person_id: FromQuery[UUID | None] = None,
        limit: Limit = 50,
        offset: Offset = 0,
        min_position: MinPosition = None,
    ) -> Page[PairingRow]:
        position = wait_for_views(min_position)
        rows, total = registry.list_pairings(
            org_unit_id=org_unit_id,
            status=status,
            shape=shape.value if shape else None,
            helper_id=helper_id,
            person_id=person_id,
            limit=limit,
            offset=offset,
            scope=visible,
        )
        return Page(
            items=msgspec.convert(rows, list[PairingRow]), total=total, limit=limit, offset=offset, position=position
        )

    @get("/{pairing_id:uuid}", sync_to_thread=True)
    def read(
        self,
        load_for_read: LoadForRead,
        pairing_id: FromPath[UUID],
        version: Version = None,
        as_of: AsOf = None,
        time: TimeAxis = "recorded",
    ) -> Response[PairingOut]:
        pairing = load_for_read(Pairing, pairing_id, version, as_of, time)
        return Response(pairing_out(pairing), headers=etag(pairing.version))

    def _after(self, care: CareApplication, pairing_id: UUID, result: CommandResult) -> Response[PairingOut]:
        pairing = care.saved(Pairing, result, pairing_id)
        return Response(pairing_out(pairing, result.position), headers=etag(pairing.version))

    @post("/{pairing_id:uuid}/add-person", sync_to_thread=True, status_code=200)
    def add_person(
        self,
        care: Care,
        meta_for: MetaFor,
        expected_version: ExpectedVersion,
        pairing_id: FromPath[UUID],
        data: JSONBody[PersonChange],
    ) -> Response[PairingOut]:
        meta = meta_for(data.occurred_at)
        result = care.add_pairing_person(pairing_id, data.person_id, meta, expected_version())
        return self._after(care, pairing_id, result)

    @post("/{pairing_id:uuid}/remove-person", sync_to_thread=True, status_code=200)
    def remove_person(
        self,
        care: Care,
        meta_for: MetaFor,
        expected_version: ExpectedVersion,
        pairing_id: FromPath[UUID],
        data: JSONBody[PersonRemoval],
    ) -> Response[PairingOut]:
        meta = meta_for(data.occurred_at)
        result = care.remove_pairing_person(pairing_id, data.person_id, data.reason, meta, expected_version())
        return self._after(care, pairing_id, result)

    @post("/{pairing_id:uuid}/add-helper", sync_to_thread=True, status_code=200)
    def add_helper(
        self,
        care: Care,
        meta_for: MetaFor,
        expected_version: ExpectedVersion,
        pairing_id: FromPath[UUID],
        data: JSONBody[HelperChange],
    ) -> Response[PairingOut]:
        meta = meta_for(data.occurred_at)
        result = care.add_pairing_helper(pairing_id, data.helper_id, meta, expected_version())
        return self._after(care, pairing_id, result)

    @post("/{pairing_id:uuid}/remove-helper", sync_to_thread=True, status_code=200)
    def remove_helper(
        self,
        care: Care,
        meta_for: MetaFor,
        expected_version: ExpectedVersion,
        pairing_id: FromPath[UUID],
        data: JSONBody[HelperChange],
    ) -> Response[PairingOut]:
        meta = meta_for(data.occurred_at)
        result = care.remove_pairing_helper(pairing_id, data.helper_id, meta, expected_version())
        return self._after(care, pairing_id, result)

    @post("/{pairing_id:uuid}/cadence", sync_to_thread=True, status_code=200)
    def change_cadence(
        self,
        care: Care,
        meta_for: MetaFor,
        expected_version: ExpectedVersion,
        pairing_id: FromPath[UUID],
        data: JSONBody[CadenceChange],
    ) -> Response[PairingOut]:
        meta = meta_for(data.occurred_at)
        result = care.change_pairing_cadence(pairing_id, data.cadence, data.visit_mode, meta, expected_version())
        return self._after(care, pairing_id, result)

    @post("/{pairing_id:uuid}/end", sync_to_thread=True, status_code=200)
    def end(
        self,
        care: Care,
        meta_for: MetaFor,
        expected_version: ExpectedVersion,
        pairing_id: FromPath[UUID],
        data: JSONBody[End],
    ) -> Response[PairingOut]:
        """End the pairing with a reason; its helpers' load and its persons' coverage are released."""
        meta = meta_for(data.occurred_at)
        ends_on = data.ends_on or meta.occurred_at.date()
        result = care.end_pairing(pairing_id, data.reason, ends_on, meta, expected_version())
        return self._after(care, pairing_id, result)
