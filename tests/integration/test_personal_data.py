"""Sealing personal fields per data subject: what is stored, what is read back, what a wrong key
or a moved blob does, what erasure leaves, and one key per subject under concurrency."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, UUIDAsHex

from application.care import CareApplication, DateAsISO
from domain.base import ERASED, CommandMeta, ErasedError
from domain.org_unit import OrgUnit
from domain.person import Person
from domain.vocabulary import OrgLevel, PersonKind, Sex
from infrastructure.personal_data import (
    KEYS_TABLE,
    SEALED_FIELD,
    InMemoryKeyStore,
    MasterKey,
    MasterKeyError,
    SealError,
    SealingMapper,
)
from tests.app_support import make_care

MASTER = "test-master-key-" + "m" * 32
NAME, ID_NUMBER = "欧阳秀兰", "530428194105060027"


def app_on(url: str, master: str = MASTER, **env: str) -> CareApplication:
    return make_care(url, pool_size=4, env={"GUANAI_MASTER_KEY": master, **env})


def village(app: CareApplication, meta: CommandMeta) -> uuid.UUID:
    code = f"{uuid.uuid4().int % 10**6:06d}"
    county = app.register_org_unit(code=code + "000000", name="县", level=OrgLevel.COUNTY, parent_id=None, meta=meta)
    town = app.register_org_unit(
        code=code + "101000", name="镇", level=OrgLevel.TOWNSHIP, parent_id=county.id, meta=meta
    )
    return app.register_org_unit(
        code=code + "101001", name="村", level=OrgLevel.VILLAGE, parent_id=town.id, meta=meta
    ).id


def register(app: CareApplication, meta: CommandMeta, village_id: uuid.UUID, **extra: Any) -> uuid.UUID:
    pid = uuid.uuid4()
    app.register_person(
        id=pid, kind=PersonKind.ELDER, name=NAME, sex=Sex.FEMALE, birth_date=date(1941, 5, 6), village_id=village_id,
        id_number=ID_NUMBER, household="元江县因远镇红安村3组12号", meta=meta, **extra,
    )  # fmt: skip
    return pid


def stored_state(url: str, pid: uuid.UUID, version: int = 1) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT state FROM guanai_events WHERE originator_id = %s AND originator_version = %s", (pid, version)
        ).fetchone()
    return json.loads(bytes(row[0]))


def test_personal_fields_are_stored_sealed_and_read_back_in_the_clear(
    fresh_database_url: str, meta: CommandMeta
) -> None:
    app = app_on(fresh_database_url)
    pid = register(app, meta, village(app, meta))

    state = stored_state(fresh_database_url, pid)
    assert not {"name", "id_number", "household"} & set(state)
    subject, blob = state[SEALED_FIELD]
    assert subject == str(pid) and base64.b64decode(blob)[0] == 1
    # Empty personal fields say nothing about anyone: they stay in the clear (a guardian-less elder).
    assert (state["guardian"], state["parents"], state["absent_children"]) == (None, [], [])
    assert state["kind"] == "elder" and state["birth_date"]  # what statistics need stays clear

    person = app.load(Person, pid)
    assert (person.name, person.id_number, person.household) == (NAME, ID_NUMBER, "元江县因远镇红安村3组12号")
    assert not person.erased
    app.close()


def test_a_sealed_blob_moved_to_another_event_does_not_open(fresh_database_url: str, meta: CommandMeta) -> None:
    app = app_on(fresh_database_url)
    unit = village(app, meta)
    first, second = register(app, meta, unit), register(app, meta, unit)
    blob = stored_state(fresh_database_url, first)[SEALED_FIELD][1]
    moved = stored_state(fresh_database_url, second)
    moved[SEALED_FIELD][1] = blob  # someone with SQL access copies one person's data onto another
    with psycopg.connect(fresh_database_url) as conn:
        conn.execute(
            "UPDATE guanai_events SET state = %s WHERE originator_id = %s AND originator_version = 1",
            (json.dumps(moved).encode(), second),
        )
    with pytest.raises(SealError, match="does not open"):
        app_on(fresh_database_url).load(Person, second)
    app.close()


def test_another_master_key_is_refused_with_a_clear_message(fresh_database_url: str, meta: CommandMeta) -> None:
    app = app_on(fresh_database_url)
    pid = register(app, meta, village(app, meta))
    other = app_on(fresh_database_url, master="another-master-key-" + "o" * 32)
    with pytest.raises(MasterKeyError, match="same GUANAI_MASTER_KEY"):
        other.load(Person, pid)
    with pytest.raises(MasterKeyError, match="at least 32"):
        MasterKey("short")
    app.close()
    other.close()


def test_a_wrapped_key_copied_to_another_subject_does_not_unwrap(fresh_database_url: str, meta: CommandMeta) -> None:
    app = app_on(fresh_database_url)
    unit = village(app, meta)
    first, second = register(app, meta, unit), register(app, meta, unit)
    with psycopg.connect(fresh_database_url) as conn:
        conn.execute(
            f"UPDATE {KEYS_TABLE} SET wrapped = (SELECT wrapped FROM {KEYS_TABLE} WHERE subject = %s) WHERE subject = %s",
            (str(first), str(second)),
        )
    with pytest.raises(SealError, match="does not unwrap"):
        app_on(fresh_database_url).load(Person, second)
    app.close()


def test_erasure_substitutes_the_declared_values_and_refuses_new_data(
    fresh_database_url: str, meta: CommandMeta
) -> None:
    app = app_on(fresh_database_url)
    unit = village(app, meta)
    pid = register(app, meta, unit)
    kept = register(app, meta, unit)
    app.erase_person(pid, "请求删除 (data subject request)", meta)

    fresh = app_on(fresh_database_url)  # another process: nothing cached
    person = fresh.load(Person, pid)
    assert (person.name, person.id_number, person.household, person.erased) == (ERASED, ERASED, ERASED, True)
    assert person.guardian is None  # was empty, stays empty
    assert fresh.load(Person, kept).name == NAME
    assert fresh.personal_data_erased(pid) and not fresh.personal_data_erased(kept)
    with psycopg.connect(fresh_database_url) as conn:
        row = conn.execute(
            f"SELECT wrapped, destroyed_at, destroyed_by, destroy_reason, destroyed_seq FROM {KEYS_TABLE} WHERE subject = %s",
            (str(pid),),
        ).fetchone()
    assert row[0] is None and row[1] is not None and row[2] == meta.actor_id and row[3].startswith("请求删除")
    assert row[4] >= 1
    with pytest.raises(ErasedError):
        fresh.store.key_store.key_for_sealing(str(pid), str(pid))
    with pytest.raises(ErasedError):
        fresh.assign_guardian(pid, {"name": "某人", "relation": "neighbour"}, meta)
    app.close()
    fresh.close()


def test_a_process_notices_an_erasure_elsewhere_within_the_cache_interval(
    fresh_database_url: str, meta: CommandMeta
) -> None:
    here = app_on(fresh_database_url, GUANAI_KEY_CACHE_SECONDS="0")
    pid = register(here, meta, village(here, meta))
    assert here.load(Person, pid).name == NAME  # its key is cached here now
    elsewhere = app_on(fresh_database_url)
    elsewhere.erase_person(pid, "erasure request", meta)
    assert here.history(pid)[0].name == ERASED
    here.close()
    elsewhere.close()


def test_a_key_read_while_an_erasure_is_taken_in_is_used_once_and_not_kept(
    fresh_database_url: str, meta: CommandMeta
) -> None:
    """Another API process reads the person's key just before the erasure commits; a refresh in
    another of its threads takes the destruction in before that read remembers the key. The
    read may still show the name (it began before the erasure), but nothing after it does."""
    here = app_on(fresh_database_url, GUANAI_KEY_CACHE_SECONDS="0")
    elsewhere = app_on(fresh_database_url, GUANAI_KEY_CACHE_SECONDS="0")
    pid = register(here, meta, village(here, meta))
    keys = elsewhere.store.key_store
    keys.refresh(force=True)
    row_read, go_on = threading.Event(), threading.Event()
    entry = keys._entry

    def slow_entry(*args: Any) -> Any:  # between reading the wrapped key and remembering it
        row_read.set()
        assert go_on.wait(10)
        return entry(*args)

    keys._entry = slow_entry  # type: ignore[method-assign]
    reader = threading.Thread(target=lambda: elsewhere.load(Person, pid))
    reader.start()
    assert row_read.wait(10)
    here.erase_person(pid, "erasure request", meta)
    keys.refresh(force=True)  # another request of that process takes the destruction in
    go_on.set()
    reader.join(10)
    keys._entry = entry  # type: ignore[method-assign]
    assert elsewhere.names([pid]) == {pid: ERASED}
    assert elsewhere.history(pid)[0].name == ERASED
    here.close()
    elsewhere.close()


def test_a_process_with_another_master_key_writes_nothing_under_it(fresh_database_url: str, meta: CommandMeta) -> None:
    right = app_on(fresh_database_url)
    unit = village(right, meta)
    first = register(right, meta, unit)
    wrong = app_on(fresh_database_url, master="another-master-key-" + "w" * 32)
    before = right.recorder.max_notification_id()
    with pytest.raises(MasterKeyError, match="same GUANAI_MASTER_KEY"):
        register(wrong, meta, unit)
    assert right.recorder.max_notification_id() == before
    with psycopg.connect(fresh_database_url) as conn:
        ids = {r[0] for r in conn.execute(f"SELECT DISTINCT master_key_id FROM {KEYS_TABLE}")}
    assert ids == {right.store.key_store.master.key_id}
    assert right.load(Person, first).name == NAME
    right.close()
    wrong.close()


def test_concurrent_first_uses_make_one_key(fresh_database_url: str, meta: CommandMeta) -> None:
    apps = [app_on(fresh_database_url) for _ in range(2)]
    apps[0].load(OrgUnit, village(apps[0], meta))  # tables exist
    subject = f"responder:{uuid.uuid4()}"
    barrier = threading.Barrier(8)
    keys: list[Any] = []

    def first_use(app: CareApplication) -> None:
        barrier.wait()
        keys.append(app.store.key_store.key_for_sealing(subject, None))

    threads = [threading.Thread(target=first_use, args=(apps[n % 2],)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    probe = b"same key everywhere"
    sealed = keys[0].encrypt(b"\0" * 12, probe, None)
    assert all(k.decrypt(b"\0" * 12, sealed, None) == probe for k in keys)
    with psycopg.connect(fresh_database_url) as conn:
        assert conn.execute(f"SELECT count(*) FROM {KEYS_TABLE} WHERE subject = %s", (subject,)).fetchone()[0] == 1
    for app in apps:
        app.close()


def test_the_in_memory_key_store_seals_and_erases_like_the_database_one() -> None:
    keys = InMemoryKeyStore(lambda: MasterKey(MASTER))
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DatetimeAsISO(), DateAsISO()):
        transcoder.register(transcoding)
    mapper = SealingMapper(transcoder, keys)
    event = Person.LeftProgramme(
        originator_id=uuid.uuid4(), originator_version=2, timestamp=datetime.now(UTC), occurred_at=datetime.now(UTC),
        actor_id="a", actor_role="administrator", correlation_id="c", reason="搬到昆明和儿子住",
    )  # fmt: skip
    stored = mapper.to_stored_event(event)
    assert "搬到昆明".encode() not in stored.state and b"\\u642c" not in stored.state
    assert mapper.to_domain_event(stored).reason == "搬到昆明和儿子住"
    keys.destroy(str(event.originator_id))
    assert mapper.to_domain_event(stored).reason == ERASED


def test_notes_on_a_report_filed_without_a_description_are_erased_with_the_person(
    fresh_database_url: str, meta: CommandMeta
) -> None:
    from domain.emergency import ActionKind, Category, EmergencyReport
    from domain.roster import Severity

    app = app_on(fresh_database_url)
    pid = register(app, meta, village(app, meta))
    report = app.file_emergency(
        id=uuid.uuid4(), category=Category.NEGLECT, severity=Severity.NORMAL, description="", person_id=pid, meta=meta
    ).id
    app.record_emergency_action(report, ActionKind.ON_SCENE, "家里没有吃的，已送米面", meta)
    assert app.load(EmergencyReport, report).actions[0]["notes"] == "家里没有吃的，已送米面"
    app.erase_person(pid, "erasure request", meta)
    fresh = app_on(fresh_database_url)
    assert fresh.load(EmergencyReport, report).actions[0]["notes"] == ERASED
    assert fresh.personal_data_erased(report)
    app.close()
    fresh.close()
