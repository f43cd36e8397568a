"""RFC 9457 problem details: every error the API answers, mapped in one place.

Body: ``{"type", "title", "status", "detail", "instance", "errors": [{"field", "reason"}], ...}``
with ``Content-Type: application/problem+json``. ``type`` is a relative URI under
``/problems/`` naming the kind of problem (documented in docs/api.md).
"""

from __future__ import annotations

import math
import re
import traceback
from enum import Enum
from typing import Any, NamedTuple

import structlog
from eventsourcing.persistence import OperationalError, PersistenceError
from litestar import MediaType, Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)

from api.middleware import loggable_path
from application.accounts import (
    AccountLockedError,
    ActivationError,
    CsrfError,
    NoAccountError,
    PhoneTakenError,
    SecondFactorError,
    SecondFactorRequiredError,
    SessionError,
    SignInError,
    ThrottledError,
)
from application.errors import (
    AlreadyExistsError,
    InvalidTimeError,
    NotFoundError,
    UnknownReferenceError,
    VersionConflictError,
)
from domain.account import NotYoursToGrantError
from domain.base import ClosedError, DomainError, ErasedError, InactiveError
from domain.emergency import AlreadyAcknowledgedError
from domain.helper import HelperOverCapacityError
from domain.pairing import DuplicateMemberError
from domain.visit_task import (
    AlreadyClaimedError,
    ClaimedByOtherError,
    ClaimLimitError,
    NotEligibleError,
    NotHolderError,
    NotOpenYetError,
    OutsideWindowError,
)
from domain.vocabulary import label_codes
from infrastructure.personal_data import MasterKeyError
from infrastructure.spreadsheets import UploadGone, UploadNotReadable, UploadRefused, UploadTooLarge

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger("guanai.api")


class Problem(NamedTuple):
    """How a kind of refusal is answered: its status, its ``type`` under /problems/ and its title."""

    status: int
    slug: str
    title: str


# Domain and application errors carry no HTTP: this map says how each is answered. An error class
# not named here is answered as its nearest named base class (``problem_of``).
DOMAIN_PROBLEMS: dict[type[DomainError], Problem] = {
    DomainError: Problem(422, "rule-violated", "Rule violated"),
    InactiveError: Problem(409, "not-active", "Not active"),
    ClosedError: Problem(409, "closed", "Closed"),
    ErasedError: Problem(409, "erased", "Erased"),
    # the application's refusals
    NotFoundError: Problem(404, "not-found", "Not found"),
    UnknownReferenceError: Problem(422, "unknown-reference", "Unknown reference"),
    VersionConflictError: Problem(409, "version-conflict", "Version conflict"),
    AlreadyExistsError: Problem(409, "already-exists", "Already exists"),
    InvalidTimeError: Problem(422, "invalid-time", "Invalid time"),
    # visits
    AlreadyClaimedError: Problem(409, "already-claimed", "Already claimed"),
    NotEligibleError: Problem(403, "not-eligible", "Not eligible"),
    NotHolderError: Problem(403, "not-holder", "Not the holder"),
    ClaimLimitError: Problem(409, "claim-limit", "Too many open claims"),
    ClaimedByOtherError: Problem(409, "claimed-by-other", "Claimed by someone else"),
    NotOpenYetError: Problem(409, "not-open-yet", "Window not open yet"),
    OutsideWindowError: Problem(422, "outside-window", "Outside the due window"),
    # helpers, pairings, emergencies
    HelperOverCapacityError: Problem(409, "over-capacity", "Over capacity"),
    DuplicateMemberError: Problem(409, "duplicate-member", "Already a member"),
    AlreadyAcknowledgedError: Problem(409, "already-acknowledged", "Already acknowledged"),
    # accounts and sign-in
    NotYoursToGrantError: Problem(403, "forbidden", "Forbidden"),
    SignInError: Problem(401, "sign-in-failed", "Sign-in failed"),
    SecondFactorRequiredError: Problem(401, "second-factor-required", "Second factor required"),
    SecondFactorError: Problem(401, "second-factor-refused", "Second factor refused"),
    AccountLockedError: Problem(403, "account-locked", "Account locked"),
    ActivationError: Problem(422, "activation-refused", "Activation refused"),
    SessionError: Problem(401, "session-ended", "Session ended"),
    PhoneTakenError: Problem(409, "already-exists", "Already exists"),
    ThrottledError: Problem(429, "too-many-requests", "Too many requests"),
    NoAccountError: Problem(409, "not-an-account", "Not an account"),
    CsrfError: Problem(403, "csrf-refused", "CSRF token missing or wrong"),
    # uploaded spreadsheets (imports)
    UploadRefused: Problem(422, "file-refused", "File refused"),
    UploadTooLarge: Problem(413, "body-too-large", "File refused"),
    UploadNotReadable: Problem(415, "unsupported-media-type", "File refused"),
    UploadGone: Problem(410, "gone", "Gone"),
}


