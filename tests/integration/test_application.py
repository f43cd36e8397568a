"""The command side on a real PostgreSQL event store: idempotent creates, optimistic concurrency
(re-decided or refused), helpers' capacity under concurrent pairing, as-of reads on both time
axes, and a person leaving the programme.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from application.care import AlreadyExistsError, CareApplication, CommandResult, NotFoundError, VersionConflictError
from application.visits import LogItem
from domain.base import META_FIELDS, CommandMeta
from domain.helper import Helper, HelperOverCapacityError
from domain.org_unit import OrgUnit
from domain.pairing import DuplicateMemberError, Pairing
from domain.person import Person
from domain.visit_task import VisitTask
from domain.vocabulary import Cadence, HelperRole, OrgLevel, PairingShape, PersonKind, RiskTag, Sex, VisitMode


def at(when: datetime, correlation: str = "") -> CommandMeta:
    return CommandMeta(
        actor_id="cadre-7", actor_role="village_cadre", correlation_id=correlation or f"req-{uuid4()}", occurred_at=when
    )


def race(n: int, command: Callable[[int], Any]) -> list[Any]:
    """Run ``command(i)`` in ``n`` threads released together; each result or raised error."""
    barrier = threading.Barrier(n)

    def run(i: int) -> Any:
        barrier.wait(timeout=10)
        try:
            return command(i)
        except Exception as e:  # noqa: BLE001 - the outcome under test
            return e

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


@dataclass
class Org:
    county: UUID
    township: UUID
    village: UUID


@pytest.fixture
def org(care_app: CareApplication, meta: CommandMeta) -> Org:
    prefix = f"{uuid4().int % 10**6:06d}"  # the session database is shared by many tests
    county = care_app.register_org_unit(
        code=f"{prefix}000000", name="元江县", level=OrgLevel.COUNTY, parent_id=None, meta=meta
    )
    township = care_app.register_org_unit(
        code=f"{prefix}101000", name="澧江街道", level=OrgLevel.TOWNSHIP, parent_id=county.id, meta=meta
    )
    village = care_app.register_org_unit(
        code=f"{prefix}101201", name="红河村", level=OrgLevel.VILLAGE, parent_id=township.id, meta=meta
    )
    return Org(county.id, township.id, village.id)


def elder_body(org: Org, **overrides: Any) -> dict[str, Any]:
    return {
        "kind": PersonKind.ELDER,
        "name": "李秀英",
        "sex": Sex.FEMALE,
        "birth_date": date(1948, 3, 2),
        "village_id": org.village,
        "household": "红河村3组12号",
        "risk_tags": [RiskTag.LIVING_ALONE],
        "absent_children": [{"name": "王强", "works_in": "广东东莞"}],
    } | overrides


def new_elder(app: CareApplication, org: Org, meta: CommandMeta, **overrides: Any) -> UUID:
    return app.register_person(id=uuid4(), meta=meta, **elder_body(org, **overrides)).id


def new_helper(app: CareApplication, org: Org, meta: CommandMeta, capacity: int | None = None) -> UUID:
    return app.register_helper(
        id=uuid4(),
        role=HelperRole.VOLUNTEER,
        name="张志愿",
        phone="139",
        org_unit_id=org.village,
        meta=meta,
        capacity=capacity,
    ).id


def form(
    app: CareApplication, shape: PairingShape, helpers: list[UUID], persons: list[UUID], meta: CommandMeta
) -> CommandResult:
    return app.form_pairing(
        id=uuid4(),
        shape=shape,
        helper_ids=helpers,
        person_ids=persons,
        cadence=Cadence.WEEKLY,
        visit_mode=VisitMode.HOME_VISIT,
        starts_on=date.today() - timedelta(days=30),
        meta=meta,
    )


# ---- idempotent creates -------------------------------------------------------------------


def test_registering_the_same_person_twice_returns_the_first(
    care_app: CareApplication, org: Org, meta: CommandMeta
) -> None:
    person_id = uuid4()
    first = care_app.register_person(id=person_id, meta=meta, **elder_body(org))
    # The device sends it again later, as another request.
    again = care_app.register_person(id=person_id, meta=at(datetime.now(UTC)), **elder_body(org))
    assert (first.created, again.created) == (True, False)
    assert (again.id, again.version, again.position) == (person_id, first.version, None)
    assert first.position is not None
    assert len(care_app.history(person_id)) == 1


def test_a_different_person_under_the_same_id_is_refused(
    care_app: CareApplication, org: Org, meta: CommandMeta
) -> None:
    person_id = uuid4()
    care_app.register_person(id=person_id, meta=meta, **elder_body(org))
    with pytest.raises(AlreadyExistsError) as info:
        care_app.register_person(id=person_id, meta=meta, **elder_body(org, name="李秀兰"))
    assert info.value.field == "id"
    assert care_app.load(Person, person_id).name == "李秀英"
    assert len(care_app.history(person_id)) == 1


def test_the_same_org_unit_code_twice(care_app: CareApplication, org: Org, meta: CommandMeta) -> None:
    code = care_app.load(OrgUnit, org.village).code
    again = care_app.register_org_unit(
        code=code, name="红河村", level=OrgLevel.VILLAGE, parent_id=org.township, meta=meta
    )
    assert (again.created, again.id) == (False, org.village)
    with pytest.raises(AlreadyExistsError):
        care_app.register_org_unit(code=code, name="别的村", level=OrgLevel.VILLAGE, parent_id=org.township, meta=meta)
    assert len(care_app.history(org.village)) == 1


def test_a_concurrent_double_create_creates_once(care_app: CareApplication, org: Org, meta: CommandMeta) -> None:
    for _ in range(3):
        person_id = uuid4()
        results = race(2, lambda _, pid=person_id: care_app.register_person(id=pid, meta=meta, **elder_body(org)))
        assert all(isinstance(r, CommandResult) for r in results), results
        assert sorted(r.created for r in results) == [False, True]
        assert len(care_app.history(person_id)) == 1


def test_every_stored_event_carries_the_commands_meta(care_app: CareApplication, org: Org, meta: CommandMeta) -> None:
    person_id = new_elder(care_app, org, meta)
    tagging = at(datetime.now(UTC) - timedelta(hours=2), correlation="req-tag-1")
    care_app.add_risk_tag(person_id, RiskTag.DIBAO, tagging)
    registered, tagged = care_app.history(person_id)
    assert {f: getattr(registered, f) for f in META_FIELDS} == meta.fields()
    assert {f: getattr(tagged, f) for f in META_FIELDS} == tagging.fields()


# ---- optimistic concurrency -----------------------------------------------------------------


def test_a_stale_expected_version_is_refused_with_the_current_version(
    care_app: CareApplication, org: Org, meta: CommandMeta
) -> None:
    person_id = new_elder(care_app, org, meta)
    done = care_app.add_risk_tag(person_id, RiskTag.DIBAO, meta, expected_version=1)
    assert done.version == 2
    with pytest.raises(VersionConflictError) as info:
        care_app.add_risk_tag(person_id, RiskTag.TEKUN, meta, expected_version=1)
    assert info.value.extra["current_version"] == 2
    assert set(care_app.load(Person, person_id).risk_tags) == {"dibao", "living_alone"}


def test_two_people_added_at_once_to_one_pairing_both_join(
    care_app: CareApplication, org: Org, meta: CommandMeta
) -> None:
    cadre = new_helper(care_app, org, meta)
    pairing_id = form(
        care_app, PairingShape.ONE_TO_MANY, [cadre], [new_elder(care_app, org, meta) for _ in range(2)], meta
    ).id
    newcomers = [new_elder(care_app, org, meta) for _ in range(2)]
    results = race(2, lambda i: care_app.add_pairing_person(pairing_id, newcomers[i], meta))
    assert all(isinstance(r, CommandResult) for r in results), results
    pairing = care_app.load(Pairing, pairing_id)
    assert sorted(pairing.person_ids[2:]) == sorted(newcomers)
    assert care_app.load(Helper, cadre).assignments == {pairing_id: 4}
    assert all(care_app.load(Person, p).pairing_ids == [pairing_id] for p in newcomers)


def test_the_same_person_added_twice_at_once_joins_once(care_app: CareApplication, org: Org, meta: CommandMeta) -> None:
    cadre = new_helper(care_app, org, meta)
    pairing_id = form(
        care_app, PairingShape.ONE_TO_MANY, [cadre], [new_elder(care_app, org, meta) for _ in range(2)], meta
    ).id
    newcomer = new_elder(care_app, org, meta)
    results = race(2, lambda _: care_app.add_pairing_person(pairing_id, newcomer, meta))
    assert sum(isinstance(r, CommandResult) for r in results) == 1, results
    [refusal] = [r for r in results if not isinstance(r, CommandResult)]
    assert isinstance(refusal, DuplicateMemberError) and refusal.field == "person_id"
    assert care_app.load(Pairing, pairing_id).person_ids.count(newcomer) == 1
    assert care_app.load(Helper, cadre).assignments == {pairing_id: 3}


def test_capacity_holds_when_pairings_are_formed_at_once(
    care_app: CareApplication, org: Org, meta: CommandMeta
) -> None:
    mother = new_helper(care_app, org, meta, capacity=3)
    children = [
        new_elder(
            care_app,
            org,
            meta,
            kind=PersonKind.CHILD,
            birth_date=date.today() - timedelta(days=9 * 365),
            absent_children=[],
        )
        for _ in range(5)
    ]
    results = race(5, lambda i: form(care_app, PairingShape.ONE_TO_ONE, [mother], [children[i]], meta))
    formed = [r for r in results if isinstance(r, CommandResult)]
    refused = [r for r in results if not isinstance(r, CommandResult)]
    assert len(formed) == 3, results
    assert all(isinstance(e, HelperOverCapacityError) and e.field == "helper_ids[0]" for e in refused), refused
    helper = care_app.load(Helper, mother)
    assert helper.load == 3 and sorted(helper.assignments) == sorted(r.id for r in formed)
    paired = [c for c in children if care_app.load(Person, c).pairing_ids]
    assert len(paired) == 3


def test_the_default_capacity_comes_from_the_application(
    care_app: CareApplication, org: Org, meta: CommandMeta
) -> None:
    assert care_app.helper_capacity == 10
    helper_id = new_helper(care_app, org, meta)
    assert care_app.load(Helper, helper_id).capacity == 10


# ---- as-of reads ---------------------------------------------------------------------------------


def test_load_as_of_a_version(care_app: CareApplication, org: Org, meta: CommandMeta) -> None:
    person_id = new_elder(care_app, org, meta)
    care_app.add_risk_tag(person_id, RiskTag.DIBAO, meta)
    care_app.remove_risk_tag(person_id, RiskTag.LIVING_ALONE, meta)
    assert care_app.load_as_of(Person, person_id, version=1).risk_tags == ["living_alone"]
    assert set(care_app.load_as_of(Person, person_id, version=2).risk_tags) == {"dibao", "living_alone"}
    assert care_app.load_as_of(Person, person_id).risk_tags == ["dibao"]


def test_load_as_of_an_instant_on_both_axes(care_app: CareApplication, org: Org) -> None:
    now = datetime.now(UTC)
    person_id = new_elder(care_app, org, at(now - timedelta(days=10)))
    registration_recorded = datetime.now(UTC)
    # A visit found the elder in hardship five days ago; the volunteer logs it only now.
    care_app.add_risk_tag(person_id, RiskTag.DIBAO, at(now - timedelta(days=5)))

    known_then = care_app.load_as_of(Person, person_id, at=registration_recorded, axis="recorded")
    happened_then = care_app.load_as_of(Person, person_id, at=registration_recorded, axis="occurred")
    assert known_then.risk_tags == ["living_alone"]  # the system did not know yet
    assert set(happened_then.risk_tags) == {"dibao", "living_alone"}  # but it had happened

    assert care_app.load_as_of(Person, person_id, at=now - timedelta(days=7), axis="occurred").risk_tags == [
        "living_alone"
    ]
    with pytest.raises(NotFoundError):
        care_app.load_as_of(Person, person_id, at=now - timedelta(days=7), axis="recorded")
    with pytest.raises(NotFoundError):
        care_app.load_as_of(Person, person_id, at=now - timedelta(days=11), axis="occurred")
    known_now = care_app.load_as_of(Person, person_id, at=datetime.now(UTC), axis="recorded")
    assert set(known_now.risk_tags) == {"dibao", "living_alone"}


# ---- leaving the programme -------------------------------------------------------------------


def test_leaving_ends_a_one_to_one_and_leaves_a_one_to_n_of_three(
    care_app: CareApplication, org: Org, meta: CommandMeta
) -> None:
    mother, cadre = new_helper(care_app, org, meta), new_helper(care_app, org, meta)
    leaving, f, g = (new_elder(care_app, org, meta) for _ in range(3))
    one = form(care_app, PairingShape.ONE_TO_ONE, [mother], [leaving], meta).id
    many = form(care_app, PairingShape.ONE_TO_MANY, [cadre], [leaving, f, g], meta).id
    assert care_app.load(Helper, cadre).load == 3

    done = care_app.person_leaves_programme(leaving, "moved in with her son in Kunming", meta)

    assert done.position is not None
    person = care_app.load(Person, leaving)
    assert (person.active, person.pairing_ids) == (False, [])
    ended = care_app.load(Pairing, one)
    # The person's own reason stays on their record (sealed with their key), not in the pairing's.
    assert ended.ended and ended.end_reason == "person left the programme"
    assert person.left_reason == "moved in with her son in Kunming"
    assert care_app.load(Helper, mother).assignments == {}
    kept = care_app.load(Pairing, many)
    assert not kept.ended and kept.person_ids == [f, g]
    assert care_app.load(Helper, cadre).assignments == {many: 2}
    assert all(care_app.load(Person, p).pairing_ids == [many] for p in (f, g))


def test_a_person_can_leave_when_two_of_their_pairings_share_a_helper(
    care_app: CareApplication, org: Org, meta: CommandMeta
) -> None:
    # The village cadre looks after three elders and is also one of the four for the key person.
    cadre, doctor = new_helper(care_app, org, meta), new_helper(care_app, org, meta)
    leaving, f, g = (new_elder(care_app, org, meta) for _ in range(3))
    many = form(care_app, PairingShape.ONE_TO_MANY, [cadre], [leaving, f, g], meta).id
    four_for_one = form(care_app, PairingShape.MANY_TO_ONE, [cadre, doctor], [leaving], meta).id

    care_app.person_leaves_programme(leaving, "moved away", meta)

    assert care_app.load(Pairing, four_for_one).ended
    assert care_app.load(Pairing, many).person_ids == [f, g]
    assert care_app.load(Helper, cadre).assignments == {many: 2}
    assert care_app.load(Helper, doctor).assignments == {}


# ---- a device's backlog of visit logs ----------------------------------------------------------


def _log(log_id: UUID, helper: UUID, when: datetime, **links: Any) -> LogItem:
    meta = CommandMeta(actor_id=str(helper), actor_role="volunteer", correlation_id=f"b-{uuid4()}", occurred_at=when)
    fields = {"task_id": links.pop("task_id", None), "mode": VisitMode.HOME_VISIT, "helper_ids": [helper],
              "findings": {"mood": "good", "notes": "腿脚好多了"}, "services": [], "service_items": []}  # fmt: skip
    return LogItem(log_id, meta, fields, **links)


def test_a_backlog_of_logs_is_decided_item_by_item_and_saved_once(
    care_app: CareApplication, org: Org, meta: CommandMeta
) -> None:
    helper = new_helper(care_app, org, meta)
    elders = [new_elder(care_app, org, meta) for _ in range(3)]
    pairing = form(care_app, PairingShape.ONE_TO_MANY, [helper], elders, meta).id
    now = datetime.now(UTC)
    created = care_app.schedule_visits(pairing, meta).created
    tasks = sorted(
        (t for t in care_app.load_many(VisitTask, created).values() if t.opens_at <= now),
        key=lambda t: str(t.person_id),
    )
    assert len(tasks) == 3
    when = now - timedelta(minutes=5)
    ids = [uuid4() for _ in range(6)]
    items = [
        _log(ids[0], helper, when, task_id=tasks[0].id),
        _log(ids[1], helper, when, pairing_id=pairing, person_id=elders[1]),
        _log(ids[2], helper, when, pairing_id=pairing, person_id=uuid4()),  # not in the pairing
        _log(ids[3], helper, when, task_id=tasks[0].id),  # the task item 0 completes
        _log(ids[0], helper, when, pairing_id=pairing, person_id=elders[2]),  # item 0's id again
        _log(ids[5], helper, when, task_id=tasks[2].id),
    ]
    answers = care_app.record_visits(items, acting_helper_id=helper)
    assert [type(a).__name__ for a in answers] == [
        "CommandResult", "CommandResult", "VisitLogError", "TaskClosedError", "AlreadyExistsError", "CommandResult",
    ]  # fmt: skip
    assert answers[2].field == "person_id" and answers[4].field == "id"
    created = [answers[n] for n in (0, 1, 5)]
    assert all(isinstance(a, CommandResult) and a.created for a in created)
    assert len({a.position for a in created}) == 3  # each its own events' position, in one transaction
    assert care_app.load(VisitTask, tasks[0].id).log_id == ids[0]
    assert care_app.load(VisitTask, tasks[1].id).status == "scheduled"
    assert not list(care_app.events.get(ids[2])) and not list(care_app.events.get(ids[3]))
    # Sent again: the same answers, nothing written.
    before = care_app.recorder.max_notification_id()
    again = care_app.record_visits([items[n] for n in (0, 1, 5)], acting_helper_id=helper)
    assert [(a.id, a.version, a.position, a.created) for a in again] == [  # type: ignore[union-attr]
        (a.id, a.version, a.position, False) for a in created
    ]
    assert care_app.recorder.max_notification_id() == before


def test_a_backlog_decides_on_what_its_caller_read_and_a_log_stored_since_is_answered_as_sent_before(
    care_app: CareApplication, org: Org, meta: CommandMeta
) -> None:
    helper = new_helper(care_app, org, meta)
    elders = [new_elder(care_app, org, meta) for _ in range(2)]
    pairing = form(care_app, PairingShape.ONE_TO_MANY, [helper], elders, meta).id
    now = datetime.now(UTC)
    created = care_app.schedule_visits(pairing, meta).created
    tasks = sorted(
        (t for t in care_app.load_many(VisitTask, created).values() if t.opens_at <= now),
        key=lambda t: str(t.person_id),
    )
    # What a route reads for its checks: the tasks, their pairing and group, three queries; not
    # the tasks' persons (deciding asks only whether they were erased, from the store's topics).
    loaded = care_app.read_for_logs([t.id for t in tasks])
    assert {t.id for t in tasks} | {pairing} <= set(loaded) and not set(elders) & set(loaded)
    when = now - timedelta(minutes=5)
    items = [_log(uuid4(), helper, when, task_id=t.id) for t in tasks]
    # Item 0 is stored by another request after the caller read that its id was free.
    first = care_app.record_visits([items[0]], acting_helper_id=helper)[0]
    assert isinstance(first, CommandResult) and first.created
    answers = care_app.record_visits(items, acting_helper_id=helper, loaded=loaded, taken=[])
    assert isinstance(answers[0], CommandResult) and not answers[0].created and answers[0].id == items[0].log_id
    assert answers[0].position == first.position
    assert isinstance(answers[1], CommandResult) and answers[1].created
    assert care_app.load(VisitTask, tasks[1].id).log_id == items[1].log_id
    assert len(list(care_app.events.get(items[0].log_id))) == 1


def test_a_backlog_that_loses_a_race_is_recorded_item_by_item(
    care_app: CareApplication, org: Org, meta: CommandMeta
) -> None:
    helper = new_helper(care_app, org, meta)
    elders = [new_elder(care_app, org, meta) for _ in range(2)]
    pairing = form(care_app, PairingShape.ONE_TO_MANY, [helper], elders, meta).id
    now = datetime.now(UTC)
    created = care_app.schedule_visits(pairing, meta).created
    tasks = sorted(
        (t for t in care_app.load_many(VisitTask, created).values() if t.opens_at <= now),
        key=lambda t: str(t.person_id),
    )
    when = now - timedelta(minutes=5)
    items = [_log(uuid4(), helper, when, task_id=t.id) for t in tasks]
    other = _log(uuid4(), helper, when, task_id=tasks[0].id)
    read = care_app.read_for_logs

    def meanwhile(*args: Any, **kwargs: Any) -> Any:
        got = read(*args, **kwargs)  # the batch has read the tasks; another device completes one of them now
        del care_app.read_for_logs  # that device's batch reads as usual
        done = threading.Thread(target=care_app.record_visits, args=([other],), kwargs={"acting_helper_id": helper})
        done.start()
        done.join()
        return got

    care_app.read_for_logs = meanwhile  # type: ignore[method-assign]
    answers = care_app.record_visits(items, acting_helper_id=helper)
    assert type(answers[0]).__name__ == "TaskClosedError" and answers[0].extra["log_id"] == str(other.log_id)
    assert isinstance(answers[1], CommandResult) and answers[1].created
    assert care_app.load(VisitTask, tasks[0].id).log_id == other.log_id
    assert not list(care_app.events.get(items[0].log_id))
