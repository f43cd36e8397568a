"""The timeline's rebuild reads the log's states straight into its rows (``replay_reader``: code
compiled per event class, no event object): what it makes must be what the events the mapper
gives make (``timeline.replayed``), for every event of a history with sealed data, an erasure and
membership changes, by an application that opens sealed data and by one that does not; states
it cannot read as the class declares, and classes that upcast, go through the events; and a
rebuild by the projector's application equals the live view."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsourcing.utils import get_topic

from domain.person import Person
from domain.visit_task import VisitTask
from guanai.bootstrap import Process
from projections import timeline
from projections.batches import EventFilter
from tests.app_support import make_care
from tests.integration.test_rebuild import more_history, snapshot
from tests.integration.test_registry_view import new_meta
from tests.integration.test_supervision import Care, care_in
from workers.projector import Projector

Row = tuple[int, Any, int, str, bytes]


@pytest.fixture
def care(fresh_database_url: str) -> Iterator[Care]:
    with care_in(fresh_database_url) as world:
        yield world


def log_rows(url: str) -> list[Row]:
    """The log as a rebuild reads it, the events the timeline handles only."""
    wanted = EventFilter([timeline.TimelineProjection()])
    with psycopg.connect(url) as conn, conn.cursor(binary=True) as cur:
        rows = cur.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM guanai_events"
            " ORDER BY notification_id"
        ).fetchall()
    return [(p, o, v, t, bytes(s)) for p, o, v, t, s in rows if wanted(t)]


def by_events(mapper: Any, rows: list[Row]) -> list[Any]:
    """What the replay must give: ``replayed`` of each event the mapper decodes."""
    decode = mapper.rows_decoder(EventFilter([timeline.TimelineProjection()]).fields)
    return [r for r in (timeline.replayed(p, e) for p, e in decode(rows)) if r is not None]


def compiled(mapper: Any, rows: list[Row]) -> list[Any]:
    decode = mapper.rows_decoder(EventFilter([timeline.TimelineProjection()]).fields)
    read = timeline.TimelineProjection().replay_reader(mapper, decode)
    as_read = [(p, o.bytes, v, t, s) for p, o, v, t, s in rows]  # the originator's id as its bytes
    return read(as_read[:25]) + read(as_read[25:])  # what it compiled for a topic kept


def test_the_compiled_replay_gives_what_the_events_give(care: Care, tmp_path: Path) -> None:
    more_history(care)
    app = care.world.app
    app.erase_person(care.world.children[0], "监护人申请删除", new_meta())
    rows = log_rows(care.world.url)
    topics = {r[3] for r in rows}
    assert any(b'"_sealed"' in r[4] for r in rows) and get_topic(Person.Registered) in topics
    closed_app = make_care(care.world.url, pool_size=2, env={"GUANAI_DATA_DIR": str(tmp_path)}, kind=Process.PROJECTOR)
    try:
        for mapper in (app.mapper, closed_app.mapper):
            made = compiled(mapper, rows)
            assert made == by_events(mapper, rows)
            assert {r[0] for r in made} == {
                timeline._OWN,
                timeline._CREATED,
                timeline._LOOKED_UP,
                timeline._ADDED,
                timeline._REMOVED,
            }
            # Not vacuous: every topic of the history is compiled, but the registrations (a personal
            # field, the guardian, read) for an application that opens sealed data.
            for topic in topics:
                made_by = timeline._compile(topic, mapper.fields_reader)
                assert (made_by is None) == (topic == get_topic(Person.Registered) and mapper is app.mapper), topic
        # A guardian sealed reads as erased (named) for the projector's application.
        registrations = [r for r in rows if r[3] == get_topic(Person.Registered)]
        guardians = [b'"has_guardian":true' in tail for *_, tail in compiled(closed_app.mapper, registrations)]
        assert True in guardians and False in guardians
    finally:
        closed_app.close()


def altered(row: Row, change: Any) -> Row:
    state = json.loads(row[4])
    change(state)
    return (*row[:4], json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode())


def test_states_the_compiled_replay_cannot_read_as_declared_go_through_the_events(
    care: Care, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state missing a field (an older shape), a field of another type, a registration whose
    guardian is sealed though the clear state holds none: the replay gives what the events give
    (which is not what the compiled code would give without the events' way)."""
    rows = log_rows(care.world.url)
    scheduled = next(r for r in rows if r[3] == get_topic(VisitTask.Scheduled))
    registration = next(r for r in rows if r[3] == get_topic(Person.Registered) and b'"guardian":null' in r[4])
    odd = [
        altered(scheduled, lambda s: s.pop("group_id")),
        altered(scheduled, lambda s: s.update(cadence=5)),
        altered(scheduled, lambda s: s.update(opens_at=None)),
        altered(registration, lambda s: s.pop("guardian")),  # sealed: the erased placeholder, named
    ]
    closed_app = make_care(care.world.url, pool_size=2, env={"GUANAI_DATA_DIR": str(tmp_path)}, kind=Process.PROJECTOR)
    try:
        mapper = closed_app.mapper
        made, expected = compiled(mapper, [*rows[:5], *odd]), by_events(mapper, [*rows[:5], *odd])
        assert made == expected
        summaries = [r[3] for r in made[-4:]]
        assert b'"group_id"' not in summaries[0] and b'"cadence":5' in summaries[1]
        assert b'"opens_at":null' in summaries[2] and b'"has_guardian":true' in summaries[3]
        # A class that upcasts is made as an event (each state upcast), never compiled.
        claimed = [r for r in rows if r[3] == get_topic(VisitTask.Claimed)]
        assert claimed
        monkeypatch.setattr(VisitTask.Claimed, "class_version", 2, raising=False)
        monkeypatch.setattr(
            VisitTask.Claimed, "upcast_v1_v2", staticmethod(lambda state: state.update(actor_role="upcast")),
            raising=False,
        )  # fmt: skip
        assert timeline._compile(get_topic(VisitTask.Claimed), mapper.fields_reader) is None
        made = compiled(mapper, claimed)
        assert made == by_events(mapper, claimed) and all(b"upcast" in r[3] for r in made)
    finally:
        closed_app.close()


def test_a_rebuild_by_the_projectors_application_equals_the_live_view(care: Care, tmp_path: Path) -> None:
    more_history(care)
    app = care.world.app
    app.erase_person(care.world.children[0], "监护人申请删除", new_meta())
    with Projector(care.world.url, app=app) as live:
        live.catch_up()
    expected = snapshot(care.world.url, timeline.TABLES)
    assert all(expected.values())
    closed_app = make_care(care.world.url, pool_size=2, env={"GUANAI_DATA_DIR": str(tmp_path)}, kind=Process.PROJECTOR)
    try:
        with Projector(care.world.url, app=closed_app) as closed:
            closed.runner.rebuild("timeline", batch_size=9)
        assert snapshot(care.world.url, timeline.TABLES) == expected
    finally:
        closed_app.close()
