"""Signed checkpoints and proofs an outside party checks with nothing but the log's public key,
for both crypto suites, against a real PostgreSQL: an export verifies with the standalone
verifier; a newer checkpoint extends an older one; a witness co-signs; and every attack of issue
18 is refused with a reason (changed, dropped or swapped events, a forked log, a proof for
another checkpoint, a truncated proof, another signing key, a witness signature over another root)."""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from application.care import CareApplication
from guanai import bootstrap
from guanai.bootstrap import Process
from guanai.cli.proofs import publish, witness
from infrastructure import merkle, verifier
from infrastructure.audit import Audit
from infrastructure.audit_html import render
from infrastructure.merkle import check_tree
from infrastructure.personal_data import MasterKey, MasterKeyError, rotate_master_key
from infrastructure.settings import load_settings
from infrastructure.suites import GM, SuiteError, suite
from infrastructure.verifier import PublicKey, VerificationError
from tests.conftest import create_database, drop_database
from tests.integration.test_chain import seed

ROOT = Path(__file__).resolve().parent.parent.parent
VERIFIER = ROOT / "infrastructure" / "verifier.py"


@dataclass
class Log:
    suite: str
    url: str
    app: CareApplication
    audit: Audit
    persons: list[uuid.UUID]
    data_dir: Path

    @property
    def key(self) -> PublicKey:
        return PublicKey.from_document(self.audit.public_key())

    def sql(self, statement: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def export(self, person: uuid.UUID) -> dict[str, Any]:
        return json.loads(json.dumps(self.audit.export(person, actor_id="t", actor_role="auditor"), ensure_ascii=False))

    def check(self, doc: dict[str, Any]) -> int:
        return verifier.verify_export(doc, self.key)


def env(url: str, data_dir: Path, suite_name: str) -> dict[str, str]:
    return {
        "GUANAI_DATABASE_URL": url,
        "GUANAI_DB_POOL_SIZE": "4",
        "GUANAI_CHAIN_KEY": "proofs-test-key-" + "k" * 32,
        "GUANAI_MASTER_KEY": "proofs-master-key-" + "m" * 32,
        "GUANAI_DATA_DIR": str(data_dir),
        "GUANAI_CRYPTO_SUITE": suite_name,
    }


def app_for(variables: dict[str, str], *, keep_tree: bool = True) -> CareApplication:
    """As the composition root builds a command-line process's application, with these settings."""
    settings = load_settings({**os.environ, **variables})
    assert settings.database_url
    return bootstrap.care_application(settings, Process.CLI, settings.database_url, keep_tree=keep_tree)


@pytest.fixture(scope="module", params=["international", "gm"])
def log(request: pytest.FixtureRequest, pg_base_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Log]:
    url = create_database(pg_base_url, prefix=f"guanai_test_proofs_{request.param}")
    data_dir = tmp_path_factory.mktemp(f"proofs-{request.param}")
    app = app_for(env(url, data_dir, request.param))
    try:
        yield Log(request.param, url, app, Audit(app, url), seed(app, persons=3), data_dir)
    finally:
        app.close()
        drop_database(pg_base_url, url)


def refused(call: Any, reason: str) -> None:
    with pytest.raises(VerificationError, match=reason):
        call()


# ---- the suites ---------------------------------------------------------------------------------


def test_the_store_keeps_the_suite_it_was_created_with(log: Log) -> None:
    assert log.sql("SELECT suite FROM guanai_crypto_suite") == [(log.suite,)]
    assert log.app.recorder.crypto_suite.name == log.suite and log.key.suite == log.suite
    other = "gm" if log.suite == "international" else "international"
    with pytest.raises(SuiteError, match=f"created with the {log.suite} suite"):
        app_for(env(log.url, log.data_dir, other))


def test_personal_data_is_sealed_with_the_suites_aead_and_reads_back(log: Log) -> None:
    person = log.persons[0]
    state = json.loads(
        log.sql("SELECT state FROM guanai_events WHERE originator_id = %s AND originator_version = 1", (person,))[0][0]
    )
    assert "李秀英" not in json.dumps(state, ensure_ascii=False)
    blob = base64.b64decode(state["_sealed"][1])
    assert blob[0] == suite(log.suite).blob_format
    assert log.app.names([person])[person] == "李秀英"
    wrapped = log.sql("SELECT wrapped FROM guanai_subject_keys WHERE subject = %s", (str(person),))[0][0]
    assert len(bytes(wrapped)) == 12 + suite(log.suite).data_key_bytes + 16  # nonce, data key, tag


# ---- what an outside party checks ------------------------------------------------------------------


def test_an_export_verifies_with_the_standalone_verifier_and_only_the_public_key(log: Log, tmp_path: Path) -> None:
    doc = log.export(log.persons[0])
    assert log.check(doc) == 3
    (tmp_path / "key.json").write_text(json.dumps(log.audit.public_key()))
    (tmp_path / "case.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    # Run as an outside party would: the file alone, outside the project's packages.
    outside = subprocess.run(
        [sys.executable, str(VERIFIER), "--key", "key.json", "export", "case.json"],
        cwd=tmp_path,
        check=False,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert outside.returncode == 0, outside.stderr
    assert "OK: the 3 events" in outside.stdout
    page = render(doc)  # the printed copy names the signed checkpoint the proofs lead to
    assert "签名检查点" in page and doc["proofs"]["checkpoint"]["root"] in page


def test_a_newer_checkpoint_extends_an_older_one_and_the_tree_matches_the_events(log: Log) -> None:
    old = log.audit.latest_checkpoint()
    seed(log.app, persons=1)
    new = log.audit.latest_checkpoint()
    assert int(new["size"]) > int(old["size"])
    proof = log.audit.consistency(int(old["size"]))
    verifier.verify_checkpoint(new, log.key)
    verifier.verify_extends(old, new, proof["proof"], log.key)
    with psycopg.connect(log.url) as conn:
        checked, failures = check_tree(conn, log.audit.tree, "guanai_events", new)
    assert failures == [] and checked == int(new["size"]) == log.sql("SELECT count(*) FROM guanai_events")[0][0]


def test_a_published_folder_is_witnessed_and_verified(log: Log, tmp_path: Path) -> None:
    folder = tmp_path / "published"
    publish(log.audit, folder)
    key_file = tmp_path / "witness-key"
    assert (
        subprocess.run(
            [
                sys.executable,
                "-m",
                "guanai.cli",
                "audit",
                "keygen",
                "--suite",
                log.suite,
                "--out",
                str(key_file),
                "--name",
                "县纪委监委",
            ],
            check=False,
            capture_output=True,
            text=True,
        ).returncode
        == 0
    )
    state = tmp_path / "witness-state.json"
    assert witness(folder, key_file, state, None) == 0
    seed(log.app, persons=1)
    publish(log.audit, folder)
    assert witness(folder, key_file, state, None) == 0
    wkey = PublicKey.from_document(json.loads((tmp_path / "witness-key.pub.json").read_text()))
    assert verifier.verify_folder(folder, log.key, [wkey], require_witnesses=0) == 2
    newest = max(folder.glob("checkpoint-*.json"), key=lambda p: int(p.stem.split("-")[1]))
    verifier.verify_checkpoint(json.loads(newest.read_text()), log.key, [wkey], require_witnesses=1)
    publish(log.audit, folder)  # the witnesses' co-signatures go into the store: the API serves them
    served = log.audit.checkpoint_at(int(newest.stem.split("-")[1]))
    verifier.verify_checkpoint(served, log.key, [wkey], require_witnesses=1)
    ran = subprocess.run(
        [
            sys.executable,
            str(VERIFIER),
            "--key",
            str(folder / "log-key.json"),
            "--witness-key",
            str(tmp_path / "witness-key.pub.json"),
            "checkpoint",
            str(newest),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 0, ran.stderr


# ---- attacks: each refused with its reason ---------------------------------------------------------


def test_a_changed_event_is_refused(log: Log) -> None:
    person = log.persons[1]
    position = log.sql(
        "SELECT notification_id FROM guanai_events WHERE originator_id = %s AND originator_version = 2", (person,)
    )[0][0]
    log.audit.latest_checkpoint()
    log.sql("UPDATE guanai_events SET state = state || ' '::bytea WHERE notification_id = %s", (position,))
    try:
        refused(lambda: log.check(log.export(person)), "event 2 .*is not leaf 4|event 2 .*not leaf")
        with psycopg.connect(log.url) as conn:
            _, failures = check_tree(conn, log.audit.tree, "guanai_events", log.audit.latest_checkpoint())
        assert (position, "event-changed") in [(p, k) for p, k, _ in failures]
    finally:
        log.sql(
            "UPDATE guanai_events SET state = substring(state from 1 for length(state) - 1) WHERE notification_id = %s",
            (position,),
        )
    assert log.check(log.export(person)) == 3


def test_a_changed_field_in_the_export_itself_is_refused(log: Log) -> None:
    doc = log.export(log.persons[0])
    forged = copy.deepcopy(doc)
    forged["proofs"]["leaves"][1]["stored"] = base64.b64encode(
        base64.b64decode(forged["proofs"]["leaves"][1]["stored"]) + b" "
    ).decode()
    refused(lambda: log.check(forged), "not leaf")
    shown = copy.deepcopy(doc)
    field = next(k for k, v in shown["events"][1]["fields"].items() if isinstance(v, str))
    shown["events"][1]["fields"][field] = "伪造"
    refused(lambda: log.check(shown), f"field '{field}' is shown as")


def test_a_dropped_event_is_refused(log: Log) -> None:
    person = log.persons[2]
    doc = log.export(person)
    row = log.sql("SELECT * FROM guanai_events WHERE originator_id = %s AND originator_version = 2", (person,))[0]
    log.sql("DELETE FROM guanai_events WHERE originator_id = %s AND originator_version = 2", (person,))
    try:
        with psycopg.connect(log.url) as conn:
            _, failures = check_tree(conn, log.audit.tree, "guanai_events", log.audit.latest_checkpoint())
        assert "event-deleted" in {k for _, k, _ in failures}
    finally:
        columns = log.sql(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'guanai_events' ORDER BY ordinal_position"
        )
        log.sql(
            f"INSERT INTO guanai_events ({', '.join(c[0] for c in columns)}) VALUES ({', '.join(['%s'] * len(row))})",
            row,
        )
    middle = copy.deepcopy(doc)  # an export with an event left out
    del middle["events"][1], middle["proofs"]["leaves"][1]
    middle["stream"]["events"] = 2
    refused(lambda: log.check(middle), "versions are not 1..2 in order")
    last = copy.deepcopy(doc)
    last["events"].pop()
    last["proofs"]["leaves"].pop()
    refused(lambda: log.check(last), "says the stream has 3 events and shows 2")


def test_two_swapped_events_are_refused(log: Log) -> None:
    a, b = log.persons[0], log.persons[1]
    pa = log.sql("SELECT notification_id FROM guanai_events WHERE originator_id = %s AND originator_version = 3", (a,))[
        0
    ][0]
    pb = log.sql("SELECT notification_id FROM guanai_events WHERE originator_id = %s AND originator_version = 3", (b,))[
        0
    ][0]

    def swap() -> None:
        with psycopg.connect(log.url) as conn:  # the positions' index is unique row by row: through a free one
            for old, new in ((pa, -1), (pb, pa), (-1, pb)):
                conn.execute("UPDATE guanai_events SET notification_id = %s WHERE notification_id = %s", (new, old))

    swap()
    try:
        refused(lambda: log.check(log.export(a)), "event 3 .*not leaf")
    finally:
        swap()
    doc = log.export(a)
    doc["proofs"]["leaves"][0], doc["proofs"]["leaves"][1] = doc["proofs"]["leaves"][1], doc["proofs"]["leaves"][0]
    refused(lambda: log.check(doc), "its proof is for position")


def test_a_forked_log_is_refused(log: Log) -> None:
    cp = log.audit.latest_checkpoint()
    key = log.audit.checkpoints.key
    fork = merkle.sign_checkpoint(key, cp["origin"], int(cp["size"]), bytes(32))  # same size, another root, same key
    verifier.verify_checkpoint(fork, log.key)  # each alone is validly signed...
    refused(lambda: verifier.verify_extends(cp, fork, [], log.key), "forked log")  # ...together they are a fork


def test_a_proof_for_another_checkpoint_is_refused(log: Log) -> None:
    doc = log.export(log.persons[0])
    seed(log.app, persons=1)
    newer = log.audit.latest_checkpoint()
    moved = copy.deepcopy(doc)
    moved["proofs"]["checkpoint"] = newer
    refused(lambda: log.check(moved), f"its proof is for a tree of {doc['proofs']['checkpoint']['size']} leaves")
    relabelled = copy.deepcopy(moved)
    for leaf in relabelled["proofs"]["leaves"]:
        leaf["tree_size"] = newer["size"]
    refused(lambda: log.check(relabelled), "not leaf|truncated|more hashes")


def test_a_truncated_proof_is_refused(log: Log) -> None:
    doc = log.export(log.persons[0])
    doc["proofs"]["leaves"][0]["proof"].pop()
    refused(lambda: log.check(doc), "truncated")
    cp = log.audit.latest_checkpoint()
    proof = log.audit.consistency(1, int(cp["size"]))
    old = log.audit.checkpoint_at(1)
    refused(lambda: verifier.verify_extends(old, cp, proof["proof"][:-1], log.key), "truncated|does not")


def test_a_checkpoint_signed_with_another_key_is_refused(log: Log) -> None:
    cp = log.audit.latest_checkpoint()
    other = suite(log.suite).new_signing_key()
    forged = merkle.sign_checkpoint(other, cp["origin"], int(cp["size"]), bytes.fromhex(cp["root"]))
    refused(lambda: verifier.verify_checkpoint(forged, log.key), "signed by key .* not by the log's key")
    forged["key_id"] = log.key.key_id  # claiming the log's key does not help
    refused(lambda: verifier.verify_checkpoint(forged, log.key), "does not verify under the log's key")


def test_a_witness_signature_over_another_root_is_refused(log: Log) -> None:
    cp = log.audit.latest_checkpoint()
    wkey = suite(log.suite).new_signing_key("县纪委监委")
    other_root = merkle.sign_checkpoint(log.audit.checkpoints.key, cp["origin"], int(cp["size"]) + 1, bytes(32))
    cp = copy.deepcopy(cp)
    cp["witnesses"] = [merkle.cosign(wkey, other_root)]
    refused(lambda: verifier.verify_checkpoint(cp, log.key, [wkey.public], 1), "signature is not over this checkpoint")
    cp["witnesses"] = [merkle.cosign(wkey, cp)]
    verifier.verify_checkpoint(cp, log.key, [wkey.public], 1)
    refused(
        lambda: verifier.verify_checkpoint({**cp, "witnesses": []}, log.key, [wkey.public], 1),
        "0 valid witness signatures of the 1",
    )


def test_a_store_written_before_the_tree_existed_gets_its_events_as_the_first_leaves(
    pg_base_url: str, tmp_path: Path
) -> None:
    url = create_database(pg_base_url, prefix="guanai_test_proofs_adopt")
    try:
        without = app_for(env(url, tmp_path, "international"), keep_tree=False)
        try:
            seed(without, persons=2)
        finally:
            without.close()
        stored = 3 + 2 * 3
        with_tree = app_for(env(url, tmp_path, "international"))  # creates the tables: adopts
        try:
            seed(with_tree, persons=1)
            audit = Audit(with_tree, url)
            cp = audit.latest_checkpoint()
            assert int(cp["size"]) == stored + 6
            with psycopg.connect(url) as conn:
                checked, failures = check_tree(conn, audit.tree, "guanai_events", cp)
            assert failures == [] and checked == stored + 6
        finally:
            with_tree.close()
    finally:
        drop_database(pg_base_url, url)


def test_concurrent_writers_leave_a_tree_that_matches_every_event(pg_base_url: str, tmp_path: Path) -> None:
    url = create_database(pg_base_url, prefix="guanai_test_proofs_concurrent")
    try:
        app = app_for(env(url, tmp_path, "gm"))
        errors: list[BaseException] = []

        def write() -> None:
            try:
                seed(app, persons=3)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=write) for _ in range(4)]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=120)
            audit = Audit(app, url)
            cp = audit.latest_checkpoint()
            with psycopg.connect(url) as conn:
                checked, failures = check_tree(conn, audit.tree, "guanai_events", cp)
        finally:
            app.close()
        assert not errors and failures == []
        assert checked == int(cp["size"]) == 4 * (3 + 3 * 3)
    finally:
        drop_database(pg_base_url, url)


def test_a_witness_refuses_a_fork_of_what_it_saw(log: Log, tmp_path: Path) -> None:
    folder = tmp_path / "published"
    cp = publish(log.audit, folder)
    key_file = tmp_path / "w"
    key_file.write_text(f"{log.suite}:{suite(log.suite).new_signing_key().secret_hex()}\n")
    state = tmp_path / "w.state.json"
    assert witness(folder, key_file, state, None) == 0
    fork = merkle.sign_checkpoint(log.audit.checkpoints.key, cp["origin"], int(cp["size"]), bytes(32))
    (folder / f"checkpoint-{cp['size']}.json").write_text(json.dumps(fork))  # the log shows this witness another tree
    refused(lambda: witness(folder, key_file, state, None), "forked log")


def test_a_gm_store_rotates_its_master_key_under_its_suite(pg_base_url: str, tmp_path: Path) -> None:
    url = create_database(pg_base_url, prefix="guanai_test_proofs_rotate")
    try:
        settings = env(url, tmp_path, "gm")
        app = app_for(settings)
        try:
            person = seed(app, persons=1)[0]
        finally:
            app.close()
        new = "rotated-master-key-" + "n" * 32
        with pytest.raises(MasterKeyError, match="keeps the store's crypto suite"):
            rotate_master_key(url, MasterKey(settings["GUANAI_MASTER_KEY"], suite=GM), MasterKey(new), by="op")
        rotation = rotate_master_key(
            url, MasterKey(settings["GUANAI_MASTER_KEY"], suite=GM), MasterKey(new, suite=GM), by="op"
        )
        assert rotation.rewrapped >= 1
        after = app_for({**settings, "GUANAI_MASTER_KEY": new})
        try:
            assert after.names([person])[person] == "李秀英"
        finally:
            after.close()
    finally:
        drop_database(pg_base_url, url)
