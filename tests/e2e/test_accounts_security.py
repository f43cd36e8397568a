"""Accounts under attack and under administration, over HTTP on servers of their own: failed
sign-ins throttled per account and per address (429, Retry-After), an unknown phone number
answering a wrong password's answer in about the same time, and a role change, a lock and a
reset taking effect in another API process within the revocation interval."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from application.accounts import FailureThrottle
from infrastructure.settings import Settings
from tests.api_support import ApiServer, Tree, auth, own_server
from tests.emergency_support import wait_until

PASSWORD = "青山绿水-lucky-2026"
REVOCATION_SECONDS = 0.5
_addresses = iter(range(2, 250))


def new_phone() -> str:
    return "137" + f"{uuid.uuid4().int % 10**8:08d}"


def from_new_address(server: ApiServer) -> httpx.Client:
    """A client with a loopback source address of its own: failures count per address."""
    transport = httpx.HTTPTransport(local_address=f"127.0.1.{next(_addresses)}")
    return httpx.Client(base_url=server.base_url, transport=transport, timeout=30)


@pytest.fixture(scope="module")
def server(pg_base_url: str, nats_url: str) -> Iterator[ApiServer]:
    with own_server(pg_base_url, nats_url, sign_in_failures_free=2, revocation_cache_seconds=REVOCATION_SECONDS) as s:
        yield s


@pytest.fixture(scope="module")
def other_process(server: ApiServer, nats_url: str) -> Iterator[ApiServer]:
    """A second API server on the same database: another process as far as revocations go."""
    settings = Settings(read_wait_seconds=5.0, db_pool_size=3, revocation_cache_seconds=REVOCATION_SECONDS)
    other = ApiServer(server.database_url, nats_url, settings).start()
    yield other
    other.stop()


@pytest.fixture(scope="module")
def admin(server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=auth(), timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def tree(admin: httpx.Client) -> Tree:
    return Tree(admin)


def activated(
    admin: httpx.Client, server: ApiServer, tree: Tree, role: str = "village_cadre"
) -> tuple[str, dict[str, Any]]:
    phone = new_phone()
    account = admin.post("/accounts", json={"role": role, "org_unit_id": tree.village["id"], "phone": phone}).json()
    with from_new_address(server) as c:
        r = c.post(
            "/auth/activate", json={"phone": phone, "activation_code": account["activation_code"], "password": PASSWORD}
        )
    assert r.status_code == 200, r.text
    return phone, account


def sign_in(c: httpx.Client, phone: str, password: str = PASSWORD) -> httpx.Response:
    return c.post("/auth/sign-in", json={"phone": phone, "password": password})


def test_failed_sign_ins_of_one_account_wait_longer_and_longer(
    admin: httpx.Client, server: ApiServer, tree: Tree
) -> None:
    phone, account = activated(admin, server, tree)
    answers = []
    for _ in range(3):  # each from another address: the account's own count
        with from_new_address(server) as c:
            answers.append(sign_in(c, phone, "wrong-password-123").status_code)
    assert answers == [401, 401, 401]
    with from_new_address(server) as c:
        throttled = sign_in(c, phone)  # even the right password waits
    assert throttled.status_code == 429 and throttled.json()["type"] == "/problems/too-many-requests"
    assert int(throttled.headers["Retry-After"]) >= 1
    outcomes = [r["outcome"] for r in admin.get(f"/accounts/{account['id']}/sign-ins").json()]
    assert outcomes[:3] == ["wrong password; throttled 1 s", "wrong password", "wrong password"]


def test_failed_sign_ins_from_one_address_are_throttled_across_accounts(server: ApiServer) -> None:
    with from_new_address(server) as c:
        # four times the per-account allowance, each a different (unknown) number
        answers = [sign_in(c, new_phone(), "wrong-password-123").status_code for _ in range(9)]
        assert answers[:8] == [401] * 8 and answers[8] == 401
        throttled = sign_in(c, new_phone(), "wrong-password-123")
    assert throttled.status_code == 429 and "Retry-After" in throttled.headers


def test_the_waits_double_after_the_free_failures() -> None:
    now = [1000.0]
    throttle = FailureThrottle(2, cap=60, clock=lambda: now[0])
    waits = []
    for _ in range(9):
        throttle.failed("k")
        waits.append(throttle.wait("k"))
    assert waits == [0, 0, 1, 2, 4, 8, 16, 32, 60]
    throttle.succeeded("k")
    assert throttle.wait("k") == 0


def test_an_unknown_phone_and_a_wrong_password_take_about_the_same_time(pg_base_url: str, nats_url: str) -> None:
    with (
        own_server(pg_base_url, nats_url, sign_in_failures_free=0) as s,
        httpx.Client(base_url=s.base_url, headers=auth(), timeout=30) as a,
    ):
        t = Tree(a)
        phone, _ = activated(a, s, t)
        known, unknown = [], []
        with httpx.Client(base_url=s.base_url, timeout=30) as c:
            sign_in(c, new_phone(), "warm-up-password")
            for _ in range(12):  # interleaved, so load from other sessions falls on both alike
                for phone_number, times in ((phone, known), (new_phone(), unknown)):
                    started = time.perf_counter()
                    r = sign_in(c, phone_number, "wrong-password-123")
                    times.append(time.perf_counter() - started)
                    assert r.status_code == 401
        a_median, b_median = statistics.median(known), statistics.median(unknown)
        assert abs(a_median - b_median) <= 0.2 * max(a_median, b_median), (a_median, b_median)


def test_a_role_change_reaches_another_process_within_the_revocation_interval(
    admin: httpx.Client, server: ApiServer, other_process: ApiServer, tree: Tree
) -> None:
    phone, account = activated(admin, server, tree)
    with from_new_address(server) as c:
        tokens = sign_in(c, phone).json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    with httpx.Client(base_url=other_process.base_url, timeout=30) as elsewhere:
        assert elsewhere.get("/auth/me", headers=bearer).json()["role"] == "village_cadre"
        r = admin.post(
            f"/accounts/{account['id']}/role", json={"role": "child_director", "org_unit_id": tree.village["id"]}
        )
        assert r.status_code == 200 and r.json()["role"] == "child_director", r.text
        changed = time.monotonic()
        wait_until(
            lambda: elsewhere.get("/auth/me", headers=bearer).status_code == 401,
            timeout=10,
            what="the old token refused",
        )
        # the background reload runs every interval; allow one more for a loaded machine
        assert time.monotonic() - changed <= 3 * REVOCATION_SECONDS + 1.0
        refreshed = elsewhere.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
        me = elsewhere.get("/auth/me", headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"}).json()
        assert me["role"] == "child_director"


def test_a_lock_ends_every_session_and_a_reset_needs_a_new_activation(
    admin: httpx.Client, server: ApiServer, other_process: ApiServer, tree: Tree
) -> None:
    phone, account = activated(admin, server, tree)
    with from_new_address(server) as c:
        tokens = sign_in(c, phone).json()
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert admin.post(f"/accounts/{account['id']}/lock", json={"reason": "手机丢失"}).json()["status"] == "locked"
        assert c.get("/auth/me", headers=bearer).status_code == 401  # at once in the process that locked it
        with httpx.Client(base_url=other_process.base_url, timeout=30) as elsewhere:
            wait_until(
                lambda: elsewhere.get("/auth/me", headers=bearer).status_code == 401,
                timeout=10,
                what="refused elsewhere",
            )
        assert c.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).status_code == 401
        locked = sign_in(c, phone)
        assert locked.status_code == 403 and locked.json()["type"] == "/problems/account-locked"
        assert admin.post(f"/accounts/{account['id']}/unlock", json={}).json()["status"] == "active"
        assert sign_in(c, phone).status_code == 200
        reset = admin.post(f"/accounts/{account['id']}/reset", json={"reason": "忘记密码"}).json()
        assert reset["status"] == "pending" and reset["activation_code"]
        assert sign_in(c, phone).status_code == 401  # the old password is gone
        new_password = "新的密码-again-2026"
        body = {"phone": phone, "activation_code": reset["activation_code"], "password": new_password}
        assert c.post("/auth/activate", json=body).status_code == 200
        assert sign_in(c, phone, new_password).status_code == 200
        outcomes = [r["outcome"] for r in admin.get(f"/accounts/{account['id']}/sign-ins").json()]
        assert "signed in" in outcomes and "refused: locked" in outcomes and "activated" in outcomes
