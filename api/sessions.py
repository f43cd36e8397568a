"""/auth: activation, sign-in, sessions and the second factor of accounts (``application/accounts.py``).

- ``POST /auth/activate`` ``{phone, activation_code, password}``: the person sets their password.
- ``POST /auth/sign-in`` ``{phone, password, totp_code?, recovery_code?, device_name?, session?}``.
  API clients (``session`` absent or ``"bearer"``) get ``{access_token, refresh_token, token_type,
  expires_in, account, ...}``. Browsers send ``"session": "cookie"`` and get the same session in
  cookies instead: ``guanai_access`` (the access token; HttpOnly, Secure, SameSite=Strict, path
  /), ``guanai_refresh`` (HttpOnly, Secure, SameSite=Strict, path /auth/refresh only) and
  ``guanai_csrf`` (readable by the page's script; its value goes in the ``X-CSRF-Token`` header
  of every request that changes something, and is also answered as ``csrf_token``). The body
  then carries no token.
- ``POST /auth/refresh`` ``{refresh_token}`` (or the refresh cookie and the CSRF header): a new
  pair; the old refresh token is spent, and presenting it again ends the session.
- ``POST /auth/sign-out``, ``GET /auth/me``, ``GET /auth/sessions``, ``DELETE /auth/sessions/{id}``.
- ``POST /auth/totp`` (secret, otpauth URI and QR code as SVG), ``POST /auth/totp/confirm``
  ``{totp_code}`` (answers the recovery codes, once), ``POST /auth/recovery-codes`` (new ones).
"""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
import segno
from litestar import Request, Response, delete, get, post
from litestar.datastructures import Cookie
from litestar.params import FromPath, JSONBody

from api.auth import (
    ACCESS_COOKIE,
    CSRF_COOKIE,
    CSRF_HEADER,
    REFRESH_COOKIE,
    Actor,
    client_key,
    issue_token,
    verify_token,
)
from api.dependencies import Accounts, Caller, Care
from api.problems import ProblemError
from application.accounts import (
    AccountService,
    FailureThrottle,
    IssuedToken,
    NoAccountError,
    SignedIn,
    ThrottledError,
)
from domain.account import Account
from domain.base import CommandMeta
from infrastructure.credentials import KeyStoreSealer, PostgresCredentials
from infrastructure.passwords import PasswordHasher, common_passwords

REFRESH_PATH = "/auth/refresh"

PhoneText = Annotated[
    str, msgspec.Meta(min_length=1, max_length=40, description="as typed: spaces, +86, full-width digits")
]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]  # the policy's 1,024 is checked after NFKC
CodeText = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
DeviceName = Annotated[str, msgspec.Meta(max_length=64)]


class Activate(msgspec.Struct, forbid_unknown_fields=True):
    phone: PhoneText
    activation_code: CodeText
    password: Password


class SignIn(msgspec.Struct, forbid_unknown_fields=True):
    phone: PhoneText
    password: Password
    totp_code: CodeText | None = None
    recovery_code: CodeText | None = None
    device_name: DeviceName = ""
    session: Literal["bearer", "cookie"] = "bearer"


