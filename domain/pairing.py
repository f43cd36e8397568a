"""Pairing (结对帮扶): helpers paired with the people they look after, in three shapes.

- one-to-one (一对一): exactly one helper and one person;
- one-to-N (一对N): one helper and two or more persons;
- N-to-one (N对一, e.g. 四包一): two or more helpers and one person.

A pairing has a cadence of visits, a start, and an end with a reason. Forming, changing and
ending a pairing also records the change on each helper (their load, checked against their
capacity) and each person (the pairings that cover them); the caller saves them together.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from uuid import UUID

from domain.base import ERASED, CareAggregate, ClosedError, CommandMeta, InvariantError, Personal
from domain.group import GroupDisbandedError, VolunteerGroup
from domain.helper import Helper, HelperInactiveError
from domain.person import Person, PersonInactiveError
from domain.vocabulary import Cadence, PairingShape, VisitMode


class PairingError(InvariantError):
    """The pairing's members would not fit its shape, or the change makes no sense."""


class DuplicateMemberError(PairingError):
    """Someone would appear twice in the same pairing."""


class PairingEndedError(ClosedError):
    """The pairing has ended and accepts no changes."""


def _shape_problem(shape: PairingShape, helpers: int, persons: int) -> tuple[str, str] | None:
    """(field, reason) when the counts do not fit the shape."""
    if shape == PairingShape.ONE_TO_ONE:
        if helpers != 1:
            return "helper_ids", f"a one-to-one pairing has exactly one helper, not {helpers}"
        if persons != 1:
            return "person_ids", f"a one-to-one pairing has exactly one person, not {persons}"
    elif shape == PairingShape.ONE_TO_MANY:
        if helpers != 1:
            return "helper_ids", f"a one-to-N pairing has exactly one helper, not {helpers}"
        if persons < 2:
            return "person_ids", f"a one-to-N pairing has two or more persons, not {persons}"
    else:
        if helpers < 2:
            return "helper_ids", f"an N-to-one pairing has two or more helpers, not {helpers}"
        if persons != 1:
            return "person_ids", f"an N-to-one pairing has exactly one person, not {persons}"
    return None


def _check_unique(ids: Sequence[UUID], field: str) -> None:
    seen: set[UUID] = set()
    for i, member in enumerate(ids):
        if member in seen:
            raise DuplicateMemberError(f"{member} appears more than once", field=f"{field}[{i}]")
        seen.add(member)


def _common_prefix(paths: Sequence[Sequence[UUID]]) -> list[UUID]:
    prefix = list(paths[0])
    for path in paths[1:]:
        n = 0
        while n < min(len(prefix), len(path)) and prefix[n] == path[n]:
            n += 1
        prefix = prefix[:n]
    return prefix


