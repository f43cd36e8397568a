"""What a device's backlog (POST /visit-logs/batch, api/visit_batches.py) reads from the event
store: the same few queries for the whole batch however many items it holds, new or sent again,
and none per item. A read per item (each check loading its log's id on its own) made a batch of
500 sent again take twice as long as before the checks loaded whole aggregates."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import msgspec
import pytest
from eventsourcing.utils import get_topic

from api.access import Access
from api.access.checks import AccessViews
from api.auth import Actor, ActorRole
from api.visit_batches import VisitLogBatchController, VisitLogBatchIn, VisitLogBatchOut
from application.care import CareApplication
from domain.base import CommandMeta
from domain.person import Person
from domain.visit_task import VisitTask
from domain.vocabulary import OrgLevel, PairingShape
from guanai import bootstrap
from tests.integration.test_application import Org, form, new_elder, new_helper, org  # noqa: F401 - fixtures


@pytest.fixture
def reads(care_app: CareApplication) -> Iterator[list[str]]:
    """Every read of the store's events from now on, by the call that made it."""
    made: list[str] = []
    store, repository, events = care_app.store, care_app.repository, care_app.events
    originals = [(store, "events_of"), (store, "first_events"), (repository, "get"), (events, "get")]

    def counted(name: str, read: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            made.append(name)
            return read(*args, **kwargs)

        return call

    saved = {(id(o), n): getattr(o, n) for o, n in originals}
    for owner, name in originals:
        # by the part's role, not its class (the application's repository is its own subclass)
        part = "repository" if owner is repository else type(owner).__name__
        setattr(owner, name, counted(f"{part}.{name}", getattr(owner, name)))
    try:
        yield made
    finally:
        for owner, name in originals:
            setattr(owner, name, saved[(id(owner), name)])


def backlog(care_app: CareApplication, helper: UUID, tasks: list[VisitTask]) -> VisitLogBatchIn:
    when = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    items = [
        {"id": str(uuid4()), "occurred_at": when, "mode": "home_visit", "task_id": str(t.id), "helper_ids": [str(helper)],
         "findings": {"mood": "good", "notes": "腿脚好多了"}}
        for t in tasks
    ]  # fmt: skip
    return msgspec.convert({"items": items}, VisitLogBatchIn)


def send(care_app: CareApplication, helper: UUID, org: Org, data: VisitLogBatchIn) -> VisitLogBatchOut:
    """The route's handler as a volunteer's request runs it (the guard's Access, the command's meta)."""
    actor = Actor(subject=str(helper), role=ActorRole.VOLUNTEER, org_unit_id=org.village, token_id=f"t-{uuid4()}")
    views = AccessViews(registry=None, reports=None, imports=None)  # type: ignore[arg-type] # a volunteer's logs ask none

    def meta_for(occurred_at: datetime | None) -> CommandMeta:
        return CommandMeta(
            actor_id=actor.subject, actor_role=actor.role.value, correlation_id=f"req-{uuid4()}",
            occurred_at=occurred_at or datetime.now(UTC),
        )  # fmt: skip

    handler: Any = VisitLogBatchController.record_many.fn
    out: VisitLogBatchOut = handler(None, actor, Access(care_app, views, actor), care_app, meta_for, data)
    return out


@pytest.fixture
def tasks(care_app: CareApplication, org: Org, meta: CommandMeta) -> tuple[UUID, list[VisitTask]]:
    helper = new_helper(care_app, org, meta, capacity=10)
    elders = [new_elder(care_app, org, meta) for _ in range(8)]
    pairing = form(care_app, PairingShape.ONE_TO_MANY, [helper], elders, meta).id
    now = datetime.now(UTC)
    created = care_app.schedule_visits(pairing, meta).created
    due = [t for t in care_app.load_many(VisitTask, created).values() if t.opens_at <= now]
    assert len(due) == 8
    return helper, due


def test_a_backlog_reads_the_same_few_times_whatever_its_size(
    care_app: CareApplication, org: Org, tasks: tuple[UUID, list[VisitTask]], reads: list[str]
) -> None:
    helper, due = tasks
    small, large = backlog(care_app, helper, due[:2]), backlog(care_app, helper, due[2:])
    answer = send(care_app, helper, org, small)
    assert [i.status for i in answer.items] == [201] * 2
    for_two = list(reads)
    reads.clear()
    answer = send(care_app, helper, org, large)
    assert [i.status for i in answer.items] == [201] * 6
    assert reads == for_two
    # Everything named, the pairing and persons, the group: nothing read per item or by first events.
    assert reads.count("PostgresEventStore.events_of") == len(reads) <= 3, reads
    assert care_app.load(VisitTask, due[7].id).log_id == large.items[5].id


def test_a_backlog_sent_again_reads_the_same_few_times_whatever_its_size(
    care_app: CareApplication, org: Org, tasks: tuple[UUID, list[VisitTask]], reads: list[str]
) -> None:
    helper, due = tasks
    small, large = backlog(care_app, helper, due[:2]), backlog(care_app, helper, due[2:])
    first = [send(care_app, helper, org, data) for data in (small, large)]
    before = care_app.recorder.max_notification_id()
    reads.clear()
    again = send(care_app, helper, org, small)
    for_two = list(reads)
    reads.clear()
    again_large = send(care_app, helper, org, large)
    assert reads == for_two and len(reads) <= 4, reads  # the logs and tasks, pairings, groups; completions
    assert [i.status for i in again.items + again_large.items] == [200] * 8
    assert [i.body for i in again.items + again_large.items] == [i.body for f in first for i in f.items]
    assert care_app.recorder.max_notification_id() == before


def test_a_backlog_refuses_the_visit_of_an_erased_person_without_reading_the_others(
    care_app: CareApplication, org: Org, meta: CommandMeta, tasks: tuple[UUID, list[VisitTask]], reads: list[str]
) -> None:
    """Deciding asks the store which of the tasks' persons are registered and not erased (their
    events' topics): the erased one is loaded and refused as the one-log route refuses it, the
    others are neither loaded nor opened."""
    helper, due = tasks
    care_app.erase_person(due[1].person_id, "家属申请删除", meta)
    reads.clear()
    answer = send(care_app, helper, org, backlog(care_app, helper, due[:3]))
    assert [i.status for i in answer.items] == [201, 409, 201], answer
    problem = answer.items[1].problem or {}
    assert problem["type"] == "/problems/erased" and problem["errors"][0]["field"] == "items[1].person_id", problem
    assert reads.count("repository.get") == 1, reads  # the erased person alone
    assert care_app.load(VisitTask, due[1].id).status == "scheduled"


def units(app: CareApplication, meta: CommandMeta) -> Org:
    prefix = f"{uuid4().int % 10**6:06d}"
    county = app.register_org_unit(
        code=f"{prefix}000000", name="元江县", level=OrgLevel.COUNTY, parent_id=None, meta=meta
    )
    township = app.register_org_unit(
        code=f"{prefix}101000", name="澧江街道", level=OrgLevel.TOWNSHIP, parent_id=county.id, meta=meta
    )
    village = app.register_org_unit(
        code=f"{prefix}101201", name="红河村", level=OrgLevel.VILLAGE, parent_id=township.id, meta=meta
    )
    return Org(county.id, township.id, village.id)


@pytest.mark.parametrize("kind", ["postgres", "memory"])
def test_the_store_names_the_streams_begun_by_one_topic_without_another(
    care_app: CareApplication, meta: CommandMeta, kind: str
) -> None:
    app = care_app if kind == "postgres" else bootstrap.memory_application()
    try:
        org = units(app, meta)
        helper = new_helper(app, org, meta)
        kept, erased = new_elder(app, org, meta), new_elder(app, org, meta)
        app.erase_person(erased, "家属申请删除", meta)
        registered, gone = get_topic(Person.Registered), get_topic(Person.Erased)
        assert app.store.started_without([kept, erased, helper, uuid4(), kept], registered, gone) == {kept}
        assert app.store.started_without([], registered, gone) == set()
    finally:
        if app is not care_app:
            app.close()


def test_the_stores_lists_of_ids_go_in_binary_and_take_ids_as_strings_too(
    care_app: CareApplication, meta: CommandMeta
) -> None:
    """The store's reads by many ids send the list in binary, cast to the events' id type: the
    same rows for ids given as UUIDs or as their text (as the text lists took them before)."""
    org = units(care_app, meta)
    kept, erased = new_elder(care_app, org, meta), new_elder(care_app, org, meta)
    care_app.erase_person(erased, "家属申请删除", meta)
    store = care_app.store
    by_uuid = store.events_of([kept, erased])
    assert len(by_uuid) >= 3 and {e.originator_id for e in by_uuid} == {kept, erased}
    by_text: Any = [str(kept), str(erased)]
    assert store.events_of(by_text) == by_uuid
    assert [e.originator_id for e in store.first_events(by_text)] in ([kept, erased], [erased, kept])
    registered, gone = get_topic(Person.Registered), get_topic(Person.Erased)
    assert store.started_without(by_text, registered, gone) == {kept}
    keys = [(e.originator_id, e.originator_version) for e in by_uuid]
    positions = store.positions(keys)
    assert sorted(positions) == sorted(keys) and len(set(positions.values())) == len(keys)
    text_keys: Any = [(str(i), v) for i, v in keys]
    assert store.positions(text_keys) == positions
