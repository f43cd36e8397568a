"""Visit logs (domain/visit_log.py): what a visit found and gave, checked; the emergency flag the
emergency workers follow; contents that recognise a repeated log."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from domain.visit_log import EmergencyKind, ServiceCategory, ServiceItem, VisitLog, VisitLogError, log_content
from domain.vocabulary import VisitMode
from tests.scenario import NOW, meta, names, refused, then

HELPERS = [uuid4(), uuid4()]
PATH = [uuid4(), uuid4(), uuid4()]


def fields(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task_id": uuid4(),
        "mode": VisitMode.HOME_VISIT,
        "helper_ids": HELPERS,
        "findings": {
            "living_conditions": "adequate",
            "health": "chronic_stable",
            "mood": "low",
            "safety_risks": ["fall"],
            "needs": ["medical_care"],
            "blood_pressure": {"systolic": 152, "diastolic": 94},
            "notes": "左腿疼，药快吃完了",
        },
        "services": [ServiceCategory.DAILY_LIFE_CARE, ServiceCategory.HEALTH_CARE],
        "service_items": [ServiceItem.MEDICINE_DELIVERY, ServiceItem.BLOOD_PRESSURE],
        "follow_up_needed": True,
        "outcome_notes": "下周请家庭医生上门 ",
    }
    body.update(overrides)
    return body


def record(at: datetime = NOW, **overrides: Any) -> VisitLog:
    return VisitLog.record(
        id=uuid4(), pairing_id=uuid4(), person_id=uuid4(), org_path=PATH, meta=meta(at=at), **fields(**overrides)
    )


def test_a_log_records_findings_services_and_when_the_visit_took_place() -> None:
    visited = NOW - timedelta(days=3)
    m = meta(at=visited)
    log = VisitLog.record(id=uuid4(), pairing_id=uuid4(), person_id=uuid4(), org_path=PATH, meta=m, **fields())
    [recorded] = then(m, log)
    assert names([recorded]) == ["VisitLog.Recorded"]
    assert recorded.visited_at == recorded.occurred_at == visited
    assert recorded.services == ["daily_life_care", "health_care"] and recorded.service_items == [
        "medicine_delivery",
        "blood_pressure",
    ]
    assert recorded.findings["blood_pressure"] == {"systolic": 152, "diastolic": 94}
    assert (recorded.follow_up_needed, recorded.outcome_notes) == (True, "下周请家庭医生上门")
    assert (recorded.raise_emergency, recorded.emergency_kind, log.mode) == (False, None, VisitMode.HOME_VISIT)


def test_raising_an_emergency_emits_the_flag_the_emergency_workers_follow() -> None:
    m = meta()
    log = VisitLog.record(
        id=uuid4(),
        pairing_id=(pairing := uuid4()),
        person_id=(person := uuid4()),
        org_path=PATH,
        meta=m,
        **fields(raise_emergency=True, emergency_kind=EmergencyKind.CRITICAL_ILLNESS, description="老人昏迷，已叫120"),
    )
    recorded, flagged = then(m, log)
    assert names([recorded, flagged]) == ["VisitLog.Recorded", "VisitLog.EmergencyFlagged"]
    assert (flagged.kind, flagged.description) == ("critical_illness", "老人昏迷，已叫120")
    assert (flagged.person_id, flagged.pairing_id, flagged.org_path, flagged.originator_id) == (
        person,
        pairing,
        PATH,
        log.id,
    )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"helper_ids": []}, "helper_ids"),
        ({"helper_ids": [HELPERS[0], HELPERS[0]]}, "helper_ids"),
        ({"services": [ServiceCategory.HEALTH_CARE]}, "service_items[0]"),
        ({"findings": {"blood_pressure": {"systolic": 80, "diastolic": 120}}}, "findings.blood_pressure"),
        ({"raise_emergency": True}, "emergency_kind"),
        ({"emergency_kind": EmergencyKind.ILLEGAL_HARM}, "emergency_kind"),
    ],
)
def test_a_log_that_contradicts_itself_is_refused(overrides: dict[str, Any], field: str) -> None:
    with refused(VisitLogError, field):
        record(**overrides)


def test_the_same_log_has_the_same_content_and_a_changed_one_does_not() -> None:
    base = fields()
    first = log_content(visited_at=NOW, **base)
    assert log_content(visited_at=NOW.astimezone(None), **base) == first  # the same instant, another offset
    assert log_content(visited_at=NOW + timedelta(minutes=1), **base) != first
    assert log_content(visited_at=NOW, **{**base, "outcome_notes": "无"}) != first
    log = VisitLog.record(id=uuid4(), pairing_id=uuid4(), person_id=uuid4(), org_path=PATH, meta=meta(at=NOW), **base)
    assert log.content() == first
