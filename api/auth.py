"""Bearer tokens and the actor behind each request.

Tokens are HS256-signed JWTs (PyJWT) carrying ``sub`` (who), ``role`` (an ActorRole), ``org``
(the org unit the role is scoped to; absent for administrators), ``iat``, ``exp`` and ``jti``,
with the signing key's id as ``kid`` in the header. Any API process can check them:

- **Rotation**: a ``KeyRing`` holds the current key (``GUANAI_JWT_SECRET``, which signs) and the
  previous ones (``GUANAI_JWT_PREVIOUS_SECRETS``, which only verify until they are removed).
- **Revocation**: ``revoked_tokens`` lists token ids refused before their expiry, checked on
  every request against a copy each process refreshes every few seconds (``api/revocations.py``).
- **Failures** are counted per client address; past the limit the address gets 429 for a while
  (the limiter is ``api/security.py``'s, found on the app's state).

``guanai token`` issues a token for an operator and ``guanai token revoke`` revokes one. What
an actor may do, and to which objects, is decided by ``api/access/``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import jwt
import msgspec
import structlog
from litestar import Request, post
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.params import JSONBody

from api.problems import ProblemError, too_many_requests
from api.revocations import MAX_TOKEN_TTL, RevocationList, RevocationUnavailable, revoke_until
from domain.vocabulary import ActorRole

ISSUER = "guanai"
ALGORITHM = "HS256"
MIN_SECRET_LENGTH = 32
# The browser session (api/sessions.py): an HttpOnly access cookie, the refresh cookie scoped to
# the refresh route, and a CSRF token readable by the page's script, echoed in a header.
ACCESS_COOKIE = "guanai_access"
REFRESH_COOKIE = "guanai_refresh"
CSRF_COOKIE = "guanai_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

log = structlog.get_logger("guanai.api")

__all__ = [
    "ALGORITHM",
    "MAX_TOKEN_TTL",
    "Actor",
    "KeyRing",
    "RevocationList",
    "TokenError",
    "actor_of",
    "issue_token",
    "key_ring",
    "load_or_create_secret",
    "revoke_token",
    "verify_token",
]


class Actor(msgspec.Struct, frozen=True):
    subject: str
    role: ActorRole
    org_unit_id: uuid.UUID | None
    token_id: str
    expires_at: int = 0  # the token's exp (epoch seconds)
    # A signed-in account's token (api/sessions.py) also names the account and its session;
    # a cookie session's names the hash of its CSRF token; ``restricted``: the role needs a
    # second factor the account has not enrolled yet, so only the /auth routes are open.
    account_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    csrf_hash: str | None = None
    restricted: bool = False
    via_cookie: bool = False


class TokenError(ValueError):
    """A token could not be issued or was not accepted."""


def load_or_create_secret(configured: str | None, data_dir: Path) -> str:
    """The configured signing key, or one generated once and kept in the data directory."""
    if configured:
        _check_length(configured, "GUANAI_JWT_SECRET")
        return configured
    path = data_dir / "jwt-secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.write_text(secret)
    path.chmod(0o600)
    return secret


def _check_length(secret: str, name: str) -> None:
    if len(secret) < MIN_SECRET_LENGTH:
        raise TokenError(f"{name} must be at least {MIN_SECRET_LENGTH} characters")


def key_id(secret: str) -> str:
    """A key's id: derived from the key, so every process names the same key alike."""
    return hashlib.sha256(b"guanai-jwt-kid:" + secret.encode()).hexdigest()[:16]


class KeyRing:
    """The signing key and the previous keys that still verify, by key id."""

    def __init__(self, current: str, previous: Iterable[str] = ()) -> None:
        _check_length(current, "GUANAI_JWT_SECRET")
        self.current = current
        self.current_kid = key_id(current)
        self._keys = {self.current_kid: current}
        # Tokens this ring has verified, by their exact text: a client sends the same token with
        # every request, and checking its signature and claims again cost a tenth of the API's
        # CPU per command. Expiry is checked at each use; revocation is checked by the caller.
        self.verified: dict[str, Actor] = {}
        for old in previous:
            _check_length(old, "every key of GUANAI_JWT_PREVIOUS_SECRETS")
            self._keys.setdefault(key_id(old), old)

    def get(self, kid: str) -> str | None:
        return self._keys.get(kid)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)


def key_ring(keys: str | KeyRing, previous: str | Iterable[str] = ()) -> KeyRing:
    """A KeyRing from a ring, or from the current key and the previous ones (comma-separated)."""
    if isinstance(keys, KeyRing):
        return keys
    if isinstance(previous, str):
        previous = [p.strip() for p in previous.split(",") if p.strip()]
    return KeyRing(keys, previous)


