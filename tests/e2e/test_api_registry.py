"""End to end over HTTP: register the tree, people, helpers, groups and pairings, read them back."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.api_support import Tree, api_server, child, client, elder, helper  # noqa: F401 - fixtures


def test_org_tree_registers_and_lists_children(client: httpx.Client) -> None:
    tree = Tree(client)
    assert tree.village["level"] == "village"
    assert tree.village["path"] == [tree.county["id"], tree.township["id"], tree.village["id"]]
    again = client.post("/org-units", json={"code": tree.county["code"], "name": "测试县", "level": "county"})
    assert again.status_code == 200, "registering the same unit again is idempotent"
    assert again.json()["id"] == tree.county["id"]
    page = client.get(
        "/org-units", params={"parent_id": tree.township["id"], "min_position": tree.village2["position"]}
    )
    assert page.status_code == 200
    assert {u["name"] for u in page.json()["items"]} == {"一村", "二村"}


def test_person_lifecycle_is_recorded_and_read_back(client: httpx.Client) -> None:
    tree = Tree(client)
    r = client.post("/persons", json=child(tree.village["id"]))
    assert r.status_code == 201, r.text
    person = r.json()
    assert r.headers["location"] == f"/persons/{person['id']}"
    assert r.headers["etag"] == '"1"'
    assert person["guardian"]["relation"] == "grandmother"
    assert person["org_path"][-1] == tree.village["id"]

    r = client.post(f"/persons/{person['id']}/risk-tags", json={"tag": "child_in_difficulty"})
    assert r.status_code == 200 and r.json()["risk_tags"] == ["child_in_difficulty"]
    r = client.post(f"/persons/{person['id']}/leave", json={"reason": "随父母进城就读"})
    assert r.status_code == 200 and r.json()["active"] is False
    got = client.get(f"/persons/{person['id']}")
    assert got.json()["version"] == 3 and got.headers["etag"] == '"3"'
    first = client.get(f"/persons/{person['id']}", params={"version": 1}).json()
    assert first["risk_tags"] == [] and first["active"] is True

    listed = client.get(
        "/persons", params={"org_unit_id": tree.township["id"], "status": "left", "min_position": r.json()["position"]}
    ).json()
    assert [p["id"] for p in listed["items"]] == [person["id"]]
    assert listed["total"] == 1


def test_person_registration_is_idempotent_by_client_id(client: httpx.Client) -> None:
    tree = Tree(client)
    body = elder(tree.village["id"], id=str(uuid.uuid4()))
    first = client.post("/persons", json=body)
    second = client.post("/persons", json=body)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"] and second.json()["version"] == 1
    changed = client.post("/persons", json={**body, "name": "别人"})
    assert changed.status_code == 409
    assert changed.headers["content-type"].startswith("application/problem+json")
    assert changed.json()["type"] == "/problems/already-exists"


def test_pairings_of_all_three_shapes(client: httpx.Client) -> None:
    tree = Tree(client)
    v = tree.village["id"]
    people = [client.post("/persons", json=elder(v)).json()["id"] for _ in range(4)]
    helpers = [
        client.post("/helpers", json=helper(v, role=r)).json()["id"]
        for r in ("caring_mother", "volunteer", "assisting_cadre", "village_cadre", "family_doctor")
    ]

    one = client.post(
        "/pairings",
        json={
            "shape": "one_to_one",
            "helper_ids": [helpers[0]],
            "person_ids": [people[0]],
            "cadence": "weekly",
            "visit_mode": "home_visit",
            "starts_on": "2026-03-01",
        },
    )
    many = client.post(
        "/pairings",
        json={
            "shape": "one_to_many",
            "helper_ids": [helpers[1]],
            "person_ids": people[1:3],
            "cadence": "weekly",
            "visit_mode": "home_visit",
            "starts_on": "2026-03-01",
        },
    )
    four = client.post(
        "/pairings",
        json={
            "shape": "many_to_one",
            "helper_ids": helpers[2:5],
            "person_ids": [people[3]],
            "cadence": "monthly",
            "visit_mode": "phone_video",
            "starts_on": "2026-03-01",
        },
    )
    assert [x.status_code for x in (one, many, four)] == [201, 201, 201], [x.text for x in (one, many, four)]

    h = client.get(f"/helpers/{helpers[1]}").json()
    assert h["load"] == 2 and h["pairing_ids"] == [many.json()["id"]]

    added = client.post(f"/pairings/{many.json()['id']}/add-person", json={"person_id": people[0]})
    assert added.status_code == 200 and len(added.json()["person_ids"]) == 3
    assert client.get(f"/helpers/{helpers[1]}").json()["load"] == 3

    ended = client.post(f"/pairings/{one.json()['id']}/end", json={"reason": "志愿者外出务工"})
    assert ended.status_code == 200 and ended.json()["status"] == "ended"
    assert client.get(f"/helpers/{helpers[0]}").json()["load"] == 0

    listed = client.get(
        "/pairings",
        params={"org_unit_id": tree.county["id"], "status": "active", "min_position": ended.json()["position"]},
    ).json()
    assert {p["shape"] for p in listed["items"]} == {"one_to_many", "many_to_one"}
    by_person = client.get(
        "/pairings", params={"person_id": people[3], "min_position": ended.json()["position"]}
    ).json()
    assert [p["id"] for p in by_person["items"]] == [four.json()["id"]]


def test_groups_hold_members(client: httpx.Client) -> None:
    tree = Tree(client)
    a = client.post("/helpers", json=helper(tree.village["id"])).json()["id"]
    b = client.post("/helpers", json=helper(tree.village2["id"])).json()["id"]
    g = client.post("/groups", json={"name": "青年志愿服务队", "org_unit_id": tree.township["id"], "member_ids": [a]})
    assert g.status_code == 201, g.text
    gid = g.json()["id"]
    r = client.post(f"/groups/{gid}/members", json={"helper_id": b})
    assert r.status_code == 200 and r.json()["member_ids"] == [a, b]
    assert client.get(f"/helpers/{b}").json()["group_ids"] == [gid]
    dup = client.post(f"/groups/{gid}/members", json={"helper_id": b})
    assert dup.status_code == 422 and dup.json()["errors"][0]["field"] == "helper_id"
    listed = client.get(
        "/groups", params={"org_unit_id": tree.county["id"], "min_position": r.json()["position"]}
    ).json()
    assert [x["id"] for x in listed["items"]] == [gid]


def test_as_of_reads_both_time_axes(client: httpx.Client) -> None:
    tree = Tree(client)
    p = client.post("/persons", json=elder(tree.village["id"], occurred_at="2026-03-05T09:00:00+08:00")).json()
    r = client.post(f"/persons/{p['id']}/risk-tags", json={"tag": "dibao", "occurred_at": "2026-04-01T10:00:00+08:00"})
    assert r.status_code == 200
    before = client.get(f"/persons/{p['id']}", params={"as_of": "2026-03-20T00:00:00+08:00", "time": "occurred"}).json()
    assert before["risk_tags"] == ["living_alone"]
    known_now = client.get(f"/persons/{p['id']}", params={"as_of": "2099-01-01T00:00:00Z", "time": "recorded"}).json()
    assert sorted(known_now["risk_tags"]) == ["dibao", "living_alone"]
    nothing = client.get(f"/persons/{p['id']}", params={"as_of": "2026-01-01T00:00:00+08:00", "time": "occurred"})
    assert nothing.status_code == 404


def test_health_reports_database_nats_and_views(client: httpx.Client) -> None:
    r = client.get("/health", headers={"Authorization": ""})
    assert r.status_code == 200
    body = r.json()
    assert body["database"]["ok"] is True
    assert body["nats"]["ok"] is True
    assert "events_behind" in body["views"]


def test_openapi_is_published(client: httpx.Client) -> None:
    spec = client.get("/schema/openapi.json").json()
    assert "/persons" in spec["paths"] and "/pairings/{pairing_id}/end" in spec["paths"]


def test_a_write_answers_what_reading_it_back_answers(client: httpx.Client) -> None:
    """Creates and changes answer with the aggregate they saved, not read back from the store:
    the answer must be what a read gives (personal fields, nested records, dates, versions)."""
    from datetime import UTC, datetime, timedelta

    from domain.schedule import PROGRAMME_TZ

    tree = Tree(client)
    village = tree.village["id"]

    def same(path: str, body: dict[str, Any], read: str, status: int = 201) -> dict[str, Any]:
        created = client.post(path, json=body)
        assert created.status_code == status, created.text
        again = client.get(f"{read}/{created.json()['id']}")
        assert again.status_code == 200, again.text
        answer, stored = created.json(), again.json()
        answer.pop("position", None), stored.pop("position", None)
        assert answer == stored, path
        assert created.headers["etag"] == again.headers["etag"]
        return answer

    person = same("/persons", child(village), "/persons")
    elder_person = same("/persons", elder(village), "/persons")
    volunteer = same("/helpers", helper(village), "/helpers")
    group = same("/groups", {"name": "志愿服务队", "org_unit_id": village, "member_ids": [volunteer["id"]]}, "/groups")
    same("/org-units", {"code": tree.village["code"][:9] + "777", "name": "新村", "level": "village",
                        "parent_id": tree.township["id"]}, "/org-units")  # fmt: skip
    starts = (datetime.now(PROGRAMME_TZ).date() - timedelta(days=3)).isoformat()
    pairing = same("/pairings", {"shape": "one_to_many", "helper_ids": [volunteer["id"]], "cadence": "weekly",
                                 "person_ids": [person["id"], elder_person["id"]], "visit_mode": "home_visit",
                                 "starts_on": starts}, "/pairings")  # fmt: skip
    same("/visit-logs", {"id": str(uuid.uuid4()), "occurred_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
                         "mode": "home_visit", "pairing_id": pairing["id"], "person_id": person["id"],
                         "helper_ids": [volunteer["id"]], "services": ["daily_life_care"], "follow_up_needed": True,
                         "findings": {"health": "chronic_stable", "mood": "low", "notes": "降压药快吃完了",
                                      "blood_pressure": {"systolic": 150, "diastolic": 92}},
                         "follow_up_notes": "请家庭医生下周上门"}, "/visit-logs")  # fmt: skip
    report = same("/emergencies", {"category": "neglect", "severity": "high", "person_id": person["id"],
                                   "description": "独自在家三天"}, "/emergencies")  # fmt: skip

    # Changes: the answer is the changed aggregate as a read gives it.
    third = same("/persons", elder(village, name="赵桂兰"), "/persons")
    same(f"/persons/{elder_person['id']}/risk-tags", {"tag": "advanced_age"}, "/persons", 200)
    same(f"/persons/{person['id']}/guardian", {"guardian": {"name": "王爷爷", "relation": "grandfather",
                                                            "phone": "13900139001"}}, "/persons", 200)  # fmt: skip
    same(f"/helpers/{volunteer['id']}/capacity", {"capacity": 6}, "/helpers", 200)
    other = same("/helpers", helper(village, name="钱志愿", phone="13600136001"), "/helpers")
    same(f"/groups/{group['id']}/members", {"helper_id": other["id"]}, "/groups", 200)
    same(f"/pairings/{pairing['id']}/add-person", {"person_id": third["id"]}, "/pairings", 200)
    same(f"/emergencies/{report['id']}/escalate", {"notes": "县里协调"}, "/emergencies", 200)
