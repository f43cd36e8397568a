"""Visits end to end over HTTP: lists, claims under contention (one winner of twenty), the claim
bound, release, group claims, offline-safe visit logs, unplanned visits, emergencies flagged."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from application.care import CareApplication
from domain.base import CommandMeta
from domain.schedule import PROGRAMME_TZ
from domain.visit_log import VisitLog
from domain.visit_task import VisitTask
from tests.api_support import Tree, api_server, client, elder, helper, token  # noqa: F401 - fixtures


def as_helper(base_url: str, helper_id: str, role: str = "volunteer", org: str | None = None) -> httpx.Client:
    return httpx.Client(
        base_url=base_url,
        timeout=30,
        headers={"Authorization": f"Bearer {token(role, org or str(uuid.uuid4()), helper_id)}"},
    )


def system_meta() -> CommandMeta:
    return CommandMeta(
        actor_id="scheduler", actor_role="system", correlation_id=f"t-{uuid.uuid4()}", occurred_at=datetime.now(UTC)
    )


class Scene:
    """A village with ``people`` elders paired with ``helpers`` volunteers, tasks scheduled now."""

    def __init__(
        self, c: httpx.Client, care: CareApplication, *, helpers: int = 2, people: int = 1, group: bool = False
    ) -> None:
        self.tree = Tree(c)
        v = self.tree.village["id"]
        self.people = [c.post("/persons", json=elder(v)).json()["id"] for _ in range(people)]
        self.helpers = [c.post("/helpers", json=helper(v)).json()["id"] for _ in range(helpers)]
        self.members = [c.post("/helpers", json=helper(v)).json()["id"] for _ in range(2 if group else 0)]
        self.group = (
            c.post("/groups", json={"name": "红河村志愿服务队", "org_unit_id": v, "member_ids": self.members}).json()
            if group
            else None
        )
        shape = "many_to_one" if helpers > 1 else ("one_to_many" if people > 1 else "one_to_one")
        body = {
            "shape": shape, "helper_ids": self.helpers, "person_ids": self.people, "cadence": "weekly",
            "visit_mode": "home_visit", "starts_on": (datetime.now(PROGRAMME_TZ).date() - timedelta(days=3)).isoformat(),
        }  # fmt: skip
        if self.group:
            body["group_id"] = self.group["id"]
        r = c.post("/pairings", json=body)
        assert r.status_code == 201, r.text
        self.pairing = r.json()
        outcome = care.schedule_visits(uuid.UUID(self.pairing["id"]), system_meta())
        self.position = outcome.position
        listed = c.get("/visits", params={"pairing_id": self.pairing["id"], "min_position": self.position}).json()
        self.tasks = listed["items"]  # in due order: this period's first
        assert len(self.tasks) == 2 * people

    def current(self, person: int = 0) -> dict[str, Any]:
        return next(t for t in self.tasks if t["person_id"] == self.people[person])


def log_body(task: dict[str, Any], helpers: list[str] | None = None, **overrides: Any) -> dict[str, Any]:
    opens = datetime.fromisoformat(task["opens_at"])
    visited = max(opens + timedelta(seconds=1), datetime.now(UTC) - timedelta(minutes=5))
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "occurred_at": visited.astimezone(PROGRAMME_TZ).isoformat(),
        "mode": "home_visit",
        "findings": {"living_conditions": "adequate", "health": "chronic_stable", "mood": "low", "safety_risks": ["fall"],
                     "needs": ["medical_care"], "blood_pressure": {"systolic": 150, "diastolic": 92}, "notes": "降压药快吃完了"},
        "services": ["daily_life_care", "health_care"],
        "service_items": ["medicine_delivery", "blood_pressure"],
        "follow_up_needed": True,
        "follow_up_notes": "请家庭医生下周上门",
    }  # fmt: skip
    if helpers is not None:
        body["helper_ids"] = helpers
    body.update(overrides)
    return body


def test_twenty_concurrent_claims_of_one_task_give_exactly_one_winner(
    client: httpx.Client, api_server, care_app
) -> None:
    scene = Scene(client, care_app, helpers=20)
    task = scene.current()
    barrier = threading.Barrier(20)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def claim(helper_id: str) -> None:
        with as_helper(api_server.base_url, helper_id) as c:
            barrier.wait(timeout=30)
            r = c.post(f"/visits/{task['id']}/claim", json={})
        with lock:
            answers.append(r)

    threads = [threading.Thread(target=claim, args=(h,)) for h in scene.helpers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in answers if r.status_code == 200]
    losers = [r for r in answers if r.status_code != 200]
    assert len(winners) == 1, [r.text for r in answers]
    winner = winners[0].json()["holder_id"]
    assert {r.status_code for r in losers} == {409} and len(losers) == 19
    assert all(
        r.json()["type"] == "/problems/already-claimed" and r.json()["holder_helper_id"] == winner for r in losers
    )
    stored = care_app.load(VisitTask, uuid.UUID(task["id"]))
    assert (stored.status, str(stored.holder_id)) == ("claimed", winner)
    claims = [e for e in care_app.history(stored.id) if isinstance(e, VisitTask.Claimed)]
    assert len(claims) == 1


def test_who_may_claim_and_release(client: httpx.Client, api_server, care_app) -> None:
    scene = Scene(client, care_app, helpers=2)
    task, base = scene.current(), api_server.base_url
    outsider = client.post("/helpers", json=helper(scene.tree.village["id"])).json()["id"]
    with as_helper(base, outsider) as c:  # not in the pairing: the task is not theirs to see
        r = c.post(f"/visits/{task['id']}/claim", json={})
        assert (r.status_code, r.json()["detail"]) == (404, f"no visit task with id {task['id']}")
        assert (
            c.get("/visits", params={"claimable_by_me": True, "pairing_id": scene.pairing["id"]}).json()["total"] == 0
        )
    with httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {token('volunteer', uuid.uuid4(), 'not-a-helper-id')}"}
    ) as c:
        assert c.post(f"/visits/{task['id']}/claim", json={}).status_code == 404  # owns nothing
    first, second = scene.helpers
    with as_helper(base, first) as c:
        mine = c.get("/visits", params={"claimable_by_me": True, "pairing_id": scene.pairing["id"]}).json()
        assert [row["id"] for row in mine["items"]] == [task["id"]]  # next week's window has not opened
        r = c.post(f"/visits/{task['id']}/claim", json={"helper_id": second})
        assert r.status_code == 403  # a helper claims for themselves only
        r = c.post(f"/visits/{task['id']}/claim", json={})
        assert r.status_code == 200 and r.json()["status"] == "claimed" and r.json()["holder_id"] == first
        assert c.post(f"/visits/{task['id']}/claim", json={}).status_code == 200  # mine already: unchanged
    with as_helper(base, second) as c:
        r = c.post(f"/visits/{task['id']}/release", json={"reason": "not mine"})
        assert (r.status_code, r.json()["type"]) == (403, "/problems/not-holder")
    with as_helper(base, first) as c:
        r = c.post(f"/visits/{task['id']}/release", json={"reason": "老人去女儿家住一周"})
        assert r.status_code == 200 and (r.json()["status"], r.json()["holder_id"]) == ("scheduled", None)
    # A coordinator may claim on a helper's behalf.
    r = client.post(f"/visits/{task['id']}/claim", json={"helper_id": second})
    assert r.status_code == 200 and r.json()["holder_id"] == second


def test_a_helpers_open_claims_are_bounded(client: httpx.Client, api_server, care_app) -> None:
    scene = Scene(client, care_app, helpers=1, people=6)  # this week's and next week's task of six people
    now = datetime.now(UTC)
    this_week = [t for t in scene.tasks if datetime.fromisoformat(t["opens_at"]) <= now]
    assert len(this_week) == 6
    with as_helper(api_server.base_url, scene.helpers[0]) as c:
        answers = [c.post(f"/visits/{t['id']}/claim", json={}) for t in this_week]
        assert [r.status_code for r in answers] == [200] * 5 + [409]
        assert answers[-1].json()["type"] == "/problems/claim-limit" and answers[-1].json()["limit"] == 5
        done = c.post(f"/visits/{this_week[0]['id']}/complete", json=log_body(this_week[0]))
        assert done.status_code == 201, done.text
        freed = c.post(f"/visits/{this_week[-1]['id']}/claim", json={})
        assert freed.status_code == 200  # a slot came free
        theirs = c.get(f"/helpers/{scene.helpers[0]}/visits", params={"min_position": freed.json()["position"]}).json()
        assert theirs["total"] == 6 and {v["status"] for v in theirs["items"]} == {"claimed", "completed"}
    other = client.post("/helpers", json=helper(scene.tree.village["id"])).json()["id"]
    with as_helper(api_server.base_url, other) as c:  # another helper's record is out of a volunteer's scope
        assert c.get(f"/helpers/{scene.helpers[0]}/visits").status_code == 404


def test_a_group_claims_as_a_team_and_assigns_a_member(client: httpx.Client, api_server, care_app) -> None:
    scene = Scene(client, care_app, helpers=2, group=True)
    task, base = scene.current(), api_server.base_url
    lead, member = scene.members
    with as_helper(base, lead) as c:
        r = c.post(f"/visits/{task['id']}/claim", json={"group_id": scene.group["id"]})
        assert r.status_code == 200 and (r.json()["holder_group_id"], r.json()["holder_id"]) == (
            scene.group["id"],
            None,
        )
        r = c.post(f"/visits/{task['id']}/assign", json={"helper_id": member})
        assert r.status_code == 200 and r.json()["holder_id"] == member
    with as_helper(base, scene.helpers[0]) as c:  # a pairing helper outside the group
        r = c.post(f"/visits/{task['id']}/complete", json=log_body(task))
        assert (r.status_code, r.json()["type"]) == (409, "/problems/claimed-by-other")
        assert r.json()["holder_helper_id"] == member
    with as_helper(base, member) as c:
        r = c.post(f"/visits/{task['id']}/complete", json=log_body(task))
        assert r.status_code == 201 and r.json()["helper_ids"] == [member]


def test_a_visit_log_sent_twice_is_recorded_once(client: httpx.Client, api_server, care_app) -> None:
    scene = Scene(client, care_app, helpers=2)
    task, base = scene.current(), api_server.base_url
    went = scene.helpers
    body = log_body(task, went)
    with as_helper(base, went[0]) as c:
        first = c.post(f"/visits/{task['id']}/complete", json=body)
        assert first.status_code == 201, first.text
        assert first.headers["location"] == f"/visit-logs/{body['id']}"
        events = len(care_app.history(uuid.UUID(body["id"]))) + len(care_app.history(uuid.UUID(task["id"])))
        again = c.post(f"/visits/{task['id']}/complete", json=body)  # the phone did not see the answer
        assert again.status_code == 200 and again.json() == first.json()
        assert len(care_app.history(uuid.UUID(body["id"]))) + len(care_app.history(uuid.UUID(task["id"]))) == events
        changed = c.post(f"/visits/{task['id']}/complete", json={**body, "follow_up_notes": "无"})
        assert (changed.status_code, changed.json()["type"]) == (409, "/problems/already-exists")
        other = c.post(f"/visits/{task['id']}/complete", json=log_body(task, went))
        assert (other.status_code, other.json()["type"]) == (409, "/problems/closed")
    log = first.json()
    assert datetime.fromisoformat(log["visited_at"]) == datetime.fromisoformat(body["occurred_at"])
    assert (log["task_id"], log["person_id"], log["helper_ids"]) == (task["id"], scene.people[0], went)
    assert log["findings"]["blood_pressure"] == {"systolic": 150, "diastolic": 92}
    stored = client.get(f"/visits/{task['id']}").json()
    assert (stored["status"], stored["log_id"], stored["completed_by"]) == ("completed", body["id"], went)
    assert client.get(f"/visits/{task['id']}", params={"version": 1}).json()["status"] == "scheduled"
    assert client.get(f"/visit-logs/{body['id']}").json()["follow_up_notes"] == "请家庭医生下周上门"
    listed = client.get("/visit-logs", params={"helper_id": went[1], "min_position": log["position"]}).json()
    assert [row["id"] for row in listed["items"]] == [body["id"]] and "findings" not in listed["items"][0]
    done = client.get(
        "/visits",
        params={"org_unit_id": scene.tree.village["id"], "status": "completed", "min_position": log["position"]},
    ).json()
    assert [row["id"] for row in done["items"]] == [task["id"]]


def test_a_log_is_refused_outside_its_window_or_in_the_future(client: httpx.Client, api_server, care_app) -> None:
    scene = Scene(client, care_app, helpers=2)
    task = scene.current()
    with as_helper(api_server.base_url, scene.helpers[0]) as c:
        early = (datetime.fromisoformat(task["opens_at"]) - timedelta(hours=1)).isoformat()
        r = c.post(f"/visits/{task['id']}/complete", json=log_body(task, occurred_at=early))
        assert (r.status_code, r.json()["type"], r.json()["errors"][0]["field"]) == (
            422,
            "/problems/outside-window",
            "occurred_at",
        )
        future = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
        r = c.post(f"/visits/{task['id']}/complete", json=log_body(task, occurred_at=future))
        assert (r.status_code, r.json()["type"]) == (422, "/problems/invalid-time")
        r = c.post(f"/visits/{task['id']}/complete", json=log_body(task, helper_ids=[scene.helpers[1]]))
        assert (r.status_code, r.json()["type"]) == (403, "/problems/not-eligible")  # I must be among who went


def test_an_unplanned_visit_is_linked_to_the_pairing_and_may_raise_an_emergency(
    client: httpx.Client, api_server, care_app
) -> None:
    scene = Scene(client, care_app, helpers=2)
    body = log_body(
        scene.current(), pairing_id=scene.pairing["id"], person_id=scene.people[0], mode="phone_video",
        raise_emergency=True, emergency={"kind": "critical_illness", "description": "电话无人接，邻居说老人摔倒了"},
    )  # fmt: skip
    with as_helper(api_server.base_url, scene.helpers[1]) as c:
        r = c.post("/visit-logs", json=body)
        assert r.status_code == 201, r.text
        assert (r.json()["task_id"], r.json()["pairing_id"], r.json()["emergency"]["kind"]) == (
            None,
            scene.pairing["id"],
            "critical_illness",
        )
        assert c.post("/visit-logs", json=body).status_code == 200
    history = care_app.history(uuid.UUID(body["id"]))
    assert [type(e).__qualname__ for e in history] == ["VisitLog.Recorded", "VisitLog.EmergencyFlagged"]
    assert care_app.load(VisitLog, uuid.UUID(body["id"])).raise_emergency is True
    stranger = client.post("/persons", json=elder(scene.tree.village["id"])).json()["id"]
    r = client.post(
        "/visit-logs", json={**body, "id": str(uuid.uuid4()), "person_id": stranger, "helper_ids": scene.helpers}
    )
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "person_id")
    r = client.post(
        "/visit-logs", json={**body, "id": str(uuid.uuid4()), "raise_emergency": False, "helper_ids": scene.helpers}
    )
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "emergency_kind")


def test_visit_lists_filter_by_unit_status_and_due_date(client: httpx.Client, api_server, care_app) -> None:
    scene = Scene(client, care_app, helpers=2, people=1)
    tree = scene.tree
    this_week, next_week = scene.tasks
    page = client.get("/visits", params={"org_unit_id": tree.township["id"], "status": "scheduled"}).json()
    assert {row["id"] for row in page["items"]} == {this_week["id"], next_week["id"]}
    soon = client.get(
        "/visits", params={"org_unit_id": tree.township["id"], "due_before": next_week["period_start"]}
    ).json()
    assert [row["id"] for row in soon["items"]] == [this_week["id"]]
    assert client.get("/visits", params={"org_unit_id": tree.village2["id"]}).json()["total"] == 0
    assert client.get(f"/visits/{uuid.uuid4()}").status_code == 404
    r = client.get("/visits", params={"status": "lost"})
    assert r.status_code == 400 and date.fromisoformat(this_week["due_until"]) < date.fromisoformat(
        next_week["due_until"]
    )
    with httpx.Client(
        base_url=api_server.base_url, headers={"Authorization": f"Bearer {token('auditor', tree.county['id'])}"}
    ) as c:
        assert c.post(f"/visits/{this_week['id']}/claim", json={"helper_id": scene.helpers[0]}).status_code == 403
        assert c.get(f"/visits/{this_week['id']}").status_code == 200


def test_a_task_is_claimed_only_once_its_window_has_opened(client: httpx.Client, api_server, care_app) -> None:
    scene = Scene(client, care_app, helpers=1, group=True)
    this_week, next_week = scene.tasks
    opens = datetime.fromisoformat(next_week["opens_at"])
    assert opens > datetime.now(UTC)
    with as_helper(api_server.base_url, scene.helpers[0]) as c:
        mine = c.get("/visits", params={"claimable_by_me": True, "pairing_id": scene.pairing["id"]}).json()
        assert [row["id"] for row in mine["items"]] == [this_week["id"]]
        r = c.post(f"/visits/{next_week['id']}/claim", json={})
        assert (r.status_code, r.json()["type"]) == (409, "/problems/not-open-yet"), r.text
        assert datetime.fromisoformat(r.json()["opens_at"]) == opens
    r = client.post(f"/visits/{next_week['id']}/claim", json={"group_id": scene.group["id"]})  # nor for a group
    assert (r.status_code, r.json()["type"]) == (409, "/problems/not-open-yet")
    stored = care_app.load(VisitTask, uuid.UUID(next_week["id"]))
    assert (stored.status, stored.version) == ("scheduled", 1)
    with as_helper(api_server.base_url, scene.helpers[0]) as c:
        r = c.post(f"/visits/{this_week['id']}/claim", json={})
        assert r.status_code == 200
        lapses = datetime.fromisoformat(r.json()["claim_expires_at"])
        assert datetime.fromisoformat(this_week["opens_at"]) < lapses <= datetime.now(UTC) + timedelta(hours=72)
