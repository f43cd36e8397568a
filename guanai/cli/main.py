"""``guanai``: the command line. It parses, then runs the command's group module under
``guanai/cli/``; every process is built by the composition root, ``guanai/bootstrap.py``.

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
    guanai status       where the servers are (the NATS URL for alert subscribers), starting nothing
    guanai audit        verify the audit chain, checkpoints, replay and export case histories
    guanai projections rebuild [NAME]   rebuild a view (or all) from zero while the old one serves
    guanai access-table the authorization table (who may do what, on which objects) as Markdown
    guanai keys status|rotate   the personal data keys: which master key wraps them; re-wrap under a new one
    guanai accounts create-admin   open the first administrator's account; prints its activation code
    guanai backup --out FILE|DIR   a consistent dump of the store with its keys sealed under a passphrase
    guanai restore FILE            into an empty data directory / database; erasures since the backup applied again
    guanai erasures list|replay    the erasure log; erase again whoever it names after the store's newest event
    guanai import FILE  the registry (台账) from XLSX or CSV; guanai export registry|template; guanai lookups rebuild
"""

from __future__ import annotations

import argparse
import importlib
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from domain.vocabulary import ActorRole
from infrastructure.logs import configure_logging
from infrastructure.settings import SettingsError, load_settings

# Commands whose process never opens personal data (guanai/bootstrap.py builds the projector's and
# the relay's application with OPENS_PERSONAL_DATA false): they need no GUANAI_MASTER_KEY.
NO_PERSONAL_DATA = frozenset({"migrate", "projector", "relay", "lag"})

# Each command's handler, as "module:function": a command group lives in its own module under
# guanai/cli/, imported only when one of its commands runs (start-up stays quick: `guanai token`
# does not import the API's web framework). A new group: its module, its parser lines below, and
# its entries here.
HANDLERS: dict[str, str] = {
    "serve": "guanai.cli.run:cmd_serve",
    "api": "guanai.cli.run:cmd_api",
    "projector": "guanai.cli.run:cmd_projector",
    "relay": "guanai.cli.run:cmd_relay",
    "router": "guanai.cli.run:cmd_router",
    "escalator": "guanai.cli.run:cmd_escalator",
    "scheduler": "guanai.cli.run:cmd_scheduler",
    "migrate": "guanai.cli.run:cmd_migrate",
    "lag": "guanai.cli.run:cmd_lag",
    "dead-letters": "guanai.cli.run:cmd_dead_letters",
    "demo": "guanai.cli.demo:cmd_demo",
    "token": "guanai.cli.token:cmd_token",
    "audit": "guanai.cli.audit:cmd_audit",
    "projections": "guanai.cli.projections:cmd_projections",
    "access-table": "guanai.cli.access_table:cmd_access_table",
    "keys": "guanai.cli.keys:cmd_keys",
    "accounts": "guanai.cli.accounts:cmd_accounts",
    "status": "guanai.cli.status:cmd_status",
    "import": "guanai.cli.imports:cmd_import",
    "export": "guanai.cli.imports:cmd_export",
    "lookups": "guanai.cli.imports:cmd_lookups",
    "backup": "guanai.cli.backup:cmd_backup",
    "restore": "guanai.cli.backup:cmd_restore",
    "erasures": "guanai.cli.backup:cmd_erasures",
}
COMMANDS = tuple(HANDLERS)


def _registry_file_parsers(sub: Any) -> None:
    """``guanai import``, ``guanai export`` and ``guanai lookups`` (guanai/cli/imports.py)."""
    i = sub.add_parser("import", help="import the registry (台账) from an XLSX or CSV file")
    i.add_argument("file", type=Path, help="an .xlsx or .csv file with Chinese headers (guanai export template)")
    _unit_arguments(i)
    i.add_argument("--dry-run", action="store_true", help="check every row and report; write nothing")
    i.add_argument("--by", default="operator", help="who imports (an id, not a name; recorded on every event)")
    i.add_argument("--batch", type=int, default=500, help="rows per transaction (default 500)")
    i.add_argument("--report", type=Path, help="write the file back with the bad cells marked and commented")
    i.add_argument("--json", action="store_true", help="print the job and its report as JSON")
    lk = sub.add_parser("lookups", help="the keyed hashes that find people by ID number on import")
    lk.add_argument("action", choices=["rebuild"], help="rebuild: add those missing (a store from before imports)")
    e = sub.add_parser("export", help="export the registry (台账) as XLSX, or the import template")
    e.add_argument(
        "what",
        choices=["registry", "template"],
        help="registry: one sheet per township; template: the empty import workbook",
    )
    _unit_arguments(e, required=False)
    e.add_argument("--out", type=Path, required=True, help="the .xlsx file to write")
    e.add_argument("--by", default="operator", help="who exports (an id, not a name; recorded in the access log)")


