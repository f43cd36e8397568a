"""The relay: every stored event, in notification order, onto a JetStream stream.

It tails the event store's notification log (LISTEN on the library's channel, with a bounded
poll as fallback) and publishes each event with ``Nats-Msg-Id`` = its notification id. Its
position is saved only after JetStream acknowledged the publish, so a crash anywhere repeats
events, never loses one; JetStream drops the repeats inside its duplicate window and consumers
are idempotent beyond it. When NATS is away the relay waits and retries from the same position.

When the database goes away (a restart, a crash, a failover) the relay drops both of its own
connections, whatever it was doing, and opens new ones once the database answers again; its
position is then read back from ``relay_tracking``, so a save that died with the connection is
simply repeated. The event store's pool discards a broken connection when it is returned, and
idle ones are checked after an outage. It never stops for good on an error: it waits, with a
pause growing to 5 s, and tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import nats
import psycopg
import structlog
from eventsourcing.persistence import PersistenceError

from infrastructure import metrics
from infrastructure.failpoints import failpoint
from infrastructure.settings import nats_servers
from projections.batches import decode_all
from workers.envelope import encode, envelope, subject_for
from workers.runtime import keep_running
from workers.stream import DUPLICATE_WINDOW_SECONDS, STREAM, SUBJECT_PREFIX, ensure_stream

__all__ = [
    "DUPLICATE_WINDOW_SECONDS",
    "STREAM",
    "SUBJECT_PREFIX",
    "Relay",
    "ensure_stream",
    "relay_worker",
    "run_relay",
]

log = structlog.get_logger("guanai.relay")

# A connection to a database that vanished from the network (no RST) would otherwise wait for
# the kernel's two-hour default before reporting the loss.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
CONNECT_TIMEOUT = 5

# What a publish answers when no stream takes its subject.
NO_STREAM = (nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError, nats.js.errors.NotFoundError)

TRACKING_DDL = """
CREATE TABLE IF NOT EXISTS relay_tracking (
    name text PRIMARY KEY,
    position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""


class Relay:
    """Publishes the notification log of ``app`` (a CareApplication) to JetStream."""

    def __init__(
        self,
        app: Any,
        database_url: str,
        nats_url: str,
        *,
        stream: str = STREAM,
        subject_prefix: str = SUBJECT_PREFIX,
        name: str = "relay",
        batch_size: int = 256,
        poll_interval: float = 1.0,
    ) -> None:
        self.app = app
        self.database_url = database_url
        self.nats_url = nats_url
        self.stream = stream
        self.prefix = subject_prefix
        self.name = name
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.nc: Any = None
        self.js: Any = None
        self._db: psycopg.AsyncConnection[Any] | None = None
        self._position = 0
        self._acked = 0
        self.published = 0
        self._published = metrics.RELAY_PUBLISHED.labels(name)
        self._unwatch: Callable[[], None] | None = None

    def events_behind(self) -> int:
        """Events stored past the saved position (what ``guanai_relay_events_behind`` shows)."""
        return max(0, int(self.app.recorder.max_notification_id() or 0) - self._position)

    async def open(self) -> None:
        if self._unwatch is None:
            self._unwatch = metrics.RELAY_BEHIND.watch(lambda: [(self.name, float(self.events_behind()))])
        await self._connect_db()
        self.nc = await nats.connect(
            nats_servers(self.nats_url), name=f"guanai-{self.name}", max_reconnect_attempts=-1, reconnect_time_wait=0.5
        )
        self.js = self.nc.jetstream()
        await ensure_stream(self.js, self.stream, self.prefix)

    async def _connect_db(self) -> psycopg.AsyncConnection[Any]:
        """(Re)open the tracking connection and read the saved position back from the store:
        after a lost connection, what the database holds is what counts."""
        self._db = await _connect(self.database_url)
        await self._db.execute(TRACKING_DDL)
        await self._db.execute(
            "INSERT INTO relay_tracking (name, position) VALUES (%s, 0) ON CONFLICT (name) DO NOTHING", (self.name,)
        )
        row = await (
            await self._db.execute("SELECT position FROM relay_tracking WHERE name = %s", (self.name,))
        ).fetchone()
        self._position = int(row[0]) if row else 0
        self._acked = min(self._acked, self._position)
        return self._db

    async def _drop_db(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(Exception):
                await db.close()

    async def close(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
        await self._drop_db()

    @property
    def position(self) -> int:
        return self._position

    async def publish_available(self) -> int:
        """Publish everything after the saved position; returns how many were published."""
        total = 0
        while True:
            notifications = await asyncio.to_thread(
                self.app.recorder.select_notifications,
                start=self._position,
                limit=self.batch_size,
                inclusive_of_start=False,
            )
            if not notifications:
                return total
            events = await asyncio.to_thread(decode_all, self.app.mapper, notifications)
            failpoint("relay.before_publish")
            try:
                for notification, event in zip(notifications, events, strict=True):
                    # Sequential publishes keep the stream in notification order.
                    await self.js.publish(
                        subject_for(self.prefix, event),
                        encode(envelope(event, notification.id)),
                        stream=self.stream,
                        headers={"Nats-Msg-Id": str(notification.id)},
                        timeout=5,
                    )
                    self._acked = notification.id
                    total += 1
                    self.published += 1
                    self._published.inc()
            finally:
                # Saved once per batch, and only up to the last acknowledged publish: a crash
                # repeats at most one batch, which JetStream drops as duplicates.
                failpoint("relay.before_save")
                if self._acked > self._position:
                    await self._save(self._acked)

    async def _save(self, position: int) -> None:
        db = self._db if self._db is not None else await self._connect_db()
        await db.execute(
            "UPDATE relay_tracking SET position = %s, updated_at = now() WHERE name = %s AND position < %s",
            (position, self.name, position),
        )
        self._position = position

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set; wakes on NOTIFY, polls as a fallback, retries on errors."""
        listener: psycopg.AsyncConnection[Any] | None = None
        delay = 0.2
        try:
            while not stop.is_set():
                try:
                    if listener is None:
                        # LISTEN before reading: nothing recorded in between goes unnoticed.
                        listener = await _connect(self.database_url)
                        await listener.execute("LISTEN guanai_events")
                    if self._db is None:
                        await self._connect_db()
                    failpoint("relay.before_select")
                    await self.publish_available()
                    delay = 0.2
                    failpoint("relay.idle")
                    await _wait_for_notify(listener, stop, self.poll_interval)
                except Exception as e:  # noqa: BLE001 - the relay must outlive any outage
                    # The position did not advance past anything unacknowledged, so nothing is
                    # lost; retry from there. A database error drops both connections, whichever
                    # failed: the other one is as likely dead and would fail next.
                    database = _is_database_error(e)
                    log.warning("relay_retry", error=type(e).__name__, position=self._position, delay=delay,
                                database=database)  # fmt: skip
                    if isinstance(e, NO_STREAM):
                        # The stream was deleted (by hand, or lost): make it again and go on; the
                        # workers' reconcilers route what it held from the event store.
                        with contextlib.suppress(Exception):
                            await ensure_stream(self.js, self.stream, self.prefix)
                    if database:
                        listener = await _close_quietly(listener)
                        await self._drop_db()
                        await asyncio.to_thread(_check_pool, self.app)
                    await _wait(stop, delay)
                    delay = min(delay * 2, 5.0)
        finally:
            await _close_quietly(listener)


async def _connect(url: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT, **KEEPALIVES)


async def _close_quietly(conn: psycopg.AsyncConnection[Any] | None) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            await conn.close()


def _is_database_error(e: BaseException) -> bool:
    """A psycopg error (a pool that timed out included) or the event store library's wrapping of one."""
    return isinstance(e, psycopg.Error | PersistenceError)


def _check_pool(app: Any) -> None:
    """Replace the event store pool's idle connections that died with the server, so the next
    read does not spend its retries finding them one by one."""
    pool = getattr(getattr(getattr(app, "recorder", None), "datastore", None), "pool", None)
    if pool is not None:
        with contextlib.suppress(Exception):
            pool.check()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def _wait_for_notify(listener: psycopg.AsyncConnection[Any], stop: asyncio.Event, timeout: float) -> None:
    if stop.is_set():
        return
    async for _ in listener.notifies(timeout=timeout, stop_after=1):
        break


async def run_relay(app: Any, database_url: str, nats_url: str, stop: asyncio.Event, **options: Any) -> Relay:
    relay = Relay(app, database_url, nats_url, **options)
    await relay.open()
    try:
        log.info("relay_started", position=relay.position, stream=relay.stream)
        await relay.run(stop)
    finally:
        await relay.close()
    return relay


def relay_worker(make_app: Callable[[], Any], database_url: str, nats_url: str, **options: Any) -> Any:
    """A worker for workers.runtime: the relay with its own CareApplication (only read), which
    ``make_app`` builds (guanai/bootstrap.py: messages carry no personal data, so the relay's
    application opens none and holds no master key)."""

    async def once(stop: asyncio.Event) -> None:
        app = await asyncio.to_thread(make_app)
        try:
            await run_relay(app, database_url, nats_url, stop, **options)
        finally:
            app.close()

    async def work(stop: asyncio.Event) -> None:
        # A relay that stays down stalls every worker behind it: restart it, whatever failed.
        await keep_running("relay", stop, once)

    return work
