"""Bearer tokens and the actor behind each request.

Tokens are HS256-signed JWTs (PyJWT) carrying ``sub`` (who), ``role`` (an ActorRole), ``org``
(the org unit the role is scoped to; absent for administrators), ``iat``, ``exp`` and ``jti``.
They are stateless so that any API process can check them; revocation and key rotation come
with the access-control work. ``guanai token`` issues one for an operator.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import msgspec
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from domain.vocabulary import ActorRole

ISSUER = "guanai"
ALGORITHM = "HS256"
MIN_SECRET_LENGTH = 32


class Actor(msgspec.Struct, frozen=True):
    subject: str
    role: ActorRole
    org_unit_id: uuid.UUID | None
    token_id: str


class TokenError(ValueError):
    """A token could not be issued or was not accepted."""


def load_or_create_secret(configured: str | None, data_dir: Path) -> str:
    """The configured signing key, or one generated once and kept in the data directory."""
    if configured:
        if len(configured) < MIN_SECRET_LENGTH:
            raise TokenError(f"GUANAI_JWT_SECRET must be at least {MIN_SECRET_LENGTH} characters")
        return configured
    path = data_dir / "jwt-secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.write_text(secret)
    path.chmod(0o600)
    return secret


def issue_token(
    secret: str,
    *,
    subject: str,
    role: ActorRole,
    org_unit_id: uuid.UUID | None,
    ttl: timedelta,
    now: datetime | None = None,
) -> str:
    if role != ActorRole.ADMINISTRATOR and org_unit_id is None and role != ActorRole.SYSTEM:
        raise TokenError(f"a {role} token must be scoped to an org unit")
    now = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": subject,
        "role": role.value,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    if org_unit_id is not None:
        claims["org"] = str(org_unit_id)
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str) -> Actor:
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], issuer=ISSUER, options={"require": ["exp", "iat", "sub", "iss"]}
        )
        role = ActorRole(claims["role"])
        org = uuid.UUID(claims["org"]) if claims.get("org") else None
    except jwt.ExpiredSignatureError:
        raise TokenError("the token has expired; ask for a new one") from None
    except (jwt.InvalidTokenError, KeyError, ValueError, TypeError):
        raise TokenError("the token is not valid") from None
    return Actor(subject=str(claims["sub"]), role=role, org_unit_id=org, token_id=str(claims.get("jti", "")))


def actor_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Actor:
    """The request's actor; raises 401 when there is none."""
    actor = connection.scope.get("state", {}).get("actor")
    if actor is not None:
        return actor
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthorizedException("send a bearer token: 'Authorization: Bearer <token>' (see `guanai token`)")
    try:
        actor = verify_token(connection.app.state.jwt_secret, token.strip())
    except TokenError as e:
        raise NotAuthorizedException(str(e)) from None
    connection.scope.setdefault("state", {})["actor"] = actor
    structlog_bind(actor)
    return actor


def structlog_bind(actor: Actor) -> None:
    import structlog

    # Ids and roles only: never names or other personal data.
    structlog.contextvars.bind_contextvars(actor=actor.subject, role=actor.role.value)


def requires(*roles: ActorRole) -> Any:
    """A guard that lets only the given roles through (coarse; scoping comes per object)."""
    allowed = frozenset(roles)

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        actor = actor_of(connection)
        if actor.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise PermissionDeniedException(f"a {actor.role.value} may not do this; allowed: {names}")

    return guard


def authenticated(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    actor_of(connection)


# Who may change what (coarse role checks; scoping by org unit is enforced per object later).
REGISTRY_ADMINS: Iterable[ActorRole] = (ActorRole.ADMINISTRATOR, ActorRole.COUNTY_SUPERVISOR)
PERSON_WRITERS = (
    ActorRole.ADMINISTRATOR,
    ActorRole.COUNTY_SUPERVISOR,
    ActorRole.TOWNSHIP_SUPERVISOR,
    ActorRole.VILLAGE_CADRE,
    ActorRole.CHILD_DIRECTOR,
)
HELPER_WRITERS = (ActorRole.ADMINISTRATOR, ActorRole.COUNTY_SUPERVISOR, ActorRole.TOWNSHIP_SUPERVISOR)
PAIRING_WRITERS = PERSON_WRITERS