def _backup_parsers(sub: Any) -> None:
    """``guanai backup`` and ``guanai restore`` (guanai/cli/backup.py)."""
    b = sub.add_parser("backup", help="a consistent dump of the store, its keys sealed under a passphrase, a manifest")
    b.add_argument("--out", type=Path, required=True, help="the archive to write, or a directory to name one in")
    b.add_argument(
        "--no-keys", action="store_true", help="leave the keys out (a restore then takes them from the settings)"
    )
    b.add_argument(
        "--passphrase-file", type=Path, help="read the passphrase from this file (else GUANAI_BACKUP_PASSPHRASE)"
    )
    r = sub.add_parser("restore", help="restore a backup into an empty data directory / database")
    r.add_argument("file", type=Path, help="an archive made by `guanai backup`")
    r.add_argument(
        "--passphrase-file", type=Path, help="read the passphrase from this file (else GUANAI_BACKUP_PASSPHRASE)"
    )
    r.add_argument("--no-erasure-log", action="store_true",
                   help="restore without an erasure log: only when no one was erased since the backup")  # fmt: skip
    e = sub.add_parser("erasures", help="the erasure log: list this store's entries; replay those newer than the store")
    e.add_argument("action", choices=["list", "replay"],
                   help="replay: erase again whoever was erased after the store's newest event (after a PITR)")  # fmt: skip


