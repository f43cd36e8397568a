"""Projection rebuild rates and view read latencies over a store of a million events, in one run.

    python -m bench.projections [--events 1000000] [--reads 500] [--database-url URL]

1. Writes about ``--events`` genuine events into a scratch database (bench/projections_data.py:
   five counties of 4,000 people visited weekly, emergency reports, and one person whose
   timeline has 1,000 entries), through the application's recorder in batches.
2. Baselines, over the same log: reading every notification raw (``select_notifications`` in
   batches of 5,000; and the same rows from a binary cursor as plain tuples, as a rebuild now
   reads them: each view's ratio is to the faster of the two, read just before it), and reading
   plus decoding each into a domain event (the part of a rebuild that no view can avoid).
3. ``runner.rebuild(NAME)`` of every view (new tables, swapped in), in events/s.
4. Read latency, with the views complete: the heavy person's timeline (first page of 50,
   newest first, and a page 500 entries deep by cursor), a county's supervision summary and its
   overdue list, each beside a plain 50-row read of the event store by primary key (the summary
   also from the view's rows, as it was read before the projection kept counts per unit); then
   the same timeline (as an administrator, and as the person's county supervisor), summary and
   list through ``guanai api`` over HTTP, beside ``GET /health`` and the 50-row read, taking
   turns in rounds, with the API's CPU per request.

Every database made here is dropped at the end, unless ``--keep NAME`` names one: then the store
is written there once, its description kept in a table ``bench_store``, and later runs with the
same name reuse it (so that before and after measure the same million events; drop it yourself
with ``DROP DATABASE NAME WITH (FORCE)``). ``--phases`` picks what to measure. Prints Markdown
tables.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import msgspec
import psycopg
from psycopg import sql
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from application.care import CareApplication
from bench.common import (
    DEFAULT_SERVER_URL,
    SUMMARY_HEADERS,
    BackendCpu,
    CpuMeter,
    Summary,
    code_version,
    guanai_server,
    make_care,
    print_table,
    scratch_database,
    server_facts,
    sigterm_as_interrupt,
    with_database,
)
from bench.projections_data import HEAVY_ENTRIES, Store, generate
from guanai.bootstrap import Process
from projections import all_projections
from projections.batches import decode_all
from projections.rebuild import REBUILD_GC_THRESHOLD
from projections.runner import ProjectionRunner
from projections.supervision import CHINA
from projections.supervision_view import Period, SupervisionView
from projections.timeline import TimelineView

BATCH = 5000
# Writers must share the audit chain's key: the bench's writes and the API's (access logs) alike.
CHAIN_KEY = "bench-projections-chain-key-" + "p" * 32
# A kept store is opened again by later runs: its personal data keys are wrapped by this one.
KEPT_MASTER_KEY = "bench-projections-master-key-" + "k" * 32


def timed(name: str, n: int, fn: Callable[[], Any]) -> Summary:
    latencies = []
    started = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        latencies.append(time.perf_counter() - t0)
    return Summary(name, time.perf_counter() - started, latencies)


def read_log(app: CareApplication, decode: bool, binary: bool = False) -> tuple[int, float, float]:
    """Every notification in batches of BATCH (decoded in batches when ``decode``, as a rebuild
    does): (count, wall seconds, CPU seconds of this process). ``binary``: the rows as a rebuild
    reads them (projections/rebuild.py: plain tuples from a binary cursor, the states' bytes as
    they are), instead of the library's ``select_notifications`` (text, a Notification a row)."""
    started, cpu, position, count = time.perf_counter(), time.process_time(), 0, 0
    if binary:
        recorder = app.recorder
        table = sql.Identifier(recorder.datastore.schema, recorder.events_table_name)  # type: ignore[attr-defined]
        query = sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM {} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
        ).format(table)
        while True:
            with (
                recorder.datastore.get_connection() as conn,  # type: ignore[attr-defined]
                conn.cursor(row_factory=tuple_row, binary=True) as cur,
            ):
                rows = cur.execute(query, (position, BATCH), prepare=True).fetchall()
            if not rows:
                return count, time.perf_counter() - started, time.process_time() - cpu
            count += len(rows)
            position = rows[-1][0]
    while True:
        notifications = app.recorder.select_notifications(start=position, limit=BATCH, inclusive_of_start=False)
        if not notifications:
            return count, time.perf_counter() - started, time.process_time() - cpu
        if decode:
            decode_all(app.mapper, notifications)
        count += len(notifications)
        position = notifications[-1].id


