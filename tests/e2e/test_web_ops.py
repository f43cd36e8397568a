"""The supervisor, auditor and roster pages over HTTP (no browser): every figure on the supervision
page is the API's, the charts' series add up to the summary, lists and drill-down, the audit
case and its as-of view, roster forms with their refusals, and scope (another unit's page is 404).
The browser flows are in tests/e2e/test_web_ops_browser.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from projections.supervision import CHINA
from projections.supervision_series import SupervisionSeries, weeks_up_to
from projections.supervision_view import Period
from tests.api_support import ApiServer, token
from tests.emergency_support import wait_until
from tests.integration.test_supervision import Care, care_in


@pytest.fixture(scope="module")
def county(pg_base_url: str) -> Iterator[tuple[Care, ApiServer]]:
    from tests.conftest import create_database, drop_database

    url = create_database(pg_base_url, prefix="guanai_test_webops")
    try:
        with care_in(url) as care:
            server = ApiServer(url, None).start()
            try:
                yield care, server
            finally:
                server.stop()
    finally:
        drop_database(pg_base_url, url)


def client_for(server: ApiServer, role: str, unit: Any, subject: str | None = None) -> httpx.Client:
    return httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {token(role, unit, subject)}"}, timeout=30
    )


def figures(html: str) -> dict[str, str]:
    """``data-figure`` -> the raw value (``data-value`` where the shown text is formatted)."""
    out = {}
    for m in re.finditer(r'<dd data-figure="([^"]+)"(?: data-value="([^"]*)")?>([^<]*)</dd>', html):
        out[m.group(1)] = m.group(2) if m.group(2) is not None else m.group(3)
    return out


def test_the_supervision_page_shows_the_api_figures_for_each_period(county: tuple[Care, ApiServer]) -> None:
    care, server = county
    with client_for(server, "county_supervisor", care.world.county) as c:
        c.get("/supervision/530428000000", params={"min_position": care.world.last_position}).raise_for_status()
        for period in ("week", "month", "year"):
            api = c.get("/supervision/530428000000", params={"period": period}).json()
            page = c.get("/app/supervision/530428000000", params={"period": period})
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            shown = figures(page.text)
            assert len(shown) >= 20
            for key, value in shown.items():
                section, name = key.split(".")
                expected = api[section][name]
                assert value == ("" if expected is None else str(expected)), (period, key, value, expected)
        assert "红河镇" in page.text or len(api["units"]) == 2
        for unit in api["units"]:  # drill-down links one level down
            assert f'href="/app/supervision/{unit["code"]}?period=year"' in page.text


def test_the_chart_series_add_up_to_the_summary(county: tuple[Care, ApiServer]) -> None:
    care, server = county
    series = SupervisionSeries(server.projector.pool)
    period = care.period
    with client_for(server, "county_supervisor", care.world.county) as c:
        first, last = period.first.isoformat(), period.last.isoformat()
        api = c.get(f"/supervision/{care.world.county}", params={"from": first, "to": last}).json()
    by_unit = series.visits_by_unit(care.world.county, period)
    for outcome in ("on_time", "late", "missed", "open"):
        assert sum(r[outcome] for r in by_unit) == api["visits"][outcome], outcome
    weeks = series.visits_by_week(
        care.world.county,
        [
            Period("week", care.last_week.start, care.last_week.last_day),
            Period("week", care.this_week.start, care.this_week.last_day),
        ],
    )
    for outcome in ("on_time", "late", "missed", "open"):
        assert sum(r[outcome] for r in weeks) == api["visits"][outcome], outcome
    response = series.response_by_unit(care.world.county, period)
    assert sum(r["reported"] for r in response) == api["emergencies"]["reported"]
    assert len(weeks_up_to(datetime.now(CHINA).date(), 8)) == 8


def test_lists_name_people_and_link_to_them_and_their_csv(county: tuple[Care, ApiServer]) -> None:
    care, server = county
    with client_for(server, "township_supervisor", care.world.t1) as c:
        code = c.get(f"/supervision/{care.world.t1}").json()["unit"]["code"]
        uncovered = c.get(f"/supervision/{code}/uncovered").json()
        page = c.get(f"/app/supervision/{code}/uncovered")
        assert page.status_code == 200
        for row in uncovered["items"]:
            assert f'href="/app/people/{row["id"]}"' in page.text and row["name"] in page.text
        assert f'href="/supervision/{code}/uncovered.csv?lang=zh"' in page.text
        assert c.get(f"/supervision/{code}/uncovered.csv", params={"lang": "zh"}).status_code == 200


def test_a_unit_or_person_outside_the_reader_is_not_found(county: tuple[Care, ApiServer]) -> None:
    care, server = county
    w = care.world
    with client_for(server, "village_cadre", w.v1) as c:
        assert c.get(f"/app/supervision/{w.v1}").status_code == 200
        assert c.get(f"/app/supervision/{w.v2}").status_code == 404
        mine = next(p for p in w.elders if c.get(f"/persons/{p}").status_code == 200)
        theirs = next(p for p in w.elders if c.get(f"/persons/{p}").status_code == 404)
        assert c.get(f"/app/people/{mine}").status_code == 200
        assert c.get(f"/app/people/{theirs}").status_code == 404
        village = c.get(f"/app/supervision/{w.v1}").text  # the drill-down's last step: the village's people
        assert f'href="/app/people/{mine}"' in village and str(theirs) not in village
    with client_for(server, "township_responder", w.t1) as c:  # responders: figures, not the lists
        assert c.get(f"/app/supervision/{w.t1}").status_code == 200
        assert c.get(f"/app/supervision/{w.t1}/uncovered").status_code == 403
    with client_for(server, "volunteer", w.v1) as c:
        assert c.get(f"/app/supervision/{w.v1}").status_code == 403


def test_the_auditor_case_page_differs_between_the_axes_for_a_late_record(county: tuple[Care, ApiServer]) -> None:
    care, server = county
    person = care.world.elders[1]  # task B: missed last week, then logged late (recorded now)
    at = care.late_visit_at.astimezone(CHINA).replace(second=0, microsecond=0)
    moment = f"{at + (care.now - at) / 2:%Y-%m-%dT%H:%M}"
    with client_for(server, "auditor", care.world.county) as c:
        occurred = c.get(f"/app/audit/persons/{person}", params={"as_of": moment, "axis": "occurred"})
        recorded = c.get(f"/app/audit/persons/{person}", params={"as_of": moment, "axis": "recorded"})
        assert occurred.status_code == recorded.status_code == 200
        count = re.compile(r'data-asof="visit_logs">(\d+)<')
        assert (count.search(occurred.text).group(1), count.search(recorded.text).group(1)) == ("1", "0")
        assert 'data-chain="ok"' in occurred.text
        assert f'href="/audit/streams/{person}/export?format=html"' in occurred.text
        verified = c.get("/app/audit/verify", headers={"HX-Request": "true"})
        assert 'data-verified="ok"' in verified.text and "<html" not in verified.text
        bad = c.get(f"/app/audit/persons/{person}", params={"as_of": "yesterday"})
        assert bad.status_code == 400
    with client_for(server, "township_supervisor", care.world.t1) as c:
        assert c.get(f"/app/audit/persons/{person}").status_code == 403


def test_roster_forms_set_up_change_and_refuse_with_reasons(county: tuple[Care, ApiServer]) -> None:
    care, server = county
    t2 = care.world.t2
    with client_for(server, "county_supervisor", care.world.county) as c:
        assert 'href="/app/rosters/' in c.get("/app/rosters").text
        r = c.post(f"/app/rosters/{t2}", data={"critical": "120", "high": "", "normal": "3600"})
        assert r.status_code == 303, r.text
        assert c.get(f"/rosters/{t2}").json()["ack_deadlines"]["critical"] == 120
        bad = c.post(f"/app/rosters/{t2}/deadlines", data={"critical": "0"})
        assert bad.status_code == 422 and 'data-field="critical"' in bad.text
        assert c.get(f"/rosters/{t2}").json()["ack_deadlines"]["critical"] == 120
        r = c.post(
            f"/app/rosters/{t2}/responders",
            data={
                "responder_id": "r-1",
                "name": "值班员",
                "phone": "13900000002",
                "tier": "primary",
                "shifts": "weekdays",
            },
        )
        assert r.status_code == 303, r.text
        roster = c.get(f"/rosters/{t2}").json()
        assert [x["responder_id"] for x in roster["responders"]] == ["r-1"] and roster["responders"][0]["shifts"]
        bad = c.post(f"/app/rosters/{t2}/responders", data={"responder_id": "r 2", "name": "x", "phone": "1"})
        assert bad.status_code == 422 and "data-problem" in bad.text
        assert c.post(f"/app/rosters/{t2}/responders/r-1/remove", data={}).status_code == 303
        assert c.get(f"/rosters/{t2}").json()["responders"] == []
    with client_for(server, "auditor", care.world.county) as c:
        assert c.get(f"/app/rosters/{t2}").status_code == 200
        assert c.post(f"/app/rosters/{t2}/deadlines", data={"critical": "60"}).status_code == 403


def test_a_refused_account_form_is_shown_again_over_the_accounts_list(county: tuple[Care, ApiServer]) -> None:
    """The form posts to a rule that lists nothing; the page it answers still lists the accounts
    in the reader's scope, with the refused field."""
    care, server = county
    with client_for(server, "administrator", None) as c:
        opened = c.post(
            "/app/accounts",
            data={"role": "township_supervisor", "org_unit_id": str(care.world.t2), "phone": "13900000011"},
        )
        assert opened.status_code == 200 and "data-activation-code" in opened.text, opened.text[:300]
        listed = wait_until(lambda: c.get("/accounts").json()["items"], what="the account in the accounts view")
        bad = c.post(
            "/app/accounts", data={"role": "township_supervisor", "org_unit_id": str(care.world.t2), "phone": "x"}
        )
        assert bad.status_code == 422, bad.text[:300]
        assert 'data-field="phone"' in bad.text
        assert all(f'data-account="{a["id"]}"' in bad.text for a in listed[:50])
