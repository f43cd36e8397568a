"""The supervision view (督导): what township and county supervisors are held accountable for.

``SupervisionProjection`` keeps per-thing facts, each row carrying ``org_path`` so any org unit
rolls up everything beneath it (``org_path @> ARRAY[unit]``): people (kind, risk tags, agreement,
status, last visit, and the strictest cadence of the pairings covering them with the time their
next visit is due), which pairings cover whom (``sv_coverage``), helpers' load against
capacity, visit tasks with counts per place, cadence, window and outcome, and emergency reports.
The figures (base numbers, coverage, overdue people, agreement rate, helper load, visit
compliance, response times) are summed from these facts at read time by ``SupervisionView``
(``projections/supervision_view.py``), for any unit and period.

Handlers are keyed by event class (``Pairing.Formed``), as in the other projections: a renamed
or removed event class fails at import, not by a view that silently stops changing; events of
the same aggregates that do not change the view are listed in ``IGNORED``, so a test can insist
that every event of these aggregates is one or the other. Other events are skipped. Every statement is plain SQL over the event's fields: a batch runs in one pipeline.
No names or free text are kept: lists that show names resolve them per page from the event store.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import msgspec
import psycopg
from psycopg import sql

from domain.helper import Helper
from domain.org_unit import OrgUnit
from domain.pairing import Pairing
from domain.person import Person
from domain.visit_log import VisitLog
from projections import supervision_events, supervision_replay
from projections import supervision_rollup as rollup
from projections.batches import FIELD_TYPES, SetStatement, statement_fields
from projections.supervision_events import (
    COUNT_ALL_TASKS,
    COUNT_TASKS,
    EMERGENCY_DDL,
    EMERGENCY_DERIVED,
    EMERGENCY_HANDLERS,
    EMERGENCY_IGNORED,
    UNCOUNT_TASKS,
    VISIT_DDL,
    VISIT_DERIVED,
    VISIT_HANDLERS,
    VISIT_IGNORED,
    VISIT_TASK_STATEMENTS,
    cadence_days,
    china_midnight,
)

# Days, weeks and periods are counted in China Standard Time (defined beside the task facts, which
# the replay shares); the API, web pages and views read it from here.
CHINA = supervision_events.CHINA
TABLES = (
    "sv_units",
    "sv_persons",
    "sv_pairings",
    "sv_coverage",
    "sv_helpers",
    "sv_visits",
    "sv_visit_counts",
    "sv_emergencies",
    *rollup.TABLES,
)

DDL = (
    """
CREATE TABLE IF NOT EXISTS sv_units (
    id uuid PRIMARY KEY, code text NOT NULL, name text NOT NULL, level text NOT NULL, parent_id uuid,
    org_path uuid[] NOT NULL
);
CREATE INDEX IF NOT EXISTS sv_units_parent ON sv_units (parent_id, code);
CREATE TABLE IF NOT EXISTS sv_persons (
    id uuid PRIMARY KEY, kind text NOT NULL, village_id uuid NOT NULL, org_path uuid[] NOT NULL,
    risk_tags text[] NOT NULL, has_guardian boolean NOT NULL, agreement_signed_on date, status text NOT NULL,
    registered_at timestamptz NOT NULL, left_at timestamptz, last_visit_at timestamptz,
    registered_position bigint NOT NULL, cadence_days int, covered_since timestamptz, due_at timestamptz
);
CREATE INDEX IF NOT EXISTS sv_persons_path ON sv_persons USING gin (org_path);
CREATE TABLE IF NOT EXISTS sv_pairings (
    id uuid PRIMARY KEY, shape text NOT NULL, cadence text NOT NULL, cadence_days int NOT NULL, starts_on date NOT NULL,
    ends_on date, status text NOT NULL, org_path uuid[] NOT NULL, person_ids uuid[] NOT NULL
);
CREATE INDEX IF NOT EXISTS sv_pairings_path ON sv_pairings USING gin (org_path);
CREATE TABLE IF NOT EXISTS sv_coverage (
    person_id uuid NOT NULL, pairing_id uuid NOT NULL, cadence text NOT NULL, cadence_days int NOT NULL,
    since timestamptz NOT NULL, PRIMARY KEY (person_id, pairing_id)
);
CREATE INDEX IF NOT EXISTS sv_coverage_pairing ON sv_coverage (pairing_id);
CREATE TABLE IF NOT EXISTS sv_helpers (
    id uuid PRIMARY KEY, role text NOT NULL, org_path uuid[] NOT NULL, capacity int NOT NULL,
    load int NOT NULL DEFAULT 0, assignments jsonb NOT NULL DEFAULT '{}', status text NOT NULL
);
CREATE INDEX IF NOT EXISTS sv_helpers_path ON sv_helpers USING gin (org_path);
"""
    + VISIT_DDL
    + EMERGENCY_DDL
    + rollup.DDL
)


def _set(table: str, assignments: str) -> str:
    return f"UPDATE {table} SET {assignments} WHERE id = %(originator_id)s"


# A covered person is due a visit one cadence (the strictest of their pairings) after their last
# visit, or after they were first covered when never visited; kept on the person's row, so that
# reads need no join. Recomputed for the persons a coverage change touched ({affected}).
_REFRESH = """
UPDATE sv_persons p SET cadence_days = c.days, covered_since = c.since,
       due_at = coalesce(p.last_visit_at, c.since) + make_interval(days => c.days)
