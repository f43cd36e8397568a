"""The timeline's access check made inside its read (``Access.gate``), against a real PostgreSQL:
the SQL condition, evaluated on the store, says what ``Access.allows`` says from the events, for
every role whose check it makes (scopes ``all`` and ``subtree``), over registered, paired,
erased and other counties' persons and ids that are no person at all; and it is never given
where it cannot decide (a volunteer, a responder, a supervisor without a unit).
"""

from __future__ import annotations

import inspect
import typing
from datetime import date
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from api.access import PERSON_READ, Access, AccessViews, Kind, Scope
from api.auth import Actor
from domain.org_unit import OrgLevel, org_unit_id
from domain.person import Person
from domain.vocabulary import ActorRole, PersonKind, Sex
from tests.integration.test_registry_view import (
    World,
    new_meta,
    world,  # noqa: F401 - the registry tests' fixture, used by name
)


def actor(role: ActorRole, unit: UUID | None, subject: str = "u-1") -> Actor:
    return Actor(subject=subject, role=role, org_unit_id=unit, token_id="t")


def gate(world: World, who: Actor, target: UUID) -> Any:
    """The condition the timeline's handler would put in its read, or None (checked at once)."""
    access = Access(world.app, AccessViews(None, None, None), who)  # type: ignore[arg-type]
    refused: list[bool] = []
    access.defer_to_read(lambda: refused.append(True), PERSON_READ[who.role], Kind.PERSON, target)
    condition = access.gate(target)
    if condition is None:
        assert refused == [True]  # no condition: the check itself was made instead
    return condition


def holds(world: World, condition: Any) -> bool:
    with psycopg.connect(world.url) as conn:
        row = conn.execute(psycopg.sql.SQL("SELECT {}").format(condition)).fetchone()
    assert row is not None
    return bool(row[0])


def test_the_condition_allows_exactly_what_the_check_allows(world: World) -> None:
    app, m = world.app, new_meta
    app.register_org_unit(code="530427000000", name="新平县", level=OrgLevel.COUNTY, parent_id=None, meta=m())
    app.register_org_unit(
        code="530427100000", name="桂山街道", level=OrgLevel.TOWNSHIP, parent_id=org_unit_id("530427000000"), meta=m()
    )
    app.register_org_unit(
        code="530427100201", name="平甸村", level=OrgLevel.VILLAGE, parent_id=org_unit_id("530427100000"), meta=m()
    )
    other_county, other_village = org_unit_id("530427000000"), org_unit_id("530427100201")
    elsewhere = uuid4()
    app.register_person(
        id=elsewhere, kind=PersonKind.ELDER, name="普大妈", sex=Sex.FEMALE, birth_date=date(1944, 2, 2),
        village_id=other_village, meta=m(),
    )  # fmt: skip
    erased = world.elders[3]  # paired with the village cadre's helper: the erasure drops the pairing
    app.erase_person(erased, "本人申请删除", m())

    persons = [*world.elders, *world.children, elsewhere]
    not_persons = [world.helpers[0], world.group, world.pairings["cadre"], world.county, world.v1, uuid4()]
    readers = [
        actor(ActorRole.ADMINISTRATOR, None),
        actor(ActorRole.COUNTY_SUPERVISOR, world.county),
        actor(ActorRole.COUNTY_SUPERVISOR, other_county),
        actor(ActorRole.TOWNSHIP_SUPERVISOR, world.t1),
        actor(ActorRole.TOWNSHIP_SUPERVISOR, world.t2),
        actor(ActorRole.VILLAGE_CADRE, world.v1),
        actor(ActorRole.CHILD_DIRECTOR, world.v2),
        actor(ActorRole.VILLAGE_CADRE, other_village),
        actor(ActorRole.AUDITOR, world.county),
    ]
    decided = {True: 0, False: 0}
    for who in readers:
        scopes = PERSON_READ[who.role]
        assert scopes & {Scope.ALL, Scope.SUBTREE}, who.role
        for target in [*persons, *not_persons]:
            condition = gate(world, who, target)
            assert condition is not None, (who.role, target)
            expected = Access(world.app, AccessViews(None, None, None), who).allows(scopes, Kind.PERSON, target)  # type: ignore[arg-type]
            assert holds(world, condition) is expected, (who.role, who.org_unit_id, target)
            decided[expected] += 1
    assert decided[True] >= 20 and decided[False] >= 40, decided  # both answers, many times
    # The erased person stays readable where they were registered, and nowhere else.
    assert holds(world, gate(world, actor(ActorRole.VILLAGE_CADRE, world.v1), erased))
    assert not holds(world, gate(world, actor(ActorRole.VILLAGE_CADRE, world.v2), erased))
    assert not holds(world, gate(world, actor(ActorRole.COUNTY_SUPERVISOR, other_county), erased))
    assert holds(world, gate(world, actor(ActorRole.COUNTY_SUPERVISOR, other_county), elsewhere))


def test_no_condition_where_the_first_event_does_not_decide(world: World) -> None:
    """A volunteer's pairings and a responder's area are read by the check itself, before the
    page; so is a supervisor's whose token names no unit (nothing is in their subtree)."""
    person = world.elders[0]
    for who in (
        actor(ActorRole.VOLUNTEER, world.v1, subject=str(world.helpers[0])),
        actor(ActorRole.TOWNSHIP_RESPONDER, world.t1),
        actor(ActorRole.COUNTY_RESPONDER, world.county),
        actor(ActorRole.COUNTY_SUPERVISOR, None),
    ):
        assert gate(world, who, person) is None, who.role


def test_the_condition_is_given_once_for_the_check_left_to_the_read(world: World) -> None:
    """Asked for another id than the one the check was left for, ``gate`` makes the check."""
    access = Access(world.app, AccessViews(None, None, None), actor(ActorRole.ADMINISTRATOR, None))  # type: ignore[arg-type]
    made: list[UUID] = []
    target = world.elders[0]
    access.defer_to_read(lambda: made.append(target), frozenset({Scope.ALL}), Kind.PERSON, target)
    assert access.gate(world.elders[1]) is None and made == [target]
    assert access.gate(target) is None  # settled: nothing left to the read
    with pytest.raises(RuntimeError):
        access.gate_held()


def test_only_the_registration_places_a_person() -> None:
    """The condition reads the unit from the first event: were a person ever moved (an event
    that changes their village or org path), the condition would have to follow the move."""
    events = [
        c
        for _, c in inspect.getmembers(Person, inspect.isclass)
        if c.__qualname__.startswith("Person.") and hasattr(c, "apply")
    ]
    assert len(events) >= 10
    placing = [c.__name__ for c in events if {"org_path", "village_id"} & set(typing.get_type_hints(c))]
    assert placing == ["Registered"]
    assert all("org_path" not in inspect.getsource(c.apply) for c in events if c is not Person.Registered)
