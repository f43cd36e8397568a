"""The demo county: a small county seeded through the real command side into a fresh
PostgreSQL database, then read back from the event store (not from the seeder's plan)."""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

import psycopg
import pytest

from application.care import CareApplication
from domain.account import Account, AccountStatus
from domain.group import VolunteerGroup
from domain.helper import Helper
from domain.org_unit import OrgUnit
from domain.pairing import Pairing
from domain.person import Person, age_on, id_number_problem
from domain.vocabulary import ActorRole, HelperRole, OrgLevel, PairingShape, PersonKind, RiskTag
from guanai.cli.accounts import offline_service
from guanai.demo.accounts import DEMO_PASSWORD, open_demo_accounts, print_demo_accounts
from guanai.demo.plan import census_dates, plan_county
from guanai.demo.seed import DemoCounts, print_summary, seed_county
from infrastructure.audit import Audit
from infrastructure.lookup_hash import lookup_hash
from infrastructure.settings import Settings
from infrastructure.verifier import PublicKey, verify_export
from tests.app_support import make_care
from tests.conftest import create_database, drop_database
from workers.projector import Projector

SCALE = 0.05
ELDERS, CHILDREN = round(707 * SCALE), round(3596 * SCALE)


@dataclass
class Seeded:
    url: str
    app: CareApplication
    counts: DemoCounts
    events: int
    by_kind: dict[type, list[Any]]


