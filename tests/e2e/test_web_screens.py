"""Every screen for every role in a real browser: nothing scrolls the page sideways at 360 px, a
Chinese page shows no English words, no page logs an error; and a volunteer in a big volunteer
group sees their own tasks first, then what they may claim, a page at a time with a count.

The county is the demo's (guanai/demo, a small one); the walk is tests/screens.py's, whose
screenshots go to test-artifacts/screens/walk/.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest
from playwright.sync_api import expect

from application.care import CareApplication
from domain.schedule import PROGRAMME_TZ
from domain.vocabulary import ActorRole
from guanai.cli.accounts import offline_service
from guanai.demo.accounts import open_demo_accounts
from guanai.demo.emergencies import simulate_emergencies
from guanai.demo.plan import plan_county
from guanai.demo.seed import seed_county
from guanai.demo.visits import simulate_visits
from infrastructure.settings import Settings
from tests.api_support import ApiServer, Tree, api_server, client, elder, helper, token  # noqa: F401 - fixtures
from tests.app_support import make_care
from tests.browser import ARTIFACTS, browser  # noqa: F401 - fixture
from tests.conftest import create_database, drop_database
from tests.e2e.test_api_visits import system_meta
from tests.screens import Visitor, demo_visitors, walk, walk_admin_actions, walk_public, walk_volunteer_actions
from tests.web_support import session

SEED, SCALE = 7, 0.03
SHOTS = ARTIFACTS / "walk"


@pytest.fixture(scope="module")
def demo(pg_base_url: str, nats_url: str) -> Iterator[tuple[ApiServer, list[Visitor]]]:
    """A small demo county (registry, a week of visits, rosters and emergencies, the demo accounts)
    with an API of its own."""
    url = create_database(pg_base_url, prefix="guanai_test_web_screens")
    app = make_care(url, pool_size=4)
    try:
        seed_county(app, seed=SEED, scale=SCALE, workers=3)
        visits = simulate_visits(app, seed=SEED, weeks=1, workers=3)
        plan = plan_county(SEED, SCALE)
        simulate_emergencies(app, plan, seed=SEED, flagged=visits.flagged)
        accounts = offline_service(app, url, Settings())
        open_demo_accounts(accounts, plan)
        accounts.credentials.close()  # type: ignore[attr-defined]
        visitors = demo_visitors(app, plan)
        server = ApiServer(url, nats_url).start()
        try:
            yield server, visitors
        finally:
            server.stop()
    finally:
        app.close()
        drop_database(pg_base_url, url)


def big_group(c: httpx.Client, care: CareApplication) -> tuple[str, str]:
    """A village whose group of two volunteers may claim the visits of 25 people (five pairings
    of five, each with its own helper): 25 open now and 25 opening next week. (member, village)"""
    tree = Tree(c)
    village = tree.village["id"]
    members = [c.post("/helpers", json=helper(village)).json()["id"] for _ in range(2)]
    group = c.post("/groups", json={"name": "红河村志愿服务队", "org_unit_id": village, "member_ids": members}).json()
    starts = (datetime.now(PROGRAMME_TZ).date() - timedelta(days=3)).isoformat()
    for _ in range(5):
        people = [c.post("/persons", json=elder(village)).json()["id"] for _ in range(5)]
        body = {
            "shape": "one_to_many", "helper_ids": [c.post("/helpers", json=helper(village)).json()["id"]],
            "person_ids": people, "cadence": "weekly", "visit_mode": "home_visit", "starts_on": starts,
            "group_id": group["id"],
        }  # fmt: skip
        pairing = c.post("/pairings", json=body)
        assert pairing.status_code == 201, pairing.text
        position = care.schedule_visits(uuid.UUID(pairing.json()["id"]), system_meta()).position
    c.get("/visits", params={"min_position": position, "limit": 1})
    return members[0], village


@pytest.mark.parametrize(
    "who",
    ["volunteer", "township-responder", "county-responder", "village-cadre", "township-supervisor",
     "county-supervisor", "administrator", "auditor"],
)  # fmt: skip
def test_every_screen_of_a_role_fits_360_px_speaks_chinese_and_logs_no_error(browser, demo, who: str) -> None:
    server, visitors = demo
    visitor = next(v for v in visitors if v.name == who)
    screens, errors = walk(browser, server, visitor, SHOTS)
    if visitor.role == ActorRole.VOLUNTEER:
        screens += walk_volunteer_actions(browser, server, visitor, SHOTS)
    if who == "administrator":
        screens += walk_admin_actions(browser, server, visitor, SHOTS) + walk_public(browser, server, SHOTS)
    names = {s.name for s in screens}
    # The walk reached the role's menu (a role with a menu has more than its start page).
    assert len(screens) >= 3, names
    assert not errors, errors
    too_wide = {s.path: s.too_wide() for s in screens if s.too_wide()}
    assert not too_wide, f"pages that scroll sideways: {too_wide}"
    english = {s.path: s.latin for s in screens if s.latin}
    assert not english, f"English on Chinese pages: {english}"
    assert all((SHOTS / f"{s.visitor}-{s.name}-360.png").exists() for s in screens)


def test_a_volunteer_in_a_big_group_sees_their_tasks_first_then_claimable_ones_a_page_at_a_time(
    browser, api_server: ApiServer, client: httpx.Client, care_app
) -> None:
    member, village = big_group(client, care_app)
    with session(browser, api_server, ActorRole.VOLUNTEER, village, subject=member) as (_, watched):
        page = watched.page
        page.goto(api_server.base_url + "/app/visits")
        sections = page.locator("section.board h2").all_inner_texts()
        assert [s.split()[0] for s in sections[:3]] == ["我的任务", "可认领", "即将开放"], sections
        expect(page.locator("[data-count='mine']")).to_have_text("0")
        expect(page.locator("[data-count='claimable']")).to_have_text("25")
        expect(page.locator("[data-count='upcoming']")).to_have_text("25")
        claimable = page.locator("[data-section='claimable'] .task[data-task]")
        expect(claimable).to_have_count(10)
        closes = claimable.evaluate_all("els => els.map(e => e.dataset.closes)")
        assert closes == sorted(closes)  # nearest window first
        upcoming = page.locator("[data-section='upcoming'] .task[data-task]")
        expect(upcoming.locator("button[data-action='claim']")).to_have_count(0)  # not open yet
        expect(upcoming.first.locator(".meta").nth(1)).to_contain_text("起可认领")

        more = page.locator("button[data-more='claimable']")
        expect(more).to_have_text("再显示 10 项（还有 15 项）")
        more.click()
        expect(claimable).to_have_count(20)
        expect(more).to_have_text("再显示 5 项（还有 5 项）")
        more.click()
        expect(claimable).to_have_count(25)
        expect(more).to_have_count(0)
        ids = claimable.evaluate_all("els => els.map(e => e.dataset.task)")
        assert len(set(ids)) == 25

        first = claimable.first
        task_id = first.get_attribute("data-task")
        first.get_by_role("button", name="认领").click()
        mine = page.locator("[data-section='mine'] .task[data-task]")
        expect(mine).to_have_count(1)
        assert mine.first.get_attribute("data-task") == task_id
        expect(page.locator("[data-count='mine']")).to_have_text("1")
        expect(page.locator("[data-count='claimable']")).to_have_text("24")
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
        watched.no_errors()

    # The same lists from the API: claimable ones paged with their total, mine by the helper's list.
    api = httpx.Client(base_url=api_server.base_url, timeout=30,
                       headers={"Authorization": f"Bearer {token(ActorRole.VOLUNTEER, village, member)}"})  # fmt: skip
    with api:
        listed = api.get("/visits", params={"claimable_by_me": "true", "limit": 20, "offset": 20}).json()
        assert listed["total"] == 24 and len(listed["items"]) == 4
        held = api.get(f"/helpers/{member}/visits", params={"status": "claimed"}).json()
        assert [t["id"] for t in held["items"]] == [task_id]
