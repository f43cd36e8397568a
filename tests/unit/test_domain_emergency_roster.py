"""Responder rosters and the escalation policy: who is on duty when, acknowledgement deadlines
per severity, and the chain township -> county -> further contacts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from domain.roster import (
    DEFAULT_ACK_SECONDS,
    ResponderRoster,
    RosterError,
    Severity,
    Tier,
    on_shift,
    plan_routing,
    roster_id,
    top_level,
)
from tests.scenario import OrgTree, given, meta, names, nothing_emitted, refused, then

CST = timezone(timedelta(hours=8))
# 2025-09-15 is a Monday (weekday 0).
MONDAY_10 = datetime(2025, 9, 15, 10, 0, tzinfo=CST)
MONDAY_23 = datetime(2025, 9, 15, 23, 0, tzinfo=CST)
TUESDAY_06 = datetime(2025, 9, 16, 6, 0, tzinfo=CST)
WEEKDAYS = [0, 1, 2, 3, 4]
DAY = {"days": WEEKDAYS, "start": "08:00", "end": "18:00"}
NIGHT = {"days": [0], "start": "18:00", "end": "08:00"}


@pytest.fixture
def tree() -> OrgTree:
    return OrgTree()


def roster(unit: object, **ack: int) -> ResponderRoster:
    return given(ResponderRoster.set_up(unit=unit, ack_seconds=ack, meta=meta()))  # type: ignore[arg-type]


def staffed(tree: OrgTree) -> tuple[ResponderRoster, ResponderRoster]:
    township = roster(tree.township, critical=120)
    township.add_responder(
        responder_id="day-1", name="刘干事", phone="13900000001", tier=Tier.PRIMARY, shifts=[DAY], meta=meta()
    )
    township.add_responder(
        responder_id="night-1", name="陈干事", phone="13900000002", tier=Tier.PRIMARY, shifts=[NIGHT], meta=meta()
    )
    county = roster(tree.county)
    county.add_responder(
        responder_id="county-1", name="县民政值班", phone="0877000", tier=Tier.PRIMARY, shifts=[], meta=meta()
    )
    given(township, county)
    return township, county


def test_a_roster_is_set_up_once_per_township_or_county_with_deadlines_per_severity(tree: OrgTree) -> None:
    m = meta(role="county_supervisor")
    r = ResponderRoster.set_up(unit=tree.township, ack_seconds={"critical": 60}, meta=m)
    [event] = then(m, r)
    assert names([event]) == ["ResponderRoster.SetUp"] and r.id == roster_id(tree.township.id)
    assert r.ack_seconds == {**DEFAULT_ACK_SECONDS, "critical": 60}
    assert r.ack_window(Severity.CRITICAL) == timedelta(seconds=60)
    with refused(RosterError, "org_unit_id"):
        ResponderRoster.set_up(unit=tree.village, ack_seconds={}, meta=m)
    with refused(RosterError, "ack_deadlines.urgent"):
        ResponderRoster.set_up(unit=tree.county, ack_seconds={"urgent": 5}, meta=m)
    with refused(RosterError, "ack_deadlines.high"):
        ResponderRoster.set_up(unit=tree.county, ack_seconds={"high": 0}, meta=m)


def test_shifts_decide_who_is_on_duty_including_overnight(tree: OrgTree) -> None:
    township, _ = staffed(tree)
    assert township.on_duty(MONDAY_10) == ["day-1"]
    assert township.on_duty(MONDAY_23) == ["night-1"]
    assert township.on_duty(TUESDAY_06) == ["night-1"]  # Monday's night shift runs into Tuesday
    assert township.on_duty(TUESDAY_06 + timedelta(days=1)) == []
    # The same instant given in UTC reads the same local time.
    assert township.on_duty(MONDAY_10.astimezone(UTC)) == ["day-1"]


def test_no_shifts_means_always_on_duty() -> None:
    assert on_shift([], MONDAY_23)


def test_responders_join_change_shifts_and_leave(tree: OrgTree) -> None:
    township, _ = staffed(tree)
    m = meta(role="township_supervisor")
    township.change_shifts("day-1", [{"days": [5, 6], "start": "09:00", "end": "17:00"}], m)
    [changed] = then(m, township)
    assert changed.shifts == [{"days": [5, 6], "start": "09:00", "end": "17:00"}]
    township.change_shifts("day-1", [{"days": [6, 5], "start": "09:00", "end": "17:00"}], m)
    nothing_emitted(township)
    township.remove_responder("night-1", "调岗", m)
    assert township.on_duty(MONDAY_23) == []
    with refused(RosterError, "responder_id"):
        township.remove_responder("night-1", "again", m)
    with refused(RosterError, "responder_id"):
        township.add_responder(responder_id="day-1", name="x", phone="1", tier=Tier.PRIMARY, shifts=[], meta=m)


@pytest.mark.parametrize(
    ("shift", "field"),
    [
        ({"days": [], "start": "08:00", "end": "18:00"}, "shifts[0].days"),
        ({"days": [7], "start": "08:00", "end": "18:00"}, "shifts[0].days"),
        ({"days": [1], "start": "8:00", "end": "18:00"}, "shifts[0].start"),
        ({"days": [1], "start": "08:00", "end": "24:00"}, "shifts[0].end"),
        ({"days": [1], "start": "08:00", "end": "08:00"}, "shifts[0].end"),
    ],
)
def test_shifts_are_checked(tree: OrgTree, shift: dict[str, object], field: str) -> None:
    township = roster(tree.township)
    with refused(RosterError, field):
        township.add_responder(responder_id="r", name="x", phone="1", tier=Tier.PRIMARY, shifts=[shift], meta=meta())
    nothing_emitted(township)


def test_further_contacts_are_kept_by_the_county_and_lengthen_the_chain(tree: OrgTree) -> None:
    township, county = staffed(tree)
    with refused(RosterError, "tier"):
        township.add_responder(responder_id="x", name="x", phone="1", tier=Tier.FURTHER, shifts=[], meta=meta())
    assert top_level(None) == 1 and top_level(county) == 1
    county.add_responder(responder_id="vice-mayor", name="副县长", phone="1", tier=Tier.FURTHER, shifts=[], meta=meta())
    assert top_level(county) == 2


def test_deadlines_change_per_severity(tree: OrgTree) -> None:
    township = roster(tree.township)
    m = meta()
    township.change_ack_deadlines({"normal": 7200}, m)
    [event] = then(m, township)
    assert event.ack_seconds["normal"] == 7200 and event.ack_seconds["critical"] == DEFAULT_ACK_SECONDS["critical"]
    township.change_ack_deadlines({"normal": 7200}, m)
    nothing_emitted(township)


def test_routing_plan_walks_the_chain(tree: OrgTree) -> None:
    township, county = staffed(tree)
    county.add_responder(responder_id="vice-mayor", name="副县长", phone="1", tier=Tier.FURTHER, shifts=[], meta=meta())
    assert plan_routing(0, Severity.CRITICAL, MONDAY_10, township, county) == (
        ["day-1"],
        MONDAY_10 + timedelta(seconds=120),
    )
    assert plan_routing(0, Severity.HIGH, MONDAY_10, township, county) == (
        ["day-1"],
        MONDAY_10 + timedelta(seconds=900),
    )
    assert plan_routing(1, Severity.CRITICAL, MONDAY_10, township, county) == (
        ["county-1"],
        MONDAY_10 + timedelta(seconds=300),
    )
    assert plan_routing(2, Severity.CRITICAL, MONDAY_10, township, county) == (
        ["vice-mayor"],
        MONDAY_10 + timedelta(seconds=300),
    )


def test_nobody_on_duty_or_no_roster_means_the_deadline_is_now(tree: OrgTree) -> None:
    township, county = staffed(tree)
    sunday = MONDAY_10 + timedelta(days=6)
    assert plan_routing(0, Severity.NORMAL, sunday, township, county) == ([], sunday)
    assert plan_routing(0, Severity.NORMAL, MONDAY_10, None, county) == ([], MONDAY_10)
    assert plan_routing(1, Severity.NORMAL, MONDAY_10, township, None) == ([], MONDAY_10)
