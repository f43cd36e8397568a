"""The demo's emergencies: rosters for the county and its townships, and a few reports lived
through the command side as the router and escalator would have handled them.

``simulate_emergencies`` sets up a roster per township (a responder always on duty) and the
county's (its desk and a further contact), then files the report of every visit log the visits
simulation flagged "raise an emergency" (as the router would; the township resolves each), and
four reports about people of the county in the last hours: a fall that the township acknowledges, acts on and resolves; a suspected
abuse of a child handed up by hand to the county; a wandering elder found by a villager; and a
critical illness that nobody acknowledges in time, so that it escalates to the county, which
takes it on. Routing and escalation use the workers' own commands, at the times they would have
run. Report ids derive from the seed: a second run finds its reports and writes nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import IO, Any
from uuid import UUID

from domain.base import CommandMeta, derived_id
from domain.emergency import ActionKind, Category, EmergencyReport, Outcome, Severity, Status
from domain.roster import Tier, roster_id
from domain.visit_log import VisitLog
from domain.vocabulary import OrgLevel, PersonKind
from guanai.demo.plan import CountyPlan

CHINA = timezone(timedelta(hours=8))


def _meta(actor: str, role: str, at: datetime, seed: int) -> CommandMeta:
    return CommandMeta(actor_id=actor, actor_role=role, correlation_id=f"demo-emergency-{seed}", occurred_at=at)


def _exists(app: Any, aggregate_id: UUID) -> bool:
    return next(iter(app.events.get(aggregate_id, lte=1)), None) is not None


def set_up_rosters(app: Any, plan: CountyPlan, seed: int, at: datetime) -> None:
    m = _meta("demo-seeder", "system", at, seed)
    townships = [u for u in plan.units if u.level == OrgLevel.TOWNSHIP]
    for unit in [plan.county, *townships]:
        if _exists(app, roster_id(unit.id)):
            continue
        app.set_up_roster(unit.id, {}, m)
        desk = f"desk-{unit.code}"
        app.add_roster_responder(unit.id, responder_id=desk, name=f"{unit.name}值班室", phone="0877-6012345",
                                 tier=Tier.PRIMARY, shifts=[], meta=m)  # fmt: skip
    county = app.load_roster(plan.county.id)
    if not county.has_tier(Tier.FURTHER):
        app.add_roster_responder(plan.county.id, responder_id="civil-affairs-director", name="县民政局分管副局长",
                                 phone="13908770000", tier=Tier.FURTHER, shifts=[], meta=m)  # fmt: skip


def simulate_emergencies(
    app: Any,
    plan: CountyPlan,
    *,
    seed: int = 2026,
    now: datetime | None = None,
    flagged: Sequence[tuple[UUID, datetime]] = (),
) -> list[UUID]:
    """Write the demo's rosters and reports, and the reports of the visit logs ``flagged`` (log
    id, visit time) "raise an emergency", which the township takes on and resolves; returns the
    report ids, the flagged logs' first."""
    now = now or datetime.now(UTC)
    rng = random.Random(seed)
    set_up_rosters(app, plan, seed, now - timedelta(days=30))
    elders = [p for p in plan.persons if p.kind == PersonKind.ELDER]
    children = [p for p in plan.persons if p.kind == PersonKind.CHILD]
    stories: list[tuple[Category, Severity, Any, str, Callable[..., None]]] = [
        (Category.INJURY_ACCIDENT, Severity.HIGH, rng.choice(elders), "老人在院中跌倒，髋部疼痛，无法站立", _acknowledged_and_resolved),
        (Category.ABUSE_VIOLENCE, Severity.HIGH, rng.choice(children), "孩子身上有多处淤青，说是被亲戚打的", _handed_up_by_hand),
        (Category.WANDERING_MISSING, Severity.HIGH, rng.choice(elders), "老人在集市上走失，已找到，情绪不稳", _acknowledged_and_resolved),
        (Category.CRITICAL_ILLNESS, Severity.CRITICAL, rng.choice(elders), "独居老人高烧昏睡，叫不醒", _escalated_on_deadline),
    ]  # fmt: skip
    desks = {u.id: f"desk-{u.code}" for u in plan.units if u.level == OrgLevel.TOWNSHIP}
    ids = [_from_visit(app, log_id, visited, desks, seed) for log_id, visited in sorted(flagged, key=lambda f: f[1])]
    for n, (category, severity, person, text, story) in enumerate(stories):
        report_id = derived_id("demo-emergency", f"{seed}:{n}")
        ids.append(report_id)
        if _exists(app, report_id):
            continue
        filed = now - timedelta(hours=6 - n, minutes=rng.randrange(60))
        reporter = _meta(f"villager-{person.village.code}", "village_cadre", filed, seed)
        app.file_emergency(id=report_id, category=category, severity=severity, description=text, meta=reporter,
                           person_id=person.id)  # fmt: skip
        _route(app, report_id, 0, filed + timedelta(seconds=2), seed)
        story(app, report_id, filed, desks[person.village.township_id], seed)
    return ids


