"""The demo county behind ``guanai demo``: a realistic county written through the command side.

``plan_county`` draws the whole county from the seed, without I/O: the org tree, left-behind
elders and children with their families, helpers of every role, volunteer groups, pairings of
the three shapes, a few ended pairings and people who left the programme. ``seed_county``
writes that plan with CareApplication commands, as the registry staff would have: set up in
February, registered at the March census, paired in April, changed by the September census.
Ids derive from the seed, so a second run finds everything present and writes nothing new.
"""

from __future__ import annotations

import random
import threading
import time
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import IO, Any
from uuid import UUID

from domain.base import CommandMeta, DomainError, derived_id
from domain.org_unit import org_unit_id
from domain.pairing import Pairing
from domain.person import Person, age_on
from domain.vocabulary import (
    ActorRole,
    Cadence,
    HelperRole,
    OrgLevel,
    PairingShape,
    PersonKind,
    RiskTag,
    Sex,
    VisitMode,
)
from guanai import demo_names as names
from guanai.application import CareApplication

CHINA = timezone(timedelta(hours=8))
FULL = {"elders": 707, "children": 3596, "townships": 8, "villages": 70}  # Yuanjiang's pairing figures
KINDS = ("org_units", "persons", "helpers", "groups", "pairings", "pairing_endings", "departures")
R, K, S = HelperRole, PersonKind, PairingShape

# People one helper may look after: cadres, doctors and police cover a whole village or township.
CAPACITY = {
    R.VOLUNTEER: 10, R.VILLAGE_CADRE: 20, R.CHILD_DIRECTOR: 30, R.CHILD_SUPERVISOR: 40, R.TEACHER: 15,
    R.FAMILY_DOCTOR: 60, R.POLICE: 40, R.SOCIAL_WORKER: 15, R.ASSISTING_CADRE: 5, R.CARING_MOTHER: 1, R.PEER_ELDER: 10,
}


@dataclass
class Unit:
    id: UUID
    code: str
    name: str
    level: OrgLevel
    parent_id: UUID | None
    township_id: UUID | None = None


@dataclass
class PlannedPerson:
    id: UUID
    kind: PersonKind
    name: str
    sex: str
    birth_date: date
    id_number: str | None
    household: str
    village: Unit
    risk_tags: list[RiskTag]
    registered_at: datetime
    guardian: dict[str, Any] | None = None
    parents: list[dict[str, Any]] = field(default_factory=list)
    absent_children: list[dict[str, Any]] = field(default_factory=list)
    signed_on: date | None = None
    unpaired: bool = False

    @property
    def key(self) -> bool:
        """A key person (重点对象) gets the 四包一 team."""
        t = set(self.risk_tags)
        return bool(t & {RiskTag.DISABLED, RiskTag.TEKUN, RiskTag.CHILD_IN_DIFFICULTY, RiskTag.DE_FACTO_UNSUPPORTED}) or (
            {RiskTag.ADVANCED_AGE, RiskTag.LIVING_ALONE, RiskTag.SEMI_DISABLED} <= t
        )


@dataclass
class PlannedHelper:
    id: UUID
    role: HelperRole
    name: str
    phone: str
    unit: Unit
    capacity: int
    registered_at: datetime
    load: int = 0


@dataclass
class PlannedPairing:
    id: UUID
    shape: PairingShape
    helpers: list[PlannedHelper]
    persons: list[PlannedPerson]
    cadence: Cadence
    mode: VisitMode
    starts_on: date
    group_id: UUID | None
    township_id: UUID


@dataclass
class CountyPlan:
    county: Unit
    units: list[Unit]
    persons: list[PlannedPerson]
    helpers: list[PlannedHelper]
    groups: list[tuple[UUID, str, Unit, list[UUID]]]
    pairings: list[PlannedPairing]
    endings: list[tuple[PlannedPairing, str, date]]
    departures: list[tuple[PlannedPerson, str, datetime]]
    census: date


@dataclass
class DemoCounts:
    """What one run wrote and what it found already there, per kind."""

    county_id: UUID
    written: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    present: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    elapsed: float = 0.0

    @property
    def total_written(self) -> int:
        return sum(self.written.values())

    def __str__(self) -> str:
        parts = [f"{k.replace('_', ' ')} {self.written[k]} new, {self.present[k]} present" for k in KINDS]
        return "; ".join(parts)


