"""The request id and the request counter every request passes through (api/middleware.py,
api/metrics.py)."""

from __future__ import annotations

import uuid

from litestar import Litestar, get
from litestar.params import FromPath
from litestar.testing import TestClient
from prometheus_client import REGISTRY

from api.metrics import metrics_middleware
from api.middleware import new_request_id, request_id_middleware


def test_a_new_request_id_is_a_random_version_4_uuid_in_hex() -> None:
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    for found in ids:
        parsed = uuid.UUID(hex=found)
        assert (parsed.version, parsed.variant, parsed.hex) == (4, uuid.RFC_4122, found)


@get("/edge/{n:int}", sync_to_thread=False)
def answer(n: FromPath[int]) -> int:
    return n


def _counted(status: str) -> float:
    value = REGISTRY.get_sample_value(
        "guanai_http_requests_total", {"method": "GET", "route": "/edge/{n}", "status": status}
    )
    return value or 0.0


def test_each_request_gets_an_id_and_is_counted_under_its_route() -> None:
    app = Litestar([answer], middleware=[request_id_middleware, metrics_middleware])
    before = _counted("200")
    with TestClient(app) as client:
        given = client.get("/edge/1", headers={"X-Request-ID": "device-7.retry_2"})
        made = client.get("/edge/2", headers={"X-Request-ID": "not valid!"})
        again = client.get("/edge/3")
    assert given.headers["x-request-id"] == "device-7.retry_2"
    assert uuid.UUID(hex=made.headers["x-request-id"]).version == 4
    assert again.headers["x-request-id"] != made.headers["x-request-id"]
    assert _counted("200") == before + 3
