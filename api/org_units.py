"""/org-units: the county > township > village tree."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from api.common import (
    Code,
    Limit,
    MinPosition,
    Name,
    Offset,
    Page,
    created_response,
    etag,
)
from api.dependencies import Care, Command, Registry, WaitForViews
from domain.org_unit import OrgUnit
from domain.vocabulary import OrgLevel


class OrgUnitCreate(msgspec.Struct, forbid_unknown_fields=True):
    code: Code
    name: Name
    level: OrgLevel
    parent_id: UUID | None = None
    occurred_at: datetime | None = None


class OrgUnitRename(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    occurred_at: datetime | None = None


class OrgUnitOut(msgspec.Struct):
    id: UUID
    code: str
    name: str
    level: OrgLevel
    parent_id: UUID | None
    path: list[UUID]
    version: int
    position: int | None = None


class OrgUnitRow(msgspec.Struct):
    id: UUID
    code: str
    name: str
    level: str
    parent_id: UUID | None
    version: int


def org_unit_out(unit: OrgUnit, position: int | None = None) -> OrgUnitOut:
    return OrgUnitOut(
        id=unit.id,
        code=unit.code,
        name=unit.name,
        level=unit.level,
        parent_id=unit.parent_id,
        path=unit.path,
        version=unit.version,
        position=position,
    )


class OrgUnitController(Controller):
    path = "/org-units"
    tags = ["org units"]

    @post("/", sync_to_thread=True, status_code=201)
    def register(self, command: Command, data: JSONBody[OrgUnitCreate]) -> Response[OrgUnitOut]:
        """Register a county, township or village by its 12-digit division code.

        The id is derived from the code: registering the same unit again answers 200 with it;
        another name or parent under the same code answers 409."""
        care, meta = command.care, command.meta(data.occurred_at)
        result = command.run(
            lambda: care.register_org_unit(
                code=data.code, name=data.name, level=data.level, parent_id=data.parent_id, meta=meta
            )
        )
        unit = care.saved(OrgUnit, result)
        return created_response(org_unit_out(unit, result.position), result, unit.version, f"/org-units/{unit.id}")

    @get("/", sync_to_thread=True)
    def list_units(
        self,
        wait_for_views: WaitForViews,
        registry: Registry,
        parent_id: FromQuery[UUID | None] = None,
        level: FromQuery[OrgLevel | None] = None,
        limit: Limit = 200,
        offset: Offset = 0,
        min_position: MinPosition = None,
    ) -> Page[OrgUnitRow]:
        """List org units, optionally the children of one unit or one level."""
        position = wait_for_views(min_position)
        rows, total = registry.list_org_units(
            parent_id=parent_id, level=level.value if level else None, limit=limit, offset=offset
        )
        return Page(
            items=msgspec.convert(rows, list[OrgUnitRow]), total=total, limit=limit, offset=offset, position=position
        )

    @get("/{unit_id:uuid}", sync_to_thread=True)
    def read(
        self,
        care: Care,
        unit_id: FromPath[UUID],
        version: Annotated[int | None, QueryParameter(ge=1, le=2**31)] = None,
    ) -> Response[OrgUnitOut]:
        unit = care.load(OrgUnit, unit_id, version=version)
        return Response(org_unit_out(unit), headers=etag(unit.version))

    @post("/{unit_id:uuid}/rename", sync_to_thread=True, status_code=200)
    def rename(self, command: Command, unit_id: FromPath[UUID], data: JSONBody[OrgUnitRename]) -> Response[OrgUnitOut]:
        care, meta, expected = command.care, command.meta(data.occurred_at), command.expected_version()
        result = command.run(lambda: care.rename_org_unit(unit_id, data.name, meta, expected))
        unit = care.saved(OrgUnit, result, unit_id)
        return Response(org_unit_out(unit, result.position), headers=etag(unit.version))
