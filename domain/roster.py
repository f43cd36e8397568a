"""Responder rosters and the escalation policy of a township or a county.

A ``ResponderRoster`` belongs to one org unit (its id is derived from the unit's id). It lists
the responders who answer emergency reports there, each with the weekly shifts they are on duty
(no shifts: always on duty), and the acknowledgement deadline per severity. On a county roster,
responders of the ``further`` tier are the contacts beyond the county responders.

The escalation chain of a report is fixed by ``LEVELS``: its township's primary responders,
then its county's primary responders, then the county's further contacts (when there are
any). ``plan_routing`` decides who is alerted at a level and by when they must acknowledge;
when nobody is on duty the deadline is the routing time itself, so the report moves up at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any
from uuid import UUID

from domain.base import ERASED, CareAggregate, CommandMeta, InvariantError, Personal, derived_id
from domain.org_unit import OrgUnit
from domain.vocabulary import OrgLevel, labelled


@labelled({"critical": "危急", "high": "紧急", "normal": "一般"})
class Severity(StrEnum):
    CRITICAL = "critical"  # life in danger now
    HIGH = "high"
    NORMAL = "normal"


class Tier(StrEnum):
    PRIMARY = "primary"  # answers reports of the roster's unit
    FURTHER = "further"  # county rosters only: contacted when the county responders do not answer


LEVELS = ("township", "county", "further")
CHINA_OFFSET_MINUTES = 480  # China keeps one time zone and no daylight saving
DEFAULT_ACK_SECONDS: dict[str, int] = {Severity.CRITICAL: 300, Severity.HIGH: 900, Severity.NORMAL: 3600}
MAX_ACK_SECONDS = 7 * 24 * 3600
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]\Z")


class RosterError(InvariantError):
    """The roster or its policy would be inconsistent."""


def roster_id(org_unit_id: UUID) -> UUID:
    return derived_id("roster", str(org_unit_id))


def check_shifts(shifts: Sequence[Mapping[str, Any]], field: str = "shifts") -> list[dict[str, Any]]:
    """Shifts as stored: ``{"days": [0..6, Monday = 0], "start": "HH:MM", "end": "HH:MM"}`` in
    the roster's local time; ``end`` before ``start`` runs past midnight into the next day."""
    checked = []
    for i, shift in enumerate(shifts):
        days = sorted(set(shift.get("days") or []))
        if not days or any(not isinstance(d, int) or not 0 <= d <= 6 for d in days):
            raise RosterError("days are 0 (Monday) to 6 (Sunday), at least one", field=f"{field}[{i}].days")
        for end in ("start", "end"):
            if not _HHMM.match(str(shift.get(end, ""))):
                raise RosterError("a time of day is HH:MM (00:00 to 23:59)", field=f"{field}[{i}].{end}")
        if shift["start"] == shift["end"]:
            raise RosterError("a shift cannot start and end at the same time", field=f"{field}[{i}].end")
        checked.append({"days": days, "start": shift["start"], "end": shift["end"]})
    return checked


def check_ack_seconds(ack_seconds: Mapping[str, int], field: str = "ack_deadlines") -> dict[str, int]:
    checked = dict(DEFAULT_ACK_SECONDS)
    for severity, seconds in ack_seconds.items():
        if severity not in set(Severity):
            raise RosterError(f"unknown severity {severity!r}", field=f"{field}.{severity}")
        if not isinstance(seconds, int) or not 1 <= seconds <= MAX_ACK_SECONDS:
            raise RosterError(f"between 1 second and {MAX_ACK_SECONDS // 86400} days", field=f"{field}.{severity}")
        checked[str(severity)] = seconds
    return checked


def _minutes(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:])


def on_shift(shifts: Sequence[Mapping[str, Any]], local: datetime) -> bool:
    if not shifts:
        return True
    now = local.hour * 60 + local.minute
    today, yesterday = local.weekday(), (local.weekday() - 1) % 7
    for s in shifts:
        start, end = _minutes(s["start"]), _minutes(s["end"])
        if start < end and today in s["days"] and start <= now < end:
            return True
        if start > end and ((today in s["days"] and now >= start) or (yesterday in s["days"] and now < end)):
            return True
    return False


