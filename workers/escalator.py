"""The escalator: a report nobody acknowledged by its deadline moves up the chain.

A durable JetStream pull consumer over ``<prefix>.EmergencyReport.Routed``. Each routing carries
its deadline; before it, the message is nak'ed with a delay that ends at the deadline, so
JetStream holds the timer and nothing polls the database. At the deadline the escalator runs
``escalate_overdue``: a command on the report, which does nothing if the report was acknowledged,
resolved or already escalated from that level. Two escalators racing, or one message delivered
twice, therefore escalate once: the second save conflicts, is re-decided on fresh state, and
finds nothing to do. The router then routes the next level (workers/router.py).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any
from uuid import UUID

import structlog

from domain.base import DomainError
from infrastructure.failpoints import failpoint
from workers.consumer import ACK, Consumer, DeadLetters, Nak, Outcome, Term
from workers.relay import STREAM, SUBJECT_PREFIX, ensure_stream
from workers.router import ACK_WAIT_SECONDS, KIND, connect_nats, keep_running, run_command, worker_meta

log = structlog.get_logger("guanai.escalator")

DURABLE = "emergency-escalator"
# How long one nak may wait; a longer deadline takes several naks (each uses up a delivery).
MAX_NAK_SECONDS = 6 * 3600


def seconds_until(deadline: str | datetime, now: datetime) -> float:
    when = datetime.fromisoformat(deadline) if isinstance(deadline, str) else deadline
    return (when - now).total_seconds()


class Escalator:
    def __init__(self, app: Any, stop: asyncio.Event) -> None:
        self.app = app
        self.stop = stop

    async def handle(self, envelope: dict[str, Any], msg: Any) -> Outcome:
        if envelope.get("kind") != KIND or envelope.get("event") != "Routed":
            return ACK
        data = envelope["data"]
        # The command's own time decides: the aggregate compares the deadline with it too, so a
        # message is never acknowledged while its deadline is still ahead.
        meta = worker_meta(envelope, "escalator")
        wait = seconds_until(data["deadline"], meta.occurred_at)
        if wait > 0:
            return Nak(delay=min(wait, MAX_NAK_SECONDS))
        report_id, level = UUID(envelope["id"]), int(data["level"])
        try:
            result = await run_command(msg, self.stop, lambda: self.app.escalate_overdue(report_id, level, meta))
        except DomainError as e:
            return Term(f"{type(e).__name__}: {e.detail}")
        failpoint("escalator.after_escalate")
        log.info("escalated" if result.position else "not_escalated", report=str(report_id), level=level)
        return ACK


async def run_escalator(
    database_url: str,
    nats_url: str,
    stop: asyncio.Event,
    *,
    stream: str = STREAM,
    subject_prefix: str = SUBJECT_PREFIX,
    durable: str = DURABLE,
    max_deliver: int = 50,
    pool_size: int = 2,
    ack_wait: float = ACK_WAIT_SECONDS,
) -> None:
    from application.care import CareApplication, event_store_env

    app = CareApplication(event_store_env(database_url, pool_size=pool_size))
    nc = await connect_nats(nats_url, "guanai-escalator", stop)
    consumer = None
    try:
        js = nc.jetstream()
        await ensure_stream(js, stream, subject_prefix)
        consumer = Consumer(
            js,
            nc,
            stream=stream,
            durable=durable,
            filter_subjects=[f"{subject_prefix}.{KIND}.Routed"],
            handler=Escalator(app, stop).handle,
            dead_letters=DeadLetters(database_url),
            max_deliver=max_deliver,
            batch=1,
            ack_wait=ack_wait,
            # One message per open routing waits here for its deadline: hold many at once.
            max_ack_pending=100_000,
        )
        log.info("escalator_started", stream=stream, durable=durable)
        await consumer.run(stop)
    finally:
        if consumer is not None:
            await consumer.close()
        await nc.close()
        app.close()


def escalator_worker(database_url: str, nats_url: str, **options: Any) -> Any:
    """The escalator as a worker for workers.runtime (``guanai escalator``, and inside ``guanai serve``)."""

    async def work(stop: asyncio.Event) -> None:
        await keep_running("escalator", stop, lambda s: run_escalator(database_url, nats_url, s, **options))

    return work
