"""End to end over HTTP: the template, a dry run then its commit, the job's progress and report
(JSON and the marked workbook), files refused with problem details, and the registry and
inspection workbooks (one sheet per township, ID numbers as text, dates as dates, access logged)."""

from __future__ import annotations

import io
import time
import uuid
from datetime import date, datetime
from typing import Any

import httpx
import openpyxl

from domain.vocabulary import ActorRole
from tests.api_support import Tree, api_server, auth, client  # noqa: F401 - fixtures
from tests.imports_support import HEADERS, child_row, elder_row, fresh_seq, xlsx

FINAL = {"done", "refused", "failed"}


def upload(c: httpx.Client, data: bytes, *, filename: str = "台账.xlsx", **params: Any) -> httpx.Response:
    return c.post("/imports", params=params, files={"file": (filename, data, "application/octet-stream")})


def finished(c: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = c.get(f"/imports/{job_id}").json()
        if job["status"] in FINAL:
            return job
        time.sleep(0.05)  # polling the job resource is what a client does; the condition is the status
    raise AssertionError(f"import {job_id} did not finish: {job}")


def sheet_of(tree: Tree, *extra: list[Any]) -> bytes:
    return xlsx([HEADERS, child_row("一村", tree.seq + 1), elder_row("二村", tree.seq + 2), *extra])


def tree_of(c: httpx.Client) -> Tree:
    """A tree of its own, with its own range of ID numbers (the tests share one database)."""
    tree = Tree(c)
    tree.seq = fresh_seq()  # type: ignore[attr-defined]
    return tree


def test_the_template_has_the_import_headers(client: httpx.Client) -> None:
    r = client.get("/imports/template.xlsx")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/vnd.openxmlformats")
    ws = openpyxl.load_workbook(io.BytesIO(r.content))["台账"]
    headers = [c.value for c in ws[1]]
    assert headers[:2] == ["姓名", "公民身份号码"] and ws.freeze_panes == "A2"
    assert "文本格式" in ws["B1"].comment.text


def test_a_dry_run_by_default_then_committed(client: httpx.Client) -> None:
    tree = tree_of(client)
    bad = child_row("一村", tree.seq + 3, 性别="未知")
    r = upload(client, sheet_of(tree, bad), org_unit=tree.township["id"])
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/imports/{r.json()['id']}" and r.json()["dry_run"] is True
    job = finished(client, r.json()["id"])
    assert (job["status"], job["total"], job["done"], job["created"], job["errors"]) == ("done", 3, 3, 2, 1)
    listed = client.get("/persons", params={"org_unit_id": tree.township["id"]}).json()
    assert listed["total"] == 0, "a dry run writes nothing"

    report = client.get(f"/imports/{job['id']}/report").json()
    assert report["problems"] == [
        {"sheet": "台账", "row": 4, "column": "性别", "cell": "C4", "value": "未知", "reason": "write 男 or 女"}
    ]
    marked = client.get(f"/imports/{job['id']}/report.xlsx")
    ws = openpyxl.load_workbook(io.BytesIO(marked.content))["台账"]
    assert "write 男 or 女" in ws["C4"].comment.text and ws["C2"].comment is None

    r = client.post(f"/imports/{job['id']}/commit")
    assert r.status_code == 202 and r.json()["dry_run"] is False and r.json()["id"] != job["id"]
    real = finished(client, r.json()["id"])
    assert (real["created"], real["errors"]) == (2, 1) and real["position"]
    listed = client.get("/persons", params={"org_unit_id": tree.township["id"], "min_position": real["position"]})
    assert listed.json()["total"] == 2
    again = finished(
        client, upload(client, sheet_of(tree, bad), org_unit=tree.township["id"], dry_run="false").json()["id"]
    )
    assert (again["created"], again["unchanged"]) == (0, 2)


def test_files_refused_answer_problem_details_naming_the_file(client: httpx.Client) -> None:
    tree = tree_of(client)
    r = upload(client, sheet_of(tree), filename="台账.xlsm", org_unit=tree.township["id"])
    assert r.status_code == 415 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == "file" and "macro" in r.json()["detail"]
    r = client.post("/imports", params={"org_unit": tree.township["id"]}, files={"other": ("x.csv", b"a,b")})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "file"
    r = client.post("/imports", params={"org_unit": tree.township["id"]}, json={"file": "x"})
    assert r.status_code == 415
    r = upload(client, b"\x00\x01binary", filename="x.bin", org_unit=tree.township["id"])
    assert r.status_code == 415
    r = upload(client, sheet_of(tree), org_unit="not-a-unit")
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "org_unit"


def test_missing_headers_are_named_in_the_report(client: httpx.Client) -> None:
    tree = tree_of(client)
    r = upload(client, xlsx([["名字", "性别"], ["王五", "男"]]), org_unit=tree.township["id"])
    job = finished(client, r.json()["id"])
    assert job["status"] == "refused" and "公民身份号码" in job["detail"]
    report = client.get(f"/imports/{job['id']}/report").json()
    assert "公民身份号码" in report["missing_columns"]


def test_supervisors_import_within_their_unit_only(client: httpx.Client, api_server: Any) -> None:
    tree = tree_of(client)
    other = tree_of(client)
    ts = {**auth(ActorRole.TOWNSHIP_SUPERVISOR, tree.township["id"])}
    with httpx.Client(base_url=api_server.base_url, headers=ts, timeout=30) as c:
        r = upload(c, sheet_of(tree))  # no org_unit: their own township
        assert r.status_code == 202 and r.json()["org_unit_id"] == tree.township["id"]
        job = finished(c, r.json()["id"])
        assert job["created"] == 2
        r = upload(c, sheet_of(tree), org_unit=other.township["id"])
        assert r.status_code == 422 and r.json()["type"].endswith("unknown-reference")
    with httpx.Client(
        base_url=api_server.base_url, headers=auth(ActorRole.TOWNSHIP_SUPERVISOR, other.township["id"]), timeout=30
    ) as c:
        assert c.get(f"/imports/{job['id']}").status_code == 404, "another township's job is not theirs"
    with httpx.Client(
        base_url=api_server.base_url, headers=auth(ActorRole.VILLAGE_CADRE, tree.village["id"]), timeout=30
    ) as c:
        assert upload(c, sheet_of(tree)).status_code == 403


def test_the_registry_workbook_has_a_sheet_per_township_text_ids_and_date_cells(
    client: httpx.Client, api_server: Any
) -> None:
    tree = tree_of(client)
    rows = [HEADERS, child_row("一村", tree.seq + 1), elder_row("二村", tree.seq + 2, 风险或困境类型="低保、独居")]
    job = finished(client, upload(client, xlsx(rows), org_unit=tree.township["id"], dry_run="false").json()["id"])
    assert job["created"] == 2
    r = client.get(f"/supervision/{tree.county['code']}/registry.xlsx", params={"min_position": job["position"]})
    assert r.status_code == 200, r.text
    book = openpyxl.load_workbook(io.BytesIO(r.content))
    assert book.sheetnames == ["测试镇"]
    ws = book["测试镇"]
    assert ws.freeze_panes == "A2" and [c.value for c in ws[1]][:2] == ["姓名", "公民身份号码"]
    ids = {ws.cell(row=n, column=2).value for n in (2, 3)}
    assert ids == {rows[1][1], rows[2][1]} and all(isinstance(i, str) for i in ids)
    assert ws.cell(row=2, column=2).number_format == "@"
    assert isinstance(ws.cell(row=2, column=4).value, datetime | date)
    # What was exported imports again unchanged.
    again = finished(client, upload(client, r.content, org_unit=tree.county["id"], dry_run="false").json()["id"])
    assert (again["unchanged"], again["created"], again["corrected"], again["errors"]) == (2, 0, 0, 0)
    person_id = client.get("/persons", params={"org_unit_id": tree.township["id"]}).json()["items"][0]["id"]
    log = client.get(f"/audit/persons/{person_id}/access-log").json()["items"]
    assert any(e["endpoint"] == "GET /supervision/{org_unit}/registry.xlsx" for e in log)


def test_the_inspection_workbook_has_the_supervision_lists(client: httpx.Client) -> None:
    tree = tree_of(client)
    job = finished(client, upload(client, sheet_of(tree), org_unit=tree.township["id"], dry_run="false").json()["id"])
    r = client.get(f"/supervision/{tree.township['id']}/inspection.xlsx", params={"min_position": job["position"]})
    assert r.status_code == 200, r.text
    book = openpyxl.load_workbook(io.BytesIO(r.content))
    assert book.sheetnames == ["未结对", "逾期未访", "走访达标", "各单位"]
    uncovered = book["未结对"]
    assert {uncovered.cell(row=n, column=1).value for n in (2, 3)} == {f"王小{tree.seq + 1}", f"李老{tree.seq + 2}"}
    assert uuid.UUID(job["id"])
