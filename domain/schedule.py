"""Visit schedules: a pairing's cadence turned into due windows, without I/O or a clock.

A pairing's periods are anchored on its start date: weekly, fortnightly and half-monthly
periods are 7, 14 and 15 days long; monthly, half-yearly and yearly periods follow the
calendar (the same day of the month, clamped to the month's end). One visit task is due in
each period, for each person of the pairing; its window is the period itself, in programme
time (China, UTC+8): it opens at 00:00 on the first day and closes at 00:00 after the last.

When the cadence changes, the old cadence runs to the end of the period in progress and the
new one starts there (a "span"), so a change never leaves a gap nor two overlapping windows.
Task ids are derived from (pairing, person, period start), so scheduling the same period
twice names the same task.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from uuid import UUID

from domain.base import derived_id
from domain.vocabulary import Cadence

PROGRAMME_TZ = timezone(timedelta(hours=8))  # the county plans' days are China Standard Time days
AHEAD = 1  # periods scheduled beyond the current one, so helpers can claim the next visit early

_DAYS = {Cadence.WEEKLY: 7, Cadence.FORTNIGHTLY: 14, Cadence.HALF_MONTHLY: 15}
_MONTHS = {Cadence.MONTHLY: 1, Cadence.HALF_YEARLY: 6, Cadence.YEARLY: 12}


def add_months(day: date, months: int, anchor_day: int | None = None) -> date:
    """``day`` moved by ``months`` calendar months, on ``anchor_day`` (default: its own day)
    or the month's last day when the month is shorter."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(anchor_day or day.day, last))


def local_day(instant: datetime) -> date:
    """The programme's calendar day at ``instant`` (which must carry a UTC offset)."""
    return instant.astimezone(PROGRAMME_TZ).date()


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=PROGRAMME_TZ)


@dataclass(frozen=True)
class Period:
    """One due window: ``start`` up to, not including, ``end``."""

    cadence: Cadence
    start: date
    end: date

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)

    @property
    def opens_at(self) -> datetime:
        return day_start(self.start)

    @property
    def closes_at(self) -> datetime:
        return day_start(self.end)

    def contains(self, day: date) -> bool:
        return self.start <= day < self.end


@dataclass(frozen=True)
class Span:
    """A stretch of time under one cadence, its periods counted from ``anchor``."""

    cadence: Cadence
    anchor: date
    until: date | None = None  # the next span's anchor

    def period(self, k: int) -> Period:
        if self.cadence in _DAYS:
            n = _DAYS[self.cadence]
            return Period(self.cadence, self.anchor + timedelta(days=n * k), self.anchor + timedelta(days=n * (k + 1)))
        n = _MONTHS[self.cadence]
        start = add_months(self.anchor, n * k, self.anchor.day)
        return Period(self.cadence, start, add_months(self.anchor, n * (k + 1), self.anchor.day))

    def index_at(self, day: date) -> int:
        """Index of the period containing ``day`` (negative before the anchor)."""
        if self.cadence in _DAYS:
            return (day - self.anchor).days // _DAYS[self.cadence]
        n = _MONTHS[self.cadence]
        k = ((day.year - self.anchor.year) * 12 + day.month - self.anchor.month) // n
        while self.period(k).start > day:
            k -= 1
        while self.period(k).end <= day:
            k += 1
        return k

    def periods_from(self, first: date) -> Iterator[Period]:
        """Periods of this span that end after ``first``, in order."""
        k = max(0, self.index_at(first))
        while self.until is None or self.period(k).start < self.until:
            yield self.period(k)
            k += 1

    def periods(self, first: date, last: date) -> Iterator[Period]:
        """Periods of this span that overlap the days ``first`` .. ``last`` (inclusive)."""
        for period in self.periods_from(first):
            if period.start > last:
                return
            yield period