class ResponderRoster(CareAggregate):
    org_unit_id: UUID
    level: OrgLevel
    org_path: list[UUID]
    utc_offset_minutes: int
    ack_seconds: dict[str, int]
    responders: dict[str, dict[str, Any]]  # responder id -> {name, phone, tier, shifts}

    def __init__(self) -> None:
        """State is set by each event's ``apply``; the annotations above document it."""

    class SetUp(CareAggregate.Created):
        org_unit_id: UUID
        level: str
        org_path: list[UUID]
        utc_offset_minutes: int
        ack_seconds: dict[str, int]

        def apply(self, r: ResponderRoster) -> None:
            r.org_unit_id = self.org_unit_id
            r.level = OrgLevel(self.level)
            r.org_path = list(self.org_path)
            r.utc_offset_minutes = self.utc_offset_minutes
            r.ack_seconds = dict(self.ack_seconds)
            r.responders = {}

    class ResponderAdded(CareAggregate.Event):
        responder_id: str
        name: str
        phone: str
        tier: str
        shifts: list[dict[str, Any]]

        # Staff contact data, sealed with a key per responder (no person owns it).
        personal = Personal({"name": ERASED, "phone": ERASED}, subject="responder_id", prefix="responder")

        def apply(self, r: ResponderRoster) -> None:
            entry = {"name": self.name, "phone": self.phone, "tier": self.tier, "shifts": list(self.shifts)}
            r.responders = {**r.responders, self.responder_id: entry}

    class ResponderRemoved(CareAggregate.Event):
        responder_id: str
        reason: str

        def apply(self, r: ResponderRoster) -> None:
            r.responders = {k: v for k, v in r.responders.items() if k != self.responder_id}

    class ShiftsChanged(CareAggregate.Event):
        responder_id: str
        shifts: list[dict[str, Any]]

        def apply(self, r: ResponderRoster) -> None:
            r.responders = {
                **r.responders,
                self.responder_id: {**r.responders[self.responder_id], "shifts": list(self.shifts)},
            }

    class AckDeadlinesChanged(CareAggregate.Event):
        ack_seconds: dict[str, int]

        def apply(self, r: ResponderRoster) -> None:
            r.ack_seconds = dict(self.ack_seconds)

    @classmethod
    def set_up(
        cls,
        *,
        unit: OrgUnit,
        ack_seconds: Mapping[str, int],
        meta: CommandMeta,
        utc_offset_minutes: int = CHINA_OFFSET_MINUTES,
    ) -> ResponderRoster:
        if unit.level not in (OrgLevel.TOWNSHIP, OrgLevel.COUNTY):
            raise RosterError(f"rosters are kept by townships and counties, not a {unit.level}", field="org_unit_id")
        if not -720 <= utc_offset_minutes <= 840:
            raise RosterError("a UTC offset lies between -12:00 and +14:00", field="utc_offset_minutes")
        return cls._create(
            cls.SetUp,
            id=roster_id(unit.id),
            org_unit_id=unit.id,
            level=unit.level.value,
            org_path=list(unit.path),
            utc_offset_minutes=utc_offset_minutes,
            ack_seconds=check_ack_seconds(ack_seconds),
            **meta.fields(),
        )

    def add_responder(
        self,
        *,
        responder_id: str,
        name: str,
        phone: str,
        tier: Tier,
        shifts: Sequence[Mapping[str, Any]],
        meta: CommandMeta,
    ) -> None:
        if not responder_id.strip():
            raise RosterError("a responder id is required", field="responder_id")
        if responder_id in self.responders:
            raise RosterError(
                f"{responder_id} is already on this roster; change their shifts instead", field="responder_id"
            )
        if tier == Tier.FURTHER and self.level != OrgLevel.COUNTY:
            raise RosterError("further contacts are kept on the county roster", field="tier")
        checked = check_shifts(shifts)
        self._trigger(
            self.ResponderAdded,
            meta,
            responder_id=responder_id,
            name=name.strip(),
            phone=phone,
            tier=tier.value,
            shifts=checked,
        )

    def _check_listed(self, responder_id: str) -> None:
        if responder_id not in self.responders:
            raise RosterError(f"{responder_id} is not on this roster", field="responder_id")

    def remove_responder(self, responder_id: str, reason: str, meta: CommandMeta) -> None:
        self._check_listed(responder_id)
        self._trigger(self.ResponderRemoved, meta, responder_id=responder_id, reason=reason.strip())

    def change_shifts(self, responder_id: str, shifts: Sequence[Mapping[str, Any]], meta: CommandMeta) -> None:
        self._check_listed(responder_id)
        checked = check_shifts(shifts)
        if checked != self.responders[responder_id]["shifts"]:
            self._trigger(self.ShiftsChanged, meta, responder_id=responder_id, shifts=checked)

    def change_ack_deadlines(self, ack_seconds: Mapping[str, int], meta: CommandMeta) -> None:
        checked = check_ack_seconds({**self.ack_seconds, **ack_seconds})
        if checked != self.ack_seconds:
            self._trigger(self.AckDeadlinesChanged, meta, ack_seconds=checked)

    # ---- queries ----------------------------------------------------------------------------

    def local_time(self, at: datetime) -> datetime:
        return at.astimezone(timezone(timedelta(minutes=self.utc_offset_minutes)))

    def on_duty(self, at: datetime, tier: Tier = Tier.PRIMARY) -> list[str]:
        """Responders of ``tier`` on duty at ``at``, in a stable order."""
        local = self.local_time(at)
        return sorted(rid for rid, r in self.responders.items() if r["tier"] == tier and on_shift(r["shifts"], local))

    def has_tier(self, tier: Tier) -> bool:
        return any(r["tier"] == tier for r in self.responders.values())

    def ack_window(self, severity: Severity) -> timedelta:
        return timedelta(seconds=self.ack_seconds.get(severity, DEFAULT_ACK_SECONDS[severity]))


def top_level(county: ResponderRoster | None) -> int:
    """The highest level of the chain: ``further`` only when the county names further contacts."""
    return 2 if county is not None and county.has_tier(Tier.FURTHER) else 1


def plan_routing(
    level: int, severity: Severity, at: datetime, township: ResponderRoster | None, county: ResponderRoster | None
) -> tuple[list[str], datetime]:
    """Who is alerted at ``level`` and the time by which one of them must acknowledge."""
    if level == 0:
        roster, tier = township, Tier.PRIMARY
    elif level == 1:
        roster, tier = county, Tier.PRIMARY
    else:
        roster, tier = county, Tier.FURTHER
    responders = roster.on_duty(at, tier) if roster is not None else []
    if not responders or roster is None:
        return [], at
    return responders, at + roster.ack_window(severity)
