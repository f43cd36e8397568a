"""Rotating the master key: every live data key re-wrapped under the new one in one transaction,
the sealed events untouched, processes still holding the old key refused instead of writing under
it, and the data directory's key file swapped only once the store is re-wrapped."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from application.care import CareApplication, event_store_env
from domain.base import ERASED, CommandMeta
from domain.person import Person
from infrastructure.personal_data import (
    KEYS_TABLE,
    MASTER_KEY_FILE,
    MASTER_TABLE,
    NEXT_MASTER_KEY_FILE,
    MasterKey,
    MasterKeyError,
    SealError,
    load_or_create_master_key,
    rotate_master_key,
)
from tests.test_personal_data import NAME, register, village

ROOT = Path(__file__).resolve().parents[1]
OLD = "rotation-old-master-key-" + "o" * 32
NEW = "rotation-new-master-key-" + "n" * 32


def app_with(
    url: str, master: str | None = None, data_dir: Path | None = None, previous: str | None = None
) -> CareApplication:
    env = event_store_env(url, pool_size=4)
    if master is not None:
        env["GUANAI_MASTER_KEY"] = master
    if previous is not None:
        env["GUANAI_PREVIOUS_MASTER_KEYS"] = previous
    if data_dir is not None:
        env["GUANAI_DATA_DIR"] = str(data_dir)
    return CareApplication(env)


def key_rows(url: str) -> dict[str, tuple[bytes | None, str | None]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT subject, wrapped, master_key_id FROM {KEYS_TABLE}").fetchall()
    return {r[0]: (None if r[1] is None else bytes(r[1]), r[2]) for r in rows}


def store_master(url: str) -> tuple[str, str | None]:
    with psycopg.connect(url) as conn:
        return conn.execute(f"SELECT key_id, rotated_by FROM {MASTER_TABLE}").fetchone()


def events(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT notification_id, state FROM guanai_events ORDER BY notification_id").fetchall()


def seeded(
    url: str, meta: CommandMeta, master: str | None = OLD, data_dir: Path | None = None
) -> tuple[list, uuid.UUID]:
    """Three persons under ``master``, one of them erased: (the live ones, the erased one)."""
    app = app_with(url, master, data_dir)
    vid = village(app, meta)
    live = [register(app, meta, vid), register(app, meta, vid)]
    erased = register(app, meta, vid)
    app.erase_person(erased, "asked by the family", meta)
    app.close()
    return live, erased


def test_rotation_rewraps_every_live_key_and_leaves_events_and_erasures_as_they_were(
    fresh_database_url: str, meta: CommandMeta
) -> None:
    url = fresh_database_url
    live, erased = seeded(url, meta)
    before_keys, before_events = key_rows(url), events(url)
    old_id, new_id = MasterKey(OLD).key_id, MasterKey(NEW).key_id
    assert {k for _, k in before_keys.values()} == {old_id} and store_master(url) == (old_id, None)
    seen: list[Any] = []

    rotation = rotate_master_key(url, MasterKey(OLD), MasterKey(NEW), by="op-0007", progress=seen.append, batch=2)

    after = key_rows(url)
    live_subjects = [s for s, (w, _) in before_keys.items() if w is not None]
    assert rotation.rewrapped == len(live_subjects) >= 2 and rotation.destroyed == 1 and not rotation.already
    assert seen and seen[-1].done == seen[-1].total == len(live_subjects)
    for subject in live_subjects:
        assert after[subject][1] == new_id and after[subject][0] != before_keys[subject][0]
    assert after[str(erased)] == before_keys[str(erased)] and after[str(erased)][0] is None
    assert store_master(url) == (new_id, "op-0007")
    assert events(url) == before_events  # the data keys did not change: nothing sealed is rewritten

    app = app_with(url, NEW)
    assert [app.load(Person, p).name for p in live] == [NAME, NAME]
    assert app.load(Person, erased).name == ERASED and app.load(Person, erased).erased
    app.close()
    stale = app_with(url, OLD)
    with pytest.raises(MasterKeyError, match="guanai keys rotate"):
        stale.load(Person, live[0])
    stale.close()

    again = rotate_master_key(url, MasterKey(OLD), MasterKey(NEW), by="op-0007")
    assert again.already and key_rows(url) == after


def test_a_process_still_holding_the_old_key_adds_nothing_under_it(fresh_database_url: str, meta: CommandMeta) -> None:
    url = fresh_database_url
    stale = app_with(url, OLD)
    vid = village(stale, meta)
    first = register(stale, meta, vid)  # the old process has checked the store and cached this key

    rotate_master_key(url, MasterKey(OLD), MasterKey(NEW), by="op")

    keys_before, events_before = key_rows(url), events(url)
    with pytest.raises(MasterKeyError, match=MasterKey(NEW).key_id):
        register(stale, meta, vid)
    assert key_rows(url) == keys_before and events(url) == events_before  # nothing half-written
    assert stale.load(Person, first).name == NAME  # what it cached still opens: the data key is the same
    stale.close()


def test_processes_holding_the_new_and_the_previous_key_keep_working_through_a_rotation(
    fresh_database_url: str, meta: CommandMeta
) -> None:
    """The rotation without a stop: every process gets the new GUANAI_MASTER_KEY with the old
    one in GUANAI_PREVIOUS_MASTER_KEYS, then the store is rotated under them."""
    url = fresh_database_url
    old_id, new_id = MasterKey(OLD).key_id, MasterKey(NEW).key_id
    before = app_with(url, OLD)
    vid = village(before, meta)
    first = register(before, meta, vid)
    before.close()
    both = app_with(url, NEW, previous=OLD)
    second = register(both, meta, vid)  # the store is under the old key yet: wrapped under it
    assert key_rows(url)[str(second)][1] == old_id and both.load(Person, first).name == NAME

    rotate_master_key(url, MasterKey(OLD), MasterKey(NEW), by="op")

    third = register(both, meta, vid)  # its insert under the old key finds the store rotated: under the new
    assert key_rows(url)[str(third)][1] == new_id
    assert {k for w, k in key_rows(url).values() if w is not None} == {new_id}
    both.close()
    after = app_with(url, NEW)
    assert [after.load(Person, p).name for p in (first, second, third)] == [NAME] * 3
    after.close()


def test_a_key_made_during_a_rotation_waits_for_it_and_is_then_refused(
    fresh_database_url: str, meta: CommandMeta
) -> None:
    url = fresh_database_url
    stale = app_with(url, OLD)
    vid = village(stale, meta)
    register(stale, meta, vid)
    holding, release = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def rotate() -> None:
        def hold() -> None:
            holding.set()
            release.wait(30)

        outcome["rotation"] = rotate_master_key(url, MasterKey(OLD), MasterKey(NEW), by="op", before_commit=hold)

    def make_key() -> None:
        try:
            register(stale, meta, vid)
            outcome["made"] = True
        except MasterKeyError as e:
            outcome["refused"] = str(e)

    rotator = threading.Thread(target=rotate)
    rotator.start()
    assert holding.wait(30)
    maker = threading.Thread(target=make_key)
    maker.start()
    time.sleep(0.5)
    assert maker.is_alive() and not outcome  # waits on the master key row the rotation holds
    release.set()
    rotator.join(30)
    maker.join(30)
    assert outcome["rotation"].rewrapped == 1 and "made" not in outcome
    assert MasterKey(NEW).key_id in outcome["refused"]
    assert all(k == MasterKey(NEW).key_id for w, k in key_rows(url).values() if w is not None)
    stale.close()


def test_an_erasure_during_a_rotation_still_destroys_the_key(fresh_database_url: str, meta: CommandMeta) -> None:
    url = fresh_database_url
    (kept, doomed), _ = seeded(url, meta)
    app = app_with(url, OLD)
    app.load(Person, doomed)
    holding, release = threading.Event(), threading.Event()
    erasure = threading.Thread(target=lambda: app.erase_person(doomed, "asked by the person", meta))

    def hold() -> None:
        holding.set()
        erasure.start()
        time.sleep(0.5)
        assert erasure.is_alive()  # the erasure waits for the rotation's update of the key row
        release.set()

    rotate_master_key(url, MasterKey(OLD), MasterKey(NEW), by="op", before_commit=hold)
    erasure.join(30)
    assert not erasure.is_alive()
    rows = key_rows(url)
    assert rows[str(doomed)][0] is None and rows[str(kept)][1] == MasterKey(NEW).key_id
    app.close()
    fresh = app_with(url, NEW)
    assert fresh.load(Person, doomed).name == ERASED and fresh.load(Person, kept).name == NAME
    fresh.close()


def test_a_wrong_old_key_or_a_changed_wrapped_key_changes_nothing(fresh_database_url: str, meta: CommandMeta) -> None:
    url = fresh_database_url
    live, _ = seeded(url, meta)
    other = "some-other-master-key-" + "x" * 32
    before = key_rows(url)
    with pytest.raises(MasterKeyError, match=MasterKey(OLD).key_id):
        rotate_master_key(url, MasterKey(other), MasterKey(NEW), by="op")
    with pytest.raises(MasterKeyError, match="in use"):
        rotate_master_key(url, MasterKey(OLD), MasterKey(OLD), by="op")
    assert key_rows(url) == before

    with psycopg.connect(url) as conn:
        conn.execute(
            f"UPDATE {KEYS_TABLE} SET wrapped = overlay(wrapped placing '\\xff'::bytea from 20 for 1) WHERE subject = %s",
            (str(live[1]),),
        )
    tampered = key_rows(url)
    with pytest.raises(SealError, match=str(live[1])):
        rotate_master_key(url, MasterKey(OLD), MasterKey(NEW), by="op", batch=1)
    assert key_rows(url) == tampered and store_master(url)[0] == MasterKey(OLD).key_id


def test_a_store_written_before_the_master_key_table_names_its_key_on_migration(
    fresh_database_url: str, meta: CommandMeta
) -> None:
    url = fresh_database_url
    seeded(url, meta)
    with psycopg.connect(url) as conn:
        conn.execute(f"DROP TABLE {MASTER_TABLE}")
    app = app_with(url, OLD)  # creating the tables again names the key the rows were wrapped by
    assert store_master(url) == (MasterKey(OLD).key_id, None)
    app.close()
    with pytest.raises(MasterKeyError, match=MasterKey(OLD).key_id):
        other = app_with(url, "some-other-master-key-" + "x" * 32)
        try:
            other.key_store.check_master_key()  # type: ignore[attr-defined]
        finally:
            other.close()


# ---- the data directory's key, and the command line ------------------------------------------------


def guanai(url: str, data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GUANAI_")}
    return subprocess.run(
        [sys.executable, "-m", "guanai.cli", *args], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**clean, "PYTHONPATH": str(ROOT), "GUANAI_DATABASE_URL": url, "GUANAI_DATA_DIR": str(data_dir),
             "GUANAI_LOG_LEVEL": "warning", **env},
    )  # fmt: skip


@pytest.fixture
def data_dir_store(fresh_database_url: str, meta: CommandMeta, tmp_path: Path) -> tuple[str, list[uuid.UUID], str]:
    """A store whose master key lives in the data directory ``tmp_path``: (its url, the live
    persons, the key)."""
    live, _ = seeded(fresh_database_url, meta, master=None, data_dir=tmp_path)
    return fresh_database_url, live, (tmp_path / MASTER_KEY_FILE).read_text().strip()


def test_guanai_keys_rotate_swaps_the_data_directory_key_after_the_store(
    data_dir_store: tuple[str, list[uuid.UUID], str], tmp_path: Path
) -> None:
    url, live, old_secret = data_dir_store
    old_id = MasterKey(old_secret).key_id

    status = guanai(url, tmp_path, "keys", "status")
    assert status.returncode == 0, status.stderr
    assert f"store's master key:  {old_id}" in status.stdout and "2 live, 1 destroyed" in status.stdout

    done = guanai(url, tmp_path, "keys", "rotate", "--by", "op-0003")
    assert done.returncode == 0, done.stderr
    new_secret = (tmp_path / MASTER_KEY_FILE).read_text().strip()
    new_id = MasterKey(new_secret).key_id
    assert new_secret != old_secret and not (tmp_path / NEXT_MASTER_KEY_FILE).exists()
    retired = tmp_path / f"{MASTER_KEY_FILE}.retired-{old_id}"
    assert retired.read_text().strip() == old_secret and retired.stat().st_mode & 0o077 == 0
    assert (tmp_path / MASTER_KEY_FILE).stat().st_mode & 0o077 == 0
    assert f"2 keys re-wrapped from master key {old_id} to {new_id}" in done.stderr and "2/2" in done.stderr
    assert store_master(url) == (new_id, "op-0003")
    app = app_with(url, data_dir=tmp_path)
    assert [app.load(Person, p).name for p in live] == [NAME, NAME]
    app.close()

    # A configured key is never replaced by a generated one: the new one is configured, the
    # one the store is under named as previous.
    refused = guanai(url, tmp_path, "keys", "rotate", GUANAI_MASTER_KEY=new_secret)
    assert refused.returncode == 1 and "GUANAI_PREVIOUS_MASTER_KEYS" in refused.stderr
    stale = guanai(url, tmp_path, "keys", "status", GUANAI_MASTER_KEY=old_secret)
    assert stale.returncode == 1 and f"this process holds:  {old_id} (GUANAI_MASTER_KEY)" in stale.stdout
    both = {"GUANAI_MASTER_KEY": NEW, "GUANAI_PREVIOUS_MASTER_KEYS": f"{old_secret},{new_secret}"}
    assert guanai(url, tmp_path, "keys", "status", **both).returncode == 0
    moved = guanai(url, tmp_path, "keys", "rotate", "--by", "op-0004", **both)
    assert moved.returncode == 0, moved.stderr
    assert "remove it from them" in moved.stderr and store_master(url) == (MasterKey(NEW).key_id, "op-0004")
    again = guanai(url, tmp_path, "keys", "rotate", **both)
    assert again.returncode == 0 and "already" in again.stderr
    assert guanai(url, tmp_path, "keys", "status", GUANAI_MASTER_KEY=NEW).returncode == 0
    assert guanai(url, tmp_path, "keys", "status", GUANAI_MASTER_KEY=new_secret).returncode == 1


def assert_finished(url: str, data_dir: Path, secret: str, live: list[uuid.UUID]) -> None:
    """The store is under ``secret``, which is the data directory's key now, and opens."""
    assert (data_dir / MASTER_KEY_FILE).read_text().strip() == secret
    assert not (data_dir / NEXT_MASTER_KEY_FILE).exists()
    assert store_master(url)[0] == MasterKey(secret).key_id
    app = app_with(url, data_dir=data_dir)
    assert [app.load(Person, p).name for p in live] == [NAME] * len(live)
    app.close()


