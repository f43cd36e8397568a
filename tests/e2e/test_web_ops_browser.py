"""The supervisor's, auditor's and administrator's screens in a real browser (Chromium through
Playwright), at 360 and 1280 px, checked with axe-core:

- a county supervisor's figures equal the API's supervision answer; they drill down county →
  township → village → person, and export the uncovered list as CSV;
- an auditor's as-of view of a case differs between the two time axes for a visit logged offline
  (it occurred before it was recorded); the case's chain holds, the whole log verifies;
- an administrator sets up a township's roster, adds a responder and changes a deadline, and a
  refused change is shown with its reason; the API holds what the page shows;
- a village cadre who edits the address to reach another village's person gets the not-found page.
"""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page

from domain.vocabulary import ActorRole
from projections.supervision import CHINA
from tests.api_support import ApiServer, elder, helper, token
from tests.browser import browser  # noqa: F401 - fixture
from tests.integration.test_supervision import Care, care_in
from tests.web_support import both_widths, session

AXE = Path(__file__).resolve().parents[1] / "vendor" / "axe-4.14.1.min.js"


@pytest.fixture(scope="module")
def county(pg_base_url: str) -> Iterator[tuple[Care, ApiServer]]:
    """The scripted county of tests/integration/test_supervision.py in a database of its own, with an API."""
    from tests.conftest import create_database, drop_database

    url = create_database(pg_base_url, prefix="guanai_test_webops_browser")
    try:
        with care_in(url) as care:
            server = ApiServer(url, None).start()
            try:
                yield care, server
            finally:
                server.stop()
    finally:
        drop_database(pg_base_url, url)


def api(server: ApiServer, role: str, unit: Any = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token(role, unit)}"}
    return httpx.Client(base_url=server.base_url, headers=headers, timeout=30)