def spans(starts_on: date, cadence: Cadence, changes: Sequence[tuple[date, Cadence]] = ()) -> list[Span]:
    """The pairing's cadence spans. Each change (day it was made, new cadence), in order,
    takes effect at the end of the period in progress that day."""
    result = [Span(cadence, starts_on)]
    for day, new in changes:
        current = result[-1]
        if new == current.cadence:
            continue
        switch = current.period(current.index_at(day)).end if day >= current.anchor else current.anchor
        if switch == current.anchor:  # changed before its first period began: replace it
            result[-1] = Span(new, current.anchor)
            continue
        result[-1] = Span(current.cadence, current.anchor, switch)
        result.append(Span(new, switch))
    return result


def due_periods(all_spans: Sequence[Span], today: date, ahead: int = AHEAD) -> list[Period]:
    """The period in progress on ``today`` and the next ``ahead`` ones; before the pairing's
    first period begins, only that first period."""
    found: list[Period] = []
    for span in all_spans:
        for period in span.periods_from(today):
            found.append(period)
            if found[0].start > today or len(found) > ahead:
                return found
    return found


def periods_between(all_spans: Sequence[Span], first: date, last: date) -> list[Period]:
    """Every period of every span overlapping ``first`` .. ``last``."""
    return [p for span in all_spans for p in span.periods(first, last)]


def task_id(pairing_id: UUID, person_id: UUID, period: Period) -> UUID:
    """The visit task of one person of one pairing in one period (cadence and start day)."""
    return derived_id("visit-task", f"{pairing_id}:{person_id}:{period.cadence.value}:{period.start.isoformat()}")


@dataclass(frozen=True)
class Timeline:
    """What scheduling needs from a pairing's history."""

    starts_on: date
    cadence: Cadence  # when formed
    changes: tuple[tuple[date, Cadence], ...] = ()  # (day of the change, new cadence), in order
    persons: tuple[UUID, ...] = ()  # in the pairing now
    departed: dict[UUID, datetime] = field(default_factory=dict)  # removed from it, and when
    ended_at: datetime | None = None


@dataclass(frozen=True)
class Plan:
    """``wanted``: the tasks that must exist. ``stale``: tasks that may exist and must not stay
    open; each is cancelled if its window had not closed by the instant given with it."""

    wanted: list[tuple[UUID, Period]]
    stale: list[tuple[UUID, Period, datetime]]
    cutoffs: dict[UUID, datetime]  # persons whose open tasks end with the pairing or their departure


def _reach(span: Span, first: date, last: date, ahead: int) -> list[Period]:
    """Periods of ``span`` (as if it never ended) from ``first`` through ``last`` and ``ahead``
    more: every task a scheduler may have created in that time."""
    found: list[Period] = []
    for period in Span(span.cadence, span.anchor).periods_from(first):
        if period.start > last:
            if ahead == 0:
                break
            ahead -= 1
        found.append(period)
    return found


def plan(timeline: Timeline, now: datetime, ahead: int = AHEAD) -> Plan:
    all_spans = spans(timeline.starts_on, timeline.cadence, timeline.changes)
    today = local_day(now)
    cutoffs = dict(timeline.departed)
    if timeline.ended_at is not None:
        for person in timeline.persons:
            cutoffs[person] = timeline.ended_at
    wanted = (
        []
        if timeline.ended_at is not None
        else [(person, period) for person in timeline.persons for period in due_periods(all_spans, today, ahead)]
    )
    stale: list[tuple[UUID, Period, datetime]] = []
    for person, cutoff in cutoffs.items():
        first = min(local_day(cutoff), today)
        stale += [(person, p, cutoff) for span in all_spans for p in _reach(span, first, today, ahead)]
    for span in all_spans:
        if span.until is None:
            continue
        superseded = [p for p in _reach(span, span.until, max(span.until, today), ahead) if p.start >= span.until]
        stale += [
            (person, p, day_start(span.until))
            for person in timeline.persons
            if person not in cutoffs
            for p in superseded
        ]
    return Plan(wanted, stale, cutoffs)
