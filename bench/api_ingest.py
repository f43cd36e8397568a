"""Command ingest through the HTTP API against plain PostgreSQL INSERTs, in one run.

    python -m bench.api_ingest [--clients 8] [--requests 2000] [--client lean|httpx] [--database-url URL]

Creates a scratch database, starts ``guanai api`` and ``guanai projector`` as separate
processes, seeds a county (townships and villages), then lets N concurrent clients do what a
county's registration drive does: per household batch in a village, register one elder and
three children (with contacts), three helpers, and pair them in all three shapes (one-to-one,
one-to-N, N-to-one): ten requests, of which later ones depend on earlier ones. The same is run
with one client for the latency floor, which is then split: the HTTP edge (a body refused by
validation, after the access guard's one read of the village it names) and the application alone (the same command in this process, no HTTP). The
baseline, on the same server in the same run, is N connections (and one) committing single-row
INSERT transactions of a JSONB payload the size of a stored person event, and N connections
doing what the event store does per transaction (LOCK TABLE, NOTIFY, INSERT). CPU time is
counted per process (API, projector, PostgreSQL, this load generator, the rest of the machine).
The timed phases' client is ``bench/lean_http.py`` (every request encoded before the clock
starts, one keep-alive connection per client, answers parsed by httptools), which takes a
fraction of httpx's CPU from the two cores the server shares with it; ``--client httpx`` runs
them with httpx as before. Every answer is checked either way (its status; the id in its body).
Prints Markdown tables; exits 1 if any request failed, 2 if PostgreSQL refused a connection.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import math
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import httpx
import psycopg

from bench.common import (
    DEFAULT_NATS_URL,
    DEFAULT_SERVER_URL,
    SUMMARY_HEADERS,
    BackendCpu,
    CpuMeter,
    GuanaiServer,
    Summary,
    code_version,
    guanai_server,
    insert_baseline,
    make_care,
    postmaster_pid,
    print_table,
    reachable,
    scratch_database,
    server_facts,
    sigterm_as_interrupt,
)
from bench.lean_http import LeanConnection, ProtocolError

KINDS = (
    "register_elder",
    "register_child",
    "register_helper",
    "pair_one_to_one",
    "pair_one_to_many",
    "pair_many_to_one",
)
REQUESTS_PER_BATCH = 10
CLIENTS = {
    "lean": "bench/lean_http.py (asyncio, keep-alive, requests encoded before the clock, httptools)",
    "httpx": "httpx (AsyncClient for the drive, Client for the HTTP edge)",
}
SURNAMES = "王李张刘陈杨赵黄周吴徐孙马胡朱郭何罗高林"
GIVEN = ["秀英", "桂兰", "玉珍", "建国", "国强", "德明", "小花", "子涵", "浩然", "欣怡", "雨桐", "俊杰", "明轩", "诗琪"]
WORK_PLACES = ["广东东莞", "浙江义乌", "福建晋江", "江苏苏州", "上海松江", "广东深圳"]
TOWNSHIPS = ["城关镇", "因远镇", "羊街乡", "那诺乡"]
CST = timezone(timedelta(hours=8))


# ---- request bodies ------------------------------------------------------------------------------


def id_number(first17: str) -> str:
    """A resident ID number with its GB 11643 check character (synthetic digits)."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11]


