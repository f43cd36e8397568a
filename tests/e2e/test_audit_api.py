"""The auditors' API end to end (a real server on its own database): replay and as-of state,
verification and checkpoints, JSON and printable exports, the access log of every read of a
person's data, an emergency report escalated late shown late, and auditors who cannot write."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from api.access import RULES, route_format
from domain.base import CommandMeta
from domain.emergency import Category
from domain.roster import Severity
from domain.vocabulary import ActorRole
from infrastructure.audit import content_digest
from tests.api_support import ApiServer, Tree, auth, elder
from tests.app_support import make_care
from tests.conftest import create_database, drop_database


@pytest.fixture(scope="module")
def server(pg_base_url: str, nats_url: str) -> Iterator[ApiServer]:
    url = create_database(pg_base_url, prefix="guanai_test_audit")
    api = ApiServer(url, nats_url).start()
    api.database_url = url  # type: ignore[attr-defined]
    try:
        yield api
    finally:
        api.stop()
        drop_database(pg_base_url, url)


def client_for(server: ApiServer, role: ActorRole, org: Any = None) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers=auth(role, org), timeout=60)


@pytest.fixture(scope="module")
def case(server: ApiServer) -> dict[str, Any]:
    """A county tree and an elder with two changes, written by an administrator."""
    with client_for(server, ActorRole.ADMINISTRATOR) as admin:
        tree = Tree(admin)
        created = admin.post(
            "/persons", json=elder(tree.village["id"], occurred_at=(datetime.now(UTC) - timedelta(days=3)).isoformat())
        )
        assert created.status_code == 201, created.text
        pid = created.json()["id"]
        tagged = admin.post(
            f"/persons/{pid}/risk-tags",
            json={"tag": "advanced_age", "occurred_at": (datetime.now(UTC) - timedelta(days=2)).isoformat()},
        )
        assert tagged.status_code == 200, tagged.text
        admin.post(f"/persons/{pid}/risk-tags/remove", json={"tag": "living_alone"}).raise_for_status()
    return {"tree": tree, "person": pid}


def sql(server: ApiServer, statement: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(server.database_url, autocommit=True) as conn:  # type: ignore[attr-defined]
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def test_a_case_history_is_replayed_with_actor_times_and_positions(server: ApiServer, case: dict[str, Any]) -> None:
    with client_for(server, ActorRole.AUDITOR, case["tree"].county["id"]) as auditor:
        page = auditor.get(f"/audit/streams/{case['person']}", params={"limit": 2}).json()
        assert page["type"] == "Person" and page["total"] == 3 and page["next_after_version"] == 2
        first, second = page["events"]
        assert (
            first["type"] == "Person.Registered"
            and first["actor_role"] == "administrator"
            and first["fields"]["name"] == "李秀英"
        )
        assert first["position"] < second["position"] and second["fields"] == {"tag": "advanced_age"}
        assert first["recorded_after_seconds"] > 2 * 86400  # registered three days after it happened
        rest = auditor.get(f"/audit/streams/{case['person']}", params={"after_version": 2}).json()
        assert [e["type"] for e in rest["events"]] == ["Person.RiskTagRemoved"] and rest["next_after_version"] is None
        assert auditor.get(f"/audit/streams/{uuid.uuid4()}").status_code == 404


def test_state_as_of_on_both_axes(server: ApiServer, case: dict[str, Any]) -> None:
    pid = case["person"]
    with client_for(server, ActorRole.AUDITOR, case["tree"].county["id"]) as auditor:
        events = auditor.get(f"/audit/streams/{pid}").json()["events"]
        happened = datetime.fromisoformat(events[1]["occurred_at"]) + timedelta(hours=1)
        by_then = auditor.get(
            f"/audit/streams/{pid}/state", params={"as_of": happened.isoformat(), "time": "occurred"}
        ).json()
        assert by_then["version"] == 2 and sorted(by_then["state"]["risk_tags"]) == ["advanced_age", "living_alone"]
        known = auditor.get(
            f"/audit/streams/{pid}/state", params={"as_of": happened.isoformat(), "time": "recorded"}
        ).json()
        assert known["exists"] is False  # everything was recorded today
        now = auditor.get(f"/audit/streams/{pid}/state", params={"as_of": datetime.now(UTC).isoformat()}).json()
        assert (
            now["version"] == 3
            and now["state"]["risk_tags"] == ["advanced_age"]
            and now["position"] == events[2]["position"]
        )
        assert auditor.get(f"/audit/streams/{pid}/state", params={"as_of": "2026-01-01T00:00:00"}).status_code == 400


def test_verify_and_checkpoints_then_tampering_is_named(server: ApiServer, case: dict[str, Any]) -> None:
    with client_for(server, ActorRole.AUDITOR, case["tree"].county["id"]) as auditor:
        result = auditor.get("/audit/verify").json()
        assert result["ok"] and result["checked"] > 0 and result["failures"] == []
        held = next(c for c in auditor.get("/audit/checkpoint").json() if c["log"] == "events")
        again = auditor.get(
            "/audit/verify", params={"checkpoint_position": held["position"], "checkpoint_digest": held["digest"]}
        ).json()
        assert again["ok"]
        access = auditor.get("/audit/verify", params={"log": "access"}).json()
        assert access["ok"] and access["checked"] > 0
        target = sql(
            server,
            "SELECT notification_id FROM guanai_events WHERE originator_id = %s AND originator_version = 2",
            (uuid.UUID(case["person"]),),
        )[0][0]
        sql(server, "UPDATE guanai_events SET state = state || ' '::bytea WHERE notification_id = %s", (target,))
        try:
            broken = auditor.get("/audit/verify").json()
            assert (
                not broken["ok"]
                and broken["failures"][0]["position"] == target
                and broken["failures"][0]["kind"] == "payload-changed"
            )
            assert auditor.get("/audit/verify", params={"to": target - 1}).json()["ok"]
            assert auditor.get("/audit/verify", params={"from": target + 1}).json()["ok"]
        finally:
            sql(
                server,
                "UPDATE guanai_events SET state = substring(state from 1 for length(state) - 1) WHERE notification_id = %s",
                (target,),
            )
        assert auditor.get("/audit/verify").json()["ok"]


def test_exports_carry_the_verification_digest_and_seal(server: ApiServer, case: dict[str, Any]) -> None:
    with client_for(server, ActorRole.AUDITOR, case["tree"].county["id"]) as auditor:
        doc = auditor.get(f"/audit/streams/{case['person']}/export", params={"format": "json"}).json()
        assert doc["verification"]["ok"] and doc["verification"]["checked"] == 3 and len(doc["events"]) == 3
        body = {k: v for k, v in doc.items() if k not in ("digest", "seal")}
        assert content_digest(body) == doc["digest"] and re.fullmatch("[0-9a-f]{64}", doc["seal"])
        page = auditor.get(f"/audit/streams/{case['person']}/export")
        assert page.headers["content-type"].startswith("text/html")
        html = page.text
        for text in (
            "服务对象档案案卷",
            "登记入档",
            "增加风险标签",
            "管理员",
            "通过",
            doc["verification"]["log_checkpoint"]["digest"],
        ):
            assert text in html
        assert "年" in html and "北京时间" in html


def test_every_read_of_a_persons_data_is_in_their_access_log(server: ApiServer, case: dict[str, Any]) -> None:
    pid, county = case["person"], case["tree"].county["id"]
    with client_for(server, ActorRole.COUNTY_SUPERVISOR, county) as supervisor:
        assert supervisor.get(f"/persons/{pid}").status_code == 200
        assert supervisor.get(f"/persons/{pid}/timeline").status_code == 200
        listed = supervisor.get("/persons", params={"org_unit_id": case["tree"].village["id"]})
        assert pid in [p["id"] for p in listed.json()["items"]]
    with client_for(server, ActorRole.AUDITOR, county) as auditor:
        log = auditor.get(f"/audit/persons/{pid}/access-log").json()
        endpoints = [(e["actor_role"], e["endpoint"]) for e in log["items"]]
        for expected in [
            ("county_supervisor", "GET /persons/{person_id}"),
            ("county_supervisor", "GET /persons/{person_id}/timeline"),
            ("county_supervisor", "GET /persons"),
        ]:
            assert expected in endpoints
        assert log["total"] == len(log["items"]) and all(e["request_id"] for e in log["items"])
        # The auditor's own replays of the person are recorded too.
        auditor.get(f"/audit/streams/{pid}")
        newest = auditor.get(f"/audit/persons/{pid}/access-log", params={"limit": 1}).json()
        assert (
            newest["items"][0]["actor_role"] == "auditor"
            and newest["items"][0]["endpoint"] == "GET /audit/streams/{stream_id}"
        )
        assert newest["next_before_id"] == newest["items"][0]["id"]


def test_an_emergency_escalated_late_is_visibly_late(server: ApiServer, case: dict[str, Any]) -> None:
    app = make_care(server.database_url, pool_size=2)  # type: ignore[attr-defined]
    t0 = datetime.now(UTC) - timedelta(hours=3)

    def meta(at: datetime, role: str = "system") -> CommandMeta:
        return CommandMeta(actor_id="escalator", actor_role=role, correlation_id=str(uuid.uuid4()), occurred_at=at)

    rid = uuid.uuid4()
    try:
        app.file_emergency(
            id=rid,
            category=Category.CRITICAL_ILLNESS,
            severity=Severity.CRITICAL,
            description="老人晕倒",
            person_id=uuid.UUID(case["person"]),
            meta=meta(t0, "village_cadre"),
        )
        app.route_emergency(rid, 0, meta(t0 + timedelta(minutes=1)))
        assert app.escalate_overdue(rid, 0, meta(t0 + timedelta(hours=1))).position is not None
    finally:
        app.close()
    with client_for(server, ActorRole.AUDITOR, case["tree"].county["id"]) as auditor:
        events = auditor.get(f"/audit/streams/{rid}").json()["events"]
        escalated = next(e for e in events if e["type"] == "EmergencyReport.Escalated")
        routed = next(e for e in events if e["type"] == "EmergencyReport.Routed")
        assert escalated["late"]["deadline"] == routed["fields"]["deadline"]
        assert 50 * 60 < escalated["late"]["by_seconds"] < 60 * 60
        waiting = auditor.get(
            f"/audit/streams/{rid}/state",
            params={"as_of": (t0 + timedelta(minutes=30)).isoformat(), "time": "occurred"},
        ).json()
        assert waiting["state"]["status"] == "routed" and waiting["past_deadline"]["by_seconds"] > 20 * 60
        html = auditor.get(f"/audit/streams/{rid}/export").text
        assert "应急救助报告案卷" in html and "逐级上报" in html and "超时" in html
        # The report names the person: reading it is in their access log.
        log = auditor.get(f"/audit/persons/{case['person']}/access-log", params={"limit": 5}).json()
        assert any(e["endpoint"].startswith("GET /audit/streams/{stream_id}") for e in log["items"])


def test_only_auditors_and_administrators_read_the_audit_and_auditors_write_nothing(
    server: ApiServer, case: dict[str, Any]
) -> None:
    with client_for(server, ActorRole.COUNTY_SUPERVISOR, case["tree"].county["id"]) as supervisor:
        assert supervisor.get(f"/audit/streams/{case['person']}").status_code == 403
        assert supervisor.get("/audit/verify").status_code == 403
    with client_for(server, ActorRole.ADMINISTRATOR) as admin:
        assert admin.get("/audit/checkpoint").status_code == 200
    # Every route that could change something refuses an auditor's token, whatever it is.
    app = server.server.config.app
    writes = [
        (m, route.path)
        for route in app.routes
        for m in getattr(route, "methods", ())
        if m not in {"GET", "HEAD", "OPTIONS"}
    ]
    # Signing in (public) and an auditor's own session and second factor change no care data.
    own = {r.key for r in RULES if r.public or r.resource == "sessions"}
    writes = [(m, p) for m, p in writes if (m, route_format(p)) not in own]
    assert len(writes) > 10
    with client_for(server, ActorRole.AUDITOR, case["tree"].county["id"]) as auditor:
        for method, path in writes:
            concrete = re.sub(r"\{[^}]+:uuid\}", case["person"], path)
            concrete = re.sub(r"\{[^}]+:int\}", "1", concrete)
            concrete = re.sub(r"\{[^}]+\}", "x", concrete)
            response = auditor.request(method, concrete, json={})
            assert response.status_code == 403, (method, path, response.status_code)
