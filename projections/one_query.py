"""Several statements sent as one simple query: one round trip and one implicit transaction.

A timeline read sends its page and its access-log row this way (``AccessLog.read_with``):
PostgreSQL runs the statements in one transaction, committed before it answers the last (the
connection in autocommit, so that psycopg sends no BEGIN of its own), so the record is durable
before the page is answered, in one round trip. The statements are bound by the client
(``ClientCursor.mogrify``). For reads alone a pipeline is as good or better: the county summary
sent as one simple query took the same CPU and about 0.9 ms longer than in a pipeline
(``SupervisionView._many``).
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
