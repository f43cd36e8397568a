"""Importing registry sheets into the real store: registered once, found again by the keyed hash of
the ID number, corrected (never a second person), the same file again writes nothing, a person
of another village refused, and an import killed midway (SIGKILL) finishes when run again."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest

from application.care import ID_NUMBER, CareApplication
from domain.base import CommandMeta
from domain.helper import Helper
from domain.org_unit import OrgUnit
from domain.pairing import Pairing
from domain.person import Person
from domain.vocabulary import PairingShape, PersonKind, Sex
from infrastructure.import_jobs import ImportJobs
from tests.imports_support import HEADERS, County, child_row, elder_row, make_county, xlsx
from workers.projector import Projector

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def county(care_app: CareApplication, meta: CommandMeta, database_url: str) -> County:
    made = make_county(care_app, meta)
    with Projector(database_url, app=care_app) as projector:
        projector.catch_up()
    return made


@pytest.fixture
def jobs(care_app: CareApplication) -> ImportJobs:
    return ImportJobs(care_app)


def run_import(
    jobs: ImportJobs,
    county: County,
    data: bytes,
    *,
    dry_run: bool = False,
    unit: Any = None,
    filename: str = "台账.xlsx",
    batch: int | None = None,
) -> dict[str, Any]:
    meta = CommandMeta(
        actor_id="cs-1",
        actor_role="county_supervisor",
        correlation_id=f"import-{uuid4()}",
        occurred_at=datetime.now(UTC),
    )
    org = jobs.app.load(OrgUnit, unit or county.county)
    job = jobs.submit(data, filename, unit=org, actor_id="cs-1", actor_role="county_supervisor", dry_run=dry_run)
    if job["status"] == "refused":
        return job
    return jobs.run(job["id"], meta=meta, batch=batch)


def last_position(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT coalesce(max(notification_id), 0) FROM guanai_events").fetchone()[0]


def test_a_sheet_registers_its_people_and_the_same_file_again_writes_nothing(
    jobs: ImportJobs, county: County, database_url: str
) -> None:
    v1, v2 = county.village_names[0], county.village_names[1]
    rows = [HEADERS, child_row(v1, 1, 风险或困境类型="困境儿童"), child_row(v1, 2), elder_row(v2, 3)]
    data = xlsx(rows)
    job = run_import(jobs, county, data)
    assert (job["status"], job["total"], job["done"], job["created"], job["errors"]) == ("done", 3, 3, 3, 0)
    first = jobs.app.load(Person, jobs.app.person_id_for(rows[1][1]))
    assert (first.name, first.kind, first.sex, first.village_id) == (
        "王小1",
        PersonKind.CHILD,
        Sex.MALE,
        county.villages[0],
    )
    assert first.risk_tags == ["child_in_difficulty"] and first.guardian == {
        "name": "王奶奶1",
        "relation": "监护人",
        "phone": "13800001234",
    }
    assert jobs.app.load(Person, jobs.app.person_id_for(rows[3][1])).village_id == county.villages[1]

    before = last_position(database_url)
    again = run_import(jobs, county, data)
    assert (again["created"], again["corrected"], again["unchanged"], again["errors"]) == (0, 0, 3, 0)
    assert last_position(database_url) == before, "the same file again writes no event"


def test_a_changed_row_corrects_the_person_and_never_makes_a_second(
    jobs: ImportJobs, county: County, database_url: str
) -> None:
    v1 = county.village_names[0]
    row = child_row(v1, 11)
    run_import(jobs, county, xlsx([HEADERS, row]))
    person_id = jobs.app.person_id_for(row[1])
    changed = child_row(v1, 11, 姓名="王晓十一", 风险或困境类型="事实无人抚养儿童", 监护人_委托照护人=None)
    changed[HEADERS.index("监护人 / 委托照护人")] = "王爷爷"
    job = run_import(jobs, county, xlsx([HEADERS, changed]))
    assert (job["created"], job["corrected"], job["errors"]) == (0, 1, 0)
    person = jobs.app.load(Person, person_id)
    assert person.name == "王晓十一" and person.risk_tags == ["de_facto_unsupported"]
    assert person.guardian and person.guardian["name"] == "王爷爷"
    kinds = [type(e).__name__ for e in jobs.app.history(person_id)]
    assert kinds == ["Registered", "RegistrationCorrected", "RiskTagAdded", "GuardianAssigned"]
    corrected = jobs.app.history(person_id)[1]
    assert corrected.changed == ["name"] and corrected.name == "王晓十一"
    with psycopg.connect(database_url) as conn:
        hits = conn.execute(
            "SELECT count(*) FROM guanai_lookup WHERE kind = %s AND hash = %s",
            (ID_NUMBER, jobs.app.lookup_hash(ID_NUMBER, row[1])),
        ).fetchone()[0]
    assert hits == 1


def test_a_person_registered_through_the_api_is_found_by_their_id_number(
    jobs: ImportJobs, county: County, meta: CommandMeta
) -> None:
    v1 = county.village_names[0]
    row = child_row(v1, 21)
    registered = jobs.app.register_person(
        id=uuid4(),
        kind=PersonKind.CHILD,
        name="王小21",
        sex=Sex.FEMALE if row[2] == "女" else Sex.MALE,
        birth_date=date(2015, 3, 8),
        village_id=county.villages[0],
        meta=meta,
        id_number=row[1],
        guardian={"name": "王奶奶21", "relation": "监护人", "phone": "13800001234"},
    )
    job = run_import(jobs, county, xlsx([HEADERS, row]))
    assert (job["created"], job["corrected"], job["unchanged"], job["errors"]) == (0, 0, 1, 0)
    assert jobs.app.load(Person, registered.id).version == 1, "same details: nothing written"


def test_a_person_already_registered_in_another_village_is_refused_by_row(jobs: ImportJobs, county: County) -> None:
    row = child_row(county.village_names[0], 31)
    run_import(jobs, county, xlsx([HEADERS, row]))
    moved = child_row(county.village_names[1], 31)
    job = run_import(jobs, county, xlsx([HEADERS, child_row(county.village_names[1], 32), moved]))
    assert (job["created"], job["errors"]) == (1, 1)
    [problem] = jobs.report(job["id"])["problems"]
    assert (problem["row"], problem["column"], problem["value"]) == (3, "所属村(居)委会", None)
    assert problem["reason"].startswith("already registered in another village")


def test_unknown_villages_and_domain_rules_are_refused_by_row(jobs: ImportJobs, county: County) -> None:
    rows = [
        HEADERS,
        child_row("不存在村", 41),
        elder_row(county.village_names[0], 42, birth=date(1990, 1, 1), 类别="留守老年人"),
        child_row(county.village_names[0], 43, 风险或困境类型="空巢"),
    ]
    job = run_import(jobs, county, xlsx(rows))
    assert (job["created"], job["errors"]) == (0, 3)
    reasons = {(p["row"], p["column"]): p["reason"] for p in jobs.report(job["id"])["problems"]}
    assert reasons[(2, "所属村(居)委会")] == "no village of this name under your unit"
    assert "aged 60 or more" in reasons[(3, "出生日期")]
    assert "applies to elders only" in reasons[(4, "风险或困境类型")]


def test_a_village_outside_the_importers_unit_is_not_found(jobs: ImportJobs, county: County) -> None:
    """Imported into the first township, a village of the second is unknown."""
    job = run_import(jobs, county, xlsx([HEADERS, child_row(county.village_names[2], 51)]), unit=county.townships[0])
    assert job["errors"] == 1 and job["created"] == 0


def test_a_dry_run_reports_and_writes_nothing(jobs: ImportJobs, county: County, database_url: str) -> None:
    rows = [HEADERS, child_row(county.village_names[0], 61), child_row(county.village_names[0], 62, 性别="?")]
    before = last_position(database_url)
    job = run_import(jobs, county, xlsx(rows), dry_run=True)
    assert (job["status"], job["dry_run"], job["created"], job["errors"]) == ("done", True, 1, 1)
    assert last_position(database_url) == before
    with pytest.raises(Exception, match="no person"):
        jobs.app.load(Person, jobs.app.person_id_for(rows[1][1]))


def test_a_leave_reason_takes_the_person_out_of_the_programme(jobs: ImportJobs, county: County) -> None:
    row = elder_row(county.village_names[0], 71)
    run_import(jobs, county, xlsx([HEADERS, row]))
    headers = [*HEADERS, "退出原因"]
    job = run_import(jobs, county, xlsx([headers, [*row, "随子女进城居住"]]))
    assert (job["left_programme"], job["errors"]) == (1, 0)
    person = jobs.app.load(Person, jobs.app.person_id_for(row[1]))
    assert person.active is False and person.left_reason == "随子女进城居住"


def test_people_absent_from_the_file_are_left_alone(jobs: ImportJobs, county: County) -> None:
    a, b = child_row(county.village_names[0], 81), child_row(county.village_names[0], 82)
    run_import(jobs, county, xlsx([HEADERS, a, b]))
    run_import(jobs, county, xlsx([HEADERS, a]))
    assert jobs.app.load(Person, jobs.app.person_id_for(b[1])).active is True


def test_a_refused_file_is_recorded_without_its_bytes(jobs: ImportJobs, county: County, database_url: str) -> None:
    job = run_import(jobs, county, xlsx([HEADERS, child_row(county.village_names[0], 91)]), filename="台账.xlsm")
    assert job["status"] == "refused" and "macro" in job["detail"] and job["file_kept"] is False


def test_the_uploaded_file_is_kept_sealed_never_in_plaintext(
    jobs: ImportJobs, county: County, database_url: str
) -> None:
    row = child_row(county.village_names[0], 95, 姓名="独一无二的名字")
    data = xlsx([HEADERS, row])
    job = run_import(jobs, county, data, dry_run=True)
    with psycopg.connect(database_url) as conn:
        sealed = bytes(
            conn.execute("SELECT file_sealed FROM guanai_import_jobs WHERE id = %s", (job["id"],)).fetchone()[0]
        )
        dump = conn.execute("SELECT report::text FROM guanai_import_jobs WHERE id = %s", (job["id"],)).fetchone()[0]
    assert data not in sealed and b"xl/worksheets" not in sealed and len(sealed) >= len(data)
    assert row[1] not in dump and "独一无二" not in dump
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE guanai_import_jobs SET purge_after = now() - interval '1 day' WHERE id = %s", (job["id"],))
    assert jobs.purge() >= 1
    assert jobs.get(job["id"])["file_kept"] is False and jobs.report_workbook(job["id"]) is None


def test_many_rows_go_in_batches_with_progress(jobs: ImportJobs, county: County) -> None:
    rows = [HEADERS] + [
        child_row(county.village_names[n % 4], 1000 + n, birth=date(2012, 1, 1 + n % 28)) for n in range(120)
    ]
    seen: list[int] = []
    meta = CommandMeta(
        actor_id="cs-1", actor_role="county_supervisor", correlation_id="batches", occurred_at=datetime.now(UTC)
    )
    org = jobs.app.load(OrgUnit, county.county)
    job = jobs.submit(xlsx(rows), "x.xlsx", unit=org, actor_id="cs-1", actor_role="county_supervisor", dry_run=False)
    done = jobs.run(job["id"], meta=meta, batch=25, progress=lambda out: seen.append(out.done))
    assert done["created"] == 120 and seen[-1] == 120
    assert seen == sorted(seen) and len(seen) >= 120 // 25


# ---- a killed import -----------------------------------------------------------------------------


@pytest.fixture
def cli_env(database_url: str) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "GUANAI_DATABASE_URL": database_url,
        "GUANAI_NATS_URL": "nats://127.0.0.1:1",
        "GUANAI_LOG_FORMAT": "json",
    }
    yield env


@pytest.mark.slow
def test_an_import_killed_midway_finishes_when_run_again_without_duplicates(
    care_app: CareApplication, county: County, cli_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    rows = [HEADERS] + [
        child_row(county.village_names[n % 4], 5000 + n, birth=date(2013, 1 + n % 12, 1 + n % 28)) for n in range(400)
    ]
    path = tmp_path / "台账.xlsx"
    path.write_bytes(xlsx(rows))
    command = [
        sys.executable,
        "-m",
        "guanai.cli",
        "import",
        str(path),
        "--org-code",
        county.code,
        "--batch",
        "50",
        "--by",
        "crash-test",
    ]
    killed = subprocess.run(
        command,
        check=False,
        env={**cli_env, "GUANAI_FAILPOINTS": "import.after_batch=3"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    ids = [care_app.person_id_for(r[1]) for r in rows[1:]]
    with psycopg.connect(database_url) as conn:

        def stored() -> int:
            return conn.execute(
                "SELECT count(DISTINCT originator_id) FROM guanai_events WHERE originator_id = ANY(%s)", (ids,)
            ).fetchone()[0]

        partial = stored()
        job = conn.execute("SELECT status, done FROM guanai_import_jobs WHERE actor_id = 'crash-test'").fetchone()
    assert 0 < partial < 400, "killed with some batches in and some to go"
    assert job[0] == "running" and job[1] < 400

    again = subprocess.run(command, check=False, env=cli_env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert f"{400 - partial} were registered" in again.stdout and f"{partial} unchanged" in again.stdout
    with psycopg.connect(database_url) as conn:
        assert (
            conn.execute(
                "SELECT count(DISTINCT originator_id) FROM guanai_events WHERE originator_id = ANY(%s)", (ids,)
            ).fetchone()[0]
            == 400
        )
        # No second person for any ID number: one lookup row each, pointing at the derived id.
        lookups = conn.execute(
            "SELECT subject_id FROM guanai_lookup WHERE kind = %s AND subject_id = ANY(%s)", (ID_NUMBER, ids)
        ).fetchall()
    assert sorted(r[0] for r in lookups) == sorted(ids)
    versions = {p.version for p in care_app.load_many(Person, ids).values()}
    assert versions == {1}
    assert isinstance(ids[0], UUID)


# ---- helpers and pairings ---------------------------------------------------------------------------

PAIRING_HEADERS = [*HEADERS, "帮扶人", "帮扶人电话", "帮扶人身份", "结对方式", "走访频次"]


def test_helpers_and_pairings_in_all_three_shapes_and_the_same_file_again_forms_nothing(
    jobs: ImportJobs, county: County, database_url: str
) -> None:
    """一对一 (a caring mother and a girl), 一对N (a cadre with three elders), N对一 (四包一 for a child)."""
    v = county.village_names[0]
    rows = [
        PAIRING_HEADERS,
        [*child_row(v, 301), "张妈妈", "13900000301", "爱心妈妈", "一对一", "每周"],
        [*elder_row(v, 302), "李干部", "13900000302", "村干部", "一对N", "每月"],
        [*elder_row(v, 303), "李干部", "139-0000-0302", "村干部", "一对多", "每月"],
        [*elder_row(v, 304), "李干部", "13900000302", "村干部", "一对N", "每月"],
        [
            *child_row(v, 305),
            "赵老师、钱医生、孙民警、周干部",
            "13900000311、13900000312、13900000313、13900000314",
            "教师、家庭医生、民警、帮扶干部",
            "四包一",
            "每两周",
        ],
    ]
    job = run_import(jobs, county, xlsx(rows))
    assert (job["created"], job["errors"], job["helpers_registered"], job["pairings_formed"]) == (5, 0, 6, 3), (
        jobs.report(job["id"])
    )
    girl = jobs.app.load(Person, jobs.app.person_id_for(rows[1][1]))
    [pairing] = [jobs.app.load(Pairing, p) for p in girl.pairing_ids]
    assert pairing.shape == PairingShape.ONE_TO_ONE
    mother = jobs.app.load(Helper, pairing.helper_ids[0])
    assert (mother.name, mother.phone, mother.role.value, mother.org_unit_id) == (
        "张妈妈",
        "13900000301",
        "caring_mother",
        county.villages[0],
    )
    elder = jobs.app.load(Person, jobs.app.person_id_for(rows[2][1]))
    [many] = [jobs.app.load(Pairing, p) for p in elder.pairing_ids]
    assert many.shape == PairingShape.ONE_TO_MANY and len(many.person_ids) == 3 and many.cadence.value == "monthly"
    child = jobs.app.load(Person, jobs.app.person_id_for(rows[5][1]))
    [four] = [jobs.app.load(Pairing, p) for p in child.pairing_ids]
    assert four.shape == PairingShape.MANY_TO_ONE and len(four.helper_ids) == 4

    before = last_position(database_url)
    again = run_import(jobs, county, xlsx(rows))
    assert (again["unchanged"], again["helpers_registered"], again["pairings_formed"], again["errors"]) == (5, 0, 0, 0)
    assert last_position(database_url) == before

    more = [*rows, [*elder_row(v, 306), "李干部", "13900000302", "村干部", "一对N", "每月"]]
    grown = run_import(jobs, county, xlsx(more))
    assert (grown["created"], grown["pairings_formed"], grown["pairings_changed"]) == (1, 0, 1)
    assert len(jobs.app.load(Pairing, many.id).person_ids) == 4


def test_bad_helper_cells_are_refused_by_row(jobs: ImportJobs, county: County) -> None:
    v = county.village_names[0]
    rows = [
        PAIRING_HEADERS,
        [*child_row(v, 401), "张妈妈、王妈妈", "13900000401", "", "", ""],
        [*child_row(v, 402), "张妈妈", "13900000402", "外星人", "", ""],
        [*child_row(v, 403), "张妈妈", "13900000403", "", "N对一", ""],
        [*child_row(v, 404), "刘干部", "13900000404", "", "一对N", ""],
    ]
    job = run_import(jobs, county, xlsx(rows))
    reasons = {(p["row"], p["column"]): p["reason"] for p in jobs.report(job["id"])["problems"]}
    assert "one phone per helper" in reasons[(2, "帮扶人电话")]
    assert reasons[(3, "帮扶人身份")].startswith("unknown role")
    assert "two or more helpers" in reasons[(4, "结对方式")]
    assert "no other row names this helper" in reasons[(5, "结对方式")]
    assert job["created"] == 1, "row 5's person is registered; only its pairing is refused"


def test_an_erased_persons_id_number_is_not_found_and_not_registered_again(
    jobs: ImportJobs, county: County, meta: CommandMeta, database_url: str
) -> None:
    row = child_row(county.village_names[0], 501)
    run_import(jobs, county, xlsx([HEADERS, row]))
    person_id = jobs.app.person_id_for(row[1])
    jobs.app.erase_person(person_id, "监护人申请删除", meta)
    with psycopg.connect(database_url) as conn:
        left = conn.execute("SELECT count(*) FROM guanai_lookup WHERE subject_id = %s", (person_id,)).fetchone()[0]
    assert left == 0, "an erasure deletes the person's lookup rows"
    job = run_import(jobs, county, xlsx([HEADERS, row]))
    assert (job["created"], job["errors"]) == (0, 1)
    [problem] = jobs.report(job["id"])["problems"]
    assert problem["column"] == "公民身份号码" and "erased" in problem["reason"]


def test_a_store_from_before_imports_gets_its_lookups_rebuilt(
    jobs: ImportJobs, county: County, meta: CommandMeta, database_url: str
) -> None:
    row = child_row(county.village_names[1], 601)
    registered = jobs.app.register_person(
        id=uuid4(),
        kind=PersonKind.CHILD,
        name="王小601",
        sex=Sex.MALE,
        birth_date=date(2015, 3, 8),
        village_id=county.villages[1],
        meta=meta,
        id_number=row[1],
    )
    with psycopg.connect(database_url) as conn:  # as a store written before this table existed
        conn.execute("DELETE FROM guanai_lookup WHERE subject_id = %s", (registered.id,))
    assert jobs.app.rebuild_lookups() >= 1
    assert jobs.app.rebuild_lookups() == 0, "run again, it finds nothing to add"
    job = run_import(jobs, county, xlsx([HEADERS, row]))
    assert (job["created"], job["corrected"] + job["unchanged"]) == (0, 1), "found, not registered twice"
