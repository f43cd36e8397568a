"""Checking the audit chains: the events' (``infrastructure.chain``) and the access log's.

A walk reads the stored rows and their chain entries in position order from one snapshot and
recomputes each MAC from the previous stored entry, so every failure is found where it is and a
later entry is still checked on its own. What a failure says:

- ``payload-changed``: the event (topic or stored bytes) or its chain entry is not as written;
- ``row-deleted``: the chain names an event that is gone (or, when the chain's own entries went
  too, the next entry chains to a position that no longer exists);
- ``row-inserted``: an event with no chain entry: stored behind the application's back (or
  written with ``GUANAI_AUDIT_CHAIN`` off);
- ``order-changed``: a position holds an event the chain records at another position;
- ``chain-broken``: an entry does not follow the entry before it (entries inserted or moved);
- ``checkpoint-mismatch``: the log no longer reaches, or no longer matches, a held checkpoint;
- ``wrong-key``: the store was chained with another key than this process's.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import msgspec
import psycopg
from psycopg import Connection, IsolationLevel
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from infrastructure.access_log import TABLE as ACCESS_TABLE
from infrastructure.access_log import Access, access_mac
from infrastructure.access_log import genesis as access_genesis
from infrastructure.chain import KEY_TABLE, ChainKey, chain_table

EVENTS = "guanai_events"
MAX_LISTED = 20
BATCH = 20_000
Progress = Callable[[int, int, int], None]  # (position reached, last position, rows checked)


class Failure(msgspec.Struct, frozen=True):
    position: int
    kind: str
    detail: str


class Checkpoint(msgspec.Struct, frozen=True):
    """What an outside party keeps: the newest entry's position and MAC, and when it was taken."""

    log: str  # "events" or "access"
    position: int
    digest: str
    at: datetime
    key: str  # fingerprint of the chain key (names it, reveals nothing)


class Verification(msgspec.Struct):
    log: str
    ok: bool
    start: int
    end: int
    checked: int
    failure_count: int
    failures: list[Failure]
    head: Checkpoint | None
    key: str
    elapsed_seconds: float
    checkpoint: Checkpoint | None = None

    @property
    def first_failure(self) -> Failure | None:
        return self.failures[0] if self.failures else None


class _Report:
    def __init__(self, log: str, key: ChainKey) -> None:
        self.log, self.key, self.failures, self.count, self.checked = log, key, [], 0, 0
        self.started = time.monotonic()

    def fail(self, position: int, kind: str, detail: str) -> bool:
        """Record a failure; whether it is among the listed ones (worth a closer look)."""
        self.count += 1
        if len(self.failures) < MAX_LISTED:
            self.failures.append(Failure(position, kind, detail))
            return True
        return False

    def result(
        self, start: int, end: int, head: tuple[int, bytes] | None, checkpoint: Checkpoint | None
    ) -> Verification:
        now = datetime.now(UTC)
        held = Checkpoint(self.log, head[0], head[1].hex(), now, self.key.fingerprint) if head else None
        return Verification(
            log=self.log,
            ok=self.count == 0,
            start=start,
            end=end,
            checked=self.checked,
            failure_count=self.count,
            failures=sorted(self.failures, key=lambda f: f.position),
            head=held,
            key=self.key.fingerprint,
            elapsed_seconds=round(time.monotonic() - self.started, 3),
            checkpoint=checkpoint,
        )


def _key_mismatch(cur: Any, key: ChainKey) -> str | None:
    cur.execute(SQL("SELECT fingerprint FROM {} ORDER BY since LIMIT 1").format(Identifier(KEY_TABLE)))
    row = cur.fetchone()
    return row[0] if row and row[0] != key.fingerprint else None


def _snapshot(database_url: str) -> Connection[Any]:
    """A connection whose statements all read one snapshot (a walk may take a while)."""
    conn = psycopg.connect(database_url, row_factory=tuple_row)
    conn.isolation_level = IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    return conn


