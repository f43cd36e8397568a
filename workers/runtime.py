"""Running async workers: as a standalone process that drains on SIGTERM/SIGINT, or in a
background thread of another process (``guanai serve`` runs everything in one process); and
what every worker does the same way: connect to NATS, run a command while the store is away,
restart after a failure, sweep every few seconds."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import nats
import psycopg
import structlog
from eventsourcing.persistence import InterfaceError, OperationalError

from domain.base import CommandMeta
from infrastructure.personal_data import MasterKeyError
from infrastructure.settings import nats_servers

log = structlog.get_logger("guanai.workers")
T = TypeVar("T")

Worker = Callable[[asyncio.Event], Awaitable[object]]

# Outages of the event store are waited out, not counted against max_deliver: the library's
# errors, and psycopg's own from the views a command reads (a pool timing out is one of them).
TRANSIENT = (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)


def worker_meta(correlation_id: str, actor: str) -> CommandMeta:
    """A worker's command carries the causing event's correlation id, and now as its time."""
    return CommandMeta(
        actor_id=actor, actor_role="system", correlation_id=correlation_id, occurred_at=datetime.now(UTC)
    )


async def run_command(msg: Any, stop: asyncio.Event, command: Callable[[], T]) -> T:
    """Run a blocking command in a thread; while the store is away, keep the message in
    progress and try again (the command is idempotent, so a repeat is harmless). So too while
    this process holds another master key than the store's keys (not restarted after a
    rotation): the message waits for a process that can open them, never for the dead letters."""
    delay = 0.2
    while True:
        try:
            return await asyncio.to_thread(command)
        except (*TRANSIENT, MasterKeyError) as e:
            if stop.is_set():
                raise
            if isinstance(e, MasterKeyError):
                log.error("master_key_mismatch_waiting", detail=str(e), retry_in=delay)
            else:
                log.warning("store_unavailable_retrying", error=type(e).__name__, retry_in=delay)
            if msg is not None:
                await msg.in_progress()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def connect_nats(nats_url: str, name: str, stop: asyncio.Event) -> Any:
    """Connect, waiting for the server if it is not up yet; reconnect forever afterwards."""
    delay = 0.2
    while True:
        try:
            return await nats.connect(
                nats_servers(nats_url), name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5, connect_timeout=2
            )
        except (TimeoutError, nats.errors.Error, OSError) as e:
            if stop.is_set():
                raise
            log.warning("nats_unavailable", worker=name, error=type(e).__name__, retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def run_until_signalled(*workers: Worker) -> int:
    """Run the workers until SIGTERM or SIGINT, then let each finish what it has in hand."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await asyncio.gather(*(w(stop) for w in workers))

    asyncio.run(main())
    return 0


class BackgroundWorkers:
    """The same workers on an event loop in a daemon thread; ``stop()`` drains them."""

    def __init__(self, *workers: Worker, name: str = "workers") -> None:
        self.workers = workers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await asyncio.gather(*(w(self._stop) for w in self.workers))

        try:
            asyncio.run(main())
        except BaseException as e:  # noqa: BLE001 - reported by stop() and logged
            self.error = e
            log.error("background_workers_failed", error=type(e).__name__)
            self._ready.set()

    def start(self) -> BackgroundWorkers:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)


async def keep_running(name: str, stop: asyncio.Event, run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run a worker until ``stop``; when it fails (the database or NATS away at start, too many
    connections, a bug), log it and start it again after a growing pause, so that one bad
    moment never leaves reports unrouted until someone restarts the process."""
    delay = 0.5
    while not stop.is_set():
        started = time.monotonic()
        try:
            await run(stop)
        except Exception as e:  # noqa: BLE001 - logged, then retried: this worker must not stay down
            log.error("worker_failed_restarting", worker=name, error=type(e).__name__, retry_in=delay)
            if time.monotonic() - started > 60:
                delay = 0.5
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            # At most 10 s: once the database or NATS is back, the worker is back soon after.
            delay = min(delay * 2, 10.0)


async def every(name: str, stop: asyncio.Event, interval: float, step: Callable[[], Awaitable[object]]) -> None:
    """Run ``step`` every ``interval`` seconds until ``stop`` (a reconciler's sweep); a failed
    step is logged and the next one tries again. A view not created yet (no projector has run
    on this database) is not an error worth a log line every few seconds."""
    while not stop.is_set():
        try:
            await step()
        except psycopg.errors.UndefinedTable:
            pass
        except Exception as e:  # noqa: BLE001 - the next sweep tries again
            if stop.is_set():
                return
            log.error("periodic_failed", worker=name, error=type(e).__name__)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