def census_dates(today: date) -> tuple[date, date]:
    """The last year whose spring (March) and autumn (September) censuses are both over."""
    year = today.year if today >= date(today.year, 10, 1) else today.year - 1
    return date(year, 3, 15), date(year, 9, 15)


def _at(day: date, rng: random.Random) -> datetime:
    return datetime(day.year, day.month, day.day, rng.randint(8, 17), rng.randrange(60), tzinfo=CHINA)


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _birth(rng: random.Random, on: date, age: int) -> date:
    """A birth date making someone exactly ``age`` on ``on``."""
    earliest = _years_before(on, age + 1) + timedelta(days=1)
    return earliest + timedelta(days=rng.randint(0, (_years_before(on, age) - earliest).days))


def _split(total: int, weights: Sequence[float]) -> list[int]:
    """``total`` shared in proportion to ``weights`` (largest remainder), summing exactly."""
    raw = [total * w / sum(weights) for w in weights]
    shares = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: shares[i] - raw[i])[: total - sum(shares)]:
        shares[i] += 1
    return shares


def _chunks(rng: random.Random, items: list[Any]) -> list[list[Any]]:
    """Groups of three to eight, as one-to-N pairings have (fewer only when fewer are left)."""
    out, i = [], 0
    while i < len(items):
        left = len(items) - i
        size = left if left <= 8 else min(rng.randint(3, 8), left - 3)
        out.append(items[i : i + size])
        i += size
    return out


