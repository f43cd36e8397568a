"""Tamper evidence for the event store: an HMAC chain over every stored event, in log order.

Every event the application stores gets an entry in ``guanai_events_chain`` written in the same
transaction as the event, while the library holds its EXCLUSIVE lock on ``guanai_events``: the
entries therefore follow the committed order of notification ids, however many processes write.
An entry's MAC covers the previous entry (its MAC and position), the event's position, identity
(originator id and version), topic and stored bytes. The key is not in the database
(``GUANAI_CHAIN_KEY``, or a key generated once into the data directory), so someone who can
change rows by SQL cannot make matching entries. A checkpoint (position and MAC of the newest
entry) given to an outside party pins the log up to there; it also catches the deletion of the
newest events, which no chain alone can. ``infrastructure.verify`` walks the chain.

The library's DB-function insert path (``POSTGRES_ENABLE_DB_FUNCTIONS``) would need the key in
the database, so a chained recorder refuses it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import secrets
import struct
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
from eventsourcing import persistence
from eventsourcing.persistence import ApplicationRecorder, InfrastructureFactory, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore, PostgresFactory
from eventsourcing.utils import retry
from psycopg import Connection, Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier, Literal

from infrastructure import folded, merkle
from infrastructure.group_commit import GroupCommitter, Save
from infrastructure.suites import INTERNATIONAL, Suite

MIN_KEY_LENGTH = 32
CHAIN_SUFFIX = "_chain"
KEY_TABLE = "guanai_chain_key"
# A group's transaction lost its connection or waited too long for the lock: written again, as
# the library retries a single insert (``eventsourcing.postgres``: 10 attempts, 0.2 s apart).
RETRY_ATTEMPTS, RETRY_WAIT = 10, 0.2


class ChainError(RuntimeError):
    """The chain cannot be written as configured (wrong key, refused insert path)."""


class ChainKey:
    """The secret the chain is keyed with, and a fingerprint that names it without revealing it."""

    def __init__(self, secret: str) -> None:
        if len(secret) < MIN_KEY_LENGTH:
            raise ChainError(f"GUANAI_CHAIN_KEY must be at least {MIN_KEY_LENGTH} characters")
        self.key = secret.encode()
        # HMAC-SHA256 with the key's inner and outer pads hashed once: each MAC then costs two
        # hash copies instead of re-keying (half the time of hmac.digest in a verify walk).
        block = hashlib.sha256(self.key).digest() if len(self.key) > 64 else self.key
        block = block.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        self.fingerprint = self.mac(b"guanai-chain-key-id").hex()[:16]
        self.genesis = self.mac(b"guanai-chain-genesis")

    def mac(self, data: bytes) -> bytes:
        """HMAC-SHA256 of ``data`` under this key."""
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def link(
        self, prev_mac: bytes, prev_id: int, position: int, originator_id: Any, version: int, topic: str, state: bytes
    ) -> bytes:
        """The MAC of one entry. Lengths are fixed or prefixed, so no two inputs read alike."""
        oid = str(originator_id).encode()
        top = topic.encode()
        head = struct.pack(">qqqHH", prev_id, position, version, len(oid), len(top))
        return self.mac(b"".join((prev_mac, head, oid, top, state)))


def read_or_create_secret(path: Path) -> str:
    """The secret in ``path``, generated first if there is none (mode 0600, atomically, so that
    processes starting together agree on one secret)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
        tmp.write_text(secrets.token_urlsafe(48))
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)  # fails if another process made one first: then use theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def load_or_create_key(configured: str | None, data_dir: Path) -> ChainKey:
    """The configured key, or one generated once into the data directory."""
    if configured:
        return ChainKey(configured)
    return ChainKey(read_or_create_secret(data_dir / "chain-key"))


def chain_table(events_table: str) -> str:
    return events_table + CHAIN_SUFFIX


def chain_ddl(schema: str, events_table: str, originator_id_type: str) -> list[Any]:
    table = Identifier(schema, chain_table(events_table))
    return [
        SQL(
            "CREATE TABLE IF NOT EXISTS {} (notification_id bigint PRIMARY KEY, prev_id bigint NOT NULL, "
            "originator_id {} NOT NULL, originator_version bigint NOT NULL, mac bytea NOT NULL)"
        ).format(table, Identifier(originator_id_type)),
        SQL(
            "CREATE TABLE IF NOT EXISTS {} (fingerprint text NOT NULL, since timestamptz NOT NULL DEFAULT now())"
        ).format(Identifier(schema, KEY_TABLE)),
    ]


