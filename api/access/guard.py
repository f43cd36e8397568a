"""The app's one guard: every request is checked against its route's rule before its handler
runs; and what handlers take from the decision (the scope of a list, the aggregates loaded)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping
from functools import partial
from typing import Any
from urllib.parse import parse_qsl
from uuid import UUID

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Empty
from litestar.utils.scope.state import ScopeState

from api.access.checks import Access, AccessViews
from api.access.rules import Rule, Scope, rule_for
from api.auth import actor_of
from projections.scope import EVERYTHING, ListScope


def access_views(connection: ASGIConnection[Any, Any, Any, Any]) -> AccessViews:
    state = connection.app.state
    return AccessViews(state.read_side.view, state.read_side.reports, getattr(state, "imports", None))


def _needs_loading(rule: Rule, scopes: frozenset[Scope], query: Mapping[str, Any]) -> bool:
    return (
        rule.target is not None
        or bool(rule.refs)
        or rule.creates is not None
        or (rule.lists is not None and Scope.OWN in scopes)
        or any(f.field in query for f in rule.filters)
    )


def _takes_object(handler: BaseRouteHandler) -> bool:
    """Whether the handler decodes its body into a Struct (a JSON object) before it does anything."""
    data = handler.parsed_fn_signature.parameters.get("data")
    return data is not None and isinstance(data.annotation, type) and issubclass(data.annotation, msgspec.Struct)


def _is_form(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    content_type = connection.headers.get("content-type", "")
    return content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded"


def _form_object(body: bytes) -> dict[str, Any]:
    """A URL-encoded form as an object: an empty field is absent (the page handlers take it so),
    and a field sent more than once is a list, every value of which is checked."""
    out: dict[str, Any] = {}
    for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=False):
        if name not in out:
            out[name] = value
        else:
            out[name] = [*out[name], value] if isinstance(out[name], list) else [out[name], value]
    return out


def _json_object(connection: ASGIConnection[Any, Any, Any, Any], body: bytes) -> dict[str, Any] | None:
    data = ScopeState.from_scope(connection.scope).json  # decoded once, by the security middleware
    if data is Empty:
        try:
            data = msgspec.json.decode(body)
        except msgspec.DecodeError:
            return None
    return data if isinstance(data, dict) else None


_settles: dict[Any, bool] = {}


def _settles_check(handler: BaseRouteHandler, path_params: Mapping[str, Any]) -> bool:
    """Whether the handler runs the guard's check itself, in its own worker thread: a synchronous
    command handler run in a thread (``sync_to_thread``) whose only dependency is ``command``
    (api/dependencies.py) besides values that act on nothing (the caller, the settings); every
    use of ``command`` settles the check before it gives anything out (api/common.py
    ``CommandContext``). Its other parameters are its body and path, which the check reads. The
    guard defers only a body the handler's type has taken already (api/security.py
    ``body_taken``): nothing is then refused between the guard and the handler, so a refusal
    comes in the same order as when the guard checks (a target out of reach is 404 whatever
    the body holds)."""
    fn = getattr(handler, "fn", None)
    key = (fn, *path_params)
    found = _settles.get(key)
    if found is None:
        names = set(handler.parsed_fn_signature.parameters)
        found = (
            "command" in names
            and bool(getattr(handler, "sync_to_thread", False))
            and not inspect.iscoroutinefunction(fn)
            and not (names - {"command", "data", "actor", "settings"} - set(path_params))
        )
        _settles[key] = found
    return found


async def access_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """The app's guard: every request is checked against its route's rule (module docstring)."""
    method = connection.scope.get("method", "GET")
    if method == "OPTIONS":
        return  # the allowed methods of a route: no data
    rule = rule_for(method, connection.scope.get("path_template", ""))
    if rule is None:
        raise PermissionDeniedException("this operation has no access rule, so it is closed to everyone")
    if rule.public:
        return
    actor = actor_of(connection)
    if actor.restricted and rule.resource != "sessions":  # its own session and second factor only
        raise PermissionDeniedException(
            f"a {actor.role.value} signs in with a second factor: enrol one first (POST /auth/totp), then refresh"
        )
    scopes = rule.grants.get(actor.role)
    if not scopes:
        raise PermissionDeniedException(f"a {actor.role.value} may not {rule.action} ({rule.resource})")
    access = Access(connection.app.state.care, access_views(connection), actor)
    connection.scope.setdefault("state", {})["access"] = access
    query = {f.field: connection.query_params.get(f.field) for f in rule.filters if f.field in connection.query_params}
    if rule.target is not None and rule.target.in_query and rule.target.param in connection.query_params:
        query[rule.target.param] = connection.query_params.get(rule.target.param)
    if not _needs_loading(rule, scopes, query):
        if rule.lists is not None:
            access.list_scope = access.scope_of_lists(scopes)
        return
    data = None
    if rule.writes and isinstance(connection, Request) and (body := await connection.body()):
        data = _json_object(connection, body)
        if data is None and _is_form(connection):
            # A page's HTML form (web/): its fields name objects as a JSON body's would, and are
            # checked the same way, so a form is no way around the table.
            data = _form_object(body)
        if data is None and _takes_object(handler):
            # Not a JSON object: the handler refuses it (400/422) before it reads or writes
            # anything, whichever ids it names, so no answer here could tell ids apart.
            return
    path_params = dict(connection.path_params)
    if rule.checked_with_read and rule.target is not None and not rule.writes and not rule.target.in_query:
        target = path_params.get(rule.target.param)
        if isinstance(target, UUID):
            # The handler makes the check inside its own read, in its thread (``Access.gate``):
            # no hop into a thread and no round trip here.
            check = partial(access.check, rule, scopes, path_params, None, query)
            access.defer_to_read(check, scopes, rule.target.kind, target)
            return
    if connection.scope.get("state", {}).get("body_taken") and _settles_check(handler, path_params):
        access.defer(partial(access.check, rule, scopes, path_params, data, query))
        return
    await asyncio.get_running_loop().run_in_executor(None, access.check, rule, scopes, path_params, data, query)


async def unchecked_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """The guard of an app built with ``protections=False`` (``bench/protections.py`` only): a
    valid token opens every route and every list is unscoped. It exists to measure what the
    access table costs; nothing a deployment configures selects it."""
    rule = rule_for(connection.scope.get("method", "GET"), connection.scope.get("path_template", ""))
    if rule is None or rule.public or connection.scope.get("method") == "OPTIONS":
        return
    access = Access(connection.app.state.care, access_views(connection), actor_of(connection))
    access.list_scope = EVERYTHING
    connection.scope.setdefault("state", {})["access"] = access


def access_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Access:
    access = connection.scope.get("state", {}).get("access")
    if access is None:  # only a route without the guard could get here: refuse rather than guess
        raise PermissionDeniedException("no access decision was made for this request")
    return access


def list_scope(connection: ASGIConnection[Any, Any, Any, Any]) -> ListScope:
    """The rows this request's caller may see, for the view query of a list."""
    scope = access_of(connection).list_scope
    if scope is None:
        raise PermissionDeniedException("this operation is not a list in the access table")
    return scope


