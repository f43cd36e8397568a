"""/persons: the registry of left-behind elders and children (一人一档)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID, uuid4

import msgspec
from litestar import Controller, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from api.common import (
    AsOf,
    CommandContext,
    Limit,
    MinPosition,
    Name,
    Offset,
    Page,
    Phone,
    ShortText,
    TimeAxis,
    Version,
    created_response,
    etag,
)
from api.dependencies import Care, Command, LoadForRead, RecordAccess, Registry, Visible, WaitForViews
from api.names import with_names
from application.care import CommandResult
from domain.person import Person
from domain.vocabulary import PersonKind, RiskTag, Sex

IdNumber = Annotated[str, msgspec.Meta(pattern=r"^\d{17}[\dXx]$", description="18-character resident ID number")]


class Guardian(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    relation: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    phone: Phone | None = None


class Parent(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    relation: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    work_place: ShortText = ""
    phone: Phone | None = None


class AbsentChild(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    relation: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    whereabouts: ShortText = ""
    phone: Phone | None = None


class PersonCreate(msgspec.Struct, forbid_unknown_fields=True):
    kind: PersonKind
    name: Name
    sex: Sex
    birth_date: date
    village_id: UUID
    id: UUID | None = None
    id_number: IdNumber | None = None
    household: ShortText = ""
    risk_tags: Annotated[list[RiskTag], msgspec.Meta(max_length=10)] = []
    guardian: Guardian | None = None
    parents: Annotated[list[Parent], msgspec.Meta(max_length=4)] = []
    absent_children: Annotated[list[AbsentChild], msgspec.Meta(max_length=12)] = []
    care_agreement_signed_on: date | None = None
    occurred_at: datetime | None = None


class RiskTagChange(msgspec.Struct, forbid_unknown_fields=True):
    tag: RiskTag
    occurred_at: datetime | None = None


class GuardianChange(msgspec.Struct, forbid_unknown_fields=True):
    guardian: Guardian
    occurred_at: datetime | None = None


class CareAgreement(msgspec.Struct, forbid_unknown_fields=True):
    signed_on: date
    occurred_at: datetime | None = None


class Leave(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    occurred_at: datetime | None = None


class Return(msgspec.Struct, forbid_unknown_fields=True):
    occurred_at: datetime | None = None


class Erase(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[
        str, msgspec.Meta(min_length=1, max_length=500, description="why (administrative, stored in the clear)")
    ]
    occurred_at: datetime | None = None


class PersonOut(msgspec.Struct):
    id: UUID
    kind: PersonKind
    name: str
    sex: Sex
    birth_date: date
    id_number: str | None
    household: str
    village_id: UUID
    org_path: list[UUID]
    risk_tags: list[str]
    guardian: dict[str, Any] | None
    parents: list[dict[str, Any]]
    absent_children: list[dict[str, Any]]
    care_agreement_signed_on: date | None
    active: bool
    left_reason: str | None
    pairing_ids: list[UUID]
    version: int
    erased: bool = False  # personal fields read as erased: the person's key was destroyed
    position: int | None = None


class PersonRow(msgspec.Struct):
    id: UUID
    kind: str
    name: str
    sex: str
    birth_date: date
    village_id: UUID
    risk_tags: list[str]
    status: str
    active_pairings: int
    version: int


def person_out(p: Person, position: int | None = None) -> PersonOut:
    return PersonOut(
        id=p.id,
        kind=p.kind,
        name=p.name,
        sex=p.sex,
        birth_date=p.birth_date,
        id_number=p.id_number,
        household=p.household,
        village_id=p.village_id,
        org_path=p.org_path,
        risk_tags=p.risk_tags,
        guardian=p.guardian,
        parents=p.parents,
        absent_children=p.absent_children,
        care_agreement_signed_on=p.care_agreement_signed_on,
        active=p.active,
        left_reason=p.left_reason,
        pairing_ids=p.pairing_ids,
        version=p.version,
        erased=p.erased,
        position=position,
    )


def _drop_none(struct: msgspec.Struct) -> dict[str, Any]:
    return {k: v for k, v in msgspec.to_builtins(struct).items() if v is not None}


class PersonController(Controller):
    path = "/persons"
    tags = ["persons"]

    @post("/", sync_to_thread=True, status_code=201)
    def register(self, command: Command, data: JSONBody[PersonCreate]) -> Response[PersonOut]:
        """Register an elder or a child in a village.

        Send your own ``id`` to make the call safe to repeat (offline devices): the same body
        again answers 200 with the first result; a different body under that id answers 409."""
        care = command.care
        meta = command.meta(data.occurred_at)
        result = command.run(
            lambda: care.register_person(
                id=data.id or uuid4(),
                kind=data.kind,
                name=data.name,
                sex=data.sex,
                birth_date=data.birth_date,
                village_id=data.village_id,
                id_number=data.id_number,
                household=data.household,
                risk_tags=data.risk_tags,
                guardian=_drop_none(data.guardian) if data.guardian else None,
                parents=[_drop_none(p) for p in data.parents],
                absent_children=[_drop_none(c) for c in data.absent_children],
                care_agreement_signed_on=data.care_agreement_signed_on,
                meta=meta,
            )
        )
        person = care.saved(Person, result)
        return created_response(person_out(person, result.position), result, person.version, f"/persons/{person.id}")

    @get("/", sync_to_thread=True)
    def list_persons(
        self,
        wait_for_views: WaitForViews,
        record_access: RecordAccess,
        visible: Visible,
        registry: Registry,
        care: Care,
        org_unit_id: FromQuery[UUID | None] = None,
        kind: FromQuery[PersonKind | None] = None,
        status: Annotated[str | None, QueryParameter(pattern="^(active|left|erased)$")] = None,
        risk_tag: FromQuery[RiskTag | None] = None,
        limit: Limit = 50,
        offset: Offset = 0,
        min_position: MinPosition = None,
    ) -> Page[PersonRow]:
        """List persons under an org unit (any level), by kind, status and risk tag."""
        position = wait_for_views(min_position)
        rows, total = registry.list_persons(
            org_unit_id=org_unit_id,
            kind=kind.value if kind else None,
            status=status,
            risk_tag=risk_tag.value if risk_tag else None,
            limit=limit,
            offset=offset,
            scope=visible,
        )
        items = msgspec.convert(with_names(care, rows), list[PersonRow])
        record_access(*(p.id for p in items))
        return Page(items=items, total=total, limit=limit, offset=offset, position=position)

    @get("/{person_id:uuid}", sync_to_thread=True)
    def read(
        self,
        care: Care,
        record_access: RecordAccess,
        load_for_read: LoadForRead,
        person_id: FromPath[UUID],
        version: Version = None,
        as_of: AsOf = None,
        time: TimeAxis = "recorded",
    ) -> Response[PersonOut]:
        """A person's record, now or as of a version or an instant."""
        person = load_for_read(Person, person_id, version, as_of, time)
        record_access(person_id)
        out = person_out(person)
        # As of a time before the erasure the record had not been erased, but its data is gone.
        out.erased = out.erased or care.personal_data_erased(person_id)
        return Response(out, headers=etag(person.version))

    def _change(
        self, command: CommandContext, person_id: UUID, change: Callable[[int | None], CommandResult]
    ) -> Response[PersonOut]:
        version = command.expected_version()
        result = command.run(lambda: change(version))
        person = command.care.saved(Person, result, person_id)
        # The answer is the whole record, more than the change sent (and sent even when nothing changed).
        command.record_access(person_id)
        return Response(person_out(person, result.position), headers=etag(person.version))

    @post("/{person_id:uuid}/risk-tags", sync_to_thread=True, status_code=200)
    def add_risk_tag(
        self, command: Command, person_id: FromPath[UUID], data: JSONBody[RiskTagChange]
    ) -> Response[PersonOut]:
        meta = command.meta(data.occurred_at)
        return self._change(command, person_id, lambda v: command.care.add_risk_tag(person_id, data.tag, meta, v))

    @post("/{person_id:uuid}/risk-tags/remove", sync_to_thread=True, status_code=200)
    def remove_risk_tag(
        self, command: Command, person_id: FromPath[UUID], data: JSONBody[RiskTagChange]
    ) -> Response[PersonOut]:
        meta = command.meta(data.occurred_at)
        return self._change(command, person_id, lambda v: command.care.remove_risk_tag(person_id, data.tag, meta, v))

    @post("/{person_id:uuid}/guardian", sync_to_thread=True, status_code=200)
    def assign_guardian(
        self, command: Command, person_id: FromPath[UUID], data: JSONBody[GuardianChange]
    ) -> Response[PersonOut]:
        meta = command.meta(data.occurred_at)
        guardian = _drop_none(data.guardian)
        return self._change(command, person_id, lambda v: command.care.assign_guardian(person_id, guardian, meta, v))

    @post("/{person_id:uuid}/care-agreement", sync_to_thread=True, status_code=200)
    def sign_care_agreement(
        self, command: Command, person_id: FromPath[UUID], data: JSONBody[CareAgreement]
    ) -> Response[PersonOut]:
        """Record that the parents signed the entrusted-care responsibility agreement."""
        meta = command.meta(data.occurred_at)
        return self._change(
            command, person_id, lambda v: command.care.sign_care_agreement(person_id, data.signed_on, meta, v)
        )

    @post("/{person_id:uuid}/leave", sync_to_thread=True, status_code=200)
    def leave(self, command: Command, person_id: FromPath[UUID], data: JSONBody[Leave]) -> Response[PersonOut]:
        """The person leaves the programme; their pairings drop them or end."""
        meta = command.meta(data.occurred_at)
        return self._change(
            command, person_id, lambda v: command.care.person_leaves_programme(person_id, data.reason, meta, v)
        )

    @post("/{person_id:uuid}/erase", sync_to_thread=True, status_code=200)
    def erase(self, command: Command, person_id: FromPath[UUID], data: JSONBody[Erase]) -> Response[PersonOut]:
        """Erase the person's personal data (crypto-shredding): their key is destroyed with the
        ``Person.Erased`` event, so their name, ID number, family contacts, notes and reports'
        descriptions read as erased everywhere; ids, dates, categories and the verifiable history
        remain. Still in the programme: they leave their pairings first. Again: 200, nothing written."""
        meta = command.meta(data.occurred_at)
        care = command.care
        result = command.run(lambda: care.erase_person(person_id, data.reason, meta))
        person = care.saved(Person, result, person_id)
        return Response(person_out(person, result.position), headers=etag(person.version))

    @post("/{person_id:uuid}/return", sync_to_thread=True, status_code=200)
    def return_(self, command: Command, person_id: FromPath[UUID], data: JSONBody[Return]) -> Response[PersonOut]:
        meta = command.meta(data.occurred_at)
        return self._change(command, person_id, lambda v: command.care.person_returns(person_id, meta, v))
