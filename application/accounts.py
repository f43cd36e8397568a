"""Accounts and sign-in: the commands on ``Account`` aggregates, and the service that keeps their
secrets and sessions beside them.

``AccountCommands`` is mixed into CareApplication (``application/care.py``) like the emergency
and visit commands: open, activate, grant a role, lock, unlock, reset, enrol a second factor,
close. ``AccountService`` is what the API calls: it decides with those commands and keeps the
secrets in a ``Credentials`` store (a port; ``infrastructure/credentials.py`` is the PostgreSQL
one), so no secret is ever an event.

- **Open**: the phone number's lookup hash is reserved first (one account per number), then
  the account is saved, then the activation code's hash is stored. The code is answered once.
- **Activate**: phone + code + password. Five wrong codes void the code (a reset issues another).
- **Sign in**: phone + password (+ TOTP code or a recovery code when the account enrolled one).
  An unknown number hashes a dummy password, so it answers like a wrong password, in the same
  time. Failures are throttled per account and per address with doubling waits (429).
- **Sessions**: a short access token (the API's JWT with the account's role and scope, the
  session id ``sid`` and the account ``acc``) and a rotating refresh token stored hashed. A
  refresh token used twice ends its session: one of the two holders stole it.
- **Changes take effect everywhere**: a role change revokes the access token of each live
  session (the next refresh carries the new role); a lock, reset or closure ends the sessions
  too. Revocations travel by the API's revoked-token list, so every process sees them within
  ``GUANAI_REVOCATION_CACHE_SECONDS``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote
from uuid import UUID, uuid4

from domain.account import (
    Account,
    AccountError,
    AccountStatus,
    normalise_password,
    normalise_phone,
)
from domain.base import CommandMeta, DomainError
from domain.helper import Helper
from domain.org_unit import OrgUnit
from domain.vocabulary import ActorRole

ACTIVATION_ATTEMPTS = 5
RECOVERY_CODES = 10
TOTP_STEP = 30
TOTP_WINDOW = 1  # steps either side accepted: phones' clocks drift


# ---- errors a client can cause --------------------------------------------------------------


class SignInError(DomainError):
    """Phone number or password wrong, or no such account: one answer for all three."""


class SecondFactorRequiredError(DomainError):
    """The password was right; the account signs in with a second factor, which was not sent."""


class SecondFactorError(DomainError):
    """The second factor (TOTP or recovery code) is wrong, expired or used, or was never enrolled."""


class AccountLockedError(DomainError):
    """The account is not active (locked, or not yet activated): it cannot sign in."""


class ActivationError(DomainError):
    """Wrong, expired or used activation code (or no account with that phone: the same answer)."""


class SessionError(DomainError):
    """The refresh token is unknown, used, expired, or its session ended."""


class PhoneTakenError(DomainError):
    """Another account already has this phone number."""


class ThrottledError(DomainError):
    """Too many attempts from this address or for this account; ``wait`` seconds until the next."""

    def __init__(self, detail: str, wait: float) -> None:
        super().__init__(detail)
        self.wait = wait


class NoAccountError(DomainError):
    """The token is an operator's or a machine's (``guanai token``), not an account session."""


# ---- ports -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Login:
    account_id: UUID
    password_hash: str | None
    activation_hash: bytes | None
    activation_attempts: int
    totp_secret: bytes | None  # sealed
    totp_pending: bytes | None  # sealed, awaiting confirmation
    totp_last_step: int
    recovery_hashes: list[bytes]


@dataclass(frozen=True)
class Session:
    id: UUID
    account_id: UUID
    device_name: str
    cookie: bool
    csrf_hash: bytes | None
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    access_jti: str | None
    access_expires_at: datetime | None


class Credentials(Protocol):
    """Where secrets and sessions are kept (never in events)."""

    def reserve_phone(self, account_id: UUID, phone_hash: bytes) -> bool: ...
    def release_phone(self, account_id: UUID) -> None: ...
    def account_by_phone(self, phone_hash: bytes) -> UUID | None: ...
    def login(self, account_id: UUID) -> Login | None: ...
    def set_activation(self, account_id: UUID, code_hash: bytes | None) -> None: ...
    def count_activation_failure(self, account_id: UUID) -> int: ...
    def set_password(self, account_id: UUID, password_hash: str | None) -> None: ...
    def clear_secrets(self, account_id: UUID) -> None: ...
    def set_totp_pending(self, account_id: UUID, sealed: bytes | None) -> None: ...
    def confirm_totp(self, account_id: UUID, step: int, recovery_hashes: list[bytes]) -> None: ...
    def use_totp_step(self, account_id: UUID, step: int) -> bool: ...
    def use_recovery_code(self, account_id: UUID, code_hash: bytes) -> bool: ...
    def set_recovery_codes(self, account_id: UUID, hashes: list[bytes]) -> None: ...
    def open_session(self, session: Session, refresh_hash: bytes) -> None: ...
    def session(self, session_id: UUID) -> Session | None: ...
    def sessions(self, account_id: UUID) -> list[Session]: ...
    def refresh(
        self, refresh_hash: bytes, decide: Callable[[Session], tuple[bytes, str, datetime] | None]
    ) -> tuple[Session | None, bool]: ...
    def end_session(self, session_id: UUID, reason: str) -> Session | None: ...
    def end_sessions(self, account_id: UUID, reason: str) -> list[Session]: ...
    def record_sign_in(self, account_id: UUID | None, outcome: str, session_id: UUID | None = None) -> None: ...
    def sign_ins(self, account_id: UUID, limit: int) -> list[dict[str, Any]]: ...


class Hasher(Protocol):
    def hash(self, password: str) -> str: ...
    def verify(self, stored: str | None, password: str) -> bool: ...
    def verify_dummy(self, password: str) -> None: ...
    def needs_rehash(self, stored: str) -> bool: ...


class Sealer(Protocol):
    """Encrypts a secret under the account's own data key (``account:<id>``)."""

    def seal(self, account_id: UUID, secret: bytes) -> bytes: ...
    def open(self, account_id: UUID, sealed: bytes) -> bytes: ...


