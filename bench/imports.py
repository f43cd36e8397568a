"""Importing a county's registry sheet (台账) against the existing command path and a raw COPY, in one run;
and the time to export the demo county's registry workbook.

    python -m bench.imports [--rows 20000] [--batch 500] [--command-rows 5000] [--scale 1.0] [--database-url URL]

On a scratch database: a county of 10 townships and 100 villages, and an XLSX of ``--rows`` people
(children and elders, valid ID numbers, guardians, risk tags). Then, one thread each, as the CLI
runs them:

- **import**: ``guanai import``'s path (``ImportJobs.submit`` + ``run``): the upload checked and
  sealed, the sheet read, every row checked, ``--batch`` people per transaction with their lookup rows;
- **import again**: the same file again (every row found unchanged, nothing written);
- **command path**: the same kind of people (their own ID numbers) registered one by one through
  ``CareApplication.register_person``, what ``POST /persons`` runs, one transaction each
  (``--command-rows`` of them: the rate is the figure);
- **raw COPY**: the same rows' fields as JSONB into a plain table with one COPY: the floor.

Then the demo county (``--scale``, 1.0: ~4,300 people) is seeded and its registry workbook
exported as ``GET /supervision/{county}/registry.xlsx`` makes it (one sheet per township), timed.
Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import UTC, date, datetime
from typing import Any
from uuid import uuid4

import psycopg
from psycopg import sql

from api.registry_export import export_registry
from application.care import CareApplication
from application.registry_import import find_header, read_rows
from bench.common import DEFAULT_SERVER_URL, code_version, print_table, reachable, scratch_database, server_facts
from domain.base import CommandMeta
from domain.org_unit import OrgUnit, org_unit_id
from domain.vocabulary import OrgLevel
from guanai import bootstrap
from guanai.bootstrap import Process
from guanai.demo.seed import seed_county
from infrastructure.import_jobs import ImportJobs
from infrastructure.settings import load_settings
from infrastructure.spreadsheets import Limits, read_upload
from projections.registry import RegistryView
from tests.imports_support import HEADERS, child_row, elder_row, xlsx  # the tests' sheet builders
from workers.projector import Projector

TOWNSHIPS, VILLAGES = 10, 10
SETTINGS = load_settings()


def meta(who: str) -> CommandMeta:
    return CommandMeta(
        actor_id=who, actor_role="administrator", correlation_id=f"bench-{uuid4()}", occurred_at=datetime.now(UTC)
    )


def county(app: CareApplication) -> tuple[str, list[str]]:
    prefix = f"{random.randrange(100000, 999999)}"
    m = meta("bench")
    app.register_org_unit(code=f"{prefix}000000", name="基准县", level=OrgLevel.COUNTY, parent_id=None, meta=m)
    names = []
    for t in range(TOWNSHIPS):
        t_code = f"{prefix}{t + 1:03d}000"
        app.register_org_unit(
            code=t_code, name=f"第{t + 1}镇", level=OrgLevel.TOWNSHIP, parent_id=org_unit_id(f"{prefix}000000"), meta=m
        )
        for v in range(VILLAGES):
            name = f"第{t + 1}镇{v + 1}村"
            app.register_org_unit(
                code=f"{prefix}{t + 1:03d}{v + 1:03d}",
                name=name,
                level=OrgLevel.VILLAGE,
                parent_id=org_unit_id(t_code),
                meta=m,
            )
            names.append(name)
    return f"{prefix}000000", names


def sheet_rows(villages: list[str], n: int, first_seq: int) -> list[list[Any]]:
    rng = random.Random(first_seq)
    rows: list[list[Any]] = [HEADERS]
    for i in range(n):
        seq = first_seq + i
        village = villages[i % len(villages)]
        if i % 5 == 0:
            rows.append(
                elder_row(
                    village,
                    seq,
                    birth=date(1940 + rng.randrange(20), 1 + rng.randrange(12), 1 + rng.randrange(28)),
                    风险或困境类型=rng.choice(["独居", "低保、空巢", "", "高龄"]),
                )
            )
        else:
            rows.append(
                child_row(
                    village,
                    seq,
                    birth=date(2010 + rng.randrange(14), 1 + rng.randrange(12), 1 + rng.randrange(28)),
                    风险或困境类型=rng.choice(["", "", "困境儿童"]),
                )
            )
    return rows


def timed(label: str, fn: Any) -> tuple[float, Any]:
    print(f"bench: {label} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--command-rows", type=int, default=5_000)
    p.add_argument("--scale", type=float, default=1.0, help="the demo county exported (1.0: ~4,300 people)")
    p.add_argument("--database-url", default=DEFAULT_SERVER_URL, help="a server where scratch databases may be made")
    args = p.parse_args()
    if not reachable(args.database_url):
        print(f"bench: no PostgreSQL at {args.database_url}", file=sys.stderr)
        return 2
    facts = server_facts(args.database_url)
    with scratch_database(args.database_url, prefix="guanai_bench_imports") as url:
        app = bootstrap.care_application(SETTINGS, Process.CLI, url, pool_size=4)
        try:
            code, villages = county(app)
            with Projector(url, app=app) as projector:
                projector.catch_up()
            unit = app.load(OrgUnit, org_unit_id(code))
            jobs = ImportJobs(app, limits=Limits(max_bytes=200 << 20, max_unpacked_bytes=2 << 30, max_rows=200_000))
            rows = sheet_rows(villages, args.rows, 10_000)
            data = xlsx(rows)
            read_s, _ = timed(
                "reading the sheet",
                lambda: read_rows(
                    [find_header(t.rows, t.name) for t in read_upload(data, "x.xlsx", jobs.limits)[1]], date.today()
                ),
            )

            def run_import() -> dict[str, Any]:
                job = jobs.submit(
                    data, "x.xlsx", unit=unit, actor_id="bench", actor_role="administrator", dry_run=False
                )
                return jobs.run(job["id"], meta=meta("bench"), batch=args.batch)

            import_s, job = timed(f"importing {args.rows:,} rows", run_import)
            assert job["created"] == args.rows and job["errors"] == 0, job
            again_s, again = timed("importing them again", run_import)
            assert again["unchanged"] == args.rows, again

            command_rows = sheet_rows(villages, args.command_rows, 5_000_000)
            read, problems = read_rows([find_header(command_rows)], date.today())
            assert not problems, problems[:3]
            by_name = {v.name: v.id for v in jobs.villages(unit.id)}

            def register_all() -> None:
                for r in read:
                    app.register_person(
                        id=uuid4(),
                        kind=r.kind,
                        name=r.name,
                        sex=r.sex,
                        birth_date=r.birth_date,
                        village_id=by_name[r.village or ""],
                        meta=meta("bench"),
                        id_number=r.id_number,
                        household=r.household,
                        risk_tags=r.risk_tags,
                        guardian=r.guardian,
                    )

            command_s, _ = timed(f"registering {len(read):,} people one by one", register_all)
            copy_s = copy_baseline(url, rows)
            with Projector(url, app=app) as projector:
                projector.catch_up()
        finally:
            app.close()

    with scratch_database(args.database_url, prefix="guanai_bench_export") as url:
        app = bootstrap.care_application(SETTINGS, Process.CLI, url, pool_size=6)
        try:
            seed_s, counts = timed(
                f"seeding the demo county (scale {args.scale})", lambda: seed_county(app, scale=args.scale)
            )
            with Projector(url, app=app) as projector:
                projector.catch_up()
                demo = app.load(OrgUnit, counts.county_id)
                export_s, (workbook, people) = timed(
                    "exporting its registry",
                    lambda: export_registry(app, RegistryView(projector.pool), demo, record_access=lambda ids: None),
                )
        finally:
            app.close()

    print(f"Run of {datetime.now().astimezone():%Y-%m-%d %H:%M} (local), code {code_version()}, {facts}\n")
    print_table(
        ["path", "rows", "seconds", "rows/s", "vs raw COPY"],
        [
            ["raw COPY (floor)", f"{args.rows:,}", f"{copy_s:.2f}", f"{args.rows / copy_s:,.0f}", "1"],
            [
                "import (new people)",
                f"{args.rows:,}",
                f"{import_s:.2f}",
                f"{args.rows / import_s:,.0f}",
                f"{(args.rows / import_s) / (args.rows / copy_s):.3f}",
            ],
            [
                "import again (unchanged)",
                f"{args.rows:,}",
                f"{again_s:.2f}",
                f"{args.rows / again_s:,.0f}",
                f"{(args.rows / again_s) / (args.rows / copy_s):.3f}",
            ],
            [
                "command path, one by one",
                f"{args.command_rows:,}",
                f"{command_s:.2f}",
                f"{args.command_rows / command_s:,.0f}",
                f"{(args.command_rows / command_s) / (args.rows / copy_s):.3f}",
            ],
            [
                "reading and checking the sheet alone",
                f"{args.rows:,}",
                f"{read_s:.2f}",
                f"{args.rows / read_s:,.0f}",
                "",
            ],
        ],
    )
    print()
    print_table(
        ["export", "people", "sheets' bytes", "seconds"],
        [
            [
                f"demo county registry.xlsx (scale {args.scale}; seeded in {seed_s:.0f} s)",
                f"{people:,}",
                f"{len(workbook):,}",
                f"{export_s:.2f}",
            ]
        ],
    )
    return 0


def copy_baseline(url: str, rows: list[list[Any]]) -> float:
    """The rows' fields as JSONB into a plain table, one COPY: what writing them costs at least."""
    table = sql.Identifier(f"bench_copy_{uuid4().hex[:8]}")
    payloads = [json.dumps(dict(zip(HEADERS, r, strict=True)), ensure_ascii=False, default=str) for r in rows[1:]]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (id uuid PRIMARY KEY, payload jsonb NOT NULL)").format(table))
        started = time.perf_counter()
        with (
            conn.transaction(),
            conn.cursor() as cur,
            cur.copy(sql.SQL("COPY {} (id, payload) FROM STDIN").format(table)) as copy,
        ):
            for payload in payloads:
                copy.write_row((uuid4(), payload))
        elapsed = time.perf_counter() - started
        conn.execute(sql.SQL("DROP TABLE {}").format(table))
    return elapsed


if __name__ == "__main__":
    sys.exit(main())
