"""The demo's visits: a few weeks of the practice, replayed through the command side.

``simulate_visits`` takes every active pairing of the demo county and lives through the last
``weeks`` weeks: the scheduler creates tasks at the start of each week; helpers claim most of
them, go (at home, on the phone) and log what they found and did, often a day or two later
when they have a signal; some claims are given back; some visits are never made and are marked
missed when their window closes. How diligent a township's helpers are is drawn from the seed,
so rates differ between townships as they do in the supervision reports. Everything derives
from the seed and the task ids: a second run finds what it wrote and writes nothing new.

``print_visit_summary`` prints completion and missed rates per township from the task board.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any
from uuid import UUID

from domain.base import CommandMeta, DomainError, derived_id
from domain.pairing import Pairing
from domain.person import Person
from domain.visit_log import EmergencyKind
from domain.visit_log import ServiceCategory as SC
from domain.visit_log import ServiceItem as SI
from domain.visit_task import VisitTask
from domain.vocabulary import PersonKind, VisitMode

Progress = Callable[[str, int, int], None]
FORMED, ENDED = "domain.pairing:Pairing.Formed", "domain.pairing:Pairing.Ended"

ELDER_SERVICES = [
    ([SC.DAILY_LIFE_CARE], [SI.CLEANING, SI.LAUNDRY]),
    ([SC.DAILY_LIFE_CARE, SC.HEALTH_CARE], [SI.MEDICINE_DELIVERY, SI.BLOOD_PRESSURE]),
    ([SC.HEALTH_CARE], [SI.BLOOD_PRESSURE, SI.BLOOD_SUGAR]),
    ([SC.DAILY_LIFE_CARE], [SI.HAIRCUT]),
    ([SC.DAILY_LIFE_CARE, SC.PSYCHOLOGICAL_COMFORT], [SI.SHOPPING, SI.MEAL_DELIVERY]),
    ([SC.PSYCHOLOGICAL_COMFORT], []),
]
CHILD_SERVICES = [
    ([SC.PSYCHOLOGICAL_COMFORT], []),
    ([SC.PSYCHOLOGICAL_COMFORT, SC.CULTURE_RECREATION], []),
    ([SC.CULTURE_RECREATION], []),
    ([SC.DAILY_LIFE_CARE], [SI.LAUNDRY, SI.COOKING]),
    ([SC.LEGAL_AID, SC.PSYCHOLOGICAL_COMFORT], []),
]
ELDER_NOTES = [
    "身体还可以，腿脚不便",
    "血压偏高，提醒按时吃药",
    "想念在外打工的儿子",
    "屋顶漏雨，需要修缮",
    "精神不错，和邻居打牌",
    "药快吃完了",
]
CHILD_NOTES = [
    "学习成绩有进步",
    "和奶奶相处融洽",
    "想念爸爸妈妈，情绪低落",
    "作业完成情况一般",
    "暑假在家看电视时间长",
    "提醒注意防溺水",
]


EMERGENCY_RATE = 0.001  # of visits that find an emergency


@dataclass
class VisitCounts:
    weeks: int = 0
    pairings: int = 0
    scheduled: int = 0
    claimed: int = 0
    completed: int = 0
    released: int = 0
    missed: int = 0
    emergencies: int = 0
    present: int = 0  # already done by an earlier run
    # Logs flagged "raise an emergency" and when the visit was: the router files each as a report
    # (guanai.demo.emergencies files them as it would, so the supervision summary counts them).
    flagged: list[tuple[UUID, datetime]] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.weeks} weeks of visits: {self.pairings} pairings, {self.scheduled} tasks scheduled, {self.claimed} claimed, {self.completed}"
            f" completed, {self.released} released, {self.missed} missed, {self.emergencies} emergencies raised"
            f"{' (each filed as an emergency report)' if self.emergencies else ''}"
        )


def active_pairings(app: Any) -> list[UUID]:
    """Pairings formed and not ended, from the notification log (no view needed)."""
    notifications = app.recorder.select_notifications(start=None, limit=10_000_000, topics=[FORMED, ENDED])
    formed: dict[UUID, None] = {}
    for n in notifications:
        (formed.pop if n.topic == ENDED else formed.setdefault)(n.originator_id, None)
    return list(formed)


def _meta(actor: str, role: str, at: datetime, key: str) -> CommandMeta:
    return CommandMeta(actor_id=actor, actor_role=role, correlation_id=f"demo-visit-{key}", occurred_at=at)


class _Lane:
    """One pairing's weeks, in time order."""

    def __init__(
        self,
        app: Any,
        pairing_id: UUID,
        seed: int,
        now: datetime,
        weeks: int,
        counts: VisitCounts,
        lock: threading.Lock,
        emergency_rate: float = 0.001,
    ) -> None:
        self.app, self.pairing_id, self.seed, self.now, self.weeks = app, pairing_id, seed, now, weeks
        self.emergency_rate = emergency_rate
        self.counts, self.lock = counts, lock
        self.kinds: dict[UUID, PersonKind] = {}

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self.counts, name, getattr(self.counts, name) + n)

    def run(self, diligence: Callable[[list[UUID]], float]) -> None:
        tasks: dict[UUID, None] = {}
        for w in range(self.weeks, -1, -1):
            step = self.now - timedelta(days=7 * w)
            outcome = self.app.schedule_visits(
                self.pairing_id, _meta("scheduler", "system", step, f"schedule-{step:%Y%m%d}")
            )
            self.count("scheduled", len(outcome.created))
            tasks.update(dict.fromkeys(outcome.created))
        pairing = self.app.load(Pairing, self.pairing_id)
        for task_id in tasks:
            self.visit(self.app.load(VisitTask, task_id), pairing, diligence(pairing.org_path))
        with self.lock:
            self.counts.pairings += 1

    def visit(self, task: VisitTask, pairing: Pairing, diligence: float) -> None:
        rng = random.Random(f"{self.seed}:{task.id}")
        if task.status != "scheduled" or task.opens_at >= self.now:
            return
        helper = rng.choice(pairing.helper_ids)
        claim_at = task.opens_at + timedelta(hours=rng.uniform(8, 60))
        if claim_at >= min(self.now, task.closes_at):
            return self.miss(task)
        # Many helpers claim their visit first; others just go and log it.
        claims = rng.random() < 0.6
        if claims:
            try:
                self.app.claim_visit(
                    task.id, _meta(str(helper), "volunteer", claim_at, f"claim-{task.id}"), helper_id=helper
                )
            except DomainError:
                return self.miss(task)
            self.count("claimed")
        visit_at = claim_at + timedelta(hours=rng.uniform(1, 70))
        if rng.random() > diligence or visit_at >= min(self.now, task.closes_at):
            if claims and rng.random() < 0.3 and visit_at < self.now:
                self.app.release_visit(task.id, "临时有事，请其他志愿者去", _meta(str(helper), "volunteer", visit_at, f"release-{task.id}"),
                                       acting_helper_id=helper)  # fmt: skip
                self.count("released")
            return self.miss(task)
        if task.closes_at <= self.now and rng.random() < 0.06:
            self.miss(task)  # logged offline days later: the sweeper had marked it missed meanwhile
        self.log(task, pairing, helper, visit_at, rng)

    def miss(self, task: VisitTask) -> None:
        if task.closes_at <= self.now:
            result = self.app.mark_visit_missed(task.id, _meta("scheduler", "system", self.now, f"missed-{task.id}"))
            self.count("missed", result.position is not None)

    def log(self, task: VisitTask, pairing: Pairing, helper: UUID, visit_at: datetime, rng: random.Random) -> None:
        if task.person_id not in self.kinds:
            self.kinds[task.person_id] = self.app.load(Person, task.person_id).kind
        kind = self.kinds[task.person_id]
        services, items = rng.choice(ELDER_SERVICES if kind == PersonKind.ELDER else CHILD_SERVICES)
        others = [h for h in pairing.helper_ids if h != helper]
        went = [helper, *([rng.choice(others)] if others and rng.random() < 0.25 else [])]
        emergency = rng.random() < self.emergency_rate
        findings: dict[str, Any] = {
            "living_conditions": rng.choices(["good", "adequate", "poor"], [5, 4, 1])[0],
            "health": rng.choices(["well", "minor_illness", "chronic_stable", "ill"], [4, 2, 3, 1])[0],
            "mood": rng.choices(["good", "calm", "low", "anxious"], [4, 4, 2, 1])[0],
            "safety_risks": rng.sample(["fall", "fire", "medication"] if kind == PersonKind.ELDER else ["drowning", "traffic"], k=rng.choice([0, 0, 1])),
            "needs": rng.sample(["daily_care", "medical_care", "family_contact"] if kind == PersonKind.ELDER else ["schooling", "psychological_support"], k=rng.choice([0, 0, 1])),
            "notes": rng.choice(ELDER_NOTES if kind == PersonKind.ELDER else CHILD_NOTES),
        }  # fmt: skip
        if SI.BLOOD_PRESSURE in items:
            findings["blood_pressure"] = {"systolic": rng.randrange(115, 170), "diastolic": rng.randrange(70, 100)}
        mode = task.mode if rng.random() < 0.85 else VisitMode.PHONE_VIDEO
        follow_up = rng.random() < 0.15
        result = self.app.record_visit(
            derived_id("demo-visit-log", str(task.id)), _meta(str(helper), "volunteer", visit_at, f"log-{task.id}"),
            acting_helper_id=helper, now=visit_at + timedelta(days=rng.choice([0, 0, 0, 1, 2])), task_id=task.id, mode=mode,
            helper_ids=went, findings=findings, services=services, service_items=items, follow_up_needed=follow_up,
            outcome_notes="下次带降压药" if follow_up else "", raise_emergency=emergency,
            emergency_kind=EmergencyKind.CRITICAL_ILLNESS if emergency else None,
            description="老人突发胸闷，已联系村医和120" if emergency else "",
        )  # fmt: skip
        self.count("completed" if result.created else "present")
        self.count("emergencies", int(emergency and result.created))
        if emergency:
            with self.lock:
                self.counts.flagged.append((derived_id("demo-visit-log", str(task.id)), visit_at))


