"""Batched view writes against a real PostgreSQL: a view written a batch at a time (one statement
per event class and round, ``projections/batches.py``; the timeline's entries by one COPY)
holds exactly the rows of the same view written one event at a time by plain statements, for
batches of any size; a batch that fails half-way leaves every view and its tracking row as they
were, and the retry applies nothing twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from domain.emergency import EmergencyReport, Outcome
from domain.group import VolunteerGroup
from domain.pairing import Pairing
from domain.person import Person
from domain.schedule import Period as Window
from domain.visit_log import ServiceCategory, ServiceItem, VisitLog
from domain.visit_task import VisitTask
from domain.vocabulary import Cadence, PairingShape, Sex, VisitMode
from projections import accounts, emergency_queue, registry, supervision, supervision_replay, timeline, visit_tasks
from projections.accounts import AccountsProjection
from projections.batches import apply_events, decode_all
from projections.emergency_queue import EmergencyQueueProjection
from projections.registry import RegistryProjection
from projections.runner import ProjectionRunner
from projections.supervision import SupervisionProjection
from projections.timeline import TimelineProjection
from projections.visit_tasks import VisitTaskProjection
from tests.integration.test_rebuild import more_history
from tests.integration.test_registry_view import new_meta, wait_until
from tests.integration.test_supervision import Care, care_in, meta_at

BATCHED = {
    "registry": (RegistryProjection, registry.TABLES),
    "timeline": (TimelineProjection, timeline.TABLES),
    "visit_tasks": (VisitTaskProjection, visit_tasks.TABLES),
    "emergency_queue": (EmergencyQueueProjection, emergency_queue.TABLES),
}


@pytest.fixture
def care(fresh_database_url: str) -> Iterator[Care]:
    with care_in(fresh_database_url) as world:
        more_history(world)
        yield world


def logged(care: Care) -> list[tuple[int, Any]]:
    """Every event of the log with its position."""
    stored = care.world.app.recorder.select_notifications(start=0, limit=1_000_000, inclusive_of_start=False)
    return list(zip((n.id for n in stored), decode_all(care.world.app.mapper, stored), strict=True))


def written(
    url: str, schema: str, projection: Any, tables: tuple[str, ...], write: Callable[[psycopg.Connection[Any]], None]
) -> dict[str, list[dict[str, Any]]]:
    """The rows of ``projection``'s tables, made in a schema of their own by ``write``."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema)))
        with conn.transaction(), conn.cursor() as cur:
            projection.create_tables(cur)
        write(conn)
        return snapshot(conn, schema, tables)


