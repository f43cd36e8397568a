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
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import structlog

from application.emergencies import ALERT_PREFIX
from domain.base import CommandMeta, DomainError
from domain.emergency import EmergencyReport, Status
from domain.roster import LEVELS
from infrastructure import metrics
from infrastructure.failpoints import failpoint
from projections.emergency_queue import EmergencyQueueView
from workers.consumer import ACK, ConsumerSpec, Nak, Outcome, Plan, Resources, Sweep, Term, WorkerSpec, worker
from workers.envelope import Envelope, encode
from workers.router import ACK_WAIT_SECONDS, KIND, RECONCILE_AFTER_SECONDS, RECONCILE_INTERVAL_SECONDS, alert_of
from workers.runtime import run_command, worker_meta
from workers.stream import STREAM, SUBJECT_PREFIX

log = structlog.get_logger("guanai.escalator")

DURABLE = "emergency-escalator"
# How long one nak may wait; a longer deadline takes several naks (each uses up a delivery).
MAX_NAK_SECONDS = 6 * 3600
# A report nobody acknowledged at the top of the chain is alerted again this often.
REALERT_SECONDS = 600.0


def seconds_until(deadline: str | datetime, now: datetime) -> float:
    when = datetime.fromisoformat(deadline) if isinstance(deadline, str) else deadline
    return (when - now).total_seconds()


