"""Revoked bearer tokens: each API process's copy of the ``revoked_tokens`` table
(infrastructure/revoked_tokens.py).

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

import structlog

from infrastructure import revoked_tokens
from infrastructure.revoked_tokens import RevokedTokens

# Bounds how long a revocation must be kept, and so how far back a jti-only revocation reaches.
MAX_TOKEN_TTL = timedelta(days=31)

log = structlog.get_logger("guanai.api")


class RevocationUnavailable(RuntimeError):
    """The revoked-token list has not been read for too long to trust the copy."""


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
        self._table = RevokedTokens(database_url)
        self._task: asyncio.Task[None] | None = None

    def open(self) -> RevocationList:
        self._table.open()
        self.refresh()
        return self

    def close(self) -> None:
        self._table.close()

    def refresh(self) -> None:
        live = self._table.live()
        with self._lock:
            self._revoked = live
            self._loaded_at = self.clock()

    def is_revoked(self, jti: str) -> bool:
        if self.clock() - self._loaded_at > self.max_stale_seconds:
            raise RevocationUnavailable("the revoked-token list is stale")
        expires = self._revoked.get(jti)
        return expires is not None and expires > time.time()

    def revoke(self, jti: str, expires_at: datetime, *, revoked_by: str, reason: str) -> bool:
        new = self._table.revoke(jti, expires_at, revoked_by=revoked_by, reason=reason)
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
    revoked_tokens.revoke_in(database_url, jti, until, revoked_by=revoked_by, reason=reason)
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
