"""The registry view and its runner, against a real PostgreSQL: scenarios through CareApplication,
then what the lists show; read-your-writes; exactly-once across stops and crashes; rebuilds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg.rows import dict_row

from application.care import CareApplication, event_store_env
from domain.base import CommandMeta
from domain.org_unit import org_unit_id
from domain.person import Person
from domain.vocabulary import Cadence, HelperRole, OrgLevel, PairingShape, PersonKind, RiskTag, Sex, VisitMode
from projections.registry import TABLES, RegistryProjection
from tests.scenario import valid_id_number
from workers.projector import Projector

ROOT = Path(__file__).resolve().parents[1]
ID_NUMBER = valid_id_number("53042819500101002")
HELPER_PHONE = "13912345678"
GUARDIAN_PHONE = "13755550000"


def new_meta() -> CommandMeta:
    return CommandMeta(
        actor_id="cadre-1",
        actor_role="administrator",
        correlation_id=f"t-{uuid4().hex[:8]}",
        occurred_at=datetime.now(UTC),
    )


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll a condition (bounded); the pause between polls is not a wait for the result."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < deadline:
        if predicate():
            return True
        pause.wait(0.02)
    return predicate()


class AppliedLog:
    """A test projection that writes one row per event it is given: duplicates would show."""

    name = "applied_log"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def create_tables(self, cur: psycopg.Cursor[Any]) -> None:
        cur.execute("CREATE TABLE IF NOT EXISTS applied_log (position bigint NOT NULL)")

    def apply(self, cur: psycopg.Cursor[Any], event: Any, position: int) -> None:
        if self.delay:  # makes a batch slow enough to be killed half-way through
            cur.execute("SELECT pg_sleep(%s)", (self.delay,))
        cur.execute("INSERT INTO applied_log VALUES (%s)", (position,))

    def reset(self, cur: psycopg.Cursor[Any]) -> None:
        cur.execute("TRUNCATE applied_log")


@dataclass
class World:
    """A county with two townships and three villages, people, helpers, a group, four pairings."""

    app: CareApplication
    url: str
    county: UUID
    t1: UUID
    t2: UUID
    v1: UUID
    v2: UUID
    v3: UUID
    elders: list[UUID]
    children: list[UUID]
    helpers: list[UUID]
    group: UUID
    pairings: dict[str, UUID]
    last_position: int


def build_world(app: CareApplication, url: str) -> World:
    m = new_meta
    units = [
        ("530428000000", "元江县", OrgLevel.COUNTY, None),
        ("530428101000", "澧江街道", OrgLevel.TOWNSHIP, "530428000000"),
        ("530428102000", "因远镇", OrgLevel.TOWNSHIP, "530428000000"),
        ("530428101201", "红河村", OrgLevel.VILLAGE, "530428101000"),
        ("530428101202", "南昏村", OrgLevel.VILLAGE, "530428101000"),
        ("530428102201", "安定村", OrgLevel.VILLAGE, "530428102000"),
    ]
    for code, name, level, parent in units:
        app.register_org_unit(
            code=code, name=name, level=level, parent_id=org_unit_id(parent) if parent else None, meta=m()
        )
    county, t1, t2, v1, v2, v3 = (org_unit_id(u[0]) for u in units)

    def person(kind: PersonKind, village: UUID, name: str, **extra: Any) -> UUID:
        birth = date(1940, 3, 1) if kind == PersonKind.ELDER else date(2016, 5, 1)
        pid = uuid4()
        app.register_person(
            id=pid, kind=kind, name=name, sex=Sex.FEMALE, birth_date=birth, village_id=village, meta=m(), **extra
        )
        return pid

    elders = [
        person(
            PersonKind.ELDER, v1, "李秀英", id_number=ID_NUMBER, risk_tags=[RiskTag.LIVING_ALONE, RiskTag.ADVANCED_AGE]
        ),
        person(PersonKind.ELDER, v1, "张桂兰", risk_tags=[RiskTag.EMPTY_NEST]),
        person(PersonKind.ELDER, v3, "刀正华", risk_tags=[RiskTag.LIVING_ALONE, RiskTag.DIBAO]),
        person(PersonKind.ELDER, v1, "赵大爷"),
    ]
    children = [
        person(PersonKind.CHILD, v1, "王小梅", guardian={"name": "王奶奶", "phone": GUARDIAN_PHONE}),
        person(PersonKind.CHILD, v2, "白小龙"),
        person(PersonKind.CHILD, v3, "罗小花", risk_tags=[RiskTag.CHILD_IN_DIFFICULTY]),
    ]
    app.sign_care_agreement(children[0], date(2024, 3, 1), m())
    app.add_risk_tag(elders[1], RiskTag.ECONOMIC_HARDSHIP, m())

    def helper(role: HelperRole, unit: UUID, name: str) -> UUID:
        hid = uuid4()
        app.register_helper(id=hid, role=role, name=name, phone=HELPER_PHONE, org_unit_id=unit, meta=m())
        return hid

    helpers = [
        helper(HelperRole.CARING_MOTHER, v1, "杨爱华"),
        helper(HelperRole.VILLAGE_CADRE, v1, "普建明"),
        helper(HelperRole.CHILD_SUPERVISOR, t1, "马丽"),
        helper(HelperRole.POLICE, t2, "李警官"),
        helper(HelperRole.FAMILY_DOCTOR, v3, "周医生"),
    ]
    group = uuid4()
    app.form_group(id=group, name="红河村志愿服务队", org_unit_id=v1, member_ids=helpers[:2], meta=m())

    def pair(shape: PairingShape, hs: list[UUID], ps: list[UUID], group_id: UUID | None = None) -> UUID:
        pid = uuid4()
        app.form_pairing(
            id=pid,
            shape=shape,
            helper_ids=hs,
            person_ids=ps,
            cadence=Cadence.WEEKLY,
            visit_mode=VisitMode.HOME_VISIT,
            starts_on=date(2025, 1, 1),
            meta=m(),
            group_id=group_id,
        )
        return pid

    pairings = {
        "mother": pair(PairingShape.ONE_TO_ONE, [helpers[0]], [children[0]], group),
        "cadre": pair(PairingShape.ONE_TO_MANY, [helpers[1]], [elders[0], elders[1], elders[3]]),
        "four_in_one": pair(PairingShape.MANY_TO_ONE, [helpers[3], helpers[4]], [elders[2]]),
        "supervisor": pair(PairingShape.ONE_TO_MANY, [helpers[2]], children[:2]),
    }
    last = app.recorder.max_notification_id()
    return World(app, url, county, t1, t2, v1, v2, v3, elders, children, helpers, group, pairings, last)


@pytest.fixture
def world(fresh_database_url: str) -> Iterator[World]:
    app = CareApplication(event_store_env(fresh_database_url, pool_size=4))
    try:
        yield build_world(app, fresh_database_url)
    finally:
        app.close()


@pytest.fixture
def projector(world: World) -> Iterator[Projector]:
    with Projector(world.url, app=world.app, batch_size=7) as p:
        yield p


def snapshot(url: str, tables: tuple[str, ...] = TABLES) -> dict[str, list[dict[str, Any]]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in tables}


def applied_positions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT position FROM applied_log ORDER BY position")]


def all_positions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT notification_id FROM guanai_events ORDER BY notification_id")]


def by_id(rows: list[dict[str, Any]]) -> dict[UUID, dict[str, Any]]:
    return {r["id"]: r for r in rows}


# ---- the lists ---------------------------------------------------------------------------------


def test_lists_show_the_registered_tree_people_helpers_and_pairings(world: World, projector: Projector) -> None:
    assert projector.catch_up() == len(all_positions(world.url))
    view = projector.view

    townships, total = view.list_org_units(parent_id=world.county)
    assert total == 2
    assert [(u["code"], u["name"], u["level"]) for u in townships] == [
        ("530428101000", "澧江街道", "township"),
        ("530428102000", "因远镇", "township"),
    ]
    assert townships[0]["org_path"] == [world.county, world.t1]
    assert view.list_org_units(level="village")[1] == 3

    persons, total = view.list_persons(org_unit_id=world.t1)
    assert total == 5
    assert [p["id"] for p in persons] == [
        world.elders[0],
        world.elders[1],
        world.elders[3],
        world.children[0],
        world.children[1],
    ]
    assert view.list_persons(org_unit_id=world.t1, kind="elder")[1] == 3
    assert {p["id"] for p in view.list_persons(org_unit_id=world.v3)[0]} == {world.elders[2], world.children[2]}
    assert [p["id"] for p in view.list_persons(risk_tag="living_alone")[0]] == [world.elders[0], world.elders[2]]
    assert view.list_persons(kind="child", limit=2, offset=2) == (view.list_persons(kind="child")[0][2:], 3)
    assert view.list_persons(limit=5, offset=100) == ([], 7)

    people = by_id(view.list_persons(limit=100)[0])
    first_child, first_elder = people[world.children[0]], people[world.elders[1]]
    assert first_child["has_guardian"] is True and first_child["care_agreement_signed_on"] == date(2024, 3, 1)
    assert people[world.children[1]]["has_guardian"] is False
    assert first_elder["risk_tags"] == ["empty_nest", "economic_hardship"]
    assert first_elder["version"] == 3  # registered, tag added, joined the cadre's pairing
    assert {k: p["active_pairings"] for k, p in people.items()} == {
        world.elders[0]: 1,
        world.elders[1]: 1,
        world.elders[2]: 1,
        world.elders[3]: 1,
        world.children[0]: 2,
        world.children[1]: 1,
        world.children[2]: 0,
    }
    assert all(p["status"] == "active" and p["org_path"][0] == world.county for p in people.values())

    helpers = by_id(view.list_helpers(limit=100)[0])
    assert [helpers[h]["load"] for h in world.helpers] == [1, 3, 2, 1, 1]
    assert helpers[world.helpers[0]]["group_ids"] == [world.group]
    assert view.list_helpers(org_unit_id=world.t1)[1] == 3
    assert [h["id"] for h in view.list_helpers(role="police")[0]] == [world.helpers[3]]

    groups, total = view.list_groups(org_unit_id=world.t1)
    assert total == 1 and groups[0]["member_ids"] == world.helpers[:2] and groups[0]["status"] == "active"

    pairings, total = view.list_pairings()
    assert total == 4 and [p["id"] for p in pairings] == list(world.pairings.values())
    assert [p["id"] for p in view.list_pairings(shape="one_to_many")[0]] == [
        world.pairings["cadre"],
        world.pairings["supervisor"],
    ]
    assert [p["id"] for p in view.list_pairings(org_unit_id=world.t2)[0]] == [world.pairings["four_in_one"]]
    assert [p["id"] for p in view.list_pairings(person_id=world.children[0])[0]] == [
        world.pairings["mother"],
        world.pairings["supervisor"],
    ]
    assert [p["id"] for p in view.list_pairings(helper_id=world.helpers[4])[0]] == [world.pairings["four_in_one"]]
    supervisor = view.get_pairing(world.pairings["supervisor"])
    assert supervisor["org_path"] == [world.county, world.t1]  # children in two villages of one township
    assert view.get_pairing(world.pairings["mother"])["group_id"] == world.group


def test_summary_counts_per_township_and_per_shape(world: World, projector: Projector) -> None:
    projector.catch_up()
    rows = projector.view.counts_by_org_unit(world.county)
    assert [(r["code"], r["elders"], r["children"], r["helpers"], r["active_pairings"]) for r in rows] == [
        ("530428101000", 3, 2, 3, 3),
        ("530428102000", 1, 1, 2, 1),
    ]
    assert projector.view.pairings_by_shape(world.county) == {"one_to_one": 1, "one_to_many": 2, "many_to_one": 1}
    assert projector.view.pairings_by_shape(world.t2) == {"one_to_one": 0, "one_to_many": 0, "many_to_one": 1}


def test_personal_contact_data_stays_out_of_the_view(world: World, projector: Projector) -> None:
    projector.catch_up()
    with psycopg.connect(world.url) as conn:
        columns = {
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name IN ('reg_persons', 'reg_helpers')"
            )
        }
        dump = " ".join(str(r[0]) for t in TABLES for r in conn.execute(f"SELECT t::text FROM {t} t"))
    personal = {"name", "phone", "id_number", "guardian", "household", "parents", "absent_children", "left_reason"}
    assert not personal & columns
    # Names live only sealed in the event store: lists resolve them per page.
    assert "元江县" in dump  # the dump is real (org units keep their names), and yet:
    for secret in ("李秀英", ID_NUMBER, HELPER_PHONE, GUARDIAN_PHONE):
        assert secret not in dump


def test_leaving_the_programme_updates_pairings_loads_and_status(world: World, projector: Projector) -> None:
    app, m = world.app, new_meta
    app.person_leaves_programme(world.elders[0], "moved to live with her son", m())  # one-to-N keeps going
    died = m()
    app.person_leaves_programme(world.elders[2], "died", died)  # N-to-one cannot: it ends
    result = app.person_returns(world.elders[0], m())
    left = app.person_leaves_programme(world.elders[0], "moved again", m())
    projector.catch_up()
    assert projector.position() == left.position
    view = projector.view

    cadre = view.get_pairing(world.pairings["cadre"])
    assert cadre["status"] == "active" and cadre["person_ids"] == [world.elders[1], world.elders[3]]
    four = view.get_pairing(world.pairings["four_in_one"])
    assert four["status"] == "ended" and four["end_reason"] == "person left the programme"
    assert four["ends_on"] == died.occurred_at.date()
    assert [p["id"] for p in view.list_pairings(status="ended")[0]] == [world.pairings["four_in_one"]]

    gone = view.get_person(world.elders[0])
    # The leave reason is the person's own words: sealed in the event store, not in the view.
    assert (gone["status"], gone["active_pairings"]) == ("left", 0)
    assert "left_reason" not in gone and app.load(Person, world.elders[0]).left_reason == "moved again"
    assert gone["version"] > result.version
    assert view.list_persons(status="left")[1] == 2
    assert view.list_persons(status="active", kind="elder")[0][0]["id"] == world.elders[1]
    helpers = by_id(view.list_helpers(limit=10)[0])
    assert [helpers[h]["load"] for h in world.helpers] == [1, 2, 2, 0, 0]
    township_rows = view.counts_by_org_unit(world.county)
    assert [(r["elders"], r["active_pairings"]) for r in township_rows] == [(2, 3), (0, 0)]


# ---- positions, read-your-writes, lag ----------------------------------------------------------


def test_read_your_writes_with_a_running_projector(world: World) -> None:
    # A poll interval far beyond the wait: only LISTEN/NOTIFY can make these waits succeed in time.
    with Projector(world.url, app=world.app, poll_interval=60.0) as projector:
        projector.start()
        try:
            assert projector.wait_for(world.last_position, timeout=10.0)
            for n in range(3):
                result = world.app.rename_org_unit(world.v2, f"南昏村{n}", new_meta())
                started = time.monotonic()
                assert projector.wait_for(result.position, timeout=5.0)
                assert time.monotonic() - started < 5.0
                assert projector.view.get_org_unit(world.v2)["name"] == f"南昏村{n}"
            pid = uuid4()
            result = world.app.register_person(
                id=pid,
                kind=PersonKind.CHILD,
                name="新来",
                sex=Sex.MALE,
                birth_date=date(2019, 1, 1),
                village_id=world.v2,
                meta=new_meta(),
            )
            assert projector.wait_for(result.position, timeout=5.0)
            assert projector.view.get_person(pid)["village_id"] == world.v2
            assert projector.wait_for(None)
            started = time.monotonic()
            assert projector.wait_for(result.position + 1000, timeout=0.3) is False
            assert 0.3 <= time.monotonic() - started < 2.0
        finally:
            assert projector.stop(timeout=10.0)
    assert not projector.running


def test_lag_counts_unapplied_events_and_their_age(world: World, projector: Projector) -> None:
    projector.open()
    behind = projector.lag()
    assert behind["events_behind"] == world.last_position and behind["seconds_behind"] > 0
    positions = all_positions(world.url)
    projector.catch_up(max_batches=2)
    assert projector.position() == positions[13]
    assert projector.lag()["events_behind"] == len(positions) - 14
    projector.catch_up()
    assert projector.lag() == {"events_behind": 0, "seconds_behind": 0, "position": world.last_position}


# ---- exactly once ------------------------------------------------------------------------------


def test_stopping_between_batches_and_starting_again_applies_each_event_once(world: World) -> None:
    with Projector(world.url, app=world.app, projections=[RegistryProjection(), AppliedLog()], batch_size=5) as first:
        assert first.catch_up(max_batches=3) == 15
        fifteenth = all_positions(world.url)[14]
        assert first.runner.positions() == {"registry": fifteenth, "applied_log": fifteenth}
    world.app.add_risk_tag(world.children[1], RiskTag.DE_FACTO_UNSUPPORTED, new_meta())
    with Projector(world.url, app=world.app, projections=[RegistryProjection(), AppliedLog()], batch_size=5) as second:
        second.catch_up()
        assert applied_positions(world.url) == all_positions(world.url)
        helpers = by_id(second.view.list_helpers()[0])
        assert [helpers[h]["load"] for h in world.helpers] == [1, 3, 2, 1, 1]
        assert second.view.get_person(world.children[0])["active_pairings"] == 2
        assert second.view.get_person(world.children[1])["risk_tags"] == ["de_facto_unsupported"]


def test_two_runners_at_once_apply_each_event_once(world: World) -> None:
    # Slow batches over a backlog make the two contend for nearly every batch.
    projectors = [
        Projector(
            world.url, app=world.app, projections=[RegistryProjection(), AppliedLog(delay=0.01)], batch_size=3
        ).open()
        for _ in range(2)
    ]
    try:
        for p in projectors:
            p.start()
        for n in range(5):
            world.app.add_risk_tag(world.elders[2], RiskTag.TEKUN, new_meta())
            world.app.remove_risk_tag(world.elders[2], RiskTag.TEKUN, new_meta())
            world.app.rename_org_unit(world.v1, f"红河村{n}", new_meta())
        last = world.app.recorder.max_notification_id()
        assert all(p.wait_for(last, timeout=15.0) for p in projectors)
    finally:
        for p in projectors:
            p.close()
    assert applied_positions(world.url) == all_positions(world.url)
    view = snapshot(world.url)
    assert by_id(view["reg_persons"])[world.elders[2]]["risk_tags"] == ["dibao", "living_alone"]
    assert by_id(view["reg_persons"])[world.children[0]]["active_pairings"] == 2


KILLED_RUNNER = """
import sys, threading
from projections.registry import RegistryProjection
from tests.test_registry_view import AppliedLog
from workers.projector import Projector

