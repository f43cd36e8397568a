"""The responder console in a real browser: a report filed over the API appears on the township
console within 2 s flagged new (with a notification where permitted), is acknowledged and
resolved from the page; a report left past a short deadline appears on the county console; a
console that lost its connection catches up and says so. Each step is checked over the API."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import expect

from domain.vocabulary import ActorRole
from tests.api_support import ApiServer, api_server, auth, client  # noqa: F401 - fixtures
from tests.browser import browser  # noqa: F401 - fixture
from tests.emergency_support import County, Names, delete_stream, emergency_workers, wait_until
from tests.web_support import both_widths, session

# Playwright's init scripts run outside the page's CSP: count the notifications the page makes.
RECORD_NOTIFICATIONS = """
window.__notified = [];
const Original = window.Notification;
window.Notification = function (title, options) { window.__notified.push(title); return new Original(title, options); };
window.Notification.requestPermission = (...a) => Original.requestPermission(...a);
Object.defineProperty(window.Notification, "permission", { get: () => Original.permission });
"""


@pytest.fixture(scope="module")
def workers(database_url: str, nats_url: str, api_server: ApiServer) -> Iterator[Names]:
    names = Names()
    running = emergency_workers(database_url, nats_url, names).start()
    wait_until(
        lambda: httpx.get(api_server.base_url + "/health").json()["nats"]["ok"], what="the API's NATS connection"
    )
    # The 2 s promise is about a running system: one report routed end to end first (the relay's
    # stream and the router's consumer made, the connections up), then the tests.
    with httpx.Client(base_url=api_server.base_url, headers=auth(), timeout=30) as admin:
        county = County(admin)
        warm = admin.post("/emergencies", json=county.report(), headers=county.reporter()).json()
        wait_until(
            lambda: admin.get(f"/emergencies/{warm['id']}").json()["routings"], timeout=30, what="a first report routed"
        )
    yield names
    running.stop()
    # The session's event loop may be running in this thread: clean up on a loop of its own.
    cleanup = threading.Thread(target=lambda: asyncio.run(delete_stream(nats_url, names.stream)))
    cleanup.start()
    cleanup.join(30)


def test_a_report_shows_on_the_township_console_within_2s_flagged_new_and_is_acknowledged(
    browser, api_server: ApiServer, client: httpx.Client, workers: Names
) -> None:
    county = County(client, critical=300)
    responder = county.township_responders[0]
    with session(browser, api_server, ActorRole.TOWNSHIP_RESPONDER, county.township_id, subject=responder,
                 permissions=["notifications"]) as (context, watched):  # fmt: skip
        context.add_init_script(RECORD_NOTIFICATIONS)
        page = watched.page
        page.goto(api_server.base_url + "/app/")
        expect(page).to_have_url(api_server.base_url + "/app/console")
        expect(page.locator("#live")).to_be_visible()
        page.get_by_role("button", name="开启声音和通知提醒").click()
        filed_at = time.monotonic()
        report = client.post("/emergencies", json=county.report(), headers=county.reporter()).json()
        card = page.locator(f"#report-{report['id']}")
        expect(card).to_be_visible(timeout=2000)
        shown_after = time.monotonic() - filed_at
        assert shown_after <= 2.0, shown_after
        expect(card.locator(".new-badge")).to_be_visible()
        expect(card).to_have_attribute("data-new", "")
        expect(card).to_contain_text("危重病")
        expect(card).to_contain_text("老人在家中跌倒，无法起身")
        expect(card.locator(".deadline")).to_contain_text("剩余")
        assert "新的险情报告：危重病（危急）" in page.evaluate("window.__notified")
        both_widths(page, "responder-console")

        card.get_by_role("button", name="接单").click()
        expect(card.locator(".status")).to_contain_text("处置中")
        expect(card.locator(".new-badge")).to_be_hidden()
        got = client.get(f"/emergencies/{report['id']}").json()
        assert got["status"] == "acknowledged" and got["acknowledged_by"] == responder

        card.get_by_role("button", name="处置完毕").click()
        dialog = page.locator("#notes-dialog")
        dialog.get_by_label("处置结果").select_option("hospitalised")
        dialog.get_by_label("处置说明").fill("已送县医院")
        both_widths(page, "responder-resolve")
        dialog.get_by_role("button", name="确定").click()
        expect(card).to_be_hidden()
        resolved = client.get(f"/emergencies/{report['id']}").json()
        assert resolved["status"] == "resolved" and resolved["resolution"]["outcome"] == "hospitalised"
        watched.no_errors()


def test_a_report_nobody_acknowledges_appears_on_the_county_console(
    browser, api_server: ApiServer, client: httpx.Client, workers: Names
) -> None:
    county = County(client, critical=1)
    with session(browser, api_server, ActorRole.COUNTY_RESPONDER, county.county_id, subject=county.county_responder,
                 width="1280") as (_, watched):  # fmt: skip
        page = watched.page
        page.goto(api_server.base_url + "/app/console")
        expect(page.locator("#live")).to_be_visible()
        report = client.post("/emergencies", json=county.report(), headers=county.reporter()).json()
        card = page.locator(f"#report-{report['id']}")
        expect(card).to_be_visible(timeout=10000)
        expect(card.locator(".new-badge")).to_be_visible()
        expect(card.locator(".status")).to_contain_text("县级")
        both_widths(page, "responder-county-console")
    got = client.get(f"/emergencies/{report['id']}").json()
    assert [e["to_level"] for e in got["escalations"]] == [1]


def test_a_console_that_lost_its_connection_catches_up_and_says_so(
    browser, api_server: ApiServer, client: httpx.Client, workers: Names
) -> None:
    county = County(client, critical=300)
    with session(browser, api_server, ActorRole.TOWNSHIP_RESPONDER, county.township_id,
                 subject=county.township_responders[0]) as (context, watched):  # fmt: skip
        page = watched.page
        page.goto(api_server.base_url + "/app/console")
        expect(page.locator("#live")).to_be_visible()
        context.set_offline(True)
        expect(page.locator("#connection")).to_have_text("连接中断，正在重新连接…")
        report = client.post("/emergencies", json=county.report(), headers=county.reporter()).json()
        wait_until(lambda: client.get(f"/emergencies/{report['id']}").json()["routings"], what="the report routed")
        card = page.locator(f"#report-{report['id']}")
        expect(card).to_have_count(0)
        context.set_offline(False)
        expect(page.locator("#connection")).to_have_text("已重新连接，离线期间的报告已更新。")
        expect(card).to_be_visible()
        expect(card.locator(".new-badge")).to_be_visible()
        both_widths(page, "responder-caught-up")