def problem_of(error: DomainError | type[DomainError]) -> Problem:
    """How a domain or application error is answered: its class's entry, or its nearest base's."""
    cls = error if isinstance(error, type) else type(error)
    return next(DOMAIN_PROBLEMS[c] for c in cls.__mro__ if c in DOMAIN_PROBLEMS)


class ProblemError(Exception):
    """Raised by the API layer itself for a problem it wants to answer with."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}
        self.extra = extra


def problem(
    request: Request[Any, Any, Any],
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": f"/problems/{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    if errors:
        body["errors"] = errors
    body.update({k: v for k, v in extra.items() if v is not None})
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]+)`")
_MISSING_FIELD = re.compile(r"missing required field `([^`]+)`")


def _field_of(item: dict[str, Any]) -> str:
    """Litestar's key for a body error, made into the path of the offending field."""
    key = str(item.get("key") or "")
    message = str(item.get("message") or "")
    base = "" if key in {"", "data"} else key
    for pattern in (_UNKNOWN_FIELD, _MISSING_FIELD):
        if m := pattern.search(message):
            return f"{base}.{m.group(1)}" if base else m.group(1)
    return base or "body"


def _source(source: Any) -> str:
    """Where the bad value was: Litestar names query, path, header and cookie parameters with its
    ``ParamType`` enum, whose ``str()`` is ``ParamType.QUERY``; clients read ``query``."""
    return str(source.value if isinstance(source, Enum) else source)


_ENUM_VALUE = re.compile(r"^Invalid enum value '(?P<value>.*)'")


def _reason(message: str) -> str:
    """The error's message, and for a Chinese label sent where its code belongs, the code to send."""
    m = _ENUM_VALUE.match(message)
    codes = label_codes(m["value"]) if m else []
    if not codes:
        return message
    by_code: dict[str, list[str]] = {}
    for vocabulary, code in codes:
        by_code.setdefault(code, []).append(vocabulary)
    named = " or ".join(f"`{code}` ({', '.join(vocabularies)})" for code, vocabularies in by_code.items())
    return f"{message}: {m['value'] if m else ''} is the label of {named}; send the code"


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    items = exc.extra if isinstance(exc.extra, list) else []
    errors = [
        {
            "field": _field_of(i),
            "reason": _reason(str(i.get("message", "invalid"))),
            "in": _source(i.get("source", "body")),
        }
        for i in items
        if isinstance(i, dict)
    ]
    in_body = not errors or all(e["in"] == "body" for e in errors)
    if not errors:
        # Raised without details: the body could not be decoded at all.
        return problem(request, 400, "malformed-request", "Malformed request", str(exc.detail))
    status = 422 if in_body else 400
    fields = ", ".join(e["field"] for e in errors)
    return problem(request, status, "validation-error", "Invalid request", f"invalid value for {fields}", errors=errors)


