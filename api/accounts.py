"""/accounts: opening accounts for the people of a county, and managing them (lock, reset, role).

Who may do this to whom is two rules: the access table (``api/access/rules.py``: administrators
everywhere, township supervisors in their township, village cadres in their village) and the
domain's ``GRANTS`` (which roles each may open: a village cadre only volunteers). A new or reset
account answers its activation code once (``activation_code``); print it on the slip with the
sign-in address. Phone numbers are answered masked (``138****8000``): the full number stays sealed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID, uuid4

import msgspec
from litestar import Controller, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from api.common import Limit, MinPosition, Offset, Page, created_response
from api.dependencies import Accounts, Care, Command, Views, Visible, WaitForViews
from application.care import CommandResult
from domain.account import Account, AccountStatus
from domain.base import ERASED
from domain.vocabulary import ActorRole
from projections.accounts import AccountsView

PhoneText = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
DisplayName = Annotated[str, msgspec.Meta(max_length=64)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
RosterEntry = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


class AccountCreate(msgspec.Struct, forbid_unknown_fields=True):
    role: ActorRole
    phone: PhoneText
    org_unit_id: UUID | None = None
    display_name: DisplayName = ""
    helper_id: UUID | None = None
    roster_entry: RosterEntry | None = None
    id: UUID | None = None


class RoleChange(msgspec.Struct, forbid_unknown_fields=True):
    role: ActorRole
    org_unit_id: UUID | None = None
    helper_id: UUID | None = None
    roster_entry: RosterEntry | None = None


class WithReason(msgspec.Struct, forbid_unknown_fields=True):
    reason: Reason


class Nothing(msgspec.Struct, forbid_unknown_fields=True):
    pass


class AccountOut(msgspec.Struct):
    id: UUID
    role: str
    org_unit_id: UUID | None
    org_path: list[UUID]
    status: AccountStatus
    phone: str  # masked
    display_name: str
    helper_id: UUID | None
    roster_entry: str | None
    second_factor_required: bool
    second_factor_enrolled: bool
    version: int
    position: int | None = None
    # Shown once, when the account is opened or reset: print it on the slip (valid 72 h).
    activation_code: str | None = None
    activation_expires_at: datetime | None = None


class AccountRow(msgspec.Struct):
    id: UUID
    role: str
    org_unit_id: UUID | None
    status: str
    helper_id: UUID | None
    roster_entry: str | None
    second_factor: bool
    opened_at: datetime
    version: int


class SignInRecord(msgspec.Struct):
    at: datetime
    outcome: str
    session_id: UUID | None


def mask(phone: str) -> str:
    return phone if phone == ERASED or len(phone) < 7 else f"{phone[:3]}****{phone[-4:]}"


def account_out(a: Account, position: int | None = None, code: str | None = None) -> AccountOut:
    return AccountOut(
        id=a.id, role=a.role.value, org_unit_id=a.org_unit_id, org_path=a.org_path, status=a.status,
        phone=mask(a.phone), display_name=a.display_name, helper_id=a.helper_id, roster_entry=a.roster_entry,
        second_factor_required=a.needs_second_factor, second_factor_enrolled=a.second_factor, version=a.version,
        position=position, activation_code=code, activation_expires_at=a.activation_expires_at if code else None,
    )  # fmt: skip


class AccountController(Controller):
    path = "/accounts"
    tags = ["accounts"]

    @post("/", sync_to_thread=True, status_code=201)
    def open_account(self, command: Command, data: JSONBody[AccountCreate]) -> Response[AccountOut]:
        """Open an account; its activation code is answered once (the same create again answers
        the account without it: reset it for a new code)."""
        accounts, meta = command.accounts, command.meta(None)
        opened = command.run(lambda: accounts.open(
            id=data.id or uuid4(), role=data.role, org_unit_id=data.org_unit_id, phone=data.phone,
            display_name=data.display_name, helper_id=data.helper_id, roster_entry=data.roster_entry, meta=meta,
        ))  # fmt: skip
        a = opened.account
        result = CommandResult(a.id, a.version, opened.position, created=opened.created)
        return created_response(account_out(a, opened.position, opened.activation_code), result, a.version,
                                f"/accounts/{a.id}")  # fmt: skip

    @get("/", sync_to_thread=True)
    def list_accounts(
        self,
        wait_for_views: WaitForViews,
        visible: Visible,
        views: Views,
        org_unit_id: FromQuery[UUID | None] = None,
        role: FromQuery[ActorRole | None] = None,
        status: Annotated[str | None, QueryParameter(pattern="^(pending|active|locked|closed)$")] = None,
        limit: Limit = 50,
        offset: Offset = 0,
        min_position: MinPosition = None,
    ) -> Page[AccountRow]:
        """The accounts in the caller's scope (no phone numbers or names: read one account for those)."""
        position = wait_for_views(min_position)
        view = AccountsView(views.pool)
        rows, total = view.list(
            scope=visible, org_unit_id=org_unit_id, role=role.value if role else None, status=status,
            limit=limit, offset=offset,
        )  # fmt: skip
        return Page([msgspec.convert(r, AccountRow) for r in rows], total, limit, offset, position)

    @get("/{account_id:uuid}", sync_to_thread=True)
    def read(self, care: Care, account_id: FromPath[UUID]) -> AccountOut:
        return account_out(care.load(Account, account_id))

    @post("/{account_id:uuid}/role", sync_to_thread=True, status_code=200)
    def change_role(self, command: Command, account_id: FromPath[UUID], data: JSONBody[RoleChange]) -> AccountOut:
        """Change the role or scope; the account's tokens with the old one stop within seconds
        everywhere, and its sessions' next refresh carries the new one."""
        care, accounts, meta = command.care, command.accounts, command.meta(None)
        result = command.run(lambda: accounts.grant_role(
            account_id, role=data.role, org_unit_id=data.org_unit_id, helper_id=data.helper_id,
            roster_entry=data.roster_entry, meta=meta,
        ))  # fmt: skip
        return account_out(care.saved(Account, result), result.position)

    @post("/{account_id:uuid}/lock", sync_to_thread=True, status_code=200)
    def lock(self, command: Command, account_id: FromPath[UUID], data: JSONBody[WithReason]) -> AccountOut:
        """Lock the account: every session ends (within seconds everywhere); unlock to let it in again."""
        care, accounts, meta = command.care, command.accounts, command.meta(None)
        result = command.run(lambda: accounts.lock(account_id, data.reason, meta))
        return account_out(care.saved(Account, result), result.position)

    @post("/{account_id:uuid}/unlock", sync_to_thread=True, status_code=200)
    def unlock(self, command: Command, account_id: FromPath[UUID], data: JSONBody[Nothing]) -> AccountOut:
        care, meta = command.care, command.meta(None)
        result = command.run(lambda: care.unlock_account(account_id, meta))
        return account_out(care.saved(Account, result), result.position)

    @post("/{account_id:uuid}/reset", sync_to_thread=True, status_code=200)
    def reset(self, command: Command, account_id: FromPath[UUID], data: JSONBody[WithReason]) -> AccountOut:
        """Reset a forgotten password or a lost phone: password and second factor are cleared,
        every session ends, and a new activation code is answered once."""
        accounts, meta = command.accounts, command.meta(None)
        opened = command.run(lambda: accounts.reset(account_id, data.reason, meta))
        return account_out(opened.account, opened.position, opened.activation_code)

    @post("/{account_id:uuid}/close", sync_to_thread=True, status_code=200)
    def close(self, command: Command, account_id: FromPath[UUID], data: JSONBody[WithReason]) -> AccountOut:
        """Close the account for good (the person left): sessions end, secrets are deleted."""
        care, accounts, meta = command.care, command.accounts, command.meta(None)
        result = command.run(lambda: accounts.close(account_id, data.reason, meta))
        return account_out(care.saved(Account, result), result.position)

    @get("/{account_id:uuid}/sign-ins", sync_to_thread=True)
    def sign_ins(self, accounts: Accounts, account_id: FromPath[UUID], limit: Limit = 50) -> list[SignInRecord]:
        """Sign-ins, failures, lockouts and session ends of the account, newest first (for auditors)."""
        rows = accounts.credentials.sign_ins(account_id, limit)
        return [SignInRecord(r["at"], r["outcome"], r["session_id"]) for r in rows]
