"""The router: every new or escalated emergency report is routed to the on-duty responders of
its level, and every routing is announced on the responders' alert subject.

A durable JetStream pull consumer over ``<prefix>.EmergencyReport.>`` (one filter subject, so it
also runs on NATS servers older than 2.10) handles three events:

- ``Reported`` -> ``route_emergency(level 0)``; ``Escalated`` -> ``route_emergency(to_level)``.
  The routing is a command on the report, so a second delivery routes nothing twice.
- ``Routed`` -> an alert on ``alerts.<county_code>.<township_code>`` (``.county`` and ``.further``
  above the township): ids, category, severity, level and deadline; no names, no free text.

The alert is published twice over, by design: at once after the routing command (the fast
path, one relay hop sooner), and from the stored ``Routed`` event unless this process already
published it. A router that dies between its routing command and the alert therefore alerts
when the event arrives (this one restarted, or another replica). Core NATS carries the alert,
flushed before the message is acknowledged; a repeat has the same ``alert_id``.

A second consumer over ``<prefix>.VisitLog.EmergencyFlagged`` files the report of a visit log
flagged "raise an emergency" (domain/visit_log.py), under an id derived from the log's.

Every message is answered explicitly (workers/consumer.py). While the event store is
unreachable a message is kept in progress and retried without using up its deliveries; a
domain refusal is terminated into the dead letters, where a person sees it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import nats
import structlog
from eventsourcing.persistence import InterfaceError, OperationalError

from application.emergencies import ALERT_PREFIX, alert_subject
from domain.base import CommandMeta, DomainError
from infrastructure.failpoints import failpoint
from infrastructure.personal_data import MasterKeyError
from workers.consumer import ACK, Consumer, DeadLetters, Outcome, Term
from workers.envelope import encode
from workers.relay import STREAM, SUBJECT_PREFIX, ensure_stream
from workers.runtime import keep_running

log = structlog.get_logger("guanai.router")
T = TypeVar("T")

DURABLE = "emergency-router"
KIND = "EmergencyReport"
# Outages of the event store are waited out, not counted against max_deliver.
TRANSIENT = (OperationalError, InterfaceError)
# Handling a message takes milliseconds (longer waits say in_progress): redeliver soon after a crash.
ACK_WAIT_SECONDS = 5.0


def worker_meta(envelope: dict[str, Any], actor: str) -> CommandMeta:
    """A worker's command carries the causing event's correlation id, and now as its time."""
    return CommandMeta(
        actor_id=actor,
        actor_role="system",
        correlation_id=envelope.get("correlation_id") or f"event-{envelope.get('position')}",
        occurred_at=datetime.now(UTC),
    )


async def run_command(msg: Any, stop: asyncio.Event, command: Callable[[], T]) -> T:
    """Run a blocking command in a thread; while the store is away, keep the message in
    progress and try again (the command is idempotent, so a repeat is harmless). So too while
    this process holds another master key than the store's keys (not restarted after a
    rotation): the message waits for a process that can open them, never for the dead letters."""
    delay = 0.2
    while True:
        try:
            return await asyncio.to_thread(command)
        except (*TRANSIENT, MasterKeyError) as e:
            if stop.is_set():
                raise
            if isinstance(e, MasterKeyError):
                log.error("master_key_mismatch_waiting", detail=str(e), retry_in=delay)
            else:
                log.warning("store_unavailable_retrying", error=type(e).__name__, retry_in=delay)
            if msg is not None:
                await msg.in_progress()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def connect_nats(nats_url: str, name: str, stop: asyncio.Event) -> Any:
    """Connect, waiting for the server if it is not up yet; reconnect forever afterwards."""
    delay = 0.2
    while True:
        try:
            return await nats.connect(
                nats_url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5, connect_timeout=2
            )
        except (TimeoutError, nats.errors.Error, OSError) as e:
            if stop.is_set():
                raise
            log.warning("nats_unavailable", worker=name, error=type(e).__name__, retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def alert_of(
    report_id: Any, position: int | None, routed_at: Any, d: dict[str, Any], prefix: str = ALERT_PREFIX
) -> tuple[str, dict[str, Any]]:
    """The subject and body of the alert for a ``Routed`` event (its fields ``d``)."""
    alert = {
        "alert_id": f"{report_id}:{d['level']}",
        "report_id": str(report_id),
        "level": d["level"],
        "level_name": d["level_name"],
        "category": d["category"],
        "severity": d["severity"],
        "deadline": d["deadline"],
        "routed_at": routed_at,
        "responder_ids": d["responder_ids"],
        "county_code": d["county_code"],
        "township_code": d["township_code"],
        "position": position,
    }
    return alert_subject(d["county_code"], d["township_code"], d["level"], prefix), alert


class RecentAlerts:
    """Alert ids this process published lately (bounded), so that the ``Routed`` event of a
    routing it alerted for itself is not announced a second time."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._ids: dict[str, None] = {}

    def add(self, alert_id: str) -> None:
        self._ids[alert_id] = None
        if len(self._ids) > self.size:
            del self._ids[next(iter(self._ids))]

    def __contains__(self, alert_id: str) -> bool:
        return alert_id in self._ids


