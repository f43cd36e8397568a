"""The visit task board: visit tasks and visit logs as lists, sweeps and rates need them.

``VisitTaskProjection`` writes ``visit_tasks`` (one row per task: window, status, who holds or
completed it) and ``visit_logs`` (one row per log, without its findings or notes: those stay in
the event store) from the VisitTask and VisitLog events. ``VisitTaskView`` reads them: the
``/visits`` lists, the helper's visits, what the scheduler's sweep must look at (windows closed,
claims lapsed, pairings ended with tasks still open) and completion rates per org unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from domain.visit_log import VisitLog
from domain.visit_task import VisitTask
from projections.batches import set_statements, statement_fields, statement_writes, write_batched
from projections.replay import (
    Paths,
    ReplayRows,
    copy_rows,
    id_bytes,
    id_int,
    ids_array,
    insert_row,
    text_array,
    uuid_array,
)
from projections.scope import ListScope

TABLES = ("visit_tasks", "visit_logs")

DDL = """
CREATE TABLE IF NOT EXISTS visit_tasks (
    id uuid PRIMARY KEY, pairing_id uuid NOT NULL, person_id uuid NOT NULL, org_path uuid[] NOT NULL,
    group_id uuid, cadence text NOT NULL, mode text NOT NULL, period_start date NOT NULL, due_until date NOT NULL,
    opens_at timestamptz NOT NULL, closes_at timestamptz NOT NULL, status text NOT NULL,
    holder_id uuid, holder_group_id uuid, claim_expires_at timestamptz, log_id uuid, visited_at timestamptz,
    completed_by uuid[] NOT NULL DEFAULT '{}', late boolean NOT NULL DEFAULT false, cancel_reason text,
    scheduled_at timestamptz, version int NOT NULL, scheduled_position bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS visit_tasks_path ON visit_tasks USING gin (org_path);
CREATE INDEX IF NOT EXISTS visit_tasks_open ON visit_tasks (closes_at) WHERE status IN ('scheduled', 'claimed');
CREATE INDEX IF NOT EXISTS visit_tasks_lapsing ON visit_tasks (claim_expires_at) WHERE status = 'claimed';
CREATE INDEX IF NOT EXISTS visit_tasks_pairing ON visit_tasks (pairing_id);
CREATE INDEX IF NOT EXISTS visit_tasks_holder ON visit_tasks (holder_id);
CREATE INDEX IF NOT EXISTS visit_tasks_done_by ON visit_tasks USING gin (completed_by);
CREATE TABLE IF NOT EXISTS visit_logs (
    id uuid PRIMARY KEY, task_id uuid, pairing_id uuid NOT NULL, person_id uuid NOT NULL, org_path uuid[] NOT NULL,
    mode text NOT NULL, visited_at timestamptz NOT NULL, helper_ids uuid[] NOT NULL, services text[] NOT NULL,
    follow_up_needed boolean NOT NULL, raise_emergency boolean NOT NULL, emergency_kind text,
    recorded_at timestamptz NOT NULL, position bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS visit_logs_path ON visit_logs USING gin (org_path);
CREATE INDEX IF NOT EXISTS visit_logs_helpers ON visit_logs USING gin (helper_ids);
"""


def _set(assignments: str) -> str:
    return f"UPDATE visit_tasks SET {assignments}, version = %(originator_version)s WHERE id = %(originator_id)s"


_UNCLAIM = "status = 'scheduled', holder_id = NULL, holder_group_id = NULL, claim_expires_at = NULL"
STATEMENTS: dict[type, str] = {
    VisitTask.Scheduled: "INSERT INTO visit_tasks (id, pairing_id, person_id, org_path, group_id, cadence, mode,"
    " period_start, due_until, opens_at, closes_at, status, scheduled_at, version, scheduled_position) VALUES"
    " (%(originator_id)s, %(pairing_id)s, %(person_id)s, %(org_path)s, %(group_id)s, %(cadence)s, %(mode)s,"
    " %(period_start)s, %(due_until)s, %(opens_at)s, %(closes_at)s, 'scheduled', %(timestamp)s,"
    " %(originator_version)s, %(position)s)",
    VisitTask.Claimed: _set(
        "status = 'claimed', holder_id = %(helper_id)s, holder_group_id = %(group_id)s, claim_expires_at = %(expires_at)s"
    ),
    VisitTask.Assigned: _set("holder_id = %(helper_id)s, claim_expires_at = %(expires_at)s"),
    VisitTask.ClaimReleased: _set(_UNCLAIM),
    VisitTask.ClaimExpired: _set(_UNCLAIM),
    VisitTask.Completed: _set(
        "status = 'completed', log_id = %(log_id)s, visited_at = %(occurred_at)s, completed_by = %(helper_ids)s,"
        " late = %(late)s, claim_expires_at = NULL"
    ),
    VisitTask.Missed: _set("status = 'missed', claim_expires_at = NULL"),
    VisitTask.Cancelled: _set("status = 'cancelled', cancel_reason = %(reason)s, claim_expires_at = NULL"),
    VisitLog.Recorded: "INSERT INTO visit_logs VALUES (%(originator_id)s, %(task_id)s, %(pairing_id)s, %(person_id)s,"
    " %(org_path)s, %(mode)s, %(visited_at)s, %(helper_ids)s, %(services)s, %(follow_up_needed)s,"
    " %(raise_emergency)s, %(emergency_kind)s, %(timestamp)s, %(position)s)",
}
# The same statements, each taking a whole batch's rows at once (apply_batch).
BATCHED = set_statements(STATEMENTS)
# All the view reads of an event: its statement's placeholders.
FIELDS = statement_fields(STATEMENTS)


class VisitTaskProjection:
    """Writes the task board; events of other aggregates are skipped."""

    name = "visit_tasks"
    tables = TABLES
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
            # Only the statement's placeholders are sent: findings and notes never reach the view.
            cur.execute(statement, {**vars(event), "position": position})

    def apply_batch(self, cur: psycopg.Cursor[Any], events: Sequence[tuple[int, Any]]) -> None:
        # Each statement touches only its event's row: one executemany per statement and round.
        write_batched(cur, statement_writes(events, BATCHED))

    def rebuild_batch(self, cur: psycopg.Cursor[Any], events: Sequence[tuple[int, Any]]) -> None:
        """A batch of a rebuild's replay into empty tables. Visit logs are only ever inserted:
        the batch's, by one binary COPY. A task scheduled in the last ``REPLAY_WINDOW`` batches
        is kept in memory and each of its events folded into it (``REPLAY``: what its statement
        does to the row), so that a task scheduled, claimed and completed is written once, by a
        COPY once no event has touched it for that many batches (or at ``finish_rebuild``); the
        events of a task already written go through the live batches' statements (each sets
        columns of the task's row to the event's values, whatever the row held, so the two ways
        meet no row in common and their order between them does not matter)."""
        replay = _REPLAYS.of(cur)
        replay.batch += 1
        logs, written = [], []
        pending, batch, paths = replay.pending, replay.batch, replay.paths
        for position, event in events:
            cls = type(event)
            if cls is VisitLog.Recorded:
                logs.append(_log_row(event, position, paths))
            elif cls is VisitTask.Scheduled:
                insert_row(pending, "visit_tasks", [*_scheduled(event, position, paths), batch])
            elif (row := pending.get(event.originator_id.int)) is not None and (fold := REPLAY.get(cls)) is not None:
                fold(row, event)
                row[21], row[23] = event.originator_version, batch
            elif cls in STATEMENTS:
                written.append((position, event))
        if logs:
            copy_rows(cur, "visit_logs", *_LOGS, logs)
        if written:
            write_batched(cur, statement_writes(written, BATCHED))
        settled = [i for i, row in pending.items() if row[23] <= batch - REPLAY_WINDOW]
        if settled:
            replay.write(cur, [pending.pop(i) for i in settled])

    def finish_rebuild(self, cur: psycopg.Cursor[Any]) -> None:
        """After ``rebuild_batch`` replayed the log: the tasks still in memory, by one COPY."""
        replay = _REPLAYS.take(cur)
        if replay is not None and replay.pending:
            replay.write(cur, list(replay.pending.values()))

    def reset(self, cur: psycopg.Cursor[Any]) -> None:
        cur.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, TABLES))))


# ---- a rebuild's replay in memory -------------------------------------------------------------------
# How many batches a replayed task stays in memory after its last event: what it costs is the
# tasks of that many batches (about 1.5 kB each in Python); a task claimed and completed later
# than that is written twice (its COPY, then an UPDATE per later batch), as the live batches do.
REPLAY_WINDOW = 4


class _Replay:
    def __init__(self) -> None:
        self.batch = 0
        # Tasks by id: their row (the columns of _TASKS), then the batch of their last event.
        # Ids as ``UUID.int``, org paths in binary (``Paths``), completed_by as a tuple (see
        # projections/replay.py).
        self.pending: dict[int, list[Any]] = {}
        self.paths = Paths()

    def write(self, cur: psycopg.Cursor[Any], rows: list[list[Any]]) -> None:
        copy_rows(
            cur,
            "visit_tasks",
            *_TASKS,
            (
                (r[0].to_bytes(16), r[1].to_bytes(16), r[2].to_bytes(16), r[3], id_bytes(r[4]), *r[5:12],
                 id_bytes(r[12]), id_bytes(r[13]), r[14], id_bytes(r[15]), r[16], ids_array(r[17]), *r[18:23])
                for r in rows
            ),
        )  # fmt: skip


_REPLAYS: ReplayRows[_Replay] = ReplayRows(_Replay)


_TASKS = (
    ("id", "pairing_id", "person_id", "org_path", "group_id", "cadence", "mode", "period_start", "due_until",
     "opens_at", "closes_at", "status", "holder_id", "holder_group_id", "claim_expires_at", "log_id", "visited_at",
     "completed_by", "late", "cancel_reason", "scheduled_at", "version", "scheduled_position"),
    ("uuid", "uuid", "uuid", "uuid[]", "uuid", "text", "text", "date", "date", "timestamptz", "timestamptz", "text",
     "uuid", "uuid", "timestamptz", "uuid", "timestamptz", "uuid[]", "bool", "text", "timestamptz", "int4", "int8"),
)  # fmt: skip
_LOGS = (
    ("id", "task_id", "pairing_id", "person_id", "org_path", "mode", "visited_at", "helper_ids", "services",
     "follow_up_needed", "raise_emergency", "emergency_kind", "recorded_at", "position"),
    ("uuid", "uuid", "uuid", "uuid", "uuid[]", "text", "timestamptz", "uuid[]", "text[]", "bool", "bool", "text",
     "timestamptz", "int8"),
)  # fmt: skip


def _log_row(e: Any, position: int, paths: Paths) -> tuple[Any, ...]:
    task = e.task_id
    return (
        e.originator_id.int.to_bytes(16), None if task is None else task.int.to_bytes(16),
        e.pairing_id.int.to_bytes(16), e.person_id.int.to_bytes(16), paths.of(e.org_path), e.mode, e.visited_at,
        uuid_array(e.helper_ids), text_array(e.services), e.follow_up_needed, e.raise_emergency, e.emergency_kind,
        e.timestamp, position,
    )  # fmt: skip


def _scheduled(e: Any, position: int, paths: Paths) -> list[Any]:
    return [
        e.originator_id.int, e.pairing_id.int, e.person_id.int, paths.of(e.org_path), id_int(e.group_id),
        e.cadence, e.mode, e.period_start, e.due_until, e.opens_at, e.closes_at, "scheduled", None, None, None, None,
        None, (), False, None, e.timestamp, e.originator_version, position,
    ]  # fmt: skip


def _claimed(row: list[Any], e: Any) -> None:
    row[11], row[12], row[13], row[14] = "claimed", id_int(e.helper_id), id_int(e.group_id), e.expires_at


def _assigned(row: list[Any], e: Any) -> None:
    row[12], row[14] = id_int(e.helper_id), e.expires_at


def _unclaimed(row: list[Any], e: Any) -> None:
    row[11], row[12], row[13], row[14] = "scheduled", None, None, None


def _completed(row: list[Any], e: Any) -> None:
    row[11], row[15], row[16], row[17], row[18], row[14] = (
        "completed",
        id_int(e.log_id),
        e.occurred_at,
        tuple([i.int for i in e.helper_ids]),
        e.late,
        None,
    )


def _missed(row: list[Any], e: Any) -> None:
    row[11], row[14] = "missed", None


def _cancelled(row: list[Any], e: Any) -> None:
    row[11], row[19], row[14] = "cancelled", e.reason, None


# By event class, what its statement in STATEMENTS does to the task's row (its version aside).
REPLAY: dict[type, Any] = {
    VisitTask.Claimed: _claimed,
    VisitTask.Assigned: _assigned,
    VisitTask.ClaimReleased: _unclaimed,
    VisitTask.ClaimExpired: _unclaimed,
    VisitTask.Completed: _completed,
    VisitTask.Missed: _missed,
    VisitTask.Cancelled: _cancelled,
}


COLUMNS = (
    "id, pairing_id, person_id, org_path, group_id, cadence, mode, period_start, due_until, opens_at, closes_at,"
    " status, holder_id, holder_group_id, claim_expires_at, log_id, visited_at, completed_by, late, version"
)
OPEN = "t.status IN ('scheduled', 'claimed')"
# Open to a new claim now: unclaimed, or its claim lapsed; and its window open (a claim counts
# its lapse from the moment it is made, so a task is claimed only once its window has opened).
FREE = (
    "(t.status = 'scheduled' OR (t.status = 'claimed' AND t.claim_expires_at <= now()))"
    " AND t.opens_at <= now() AND t.closes_at > now()"
)
# The helper may claim it: a helper of its active pairing, or a member of the pairing's group.
MINE = (
    "EXISTS (SELECT 1 FROM reg_pairings p WHERE p.id = t.pairing_id AND p.status = 'active' AND"
    " (p.helper_ids @> ARRAY[%s]::uuid[] OR p.group_id = ANY (SELECT unnest(h.group_ids) FROM reg_helpers h"
    " WHERE h.id = %s)))"
)


def _scoped(table: str, scope: ListScope | None) -> list[tuple[str, list[Any]]]:
    """The first condition of a list: the caller's scope (None: every row)."""
    return [] if scope is None else [scope.clause(table)]


class VisitTaskView:
    """Read side of the task board: ``(rows, total)`` pages in due order, and sweep queries.
    ``scope`` narrows a list to what the caller may see (``projections/scope.py``)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def _page(
        self, table: str, columns: str, where: list[tuple[str, list[Any]]], order: str, limit: int | None, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        clause = " AND ".join(c for c, _ in where) or "true"
        params = [p for _, ps in where for p in ps]
        query = f"SELECT {columns}, count(*) OVER () AS _total FROM {table} t WHERE {clause} ORDER BY {order} LIMIT %s OFFSET %s"
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(query, [*params, limit, offset]).fetchall()
            total = (
                rows[0]["_total"]
                if rows
                else cur.execute(f"SELECT count(*) AS n FROM {table} t WHERE {clause}", params).fetchone()["n"]
            )
        for row in rows:
            del row["_total"]
        return rows, total

    def list_tasks(
        self,
        *,
        org_unit_id: UUID | None = None,
        status: str | None = None,
        due_before: date | None = None,
        claimable_by: UUID | None = None,
        pairing_id: UUID | None = None,
        person_id: UUID | None = None,
        limit: int | None = 50,
        offset: int = 0,
        scope: ListScope | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        where = _scoped("visit_tasks", scope)
        if org_unit_id is not None:
            where.append(("t.org_path @> ARRAY[%s]::uuid[]", [org_unit_id]))
        if status is not None:
            where.append(("t.status = %s", [status]))
        if due_before is not None:
            where.append(("t.due_until < %s", [due_before]))
        if claimable_by is not None:
            where += [(FREE, []), (MINE, [claimable_by, claimable_by])]
        if pairing_id is not None:
            where.append(("t.pairing_id = %s", [pairing_id]))
        if person_id is not None:
            where.append(("t.person_id = %s", [person_id]))
        return self._page("visit_tasks", COLUMNS, where, "t.closes_at, t.id", limit, offset)

    def helper_tasks(
        self,
        helper_id: UUID,
        *,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
        scope: ListScope | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Tasks the helper holds now or completed."""
        where = _scoped("visit_tasks", scope)
        held = "(t.holder_id = %s AND t.status = 'claimed' OR t.completed_by @> ARRAY[%s]::uuid[])"
        where.append((held, [helper_id, helper_id]))
        if status is not None:
            where.append(("t.status = %s", [status]))
        return self._page("visit_tasks", COLUMNS, where, "t.closes_at DESC, t.id", limit, offset)

    def upcoming_for(
        self,
        helper_id: UUID,
        opens_before: datetime,
        *,
        limit: int = 50,
        offset: int = 0,
        scope: ListScope | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Unclaimed tasks the helper may claim once their window opens (before ``opens_before``):
        the claimable list of later, soonest first."""
        where = _scoped("visit_tasks", scope)
        where += [
            ("t.status = 'scheduled' AND t.opens_at > now() AND t.opens_at < %s", [opens_before]),
            (MINE, [helper_id, helper_id]),
        ]
        return self._page("visit_tasks", COLUMNS, where, "t.opens_at, t.closes_at, t.id", limit, offset)

    def list_logs(
        self,
        *,
        helper_id: UUID | None = None,
        pairing_id: UUID | None = None,
        person_id: UUID | None = None,
        limit: int = 50,
        offset: int = 0,
        scope: ListScope | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        where = _scoped("visit_logs", scope)
        if helper_id is not None:
            where.append(("t.helper_ids @> ARRAY[%s]::uuid[]", [helper_id]))
        if pairing_id is not None:
            where.append(("t.pairing_id = %s", [pairing_id]))
        if person_id is not None:
            where.append(("t.person_id = %s", [person_id]))
        columns = (
            "id, task_id, pairing_id, person_id, org_path, mode, visited_at, helper_ids, services,"
            " follow_up_needed, raise_emergency, emergency_kind, recorded_at"
        )
        return self._page("visit_logs", columns, where, "t.visited_at DESC, t.id", limit, offset)

    # ---- what the scheduler's sweep looks at ------------------------------------------------------

    def _ids(self, query: str, params: list[Any]) -> list[UUID]:
        with self.pool.connection() as conn:
            return [r[0] for r in conn.execute(query, params).fetchall()]

    def closed_open_tasks(self, now: datetime, limit: int = 1000) -> list[UUID]:
        """Open tasks whose window closed by ``now``: to be marked missed."""
        return self._ids(
            f"SELECT id FROM visit_tasks t WHERE {OPEN} AND closes_at <= %s ORDER BY closes_at LIMIT %s", [now, limit]
        )

    def lapsed_claims(self, now: datetime, limit: int = 1000) -> list[UUID]:
        return self._ids(
            "SELECT id FROM visit_tasks WHERE status = 'claimed' AND claim_expires_at <= %s ORDER BY claim_expires_at LIMIT %s",
            [now, limit],
        )

    def open_task_ids(self, pairing_id: UUID) -> list[UUID]:
        return self._ids(f"SELECT id FROM visit_tasks t WHERE pairing_id = %s AND {OPEN}", [pairing_id])

    def stale_pairings(self, limit: int = 1000) -> list[UUID]:
        """Pairings with open tasks they should not have: ended, or for someone no longer in them."""
        return self._ids(
            f"SELECT DISTINCT t.pairing_id FROM visit_tasks t JOIN reg_pairings p ON p.id = t.pairing_id WHERE {OPEN}"
            " AND (p.status = 'ended' OR NOT p.person_ids @> ARRAY[t.person_id]) LIMIT %s",
            [limit],
        )

    def active_pairing_ids(self, after: UUID | None = None, limit: int = 500) -> list[UUID]:
        """Active pairings in id order, a page after ``after``: what the sweep schedules."""
        return self._ids(
            "SELECT id FROM reg_pairings WHERE status = 'active' AND (%s::uuid IS NULL OR id > %s) ORDER BY id LIMIT %s",
            [after, after, limit],
        )

    # ---- rates ------------------------------------------------------------------------------------

    def rates_by_unit(
        self, root_id: UUID, since: datetime | None = None, until: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Per unit directly under ``root_id``: tasks whose window closed in [since, until) and how
        they ended (completed, missed, cancelled, still open), with the completion rate."""
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(RATES, {"root": root_id, "since": since, "until": until}).fetchall()


RATES = """
WITH root AS (SELECT cardinality(org_path) + 1 AS at FROM reg_org_units WHERE id = %(root)s),
due AS (
    SELECT org_path[(SELECT at FROM root)] AS unit, status, late FROM visit_tasks
    WHERE org_path @> ARRAY[%(root)s]::uuid[]
      AND (%(since)s::timestamptz IS NULL OR closes_at >= %(since)s) AND closes_at <= coalesce(%(until)s, now()))
SELECT u.id, u.code, u.name,
       count(d.status) FILTER (WHERE d.status <> 'cancelled') AS due,
       count(d.status) FILTER (WHERE d.status = 'completed') AS completed,
       count(d.status) FILTER (WHERE d.status = 'completed' AND d.late) AS completed_late,
       count(d.status) FILTER (WHERE d.status = 'missed') AS missed,
       count(d.status) FILTER (WHERE d.status IN ('scheduled', 'claimed')) AS unresolved
FROM reg_org_units u LEFT JOIN due d ON d.unit = u.id
WHERE u.parent_id = %(root)s
GROUP BY u.id, u.code, u.name ORDER BY u.code
"""
