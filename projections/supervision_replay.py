"""The supervision view's rebuild replay in memory (see projections/replay.py): each event folded
into the rows its statements (``projections/supervision.py``'s HANDLERS) would write, and every
row written once by binary COPY at the end of the replay, before the counts are made from them.

Units, people, pairings, coverage, helpers and emergency reports are kept for the whole replay:
they grow with the programme's people and helpers (and its reports), not with time, and a
person's row changes with every visit logged and every pairing formed, changed or ended. Visit
tasks grow with time and each changes only its own row, to values of its event's (no statement
of a task reads what its row held): a task is kept for ``REPLAY_WINDOW`` batches after its last
event, then written by COPY; a later event of a task written goes through the live batches'
statement, which meets no row kept in memory.

A person's ``due_at`` is ``coalesce(last_visit_at, covered_since) + cadence_days`` after every
statement that writes any of the four (a visit log sets the last visit and the due time from it;
a coverage change sets the cadence, the coverage's start and the due time from them), so it is
made from the other three when the people are written: in Python when the session's time zone
is UTC (a day is then 24 hours), otherwise by PostgreSQL's own arithmetic through a temporary
table (``make_interval(days => ...)`` in the session's time zone, as the statements).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg

from domain.emergency import EmergencyReport
from domain.helper import Helper
from domain.org_unit import OrgUnit
from domain.pairing import Pairing
from domain.person import Person
from domain.visit_log import VisitLog
from domain.visit_task import VisitTask
from projections.batches import write_batched
from projections.replay import (
    Paths,
    ReplayRows,
    assignment_folds,
    copy_rows,
    id_bytes,
    id_int,
    ids_array,
    insert_row,
    jsonb,
    text_array,
)
from projections.supervision_events import cadence_days, china_midnight

# How many batches a replayed visit task stays in memory after its last event (as for the task
# board's, projections/visit_tasks.py).
REPLAY_WINDOW = 4

# Persons' columns, in the table's order; ``due_at`` (the last) is made from three of them.
_PERSON_COLUMNS = (
    "id", "kind", "village_id", "org_path", "risk_tags", "has_guardian", "agreement_signed_on", "status",
    "registered_at", "left_at", "last_visit_at", "registered_position", "cadence_days", "covered_since",
)  # fmt: skip
_PERSON_TYPES = (
    "uuid", "text", "uuid", "uuid[]", "text[]", "bool", "date", "text", "timestamptz", "timestamptz", "timestamptz",
    "int8", "int4", "timestamptz",
)  # fmt: skip
(P_ID, P_KIND, P_VILLAGE, P_PATH, P_TAGS, P_GUARDIAN, P_AGREEMENT, P_STATUS, P_REGISTERED, P_LEFT, P_LAST,
 P_POSITION, P_DAYS, P_SINCE) = range(14)  # fmt: skip
# Session time zones in which ``timestamptz + make_interval(days => n)`` is n times 24 hours.
UTC_ZONES = frozenset({"UTC", "Etc/UTC", "UCT", "Etc/UCT", "GMT", "Etc/GMT", "Universal", "Etc/Universal", "Zulu",
                       "Etc/Zulu", "Etc/GMT0", "Etc/GMT+0", "Etc/GMT-0", "GMT0", "Greenwich", "Etc/Greenwich"})  # fmt: skip


def _due(row: tuple[Any, ...]) -> datetime | None:
    """``coalesce(last_visit_at, covered_since) + make_interval(days => cadence_days)`` of a
    person's row as the COPY takes it (in a zone of UTC_ZONES)."""
    start = row[P_LAST] if row[P_LAST] is not None else row[P_SINCE]
    days = row[P_DAYS]
    return None if start is None or days is None else start + timedelta(days=days)


