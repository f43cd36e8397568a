"""The demo's emergencies: rosters for every township and the county, four reports lived through
the workers' commands, one of which escalates on its deadline; a second run writes nothing."""

from __future__ import annotations

import io
import re

from domain.emergency import EmergencyReport, Status
from domain.roster import roster_id
from guanai.demo.emergencies import print_emergency_summary, simulate_emergencies
from guanai.demo.plan import plan_county
from guanai.demo.report import print_supervision
from guanai.demo.seed import seed_county
from guanai.demo.visits import simulate_visits
from projections.supervision_view import SupervisionView
from tests.app_support import make_care
from workers.projector import Projector


def test_the_demo_files_reports_and_one_escalates_on_its_deadline(fresh_database_url: str) -> None:
    app = make_care(fresh_database_url, pool_size=4)
    try:
        seed_county(app, seed=7, scale=0.03)
        plan = plan_county(7, 0.03)
        ids = simulate_emergencies(app, plan, seed=7)
        reports = [app.load(EmergencyReport, i) for i in ids]
        assert app.load_roster(plan.county.id).id == roster_id(plan.county.id)
        assert [r.status for r in reports] == [
            Status.RESOLVED,
            Status.ACKNOWLEDGED,
            Status.RESOLVED,
            Status.ACKNOWLEDGED,
        ]
        escalated = [[(e["from_level"], e["reason"]) for e in r.escalations] for r in reports]
        assert escalated == [[], [(0, "manual")], [], [(0, "deadline_passed")]]
        assert all(0 in r.routings for r in reports) and 1 in reports[3].routings
        before = app.recorder.max_notification_id()
        assert simulate_emergencies(app, plan, seed=7) == ids
        assert app.recorder.max_notification_id() == before, "a second run writes nothing"
        out = io.StringIO()
        print_emergency_summary(app, ids, out)
        assert "deadline_passed" in out.getvalue() and "critical_illness" in out.getvalue()
    finally:
        app.close()


def test_the_demos_visits_line_and_its_supervision_summary_count_the_same_emergencies(fresh_database_url: str) -> None:
    """Issue 12: the visits line said "6 emergencies raised", the summary "Emergencies reported 4"."""
    app = make_care(fresh_database_url, pool_size=4)
    try:
        counts = seed_county(app, seed=7, scale=0.03)
        visits = simulate_visits(app, seed=7, weeks=2, workers=2, emergency_rate=0.05)  # a few, surely
        raised = int(re.search(r"(\d+) emergencies raised", str(visits))[1])
        assert raised > 0 and raised == len(visits.flagged)
        ids = simulate_emergencies(app, plan_county(7, 0.03), seed=7, flagged=visits.flagged)
        listed = io.StringIO()
        print_emergency_summary(app, ids, listed)
        with Projector(fresh_database_url, app=app) as projector:
            projector.catch_up()
            summary = io.StringIO()
            print_supervision(SupervisionView(projector.pool), counts.county_id, summary)
        reported = int(re.search(r"Emergencies reported\s+(\d+)", summary.getvalue())[1])
        lines = [line for line in listed.getvalue().splitlines() if line.startswith("  ")]
        assert reported == raised + 4 == len(lines)
        assert sum("(raised on a visit)" in line for line in lines) == raised
        from_visits = [app.load(EmergencyReport, i) for i in ids[:raised]]
        assert {(r.source, r.status) for r in from_visits} == {("visit", Status.RESOLVED)}
        before = app.recorder.max_notification_id()
        assert simulate_emergencies(app, plan_county(7, 0.03), seed=7, flagged=visits.flagged) == ids
        assert app.recorder.max_notification_id() == before, "a second run writes nothing"
    finally:
        app.close()
