"""Helper: someone who looks after people (volunteer, cadre, child director, doctor, ...).

A helper belongs to one org unit and may belong to volunteer groups. The helper keeps count of
the people they are paired with, so that the capacity rule (at most N people each) holds even
when pairings are formed concurrently: the count and the pairing are saved together.
"""

from __future__ import annotations

from uuid import UUID

from domain.base import ERASED, CareAggregate, ClosedError, CommandMeta, InvariantError, Personal
from domain.org_unit import OrgUnit
from domain.vocabulary import HelperRole

DEFAULT_CAPACITY = 10  # people per helper; the plans pair one volunteer with a handful of people


class HelperError(InvariantError):
    """A helper's record would be inconsistent."""


class HelperInactiveError(ClosedError):
    """The helper no longer serves."""


class HelperOverCapacityError(InvariantError):
    """The helper would look after more people than allowed."""


class Helper(CareAggregate):
    role: HelperRole
    name: str
    phone: str
    org_unit_id: UUID
    org_path: list[UUID]
    group_ids: list[UUID]
    capacity: int
    assignments: dict[UUID, int]  # pairing id -> people this helper looks after in it
    active: bool
    deactivated_reason: str | None

    def __init__(self) -> None:
        """State is set by each event's ``apply``; the annotations above document it."""

    class Registered(CareAggregate.Created):
        role: str
        name: str
        phone: str
        org_unit_id: UUID
        org_path: list[UUID]
        capacity: int

        personal = Personal({"name": ERASED, "phone": ERASED}, owner="originator_id")

        def apply(self, h: Helper) -> None:
            h.role = HelperRole(self.role)
            h.name = self.name
            h.phone = self.phone
            h.org_unit_id = self.org_unit_id
            h.org_path = list(self.org_path)
            h.capacity = self.capacity
            h.group_ids = []
            h.assignments = {}
            h.active = True
            h.deactivated_reason = None

    class CapacityChanged(CareAggregate.Event):
        capacity: int

        def apply(self, h: Helper) -> None:
            h.capacity = self.capacity

    class JoinedGroup(CareAggregate.Event):
        group_id: UUID

        def apply(self, h: Helper) -> None:
            h.group_ids = [*h.group_ids, self.group_id]

    class LeftGroup(CareAggregate.Event):
        group_id: UUID

        def apply(self, h: Helper) -> None:
            h.group_ids = [g for g in h.group_ids if g != self.group_id]

    class PairingAssigned(CareAggregate.Event):
        """The helper looks after ``people`` persons in this pairing (set again when it changes)."""

        pairing_id: UUID
        people: int

        def apply(self, h: Helper) -> None:
            h.assignments = {**h.assignments, self.pairing_id: self.people}

    class PairingReleased(CareAggregate.Event):
        pairing_id: UUID

        def apply(self, h: Helper) -> None:
            h.assignments = {k: v for k, v in h.assignments.items() if k != self.pairing_id}

    class Deactivated(CareAggregate.Event):
        reason: str

        personal = Personal({"reason": ERASED}, owner="originator_id")

        def apply(self, h: Helper) -> None:
            h.active = False
            h.deactivated_reason = self.reason

    @classmethod
    def register(
        cls,
        *,
        id: UUID,
        role: HelperRole,
        name: str,
        phone: str,
        org_unit: OrgUnit,
        capacity: int,
        meta: CommandMeta,
    ) -> Helper:
        if not name.strip():
            raise HelperError("a name is required", field="name")
        if capacity < 1:
            raise HelperError("capacity is at least one person", field="capacity")
        return cls._create(
            cls.Registered,
            id=id,
            role=role.value,
            name=name.strip(),
            phone=phone,
            org_unit_id=org_unit.id,
            org_path=list(org_unit.path),
            capacity=capacity,
            **meta.fields(),
        )

    @property
    def load(self) -> int:
        """How many people this helper looks after across active pairings."""
        return sum(self.assignments.values())

    def check_active(self) -> None:
        if not self.active:
            # Not why they stopped: it is personal data, and an error travels to places a record does not.
            raise HelperInactiveError(f"helper {self.id} no longer serves")

    def change_capacity(self, capacity: int, meta: CommandMeta) -> None:
        self.check_active()
        if capacity < 1:
            raise HelperError("capacity is at least one person", field="capacity")
        if capacity < self.load:
            raise HelperError(f"the helper already looks after {self.load} people", field="capacity", load=self.load)
        if capacity != self.capacity:
            self._trigger(self.CapacityChanged, meta, capacity=capacity)

    def assign(self, pairing_id: UUID, people: int, meta: CommandMeta) -> None:
        """Look after ``people`` persons in a pairing (new, or with a changed count)."""
        self.check_active()
        new_load = self.load - self.assignments.get(pairing_id, 0) + people
        if new_load > self.capacity:
            raise HelperOverCapacityError(
                f"helper {self.id} would look after {new_load} people, more than their capacity of {self.capacity}",
                field="helper_ids",
                helper_id=str(self.id),
                load=self.load,
                capacity=self.capacity,
            )
        if self.assignments.get(pairing_id) != people:
            self._trigger(self.PairingAssigned, meta, pairing_id=pairing_id, people=people)

    def release(self, pairing_id: UUID, meta: CommandMeta) -> None:
        if pairing_id in self.assignments:
            self._trigger(self.PairingReleased, meta, pairing_id=pairing_id)

    def join_group(self, group_id: UUID, meta: CommandMeta) -> None:
        self.check_active()
        if group_id not in self.group_ids:
            self._trigger(self.JoinedGroup, meta, group_id=group_id)

    def leave_group(self, group_id: UUID, meta: CommandMeta) -> None:
        if group_id in self.group_ids:
            self._trigger(self.LeftGroup, meta, group_id=group_id)

    def deactivate(self, reason: str, meta: CommandMeta) -> None:
        self.check_active()
        if not reason.strip():
            raise HelperError("a reason is required", field="reason")
        if self.assignments:
            raise HelperError(
                "the helper is still in active pairings; end them or replace the helper first",
                field="reason",
                pairing_ids=[str(p) for p in self.assignments],
            )
        self._trigger(self.Deactivated, meta, reason=reason.strip())
