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
from datetime import date, datetime, timedelta
from typing import IO, Any
from uuid import UUID

from application.care import CareApplication
from domain.base import CommandMeta, DomainError
from domain.pairing import Pairing
from domain.person import Person
from domain.vocabulary import (
    ActorRole,
    OrgLevel,
    Sex,
)
from guanai.demo.plan import (
    CHINA,
    KINDS,
    CountyPlan,
    PlannedHelper,
    PlannedPairing,
    PlannedPerson,
    S,
    Unit,
    _at,
    plan_county,
)


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


# ---- writing the plan through the command side ------------------------------------------------

Task = Callable[[], tuple[str, bool]]  # -> (kind, written)
Progress = Callable[[str, int, int], None]


def _meta(seed: int, at: datetime) -> CommandMeta:
    return CommandMeta(
        actor_id="demo-seeder", actor_role=ActorRole.SYSTEM.value, correlation_id=f"demo-seed-{seed}", occurred_at=at
    )


def _exists(app: CareApplication, aggregate_id: UUID) -> bool:
    return next(iter(app.events.get(aggregate_id, lte=1)), None) is not None


def _tasks(app: CareApplication, plan: CountyPlan, seed: int) -> list[tuple[str, list[list[Task]]]]:
    """Stages in order; each stage is lanes of tasks run one after another. Lanes run in
    parallel: every pairing, ending and departure of a township shares one lane, because they
    touch the same helpers, while townships share nothing."""
    setup = _at(plan.census - timedelta(days=25), random.Random(seed))

    def unit(u: Unit) -> Task:
        return lambda: (
            "org_units",
            app.register_org_unit(
                code=u.code, name=u.name, level=u.level, parent_id=u.parent_id, meta=_meta(seed, setup)
            ).created,
        )

    def person(p: PlannedPerson) -> Task:
        return lambda: (
            "persons",
            app.register_person(
                id=p.id,
                kind=p.kind,
                name=p.name,
                sex=Sex(p.sex),
                birth_date=p.birth_date,
                village_id=p.village.id,
                meta=_meta(seed, p.registered_at),
                id_number=p.id_number,
                household=p.household,
                risk_tags=p.risk_tags,
                guardian=p.guardian,
                parents=p.parents,
                absent_children=p.absent_children,
                care_agreement_signed_on=p.signed_on,
            ).created,
        )

    def helper(h: PlannedHelper) -> Task:
        return lambda: (
            "helpers",
            app.register_helper(
                id=h.id,
                role=h.role,
                name=h.name,
                phone=h.phone,
                org_unit_id=h.unit.id,
                capacity=h.capacity,
                meta=_meta(seed, h.registered_at),
            ).created,
        )

    def group(gid: UUID, name: str, unit: Unit, members: list[UUID]) -> Task:
        at = datetime.combine(plan.census + timedelta(days=15), datetime.min.time(), CHINA).replace(hour=10)
        return lambda: (
            "groups",
            app.form_group(id=gid, name=name, org_unit_id=unit.id, member_ids=members, meta=_meta(seed, at)).created,
        )

    def pairing(p: PlannedPairing) -> Task:
        def run() -> tuple[str, bool]:
            at = datetime.combine(p.starts_on, datetime.min.time(), CHINA).replace(hour=10)
            try:
                return "pairings", app.form_pairing(
                    id=p.id,
                    shape=p.shape,
                    helper_ids=[h.id for h in p.helpers],
                    person_ids=[x.id for x in p.persons],
                    cadence=p.cadence,
                    visit_mode=p.mode,
                    starts_on=p.starts_on,
                    group_id=p.group_id,
                    meta=_meta(seed, at),
                ).created
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


def _run_stage(
    pool: ThreadPoolExecutor, stage: str, lanes: list[list[Task]], counts: DemoCounts, progress: Progress | None
) -> None:
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
    cols = [
        ("Township", 14, False),
        ("Code", 12, False),
        ("Elders", 7, True),
        ("Children", 9, True),
        ("Helpers", 8, True),
        ("Active pairings", 16, True),
    ]
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
