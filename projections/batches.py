"""What a projection is (``Projection``), and how a batch of the log reaches one: only the events
some projection handles are decoded (``EventFilter``: by the stored topic, resolved once per
topic), with one key look-up for the batch, and applied inside the caller's transaction. Shared
by the runner, the rebuild and the relay."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import msgspec
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
    # Optional: ``fields(event_class) -> Collection[str] | None``, the only fields of an event of
    # that class it reads (None: any): the other fields are then not decoded for it. An event
    # missing a field a statement needs fails loudly (KeyError, AttributeError); a projection that
    # reads a field with a default (``vars(e).get``) must name it.
    # Optional: ``rebuild_batch(cur, events)`` and ``finish_rebuild(cur)``, both or neither: a
    # rebuild's replay into empty tables then calls the first instead of ``apply_events`` and the
    # second once after it (projections/rebuild.py); they must leave the tables ``apply_events``
    # would have, and later batches go through ``apply_events``.
    # Optional, with those two: ``replay_reader(mapper, decode)``, a function of the log's rows
    # ``(notification id, originator id as 16 bytes, version, topic, state)`` giving what the replay's
    # ``rebuild_batch`` takes instead of ``(position, event)`` pairs (``decode`` makes those of
    # the rows it reads no other way).


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
        self._fields: dict[str, frozenset[str] | None] = {}

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

    def fields(self, topic: str) -> frozenset[str] | None:
        """The fields the projections handling ``topic``'s class read (None: all of them, when one
        of them does not say, or the topic does not resolve)."""
        if topic in self._fields:
            return self._fields[topic]
        try:
            event_class = resolve_topic(topic)
        except TopicError:
            self._fields[topic] = None
            return None
        union: set[str] = set()
        for projection in self.projections:
            if not handles(projection, event_class):
                continue
            says = getattr(projection, "fields", None)
            named = None if says is None else says(event_class)
            if named is None:
                self._fields[topic] = None
                return None
            union.update(named)
        self._fields[topic] = frozenset(union)
        return self._fields[topic]


def decode_wanted(mapper: Any, stored: Sequence[Any], wanted: Callable[[str], bool]) -> list[tuple[int, Any]]:
    """``(notification id, domain event)`` for the notifications whose topic is ``wanted``, in order;
    when ``wanted`` is an ``EventFilter``, each event holds only the fields its projections read."""
    keep = [n for n in stored if wanted(n.topic)]
    fields = wanted.fields if isinstance(wanted, EventFilter) else None
    return list(zip((n.id for n in keep), decode_all(mapper, keep, fields), strict=True))


def decode_all(
    mapper: Any, stored: Sequence[Any], fields: Callable[[str], Collection[str] | None] | None = None
) -> list[Any]:
    """Domain events of a batch, with one key look-up for all of it when the mapper seals
    personal data (``to_domain_events``); ``fields`` by topic the only fields wanted (None: all),
    when the mapper can leave the others out."""
    many = getattr(mapper, "to_domain_events", None)
    if many is None:
        return [mapper.to_domain_event(s) for s in stored]
    return many(stored) if fields is None else many(stored, fields)


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


# ---- batched writes ---------------------------------------------------------------------------------

PLACEHOLDER = re.compile(r"%\((\w+)\)s")
# The SQL type of each event field or derived value the views' statements take, by name.
FIELD_TYPES: dict[str, str] = {
    **dict.fromkeys(
        ("originator_id", "pairing_id", "person_id", "group_id", "helper_id", "log_id", "task_id", "parent_id",
         "village_id", "org_unit_id", "township_id", "county_id", "duplicate_of"),
        "uuid",
    ),
    **dict.fromkeys(("org_path", "path", "helper_ids", "person_ids"), "uuid[]"),
    **dict.fromkeys(("risk_tags", "services", "responder_ids"), "text[]"),
    **dict.fromkeys(
        ("timestamp", "occurred_at", "opens_at", "closes_at", "expires_at", "visited_at", "deadline"), "timestamptz"
    ),
    **dict.fromkeys(("birth_date", "care_agreement_signed_on", "signed_on", "starts_on", "ends_on", "period_start",
                     "due_until"), "date"),
    **dict.fromkeys(("originator_version", "capacity", "people", "to_level"), "int"),
    "position": "bigint",
    **dict.fromkeys(("has_guardian", "late", "follow_up_needed", "raise_emergency"), "boolean"),
    **dict.fromkeys(
        ("cadence", "mode", "visit_mode", "code", "name", "level", "kind", "sex", "tag", "role", "shape", "reason",
         "pairing_key", "emergency_kind", "category", "severity", "source", "actor_id", "outcome", "roster_entry"),
        "text",
    ),
}  # fmt: skip


class SetStatement:
    """A one-row statement (``INSERT ... VALUES (...)`` or ``UPDATE ... WHERE ...``, with
    ``%(name)s`` placeholders) rewritten to take many rows at once, as one JSON array
    (``json_to_recordset``): one statement per batch for PostgreSQL to plan and run, instead of
    one per event. Only the placeholders' values are sent, as before."""

    def __init__(self, statement: str, types: Mapping[str, str] = FIELD_TYPES) -> None:
        self.one = statement
        self.names = tuple(dict.fromkeys(PLACEHOLDER.findall(statement)))
        # Prefixed, so that no field can be taken for a column of the table written.
        self._keys = tuple((f"_{n}", n) for n in self.names)
        rows = "json_to_recordset(%s::json) AS u(" + ", ".join(f"_{n} {types[n]}" for n in self.names) + ")"
        body = PLACEHOLDER.sub(lambda m: f"u._{m.group(1)}", statement)
        if body.startswith("INSERT"):
            head, _, rest = body.partition(" VALUES (")
            end = _closing(rest)
            self.many = f"{head} SELECT {rest[:end]} FROM {rows}{rest[end + 1 :]}"
        elif body.startswith("UPDATE") and " WHERE " in body:
            head, _, where = body.rpartition(" WHERE ")
            self.many = f"{head} FROM {rows} WHERE {where}"
        else:
            raise ValueError(f"not a one-row INSERT ... VALUES or UPDATE ... WHERE: {statement}")

    def rows(self, params_seq: Iterable[Mapping[str, Any]]) -> str:
        keys = self._keys
        return msgspec.json.encode([{k: p[n] for k, n in keys} for p in params_seq]).decode()


