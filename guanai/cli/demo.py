"""``guanai demo``: seed a realistic county through the command side, live through a few weeks of
visits and some emergencies, and print the county's summary from the views."""

from __future__ import annotations

import argparse
import io
import sys
import time

from guanai import bootstrap
from guanai.bootstrap import Process
from guanai.cli.accounts import offline_service
from guanai.cli.services import migrate, services
from guanai.demo.accounts import open_demo_accounts, print_demo_accounts
from guanai.demo.emergencies import print_emergency_summary, simulate_emergencies
from guanai.demo.plan import plan_county
from guanai.demo.report import print_supervision
from guanai.demo.seed import print_summary, seed_county
from guanai.demo.visits import print_visit_summary, simulate_visits
from infrastructure.settings import Settings
from projections.registry import RegistryView
from projections.supervision_view import SupervisionView
from projections.visit_tasks import VisitTaskView


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    started = time.monotonic()
    with services(settings, need_nats=False) as (database_url, _):
        migrate(settings, database_url)
        app = bootstrap.care_application(settings, Process.CLI, database_url, pool_size=8)
        last = {"t": 0.0}

        tty = sys.stderr.isatty()

        def progress(stage: str, done: int, total: int) -> None:
            now = time.monotonic()
            if done == total or now - last["t"] > (1.0 if tty else 5.0):
                last["t"] = now
                line = f"  {stage:<24} {done:>6}/{total:<6}"
                if tty:  # redraw one line; in a log, one line per report
                    print("\r" + line, end="" if done < total else "\n", file=sys.stderr, flush=True)
                else:
                    print(line, file=sys.stderr, flush=True)

        counts = seed_county(app, seed=args.seed, scale=args.scale, progress=progress)
        visits = simulate_visits(app, seed=args.seed, weeks=args.weeks, progress=progress)
        print(f"guanai: {visits}", file=sys.stderr)
        emergencies = io.StringIO()
        plan = plan_county(args.seed, args.scale)
        reports = simulate_emergencies(app, plan, seed=args.seed, flagged=visits.flagged)
        print_emergency_summary(app, reports, emergencies)
        accounts_service = offline_service(app, database_url, settings)
        demo_accounts = open_demo_accounts(accounts_service, plan)
        accounts_service.credentials.close()  # type: ignore[attr-defined]
        app.close()
        print(f"guanai: seeded in {counts.elapsed:.1f}s: {counts}", file=sys.stderr)
        projector = bootstrap.projector(settings, database_url)
        applied = projector.catch_up()
        print(f"guanai: views caught up ({applied} events applied)", file=sys.stderr)
        print_summary(RegistryView(projector.pool), counts.county_id, sys.stdout)
        print_visit_summary(VisitTaskView(projector.pool), counts.county_id, sys.stdout)
        print_supervision(SupervisionView(projector.pool), counts.county_id, sys.stdout)
        sys.stdout.write(emergencies.getvalue())
        print_demo_accounts(demo_accounts, f"http://{settings.host}:{settings.port}", sys.stdout)
        projector.close()
    print(
        f"\nDone in {time.monotonic() - started:.0f}s. Next: `./run serve`, then open http://127.0.0.1:{settings.port}/schema"
    )
    print(
        "A token for the county supervisor: "
        f"./run token --role county_supervisor --org-unit {counts.county_id} --subject <their id>"
    )
    return 0
