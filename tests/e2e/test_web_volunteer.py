"""The volunteer's screens in a real browser: claiming, logging visits offline and sending them
when the network returns (each stored exactly once), a claim race between two volunteers, and
people's histories within scope. Every assertion on the page is checked against the API too."""

from __future__ import annotations

import uuid

import httpx
from playwright.sync_api import Locator, Page, expect

from domain.vocabulary import ActorRole
from tests.api_support import ApiServer, api_server, client, elder, token  # noqa: F401 - fixtures
from tests.browser import browser  # noqa: F401 - fixture
from tests.e2e.test_api_visits import Scene
from tests.web_support import both_widths, session


def card(page: Page, task_id: str) -> Locator:
    return page.locator(f"#task-{task_id}")


def log_visit(page: Page, opener: Locator, notes: str, *, help_now: bool = False) -> None:
    opener.click()
    dialog = page.locator("#log-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("身体状况").select_option("chronic_stable")
    dialog.get_by_label("情绪状况").select_option("low")
    dialog.get_by_label("跌倒").check()
    dialog.get_by_label("医疗护理").check()
    dialog.get_by_label("收缩压").fill("150")
    dialog.get_by_label("舒张压").fill("92")
    dialog.get_by_label("健康保健").check()
    dialog.get_by_label("送药").check()
    dialog.get_by_label("情况记录").fill(notes)
    if help_now:
        dialog.get_by_label("需要紧急救助（立即上报险情）").check()
    dialog.get_by_role("button", name="保存记录").click()
    expect(dialog).to_be_hidden()


def api_as(server: ApiServer, role: ActorRole, org: str, subject: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, timeout=30,
                        headers={"Authorization": f"Bearer {token(role, org, subject)}"})  # fmt: skip


def test_a_volunteer_claims_logs_two_visits_offline_and_each_is_stored_once(
    browser, api_server: ApiServer, client, care_app
) -> None:
    scene = Scene(client, care_app, helpers=1, people=2)
    me, village = scene.helpers[0], scene.tree.village["id"]
    task = scene.current(0)
    with session(browser, api_server, ActorRole.VOLUNTEER, village, subject=me) as (context, watched):
        page = watched.page
        page.goto(api_server.base_url + "/app/")
        expect(page).to_have_url(api_server.base_url + "/app/visits")
        expect(page.locator("h1")).to_have_text("我的走访")
        expect(card(page, task["id"]).locator(".status")).to_have_text("待认领")
        both_widths(page, "volunteer-visits")
        card(page, task["id"]).get_by_role("button", name="认领").click()
        expect(card(page, task["id"]).locator(".status")).to_have_text("我已认领")
        page.wait_for_function("document.body.dataset.offlineReady === '1'")

        context.set_offline(True)
        expect(page.locator("#offline-banner")).to_be_visible()
        log_visit(page, card(page, task["id"]).get_by_role("button", name="记录走访"), "降压药快吃完了")
        other = page.locator(f'.person-row[data-person="{scene.people[1]}"]')
        log_visit(page, other.get_by_role("button", name="记录计划外走访"), "家里很冷，需要取暖")
        outbox = page.locator("#outbox-list > li")
        expect(outbox).to_have_count(2)
        expect(page.locator("#outbox-count")).to_have_text("2 条记录等待发送")
        both_widths(page, "volunteer-offline-waiting")

        page.reload()  # still offline: the service worker answers with the kept page
        expect(page.locator("h1")).to_have_text("我的走访")
        expect(page.locator("#outbox-list > li")).to_have_count(2)
        expect(card(page, task["id"]).locator(".task-queued")).to_be_visible()

        context.set_offline(False)
        expect(page.locator("#outbox")).to_be_hidden(timeout=15000)
        expect(page.locator(f'.task.done[data-task="{task["id"]}"]')).to_be_visible(timeout=10000)
        watched.no_errors("net::ERR_INTERNET_DISCONNECTED", "Failed to fetch", "Failed to load resource")

    with api_as(api_server, ActorRole.VOLUNTEER, village, me) as api:
        done = api.get(f"/visits/{task['id']}").json()
        assert done["status"] == "completed" and done["log_id"]
        logs = {
            p: api.get("/visit-logs", params={"person_id": p, "min_position": 0}).json()["items"] for p in scene.people
        }
        assert [len(logs[p]) for p in scene.people] == [1, 1], logs
        first = api.get(f"/visit-logs/{logs[scene.people[0]][0]['id']}").json()
        assert first["task_id"] == task["id"] and first["findings"]["notes"] == "降压药快吃完了"
        assert first["findings"]["blood_pressure"] == {"systolic": 150, "diastolic": 92}
        assert sorted(first["services"]) == ["daily_life_care", "health_care"]  # the item ticked its category
        assert first["service_items"] == ["medicine_delivery"]
        second = api.get(f"/visit-logs/{logs[scene.people[1]][0]['id']}").json()
        assert second["task_id"] is None and second["findings"]["notes"] == "家里很冷，需要取暖"


def test_two_volunteers_claim_the_same_visit_at_once_and_the_other_is_told_who_holds_it(
    browser, api_server: ApiServer, client, care_app
) -> None:
    scene = Scene(client, care_app, helpers=2, people=1)
    village, task = scene.tree.village["id"], scene.current(0)
    with session(browser, api_server, ActorRole.VOLUNTEER, village, subject=scene.helpers[0]) as (_, a), \
         session(browser, api_server, ActorRole.VOLUNTEER, village, subject=scene.helpers[1]) as (_, b):  # fmt: skip
        for watched in (a, b):
            watched.page.goto(api_server.base_url + "/app/visits")
            expect(card(watched.page, task["id"]).get_by_role("button", name="认领")).to_be_visible()
        # Both press at once: the two clicks are dispatched before either answer arrives.
        buttons = [card(w.page, task["id"]).get_by_role("button", name="认领") for w in (a, b)]
        handles = [button.element_handle() for button in buttons]
        for handle in handles:
            handle.evaluate("button => setTimeout(() => button.click(), 0)")
        expect(card(a.page, task["id"]).locator(".task-message, .status").first).to_be_visible()
        a.page.wait_for_function(_settled(task["id"]))
        b.page.wait_for_function(_settled(task["id"]))
        held = client.get(f"/visits/{task['id']}").json()
        winner = scene.helpers.index(held["holder_id"])
        win, lose = (a, b) if winner == 0 else (b, a)
        expect(card(win.page, task["id"]).locator(".status")).to_have_text("我已认领")
        message = card(lose.page, task["id"]).locator(".task-message")
        expect(message).to_contain_text("已被其他志愿者认领")
        expect(message).to_contain_text(held["holder_id"][:8])
        both_widths(lose.page, "volunteer-claim-taken")


def _settled(task_id: str) -> str:
    """The card shows the claim's outcome: claimed by me, or a message why not."""
    return (f"() => {{ const c = document.getElementById('task-{task_id}'); if (!c) return false;"
            " const m = c.querySelector('.task-message');"
            " return (m && !m.hidden) || c.querySelector('.status').textContent.trim() === '我已认领'; }")  # fmt: skip


def test_my_people_and_their_history_but_nobody_elses(browser, api_server: ApiServer, client, care_app) -> None:
    scene = Scene(client, care_app, helpers=1, people=1)
    stranger = client.post("/persons", json=elder(scene.tree.village["id"], name="赵某")).json()["id"]
    with session(browser, api_server, ActorRole.VOLUNTEER, scene.tree.village["id"], subject=scene.helpers[0]) as (
        _,
        watched,
    ):
        page = watched.page
        page.goto(api_server.base_url + "/app/people")
        rows = page.locator(".list > li")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("李秀英")
        expect(rows.first).to_contain_text("独居")
        both_widths(page, "volunteer-people")
        rows.first.get_by_role("link").click()
        expect(page.locator("h1")).to_have_text("李秀英")
        expect(page.locator(".timeline")).to_contain_text("登记入档")
        expect(page.locator(".timeline")).to_contain_text("建立结对")
        both_widths(page, "volunteer-person")
        page.get_by_role("link", name="English").click()
        expect(page.locator("#tl-title")).to_have_text("History")
        expect(page.locator(".timeline")).to_contain_text("Registered")
        page.goto(api_server.base_url + "/app/visits")
        expect(page.locator("h1")).to_have_text("My visits")
        both_widths(page, "volunteer-visits-en")
        page.goto(api_server.base_url + "/app/visits?lang=zh")
        answer = page.goto(f"{api_server.base_url}/app/people/{stranger}")
        assert answer is not None and answer.status == 404
        expect(page.locator("h1")).to_have_text("找不到该页面")
        answer = page.goto(f"{api_server.base_url}/app/people/{uuid.uuid4()}")
        assert answer is not None and answer.status == 404


def test_needs_help_now_files_an_emergency_report(browser, api_server: ApiServer, client, care_app) -> None:
    scene = Scene(client, care_app, helpers=1, people=1)
    task = scene.current(0)
    with session(browser, api_server, ActorRole.VOLUNTEER, scene.tree.village["id"], subject=scene.helpers[0]) as (
        _,
        watched,
    ):
        page = watched.page
        page.goto(api_server.base_url + "/app/visits")
        card(page, task["id"]).get_by_role("button", name="认领").click()
        expect(card(page, task["id"]).locator(".status")).to_have_text("我已认领")
        card(page, task["id"]).get_by_role("button", name="记录走访").click()
        both_widths(page, "volunteer-log-form")
        page.locator("#log-dialog").get_by_role("button", name="取消").click()
        log_visit(
            page, card(page, task["id"]).get_by_role("button", name="记录走访"), "老人摔倒，起不来", help_now=True
        )
        expect(page.locator("#flash")).to_have_text("已上报险情，应急值守人员会收到通知。")
    log_id = client.get(f"/visits/{task['id']}").json()["log_id"]
    log = client.get(f"/visit-logs/{log_id}").json()
    assert log["raise_emergency"] is True and log["emergency"]["kind"] == "wandering_or_begging"


def test_my_people_are_the_people_of_my_pairings_not_everyone_i_may_see(
    browser, api_server: ApiServer, client, care_app
) -> None:
    """A village cadre who is also a helper may read everyone in the village, but "我的服务对象"
    lists the people of their own active pairings (direct, or through their volunteer team); a
    cadre who helps no one sees the village's people under the area's heading."""
    scene = Scene(client, care_app, helpers=1, people=1, group=True)
    village = scene.tree.village["id"]
    stranger = client.post("/persons", json=elder(village, name="赵某")).json()["id"]
    # The menu says "我的" only to a volunteer; a cadre's item is neutral, the page's heading says
    # whose people they are.
    readers = [
        (ActorRole.VILLAGE_CADRE, scene.helpers[0], "服务对象", "我的服务对象", [scene.people[0]]),
        (ActorRole.VOLUNTEER, scene.members[0], "我的服务对象", "我的服务对象", [scene.people[0]]),  # through the team
        (ActorRole.VILLAGE_CADRE, None, "服务对象", "辖区服务对象", [scene.people[0], stranger]),
    ]
    for role, subject, menu, heading, expected in readers:
        with session(browser, api_server, role, village, subject=subject) as (_, watched):
            page = watched.page
            page.goto(api_server.base_url + "/app/people")
            nav = page.get_by_role("navigation", name="主导航")
            expect(nav.locator('a[href="/app/people"]')).to_have_text(menu)
            expect(page.locator("h1")).to_contain_text(heading)
            rows = page.locator(".list > li")
            expect(rows).to_have_count(len(expected))
            assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.person)")) == sorted(expected), (role, subject)
