"""Durable JetStream pull consumers with every outcome explicit, and a dead-letter path.

A handler receives the decoded envelope (see workers/envelope.py) and the NATS message and
returns what happens to the message:

- ``ACK`` (or ``None``): done;
- ``Nak(delay)``: not now, deliver again after ``delay`` seconds (e.g. wait for a deadline);
- ``Term(reason)``: never deliver again; recorded as a dead letter with the reason.

A handler that raises is nak'ed with a growing delay. After ``max_deliver`` deliveries JetStream
gives up and says so in an advisory; the consumer records the message as a dead letter
(``dead_letters`` table, listed by ``guanai dead-letters``) so that a person sees it. Long work
calls ``msg.in_progress()``. ``stop`` drains: the batch in hand is finished and answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import nats
import psycopg
import structlog
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from workers.envelope import decode

log = structlog.get_logger("guanai.consumer")

DEAD_LETTERS_DDL = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id bigserial PRIMARY KEY,
    stream text NOT NULL,
    consumer text NOT NULL,
    stream_seq bigint NOT NULL,
    subject text NOT NULL,
    envelope jsonb,
    deliveries int NOT NULL,
    reason text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream, consumer, stream_seq)
)
"""


# Empty fetches between two looks at whether the consumer still exists.
IDLE_CHECKS = 5


class Ack:
    """The message was handled."""


ACK = Ack()


@dataclass(frozen=True)
class Nak:
    delay: float


@dataclass(frozen=True)
class Term:
    reason: str


Outcome = Ack | Nak | Term | None
Handler = Callable[[dict[str, Any], Any], Awaitable[Outcome]]


