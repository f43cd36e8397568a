"""Running async workers: as a standalone process that drains on SIGTERM/SIGINT, or in a
background thread of another process (``guanai serve`` runs everything in one process)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Awaitable, Callable

import psycopg
import structlog

log = structlog.get_logger("guanai.workers")

Worker = Callable[[asyncio.Event], Awaitable[object]]


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
