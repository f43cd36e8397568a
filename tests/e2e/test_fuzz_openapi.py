"""Property-based fuzzing of the whole API from its OpenAPI document (schemathesis), against a
real running server: valid and invalid inputs for every operation, and not one 5xx. Every error
answer must be problem details.

Bounded so the file stays well under two minutes: ``MAX_EXAMPLES`` generated cases per operation
(plus schemathesis's coverage cases: boundaries, wrong types, missing fields), no shrinking
beyond what Hypothesis does, no stateful sequences. ``GUANAI_FUZZ_EXAMPLES`` raises the bound for
a longer hunt (e.g. nightly)."""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings

from domain.vocabulary import ActorRole
from guanai import bootstrap
from infrastructure.settings import Settings
from tests.api_support import SECRET, ApiServer, api_server, token  # noqa: F401 - fixtures

MAX_EXAMPLES = int(os.environ.get("GUANAI_FUZZ_EXAMPLES", "10"))
STREAMS = "/emergencies/stream"  # server-sent events never end; covered by their own tests


def load_schema() -> Any:
    """The spec the server serves, built from the app without connecting to anything, so the
    operations are known when the tests are collected; the cases are sent to a running server."""
    app = bootstrap.api(
        Settings(), database_url="postgresql://nobody@127.0.0.1:1/none", nats_url=None, jwt_secret=SECRET
    )
    config = schemathesis.Config.from_dict(
        {
            "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
            "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True},
                       "stateful": {"enabled": False}},
            "request-timeout": 30,
        }
    )  # fmt: skip
    return schemathesis.openapi.from_dict(app.openapi_schema.to_schema(), config=config).exclude(path=STREAMS)


schema = load_schema()
ADMIN = {"Authorization": f"Bearer {token(ActorRole.ADMINISTRATOR)}"}


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_no_input_makes_the_server_fail(case: Any, api_server: ApiServer) -> None:
    response = case.call(base_url=api_server.base_url, headers=ADMIN)
    where = f"{case.method} {case.formatted_path}"
    assert response.status_code < 500, f"{where} answered {response.status_code}: {response.text[:500]}"
    if response.status_code >= 400:
        content_type = {k.lower(): v for k, v in response.headers.items()}.get("content-type", [""])[0]
        assert content_type.startswith("application/problem+json"), (
            f"{where} answered {response.status_code} as {content_type}"
        )
