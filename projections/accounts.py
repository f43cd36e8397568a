"""The accounts list: one row per account with its role, scope and status, for "the accounts
of my township". No phone number and no name: those stay sealed in the event store (and are
read per account from there), and secrets are never events at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from domain.account import Account
from projections.batches import set_statements, statement_fields, statement_writes, write_batched
from projections.scope import ListScope

TABLES = ("accounts",)
DDL = """
CREATE TABLE IF NOT EXISTS accounts (
    id uuid PRIMARY KEY, role text NOT NULL, org_unit_id uuid, org_path uuid[] NOT NULL, status text NOT NULL,
    helper_id uuid, roster_entry text, second_factor boolean NOT NULL DEFAULT false,
    activated boolean NOT NULL DEFAULT false,
    opened_at timestamptz NOT NULL, version int NOT NULL, registered_position bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS accounts_path ON accounts USING gin (org_path);
CREATE INDEX IF NOT EXISTS accounts_order ON accounts (registered_position);
"""


def _update(assignments: str) -> str:
    return f"UPDATE accounts SET {assignments}, version = %(originator_version)s WHERE id = %(originator_id)s"


A = Account
STATEMENTS: dict[type, str] = {
    A.Opened: "INSERT INTO accounts (id, role, org_unit_id, org_path, status, helper_id, roster_entry, opened_at,"
    " version, registered_position) VALUES (%(originator_id)s, %(role)s, %(org_unit_id)s, %(org_path)s, 'pending',"
    " %(helper_id)s, %(roster_entry)s, %(occurred_at)s, %(originator_version)s, %(position)s) ON CONFLICT (id) DO NOTHING",
    A.Activated: _update("status = 'active', activated = true"),
    A.RoleGranted: _update(
        "role = %(role)s, org_unit_id = %(org_unit_id)s, org_path = %(org_path)s, helper_id = %(helper_id)s,"
        " roster_entry = %(roster_entry)s"
    ),
    A.Locked: _update("status = 'locked'"),
    # Unlocked returns to active or pending: pending when no activation happened since the last reset.
    A.Unlocked: _update("status = CASE WHEN activated THEN 'active' ELSE 'pending' END"),
    A.Reset: _update("status = 'pending', second_factor = false, activated = false"),
    A.SecondFactorEnrolled: _update("second_factor = true"),
    A.Closed: _update("status = 'closed'"),
}
# The same statements, each taking a whole batch's rows at once (apply_batch).
BATCHED = set_statements(STATEMENTS)
# All the view reads of an event: its statement's placeholders.
FIELDS = statement_fields(STATEMENTS)

COLUMNS = "id, role, org_unit_id, status, helper_id, roster_entry, second_factor, opened_at, version"


class AccountsProjection:
    name = "accounts"
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
            # Only the statement's placeholders are sent: the phone number and name are not.
            cur.execute(statement, {**vars(event), "position": position})

    def apply_batch(self, cur: psycopg.Cursor[Any], events: Sequence[tuple[int, Any]]) -> None:
        # Each statement touches only its event's row: one executemany per statement and round.
        write_batched(cur, statement_writes(events, BATCHED))

    def reset(self, cur: psycopg.Cursor[Any]) -> None:
        cur.execute("TRUNCATE accounts")


class AccountsView:
    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def list(
        self,
        *,
        scope: ListScope,
        org_unit_id: UUID | None = None,
        role: str | None = None,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        clause, params = scope.clause("accounts")
        where, args = [clause], list(params)
        if org_unit_id is not None:
            where.append("org_path @> ARRAY[%s]::uuid[]")
            args.append(org_unit_id)
        if role is not None:
            where.append("role = %s")
            args.append(role)
        if status is not None:
            where.append("status = %s")
            args.append(status)
        condition = " AND ".join(where)
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                f"SELECT {COLUMNS} FROM accounts WHERE {condition} ORDER BY registered_position LIMIT %s OFFSET %s",
                [*args, limit, offset],
            ).fetchall()
            total = cur.execute(f"SELECT count(*) AS n FROM accounts WHERE {condition}", args).fetchone()["n"]
        return rows, total
