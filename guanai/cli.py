"""``guanai``: the command line and the composition root of every Guanai process.

    guanai serve        API and projector in one process (embedded servers when unconfigured)
    guanai api          the API only (production: one service per process kind)
    guanai projector    the projector worker only
    guanai migrate      create the event store and view tables, then exit
    guanai demo         seed a realistic county and print its summary
    guanai token        issue a bearer token for an operator
    guanai lag          how far the views are behind the event store (health check)
    guanai relay        the relay worker only: event store -> NATS JetStream
    guanai router       the emergency router only: routes reports to on-duty responders, alerts them
    guanai escalator    the emergency escalator only: escalates reports nobody acknowledged in time
    guanai scheduler    the visit scheduler only: next tasks by cadence, missed visits, lapsed claims
    guanai dead-letters messages the workers could not handle, for a person to look at
    guanai audit        verify the audit chain, checkpoints, replay and export case histories
    guanai projections rebuild [NAME]   rebuild a view (or all) from zero while the old one serves
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from uuid import UUID

from domain.vocabulary import ActorRole
from guanai.settings import Settings, SettingsError, load_settings

COMMANDS = ("serve", "api", "projector", "relay", "migrate", "demo", "token", "lag", "dead-letters", "projections", "router", "escalator", "audit", "scheduler")


@contextmanager
def services(settings: Settings, *, need_nats: bool = True) -> Iterator[tuple[str, str | None]]:
    """(database_url, nats_url): the configured servers, or embedded ones under the data dir."""
    from guanai.embedded import EmbeddedServices

    embedded = EmbeddedServices(
        settings.data_path, postgres=settings.embedded_database, nats=need_nats and settings.embedded_nats
    )
    if settings.embedded_database or (need_nats and settings.embedded_nats):
        print(f"guanai: embedded servers under {settings.data_path}", file=sys.stderr)
        embedded.start()
    try:
        database_url = settings.database_url or embedded.database_url
        nats_url = settings.nats_url if not settings.embedded_nats else (embedded.nats_url if need_nats else None)
        yield database_url, nats_url
    finally:
        embedded.stop()


def migrate(settings: Settings, database_url: str) -> None:
    """Create the event store's tables and every view's tables (idempotent)."""
    from guanai.application import CareApplication, event_store_env
    from workers.projector import Projector

    CareApplication(event_store_env(database_url, pool_size=2)).close()
    projector = Projector(database_url)
    projector.open()
    projector.close()


def _serve_api(settings: Settings, database_url: str, nats_url: str | None, host: str, port: int) -> None:
    import uvicorn

    from api.app import create_app
    from api.auth import load_or_create_secret

    secret = load_or_create_secret(settings.jwt_secret, settings.data_path)
    app = create_app(settings, database_url=database_url, nats_url=nats_url, jwt_secret=secret)
    print(f"guanai: API on http://{host}:{port}  (docs: http://{host}:{port}/schema)", file=sys.stderr)
    # uvicorn shuts down gracefully on SIGTERM and then raises the signal again with the handler
    # it found: a Python handler here lets the callers' cleanup (workers, embedded servers) run.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=10)


def background_workers(database_url: str, nats_url: str) -> list[Any]:
    """The async workers ``guanai serve`` runs beside the API (each also runs on its own)."""
    from workers.escalator import escalator_worker
    from workers.relay import relay_worker
    from workers.router import router_worker
    from workers.scheduler import scheduler_worker

    interval = load_settings().scheduler_interval_seconds
    return [relay_worker(database_url, nats_url), router_worker(database_url, nats_url), escalator_worker(database_url, nats_url),
            scheduler_worker(database_url, nats_url, interval=interval)]


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from workers.projector import Projector
    from workers.runtime import BackgroundWorkers

    with services(settings) as (database_url, nats_url):
        assert nats_url is not None
        migrate(settings, database_url)
        projector = Projector(database_url)
        workers = BackgroundWorkers(*background_workers(database_url, nats_url))
        if not args.no_workers:
            projector.start()
            workers.start()
        try:
            _serve_api(settings, database_url, nats_url, args.host or settings.host, args.port or settings.port)
        finally:
            workers.stop()
            projector.stop()
    return 0


def cmd_relay(settings: Settings, args: argparse.Namespace) -> int:
    from workers.relay import relay_worker
    from workers.runtime import run_until_signalled

    with services(settings) as (database_url, nats_url):
        assert nats_url is not None
        migrate(settings, database_url)
        print("guanai: relay running (Ctrl-C to stop)", file=sys.stderr)
        return run_until_signalled(relay_worker(database_url, nats_url))


def cmd_router(settings: Settings, args: argparse.Namespace) -> int:
    from workers.router import router_worker
    from workers.runtime import run_until_signalled

    with services(settings) as (database_url, nats_url):
        assert nats_url is not None
        # No migrate here: the worker creates what it needs itself and retries a failed start.
        print("guanai: emergency router running (Ctrl-C to stop)", file=sys.stderr)
        return run_until_signalled(router_worker(database_url, nats_url))


def cmd_escalator(settings: Settings, args: argparse.Namespace) -> int:
    from workers.escalator import escalator_worker
    from workers.runtime import run_until_signalled

    with services(settings) as (database_url, nats_url):
        assert nats_url is not None
        # No migrate here: the worker creates what it needs itself and retries a failed start.
        print("guanai: emergency escalator running (Ctrl-C to stop)", file=sys.stderr)
        return run_until_signalled(escalator_worker(database_url, nats_url))


def cmd_scheduler(settings: Settings, args: argparse.Namespace) -> int:
    from workers.scheduler import main as run_scheduler

    with services(settings) as (database_url, nats_url):
        assert nats_url is not None
        migrate(settings, database_url)
        print("guanai: visit scheduler running (Ctrl-C to stop)", file=sys.stderr)
        return run_scheduler(settings, database_url, nats_url)


def cmd_dead_letters(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from workers.consumer import list_dead_letters

    with services(settings, need_nats=False) as (database_url, _):
        letters = list_dead_letters(database_url, limit=args.limit)
    for letter in letters:
        print(json.dumps(letter, default=str, ensure_ascii=False))
    print(f"{len(letters)} dead letter(s)", file=sys.stderr)
    return 0


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    with services(settings) as (database_url, nats_url):
        _serve_api(settings, database_url, nats_url, args.host or settings.host, args.port or settings.port)
    return 0


def cmd_projector(settings: Settings, args: argparse.Namespace) -> int:
    from workers.projector import main as run_projector

    with services(settings, need_nats=False) as (database_url, _):
        migrate(settings, database_url)
        print("guanai: projector running (Ctrl-C to stop)", file=sys.stderr)
        return run_projector(settings, database_url)


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    with services(settings, need_nats=False) as (database_url, _):
        migrate(settings, database_url)
    print("guanai: event store and views are ready")
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from guanai.application import CareApplication, event_store_env
    from guanai.demo import print_summary, seed_county
    from projections.registry import RegistryView
    from workers.projector import Projector

    started = time.monotonic()
    with services(settings, need_nats=False) as (database_url, _):
        migrate(settings, database_url)
        app = CareApplication(event_store_env(database_url, pool_size=8), helper_capacity=settings.helper_capacity)
        last = {"t": 0.0}

        tty = sys.stderr.isatty()

        def progress(stage: str, done: int, total: int) -> None:
            now = time.monotonic()
            if done == total or now - last["t"] > (1.0 if tty else 5.0):
                last["t"] = now
                line = f"  {stage:<24} {done:>6}/{total:<6}"
                if tty:  # redraw one line; in a log, one line per report
                    print("\r" + line, end="" if done < total else "\n", file=sys.stderr, flush=True)
                else:
                    print(line, file=sys.stderr, flush=True)

        counts = seed_county(app, seed=args.seed, scale=args.scale, progress=progress)
        from guanai.demo_visits import print_visit_summary, simulate_visits

        visits = simulate_visits(app, seed=args.seed, weeks=args.weeks, progress=progress)
        print(f"guanai: {visits}", file=sys.stderr)
        import io

        from guanai.demo_emergencies import print_emergency_summary, simulate_emergencies
        from guanai.demo_plan import plan_county

        emergencies = io.StringIO()
        print_emergency_summary(app, simulate_emergencies(app, plan_county(args.seed, args.scale), seed=args.seed), emergencies)
        app.close()
        print(f"guanai: seeded in {counts.elapsed:.1f}s: {counts}", file=sys.stderr)
        projector = Projector(database_url)
        applied = projector.catch_up()
        print(f"guanai: views caught up ({applied} events applied)", file=sys.stderr)
        print_summary(RegistryView(projector.pool), counts.county_id, sys.stdout)
        from projections.visit_tasks import VisitTaskView

        print_visit_summary(VisitTaskView(projector.pool), counts.county_id, sys.stdout)
        from guanai.demo_report import print_supervision
        from projections.supervision_view import SupervisionView

        print_supervision(SupervisionView(projector.pool), counts.county_id, sys.stdout)
        sys.stdout.write(emergencies.getvalue())
        projector.close()
    print(f"\nDone in {time.monotonic() - started:.0f}s. Next: `./run serve`, then open http://127.0.0.1:{settings.port}/schema")
    print(f"A token for the county supervisor: ./run token --role county_supervisor --org-unit {counts.county_id}")
    return 0


def cmd_token_revoke(settings: Settings, args: argparse.Namespace) -> int:
    """``token revoke JTI|TOKEN``: every API process refuses it within GUANAI_REVOCATION_CACHE_SECONDS."""
    from datetime import UTC, datetime

    import jwt

    from api.revocations import revoke_in

    jti, expires_at = args.jti, None
    if args.jti.count(".") == 2:  # a whole token: take its id and expiry (signature not needed to revoke)
        try:
            claims = jwt.decode(args.jti, options={"verify_signature": False})
            jti, expires_at = str(claims["jti"]), datetime.fromtimestamp(int(claims["exp"]), UTC)
        except (jwt.InvalidTokenError, KeyError, ValueError, TypeError, OverflowError):
            print("guanai token revoke: that is not a token with a jti and an exp", file=sys.stderr)
            return 2
    with services(settings, need_nats=False) as (database_url, _):
        until = revoke_in(database_url, jti, expires_at, revoked_by=args.by, reason=args.reason)
    print(f"guanai: token {jti} revoked (kept until {until.isoformat(timespec='seconds')})", file=sys.stderr)
    return 0


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    from api.auth import TokenError, issue_token, load_or_create_secret, verify_token
    from domain.org_unit import org_unit_id

    if getattr(args, "token_action", None) == "revoke":
        return cmd_token_revoke(settings, args)
    if not args.role:
        print("guanai token: --role is required (or: guanai token revoke JTI)", file=sys.stderr)
        return 2
    org: UUID | None = None
    if args.org_code:
        org = org_unit_id(args.org_code)
    elif args.org_unit:
        org = args.org_unit
    try:
        secret = load_or_create_secret(settings.jwt_secret, settings.data_path)
        token = issue_token(
            secret,
            subject=args.subject,
            role=ActorRole(args.role),
            org_unit_id=org,
            ttl=timedelta(hours=args.ttl_hours or settings.token_ttl_hours),
        )
    except TokenError as e:
        print(f"guanai token: {e}", file=sys.stderr)
        return 2
    print(token)
    issued = verify_token(secret, token)
    print(f"guanai: token id (jti) {issued.token_id}; revoke with `guanai token revoke {issued.token_id}`", file=sys.stderr)
    return 0


def cmd_projections(settings: Settings, args: argparse.Namespace) -> int:
    """``projections rebuild [NAME]``: replay the log into new tables and swap them in, with a
    progress bar on stderr; the old view keeps serving until the swap."""
    from guanai.progress import ProgressBar
    from projections import all_projections
    from workers.projector import Projector

    names = [p.name for p in all_projections()]
    if args.name is not None and args.name not in names:
        print(f"guanai projections: no view {args.name!r}; the views are {', '.join(names)}", file=sys.stderr)
        return 2
    with services(settings, need_nats=False) as (database_url, _):
        migrate(settings, database_url)
        with Projector(database_url, pool_size=2) as projector:
            for name in [args.name] if args.name else names:
                bar = ProgressBar(name)
                started = time.monotonic()
                events = projector.runner.rebuild(name, progress=bar.update)
                bar.finish(f"rebuilt from {events:,} events in {time.monotonic() - started:.1f}s and swapped in")
    return 0


def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    from guanai.audit_cli import run

    with services(settings, need_nats=False) as (database_url, _):
        return run(settings, database_url, args)


def cmd_lag(settings: Settings, args: argparse.Namespace) -> int:
    """How far the views and the relay are behind the event store; exit 1 past the limits
    (the health check of the projector and relay services)."""
    import json

    import psycopg

    from workers.projector import Projector

    with services(settings, need_nats=False) as (database_url, _):
        projector = Projector(database_url, pool_size=1)
        views = projector.lag()
        projector.close()
        with psycopg.connect(database_url) as conn:
            last = conn.execute("SELECT coalesce(max(notification_id), 0) FROM guanai_events").fetchone()[0]
            has_relay = conn.execute("SELECT to_regclass('relay_tracking') IS NOT NULL").fetchone()[0]
            relayed = conn.execute("SELECT coalesce(max(position), 0) FROM relay_tracking").fetchone()[0] if has_relay else 0
    relay = {"position": relayed, "events_behind": max(0, last - relayed)}
    print(json.dumps({"views": views, "relay": relay}, default=str))
    late_views = float(views.get("seconds_behind") or 0) > args.max_seconds
    late_relay = relay["events_behind"] > args.max_relay_events
    return 1 if late_views or late_relay else 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="guanai", description="Guanai (关爱): care for left-behind elders and children")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_ in (("serve", "API and projector in one process"), ("api", "the API only")):
        s = sub.add_parser(name, help=help_)
        s.add_argument("--host", help="listen address (default GUANAI_HOST)")
        s.add_argument("--port", type=int, help="listen port (default GUANAI_PORT)")
        if name == "serve":
            s.add_argument("--no-workers", action="store_true", help="run only the API (no projector, relay, workers)")
    sub.add_parser("projector", help="the projector worker only")
    sub.add_parser("relay", help="the relay worker only: event store -> NATS JetStream")
    sub.add_parser("router", help="the emergency router only: routes reports, publishes alerts")
    sub.add_parser("escalator", help="the emergency escalator only: escalates unacknowledged reports")
    sub.add_parser("scheduler", help="the visit scheduler only: next tasks by cadence, missed visits, lapsed claims")
    dl = sub.add_parser("dead-letters", help="list messages the workers could not handle")
    dl.add_argument("--limit", type=int, default=100)
    sub.add_parser("migrate", help="create the event store and view tables")
    d = sub.add_parser("demo", help="seed a realistic county and print its summary")
    d.add_argument("--scale", type=float, default=1.0, help="fraction of a full county (default 1.0: ~4,300 people)")
    d.add_argument("--seed", type=int, default=2026, help="random seed; the same seed gives the same county")
    d.add_argument("--weeks", type=int, default=2, help="weeks of visits to live through (default 2)")
    t = sub.add_parser("token", help="issue a bearer token")
    t.add_argument("--role", choices=[r.value for r in ActorRole if r != ActorRole.SYSTEM], help="required to issue")
    t.add_argument("--subject", default="operator", help="who the token is for (an id, not a name)")
    scope = t.add_mutually_exclusive_group()
    scope.add_argument("--org-unit", type=UUID, help="org unit id the role is scoped to")
    scope.add_argument("--org-code", help="12-digit division code of the org unit")
    t.add_argument("--ttl-hours", type=int, help="lifetime (default GUANAI_TOKEN_TTL_HOURS; at most 744)")
    tr = t.add_subparsers(dest="token_action", metavar="ACTION").add_parser("revoke", help="revoke a token before it expires")
    tr.add_argument("jti", help="the token's id (printed when it was issued), or the token itself")
    tr.add_argument("--reason", default="revoked by an operator", help="why (kept with the revocation)")
    tr.add_argument("--by", default="operator", help="who revokes (an id, not a name)")
    g = sub.add_parser("lag", help="how far the views are behind; exit 1 past --max-seconds")
    g.add_argument("--max-seconds", type=float, default=60.0, help="views may be this far behind")
    g.add_argument("--max-relay-events", type=int, default=10_000, help="the relay may be this many events behind")
    pj = sub.add_parser("projections", help="manage the views").add_subparsers(dest="action", required=True)
    rb = pj.add_parser("rebuild", help="rebuild a view from zero (new tables, swapped in when done)")
    rb.add_argument("name", nargs="?", help="registry, timeline, supervision, ... (default: every view)")
    from guanai.audit_cli import add_parser as add_audit_parser

    add_audit_parser(sub)
    return p


HANDLERS: dict[str, Any] = {
    "serve": cmd_serve,
    "api": cmd_api,
    "projector": cmd_projector,
    "migrate": cmd_migrate,
    "demo": cmd_demo,
    "token": cmd_token,
    "lag": cmd_lag,
    "audit": cmd_audit,
    "relay": cmd_relay,
    "dead-letters": cmd_dead_letters,
    "projections": cmd_projections,
    "router": cmd_router,
    "escalator": cmd_escalator,
    "scheduler": cmd_scheduler,
}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as e:
        print(f"guanai: {e}", file=sys.stderr)
        return 2
    from guanai.logs import configure_logging

    configure_logging(settings.log_format, settings.log_level)
    command = args.command or "serve"
    if args.command is None:
        args = parser().parse_args(["serve"])
    return int(HANDLERS[command](settings, args) or 0)


if __name__ == "__main__":
    sys.exit(main())