def _domain(request: Request[Any, Any, Any], exc: DomainError) -> Response[dict[str, Any]]:
    errors = [{"field": exc.field, "reason": exc.detail}] if exc.field else None
    headers = {}
    if "current_version" in exc.extra:
        headers["ETag"] = f'"{exc.extra["current_version"]}"'
    status, slug, title = problem_of(exc)
    return problem(request, status, slug, title, exc.detail, errors=errors, headers=headers, **exc.extra)


def _api(request: Request[Any, Any, Any], exc: ProblemError) -> Response[dict[str, Any]]:
    return problem(
        request, exc.status, exc.slug, exc.title, exc.detail, errors=exc.errors, headers=exc.headers, **exc.extra
    )


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    if isinstance(exc, ValidationException):
        return _validation(request, exc)
    status = exc.status_code
    headers = dict(exc.headers or {})
    if isinstance(exc, NotAuthorizedException):
        headers.setdefault("WWW-Authenticate", 'Bearer realm="guanai"')
        return problem(request, 401, "unauthenticated", "Authentication required", str(exc.detail), headers=headers)
    if isinstance(exc, PermissionDeniedException):
        return problem(request, 403, "forbidden", "Not allowed", str(exc.detail), headers=headers)
    if isinstance(exc, NotFoundException):
        return problem(request, 404, "not-found", "Not found", f"nothing at {request.url.path}", headers=headers)
    if status == 405:
        return problem(request, 405, "method-not-allowed", "Method not allowed", str(exc.detail), headers=headers)
    if status >= 500:
        log.error("http_error", status=status, path=loggable_path(request.url.path))
        return problem(request, status, "server-error", "Server error", "the server could not answer", headers=headers)
    return problem(
        request,
        status,
        "bad-request" if status == 400 else f"http-{status}",
        "Bad request",
        str(exc.detail),
        headers=headers,
    )


def _unavailable(request: Request[Any, Any, Any], exc: PersistenceError) -> Response[dict[str, Any]]:
    log.error("store_unavailable", error=type(exc).__name__)
    return problem(
        request,
        503,
        "store-unavailable",
        "Event store unavailable",
        "the event store could not be reached; nothing was written, try again shortly",
        headers={"Retry-After": "2"},
    )


def _keys_unavailable(request: Request[Any, Any, Any], exc: MasterKeyError) -> Response[dict[str, Any]]:
    # The process holds another master key than the store (not restarted after `guanai keys
    # rotate`, or misconfigured): the operator's problem, raised before anything is written.
    log.error("master_key_mismatch", detail=str(exc))
    return problem(
        request,
        503,
        "keys-unavailable",
        "Personal data keys unavailable",
        "this server cannot open the personal data keys; nothing was written, try again shortly",
        headers={"Retry-After": "5"},
    )


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    # The exception text may carry personal data: log the type and the place only.
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    log.error("unhandled_error", error=type(exc).__name__, where=where, path=loggable_path(request.url.path))
    return problem(request, 500, "server-error", "Server error", "an unexpected error occurred; it has been logged")


EXCEPTION_HANDLERS: dict[type[Exception], Any] = {
    DomainError: _domain,
    ProblemError: _api,
    HTTPException: _http,
    OperationalError: _unavailable,
    MasterKeyError: _keys_unavailable,
    Exception: _unexpected,
}

__all__ = [
    "DOMAIN_PROBLEMS",
    "EXCEPTION_HANDLERS",
    "PROBLEM_JSON",
    "MediaType",
    "Problem",
    "ProblemError",
    "problem",
    "problem_of",
]


def too_many_requests(wait: float, detail: str) -> ProblemError:
    seconds = max(1, math.ceil(wait))
    return ProblemError(
        429,
        "too-many-requests",
        "Too many requests",
        f"{detail}; retry in {seconds} s",
        headers={"Retry-After": str(seconds)},
        retry_after=seconds,
    )
