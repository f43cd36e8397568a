"""The supervision view against a real PostgreSQL: a scripted county history (registry, visits,
emergencies), then the figures and lists a county, a township and a village see; more events,
then the figures move as they should; the API and its CSV exports over HTTP.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from domain.base import CommandMeta
from domain.emergency import Category, EmergencyReport, Outcome
from domain.pairing import Pairing
from domain.person import Person
from domain.roster import Severity
from domain.schedule import Period as Window
from domain.visit_log import ServiceCategory, ServiceItem, VisitLog
from domain.visit_task import VisitTask
from domain.vocabulary import Cadence, RiskTag, VisitMode
from projections.supervision_view import Period, SupervisionView
from tests.api_support import ApiServer, auth
from tests.app_support import make_care
from tests.integration.test_registry_view import World, build_world, new_meta
from workers.projector import Projector

CST = timezone(timedelta(hours=8))


def meta_at(at: datetime, actor: str = "vol-1", role: str = "volunteer") -> CommandMeta:
    return CommandMeta(actor_id=actor, actor_role=role, correlation_id=f"t-{uuid4().hex[:8]}", occurred_at=at)


@dataclass
class Care:
    """The world of tests/integration/test_registry_view.py plus a fortnight of visits and four reports."""

    world: World
    now: datetime
    last_week: Window
    this_week: Window
    tasks: dict[str, UUID]
    late_visit_at: datetime
    reports: dict[str, UUID]
    t0: datetime

    @property
    def period(self) -> Period:
        return Period.between(self.last_week.start, self.this_week.last_day)


def add_care(world: World) -> Care:
    """Visits for the cadre's pairing (elders 0, 1, 3; helper 1), written through the domain:
    A (elder 0, this week) done on time; B (elder 1, last week) missed, then logged late;
    C (elder 3, last week) missed; D (elder 3, this week) cancelled. Emergency reports:
    R1 (elder 2, critical) acknowledged after 3 min, resolved after 63; R2 (child 0, high) not
    acknowledged, escalated to the county, past its deadline; R3 a duplicate of R1; R4 (a place
    in township 1, no person) routed, deadline ahead."""
    app, now = world.app, datetime.now(CST)
    monday = now.date() - timedelta(days=now.weekday())
    last_week = Window(Cadence.WEEKLY, monday - timedelta(days=7), monday)
    this_week = Window(Cadence.WEEKLY, monday, monday + timedelta(days=7))
    cadre, helper = app.load(Pairing, world.pairings["cadre"]), world.helpers[1]
    system = meta_at(now, "scheduler", "system")

    def task(person_id: UUID, window: Window) -> VisitTask:
        person = app.load(Person, person_id)
        return VisitTask.schedule(
            id=uuid4(), pairing=cadre, person_id=person_id, org_path=person.org_path, period=window, meta=system
        )

    def log(t: VisitTask, at: datetime) -> VisitLog:
        visit = VisitLog.record(
            id=uuid4(), pairing_id=cadre.id, person_id=t.person_id, org_path=t.org_path, meta=meta_at(at),
            task_id=t.id, mode=VisitMode.HOME_VISIT, helper_ids=[helper], findings={"health": "well", "mood": "calm"},
            services=[ServiceCategory.DAILY_LIFE_CARE], service_items=[ServiceItem.CLEANING],
        )  # fmt: skip
        t.complete(log_id=visit.id, helper_ids=[helper], mode=VisitMode.HOME_VISIT, now=now, meta=meta_at(at))
        return visit

    a = task(world.elders[0], this_week)
    a.claim(pairing=cadre, helper_id=helper, group=None, now=now, expires_at=now + timedelta(days=1), meta=meta_at(now))
    app.save(a, log(a, max(now - timedelta(hours=1), this_week.opens_at)))
    b, c, d = task(world.elders[1], last_week), task(world.elders[3], last_week), task(world.elders[3], this_week)
    b.mark_missed(now, system)
    c.mark_missed(now, system)
    d.cancel("cadence changed", now, system)
    late_visit_at = last_week.opens_at + timedelta(days=1, hours=10)
    app.save(b, c, d, log(b, late_visit_at))

    t0 = now - timedelta(hours=3)
    codes = ("530428000000", "530428101000")

    def report(person: UUID | None, category: Category, severity: Severity, at: datetime, path: list[UUID],
               location: dict[str, Any] | None = None) -> EmergencyReport:  # fmt: skip
        return EmergencyReport.report(
            id=uuid4(), category=category, severity=severity, person_id=person, location=location,
            description="reported on a visit", village_id=path[2] if len(path) > 2 else None, org_path=path,
            codes=codes, meta=meta_at(at, "cadre-9", "village_cadre"),
        )  # fmt: skip

    responder, county_responder = meta_at(t0, "resp-t", "township_responder"), "resp-c"
    r1 = report(world.elders[2], Category.CRITICAL_ILLNESS, Severity.CRITICAL, t0, [world.county, world.t2, world.v3])
    r1.route(0, ["resp-t"], t0 + timedelta(minutes=5), meta_at(t0 + timedelta(seconds=5), "router", "system"))
    r1.acknowledge(meta_at(t0 + timedelta(minutes=3), responder.actor_id, responder.actor_role))
    r1.resolve(Outcome.HOSPITALISED, "taken to the county hospital", meta_at(t0 + timedelta(minutes=63), "resp-t"))
    r2 = report(world.children[0], Category.ABUSE_VIOLENCE, Severity.HIGH, t0 + timedelta(minutes=10),
                [world.county, world.t1, world.v1])  # fmt: skip
    r2.route(0, ["resp-t"], t0 + timedelta(minutes=25), meta_at(t0 + timedelta(minutes=10), "router", "system"))
    r2.escalate_overdue(0, 1, meta_at(t0 + timedelta(minutes=26), "escalator", "system"))
    r2.route(1, [county_responder], t0 + timedelta(minutes=40), meta_at(t0 + timedelta(minutes=26), "router", "system"))
    r3 = report(world.elders[2], Category.CRITICAL_ILLNESS, Severity.CRITICAL, t0 + timedelta(minutes=1),
                [world.county, world.t2, world.v3])  # fmt: skip
    r3.link_duplicate(r1, meta_at(t0 + timedelta(minutes=20), "resp-t", "township_responder"))
    r4 = report(None, Category.WANDERING_MISSING, Severity.NORMAL, now - timedelta(minutes=10), [world.county, world.t1],
                {"org_unit_id": str(world.t1), "address": "bus station"})  # fmt: skip
    r4.route(0, ["resp-t"], now + timedelta(minutes=50), meta_at(now - timedelta(minutes=10), "router", "system"))
    app.save(r1, r2, r3, r4)
    world.last_position = app.recorder.max_notification_id()
    tasks = {"A": a.id, "B": b.id, "C": c.id, "D": d.id}
    reports = {"R1": r1.id, "R2": r2.id, "R3": r3.id, "R4": r4.id}
    return Care(world, now, last_week, this_week, tasks, late_visit_at, reports, t0)


@contextmanager
def care_in(url: str) -> Iterator[Care]:
    """The scripted county in the (fresh) database at ``url``; other test modules use it too."""
    app = make_care(url, pool_size=4)
    try:
        yield add_care(build_world(app, url))
    finally:
        app.close()


@pytest.fixture
def care(fresh_database_url: str) -> Iterator[Care]:
    with care_in(fresh_database_url) as world:
        yield world


@pytest.fixture
def view(care: Care) -> Iterator[SupervisionView]:
    with Projector(care.world.url, app=care.world.app, batch_size=9) as projector:
        projector.catch_up()
        yield SupervisionView(projector.pool)


# ---- figures -----------------------------------------------------------------------------------


def test_the_county_sees_base_numbers_coverage_agreements_helpers_and_pairings(
    care: Care, view: SupervisionView
) -> None:
    s = view.summary(care.world.county, care.period, now=care.now)
    assert s["unit"]["name"] == "元江县" and s["unit"]["level"] == "county"
    assert s["base"] == {
        "people": 7,
        "elders": 4,
        "children": 3,
        "by_risk_tag": {
            **{t.value: 0 for t in RiskTag},
            "living_alone": 2,
            "advanced_age": 1,
            "empty_nest": 1,
            "economic_hardship": 1,
            "dibao": 1,
            "child_in_difficulty": 1,
        },
        "registered_in_period": 7,
        "left_in_period": 0,
    }
    assert s["coverage"]["people"] == 7 and s["coverage"]["covered"] == 6 and s["coverage"]["uncovered"] == 1
    assert s["coverage"]["covered_rate"] == 0.8571
    assert s["guardianship"] == {"children": 3, "with_guardian": 1, "agreements_signed": 1, "signed_rate": 0.3333}
    assert s["helpers"] == {
        "active": 5, "with_people": 5, "people_per_helper": 1.6, "max_load": 3, "at_capacity": 0, "over_capacity": 0
    }  # fmt: skip
    assert s["pairings"] == {"active": 4, "by_shape": {"one_to_one": 1, "one_to_many": 2, "many_to_one": 1}}
    assert [(u["name"], u["elders"], u["children"], u["uncovered"], u["agreements_signed"], u["helpers"])
            for u in s["units"]] == [("澧江街道", 3, 2, 0, 1, 3), ("因远镇", 1, 1, 1, 0, 2)]  # fmt: skip


def test_figures_roll_up_the_tree_from_village_to_township_to_county(care: Care, view: SupervisionView) -> None:
    w = care.world
    township = view.summary(w.t1, care.period, now=care.now)
    village = view.summary(w.v1, care.period, now=care.now)
    other = view.summary(w.t2, care.period, now=care.now)
    assert (township["base"]["elders"], township["base"]["children"]) == (3, 2)
    assert (village["base"]["elders"], village["base"]["children"]) == (3, 1)
    assert [(u["name"], u["elders"], u["children"]) for u in township["units"]] == [("红河村", 3, 1), ("南昏村", 0, 1)]
    assert village["units"] == []
    assert other["coverage"]["uncovered"] == 1 and township["coverage"]["uncovered"] == 0
    assert township["base"]["people"] + other["base"]["people"] == 7
    assert township["emergencies"]["reported"] == 2 and other["emergencies"]["reported"] == 1
    assert view.summary(uuid4(), care.period) is None


def test_visit_compliance_counts_on_time_late_missed_and_cancelled_tasks(care: Care, view: SupervisionView) -> None:
    v = view.summary(care.world.county, care.period, now=care.now)["visits"]
    assert {k: v[k] for k in ("due", "on_time", "late", "missed", "open", "cancelled")} == {
        "due": 3, "on_time": 1, "late": 1, "missed": 1, "open": 0, "cancelled": 1
    }  # fmt: skip
    assert v["done_rate"] == 0.6667 and v["on_time_rate"] == 0.3333
    assert v["by_cadence"]["weekly"]["missed"] == 1
    # A period holding only last week's windows sees B and C, not this week's A and D.
    last = view.summary(care.world.county, Period.between(care.last_week.start, care.last_week.last_day), now=care.now)
    assert (last["visits"]["due"], last["visits"]["late"], last["visits"]["missed"]) == (2, 1, 1)


def test_people_not_visited_within_their_cadence_are_listed_worst_first(care: Care, view: SupervisionView) -> None:
    w = care.world
    never_visited = {w.elders[2], w.elders[3], w.children[0], w.children[1]}  # covered since 2025-01-01
    before = care.late_visit_at + timedelta(days=6)
    rows, total = view.overdue(w.county, now=before)
    assert total == 4 and {r["id"] for r in rows} == never_visited
    assert rows[0]["due_at"] == datetime(2025, 1, 8, tzinfo=CST) and rows[0]["cadence_days"] == 7
    after = care.late_visit_at + timedelta(days=8)
    rows, total = view.overdue(w.county, now=after)
    assert total == 5 and rows[-1]["id"] == w.elders[1]  # visited (late) last week: least overdue
    assert rows[-1]["last_visit_at"] == care.late_visit_at and rows[-1]["days_overdue"] == 1
    assert rows[0]["days_overdue"] > rows[-1]["days_overdue"]
    page, total = view.overdue(w.county, now=after, limit=2, offset=4)
    assert total == 5 and [r["id"] for r in page] == [w.elders[1]]
    assert view.overdue(w.county, now=after, limit=2, offset=10) == ([], 5)
    counts = view.summary(w.county, care.period, now=after)["coverage"]
    assert (counts["overdue"], counts["with_cadence"], counts["within_cadence_rate"]) == (5, 6, 0.1667)


def test_uncovered_people_are_listed_with_their_village(care: Care, view: SupervisionView) -> None:
    rows, total = view.uncovered(care.world.county)
    assert total == 1
    assert (rows[0]["id"], rows[0]["village_name"], rows[0]["risk_tags"]) == (
        care.world.children[2], "安定村", ["child_in_difficulty"]
    )  # fmt: skip
    assert view.uncovered(care.world.t1) == ([], 0)


def test_emergency_response_times_escalations_and_reports_past_deadline(care: Care, view: SupervisionView) -> None:
    e = view.summary(care.world.county, care.period, now=care.now)["emergencies"]
    assert e["reported"] == 3  # R3 is R1 again
    assert e["by_category"] == {"critical_illness": 1, "abuse_violence": 1, "wandering_missing": 1}
    assert e["by_severity"] == {"critical": 1, "high": 1, "normal": 1}
    assert (e["escalated"], e["resolved"], e["open_past_deadline"]) == (1, 1, 1)
    assert (e["acknowledge_median_s"], e["acknowledge_p90_s"]) == (180.0, 180.0)
    assert (e["resolve_median_s"], e["resolve_p90_s"]) == (3780.0, 3780.0)
    rows, total = view.emergencies_past_deadline(care.world.county, now=care.now)
    assert total == 1 and rows[0]["id"] == care.reports["R2"]
    # The view holds no names (the API resolves them per page from the event store).
    assert (rows[0]["level"], rows[0]["escalations"], "person_name" in rows[0]) == (1, 1, False)
    assert rows[0]["township_name"] == "澧江街道"
    assert rows[0]["minutes_past_deadline"] == int((care.now - care.t0 - timedelta(minutes=40)).total_seconds() // 60)
    assert view.emergencies_past_deadline(care.world.t2, now=care.now) == ([], 0)
    # Before R2's county deadline, nothing waits past its deadline.
    assert view.emergencies_past_deadline(care.world.county, now=care.t0 + timedelta(minutes=39))[1] == 0


def test_later_events_move_the_figures(care: Care) -> None:
    w, app, m = care.world, care.world.app, new_meta
    with Projector(w.url, app=app, batch_size=5) as projector:
        projector.start()
        app.person_leaves_programme(w.elders[3], "moved to the county town", m())
        app.sign_care_agreement(w.children[1], date(2025, 3, 1), m())
        app.add_risk_tag(w.children[1], RiskTag.DE_FACTO_UNSUPPORTED, m())
        app.change_helper_capacity(w.helpers[1], 2, m())
        app.end_pairing(w.pairings["four_in_one"], "doctor moved away", date.today(), m())
        app.add_pairing_person(w.pairings["supervisor"], w.elders[0], m())  # of the supervisor's township
        last = app.remove_risk_tag(w.elders[0], RiskTag.LIVING_ALONE, m())
        assert projector.wait_for(last.position, timeout=10.0)
        view = SupervisionView(projector.pool)
        s = view.summary(w.county, care.period, now=care.now)
        # The counts kept per unit moved as the rows did, at every level.
        for unit in (w.county, w.t1, w.t2, w.v1, w.v2, w.v3):
            assert view.summary(unit, care.period, now=care.now) == view.summary_from_rows(
                unit, care.period, now=care.now
            )
    assert (s["base"]["people"], s["base"]["elders"], s["base"]["left_in_period"]) == (6, 3, 1)
    assert s["base"]["by_risk_tag"]["living_alone"] == 1 and s["base"]["by_risk_tag"]["de_facto_unsupported"] == 1
    assert s["guardianship"]["agreements_signed"] == 2 and s["guardianship"]["signed_rate"] == 0.6667
    # Elder 2 lost their only pairing; elder 0 joined a second one, which covers nobody new.
    assert (s["coverage"]["covered"], s["coverage"]["uncovered"]) == (4, 2)
    # The cadre looks after two people now (elder 3 left), at a capacity of two; the police
    # officer and the doctor were released when their pairing ended.
    assert (s["helpers"]["at_capacity"], s["helpers"]["with_people"], s["helpers"]["people_per_helper"]) == (1, 3, 2.0)
    assert s["pairings"]["by_shape"] == {"one_to_one": 1, "one_to_many": 2, "many_to_one": 0}


# ---- periods -----------------------------------------------------------------------------------


def test_named_periods_are_the_calendar_periods_that_contain_today() -> None:
    day = date(2025, 8, 14)  # a Thursday
    assert (Period.named("week", day).first, Period.named("week", day).last) == (date(2025, 8, 11), date(2025, 8, 17))
    assert (Period.named("month", day).first, Period.named("month", day).last) == (date(2025, 8, 1), date(2025, 8, 31))
    assert Period.named("half_year", day).first == date(2025, 7, 1)
    assert Period.named("half_year", date(2025, 6, 30)).last == date(2025, 6, 30)
    assert Period.named("year", day).last == date(2025, 12, 31)
    assert Period.named("month", day).start == datetime(2025, 8, 1, tzinfo=CST)
    assert Period.named("month", day).end == datetime(2025, 9, 1, tzinfo=CST)
    with pytest.raises(ValueError):
        Period.named("fortnight", day)
    with pytest.raises(ValueError):
        Period.between(date(2025, 2, 1), date(2025, 1, 1))


# ---- over HTTP -----------------------------------------------------------------------------------


def test_supervision_over_http_with_lists_csv_exports_and_area_scoping(care: Care) -> None:
    w = care.world
    server = ApiServer(w.url, None).start()
    try:
        county = auth("county_supervisor", w.county)
        with httpx.Client(base_url=server.base_url, headers=county, timeout=30) as client:
            r = client.get("/supervision/530428000000", params={"period": "year", "min_position": w.last_position})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["unit"]["id"] == str(w.county) and body["position"] >= w.last_position
            assert body["period"]["name"] == "year" and body["period"]["from"].endswith("-01-01")
            assert (body["base"]["elders"], body["coverage"]["uncovered"], body["guardianship"]["signed_rate"]) == (
                4, 1, 0.3333
            )  # fmt: skip
            assert body["emergencies"]["open_past_deadline"] == 1 and len(body["units"]) == 2
            first, last = care.last_week.start.isoformat(), care.this_week.last_day.isoformat()
            custom = client.get(f"/supervision/{w.county}", params={"from": first, "to": last}).json()
            assert custom["period"] == {"name": "custom", "from": first, "to": last}
            assert custom["visits"]["due"] == 3 and custom["visits"]["late"] == 1

            uncovered = client.get(f"/supervision/{w.county}/uncovered").json()
            assert uncovered["total"] == 1 and uncovered["items"][0]["name"] == "罗小花"
            overdue = client.get(f"/supervision/{w.county}/overdue", params={"limit": 2}).json()
            assert overdue["total"] >= 4 and len(overdue["items"]) == 2
            assert overdue["items"][0]["days_overdue"] >= overdue["items"][1]["days_overdue"]
            late = client.get(f"/supervision/{w.county}/emergencies-past-deadline").json()
            assert [e["id"] for e in late["items"]] == [str(care.reports["R2"])]

            zh = client.get(f"/supervision/{w.county}/uncovered.csv", params={"lang": "zh"})
            assert zh.status_code == 200 and zh.headers["content-type"].startswith("text/csv")
            assert "attachment" in zh.headers["content-disposition"]
            rows = list(csv.reader(io.StringIO(zh.content.decode("utf-8-sig"))))
            assert rows[0] == ["编号", "姓名", "类别", "村（社区）", "区划代码", "风险标签", "登记时间"]
            assert rows[1][1:6] == ["罗小花", "留守儿童", "安定村", "530428102201", "困境儿童"]
            en = list(csv.reader(io.StringIO(client.get(f"/supervision/{w.county}/overdue.csv").text)))
            assert en[0][:3] == ["id", "name", "kind"] and len(en) == 1 + overdue["total"]
            deadline = list(csv.reader(io.StringIO(
                client.get(f"/supervision/{w.county}/emergencies-past-deadline.csv", params={"lang": "zh"})
                .content.decode("utf-8-sig")
            )))  # fmt: skip
            assert deadline[1][1:6] == ["王小梅", "澧江街道", "遭受侵害", "紧急", "县"]

            assert client.get("/supervision/530428999999").status_code == 404
            assert client.get("/supervision/not-a-unit").status_code == 400
            bad = client.get(f"/supervision/{w.county}", params={"period": "month", "from": first})
            assert bad.status_code == 400
            assert client.get(f"/supervision/{w.county}", params={"from": last, "to": first}).status_code == 400
        # A township supervisor sees their township and its villages; the county and the other
        # township answer as an unknown unit would.
        township = auth("township_supervisor", w.t1)
        assert httpx.get(f"{server.base_url}/supervision/{w.v1}", headers=township).status_code == 200
        assert httpx.get(f"{server.base_url}/supervision/{w.county}", headers=township).status_code == 404
        outside = httpx.get(f"{server.base_url}/supervision/{w.t2}/uncovered.csv", headers=township)
        unknown = httpx.get(f"{server.base_url}/supervision/{uuid4()}/uncovered.csv", headers=township)
        assert (
            (outside.status_code, outside.json()["type"])
            == (unknown.status_code, unknown.json()["type"])
            == (404, "/problems/not-found")
        )
        assert httpx.get(f"{server.base_url}/supervision/{w.t1}", headers=auth("volunteer", w.v1)).status_code == 403
    finally:
        server.stop()
