"""Defects a new user met over HTTP (issue 12), each held where it was seen: a charset named
twice, query errors answered with two statuses, a number read as a time, and Chinese labels of
the vocabularies that the API would not name."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api_support import Tree, api_server, client, elder  # noqa: F401 - fixtures


def test_text_answers_name_their_charset_once(client: httpx.Client) -> None:
    tree = Tree(client)
    person = client.post("/persons", json=elder(tree.village["id"]))
    assert person.status_code == 201, person.text
    at = {"min_position": person.json()["position"]}
    for params in ({**at, "lang": "zh"}, at):
        csv = client.get(f"/supervision/{tree.county['id']}/uncovered.csv", params=params)
        assert csv.status_code == 200, csv.text
        assert csv.headers["content-type"] == "text/csv; charset=utf-8"
    html = client.get(f"/audit/streams/{person.json()['id']}/export", params={"format": "html"})
    assert html.status_code == 200, html.text
    assert html.headers["content-type"] == "text/html; charset=utf-8"


def _query_problem(r: httpx.Response, field: str) -> dict[str, Any]:
    assert r.status_code == 400, (r.request.url, r.status_code, r.text)
    body = r.json()
    assert body["type"] == "/problems/validation-error"
    assert [(e["field"], e["in"]) for e in body["errors"]] == [(field, "query")]
    return body


def test_every_query_error_answers_400(client: httpx.Client) -> None:
    beyond = _query_problem(client.get("/persons", params={"min_position": 10**9}), "min_position")
    assert "beyond the last recorded position" in beyond["detail"]
    _query_problem(client.get("/persons", params={"limit": -1}), "limit")
    _query_problem(client.get("/visits", params={"min_position": 10**9}), "min_position")
    _query_problem(client.get("/persons", params={"min_position": "soon"}), "min_position")


def test_a_number_is_not_taken_for_a_time(client: httpx.Client) -> None:
    tree = Tree(client)
    before = client.get("/persons", params={"org_unit_id": tree.village["id"]}).json()["total"]
    r = client.post("/persons", json=elder(tree.village["id"], occurred_at=12345))
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["type"] == "/problems/validation-error"
    assert [(e["field"], e["in"]) for e in body["errors"]] == [("occurred_at", "body")]
    assert "Expected `datetime | null`, got `int`" in body["errors"][0]["reason"]
    # Nor is text taken for a number or a truth value: JSON types are the schema's.
    person = client.post("/persons", json=elder(tree.village["id"])).json()
    r = client.post(f"/persons/{person['id']}/risk-tags", json={"tag": "dibao", "occurred_at": 1.5e9})
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "occurred_at")
    r = client.post("/persons", json=elder(tree.village["id"], birth_date=19410506))
    assert (r.status_code, r.json()["errors"][0]["field"]) == (422, "birth_date")
    after = client.get(
        "/persons", params={"org_unit_id": tree.village["id"], "min_position": person["position"]}
    ).json()
    assert after["total"] == before + 1  # only the good one was written


def test_the_vocabularies_list_each_code_with_its_chinese_label(api_server) -> None:
    schema = httpx.get(api_server.base_url + "/schema/openapi.json", timeout=30).json()
    enums = {s["title"]: s for s in schema["components"]["schemas"].values() if "enum" in s and "title" in s}
    category = enums["ServiceCategory"]
    assert "`daily_life_care` 生活照料" in category["description"] and "`legal_aid` 法律援助" in category["description"]
    assert "`home_visit` 上门入户" in enums["VisitMode"]["description"]
    assert "`living_alone` 独居" in enums["RiskTag"]["description"]
    for title in ("Cadence", "Category", "Severity", "EmergencyKind", "ServiceItem", "HelperRole", "PairingShape"):
        for code in enums[title]["enum"]:
            assert f"`{code}` " in enums[title]["description"], (title, code)


def test_a_label_sent_for_a_code_is_answered_with_the_code(client: httpx.Client) -> None:
    tree = Tree(client)
    r = client.post(
        "/helpers", json={"role": "村干部", "name": "张村长", "phone": "13600136000", "org_unit_id": tree.village["id"]}
    )
    assert r.status_code == 422, r.text
    [error] = r.json()["errors"]
    assert error["field"] == "role" and "村干部 is the label of `village_cadre`" in error["reason"]
