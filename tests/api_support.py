"""A real API server for end-to-end tests: uvicorn on a free port in this process, a projector
thread beside it, and helpers to mint tokens and build a small org tree over HTTP."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
import uvicorn

from api.auth import issue_token
from domain.vocabulary import ActorRole
from guanai import bootstrap
from infrastructure.settings import Settings

SECRET = "test-secret-" + "x" * 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ApiServer:
    def __init__(self, database_url: str, nats_url: str | None, settings: Settings | None = None) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        # The shared server is hit by every test from one address and one account per test:
        # rate limits are tested on servers of their own (tests/e2e/test_security.py).
        self.settings = settings or Settings(
            read_wait_seconds=5.0, auth_failures_per_minute=0, reports_per_minute=0, sign_in_failures_free=0
        )
        app = bootstrap.api(self.settings, database_url=database_url, nats_url=nats_url, jwt_secret=SECRET)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.projector = bootstrap.projector(self.settings, database_url)

    def start(self) -> ApiServer:
        self.projector.start()
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.projector.stop()


def token(role: ActorRole | str, org_unit_id: uuid.UUID | str | None = None, subject: str | None = None) -> str:
    org = uuid.UUID(str(org_unit_id)) if org_unit_id else None
    return issue_token(
        SECRET,
        subject=subject or f"u-{uuid.uuid4().hex[:8]}",
        role=ActorRole(role),
        org_unit_id=org,
        ttl=timedelta(hours=1),
    )


def auth(role: ActorRole | str = ActorRole.ADMINISTRATOR, org_unit_id: Any = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(role, org_unit_id)}"}


_shared_servers: dict[str, ApiServer] = {}


@pytest.fixture(scope="session")
def api_server(database_url: str, nats_url: str) -> Iterator[ApiServer]:
    # Every test module imports this fixture, which gives each module a fixture definition (and
    # so a session-long server) of its own: share one, or the servers' connections pile up.
    server = _shared_servers.get(database_url)
    if server is None:
        server = _shared_servers[database_url] = ApiServer(database_url, nats_url).start()
    yield server
    if _shared_servers.pop(database_url, None) is not None:
        server.stop()


@contextmanager
def own_server(pg_base_url: str, nats_url: str | None, **settings: Any) -> Iterator[ApiServer]:
    """An API server with settings of its own, on a database of its own (dropped afterwards)."""
    from tests.conftest import create_database, drop_database

    url = create_database(pg_base_url, prefix="guanai_test_own")
    server = ApiServer(url, nats_url, Settings(read_wait_seconds=5.0, db_pool_size=3, **settings))
    try:
        yield server.start()
    finally:
        try:
            server.stop()
        except RuntimeError:  # the server thread never started
            server.projector.stop()
        drop_database(pg_base_url, url)


@pytest.fixture
def client(api_server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.base_url, headers=auth(), timeout=30) as c:
        yield c


def unique_code(prefix: str = "53") -> str:
    """A fresh 12-digit code (tests share one database)."""
    return prefix + f"{uuid.uuid4().int % 10**10:010d}"


class Tree:
    """county > township > two villages, registered over HTTP."""

    def __init__(self, c: httpx.Client) -> None:
        base = f"{uuid.uuid4().int % 10**6:06d}"
        self.county = c.post("/org-units", json={"code": base + "000000", "name": "测试县", "level": "county"}).json()
        self.township = c.post(
            "/org-units",
            json={"code": base + "101000", "name": "测试镇", "level": "township", "parent_id": self.county["id"]},
        ).json()
        self.village = c.post(
            "/org-units",
            json={"code": base + "101001", "name": "一村", "level": "village", "parent_id": self.township["id"]},
        ).json()
        self.village2 = c.post(
            "/org-units",
            json={"code": base + "101002", "name": "二村", "level": "village", "parent_id": self.township["id"]},
        ).json()


def elder(village_id: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "kind": "elder",
        "name": "李秀英",
        "sex": "female",
        "birth_date": "1941-05-06",
        "village_id": village_id,
        "risk_tags": ["living_alone"],
        "absent_children": [{"name": "李强", "relation": "son", "whereabouts": "广东东莞", "phone": "13800138000"}],
    }
    body.update(overrides)
    return body


def child(village_id: str, **overrides: Any) -> dict[str, Any]:
    body = {
        "kind": "child",
        "name": "王小花",
        "sex": "female",
        "birth_date": "2016-09-01",
        "village_id": village_id,
        "guardian": {"name": "王奶奶", "relation": "grandmother", "phone": "13900139000"},
        "parents": [{"name": "王建国", "relation": "father", "work_place": "浙江义乌", "phone": "13700137000"}],
        "care_agreement_signed_on": "2026-03-10",
    }
    body.update(overrides)
    return body


def helper(org_unit_id: str, role: str = "volunteer", **overrides: Any) -> dict[str, Any]:
    body = {"role": role, "name": "张志愿", "phone": "13600136000", "org_unit_id": org_unit_id}
    body.update(overrides)
    return body
