"""The bad input catalogue: hostile requests against every endpoint that exists, each answered
4xx with problem details and nothing written (the event store's position does not move), and
hostile strings that are legal stored and returned literally.

The endpoints come from the running server's OpenAPI document, so a new endpoint is covered the
day it is added; the mass-assignment rule is checked on every request body type in the code."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
from litestar.routes import HTTPRoute

from api.security import MAX_DEPTH
from api.visit_batches import MAX_BATCH_BYTES
from guanai import bootstrap
from infrastructure.settings import Settings
from tests.api_support import SECRET, ApiServer, Tree, api_server, child, client, elder, helper  # noqa: F401

JSON = {"content-type": "application/json"}
STREAMS = {"/emergencies/stream"}  # server-sent events: they do not end, and take no input


def assert_problem(r: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert r.status_code in statuses, (r.request.method, r.request.url, r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/problem+json"), r.text[:300]
    body = r.json()
    assert body["status"] == r.status_code and body["type"].startswith("/problems/") and body["title"]
    return body


def position(c: httpx.Client) -> int:
    return c.get("/health").json()["database"]["position"]


@pytest.fixture(scope="module")
def spec(api_server: ApiServer) -> dict[str, Any]:
    return httpx.get(f"{api_server.base_url}/schema/openapi.json", timeout=30).json()


def operations(spec: dict[str, Any], *, with_body: bool) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if path not in STREAMS and ("requestBody" in op) == with_body:
                found.append((method.upper(), path, op))
    assert found, "the spec lists no operations"
    return found


def fill(path: str, value: str | None = None) -> str:
    return re.sub(r"\{[^}]+\}", lambda _: value or str(uuid.uuid4()), path)


@pytest.fixture
def unmoved(client: httpx.Client) -> Iterator[None]:
    before = position(client)
    yield
    assert position(client) == before, "a refused request wrote something"


# ---- bodies, against every operation that takes one ------------------------------------------------

nested = b"[" * (MAX_DEPTH + 8) + b"]" * (MAX_DEPTH + 8)
HOSTILE_BODIES: list[tuple[str, bytes, dict[str, str], int]] = [
    ("text-plain", b'{"name": "x"}', {"content-type": "text/plain"}, 415),
    ("no-content-type", b'{"name": "x"}', {}, 415),
    ("form", b"name=x&role=administrator", {"content-type": "application/x-www-form-urlencoded"}, 415),
    ("xml", b"<person><name>x</name></person>", {"content-type": "application/xml"}, 415),
    ("latin-1-json", b'{"name": "x"}', {"content-type": "application/json; charset=latin-1"}, 415),
    ("oversized", b'{"name": "' + b"x" * 300_000 + b'"}', JSON, 413),
    ("deep-array", b"[" * 100_000 + b"]" * 100_000, JSON, 400),
    ("deep-object", b'{"a":' * 5_000 + b"1" + b"}" * 5_000, JSON, 400),
    ("just-too-deep", nested, JSON, 400),
    ("invalid-utf8", b'{"name": "\xff\xfe"}', JSON, 400),
    ("overlong-utf8", b'{"name": "\xc0\xaf"}', JSON, 400),
    ("utf8-bom", b'\xef\xbb\xbf{"name": "x"}', JSON, 400),
    ("duplicate-keys", b'{"occurred_at": null, "occurred_at": null}', JSON, 400),
    ("nested-duplicate-keys", b'{"guardian": {"name": "a", "name": "b"}}', JSON, 400),
    ("nul-in-value", b'{"name": "a\\u0000b"}', JSON, 400),
    ("nul-in-key", b'{"na\\u0000me": "x"}', JSON, 400),
    ("lone-surrogate", b'{"name": "\\ud800"}', JSON, 400),
    ("truncated", b'{"name": ', JSON, 400),
    ("nan", b'{"capacity": NaN}', JSON, 400),
    ("huge-exponent", b'{"capacity": 1e999999}', JSON, 400),
    ("array-not-object", b"[]", JSON, 400),
    ("string-not-object", b'"x"', JSON, 400),
    ("number-not-object", b"123", JSON, 400),
]


# JSON routes whose bodies may be larger than the API's 256 KiB: a device's backlog of visit logs.
LARGER_BODIES = {"/visit-logs/batch": MAX_BATCH_BYTES}


@pytest.mark.parametrize(("name", "body", "headers", "status"), HOSTILE_BODIES, ids=[c[0] for c in HOSTILE_BODIES])
def test_hostile_bodies_are_refused_everywhere(
    client: httpx.Client,
    spec: dict[str, Any],
    unmoved: None,
    name: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
) -> None:
    for method, path, _ in operations(spec, with_body=True):
        sent = body
        if name == "oversized" and path in LARGER_BODIES:  # a route with a limit of its own: past it
            sent = b'{"name": "' + b"x" * LARGER_BODIES[path] + b'"}'
        r = client.request(method, fill(path), content=sent, headers=headers)
        # Shape errors (an array for an object) are the decoder's: 400 or 422 both say "not this".
        allowed = (status, 422) if name.endswith("not-object") else (status,)
        assert_problem(r, *allowed)


def test_mass_assignment_is_impossible_in_every_body_type() -> None:
    """Every request body refuses unknown fields, and none lets a client set what the server
    decides: who acted, when it was recorded, versions and positions."""
    server_decides = {
        "actor_id",
        "actor_role",
        "actor",
        "correlation_id",
        "recorded_at",
        "position",
        "version",
        "org_path",
    }
    app = bootstrap.api(
        Settings(), database_url="postgresql://nobody@127.0.0.1:1/none", nats_url=None, jwt_secret=SECRET
    )
    checked = 0

    def check(t: Any, where: str) -> None:
        info = msgspec.inspect.type_info(t)
        stack = [info]
        while stack:
            node = stack.pop()
            if isinstance(node, msgspec.inspect.StructType):
                assert node.forbid_unknown_fields, f"{where}: {node.cls.__name__} accepts unknown fields"
                assert not server_decides & {f.name for f in node.fields}, f"{where}: {node.cls.__name__}"
                stack.extend(f.type for f in node.fields)
            elif isinstance(node, (msgspec.inspect.ListType, msgspec.inspect.SetType, msgspec.inspect.FrozenSetType)):
                stack.append(node.item_type)
            elif isinstance(node, msgspec.inspect.UnionType):
                stack.extend(node.types)
            else:
                assert not isinstance(node, msgspec.inspect.DictType), f"{where}: a free-form object in a body"

    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                data = handler.parsed_fn_signature.parameters.get("data")
                if data is not None and route.path.startswith("/app/"):
                    # A page's HTML form (web/): a URL-encoded dict whose named fields alone are
                    # converted into the API's own request Struct (web.admin.decode), so nothing
                    # the server decides can be set from it; checked in tests/unit/test_web_ops_parts.py.
                    assert "x-www-form-urlencoded" in str(data.kwarg_definition), route.path
                    continue
                if data is not None:
                    check(data.annotation, f"{sorted(handler.http_methods)} {route.path}")
                    checked += 1
    assert checked >= 30


@pytest.fixture
def tree(client: httpx.Client) -> Tree:
    return Tree(client)


def test_mass_assignment_on_a_live_create_names_the_field(client: httpx.Client, tree: Tree) -> None:
    before = position(client)
    for field, value in [
        ("actor_id", "someone-else"), ("actor_role", "administrator"), ("version", 7), ("position", 1),
        ("org_path", [tree.county["id"]]), ("active", False), ("pairing_ids", [str(uuid.uuid4())]),
        ("recorded_at", "2020-01-01T00:00:00Z"), ("correlation_id", "x"), ("__proto__", {"admin": True}),
    ]:  # fmt: skip
        body = assert_problem(client.post("/persons", json={**elder(tree.village["id"]), field: value}), 422)
        assert field in [e["field"] for e in body["errors"]], body
    person = client.post("/persons", json=elder(tree.village["id"])).json()["id"]
    before = position(client)
    r = client.post(f"/persons/{person}/risk-tags", json={"tag": "dibao", "person_id": str(uuid.uuid4())})
    assert_problem(r, 422)
    h = client.post("/helpers", json=helper(tree.village["id"])).json()["id"]
    taken = client.post("/persons", json={**elder(tree.village["id"]), "id": h})  # another thing's id
    assert_problem(taken, 409, 422)
    assert position(client) == before + 1, "only the helper was written"


# ---- values ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "ELDER"}, "kind"),
        ({"kind": " elder"}, "kind"),
        ({"kind": "adult"}, "kind"),
        ({"sex": "x"}, "sex"),
        ({"risk_tags": ["living_alone", "vip"]}, "risk_tags[1]"),
        ({"kind": None}, "kind"),
        ({"kind": 1}, "kind"),
        ({"birth_date": "9999-12-31"}, "birth_date"),
        ({"birth_date": "0000-01-01"}, "birth_date"),
        ({"birth_date": "+10000-01-01"}, "birth_date"),
        ({"birth_date": "1941-02-30"}, "birth_date"),
        ({"occurred_at": "0001-01-01T00:00:00Z"}, "occurred_at"),
        ({"occurred_at": "9999-12-31T23:59:59+14:00"}, "occurred_at"),
        ({"occurred_at": "10000-01-01T00:00:00Z"}, "occurred_at"),
        ({"occurred_at": "yesterday"}, "occurred_at"),
        ({"village_id": "../../etc/passwd"}, "village_id"),
        ({"village_id": "' OR '1'='1"}, "village_id"),
        ({"name": "x" * 65}, "name"),
        ({"name": ["x"]}, "name"),
        ({"name": {"$ne": None}}, "name"),
        ({"id": "00000000-0000-0000-0000-00000000000g"}, "id"),
    ],
)
def test_bad_values_name_the_field(client: httpx.Client, tree: Tree, change: dict[str, Any], field: str) -> None:
    before = position(client)
    body = assert_problem(client.post("/persons", json={**elder(tree.village["id"]), **change}), 422)
    assert field in [e["field"] for e in body.get("errors", [])], body
    assert position(client) == before


def test_negative_and_huge_numbers(client: httpx.Client, tree: Tree, unmoved: None) -> None:
    for params in ({"limit": -1}, {"limit": 0}, {"limit": 10**30}, {"limit": "1e3"}, {"limit": "NaN"}, {"offset": -1},
                   {"offset": 10**30}, {"min_position": -1}, {"min_position": 2**63}):  # fmt: skip
        assert_problem(client.get("/persons", params=params), 400, 422)
    v = tree.village["id"]
    for capacity in (-1, 0, 10**30, 1.5, True, 2**63, "many"):
        assert_problem(client.post("/helpers", json=helper(v, capacity=capacity)), 422)
    for version in ("0", "-1", str(2**64), "1.5"):
        assert_problem(client.get(f"/org-units/{v}", params={"version": version}), 400, 404)
    for etag in ('"99999999999999999999"', '"-1"', '"1e3"'):
        assert_problem(client.post(f"/org-units/{v}/rename", json={"name": "改名"}, headers={"If-Match": etag}), 400)
    far = {"category": "other", "severity": "normal", "location": {"org_unit_id": v, "latitude": 1e308}}
    assert_problem(client.post("/emergencies", json=far), 422)


def test_path_traversal_and_junk_in_ids(client: httpx.Client, spec: dict[str, Any], unmoved: None) -> None:
    junk = [
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e%2f%2e%2e%2f",
        "..%5C..%5Cwindows",
        "%00",
        "' OR 1=1 --",
        "%7B%7D",
        "1" * 300,
    ]
    for method, path, _ in operations(spec, with_body=False) + operations(spec, with_body=True):
        if "{" not in path:
            continue
        for value in junk:
            r = client.request(method, fill(path, value), content=b"{}" if method != "GET" else None, headers=JSON)
            assert r.status_code < 500, (method, path, value, r.text[:200])
            assert_problem(r, 400, 403, 404, 405, 422)


def test_hostile_query_strings_never_break_a_read(client: httpx.Client, spec: dict[str, Any], unmoved: None) -> None:
    values = ["' OR '1'='1", "1; DROP TABLE guanai_events", '{"$ne": null}', "-1", "1e309", "9" * 40,
              "../../etc/passwd", "\u202e\u0000", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "10000-01-01", "%"]  # fmt: skip
    for method, path, op in operations(spec, with_body=False):
        if method != "GET":
            continue
        for param in [p["name"] for p in op.get("parameters", []) if p["in"] == "query"]:
            for value in values:
                r = client.get(fill(path), params={param: value})
                assert r.status_code < 500, (path, param, value, r.text[:200])
                if r.status_code >= 400:
                    assert_problem(r, r.status_code)


# ---- hostile strings that are legal: stored and returned literally -------------------------------------

LITERALS = [
    "'); DROP TABLE guanai_events;--",
    "Robert'); DELETE FROM reg_persons WHERE ('1'='1",
    '{"$gt": ""}',
    '", "role": "administrator", "x": "',
    "<script>alert(1)</script>",
    "${jndi:ldap://x/a}",
    "%s%s%s%n",
    "\\u0000 is not a NUL",
    "李\u202e秀英 \U0001f600",
]


def test_injection_strings_are_stored_and_returned_literally(client: httpx.Client, tree: Tree) -> None:
    for text in LITERALS:
        r = client.post("/persons", json=child(tree.village["id"], name=text[:64], household=text))
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["name"] == text[:64] and created["household"] == text
        assert client.get(f"/persons/{created['id']}").json()["name"] == text[:64]
        listed = client.get(
            "/persons", params={"org_unit_id": tree.village["id"], "min_position": created["position"], "limit": 500}
        )
        assert text[:64] in [p["name"] for p in listed.json()["items"]]
    raw = json.dumps({"name": LITERALS[0]}).encode()
    assert client.post("/org-units", content=raw, headers=JSON).status_code == 422  # still checked as a whole
