"""The audit chain against a real PostgreSQL: an untouched store verifies; each tampering by
SQL (payload changed, row deleted, forged row inserted, rows reordered) is found at its
position; concurrent writers from threads and processes still verify; checkpoints pin the
log; a wrong key or the DB-function insert path is refused; the access log is chained too."""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime

import psycopg
import pytest
from psycopg.sql import SQL

from application.care import CareApplication
from domain.base import CommandMeta
from domain.vocabulary import OrgLevel, PersonKind, RiskTag, Sex
from infrastructure import access_log
from infrastructure.chain import ChainError, ChainKey, adopt
from infrastructure.verify import heads, verify_access_log, verify_events, verify_stream
from tests.app_support import make_care

KEY = "chain-test-key-" + "k" * 32


def meta() -> CommandMeta:
    return CommandMeta(
        actor_id="t", actor_role="administrator", correlation_id=str(uuid.uuid4()), occurred_at=datetime.now(UTC)
    )


def make_app(url: str, **env: str) -> CareApplication:
    return make_care(url, pool_size=4, env={"GUANAI_CHAIN_KEY": KEY, **env})


def seed(app: CareApplication, persons: int = 3, prefix: str | None = None) -> list[uuid.UUID]:
    """A county, a township, a village and some elders with a few changes each."""
    base = prefix or f"{uuid.uuid4().int % 10**6:06d}"
    county = app.register_org_unit(code=base + "000000", name="县", level=OrgLevel.COUNTY, parent_id=None, meta=meta())
    town = app.register_org_unit(
        code=base + "101000", name="镇", level=OrgLevel.TOWNSHIP, parent_id=county.id, meta=meta()
    )
    village = app.register_org_unit(
        code=base + "101001", name="村", level=OrgLevel.VILLAGE, parent_id=town.id, meta=meta()
    )
    ids = []
    for _ in range(persons):
        pid = uuid.uuid4()
        app.register_person(
            id=pid,
            kind=PersonKind.ELDER,
            name="李秀英",
            sex=Sex.FEMALE,
            birth_date=date(1941, 5, 6),
            village_id=village.id,
            risk_tags=[RiskTag.LIVING_ALONE],
            meta=meta(),
        )
        app.add_risk_tag(pid, RiskTag.ADVANCED_AGE, meta())
        app.remove_risk_tag(pid, RiskTag.LIVING_ALONE, meta())
        ids.append(pid)
    return ids


