"""The long-running processes and their operations: ``guanai serve|api|projector|relay|router|
escalator|scheduler``, ``migrate``, ``lag`` and ``dead-letters``. Each builds its process through
the composition root (guanai/bootstrap.py)."""

from __future__ import annotations

import argparse
import json
import signal
import sys

import uvicorn

from api.auth import load_or_create_secret
from guanai import bootstrap
from guanai.cli.services import migrate, services
from infrastructure.settings import Settings
from workers import projector as projector_process
from workers.consumer import list_dead_letters
from workers.relay import relay_lag
from workers.runtime import BackgroundWorkers, run_until_signalled


def _serve_api(settings: Settings, database_url: str, nats_url: str | None, host: str, port: int) -> None:
    secret = load_or_create_secret(settings.jwt_secret, settings.data_path)
    app = bootstrap.api(settings, database_url=database_url, nats_url=nats_url, jwt_secret=secret)
    print(f"guanai: API on http://{host}:{port}  (docs: http://{host}:{port}/schema)", file=sys.stderr)
    # uvicorn shuts down gracefully on SIGTERM and then raises the signal again with the handler
    # it found: a Python handler here lets the callers' cleanup (workers, embedded servers) run.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=10)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    with services(settings) as (database_url, nats_url):
        assert nats_url is not None
        migrate(settings, database_url)
        projector = bootstrap.projector(settings, database_url)
        workers = BackgroundWorkers(*bootstrap.background_workers(settings, database_url, nats_url))
        if not args.no_workers:
            projector.start()
            workers.start()
        try:
            _serve_api(settings, database_url, nats_url, args.host or settings.host, args.port or settings.port)
        finally:
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
        return projector_process.main(bootstrap.projector(settings, database_url))


def cmd_relay(settings: Settings, args: argparse.Namespace) -> int:
    with services(settings) as (database_url, nats_url):
        assert nats_url is not None
        migrate(settings, database_url)
        print("guanai: relay running (Ctrl-C to stop)", file=sys.stderr)
        return run_until_signalled(bootstrap.relay(settings, database_url, nats_url))


def cmd_router(settings: Settings, args: argparse.Namespace) -> int:
    with services(settings) as (database_url, nats_url):
        assert nats_url is not None
        # No migrate here: the worker creates what it needs itself and retries a failed start.
        print("guanai: emergency router running (Ctrl-C to stop)", file=sys.stderr)
        return run_until_signalled(bootstrap.router(settings, database_url, nats_url))


def cmd_escalator(settings: Settings, args: argparse.Namespace) -> int:
    with services(settings) as (database_url, nats_url):
        assert nats_url is not None
        # No migrate here: the worker creates what it needs itself and retries a failed start.
        print("guanai: emergency escalator running (Ctrl-C to stop)", file=sys.stderr)
        return run_until_signalled(bootstrap.escalator(settings, database_url, nats_url))


def cmd_scheduler(settings: Settings, args: argparse.Namespace) -> int:
    with services(settings) as (database_url, nats_url):
        assert nats_url is not None
        migrate(settings, database_url)
        print("guanai: visit scheduler running (Ctrl-C to stop)", file=sys.stderr)
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
    """How far the views and the relay are behind the event store; exit 1 past the limits
    (the health check of the projector and relay services)."""
    with services(settings, need_nats=False) as (database_url, _):
        projector = bootstrap.projector(settings, database_url, pool_size=1)
        views = projector.lag()
        projector.close()
        relay = relay_lag(database_url)
    print(json.dumps({"views": views, "relay": relay}, default=str))
    late_views = float(views.get("seconds_behind") or 0) > args.max_seconds
    late_relay = relay["events_behind"] > args.max_relay_events
    return 1 if late_views or late_relay else 0
