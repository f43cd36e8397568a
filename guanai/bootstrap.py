"""The composition root: the one place that builds a Guanai process.

For each process kind (``Process``: the API, the projector, the relay, the router, the
escalator, the scheduler, and the command line's own commands) this module builds the
application over its event store with its keys, the pools, the workers and the API app, from
typed settings read once (``infrastructure.settings``). Nothing below it reads settings or the
environment: what a component needs is handed in here. ``USED_BY`` says which process kinds
each setting reaches; a test walks it.

Nothing connects when this module is imported: every builder is a function.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from litestar import Litestar

from api.app import create_app
from application.care import CareApplication
from application.ports import EventStore
from infrastructure import metrics
from infrastructure.settings import Settings
from infrastructure.store import InMemoryEventStore, PostgresEventStore, event_store_env, memory_store_env, store_keys
from web.frame import template_config
from web.routes import router as web_router
from workers.escalator import escalator_worker
from workers.projector import Projector
from workers.relay import relay_worker
from workers.router import router_worker
from workers.scheduler import scheduler_worker

Worker = Callable[[asyncio.Event], Any]


class Process(StrEnum):
    """The kinds of process Guanai runs (one service each in production; ``guanai serve`` runs the
    API with the others in its background)."""

    API = "api"
    PROJECTOR = "projector"
    RELAY = "relay"
    ROUTER = "router"
    ESCALATOR = "escalator"
    SCHEDULER = "scheduler"
    CLI = "cli"  # migrate, demo, audit, keys, ...: commands that run and exit


ALL = frozenset(Process)
# The kinds that run apart from the API in production, each with its own metrics endpoint.
WORKERS = frozenset({Process.PROJECTOR, Process.RELAY, Process.ROUTER, Process.ESCALATOR, Process.SCHEDULER})
COMMANDING = frozenset({Process.API, Process.ROUTER, Process.ESCALATOR, Process.SCHEDULER, Process.CLI})
# The views and the relay's messages hold no personal data: those processes never load the
# master key, read sealed fields as erased, and cannot record personal data.
OPENS_PERSONAL_DATA = COMMANDING

# Which process kinds each setting reaches: every field of Settings is here (a test checks it,
# and that each setting built into a process below changes what is built for every kind listed).
USED_BY: dict[str, frozenset[Process]] = {
    "database_url": ALL,
    "nats_url": frozenset({Process.API, Process.RELAY, Process.ROUTER, Process.ESCALATOR, Process.SCHEDULER}),
    # The embedded NATS's port: whichever process starts it (guanai/cli/services.py), and `guanai status`.
    "nats_port": frozenset(
        {Process.API, Process.RELAY, Process.ROUTER, Process.ESCALATOR, Process.SCHEDULER, Process.CLI}
    ),
    "data_dir": ALL,
    "host": frozenset({Process.API}),
    "port": frozenset({Process.API}),
    "jwt_secret": frozenset({Process.API, Process.CLI}),
    "token_ttl_hours": frozenset({Process.CLI}),
    "jwt_previous_secrets": frozenset({Process.API}),
    "revocation_cache_seconds": frozenset({Process.API}),
    "auth_failures_per_minute": frozenset({Process.API}),
    "reports_per_minute": frozenset({Process.API}),
    "cors_origins": frozenset({Process.API}),
    "log_format": ALL,
    "log_level": ALL,
    "helper_capacity": COMMANDING,
    "clock_skew_seconds": frozenset({Process.API}),
    "max_backdate_days": frozenset({Process.API}),
    "db_pool_size": ALL,
    "read_wait_seconds": frozenset({Process.API}),
    # The projector's least time between batches while commands keep coming (``guanai serve``
    # runs the projector in the API's process, as the projector kind).
    "views_batch_ms": frozenset({Process.PROJECTOR}),
    "command_retries": COMMANDING,
    "visit_claim_limit": frozenset({Process.API}),
    "visit_claim_hours": frozenset({Process.API}),
    "scheduler_interval_seconds": frozenset({Process.SCHEDULER}),
    "stream_replicas": frozenset({Process.RELAY, Process.ROUTER, Process.ESCALATOR, Process.SCHEDULER}),
    "audit_chain": ALL,
    "chain_key": ALL,
    "master_key": OPENS_PERSONAL_DATA,
    "previous_master_keys": OPENS_PERSONAL_DATA,
    "key_cache_seconds": OPENS_PERSONAL_DATA,
    "crypto_suite": ALL,
    "signing_key": frozenset({Process.API, Process.CLI}),
    # Imports (API and CLI) and registrations find people by the keyed hashes of their ID numbers.
    "lookup_key": COMMANDING,
    # Accounts' sessions and sign-in throttles (api/sessions.py).
    "access_token_minutes": frozenset({Process.API}),
    "session_days": frozenset({Process.API}),
    "sign_in_failures_free": frozenset({Process.API}),
    # Any process that may store an erasure logs it (infrastructure/erasure_log.py); restores read it.
    "erasure_log": COMMANDING,
    "backup_passphrase": frozenset({Process.CLI}),
    "import_max_bytes": frozenset({Process.API, Process.CLI}),
    "import_max_unpacked_bytes": frozenset({Process.API, Process.CLI}),
    "import_keep_days": frozenset({Process.API, Process.CLI}),
    # Metrics: the API serves its own on /metrics; the other long-running kinds on their own port.
    "metrics_token": frozenset(
        {Process.API, Process.PROJECTOR, Process.RELAY, Process.ROUTER, Process.ESCALATOR, Process.SCHEDULER}
    ),
    "metrics_port": WORKERS,
    "metrics_host": WORKERS,
}


@dataclass(frozen=True)
class ProcessConfig:
    """What the bootstrap hands to one process kind's components, read off the settings."""

    kind: Process
    pool_size: int
    retries: int
    helper_capacity: int
    opens_personal_data: bool
    scheduler_interval: float


