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
import struct
import typing
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, NamedTuple
from uuid import UUID

import msgspec
import psycopg
from eventsourcing.utils import TopicError, resolve_topic
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
        way but for ``rebuild_batch``'s faster replay."""
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

    # ---- a rebuild's replay (projections/rebuild.py) ------------------------------------------

    def replay_reader(
        self, mapper: Any, decode: Callable[[Sequence[tuple[int, Any, int, str, Any]]], list[tuple[int, Any]]]
    ) -> Callable[[Sequence[tuple[int, Any, int, str, Any]]], list[_Replayed]]:
        """The reader of a rebuild's rows (``(notification id, originator id as its 16 bytes,
        version, topic, state)``) into what ``rebuild_batch`` writes: an entry's COPY values made straight from
        the stored state by code compiled once per event class (``_compile``: a msgspec Struct of
        the fields the entry reads, no event object, no summary dict built field by field), and
        through ``decode`` (the rebuild's decoder of rows into events) for the rows that code
        cannot take: a class the mapper gives no ``fields_reader`` for, a state that does not fit
        its class. ``tests/integration/test_timeline_replay.py`` checks both give the same."""
        fields_reader = getattr(mapper, "fields_reader", None)
        compiled: dict[str, Callable[[int, bytes, int, bytes], _Replayed | None] | None] = {}
        fails = (msgspec.ValidationError, msgspec.DecodeError, ValueError)  # e.g. a date's text that is none

        def read(rows: Sequence[tuple[int, Any, int, str, Any]]) -> list[_Replayed]:
            out: list[_Replayed | None] = []
            others: list[tuple[int, tuple[int, Any, int, str, Any]]] = []
            add = out.append
            for row in rows:
                position, originator_id, version, topic, data = row
                make = compiled.get(topic, compiled)
                if make is compiled:  # a topic not met yet
                    make = compiled[topic] = None if fields_reader is None else _compile(topic, fields_reader)
                if make is not None:
                    try:
                        add(make(position, originator_id, version, data))
                        continue
                    except fails:
                        pass  # made from the event below, as the live path makes it
                others.append((len(out), row))
                add(None)
            if not others:
                return out  # type: ignore[return-value]
            as_read = [(p, UUID(bytes=o), v, t, d) for _, (p, o, v, t, d) in others]
            for (i, _), (position, event) in zip(others, decode(as_read), strict=True):
                out[i] = replayed(position, event)
            return [r for r in out if r is not None]

        return read

    def rebuild_batch(self, cur: psycopg.Cursor[Any], events: Sequence[_Replayed]) -> None:
        """A replayed batch (what ``replay_reader`` read) into the empty tables: the entries
        ``apply_batch`` would write, by one binary COPY of rows made of bytes (an entry's values
        after the person's id are encoded once per event), the subjects it needs from earlier
        batches read once and the changed ones written in one statement, each id as its 16 bytes."""
        # The subjects of the aggregates created earlier in the batch are the batch's own (none
        # was stored before their creation): only the others are read.
        created: set[bytes] = set()
        looked_up: set[bytes] = set()
        for how, aggregate, _, _ in events:
            if how == _CREATED:
                created.add(aggregate)
            elif how >= _LOOKED_UP and aggregate not in created:
                looked_up.add(aggregate)
        subjects: dict[bytes, list[bytes]] = {}
        if looked_up:
            cur.execute(READ_SUBJECTS, {"ids": b"".join(looked_up)}, binary=True)
            subjects = {bytes(a): _ids(persons) for a, persons in cur.fetchall()}
        changed: set[bytes] = set()
        head = _ROW_HEAD
        rows = [COPY_SIGNATURE]
        add = rows.append
        for how, aggregate, person, tail in events:
            if how == _OWN:
                add(tail)  # the whole row already
                continue
            if how == _CREATED:
                persons = person
                if persons:
                    subjects[aggregate] = persons
                    changed.add(aggregate)
            else:
                persons = subjects.get(aggregate)
                if persons is None:
                    continue
                if how == _ADDED and person not in persons:
                    subjects[aggregate] = persons = [*persons, person]
                    changed.add(aggregate)
                elif how == _REMOVED:
                    subjects[aggregate] = [p for p in persons if p != person]
                    changed.add(aggregate)
            for p in persons:  # joined once below, not concatenated here
                add(head)
                add(p)
                add(tail)
        if len(rows) > 1:
            rows.append(COPY_TRAILER)
            with cur.connection.cursor() as copying, copying.copy(REPLAY_COPY) as copy:
                copy.write(b"".join(rows))
        # The subjects of the aggregates created in the batch are new rows (nothing of theirs was
        # stored before): by binary COPY, the cheapest insert; the few others by an upsert.
        if new := changed & created:
            rows = [COPY_SIGNATURE]
            add = rows.append
            for a in new:
                persons = subjects[a]
                if persons:
                    add(_SUBJECT_HEAD(2, 16, a, 20 + 20 * len(persons), 1, 0, _UUID_OID, len(persons), 1))
                    add(_LENGTH_16 + _LENGTH_16.join(persons))
                else:
                    add(_EMPTY_SUBJECT_HEAD(2, 16, a, 12, 0, 0, _UUID_OID))
            add(COPY_TRAILER)
            with cur.connection.cursor() as copying, copying.copy(REPLAY_COPY_SUBJECTS) as copy:
                copy.write(b"".join(rows))
        if changed := changed - created:
            joined = b"".join
            cur.execute(WRITE_SUBJECTS, ([a + joined(subjects[a]) for a in changed],))

    def finish_rebuild(self, cur: psycopg.Cursor[Any]) -> None:
        """Nothing to finish: ``rebuild_batch`` leaves the tables as ``apply_batch`` would."""

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


