"""Every bad request gets a 4xx problem-details answer naming the field and the reason, and
writes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.api_support import Tree, api_server, auth, child, client, elder, helper  # noqa: F401 - fixtures


def assert_problem(r: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["type"].startswith("/problems/") and body["title"] and body["detail"]
    if field is not None:
        assert field in [e["field"] for e in body.get("errors", [])], body
    return body


def event_count(client: httpx.Client) -> int:
    return client.get("/health").json()["database"]["position"]


@pytest.fixture
def tree(client: httpx.Client) -> Tree:
    return Tree(client)


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"name": ""}, 422, "name"),
        ({"name": 12}, 422, "name"),
        ({"kind": "adult"}, 422, "kind"),
        ({"birth_date": "1941-13-01"}, 422, "birth_date"),
        ({"birth_date": "2020-01-01"}, 422, "birth_date"),  # an elder is 60 or more
        ({"id_number": "53042819410506123"}, 422, "id_number"),  # 17 characters
        ({"id_number": "530428194105061231"}, 422, "id_number"),  # wrong check character (0 is right)
        ({"risk_tags": ["rich"]}, 422, "risk_tags[0]"),
        ({"risk_tags": ["child_in_difficulty"]}, 422, "risk_tags[0]"),  # children only
        ({"guardian": {"name": "王奶奶", "relation": "grandmother"}}, 422, "guardian"),  # children only
        ({"village_id": str(uuid.uuid4())}, 422, "village_id"),
        ({"occurred_at": "2099-01-01T00:00:00Z"}, 422, "occurred_at"),
        ({"occurred_at": "1990-01-01T00:00:00Z"}, 422, "occurred_at"),
        ({"occurred_at": "2026-01-01T00:00:00"}, 422, "occurred_at"),  # no offset
        ({"actor_id": "someone-else"}, 422, "actor_id"),  # mass assignment of the actor
        (
            {"absent_children": [{"name": "李强", "relation": "son", "phone": "call me"}]},
            422,
            "absent_children[0].phone",
        ),
    ],
)
def test_bad_person_is_refused_with_the_field(
    client: httpx.Client, tree: Tree, change: dict[str, Any], status: int, field: str
) -> None:
    before = event_count(client)
    r = client.post("/persons", json={**elder(tree.village["id"]), **change})
    assert_problem(r, status, field)
    assert event_count(client) == before, "a refused command writes nothing"


def test_person_in_a_township_is_refused(client: httpx.Client, tree: Tree) -> None:
    assert_problem(client.post("/persons", json=child(tree.township["id"])), 422, "village_id")


def test_malformed_json_and_wrong_shapes(client: httpx.Client) -> None:
    r = client.post("/persons", content=b'{"kind": "elder",', headers={"content-type": "application/json"})
    assert_problem(r, 400)
    assert_problem(client.post("/persons", content=b"\xff\xfe\x00", headers={"content-type": "application/json"}), 400)
    assert_problem(client.post("/persons", json=[]), 422)


def test_unknown_ids_answer_404(client: httpx.Client) -> None:
    for path in ("/persons", "/helpers", "/groups", "/pairings", "/org-units"):
        body = assert_problem(client.get(f"{path}/{uuid.uuid4()}"), 404)
        assert body["instance"].startswith(path)
    assert_problem(client.get("/persons/not-a-uuid"), 404)
    assert_problem(client.get("/persons/..%2F..%2Fetc%2Fpasswd"), 404)


def test_a_helper_id_is_not_a_person(client: httpx.Client, tree: Tree) -> None:
    h = client.post("/helpers", json=helper(tree.village["id"])).json()
    assert_problem(client.get(f"/persons/{h['id']}"), 404)


def test_pairing_shape_errors_name_the_field(client: httpx.Client, tree: Tree) -> None:
    v = tree.village["id"]
    p1, p2 = (client.post("/persons", json=elder(v)).json()["id"] for _ in range(2))
    h1, h2 = (client.post("/helpers", json=helper(v)).json()["id"] for _ in range(2))
    base = {"cadence": "weekly", "visit_mode": "home_visit", "starts_on": "2026-03-01"}
    cases = [
        ({"shape": "one_to_one", "helper_ids": [h1, h2], "person_ids": [p1]}, "helper_ids"),
        ({"shape": "one_to_one", "helper_ids": [h1], "person_ids": [p1, p2]}, "person_ids"),
        ({"shape": "one_to_many", "helper_ids": [h1], "person_ids": [p1]}, "person_ids"),
        ({"shape": "many_to_one", "helper_ids": [h1], "person_ids": [p1]}, "helper_ids"),
        ({"shape": "one_to_many", "helper_ids": [h1], "person_ids": [p1, p1]}, "person_ids[1]"),
        ({"shape": "one_to_one", "helper_ids": [h1], "person_ids": [str(uuid.uuid4())]}, "person_ids[0]"),
        ({"shape": "triangle", "helper_ids": [h1], "person_ids": [p1]}, "shape"),
        ({"shape": "one_to_one", "helper_ids": [], "person_ids": [p1]}, "helper_ids"),
    ]
    before = event_count(client)
    for body, field in cases:
        r = client.post("/pairings", json={**base, **body})
        assert r.status_code in (409, 422), (body, r.text)
        assert_problem(r, r.status_code, field)
    assert event_count(client) == before


def test_helper_capacity_is_enforced(client: httpx.Client, tree: Tree) -> None:
    v = tree.village["id"]
    h = client.post("/helpers", json=helper(v, capacity=2)).json()["id"]
    people = [client.post("/persons", json=elder(v)).json()["id"] for _ in range(3)]
    base = {"cadence": "weekly", "visit_mode": "home_visit", "starts_on": "2026-03-01", "helper_ids": [h]}
    assert client.post("/pairings", json={**base, "shape": "one_to_many", "person_ids": people[:2]}).status_code == 201
    body = assert_problem(
        client.post("/pairings", json={**base, "shape": "one_to_one", "person_ids": people[2:]}), 409, "helper_ids[0]"
    )
    assert body["type"] == "/problems/over-capacity" and body["capacity"] == 2


def test_ended_pairing_accepts_no_changes(client: httpx.Client, tree: Tree) -> None:
    v = tree.village["id"]
    p = client.post("/persons", json=elder(v)).json()["id"]
    h = client.post("/helpers", json=helper(v)).json()["id"]
    pairing = client.post(
        "/pairings",
        json={
            "shape": "one_to_one",
            "helper_ids": [h],
            "person_ids": [p],
            "cadence": "weekly",
            "visit_mode": "home_visit",
            "starts_on": "2026-03-01",
        },
    ).json()
    assert client.post(f"/pairings/{pairing['id']}/end", json={"reason": "结束"}).status_code == 200
    r = client.post(f"/pairings/{pairing['id']}/cadence", json={"cadence": "monthly", "visit_mode": "phone_video"})
    assert_problem(r, 409)


def test_authentication_and_roles(client: httpx.Client, tree: Tree) -> None:
    r = client.get("/persons", headers={"Authorization": ""})
    assert_problem(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert_problem(client.get("/persons", headers={"Authorization": "Bearer not.a.token"}), 401)
    r = client.post("/persons", json=elder(tree.village["id"]), headers=auth("auditor", tree.county["id"]))
    assert_problem(r, 403)
    r = client.post(
        "/org-units",
        json={"code": "530000000001", "name": "x", "level": "county"},
        headers=auth("volunteer", tree.village["id"]),
    )
    assert_problem(r, 403)


def test_if_match_must_be_a_version(client: httpx.Client, tree: Tree) -> None:
    p = client.post("/persons", json=elder(tree.village["id"])).json()
    r = client.post(f"/persons/{p['id']}/risk-tags", json={"tag": "dibao"}, headers={"If-Match": "yesterday"})
    assert_problem(r, 400, "If-Match")


def test_paging_limits_are_checked(client: httpx.Client) -> None:
    assert_problem(client.get("/persons", params={"limit": 0}), 400, "limit")
    assert_problem(client.get("/persons", params={"limit": "many"}), 400, "limit")
    assert_problem(client.get("/persons", params={"min_position": 10**15}), 400, "min_position")


def test_oversized_body_is_refused(client: httpx.Client) -> None:
    r = client.post(
        "/persons", content=b'{"name": "' + b"x" * 400_000 + b'"}', headers={"content-type": "application/json"}
    )
    assert_problem(r, 413)
