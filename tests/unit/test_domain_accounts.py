"""Accounts: who may open which, at which org level, and the life of an account (activation,
role changes, locks, resets, the second factor). No I/O: the secrets live elsewhere."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from domain.account import (
    ACTIVATION_TTL,
    Account,
    AccountClosedError,
    AccountError,
    AccountStatus,
    NotYoursToGrantError,
    PasswordError,
    PhoneError,
    normalise_password,
    normalise_phone,
)
from domain.vocabulary import ActorRole
from tests.scenario import NOW, OrgTree, given, helper, meta, names, nothing_emitted, refused, then

R = ActorRole


@pytest.fixture
def tree() -> OrgTree:
    return OrgTree()


def opened(tree: OrgTree, role: ActorRole = R.VILLAGE_CADRE, by: str = "administrator", **kw: object) -> Account:
    unit = {R.VILLAGE_CADRE: tree.village, R.VOLUNTEER: tree.village, R.TOWNSHIP_SUPERVISOR: tree.township,
            R.COUNTY_SUPERVISOR: tree.county}.get(role)  # fmt: skip
    fields: dict[str, object] = {"org_unit": unit, "helper": None, "roster_entry": None} | kw
    return Account.open(id=uuid4(), role=role, phone="+86 139 1234 5678", display_name="王村干",
                        meta=meta(role=by), **fields)  # type: ignore[arg-type]  # fmt: skip


def test_an_account_opens_pending_with_an_activation_that_lives_72_hours(tree: OrgTree) -> None:
    m = meta(role="administrator")
    a = Account.open(id=uuid4(), role=R.VILLAGE_CADRE, org_unit=tree.village, phone="139 1234 5678", display_name="王",
                     helper=None, roster_entry=None, meta=m)  # fmt: skip
    assert names(then(m, a)) == ["Account.Opened", "Account.ActivationIssued"]
    assert (a.status, a.phone, a.org_path, a.activation_expires_at) == (
        AccountStatus.PENDING,
        "13912345678",
        tree.village.path,
        NOW + ACTIVATION_TTL,
    )
    assert a.subject == str(a.id) and not a.needs_second_factor


@pytest.mark.parametrize("typed", ["13912345678", "+86 139 1234 5678", "0086-139-1234-5678", "１３９１２３４５６７８",
                                   "139　1234　5678", "(+86) 139.1234.5678"])  # fmt: skip
def test_phone_numbers_as_people_type_them(typed: str) -> None:
    assert normalise_phone(typed) == "13912345678"


@pytest.mark.parametrize("typed", ["12345678901", "1391234567", "139123456789", "+1 139 1234 5678", "电话", ""])
def test_what_is_not_a_mobile_number(typed: str) -> None:
    with pytest.raises(PhoneError):
        normalise_phone(typed)


def test_the_password_policy_is_length_and_commonness_only() -> None:
    common = frozenset({"password123", "woaini1314"})
    assert normalise_password("no rules at all", common) == "no rules at all"
    assert normalise_password("ｆｕｌｌｗｉｄｔｈ pass", common) == "fullwidth pass"  # NFKC before hashing
    for bad in ("short", "PassWord123", "x" * 1025):
        with pytest.raises(PasswordError):
            normalise_password(bad, common)


@pytest.mark.parametrize(("role", "unit", "field"), [
    (R.VILLAGE_CADRE, "township", "org_unit_id"), (R.TOWNSHIP_SUPERVISOR, "village", "org_unit_id"),
    (R.COUNTY_SUPERVISOR, "township", "org_unit_id"), (R.ADMINISTRATOR, "county", "org_unit_id"),
    (R.AUDITOR, None, "org_unit_id"), (R.VOLUNTEER, "village", "helper_id"), (R.SYSTEM, "county", "role"),
])  # fmt: skip
def test_each_role_is_scoped_at_its_level(tree: OrgTree, role: ActorRole, unit: str | None, field: str) -> None:
    with refused(AccountError, field):
        opened(tree, role, org_unit=getattr(tree, unit) if unit else None)


def test_a_volunteer_account_is_linked_to_their_helper_record_and_named_by_it(tree: OrgTree) -> None:
    h = helper(tree.village)
    a = opened(tree, R.VOLUNTEER, by="village_cadre", helper=h)
    assert a.subject == str(h.id) and a.helper_id == h.id
    elsewhere = helper(tree.other_village)
    with refused(AccountError, "helper_id"):
        opened(tree, R.VOLUNTEER, helper=elsewhere)


@pytest.mark.parametrize(("by", "role", "allowed"), [
    ("administrator", R.ADMINISTRATOR, True), ("township_supervisor", R.VILLAGE_CADRE, True),
    ("township_supervisor", R.TOWNSHIP_SUPERVISOR, False), ("township_supervisor", R.COUNTY_SUPERVISOR, False),
    ("village_cadre", R.VOLUNTEER, True), ("village_cadre", R.VILLAGE_CADRE, False), ("auditor", R.VOLUNTEER, False),
])  # fmt: skip
def test_who_may_open_which_accounts(tree: OrgTree, by: str, role: ActorRole, allowed: bool) -> None:
    extra = {"helper": helper(tree.village)} if role == R.VOLUNTEER else {}
    if allowed:
        assert opened(tree, role, by=by, **extra).role == role
    else:
        with refused(NotYoursToGrantError, "role"):
            opened(tree, role, by=by, **extra)


def test_activation_within_72_hours_once(tree: OrgTree) -> None:
    a = given(opened(tree))
    late = meta(at=NOW + ACTIVATION_TTL, role="village_cadre")
    with refused(AccountError, "activation_code"):
        a.activate(late)
    m = meta(at=NOW + timedelta(hours=71), role="village_cadre")
    a.activate(m)
    assert names(then(m, a)) == ["Account.Activated"] and a.status == AccountStatus.ACTIVE
    with refused(AccountError, "activation_code"):
        a.activate(m)


def test_a_role_change_lock_and_reset(tree: OrgTree) -> None:
    a = given(opened(tree))
    a.activate(meta(role="village_cadre"))
    given(a)
    m = meta(role="administrator")
    a.grant_role(R.CHILD_DIRECTOR, tree.village, None, None, m)
    assert names(then(m, a)) == ["Account.RoleGranted"] and a.role == R.CHILD_DIRECTOR
    a.grant_role(R.CHILD_DIRECTOR, tree.village, None, None, m)
    nothing_emitted(a)
    with refused(NotYoursToGrantError, "id"):  # a cadre may not manage a child director's account
        a.lock("手机丢失", meta(role="village_cadre"))
    a.lock("手机丢失", m)
    assert a.status == AccountStatus.LOCKED
    a.unlock(m)
    assert a.status == AccountStatus.ACTIVE
    given(a)
    a.reset("忘记密码", m)
    assert names(then(m, a)) == ["Account.Reset", "Account.ActivationIssued"]
    assert (a.status, a.second_factor) == (AccountStatus.PENDING, False)


def test_a_closed_account_accepts_nothing_more(tree: OrgTree) -> None:
    a = given(opened(tree))
    m = meta(role="administrator")
    a.close("离开本县", m)
    given(a)
    a.close("again", m)
    nothing_emitted(a)
    for change in (lambda: a.lock("x", m), lambda: a.reset("x", m), lambda: a.activate(m)):
        with pytest.raises(AccountClosedError):
            change()


def test_supervisors_auditors_administrators_and_county_responders_need_a_second_factor(tree: OrgTree) -> None:
    assert opened(tree, R.TOWNSHIP_SUPERVISOR).needs_second_factor
    assert opened(tree, R.COUNTY_SUPERVISOR).needs_second_factor
    assert not opened(tree, R.VILLAGE_CADRE).needs_second_factor
