"""Emergency reports end to end: filed over HTTP, routed by the router to the township's on-duty
responders with an alert on NATS, acknowledged, acted on, resolved; escalated to the county when
nobody acknowledges in time; the responder's queue and live stream; who may do what."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.api_support import ApiServer, api_server, auth, client  # noqa: F401 - fixtures
from tests.emergency_support import (
    Alerts,
    County,
    Names,
    auth_as,
    delete_stream,
    emergency_workers,
    volunteer,
    wait_until,
)


@pytest.fixture(scope="module")
def workers(database_url: str, nats_url: str, api_server: ApiServer) -> Iterator[Names]:
    names = Names()
    running = emergency_workers(database_url, nats_url, names).start()
    yield names
    running.stop()
    asyncio.run(delete_stream(nats_url, names.stream))


@pytest.fixture
def county(client: httpx.Client, workers: Names) -> County:
    return County(client, critical=300)


def read(client: httpx.Client, report_id: str) -> dict[str, Any]:
    return client.get(f"/emergencies/{report_id}").json()


def routed_at(client: httpx.Client, report_id: str, level: int) -> dict[str, Any]:
    return wait_until(
        lambda: (r := read(client, report_id)) and any(x["level"] == level for x in r["routings"]) and r,
        what=f"routing at level {level}",
    )


def test_a_filed_report_is_routed_once_and_alerts_the_township(
    client: httpx.Client, county: County, nats_url: str
) -> None:
    alerts = Alerts(nats_url, county.township_subject)
    try:
        r = client.post("/emergencies", json=county.report(), headers=county.reporter())
        assert r.status_code == 201, r.text
        report = r.json()
        assert r.headers["location"] == f"/emergencies/{report['id']}" and report["status"] == "reported"
        assert report["township_id"] == county.township_id and report["position"] > 0
        [alert] = wait_until(lambda: alerts.for_report(report["id"]), what="the township's alert")
    finally:
        alerts.close()
    assert (alert["level"], alert["level_name"], alert["severity"], alert["category"]) == (
        0,
        "township",
        "critical",
        "critical_illness",
    )
    assert alert["responder_ids"] == county.township_responders and alert["alert_id"] == f"{report['id']}:0"
    assert "跌倒" not in json.dumps(alert, ensure_ascii=False), "alerts carry no free text"
    got = routed_at(client, report["id"], 0)
    assert got["status"] == "routed" and len(got["routings"]) == 1 and got["deadline"] == alert["deadline"]


def test_reading_a_report_is_in_the_persons_access_log(client: httpx.Client, county: County) -> None:
    report = client.post("/emergencies", json=county.report(), headers=county.reporter()).json()
    assert client.get(f"/emergencies/{report['id']}", headers=county.responder()).status_code == 200
    log = client.get(f"/audit/persons/{county.person['id']}/access-log").json()
    assert ("township_responder", "GET /emergencies/{report_id}") in [
        (e["actor_role"], e["endpoint"]) for e in log["items"]
    ]


def test_a_retry_with_the_same_idempotency_key_files_nothing_twice(client: httpx.Client, county: County) -> None:
    headers = {**county.reporter(), "Idempotency-Key": f"phone-7-{uuid.uuid4()}"}
    first = client.post("/emergencies", json=county.report(), headers=headers)
    again = client.post("/emergencies", json=county.report(), headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"] and again.json()["version"] >= 1
    other = client.post("/emergencies", json=county.report(severity="high"), headers=headers)
    assert other.status_code == 409 and other.json()["type"] == "/problems/already-exists"
    body, reporter = county.report(id=str(uuid.uuid4())), county.reporter()
    assert [client.post("/emergencies", json=body, headers=reporter).status_code for _ in range(2)] == [201, 200]
    # Another account sending the same body is not retrying: the report is not theirs to read.
    assert client.post("/emergencies", json=body, headers=county.reporter()).status_code == 409


def test_an_unregistered_person_is_reported_at_a_location(client: httpx.Client, county: County) -> None:
    body = county.report(person_id=None, category="wandering_missing", severity="high",
                         location={"org_unit_id": county.tree.village2["id"], "address": "二村桥头", "latitude": 23.6})  # fmt: skip
    r = client.post("/emergencies", json=body, headers=county.reporter())
    assert r.status_code == 201, r.text
    assert r.json()["location"]["address"] == "二村桥头" and r.json()["village_id"] == county.tree.village2["id"]
    routed_at(client, r.json()["id"], 0)


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"person_id": None}, 422, "person_id"),
        ({"person_id": None, "location": {"org_unit_id": "COUNTY"}}, 422, "location.org_unit_id"),
        ({"person_id": str(uuid.uuid4())}, 422, "person_id"),
        ({"severity": "urgent"}, 422, "severity"),
        ({"occurred_at": "2099-01-01T00:00:00+08:00"}, 422, "occurred_at"),
    ],
)
def test_reports_are_validated(
    client: httpx.Client, county: County, change: dict[str, Any], status: int, field: str
) -> None:
    if change.get("location", {}).get("org_unit_id") == "COUNTY":
        change = {**change, "location": {"org_unit_id": county.county_id}}
    r = client.post("/emergencies", json=county.report(**change), headers=county.reporter())
    assert r.status_code == status, r.text
    assert field in [e["field"] for e in r.json()["errors"]]


def test_the_responder_acknowledges_acts_resolves_and_the_queue_follows(client: httpx.Client, county: County) -> None:
    older = client.post("/emergencies", json=county.report(severity="high"), headers=county.reporter()).json()
    report = client.post("/emergencies", json=county.report(), headers=county.reporter()).json()
    routed_at(client, report["id"], 0)
    me = county.responder()
    queue = client.get("/emergencies", headers=me, params={"min_position": report["position"]}).json()
    ids = [row["id"] for row in queue["items"]]
    assert ids.index(older["id"]) < ids.index(report["id"]), "oldest first"
    row = next(x for x in queue["items"] if x["id"] == report["id"])
    assert row["seconds_since_report"] >= 0 and row["overdue"] is False
    assert row["status"] in ("reported", "routed")

    ack = client.post(f"/emergencies/{report['id']}/acknowledge", json={}, headers=me)
    assert ack.status_code == 200 and ack.json()["acknowledged_by"] == county.township_responders[0]
    assert client.post(f"/emergencies/{report['id']}/acknowledge", json={}, headers=me).status_code == 200
    colleague = auth_as("township_responder", county.township_id, f"t-{uuid.uuid4().hex[:6]}")
    other = client.post(f"/emergencies/{report['id']}/acknowledge", json={}, headers=colleague)
    assert other.status_code == 409 and other.json()["acknowledged_by"] == county.township_responders[0]
    act = client.post(
        f"/emergencies/{report['id']}/actions", json={"action": "dispatched", "notes": "卫生院出车"}, headers=me
    )
    assert act.status_code == 200 and act.json()["actions"][0]["action"] == "dispatched"
    done = client.post(f"/emergencies/{report['id']}/resolve", json={"outcome": "hospitalised"}, headers=me)
    assert done.json()["status"] == "resolved"
    stale = client.post(
        f"/emergencies/{report['id']}/reopen", json={"notes": "复发"}, headers={**me, "If-Match": '"2"'}
    )
    assert stale.status_code == 409 and stale.json()["type"] == "/problems/version-conflict"
    again = client.post(f"/emergencies/{report['id']}/reopen", json={"notes": "出院后无人照料"}, headers=me)
    assert again.json()["status"] == "acknowledged"
    assert client.post(f"/emergencies/{report['id']}/close", json={}, headers=me).status_code == 403, (
        "supervisors close"
    )

    queue = client.get(
        "/emergencies", headers=me, params={"status": "open", "min_position": again.json()["position"]}
    ).json()
    assert next(x for x in queue["items"] if x["id"] == report["id"])["status"] == "acknowledged"


def test_nobody_acknowledges_so_the_report_escalates_to_the_county_once(
    client: httpx.Client, workers: Names, nats_url: str
) -> None:
    county = County(client, critical=1)
    alerts = Alerts(nats_url, f"alerts.{county.county_code}.>")
    try:
        report = client.post("/emergencies", json=county.report(), headers=county.reporter()).json()
        got = routed_at(client, report["id"], 1)
        county_alert = wait_until(
            lambda: [a for a in alerts.for_report(report["id"]) if a["level"] == 1], what="county alert"
        )
    finally:
        alerts.close()
    assert [(e["from_level"], e["to_level"], e["reason"]) for e in got["escalations"]] == [(0, 1, "deadline_passed")]
    assert county_alert[0]["level_name"] == "county" and county_alert[0]["responder_ids"] == [county.county_responder]
    # The county has no further contacts: the chain ends there, whatever the clock says.
    desk = county.county_desk()
    queue = wait_until(
        lambda: (
            (q := client.get("/emergencies", headers=desk).json())
            and any(x["id"] == report["id"] and x["overdue"] for x in q["items"])
            and q
        ),
        what="the report overdue at the county",
    )
    assert next(x for x in queue["items"] if x["id"] == report["id"])["level_name"] == "county"
    assert len(read(client, report["id"])["escalations"]) == 1
    # The township does not see the county's queue of other townships, but sees its own report.
    assert any(x["id"] == report["id"] for x in client.get("/emergencies", headers=county.responder()).json()["items"])


def test_a_responder_escalates_by_hand(client: httpx.Client, county: County) -> None:
    report = client.post("/emergencies", json=county.report(severity="normal"), headers=county.reporter()).json()
    routed_at(client, report["id"], 0)
    r = client.post(
        f"/emergencies/{report['id']}/escalate", json={"notes": "需要县民政局协调"}, headers=county.responder()
    )
    assert r.status_code == 200 and r.json()["escalations"][0]["reason"] == "manual"
    got = routed_at(client, report["id"], 1)
    assert got["routings"][1]["responder_ids"] == [county.county_responder]
    top = client.post(f"/emergencies/{report['id']}/escalate", json={"notes": "再上报"}, headers=county.county_desk())
    assert top.status_code == 422


def test_duplicates_are_linked(client: httpx.Client, county: County) -> None:
    first = client.post("/emergencies", json=county.report(), headers=county.reporter()).json()
    second = client.post("/emergencies", json=county.report(), headers=county.reporter()).json()
    r = client.post(f"/emergencies/{second['id']}/link", json={"duplicate_of": first["id"]}, headers=county.responder())
    assert r.status_code == 200
    assert (r.json()["duplicate_of"], r.json()["resolution"]["outcome"]) == (first["id"], "duplicate")


def test_who_may_do_what(client: httpx.Client, county: County) -> None:
    report = client.post("/emergencies", json=county.report(), headers=county.reporter()).json()
    auditor = auth("auditor", county.county_id)
    assert client.post("/emergencies", json=county.report(), headers=auditor).status_code == 403
    assert client.get("/emergencies", headers=volunteer(county.tree.village["id"])).status_code == 403
    assert client.get("/emergencies", headers=auditor).status_code == 200
    # Another township's responder: the report is as good as unknown to them.
    stranger = County(client)
    unknown = str(uuid.uuid4())
    for path in ("/emergencies/{}/acknowledge", "/emergencies/{}"):
        method = client.post if path.endswith("acknowledge") else client.get
        kwargs: dict[str, Any] = {"json": {}} if path.endswith("acknowledge") else {}
        theirs = method(path.format(report["id"]), headers=stranger.responder(), **kwargs)
        nothing = method(path.format(unknown), headers=stranger.responder(), **kwargs)
        assert (theirs.status_code, nothing.status_code) == (404, 404)
        assert theirs.json()["detail"].replace(report["id"], unknown) == nothing.json()["detail"]
    assert all(
        x["township_id"] == stranger.township_id
        for x in client.get("/emergencies", headers=stranger.responder(), params={"status": "all"}).json()["items"]
    )
    # A volunteer reads the reports they filed, not others'; and files only about people of their own.
    assert client.get(f"/emergencies/{report['id']}", headers=volunteer(county.tree.village["id"])).status_code == 404
    r = client.post("/emergencies", json=county.report(), headers=volunteer(county.tree.village["id"]))
    assert (r.status_code, r.json()["type"], r.json()["errors"][0]["field"]) == (
        422,
        "/problems/unknown-reference",
        "person_id",
    )
    assert client.get(f"/rosters/{county.township_id}", headers=volunteer(county.tree.village["id"])).status_code == 403


def test_rosters_say_who_is_on_duty(client: httpx.Client, county: County) -> None:
    unit = county.township_id
    night = {"responder_id": "night-desk", "name": "夜班", "phone": "13900000009",
             "shifts": [{"days": [0, 1, 2, 3, 4, 5, 6], "start": "20:00", "end": "08:00"}]}  # fmt: skip
    assert client.post(f"/rosters/{unit}/responders", json=night).status_code == 200
    at_night = client.get(f"/rosters/{unit}/on-duty", params={"at": "2026-03-02T23:00:00+08:00"}).json()
    by_day = client.get(f"/rosters/{unit}/on-duty", params={"at": "2026-03-02T10:00:00+08:00"}).json()
    assert "night-desk" in at_night["primary"] and "night-desk" not in by_day["primary"]
    r = client.post(f"/rosters/{unit}/deadlines", json={"high": 600})
    assert r.json()["ack_deadlines"]["high"] == 600
    assert client.delete(f"/rosters/{unit}/responders/night-desk").status_code == 200
    assert (
        client.post(
            f"/rosters/{unit}/responders", json={**night, "shifts": [{"days": [9], "start": "20:00", "end": "08:00"}]}
        ).status_code
        == 422
    )
    assert client.get(f"/rosters/{county.tree.village['id']}").status_code == 404
    assert client.post(f"/rosters/{county.tree.village['id']}", json={}).status_code == 422


def test_the_console_stream_delivers_alerts_of_my_township(
    client: httpx.Client, api_server: ApiServer, county: County
) -> None:
    with (
        httpx.Client(base_url=api_server.base_url, timeout=20) as sse,
        sse.stream("GET", "/emergencies/stream", headers=county.responder()) as stream,
    ):
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines).startswith(": following alerts.")
        report = client.post("/emergencies", json=county.report(), headers=county.reporter()).json()
        event = data = None
        for line in lines:
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data = json.loads(line.split(":", 1)[1])
                if data["report_id"] == report["id"]:
                    break
    assert event == "alert" and data is not None and data["level"] == 0


def test_a_visit_log_raising_an_emergency_files_a_report_once(client: httpx.Client, county: County) -> None:
    from domain.base import derived_id
    from tests.api_support import helper, token

    village = county.tree.village["id"]
    volunteer_id = client.post("/helpers", json=helper(village)).json()["id"]
    pairing = client.post(
        "/pairings",
        json={"shape": "one_to_one", "helper_ids": [volunteer_id], "person_ids": [county.person["id"]],
              "cadence": "weekly", "visit_mode": "home_visit", "starts_on": "2026-01-05"},
    )  # fmt: skip
    assert pairing.status_code == 201, pairing.text
    log_id = str(uuid.uuid4())
    body = {"id": log_id, "occurred_at": "2026-03-02T10:00:00+08:00", "mode": "home_visit",
            "pairing_id": pairing.json()["id"], "person_id": county.person["id"], "raise_emergency": True,
            "emergency": {"kind": "critical_illness", "description": "老人高烧昏迷，已拨打120"}}  # fmt: skip
    me = {"Authorization": f"Bearer {token('volunteer', village, subject=volunteer_id)}"}
    for _ in range(2):  # sent twice, as a phone regaining signal does
        assert client.post("/visit-logs", json=body, headers=me).status_code in (200, 201)
    report_id = str(derived_id("emergency-from-visit", log_id))
    wait_until(
        lambda: client.get(f"/emergencies/{report_id}").status_code == 200, what="the report filed from the visit"
    )
    report = routed_at(client, report_id, 0)
    assert (report["source"], report["category"], report["severity"]) == ("visit", "critical_illness", "critical")
    assert report["reporter_id"] == volunteer_id and report["person_id"] == county.person["id"]
    assert report["description"] == "老人高烧昏迷，已拨打120"
    assert datetime.fromisoformat(report["reported_at"]) == datetime.fromisoformat(body["occurred_at"]), (
        "when the visit found it"
    )
    listed = wait_until(
        lambda: [
            x["id"]
            for x in client.get("/emergencies", headers=county.responder()).json()["items"]
            if x["id"] == report_id
        ],
        what="the report in the township's queue",
    )
    assert listed == [report_id]


def _alerts_of(lines: Any, count: int) -> list[tuple[str, dict[str, Any]]]:
    """The next ``count`` alerts of an SSE stream, as (id, data)."""
    found: list[tuple[str, dict[str, Any]]] = []
    event_id = None
    for line in lines:
        if line.startswith("id:"):
            event_id = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            found.append((event_id or "", json.loads(line.split(":", 1)[1])))
            if len(found) == count:
                return found
    raise AssertionError(f"the stream ended after {len(found)} of {count} alerts")


def test_a_console_that_was_away_gets_every_alert_it_missed_once_on_reconnecting(
    client: httpx.Client, api_server: ApiServer, county: County
) -> None:
    """Issue 17.4: alerts are kept in the alert stream; ``Last-Event-ID`` resumes after the last
    alert the device saw, and the same connection then goes on live."""
    me = county.responder()
    with httpx.Client(base_url=api_server.base_url, timeout=30) as sse:
        with sse.stream("GET", "/emergencies/stream", headers=me) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith(": following alerts.")
            first = client.post("/emergencies", json=county.report(), headers=county.reporter()).json()
            [(seen_id, seen)] = _alerts_of(lines, 1)
            assert seen["report_id"] == first["id"] and seen_id == seen["alert_id"]
        # Away: three reports are filed and routed (their alerts go out) while nobody listens.
        missed = [
            client.post("/emergencies", json=county.report(), headers=county.reporter()).json()["id"] for _ in range(3)
        ]
        for report_id in missed:
            routed_at(client, report_id, 0)
        with sse.stream("GET", "/emergencies/stream", headers={**me, "Last-Event-ID": seen_id}) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith(": following alerts.")
            replayed = _alerts_of(lines, 3)
            assert [a["report_id"] for _, a in replayed] == missed, "every missed alert, in order, once"
            assert [i for i, _ in replayed] == [a["alert_id"] for _, a in replayed]
            # And live again on the same connection, with nothing replayed twice.
            late = client.post("/emergencies", json=county.report(), headers=county.reporter()).json()
            [(_, live)] = _alerts_of(lines, 1)
            assert live["report_id"] == late["id"]
