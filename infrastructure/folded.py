"""The writes of a group's transaction after its events' insert, sent as one statement.

After the events are inserted, the chain's entries, the Merkle tree's nodes, the tree head's
update and the new data keys are independent writes to four tables. Sent one by one in a psycopg
pipeline, each costs the client a query conversion, a send and a result (about 30-60 µs of CPU a
statement in the API's process, issue 19); here they travel as one data-modifying statement:

    WITH w0 AS (INSERT INTO chain ...), w1 AS (INSERT INTO tree ...), w2 AS (UPDATE head ...),
         new_keys AS (INSERT INTO keys ... RETURNING ...)
    SELECT ... FROM new_keys ...

PostgreSQL runs every data-modifying part of a WITH exactly once, to completion, whether the
final SELECT reads it or not; all parts see the snapshot taken when the statement starts, so only
writes that do not read each other's rows are folded (four different tables here). The writes
stay in the insert's transaction, under the event store's table lock, as before.

The recorder opens a ``FoldedWrites`` for a connection while the group's insert hooks run
(``folding``); a hook that finds one adds its write to it instead of executing it, and one that
needs an answer (the key check) sends everything with its own final SELECT. Outside a group's
transaction (the library's single insert, a group written save by save under savepoints) there
is none and every hook executes its statements itself, as before.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

from psycopg import Connection, Cursor
from psycopg.sql import SQL, Composable, Identifier

_open: weakref.WeakKeyDictionary[Connection[Any], FoldedWrites] = weakref.WeakKeyDictionary()
# Rendered statements by the parts they fold (the parts are long-lived attributes of the writers,
# kept referenced here so that their ids stay theirs): psycopg then converts each one once.
_rendered: dict[tuple[Any, ...], tuple[bytes, tuple[Composable, ...]]] = {}
_NOTHING = SQL("SELECT")


class FoldedWrites:
    """Data-modifying statements to be sent together as the parts of one WITH."""

    def __init__(self) -> None:
        self._parts: list[tuple[str, Composable]] = []
        self._params: list[Any] = []

    def __bool__(self) -> bool:
        return bool(self._parts)

    def add(self, statement: Composable, params: Sequence[Any], *, name: str | None = None) -> None:
        """Fold ``statement`` (an INSERT, UPDATE or DELETE; with RETURNING if ``name`` is given,
        so that the final SELECT of ``send`` can read it by that name)."""
        self._parts.append((name or f"w{len(self._parts)}", statement))
        self._params.extend(params)

    def send(self, cur: Cursor[Any], final: Composable = _NOTHING, params: Sequence[Any] = ()) -> None:
        """Execute the folded writes and ``final`` as one statement on ``cur`` (its rows, if any,
        are ``cur``'s results); nothing is left folded afterwards."""
        if not self._parts and final is _NOTHING:
            return
        parts = tuple(statement for _, statement in self._parts)
        names = tuple(name for name, _ in self._parts)
        key = (*map(id, parts), id(final), *names)
        found = _rendered.get(key)
        if found is None:
            withs = SQL(", ").join(SQL("{} AS ({})").format(Identifier(n), p) for n, p in self._parts)
            query = (SQL("WITH ") + withs + SQL(" ") + final) if self._parts else final
            found = _rendered.setdefault(key, (query.as_bytes(cur), (*parts, final)))
        all_params = [*self._params, *params]
        self._parts, self._params = [], []
        cur.execute(found[0], all_params, prepare=True)


def pending(conn: Connection[Any]) -> FoldedWrites | None:
    """The writes being folded in ``conn``'s transaction now, if any."""
    return _open.get(conn)


@contextlib.contextmanager
def folding(conn: Connection[Any]) -> Iterator[FoldedWrites]:
    """Fold the writes of ``conn``'s insert hooks while the block runs; what is still folded at
    its end is sent then (not when the block raised: the transaction is rolled back anyway)."""
    writes = _open[conn] = FoldedWrites()
    try:
        yield writes
        with conn.cursor() as cur:
            writes.send(cur)
    finally:
        _open.pop(conn, None)