class Bodies:
    """Realistic, varied bodies (synthetic names and numbers) from a seeded generator."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def name(self) -> str:
        return self.rng.choice(SURNAMES) + self.rng.choice(GIVEN)

    def phone(self) -> str:
        return f"1{self.rng.choice('3589')}{self.rng.randrange(10**9):09d}"

    def occurred_at(self) -> str:
        # Registrations are often typed in hours after the home visit they come from.
        return (datetime.now(UTC) - timedelta(minutes=self.rng.randrange(5, 2000))).astimezone(CST).isoformat()

    def elder(self, village: str) -> dict[str, Any]:
        born = date(self.rng.randrange(1934, 1965), self.rng.randrange(1, 13), self.rng.randrange(1, 29))
        tags = ["empty_nest", *self.rng.sample(["living_alone", "dibao", "semi_disabled"], k=self.rng.randrange(0, 3))]
        if born.year <= 1945:
            tags.append("advanced_age")
        return {
            "id": str(uuid.uuid4()),
            "kind": "elder",
            "name": self.name(),
            "sex": self.rng.choice(["male", "female"]),
            "birth_date": born.isoformat(),
            "id_number": id_number(f"532528{born:%Y%m%d}{self.rng.randrange(10**3):03d}"),
            "household": f"{self.rng.randrange(1, 9)}组{self.rng.randrange(1, 80)}号",
            "village_id": village,
            "risk_tags": tags,
            "absent_children": [
                {
                    "name": self.name(),
                    "relation": rel,
                    "whereabouts": self.rng.choice(WORK_PLACES),
                    "phone": self.phone(),
                }
                for rel in ("son", "daughter")
            ],
            "occurred_at": self.occurred_at(),
        }

    def child(self, village: str) -> dict[str, Any]:
        signed = self.rng.random() < 0.9  # "unsigned" is a tracked state in the practice
        return {
            "id": str(uuid.uuid4()),
            "kind": "child",
            "name": self.name(),
            "sex": self.rng.choice(["male", "female"]),
            "birth_date": date(
                self.rng.randrange(2010, 2022), self.rng.randrange(1, 13), self.rng.randrange(1, 29)
            ).isoformat(),
            "household": f"{self.rng.randrange(1, 9)}组{self.rng.randrange(1, 80)}号",
            "village_id": village,
            "risk_tags": ["child_in_difficulty"] if self.rng.random() < 0.1 else [],
            "guardian": {"name": self.name(), "relation": "grandmother", "phone": self.phone()},
            "parents": [
                {
                    "name": self.name(),
                    "relation": rel,
                    "work_place": self.rng.choice(WORK_PLACES),
                    "phone": self.phone(),
                }
                for rel in ("father", "mother")
            ],
            "care_agreement_signed_on": "2026-03-10" if signed else None,
            "occurred_at": self.occurred_at(),
        }

    def helper(self, village: str, role: str) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "role": role,
            "name": self.name(),
            "phone": self.phone(),
            "org_unit_id": village,
        }

    def pairing(self, shape: str, helpers: list[str], persons: list[str], cadence: str, mode: str) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "shape": shape,
            "helper_ids": helpers,
            "person_ids": persons,
            "cadence": cadence,
            "visit_mode": mode,
            "starts_on": date.today().isoformat(),
        }


# ---- the load --------------------------------------------------------------------------------------


class RequestFailed(Exception):
    """A request got no 2xx answer (already counted in its phase)."""


@dataclass
class Phase:
    """One measured run of the batches: latencies and errors per kind, events, CPU, views lag."""

    name: str
    clients: int
    elapsed: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    failures: list[str] = field(default_factory=list)
    events: int = 0
    views_lag: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    reconnects: int = 0  # lean client: connections opened again after the server closed one
    api_cpu: list[float] = field(default_factory=list)  # CPU seconds of each API process

    def summaries(self) -> list[Summary]:
        kinds = [Summary(k, self.elapsed, self.latencies[k], self.errors[k]) for k in KINDS]
        overall = Summary(
            "all commands", self.elapsed, [x for s in kinds for x in s.latencies], sum(self.errors.values())
        )
        return [*kinds, overall]

    @property
    def overall(self) -> Summary:
        return self.summaries()[-1]


def phase_meters(server: GuanaiServer, database_url: str) -> tuple[CpuMeter, Any, BackendCpu]:
    """A timed phase's CPU meters: the processes' (every API process counted as "api"), each API
    process's own when there are several (``api_meter``: None for one), this database's backends."""
    meter = CpuMeter({"api": server.api_pids, "projector": server.projector.pid}, postmaster_pid(database_url))
    # This database's backends read at the start and the end only: the pools keep their connections,
    # and a reading thread would add its CPU to the load generator's.
    return meter, api_meter(server), BackendCpu(database_url, interval=None)


def api_meter(server: GuanaiServer) -> CpuMeter | None:
    """Each API process's CPU, apart (the phase's own meter counts them together as "api"); none
    with one API process, so that the default run measures what it always did."""
    if len(server.apis) == 1:
        return None
    return CpuMeter({str(n): pid for n, pid in enumerate(server.api_pids)})


async def _post(client: httpx.AsyncClient, phase: Phase | None, kind: str, path: str, body: dict[str, Any]) -> str:
    t0 = time.perf_counter()
    try:
        response = await client.post(path, json=body)
    except httpx.HTTPError as e:
        failure = f"{kind}: {type(e).__name__}: {e}"
    else:
        if 200 <= response.status_code < 300:
            if phase is not None:
                phase.latencies[kind].append(time.perf_counter() - t0)
            return str(response.json()["id"])
        failure = f"{kind}: HTTP {response.status_code}: {response.text[:300]}"
    if phase is not None:
        phase.errors[kind] += 1
        phase.failures.append(failure)
    raise RequestFailed(failure)


async def household_batch(client: httpx.AsyncClient, bodies: Bodies, village: str, phase: Phase | None) -> None:
    """One village batch: 4 persons, 3 helpers, 3 pairings (one of each shape); 10 requests."""
    elder = await _post(client, phase, "register_elder", "/persons", bodies.elder(village))
    children = [await _post(client, phase, "register_child", "/persons", bodies.child(village)) for _ in range(3)]
    mother, volunteer, doctor = [
        await _post(client, phase, "register_helper", "/helpers", bodies.helper(village, role))
        for role in ("caring_mother", "volunteer", "family_doctor")
    ]
    await _post(
        client,
        phase,
        "pair_one_to_one",
        "/pairings",
        bodies.pairing("one_to_one", [mother], children[:1], "weekly", "home_visit"),
    )
    await _post(
        client,
        phase,
        "pair_one_to_many",
        "/pairings",
        bodies.pairing("one_to_many", [volunteer], children[1:], "weekly", "home_visit"),
    )
    await _post(
        client,
        phase,
        "pair_many_to_one",
        "/pairings",
        bodies.pairing("many_to_one", [volunteer, doctor, mother], [elder], "monthly", "phone_video"),
    )


def seed_county(server: GuanaiServer, token: str, villages_per_township: int) -> list[str]:
    """A county with four townships of villages; returns the village ids."""
    base = f"53{uuid.uuid4().int % 10**4:04d}"
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:

        def unit(code: str, name: str, level: str, parent: str | None) -> str:
            r = c.post("/org-units", json={"code": code, "name": name, "level": level, "parent_id": parent})
            r.raise_for_status()
            return str(r.json()["id"])

        county = unit(base + "000000", "基准县", "county", None)
        villages = []
        for t, township_name in enumerate(TOWNSHIPS, start=101):
            township = unit(f"{base}{t:03d}000", township_name, "township", county)
            villages += [
                unit(f"{base}{t:03d}{v:03d}", f"{township_name[:2]}{v}村", "village", township)
                for v in range(1, villages_per_township + 1)
            ]
    return villages


async def drive(
    server: GuanaiServer, database_url: str, villages: list[str], phase: Phase, requests: int, duration: float | None
) -> None:
    """httpx: warm every client up with one unmeasured batch, then run batches until the budget is
    spent; the clock, the CPU meter and the event count cover the measured batches only."""
    batches, taken = math.ceil(requests / REQUESTS_PER_BATCH), 0
    headers = {"Authorization": f"Bearer {server.token()}"}
    clients = [
        httpx.AsyncClient(base_url=server.base_urls[n % len(server.base_urls)], headers=headers, timeout=60)
        for n in range(phase.clients)
    ]
    seed = phase.clients * 1000
    try:
        warm_up = (
            household_batch(c, Bodies(seed + n), villages[n % len(villages)], None) for n, c in enumerate(clients)
        )
        await asyncio.gather(*warm_up)
        before = max_position(database_url)
        meter, apis, database = phase_meters(server, database_url)
        with database, meter, apis or contextlib.nullcontext():
            started = time.perf_counter()

            async def client_loop(n: int, client: httpx.AsyncClient) -> None:
                nonlocal taken
                bodies = Bodies(seed + 100 + n)
                while taken < batches and (duration is None or time.perf_counter() - started < duration):
                    taken += 1
                    # A failure is counted where it happens; the rest of its batch depended on it.
                    with contextlib.suppress(RequestFailed):
                        await household_batch(client, bodies, villages[bodies.rng.randrange(len(villages))], phase)

            await asyncio.gather(*(client_loop(n, c) for n, c in enumerate(clients)))
            phase.elapsed = time.perf_counter() - started
        phase.cpu = {**meter.used, "database": database.seconds}
        phase.api_cpu = [apis.used[str(n)] for n in range(len(server.apis))] if apis else []
        phase.events = max_position(database_url) - before
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


@dataclass(frozen=True, slots=True)
class Prepared:
    """One request of a batch, encoded before the clock starts, and the id its answer must carry."""

    kind: str
    request: bytes
    id: str


def encode_body(body: dict[str, Any]) -> bytes:
    """JSON as httpx encodes a ``json=`` body (compact, UTF-8)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def prepared_batch(connection: LeanConnection, bodies: Bodies, village: str) -> list[Prepared]:
    """``household_batch``'s ten requests, in its order; the pairings name the ids the persons and
    helpers are created with (their answers are checked to carry exactly those)."""

    def one(kind: str, path: str, body: dict[str, Any]) -> Prepared:
        return Prepared(kind, connection.request_bytes("POST", path, encode_body(body)), str(body["id"]))

    elder = one("register_elder", "/persons", bodies.elder(village))
    children = [one("register_child", "/persons", bodies.child(village)) for _ in range(3)]
    mother, volunteer, doctor = (
        one("register_helper", "/helpers", bodies.helper(village, role))
        for role in ("caring_mother", "volunteer", "family_doctor")
    )
    pairings = [
        ("one_to_one", [mother], children[:1], "weekly", "home_visit"),
        ("one_to_many", [volunteer], children[1:], "weekly", "home_visit"),
        ("many_to_one", [volunteer, doctor, mother], [elder], "monthly", "phone_video"),
    ]
    pairs = [
        one(
            f"pair_{shape}",
            "/pairings",
            bodies.pairing(shape, [h.id for h in helpers], [p.id for p in persons], cadence, mode),
        )
        for shape, helpers, persons, cadence, mode in pairings
    ]
    return [elder, *children, mother, volunteer, doctor, *pairs]