class DeadLetters:
    """Where messages that could not be handled end up, for a person to look at."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    async def setup(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.database_url) as conn, conn.transaction():
            # Serialise creation: concurrent CREATE TABLE IF NOT EXISTS can still collide.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('guanai.dead_letters'))")
            await conn.execute(DEAD_LETTERS_DDL)

    async def record(
        self,
        *,
        stream: str,
        consumer: str,
        stream_seq: int,
        subject: str,
        data: bytes | None,
        deliveries: int,
        reason: str,
    ) -> None:
        try:
            body = json.dumps(decode(data)) if data else None
        except Exception:  # noqa: BLE001 - an undecodable message is exactly what we must keep
            body = json.dumps({"undecodable": True})
        async with await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as conn:
            await conn.execute(
                "INSERT INTO dead_letters (stream, consumer, stream_seq, subject, envelope, deliveries, reason)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (stream, consumer, stream_seq) DO NOTHING",
                (stream, consumer, stream_seq, subject, body, deliveries, reason),
            )
        log.error(
            "dead_letter", stream=stream, consumer=consumer, stream_seq=stream_seq, subject=subject, reason=reason
        )


def list_dead_letters(database_url: str, limit: int = 100) -> list[dict[str, Any]]:
    with psycopg.connect(database_url) as conn:
        exists = conn.execute("SELECT to_regclass('dead_letters') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return []  # no consumer has run against this database yet
        cur = conn.execute(
            "SELECT id, stream, consumer, stream_seq, subject, envelope, deliveries, reason, recorded_at"
            " FROM dead_letters ORDER BY id DESC LIMIT %s",
            (limit,),
        )
        names = [c.name for c in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


class Consumer:
    def __init__(
        self,
        js: Any,
        nc: Any,
        *,
        stream: str,
        durable: str,
        filter_subjects: Sequence[str],
        handler: Handler,
        dead_letters: DeadLetters,
        max_deliver: int = 8,
        ack_wait: float = 30.0,
        backoff: Sequence[float] = (0.5, 1, 2, 5, 10, 30),
        batch: int = 16,
        fetch_timeout: float = 1.0,
        max_ack_pending: int = 1000,
        ensure_stream: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.js = js
        self.nc = nc
        self.stream = stream
        self.durable = durable
        self.filter_subjects = list(filter_subjects)
        self.handler = handler
        self.dead_letters = dead_letters
        self.max_deliver = max_deliver
        self.ack_wait = ack_wait
        self.backoff = list(backoff)
        self.batch = batch
        self.fetch_timeout = fetch_timeout
        # Messages held unanswered at once; a consumer that waits for deadlines by nak(delay)
        # (the escalator) holds one per open report and needs a larger figure.
        self.max_ack_pending = max_ack_pending
        # Makes the stream again when it was deleted (see _recreate_if_gone).
        self.ensure_stream = ensure_stream
        self._sub: Any = None
        self._advisories: Any = None
        self.handled = 0

    async def setup(self) -> None:
        await self.dead_letters.setup()
        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            filter_subjects=self.filter_subjects if len(self.filter_subjects) > 1 else None,
            filter_subject=self.filter_subjects[0] if len(self.filter_subjects) == 1 else None,
            max_ack_pending=self.max_ack_pending,
        )
        self._sub = await self.js.pull_subscribe(
            self.filter_subjects[0], durable=self.durable, stream=self.stream, config=config
        )
        subject = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self.stream}.{self.durable}"
        self._advisories = await self.nc.subscribe(subject, cb=self._on_max_deliveries)

    async def _on_max_deliveries(self, advisory: Any) -> None:
        info = json.loads(advisory.data)
        seq = int(info.get("stream_seq", 0))
        subject, data = "?", None
        with contextlib.suppress(Exception):
            stored = await self.js.get_msg(self.stream, seq)
            subject, data = stored.subject, stored.data
        await self.dead_letters.record(
            stream=self.stream,
            consumer=self.durable,
            stream_seq=seq,
            subject=subject,
            data=data,
            deliveries=int(info.get("deliveries", self.max_deliver)),
            reason="max deliveries exceeded",
        )

    def _delay(self, delivered: int) -> float:
        return self.backoff[min(delivered - 1, len(self.backoff) - 1)]

    async def handle(self, msg: Any) -> None:
        delivered = msg.metadata.num_delivered
        try:
            outcome = await self.handler(decode(msg.data), msg)
        except Exception as e:  # noqa: BLE001 - every failure becomes an explicit nak, never a loss
            log.warning(
                "handler_failed",
                consumer=self.durable,
                error=type(e).__name__,
                delivered=delivered,
                subject=msg.subject,
            )
            await msg.nak(delay=self._delay(delivered))
            return
        if outcome is None or isinstance(outcome, Ack):
            await msg.ack()
            self.handled += 1
        elif isinstance(outcome, Nak):
            await msg.nak(delay=outcome.delay)
        else:
            await self.dead_letters.record(
                stream=self.stream,
                consumer=self.durable,
                stream_seq=msg.metadata.sequence.stream,
                subject=msg.subject,
                data=msg.data,
                deliveries=delivered,
                reason=outcome.reason,
            )
            await msg.term()

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and handle until ``stop``; the batch in hand is always finished."""
        if self._sub is None:
            await self.setup()
        idle = 0
        while not stop.is_set():
            try:
                msgs = await self._sub.fetch(self.batch, timeout=self.fetch_timeout)
                idle = 0
            except nats.errors.TimeoutError:
                # A pull on a consumer deleted with its stream just times out, as on an idle
                # one: look now and then whether it is still there.
                idle += 1
                if idle % IDLE_CHECKS == 0:
                    await self._recreate_if_gone()
                continue
            except (TimeoutError, nats.errors.Error) as e:
                log.warning("fetch_failed", consumer=self.durable, error=type(e).__name__)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
                await self._recreate_if_gone()
                continue
            for msg in msgs:
                try:
                    await self.handle(msg)
                except (TimeoutError, nats.errors.Error) as e:
                    # The answer did not reach the server: the message comes back after ack_wait,
                    # and handlers are idempotent.
                    log.warning("answer_failed", consumer=self.durable, error=type(e).__name__)

    async def _recreate_if_gone(self) -> None:
        """The consumer, or its whole stream, was deleted (by an operator, or lost with a
        JetStream failure): make both again and subscribe anew. What the stream lost is not
        replayed from here; the workers' reconcilers find it in the event store."""
        try:
            await self.js.consumer_info(self.stream, self.durable)
            return
        except nats.js.errors.NotFoundError:
            pass
        except (TimeoutError, nats.errors.Error):
            return  # NATS itself is away: the fetch loop waits for it
        log.warning("consumer_gone_recreating", consumer=self.durable, stream=self.stream)
        try:
            if self.ensure_stream is not None:
                await self.ensure_stream()
            await self.close()
            self._sub = None
            await self.setup()
        except (TimeoutError, nats.errors.Error) as e:
            log.warning("consumer_recreate_failed", consumer=self.durable, error=type(e).__name__)

    async def close(self) -> None:
        for sub in (self._sub, self._advisories):
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
