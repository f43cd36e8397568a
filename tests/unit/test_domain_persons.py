"""Persons on the registry: who counts as a left-behind elder or child, and what is recorded."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from uuid import uuid4

import pytest

from domain.base import ERASED, ErasedError
from domain.person import Person, PersonError, PersonInactiveError, id_number_problem
from domain.vocabulary import OrgLevel, PersonKind, RiskTag, Sex
from tests.scenario import (
    NOW,
    TODAY,
    OrgTree,
    child,
    elder,
    meta,
    names,
    nothing_emitted,
    refused,
    then,
    valid_id_number,
    years_before,
)


@pytest.fixture
def tree() -> OrgTree:
    return OrgTree()


def register(tree: OrgTree, kind: PersonKind, **overrides: Any) -> Person:
    fields: dict[str, Any] = {
        "id": uuid4(),
        "kind": kind,
        "name": "某人",
        "sex": Sex.FEMALE,
        "birth_date": years_before(TODAY, 70 if kind == PersonKind.ELDER else 8),
        "id_number": None,
        "household": "",
        "village": tree.village,
        "risk_tags": [],
        "guardian": None,
        "parents": [],
        "absent_children": [],
        "care_agreement_signed_on": None,
        "meta": meta(),
    }
    fields.update(overrides)
    return Person.register(**fields)


# ---- registration ---------------------------------------------------------------------------


def test_an_elder_is_registered_in_a_village_with_the_village_path(tree: OrgTree) -> None:
    m = meta(actor="director-1", role="child_director", correlation="req-42")
    p = register(tree, PersonKind.ELDER, risk_tags=[RiskTag.LIVING_ALONE, RiskTag.DIBAO, RiskTag.LIVING_ALONE], meta=m)
    assert names(then(m, p)) == ["Person.Registered"]
    assert p.village_id == tree.village.id and p.org_path == tree.village.path
    assert p.risk_tags == ["dibao", "living_alone"]  # deduplicated, stable order
    assert p.active and p.pairing_ids == []


@pytest.mark.parametrize("level", ["county", "township"])
def test_a_person_lives_in_a_village_not_a_township_or_county(tree: OrgTree, level: str) -> None:
    unit = tree.county if level == "county" else tree.township
    assert unit.level == OrgLevel(level)
    with refused(PersonError, "village_id"):
        register(tree, PersonKind.ELDER, village=unit)


def test_a_person_needs_a_name(tree: OrgTree) -> None:
    with refused(PersonError, "name"):
        register(tree, PersonKind.CHILD, name="  ")


def test_an_elder_is_sixty_or_more(tree: OrgTree) -> None:
    register(tree, PersonKind.ELDER, birth_date=years_before(TODAY, 60))  # sixtieth birthday today
    with refused(PersonError, "birth_date"):
        register(tree, PersonKind.ELDER, birth_date=years_before(TODAY, 60) + timedelta(days=1))


def test_no_one_is_older_than_a_hundred_and_twenty(tree: OrgTree) -> None:
    register(tree, PersonKind.ELDER, birth_date=years_before(TODAY, 120))
    with refused(PersonError, "birth_date"):
        register(tree, PersonKind.ELDER, birth_date=years_before(TODAY, 121))
    with refused(PersonError, "birth_date"):
        register(tree, PersonKind.ELDER, birth_date=date(1, 1, 1))


def test_a_child_is_a_minor(tree: OrgTree) -> None:
    register(tree, PersonKind.CHILD, birth_date=years_before(TODAY, 18) + timedelta(days=1))  # 18 tomorrow
    with refused(PersonError, "birth_date"):
        register(tree, PersonKind.CHILD, birth_date=years_before(TODAY, 18))


def test_age_is_taken_on_the_day_the_registration_occurred(tree: OrgTree) -> None:
    born = years_before(TODAY, 60) + timedelta(days=10)
    with refused(PersonError, "birth_date"):
        register(tree, PersonKind.ELDER, birth_date=born)
    register(tree, PersonKind.ELDER, birth_date=born, meta=meta(at=NOW + timedelta(days=10)))


def test_no_birth_date_in_the_future(tree: OrgTree) -> None:
    with refused(PersonError, "birth_date"):
        register(tree, PersonKind.CHILD, birth_date=TODAY + timedelta(days=1))
    register(tree, PersonKind.CHILD, birth_date=TODAY)  # a newborn


def test_an_id_number_must_pass_its_checksum(tree: OrgTree) -> None:
    good = valid_id_number("53042819500101002")
    p = register(tree, PersonKind.ELDER, id_number=good.lower())
    assert p.id_number == good.upper()
    wrong_check = good[:17] + ("0" if good[17] != "0" else "1")
    with refused(PersonError, "id_number"):
        register(tree, PersonKind.ELDER, id_number=wrong_check)


@pytest.mark.parametrize(
    "number",
    [
        "5304281950010100",  # too short
        "53042819500101002XX",  # too long
        "5304281950010100X1",  # letter among the digits
        "".join(chr(ord(c) + 0xFEE0) for c in "53042819500101002") + "X",  # full-width digits
        "²" * 17 + "X",  # superscript digits
    ],
    ids=["short", "long", "letter", "full-width", "superscript"],
)
def test_an_id_number_has_seventeen_ascii_digits_and_a_check_character(tree: OrgTree, number: str) -> None:
    assert id_number_problem(number) is not None
    with refused(PersonError, "id_number"):
        register(tree, PersonKind.ELDER, id_number=number)


def test_a_check_character_x_is_accepted() -> None:
    # 11010519491231002X is the GB 11643 specimen number.
    assert id_number_problem("11010519491231002X") is None
    assert id_number_problem("11010519491231002x") is None
    assert id_number_problem("110105194912310020") is not None


@pytest.mark.parametrize("tag", [RiskTag.CHILD_IN_DIFFICULTY, RiskTag.DE_FACTO_UNSUPPORTED])
def test_child_only_tags_are_refused_for_an_elder_naming_the_index(tree: OrgTree, tag: RiskTag) -> None:
    with refused(PersonError, "risk_tags[1]"):
        register(tree, PersonKind.ELDER, risk_tags=[RiskTag.DIBAO, tag])


@pytest.mark.parametrize("tag", [RiskTag.ADVANCED_AGE, RiskTag.EMPTY_NEST])
def test_elder_only_tags_are_refused_for_a_child_naming_the_index(tree: OrgTree, tag: RiskTag) -> None:
    with refused(PersonError, "risk_tags[2]"):
        register(tree, PersonKind.CHILD, risk_tags=[RiskTag.DIBAO, RiskTag.DISABLED, tag])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("guardian", {"name": "王奶奶"}),
        ("parents", [{"name": "王建国"}]),
        ("care_agreement_signed_on", TODAY),
    ],
)
def test_child_only_fields_are_refused_for_an_elder(tree: OrgTree, field: str, value: Any) -> None:
    with refused(PersonError, field):
        register(tree, PersonKind.ELDER, **{field: value})


def test_absent_children_are_recorded_for_elders_only(tree: OrgTree) -> None:
    register(tree, PersonKind.ELDER, absent_children=[{"name": "王强"}])
    with refused(PersonError, "absent_children"):
        register(tree, PersonKind.CHILD, absent_children=[{"name": "王强"}])


def test_an_agreement_cannot_be_signed_in_the_future(tree: OrgTree) -> None:
    register(tree, PersonKind.CHILD, care_agreement_signed_on=TODAY)
    with refused(PersonError, "care_agreement_signed_on"):
        register(tree, PersonKind.CHILD, care_agreement_signed_on=TODAY + timedelta(days=1))


# ---- changes --------------------------------------------------------------------------------


def test_adding_and_removing_a_risk_tag(tree: OrgTree) -> None:
    p = elder(tree.village)
    m = meta()
    p.add_risk_tag(RiskTag.ADVANCED_AGE, m)
    p.add_risk_tag(RiskTag.ADVANCED_AGE, m)  # already there: nothing more
    p.remove_risk_tag(RiskTag.LIVING_ALONE, m)
    p.remove_risk_tag(RiskTag.TEKUN, m)  # never there: nothing
    assert names(then(m, p)) == ["Person.RiskTagAdded", "Person.RiskTagRemoved"]
    assert p.risk_tags == ["advanced_age"]


def test_a_tag_of_the_other_kind_cannot_be_added_later(tree: OrgTree) -> None:
    e, c = elder(tree.village), child(tree.village)
    with refused(PersonError, "tag"):
        e.add_risk_tag(RiskTag.CHILD_IN_DIFFICULTY, meta())
    with refused(PersonError, "tag"):
        c.add_risk_tag(RiskTag.EMPTY_NEST, meta())
    nothing_emitted(e, c)


def test_a_guardian_and_an_agreement_are_for_children_only(tree: OrgTree) -> None:
    e = elder(tree.village)
    with refused(PersonError, "guardian"):
        e.assign_guardian({"name": "邻居"}, meta())
    with refused(PersonError, "signed_on"):
        e.sign_care_agreement(TODAY, meta())
    nothing_emitted(e)


def test_a_child_gets_a_guardian_and_a_signed_agreement(tree: OrgTree) -> None:
    c = child(tree.village)
    m = meta()
    c.assign_guardian({"name": "王爷爷", "relation": "grandfather"}, m)
    c.sign_care_agreement(TODAY - timedelta(days=3), m)
    assert names(then(m, c)) == ["Person.GuardianAssigned", "Person.CareAgreementSigned"]
    assert c.guardian == {"name": "王爷爷", "relation": "grandfather"}
    assert c.care_agreement_signed_on == TODAY - timedelta(days=3)


def test_an_agreement_signed_after_the_command_occurred_is_refused(tree: OrgTree) -> None:
    c = child(tree.village)
    with refused(PersonError, "signed_on"):
        c.sign_care_agreement(TODAY + timedelta(days=1), meta())
    nothing_emitted(c)


def test_leaving_and_returning_to_the_programme(tree: OrgTree) -> None:
    p = elder(tree.village)
    m = meta()
    p.leave_programme(" moved to the county town ", m)
    assert (p.active, p.left_reason) == (False, "moved to the county town")
    p.return_to_programme(m)
    assert names(then(m, p)) == ["Person.LeftProgramme", "Person.ReturnedToProgramme"]
    assert p.active and p.left_reason is None


def test_leaving_needs_a_reason(tree: OrgTree) -> None:
    p = elder(tree.village)
    with refused(PersonError, "reason"):
        p.leave_programme(" ", meta())
    nothing_emitted(p)


def test_returning_while_in_the_programme_is_refused(tree: OrgTree) -> None:
    p = elder(tree.village)
    with refused(PersonError, None):
        p.return_to_programme(meta())


def _leave(p: Person) -> Person:
    p.leave_programme("passed away", meta())
    p.collect_events()
    return p


@pytest.mark.parametrize(
    "command",
    [
        lambda p: p.add_risk_tag(RiskTag.DIBAO, meta()),
        lambda p: p.remove_risk_tag(RiskTag.LIVING_ALONE, meta()),
        lambda p: p.assign_guardian({"name": "王奶奶"}, meta()),
        lambda p: p.sign_care_agreement(TODAY, meta()),
        lambda p: p.join_pairing(uuid4(), meta()),
        lambda p: p.leave_programme("again", meta()),
    ],
    ids=[
        "add_risk_tag",
        "remove_risk_tag",
        "assign_guardian",
        "sign_care_agreement",
        "join_pairing",
        "leave_programme",
    ],
)
def test_a_person_who_left_accepts_no_changes(tree: OrgTree, command: Any) -> None:
    p = _leave(child(tree.village, risk_tags=[]))
    with pytest.raises(PersonInactiveError) as info:
        command(p)
    assert "reason" not in info.value.extra and "passed away" not in str(info.value)  # personal: not echoed
    nothing_emitted(p)


def test_joining_and_leaving_pairings_is_recorded_once(tree: OrgTree) -> None:
    p = child(tree.village)
    pairing_id = uuid4()
    m = meta()
    p.join_pairing(pairing_id, m)
    p.join_pairing(pairing_id, m)
    p.leave_pairing(pairing_id, m)
    p.leave_pairing(pairing_id, m)
    assert names(then(m, p)) == ["Person.PairingJoined", "Person.PairingLeft"]
    assert p.pairing_ids == []


# ---- erasure --------------------------------------------------------------------------------


def test_erasing_clears_the_personal_fields_and_is_done_once(tree: OrgTree) -> None:
    guardian = {"name": "王奶奶", "relation": "grandmother"}
    p = child(tree.village, risk_tags=[])
    p.assign_guardian(guardian, meta())
    p.leave_programme("moved away with her mother", meta())
    p.collect_events()
    m = meta()
    p.erase(" data subject request ", m)
    p.erase("again", m)
    [erased] = then(m, p)
    assert (type(erased).__qualname__, erased.reason) == ("Person.Erased", "data subject request")
    assert (p.name, p.id_number, p.left_reason, p.parents, p.erased, p.active) == (
        ERASED, None, ERASED, [], True, False
    )  # fmt: skip
    assert p.guardian == {"name": ERASED, "relation": ERASED}  # still "has a guardian"
    assert guardian == {"name": "王奶奶", "relation": "grandmother"}


def test_erasing_needs_a_reason_and_no_pairings(tree: OrgTree) -> None:
    p = elder(tree.village)
    with refused(PersonError, "reason"):
        p.erase(" ", meta())
    p.join_pairing(uuid4(), meta())
    p.collect_events()
    with refused(PersonError, "reason"):
        p.erase("request", meta())
    nothing_emitted(p)


@pytest.mark.parametrize(
    "command",
    [
        lambda p: p.add_risk_tag(RiskTag.DIBAO, meta()),
        lambda p: p.assign_guardian({"name": "王奶奶"}, meta()),
        lambda p: p.join_pairing(uuid4(), meta()),
        lambda p: p.leave_programme("again", meta()),
        lambda p: p.return_to_programme(meta()),
    ],
    ids=["add_risk_tag", "assign_guardian", "join_pairing", "leave_programme", "return_to_programme"],
)
def test_an_erased_person_accepts_no_changes(tree: OrgTree, command: Any) -> None:
    p = child(tree.village, risk_tags=[])
    p.erase("request", meta())
    p.collect_events()
    with pytest.raises(ErasedError):
        command(p)
    nothing_emitted(p)
