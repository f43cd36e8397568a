"""The registry-sheet import page (台账导入) for administrators and county and township supervisors:
download the template, upload a county's or township's sheet (a dry run unless asked otherwise),
follow the job's progress, read its report row by row, download the marked workbook, and commit a
clean dry run.

The pages' rules in ``api/access/rules.py`` are those of the API's ``/imports`` routes (the unit in the
``org_unit`` query parameter, the job by its id), and the handlers run what the API's handlers run
(the injected ``ImportJobs``, ``Ops.jobs``, and the same background runner): one guard, one way in. The upload
is multipart, so its CSRF value travels in the ``X-CSRF-Token`` header that ``ops.js`` adds to the
form's htmx post.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID, uuid4

from litestar import Controller, Request, get, post
from litestar.datastructures import UploadFile
from litestar.params import FromPath
from litestar.response import Redirect, Template

from api.access import unit_id_of
from api.imports import run_in_background
from domain.org_unit import OrgUnit
from web.admin import managed_units
from web.frame import lang_of, page
from web.ops import OPS, Ops

RUNNING = ("queued", "running")
# The import's reasons (application/registry_import.py, domain/person.py) are English, as the API
# answers them; the page shows the fixed ones in Chinese. A reason not listed here (one that
# names a value, such as a birth date the ID number contradicts) is shown as the API gives it.
REASONS_ZH = {
    "required": "必填",
    "longer than 50 characters": "超过 50 个字",
    "write 男 or 女": "请填写“男”或“女”",
    "write 留守老年人 or 留守儿童": "请填写“留守老年人”或“留守儿童”",
    "a division code has 12 digits": "区划代码应为 12 位数字",
    "required: the village or its code": "必填：所属村（居）委会或其区划代码",
    "not a phone number": "不是有效的电话号码",
    "an ID number has 17 digits and a check character": "公民身份号码应为 17 位数字加 1 位校验码",
    "the ID number's check character does not match": "公民身份号码校验码不符",
    "stored as a number, so Excel has lost its last digits: format the column as text and type it again": "以数字格式保存，Excel 已丢失末几位：请将该列设为文本格式后重新录入",
    "a helper's phone without their name": "填写了帮扶人电话却没有姓名",
    "write 一对一, 一对N or N对一": "请填写“一对一”“一对N”或“N对一”",
    "write 每周, 每两周, 每半月, 每月, 每半年 or 每年": "请填写“每周”“每两周”“每半月”“每月”“每半年”或“每年”",
    "N对一 needs two or more helpers on the row": "“N对一”需在本行填写两名以上帮扶人",
}


def reason_in(lang: str, reason: str) -> str:
    return REASONS_ZH.get(reason, reason) if lang == "zh" else reason


def chosen_unit(request: Request[Any, Any, Any], ops: Ops, units: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The unit named in ``org_unit`` (id or code; the guard has checked it is the reader's), else
    the reader's own, else the first offered."""
    raw = request.query_params.get("org_unit")
    wanted = unit_id_of(raw) if raw else ops.actor.org_unit_id
    for unit in units:
        if wanted is not None and unit["id"] == wanted:
            return unit
    if wanted is not None:  # a unit beneath the reader's not offered in the list (a village): as named
        unit = ops.supervision.unit(wanted)
        if unit is not None:
            return {k: unit[k] for k in ("id", "code", "name", "level")}
    return units[0] if units else None


def upload_page(request: Request[Any, Any, Any], ops: Ops, errors: list[str] | None = None) -> Template:
    units = managed_units(ops.supervision, ops.actor)
    return page(
        request, "imports/upload.html", status=422 if errors else 200,
        units=units, unit=chosen_unit(request, ops, units), errors=errors or [],
    )  # fmt: skip


def job_page(request: Request[Any, Any, Any], ops: Ops, import_id: UUID, errors: list[str] | None = None) -> Template:
    jobs = ops.jobs
    job = jobs.get(import_id)
    if job is None:  # the guard found it: only a race with nothing could get here
        return page(request, "error.html", status=404, kind="not_found")
    report = jobs.report(import_id) if job["status"] not in RUNNING else None
    unit = ops.supervision.unit(job["org_unit_id"])
    return page(
        request, "imports/job.html", status=409 if errors else 200,
        job=job, report=report or {}, unit=unit, running=job["status"] in RUNNING, errors=errors or [],
        percent=round(100 * job["done"] / job["total"]) if job["total"] else (100 if job["status"] == "done" else 0),
        csrf=request.cookies.get("guanai_csrf", ""), reason=lambda text: reason_in(lang_of(request), text),
    )  # fmt: skip


class ImportPages(Controller):
    path = "/imports"
    dependencies = OPS

    @get("/", sync_to_thread=True)
    def upload_form(self, request: Request[Any, Any, Any], ops: Ops) -> Template:
        return upload_page(request, ops)

    @post("/", status_code=303)
    async def upload(self, request: Request[Any, Any, Any], ops: Ops) -> Template | Redirect:
        """The sheet uploaded: a job like ``POST /imports``'s; the page goes on to the job's."""
        actor = ops.actor
        raw = request.query_params.get("org_unit")
        unit_id = unit_id_of(raw) if raw else actor.org_unit_id
        if unit_id is None:
            return await asyncio.to_thread(upload_page, request, ops, ["im.error.unit"])
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return await asyncio.to_thread(upload_page, request, ops, ["im.error.file"])
        data = await upload.read()
        dry_run = form.get("dry_run", "true") != "false"
        meta = ops.meta_for(None)

        def submit() -> dict[str, Any]:
            unit = ops.care.load(OrgUnit, unit_id, field="org_unit")
            return ops.jobs.submit(
                data,
                upload.filename,
                unit=unit,
                actor_id=actor.subject,
                actor_role=actor.role.value,
                dry_run=dry_run,
                job_id=uuid4(),
            )

        job = await asyncio.to_thread(submit)
        if job["status"] != "refused":
            run_in_background(request, job["id"], meta)
        return Redirect(f"/app/imports/{job['id']}", status_code=303)

    @get("/{import_id:uuid}", sync_to_thread=True)
    def job(self, request: Request[Any, Any, Any], ops: Ops, import_id: FromPath[UUID]) -> Template:
        return job_page(request, ops, import_id)

    @post("/{import_id:uuid}/commit", sync_to_thread=True, status_code=303)
    def commit(self, request: Request[Any, Any, Any], ops: Ops, import_id: FromPath[UUID]) -> Template | Redirect:
        """A clean dry run imported for real, as a new job (like ``POST /imports/{id}/commit``)."""
        jobs = ops.jobs
        job = jobs.get(import_id)
        if job is None or not job["dry_run"] or job["status"] != "done" or job["errors"]:
            return job_page(request, ops, import_id, ["im.error.not_clean"])
        data = jobs.file(import_id)
        if data is None:
            return job_page(request, ops, import_id, ["im.error.gone"])
        actor = ops.actor
        unit = ops.care.load(OrgUnit, job["org_unit_id"])
        new = jobs.submit(data, None, unit=unit, actor_id=actor.subject, actor_role=actor.role.value, dry_run=False)
        run_in_background(request, new["id"], ops.meta_for(None))
        return Redirect(f"/app/imports/{new['id']}", status_code=303)