class Rows:
    """What a supervision replay holds between its batches."""

    def __init__(self) -> None:
        self.batch = 0
        # Every table's rows by id (``UUID.int``), as lists of the table's columns, ids as ints,
        # org paths in binary (``Paths``), lists of ids and tags as tuples.
        self.units: dict[int, list[Any]] = {}
        self.persons: dict[int, list[Any]] = {}
        self.pairings: dict[int, list[Any]] = {}
        # sv_coverage: [cadence, cadence_days, since] by person then pairing, and the same lists
        # by pairing then person
        self.covering: dict[int, dict[int, list[Any]]] = {}
        self.covered: dict[int, dict[int, list[Any]]] = {}
        self.helpers: dict[int, list[Any]] = {}
        self.emergencies: dict[int, list[Any]] = {}
        # visit tasks by id: their row (sv_visits' columns), then the batch of their last event
        self.visits: dict[int, list[Any]] = {}
        self.paths = Paths()

    # ---- coverage ---------------------------------------------------------------------------

    def cover(self, person: int, pairing: int, cadence: str, days: int, since: datetime) -> None:
        covers = self.covering.setdefault(person, {})
        if pairing in covers:
            raise ValueError(f"sv_coverage: a second row of ({person}, {pairing}) (duplicate key)")
        covers[pairing] = self.covered.setdefault(pairing, {})[person] = [cadence, days, since]

    def uncover(self, person: int, pairing: int) -> None:
        if self.covering.get(person, {}).pop(pairing, None) is not None:
            del self.covered[pairing][person]

    def refresh(self, persons: Sequence[int]) -> None:
        """``_REFRESH``: each person's strictest cadence and earliest coverage start, and the
        due time from them (made at the end, see the module's notes)."""
        for person in dict.fromkeys(persons):
            row = self.persons.get(person)
            if row is None:
                continue
            covers = self.covering.get(person, {}).values()
            if covers:
                row[P_DAYS] = min(c[1] for c in covers)
                row[P_SINCE] = min(c[2] for c in covers)
            else:
                row[P_DAYS] = row[P_SINCE] = None

    # ---- the end ----------------------------------------------------------------------------

    def write(self, cur: psycopg.Cursor[Any]) -> None:
        copy_rows(
            cur, "sv_units", ("id", "code", "name", "level", "parent_id", "org_path"),
            ("uuid", "text", "text", "text", "uuid", "uuid[]"),
            ((r[0].to_bytes(16), *r[1:4], id_bytes(r[4]), r[5]) for r in self.units.values()),
        )  # fmt: skip
        people = (
            (r[0].to_bytes(16), r[1], r[2].to_bytes(16), r[3], text_array(r[4]), *r[5:]) for r in self.persons.values()
        )
        zone = cur.execute("SHOW TimeZone").fetchone()
        if zone is not None and zone[0] in UTC_ZONES:
            # A day is 24 hours in the session's zone: the due time is made here, as PostgreSQL would.
            copy_rows(cur, "sv_persons", (*_PERSON_COLUMNS, "due_at"), (*_PERSON_TYPES, "timestamptz"),
                      ((*row, _due(row)) for row in people))  # fmt: skip
        else:
            # Through a table of this transaction's, so that the due time is made by PostgreSQL's
            # own arithmetic as the statements make it.
            cur.execute(
                "CREATE TEMPORARY TABLE sv_persons_replayed ON COMMIT DROP AS SELECT"
                f" {', '.join(_PERSON_COLUMNS)} FROM sv_persons WITH NO DATA"
            )
            copy_rows(cur, "sv_persons_replayed", _PERSON_COLUMNS, _PERSON_TYPES, people)
            cur.execute(
                f"INSERT INTO sv_persons ({', '.join(_PERSON_COLUMNS)}, due_at) SELECT {', '.join(_PERSON_COLUMNS)},"
                " coalesce(last_visit_at, covered_since) + make_interval(days => cadence_days)"
                " FROM sv_persons_replayed"
            )
            cur.execute("DROP TABLE sv_persons_replayed")
        copy_rows(
            cur, "sv_pairings",
            ("id", "shape", "cadence", "cadence_days", "starts_on", "ends_on", "status", "org_path", "person_ids"),
            ("uuid", "text", "text", "int4", "date", "date", "text", "uuid[]", "uuid[]"),
            ((r[0].to_bytes(16), *r[1:8], ids_array(r[8])) for r in self.pairings.values()),
        )  # fmt: skip
        copy_rows(
            cur, "sv_coverage", ("person_id", "pairing_id", "cadence", "cadence_days", "since"),
            ("uuid", "uuid", "text", "int4", "timestamptz"),
            (
                (person.to_bytes(16), pairing.to_bytes(16), *c)
                for person, covers in self.covering.items()
                for pairing, c in covers.items()
            ),
        )  # fmt: skip
        copy_rows(
            cur, "sv_helpers", ("id", "role", "org_path", "capacity", "load", "assignments", "status"),
            ("uuid", "text", "uuid[]", "int4", "int4", "jsonb", "text"),
            ((r[0].to_bytes(16), r[1], r[2], r[3], r[4], jsonb(r[5]), r[6]) for r in self.helpers.values()),
        )  # fmt: skip
        copy_rows(
            cur, "sv_emergencies",
            ("id", "person_id", "org_path", "category", "severity", "reported_at", "deadline", "acknowledged_at",
             "resolved_at", "escalations", "level", "status", "duplicate_of"),
            ("uuid", "uuid", "uuid[]", "text", "text", "timestamptz", "timestamptz", "timestamptz", "timestamptz",
             "int4", "int4", "text", "uuid"),
            ((r[0].to_bytes(16), id_bytes(r[1]), *r[2:12], id_bytes(r[12]))
             for r in self.emergencies.values()),
        )  # fmt: skip
        self.write_visits(cur, list(self.visits.values()))

    def write_visits(self, cur: psycopg.Cursor[Any], rows: list[list[Any]]) -> None:
        copy_rows(
            cur, "sv_visits",
            ("id", "person_id", "pairing_id", "org_path", "cadence", "mode", "due_from", "due_by", "status",
             "visited_at", "late"),
            ("uuid", "uuid", "uuid", "uuid[]", "text", "text", "timestamptz", "timestamptz", "text", "timestamptz",
             "bool"),
            ((r[0].to_bytes(16), r[1].to_bytes(16), r[2].to_bytes(16), *r[3:11]) for r in rows),
        )  # fmt: skip