with Projector(sys.argv[1], projections=[RegistryProjection(), AppliedLog(delay=0.05)], batch_size=4) as p:
    p.runner.run(threading.Event())
"""


@pytest.mark.slow
def test_a_runner_killed_mid_batch_loses_and_repeats_nothing(world: World) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUNNER, world.url], cwd=ROOT, env=env)
    try:
        with Projector(world.url, app=world.app, projections=[RegistryProjection(), AppliedLog()]) as observer:
            observer.open()
            assert wait_until(lambda: observer.position("applied_log") >= 12, timeout=30.0), (
                "the runner made no progress"
            )
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            killed_at = observer.runner.positions()
            assert min(killed_at.values()) < world.last_position, "the runner finished before it could be killed"
            # The batch in hand when it was killed was rolled back with its tracking row.
            assert applied_positions(world.url) == [
                p for p in all_positions(world.url) if p <= killed_at["applied_log"]
            ]

            observer.catch_up()
            assert applied_positions(world.url) == all_positions(world.url)
            incremental = snapshot(world.url)
            helpers = by_id(incremental["reg_helpers"])
            assert [helpers[h]["load"] for h in world.helpers] == [1, 3, 2, 1, 1]
            persons = by_id(incremental["reg_persons"])
            assert [persons[p]["active_pairings"] for p in world.children] == [2, 1, 0]
            observer.runner.rebuild("registry")
            assert snapshot(world.url) == incremental
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_reset_and_replay_gives_the_same_rows_as_the_incremental_view(world: World, projector: Projector) -> None:
    projector.start()
    app, m = world.app, new_meta
    app.add_group_member(world.group, world.helpers[2], m())
    app.add_pairing_person(world.pairings["supervisor"], world.elders[0], m())  # of the supervisor's township
    app.remove_pairing_person(world.pairings["supervisor"], world.children[1], "moved to the county town", m())
    app.change_pairing_cadence(world.pairings["mother"], Cadence.MONTHLY, VisitMode.PHONE_VIDEO, m())
    app.end_pairing(world.pairings["cadre"], "replaced by a team", date.today(), m())
    app.disband_group(world.group, "merged", m())
    app.change_helper_capacity(world.helpers[1], 3, m())
    app.deactivate_helper(world.helpers[1], "moved away", m())
    app.add_pairing_helper(world.pairings["four_in_one"], world.helpers[2], m())
    last = app.remove_risk_tag(world.elders[0], RiskTag.LIVING_ALONE, m())
    assert projector.wait_for(last.position, timeout=10.0)
    assert projector.stop(timeout=10.0)
    incremental = snapshot(world.url)

    cadre = by_id(incremental["reg_helpers"])[world.helpers[1]]
    assert (cadre["status"], cadre["capacity"], cadre["load"], cadre["group_ids"]) == ("inactive", 3, 0, [])
    assert by_id(incremental["reg_groups"])[world.group]["status"] == "disbanded"
    mother = by_id(incremental["reg_pairings"])[world.pairings["mother"]]
    assert (mother["cadence"], mother["visit_mode"]) == ("monthly", "phone_video")

    projector.runner.reset("registry")
    assert snapshot(world.url)["reg_persons"] == [] and projector.position("registry") == 0
    assert projector.catch_up() == len(all_positions(world.url))
    assert snapshot(world.url) == incremental


def test_the_standalone_process_stops_cleanly_on_sigterm(world: World) -> None:
    # The real command, as compose.yaml runs it.
    proc = subprocess.Popen(
        [sys.executable, "-m", "guanai.cli", "projector"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "GUANAI_DATABASE_URL": world.url, "GUANAI_LOG_LEVEL": "warning"},
    )
    try:
        with Projector(world.url, app=world.app) as observer:
            assert wait_until(lambda: observer.position() == world.last_position, timeout=30.0)
            result = world.app.rename_org_unit(world.t2, "因远镇人民政府", new_meta())
            assert observer.wait_for(result.position, timeout=10.0)
            assert observer.view.get_org_unit(world.t2)["name"] == "因远镇人民政府"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
