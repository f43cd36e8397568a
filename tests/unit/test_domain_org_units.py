"""Org units: county > township > village, each known by its 12-digit division code."""

from __future__ import annotations

import pytest

from domain.org_unit import OrgUnit, OrgUnitError, org_unit_id
from domain.vocabulary import OrgLevel
from tests.scenario import OrgTree, given, meta, names, nothing_emitted, refused, then


def register(code: str, level: OrgLevel, parent: OrgUnit | None, name: str = "某地") -> OrgUnit:
    return OrgUnit.register(code=code, name=name, level=level, parent=parent, meta=meta())


def test_a_county_is_a_root_and_its_id_derives_from_its_code() -> None:
    m = meta(role="administrator")
    county = OrgUnit.register(code="530428000000", name=" 元江县 ", level=OrgLevel.COUNTY, parent=None, meta=m)
    [registered] = then(m, county)
    assert names([registered]) == ["OrgUnit.Registered"]
    assert county.id == org_unit_id("530428000000") == registered.originator_id
    assert (county.name, county.level, county.parent_id, county.path) == ("元江县", OrgLevel.COUNTY, None, [county.id])


def test_a_township_hangs_under_a_county_and_a_village_under_a_township() -> None:
    tree = OrgTree()
    assert tree.township.parent_id == tree.county.id
    assert tree.village.parent_id == tree.township.id
    assert tree.village.path == [tree.county.id, tree.township.id, tree.village.id]


def test_a_county_has_no_parent() -> None:
    tree = OrgTree()
    with refused(OrgUnitError, "parent_id"):
        register("530429000000", OrgLevel.COUNTY, tree.county)


@pytest.mark.parametrize("level", [OrgLevel.TOWNSHIP, OrgLevel.VILLAGE])
def test_townships_and_villages_need_a_parent(level: OrgLevel) -> None:
    with refused(OrgUnitError, "parent_id"):
        register("530428103000", level, None)


def test_a_township_under_a_township_is_refused() -> None:
    tree = OrgTree()
    with refused(OrgUnitError, "parent_id"):
        register("530428103000", OrgLevel.TOWNSHIP, tree.township)


def test_a_township_under_a_village_is_refused() -> None:
    tree = OrgTree()
    with refused(OrgUnitError, "parent_id"):
        register("530428103000", OrgLevel.TOWNSHIP, tree.village)


def test_a_village_directly_under_a_county_is_refused() -> None:
    tree = OrgTree()
    with refused(OrgUnitError, "parent_id"):
        register("530428000201", OrgLevel.VILLAGE, tree.county)


def test_a_village_under_a_village_is_refused() -> None:
    tree = OrgTree()
    with refused(OrgUnitError, "parent_id"):
        register("530428101202", OrgLevel.VILLAGE, tree.village)


FULL_WIDTH_CODE = "".join(chr(ord(c) + 0xFEE0) for c in "530428000000")  # ５３０４２８...


@pytest.mark.parametrize(
    "code",
    ["53042800000", "5304280000000", "53042800000A", "", "530428 00000", "530428000000\n", FULL_WIDTH_CODE],
    ids=["11-digits", "13-digits", "letter", "empty", "space", "trailing-newline", "full-width-digits"],
)
def test_a_division_code_has_exactly_twelve_ascii_digits(code: str) -> None:
    with refused(OrgUnitError, "code"):
        register(code, OrgLevel.COUNTY, None)


@pytest.mark.parametrize("name", ["", "   "])
def test_a_unit_needs_a_name(name: str) -> None:
    with refused(OrgUnitError, "name"):
        register("530428000000", OrgLevel.COUNTY, None, name=name)


def test_rename_records_the_new_name() -> None:
    tree = OrgTree()
    m = meta(role="county_supervisor")
    tree.village.rename(" 红河社区 ", m)
    assert names(then(m, tree.village)) == ["OrgUnit.Renamed"]
    assert tree.village.name == "红河社区"


def test_rename_to_the_same_name_emits_nothing() -> None:
    tree = OrgTree()
    tree.village.rename("红河村", meta())
    nothing_emitted(tree.village)


def test_rename_to_a_blank_name_is_refused() -> None:
    tree = OrgTree()
    with refused(OrgUnitError, "name"):
        tree.village.rename("  ", meta())
    nothing_emitted(tree.village)
    assert tree.village.name == "红河村"


def test_contains_means_this_unit_or_below() -> None:
    tree = OrgTree()
    assert tree.county.contains(tree.village)
    assert tree.township.contains(tree.village)
    assert tree.village.contains(tree.village)
    assert not tree.other_township.contains(tree.village)
    assert not tree.village.contains(tree.township)


def test_a_registered_unit_can_be_rebuilt_from_its_events() -> None:
    tree = OrgTree()
    unit = OrgUnit.register(code="530428101202", name="新村", level=OrgLevel.VILLAGE, parent=tree.township, meta=meta())
    events = unit.collect_events()
    replayed = None
    for e in events:
        replayed = e.mutate(replayed)
    assert given(replayed).path == unit.path and replayed.level == OrgLevel.VILLAGE
