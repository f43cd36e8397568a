"""Defects a new user met over HTTP (issue 12), each held where it was seen: a charset named
twice, query errors answered with two statuses, a number read as a time, and Chinese labels of
the vocabularies that the API would not name."""

from __future__ import annotations

import uuid
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
