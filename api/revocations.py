"""Revoked bearer tokens: the ``revoked_tokens`` table and each API process's copy of it.

A token is refused from the moment its id (``jti``) is in the table until it would have expired
anyway; then the row is of no use and is purged. Every request is checked against an in-process
copy that a background task reloads every ``GUANAI_REVOCATION_CACHE_SECONDS``, so a check costs
a set lookup: a revocation takes effect at once in the process that made it and within that
interval everywhere else. Revocations are few (tokens live at most a month), so each reload reads
the whole live list rather than chasing changes.

If the copy cannot be refreshed for long (the database is down), checks fail closed
(``RevocationUnavailable``): a revoked token must not pass because the list could not be read.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import structlog
from psycopg_pool import ConnectionPool

# Bounds how long a revocation must be kept, and so how far back a jti-only revocation reaches.
MAX_TOKEN_TTL = timedelta(days=31)

log = structlog.get_logger("guanai.api")

DDL = """
CREATE TABLE IF NOT EXISTS revoked_tokens (
    jti text PRIMARY KEY,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now(),
    revoked_by text NOT NULL,
    reason text NOT NULL
)
"""


class RevocationUnavailable(RuntimeError):
    """The revoked-token list has not been read for too long to trust the copy."""


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


class RevocationList:
    """This process's copy of the revoked token ids."""

    def __init__(
        self,
        database_url: str,
        *,
        refresh_seconds: float = 2.0,
        max_stale_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.database_url = database_url
        self.clock = clock
        self.refresh_seconds = refresh_seconds
        self.max_stale_seconds = max_stale_seconds or max(30.0, 10 * refresh_seconds)
        self._revoked: dict[str, float] = {}  # jti -> expiry (epoch seconds)
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()
        self._pool: ConnectionPool[Any] | None = None
        self._task: asyncio.Task[None] | None = None

    def open(self) -> RevocationList:
        self._pool = ConnectionPool(
            self.database_url, min_size=1, max_size=2, kwargs={"autocommit": True}, open=True, name="revocations"
        )
        with self._pool.connection() as conn:
            create_table(conn)
        self.refresh()
        return self

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def refresh(self) -> None:
        assert self._pool is not None, "open() first"
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT jti, extract(epoch FROM expires_at) FROM revoked_tokens WHERE expires_at > now()"
            ).fetchall()
        with self._lock:
            self._revoked = {jti: float(exp) for jti, exp in rows}
            self._loaded_at = self.clock()

    def is_revoked(self, jti: str) -> bool:
        if self.clock() - self._loaded_at > self.max_stale_seconds:
            raise RevocationUnavailable("the revoked-token list is stale")
        expires = self._revoked.get(jti)
        return expires is not None and expires > time.time()

    def revoke(self, jti: str, expires_at: datetime, *, revoked_by: str, reason: str) -> bool:
        assert self._pool is not None, "open() first"
        with self._pool.connection() as conn:
            new = revoke(conn, jti, expires_at, revoked_by=revoked_by, reason=reason)
        with self._lock:
            self._revoked[jti] = max(self._revoked.get(jti, 0.0), expires_at.timestamp())
        return new

    async def _keep_fresh(self) -> None:
        loop = asyncio.get_running_loop()
        failing = False
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await loop.run_in_executor(None, self.refresh)
                if failing:
                    log.info("revocations_readable_again")
                failing = False
            except Exception as e:  # noqa: BLE001 - retried; checks fail closed once the copy is stale
                if not failing:
                    log.warning("revocations_unreadable", error=type(e).__name__)
                failing = True

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._keep_fresh())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await asyncio.get_running_loop().run_in_executor(None, self.close)


def revoke_until(expires_at: datetime | None) -> datetime:
    """How long to keep a revocation: the token's expiry, or (unknown) the longest a token lives."""
    return expires_at or datetime.now(UTC) + MAX_TOKEN_TTL


def revoke_in(database_url: str, jti: str, expires_at: datetime | None, *, revoked_by: str, reason: str) -> datetime:
    """Revoke from outside an API process (``guanai token revoke``); returns the row's expiry."""
    until = revoke_until(expires_at)
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_table(conn)
        revoke(conn, jti, until, revoked_by=revoked_by, reason=reason)
    return until


async def start_revocations(app: Any) -> None:
    """on_startup: read the list once (refusing to start without it), then keep it fresh."""
    revocations = RevocationList(
        app.state.connections.database_url, refresh_seconds=app.state.settings.revocation_cache_seconds
    )
    await asyncio.get_running_loop().run_in_executor(None, revocations.open)
    revocations.start()
    app.state.revocations = revocations


async def stop_revocations(app: Any) -> None:
    revocations: RevocationList | None = getattr(app.state, "revocations", None)
    if revocations is not None:
        await revocations.stop()