def issue_token(
    secret: str | KeyRing,
    *,
    subject: str,
    role: ActorRole,
    org_unit_id: uuid.UUID | None,
    ttl: timedelta,
    now: datetime | None = None,
    claims: dict[str, Any] | None = None,
) -> str:
    if role != ActorRole.ADMINISTRATOR and org_unit_id is None and role != ActorRole.SYSTEM:
        raise TokenError(f"a {role} token must be scoped to an org unit")
    if not timedelta(0) < ttl <= MAX_TOKEN_TTL:
        raise TokenError(f"a token lives at most {MAX_TOKEN_TTL.days} days")
    ring = key_ring(secret)
    now = now or datetime.now(UTC)
    body: dict[str, Any] = {
        **(claims or {}),
        "iss": ISSUER,
        "sub": subject,
        "role": role.value,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    if org_unit_id is not None:
        body["org"] = str(org_unit_id)
    return jwt.encode(body, ring.current, algorithm=ALGORITHM, headers={"kid": ring.current_kid})


def _decode(ring: KeyRing, token: str, *, verify_exp: bool = True) -> dict[str, Any]:
    kid = jwt.get_unverified_header(token).get("kid")
    if kid is None:
        candidates = list(ring)  # tokens from before key ids: try every key still accepted
    elif isinstance(kid, str) and ring.get(kid) is not None:
        candidates = [ring.get(kid)]  # type: ignore[list-item]
    else:
        raise TokenError("the token was signed with a key that is no longer accepted; ask for a new one")
    for n, secret in enumerate(candidates):
        try:
            return jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "iss", "jti"], "verify_exp": verify_exp},
            )
        except jwt.InvalidSignatureError:
            if n == len(candidates) - 1:
                raise
    raise jwt.InvalidTokenError("no key")


VERIFIED_TOKENS = 10_000  # tokens a ring remembers as verified before it starts over


def verify_token(secret: str | KeyRing, token: str) -> Actor:
    ring = key_ring(secret)
    known = ring.verified.get(token)
    if known is not None:
        if known.expires_at <= time.time():
            ring.verified.pop(token, None)
            raise TokenError("the token has expired; ask for a new one")
        return known
    actor = _verify(ring, token)
    if len(ring.verified) >= VERIFIED_TOKENS:
        ring.verified.clear()
    ring.verified[token] = actor
    return actor


def _verify(ring: KeyRing, token: str) -> Actor:
    try:
        claims = _decode(ring, token)
        role = ActorRole(claims["role"])
        org = uuid.UUID(claims["org"]) if claims.get("org") else None
        issued, expires = int(claims["iat"]), int(claims["exp"])
        if expires - issued > MAX_TOKEN_TTL.total_seconds():
            raise ValueError("lives too long")
        account = uuid.UUID(claims["acc"]) if claims.get("acc") else None
        session = uuid.UUID(claims["sid"]) if claims.get("sid") else None
    except TokenError:
        raise
    except jwt.ExpiredSignatureError:
        raise TokenError("the token has expired; ask for a new one") from None
    except (jwt.InvalidTokenError, KeyError, ValueError, TypeError, OverflowError, AttributeError):
        raise TokenError("the token is not valid") from None
    return Actor(
        subject=str(claims["sub"]),
        role=role,
        org_unit_id=org,
        token_id=str(claims["jti"]),
        expires_at=expires,
        account_id=account,
        session_id=session,
        csrf_hash=claims.get("cth") if isinstance(claims.get("cth"), str) else None,
        restricted=claims.get("rst") is True,
    )


def client_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """Who is knocking, for rate limits: the client address (uvicorn applies trusted proxies)."""
    return connection.client.host if connection.client else "unknown"


def _refuse(connection: ASGIConnection[Any, Any, Any, Any], reason: str) -> NotAuthorizedException:
    limiter = getattr(connection.app.state, "auth_limiter", None)
    if limiter is not None:
        limiter.take(client_key(connection))
    log.info("token_refused", reason=reason)
    return NotAuthorizedException(reason)


