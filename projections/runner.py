"""The projection runner: applies the event store's notification log to read tables, exactly once.

Each projection keeps its position in ``projection_tracking``. A batch of notifications is read
once through the application's recorder, decoded once, and applied to every projection in one
transaction that also advances their tracking rows; a crash therefore loses or repeats nothing.
The tracking rows are locked (``FOR UPDATE``, in name order) while a batch is applied, so two
runners over the same database, or a ``catch_up`` racing a running loop, never apply an event
twice. New events are noticed by LISTEN on the library's channel, with a bounded poll as fallback.
While commands keep coming, batches start at most every ``batch_interval`` (50 ms): a wake-up
sooner than that after the last batch began waits for the rest of it, so that one batch (one
read, one transaction) carries the events of every command of that time; a wake-up after a
quiet spell is served at once. A batch's transaction
also NOTIFYs ``VIEWS_CHANNEL`` with its position, delivered when it commits: a process waiting
for the views to reach a position (``wait_for``, read-your-writes) LISTENs there from one thread
and wakes at once, instead of finding out by its next poll of the tracking rows.

A projection whose tables change shape says so with a new ``schema_version``; the version is
kept with its tracking row, and opening a runner over tables of another version drops them,
creates them anew and replays the projection from 0 (a view is derived, so nothing is lost).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Self

import psycopg
import structlog
from eventsourcing import persistence
from psycopg import sql
from psycopg_pool import ConnectionPool

from projections.batches import EventFilter, Projection, apply_events, decode_wanted
from projections.rebuild import rebuild_view

log = structlog.get_logger(__name__)

TRACKING_DDL = """
CREATE TABLE IF NOT EXISTS projection_tracking (
    name text PRIMARY KEY,
    position bigint NOT NULL,
    updated_at timestamptz
);
ALTER TABLE projection_tracking ADD COLUMN IF NOT EXISTS schema_version int NOT NULL DEFAULT 1;
"""
# Errors that say the database is away, from psycopg itself or from the event store library.
DATABASE_AWAY = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    persistence.OperationalError,
    persistence.InterfaceError,
)
# NOTIFYed by each batch's transaction with its last position (delivered at its commit).
VIEWS_CHANNEL = "guanai_views_advanced"
# Polls of the tracking rows while waiting for a position: the first after this many seconds, then
# twice as long each time, up to the first cap; up to the second while the views' NOTIFYs are
# heard (then a poll only covers a NOTIFY lost with a connection).
POLL_FIRST, POLL_CAP, POLL_CAP_LISTENING = 0.005, 0.05, 0.25
# Any constant works: it only serialises concurrent table creation between processes.
SETUP_LOCK = 0x6775616E6169  # "guanai"


class ProjectionRunner:
    """Runs several projections over one application's notification log.

    ``app`` needs ``recorder`` (a PostgreSQL application recorder) and ``mapper``. The runner
    writes through a connection pool of its own, opened by ``open()`` (or the first call that
    needs it), never at construction.
    """

    def __init__(
        self,
        app: Any,
        database_url: str,
        projections: Sequence[Projection],
        *,
        batch_size: int = 500,
        poll_interval: float = 2.0,
        pool_size: int = 4,
        batch_interval: float = 0.05,
    ) -> None:
        names = [p.name for p in projections]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"projections need distinct names, got {names}")
        self.app = app
        self.database_url = database_url
        self.projections = list(projections)
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        # While events keep coming, the least time from one batch's start to the next (seconds).
        # Most of a batch's cost is the same for one command as for twenty (its read, its
        # transaction, each view's statements, the commit): the views trail by at most this
        # much more under load, and the projector's and the database's CPU per command fall by
        # about a third to a half at 8 clients (docs/benchmarks.md, perf-write5).
        self.batch_interval = batch_interval
        self._last_batch = float("-inf")  # monotonic time the last catch-up of ``run`` began
        self._start: int | None = None  # lowest position of the projections, as last known
        self.pool = ConnectionPool(database_url, min_size=1, max_size=pool_size, open=False, name="projections")
        self._opened = False
        self._open_lock = threading.Lock()
        self._advanced = threading.Condition()
        self._batches = 0  # batches applied (by this runner, or heard of); waiters compare it to see progress
        self._watcher: threading.Thread | None = None  # LISTENs on VIEWS_CHANNEL for waiters
        self._watching = threading.Event()  # the watcher is listening
        self._stop_watching = threading.Event()
        self._wanted = EventFilter(self.projections)  # events no projection handles are not decoded

    # ---- lifecycle -----------------------------------------------------------------------------

    def open(self) -> None:
        """Open the pool, create every projection's tables and tracking row (idempotent)."""
        with self._open_lock:
            if self._opened:
                return
            self._stop_watching.clear()
            self.pool.open(wait=True)
            with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_LOCK,))
                cur.execute(TRACKING_DDL)
                for projection in self.projections:
                    version = getattr(projection, "schema_version", 1)
                    cur.execute("SELECT schema_version FROM projection_tracking WHERE name = %s", (projection.name,))
                    row = cur.fetchone()
                    if row is not None and row[0] != version:
                        log.info(
                            "view changed shape: replaying it from 0",
                            projection=projection.name,
                            old_version=row[0],
                            new_version=version,
                        )
                        tables = sql.SQL(", ").join(map(sql.Identifier, projection.tables))
                        cur.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(tables))
                        cur.execute(
                            "UPDATE projection_tracking SET position = 0, schema_version = %s, updated_at = now()"
                            " WHERE name = %s",
                            (version, projection.name),
                        )
                    projection.create_tables(cur)
                    cur.execute(
                        "INSERT INTO projection_tracking (name, position, updated_at, schema_version)"
                        " VALUES (%s, 0, now(), %s) ON CONFLICT (name) DO NOTHING",
                        (projection.name, version),
                    )
            self._opened = True

    def close(self) -> None:
        self._stop_watching.set()
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.join(2.0)
        self.pool.close()
        self._opened = False

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- positions -----------------------------------------------------------------------------

    def positions(self) -> dict[str, int]:
        """Every projection's committed position (notification id of the last event applied)."""
        self.open()
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT name, position FROM projection_tracking WHERE name = ANY(%s)",
                ([p.name for p in self.projections],),
            ).fetchall()
        return {name: position for name, position in rows}

    def position(self, name: str | None = None) -> int:
        """One projection's position; without a name, the lowest of all of them."""
        positions = self.positions()
        if name is None:
            return min(positions.values())
        return positions[name]

    def wait_for(self, position: int | None, timeout: float = 2.0, names: Sequence[str] | None = None) -> bool:
        """True once the projections (all, or ``names``) have applied ``position``; False after
        ``timeout`` seconds. Wakes at once when this process applies a batch and otherwise
        polls the tracking rows, so it also works when another process runs the projections:
        that process's batches NOTIFY their commit, which wakes the wait too (``_watch``)."""
        if position is None:
            return True
        deadline = time.monotonic() + timeout
        delay = POLL_FIRST
        while True:
            with self._advanced:
                seen = self._batches
            current = self.positions()
            if all(current[n] >= position for n in (names or current)):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._start_watching()
            with self._advanced:
                if self._batches == seen:
                    self._advanced.wait(min(remaining, delay))
            delay = min(delay * 2, POLL_CAP_LISTENING if self._watching.is_set() else POLL_CAP)

    def _start_watching(self) -> None:
        """The watcher thread, started by the first wait that has to wait."""
        if self._watcher is not None:
            return
        with self._open_lock:
            if self._watcher is None and not self._stop_watching.is_set():
                self._watcher = threading.Thread(target=self._watch, name="views-watcher", daemon=True)
                self._watcher.start()

    def _watch(self) -> None:
        """LISTEN on ``VIEWS_CHANNEL`` and wake every waiter on each NOTIFY, until ``close()``; a
        lost connection is made again after a pause (the waits poll meanwhile)."""
        while not self._stop_watching.is_set():
            try:
                with psycopg.connect(self.database_url, autocommit=True) as listener:
                    listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(VIEWS_CHANNEL)))
                    self._watching.set()
                    while not self._stop_watching.is_set():
                        if any(True for _ in listener.notifies(timeout=0.25, stop_after=1)):
                            # Drain what piled up: one wake-up covers it all.
                            sum(1 for _ in listener.notifies(timeout=0, stop_after=10_000))
                            with self._advanced:
                                self._batches += 1
                                self._advanced.notify_all()
            except psycopg.Error as e:
                log.warning("views watcher lost its connection; waits poll meanwhile", error=type(e).__name__)
            finally:
                self._watching.clear()
            self._stop_watching.wait(1.0)

    def lag(self) -> dict[str, Any]:
        """How far the slowest projection trails the log: events and seconds (age of the oldest
        event it has not applied, by recording time; 0 when caught up)."""
        position = self.position()
        recorder = self.app.recorder
        table = sql.Identifier(recorder.datastore.schema, recorder.events_table_name)
        with self.pool.connection() as conn:
            behind = conn.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE notification_id > %s").format(table), (position,)
            ).fetchone()[0]
        seconds = 0.0
        if behind:
            oldest = recorder.select_notifications(start=position, limit=1, inclusive_of_start=False)
            if oldest:
                timestamp = self.app.mapper.to_domain_event(oldest[0]).timestamp
                seconds = max(0.0, (datetime.now(UTC) - timestamp).total_seconds())
        return {"events_behind": behind, "seconds_behind": seconds, "position": position}

    # ---- processing ----------------------------------------------------------------------------

    def catch_up(self, max_batches: int | None = None, stop_event: threading.Event | None = None) -> int:
        """Apply everything recorded so far (or ``max_batches`` batches); returns how many
        notifications were read. Stops between batches when ``stop_event`` is set."""
        self.open()
        total = batches = 0
        while max_batches is None or batches < max_batches:
            if stop_event is not None and stop_event.is_set():
                break
            read, complete = self._process_batch()
            total += read
            batches += 1
            # A short batch reached the end of the log: what is recorded next will be NOTIFYed.
            if read < self.batch_size and complete:
                break
        return total

    def run(self, stop_event: threading.Event) -> None:
        """Apply new events as they are recorded until ``stop_event`` is set; the batch in hand
        is finished first. Errors (a lost connection, a failing projection) are logged and
        retried with a growing pause, so a projection never skips an event."""
        self.open()
        backoff = 0.5
        log.info("projections running", projections=[p.name for p in self.projections], position=self.position())
        while not stop_event.is_set():
            try:
                with psycopg.connect(self.database_url, autocommit=True) as listener:
                    listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.app.recorder.channel_name)))
                    while not stop_event.is_set():
                        # Listening started before this catch-up, so nothing recorded meanwhile is missed.
                        self._last_batch = time.monotonic()
                        self.catch_up(stop_event=stop_event)
                        backoff = 0.5
                        self._wait_for_news(listener, stop_event)
            except DATABASE_AWAY as e:
                # The database went away (a restart, a failover): dead connections may wait idle
                # in the pool, so check them all now, and try again soon: the views should follow
                # within seconds of the database's return.
                log.warning("projection database unavailable; retrying", error=type(e).__name__, retry_in=backoff)
                with contextlib.suppress(Exception):
                    self.pool.check()
                stop_event.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:
                log.exception("projection batch failed; retrying", retry_in=backoff)
                stop_event.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        log.info("projections stopped", position=self.position())

    def reset(self, name: str) -> None:
        """Empty one projection and put its position back to 0; the next catch-up replays it."""
        projection = self._projection(name)
        self.open()
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT position FROM projection_tracking WHERE name = %s FOR UPDATE", (name,))
            projection.reset(cur)
            cur.execute("UPDATE projection_tracking SET position = 0, updated_at = now() WHERE name = %s", (name,))
        self._start = None

    def rebuild(
        self,
        name: str,
        *,
        batch_size: int = 5000,
        progress: Callable[[Any], None] | None = None,
        gc_threshold: int | None = None,
    ) -> int:
        """Replay the whole log into new tables for one projection while its current tables keep
        serving, then swap them in one transaction (projections/rebuild.py); returns the number
        of events read. ``progress`` gets a ``Progress`` after each batch. ``gc_threshold`` sets
        the process's garbage collector meanwhile: only for a process that does nothing else
        (see ``rebuild_view``)."""
        self.open()
        return rebuild_view(
            self, self._projection(name), batch_size=batch_size, progress=progress, gc_threshold=gc_threshold
        )

    def _projection(self, name: str) -> Projection:
        for projection in self.projections:
            if projection.name == name:
                return projection
        raise KeyError(name)

    def _wait_for_news(self, listener: psycopg.Connection[Any], stop_event: threading.Event) -> None:
        # Short waits keep stop() prompt; the poll interval bounds how long a lost NOTIFY delays us.
        deadline = time.monotonic() + self.poll_interval
        while not stop_event.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if any(True for _ in listener.notifies(timeout=min(remaining, 0.25), stop_after=1)):
                # Sooner than ``batch_interval`` after the last batch began: commands are
                # coming; let the others of this interval commit, so one batch carries them all.
                early = self._last_batch + self.batch_interval - time.monotonic()
                if early > 0:
                    stop_event.wait(early)
                # Drain the NOTIFYs that piled up: one catch-up covers them all.
                for _ in listener.notifies(timeout=0, stop_after=10_000):
                    pass
                return

    def _process_batch(self) -> tuple[int, bool]:
        """Read one batch from the lowest position and apply it to every projection that has not
        applied it, in one transaction; returns how many notifications were read and whether
        every projection has now applied all of them (false when one was found reset, or
        moved back by another process, behind the batch: the next batch re-reads from there)."""
        start = self._start
        if start is None:
            start = min(self.positions().values())
        notifications = self.app.recorder.select_notifications(
            start=start, limit=self.batch_size, inclusive_of_start=False
        )
        if not notifications:
            if self._start is not None:
                # Nothing new past the position we knew: make sure no view was reset meanwhile
                # (by another process) before saying so; it costs a look at idle wake-ups only.
                self._start = None
                return self._process_batch()
            self._start = start
            return 0, True
        events = decode_wanted(self.app.mapper, notifications, self._wanted)
        last = notifications[-1].id
        names = [p.name for p in self.projections]
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            # Every tracking row locked in one statement, in name order: runners cannot deadlock.
            cur.execute(
                "SELECT name, position FROM projection_tracking WHERE name = ANY(%s) ORDER BY name FOR UPDATE",
                (names,),
            )
            positions: dict[str, int] = dict(cur.fetchall())
            advanced = []
            for projection in self.projections:
                position = positions.get(projection.name)
                if position is None or position < start or position >= last:
                    continue  # reset meanwhile (re-read below), or ahead of this batch
                todo = [(i, e) for i, e in events if i > position]
                if todo:
                    apply_events(conn, cur, projection, todo)
                advanced.append(projection.name)
            if advanced:
                # With the NOTIFY that wakes the waiters of other processes when this commits.
                cur.execute(
                    "WITH t AS (UPDATE projection_tracking SET position = %s, updated_at = now() WHERE name = ANY(%s))"
                    " SELECT pg_notify(%s, %s)",
                    (last, advanced, VIEWS_CHANNEL, str(last)),
                )
        positions.update(dict.fromkeys(advanced, last))
        self._start = min(positions.values(), default=last)
        log.debug("projections advanced", projections=advanced, position=last)
        with self._advanced:
            self._batches += 1
            self._advanced.notify_all()
        return len(notifications), self._start >= last