# ---- the replay of a rebuild, compiled per event class ---------------------------------------------

# What ``replay_reader`` makes of an event with entries: how its persons are found (the
# aggregate's own id for a person's event; the persons it names for an aggregate's creation; the
# aggregate's subjects otherwise, a member added or removed by the event), the aggregate's id and
# the person's (or the created persons') as 16 bytes, and the entry's COPY values after the
# person's id, in COPY's binary format (for a person's own event, the whole row).
_OWN, _CREATED, _LOOKED_UP, _ADDED, _REMOVED = range(5)
_Replayed = tuple[int, bytes, Any, bytes]

COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8  # the binary format's header, no flags or extension
COPY_TRAILER = b"\xff\xff"
# The replay's COPY: the columns in the order its rows are made, the fixed-size ones first.
REPLAY_COPY = (
    "COPY tl_entries (person_id, position, aggregate_version, recorded_at, occurred_at, aggregate_id, kind,"
    " actor_role, actor_id, summary) FROM STDIN (FORMAT BINARY)"
)
_ROW_HEAD = struct.pack(">hi", 10, 16)  # 10 columns, then the person's id (16 bytes)
_int4 = struct.Struct(">i").pack
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# The subjects of the aggregates sent as one bytea of their 16-byte ids, each read as its id's
# bytes and its persons' ids, 16 bytes each, in order (NULL for none).
READ_SUBJECTS = (
    "SELECT uuid_send(s.aggregate_id), (SELECT string_agg(uuid_send(p), ''::bytea ORDER BY n)"
    " FROM unnest(s.person_ids) WITH ORDINALITY AS u(p, n)) FROM tl_subjects s"
    " WHERE s.aggregate_id = ANY(ARRAY(SELECT encode(substring(%(ids)b::bytea FROM i FOR 16), 'hex')::uuid"
    " FROM generate_series(1, length(%(ids)b::bytea), 16) AS i))"
)


# New subjects by binary COPY: each row its aggregate's id and its persons' ids as a uuid[] in
# the array's binary form (dimensions, no nulls, the element type, size and lower bound, then each
# element with its length; an empty array has no dimension).
REPLAY_COPY_SUBJECTS = "COPY tl_subjects (aggregate_id, person_ids) FROM STDIN (FORMAT BINARY)"
_UUID_OID = 2950
_SUBJECT_HEAD = struct.Struct(">hi16siiiiii").pack
_EMPTY_SUBJECT_HEAD = struct.Struct(">hi16siiii").pack
_LENGTH_16 = struct.pack(">i", 16)
# Changed subjects stored before, each as one bytea: the aggregate's id and its persons' ids.
WRITE_SUBJECTS = (
    "INSERT INTO tl_subjects SELECT encode(substring(r FROM 1 FOR 16), 'hex')::uuid,"
    " ARRAY(SELECT encode(substring(r FROM i FOR 16), 'hex')::uuid FROM generate_series(17, length(r), 16) AS i"
    " ORDER BY i) FROM unnest(%b::bytea[]) AS r"
    " ON CONFLICT (aggregate_id) DO UPDATE SET person_ids = EXCLUDED.person_ids"
)


def _ids(joined: bytes | None) -> list[bytes]:
    return [] if joined is None else [bytes(joined[i : i + 16]) for i in range(0, len(joined), 16)]


def _text(value: str) -> bytes:
    data = value.encode()
    return _int4(len(data)) + data