def rebuild_rates(url: str, events: int, keys: dict[str, str], views: list[str] | None = None) -> None:
    """Each view's rebuild beside a raw read of the log made just before it (the load moves
    between phases), with the CPU time of this process per event (the reading thread counted
    too). The application is a projector's, as ``guanai projections rebuild`` builds it: it
    opens no personal data."""
    app = make_care(url, pool_size=4, env=keys, kind=Process.PROJECTOR)
    rows = []

    def row(label: str, count: int, seconds: float, cpu: float, raw: float, server: float | None = None) -> list[str]:
        rate = count / seconds
        backends = "" if server is None else f"{server / count * 1e6:.1f}"
        return [label, f"{count:,}", f"{seconds:.1f}", f"{rate:,.0f}", f"{rate / raw:.2f}", f"{cpu / count * 1e6:.1f}",
                backends]  # fmt: skip

    count, seconds, cpu = read_log(app, decode=False)
    raw = count / seconds
    rows.append(row("baseline: read the log raw", count, seconds, cpu, raw))
    count, seconds, cpu = read_log(app, decode=False, binary=True)
    rows.append(row("baseline: read the log raw, binary (as a rebuild reads)", count, seconds, cpu, raw))
    count, seconds, cpu = read_log(app, decode=True)
    rows.append(row("baseline: read and decode", count, seconds, cpu, raw))
    runner = ProjectionRunner(app, url, all_projections(), pool_size=2)
    runner.open()
    try:
        for projection in runner.projections:
            if views and projection.name not in views:
                continue
            # The raw read the ratio is taken to: the faster of the library's read and the
            # rebuild's own (binary, plain rows), so that a faster way of reading counts for
            # the baseline as much as for the rebuild.
            count, seconds, cpu = read_log(app, decode=False)
            with BackendCpu(url) as read_server:
                binary = read_log(app, decode=False, binary=True)
            raw = max(count / seconds, binary[0] / binary[1])
            rows.append(row(f"raw read before {projection.name} (library)", count, seconds, cpu, raw))
            rows.append(row(f"raw read before {projection.name} (binary)", *binary, raw, read_server.seconds))
            with BackendCpu(url) as server:
                started, cpu = time.perf_counter(), time.process_time()
                # As ``guanai projections rebuild`` does: this process does nothing else meanwhile.
                count = runner.rebuild(projection.name, batch_size=BATCH, gc_threshold=REBUILD_GC_THRESHOLD)
                seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            rows.append(row(f"rebuild {projection.name}", count, seconds, cpu, raw, server.seconds))
            print(f"  rebuilt {projection.name}: {count / seconds:,.0f} events/s", file=sys.stderr, flush=True)
        with psycopg.connect(url) as conn:
            entries, tasks = (
                conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("tl_entries", "sv_visits")
            )
    finally:
        runner.close()
        app.close()
    print_table(
        ["what", "events", "seconds", "events/s", "ratio to raw read", "CPU µs/event", "PostgreSQL CPU µs/event"],
        rows,
        title=f"Rebuild rate over {events:,} events (ratio: to the raw read just before; load average {load()})",
    )
    print(f"\nView sizes: {entries:,} timeline entries, {tasks:,} visit tasks in the supervision view")


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def read_latencies(app: CareApplication, url: str, store: Store, reads: int) -> None:
    runner = ProjectionRunner(app, url, all_projections(), pool_size=2)
    runner.open()
    timeline, supervision = TimelineView(runner.pool), SupervisionView(runner.pool)
    person, (county, _code) = store.heavy_person, store.counties[0]
    now = datetime.now(CHINA)
    period = Period.named("half_year", now.date())
    try:
        first = timeline.page(person, limit=50)
        assert first.total == HEAVY_ENTRIES, f"the heavy person has {first.total} entries"
        deep = timeline.page(person, limit=500).next_cursor
        # The counts the projection keeps give the same figures as the rows they count.
        assert supervision.summary(county, period, now=now) == supervision.summary_from_rows(county, period, now=now)
        with psycopg.connect(url, autocommit=True) as conn:
            tail = conn.execute("SELECT max(notification_id) - 50 FROM guanai_events").fetchone()[0]

            def raw() -> None:
                conn.execute(
                    "SELECT * FROM guanai_events WHERE notification_id > %s ORDER BY notification_id LIMIT 50",
                    (tail,),
                    prepare=True,
                ).fetchall()

            results = [
                timed("baseline: 50 events by primary key", reads, raw),
                timed("timeline, first page (50)", reads, lambda: timeline.page(person, limit=50)),
                timed("timeline, page 500 deep", reads, lambda: timeline.page(person, cursor=deep, limit=50)),
                timed("timeline, one kind", reads, lambda: timeline.page(person, kinds=["visit_log"], limit=50)),
                timed("supervision summary, county", reads, lambda: supervision.summary(county, period, now=now)),
                timed(
                    "supervision summary, county, from the rows",
                    reads,
                    lambda: supervision.summary_from_rows(county, period, now=now),
                ),
                timed("overdue list, county (50)", reads, lambda: supervision.overdue(county, now=now)),
            ]
    finally:
        runner.close()
    people = supervision_people(url, county)
    print_table(
        SUMMARY_HEADERS,
        [r.row() for r in results],
        title=f"View reads in-process ({reads} each; a county of {people:,} people, a person with {HEAVY_ENTRIES:,} entries)",
    )