def process_config(settings: Settings, kind: Process) -> ProcessConfig:
    return ProcessConfig(
        kind=kind,
        pool_size=settings.db_pool_size,
        retries=settings.command_retries,
        helper_capacity=settings.helper_capacity,
        opens_personal_data=kind in OPENS_PERSONAL_DATA,
        scheduler_interval=settings.scheduler_interval_seconds,
    )


def care_application(
    settings: Settings,
    kind: Process,
    database_url: str,
    *,
    pool_size: int | None = None,
    seal_personal_data: bool = True,
    library_env: dict[str, str] | None = None,
    keep_tree: bool = True,
) -> CareApplication:
    """The application of one process kind over the PostgreSQL event store, with its keys.
    ``pool_size`` overrides GUANAI_DB_POOL_SIZE and ``library_env`` adds eventsourcing settings
    (tests, benchmarks); ``seal_personal_data`` false only to measure what sealing costs
    (bench/protections.py: no setting reaches it); ``keep_tree`` false only to measure what the
    Merkle tree costs (bench/proofs.py)."""
    config = process_config(settings, kind)
    store = PostgresEventStore(
        store_keys(settings), seal=seal_personal_data, opens=config.opens_personal_data, tree=keep_tree
    )
    env = {**event_store_env(database_url, pool_size=pool_size or config.pool_size), **(library_env or {})}
    return metrics.time_commands(_application(config, env, store))


def memory_application(settings: Settings | None = None) -> CareApplication:
    """The application on the library's in-memory store (keys in memory): no server, for unit tests."""
    settings = settings or Settings(master_key="in-memory-master-key-" + "x" * 32)
    return _application(
        process_config(settings, Process.CLI), memory_store_env(), InMemoryEventStore(store_keys(settings))
    )


def _application(config: ProcessConfig, env: dict[str, str], store: EventStore) -> CareApplication:
    # The one place a CareApplication is made (a test greps for it).
    return CareApplication(env, store=store, helper_capacity=config.helper_capacity, retries=config.retries)


def app_factory(settings: Settings, kind: Process, database_url: str, **options: Any) -> Callable[[], CareApplication]:
    """Builds the application when called: for components that make theirs when they start."""
    return lambda: care_application(settings, kind, database_url, **options)


def projector(settings: Settings, database_url: str, **options: Any) -> Projector:
    """The projector (all views), with its own application that opens no personal data."""
    options.setdefault("pool_size", settings.db_pool_size)
    options.setdefault("batch_interval", settings.views_batch_ms / 1000)
    return Projector(database_url, make_app=app_factory(settings, Process.PROJECTOR, database_url), **options)


def relay(settings: Settings, database_url: str, nats_url: str, **options: Any) -> Worker:
    return relay_worker(app_factory(settings, Process.RELAY, database_url), database_url, nats_url, **options)


def router(settings: Settings, database_url: str, nats_url: str, **options: Any) -> Worker:
    return router_worker(app_factory(settings, Process.ROUTER, database_url), database_url, nats_url, **options)


def escalator(settings: Settings, database_url: str, nats_url: str, **options: Any) -> Worker:
    return escalator_worker(app_factory(settings, Process.ESCALATOR, database_url), database_url, nats_url, **options)


def scheduler(settings: Settings, database_url: str, nats_url: str, **options: Any) -> Worker:
    options.setdefault("interval", process_config(settings, Process.SCHEDULER).scheduler_interval)
    return scheduler_worker(app_factory(settings, Process.SCHEDULER, database_url), database_url, nats_url, **options)


def freeze_startup() -> None:
    """Keep what a long-running process made to start (its modules, the app) out of the cyclic
    collector's full passes: collected once, then frozen (``gc.freeze``). A full pass walks every
    object the collector tracks, some 100,000 of them made at start, and a request that builds
    many objects (a batch of 500 visit logs) sets one off about every other time."""
    gc.collect()
    gc.freeze()


@contextmanager
def metrics_endpoint(settings: Settings) -> Iterator[metrics.MetricsServer | None]:
    """A worker process's own ``/metrics`` (GUANAI_METRICS_PORT, _HOST, _TOKEN) while it runs;
    none when no port is set. The API serves its own on its port."""
    server = metrics.serve_metrics(settings.metrics_host, settings.metrics_port, settings.metrics_token)
    try:
        yield server
    finally:
        if server is not None:
            server.stop()


def watch_projector(projector: Projector) -> Callable[[], None]:
    """Show the projector's lag on this process's metrics; returns the function that stops it."""
    return metrics.watch_projector("projector", projector.lag)


def background_workers(settings: Settings, database_url: str, nats_url: str) -> list[Worker]:
    """The async workers ``guanai serve`` runs beside the API (each also runs on its own)."""
    return [
        relay(settings, database_url, nats_url),
        router(settings, database_url, nats_url),
        escalator(settings, database_url, nats_url),
        scheduler(settings, database_url, nats_url),
    ]


def api(
    settings: Settings,
    *,
    database_url: str,
    nats_url: str | None,
    jwt_secret: str,
    debug: bool = False,
    protections: bool = True,
) -> Litestar:
    """The API app; its application is built when the app starts. ``protections=False`` stores
    personal fields unsealed and checks tokens only: for bench/protections.py alone."""
    make_care = app_factory(settings, Process.API, database_url, seal_personal_data=protections)
    return create_app(
        settings,
        database_url=database_url,
        nats_url=nats_url,
        jwt_secret=jwt_secret,
        make_care=make_care,
        debug=debug,
        protections=protections,
        pages=[web_router()],
        template_config=template_config(),
    )