def _tail(
    position: int, kind: bytes, summary: bytes, actor_id: str, actor_role: str, occurred_at: datetime | None,
    recorded_at: datetime, aggregate: bytes, version: int,
) -> bytes:  # fmt: skip
    """An entry's COPY values after the person's id, in REPLAY_COPY's order, each as
    ``apply_batch``'s COPY_TYPES send it (``kind``: its text with its length; ``summary``:
    msgspec's JSON of it; an instant as microseconds since 2000-01-01 UTC, as psycopg's dumper
    sends it: a naive one fails as there). Texts and epochs by offset are kept as made."""
    texts, epochs = _TEXTS, _EPOCHS
    actor = texts.get(actor_id) or _cached_text(actor_id)
    role = texts.get(actor_role) or _cached_text(actor_role)
    recorded = (recorded_at - (epochs.get(recorded_at.tzinfo) or _epoch_in(recorded_at.tzinfo))) // _MICROSECOND
    if occurred_at is None:
        fixed = _FIXED_NO_OCCURRED(8, position, 4, version, 8, recorded, -1, 16, aggregate)
    else:
        occurred = (occurred_at - (epochs.get(occurred_at.tzinfo) or _epoch_in(occurred_at.tzinfo))) // _MICROSECOND
        fixed = _FIXED(8, position, 4, version, 8, recorded, 8, occurred, 16, aggregate)
    return b"".join((fixed, kind, role, actor, _SUMMARY_HEAD(len(summary) + 1, 1), summary))


# position, aggregate_version, recorded_at, occurred_at (or NULL), aggregate_id: each with its length
_FIXED = struct.Struct(">iqiiiqiqi16s").pack
_FIXED_NO_OCCURRED = struct.Struct(">iqiiiqii16s").pack
_SUMMARY_HEAD = struct.Struct(">iB").pack  # the jsonb's length and its binary format's version
_TEXTS: dict[str, bytes] = {}  # actors' ids and roles, each encoded with its length
_EPOCHS: dict[Any, datetime] = {}  # by fixed offset: PostgreSQL's epoch in it


def _cached_text(value: str) -> bytes:
    if len(_TEXTS) >= 100_000:
        _TEXTS.clear()
    _TEXTS[value] = encoded = _text(value)
    return encoded


def _epoch_in(tz: Any) -> datetime:
    """PostgreSQL's epoch in ``tz`` when a fixed offset (``timezone``): a datetime of that very
    tzinfo is subtracted from it without asking either for its offset (the same instant, so the
    same difference). Any other tzinfo (or none) gets the epoch in UTC."""
    if type(tz) is not timezone:
        return _PG_EPOCH
    if len(_EPOCHS) >= 1_000:
        _EPOCHS.clear()
    _EPOCHS[tz] = epoch = _PG_EPOCH.astimezone(tz)
    return epoch


def replayed(position: int, event: Any) -> _Replayed | None:
    """What ``replay_reader`` makes of a decoded event (None: no entries), by the same steps as
    ``prepare_batch`` and ``_persons_of``; the compiled code must give the same."""
    about, cls = _class(type(event)), _entry_class(type(event))
    if not about.wanted or not hasattr(event, "actor_id"):
        return None
    summary = cls.special(event) if cls.special is not None else {
        k: v for k, v in vars(event).items() if k not in cls.left_out
    }  # fmt: skip
    aggregate = event.originator_id.bytes
    tail = _tail(position, _text(about.kind), msgspec.json.encode(summary), event.actor_id, event.actor_role,
                 event.occurred_at, event.timestamp, aggregate, event.originator_version)  # fmt: skip
    if about.person:
        return _OWN, aggregate, None, _ROW_HEAD + aggregate + tail
    fields = vars(event)
    if about.created:
        return _CREATED, aggregate, _created(fields.get("person_ids"), fields.get("person_id")), tail
    if about.added or about.removed:
        return _member(_ADDED if about.added else _REMOVED, aggregate, fields.get("person_id"), tail)
    return _LOOKED_UP, aggregate, None, tail


def _created(person_ids: Any, person_id: Any) -> list[bytes]:
    return [p.bytes for p in (person_ids or ([person_id] if person_id else []))]


def _member(how: int, aggregate: bytes, person_id: Any, tail: bytes) -> _Replayed:
    return (_LOOKED_UP, aggregate, None, tail) if person_id is None else (how, aggregate, person_id.bytes, tail)


