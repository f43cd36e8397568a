"""Rebuilding one view from zero while the old one keeps serving, then swapping it in.

The projection's tables are created in a schema of their own (``rebuild_<name>``: the rebuild
connection's ``search_path`` puts it before ``public``, so the projection's unqualified DDL and
statements land there unchanged) and the whole notification log is replayed into them in large
batches; indexes that back no constraint are dropped first and built once from the finished
rows, before the swap, instead of being kept up to date through the replay. Meanwhile readers and the live runner keep using the tables in ``public``. The swap is
one transaction: lock the projection's tracking row (the live runner waits), apply the events
recorded since the last batch, drop the old tables, move the new ones (with their indexes) into
``public`` and set the tracking position to the last event applied. A reader sees either the
old view or the new one, never a half-built one; a rebuild that dies leaves the old view as it
was (its scratch schema is dropped by the next rebuild). An advisory lock keeps two rebuilds of
one view from running at once.
"""

from __future__ import annotations

import contextlib
import gc
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from eventsourcing.persistence import Notification
from psycopg import sql
from psycopg.rows import tuple_row

from projections.batches import EventFilter, apply_events, decode_wanted

# Any constant works: with the view's name it identifies "a rebuild of this view is running".
REBUILD_LOCK = 0x72626C64  # "rbld"


class RebuildBusyError(RuntimeError):
    """Another rebuild of the same view is running."""


@dataclass(frozen=True)
class Progress:
    name: str
    done: int  # events read so far
    total: int  # events in the log when the rebuild started (more may arrive)
    elapsed: float  # seconds

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        return max(0.0, (self.total - self.done) / self.rate) if self.rate > 0 else None