async def send_prepared(connection: LeanConnection, phase: Phase | None, item: Prepared) -> None:
    """Send one prepared request; a 2xx whose JSON body names the expected id, or a failure."""
    t0 = time.perf_counter()
    try:
        response = await connection.send(item.request)
    except (ProtocolError, OSError) as e:
        failure = f"{item.kind}: {type(e).__name__}: {e}"
    else:
        elapsed = time.perf_counter() - t0
        if 200 <= response.status < 300:
            try:
                answered = json.loads(response.body)["id"]
            except (ValueError, KeyError, TypeError) as e:
                failure = (
                    f"{item.kind}: HTTP {response.status} without an id ({type(e).__name__}): {response.body[:300]!r}"
                )
            else:
                if answered == item.id:
                    if phase is not None:
                        phase.latencies[item.kind].append(elapsed)
                    return
                failure = f"{item.kind}: HTTP {response.status} answered id {answered!r}, not {item.id}"
        else:
            failure = f"{item.kind}: HTTP {response.status}: {response.body[:300].decode(errors='replace')}"
    if phase is not None:
        phase.errors[item.kind] += 1
        phase.failures.append(failure)
    raise RequestFailed(failure)


async def lean_batch(connection: LeanConnection, batch: list[Prepared], phase: Phase | None) -> None:
    for item in batch:
        await send_prepared(connection, phase, item)


