"""/imports: the county's registry sheet (台账) uploaded, checked and imported as a job; and the
registry and inspection workbooks (``/supervision/{org_unit}/registry.xlsx``, ``/inspection.xlsx``).

The flow a client (the web upload page) follows:

1. ``GET /imports/template.xlsx``: the template, Chinese headers with notes.
2. ``POST /imports?org_unit=<id or code>&dry_run=true`` with the file as ``multipart/form-data``
   (field ``file``): 202 with the job (``Location: /imports/{id}``). **A dry run is the default**:
   ``dry_run=false`` writes. A file that cannot be read at all (too large 413, macro-enabled or not
   XLSX/CSV 415, a zip bomb 413) is refused at once, nothing kept.
3. ``GET /imports/{id}`` until ``status`` is ``done`` (or ``refused``, ``failed``; ``interrupted``:
   its process died, ``POST /imports/{id}/resume``): ``total``, ``done``, ``created``,
   ``corrected``, ``unchanged``, ``left_programme``, ``errors``.
4. ``GET /imports/{id}/report``: every problem by sheet, row, column and reason (a value only for
   columns that are not personal data); ``/report.xlsx``: the uploaded workbook, bad cells red and
   commented.
5. ``POST /imports/{id}/commit``: the dry run's file imported for real, as a new job (no second upload).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID, uuid4

import msgspec
import structlog
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.params import FromPath, QueryParameter

from api.access import unit_id_of
from api.common import MinPosition
from api.dependencies import Caller, Care, Jobs, MetaFor, RecordAccess, Registry, Supervision, WaitForViews
from api.problems import ProblemError
from api.registry_export import export_inspection, export_registry, template
from api.supervision import resolve_unit
from domain.base import CommandMeta
from domain.org_unit import OrgUnit
from infrastructure.import_jobs import ImportJobs
from infrastructure.spreadsheets import Limits, UploadRefused
from projections.supervision import CHINA
from projections.supervision_view import Period

log = structlog.get_logger("guanai.imports")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
VIEWS_WAIT_SECONDS = 30.0  # an import reads the villages from the registry view: at most this long for it
UPLOAD_CEILING = 1 << 30  # the route's own ceiling; the configured limit is enforced before (api/security.py)


class ImportJob(msgspec.Struct):
    id: UUID
    status: str  # queued | running | done | refused | failed | interrupted
    dry_run: bool
    org_unit_id: UUID
    created_at: datetime
    updated_at: datetime
    total: int
    done: int
    created: int
    corrected: int
    unchanged: int
    left_programme: int
    errors: int
    helpers_registered: int
    pairings_formed: int
    pairings_changed: int
    file_kind: str | None
    file_size: int | None
    file_kept: bool
    position: int | None  # of the last event written: pass as min_position to read the lists after it
    detail: str | None
    actor_id: str
    actor_role: str


class ReportProblem(msgspec.Struct):
    sheet: str
    row: int
    column: str | None
    cell: str | None
    value: str | None
    reason: str


class ImportReport(msgspec.Struct):
    job: ImportJob
    sheets: list[str]
    ignored_columns: list[str]
    missing_columns: list[str]
    problems: list[ReportProblem]


def jobs_of(request: Request[Any, Any, Any]) -> ImportJobs:
    return request.app.state.imports


def _job(row: dict[str, Any]) -> ImportJob:
    return msgspec.convert({k: row.get(k) for k in ImportJob.__struct_fields__}, ImportJob, from_attributes=False)


def _attachment(body: bytes, filename: str) -> Response[bytes]:
    return Response(body, media_type=XLSX, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def start_imports(app: Any) -> None:
    """On startup: the jobs table and the threads that run imports (two at a time per process)."""
    settings = app.state.settings
    app.state.imports = ImportJobs(
        app.state.care,
        limits=Limits(settings.import_max_bytes, settings.import_max_unpacked_bytes),
        keep_days=settings.import_keep_days,
        views_ready=lambda position: app.state.read_side.wait_for(position, timeout=VIEWS_WAIT_SECONDS),
    )
    app.state.imports.create_tables()
    app.state.import_runner = ThreadPoolExecutor(max_workers=2, thread_name_prefix="import")


def stop_imports(app: Any) -> None:
    runner = getattr(app.state, "import_runner", None)
    if runner is not None:
        runner.shutdown(wait=False, cancel_futures=True)


def run_in_background(request: Request[Any, Any, Any], job_id: UUID, meta: CommandMeta) -> None:
    jobs = jobs_of(request)

    def run() -> None:
        try:
            jobs.run(job_id, meta=meta)
        except Exception:  # the job says it failed; the log says where, never with a row's values
            log.exception("import_failed", job_id=str(job_id))

    request.app.state.import_runner.submit(run)


def _get(jobs: ImportJobs, import_id: UUID) -> dict[str, Any]:
    job = jobs.get(import_id)
    if job is None:  # the guard found it: only a race with nothing could get here
        raise ProblemError(404, "not-found", "Not found", f"no import with id {import_id}")
    return job


class ImportController(Controller):
    path = "/imports"
    tags = ["imports"]

    @get("/template.xlsx", sync_to_thread=True, media_type=XLSX)
    def template(self) -> Response[bytes]:
        """The import template: the columns with Chinese headers and notes."""
        return _attachment(template(), "guanai-import-template.xlsx")

    @post("/", status_code=202, request_max_body_size=UPLOAD_CEILING)
    async def submit(
        self,
        request: Request[Any, Any, Any],
        care: Care,
        meta_for: MetaFor,
        actor: Caller,
        jobs: Jobs,
        org_unit: Annotated[
            str | None, QueryParameter(description="id or 12-digit code; default: your own unit")
        ] = None,
        dry_run: Annotated[bool, QueryParameter(description="true (default): check and report, write nothing")] = True,
    ) -> Response[ImportJob]:
        """Upload a registry sheet (XLSX or CSV, field ``file``) for a dry run (default) or an import."""
        unit_id = unit_id_of(org_unit) if org_unit is not None else actor.org_unit_id
        if unit_id is None:
            reason = "an org unit id or 12-digit code" if org_unit is not None else "required: the unit imported into"
            raise ProblemError(
                400,
                "validation-error",
                "Validation error",
                f"org_unit: {reason}",
                errors=[{"field": "org_unit", "reason": reason}],
            )
        content_type = request.headers.get("content-type", "")
        if content_type.partition(";")[0].strip().lower() != "multipart/form-data":
            raise ProblemError(
                415,
                "unsupported-media-type",
                "Unsupported media type",
                f"send the file as multipart/form-data (got {content_type[:80] or 'none'!r})",
            )
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ProblemError(
                422,
                "validation-error",
                "Validation error",
                "file: required (multipart field 'file')",
                errors=[{"field": "file", "reason": "required: the spreadsheet, as the multipart field 'file'"}],
            )
        data = await upload.read()
        meta = meta_for(None)
        loop = asyncio.get_running_loop()

        def submit() -> dict[str, Any]:
            unit = care.load(OrgUnit, unit_id, field="org_unit")
            return jobs.submit(
                data,
                upload.filename,
                unit=unit,
                actor_id=actor.subject,
                actor_role=actor.role.value,
                dry_run=dry_run,
                job_id=uuid4(),
            )

        job = await loop.run_in_executor(None, submit)
        if job["status"] == "refused":  # answered as its kind is (api/problems.py), naming the job
            refusal: UploadRefused = job["refusal"]
            raise type(refusal)(refusal.reason, import_id=str(job["id"]))
        run_in_background(request, job["id"], meta)
        return Response(_job(job), status_code=202, headers={"Location": f"/imports/{job['id']}"})

    @get("/{import_id:uuid}", sync_to_thread=True)
    def progress(self, jobs: Jobs, import_id: FromPath[UUID]) -> ImportJob:
        """The job: status and counts (done of total, errors), updated after every batch."""
        return _job(_get(jobs, import_id))

    @get("/{import_id:uuid}/report", sync_to_thread=True)
    def report(self, jobs: Jobs, import_id: FromPath[UUID]) -> ImportReport:
        """Every problem by sheet, row and column, with the reason (never a personal value)."""
        job = _get(jobs, import_id)
        report = jobs.report(import_id) or {}
        return ImportReport(
            job=_job(job),
            sheets=report.get("sheets", []),
            ignored_columns=report.get("ignored_columns", []),
            missing_columns=report.get("missing_columns", []),
            problems=[msgspec.convert(p, ReportProblem) for p in report.get("problems", [])],
        )

    @get("/{import_id:uuid}/report.xlsx", sync_to_thread=True, media_type=XLSX)
    def report_workbook(self, jobs: Jobs, import_id: FromPath[UUID]) -> Response[bytes]:
        """The uploaded workbook with every bad cell filled red and commented with its reasons."""
        job = _get(jobs, import_id)
        if job["status"] not in {"done", "refused"}:
            raise ProblemError(
                409, "not-ready", "Not ready", f"the import is {job['status']}: its report comes when done"
            )
        marked = jobs.report_workbook(import_id)
        if marked is None:
            raise ProblemError(410, "gone", "Gone", "the uploaded file was deleted after its days were up")
        return _attachment(marked, f"import-{import_id}-report.xlsx")

    @post("/{import_id:uuid}/commit", status_code=202, sync_to_thread=True)
    def commit(
        self,
        request: Request[Any, Any, Any],
        care: Care,
        meta_for: MetaFor,
        actor: Caller,
        jobs: Jobs,
        import_id: FromPath[UUID],
    ) -> Response[ImportJob]:
        """Import the file of a finished dry run for real, as a new job (202, ``Location``)."""
        job = _get(jobs, import_id)
        if not job["dry_run"] or job["status"] != "done":
            raise ProblemError(
                409,
                "not-a-dry-run",
                "Not a finished dry run",
                "only a finished dry run is committed; upload the file again with dry_run=false",
            )
        data = jobs.file(import_id)
        if data is None:
            raise ProblemError(410, "gone", "Gone", "the uploaded file was deleted after its days were up")
        unit = care.load(OrgUnit, job["org_unit_id"])
        new = jobs.submit(data, None, unit=unit, actor_id=actor.subject, actor_role=actor.role.value, dry_run=False)
        run_in_background(request, new["id"], meta_for(None))
        return Response(_job(new), status_code=202, headers={"Location": f"/imports/{new['id']}"})

    @post("/{import_id:uuid}/resume", status_code=202, sync_to_thread=True)
    def resume(
        self, request: Request[Any, Any, Any], jobs: Jobs, meta_for: MetaFor, import_id: FromPath[UUID]
    ) -> Response[ImportJob]:
        """Run an interrupted (or failed) job again: rows already in are found and left as they are."""
        job = _get(jobs, import_id)
        if job["status"] not in {"interrupted", "failed"}:
            raise ProblemError(409, "not-interrupted", "Not interrupted", f"the import is {job['status']}")
        run_in_background(request, import_id, meta_for(None))
        return Response(_job(job), status_code=202, headers={"Location": f"/imports/{import_id}"})


class RegistryXlsxController(Controller):
    path = "/supervision"
    tags = ["supervision"]

    @get("/{org_unit:str}/registry.xlsx", sync_to_thread=True, media_type=XLSX)
    def registry(
        self,
        supervision: Supervision,
        care: Care,
        wait_for_views: WaitForViews,
        record_access: RecordAccess,
        registry: Registry,
        org_unit: FromPath[str],
        min_position: MinPosition = None,
    ) -> Response[bytes]:
        """The registry (台账) under the unit: one sheet per township, ID numbers as text, dates as dates."""
        wait_for_views(min_position)
        unit = care.load(OrgUnit, resolve_unit(supervision, org_unit)["id"])
        data, _ = export_registry(care, registry, unit, record_access=lambda ids: record_access(*ids))
        return _attachment(data, f"registry-{unit.code}.xlsx")

    @get("/{org_unit:str}/inspection.xlsx", sync_to_thread=True, media_type=XLSX)
    def inspection(
        self,
        supervision: Supervision,
        care: Care,
        wait_for_views: WaitForViews,
        record_access: RecordAccess,
        org_unit: FromPath[str],
        period: Annotated[str, QueryParameter(pattern="^(week|month|half_year|year)$")] = "half_year",
        min_position: MinPosition = None,
    ) -> Response[bytes]:
        """The inspection lists as sheets: uncovered, overdue, visit compliance, units one level down."""
        wait_for_views(min_position)
        unit = care.load(OrgUnit, resolve_unit(supervision, org_unit)["id"])
        today = datetime.now(UTC).astimezone(CHINA).date()
        data = export_inspection(
            care,
            supervision,
            unit,
            Period.named(period, today),
            record_access=lambda ids: record_access(*ids),
        )
        return _attachment(data, f"inspection-{unit.code}.xlsx")
