"""The relay: every stored event, in notification order, onto a JetStream stream.

It tails the event store's notification log (LISTEN on the library's channel, with a bounded
poll as fallback) and publishes each event with ``Nats-Msg-Id`` = its notification id. Its
position is saved only after JetStream acknowledged the publish, so a crash anywhere repeats
events, never loses one; JetStream drops the repeats inside its duplicate window and consumers
are idempotent beyond it. When NATS is away the relay waits and retries from the same position.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import nats
import psycopg
import structlog
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError

from projections.runner import decode_all
from workers.envelope import encode, envelope, subject_for
from workers.runtime import keep_running

log = structlog.get_logger("guanai.relay")

STREAM = "GUANAI_EVENTS"
SUBJECT_PREFIX = "guanai.events"
DUPLICATE_WINDOW_SECONDS = 15 * 60  # longer than any restart we expect; consumers dedupe beyond it

TRACKING_DDL = """
CREATE TABLE IF NOT EXISTS relay_tracking (
    name text PRIMARY KEY,
    position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""


async def ensure_stream(js: Any, stream: str = STREAM, prefix: str = SUBJECT_PREFIX) -> None:
    config = StreamConfig(
        name=stream,
        subjects=[f"{prefix}.>"],
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
    )
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.update_stream(config)


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

    async def open(self) -> None:
        self._db = await psycopg.AsyncConnection.connect(self.database_url, autocommit=True)
        await self._db.execute(TRACKING_DDL)
        await self._db.execute(
            "INSERT INTO relay_tracking (name, position) VALUES (%s, 0) ON CONFLICT (name) DO NOTHING", (self.name,)
        )
        row = await (await self._db.execute("SELECT position FROM relay_tracking WHERE name = %s", (self.name,))).fetchone()
        self._position = int(row[0]) if row else 0
        self.nc = await nats.connect(self.nats_url, name=f"guanai-{self.name}", max_reconnect_attempts=-1, reconnect_time_wait=0.5)
        self.js = self.nc.jetstream()
        await ensure_stream(self.js, self.stream, self.prefix)

    async def close(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
        if self._db is not None:
            await self._db.close()

    @property
    def position(self) -> int:
        return self._position

    async def publish_available(self) -> int:
        """Publish everything after the saved position; returns how many were published."""
        total = 0
        while True:
            notifications = await asyncio.to_thread(
                self.app.recorder.select_notifications, start=self._position, limit=self.batch_size, inclusive_of_start=False
            )
            if not notifications:
                return total
            events = await asyncio.to_thread(decode_all, self.app.mapper, notifications)
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
            finally:
                # Saved once per batch, and only up to the last acknowledged publish: a crash
                # repeats at most one batch, which JetStream drops as duplicates.
                if self._acked > self._position:
                    await self._save(self._acked)

    async def _save(self, position: int) -> None:
        assert self._db is not None
        await self._db.execute(
            "UPDATE relay_tracking SET position = %s, updated_at = now() WHERE name = %s AND position < %s",
            (position, self.name, position),
        )
        self._position = position

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set; wakes on NOTIFY, polls as a fallback, retries on errors."""
        listener = await psycopg.AsyncConnection.connect(self.database_url, autocommit=True)
        await listener.execute("LISTEN guanai_events")
        delay = 0.2
        try:
            while not stop.is_set():
                try:
                    await self.publish_available()
                    delay = 0.2
                except Exception as e:  # noqa: BLE001 - the relay must outlive any outage
                    # NATS or the database is away: the position did not advance past anything
                    # unacknowledged, so nothing is lost; retry from there.
                    log.warning("relay_retry", error=type(e).__name__, position=self._position, delay=delay)
                    await _wait(stop, delay)
                    delay = min(delay * 2, 5.0)
                    continue
                await _wait_for_notify(listener, stop, self.poll_interval)
        finally:
            await listener.close()


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


def relay_worker(database_url: str, nats_url: str, **options: Any) -> Any:
    """A worker for workers.runtime: the relay with its own CareApplication (only read)."""

    async def once(stop: asyncio.Event) -> None:
        from application.care import CareApplication, event_store_env

        # Messages carry no personal data, so the relay opens none: it holds no master key.
        app = await asyncio.to_thread(
            lambda: CareApplication(event_store_env(database_url, pool_size=2), opens_personal_data=False)
        )
        try:
            await run_relay(app, database_url, nats_url, stop, **options)
        finally:
            app.close()

    async def work(stop: asyncio.Event) -> None:
        # A relay that stays down stalls every worker behind it: restart it, whatever failed.
        await keep_running("relay", stop, once)

    return work