@dataclass
class Store:
    url: str
    app: CareApplication
    key: ChainKey
    persons: list[uuid.UUID]

    def sql(self, statement: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def positions(self, person: uuid.UUID) -> list[int]:
        return [
            r[0]
            for r in self.sql(
                "SELECT notification_id FROM guanai_events WHERE originator_id = %s ORDER BY originator_version",
                (person,),
            )
        ]

    def verify(self, **kw):
        return verify_events(self.url, self.key, **kw)


@pytest.fixture
def store(fresh_database_url: str) -> Iterator[Store]:
    app = make_app(fresh_database_url)
    try:
        yield Store(fresh_database_url, app, ChainKey(KEY), seed(app))
    finally:
        app.close()


def test_an_untouched_store_verifies_and_every_event_is_chained(store: Store) -> None:
    result = store.verify()
    count = store.sql("SELECT count(*) FROM guanai_events")[0][0]
    assert result.ok, result.failures
    assert result.checked == count == store.sql("SELECT count(*) FROM guanai_events_chain")[0][0]
    assert (
        result.head is not None
        and result.head.position == store.sql("SELECT max(notification_id) FROM guanai_events")[0][0]
    )


def test_a_changed_payload_is_found_at_its_position(store: Store) -> None:
    target = store.positions(store.persons[1])[1]  # the risk tag added
    store.sql(
        "UPDATE guanai_events SET state = convert_to(replace(convert_from(state, 'UTF8'), 'advanced_age', 'empty_nest'), 'UTF8') "
        "WHERE notification_id = %s",
        (target,),
    )
    result = store.verify()
    assert not result.ok
    assert (result.first_failure.position, result.first_failure.kind) == (target, "payload-changed")
    assert result.failure_count == 1  # later entries still verify on their own


def test_a_deleted_row_is_found_whether_or_not_its_chain_entry_went_too(store: Store) -> None:
    first, second = store.positions(store.persons[0])[1], store.positions(store.persons[1])[2]  # not the newest
    store.sql("DELETE FROM guanai_events WHERE notification_id = %s", (first,))
    store.sql("DELETE FROM guanai_events WHERE notification_id = %s", (second,))
    store.sql("DELETE FROM guanai_events_chain WHERE notification_id = %s", (second,))
    result = store.verify()
    assert [(f.position, f.kind) for f in result.failures] == [(first, "row-deleted"), (second, "row-deleted")]


def test_a_forged_row_is_found_with_or_without_a_forged_chain_entry(store: Store) -> None:
    topic, state = store.sql(
        "SELECT topic, state FROM guanai_events WHERE originator_id = %s AND originator_version = 1",
        (store.persons[0],),
    )[0]
    forged = store.sql(
        "INSERT INTO guanai_events (originator_id, originator_version, topic, state) VALUES (%s, 1, %s, %s) "
        "RETURNING notification_id",
        (uuid.uuid4(), topic, state),
    )[0][0]
    result = store.verify()
    assert (result.first_failure.position, result.first_failure.kind) == (forged, "row-inserted")
    store.sql(
        "INSERT INTO guanai_events_chain SELECT %s, %s, originator_id, 1, %s FROM guanai_events WHERE notification_id = %s",
        (forged, forged - 1, b"\x00" * 32, forged),
    )
    result = store.verify()
    assert (result.first_failure.position, result.first_failure.kind) == (forged, "payload-changed")


def test_two_reordered_rows_are_found_at_the_first(store: Store) -> None:
    a, b = store.positions(store.persons[0])[2], store.positions(store.persons[1])[0]
    store.sql("UPDATE guanai_events SET notification_id = -1 WHERE notification_id = %s", (a,))
    store.sql("UPDATE guanai_events SET notification_id = %s WHERE notification_id = %s", (a, b))
    store.sql("UPDATE guanai_events SET notification_id = %s WHERE notification_id = -1", (b,))
    result = store.verify()
    assert [(f.position, f.kind) for f in result.failures] == [(a, "order-changed"), (b, "order-changed")]
    assert f"written at position {b}" in result.failures[0].detail


def test_a_range_checks_only_its_positions(store: Store) -> None:
    target = store.positions(store.persons[2])[0]
    store.sql("UPDATE guanai_events SET state = state || ' '::bytea WHERE notification_id = %s", (target,))
    assert store.verify(end=target - 1).ok
    assert store.verify(start=target + 1).ok
    assert store.verify(start=target, end=target).first_failure.position == target


def test_a_checkpoint_pins_the_log_even_against_deleting_the_newest_events(store: Store) -> None:
    with psycopg.connect(store.url) as conn:
        held = next(h for h in heads(conn, store.key) if h.log == "events")
    store.app.add_risk_tag(store.persons[0], RiskTag.DIBAO, meta())
    assert store.verify(checkpoint=held).ok
    # Removing the newest events and their entries leaves a chain that verifies on its own...
    store.sql("DELETE FROM guanai_events WHERE notification_id >= %s", (held.position,))
    store.sql("DELETE FROM guanai_events_chain WHERE notification_id >= %s", (held.position,))
    assert store.verify().ok
    # ...but not against what an outside party holds.
    result = store.verify(checkpoint=held)
    assert (result.first_failure.position, result.first_failure.kind) == (held.position, "checkpoint-mismatch")


def test_a_stream_is_checked_on_its_own_entries(store: Store) -> None:
    person = store.persons[1]
    with psycopg.connect(store.url) as conn:
        assert verify_stream(conn, store.key, person).ok
    target = store.positions(person)[2]
    store.sql("UPDATE guanai_events SET state = state || ' '::bytea WHERE notification_id = %s", (target,))
    with psycopg.connect(store.url) as conn:
        result = verify_stream(conn, store.key, person)
    assert (result.first_failure.position, result.first_failure.kind) == (target, "payload-changed")


def test_another_key_is_refused_for_writing_and_named_by_verify(store: Store) -> None:
    other = make_care(store.url, pool_size=2, env={"GUANAI_CHAIN_KEY": "another-key-" + "x" * 32})
    try:
        with pytest.raises(ChainError, match="not the key the event store is chained with"):
            other.add_risk_tag(store.persons[0], RiskTag.DIBAO, meta())
    finally:
        other.close()
    result = verify_events(store.url, ChainKey("another-key-" + "x" * 32))
    assert result.first_failure.kind == "wrong-key"


def test_the_db_function_insert_path_is_refused(fresh_database_url: str) -> None:
    with pytest.raises(ChainError, match="POSTGRES_ENABLE_DB_FUNCTIONS"):
        make_app(fresh_database_url, POSTGRES_ENABLE_DB_FUNCTIONS="y")


def test_events_written_with_the_chain_off_are_reported_and_a_legacy_store_can_be_adopted(
    fresh_database_url: str,
) -> None:
    off = make_app(fresh_database_url, GUANAI_AUDIT_CHAIN="false")
    try:
        seed(off, persons=2)
    finally:
        off.close()
    key = ChainKey(KEY)
    result = verify_events(fresh_database_url, key)
    assert {f.kind for f in result.failures} == {"row-inserted"} and result.failure_count == result.checked > 0
    assert adopt(fresh_database_url, key) == result.checked
    assert verify_events(fresh_database_url, key).ok
    with pytest.raises(ChainError, match="already chained"):
        adopt(fresh_database_url, key)
    on = make_app(fresh_database_url)
    try:
        seed(on, persons=1)  # the chain continues from the adopted entries
    finally:
        on.close()
    assert verify_events(fresh_database_url, key).ok


def _write_in_process(url: str, prefix: str) -> None:
    app = make_app(url)
    try:
        seed(app, persons=4, prefix=prefix)
    finally:
        app.close()


def test_concurrent_writers_in_threads_and_processes_still_verify(fresh_database_url: str) -> None:
    app = make_app(fresh_database_url)
    spawn = multiprocessing.get_context("spawn")
    processes = [
        spawn.Process(target=_write_in_process, args=(fresh_database_url, f"9{n}{uuid.uuid4().int % 10**4:04d}"))
        for n in range(3)
    ]
    errors: list[BaseException] = []

    def write() -> None:
        try:
            seed(app, persons=4)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=write) for _ in range(4)]
    try:
        for p in processes:
            p.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        for p in processes:
            p.join(timeout=120)
    finally:
        app.close()
    assert not errors and all(p.exitcode == 0 for p in processes)
    result = verify_events(fresh_database_url, ChainKey(KEY))
    assert result.ok, result.failures
    with psycopg.connect(fresh_database_url) as conn:
        stored = conn.execute("SELECT count(*), count(DISTINCT originator_id) FROM guanai_events").fetchone()
    assert result.checked == stored[0] and stored[1] == 7 * (3 + 4)  # every writer's org units and persons


