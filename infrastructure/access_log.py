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
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
from psycopg import ClientCursor, Connection
from psycopg.pq import Escaping
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composable, Identifier

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


def _rows(
    key: ChainKey,
    last: int,
    prev_mac: bytes,
    person_ids: Sequence[UUID],
    when: datetime,
    fields: tuple[str, str, str, str],
) -> list[tuple[Any, ...]]:
    """The rows that follow row ``last`` (whose MAC is ``prev_mac``): one per person, chained."""
    actor_id, actor_role, endpoint, request_id = fields
    rows = []
    for n, person_id in enumerate(dict.fromkeys(person_ids), start=1):
        entry = Access(last + n, when, actor_id, actor_role, endpoint, person_id, request_id)
        prev_mac = access_mac(key, prev_mac, entry)
        rows.append((entry.id, when, actor_id, actor_role, endpoint, person_id, request_id, prev_mac))
    return rows


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
    rows = _record(conn, key, person_ids, at or datetime.now(UTC), (actor_id, actor_role, endpoint, request_id), check)
    return [r[0] for r in rows]


def _record(
    conn: Connection[Any],
    key: ChainKey,
    person_ids: Sequence[UUID],
    when: datetime,
    fields: tuple[str, str, str, str],
    check: bool,
) -> list[tuple[Any, ...]]:
    if not person_ids:
        return []
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
        rows = _rows(key, last, prev_mac, person_ids, when, fields)
        cur.executemany(
            SQL(
                "INSERT INTO {} (id, at, actor_id, actor_role, endpoint, person_id, request_id, mac) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            ).format(table),
            rows,
        )
    return rows


class AccessLog:
    """The access log's writer for one process. It remembers the last row it wrote (id and MAC):
    while the table's last row is still that one (no other process wrote since), the next rows
    chain on from it without reading the table first, so their insert can go in the same round
    trip as the read it records (``read_with``). Chaining, numbering and durability are those of
    ``record``: the rows are numbered and inserted under the table's EXCLUSIVE lock, held through
    the commit, and a row whose predecessor is not the remembered one is never written."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: tuple[int, bytes] | None = None
        self._key_checked = False
        self._texts: dict[int, str] = {}  # row count -> the write's text (``_write_text``)
        self._quoted: dict[tuple[str, ...], tuple[str, ...]] = {}  # actor, role, endpoint -> quoted (``_literals``)

    def _write_text(self, cur: ClientCursor[Any], count: int) -> str:
        """The table's lock and the INSERT of ``count`` rows up to its condition on the last row,
        as text with placeholders: composed once per row count (composing it took a tenth of a
        timeline read's CPU in the API)."""
        text = self._texts.get(count)
        if text is None:
            table = Identifier(TABLE)
            row = SQL("(%s::bigint, %s::timestamptz, %s, %s, %s, %s::uuid, %s, %s::bytea)")
            text = (
                SQL(
                    "LOCK TABLE {} IN EXCLUSIVE MODE; "
                    "INSERT INTO {} (id, at, actor_id, actor_role, endpoint, person_id, request_id, mac) "
                    "SELECT * FROM (VALUES {}) AS v WHERE (SELECT max(id) FROM {}) = %s"
                )
                .format(table, table, SQL(", ").join(row for _ in range(count)), table)
                .as_string(cur)
            )
            self._texts[count] = text
        return text

    def _literals(self, cur: ClientCursor[Any], rows: list[tuple[Any, ...]], last: int) -> tuple[str, ...]:
        """The values of ``rows`` and ``last`` as SQL literals for the placeholders of
        ``_write_text`` (which casts each to its column's type), made here instead of by
        ``mogrify`` (its parse of the statement and a dumper per value were a twentieth of a
        timeline read's instructions): numbers as digits, the time in ISO 8601, the id as hex
        digits, the MAC through ``decode(..., 'hex')``, so that no backslash is written whatever
        ``standard_conforming_strings`` says, and the texts quoted by libpq
        (``PQescapeLiteral``). The texts other than the request id repeat (one actor, one
        route): they are quoted once."""
        escape = Escaping(cur.connection.pgconn).escape_literal
        encoding = cur.connection.info.encoding
        out: list[str] = []
        for id_, when, actor_id, actor_role, endpoint, person_id, request_id, mac in rows:
            same = (actor_id, actor_role, endpoint, encoding)
            quoted = self._quoted.get(same)
            if quoted is None:
                if len(self._quoted) >= 1024:
                    self._quoted.clear()
                quoted = self._quoted[same] = tuple(escape(f.encode(encoding)).decode(encoding) for f in same[:3])
            out += [
                str(int(id_)), f"'{when.isoformat()}'", *quoted, f"'{(person_id if type(person_id) is UUID else UUID(str(person_id))).hex}'",
                escape(request_id.encode(encoding)).decode(encoding), f"decode('{bytes(mac).hex()}', 'hex')",
            ]  # fmt: skip
        out.append(str(int(last)))
        return tuple(out)

    def remember(self, last: int, mac: bytes) -> None:
        with self._lock:
            if self._last is None or last > self._last[0]:
                self._last = (last, mac)

    def record(
        self,
        conn: Connection[Any],
        key: ChainKey,
        person_ids: Sequence[UUID],
        fields: tuple[str, str, str, str],
        at: datetime | None = None,
    ) -> list[int]:
        """As ``record``: the rows in their own transaction, after reading the table's last row;
        one per person, with ``fields`` (actor id, actor role, endpoint, request id)."""
        rows = _record(conn, key, person_ids, at or datetime.now(UTC), fields, not self._key_checked)
        self._key_checked = True
        if rows:
            self.remember(rows[-1][0], rows[-1][-1])
        return [r[0] for r in rows]

    def read_with(
        self,
        cur: ClientCursor[Any],
        key: ChainKey,
        read: str,
        person_ids: Sequence[UUID],
        fields: tuple[str, str, str, str],
        *,
        only_if: Composable | str | None = None,
        params: Sequence[Any] = (),
    ) -> tuple[list[Any], bool]:
        """Run ``read`` (one statement, its parameters bound: ``cur.mogrify``) and write the
        rows in the same round trip: one simple query of three statements (the read, the table's
        lock, one INSERT), which PostgreSQL runs as one implicit transaction and answers after
        its commit. The INSERT writes only while the table's last row is the one this process
        remembers and ``only_if`` (an SQL condition, its ``params``; as text, a "%" in it
        doubled) holds. ``cur``'s connection must be in autocommit (no transaction of its own
        around it) and its rows tuples. The
        read's rows, and whether the rows were written (False: nothing was, because there was
        nothing to chain on from yet, the log had moved on or the condition did not hold; write
        them with ``record``)."""
        if not cur.connection.autocommit:
            raise ValueError("read_with runs its own (implicit) transaction: the connection must be in autocommit")
        with self._lock:
            last = self._last
        if last is None or not person_ids:
            cur.execute(read)
            return cur.fetchall(), False
        rows = _rows(key, last[0], last[1], person_ids, datetime.now(UTC), fields)
        write = self._write_text(cur, len(rows))
        if only_if is not None:
            write += " AND " + (only_if if isinstance(only_if, str) else only_if.as_string(cur))
        if params:  # a condition with values of its own: psycopg binds them all
            bound = cur.mogrify(write + " RETURNING id", [*(v for row in rows for v in row), last[0], *params])
        else:
            bound = (write + " RETURNING id") % self._literals(cur, rows, last[0])
        cur.execute(f"{read}; {bound}")
        found = cur.fetchall()
        cur.nextset()  # the lock
        cur.nextset()  # the insert
        written = [r[0] for r in cur.fetchall()]
        if not written:
            return found, False
        assert written == [r[0] for r in rows], written
        self.remember(rows[-1][0], rows[-1][-1])
        return found, True


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
