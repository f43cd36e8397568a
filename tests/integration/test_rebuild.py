"""Rebuilding views against a real PostgreSQL: a rebuild gives exactly the rows the incremental
view has; the old view keeps serving (and keeps up) while a rebuild runs; a killed projector
resumes without applying anything twice; one rebuild of a view at a time; the CLI command.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from psycopg.rows import dict_row

from domain.base import ERASED
from domain.person import Person
from domain.vocabulary import Cadence, PersonKind, RiskTag, Sex, VisitMode
from guanai import bootstrap
from guanai.bootstrap import Process
from guanai.cli.projections import cmd_projections
from infrastructure.personal_data import SealError
from infrastructure.settings import load_settings
from projections import registry, supervision, timeline, visit_tasks
from projections.batches import EventFilter
from projections.rebuild import REBUILD_GC_THRESHOLD, REBUILD_LOCK, Progress, RebuildBusyError
from projections.runner import ProjectionRunner
from tests.app_support import make_care
from tests.integration.test_registry_view import AppliedLog, all_positions, applied_positions, new_meta, wait_until
from tests.integration.test_supervision import Care, care_in
from workers.envelope import envelope
from workers.projector import Projector, all_projections

ROOT = Path(__file__).resolve().parents[2]
TABLES = {
    "registry": registry.TABLES,
    "timeline": timeline.TABLES,
    "supervision": supervision.TABLES,
    "visit_tasks": visit_tasks.TABLES,
}


@pytest.fixture
def care(fresh_database_url: str) -> Iterator[Care]:
    with care_in(fresh_database_url) as world:
        yield world


def snapshot(url: str, tables: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    # The first two columns identify a row in most view tables; the whole row breaks ties (the
    # supervision counts are keyed by unit, fact and day).
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2, {t}::text").fetchall() for t in tables}


def p_tables(projection: Any) -> tuple[str, ...]:
    """A projection's tables, by its module's TABLES."""
    return tuple(__import__(type(projection).__module__, fromlist=["TABLES"]).TABLES)


def views(url: str) -> dict[str, list[dict[str, Any]]]:
    return snapshot(url, tuple(t for tables in TABLES.values() for t in tables))


def more_history(care: Care) -> int:
    """Changes of every kind after the scripted county; returns the last position."""
    w, app, m = care.world, care.world.app, new_meta
    app.add_pairing_person(w.pairings["supervisor"], w.elders[0], m())  # of the supervisor's township
    app.remove_pairing_person(w.pairings["supervisor"], w.children[1], "moved to the county town", m())
    app.change_pairing_cadence(w.pairings["mother"], Cadence.MONTHLY, VisitMode.PHONE_VIDEO, m())
    app.person_leaves_programme(w.elders[3], "moved away", m())
    app.change_helper_capacity(w.helpers[1], 2, m())
    app.end_pairing(w.pairings["four_in_one"], "doctor moved away", date.today(), m())
    app.sign_care_agreement(w.children[1], date(2025, 3, 1), m())
    app.add_risk_tag(w.children[1], RiskTag.DE_FACTO_UNSUPPORTED, m())
    return app.remove_risk_tag(w.elders[0], RiskTag.LIVING_ALONE, m()).position


@pytest.mark.parametrize("name", ["registry", "timeline", "supervision", "visit_tasks"])
def test_a_rebuild_gives_exactly_the_rows_of_the_incremental_view(care: Care, name: str) -> None:
    w = care.world
    with Projector(w.url, app=w.app, batch_size=3) as projector:
        projector.start()  # applied live, in small batches, while the commands run
        last = more_history(care)
        assert projector.wait_for(last, timeout=15.0)
        assert projector.stop(timeout=10.0)
        incremental = snapshot(w.url, TABLES[name])
        assert all(incremental.values()), "every table of the view has rows"
        seen: list[Progress] = []
        read = projector.runner.rebuild(name, batch_size=7, progress=seen.append)
        assert read == len(all_positions(w.url))
        assert snapshot(w.url, TABLES[name]) == incremental
        assert projector.position(name) == last
    assert [p.done for p in seen] == sorted(p.done for p in seen) and seen[-1].done == read
    assert seen[-1].total == read and seen[-1].rate > 0 and seen[-1].eta == 0
    with psycopg.connect(w.url) as conn:
        schemas = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'rebuild_%'").fetchall()
    assert schemas == [], "the scratch schema is gone"


def test_a_view_of_an_older_shape_is_dropped_and_replayed_when_a_projector_opens(care: Care) -> None:
    w = care.world
    with Projector(w.url, app=w.app) as projector:
        last = more_history(care)
        projector.catch_up()
        current = snapshot(w.url, TABLES["registry"])
    # A database written by an earlier version: names in the view, and the old schema version.
    with psycopg.connect(w.url) as conn:
        conn.execute("ALTER TABLE reg_persons ADD COLUMN name text NOT NULL DEFAULT '李秀英'")
        conn.execute("DELETE FROM reg_helpers")
        conn.execute("UPDATE projection_tracking SET schema_version = 1 WHERE name = 'registry'")
    with Projector(w.url, app=w.app) as projector:
        assert projector.position("registry") == 0  # emptied on open, to be replayed
        assert projector.position("timeline") == last  # views of the current shape are kept
        projector.catch_up()
        assert projector.position("registry") == last
    assert snapshot(w.url, TABLES["registry"]) == current
    with psycopg.connect(w.url) as conn:
        assert conn.execute("SELECT schema_version FROM projection_tracking WHERE name = 'registry'").fetchone()[0] == 2


def test_the_old_view_serves_and_keeps_up_while_a_rebuild_runs(care: Care) -> None:
    w, app = care.world, care.world.app
    newcomer = uuid4()
    during: dict[str, Any] = {}

    def count(table: str) -> int:
        with psycopg.connect(w.url) as conn:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    with Projector(w.url, app=app, batch_size=5) as projector:
        projector.start()
        assert projector.wait_for(w.last_position, timeout=15.0)
        before = count("sv_persons")

        def midway(progress: Progress) -> None:
            if during:
                return
            # Half-way through the rebuild, readers still see the whole old view ...
            during["persons"] = count("sv_persons")
            # ... and a new registration reaches it through the live runner.
            result = app.register_person(
                id=newcomer, kind=PersonKind.ELDER, name="新登记", sex=Sex.MALE, birth_date=date(1950, 1, 1),
                village_id=w.v2, meta=new_meta(),
            )  # fmt: skip
            during["applied"] = projector.wait_for(result.position, timeout=10.0)
            during["after"] = count("sv_persons")
            during["position"] = result.position

        projector.runner.rebuild("supervision", batch_size=10, progress=midway)
        assert during == {"persons": before, "applied": True, "after": before + 1, "position": during["position"]}
        last = more_history(care)
        assert projector.wait_for(last, timeout=15.0)
        assert projector.stop(timeout=10.0)
        live = snapshot(w.url, TABLES["supervision"])
        assert newcomer in {p["id"] for p in live["sv_persons"]}
        # The swapped-in view, kept up by the live runner since, equals a replay from zero.
        projector.runner.reset("supervision")
        projector.catch_up()
        assert snapshot(w.url, TABLES["supervision"]) == live


def test_one_rebuild_of_a_view_at_a_time(care: Care) -> None:
    w = care.world
    with Projector(w.url, app=w.app) as projector:
        projector.catch_up()
        before = snapshot(w.url, TABLES["timeline"])
        with psycopg.connect(w.url, autocommit=True) as other:
            other.execute("SELECT pg_advisory_lock(%s, hashtext('timeline'))", (REBUILD_LOCK,))
            with pytest.raises(RebuildBusyError):
                projector.runner.rebuild("timeline")
            assert projector.runner.rebuild("registry") == len(all_positions(w.url))  # another view may
        assert snapshot(w.url, TABLES["timeline"]) == before


KILLED_PROJECTOR = """
import sys, threading
from projections import all_projections
from guanai import bootstrap
from infrastructure.settings import load_settings
from tests.integration.test_registry_view import AppliedLog

