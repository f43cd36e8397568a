"""A device's backlog of visit logs in one request (POST /visit-logs/batch), against the same logs
one request each and plain PostgreSQL INSERTs, in one run.

    python -m bench.visit_batches [--batch 500] [--batches 4] [--singles 300]

Creates a scratch database, starts ``guanai api`` and ``guanai projector`` as separate
processes, and seeds a township through the command side as ``bench.visits`` does (elders in
one-to-N pairings of ten, all held with one volunteer group, this week's and next week's tasks
scheduled). Then, one client (a volunteer of the group, as a phone back in coverage):

- **Backlogs**: ``batches`` requests of ``batch`` realistic visit logs each (findings, blood
  pressure, services), each log completing one of this week's tasks. Reported: logs per second
  from sending the request to its answer, and to the views having applied every event of it
  (end to end: a supervisor's page shows the visits); and the time from the answer to the views
  applied (the projector's share), also as a ratio to the time to the answer.
- **The same backlog again**: one batch sent again whole (as a phone that lost the answer):
  every item must answer 200 with its first answer's body, and nothing may be written.
- **One log a request**: ``singles`` logs through ``POST /visits/{id}/complete``, back to back.

Baselines in the same run, one connection: single-row INSERT transactions of a JSONB payload as
big as a stored ``VisitLog.Recorded`` event, and the same rows ``batch`` to a transaction with
the event store's LOCK TABLE and NOTIFY (what one batch's insert asks of PostgreSQL at least).
Exits 1 on any error.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from bench.common import (
    DEFAULT_SERVER_URL,
    SUMMARY_HEADERS,
    CpuMeter,
    Summary,
    code_version,
    guanai_server,
    insert_baseline,
    print_table,
    scratch_database,
    server_facts,
    sigterm_as_interrupt,
)
from bench.visits import CHAIN_KEY, CST, log_body, log_payload, max_position, seed, tokens


def batch_baseline(database_url: str, *, batch: int, batches: int, payload: dict[str, Any]) -> Summary:
    """``batches`` transactions of ``batch`` rows each (LOCK TABLE, NOTIFY, one multi-row INSERT)."""
    table = f"bench_batch_{uuid.uuid4().hex[:8]}"
    ident = sql.Identifier(table)
    latencies = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE TABLE {} (id bigserial PRIMARY KEY, payload jsonb NOT NULL)").format(ident))
        try:
            started = time.perf_counter()
            for _ in range(batches):
                t0 = time.perf_counter()
                rows = [Jsonb({**payload, "id": str(uuid.uuid4())}) for _ in range(batch)]
                with conn.transaction():
                    conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(ident))
                    conn.execute(sql.SQL("NOTIFY {}").format(ident))
                    conn.execute(
                        sql.SQL("INSERT INTO {} (payload) SELECT * FROM unnest(%s::jsonb[])").format(ident), (rows,)
                    )
                latencies.append(time.perf_counter() - t0)
            elapsed = time.perf_counter() - started
        finally:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
    return Summary(f"INSERT {batch} rows a transaction + LOCK + NOTIFY, 1 conn", elapsed, latencies)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.visit_batches", description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=500, help="visit logs per batch request (default 500)")
    p.add_argument("--batches", type=int, default=4, help="batch requests sent (default 4)")
    p.add_argument("--singles", type=int, default=300, help="logs sent one request each (default 300)")
    p.add_argument("--baseline-requests", type=int, default=3000, help="single-row INSERT transactions (default 3000)")
    p.add_argument("--database-url", default=DEFAULT_SERVER_URL, help="PostgreSQL server (a scratch database on it)")
    args = p.parse_args(argv)
    sigterm_as_interrupt()
    facts = server_facts(args.database_url)
    failures: list[str] = []
    rng = random.Random(19)
    try:
        with (
            scratch_database(args.database_url, prefix="guanai_bench_batches") as database_url,
            guanai_server(database_url, extra_env={"GUANAI_CHAIN_KEY": CHAIN_KEY}) as server,
        ):
            t0 = time.monotonic()
            seeded = seed(database_url, args.batch * args.batches + args.singles, 2)
            server.wait_for_views()
            print(f"seeded {len(seeded.due_now)} due in {time.monotonic() - t0:.0f}s", file=sys.stderr)
            member = seeded.members[0]
            auth = tokens(server, [member], seeded.village)[0]
            due = list(seeded.due_now)
            http = httpx.Client(base_url=server.base_url, headers=auth, timeout=300)
            http.get("/health")
            answered, applied = Summary("batch request, to its answer", 0), Summary("batch, to the views applied", 0)
            # From a batch's answer to its views applied: the projector's share of end to end.
            after = Summary("batch, from its answer to the views applied", 0)
            sent: list[tuple[dict[str, Any], dict[str, Any]]] = []
            meter = CpuMeter({"api": server.api.pid, "projector": server.projector.pid})
            before = max_position(server)
            with meter:
                started = time.perf_counter()
                for _ in range(args.batches):
                    tasks, due = due[: args.batch], due[args.batch :]
                    body = {
                        "items": [{**log_body(t, rng), "task_id": t["id"], "helper_ids": [str(member)]} for t in tasks]
                    }
                    t1 = time.perf_counter()
                    r = http.post("/visit-logs/batch", json=body)
                    answered.latencies.append(time.perf_counter() - t1)
                    if r.status_code != 200 or r.json()["recorded"] != len(tasks):
                        failures.append(f"batch: HTTP {r.status_code}: {r.text[:300]}")
                        continue
                    sent.append((body, r.json()))
                    while (
                        http.get("/visit-logs", params={"limit": 1, "min_position": r.json()["position"]}).status_code
                        == 503  # views still catching up after the read's wait: ask again
                    ):
                        pass
                    applied.latencies.append(time.perf_counter() - t1)
                    after.latencies.append(applied.latencies[-1] - answered.latencies[-1])
                answered.elapsed = applied.elapsed = after.elapsed = time.perf_counter() - started
            events = max_position(server) - before
            logs = args.batch * len(sent)
            again = Summary("the same batch again (all 200)", 0)
            if sent:
                body, first = sent[0]
                position = max_position(server)
                t1 = time.perf_counter()
                r = http.post("/visit-logs/batch", json=body)
                again.latencies.append(time.perf_counter() - t1)
                again.elapsed = again.latencies[0]
                items = r.json().get("items", []) if r.status_code == 200 else []
                if [i["status"] for i in items] != [200] * len(first["items"]) or [i["body"] for i in items] != [
                    i["body"] for i in first["items"]
                ]:
                    failures.append(f"resent batch: HTTP {r.status_code}, answers differ from the first")
                if max_position(server) != position:
                    failures.append("the resent batch wrote events")
            singles = Summary("one log a request (201)", 0)
            single_meter = CpuMeter({"api": server.api.pid, "projector": server.projector.pid})
            with single_meter:
                started = time.perf_counter()
                for task in due[: args.singles]:
                    body = {**log_body(task, rng), "helper_ids": [str(member)]}
                    t1 = time.perf_counter()
                    r = http.post(f"/visits/{task['id']}/complete", json=body)
                    if r.status_code == 201:
                        singles.latencies.append(time.perf_counter() - t1)
                    else:
                        singles.errors += 1
                        failures.append(f"single log: HTTP {r.status_code}: {r.text[:200]}")
                singles.elapsed = time.perf_counter() - started
            http.close()
            payload = log_payload(database_url)
            base_one = insert_baseline(
                database_url, clients=1, requests=args.baseline_requests, payload=payload,
                name="INSERT baseline, 1 conn (a transaction a row)",
            )  # fmt: skip
            base_batch = batch_baseline(database_url, batch=args.batch, batches=20, payload=payload)
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    print(f"\n## Visit log batches, {datetime.now(CST):%Y-%m-%d %H:%M} (UTC+8)\n")
    print(f"Command: `python -m bench.visit_batches {' '.join(sys.argv[1:])}`".rstrip())
    print(f"Code: {code_version()}; machine: {facts}; baseline rows carry {payload['target_bytes']} bytes of JSONB")
    print_table(SUMMARY_HEADERS, [s.row() for s in (answered, applied, after, again, singles, base_one, base_batch)])
    # Requests go one after another: the time to the answers is the sum of their latencies, the
    # time to the views applied the whole phase (each batch waits for its own before the next).
    per_log = sum(answered.latencies) / max(logs, 1)
    views_per_log = applied.elapsed / max(logs, 1)
    batch_rows = base_batch.count * args.batch / base_batch.elapsed
    rows = [
        ["batches, to the answer", logs, f"{1 / per_log:.0f}", f"{events / sum(answered.latencies):.0f}"],
        ["batches, to the views applied (end to end)", logs, f"{1 / views_per_log:.0f}", ""],
        ["one log a request", singles.count, f"{singles.throughput:.0f}", ""],
        [base_one.name, base_one.count, f"{base_one.throughput:.0f}", f"{base_one.throughput:.0f}"],
        [base_batch.name, base_batch.count * args.batch, f"{batch_rows:.0f}", f"{batch_rows:.0f}"],
        ["ratio batches end to end / INSERT a row", "", f"{1 / views_per_log / base_one.throughput:.2f}", ""],
        ["ratio batches to the answer / INSERT a row", "", f"{1 / per_log / base_one.throughput:.2f}", ""],
        [
            f"ratio batches end to end / INSERT {args.batch} rows a transaction",
            "",
            f"{1 / views_per_log / batch_rows:.3f}",
            "",
        ],
        [
            "time from the answers to the views applied / time to the answers",
            "",
            f"{sum(after.latencies) / max(sum(answered.latencies), 1e-9):.2f}",
            "",
        ],
        ["ratio batches / one log a request", "", f"{1 / views_per_log / max(singles.throughput, 1e-9):.1f}", ""],
    ]
    print_table(["", "logs (rows)", "logs (rows) per second", "events per second"], rows, title="Against the baselines")
    u, s = meter.used, single_meter.used
    print_table(
        ["phase", "api", "projector", "postgres", "load gen", "other"],
        [
            ["batches", *(f"{u[k] / max(logs, 1) * 1000:.2f}" for k in ("api", "projector", "postgres", "load_generator", "other"))],
            ["one log a request", *(f"{s[k] / max(singles.count, 1) * 1000:.2f}" for k in ("api", "projector", "postgres", "load_generator", "other"))],
        ],
        title="CPU ms per log by process",
    )  # fmt: skip
    for failure in failures[:10]:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
