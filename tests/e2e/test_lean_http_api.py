"""The benchmarks' lean HTTP client (bench/lean_http.py) against the real API: on one keep-alive
connection it reads the same answers httpx reads (created, refused, malformed, unknown, read back),
and bench.api_ingest's checks with it pass a household batch and catch a wrong answer."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import httpx
import pytest

from bench.api_ingest import (
    Bodies,
    Phase,
    Prepared,
    RequestFailed,
    encode_body,
    lean_batch,
    prepared_batch,
    refused_body,
)
from bench.lean_http import LeanConnection
from tests.api_support import ApiServer, Tree, api_server, auth, client  # noqa: F401 - fixtures


async def test_a_keep_alive_sequence_reads_what_httpx_reads(api_server: ApiServer, client: httpx.Client) -> None:
    tree = Tree(client)
    village = tree.village["id"]
    headers = auth()
    c = await LeanConnection.to(api_server.base_url, headers)
    try:
        child = Bodies(3).child(village)
        created = await c.send(c.request_bytes("POST", "/persons", encode_body(child)))
        refused = await c.send(c.request_bytes("POST", "/persons", encode_body(refused_body(village))))
        malformed = await c.send(c.request_bytes("POST", "/persons", b'{"kind": "elder",'))
        unknown = await c.send(c.request_bytes("GET", f"/persons/{uuid.uuid4()}"))
        read = await c.send(c.request_bytes("GET", f"/persons/{child['id']}"))
        again = await c.send(c.request_bytes("GET", f"/persons/{child['id']}"))
    finally:
        await c.close()
    assert c.reconnects == 0 and all(r.keep_alive for r in (created, refused, malformed, unknown, read, again))

    assert created.status == 201 and json.loads(created.body)["id"] == child["id"]
    assert created.header("content-type") == b"application/json"

    # The same refusals through httpx: status, media type and problem body alike.
    through_httpx = [
        client.post("/persons", json=refused_body(village)),
        client.post("/persons", content=b'{"kind": "elder",', headers={"content-type": "application/json"}),
        client.get(f"/persons/{uuid.uuid4()}"),
        client.get(f"/persons/{child['id']}"),
    ]
    for lean, theirs in zip((refused, malformed, unknown, read), through_httpx, strict=True):
        assert lean.status == theirs.status_code
        assert lean.header("content-type") == theirs.headers["content-type"].encode()
        assert int(lean.header("content-length") or -1) == len(lean.body)
    assert [refused.status, malformed.status, unknown.status, read.status] == [422, 400, 404, 200]
    problem = json.loads(refused.body)
    assert problem["status"] == 422 and "sex" in [e["field"] for e in problem["errors"]]
    assert json.loads(refused.body) == through_httpx[0].json()
    assert json.loads(malformed.body)["status"] == 400 and json.loads(unknown.body)["status"] == 404
    assert json.loads(read.body) == json.loads(again.body) == through_httpx[3].json()


async def test_ingest_checks_pass_a_household_batch_and_catch_a_wrong_answer(
    api_server: ApiServer, client: httpx.Client
) -> None:
    tree = Tree(client)
    c = await LeanConnection.to(api_server.base_url, auth())
    phase = Phase("test", 1)
    try:
        batch = prepared_batch(c, Bodies(5), tree.village["id"])
        await lean_batch(c, batch, phase)
        assert sum(len(v) for v in phase.latencies.values()) == 10 and not phase.failures
        pairing = client.get(f"/pairings/{batch[-1].id}")
        assert pairing.status_code == 200, pairing.text

        # An answer naming another id than the body chose is a failure, counted and raised.
        another = prepared_batch(c, Bodies(6), tree.village["id"])[0]
        with pytest.raises(RequestFailed, match="answered id"):
            await lean_batch(c, [replace(another, id=str(uuid.uuid4()))], phase)
        # A refusal likewise, with its status and problem.
        refused = Prepared(
            "register_child", c.request_bytes("POST", "/persons", encode_body(refused_body(tree.village["id"]))), ""
        )
        with pytest.raises(RequestFailed, match="HTTP 422"):
            await lean_batch(c, [refused], phase)
    finally:
        await c.close()
    assert phase.errors["register_elder"] == 1 and phase.errors["register_child"] == 1 and len(phase.failures) == 2
