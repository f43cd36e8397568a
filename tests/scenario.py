"""Helpers for domain scenarios: given aggregates in a known state, when a command, then events
or an error.

``given`` settles an aggregate (its pending events become history), so ``then`` sees only what
the command under test emitted, and checks that every emitted event carries the command's meta.
No I/O: aggregates live in memory only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from typing import Any, TypeVar
from uuid import UUID, uuid4

import pytest

from domain.base import META_FIELDS, CommandMeta, DomainError
from domain.group import VolunteerGroup
from domain.helper import DEFAULT_CAPACITY, Helper
from domain.org_unit import OrgUnit
from domain.pairing import Pairing
from domain.person import _ID_CHECK, _ID_WEIGHTS, Person
from domain.vocabulary import Cadence, HelperRole, OrgLevel, PairingShape, PersonKind, RiskTag, Sex, VisitMode

CST = timezone(timedelta(hours=8))
NOW = datetime(2025, 9, 15, 9, 30, tzinfo=CST)
TODAY = NOW.date()

T = TypeVar("T")


def meta(
    *, at: datetime = NOW, actor: str = "cadre-7", role: str = "village_cadre", correlation: str | None = None
) -> CommandMeta:
    return CommandMeta(
        actor_id=actor, actor_role=role, correlation_id=correlation or f"req-{uuid4().hex[:8]}", occurred_at=at
    )


def years_before(day: date, years: int) -> date:
    """The same calendar day ``years`` earlier (29 February falls back to the 28th)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def valid_id_number(first17: str) -> str:
    check = _ID_CHECK[sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]
    return first17 + check


# ---- given ------------------------------------------------------------------------------------


def given(*aggregates: T) -> T:
    """Settle aggregates: what they emitted so far is history, not the command under test."""
    for agg in aggregates:
        agg.collect_events()  # type: ignore[attr-defined]
    return aggregates[0]


class OrgTree:
    """A county with two townships, each with a village."""

    def __init__(self, prefix: str = "530428") -> None:
        m = meta(role="administrator")
        self.county = OrgUnit.register(
            code=f"{prefix}000000", name="元江县", level=OrgLevel.COUNTY, parent=None, meta=m
        )
        self.township = OrgUnit.register(
            code=f"{prefix}101000", name="澧江街道", level=OrgLevel.TOWNSHIP, parent=self.county, meta=m
        )
        self.village = OrgUnit.register(
            code=f"{prefix}101201", name="红河村", level=OrgLevel.VILLAGE, parent=self.township, meta=m
        )
        self.other_township = OrgUnit.register(
            code=f"{prefix}102000", name="因远镇", level=OrgLevel.TOWNSHIP, parent=self.county, meta=m
        )
        self.other_village = OrgUnit.register(
            code=f"{prefix}102201", name="安定村", level=OrgLevel.VILLAGE, parent=self.other_township, meta=m
        )
        given(self.county, self.township, self.village, self.other_township, self.other_village)


def elder(village: OrgUnit, *, age: int = 72, **overrides: Any) -> Person:
    fields: dict[str, Any] = {
        "id": uuid4(),
        "kind": PersonKind.ELDER,
        "name": "李秀英",
        "sex": Sex.FEMALE,
        "birth_date": years_before(TODAY, age),
        "id_number": None,
        "household": "红河村3组12号",
        "village": village,
        "risk_tags": [RiskTag.LIVING_ALONE],
        "guardian": None,
        "parents": [],
        "absent_children": [{"name": "王强", "works_in": "广东东莞", "phone": "13800000000"}],
        "care_agreement_signed_on": None,
        "meta": meta(),
    }
    fields.update(overrides)
    return given(Person.register(**fields))


def child(village: OrgUnit, *, age: int = 9, **overrides: Any) -> Person:
    fields: dict[str, Any] = {
        "id": uuid4(),
        "kind": PersonKind.CHILD,
        "name": "王小梅",
        "sex": Sex.FEMALE,
        "birth_date": years_before(TODAY, age),
        "id_number": None,
        "household": "红河村5组3号",
        "village": village,
        "risk_tags": [],
        "guardian": {"name": "王奶奶", "relation": "grandmother"},
        "parents": [{"name": "王建国", "works_in": "浙江义乌"}],
        "absent_children": [],
        "care_agreement_signed_on": None,
        "meta": meta(),
    }
    fields.update(overrides)
    return given(Person.register(**fields))


def helper(unit: OrgUnit, *, capacity: int = DEFAULT_CAPACITY, role: HelperRole = HelperRole.VOLUNTEER) -> Helper:
    h = Helper.register(
        id=uuid4(), role=role, name="张志愿", phone="13900000000", org_unit=unit, capacity=capacity, meta=meta()
    )
    return given(h)


def group(unit: OrgUnit, *members: Helper) -> VolunteerGroup:
    g = VolunteerGroup.form(id=uuid4(), name="红河村志愿服务队", org_unit=unit, meta=meta())
    for h in members:
        g.add_member(h, meta())
    given(g, *members)
    return g


def pairing(
    shape: PairingShape,
    helpers: list[Helper],
    persons: list[Person],
    *,
    starts_on: date = TODAY,
    group: VolunteerGroup | None = None,
) -> Pairing:
    p = Pairing.form(
        id=uuid4(),
        shape=shape,
        helpers=helpers,
        persons=persons,
        cadence=Cadence.WEEKLY,
        visit_mode=VisitMode.HOME_VISIT,
        starts_on=starts_on,
        group=group,
        meta=meta(),
    )
    given(p, *helpers, *persons)
    return p


# ---- then -------------------------------------------------------------------------------------


def then(m: CommandMeta, *aggregates: Any) -> list[Any]:
    """The events the command emitted on each aggregate, in order; each must carry ``m``."""
    events = [e for agg in aggregates for e in agg.collect_events()]
    for e in events:
        carried = {f: getattr(e, f) for f in META_FIELDS}
        assert carried == m.fields(), f"{type(e).__qualname__} does not carry the command's meta"
    return events


def names(events: list[Any]) -> list[str]:
    return [type(e).__qualname__ for e in events]


def nothing_emitted(*aggregates: Any) -> None:
    for agg in aggregates:
        pending = names(list(agg.pending_events))
        assert pending == [], f"a refused command emitted {pending}"


@contextmanager
def refused(error: type[DomainError], field: str | None) -> Iterator[pytest.ExceptionInfo[DomainError]]:
    """The command fails with ``error`` naming ``field`` (None: about the aggregate itself)."""
    with pytest.raises(error) as info:
        yield info
    assert info.value.field == field, f"{error.__name__} names {info.value.field!r}, expected {field!r}"


def ids(*aggregates: Any) -> list[UUID]:
    return [a.id for a in aggregates]
