"""The restore drill, end to end on the embedded default: a county's store under its own data
directory (embedded PostgreSQL, keys generated there), backed up with ``guanai backup``; a child
erased after the backup; ``guanai restore`` into an empty data directory on another embedded
PostgreSQL, with the erasure log kept apart from both. Then the restored store answers as the
county's did, less nothing and plus nothing: the chain verifies (``guanai audit verify``), the
views were rebuilt and answer, the child erased after the backup is still erased (their record
and their report read as erased, their keys destroyed), and the others read in the clear."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
import pytest

from domain.base import ERASED, CommandMeta
from domain.emergency import Category, EmergencyReport
from domain.person import Person
from domain.roster import Severity
from domain.vocabulary import OrgLevel, PersonKind, Sex
from infrastructure.embedded import EmbeddedServices
from infrastructure.erasure_log import ErasureLog
from tests.app_support import make_care
from tests.imports_support import id_number

PASSPHRASE = "the drill's passphrase, kept in the safe"


@pytest.fixture
def root() -> Iterator[Path]:
    # Under /tmp: the embedded PostgreSQL runs as another user that must traverse the path.
    path = Path(tempfile.mkdtemp(prefix="guanai-test-drill-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def guanai(data_dir: Path, log: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``guanai ARGV`` as an operator runs it: the embedded default (no database or NATS configured)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUANAI_")}
    env |= {"GUANAI_DATA_DIR": str(data_dir), "GUANAI_ERASURE_LOG": str(log), "GUANAI_BACKUP_PASSPHRASE": PASSPHRASE}
    return subprocess.run(
        [sys.executable, "-m", "guanai.cli", *argv], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def meta() -> CommandMeta:
    return CommandMeta(actor_id="county-admin", actor_role="administrator", correlation_id=f"drill-{uuid.uuid4()}",
                       occurred_at=datetime.now(UTC))  # fmt: skip


@pytest.mark.slow  # starts and stops two embedded PostgreSQL servers several times (about a minute)
def test_restore_drill_on_the_embedded_default(root: Path) -> None:
    county, restored, log = root / "county" / "guanai-data", root / "restored" / "guanai-data", root / "log" / "e.jsonl"
    settings = {"GUANAI_DATA_DIR": str(county), "GUANAI_ERASURE_LOG": str(log)}
    today = datetime.now(UTC).date()
    with EmbeddedServices(county, nats=False) as servers:
        app = make_care(servers.database_url, pool_size=2, env=settings)
        m = meta()
        code = f"{uuid.uuid4().int % 10**6:06d}"
        c = app.register_org_unit(code=code + "000000", name="元江县", level=OrgLevel.COUNTY, parent_id=None, meta=m)
        t = app.register_org_unit(code=code + "101000", name="因远镇", level=OrgLevel.TOWNSHIP, parent_id=c.id, meta=m)
        v = app.register_org_unit(code=code + "101001", name="红安村", level=OrgLevel.VILLAGE, parent_id=t.id, meta=m)
        child, elder, other_child = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        born = date(today.year - 9, 3, 14)
        for pid, kind, name, birth, seq in (
            (child, PersonKind.CHILD, "李小花", born, 201),
            (elder, PersonKind.ELDER, "欧阳秀兰", date(1941, 5, 6), 202),
            (other_child, PersonKind.CHILD, "王小明", born, 203),
        ):
            app.register_person(id=pid, kind=kind, name=name, sex=Sex.FEMALE, birth_date=birth, village_id=v.id,
                                id_number=id_number(birth, seq, male=False), household="红安村3组12号", meta=m)  # fmt: skip
        report = app.file_emergency(id=uuid.uuid4(), category=Category.NEGLECT, severity=Severity.NORMAL,
                                    description="孩子独自在家两天，没有吃的", person_id=child, meta=m).id  # fmt: skip

        done = guanai(county, log, "backup", "--out", str(root))
        assert done.returncode == 0, done.stderr
        archive = Path(done.stdout.strip())
        assert archive.parent == root and archive.name.startswith("guanai-backup-")

        # After the backup: the child is erased (the family asked), and the county goes on.
        app.erase_person(child, "监护人申请删除 (data subject request)", meta())
        assert app.load(Person, child).name == ERASED
        app.close()
    assert [e.person for e in ErasureLog(log).entries()] == [str(child)]

    done = guanai(restored, log, "restore", str(archive))
    assert done.returncode == 0, done.stderr
    assert f"erased again: person {child}" in done.stderr

    verify = guanai(restored, log, "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "OK: the chain verifies" in verify.stdout

    with EmbeddedServices(restored, nats=False) as servers:
        app = make_care(servers.database_url, pool_size=2, env={**settings, "GUANAI_DATA_DIR": str(restored)})
        try:
            erased = app.load(Person, child)
            assert (erased.erased, erased.name, erased.id_number, erased.household) == (True, ERASED, ERASED, ERASED)
            assert app.load(EmergencyReport, report).description == ERASED  # the report they own went with them
            assert app.personal_data_erased(child) and app.personal_data_erased(report)
            assert app.load(Person, elder).name == "欧阳秀兰" and app.load(Person, other_child).name == "王小明"
            assert not app.personal_data_erased(elder)
            assert app.names([child, elder]) == {child: ERASED, elder: "欧阳秀兰"}
        finally:
            app.close()
        with psycopg.connect(servers.database_url) as conn:
            # The views were rebuilt on the restored store and answer: the child erased, the others active.
            statuses = dict(conn.execute("SELECT id, status FROM reg_persons WHERE id = ANY(%s)",
                                         ([child, elder, other_child],)).fetchall())  # fmt: skip
            tracked = conn.execute("SELECT min(position) FROM projection_tracking").fetchone()
            newest = conn.execute("SELECT max(notification_id) FROM guanai_events").fetchone()
    assert statuses == {child: "erased", elder: "active", other_child: "active"}
    assert tracked is not None and newest is not None and tracked[0] == newest[0]  # every view is up to date
    # Nothing of the county's own data directory was needed: the keys came out of the backup.
    assert sorted(p.name for p in restored.iterdir()) == ["chain-key", "lookup-key", "master-key", "postgres"]
