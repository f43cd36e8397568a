"""The ``revoked_tokens`` table: which bearer tokens (by ``jti``) are refused, and until when.

A row is of use until the token it names would have expired anyway; every new revocation purges
the rows past that. The API keeps a copy of the live rows in each process (api/revocations.py);
``guanai token revoke`` writes here from outside any API process.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

DDL = """
CREATE TABLE IF NOT EXISTS revoked_tokens (
    jti text PRIMARY KEY,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now(),
    revoked_by text NOT NULL,
    reason text NOT NULL
)
"""


def create_table(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        # Several processes start at once; CREATE ... IF NOT EXISTS alone can still collide.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('guanai_revoked_tokens'))")
        conn.execute(DDL)


def revoke(conn: psycopg.Connection[Any], jti: str, expires_at: datetime, *, revoked_by: str, reason: str) -> bool:
    """Record a revocation (True when it is new); purge rows whose tokens have expired anyway."""
    with conn.transaction():
        conn.execute("DELETE FROM revoked_tokens WHERE expires_at < now()")
        row = conn.execute(
            "INSERT INTO revoked_tokens (jti, expires_at, revoked_by, reason) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (jti) DO UPDATE SET expires_at = greatest(revoked_tokens.expires_at, excluded.expires_at)"
            " RETURNING (xmax = 0)",
            (jti, expires_at, revoked_by, reason),
        ).fetchone()
    return bool(row and row[0])


def revoke_in(database_url: str, jti: str, until: datetime, *, revoked_by: str, reason: str) -> None:
    """Revoke with a connection of its own (the command line: no pool, no API process)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_table(conn)
        revoke(conn, jti, until, revoked_by=revoked_by, reason=reason)


class RevokedTokens:
    """The table through a small pool of its own (an API process reads it every few seconds)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._pool: ConnectionPool[Any] | None = None

    def open(self) -> RevokedTokens:
        self._pool = ConnectionPool(
            self.database_url, min_size=1, max_size=2, kwargs={"autocommit": True}, open=True, name="revocations"
        )
        with self._pool.connection() as conn:
            create_table(conn)
        return self

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def live(self) -> dict[str, float]:
        """jti -> expiry (epoch seconds) of every revocation whose token has not yet expired."""
        assert self._pool is not None, "open() first"
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT jti, extract(epoch FROM expires_at) FROM revoked_tokens WHERE expires_at > now()"
            ).fetchall()
        return {jti: float(exp) for jti, exp in rows}

    def revoke(self, jti: str, expires_at: datetime, *, revoked_by: str, reason: str) -> bool:
        assert self._pool is not None, "open() first"
        with self._pool.connection() as conn:
            return revoke(conn, jti, expires_at, revoked_by=revoked_by, reason=reason)
