"""/helpers and /groups: the people who look after others, and their volunteer teams."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID, uuid4

import msgspec
from litestar import Controller, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from api.common import (
    AsOf,
    Limit,
    MinPosition,
    Name,
    Offset,
    Page,
    Phone,
    TimeAxis,
    Version,
    created_response,
    etag,
)
from api.dependencies import Care, Command, ExpectedVersion, LoadForRead, MetaFor, Registry, Visible, WaitForViews
from api.names import with_names
from application.care import CareApplication, CommandResult
from domain.group import VolunteerGroup
from domain.helper import Helper
from domain.vocabulary import HelperRole

Capacity = Annotated[int, msgspec.Meta(ge=1, le=500, description="most people this helper may look after")]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class HelperCreate(msgspec.Struct, forbid_unknown_fields=True):
    role: HelperRole
    name: Name
    phone: Phone
    org_unit_id: UUID
    id: UUID | None = None
    capacity: Capacity | None = None
    occurred_at: datetime | None = None


class CapacityChange(msgspec.Struct, forbid_unknown_fields=True):
    capacity: Capacity
    occurred_at: datetime | None = None


class Deactivate(msgspec.Struct, forbid_unknown_fields=True):
    reason: Reason
    occurred_at: datetime | None = None


class HelperOut(msgspec.Struct):
    id: UUID
    role: HelperRole
    name: str
    phone: str
    org_unit_id: UUID
    org_path: list[UUID]
    group_ids: list[UUID]
    capacity: int
    load: int
    pairing_ids: list[UUID]
    active: bool
    deactivated_reason: str | None
    version: int
    position: int | None = None


class HelperRow(msgspec.Struct):
    id: UUID
    role: str
    name: str
    org_unit_id: UUID
    capacity: int
    load: int
    status: str
    version: int


def helper_out(h: Helper, position: int | None = None) -> HelperOut:
    return HelperOut(
        id=h.id,
        role=h.role,
        name=h.name,
        phone=h.phone,
        org_unit_id=h.org_unit_id,
        org_path=h.org_path,
        group_ids=h.group_ids,
        capacity=h.capacity,
        load=h.load,
        pairing_ids=list(h.assignments),
        active=h.active,
        deactivated_reason=h.deactivated_reason,
        version=h.version,
        position=position,
    )


class HelperController(Controller):
    path = "/helpers"
    tags = ["helpers"]

    @post("/", sync_to_thread=True, status_code=201)
    def register(self, command: Command, data: JSONBody[HelperCreate]) -> Response[HelperOut]:
        """Register a helper in an org unit; capacity defaults to GUANAI_HELPER_CAPACITY."""
        care, meta = command.care, command.meta(data.occurred_at)
        result = command.run(
            lambda: care.register_helper(
                id=data.id or uuid4(),
                role=data.role,
                name=data.name,
                phone=data.phone,
                org_unit_id=data.org_unit_id,
                capacity=data.capacity,
                meta=meta,
            )
        )
        helper = care.saved(Helper, result)
        return created_response(helper_out(helper, result.position), result, helper.version, f"/helpers/{helper.id}")

    @get("/", sync_to_thread=True)
    def list_helpers(
        self,
        wait_for_views: WaitForViews,
        visible: Visible,
        registry: Registry,
        care: Care,
        org_unit_id: FromQuery[UUID | None] = None,
        role: FromQuery[HelperRole | None] = None,
        status: Annotated[str | None, QueryParameter(pattern="^(active|inactive)$")] = None,
        limit: Limit = 50,
        offset: Offset = 0,
        min_position: MinPosition = None,
    ) -> Page[HelperRow]:
        position = wait_for_views(min_position)
        rows, total = registry.list_helpers(
            org_unit_id=org_unit_id,
            role=role.value if role else None,
            status=status,
            limit=limit,
            offset=offset,
            scope=visible,
        )
        items = msgspec.convert(with_names(care, rows), list[HelperRow])
        return Page(items=items, total=total, limit=limit, offset=offset, position=position)

    @get("/{helper_id:uuid}", sync_to_thread=True)
    def read(
        self,
        load_for_read: LoadForRead,
        helper_id: FromPath[UUID],
        version: Version = None,
        as_of: AsOf = None,
        time: TimeAxis = "recorded",
    ) -> Response[HelperOut]:
        helper = load_for_read(Helper, helper_id, version, as_of, time)
        return Response(helper_out(helper), headers=etag(helper.version))

    @post("/{helper_id:uuid}/capacity", sync_to_thread=True, status_code=200)
    def change_capacity(
        self,
        care: Care,
        meta_for: MetaFor,
        expected_version: ExpectedVersion,
        helper_id: FromPath[UUID],
        data: JSONBody[CapacityChange],
    ) -> Response[HelperOut]:
        result = care.change_helper_capacity(helper_id, data.capacity, meta_for(data.occurred_at), expected_version())
        helper = care.saved(Helper, result, helper_id)
        return Response(helper_out(helper, result.position), headers=etag(helper.version))

    @post("/{helper_id:uuid}/deactivate", sync_to_thread=True, status_code=200)
    def deactivate(
        self,
        care: Care,
        meta_for: MetaFor,
        expected_version: ExpectedVersion,
        helper_id: FromPath[UUID],
        data: JSONBody[Deactivate],
    ) -> Response[HelperOut]:
        """The helper stops serving; refused while they are still in active pairings."""
        result = care.deactivate_helper(helper_id, data.reason, meta_for(data.occurred_at), expected_version())
        helper = care.saved(Helper, result, helper_id)
        return Response(helper_out(helper, result.position), headers=etag(helper.version))


class GroupCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    org_unit_id: UUID
    member_ids: Annotated[list[UUID], msgspec.Meta(max_length=200)] = []
    id: UUID | None = None
    occurred_at: datetime | None = None


class MemberChange(msgspec.Struct, forbid_unknown_fields=True):
    helper_id: UUID
    occurred_at: datetime | None = None


class Disband(msgspec.Struct, forbid_unknown_fields=True):
    reason: Reason
    occurred_at: datetime | None = None


class GroupOut(msgspec.Struct):
    id: UUID
    name: str
    org_unit_id: UUID
    org_path: list[UUID]
    member_ids: list[UUID]
    active: bool
    version: int
    position: int | None = None


class GroupRow(msgspec.Struct):
    id: UUID
    name: str
    org_unit_id: UUID
    member_ids: list[UUID]
    status: str
    version: int


def group_out(g: VolunteerGroup, position: int | None = None) -> GroupOut:
    return GroupOut(
        id=g.id,
        name=g.name,
        org_unit_id=g.org_unit_id,
        org_path=g.org_path,
        member_ids=g.member_ids,
        active=g.active,
        version=g.version,
        position=position,
    )


class GroupController(Controller):
    path = "/groups"
    tags = ["groups"]

    @post("/", sync_to_thread=True, status_code=201)
    def form(self, care: Care, meta_for: MetaFor, data: JSONBody[GroupCreate]) -> Response[GroupOut]:
        """Form a volunteer service team (志愿服务队) with its first members."""
        result = care.form_group(
            id=data.id or uuid4(),
            name=data.name,
            org_unit_id=data.org_unit_id,
            member_ids=data.member_ids,
            meta=meta_for(data.occurred_at),
        )
        group = care.saved(VolunteerGroup, result)
        return created_response(group_out(group, result.position), result, group.version, f"/groups/{group.id}")

    @get("/", sync_to_thread=True)
    def list_groups(
        self,
        wait_for_views: WaitForViews,
        visible: Visible,
        registry: Registry,
        org_unit_id: FromQuery[UUID | None] = None,
        status: Annotated[str | None, QueryParameter(pattern="^(active|disbanded)$")] = None,
        limit: Limit = 50,
        offset: Offset = 0,
        min_position: MinPosition = None,
    ) -> Page[GroupRow]:
        position = wait_for_views(min_position)
        rows, total = registry.list_groups(
            org_unit_id=org_unit_id, status=status, limit=limit, offset=offset, scope=visible
        )
        return Page(
            items=msgspec.convert(rows, list[GroupRow]), total=total, limit=limit, offset=offset, position=position
        )

    @get("/{group_id:uuid}", sync_to_thread=True)
    def read(
        self,
        load_for_read: LoadForRead,
        group_id: FromPath[UUID],
        version: Version = None,
        as_of: AsOf = None,
        time: TimeAxis = "recorded",
    ) -> Response[GroupOut]:
        group = load_for_read(VolunteerGroup, group_id, version, as_of, time)
        return Response(group_out(group), headers=etag(group.version))

    def _after(self, care: CareApplication, group_id: UUID, result: CommandResult) -> Response[GroupOut]:
        group = care.saved(VolunteerGroup, result, group_id)
        return Response(group_out(group, result.position), headers=etag(group.version))

    @post("/{group_id:uuid}/members", sync_to_thread=True, status_code=200)
    def add_member(
        self,
        care: Care,
        meta_for: MetaFor,
        expected_version: ExpectedVersion,
        group_id: FromPath[UUID],
        data: JSONBody[MemberChange],
    ) -> Response[GroupOut]:
        meta = meta_for(data.occurred_at)
        result = care.add_group_member(group_id, data.helper_id, meta, expected_version())
        return self._after(care, group_id, result)

    @post("/{group_id:uuid}/members/remove", sync_to_thread=True, status_code=200)
    def remove_member(
        self,
        care: Care,
        meta_for: MetaFor,
        expected_version: ExpectedVersion,
        group_id: FromPath[UUID],
        data: JSONBody[MemberChange],
    ) -> Response[GroupOut]:
        meta = meta_for(data.occurred_at)
        result = care.remove_group_member(group_id, data.helper_id, meta, expected_version())
        return self._after(care, group_id, result)

    @post("/{group_id:uuid}/disband", sync_to_thread=True, status_code=200)
    def disband(
        self,
        care: Care,
        meta_for: MetaFor,
        expected_version: ExpectedVersion,
        group_id: FromPath[UUID],
        data: JSONBody[Disband],
    ) -> Response[GroupOut]:
        meta = meta_for(data.occurred_at)
        result = care.disband_group(group_id, data.reason, meta, expected_version())
        return self._after(care, group_id, result)
