"""Group commit against a real PostgreSQL (``infrastructure/group_commit.py``, ``ChainedRecorder``).

Saves from many threads that arrive while another transaction holds the event store's lock are
written together in one transaction, each decided on its own. To make a group for certain, a test
holds the table's EXCLUSIVE lock from a connection of its own until every thread has handed in
its save, then lets go: the first save's transaction (a group of whatever had arrived) commits,
and the next leader takes everything else in one.

Checked: each caller gets its own result (its events' notification ids, its command's position),
the lookup rows and an erasure's key destruction of each save are written with it; a conflict
(a version stored already, or written by an earlier save of the same group) fails that save only;
a hook raising for one save fails it alone, with nothing of it written; notification ids are
gap-free and a reader polling meanwhile never sees a hole that fills later (commit order); the
chain and the Merkle tree verify as ``guanai audit verify`` checks them.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent
from psycopg._pipeline import Pipeline
from psycopg.sql import SQL

from application.care import CareApplication
from bench.group_commit import one_village as village  # a county of one township of one village
from domain.base import CommandMeta, ErasedError
from domain.person import Person
from domain.vocabulary import PersonKind, RiskTag, Sex
from infrastructure.audit import Audit
from infrastructure.chain import ChainedRecorder
from infrastructure.lookup_hash import LOOKUP_TABLE
from infrastructure.merkle import check_tree
from infrastructure.personal_data import KEYS_TABLE
from tests.app_support import make_care

THREADS = 24


def meta() -> CommandMeta:
    return CommandMeta(
        actor_id="t", actor_role="administrator", correlation_id=str(uuid.uuid4()), occurred_at=datetime.now(UTC)
    )


@pytest.fixture
def app(fresh_database_url: str) -> Iterator[CareApplication]:
    care = make_care(fresh_database_url, pool_size=THREADS + 4)
    try:
        yield care
    finally:
        care.close()


def recorder(app: CareApplication) -> ChainedRecorder:
    assert isinstance(app.recorder, ChainedRecorder)
    return app.recorder


def in_one_group(app: CareApplication, url: str, calls: list[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` each in its own thread while the event table is locked, let go once all
    have queued their save; each call's return value or exception, in order."""
    committer = recorder(app).group_committer
    assert committer is not None
    before = committer.submitted
    results: list[Any] = [None] * len(calls)

    def run(n: int) -> None:
        try:
            results[n] = calls[n]()
        except Exception as e:  # noqa: BLE001 - the answer under test
            results[n] = e

    with psycopg.connect(url) as blocker:
        blocker.execute("LOCK TABLE guanai_events IN EXCLUSIVE MODE")
        threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while committer.submitted - before < len(calls):
            assert time.monotonic() < deadline, "the saves never all queued"
            assert all(t.is_alive() for t in threads), f"a call ended before the lock was let go: {results}"
            time.sleep(0.01)
        groups = committer.groups
        blocker.commit()
    for t in threads:
        t.join(60)
    # The first leader's group (what had arrived when it started), then one for all the rest.
    assert committer.groups - groups <= 2
    return results


def positions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT notification_id FROM guanai_events ORDER BY 1").fetchall()]


def assert_audit_verifies(app: CareApplication, url: str) -> None:
    audit = Audit(app, url)
    result = audit.verify()
    assert result.ok, result.failures
    with psycopg.connect(url) as conn:
        count = conn.execute("SELECT count(*) FROM guanai_events").fetchone()[0]
        assert result.checked == count
        checked, failures = check_tree(conn, audit.tree, "guanai_events")
    assert failures == [] and checked == count


def id_number(n: int) -> str:
    first17 = f"53252419410506{n:03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11]