class _Planner:
    """Builds a CountyPlan; each village draws from its own random stream."""

    def __init__(self, seed: int, scale: float, spring: date, autumn: date) -> None:
        self.seed, self.scale, self.spring, self.autumn = seed, scale, spring, autumn
        self.rng = random.Random(f"guanai-demo:{seed}")
        self.id_numbers: set[str] = set()
        self.units: list[Unit] = []
        self.persons: list[PlannedPerson] = []
        self.helpers: list[PlannedHelper] = []
        self.pools: dict[tuple[UUID, HelperRole], list[PlannedHelper]] = defaultdict(list)
        self.pairings: list[PlannedPairing] = []
        self.numbered: dict[str, int] = defaultdict(int)  # per village and kind: the next index of a derived id

    def next_id(self, kind: str, village: Unit) -> UUID:
        n = self.numbered[f"{kind}:{village.code}"]
        self.numbered[f"{kind}:{village.code}"] += 1
        return derived_id(f"demo-{kind}", f"{self.seed}:{village.code}:{n}")

    def unit(self, code: str, name: str, level: OrgLevel, parent: Unit | None) -> Unit:
        township = parent.id if level == OrgLevel.VILLAGE and parent else None
        u = Unit(org_unit_id(code), code, name, level, parent.id if parent else None, township)
        if level == OrgLevel.TOWNSHIP:
            u.township_id = u.id
        self.units.append(u)
        return u

    def tree(self) -> tuple[Unit, list[Unit]]:
        county = self.unit(names.COUNTY_CODE + "000000", names.COUNTY_NAME, OrgLevel.COUNTY, None)
        n_townships = max(2, min(len(names.TOWNSHIPS), round(FULL["townships"] * self.scale)))
        n_villages = max(2 * n_townships, round(FULL["villages"] * self.scale))
        counts = _split(n_villages, [self.rng.uniform(0.7, 1.3) for _ in range(n_townships)])
        taken: set[str] = set()
        next_code = {"town": 100, "township": 200}
        villages: list[Unit] = []
        for (name, kind), n in zip(names.TOWNSHIPS, counts, strict=False):
            next_code[kind] += 1
            township = self.unit(f"{names.COUNTY_CODE}{next_code[kind]:03d}000", name, OrgLevel.TOWNSHIP, county)
            labels = names.village_names(self.rng, max(n, 1), taken)
            if kind == "town":  # a town's seat is a community (社区, codes 0xx)
                labels[0] = name[:-1] + "社区"
            for k, label in enumerate(labels, start=1):
                code = f"{township.code[:9]}{(k if label.endswith('社区') else 200 + k):03d}"
                villages.append(self.unit(code, label, OrgLevel.VILLAGE, township))
        return county, villages

    def person(self, vr: random.Random, village: Unit, kind: PersonKind, household: str, name: str, sex: str,
               age: int, tags: set[RiskTag], reg: datetime, **extra: Any) -> PlannedPerson:
        birth = _birth(vr, reg.date(), age)
        number = names.id_number(vr, names.COUNTY_CODE, birth, sex, self.id_numbers) if vr.random() < 0.8 else None
        p = PlannedPerson(self.next_id("person", village), kind, name, sex, birth, number, household, village, sorted(tags), reg, **extra)
        self.persons.append(p)
        return p

    def elders(self, vr: random.Random, village: Unit, n: int) -> None:
        made = 0
        while made < n:
            household = f"{village.name}{vr.randint(1, 9)}组{made + 1:02d}号"
            reg = _at(self.spring + timedelta(days=vr.randint(0, 12)), vr)
            family = names.surname(vr)
            away = [{"relation": rel, "name": names.full_name(vr, "mid", "male" if rel == "son" else "female", family),
                     "phone": names.mobile(vr), "whereabouts": names.work_place(vr),
                     "away_since": reg.year - vr.randint(1, 15)}
                    for rel in vr.choices(["son", "daughter"], k=vr.choices([1, 2, 3, 4], [25, 38, 25, 12])[0])]
            couple = n - made >= 2 and vr.random() < 0.5
            members = [("male", family), ("female", None)] if couple else [
                ("female", None) if vr.random() < 0.62 else ("male", family)]
            base = {RiskTag.EMPTY_NEST} if couple else {RiskTag.LIVING_ALONE} if vr.random() < 0.8 else set()
            age0 = vr.choices(range(60, 96), [22] * 5 + [25] * 5 + [20] * 5 + [14] * 5 + [10] * 5 + [6] * 5 + [3] * 6)[0]
            for i, (sex, own) in enumerate(members):
                age = age0 if i == 0 else min(95, max(60, age0 - vr.randint(-2, 6)))
                tags = set(base) | self.elder_tags(vr, age, alone=RiskTag.LIVING_ALONE in base)
                gen = names.generation_of(reg.year - age)
                self.person(vr, village, K.ELDER, household, names.full_name(vr, gen, sex, own), sex, age, tags, reg,
                            absent_children=away)
                made += 1

    @staticmethod
    def elder_tags(vr: random.Random, age: int, *, alone: bool) -> set[RiskTag]:
        old = age >= 80
        tags = {RiskTag.ADVANCED_AGE} if old else set()
        r = vr.random()
        if r < (0.09 if old else 0.025):
            tags.add(RiskTag.DISABLED)
        elif r < (0.30 if old else 0.09):
            tags.add(RiskTag.SEMI_DISABLED)
        for tag, p in ((RiskTag.DIBAO, 0.14), (RiskTag.ECONOMIC_HARDSHIP, 0.2), (RiskTag.TEKUN, 0.03 if alone else 0)):
            if vr.random() < p:
                tags.add(tag)
        return tags

    def children(self, vr: random.Random, village: Unit, n: int) -> None:
        made = 0
        while made < n:
            household = f"{village.name}{vr.randint(1, 9)}组{made + 31:02d}号"
            reg = _at(self.spring + timedelta(days=vr.randint(0, 12)), vr)
            family = names.surname(vr)
            unsupported = vr.random() < 0.008
            place = names.work_place(vr)
            parents = [
                {"relation": "father", "name": names.full_name(vr, "mid", "male", family), "phone": names.mobile(vr),
                 "work_place": place},
                {"relation": "mother", "name": names.full_name(vr, "mid", "female"), "phone": names.mobile(vr),
                 "work_place": place if vr.random() < 0.7 else names.work_place(vr)},
            ]
            if unsupported:  # both parents unreachable: 事实无人抚养
                parents = [{**p, "phone": None, "work_place": None, "note": "失联"} for p in parents]
            relation = vr.choices(["paternal_grandmother", "paternal_grandfather", "maternal_grandmother",
                                   "maternal_grandfather", "uncle", "aunt"], [34, 26, 16, 10, 6, 8])[0]
            g_sex = "male" if relation.endswith(("father", "uncle")) else "female"
            g_family = {"paternal_grandfather": family, "uncle": family, "aunt": family,
                        "maternal_grandfather": parents[1]["name"][0]}.get(relation)
            guardian = {"relation": relation, "phone": names.mobile(vr),
                        "name": names.full_name(vr, "old" if "grand" in relation else "mid", g_sex, g_family)}
            signed = None if vr.random() < 0.02 else self.spring - timedelta(days=vr.randint(20, 400))
            family_tags = {t for t, p in ((RiskTag.DIBAO, 0.07), (RiskTag.ECONOMIC_HARDSHIP, 0.1)) if vr.random() < p}
            age = vr.choices(range(3, 18), [5, 5, 5] + [8] * 9 + [5, 4, 3])[0]
            for _ in range(min(n - made, vr.choices([1, 2, 3], [50, 38, 12])[0])):
                sex = "male" if vr.random() < 0.53 else "female"
                tags = set(family_tags) | ({RiskTag.DE_FACTO_UNSUPPORTED} if unsupported else set())
                if vr.random() < (0.15 if RiskTag.DIBAO in tags else 0.03):
                    tags.add(RiskTag.CHILD_IN_DIFFICULTY)
                if vr.random() < 0.006:
                    tags.add(RiskTag.DISABLED)
                self.person(vr, village, K.CHILD, household, names.full_name(vr, "young", sex, family), sex, age, tags,
                            reg, guardian=guardian, parents=parents, signed_on=signed)
                made += 1
                age = min(17, max(3, age + vr.choice([-5, -4, -3, -2, -1, 1, 2, 3])))

    def helper(self, vr: random.Random, role: HelperRole, unit: Unit) -> PlannedHelper:
        pool = self.pools[(unit.id, role)]
        sex = "female" if role == R.CARING_MOTHER or vr.random() < 0.4 else "male"
        gen = "old" if role == R.PEER_ELDER else "mid"
        reg = _at(self.spring - timedelta(days=vr.randint(12, 26)), vr)
        hid = derived_id("demo-helper", f"{self.seed}:{unit.code}:{role}:{len(pool)}")
        h = PlannedHelper(hid, role, names.full_name(vr, gen, sex), names.mobile(vr), unit, CAPACITY[role], reg)
        pool.append(h)
        self.helpers.append(h)
        return h

    def take(self, vr: random.Random, role: HelperRole, unit: Unit, people: int, limit: int = 99) -> PlannedHelper | None:
        """The least-loaded helper of ``role`` in ``unit`` with room for ``people``; a new one if
        none has room and fewer than ``limit`` serve there."""
        fits = [h for h in self.pools[(unit.id, role)] if h.load + people <= h.capacity]
        if fits:
            h = min(fits, key=lambda h: h.load)
        elif len(self.pools[(unit.id, role)]) < limit and people <= CAPACITY[role]:
            h = self.helper(vr, role, unit)
        else:
            return None
        h.load += people
        return h

    def need(self, vr: random.Random, role: HelperRole, unit: Unit, people: int) -> PlannedHelper:
        h = self.take(vr, role, unit, people)
        if h is None:
            raise ValueError(f"{people} people do not fit any {role}")
        return h

    def pair(self, vr: random.Random, village: Unit, shape: PairingShape, helpers: list[PlannedHelper],
             persons: list[PlannedPerson], cadence: Cadence, mode: VisitMode, group: bool = False) -> None:
        if shape != S.MANY_TO_ONE:
            shape = S.ONE_TO_ONE if len(persons) == 1 else S.ONE_TO_MANY
        pid = self.next_id("pairing", village)
        group_id = derived_id("demo-group", f"{self.seed}:{village.township_id}") if group else None
        starts = self.spring + timedelta(days=vr.randint(20, 50))
        assert village.township_id is not None
        self.pairings.append(PlannedPairing(pid, shape, helpers, persons, cadence, mode, starts, group_id, village.township_id))

    def pair_village(self, village: Unit, township: Unit) -> None:
        vr = random.Random(f"{self.seed}:{village.code}:pairings")
        people = [p for p in self.persons if p.village is village and not p.unpaired]
        for p in (p for p in people if p.key):  # 四包一
            team = [self.need(vr, R.ASSISTING_CADRE, township, 1), self.need(vr, R.VILLAGE_CADRE, village, 1),
                    self.need(vr, R.FAMILY_DOCTOR, village, 1), self.need(vr, R.POLICE, township, 1)]
            self.pair(vr, village, S.MANY_TO_ONE, team, [p], Cadence.WEEKLY, VisitMode.HOME_VISIT)
        girls = [p for p in people if p.kind == K.CHILD and p.sex == "female" and not p.key
                 and 5 <= age_on(p.birth_date, self.spring) <= 14]
        mothered = vr.sample(girls, min(len(girls), 1 if vr.random() < 0.6 else 2))
        for girl in mothered:
            self.pair(vr, village, S.ONE_TO_ONE, [self.need(vr, R.CARING_MOTHER, village, 1)], [girl], Cadence.HALF_MONTHLY, VisitMode.HOME_VISIT)
        rest = [p for p in people if not p.key and p not in mothered]
        for chunk in _chunks(vr, [p for p in rest if p.kind == K.CHILD]):
            r, school = vr.random(), all(age_on(p.birth_date, self.spring) >= 6 for p in chunk)
            if r < 0.12 and (h := self.take(vr, R.CHILD_DIRECTOR, village, len(chunk), limit=1)):
                self.pair(vr, village, S.ONE_TO_MANY, [h], chunk, Cadence.MONTHLY, VisitMode.PHONE_VIDEO)
            elif r < 0.32 and school and (h := self.take(vr, R.TEACHER, village, len(chunk))):
                self.pair(vr, village, S.ONE_TO_MANY, [h], chunk, Cadence.MONTHLY, VisitMode.HOME_VISIT)
            elif r < 0.37 and (h := self.take(vr, R.SOCIAL_WORKER, township, len(chunk), limit=3)):
                self.pair(vr, village, S.ONE_TO_MANY, [h], chunk, Cadence.HALF_MONTHLY, VisitMode.HOME_VISIT)
            else:
                self.volunteers(vr, village, chunk)
        elders = [p for p in rest if p.kind == K.ELDER]
        for chunk in _chunks(vr, elders):
            r = vr.random()
            h = self.take(vr, R.PEER_ELDER, village, len(chunk)) if r < 0.35 else None
            if h is None and r < 0.55:
                h = self.take(vr, R.VILLAGE_CADRE, village, len(chunk), limit=5)
            if h is not None:
                self.pair(vr, village, S.ONE_TO_MANY, [h], chunk, Cadence.WEEKLY, VisitMode.HOME_VISIT)
            else:
                self.volunteers(vr, village, chunk)
        checked = [p for p in elders if age_on(p.birth_date, self.spring) >= 70 or RiskTag.SEMI_DISABLED in p.risk_tags]
        for chunk in _chunks(vr, checked):  # the family doctor's half-yearly health check
            doctor = self.need(vr, R.FAMILY_DOCTOR, village, len(chunk))
            self.pair(vr, village, S.ONE_TO_MANY, [doctor], chunk, Cadence.HALF_YEARLY, VisitMode.HOME_VISIT)

    def volunteers(self, vr: random.Random, village: Unit, chunk: list[PlannedPerson]) -> None:
        h = self.need(vr, R.VOLUNTEER, village, len(chunk))
        phone = chunk[0].kind == K.ELDER and vr.random() < 0.15  # far-off hamlets: a weekly call
        self.pair(vr, village, S.ONE_TO_MANY, [h], chunk, Cadence.WEEKLY,
                  VisitMode.PHONE_VIDEO if phone else VisitMode.HOME_VISIT, group=True)


