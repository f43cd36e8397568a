"""Proofs an outside party checks (issue 18): what they cost to serve, how big they are, and what
keeping the Merkle tree adds to storing events, for each crypto suite, in one run.

    python -m bench.proofs [--events 1000000] [--samples 1000] [--writers 4] [--commands 400]
                           [--rounds 2] [--suites international,gm] [--database-url URL]

Per suite:
1. Writes with the tree kept vs not: the same command workload as ``bench.audit`` (register an
   elder, add and remove risk tags: one event per command) from N threads through
   CareApplication, and the recorder alone (one prepared event per transaction), on a fresh
   database per run, alternating kept/not for ``--rounds`` rounds. The HMAC chain stays on in
   both: the difference is the tree's alone.
2. A store of ``--events`` events (prepared stored events of realistic size, inserted through the
   recorder with the tree in batches of 1,000; the insert rate is printed), then at that size:
   inclusion proofs of random leaves against the full tree and consistency proofs from random
   older sizes, each read from the stored nodes (``Tree.inclusion`` / ``Tree.consistency``,
   one query each) and checked by the standalone verifier: p50/p99 of serving and of checking,
   and the proof's size (hashes x 32 bytes; JSON hex is twice that).
3. Checkpoint signing (the tree's root at that size read from the stored nodes, then signed)
   and signature verification: p50/p99.

Uses the PostgreSQL at ``--database-url`` (default: the machine's). Every database made here is
dropped at the end. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from eventsourcing.persistence import StoredEvent

from application.care import CareApplication
from bench.audit import meta, person_kwargs, register, threaded
from bench.common import (
    DEFAULT_SERVER_URL,
    SUMMARY_HEADERS,
    Summary,
    code_version,
    percentile,
    print_table,
    scratch_database,
    server_facts,
)
from domain.org_unit import OrgUnit
from domain.vocabulary import OrgLevel, RiskTag
from guanai import bootstrap
from guanai.bootstrap import Process
from infrastructure import merkle, verifier
from infrastructure.settings import load_settings
from infrastructure.suites import suite

KEY = "bench-proofs-chain-key-" + "b" * 32


def open_app(url: str, suite_name: str, tree: bool, pool: int = 8) -> CareApplication:
    settings = load_settings({**os.environ, "GUANAI_CHAIN_KEY": KEY, "GUANAI_CRYPTO_SUITE": suite_name})
    return bootstrap.care_application(settings, Process.CLI, url, pool_size=pool, keep_tree=tree)


def make_village(app: CareApplication) -> OrgUnit:
    base = f"{random.randrange(10**6):06d}"
    county = app.register_org_unit(code=base + "000000", name="县", level=OrgLevel.COUNTY, parent_id=None, meta=meta())
    town = app.register_org_unit(
        code=base + "101000", name="镇", level=OrgLevel.TOWNSHIP, parent_id=county.id, meta=meta()
    )
    village = app.register_org_unit(
        code=base + "101001", name="村", level=OrgLevel.VILLAGE, parent_id=town.id, meta=meta()
    )
    return app.load(OrgUnit, village.id)


# ---- 1. writes with the tree kept and not ---------------------------------------------------------


def command_writes(url: str, suite_name: str, tree: bool, writers: int, commands: int) -> Summary:
    app = open_app(url, suite_name, tree)
    try:
        village = make_village(app)

        def job(n: int, lat: list[float]) -> None:
            rng = random.Random(n)
            for _ in range(commands // 4):
                kw = person_kwargs(rng, village)
                pid = kw["id"]
                steps: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = [
                    (app.register_person, (), {"village_id": village.id, **kw}),
                    (app.add_risk_tag, (pid, RiskTag.ADVANCED_AGE), {}),
                    (app.add_risk_tag, (pid, RiskTag.DIBAO), {}),
                    (app.remove_risk_tag, (pid, RiskTag.LIVING_ALONE), {}),
                ]
                for command, args, kwargs in steps:
                    t = time.perf_counter()
                    command(*args, meta=meta(), **kwargs)
                    lat.append(time.perf_counter() - t)

        return threaded(writers, job)
    finally:
        app.close()


def recorder_writes(url: str, suite_name: str, tree: bool, writers: int, count: int) -> Summary:
    app = open_app(url, suite_name, tree)
    try:
        village = make_village(app)
        rng = random.Random(1)
        prepared = [
            [app.mapper.to_stored_event(register(village, meta(), rng).collect_events()[0]) for _ in range(count)]
            for _ in range(writers)
        ]

        def job(n: int, lat: list[float]) -> None:
            for stored in prepared[n]:
                t = time.perf_counter()
                app.recorder.insert_events([stored])
                lat.append(time.perf_counter() - t)

        return threaded(writers, job)
    finally:
        app.close()


def bench_writes(server: str, suite_name: str, writers: int, commands: int, rounds: int) -> None:
    rows: list[list[Any]] = []
    rates: dict[tuple[str, bool], list[float]] = {}
    for r in range(rounds):
        for tree in (True, False) if r % 2 == 0 else (False, True):
            for kind, run in (("commands", command_writes), ("recorder", recorder_writes)):
                with scratch_database(server, "guanai_bench_proofs") as url:
                    s = run(url, suite_name, tree, writers, commands)
                s.name = f"{kind}{', 1 event/tx' if kind == 'recorder' else ''}, tree {'kept' if tree else 'not kept'} (round {r + 1})"
                rows.append(s.row())
                rates.setdefault((kind, tree), []).append(s.throughput)
    print_table(
        SUMMARY_HEADERS,
        rows,
        title=f"{suite_name}: writes with the tree kept and not ({writers} threads, one event per command)",
    )
    summary = []
    for kind in ("commands", "recorder"):
        kept, without = statistics.median(rates[kind, True]), statistics.median(rates[kind, False])
        summary.append([kind, f"{kept:.0f}", f"{without:.0f}", f"{100 * (without - kept) / without:.1f}%"])
    print_table(["median over rounds", "tree kept /s", "tree not kept /s", "cost of the tree"], summary)


# ---- 2. and 3. proofs and checkpoints at size ------------------------------------------------------


def fill(app: CareApplication, count: int, batch: int = 1_000) -> float:
    """``count`` stored events of realistic size (a registered elder's state, ~1 KB) through the
    recorder, with the tree; returns the seconds it took."""
    topic = "domain.person:Person.Registered"
    state = b'{"kind":"elder","sealed":"' + secrets.token_hex(400).encode() + b'"}'
    started, last, written = time.perf_counter(), time.monotonic(), 0
    while written < count:
        n = min(batch, count - written)
        app.recorder.insert_events([StoredEvent(uuid.uuid4(), 1, topic, state) for _ in range(n)])
        written += n
        if time.monotonic() - last > 15:
            last = time.monotonic()
            print(f"  stored {written:,} of {count:,} events", file=sys.stderr, flush=True)
    return time.perf_counter() - started


def ms(values: list[float], p: float) -> str:
    return f"{percentile(values, p) * 1000:.2f}"


def bench_proofs(server: str, suite_name: str, events: int, samples: int) -> None:
    the_suite = suite(suite_name)
    h = the_suite.tree_hash
    with scratch_database(server, "guanai_bench_proofs") as url:
        app = open_app(url, suite_name, tree=True, pool=2)
        try:
            took = fill(app, events)
        finally:
            app.close()
        tree = merkle.Tree(the_suite)
        rng = random.Random(11)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            sizes = conn.execute(
                "SELECT pg_size_pretty(pg_total_relation_size('guanai_events')), "
                "pg_size_pretty(pg_total_relation_size('guanai_events_tree')), "
                "(SELECT count(*) FROM guanai_events_tree)"
            ).fetchone()
            size = tree.size(conn)
            root = tree.root(conn, size)
            serve_inc, check_inc, inc_bytes = [], [], []
            for _ in range(samples):
                index = rng.randrange(size)
                t = time.perf_counter()
                proof = tree.inclusion(conn, index, size)
                serve_inc.append(time.perf_counter() - t)
                leaf = conn.execute(
                    "SELECT hash FROM guanai_events_tree WHERE level = 0 AND idx = %s", (index,)
                ).fetchone()[0]
                hexed = [p.hex() for p in proof]
                t = time.perf_counter()
                verifier.verify_inclusion(h, index, size, bytes(leaf), hexed, root)
                check_inc.append(time.perf_counter() - t)
                inc_bytes.append(32 * len(proof))
            serve_con, check_con, con_bytes = [], [], []
            for _ in range(samples):
                old = rng.randrange(1, size)
                t = time.perf_counter()
                proof = tree.consistency(conn, old, size)
                serve_con.append(time.perf_counter() - t)
                old_root = tree.root(conn, old)
                hexed = [p.hex() for p in proof]
                t = time.perf_counter()
                verifier.verify_consistency(h, old, size, old_root, root, hexed)
                check_con.append(time.perf_counter() - t)
                con_bytes.append(32 * len(proof))
            key = the_suite.new_signing_key("bench")
            signing, verifying = [], []
            for _ in range(max(20, samples // 10)):
                t = time.perf_counter()
                cp = merkle.sign_checkpoint(key, "guanai/bench", size, tree.root(conn, size))
                signing.append(time.perf_counter() - t)
                t = time.perf_counter()
                verifier.verify_checkpoint(cp, key.public)
                verifying.append(time.perf_counter() - t)
    print(
        f"\n{suite_name}: {size:,} events stored with the tree in {took:.0f} s ({size / took:,.0f} events/s, "
        f"batches of 1,000); events table {sizes[0]}, tree table {sizes[1]} ({sizes[2]:,} rows)"
    )
    rows = [
        ["inclusion proof: serve (read nodes, fold)", samples, ms(serve_inc, 50), ms(serve_inc, 99), max(inc_bytes)],
        ["inclusion proof: check (verifier.py)", samples, ms(check_inc, 50), ms(check_inc, 99), ""],
        ["consistency proof: serve", samples, ms(serve_con, 50), ms(serve_con, 99), max(con_bytes)],
        ["consistency proof: check (verifier.py)", samples, ms(check_con, 50), ms(check_con, 99), ""],
        ["checkpoint: read root + sign", len(signing), ms(signing, 50), ms(signing, 99), ""],
        ["checkpoint: verify signature", len(verifying), ms(verifying, 50), ms(verifying, 99), ""],
    ]
    print_table(["at " + f"{size:,} events", "samples", "p50 ms", "p99 ms", "max proof bytes"], rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--samples", type=int, default=1_000)
    p.add_argument("--writers", type=int, default=4)
    p.add_argument("--commands", type=int, default=400, help="commands per writer thread in each write run")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--suites", default="international,gm")
    p.add_argument("--database-url", default=DEFAULT_SERVER_URL)
    p.add_argument("--skip-writes", action="store_true")
    args = p.parse_args()
    print(f"bench.proofs at {code_version()}; {server_facts(args.database_url)}")
    for name in args.suites.split(","):
        if not args.skip_writes:
            bench_writes(args.database_url, name, args.writers, args.commands, args.rounds)
        if args.events:  # --events 0: the writes alone
            bench_proofs(args.database_url, name, args.events, args.samples)


if __name__ == "__main__":
    main()