REPLAYS: ReplayRows[Rows] = ReplayRows(Rows)


def replay_batch(
    cur: psycopg.Cursor[Any],
    events: Sequence[tuple[int, Any]],
    written: Callable[[Any, int], tuple[Any, Any, dict[str, Any]]],
) -> None:
    """Fold a batch into the replay's rows; the events of visit tasks already written go through
    their statements (``written(event, position)``: the write ``write_batched`` takes)."""
    rows = REPLAYS.of(cur)
    rows.batch += 1
    batch, visits, later = rows.batch, rows.visits, []
    for position, event in events:
        cls = type(event)
        if cls in _VISIT_CHANGES:
            row = visits.get(event.originator_id.int)
            if row is None:
                later.append(written(event, position))
            else:
                _VISIT_CHANGES[cls](row, event)
                row[11] = batch
            continue
        fold = REPLAY.get(cls)
        if fold is not None:
            fold(rows, event, position)
    if later:
        write_batched(cur, later)
    settled = [i for i, row in visits.items() if row[11] <= batch - REPLAY_WINDOW]
    if settled:
        rows.write_visits(cur, [visits.pop(i) for i in settled])


def finish(cur: psycopg.Cursor[Any]) -> None:
    """Every row of the replay, once (before the counts are made from them)."""
    rows = REPLAYS.take(cur)
    if rows is not None:
        rows.write(cur)


# ---- what each event's statements do to the rows ------------------------------------------------


def _unit_registered(rows: Rows, e: Any, position: int) -> None:
    insert_row(
        rows.units,
        "sv_units",
        [e.originator_id.int, e.code, e.name, e.level, id_int(e.parent_id), rows.paths.of(e.path)],
    )


def _unit_renamed(rows: Rows, e: Any, position: int) -> None:
    if (row := rows.units.get(e.originator_id.int)) is not None:
        row[2] = e.name


def _person_registered(rows: Rows, e: Any, position: int) -> None:
    insert_row(
        rows.persons,
        "sv_persons",
        [e.originator_id.int, e.kind, e.village_id.int, rows.paths.of(e.org_path), tuple(e.risk_tags), bool(e.guardian),
         e.care_agreement_signed_on, "active", e.occurred_at, None, None, position, None, None],
    )  # fmt: skip