def plan_county(seed: int = 2026, scale: float = 1.0, *, today: date | None = None) -> CountyPlan:
    """The whole demo county, drawn from ``seed`` (the same seed and census year, the same county)."""
    if scale <= 0:
        raise ValueError("scale must be positive")
    spring, autumn = census_dates(today or datetime.now(CHINA).date())
    pl = _Planner(seed, scale, spring, autumn)
    county, villages = pl.tree()
    weights = [pl.rng.uniform(0.5, 1.6) * (0.5 if v.name.endswith("社区") else 1) for v in villages]
    elders = _split(round(FULL["elders"] * scale), weights)
    children = _split(round(FULL["children"] * scale), [w * pl.rng.uniform(0.8, 1.2) for w in weights])
    for village, n_elders, n_children in zip(villages, elders, children, strict=True):
        vr = random.Random(f"{seed}:{village.code}")
        pl.elders(vr, village, n_elders)
        pl.children(vr, village, n_children)
    # Coverage gaps: about 1.2% were never paired (ended pairings and departures add more).
    for p in pl.rng.sample(pl.persons, max(1, round(0.012 * len(pl.persons)))):
        p.unpaired = True
    townships = {u.id: u for u in pl.units if u.level == OrgLevel.TOWNSHIP}
    for township in townships.values():  # every role serves somewhere, even when nobody needs it yet
        tr = random.Random(f"{seed}:{township.code}:staff")
        for role in (R.CHILD_SUPERVISOR, R.POLICE, R.SOCIAL_WORKER, R.ASSISTING_CADRE):
            pl.helper(tr, role, township)
    for village in villages:
        vr = random.Random(f"{seed}:{village.code}:staff")
        for role in (R.CHILD_DIRECTOR, R.VILLAGE_CADRE, R.VILLAGE_CADRE, R.FAMILY_DOCTOR, R.TEACHER, R.VOLUNTEER, R.PEER_ELDER):
            pl.helper(vr, role, village)
        assert village.township_id is not None
        pl.pair_village(village, townships[village.township_id])
    groups = []
    for township in townships.values():
        members = [h.id for h in pl.helpers if h.role == R.VOLUNTEER and h.unit.township_id == township.id]
        gid = derived_id("demo-group", f"{seed}:{township.id}")
        groups.append((gid, f"{township.name}关爱留守人员志愿服务队", township, members))
    return CountyPlan(county, pl.units, pl.persons, pl.helpers, groups, pl.pairings,
                      _endings(pl), _departures(pl, autumn), spring)


