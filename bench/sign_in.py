"""Sign-in latency and its cost, beside the Argon2id hash alone, in one run.

    python -m bench.sign_in [--requests 200] [--database-url URL]

Starts a scratch database and the API and projector as separate processes (failed sign-in
throttles off), opens and activates eight village cadres' accounts through an administrator
(unmeasured), then measures ``POST /auth/sign-in`` (phone and password, a bearer session) with
1 and with 8 clients at once, each client its own account: p50, p99, sign-ins per second, and the
API process's CPU milliseconds per sign-in (PostgreSQL's are not counted: the server is shared
with other work on a loaded machine). The baseline, in this process in the same run with the
same parameters (``infrastructure/passwords.py``): verifying one Argon2id hash, from 1 and from 8
threads, with each verification's CPU time. A sign-in is the hash plus an account lookup, a load of the account, a session row, a
refresh token and a JWT; the difference between the two is what the rest costs.

Prints Markdown tables; exits 1 if a sign-in failed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from bench.common import (
    DEFAULT_NATS_URL,
    DEFAULT_SERVER_URL,
    CpuMeter,
    Summary,
    code_version,
    guanai_server,
    print_table,
    reachable,
    scratch_database,
    server_facts,
    sigterm_as_interrupt,
)
from infrastructure.passwords import PasswordHasher

PASSWORD = "基准测试的密码-bench-2026"
CLIENTS = (1, 8)


def accounts(base_url: str, admin: str, n: int) -> list[str]:
    """``n`` activated village cadres' accounts in a fresh county: their phone numbers."""
    headers = {"Authorization": f"Bearer {admin}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as c:
        base = f"{uuid.uuid4().int % 10**6:06d}"
        county = c.post("/org-units", json={"code": base + "000000", "name": "基准县", "level": "county"}).json()
        town = c.post("/org-units", json={"code": base + "101000", "name": "基准镇", "level": "township",
                                          "parent_id": county["id"]}).json()  # fmt: skip
        village = c.post("/org-units", json={"code": base + "101001", "name": "基准村", "level": "village",
                                             "parent_id": town["id"]}).json()  # fmt: skip
        phones = []
        for _ in range(n):
            phone = "135" + f"{uuid.uuid4().int % 10**8:08d}"
            made = c.post("/accounts", json={"role": "village_cadre", "org_unit_id": village["id"], "phone": phone})
            made.raise_for_status()
            body = {"phone": phone, "activation_code": made.json()["activation_code"], "password": PASSWORD}
            c.post("/auth/activate", json=body, headers={"Authorization": ""}).raise_for_status()
            phones.append(phone)
    return phones


def sign_ins(base_url: str, phones: list[str], clients: int, requests: int) -> Summary:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    per_client = max(1, requests // clients)

    def client(phone: str) -> None:
        with httpx.Client(base_url=base_url, timeout=60) as c:
            for _ in range(per_client):
                t0 = time.perf_counter()
                r = c.post("/auth/sign-in", json={"phone": phone, "password": PASSWORD, "device_name": "bench"})
                took = time.perf_counter() - t0
                with lock:
                    if r.status_code == 200:
                        latencies.append(took)
                    else:
                        errors[0] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, phones[:clients]))
    return Summary(f"sign-in, {clients} client{'s' if clients > 1 else ''}", time.perf_counter() - started,
                   latencies, errors[0])  # fmt: skip


def hashes(hasher: PasswordHasher, stored: str, threads: int, requests: int) -> tuple[Summary, float]:
    """The verifications' latencies, and their median CPU time (each thread's own clock)."""
    latencies: list[float] = []
    cpu: list[float] = []
    lock = threading.Lock()
    per_thread = max(1, requests // threads)

    def work(_: int) -> None:
        for _ in range(per_thread):
            t0, c0 = time.perf_counter(), time.thread_time()
            assert hasher.verify(stored, PASSWORD)
            took, used = time.perf_counter() - t0, time.thread_time() - c0
            with lock:
                latencies.append(took)
                cpu.append(used)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))
    summary = Summary(f"Argon2id verify alone, {threads} thread{'s' if threads > 1 else ''}",
                      time.perf_counter() - started, latencies)  # fmt: skip
    return summary, statistics.median(cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="sign-ins (and hashes) per measured phase")
    parser.add_argument("--database-url", default=DEFAULT_SERVER_URL, help="a PostgreSQL server's postgres database")
    parser.add_argument("--nats-url", default=DEFAULT_NATS_URL)
    args = parser.parse_args(argv)
    sigterm_as_interrupt()
    hasher = PasswordHasher()
    print(f"code {code_version()}; {server_facts(args.database_url)}; {hasher.parameters}")
    rows: list[list[Any]] = []
    cpu_rows: list[list[Any]] = []
    failed = False
    stored = hasher.hash(PASSWORD)
    nats = args.nats_url if reachable(args.nats_url) else None
    with (
        scratch_database(args.database_url) as url,
        guanai_server(url, nats_url=nats, extra_env={"GUANAI_SIGN_IN_FAILURES_FREE": "0"}) as server,
    ):
        phones = accounts(server.base_url, server.token(), max(CLIENTS))
        sign_ins(server.base_url, phones, 1, 5)  # warm-up: connections, caches
        for clients in CLIENTS:
            baseline, hash_cpu = hashes(hasher, stored, clients, args.requests)
            with CpuMeter({"api": server.api.pid}) as meter:
                measured = sign_ins(server.base_url, phones, clients, args.requests)
            failed = failed or measured.errors > 0
            for s in (measured, baseline):
                rows.append([s.name, s.count, f"{s.ms(50):.1f}", f"{s.ms(99):.1f}", f"{s.throughput:.1f}"])
            api_ms = meter.used["api"] / max(1, measured.count) * 1000
            cpu_rows.append(
                [f"{clients} client{'s' if clients > 1 else ''}", f"{api_ms:.1f}", f"{hash_cpu * 1000:.1f}"]
            )
    print_table(["phase", "n", "p50 ms", "p99 ms", "per s"], rows, "Sign-in and the hash alone")
    print_table(["load", "API process CPU ms / sign-in", "hash alone CPU ms (median)"], cpu_rows, "CPU per sign-in")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