def _own_row(table: str) -> Callable[[Callable[[list[Any], Any], None]], Callable[[Rows, Any, int], None]]:
    """The fold of an event into its aggregate's own row of ``table`` (an attribute of Rows) by
    ``change``; an event of an aggregate with no row there changes nothing, as its statement."""

    def folding(change: Callable[[list[Any], Any], None]) -> Callable[[Rows, Any, int], None]:
        def fold(rows: Rows, e: Any, position: int) -> None:
            if (row := getattr(rows, table).get(e.originator_id.int)) is not None:
                change(row, e)

        return fold

    return folding


_person = _own_row("persons")


def _tag_added(row: list[Any], e: Any) -> None:
    if e.tag not in row[P_TAGS]:
        row[P_TAGS] = (*row[P_TAGS], e.tag)


def _tag_removed(row: list[Any], e: Any) -> None:
    row[P_TAGS] = tuple([tag for tag in row[P_TAGS] if tag != e.tag])


def _guardian(row: list[Any], e: Any) -> None:
    row[P_GUARDIAN] = True


def _agreement(row: list[Any], e: Any) -> None:
    row[P_AGREEMENT] = e.signed_on


def _left(row: list[Any], e: Any) -> None:
    row[P_STATUS], row[P_LEFT] = "left", e.occurred_at


def _returned(row: list[Any], e: Any) -> None:
    row[P_STATUS], row[P_LEFT] = "active", None


def _erased(row: list[Any], e: Any) -> None:
    row[P_STATUS] = "erased"
    if row[P_LEFT] is None:
        row[P_LEFT] = e.occurred_at


def _visit_logged(rows: Rows, e: Any, position: int) -> None:
    if (row := rows.persons.get(e.person_id.int)) is not None:
        last = row[P_LAST]
        if last is None or e.visited_at > last:
            row[P_LAST] = e.visited_at


def _helper_registered(rows: Rows, e: Any, position: int) -> None:
    insert_row(
        rows.helpers,
        "sv_helpers",
        [e.originator_id.int, e.role, rows.paths.of(e.org_path), e.capacity, 0, {}, "active"],
    )


_helper = _own_row("helpers")


def _capacity(row: list[Any], e: Any) -> None:
    row[3] = e.capacity


_assigned, _released = assignment_folds(4, 5)


def _deactivated(row: list[Any], e: Any) -> None:
    row[6] = "inactive"


def _pairing_formed(rows: Rows, e: Any, position: int) -> None:
    days, since = cadence_days(e.cadence), china_midnight(e.starts_on)
    person_ids, pairing = tuple([p.int for p in e.person_ids]), e.originator_id.int
    insert_row(
        rows.pairings, "sv_pairings",
        [pairing, e.shape, e.cadence, days, e.starts_on, None, "active", rows.paths.of(e.org_path), person_ids],
    )  # fmt: skip
    for person in person_ids:
        rows.cover(person, pairing, e.cadence, days, since)
    rows.refresh(person_ids)


def _person_added(rows: Rows, e: Any, position: int) -> None:
    pairing, person = rows.pairings.get(e.originator_id.int), e.person_id.int
    if pairing is not None:
        pairing[8] = (*pairing[8], person)
        rows.cover(person, pairing[0], pairing[2], pairing[3], e.occurred_at)
    rows.refresh([person])


def _person_removed(rows: Rows, e: Any, position: int) -> None:
    pairing, person = rows.pairings.get(e.originator_id.int), e.person_id.int
    if pairing is not None:
        pairing[8] = tuple([p for p in pairing[8] if p != person])
    rows.uncover(person, e.originator_id.int)
    rows.refresh([person])


def _cadence_changed(rows: Rows, e: Any, position: int) -> None:
    days = cadence_days(e.cadence)
    pairing = rows.pairings.get(e.originator_id.int)
    if pairing is not None:
        pairing[2], pairing[3] = e.cadence, days
    for cover in rows.covered.get(e.originator_id.int, {}).values():  # its rows in sv_coverage
        cover[0], cover[1] = e.cadence, days
    rows.refresh([] if pairing is None else pairing[8])  # the people its row names


def _ended(rows: Rows, e: Any, position: int) -> None:
    pairing, pairing_id = rows.pairings.get(e.originator_id.int), e.originator_id.int
    if pairing is not None:
        pairing[6], pairing[5] = "ended", e.ends_on
    for person in list(rows.covered.get(pairing_id, {})):
        rows.uncover(person, pairing_id)
    rows.refresh([] if pairing is None else pairing[8])