def verify_events(
    database_url: str,
    key: ChainKey,
    *,
    start: int | None = None,
    end: int | None = None,
    checkpoint: Checkpoint | None = None,
    progress: Progress | None = None,
    events: str = EVENTS,
) -> Verification:
    """Walk the event chain over positions ``start``..``end`` (default: every row, from the
    lowest position in either table, below 1 too, to the newest). With a held ``checkpoint``,
    also check that the log still reaches it and matches it there."""
    report = _Report("events", key)
    chain = Identifier(chain_table(events))
    table = Identifier(events)
    with _snapshot(database_url) as conn:
        cur = conn.cursor(row_factory=tuple_row)
        if start is None:
            # Reads apply a stream's rows whatever their positions: the walk must see them all.
            cur.execute(
                SQL(
                    "SELECT least((SELECT min(notification_id) FROM {}), (SELECT min(notification_id) FROM {}), 1)"
                ).format(table, chain)
            )
            start = int(cur.fetchone()[0])
        if (other := _key_mismatch(cur, key)) is not None:
            report.fail(
                start, "wrong-key", f"the store is chained with key {other}, this process has {key.fingerprint}"
            )
            return report.result(start, end or start, None, checkpoint)
        if end is None:
            cur.execute(
                SQL(
                    "SELECT greatest((SELECT max(notification_id) FROM {}), (SELECT max(notification_id) FROM {}))"
                ).format(table, chain)
            )
            end = max(cur.fetchone()[0] or 0, checkpoint.position if checkpoint else 0)
        cur.execute(
            SQL(
                "SELECT notification_id, mac FROM {} WHERE notification_id < %s ORDER BY notification_id DESC LIMIT 1"
            ).format(chain),
            (start,),
        )
        row = cur.fetchone()
        last, prev_mac = (row[0], bytes(row[1])) if row else (0, key.genesis)
        head: tuple[int, bytes] | None = None

        ev = conn.cursor("verify_events", row_factory=tuple_row, binary=True)
        ev.itersize = BATCH
        ev.execute(
            SQL(
                "SELECT notification_id, originator_id, originator_version, topic, state FROM {} "
                "WHERE notification_id BETWEEN %s AND %s ORDER BY notification_id"
            ).format(table),
            (start, end),
        )
        ch = conn.cursor("verify_chain", row_factory=tuple_row, binary=True)
        ch.itersize = BATCH
        ch.execute(
            SQL(
                "SELECT notification_id, prev_id, originator_id, originator_version, mac FROM {} "
                "WHERE notification_id BETWEEN %s AND %s ORDER BY notification_id"
            ).format(chain),
            (start, end),
        )
        events_iter, chain_iter = iter(ev), iter(ch)
        e, c = next(events_iter, None), next(chain_iter, None)
        never = end + 1
        link, compare = key.link, hmac.compare_digest
        while e is not None or c is not None:
            pe = e[0] if e is not None else never
            pc = c[0] if c is not None else never
            report.checked += 1
            if progress is not None and report.checked % 100_000 == 0:
                progress(min(pe, pc), end, report.checked)
            if min(pe, pc) < 1:
                # The application's positions start at 1: whatever lies below was put there by hand.
                what = "an event" if pe <= pc else "a chain entry"
                report.fail(
                    min(pe, pc),
                    "row-inserted",
                    f"{what} at position {min(pe, pc)}, below 1, where the application never writes",
                )
                e = next(events_iter, None) if pe <= pc else e
                c = next(chain_iter, None) if pc <= pe else c
                continue
            if pe < pc:
                report.fail(
                    pe,
                    "row-inserted",
                    "an event with no chain entry: stored behind the application's back "
                    "(or written with GUANAI_AUDIT_CHAIN off)",
                )
                e = next(events_iter, None)
                continue
            _, prev_id, oid, version, mac = c
            mac = bytes(mac)
            if prev_id != last:
                if prev_id > last:
                    report.fail(
                        prev_id,
                        "row-deleted",
                        f"the chain entry at {pc} follows position {prev_id}, which is gone "
                        f"(rows deleted after position {last})",
                    )
                else:
                    report.fail(
                        pc,
                        "chain-broken",
                        f"the chain entry at {pc} says it follows {prev_id}, but the entry "
                        f"before it is at {last}: entries inserted or moved",
                    )
            elif pe == pc and (e[1], e[2]) != (oid, version):
                if report.fail(pc, "order-changed", ""):
                    written_at = _chain_position(cur, chain, e[1], e[2])
                    where = f"was written at position {written_at}" if written_at else "has no chain entry anywhere"
                    report.failures[-1] = Failure(
                        pc, "order-changed", f"position {pc} holds event {e[1]} v{e[2]}, which {where}"
                    )
            elif pe == pc:
                if not compare(link(prev_mac, prev_id, pc, e[1], e[2], e[3], e[4]), mac):
                    report.fail(pc, "payload-changed", f"event {e[1]} v{e[2]} (or its chain entry) is not as written")
            elif report.fail(pc, "row-deleted", ""):
                moved_to = _event_position(cur, table, oid, version)
                detail = (
                    f"the event written at {pc} ({oid} v{version}) now sits at position {moved_to}"
                    if moved_to
                    else f"the event written at {pc} ({oid} v{version}) is gone"
                )
                report.failures[-1] = Failure(pc, "order-changed" if moved_to else "row-deleted", detail)
            last, prev_mac = pc, mac
            head = (pc, mac)
            if pe == pc:
                e = next(events_iter, None)
            c = next(chain_iter, None)
        ev.close()
        ch.close()
        if checkpoint is not None:
            _check_checkpoint(report, cur, chain, checkpoint)
    return report.result(start, end, head, checkpoint)


