"""VolunteerGroup: a volunteer service team (志愿服务队) that can hold pairings as a team."""

from __future__ import annotations

from uuid import UUID

from domain.base import CareAggregate, ClosedError, CommandMeta, InvariantError
from domain.helper import Helper, HelperInactiveError
from domain.org_unit import OrgUnit


class GroupError(InvariantError):
    """A group's membership would be inconsistent."""


class GroupDisbandedError(ClosedError):
    """The group was disbanded."""


class VolunteerGroup(CareAggregate):
    name: str
    org_unit_id: UUID
    org_path: list[UUID]
    member_ids: list[UUID]
    active: bool

    def __init__(self) -> None:
        """State is set by each event's ``apply``; the annotations above document it."""

    class Formed(CareAggregate.Created):
        name: str
        org_unit_id: UUID
        org_path: list[UUID]

        def apply(self, g: VolunteerGroup) -> None:
            g.name = self.name
            g.org_unit_id = self.org_unit_id
            g.org_path = list(self.org_path)
            g.member_ids = []
            g.active = True

    class MemberAdded(CareAggregate.Event):
        helper_id: UUID

        def apply(self, g: VolunteerGroup) -> None:
            g.member_ids = [*g.member_ids, self.helper_id]

    class MemberRemoved(CareAggregate.Event):
        helper_id: UUID

        def apply(self, g: VolunteerGroup) -> None:
            g.member_ids = [m for m in g.member_ids if m != self.helper_id]

    class Disbanded(CareAggregate.Event):
        reason: str

        def apply(self, g: VolunteerGroup) -> None:
            g.active = False

    @classmethod
    def form(cls, *, id: UUID, name: str, org_unit: OrgUnit, meta: CommandMeta) -> VolunteerGroup:
        if not name.strip():
            raise GroupError("a name is required", field="name")
        return cls._create(
            cls.Formed,
            id=id,
            name=name.strip(),
            org_unit_id=org_unit.id,
            org_path=list(org_unit.path),
            **meta.fields(),
        )

    def check_active(self) -> None:
        if not self.active:
            raise GroupDisbandedError(f"group {self.id} was disbanded")

    def add_member(self, helper: Helper, meta: CommandMeta) -> None:
        self.check_active()
        if not helper.active:
            raise HelperInactiveError(f"helper {helper.id} no longer serves", field="helper_id")  # why: personal
        if helper.id in self.member_ids:
            raise GroupError(f"helper {helper.id} is already a member", field="helper_id")
        if self.org_unit_id not in helper.org_path and helper.org_unit_id not in self.org_path:
            raise GroupError("the helper works outside the group's area", field="helper_id")
        self._trigger(self.MemberAdded, meta, helper_id=helper.id)
        helper.join_group(self.id, meta)

    def remove_member(self, helper: Helper, meta: CommandMeta) -> None:
        self.check_active()
        if helper.id not in self.member_ids:
            raise GroupError(f"helper {helper.id} is not a member", field="helper_id")
        self._trigger(self.MemberRemoved, meta, helper_id=helper.id)
        helper.leave_group(self.id, meta)

    def disband(self, reason: str, members: list[Helper], meta: CommandMeta) -> None:
        self.check_active()
        if not reason.strip():
            raise GroupError("a reason is required", field="reason")
        for helper in members:
            self._trigger(self.MemberRemoved, meta, helper_id=helper.id)
            helper.leave_group(self.id, meta)
        self._trigger(self.Disbanded, meta, reason=reason.strip())
