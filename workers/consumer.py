"""Durable JetStream pull consumers with every outcome explicit, a dead-letter path, and the
one runner every worker is (router, escalator, scheduler).

A worker is a ``WorkerSpec``: its name, its stream, and a ``plan`` that, given the resources
the runner made (the application, a pool for its views, the NATS connection), says which
durable consumers it runs (``ConsumerSpec``: durable name, subjects, handler, max deliveries,
ack wait, ...) and which sweeps (a reconciler every few seconds). ``run_worker`` makes those
resources, runs all of it until ``stop`` and closes it all again; ``worker`` wraps it so that
a failure restarts it (workers/runtime.py ``keep_running``).

A handler receives the decoded ``Envelope`` (see workers/envelope.py) and the NATS message and
returns what happens to the message:

- ``ACK`` (or ``None``): done;
- ``Nak(delay)``: not now, deliver again after ``delay`` seconds (e.g. wait for a deadline);
- ``Term(reason)``: never deliver again; recorded as a dead letter with the reason.

A handler that raises is nak'ed with a growing delay. After ``max_deliver`` deliveries JetStream
gives up and says so in an advisory; the consumer records the message as a dead letter
(``dead_letters`` table, listed by ``guanai dead-letters``) so that a person sees it. Long work
calls ``msg.in_progress()``. ``stop`` drains: the batch in hand is finished and answered. A
message that is no envelope at all is terminated into the dead letters at once.

Each answer is counted (infrastructure/metrics.py): outcomes, redeliveries, dead letters.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import nats
import psycopg
import structlog
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from psycopg_pool import ConnectionPool

from infrastructure import metrics
from workers.envelope import Envelope, decode, decode_raw
from workers.runtime import connect_nats, every, keep_running
from workers.stream import STREAM, SUBJECT_PREFIX, ensure_stream

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
Handler = Callable[[Envelope, Any], Awaitable[Outcome]]
BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


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
        cause: str = "refused",
    ) -> None:
        try:
            body = json.dumps(decode_raw(data)) if data else None
        except Exception:  # noqa: BLE001 - an undecodable message is exactly what we must keep
            body = json.dumps({"undecodable": True})
        async with await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as conn:
            await conn.execute(
                "INSERT INTO dead_letters (stream, consumer, stream_seq, subject, envelope, deliveries, reason)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (stream, consumer, stream_seq) DO NOTHING",
                (stream, consumer, stream_seq, subject, body, deliveries, reason),
            )
        metrics.DEAD_LETTERS.labels(consumer, cause).inc()
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
        backoff: Sequence[float] = BACKOFF,
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
            cause="max_deliveries",
        )

    def _delay(self, delivered: int) -> float:
        return self.backoff[min(delivered - 1, len(self.backoff) - 1)]

    async def handle(self, msg: Any) -> None:
        delivered = msg.metadata.num_delivered
        if delivered > 1:
            metrics.REDELIVERIES.labels(self.durable).inc()
        cause = "refused"
        try:
            envelope = decode(msg.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            # Not an envelope: no delivery will make it one.
            outcome: Outcome = Term(f"undecodable: {e}")
            cause = "undecodable"
        else:
            try:
                outcome = await self.handler(envelope, msg)
            except Exception as e:  # noqa: BLE001 - every failure becomes an explicit nak, never a loss
                log.warning(
                    "handler_failed",
                    consumer=self.durable,
                    error=type(e).__name__,
                    delivered=delivered,
                    subject=msg.subject,
                )
                metrics.CONSUMER_MESSAGES.labels(self.durable, "error").inc()
                await msg.nak(delay=self._delay(delivered))
                return
        if outcome is None or isinstance(outcome, Ack):
            await msg.ack()
            self.handled += 1
            metrics.CONSUMER_MESSAGES.labels(self.durable, "ack").inc()
        elif isinstance(outcome, Nak):
            await msg.nak(delay=outcome.delay)
            metrics.CONSUMER_MESSAGES.labels(self.durable, "nak").inc()
        else:
            await self.dead_letters.record(
                stream=self.stream,
                consumer=self.durable,
                stream_seq=msg.metadata.sequence.stream,
                subject=msg.subject,
                data=msg.data,
                deliveries=delivered,
                reason=outcome.reason,
                cause=cause,
            )
            await msg.term()
            metrics.CONSUMER_MESSAGES.labels(self.durable, "term").inc()

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


# ---- the one runner of every worker ------------------------------------------------------------


@dataclass(frozen=True)
class ConsumerSpec:
    """One durable consumer of a worker: what it reads, who handles it, how patiently."""

    durable: str
    subjects: Sequence[str]
    handler: Handler
    max_deliver: int = 8
    # A worker that died holding a message hands it on after this long.
    ack_wait: float = 30.0
    backoff: Sequence[float] = BACKOFF
    # One message per pull suits the workers: a pull for more waits out its whole timeout
    # before returning when fewer are there.
    batch: int = 1
    # Messages held unanswered at once; a consumer that waits for deadlines by nak(delay)
    # (the escalator) holds one per open report and needs a larger figure.
    max_ack_pending: int = 1000


@dataclass(frozen=True)
class Sweep:
    """Work done every ``interval`` seconds besides the messages (a reconciler, a schedule sweep)."""

    name: str
    interval: float
    step: Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class Plan:
    """What a worker runs once its resources are there."""

    consumers: Sequence[ConsumerSpec]
    sweeps: Sequence[Sweep] = ()
    # Long-running tasks of the worker's own (the scheduler's sweep loop).
    tasks: Sequence[Callable[[asyncio.Event], Awaitable[object]]] = ()


@dataclass(frozen=True)
class Resources:
    """What the runner made for a worker: its application, a small pool for its views, NATS."""

    app: Any
    pool: ConnectionPool
    nc: Any
    js: Any
    stop: asyncio.Event
    spec: WorkerSpec


@dataclass(frozen=True)
class WorkerSpec:
    """A worker, whole: ``plan`` builds its handlers over the resources ``run_worker`` makes."""

    name: str  # "router": its logs, its NATS client name, its pool
    make_app: Callable[[], Any]
    database_url: str
    nats_url: str
    plan: Callable[[Resources], Awaitable[Plan]]
    stream: str = STREAM
    subject_prefix: str = SUBJECT_PREFIX
    pool_size: int = 1
    log_fields: dict[str, Any] = field(default_factory=dict)


async def run_worker(spec: WorkerSpec, stop: asyncio.Event) -> None:
    """Make the worker's resources, set up its consumers, run them and its sweeps until
    ``stop`` (each consumer finishes the batch in hand), and close everything."""
    app = spec.make_app()
    pool: ConnectionPool = ConnectionPool(
        spec.database_url, min_size=1, max_size=spec.pool_size, open=False, name=spec.name
    )
    nc = None
    consumers: list[Consumer] = []
    try:
        await asyncio.to_thread(pool.open, True)
        nc = await connect_nats(spec.nats_url, f"guanai-{spec.name}", stop)
        js = nc.jetstream()
        await ensure_stream(js, spec.stream, spec.subject_prefix)
        plan = await spec.plan(Resources(app=app, pool=pool, nc=nc, js=js, stop=stop, spec=spec))
        for c in plan.consumers:
            consumer = Consumer(
                js,
                nc,
                stream=spec.stream,
                durable=c.durable,
                filter_subjects=c.subjects,
                handler=c.handler,
                dead_letters=DeadLetters(spec.database_url),
                ensure_stream=functools.partial(ensure_stream, js, spec.stream, spec.subject_prefix),
                max_deliver=c.max_deliver,
                ack_wait=c.ack_wait,
                backoff=c.backoff,
                batch=c.batch,
                max_ack_pending=c.max_ack_pending,
            )
            consumers.append(consumer)
            await consumer.setup()
        log.info(
            f"{spec.name}_started",
            stream=spec.stream,
            consumers=[c.durable for c in plan.consumers],
            **spec.log_fields,
        )
        await asyncio.gather(
            *(c.run(stop) for c in consumers),
            *(every(s.name, stop, s.interval, s.step) for s in plan.sweeps),
            *(task(stop) for task in plan.tasks),
        )
    finally:
        for consumer in consumers:
            await consumer.close()
        if nc is not None:
            await nc.close()
        pool.close()
        app.close()


def worker(spec: WorkerSpec) -> Callable[[asyncio.Event], Awaitable[None]]:
    """The worker for workers.runtime (its own process, or inside ``guanai serve``): run, and
    when it fails (the database or NATS away at start, a bug), start again after a pause."""

    async def work(stop: asyncio.Event) -> None:
        await keep_running(spec.name, stop, lambda s: run_worker(spec, s))

    return work