class Escalator:
    """``nc`` (a NATS connection) turns on the reminders: a report unacknowledged at the top of
    the chain is alerted again every ``realert_seconds`` until someone acknowledges it."""

    def __init__(
        self,
        app: Any,
        stop: asyncio.Event,
        *,
        nc: Any = None,
        alert_prefix: str = ALERT_PREFIX,
        realert_seconds: float = REALERT_SECONDS,
    ) -> None:
        self.app = app
        self.stop = stop
        self.nc = nc
        self.alert_prefix = alert_prefix
        self.realert_seconds = realert_seconds
        self._settled: set[tuple[UUID, int]] = set()
        self._reminded: dict[tuple[UUID, int], int] = {}

    async def handle(self, envelope: Envelope, msg: Any) -> Outcome:
        if not envelope.is_(KIND, "Routed"):
            return ACK
        data = envelope.data
        # The command's own time decides: the aggregate compares the deadline with it too, so a
        # message is never acknowledged while its deadline is still ahead.
        meta = worker_meta(envelope.correlation, "escalator")
        wait = seconds_until(data["deadline"], meta.occurred_at)
        if wait > 0:
            return Nak(delay=min(wait, MAX_NAK_SECONDS))
        report_id, level = envelope.id, int(data["level"])
        try:
            result = await run_command(msg, self.stop, lambda: self.app.escalate_overdue(report_id, level, meta))
        except DomainError as e:
            return Term(f"{type(e).__name__}: {e.detail}")
        failpoint("escalator.after_escalate")
        log.info("escalated" if result.position else "not_escalated", report=str(report_id), level=level)
        return ACK

    async def reconcile(self, view: EmergencyQueueView, after_seconds: float, limit: int = 200) -> int:
        """Escalate what the stream did not bring to its deadline: reports routed, not
        acknowledged, and past their deadline by ``after_seconds`` or more (a ``Routed`` message
        lost, a stream deleted). The same idempotent command as on the message path: a report
        acknowledged or escalated meanwhile is left as it is. Returns how many it escalated."""
        now = datetime.now(UTC)
        overdue = await asyncio.to_thread(view.overdue, now - timedelta(seconds=after_seconds), limit)
        # A report at the top of the chain stays overdue until acknowledged, and the command
        # then changes nothing: decided once, it is not decided again every sweep.
        self._settled &= set(overdue)
        escalated = 0
        for report_id, level in overdue:
            if (report_id, level) in self._settled:
                continue
            meta = CommandMeta(
                actor_id="escalator",
                actor_role="system",
                correlation_id=f"reconcile-{report_id}:{level}",
                occurred_at=now,
            )
            try:
                result = await run_command(
                    None, self.stop, lambda r=report_id, lv=level, m=meta: self.app.escalate_overdue(r, lv, m)
                )
            except DomainError as e:
                log.error("reconcile_refused", report=str(report_id), level=level, error=type(e).__name__)
                continue
            if result.position:
                escalated += 1
                metrics.RECONCILED.labels("escalator").inc()
                log.warning("reconciled_escalation", report=str(report_id), level=level)
            else:
                self._settled.add((report_id, level))
        self._reminded = {k: n for k, n in self._reminded.items() if k in self._settled}
        if self.nc is not None:
            for report_id, level in sorted(self._settled):
                await self._remind(report_id, level, now)
        return escalated

    async def _remind(self, report_id: UUID, level: int, now: datetime) -> None:
        """Alert again (``alert_id`` ``<report>:<level>:r<n>``, the n-th reminder) a report still
        waiting, unacknowledged, at the top of the chain, once per ``realert_seconds`` past its deadline."""
        report = await asyncio.to_thread(self.app.load, EmergencyReport, report_id)
        routing = report.routings.get(level)
        if report.status != Status.ROUTED or report.level != level or routing is None:
            return
        due = int((now - routing["deadline"]).total_seconds() // self.realert_seconds)
        if due < 1 or due <= self._reminded.get((report_id, level), 0):
            return
        fields = {
            "level": level, "level_name": LEVELS[level], "category": report.category.value,
            "severity": report.severity.value, "deadline": routing["deadline"].isoformat(),
            "responder_ids": routing["responder_ids"], "county_code": report.county_code,
            "township_code": report.township_code,
        }  # fmt: skip
        subject, alert = alert_of(report_id, None, routing["routed_at"].isoformat(), fields, self.alert_prefix)
        alert["alert_id"] = f"{alert['alert_id']}:r{due}"
        alert["reminder"] = due
        await self.nc.publish(subject, encode(alert), headers={"Nats-Msg-Id": alert["alert_id"]})
        await self.nc.flush(timeout=5)
        self._reminded[(report_id, level)] = due
        log.warning("realerted", report=str(report_id), level=level, reminder=due)


def escalator_spec(
    make_app: Callable[[], Any],
    database_url: str,
    nats_url: str,
    *,
    stream: str = STREAM,
    subject_prefix: str = SUBJECT_PREFIX,
    durable: str = DURABLE,
    max_deliver: int = 50,
    ack_wait: float = ACK_WAIT_SECONDS,
    reconcile_after: float = RECONCILE_AFTER_SECONDS,
    reconcile_interval: float = RECONCILE_INTERVAL_SECONDS,
    alert_prefix: str = ALERT_PREFIX,
    realert_seconds: float = REALERT_SECONDS,
) -> WorkerSpec:
    """The escalator: routings waiting for their deadline, and its reconciler (which also re-alerts)."""

    async def plan(r: Resources) -> Plan:
        escalator = Escalator(r.app, r.stop, nc=r.nc, alert_prefix=alert_prefix, realert_seconds=realert_seconds)
        view = EmergencyQueueView(r.pool)
        consumer = ConsumerSpec(
            durable,
            [f"{subject_prefix}.{KIND}.Routed"],
            escalator.handle,
            max_deliver=max_deliver,
            ack_wait=ack_wait,
            # One message per open routing waits here for its deadline: hold many at once.
            max_ack_pending=100_000,
        )
        reconciler = Sweep(
            "escalator-reconciler", reconcile_interval, lambda: escalator.reconcile(view, reconcile_after)
        )
        return Plan(consumers=[consumer], sweeps=[reconciler])

    return WorkerSpec("escalator", make_app, database_url, nats_url, plan, stream=stream, subject_prefix=subject_prefix)


def escalator_worker(make_app: Callable[[], Any], database_url: str, nats_url: str, **options: Any) -> Any:
    """The escalator as a worker for workers.runtime (``guanai escalator``, and inside ``guanai serve``),
    over the application ``make_app`` builds (guanai/bootstrap.py)."""
    return worker(escalator_spec(make_app, database_url, nats_url, **options))