def event_count(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM guanai_events").fetchone()[0]


def everything(app: CareApplication) -> dict[type, list[Any]]:
    """Every aggregate in the store, rebuilt from its events, by class."""
    ids: dict[UUID, None] = {}
    for n in app.recorder.select_notifications(start=1, limit=1_000_000):
        ids.setdefault(n.originator_id, None)
    found: dict[type, list[Any]] = {cls: [] for cls in (OrgUnit, Person, Helper, VolunteerGroup, Pairing, Account)}
    for aggregate_id in ids:
        agg = app.repository.get(aggregate_id)
        found[type(agg)].append(agg)
    return found


@pytest.fixture(scope="module")
def seeded(pg_base_url: str) -> Iterator[Seeded]:
    url = create_database(pg_base_url, prefix="guanai_test_demo")
    app = make_care(url, pool_size=4)
    try:
        counts = seed_county(app, seed=7, scale=SCALE, workers=3)
        yield Seeded(url, app, counts, event_count(url), everything(app))
    finally:
        app.close()
        drop_database(pg_base_url, url)


def first_event(app: CareApplication, aggregate_id: UUID) -> Any:
    return next(iter(app.events.get(aggregate_id, lte=1)))


# ---- the plan (no I/O) ---------------------------------------------------------------------------


def test_a_full_county_has_the_yuanjiang_numbers_and_the_same_seed_gives_the_same_county() -> None:
    plan = plan_county(2026, 1.0)
    levels = Counter(u.level for u in plan.units)
    assert levels == {OrgLevel.COUNTY: 1, OrgLevel.TOWNSHIP: 8, OrgLevel.VILLAGE: 70}
    assert Counter(p.kind for p in plan.persons) == {PersonKind.ELDER: 707, PersonKind.CHILD: 3596}
    again = plan_county(2026, 1.0)
    assert [p.id for p in again.persons] == [p.id for p in plan.persons]
    assert [(p.name, p.birth_date) for p in again.persons] == [(p.name, p.birth_date) for p in plan.persons]
    other = plan_county(2027, 1.0)
    assert not {p.id for p in other.persons} & {p.id for p in plan.persons}


def test_about_two_to_three_percent_are_left_without_a_pairing_in_a_full_county() -> None:
    plan = plan_county(2026, 1.0)
    paired = {p.id for pairing in plan.pairings for p in pairing.persons}
    ended = {p.id for pairing, _, _ in plan.endings for p in pairing.persons}
    never = [p for p in plan.persons if p.id not in paired]
    assert 0.008 < len(never) / len(plan.persons) < 0.02
    assert 0.015 < len(never + [p for p in plan.persons if p.id in ended]) / len(plan.persons) < 0.04


# ---- what the commands wrote ----------------------------------------------------------------------


def test_the_tree_has_three_levels_with_real_looking_division_codes(seeded: Seeded) -> None:
    units = seeded.by_kind[OrgUnit]
    by_level = {level: [u for u in units if u.level == level] for level in OrgLevel}
    (county,) = by_level[OrgLevel.COUNTY]
    assert county.code.endswith("000000") and county.id == seeded.counts.county_id
    assert len(by_level[OrgLevel.TOWNSHIP]) >= 2 and len(by_level[OrgLevel.VILLAGE]) >= 2 * len(
        by_level[OrgLevel.TOWNSHIP]
    )
    townships = {u.id: u for u in by_level[OrgLevel.TOWNSHIP]}
    for t in townships.values():
        assert t.parent_id == county.id and t.code.startswith(county.code[:6]) and t.code.endswith("000")
    for v in by_level[OrgLevel.VILLAGE]:
        parent = townships[v.parent_id]
        assert v.code[:9] == parent.code[:9] and v.code[9:] != "000"
        assert v.name.endswith(("村", "社区"))
    assert seeded.counts.written["org_units"] == len(units)


def test_the_asked_numbers_of_elders_and_children_with_plausible_ages_and_tags(seeded: Seeded) -> None:
    persons = seeded.by_kind[Person]
    assert Counter(p.kind for p in persons) == {PersonKind.ELDER: ELDERS, PersonKind.CHILD: CHILDREN}
    for p in persons:
        registered = first_event(seeded.app, p.id).occurred_at
        age = p.age_on(registered)
        if p.kind == PersonKind.ELDER:
            assert 60 <= age <= 96
            assert (RiskTag.ADVANCED_AGE.value in p.risk_tags) == (age >= 80), (p.name, age, p.risk_tags)
            assert p.absent_children and all(c["phone"] and c["whereabouts"] for c in p.absent_children)
        else:
            assert 3 <= age < 18
            assert p.guardian and p.guardian["name"] and len(p.parents) == 2
        assert p.id_number is None or id_number_problem(p.id_number) is None
    children = [p for p in persons if p.kind == PersonKind.CHILD]
    # Those still in the programme were all under 18 at the September census that kept them.
    _, autumn = census_dates(date.today())
    assert all(age_on(p.birth_date, autumn) < 18 for p in children if p.active)
    assert sum(p.id_number is not None for p in persons) > len(persons) / 2
    signed = sum(p.care_agreement_signed_on is not None for p in children) / len(children)
    assert 0.9 <= signed <= 1.0


def test_helpers_of_every_role_none_over_capacity(seeded: Seeded) -> None:
    helpers = seeded.by_kind[Helper]
    assert {h.role for h in helpers} == set(HelperRole)
    roles = Counter(h.role for h in helpers)
    assert roles.most_common(1)[0][0] == HelperRole.VOLUNTEER
    villages = [u for u in seeded.by_kind[OrgUnit] if u.level == OrgLevel.VILLAGE]
    assert roles[HelperRole.CHILD_DIRECTOR] == len(villages)
    active_pairings = [p for p in seeded.by_kind[Pairing] if not p.ended]
    for h in helpers:
        assert h.load <= h.capacity, (h.role, h.load, h.capacity)
        assert h.load == sum(len(p.person_ids) for p in active_pairings if h.id in p.helper_ids)
    (group, *_) = seeded.by_kind[VolunteerGroup]
    assert group.member_ids and all(
        next(h for h in helpers if h.id == m).role == HelperRole.VOLUNTEER for m in group.member_ids
    )


def test_pairings_of_all_three_shapes_some_ended_and_some_people_unpaired(seeded: Seeded) -> None:
    pairings = seeded.by_kind[Pairing]
    active = [p for p in pairings if not p.ended]
    assert {p.shape for p in active} == set(PairingShape)
    helpers = {h.id: h for h in seeded.by_kind[Helper]}
    for p in active:
        if p.shape == PairingShape.MANY_TO_ONE:  # 四包一
            assert sorted(helpers[h].role for h in p.helper_ids) == sorted(
                [HelperRole.ASSISTING_CADRE, HelperRole.VILLAGE_CADRE, HelperRole.FAMILY_DOCTOR, HelperRole.POLICE]
            )
        if p.shape == PairingShape.ONE_TO_ONE and helpers[p.helper_ids[0]].role == HelperRole.CARING_MOTHER:
            assert next(x for x in seeded.by_kind[Person] if x.id == p.person_ids[0]).sex.value == "female"
    assert any(p.ended and p.end_reason for p in pairings)
    persons = seeded.by_kind[Person]
    in_programme = [p for p in persons if p.active]
    unpaired = [p for p in in_programme if not p.pairing_ids]
    assert 0 < len(unpaired) < 0.1 * len(in_programme)
    assert any(not p.active and p.left_reason for p in persons)


def test_every_event_is_the_seeders_and_happened_in_the_past(seeded: Seeded) -> None:
    for n in seeded.app.recorder.select_notifications(start=1, limit=1_000_000):
        event = seeded.app.mapper.to_domain_event(n)
        assert (event.actor_id, event.actor_role) == ("demo-seeder", "system")
        assert event.occurred_at < event.timestamp


def test_the_summary_lists_each_township_with_totals_from_the_views(seeded: Seeded) -> None:
    projector = Projector(seeded.url, app=seeded.app)
    try:
        projector.open()
        projector.catch_up()
        out = io.StringIO()
        print_summary(projector.view, seeded.counts.county_id, out)
    finally:
        projector.close()
    text = out.getvalue()
    for t in (u for u in seeded.by_kind[OrgUnit] if u.level == OrgLevel.TOWNSHIP):
        assert t.name in text and t.code in text
    total = next(line for line in text.splitlines() if line.startswith("Total")).split()
    active = [p for p in seeded.by_kind[Person] if p.active]
    assert total[1:3] == [
        str(sum(p.kind == PersonKind.ELDER for p in active)),
        str(sum(p.kind == PersonKind.CHILD for p in active)),
    ]
    assert total[4] == str(sum(not p.ended for p in seeded.by_kind[Pairing]))
    assert "N对一" in text and "一对N" in text and "一对一" in text


def test_running_it_again_writes_nothing_new(seeded: Seeded) -> None:
    again = seed_county(seeded.app, seed=7, scale=SCALE, workers=3)
    assert again.total_written == 0
    assert again.present == seeded.counts.written
    assert event_count(seeded.url) == seeded.events


def test_a_case_history_of_every_kind_verifies_with_only_the_public_key(seeded: Seeded) -> None:
    """Exports of real cases (an org unit, elders and children, helpers, a group, pairings) carry
    proofs the standalone verifier accepts: what they show is what is stored, in the signed log."""
    audit = Audit(seeded.app, seeded.url)
    key = PublicKey.from_document(audit.public_key())
    for cls, aggregates in seeded.by_kind.items():
        for agg in aggregates[:3]:
            doc = json.loads(json.dumps(audit.export(agg.id, actor_id="t", actor_role="auditor"), ensure_ascii=False))
            assert verify_export(doc, key) == agg.version, cls.__name__


def test_the_demo_opens_an_activated_account_for_every_role_once(seeded: Seeded) -> None:
    settings = Settings()
    service = offline_service(seeded.app, seeded.url, settings)
    try:
        made = open_demo_accounts(service, plan_county(7, SCALE))
        assert {a.role for a in made} == set(ActorRole) - {ActorRole.SYSTEM}
        for demo in made:
            account_id = service.credentials.account_by_phone(lookup_hash("phone", demo.phone))
            assert account_id is not None
            account = seeded.app.load(Account, account_id)
            assert (account.role, account.status) == (demo.role, AccountStatus.ACTIVE)
            login = service.credentials.login(account_id)
            assert login is not None and service.hasher.verify(login.password_hash, DEMO_PASSWORD)
        volunteer = next(a for a in made if a.role == ActorRole.VOLUNTEER)
        assert seeded.app.load(
            Account, service.credentials.account_by_phone(lookup_hash("phone", volunteer.phone))
        ).helper_id
        before = event_count(seeded.url)
        assert open_demo_accounts(service, plan_county(7, SCALE)) == made  # again: nothing new
        assert event_count(seeded.url) == before
        out = io.StringIO()
        print_demo_accounts(made, "http://127.0.0.1:8000", out)
        assert DEMO_PASSWORD in out.getvalue() and "DEMO ONLY" in out.getvalue() and made[0].phone in out.getvalue()
    finally:
        service.credentials.close()  # type: ignore[attr-defined]