def _endings(pl: _Planner) -> list[tuple[PlannedPairing, str, date]]:
    reasons = ["志愿者外出务工，结对解除", "志愿者迁居外县", "志愿者因病无法继续帮扶"]
    volunteer = [p for p in pl.pairings if p.helpers[0].role == R.VOLUNTEER]
    ended = pl.rng.sample(volunteer, min(len(volunteer), max(1, round(0.008 * len(pl.pairings)))))
    out = [(p, pl.rng.choice(reasons), p.starts_on + timedelta(days=pl.rng.randint(40, 120))) for p in ended]
    if teacher := [p for p in pl.pairings if p.helpers[0].role == R.TEACHER]:
        p = pl.rng.choice(teacher)
        out.append((p, "教师调离本校", pl.autumn - timedelta(days=pl.rng.randint(10, 20))))
    return out


def _departures(pl: _Planner, autumn: date) -> list[tuple[PlannedPerson, str, datetime]]:
    """Who left at the September census: children come of age or moved to the city with their
    parents; elders whose children came home."""
    children = [p for p in pl.persons if p.kind == K.CHILD]
    grown = [p for p in children if age_on(p.birth_date, autumn) >= 18]
    moved = pl.rng.sample([p for p in children if p not in grown], max(1, round(0.006 * len(children))))
    elders = [p for p in pl.persons if p.kind == K.ELDER]
    home = pl.rng.sample(elders, min(len(elders), max(1, round(0.004 * len(elders)))))
    leaving = [(p, "年满18周岁，移出留守儿童台账") for p in grown] + [(p, "随父母进城就读") for p in moved]
    leaving += [(p, "子女返乡就业，不再留守") for p in home]
    return [(p, reason, _at(autumn + timedelta(days=pl.rng.randint(0, 10)), pl.rng)) for p, reason in leaving]


