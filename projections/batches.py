"""What a projection is (``Projection``), and how a batch of the log reaches one: decoded with
one key look-up for the batch, applied inside the caller's transaction. Shared by the runner,
the rebuild and the relay."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import psycopg


class Projection(Protocol):
    """A read model: its tables, how one event changes them, and how to empty them."""

    name: str
    tables: tuple[str, ...]  # every table it writes: dropped when its schema version changes
    schema_version: int  # raised whenever the tables change shape

    def create_tables(self, cur: psycopg.Cursor[Any]) -> None: ...

    def apply(self, cur: psycopg.Cursor[Any], event: Any, position: int) -> None: ...

    def reset(self, cur: psycopg.Cursor[Any]) -> None: ...

    # Optional: ``apply_batch(cur, events)`` with ``events`` a list of (position, event), to apply
    # a whole batch at once; the runner then calls it instead of ``apply`` (see apply_events).


def decode_all(mapper: Any, stored: Sequence[Any]) -> list[Any]:
    """Domain events of a batch, with one key look-up for all of it when the mapper seals
    personal data (``to_domain_events``)."""
    many = getattr(mapper, "to_domain_events", None)
    return many(stored) if many is not None else [mapper.to_domain_event(s) for s in stored]


def apply_events(
    conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any], projection: Projection, events: Sequence[tuple[int, Any]]
) -> None:
    """Apply ``(position, event)`` pairs in order, inside the caller's transaction: in one call
    when the projection takes whole batches (an ``apply_batch(cur, events)`` method, e.g. to
    COPY its rows), otherwise event by event in one statement pipeline."""
    apply_batch = getattr(projection, "apply_batch", None)
    if apply_batch is not None:
        apply_batch(cur, events)
        return
    with conn.pipeline():
        for position, event in events:
            projection.apply(cur, event, position)
