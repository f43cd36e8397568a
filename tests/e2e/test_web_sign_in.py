"""Signing in through the sign-in page with a real account (the accounts API's cookie session):
a volunteer lands on their visits and claims one (a change carrying the session's CSRF token); a
county responder, whose role needs a second factor, enrols an authenticator app on the way in
and reaches the console; a wrong password is told so; signing out ends the session."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pyotp
from playwright.sync_api import Page, expect

from tests.api_support import ApiServer, Tree, api_server, client  # noqa: F401 - fixtures
from tests.browser import browser  # noqa: F401 - fixture
from tests.e2e.test_api_visits import Scene
from tests.e2e.test_web_quality import check
from tests.web_support import both_widths, session

PASSWORD = "青山绿水-lucky-2026"


def activated(client: httpx.Client, server: ApiServer, **account: Any) -> str:
    """An account opened by the administrator and activated by its person; its phone number."""
    phone = "139" + f"{uuid.uuid4().int % 10**8:08d}"
    opened = client.post("/accounts", json={"phone": phone, "display_name": "测试用户", **account})
    assert opened.status_code == 201, opened.text
    with httpx.Client(base_url=server.base_url, timeout=30) as anon:
        body = {"phone": phone, "activation_code": opened.json()["activation_code"], "password": PASSWORD}
        assert anon.post("/auth/activate", json=body).status_code == 200
    return phone


def sign_in(page: Page, phone: str, password: str = PASSWORD) -> None:
    page.get_by_label("手机号").fill(phone)
    page.get_by_label("密码").fill(password)
    page.get_by_role("button", name="登录").click()


def test_a_volunteer_signs_in_on_the_page_and_claims_a_visit(browser, api_server: ApiServer, client, care_app) -> None:
    scene = Scene(client, care_app, helpers=1, people=1)
    task = scene.current(0)
    phone = activated(
        client, api_server, role="volunteer", org_unit_id=scene.tree.village["id"], helper_id=scene.helpers[0]
    )
    with session(browser, api_server) as (context, watched):
        page = watched.page
        page.goto(api_server.base_url + "/app/visits")
        expect(page.locator("h1")).to_have_text("登录")
        sign_in(page, phone, "not-the-password")
        expect(page.locator("#sign-in-error")).to_have_text("手机号或密码不正确")
        sign_in(page, phone)
        expect(page).to_have_url(api_server.base_url + "/app/visits")
        names = {c["name"] for c in context.cookies()}
        assert {"guanai_access", "guanai_csrf"} <= names
        card = page.locator(f"#task-{task['id']}")
        card.get_by_role("button", name="认领").click()
        expect(card.locator(".status")).to_have_text("我已认领")
        assert client.get(f"/visits/{task['id']}").json()["holder_id"] == scene.helpers[0]

        page.get_by_role("link", name="退出").click()
        expect(page.locator("h1")).to_have_text("登录")
        answer = page.goto(api_server.base_url + "/app/visits")
        assert answer is not None
        expect(page.locator("h1")).to_have_text("登录")  # the session is over: back to sign-in
        watched.no_errors("401", "Failed to load resource")


def test_a_county_responder_enrols_a_second_factor_on_the_way_in(browser, api_server: ApiServer, client) -> None:
    tree = Tree(client)
    phone = activated(client, api_server, role="county_responder", org_unit_id=tree.county["id"])
    with session(browser, api_server, bypass_csp=True) as (_, watched):  # bypass: axe is injected below
        page = watched.page
        page.goto(api_server.base_url + "/app/console")
        sign_in(page, phone)
        expect(page).to_have_url(re.compile(r".*/app/second-factor\?next=%2Fapp%2Fconsole$"))
        expect(page.locator("#totp-qr")).to_be_visible()
        both_widths(page, "second-factor")
        check(page, "second factor")
        page.goto(api_server.base_url + "/app/console")  # not yet: every page sends it back here
        expect(page).to_have_url(re.compile(r".*/app/second-factor\?next=%2Fapp%2Fconsole$"))
        expect(page.locator("#totp-qr")).to_be_visible()
        secret = page.locator("#totp-secret").inner_text()
        page.get_by_label("验证器上显示的 6 位数字").fill(pyotp.TOTP(secret).now())
        page.get_by_role("button", name="确认").click()
        expect(page.locator("#totp-codes > li")).to_have_count(10)
        page.get_by_role("link", name="继续").click()
        expect(page).to_have_url(api_server.base_url + "/app/console")
        expect(page.locator("h1")).to_have_text("应急值守")
        expect(page.locator(".who .role")).to_have_text("县级应急值守员")
