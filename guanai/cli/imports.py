"""``guanai import FILE`` and ``guanai export``: the county's registry in and out of spreadsheets
from the command line (the same jobs and workbooks as ``POST /imports`` and the exports).

    guanai import 台账.xlsx --org-code 530429000000 [--dry-run] [--report marked.xlsx]
    guanai export registry --org-code 530429000000 --out 台账.xlsx

An import prints a progress bar (rows, rate, time left) and then what it did; exit 0: every row
in, 1: some rows refused (listed by row and column), 2: the file refused. Killed midway, the same
command again finishes it: rows already in are found and left as they are.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from psycopg_pool import ConnectionPool

from api.registry_export import export_registry, template
from application.care import CareApplication
from application.errors import NotFoundError
from application.registry_importer import Outcome
from domain.base import CommandMeta
from domain.org_unit import OrgUnit, org_unit_id
from domain.vocabulary import ActorRole
from guanai import bootstrap
from guanai.bootstrap import Process
from guanai.cli.progress import ProgressBar
from guanai.cli.services import migrate, services
from infrastructure.audit import Audit
from infrastructure.import_jobs import ImportJobs
from infrastructure.settings import Settings
from infrastructure.spreadsheets import Limits
from projections.registry import RegistryView


def _unit(app: CareApplication, args: argparse.Namespace) -> OrgUnit:
    return app.load(OrgUnit, args.org_unit or org_unit_id(args.org_code))


def _catch_up(settings: Settings, database_url: str) -> None:
    """The views up to date: an import reads the villages from the registry view."""
    projector = bootstrap.projector(settings, database_url)
    try:
        projector.open()
        projector.catch_up()
    finally:
        projector.close()


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    with services(settings, need_nats=False) as (database_url, _):
        migrate(settings, database_url)
        _catch_up(settings, database_url)
        return _import(settings, args, bootstrap.care_application(settings, Process.CLI, database_url, pool_size=4))


def cmd_lookups(settings: Settings, args: argparse.Namespace) -> int:
    """``lookups rebuild``: index the ID numbers of people registered before imports existed."""
    with services(settings, need_nats=False) as (database_url, _):
        migrate(settings, database_url)
        app = bootstrap.care_application(settings, Process.CLI, database_url, pool_size=2)
        try:
            written = app.rebuild_lookups()
        finally:
            app.close()
    print(f"guanai lookups: {written} ID numbers indexed that were not")
    return 0


def _import(settings: Settings, args: argparse.Namespace, app: CareApplication) -> int:
    data = args.file.read_bytes()
    try:
        jobs = ImportJobs(
            app,
            limits=Limits(settings.import_max_bytes, settings.import_max_unpacked_bytes),
            keep_days=settings.import_keep_days,
        )
        try:
            unit = _unit(app, args)
        except NotFoundError as e:
            print(f"guanai import: {e.detail}", file=sys.stderr)
            return 2
        job_id = uuid4()
        meta = CommandMeta(
            actor_id=args.by,
            actor_role=ActorRole.ADMINISTRATOR.value,
            correlation_id=f"import:{job_id}",
            occurred_at=datetime.now(UTC),
        )
        job = jobs.submit(
            data,
            args.file.name,
            unit=unit,
            actor_id=args.by,
            actor_role=meta.actor_role,
            dry_run=args.dry_run,
            job_id=job_id,
        )
        bar = ProgressBar("import" if not args.dry_run else "dry run", unit="rows")

        def progress(out: Outcome) -> None:
            bar.update(_Progress(out.done, out.total, bar))

        bar.started = datetime.now(UTC)  # type: ignore[attr-defined]
        if job["status"] != "refused":
            job = jobs.run(job_id, meta=meta, progress=progress, batch=args.batch)
        bar.finish()
        report = jobs.report(job_id) or {}
        if args.report and job["status"] == "done":
            marked = jobs.report_workbook(job_id)
            if marked is not None:
                args.report.write_bytes(marked)
        if args.json:
            print(json.dumps({"job": job, "report": report}, default=str, ensure_ascii=False))
        else:
            _print(job, report, args.dry_run)
        if job["status"] == "refused":
            return 2
        return 1 if job["errors"] else 0
    finally:
        app.close()


class _Progress:
    """done, total, rate and ETA for the progress bar."""

    def __init__(self, done: int, total: int, bar: ProgressBar) -> None:
        elapsed = max((datetime.now(UTC) - bar.started).total_seconds(), 1e-6)  # type: ignore[attr-defined]
        self.done, self.total = done, total
        self.rate = done / elapsed
        self.eta = (total - done) / self.rate if self.rate > 0 else None


def _print(job: dict[str, Any], report: dict[str, Any], dry_run: bool) -> None:
    if job["status"] == "refused":
        print(f"guanai import: the file was refused: {job['detail']}", file=sys.stderr)
        if report.get("missing_columns"):
            print("  missing columns: " + "、".join(report["missing_columns"]), file=sys.stderr)
        return
    verb = "would be" if dry_run else "were"
    print(
        f"guanai import: {job['total']} rows: {job['created']} {verb} registered, {job['corrected']} corrected, "
        f"{job['unchanged']} unchanged, {job['left_programme']} left the programme, {job['errors']} refused "
        f"(job {job['id']})"
    )
    if report.get("ignored_columns"):
        print("  columns not imported: " + "、".join(report["ignored_columns"]))
    for p in report.get("problems", [])[:200]:
        where = f"{p['sheet']}!" if p.get("sheet") else ""
        print(f"  {where}row {p['row']}, {p['column'] or 'row'}: {p['reason']}")
    if len(report.get("problems", [])) > 200:
        print(f"  ... and {len(report['problems']) - 200} more (--json or --report for all)")


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    if args.what == "template":
        args.out.write_bytes(template())
        print(f"guanai export: the import template written to {args.out}")
        return 0
    if args.org_unit is None and args.org_code is None:
        print("guanai export registry: name the unit (--org-code or --org-unit)", file=sys.stderr)
        return 2
    with services(settings, need_nats=False) as (database_url, _):
        migrate(settings, database_url)
        _catch_up(settings, database_url)
        return _export(args, database_url, bootstrap.care_application(settings, Process.CLI, database_url, pool_size=4))


def _export(args: argparse.Namespace, database_url: str, app: CareApplication) -> int:
    pool = ConnectionPool(database_url, min_size=1, max_size=2, open=True)
    try:
        unit = _unit(app, args)
        audit = Audit(app, database_url)

        def record(ids: Any) -> None:
            audit.record_access(
                ids,
                actor_id=args.by,
                actor_role=ActorRole.ADMINISTRATOR.value,
                endpoint="guanai export registry",
                request_id=f"cli:{uuid4()}",
            )

        data, people = export_registry(app, RegistryView(pool), unit, record_access=record)
        args.out.write_bytes(data)
        print(f"guanai export: {people} people under {unit.name} ({unit.code}) written to {args.out}")
        return 0
    finally:
        pool.close()
        app.close()