def _from_visit(app: Any, log_id: UUID, visited: datetime, desks: dict[UUID, str], seed: int) -> UUID:
    """What the router does with ``VisitLog.EmergencyFlagged`` (the visitor reports, at the
    visit's time), then the township acknowledges, acts and resolves."""
    report_id = derived_id("emergency-from-visit", str(log_id))
    if _exists(app, report_id):
        return report_id
    log = app.load(VisitLog, log_id)
    reporter = _meta(str(log.helper_ids[0]), "volunteer", visited, seed)
    app.file_emergency_from_visit(log_id, reporter)
    _route(app, report_id, 0, visited + timedelta(seconds=2), seed)
    _acknowledged_and_resolved(app, report_id, visited, desks[app.load(EmergencyReport, report_id).township_id], seed)
    return report_id


def _route(app: Any, report_id: UUID, level: int, at: datetime, seed: int) -> None:
    app.route_emergency(report_id, level, _meta("router", "system", at, seed))


def _acknowledged_and_resolved(app: Any, report_id: UUID, filed: datetime, desk: str, seed: int) -> None:
    def m(minutes: int) -> CommandMeta:
        return _meta(desk, "township_responder", filed + timedelta(minutes=minutes), seed)

    app.acknowledge_emergency(report_id, m(3))
    app.record_emergency_action(report_id, ActionKind.DISPATCHED, "乡镇卫生院出车", m(5))
    app.record_emergency_action(report_id, ActionKind.ON_SCENE, "已到现场", m(25))
    app.record_emergency_action(report_id, ActionKind.GUARDIAN_NOTIFIED, "已电话通知在外务工的子女", m(40))
    app.resolve_emergency(report_id, Outcome.HELP_GIVEN, "送县医院检查后回家，村医每日上门", m(180))


def _handed_up_by_hand(app: Any, report_id: UUID, filed: datetime, desk: str, seed: int) -> None:
    app.acknowledge_emergency(report_id, _meta(desk, "township_responder", filed + timedelta(minutes=4), seed))
    app.escalate_emergency(
        report_id,
        "涉嫌侵害未成年人，需县民政局与公安协同",
        _meta(desk, "township_responder", filed + timedelta(minutes=20), seed),
    )
    _route(app, report_id, 1, filed + timedelta(minutes=20, seconds=2), seed)
    county_desk = f"desk-{app.load(EmergencyReport, report_id).county_code}"
    app.acknowledge_emergency(report_id, _meta(county_desk, "county_responder", filed + timedelta(minutes=26), seed))


def _escalated_on_deadline(app: Any, report_id: UUID, filed: datetime, desk: str, seed: int) -> None:
    report = app.load(EmergencyReport, report_id)
    deadline = report.deadline_at(0)
    app.escalate_overdue(report_id, 0, _meta("escalator", "system", deadline + timedelta(seconds=1), seed))
    _route(app, report_id, 1, deadline + timedelta(seconds=3), seed)
    county_desk = f"desk-{report.county_code}"
    at = deadline + timedelta(minutes=2)
    app.acknowledge_emergency(report_id, _meta(county_desk, "county_responder", at, seed))
    app.record_emergency_action(
        report_id,
        ActionKind.REFERRED_HOSPITAL,
        "120已送县人民医院",
        _meta(county_desk, "county_responder", at + timedelta(minutes=10), seed),
    )


def print_emergency_summary(app: Any, report_ids: list[UUID], file: IO[str]) -> None:
    print("\nEmergency reports (应急救助): those visits raised, then the demo's last hours (UTC+8)", file=file)
    for report_id in report_ids:
        r: EmergencyReport = app.load(EmergencyReport, report_id)
        path = " -> ".join(
            f"{('township', 'county', 'further')[e['from_level']]}→{('township', 'county', 'further')[e['to_level']]} ({e['reason']})"
            for e in r.escalations
        )
        state = r.status.value if r.status != Status.RESOLVED else f"resolved: {r.resolution['outcome']}"
        print(
            f"  {r.reported_at.astimezone(CHINA):%m-%d %H:%M} {r.category.value:<18} {r.severity.value:<8} {state:<22}"
            f" {path or 'no escalation'}{' (raised on a visit)' if r.source == 'visit' else ''}",
            file=file,
        )