class _HookFailed(BaseException):
    """The chain or an insert hook failed. Not an ``Exception``: the library's insert catches
    those inside its transaction and re-raises them after the transaction has COMMITTED (it
    expects only database errors there, which abort the transaction anyway); this one leaves
    the transaction block, which rolls back, and ``insert_events`` raises the error itself."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class _Unsorted(Exception):
    """The group's one-statement transaction failed in a way no single save can be blamed for
    from here (a hook raised, the insert refused a row): it was rolled back, and the group is
    written again one save at a time."""


def persistence_error(e: psycopg.Error) -> persistence.PersistenceError:
    """The library's error for a psycopg one, as ``PostgresDatastore.get_connection`` maps them
    (the application answers by the library's classes: IntegrityError is a conflict)."""
    for theirs, ours in (
        (psycopg.InterfaceError, persistence.InterfaceError),
        (psycopg.OperationalError, persistence.OperationalError),
        (psycopg.DataError, persistence.DataError),
        (psycopg.IntegrityError, persistence.IntegrityError),
        (psycopg.InternalError, persistence.InternalError),
        (psycopg.ProgrammingError, persistence.ProgrammingError),
        (psycopg.NotSupportedError, persistence.NotSupportedError),
        (psycopg.DatabaseError, persistence.DatabaseError),
    ):
        if isinstance(e, theirs):
            error: persistence.PersistenceError = ours(str(e))
            break
    else:
        error = persistence.PersistenceError(str(e))
    error.__cause__ = e
    return error


class ChainedRecorder(PostgresApplicationRecorder):
    """The library's PostgreSQL application recorder, extending the chain in each insert's
    transaction. With ``enabled`` false it stores events unchained (to measure the chain's cost).
    ``insert_hooks`` run in every insert's transaction too, after the chain, with the cursor and
    the ``(position, stored event)`` pairs written (erasure destroys keys there).

    Saves from many threads at once are written by group commit (``infrastructure.group_commit``):
    one transaction, one lock, one flush for all the saves waiting while the previous group was
    written, each decided on its own. Under the table lock one query finds the (originator id,
    version) pairs already stored; a save with one of them, or with one an earlier save of the
    group writes, fails alone with the library's IntegrityError (as its own insert would have),
    and the others are inserted in one statement, chained and hooked together. Should that
    statement or a hook fail anyway, the transaction is rolled back and the group written again
    with a savepoint per save: the failing save fails alone with its error, nothing of it
    written, and the others commit. ``group_commit`` false: each save its own transaction, as
    the library does it (to measure what grouping saves)."""

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str = "stored_events",
        key: ChainKey | None = None,
        key_loader: Any = None,
        enabled: bool = True,
        group_commit: bool = True,
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        # The library's insert, with the events' array sent in binary (%b): in text, psycopg
        # escapes every state's bytea hex with a regular expression, about 85 µs of CPU an event
        # of 1.5 kB against 6 in binary, and the server parses the hex (issue 19).
        self.insert_events_statement = SQL(
            "INSERT INTO {schema}.{table} AS t (originator_id, originator_version, topic, state) "
            "SELECT originator_id, originator_version, topic, state FROM unnest(%b::{schema}.{type}[]) "
            "RETURNING notification_id"
        ).format(
            schema=Identifier(datastore.schema),
            table=Identifier(events_table_name),
            type=Identifier(self.stored_event_type_name),
        )
        # A group's statements as bytes, converted once: psycopg renders a composed statement again
        # at every execute (identifiers quoted, parts joined), and caches the conversion of bytes.
        # In a group's transaction, the NOTIFY travels with the insert (sent only if it commits).
        self._insert_events_query = (
            SQL(
                "WITH notified AS (SELECT pg_notify(%s, '')) "
                "INSERT INTO {schema}.{table} AS t (originator_id, originator_version, topic, state) "
                "SELECT originator_id, originator_version, topic, state FROM unnest(%b::{schema}.{type}[]), notified "
                "RETURNING notification_id"
            )
            .format(
                schema=Identifier(datastore.schema),
                table=Identifier(events_table_name),
                type=Identifier(self.stored_event_type_name),
            )
            .as_bytes(None)
        )
        # The library's lock statements, with its ``SET LOCAL lock_timeout`` made a ``set_config``
        # that also sets ``plan_cache_mode`` for the transaction: the group's statements take
        # arrays of a size the planner cannot know, so after its first five custom plans
        # PostgreSQL judged the generic plan dearer (it assumes 10 elements an array) and planned
        # the reads and the folded writes again at every execution, 150-270 µs of the server's
        # CPU each (pg_stat_statements, issue 19). Their generic plans are index probes whatever
        # the tables' statistics (``_taken``; the key check in ``infrastructure.personal_data``).
        lock_queries = [statement.as_bytes(None) for statement in self.lock_table_statements]
        if lock_queries and lock_queries[0].startswith(b"SET LOCAL lock_timeout = "):
            timeout = lock_queries[0].removeprefix(b"SET LOCAL lock_timeout = ")
            lock_queries[0] = (
                b"SELECT set_config('lock_timeout', " + timeout + b", true), "
                b"set_config('plan_cache_mode', 'force_generic_plan', true)"
            )
        self._lock_queries = lock_queries
        # Predicted notification ids (issue 19). Under the table lock no other transaction takes
        # ids from the events' sequence, so the next id is read with the heads, the chain's MACs,
        # the tree's leaves and the hooks' rows are made from the ids to come, and the events are
        # inserted with exactly those ids (the sequence set to the last once they are inserted, as
        # its nextval would leave it): the insert travels with the folded writes and the COMMIT,
        # and a group's transaction waits on the server twice (the lock and the heads; the rest
        # and the commit) instead of three times. Should an id be taken after all, the insert
        # fails on the ids' unique index before the sequence is set (no id spent), the server
        # skips the queued COMMIT and the group is written one save at a time, by the sequence.
        # The sequence is the one ``bigserial`` names.
        sequence = f"{events_table_name}_notification_id_seq"
        self._predicting = len(sequence.encode()) <= 63  # longer: PostgreSQL shortened the name
        self._next_id = SQL(
            "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END AS next_id FROM {}"
        ).format(Identifier(datastore.schema, sequence))
        self._insert_predicted_query = (
            SQL(
                "WITH notified AS (SELECT pg_notify(%s, '')), inserted AS ("
                "INSERT INTO {schema}.{table} AS t (notification_id, originator_id, originator_version, topic, state) "
                "SELECT %s::bigint + u.n - 1, u.originator_id, u.originator_version, u.topic, u.state "
                "FROM unnest(%b::{schema}.{type}[]) WITH ORDINALITY AS u(originator_id, originator_version, topic, "
                "state, n), notified RETURNING notification_id) "
                "SELECT setval({sequence}::regclass, max(notification_id)) FROM inserted"
            )
            .format(
                sequence=Literal(Identifier(datastore.schema, sequence).as_string(None)),
                schema=Identifier(datastore.schema),
                table=Identifier(events_table_name),
                type=Identifier(self.stored_event_type_name),
            )
            .as_bytes(None)
        )
        # Whether a group's events may be written with predicted ids (the store keeps erasures
        # out: their insert hook writes the position to the erasure log's file before the commit).
        self.predictable: Callable[[StoredEvent], bool] = lambda event: True
        if enabled and datastore.enable_db_functions:
            raise ChainError("the audit chain is computed outside the database: unset POSTGRES_ENABLE_DB_FUNCTIONS")
        self.enabled = enabled
        self._key, self._key_loader = key, key_loader
        self._key_checked = False
        self._key_lock = threading.Lock()
        self.insert_hooks: list[Callable[[Cursor[DictRow], Sequence[tuple[int, StoredEvent]]], None]] = []
        # Run right after the table lock, before the insert.
        self.lock_hooks: list[Callable[[Cursor[DictRow]], None]] = []
        # The Merkle tree's writer (``construct_recorder``), extended right after the chain.
        self.tree: merkle.TreeWriter | None = None
        # Taken in the caller's thread when a save is made (the store's pending lookup rows), and
        # handed to the insert hooks through ``hook_contexts`` while that save's events are written,
        # whichever thread writes them.
        self.context_of: Callable[[], Any] = lambda: None
        self._contexts = threading.local()
        # In the caller's thread with its save's context: once it committed, or failed; and when it
        # failed, whether to try it once more (the store makes a new key durable on its own first).
        self.after_save: Callable[[Any], None] = lambda context: None
        self.after_failure: Callable[[Any], None] = lambda context: None
        self.retry_save: Callable[[Any, Exception], bool] = lambda context, error: False
        # The store's crypto suite and log origin (infrastructure/merkle.py), once its tables exist.
        self.crypto_suite: Suite = INTERNATIONAL
        self.origin = ""
        self.sql_create_statements.extend(chain_ddl(datastore.schema, events_table_name, datastore.originator_id_type))
        table = Identifier(datastore.schema, chain_table(events_table_name))
        self._select_prev = SQL("SELECT notification_id, mac FROM {} ORDER BY notification_id DESC LIMIT 1").format(
            table
        )
        self._prev_cursors: weakref.WeakKeyDictionary[Any, Cursor[DictRow]] = weakref.WeakKeyDictionary()
        self._insert_chain = SQL(
            "INSERT INTO {} (notification_id, prev_id, originator_id, originator_version, mac) "
            "SELECT * FROM unnest(%b::bigint[], %b::bigint[], %b::{}[], %b::bigint[], %b::bytea[])"
        ).format(table, Identifier(datastore.originator_id_type))
        events = Identifier(datastore.schema, events_table_name)
        # What a group's transaction reads under the lock, in one statement (``_heads``).
        # One index probe per pair, whatever the table's statistics: as ``IN (SELECT ...
        # unnest(...))`` the prepared statement's generic plan, made while the table had no
        # statistics yet (a new store, before its first autoanalyze), was a hash semi join over a
        # sequential scan of every event, kept until the next ANALYZE (issue 19). The LATERAL's
        # LIMIT keeps the planner from flattening it into such a join.
        self._taken = SQL(
            "ARRAY(SELECT e.originator_id::text || ' ' || e.originator_version FROM unnest(%b::{}[], %b::bigint[]) "
            "AS k(id, version) CROSS JOIN LATERAL (SELECT originator_id, originator_version FROM {} "
            "WHERE originator_id = k.id AND originator_version = k.version LIMIT 1) e)"
        ).format(Identifier(datastore.originator_id_type), events)
        self._heads_query: bytes | None = None
        self._select_shapes: dict[tuple[bool, bool, bool, bool], bytes] = {}
        self.group_committer: GroupCommitter | None = GroupCommitter(self._commit_group) if group_commit else None
        self.savepoints = False  # true: every group written a savepoint per save (to compare the two ways)

    @retry((persistence.InterfaceError, persistence.OperationalError), max_attempts=10, wait=0.2)
    def select_events(
        self,
        originator_id: uuid.UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        """The library's read of one aggregate's events (retried alike), with its statement
        rendered once for each shape instead of composed and rendered at every read (every
        command loads what it changes; about 30 µs of CPU a read, issue 19)."""
        shape = (gt is not None, lte is not None, desc, limit is not None)
        statement = self._select_shapes.get(shape)
        if statement is None:
            composed = self.select_events_statement
            if gt is not None:
                composed += SQL(" AND originator_version > %s")
            if lte is not None:
                composed += SQL(" AND originator_version <= %s")
            composed += SQL(" ORDER BY originator_version DESC" if desc else " ORDER BY originator_version ASC")
            if limit is not None:
                composed += SQL(" LIMIT %s")
            statement = self._select_shapes.setdefault(shape, composed.as_bytes(None))
        params = [originator_id, *(p for p in (gt, lte, limit) if p is not None)]
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, params, prepare=True)
            return [
                StoredEvent(
                    originator_id=row["originator_id"],
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=bytes(row["state"]),
                )
                for row in curs.fetchall()
            ]

    @property
    def key(self) -> ChainKey:
        """Loaded on first use, so processes that only read never create a key file."""
        if self._key is None:
            with self._key_lock:
                if self._key is None:
                    self._key = self._key_loader()
        assert self._key is not None
        return self._key

    def hook_contexts(self) -> list[Any]:
        """The ``context_of`` of every save whose events the insert hooks are given now."""
        contexts: list[Any] = getattr(self._contexts, "now", None) or []
        return contexts

    def _lock_table(self, curs: Cursor[DictRow]) -> None:
        super()._lock_table(curs)
        if self.tree is not None:
            self.tree.after_lock(curs)
        for hook in self.lock_hooks:
            hook(curs)
        if self.enabled:
            # Ask for the newest entry right after taking the lock, in the same pipeline as the
            # insert: its answer comes back with the insert's, costing no extra round trip.
            prev = curs.connection.cursor()
            prev.execute(self._select_prev, prepare=True)
            self._prev_cursors[curs.connection] = prev

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        if ids:
            written = list(zip(ids, stored_events, strict=True))
            try:
                self._after_insert(curs, written)
            except Exception as e:
                raise _HookFailed(e) from e
        return ids

    def _after_insert(
        self, curs: Cursor[DictRow], written: list[tuple[int, StoredEvent]], heads: Mapping[str, Any] | None = None
    ) -> None:
        """In the insert's transaction: the chain extended over the rows written, then the tree,
        then the hooks. ``heads``: the chain's newest entry and the tree's head, read already."""
        if self.enabled:
            prev = None if heads is None else (heads["prev_id"], heads["prev_mac"])
            self._extend_chain(curs.connection, written, prev)
        if self.tree is not None:
            self.tree.append(curs, written, None if heads is None else (heads["size"], heads["frontier"]))
        for hook in self.insert_hooks:
            hook(curs, written)

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        context = self.context_of()
        for attempt in (1, 2):
            try:
                ids = self._insert(stored_events, context, **kwargs)
            except Exception as e:
                if attempt == 1 and self.retry_save(context, e):
                    continue
                self.after_failure(context)
                raise
            self.after_save(context)
            return ids
        raise AssertionError("unreachable")  # pragma: no cover

    def _insert(self, stored_events: Sequence[StoredEvent], context: Any, **kwargs: Any) -> Sequence[int] | None:
        # The application passes ``tracking=None``; a process application's tracking record (none
        # here) goes the library's way, in a transaction of its own.
        if self.group_committer is not None and stored_events and all(v is None for v in kwargs.values()):
            return self.group_committer.submit(Save(stored_events, context))
        self._contexts.now = [context]
        try:
            return super().insert_events(stored_events, **kwargs)
        except _HookFailed as failed:
            raise failed.error from None
        finally:
            self._contexts.now = None

    # ---- group commit ----------------------------------------------------------------------------

    def _commit_group(self, saves: list[Save]) -> None:
        """Write ``saves`` in one transaction and answer each; a lost connection or a lock
        timeout writes the whole group again, as the library retries one insert."""
        for attempt in range(1, RETRY_ATTEMPTS + 1):
            try:
                with self.datastore.get_connection() as conn:
                    try:
                        if self.savepoints:
                            raise _Unsorted
                        answers = self._write_together(conn, saves)
                    except _Unsorted:
                        answers = self._write_one_by_one(conn, saves)
            except (persistence.InterfaceError, persistence.OperationalError) as e:
                if attempt == RETRY_ATTEMPTS:
                    for save in saves:
                        save.error = e
                    return
                time.sleep(RETRY_WAIT * (1 + 0.1 * (random.random() - 0.5)))
                continue
            for save, answer in zip(saves, answers, strict=True):
                if isinstance(answer, BaseException):
                    save.error = answer
                else:
                    save.ids = answer
            return

    def _write_together(self, conn: Connection[DictRow], saves: list[Save]) -> list[list[int] | BaseException]:
        """The group in one transaction: the conflicts found first, the rest in one insert.

        BEGIN and COMMIT are sent in the pipeline with the statements around them instead of by
        psycopg's transaction block, which syncs on its own at BEGIN and again around COMMIT: four
        waits on the server a group (the lock and the heads; the insert; the key check's answer;
        the commit, with the pipeline's closing sync) instead of eight (issue 19)."""
        answers: list[list[int] | BaseException] = [[] for _ in saves]
        try:
            with conn.pipeline() as pipeline:
                try:
                    with conn.cursor() as curs:
                        curs.execute(_BEGIN, prepare=True)
                        self._together(conn, pipeline, curs, saves, answers)
                        # Sent with the sync that closes the pipeline, which raises the error of a
                        # hook's statement that failed (the server then skipped the COMMIT).
                        curs.execute(_COMMIT, prepare=True)
                except BaseException:
                    # Ended here, before leaving the pipeline, as the library's insert does
                    # (psycopg warns of a pipeline left with an error pending).
                    _roll_back(conn, pipeline)
                    raise
                finally:
                    stale = self._prev_cursors.pop(conn, None)  # not read when nothing was inserted
                    if stale is not None:
                        stale.close()
        except Exception as e:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                # The COMMIT's sync failed: the server waits in the failed transaction block.
                with contextlib.suppress(psycopg.Error):
                    conn.execute(_ROLLBACK)
            if isinstance(e, psycopg.OperationalError | psycopg.InterfaceError):
                raise
            # Any other failure: the group is written one by one.
            raise _Unsorted from e
        return answers

    def _together(
        self,
        conn: Connection[DictRow],
        pipeline: Any,
        curs: Cursor[DictRow],
        saves: list[Save],
        answers: list[list[int] | BaseException],
    ) -> None:
        """The statements of a group's transaction after its BEGIN.

        Seven for a registration, COMMIT included (issue 19; fourteen before): the lock (two);
        one read of the pairs already taken, the chain's newest entry, the tree's head and the
        next notification id; the insert, with the NOTIFY; the chain's entries, the tree's nodes,
        its head and the new keys, with the key check, folded into one (``infrastructure.folded``).
        With the ids predicted, only the read is awaited before the COMMIT's sync."""
        for statement in self._lock_queries:
            curs.execute(statement, prepare=True)
        for hook in self.lock_hooks:
            hook(curs)
        keys = [(e.originator_id, e.originator_version) for s in saves for e in s.events]
        curs.execute(self._heads(curs), ([k[0] for k in keys], [k[1] for k in keys]), prepare=True)
        pipeline.sync()
        heads = curs.fetchone()
        assert heads is not None
        # Under the lock: no other transaction can store one of these pairs before this commits.
        taken = {(t[0], int(t[1])) for t in (pair.rsplit(" ", 1) for pair in heads["taken"])}
        chosen: list[int] = []
        for n, save in enumerate(saves):
            mine = [(str(e.originator_id), e.originator_version) for e in save.events]
            clash = next((k for k in mine if k in taken), None)
            if clash is None and len(set(mine)) == len(mine):
                taken.update(mine)
                chosen.append(n)
            else:
                answers[n] = persistence.IntegrityError(
                    "duplicate key value violates unique constraint: (originator_id, originator_version)="
                    f"{clash or mine} already exists"
                )
        if not chosen:
            return
        events = [e for n in chosen for e in saves[n].events]
        rows = [self.construct_pg_stored_event(e.originator_id, e.originator_version, e.topic, e.state) for e in events]
        next_id = heads.get("next_id")
        if next_id is not None and all(self.predictable(e) for e in events):
            # Not awaited: its failure (an id taken after all) comes with the COMMIT's sync.
            ids = list(range(next_id, next_id + len(events)))
            curs.execute(self._insert_predicted_query, (self.channel_name, next_id, rows), prepare=True)
        else:
            curs.execute(self._insert_events_query, (self.channel_name, rows), prepare=True)
            pipeline.sync()
            ids = [row["notification_id"] for row in curs.fetchall()]
        written = list(zip(ids, events, strict=True))
        start = 0
        for n in chosen:
            answers[n] = ids[start : start + len(saves[n].events)]
            start += len(saves[n].events)
        self._contexts.now = [saves[n].context for n in chosen]
        try:
            with folded.folding(conn):
                self._after_insert(curs, written, heads)
        finally:
            self._contexts.now = None

    def _heads(self, curs: Cursor[DictRow]) -> bytes:
        """One statement read under the lock: the (originator id, version) pairs of the group
        already stored, the tree's head (locked) and the chain's newest entry. Three statements
        before, each with its own result to read."""
        if self._heads_query is None:
            select = [self._taken + SQL(" AS taken")]
            joins = []
            if self.tree is not None:
                select.append(SQL("h.size, h.frontier"))
                joins.append(SQL(" LEFT JOIN LATERAL ({}) h ON true").format(self.tree.select_head))
            if self.enabled:
                select.append(SQL("c.notification_id AS prev_id, c.mac AS prev_mac"))
                joins.append(SQL(" LEFT JOIN LATERAL ({}) c ON true").format(self._select_prev))
            if self._predicting:
                select.append(SQL("s.next_id"))
                joins.append(SQL(" LEFT JOIN LATERAL ({}) s ON true").format(self._next_id))
            query = SQL("SELECT {} FROM (SELECT) one").format(SQL(", ").join(select)) + SQL("").join(joins)
            self._heads_query = query.as_bytes(curs)
        return self._heads_query

    def _write_one_by_one(self, conn: Connection[DictRow], saves: list[Save]) -> list[list[int] | BaseException]:
        """The group in one transaction, each save under its own savepoint: one that fails (a
        conflict, a hook's error) is rolled back alone and answered with its error."""
        answers: list[list[int] | BaseException] = [[] for _ in saves]
        with conn.transaction(), conn.cursor() as curs:
            self._lock_table(curs)
            self._notify_channel(curs)
            for n, save in enumerate(saves):
                try:
                    with conn.transaction():
                        rows = [
                            self.construct_pg_stored_event(e.originator_id, e.originator_version, e.topic, e.state)
                            for e in save.events
                        ]
                        curs.execute(self.insert_events_statement, (rows,), prepare=True)
                        ids = [row["notification_id"] for row in curs.fetchall()]
                        written = list(zip(ids, save.events, strict=True))
                        self._contexts.now = [save.context]
                        try:
                            self._after_insert(curs, written)
                        finally:
                            self._contexts.now = None
                    answers[n] = ids
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    raise
                except psycopg.Error as e:
                    answers[n] = persistence_error(e)
                except Exception as e:  # noqa: BLE001 (a hook's error is this save's answer)
                    answers[n] = e
        return answers

    def _extend_chain(
        self, conn: Connection[DictRow], written: list[tuple[int, StoredEvent]], prev: tuple[Any, Any] | None = None
    ) -> None:
        """The entries of ``written``. ``prev``: (position, MAC) of the newest entry, read under
        the lock in this transaction (both None when the chain is empty); otherwise asked for in
        ``_lock_table`` or read now."""
        # Runs inside the insert's transaction, after the table lock: no other insert can
        # commit between the previous entry read here and this transaction's commit.
        key = self.key
        if not self._key_checked:
            check_key(conn, key)
            self._key_checked = True
        written.sort(key=lambda w: w[0])
        if prev is None:
            cursor = self._prev_cursors.pop(conn, None)
            if cursor is None:  # a later save of a group written one by one: the entry its savepoint sees
                cursor = conn.cursor()
                cursor.execute(self._select_prev, prepare=True)
            with cursor:
                row = cursor.fetchone()
            prev = (row["notification_id"], row["mac"]) if row else (None, None)
        prev_id, prev_mac = (prev[0], bytes(prev[1])) if prev[0] is not None else (0, key.genesis)
        columns: tuple[list[Any], ...] = ([], [], [], [], [])
        for position, e in written:
            mac = key.link(prev_mac, prev_id, position, e.originator_id, e.originator_version, e.topic, e.state)
            for column, value in zip(
                columns, (position, prev_id, e.originator_id, e.originator_version, mac), strict=True
            ):
                column.append(value)
            prev_id, prev_mac = position, mac
        writes = folded.pending(conn)
        if writes is not None:
            writes.add(self._insert_chain, columns)
            return
        with conn.cursor() as cur:
            cur.execute(self._insert_chain, columns, prepare=True)


_BEGIN, _COMMIT, _ROLLBACK = b"BEGIN", b"COMMIT", b"ROLLBACK"


def _roll_back(conn: Connection[DictRow], pipeline: Any) -> None:
    """End a group's transaction that did not commit (a statement or a hook failed, or the
    caller was interrupted), so that the connection goes back to the pool idle. The first sync
    takes in what was still queued (a failed statement's error, raised already or not); the
    server then waits in the failed transaction block for the ROLLBACK. On a broken connection
    both fail: the pool discards it."""
    with contextlib.suppress(psycopg.Error):
        pipeline.sync()
    with contextlib.suppress(psycopg.Error):
        conn.execute(_ROLLBACK, prepare=True)
        pipeline.sync()


def check_key(conn: Connection[Any], key: ChainKey) -> None:
    """Refuse to write with another key than the store's: one misconfigured process would
    otherwise leave entries that nothing can verify. The first writer records its key."""
    table = Identifier(KEY_TABLE)
    with conn.cursor() as cur:
        cur.execute(SQL("SELECT fingerprint FROM {} ORDER BY since LIMIT 1").format(table))
        row = cur.fetchone()
        known = (row["fingerprint"] if isinstance(row, Mapping) else row[0]) if row else None
        if known is None:
            cur.execute(SQL("INSERT INTO {} (fingerprint) VALUES (%s)").format(table), (key.fingerprint,))
        elif known != key.fingerprint:
            raise ChainError(
                f"this process's GUANAI_CHAIN_KEY (fingerprint {key.fingerprint}) is not the key the event store "
                f"is chained with ({known}); every process that writes must share one key"
            )


def construct_recorder(
    factory: InfrastructureFactory[Any],
    *,
    key_loader: Callable[[], ChainKey],
    enabled: bool = True,
    extra_ddl: Sequence[Any] = (),
    insert_hooks: Sequence[Callable[[Cursor[DictRow], Sequence[tuple[int, StoredEvent]]], None]] = (),
    suite_name: str | None = None,
    tree: bool = True,
    group_commit: bool = True,
) -> ApplicationRecorder:
    """The application's recorder: chained when the store is PostgreSQL (with the key
    ``key_loader`` gives on first use, unless not ``enabled``), creating ``extra_ddl`` with the
    store and running ``insert_hooks`` in each insert's transaction. The store records the crypto
    suite ``suite_name`` when it is created; with ``tree``, each insert also extends the Merkle tree
    (false only to measure what the tree costs); with ``group_commit``, saves arriving together
    share a transaction (false only to measure what that saves)."""
    if not isinstance(factory, PostgresFactory):
        return factory.application_recorder()
    events_table = factory.env.name.lower() + "_events"
    recorder = ChainedRecorder(
        factory.datastore,
        events_table_name=events_table,
        key_loader=key_loader,
        enabled=enabled,
        group_commit=group_commit,
    )
    schema = factory.datastore.schema
    recorder.sql_create_statements.extend(
        merkle.tree_ddl(schema, events_table, suite_name or INTERNATIONAL.name, f"guanai/{uuid.uuid4()}")
    )
    recorder.sql_create_statements.extend(extra_ddl)
    recorder.insert_hooks.extend(insert_hooks)
    if factory.env_create_table():
        _create_tables_one_at_a_time(factory, recorder)
    with factory.datastore.get_connection() as conn:
        recorder.crypto_suite, recorder.origin = merkle.store_suite(conn, suite_name)
    if tree:
        if factory.env_create_table():
            # A store written before the tree existed: its events become the first leaves, once.
            with factory.datastore.get_connection() as conn:
                merkle.adopt(conn, schema, events_table, recorder.crypto_suite)
        recorder.tree = merkle.TreeWriter(schema, events_table, recorder.crypto_suite)
    return recorder


# Processes starting together (API, workers) must not run the library's CREATE ... statements at
# once: PostgreSQL answers "tuple concurrently updated" to one of them.
_SETUP_LOCK = 0x6775616E6169


def _create_tables_one_at_a_time(factory: Any, recorder: Any) -> None:
    pool = factory.datastore.pool
    with psycopg.connect(pool.conninfo, **(pool.kwargs or {})) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_SETUP_LOCK,))
        try:
            recorder.create_table()
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK,))