async def drive_lean(
    server: GuanaiServer, database_url: str, villages: list[str], phase: Phase, requests: int, duration: float | None
) -> None:
    """``drive`` with the lean client: every request of the run encoded before the clock starts
    (the same kinds of bodies, from the same generator), sent on one keep-alive connection per
    client, every answer checked (2xx, and the id the body chose). With several API processes the
    clients connect to them round robin; every request names the first one's address as its Host
    (as a proxy in front of replicas would name itself; the API does not read it)."""
    batches = math.ceil(requests / REQUESTS_PER_BATCH)
    headers = {"Authorization": f"Bearer {server.token()}"}
    urls = server.base_urls
    clients = [await LeanConnection.to(urls[n % len(urls)], headers) for n in range(phase.clients)]
    seed = phase.clients * 1000
    try:
        warm_up = [
            prepared_batch(clients[0], Bodies(seed + n), villages[n % len(villages)]) for n in range(phase.clients)
        ]
        await asyncio.gather(*(lean_batch(c, b, None) for c, b in zip(clients, warm_up, strict=True)))
        bodies = Bodies(seed + 100)
        queue = collections.deque(
            prepared_batch(clients[0], bodies, villages[bodies.rng.randrange(len(villages))]) for _ in range(batches)
        )
        before = max_position(database_url)
        meter, apis, database = phase_meters(server, database_url)
        with database, meter, apis or contextlib.nullcontext():
            started = time.perf_counter()

            async def client_loop(connection: LeanConnection) -> None:
                while queue and (duration is None or time.perf_counter() - started < duration):
                    batch = queue.popleft()
                    # A failure is counted where it happens; the rest of its batch depended on it.
                    with contextlib.suppress(RequestFailed):
                        await lean_batch(connection, batch, phase)

            await asyncio.gather(*(client_loop(c) for c in clients))
            phase.elapsed = time.perf_counter() - started
        phase.cpu = {**meter.used, "database": database.seconds}
        phase.api_cpu = [apis.used[str(n)] for n in range(len(server.apis))] if apis else []
        phase.events = max_position(database_url) - before
        phase.reconnects = sum(c.reconnects for c in clients)
    finally:
        await asyncio.gather(*(c.close() for c in clients))