def test_commands_from_many_threads_share_a_transaction_and_each_gets_its_own_answer(
    app: CareApplication, fresh_database_url: str
) -> None:
    url = fresh_database_url
    where = village(app)
    tagged = uuid.uuid4()
    erased = uuid.uuid4()
    for pid in (tagged, erased):
        app.register_person(
            id=pid, kind=PersonKind.ELDER, name="王桂兰", sex=Sex.FEMALE, birth_date=date(1940, 1, 2),
            village_id=where, meta=meta(),
        )  # fmt: skip
    new = [uuid.uuid4() for _ in range(THREADS - 2)]

    def register(n: int) -> Callable[[], Any]:
        return lambda: app.register_person(
            id=new[n], kind=PersonKind.ELDER, name="李秀英", sex=Sex.FEMALE, birth_date=date(1941, 5, 6),
            village_id=where, id_number=id_number(n), risk_tags=[RiskTag.LIVING_ALONE], meta=meta(),
        )  # fmt: skip

    calls = [register(n) for n in range(len(new))]
    calls.append(lambda: app.add_risk_tag(tagged, RiskTag.DIBAO, meta()))
    calls.append(lambda: app.erase_person(erased, "asked to be forgotten", meta()))

    seen_holes: list[tuple[int, int]] = []
    stop = threading.Event()

    def reader() -> None:  # commit order: a reader never sees a position missing below the newest
        with psycopg.connect(url, autocommit=True) as conn:
            while not stop.is_set():
                count, newest = conn.execute(
                    "SELECT count(*), coalesce(max(notification_id), 0) FROM guanai_events"
                ).fetchone()
                if count != newest:
                    seen_holes.append((count, newest))

    watching = threading.Thread(target=reader)
    watching.start()
    try:
        results = in_one_group(app, url, calls)
    finally:
        stop.set()
        watching.join()

    assert not [r for r in results if isinstance(r, BaseException)], results
    stored = {}
    with psycopg.connect(url) as conn:
        for oid, version, position in conn.execute(
            "SELECT originator_id, originator_version, notification_id FROM guanai_events"
        ).fetchall():
            stored[(oid, version)] = position
        lookups = dict(conn.execute(f"SELECT subject_id, hash FROM {LOOKUP_TABLE}").fetchall())
        destroyed = conn.execute(
            f"SELECT wrapped IS NULL FROM {KEYS_TABLE} WHERE subject = %s", (str(erased),)
        ).fetchone()
    for n, result in enumerate(results[: len(new)]):
        assert (result.id, result.version, result.created) == (new[n], 1, True)
        assert result.position == stored[(new[n], 1)]  # its own position, not another's of the group
        assert lookups[new[n]] == app.lookup_hash("id_number", id_number(n))  # its thread's lookup rows
    assert results[-2].position == stored[(tagged, 2)] and results[-2].version == 2
    assert results[-1].position == stored[(erased, 2)]
    assert destroyed == (True,)  # the erasure's hook ran in the group's transaction
    assert app.personal_data_erased(erased)
    assert positions(url) == list(range(1, len(stored) + 1))  # gap-free
    assert seen_holes == []
    assert_audit_verifies(app, url)


def event(oid: uuid.UUID, version: int) -> StoredEvent:
    return StoredEvent(oid, version, "tests.integration.test_group_commit:Probe", b'{"n": %d}' % version)


def test_a_conflict_fails_only_its_own_save(app: CareApplication, fresh_database_url: str) -> None:
    url = fresh_database_url
    rec = recorder(app)
    stored_already = uuid.uuid4()
    rec.insert_events([event(stored_already, 1)])
    twice = uuid.uuid4()
    others = [uuid.uuid4() for _ in range(THREADS - 3)]
    calls: list[Callable[[], Any]] = [lambda: rec.insert_events([event(stored_already, 1), event(stored_already, 2)])]
    calls += [lambda: rec.insert_events([event(twice, 1)]), lambda: rec.insert_events([event(twice, 1)])]
    calls += [lambda o=o: rec.insert_events([event(o, 1), event(o, 2)]) for o in others]  # type: ignore[misc]

    results = in_one_group(app, url, calls)

    assert isinstance(results[0], IntegrityError)  # its version 1 was stored before
    assert sorted(isinstance(r, IntegrityError) for r in results[1:3]) == [False, True]  # one of the two wins
    answered = [r for r in results if not isinstance(r, BaseException)]
    assert len(answered) == 1 + len(others)
    assert all(len(r) == 2 for r in answered[1:]) and all(b == a + 1 for a, b in (r for r in answered[1:]))
    assert sorted(p for r in answered for p in r) == positions(url)[1:]  # each its own ids, all of them stored
    assert positions(url) == list(range(1, 2 + 1 + 2 * len(others)))  # no id spent on the refused saves
    with psycopg.connect(url) as conn:
        versions = conn.execute(
            "SELECT max(originator_version) FROM guanai_events WHERE originator_id = %s", (stored_already,)
        ).fetchone()
    assert versions == (1,)  # nothing of the refused save
    assert_audit_verifies(app, url)