def _compile(topic: str, fields_reader: Callable[[str, Any], Any]) -> Callable[..., _Replayed | None] | None:
    """``replayed`` for the events of ``topic``, straight from the stored state: a function of the
    row's ``(position, originator id, version, state)``, written for the class's fields (its
    summary a dict display of them, or its special summary given a Struct of them) and compiled
    once. It raises ``msgspec.ValidationError`` for a state the event would differ from (a
    missing field, another type: the mapper's reader decides). None: the class is not compiled
    (its events go through ``replayed``)."""
    try:
        cls = resolve_topic(topic)
    except TopicError:
        return None
    if not dataclasses.is_dataclass(cls):
        return None
    about, entry = _class(cls), _entry_class(cls)
    declared = {f.name for f in dataclasses.fields(cls)}
    if not about.wanted or not {"actor_id", "actor_role", "occurred_at", "timestamp"} <= declared:
        return None
    special = _SUMMARY_FIELDS.get(cls.__qualname__)
    # In the order the class declares them (the events' own: the same JSON text, not only the same jsonb).
    summary_fields = [
        f.name for f in dataclasses.fields(cls)
        if (f.name in special if special is not None else f.name not in entry.left_out)
    ]  # fmt: skip
    persons: list[str] = []
    if about.person:
        pass  # on the person's own timeline: no field names them
    elif about.created:
        persons = [f for f in ("person_ids", "person_id") if f in declared]
    elif about.added or about.removed:
        persons = [f for f in ("person_id",) if f in declared]
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - annotations that do not resolve: its events go through replayed
        return None
    if any(hints.get(f) not in (UUID, UUID | None, list[UUID]) for f in persons):
        return None  # the ids' bytes are taken from UUIDs
    wanted = {*summary_fields, "actor_id", "actor_role", "occurred_at", "timestamp", *persons}
    if not wanted <= declared or wanted & {"originator_id", "originator_version"}:
        return None
    found = fields_reader(topic, sorted(wanted))
    if found is None:
        return None
    reader = found[1]
    value = reader.expressions
    namespace = {**reader.namespace, "_decode": reader.decode, "_encode": msgspec.json.encode, "_tail": _tail,
                 "_kind": _text(about.kind), "_created": _created, "_member": _member}  # fmt: skip
    if entry.special is not None:
        namespace["_special"] = entry.special
        namespace["_Fields"] = msgspec.defstruct(f"{cls.__qualname__}.Summary", [(f, Any) for f in summary_fields],
                                                 kw_only=True, gc=False)  # fmt: skip
        summary = "_special(_Fields(" + ", ".join(f"{f}={value[f]}" for f in summary_fields) + "))"
    else:
        summary = "{" + ", ".join(f"{f!r}: {value[f]}" for f in summary_fields) + "}"
    fixed_first = ""
    if about.person:
        made = f"({_OWN}, aggregate, None, tail)"
        fixed_first = "_ROW_HEAD, aggregate, "  # a person's own event: the whole row (its person is the aggregate)
    elif about.created and persons == ["person_id"] and hints["person_id"] is UUID:
        made = f"({_CREATED}, aggregate, [{value['person_id']}.bytes], tail)"  # a UUID is never false
    elif about.created:
        made = f"({_CREATED}, aggregate, _created({value.get('person_ids', 'None')}, {value.get('person_id', 'None')}), tail)"
    elif persons:
        made = f"_member({_ADDED if about.added else _REMOVED}, aggregate, {value['person_id']}, tail)"
    else:
        made = f"({_LOOKED_UP}, aggregate, None, tail)"
    # ``_tail`` written out (a call less), an occurred_at the class declares never None (the Struct
    # refuses a null) without its test.
    instant = "(({0}) - (_epochs.get(({0}).tzinfo) or _epoch_in(({0}).tzinfo))) // _MICROSECOND"
    if hints.get("occurred_at") is datetime:
        fixed = (
            f"_FIXED(8, position, 4, version, 8, {instant.format('recorded')}, 8, {instant.format('occurred')},"
            " 16, aggregate)"
        )
    else:
        fixed = (
            f"_FIXED_NO_OCCURRED(8, position, 4, version, 8, {instant.format('recorded')}, -1, 16, aggregate)"
            f" if occurred is None else _FIXED(8, position, 4, version, 8, {instant.format('recorded')}, 8,"
            f" {instant.format('occurred')}, 16, aggregate)"
        )
    namespace.update(
        _epochs=_EPOCHS, _epoch_in=_epoch_in, _MICROSECOND=_MICROSECOND, _FIXED=_FIXED,
        _FIXED_NO_OCCURRED=_FIXED_NO_OCCURRED, _ROW_HEAD=_ROW_HEAD, _texts=_TEXTS, _cached_text=_cached_text, _SUMMARY_HEAD=_SUMMARY_HEAD,
        _join=b"".join,
    )  # fmt: skip
    source = f"""def replay(position, originator_id, version, data):
    s = _decode(data)
    aggregate = originator_id
    summary = _encode({summary})
    actor, role, occurred, recorded = {value["actor_id"]}, {value["actor_role"]}, {value["occurred_at"]}, {value["timestamp"]}
    tail = _join((
        {fixed_first}{fixed},
        _kind, _texts.get(role) or _cached_text(role), _texts.get(actor) or _cached_text(actor),
        _SUMMARY_HEAD(len(summary) + 1, 1), summary,
    ))
    return {made}
"""
    exec(compile(source, f"<timeline replay of {topic}>", "exec"), namespace)  # noqa: S102 - our own text
    return namespace["replay"]  # type: ignore[no-any-return]


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
