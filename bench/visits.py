"""Visit claims under contention and visit logs through the HTTP API, against plain PostgreSQL
INSERTs, in one run.

    python -m bench.visits [--tasks 200] [--contenders 20] [--logs 2000] [--clients 8]

Creates a scratch database, starts ``guanai api`` and ``guanai projector`` as separate
processes, and seeds a township (in this process, through CareApplication): ``logs + tasks``
elders in one-to-N pairings of ten, every pairing held with one volunteer group of ``contenders``
members, and each pairing's visit tasks scheduled (this week's and next week's).

- **Claims under contention**: for each of ``tasks`` tasks (this week's, of people whose visits
  are not logged below: a task is claimed only while its window is open), every member of the
  group asks for it at the same instant (``contenders`` requests, each its own client and
  token). Exactly one must win (200), the others get 409 naming the holder; a task with
  another outcome counts as an error. Reported: attempts and wins per second, latencies.
- **Visit logs**: ``clients`` members log this week's visits back to back, each a realistic
  走访日志 (findings, blood pressure, services, follow-up) completing one task; then a share of
  them is sent again, as phones that lost the answer do (200, nothing written).

The baselines run on the same server in the same run: single-row INSERT transactions of a
JSONB payload the size of a stored ``VisitLog.Recorded`` event, with as many connections as
contenders and as clients, and with the event store's per-insert LOCK TABLE and NOTIFY.
Prints Markdown tables; exits 1 on any error.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import psycopg

from bench.common import (
    DEFAULT_SERVER_URL,
    SUMMARY_HEADERS,
    CpuMeter,
    GuanaiServer,
    Summary,
    code_version,
    guanai_server,
    insert_baseline,
    make_care,
    print_table,
    scratch_database,
    server_facts,
    sigterm_as_interrupt,
)
from bench.county import CST, SeededCounty, bearer, seed_county

CHAIN_KEY = secrets.token_urlsafe(48)  # the API and this seeding process both write events
NOTES = [
    "左腿疼，药快吃完了",
    "精神不错，和邻居打牌",
    "想念在外打工的儿子",
    "屋顶漏雨，需要修缮",
    "血压偏高，提醒按时吃药",
]


# ---- the township ------------------------------------------------------------------------------------


def seed(database_url: str, people: int, contenders: int) -> SeededCounty:
    """Through the command side (``bench/county.py``): org units, elders, helpers, one group of
    ``contenders`` members, pairings, tasks."""
    app = make_care(database_url, pool_size=8, env={"GUANAI_CHAIN_KEY": CHAIN_KEY})
    try:
        return seed_county(app, people=people, members=contenders, threads=8)
    finally:
        app.close()


def tokens(server: GuanaiServer, helpers: list[UUID], village: UUID) -> list[dict[str, str]]:
    return [bearer(server.jwt_secret, "volunteer", village, str(h), hours=6) for h in helpers]


def log_body(task: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    visited = max(task["opens_at"] + timedelta(seconds=1), datetime.now(UTC) - timedelta(minutes=rng.randrange(1, 600)))
    return {
        "id": str(uuid.uuid4()),
        "occurred_at": visited.astimezone(CST).isoformat(),
        "mode": rng.choice(["home_visit", "home_visit", "phone_video"]),
        "findings": {
            "living_conditions": rng.choice(["good", "adequate", "poor"]), "health": rng.choice(["well", "chronic_stable", "ill"]),
            "mood": rng.choice(["good", "calm", "low"]), "safety_risks": rng.sample(["fall", "fire", "medication"], k=rng.randrange(2)),
            "needs": rng.sample(["daily_care", "medical_care", "family_contact"], k=rng.randrange(2)),
            "blood_pressure": {"systolic": rng.randrange(110, 170), "diastolic": rng.randrange(65, 100)},
            "notes": rng.choice(NOTES),
        },
        "services": ["daily_life_care", "health_care"],
        "service_items": rng.sample(["cleaning", "laundry", "medicine_delivery"], k=1) + ["blood_pressure"],
        "follow_up_needed": rng.random() < 0.15,
        "follow_up_notes": "下周请家庭医生上门" if rng.random() < 0.15 else "",
    }  # fmt: skip


# ---- the phases -----------------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    clients: int
    summaries: list[Summary] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    events: int = 0


async def claims_phase(server: GuanaiServer, seeded: SeededCounty, tasks: list[UUID]) -> Phase:
    """Each task asked for by every member at the same instant; one must win."""
    phase = Phase(f"claims, {len(seeded.members)} at once per task", len(seeded.members))
    clients = [
        httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=60)
        for headers in tokens(server, seeded.members, seeded.village)
    ]
    won, lost, waves = (
        Summary("claim won (200)", 0),
        Summary("claim lost (409)", 0),
        Summary("task settled (all answers)", 0),
    )
    try:
        await asyncio.gather(*(c.get("/health") for c in clients))  # connections open before the clock
        meter = CpuMeter({"api": server.api.pid, "projector": server.projector.pid})
        with meter:
            started = time.perf_counter()
            for task in tasks:
                t0 = time.perf_counter()

                async def claim(
                    c: httpx.AsyncClient, task: UUID = task, t0: float = t0
                ) -> tuple[httpx.Response, float]:
                    r = await c.post(f"/visits/{task}/claim", json={})
                    return r, time.perf_counter() - t0

                answers = await asyncio.gather(*(claim(c) for c in clients))
                waves.latencies.append(time.perf_counter() - t0)
                codes = sorted(r.status_code for r, _ in answers)
                if codes.count(200) != 1 or codes.count(409) != len(clients) - 1:
                    phase.failures.append(f"task {task}: answers {codes}")
                for r, latency in answers:
                    (won if r.status_code == 200 else lost).latencies.append(latency)
            elapsed = time.perf_counter() - started
        phase.cpu = meter.used
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    for s in (won, lost, waves):
        s.elapsed = elapsed
    waves.errors = len(phase.failures)
    attempts = Summary("claim attempts", elapsed, won.latencies + lost.latencies)
    phase.summaries = [attempts, won, lost, waves]
    return phase


async def logs_phase(server: GuanaiServer, seeded: SeededCounty, count: int, clients: int, resend: float) -> Phase:
    """Members log this week's visits back to back; then some logs are sent again."""
    phase = Phase(f"visit logs, {clients} clients", clients)
    queue = list(seeded.due_now[:count])
    members = seeded.members[:clients]
    sent: list[tuple[int, str, dict[str, Any], dict[str, Any]]] = []
    first, again = Summary("visit log (201)", 0), Summary("same log again (200)", 0)
    http = [
        httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=60)
        for headers in tokens(server, members, seeded.village)
    ]

    async def worker(n: int, rng: random.Random) -> None:
        while queue:
            task = queue.pop()
            body = {**log_body(task, rng), "helper_ids": [str(members[n])]}
            t0 = time.perf_counter()
            r = await http[n].post(f"/visits/{task['id']}/complete", json=body)
            if r.status_code == 201:
                first.latencies.append(time.perf_counter() - t0)
                sent.append((n, task["id"], body, r.json()))
            else:
                first.errors += 1
                phase.failures.append(f"log: HTTP {r.status_code}: {r.text[:200]}")

    try:
        await asyncio.gather(*(c.get("/health") for c in http))
        before = max_position(server)
        meter = CpuMeter({"api": server.api.pid, "projector": server.projector.pid})
        with meter:
            started = time.perf_counter()
            await asyncio.gather(*(worker(n, random.Random(n)) for n in range(clients)))
            first.elapsed = time.perf_counter() - started
        phase.cpu = meter.used
        phase.events = max_position(server) - before
        resends = random.Random(7).sample(sent, k=int(len(sent) * resend))
        started = time.perf_counter()

        async def resend_one(item: tuple[int, str, dict[str, Any], dict[str, Any]]) -> None:
            n, task_id, body, answer = item
            t0 = time.perf_counter()
            r = await http[n].post(f"/visits/{task_id}/complete", json=body)
            if r.status_code == 200 and r.json() == answer:
                again.latencies.append(time.perf_counter() - t0)
            else:
                again.errors += 1
                phase.failures.append(
                    f"resend: HTTP {r.status_code}, same body: {r.status_code == 200 and r.json() == answer}"
                )

        for i in range(0, len(resends), clients):
            await asyncio.gather(*(resend_one(item) for item in resends[i : i + clients]))
        again.elapsed = time.perf_counter() - started
        if max_position(server) != before + phase.events:
            phase.failures.append("a resent log wrote events")
    finally:
        await asyncio.gather(*(c.aclose() for c in http))
    phase.summaries = [first, again]
    return phase


