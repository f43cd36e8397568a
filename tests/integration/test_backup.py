"""``guanai backup`` and ``guanai restore`` on the shared PostgreSQL (each store in a database of
its own, restored into a fresh one): what a restore brings back, that an erasure made after the
backup stays made, and that bad input is refused with a clear message and nothing half-restored.
The end-to-end drill on the embedded default is tests/e2e/test_restore_drill.py."""

from __future__ import annotations

import os
import shutil
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from unittest import mock

import psycopg
import pytest

from application.care import CareApplication
from domain.base import ERASED, CommandMeta
from domain.person import Person
from domain.vocabulary import OrgLevel, PersonKind, Sex
from guanai.cli.main import main
from guanai.cli.services import RESTORE_MARKER
from infrastructure.backup import database_is_empty
from infrastructure.erasure_log import ErasureLog, ErasureLogError
from infrastructure.personal_data import KEYS_TABLE
from tests.app_support import make_care
from tests.conftest import create_database, drop_database
from tests.imports_support import id_number

PASSPHRASE = "a long passphrase kept in the county safe"
NAMES = ("欧阳秀兰", "李桂英", "王小明")


@dataclass
class Source:
    url: str
    data_dir: Path
    log: Path
    backup: Path
    passphrase_file: Path
    people: list[uuid.UUID]
    erased: uuid.UUID  # after the backup
    position: int  # the backup's last event

    def env(self, **more: str) -> dict[str, str]:
        return {"GUANAI_DATABASE_URL": self.url, "GUANAI_DATA_DIR": str(self.data_dir),
                "GUANAI_ERASURE_LOG": str(self.log), **more}  # fmt: skip


def meta() -> CommandMeta:
    return CommandMeta(actor_id="admin-7", actor_role="administrator", correlation_id=f"t-{uuid.uuid4()}",
                       occurred_at=datetime.now(UTC))  # fmt: skip


def cli(env: dict[str, str], *argv: str) -> int:
    """``guanai ARGV`` in this process with ``env`` as the only GUANAI_* settings. The test run's
    log set-up stays (tests/conftest.py): the command's own would point every later log line of
    the run at this test's captured stderr, closed once the test ends."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GUANAI_") or k == "GUANAI_TEST_EMBEDDED"}
    with (
        mock.patch.dict(os.environ, {**clean, **env}, clear=True),
        mock.patch("guanai.cli.main.configure_logging", lambda *_args, **_kwargs: None),
    ):
        return main(list(argv))


def seed(app: CareApplication) -> list[uuid.UUID]:
    m = meta()
    code = f"{uuid.uuid4().int % 10**6:06d}"
    county = app.register_org_unit(code=code + "000000", name="县", level=OrgLevel.COUNTY, parent_id=None, meta=m)
    town = app.register_org_unit(code=code + "101000", name="镇", level=OrgLevel.TOWNSHIP, parent_id=county.id, meta=m)
    village = app.register_org_unit(code=code + "101001", name="村", level=OrgLevel.VILLAGE, parent_id=town.id, meta=m)
    people = []
    for i, name in enumerate(NAMES):
        pid = uuid.uuid4()
        app.register_person(
            id=pid, kind=PersonKind.ELDER, name=name, sex=Sex.FEMALE, birth_date=date(1941, 5, 6 + i),
            village_id=village.id, id_number=id_number(date(1941, 5, 6 + i), 100 + i, male=False), household=f"红安村{i}组", meta=m,
        )  # fmt: skip
        people.append(pid)
    return people


def last_position(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT max(notification_id) FROM guanai_events").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture(scope="module")
def source(pg_base_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    """A store with three people (keys generated in its data directory), backed up; then the
    first person erased."""
    root = tmp_path_factory.mktemp("backup-source")
    url = create_database(pg_base_url, prefix="guanai_test_backup")
    data_dir, log = root / "data", root / "erasures" / "log.jsonl"
    passphrase_file = root / "passphrase"
    passphrase_file.write_text(PASSPHRASE + "\n")
    env = {"GUANAI_DATA_DIR": str(data_dir), "GUANAI_ERASURE_LOG": str(log)}
    app = make_care(url, pool_size=2, env=env)
    try:
        people = seed(app)
        position = last_position(url)
        src = Source(url, data_dir, log, root / "store.tar", passphrase_file, people, people[0], position)
        assert cli(src.env(), "backup", "--out", str(src.backup), "--passphrase-file", str(passphrase_file)) == 0
        app.erase_person(people[0], "the family asked (data subject request)", meta())
        yield src
    finally:
        app.close()
        drop_database(pg_base_url, url)


@pytest.fixture
def target(pg_base_url: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An empty database and a data directory path that does not exist yet."""
    url = create_database(pg_base_url, prefix="guanai_test_restore")
    try:
        yield url, tmp_path / "restored-data"
    finally:
        drop_database(pg_base_url, url)