def simulate_visits(
    app: Any,
    *,
    seed: int = 2026,
    weeks: int = 3,
    now: datetime | None = None,
    workers: int = 8,
    progress: Progress | None = None,
    emergency_rate: float = EMERGENCY_RATE,
) -> VisitCounts:
    """Live through the last ``weeks`` weeks of visits for every active pairing (see module doc)."""
    now = now or datetime.now(UTC)
    counts, lock = VisitCounts(weeks=weeks), threading.Lock()
    pairings = active_pairings(app)
    units: dict[UUID, float] = {}

    def diligence(org_path: list[UUID]) -> float:
        township = org_path[1] if len(org_path) > 1 else org_path[0]
        with lock:
            if township not in units:
                units[township] = random.Random(f"{seed}:{township}").uniform(0.72, 0.97)
            return units[township]

    done = [0]

    def run(pairing_id: UUID) -> None:
        _Lane(app, pairing_id, seed, now, weeks, counts, lock, emergency_rate).run(diligence)
        with lock:
            done[0] += 1

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="demo-visits") as pool:
        futures = [pool.submit(run, p) for p in pairings]
        for n, f in enumerate(futures, 1):
            f.result()
            if progress and (n % 50 == 0 or n == len(futures)):
                progress("visits", n, len(futures))
    return counts


def print_visit_summary(view: Any, county_id: UUID, file: IO[str], since: datetime | None = None) -> None:
    """Per township: visits due (windows closed), completed, of which logged late, missed, rates."""
    rows = view.rates_by_unit(county_id, since=since)
    print("\nVisits whose window has closed, per township (走访完成情况):", file=file)
    header = f"  {'township':<14}{'due':>7}{'done':>7}{'late':>7}{'missed':>8}{'done %':>9}{'missed %':>10}"
    print(header, file=file)
    total = {"due": 0, "completed": 0, "completed_late": 0, "missed": 0}
    for row in rows:
        for k in total:
            total[k] += row[k]
        print(_line(row["name"], row), file=file)
    print(_line("county 全县", total), file=file)


def _line(name: str, r: dict[str, Any]) -> str:
    due = r["due"] or 0
    pct = lambda n: f"{100 * n / due:.1f}" if due else "-"
    wide = sum(1 for c in name if ord(c) > 0x2E80)  # CJK characters take two columns
    return (
        f"  {name:<{14 - wide}}{due:>7}{r['completed']:>7}{r['completed_late']:>7}{r['missed']:>8}"
        f"{pct(r['completed']):>9}{pct(r['missed']):>10}"
    )
