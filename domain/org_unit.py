"""OrgUnit: one node of the three-level network (county > township > village).

Its id is derived from its 12-digit statistical division code, so a code can be registered
only once: the event store itself refuses a second ``Registered`` for the same id.
"""

from __future__ import annotations

import re
from uuid import UUID

from domain.base import CareAggregate, CommandMeta, InvariantError, derived_id
from domain.vocabulary import PARENT_LEVEL, OrgLevel

# ASCII digits only, and \Z: `\d` would take full-width digits and `$` a trailing newline.
CODE_PATTERN = re.compile(r"^[0-9]{12}\Z")


class OrgUnitError(InvariantError):
    """An org unit cannot be placed or named as asked."""


def org_unit_id(code: str) -> UUID:
    return derived_id("org-unit", code)


class OrgUnit(CareAggregate):
    code: str
    name: str
    level: OrgLevel
    parent_id: UUID | None
    path: list[UUID]  # ancestors from the root down to and including this unit

    def __init__(self) -> None:
        """State is set by each event's ``apply``; the annotations above document it."""

    class Registered(CareAggregate.Created):
        code: str
        name: str
        level: str
        parent_id: UUID | None
        path: list[UUID]

        def apply(self, unit: OrgUnit) -> None:
            unit.code = self.code
            unit.name = self.name
            unit.level = OrgLevel(self.level)
            unit.parent_id = self.parent_id
            unit.path = list(self.path)

    class Renamed(CareAggregate.Event):
        name: str

        def apply(self, unit: OrgUnit) -> None:
            unit.name = self.name

    @classmethod
    def register(
        cls,
        *,
        code: str,
        name: str,
        level: OrgLevel,
        parent: OrgUnit | None,
        meta: CommandMeta,
    ) -> OrgUnit:
        if not CODE_PATTERN.match(code):
            raise OrgUnitError("a division code has exactly 12 digits", field="code")
        if not name.strip():
            raise OrgUnitError("a name is required", field="name")
        expected_parent = PARENT_LEVEL[level]
        if expected_parent is None and parent is not None:
            raise OrgUnitError("a county is a root and has no parent", field="parent_id")
        if expected_parent is not None:
            if parent is None:
                raise OrgUnitError(f"a {level} must have a {expected_parent} as parent", field="parent_id")
            if parent.level != expected_parent:
                raise OrgUnitError(
                    f"a {level} must hang under a {expected_parent}, not a {parent.level}",
                    field="parent_id",
                )
        unit_id = org_unit_id(code)
        path = [*parent.path, unit_id] if parent else [unit_id]
        return cls._create(
            cls.Registered,
            id=unit_id,
            code=code,
            name=name.strip(),
            level=level.value,
            parent_id=parent.id if parent else None,
            path=path,
            **meta.fields(),
        )

    def rename(self, name: str, meta: CommandMeta) -> None:
        if not name.strip():
            raise OrgUnitError("a name is required", field="name")
        if name.strip() != self.name:
            self._trigger(self.Renamed, meta, name=name.strip())

    def contains(self, other: OrgUnit) -> bool:
        """True when ``other`` is this unit or lies below it."""
        return self.id in other.path