class Pairing(CareAggregate):
    shape: PairingShape
    helper_ids: list[UUID]
    person_ids: list[UUID]
    cadence: Cadence
    visit_mode: VisitMode
    starts_on: date
    group_id: UUID | None
    org_path: list[UUID]
    ended: bool
    ends_on: date | None
    end_reason: str | None

    def __init__(self) -> None:
        """State is set by each event's ``apply``; the annotations above document it."""

    class Formed(CareAggregate.Created):
        shape: str
        helper_ids: list[UUID]
        person_ids: list[UUID]
        cadence: str
        visit_mode: str
        starts_on: date
        group_id: UUID | None
        org_path: list[UUID]

        def apply(self, p: Pairing) -> None:
            p.shape = PairingShape(self.shape)
            p.helper_ids = list(self.helper_ids)
            p.person_ids = list(self.person_ids)
            p.cadence = Cadence(self.cadence)
            p.visit_mode = VisitMode(self.visit_mode)
            p.starts_on = self.starts_on
            p.group_id = self.group_id
            p.org_path = list(self.org_path)
            p.ended = False
            p.ends_on = None
            p.end_reason = None

    class HelperAdded(CareAggregate.Event):
        helper_id: UUID

        def apply(self, p: Pairing) -> None:
            p.helper_ids = [*p.helper_ids, self.helper_id]

    class HelperRemoved(CareAggregate.Event):
        helper_id: UUID

        def apply(self, p: Pairing) -> None:
            p.helper_ids = [h for h in p.helper_ids if h != self.helper_id]

    class PersonAdded(CareAggregate.Event):
        person_id: UUID

        def apply(self, p: Pairing) -> None:
            p.person_ids = [*p.person_ids, self.person_id]

    class PersonRemoved(CareAggregate.Event):
        person_id: UUID
        reason: str  # free text about the person: sealed with their key

        personal = Personal({"reason": ERASED}, subject="person_id", owner="person_id")

        def apply(self, p: Pairing) -> None:
            p.person_ids = [i for i in p.person_ids if i != self.person_id]

    class CadenceChanged(CareAggregate.Event):
        cadence: str
        visit_mode: str

        def apply(self, p: Pairing) -> None:
            p.cadence = Cadence(self.cadence)
            p.visit_mode = VisitMode(self.visit_mode)

    class Ended(CareAggregate.Event):
        ends_on: date
        reason: str

        def apply(self, p: Pairing) -> None:
            p.ended = True
            p.ends_on = self.ends_on
            p.end_reason = self.reason

    @classmethod
    def form(
        cls,
        *,
        id: UUID,
        shape: PairingShape,
        helpers: Sequence[Helper],
        persons: Sequence[Person],
        cadence: Cadence,
        visit_mode: VisitMode,
        starts_on: date,
        group: VolunteerGroup | None,
        meta: CommandMeta,
    ) -> Pairing:
        _check_unique([h.id for h in helpers], "helper_ids")
        _check_unique([p.id for p in persons], "person_ids")
        if problem := _shape_problem(shape, len(helpers), len(persons)):
            raise PairingError(problem[1], field=problem[0])
        for i, person in enumerate(persons):
            person.check_not_erased(field=f"person_ids[{i}]")
            if not person.active:
                raise PersonInactiveError(f"person {person.id} has left the programme", field=f"person_ids[{i}]")
        for i, helper in enumerate(helpers):
            if not helper.active:
                raise HelperInactiveError(f"helper {helper.id} no longer serves", field=f"helper_ids[{i}]")
        if group is not None and not group.active:
            raise GroupDisbandedError(f"group {group.id} was disbanded", field="group_id")
        pairing = cls._create(
            cls.Formed,
            id=id,
            shape=shape.value,
            helper_ids=[h.id for h in helpers],
            person_ids=[p.id for p in persons],
            cadence=cadence.value,
            visit_mode=visit_mode.value,
            starts_on=starts_on,
            group_id=group.id if group else None,
            org_path=_common_prefix([p.org_path for p in persons]),
            **meta.fields(),
        )
        for i, helper in enumerate(helpers):
            _assign(helper, pairing.id, len(persons), meta, f"helper_ids[{i}]")
        for person in persons:
            person.join_pairing(pairing.id, meta)
        return pairing

    def _check_open(self) -> None:
        if self.ended:
            raise PairingEndedError(f"pairing {self.id} ended on {self.ends_on}: {self.end_reason}")

    def add_person(self, person: Person, helpers: Sequence[Helper], meta: CommandMeta) -> None:
        self._check_open()
        if person.id in self.person_ids:
            raise DuplicateMemberError(f"person {person.id} is already in this pairing", field="person_id")
        if problem := _shape_problem(self.shape, len(self.helper_ids), len(self.person_ids) + 1):
            raise PairingError(problem[1], field="person_id")
        person.check_not_erased(field="person_id")
        if not person.active:
            raise PersonInactiveError(f"person {person.id} has left the programme", field="person_id")
        if list(person.org_path[: len(self.org_path)]) != list(self.org_path):
            # The org path, fixed at formation, decides who sees and manages the pairing.
            raise PairingError(
                "the person lives outside the unit this pairing belongs to; form a pairing of a unit above both",
                field="person_id",
            )
        # Capacity is checked before PersonAdded, so a refused addition leaves the pairing as it was.
        for helper in helpers:
            _assign(helper, self.id, len(self.person_ids) + 1, meta, "person_id")
        self._trigger(self.PersonAdded, meta, person_id=person.id)
        person.join_pairing(self.id, meta)

    def remove_person(self, person: Person, helpers: Sequence[Helper], reason: str, meta: CommandMeta) -> None:
        self._check_open()
        if person.id not in self.person_ids:
            raise PairingError(f"person {person.id} is not in this pairing", field="person_id")
        if problem := _shape_problem(self.shape, len(self.helper_ids), len(self.person_ids) - 1):
            raise PairingError(f"{problem[1]}; end the pairing instead", field="person_id")
        self._trigger(self.PersonRemoved, meta, person_id=person.id, reason=reason)
        for helper in helpers:
            helper.assign(self.id, len(self.person_ids), meta)
        person.leave_pairing(self.id, meta)

    def add_helper(self, helper: Helper, meta: CommandMeta) -> None:
        self._check_open()
        if helper.id in self.helper_ids:
            raise DuplicateMemberError(f"helper {helper.id} is already in this pairing", field="helper_id")
        if problem := _shape_problem(self.shape, len(self.helper_ids) + 1, len(self.person_ids)):
            raise PairingError(problem[1], field="helper_id")
        if not helper.active:
            raise HelperInactiveError(f"helper {helper.id} no longer serves", field="helper_id")
        _assign(helper, self.id, len(self.person_ids), meta, "helper_id")
        self._trigger(self.HelperAdded, meta, helper_id=helper.id)

    def remove_helper(self, helper: Helper, meta: CommandMeta) -> None:
        self._check_open()
        if helper.id not in self.helper_ids:
            raise PairingError(f"helper {helper.id} is not in this pairing", field="helper_id")
        if problem := _shape_problem(self.shape, len(self.helper_ids) - 1, len(self.person_ids)):
            raise PairingError(f"{problem[1]}; end the pairing instead", field="helper_id")
        self._trigger(self.HelperRemoved, meta, helper_id=helper.id)
        helper.release(self.id, meta)

    def change_cadence(self, cadence: Cadence, visit_mode: VisitMode, meta: CommandMeta) -> None:
        self._check_open()
        if (cadence, visit_mode) != (self.cadence, self.visit_mode):
            self._trigger(self.CadenceChanged, meta, cadence=cadence.value, visit_mode=visit_mode.value)

    def end(
        self,
        *,
        reason: str,
        ends_on: date,
        helpers: Sequence[Helper],
        persons: Sequence[Person],
        meta: CommandMeta,
    ) -> None:
        self._check_open()
        if not reason.strip():
            raise PairingError("a reason for ending is required", field="reason")
        if ends_on < self.starts_on:
            raise PairingError(f"a pairing cannot end before it started ({self.starts_on})", field="ends_on")
        self._trigger(self.Ended, meta, ends_on=ends_on, reason=reason.strip())
        for helper in helpers:
            helper.release(self.id, meta)
        for person in persons:
            person.leave_pairing(self.id, meta)


def _assign(helper: Helper, pairing_id: UUID, people: int, meta: CommandMeta, field: str) -> None:
    try:
        helper.assign(pairing_id, people, meta)
    except InvariantError as e:
        e.field = field
        raise
