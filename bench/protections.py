"""API throughput with the personal-data protections on and off, in one run.

    python -m bench.protections [--clients 8] [--seconds 20] [--rounds 2] [--database-url URL]

"On" is the API as it ships: every request checked against the access table (object-level
checks from the event store, lists narrowed in SQL) and the personal fields of every event
sealed per person (AES-GCM, keys wrapped by the master key). "Off" is the same code with both
switched off: ``bootstrap.api(..., protections=False)``, reachable from code only (no setting turns
the protections off), which stores events unsealed and lets one open guard through. Each round
starts a fresh scratch database and API + projector processes per mode, seeds the same county
(through an administrator, unmeasured), then measures, with scoped tokens as in the field:

- **writes**: a village cadre registers a child with family contacts, a township supervisor
  registers a volunteer, the cadre pairs them, the volunteer logs a visit with findings and
  notes (4 requests an iteration; sealing on every one, object checks on the last three);
- **reads**: a volunteer reads one of their people and their person list, a village cadre reads
  a person of the village, a township supervisor reads a page of 50 of the township's persons,
  and the volunteer reads their person's timeline (5 requests an iteration). The volunteer's
  list asks for one row: unchecked, their page would hold other people's rows, and both modes
  should return the same rows.

Modes alternate within a round (on first in odd rounds) so that drift of a shared machine does
not favour one. The baselines, on the same server in the same run: single-row INSERT
transactions of a person-sized JSONB payload, and primary-key SELECTs of one stored event, with
as many connections as there are clients. Prints Markdown tables; exits 1 if a request failed.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg

from bench.api_ingest import CST, Bodies, seed_county
from bench.common import (
    DEFAULT_NATS_URL,
    DEFAULT_SERVER_URL,
    GuanaiServer,
    Summary,
    code_version,
    guanai_server,
    insert_baseline,
    print_table,
    reachable,
    scratch_database,
    server_facts,
    sigterm_as_interrupt,
    timed_connections,
)

MODES = ("on", "off")
SEED_VILLAGES = 2  # per township, four townships (bench.api_ingest.seed_county)
SEED_PAIRS = 40  # volunteers, each paired one-to-one with a child, before the measured phases


# ---- the unprotected API: started by this module, never by `guanai` ---------------------------


def serve(protections: bool) -> None:
    """Run the API like `guanai api`, with the protections as asked (a child of this benchmark)."""
    import signal

    import uvicorn

    from guanai import bootstrap
    from infrastructure.settings import load_settings

    settings = load_settings()
    assert settings.database_url and settings.jwt_secret, "started by bench.protections with a database and a key"
    app = bootstrap.api(
        settings,
        database_url=settings.database_url,
        nats_url=settings.nats_url,
        jwt_secret=settings.jwt_secret,
        protections=protections,
    )
    signal.signal(signal.SIGTERM, lambda *_: None)  # uvicorn drains, then the process ends
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)


# ---- the field: who acts, on what ---------------------------------------------------------------


@dataclass
class Field:
    """The seeded county as the measured clients see it: villages with their tokens and pairs."""

    server: GuanaiServer
    villages: list[str]
    townships: dict[str, str]  # village -> township
    pairs: list[tuple[str, str, str]] = field(default_factory=list)  # (village, volunteer id, child id)

    def token(self, role: str, org: str, subject: str = "bench") -> str:
        from api.auth import issue_token
        from domain.vocabulary import ActorRole

        return issue_token(
            self.server.jwt_secret, subject=subject, role=ActorRole(role), org_unit_id=uuid.UUID(org),
            ttl=timedelta(hours=6),
        )  # fmt: skip

    def headers(self, role: str, org: str, subject: str = "bench") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, org, subject)}"}


def township_of_villages(server: GuanaiServer, villages: list[str]) -> dict[str, str]:
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {server.token()}"}) as c:
        return {v: c.get(f"/org-units/{v}").raise_for_status().json()["parent_id"] for v in villages}


def seed(server: GuanaiServer, pairs: int) -> Field:
    villages = seed_county(server, server.token(), SEED_VILLAGES)
    f = Field(server, villages, township_of_villages(server, villages))
    bodies = Bodies(4242)
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {server.token()}"}, timeout=60) as c:
        for n in range(pairs):
            village = villages[n % len(villages)]
            child = c.post("/persons", json=bodies.child(village)).raise_for_status().json()["id"]
            helper = c.post("/helpers", json=bodies.helper(village, "volunteer")).raise_for_status().json()["id"]
            c.post(
                "/pairings", json=bodies.pairing("one_to_one", [helper], [child], "weekly", "home_visit")
            ).raise_for_status()
            f.pairs.append((village, helper, child))
    server.wait_for_views()
    return f


# ---- the measured load ------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    mode: str
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def summary(self) -> Summary:
        return Summary(f"{self.name}, protections {self.mode}", self.elapsed, self.latencies, len(self.failures))


async def _call(client: httpx.AsyncClient, phase: Phase, method: str, url: str, **kw: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        r = await client.request(method, url, **kw)
    except httpx.HTTPError as e:
        phase.failures.append(f"{method} {url}: {type(e).__name__}")
        return {}
    if r.status_code >= 300:
        phase.failures.append(f"{method} {url}: HTTP {r.status_code} {r.text[:200]}")
        return {}
    phase.latencies.append(time.perf_counter() - t0)
    return r.json()


def _log_body(bodies: Bodies, pairing: str, person: str) -> dict[str, Any]:
    visited = datetime.now(UTC) - timedelta(minutes=bodies.rng.randrange(10, 600))
    return {
        "id": str(uuid.uuid4()), "pairing_id": pairing, "person_id": person,
        "occurred_at": visited.astimezone(CST).isoformat(), "mode": "home_visit",
        "findings": {
            "living_conditions": "adequate", "health": "chronic_stable", "mood": "calm",
            "blood_pressure": {"systolic": 150, "diastolic": 92}, "notes": f"血压偏高，{bodies.name()}说药快吃完了",
        },
        "services": ["daily_life_care", "health_care"], "follow_up_needed": True,
        "follow_up_notes": "请家庭医生下周上门",
    }  # fmt: skip


async def write_iteration(f: Field, client: httpx.AsyncClient, bodies: Bodies, phase: Phase) -> None:
    village = f.villages[bodies.rng.randrange(len(f.villages))]
    cadre = f.headers("village_cadre", village)
    supervisor = f.headers("township_supervisor", f.townships[village])
    child = await _call(client, phase, "POST", "/persons", json=bodies.child(village), headers=cadre)
    helper = await _call(
        client, phase, "POST", "/helpers", json=bodies.helper(village, "volunteer"), headers=supervisor
    )
    if not child or not helper:
        return
    pairing_body = bodies.pairing("one_to_one", [helper["id"]], [child["id"]], "weekly", "home_visit")
    pairing = await _call(client, phase, "POST", "/pairings", json=pairing_body, headers=cadre)
    if not pairing:
        return
    volunteer = f.headers("volunteer", village, subject=helper["id"])
    await _call(
        client, phase, "POST", "/visit-logs", json=_log_body(bodies, pairing["id"], child["id"]), headers=volunteer
    )


async def read_iteration(f: Field, client: httpx.AsyncClient, bodies: Bodies, phase: Phase) -> None:
    village, helper, child = f.pairs[bodies.rng.randrange(len(f.pairs))]
    volunteer = f.headers("volunteer", village, subject=helper)
    cadre = f.headers("village_cadre", village)
    supervisor = f.headers("township_supervisor", f.townships[village])
    await _call(client, phase, "GET", f"/persons/{child}", headers=volunteer)
    await _call(client, phase, "GET", "/persons", params={"limit": 1}, headers=volunteer)
    await _call(client, phase, "GET", f"/persons/{child}", headers=cadre)
    await _call(
        client, phase, "GET", "/persons", params={"limit": 50, "offset": bodies.rng.randrange(20)}, headers=supervisor
    )
    await _call(client, phase, "GET", f"/persons/{child}/timeline", params={"limit": 20}, headers=volunteer)


Iteration = Callable[[Field, httpx.AsyncClient, Bodies, Phase], Coroutine[Any, Any, None]]


async def drive(f: Field, iteration: Iteration, phase: Phase, clients: int, seconds: float) -> None:
    """One unmeasured iteration per client, then iterations until ``seconds`` have passed."""
    pool = [httpx.AsyncClient(base_url=f.server.base_url, timeout=60) for _ in range(clients)]
    warm = Phase("warm-up", phase.mode)
    try:
        await asyncio.gather(*(iteration(f, c, Bodies(7000 + n), warm) for n, c in enumerate(pool)))
        started = time.perf_counter()

        async def loop(n: int, client: httpx.AsyncClient) -> None:
            bodies = Bodies(9000 + n)
            while time.perf_counter() - started < seconds:
                await iteration(f, client, bodies, phase)

        await asyncio.gather(*(loop(n, c) for n, c in enumerate(pool)))
        phase.elapsed = time.perf_counter() - started
        phase.failures.extend(warm.failures)
    finally:
        await asyncio.gather(*(c.aclose() for c in pool))


# ---- baselines on the same server ---------------------------------------------------------------------


def select_baseline(database_url: str, *, clients: int, requests: int) -> Summary:
    """``clients`` connections reading one stored event by primary key until ``requests`` reads."""
    with psycopg.connect(database_url) as conn:
        ids = [r[0] for r in conn.execute("SELECT originator_id FROM guanai_events WHERE originator_version = 1")]
    rngs = [random.Random(n) for n in range(clients)]

    def one(conn: psycopg.Connection[Any], n: int) -> None:
        conn.execute(
            "SELECT state FROM guanai_events WHERE originator_id = %s AND originator_version = 1",
            (rngs[n].choice(ids),), prepare=True,
        ).fetchone()  # fmt: skip

    elapsed, latencies, errors = timed_connections(database_url, clients=clients, requests=requests, operation=one)
    return Summary(f"SELECT one event by key, {clients} conns", elapsed, latencies, errors)


def person_payload_bytes(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        size = conn.execute(
            "SELECT avg(octet_length(state))::int FROM guanai_events WHERE topic LIKE %s", ("%Person.Registered",)
        ).fetchone()[0]
    return int(size or 1000)


def check_sealing(database_url: str, mode: str) -> None:
    """The mode measured is the mode asked for: sealed person events with protections on, none off."""
    with psycopg.connect(database_url) as conn:
        sealed, total = conn.execute(
            "SELECT count(*) FILTER (WHERE position(%s in state) > 0), count(*) FROM guanai_events WHERE topic LIKE %s",
            (b'"_sealed"', "%Person.Registered"),
        ).fetchone()
    if (sealed == total) if mode == "on" else (sealed == 0):
        return
    raise RuntimeError(f"protections {mode}, yet {sealed} of {total} stored persons are sealed")


# ---- the run -------------------------------------------------------------------------------------------


@dataclass
class ModeRun:
    mode: str
    writes: Phase
    reads: Phase
    payload_bytes: int


def run_mode(mode: str, args: argparse.Namespace, nats_url: str | None) -> tuple[ModeRun, list[Summary]]:
    command = [sys.executable, "-m", "bench.protections", "--serve", mode]
    with (
        scratch_database(args.database_url, prefix="guanai_bench_protections") as database_url,
        guanai_server(database_url, nats_url=nats_url, api_command=command) as server,
    ):
        f = seed(server, SEED_PAIRS)
        writes, reads = Phase("writes", mode), Phase("reads", mode)
        asyncio.run(drive(f, write_iteration, writes, args.clients, args.seconds))
        server.wait_for_views()
        asyncio.run(drive(f, read_iteration, reads, args.clients, args.seconds))
        check_sealing(database_url, mode)
        baselines = []
        if mode == "on":  # the same server, the same moment of the run
            payload = {**Bodies(0).child(str(uuid.uuid4()))}
            size = person_payload_bytes(database_url)
            payload["note"] = "x" * max(0, size - len(str(payload).encode()))
            baselines = [
                insert_baseline(database_url, clients=args.clients, requests=args.baseline_requests, payload=payload,
                                name=f"INSERT one row, {args.clients} conns"),
                select_baseline(database_url, clients=args.clients, requests=args.baseline_requests),
            ]  # fmt: skip
        return ModeRun(mode, writes, reads, person_payload_bytes(database_url)), baselines


def report(runs: list[ModeRun], baselines: list[Summary], args: argparse.Namespace, setting: str) -> None:
    print(f"\n## Protections on and off, {datetime.now(CST):%Y-%m-%d %H:%M} (UTC+8)\n")
    print(f"Command: `python -m bench.protections {' '.join(sys.argv[1:])}`".rstrip() + f" at {code_version()}")
    print(f"Machine: {setting}")
    rows = []
    for run in runs:
        for phase in (run.writes, run.reads):
            s = phase.summary
            rows.append([s.name, s.count, s.errors, f"{s.throughput:.1f}", *(f"{s.ms(p):.1f}" for p in (50, 95, 99))])
    for b in baselines:
        rows.append([b.name, b.count, b.errors, f"{b.throughput:.1f}", *(f"{b.ms(p):.1f}" for p in (50, 95, 99))])
    print_table(["phase", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms"], rows, title="Every phase")

    def median(phase: str, mode: str) -> float:
        return statistics.median(getattr(r, phase).summary.throughput for r in runs if r.mode == mode)

    def p50(phase: str, mode: str) -> float:
        return statistics.median(getattr(r, phase).summary.ms(50) for r in runs if r.mode == mode)

    base = {"writes": baselines[0], "reads": baselines[1]}
    ratios = []
    for phase in ("writes", "reads"):
        on, off = median(phase, "on"), median(phase, "off")
        ratios.append([
            phase, f"{on:.1f}", f"{off:.1f}", f"{on / off:.3f}", f"{p50(phase, 'on'):.1f}", f"{p50(phase, 'off'):.1f}",
            f"{base[phase].throughput:.0f}", f"{on / base[phase].throughput:.4f}",
        ])  # fmt: skip
    sizes = {r.mode: r.payload_bytes for r in runs}
    print_table(
        ["load", "on req/s", "off req/s", "on / off", "on p50 ms", "off p50 ms", "baseline /s", "on / baseline"],
        ratios,
        title=(
            f"Medians of {args.rounds} round(s), {args.clients} clients, {args.seconds:.0f} s a phase; stored "
            f"Person.Registered {sizes.get('on')} bytes sealed, {sizes.get('off')} bytes unsealed"
        ),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.protections", description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=8, help="concurrent API clients and baseline connections (default 8)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds per phase (default 20)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of both modes (default 2)")
    p.add_argument("--baseline-requests", type=int, default=5000, help="operations per baseline (default 5000)")
    p.add_argument(
        "--database-url", default=DEFAULT_SERVER_URL, help="PostgreSQL server (scratch databases are made on it)"
    )
    p.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)  # the API child this benchmark starts
    args = p.parse_args(argv)
    if args.serve:
        serve(args.serve == "on")
        return 0
    sigterm_as_interrupt()
    nats_url = DEFAULT_NATS_URL if reachable(DEFAULT_NATS_URL) else None
    runs: list[ModeRun] = []
    baselines: list[Summary] = []
    try:
        setting = server_facts(args.database_url)
        for n in range(args.rounds):
            for mode in MODES if n % 2 == 0 else reversed(MODES):
                run, measured = run_mode(mode, args, nats_url)
                runs.append(run)
                baselines = baselines or measured
                print(
                    f"round {n + 1}, protections {mode}: writes {run.writes.summary.throughput:.1f} req/s, "
                    f"reads {run.reads.summary.throughput:.1f} req/s", file=sys.stderr,
                )  # fmt: skip
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    report(runs, baselines, args, setting)
    failures = [x for r in runs for ph in (r.writes, r.reads) for x in ph.failures]
    for failure in failures[:10]:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
