"""POST /visit-logs/batch end to end: a device's backlog in one request, each item answered on its
own (recorded, the same again, or refused as its one-log route refuses it), a bad item sinking
none of the others and leaving no trace, a body that does not validate refused whole."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from domain.visit_log import VisitLog
from domain.visit_task import VisitTask
from tests.api_support import api_server, client, elder, token  # noqa: F401 - fixtures
from tests.e2e.test_api_visits import Scene, as_helper, log_body


def item(task: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return {**log_body(task), "task_id": task["id"], **overrides}


def unplanned(scene: Scene, person: int = 0, **overrides: Any) -> dict[str, Any]:
    links = {"pairing_id": scene.pairing["id"], "person_id": scene.people[person]}
    body = log_body(scene.tasks[0], **{**links, **overrides})
    body["occurred_at"] = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    return body


def stored(care_app: Any, log_id: str) -> list[Any]:
    return list(care_app.events.get(uuid.UUID(log_id)))


def test_a_backlog_is_recorded_item_by_item_and_a_bad_item_sinks_no_other(
    client: httpx.Client, api_server, care_app
) -> None:
    scene = Scene(client, care_app, helpers=1, people=4)
    other = Scene(client, care_app, helpers=1, people=1)  # not the volunteer's: out of scope
    now = datetime.now(UTC)
    open_tasks = [t for t in scene.tasks if datetime.fromisoformat(t["opens_at"]) <= now]
    assert len(open_tasks) == 4
    first = item(open_tasks[0])
    items = [
        first,
        item(open_tasks[1]),
        item(open_tasks[2], findings={"blood_pressure": {"systolic": 80, "diastolic": 95}}),  # 1: refused
        unplanned(scene, 3),
        {**item(open_tasks[3]), "task_id": str(uuid.uuid4())},  # no such task
        item(other.current()),  # a task of a pairing not theirs: as unknown
        unplanned(scene, 0, person_id=other.people[0]),  # a person not theirs
        {**item(open_tasks[0]), "id": str(uuid.uuid4())},  # the task item 0 completes, again
        {**first, "follow_up_notes": "另一条"},  # item 0's id again
        item(open_tasks[3], occurred_at=(now + timedelta(days=2)).isoformat()),  # in the future
    ]
    with as_helper(api_server.base_url, scene.helpers[0]) as c:
        r = c.post("/visit-logs/batch", json={"items": items})
        assert r.status_code == 200, r.text
        answer = r.json()
        got = [(a["index"], a["status"]) for a in answer["items"]]
        assert got == [(0, 201), (1, 201), (2, 422), (3, 201), (4, 404), (5, 404), (6, 422), (7, 409), (8, 409),
                       (9, 422)], answer  # fmt: skip
        assert (answer["recorded"], answer["refused"]) == (3, 7)
        problems = {a["index"]: a["problem"] for a in answer["items"] if a["status"] >= 400}
        assert problems[2]["errors"][0]["field"] == "items[2].findings.blood_pressure"
        assert problems[4]["type"] == "/problems/not-found" and items[4]["task_id"] in problems[4]["detail"]
        assert problems[5]["detail"] == f"no visit task with id {other.current()['id']}"  # as an unknown id
        assert problems[6]["type"] == "/problems/unknown-reference"
        assert problems[6]["errors"][0]["field"] == "items[6].person_id"
        assert problems[7]["type"] == "/problems/closed" and problems[7]["log_id"] == items[0]["id"], problems[7]
        assert problems[8]["errors"][0]["field"] == "items[8].id"
        assert problems[9]["type"] == "/problems/invalid-time" and problems[9]["errors"][0]["field"].startswith(
            "items[9]."
        )
        # The recorded items answer as their one-log route would, and hold what was sent.
        bodies = {a["index"]: a["body"] for a in answer["items"] if a["status"] == 201}
        assert bodies[0]["task_id"] == open_tasks[0]["id"] and bodies[0]["helper_ids"] == [scene.helpers[0]]
        assert bodies[3]["task_id"] is None and bodies[3]["person_id"] == scene.people[3]
        assert bodies[0]["findings"]["notes"] == "降压药快吃完了"
        assert answer["position"] == max(b["position"] for b in bodies.values())
        # Read your writes: every item's log and task is in the views at the batch's position.
        listed = c.get("/visit-logs", params={"pairing_id": scene.pairing["id"], "min_position": answer["position"]})
        assert {row["id"] for row in listed.json()["items"]} == {items[n]["id"] for n in (0, 1, 3)}
    for n in (0, 1):
        task = care_app.load(VisitTask, uuid.UUID(open_tasks[n]["id"]))
        assert (task.status, str(task.log_id)) == ("completed", items[n]["id"])
    # Refused items left nothing: no log under their ids, the tasks they named untouched.
    for n in (2, 4, 5, 6, 7, 9):
        assert stored(care_app, items[n]["id"]) == [], n
    assert care_app.load(VisitTask, uuid.UUID(open_tasks[2]["id"])).status == "scheduled"
    assert care_app.load(VisitTask, uuid.UUID(other.current()["id"])).status == "scheduled"
    assert care_app.load(VisitLog, uuid.UUID(items[0]["id"])).outcome_notes == first["follow_up_notes"]


def test_the_same_batch_again_answers_each_log_as_before_and_writes_nothing(
    client: httpx.Client, api_server, care_app
) -> None:
    scene = Scene(client, care_app, helpers=1, people=3)
    now = datetime.now(UTC)
    items = [item(t) for t in scene.tasks if datetime.fromisoformat(t["opens_at"]) <= now] + [unplanned(scene, 1)]
    with as_helper(api_server.base_url, scene.helpers[0]) as c:
        first = c.post("/visit-logs/batch", json={"items": items}).json()
        assert [a["status"] for a in first["items"]] == [201] * 4
        before = care_app.recorder.max_notification_id()
        again = c.post("/visit-logs/batch", json={"items": items}).json()
        assert [a["status"] for a in again["items"]] == [200] * 4
        assert [a["body"] for a in again["items"]] == [a["body"] for a in first["items"]]
        assert again["recorded"] == 0 and again["position"] == first["position"]
        # A changed log under a taken id: that item alone is refused.
        changed = [items[0], {**items[1], "follow_up_notes": "改过了"}]
        mixed = c.post("/visit-logs/batch", json={"items": changed}).json()
        assert [a["status"] for a in mixed["items"]] == [200, 409]
    assert care_app.recorder.max_notification_id() == before
    # One at a time, each log of the batch answers as recorded already.
    with as_helper(api_server.base_url, scene.helpers[0]) as c:
        r = c.post("/visit-logs", json=items[3])
        assert r.status_code == 200 and r.json() == first["items"][3]["body"]


def test_a_body_that_does_not_validate_is_refused_whole_naming_the_item_and_field(
    client: httpx.Client, api_server, care_app
) -> None:
    scene = Scene(client, care_app, helpers=1, people=2)
    good = item(scene.current(0))
    cases = [
        ({"items": [good, {**item(scene.current(1)), "mode": "by_carrier_pigeon"}]}, "items[1].mode"),
        ({"items": [good, {**item(scene.current(1)), "helpers": []}]}, "items[1].helpers"),
        ({"items": [good, {k: v for k, v in item(scene.current(1)).items() if k != "occurred_at"}]},
         "items[1].occurred_at"),
        ({"items": [good, {**item(scene.current(1)), "task_id": "not-an-id"}]}, "items[1].task_id"),
        ({"items": []}, "items"),
        ({"items": [good] * 1001}, "items"),
        ({"logs": [good]}, "logs"),
    ]  # fmt: skip
    with as_helper(api_server.base_url, scene.helpers[0]) as c:
        for body, field in cases:
            r = c.post("/visit-logs/batch", json=body)
            assert r.status_code == 422, (field, r.text)
            problem = r.json()
            assert r.headers["content-type"].startswith("application/problem+json")
            assert [e["field"] for e in problem["errors"]] == [field], problem
        r = c.post("/visit-logs/batch", content=b"[1, 2", headers={"content-type": "application/json"})
        assert r.status_code == 400
    assert stored(care_app, good["id"]) == []  # nothing of a refused body was written


def test_roles_and_scopes_are_those_of_the_one_log_routes(client: httpx.Client, api_server, care_app) -> None:
    scene = Scene(client, care_app, helpers=1, people=1)
    task = scene.current()
    auditor = {"Authorization": f"Bearer {token('auditor', scene.tree.county['id'])}"}
    r = httpx.post(f"{api_server.base_url}/visit-logs/batch", json={"items": [item(task)]}, headers=auditor)
    assert r.status_code == 403  # auditors never write
    assert httpx.post(f"{api_server.base_url}/visit-logs/batch", json={"items": [item(task)]}).status_code == 401
    outsider = {"Authorization": f"Bearer {token('village_cadre', scene.tree.village2['id'])}"}
    body = {"items": [item(task, helper_ids=scene.helpers)]}
    r = httpx.post(f"{api_server.base_url}/visit-logs/batch", json=body, headers=outsider)
    assert r.status_code == 200 and r.json()["items"][0]["status"] == 404  # another village's task
    cadre = {"Authorization": f"Bearer {token('village_cadre', scene.tree.village['id'])}"}
    r = httpx.post(f"{api_server.base_url}/visit-logs/batch", json=body, headers=cadre)
    assert r.status_code == 200 and r.json()["items"][0]["status"] == 201, r.text
