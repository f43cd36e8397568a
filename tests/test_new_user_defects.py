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
