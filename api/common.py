"""What every controller shares: the command context of a request, versions, paging, positions."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar
from uuid import UUID

import msgspec
from litestar import Request, Response
from litestar.params import QueryParameter

from api.access import loaded
from api.auth import actor_of
from api.problems import ProblemError
from application.accounts import AccountService
from application.care import CareApplication, CommandResult, check_occurred_at
from domain.base import CommandMeta
from infrastructure.audit import Audit
from infrastructure.settings import Settings

T = TypeVar("T")
A = TypeVar("A")

# Free text limits: generous for real notes, small enough that a body cannot be abused.
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
ShortText = Annotated[str, msgspec.Meta(max_length=200)]
LongText = Annotated[str, msgspec.Meta(max_length=2000)]
Phone = Annotated[str, msgspec.Meta(pattern=r"^\+?[0-9][0-9\- ]{4,19}$")]
Code = Annotated[str, msgspec.Meta(pattern=r"^\d{12}$", description="12-digit statistical division code")]

Limit = Annotated[int, QueryParameter(ge=1, le=500, description="page size")]
Offset = Annotated[int, QueryParameter(ge=0, le=10_000_000, description="rows to skip")]
MinPosition = Annotated[
    int | None,
    QueryParameter(
        ge=0,
        le=2**62,
        description="wait until the views include this position (from a command's response)",
    ),
]


class Page(msgspec.Struct, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int
    position: int  # the views' position when read


class Written(msgspec.Struct):
    """Fields every command answer carries beside the resource."""

    id: UUID
    version: int
    position: int | None


def app_of(request: Request[Any, Any, Any]) -> CareApplication:
    return request.app.state.care


def settings_of(request: Request[Any, Any, Any]) -> Settings:
    return request.app.state.settings


def audit_of(request: Request[Any, Any, Any]) -> Audit:
    return request.app.state.audit


def access_fields(request: Request[Any, Any, Any]) -> dict[str, str]:
    """What the access log records of this request beside the persons: its actor, role,
    endpoint and request id."""
    actor = actor_of(request)
    return {
        "actor_id": actor.subject,
        "actor_role": actor.role.value,
        "endpoint": f"{request.method} {request.scope.get('path_template') or request.url.path}",
        "request_id": str(request.scope.get("state", {}).get("request_id", "")),
    }


def record_access(request: Request[Any, Any, Any], *person_ids: UUID) -> None:
    """Record that this request's actor reads these persons' personal data (or timeline)."""
    audit_of(request).record_access(person_ids, **access_fields(request))


def meta_for(request: Request[Any, Any, Any], occurred_at: datetime | None) -> CommandMeta:
    """The actor, correlation id and (validated) occurred_at of a command."""
    actor = actor_of(request)
    settings = settings_of(request)
    now = datetime.now(UTC)
    when = (
        now
        if occurred_at is None
        else check_occurred_at(
            occurred_at, now, skew_seconds=settings.clock_skew_seconds, max_backdate_days=settings.max_backdate_days
        )
    )
    return CommandMeta(
        actor_id=actor.subject,
        actor_role=actor.role.value,
        correlation_id=request.scope.get("state", {}).get("request_id", ""),
        occurred_at=when,
    )


class CommandContext:
    """What a command's handler takes from its request, in one: the application (and its account
    service), the command's meta (actor, correlation id, checked ``occurred_at``), the version ``If-Match`` names, the
    access log, and the aggregates the access guard read for this request, which ``run`` hands
    to the command so that it does not read them again."""

    __slots__ = ("_access", "_care", "request")

    def __init__(self, request: Request[Any, Any, Any]) -> None:
        self.request = request
        self._care = app_of(request)
        self._access = request.scope.get("state", {}).get("access")

    def _settled(self) -> None:
        # The access guard may leave its check to the handler's thread (api/access/guard.py):
        # nothing of the request is given out before it has passed.
        if self._access is not None:
            self._access.settle()

    @property
    def care(self) -> CareApplication:
        self._settled()
        return self._care

    @property
    def accounts(self) -> AccountService:
        """The account service (application/accounts.py), over the same application."""
        self._settled()
        return self.request.app.state.accounts  # type: ignore[no-any-return]

    def meta(self, occurred_at: datetime | None) -> CommandMeta:
        self._settled()
        return meta_for(self.request, occurred_at)

    def expected_version(self) -> int | None:
        self._settled()
        return expected_version(self.request)

    def record_access(self, *person_ids: UUID) -> None:
        self._settled()
        record_access(self.request, *person_ids)

    def run(self, command: Callable[[], T]) -> T:
        """Run a command (in the handler's thread) with what the guard loaded handed to it."""
        self._settled()
        if self._access is None:
            return command()
        with self._care.given(self._access.aggregates()):
            return command()


_ETAG = re.compile(r'^\s*(?:W/)?"?(\d{1,12})"?\s*$')


def expected_version(request: Request[Any, Any, Any]) -> int | None:
    """The version named by ``If-Match`` (as sent back from a GET's ETag), if any."""
    value = request.headers.get("if-match")
    if value is None or value.strip() == "*":
        return None
    m = _ETAG.match(value)
    if not m:
        raise ProblemError(
            400,
            "validation-error",
            "Invalid request",
            'If-Match must be a version as given in the ETag, e.g. "3"',
            errors=[{"field": "If-Match", "reason": "not a version", "in": "header"}],
        )
    return int(m.group(1))


def wait_for_views(request: Request[Any, Any, Any], min_position: int | None) -> int:
    """Block (briefly) until the views reach ``min_position``; return the views' position."""
    projector = request.app.state.projector
    if min_position is not None:
        latest = app_of(request).recorder.max_notification_id() or 0
        if min_position > latest:
            raise ProblemError(
                400,  # a query error, like every other (README: API conventions)
                "validation-error",
                "Invalid request",
                f"min_position {min_position} lies beyond the last recorded position {latest}",
                errors=[{"field": "min_position", "reason": "beyond the last recorded position", "in": "query"}],
            )
        if not projector.wait_for(min_position, timeout=settings_of(request).read_wait_seconds):
            raise ProblemError(
                503,
                "views-catching-up",
                "Views still catching up",
                f"the views have not yet reached position {min_position}; retry shortly",
                headers={"Retry-After": "1"},
                views_position=projector.position(),
            )
    return projector.position()


AsOf = Annotated[datetime | None, QueryParameter(description="state as of this instant (RFC 3339 with offset)")]
TimeAxis = Annotated[
    str,
    QueryParameter(
        pattern="^(recorded|occurred)$",
        description="recorded: what the system knew at as_of; occurred: what had happened by as_of",
    ),
]
Version = Annotated[int | None, QueryParameter(ge=1, le=2**31, description="state as of this version")]


def load_for_read(
    request: Request[Any, Any, Any],
    cls: type[A],
    aggregate_id: UUID,
    version: int | None,
    as_of: datetime | None,
    time: str,
) -> A:
    if as_of is not None and as_of.tzinfo is None:
        raise ProblemError(
            400,
            "validation-error",
            "Invalid request",
            "as_of needs a UTC offset, e.g. 2026-03-01T09:30:00+08:00",
            errors=[{"field": "as_of", "reason": "no UTC offset", "in": "query"}],
        )
    if version is None and as_of is None and (agg := loaded(request, cls, aggregate_id)) is not None:
        return agg  # the access guard loaded it a moment ago for this very request
    return app_of(request).load_as_of(cls, aggregate_id, version=version, at=as_of, axis=time)


def written(result: CommandResult) -> dict[str, Any]:
    return {"version": result.version, "position": result.position}


def etag(version: int) -> dict[str, str]:
    return {"ETag": f'"{version}"'}


def created_response(body: Any, result: CommandResult, version: int, location: str) -> Response[Any]:
    """The answer to a create: 201 with its Location, or 200 when the same create came again."""
    return Response(body, status_code=201 if result.created else 200, headers={**etag(version), "Location": location})