def _chain_position(cur: Any, chain: Identifier, oid: Any, version: int) -> int | None:
    cur.execute(
        SQL("SELECT notification_id FROM {} WHERE originator_id = %s AND originator_version = %s").format(chain),
        (oid, version),
    )
    row = cur.fetchone()
    return row[0] if row else None


def _event_position(cur: Any, table: Identifier, oid: Any, version: int) -> int | None:
    cur.execute(
        SQL("SELECT notification_id FROM {} WHERE originator_id = %s AND originator_version = %s").format(table),
        (oid, version),
    )
    row = cur.fetchone()
    return row[0] if row else None


def _check_checkpoint(report: _Report, cur: Any, chain: Identifier, held: Checkpoint) -> None:
    cur.execute(SQL("SELECT mac FROM {} WHERE notification_id = %s").format(chain), (held.position,))
    row = cur.fetchone()
    if row is None:
        cur.execute(SQL("SELECT max(notification_id) FROM {}").format(chain))
        newest = cur.fetchone()[0] or 0
        report.fail(
            held.position,
            "checkpoint-mismatch",
            f"the checkpoint pinned position {held.position} but the chain "
            f"{'ends at ' + str(newest) if newest < held.position else 'has no entry there'}: events were deleted",
        )
    elif bytes(row[0]).hex() != held.digest.lower():
        report.fail(
            held.position, "checkpoint-mismatch", f"the entry at {held.position} is not the one the checkpoint pinned"
        )


def verify_access_log(
    database_url: str, key: ChainKey, *, start: int = 1, end: int | None = None, checkpoint: Checkpoint | None = None
) -> Verification:
    """Walk the access log's chain over ids ``start``..``end``: ids are dense, so a gap is a deletion."""
    report = _Report("access", key)
    table = Identifier(ACCESS_TABLE)
    with _snapshot(database_url) as conn:
        cur = conn.cursor(row_factory=tuple_row)
        if (other := _key_mismatch(cur, key)) is not None:
            report.fail(
                start, "wrong-key", f"the store is chained with key {other}, this process has {key.fingerprint}"
            )
            return report.result(start, end or start, None, checkpoint)
        if end is None:
            cur.execute(SQL("SELECT coalesce(max(id), 0) FROM {}").format(table))
            end = max(cur.fetchone()[0], checkpoint.position if checkpoint else 0)
        cur.execute(SQL("SELECT id, mac FROM {} WHERE id < %s ORDER BY id DESC LIMIT 1").format(table), (start,))
        row = cur.fetchone()
        last, prev_mac = (row[0], bytes(row[1])) if row else (0, access_genesis(key))
        head: tuple[int, bytes] | None = None
        rows = conn.cursor("verify_access", row_factory=tuple_row, binary=True)
        rows.itersize = BATCH
        rows.execute(
            SQL(
                "SELECT id, at, actor_id, actor_role, endpoint, person_id, request_id, mac FROM {} "
                "WHERE id BETWEEN %s AND %s ORDER BY id"
            ).format(table),
            (start, end),
        )
        for r in rows:
            report.checked += 1
            mac = bytes(r[7])
            if r[0] != last + 1:
                report.fail(last + 1, "row-deleted", f"access rows {last + 1}..{r[0] - 1} are gone")
            elif not hmac.compare_digest(access_mac(key, prev_mac, Access(*r[:7])), mac):
                report.fail(r[0], "payload-changed", f"access row {r[0]} is not as written (changed or forged)")
            last, prev_mac, head = r[0], mac, (r[0], mac)
        rows.close()
        if checkpoint is not None:
            cur.execute(SQL("SELECT mac FROM {} WHERE id = %s").format(table), (checkpoint.position,))
            row = cur.fetchone()
            if row is None or bytes(row[0]).hex() != checkpoint.digest.lower():
                report.fail(
                    checkpoint.position,
                    "checkpoint-mismatch",
                    f"access row {checkpoint.position} is gone or not the one the checkpoint pinned",
                )
    return report.result(start, end, head, checkpoint)


