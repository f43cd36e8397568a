"""Emergency alert latency: from the HTTP 201 of a report to the alert at a subscribed responder
client, beside a raw NATS publish-to-receive round trip measured in the same run.

    python -m bench.emergency_latency [--reports 1000] [--rate 20] [--load-clients 4]

Creates a scratch database and starts its own NATS (embedded, under a temporary directory),
``guanai api``, ``guanai projector``, ``guanai relay``, ``guanai router`` and ``guanai escalator``
as separate processes. A county is seeded over HTTP: a township and county roster with a
responder always on duty, and villages of elders paired with volunteers. This process subscribes
to the county's alerts (``alerts.<county>.>``) like a responder's device, then files reports at a
steady rate and times each from the 201 to its alert. Phases: no other load; then the same while
separate load processes post visit logs (走访日志) back to back, as volunteers coming back into
signal do. The path measured: commit -> relay (NOTIFY, JetStream publish) -> router (routing
command, then the alert at once) -> subscriber; "where the time goes" splits it at the moment
the ``Reported`` event appears on NATS. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import secrets
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import nats
import psycopg

from bench.common import (
    DEFAULT_SERVER_URL,
    MASTER_KEY,
    GuanaiServer,
    ManagedProcess,
    Summary,
    code_version,
    guanai_server,
    print_table,
    scratch_database,
    server_facts,
    sigterm_as_interrupt,
)

CST = timezone(timedelta(hours=8))
# The API and the workers all write events: they share the audit chain's key.
CHAIN_KEY = secrets.token_urlsafe(48)
HEADERS = ["phase", "samples", "lost", "p50 ms", "p95 ms", "p99 ms", "max ms", "load logs/s"]


# ---- the county ------------------------------------------------------------------------------------


def seed(server: GuanaiServer, villages: int, pairs_per_village: int) -> dict[str, Any]:
    """County, township, villages, rosters; one volunteer paired with one elder per pair."""
    base = f"53{uuid.uuid4().int % 10**4:04d}"
    admin = {"Authorization": f"Bearer {server.token()}"}
    with httpx.Client(base_url=server.base_url, headers=admin, timeout=30) as c:

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            r = c.post(path, json=body)
            r.raise_for_status()
            return r.json()

        county = post("/org-units", {"code": base + "000000", "name": "基准县", "level": "county"})
        township = post(
            "/org-units", {"code": base + "101000", "name": "城关镇", "level": "township", "parent_id": county["id"]}
        )
        for unit, rid in ((township, "t-desk"), (county, "c-desk")):
            post(f"/rosters/{unit['id']}", {})
            post(f"/rosters/{unit['id']}/responders", {"responder_id": rid, "name": "值班", "phone": "13900000000"})
        pairs = []
        for v in range(1, villages + 1):
            village = post(
                "/org-units",
                {"code": f"{base}101{v:03d}", "name": f"{v}村", "level": "village", "parent_id": township["id"]},
            )
            for n in range(pairs_per_village):
                person = post("/persons", {"kind": "elder", "name": "李秀英", "sex": "female", "birth_date": f"1944-03-0{1 + n % 9}",
                                           "village_id": village["id"], "risk_tags": ["living_alone"]})  # fmt: skip
                helper = post(
                    "/helpers",
                    {"role": "volunteer", "name": "张志愿", "phone": "13600136000", "org_unit_id": village["id"]},
                )
                pairing = post("/pairings", {"shape": "one_to_one", "helper_ids": [helper["id"]], "person_ids": [person["id"]],
                                             "cadence": "weekly", "visit_mode": "home_visit", "starts_on": "2026-01-05"})  # fmt: skip
                pairs.append(
                    {"village": village["id"], "person": person["id"], "helper": helper["id"], "pairing": pairing["id"]}
                )
    return {"county": county, "township": township, "pairs": pairs}


# ---- background load: visit logs, in processes of their own ------------------------------------------


def load_process(base_url: str, tokens: list[str], pairs: list[dict[str, Any]], stop: Any, counter: Any) -> None:
    """Post unplanned visit logs back to back until ``stop`` is set (runs in a child process)."""

    async def one_client(token: str, pair: dict[str, Any]) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as c:
            while not stop.is_set():
                body = {
                    "id": str(uuid.uuid4()), "occurred_at": datetime.now(CST).isoformat(), "mode": "home_visit",
                    "pairing_id": pair["pairing"], "person_id": pair["person"],
                    "findings": {"health": "chronic_stable", "mood": "calm", "blood_pressure": {"systolic": 135, "diastolic": 85}},
                    "services": ["daily_life_care", "health_care"], "service_items": ["cleaning", "blood_pressure"],
                }  # fmt: skip
                r = await c.post("/visit-logs", json=body)
                if r.status_code in (200, 201):
                    with counter.get_lock():
                        counter.value += 1

    async def run() -> None:
        await asyncio.gather(*(one_client(t, p) for t, p in zip(tokens, pairs, strict=True)))

    asyncio.run(run())


# ---- measurement --------------------------------------------------------------------------------------


STAGES = ("201 -> Reported on NATS (relay)", "Reported on NATS -> alert (router)")


async def measure_reports(
    server: GuanaiServer, nats_url: str, county_code: str, person_id: str, reports: int, rate: float, name: str
) -> tuple[Summary, dict[str, Summary]]:
    """File ``reports`` at ``rate`` per second; latency = alert received - 201 received. The
    stages come from the stream's own subjects (a plain subscription sees what the relay
    publishes): where the time goes."""
    received: dict[str, float] = {}
    answered: dict[str, float] = {}
    refused: dict[int, int] = {}
    seen: dict[str, dict[str, float]] = {"Reported": {}}
    nc = await nats.connect(nats_url)

    async def on_alert(msg: Any) -> None:
        now = time.perf_counter()
        received.setdefault(str(decode(msg.data)["report_id"]), now)

    async def on_event(msg: Any) -> None:
        now = time.perf_counter()
        body = decode(msg.data)
        seen[body["event"]].setdefault(str(body["id"]), now)

    await nc.subscribe(f"alerts.{county_code}.>", cb=on_alert)
    for event in seen:
        await nc.subscribe(f"guanai.events.EmergencyReport.{event}", cb=on_event)
    await nc.flush()
    summary = Summary(name, 0.0)
    token = server.token()
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(
        base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30, limits=limits
    ) as c:

        async def file_one() -> None:
            body = {"id": str(uuid.uuid4()), "category": "critical_illness", "severity": "critical", "person_id": person_id,
                    "description": "基准测试：老人跌倒"}  # fmt: skip
            r = await c.post("/emergencies", json=body)
            if r.status_code == 201:
                answered[body["id"]] = time.perf_counter()
            else:
                summary.errors += 1
                refused[r.status_code] = refused.get(r.status_code, 0) + 1

        started = time.perf_counter()
        tasks = []
        for n in range(reports):
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(file_one()))
        await asyncio.gather(*tasks)
        summary.elapsed = time.perf_counter() - started
    deadline = time.monotonic() + 30
    while any(i not in received for i in answered) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await nc.close()
    if refused:
        print(f"{name}: answers other than 201: {refused}", file=sys.stderr)
    summary.latencies = [received[i] - t for i, t in answered.items() if i in received]
    summary.errors += sum(1 for i in answered if i not in received)
    reported = seen["Reported"]
    stages = {stage: Summary(stage, summary.elapsed) for stage in STAGES}
    for i, t in answered.items():
        if i in reported and i in received:
            # The relay may publish before the client has read its 201: that stage can be negative.
            stages[STAGES[0]].latencies.append(reported[i] - t)
            stages[STAGES[1]].latencies.append(received[i] - reported[i])
    return summary, stages


def decode(data: bytes) -> dict[str, Any]:
    import msgspec

    return msgspec.json.decode(data)


async def nats_round_trip(nats_url: str, messages: int, rate: float) -> Summary:
    """Publish on one connection, receive on another: the broker's own latency floor."""
    sub_nc, pub_nc = await nats.connect(nats_url), await nats.connect(nats_url)
    subject = f"bench.{uuid.uuid4().hex}"
    sent: dict[int, float] = {}
    got: dict[int, float] = {}

    async def on_msg(msg: Any) -> None:
        got[int(msg.data)] = time.perf_counter()

    await sub_nc.subscribe(subject, cb=on_msg)
    await sub_nc.flush()
    summary = Summary("raw NATS publish -> receive", 0.0)
    started = time.perf_counter()
    for n in range(messages):
        delay = started + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent[n] = time.perf_counter()
        await pub_nc.publish(subject, str(n).encode())
        await pub_nc.flush()
    summary.elapsed = time.perf_counter() - started
    deadline = time.monotonic() + 10
    while len(got) < messages and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await sub_nc.close()
    await pub_nc.close()
    summary.latencies = [got[n] - t for n, t in sent.items() if n in got]
    summary.errors = messages - len(summary.latencies)
    return summary