@pytest.mark.parametrize("where", ["keys.after_batch", "keys.before_commit"])
def test_a_rotation_killed_before_its_commit_leaves_the_old_key_working(
    data_dir_store: tuple[str, list[uuid.UUID], str], tmp_path: Path, where: str
) -> None:
    url, live, old_secret = data_dir_store
    before = key_rows(url)

    killed = guanai(url, tmp_path, "keys", "rotate", GUANAI_FAILPOINTS=f"{where}=1")
    assert killed.returncode == -9, killed.stderr
    assert key_rows(url) == before and store_master(url)[0] == MasterKey(old_secret).key_id
    assert (tmp_path / MASTER_KEY_FILE).read_text().strip() == old_secret
    pending = (tmp_path / NEXT_MASTER_KEY_FILE).read_text().strip()  # flushed before the store was touched
    app = app_with(url, data_dir=tmp_path)
    assert app.load(Person, live[0]).name == NAME
    app.close()

    done = guanai(url, tmp_path, "keys", "rotate")
    assert done.returncode == 0, done.stderr
    assert_finished(url, tmp_path, pending, live)


def test_a_rotation_killed_after_its_commit_is_finished_by_running_it_again(
    data_dir_store: tuple[str, list[uuid.UUID], str], tmp_path: Path
) -> None:
    url, live, old_secret = data_dir_store

    killed = guanai(url, tmp_path, "keys", "rotate", GUANAI_FAILPOINTS="keys.after_commit=1")
    assert killed.returncode == -9, killed.stderr
    pending = (tmp_path / NEXT_MASTER_KEY_FILE).read_text().strip()
    assert store_master(url)[0] == MasterKey(pending).key_id  # committed under the key kept in master-key.next
    assert (tmp_path / MASTER_KEY_FILE).read_text().strip() == old_secret
    # A process started now holds the old key: it says how to finish instead of garbling anything.
    app = app_with(url, data_dir=tmp_path)
    with pytest.raises(MasterKeyError, match=NEXT_MASTER_KEY_FILE):
        app.load(Person, live[1])
    app.close()
    assert guanai(url, tmp_path, "keys", "status").returncode == 1

    finish = guanai(url, tmp_path, "keys", "rotate")
    assert finish.returncode == 0, finish.stderr
    assert "nothing to re-wrap" in finish.stderr
    assert (tmp_path / f"{MASTER_KEY_FILE}.retired-{MasterKey(old_secret).key_id}").read_text().strip() == old_secret
    assert_finished(url, tmp_path, pending, live)