def rebuild_view(
    runner: Any,
    projection: Any,
    *,
    batch_size: int = 5000,
    progress: Callable[[Progress], None] | None = None,
    gc_threshold: int | None = None,
) -> int:
    """Replay the log into new tables for ``projection`` and swap them in; returns the number of
    events read. ``runner`` is the ProjectionRunner whose tracking rows and log are used.

    ``gc_threshold``: the cyclic garbage collector's threshold for its youngest generation during
    the replay (``_fewer_collections``), restored after; None leaves the collector alone. The
    setting is the process's, not the rebuild's: only a process that does nothing else while it
    rebuilds (``guanai projections rebuild``, ``guanai restore``) should give one, never one
    where an API, a projector or workers run beside the rebuild (``guanai serve``)."""
    name = projection.name
    schema = sql.Identifier(f"rebuild_{name}")
    recorder, mapper = runner.app.recorder, runner.app.mapper
    wanted = EventFilter([projection])
    events_table = sql.Identifier(recorder.datastore.schema, recorder.events_table_name)
    # The log as the library's select_notifications reads it, without the states of the events
    # the view ignores (transferred only to be dropped).
    read_sql = sql.SQL(
        "SELECT notification_id, {}, originator_version, topic,"
        " CASE WHEN topic = ANY(%s::text[]) THEN NULL ELSE state END"
        " FROM {} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
    )
    # A projection's replay_reader gets each originator's id as its 16 bytes (no UUID made).
    replay_sql = read_sql.format(sql.SQL("uuid_send(originator_id)"), events_table)
    read_sql = read_sql.format(sql.Identifier("originator_id"), events_table)
    with psycopg.connect(runner.database_url, autocommit=True) as conn:
        if not conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (REBUILD_LOCK, name)).fetchone()[0]:
            raise RebuildBusyError(f"a rebuild of {name} is already running")
        try:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
            conn.execute(sql.SQL("SET search_path TO {}, public").format(schema))
            with conn.transaction(), conn.cursor() as cur:
                projection.create_tables(cur)
                # Indexes that only serve reads are built once at the end, from the finished rows,
                # instead of kept up to date through every insert and update of the replay.
                deferred = _drop_read_indexes(cur, f"rebuild_{name}")
            total = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(events_table)).fetchone()[0]
            started = time.monotonic()
            position = done = 0

            ignored: set[str] = set()  # topics of events the view ignores, as met so far
            # The mapper's decoder of plain rows (what it knows of a topic kept across batches),
            # or the library's way, through a Notification per row.
            rows_decoder = getattr(mapper, "rows_decoder", None)
            decode_rows = None if rows_decoder is None else rows_decoder(wanted.fields)

            def decode(rows: list[tuple[int, Any, int, str, Any]]) -> list[tuple[int, Any]]:
                if decode_rows is not None:
                    return decode_rows(rows)
                stored = [Notification(id=r[0], originator_id=r[1], originator_version=r[2], topic=r[3],
                                       state=bytes(r[4])) for r in rows]  # fmt: skip
                return decode_wanted(mapper, stored, wanted)

            # A projection may read the replay's rows its own way (``replay_reader``: e.g. straight
            # from the stored states into its rows, the rows it cannot read that way through
            # ``decode``, each originator's id given as its 16 bytes) for its ``rebuild_batch``;
            # the catch-up before the swap reads events.
            replay_reader = getattr(projection, "replay_reader", None)
            read_replay = None if replay_reader is None else replay_reader(mapper, decode)

            def read(start: int, replay: bool = False) -> Batch:
                """The next batch of the log: every row, but the state only of events whose topic
                is not known to be ignored (learnt from the batches before), as plain tuples, in
                binary (a state's bytes as they are, not as hex text to decode). ``replay``: read
                by the projection's ``replay_reader`` when it has one."""
                replay = replay and read_replay is not None
                with (
                    recorder.datastore.get_connection() as reader,
                    reader.cursor(row_factory=tuple_row, binary=True) as cur,
                ):
                    statement = replay_sql if replay else read_sql
                    rows = cur.execute(statement, (list(ignored), start, batch_size), prepare=True).fetchall()
                keep = []
                for row in rows:
                    if wanted(row[3]):
                        if row[4] is None:  # not read: its topic resolves now to a class the view handles
                            raise RuntimeError(f"the state of notification {row[0]} was left unread")
                        keep.append(row)
                    else:
                        ignored.add(row[3])
                last = rows[-1][0] if rows else start
                if replay:
                    return Batch(last, len(rows), read_replay(keep))  # type: ignore[misc]
                return Batch(last, len(rows), decode(keep))

            # A projection may replay into its empty tables by other means than its live batches
            # (``rebuild_batch``), finished once after the replay (``finish_rebuild``: e.g. counts
            # made from the finished rows); what was recorded meanwhile goes through ``apply_events``.
            replay_batch = getattr(projection, "rebuild_batch", None)

            def apply(cur: psycopg.Cursor[Any], batch: Batch, *, replay: bool = False) -> None:
                nonlocal position, done
                if replay and replay_batch is not None:
                    replay_batch(cur, batch.events)
                else:
                    apply_events(conn, cur, projection, batch.events)
                position, done = batch.last, done + batch.read
                if progress is not None:
                    progress(Progress(name, done, max(total, done), time.monotonic() - started))

            # The log is read and decoded a batch ahead, in a thread, while PostgreSQL applies the
            # batch before: the two share the time instead of taking turns.
            with _fewer_collections(gc_threshold) if gc_threshold is not None else contextlib.nullcontext():
                for batch in _read_ahead(lambda start: read(start, replay=True), batch_size):
                    with conn.transaction(), conn.cursor() as cur:
                        # The scratch tables have no statistics yet and a batch's rows, as one JSON
                        # array, are estimated at 100: the planner joined an UPDATE's rows to its
                        # table by a scan of the whole (growing) table, where each row is one look-up
                        # by primary key. For the replay's transactions only.
                        cur.execute("SET LOCAL enable_seqscan = off")
                        # Nor does a replayed batch wait for its WAL to reach the disk: its rows are
                        # in the scratch schema, which nothing reads and a failed rebuild leaves to
                        # be dropped. The swap's commit is synchronous, and flushing its WAL flushes
                        # all of the replay's before it, so a swapped-in view is as durable as ever;
                        # a server crash ends this connection, so nothing is written after a lost batch.
                        cur.execute("SET LOCAL synchronous_commit = off")
                        apply(cur, batch, replay=True)
            with conn.transaction(), conn.cursor() as cur:
                if replay_batch is not None:
                    projection.finish_rebuild(cur)
                for definition in deferred:
                    cur.execute(definition)
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT position FROM public.projection_tracking WHERE name = %s FOR UPDATE", (name,))
                while (batch := read(position)).read:  # what was recorded since the last batch
                    apply(cur, batch)
                _swap(cur, f"rebuild_{name}")
                cur.execute(
                    "UPDATE public.projection_tracking SET position = %s, updated_at = now() WHERE name = %s",
                    (position, name),
                )
            return done
        finally:
            # Closing the connection also releases the lock; this is tidying, not correctness.
            with contextlib.suppress(psycopg.Error):
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
                conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (REBUILD_LOCK, name))


