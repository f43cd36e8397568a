"""The supervision view's handlers are keyed by event class, and account for every event of the
aggregates it reads: a renamed, added or removed event class fails here, instead of a view that
silently stops counting it."""

from __future__ import annotations

import dataclasses
import re
from datetime import date
from uuid import uuid4

import pytest

from domain.base import CareAggregate
from domain.emergency import EmergencyReport
from domain.helper import Helper
from domain.org_unit import OrgUnit
from domain.pairing import Pairing
from domain.person import Person
from domain.visit_log import VisitLog
from domain.visit_task import VisitTask
from domain.vocabulary import PersonKind, RiskTag, Sex
from projections.supervision import DERIVED, HANDLERS, IGNORED, SupervisionProjection

READ = (OrgUnit, Person, Helper, Pairing, VisitTask, VisitLog, EmergencyReport)
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def events_of(aggregate: type) -> set[type]:
    """The event classes an aggregate declares (not the bases ``Event`` and ``Created`` that the
    library gives every aggregate)."""
    return {
        value
        for name, value in vars(aggregate).items()
        if isinstance(value, type)
        and issubclass(value, CareAggregate.Event | CareAggregate.Created)
        and name not in ("Event", "Created")
    }


def unaccounted(aggregates: tuple[type, ...]) -> list[str]:
    return sorted(e.__qualname__ for a in aggregates for e in events_of(a) if e not in HANDLERS and e not in IGNORED)


def test_every_event_of_the_aggregates_it_reads_is_handled_or_ignored_on_purpose() -> None:
    assert unaccounted(READ) == []


def test_an_event_class_it_does_not_know_is_named() -> None:
    """What a rename looks like to the view: the old class is gone (the key's import fails) and a
    new one appears, which nobody has said the view handles or ignores."""

    class MarkedMissed(CareAggregate.Event):
        helper_id: str | None

    MarkedMissed.__qualname__ = "VisitTask.MarkedMissed"
    renamed = {e.__name__: e for e in events_of(VisitTask) if e is not VisitTask.Missed}
    task = type("VisitTask", (), {**renamed, "MarkedMissed": MarkedMissed})
    assert unaccounted((task,)) == ["VisitTask.MarkedMissed"]


def test_handlers_are_keyed_by_the_event_classes_of_the_domain_not_by_names() -> None:
    for key in [*HANDLERS, *DERIVED, *IGNORED]:
        assert isinstance(key, type), f"{key!r} is not an event class"
        aggregate = next((a for a in READ if key in events_of(a)), None)
        assert aggregate is not None, f"{key.__qualname__} is not an event of {[a.__name__ for a in READ]}"
    assert not set(HANDLERS) & IGNORED


@pytest.mark.parametrize("event_class", list(HANDLERS), ids=lambda c: c.__qualname__)
def test_every_placeholder_is_a_field_of_the_event_or_derived_from_it(event_class: type) -> None:
    fields = {f.name for f in dataclasses.fields(event_class)} | {"originator_id", "originator_version", "position"}
    derived = set(DERIVED[event_class](_Anything())) if event_class in DERIVED else set()
    for statement in HANDLERS[event_class]:
        missing = set(PLACEHOLDER.findall(statement)) - fields - derived
        assert not missing, f"{event_class.__qualname__}: {sorted(missing)} in {statement}"


def test_an_event_of_another_class_with_the_same_name_changes_nothing() -> None:
    """The look-up is by class: a look-alike (same qualified name, other class) is not the event."""

    class Missed:
        __qualname__ = "VisitTask.Missed"  # what a name-keyed look-up would have matched

    look_alike = Missed()
    assert type(look_alike).__qualname__ == VisitTask.Missed.__qualname__
    SupervisionProjection().apply(_NoCursor(), look_alike, 1)  # a cursor that refuses every statement


class _Anything:
    """Answers any attribute, so that a DERIVED function can be called to learn its keys."""

    def __getattr__(self, name: str) -> object:
        if name in ("cadence",):
            return "weekly"
        if name == "starts_on":
            return date(2026, 1, 5)
        return object()


class _NoCursor:
    def execute(self, *args: object, **kwargs: object) -> None:
        raise AssertionError(f"no statement expected, got {args!r}")


class RecordingCursor:
    """Records the statements a rollup step asks for, instead of running them."""

    def __init__(self) -> None:
        self.run: list[dict[str, object]] = []

    def execute(self, query: object, params: dict[str, object]) -> None:
        self.run.append(params)


def test_rows_created_in_the_batch_are_not_taken_out_of_the_counts_before_it() -> None:
    """A registration's batch has nothing to uncount: the person's row does not exist before it.
    A later event of the same person (a row that exists) is taken out and counted in again."""
    from projections.supervision_rollup import Touched
    from tests.scenario import OrgTree, meta

    village = OrgTree().village
    person = Person.register(
        id=uuid4(), kind=PersonKind.CHILD, name="王小梅", sex=Sex.FEMALE, birth_date=date(2017, 3, 1),
        id_number=None, household="", village=village, risk_tags=[], guardian=None, parents=[],
        absent_children=[], care_agreement_signed_on=None, meta=meta(),
    )  # fmt: skip
    registered = list(person.collect_events())
    person.add_risk_tag(RiskTag.DIBAO, meta())
    tagged = list(person.collect_events())

    for events, uncounted in ((registered, 0), ([*registered, *tagged], 0), (tagged, 2)):
        touched = Touched.of(events)
        before, after = RecordingCursor(), RecordingCursor()
        touched.uncount(before)
        touched.count(after)
        assert len(before.run) == uncounted
        assert [p["persons"] for p in after.run] == [[person.id], [person.id]]
        assert all(p["persons"] == [person.id] and p["sign"] == -1 for p in before.run)


def _event(cls: type, **fields: object) -> object:
    """An event of ``cls`` holding only ``fields`` (what ``Touched.of`` reads)."""
    event = object.__new__(cls)
    for name, value in {"originator_version": 2, **fields}.items():
        object.__setattr__(event, name, value)
    return event


def test_a_person_whose_only_change_is_a_visit_logged_has_only_the_due_day_counted_again() -> None:
    from projections.supervision_rollup import Touched

    person, other, task, pairing = uuid4(), uuid4(), uuid4(), uuid4()
    logged = _event(VisitLog.Recorded, originator_id=uuid4(), originator_version=1, person_id=person)
    completed = _event(VisitTask.Completed, originator_id=task)
    touched = Touched.of([logged, completed])
    assert (touched.persons, touched.visited, touched.visits) == (set(), {person}, {task})

    # Another change of the same person in the batch: the person is counted whole, once.
    tagged = _event(Person.RiskTagAdded, originator_id=person)
    touched = Touched.of([logged, tagged])
    assert (touched.persons, touched.visited) == ({person}, set())

    # A pairing's people are known only to the database: everyone is counted whole.
    added = _event(Pairing.PersonAdded, originator_id=pairing, person_id=other)
    touched = Touched.of([logged, added])
    assert (touched.persons, touched.visited, touched.pairings) == ({person, other}, set(), {pairing})
