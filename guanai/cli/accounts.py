"""``guanai accounts ...``: accounts from the command line (the API's /accounts is the usual way).

    guanai accounts create-admin --phone P [--name N]

``create-admin`` opens an administrator's account on a new store and prints its one-time
activation code: the first administrator then activates it (``POST /auth/activate``) and opens
everyone else's accounts over the API. ``guanai token`` stays for machines and operators.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from application.accounts import AccountService, IssuedToken
from domain.account import Account
from domain.base import CommandMeta, DomainError
from domain.vocabulary import ActorRole
from infrastructure import lookup_hash
from infrastructure.credentials import KeyStoreSealer, PostgresCredentials
from infrastructure.passwords import PasswordHasher, common_passwords
from infrastructure.settings import Settings


def add_parser(sub: Any) -> None:
    a = sub.add_parser("accounts", help="accounts of the people who sign in: create the first administrator")
    cmds = a.add_subparsers(dest="accounts_command", metavar="ACCOUNTS_COMMAND", required=True)
    c = cmds.add_parser("create-admin", help="open an administrator's account and print its activation code")
    c.add_argument("--phone", required=True, help="the administrator's mobile number (11 digits, +86 may precede)")
    c.add_argument("--name", default="", help="how the account is shown (sealed like every name)")
    c.add_argument("--by", default="operator", help="who opens it (an id, not a name; kept in the event)")


def _no_tokens(account: Account, session_id: Any, *, csrf_hash: str | None, restricted: bool) -> IssuedToken:
    raise RuntimeError("the command line signs nobody in")


def _no_revocations(jti: str, until: datetime, *, by: str, reason: str) -> None:
    raise RuntimeError("the command line revokes no tokens")


def offline_service(app: Any, database_url: str, settings: Settings) -> AccountService:
    """An account service for the command line and the demo: opens and activates, signs nobody in."""
    if settings.lookup_key:
        lookup_hash.configure(settings.lookup_key)
    return AccountService(
        app=app, credentials=PostgresCredentials(database_url, pool_size=2), hasher=PasswordHasher(),
        sealer=KeyStoreSealer(app.key_store), issue=_no_tokens, revoke=_no_revocations,
        common_passwords=common_passwords(), lookup=lookup_hash.lookup_hash,
    )  # fmt: skip


def system_meta(by: str) -> CommandMeta:
    return CommandMeta(actor_id=by, actor_role=ActorRole.ADMINISTRATOR.value, correlation_id=f"cli-{uuid4().hex[:12]}",
                       occurred_at=datetime.now(UTC))  # fmt: skip


def cmd_accounts(settings: Settings, args: argparse.Namespace, database_url: str, app: Any) -> int:
    service = offline_service(app, database_url, settings)
    try:
        opened = service.open(
            id=uuid4(), role=ActorRole.ADMINISTRATOR, org_unit_id=None, phone=args.phone, display_name=args.name,
            helper_id=None, roster_entry=None, meta=system_meta(args.by),
        )  # fmt: skip
    except DomainError as e:
        print(f"guanai accounts create-admin: {e.field or 'phone'}: {e.detail}", file=sys.stderr)
        return 2
    finally:
        service.credentials.close()  # type: ignore[attr-defined]
    expires = opened.account.activation_expires_at
    print(f"guanai: administrator account {opened.account.id} opened", file=sys.stderr)
    print(f"激活码 activation code: {opened.activation_code}  (valid until {expires:%Y-%m-%d %H:%M} UTC; shown once)")
    print(f"Activate at http://{settings.host}:{settings.port}/auth/activate with the phone number, this code and a"
          " password of 10+ characters; then enrol an authenticator app (POST /auth/totp).")  # fmt: skip
    return 0
