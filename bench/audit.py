"""The cost of tamper evidence and the speed of the auditors' tools, in one run.

    python -m bench.audit [--events 1000000] [--writers 4] [--commands 400] [--rounds 4]
                          [--database-url URL | --embedded]

1. Writes with the chain on vs off: the same command workload (register an elder, then add and
   remove risk tags: four commands, four events) from N threads through CareApplication, on a
   fresh database per run, alternating on/off for ``--rounds`` rounds; and the same with the
   recorder alone (one prepared event per transaction), which isolates the chain's own cost
   from the application's.
2. Verify rate: ``--events`` genuine events (persons registered and changed through the domain
   aggregates, stored through the chained recorder in batches of 500) are walked by
   ``infrastructure.verify.verify_events``; events/s of the walk, and of the bulk insert that made them.
3. As-of replay of one stream of 1,000 events (a month and a half of changes, one an hour):
   ``Audit.state_as_of`` at random instants on both axes and the replay page, beside the
   library's plain load of the current state (the floor).

Uses the PostgreSQL at ``--database-url`` (default: the machine's), or an embedded one under a
temporary directory with ``--embedded`` (also when the server refuses connections). Every
database made here is dropped at the end. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from application.care import CareApplication
from bench.common import (
    DEFAULT_SERVER_URL,
    SUMMARY_HEADERS,
    Summary,
    code_version,
    make_care,
    print_table,
    scratch_database,
    server_facts,
)
from domain.base import CommandMeta
from domain.org_unit import OrgUnit
from domain.person import Person
from domain.vocabulary import OrgLevel, PersonKind, RiskTag, Sex
from infrastructure.audit import Audit
from infrastructure.chain import ChainKey
from infrastructure.verify import verify_events

KEY = "bench-audit-chain-key-" + "b" * 32
SURNAMES = "王李张刘陈杨赵黄周吴"


def meta(at: datetime | None = None) -> CommandMeta:
    return CommandMeta(
        actor_id="bench",
        actor_role="village_cadre",
        correlation_id=uuid.uuid4().hex,
        occurred_at=at or datetime.now(UTC),
    )


def open_app(url: str, chain: bool, pool: int = 8) -> CareApplication:
    return make_care(
        url, pool_size=pool, env={"GUANAI_CHAIN_KEY": KEY, "GUANAI_AUDIT_CHAIN": "true" if chain else "false"}
    )


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


def person_kwargs(rng: random.Random, village: OrgUnit) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "kind": PersonKind.ELDER,
        "name": rng.choice(SURNAMES) + "秀英",
        "sex": Sex.FEMALE,
        "birth_date": date(1940 + rng.randrange(20), 1 + rng.randrange(12), 1 + rng.randrange(28)),
        "risk_tags": [RiskTag.LIVING_ALONE],
    }


def register(village: OrgUnit, m: CommandMeta, rng: random.Random) -> Person:
    """Through the domain, as the application would (for bulk generation without its round trips)."""
    extra = {
        "id_number": None,
        "household": "",
        "guardian": None,
        "parents": [],
        "absent_children": [{"name": "李强", "relation": "son", "whereabouts": "广东东莞"}],
        "care_agreement_signed_on": None,
    }
    return Person.register(village=village, meta=m, **person_kwargs(rng, village), **extra)


# ---- 1. writes with the chain on and off ----------------------------------------------------------


def threaded(workers: int, job: Callable[[int, list[float]], None]) -> Summary:
    latencies: list[list[float]] = [[] for _ in range(workers)]
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            job(n, latencies[n])
        except BaseException as e:  # noqa: BLE001 - counted and shown
            errors.append(e)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(workers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    summary = Summary("", time.perf_counter() - started, [x for part in latencies for x in part], len(errors))
    if errors:
        print(f"  {len(errors)} worker(s) failed: {errors[0]!r}", file=sys.stderr)
    return summary


def command_writes(url: str, chain: bool, writers: int, commands: int) -> Summary:
    app = open_app(url, chain)
    try:
        village = make_village(app)

        def job(n: int, lat: list[float]) -> None:
            rng = random.Random(n)
            for _ in range(commands // 4):
                kw = person_kwargs(rng, village)
                pid = kw["id"]
                steps = [
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


def recorder_writes(url: str, chain: bool, writers: int, count: int) -> Summary:
    app = open_app(url, chain)
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


def bench_writes(server: str, writers: int, commands: int, rounds: int) -> None:
    rows: list[list[Any]] = []
    rates: dict[tuple[str, bool], list[float]] = {}
    for r in range(rounds):
        for chain in (True, False) if r % 2 == 0 else (False, True):
            label = "on" if chain else "off"
            for kind, run in (("commands", command_writes), ("recorder", recorder_writes)):
                with scratch_database(server, "guanai_bench_audit") as url:
                    s = run(url, chain, writers, commands)
                s.name = f"{kind}{', 1 event/tx' if kind == 'recorder' else ''}, chain {label} (round {r + 1})"
                rows.append(s.row())
                rates.setdefault((kind, chain), []).append(s.throughput)
    title = f"Writes with the chain on and off ({writers} threads; each command writes one event)"
    print_table(SUMMARY_HEADERS, rows, title=title)
    summary = []
    for kind in ("commands", "recorder"):
        on, off = statistics.median(rates[kind, True]), statistics.median(rates[kind, False])
        summary.append([kind, f"{on:.0f}", f"{off:.0f}", f"{100 * (off - on) / off:.1f}%"])
    print_table(["median over rounds", "chain on /s", "chain off /s", "cost of the chain"], summary)


# ---- 2. verify rate ---------------------------------------------------------------------------------


def bulk_events(app: CareApplication, village: OrgUnit, count: int, batch: int = 500) -> tuple[int, float]:
    """Genuine events made by the domain (five per person) and stored through the chained recorder."""
    rng, written, pending, started, last = random.Random(7), 0, [], time.perf_counter(), time.monotonic()
    to_stored = app.mapper.to_stored_event
    while written < count:
        m = meta()
        p = register(village, m, rng)
        p.add_risk_tag(RiskTag.ADVANCED_AGE, m)
        p.add_risk_tag(RiskTag.DIBAO, m)
        p.remove_risk_tag(RiskTag.DIBAO, m)
        p.remove_risk_tag(RiskTag.LIVING_ALONE, m)
        pending.extend(to_stored(e) for e in p.collect_events())
        if len(pending) >= batch or written + len(pending) >= count:
            app.recorder.insert_events(pending)
            written += len(pending)
            pending = []
            if time.monotonic() - last > 10:
                last = time.monotonic()
                print(f"  generated {written:,} of {count:,} events", file=sys.stderr, flush=True)
    return written, time.perf_counter() - started


def bench_verify(server: str, events: int) -> None:
    with scratch_database(server, "guanai_bench_audit") as url:
        app = open_app(url, chain=True, pool=2)
        try:
            written, took = bulk_events(app, make_village(app), events)
        finally:
            app.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            size = conn.execute(
                "SELECT pg_size_pretty(pg_total_relation_size('guanai_events')), "
                "pg_size_pretty(pg_total_relation_size('guanai_events_chain'))"
            ).fetchone()
        rows = [
            [
                "bulk insert through the chained recorder (500 events/tx)",
                f"{written + 3:,}",
                f"{took:.1f}",
                f"{written / took:,.0f}",
            ]
        ]
        for n in (1, 2):
            result = verify_events(
                url,
                ChainKey(KEY),
                progress=lambda pos, end, checked: print(f"  verified {checked:,}", file=sys.stderr, flush=True),
            )
            assert result.ok, result.failures
            rows.append(
                [
                    f"verify, whole log (run {n})",
                    f"{result.checked:,}",
                    f"{result.elapsed_seconds:.1f}",
                    f"{result.checked / result.elapsed_seconds:,.0f}",
                ]
            )
        print_table(
            ["phase", "events", "seconds", "events/s"],
            rows,
            title=f"Verify rate (events table {size[0]}, chain table {size[1]})",
        )


# ---- 3. as-of replay ------------------------------------------------------------------------------


def bench_replay(server: str, length: int = 1000, probes: int = 200) -> None:
    with scratch_database(server, "guanai_bench_audit") as url:
        app = open_app(url, chain=True, pool=2)
        try:
            village = make_village(app)
            start = datetime.now(UTC) - timedelta(hours=length + 1)
            m = meta(start)
            p = register(village, m, random.Random(3))
            for n in range(1, length):
                step = meta(start + timedelta(hours=n))
                (p.add_risk_tag if n % 2 else p.remove_risk_tag)(RiskTag.DIBAO, step)
            stored = [app.mapper.to_stored_event(e) for e in p.collect_events()]
            for i in range(0, len(stored), 100):  # recorded in 10 batches, as a long-lived case would be
                app.recorder.insert_events(stored[i : i + 100])
            audit, rng = Audit(app, url), random.Random(5)
            recorded = [e.timestamp for e in app.history(p.id)]
            rows = []
            for name, call in [
                (
                    "state as of, time=occurred",
                    lambda: audit.state_as_of(p.id, start + timedelta(hours=rng.uniform(0, length)), "occurred"),
                ),
                ("state as of, time=recorded", lambda: audit.state_as_of(p.id, rng.choice(recorded), "recorded")),
                (
                    "replay page (100 events, lateness marks)",
                    lambda: audit.stream(p.id, after_version=rng.randrange(length - 100), limit=100),
                ),
                ("baseline: library load of the current state", lambda: app.repository.get(p.id)),
            ]:
                s = Summary(name, 0.0)
                started = time.perf_counter()
                for _ in range(probes):
                    t = time.perf_counter()
                    call()
                    s.latencies.append(time.perf_counter() - t)
                s.elapsed = time.perf_counter() - started
                rows.append(s.row())
            print_table(
                SUMMARY_HEADERS,
                rows,
                title=f"As-of replay of one stream of {length} events ({probes} probes each, one thread)",
            )
        finally:
            app.close()


@contextlib.contextmanager
def postgres(url: str | None, embedded: bool) -> Iterator[str]:
    server = url or DEFAULT_SERVER_URL
    if not embedded:
        try:
            psycopg.connect(server, connect_timeout=3).close()
        except psycopg.Error as e:
            print(f"bench: {server} refused ({str(e).strip()[:80]}); using an embedded PostgreSQL", file=sys.stderr)
            embedded = True
    if not embedded:
        yield server
        return
    from infrastructure.embedded import start_postgres

    data_dir = tempfile.mkdtemp(prefix="guanai-bench-pg-")
    pg = start_postgres(data_dir, database="postgres")
    try:
        yield pg.admin_url
    finally:
        pg.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000, help="events to verify")
    p.add_argument("--writers", type=int, default=4, help="writer threads")
    p.add_argument("--commands", type=int, default=400, help="commands per writer per run")
    p.add_argument("--rounds", type=int, default=4, help="on/off rounds (the order alternates)")
    p.add_argument(
        "--database-url", help=f"a PostgreSQL server to make scratch databases on (default {DEFAULT_SERVER_URL})"
    )
    p.add_argument("--embedded", action="store_true", help="use an embedded PostgreSQL under a temporary directory")
    p.add_argument("--skip", action="append", default=[], choices=("writes", "verify", "replay"))
    args = p.parse_args(argv)
    with postgres(args.database_url, args.embedded) as server:
        print(f"bench.audit at {code_version()}; {server_facts(server)}")
        if "writes" not in args.skip:
            bench_writes(server, args.writers, args.commands, args.rounds)
        if "replay" not in args.skip:
            bench_replay(server)
        if "verify" not in args.skip:
            bench_verify(server, args.events)
    return 0


if __name__ == "__main__":
    sys.exit(main())
