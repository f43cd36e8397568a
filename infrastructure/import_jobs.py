"""Import jobs: an uploaded registry sheet, its progress, its report, and its file kept sealed.

``guanai_import_jobs`` holds one row per upload: who, for which org unit, dry run or not, the
counts (total, done, created, corrected, unchanged, left, errors) updated after every batch, the
report (rows, columns and reasons, never a personal value) and the file itself, sealed with a key
of its own (AES-GCM, under the master key like every personal data key) and deleted after
``GUANAI_IMPORT_KEEP_DAYS``: it is needed for the marked-up report workbook and to run the import
again after a crash. The API and ``guanai import`` share this module.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from psycopg.types.json import Jsonb

from application.care import CareApplication
from application.registry_import import SheetError
from application.registry_importer import Outcome, RegistryImporter, sheets_of, villages_of
from domain.base import CommandMeta
from domain.org_unit import OrgUnit
from infrastructure.failpoints import failpoint
from infrastructure.spreadsheets import Limits, UploadGone, UploadRefused, check_upload, mark_cells, read_upload

CHINA_OFFSET = timedelta(hours=8)
STALE_SECONDS = 120  # a running job whose row was not touched for this long was cut off (its process died)
NONCE = 12

DDL = """
CREATE TABLE IF NOT EXISTS guanai_import_jobs (
    id uuid PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(),
    actor_id text NOT NULL, actor_role text NOT NULL, org_unit_id uuid NOT NULL, org_path uuid[] NOT NULL,
    dry_run boolean NOT NULL, status text NOT NULL, file_kind text, file_sha256 bytea, file_size int,
    total int NOT NULL DEFAULT 0, done int NOT NULL DEFAULT 0, created int NOT NULL DEFAULT 0,
    corrected int NOT NULL DEFAULT 0, unchanged int NOT NULL DEFAULT 0, left_programme int NOT NULL DEFAULT 0,
    errors int NOT NULL DEFAULT 0, helpers_registered int NOT NULL DEFAULT 0, pairings_formed int NOT NULL DEFAULT 0,
    pairings_changed int NOT NULL DEFAULT 0, position bigint, detail text, report jsonb,
    file_sealed bytea, purge_after timestamptz
);
CREATE INDEX IF NOT EXISTS guanai_import_jobs_purge ON guanai_import_jobs (purge_after) WHERE file_sealed IS NOT NULL;
"""
PUBLIC_COLUMNS = (
    "id, created_at, updated_at, actor_id, actor_role, org_unit_id, org_path, dry_run, status, file_kind, file_size,"
    " total, done, created, corrected, unchanged, left_programme, errors, helpers_registered, pairings_formed,"
    " pairings_changed, position, detail"
)


@dataclass(frozen=True)
class Submitted:
    id: UUID
    data: bytes
    filename: str | None


class ImportJobs:
    """The jobs table, over the application's connection pool."""

    def __init__(
        self,
        app: CareApplication,
        *,
        limits: Limits | None = None,
        keep_days: int = 7,
        views_ready: Callable[[int], bool] | None = None,
    ) -> None:
        """``views_ready(position)`` waits for the registry view to reach a position (the villages
        are read from it): the API passes its read side's wait; the CLI catches up first."""
        self.app = app
        self.views_ready = views_ready
        self.limits = limits or Limits()
        self.keep_days = keep_days
        self._tables = threading.Lock()
        self._made = False

    def _connection(self) -> Any:
        recorder: Any = self.app.recorder
        return recorder.datastore.get_connection()

    def create_tables(self) -> None:
        with self._tables:
            if self._made:
                return
            # Several API processes start at once, and CREATE ... IF NOT EXISTS alone can collide: the
            # lock is held until the tables are committed (the pool's connections are in autocommit,
            # where a transaction-level lock would end with its own statement).
            with self._connection() as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('guanai_import_jobs ddl'))")
                conn.execute(DDL)
            self._made = True

    # ---- the sealed file ------------------------------------------------------------------------

    def _keys(self) -> Any:
        """The store's key store (infrastructure/store.py): the file is sealed as personal data is."""
        store: Any = self.app.store
        return store.key_store

    def _subject(self, job_id: UUID) -> str:
        return f"import-file:{job_id}"

    def _seal(self, job_id: UUID, data: bytes) -> bytes:
        key = self._keys().key_for_sealing(self._subject(job_id), None)
        nonce = secrets.token_bytes(NONCE)
        return nonce + key.encrypt(nonce, data, str(job_id).encode())

    def _open(self, job_id: UUID, sealed: bytes) -> bytes:
        key = self._keys().keys_for_opening([self._subject(job_id)])[self._subject(job_id)]
        if key is None:
            raise UploadGone("the uploaded file was deleted")
        return key.decrypt(sealed[:NONCE], sealed[NONCE:], str(job_id).encode())

    # ---- jobs -----------------------------------------------------------------------------------

    def submit(
        self,
        data: bytes,
        filename: str | None,
        *,
        unit: OrgUnit,
        actor_id: str,
        actor_role: str,
        dry_run: bool,
        job_id: UUID | None = None,
    ) -> dict[str, Any]:
        """Check the file can be read at all (size, kind, zip bomb) and record the job; the
        rows are read by ``run``. A refused file is recorded too (status ``refused``), unsealed
        bytes never; the answer then carries the refusal itself under ``refusal`` (which kind of
        ``UploadRefused``, for the edge to answer as it answers that kind)."""
        self.create_tables()
        self.purge()
        job_id = job_id or uuid4()
        kind, status, detail, sealed, refusal = None, "queued", None, None, None
        try:
            kind = check_upload(data, filename, self.limits)
            sealed = self._seal(job_id, data)
        except UploadRefused as e:
            status, detail, refusal = "refused", e.reason, e
        with self._connection() as conn:
            conn.execute(
                "INSERT INTO guanai_import_jobs (id, actor_id, actor_role, org_unit_id, org_path, dry_run, status,"
                " file_kind, file_sha256, file_size, detail, file_sealed, purge_after)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now() + make_interval(days => %s))",
                (
                    job_id,
                    actor_id,
                    actor_role,
                    unit.id,
                    list(unit.path),
                    dry_run,
                    status,
                    kind,
                    hashlib.sha256(data).digest(),
                    len(data),
                    detail,
                    sealed,
                    self.keep_days,
                ),
            )
        job = self.get(job_id)
        assert job is not None
        return job if refusal is None else {**job, "refusal": refusal}

    def get(self, job_id: UUID) -> dict[str, Any] | None:
        self.create_tables()
        with self._connection() as conn, conn.cursor() as cur:
            row = cur.execute(
                f"SELECT {PUBLIC_COLUMNS}, file_sealed IS NOT NULL AS file_kept FROM guanai_import_jobs WHERE id = %s",
                (job_id,),
            ).fetchone()
        if row is None:
            return None
        job = dict(row)
        if job["status"] == "running" and (datetime.now(UTC) - job["updated_at"]).total_seconds() > STALE_SECONDS:
            job["status"] = "interrupted"  # its process died: run it again (the rows written are kept)
        return job

    def report(self, job_id: UUID) -> dict[str, Any] | None:
        with self._connection() as conn, conn.cursor() as cur:
            row = cur.execute("SELECT report FROM guanai_import_jobs WHERE id = %s", (job_id,)).fetchone()
        return None if row is None else (row["report"] or {})

    def org_path(self, job_id: UUID) -> list[UUID] | None:
        self.create_tables()
        with self._connection() as conn, conn.cursor() as cur:
            row = cur.execute("SELECT org_path FROM guanai_import_jobs WHERE id = %s", (job_id,)).fetchone()
        return None if row is None else list(row["org_path"])

    def _update(self, job_id: UUID, **values: Any) -> None:
        names = ", ".join(f"{k} = %({k})s" for k in values)
        with self._connection() as conn:
            conn.execute(
                f"UPDATE guanai_import_jobs SET {names}, updated_at = now() WHERE id = %(id)s", {**values, "id": job_id}
            )

    def _progress(self, job_id: UUID) -> Callable[[Outcome], None]:
        def write(out: Outcome) -> None:
            c = out.counts()
            self._update(
                job_id,
                total=c["total"],
                done=c["done"],
                created=c["created"],
                corrected=c["corrected"],
                unchanged=c["unchanged"],
                left_programme=c["left"],
                errors=c["errors"],
                helpers_registered=c["helpers_registered"],
                pairings_formed=c["pairings_formed"],
                pairings_changed=c["pairings_changed"],
                position=out.position,
            )
            failpoint("import.after_batch")  # crash tests: killed with batches committed and batches to go

        return write

    def villages(self, unit_id: UUID) -> list[Any]:
        with self._connection() as conn, conn.cursor() as cur:
            rows = cur.execute(
                "SELECT id, code, name, level, org_path FROM reg_org_units WHERE org_path @> ARRAY[%s]::uuid[]",
                (unit_id,),
            ).fetchall()
        return villages_of(rows)

    def run(
        self,
        job_id: UUID,
        *,
        meta: CommandMeta,
        progress: Callable[[Outcome], None] | None = None,
        today: date | None = None,
        batch: int | None = None,
    ) -> dict[str, Any]:
        """Read the job's file and import it (or check it, for a dry run), writing progress to
        the job after every batch; a job run again after a crash does only what is left."""
        job = self.get(job_id)
        if job is None:
            raise KeyError(job_id)
        if job["status"] == "refused":
            return job
        with self._connection() as conn, conn.cursor() as cur:
            sealed = cur.execute("SELECT file_sealed FROM guanai_import_jobs WHERE id = %s", (job_id,)).fetchone()
        if sealed is None or sealed["file_sealed"] is None:
            self._update(job_id, status="failed", detail="the uploaded file was deleted: upload it again")
            return self.get(job_id) or job
        data = self._open(job_id, bytes(sealed["file_sealed"]))
        self._update(job_id, status="running", detail=None)
        try:
            _, tables = read_upload(data, None, self.limits)
            sheets = sheets_of([(t.name, t.rows) for t in tables])
        except (UploadRefused, SheetError) as e:
            reason = e.reason
            missing = getattr(e, "missing", [])
            self._update(
                job_id, status="refused", detail=reason, report=Jsonb({"missing_columns": missing, "problems": []})
            )
            return self.get(job_id) or job
        unit = self.app.load(OrgUnit, job["org_unit_id"])
        if self.views_ready is not None:
            self.views_ready(self.app.recorder.max_notification_id() or 0)
        importer = RegistryImporter(self.app, self.villages(unit.id), unit, **({"batch": batch} if batch else {}))
        write = self._progress(job_id)

        def both(out: Outcome) -> None:
            write(out)
            if progress:
                progress(out)

        today = today or (meta.occurred_at + CHINA_OFFSET).date()
        try:
            outcome = importer.run(sheets, meta, dry_run=job["dry_run"], today=today, progress=both)
        except Exception as e:
            self._update(job_id, status="failed", detail=f"{type(e).__name__}: the import stopped; run it again")
            raise
        write(outcome)
        report = {
            "sheets": outcome.sheets,
            "ignored_columns": outcome.ignored_columns,
            "counts": outcome.counts(),
            "problems": [p.as_dict() for p in outcome.problems],
        }
        self._update(job_id, status="done", report=Jsonb(report))
        return self.get(job_id) or job

    def file(self, job_id: UUID) -> bytes | None:
        """The uploaded file, opened (None: deleted after its days)."""
        with self._connection() as conn, conn.cursor() as cur:
            row = cur.execute("SELECT file_sealed FROM guanai_import_jobs WHERE id = %s", (job_id,)).fetchone()
        if row is None or row["file_sealed"] is None:
            return None
        return self._open(job_id, bytes(row["file_sealed"]))

    def report_workbook(self, job_id: UUID) -> bytes | None:
        """The uploaded workbook with the bad cells filled and commented (None: file deleted)."""
        with self._connection() as conn, conn.cursor() as cur:
            row = cur.execute("SELECT file_sealed, report FROM guanai_import_jobs WHERE id = %s", (job_id,)).fetchone()
        if row is None or row["file_sealed"] is None:
            return None
        data = self._open(job_id, bytes(row["file_sealed"]))
        marks: dict[tuple[str, str], list[str]] = {}
        for p in (row["report"] or {}).get("problems", []):
            ref = p.get("cell") or f"A{p['row']}"
            marks.setdefault((p.get("sheet") or "", ref), []).append(f"{p['column'] or '本行'}: {p['reason']}")
        return mark_cells(data, marks)

    def purge(self) -> int:
        """Delete the files kept past their days (their reports stay)."""
        with self._connection() as conn:
            cur = conn.execute(
                "UPDATE guanai_import_jobs SET file_sealed = NULL WHERE file_sealed IS NOT NULL AND purge_after < now()"
            )
            return cur.rowcount or 0