def adopt(database_url: str, key: ChainKey, events_table: str = "guanai_events", batch: int = 10_000) -> int:
    """Chain a store written before the chain existed: every event in log order, in one
    transaction under the library's lock (writers wait). Refused once any entry exists: events
    stored unchained after that are exactly what ``guanai audit verify`` must report. Their
    integrity before the adoption rests on the adoption, not on the writes; say so in reports."""
    chain = Identifier(chain_table(events_table))
    with psycopg.connect(database_url) as conn, conn.transaction():
        conn.execute(SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(Identifier(events_table)))
        if conn.execute(SQL("SELECT 1 FROM {} LIMIT 1").format(chain)).fetchone():
            raise ChainError("the store is already chained; `guanai audit verify` reports events stored outside it")
        check_key(conn, key)
        insert = SQL(
            "INSERT INTO {} (notification_id, prev_id, originator_id, originator_version, mac) "
            "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::uuid[], %s::bigint[], %s::bytea[])"
        ).format(chain)
        prev_id, prev_mac, count = 0, key.genesis, 0
        with conn.cursor("adopt") as rows, conn.cursor() as out:
            rows.itersize = batch
            rows.execute(
                SQL(
                    "SELECT notification_id, originator_id, originator_version, topic, state FROM {} "
                    "ORDER BY notification_id"
                ).format(Identifier(events_table))
            )
            columns: tuple[list[Any], ...] = ([], [], [], [], [])
            for position, oid, version, topic, state in rows:
                mac = key.link(prev_mac, prev_id, position, oid, version, topic, bytes(state))
                for column, value in zip(columns, (position, prev_id, oid, version, mac), strict=True):
                    column.append(value)
                prev_id, prev_mac, count = position, mac, count + 1
                if len(columns[0]) >= batch:
                    out.execute(insert, columns)
                    columns = ([], [], [], [], [])
            if columns[0]:
                out.execute(insert, columns)
    return count
