"""Account: a person who signs in (a helper, a responder, a cadre, a supervisor, an auditor, an
administrator), with the role and org unit their tokens carry.

An account is opened with a phone number (sealed personal data, ``account:<id>``'s key) and an
activation code that lives 72 hours; the person activates it by choosing a password. Secrets are
never events: the password hash, the activation code's hash, the TOTP secret and refresh tokens
live in their own tables (``infrastructure/credentials.py``). Events record only that a secret
was set or cleared: ``Activated``, ``SecondFactorEnrolled``, ``Reset``.

Who may open or manage which accounts is a rule of the practice (``GRANTS``): administrators any
role, a township supervisor the village and responder roles of their township, a village cadre
their village's volunteers. Which org level a role is scoped to is fixed (``ROLE_LEVELS``).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

from domain.base import ERASED, CareAggregate, ClosedError, CommandMeta, DomainError, InvariantError, Personal
from domain.helper import Helper
from domain.org_unit import OrgUnit
from domain.vocabulary import ActorRole, OrgLevel

R = ActorRole
ACTIVATION_TTL = timedelta(hours=72)
MIN_PASSWORD_LENGTH = 10  # NIST SP 800-63B: at least 8; the issue asks 10
MAX_PASSWORD_LENGTH = 1024  # refused before hashing: Argon2 over megabytes is a denial of service

# The org level each role is scoped to, where the role fixes it (volunteers and auditors: any).
ROLE_LEVELS: dict[ActorRole, OrgLevel] = {
    R.VILLAGE_CADRE: OrgLevel.VILLAGE,
    R.CHILD_DIRECTOR: OrgLevel.VILLAGE,
    R.TOWNSHIP_RESPONDER: OrgLevel.TOWNSHIP,
    R.TOWNSHIP_SUPERVISOR: OrgLevel.TOWNSHIP,
    R.COUNTY_RESPONDER: OrgLevel.COUNTY,
    R.COUNTY_SUPERVISOR: OrgLevel.COUNTY,
}
# Roles that read many people's data: their sign-in needs a second factor (TOTP).
SECOND_FACTOR_ROLES = frozenset(
    {R.COUNTY_SUPERVISOR, R.TOWNSHIP_SUPERVISOR, R.AUDITOR, R.ADMINISTRATOR, R.COUNTY_RESPONDER}
)
HUMAN_ROLES = frozenset(r for r in ActorRole if r != R.SYSTEM)
# Which roles' accounts each role may open and manage (within its own scope; see api/access/rules.py).
GRANTS: dict[ActorRole, frozenset[ActorRole]] = {
    R.ADMINISTRATOR: HUMAN_ROLES,
    R.TOWNSHIP_SUPERVISOR: frozenset({R.VILLAGE_CADRE, R.CHILD_DIRECTOR, R.VOLUNTEER, R.TOWNSHIP_RESPONDER}),
    R.VILLAGE_CADRE: frozenset({R.VOLUNTEER}),
}
HELPER_ROLES = frozenset({R.VOLUNTEER, R.VILLAGE_CADRE, R.CHILD_DIRECTOR})
RESPONDER_ROLES = frozenset({R.TOWNSHIP_RESPONDER, R.COUNTY_RESPONDER})


class AccountStatus(StrEnum):
    PENDING = "pending"  # opened or reset: waits for activation with its code
    ACTIVE = "active"
    LOCKED = "locked"
    CLOSED = "closed"


class AccountError(InvariantError):
    """An account would be inconsistent (a role at the wrong level, a volunteer without a helper)."""


class AccountClosedError(ClosedError):
    """The account was closed: it accepts nothing more."""


class NotYoursToGrantError(DomainError):
    """The actor may not open or manage an account of this role."""


class PhoneError(DomainError):
    """Not a phone number this service can send to or find an account by."""


class PasswordError(DomainError):
    """A password refused by the policy (too short, too long, a common password)."""


_PHONE_SEPARATORS = re.compile(r"[\s\-().\u00a0\u3000]")
_MOBILE = re.compile(r"^1[3-9][0-9]{9}\Z")


def normalise_phone(text: str, *, field: str = "phone") -> str:
    """A mainland mobile number as people type it (spaces, dashes, +86 or 0086, full-width
    digits) in its one stored form: the 11 digits."""
    value = _PHONE_SEPARATORS.sub("", unicodedata.normalize("NFKC", text))
    for prefix in ("+86", "0086", "86"):
        if value.startswith(prefix) and len(value) == len(prefix) + 11:
            value = value[len(prefix) :]
            break
    if not _MOBILE.match(value):
        raise PhoneError("not a mainland mobile number (11 digits starting with 1; +86 may precede)", field=field)
    return value


def normalise_password(password: str, common: frozenset[str] | set[str], *, field: str = "password") -> str:
    """NFKC (full-width and composed forms type alike on any keyboard), then the policy of
    NIST SP 800-63B: at least 10 characters, at most 1,024, not a common password; no
    composition rules."""
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordError(f"at most {MAX_PASSWORD_LENGTH} characters", field=field)
    value = unicodedata.normalize("NFKC", password)
    if len(value) > MAX_PASSWORD_LENGTH:
        raise PasswordError(f"at most {MAX_PASSWORD_LENGTH} characters", field=field)
    if len(value) < MIN_PASSWORD_LENGTH:
        raise PasswordError(
            f"at least {MIN_PASSWORD_LENGTH} characters (密码至少 {MIN_PASSWORD_LENGTH} 位)", field=field
        )
    if value.lower() in common:
        raise PasswordError("a commonly used password; choose another (常见密码，请另选)", field=field)
    return value


def may_grant(actor_role: str, role: ActorRole) -> bool:
    return role in GRANTS.get(ActorRole(actor_role), frozenset())


def check_grant(actor_role: str, role: ActorRole, field: str = "role") -> None:
    if not may_grant(actor_role, role):
        raise NotYoursToGrantError(f"a {actor_role} may not open or manage a {role} account", field=field)


def _scope(role: ActorRole, unit: OrgUnit | None, helper: Helper | None, roster_entry: str | None) -> list[UUID]:
    """The org path the role is scoped to, after the rules of roles and levels."""
    if role == R.SYSTEM:
        raise AccountError("system tokens are for the workers; no person signs in as one", field="role")
    if role == R.ADMINISTRATOR:
        if unit is not None:
            raise AccountError("an administrator is not scoped to an org unit", field="org_unit_id")
    elif unit is None:
        raise AccountError(f"a {role} account needs an org unit", field="org_unit_id")
    elif (wanted := ROLE_LEVELS.get(role)) is not None and unit.level != wanted:
        raise AccountError(f"a {role} is scoped to a {wanted}; this is a {unit.level}", field="org_unit_id")
    if helper is not None:
        if role not in HELPER_ROLES:
            raise AccountError(f"a {role} account is not linked to a helper record", field="helper_id")
        if unit is not None and unit.id not in helper.org_path:
            raise AccountError("the helper belongs to another org unit", field="helper_id")
        if not helper.active:
            raise AccountError("the helper no longer serves", field="helper_id")
    elif role == R.VOLUNTEER:
        raise AccountError("a volunteer's account is linked to their helper record", field="helper_id")
    if roster_entry is not None and role not in RESPONDER_ROLES:
        raise AccountError(f"a {role} account has no roster entry", field="roster_entry")
    return [] if unit is None else list(unit.path)


class Account(CareAggregate):
    role: ActorRole
    org_unit_id: UUID | None
    org_path: list[UUID]
    phone: str
    display_name: str
    helper_id: UUID | None
    roster_entry: str | None
    status: AccountStatus
    activated: bool  # has been activated since the last reset
    activation_expires_at: datetime | None
    second_factor: bool
    locked_reason: str | None

    def __init__(self) -> None:
        """State is set by each event's ``apply``; the annotations above document it."""

    class Opened(CareAggregate.Created):
        role: str
        org_unit_id: UUID | None
        org_path: list[UUID]
        phone: str
        display_name: str
        helper_id: UUID | None
        roster_entry: str | None

        personal = Personal({"phone": ERASED, "display_name": ERASED}, prefix="account")

        def apply(self, a: Account) -> None:
            a.role = ActorRole(self.role)
            a.org_unit_id = self.org_unit_id
            a.org_path = list(self.org_path)
            a.phone = self.phone
            a.display_name = self.display_name
            a.helper_id = self.helper_id
            a.roster_entry = self.roster_entry
            a.status = AccountStatus.PENDING
            a.activated = False
            a.activation_expires_at = None
            a.second_factor = False
            a.locked_reason = None

    class ActivationIssued(CareAggregate.Event):
        """A one-time activation code was issued (its hash is kept apart, never here)."""

        expires_at: datetime

        def apply(self, a: Account) -> None:
            a.activation_expires_at = self.expires_at

    class Activated(CareAggregate.Event):
        """The person used the code and set a password (kept apart, hashed)."""

        def apply(self, a: Account) -> None:
            a.status = AccountStatus.ACTIVE
            a.activated = True
            a.activation_expires_at = None

    class RoleGranted(CareAggregate.Event):
        """The account's role or scope was changed: this role replaces the one before."""

        role: str
        org_unit_id: UUID | None
        org_path: list[UUID]
        helper_id: UUID | None
        roster_entry: str | None

        def apply(self, a: Account) -> None:
            a.role = ActorRole(self.role)
            a.org_unit_id = self.org_unit_id
            a.org_path = list(self.org_path)
            a.helper_id = self.helper_id
            a.roster_entry = self.roster_entry

    class Locked(CareAggregate.Event):
        reason: str

        def apply(self, a: Account) -> None:
            a.status = AccountStatus.LOCKED
            a.locked_reason = self.reason

    class Unlocked(CareAggregate.Event):
        def apply(self, a: Account) -> None:
            a.status = AccountStatus.ACTIVE if a.activated else AccountStatus.PENDING
            a.locked_reason = None

    class Reset(CareAggregate.Event):
        """Password and second factor cleared, every session ended; a new code follows."""

        reason: str

        def apply(self, a: Account) -> None:
            a.status = AccountStatus.PENDING
            a.activated = False
            a.second_factor = False
            a.locked_reason = None

    class SecondFactorEnrolled(CareAggregate.Event):
        """A TOTP secret was confirmed (the secret is kept apart, encrypted)."""

        def apply(self, a: Account) -> None:
            a.second_factor = True

    class Closed(CareAggregate.Event):
        reason: str

        def apply(self, a: Account) -> None:
            a.status = AccountStatus.CLOSED

    # ---- decisions -----------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        *,
        id: UUID,
        role: ActorRole,
        org_unit: OrgUnit | None,
        phone: str,
        display_name: str,
        helper: Helper | None,
        roster_entry: str | None,
        meta: CommandMeta,
    ) -> Account:
        path = _scope(role, org_unit, helper, roster_entry)
        check_grant(meta.actor_role, role)
        account = cls._create(
            cls.Opened,
            id=id,
            role=role.value,
            org_unit_id=None if org_unit is None else org_unit.id,
            org_path=path,
            phone=normalise_phone(phone),
            display_name=display_name,
            helper_id=None if helper is None else helper.id,
            roster_entry=roster_entry,
            **meta.fields(),
        )
        account.issue_activation(meta)
        return account

    @property
    def subject(self) -> str:
        """Who the account's tokens name (``sub``): a volunteer's helper id (their "own"
        scope), a responder's roster entry, else the account id."""
        if self.role == R.VOLUNTEER and self.helper_id is not None:
            return str(self.helper_id)
        if self.role in RESPONDER_ROLES and self.roster_entry:
            return self.roster_entry
        return str(self.id)

    @property
    def needs_second_factor(self) -> bool:
        return self.role in SECOND_FACTOR_ROLES

    def _check_open(self) -> None:
        if self.status == AccountStatus.CLOSED:
            raise AccountClosedError("the account was closed")

    def issue_activation(self, meta: CommandMeta) -> None:
        self._trigger(self.ActivationIssued, meta, expires_at=meta.occurred_at + ACTIVATION_TTL)

    def activate(self, meta: CommandMeta) -> None:
        """The code was checked apart (its hash); here: the account must be waiting for it."""
        self._check_open()
        if self.status != AccountStatus.PENDING or self.activation_expires_at is None:
            raise AccountError("the account is not waiting for activation", field="activation_code")
        if meta.occurred_at >= self.activation_expires_at:
            raise AccountError("the activation code has expired; ask for a new one", field="activation_code")
        self._trigger(self.Activated, meta)

    def grant_role(
        self,
        role: ActorRole,
        org_unit: OrgUnit | None,
        helper: Helper | None,
        roster_entry: str | None,
        meta: CommandMeta,
    ) -> None:
        self._check_open()
        check_grant(meta.actor_role, self.role, field="id")
        check_grant(meta.actor_role, role)
        path = _scope(role, org_unit, helper, roster_entry)
        unit_id = None if org_unit is None else org_unit.id
        helper_id = None if helper is None else helper.id
        if (role, unit_id, helper_id, roster_entry) == (self.role, self.org_unit_id, self.helper_id, self.roster_entry):
            return
        self._trigger(
            self.RoleGranted,
            meta,
            role=role.value,
            org_unit_id=unit_id,
            org_path=path,
            helper_id=helper_id,
            roster_entry=roster_entry,
        )

    def lock(self, reason: str, meta: CommandMeta) -> None:
        self._check_open()
        check_grant(meta.actor_role, self.role, field="id")
        if self.status != AccountStatus.LOCKED:
            self._trigger(self.Locked, meta, reason=reason)

    def unlock(self, meta: CommandMeta) -> None:
        self._check_open()
        check_grant(meta.actor_role, self.role, field="id")
        if self.status == AccountStatus.LOCKED:
            self._trigger(self.Unlocked, meta)

    def reset(self, reason: str, meta: CommandMeta) -> None:
        self._check_open()
        check_grant(meta.actor_role, self.role, field="id")
        self._trigger(self.Reset, meta, reason=reason)
        self.issue_activation(meta)

    def enrol_second_factor(self, meta: CommandMeta) -> None:
        self._check_open()
        if self.status != AccountStatus.ACTIVE:
            raise AccountError("only an active account enrols a second factor")
        self._trigger(self.SecondFactorEnrolled, meta)

    def close(self, reason: str, meta: CommandMeta) -> None:
        check_grant(meta.actor_role, self.role, field="id")
        if self.status != AccountStatus.CLOSED:
            self._trigger(self.Closed, meta, reason=reason)