# ---- writing the plan through the command side ------------------------------------------------

Task = Callable[[], tuple[str, bool]]  # -> (kind, written)
Progress = Callable[[str, int, int], None]


def _meta(seed: int, at: datetime) -> CommandMeta:
    return CommandMeta(actor_id="demo-seeder", actor_role=ActorRole.SYSTEM.value, correlation_id=f"demo-seed-{seed}",
                       occurred_at=at)


def _exists(app: CareApplication, aggregate_id: UUID) -> bool:
    return next(iter(app.events.get(aggregate_id, lte=1)), None) is not None


def _tasks(app: CareApplication, plan: CountyPlan, seed: int) -> list[tuple[str, list[list[Task]]]]:
    """Stages in order; each stage is lanes of tasks run one after another. Lanes run in
    parallel: every pairing, ending and departure of a township shares one lane, because they
    touch the same helpers, while townships share nothing."""
    setup = _at(plan.census - timedelta(days=25), random.Random(seed))

    def unit(u: Unit) -> Task:
        return lambda: ("org_units", app.register_org_unit(
            code=u.code, name=u.name, level=u.level, parent_id=u.parent_id, meta=_meta(seed, setup)).created)

    def person(p: PlannedPerson) -> Task:
        return lambda: ("persons", app.register_person(
            id=p.id, kind=p.kind, name=p.name, sex=Sex(p.sex), birth_date=p.birth_date, village_id=p.village.id,
            meta=_meta(seed, p.registered_at), id_number=p.id_number, household=p.household, risk_tags=p.risk_tags,
            guardian=p.guardian, parents=p.parents, absent_children=p.absent_children,
            care_agreement_signed_on=p.signed_on).created)

    def helper(h: PlannedHelper) -> Task:
        return lambda: ("helpers", app.register_helper(
            id=h.id, role=h.role, name=h.name, phone=h.phone, org_unit_id=h.unit.id, capacity=h.capacity,
            meta=_meta(seed, h.registered_at)).created)

    def group(gid: UUID, name: str, unit: Unit, members: list[UUID]) -> Task:
        at = datetime.combine(plan.census + timedelta(days=15), datetime.min.time(), CHINA).replace(hour=10)
        return lambda: ("groups", app.form_group(id=gid, name=name, org_unit_id=unit.id, member_ids=members,
                                                 meta=_meta(seed, at)).created)

    def pairing(p: PlannedPairing) -> Task:
        def run() -> tuple[str, bool]:
            at = datetime.combine(p.starts_on, datetime.min.time(), CHINA).replace(hour=10)
            try:
                return "pairings", app.form_pairing(
                    id=p.id, shape=p.shape, helper_ids=[h.id for h in p.helpers], person_ids=[x.id for x in p.persons],
                    cadence=p.cadence, visit_mode=p.mode, starts_on=p.starts_on, group_id=p.group_id,
                    meta=_meta(seed, at)).created
            except DomainError:
                # On a second run a member may have left since; the pairing itself is there.
                if _exists(app, p.id):
                    return "pairings", False
                raise
        return run

    def ending(p: PlannedPairing, reason: str, on: date) -> Task:
        def run() -> tuple[str, bool]:
            if app.load(Pairing, p.id).ended:
                return "pairing_endings", False
            at = datetime.combine(on, datetime.min.time(), CHINA).replace(hour=16)
            app.end_pairing(p.id, reason, on, _meta(seed, at))
            return "pairing_endings", True
        return run

    def departure(p: PlannedPerson, reason: str, at: datetime) -> Task:
        def run() -> tuple[str, bool]:
            if not app.load(Person, p.id).active:
                return "departures", False
            app.person_leaves_programme(p.id, reason, _meta(seed, at))
            return "departures", True
        return run

    lanes: dict[UUID, list[Task]] = defaultdict(list)
    for p in plan.pairings:
        lanes[p.township_id].append(pairing(p))
    changes: dict[UUID, list[tuple[datetime, Task]]] = defaultdict(list)
    for p, reason, on in plan.endings:
        changes[p.township_id].append((datetime.combine(on, datetime.min.time(), CHINA), ending(p, reason, on)))
    for person_, reason, at in plan.departures:
        changes[person_.village.township_id].append((at, departure(person_, reason, at)))  # type: ignore[index]
    by_level = {level: [[unit(u)] for u in plan.units if u.level == level] for level in OrgLevel}
    return [
        ("org units", by_level[OrgLevel.COUNTY]),
        ("org units", by_level[OrgLevel.TOWNSHIP]),
        ("org units", by_level[OrgLevel.VILLAGE]),
        ("persons", [[person(p)] for p in plan.persons]),
        ("helpers", [[helper(h)] for h in plan.helpers]),
        ("groups", [[group(*g)] for g in plan.groups]),
        ("pairings", list(lanes.values())),
        ("endings and departures", [[t for _, t in sorted(c, key=lambda c: c[0])] for c in changes.values()]),
    ]


