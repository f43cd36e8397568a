"""A rebuild's replay of rows kept in memory: a view whose rows a replay would insert and then
update many times (a person's pairings, a task claimed then completed) folds each event into its
row in Python and writes every row once, at the end of the replay, by one binary COPY per table,
instead of sending each batch's changes as statements (``UPDATE ... FROM json_to_recordset``).

What a view keeps between the batches of one replay is its connection's: a rebuild replays
every batch and finishes on one connection (projections/rebuild.py), so ``ReplayRows.of(cur)``
gives the same rows to every ``rebuild_batch`` of that rebuild and ``ReplayRows.take(cur)``
hands them to ``finish_rebuild``; a rebuild that fails closes its connection and its rows go
with it.

Rows kept in memory hold ids as ``UUID.int`` and arrays already in their binary form where
they can: ints and bytes are not tracked by the cyclic garbage collector (a UUID or a list is),
whose full collections would otherwise walk every row kept, and an int is hashed and compared
in C, a UUID by Python code.

The COPY's values are sent in PostgreSQL's binary form, made here from the values as they are
kept (a UUID's 16 bytes, an array's header and elements): psycopg's own dumpers of UUIDs and
lists are Python code called once per value; bytes go through its C dumper for ``bytea``,
declared here with the column's type. The events' ids are ``UUID`` objects, as the mapper's
decoders give them (their classes declare them so); anything else fails the COPY, loudly.
"""

from __future__ import annotations

import json
import struct
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.types.string import BytesBinaryDumper

S = TypeVar("S")

UUID_OID, UUID_ARRAY_OID, TEXT_OID, TEXT_ARRAY_OID, JSONB_OID = 2950, 2951, 25, 1009, 3802


class ReplayRows(Generic[S]):
    """The rows one replay keeps in memory, by the replay's connection."""

    def __init__(self, make: Callable[[], S]) -> None:
        self._make = make
        self._by_connection: weakref.WeakKeyDictionary[Any, S] = weakref.WeakKeyDictionary()

    def of(self, cur: psycopg.Cursor[Any]) -> S:
        state = self._by_connection.get(cur.connection)
        if state is None:
            state = self._by_connection[cur.connection] = self._make()
        return state

    def take(self, cur: psycopg.Cursor[Any]) -> S | None:
        """The replay's rows, forgotten here (None when no batch of it had any)."""
        return self._by_connection.pop(cur.connection, None)


def _bytes_dumper(oid: int) -> type:
    return type(f"Bytes{oid}Dumper", (BytesBinaryDumper,), {"oid": oid})


# Values given as bytes already in the column's binary form.
_DUMPERS = {oid: _bytes_dumper(oid) for oid in (UUID_OID, UUID_ARRAY_OID, TEXT_ARRAY_OID, JSONB_OID)}
_ARRAY_HEAD = struct.Struct("!iiIii")
_EMPTY = {UUID_OID: struct.pack("!iiI", 0, 0, UUID_OID), TEXT_OID: struct.pack("!iiI", 0, 0, TEXT_OID)}
_UUID_ITEM = b"\x00\x00\x00\x10"


def uuid_array(ids: Sequence[UUID]) -> bytes:
    """``uuid[]`` in binary (one dimension, no NULLs)."""
    if not ids:
        return _EMPTY[UUID_OID]
    return _ARRAY_HEAD.pack(1, 0, UUID_OID, len(ids), 1) + b"".join([_UUID_ITEM + i.bytes for i in ids])


def text_array(items: Sequence[str]) -> bytes:
    """``text[]`` in binary (one dimension, no NULLs)."""
    if not items:
        return _EMPTY[TEXT_OID]
    parts = [_ARRAY_HEAD.pack(1, 0, TEXT_OID, len(items), 1)]
    for item in items:
        data = str(item).encode()
        parts.append(len(data).to_bytes(4, "big") + data)
    return b"".join(parts)


def jsonb(value: Any) -> bytes:
    """``jsonb`` in binary: its version byte and the JSON text."""
    return b"\x01" + json.dumps(value, separators=(",", ":")).encode()


def ids_array(ids: Sequence[int]) -> bytes:
    """``uuid[]`` in binary, of UUIDs given as their ``int``."""
    if not ids:
        return _EMPTY[UUID_OID]
    return _ARRAY_HEAD.pack(1, 0, UUID_OID, len(ids), 1) + b"".join([_UUID_ITEM + i.to_bytes(16) for i in ids])


def id_int(value: UUID | None) -> int | None:
    """An id as rows kept in memory hold it (``UUID.int``), None for none."""
    return None if value is None else value.int


def id_bytes(value: int | None) -> bytes | None:
    """An id kept as its ``int`` in ``uuid``'s binary form for the COPY, None (NULL) for none."""
    return None if value is None else value.to_bytes(16)


def insert_row(rows: dict[int, list[Any]], table: str, row: list[Any]) -> None:
    """A new row kept in memory by its id (``row[0]``); a second one of the id fails, as the
    table's primary key would."""
    if row[0] in rows:
        raise ValueError(f"{table}: a second row of id {UUID(int=row[0])} (duplicate key)")
    rows[row[0]] = row


class Paths(dict[tuple[int, ...], bytes]):
    """``uuid[]`` in binary of the org paths met, each made once (the rows of a village share
    one), by the ``int`` of each UUID (hashed in C, where a UUID's hash is Python code)."""

    def of(self, path: Sequence[UUID]) -> bytes:
        key = tuple([i.int for i in path])
        data = self.get(key)
        if data is None:
            self[key] = data = uuid_array(path)
        return data


def copy_rows(
    cur: psycopg.Cursor[Any], table: str, columns: Sequence[str], types: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """Binary COPY of ``rows`` into ``table``. Columns of types ``uuid``, ``uuid[]``, ``text[]``
    and ``jsonb`` take bytes in their binary form (``UUID.bytes``, ``uuid_array``,
    ``text_array``, ``jsonb``); the other columns take Python values, dumped by psycopg."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    # A cursor of its own: the dumpers registered are its only (a cursor's adapters are its copy).
    with cur.connection.cursor() as own:
        for dumper in _DUMPERS.values():
            own.adapters.register_dumper(bytes, dumper)
        with own.copy(statement) as copy:
            copy.set_types(list(types))
            write = copy.write_row
            for row in rows:
                write(row)


def assignment_folds(
    load: int, assignments: int
) -> tuple[Callable[[list[Any], Any], None], Callable[[list[Any], Any], None]]:
    """A helper row's folds of ``Helper.PairingAssigned`` and ``PairingReleased``: the people the
    helper looks after (column ``load``) and the people by pairing id (column ``assignments``, a
    dict), as both views' statements keep them."""

    def assigned(row: list[Any], e: Any) -> None:
        key, held = str(e.pairing_id), row[assignments]
        row[load] = row[load] - held.get(key, 0) + e.people
        row[assignments] = {**held, key: e.people}

    def released(row: list[Any], e: Any) -> None:
        key, held = str(e.pairing_id), row[assignments]
        row[load] = row[load] - held.get(key, 0)
        row[assignments] = {k: v for k, v in held.items() if k != key}

    return assigned, released