def actor_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Actor:
    """The request's actor; raises 401 when there is none (429 after too many failures)."""
    actor = connection.scope.get("state", {}).get("actor")
    if actor is not None:
        return actor
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    via_cookie = False
    if not header and (cookie := connection.cookies.get(ACCESS_COOKIE)):
        token, scheme, via_cookie = cookie, "bearer", True
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthorizedException(
            "sign in (POST /auth/sign-in), or send a bearer token: 'Authorization: Bearer <token>'"
        )
    state = connection.app.state
    limiter = getattr(state, "auth_limiter", None)
    if limiter is not None and (wait := limiter.wait_time(client_key(connection))) > 0:
        raise too_many_requests(wait, "too many failed authentications from this address")
    try:
        actor = verify_token(getattr(state, "jwt_keys", None) or state.jwt_secret, token.strip())
    except TokenError as e:
        raise _refuse(connection, str(e)) from None
    revocations: RevocationList | None = getattr(state, "revocations", None)
    if revocations is not None:
        try:
            revoked = revocations.is_revoked(actor.token_id)
        except RevocationUnavailable:
            raise ProblemError(
                503,
                "store-unavailable",
                "Event store unavailable",
                "revoked tokens cannot be checked just now; try again shortly",
                headers={"Retry-After": "2"},
            ) from None
        if revoked:
            raise _refuse(connection, "the token has been revoked; ask for a new one")
    if via_cookie:
        actor = msgspec.structs.replace(actor, via_cookie=True)
        if connection.scope.get("method", "GET") not in SAFE_METHODS:
            check_csrf(connection, actor)
    connection.scope.setdefault("state", {})["actor"] = actor
    structlog_bind(actor)
    return actor


def check_csrf(connection: ASGIConnection[Any, Any, Any, Any], actor: Actor) -> None:
    """A state-changing request authenticated by the session cookie must echo the session's
    CSRF token: in the ``X-CSRF-Token`` header, or (a server-rendered form, parsed by the web
    layer before the guard) as ``csrf_token`` put in the request's scope state. A cross-site page
    can make the browser send the cookie, but cannot read the token."""
    sent = connection.headers.get(CSRF_HEADER) or connection.scope.get("state", {}).get("csrf_token")
    if not (
        sent and actor.csrf_hash and hmac.compare_digest(hashlib.sha256(sent.encode()).hexdigest(), actor.csrf_hash)
    ):
        raise ProblemError(
            403,
            "csrf-refused",
            "CSRF token missing or wrong",
            f"a request signed in by cookie that changes something sends the {CSRF_COOKIE} cookie's value"
            f" in the {CSRF_HEADER} header (or a csrf_token form field)",
        )


def structlog_bind(actor: Actor) -> None:
    # Ids and roles only: never names or other personal data.
    structlog.contextvars.bind_contextvars(actor=actor.subject, role=actor.role.value)


# ---- revoking tokens ----------------------------------------------------------------------

TokenId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="a token's jti")]


class RevokeRequest(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    jti: TokenId | None = None
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)] | None = None


class Revoked(msgspec.Struct):
    jti: str
    expires_at: datetime  # the row is kept until then; the token could not be used after it anyway
    newly_revoked: bool


def _invalid(field: str, reason: str) -> ProblemError:
    errors = [{"field": field, "reason": reason, "in": "body"}]
    return ProblemError(422, "validation-error", "Invalid request", f"invalid value for {field}", errors=errors)


@post("/auth/revoke", sync_to_thread=True, status_code=200, tags=["auth"])
def revoke_token(request: Request[Any, Any, Any], data: JSONBody[RevokeRequest]) -> Revoked:
    """Revoke a bearer token before its expiry (administrators): send its ``jti`` or the token.

    Every API process refuses it within ``GUANAI_REVOCATION_CACHE_SECONDS`` (this one at once).
    With a ``jti`` alone the revocation is kept for the longest lifetime a token may have."""
    if (data.jti is None) == (data.token is None):
        raise _invalid("jti", "send either jti or token")
    expires_at = None
    jti = data.jti
    if data.token is not None:
        try:
            claims = _decode(key_ring(request.app.state.jwt_keys), data.token, verify_exp=False)
            jti, expires_at = str(claims["jti"]), datetime.fromtimestamp(int(claims["exp"]), UTC)
        except (jwt.InvalidTokenError, TokenError, KeyError, ValueError, TypeError, OverflowError):
            raise _invalid("token", "not a token issued by this service") from None
    assert jti is not None
    until = revoke_until(expires_at)
    actor = actor_of(request)
    new = request.app.state.revocations.revoke(jti, until, revoked_by=actor.subject, reason=data.reason)
    log.info("token_revoked", jti=jti, by=actor.subject)
    return Revoked(jti=jti, expires_at=until, newly_revoked=new)
