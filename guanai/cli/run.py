"""The long-running processes and their operations: ``guanai serve|api|projector|relay|router|
escalator|scheduler``, ``migrate``, ``lag`` and ``dead-letters``. Each builds its process through
the composition root (guanai/bootstrap.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

import nats
import psycopg
import uvicorn

from api.auth import load_or_create_secret
from guanai import bootstrap
from guanai.cli.services import migrate, services
from infrastructure.progress import Watch, relay_progress, worker_progress
from infrastructure.settings import Settings, nats_servers
from workers import projector as projector_process
from workers.consumer import list_dead_letters
from workers.runtime import BackgroundWorkers, run_until_signalled


def _serve_api(settings: Settings, database_url: str, nats_url: str | None, host: str, port: int) -> None:
    secret = load_or_create_secret(settings.jwt_secret, settings.data_path)
    app = bootstrap.api(settings, database_url=database_url, nats_url=nats_url, jwt_secret=secret)
    print(f"guanai: API on http://{host}:{port}  (docs: http://{host}:{port}/schema)", file=sys.stderr)
    # uvicorn shuts down gracefully on SIGTERM and then raises the signal again with the handler
    # it found: a Python handler here lets the callers' cleanup (workers, embedded servers) run.
    signal.signal(signal.SIGTERM, lambda *_: None)
    bootstrap.freeze_startup()
    # loop and http "auto": uvloop and httptools (dependencies; docs/benchmarks.md "Issue 19: the
    # HTTP edge and round trips" measured them against asyncio with h11, and granian).
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=10)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    with services(settings) as (database_url, nats_url):
        assert nats_url is not None
        migrate(settings, database_url)
        projector = bootstrap.projector(settings, database_url)
        workers = BackgroundWorkers(*bootstrap.background_workers(settings, database_url, nats_url))
        # One process: the API's /metrics shows the projector's and the workers' figures too.
        unwatch = bootstrap.watch_projector(projector)
        if not args.no_workers:
            projector.start()
            workers.start()
        try:
            _serve_api(settings, database_url, nats_url, args.host or settings.host, args.port or settings.port)
        finally:
            unwatch()
            workers.stop()
            projector.stop()
    return 0


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    with services(settings) as (database_url, nats_url):
        _serve_api(settings, database_url, nats_url, args.host or settings.host, args.port or settings.port)
    return 0


def cmd_projector(settings: Settings, args: argparse.Namespace) -> int:
    with services(settings, need_nats=False) as (database_url, _):
        migrate(settings, database_url)
        print("guanai: projector running (Ctrl-C to stop)", file=sys.stderr)
        projector = bootstrap.projector(settings, database_url)
        unwatch = bootstrap.watch_projector(projector)
        bootstrap.freeze_startup()
        try:
            with bootstrap.metrics_endpoint(settings):
                return projector_process.main(projector)
        finally:
            unwatch()


def cmd_relay(settings: Settings, args: argparse.Namespace) -> int:
    with services(settings) as (database_url, nats_url):
        assert nats_url is not None
        migrate(settings, database_url)
        print("guanai: relay running (Ctrl-C to stop)", file=sys.stderr)
        with bootstrap.metrics_endpoint(settings):
            return run_until_signalled(bootstrap.relay(settings, database_url, nats_url))


def cmd_router(settings: Settings, args: argparse.Namespace) -> int:
    with services(settings) as (database_url, nats_url):
        assert nats_url is not None
        # No migrate here: the worker creates what it needs itself and retries a failed start.
        print("guanai: emergency router running (Ctrl-C to stop)", file=sys.stderr)
        with bootstrap.metrics_endpoint(settings):
            return run_until_signalled(bootstrap.router(settings, database_url, nats_url))


def cmd_escalator(settings: Settings, args: argparse.Namespace) -> int:
    with services(settings) as (database_url, nats_url):
        assert nats_url is not None
        # No migrate here: the worker creates what it needs itself and retries a failed start.
        print("guanai: emergency escalator running (Ctrl-C to stop)", file=sys.stderr)
        with bootstrap.metrics_endpoint(settings):
            return run_until_signalled(bootstrap.escalator(settings, database_url, nats_url))


def cmd_scheduler(settings: Settings, args: argparse.Namespace) -> int:
    with services(settings) as (database_url, nats_url):
        assert nats_url is not None
        migrate(settings, database_url)
        print("guanai: visit scheduler running (Ctrl-C to stop)", file=sys.stderr)
        with bootstrap.metrics_endpoint(settings):
            return run_until_signalled(bootstrap.scheduler(settings, database_url, nats_url))


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    with services(settings, need_nats=False) as (database_url, _):
        migrate(settings, database_url)
    print("guanai: event store and views are ready")
    return 0


def cmd_dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    with services(settings, need_nats=False) as (database_url, _):
        letters = list_dead_letters(database_url, limit=args.limit)
    for letter in letters:
        print(json.dumps(letter, default=str, ensure_ascii=False))
    print(f"{len(letters)} dead letter(s)", file=sys.stderr)
    return 0


def cmd_lag(settings: Settings, args: argparse.Namespace) -> int:
    """How far the views and the relay are behind the event store, and whether the relay or a
    worker is stalled (work waits and nothing moved for --stall-seconds); exit 1 past the
    limits or on a stall (the health check of the projector, relay and worker services)."""
    watch = Watch(stall_seconds=args.stall_seconds)
    with services(settings, need_nats=not args.no_workers) as (database_url, nats_url):
        projector = bootstrap.projector(settings, database_url, pool_size=1)
        try:
            views = projector.lag()
            with psycopg.connect(database_url) as conn:
                relay = relay_progress(projector.runner.app, conn, watch)
        finally:
            projector.close()

        async def consumers() -> dict[str, Any]:
            nc = await nats.connect(nats_servers(nats_url or "nats://127.0.0.1:4222"), connect_timeout=3,
                                    max_reconnect_attempts=0)  # fmt: skip
            try:
                return await worker_progress(nc.jetstream(), watch)
            finally:
                await nc.close()

        workers: dict[str, Any] = {}
        try:
            if not args.no_workers:
                workers = asyncio.run(consumers())
        except Exception as e:  # noqa: BLE001 - reported, and counted as a failed check
            workers = {"error": type(e).__name__}
    print(json.dumps({"views": views, "relay": relay, "workers": workers}, default=str))
    late_views = float(views.get("seconds_behind") or 0) > args.max_seconds
    late_relay = relay["events_behind"] > args.max_relay_events or relay["stalled"]
    stuck_workers = "error" in workers or any(w.get("stalled") for w in workers.values())
    return 1 if late_views or late_relay or stuck_workers else 0
