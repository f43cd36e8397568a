"""Cadences turned into due windows (domain/schedule.py): periods, cadence changes, and the plan
that says which tasks must exist and which must go. Pure: no I/O, time given."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from itertools import pairwise
from uuid import uuid4

import pytest

from domain.schedule import (
    PROGRAMME_TZ,
    Period,
    Span,
    Timeline,
    add_months,
    due_periods,
    local_day,
    plan,
    spans,
    task_id,
)
from domain.vocabulary import CADENCE_DAYS, Cadence

W, M = Cadence.WEEKLY, Cadence.MONTHLY


def at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=PROGRAMME_TZ)


@pytest.mark.parametrize("cadence", [Cadence.WEEKLY, Cadence.FORTNIGHTLY, Cadence.HALF_MONTHLY])
def test_day_cadences_tile_time_from_the_start_without_gaps(cadence: Cadence) -> None:
    span = Span(cadence, date(2026, 3, 2))
    periods = [span.period(k) for k in range(30)]
    assert periods[0].start == date(2026, 3, 2)
    assert all(p.end - p.start == timedelta(days=CADENCE_DAYS[cadence]) for p in periods)
    assert all(a.end == b.start for a, b in pairwise(periods))
    for p in periods:
        assert span.index_at(p.start) == span.index_at(p.last_day) == periods.index(p)


@pytest.mark.parametrize(("cadence", "months"), [(Cadence.MONTHLY, 1), (Cadence.HALF_YEARLY, 6), (Cadence.YEARLY, 12)])
def test_month_cadences_follow_the_calendar_and_clamp_to_short_months(cadence: Cadence, months: int) -> None:
    span = Span(cadence, date(2024, 1, 31))
    periods = [span.period(k) for k in range(12)]
    assert [p.start for p in periods[:3]] == [
        date(2024, 1, 31),
        add_months(date(2024, 1, 31), months),
        add_months(date(2024, 1, 31), 2 * months),
    ]
    assert all(a.end == b.start for a, b in pairwise(periods))
    for k, p in enumerate(periods):
        assert span.index_at(p.start) == span.index_at(p.last_day) == k
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)  # leap year, clamped
    assert add_months(date(2024, 1, 31), 2) == date(2024, 3, 31)  # back on the anchor day


def test_window_opens_and_closes_at_midnight_china_time() -> None:
    p = Period(W, date(2026, 3, 2), date(2026, 3, 9))
    assert p.opens_at.isoformat() == "2026-03-02T00:00:00+08:00"
    assert p.closes_at.isoformat() == "2026-03-09T00:00:00+08:00"
    assert p.last_day == date(2026, 3, 8)
    # 23:30 UTC on the 8th is already the 9th in China: outside the window.
    assert local_day(datetime.fromisoformat("2026-03-08T23:30:00+00:00")) == date(2026, 3, 9)


def test_the_period_in_progress_and_the_next_are_due() -> None:
    s = spans(date(2026, 3, 2), W)
    due = due_periods(s, date(2026, 3, 11))
    assert [(p.start, p.end) for p in due] == [
        (date(2026, 3, 9), date(2026, 3, 16)),
        (date(2026, 3, 16), date(2026, 3, 23)),
    ]


def test_before_the_pairing_starts_only_its_first_period_is_due() -> None:
    due = due_periods(spans(date(2026, 6, 1), M), date(2026, 3, 11))
    assert [(p.start, p.end) for p in due] == [(date(2026, 6, 1), date(2026, 7, 1))]


def test_a_cadence_change_takes_effect_when_the_period_in_progress_ends() -> None:
    s = spans(date(2026, 3, 2), W, [(date(2026, 3, 11), M)])
    assert s == [Span(W, date(2026, 3, 2), date(2026, 3, 16)), Span(M, date(2026, 3, 16))]
    due = due_periods(s, date(2026, 3, 11))
    assert [(p.cadence, p.start, p.end) for p in due] == [
        (W, date(2026, 3, 9), date(2026, 3, 16)),
        (M, date(2026, 3, 16), date(2026, 4, 16)),
    ]


def test_a_change_before_the_start_replaces_the_cadence() -> None:
    assert spans(date(2026, 6, 1), W, [(date(2026, 3, 11), M)]) == [Span(M, date(2026, 6, 1))]
    assert spans(date(2026, 3, 2), W, [(date(2026, 3, 11), W)]) == [Span(W, date(2026, 3, 2))]


def test_task_ids_are_stable_and_distinct_per_person_period_and_cadence() -> None:
    pairing, a, b = uuid4(), uuid4(), uuid4()
    week = Period(W, date(2026, 3, 2), date(2026, 3, 9))
    assert task_id(pairing, a, week) == task_id(pairing, a, Period(W, date(2026, 3, 2), date(2026, 3, 9)))
    assert (
        len(
            {
                task_id(pairing, a, week),
                task_id(pairing, b, week),
                task_id(pairing, a, Period(M, week.start, date(2026, 4, 2))),
            }
        )
        == 3
    )


def test_plan_wants_two_tasks_per_person_and_nothing_stale_for_a_steady_pairing() -> None:
    a, b = uuid4(), uuid4()
    p = plan(Timeline(starts_on=date(2026, 3, 2), cadence=W, persons=(a, b)), at(date(2026, 3, 11)))
    assert len(p.wanted) == 4 and {person for person, _ in p.wanted} == {a, b}
    assert p.stale == [] and p.cutoffs == {}


def test_plan_for_an_ended_pairing_wants_nothing_and_names_the_open_windows() -> None:
    a = uuid4()
    ended = at(date(2026, 3, 11), 15)
    p = plan(Timeline(starts_on=date(2026, 3, 2), cadence=W, persons=(a,), ended_at=ended), at(date(2026, 3, 12)))
    assert p.wanted == []
    assert p.cutoffs == {a: ended}
    starts = {period.start for person, period, cutoff in p.stale if person == a and cutoff == ended}
    assert {date(2026, 3, 9), date(2026, 3, 16)} <= starts  # the window in progress and the one scheduled ahead


def test_plan_after_a_person_left_stales_their_tasks_only() -> None:
    stays, left = uuid4(), uuid4()
    gone_at = at(date(2026, 3, 10))
    p = plan(
        Timeline(starts_on=date(2026, 3, 2), cadence=W, persons=(stays,), departed={left: gone_at}),
        at(date(2026, 3, 11)),
    )
    assert {person for person, _ in p.wanted} == {stays}
    assert {person for person, _, _ in p.stale} == {left}
    assert p.cutoffs == {left: gone_at}


def test_plan_after_a_cadence_change_stales_the_old_cadence_beyond_the_switch() -> None:
    a = uuid4()
    t = Timeline(starts_on=date(2026, 3, 2), cadence=W, changes=((date(2026, 3, 11), M),), persons=(a,))
    p = plan(t, at(date(2026, 3, 11)))
    stale = [(period.cadence, period.start) for _, period, _ in p.stale]
    assert (W, date(2026, 3, 16)) in stale  # the weekly task scheduled ahead before the change
    assert all(start >= date(2026, 3, 16) and cadence == W for cadence, start in stale)
    assert (M, date(2026, 3, 16)) in [(period.cadence, period.start) for _, period in p.wanted]
