"""Per-person timelines: everything that happened to one elder or child, in log order.

``TimelineProjection`` writes one ``tl_entries`` row per (person, event): the person's own
events (registration, risk tags, guardian, agreement, leaving and returning) and every event of
an aggregate that concerns them (a pairing's formation, changes and end appear on the timeline
of each person in it; visit tasks and emergency reports on their subject's). Which persons an
aggregate concerns is kept in ``tl_subjects``, learnt from its creation event (``person_ids`` or
``person_id``) and from membership events, so an event of any aggregate with such fields lands
on the right timelines without a handler of its own. A batch reads the subjects it needs once,
works out every entry in memory, then COPYs the entries in and writes the changed subjects,
all in the runner's transaction.

An entry's ``kind`` is ``<aggregate>.<event>`` in snake case (``person.risk_tag_added``,
``pairing.formed``); its ``summary`` holds the event's own fields minus the ones its class
declares personal (``domain.base.Personal``: names, ID numbers, phones, family contacts, visit
findings, notes, descriptions and leave reasons stay sealed in the event store), so an erased
person's timeline holds nothing to erase. ``TimelineView`` reads pages.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

import msgspec
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import ConnectionPool

from domain.base import META_FIELDS, CareAggregate, personal_fields

TABLES = ("tl_entries", "tl_subjects")

DDL = """
CREATE TABLE IF NOT EXISTS tl_entries (
    person_id uuid NOT NULL, position bigint NOT NULL, kind text NOT NULL, summary jsonb NOT NULL,
    actor_id text NOT NULL, actor_role text NOT NULL, occurred_at timestamptz, recorded_at timestamptz NOT NULL,
    aggregate_id uuid NOT NULL, aggregate_version int NOT NULL, PRIMARY KEY (person_id, position)
);
CREATE TABLE IF NOT EXISTS tl_subjects (aggregate_id uuid PRIMARY KEY, person_ids uuid[] NOT NULL);
"""

COLUMNS = "person_id, position, kind, summary, actor_id, actor_role, occurred_at, recorded_at, aggregate_id, aggregate_version"
COPY_ENTRIES = f"COPY tl_entries ({COLUMNS}) FROM STDIN"
SUBJECTS_SET = (
    "INSERT INTO tl_subjects VALUES (%s, %s) ON CONFLICT (aggregate_id) DO UPDATE SET person_ids = EXCLUDED.person_ids"
)

# Aggregates whose events concern no one person: they appear on no timeline.
NOT_ABOUT_A_PERSON = frozenset({"OrgUnit", "Helper", "VolunteerGroup", "HelperClaims", "ResponderRoster"})
# The person's side of a pairing change: the pairing's own event says it, with its details.
SKIPPED = frozenset({"Person.PairingJoined", "Person.PairingLeft"})
# Personal data stays in the event store (and is erased there with the person's key): each event
# class declares its own; these names are left out as well, a safety net for undeclared fields.
PRIVATE_FIELDS = frozenset(
    {"name", "id_number", "household", "guardian", "parents", "absent_children", "phone", "birth_date", "contacts"}
)
_OWN_FIELDS = frozenset(
    {*META_FIELDS, "originator_id", "originator_version", "originator_topic", "timestamp", "org_path"}
)
SUMMARIES: dict[str, Callable[[Any], dict[str, Any]]] = {
    "Person.Registered": lambda e: {
        "kind": e.kind,
        "sex": e.sex,
        "village_id": e.village_id,
        "risk_tags": e.risk_tags,
        "has_guardian": bool(e.guardian),
        "care_agreement_signed_on": e.care_agreement_signed_on,
    },
    # Who the guardian is (even their relation) is sealed: the entry says only that one was named.
    "Person.GuardianAssigned": lambda e: {},
}


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@functools.cache
def _kind(event_class: type) -> str:
    aggregate, _, name = event_class.__qualname__.rpartition(".")
    return f"{snake(aggregate)}.{snake(name)}"


def kind_of(event: Any) -> str:
    """``Pairing.PersonAdded`` -> ``pairing.person_added``."""
    return _kind(type(event))


@functools.cache
def _left_out(event_class: type) -> frozenset[str]:
    return _OWN_FIELDS | PRIVATE_FIELDS | personal_fields(event_class)


def summary_of(event: Any) -> dict[str, Any]:
    special = SUMMARIES.get(type(event).__qualname__)
    if special is not None:
        return special(event)
    left_out = _left_out(type(event))
    return {k: v for k, v in vars(event).items() if k not in left_out}


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _created(event: Any) -> bool:
    return isinstance(event, CareAggregate.Created)


def _aggregate(event: Any) -> str:
    return type(event).__qualname__.rpartition(".")[0]


@functools.cache
def _may_be_about_people(event_class: type) -> bool:
    aggregate = event_class.__qualname__.rpartition(".")[0]
    return aggregate not in NOT_ABOUT_A_PERSON and event_class.__qualname__ not in SKIPPED


def _about_people(event: Any) -> bool:
    return _may_be_about_people(type(event)) and hasattr(event, "actor_id")


def _persons_of(event: Any, subjects: dict[UUID, list[UUID]], changed: set[UUID]) -> list[UUID]:
    """Whose timelines ``event`` goes on; keeps ``subjects`` (aggregate -> persons) up to date:
    a member added sees the event that adds them, a member removed the one that removes them."""
    if _aggregate(event) == "Person":
        return [event.originator_id]
    fields, aggregate_id = vars(event), event.originator_id
    if _created(event):
        persons = list(fields.get("person_ids") or ([fields["person_id"]] if fields.get("person_id") else []))
        if persons:
            subjects[aggregate_id] = persons
            changed.add(aggregate_id)
        return persons
    persons = subjects.get(aggregate_id)
    if persons is None:
        return []
    person_id, name = fields.get("person_id"), type(event).__name__
    if person_id is not None and name.endswith("Added") and person_id not in persons:
        subjects[aggregate_id] = persons = [*persons, person_id]
        changed.add(aggregate_id)
    elif person_id is not None and name.endswith("Removed"):
        subjects[aggregate_id] = [p for p in persons if p != person_id]
        changed.add(aggregate_id)
    return persons


class TimelineProjection:
    """Writes ``tl_entries`` (and the subjects of each aggregate) from the event log, a batch at
    a time: the subjects the batch needs are read once, the entries are COPYed in."""

    name = "timeline"
    tables = TABLES
    schema_version = 2  # 2: summaries leave out every field an event declares personal

    def create_tables(self, cur: psycopg.Cursor[Any]) -> None:
        cur.execute(DDL)

    def reset(self, cur: psycopg.Cursor[Any]) -> None:
        cur.execute("TRUNCATE tl_entries, tl_subjects")

    def handles(self, event_class: type) -> bool:
        return _may_be_about_people(event_class)

    def apply(self, cur: psycopg.Cursor[Any], event: Any, position: int) -> None:
        self.apply_batch(cur, [(position, event)])

    def apply_batch(self, cur: psycopg.Cursor[Any], events: Sequence[tuple[int, Any]]) -> None:
        relevant = [(position, event) for position, event in events if _about_people(event)]
        wanted = [e.originator_id for _, e in relevant if _aggregate(e) != "Person" and not _created(e)]
        subjects: dict[UUID, list[UUID]] = {}
        if wanted:
            cur.execute("SELECT aggregate_id, person_ids FROM tl_subjects WHERE aggregate_id = ANY(%s)", (wanted,))
            subjects = {aggregate_id: list(persons) for aggregate_id, persons in cur.fetchall()}
        changed: set[UUID] = set()
        rows = []
        for position, e in relevant:
            persons = _persons_of(e, subjects, changed)
            if not persons:
                continue
            entry = (kind_of(e), _json(summary_of(e)), e.actor_id, e.actor_role, e.occurred_at, e.timestamp)
            rows.extend((person, position, *entry, e.originator_id, e.originator_version) for person in persons)
        if rows:
            with cur.copy(COPY_ENTRIES) as copy:
                for row in rows:
                    copy.write_row(row)
        if changed:
            cur.executemany(SUBJECTS_SET, [(aggregate_id, subjects[aggregate_id]) for aggregate_id in changed])


class TimelinePage(msgspec.Struct):
    rows: list[dict[str, Any]]
    total: int  # entries of this person matching the kind filter
    next_cursor: int | None  # pass as ``cursor`` for the next page; None on the last
    views_position: int | None = None  # the lowest position of the ``views`` asked for, read with the page


class TimelineView:
    """Read side: a person's entries, newest or oldest first, filtered by kind, keyset-paged."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def page(
        self,
        person_id: UUID,
        *,
        newest_first: bool = True,
        kinds: Sequence[str] = (),
        hidden: Sequence[str] = (),
        cursor: int | None = None,
        limit: int = 50,
        views: Sequence[str] = (),
    ) -> TimelinePage:
        """``kinds``: exact kinds (``pairing.formed``) or aggregates (``pairing`` = every
        ``pairing.*``). ``hidden``: aggregates whose entries the reader may not see (left out of
        the page and the total). ``cursor``: the position after which (in the chosen order) to continue.
        ``views``: projection names whose lowest position is read in the same statement (the
        position the page is at least as new as)."""
        exact = [k for k in kinds if "." in k]
        prefixes = [f"{k}.%" for k in kinds if "." not in k]
        where = "person_id = %(person)s"
        if kinds:
            where += " AND (kind = ANY(%(exact)s) OR kind LIKE ANY(%(prefixes)s))"
        if hidden:
            where += " AND NOT kind LIKE ANY(%(hidden)s)"
        params = {
            "person": person_id, "exact": exact, "prefixes": prefixes, "hidden": [f"{h}.%" for h in hidden],
            "cursor": cursor, "limit": limit, "views": list(views),
        }  # fmt: skip
        order = "DESC" if newest_first else "ASC"
        after = (
            "" if cursor is None else (" AND position < %(cursor)s" if newest_first else " AND position > %(cursor)s")
        )
        views_position = "(SELECT min(position) FROM projection_tracking WHERE name = ANY(%(views)s))::bigint"
        count = (
            f"SELECT count(*) AS _total, {views_position if views else 'NULL'} AS _views FROM tl_entries WHERE {where}"
        )
        # The page, the total and the views' position in one round trip (the total and the
        # position read apart only past the end).
        query = (
            f"SELECT {COLUMNS}, (SELECT count(*) FROM tl_entries WHERE {where}) AS _total,"
            f" {views_position if views else 'NULL'} AS _views FROM tl_entries WHERE {where}{after}"
            f" ORDER BY position {order} LIMIT %(limit)s"
        )
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            set_json_loads(msgspec.json.decode, cur)
            rows = cur.execute(query, params).fetchall()
            head = rows[0] if rows else cur.execute(count, params).fetchone()
        total, views_at = head["_total"], head["_views"]
        for row in rows:
            del row["_total"], row["_views"]
        next_cursor = rows[-1]["position"] if len(rows) == limit and rows else None
        return TimelinePage(rows=rows, total=total, next_cursor=next_cursor, views_position=views_at)

    def exists(self, person_id: UUID) -> bool:
        with self.pool.connection() as conn:
            return (
                conn.execute("SELECT 1 FROM tl_entries WHERE person_id = %s LIMIT 1", (person_id,)).fetchone()
                is not None
            )