def restore(src: Source, url: str, data_dir: Path, *extra: str, backup: Path | None = None, **env: str) -> int:
    settings = {"GUANAI_DATABASE_URL": url, "GUANAI_DATA_DIR": str(data_dir), "GUANAI_ERASURE_LOG": str(src.log)}
    return cli({**settings, **env}, "restore", str(backup or src.backup), *extra)


def test_the_archive_holds_a_manifest_the_dump_and_the_sealed_keys_and_no_key_in_the_clear(source: Source) -> None:
    with tarfile.open(source.backup) as tar:
        assert tar.getnames() == ["manifest.json", "database.dump", "keys.sealed"]
        blob = b"".join(tar.extractfile(m).read() for m in tar.getmembers())  # type: ignore[union-attr]
    for name in ("master-key", "chain-key", "lookup-key"):
        assert (source.data_dir / name).read_text().strip().encode() not in blob
    assert source.backup.stat().st_mode & 0o077 == 0  # the archive is for its owner only


def test_a_restore_brings_the_store_back_and_erases_again_whoever_was_erased_after_the_backup(
    source: Source, target: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, data_dir = target
    assert restore(source, url, data_dir, "--passphrase-file", str(source.passphrase_file)) == 0
    err = capsys.readouterr().err
    assert f"erased again: person {source.erased}" in err and "1 applied again" in err
    assert "the backup's head at position" in err and "matches" in err

    app = make_care(url, pool_size=2, env={"GUANAI_DATA_DIR": str(data_dir), "GUANAI_ERASURE_LOG": str(source.log)})
    try:
        erased, kept = app.load(Person, source.erased), app.load(Person, source.people[1])
        assert (erased.erased, erased.name, erased.id_number) == (True, ERASED, ERASED)
        assert (kept.erased, kept.name, kept.household) == (False, NAMES[1], "红安村1组")
        assert app.names(source.people) == {
            source.erased: ERASED,
            source.people[1]: NAMES[1],
            source.people[2]: NAMES[2],
        }
    finally:
        app.close()
    with psycopg.connect(url) as conn:
        key = conn.execute(f"SELECT wrapped, destroyed_by FROM {KEYS_TABLE} WHERE subject = %s", (str(source.erased),))
        assert key.fetchone() == (None, "admin-7")  # the key is gone again, by the administrator who erased
        statuses = dict(conn.execute("SELECT id, status FROM reg_persons WHERE id = ANY(%s)", (source.people,)))
    assert statuses == {source.erased: "erased", source.people[1]: "active", source.people[2]: "active"}
    # The restored keys are the backed-up store's: the chain verifies with them.
    assert cli({"GUANAI_DATABASE_URL": url, "GUANAI_DATA_DIR": str(data_dir)}, "audit", "verify") == 0
    assert not (data_dir / RESTORE_MARKER).exists()
    # The replayed erasure is in the log again, at its new position: a second restore finds it done.
    entries = [e for e in ErasureLog(source.log).entries() if e.person == str(source.erased)]
    assert len(entries) == 2 and entries[1].position > source.position


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing", "no such file"),
        ("flipped", "database.dump does not match the checksum"),
        ("truncated", "damaged or not a backup archive"),
        ("not-a-tar", "damaged or not a backup archive"),
        ("wrong-passphrase", "wrong passphrase"),
        ("no-passphrase", "keys are sealed: set GUANAI_BACKUP_PASSPHRASE"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message_and_nothing_restored(
    source: Source, target: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str,
    message: str,
) -> None:  # fmt: skip
    url, data_dir = target
    bad, passphrase = tmp_path / "bad.tar", source.passphrase_file
    data = source.backup.read_bytes()
    if damage == "flipped":
        at = len(data) // 2  # inside the dump
        bad.write_bytes(data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :])
    elif damage == "truncated":
        bad.write_bytes(data[: len(data) // 3])
    elif damage == "not-a-tar":
        bad.write_text("姓名,公民身份号码\n")
    else:
        shutil.copy(source.backup, bad)
    if damage == "missing":
        bad.unlink()
    if damage == "wrong-passphrase":
        passphrase = tmp_path / "wrong"
        passphrase.write_text("not the passphrase it was sealed with")
    extra = () if damage == "no-passphrase" else ("--passphrase-file", str(passphrase))
    assert restore(source, url, data_dir, *extra, backup=bad) == 1
    assert message in capsys.readouterr().err
    assert not data_dir.exists() and database_is_empty(url)[0]


def test_a_target_that_is_not_empty_is_refused(
    source: Source, target: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, data_dir = target
    data_dir.mkdir()
    (data_dir / "postgres").mkdir()
    assert restore(source, url, data_dir, "--passphrase-file", str(source.passphrase_file)) == 1
    assert f"the data directory {data_dir} is not empty (it holds postgres)" in capsys.readouterr().err
    shutil.rmtree(data_dir)
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE someone_elses (id int)")
    assert restore(source, url, data_dir, "--passphrase-file", str(source.passphrase_file)) == 1
    assert "GUANAI_DATABASE_URL is not empty (it holds public.someone_elses)" in capsys.readouterr().err
    assert not data_dir.exists()


def test_a_restore_without_the_erasure_log_is_refused_unless_told_no_one_was_erased(
    source: Source, target: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, data_dir = target
    args = ("--passphrase-file", str(source.passphrase_file))
    assert restore(source, url, data_dir, *args, GUANAI_ERASURE_LOG=str(tmp_path / "elsewhere.jsonl")) == 1
    assert "there is no erasure log at" in capsys.readouterr().err
    assert not data_dir.exists() and database_is_empty(url)[0]


def test_a_store_recovered_to_an_earlier_point_is_caught_up_by_replaying_the_erasure_log(
    source: Source, target: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As after a point-in-time recovery: a store from before the erasure, with its keys."""
    url, data_dir = target
    no_log = str(tmp_path / "not-here.jsonl")
    args = ("--passphrase-file", str(source.passphrase_file), "--no-erasure-log")
    assert restore(source, url, data_dir, *args, GUANAI_ERASURE_LOG=no_log) == 0
    env = {"GUANAI_DATABASE_URL": url, "GUANAI_DATA_DIR": str(data_dir), "GUANAI_ERASURE_LOG": str(source.log)}
    app = make_care(url, pool_size=2, env=env)
    assert app.load(Person, source.erased).name == NAMES[0]  # what the recovery point holds
    app.close()
    capsys.readouterr()
    assert cli(env, "erasures", "replay") == 0
    assert "1 erased again" in capsys.readouterr().err
    app = make_care(url, pool_size=2, env=env)
    assert app.load(Person, source.erased).name == ERASED and app.load(Person, source.people[1]).name == NAMES[1]
    app.close()
    assert cli(env, "erasures", "replay") == 0  # again: nothing newer than the store now
    assert "0 erased again" in capsys.readouterr().err


def test_a_backup_without_keys_restores_only_with_the_keys_given(
    source: Source, target: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, data_dir = target
    bare = tmp_path / "bare.tar"
    assert cli(source.env(), "backup", "--out", str(bare), "--no-keys") == 0
    with tarfile.open(bare) as tar:
        assert tar.getnames() == ["manifest.json", "database.dump"]
    assert restore(source, url, data_dir, backup=bare) == 1
    err = capsys.readouterr().err
    assert "holds no keys, and GUANAI_MASTER_KEY, GUANAI_CHAIN_KEY, GUANAI_LOOKUP_KEY are not set" in err
    wrong = "another-master-key-" + "w" * 32
    assert restore(source, url, data_dir, backup=bare, GUANAI_MASTER_KEY=wrong) == 1
    assert "this backup's store is under" in capsys.readouterr().err
    keys = {f"GUANAI_{n.upper().replace('-', '_')}": (source.data_dir / n).read_text().strip()
            for n in ("master-key", "chain-key", "lookup-key")}  # fmt: skip
    assert restore(source, url, data_dir, backup=bare, **keys) == 0
    assert "0 applied again" in capsys.readouterr().err  # taken after the erasure: it is in the backup
    app = make_care(url, pool_size=2, env={"GUANAI_DATA_DIR": str(data_dir), **keys})
    assert app.load(Person, source.erased).erased and app.load(Person, source.people[2]).name == NAMES[2]
    app.close()
    assert not any((data_dir / n).exists() for n in ("master-key", "chain-key", "lookup-key"))


def test_a_restore_whose_chain_does_not_verify_leaves_nothing_behind(
    pg_base_url: str, source: Source, target: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, data_dir = target
    tampered_url = create_database(pg_base_url, prefix="guanai_test_tampered")
    try:
        env = {"GUANAI_DATA_DIR": str(tmp_path / "tampered-data"), "GUANAI_ERASURE_LOG": str(source.log)}
        app = make_care(tampered_url, pool_size=2, env=env)
        seed(app)
        app.close()
        with psycopg.connect(tampered_url) as conn:  # someone with SQL access rewrites an event
            conn.execute("UPDATE guanai_events SET state = convert_to(replace(convert_from(state, 'UTF8'), "
                         "'\"elder\"', '\"child\"'), 'UTF8') WHERE notification_id = 5")  # fmt: skip
        archive = tmp_path / "tampered.tar"
        args = ("--passphrase-file", str(source.passphrase_file))
        assert cli({"GUANAI_DATABASE_URL": tampered_url, **env}, "backup", "--out", str(archive), *args) == 0
    finally:
        drop_database(pg_base_url, tampered_url)
    assert restore(source, url, data_dir, *args, backup=archive) == 1
    assert "the restored audit chain does not verify: at position 5" in capsys.readouterr().err
    assert not data_dir.exists() and database_is_empty(url)[0]


def test_a_data_directory_left_by_an_unfinished_restore_is_refused_by_every_command(tmp_path: Path) -> None:
    (tmp_path / RESTORE_MARKER).write_text("{}")
    with pytest.raises(SystemExit, match="did not finish"):
        cli({"GUANAI_DATA_DIR": str(tmp_path), "GUANAI_DATABASE_URL": "postgresql://nowhere/x"}, "audit", "verify")


def test_an_erasure_the_log_cannot_hold_is_refused_and_nothing_is_erased(
    fresh_database_url: str, tmp_path: Path
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    env = {"GUANAI_DATA_DIR": str(tmp_path / "data"), "GUANAI_ERASURE_LOG": str(blocked / "log.jsonl")}
    app = make_care(fresh_database_url, pool_size=2, env=env)
    try:
        pid = seed(app)[0]
        with pytest.raises(ErasureLogError, match="cannot be written"):
            app.erase_person(pid, "a request", meta())
        other = make_care(fresh_database_url, pool_size=2, env=env)  # another process: nothing cached
        assert not other.load(Person, pid).erased and other.load(Person, pid).name == NAMES[0]
        other.close()
    finally:
        app.close()


def test_a_passphrase_too_short_is_refused_before_anything_is_written(
    source: Source, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    short = tmp_path / "short"
    short.write_text("guanai")
    assert cli(source.env(), "backup", "--out", str(tmp_path), "--passphrase-file", str(short)) == 1
    assert "at least 16 characters" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [short]


def test_a_backup_never_overwrites_another(source: Source, capsys: pytest.CaptureFixture[str]) -> None:
    before = source.backup.read_bytes()
    args = ("--passphrase-file", str(source.passphrase_file))
    assert cli(source.env(), "backup", "--out", str(source.backup), *args) == 1
    assert "exists already" in capsys.readouterr().err
    assert source.backup.read_bytes() == before
