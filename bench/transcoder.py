"""The event transcoder against the eventsourcing library's JSONTranscoder, in one run.

    python -m bench.transcoder [--logs 500] [--repeat 5]

Builds events through the domain's commands on the in-memory application (a township: org
units, elders and children, helpers, a volunteer group, pairings, this week's tasks scheduled,
claims, and ``logs`` realistic visit logs each completing its task), captures every state the
mapper encodes (as it hands it over: UUIDs, datetimes, enum members) and every stored state,
and times, per event, encoding each state and decoding each stored state with the library's
``JSONTranscoder`` (the baseline) and with ``infrastructure.transcoding.EventTranscoder``, both
registered as the application registers them. Both must give the same bytes and the same
objects (checked: exits 1 otherwise). Also times a whole mapper decode (``to_domain_events``,
the sealed fields opened) and an aggregate replay of the visit tasks with each.
CPU time of this process (``time.process_time``), best of ``repeat`` rounds.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from eventsourcing.application import project_aggregate
from eventsourcing.persistence import JSONTranscoder, StoredEvent, Transcoder

from application.care import CareApplication
from domain.base import CommandMeta
from domain.visit_log import ServiceCategory, ServiceItem
from domain.visit_task import VisitTask
from domain.vocabulary import Cadence, HelperRole, OrgLevel, PairingShape, PersonKind, RiskTag, Sex, VisitMode
from guanai import bootstrap
from infrastructure.transcoding import EventTranscoder


class Recording(Transcoder):
    """Wraps a transcoder: keeps a copy of every object it is asked to encode."""

    def __init__(self, inner: Transcoder) -> None:
        self.inner = inner
        self.encoded: list[Any] = []

    def encode(self, obj: Any) -> bytes:
        self.encoded.append(copy.deepcopy(obj))
        return self.inner.encode(obj)

    def decode(self, data: bytes) -> Any:
        return self.inner.decode(data)


@dataclass
class Township:
    app: CareApplication
    states: list[Any]  # what the mapper handed the transcoder to encode (sealed parts too)
    stored: list[StoredEvent] = field(default_factory=list)
    tasks: list[uuid.UUID] = field(default_factory=list)


def registered(transcoder: JSONTranscoder, app: CareApplication) -> JSONTranscoder:
    app.register_transcodings(transcoder)
    return transcoder


@contextmanager
def township(logs: int, seed: int = 19) -> Iterator[Township]:
    """A township built by the domain's commands on the in-memory application."""
    rng = random.Random(seed)
    app = bootstrap.memory_application()
    recording = Recording(app.mapper.transcoder)
    app.mapper.transcoder = recording  # type: ignore[misc]
    now = datetime.now(UTC)

    def meta(role: str = "administrator") -> CommandMeta:
        return CommandMeta(actor_id="bench", actor_role=role, correlation_id=f"bench-{uuid.uuid4()}", occurred_at=now)

    try:
        county = app.register_org_unit(
            code="530428000000", name="元江县", level=OrgLevel.COUNTY, parent_id=None, meta=meta()
        )
        town = app.register_org_unit(code="530428101000", name="澧江街道", level=OrgLevel.TOWNSHIP, parent_id=county.id, meta=meta())  # fmt: skip
        village = app.register_org_unit(code="530428101001", name="红河村", level=OrgLevel.VILLAGE, parent_id=town.id, meta=meta()).id  # fmt: skip
        members = [
            app.register_helper(id=uuid.uuid4(), role=HelperRole.VOLUNTEER, name=f"张志愿{n}", phone="13900000000",
                                org_unit_id=village, meta=meta()).id
            for n in range(3)
        ]  # fmt: skip
        people = []
        for n in range(max(logs, 10)):
            kind = PersonKind.ELDER if n % 3 else PersonKind.CHILD
            extra: dict[str, Any] = {}
            if kind is PersonKind.CHILD:
                extra = {
                    "guardian": {"name": "李奶奶", "relation": "grandmother", "phone": "13800000000"},
                    "parents": [{"name": "李强", "phone": "13700000000", "work_place": "广东省东莞市"}],
                }
            else:
                extra = {"absent_children": [{"name": "王军", "phone": "13600000000", "work_place": "昆明市"}]}
            people.append(
                app.register_person(
                    id=uuid.uuid4(), kind=kind, name="李秀英", sex=Sex.FEMALE,
                    birth_date=date(1940 + n % 25, 1 + n % 12, 1 + n % 28) if kind is PersonKind.ELDER
                    else date(2014 + n % 8, 1 + n % 12, 1 + n % 28),
                    village_id=village, id_number=None, household="红河村三组12号",
                    risk_tags=[RiskTag.LIVING_ALONE] if n % 2 else [], meta=meta(), **extra,
                ).id
            )  # fmt: skip
        leads = [
            app.register_helper(id=uuid.uuid4(), role=HelperRole.VILLAGE_CADRE, name="村干部", phone="13900000001",
                                org_unit_id=village, meta=meta()).id
            for _ in range((len(people) + 9) // 10)
        ]  # fmt: skip
        group = app.form_group(id=uuid.uuid4(), name="红河村志愿服务队", org_unit_id=village, member_ids=members, meta=meta()).id  # fmt: skip
        starts_on = now.date() - timedelta(days=3)
        tasks: list[uuid.UUID] = []
        for n, lead in enumerate(leads):
            persons = people[10 * n : 10 * n + 10]
            pairing = app.form_pairing(
                id=uuid.uuid4(), shape=PairingShape.ONE_TO_MANY if len(persons) > 1 else PairingShape.ONE_TO_ONE,
                helper_ids=[lead], person_ids=persons, cadence=Cadence.WEEKLY, visit_mode=VisitMode.HOME_VISIT,
                starts_on=starts_on, group_id=group, meta=meta(),
            ).id  # fmt: skip
            tasks.extend(app.schedule_visits(pairing, meta("system")).created)
        due = [t for t in tasks if app.load(VisitTask, t).opens_at <= now][:logs]
        for n, tid in enumerate(due):
            if n % 2:
                app.claim_visit(tid, meta("volunteer"), helper_id=members[n % len(members)])
            app.record_visit(
                uuid.uuid4(),
                CommandMeta(actor_id=str(members[n % len(members)]), actor_role="volunteer",
                            correlation_id=f"bench-{uuid.uuid4()}", occurred_at=now - timedelta(minutes=rng.randrange(1, 600))),
                acting_helper_id=members[n % len(members)],
                **log_fields(tid, members[n % len(members)], rng),
            )  # fmt: skip
        stored = list(app.recorder.select_notifications(start=1, limit=10**9))
        yield Township(app, recording.encoded, stored, due)
    finally:
        app.close()


NOTES = ["老人精神状态良好，按时服药。", "屋顶漏雨，已联系村委会维修。", "孩子期中考试进步明显，奶奶很高兴。", ""]


def log_fields(task_id: uuid.UUID, helper: uuid.UUID, rng: random.Random) -> dict[str, Any]:
    """A visit log's fields as ``record_visit`` takes them: findings, blood pressure, services."""
    return {
        "task_id": task_id, "helper_ids": [helper], "mode": VisitMode(rng.choice(["home_visit", "phone_video"])),
        "findings": {
            "living_conditions": rng.choice(["good", "adequate", "poor"]), "health": rng.choice(["well", "chronic_stable", "ill"]),
            "mood": rng.choice(["good", "calm", "low"]), "safety_risks": rng.sample(["fall", "fire", "medication"], k=rng.randrange(2)),
            "needs": rng.sample(["daily_care", "medical_care", "family_contact"], k=rng.randrange(2)),
            "blood_pressure": {"systolic": rng.randrange(110, 170), "diastolic": rng.randrange(65, 100)},
            "notes": rng.choice(NOTES),
        },
        "services": [ServiceCategory.DAILY_LIFE_CARE, ServiceCategory.HEALTH_CARE],
        "service_items": [ServiceItem(rng.choice(["cleaning", "laundry", "medicine_delivery"])), ServiceItem.BLOOD_PRESSURE],
        "follow_up_needed": rng.random() < 0.15,
        "outcome_notes": "下周请家庭医生上门" if rng.random() < 0.15 else "",
    }  # fmt: skip


def best_cpu(fn: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.transcoder", description=__doc__.split("\n\n")[0])
    p.add_argument("--logs", type=int, default=500, help="visit logs recorded (default 500)")
    p.add_argument("--repeat", type=int, default=5, help="rounds timed, the best kept (default 5)")
    args = p.parse_args(argv)
    load = os.getloadavg()[0]
    with township(args.logs) as town:
        app = town.app
        library, fast = registered(JSONTranscoder(), app), registered(EventTranscoder(), app)
        states, datas = town.states, [s.state for s in town.stored]
        failures = 0
        for state in states:
            if fast.encode(state) != library.encode(state):
                failures += 1
        for data in datas:
            if fast.decode(data) != library.decode(data):
                failures += 1
        rows = []
        for name, work, count in (
            ("encode a state", lambda t: [t.encode(s) for s in states], len(states)),
            ("decode a stored state", lambda t: [t.decode(d) for d in datas], len(datas)),
        ):
            before = best_cpu(lambda w=work: w(library), args.repeat)  # type: ignore[misc]
            after = best_cpu(lambda w=work: w(fast), args.repeat)  # type: ignore[misc]
            rows.append((name, count, before / count * 1e6, after / count * 1e6))
        mapper = app.mapper
        tasks = [s for s in town.stored if s.originator_id in set(town.tasks)]

        def with_transcoder(t: JSONTranscoder, fn: Callable[[], Any]) -> Callable[[], Any]:
            def run() -> Any:
                mapper.transcoder = t  # type: ignore[misc]
                return fn()

            return run

        def replay() -> None:
            by_id: dict[Any, list[Any]] = {}
            for event in mapper.to_domain_events(tasks):  # type: ignore[attr-defined]
                by_id.setdefault(event.originator_id, []).append(event)
            for events in by_id.values():
                project_aggregate(None, events)

        for name, fn, count in (
            ("mapper: stored events to domain events", lambda: mapper.to_domain_events(town.stored), len(datas)),  # type: ignore[attr-defined]
            ("visit tasks: decode and replay", replay, len(tasks)),
        ):
            before = best_cpu(with_transcoder(library, fn), args.repeat)
            after = best_cpu(with_transcoder(fast, fn), args.repeat)
            rows.append((name, count, before / count * 1e6, after / count * 1e6))
    print(f"\n## Event transcoder, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {load:.1f} at start\n")
    print(f"Command: `python -m bench.transcoder {' '.join(sys.argv[1:] if argv is None else argv)}`".rstrip())
    print(f"Events: {len(datas)} stored, {len(states)} states encoded (sealed parts included); best of {args.repeat}\n")
    print("| per event, CPU µs | events | JSONTranscoder (library) | EventTranscoder | ratio |")
    print("|---|--:|--:|--:|--:|")
    for name, count, before, after in rows:
        print(f"| {name} | {count} | {before:.1f} | {after:.1f} | {before / after:.1f}x |")
    if failures:
        print(f"FAILED: {failures} states encoded or decoded differently", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
