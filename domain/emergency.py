"""EmergencyReport (应急救助, 强制报告): a report of a left-behind person in danger, from filing to
closing.

A report is about a registered person or, for someone not on the registry, a location in a
village or township; either way it belongs to one township and county, whose responders it is
routed to. Its life: reported -> routed (level 0, the township) -> acknowledged -> actions ->
resolved -> closed, with reopening, and escalation up the chain of ``domain.roster.LEVELS``
when nobody acknowledges by the deadline (or a responder asks for it).

The workers' commands are idempotent by design, so redelivered messages and racing workers
change nothing twice: ``route`` does nothing for a level already routed (or left behind), and
``escalate_overdue`` does nothing unless the report still waits at that very level past its
deadline. Each returns whether it emitted anything.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from domain.base import ERASED, CareAggregate, ClosedError, CommandMeta, DomainError, InvariantError, Personal
from domain.roster import LEVELS, Severity
from domain.vocabulary import labelled

__all__ = ["EmergencyReport", "Severity"]


@labelled(
    {
        "critical_illness": "危重病",
        "injury_accident": "意外伤害",
        "abuse_violence": "遭受侵害",
        "neglect": "监护缺失",
        "wandering_missing": "流浪乞讨、走失",
        "mental_health_crisis": "严重精神障碍发作",
        "other": "其他",
    }
)
class Category(StrEnum):
    CRITICAL_ILLNESS = "critical_illness"  # 危重病
    INJURY_ACCIDENT = "injury_accident"  # 意外伤害
    ABUSE_VIOLENCE = "abuse_violence"  # 遭受侵害 (abuse, violence)
    NEGLECT = "neglect"  # 监护缺失, 疏于照料
    WANDERING_MISSING = "wandering_missing"  # 流浪乞讨, 走失
    MENTAL_HEALTH_CRISIS = "mental_health_crisis"  # 严重精神障碍发作
    OTHER = "other"  # 重大困难等


class Status(StrEnum):
    REPORTED = "reported"  # accepted, not yet routed
    ROUTED = "routed"  # responders alerted, nobody has acknowledged at this level
    ESCALATED = "escalated"  # moved up a level, not yet routed there
    ACKNOWLEDGED = "acknowledged"  # a responder has taken it on
    RESOLVED = "resolved"
    CLOSED = "closed"


OPEN_STATUSES = frozenset({Status.REPORTED, Status.ROUTED, Status.ESCALATED, Status.ACKNOWLEDGED})


@labelled(
    {
        "dispatched": "已派人前往",
        "on_scene": "已到现场",
        "guardian_notified": "已通知监护人",
        "referred_hospital": "转送医院",
        "referred_police": "移交公安",
        "other": "其他",
    }
)
class ActionKind(StrEnum):
    DISPATCHED = "dispatched"  # someone is on the way
    ON_SCENE = "on_scene"
    GUARDIAN_NOTIFIED = "guardian_notified"
    REFERRED_HOSPITAL = "referred_hospital"
    REFERRED_POLICE = "referred_police"
    OTHER = "other"


@labelled(
    {
        "help_given": "已救助",
        "hospitalised": "已住院",
        "placed_in_care": "临时监护",
        "referred": "已转介",
        "false_alarm": "误报",
        "duplicate": "重复报告",
        "other": "其他",
    }
)
class Outcome(StrEnum):
    HELP_GIVEN = "help_given"
    HOSPITALISED = "hospitalised"
    PLACED_IN_CARE = "placed_in_care"  # 临时监护, 救助站
    REFERRED = "referred"
    FALSE_ALARM = "false_alarm"
    DUPLICATE = "duplicate"
    OTHER = "other"


class EscalationReason(StrEnum):
    DEADLINE_PASSED = "deadline_passed"
    MANUAL = "manual"


class EmergencyError(InvariantError):
    """The report cannot change as asked."""


class AlreadyAcknowledgedError(DomainError):
    """Another responder has already taken the report on at this level."""


class ReportClosedError(ClosedError):
    """The report is resolved or closed: reopen it first (a closed one stays closed)."""


# Responders' notes on a report are free text about the person: sealed with the report's key.
NOTES = Personal({"notes": ERASED})


class EmergencyReport(CareAggregate):
    category: Category
    severity: Severity
    person_id: UUID | None
    location: dict[str, Any] | None
    description: str
    village_id: UUID | None
    township_id: UUID
    county_id: UUID
    township_code: str
    county_code: str
    org_path: list[UUID]
    source: str
    source_id: str | None
    reported_at: datetime
    reporter_id: str
    status: Status
    level: int
    routings: dict[int, dict[str, Any]]  # level -> {responder_ids, deadline, routed_at}
    acknowledged_by: str | None  # at the current level
    actions: list[dict[str, Any]]
    escalations: list[dict[str, Any]]
    resolution: dict[str, Any] | None
    duplicate_of: UUID | None

    def __init__(self) -> None:
        """State is set by each event's ``apply``; the annotations above document it."""

    class Reported(CareAggregate.Created):
        category: str
        severity: str
        person_id: UUID | None
        location: dict[str, Any] | None
        description: str
        village_id: UUID | None
        township_id: UUID
        county_id: UUID
        township_code: str
        county_code: str
        org_path: list[UUID]
        source: str
        source_id: str | None

        # A key per report, owned by the person it is about (none for someone unregistered).
        personal = Personal({"description": ERASED, "location": None}, owner="person_id")

        def apply(self, r: EmergencyReport) -> None:
            for name in ("person_id", "location", "description", "village_id", "township_id", "county_id"):
                setattr(r, name, getattr(self, name))
            r.category, r.severity = Category(self.category), Severity(self.severity)
            r.township_code, r.county_code, r.org_path = self.township_code, self.county_code, list(self.org_path)
            r.source, r.source_id = self.source, self.source_id
            r.reported_at, r.reporter_id = self.occurred_at, self.actor_id
            r.status, r.level, r.routings, r.acknowledged_by = Status.REPORTED, 0, {}, None
            r.actions, r.escalations, r.resolution, r.duplicate_of = [], [], None, None

    class Routed(CareAggregate.Event):
        """Responders at ``level`` were picked and must acknowledge by ``deadline``. Carries what
        an alert needs (no names, no free text) so that alerts are built from the event alone."""

        level: int
        level_name: str
        responder_ids: list[str]
        deadline: datetime
        category: str
        severity: str
        county_code: str
        township_code: str

        def apply(self, r: EmergencyReport) -> None:
            routing = {
                "responder_ids": list(self.responder_ids),
                "deadline": self.deadline,
                "routed_at": self.occurred_at,
            }
            r.routings = {**r.routings, self.level: routing}
            if r.status in (Status.REPORTED, Status.ESCALATED):
                r.status = Status.ROUTED

    class Acknowledged(CareAggregate.Event):
        level: int

        def apply(self, r: EmergencyReport) -> None:
            r.acknowledged_by = self.actor_id
            r.status = Status.ACKNOWLEDGED

    class ActionRecorded(CareAggregate.Event):
        action: str
        notes: str

        personal = NOTES

        def apply(self, r: EmergencyReport) -> None:
            r.actions = [
                *r.actions,
                {"action": self.action, "notes": self.notes, "by": self.actor_id, "at": self.occurred_at},
            ]

    class Escalated(CareAggregate.Event):
        from_level: int
        to_level: int
        reason: str
        notes: str

        personal = NOTES

        def apply(self, r: EmergencyReport) -> None:
            r.escalations = [
                *r.escalations,
                {
                    "from_level": self.from_level,
                    "to_level": self.to_level,
                    "reason": self.reason,
                    "by": self.actor_id,
                    "at": self.occurred_at,
                },
            ]
            r.level, r.acknowledged_by, r.status = self.to_level, None, Status.ESCALATED

    class Resolved(CareAggregate.Event):
        outcome: str
        notes: str

        personal = NOTES

        def apply(self, r: EmergencyReport) -> None:
            r.resolution = {"outcome": self.outcome, "notes": self.notes, "by": self.actor_id, "at": self.occurred_at}
            r.status = Status.RESOLVED

    class Reopened(CareAggregate.Event):
        notes: str

        personal = NOTES

        def apply(self, r: EmergencyReport) -> None:
            r.resolution, r.status = None, Status.ACKNOWLEDGED
            r.acknowledged_by = self.actor_id

    class Closed(CareAggregate.Event):
        notes: str

        personal = NOTES

        def apply(self, r: EmergencyReport) -> None:
            r.status = Status.CLOSED

    class LinkedAsDuplicate(CareAggregate.Event):
        duplicate_of: UUID

        def apply(self, r: EmergencyReport) -> None:
            r.duplicate_of = self.duplicate_of

    # ---- filing ---------------------------------------------------------------------------------

    @classmethod
    def report(
        cls,
        *,
        id: UUID,
        category: Category,
        severity: Severity,
        person_id: UUID | None,
        location: dict[str, Any] | None,
        description: str,
        village_id: UUID | None,
        org_path: list[UUID],
        codes: tuple[str, str],
        meta: CommandMeta,
        source: str = "report",
        source_id: str | None = None,
    ) -> EmergencyReport:
        """``org_path`` runs county, township(, village); ``codes`` are the county's and the
        township's division codes (the alert subject is built from them)."""
        if person_id is None and location is None:
            raise EmergencyError("name a registered person or give a location", field="person_id")
        if len(org_path) < 2:
            raise EmergencyError(
                "a report belongs to a township: give a village or township", field="location.org_unit_id"
            )
        return cls._create(
            cls.Reported,
            id=id,
            category=category.value,
            severity=severity.value,
            person_id=person_id,
            location=location,
            description=description.strip(),
            village_id=village_id,
            township_id=org_path[1],
            county_id=org_path[0],
            county_code=codes[0],
            township_code=codes[1],
            org_path=list(org_path),
            source=source,
            source_id=source_id,
            **meta.fields(),
        )

    # ---- the workers' commands (idempotent) ---------------------------------------------------

    def route(self, level: int, responder_ids: list[str], deadline: datetime, meta: CommandMeta) -> bool:
        if level in self.routings or level < self.level or self.status in (Status.RESOLVED, Status.CLOSED):
            return False
        if level > self.level:
            raise EmergencyError(f"the report has not been escalated to level {level}", field="level")
        self._trigger(
            self.Routed,
            meta,
            level=level,
            level_name=LEVELS[level],
            responder_ids=list(responder_ids),
            deadline=deadline,
            category=self.category.value,
            severity=self.severity.value,
            county_code=self.county_code,
            township_code=self.township_code,
        )
        return True

    def deadline_at(self, level: int) -> datetime | None:
        routing = self.routings.get(level)
        return routing["deadline"] if routing else None

    def escalate_overdue(self, level: int, top_level: int, meta: CommandMeta) -> bool:
        """Move up when nobody acknowledged at ``level`` by its deadline (``meta.occurred_at`` is now)."""
        deadline = self.deadline_at(level)
        waiting = self.status == Status.ROUTED and self.level == level
        if not waiting or deadline is None or meta.occurred_at < deadline or level >= top_level:
            return False
        self._trigger(
            self.Escalated,
            meta,
            from_level=level,
            to_level=level + 1,
            reason=EscalationReason.DEADLINE_PASSED.value,
            notes="",
        )
        return True

    # ---- the responders' commands ---------------------------------------------------------------

    def _check_open(self) -> None:
        if self.status not in OPEN_STATUSES:
            raise ReportClosedError(f"the report is {self.status.value}")

    def acknowledge(self, meta: CommandMeta) -> None:
        self._check_open()
        if self.status == Status.ACKNOWLEDGED:
            if self.acknowledged_by == meta.actor_id:
                return  # a retry by the same responder
            raise AlreadyAcknowledgedError(
                f"already acknowledged at the {LEVELS[self.level]} level", acknowledged_by=self.acknowledged_by
            )
        self._trigger(self.Acknowledged, meta, level=self.level)

    def record_action(self, action: ActionKind, notes: str, meta: CommandMeta) -> None:
        """Help first, paperwork after: acting on a report takes it on, if nobody had."""
        self._check_open()
        if self.status != Status.ACKNOWLEDGED:
            self._trigger(self.Acknowledged, meta, level=self.level)
        self._trigger(self.ActionRecorded, meta, action=action.value, notes=notes.strip())

    def escalate(self, notes: str, top_level: int, meta: CommandMeta) -> None:
        """A responder asks for the next level (e.g. the township needs the county)."""
        self._check_open()
        if self.level >= top_level:
            raise EmergencyError(f"the report is at the top of its chain ({LEVELS[self.level]})", field="level")
        self._trigger(
            self.Escalated,
            meta,
            from_level=self.level,
            to_level=self.level + 1,
            reason=EscalationReason.MANUAL.value,
            notes=notes.strip(),
        )

    def resolve(self, outcome: Outcome, notes: str, meta: CommandMeta) -> None:
        self._check_open()
        self._trigger(self.Resolved, meta, outcome=outcome.value, notes=notes.strip())

    def reopen(self, notes: str, meta: CommandMeta) -> None:
        if self.status != Status.RESOLVED:
            raise EmergencyError(f"only a resolved report can be reopened; this one is {self.status.value}", field=None)
        if not notes.strip():
            raise EmergencyError("say why the report is reopened", field="notes")
        self._trigger(self.Reopened, meta, notes=notes.strip())

    def close(self, notes: str, meta: CommandMeta) -> None:
        if self.status != Status.RESOLVED:
            raise EmergencyError(f"only a resolved report can be closed; this one is {self.status.value}", field=None)
        self._trigger(self.Closed, meta, notes=notes.strip())

    def link_duplicate(self, original: EmergencyReport, meta: CommandMeta) -> None:
        """This report describes the same incident as ``original``: linked, and resolved if open."""
        if original.id == self.id:
            raise EmergencyError("a report cannot duplicate itself", field="duplicate_of")
        if original.duplicate_of is not None:
            raise EmergencyError(f"link to the original report {original.duplicate_of} instead", field="duplicate_of")
        if self.duplicate_of == original.id:
            return
        self._trigger(self.LinkedAsDuplicate, meta, duplicate_of=original.id)
        if self.status in OPEN_STATUSES:
            self._trigger(self.Resolved, meta, outcome=Outcome.DUPLICATE.value, notes=f"duplicate of {original.id}")

    # ---- reading ------------------------------------------------------------------------------

    @property
    def open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def deadline(self) -> datetime | None:
        """The acknowledgement deadline the report waits on now, if any."""
        return self.deadline_at(self.level) if self.status == Status.ROUTED else None