def _unit_arguments(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    scope = p.add_mutually_exclusive_group(required=required)
    scope.add_argument("--org-unit", type=UUID, help="the org unit imported into (its subtree's villages)")
    scope.add_argument("--org-code", help="12-digit division code of that unit")


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
    t.add_argument("--subject", help="required to issue: the id of the one person the token is for (not a name)")
    scope = t.add_mutually_exclusive_group()
    scope.add_argument("--org-unit", type=UUID, help="org unit id the role is scoped to")
    scope.add_argument("--org-code", help="12-digit division code of the org unit")
    t.add_argument("--ttl-hours", type=int, help="lifetime (default GUANAI_TOKEN_TTL_HOURS; at most 744)")
    tr = t.add_subparsers(dest="token_action", metavar="ACTION").add_parser(
        "revoke", help="revoke a token before it expires"
    )
    tr.add_argument("jti", help="the token's id (printed when it was issued), or the token itself")
    tr.add_argument("--reason", default="revoked by an operator", help="why (kept with the revocation)")
    tr.add_argument("--by", default="operator", help="who revokes (an id, not a name)")
    g = sub.add_parser("lag", help="how far the views are behind; exit 1 past --max-seconds")
    g.add_argument("--max-seconds", type=float, default=60.0, help="views may be this far behind")
    g.add_argument("--max-relay-events", type=int, default=10_000, help="the relay may be this many events behind")
    g.add_argument("--stall-seconds", type=float, default=30.0,
                   help="the relay or a worker is stalled when work waited this long and nothing moved")  # fmt: skip
    g.add_argument("--no-workers", action="store_true", help="leave the workers' consumers out (no NATS needed)")
    pj = sub.add_parser("projections", help="manage the views").add_subparsers(dest="action", required=True)
    rb = pj.add_parser("rebuild", help="rebuild a view from zero (new tables, swapped in when done)")
    rb.add_argument("name", nargs="?", help="registry, timeline, supervision, ... (default: every view)")
    at = sub.add_parser("access-table", help="the authorization table (api/access/rules.py) as Markdown")
    at.add_argument("--update", type=Path, metavar="FILE", help="rewrite the table between its markers in FILE")
    ks = sub.add_parser("keys", help="the personal data keys: status, master key rotation").add_subparsers(
        dest="action", required=True)  # fmt: skip
    ks.add_parser("status", help="the master key the keys are wrapped by (exit 1: not this process's)")
    kr = ks.add_parser("rotate", help="re-wrap every key under GUANAI_MASTER_KEY (or a new data directory key)")
    kr.add_argument("--by", default="operator", help="who rotates (an id, not a name; kept in the store)")
    _registry_file_parsers(sub)
    _backup_parsers(sub)
    a = sub.add_parser("audit", help="verify the audit chain, take checkpoints, replay and export case histories")
    cmds = a.add_subparsers(dest="audit_command", metavar="AUDIT_COMMAND", required=True)
    v = cmds.add_parser("verify", help="check the chain; exit 1 naming the first position that fails")
    v.add_argument("--from", dest="start", type=int, help="first position (default: the lowest row, below 1 too)")
    v.add_argument("--to", dest="end", type=int, help="last position (default: the newest)")
    v.add_argument("--access-log", action="store_true", help="check the access log's chain instead of the events'")
    v.add_argument(
        "--checkpoint", type=Path, help="a file from `guanai audit checkpoint`: also check the log still matches it"
    )
    v.add_argument("--json", action="store_true", help="print the whole result as JSON")
    c = cmds.add_parser("checkpoint", help="print the newest entry of each chain, for an outside party to keep")
    c.add_argument("--out", type=Path, help="write to this file as well")
    c.add_argument(
        "--publish",
        type=Path,
        metavar="DIR",
        help="sign the newest Merkle tree checkpoint and publish it, its "
        "consistency proof and the log's public key into DIR (the folder outside parties mirror)",
    )
    v.add_argument(
        "--tree",
        action="store_true",
        help="check the Merkle tree instead: every leaf against its event, "
        "the root against the newest signed checkpoint",
    )
    r = cmds.add_parser("replay", help="a stream's events, or its state as of an instant")
    r.add_argument("id", type=UUID)
    r.add_argument(
        "--as-of", type=datetime.fromisoformat, help="instant with UTC offset, e.g. 2026-03-01T09:30:00+08:00"
    )
    r.add_argument("--time", choices=("recorded", "occurred"), default="recorded")
    e = cmds.add_parser("export", help="a case history as a printable HTML document (Chinese) or JSON")
    e.add_argument("id", type=UUID)
    e.add_argument("--format", choices=("html", "json"), default="html")
    e.add_argument("--out", type=Path, help="file to write (default: standard output)")
    e.add_argument("--actor", default="cli-operator", help="who exports (recorded in the document and the access log)")
    cmds.add_parser("adopt", help="chain a store written before the chain existed (once)")
    cmds.add_parser("public-key", help="the log's public key, for outside parties").add_argument(
        "--out", type=Path, help="write to this file as well"
    )
    k = cmds.add_parser("keygen", help="make a signing key (for a witness) and its public key file")
    k.add_argument("--suite", choices=("international", "gm"), default="international")
    k.add_argument(
        "--out", type=Path, required=True, help="the private key file (kept by its office; FILE.pub.json is public)"
    )
    k.add_argument("--name", default="witness", help="who holds it, e.g. 县纪委监委")
    w = cmds.add_parser(
        "witness", help="co-sign the newest published checkpoint after checking it extends the last one seen"
    )
    w.add_argument("folder", type=Path, help="the published folder (from `guanai audit checkpoint --publish`)")
    w.add_argument("--key", type=Path, required=True, help="the witness's private key file (`guanai audit keygen`)")
    w.add_argument(
        "--state", type=Path, help="where the witness keeps the last checkpoint it saw (default: KEY.state.json)"
    )
    w.add_argument(
        "--log-key",
        type=Path,
        help="the log's public key the witness trusts (default: pinned on first run from the folder's log-key.json)",
    )
    st = sub.add_parser("status", help="where the servers are: the NATS URL (embedded or configured), the database")
    st.add_argument("--nats-url", action="store_true", help="print only the NATS URL (exit 1: not running)")
    ac = sub.add_parser("accounts", help="accounts of the people who sign in: create the first administrator")
    acs = ac.add_subparsers(dest="accounts_command", metavar="ACCOUNTS_COMMAND", required=True)
    ca = acs.add_parser("create-admin", help="open an administrator's account and print its activation code")
    ca.add_argument("--phone", required=True, help="the administrator's mobile number (11 digits, +86 may precede)")
    ca.add_argument("--name", default="", help="how the account is shown (sealed like every name)")
    ca.add_argument("--by", default="operator", help="who opens it (an id, not a name; kept in the event)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as e:
        print(f"guanai: {e}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    command = args.command or "serve"
    if args.command is None:
        args = parser().parse_args(["serve"])
    module, function = HANDLERS[command].split(":")
    handler = getattr(importlib.import_module(module), function)
    return int(handler(settings, args) or 0)


if __name__ == "__main__":
    sys.exit(main())