with bootstrap.projector(load_settings(), sys.argv[1], projections=[*all_projections(), AppliedLog(delay=0.03)], batch_size=4) as p:
    p.runner.run(threading.Event())
"""


@pytest.mark.slow
def test_a_killed_projector_resumes_without_counting_anything_twice(care: Care) -> None:
    w = care.world
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_PROJECTOR, w.url], cwd=ROOT, env=env)
    try:
        with Projector(w.url, app=w.app, projections=[*_all(), AppliedLog()]) as observer:
            assert wait_until(lambda: observer.position("applied_log") >= 20, timeout=30.0), "no progress"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            killed_at = observer.runner.positions()
            assert min(killed_at.values()) < w.last_position, "the projector finished before it could be killed"
            observer.catch_up()
            assert applied_positions(w.url) == all_positions(w.url)
            resumed = views(w.url)
            for name in TABLES:
                observer.runner.rebuild(name)
            assert views(w.url) == resumed
            helpers = {h["id"]: h["load"] for h in resumed["sv_helpers"]}
            assert [helpers[h] for h in w.helpers] == [1, 3, 2, 1, 1]
            escalated = {e["id"]: e["escalations"] for e in resumed["sv_emergencies"]}
            assert escalated[care.reports["R2"]] == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _all() -> list[Any]:
    from projections import all_projections

    return all_projections()


def run_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GUANAI_DATABASE_URL": url, "GUANAI_LOG_LEVEL": "warning"}
    return subprocess.run(
        [sys.executable, "-m", "guanai.cli", "projections", *args], check=False, cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_cli_rebuilds_a_view_with_a_progress_bar(care: Care) -> None:
    w = care.world
    with Projector(w.url, app=w.app) as projector:
        projector.catch_up()
        before = snapshot(w.url, TABLES["timeline"])
        done = run_cli(w.url, "rebuild", "timeline")
        assert done.returncode == 0, done.stderr
        events = len(all_positions(w.url))
        assert f"{events:,}/{events:<11,} events" in done.stderr and "ETA" in done.stderr
        assert f"rebuilt from {events:,} events" in done.stderr
        assert snapshot(w.url, TABLES["timeline"]) == before
        wrong = run_cli(w.url, "rebuild", "nonsense")
        assert wrong.returncode == 2 and "timeline" in wrong.stderr


def test_views_built_from_the_fields_each_reads_equal_views_built_from_whole_events(
    care: Care, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each projection names the fields it reads (``fields``): a rebuild decodes only those of
    its own, the live runner those of all of them. Both give the views that whole events give,
    so no projection reads a field it does not name."""
    more_history(care)
    care.world.app.erase_person(care.world.children[0], "监护人申请删除", new_meta())
    everything = tuple(t for p in all_projections() for t in p_tables(p))
    with Projector(care.world.url, app=care.world.app) as projector:
        projector.catch_up()
        live = snapshot(care.world.url, everything)
        for projection in all_projections():
            projector.runner.rebuild(projection.name, batch_size=5)
        assert snapshot(care.world.url, everything) == live
        with monkeypatch.context() as m:
            m.setattr(EventFilter, "fields", lambda self, topic: None)  # every event decoded whole
            for projection in all_projections():
                projector.runner.rebuild(projection.name, batch_size=5)
        assert snapshot(care.world.url, everything) == live


