"""Pairings (结对帮扶): their three shapes, who may be in them, helpers' capacity, and ending."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest

from domain.group import GroupDisbandedError
from domain.helper import DEFAULT_CAPACITY, HelperError, HelperInactiveError, HelperOverCapacityError
from domain.pairing import DuplicateMemberError, Pairing, PairingEndedError, PairingError
from domain.person import Person, PersonInactiveError
from domain.vocabulary import Cadence, HelperRole, PairingShape, VisitMode
from tests.scenario import (
    TODAY,
    OrgTree,
    child,
    elder,
    given,
    group,
    helper,
    meta,
    names,
    nothing_emitted,
    pairing,
    refused,
    then,
)

ONE, MANY, N_TO_ONE = PairingShape.ONE_TO_ONE, PairingShape.ONE_TO_MANY, PairingShape.MANY_TO_ONE


@pytest.fixture
def tree() -> OrgTree:
    return OrgTree()


def form(shape: PairingShape, helpers: list[Any], persons: list[Any], m: Any = None, **kw: Any) -> Pairing:
    return Pairing.form(
        id=uuid4(),
        shape=shape,
        helpers=helpers,
        persons=persons,
        cadence=kw.pop("cadence", Cadence.WEEKLY),
        visit_mode=VisitMode.HOME_VISIT,
        starts_on=kw.pop("starts_on", TODAY),
        group=kw.pop("group", None),
        meta=m or meta(),
    )


def gone(p: Person) -> Person:
    p.leave_programme("moved to the city", meta())
    return given(p)


# ---- forming ----------------------------------------------------------------------------------


def test_one_to_one_pairs_a_caring_mother_with_a_child(tree: OrgTree) -> None:
    mother, girl = helper(tree.village, role=HelperRole.CARING_MOTHER), child(tree.village)
    m = meta(actor="director-1", role="child_director", correlation="req-1")
    p = form(ONE, [mother], [girl], m)
    [formed] = then(m, p)
    assert names([formed]) == ["Pairing.Formed"]
    assert (formed.helper_ids, formed.person_ids, formed.org_path) == ([mother.id], [girl.id], tree.village.path)
    [assigned] = then(m, mother)
    assert (names([assigned]), assigned.pairing_id, assigned.people) == (["Helper.PairingAssigned"], p.id, 1)
    assert names(then(m, girl)) == ["Person.PairingJoined"]
    assert girl.pairing_ids == [p.id] and mother.load == 1


def test_one_to_n_counts_every_person_on_the_helper(tree: OrgTree) -> None:
    cadre = helper(tree.township, role=HelperRole.VILLAGE_CADRE)
    persons = [elder(tree.village), elder(tree.village), child(tree.other_village)]
    m = meta()
    p = form(MANY, [cadre], persons, m)
    assert (
        names(then(m, p, cadre, *persons))
        == ["Pairing.Formed", "Helper.PairingAssigned"] + ["Person.PairingJoined"] * 3
    )
    assert cadre.assignments == {p.id: 3}
    assert p.org_path == [tree.county.id]  # the persons live in two townships of one county


def test_n_to_one_four_for_one(tree: OrgTree) -> None:
    roles = [HelperRole.ASSISTING_CADRE, HelperRole.VILLAGE_CADRE, HelperRole.FAMILY_DOCTOR, HelperRole.POLICE]
    four = [helper(tree.township, role=r) for r in roles]
    key_person = elder(tree.village)
    m = meta()
    p = form(N_TO_ONE, four, [key_person], m)
    assert names(then(m, p, *four, key_person)) == ["Pairing.Formed"] + ["Helper.PairingAssigned"] * 4 + [
        "Person.PairingJoined"
    ]
    assert all(h.assignments == {p.id: 1} for h in four)


@pytest.mark.parametrize(
    ("shape", "helpers", "persons", "field"),
    [
        (ONE, 2, 1, "helper_ids"),
        (ONE, 0, 1, "helper_ids"),
        (ONE, 1, 2, "person_ids"),
        (ONE, 1, 0, "person_ids"),
        (MANY, 2, 3, "helper_ids"),
        (MANY, 0, 3, "helper_ids"),
        (MANY, 1, 1, "person_ids"),
        (MANY, 1, 0, "person_ids"),
        (N_TO_ONE, 1, 1, "helper_ids"),
        (N_TO_ONE, 0, 1, "helper_ids"),
        (N_TO_ONE, 3, 2, "person_ids"),
        (N_TO_ONE, 3, 0, "person_ids"),
    ],
)
def test_the_members_must_fit_the_shape(
    tree: OrgTree, shape: PairingShape, helpers: int, persons: int, field: str
) -> None:
    hs = [helper(tree.village) for _ in range(helpers)]
    ps = [elder(tree.village) for _ in range(persons)]
    with refused(PairingError, field):
        form(shape, hs, ps)
    nothing_emitted(*hs, *ps)


@pytest.mark.parametrize(("order", "field"), [("aab", "person_ids[1]"), ("aba", "person_ids[2]")])
def test_a_person_listed_twice_is_refused(tree: OrgTree, order: str, field: str) -> None:
    cadre, a, b = helper(tree.village), elder(tree.village), elder(tree.village)
    with refused(DuplicateMemberError, field):
        form(MANY, [cadre], [{"a": a, "b": b}[c] for c in order])
    nothing_emitted(cadre, a, b)


def test_a_helper_listed_twice_is_refused(tree: OrgTree) -> None:
    doctor, police, person = helper(tree.village), helper(tree.village), elder(tree.village)
    with refused(DuplicateMemberError, "helper_ids[2]"):
        form(N_TO_ONE, [doctor, police, doctor], [person])
    nothing_emitted(doctor, police, person)


def test_a_person_who_left_the_programme_cannot_be_paired(tree: OrgTree) -> None:
    cadre, stays, left = helper(tree.village), elder(tree.village), gone(elder(tree.village))
    with refused(PersonInactiveError, "person_ids[1]"):
        form(MANY, [cadre], [stays, left])
    nothing_emitted(cadre, stays, left)


def test_a_deactivated_helper_cannot_be_paired(tree: OrgTree) -> None:
    serving, retired, person = helper(tree.village), helper(tree.village), elder(tree.village)
    retired.deactivate("retired", meta())
    given(retired)
    with refused(HelperInactiveError, "helper_ids[1]"):
        form(N_TO_ONE, [serving, retired], [person])
    nothing_emitted(person)


def test_a_group_pairing_records_the_group_and_a_disbanded_group_is_refused(tree: OrgTree) -> None:
    a, b, person = helper(tree.village), helper(tree.village), elder(tree.village)
    team = group(tree.village, a, b)
    p = form(N_TO_ONE, [a, b], [person], group=team)
    assert p.group_id == team.id
    other = elder(tree.village)
    given(a, b)
    team.disband("merged", [a, b], meta())
    given(team, a, b)
    with refused(GroupDisbandedError, "group_id"):
        form(N_TO_ONE, [a, b], [other], group=team)


# ---- capacity ---------------------------------------------------------------------------------


def test_the_default_capacity_takes_ten_people_and_refuses_the_eleventh(tree: OrgTree) -> None:
    cadre = helper(tree.village)
    assert cadre.capacity == DEFAULT_CAPACITY == 10
    pairing(MANY, [cadre], [elder(tree.village) for _ in range(10)])
    eleventh = child(tree.village)
    with refused(HelperOverCapacityError, "helper_ids[0]") as info:
        form(ONE, [cadre], [eleventh])
    assert info.value.extra["load"] == 10 and info.value.extra["capacity"] == 10
    nothing_emitted(cadre, eleventh)


def test_forming_names_the_helper_who_would_be_over_capacity(tree: OrgTree) -> None:
    roomy, full, person = helper(tree.village), helper(tree.village, capacity=1), elder(tree.village)
    pairing(ONE, [full], [elder(tree.village)])
    with refused(HelperOverCapacityError, "helper_ids[1]") as info:
        form(N_TO_ONE, [roomy, full], [person])
    assert info.value.extra["helper_id"] == str(full.id)
    nothing_emitted(full, person)


def test_a_one_to_n_pairing_larger_than_the_capacity_is_refused(tree: OrgTree) -> None:
    cadre = helper(tree.village, capacity=2)
    with refused(HelperOverCapacityError, "helper_ids[0]"):
        form(MANY, [cadre], [elder(tree.village) for _ in range(3)])
    form(MANY, [cadre], [elder(tree.village) for _ in range(2)])


def test_adding_a_person_beyond_capacity_is_refused_and_changes_nothing(tree: OrgTree) -> None:
    cadre = helper(tree.village, capacity=2)
    p = pairing(MANY, [cadre], [elder(tree.village), elder(tree.village)])
    third = elder(tree.village)
    with refused(HelperOverCapacityError, "person_id"):
        p.add_person(third, [cadre], meta())
    nothing_emitted(p, cadre, third)
    assert len(p.person_ids) == 2 and cadre.load == 2


def test_adding_a_helper_already_at_capacity_is_refused(tree: OrgTree) -> None:
    a, b, busy = helper(tree.village), helper(tree.village), helper(tree.village, capacity=1)
    pairing(ONE, [busy], [child(tree.village)])
    p = pairing(N_TO_ONE, [a, b], [elder(tree.village)])
    with refused(HelperOverCapacityError, "helper_id"):
        p.add_helper(busy, meta())
    nothing_emitted(p, busy)


def test_ending_a_pairing_frees_the_helpers_capacity(tree: OrgTree) -> None:
    mother = helper(tree.village, capacity=1)
    first = pairing(ONE, [mother], [child(tree.village)])
    second_child = child(tree.village)
    with refused(HelperOverCapacityError, "helper_ids[0]"):
        form(ONE, [mother], [second_child])
    first.end(reason="the child moved away", ends_on=TODAY, helpers=[mother], persons=[], meta=meta())
    assert mother.load == 0
    form(ONE, [mother], [second_child])
    assert mother.load == 1


def test_removing_a_person_frees_capacity(tree: OrgTree) -> None:
    cadre = helper(tree.village, capacity=3)
    a = elder(tree.village)
    p = pairing(MANY, [cadre], [a, elder(tree.village), elder(tree.village)])
    p.remove_person(a, [cadre], "moved in with family", meta())
    assert cadre.assignments == {p.id: 2}
    form(ONE, [cadre], [child(tree.village)])
    assert cadre.load == 3


def test_removing_a_helper_frees_their_capacity(tree: OrgTree) -> None:
    a, b, c = helper(tree.village), helper(tree.village), helper(tree.village, capacity=1)
    p = pairing(N_TO_ONE, [a, b, c], [elder(tree.village)])
    p.remove_helper(c, meta())
    assert c.load == 0
    form(ONE, [c], [child(tree.village)])


def test_a_helper_in_a_pairing_cannot_be_deactivated_until_it_ends(tree: OrgTree) -> None:
    mother, girl = helper(tree.village), child(tree.village)
    p = pairing(ONE, [mother], [girl])
    with refused(HelperError, "reason"):
        mother.deactivate("moved away", meta())
    p.end(reason="helper moved away", ends_on=TODAY, helpers=[mother], persons=[girl], meta=meta())
    mother.deactivate("moved away", meta())
    assert not mother.active


# ---- changing members -------------------------------------------------------------------------


def test_adding_a_person_to_a_one_to_n_pairing(tree: OrgTree) -> None:
    cadre = helper(tree.village)
    p = pairing(MANY, [cadre], [elder(tree.village), elder(tree.village)])
    newcomer = child(tree.village)
    m = meta()
    p.add_person(newcomer, [cadre], m)
    assert names(then(m, p, cadre, newcomer)) == [
        "Pairing.PersonAdded",
        "Helper.PairingAssigned",
        "Person.PairingJoined",
    ]
    assert p.person_ids[-1] == newcomer.id and cadre.assignments == {p.id: 3} and newcomer.pairing_ids == [p.id]


@pytest.mark.parametrize("shape", [ONE, N_TO_ONE])
def test_a_second_person_breaks_one_to_one_and_n_to_one(tree: OrgTree, shape: PairingShape) -> None:
    helpers = [helper(tree.village) for _ in range(1 if shape == ONE else 2)]
    p = pairing(shape, helpers, [elder(tree.village)])
    other = elder(tree.village)
    with refused(PairingError, "person_id"):
        p.add_person(other, helpers, meta())
    nothing_emitted(p, *helpers, other)


def test_a_person_is_added_once(tree: OrgTree) -> None:
    cadre, a = helper(tree.village), elder(tree.village)
    p = pairing(MANY, [cadre], [a, elder(tree.village)])
    with refused(DuplicateMemberError, "person_id"):
        p.add_person(a, [cadre], meta())
    nothing_emitted(p, cadre, a)


def test_a_person_who_left_cannot_be_added(tree: OrgTree) -> None:
    cadre = helper(tree.village)
    p = pairing(MANY, [cadre], [elder(tree.village), elder(tree.village)])
    left = gone(elder(tree.village))
    with refused(PersonInactiveError, "person_id"):
        p.add_person(left, [cadre], meta())
    nothing_emitted(p, cadre, left)


def test_a_person_joins_only_a_pairing_of_a_unit_they_live_in(tree: OrgTree) -> None:
    """The org path a pairing is formed with decides who sees and manages it; a person from
    another unit would sit in a pairing their own cadre cannot see."""
    cadre = helper(tree.township)
    village_pairing = pairing(MANY, [cadre], [elder(tree.village), elder(tree.village)])
    elsewhere = elder(tree.other_village)
    with refused(PairingError, "person_id"):
        village_pairing.add_person(elsewhere, [cadre], meta())
    nothing_emitted(village_pairing, cadre, elsewhere)
    county_pairing = pairing(MANY, [cadre], [elder(tree.village), elder(tree.other_village)])
    county_pairing.add_person(elder(tree.other_village), [cadre], meta())  # beneath the county: it fits


def test_removing_a_person_from_a_one_to_n_pairing_of_three(tree: OrgTree) -> None:
    cadre = helper(tree.village)
    leaving = elder(tree.village)
    p = pairing(MANY, [cadre], [elder(tree.village), leaving, elder(tree.village)])
    m = meta()
    p.remove_person(leaving, [cadre], "moved in with a daughter", m)
    events = then(m, p, cadre, leaving)
    assert names(events) == ["Pairing.PersonRemoved", "Helper.PairingAssigned", "Person.PairingLeft"]
    assert events[0].reason == "moved in with a daughter" and events[1].people == 2
    assert leaving.id not in p.person_ids and leaving.pairing_ids == []


def test_a_one_to_n_pairing_keeps_two_persons(tree: OrgTree) -> None:
    cadre, a = helper(tree.village), elder(tree.village)
    p = pairing(MANY, [cadre], [a, elder(tree.village)])
    with refused(PairingError, "person_id"):
        p.remove_person(a, [cadre], "moved", meta())
    nothing_emitted(p, cadre, a)


@pytest.mark.parametrize("shape", [ONE, N_TO_ONE])
def test_the_only_person_cannot_be_removed(tree: OrgTree, shape: PairingShape) -> None:
    helpers = [helper(tree.village) for _ in range(1 if shape == ONE else 2)]
    only = elder(tree.village)
    p = pairing(shape, helpers, [only])
    with refused(PairingError, "person_id"):
        p.remove_person(only, helpers, "moved", meta())
    nothing_emitted(p, *helpers, only)


def test_removing_someone_not_in_the_pairing_is_refused(tree: OrgTree) -> None:
    cadre = helper(tree.village)
    p = pairing(MANY, [cadre], [elder(tree.village) for _ in range(3)])
    with refused(PairingError, "person_id"):
        p.remove_person(elder(tree.village), [cadre], "?", meta())
    outsider = helper(tree.village)
    q = pairing(N_TO_ONE, [helper(tree.village) for _ in range(3)], [elder(tree.village)])
    with refused(PairingError, "helper_id"):
        q.remove_helper(outsider, meta())
    nothing_emitted(p, q, outsider)


def test_adding_a_helper_to_an_n_to_one_pairing(tree: OrgTree) -> None:
    a, b, police = helper(tree.village), helper(tree.village), helper(tree.township, role=HelperRole.POLICE)
    p = pairing(N_TO_ONE, [a, b], [elder(tree.village)])
    m = meta()
    p.add_helper(police, m)
    assert names(then(m, p, police)) == ["Pairing.HelperAdded", "Helper.PairingAssigned"]
    assert p.helper_ids == [a.id, b.id, police.id] and police.assignments == {p.id: 1}


@pytest.mark.parametrize("shape", [ONE, MANY])
def test_a_second_helper_breaks_one_to_one_and_one_to_n(tree: OrgTree, shape: PairingShape) -> None:
    h = helper(tree.village)
    p = pairing(shape, [h], [elder(tree.village) for _ in range(1 if shape == ONE else 2)])
    other = helper(tree.village)
    with refused(PairingError, "helper_id"):
        p.add_helper(other, meta())
    nothing_emitted(p, other)


def test_a_helper_is_added_once(tree: OrgTree) -> None:
    a, b = helper(tree.village), helper(tree.village)
    p = pairing(N_TO_ONE, [a, b], [elder(tree.village)])
    with refused(DuplicateMemberError, "helper_id"):
        p.add_helper(b, meta())
    nothing_emitted(p, b)


def test_a_deactivated_helper_cannot_be_added(tree: OrgTree) -> None:
    a, b, retired = helper(tree.village), helper(tree.village), helper(tree.village)
    retired.deactivate("retired", meta())
    given(retired)
    p = pairing(N_TO_ONE, [a, b], [elder(tree.village)])
    with refused(HelperInactiveError, "helper_id"):
        p.add_helper(retired, meta())
    nothing_emitted(p, retired)


def test_removing_a_helper_from_an_n_to_one_pairing_of_three(tree: OrgTree) -> None:
    a, b, c = helper(tree.village), helper(tree.village), helper(tree.village)
    p = pairing(N_TO_ONE, [a, b, c], [elder(tree.village)])
    m = meta()
    p.remove_helper(b, m)
    assert names(then(m, p, b)) == ["Pairing.HelperRemoved", "Helper.PairingReleased"]
    assert p.helper_ids == [a.id, c.id] and b.assignments == {}


@pytest.mark.parametrize("shape", [ONE, MANY, N_TO_ONE])
def test_removing_a_helper_that_breaks_the_shape_is_refused(tree: OrgTree, shape: PairingShape) -> None:
    helpers = [helper(tree.village) for _ in range(2 if shape == N_TO_ONE else 1)]
    p = pairing(shape, helpers, [elder(tree.village) for _ in range(2 if shape == MANY else 1)])
    with refused(PairingError, "helper_id"):
        p.remove_helper(helpers[0], meta())
    nothing_emitted(p, *helpers)


def test_changing_the_cadence(tree: OrgTree) -> None:
    p = pairing(ONE, [helper(tree.village)], [child(tree.village)])
    m = meta()
    p.change_cadence(Cadence.MONTHLY, VisitMode.PHONE_VIDEO, m)
    p.change_cadence(Cadence.MONTHLY, VisitMode.PHONE_VIDEO, m)  # unchanged: nothing
    assert names(then(m, p)) == ["Pairing.CadenceChanged"]
    assert (p.cadence, p.visit_mode) == (Cadence.MONTHLY, VisitMode.PHONE_VIDEO)


# ---- ending -----------------------------------------------------------------------------------


def test_ending_releases_every_helper_and_person(tree: OrgTree) -> None:
    a, b, person = helper(tree.village), helper(tree.village), elder(tree.village)
    p = pairing(N_TO_ONE, [a, b], [person], starts_on=TODAY - timedelta(days=30))
    m = meta()
    p.end(reason=" the elder moved in with her son ", ends_on=TODAY, helpers=[a, b], persons=[person], meta=m)
    assert names(then(m, p, a, b, person)) == [
        "Pairing.Ended",
        "Helper.PairingReleased",
        "Helper.PairingReleased",
        "Person.PairingLeft",
    ]
    assert (p.ended, p.ends_on, p.end_reason) == (True, TODAY, "the elder moved in with her son")
    assert a.load == b.load == 0 and person.pairing_ids == []


def test_ending_needs_a_reason_and_cannot_precede_the_start(tree: OrgTree) -> None:
    h, person = helper(tree.village), child(tree.village)
    p = pairing(ONE, [h], [person], starts_on=TODAY - timedelta(days=1))
    with refused(PairingError, "reason"):
        p.end(reason=" ", ends_on=TODAY, helpers=[h], persons=[person], meta=meta())
    with refused(PairingError, "ends_on"):
        p.end(reason="done", ends_on=TODAY - timedelta(days=2), helpers=[h], persons=[person], meta=meta())
    nothing_emitted(p, h, person)
    p.end(reason="done", ends_on=TODAY - timedelta(days=1), helpers=[h], persons=[person], meta=meta())
    assert p.ended


def _ended(shape: PairingShape, tree: OrgTree) -> tuple[Pairing, list[Any], list[Person]]:
    helpers = [helper(tree.village) for _ in range(3 if shape == N_TO_ONE else 1)]
    persons = [elder(tree.village) for _ in range(3 if shape == MANY else 1)]
    p = pairing(shape, helpers, persons)
    p.end(reason="programme review", ends_on=TODAY, helpers=helpers, persons=persons, meta=meta())
    given(p, *helpers, *persons)
    return p, helpers, persons


CHANGES: dict[str, tuple[PairingShape, Callable[..., None]]] = {
    # Each change would be accepted by an open pairing of that shape.
    "add_person": (MANY, lambda p, hs, ps, t: p.add_person(elder(t.village), hs, meta())),
    "remove_person": (MANY, lambda p, hs, ps, t: p.remove_person(ps[0], hs, "moved", meta())),
    "add_helper": (N_TO_ONE, lambda p, hs, ps, t: p.add_helper(helper(t.village), meta())),
    "remove_helper": (N_TO_ONE, lambda p, hs, ps, t: p.remove_helper(hs[0], meta())),
    "change_cadence": (ONE, lambda p, hs, ps, t: p.change_cadence(Cadence.MONTHLY, VisitMode.PHONE_VIDEO, meta())),
    "end": (ONE, lambda p, hs, ps, t: p.end(reason="again", ends_on=TODAY, helpers=hs, persons=ps, meta=meta())),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_an_ended_pairing_accepts_no_changes(tree: OrgTree, change: str) -> None:
    shape, command = CHANGES[change]
    p, helpers, persons = _ended(shape, tree)
    with refused(PairingEndedError, None):
        command(p, helpers, persons, tree)
    nothing_emitted(p, *helpers, *persons)


@pytest.mark.parametrize("change", list(CHANGES))
def test_the_same_changes_are_accepted_while_open(tree: OrgTree, change: str) -> None:
    shape, command = CHANGES[change]
    helpers = [helper(tree.village) for _ in range(3 if shape == N_TO_ONE else 1)]
    persons = [elder(tree.village) for _ in range(3 if shape == MANY else 1)]
    p = pairing(shape, helpers, persons)
    command(p, helpers, persons, tree)
    assert p.collect_events(), f"{change} emitted nothing on an open pairing"