def max_position(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return int(conn.execute("SELECT coalesce(max(notification_id), 0) FROM guanai_events").fetchone()[0])


def run_api_phase(
    server: GuanaiServer,
    database_url: str,
    villages: list[str],
    clients: int,
    requests: int,
    duration: float | None,
    client: str = "lean",
) -> Phase:
    phase = Phase(f"API, {clients} client{'s' if clients > 1 else ''}", clients)
    run = drive_lean if client == "lean" else drive
    asyncio.run(run(server, database_url, villages, phase, requests, duration))
    phase.views_lag = server.wait_for_views()
    return phase


@dataclass
class Floor:
    """Where one client's latency goes: the HTTP edge (with the guard's one read), and the application
    without HTTP (in this process, on the same database)."""

    http_only: Summary
    http_cpu_ms: float  # API process CPU per request
    http_load_ms: float  # this process's (the load generator's) CPU per request
    app_only: Summary
    app_cpu_ms: float  # this process's CPU per command


def refused_body(village: str) -> dict[str, Any]:
    # 422 after the token check and validation. The body fails its type, so the access guard
    # checks it before the handler does: one read of the village it names (api/access/guard.py).
    return {**Bodies(7).child(village), "sex": "unknown"}


def measure_floor(server: GuanaiServer, database_url: str, village: str, requests: int, client: str = "lean") -> Floor:
    headers = {"Authorization": f"Bearer {server.token()}"}
    refused = refused_body(village)
    if client == "lean":
        latencies, elapsed, meter = asyncio.run(lean_floor(server.base_url, headers, refused, server.api.pid, requests))
    else:
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as c:
            latencies = []
            with CpuMeter({"api": server.api.pid}) as meter:
                started = time.perf_counter()
                for _ in range(requests):
                    t0 = time.perf_counter()
                    if c.post("/persons", json=refused).status_code != 422:
                        raise RuntimeError("the refused body was not answered 422")
                    latencies.append(time.perf_counter() - t0)
                elapsed = time.perf_counter() - started
    http_only = Summary("HTTP edge: token, the guard's read of the village, validation, 422", elapsed, latencies)
    app_only, app_cpu = application_floor(server, database_url, village, requests)
    per_request = {k: v / requests * 1000 for k, v in meter.used.items()}
    return Floor(http_only, per_request["api"], per_request["load_generator"], app_only, app_cpu)


async def lean_floor(
    base_url: str, headers: dict[str, str], refused: dict[str, Any], api_pid: int, requests: int
) -> tuple[list[float], float, CpuMeter]:
    """The HTTP edge's requests with the lean client: one request's bytes, sent ``requests`` times."""
    connection = await LeanConnection.to(base_url, headers)
    try:
        request = connection.request_bytes("POST", "/persons", encode_body(refused))
        latencies = []
        with CpuMeter({"api": api_pid}) as meter:
            started = time.perf_counter()
            for _ in range(requests):
                t0 = time.perf_counter()
                response = await connection.send(request)
                if response.status != 422:
                    raise RuntimeError(
                        f"the refused body was answered {response.status}, not 422: {response.body[:300]!r}"
                    )
                latencies.append(time.perf_counter() - t0)
            elapsed = time.perf_counter() - started
    finally:
        await connection.close()
    return latencies, elapsed, meter


def application_floor(server: GuanaiServer, database_url: str, village: str, requests: int) -> tuple[Summary, float]:
    """What the controller does for a child's registration (register, reload), without HTTP."""
    from domain.base import CommandMeta
    from domain.person import Person
    from domain.vocabulary import PersonKind, RiskTag, Sex

    # The same chain key and settings as the server's processes, so the events are stored alike.
    app = make_care(database_url, pool_size=2, env={k: v for k, v in server.env.items() if k.startswith("GUANAI_")})
    bodies, latencies = Bodies(8), []
    try:
        cpu0, started = os.times(), time.perf_counter()
        for _ in range(requests):
            b = bodies.child(village)
            t0 = time.perf_counter()
            meta = CommandMeta(
                actor_id="bench",
                actor_role="administrator",
                correlation_id=uuid.uuid4().hex,
                occurred_at=datetime.now(UTC),
            )
            result = app.register_person(
                id=uuid.uuid4(),
                kind=PersonKind.CHILD,
                name=b["name"],
                sex=Sex(b["sex"]),
                birth_date=date.fromisoformat(b["birth_date"]),
                village_id=uuid.UUID(village),
                household=b["household"],
                risk_tags=[RiskTag(t) for t in b["risk_tags"]],
                guardian=b["guardian"],
                parents=b["parents"],
                care_agreement_signed_on=date.fromisoformat(b["care_agreement_signed_on"])
                if b["care_agreement_signed_on"]
                else None,
                meta=meta,
            )
            app.load(Person, result.id)
            latencies.append(time.perf_counter() - t0)
        elapsed, cpu1 = time.perf_counter() - started, os.times()
    finally:
        app.close()
    cpu_ms = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / requests * 1000
    return Summary("application only: register + reload, in-process (no HTTP)", elapsed, latencies), cpu_ms


def person_payload(database_url: str) -> dict[str, Any]:
    """A JSONB payload as big as the average stored person-registered event."""
    with psycopg.connect(database_url) as conn:
        size = (
            conn.execute(
                "SELECT avg(octet_length(state))::int FROM guanai_events WHERE topic LIKE %s", ("%Person.Registered",)
            ).fetchone()[0]
            or 1000
        )
    payload = Bodies(0).child(str(uuid.uuid4()))
    filler = max(0, size - len(str(payload).encode()))
    return {**payload, "note": "x" * filler, "target_bytes": size}


# ---- the run -------------------------------------------------------------------------------------


def report(
    phases: list[Phase],
    baselines: list[Summary],
    floor: Floor,
    payload_bytes: int,
    setting: str,
    client: str,
    api_processes: int = 1,
) -> None:
    print(f"\n## API command ingest, {datetime.now(CST):%Y-%m-%d %H:%M} (UTC+8)\n")
    print(f"Command: `python -m bench.api_ingest {' '.join(sys.argv[1:])}`".rstrip() + f" at {code_version()}")
    print(f"Machine: {setting}; baseline rows carry {payload_bytes} bytes of JSONB")
    print(f"Load generator: {CLIENTS[client]}")
    if api_processes > 1:
        print(
            f"API processes: {api_processes}, each `guanai api` on its own port; the clients connect to them round "
            "robin (one client: the first); the api column counts all of them, the HTTP edge the first"
        )
    for phase in phases:
        print_table(
            SUMMARY_HEADERS, [s.row() for s in phase.summaries()], title=f"{phase.name} ({phase.events} events stored)"
        )
        if phase.reconnects:
            print(f"{phase.name}: the server closed an idle connection {phase.reconnects} times (opened again)")

    def row(name: str, s: Summary, per_second: float) -> list[Any]:
        return [name, s.count, f"{s.throughput:.1f}", f"{per_second:.1f}", f"{s.ms(50):.2f}", f"{s.ms(99):.2f}"]

    rows = []
    for phase, base in zip(phases, baselines, strict=False):
        api, events = phase.overall, phase.events / phase.elapsed
        rows += [row(phase.name, api, events), row(base.name, base, base.throughput)]
        rows.append(
            [
                f"ratio API / baseline ({phase.clients})",
                "",
                f"{api.throughput / base.throughput:.3f}",
                f"{events / base.throughput:.3f}",
                "",
                "",
            ]
        )
    rows += [row(b.name, b, b.throughput) for b in baselines[len(phases) :]]
    print_table(
        ["phase", "requests", "req/s", "rows/s", "p50 ms", "p99 ms"],
        rows,
        title="API against the baseline (rows/s: events for the API)",
    )

    one = phases[1]
    child = next(x for x in one.summaries() if x.name == "register_child")
    through_api = Summary("register_child through the API, 1 client", one.elapsed, child.latencies)
    floor_rows = [
        [
            floor.http_only.name,
            f"{floor.http_only.ms(50):.2f}",
            f"{floor.http_only.ms(99):.2f}",
            f"{floor.http_cpu_ms:.2f} (API), {floor.http_load_ms:.2f} (load generator)",
        ],
        [
            floor.app_only.name,
            f"{floor.app_only.ms(50):.2f}",
            f"{floor.app_only.ms(99):.2f}",
            f"{floor.app_cpu_ms:.2f} (caller)",
        ],
        [
            through_api.name,
            f"{through_api.ms(50):.2f}",
            f"{through_api.ms(99):.2f}",
            f"{one.cpu['api'] / max(one.overall.count, 1) * 1000:.2f} (API, all kinds), "
            + f"{one.cpu['load_generator'] / max(one.overall.count, 1) * 1000:.2f} (load generator)",
        ],
        [baselines[1].name, f"{baselines[1].ms(50):.2f}", f"{baselines[1].ms(99):.2f}", ""],
    ]
    print_table(
        ["one request at a time", "p50 ms", "p99 ms", "CPU ms/request"],
        floor_rows,
        title="Where the latency floor goes",
    )

    cpu_rows = []
    for phase in phases:
        n, u = phase.overall.count or 1, phase.cpu
        busy = u["machine"] / (phase.elapsed * (os.cpu_count() or 1)) * 100
        keys = ("api", "projector", "database", "postgres", "load_generator", "other")
        per_request = (f"{u[k] / n * 1000:.2f}" for k in keys)
        cpu_rows.append([phase.name, *per_request, f"{busy:.0f}%", f"{phase.views_lag:.1f}"])
    print_table(
        [
            "phase",
            "api",
            "projector",
            "pg (this db)",
            "pg (server)",
            "load gen",
            "other",
            "machine busy",
            "views lag s",
        ],
        cpu_rows,
        title="CPU ms per request by process (pg: this run's database's backends, and the whole server's); "
        "views lag: projector catch-up after the last command",
    )
    for phase in phases:
        if phase.api_cpu:
            n = phase.overall.count or 1
            each = ", ".join(f"{seconds / n * 1000:.2f}" for seconds in phase.api_cpu)
            print(f"{phase.name}: CPU ms per request of each API process (of all requests): {each}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.api_ingest", description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=8, help="concurrent API clients and baseline connections (default 8)")
    p.add_argument("--requests", type=int, default=2000, help="API requests in the concurrent phase (default 2000)")
    p.add_argument("--floor-requests", type=int, default=300, help="API requests with one client (default 300)")
    p.add_argument(
        "--baseline-requests", type=int, default=5000, help="INSERT transactions per baseline phase (default 5000)"
    )
    p.add_argument("--duration", type=float, help="stop starting new batches after this many seconds per API phase")
    p.add_argument(
        "--database-url", default=DEFAULT_SERVER_URL, help="PostgreSQL server (a scratch database is created on it)"
    )
    p.add_argument("--villages", type=int, default=5, help="villages per township in the seeded county (default 5)")
    p.add_argument(
        "--api-env",
        action="append",
        default=[],
        metavar="GUANAI_X=VALUE",
        help="extra setting for the API and projector processes, e.g. GUANAI_DB_POOL_SIZE=20 (repeatable)",
    )
    p.add_argument(
        "--api-processes",
        type=int,
        default=1,
        metavar="N",
        help="API processes (`guanai api`, each on its own port), the clients spread over them round robin; "
        "their CPU is counted together in the api column (default 1; more need a NATS server)",
    )
    p.add_argument(
        "--client",
        choices=sorted(CLIENTS),
        default="lean",
        help="the load generator's HTTP client for the timed phases (default lean: bench/lean_http.py)",
    )
    args = p.parse_args(argv)
    if args.api_processes < 1:
        p.error("--api-processes takes a number of at least 1")
    sigterm_as_interrupt()
    nats_url = DEFAULT_NATS_URL if reachable(DEFAULT_NATS_URL) else None
    if args.api_processes > 1 and not nats_url:
        p.error(
            f"--api-processes {args.api_processes} needs the NATS server at {DEFAULT_NATS_URL} (each would embed one)"
        )
    if any(not item.startswith("GUANAI_") or "=" not in item for item in args.api_env):
        p.error("--api-env takes GUANAI_NAME=VALUE")
    extra_env = dict(item.split("=", 1) for item in args.api_env)
    try:
        setting = server_facts(args.database_url) + f"; NATS {nats_url or 'embedded (started by `guanai api`)'}"
        with (
            scratch_database(args.database_url, prefix="guanai_bench_ingest") as database_url,
            guanai_server(
                database_url, nats_url=nats_url, extra_env=extra_env, api_processes=args.api_processes
            ) as server,
        ):
            villages = seed_county(server, server.token(), args.villages)
            apis = ", ".join(f"{a.pid} on {url}" for a, url in zip(server.apis, server.base_urls, strict=True))
            print(
                f"API pid{'s' if len(server.apis) > 1 else ''} {apis}, projector pid {server.projector.pid}; "
                f"{len(villages)} villages",
                file=sys.stderr,
            )
            phases = [
                run_api_phase(server, database_url, villages, args.clients, args.requests, args.duration, args.client)
            ]
            print(f"{phases[0].name}: {phases[0].overall.throughput:.1f} req/s", file=sys.stderr)
            phases.append(
                run_api_phase(server, database_url, villages, 1, args.floor_requests, args.duration, args.client)
            )
            floor = measure_floor(server, database_url, villages[0], args.floor_requests, args.client)
            payload = person_payload(database_url)
            runs = [
                (args.clients, False, f"INSERT baseline, {args.clients} conns"),
                (1, False, "INSERT baseline, 1 conn"),
                (args.clients, True, f"INSERT + LOCK TABLE + NOTIFY, {args.clients} conns"),
            ]
            baselines, baseline_cpu = [], []
            for n, lock, name in runs:
                began = time.process_time()  # the baseline's client: psycopg in this process's threads
                baselines.append(
                    insert_baseline(
                        database_url,
                        clients=n,
                        requests=args.baseline_requests,
                        payload=payload,
                        lock_table=lock,
                        name=name,
                    )
                )
                baseline_cpu.append((time.process_time() - began) / args.baseline_requests * 1000)
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    except psycopg.OperationalError as e:  # e.g. the shared server is out of connections
        print(f"PostgreSQL refused: {e}; everything started was stopped", file=sys.stderr)
        return 2
    report(phases, baselines, floor, payload["target_bytes"], setting, args.client, args.api_processes)
    print(
        "The INSERT baselines' client (psycopg; its connections and table included), CPU ms a row: "
        + ", ".join(f"{b.name} {ms:.3f}" for b, ms in zip(baselines, baseline_cpu, strict=True))
    )
    failures = [f for ph in phases for f in ph.failures]
    for f in failures[:10]:
        print(f"FAILED {f}", file=sys.stderr)
    errors = sum(ph.overall.errors for ph in phases) + sum(b.errors for b in baselines)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