class Router:
    """The router's message handler over one CareApplication and one NATS connection."""

    def __init__(self, app: Any, nc: Any, stop: asyncio.Event, *, alert_prefix: str = ALERT_PREFIX) -> None:
        self.app = app
        self.nc = nc
        self.stop = stop
        self.alert_prefix = alert_prefix
        self.published = RecentAlerts()

    async def handle(self, envelope: dict[str, Any], msg: Any) -> Outcome:
        if envelope.get("kind") != KIND:
            return ACK
        event = envelope.get("event")
        try:
            if event == "Reported":
                await self._route(envelope, msg, 0)
            elif event == "Escalated":
                await self._route(envelope, msg, int(envelope["data"]["to_level"]))
            elif event == "Routed":
                d = envelope["data"]
                if f"{envelope['id']}:{d['level']}" not in self.published:
                    await self._alert(
                        *alert_of(envelope["id"], envelope["position"], envelope["occurred_at"], d, self.alert_prefix)
                    )
        except DomainError as e:
            # A refusal will not change on redelivery: a person must look at it.
            return Term(f"{type(e).__name__}: {e.detail}")
        return ACK

    async def handle_visit(self, envelope: dict[str, Any], msg: Any) -> Outcome:
        """A visit log flagged "raise an emergency": file its report (once, whatever the deliveries)."""
        if envelope.get("kind") != "VisitLog" or envelope.get("event") != "EmergencyFlagged":
            return ACK
        log_id = UUID(envelope["id"])
        meta = CommandMeta(
            actor_id=envelope["actor_id"],
            actor_role=envelope["actor_role"],
            correlation_id=envelope.get("correlation_id") or f"event-{envelope.get('position')}",
            occurred_at=datetime.fromisoformat(envelope["occurred_at"]),
        )
        try:
            result = await run_command(msg, self.stop, lambda: self.app.file_emergency_from_visit(log_id, meta))
        except DomainError as e:
            return Term(f"{type(e).__name__}: {e.detail}")
        log.info(
            "filed_from_visit" if result.created else "already_filed_from_visit",
            visit_log=str(log_id),
            report=str(result.id),
        )
        return ACK

    async def _route(self, envelope: dict[str, Any], msg: Any, level: int) -> None:
        report_id = UUID(envelope["id"])
        meta = worker_meta(envelope, "router")
        result, routed = await run_command(msg, self.stop, lambda: self.app.route_emergency(report_id, level, meta))
        failpoint("router.after_route")
        log.info("routed" if routed else "already_routed", report=str(report_id), level=level)
        if routed:
            # The fast path: alert now, not one relay hop later. Should this process die before
            # it is done, the stored Routed event, when it arrives, alerts instead.
            await self._alert(*alert_of(report_id, result.position, routed["occurred_at"], routed, self.alert_prefix))

    async def _alert(self, subject: str, alert: dict[str, Any]) -> None:
        await self.nc.publish(subject, encode(alert))
        # The message is answered only once the server has the alert.
        await self.nc.flush(timeout=5)
        self.published.add(alert["alert_id"])
        failpoint("router.after_alert")
        log.info("alerted", report=alert["report_id"], level=alert["level"], subject=subject)


async def run_router(
    database_url: str,
    nats_url: str,
    stop: asyncio.Event,
    *,
    stream: str = STREAM,
    subject_prefix: str = SUBJECT_PREFIX,
    durable: str = DURABLE,
    alert_prefix: str = ALERT_PREFIX,
    max_deliver: int = 20,
    pool_size: int = 2,
    ack_wait: float = ACK_WAIT_SECONDS,
) -> None:
    from application.care import CareApplication, event_store_env

    app = CareApplication(event_store_env(database_url, pool_size=pool_size))
    nc = await connect_nats(nats_url, "guanai-router", stop)
    consumers: list[Consumer] = []
    try:
        js = nc.jetstream()
        await ensure_stream(js, stream, subject_prefix)
        router = Router(app, nc, stop, alert_prefix=alert_prefix)
        for name, subject, handler in (
            (durable, f"{subject_prefix}.{KIND}.>", router.handle),
            (f"{durable}-visits", f"{subject_prefix}.VisitLog.EmergencyFlagged", router.handle_visit),
        ):
            consumer = Consumer(
                js,
                nc,
                stream=stream,
                durable=name,
                filter_subjects=[subject],
                handler=handler,
                dead_letters=DeadLetters(database_url),
                max_deliver=max_deliver,
                # One message per pull: a pull for more waits out its whole timeout before returning.
                batch=1,
                # A router that died holding a message hands it on after this long.
                ack_wait=ack_wait,
            )
            await consumer.setup()
            consumers.append(consumer)
        log.info("router_started", stream=stream, durable=durable)
        await asyncio.gather(*(c.run(stop) for c in consumers))
    finally:
        for consumer in consumers:
            await consumer.close()
        await nc.close()
        app.close()


def check_consumer(durable: str, max_pending: int = 1000, stream: str = STREAM) -> int:
    """A service health check: 0 when the durable consumer exists and has fewer than
    ``max_pending`` messages not yet delivered (a dead or stuck worker lets them pile up)."""
    from infrastructure.settings import load_settings

    async def check() -> int:
        nc = await nats.connect(load_settings().nats_url or "nats://127.0.0.1:4222", connect_timeout=3)
        try:
            info = await nc.jetstream().consumer_info(stream, durable)
        except nats.js.errors.NotFoundError:
            return 1
        finally:
            await nc.close()
        return 0 if info.num_pending < max_pending else 1

    return asyncio.run(check())


def router_worker(database_url: str, nats_url: str, **options: Any) -> Any:
    """The router as a worker for workers.runtime (``guanai router``, and inside ``guanai serve``)."""

    async def work(stop: asyncio.Event) -> None:
        await keep_running("router", stop, lambda s: run_router(database_url, nats_url, s, **options))

    return work
