"""What one registration costs in process over PostgreSQL, counted: statements, pipeline syncs, CPU.

A child is registered through the application (no HTTP) on a scratch database, one at a time:
50 to warm up, then ``--registrations`` counted (every statement psycopg sends, by wrapping
``Cursor.execute`` and ``executemany``; the pipeline syncs; one registration's statements
printed), then ``--rounds`` rounds of ``--registrations`` timed by this process's CPU clock, with
the CPU of the scratch database's PostgreSQL backends over all rounds (issue 19). Counts do not
depend on the machine's load; CPU does (read the best round, and compare trees back to back).

    python -m bench.command_path --rounds 6 --registrations 100

``--compare-waits``: no timed rounds; instead, past the store's first autoanalyze (1,100
registrations), interleaved blocks of ``--registrations`` with the group's transaction awaiting
its insert's ids and the new key's check in the client (4 waits on the server, as before issue
19's perf-write4) and with the ids predicted and the check in the server (2 waits): wall time
per registration (p25/p50/p75), this process's CPU and the scratch database's backends' CPU.

``--callgrind``: no timed rounds; the counted registrations run between ``callgrind_control -z``
and ``-d`` of this process, for a run under ``valgrind --tool=callgrind`` (instructions per
registration = the dump's total / registrations).
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import time
import uuid
from datetime import date
from typing import Any

import psycopg
from psycopg._pipeline import Pipeline

from bench.common import DEFAULT_SERVER_URL, code_version, make_care, scratch_database
from bench.group_commit import backend_cpu, meta, one_village
from domain.vocabulary import PersonKind, Sex


class Counter:
    """Statements and syncs psycopg sends while ``on`` (the first ``keep`` statements' text kept)."""

    def __init__(self, keep: int = 40) -> None:
        self.on, self.keep = False, keep
        self.counts: collections.Counter[str] = collections.Counter()
        self.texts: list[str] = []
        execute, executemany, sync = psycopg.Cursor.execute, psycopg.Cursor.executemany, Pipeline.sync
        counter = self

        def counted(kind: str, real: Any) -> Any:
            def wrapper(cur: psycopg.Cursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
                if counter.on:
                    counter.counts["statements"] += 1
                    if len(counter.texts) < counter.keep:
                        text = query if isinstance(query, bytes | str) else query.as_bytes(cur)
                        text = text.decode() if isinstance(text, bytes) else text
                        counter.texts.append(kind + text[:110])
                return real(cur, query, *args, **kwargs)

            return wrapper

        def counted_sync(pipeline: Pipeline) -> None:
            if counter.on:
                counter.counts["syncs"] += 1
            sync(pipeline)

        psycopg.Cursor.execute = counted("", execute)  # type: ignore[method-assign]
        psycopg.Cursor.executemany = counted("(many) ", executemany)  # type: ignore[method-assign]
        Pipeline.sync = counted_sync  # type: ignore[method-assign,assignment]


def register(app: Any, village: uuid.UUID) -> None:
    app.register_person(
        id=uuid.uuid4(), kind=PersonKind.CHILD, name="王小明", sex=Sex.MALE, birth_date=date(2015, 3, 4),
        village_id=village, household="3组12号",
        guardian={"name": "王奶奶", "relation": "grandmother", "phone": "13800000000"},
        parents=[
            {"name": "王大", "relation": "father", "work_place": "深圳", "phone": "13900000000"},
            {"name": "李二", "relation": "mother", "work_place": "东莞", "phone": "13700000000"},
        ],
        meta=meta(),
    )  # fmt: skip


def compare_waits(app: Any, village: uuid.UUID, url: str, block: int, rounds: int) -> None:
    recorder, keys = app.recorder, app.store.key_store
    for _ in range(1100):
        register(app, village)

    def waits(fewer: bool) -> None:
        recorder._predicting = fewer  # the heads read the next id, the insert is not awaited
        recorder._heads_query = None
        keys.check_in_server = fewer  # the new key's check fails the statement, not awaited

    wall: dict[bool, list[float]] = {True: [], False: []}
    cpu, server = {True: 0.0, False: 0.0}, {True: 0.0, False: 0.0}
    for r in range(rounds * 2):
        for fewer in (True, False) if r % 2 else (False, True):
            waits(fewer)
            register(app, village)
            backends, began = backend_cpu(url), time.process_time()
            for _ in range(block):
                t0 = time.perf_counter()
                register(app, village)
                wall[fewer].append(time.perf_counter() - t0)
            cpu[fewer] += time.process_time() - began
            server[fewer] += sum(v - backends.get(pid, 0.0) for pid, v in backend_cpu(url).items())
    waits(True)
    count = block * rounds * 2
    for fewer in (False, True):
        ordered = sorted(wall[fewer])
        p25, p50, p75 = (ordered[int(count * q)] * 1000 for q in (0.25, 0.5, 0.75))
        print(
            f"{'2 waits (ids predicted, key checked in the server)' if fewer else '4 waits (as before)'}: "
            f"wall p25 {p25:.2f} p50 {p50:.2f} p75 {p75:.2f} ms; CPU ms a registration {cpu[fewer] / count * 1000:.3f} "
            f"this process, {server[fewer] / count * 1000:.3f} the database's backends"
        )
    print(f"load average {os.getloadavg()[0]:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.command_path", description=__doc__.splitlines()[0])
    p.add_argument("--registrations", type=int, default=100, help="registrations counted, and per round (100)")
    p.add_argument("--rounds", type=int, default=6, help="timed rounds (default 6)")
    p.add_argument("--database-url", default=DEFAULT_SERVER_URL)
    p.add_argument("--callgrind", action="store_true", help="zero and dump callgrind's counters around the count")
    p.add_argument("--compare-waits", action="store_true", help="interleave 4 and 2 waits on the server (see above)")
    args = p.parse_args()
    n = args.registrations
    print(f"code {code_version()}, load average at start {os.getloadavg()[0]:.2f}")
    counter = Counter()
    with scratch_database(args.database_url, prefix="guanai_bench_command") as url:
        app = make_care(url, pool_size=4)
        try:
            village = one_village(app)
            for _ in range(50):
                register(app, village)
            counter.on = True
            register(app, village)
            counter.on = False
            print("one registration's statements:")
            for text in counter.texts:
                print("   ", text)
            counter.counts.clear()
            if args.callgrind:
                subprocess.run(["callgrind_control", "-z", str(os.getpid())], check=True, capture_output=True)
                time.sleep(1)  # callgrind takes the command on its next check
            counter.on = True
            for _ in range(n):
                register(app, village)
            counter.on = False
            if args.callgrind:
                subprocess.run(
                    ["callgrind_control", "-d", "counted", str(os.getpid())], check=True, capture_output=True
                )
                time.sleep(1)
            statements, syncs = counter.counts["statements"] / n, counter.counts["syncs"] / n
            print(f"per registration: {statements:.2f} statements, {syncs:.2f} pipeline syncs")
            if args.callgrind or not args.rounds:
                return
            if args.compare_waits:
                compare_waits(app, village, url, n, args.rounds)
                return
            backends = backend_cpu(url)
            rounds = []
            for _ in range(args.rounds):
                began = time.process_time()
                for _ in range(n):
                    register(app, village)
                rounds.append((time.process_time() - began) / n * 1000)
            after = backend_cpu(url)
            server = sum(v - backends.get(pid, 0.0) for pid, v in after.items()) / (args.rounds * n) * 1000
            print("CPU ms a registration, each round:", " ".join(f"{r:.3f}" for r in rounds))
            print(
                f"best {min(rounds):.3f}, mean {sum(rounds) / len(rounds):.3f}; the scratch database's PostgreSQL "
                f"backends {server:.3f} ms a registration; load average {os.getloadavg()[0]:.2f}"
            )
        finally:
            app.close()


if __name__ == "__main__":
    main()
