"""Emergency reports (应急救助): filing, routing once per level, deadlines and escalation at most
once per level, acknowledging, acting, resolving, reopening, closing and linking duplicates."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import uuid4

import pytest

from domain.emergency import (
    ActionKind,
    AlreadyAcknowledgedError,
    Category,
    EmergencyError,
    EmergencyReport,
    Outcome,
    ReportClosedError,
    Severity,
    Status,
)
from tests.scenario import NOW, OrgTree, elder, given, meta, names, nothing_emitted, refused, then

DEADLINE = NOW + timedelta(minutes=5)


@pytest.fixture
def tree() -> OrgTree:
    return OrgTree()


def file(tree: OrgTree, m: object = None, **kw: object) -> EmergencyReport:
    person = elder(tree.village)
    fields: dict[str, object] = {
        "id": uuid4(),
        "category": Category.CRITICAL_ILLNESS,
        "severity": Severity.CRITICAL,
        "person_id": person.id,
        "location": None,
        "description": " 老人在家中跌倒，无法起身 ",
        "village_id": person.village_id,
        "org_path": person.org_path,
        "codes": (tree.county.code, tree.township.code),
        "meta": m or meta(),
    }
    fields.update(kw)
    return EmergencyReport.report(**fields)  # type: ignore[arg-type]


def routed(tree: OrgTree, **kw: object) -> EmergencyReport:
    r = file(tree, **kw)
    r.route(0, ["resp-1", "resp-2"], DEADLINE, meta(actor="router", role="system"))
    return given(r)


def at(when: datetime, **kw: str) -> object:
    return meta(at=when, **kw)


# ---- filing -----------------------------------------------------------------------------------


def test_a_volunteer_files_a_report_about_a_registered_elder(tree: OrgTree) -> None:
    m = meta(actor="vol-3", role="volunteer")
    r = file(tree, m)
    [reported] = then(m, r)
    assert names([reported]) == ["EmergencyReport.Reported"]
    assert (reported.township_id, reported.county_id) == (tree.township.id, tree.county.id)
    assert (reported.county_code, reported.township_code) == (tree.county.code, tree.township.code)
    assert r.status == Status.REPORTED and r.level == 0 and r.reporter_id == "vol-3"
    assert r.description == "老人在家中跌倒，无法起身" and r.reported_at == NOW and r.deadline is None


def test_an_unregistered_person_is_reported_by_location(tree: OrgTree) -> None:
    location = {"org_unit_id": str(tree.village.id), "address": "红河村口桥下"}
    r = file(tree, person_id=None, location=location, category=Category.WANDERING_MISSING)
    assert r.person_id is None and r.location == location and r.township_id == tree.township.id


def test_a_report_names_someone_or_somewhere(tree: OrgTree) -> None:
    with refused(EmergencyError, "person_id"):
        file(tree, person_id=None, location=None)


def test_a_report_belongs_to_a_township(tree: OrgTree) -> None:
    with refused(EmergencyError, "location.org_unit_id"):
        file(tree, person_id=None, location={"org_unit_id": str(tree.county.id)}, org_path=[tree.county.id])


# ---- routing ----------------------------------------------------------------------------------


def test_routing_records_who_was_alerted_and_by_when_once_per_level(tree: OrgTree) -> None:
    r = given(file(tree))
    m = meta(actor="router", role="system")
    assert r.route(0, ["resp-1"], DEADLINE, m) is True
    [event] = then(m, r)
    assert (event.level, event.level_name, event.responder_ids, event.deadline) == (0, "township", ["resp-1"], DEADLINE)
    assert (event.category, event.severity, event.township_code) == ("critical_illness", "critical", tree.township.code)
    assert r.status == Status.ROUTED and r.deadline == DEADLINE
    # A redelivered message routes nothing twice.
    assert r.route(0, ["resp-2"], DEADLINE + timedelta(minutes=1), meta()) is False
    nothing_emitted(r)


def test_a_level_not_reached_cannot_be_routed_and_a_left_level_is_not_routed(tree: OrgTree) -> None:
    r = given(file(tree))
    with refused(EmergencyError, "level"):
        r.route(1, [], NOW, meta())
    r.escalate("乡镇无人值守", 1, meta(actor="resp-1", role="township_responder"))
    given(r)
    assert r.route(0, ["resp-1"], DEADLINE, meta()) is False
    nothing_emitted(r)


def test_a_report_resolved_before_routing_is_not_routed(tree: OrgTree) -> None:
    r = file(tree)
    r.resolve(Outcome.FALSE_ALARM, "误报", meta())
    given(r)
    assert r.route(0, ["resp-1"], DEADLINE, meta()) is False


# ---- escalation -------------------------------------------------------------------------------


def test_an_unacknowledged_report_escalates_once_after_its_deadline(tree: OrgTree) -> None:
    r = routed(tree)
    assert r.escalate_overdue(0, 2, at(DEADLINE - timedelta(seconds=1))) is False
    nothing_emitted(r)
    m = at(DEADLINE, actor="escalator", role="system")
    assert r.escalate_overdue(0, 2, m) is True
    [event] = then(m, r)
    assert (event.from_level, event.to_level, event.reason) == (0, 1, "deadline_passed")
    assert (r.level, r.status, r.deadline) == (1, Status.ESCALATED, None)
    # Redelivered, or a second escalator racing: nothing more.
    assert r.escalate_overdue(0, 2, at(DEADLINE + timedelta(minutes=9))) is False
    nothing_emitted(r)


def test_an_acknowledged_report_does_not_escalate(tree: OrgTree) -> None:
    r = routed(tree)
    r.acknowledge(meta(actor="resp-1", role="township_responder"))
    given(r)
    assert r.escalate_overdue(0, 2, at(DEADLINE + timedelta(hours=1))) is False


def test_escalation_stops_at_the_top_of_the_chain(tree: OrgTree) -> None:
    r = routed(tree)
    r.escalate_overdue(0, 1, at(DEADLINE))
    r.route(1, [], DEADLINE, meta())
    given(r)
    assert r.escalate_overdue(1, 1, at(DEADLINE + timedelta(hours=1))) is False
    with refused(EmergencyError, "level"):
        r.escalate("还要上报", 1, meta())


def test_a_responder_escalates_by_hand_and_the_next_level_must_acknowledge(tree: OrgTree) -> None:
    r = routed(tree)
    r.acknowledge(meta(actor="resp-1", role="township_responder"))
    given(r)
    m = meta(actor="resp-1", role="township_responder")
    r.escalate(" 需要县民政局协调救助站 ", 2, m)
    [event] = then(m, r)
    assert (event.from_level, event.to_level, event.reason, event.notes) == (0, 1, "manual", "需要县民政局协调救助站")
    assert r.status == Status.ESCALATED and r.acknowledged_by is None


# ---- acknowledging and acting -----------------------------------------------------------------


def test_acknowledging_takes_the_report_on_and_a_retry_changes_nothing(tree: OrgTree) -> None:
    r = routed(tree)
    m = meta(actor="resp-1", role="township_responder")
    r.acknowledge(m)
    [event] = then(m, r)
    assert event.level == 0 and r.status == Status.ACKNOWLEDGED and r.acknowledged_by == "resp-1"
    r.acknowledge(meta(actor="resp-1", role="township_responder"))
    nothing_emitted(r)
    with refused(AlreadyAcknowledgedError, None) as info:
        r.acknowledge(meta(actor="resp-2", role="township_responder"))
    assert info.value.extra["acknowledged_by"] == "resp-1"


def test_acting_first_acknowledges_implicitly(tree: OrgTree) -> None:
    r = routed(tree)
    m = meta(actor="resp-2", role="township_responder")
    r.record_action(ActionKind.DISPATCHED, "卫生院救护车已出发", m)
    assert names(then(m, r)) == ["EmergencyReport.Acknowledged", "EmergencyReport.ActionRecorded"]
    r.record_action(ActionKind.ON_SCENE, "", m)
    assert names(then(m, r)) == ["EmergencyReport.ActionRecorded"]
    assert [a["action"] for a in r.actions] == ["dispatched", "on_scene"]


# ---- resolving, reopening, closing --------------------------------------------------------------


def test_resolve_reopen_resolve_close(tree: OrgTree) -> None:
    r = routed(tree)
    m = meta(actor="resp-1", role="township_responder")
    r.resolve(Outcome.HOSPITALISED, "已送县医院", m)
    assert names(then(m, r)) == ["EmergencyReport.Resolved"] and r.status == Status.RESOLVED and not r.open
    with refused(ReportClosedError, None):
        r.acknowledge(m)
    with refused(EmergencyError, "notes"):
        r.reopen("  ", m)
    r.reopen("出院后无人照料", m)
    assert r.status == Status.ACKNOWLEDGED and r.resolution is None and r.open
    with refused(EmergencyError, None):
        r.close("", m)
    r.resolve(Outcome.PLACED_IN_CARE, "", m)
    r.close("县级复核完毕", m)
    assert r.status == Status.CLOSED
    with refused(EmergencyError, None):
        r.reopen("again", m)


def test_a_duplicate_is_linked_to_the_original_and_resolved(tree: OrgTree) -> None:
    original, dup = routed(tree), routed(tree)
    m = meta(actor="resp-1", role="township_responder")
    dup.link_duplicate(original, m)
    assert names(then(m, dup)) == ["EmergencyReport.LinkedAsDuplicate", "EmergencyReport.Resolved"]
    assert dup.duplicate_of == original.id and dup.resolution["outcome"] == "duplicate"
    dup.link_duplicate(original, m)
    nothing_emitted(dup)
    with refused(EmergencyError, "duplicate_of"):
        original.link_duplicate(original, m)
    with refused(EmergencyError, "duplicate_of"):
        routed(tree).link_duplicate(dup, m)