def max_position(server: GuanaiServer) -> int:
    return int(server.health()["database"]["position"])


def log_payload(database_url: str) -> dict[str, Any]:
    """A JSONB payload as big as the average stored VisitLog.Recorded event."""
    with psycopg.connect(database_url) as conn:
        size = (
            conn.execute(
                "SELECT avg(octet_length(state))::int FROM guanai_events WHERE topic LIKE %s", ("%VisitLog.Recorded",)
            ).fetchone()[0]
            or 1500
        )
    return {"note": "x" * size, "target_bytes": size}


# ---- the run ----------------------------------------------------------------------------------------------


def report(claims: Phase, logs: Phase, baselines: dict[str, Summary], payload_bytes: int, facts: str) -> None:
    print(f"\n## Visit claims and visit logs, {datetime.now(CST):%Y-%m-%d %H:%M} (UTC+8)\n")
    print(f"Command: `python -m bench.visits {' '.join(sys.argv[1:])}`".rstrip())
    print(f"Code: {code_version()}; machine: {facts}; baseline rows carry {payload_bytes} bytes of JSONB")
    for phase in (claims, logs):
        print_table(SUMMARY_HEADERS, [s.row() for s in phase.summaries], title=phase.name)
    a, w = claims.summaries[0], claims.summaries[1]
    c_base, l_base, lock_base = baselines["contenders"], baselines["clients"], baselines["lock"]
    f = logs.summaries[0]
    rows = [
        ["claim attempts (API)", a.count, f"{a.throughput:.1f}", f"{a.ms(50):.2f}", f"{a.ms(99):.2f}", ""],
        ["claims won (API)", w.count, f"{w.throughput:.1f}", "", "", ""],
        [c_base.name, c_base.count, f"{c_base.throughput:.1f}", f"{c_base.ms(50):.2f}", f"{c_base.ms(99):.2f}", ""],
        ["ratio attempts / baseline", "", f"{a.throughput / c_base.throughput:.3f}", "", "", ""],
        [
            "visit logs (API)",
            f.count,
            f"{f.throughput:.1f}",
            f"{f.ms(50):.2f}",
            f"{f.ms(99):.2f}",
            f"{logs.events / f.elapsed:.1f}",
        ],
        [l_base.name, l_base.count, f"{l_base.throughput:.1f}", f"{l_base.ms(50):.2f}", f"{l_base.ms(99):.2f}", ""],
        [
            lock_base.name,
            lock_base.count,
            f"{lock_base.throughput:.1f}",
            f"{lock_base.ms(50):.2f}",
            f"{lock_base.ms(99):.2f}",
            "",
        ],
        ["ratio logs / baseline", "", f"{f.throughput / l_base.throughput:.3f}", "", "", ""],
    ]
    print_table(["phase", "requests", "per second", "p50 ms", "p99 ms", "events/s"], rows, title="Against the baseline")
    cpu_rows = []
    for phase, n in ((claims, a.count), (logs, f.count)):
        u = phase.cpu
        cpu_rows.append(
            [
                phase.name,
                *(
                    f"{u[k] / max(n, 1) * 1000:.2f}"
                    for k in ("api", "projector", "postgres", "load_generator", "other")
                ),
            ]
        )
    print_table(
        ["phase", "api", "projector", "postgres", "load gen", "other"], cpu_rows, title="CPU ms per request by process"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.visits", description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=200, help="tasks claimed under contention (default 200)")
    p.add_argument("--contenders", type=int, default=20, help="members asking for each task at once (default 20)")
    p.add_argument("--logs", type=int, default=2000, help="visit logs posted (default 2000; also the elders seeded)")
    p.add_argument(
        "--clients", type=int, default=8, help="concurrent clients posting logs, and baseline connections (default 8)"
    )
    p.add_argument("--resend", type=float, default=0.1, help="share of logs sent again (default 0.1)")
    p.add_argument(
        "--baseline-requests", type=int, default=5000, help="INSERT transactions per baseline (default 5000)"
    )
    p.add_argument(
        "--database-url", default=DEFAULT_SERVER_URL, help="PostgreSQL server (a scratch database is made on it)"
    )
    args = p.parse_args(argv)
    sigterm_as_interrupt()
    facts = server_facts(args.database_url)
    # Winners are spread over the group: the bound on open claims would refuse later wins.
    extra_env = {"GUANAI_CHAIN_KEY": CHAIN_KEY, "GUANAI_VISIT_CLAIM_LIMIT": str(args.tasks + 1)}
    try:
        with (
            scratch_database(args.database_url, prefix="guanai_bench_visits") as database_url,
            guanai_server(database_url, extra_env=extra_env) as server,
        ):
            t0 = time.monotonic()
            # This week's tasks of as many more people are claimed: a task is claimed only in its window.
            seeded = seed(database_url, args.logs + args.tasks, args.contenders)
            server.wait_for_views()
            print(
                f"seeded {len(seeded.due_now)} due, {len(seeded.ahead)} ahead in {time.monotonic() - t0:.0f}s",
                file=sys.stderr,
            )
            contended = [UUID(t["id"]) for t in seeded.due_now[args.logs : args.logs + args.tasks]]
            claims = asyncio.run(claims_phase(server, seeded, contended))
            print(f"{claims.name}: {claims.summaries[0].throughput:.1f} attempts/s", file=sys.stderr)
            logs = asyncio.run(logs_phase(server, seeded, args.logs, args.clients, args.resend))
            print(f"{logs.name}: {logs.summaries[0].throughput:.1f} logs/s", file=sys.stderr)
            payload = log_payload(database_url)
            n = args.baseline_requests
            baselines = {
                "contenders": insert_baseline(database_url, clients=args.contenders, requests=n, payload=payload,
                                              name=f"INSERT baseline, {args.contenders} conns"),
                "clients": insert_baseline(database_url, clients=args.clients, requests=n, payload=payload,
                                           name=f"INSERT baseline, {args.clients} conns"),
                "lock": insert_baseline(database_url, clients=args.clients, requests=n, payload=payload, lock_table=True,
                                        name=f"INSERT + LOCK TABLE + NOTIFY, {args.clients} conns"),
            }  # fmt: skip
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    report(claims, logs, baselines, payload["target_bytes"], facts)
    failures = claims.failures + logs.failures
    for failure in failures[:10]:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures or any(b.errors for b in baselines.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
