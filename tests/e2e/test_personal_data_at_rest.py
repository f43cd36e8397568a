"""Personal data at rest and its erasure, end to end over HTTP with the real PostgreSQL and NATS.

The dump test fills a county (persons with family contacts, a helper, a responder roster, a visit
log with findings and notes, emergency reports with descriptions, addresses and notes, a person
who left with a reason), runs every projection and the relay to JetStream, then reads every
column of every table in every schema of the database and every message of the stream: none
holds a name, ID number, phone, address or note, neither as UTF-8 nor JSON-escaped. The same
scanner finds a needle planted in a scratch table, so it can fail.

The erasure test erases a person over HTTP and then looks everywhere a person shows."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import nats
import psycopg
import pyotp
import pytest
from psycopg import sql

from application.care import CareApplication
from domain.person import id_number_problem
from infrastructure.personal_data import KEYS_TABLE
from tests.api_support import ApiServer, Tree, auth, own_server
from tests.app_support import make_care
from workers.relay import Relay


def id_number(prefix17: str) -> str:
    """A valid 18-character resident ID number (GB 11643) for 17 given digits."""
    for check in "0123456789X":
        if id_number_problem(prefix17 + check) is None:
            return prefix17 + check
    raise AssertionError("unreachable")


ELDER_NAME, CHILD_NAME, LEAVER_NAME = "欧阳秀兰", "司马小雨", "上官明珠"
ELDER_ID, CHILD_ID = id_number("53042819410506002"), id_number("53042820160901004")
SON, SON_PHONE = "欧阳建华", "13512345678"
GUARDIAN, GUARDIAN_PHONE = "司马奶奶", "13987654321"
FATHER, FATHER_PHONE = "司马建军", "13712345678"
HOUSEHOLD = "红安村三组十二号"
HELPER_NAME, HELPER_PHONE = "诸葛志愿", "13611112222"
RESPONDER_NAME, RESPONDER_PHONE = "值班员杨丽萍", "13800001111"
FINDING_NOTE, FOLLOW_UP = "降压药快吃完了", "请家庭医生下周上门"
FLAG_DESCRIPTION = "老人在院子里摔倒起不来"
REPORT_DESCRIPTION, ADDRESS = "邻居说孩子常被锁在家里挨饿", "因远镇红安村后山小路"
ACTION_NOTES, RESOLVE_NOTES = "已联系派出所民警上门", "孩子已由姑姑暂时照看"
LEAVE_REASON = "搬到昆明和女儿一起住"
ACCOUNT_NAME, ACCOUNT_PHONE, ACCOUNT_PASSWORD = "督导员慕容雪", "13566667777", "红安村的山茶花-开了2026"

NEEDLES = [
    ELDER_NAME, CHILD_NAME, LEAVER_NAME, ELDER_ID, CHILD_ID, SON, SON_PHONE, GUARDIAN, GUARDIAN_PHONE, FATHER,
    FATHER_PHONE, HOUSEHOLD, HELPER_NAME, HELPER_PHONE, RESPONDER_NAME, RESPONDER_PHONE, FINDING_NOTE, FOLLOW_UP,
    FLAG_DESCRIPTION, REPORT_DESCRIPTION, ADDRESS, ACTION_NOTES, RESOLVE_NOTES, LEAVE_REASON,
    ACCOUNT_NAME, ACCOUNT_PHONE, ACCOUNT_PASSWORD,
]  # fmt: skip


def forms(needle: str) -> list[bytes]:
    """The needle as UTF-8 and as JSON writes it with \\uXXXX escapes (either case of hex)."""
    escaped = json.dumps(needle)[1:-1]
    return sorted({needle.encode(), escaped.encode(), escaped.upper().replace("\\U", "\\u").encode()})


def found_in(data: bytes, needles: list[str]) -> list[str]:
    return [n for n in needles if any(f in data for f in forms(n))]


def scan_database(url: str, needles: list[str]) -> list[tuple[str, str, str]]:
    """(table, column, needle) for every needle in any column of any table of any user schema:
    bytea as its raw bytes, everything else as PostgreSQL's text form of the value."""
    hits = []
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            "SELECT c.table_schema, c.table_name, c.column_name, c.data_type FROM information_schema.columns c"
            " JOIN information_schema.tables t ON (t.table_schema, t.table_name) = (c.table_schema, c.table_name)"
            " WHERE t.table_type = 'BASE TABLE' AND c.table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        assert len({(s, t) for s, t, _, _ in columns}) >= 10, "the scan must see the whole database"
        for schema, table, column, data_type in columns:
            value = (
                sql.Identifier(column) if data_type == "bytea" else sql.SQL("{}::text").format(sql.Identifier(column))
            )
            query = sql.SQL("SELECT {} FROM {} WHERE {} IS NOT NULL").format(
                value, sql.Identifier(schema, table), sql.Identifier(column)
            )
            for (cell,) in conn.execute(query):
                data = bytes(cell) if isinstance(cell, bytes | memoryview) else str(cell).encode()
                hits += [(f"{schema}.{table}", column, n) for n in found_in(data, needles)]
    return hits