def test_a_hook_failing_for_one_save_leaves_the_others_committed_and_nothing_of_it(
    app: CareApplication, fresh_database_url: str
) -> None:
    url = fresh_database_url
    rec = recorder(app)
    doomed = uuid.uuid4()

    class Refused(RuntimeError):
        pass

    def refuse(cur: Any, written: Any) -> None:
        if any(e.originator_id == doomed for _, e in written):
            raise Refused("refused by the test's hook")

    rec.insert_hooks.append(refuse)
    try:
        others = [uuid.uuid4() for _ in range(THREADS - 1)]
        calls: list[Callable[[], Any]] = [lambda o=o: rec.insert_events([event(o, 1)]) for o in others[:5]]  # type: ignore[misc]
        calls.append(lambda: rec.insert_events([event(doomed, 1), event(doomed, 2)]))
        calls += [lambda o=o: rec.insert_events([event(o, 1)]) for o in others[5:]]  # type: ignore[misc]
        results = in_one_group(app, url, calls)
    finally:
        rec.insert_hooks.remove(refuse)

    assert isinstance(results[5], Refused)
    answered = [r for n, r in enumerate(results) if n != 5]
    assert not [r for r in answered if isinstance(r, BaseException)], answered
    with psycopg.connect(url) as conn:
        rows = dict(conn.execute("SELECT originator_id, notification_id FROM guanai_events").fetchall())
        chained = conn.execute(
            "SELECT count(*) FROM guanai_events_chain WHERE originator_id = %s", (doomed,)
        ).fetchone()
        leaves = conn.execute("SELECT count(*) FROM guanai_events_tree WHERE level = 0").fetchone()
    assert doomed not in rows and chained == (0,)
    assert leaves == (len(others),)
    assert {o: rows[o] for o in others} == {o: r[0] for o, r in zip(others, answered, strict=True)}
    assert_audit_verifies(app, url)
    # The next save writes on as before.
    assert rec.insert_events([event(doomed, 1)])
    assert_audit_verifies(app, url)


