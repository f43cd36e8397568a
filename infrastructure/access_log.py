"""Who read whose personal data: an append-only, HMAC-chained table beside the event store.

Reads are far more frequent than writes and change nothing in the domain, so they are not
events: logging them as events would take the event store's table lock on every read, wake
every projection and relay for nothing, and bury the care history under its own audit trail.
Instead each read appends one row per person to ``guanai_access_log`` (who, role, when, which
endpoint, which person, the request id), chained like the events: the rows are numbered
densely under the table's own EXCLUSIVE lock, and each row's MAC covers the previous row's MAC,
so a changed, deleted or forged row is found by ``infrastructure.verify``. The read is refused when its
row cannot be written (no personal data leaves without a record).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
from psycopg import Connection
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from infrastructure.chain import ChainKey, check_key

TABLE = "guanai_access_log"


def access_log_ddl(schema: str) -> list[Any]:
    table = Identifier(schema, TABLE)
    return [
        SQL(
            "CREATE TABLE IF NOT EXISTS {} (id bigint PRIMARY KEY, at timestamptz NOT NULL, actor_id text NOT NULL, "
            "actor_role text NOT NULL, endpoint text NOT NULL, person_id uuid NOT NULL, request_id text NOT NULL, "
            "mac bytea NOT NULL)"
        ).format(table),
        SQL("CREATE INDEX IF NOT EXISTS {} ON {} (person_id, id)").format(Identifier(TABLE + "_person_idx"), table),
    ]


class Access(msgspec.Struct, frozen=True):
    id: int
    at: datetime
    actor_id: str
    actor_role: str
    endpoint: str
    person_id: UUID
    request_id: str


def access_mac(key: ChainKey, prev_mac: bytes, a: Access) -> bytes:
    fields = [a.at.astimezone(UTC).isoformat(), a.actor_id, a.actor_role, a.endpoint, str(a.person_id), a.request_id]
    parts = [prev_mac, struct.pack(">q", a.id)]
    for f in fields:
        raw = f.encode()
        parts += [struct.pack(">I", len(raw)), raw]
    return key.mac(b"".join(parts))


def genesis(key: ChainKey) -> bytes:
    return key.mac(b"guanai-access-log-genesis")


def record(
    conn: Connection[Any],
    key: ChainKey,
    *,
    person_ids: Sequence[UUID],
    actor_id: str,
    actor_role: str,
    endpoint: str,
    request_id: str,
    at: datetime | None = None,
    check: bool = True,
) -> list[int]:
    """Append one row per person (in one transaction); the ids of the rows written."""
    if not person_ids:
        return []
    when = at or datetime.now(UTC)
    table = Identifier(TABLE)
    # In a pipeline: BEGIN, the lock and the read of the last row go in one round trip, the
    # inserts and COMMIT in a second (a read of a person's data waits for this write).
    with conn.pipeline(), conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(table))
        if check:  # once per process is enough: the store's key does not change under it
            check_key(conn, key)
        cur.execute(SQL("SELECT id, mac FROM {} ORDER BY id DESC LIMIT 1").format(table))
        row = cur.fetchone()
        last, prev_mac = (row[0], bytes(row[1])) if row else (0, genesis(key))
        rows = []
        for n, person_id in enumerate(dict.fromkeys(person_ids), start=1):
            entry = Access(last + n, when, actor_id, actor_role, endpoint, person_id, request_id)
            prev_mac = access_mac(key, prev_mac, entry)
            rows.append((entry.id, when, actor_id, actor_role, endpoint, person_id, request_id, prev_mac))
        cur.executemany(
            SQL(
                "INSERT INTO {} (id, at, actor_id, actor_role, endpoint, person_id, request_id, mac) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            ).format(table),
            rows,
        )
    return [r[0] for r in rows]


def for_person(
    conn: Connection[Any], person_id: UUID, *, limit: int, before_id: int | None = None
) -> tuple[list[Access], int]:
    """A person's access rows, newest first, and how many there are in all."""
    table = Identifier(TABLE)
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(
            SQL(
                "SELECT id, at, actor_id, actor_role, endpoint, person_id, request_id FROM {} "
                "WHERE person_id = %s AND id < %s ORDER BY id DESC LIMIT %s"
            ).format(table),
            (person_id, before_id if before_id is not None else 2**62, limit),
        )
        rows = [Access(*r) for r in cur.fetchall()]
        cur.execute(SQL("SELECT count(*) FROM {} WHERE person_id = %s").format(table), (person_id,))
        total = cur.fetchone()[0]
    return rows, total
