"""``guanai audit ...``: the auditors' tools on the command line.

    guanai audit verify [--from N] [--to M] [--access-log] [--checkpoint FILE] [--json]
    guanai audit checkpoint [--out FILE]
    guanai audit replay ID [--as-of T [--time recorded|occurred]]
    guanai audit export ID [--format html|json] [--out FILE]
    guanai audit adopt

``verify`` exits 1 when anything fails and names the first failing position and why;
``checkpoint`` prints the newest entry of each chain for an outside party to keep (hand the
file back to ``verify --checkpoint`` later); ``adopt`` chains a store written before the chain
existed (once).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import psycopg

from guanai import bootstrap
from guanai.bootstrap import Process
from guanai.cli.proofs import OFFLINE, run_offline
from guanai.cli.proofs import run_online as run_proofs
from guanai.cli.services import services
from infrastructure.audit import Audit, NoSuchStreamError
from infrastructure.audit_html import render
from infrastructure.chain import ChainError, adopt
from infrastructure.merkle import check_tree
from infrastructure.settings import Settings
from infrastructure.verify import Checkpoint


def _print_progress(position: int, end: int, checked: int) -> None:
    print(f"  verified {checked:,} rows, at position {position:,} of {end:,}", file=sys.stderr, flush=True)


def _load_checkpoint(path: Path, log: str) -> Any:
    held = msgspec.json.decode(path.read_bytes(), type=list[Checkpoint] | Checkpoint)
    for cp in held if isinstance(held, list) else [held]:
        if cp.log == log:
            return cp
    raise SystemExit(f"guanai audit: {path} holds no checkpoint of the {log} log")


def _verify_tree(audit: Any, database_url: str) -> int:
    started = time.monotonic()
    checkpoint = audit.latest_checkpoint()
    with psycopg.connect(database_url) as conn:
        checked, failures = check_tree(conn, audit.tree, audit.events_table, checkpoint)
    print(f"Merkle tree ({audit.suite.name}): {checked:,} leaves checked in {time.monotonic() - started:.1f}s")
    for position, kind, detail in failures:
        print(f"  FAIL at {position}: {kind}: {detail}")
    print(
        f"OK: every event is its leaf; the root is the one signed at {checkpoint['size']:,} events"
        if not failures
        else f"FAILED: {len(failures)} failures"
    )
    return 0 if not failures else 1


def cmd_audit(settings: Settings, args: argparse.Namespace) -> int:
    if args.audit_command in OFFLINE:  # a witness's office has no database
        return run_offline(args)
    with services(settings, need_nats=False) as (database_url, _):
        return run(settings, database_url, args)


def run(settings: Settings, database_url: str, args: argparse.Namespace) -> int:
    app = bootstrap.care_application(settings, Process.CLI, database_url, pool_size=2)
    audit = Audit(app, database_url)
    try:
        command = args.audit_command
        if (done := run_proofs(audit, args)) is not None:
            return done
        if command == "verify" and args.tree:
            return _verify_tree(audit, database_url)
        if command == "verify":
            log = "access" if args.access_log else "events"
            held = _load_checkpoint(args.checkpoint, log) if args.checkpoint else None
            started = time.monotonic()
            if log == "access":
                result = audit.verify_access_log(
                    start=1 if args.start is None else args.start, end=args.end, checkpoint=held
                )
            else:
                result = audit.verify(start=args.start, end=args.end, checkpoint=held, progress=_print_progress)
            if args.json:
                print(msgspec.json.encode(result).decode())
            else:
                rate = result.checked / max(time.monotonic() - started, 1e-9)
                print(
                    f"{log} log, positions {result.start}..{result.end}: {result.checked:,} rows checked ({rate:,.0f}/s)"
                )
                for f in result.failures:
                    print(f"  FAIL at {f.position}: {f.kind}: {f.detail}")
                if result.failure_count > len(result.failures):
                    print(f"  ... {result.failure_count - len(result.failures)} more")
                if held is not None:
                    print(
                        f"checkpoint at {held.position} ({held.at.isoformat()}): {'matches' if result.ok else 'see above'}"
                    )
                head = result.head
                print(
                    "OK: the chain verifies" + (f" up to {head.position}, digest {head.digest}" if head else "")
                    if result.ok
                    else f"FAILED: first failure at position {result.failures[0].position}"
                )
            return 0 if result.ok else 1
        if command == "checkpoint":
            text = msgspec.json.encode(audit.checkpoint()).decode()
            if args.out:
                args.out.write_text(text + "\n")
            print(text)
            return 0
        if command == "replay":
            if args.as_of is not None:
                if args.as_of.tzinfo is None:
                    raise SystemExit("guanai audit: --as-of needs a UTC offset")
                print(msgspec.json.encode(audit.state_as_of(args.id, args.as_of, args.time)).decode())
            else:
                _, records = audit.records(args.id)
                for rec in records:
                    print(msgspec.json.encode(rec).decode())
            return 0
        if command == "export":
            doc = audit.export(args.id, actor_id=args.actor, actor_role="administrator")
            audit.record_access(
                audit.persons_in(args.id, doc["stream"]["type"]),
                actor_id=args.actor,
                actor_role="administrator",
                endpoint="cli audit export",
                request_id="",
            )
            if args.format == "json":
                text = json.dumps(doc, ensure_ascii=False, indent=1)
            else:
                text = render(doc)
            if args.out:
                args.out.write_text(text, encoding="utf-8")
                print(f"guanai audit: wrote {args.out} (digest {doc['digest']})", file=sys.stderr)
            else:
                print(text)
            return 0
        if command == "adopt":
            count = adopt(database_url, app.recorder.key)
            print(f"guanai audit: chained {count:,} events written before the chain existed")
            return 0
    except NoSuchStreamError as e:
        print(f"guanai audit: {e}", file=sys.stderr)
        return 2
    except ChainError as e:
        print(f"guanai audit: {e}", file=sys.stderr)
        return 2
    finally:
        app.close()
    return 2
