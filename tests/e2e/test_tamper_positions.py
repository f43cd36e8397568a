"""Forged events where a walk from position 1 would not look (issue 12): at position 0, at a
negative position, inside a gap of the sequence. Reads apply every row of a stream, whatever its
position, so `guanai audit verify` and `GET /audit/verify` must cover every row, and name it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.api_support import ApiServer, Tree, auth, elder, own_server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(pg_base_url: str, nats_url: str) -> Iterator[ApiServer]:
    # A database of its own: the forged rows must not fail other tests' verifications.
    with own_server(pg_base_url, nats_url) as s:
        yield s


@pytest.fixture
def admin(server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=auth(), timeout=30) as c:
        yield c


def sql(url: str, statement: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def a_person_at_version_3(admin: httpx.Client) -> str:
    person = admin.post("/persons", json=elder(Tree(admin).village["id"])).json()
    admin.post(f"/persons/{person['id']}/risk-tags", json={"tag": "dibao"}).raise_for_status()
    admin.post(f"/persons/{person['id']}/risk-tags", json={"tag": "advanced_age"}).raise_for_status()
    assert admin.get(f"/persons/{person['id']}").json()["version"] == 3
    return person["id"]


def forge(url: str, person: str, position: int) -> None:
    """A copy of the person's latest event as the next version, stored at ``position``."""
    sql(
        url,
        "INSERT INTO guanai_events (notification_id, originator_id, originator_version, topic, state) "
        "SELECT %s, originator_id, originator_version + 1, topic, state FROM guanai_events WHERE originator_id = %s "
        "ORDER BY originator_version DESC LIMIT 1",
        (position, uuid.UUID(person)),
    )


def cli_verify(url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GUANAI_DATABASE_URL": url, "GUANAI_LOG_LEVEL": "warning"}
    return subprocess.run(
        [sys.executable, "-m", "guanai.cli", "audit", "verify"], check=False, cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def assert_found(server: ApiServer, admin: httpx.Client, position: int) -> None:
    done = cli_verify(server.database_url)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"FAIL at {position}: row-inserted" in done.stdout, done.stdout
    assert f"first failure at position {position}" in done.stdout
    answer = admin.get("/audit/verify").json()
    assert answer["ok"] is False and answer["start"] <= position
    assert [(f["position"], f["kind"]) for f in answer["failures"]] == [(position, "row-inserted")]


@pytest.mark.parametrize("position", [0, -7], ids=["position-0", "negative"])
def test_a_forged_event_below_position_1_is_found(server: ApiServer, admin: httpx.Client, position: int) -> None:
    person = a_person_at_version_3(admin)
    assert cli_verify(server.database_url).returncode == 0
    forge(server.database_url, person, position)
    try:
        assert admin.get(f"/persons/{person}").json()["version"] == 4  # what a read applies ...
        assert_found(server, admin, position)  # ... verification walks
    finally:
        sql(server.database_url, "DELETE FROM guanai_events WHERE notification_id = %s", (position,))
    assert cli_verify(server.database_url).returncode == 0


def test_a_forged_event_inside_a_gap_of_the_sequence_is_found(server: ApiServer, admin: httpx.Client) -> None:
    person = a_person_at_version_3(admin)
    # Positions a rolled-back transaction took leave a gap; a forger may fill it.
    [(gap,)] = sql(server.database_url, "SELECT nextval(pg_get_serial_sequence('guanai_events', 'notification_id'))")
    a_person_at_version_3(admin)
    forge(server.database_url, person, gap)
    try:
        assert admin.get(f"/persons/{person}").json()["version"] == 4
        assert_found(server, admin, gap)
    finally:
        sql(server.database_url, "DELETE FROM guanai_events WHERE notification_id = %s", (gap,))
    assert cli_verify(server.database_url).returncode == 0
