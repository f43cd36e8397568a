"""Scheduling visit tasks on a real PostgreSQL (and, for the worker, a real NATS): tasks per
cadence and never twice, also under concurrent schedulers; cancellations when a pairing ends,
a person leaves or the cadence changes; the sweep's missed tasks and lapsed claims; the worker
reacting to pairing events and its start-up sweep covering events it never saw."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from uuid import UUID, uuid4

import nats
import pytest

from application.care import CareApplication
from domain.base import CommandMeta
from domain.schedule import PROGRAMME_TZ, day_start
from domain.visit_task import VisitTask
from domain.vocabulary import Cadence, HelperRole, OrgLevel, PairingShape, PersonKind, Sex, VisitMode
from guanai import bootstrap
from guanai.demo.visits import print_visit_summary, simulate_visits
from infrastructure.settings import load_settings
from projections.visit_tasks import VisitTaskView
from tests.app_support import make_care
from tests.conftest import create_database, drop_database
from workers.projector import Projector
from workers.runtime import BackgroundWorkers
from workers.scheduler import sweep

MONDAY = date(2026, 3, 2)


def at(when: datetime, actor: str = "cadre-1", role: str = "village_cadre") -> CommandMeta:
    return CommandMeta(actor_id=actor, actor_role=role, correlation_id=f"req-{uuid4()}", occurred_at=when)


def noon(day: date) -> datetime:
    return day_start(day) + timedelta(hours=12)


@pytest.fixture(scope="module")
def db(pg_base_url: str) -> Iterator[str]:
    url = create_database(pg_base_url, prefix="guanai_test_sched")
    yield url
    drop_database(pg_base_url, url)


@pytest.fixture(scope="module")
def app(db: str) -> Iterator[CareApplication]:
    care = make_care(db, pool_size=4)
    yield care
    care.close()


@pytest.fixture(scope="module")
def projector(db: str, app: CareApplication) -> Iterator[Projector]:
    with Projector(db, app=app) as p:
        yield p


@dataclass
class County:
    app: CareApplication
    village: UUID

    def elders(self, n: int) -> list[UUID]:
        return [
            self.app.register_person(
                id=uuid4(), kind=PersonKind.ELDER, name="李秀英", sex=Sex.FEMALE, birth_date=date(1946, 5, 1),
                village_id=self.village, meta=at(noon(MONDAY - timedelta(days=60))),
            ).id
            for _ in range(n)
        ]  # fmt: skip

    def helpers(self, n: int) -> list[UUID]:
        return [
            self.app.register_helper(
                id=uuid4(), role=HelperRole.VOLUNTEER, name="张志愿", phone="13900000000", org_unit_id=self.village,
                meta=at(noon(MONDAY - timedelta(days=60))),
            ).id
            for _ in range(n)
        ]  # fmt: skip

    def pair(
        self, persons: int = 1, cadence: Cadence = Cadence.WEEKLY, starts_on: date = MONDAY, helpers: int = 1
    ) -> UUID:
        shape = (
            PairingShape.ONE_TO_ONE
            if persons == helpers == 1
            else (PairingShape.ONE_TO_MANY if helpers == 1 else PairingShape.MANY_TO_ONE)
        )
        return self.app.form_pairing(
            id=uuid4(), shape=shape, helper_ids=self.helpers(helpers), person_ids=self.elders(persons), cadence=cadence,
            visit_mode=VisitMode.HOME_VISIT, starts_on=starts_on, meta=at(noon(starts_on - timedelta(days=1))),
        ).id  # fmt: skip


@pytest.fixture(scope="module")
def county(app: CareApplication) -> County:
    code = f"{uuid.uuid4().int % 10**6:06d}"
    m = at(noon(MONDAY - timedelta(days=90)), role="administrator")
    c = app.register_org_unit(code=code + "000000", name="元江县", level=OrgLevel.COUNTY, parent_id=None, meta=m)
    t = app.register_org_unit(code=code + "101000", name="澧江街道", level=OrgLevel.TOWNSHIP, parent_id=c.id, meta=m)
    v = app.register_org_unit(code=code + "101201", name="红河村", level=OrgLevel.VILLAGE, parent_id=t.id, meta=m)
    return County(app, v.id)


def tasks_of(app: CareApplication, pairing_id: UUID) -> list[VisitTask]:
    """Every task ever scheduled for the pairing, read from the notification log."""
    topic = "domain.visit_task:VisitTask.Scheduled"
    notifications = app.recorder.select_notifications(start=None, limit=1_000_000, topics=[topic])
    ids = {e.originator_id for e in map(app.mapper.to_domain_event, notifications) if e.pairing_id == pairing_id}
    return sorted((app.load(VisitTask, i) for i in ids), key=lambda t: (t.period_start, str(t.person_id)))


def scheduled_events(app: CareApplication, pairing_id: UUID) -> int:
    return sum(1 for t in tasks_of(app, pairing_id) for e in app.history(t.id) if isinstance(e, VisitTask.Scheduled))


def test_tasks_appear_for_each_person_per_cadence_and_never_twice(app: CareApplication, county: County) -> None:
    weekly, monthly, yearly = county.pair(1), county.pair(2, Cadence.MONTHLY), county.pair(1, Cadence.YEARLY)
    now = noon(MONDAY + timedelta(days=9))  # Wednesday of the second week
    created = {p: app.schedule_visits(p, at(now, "scheduler", "system")).created for p in (weekly, monthly, yearly)}
    assert {p: len(c) for p, c in created.items()} == {weekly: 2, monthly: 4, yearly: 2}
    windows = [(t.cadence, t.period_start, t.due_until) for t in tasks_of(app, weekly)]
    assert windows == [
        (Cadence.WEEKLY, MONDAY + timedelta(days=7), MONDAY + timedelta(days=13)),
        (Cadence.WEEKLY, MONDAY + timedelta(days=14), MONDAY + timedelta(days=20)),
    ]
    assert {t.period_start for t in tasks_of(app, monthly)} == {MONDAY, date(2026, 4, 2)}
    assert {(t.period_start, t.due_until) for t in tasks_of(app, yearly)} == {
        (MONDAY, date(2027, 3, 1)),
        (date(2027, 3, 2), date(2028, 3, 1)),
    }
    for pairing_id in (weekly, monthly, yearly):  # the scheduler runs again, later the same day
        again = app.schedule_visits(pairing_id, at(now + timedelta(hours=3), "scheduler", "system"))
        assert (again.created, again.cancelled, again.position) == ([], [], None)
    assert scheduled_events(app, monthly) == 4


def test_concurrent_schedulers_create_each_task_once(app: CareApplication, county: County) -> None:
    pairing = county.pair(3)
    now = noon(MONDAY + timedelta(days=2))
    barrier_meta = [at(now, f"scheduler-{i}", "system") for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda m: app.schedule_visits(pairing, m), barrier_meta))
    assert sum(len(o.created) for o in outcomes) == 6
    assert scheduled_events(app, pairing) == 6


def test_ending_a_pairing_cancels_its_open_tasks_but_not_completed_ones(app: CareApplication, county: County) -> None:
    pairing = county.pair(2)
    now = noon(MONDAY + timedelta(days=1))
    app.schedule_visits(pairing, at(now, "scheduler", "system"))
    this_week = [t for t in tasks_of(app, pairing) if t.period_start == MONDAY]
    done = this_week[0]
    helper = app.pairing_timeline(pairing)[0].helper_ids[0]
    app.record_visit(uuid4(), at(now - timedelta(hours=2), str(helper), "volunteer"), task_id=done.id, mode=VisitMode.HOME_VISIT,
                     helper_ids=[helper], findings={"mood": "good"}, services=[], service_items=[])  # fmt: skip
    app.claim_visit(this_week[1].id, at(now), helper_id=helper)
    app.end_pairing(pairing, "helper moved away", now.date(), at(now + timedelta(hours=1)))
    outcome = app.schedule_visits(pairing, at(now + timedelta(hours=2), "scheduler", "system"))
    assert len(outcome.cancelled) == 3 and outcome.created == []
    statuses = {(t.person_id, t.period_start): t.status for t in tasks_of(app, pairing)}
    assert sorted(statuses.values()) == ["cancelled", "cancelled", "cancelled", "completed"]
    assert app.load(VisitTask, this_week[1].id).cancel_reason == "pairing ended: helper moved away"


def test_a_person_leaving_cancels_only_their_tasks(app: CareApplication, county: County) -> None:
    pairing = county.pair(3)
    now = noon(MONDAY + timedelta(days=3))
    app.schedule_visits(pairing, at(now, "scheduler", "system"))
    leaving = app.pairing_timeline(pairing)[0].person_ids[0]
    app.remove_pairing_person(pairing, leaving, "随子女进城", at(now + timedelta(hours=1)))
    outcome = app.schedule_visits(pairing, at(now + timedelta(hours=2), "scheduler", "system"))
    assert len(outcome.cancelled) == 2 and outcome.created == []
    by_person: dict[UUID, set[str]] = {}
    for t in tasks_of(app, pairing):
        by_person.setdefault(t.person_id, set()).add(t.status)
    assert by_person.pop(leaving) == {"cancelled"}
    assert all(s == {"scheduled"} for s in by_person.values()) and len(by_person) == 2


def test_a_cadence_change_replaces_the_tasks_ahead_from_the_next_period(app: CareApplication, county: County) -> None:
    pairing = county.pair(1)
    wednesday = noon(MONDAY + timedelta(days=2))
    app.schedule_visits(pairing, at(wednesday, "scheduler", "system"))
    app.change_pairing_cadence(pairing, Cadence.MONTHLY, VisitMode.PHONE_VIDEO, at(wednesday + timedelta(hours=1)))
    outcome = app.schedule_visits(pairing, at(wednesday + timedelta(hours=2), "scheduler", "system"))
    assert len(outcome.cancelled) == 1 and len(outcome.created) == 1
    tasks = {(t.cadence, t.period_start): t for t in tasks_of(app, pairing)}
    assert tasks[(Cadence.WEEKLY, MONDAY)].status == "scheduled"  # the week in progress stands
    assert tasks[(Cadence.WEEKLY, MONDAY + timedelta(days=7))].status == "cancelled"
    monthly = tasks[(Cadence.MONTHLY, MONDAY + timedelta(days=7))]
    assert (monthly.status, monthly.mode, monthly.due_until) == ("scheduled", VisitMode.PHONE_VIDEO, date(2026, 4, 8))


def test_the_sweep_marks_missed_windows_returns_lapsed_claims_and_reconciles_ended_pairings(
    app: CareApplication, county: County, projector: Projector
) -> None:
    view = VisitTaskView(projector.pool)
    old, lapsing, ended = county.pair(1), county.pair(1), county.pair(1)
    first_week = noon(MONDAY + timedelta(days=1))
    for p in (old, lapsing, ended):
        app.schedule_visits(p, at(first_week, "scheduler", "system"))
    helper = app.pairing_timeline(lapsing)[0].helper_ids[0]
    claimed = tasks_of(app, lapsing)[1]  # next week's, claimed once its window opened
    app.claim_visit(claimed.id, at(noon(MONDAY + timedelta(days=7))), helper_id=helper, ttl=timedelta(hours=1))
    # The pairing ends and nobody schedules it: the event is "lost".
    app.end_pairing(ended, "结对调整", first_week.date(), at(first_week + timedelta(hours=1)))
    projector.catch_up()
    outcome = sweep(app, view, noon(MONDAY + timedelta(days=8)))
    assert outcome.failed == []
    old_tasks = tasks_of(app, old)
    assert [(t.period_start, t.status) for t in old_tasks] == [
        (MONDAY, "missed"),
        (MONDAY + timedelta(days=7), "scheduled"),
        (MONDAY + timedelta(days=14), "scheduled"),
    ]
    missed = app.history(old_tasks[0].id)[-1]
    assert isinstance(missed, VisitTask.Missed) and missed.occurred_at == day_start(MONDAY + timedelta(days=7))
    assert app.load(VisitTask, claimed.id).status == "scheduled"  # claim lapsed, back in the pool
    assert {t.status for t in tasks_of(app, ended)} == {"cancelled"}
    projector.catch_up()
    before = {t.id: t.version for p in (old, lapsing, ended) for t in tasks_of(app, p)}
    again = sweep(app, view, noon(MONDAY + timedelta(days=8)) + timedelta(minutes=5))
    assert again.failed == []
    assert {t.id: t.version for p in (old, lapsing, ended) for t in tasks_of(app, p)} == before  # nothing twice


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.02
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(delay)
        delay = min(delay * 2, 0.25)
    return condition()


async def _delete_stream(nats_url: str, stream: str) -> None:
    nc = await nats.connect(nats_url)
    with contextlib.suppress(Exception):  # the test may have failed before making it
        await nc.jetstream().delete_stream(stream)
    await nc.close()


def test_the_worker_schedules_from_pairing_events_and_its_sweep_covers_lost_ones(
    app: CareApplication, county: County, projector: Projector, db: str, nats_url: str
) -> None:
    tag = uuid.uuid4().hex[:8]
    names = {"stream": f"TEST_SCHED_{tag}", "subject_prefix": f"test{tag}.events"}
    today = datetime.now(PROGRAMME_TZ).date()
    settings = load_settings()
    relay = bootstrap.relay(settings, db, nats_url, name=f"relay-{tag}", **names)
    scheduler = bootstrap.scheduler(settings, db, nats_url, interval=3600, durable=f"sched-{tag}", **names)
    workers = BackgroundWorkers(relay, scheduler, name="sched-test").start()
    try:
        pairing = county.pair(2, starts_on=today - timedelta(days=3))
        assert wait_until(lambda: len(tasks_of(app, pairing)) == 4), "no tasks from the Formed event"
        app.end_pairing(pairing, "结对调整", today, at(datetime.now(UTC)))
        assert wait_until(lambda: {t.status for t in tasks_of(app, pairing)} == {"cancelled"}), "not cancelled"
    finally:
        workers.stop()
    # While nothing relays, a pairing is formed: only the scheduler's sweep can see it.
    unseen = county.pair(1, starts_on=today)
    projector.catch_up()
    workers = BackgroundWorkers(
        bootstrap.scheduler(settings, db, nats_url, interval=3600, durable=f"sched2-{tag}", **names)
    ).start()
    try:
        assert wait_until(lambda: len(tasks_of(app, unseen)) == 2), "the start-up sweep did not schedule it"
    finally:
        workers.stop()
        asyncio.run(_delete_stream(nats_url, names["stream"]))


def test_the_demo_lives_through_weeks_of_visits_and_a_second_run_writes_nothing(fresh_database_url: str) -> None:
    app = make_care(fresh_database_url, pool_size=4)
    try:
        code = f"{uuid.uuid4().int % 10**6:06d}"
        m = at(noon(MONDAY - timedelta(days=90)), role="administrator")
        c = app.register_org_unit(code=code + "000000", name="元江县", level=OrgLevel.COUNTY, parent_id=None, meta=m)
        t = app.register_org_unit(
            code=code + "101000", name="澧江街道", level=OrgLevel.TOWNSHIP, parent_id=c.id, meta=m
        )
        v = app.register_org_unit(code=code + "101201", name="红河村", level=OrgLevel.VILLAGE, parent_id=t.id, meta=m)
        county = County(app, v.id)
        now = noon(MONDAY + timedelta(days=60))
        # Each task's draws are seeded by its (random) id, so the figures vary from run to run:
        # with 4 pairings (36 tasks) one full test run saw no visit missed; 12 pairings make a
        # run with none missed, or none completed, far less likely.
        for cadence in (Cadence.WEEKLY, Cadence.WEEKLY, Cadence.FORTNIGHTLY, Cadence.MONTHLY) * 3:
            county.pair(2, cadence, helpers=1)
        first = simulate_visits(app, seed=7, weeks=4, now=now, workers=2)
        assert first.pairings == 12 and first.scheduled >= 60
        assert first.completed > 0 and first.missed > 0
        again = simulate_visits(app, seed=7, weeks=4, now=now, workers=2)
        assert (again.scheduled, again.completed, again.missed, again.claimed) == (0, 0, 0, 0)
        with Projector(fresh_database_url, app=app) as projector:
            projector.catch_up()
            out = io.StringIO()
            print_visit_summary(VisitTaskView(projector.pool), c.id, out, since=now - timedelta(days=28))
            [row] = VisitTaskView(projector.pool).rates_by_unit(c.id, since=now - timedelta(days=28), until=now)
        assert row["due"] == row["completed"] + row["missed"] and row["unresolved"] == 0
        assert row["completed"] > 0 and "澧江街道" in out.getvalue() and "county 全县" in out.getvalue()
    finally:
        app.close()