def row(s: Summary, load: float | None = None) -> list[Any]:
    return [s.name, s.count, s.errors, *(f"{s.ms(p):.1f}" for p in (50, 95, 99)),
            f"{max(s.latencies, default=float('nan')) * 1000:.1f}", f"{load:.0f}" if load else "-"]  # fmt: skip


# ---- the run --------------------------------------------------------------------------------------------


def workers(server: GuanaiServer, database_url: str, nats_url: str, tmp: Path) -> list[ManagedProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUANAI_")}
    env.update(GUANAI_DATABASE_URL=database_url, GUANAI_NATS_URL=nats_url, GUANAI_JWT_SECRET=server.jwt_secret,
               GUANAI_LOG_LEVEL="info", GUANAI_LOG_FORMAT="json", GUANAI_DATA_DIR=str(tmp / "data"),
               GUANAI_CHAIN_KEY=CHAIN_KEY, GUANAI_MASTER_KEY=MASTER_KEY)  # fmt: skip
    cli = [sys.executable, "-m", "guanai.cli"]
    started = []
    for kind in ("relay", "router", "escalator"):
        # One after the other: processes creating the store's tables at once collide in the catalog.
        proc = ManagedProcess(kind, [*cli, kind], env, tmp)
        started.append(proc)
        deadline = time.monotonic() + 60
        while f"{kind}_started" not in proc.tail(200):
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{kind} did not start:\n{proc.tail()}")
            time.sleep(0.1)
    return started


def wait_for_routing(server: GuanaiServer, nats_url: str, county_code: str, person_id: str) -> None:
    """A few reports end to end before measuring: the consumers exist and have caught up."""
    warm, _ = asyncio.run(measure_reports(server, nats_url, county_code, person_id, 5, 5, "warm-up"))
    if warm.count < 5:
        raise RuntimeError(f"the routing path did not answer: {warm.count}/5 alerts")


def start_load(server: GuanaiServer, pairs: list[dict[str, Any]], processes: int) -> tuple[list[Any], Any, Any]:
    """Visit-log clients in child processes, each posting as the volunteer of its pairing."""
    from api.auth import issue_token
    from domain.vocabulary import ActorRole

    ctx = multiprocessing.get_context("spawn")
    stop, counter = ctx.Event(), ctx.Value("l", 0)
    tokens = [
        issue_token(server.jwt_secret, subject=pair["helper"], role=ActorRole.VOLUNTEER,
                    org_unit_id=uuid.UUID(pair["village"]), ttl=timedelta(hours=2))
        for pair in pairs
    ]  # fmt: skip
    chunks = [c for c in (list(range(i, len(pairs), processes)) for i in range(processes)) if c]
    loaders = [
        ctx.Process(target=load_process, args=(server.base_url, [tokens[i] for i in c], [pairs[i] for i in c], stop, counter))
        for c in chunks
    ]  # fmt: skip
    for proc in loaders:
        proc.start()
    return loaders, stop, counter


def stop_load(loaders: list[Any], stop: Any) -> None:
    stop.set()
    for proc in loaders:
        proc.join(30)
        if proc.is_alive():
            proc.kill()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.emergency_latency", description=__doc__.split("\n\n")[0])
    p.add_argument("--reports", type=int, default=1000, help="reports per phase (default 1000)")
    p.add_argument("--rate", type=float, default=20.0, help="reports per second (default 20)")
    p.add_argument("--load-clients", type=int, default=4, help="visit-log clients in the loaded phase (default 4)")
    p.add_argument("--load-processes", type=int, default=2, help="processes the load clients run in (default 2)")
    p.add_argument("--villages", type=int, default=4)
    p.add_argument(
        "--database-url", default=DEFAULT_SERVER_URL,
        help="PostgreSQL server (a scratch database is created); 'embedded': a server of the run's own",
    )  # fmt: skip
    args = p.parse_args(argv)
    sigterm_as_interrupt()
    own_postgres = None
    if args.database_url == "embedded":
        from infrastructure.embedded import start_postgres

        own_postgres = start_postgres(tempfile.mkdtemp(prefix="guanai-bench-pg-"), database="postgres")
        args.database_url = own_postgres.admin_url
    try:
        return run(args, argv)
    finally:
        if own_postgres is not None:
            own_postgres.stop()


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    from infrastructure.embedded import start_nats

    setting = server_facts(args.database_url)
    rows: list[list[Any]] = []
    stage_rows: list[list[Any]] = []
    api_env = {"GUANAI_CHAIN_KEY": CHAIN_KEY, "GUANAI_REPORTS_PER_MINUTE": "0"}
    with tempfile.TemporaryDirectory(prefix="guanai-bench-emergency-") as tmp_dir:
        tmp = Path(tmp_dir)
        own_nats = start_nats(tmp / "nats-data")
        try:
            with (
                scratch_database(args.database_url, prefix="guanai_bench_emergency") as database_url,
                guanai_server(database_url, nats_url=own_nats.url, extra_env=api_env) as server,
                contextlib.ExitStack() as stack,  # the workers stop before the API and the database go
            ):
                world = seed(server, args.villages, max(1, -(-args.load_clients // args.villages)))
                started = workers(server, database_url, own_nats.url, tmp)
                stack.callback(lambda: [proc.stop() for proc in started])
                county_code, person = world["county"]["code"], world["pairs"][0]["person"]
                wait_for_routing(server, own_nats.url, county_code, person)
                print("seeded; measuring", file=sys.stderr)

                def phase(name: str, load: float | None = None) -> None:
                    summary, stages = asyncio.run(
                        measure_reports(server, own_nats.url, county_code, person, args.reports, args.rate, name)
                    )
                    rows.append(row(summary, load))
                    stage_rows.extend(
                        [f"{name}: {s.name}", *(f"{s.ms(p):.1f}" for p in (50, 95, 99))] for s in stages.values()
                    )
                    print(f"{name}: p50 {summary.ms(50):.1f} ms, p99 {summary.ms(99):.1f} ms", file=sys.stderr)

                rows.append(row(asyncio.run(nats_round_trip(own_nats.url, args.reports, args.rate))))
                phase("201 -> alert, no other load")
                loaders, stop, counter = start_load(server, world["pairs"][: args.load_clients], args.load_processes)
                try:
                    time.sleep(3)  # let the load reach a steady state before measuring
                    before, t0 = counter.value, time.perf_counter()
                    name = "201 -> alert, visit-log load"
                    summary, stages = asyncio.run(
                        measure_reports(server, own_nats.url, county_code, person, args.reports, args.rate, name)
                    )
                    load_rate = (counter.value - before) / (time.perf_counter() - t0)
                finally:
                    stop_load(loaders, stop)
                rows.append(row(summary, load_rate))
                stage_rows.extend(
                    [f"{name}: {s.name}", *(f"{s.ms(p):.1f}" for p in (50, 95, 99))] for s in stages.values()
                )
                after = asyncio.run(nats_round_trip(own_nats.url, args.reports, args.rate))
                after.name += " (after)"
                rows.append(row(after))
        except KeyboardInterrupt:
            print("interrupted; everything started was stopped", file=sys.stderr)
            return 130
        except psycopg.OperationalError as e:
            print(f"PostgreSQL refused: {e}; everything started was stopped", file=sys.stderr)
            return 2
        finally:
            own_nats.stop()
    command = " ".join(sys.argv[1:] if argv is None else argv)
    print(f"\n## Emergency alert latency, {datetime.now(CST):%Y-%m-%d %H:%M} (UTC+8)\n")
    print(f"Command: `python -m bench.emergency_latency {command}`".rstrip() + f" at {code_version()}")
    print(f"Machine: {setting}; NATS: own embedded server; reports at {args.rate:g}/s; "
          f"{args.load_clients} visit-log clients in the loaded phase")  # fmt: skip
    title = "From the 201 of POST /emergencies to the alert at a subscribed client (lost: no alert within 30 s)"
    print_table(HEADERS, rows, title=title)
    print_table(["stage", "p50 ms", "p95 ms", "p99 ms"], stage_rows, title="Where the time goes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
