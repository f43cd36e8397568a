"""Read models built from the event store's notification log, each with its own tracked position."""

from __future__ import annotations

from typing import Any

from projections.accounts import AccountsProjection
from projections.emergency_queue import EmergencyQueueProjection
from projections.registry import RegistryProjection
from projections.supervision import SupervisionProjection
from projections.timeline import TimelineProjection
from projections.visit_tasks import VisitTaskProjection


def all_projections() -> list[Any]:
    """Every read model kept by the projector."""
    return [
        RegistryProjection(),
        TimelineProjection(),
        SupervisionProjection(),
        EmergencyQueueProjection(),
        VisitTaskProjection(),
        AccountsProjection(),
    ]
