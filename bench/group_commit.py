"""The event store's group commit, in one process: commands from N threads with saves grouped
and with each save its own transaction, against single-row INSERTs, in one run.

    python -m bench.group_commit [--clients 8] [--commands 1000] [--rounds 2]

A scratch database on the PostgreSQL at 127.0.0.1:5432 (``--database-url``), dropped at the end.
A village is seeded; then N threads register elders through the application (sealed name, ID
number lookup row, a new data key each: what a registration drive does), ``--commands`` per
phase, in alternating phases of the modes (``--rounds`` each, so that the machine's load falls
on all alike): ``grouped`` (``infrastructure/group_commit.py``) or ``single`` (the library's
insert, one transaction per save), each with the person's new data key written in the save's
transaction (``key in the save``) or in its own durable transaction first (``key's own
transaction``; ``single, key's own transaction`` is the store before issue 19's work); and
``keys made before`` (``prepare_keys``, outside the measured time): no key written at all; and
``savepoint per save``: the group written with a savepoint per save instead of the conflict
check before one insert. The baseline is N connections committing
single-row INSERT transactions (``bench.common.insert_baseline``). CPU seconds per command of this
process and of the PostgreSQL backends connected to the scratch database (the application's
pool) are read from /proc for each phase. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
from datetime import UTC, date, datetime
from typing import Any

import psycopg

from application.care import CareApplication
from bench.common import (
    DEFAULT_SERVER_URL,
    CpuMeter,
    backends_cpu,
    code_version,
    insert_baseline,
    make_care,
    postmaster_pid,
    print_table,
    scratch_database,
)
from domain.base import CommandMeta
from domain.vocabulary import OrgLevel, PersonKind, RiskTag, Sex


def meta() -> CommandMeta:
    return CommandMeta(
        actor_id="bench", actor_role="administrator", correlation_id=str(uuid.uuid4()), occurred_at=datetime.now(UTC)
    )


def one_village(app: CareApplication) -> uuid.UUID:
    """A county of one township of one village, under fresh codes; the village's id."""
    code = f"{uuid.uuid4().int % 10**6:06d}"
    county = app.register_org_unit(code=code + "000000", name="县", level=OrgLevel.COUNTY, parent_id=None, meta=meta())
    town = app.register_org_unit(
        code=code + "101000", name="镇", level=OrgLevel.TOWNSHIP, parent_id=county.id, meta=meta()
    )
    return app.register_org_unit(
        code=code + "101001", name="村", level=OrgLevel.VILLAGE, parent_id=town.id, meta=meta()
    ).id


def id_number(n: int) -> str:
    first17 = f"5325241941{n:07d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights, strict=True)) % 11]


def phase(app: Any, village: uuid.UUID, clients: int, commands: int, start: int, *, keys_first: bool) -> dict[str, Any]:
    ids = [uuid.uuid4() for _ in range(commands)]
    if keys_first:
        app.prepare_keys(ids)
    tickets = iter(range(commands))
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1)

    def work() -> None:
        barrier.wait()
        while True:
            with lock:
                n = next(tickets, None)
            if n is None:
                return
            began = time.perf_counter()
            try:
                app.register_person(
                    id=ids[n], kind=PersonKind.ELDER, name="李秀英", sex=Sex.FEMALE, birth_date=date(1941, 5, 6),
                    village_id=village, id_number=id_number(start + n), risk_tags=[RiskTag.LIVING_ALONE], meta=meta(),
                )  # fmt: skip
            except Exception as e:  # noqa: BLE001 - counted and shown
                errors.append(e)
                continue
            with lock:
                latencies.append(time.perf_counter() - began)

    threads = [threading.Thread(target=work) for _ in range(clients)]
    for t in threads:
        t.start()
    committer = app.recorder.group_committer
    before = (committer.groups, committer.saves) if committer else (0, 0)
    backends_before = backend_cpu(app_url(app))
    with CpuMeter({}, postmaster_pid(app_url(app))) as cpu:
        barrier.wait()
        began = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - began
    backends_after = backend_cpu(app_url(app))
    own_backends = sum(v - backends_before.get(pid, 0.0) for pid, v in backends_after.items())
    if errors:
        raise RuntimeError(f"{len(errors)} commands failed: {errors[0]!r}")
    latencies.sort()
    groups = (committer.groups - before[0], committer.saves - before[1]) if committer else (commands, commands)
    return {
        "rate": commands / elapsed,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "cpu_self": cpu.used["load_generator"] / commands * 1000,
        "cpu_pg": own_backends / commands * 1000,
        "group": groups[1] / max(groups[0], 1),
    }


_URLS: dict[int, str] = {}


def backend_cpu(url: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend connected to this run's scratch database (the
    server is shared: its other processes' CPU is not this run's). A backend that ended during a
    phase is missed; the pool keeps its connections, so none should."""
    with psycopg.connect(url, autocommit=True) as conn:
        return backends_cpu(conn, conn.info.dbname)


MODES = (
    "grouped, key in the save",
    "grouped, key's own transaction",
    "single, key's own transaction",
    "single, key in the save",
    "grouped, keys made before",
    "grouped, savepoint per save, key in the save",
)


def app_url(app: Any) -> str:
    return _URLS[id(app)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--commands", type=int, default=1000, help="registrations per phase (default 1000)")
    p.add_argument("--rounds", type=int, default=2, help="phases of each mode, alternating (default 2)")
    p.add_argument("--database-url", default=DEFAULT_SERVER_URL)
    p.add_argument("--modes", help="only these modes, separated by ';' (default: all)")
    args = p.parse_args()
    print(f"code {code_version()}, load average at start {os.getloadavg()[0]:.2f}, clients {args.clients}")
    with scratch_database(args.database_url) as url:
        app = make_care(url, pool_size=args.clients + 4)
        _URLS[id(app)] = url
        try:
            village = one_village(app)
            committer = app.recorder.group_committer
            phase(app, village, args.clients, min(200, args.commands), 0, keys_first=False)  # warm-up
            results: dict[str, list[dict[str, Any]]] = {}
            start = 1000
            for _ in range(args.rounds):
                for mode in [m for m in MODES if not args.modes or m in args.modes.split(";")]:
                    app.recorder.group_committer = committer if mode.startswith("grouped") else None
                    app.store.key_store.fold = "key in the save" in mode
                    app.recorder.savepoints = "savepoint" in mode
                    r = phase(app, village, args.clients, args.commands, start, keys_first="made before" in mode)
                    start += args.commands
                    results.setdefault(mode, []).append(r)
            app.recorder.group_committer = committer
            baseline = insert_baseline(
                url, clients=args.clients, requests=5000, payload={"name": "李秀英" * 40, "n": 1}
            )
        finally:
            app.close()
    base_rate = baseline.throughput
    rows = []
    for mode, runs in results.items():
        mean = {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}
        rows.append(
            [
                mode,
                f"{mean['rate']:.0f}",
                f"{mean['rate'] / base_rate:.3f}",
                f"{mean['p50']:.2f}",
                f"{mean['p99']:.2f}",
                f"{mean['cpu_self']:.2f}",
                f"{mean['cpu_pg']:.2f}",
                f"{mean['group']:.1f}",
            ]
        )
    rows.append([f"INSERT baseline, {args.clients} conns", f"{base_rate:.0f}", "1", "", "", "", "", ""])
    print_table(
        [
            f"registrations, {args.clients} threads",
            "per s",
            "/ INSERT",
            "p50 ms",
            "p99 ms",
            "CPU ms/cmd (this process)",
            "CPU ms/cmd (PostgreSQL)",
            "saves per group",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
