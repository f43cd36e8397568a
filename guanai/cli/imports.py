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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from psycopg_pool import ConnectionPool

from api.registry_export import export_registry, template
from application.audit import Audit
from application.care import CareApplication, NotFoundError, event_store_env
from application.registry_importer import Outcome
from domain.base import CommandMeta
from domain.org_unit import OrgUnit, org_unit_id
from domain.vocabulary import ActorRole
from guanai.cli.progress import ProgressBar
from infrastructure.import_jobs import ImportJobs
from infrastructure.settings import Settings
from infrastructure.spreadsheets import Limits


def add_parsers(sub: Any) -> None:
    i = sub.add_parser("import", help="import the registry (台账) from an XLSX or CSV file")
    i.add_argument("file", type=Path, help="an .xlsx or .csv file with Chinese headers (guanai export template)")
    _unit_arguments(i)
    i.add_argument("--dry-run", action="store_true", help="check every row and report; write nothing")
    i.add_argument("--by", default="operator", help="who imports (an id, not a name; recorded on every event)")
    i.add_argument("--batch", type=int, default=500, help="rows per transaction (default 500)")
    i.add_argument("--report", type=Path, help="write the file back with the bad cells marked and commented")
    i.add_argument("--json", action="store_true", help="print the job and its report as JSON")
    lk = sub.add_parser("lookups", help="the keyed hashes that find people by ID number on import")
    lk.add_argument("action", choices=["rebuild"], help="rebuild: add those missing (a store from before imports)")
    e = sub.add_parser("export", help="export the registry (台账) or the inspection lists as XLSX")
    e.add_argument("what", choices=["registry", "template"],
                   help="registry: one sheet per township; template: the empty import workbook")
    _unit_arguments(e, required=False)
    e.add_argument("--out", type=Path, required=True, help="the .xlsx file to write")
    e.add_argument("--by", default="operator", help="who exports (an id, not a name; recorded in the access log)")


def _unit_arguments(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    scope = p.add_mutually_exclusive_group(required=required)
    scope.add_argument("--org-unit", type=UUID, help="the org unit imported into (its subtree's villages)")
    scope.add_argument("--org-code", help="12-digit division code of that unit")


def _unit(app: CareApplication, args: argparse.Namespace) -> OrgUnit:
    return app.load(OrgUnit, args.org_unit or org_unit_id(args.org_code))


def cmd_import(settings: Settings, args: argparse.Namespace, database_url: str, catch_up: Callable[[], Any]) -> int:
    """``catch_up`` brings the views up to date (the villages are read from the registry view)."""
    data = args.file.read_bytes()
    catch_up()
    app = CareApplication(event_store_env(database_url, pool_size=4), helper_capacity=settings.helper_capacity)
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
        meta = CommandMeta(actor_id=args.by, actor_role=ActorRole.ADMINISTRATOR.value,
                           correlation_id=f"import:{job_id}", occurred_at=datetime.now(UTC))
        job = jobs.submit(data, args.file.name, unit=unit, actor_id=args.by, actor_role=meta.actor_role,
                          dry_run=args.dry_run, job_id=job_id)
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


def cmd_lookups(settings: Settings, args: argparse.Namespace, database_url: str, catch_up: Callable[[], Any]) -> int:
    app = CareApplication(event_store_env(database_url, pool_size=2))
    try:
        written = app.rebuild_lookups()
    finally:
        app.close()
    print(f"guanai lookups: {written} ID numbers indexed that were not")
    return 0


def cmd_export(settings: Settings, args: argparse.Namespace, database_url: str, catch_up: Callable[[], Any]) -> int:
    if args.what == "template":
        args.out.write_bytes(template())
        print(f"guanai export: the import template written to {args.out}")
        return 0
    if args.org_unit is None and args.org_code is None:
        print("guanai export registry: name the unit (--org-code or --org-unit)", file=sys.stderr)
        return 2
    catch_up()
    app = CareApplication(event_store_env(database_url, pool_size=4))
    pool = ConnectionPool(database_url, min_size=1, max_size=2, open=True)
    try:
        unit = _unit(app, args)
        audit = Audit(app, database_url)

        def record(ids: Any) -> None:
            audit.record_access(ids, actor_id=args.by, actor_role=ActorRole.ADMINISTRATOR.value,
                                endpoint="guanai export registry", request_id=f"cli:{uuid4()}")

        data, people = export_registry(app, pool, unit, record_access=record)
        args.out.write_bytes(data)
        print(f"guanai export: {people} people under {unit.name} ({unit.code}) written to {args.out}")
        return 0
    finally:
        pool.close()
        app.close()