def _run_stage(pool: ThreadPoolExecutor, stage: str, lanes: list[list[Task]], counts: DemoCounts,
               progress: Progress | None) -> None:
    total = sum(len(lane) for lane in lanes)
    done = [0]
    lock = threading.Lock()

    def run_lane(lane: list[Task]) -> None:
        for task in lane:
            kind, written = task()
            with lock:
                (counts.written if written else counts.present)[kind] += 1
                done[0] += 1

    pending: set[Future[None]] = {pool.submit(run_lane, lane) for lane in lanes}
    while pending:
        finished, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
        for f in finished:
            if f.exception() is not None:
                for other in pending:
                    other.cancel()
                raise f.exception()  # type: ignore[misc]
        if progress:
            progress(stage, done[0], total)


def seed_county(
    app: CareApplication,
    *,
    seed: int = 2026,
    scale: float = 1.0,
    progress: Progress | None = None,
    workers: int = 4,
    today: date | None = None,
) -> DemoCounts:
    """Write the demo county (``scale`` 1.0: 707 elders and 3,596 children in 70 villages).

    Org units, persons, helpers, groups, pairings, then the year's changes; ``workers`` threads
    (keep the app's connection pool at least this large). ``progress(stage, done, total)`` is
    called from this thread. Running it again with the same seed writes nothing new.
    """
    started = time.monotonic()
    plan = plan_county(seed, scale, today=today)
    counts = DemoCounts(county_id=plan.county.id)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="demo-seed") as pool:
        for stage, lanes in _tasks(app, plan, seed):
            _run_stage(pool, stage, lanes, counts, progress)
    counts.elapsed = time.monotonic() - started
    return counts


