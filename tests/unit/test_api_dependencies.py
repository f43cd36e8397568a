"""What handlers are given by dependency injection is no part of the API: the OpenAPI document
names request parameters only, never the application, the views, the caller or a helper."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar, get
from litestar.di import NamedDependency, Provide
from litestar.testing import TestClient

from api.dependencies import DEPENDENCIES, resolve_in_turn
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


def _batches(app: Litestar) -> dict[str, list[set[Any]]]:
    return {
        f"{method} {route.path}": model.dependency_batches
        for route in app.routes
        for method, (_, model) in getattr(route, "route_handler_map", {}).items()
    }


def test_given_values_are_resolved_one_after_the_other(app: Litestar) -> None:
    """Litestar resolves independent dependencies together in a task group, a task each per
    request; every value given here is resolved on its own, in turn (api/dependencies.py)."""
    batches = _batches(app)
    assert all(len(batch) == 1 for found in batches.values() for batch in found)
    assert len(batches["GET /auth/me"]) == 2  # the application and the caller, one after the other


def test_a_batch_with_a_provider_that_awaits_is_left_together() -> None:
    async def fetched() -> int:
        return 1

    def held() -> int:
        return 2

    def also_held() -> int:
        return 3

    @get("/together", sync_to_thread=False)
    def together(one: NamedDependency[int], two: NamedDependency[int]) -> int:
        return one + two

    @get("/in-turn", sync_to_thread=False)
    def in_turn(two: NamedDependency[int], three: NamedDependency[int]) -> int:
        return two + three

    small = Litestar(
        [together, in_turn],
        dependencies={
            "one": Provide(fetched),
            "two": Provide(held, sync_to_thread=False),
            "three": Provide(also_held, sync_to_thread=False),
        },
    )
    resolve_in_turn(small)
    batches = _batches(small)
    assert [len(b) for b in batches["GET /together"]] == [2]
    assert [len(b) for b in batches["GET /in-turn"]] == [1, 1]
    with TestClient(small) as client:
        assert client.get("/together").json() == 3
        assert client.get("/in-turn").json() == 5


def test_the_guards_run_on_the_handler_itself_only_where_every_guard_only_reads_it(app: Litestar) -> None:
    """``guards_in_place``: a handler whose guards are all the app's own (which read the handler
    and never change it) runs them, in Litestar's order, on itself instead of on a copy; a
    handler with any other guard (the report filing's rate limit) keeps Litestar's way."""
    from functools import partial

    from api.access import access_guard
    from api.security import limit_report_filing

    in_place, kept = 0, 0
    for route in app.routes:
        for handler, _ in getattr(route, "route_handler_map", {}).values():
            declared = [g for layer in handler.ownership_layers for g in (layer.guards or [])]
            own = getattr(handler, "__dict__", {}).get("authorize_connection")
            if not declared or not hasattr(handler, "__dict__"):
                assert own is None
            elif limit_report_filing in declared:
                assert own is None
                kept += 1
            else:
                assert declared == [access_guard]
                assert isinstance(own, partial) and own.args == (handler.resolve_guards(), handler)
                in_place += 1
    assert in_place > 100 and kept == 1