# The youngest generation's threshold a process that only rebuilds sets during the replay.
REBUILD_GC_THRESHOLD = 100_000


@contextlib.contextmanager
def _fewer_collections(threshold: int) -> Iterator[None]:
    """The cyclic garbage collector less often during the replay: a batch holds thousands of
    decoded events alive across many collections of the youngest generation, so with the default
    threshold (700 allocations) most of the time went into collections that free nothing (the
    profile of a timeline batch: 4.4 s with the collector, 1.6 s without). Still collected, and
    restored after. Process-wide: every thread of the process collects less often meanwhile."""
    before = gc.get_threshold()
    gc.set_threshold(threshold, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


@dataclass(frozen=True)
class Batch:
    last: int  # notification id of the last event read (the position once applied)
    read: int  # events read
    events: list[Any]  # (notification id, event) of those the projection handles, or what its replay_reader read


def _read_ahead(read: Callable[[int], Batch], batch_size: int) -> Iterator[Batch]:
    """The batches from the start of the log to the first short one, each read (by ``read(start)``)
    in a thread while the caller applies the one before. At most two wait in hand; an error in
    the thread is raised here; leaving the loop early stops the thread."""
    ready: queue.Queue[Batch | BaseException | None] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def reader() -> None:
        start = 0
        try:
            while not stop.is_set():
                batch = read(start)
                _put(ready, batch, stop)
                if batch.read < batch_size:
                    break
                start = batch.last
            _put(ready, None, stop)
        except Exception as e:  # noqa: BLE001 - handed to the caller, who raises it
            _put(ready, e, stop)

    thread = threading.Thread(target=reader, name="rebuild-reader", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _put(ready: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            ready.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _drop_read_indexes(cur: psycopg.Cursor[Any], schema: str) -> list[str]:
    """Drop the indexes of ``schema``'s tables that back no constraint (primary keys and unique
    constraints stay: statements rely on them); returns the statements that create them again."""
    rows = cur.execute(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i"
        " JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace"
        " WHERE n.nspname = %s AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
        (schema,),
    ).fetchall()
    for index, _definition in rows:
        cur.execute(sql.SQL("DROP INDEX {}").format(sql.SQL(index)))
    return [definition for _index, definition in rows]


def _swap(cur: psycopg.Cursor[Any], schema: str) -> None:
    """Replace the public tables by the rebuilt ones of the same names (indexes move along)."""
    tables = [r[0] for r in cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))]
    old = [
        r[0]
        for r in cur.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY(%s)", (tables,)
        )
    ]
    if old:
        names = sql.SQL(", ").join(sql.Identifier("public", t) for t in old)
        # One statement takes every lock at once, so readers of several tables cannot deadlock with us.
        cur.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(names))
        cur.execute(sql.SQL("DROP TABLE {}").format(names))
    for table in tables:
        cur.execute(sql.SQL("ALTER TABLE {} SET SCHEMA public").format(sql.Identifier(schema, table)))
