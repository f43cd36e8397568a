"""Read models built from the event store's notification log, each with its own tracked position."""

from __future__ import annotations

from typing import Any


def all_projections() -> list[Any]:
    """Every read model kept by the projector (timelines and supervision join here later)."""
    from projections.registry import RegistryProjection

    return [RegistryProjection()]
