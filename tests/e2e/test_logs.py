"""Logs never carry personal data: names, ID numbers and phone numbers stay out of them."""

from __future__ import annotations

import httpx
import structlog.testing

from tests.api_support import Tree, api_server, child, client  # noqa: F401 - fixtures


def test_registering_and_failing_logs_no_personal_data(client: httpx.Client) -> None:
    tree = Tree(client)
    secret_name, secret_id, secret_phone = "欧阳秘密", "530428201609010026", "13912345678"
    with structlog.testing.capture_logs() as logs:
        body = child(
            tree.village["id"],
            name=secret_name,
            id_number=secret_id,
            guardian={"name": "欧阳奶奶", "relation": "grandmother", "phone": secret_phone},
        )
        r = client.post("/persons", json=body)
        assert r.status_code == 201, r.text
        client.post("/persons", json={**body, "birth_date": "1900-01-01"})  # refused: an error path too
        client.get("/persons", params={"min_position": r.json().get("position") or 0})
    assert logs, "the requests were logged"
    text = repr(logs)
    for secret in (secret_name, secret_id, secret_phone, "欧阳奶奶"):
        assert secret not in text
    assert any(entry.get("event") == "request" and entry.get("status") in (200, 201) for entry in logs)


def test_a_request_line_logs_ids_and_route_words_only(client: httpx.Client) -> None:
    """Paths carry ids, but a path parameter taken as text (an org unit by id or code) holds
    whatever a client puts there: a name or a phone number typed in the wrong box."""
    tree = Tree(client)
    with structlog.testing.capture_logs() as logs:
        for typed in ("欧阳秘密", "13912345678", "a%0Aforged=1"):
            assert client.get(f"/supervision/{typed}").status_code in (400, 404)
        settled = {"min_position": tree.village2["position"]}
        assert client.get(f"/supervision/{tree.village['code']}/uncovered.csv", params=settled).status_code == 200
        assert client.get(f"/persons/{tree.village['id']}").status_code == 404
    paths = [entry["path"] for entry in logs if entry.get("event") == "request"]
    text = repr(paths)
    assert "欧阳秘密" not in text and "13912345678" not in text and "forged" not in text, paths
    assert f"/supervision/{tree.village['code']}/uncovered.csv" in paths and f"/persons/{tree.village['id']}" in paths