def test_an_api_process_left_with_the_old_key_answers_503_and_writes_nothing(
    pg_base_url: str, nats_url: str, tmp_path: Path
) -> None:
    import httpx

    from infrastructure.settings import Settings
    from tests.api_support import Tree, auth, elder, own_server

    with (
        own_server(pg_base_url, nats_url) as server,
        httpx.Client(base_url=server.base_url, headers=auth(), timeout=30) as c,
    ):
        tree = Tree(c)
        assert c.post("/persons", json=elder(tree.village["id"])).status_code == 201
        # The store is rotated under the running server, which holds only the old key.
        old = load_or_create_master_key(None, Settings().data_path)
        rotate_master_key(server.database_url, old, MasterKey(NEW), by="op")
        keys_before, events_before = key_rows(server.database_url), events(server.database_url)

        answer = c.post("/persons", json=elder(tree.village["id"]))

        assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["type"].endswith("keys-unavailable")
        assert key_rows(server.database_url) == keys_before and events(server.database_url) == events_before


# ---- what a rotation shares with key creations and erasures -----------------------------------


def paused_rotation(url: str, old: str, new: str, pause: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """A rotation in a thread that calls ``pause()`` once, after its scan, before it locks and
    writes the key rows."""
    outcome: dict[str, Any] = {}

    def progress(p: Any) -> None:
        if p.done == p.total and "paused" not in outcome:
            outcome["paused"] = True
            pause()

    def run() -> None:
        try:
            outcome["rotation"] = rotate_master_key(url, MasterKey(old), MasterKey(new), by="op", progress=progress)
        except Exception as e:  # noqa: BLE001 - the test asserts on it
            outcome["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_a_key_owned_by_a_person_made_during_a_rotation_neither_deadlocks_nor_is_lost(
    fresh_database_url: str, meta: CommandMeta
) -> None:
    """A report's key names its owner: its creation shares the owner's row, which the rotation
    writes. It waits on the master key row first, as the rotation takes them, so the two never
    wait for each other; a process holding both keys then wraps it under the new one."""
    url = fresh_database_url
    (person, _), _ = seeded(url, meta)
    both = app_with(url, NEW, previous=OLD)
    both.key_store.check_master_key()  # type: ignore[attr-defined]
    report = str(uuid.uuid4())
    made: dict[str, Any] = {}

    def make_owned_key() -> None:
        made["key"] = both.key_store.key_for_sealing(report, str(person))

    maker = threading.Thread(target=make_owned_key)

    def pause() -> None:
        maker.start()
        time.sleep(0.5)
        assert maker.is_alive()  # waiting on the master key row the rotation holds

    rotator, outcome = paused_rotation(url, OLD, NEW, pause)
    rotator.join(30)
    maker.join(30)
    assert "error" not in outcome and outcome["rotation"].rewrapped == 2
    assert made["key"] is not None and key_rows(url)[report][1] == MasterKey(NEW).key_id
    both.close()


def test_a_new_key_gives_up_on_a_long_rotation_instead_of_holding_a_connection(
    fresh_database_url: str, meta: CommandMeta, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infrastructure import personal_data

    monkeypatch.setattr(personal_data, "ROTATION_WAIT_MS", 300)
    url = fresh_database_url
    seeded(url, meta)
    app = app_with(url, OLD)
    app.key_store.check_master_key()  # type: ignore[attr-defined]
    refused: dict[str, Any] = {}

    def pause() -> None:
        with pytest.raises(MasterKeyError, match="master key rotation") as caught:
            app.key_store.key_for_sealing(str(uuid.uuid4()), None)
        refused["error"] = caught.value

    rotator, outcome = paused_rotation(url, OLD, NEW, pause)
    rotator.join(30)
    assert "error" not in outcome and isinstance(refused["error"], MasterKeyError)
    app.close()


def test_an_erasure_holding_a_person_while_the_rotation_locks_their_keys_does_not_deadlock(
    fresh_database_url: str, meta: CommandMeta
) -> None:
    """An erasure locks the person's key row, then the rows the person owns. The rotation locks
    rows in that order too, whatever order they lie in on disk (here the person's row lies after
    their report's): one waits for the other, and neither for both."""
    url = fresh_database_url
    (person, _), _ = seeded(url, meta)
    app = app_with(url, OLD)
    report = str(uuid.uuid4())
    app.key_store.key_for_sealing(report, str(person))
    app.close()
    with psycopg.connect(url, autocommit=True) as conn:  # the person's row now after the report's on disk
        conn.execute(f"UPDATE {KEYS_TABLE} SET created_at = created_at WHERE subject = %s", (str(person),))
    eraser = psycopg.connect(url)
    try:

        def pause() -> None:
            eraser.execute(f"UPDATE {KEYS_TABLE} SET destroy_reason = 'x' WHERE subject = %s", (str(person),))

        rotator, outcome = paused_rotation(url, OLD, NEW, pause)
        deadline = time.monotonic() + 10
        while "paused" not in outcome and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the rotation now waits for the person's row
        eraser.execute(  # as the erasure goes on to the rows the person owns
            f"UPDATE {KEYS_TABLE} SET wrapped = NULL, destroyed_at = now() WHERE owner = %s AND subject <> owner",
            (str(person),),
        )
        eraser.execute(
            f"UPDATE {KEYS_TABLE} SET wrapped = NULL, destroyed_at = now() WHERE subject = %s", (str(person),)
        )
        eraser.commit()
        rotator.join(30)
    finally:
        eraser.close()
    assert "error" not in outcome, outcome.get("error")
    rows = key_rows(url)
    assert rows[str(person)][0] is None and rows[report][0] is None  # the erasure's, not re-wrapped after it
    assert outcome["rotation"].rewrapped == 1  # the other live person only


def test_two_rotations_of_one_data_directory_at_once_refuse_the_second(
    fresh_database_url: str, meta: CommandMeta, tmp_path: Path
) -> None:
    from infrastructure.personal_data import rotate_data_dir_master_key

    url = fresh_database_url
    live, _ = seeded(url, meta, master=None, data_dir=tmp_path)
    second: dict[str, Any] = {}

    def try_another() -> None:
        with pytest.raises(MasterKeyError, match="another rotation") as caught:
            rotate_data_dir_master_key(url, tmp_path, by="op-2")
        second["error"] = caught.value

    rotation, _ = rotate_data_dir_master_key(url, tmp_path, by="op-1", before_commit=try_another)
    assert isinstance(second["error"], MasterKeyError)
    assert MasterKey((tmp_path / MASTER_KEY_FILE).read_text().strip()).key_id == rotation.new_key_id
    assert store_master(url) == (rotation.new_key_id, "op-1")
    app = app_with(url, data_dir=tmp_path)
    assert [app.load(Person, p).name for p in live] == [NAME, NAME]
    app.close()


def test_a_short_previous_master_key_is_named_as_such(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError, match="every key of GUANAI_PREVIOUS_MASTER_KEYS must be at least 32"):
        load_or_create_master_key(NEW, tmp_path, previous=f"{OLD}, too-short")
    held = load_or_create_master_key(NEW, tmp_path, previous=f"{OLD}, ")
    assert held.held(MasterKey(OLD).key_id) is not None and held.held(MasterKey(NEW).key_id) is held
    assert held.held("someone-elses") is None and not list(tmp_path.iterdir())  # a configured key writes no file
