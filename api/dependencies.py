"""What route handlers are given (Litestar's dependency injection): the application, the views,
the settings, the caller and the guard's decision, and the request-bound helpers of a command or
a read. A handler names what it needs as a typed parameter (``care: Care``, ``meta_for:
MetaFor``); nothing here is a request parameter, so none of it shows in the OpenAPI document
(a test checks that).

The app's resources are made on startup (api/app.py) and kept on ``app.state``; the providers
only hand them over. The request-bound helpers (``meta_for``, ``record_access``,
``wait_for_views``, ``expected_version``, ``load_for_read``) are api/common.py's functions with the
request already given: a handler calls them where it did before, so a refusal they raise comes
at the same point of the request (after the body was validated). ``command`` holds a command
handler's four in one (api/common.py ``CommandContext``), and hands the command what the access
guard read for the request.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any, TypeVar
from uuid import UUID

from litestar import Litestar, Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import SkipValidation

from api.access import Access, access_of, list_scope
from api.auth import Actor, actor_of
from api.common import CommandContext, expected_version, load_for_read, meta_for, record_access, wait_for_views
from api.views import ReadSide
from application.accounts import AccountService
from application.care import CareApplication
from domain.base import CommandMeta
from infrastructure.audit import Audit
from infrastructure.import_jobs import ImportJobs
from infrastructure.settings import Settings
from projections.registry import RegistryView
from projections.scope import ListScope
from projections.supervision_view import SupervisionView

A = TypeVar("A")

# The app's resources.
Care = NamedDependency[SkipValidation[CareApplication]]
AppSettings = NamedDependency[SkipValidation[Settings]]
Views = NamedDependency[SkipValidation[ReadSide]]  # the views' pool and position
Registry = NamedDependency[SkipValidation[RegistryView]]
Supervision = NamedDependency[SkipValidation[SupervisionView]]
AuditTrail = NamedDependency[SkipValidation[Audit]]
Accounts = NamedDependency[SkipValidation[AccountService]]
Jobs = NamedDependency[SkipValidation[ImportJobs]]
# The caller, and what the access guard decided for this request.
Caller = NamedDependency[SkipValidation[Actor]]
Checked = NamedDependency[SkipValidation[Access]]
Visible = NamedDependency[SkipValidation[ListScope]]  # the rows of a list the caller may see
# Request-bound helpers (api/common.py).
MetaFor = NamedDependency[SkipValidation[Callable[[datetime | None], CommandMeta]]]
RecordAccess = NamedDependency[SkipValidation[Callable[..., None]]]
WaitForViews = NamedDependency[SkipValidation[Callable[[int | None], int]]]
ExpectedVersion = NamedDependency[SkipValidation[Callable[[], int | None]]]
LoadForRead = NamedDependency[SkipValidation[Callable[..., Any]]]
# A command handler's four in one: the application, meta_for, expected_version, record_access.
Command = NamedDependency[SkipValidation[CommandContext]]


def _care(state: State) -> CareApplication:
    return state.care  # type: ignore[no-any-return]


def _settings(state: State) -> Settings:
    return state.settings  # type: ignore[no-any-return]


def _views(state: State) -> ReadSide:
    return state.read_side  # type: ignore[no-any-return]


def _registry(state: State) -> RegistryView:
    return state.view  # type: ignore[no-any-return]


def _supervision(state: State) -> SupervisionView:
    return SupervisionView(state.read_side.pool)


def _audit(state: State) -> Audit:
    return state.audit  # type: ignore[no-any-return]


def _accounts(state: State) -> AccountService:
    return state.accounts  # type: ignore[no-any-return]


def _jobs(state: State) -> ImportJobs:
    return state.imports  # type: ignore[no-any-return]


def _actor(request: Request[Any, Any, Any]) -> Actor:
    return actor_of(request)


def _access(request: Request[Any, Any, Any]) -> Access:
    return access_of(request)


def _visible(request: Request[Any, Any, Any]) -> ListScope:
    return list_scope(request)


def _meta_for(request: Request[Any, Any, Any]) -> Callable[[datetime | None], CommandMeta]:
    return partial(meta_for, request)


def _record_access(request: Request[Any, Any, Any]) -> Callable[..., None]:
    return partial(record_access, request)


def _wait_for_views(request: Request[Any, Any, Any]) -> Callable[[int | None], int]:
    return partial(wait_for_views, request)


def _expected_version(request: Request[Any, Any, Any]) -> Callable[[], int | None]:
    return partial(expected_version, request)


def _load_for_read(request: Request[Any, Any, Any]) -> Callable[..., Any]:
    def load(cls: type[A], aggregate_id: UUID, version: int | None, as_of: datetime | None, time: str) -> A:
        return load_for_read(request, cls, aggregate_id, version, as_of, time)

    return load


def _command(request: Request[Any, Any, Any]) -> CommandContext:
    return CommandContext(request)


def _given(provider: Callable[..., Any]) -> Provide:
    # Each provider reads what the app or the guard already holds: nothing to run in a thread.
    return Provide(provider, sync_to_thread=False)


DEPENDENCIES: dict[str, Provide] = {
    "care": _given(_care),
    "settings": _given(_settings),
    "views": _given(_views),
    "registry": _given(_registry),
    "supervision": _given(_supervision),
    "audit": _given(_audit),
    "accounts": _given(_accounts),
    "jobs": _given(_jobs),
    "actor": _given(_actor),
    "access": _given(_access),
    "visible": _given(_visible),
    "meta_for": _given(_meta_for),
    "record_access": _given(_record_access),
    "wait_for_views": _given(_wait_for_views),
    "expected_version": _given(_expected_version),
    "load_for_read": _given(_load_for_read),
    "command": _given(_command),
}


def resolve_in_turn(app: Litestar) -> None:
    """Resolve each handler's given values one after the other instead of together.

    Litestar resolves the dependencies of a handler that do not depend on each other as one
    batch in an anyio task group: a task for each, about 30 us of CPU each per request (a
    handler given the application and the caller paid 57 us for its two; litestar issue #4563).
    Every provider here only hands over what the app or the guard already holds, synchronously,
    so nothing is gained by running them together: each batch made of such providers becomes
    batches of one, in the same order (a later batch still comes after everything it needs).
    A batch holding any other provider is left as Litestar made it."""
    for route in app.routes:
        for _, model in getattr(route, "route_handler_map", {}).values():
            model.dependency_batches = [
                part
                for batch in model.dependency_batches
                for part in (
                    [{dependency} for dependency in batch]
                    if all(_given_at_once(dependency.provide) for dependency in batch)
                    else [batch]
                )
            ]


def _given_at_once(provide: Provide) -> bool:
    """A provider that runs in the event loop without awaiting anything and yields nothing."""
    return (
        provide.has_sync_callable
        and not provide.sync_to_thread
        and not provide.has_sync_generator_dependency
        and not provide.has_async_generator_dependency
    )
