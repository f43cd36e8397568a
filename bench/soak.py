"""A soak: a steady mixed load for N minutes, sampling every process's memory and the lag.

    python -m bench.soak [--minutes 10] [--sample-seconds 5] [--warm-up-minutes 2]

The cluster is the soak's own (``bench/cluster.py``): PostgreSQL and a nats-server on free
ports over a scratch directory, and ``guanai api``, ``projector``, ``relay``, ``router``,
``escalator`` and ``scheduler`` as separate processes; the county is seeded as the fault
campaign's (``bench/chaos.py``), with a 30 s deadline to acknowledge a critical report. Then,
steadily, over HTTP:

- an emergency report every 2 s; the township's responder acknowledges four in five of them
  2 s later, the fifth escalates to the county at its deadline and stays there (reminders);
- a claim race every 3 s (three volunteers asking for the same visit task, one wins);
- a visit log every 3 s (``POST /visits/{task}/complete``);
- reads: lists of reports, visits and logs, a report by id, ``/health``, about 3 per second.

Every ``--sample-seconds``: the resident memory (RSS, from /proc, with each process's
children: a postmaster's backends) of each part and server, and ``/health``'s lag of the views
and of the relay (seconds the oldest unapplied or unpublished event has waited). Printed:
memory at start (idle, before the load: the baseline), after the warm-up, at the end and at
most; errors per kind of request (a lost claim race, 409, is not one); the lag's maximum; and
the verdict against the bounds: every Guanai process grows less than ``--max-growth`` (20%)
from the end of the warm-up to the end, the lag of the views and of the relay stays under
``--max-lag`` (5 s), and no request fails. Exit 1 when it does not hold.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.chaos import County, auth, seed
from bench.cluster import PARTS, Cluster, own_cluster, rss_kib
from bench.common import percentile, print_table, run_facts, sigterm_as_interrupt
from bench.county import plain_log_body, report_body

PROCESSES = (*PARTS, "postgres", "nats")
GUANAI = set(PARTS)


@dataclass
class Tally:
    ok: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)  # a few error answers, to say what failed
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, answer: httpx.Response | None, elapsed: float, expected: tuple[int, ...] = ()) -> None:
        with self.lock:
            if answer is not None and (answer.status_code < 400 or answer.status_code in expected):
                self.ok[kind] += 1
                self.latencies.setdefault(kind, []).append(elapsed)
            else:
                self.errors[kind] += 1
                if len(self.samples) < 10:
                    what = "no answer" if answer is None else f"{answer.status_code} {answer.text[:200]}"
                    self.samples.append(f"{kind}: {what}")


class SteadyLoad:
    def __init__(self, cluster: Cluster, county: County, rng: random.Random) -> None:
        self.url = cluster.base_url
        self.county = county
        self.rng = rng
        self.tally = Tally()
        self.reporter = auth(cluster, "township_supervisor", county.township, "soak-ts")
        self.responder = auth(cluster, "township_responder", county.township, "t-desk")
        self.reader = auth(cluster, "county_supervisor", county.county, "soak-cs")
        self.members = [auth(cluster, "volunteer", county.village, str(m)) for m in county.members]
        self.reports: list[str] = []
        self.claim_tasks = list(county.claim_tasks)
        self.log_tasks = list(county.log_tasks)

    def _call(
        self, c: httpx.Client, kind: str, method: str, path: str, expected: tuple[int, ...] = (), **kw: Any
    ) -> Any:
        t0 = time.perf_counter()
        try:
            answer: httpx.Response | None = c.request(method, path, **kw)
        except httpx.HTTPError:
            answer = None
        self.tally.record(kind, answer, time.perf_counter() - t0, expected)
        return answer

    def _every(self, stop: threading.Event, seconds: float, step: Any) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as c:
            due = time.monotonic()
            while not stop.is_set():
                step(c)
                due += seconds
                stop.wait(max(0.0, due - time.monotonic()))

    def report(self, c: httpx.Client) -> None:
        rid = str(uuid.uuid4())
        body = report_body(rid, self.rng.choice(self.county.elders[:50]))
        answer = self._call(c, "report", "POST", "/emergencies", json=body, headers=self.reporter)
        if answer is not None and answer.status_code == 201:
            self.reports.append(rid)
            if self.rng.random() < 0.8:
                threading.Timer(2.0, self.acknowledge, args=(rid,)).start()

    def acknowledge(self, rid: str) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as c:
            self._call(c, "acknowledge", "POST", f"/emergencies/{rid}/acknowledge", json={}, headers=self.responder)

    def claim(self, c: httpx.Client) -> None:
        if not self.claim_tasks:
            self.tally.errors["claim: no task left (seed more)"] += 1
            return
        task = self.claim_tasks.pop()
        who = self.rng.sample(self.members, 3)
        answers: list[Any] = []

        def one(headers: dict[str, str]) -> None:
            with httpx.Client(base_url=self.url, timeout=30) as own:
                answers.append(
                    self._call(own, "claim", "POST", f"/visits/{task}/claim", (409,), json={}, headers=headers)
                )

        threads = [threading.Thread(target=one, args=(h,)) for h in who]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if sum(1 for a in answers if a is not None and a.status_code == 200) != 1:
            with self.tally.lock:
                self.tally.errors["claim race without one winner"] += 1

    def log(self, c: httpx.Client) -> None:
        if not self.log_tasks:
            self.tally.errors["visit log: no task left (seed more)"] += 1
            return
        task = self.log_tasks.pop()
        m = self.rng.randrange(len(self.members))
        body = plain_log_body(task, self.county.members[m])
        self._call(c, "visit log", "POST", f"/visits/{task['id']}/complete", json=body, headers=self.members[m])

    def read(self, c: httpx.Client) -> None:
        paths = ["/emergencies?limit=20", "/visits?limit=20", "/visit-logs?limit=20", "/health"]
        if self.reports:
            paths.append(f"/emergencies/{self.rng.choice(self.reports[-50:])}")
        self._call(c, "read", "GET", self.rng.choice(paths), headers=self.reader)

    def run(self, stop: threading.Event) -> list[threading.Thread]:
        plan = [(2.0, self.report), (3.0, self.claim), (3.0, self.log), (1 / 3, self.read)]
        threads = [threading.Thread(target=self._every, args=(stop, s, f), daemon=True) for s, f in plan]
        for t in threads:
            t.start()
        return threads


@dataclass
class Sample:
    at: float
    rss: dict[str, int | None]
    views_lag: float | None
    relay_lag: float | None
    views_behind: int | None


def sample(cluster: Cluster, started: float) -> Sample:
    rss = {name: rss_kib(pid) for name, pid in cluster.pids().items()}
    views_lag = relay_lag = views_behind = None
    try:
        health = cluster.health()
        views_lag = health.get("views", {}).get("seconds_behind")
        views_behind = health.get("views", {}).get("events_behind")
        relay_lag = health.get("relay", {}).get("seconds_behind")
    except (httpx.HTTPError, ValueError):
        pass
    return Sample(time.monotonic() - started, rss, views_lag, relay_lag, views_behind)


def mib(kib: float | None) -> str:
    return "" if kib is None else f"{kib / 1024:.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="minutes of load (default 10)")
    p.add_argument("--sample-seconds", type=float, default=5.0, help="how often memory and lag are sampled")
    p.add_argument("--warm-up-minutes", type=float, default=2.0, help="growth is measured from the end of this")
    p.add_argument("--max-growth", type=float, default=0.20, help="largest memory growth allowed after warm-up")
    p.add_argument("--max-lag", type=float, default=5.0, help="largest lag of the views and the relay allowed, s")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the scratch directory with every process's log")
    args = p.parse_args(argv)
    sigterm_as_interrupt()
    rng = random.Random(args.seed)
    facts = run_facts()
    # A claim race and a log every 3 s, each its own task of this week (about two in three seeded are open).
    tasks = 3 * int(args.minutes * 60 / 3 * 1.1) + 10
    with own_cluster(
        {"GUANAI_REPORTS_PER_MINUTE": "0", "GUANAI_VISIT_CLAIM_LIMIT": "100000"}, keep=args.keep
    ) as cluster:
        county = seed(cluster, tasks=tasks, ack_seconds=30)
        print(f"seeded: {len(county.claim_tasks)} tasks to claim, {len(county.log_tasks)} to log", file=sys.stderr)
        time.sleep(args.sample_seconds)
        idle = sample(cluster, time.monotonic())
        load = SteadyLoad(cluster, county, rng)
        stop = threading.Event()
        started = time.monotonic()
        samples: list[Sample] = []
        threads = load.run(stop)
        try:
            while time.monotonic() - started < args.minutes * 60:
                time.sleep(args.sample_seconds)
                s = sample(cluster, started)
                samples.append(s)
                print(
                    f"{s.at:6.0f} s  views lag {s.views_lag} s ({s.views_behind} events)  relay lag {s.relay_lag} s  "
                    + "  ".join(f"{k} {mib(v)}" for k, v in s.rss.items())
                    + f"  errors {sum(load.tally.errors.values())}",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        exited = [k for k, part in cluster.parts.items() if part.starts != 1 or not part.alive()]

    warm = [s for s in samples if s.at >= args.warm_up_minutes * 60]
    head, tail = warm[:3], samples[-3:]
    rows, growth_failures = [], []
    for name in PROCESSES:

        def mean(ss: list[Sample], name: str = name) -> float | None:
            values = [v for s in ss if (v := s.rss.get(name)) is not None]
            return sum(values) / len(values) if values else None

        after_warm_up, end = mean(head), mean(tail)
        peak = max((v for s in samples if (v := s.rss.get(name)) is not None), default=None)
        growth = (end / after_warm_up - 1) if end and after_warm_up else float("nan")
        if name in GUANAI and not growth < args.max_growth:
            growth_failures.append(name)
        rows.append([name, mib(idle.rss.get(name)), mib(after_warm_up), mib(end), mib(peak), f"{growth * 100:+.1f}%"])
    views = [s.views_lag for s in samples if s.views_lag is not None]
    relay = [s.relay_lag for s in samples if s.relay_lag is not None]
    unanswered_health = sum(1 for s in samples if s.views_lag is None or s.relay_lag is None)
    errors = sum(load.tally.errors.values())
    lag_ok = bool(views) and bool(relay) and max(views) < args.max_lag and max(relay) < args.max_lag
    holds = not growth_failures and lag_ok and errors == 0 and not exited and unanswered_health == 0

    print(f"\n## Soak, {args.minutes:g} min, {facts}\n")
    print_table(["process", "idle MiB (baseline)", "after warm-up MiB", "end MiB", "max MiB", "growth after warm-up"],
                rows, title="Resident memory (RSS with children)")  # fmt: skip
    kinds = sorted(set(load.tally.ok) | set(load.tally.errors))
    print_table(
        ["requests", "ok", "errors", "p50 ms", "p99 ms"],
        [[k, load.tally.ok[k], load.tally.errors[k], f"{percentile(load.tally.latencies.get(k, []), 50) * 1000:.1f}",
          f"{percentile(load.tally.latencies.get(k, []), 99) * 1000:.1f}"] for k in kinds],
        title="Requests",
    )  # fmt: skip
    print_table(
        ["lag", "p50 s", "max s"],
        [["views (projector)", f"{percentile(views, 50):.2f}", f"{max(views, default=float('nan')):.2f}"],
         ["relay (to JetStream)", f"{percentile(relay, 50):.2f}", f"{max(relay, default=float('nan')):.2f}"]],
        title=f"Lag, {len(samples)} samples every {args.sample_seconds:g} s",
    )  # fmt: skip
    for line in load.tally.samples:
        print(f"- error: {line}")
    print(
        f"\nverdict: {'HOLDS' if holds else 'FAILS'} (bounds: growth < {args.max_growth:.0%} after "
        f"{args.warm_up_minutes:g} min for every Guanai process{'; over: ' + ', '.join(growth_failures) if growth_failures else ''}; "
        f"lag < {args.max_lag:g} s; 0 errors, {errors} seen; processes restarted or dead: {exited or 'none'}; "
        f"/health unanswered in {unanswered_health} samples)"
    )
    return 0 if holds else 1


if __name__ == "__main__":
    sys.exit(main())
