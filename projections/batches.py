"""What a projection is (``Projection``), and how a batch of the log reaches one: only the events
some projection handles are decoded (``EventFilter``: by the stored topic, resolved once per
topic), with one key look-up for the batch, and applied inside the caller's transaction. Shared
by the runner, the rebuild and the relay."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import psycopg
from eventsourcing.utils import TopicError, resolve_topic


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
    # Optional: ``handles(event_class) -> bool``, false for the classes ``apply`` would skip: events
    # of those classes are then not decoded for it (decoding costs more than reading the log).


def handles(projection: Any, event_class: type) -> bool:
    """Whether ``projection`` may change on an event of ``event_class`` (true when it does not say)."""
    says = getattr(projection, "handles", None)
    return True if says is None else bool(says(event_class))


class EventFilter:
    """Which stored events a group of projections needs, by topic: a topic is resolved to its
    class once (so a renamed class registered with the library still resolves), and kept when
    any of the projections handles that class. A topic that does not resolve is kept: decoding
    it raises, as it did before there was a filter."""

    def __init__(self, projections: Iterable[Any]) -> None:
        self.projections = list(projections)
        self._topics: dict[str, bool] = {}

    def __call__(self, topic: str) -> bool:
        wanted = self._topics.get(topic)
        if wanted is None:
            try:
                event_class = resolve_topic(topic)
            except TopicError:
                wanted = True
            else:
                wanted = any(handles(p, event_class) for p in self.projections)
            self._topics[topic] = wanted
        return wanted


def decode_wanted(mapper: Any, stored: Sequence[Any], wanted: Callable[[str], bool]) -> list[tuple[int, Any]]:
    """``(notification id, domain event)`` for the notifications whose topic is ``wanted``, in order."""
    keep = [n for n in stored if wanted(n.topic)]
    return list(zip((n.id for n in keep), decode_all(mapper, keep), strict=True))


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
