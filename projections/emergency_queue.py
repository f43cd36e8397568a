"""The responders' queue of emergency reports: one row per report with its status, level,
current acknowledgement deadline and who has it, for "my area's open reports, oldest first".

``EmergencyQueueProjection`` writes ``emergency_queue`` from the EmergencyReport events;
``EmergencyQueueView`` reads it. Descriptions, locations and notes stay in the event store: the
queue holds ids, categories and times only. ``org_path`` (GIN indexed) scopes a list to an area.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from domain.emergency import EmergencyReport
from projections.batches import set_statements, statement_fields, statement_writes, write_batched
from projections.scope import Area, ListScope

TABLES = ("emergency_queue",)
DDL = """
CREATE TABLE IF NOT EXISTS emergency_queue (
    id uuid PRIMARY KEY, category text NOT NULL, severity text NOT NULL, status text NOT NULL,
    level int NOT NULL, person_id uuid, village_id uuid, township_id uuid NOT NULL, county_id uuid NOT NULL,
    org_path uuid[] NOT NULL, reporter_id text, source text NOT NULL,
    reported_at timestamptz NOT NULL, recorded_at timestamptz NOT NULL,
    routed_at timestamptz, deadline timestamptz, responder_ids text[] NOT NULL DEFAULT '{}',
    acknowledged_by text, acknowledged_at timestamptz, actions int NOT NULL DEFAULT 0,
    escalations int NOT NULL DEFAULT 0, resolved_at timestamptz, outcome text, duplicate_of uuid,
    version int NOT NULL, registered_position bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS emergency_queue_path ON emergency_queue USING gin (org_path);
CREATE INDEX IF NOT EXISTS emergency_queue_open ON emergency_queue (reported_at, id)
    WHERE status IN ('reported', 'routed', 'escalated', 'acknowledged');
"""

OPEN = ("reported", "routed", "escalated", "acknowledged")
E = EmergencyReport


def _update(assignments: str) -> str:
    return f"UPDATE emergency_queue SET {assignments}, version = %(originator_version)s WHERE id = %(originator_id)s"


STATEMENTS: dict[type, str] = {
    E.Reported: "INSERT INTO emergency_queue (id, category, severity, status, level, person_id, village_id, township_id,"
    " county_id, org_path, reporter_id, source, reported_at, recorded_at, version, registered_position) VALUES"
    " (%(originator_id)s, %(category)s, %(severity)s, 'reported', 0, %(person_id)s, %(village_id)s, %(township_id)s,"
    " %(county_id)s, %(org_path)s, %(actor_id)s, %(source)s, %(occurred_at)s, %(timestamp)s, %(originator_version)s,"
    " %(position)s) ON CONFLICT (id) DO NOTHING",
    E.Routed: _update(
        "status = CASE WHEN status IN ('reported', 'escalated') THEN 'routed' ELSE status END,"
        " routed_at = %(occurred_at)s, deadline = %(deadline)s, responder_ids = %(responder_ids)s"
    ),
    E.Acknowledged: _update(
        "status = 'acknowledged', acknowledged_by = %(actor_id)s, acknowledged_at = %(occurred_at)s"
    ),
    E.ActionRecorded: _update("actions = actions + 1"),
    E.Escalated: _update(
        "status = 'escalated', level = %(to_level)s, escalations = escalations + 1, deadline = NULL,"
        " acknowledged_by = NULL, acknowledged_at = NULL"
    ),
    E.Resolved: _update("status = 'resolved', resolved_at = %(occurred_at)s, outcome = %(outcome)s"),
    E.Reopened: _update(
        "status = 'acknowledged', resolved_at = NULL, outcome = NULL, acknowledged_by = %(actor_id)s,"
        " acknowledged_at = %(occurred_at)s"
    ),
    E.Closed: _update("status = 'closed'"),
    E.LinkedAsDuplicate: _update("duplicate_of = %(duplicate_of)s"),
}
# The same statements, each taking a whole batch's rows at once (apply_batch).
BATCHED = set_statements(STATEMENTS)
# All the view reads of an event: its statement's placeholders.
FIELDS = statement_fields(STATEMENTS)

COLUMNS = (
    "id, category, severity, status, level, person_id, village_id, township_id, county_id, reporter_id, source,"
    " reported_at, recorded_at, routed_at, deadline, responder_ids, acknowledged_by, acknowledged_at, actions,"
    " escalations, resolved_at, outcome, duplicate_of, version"
)


class EmergencyQueueProjection:
    name = "emergency_queue"
    tables = ("emergency_queue",)
    schema_version = 1

    def create_tables(self, cur: psycopg.Cursor[Any]) -> None:
        cur.execute(DDL)

    def handles(self, event_class: type) -> bool:
        return event_class in STATEMENTS

    def fields(self, event_class: type) -> frozenset[str] | None:
        return FIELDS.get(event_class)

    def apply(self, cur: psycopg.Cursor[Any], event: Any, position: int) -> None:
        statement = STATEMENTS.get(type(event))
        if statement is not None:
            # Only the statement's placeholders are sent: descriptions and notes are not.
            cur.execute(statement, {**vars(event), "position": position})

    def apply_batch(self, cur: psycopg.Cursor[Any], events: Sequence[tuple[int, Any]]) -> None:
        # Each statement touches only its event's row: one executemany per statement and round.
        write_batched(cur, statement_writes(events, BATCHED))

    def reset(self, cur: psycopg.Cursor[Any]) -> None:
        cur.execute("TRUNCATE emergency_queue")


class EmergencyQueueView:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def list(
        self,
        *,
        org_unit_id: UUID | None = None,
        statuses: tuple[str, ...] | None = OPEN,
        severity: str | None = None,
        limit: int = 50,
        offset: int = 0,
        scope: ListScope | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Reports under ``org_unit_id`` (all when None) in these statuses, oldest first, of
        those ``scope`` lets the caller see (None: every report)."""
        where, params = ["true"], []
        if scope is not None:
            clause, scope_params = scope.clause("emergency_queue")
            where.append(clause)
            params += scope_params
        if org_unit_id is not None:
            where.append("org_path @> ARRAY[%s]::uuid[]")
            params.append(org_unit_id)
        if statuses is not None:
            where.append("status = ANY(%s)")
            params.append(list(statuses))
        if severity is not None:
            where.append("severity = %s")
            params.append(severity)
        clause = " AND ".join(where)
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                f"SELECT {COLUMNS} FROM emergency_queue WHERE {clause} ORDER BY reported_at, id LIMIT %s OFFSET %s",
                [*params, limit, offset],
            ).fetchall()
            total = cur.execute(f"SELECT count(*) AS n FROM emergency_queue WHERE {clause}", params).fetchone()["n"]
        return rows, total

    def get(self, report_id: UUID) -> dict[str, Any] | None:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(f"SELECT {COLUMNS} FROM emergency_queue WHERE id = %s", (report_id,)).fetchone()

    def reported_in_area(self, person_id: UUID, area: Area) -> bool:
        """Whether a report about this person lies in a responder's area (under its unit, at its
        level or above): the persons a responder may read (the access checks' ``area``)."""
        with self.pool.connection() as conn:
            row = conn.execute(
                "SELECT 1 FROM emergency_queue WHERE person_id = %s AND org_path @> ARRAY[%s]::uuid[]"
                " AND level >= %s LIMIT 1",
                (person_id, area.unit, area.min_level),
            ).fetchone()
        return row is not None

    def unrouted(self, filed_before: datetime, limit: int = 200) -> list[tuple[UUID, int]]:
        """(report, level) the router still owes a routing, oldest first: reports recorded
        before ``filed_before`` and never routed (level 0), and escalated reports whose next
        level is not routed yet (the router's reconciler; a routing is a command that happens
        once per level, so a report listed here that was routed meanwhile costs one no-op)."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT id, level FROM emergency_queue WHERE (status = 'reported' AND recorded_at < %s)"
                " OR status = 'escalated' ORDER BY recorded_at, id LIMIT %s",
                (filed_before, limit),
            ).fetchall()
        return [(row[0], int(row[1])) for row in rows]

    def overdue(self, deadline_before: datetime, limit: int = 200) -> list[tuple[UUID, int]]:
        """(report, level) routed and unacknowledged past a deadline before ``deadline_before``:
        what the escalator's reconciler escalates (``escalate_overdue`` decides, once per level)."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT id, level FROM emergency_queue WHERE status = 'routed' AND deadline < %s"
                " ORDER BY deadline, id LIMIT %s",
                (deadline_before, limit),
            ).fetchall()
        return [(row[0], int(row[1])) for row in rows]
