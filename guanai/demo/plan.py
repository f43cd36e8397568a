"""The demo county's plan: drawn from a seed, without I/O (used by guanai/demo/seed.py).

The org tree of one county, left-behind elders and children with their families, helpers of
every role, volunteer groups, pairings of the three shapes, a few ended pairings and people who
left the programme at the September census.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from domain.base import derived_id
from domain.org_unit import org_unit_id
from domain.person import age_on
from domain.vocabulary import (
    Cadence,
    HelperRole,
    OrgLevel,
    PairingShape,
    PersonKind,
    RiskTag,
    VisitMode,
)
from guanai.demo import names

CHINA = timezone(timedelta(hours=8))
FULL = {"elders": 707, "children": 3596, "townships": 8, "villages": 70}  # Yuanjiang's pairing figures
KINDS = ("org_units", "persons", "helpers", "groups", "pairings", "pairing_endings", "departures")
R, K, S = HelperRole, PersonKind, PairingShape

# People one helper may look after: cadres, doctors and police cover a whole village or township.
CAPACITY = {
    R.VOLUNTEER: 10,
    R.VILLAGE_CADRE: 20,
    R.CHILD_DIRECTOR: 30,
    R.CHILD_SUPERVISOR: 40,
    R.TEACHER: 15,
    R.FAMILY_DOCTOR: 60,
    R.POLICE: 40,
    R.SOCIAL_WORKER: 15,
    R.ASSISTING_CADRE: 5,
    R.CARING_MOTHER: 1,
    R.PEER_ELDER: 10,
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
        return bool(
            t & {RiskTag.DISABLED, RiskTag.TEKUN, RiskTag.CHILD_IN_DIFFICULTY, RiskTag.DE_FACTO_UNSUPPORTED}
        ) or ({RiskTag.ADVANCED_AGE, RiskTag.LIVING_ALONE, RiskTag.SEMI_DISABLED} <= t)


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

    def person(
        self,
        vr: random.Random,
        village: Unit,
        kind: PersonKind,
        household: str,
        name: str,
        sex: str,
        age: int,
        tags: set[RiskTag],
        reg: datetime,
        **extra: Any,
    ) -> PlannedPerson:
        birth = _birth(vr, reg.date(), age)
        number = names.id_number(vr, names.COUNTY_CODE, birth, sex, self.id_numbers) if vr.random() < 0.8 else None
        p = PlannedPerson(
            self.next_id("person", village),
            kind,
            name,
            sex,
            birth,
            number,
            household,
            village,
            sorted(tags),
            reg,
            **extra,
        )
        self.persons.append(p)
        return p

    def elders(self, vr: random.Random, village: Unit, n: int) -> None:
        made = 0
        while made < n:
            household = f"{village.name}{vr.randint(1, 9)}组{made + 1:02d}号"
            reg = _at(self.spring + timedelta(days=vr.randint(0, 12)), vr)
            family = names.surname(vr)
            away = [
                {
                    "relation": rel,
                    "name": names.full_name(vr, "mid", "male" if rel == "son" else "female", family),
                    "phone": names.mobile(vr),
                    "whereabouts": names.work_place(vr),
                    "away_since": reg.year - vr.randint(1, 15),
                }
                for rel in vr.choices(["son", "daughter"], k=vr.choices([1, 2, 3, 4], [25, 38, 25, 12])[0])
            ]
            couple = n - made >= 2 and vr.random() < 0.5
            members = (
                [("male", family), ("female", None)]
                if couple
                else [("female", None) if vr.random() < 0.62 else ("male", family)]
            )
            base = {RiskTag.EMPTY_NEST} if couple else {RiskTag.LIVING_ALONE} if vr.random() < 0.8 else set()
            age0 = vr.choices(range(60, 96), [22] * 5 + [25] * 5 + [20] * 5 + [14] * 5 + [10] * 5 + [6] * 5 + [3] * 6)[
                0
            ]
            for i, (sex, own) in enumerate(members):
                age = age0 if i == 0 else min(95, max(60, age0 - vr.randint(-2, 6)))
                tags = set(base) | self.elder_tags(vr, age, alone=RiskTag.LIVING_ALONE in base)
                gen = names.generation_of(reg.year - age)
                self.person(
                    vr,
                    village,
                    K.ELDER,
                    household,
                    names.full_name(vr, gen, sex, own),
                    sex,
                    age,
                    tags,
                    reg,
                    absent_children=away,
                )
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
                {
                    "relation": "father",
                    "name": names.full_name(vr, "mid", "male", family),
                    "phone": names.mobile(vr),
                    "work_place": place,
                },
                {
                    "relation": "mother",
                    "name": names.full_name(vr, "mid", "female"),
                    "phone": names.mobile(vr),
                    "work_place": place if vr.random() < 0.7 else names.work_place(vr),
                },
            ]
            if unsupported:  # both parents unreachable: 事实无人抚养
                parents = [{**p, "phone": None, "work_place": None, "note": "失联"} for p in parents]
            relation = vr.choices(
                [
                    "paternal_grandmother",
                    "paternal_grandfather",
                    "maternal_grandmother",
                    "maternal_grandfather",
                    "uncle",
                    "aunt",
                ],
                [34, 26, 16, 10, 6, 8],
            )[0]
            g_sex = "male" if relation.endswith(("father", "uncle")) else "female"
            g_family = {
                "paternal_grandfather": family,
                "uncle": family,
                "aunt": family,
                "maternal_grandfather": parents[1]["name"][0],
            }.get(relation)
            guardian = {
                "relation": relation,
                "phone": names.mobile(vr),
                "name": names.full_name(vr, "old" if "grand" in relation else "mid", g_sex, g_family),
            }
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
                self.person(
                    vr,
                    village,
                    K.CHILD,
                    household,
                    names.full_name(vr, "young", sex, family),
                    sex,
                    age,
                    tags,
                    reg,
                    guardian=guardian,
                    parents=parents,
                    signed_on=signed,
                )
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

    def take(
        self, vr: random.Random, role: HelperRole, unit: Unit, people: int, limit: int = 99
    ) -> PlannedHelper | None:
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

    def pair(
        self,
        vr: random.Random,
        village: Unit,
        shape: PairingShape,
        helpers: list[PlannedHelper],
        persons: list[PlannedPerson],
        cadence: Cadence,
        mode: VisitMode,
        group: bool = False,
    ) -> None:
        if shape != S.MANY_TO_ONE:
            shape = S.ONE_TO_ONE if len(persons) == 1 else S.ONE_TO_MANY
        pid = self.next_id("pairing", village)
        group_id = derived_id("demo-group", f"{self.seed}:{village.township_id}") if group else None
        starts = self.spring + timedelta(days=vr.randint(20, 50))
        assert village.township_id is not None
        self.pairings.append(
            PlannedPairing(pid, shape, helpers, persons, cadence, mode, starts, group_id, village.township_id)
        )

    def pair_village(self, village: Unit, township: Unit) -> None:
        vr = random.Random(f"{self.seed}:{village.code}:pairings")
        people = [p for p in self.persons if p.village is village and not p.unpaired]
        for p in (p for p in people if p.key):  # 四包一
            team = [
                self.need(vr, R.ASSISTING_CADRE, township, 1),
                self.need(vr, R.VILLAGE_CADRE, village, 1),
                self.need(vr, R.FAMILY_DOCTOR, village, 1),
                self.need(vr, R.POLICE, township, 1),
            ]
            self.pair(vr, village, S.MANY_TO_ONE, team, [p], Cadence.WEEKLY, VisitMode.HOME_VISIT)
        girls = [
            p
            for p in people
            if p.kind == K.CHILD and p.sex == "female" and not p.key and 5 <= age_on(p.birth_date, self.spring) <= 14
        ]
        mothered = vr.sample(girls, min(len(girls), 1 if vr.random() < 0.6 else 2))
        for girl in mothered:
            self.pair(
                vr,
                village,
                S.ONE_TO_ONE,
                [self.need(vr, R.CARING_MOTHER, village, 1)],
                [girl],
                Cadence.HALF_MONTHLY,
                VisitMode.HOME_VISIT,
            )
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
        self.pair(
            vr,
            village,
            S.ONE_TO_MANY,
            [h],
            chunk,
            Cadence.WEEKLY,
            VisitMode.PHONE_VIDEO if phone else VisitMode.HOME_VISIT,
            group=True,
        )


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
        for role in (
            R.CHILD_DIRECTOR,
            R.VILLAGE_CADRE,
            R.VILLAGE_CADRE,
            R.FAMILY_DOCTOR,
            R.TEACHER,
            R.VOLUNTEER,
            R.PEER_ELDER,
        ):
            pl.helper(vr, role, village)
        assert village.township_id is not None
        pl.pair_village(village, townships[village.township_id])
    groups = []
    for township in townships.values():
        members = [h.id for h in pl.helpers if h.role == R.VOLUNTEER and h.unit.township_id == township.id]
        gid = derived_id("demo-group", f"{seed}:{township.id}")
        groups.append((gid, f"{township.name}关爱留守人员志愿服务队", township, members))
    return CountyPlan(
        county, pl.units, pl.persons, pl.helpers, groups, pl.pairings, _endings(pl), _departures(pl, autumn), spring
    )


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