def _scheduled(rows: Rows, e: Any, position: int) -> None:
    task = e.originator_id.int
    if task in rows.visits:
        raise ValueError(f"sv_visits: a second row of id {e.originator_id} (duplicate key)")
    rows.visits[task] = [
        task, e.person_id.int, e.pairing_id.int, rows.paths.of(e.org_path), e.cadence, e.mode, e.opens_at, e.closes_at,
        "open", None, False, rows.batch,
    ]  # fmt: skip


def _task_completed(row: list[Any], e: Any) -> None:
    row[8], row[9], row[10] = "completed", e.occurred_at, e.late


def _task_missed(row: list[Any], e: Any) -> None:
    row[8] = "missed"


def _task_cancelled(row: list[Any], e: Any) -> None:
    row[8] = "cancelled"


# A visit task's events after it was scheduled: what each does to its row (sv_visits).
_VISIT_CHANGES: dict[type, Callable[[list[Any], Any], None]] = {
    VisitTask.Completed: _task_completed,
    VisitTask.Missed: _task_missed,
    VisitTask.Cancelled: _task_cancelled,
}


def _report_reported(rows: Rows, e: Any, position: int) -> None:
    insert_row(
        rows.emergencies, "sv_emergencies",
        [e.originator_id.int, id_int(e.person_id), rows.paths.of(e.org_path), e.category, e.severity,
         e.occurred_at, None, None, None, 0, 0, "reported", None],
    )  # fmt: skip


_report = _own_row("emergencies")


def _routed(row: list[Any], e: Any) -> None:
    if row[11] in ("reported", "escalated"):
        row[11] = "routed"
    row[6] = e.deadline


def _acknowledged(row: list[Any], e: Any) -> None:
    row[11] = "acknowledged"
    if row[7] is None:
        row[7] = e.occurred_at


def _escalated(row: list[Any], e: Any) -> None:
    row[11], row[10], row[9] = "escalated", e.to_level, row[9] + 1


def _resolved(row: list[Any], e: Any) -> None:
    row[11], row[8] = "resolved", e.occurred_at


def _reopened(row: list[Any], e: Any) -> None:
    row[11], row[8] = "acknowledged", None


def _closed(row: list[Any], e: Any) -> None:
    row[11] = "closed"


def _duplicate(row: list[Any], e: Any) -> None:
    row[12] = id_int(e.duplicate_of)


# By event class, what its statements do to the rows kept (a visit task's later events: _VISIT_CHANGES).
REPLAY: dict[type, Callable[[Rows, Any, int], None]] = {
    OrgUnit.Registered: _unit_registered,
    OrgUnit.Renamed: _unit_renamed,
    Person.Registered: _person_registered,
    Person.RiskTagAdded: _person(_tag_added),
    Person.RiskTagRemoved: _person(_tag_removed),
    Person.GuardianAssigned: _person(_guardian),
    Person.CareAgreementSigned: _person(_agreement),
    Person.LeftProgramme: _person(_left),
    Person.ReturnedToProgramme: _person(_returned),
    Person.Erased: _person(_erased),
    Helper.Registered: _helper_registered,
    Helper.CapacityChanged: _helper(_capacity),
    Helper.PairingAssigned: _helper(_assigned),
    Helper.PairingReleased: _helper(_released),
    Helper.Deactivated: _helper(_deactivated),
    Pairing.Formed: _pairing_formed,
    Pairing.PersonAdded: _person_added,
    Pairing.PersonRemoved: _person_removed,
    Pairing.CadenceChanged: _cadence_changed,
    Pairing.Ended: _ended,
    VisitTask.Scheduled: _scheduled,
    VisitLog.Recorded: _visit_logged,
    EmergencyReport.Reported: _report_reported,
    EmergencyReport.Routed: _report(_routed),
    EmergencyReport.Acknowledged: _report(_acknowledged),
    EmergencyReport.Escalated: _report(_escalated),
    EmergencyReport.Resolved: _report(_resolved),
    EmergencyReport.Reopened: _report(_reopened),
    EmergencyReport.Closed: _report(_closed),
    EmergencyReport.LinkedAsDuplicate: _report(_duplicate),
}