async def scan_stream(nats_url: str, stream: str, needles: list[str]) -> tuple[int, list[tuple[int, str]]]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    try:
        info = await js.stream_info(stream)
        hits = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            data = msg.data + msg.subject.encode() + json.dumps(msg.headers or {}).encode()
            hits += [(seq, n) for n in found_in(data, needles)]
        return info.state.messages, hits
    finally:
        await nc.close()


async def relay_all(app: CareApplication, url: str, nats_url: str, stream: str) -> int:
    relay = Relay(app, url, nats_url, stream=stream, subject_prefix=stream.lower() + ".events")
    await relay.open()
    try:
        return await relay.publish_available()
    finally:
        await relay.close()


async def delete_stream(nats_url: str, stream: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().delete_stream(stream)
    except nats.js.errors.NotFoundError:
        pass
    await nc.close()


def ok(r: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()


class County:
    """Everything personal the product holds, entered over HTTP as an administrator."""

    def __init__(self, c: httpx.Client) -> None:
        self.tree = Tree(c)
        v, town = self.tree.village["id"], self.tree.township["id"]
        self.elder = ok(c.post("/persons", json={
            "kind": "elder", "name": ELDER_NAME, "sex": "female", "birth_date": "1941-05-06", "village_id": v,
            "id_number": ELDER_ID, "household": HOUSEHOLD, "risk_tags": ["living_alone"],
            "absent_children": [{"name": SON, "relation": "son", "whereabouts": "广东东莞", "phone": SON_PHONE}],
        }), 201)  # fmt: skip
        self.child = ok(c.post("/persons", json={
            "kind": "child", "name": CHILD_NAME, "sex": "female", "birth_date": "2016-09-01", "village_id": v,
            "id_number": CHILD_ID, "guardian": {"name": GUARDIAN, "relation": "grandmother", "phone": GUARDIAN_PHONE},
            "parents": [{"name": FATHER, "relation": "father", "work_place": "浙江义乌", "phone": FATHER_PHONE}],
        }), 201)  # fmt: skip
        self.leaver = ok(c.post("/persons", json={
            "kind": "elder", "name": LEAVER_NAME, "sex": "male", "birth_date": "1950-01-01", "village_id": v,
        }), 201)  # fmt: skip
        self.helper = ok(c.post("/helpers", json={
            "role": "volunteer", "name": HELPER_NAME, "phone": HELPER_PHONE, "org_unit_id": v,
        }), 201)  # fmt: skip
        starts = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
        self.pairing = ok(c.post("/pairings", json={
            "shape": "one_to_many", "helper_ids": [self.helper["id"]],
            "person_ids": [self.elder["id"], self.child["id"], self.leaver["id"]],
            "cadence": "weekly", "visit_mode": "home_visit", "starts_on": starts,
        }), 201)  # fmt: skip
        ok(c.post(f"/rosters/{town}", json={}), 201)
        ok(c.post(f"/rosters/{town}/responders", json={
            "responder_id": f"r-{uuid.uuid4().hex[:6]}", "name": RESPONDER_NAME, "phone": RESPONDER_PHONE,
        }))  # fmt: skip
        self.log = ok(c.post("/visit-logs", json={
            "id": str(uuid.uuid4()), "occurred_at": (datetime.now(UTC) - timedelta(hours=2)).isoformat(),
            "mode": "home_visit", "helper_ids": [self.helper["id"]], "pairing_id": self.pairing["id"],
            "person_id": self.elder["id"], "findings": {"health": "ill", "mood": "low", "notes": FINDING_NOTE},
            "services": ["health_care"], "follow_up_needed": True, "follow_up_notes": FOLLOW_UP,
            "raise_emergency": True, "emergency": {"kind": "critical_illness", "description": FLAG_DESCRIPTION},
        }), 201)  # fmt: skip
        self.report = ok(c.post("/emergencies", json={
            "category": "abuse_violence", "severity": "high", "person_id": self.child["id"],
            "description": REPORT_DESCRIPTION,
        }), 201)  # fmt: skip
        self.stranger = ok(c.post("/emergencies", json={
            "category": "wandering_missing", "severity": "normal", "description": "一位不认识的老人在路边",
            "location": {"org_unit_id": v, "address": ADDRESS, "latitude": 23.6, "longitude": 101.9},
        }), 201)  # fmt: skip
        r = self.report["id"]
        ok(c.post(f"/emergencies/{r}/actions", json={"action": "referred_police", "notes": ACTION_NOTES}))
        ok(c.post(f"/emergencies/{r}/resolve", json={"outcome": "placed_in_care", "notes": RESOLVE_NOTES}))
        self.left = ok(c.post(f"/persons/{self.leaver['id']}/leave", json={"reason": LEAVE_REASON}))
        self.position = self.left["position"]

    def account(self, c: httpx.Client, town: str) -> list[str]:
        """A township supervisor's account, activated, with TOTP enrolled, signed in twice."""
        account = ok(c.post("/accounts", json={
            "role": "township_supervisor", "org_unit_id": town, "phone": ACCOUNT_PHONE, "display_name": ACCOUNT_NAME,
        }), 201)  # fmt: skip
        anon = {"Authorization": ""}
        code = account["activation_code"]
        ok(c.post("/auth/activate", headers=anon,
                  json={"phone": ACCOUNT_PHONE, "activation_code": code, "password": ACCOUNT_PASSWORD}))  # fmt: skip
        first = ok(c.post("/auth/sign-in", headers=anon, json={"phone": ACCOUNT_PHONE, "password": ACCOUNT_PASSWORD}))
        bearer = {"Authorization": f"Bearer {first['access_token']}"}
        secret = ok(c.post("/auth/totp", headers=bearer))["secret"]
        totp = pyotp.TOTP(secret)
        recovery = ok(c.post("/auth/totp/confirm", headers=bearer, json={"totp_code": totp.now()}))["recovery_codes"]
        later = ok(c.post("/auth/sign-in", headers=anon, json={
            "phone": ACCOUNT_PHONE, "password": ACCOUNT_PASSWORD, "totp_code": totp.at(datetime.now(UTC).timestamp() + 30),
        }))  # fmt: skip
        return [code, code.replace("-", ""), secret, first["refresh_token"], later["refresh_token"], *recovery]


@pytest.fixture(scope="module")
def server(pg_base_url: str, nats_url: str) -> Iterator[ApiServer]:
    with own_server(pg_base_url, None) as s:
        yield s


@pytest.fixture
def admin(server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=auth(), timeout=30) as c:
        yield c


def test_a_dump_of_the_database_and_the_stream_shows_no_personal_data(
    server: ApiServer, admin: httpx.Client, nats_url: str
) -> None:
    county = County(admin)
    secrets = county.account(admin, county.tree.township["id"])  # its code, TOTP secret, tokens
    assert server.projector.wait_for(ok(admin.get("/health"))["database"]["position"], timeout=30)
    # The API shows it all to those allowed: the data is there, only sealed.
    assert ok(admin.get(f"/persons/{county.child['id']}"))["guardian"]["phone"] == GUARDIAN_PHONE
    names = {
        p["id"]: p["name"]
        for p in ok(admin.get("/persons", params={"org_unit_id": county.tree.village["id"]}))["items"]
    }
    assert names[county.elder["id"]] == ELDER_NAME

    stream = f"DUMP_{uuid.uuid4().hex[:8]}"
    app = make_care(server.database_url, pool_size=2)
    try:
        published = asyncio.run(relay_all(app, server.database_url, nats_url, stream))
        messages, stream_hits = asyncio.run(scan_stream(nats_url, stream, NEEDLES))
    finally:
        app.close()
        asyncio.run(delete_stream(nats_url, stream))
    assert published >= 25 and messages == published
    assert stream_hits == []

    assert scan_database(server.database_url, NEEDLES) == []
    # No password, activation code, TOTP secret, recovery code or refresh token either.
    assert scan_database(server.database_url, secrets) == []

    # The scanner can fail: a needle planted as text, and one JSON-escaped inside bytes, are found.
    with psycopg.connect(server.database_url) as conn:
        conn.execute("CREATE TABLE scratch_plant (note text, blob bytea)")
        conn.execute(
            "INSERT INTO scratch_plant VALUES (%s, %s)",
            (f"visited {ELDER_NAME}", json.dumps({"id": CHILD_ID, "who": FATHER}).encode()),
        )
    try:
        planted = scan_database(server.database_url, NEEDLES)
    finally:
        with psycopg.connect(server.database_url) as conn:
            conn.execute("DROP TABLE scratch_plant")
    assert sorted(n for _, _, n in planted) == sorted([ELDER_NAME, CHILD_ID, FATHER])
    assert {t for t, _, _ in planted} == {"public.scratch_plant"}


ELDER_REPORT, ELDER_REPORT_NOTES = "老人独自在家发高烧说胡话", "已送往因远镇卫生院"
ELDER_NEEDLES = [ELDER_NAME, ELDER_ID, SON, SON_PHONE, HOUSEHOLD, FINDING_NOTE, FOLLOW_UP, FLAG_DESCRIPTION,
                 ELDER_REPORT, ELDER_REPORT_NOTES]  # fmt: skip
VIEWS = ("reg_persons", "reg_helpers", "reg_pairings", "tl_entries", "tl_subjects", "sv_persons", "sv_pairings",
         "sv_coverage", "sv_helpers", "sv_emergencies", "emergency_queue", "visit_logs")  # fmt: skip


def views_of(url: str) -> dict[str, list[str]]:
    with psycopg.connect(url) as conn:
        return {
            t: sorted(r[0] for r in conn.execute(sql.SQL("SELECT v::text FROM {} v").format(sql.Identifier(t))))
            for t in VIEWS
        }


def events_of(url: str, stream_id: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM guanai_events WHERE originator_id = %s", (stream_id,)).fetchone()[0]


def test_erasing_a_person_leaves_no_trace_of_their_data_and_a_verifiable_history(
    server: ApiServer, admin: httpx.Client
) -> None:
    county = County(admin)
    elder, child = county.elder["id"], county.child["id"]
    report = ok(admin.post("/emergencies", json={
        "category": "critical_illness", "severity": "critical", "person_id": elder, "description": ELDER_REPORT,
    }), 201)  # fmt: skip
    ok(
        admin.post(
            f"/emergencies/{report['id']}/actions", json={"action": "referred_hospital", "notes": ELDER_REPORT_NOTES}
        )
    )
    assert ok(admin.get(f"/persons/{elder}"))["name"] == ELDER_NAME  # read: in the access log
    events_before = events_of(server.database_url, elder)

    # Who may erase, and what a request needs.
    supervisor = auth("county_supervisor", county.tree.county["id"])
    assert admin.post(f"/persons/{elder}/erase", json={"reason": "x"}, headers=supervisor).status_code == 403
    r = admin.post(f"/persons/{elder}/erase", json={})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
    assert admin.post(f"/persons/{uuid.uuid4()}/erase", json={"reason": "x"}).status_code == 404
    assert events_of(server.database_url, elder) == events_before

    erased = ok(admin.post(f"/persons/{elder}/erase", json={"reason": "本人申请删除个人信息 (request of 2026-03-01)"}))
    assert erased["erased"] and not erased["active"] and erased["name"] == "[erased]"
    assert server.projector.wait_for(erased["position"], timeout=30)

    def clean(r: httpx.Response) -> httpx.Response:
        assert r.status_code == 200, r.text
        assert found_in(r.content, ELDER_NEEDLES) == [], (str(r.url), found_in(r.content, ELDER_NEEDLES))
        return r

    # The person, the lists, the visit log, the reports, the timeline.
    person = clean(admin.get(f"/persons/{elder}")).json()
    assert (person["erased"], person["id_number"], person["household"], person["absent_children"]) == (
        True, "[erased]", "[erased]", []
    )  # fmt: skip
    as_registered = clean(admin.get(f"/persons/{elder}", params={"version": 1})).json()
    assert (as_registered["name"], as_registered["active"], as_registered["erased"]) == ("[erased]", True, True)
    listed = clean(admin.get("/persons", params={"org_unit_id": county.tree.village["id"]})).json()["items"]
    by_id = {p["id"]: p for p in listed}
    assert (by_id[elder]["name"], by_id[elder]["status"]) == ("[erased]", "erased")
    assert by_id[child]["name"] == CHILD_NAME  # others unaffected
    log = clean(admin.get(f"/visit-logs/{county.log['id']}")).json()
    assert log["erased"] and log["findings"] == {} and log["follow_up_notes"] == "[erased]"
    rep = clean(admin.get(f"/emergencies/{report['id']}")).json()
    assert rep["erased"] and rep["description"] == "[erased]" and rep["actions"][0]["notes"] == "[erased]"
    other = ok(admin.get(f"/emergencies/{county.report['id']}"))
    assert not other["erased"] and other["description"] == REPORT_DESCRIPTION
    timeline = clean(admin.get(f"/persons/{elder}/timeline", params={"limit": 200})).json()
    assert {"person.registered", "visit_log.recorded", "person.erased"} <= {e["kind"] for e in timeline["items"]}

    # Supervision lists and their CSV exports; the child, whose pairing ended with the erasure, is uncovered.
    unit = county.tree.county["id"]
    uncovered = clean(admin.get(f"/supervision/{unit}/uncovered")).json()["items"]
    assert [(p["id"], p["name"]) for p in uncovered] == [(child, CHILD_NAME)]
    for path in ("uncovered", "overdue", "emergencies-past-deadline"):
        clean(admin.get(f"/supervision/{unit}/{path}"))
        clean(admin.get(f"/supervision/{unit}/{path}.csv", params={"lang": "zh"}))

    # The audit trail: replay, state and exports of every stream that named them.
    for stream in (elder, county.log["id"], report["id"], county.pairing["id"]):
        clean(admin.get(f"/audit/streams/{stream}"))
        clean(admin.get(f"/audit/streams/{stream}/state", params={"as_of": datetime.now(UTC).isoformat()}))
        clean(admin.get(f"/audit/streams/{stream}/export", params={"format": "json"}))
        clean(admin.get(f"/audit/streams/{stream}/export", params={"format": "html"}))
    accesses = clean(admin.get(f"/audit/persons/{elder}/access-log")).json()
    assert accesses["items"], "reads of the person before the erasure are still on record"

    # The history is all there and still verifies; the keys are gone, the child's is not.
    assert events_of(server.database_url, elder) > events_before
    verified = ok(admin.get("/audit/verify"))
    assert verified["ok"], verified
    with psycopg.connect(server.database_url) as conn:
        keys = dict(conn.execute(
            f"SELECT subject, wrapped IS NULL AND destroyed_at IS NOT NULL FROM {KEYS_TABLE} WHERE subject = ANY(%s)",
            ([elder, report["id"], child, county.report["id"]],),
        ).fetchall())  # fmt: skip
    assert keys == {elder: True, report["id"]: True, child: False, county.report["id"]: False}

    # Nothing more about them is accepted.
    for path, body in (
        (f"/persons/{elder}/risk-tags", {"tag": "advanced_age"}),
        (f"/persons/{elder}/return", {}),
        ("/emergencies", {"category": "other", "severity": "normal", "person_id": elder, "description": "又来了"}),
    ):
        r = admin.post(path, json=body)
        assert (r.status_code, r.json()["type"]) == (409, "/problems/erased"), (path, r.text)

    # Rebuilding every view from the log gives exactly the views built as events came.
    incremental = views_of(server.database_url)
    runner = server.projector.runner
    for projection in runner.projections:
        runner.rebuild(projection.name)
    assert views_of(server.database_url) == incremental

    # Erasing again answers the same and writes nothing.
    count = events_of(server.database_url, elder)
    again = ok(admin.post(f"/persons/{elder}/erase", json={"reason": "again"}))
    assert again["erased"] and again["position"] is None and again["version"] == erased["version"]
    assert events_of(server.database_url, elder) == count