FROM (SELECT x.id, min(cv.cadence_days) AS days, min(cv.since) AS since
      FROM unnest({affected}) AS x(id) LEFT JOIN sv_coverage cv ON cv.person_id = x.id GROUP BY x.id) c
WHERE p.id = c.id
"""
_FORMED_PERSONS = _REFRESH.format(affected="%(person_ids)s::uuid[]")
_ONE_PERSON = _REFRESH.format(affected="ARRAY[%(person_id)s::uuid]")
_PAIRING_PERSONS = _REFRESH.format(affected="(SELECT person_ids FROM sv_pairings WHERE id = %(originator_id)s)")
_COVER_FORMED = (
    "INSERT INTO sv_coverage SELECT unnest(%(person_ids)s::uuid[]), %(originator_id)s, %(cadence)s, %(days)s, %(since)s"
)
_COVER_ADDED = (
    "INSERT INTO sv_coverage SELECT %(person_id)s, id, cadence, cadence_days, %(occurred_at)s"
    " FROM sv_pairings WHERE id = %(originator_id)s"
)
HANDLERS: dict[type, list[str]] = {
    OrgUnit.Registered: [
        "INSERT INTO sv_units VALUES (%(originator_id)s, %(code)s, %(name)s, %(level)s, %(parent_id)s, %(path)s)"
    ],
    OrgUnit.Renamed: [_set("sv_units", "name = %(name)s")],
    Person.Registered: [
        (
            "INSERT INTO sv_persons VALUES (%(originator_id)s, %(kind)s, %(village_id)s, %(org_path)s,"
            " %(risk_tags)s, %(has_guardian)s, %(care_agreement_signed_on)s, 'active', %(occurred_at)s, NULL,"
            " NULL, %(position)s)"
        )
    ],
    Person.RiskTagAdded: [
        _set(
            "sv_persons",
            "risk_tags = CASE WHEN %(tag)s = ANY(risk_tags) THEN risk_tags"
            " ELSE array_append(risk_tags, %(tag)s::text) END",
        )
    ],
    Person.RiskTagRemoved: [_set("sv_persons", "risk_tags = array_remove(risk_tags, %(tag)s::text)")],
    Person.GuardianAssigned: [_set("sv_persons", "has_guardian = true")],
    Person.CareAgreementSigned: [_set("sv_persons", "agreement_signed_on = %(signed_on)s")],
    Person.LeftProgramme: [_set("sv_persons", "status = 'left', left_at = %(occurred_at)s")],
    Person.ReturnedToProgramme: [_set("sv_persons", "status = 'active', left_at = NULL")],
    # Erased while still in the programme: they left it then, too.
    Person.Erased: [_set("sv_persons", "status = 'erased', left_at = coalesce(left_at, %(occurred_at)s)")],
    Helper.Registered: [
        (
            "INSERT INTO sv_helpers (id, role, org_path, capacity, status) VALUES (%(originator_id)s,"
            " %(role)s, %(org_path)s, %(capacity)s, 'active')"
        )
    ],
    Helper.CapacityChanged: [_set("sv_helpers", "capacity = %(capacity)s")],
    # Each event states how many people the helper looks after in one pairing: load moves by the difference.
    Helper.PairingAssigned: [
        _set(
            "sv_helpers",
            "load = load - coalesce((assignments ->> %(pairing_key)s)::int, 0) + %(people)s,"
            " assignments = assignments || jsonb_build_object(%(pairing_key)s::text, %(people)s::int)",
        )
    ],
    Helper.PairingReleased: [
        _set(
            "sv_helpers",
            "load = load - coalesce((assignments ->> %(pairing_key)s)::int, 0),"
            " assignments = assignments - %(pairing_key)s::text",
        )
    ],
    Helper.Deactivated: [_set("sv_helpers", "status = 'inactive'")],
    Pairing.Formed: [
        (
            "INSERT INTO sv_pairings VALUES (%(originator_id)s, %(shape)s, %(cadence)s, %(days)s, %(starts_on)s, NULL,"
            " 'active', %(org_path)s, %(person_ids)s)"
        ),
        _COVER_FORMED,
        _FORMED_PERSONS,
    ],
    Pairing.PersonAdded: [
        _set("sv_pairings", "person_ids = array_append(person_ids, %(person_id)s::uuid)"),
        _COVER_ADDED,
        _ONE_PERSON,
    ],
    Pairing.PersonRemoved: [
        _set("sv_pairings", "person_ids = array_remove(person_ids, %(person_id)s::uuid)"),
        "DELETE FROM sv_coverage WHERE pairing_id = %(originator_id)s AND person_id = %(person_id)s",
        _ONE_PERSON,
    ],
    Pairing.CadenceChanged: [
        _set("sv_pairings", "cadence = %(cadence)s, cadence_days = %(days)s"),
        "UPDATE sv_coverage SET cadence = %(cadence)s, cadence_days = %(days)s WHERE pairing_id = %(originator_id)s",
        _PAIRING_PERSONS,
    ],
    Pairing.Ended: [
        _set("sv_pairings", "status = 'ended', ends_on = %(ends_on)s"),
        "DELETE FROM sv_coverage WHERE pairing_id = %(originator_id)s",
        _PAIRING_PERSONS,
    ],
    **VISIT_HANDLERS,
    **EMERGENCY_HANDLERS,
}
# Values kept in another form than the event's: whether a guardian is named (not who), pairing
# ids as jsonb keys, cadences in days, a pairing's start as an instant in China time.
DERIVED: dict[type, Callable[[Any], dict[str, Any]]] = {
    Person.Registered: lambda e: {"has_guardian": bool(e.guardian)},
    Helper.PairingAssigned: lambda e: {"pairing_key": str(e.pairing_id)},
    Helper.PairingReleased: lambda e: {"pairing_key": str(e.pairing_id)},
    Pairing.Formed: lambda e: {"days": cadence_days(e.cadence), "since": china_midnight(e.starts_on)},
    Pairing.CadenceChanged: lambda e: {"days": cadence_days(e.cadence)},
    **VISIT_DERIVED,
    **EMERGENCY_DERIVED,
}
# All the view reads of an event: its statements' placeholders, the fields DERIVED reads, and the
# people a pairing's or a visit log's event touches (``rollup.Touched``, ``_rows_of_plain``).
FIELDS = statement_fields(
    HANDLERS,
    {
        Person.Registered: ("guardian",),
        Helper.PairingAssigned: ("pairing_id",),
        Helper.PairingReleased: ("pairing_id",),
        Pairing.Formed: ("cadence", "starts_on", "person_ids"),
        Pairing.CadenceChanged: ("cadence",),
        Pairing.PersonAdded: ("person_id",),
        Pairing.PersonRemoved: ("person_id",),
        VisitLog.Recorded: ("person_id",),
    },
)

# Events of the same aggregates that change nothing the view holds (names and household are
# personal and never kept; group membership and a pairing's helpers are not supervision figures).
IGNORED: frozenset[type] = frozenset({
    Person.RegistrationCorrected, Person.PairingJoined, Person.PairingLeft, Helper.JoinedGroup, Helper.LeftGroup,
    Pairing.HelperAdded, Pairing.HelperRemoved, *VISIT_IGNORED, *EMERGENCY_IGNORED,
})  # fmt: skip


# A batch's writes, as one statement per statement kind and round (``_write_in_rounds``), for the
# event classes whose statements each touch one row of one table and read no other row the batch
# may write: by table and the event field naming the row. A task's counts are kept once per batch
# (``UNCOUNT_TASKS``, ``COUNT_TASKS``). A pairing's statements read and write its own row and its
# people's rows and coverage: they run one by one, in the round after every earlier write of those
# rows; a pairing's new cadence or end touches people the batch does not know (those of the
# pairing), so it runs after every earlier write, and every later write after it.
def _table_of(statement: str) -> str:
    return statement.split()[2 if statement.startswith("INSERT") else 1]


def _row_of(statement: str) -> str:
    where = statement.rpartition(" WHERE id = %(")[2]
    return where.partition(")s")[0] if statement.startswith("UPDATE") else "originator_id"


_PLAIN: frozenset[type] = frozenset(
    {Pairing.Formed, Pairing.PersonAdded, Pairing.PersonRemoved, Pairing.CadenceChanged, Pairing.Ended}
)
BATCHED: dict[type, list[tuple[str, str, SetStatement]]] = {
    cls: [
        (_table_of(statement), _row_of(statement), SetStatement(statement))
        for statement in ([VISIT_TASK_STATEMENTS[cls]] if cls in VISIT_TASK_STATEMENTS else statements)
    ]
    for cls, statements in HANDLERS.items()
    if cls not in _PLAIN
}


class SupervisionProjection:
    """Writes the ``sv_*`` tables; events without a handler are skipped. A batch first takes the
    rows it will change out of the rollups, applies its events, then counts those rows again."""

    name = "supervision"
    tables = TABLES
    # 2: names and free-text reasons left the view; 3: rollups per org unit; 4: sv_visits keeps
    # room on its pages (fillfactor 70) for its rows' updates, so that they are HOT (no new index
    # entries; a visit's row is updated when it is claimed, completed, missed or cancelled)
    schema_version = 4

    def create_tables(self, cur: psycopg.Cursor[Any]) -> None:
        cur.execute(DDL)

    def reset(self, cur: psycopg.Cursor[Any]) -> None:
        cur.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, TABLES))))

    def handles(self, event_class: type) -> bool:
        return event_class in HANDLERS

    def fields(self, event_class: type) -> frozenset[str] | None:
        return FIELDS.get(event_class)

    def apply(self, cur: psycopg.Cursor[Any], event: Any, position: int) -> None:
        self.apply_batch(cur, [(position, event)])

    def apply_batch(self, cur: psycopg.Cursor[Any], events: Sequence[tuple[int, Any]]) -> None:
        events = [(position, event) for position, event in events if type(event) in HANDLERS]
        if not events:
            return
        touched = rollup.Touched.of(event for _, event in events)
        tasks = list(touched.visits)
        with cur.connection.pipeline():
            touched.uncount(cur)
            if tasks:
                cur.execute(UNCOUNT_TASKS, (tasks,))
            _write_in_rounds(cur, events)
            if tasks:
                cur.execute(COUNT_TASKS, (tasks,))
            touched.count(cur)

    def rebuild_batch(self, cur: psycopg.Cursor[Any], events: Sequence[tuple[int, Any]]) -> None:
        """A batch of a rebuild's replay into empty tables: each event folded into the rows its
        statements write, kept in memory (``projections/supervision_replay.py``), the counts left
        for ``finish_rebuild`` to make once from the finished rows (instead of moved by every
        batch)."""
        supervision_replay.replay_batch(cur, events, _task_write)

    def finish_rebuild(self, cur: psycopg.Cursor[Any]) -> None:
        """After ``rebuild_batch`` replayed the log: every row written once, then the counts of
        every row at once (what the batches' own moves add up to); later batches move them as usual."""
        supervision_replay.finish(cur)
        with cur.connection.pipeline():
            rollup.count_all(cur)
            cur.execute(COUNT_ALL_TASKS)

    def apply_one(self, cur: psycopg.Cursor[Any], event: Any, position: int) -> None:
        """One event by its plain statements (the task counts moved by the event's own
        statements): what a batch must equal."""
        if type(event) not in HANDLERS:
            return
        touched = rollup.Touched.of([event])
        with cur.connection.pipeline():
            touched.uncount(cur)
            self._apply(cur, event, position)
            touched.count(cur)

    def _apply(self, cur: psycopg.Cursor[Any], event: Any, position: int) -> None:
        _apply_plain(cur, event, position)


def _apply_plain(cur: psycopg.Cursor[Any], event: Any, position: int) -> None:
    statements = HANDLERS.get(type(event))
    if statements is None:
        return
    params = _params(event, position)
    # Only the placeholders in a statement are sent: the event's personal fields are not.
    for statement in statements:
        cur.execute(statement, params)


def _task_write(event: Any, position: int) -> tuple[Any, SetStatement, dict[str, Any]]:
    """A visit task's event as a write of its row (``write_batched``): its task's statement."""
    return event.originator_id, BATCHED[type(event)][0][2], _params(event, position)


def _params(event: Any, position: int) -> dict[str, Any]:
    params = {**vars(event), "position": position}
    if derive := DERIVED.get(type(event)):
        params.update(derive(event))
    return params


def _rows_of_plain(event: Any) -> list[Hashable] | None:
    """The rows a pairing's statements read or write, or None when not known from the event."""
    if isinstance(event, Pairing.Formed):
        persons = list(event.person_ids)
    elif isinstance(event, Pairing.PersonAdded | Pairing.PersonRemoved):
        persons = [event.person_id]
    else:
        return None
    return [("sv_pairings", event.originator_id)] + [(t, p) for p in persons for t in ("sv_persons", "sv_coverage")]


def _write_in_rounds(cur: psycopg.Cursor[Any], events: Sequence[tuple[int, Any]]) -> None:
    """Equivalent to the events' statements one by one, in order: a write goes in the round after
    the last one that wrote any of its rows (and after the last write of unknown rows), so that
    the writes of a row keep their order and the writes within a round touch distinct rows, and
    may run in any order; a round runs its one-row statements one statement per kind (the rows
    as one JSON array), then its pairings' statements."""
    rounds: list[tuple[dict[SetStatement, list[dict[str, Any]]], list[tuple[int, Any]]]] = []
    seen: dict[Hashable, int] = {}
    floor = 0  # no write before the round after the last write of unknown rows

    def round_for(rows: list[Hashable] | None) -> int:
        nonlocal floor
        n = len(rounds) if rows is None else max([floor, *(seen.get(r, 0) for r in rows)])
        if n == len(rounds):
            rounds.append(({}, []))
        if rows is None:
            floor = n + 1
        else:
            for r in rows:
                seen[r] = n + 1
        return n

    # A person's row whose last write so far is a visit log's: that write's parameters. A later
    # visit log of theirs joins it (the latest visit of the two; the same row as two writes in
    # turn) instead of taking a round of its own: a batch's logs of one person, one statement.
    logged: dict[Hashable, dict[str, Any]] = {}
    for position, event in events:
        cls = type(event)
        if cls in BATCHED:
            params = _params(event, position)
            if cls is VisitLog.Recorded:
                earlier = logged.get(("sv_persons", params["person_id"]))
                if earlier is not None:
                    earlier["visited_at"] = max(earlier["visited_at"], params["visited_at"])
                    continue
            for table, row, statement in BATCHED[cls]:
                key = (table, params[row])
                # round_for([key]), inline: most events write one row of one table.
                n = max(seen.get(key, 0), floor)
                if n == len(rounds):
                    rounds.append(({}, []))
                seen[key] = n + 1
                rounds[n][0].setdefault(statement, []).append(params)
                if cls is VisitLog.Recorded:
                    logged[key] = params
                else:
                    logged.pop(key, None)
        else:
            rows = _rows_of_plain(event)
            if rows is None:
                logged.clear()
            else:
                for key in rows:
                    logged.pop(key, None)
            rounds[round_for(rows)][1].append((position, event))
    for by_statement, plain in rounds:
        for statement, params_seq in by_statement.items():
            cur.execute(statement.many, (statement.rows(params_seq),))
        formed = [_params(event, position) for position, event in plain if type(event) is Pairing.Formed]
        if formed:
            rows = msgspec.json.encode([{f"_{k}": p[k] for k in _FORMED_KEYS} for p in formed]).decode()
            for statement in _FORMED_MANY:
                cur.execute(statement, (rows,))
        for position, event in plain:
            if type(event) is not Pairing.Formed:
                _apply_plain(cur, event, position)


# New pairings of one round (their people distinct): their rows, their people's coverage, and
# those people's cadence and due time, as three statements over the pairings as one JSON array.
_FORMED = SetStatement(HANDLERS[Pairing.Formed][0], {**FIELD_TYPES, "days": "int"})
_FORMED_KEYS = (*_FORMED.names, "since")
_FORMED_ROWS = "json_to_recordset(%s::json) AS u(_originator_id uuid, _person_ids uuid[], _cadence text, _days int,"
_FORMED_MANY = (
    _FORMED.many,
    (
        "INSERT INTO sv_coverage SELECT unnest(u._person_ids), u._originator_id, u._cadence, u._days, u._since"
        f" FROM {_FORMED_ROWS} _since timestamptz)"
    ),
    _REFRESH.format(affected=f"ARRAY(SELECT unnest(u._person_ids) FROM {_FORMED_ROWS} _since timestamptz))"),
)
