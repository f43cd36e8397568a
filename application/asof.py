"""An aggregate's state as of an instant, on either time axis, for any aggregate type.

- ``recorded``: what the system knew at T. The log only grows, so this is the longest prefix of
  the stream (in version order) recorded at or before T; a later event stamped earlier by
  another process's clock does not slip in before its predecessors.
- ``occurred``: what had happened in the world by T. Events may be recorded out of their world
  order (a visit logged offline days later), so this applies, in version order, every event
  that had occurred by T and leaves out the others, wherever they stand. An event that cannot
  apply without a left-out predecessor (nothing exists before the creation; a change that
  needs an earlier one) is left out too and listed, so the caller can say so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate


@dataclass
class Replayed:
    aggregate: Any  # None when nothing of the stream existed (or had happened) by then
    applied: list[Any] = field(default_factory=list)
    left_out: list[tuple[Any, str]] = field(default_factory=list)  # (event, why): occurred by T but not applicable


def occurred_at(event: Any) -> datetime:
    return getattr(event, "occurred_at", None) or event.timestamp


def replay_as_of(events: Iterable[Any], at: datetime, axis: str = "recorded") -> Replayed:
    """Fold ``events`` (one stream, in version order) as of ``at`` on ``axis``."""
    if axis not in ("recorded", "occurred"):
        raise ValueError(f"unknown time axis {axis!r}: recorded or occurred")
    out = Replayed(None)
    for event in events:
        if axis == "recorded":
            if event.timestamp > at:
                break
            out.aggregate = event.mutate(out.aggregate)
            out.applied.append(event)
        elif occurred_at(event) <= at:
            _apply_out_of_order(out, event)
    return out


def _apply_out_of_order(out: Replayed, event: Any) -> None:
    created = isinstance(event, Aggregate.Created)
    if out.aggregate is None and not created:
        out.left_out.append((event, "its stream had not been created by then"))
        return
    if created:
        out.aggregate = event.mutate(None)
        out.applied.append(event)
        return
    # The library's mutate insists on consecutive versions; left-out events make gaps, so the
    # event's own apply is used and the version set as the stream's would be after it.
    agg = out.aggregate
    saved = dict(agg.__dict__)
    try:
        event.apply(agg)
    except Exception as e:  # noqa: BLE001 - the event's own rule refused the state without its predecessor
        agg.__dict__.clear()
        agg.__dict__.update(saved)
        out.left_out.append((event, f"needs an event that had not occurred by then ({type(e).__name__})"))
        return
    agg.version = event.originator_version
    agg.modified_on = event.timestamp
    out.applied.append(event)