def test_a_rebuild_changes_the_garbage_collector_only_when_asked(care: Care, monkeypatch: pytest.MonkeyPatch) -> None:
    """The collector's threshold is the whole process's: a rebuild run beside an API, a projector
    or workers (an embedded Projector, ``guanai serve``) leaves it as it is; the commands that do
    nothing but rebuild ask for fewer collections during the replay, and it is restored after."""
    w = care.world
    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []

    def note(_: Progress) -> None:
        seen.append(gc.get_threshold())

    with Projector(w.url, app=w.app) as projector:
        projector.catch_up()
        projector.runner.rebuild("registry", batch_size=7, progress=note)
        assert len(seen) > 1 and set(seen) == {before}
        assert projector.rebuild("timeline") > 0 and gc.get_threshold() == before
        seen.clear()
        projector.runner.rebuild("registry", batch_size=7, progress=note, gc_threshold=REBUILD_GC_THRESHOLD)
        assert seen[0] == (REBUILD_GC_THRESHOLD, *before[1:]) and gc.get_threshold() == before
    # The standalone commands ask for it (each runs in a process of its own).
    asked: list[int | None] = []
    real = ProjectionRunner.rebuild

    def spy(self: ProjectionRunner, name: str, **options: Any) -> int:
        asked.append(options.get("gc_threshold"))
        return real(self, name, **options)

    monkeypatch.setattr(ProjectionRunner, "rebuild", spy)
    settings = load_settings({**os.environ, "GUANAI_DATABASE_URL": w.url, "GUANAI_LOG_LEVEL": "warning"})
    assert cmd_projections(settings, argparse.Namespace(name="registry")) == 0
    assert asked == [REBUILD_GC_THRESHOLD]


def test_views_built_without_personal_data_equal_views_built_with_it(care: Care, tmp_path: Path) -> None:
    """The projector (and the relay) open no personal data and hold no master key: every view,
    built by an application that reads sealed fields as erased, is row for row the view built by
    one that opens them, erasures included; and such an application records no personal data."""
    more_history(care)
    app = care.world.app
    app.erase_person(care.world.children[0], "监护人申请删除", new_meta())
    everything = tuple(t for p in all_projections() for t in p_tables(p))
    with Projector(care.world.url, app=app) as opening:
        opening.catch_up()
        with_keys = snapshot(care.world.url, everything)
        for projection in all_projections():
            opening.runner.reset(projection.name)
    # No master key configured and an empty data directory: one would be generated there if used.
    closed_app = make_care(care.world.url, pool_size=2, env={"GUANAI_DATA_DIR": str(tmp_path)}, kind=Process.PROJECTOR)
    try:
        with Projector(care.world.url, app=closed_app) as closed:
            assert closed.catch_up() > 0
        assert snapshot(care.world.url, everything) == with_keys
        # What the relay publishes does not depend on the keys either.
        stored = app.recorder.select_notifications(start=1, limit=10_000)
        closed_events, open_events = closed_app.mapper.to_domain_events(stored), app.mapper.to_domain_events(stored)
        assert [envelope(e, n.id) for e, n in zip(closed_events, stored, strict=True)] == [
            envelope(e, n.id) for e, n in zip(open_events, stored, strict=True)
        ]
        person = closed_app.load(Person, care.world.elders[0])
        assert person.name == ERASED and person.org_path == app.load(Person, care.world.elders[0]).org_path
        with pytest.raises(SealError, match="holds no personal data keys"):
            closed_app.register_person(
                id=uuid4(), kind=PersonKind.ELDER, name="李秀英", sex=Sex.FEMALE, birth_date=date(1941, 5, 6),
                village_id=person.village_id, meta=new_meta(),
            )  # fmt: skip
    finally:
        closed_app.close()
    assert not (tmp_path / "master-key").exists(), "the closed application loaded a master key"
    # The default projector of the CLI and the workers is the closed one.
    with bootstrap.projector(load_settings(), care.world.url) as default:
        assert default.runner.app.store.opens is False


