"""The county the visit and fault benches drive, and the requests they send about it.

``seed_county`` registers, through the command side in the bench's own process, a county, a
township and a village (optionally with responder rosters), elders in one-to-N pairings of ten,
each pairing led by a volunteer of its own and held with one volunteer group, and schedules each
pairing's visit tasks (this week's and the next). ``bench/visits.py`` claims and logs them under
contention; ``bench/chaos.py`` and ``bench/soak.py`` file reports about the elders and claim and
log the tasks while parts of the system are killed or run for long.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from api.auth import issue_token
from application.care import CareApplication
from domain.base import CommandMeta
from domain.roster import Tier
from domain.visit_task import VisitTask
from domain.vocabulary import ActorRole, Cadence, HelperRole, OrgLevel, PairingShape, PersonKind, Sex, VisitMode

CST = timezone(timedelta(hours=8))


@dataclass
class SeededCounty:
    county: UUID
    township: UUID
    village: UUID
    elders: list[UUID]
    members: list[UUID]  # the volunteer group's members: they may claim and log every task
    due_now: list[dict[str, Any]] = field(default_factory=list)  # tasks whose window is open: id, opens_at
    ahead: list[UUID] = field(default_factory=list)  # tasks whose window opens later


def seed_county(
    app: CareApplication,
    *,
    people: int,
    members: int,
    actor: str = "bench",
    county_name: str = "基准县",
    ack_seconds: int | None = None,
    threads: int = 4,
) -> SeededCounty:
    """``people`` elders and a group of ``members`` volunteers in a new village; with
    ``ack_seconds``, the township and the county keep rosters (a responder always on duty, that
    many seconds to acknowledge a critical report)."""
    now = datetime.now(UTC)

    def meta(role: str = "administrator") -> CommandMeta:
        return CommandMeta(actor_id=actor, actor_role=role, correlation_id=f"{actor}-{uuid.uuid4()}", occurred_at=now)

    code = f"53{uuid.uuid4().int % 10**4:04d}"
    county = app.register_org_unit(
        code=code + "000000", name=county_name, level=OrgLevel.COUNTY, parent_id=None, meta=meta()
    ).id
    town = app.register_org_unit(
        code=code + "101000", name="城关镇", level=OrgLevel.TOWNSHIP, parent_id=county, meta=meta()
    ).id
    village = app.register_org_unit(
        code=code + "101001", name="红河村", level=OrgLevel.VILLAGE, parent_id=town, meta=meta()
    ).id
    if ack_seconds is not None:
        for unit, responder in ((town, "t-desk"), (county, "c-desk")):
            app.set_up_roster(unit, {"critical": ack_seconds}, meta())
            app.add_roster_responder(unit, responder_id=responder, name="值班", phone="13900000000",
                                     tier=Tier.PRIMARY, shifts=[], meta=meta())  # fmt: skip

    def helper(_: int) -> UUID:
        return app.register_helper(id=uuid.uuid4(), role=HelperRole.VOLUNTEER, name="张志愿", phone="13900000000",
                                   org_unit_id=village, meta=meta()).id  # fmt: skip

    def elder(n: int) -> UUID:
        return app.register_person(id=uuid.uuid4(), kind=PersonKind.ELDER, name="李秀英", sex=Sex.FEMALE,
                                   birth_date=date(1940 + n % 25, 1 + n % 12, 1 + n % 28), village_id=village,
                                   meta=meta()).id  # fmt: skip

    with ThreadPoolExecutor(threads) as pool:
        group_members = list(pool.map(helper, range(members)))
        elders = list(pool.map(elder, range(people)))
        leads = list(pool.map(helper, range((people + 9) // 10)))
    group = app.form_group(
        id=uuid.uuid4(), name="红河村志愿服务队", org_unit_id=village, member_ids=group_members, meta=meta()
    ).id
    starts_on = datetime.now(CST).date() - timedelta(days=3)

    def pair(n: int) -> list[UUID]:
        persons = elders[10 * n : 10 * n + 10]
        pairing = app.form_pairing(
            id=uuid.uuid4(), shape=PairingShape.ONE_TO_MANY if len(persons) > 1 else PairingShape.ONE_TO_ONE,
            helper_ids=[leads[n]], person_ids=persons, cadence=Cadence.WEEKLY, visit_mode=VisitMode.HOME_VISIT,
            starts_on=starts_on, group_id=group, meta=meta(),
        ).id  # fmt: skip
        return app.schedule_visits(pairing, meta("system")).created

    with ThreadPoolExecutor(threads) as pool:
        task_ids = [t for created in pool.map(pair, range(len(leads))) for t in created]
    seeded = SeededCounty(county, town, village, elders, group_members)
    for tid in task_ids:
        task = app.load(VisitTask, tid)
        if task.opens_at <= now:
            seeded.due_now.append({"id": str(tid), "opens_at": task.opens_at})
        else:
            seeded.ahead.append(tid)
    return seeded


def bearer(jwt_secret: str, role: str, org_unit: UUID, subject: str, hours: int = 12) -> dict[str, str]:
    """The Authorization header of a token the API under test accepts."""
    token = issue_token(
        jwt_secret, subject=subject, role=ActorRole(role), org_unit_id=org_unit, ttl=timedelta(hours=hours)
    )
    return {"Authorization": f"Bearer {token}"}


def report_body(report_id: str, person_id: UUID) -> dict[str, Any]:
    """A critical report about an elder (``POST /emergencies``, the client's own id)."""
    return {"id": report_id, "category": "critical_illness", "severity": "critical", "person_id": str(person_id),
            "description": "老人在家中跌倒，无法起身"}  # fmt: skip


def plain_log_body(task: dict[str, Any], helper_id: UUID) -> dict[str, Any]:
    """A short visit log completing ``task`` (``POST /visits/{task}/complete``): visited half an
    hour ago, or just after the task's window opened."""
    visited = max(task["opens_at"] + timedelta(seconds=1), datetime.now(UTC) - timedelta(minutes=30))
    return {"id": str(uuid.uuid4()), "occurred_at": visited.astimezone(CST).isoformat(), "mode": "home_visit",
            "helper_ids": [str(helper_id)],
            "findings": {"living_conditions": "adequate", "health": "chronic_stable", "mood": "calm",
                         "safety_risks": [], "needs": [], "notes": "血压偏高，提醒按时吃药"},
            "services": ["daily_life_care", "health_care"], "service_items": ["blood_pressure"],
            "follow_up_needed": False, "follow_up_notes": ""}  # fmt: skip
