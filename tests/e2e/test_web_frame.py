"""The web client's frame in a real browser: sign-in, the cookie session, the language switch,
the not-found page, security headers and CSRF, at 360 and 1280 px."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import httpx

from api.auth import issue_token
from domain.vocabulary import ActorRole
from tests.api_support import SECRET, ApiServer, Tree, api_server, client  # noqa: F401 - fixtures
from tests.browser import browser  # noqa: F401 - fixture
from tests.web_support import both_widths, session


def test_a_visitor_without_a_session_is_sent_to_sign_in_and_sees_it_in_chinese(browser, api_server: ApiServer) -> None:
    with session(browser, api_server) as (_, watched):
        page = watched.page
        page.goto(api_server.base_url + "/app/")
        assert page.url.startswith(api_server.base_url + "/app/sign-in?next=")
        assert page.locator("h1").inner_text() == "登录"
        assert page.get_by_label("手机号").is_visible() and page.get_by_label("密码").is_visible()
        both_widths(page, "sign-in")
        page.get_by_role("link", name="切换语言").click()
        assert page.locator("h1").inner_text() == "Sign in"
        page.goto(api_server.base_url + "/app/sign-in")  # the choice is kept in a cookie
        assert page.locator("h1").inner_text() == "Sign in"
        watched.no_errors()


def test_a_signed_in_supervisor_sees_their_role_and_unit_and_the_menu(browser, api_server: ApiServer, client) -> None:
    tree = Tree(client)
    with session(browser, api_server, ActorRole.COUNTY_SUPERVISOR, tree.county["id"], width="1280") as (_, watched):
        page = watched.page
        page.goto(api_server.base_url + "/app/")
        assert page.locator(".who .role").inner_text() == "县级督导员"
        assert page.locator(".who .unit").inner_text() == "测试县"
        assert page.get_by_role("navigation", name="主导航").is_visible()
        both_widths(page, "home")
        watched.no_errors()


def test_an_address_that_is_nothing_shows_the_not_found_page(browser, api_server: ApiServer, client) -> None:
    tree = Tree(client)
    with session(browser, api_server, ActorRole.VOLUNTEER, tree.village["id"]) as (_, watched):
        page = watched.page
        answer = page.goto(api_server.base_url + "/app/no-such-page")
        assert answer is not None and answer.status == 404
        assert page.locator("h1").inner_text() == "找不到该页面"
        both_widths(page, "not-found")


def test_pages_carry_their_own_csp_and_the_api_keeps_its_own(api_server: ApiServer) -> None:
    page = httpx.get(api_server.base_url + "/app/sign-in", headers={"Accept": "text/html"})
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe" not in csp and page.headers["x-frame-options"] == "DENY"
    assert (
        httpx.get(api_server.base_url + "/health").headers["content-security-policy"].startswith("default-src 'none'")
    )
    asset = httpx.get(
        api_server.base_url + "/app/static/vendor/htmx.org-2.0.11/htmx.min.js", headers={"Accept-Encoding": "gzip"}
    )
    assert asset.status_code == 200 and asset.headers["content-encoding"] == "gzip"
    assert "max-age=86400" in asset.headers["cache-control"]


def test_a_page_error_is_a_page_for_a_browser_and_problem_details_for_a_program(api_server: ApiServer) -> None:
    html = httpx.get(api_server.base_url + "/app/", headers={"Accept": "text/html"})
    assert html.status_code == 303 and html.headers["location"].startswith("/app/sign-in?next=")
    program = httpx.get(api_server.base_url + "/app/")
    assert program.status_code == 401 and program.headers["content-type"].startswith("application/problem+json")


def test_a_change_sent_with_the_session_cookie_needs_the_csrf_token(api_server: ApiServer, client) -> None:
    tree = Tree(client)
    csrf = "s3cret-value"
    bound = issue_token(SECRET, subject="admin-web", role=ActorRole.ADMINISTRATOR, org_unit_id=None,
                        ttl=timedelta(minutes=5), claims={"cth": hashlib.sha256(csrf.encode()).hexdigest()})  # fmt: skip
    body = {
        "code": tree.county["code"][:6] + "109000",
        "name": "新镇",
        "level": "township",
        "parent_id": tree.county["id"],
    }
    with httpx.Client(base_url=api_server.base_url, cookies={"guanai_access": bound, "guanai_csrf": csrf}) as c:
        refused = c.post("/org-units", json=body)
        assert refused.status_code == 403 and refused.json()["type"] == "/problems/csrf-refused"
        assert c.post("/org-units", json=body, headers={"X-CSRF-Token": "wrong"}).status_code == 403
        assert c.post("/org-units", json=body, headers={"X-CSRF-Token": csrf}).status_code == 201
        assert c.get("/org-units/" + tree.county["id"]).status_code == 200  # a read needs no token