def test_the_access_log_is_chained(store: Store) -> None:
    with psycopg.connect(store.url, autocommit=True) as conn:
        for n in range(5):
            access_log.record(
                conn,
                store.key,
                person_ids=store.persons[:2],
                actor_id=f"a{n}",
                actor_role="auditor",
                endpoint="GET /persons/{person_id:uuid}",
                request_id=f"r{n}",
            )
        rows, total = access_log.for_person(conn, store.persons[0], limit=3)
    assert total == 5 and [r.actor_id for r in rows] == ["a4", "a3", "a2"]
    held = verify_access_log(store.url, store.key)
    assert held.ok and held.checked == 10 and held.head.position == 10
    store.sql("UPDATE guanai_access_log SET actor_id = 'someone-else' WHERE id = 4")
    store.sql("DELETE FROM guanai_access_log WHERE id = 7")
    result = verify_access_log(store.url, store.key)
    assert [(f.position, f.kind) for f in result.failures] == [(4, "payload-changed"), (7, "row-deleted")]
    store.sql("DELETE FROM guanai_access_log WHERE id >= 8")
    assert verify_access_log(store.url, store.key, checkpoint=held.head).failures[-1].kind == "checkpoint-mismatch"


def test_access_rows_sent_with_a_read_chain_on_from_this_process_and_give_way_to_others(store: Store) -> None:
    """``AccessLog.read_with`` writes in the read's round trip and implicit transaction, without
    reading the last row, only while the last row is the one its process wrote: after another
    writer it writes nothing and the read is recorded by ``record`` instead; a condition that
    fails, or a statement that fails, writes nothing either; from threads and two processes'
    writers the chain verifies, densely numbered, one row per read."""
    fields = ("a", "auditor", "GET /persons/{person_id:uuid}/timeline", "r")
    mine, theirs = access_log.AccessLog(), access_log.AccessLog()

    def read(log: access_log.AccessLog, persons: list[uuid.UUID], condition: bool = True) -> bool:
        with psycopg.connect(store.url, autocommit=True) as conn, psycopg.ClientCursor(conn) as cur:
            rows, written = log.read_with(
                cur, store.key, "SELECT 7", persons, fields, only_if=SQL("%s"), params=[condition]
            )
        assert rows == [(7,)]
        return written

    def record(log: access_log.AccessLog, persons: list[uuid.UUID]) -> list[int]:
        with psycopg.connect(store.url, autocommit=True) as conn:
            return log.record(conn, store.key, persons, fields)

    def ids() -> list[int]:
        return [r[0] for r in store.sql("SELECT id FROM guanai_access_log ORDER BY id")]

    assert read(mine, store.persons[:1]) is False and ids() == []  # nothing to chain on from yet
    assert record(mine, store.persons[:1]) == [1]
    assert read(mine, store.persons[:2]) is True and ids() == [1, 2, 3]
    assert record(theirs, store.persons[:1]) == [4]
    assert read(mine, store.persons[:1]) is False and ids() == [1, 2, 3, 4]  # another process wrote last
    assert record(mine, store.persons[:1]) == [5]
    assert read(mine, store.persons[:1], condition=False) is False and ids() == [1, 2, 3, 4, 5]
    with psycopg.connect(store.url, autocommit=True) as conn, psycopg.ClientCursor(conn) as cur:
        with pytest.raises(psycopg.errors.DivisionByZero):
            mine.read_with(cur, store.key, "SELECT 1/0", store.persons[:1], fields)
        with pytest.raises(ValueError):  # its own transaction: never inside the caller's
            conn.autocommit = False
            mine.read_with(cur, store.key, "SELECT 1", store.persons[:1], fields)
    assert ids() == [1, 2, 3, 4, 5]
    assert read(mine, store.persons[:1]) is True and ids() == [1, 2, 3, 4, 5, 6]

    errors: list[BaseException] = []

    def reader(log: access_log.AccessLog) -> None:
        try:
            for _ in range(15):
                if not read(log, store.persons[:1]):
                    record(log, store.persons[:1])
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(log,)) for log in (mine, mine, theirs, theirs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert ids() == list(range(1, 6 + 4 * 15 + 1))
    result = verify_access_log(store.url, store.key)
    assert result.ok and result.checked == 66, result.failures


def test_access_rows_sent_with_a_read_hold_exactly_the_values_given(store: Store) -> None:
    """Without values of its own in the condition, ``read_with`` writes its rows' values into
    the statement as literals rather than having psycopg bind them: texts with quotes,
    backslashes, a "%" and non-ASCII letters are stored exactly, the time to the microsecond,
    the rows chain (their MACs verify) and a condition as text still decides."""
    log = access_log.AccessLog()
    hostile = [
        ("o'brien \\ 50% '' \\' ;--", "auditor", "GET /persons/{person_id:uuid}/timeline", "r'1"),
        ("张三", "county_supervisor", "GET /persons/{person_id:uuid}/timeline", "r\\2"),
    ]
    with psycopg.connect(store.url, autocommit=True) as conn:
        log.record(conn, store.key, store.persons[:1], hostile[0])
    written = []
    for fields, condition in [(hostile[0], "TRUE"), (hostile[1], "1 = 1"), (hostile[1], "'50%%' = '5%%0'")]:
        with psycopg.connect(store.url, autocommit=True) as conn, psycopg.ClientCursor(conn) as cur:
            rows, ok = log.read_with(cur, store.key, "SELECT 7", store.persons[:2], fields, only_if=condition)
        assert rows == [(7,)]
        written.append(ok)
    assert written == [True, True, False]
    stored = store.sql(
        "SELECT id, actor_id, actor_role, endpoint, person_id, request_id FROM guanai_access_log ORDER BY id"
    )
    assert [tuple(r) for r in stored] == [
        (1, *hostile[0][:3], store.persons[0], hostile[0][3]),
        *[
            (n, *f[:3], p, f[3])
            for n, (f, p) in enumerate([(f, p) for f in hostile for p in store.persons[:2]], start=2)
        ],
    ]
    result = verify_access_log(store.url, store.key)
    assert result.ok and result.checked == 5, result.failures