def test_the_rebuild_decodes_plain_rows_into_the_events_the_mapper_gives(care: Care, tmp_path: Path) -> None:
    """A rebuild decodes the log's rows as it reads them (``rows_decoder``: no StoredEvent per
    row, what it knows of a topic kept across batches): the same events, field for field, as
    ``to_domain_events`` with the same fields, for each view's fields and whole, by an
    application that opens sealed data and by one that reads it as erased (an erasure included)."""
    more_history(care)
    app = care.world.app
    app.erase_person(care.world.children[0], "监护人申请删除", new_meta())
    with psycopg.connect(care.world.url) as conn, conn.cursor(binary=True) as cur:
        rows = cur.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM guanai_events"
            " ORDER BY notification_id"
        ).fetchall()
    stored = app.recorder.select_notifications(start=1, limit=len(rows) + 1)
    assert [n.id for n in stored] == [r[0] for r in rows] and any(b'"_sealed"' in r[4] for r in rows)
    closed_app = make_care(care.world.url, pool_size=2, env={"GUANAI_DATA_DIR": str(tmp_path)}, kind=Process.PROJECTOR)
    try:
        for mapper in (app.mapper, closed_app.mapper):
            filters = [EventFilter([p]).fields for p in all_projections()]
            for fields in [*filters, lambda topic: None]:
                decode = mapper.rows_decoder(fields)
                by_rows = decode(rows[:40]) + decode(rows[40:])  # what it learnt of a topic kept
                expected = mapper.to_domain_events(stored, fields)
                assert [p for p, _ in by_rows] == [n.id for n in stored]
                assert [(type(e), vars(e)) for _, e in by_rows] == [(type(e), vars(e)) for e in expected]
            erased = [e for _, e in mapper.rows_decoder(lambda topic: None)(rows) if type(e) is Person.Registered]
            assert any(e.name == ERASED for e in erased) and (mapper is closed_app.mapper) == all(
                e.name == ERASED for e in erased
            )
    finally:
        closed_app.close()


def test_only_the_replay_runs_without_sequential_scans_and_without_waiting_for_its_wal(
    care: Care, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replay's batches (into the scratch schema) are planned without sequential scans and
    commit without waiting for their WAL; what follows (the final counts and indexes, the swap)
    runs with the connection's own settings, so the swapped-in view is durable as before."""
    seen: list[tuple[str, str, str]] = []
    real_batch, real_finish = (
        supervision.SupervisionProjection.rebuild_batch,
        supervision.SupervisionProjection.finish_rebuild,
    )

    def settings(cur: psycopg.Cursor[Any], when: str) -> None:
        scan = cur.execute("SHOW enable_seqscan").fetchone()[0]
        seen.append((when, scan, cur.execute("SHOW synchronous_commit").fetchone()[0]))

    def batch(self: Any, cur: psycopg.Cursor[Any], events: Any) -> None:
        settings(cur, "replay")
        real_batch(self, cur, events)

    def finish(self: Any, cur: psycopg.Cursor[Any]) -> None:
        settings(cur, "finish")
        real_finish(self, cur)

    monkeypatch.setattr(supervision.SupervisionProjection, "rebuild_batch", batch)
    monkeypatch.setattr(supervision.SupervisionProjection, "finish_rebuild", finish)
    with Projector(care.world.url, app=care.world.app) as projector:
        projector.catch_up()
        before = snapshot(care.world.url, TABLES["supervision"])
        projector.runner.rebuild("supervision", batch_size=50)
        assert snapshot(care.world.url, TABLES["supervision"]) == before
    assert len(seen) > 2 and set(seen[:-1]) == {("replay", "off", "off")} and seen[-1] == ("finish", "on", "on")
