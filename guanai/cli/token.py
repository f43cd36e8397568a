"""``guanai token``: issue a bearer token for one person in a role (scoped to an org unit), and
``guanai token revoke``: refuse a token before it expires."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from uuid import UUID

import jwt

from api.auth import TokenError, issue_token, load_or_create_secret, verify_token
from api.revocations import revoke_in
from domain.org_unit import org_unit_id
from domain.vocabulary import ActorRole
from guanai.cli.services import services
from infrastructure.settings import Settings

# The org level a role's token is scoped to, where the role fixes it (read off a division code:
# a county's ends in 000000, a township's in 000).
ROLE_LEVELS = {
    ActorRole.VILLAGE_CADRE: "village",
    ActorRole.CHILD_DIRECTOR: "village",
    ActorRole.TOWNSHIP_RESPONDER: "township",
    ActorRole.TOWNSHIP_SUPERVISOR: "township",
    ActorRole.COUNTY_RESPONDER: "county",
    ActorRole.COUNTY_SUPERVISOR: "county",
}


def cmd_token_revoke(settings: Settings, args: argparse.Namespace) -> int:
    """``token revoke JTI|TOKEN``: every API process refuses it within GUANAI_REVOCATION_CACHE_SECONDS."""
    jti, expires_at = args.jti, None
    if args.jti.count(".") == 2:  # a whole token: take its id and expiry (signature not needed to revoke)
        try:
            claims = jwt.decode(args.jti, options={"verify_signature": False})
            jti, expires_at = str(claims["jti"]), datetime.fromtimestamp(int(claims["exp"]), UTC)
        except (jwt.InvalidTokenError, KeyError, ValueError, TypeError, OverflowError):
            print("guanai token revoke: that is not a token with a jti and an exp", file=sys.stderr)
            return 2
    with services(settings, need_nats=False) as (database_url, _):
        until = revoke_in(database_url, jti, expires_at, revoked_by=args.by, reason=args.reason)
    print(f"guanai: token {jti} revoked (kept until {until.isoformat(timespec='seconds')})", file=sys.stderr)
    return 0


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    if getattr(args, "token_action", None) == "revoke":
        return cmd_token_revoke(settings, args)
    if not args.role:
        print("guanai token: --role is required (or: guanai token revoke JTI)", file=sys.stderr)
        return 2
    if not args.subject:
        # The subject is the account: tokens sharing one would read each other's reports and
        # share one name in the audit trail and the access log.
        print(
            "guanai token: --subject is required: the id of the one person the token is for (a volunteer's helper id)",
            file=sys.stderr,
        )
        return 2
    org: UUID | None = None
    if args.org_code:
        code = args.org_code
        level = "county" if code.endswith("000000") else "township" if code.endswith("000") else "village"
        wanted = ROLE_LEVELS.get(ActorRole(args.role))
        if wanted is not None and level != wanted:
            print(f"guanai token: a {args.role} is scoped to a {wanted}; {code} is a {level}'s code", file=sys.stderr)
            return 2
        org = org_unit_id(code)
    elif args.org_unit:
        org = args.org_unit
    try:
        secret = load_or_create_secret(settings.jwt_secret, settings.data_path)
        token = issue_token(
            secret,
            subject=args.subject,
            role=ActorRole(args.role),
            org_unit_id=org,
            ttl=timedelta(hours=args.ttl_hours or settings.token_ttl_hours),
        )
    except TokenError as e:
        print(f"guanai token: {e}", file=sys.stderr)
        return 2
    print(token)
    issued = verify_token(secret, token)
    print(
        f"guanai: token id (jti) {issued.token_id}; revoke with `guanai token revoke {issued.token_id}`",
        file=sys.stderr,
    )
    return 0
