"""Helpers (their capacity and service) and volunteer groups (their membership)."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from domain.group import GroupDisbandedError, GroupError, VolunteerGroup
from domain.helper import DEFAULT_CAPACITY, Helper, HelperError, HelperInactiveError, HelperOverCapacityError
from domain.vocabulary import HelperRole
from infrastructure.settings import Settings, load_settings
from tests.scenario import OrgTree, group, helper, meta, names, nothing_emitted, refused, then


@pytest.fixture
def tree() -> OrgTree:
    return OrgTree()


# ---- helpers --------------------------------------------------------------------------------


def test_the_default_capacity_is_ten_people_in_the_domain_and_the_settings() -> None:
    assert DEFAULT_CAPACITY == 10
    assert Settings().helper_capacity == 10
    assert load_settings({}).helper_capacity == 10
    assert load_settings({"GUANAI_HELPER_CAPACITY": "4"}).helper_capacity == 4


def test_a_helper_is_registered_in_an_org_unit(tree: OrgTree) -> None:
    m = meta(role="township_supervisor")
    h = Helper.register(
        id=uuid4(),
        role=HelperRole.CHILD_DIRECTOR,
        name=" 刘主任 ",
        phone="139",
        org_unit=tree.village,
        capacity=10,
        meta=m,
    )
    assert names(then(m, h)) == ["Helper.Registered"]
    assert (h.name, h.org_path, h.load, h.active, h.assignments) == ("刘主任", tree.village.path, 0, True, {})


@pytest.mark.parametrize(("field", "value"), [("name", "  "), ("capacity", 0), ("capacity", -3)])
def test_a_helper_needs_a_name_and_room_for_one_person(tree: OrgTree, field: str, value: Any) -> None:
    fields: dict[str, Any] = {"name": "张志愿", "capacity": 5} | {field: value}
    with refused(HelperError, field):
        Helper.register(id=uuid4(), role=HelperRole.VOLUNTEER, phone="1", org_unit=tree.village, meta=meta(), **fields)


def test_assignments_count_people_up_to_the_capacity(tree: OrgTree) -> None:
    h = helper(tree.village, capacity=5)
    a, b = uuid4(), uuid4()
    m = meta()
    h.assign(a, 3, m)
    h.assign(b, 2, m)
    assert names(then(m, h)) == ["Helper.PairingAssigned", "Helper.PairingAssigned"]
    assert h.load == 5
    with refused(HelperOverCapacityError, "helper_ids") as info:
        h.assign(uuid4(), 1, meta())
    assert info.value.extra == {"helper_id": str(h.id), "load": 5, "capacity": 5}
    nothing_emitted(h)


def test_a_changed_count_replaces_the_pairings_share_of_the_load(tree: OrgTree) -> None:
    h = helper(tree.village, capacity=5)
    a = uuid4()
    h.assign(a, 3, meta())
    h.assign(a, 5, meta())  # 5, not 3 + 5
    h.assign(a, 5, meta())  # unchanged: nothing recorded
    assert names(h.collect_events()) == ["Helper.PairingAssigned", "Helper.PairingAssigned"]
    assert h.load == 5
    with refused(HelperOverCapacityError, "helper_ids"):
        h.assign(a, 6, meta())


def test_releasing_a_pairing_frees_capacity(tree: OrgTree) -> None:
    h = helper(tree.village, capacity=2)
    a = uuid4()
    h.assign(a, 2, meta())
    h.collect_events()
    m = meta()
    h.release(a, m)
    h.release(a, m)  # already released: nothing
    assert names(then(m, h)) == ["Helper.PairingReleased"]
    h.assign(uuid4(), 2, meta())
    assert h.load == 2


def test_capacity_cannot_drop_below_the_current_load(tree: OrgTree) -> None:
    h = helper(tree.village, capacity=5)
    h.assign(uuid4(), 4, meta())
    h.collect_events()
    with refused(HelperError, "capacity") as info:
        h.change_capacity(3, meta())
    assert info.value.extra["load"] == 4
    with refused(HelperError, "capacity"):
        h.change_capacity(0, meta())
    m = meta()
    h.change_capacity(4, m)
    h.change_capacity(4, m)  # unchanged: nothing
    assert names(then(m, h)) == ["Helper.CapacityChanged"]
    assert h.capacity == 4


def test_a_helper_in_active_pairings_cannot_be_deactivated(tree: OrgTree) -> None:
    h = helper(tree.village)
    pairing_id = uuid4()
    h.assign(pairing_id, 1, meta())
    h.collect_events()
    with refused(HelperError, "reason") as info:
        h.deactivate("moved away", meta())
    assert info.value.extra["pairing_ids"] == [str(pairing_id)]
    assert h.active
    nothing_emitted(h)
    h.release(pairing_id, meta())
    h.collect_events()
    m = meta()
    h.deactivate(" moved away ", m)
    assert names(then(m, h)) == ["Helper.Deactivated"]
    assert (h.active, h.deactivated_reason) == (False, "moved away")


def test_deactivation_needs_a_reason(tree: OrgTree) -> None:
    h = helper(tree.village)
    with refused(HelperError, "reason"):
        h.deactivate("", meta())


@pytest.mark.parametrize(
    "command",
    [
        lambda h: h.assign(uuid4(), 1, meta()),
        lambda h: h.change_capacity(3, meta()),
        lambda h: h.join_group(uuid4(), meta()),
        lambda h: h.deactivate("again", meta()),
    ],
    ids=["assign", "change_capacity", "join_group", "deactivate"],
)
def test_a_deactivated_helper_takes_no_new_work(tree: OrgTree, command: Any) -> None:
    h = helper(tree.village)
    h.deactivate("retired", meta())
    h.collect_events()
    with pytest.raises(HelperInactiveError):
        command(h)
    nothing_emitted(h)


# ---- groups ---------------------------------------------------------------------------------


def test_a_group_is_formed_and_takes_helpers_of_its_area(tree: OrgTree) -> None:
    m = meta()
    g = VolunteerGroup.form(id=uuid4(), name=" 澧江志愿服务队 ", org_unit=tree.township, meta=m)
    in_village, at_township = helper(tree.village), helper(tree.township)
    g.add_member(in_village, m)
    g.add_member(at_township, m)
    assert names(then(m, g)) == ["VolunteerGroup.Formed", "VolunteerGroup.MemberAdded", "VolunteerGroup.MemberAdded"]
    assert names(then(m, in_village, at_township)) == ["Helper.JoinedGroup", "Helper.JoinedGroup"]
    assert g.name == "澧江志愿服务队" and g.member_ids == [in_village.id, at_township.id]
    assert in_village.group_ids == [g.id]


def test_a_helper_of_a_parent_unit_may_join_a_village_group(tree: OrgTree) -> None:
    g = group(tree.village)
    county_doctor = helper(tree.county, role=HelperRole.FAMILY_DOCTOR)
    g.add_member(county_doctor, meta())
    assert county_doctor.id in g.member_ids


def test_a_group_needs_a_name(tree: OrgTree) -> None:
    with refused(GroupError, "name"):
        VolunteerGroup.form(id=uuid4(), name=" ", org_unit=tree.village, meta=meta())


def test_a_helper_from_another_township_cannot_join(tree: OrgTree) -> None:
    g = group(tree.village)
    outsider = helper(tree.other_village)
    with refused(GroupError, "helper_id"):
        g.add_member(outsider, meta())
    nothing_emitted(g, outsider)


def test_a_helper_joins_a_group_once(tree: OrgTree) -> None:
    h = helper(tree.village)
    g = group(tree.village, h)
    with refused(GroupError, "helper_id"):
        g.add_member(h, meta())
    nothing_emitted(g, h)
    assert g.member_ids == [h.id]


def test_a_deactivated_helper_cannot_join(tree: OrgTree) -> None:
    g = group(tree.village)
    h = helper(tree.village)
    h.deactivate("retired", meta())
    h.collect_events()
    with refused(HelperInactiveError, "helper_id"):
        g.add_member(h, meta())
    nothing_emitted(g, h)


def test_removing_a_member(tree: OrgTree) -> None:
    h, other = helper(tree.village), helper(tree.village)
    g = group(tree.village, h)
    with refused(GroupError, "helper_id"):
        g.remove_member(other, meta())
    m = meta()
    g.remove_member(h, m)
    assert names(then(m, g, h)) == ["VolunteerGroup.MemberRemoved", "Helper.LeftGroup"]
    assert g.member_ids == [] and h.group_ids == []


def test_disbanding_removes_every_member_and_closes_the_group(tree: OrgTree) -> None:
    a, b = helper(tree.village), helper(tree.village)
    g = group(tree.village, a, b)
    with refused(GroupError, "reason"):
        g.disband(" ", [a, b], meta())
    nothing_emitted(g, a, b)
    m = meta()
    g.disband("merged into the township team", [a, b], m)
    assert names(then(m, g)) == [
        "VolunteerGroup.MemberRemoved",
        "VolunteerGroup.MemberRemoved",
        "VolunteerGroup.Disbanded",
    ]
    assert names(then(m, a, b)) == ["Helper.LeftGroup", "Helper.LeftGroup"]
    assert (g.active, g.member_ids, a.group_ids, b.group_ids) == (False, [], [], [])


@pytest.mark.parametrize(
    "command",
    [
        lambda g, h: g.add_member(h, meta()),
        lambda g, h: g.remove_member(h, meta()),
        lambda g, h: g.disband("again", [], meta()),
    ],
    ids=["add_member", "remove_member", "disband"],
)
def test_a_disbanded_group_accepts_no_changes(tree: OrgTree, command: Any) -> None:
    h = helper(tree.village)
    g = group(tree.village)
    g.disband("done", [], meta())
    g.collect_events()
    with refused(GroupDisbandedError, None):
        command(g, h)
    nothing_emitted(g, h)
