"""The demo's emergencies: rosters for every township and the county, four reports lived through
the workers' commands, one of which escalates on its deadline; a second run writes nothing."""

from __future__ import annotations

import io

from application.care import CareApplication, event_store_env
from domain.emergency import EmergencyReport, Status
from domain.roster import roster_id
from guanai.demo.emergencies import print_emergency_summary, simulate_emergencies
from guanai.demo.plan import plan_county
from guanai.demo.seed import seed_county


def test_the_demo_files_reports_and_one_escalates_on_its_deadline(fresh_database_url: str) -> None:
    app = CareApplication(event_store_env(fresh_database_url, pool_size=4))
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
