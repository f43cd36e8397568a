"""A personal data key is on disk before anything is sealed with it (found by bench/chaos.py).

The key of a new person, helper or report is created in a transaction of its own, before the
events sealed with it are stored. Were that transaction committed without waiting for its WAL
flush, a crash of PostgreSQL right after it would lose the key row while the process still held
the key: the event store's insert, retried on the reconnected database (the library retries an
``OperationalError``), would then store events that no process can ever open. The fault
campaign saw it as an accepted report the router could not load, never routed.

Here the crash comes right after the key's commit, with the WAL writer slowed down (a flush
every 10 s) so that nothing else writes the key row to disk first. The PostgreSQL is this
test's own (killed here), never the machine's.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from bench.cluster import OwnPostgres
from infrastructure.personal_data import KEYS_TABLE
from tests.app_support import make_care

pytestmark = pytest.mark.slow


@pytest.fixture
def slow_wal_postgres() -> Iterator[OwnPostgres]:
    base = Path(tempfile.mkdtemp(prefix="guanai-key-durability-"))
    server = OwnPostgres(base, settings={"wal_writer_delay": "10000ms", "checkpoint_timeout": "3600s"})
    server.start()
    server.create_database()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_a_new_key_survives_a_crash_right_after_it_was_made(slow_wal_postgres: OwnPostgres) -> None:
    app = make_care(slow_wal_postgres.url, pool_size=2)
    subjects = [str(uuid.uuid4()) for _ in range(3)]
    try:
        for subject in subjects:
            app.store.key_store.key_for_sealing(subject, None)  # what sealing a new report's event does first
        slow_wal_postgres.kill()
        slow_wal_postgres.start()
        with psycopg.connect(slow_wal_postgres.url) as conn:
            found = conn.execute(
                f"SELECT count(*) FROM {KEYS_TABLE} WHERE subject = ANY(%s) AND wrapped IS NOT NULL",
                (subjects,),
            ).fetchone()
        assert found == (len(subjects),), "a key this process holds, and may seal events with, was lost in the crash"
    finally:
        app.close()


def test_a_key_written_with_its_events_survives_a_crash_right_after_the_save(slow_wal_postgres: OwnPostgres) -> None:
    """A new person's key is written in the transaction that stores the person (the key's own
    transaction is folded into it): acknowledged, both are on disk; the events open after the crash."""
    from datetime import UTC, date, datetime

    from domain.base import CommandMeta
    from domain.person import Person
    from domain.vocabulary import OrgLevel, PersonKind, Sex

    def meta() -> CommandMeta:
        return CommandMeta(actor_id="t", actor_role="administrator", correlation_id="c", occurred_at=datetime.now(UTC))

    app = make_care(slow_wal_postgres.url, pool_size=2)
    people = [uuid.uuid4() for _ in range(3)]
    try:
        county = app.register_org_unit(
            code="530000000000", name="县", level=OrgLevel.COUNTY, parent_id=None, meta=meta()
        )
        town = app.register_org_unit(
            code="530000101000", name="镇", level=OrgLevel.TOWNSHIP, parent_id=county.id, meta=meta()
        )
        village = app.register_org_unit(
            code="530000101001", name="村", level=OrgLevel.VILLAGE, parent_id=town.id, meta=meta()
        )
        for pid in people:
            app.register_person(
                id=pid, kind=PersonKind.ELDER, name="李秀英", sex=Sex.FEMALE, birth_date=date(1941, 5, 6),
                village_id=village.id, meta=meta(),
            )  # fmt: skip
        slow_wal_postgres.kill()
        slow_wal_postgres.start()
    finally:
        app.close()
    with psycopg.connect(slow_wal_postgres.url) as conn:
        found = conn.execute(
            f"SELECT count(*) FROM {KEYS_TABLE} WHERE subject = ANY(%s) AND wrapped IS NOT NULL",
            ([str(p) for p in people],),
        ).fetchone()
    assert found == (len(people),), "a person was acknowledged and its key lost in the crash"
    fresh = make_care(slow_wal_postgres.url, pool_size=2)
    try:
        assert [fresh.load(Person, pid).name for pid in people] == ["李秀英"] * len(people)
    finally:
        fresh.close()