def supervision_people(url: str, county: Any) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT count(*) FROM sv_persons WHERE org_path @> ARRAY[%s]::uuid[]", (county,)
        ).fetchone()[0]


def http_latencies(url: str, store: Store, reads: int, keys: dict[str, str], rounds: int = 10) -> None:
    """One client; the phases take turns in ``rounds`` rounds (so that a change of the machine's
    load falls on all of them alike), after a warm-up of each. Beside each: its p50 and p99 as a
    ratio to the floor's, and the API process's CPU per request. The floor is ``GET /auth/me``
    (token, access rule, a hop into a worker thread, no database): ``GET /health`` asks the
    database, the views, the relay and JetStream, and at a million events costs more than a read."""
    with guanai_server(url, extra_env=keys) as server:
        server.wait_for_views(timeout=1800)
        headers = {"Authorization": f"Bearer {server.token()}"}
        code = store.counties[0][1]
        with (
            httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client,
            psycopg.connect(url, autocommit=True) as conn,
        ):
            health = client.get("/health")
            assert health.status_code == 200
            tail = conn.execute("SELECT max(notification_id) - 50 FROM guanai_events").fetchone()[0]

            def raw() -> None:
                conn.execute(
                    "SELECT * FROM guanai_events WHERE notification_id > %s ORDER BY notification_id LIMIT 50",
                    (tail,),
                    prepare=True,
                ).fetchall()

            def get(path: str, as_: dict[str, str] | None = None) -> Callable[[], None]:
                def call() -> None:
                    r = client.get(path, headers=as_)
                    assert r.status_code == 200, r.text

                return call

            # The heavy person's county supervisor: their access is decided by the person's org
            # path (scope subtree), the administrator's by the person's existence alone.
            supervisor = {"Authorization": f"Bearer {server.token('county_supervisor', str(store.counties[0][0]))}"}

            phases: list[tuple[str, Callable[[], None]]] = [
                ("baseline: 50 events by primary key", raw),
                ("GET /health", get("/health")),
                ("GET /auth/me (floor)", get("/auth/me")),
                ("GET /persons/{id}/timeline", get(f"/persons/{store.heavy_person}/timeline")),
                (
                    "GET /persons/{id}/timeline (county supervisor)",
                    get(f"/persons/{store.heavy_person}/timeline", supervisor),
                ),
                ("GET /supervision/{county}", get(f"/supervision/{code}?period=half_year")),
                ("GET /supervision/{county}/overdue", get(f"/supervision/{code}/overdue")),
            ]
            for _name, fn in phases:  # warm-up: connections, caches, the first request's imports
                for _ in range(20):
                    fn()
            load = os.getloadavg()[0]
            results = {name: Summary(name, 0.0) for name, _ in phases}
            api_cpu = dict.fromkeys(results, 0.0)
            per_round = max(1, reads // rounds)
            for _ in range(rounds):
                for name, fn in phases:
                    with CpuMeter({"api": server.api.pid}) as cpu:
                        summary = timed(name, per_round, fn)
                    results[name].latencies.extend(summary.latencies)
                    results[name].elapsed += summary.elapsed
                    api_cpu[name] += cpu.used["api"]
    floor = results["GET /auth/me (floor)"]
    rows = [
        r.row(
            f"{r.ms(50) / floor.ms(50):.1f}",
            f"{r.ms(99) / floor.ms(99):.1f}",
            f"{api_cpu[name] / r.count * 1000:.2f}" if name.startswith("GET") else "",
        )
        for name, r in results.items()
    ]
    print_table(
        [*SUMMARY_HEADERS, "p50 / floor", "p99 / floor", "API CPU ms/req"],
        rows,
        title=(
            f"The same through the API over HTTP ({per_round * rounds} each, one client, in {rounds} rounds taking"
            f" turns; load average {load:.2f} at start, {os.getloadavg()[0]:.2f} at the end)"
        ),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--reads", type=int, default=500)
    p.add_argument("--database-url", default=DEFAULT_SERVER_URL, help="a server URL; a scratch database is made on it")
    p.add_argument("--keep", metavar="NAME", help="write the store into database NAME once, reuse it, never drop it")
    p.add_argument("--phases", default="rebuild,reads,http", help="comma-separated: rebuild, reads, http")
    p.add_argument("--views", help="comma-separated: the views to rebuild (default: all)")
    args = p.parse_args(argv)
    phases = set(args.phases.split(","))
    keys = {"GUANAI_CHAIN_KEY": CHAIN_KEY, **({"GUANAI_MASTER_KEY": KEPT_MASTER_KEY} if args.keep else {})}
    sigterm_as_interrupt()
    print(f"bench.projections at {code_version()}; {server_facts(args.database_url)}")
    with (
        kept_database(args.database_url, args.keep)
        if args.keep
        else scratch_database(args.database_url, prefix="guanai_bench_proj") as url
    ):
        app = make_care(url, pool_size=4, env=keys)
        try:
            store = load_store(url)
            if store is None:
                store = write_store(app, url, args.events)
                print(
                    f"\nStore: {store.events:,} events written in {store.seconds:.0f}s"
                    f" ({store.events / store.seconds:,.0f}/s):"
                    f" {len(store.counties)} counties, {store.people:,} people, {store.visits:,} visits logged,"
                    f" {store.reports:,} emergency reports"
                )
            else:
                print(f"\nStore: {store.events:,} events kept from an earlier run ({args.keep})")
            if "rebuild" in phases:
                rebuild_rates(url, store.events, keys, args.views.split(",") if args.views else None)
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("VACUUM ANALYZE")
            if "reads" in phases:
                read_latencies(app, url, store, args.reads)
        finally:
            app.close()
        if "http" in phases:
            http_latencies(url, store, args.reads, keys)
    return 0


@contextlib.contextmanager
def kept_database(server_url: str, name: str) -> Iterator[str]:
    """Database ``name`` on the server, made if missing; never dropped here."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield with_database(server_url, name)


def write_store(app: CareApplication, url: str, events: int) -> Store:
    last = {"t": 0.0}

    def progress(done: int) -> None:
        if time.monotonic() - last["t"] > 5:
            last["t"] = time.monotonic()
            print(f"  writing: {done:,} events", file=sys.stderr, flush=True)

    store = generate(app, events, progress=progress)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE guanai_events")
        conn.execute("CREATE TABLE IF NOT EXISTS bench_store (store jsonb NOT NULL)")
        conn.execute("INSERT INTO bench_store VALUES (%s)", (Jsonb(msgspec.to_builtins(dataclasses.asdict(store))),))
    return store


def load_store(url: str) -> Store | None:
    """The store a kept database holds (None when it holds none yet)."""
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('bench_store')").fetchone()[0] is None:
            return None
        row = conn.execute("SELECT store FROM bench_store").fetchone()
    return msgspec.convert(row[0], Store) if row else None


if __name__ == "__main__":
    sys.exit(main())
