"""The emergency commands of CareApplication: filing reports, the workers' routing and
escalation, the responders' acknowledgements, actions and resolutions, and the rosters.

A mixin: its methods use ``load``, ``_create``, ``_update`` and ``_run`` of CareApplication
(application/care.py), which lists it among its bases. Filing with a client-chosen id (or
an id derived from an Idempotency-Key) is idempotent like every create. The workers' commands
(``route_emergency``, ``escalate_overdue``) are idempotent in the aggregate itself: a second
delivery, or a second worker racing the first, finds nothing left to do and saves nothing
(their result then has ``position`` None).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from application.command_group import CommandGroup
from application.errors import NotFoundError
from application.results import CommandResult
from domain.base import CommandMeta, DomainError, derived_id
from domain.emergency import ActionKind, Category, EmergencyError, EmergencyReport, Outcome
from domain.org_unit import OrgUnit
from domain.person import Person
from domain.roster import ResponderRoster, Severity, Tier, plan_routing, roster_id, top_level
from domain.visit_log import EmergencyKind, VisitLog
from domain.vocabulary import OrgLevel

ALERT_PREFIX = "alerts"

# A visit's mandatory-report situations (domain/visit_log.py) as report categories and severities.
VISIT_EMERGENCY: dict[EmergencyKind, tuple[Category, Severity]] = {
    EmergencyKind.CRITICAL_ILLNESS: (Category.CRITICAL_ILLNESS, Severity.CRITICAL),
    EmergencyKind.ILLEGAL_HARM: (Category.ABUSE_VIOLENCE, Severity.HIGH),
    EmergencyKind.MENTAL_HEALTH_CRISIS: (Category.MENTAL_HEALTH_CRISIS, Severity.HIGH),
    EmergencyKind.WANDERING_OR_BEGGING: (Category.WANDERING_MISSING, Severity.HIGH),
    EmergencyKind.MAJOR_HARDSHIP: (Category.OTHER, Severity.NORMAL),
    EmergencyKind.OTHER: (Category.OTHER, Severity.NORMAL),
}


def alert_subject(county_code: str, township_code: str, level: int, prefix: str = ALERT_PREFIX) -> str:
    """Where a routing's alert goes: the township's subject at level 0, then the county's own
    (``county``) and its further contacts' (``further``). A county console subscribes to
    ``<prefix>.<county>.>`` and sees all three."""
    last = township_code if level == 0 else ("county" if level == 1 else "further")
    return f"{prefix}.{county_code}.{last}"


def idempotent_report_id(actor_id: str, key: str) -> UUID:
    """The report id an Idempotency-Key stands for: the same key from the same actor is the
    same report, so a retried POST files nothing twice."""
    return derived_id("emergency-idempotency", f"{actor_id}\x1f{key}")


class EmergencyCommands(CommandGroup):
    """Emergency reports and responder rosters (a command group of CareApplication)."""

    # ---- reports ---------------------------------------------------------------------------------

    def file_emergency(
        self,
        *,
        id: UUID,
        category: Category,
        severity: Severity,
        description: str,
        meta: CommandMeta,
        person_id: UUID | None = None,
        location: Mapping[str, Any] | None = None,
        source: str = "report",
        source_id: str | None = None,
    ) -> CommandResult:
        """A location (``org_unit_id`` of a village or township, ``address``, optional
        coordinates) routes the report there; without one, the person's village does."""

        def build() -> tuple[EmergencyReport, list[Any]]:
            village_id: UUID | None = None
            path: list[UUID] = []
            place: dict[str, Any] | None = None
            if person_id is not None:
                person = self.load(Person, person_id, field="person_id")
                person.check_not_erased(field="person_id")
                path, village_id = list(person.org_path), person.village_id
            if location is not None:
                unit = self.load(OrgUnit, UUID(str(location["org_unit_id"])), field="location.org_unit_id")
                if unit.level == OrgLevel.COUNTY:
                    raise EmergencyError("give the village or township, not the county", field="location.org_unit_id")
                path, village_id = list(unit.path), unit.id if unit.level == OrgLevel.VILLAGE else None
                place = {k: v for k, v in location.items() if v is not None} | {"org_unit_id": str(unit.id)}
            codes = (self.load(OrgUnit, path[0]).code, self.load(OrgUnit, path[1]).code) if len(path) >= 2 else ("", "")
            report = EmergencyReport.report(
                id=id,
                category=category,
                severity=severity,
                person_id=person_id,
                location=place,
                description=description,
                village_id=village_id,
                org_path=path,
                codes=codes,
                meta=meta,
                source=source,
                source_id=source_id,
            )
            return report, []

        return self._create(EmergencyReport, id, build)

    def file_emergency_from_visit(self, log_id: UUID, meta: CommandMeta) -> CommandResult:
        """The report a visit log flagged "raise an emergency" files (``VisitLog.EmergencyFlagged``).
        ``meta`` is the flagging event's own (the visitor, the visit's time): the visitor is the
        reporter. Its id derives from the log's, so however often it is delivered it files once."""
        log = self.load(VisitLog, log_id)
        kind = EmergencyKind(log.emergency_kind or EmergencyKind.OTHER)
        category, severity = VISIT_EMERGENCY[kind]
        return self.file_emergency(
            id=derived_id("emergency-from-visit", str(log_id)),
            category=category,
            severity=severity,
            description=log.description,
            meta=meta,
            person_id=log.person_id,
            source="visit",
            source_id=str(log_id),
        )

    def _roster(self, org_unit_id: UUID) -> ResponderRoster | None:
        try:
            return self.load(ResponderRoster, roster_id(org_unit_id))
        except DomainError:
            return None

    def route_emergency(
        self, report_id: UUID, level: int, meta: CommandMeta
    ) -> tuple[CommandResult, dict[str, Any] | None]:
        """Pick the on-duty responders of ``level`` and record the routing (once per level).
        Also answers the stored ``Routed`` event's fields when this command routed (None when
        there was nothing to do), so that the router can alert without reading it back."""
        routed: dict[str, Any] = {}

        def decide() -> tuple[EmergencyReport, list[Any]]:
            report = self.load(EmergencyReport, report_id)
            township, county = self._roster(report.township_id), self._roster(report.county_id)
            responders, deadline = plan_routing(level, report.severity, meta.occurred_at, township, county)
            routed.clear()
            if report.route(level, responders, deadline, meta):
                routed.update(vars(report.pending_events[-1]))
            return report, [report]

        result = self._run(decide)
        return result, (routed or None)

    def escalate_overdue(self, report_id: UUID, level: int, meta: CommandMeta) -> CommandResult:
        """Escalate when ``level`` went unacknowledged past its deadline (at most once)."""

        def decide() -> tuple[EmergencyReport, list[Any]]:
            report = self.load(EmergencyReport, report_id)
            report.escalate_overdue(level, top_level(self._roster(report.county_id)), meta)
            return report, [report]

        return self._run(decide)

    def escalate_emergency(
        self, report_id: UUID, notes: str, meta: CommandMeta, expected_version: int | None = None
    ) -> CommandResult:
        def change(report: EmergencyReport) -> list[Any]:
            report.escalate(notes, top_level(self._roster(report.county_id)), meta)
            return []

        return self._update(EmergencyReport, report_id, expected_version, change)

    def acknowledge_emergency(
        self, report_id: UUID, meta: CommandMeta, expected_version: int | None = None
    ) -> CommandResult:
        return self._update(EmergencyReport, report_id, expected_version, lambda r: r.acknowledge(meta))

    def record_emergency_action(
        self, report_id: UUID, action: ActionKind, notes: str, meta: CommandMeta, expected_version: int | None = None
    ) -> CommandResult:
        return self._update(
            EmergencyReport, report_id, expected_version, lambda r: r.record_action(action, notes, meta)
        )

    def resolve_emergency(
        self, report_id: UUID, outcome: Outcome, notes: str, meta: CommandMeta, expected_version: int | None = None
    ) -> CommandResult:
        return self._update(EmergencyReport, report_id, expected_version, lambda r: r.resolve(outcome, notes, meta))

    def reopen_emergency(
        self, report_id: UUID, notes: str, meta: CommandMeta, expected_version: int | None = None
    ) -> CommandResult:
        return self._update(EmergencyReport, report_id, expected_version, lambda r: r.reopen(notes, meta))

    def close_emergency(
        self, report_id: UUID, notes: str, meta: CommandMeta, expected_version: int | None = None
    ) -> CommandResult:
        return self._update(EmergencyReport, report_id, expected_version, lambda r: r.close(notes, meta))

    def link_duplicate_emergency(
        self, report_id: UUID, original_id: UUID, meta: CommandMeta, expected_version: int | None = None
    ) -> CommandResult:
        def change(report: EmergencyReport) -> list[Any]:
            report.link_duplicate(self.load(EmergencyReport, original_id, field="duplicate_of"), meta)
            return []

        return self._update(EmergencyReport, report_id, expected_version, change)

    # ---- rosters ---------------------------------------------------------------------------------

    def set_up_roster(
        self, org_unit_id: UUID, ack_seconds: Mapping[str, int], meta: CommandMeta, utc_offset_minutes: int = 480
    ) -> CommandResult:
        def build() -> tuple[ResponderRoster, list[Any]]:
            unit = self.load(OrgUnit, org_unit_id, field="org_unit_id")
            return ResponderRoster.set_up(
                unit=unit, ack_seconds=ack_seconds, meta=meta, utc_offset_minutes=utc_offset_minutes
            ), []

        return self._create(ResponderRoster, roster_id(org_unit_id), build)

    def load_roster(self, org_unit_id: UUID) -> ResponderRoster:
        roster = self._roster(org_unit_id)
        if roster is None:
            raise NotFoundError(f"org unit {org_unit_id} keeps no responder roster", id=str(org_unit_id))
        return roster

    def _roster_change(self, org_unit_id: UUID, expected_version: int | None, change: Any) -> CommandResult:
        self.load_roster(org_unit_id)
        return self._update(ResponderRoster, roster_id(org_unit_id), expected_version, change)

    def add_roster_responder(
        self,
        org_unit_id: UUID,
        *,
        responder_id: str,
        name: str,
        phone: str,
        tier: Tier,
        shifts: Sequence[Mapping[str, Any]],
        meta: CommandMeta,
        expected_version: int | None = None,
    ) -> CommandResult:
        def change(roster: ResponderRoster) -> list[Any]:
            roster.add_responder(responder_id=responder_id, name=name, phone=phone, tier=tier, shifts=shifts, meta=meta)
            return []

        return self._roster_change(org_unit_id, expected_version, change)

    def remove_roster_responder(
        self, org_unit_id: UUID, responder_id: str, reason: str, meta: CommandMeta, expected_version: int | None = None
    ) -> CommandResult:
        return self._roster_change(
            org_unit_id, expected_version, lambda r: r.remove_responder(responder_id, reason, meta) or []
        )

    def change_roster_shifts(
        self,
        org_unit_id: UUID,
        responder_id: str,
        shifts: Sequence[Mapping[str, Any]],
        meta: CommandMeta,
        expected_version: int | None = None,
    ) -> CommandResult:
        return self._roster_change(
            org_unit_id, expected_version, lambda r: r.change_shifts(responder_id, shifts, meta) or []
        )

    def change_ack_deadlines(
        self, org_unit_id: UUID, ack_seconds: Mapping[str, int], meta: CommandMeta, expected_version: int | None = None
    ) -> CommandResult:
        return self._roster_change(
            org_unit_id, expected_version, lambda r: r.change_ack_deadlines(ack_seconds, meta) or []
        )