def test_a_statement_failing_in_the_database_fails_its_save_alone_and_leaves_no_transaction_open(
    app: CareApplication, fresh_database_url: str
) -> None:
    """The group's BEGIN and COMMIT travel in the pipeline with its statements: a statement the
    server refuses aborts the transaction, the COMMIT queued behind it is skipped, the group is
    rolled back and written again one save at a time, and every connection goes back idle."""
    url = fresh_database_url
    rec = recorder(app)
    doomed = uuid.uuid4()

    def divide(cur: Any, written: Any) -> None:
        if any(e.originator_id == doomed for _, e in written):
            cur.execute("SELECT 1 / 0")  # refused by the server, seen at the sync before COMMIT

    rec.insert_hooks.append(divide)
    try:
        others = [uuid.uuid4() for _ in range(7)]
        calls: list[Callable[[], Any]] = [lambda o=o: rec.insert_events([event(o, 1)]) for o in others[:3]]  # type: ignore[misc]
        calls.append(lambda: rec.insert_events([event(doomed, 1)]))
        calls += [lambda o=o: rec.insert_events([event(o, 1)]) for o in others[3:]]  # type: ignore[misc]
        results = in_one_group(app, url, calls)
        alone = rec.insert_events([event(uuid.uuid4(), 1)])  # a lone save after it writes on
        with pytest.raises(Exception, match="division by zero"):
            rec.insert_events([event(doomed, 1)])  # a lone group of one, refused the same way
    finally:
        rec.insert_hooks.remove(divide)

    assert "division by zero" in str(results[3])
    answered = [r for n, r in enumerate(results) if n != 3]
    assert not [r for r in answered if isinstance(r, BaseException)], answered
    with psycopg.connect(url) as conn:
        stored = {r[0] for r in conn.execute("SELECT originator_id FROM guanai_events").fetchall()}
        states = conn.execute(
            "SELECT state FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    assert doomed not in stored and set(others) <= stored and alone
    assert states and all(s == ("idle",) for s in states), states
    assert_audit_verifies(app, url)


def test_a_lone_save_is_its_own_group_and_waits_for_nobody(app: CareApplication, fresh_database_url: str) -> None:
    rec = recorder(app)
    committer = rec.group_committer
    assert committer is not None
    groups = committer.groups
    ids = [rec.insert_events([event(uuid.uuid4(), 1)]) for _ in range(5)]
    assert committer.groups - groups == 5
    assert [i[0] for i in ids] == positions(fresh_database_url)


def test_a_registration_is_one_transaction_of_seven_statements_and_verifies(
    app: CareApplication, fresh_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19: the reads under the lock, and the chain's, tree's and key's writes after the
    insert, are folded (``infrastructure.folded``); what is folded is still written."""
    url = fresh_database_url
    where = village(app)
    sent: list[str] = []
    execute = psycopg.Cursor.execute

    def counting(self: psycopg.Cursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        text = query if isinstance(query, bytes | str) else query.as_bytes(self)
        sent.append(text.decode() if isinstance(text, bytes) else text)
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counting)
    pid = uuid.uuid4()
    register(app, where, pid)
    monkeypatch.undo()
    transaction = sent[sent.index("BEGIN") :]
    assert transaction[-1] == "COMMIT" and len(transaction) == 7, transaction
    assert key_rows(url, pid) == [(True,)]  # the key, written in the folded statement
    with psycopg.connect(url) as conn:
        size, leaves, entries, events = conn.execute(
            "SELECT (SELECT size FROM guanai_events_tree_head), (SELECT count(*) FROM guanai_events_tree"
            " WHERE level = 0), (SELECT count(*) FROM guanai_events_chain), (SELECT count(*) FROM guanai_events)"
        ).fetchone()
    assert size == leaves == entries == events
    assert_audit_verifies(app, url)


def test_a_registration_waits_on_the_server_for_its_reads_only_before_the_commit(
    app: CareApplication, fresh_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19: with the notification ids predicted under the lock and the new key checked in
    the server, the insert, the folded writes and the COMMIT travel together after the one read:
    a single explicit sync (the read's) and no result fetched before the COMMIT but the read's."""
    where = village(app)
    register(app, where, uuid.uuid4())  # the process's first checks of its keys come before this one
    awaited: list[str] = []
    sync, fetchone, fetchall = Pipeline.sync, psycopg.Cursor.fetchone, psycopg.Cursor.fetchall

    def counted(name: str, real: Any) -> Any:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            awaited.append(name)
            return real(self, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(Pipeline, "sync", counted("sync", sync))
    monkeypatch.setattr(psycopg.Cursor, "fetchone", counted("fetchone", fetchone))
    monkeypatch.setattr(psycopg.Cursor, "fetchall", counted("fetchall", fetchall))
    pid = uuid.uuid4()
    result = register(app, where, pid)
    monkeypatch.undo()
    # The aggregate's read (whether the id is free), then the heads' sync and fetch: nothing else.
    assert awaited == ["fetchall", "sync", "fetchone"], awaited
    assert positions(fresh_database_url)[-1] == result.position
    assert key_rows(fresh_database_url, pid) == [(True,)]
    assert_audit_verifies(app, fresh_database_url)


def test_a_wrong_prediction_of_the_ids_writes_the_group_by_the_sequence_without_a_gap(
    app: CareApplication, fresh_database_url: str
) -> None:
    """Predicted ids that are taken after all (here: the heads made to predict the newest id
    again) fail the insert in the server; the group is written save by save with the sequence's
    ids, with no id lost, and the chain and tree verify."""
    url = fresh_database_url
    rec = recorder(app)
    rec.insert_events([event(uuid.uuid4(), 1)])
    rec._next_id = SQL("SELECT last_value AS next_id FROM guanai_events_notification_id_seq")  # type: ignore[attr-defined]
    rec._heads_query = None  # type: ignore[attr-defined]
    committer = rec.group_committer
    assert committer is not None
    first = uuid.uuid4()
    ids = [rec.insert_events([event(first, 1), event(first, 2)]), rec.insert_events([event(uuid.uuid4(), 1)])]
    stored = positions(url)
    assert stored == list(range(1, len(stored) + 1))  # gap-free
    assert [i for group in ids for i in (group or [])] == stored[-3:]
    assert_audit_verifies(app, url)


def test_a_committed_group_notifies_readers_and_a_refused_one_does_not(
    app: CareApplication, fresh_database_url: str
) -> None:
    rec = recorder(app)
    heard: list[str] = []
    with psycopg.connect(fresh_database_url, autocommit=True) as listener:
        listener.add_notify_handler(lambda n: heard.append(n.channel))
        listener.execute(f'LISTEN "{rec.channel_name}"')
        first = uuid.uuid4()
        rec.insert_events([event(first, 1)])
        with pytest.raises(IntegrityError):
            rec.insert_events([event(first, 1)])  # refused: nothing inserted, the group not notified
        rec.insert_events([event(uuid.uuid4(), 1)])
        # The notifications of transactions committed before a query come with its answer (a
        # refused group's too, had it sent one: all three committed before the first query).
        deadline = time.monotonic() + 10
        while len(heard) < 2 and time.monotonic() < deadline:
            listener.execute("SELECT 1")
        listener.execute("SELECT 1")
    assert heard == [rec.channel_name, rec.channel_name]


# ---- a new data key, written in the transaction of the save that first uses it ------------------


def key_rows(url: str, subject: uuid.UUID) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            f"SELECT wrapped IS NOT NULL FROM {KEYS_TABLE} WHERE subject = %s", (str(subject),)
        ).fetchall()


def register(app: CareApplication, where: uuid.UUID, pid: uuid.UUID) -> Any:
    return app.register_person(
        id=pid, kind=PersonKind.ELDER, name="李秀英", sex=Sex.FEMALE, birth_date=date(1941, 5, 6),
        village_id=where, meta=meta(),
    )  # fmt: skip


def test_a_new_key_commits_with_its_events_or_not_at_all(app: CareApplication, fresh_database_url: str) -> None:
    url = fresh_database_url
    where = village(app)
    pid = uuid.uuid4()

    class Refused(RuntimeError):
        pass

    def refuse(cur: Any, written: Any) -> None:
        if any(e.originator_id == pid for _, e in written):
            raise Refused("refused by the test's hook")

    rec = recorder(app)
    rec.insert_hooks.append(refuse)
    try:
        with pytest.raises(Refused):
            register(app, where, pid)
    finally:
        rec.insert_hooks.remove(refuse)
    assert key_rows(url, pid) == []  # the key is not stored without its events
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM guanai_events WHERE originator_id = %s", (pid,)).fetchone() == (0,)
    register(app, where, pid)
    assert key_rows(url, pid) == [(True,)]
    assert not app.store.key_store._unconfirmed  # type: ignore[attr-defined]
    other = make_care(url, pool_size=2)  # another process opens the events with the stored key
    try:
        assert other.load(Person, pid).name == "李秀英"
    finally:
        other.close()


def test_a_new_key_whose_owner_was_erased_fails_its_save_and_stores_nothing(
    app: CareApplication, fresh_database_url: str
) -> None:
    """The folded key check (``infrastructure.folded``) reads the owner's row in the statement that
    inserts the key: an erased owner refuses the save, and neither the key nor the event stays."""
    url = fresh_database_url
    where = village(app)
    owner = uuid.uuid4()
    register(app, where, owner)
    app.erase_person(owner, "请求删除", meta())
    keys = app.store.key_store
    keys.check_master_key()
    wrapping = keys.master.held(keys._store_key_id)  # type: ignore[attr-defined]
    assert wrapping is not None
    subject = uuid.uuid4()
    wrapped = wrapping.wrap(str(subject), keys.master.suite.new_data_key())
    keys._carried.rows = [(str(subject), str(owner), wrapped, wrapping.key_id)]  # type: ignore[attr-defined]
    stored = positions(url)
    with pytest.raises(ErasedError, match="owner"):
        recorder(app).insert_events([event(subject, 1)])
    assert key_rows(url, subject) == []
    assert positions(url) == stored
    assert_audit_verifies(app, url)


def test_a_key_stored_meanwhile_by_another_process_is_used_on_the_second_try(
    app: CareApplication, fresh_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = fresh_database_url
    where = village(app)
    pid = uuid.uuid4()
    other = make_care(url, pool_size=2)
    keys = app.store.key_store
    made = keys.key_for_saving
    calls: list[str] = []

    def racing(subject: str, owner: str | None, *, new: bool = False) -> Any:
        aead = made(subject, owner, new=new)
        if subject == str(pid) and not calls:
            other.store.key_store.key_for_sealing(subject, owner)  # its own key, stored first
        calls.append(subject)
        return aead

    monkeypatch.setattr(keys, "key_for_saving", racing)
    try:
        result = register(app, where, pid)
        assert result.created and result.version == 1
        assert calls.count(str(pid)) == 2  # sealed twice: the second time with the stored key
        assert other.load(Person, pid).name == "李秀英"  # the other process opens it with its key
        assert key_rows(url, pid) == [(True,)]
    finally:
        other.close()
    assert_audit_verifies(app, url)


def test_the_same_create_again_from_another_process_answers_the_first_and_keeps_its_key(
    app: CareApplication, fresh_database_url: str
) -> None:
    url = fresh_database_url
    where = village(app)
    pid = uuid.uuid4()
    register(app, where, pid)
    other = make_care(url, pool_size=2)  # no key cached: it makes one for the create, which fails
    try:
        again = register(other, where, pid)
        assert again.created is False and again.id == pid
        assert other.load(Person, pid).name == "李秀英"  # opened with the stored key, not the one made
        assert not other.store.key_store._unconfirmed  # type: ignore[attr-defined]
    finally:
        other.close()
    assert key_rows(url, pid) == [(True,)]


def test_a_new_key_during_a_rotation_waits_for_it_in_its_own_transaction(
    app: CareApplication, fresh_database_url: str
) -> None:
    """A rotation holds the master key row: the save's key cannot be written with it (the
    group's transaction never waits for the row, other saves go on); the key is then stored on
    its own, waiting for the row as before, and the save goes through once the row is let go."""
    url = fresh_database_url
    where = village(app)
    first, second = uuid.uuid4(), uuid.uuid4()
    register(app, where, first)  # the store's master key row exists
    answers: list[Any] = []
    with psycopg.connect(url) as rotation:
        rotation.execute("SELECT key_id FROM guanai_master_key FOR UPDATE")
        waiting = threading.Thread(target=lambda: answers.append(register(app, where, second)))
        waiting.start()
        time.sleep(1.0)
        assert waiting.is_alive() and key_rows(url, second) == []
        app.add_risk_tag(first, RiskTag.DIBAO, meta())  # a save with no new key is not held up
        rotation.rollback()
    waiting.join(30)
    assert answers and answers[0].created
    assert key_rows(url, second) == [(True,)]
    fresh = make_care(url, pool_size=2)
    try:
        assert fresh.load(Person, second).name == "李秀英"
    finally:
        fresh.close()
    assert_audit_verifies(app, url)
