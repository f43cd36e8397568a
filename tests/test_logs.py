"""Logs never carry personal data: names, ID numbers and phone numbers stay out of them."""

from __future__ import annotations

import httpx
import structlog.testing

from tests.api_support import Tree, api_server, child, client  # noqa: F401 - fixtures


def test_registering_and_failing_logs_no_personal_data(client: httpx.Client) -> None:
    tree = Tree(client)
    secret_name, secret_id, secret_phone = "欧阳秘密", "530428201609010026", "13912345678"
    with structlog.testing.capture_logs() as logs:
        body = child(tree.village["id"], name=secret_name, id_number=secret_id,
                     guardian={"name": "欧阳奶奶", "relation": "grandmother", "phone": secret_phone})
        r = client.post("/persons", json=body)
        assert r.status_code == 201, r.text
        client.post("/persons", json={**body, "birth_date": "1900-01-01"})  # refused: an error path too
        client.get("/persons", params={"min_position": r.json().get("position") or 0})
    assert logs, "the requests were logged"
    text = repr(logs)
    for secret in (secret_name, secret_id, secret_phone, "欧阳奶奶"):
        assert secret not in text
    assert any(entry.get("event") == "request" and entry.get("status") in (200, 201) for entry in logs)