def snapshot(conn: psycopg.Connection[Any], schema: str, tables: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    rows = {}
    with conn.cursor(row_factory=dict_row) as cur:
        for table in tables:
            # Ordered by every column: no two rows of a view are equal in all of them.
            count = cur.execute(
                "SELECT count(*) AS n FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
                (schema, table),
            ).fetchone()
            assert count is not None
            order = sql.SQL(", ").join(sql.Literal(i + 1) for i in range(count["n"]))
            query = sql.SQL("SELECT * FROM {} ORDER BY {}").format(sql.Identifier(schema, table), order)
            rows[table] = cur.execute(query).fetchall()
    return rows


def one_at_a_time(projection: Any, events: list[tuple[int, Any]]) -> Callable[[psycopg.Connection[Any]], None]:
    def write(conn: psycopg.Connection[Any]) -> None:
        for position, event in events:
            with conn.transaction(), conn.cursor() as cur:
                projection.apply(cur, event, position)

    return write


def in_batches(projection: Any, events: list[tuple[int, Any]], size: int) -> Callable[[psycopg.Connection[Any]], None]:
    def write(conn: psycopg.Connection[Any]) -> None:
        for i in range(0, len(events), size):
            with conn.transaction(), conn.cursor() as cur:
                apply_events(conn, cur, projection, events[i : i + size])

    return write


def replayed_as_rebuild(
    projection: Any, events: list[tuple[int, Any]], size: int, upto: int
) -> Callable[[psycopg.Connection[Any]], None]:
    """The events before ``upto`` as a rebuild's replay writes them (``rebuild_batch`` in batches
    of ``size``, then ``finish_rebuild``), the rest by live batches of 7."""

    def write(conn: psycopg.Connection[Any]) -> None:
        for i in range(0, upto, size):
            with conn.transaction(), conn.cursor() as cur:
                projection.rebuild_batch(cur, events[i : min(i + size, upto)])
        with conn.transaction(), conn.cursor() as cur:
            projection.finish_rebuild(cur)
        in_batches(projection, events[upto:], 7)(conn)

    return write


@pytest.mark.parametrize("name", list(BATCHED))
def test_a_view_written_in_batches_equals_the_view_written_one_event_at_a_time(care: Care, name: str) -> None:
    cls, tables = BATCHED[name]
    url, events = care.world.url, logged(care)
    reference = written(url, "one_at_a_time", cls(), tables, one_at_a_time(cls(), events))
    assert all(reference.values()), "every table of the view has rows"
    for size in (len(events), 7, 1):
        batched = written(url, f"batches_of_{size}", cls(), tables, in_batches(cls(), events, size))
        assert batched == reference, f"batches of {size}"


def test_many_writes_of_one_row_in_a_batch_keep_their_order(care: Care) -> None:
    """A visit task written several times in one batch (scheduled, claimed, completed): the rounds."""
    url, events = care.world.url, logged(care)
    writes_per_task: dict[Any, int] = {}
    for _position, event in events:
        if type(event) in visit_tasks.STATEMENTS:
            writes_per_task[event.originator_id] = writes_per_task.get(event.originator_id, 0) + 1
    assert max(writes_per_task.values()) >= 3, "some task is written three times or more in the batch"
    reference = written(
        url, "one", VisitTaskProjection(), visit_tasks.TABLES, one_at_a_time(VisitTaskProjection(), events)
    )
    batched = written(
        url, "whole", VisitTaskProjection(), visit_tasks.TABLES, in_batches(VisitTaskProjection(), events, len(events))
    )
    assert batched == reference


def test_the_supervision_view_written_in_batches_equals_its_plain_statements_one_event_at_a_time(care: Care) -> None:
    """Its one-row statements batched per kind and round, a pairing's statements in their place
    between them, and the visit counts kept once per batch (``sv_visit_counts``, whose counts at
    zero are deleted in a batch and kept one event at a time: the figures sum them)."""
    url, events = care.world.url, logged(care)
    kinds = {type(event) for _, event in events}
    assert kinds & set(supervision.BATCHED) and kinds - set(supervision.BATCHED) & set(supervision.HANDLERS)
    tables = supervision.TABLES

    def plain(conn: psycopg.Connection[Any]) -> None:
        projection = SupervisionProjection()
        for position, event in events:
            with conn.transaction(), conn.cursor() as cur:
                projection.apply_one(cur, event, position)

    def counted(rows: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
        return {**rows, "sv_visit_counts": [r for r in rows["sv_visit_counts"] if r["n"] != 0]}

    reference = counted(written(url, "sv_one_at_a_time", SupervisionProjection(), tables, plain))
    for table in ("sv_units", "sv_persons", "sv_pairings", "sv_coverage", "sv_helpers", "sv_visits",
                  "sv_visit_counts", "sv_emergencies"):  # fmt: skip
        assert reference[table], f"{table} has rows"
    for size in (len(events), 7, 1):
        projection = SupervisionProjection()
        batched = written(url, f"sv_batches_of_{size}", projection, tables, in_batches(projection, events, size))
        assert all(r["n"] > 0 for r in batched["sv_visit_counts"]), "no count at zero is kept"
        assert counted(batched) == reference, f"batches of {size}"


def test_the_supervision_view_replayed_as_a_rebuild_does_equals_its_statements_one_event_at_a_time(
    care: Care,
) -> None:
    """A rebuild's replay writes the rows only (``rebuild_batch``: a person's visit logs of one
    batch as one write) and makes the counts once at its end (``finish_rebuild``); the events
    recorded meanwhile then move the counts as live batches do."""
    w, minutes = care.world, [25, 45, 15, 35, 55, 5]
    cadre = w.app.load(Pairing, w.pairings["cadre"])
    for i, m in enumerate(minutes):  # elder 0's visits logged out of order, the pairing's cadence changed between
        at = care.now - timedelta(minutes=m)
        visit = VisitLog.record(
            id=uuid4(), pairing_id=cadre.id, person_id=w.elders[0], org_path=w.app.load(Person, w.elders[0]).org_path,
            meta=meta_at(at), task_id=None, mode=VisitMode.HOME_VISIT, helper_ids=[w.helpers[1]], findings={},
            services=[ServiceCategory.DAILY_LIFE_CARE], service_items=[ServiceItem.CLEANING],
        )  # fmt: skip
        w.app.save(visit)
        if i == 2:
            w.app.change_pairing_cadence(cadre.id, Cadence.MONTHLY, VisitMode.HOME_VISIT, new_meta())
    url, events = care.world.url, logged(care)
    tables = supervision.TABLES

    def plain(conn: psycopg.Connection[Any]) -> None:
        projection = SupervisionProjection()
        for position, event in events:
            with conn.transaction(), conn.cursor() as cur:
                projection.apply_one(cur, event, position)

    reference = written(url, "sv_plain", SupervisionProjection(), tables, plain)
    reference["sv_visit_counts"] = [r for r in reference["sv_visit_counts"] if r["n"] != 0]
    for size, upto in ((len(events), len(events)), (7, len(events)), (1, len(events)), (50, len(events) // 2)):
        rebuilt = written(
            url,
            f"sv_replayed_{size}_{upto}",
            SupervisionProjection(),
            tables,
            replayed_as_rebuild(SupervisionProjection(), events, size, upto),
        )
        assert rebuilt["sv_rollup"] and rebuilt["sv_rollup_due"] and rebuilt["sv_visit_counts"]
        assert rebuilt == reference, f"batches of {size}, the rest live after {upto}"


def test_every_batched_supervision_statement_is_valid_sql(fresh_database_url: str) -> None:
    with psycopg.connect(fresh_database_url) as conn, conn.cursor() as cur:
        SupervisionProjection().create_tables(cur)
        assert set(supervision.BATCHED) < set(supervision.HANDLERS)
        for writes in supervision.BATCHED.values():
            for _table, _row, statement in writes:
                cur.execute(statement.many, (statement.rows([]),))
        for formed in supervision._FORMED_MANY:
            cur.execute(formed, ("[]",))


@pytest.mark.parametrize("module", [registry, visit_tasks, emergency_queue, accounts], ids=lambda m: m.__name__)
def test_every_batched_statement_is_valid_sql_for_its_tables(fresh_database_url: str, module: Any) -> None:
    """Including the event classes the scripted county has none of (PostgreSQL plans each)."""
    projection = {
        registry: RegistryProjection,
        visit_tasks: VisitTaskProjection,
        emergency_queue: EmergencyQueueProjection,
        accounts: AccountsProjection,
    }[module]()
    with psycopg.connect(fresh_database_url) as conn, conn.cursor() as cur:
        projection.create_tables(cur)
        assert set(module.BATCHED) == set(module.STATEMENTS)
        for statement in module.BATCHED.values():
            cur.execute(statement.many, (statement.rows([]),))


class FailsHalfWay:
    """The visit task view, failing once after writing part of the batch holding ``position``."""

    def __init__(self, position: int) -> None:
        self.inner = VisitTaskProjection()
        self.name, self.tables, self.schema_version = self.inner.name, self.inner.tables, self.inner.schema_version
        self.position = position
        self.failed = False

    def create_tables(self, cur: psycopg.Cursor[Any]) -> None:
        self.inner.create_tables(cur)

    def reset(self, cur: psycopg.Cursor[Any]) -> None:
        self.inner.reset(cur)

    def handles(self, event_class: type) -> bool:
        return self.inner.handles(event_class)

    def apply(self, cur: psycopg.Cursor[Any], event: Any, position: int) -> None:
        self.inner.apply(cur, event, position)

    def apply_batch(self, cur: psycopg.Cursor[Any], events: list[tuple[int, Any]]) -> None:
        if not self.failed and any(p == self.position for p, _ in events):
            self.failed = True
            self.inner.apply_batch(cur, [(p, e) for p, e in events if p <= self.position])
            raise RuntimeError("the projector died half-way through the batch")
        self.inner.apply_batch(cur, events)


def test_a_batch_failing_half_way_leaves_the_views_and_their_tracking_rows_as_they_were(care: Care) -> None:
    url, app, events = care.world.url, care.world.app, logged(care)
    tasks = [p for p, e in events if type(e) in visit_tasks.STATEMENTS]
    failing = FailsHalfWay(tasks[len(tasks) // 2])
    batch = 25
    runner = ProjectionRunner(app, url, [RegistryProjection(), failing, TimelineProjection()], batch_size=batch)
    with runner:
        with pytest.raises(RuntimeError, match="half-way"):
            runner.catch_up()
        assert failing.failed
        positions = runner.positions()
        done = positions["visit_tasks"]
        assert done < failing.position, "stopped before the failing batch"
        assert positions == dict.fromkeys(positions, done), "the other views' writes of the batch went too"
        before = [(p, e) for p, e in events if p <= done]
        with psycopg.connect(url) as conn:
            for name, projection in (("registry", RegistryProjection), ("visit_tasks", VisitTaskProjection)):
                tables = BATCHED[name][1]
                assert snapshot(conn, "public", tables) == written(
                    url, f"until_{name}", projection(), tables, one_at_a_time(projection(), before)
                )
        runner.catch_up()  # the retry
        assert runner.positions() == dict.fromkeys(positions, events[-1][0])
        with psycopg.connect(url) as conn:
            for name, (projection, tables) in BATCHED.items():
                if name in runner.positions():
                    assert snapshot(conn, "public", tables) == written(
                        url, f"all_{name}", projection(), tables, one_at_a_time(projection(), events)
                    ), f"{name}: nothing applied twice, nothing lost"


def test_a_runner_that_knew_a_later_position_replays_a_view_another_process_reset(care: Care) -> None:
    url, app, events = care.world.url, care.world.app, logged(care)
    with (
        ProjectionRunner(app, url, [RegistryProjection()]) as running,
        ProjectionRunner(app, url, [RegistryProjection()]) as other,
    ):
        running.catch_up()
        assert running.positions() == {"registry": events[-1][0]}
        with psycopg.connect(url) as conn:
            full = snapshot(conn, "public", registry.TABLES)
        other.reset("registry")
        running.catch_up()  # nothing new in the log past what it knew: it looks again
        assert running.positions() == {"registry": events[-1][0]}
        with psycopg.connect(url) as conn:
            assert snapshot(conn, "public", registry.TABLES) == full


def test_a_wait_in_another_process_wakes_when_a_batch_commits_not_at_its_next_poll(
    care: Care, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's NOTIFY wakes a waiter that applies nothing itself (an API process): with its
    polls of the tracking rows 30 s apart, the wait still ends as soon as the batch commits."""
    from projections import runner as runner_module

    monkeypatch.setattr(runner_module, "POLL_FIRST", 30.0)
    url, app, events = care.world.url, care.world.app, logged(care)
    with (
        ProjectionRunner(app, url, [RegistryProjection()]) as applying,
        ProjectionRunner(app, url, [RegistryProjection()]) as waiting,
    ):
        waiting._start_watching()
        assert waiting._watching.wait(10), "the waiter listens"
        outcome: list[tuple[bool, float]] = []

        def wait() -> None:
            t0 = time.monotonic()
            outcome.append((waiting.wait_for(events[-1][0], timeout=60), time.monotonic() - t0))

        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(0.2)  # the waiter has looked once and sleeps until its next poll (30 s)
        assert not outcome
        applying.catch_up()
        thread.join(20)
        assert outcome and outcome[0][0], "the wait ended with the views at the position"
        assert outcome[0][1] < 15, f"woken by the commit, not by a poll: {outcome[0][1]:.1f} s"
    assert waiting._watcher is None, "close() stops the watcher"


def test_while_commands_keep_coming_batches_start_at_most_every_batch_interval(care: Care) -> None:
    """The live runner serves a wake-up after a quiet spell at once; commands recorded sooner
    than ``batch_interval`` after a batch began wait for the rest of it and come in one batch."""
    w, interval = care.world, 1.0
    with ProjectionRunner(w.app, w.url, [RegistryProjection()], batch_interval=interval) as runner:
        began: list[float] = []  # when each batch that read something began (``run`` notes it)
        process = runner._process_batch

        def noted() -> tuple[int, bool]:
            result = process()
            if result[0]:
                began.append(runner._last_batch)
            return result

        runner._process_batch = noted  # type: ignore[method-assign]

        def applied(position: int) -> bool:
            return runner.positions()["registry"] >= position

        stop = threading.Event()
        thread = threading.Thread(target=runner.run, args=(stop,))
        thread.start()
        try:
            assert wait_until(lambda: applied(w.app.recorder.max_notification_id() or 0))
            time.sleep(interval * 1.3)  # a quiet spell
            before = len(began)
            first = w.app.rename_org_unit(w.v2, "南昏村0", new_meta()).position
            recorded = time.monotonic()
            assert wait_until(lambda: applied(first))
            assert time.monotonic() - recorded < interval * 0.8, "served at once, not an interval later"
            assert len(began) == before + 1
            more = [w.app.rename_org_unit(w.v2, f"南昏村{n}", new_meta()).position for n in (1, 2, 3)]
            assert time.monotonic() < began[-1] + interval, "recorded within the interval (the test's premise)"
            assert wait_until(lambda: applied(more[-1]))
            assert len(began) == before + 2, "the three commands came in one batch"
            assert began[-1] >= began[-2] + interval, "the batch began an interval after the one before"
        finally:
            stop.set()
            thread.join(10)
        assert not thread.is_alive()


# By view: its projection, its tables, the event classes it writes on, where its replay's window is.
REPLAYED: dict[str, tuple[type, tuple[str, ...], Any, Any]] = {
    "registry": (RegistryProjection, registry.TABLES, registry.STATEMENTS, None),
    "visit_tasks": (VisitTaskProjection, visit_tasks.TABLES, visit_tasks.STATEMENTS, visit_tasks),
    "supervision": (SupervisionProjection, supervision.TABLES, supervision.HANDLERS, supervision_replay),
}


def every_other_change(care: Care) -> None:
    """The changes of the registry, the task board and supervision that ``more_history`` and the
    scripted county make none of: a task claimed by a group as a team, assigned to a member,
    released, claimed again and its claim expired; a resolved report reopened, resolved, closed."""
    w, app, m = care.world, care.world.app, new_meta
    mother, group = app.load(Pairing, w.pairings["mother"]), app.load(VolunteerGroup, w.group)
    now, child = care.now, app.load(Person, w.children[0])
    task = VisitTask.schedule(
        id=uuid4(), pairing=mother, person_id=child.id, org_path=child.org_path, meta=meta_at(now, "scheduler"),
        period=Window(Cadence.WEEKLY, care.this_week.start, care.this_week.start + timedelta(days=7)),
    )  # fmt: skip
    soon = now + timedelta(minutes=5)
    task.claim(pairing=mother, helper_id=None, group=group, now=now, expires_at=soon, meta=meta_at(now))
    task.assign(helper_id=w.helpers[0], group=group, now=now, expires_at=soon, meta=meta_at(now))
    task.release(by_helper_id=None, reason="on leave", meta=meta_at(now))
    task.claim(pairing=mother, helper_id=w.helpers[0], group=None, now=now, expires_at=soon, meta=meta_at(now))
    task.expire_claim(soon + timedelta(minutes=1), meta_at(soon + timedelta(minutes=1), "scheduler"))
    app.save(task)
    report = app.load(EmergencyReport, care.reports["R1"])
    report.reopen("not well again", meta_at(now, "resp-t", "township_responder"))
    report.resolve(Outcome.HOSPITALISED, "back to the hospital", meta_at(now, "resp-t", "township_responder"))
    report.close("followed up", meta_at(now, "resp-t", "township_responder"))
    app.save(report)
    app.rename_org_unit(w.county, "元江哈尼族彝族傣族自治县", m())
    app.add_group_member(w.group, w.helpers[2], m())
    app.remove_group_member(w.group, w.helpers[2], m())
    app.disband_group(w.group, "merged", m())
    team = uuid4()
    app.form_pairing(
        id=team, shape=PairingShape.MANY_TO_ONE, helper_ids=[w.helpers[3], w.helpers[4]], person_ids=[w.elders[2]],
        cadence=Cadence.WEEKLY, visit_mode=VisitMode.HOME_VISIT, starts_on=date(2025, 6, 1), meta=m(),
    )  # fmt: skip
    app.add_pairing_helper(team, w.helpers[2], m())
    app.remove_pairing_helper(team, w.helpers[2], m())
    app.end_pairing(team, "the doctor moved away", date.today(), m())
    app.deactivate_helper(w.helpers[4], "moved away", m())
    app.assign_guardian(w.children[0], {"name": "李四", "phone": "13800000000", "relation": "grandparent"}, m())
    app.person_returns(w.elders[3], m())
    person = app.load(Person, w.elders[2])
    app.save(*[person] if person.correct_registration(
        name="王五", sex=Sex.FEMALE, birth_date=date(1940, 2, 3), household=person.household, meta=m()
    ) else [])  # fmt: skip
    app.erase_person(w.elders[1], "asked to be forgotten", m())


@pytest.mark.parametrize(
    ("name", "window", "due_by_postgresql"),
    [
        ("registry", None, False),
        ("visit_tasks", 0, False),
        ("visit_tasks", 4, False),
        ("supervision", 0, False),
        ("supervision", 4, False),
        ("supervision", 4, True),
    ],
)
def test_a_view_replayed_in_memory_as_a_rebuild_does_equals_its_statements_one_event_at_a_time(
    care: Care, name: str, window: int | None, due_by_postgresql: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild's replay folds each event into its row in memory (``rebuild_batch``, the view's
    ``REPLAY``) and writes the rows by binary COPY (the registry's at the end, ``finish_rebuild``;
    the task board's once no event touched them for ``REPLAY_WINDOW`` batches, the later events
    of a task written by its statements); the events recorded meanwhile then go through the live
    batches' statements. It fails when a fold does not do what its statement does, for every
    event class of the view, and (supervision) whether the people's due time is made in Python
    or by PostgreSQL."""
    cls, tables, statements, windowed = REPLAYED[name]
    if window is not None:
        monkeypatch.setattr(windowed, "REPLAY_WINDOW", window)
    if due_by_postgresql:  # as in a session whose time zone is not UTC: people's due time made by PostgreSQL
        monkeypatch.setattr(supervision_replay, "UTC_ZONES", frozenset())
    every_other_change(care)
    url, events = care.world.url, logged(care)
    assert {type(e) for _, e in events} >= set(statements), "every event class of the view is replayed"

    reference = written(url, f"{name}_plain", cls(), tables, one_at_a_time(cls(), events))
    assert all(reference.values()), "every table of the view has rows"
    for size, upto in ((len(events), len(events)), (7, len(events)), (1, len(events)), (50, len(events) // 2)):
        rebuilt = written(
            url, f"{name}_replayed_{size}_{upto}", cls(), tables, replayed_as_rebuild(cls(), events, size, upto)
        )
        assert rebuilt == reference, f"batches of {size}, the rest live after {upto}"
