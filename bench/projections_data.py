"""A large, genuine event store for bench/projections.py, written fast.

Aggregates are built in memory with the domain's own commands (org units, people, helpers,
pairings, weekly visit tasks claimed, completed and logged or missed, emergency reports routed,
acknowledged and resolved), in the order they would have happened; their events are encoded
with the application's mapper and stored through the application's recorder in batches (the
library's insert path, audit chain included), so every event is exactly what the application
would have stored, but without a command's load-decide-save round trips.

``Store`` names the counties, a "heavy" person whose timeline has 1,000 entries, and counts.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from application.care import CareApplication
from domain.base import CommandMeta, Personal
from domain.emergency import Category, EmergencyReport, Outcome
from domain.helper import Helper
from domain.org_unit import OrgUnit
from domain.pairing import Pairing
from domain.person import Person
from domain.roster import Severity
from domain.schedule import Period as Window
from domain.visit_log import ServiceCategory, VisitLog
from domain.visit_task import VisitTask
from domain.vocabulary import Cadence, HelperRole, OrgLevel, PairingShape, PersonKind, RiskTag, Sex, VisitMode

TOWNSHIPS, VILLAGES, GROUP = 8, 8, 4  # per county, per township, people per pairing
EVENTS_PER_VISIT = 3.9  # scheduled, claimed, completed, logged; a missed one is two
HEAVY_ENTRIES = 1000


@dataclass
class Store:
    counties: list[tuple[UUID, str]] = field(default_factory=list)  # (id, code)
    heavy_person: UUID | None = None
    events: int = 0
    people: int = 0
    visits: int = 0
    reports: int = 0
    seconds: float = 0.0


class Writer:
    """Collects aggregates' pending events, encodes them and inserts them in batches. The keys of
    the people and helpers a batch registers are made in one transaction (``prepare_keys``, as an
    import does), not one each."""

    def __init__(self, app: CareApplication, batch: int = 5000) -> None:
        self.app, self.batch, self.pending, self.written = app, batch, [], 0

    def add(self, *aggregates: Any) -> None:
        for agg in aggregates:
            self.pending.extend(agg.collect_events())
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            mapper = self.app.mapper
            mapper.keys.prepare_keys([str(e.originator_id) for e in self.pending if _own_key(type(e))])
            self.app.recorder.insert_events([mapper.to_stored_event(e) for e in self.pending])
            self.written += len(self.pending)
            self.pending = []


def _own_key(event_class: type) -> bool:
    """Whether the event seals personal data under a key of its own aggregate, owned by it."""
    declared = getattr(event_class, "personal", None)
    return (
        isinstance(declared, Personal)
        and declared.subject == "originator_id"
        and declared.owner == "originator_id"
        and not declared.prefix
    )


def _meta(at: datetime, actor: str = "bench", role: str = "village_cadre") -> CommandMeta:
    return CommandMeta(actor_id=actor, actor_role=role, correlation_id="bench", occurred_at=at)


def _person(rng: random.Random, village: OrgUnit, at: datetime, elder: bool) -> Person:
    kind = PersonKind.ELDER if elder else PersonKind.CHILD
    birth = date(1940 + rng.randrange(20), 1 + rng.randrange(12), 1) if elder else date(2010 + rng.randrange(12), 6, 1)
    tags = rng.sample([RiskTag.LIVING_ALONE, RiskTag.ADVANCED_AGE, RiskTag.DIBAO], k=rng.randrange(3)) if elder else []
    return Person.register(
        id=uuid4(), kind=kind, name="某某", sex=Sex(rng.choice(["male", "female"])), birth_date=birth, id_number=None,
        household="", village=village, risk_tags=tags, guardian={"name": "某", "relation": "祖母"} if not elder else None,
        parents=[], absent_children=[], care_agreement_signed_on=at.date() if not elder and rng.random() < 0.9 else None,
        meta=_meta(at),
    )  # fmt: skip


def _visits(w: Writer, rng: random.Random, pairing: Pairing, helper: Helper, people: list[Person],
            weeks: Iterable[date], missed: float, store: Store) -> None:  # fmt: skip
    for monday in weeks:
        window = Window(Cadence.WEEKLY, monday, monday + timedelta(days=7))
        for person in people:
            system = _meta(window.opens_at, "scheduler", "system")
            task = VisitTask.schedule(id=uuid4(), pairing=pairing, person_id=person.id, org_path=person.org_path,
                                      period=window, meta=system)  # fmt: skip
            if rng.random() < missed:
                task.mark_missed(window.closes_at, _meta(window.closes_at, "scheduler", "system"))
                w.add(task)
                continue
            at = window.opens_at + timedelta(days=rng.randrange(6), hours=9 + rng.randrange(8))
            task.claim(pairing=pairing, helper_id=helper.id, group=None, now=at - timedelta(hours=2),
                       expires_at=at + timedelta(days=1), meta=_meta(at - timedelta(hours=2), str(helper.id), "volunteer"))  # fmt: skip
            by = _meta(at, str(helper.id), "volunteer")
            log = VisitLog.record(
                id=uuid4(), pairing_id=pairing.id, person_id=person.id, org_path=person.org_path, meta=by,
                task_id=task.id, mode=VisitMode.HOME_VISIT, helper_ids=[helper.id],
                findings={"health": "well", "mood": rng.choice(["good", "calm", "low"])},
                services=[ServiceCategory.PSYCHOLOGICAL_COMFORT], service_items=[],
            )  # fmt: skip
            task.complete(log_id=log.id, helper_ids=[helper.id], mode=VisitMode.HOME_VISIT, now=at, meta=by)
            w.add(task, log)
            store.visits += 1


def _report(w: Writer, rng: random.Random, person: Person, codes: tuple[str, str], at: datetime) -> None:
    report = EmergencyReport.report(
        id=uuid4(), category=rng.choice(list(Category)), severity=rng.choice(list(Severity)), person_id=person.id,
        location=None, description="", village_id=person.village_id, org_path=person.org_path, codes=codes,
        meta=_meta(at),
    )  # fmt: skip
    report.route(0, ["resp"], at + timedelta(minutes=15), _meta(at, "router", "system"))
    if rng.random() < 0.9:
        report.acknowledge(_meta(at + timedelta(minutes=rng.randrange(1, 30)), "resp", "township_responder"))
        report.resolve(
            Outcome.HELP_GIVEN, "", _meta(at + timedelta(hours=rng.randrange(1, 12)), "resp", "township_responder")
        )
    w.add(report)


def generate(app: CareApplication, target: int, *, counties: int = 5, seed: int = 7,
             progress: Callable[[int], None] | None = None) -> Store:  # fmt: skip
    """About ``target`` events: ``counties`` counties of 4,000 people each, visited weekly for
    as many weeks as it takes, plus one person with a 1,000-entry timeline."""
    rng, store, w = random.Random(seed), Store(), Writer(app)
    started = time.monotonic()
    people_per_county = 4000
    weeks = max(1, math.ceil((target / (counties * people_per_county) - 2.5) / EVENTS_PER_VISIT))
    today = datetime.now(UTC).date()
    first_monday = today - timedelta(days=today.weekday() + 7 * weeks)
    registered_at = datetime.combine(first_monday - timedelta(days=30), datetime.min.time(), UTC)
    for c in range(counties):
        county = OrgUnit.register(code=f"5304{c + 1:02d}000000", name=f"县{c}", level=OrgLevel.COUNTY, parent=None,
                                  meta=_meta(registered_at))  # fmt: skip
        w.add(county)
        store.counties.append((county.id, county.code))
        villages: list[tuple[OrgUnit, str]] = []
        for t in range(TOWNSHIPS):
            code = f"5304{c + 1:02d}{101 + t:03d}000"
            township = OrgUnit.register(code=code, name=f"镇{t}", level=OrgLevel.TOWNSHIP, parent=county,
                                        meta=_meta(registered_at))  # fmt: skip
            w.add(township)
            for v in range(VILLAGES):
                village = OrgUnit.register(code=code[:9] + f"{201 + v:03d}", name=f"村{v}", level=OrgLevel.VILLAGE,
                                           parent=township, meta=_meta(registered_at))  # fmt: skip
                w.add(village)
                villages.append((village, code))
        per_village = people_per_county // len(villages)
        for village, township_code in villages:
            people = [_person(rng, village, registered_at, elder=i % 5 == 0) for i in range(per_village)]
            w.add(*people)
            store.people += len(people)
            # One in twenty stays unpaired: the coverage list has names on it.
            paired = people[: len(people) - len(people) // 20]
            for i in range(0, len(paired), GROUP):
                group = paired[i : i + GROUP]
                helper = Helper.register(id=uuid4(), role=HelperRole.VOLUNTEER, name="志愿者", phone="13900000000",
                                         org_unit=village, capacity=10, meta=_meta(registered_at))  # fmt: skip
                w.add(helper)
                shape = PairingShape.ONE_TO_MANY if len(group) > 1 else PairingShape.ONE_TO_ONE
                pairing = Pairing.form(id=uuid4(), shape=shape, helpers=[helper], persons=group, cadence=Cadence.WEEKLY,
                                       visit_mode=VisitMode.HOME_VISIT, starts_on=first_monday, group=None,
                                       meta=_meta(registered_at))  # fmt: skip
                w.add(pairing, helper, *group)
                _visits(
                    w,
                    rng,
                    pairing,
                    helper,
                    group,
                    [first_monday + timedelta(weeks=k) for k in range(weeks)],
                    0.08,
                    store,
                )
                if progress:
                    progress(w.written)
            for person in rng.sample(people, k=max(1, len(people) // 100)):
                _report(
                    w,
                    rng,
                    person,
                    (county.code, township_code),
                    registered_at + timedelta(days=rng.randrange(7 * weeks)),
                )
                store.reports += 1
        if c == 0:
            store.heavy_person = _heavy(w, rng, villages[0][0], registered_at)
    w.flush()
    store.events, store.seconds = w.written, time.monotonic() - started
    return store


def _heavy(w: Writer, rng: random.Random, village: OrgUnit, at: datetime) -> UUID:
    """A person whose timeline has exactly 1,000 entries: registered, paired one-to-one, 249
    weekly visits (four entries each), and one risk tag added and removed."""
    person = _person(rng, village, at - timedelta(weeks=260), elder=True)
    helper = Helper.register(id=uuid4(), role=HelperRole.CARING_MOTHER, name="爱心妈妈", phone="13900000000",
                             org_unit=village, capacity=1, meta=_meta(at))  # fmt: skip
    w.add(person, helper)
    start = (at - timedelta(weeks=255)).date()
    start -= timedelta(days=start.weekday())
    pairing = Pairing.form(id=uuid4(), shape=PairingShape.ONE_TO_ONE, helpers=[helper], persons=[person],
                           cadence=Cadence.WEEKLY, visit_mode=VisitMode.HOME_VISIT, starts_on=start, group=None,
                           meta=_meta(at - timedelta(weeks=256)))  # fmt: skip
    w.add(person, pairing, helper)
    _visits(w, rng, pairing, helper, [person], [start + timedelta(weeks=k) for k in range(249)], 0.0, Store())
    person.add_risk_tag(RiskTag.EMPTY_NEST, _meta(at))
    person.remove_risk_tag(RiskTag.EMPTY_NEST, _meta(at))
    w.add(person)
    return person.id