def _closing(text: str) -> int:
    """Index of the parenthesis closing the one opened just before ``text``."""
    depth = 1
    for i, c in enumerate(text):
        depth += (c == "(") - (c == ")")
        if depth == 0:
            return i
    raise ValueError(f"unbalanced parentheses: {text}")


def statement_fields(
    statements: Mapping[type, str | Iterable[str]], derived: Mapping[type, Iterable[str]] | None = None
) -> dict[type, frozenset[str]]:
    """By event class, the event fields a projection made of statements reads (its ``fields``):
    every placeholder of the class's statements (those naming derived values or ``position``
    match no field and are harmless), the fields ``derived`` names for computing its other
    values, and the aggregate id (the row written)."""
    derived = derived or {}
    out = {}
    for cls, given in statements.items():
        texts = [given] if isinstance(given, str) else list(given)
        names = {name for text in texts for name in PLACEHOLDER.findall(text)}
        out[cls] = frozenset({*names, *derived.get(cls, ()), "originator_id"})
    return out


def set_statements(statements: Mapping[type, str]) -> dict[type, SetStatement]:
    return {cls: SetStatement(statement) for cls, statement in statements.items()}


def statement_writes(
    events: Iterable[tuple[int, Any]],
    statements: Mapping[type, SetStatement],
    derived: Mapping[type, Callable[[Any], dict[str, Any]]] | None = None,
) -> Iterator[tuple[Hashable, SetStatement, dict[str, Any]]]:
    """``(row, statement, parameters)`` for each event that has a statement: the parameters are
    the event's fields, its ``position`` and what ``derived`` computes for its class. ``row`` is
    the event's aggregate id: the only row a statement of these projections touches."""
    for position, event in events:
        statement = statements.get(type(event))
        if statement is None:
            continue
        params = {**vars(event), "position": position}
        if derived is not None and (derive := derived.get(type(event))) is not None:
            params.update(derive(event))
        yield event.originator_id, statement, params


def write_batched(cur: psycopg.Cursor[Any], writes: Iterable[tuple[Hashable, SetStatement, Mapping[str, Any]]]) -> int:
    """Run ``(row, statement, parameters)`` writes as one statement per statement kind and round
    instead of one per write; returns the number of writes.

    Equivalent to running them one by one in the order given when each statement touches only
    its ``row`` (and reads no other row the batch writes): the n-th write of a row goes in round
    n, so the writes of one row keep their order (its insert before its updates), while the
    writes within a round touch distinct rows (an UPDATE ... FROM meets each row once) and may
    run in any order. All of it is one pipeline inside the caller's transaction: an error
    anywhere leaves nothing of the batch."""
    rounds: list[dict[SetStatement, list[Mapping[str, Any]]]] = []
    seen: dict[Hashable, int] = {}
    count = 0
    for row, statement, params in writes:
        n = seen.get(row, 0)
        seen[row] = n + 1
        if n == len(rounds):
            rounds.append({})
        rounds[n].setdefault(statement, []).append(params)
        count += 1
    if count:
        with cur.connection.pipeline():
            for by_statement in rounds:
                for statement, params_seq in by_statement.items():
                    cur.execute(statement.many, (statement.rows(params_seq),))
    return count
