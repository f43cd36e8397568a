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
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import nats
import structlog

from application.emergencies import ALERT_PREFIX, alert_subject
from domain.base import CommandMeta, DomainError
from infrastructure import metrics
from infrastructure.alerts import ensure_alert_stream
from infrastructure.failpoints import failpoint
from infrastructure.settings import load_settings, nats_servers
from projections.emergency_queue import EmergencyQueueView
from workers.consumer import ACK, ConsumerSpec, Outcome, Plan, Resources, Sweep, Term, WorkerSpec, worker
from workers.envelope import Envelope, encode
from workers.runtime import TRANSIENT, connect_nats, keep_running, run_command, worker_meta
from workers.stream import STREAM, SUBJECT_PREFIX

__all__ = ["TRANSIENT", "Router", "check_consumer", "connect_nats", "keep_running", "router_spec", "router_worker"]

log = structlog.get_logger("guanai.router")

DURABLE = "emergency-router"
KIND = "EmergencyReport"
# The reconciler routes what the stream did not bring: a report filed this long ago and never
# routed (the message path takes milliseconds), looked for this often.
RECONCILE_AFTER_SECONDS = 30.0
RECONCILE_INTERVAL_SECONDS = 5.0
# Handling a message takes milliseconds (longer waits say in_progress): redeliver soon after a crash.
ACK_WAIT_SECONDS = 5.0


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

    async def handle(self, envelope: Envelope, msg: Any) -> Outcome:
        if envelope.kind != KIND:
            return ACK
        try:
            if envelope.event == "Reported":
                await self._route(envelope.id, envelope.correlation, msg, 0, asked_at=envelope.recorded_at)
            elif envelope.event == "Escalated":
                level = int(envelope.data["to_level"])
                await self._route(envelope.id, envelope.correlation, msg, level, asked_at=envelope.recorded_at)
            elif envelope.event == "Routed":
                d = envelope.data
                if f"{envelope.id}:{d['level']}" not in self.published:
                    await self._alert(
                        *alert_of(envelope.id, envelope.position, envelope.occurred_at, d, self.alert_prefix)
                    )
        except DomainError as e:
            # A refusal will not change on redelivery: a person must look at it.
            return Term(f"{type(e).__name__}: {e.detail}")
        return ACK

    async def handle_visit(self, envelope: Envelope, msg: Any) -> Outcome:
        """A visit log flagged "raise an emergency": file its report (once, whatever the deliveries)."""
        if not envelope.is_("VisitLog", "EmergencyFlagged"):
            return ACK
        log_id = envelope.id
        if envelope.actor_id is None or envelope.actor_role is None or envelope.occurred_at is None:
            return Term("an EmergencyFlagged event without its actor or time")
        meta = CommandMeta(
            actor_id=envelope.actor_id,
            actor_role=envelope.actor_role,
            correlation_id=envelope.correlation,
            occurred_at=envelope.occurred_at,
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

    async def reconcile(self, view: EmergencyQueueView, after_seconds: float, limit: int = 200) -> int:
        """Route what the stream did not bring: reports filed ``after_seconds`` ago or more and
        never routed, and escalated reports whose next level is not routed (a message lost with
        a JetStream failure, a stream deleted). The event store decides: each is the same
        idempotent command as on the message path. Returns how many it routed."""
        now = datetime.now(UTC)
        owed = await asyncio.to_thread(view.unrouted, now - timedelta(seconds=after_seconds), limit)
        routed = 0
        for report_id, level in owed:
            try:
                if await self._route(report_id, f"reconcile-{report_id}:{level}", None, level):
                    routed += 1
                    metrics.RECONCILED.labels("router").inc()
                    log.warning("reconciled_routing", report=str(report_id), level=level)
            except DomainError as e:
                log.error("reconcile_refused", report=str(report_id), level=level, error=type(e).__name__)
        return routed

    async def _route(
        self, report_id: UUID, correlation_id: str, msg: Any, level: int, asked_at: datetime | None = None
    ) -> bool:
        """Route the report to ``level``; ``asked_at``: when the event asking for it was recorded
        (the report filed, the escalation), from which the alert's latency is measured."""
        meta = worker_meta(correlation_id, "router")
        result, routed = await run_command(msg, self.stop, lambda: self.app.route_emergency(report_id, level, meta))
        failpoint("router.after_route")
        log.info("routed" if routed else "already_routed", report=str(report_id), level=level)
        if routed:
            # The fast path: alert now, not one relay hop later. Should this process die before
            # it is done, the stored Routed event, when it arrives, alerts instead.
            subject, alert = alert_of(report_id, result.position, routed["occurred_at"], routed, self.alert_prefix)
            await self._alert(subject, alert, asked_at)
        return routed is not None

    async def _alert(self, subject: str, alert: dict[str, Any], asked_at: datetime | None = None) -> None:
        # The alert stream keeps it for devices that were away; the id makes a repeat one copy.
        await self.nc.publish(subject, encode(alert), headers={"Nats-Msg-Id": alert["alert_id"]})
        # The message is answered only once the server has the alert.
        await self.nc.flush(timeout=5)
        self.published.add(alert["alert_id"])
        if asked_at is not None:
            seconds = (datetime.now(UTC) - asked_at).total_seconds()
            metrics.ALERT_SECONDS.labels(str(alert["level"])).observe(max(0.0, seconds))
        failpoint("router.after_alert")
        log.info("alerted", report=alert["report_id"], level=alert["level"], subject=subject)


def router_spec(
    make_app: Callable[[], Any],
    database_url: str,
    nats_url: str,
    *,
    stream: str = STREAM,
    subject_prefix: str = SUBJECT_PREFIX,
    durable: str = DURABLE,
    alert_prefix: str = ALERT_PREFIX,
    max_deliver: int = 20,
    ack_wait: float = ACK_WAIT_SECONDS,
    reconcile_after: float = RECONCILE_AFTER_SECONDS,
    reconcile_interval: float = RECONCILE_INTERVAL_SECONDS,
) -> WorkerSpec:
    """The router: reports (and escalations) to route, flagged visit logs to file, and its reconciler."""

    async def plan(r: Resources) -> Plan:
        try:
            await ensure_alert_stream(r.js, alert_prefix, load_settings().stream_replicas)
        except nats.errors.Error as e:  # alerts still go out live; only the replay for absent devices is missing
            log.error("alert_stream_unavailable", error=type(e).__name__)
        router = Router(r.app, r.nc, r.stop, alert_prefix=alert_prefix)
        view = EmergencyQueueView(r.pool)
        reports = ConsumerSpec(
            durable, [f"{subject_prefix}.{KIND}.>"], router.handle, max_deliver=max_deliver, ack_wait=ack_wait
        )
        visits = ConsumerSpec(
            f"{durable}-visits",
            [f"{subject_prefix}.VisitLog.EmergencyFlagged"],
            router.handle_visit,
            max_deliver=max_deliver,
            ack_wait=ack_wait,
        )
        return Plan(
            consumers=[reports, visits],
            sweeps=[Sweep("router-reconciler", reconcile_interval, lambda: router.reconcile(view, reconcile_after))],
        )

    return WorkerSpec("router", make_app, database_url, nats_url, plan, stream=stream, subject_prefix=subject_prefix)


def check_consumer(durable: str, max_pending: int = 1000, stream: str = STREAM) -> int:
    """A service health check: 0 when the durable consumer exists and has fewer than
    ``max_pending`` messages not yet delivered (a dead or stuck worker lets them pile up). Its
    own process (compose.yaml's health checks): it reads the settings itself."""

    async def check() -> int:
        nc = await nats.connect(nats_servers(load_settings().nats_url or "nats://127.0.0.1:4222"), connect_timeout=3)
        try:
            info = await nc.jetstream().consumer_info(stream, durable)
        except nats.js.errors.NotFoundError:
            return 1
        finally:
            await nc.close()
        return 0 if info.num_pending < max_pending else 1

    return asyncio.run(check())


def router_worker(make_app: Callable[[], Any], database_url: str, nats_url: str, **options: Any) -> Any:
    """The router as a worker for workers.runtime (``guanai router``, and inside ``guanai serve``),
    over the application ``make_app`` builds (guanai/bootstrap.py)."""
    return worker(router_spec(make_app, database_url, nats_url, **options))
