"""Security headers on every response, CORS closed by default (and open only to configured
origins), the rate limiter, and the limit on filing emergency reports."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.docs import DOCS_CSP
from api.security import API_CSP, RateLimiter
from tests.api_support import ApiServer, Tree, api_server, auth, client, own_server  # noqa: F401 - fixtures

ALLOWED = "https://care.example.cn"
EVIL = "https://evil.example"


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()


# ---- the limiter (no I/O) ---------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_limiter_allows_a_burst_then_refills_at_its_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(6, clock=clock)  # 6 a minute: one every 10 s
    assert [limiter.take("a") for _ in range(6)] == [0.0] * 6
    assert limiter.take("a") == pytest.approx(10.0)
    assert limiter.wait_time("a") == pytest.approx(10.0)
    assert limiter.take("b") == 0.0, "keys are independent"
    clock.now += 5
    assert limiter.take("a") == pytest.approx(5.0), "a refused attempt spends nothing"
    clock.now += 5
    assert limiter.wait_time("a") == 0.0 and limiter.take("a") == 0.0
    assert limiter.take("a") == pytest.approx(10.0)
    clock.now += 3600
    assert [limiter.take("a") for _ in range(7)][-1] > 0, "a long pause refills to the burst, not beyond"


def test_the_limiter_keeps_its_memory_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(60, burst=1, clock=clock, max_keys=1000)
    for n in range(1000):
        limiter.take(f"k{n}")
    clock.now += 61  # every bucket has refilled: the same as no bucket
    limiter.take("one more")
    assert len(limiter._buckets) == 1
    for n in range(5000):  # a flood of fresh addresses, all mid-bucket
        limiter.take(f"flood{n}")
    assert len(limiter._buckets) <= 1000
    assert limiter.take("flood4999") > 0, "the most recent keys are remembered"


# ---- headers ---------------------------------------------------------------------------------


def test_api_responses_carry_the_security_headers(client: httpx.Client) -> None:
    for r in (
        client.get("/persons"),
        client.get("/no-such-thing"),
        client.get("/persons", headers={"Authorization": ""}),
    ):
        assert r.status_code in (200, 401, 404)
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["content-security-policy"] == API_CSP
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["x-frame-options"] == "DENY"
        assert "strict-transport-security" not in r.headers, "plain HTTP: no HSTS"


def test_the_docs_pages_may_load_their_own_scripts_only(client: httpx.Client) -> None:
    page = client.get("/schema/swagger")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert page.headers["content-security-policy"] == DOCS_CSP  # tests/e2e/test_api_docs_offline.py: in a browser
    assert page.headers["x-content-type-options"] == "nosniff"
    assert client.get("/schema/openapi.json").status_code == 200


def test_hsts_when_the_request_came_over_tls(client: httpx.Client) -> None:
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1 (the TLS-terminating proxy in production).
    r = client.get("/persons", headers={"X-Forwarded-Proto": "https"})
    assert r.headers["strict-transport-security"].startswith("max-age=31536000")


# ---- CORS ----------------------------------------------------------------------------------------


def preflight(c: httpx.Client, origin: str, method: str = "POST") -> httpx.Response:
    return c.options(
        "/persons",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization",
        },
    )


def test_cors_is_closed_by_default(client: httpx.Client) -> None:
    for origin in (EVIL, ALLOWED, "null"):
        r = preflight(client, origin)
        body = assert_problem(r, 403)
        assert body["type"] == "/problems/cors-refused"
        assert "access-control-allow-origin" not in r.headers
    r = client.get("/persons", headers={"Origin": EVIL})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


@pytest.fixture(scope="module")
def limited(pg_base_url: str, nats_url: str) -> Iterator[ApiServer]:
    with own_server(
        pg_base_url, nats_url, cors_origins=f"{ALLOWED}, https://other.example.cn/", reports_per_minute=2
    ) as s:
        yield s


def test_configured_origins_and_only_they_may_call_from_a_browser(limited: ApiServer) -> None:
    with httpx.Client(base_url=limited.base_url, headers=auth(), timeout=30) as c:
        r = preflight(c, ALLOWED)
        assert r.status_code == 204, r.text
        assert r.headers["access-control-allow-origin"] == ALLOWED and r.headers["vary"] == "Origin"
        assert "Authorization" in r.headers["access-control-allow-headers"]
        assert preflight(c, "https://other.example.cn").status_code == 204  # a trailing slash in the setting is fine
        assert_problem(preflight(c, EVIL), 403)
        r = c.get("/persons", headers={"Origin": ALLOWED})
        assert (
            r.headers["access-control-allow-origin"] == ALLOWED and "ETag" in r.headers["access-control-expose-headers"]
        )
        assert "access-control-allow-origin" not in c.get("/persons", headers={"Origin": EVIL}).headers


# ---- report filing ---------------------------------------------------------------------------------


def test_filing_reports_is_limited_per_account(limited: ApiServer) -> None:
    with httpx.Client(base_url=limited.base_url, headers=auth(), timeout=30) as c:
        village = Tree(c).village["id"]
        report = {"category": "neglect", "severity": "normal", "location": {"org_unit_id": village}}
        reporter, other = auth("volunteer", village), auth("volunteer", village)
        assert [c.post("/emergencies", json=report, headers=reporter).status_code for _ in range(2)] == [201, 201]
        before = c.get("/health").json()["database"]["position"]
        r = c.post("/emergencies", json=report, headers=reporter)
        body = assert_problem(r, 429)
        assert body["type"] == "/problems/too-many-requests" and 1 <= int(r.headers["retry-after"]) <= 30
        assert c.get("/health").json()["database"]["position"] == before, "a refused report writes nothing"
        assert c.post("/emergencies", json=report, headers=other).status_code == 201


def test_retries_of_a_stored_report_do_not_count_toward_the_limit(limited: ApiServer) -> None:
    """A reporter whose answer was lost sends the same report again (same id): 200 with the
    stored report, and no event of the limit spent, so the next new report is still accepted."""
    with httpx.Client(base_url=limited.base_url, headers=auth(), timeout=30) as c:
        village = Tree(c).village["id"]
        reporter = auth("volunteer", village)
        first = {
            "id": str(uuid.uuid4()),
            "category": "neglect",
            "severity": "normal",
            "location": {"org_unit_id": village},
        }
        assert c.post("/emergencies", json=first, headers=reporter).status_code == 201
        assert [c.post("/emergencies", json=first, headers=reporter).status_code for _ in range(4)] == [200] * 4
        second = {**first, "id": str(uuid.uuid4())}
        assert c.post("/emergencies", json=second, headers=reporter).status_code == 201
        third = {**first, "id": str(uuid.uuid4())}
        assert_problem(c.post("/emergencies", json=third, headers=reporter), 429)