def loaded(connection: ASGIConnection[Any, Any, Any, Any], cls: type[Any], aggregate_id: UUID) -> Any:
    """The aggregate the guard already loaded for this request, if it did."""
    access = connection.scope.get("state", {}).get("access")
    return access.loaded(cls, aggregate_id) if access is not None else None


# The app's guards: they read the handler they are given and never change it.
_READ_ONLY_GUARDS = (access_guard, unchecked_guard)


def guards_in_place(app: Any) -> None:
    """Run each handler's guards on the handler itself rather than on a copy of it.

    Litestar's ``authorize_connection`` gives each guard ``copy(handler)``, so that a guard
    could not change the handler for later requests: a shallow copy of an object of some forty
    fields, per guard and request (about 5% of a timeline read's profile, as much of the
    floor's). The app's guards (``_READ_ONLY_GUARDS``) only read the handler, so where every
    guard of a handler is one of them, the same guards run, in the same order, on the handler
    itself. A handler with any other guard, or one that cannot take an attribute of its own
    (no ``__dict__``: Litestar's own schema routes), keeps Litestar's way."""
    for route in app.routes:
        for handler, _ in getattr(route, "route_handler_map", {}).values():
            declared = [g for layer in handler.ownership_layers for g in (layer.guards or [])]
            if not declared or not hasattr(handler, "__dict__"):
                continue
            if all(g in _READ_ONLY_GUARDS for g in declared):
                handler.authorize_connection = partial(_authorize, handler.resolve_guards(), handler)


async def _authorize(
    guards: list[Any], handler: BaseRouteHandler, connection: ASGIConnection[Any, Any, Any, Any]
) -> None:
    for guard in guards:
        await guard(connection, handler)