def accessible(page: Page) -> None:
    """No WCAG 2.1 A/AA violation that axe-core finds on the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))  # evaluated by the test, not a script the page's CSP admits
    result = page.evaluate("axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']})")
    problems = [(v["id"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"]]
    assert not problems, problems


def shown_figures(page: Page) -> dict[str, str]:
    return page.eval_on_selector_all(
        "[data-figure]", "els => Object.fromEntries(els.map(e => [e.dataset.figure, e.dataset.value ?? e.textContent]))"
    )


def test_a_supervisor_sees_the_api_figures_drills_down_to_a_person_and_exports(browser, county) -> None:
    care, server = county
    w = care.world
    with api(server, "county_supervisor", w.county) as c:
        c.get(f"/supervision/{w.county}", params={"min_position": w.last_position}).raise_for_status()
        summary = c.get(f"/supervision/{w.county}").json()
        uncovered = c.get(f"/supervision/{w.county}/uncovered").json()["items"][0]
        township = next(u for u in summary["units"] if u["uncovered"])
        village = next(u for u in c.get(f"/supervision/{township['id']}").json()["units"] if u["uncovered"])
    with session(browser, server, ActorRole.COUNTY_SUPERVISOR, w.county, width="1280", accept_downloads=True) as (
        _,
        watched,
    ):
        page = watched.page
        page.goto(server.base_url + "/app/supervision")
        assert page.url.startswith(f"{server.base_url}/app/supervision/{w.county}")
        figures = shown_figures(page)
        assert len(figures) >= 20
        for key, value in figures.items():
            section, name = key.split(".")
            expected = summary[section][name]
            assert value == ("" if expected is None else str(expected)), (key, value, expected)
        assert page.locator("[data-chart]").count() == 4
        assert page.locator("h1").inner_text().startswith(summary["unit"]["name"])
        accessible(page)
        both_widths(page, "supervision-county")
        page.goto(page.url.split("?")[0] + "?lang=en")  # every word from the catalogue, in English too
        assert page.locator("#h-coverage").inner_text() == "Pairing coverage"
        assert not page.locator("main").inner_text().count("sv."), "a key shown instead of its text"
        both_widths(page, "supervision-county-en")
        page.goto(page.url.split("?")[0] + "?lang=zh")

        page.get_by_role("link", name=township["name"], exact=True).click()
        page.wait_for_url(f"**/app/supervision/{township['code']}*")
        assert page.locator('[data-figure="coverage.uncovered"]').inner_text() == str(township["uncovered"])
        both_widths(page, "supervision-township")
        page.get_by_role("link", name=village["name"], exact=True).click()
        page.wait_for_url(f"**/app/supervision/{village['code']}*")
        assert page.locator(f'section[aria-labelledby=h-people] tr[data-person="{uncovered["id"]}"]').count() == 1
        accessible(page)
        both_widths(page, "supervision-village")

        page.get_by_role("link", name="未结对名单", exact=False).click()
        page.wait_for_url("**/uncovered")
        row = page.locator(f'tr[data-person="{uncovered["id"]}"]')
        assert row.locator("th").inner_text() == uncovered["name"]
        accessible(page)
        both_widths(page, "supervision-uncovered")
        with page.expect_download() as download:
            page.locator('[data-export="csv"]').click()
        rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8-sig"))))
        assert rows[0][:2] == ["编号", "姓名"] and [uncovered["id"], uncovered["name"]] == rows[1][:2]

        row.get_by_role("link").click()
        page.wait_for_url(f"**/app/people/{uncovered['id']}")
        assert page.locator("h1").inner_text() == uncovered["name"]
        accessible(page)
        both_widths(page, "supervision-person")
        watched.no_errors()


def test_an_auditor_sees_a_visit_logged_offline_on_one_axis_and_not_the_other(browser, county) -> None:
    care, server = county
    w = care.world
    two_days_ago = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    with api(server, "administrator") as admin:
        person = admin.post("/persons", json=elder(str(w.v1), name="赵桂兰", occurred_at=two_days_ago)).json()
        volunteer = admin.post("/helpers", json=helper(str(w.v1), occurred_at=two_days_ago)).json()
        pairing = admin.post("/pairings", json={
            "shape": "one_to_one", "helper_ids": [volunteer["id"]], "person_ids": [person["id"]], "cadence": "weekly",
            "visit_mode": "home_visit", "starts_on": (datetime.now(CHINA).date() - timedelta(days=2)).isoformat(),
            "occurred_at": two_days_ago,
        }).json()  # fmt: skip
        # The instant looked at: after the pairing was recorded, before the offline visit arrives.
        at = (datetime.now(CHINA) + timedelta(seconds=1)).replace(microsecond=0)
        while datetime.now(CHINA) <= at:  # the log below must be recorded after ``at``
            time.sleep(0.05)
        log = admin.post("/visit-logs", json={
            "id": str(uuid.uuid4()), "pairing_id": pairing["id"], "person_id": person["id"], "mode": "home_visit",
            "helper_ids": [volunteer["id"]], "occurred_at": (at - timedelta(hours=1)).isoformat(),
        })  # fmt: skip
        assert log.status_code == 201, log.text
        admin.get("/persons", params={"min_position": log.json()["position"], "limit": 1}).raise_for_status()
        state = {axis: admin.get(f"/audit/streams/{log.json()['id']}/state", params={"as_of": at.isoformat(), "time": axis}).json()
                 for axis in ("occurred", "recorded")}  # fmt: skip
    assert (state["occurred"]["exists"], state["recorded"]["exists"]) == (True, False)
    with session(browser, server, ActorRole.AUDITOR, w.county, width="1280") as (_, watched):
        page = watched.page
        page.goto(server.base_url + "/app/audit")
        page.get_by_role("link", name="赵桂兰").first.click()
        page.wait_for_url(f"**/app/audit/persons/{person['id']}")
        assert page.locator("[data-chain]").get_attribute("data-chain") == "ok"
        assert page.locator("tr[data-kind='visit_log.recorded'] .late").count() == 1  # recorded about an hour late
        accessible(page)
        shown = {}
        for axis in ("occurred", "recorded"):
            page.fill("#as_of", f"{at:%Y-%m-%dT%H:%M:%S}")
            page.check(f"input[name=axis][value={axis}]")
            page.get_by_role("button", name="查看").click()
            page.wait_for_selector(f"[data-asof-axis={axis}]")
            shown[axis] = page.locator("[data-asof=visit_logs]").inner_text()
            log_row = page.locator(f"tr[data-stream='{log.json()['id']}']")
            assert log_row.get_attribute("data-exists") == ("yes" if axis == "occurred" else "no")
            both_widths(page, f"audit-case-{axis}")
        assert shown == {"occurred": "1", "recorded": "0"}
        page.get_by_role("button", name="校验全部记录").click()
        page.wait_for_selector("#verify-slot [data-verified]")
        assert page.locator("#verify-slot [data-verified]").get_attribute("data-verified") == "ok"
        accessible(page)
        export = page.locator("[data-export=html]").get_attribute("href")
        printable = page.request.get(server.base_url + export)
        assert printable.status == 200 and "审计" in printable.text() or "个案" in printable.text()
        watched.no_errors()


def test_an_auditor_finds_people_by_name_and_only_those_shown_are_in_their_access_log(browser, county) -> None:
    care, server = county
    w = care.world
    with api(server, "administrator") as admin:
        made = [
            admin.post("/persons", json=elder(str(w.v1), name=name)).json()
            for name in ("欧阳春花", "欧阳秋月", "钱某某")
        ]
        ids = {p["name"]: p["id"] for p in made}
        admin.get("/persons", params={"min_position": made[-1]["position"], "limit": 1}).raise_for_status()
    with session(browser, server, ActorRole.AUDITOR, w.county) as (_, watched):
        page = watched.page
        page.goto(server.base_url + "/app/audit/?q=欧阳")
        rows = page.locator("tr[data-person]")
        assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.person)")) == sorted(
            [ids["欧阳春花"], ids["欧阳秋月"]]
        )
        page.fill("#q", "秋月")
        page.get_by_role("button", name="查找").click()
        page.wait_for_url("**q=*")
        assert rows.evaluate_all("rs => rs.map(r => r.dataset.person)") == [ids["欧阳秋月"]]
        assert "姓名含“秋月”的共 1 人" in page.locator("main").inner_text()
        accessible(page)
        both_widths(page, "audit-people-search")
        page.get_by_role("link", name="欧阳秋月").click()
        page.wait_for_url(f"**/app/audit/persons/{ids['欧阳秋月']}")
        watched.no_errors()
    with api(server, "auditor", w.county) as auditor:

        def searched(name: str) -> bool:
            log = auditor.get(f"/audit/persons/{ids[name]}/access-log").json()["items"]
            return any(e["endpoint"].startswith("GET /app/audit") and "persons" not in e["endpoint"] for e in log)

        assert (searched("欧阳春花"), searched("欧阳秋月"), searched("钱某某")) == (True, True, False)


def test_an_administrator_keeps_a_roster_and_its_deadlines(browser, county) -> None:
    care, server = county
    w = care.world
    with api(server, "county_supervisor", w.county) as c:
        name = c.get(f"/supervision/{w.t1}").json()["unit"]["name"]
    with session(browser, server, ActorRole.ADMINISTRATOR, width="360") as (_, watched):
        page = watched.page
        page.goto(server.base_url + "/app/rosters")
        accessible(page)
        both_widths(page, "rosters")
        page.get_by_role("link", name=name, exact=True).click()
        page.wait_for_url(f"**/app/rosters/{w.t1}")
        page.fill("input[name=critical]", "180")
        page.fill("input[name=normal]", "3600")
        page.get_by_role("button", name="建立值班表").click()
        page.wait_for_selector("[data-deadline=critical]")
        assert page.locator("[data-deadline=critical]").inner_text() == "180"
        form = page.locator("#add-responder")
        for field, value in (("responder_id", "zhang-san"), ("name", "张三"), ("phone", "13900000005")):
            form.locator(f"input[name={field}]").fill(value)
        form.locator("select[name=shifts]").select_option("weekdays")
        form.get_by_role("button", name="添加值班人员").click()
        page.wait_for_selector("tr[data-responder=zhang-san]")
        accessible(page)
        both_widths(page, "roster")
        # the same responder again: the domain refuses it, and the page says which field and why
        for field, value in (("responder_id", "zhang-san"), ("name", "张三"), ("phone", "13900000005")):
            form.locator(f"input[name={field}]").fill(value)
        form.get_by_role("button", name="添加值班人员").click()
        page.wait_for_selector("[data-problem]")
        assert page.locator("[data-problem] [data-field]").count() >= 1
        both_widths(page, "roster-refused")
        page.locator("#deadlines-form input[name=high]").fill("900")
        page.locator("#deadlines-form").get_by_role("button").click()
        page.wait_for_selector("[data-deadline=high]:has-text('900')")
        watched.no_errors("422")
    with api(server, "administrator") as admin:
        roster = admin.get(f"/rosters/{w.t1}").json()
    assert roster["ack_deadlines"] == {"critical": 180, "high": 900, "normal": 3600}
    assert [r["responder_id"] for r in roster["responders"]] == ["zhang-san"] and roster["responders"][0]["shifts"]


def test_a_village_user_who_edits_the_address_to_another_village_gets_not_found(browser, county) -> None:
    care, server = county
    w = care.world
    with api(server, "village_cadre", w.v1) as c:
        mine = next(p for p in [*w.elders, *w.children] if c.get(f"/persons/{p}").status_code == 200)
        theirs = next(p for p in [*w.elders, *w.children] if c.get(f"/persons/{p}").status_code == 404)
    with session(browser, server, ActorRole.VILLAGE_CADRE, w.v1) as (_, watched):
        page = watched.page
        assert page.goto(f"{server.base_url}/app/people/{mine}").status == 200
        answer = page.goto(f"{server.base_url}/app/people/{theirs}")
        assert answer is not None and answer.status == 404
        assert page.locator("h1").inner_text() == "找不到该页面"
        answer = page.goto(f"{server.base_url}/app/supervision/{w.v2}")
        assert answer is not None and answer.status == 404
        both_widths(page, "person-not-found")
        watched.no_errors("404")


def test_an_administrator_opens_an_account_whose_holder_signs_in_and_stays_in_their_village(browser, county) -> None:
    """The account pages end to end: an administrator opens a village cadre's account and prints
    the slip; the cadre activates it with the slip's code and signs in (a real cookie session);
    editing the address to another village's person shows the not-found page; the administrator
    locks the account (the session stops working) and resets it (a new slip)."""
    care, server = county
    w = care.world
    phone = "135" + f"{uuid.uuid4().int % 10**8:08d}"
    with api(server, "administrator") as admin:
        village = admin.get(f"/org-units/{w.v1}").json()
        theirs = next(
            p for p in [*w.elders, *w.children] if admin.get(f"/persons/{p}").json()["village_id"] != str(w.v1)
        )
        mine = next(p for p in [*w.elders, *w.children] if admin.get(f"/persons/{p}").json()["village_id"] == str(w.v1))
    with session(browser, server, ActorRole.ADMINISTRATOR, width="1280") as (_, watched):
        page = watched.page
        page.goto(server.base_url + "/app/accounts")
        form = page.locator("#open-account")
        form.locator("select[name=role]").select_option("village_cadre")
        form.locator("select[name=org_unit_id]").select_option(str(w.v1))
        form.locator("input[name=phone]").fill(phone)
        form.locator("input[name=display_name]").fill("王村干")
        accessible(page)
        both_widths(page, "accounts")
        form.get_by_role("button", name="开通账号").click()
        page.wait_for_selector("[data-activation-code]")
        code = page.locator("[data-activation-code]").inner_text()
        assert (
            village["name"] in page.locator(".slip").inner_text() and phone[-4:] in page.locator(".slip").inner_text()
        )
        accessible(page)
        both_widths(page, "activation-slip")
        account_url = page.get_by_role("link", name="返回账号列表").get_attribute("href")
        watched.no_errors()

    with session(browser, server, width="360") as (context, watched):  # the cadre, on their phone
        page = watched.page
        activated = context.request.post(
            server.base_url + "/auth/activate",
            data={"phone": phone, "activation_code": code, "password": "青山绿水-lucky-2026"},
        )
        assert activated.status == 200, activated.text()
        signed = context.request.post(
            server.base_url + "/auth/sign-in",
            data={"phone": phone, "password": "青山绿水-lucky-2026", "session": "cookie"},
        )
        assert signed.status == 200, signed.text()
        assert page.goto(f"{server.base_url}/app/supervision/{w.v1}").status == 200
        assert page.locator(".who .role").inner_text() == "村干部"
        assert page.goto(f"{server.base_url}/app/people/{mine}").status == 200
        answer = page.goto(f"{server.base_url}/app/people/{theirs}")  # the address edited to village B's person
        assert answer is not None and answer.status == 404 and page.locator("h1").inner_text() == "找不到该页面"
        both_widths(page, "person-not-found")

        with session(browser, server, ActorRole.ADMINISTRATOR, width="360") as (_, admin_watched):
            admin_page = admin_watched.page
            admin_page.goto(server.base_url + account_url)
            assert admin_page.locator("[data-status]").get_attribute("data-status") == "active"
            admin_page.locator("#lock-form input[name=reason]").fill("手机丢失")
            admin_page.locator("#lock-form").get_by_role("button").click()
            admin_page.wait_for_selector("[data-status=locked]")
            accessible(admin_page)
            both_widths(admin_page, "account")
            admin_page.locator("#reset-form input[name=reason]").fill("换了手机")
            admin_page.locator("#reset-form").get_by_role("button").click()
            admin_page.wait_for_selector("[data-activation-code]")
            assert admin_page.locator("[data-activation-code]").inner_text() != code
            admin_watched.no_errors()
        # Locked, then reset: the cadre's session ends (within the revocation interval everywhere).
        deadline = time.monotonic() + 10
        while page.goto(f"{server.base_url}/app/supervision/{w.v1}").status == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert page.url.startswith(f"{server.base_url}/app/sign-in")
        watched.no_errors("404", "401")
