"""The registry view (信息台账): org units, persons, helpers, groups and pairings as list screens
and county summaries need them.

``RegistryProjection`` writes the ``reg_*`` tables from the domain events; ``RegistryView``
reads them. Every row carries ``org_path`` (GIN indexed) so "everything under org unit X" is
``org_path @> ARRAY[X]``. No personal data is kept here: names, identity numbers, phone numbers,
households, family contacts and free-text reasons stay sealed in the event store, and lists that
show names resolve them per page from there (``api/names.py``), so an erased person reads as
erased in every list without touching the view. The view holds only what lists filter and count
by (a child has a guardian or not; a person is active, left or erased).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from domain.group import VolunteerGroup
from domain.helper import Helper
from domain.org_unit import OrgUnit
from domain.pairing import Pairing
from domain.person import Person
from domain.vocabulary import PairingShape
from projections.batches import set_statements, statement_fields, statement_writes, write_batched
from projections.replay import (
    Paths,
    ReplayRows,
    assignment_folds,
    copy_rows,
    id_bytes,
    id_int,
    ids_array,
    insert_row,
    jsonb,
    text_array,
)
from projections.scope import ListScope

TABLES = ("reg_org_units", "reg_persons", "reg_helpers", "reg_groups", "reg_pairings")

DDL = """
CREATE TABLE IF NOT EXISTS reg_org_units (
    id uuid PRIMARY KEY, code text NOT NULL, name text NOT NULL, level text NOT NULL, parent_id uuid,
    org_path uuid[] NOT NULL, version int NOT NULL, registered_at timestamptz, recorded_at timestamptz
);
CREATE INDEX IF NOT EXISTS reg_org_units_path ON reg_org_units USING gin (org_path);
CREATE INDEX IF NOT EXISTS reg_org_units_parent ON reg_org_units (parent_id, code);
CREATE TABLE IF NOT EXISTS reg_persons (
    id uuid PRIMARY KEY, kind text NOT NULL, sex text NOT NULL, birth_date date NOT NULL,
    village_id uuid NOT NULL, org_path uuid[] NOT NULL, risk_tags text[] NOT NULL, has_guardian boolean NOT NULL,
    care_agreement_signed_on date, status text NOT NULL, active_pairings int NOT NULL DEFAULT 0,
    registered_at timestamptz, recorded_at timestamptz, version int NOT NULL, registered_position bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS reg_persons_path ON reg_persons USING gin (org_path);
CREATE INDEX IF NOT EXISTS reg_persons_tags ON reg_persons USING gin (risk_tags);
CREATE INDEX IF NOT EXISTS reg_persons_order ON reg_persons (registered_position);
CREATE TABLE IF NOT EXISTS reg_helpers (
    id uuid PRIMARY KEY, role text NOT NULL, org_unit_id uuid NOT NULL, org_path uuid[] NOT NULL,
    capacity int NOT NULL, load int NOT NULL DEFAULT 0, assignments jsonb NOT NULL DEFAULT '{}',
    group_ids uuid[] NOT NULL DEFAULT '{}', status text NOT NULL,
    registered_at timestamptz, recorded_at timestamptz, version int NOT NULL, registered_position bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS reg_helpers_path ON reg_helpers USING gin (org_path);
CREATE INDEX IF NOT EXISTS reg_helpers_order ON reg_helpers (registered_position);
CREATE TABLE IF NOT EXISTS reg_groups (
    id uuid PRIMARY KEY, name text NOT NULL, org_unit_id uuid NOT NULL, org_path uuid[] NOT NULL,
    member_ids uuid[] NOT NULL DEFAULT '{}', status text NOT NULL, disband_reason text,
    formed_at timestamptz, recorded_at timestamptz, version int NOT NULL, registered_position bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS reg_groups_path ON reg_groups USING gin (org_path);
CREATE TABLE IF NOT EXISTS reg_pairings (
    id uuid PRIMARY KEY, shape text NOT NULL, helper_ids uuid[] NOT NULL, person_ids uuid[] NOT NULL,
    cadence text NOT NULL, visit_mode text NOT NULL, starts_on date NOT NULL, ends_on date, end_reason text,
    group_id uuid, org_path uuid[] NOT NULL, status text NOT NULL,
    formed_at timestamptz, recorded_at timestamptz, version int NOT NULL, registered_position bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS reg_pairings_path ON reg_pairings USING gin (org_path);
CREATE INDEX IF NOT EXISTS reg_pairings_helpers ON reg_pairings USING gin (helper_ids);
CREATE INDEX IF NOT EXISTS reg_pairings_persons ON reg_pairings USING gin (person_ids);
CREATE INDEX IF NOT EXISTS reg_pairings_order ON reg_pairings (registered_position);
"""


def _update(table: str, assignments: str) -> str:
    return f"UPDATE {table} SET {assignments}, version = %(originator_version)s WHERE id = %(originator_id)s"


# One statement per event class. Parameters are the event's own fields (see domain/), plus
# ``position`` (its notification id) and the few values in DERIVED.
_TIMES = "%(occurred_at)s, %(timestamp)s, %(originator_version)s, %(position)s"
STATEMENTS: dict[type, str] = {
    OrgUnit.Registered: "INSERT INTO reg_org_units VALUES (%(originator_id)s, %(code)s, %(name)s, %(level)s,"
    " %(parent_id)s, %(path)s, %(originator_version)s, %(occurred_at)s, %(timestamp)s)",
    OrgUnit.Renamed: _update("reg_org_units", "name = %(name)s"),
    Person.Registered: "INSERT INTO reg_persons VALUES (%(originator_id)s, %(kind)s, %(sex)s,"
    " %(birth_date)s, %(village_id)s, %(org_path)s, %(risk_tags)s, %(has_guardian)s,"
    f" %(care_agreement_signed_on)s, 'active', 0, {_TIMES})",
    Person.RiskTagAdded: _update(
        "reg_persons",
        "risk_tags = CASE WHEN %(tag)s = ANY(risk_tags) THEN risk_tags ELSE array_append(risk_tags, %(tag)s::text) END",
    ),
    Person.RiskTagRemoved: _update("reg_persons", "risk_tags = array_remove(risk_tags, %(tag)s::text)"),
    Person.GuardianAssigned: _update("reg_persons", "has_guardian = true"),
    Person.CareAgreementSigned: _update("reg_persons", "care_agreement_signed_on = %(signed_on)s"),
    Person.PairingJoined: _update("reg_persons", "active_pairings = active_pairings + 1"),
    Person.PairingLeft: _update("reg_persons", "active_pairings = active_pairings - 1"),
    Person.LeftProgramme: _update("reg_persons", "status = 'left'"),
    Person.ReturnedToProgramme: _update("reg_persons", "status = 'active'"),
    Person.Erased: _update("reg_persons", "status = 'erased'"),
    Person.RegistrationCorrected: _update(
        "reg_persons", "sex = coalesce(%(sex)s, sex), birth_date = coalesce(%(birth_date)s, birth_date)"
    ),
    Helper.Registered: "INSERT INTO reg_helpers (id, role, org_unit_id, org_path, capacity, status,"
    " registered_at, recorded_at, version, registered_position) VALUES (%(originator_id)s, %(role)s,"
    f" %(org_unit_id)s, %(org_path)s, %(capacity)s, 'active', {_TIMES})",
    Helper.CapacityChanged: _update("reg_helpers", "capacity = %(capacity)s"),
    Helper.JoinedGroup: _update("reg_helpers", "group_ids = array_append(group_ids, %(group_id)s::uuid)"),
    Helper.LeftGroup: _update("reg_helpers", "group_ids = array_remove(group_ids, %(group_id)s::uuid)"),
    # The event states how many people the helper looks after in one pairing: load moves by the difference.
    Helper.PairingAssigned: _update(
        "reg_helpers",
        "load = load - coalesce((assignments ->> %(pairing_key)s)::int, 0) + %(people)s,"
        " assignments = assignments || jsonb_build_object(%(pairing_key)s::text, %(people)s::int)",
    ),
    Helper.PairingReleased: _update(
        "reg_helpers",
        "load = load - coalesce((assignments ->> %(pairing_key)s)::int, 0),"
        " assignments = assignments - %(pairing_key)s::text",
    ),
    Helper.Deactivated: _update("reg_helpers", "status = 'inactive'"),
    VolunteerGroup.Formed: "INSERT INTO reg_groups (id, name, org_unit_id, org_path, status, formed_at, recorded_at,"
    " version, registered_position) VALUES (%(originator_id)s, %(name)s, %(org_unit_id)s, %(org_path)s, 'active',"
    f" {_TIMES})",
    VolunteerGroup.MemberAdded: _update("reg_groups", "member_ids = array_append(member_ids, %(helper_id)s::uuid)"),
    VolunteerGroup.MemberRemoved: _update("reg_groups", "member_ids = array_remove(member_ids, %(helper_id)s::uuid)"),
    VolunteerGroup.Disbanded: _update("reg_groups", "status = 'disbanded', disband_reason = %(reason)s"),
    Pairing.Formed: "INSERT INTO reg_pairings VALUES (%(originator_id)s, %(shape)s, %(helper_ids)s, %(person_ids)s,"
    " %(cadence)s, %(visit_mode)s, %(starts_on)s, NULL, NULL, %(group_id)s, %(org_path)s, 'active',"
    f" {_TIMES})",
    Pairing.HelperAdded: _update("reg_pairings", "helper_ids = array_append(helper_ids, %(helper_id)s::uuid)"),
    Pairing.HelperRemoved: _update("reg_pairings", "helper_ids = array_remove(helper_ids, %(helper_id)s::uuid)"),
    Pairing.PersonAdded: _update("reg_pairings", "person_ids = array_append(person_ids, %(person_id)s::uuid)"),
    Pairing.PersonRemoved: _update("reg_pairings", "person_ids = array_remove(person_ids, %(person_id)s::uuid)"),
    Pairing.CadenceChanged: _update("reg_pairings", "cadence = %(cadence)s, visit_mode = %(visit_mode)s"),
    Pairing.Ended: _update("reg_pairings", "status = 'ended', ends_on = %(ends_on)s, end_reason = %(reason)s"),
}
# The same statements, each taking a whole batch's rows at once (apply_batch).
BATCHED = set_statements(STATEMENTS)
# Values the view keeps in another form than the event: only whether a guardian is named (not
# who, nor their phone); pairing ids as jsonb keys.
DERIVED: dict[type, Callable[[Any], dict[str, Any]]] = {
    Person.Registered: lambda e: {"has_guardian": bool(e.guardian)},
    Helper.PairingAssigned: lambda e: {"pairing_key": str(e.pairing_id)},
    Helper.PairingReleased: lambda e: {"pairing_key": str(e.pairing_id)},
}

# The event fields DERIVED reads; with the statements' placeholders, all the view reads of an event.
FIELDS = statement_fields(
    STATEMENTS,
    {
        Person.Registered: ("guardian",),
        Helper.PairingAssigned: ("pairing_id",),
        Helper.PairingReleased: ("pairing_id",),
    },
)


class RegistryProjection:
    """Writes the registry tables; events of other kinds (visits, reports, ...) are skipped."""

    name = "registry"
    tables = TABLES
    schema_version = 2  # 2: names and free-text reasons left the view

    def create_tables(self, cur: psycopg.Cursor[Any]) -> None:
        cur.execute(DDL)

    def handles(self, event_class: type) -> bool:
        return event_class in STATEMENTS

    def fields(self, event_class: type) -> frozenset[str] | None:
        return FIELDS.get(event_class)

    def apply(self, cur: psycopg.Cursor[Any], event: Any, position: int) -> None:
        statement = STATEMENTS.get(type(event))
        if statement is None:
            return
        params = {**vars(event), "position": position}
        if derive := DERIVED.get(type(event)):
            params.update(derive(event))
        # Only the placeholders in the statement are sent: personal fields of the event are not.
        cur.execute(statement, params)

    def apply_batch(self, cur: psycopg.Cursor[Any], events: Sequence[tuple[int, Any]]) -> None:
        # Each statement touches only its event's row: one executemany per statement and round.
        write_batched(cur, statement_writes(events, BATCHED, DERIVED))

    def rebuild_batch(self, cur: psycopg.Cursor[Any], events: Sequence[tuple[int, Any]]) -> None:
        """A batch of a rebuild's replay into empty tables: each event folded into its row in
        memory (``REPLAY``, what its statement does to the row); nothing is written before
        ``finish_rebuild``."""
        rows = _REPLAYS.of(cur)
        for position, event in events:
            fold = REPLAY.get(type(event))
            if fold is not None:
                fold(rows, event, position)

    def finish_rebuild(self, cur: psycopg.Cursor[Any]) -> None:
        """After ``rebuild_batch`` replayed the log: every row once, by one binary COPY per table."""
        rows = _REPLAYS.take(cur)
        if rows is not None:
            rows.write(cur)

    def reset(self, cur: psycopg.Cursor[Any]) -> None:
        cur.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(map(sql.Identifier, TABLES))))


# ---- a rebuild's replay in memory -------------------------------------------------------------------
# Each table's rows by id, as lists in the order of ``_COPY``'s columns (every column of the
# table); each event changes its own aggregate's row as its statement in STATEMENTS does (an
# update of a row not there changes nothing, as an UPDATE matching no row; a second insert of
# an id fails, as the primary key would).


class _Rows:
    # Ids as ``UUID.int``, org paths in binary (``Paths``), lists of ids and tags as tuples (see
    # projections/replay.py).
    def __init__(self) -> None:
        self.tables: dict[str, dict[int, list[Any]]] = {table: {} for table in TABLES}
        self.paths = Paths()

    def insert(self, table: str, row: list[Any]) -> None:
        insert_row(self.tables[table], table, row)

    def write(self, cur: psycopg.Cursor[Any]) -> None:
        for table, (columns, types, binary) in _COPY.items():
            copy_rows(cur, table, columns, types, map(binary, self.tables[table].values()))


_REPLAYS: ReplayRows[_Rows] = ReplayRows(_Rows)


def _org_unit_registered(rows: _Rows, e: Any, position: int) -> None:
    rows.insert(
        "reg_org_units",
        [
            e.originator_id.int,
            e.code,
            e.name,
            e.level,
            id_int(e.parent_id),
            rows.paths.of(e.path),
            e.originator_version,
            e.occurred_at,
            e.timestamp,
        ],
    )


def _person_registered(rows: _Rows, e: Any, position: int) -> None:
    rows.insert(
        "reg_persons",
        [e.originator_id.int, e.kind, e.sex, e.birth_date, e.village_id.int, rows.paths.of(e.org_path),
         tuple(e.risk_tags), bool(e.guardian), e.care_agreement_signed_on, "active", 0, e.occurred_at, e.timestamp, e.originator_version, position],
    )  # fmt: skip


def _helper_registered(rows: _Rows, e: Any, position: int) -> None:
    rows.insert(
        "reg_helpers",
        [e.originator_id.int, e.role, e.org_unit_id.int, rows.paths.of(e.org_path), e.capacity, 0, {}, (), "active",
         e.occurred_at,
         e.timestamp, e.originator_version, position],
    )  # fmt: skip


def _group_formed(rows: _Rows, e: Any, position: int) -> None:
    rows.insert(
        "reg_groups",
        [e.originator_id.int, e.name, e.org_unit_id.int, rows.paths.of(e.org_path), (), "active", None, e.occurred_at,
         e.timestamp,
         e.originator_version, position],
    )  # fmt: skip


def _pairing_formed(rows: _Rows, e: Any, position: int) -> None:
    rows.insert(
        "reg_pairings",
        [e.originator_id.int, e.shape, tuple([i.int for i in e.helper_ids]), tuple([i.int for i in e.person_ids]),
         e.cadence, e.visit_mode, e.starts_on, None, None, id_int(e.group_id), rows.paths.of(e.org_path), "active", e.occurred_at, e.timestamp, e.originator_version, position],
    )  # fmt: skip


def _update(table: str, version_at: int, change: Callable[[list[Any], Any], None]) -> Callable[[_Rows, Any, int], None]:
    """An update of the event's own row (``version`` at index ``version_at``), if it is there."""

    def fold(rows: _Rows, e: Any, position: int) -> None:
        row = rows.tables[table].get(e.originator_id.int)
        if row is not None:
            change(row, e)
            row[version_at] = e.originator_version

    return fold


def _set(index: int, value: Any) -> Callable[[list[Any], Any], None]:
    def change(row: list[Any], e: Any) -> None:
        row[index] = value

    return change


def _field(index: int, name: str) -> Callable[[list[Any], Any], None]:
    def change(row: list[Any], e: Any) -> None:
        row[index] = getattr(e, name)

    return change


def _append(index: int, name: str) -> Callable[[list[Any], Any], None]:  # of an id
    def change(row: list[Any], e: Any) -> None:
        row[index] = (*row[index], getattr(e, name).int)

    return change


def _remove(index: int, name: str) -> Callable[[list[Any], Any], None]:  # of an id; array_remove: every equal one
    def change(row: list[Any], e: Any) -> None:
        value = getattr(e, name).int
        row[index] = tuple([item for item in row[index] if item != value])

    return change


def _tag_added(row: list[Any], e: Any) -> None:
    if e.tag not in row[6]:
        row[6] = (*row[6], e.tag)


def _tag_removed(row: list[Any], e: Any) -> None:
    row[6] = tuple([tag for tag in row[6] if tag != e.tag])


def _corrected(row: list[Any], e: Any) -> None:
    if e.sex is not None:
        row[2] = e.sex
    if e.birth_date is not None:
        row[3] = e.birth_date


_pairing_assigned, _pairing_released = assignment_folds(5, 6)


def _joined(delta: int) -> Callable[[list[Any], Any], None]:
    def change(row: list[Any], e: Any) -> None:
        row[10] += delta

    return change


def _both(*changes: Callable[[list[Any], Any], None]) -> Callable[[list[Any], Any], None]:
    def change(row: list[Any], e: Any) -> None:
        for one in changes:
            one(row, e)

    return change


# By event class, what its statement does to its row (the same events and fields as STATEMENTS).
REPLAY: dict[type, Callable[[_Rows, Any, int], None]] = {
    OrgUnit.Registered: _org_unit_registered,
    OrgUnit.Renamed: _update("reg_org_units", 6, _field(2, "name")),
    Person.Registered: _person_registered,
    Person.RiskTagAdded: _update("reg_persons", 13, _tag_added),
    Person.RiskTagRemoved: _update("reg_persons", 13, _tag_removed),
    Person.GuardianAssigned: _update("reg_persons", 13, _set(7, True)),
    Person.CareAgreementSigned: _update("reg_persons", 13, _field(8, "signed_on")),
    Person.PairingJoined: _update("reg_persons", 13, _joined(1)),
    Person.PairingLeft: _update("reg_persons", 13, _joined(-1)),
    Person.LeftProgramme: _update("reg_persons", 13, _set(9, "left")),
    Person.ReturnedToProgramme: _update("reg_persons", 13, _set(9, "active")),
    Person.Erased: _update("reg_persons", 13, _set(9, "erased")),
    Person.RegistrationCorrected: _update("reg_persons", 13, _corrected),
    Helper.Registered: _helper_registered,
    Helper.CapacityChanged: _update("reg_helpers", 11, _field(4, "capacity")),
    Helper.JoinedGroup: _update("reg_helpers", 11, _append(7, "group_id")),
    Helper.LeftGroup: _update("reg_helpers", 11, _remove(7, "group_id")),
    Helper.PairingAssigned: _update("reg_helpers", 11, _pairing_assigned),
    Helper.PairingReleased: _update("reg_helpers", 11, _pairing_released),
    Helper.Deactivated: _update("reg_helpers", 11, _set(8, "inactive")),
    VolunteerGroup.Formed: _group_formed,
    VolunteerGroup.MemberAdded: _update("reg_groups", 9, _append(4, "helper_id")),
    VolunteerGroup.MemberRemoved: _update("reg_groups", 9, _remove(4, "helper_id")),
    VolunteerGroup.Disbanded: _update("reg_groups", 9, _both(_set(5, "disbanded"), _field(6, "reason"))),
    Pairing.Formed: _pairing_formed,
    Pairing.HelperAdded: _update("reg_pairings", 14, _append(2, "helper_id")),
    Pairing.HelperRemoved: _update("reg_pairings", 14, _remove(2, "helper_id")),
    Pairing.PersonAdded: _update("reg_pairings", 14, _append(3, "person_id")),
    Pairing.PersonRemoved: _update("reg_pairings", 14, _remove(3, "person_id")),
    Pairing.CadenceChanged: _update("reg_pairings", 14, _both(_field(4, "cadence"), _field(5, "visit_mode"))),
    Pairing.Ended: _update("reg_pairings", 14, _both(_set(11, "ended"), _field(7, "ends_on"), _field(8, "reason"))),
}


# By table: its columns, their types, and a row as the COPY takes it (ids, arrays and jsonb as
# their binary form).
_COPY: dict[str, tuple[tuple[str, ...], tuple[str, ...], Callable[[list[Any]], Sequence[Any]]]] = {
    "reg_org_units": (
        ("id", "code", "name", "level", "parent_id", "org_path", "version", "registered_at", "recorded_at"),
        ("uuid", "text", "text", "text", "uuid", "uuid[]", "int4", "timestamptz", "timestamptz"),
        lambda r: (r[0].to_bytes(16), *r[1:4], id_bytes(r[4]), *r[5:]),
    ),
    "reg_persons": (
        ("id", "kind", "sex", "birth_date", "village_id", "org_path", "risk_tags", "has_guardian",
         "care_agreement_signed_on", "status", "active_pairings", "registered_at", "recorded_at", "version",
         "registered_position"),
        ("uuid", "text", "text", "date", "uuid", "uuid[]", "text[]", "bool", "date", "text", "int4", "timestamptz",
         "timestamptz", "int4", "int8"),
        lambda r: (r[0].to_bytes(16), *r[1:4], r[4].to_bytes(16), r[5], text_array(r[6]), *r[7:]),
    ),
    "reg_helpers": (
        ("id", "role", "org_unit_id", "org_path", "capacity", "load", "assignments", "group_ids", "status",
         "registered_at", "recorded_at", "version", "registered_position"),
        ("uuid", "text", "uuid", "uuid[]", "int4", "int4", "jsonb", "uuid[]", "text", "timestamptz", "timestamptz",
         "int4", "int8"),
        lambda r: (r[0].to_bytes(16), r[1], r[2].to_bytes(16), *r[3:6], jsonb(r[6]), ids_array(r[7]), *r[8:]),
    ),
    "reg_groups": (
        ("id", "name", "org_unit_id", "org_path", "member_ids", "status", "disband_reason", "formed_at",
         "recorded_at", "version", "registered_position"),
        ("uuid", "text", "uuid", "uuid[]", "uuid[]", "text", "text", "timestamptz", "timestamptz", "int4", "int8"),
        lambda r: (r[0].to_bytes(16), r[1], r[2].to_bytes(16), r[3], ids_array(r[4]), *r[5:]),
    ),
    "reg_pairings": (
        ("id", "shape", "helper_ids", "person_ids", "cadence", "visit_mode", "starts_on", "ends_on", "end_reason",
         "group_id", "org_path", "status", "formed_at", "recorded_at", "version", "registered_position"),
        ("uuid", "text", "uuid[]", "uuid[]", "text", "text", "date", "date", "text", "uuid", "uuid[]", "text",
         "timestamptz", "timestamptz", "int4", "int8"),
        lambda r: (r[0].to_bytes(16), r[1], ids_array(r[2]), ids_array(r[3]), *r[4:9], id_bytes(r[9]), *r[10:]),
    ),
}  # fmt: skip


COLUMNS = {
    "reg_org_units": "id, code, name, level, parent_id, org_path, version, registered_at, recorded_at",
    "reg_persons": "id, kind, sex, birth_date, village_id, org_path, risk_tags, has_guardian,"
    " care_agreement_signed_on, status, active_pairings, registered_at, recorded_at, version",
    "reg_helpers": "id, role, org_unit_id, org_path, capacity, load, group_ids, status,"
    " registered_at, recorded_at, version",
    "reg_groups": "id, name, org_unit_id, org_path, member_ids, status, disband_reason, formed_at, recorded_at,"
    " version",
    "reg_pairings": "id, shape, helper_ids, person_ids, cadence, visit_mode, starts_on, ends_on, end_reason,"
    " group_id, org_path, status, formed_at, recorded_at, version",
}
ORDER = {
    "reg_org_units": "code",
    "reg_persons": "registered_position",
    "reg_helpers": "registered_position",
    "reg_groups": "registered_position",
    "reg_pairings": "registered_position",
}


class RegistryView:
    """Read side of the registry: filtered, paged lists ``(rows, total)`` in a stable order.

    ``scope`` narrows a list to the rows the caller may see (``projections/scope.py``); None
    is everything, for the command line, workers and tests."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def _list(
        self, table: str, filters: dict[str, Any], limit: int | None, offset: int, scope: ListScope | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        conditions = [sql.SQL(clause) for clause, value in filters.items() if value is not None]
        params = [
            value if isinstance(value, UUID | list) else str(value) for value in filters.values() if value is not None
        ]
        if scope is not None:
            clause, scope_params = scope.clause(table)
            conditions.append(sql.SQL(clause))
            params += scope_params
        where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
        query = sql.SQL(
            "SELECT {cols}, count(*) OVER () AS _total FROM {table}{where} ORDER BY {order}, id LIMIT %s OFFSET %s"
        )
        query = query.format(
            cols=sql.SQL(COLUMNS[table]), table=sql.Identifier(table), where=where, order=sql.SQL(ORDER[table])
        )
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(query, [*params, limit, offset]).fetchall()
            if rows:
                total = rows[0]["_total"]
            else:  # past the last page: the window count is not there to read
                count = sql.SQL("SELECT count(*) AS n FROM {}{}").format(sql.Identifier(table), where)
                total = cur.execute(count, params).fetchone()["n"]
        for row in rows:
            del row["_total"]
        return rows, total

    def _get(self, table: str, id: UUID) -> dict[str, Any] | None:
        query = sql.SQL("SELECT {} FROM {} WHERE id = %s").format(sql.SQL(COLUMNS[table]), sql.Identifier(table))
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(query, (id,)).fetchone()

    def list_org_units(
        self, parent_id: UUID | None = None, level: str | None = None, limit: int | None = None, offset: int = 0
    ) -> tuple[list[dict[str, Any]], int]:
        return self._list("reg_org_units", {"parent_id = %s": parent_id, "level = %s": level}, limit, offset)

    def list_persons(
        self,
        org_unit_id: UUID | None = None,
        kind: str | None = None,
        status: str | None = None,
        risk_tag: str | None = None,
        limit: int | None = 50,
        offset: int = 0,
        scope: ListScope | None = None,
        ids: Sequence[UUID] | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Persons by unit, kind, status and risk tag, and (``ids``) among these persons only."""
        filters = {
            "org_path @> ARRAY[%s]::uuid[]": org_unit_id,
            "kind = %s": kind,
            "status = %s": status,
            "risk_tags @> ARRAY[%s]::text[]": risk_tag,
            "id = ANY(%s::uuid[])": None if ids is None else list(ids),
        }
        return self._list("reg_persons", filters, limit, offset, scope)

    def list_helpers(
        self,
        org_unit_id: UUID | None = None,
        role: str | None = None,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
        scope: ListScope | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        filters = {"org_path @> ARRAY[%s]::uuid[]": org_unit_id, "role = %s": role, "status = %s": status}
        return self._list("reg_helpers", filters, limit, offset, scope)

    def list_groups(
        self,
        org_unit_id: UUID | None = None,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
        scope: ListScope | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        return self._list(
            "reg_groups", {"org_path @> ARRAY[%s]::uuid[]": org_unit_id, "status = %s": status}, limit, offset, scope
        )

    def list_pairings(
        self,
        org_unit_id: UUID | None = None,
        status: str | None = None,
        shape: str | None = None,
        helper_id: UUID | None = None,
        person_id: UUID | None = None,
        limit: int = 50,
        offset: int = 0,
        scope: ListScope | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        filters = {
            "org_path @> ARRAY[%s]::uuid[]": org_unit_id,
            "status = %s": status,
            "shape = %s": shape,
            "helper_ids @> ARRAY[%s]::uuid[]": helper_id,
            "person_ids @> ARRAY[%s]::uuid[]": person_id,
        }
        return self._list("reg_pairings", filters, limit, offset, scope)

    def own_pairings(self, helper_id: UUID, group_ids: Iterable[UUID]) -> list[tuple[UUID, list[UUID]]]:
        """(pairing, its persons) of the active pairings a helper is in, as a helper or through
        one of their volunteer groups: what a volunteer owns (the access checks' ``own``)."""
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT id, person_ids FROM reg_pairings WHERE status = 'active'"
                " AND (helper_ids @> ARRAY[%s]::uuid[] OR group_id = ANY(%s::uuid[]))",
                (helper_id, list(group_ids)),
            ).fetchall()
        return [(row[0], list(row[1])) for row in rows]

    def people_with_places(self, unit_id: UUID) -> list[dict[str, Any]]:
        """The active persons under a unit with their village and township (id, code, name) and
        active pairings, in township, village and registration order: the registry export's rows."""
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                "SELECT p.id, p.village_id, p.active_pairings, v.code AS village_code, v.name AS village_name,"
                " t.id AS township_id, t.code AS township_code, t.name AS township_name"
                " FROM reg_persons p JOIN reg_org_units v ON v.id = p.village_id"
                " LEFT JOIN reg_org_units t ON t.id = v.parent_id"
                " WHERE p.org_path @> ARRAY[%s]::uuid[] AND p.status = 'active'"
                " ORDER BY t.code, v.code, p.registered_position",
                (unit_id,),
            ).fetchall()

    def get_org_unit(self, unit_id: UUID) -> dict[str, Any] | None:
        return self._get("reg_org_units", unit_id)

    def get_person(self, person_id: UUID) -> dict[str, Any] | None:
        return self._get("reg_persons", person_id)

    def get_helper(self, helper_id: UUID) -> dict[str, Any] | None:
        return self._get("reg_helpers", helper_id)

    def get_group(self, group_id: UUID) -> dict[str, Any] | None:
        return self._get("reg_groups", group_id)

    def get_pairing(self, pairing_id: UUID) -> dict[str, Any] | None:
        return self._get("reg_pairings", pairing_id)

    def counts_by_org_unit(self, root_id: UUID) -> list[dict[str, Any]]:
        """For each unit directly under ``root_id`` (townships of a county, villages of a
        township), in code order: active elders, children, active helpers, active pairings.
        A pairing whose people live in several of these units is counted under none of them."""
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(COUNTS_BY_UNIT, {"root": root_id}).fetchall()

    def pairings_by_shape(self, root_id: UUID) -> dict[str, int]:
        """Active pairings under ``root_id`` per shape; every shape is present."""
        counts = {shape.value: 0 for shape in PairingShape}
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT shape, count(*) FROM reg_pairings WHERE status = 'active' AND org_path @> ARRAY[%s]::uuid[]"
                " GROUP BY shape",
                (root_id,),
            ).fetchall()
        counts.update(dict(rows))
        return counts


# Units below the root sit at position depth + 1 of every org_path that passes through them.
COUNTS_BY_UNIT = """
WITH root AS (SELECT cardinality(org_path) + 1 AS at FROM reg_org_units WHERE id = %(root)s),
persons AS (
    SELECT org_path[(SELECT at FROM root)] AS unit, count(*) FILTER (WHERE kind = 'elder') AS elders,
           count(*) FILTER (WHERE kind = 'child') AS children
    FROM reg_persons WHERE status = 'active' AND org_path @> ARRAY[%(root)s]::uuid[] GROUP BY 1),
helpers AS (
    SELECT org_path[(SELECT at FROM root)] AS unit, count(*) AS helpers
    FROM reg_helpers WHERE status = 'active' AND org_path @> ARRAY[%(root)s]::uuid[] GROUP BY 1),
pairings AS (
    SELECT org_path[(SELECT at FROM root)] AS unit, count(*) AS active_pairings
    FROM reg_pairings WHERE status = 'active' AND org_path @> ARRAY[%(root)s]::uuid[] GROUP BY 1)
SELECT u.id, u.code, u.name, u.level,
       coalesce(p.elders, 0) AS elders, coalesce(p.children, 0) AS children,
       coalesce(h.helpers, 0) AS helpers, coalesce(pr.active_pairings, 0) AS active_pairings
FROM reg_org_units u
LEFT JOIN persons p ON p.unit = u.id
LEFT JOIN helpers h ON h.unit = u.id
LEFT JOIN pairings pr ON pr.unit = u.id
WHERE u.parent_id = %(root)s
ORDER BY u.code
"""
