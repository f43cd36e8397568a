"""The demo county's accounts: one per role, activated with a demo password, so that a person
trying Guanai signs in as each role (``./run demo`` prints how).

DEMO ONLY: the password is printed and the same for every account. A real county opens accounts
over ``POST /accounts`` and each person chooses their own password with their activation code.
Running the demo again finds the accounts already there (their ids derive from the role).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TextIO

from application.accounts import AccountService
from domain.account import SECOND_FACTOR_ROLES, Account
from domain.base import CommandMeta, derived_id
from domain.helper import Helper
from domain.vocabulary import ActorRole, HelperRole, OrgLevel
from guanai.cli.accounts import system_meta

DEMO_PASSWORD = "guanai-demo-2026"  # 演示专用 demo only
R = ActorRole
ROLE_LABELS = {
    R.ADMINISTRATOR: "系统管理员", R.COUNTY_SUPERVISOR: "县级督导", R.COUNTY_RESPONDER: "县级应急响应",
    R.AUDITOR: "审计员", R.TOWNSHIP_SUPERVISOR: "乡镇督导", R.TOWNSHIP_RESPONDER: "乡镇应急响应",
    R.VILLAGE_CADRE: "村干部", R.CHILD_DIRECTOR: "儿童主任", R.VOLUNTEER: "志愿者",
}  # fmt: skip


@dataclass(frozen=True)
class DemoAccount:
    role: ActorRole
    phone: str
    unit: str
    second_factor: bool


def open_demo_accounts(service: AccountService, plan: Any) -> list[DemoAccount]:
    """An account per role in the plan's county (its first township and village), activated."""
    township = next(u for u in plan.units if u.level == OrgLevel.TOWNSHIP)
    village = next(u for u in plan.units if u.level == OrgLevel.VILLAGE and u.parent_id == township.id)
    volunteer = next(
        h for h in plan.helpers
        if h.role == HelperRole.VOLUNTEER and h.unit.level == OrgLevel.VILLAGE
        and service.app.load(Helper, h.id).active
    )  # fmt: skip
    where = {
        R.ADMINISTRATOR: None, R.COUNTY_SUPERVISOR: plan.county, R.COUNTY_RESPONDER: plan.county,
        R.AUDITOR: plan.county, R.TOWNSHIP_SUPERVISOR: township, R.TOWNSHIP_RESPONDER: township,
        R.VILLAGE_CADRE: village, R.CHILD_DIRECTOR: village, R.VOLUNTEER: volunteer.unit,
    }  # fmt: skip
    made = []
    for n, (role, unit) in enumerate(where.items()):
        phone = f"1990000{n:04d}"  # 199 0000 xxxx: demo numbers
        account_id = derived_id("demo-account", role.value)
        opened = service.open(
            id=account_id, role=role, org_unit_id=unit.id if unit else None, phone=phone,
            display_name=f"演示{ROLE_LABELS[role]}", helper_id=volunteer.id if role == R.VOLUNTEER else None,
            roster_entry=None, meta=system_meta("demo"),
        )  # fmt: skip
        if opened.activation_code:

            def meta_for(account: Account) -> CommandMeta:
                return system_meta(account.subject)

            service.activate(phone, opened.activation_code, DEMO_PASSWORD, meta_for)
        made.append(DemoAccount(role, phone, unit.name if unit else "全县", role in SECOND_FACTOR_ROLES))
    return made


def print_demo_accounts(accounts: list[DemoAccount], base_url: str, out: TextIO) -> None:
    out.write("\n演示账号 Demo accounts (DEMO ONLY: one printed password for all; real accounts choose their own)\n")
    out.write(f'  sign in: POST {base_url}/auth/sign-in {{"phone": ..., "password": "{DEMO_PASSWORD}"}}\n')
    out.write(f"  web client 网页版: {base_url}/app/ (the same phone numbers and password)\n")
    for a in accounts:
        note = "  (enrol TOTP at first sign-in: POST /auth/totp)" if a.second_factor else ""
        out.write(f"  {ROLE_LABELS[a.role]:<8} {a.role.value:<20} {a.phone}  {a.unit}{note}\n")
