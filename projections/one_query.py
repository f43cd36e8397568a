"""Several statements sent as one simple query: one round trip and one implicit transaction.

psycopg's pipeline mode also sends several statements in one round trip, but while it waits for
their results it polls the socket for reading and writing, and a socket that can be written to
answers at once: the waiting thread spins on the CPU for as long as the server works (measured:
about 0.5 ms of CPU a read at a million events, for a read of 1 ms). One simple query (the
statements joined, their parameters bound by the client: ``ClientCursor.mogrify``) waits for
reading only. PostgreSQL runs its statements in one transaction, committed before it answers
the last (the connection in autocommit, so that psycopg sends no BEGIN of its own).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg.rows import RowFactory
from psycopg_pool import ConnectionPool


@contextlib.contextmanager
def one_query_cursor(pool: ConnectionPool, row_factory: RowFactory[Any]) -> Iterator[psycopg.ClientCursor[Any]]:
    """A client-binding cursor on one of the pool's connections, in autocommit for the block."""
    with pool.connection() as conn:
        conn.autocommit = True
        try:
            with psycopg.ClientCursor(conn, row_factory=row_factory) as cur:
                yield cur
        finally:
            if not conn.closed:
                conn.autocommit = False


def all_rows(cur: psycopg.ClientCursor[Any], statements: list[str]) -> list[list[Any]]:
    """The rows of each statement (bound SQL text, each one statement), sent as one query."""
    cur.execute("; ".join(statements))
    out = [cur.fetchall()]
    while cur.nextset():
        out.append(cur.fetchall())
    return out
