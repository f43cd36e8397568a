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
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec

from infrastructure.settings import Settings


def add_parser(sub: Any) -> None:
    a = sub.add_parser("audit", help="verify the audit chain, take checkpoints, replay and export case histories")
    cmds = a.add_subparsers(dest="audit_command", metavar="AUDIT_COMMAND", required=True)
    v = cmds.add_parser("verify", help="check the chain; exit 1 naming the first position that fails")
    v.add_argument("--from", dest="start", type=int, default=1, help="first position (default 1)")
    v.add_argument("--to", dest="end", type=int, help="last position (default: the newest)")
    v.add_argument("--access-log", action="store_true", help="check the access log's chain instead of the events'")
    v.add_argument("--checkpoint", type=Path, help="a file from `guanai audit checkpoint`: also check the log still matches it")
    v.add_argument("--json", action="store_true", help="print the whole result as JSON")
    c = cmds.add_parser("checkpoint", help="print the newest entry of each chain, for an outside party to keep")
    c.add_argument("--out", type=Path, help="write to this file as well")
    r = cmds.add_parser("replay", help="a stream's events, or its state as of an instant")
    r.add_argument("id", type=UUID)
    r.add_argument("--as-of", type=datetime.fromisoformat, help="instant with UTC offset, e.g. 2026-03-01T09:30:00+08:00")
    r.add_argument("--time", choices=("recorded", "occurred"), default="recorded")
    e = cmds.add_parser("export", help="a case history as a printable HTML document (Chinese) or JSON")
    e.add_argument("id", type=UUID)
    e.add_argument("--format", choices=("html", "json"), default="html")
    e.add_argument("--out", type=Path, help="file to write (default: standard output)")
    e.add_argument("--actor", default="cli-operator", help="who exports (recorded in the document and the access log)")
    cmds.add_parser("adopt", help="chain a store written before the chain existed (once)")


def _print_progress(position: int, end: int, checked: int) -> None:
    print(f"  verified {checked:,} rows, at position {position:,} of {end:,}", file=sys.stderr, flush=True)


def _load_checkpoint(path: Path, log: str) -> Any:
    from infrastructure.verify import Checkpoint

    held = msgspec.json.decode(path.read_bytes(), type=list[Checkpoint] | Checkpoint)
    for cp in held if isinstance(held, list) else [held]:
        if cp.log == log:
            return cp
    raise SystemExit(f"guanai audit: {path} holds no checkpoint of the {log} log")


def run(settings: Settings, database_url: str, args: argparse.Namespace) -> int:
    from application.audit import Audit, NoSuchStreamError
    from application.care import CareApplication, event_store_env
    from infrastructure.chain import ChainError, adopt

    app = CareApplication(event_store_env(database_url, pool_size=2))
    audit = Audit(app, database_url)
    try:
        command = args.audit_command
        if command == "verify":
            log = "access" if args.access_log else "events"
            held = _load_checkpoint(args.checkpoint, log) if args.checkpoint else None
            started = time.monotonic()
            if log == "access":
                result = audit.verify_access_log(start=args.start, end=args.end, checkpoint=held)
            else:
                result = audit.verify(start=args.start, end=args.end, checkpoint=held, progress=_print_progress)
            if args.json:
                print(msgspec.json.encode(result).decode())
            else:
                rate = result.checked / max(time.monotonic() - started, 1e-9)
                print(f"{log} log, positions {result.start}..{result.end}: {result.checked:,} rows checked ({rate:,.0f}/s)")
                for f in result.failures:
                    print(f"  FAIL at {f.position}: {f.kind}: {f.detail}")
                if result.failure_count > len(result.failures):
                    print(f"  ... {result.failure_count - len(result.failures)} more")
                if held is not None:
                    print(f"checkpoint at {held.position} ({held.at.isoformat()}): {'matches' if result.ok else 'see above'}")
                head = result.head
                print("OK: the chain verifies" + (f" up to {head.position}, digest {head.digest}" if head else "") if result.ok
                      else f"FAILED: first failure at position {result.failures[0].position}")
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
            audit.record_access(audit.persons_in(args.id, doc["stream"]["type"]), actor_id=args.actor,
                                actor_role="administrator", endpoint="cli audit export", request_id="")
            if args.format == "json":
                text = json.dumps(doc, ensure_ascii=False, indent=1)
            else:
                from guanai.cli.audit_html import render

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
