"""The scheduler: keeps every active pairing's visit tasks in line with its cadence.

Two paths lead to the same idempotent command (``CareApplication.schedule_visits``, whose task
ids are derived from pairing, person, cadence and period, so nothing is ever created twice):

- **Events**: a durable JetStream pull consumer over ``<prefix>.Pairing.>`` reacts at once to a
  pairing formed, changed (people, cadence) or ended: next tasks created, obsolete ones cancelled.
- **Sweep**, every ``GUANAI_SCHEDULER_INTERVAL_SECONDS`` and at start: every active pairing (from
  the registry view) is scheduled, pairings with tasks they should no longer have are
  reconciled, open tasks whose window closed are marked missed, lapsed claims go back to the
  pool. A lost event or a restart therefore never leaves a pairing without its next task.

Time comes in each command (the sweep's now); no domain object reads a clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import structlog

from domain.base import CommandMeta, DomainError
from projections.visit_tasks import VisitTaskView
from workers.consumer import ACK, ConsumerSpec, Outcome, Plan, Resources, Term, WorkerSpec, worker
from workers.envelope import Envelope
from workers.runtime import run_command, worker_meta
from workers.stream import STREAM, SUBJECT_PREFIX

log = structlog.get_logger("guanai.scheduler")

DURABLE = "visit-scheduler"
ACTOR = "scheduler"
PAIRING_EVENTS = {"Formed", "PersonAdded", "PersonRemoved", "CadenceChanged", "Ended"}


def sweep_meta(now: datetime) -> CommandMeta:
    return CommandMeta(actor_id=ACTOR, actor_role="system", correlation_id=f"sweep-{now.isoformat()}", occurred_at=now)


@dataclass
class SweepOutcome:
    pairings: int = 0
    created: int = 0
    cancelled: int = 0
    missed: int = 0
    expired: int = 0
    failed: list[str] = field(default_factory=list)


def _each(ids: list[UUID], command: Callable[[UUID], Any], outcome: SweepOutcome) -> int:
    """Run ``command`` for each id; count those that wrote. A refusal is logged, not fatal."""
    wrote = 0
    for item in ids:
        try:
            result = command(item)
        except DomainError as e:
            outcome.failed.append(f"{item}: {type(e).__name__}")
            log.warning("sweep_refused", id=str(item), error=type(e).__name__)
            continue
        wrote += result.position is not None
    return wrote


def sweep(app: Any, view: VisitTaskView, now: datetime, page: int = 500) -> SweepOutcome:
    """One full sweep at ``now`` (sync; the worker runs it in a thread)."""
    meta = sweep_meta(now)
    outcome = SweepOutcome()

    def schedule(pairing_id: UUID) -> None:
        result = app.schedule_visits(pairing_id, meta, known_open=view.open_task_ids(pairing_id))
        outcome.pairings += 1
        outcome.created += len(result.created)
        outcome.cancelled += len(result.cancelled)

    def each_pairing(ids: list[UUID]) -> None:
        for pairing_id in ids:
            try:
                schedule(pairing_id)
            except DomainError as e:
                outcome.failed.append(f"{pairing_id}: {type(e).__name__}")
                log.warning("sweep_refused", pairing=str(pairing_id), error=type(e).__name__)

    after: UUID | None = None
    while ids := view.active_pairing_ids(after, page):
        each_pairing(ids)
        after = ids[-1]
    each_pairing(view.stale_pairings())
    outcome.missed = _each(view.closed_open_tasks(now), lambda t: app.mark_visit_missed(t, meta), outcome)
    outcome.expired = _each(view.lapsed_claims(now), lambda t: app.expire_visit_claim(t, meta), outcome)
    return outcome


class Scheduler:
    """Message handler: a pairing event schedules that pairing."""

    def __init__(self, app: Any, view: VisitTaskView, stop: asyncio.Event) -> None:
        self.app = app
        self.view = view
        self.stop = stop

    async def handle(self, envelope: Envelope, msg: Any) -> Outcome:
        if not envelope.is_("Pairing", *PAIRING_EVENTS):
            return ACK
        pairing_id = envelope.id
        meta = worker_meta(envelope.correlation, ACTOR)
        try:
            result = await run_command(
                msg,
                self.stop,
                lambda: self.app.schedule_visits(pairing_id, meta, known_open=self.view.open_task_ids(pairing_id)),
            )
        except DomainError as e:
            return Term(f"{type(e).__name__}: {e.detail}")
        log.info("scheduled", pairing=str(pairing_id), created=len(result.created), cancelled=len(result.cancelled))
        return ACK


async def sweep_loop(app: Any, view: VisitTaskView, stop: asyncio.Event, interval: float) -> None:
    while not stop.is_set():
        try:
            outcome = await run_command(None, stop, lambda: sweep(app, view, datetime.now(UTC)))
            log.info("swept", **{k: v for k, v in vars(outcome).items() if k != "failed"}, refused=len(outcome.failed))
        except Exception as e:  # noqa: BLE001 - the next sweep tries again; the events path goes on
            if stop.is_set():
                return
            log.error("sweep_failed", error=type(e).__name__)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass


def scheduler_spec(
    make_app: Callable[[], Any],
    database_url: str,
    nats_url: str,
    *,
    interval: float = 300.0,
    stream: str = STREAM,
    subject_prefix: str = SUBJECT_PREFIX,
    durable: str = DURABLE,
    max_deliver: int = 20,
) -> WorkerSpec:
    """The scheduler: pairing events, and the sweep every ``interval`` seconds (and at start)."""

    async def plan(r: Resources) -> Plan:
        view = VisitTaskView(r.pool)
        consumer = ConsumerSpec(
            durable, [f"{subject_prefix}.Pairing.>"], Scheduler(r.app, view, r.stop).handle, max_deliver=max_deliver
        )
        return Plan(consumers=[consumer], tasks=[lambda stop: sweep_loop(r.app, view, stop, interval)])

    return WorkerSpec(
        "scheduler",
        make_app,
        database_url,
        nats_url,
        plan,
        stream=stream,
        subject_prefix=subject_prefix,
        pool_size=2,
        log_fields={"interval": interval},
    )


def scheduler_worker(make_app: Callable[[], Any], database_url: str, nats_url: str, **options: Any) -> Any:
    """The scheduler as a worker for workers.runtime (``guanai scheduler``, and in ``guanai serve``),
    over the application ``make_app`` builds (guanai/bootstrap.py). Like the router, a scheduler
    that failed to start (the database away) tries again."""
    return worker(scheduler_spec(make_app, database_url, nats_url, **options))