class Refresh(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None


class TotpConfirm(msgspec.Struct, forbid_unknown_fields=True):
    totp_code: CodeText


class AccountBrief(msgspec.Struct):
    id: UUID
    role: str
    org_unit_id: UUID | None
    status: str
    subject: str
    helper_id: UUID | None
    roster_entry: str | None
    second_factor_required: bool
    second_factor_enrolled: bool
    version: int


class Tokens(msgspec.Struct):
    account: AccountBrief
    session_id: UUID
    token_type: str
    expires_in: int
    access_token: str | None = None
    refresh_token: str | None = None
    csrf_token: str | None = None
    # The role needs a second factor not enrolled yet: until POST /auth/totp/confirm (then a
    # refresh), this session reaches the /auth routes only.
    second_factor_enrolment_required: bool = False


class Me(msgspec.Struct):
    subject: str
    role: str
    org_unit_id: UUID | None
    token_id: str
    expires_at: int
    account: AccountBrief | None
    session_id: UUID | None
    restricted: bool


class SessionOut(msgspec.Struct):
    id: UUID
    device_name: str
    cookie: bool
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    current: bool


class SessionList(msgspec.Struct):
    items: list[SessionOut]
    total: int


class TotpStart(msgspec.Struct):
    secret: str
    otpauth_uri: str
    qr_svg: str  # a data: URI of the QR code as SVG, for an <img src>


class RecoveryCodes(msgspec.Struct):
    recovery_codes: list[str]  # shown once: each signs in once in place of a TOTP code
    account: AccountBrief | None = None


class Activated(msgspec.Struct):
    account: AccountBrief


def brief(a: Account) -> AccountBrief:
    return AccountBrief(
        id=a.id, role=a.role.value, org_unit_id=a.org_unit_id, status=a.status.value, subject=a.subject,
        helper_id=a.helper_id, roster_entry=a.roster_entry, second_factor_required=a.needs_second_factor,
        second_factor_enrolled=a.second_factor, version=a.version,
    )  # fmt: skip


# ---- composition (on startup) -------------------------------------------------------------------


def build_service(app: Any) -> AccountService:
    """The account service over the app's CareApplication, its own credentials pool, the token
    keys and the revocation list (both set on the app's state)."""
    state = app.state
    settings = state.settings
    ttl = timedelta(minutes=max(1, min(60, settings.access_token_minutes)))

    def issue(account: Account, session_id: UUID, *, csrf_hash: str | None, restricted: bool) -> IssuedToken:
        claims: dict[str, Any] = {"acc": str(account.id), "sid": str(session_id)}
        if csrf_hash:
            claims["cth"] = csrf_hash
        if restricted:
            claims["rst"] = True
        token = issue_token(
            state.jwt_keys, subject=account.subject, role=account.role, org_unit_id=account.org_unit_id, ttl=ttl,
            claims=claims,
        )  # fmt: skip
        actor = verify_token(state.jwt_keys, token)
        return IssuedToken(token, actor.token_id, datetime.fromtimestamp(actor.expires_at, UTC))

    def revoke(jti: str, until: datetime, *, by: str, reason: str) -> None:
        state.revocations.revoke(jti, until, revoked_by=by, reason=reason)

    free = settings.sign_in_failures_free
    return AccountService(
        app=state.care,
        credentials=PostgresCredentials(
            state.connections.database_url, pool_size=max(2, min(4, settings.db_pool_size // 3))
        ),
        hasher=PasswordHasher(),
        sealer=KeyStoreSealer(state.care.store.key_store),
        issue=issue,
        revoke=revoke,
        common_passwords=common_passwords(),
        lookup=state.care.lookup_hash,
        session_ttl=timedelta(days=max(1, settings.session_days)),
        account_throttle=FailureThrottle(free if free > 0 else 10**9),
        address_throttle=FailureThrottle(4 * free if free > 0 else 10**9),
    )


def start_accounts(app: Any) -> None:
    app.state.accounts = build_service(app)


def stop_accounts(app: Any) -> None:
    service: AccountService | None = getattr(app.state, "accounts", None)
    if service is not None:
        service.credentials.close()  # type: ignore[attr-defined]


def service_of(request: Request[Any, Any, Any]) -> AccountService:
    return request.app.state.accounts


def _meta(request: Request[Any, Any, Any], actor_id: str, role: str) -> CommandMeta:
    return CommandMeta(
        actor_id=actor_id, actor_role=role, correlation_id=request.scope.get("state", {}).get("request_id", ""),
        occurred_at=datetime.now(UTC),
    )  # fmt: skip


def _account_of(actor: Actor) -> tuple[Actor, UUID]:
    if actor.account_id is None or actor.session_id is None:
        raise NoAccountError(
            "this token was issued by an operator (`guanai token`), not by signing in: it has no account"
        )
    return actor, actor.account_id


def _throttled(e: ThrottledError) -> ProblemError:
    seconds = max(1, int(e.wait + 0.999))
    return ProblemError(
        429, "too-many-requests", "Too many requests", f"{e.detail}; retry in {seconds} s",
        headers={"Retry-After": str(seconds)}, retry_after=seconds,
    )  # fmt: skip


def _cookies(signed: SignedIn, request: Request[Any, Any, Any]) -> list[Cookie]:
    now = datetime.now(UTC)
    access_age = max(1, int((signed.access.expires_at - now).total_seconds()))
    session_age = max(1, int((signed.session.expires_at - now).total_seconds()))
    common: dict[str, Any] = {"secure": True, "samesite": "strict"}
    cookies = [
        Cookie(key=ACCESS_COOKIE, value=signed.access.token, path="/", max_age=access_age, httponly=True, **common),
        Cookie(key=REFRESH_COOKIE, value=signed.refresh_token, path=REFRESH_PATH, max_age=session_age, httponly=True,
               **common),
    ]  # fmt: skip
    if signed.csrf_token:
        cookies.append(Cookie(key=CSRF_COOKIE, value=signed.csrf_token, path="/", max_age=session_age, httponly=False,
                              **common))  # fmt: skip
    return cookies


def _cleared() -> list[Cookie]:
    common: dict[str, Any] = {"secure": True, "samesite": "strict", "max_age": 0, "value": ""}
    return [
        Cookie(key=ACCESS_COOKIE, path="/", httponly=True, **common),
        Cookie(key=REFRESH_COOKIE, path=REFRESH_PATH, httponly=True, **common),
        Cookie(key=CSRF_COOKIE, path="/", httponly=False, **common),
    ]


def _tokens(signed: SignedIn, cookie: bool, csrf: str | None) -> Tokens:
    expires_in = max(0, int((signed.access.expires_at - datetime.now(UTC)).total_seconds()))
    return Tokens(
        account=brief(signed.account), session_id=signed.session.id, token_type="Bearer", expires_in=expires_in,
        access_token=None if cookie else signed.access.token, refresh_token=None if cookie else signed.refresh_token,
        csrf_token=csrf, second_factor_enrolment_required=signed.restricted,
    )  # fmt: skip


# ---- routes ---------------------------------------------------------------------------------------


@post("/auth/activate", sync_to_thread=True, status_code=200, tags=["auth"], security=[])
def activate(request: Request[Any, Any, Any], accounts: Accounts, data: JSONBody[Activate]) -> Activated:
    """Activate a new (or reset) account with the code from its slip, choosing a password: at
    least 10 characters, not a common one. Wrong, expired or used codes answer 422 alike."""
    account = accounts.activate(
        data.phone, data.activation_code, data.password, lambda a: _meta(request, a.subject, a.role.value)
    )
    return Activated(brief(account))


@post("/auth/sign-in", sync_to_thread=True, status_code=200, tags=["auth"], security=[])
def sign_in(request: Request[Any, Any, Any], accounts: Accounts, data: JSONBody[SignIn]) -> Response[Tokens]:
    """Sign in with phone number and password (and a TOTP or recovery code when the account
    enrolled one). ``"session": "cookie"`` for browsers: the tokens come as cookies. A wrong
    number and a wrong password answer alike (401); repeated failures wait (429)."""
    cookie = data.session == "cookie"
    try:
        signed = accounts.sign_in(
            phone=data.phone, password=data.password, address=client_key(request), device_name=data.device_name,
            cookie=cookie, totp_code=data.totp_code, recovery_code=data.recovery_code,
        )  # fmt: skip
    except ThrottledError as e:
        raise _throttled(e) from None
    body = _tokens(signed, cookie, signed.csrf_token)
    return Response(body, cookies=_cookies(signed, request) if cookie else [])


@post(REFRESH_PATH, sync_to_thread=True, status_code=200, tags=["auth"], security=[])
def refresh(
    request: Request[Any, Any, Any], accounts: Accounts, data: JSONBody[Refresh | None] = None
) -> Response[Tokens]:
    """A new access and refresh token for the session (send the refresh token, or for a
    browser the refresh cookie with the X-CSRF-Token header). Each refresh token works once."""
    token = data.refresh_token if data is not None else None
    cookie = token is None
    if cookie:
        token = request.cookies.get(REFRESH_COOKIE)
    if not token:
        raise ProblemError(
            422, "validation-error", "Invalid request", "send refresh_token (or the refresh cookie)",
            errors=[{"field": "refresh_token", "reason": "missing", "in": "body"}],
        )  # fmt: skip
    signed = accounts.refresh(token, csrf_token=request.headers.get(CSRF_HEADER) if cookie else None)
    csrf = request.cookies.get(CSRF_COOKIE) if signed.session.cookie else None
    body = _tokens(signed, signed.session.cookie, csrf)
    return Response(body, cookies=_cookies(signed, request) if signed.session.cookie else [])


@post("/auth/sign-out", sync_to_thread=True, status_code=204, tags=["auth"])
def sign_out(actor: Caller, accounts: Accounts) -> Response[None]:
    """End this session: its refresh token stops at once, its access token within seconds everywhere."""
    actor, _ = _account_of(actor)
    assert actor.session_id is not None
    accounts.sign_out(actor.session_id, actor.subject)
    return Response(None, status_code=204, cookies=_cleared() if actor.via_cookie else [])


@get("/auth/me", sync_to_thread=True, tags=["auth"])
def me(care: Care, actor: Caller) -> Me:
    """Who this token speaks for: the role and scope, and the account behind a signed-in session."""
    account = care.load(Account, actor.account_id) if actor.account_id else None
    return Me(
        subject=actor.subject, role=actor.role.value, org_unit_id=actor.org_unit_id, token_id=actor.token_id,
        expires_at=actor.expires_at, account=brief(account) if account else None, session_id=actor.session_id,
        restricted=actor.restricted,
    )  # fmt: skip


@get("/auth/sessions", sync_to_thread=True, tags=["auth"])
def list_sessions(actor: Caller, accounts: Accounts) -> SessionList:
    """This account's live sessions, one per signed-in device."""
    actor, account_id = _account_of(actor)
    sessions = accounts.credentials.sessions(account_id)
    items = [
        SessionOut(id=s.id, device_name=s.device_name, cookie=s.cookie, created_at=s.created_at,
                   last_used_at=s.last_used_at, expires_at=s.expires_at, current=s.id == actor.session_id)
        for s in sessions
    ]  # fmt: skip
    return SessionList(items, len(items))


@delete("/auth/sessions/{session_id:uuid}", sync_to_thread=True, status_code=204, tags=["auth"])
def end_session(actor: Caller, accounts: Accounts, session_id: FromPath[UUID]) -> None:
    """End one of this account's sessions (a lost phone): it stops within seconds everywhere."""
    actor, account_id = _account_of(actor)
    if not accounts.end_session(account_id, session_id, actor.subject):
        raise ProblemError(404, "not-found", "Not found", f"no session with id {session_id}", kind="session")


@post("/auth/totp", sync_to_thread=True, status_code=200, tags=["auth"])
def start_totp(actor: Caller, accounts: Accounts) -> TotpStart:
    """Start enrolling an authenticator app: scan the QR code (or type the secret), then confirm
    with a code it shows (POST /auth/totp/confirm)."""
    _, account_id = _account_of(actor)
    enrolment = accounts.start_totp(account_id)
    svg = io.BytesIO()
    segno.make(enrolment.uri, error="m").save(svg, kind="svg", scale=4, xmldecl=False)
    data_uri = "data:image/svg+xml;base64," + base64.b64encode(svg.getvalue()).decode()
    return TotpStart(secret=enrolment.secret, otpauth_uri=enrolment.uri, qr_svg=data_uri)


@post("/auth/totp/confirm", sync_to_thread=True, status_code=200, tags=["auth"])
def confirm_totp(
    request: Request[Any, Any, Any], actor: Caller, accounts: Accounts, data: JSONBody[TotpConfirm]
) -> RecoveryCodes:
    """Confirm the authenticator app with a code it shows; answers ten recovery codes, once.
    A restricted session (a role that needs the second factor) refreshes to full access."""
    actor, account_id = _account_of(actor)
    account, codes = accounts.confirm_totp(account_id, data.totp_code, _meta(request, actor.subject, actor.role.value))
    return RecoveryCodes(codes, brief(account))


@post("/auth/recovery-codes", sync_to_thread=True, status_code=200, tags=["auth"])
def recovery_codes(actor: Caller, accounts: Accounts) -> RecoveryCodes:
    """Ten new recovery codes (the old ones stop working), shown once."""
    _, account_id = _account_of(actor)
    return RecoveryCodes(accounts.new_recovery_codes(account_id))


ROUTES = [
    activate,
    sign_in,
    refresh,
    sign_out,
    me,
    list_sessions,
    end_session,
    start_totp,
    confirm_totp,
    recovery_codes,
]