# ---- the summary printed at the end of the demo --------------------------------------------------

SHAPE_LABELS = {S.ONE_TO_ONE: "one-to-one 一对一", S.ONE_TO_MANY: "one-to-N 一对N", S.MANY_TO_ONE: "N-to-one N对一"}


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _cell(text: Any, width: int, right: bool = False) -> str:
    s = str(text)
    pad = " " * max(0, width - _width(s))
    return pad + s if right else s + pad


def print_summary(view: Any, county_id: UUID, file: IO[str]) -> None:
    """Counts by township (active elders, children, helpers, active pairings) and active
    pairings by shape, as a fixed-width table; ``view`` is a projections.registry.RegistryView."""
    county = view.get_org_unit(county_id)
    rows = view.counts_by_org_unit(county_id)
    shapes = view.pairings_by_shape(county_id)
    title = f"{county['name']} ({county['code']})" if county else str(county_id)
    cols = [("Township", 14, False), ("Code", 12, False), ("Elders", 7, True), ("Children", 9, True),
            ("Helpers", 8, True), ("Active pairings", 16, True)]
    keys = ("elders", "children", "helpers", "active_pairings")

    def line(values: Sequence[Any]) -> str:
        return "  ".join(_cell(v, w, r) for v, (_, w, r) in zip(values, cols, strict=True)).rstrip()

    print(f"\n{title}: the registry by township", file=file)
    print(line([c[0] for c in cols]), file=file)
    print(line(["-" * c[1] for c in cols]), file=file)
    for row in rows:
        print(line([row["name"], row["code"], *(row[k] for k in keys)]), file=file)
    print(line(["-" * c[1] for c in cols]), file=file)
    print(line(["Total", "", *(sum(r[k] for r in rows) for k in keys)]), file=file)
    print("\nActive pairings by shape", file=file)
    for shape in S:
        print(f"  {_cell(SHAPE_LABELS[shape], 20)}{shapes.get(shape.value, 0):>7}", file=file)
