"""Whether the relay and the workers make progress: for ``/health`` and ``guanai lag``.

A process that is up can still be stuck (issue 12, item 9: a relay repeating the same failed
save while every report filed after it stayed off the stream, and health said ok). So neither
check asks whether a process runs; both ask whether work waits and nobody has touched it:

- **relay**: events are stored past its saved position, the oldest of them was recorded more
  than ``stall_seconds`` ago, and the position has not moved for as long. A relay catching up
  on a backlog moves its position every batch and is not stalled; an idle relay is not either.
- **workers** (router, escalator, scheduler): their durable JetStream consumer has messages not
  yet delivered, and it has delivered nothing for ``stall_seconds`` (or never, since it was
  created that long ago). A consumer that does not exist is reported absent: that worker never
  ran against this stream, which is not a stall (``guanai serve --no-workers``, a deployment
  without a scheduler).

These names are the defaults the workers use (``workers/relay.py``, ``router.py``,
``escalator.py``, ``scheduler.py``); a test keeps them equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from nats.js.errors import NotFoundError

STALL_SECONDS = 30.0
STREAM = "GUANAI_EVENTS"
RELAY = "relay"
CONSUMERS = {
    "router": "emergency-router",
    "router-visits": "emergency-router-visits",
    "escalator": "emergency-escalator",
    "scheduler": "visit-scheduler",
}


@dataclass(frozen=True)
class Watch:
    """What to watch: the relay's tracking name, the stream, and each worker's durable consumer."""

    relay: str = RELAY
    stream: str = STREAM
    consumers: Mapping[str, str] = field(default_factory=lambda: dict(CONSUMERS))
    stall_seconds: float = STALL_SECONDS


def _age(then: datetime | None, now: datetime) -> float | None:
    return None if then is None else max(0.0, (now - then).total_seconds())


def relay_progress(
    app: Any, conn: psycopg.Connection[Any], watch: Watch, now: datetime | None = None
) -> dict[str, Any]:
    """The relay's position, what waits behind it, and whether it is stalled.

    ``app`` is a CareApplication (its recorder and mapper are only read: the oldest waiting
    event's recording time); ``conn`` any connection to the event store's database."""
    now = now or datetime.now(UTC)
    last = conn.execute("SELECT coalesce(max(notification_id), 0) FROM guanai_events").fetchone()
    last_id = int(last[0]) if last else 0
    row = None
    if conn.execute("SELECT to_regclass('relay_tracking') IS NOT NULL").fetchone() == (True,):
        row = conn.execute("SELECT position, updated_at FROM relay_tracking WHERE name = %s", (watch.relay,)).fetchone()
    position, updated_at = (int(row[0]), row[1]) if row else (0, None)
    behind_row = conn.execute("SELECT count(*) FROM guanai_events WHERE notification_id > %s", (position,)).fetchone()
    behind = int(behind_row[0]) if behind_row else 0
    waiting = 0.0
    if behind:
        oldest = app.recorder.select_notifications(start=position, limit=1, inclusive_of_start=False)
        if oldest:
            waiting = _age(app.mapper.to_domain_event(oldest[0]).timestamp, now) or 0.0
    idle = _age(updated_at, now)
    stalled = behind > 0 and waiting > watch.stall_seconds and (idle is None or idle > watch.stall_seconds)
    return {
        "ok": not stalled,
        "stalled": stalled,
        "position": position,
        "last_position": last_id,
        "events_behind": behind,
        "seconds_behind": round(waiting, 3),
        "seconds_since_progress": None if idle is None else round(idle, 3),
    }


async def worker_progress(js: Any, watch: Watch, now: datetime | None = None) -> dict[str, Any]:
    """Each watched worker's consumer: pending messages, last delivery, stalled or absent."""
    now = now or datetime.now(UTC)
    workers: dict[str, Any] = {}
    for worker, durable in watch.consumers.items():
        try:
            info = await js.consumer_info(watch.stream, durable)
        except NotFoundError:
            workers[worker] = {"ok": True, "present": False}
            continue
        pending = int(info.num_pending or 0)
        last_active = info.delivered.last_active if info.delivered is not None else None
        idle = _age(last_active or info.created, now)
        stalled = pending > 0 and idle is not None and idle > watch.stall_seconds
        workers[worker] = {
            "ok": not stalled,
            "present": True,
            "stalled": stalled,
            "pending": pending,
            "ack_pending": int(info.num_ack_pending or 0),
            "redelivered": int(info.num_redelivered or 0),
            "seconds_since_delivery": None if idle is None else round(idle, 3),
        }
    return workers