@dataclass(frozen=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: datetime


class TokenIssuer(Protocol):
    def __call__(
        self, account: Account, session_id: UUID, *, csrf_hash: str | None, restricted: bool
    ) -> IssuedToken: ...


class Revoker(Protocol):
    def __call__(self, jti: str, until: datetime, *, by: str, reason: str) -> None: ...


# ---- throttling --------------------------------------------------------------------------------


class FailureThrottle:
    """Failed attempts per key: ``free`` of them cost nothing; each one after doubles the wait
    before the next attempt (1 s, 2 s, 4 s ... at most ``cap`` s). A success forgets the key.
    In-process, like the API's other limits: N API processes make the limit N times looser."""

    def __init__(self, free: int, *, cap: float = 900.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.free, self.cap, self.clock = free, cap, clock
        self._failures: dict[str, tuple[int, float]] = {}  # key -> (count, blocked until)
        self._lock = threading.Lock()

    def wait(self, key: str) -> float:
        with self._lock:
            _, until = self._failures.get(key, (0, 0.0))
        return max(0.0, until - self.clock())

    def failed(self, key: str) -> float:
        """Count a failure; the wait it imposes before the next attempt (0: none yet)."""
        with self._lock:
            count, _ = self._failures.get(key, (0, 0.0))
            count += 1
            wait = min(self.cap, 2.0 ** (count - self.free - 1)) if count > self.free else 0.0
            if len(self._failures) > 100_000:
                self._failures.clear()  # a flood of fresh keys: forget rather than grow without bound
            self._failures[key] = (count, self.clock() + wait if wait else 0.0)
            return wait

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


# ---- codes -------------------------------------------------------------------------------------


def new_activation_code() -> str:
    """12 digits in groups of four: easy to read out and type on any phone (40 bits; five
    tries, 72 hours, hashed under a key the database does not hold)."""
    digits = f"{secrets.randbelow(10**12):012d}"
    return f"{digits[:4]}-{digits[4:8]}-{digits[8:]}"


def normalise_code(code: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKC", code) if c.isalnum()).lower()


def new_recovery_codes() -> list[str]:
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return ["".join(secrets.choice(alphabet) for _ in range(10)) for _ in range(RECOVERY_CODES)]


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def totp_at(secret: bytes, step: int) -> str:
    """RFC 6238 (HMAC-SHA1, 6 digits) for one time step."""
    mac = hmac.new(secret, step.to_bytes(8, "big"), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def totp_step_of(secret: bytes, code: str, now: float) -> int | None:
    """The time step ``code`` belongs to, within the window around ``now``; None: no match."""
    code = normalise_code(code)
    current = int(now) // TOTP_STEP
    for step in range(current - TOTP_WINDOW, current + TOTP_WINDOW + 1):
        if hmac.compare_digest(totp_at(secret, step), code):
            return step
    return None


# ---- answers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Opened:
    account: Account
    activation_code: str | None  # None: the same create again, the code is not shown twice
    position: int | None
    created: bool


@dataclass(frozen=True)
class SignedIn:
    account: Account
    session: Session
    access: IssuedToken
    refresh_token: str
    csrf_token: str | None
    restricted: bool  # the role needs a second factor not yet enrolled: only /auth routes


@dataclass(frozen=True)
class TotpEnrolment:
    secret: str  # base32, for typing in by hand
    uri: str  # otpauth:// for the QR code


@dataclass
class AccountService:
    """Everything the API does with accounts, over the application, the credentials and the tokens."""

    app: Any  # CareApplication (AccountCommands and its loading)
    credentials: Credentials
    hasher: Hasher
    sealer: Sealer
    issue: TokenIssuer
    revoke: Revoker
    common_passwords: frozenset[str]
    lookup: Callable[[str, str], bytes]
    session_ttl: timedelta = timedelta(days=30)
    account_throttle: FailureThrottle = field(default_factory=lambda: FailureThrottle(5))
    address_throttle: FailureThrottle = field(default_factory=lambda: FailureThrottle(20))
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    issuer_name: str = "关爱 Guanai"

    # -- administration --

    def open(
        self,
        *,
        id: UUID,
        role: ActorRole,
        org_unit_id: UUID | None,
        phone: str,
        display_name: str,
        helper_id: UUID | None,
        roster_entry: str | None,
        meta: CommandMeta,
    ) -> Opened:
        normalised = normalise_phone(phone)
        phone_hash = self.lookup("phone", normalised)
        fresh = self.credentials.reserve_phone(id, phone_hash)
        if not fresh and self.credentials.account_by_phone(phone_hash) != id:
            raise PhoneTakenError("another account has this phone number", field="phone")
        try:
            result = self.app.open_account(
                id=id, role=role, org_unit_id=org_unit_id, phone=normalised, display_name=display_name,
                helper_id=helper_id, roster_entry=roster_entry, meta=meta,
            )  # fmt: skip
        except Exception:
            if fresh:
                self.credentials.release_phone(id)
            raise
        account = self.app.saved(Account, result)
        code = None
        if result.created:
            code = new_activation_code()
            self.credentials.set_activation(id, self.lookup("activation", normalise_code(code)))
        return Opened(account, code, result.position, result.created)

    def reset(self, account_id: UUID, reason: str, meta: CommandMeta) -> Opened:
        result = self.app.reset_account(account_id, reason, meta)
        account = self.app.saved(Account, result)
        self.credentials.clear_secrets(account_id)
        code = new_activation_code()
        self.credentials.set_activation(account_id, self.lookup("activation", normalise_code(code)))
        self._end_all(account_id, meta.actor_id, "reset")
        return Opened(account, code, result.position, False)

    def lock(self, account_id: UUID, reason: str, meta: CommandMeta) -> Any:
        result = self.app.lock_account(account_id, reason, meta)
        self._end_all(account_id, meta.actor_id, "locked")
        return result

    def close(self, account_id: UUID, reason: str, meta: CommandMeta) -> Any:
        result = self.app.close_account(account_id, reason, meta)
        self._end_all(account_id, meta.actor_id, "closed")
        self.credentials.clear_secrets(account_id)
        return result

    def grant_role(
        self,
        account_id: UUID,
        *,
        role: ActorRole,
        org_unit_id: UUID | None,
        helper_id: UUID | None,
        roster_entry: str | None,
        meta: CommandMeta,
    ) -> Any:
        result = self.app.grant_account_role(
            account_id, role=role, org_unit_id=org_unit_id, helper_id=helper_id, roster_entry=roster_entry, meta=meta
        )
        if result.position is not None:
            # Tokens carrying the old role stop working everywhere within the revocation
            # interval; the sessions stay, and their next refresh carries the new role.
            for session in self.credentials.sessions(account_id):
                self._revoke_access(session, meta.actor_id, "role changed")
        return result

    def _revoke_access(self, session: Session, by: str, reason: str) -> None:
        if session.access_jti and session.access_expires_at and session.access_expires_at > self.clock():
            self.revoke(session.access_jti, session.access_expires_at, by=by, reason=reason)

    def _end_all(self, account_id: UUID, by: str, reason: str) -> None:
        for session in self.credentials.end_sessions(account_id, reason):
            self._revoke_access(session, by, reason)

    # -- activation and sign-in --

    def _phone_hash(self, phone: str) -> bytes:
        try:
            return self.lookup("phone", normalise_phone(phone))
        except DomainError:
            return b""  # answers like an unknown number: what was typed says nothing either way

    def activate(self, phone: str, code: str, password: str, meta_for: Callable[[Account], CommandMeta]) -> Account:
        normalised_password = normalise_password(password, self.common_passwords)
        account_id = self.credentials.account_by_phone(self._phone_hash(phone))
        login = self.credentials.login(account_id) if account_id else None
        refused = ActivationError("the phone number or the activation code is wrong, or the code has expired or was used",
                                  field="activation_code")  # fmt: skip
        if account_id is None or login is None or login.activation_hash is None:
            raise refused
        if login.activation_attempts >= ACTIVATION_ATTEMPTS:
            raise refused
        if not hmac.compare_digest(login.activation_hash, self.lookup("activation", normalise_code(code))):
            self.credentials.count_activation_failure(account_id)
            raise refused
        account = self.app.load(Account, account_id)
        try:
            result = self.app.activate_account(account_id, meta_for(account))
        except AccountError:
            raise refused from None
        self.credentials.set_password(account_id, self.hasher.hash(normalised_password))
        self.credentials.set_activation(account_id, None)
        self.credentials.record_sign_in(account_id, "activated")
        activated: Account = self.app.saved(Account, result)
        return activated

    def sign_in(
        self,
        *,
        phone: str,
        password: str,
        address: str,
        device_name: str,
        cookie: bool,
        totp_code: str | None = None,
        recovery_code: str | None = None,
    ) -> SignedIn:
        phone_hash = self._phone_hash(phone)
        account_key = phone_hash.hex() or "invalid"
        wait = max(self.account_throttle.wait(account_key), self.address_throttle.wait(address))
        if wait > 0:
            raise ThrottledError(
                "too many failed sign-ins; wait before trying again (登录失败次数过多，请稍后再试)", wait
            )
        wrong = SignInError("the phone number or the password is wrong (手机号或密码不正确)")
        if len(password) > 1024:
            raise wrong  # before hashing: hashing megabytes is work an attacker chooses
        account_id = self.credentials.account_by_phone(phone_hash) if phone_hash else None
        login = self.credentials.login(account_id) if account_id else None
        candidate = unicodedata.normalize("NFKC", password)
        ok = self.hasher.verify(login.password_hash if login else None, candidate)
        account = self.app.load(Account, account_id) if ok and account_id else None
        if not ok or account is None or account.status == AccountStatus.CLOSED:
            waits = self.account_throttle.failed(account_key)
            self.address_throttle.failed(address)
            outcome = "wrong password" if account_id else "unknown phone"
            # An auditor sees when an account's sign-ins began to be throttled, and for how long.
            self.credentials.record_sign_in(account_id, f"{outcome}; throttled {waits:.0f} s" if waits else outcome)
            raise wrong
        assert login is not None
        if account.status != AccountStatus.ACTIVE:
            self.credentials.record_sign_in(account.id, f"refused: {account.status}")
            raise AccountLockedError("this account is locked; ask your administrator (账号已锁定，请联系管理员)")
        if account.second_factor:
            self._second_factor(account, login, totp_code, recovery_code, account_key, address)
        self.account_throttle.succeeded(account_key)
        if login.password_hash and self.hasher.needs_rehash(login.password_hash):
            self.credentials.set_password(account.id, self.hasher.hash(candidate))
        return self._open_session(account, device_name, cookie)

    def _second_factor(
        self, account: Account, login: Login, totp_code: str | None, recovery_code: str | None, key: str, address: str
    ) -> None:
        if not totp_code and not recovery_code:
            raise SecondFactorRequiredError(
                "this account signs in with a code from its authenticator app (请输入动态验证码)", field="totp_code"
            )
        accepted = False
        if recovery_code:
            accepted = self.credentials.use_recovery_code(
                account.id, self.lookup("recovery", normalise_code(recovery_code))
            )
        elif totp_code and login.totp_secret is not None:
            secret = self.sealer.open(account.id, login.totp_secret)
            step = totp_step_of(secret, totp_code, self.clock().timestamp())
            # A code is accepted once: its step must be later than the last one used.
            accepted = step is not None and self.credentials.use_totp_step(account.id, step)
        if not accepted:
            self.account_throttle.failed(key)
            self.address_throttle.failed(address)
            self.credentials.record_sign_in(account.id, "second factor refused")
            field = "recovery_code" if recovery_code else "totp_code"
            raise SecondFactorError("the code is wrong, expired or already used (验证码错误或已使用)", field=field)

    def _open_session(self, account: Account, device_name: str, cookie: bool) -> SignedIn:
        now = self.clock()
        csrf = secrets.token_urlsafe(32) if cookie else None
        csrf_hash = token_hash(csrf) if csrf else None
        session = Session(
            id=uuid4(), account_id=account.id, device_name=device_name, cookie=cookie, csrf_hash=csrf_hash,
            created_at=now, last_used_at=now, expires_at=now + self.session_ttl, ended_at=None, access_jti=None,
            access_expires_at=None,
        )  # fmt: skip
        restricted = account.needs_second_factor and not account.second_factor
        access = self.issue(
            account, session.id, csrf_hash=csrf_hash.hex() if csrf_hash else None, restricted=restricted
        )
        refresh = secrets.token_urlsafe(32)
        session = _with_access(session, access)
        self.credentials.open_session(session, token_hash(refresh))
        self.credentials.record_sign_in(account.id, "signed in", session.id)
        return SignedIn(account, session, access, refresh, csrf, restricted)

    def refresh(self, refresh_token: str, *, csrf_token: str | None = None) -> SignedIn:
        """A new access token and refresh token for the session; the used refresh token is spent.
        A spent one presented again ends the session (theft: two holders of one token)."""
        issued: dict[str, Any] = {}
        ended = SessionError("the session has ended; sign in again (登录已失效，请重新登录)")

        def decide(session: Session) -> tuple[bytes, str, datetime] | None:
            if session.ended_at is not None or session.expires_at <= self.clock():
                return None
            if session.cookie and not (
                csrf_token and session.csrf_hash and hmac.compare_digest(token_hash(csrf_token), session.csrf_hash)
            ):
                issued["csrf"] = True
                return None
            account = self.app.load(Account, session.account_id)
            if account.status != AccountStatus.ACTIVE:
                return None
            restricted = account.needs_second_factor and not account.second_factor
            csrf_hash = session.csrf_hash.hex() if session.csrf_hash else None
            access = self.issue(account, session.id, csrf_hash=csrf_hash, restricted=restricted)
            refresh = secrets.token_urlsafe(32)
            issued.update(account=account, access=access, refresh=refresh, restricted=restricted)
            return token_hash(refresh), access.jti, access.expires_at

        session, reused = self.credentials.refresh(token_hash(refresh_token), decide)
        if session is None:
            raise ended
        if reused:
            self._revoke_access(session, "refresh", "refresh token reused")
            self.credentials.record_sign_in(session.account_id, "refresh token reused: session ended", session.id)
            raise ended
        if issued.get("csrf"):
            raise CsrfError("send the X-CSRF-Token header with the value of the guanai_csrf cookie")
        if "access" not in issued:
            raise ended
        if session.access_jti and session.access_expires_at:
            # The access token it replaces stops now, so each session has one live access token
            # (which a role change or a lock can revoke).
            self.revoke(session.access_jti, session.access_expires_at, by="refresh", reason="replaced")
        new_session = _with_access(session, issued["access"])
        return SignedIn(issued["account"], new_session, issued["access"], issued["refresh"], None, issued["restricted"])

    def sign_out(self, session_id: UUID, by: str) -> None:
        session = self.credentials.end_session(session_id, "signed out")
        if session is not None:
            self._revoke_access(session, by, "signed out")
            self.credentials.record_sign_in(session.account_id, "signed out", session_id)

    def end_session(self, account_id: UUID, session_id: UUID, by: str) -> bool:
        session = self.credentials.session(session_id)
        if session is None or session.account_id != account_id or session.ended_at is not None:
            return False
        self.sign_out(session_id, by)
        return True

    # -- second factor --

    def start_totp(self, account_id: UUID) -> TotpEnrolment:
        account = self.app.load(Account, account_id)
        if account.status != AccountStatus.ACTIVE:
            raise AccountError("only an active account enrols a second factor")
        secret = secrets.token_bytes(20)
        self.credentials.set_totp_pending(account_id, self.sealer.seal(account_id, secret))
        text = base32(secret)
        label = f"{self.issuer_name}:{str(account_id)[:8]}"
        uri = f"otpauth://totp/{quote(label)}?secret={text}&issuer={quote(self.issuer_name)}&algorithm=SHA1&digits=6&period=30"
        return TotpEnrolment(text, uri)

    def confirm_totp(self, account_id: UUID, code: str, meta: CommandMeta) -> tuple[Account, list[str]]:
        login = self.credentials.login(account_id)
        if login is None or login.totp_pending is None:
            raise SecondFactorError("start the enrolment first (POST /auth/totp)", field="totp_code")
        secret = self.sealer.open(account_id, login.totp_pending)
        step = totp_step_of(secret, code, self.clock().timestamp())
        if step is None:
            raise SecondFactorError("the code is wrong or expired; check the phone's clock", field="totp_code")
        codes = new_recovery_codes()
        self.credentials.confirm_totp(account_id, step, [self.lookup("recovery", normalise_code(c)) for c in codes])
        result = self.app.enrol_second_factor(account_id, meta)
        return self.app.saved(Account, result), codes

    def new_recovery_codes(self, account_id: UUID) -> list[str]:
        account = self.app.load(Account, account_id)
        if not account.second_factor:
            raise SecondFactorError("enrol an authenticator app first (POST /auth/totp)")
        codes = new_recovery_codes()
        self.credentials.set_recovery_codes(account_id, [self.lookup("recovery", normalise_code(c)) for c in codes])
        return codes


class CsrfError(DomainError):
    """A browser's unsafe request without the CSRF token of its session, or with another one."""


def _with_access(session: Session, access: IssuedToken) -> Session:
    return replace(session, access_jti=access.jti, access_expires_at=access.expires_at)


def base32(secret: bytes) -> str:
    return base64.b32encode(secret).decode().rstrip("=")


# ---- the commands on aggregates (mixed into CareApplication) ------------------------------------


class AccountCommands:
    """Account commands of CareApplication (see application/care.py)."""

    load: Any
    _create: Any
    _update: Any

    def open_account(
        self,
        *,
        id: UUID,
        role: ActorRole,
        org_unit_id: UUID | None,
        phone: str,
        display_name: str,
        helper_id: UUID | None,
        roster_entry: str | None,
        meta: CommandMeta,
    ) -> Any:
        def build() -> tuple[Account, list[Any]]:
            unit = self.load(OrgUnit, org_unit_id, field="org_unit_id") if org_unit_id else None
            helper = self.load(Helper, helper_id, field="helper_id") if helper_id else None
            account = Account.open(
                id=id, role=role, org_unit=unit, phone=phone, display_name=display_name, helper=helper,
                roster_entry=roster_entry, meta=meta,
            )  # fmt: skip
            return account, []

        return self._create(Account, id, build)

    def activate_account(self, account_id: UUID, meta: CommandMeta) -> Any:
        return self._update(Account, account_id, None, lambda a: a.activate(meta) or [])

    def grant_account_role(
        self,
        account_id: UUID,
        *,
        role: ActorRole,
        org_unit_id: UUID | None,
        helper_id: UUID | None,
        roster_entry: str | None,
        meta: CommandMeta,
    ) -> Any:
        def change(account: Account) -> list[Any]:
            unit = self.load(OrgUnit, org_unit_id, field="org_unit_id") if org_unit_id else None
            helper = self.load(Helper, helper_id, field="helper_id") if helper_id else None
            account.grant_role(role, unit, helper, roster_entry, meta)
            return []

        return self._update(Account, account_id, None, change)

    def lock_account(self, account_id: UUID, reason: str, meta: CommandMeta) -> Any:
        return self._update(Account, account_id, None, lambda a: a.lock(reason, meta) or [])

    def unlock_account(self, account_id: UUID, meta: CommandMeta) -> Any:
        return self._update(Account, account_id, None, lambda a: a.unlock(meta) or [])

    def reset_account(self, account_id: UUID, reason: str, meta: CommandMeta) -> Any:
        return self._update(Account, account_id, None, lambda a: a.reset(reason, meta) or [])

    def enrol_second_factor(self, account_id: UUID, meta: CommandMeta) -> Any:
        return self._update(Account, account_id, None, lambda a: a.enrol_second_factor(meta) or [])

    def close_account(self, account_id: UUID, reason: str, meta: CommandMeta) -> Any:
        return self._update(Account, account_id, None, lambda a: a.close(reason, meta) or [])
