"""Checkpoints and proofs over HTTP: what an auditor downloads verifies with the standalone
verifier and the public key from the same API; sizes the tree has not reached are a 422 naming
the field."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from domain.vocabulary import ActorRole
from infrastructure import verifier
from infrastructure.verifier import PublicKey
from tests.api_support import ApiServer, Tree, auth, elder
from tests.conftest import create_database, drop_database


@pytest.fixture(scope="module")
def server(pg_base_url: str, nats_url: str) -> Iterator[ApiServer]:
    url = create_database(pg_base_url, prefix="guanai_test_proofs_api")
    api = ApiServer(url, nats_url).start()
    try:
        yield api
    finally:
        api.stop()
        drop_database(pg_base_url, url)


@pytest.fixture(scope="module")
def person(server: ApiServer) -> dict[str, Any]:
    with httpx.Client(base_url=server.base_url, headers=auth(ActorRole.ADMINISTRATOR), timeout=60) as admin:
        tree = Tree(admin)
        created = admin.post("/persons", json=elder(tree.village["id"]))
        assert created.status_code == 201, created.text
        admin.post(f"/persons/{created.json()['id']}/risk-tags", json={"tag": "advanced_age"}).raise_for_status()
        return {"id": created.json()["id"], "county": tree.county["id"]}


def test_an_auditor_downloads_a_checkpoint_and_proofs_that_verify(server: ApiServer, person: dict[str, Any]) -> None:
    with httpx.Client(
        base_url=server.base_url, headers=auth(ActorRole.AUDITOR, person["county"]), timeout=60
    ) as auditor:
        key = PublicKey.from_document(auditor.get("/audit/public-key").raise_for_status().json())
        first = auditor.get("/audit/checkpoints/latest").raise_for_status().json()
        verifier.verify_checkpoint(first, key)
        proofs = auditor.get(f"/audit/streams/{person['id']}/proofs").raise_for_status().json()
        assert proofs["checkpoint"]["size"] >= first["size"] and len(proofs["leaves"]) == 2
        h = verifier.hash_function(key.suite)
        root = bytes.fromhex(proofs["checkpoint"]["root"])
        for leaf in proofs["leaves"]:
            data = verifier.leaf_bytes(
                leaf["position"],
                leaf["recorded_us"],
                leaf["version"],
                person["id"],
                leaf["topic"],
                base64.b64decode(leaf["stored"]),
            )
            verifier.verify_inclusion(
                h, leaf["index"], leaf["tree_size"], verifier.leaf_hash(h, data), leaf["proof"], root
            )
        export = (
            auditor.get(f"/audit/streams/{person['id']}/export", params={"format": "json"}).raise_for_status().json()
        )
        assert verifier.verify_export(export, key) == 2
        consistency = auditor.get("/audit/proofs/consistency", params={"from": 1}).raise_for_status().json()
        verifier.verify_extends(consistency["old_checkpoint"], consistency["new_checkpoint"], consistency["proof"], key)


def test_a_size_beyond_the_tree_is_a_422_naming_the_field(server: ApiServer, person: dict[str, Any]) -> None:
    with httpx.Client(
        base_url=server.base_url, headers=auth(ActorRole.AUDITOR, person["county"]), timeout=60
    ) as auditor:
        size = auditor.get("/audit/checkpoints/latest").raise_for_status().json()["size"]
        for path, params, field in (
            (f"/audit/streams/{person['id']}/proofs", {"size": size + 1000}, "size"),
            ("/audit/proofs/consistency", {"from": size + 1000}, "from"),
            ("/audit/proofs/consistency", {"from": 1, "to": size + 1000}, "to"),
        ):
            answer = auditor.get(path, params=params)
            assert answer.status_code == 422, answer.text
            problem = answer.json()
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert problem["errors"][0]["field"] == field and "tree" in problem["detail"]
        assert auditor.get("/audit/proofs/consistency", params={"from": -1}).status_code == 400
