"""Accounts and sign-in over HTTP: an administrator opens an account, the person activates it
with the code and signs in (bearer tokens for API clients, cookies with CSRF for browsers),
refreshes, enrols TOTP, and signs out; a refresh token used twice ends its session."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pyotp
import pytest

from tests.api_support import ApiServer, Tree, api_server, client, helper  # noqa: F401

PASSWORD = "青山绿水-lucky-2026"


def new_phone() -> str:
    return "139" + f"{uuid.uuid4().int % 10**8:08d}"


@pytest.fixture
def tree(client: httpx.Client) -> Tree:
    return Tree(client)


@pytest.fixture
def anon(api_server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.base_url, timeout=30) as c:
        yield c


def open_account(client: httpx.Client, **body: Any) -> dict[str, Any]:
    r = client.post("/accounts", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def activated(
    client: httpx.Client, anon: httpx.Client, tree: Tree, role: str = "village_cadre", **extra: Any
) -> tuple[str, dict[str, Any]]:
    phone = new_phone()
    unit = {"village_cadre": tree.village, "township_supervisor": tree.township}.get(role, tree.village)
    account = open_account(client, role=role, org_unit_id=unit["id"], phone=phone, display_name="王村干", **extra)
    r = anon.post(
        "/auth/activate", json={"phone": phone, "activation_code": account["activation_code"], "password": PASSWORD}
    )
    assert r.status_code == 200, r.text
    return phone, account


def sign_in(anon: httpx.Client, phone: str, password: str = PASSWORD, **extra: Any) -> httpx.Response:
    return anon.post("/auth/sign-in", json={"phone": phone, "password": password, **extra})


def test_open_activate_sign_in_refresh_sign_out(client: httpx.Client, anon: httpx.Client, tree: Tree) -> None:
    phone = new_phone()
    account = open_account(client, role="village_cadre", org_unit_id=tree.village["id"], phone=f"+86 {phone[:3]} {phone[3:7]} {phone[7:]}",
                           display_name="王村干")  # fmt: skip
    assert account["status"] == "pending" and account["phone"] == f"{phone[:3]}****{phone[-4:]}"
    code = account["activation_code"]
    assert code and account["activation_expires_at"]
    # the code is shown once: reading the account never shows it
    assert client.get(f"/accounts/{account['id']}").json()["activation_code"] is None
    # full-width digits and spaces are the same number
    typed = "".join(chr(ord(c) + 0xFEE0) for c in phone)
    r = anon.post("/auth/activate", json={"phone": typed, "activation_code": code, "password": PASSWORD})
    assert r.status_code == 200, r.text
    assert r.json()["account"]["status"] == "active"
    # a used code is refused
    again = anon.post("/auth/activate", json={"phone": phone, "activation_code": code, "password": PASSWORD})
    assert again.status_code == 422 and again.json()["type"] == "/problems/activation-refused"

    r = sign_in(anon, phone, device_name="村委会电脑")
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert tokens["token_type"] == "Bearer" and tokens["account"]["role"] == "village_cadre"
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    me = anon.get("/auth/me", headers=bearer).json()
    assert me["account"]["id"] == account["id"] and me["role"] == "village_cadre"
    assert anon.get("/persons", headers=bearer, params={"limit": 1}).status_code == 200
    sessions = anon.get("/auth/sessions", headers=bearer).json()
    assert [s["device_name"] for s in sessions["items"]] == ["村委会电脑"] and sessions["items"][0]["current"]

    refreshed = anon.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    new = refreshed.json()
    assert new["refresh_token"] != tokens["refresh_token"]
    new_bearer = {"Authorization": f"Bearer {new['access_token']}"}
    assert anon.get("/auth/me", headers=new_bearer).status_code == 200
    # the replaced access token stops
    assert anon.get("/auth/me", headers=bearer).status_code == 401

    assert anon.post("/auth/sign-out", headers=new_bearer).status_code == 204
    assert anon.get("/auth/me", headers=new_bearer).status_code == 401
    assert anon.post("/auth/refresh", json={"refresh_token": new["refresh_token"]}).status_code == 401


def test_a_refresh_token_used_twice_ends_the_session(client: httpx.Client, anon: httpx.Client, tree: Tree) -> None:
    phone, _ = activated(client, anon, tree)
    first = sign_in(anon, phone).json()
    second = anon.post("/auth/refresh", json={"refresh_token": first["refresh_token"]}).json()
    stolen = anon.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert stolen.status_code == 401 and stolen.json()["type"] == "/problems/session-ended"
    # the whole family is gone: the thief's and the owner's latest tokens alike
    assert anon.post("/auth/refresh", json={"refresh_token": second["refresh_token"]}).status_code == 401
    assert anon.get("/auth/me", headers={"Authorization": f"Bearer {second['access_token']}"}).status_code == 401


def test_a_browser_session_in_cookies_with_csrf(client: httpx.Client, api_server: ApiServer, tree: Tree) -> None:
    with httpx.Client(base_url=api_server.base_url, timeout=30) as browser:
        phone, account = activated(client, browser, tree)
        r = sign_in(browser, phone, session="cookie", device_name="Chromium")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["access_token"] is None and body["refresh_token"] is None and body["csrf_token"]
        set_cookie = r.headers.get_list("set-cookie")
        access = next(c for c in set_cookie if c.startswith("guanai_access="))
        refresh = next(c for c in set_cookie if c.startswith("guanai_refresh="))
        csrf = next(c for c in set_cookie if c.startswith("guanai_csrf="))
        for cookie in (access, refresh, csrf):
            attributes = cookie.lower()
            assert "; secure" in attributes and "samesite=strict" in attributes
        assert "HttpOnly" in access and "HttpOnly" in refresh and "HttpOnly" not in csrf
        assert "Path=/auth/refresh" in refresh
        # httpx keeps Secure cookies only over https: send them as a browser on 127.0.0.1 would
        jar = {c.split("=", 1)[0]: c.split("=", 1)[1].split(";", 1)[0] for c in set_cookie}
        cookies = f"guanai_access={jar['guanai_access']}; guanai_csrf={jar['guanai_csrf']}"
        me = browser.get("/auth/me", headers={"Cookie": cookies})
        assert me.status_code == 200 and me.json()["account"]["id"] == account["id"]
        # a state-changing request without the CSRF header is refused, writing nothing
        no_csrf = browser.post("/auth/sign-out", headers={"Cookie": cookies})
        assert no_csrf.status_code == 403 and no_csrf.json()["type"] == "/problems/csrf-refused"
        wrong = browser.post("/auth/sign-out", headers={"Cookie": cookies, "X-CSRF-Token": "forged"})
        assert wrong.status_code == 403
        # refresh needs the CSRF header too (refused without spending the refresh token) ...
        no_header = browser.post("/auth/refresh", headers={"Cookie": f"guanai_refresh={jar['guanai_refresh']}"})
        assert no_header.status_code == 403 and no_header.json()["type"] == "/problems/csrf-refused"
        # ... with it, the refresh cookie gives new cookies
        refreshed = browser.post(
            "/auth/refresh", headers={"Cookie": f"guanai_refresh={jar['guanai_refresh']}; guanai_csrf={jar['guanai_csrf']}",
                                      "X-CSRF-Token": jar["guanai_csrf"]})  # fmt: skip
        assert refreshed.status_code == 200, refreshed.text
        new_access = next(c for c in refreshed.headers.get_list("set-cookie") if c.startswith("guanai_access="))
        access_value = new_access.split("=", 1)[1].split(";", 1)[0]
        cookies = f"guanai_access={access_value}; guanai_csrf={jar['guanai_csrf']}"
        out = browser.post("/auth/sign-out", headers={"Cookie": cookies, "X-CSRF-Token": jar["guanai_csrf"]})
        assert out.status_code == 204
        assert any(c.startswith("guanai_access=") and "Max-Age=0" in c for c in out.headers.get_list("set-cookie"))
        assert browser.get("/auth/me", headers={"Cookie": cookies}).status_code == 401


def test_totp_enrolment_and_sign_in_with_a_code_once(client: httpx.Client, anon: httpx.Client, tree: Tree) -> None:
    phone, _account = activated(client, anon, tree, role="township_supervisor")
    first = sign_in(anon, phone).json()
    # a supervisor must enrol a second factor before reaching anything but /auth
    assert first["second_factor_enrolment_required"] is True
    bearer = {"Authorization": f"Bearer {first['access_token']}"}
    refused = anon.get("/persons", headers=bearer)
    assert refused.status_code == 403 and "second factor" in refused.json()["detail"]
    assert anon.get("/auth/me", headers=bearer).json()["restricted"] is True
    started = anon.post("/auth/totp", headers=bearer).json()
    assert started["otpauth_uri"].startswith("otpauth://totp/") and started["qr_svg"].startswith(
        "data:image/svg+xml;base64,"
    )
    totp = pyotp.TOTP(started["secret"])
    confirmed = anon.post("/auth/totp/confirm", headers=bearer, json={"totp_code": totp.now()})
    assert confirmed.status_code == 200, confirmed.text
    recovery = confirmed.json()["recovery_codes"]
    assert len(recovery) == 10 and confirmed.json()["account"]["second_factor_enrolled"]
    full = anon.post("/auth/refresh", json={"refresh_token": first["refresh_token"]}).json()
    assert full["second_factor_enrolment_required"] is False
    assert (
        anon.get(
            "/persons", headers={"Authorization": f"Bearer {full['access_token']}"}, params={"limit": 1}
        ).status_code
        == 200
    )

    missing = sign_in(anon, phone)
    assert missing.status_code == 401 and missing.json()["type"] == "/problems/second-factor-required"
    # the confirming code's step is spent: the next step's code signs in, once
    next_code = totp.at(time.time() + 30)
    assert sign_in(anon, phone, totp_code=next_code).status_code == 200
    replay = sign_in(anon, phone, totp_code=next_code)
    assert replay.status_code == 401 and replay.json()["type"] == "/problems/second-factor-refused"
    assert sign_in(anon, phone, recovery_code=recovery[0]).status_code == 200
    assert sign_in(anon, phone, recovery_code=recovery[0]).status_code == 401


def test_bad_input_is_a_clear_problem(client: httpx.Client, anon: httpx.Client, tree: Tree) -> None:
    r = client.post("/accounts", json={"role": "village_cadre", "org_unit_id": tree.village["id"], "phone": "12345"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "phone"
    r = client.post(
        "/accounts", json={"role": "village_cadre", "org_unit_id": tree.township["id"], "phone": new_phone()}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "org_unit_id"
    phone = new_phone()
    account = open_account(client, role="village_cadre", org_unit_id=tree.village["id"], phone=phone)
    taken = client.post("/accounts", json={"role": "village_cadre", "org_unit_id": tree.village["id"], "phone": phone})
    assert taken.status_code == 409 and taken.json()["errors"][0]["field"] == "phone"
    code = account["activation_code"]
    for password, reason in (("short", "at least 10"), ("1234567890", "common"), ("x" * 1025, "at most 1024")):
        r = anon.post("/auth/activate", json={"phone": phone, "activation_code": code, "password": password})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "password", r.text
        assert reason in r.json()["detail"]
    wrong = anon.post(
        "/auth/activate", json={"phone": phone, "activation_code": "0000-0000-0000", "password": PASSWORD}
    )
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "activation_code"
    # the real code still works after one wrong try
    assert (
        anon.post("/auth/activate", json={"phone": phone, "activation_code": code, "password": PASSWORD}).status_code
        == 200
    )


def test_unknown_phone_and_wrong_password_answer_alike(client: httpx.Client, anon: httpx.Client, tree: Tree) -> None:
    phone, _ = activated(client, anon, tree)
    wrong = sign_in(anon, phone, "not-the-password-at-all")
    unknown = sign_in(anon, new_phone(), "not-the-password-at-all")
    assert wrong.status_code == unknown.status_code == 401
    strip = lambda r: {k: v for k, v in r.json().items() if k != "instance"}
    assert strip(wrong) == strip(unknown)
