"""What handlers are given by dependency injection is no part of the API: the OpenAPI document
names request parameters only, never the application, the views, the caller or a helper."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar

from api.dependencies import DEPENDENCIES
from guanai import bootstrap
from infrastructure.settings import Settings


@pytest.fixture(scope="module")
def app() -> Litestar:
    # Nothing connects until the app starts: building it needs no server.
    return bootstrap.api(
        Settings(), database_url="postgresql://nobody@127.0.0.1:1/none", nats_url=None, jwt_secret="x" * 48
    )


def operations(app: Litestar) -> list[tuple[str, dict[str, Any]]]:
    document = app.openapi_schema.to_schema()
    return [
        (f"{method.upper()} {path}", op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "responses" in op
    ]


def test_no_injected_value_shows_as_a_parameter_of_any_operation(app: Litestar) -> None:
    injected = set(DEPENDENCIES) | {"request", "state", "headers", "scope"}
    found = operations(app)
    assert len(found) > 100
    leaks = [(name, p["name"]) for name, op in found for p in op.get("parameters", []) if p["name"] in injected]
    assert leaks == []


def test_handlers_are_given_the_application_by_name(app: Litestar) -> None:
    """The handlers ask for what they use; a route that names ``care`` gets the app's provider."""
    givers = {
        route.path: handler.resolve_dependencies()
        for route in app.routes
        for handler in getattr(route, "route_handlers", [])
        if "care" in handler.parsed_fn_signature.parameters
    }
    assert givers, "no handler is given the application"
    assert all(deps["care"] is DEPENDENCIES["care"] for deps in givers.values())
