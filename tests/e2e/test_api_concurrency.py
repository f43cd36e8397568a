"""Two requests really at once: exactly one wins, the other gets 409 with the current version."""

from __future__ import annotations

import threading

import httpx

from tests.api_support import Tree, api_server, client, elder, helper  # noqa: F401 - fixtures


def race(
    api_base: str, headers: dict[str, str], requests: list[tuple[str, dict]], extra: dict[str, str]
) -> list[httpx.Response]:
    barrier = threading.Barrier(len(requests))
    results: list[httpx.Response | None] = [None] * len(requests)

    def go(i: int, path: str, body: dict) -> None:
        with httpx.Client(base_url=api_base, headers={**headers, **extra}, timeout=30) as c:
            barrier.wait()
            results[i] = c.post(path, json=body)

    threads = [threading.Thread(target=go, args=(i, p, b)) for i, (p, b) in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r for r in results if r is not None]


def test_conflicting_updates_with_if_match_give_one_success_and_one_409(client: httpx.Client, api_server) -> None:
    tree = Tree(client)
    p = client.post("/persons", json=elder(tree.village["id"])).json()
    version = p["version"]
    for _ in range(3):  # repeat: a single lucky interleaving proves little
        rs = race(
            api_server.base_url,
            dict(client.headers),
            [(f"/persons/{p['id']}/risk-tags", {"tag": "dibao"}), (f"/persons/{p['id']}/risk-tags", {"tag": "tekun"})],
            {"If-Match": f'"{version}"'},
        )
        codes = sorted(r.status_code for r in rs)
        assert codes == [200, 409], [r.text for r in rs]
        loser = next(r for r in rs if r.status_code == 409)
        winner = next(r for r in rs if r.status_code == 200)
        assert loser.json()["type"] == "/problems/version-conflict"
        assert loser.json()["current_version"] == winner.json()["version"] == version + 1
        assert loser.headers["etag"] == f'"{version + 1}"'
        client.post(f"/persons/{p['id']}/risk-tags/remove", json={"tag": "dibao"})
        client.post(f"/persons/{p['id']}/risk-tags/remove", json={"tag": "tekun"})
        version = client.get(f"/persons/{p['id']}").json()["version"]


def test_same_person_added_twice_at_once_is_added_once(client: httpx.Client, api_server) -> None:
    tree = Tree(client)
    v = tree.village["id"]
    people = [client.post("/persons", json=elder(v)).json()["id"] for _ in range(3)]
    h = client.post("/helpers", json=helper(v)).json()["id"]
    pairing = client.post(
        "/pairings",
        json={
            "shape": "one_to_many",
            "helper_ids": [h],
            "person_ids": people[:2],
            "cadence": "weekly",
            "visit_mode": "home_visit",
            "starts_on": "2026-03-01",
        },
    ).json()
    rs = race(
        api_server.base_url,
        dict(client.headers),
        [(f"/pairings/{pairing['id']}/add-person", {"person_id": people[2]})] * 2,
        {},
    )
    assert sorted(r.status_code for r in rs) == [200, 409], [r.text for r in rs]
    assert next(r for r in rs if r.status_code == 409).json()["type"] == "/problems/duplicate-member"
    final = client.get(f"/pairings/{pairing['id']}").json()
    assert final["person_ids"].count(people[2]) == 1
    assert client.get(f"/helpers/{h}").json()["load"] == 3


def test_capacity_holds_under_concurrent_pairings(client: httpx.Client, api_server) -> None:
    tree = Tree(client)
    v = tree.village["id"]
    h = client.post("/helpers", json=helper(v, capacity=3)).json()["id"]
    people = [client.post("/persons", json=elder(v)).json()["id"] for _ in range(6)]
    rs = race(
        api_server.base_url,
        dict(client.headers),
        [
            (
                "/pairings",
                {
                    "shape": "one_to_one",
                    "helper_ids": [h],
                    "person_ids": [p],
                    "cadence": "weekly",
                    "visit_mode": "home_visit",
                    "starts_on": "2026-03-01",
                },
            )
            for p in people
        ],
        {},
    )
    codes = sorted(r.status_code for r in rs)
    assert codes == [201, 201, 201, 409, 409, 409], [r.text for r in rs]
    assert client.get(f"/helpers/{h}").json()["load"] == 3
