"""Per-person timelines: everything that happened to one elder or child, in log order.

``TimelineProjection`` writes one ``tl_entries`` row per (person, event): the person's own
events (registration, risk tags, guardian, agreement, leaving and returning) and every event of
an aggregate that concerns them (a pairing's formation, changes and end appear on the timeline
of each person in it; visit tasks and emergency reports on their subject's). Which persons an
aggregate concerns is kept in ``tl_subjects``, learnt from its creation event (``person_ids`` or
``person_id``) and from membership events, so an event of any aggregate with such fields lands
on the right timelines without a handler of its own. A batch reads the subjects it needs once,
works out every entry in memory, then writes the entries and the changed subjects, one statement each,
all in the runner's transaction.

An entry's ``kind`` is ``<aggregate>.<event>`` in snake case (``person.risk_tag_added``,
``pairing.formed``); its ``summary`` holds the event's own fields minus the ones its class
declares personal (``domain.base.Personal``: names, ID numbers, phones, family contacts, visit
findings, notes, descriptions and leave reasons stay sealed in the event store), so an erased
person's timeline holds nothing to erase. ``TimelineView`` reads pages.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple
from uuid import UUID

import msgspec
import psycopg
from psycopg import sql
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import set_json_loads
from psycopg_pool import ConnectionPool

from domain.base import META_FIELDS, CareAggregate, personal_fields
from projections.one_query import one_query_cursor

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
@functools.cache  # per class: what a class declares does not change
def _left_out(event_class: type) -> frozenset[str]:
    return _OWN_FIELDS | PRIVATE_FIELDS | personal_fields(event_class)


def summary_of(event: Any) -> dict[str, Any]:
    event_class = type(event)
    special = SUMMARIES.get(event_class.__qualname__)
    if special is not None:
        return special(event)
    left_out = _left_out(event_class)
    return {k: v for k, v in vars(event).items() if k not in left_out}


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


class _Class(NamedTuple):
    """What the projection needs to know of an event class, worked out once per class."""

    wanted: bool  # may be about people (its aggregate and kind are not left out)
    person: bool  # an event of a Person: on their own timeline
    created: bool  # an aggregate's creation: names its persons
    added: bool  # a membership event adding ``person_id`` (a name ending in Added)
    removed: bool  # one removing ``person_id``
    kind: str


@functools.cache
def _class(event_class: type) -> _Class:
    name = event_class.__name__
    return _Class(
        wanted=_may_be_about_people(event_class),
        person=event_class.__qualname__.rpartition(".")[0] == "Person",
        created=issubclass(event_class, CareAggregate.Created),
        added=name.endswith("Added"),
        removed=name.endswith("Removed"),
        kind=_kind(event_class),
    )


@functools.cache
def _may_be_about_people(event_class: type) -> bool:
    aggregate = event_class.__qualname__.rpartition(".")[0]
    return aggregate not in NOT_ABOUT_A_PERSON and event_class.__qualname__ not in SKIPPED


# What an entry reads of every event besides its summary, and the persons an aggregate's events name.
_ENTRY_FIELDS = frozenset(
    {
        "originator_id",
        "originator_version",
        "timestamp",
        "actor_id",
        "actor_role",
        "occurred_at",
        "person_id",
        "person_ids",
    }
)
# The fields the special summaries read.
_SUMMARY_FIELDS: dict[str, frozenset[str]] = {
    "Person.Registered": frozenset({"kind", "sex", "village_id", "risk_tags", "guardian", "care_agreement_signed_on"}),
    "Person.GuardianAssigned": frozenset(),
}


@functools.cache
def _fields(event_class: type) -> frozenset[str] | None:
    """The fields of an event the projection reads: its summary's and the entry's (None, all
    of them, for a class whose fields are not declared as a dataclass's)."""
    if not dataclasses.is_dataclass(event_class):
        return None
    special = _SUMMARY_FIELDS.get(event_class.__qualname__)
    if special is None:
        left_out = _left_out(event_class)
        special = frozenset(f.name for f in dataclasses.fields(event_class) if f.name not in left_out)
    return special | _ENTRY_FIELDS


def _persons_of(event: Any, subjects: dict[UUID, list[UUID]], changed: set[UUID]) -> list[UUID]:
    """Whose timelines ``event`` goes on; keeps ``subjects`` (aggregate -> persons) up to date:
    a member added sees the event that adds them, a member removed the one that removes them."""
    about = _class(type(event))
    if about.person:
        return [event.originator_id]
    fields, aggregate_id = vars(event), event.originator_id
    if about.created:
        persons = list(fields.get("person_ids") or ([fields["person_id"]] if fields.get("person_id") else []))
        if persons:
            subjects[aggregate_id] = persons
            changed.add(aggregate_id)
        return persons
    persons = subjects.get(aggregate_id)
    if persons is None:
        return []
    person_id = fields.get("person_id")
    if person_id is not None and about.added and person_id not in persons:
        subjects[aggregate_id] = persons = [*persons, person_id]
        changed.add(aggregate_id)
    elif person_id is not None and about.removed:
        subjects[aggregate_id] = [p for p in persons if p != person_id]
        changed.add(aggregate_id)
    return persons


# A batch's entries by binary COPY (apply_batch): PostgreSQL takes each value as it is stored,
# with no text to parse (the summary's JSON aside) and no statement to plan; an entry goes on the
# timeline of each of its persons. The changed subjects as one JSON array, one statement.
COPY_ENTRIES = f"COPY tl_entries ({COLUMNS}) FROM STDIN (FORMAT BINARY)"
# The summary goes as bytes already in jsonb's binary form (``prepare_batch``).
COPY_TYPES = ("uuid", "int8", "text", "bytea", "text", "text", "timestamptz", "timestamptz", "uuid", "int4")


class _EntryClass(NamedTuple):
    """What ``prepare_batch`` needs to know of an event class, worked out once per class and batch."""

    wanted: bool  # may be about people
    looked_up: bool  # its persons are the aggregate's subjects (not a Person's, not a creation's)
    special: Callable[[Any], dict[str, Any]] | None  # its summary, when one of SUMMARIES
    left_out: frozenset[str]  # the fields its summary leaves out (when not special)
    kind: str


def _entry_class(event_class: type) -> _EntryClass:
    about = _class(event_class)
    return _EntryClass(
        wanted=about.wanted,
        looked_up=not (about.person or about.created),
        special=SUMMARIES.get(event_class.__qualname__),
        left_out=_left_out(event_class),
        kind=about.kind,
    )


class _Prepared(NamedTuple):
    """``prepare_batch``'s work: each event that may make entries with its COPY values (the person
    left out), and the aggregates whose subjects the batch must read."""

    relevant: list[tuple[Any, tuple[Any, ...]]]
    wanted: list[UUID]


SET_SUBJECTS = (
    "INSERT INTO tl_subjects SELECT * FROM json_to_recordset(%s::json) AS u(aggregate_id uuid, person_ids uuid[])"
    " ON CONFLICT (aggregate_id) DO UPDATE SET person_ids = EXCLUDED.person_ids"
)


class TimelineProjection:
    """Writes ``tl_entries`` (and the subjects of each aggregate) from the event log, a batch at
    a time: the subjects the batch needs are read once, the entries written in one statement."""

    name = "timeline"
    tables = TABLES
    schema_version = 2  # 2: summaries leave out every field an event declares personal

    def create_tables(self, cur: psycopg.Cursor[Any]) -> None:
        cur.execute(DDL)

    def reset(self, cur: psycopg.Cursor[Any]) -> None:
        cur.execute("TRUNCATE tl_entries, tl_subjects")

    def handles(self, event_class: type) -> bool:
        return _may_be_about_people(event_class)

    def fields(self, event_class: type) -> frozenset[str] | None:
        return _fields(event_class)

    def apply(self, cur: psycopg.Cursor[Any], event: Any, position: int) -> None:
        """One event by plain statements, a row per person (what ``apply_batch`` must equal)."""
        entries, subjects = self._entries(cur, [(position, event)])
        for persons, e in entries:
            values = (e["position"], e["kind"], _json(e["summary"]), e["actor_id"], e["actor_role"], e["occurred_at"])
            values += (e["recorded_at"], e["aggregate_id"], e["aggregate_version"])
            cur.executemany(f"INSERT INTO tl_entries ({COLUMNS}) VALUES ({', '.join(['%s'] * 10)})",
                            [(person, *values) for person in persons])  # fmt: skip
        if subjects:
            cur.executemany(SUBJECTS_SET, subjects)

    def prepare_batch(self, events: Sequence[tuple[int, Any]]) -> _Prepared:
        """The Python of a batch that needs no database: which events make entries, each one's
        COPY values with its summary already in jsonb's binary form (its version byte and
        msgspec's JSON, as the jsonb dumper would send it), and the aggregates whose subjects must
        be read."""
        encode = msgspec.json.encode
        known: dict[type, _EntryClass] = {}
        relevant: list[tuple[Any, tuple[Any, ...]]] = []
        wanted: list[UUID] = []
        for position, e in events:
            cls = type(e)
            about = known.get(cls)
            if about is None:
                known[cls] = about = _entry_class(cls)
            if about.wanted and hasattr(e, "actor_id"):
                if about.special is not None:
                    summary = about.special(e)
                else:
                    left_out = about.left_out
                    summary = {k: v for k, v in vars(e).items() if k not in left_out}
                values = (position, about.kind, b"\x01" + encode(summary), e.actor_id, e.actor_role,
                          e.occurred_at, e.timestamp, e.originator_id, e.originator_version)  # fmt: skip
                relevant.append((e, values))
                if about.looked_up:
                    wanted.append(e.originator_id)
        return _Prepared(relevant, wanted)

    def apply_batch(self, cur: psycopg.Cursor[Any], events: Sequence[tuple[int, Any]]) -> None:
        """A batch's entries by one binary COPY (each row a plain tuple whose summary goes as
        raw bytes: no Python dumper runs for it, no entry dict is made) and its changed subjects
        in one statement; the subjects it needs read once. A rebuild's replay writes the same
        way (it has no ``rebuild_batch``: projections/batches.py)."""
        prepared = self.prepare_batch(events)
        subjects: dict[UUID, list[UUID]] = {}
        if prepared.wanted:
            # The ids in binary: the text dumper of a list checks every element for quoting.
            cur.execute(
                "SELECT aggregate_id, person_ids FROM tl_subjects WHERE aggregate_id = ANY(%b::uuid[])",
                (prepared.wanted,),
            )
            subjects = {aggregate_id: list(persons) for aggregate_id, persons in cur.fetchall()}
        changed: set[UUID] = set()
        rows = []
        for e, values in prepared.relevant:
            for person in _persons_of(e, subjects, changed):
                rows.append((person, *values))
        if rows:
            with cur.connection.cursor() as copying, copying.copy(COPY_ENTRIES) as copy:
                copy.set_types(COPY_TYPES)
                write_row = copy.write_row
                for row in rows:
                    write_row(row)
        if changed:
            cur.execute(
                SET_SUBJECTS,
                (msgspec.json.encode([{"aggregate_id": a, "person_ids": subjects[a]} for a in changed]).decode(),),
            )

    def _entries(
        self, cur: psycopg.Cursor[Any], events: Sequence[tuple[int, Any]]
    ) -> tuple[list[tuple[list[UUID], dict[str, Any]]], list[tuple[UUID, list[UUID]]]]:
        """The entries of ``events`` (with the persons whose timelines each goes on), and the
        aggregates whose persons changed: the subjects the batch needs are read once."""
        relevant = [(position, e) for position, e in events if _class(type(e)).wanted and hasattr(e, "actor_id")]
        wanted = [e.originator_id for _, e in relevant if not (_class(type(e)).person or _class(type(e)).created)]
        subjects: dict[UUID, list[UUID]] = {}
        if wanted:
            cur.execute(
                "SELECT aggregate_id, person_ids FROM tl_subjects WHERE aggregate_id = ANY(%b::uuid[])", (wanted,)
            )
            subjects = {aggregate_id: list(persons) for aggregate_id, persons in cur.fetchall()}
        changed: set[UUID] = set()
        entries = []
        for position, e in relevant:
            persons = _persons_of(e, subjects, changed)
            if persons:
                entry = {
                    "position": position, "kind": _class(type(e)).kind, "summary": summary_of(e),
                    "actor_id": e.actor_id, "actor_role": e.actor_role, "occurred_at": e.occurred_at,
                    "recorded_at": e.timestamp, "aggregate_id": e.originator_id,
                    "aggregate_version": e.originator_version,
                }  # fmt: skip
                entries.append((persons, entry))
        return entries, [(aggregate_id, subjects[aggregate_id]) for aggregate_id in changed]


class TimelinePage(msgspec.Struct):
    rows: list[dict[str, Any]]
    total: int  # entries of this person matching the kind filter
    next_cursor: int | None  # pass as ``cursor`` for the next page; None on the last
    views_position: int | None = None  # the lowest position of the ``views`` asked for, read with the page


class RawTimelinePage(msgspec.Struct):
    """A page as ``page_sent_with`` reads it: each row a tuple of ``RAW_COLUMNS``, the summary as
    the JSON text the database holds (a str, not decoded), the aggregate's id as its text."""

    rows: list[tuple[Any, ...]]
    total: int
    next_cursor: int | None
    views_position: int | None = None


# The columns of a raw page's rows, in order (the person's id left out: the caller named it).
RAW_COLUMNS = COLUMNS.split(", ")[1:]
# The summary as the text of its JSON (a str; the jsonb's own output): no loader called per row.
# The aggregate's id as its text too (the canonical form, as a UUID is encoded in JSON): loading
# a UUID per row, and the person's id left out (the caller named it), were a twentieth of a read.
_RAW_SELECT = ", ".join(RAW_COLUMNS).replace("summary", "summary::text").replace("aggregate_id", "aggregate_id::text")


@functools.cache
def _views_position(views: tuple[str, ...]) -> str:
    """The lowest position of ``views`` as SQL text with the names in it, a "%" doubled: the same
    few names on every read, rendered once rather than bound per read."""
    names = sql.Literal(list(views)).as_string(None).replace("%", "%%")
    return f"(SELECT min(position) FROM projection_tracking WHERE name = ANY({names}))::bigint"


_PAGE_TEXTS: dict[tuple[Any, ...], str] = {}


def _page_text(
    cur: psycopg.ClientCursor[Any],
    newest_first: bool,
    kinds: tuple[str, ...],
    hidden: tuple[str, ...],
    after: bool,
    views: tuple[str, ...],
    gated: bool,
) -> str:
    """``page_sent_with``'s statement (``TimelineView._queries`` with the raw columns) as text
    for Python's ``%`` with ``person``, ``cursor``, ``limit`` and ``gate``: the kinds, the hidden
    aggregates and the views rendered once per combination of them (a "%" in them doubled),
    the rest put in per read as literals of their types. Binding the page's values per read
    (psycopg parsing the statement for its placeholders, dumping each value) took about a
    twentieth of a read's instructions. ``tests/integration/test_timeline.py`` compares the
    text with the statement as psycopg binds it."""
    key = (newest_first, kinds, hidden, after, views, gated)
    text = _PAGE_TEXTS.get(key)
    if text is None:
        query, _, params = TimelineView._queries(
            UUID(int=0), newest_first=newest_first, kinds=kinds, hidden=hidden, cursor=0 if after else None,
            limit=0, views=views, gate="%(gate)s" if gated else "", columns=_RAW_SELECT,
        )  # fmt: skip
        for name in ("exact", "prefixes", "hidden"):
            query = query.replace(f"%({name})s", sql.Literal(params[name]).as_string(cur).replace("%", "%%"))
        text = query
        if len(_PAGE_TEXTS) >= 1024:  # the kinds a client filters by vary; bounded all the same
            _PAGE_TEXTS.clear()
        _PAGE_TEXTS[key] = text
    return text


class TimelineView:
    """Read side: a person's entries, newest or oldest first, filtered by kind, keyset-paged."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    @staticmethod
    def _queries(
        person_id: UUID,
        *,
        newest_first: bool,
        kinds: Sequence[str],
        hidden: Sequence[str],
        cursor: int | None,
        limit: int,
        views: Sequence[str],
        gate: str = "",
        columns: str = COLUMNS,
    ) -> tuple[str, str, dict[str, Any]]:
        """The page's query (its rows, each with the total and the views' position), the query of
        the total and the position alone (past the end), and their parameters. ``gate``: an SQL
        condition (text, bound, a "%" doubled) without which the page has no rows."""
        exact = [k for k in kinds if "." in k]
        prefixes = [f"{k}.%" for k in kinds if "." not in k]
        where = "person_id = %(person)s"
        if kinds:
            where += " AND (kind = ANY(%(exact)s) OR kind LIKE ANY(%(prefixes)s))"
        if hidden:
            where += " AND NOT kind LIKE ANY(%(hidden)s)"
        params = {
            "person": person_id, "exact": exact, "prefixes": prefixes, "hidden": [f"{h}.%" for h in hidden],
            "cursor": cursor, "limit": limit,
        }  # fmt: skip
        order = "DESC" if newest_first else "ASC"
        after = (
            "" if cursor is None else (" AND position < %(cursor)s" if newest_first else " AND position > %(cursor)s")
        )
        views_position = _views_position(tuple(views))
        count = (
            f"SELECT count(*) AS _total, {views_position if views else 'NULL'} AS _views FROM tl_entries WHERE {where}"
        )
        # The page, the total and the views' position in one round trip (the total and the
        # position read apart only past the end).
        query = (
            f"SELECT {columns}, (SELECT count(*) FROM tl_entries WHERE {where}) AS _total,"
            f" {views_position if views else 'NULL'} AS _views FROM tl_entries WHERE {where}{after}"
            f"{' AND ' + gate if gate else ''}"
            f" ORDER BY position {order} LIMIT %(limit)s"
        )
        return query, count, params

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
        query, count, params = self._queries(
            person_id, newest_first=newest_first, kinds=kinds, hidden=hidden, cursor=cursor, limit=limit, views=views
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

    def page_sent_with(
        self,
        person_id: UUID,
        send: Callable[[psycopg.ClientCursor[Any], str, str, list[Any]], tuple[list[Any], bool]],
        *,
        newest_first: bool = True,
        kinds: Sequence[str] = (),
        hidden: Sequence[str] = (),
        cursor: int | None = None,
        limit: int = 50,
        views: Sequence[str] = (),
        gate: sql.Composable | None = None,
    ) -> tuple[RawTimelinePage, bool]:
        """As ``page``, the query sent by ``send`` with what it writes in the same round trip and
        transaction (a read's access log rows: ``Audit.read_with_access``). ``send`` gets a
        cursor on a connection in autocommit, the page's query with its parameters bound, and a
        condition (with its parameters) that holds while the person has entries (a write made
        only then is never made for an unknown person); it answers the rows and whether it
        wrote. The rows are tuples of ``RAW_COLUMNS``, summaries left as the JSON text the view
        holds (a caller that only passes them on need not decode them).

        ``gate`` (an access check's condition, ``Access.gate``): the page has rows, and the write
        is made, only where it holds; an empty page written nothing then may be a refusal."""
        if type(person_id) is not UUID:
            person_id = UUID(str(person_id))
        with one_query_cursor(self.pool, tuple_row) as cur:
            gate_text = "" if gate is None else gate.as_string(cur)
            # The page's text with its values put in (no binding per read, ``_page_text``); the
            # condition on what is written, the person's id in it, a "%" doubled: it is bound
            # again with the access log's row.
            text = _page_text(
                cur, newest_first, tuple(kinds), tuple(hidden), cursor is not None, tuple(views), bool(gate)
            )
            query = text % {
                "person": f"'{person_id.hex}'::uuid", "cursor": int(cursor or 0), "limit": int(limit), "gate": gate_text,
            }  # fmt: skip
            only_if = f"EXISTS (SELECT 1 FROM tl_entries WHERE person_id = '{person_id.hex}'::uuid)"
            if gate_text:
                only_if += " AND " + gate_text.replace("%", "%%")
            rows, sent = send(cur, query, only_if, [])
        if rows:
            total, views_at = rows[0][-2], rows[0][-1]
            rows = [r[:-2] for r in rows]
        else:  # past the end: the total and the position apart
            _, count, params = self._queries(
                person_id, newest_first=newest_first, kinds=kinds, hidden=hidden, cursor=cursor, limit=limit,
                views=views,
            )  # fmt: skip
            with self.pool.connection() as conn:
                total, views_at = conn.execute(count, params).fetchone() or (0, None)
        next_cursor = rows[-1][0] if len(rows) == limit and rows else None
        return RawTimelinePage(rows=rows, total=total, next_cursor=next_cursor, views_position=views_at), sent

    def exists(self, person_id: UUID) -> bool:
        with self.pool.connection() as conn:
            return (
                conn.execute("SELECT 1 FROM tl_entries WHERE person_id = %s LIMIT 1", (person_id,)).fetchone()
                is not None
            )