def heads(conn: Connection[Any], key: ChainKey, events: str = EVENTS) -> list[Checkpoint]:
    """The newest entry of each chain: the checkpoint to hand to an outside party."""
    now = datetime.now(UTC)
    out = []
    with conn.cursor(row_factory=tuple_row) as cur:
        for log, sql in (
            (
                "events",
                SQL("SELECT notification_id, mac FROM {} ORDER BY notification_id DESC LIMIT 1").format(
                    Identifier(chain_table(events))
                ),
            ),
            ("access", SQL("SELECT id, mac FROM {} ORDER BY id DESC LIMIT 1").format(Identifier(ACCESS_TABLE))),
        ):
            cur.execute(sql)
            row = cur.fetchone()
            if row:
                out.append(Checkpoint(log, row[0], bytes(row[1]).hex(), now, key.fingerprint))
    if not conn.autocommit:
        conn.rollback()
    return out


def verify_stream(conn: Connection[Any], key: ChainKey, originator_id: UUID, events: str = EVENTS) -> Verification:
    """Check each event of one stream against its own chain entry (and the entry it follows):
    a case history's export carries this, while ``verify_events`` vouches for the whole log."""
    report = _Report("stream", key)
    chain, table = Identifier(chain_table(events)), Identifier(events)
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(
            SQL(
                "SELECT e.notification_id, e.originator_id, e.originator_version, e.topic, e.state, c.prev_id, "
                "c.originator_id, c.originator_version, c.mac, p.mac FROM {0} e LEFT JOIN {1} c USING (notification_id) "
                "LEFT JOIN {1} p ON p.notification_id = c.prev_id WHERE e.originator_id = %s ORDER BY e.originator_version"
            ).format(table, chain),
            (originator_id,),
        )
        expected_version, head = 1, None
        for pos, oid, version, topic, state, prev_id, c_oid, c_version, mac, prev_mac in cur.fetchall():
            report.checked += 1
            if version != expected_version:
                report.fail(pos, "row-deleted", f"versions {expected_version}..{version - 1} of the stream are gone")
            expected_version = version + 1
            if mac is None:
                report.fail(pos, "row-inserted", "an event with no chain entry")
            elif (c_oid, c_version) != (oid, version):
                report.fail(
                    pos,
                    "order-changed",
                    f"position {pos} holds {oid} v{version}; the chain recorded {c_oid} v{c_version} there",
                )
            elif prev_mac is None and prev_id != 0:
                report.fail(pos, "chain-broken", f"the entry it follows (position {prev_id}) is gone")
            elif not hmac.compare_digest(
                key.link(bytes(prev_mac) if prev_mac else key.genesis, prev_id, pos, oid, version, topic, state),
                bytes(mac),
            ):
                report.fail(pos, "payload-changed", f"event {oid} v{version} (or its chain entry) is not as written")
            else:
                head = (pos, bytes(mac))
        cur.execute(
            SQL(
                "SELECT c.notification_id, c.originator_version FROM {} c LEFT JOIN {} e USING (notification_id) "
                "WHERE c.originator_id = %s AND (e.originator_id IS DISTINCT FROM c.originator_id "
                "OR e.originator_version IS DISTINCT FROM c.originator_version)"
            ).format(chain, table),
            (originator_id,),
        )
        for pos, version in cur.fetchall():
            report.fail(pos, "row-deleted", f"the chain recorded v{version} of the stream at {pos}; it is not there")
    if not conn.autocommit:
        conn.rollback()
    return report.result(1, report.checked, head, None)
