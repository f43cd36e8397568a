"""A fault campaign: trials that each SIGKILL one part of a running Guanai while emergency
reports, visit claims and visit logs flow, start it again, let the system settle, and check
from the event store that nothing was lost or done twice.

    python -m bench.chaos [--trials 200] [--seed 1] [--load-seconds 3] [--json OUT]

The cluster is this campaign's own (``bench/cluster.py``): a PostgreSQL and a nats-server on
free ports over a scratch directory, and ``guanai api``, ``projector``, ``relay``, ``router``,
``escalator`` and ``scheduler`` as separate processes. They stay up across trials; a trial:

1. load for ``--load-seconds``: reports filed over HTTP (``POST /emergencies``, client ids),
   three volunteers racing to claim the same visit task, visits logged (``POST
   /visits/{task}/complete``), and reads of the lists;
2. at a random moment within it, SIGKILL of the trial's target: one of the six parts, the
   nats-server, or PostgreSQL (the postmaster and all its processes at once); the target is
   started again at once and the load goes on until it serves;
3. requests that got no answer (or a 5xx) are sent again with the same body, as a phone does;
4. settle: wait until every report the API accepted (2xx) in this trial has reached the end of
   its chain (routed to the township, escalated once its 1 s deadline passed unacknowledged,
   routed to the county), every winning claim and accepted log is in the event store, and the
   views have caught up. The time from the target serving again to that point is the time to
   settle (bounded by ``--settle-timeout``);
5. classify from the event store (read-only SQL over ``guanai_events``): each accepted report
   routed once, lost (never routed), routed twice (a level routed more than once) or escalated
   twice (a level escalated more than once); each task claimed by at most one winner (HTTP
   answers and ``VisitTask.Claimed`` events); each log stored once (one ``VisitLog.Recorded``
   per accepted log id, one ``VisitTask.Completed`` per task).

Every ninth trial kills nothing: the control whose time to settle is the baseline of the same
run. After the last trial every report is classified again (a duplicate that came after its
trial's check is caught there); that final count is the campaign's verdict. Exit 1 on any
lost, doubled or unsettled report, doubled claim or log.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any
from uuid import UUID

import httpx
import psycopg

from bench.cluster import PARTS, Cluster, own_cluster
from bench.common import make_care, percentile, print_table, run_facts, sigterm_as_interrupt
from bench.county import bearer, plain_log_body, report_body, seed_county

TARGETS = (*PARTS, "nats", "postgres")
CONTROL = "none"
ACK_SECONDS = 1  # the rosters' deadline for a critical report: every report escalates once
CLAIMERS = 3  # volunteers racing for each task
PER_TRIAL = 5  # claim races, and visit logs, at most per trial (tasks are seeded for them)


# ---- the county -----------------------------------------------------------------------------------


@dataclass
class County:
    county: UUID
    township: UUID
    village: UUID
    elders: list[UUID]
    members: list[UUID]
    claim_tasks: list[str]
    log_tasks: list[dict[str, Any]]  # id, opens_at, member (a helper of the task's pairing group)


def seed(cluster: Cluster, tasks: int, ack_seconds: int = ACK_SECONDS) -> County:
    """Through the command side, in this process (``bench/county.py``): a county, a township and
    a village with rosters (responders always on duty, ``ack_seconds`` to acknowledge a critical
    report), elders in one-to-N pairings held with a volunteer group, and this week's visit
    tasks: half of those open now to claim, half to log."""
    app = make_care(
        cluster.postgres.url, pool_size=4, env={**cluster.keys, "GUANAI_DATABASE_URL": cluster.postgres.url}
    )
    try:
        # Some of this week's tasks may not be open yet: more people than tasks.
        s = seed_county(app, people=tasks + tasks // 5 + 10, members=12, actor="chaos", county_name="演练县",
                        ack_seconds=ack_seconds)  # fmt: skip
    finally:
        app.close()
    half = len(s.due_now) // 2
    return County(s.county, s.township, s.village, s.elders, s.members, [t["id"] for t in s.due_now[:half]],
                  s.due_now[half:])  # fmt: skip


def auth(cluster: Cluster, role: str, org_unit: UUID, subject: str) -> dict[str, str]:
    return bearer(cluster.jwt_secret, role, org_unit, subject)


# ---- the load -----------------------------------------------------------------------------------------


@dataclass
class Request:
    kind: str  # report | claim | log
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    key: str  # report id, task id, log id
    who: str = ""
    status: int | None = None  # the final answer (None: none ever came)
    tries: int = 0
    detail: str = ""  # the body of a refusal


@dataclass
class TrialLoad:
    requests: list[Request] = field(default_factory=list)
    reads: int = 0
    read_errors: int = 0
    read_refusals: list[str] = field(default_factory=list)  # 4xx answers to reads: a defect of the load
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, r: Request) -> None:
        with self.lock:
            self.requests.append(r)


def send(client: httpx.Client, r: Request) -> None:
    r.tries += 1
    try:
        answer = client.post(r.path, json=r.body, headers=r.headers, timeout=8)
    except httpx.HTTPError:
        r.status = None
        return
    r.status = answer.status_code
    r.detail = answer.text[:300] if answer.status_code >= 400 else ""


def unanswered(r: Request) -> bool:
    return r.status is None or r.status >= 500


class Load:
    """Reports, claim races, visit logs and reads, each in a thread, until ``stop`` is set."""

    def __init__(self, cluster: Cluster, county: County, rng: random.Random, people: Iterable[UUID]) -> None:
        self.cluster = cluster
        self.county = county
        self.rng = rng
        self.people = list(people)
        self.reporter = auth(cluster, "township_supervisor", county.township, "chaos-ts")
        self.member_headers = [auth(cluster, "volunteer", county.village, str(m)) for m in county.members]
        self.reader = auth(cluster, "county_supervisor", county.county, "chaos-cs")
        self.claim_tasks = list(county.claim_tasks)
        self.log_tasks = list(county.log_tasks)
        # Made once (a client takes a while to make on a busy machine), used across trials.
        self.reports_client, self.logs_client, self.reads_client = (self._client() for _ in range(3))
        self.claims_clients = [self._client() for _ in range(CLAIMERS)]

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.cluster.base_url, timeout=8)

    def run(self, stop: threading.Event, load: TrialLoad) -> list[threading.Thread]:
        """The load's threads, each of which has sent (or is sending) its first request on return:
        a kill is never earlier than the load."""
        steps = (self._reports, self._claims, self._logs, self._reads)
        going = [threading.Event() for _ in steps]
        threads = [
            threading.Thread(target=f, args=(stop, load, e), daemon=True) for f, e in zip(steps, going, strict=True)
        ]
        for t in threads:
            t.start()
        for e in going:
            e.wait(30)
        return threads

    def close(self) -> None:
        for c in [self.reports_client, self.logs_client, self.reads_client, *self.claims_clients]:
            c.close()

    def _reports(self, stop: threading.Event, load: TrialLoad, going: threading.Event) -> None:
        c = self.reports_client
        while not stop.is_set():
            rid = str(uuid.uuid4())
            r = Request("report", "/emergencies", report_body(rid, self.rng.choice(self.people)), self.reporter, rid)
            load.add(r)
            going.set()
            send(c, r)
            stop.wait(0.25)

    def _claims(self, stop: threading.Event, load: TrialLoad, going: threading.Event) -> None:
        clients = self.claims_clients
        try:
            with ThreadPoolExecutor(CLAIMERS) as pool:
                for _ in range(PER_TRIAL):
                    if stop.is_set() or not self.claim_tasks:
                        break
                    task = self.claim_tasks.pop()
                    who = self.rng.sample(range(len(self.member_headers)), CLAIMERS)
                    race = [
                        Request("claim", f"/visits/{task}/claim", {}, self.member_headers[w], task, str(w)) for w in who
                    ]
                    for r in race:
                        load.add(r)
                    going.set()
                    list(pool.map(send, clients, race))
                    stop.wait(0.6)
        finally:
            going.set()

    def _logs(self, stop: threading.Event, load: TrialLoad, going: threading.Event) -> None:
        c = self.logs_client
        try:
            for _ in range(PER_TRIAL):
                if stop.is_set() or not self.log_tasks:
                    break
                task = self.log_tasks.pop()
                m = self.rng.randrange(len(self.member_headers))
                body = plain_log_body(task, self.county.members[m])
                r = Request("log", f"/visits/{task['id']}/complete", body, self.member_headers[m], body["id"])
                r.who = task["id"]
                load.add(r)
                going.set()
                send(c, r)
                stop.wait(0.6)
        finally:
            going.set()

    def _reads(self, stop: threading.Event, load: TrialLoad, going: threading.Event) -> None:
        paths = ["/emergencies?limit=5", "/visits?limit=5", "/visit-logs?limit=5", "/health"]
        c = self.reads_client
        while not stop.is_set():
            going.set()
            try:
                answer = c.get(self.rng.choice(paths), headers=self.reader, timeout=8)
                ok = answer.status_code < 400
                if not ok and answer.status_code < 500:
                    load.read_refusals.append(f"{answer.status_code} {answer.text[:200]}")
            except httpx.HTTPError:
                ok = False
            load.reads += 1
            load.read_errors += 0 if ok else 1
            stop.wait(0.3)


# ---- what the event store says ----------------------------------------------------------------------


@dataclass
class ReportFate:
    routed: Counter[int] = field(default_factory=Counter)  # level -> Routed events
    escalated: Counter[int] = field(default_factory=Counter)  # from level -> Escalated events

    @property
    def done(self) -> bool:
        return self.routed[0] >= 1 and self.escalated[0] >= 1 and self.routed[1] >= 1

    def verdict(self) -> str:
        if not self.routed:
            return "lost"
        if any(n > 1 for n in self.routed.values()):
            return "routed twice"
        if any(n > 1 for n in self.escalated.values()):
            return "escalated twice"
        if not self.done:
            return "unsettled"
        return "routed once"


def _state(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(bytes(raw))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class Store:
    """Read-only SQL over the event store: events by aggregate id and topic."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self.conn: psycopg.Connection[Any] | None = None

    def _rows(self, ids: list[str], topic_like: str) -> list[tuple[Any, ...]]:
        for attempt in range(60):
            try:
                if self.conn is None or self.conn.closed:
                    self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=3)
                return self.conn.execute(
                    "SELECT originator_id, topic, state FROM guanai_events"
                    " WHERE originator_id = ANY(%s::uuid[]) AND topic LIKE %s",
                    (ids, topic_like),
                ).fetchall()
            except psycopg.Error:
                self.conn = None
                if attempt == 59:
                    raise
                time.sleep(0.5)
        return []

    def reports(self, ids: list[str]) -> dict[str, ReportFate]:
        fates = {i: ReportFate() for i in ids}
        for oid, topic, state in self._rows(ids, "%EmergencyReport.%"):
            fate = fates[str(oid)]
            data = _state(state)
            if topic.endswith("EmergencyReport.Routed"):
                fate.routed[int(data.get("level", -1))] += 1
            elif topic.endswith("EmergencyReport.Escalated"):
                fate.escalated[int(data.get("from_level", -1))] += 1
        return fates

    def count(self, ids: list[str], topic_suffix: str) -> Counter[str]:
        return Counter(str(oid) for oid, _, _ in self._rows(ids, "%" + topic_suffix))

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


# ---- a trial --------------------------------------------------------------------------------------------


@dataclass
class Trial:
    n: int
    target: str
    kill_at: float = 0.0  # seconds into the load
    restart_seconds: float = 0.0  # from the kill until the target served again
    settle_seconds: float = float("nan")  # from serving again until everything settled
    settled: bool = False
    reports_sent: int = 0
    reports_accepted: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    claim_tasks: int = 0
    claim_winners_over_one: int = 0
    claims_won_missing: int = 0
    logs_accepted: int = 0
    logs_duplicated: int = 0
    logs_lost: int = 0
    retried: int = 0
    requests_before_kill: int = 0
    never_answered: int = 0
    reads: int = 0
    read_errors: int = 0
    revived: list[str] = field(default_factory=list)
    error: str = ""  # the trial itself failed (a restart that timed out): a failure of the campaign
    answers: dict[str, int] = field(default_factory=dict)  # "<kind> <status>" -> count, final answers
    accepted_ids: list[str] = field(default_factory=list)


def run_trial(
    n: int, target: str, cluster: Cluster, load: Load, store: Store, rng: random.Random, args: argparse.Namespace
) -> Trial:
    trial = Trial(n, target)
    work = TrialLoad()
    stop = threading.Event()
    threads = load.run(stop, work)
    started = time.monotonic()
    trial.kill_at = rng.uniform(0.3, max(0.4, args.load_seconds - 0.3))
    time.sleep(trial.kill_at)
    killed = time.monotonic()
    trial.requests_before_kill = len(work.requests)
    try:
        if target != CONTROL:
            cluster.kill(target)
            cluster.restart(target, timeout=args.restart_timeout)
        serving = time.monotonic()
        trial.restart_seconds = serving - killed
        time.sleep(max(0.0, started + args.load_seconds - time.monotonic(), 0.5 if target != CONTROL else 0.0))
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    trial.revived = cluster.revive_exited()  # a part that died of the fault on its own, restarted
    trial.reads, trial.read_errors = work.reads, work.read_errors
    # What got no answer is sent again, same body, until it gets one (a phone retrying).
    with httpx.Client(base_url=cluster.base_url, timeout=8) as c:
        deadline = time.monotonic() + args.settle_timeout
        pending = [r for r in work.requests if unanswered(r)]
        trial.retried = len(pending)
        while pending and time.monotonic() < deadline:
            for r in pending:
                send(c, r)
            pending = [r for r in pending if unanswered(r)]
            if pending:
                time.sleep(0.5)
        trial.never_answered = len(pending)

    trial.answers = dict(Counter(f"{r.kind} {r.status}" for r in work.requests))
    if work.read_refusals:
        trial.answers["read 4xx"] = len(work.read_refusals)
        print(f"a read was refused: {work.read_refusals[0]}", file=sys.stderr)
    for r in work.requests:
        if r.status is not None and 400 <= r.status < 500 and not (r.kind == "claim" and r.status == 409):
            print(f"a {r.kind} was refused: {r.status} {r.path} {r.detail}", file=sys.stderr)
            break
    reports = [r for r in work.requests if r.kind == "report"]
    accepted = [r.key for r in reports if r.status is not None and 200 <= r.status < 300]
    trial.reports_sent, trial.reports_accepted, trial.accepted_ids = len(reports), len(accepted), accepted
    claims: dict[str, list[Request]] = defaultdict(list)
    for r in work.requests:
        if r.kind == "claim":
            claims[r.key].append(r)
    won = {task: {r.who for r in rs if r.status == 200} for task, rs in claims.items()}
    logs = [r for r in work.requests if r.kind == "log" and r.status is not None and 200 <= r.status < 300]
    trial.claim_tasks, trial.logs_accepted = len(claims), len(logs)

    def settled() -> bool:
        fates = store.reports(accepted)
        if not all(f.done for f in fates.values()):
            return False
        claimed = store.count([t for t, w in won.items() if w], "VisitTask.Claimed")
        if any(claimed[t] < 1 for t, w in won.items() if w):
            return False
        if any(store.count([r.key for r in logs], "VisitLog.Recorded")[r.key] < 1 for r in logs):
            return False
        try:
            views = cluster.health().get("views", {})
        except (httpx.HTTPError, ValueError):
            return False
        return views.get("events_behind") == 0

    deadline = serving + args.settle_timeout
    while time.monotonic() < deadline:
        if settled():
            trial.settled = True
            break
        time.sleep(0.2)
    trial.settle_seconds = time.monotonic() - serving
    trial.revived += cluster.revive_exited()

    fates = store.reports(accepted)
    trial.verdicts = dict(Counter(f.verdict() for f in fates.values()))
    # Every report sent, answered or not, is checked for doubles too: a stored one must not be doubled.
    others = [r.key for r in reports if r.key not in set(accepted)]
    for f in store.reports(others).values():
        if f.routed and f.verdict() in ("routed twice", "escalated twice"):
            trial.verdicts[f.verdict()] = trial.verdicts.get(f.verdict(), 0) + 1
    claimed = store.count(list(claims), "VisitTask.Claimed")
    trial.claim_winners_over_one = sum(1 for t in claims if len(won[t]) > 1 or claimed[t] > 1)
    trial.claims_won_missing = sum(1 for t, w in won.items() if w and claimed[t] < 1)
    recorded = store.count([r.key for r in logs], "VisitLog.Recorded")
    completed = store.count([r.who for r in logs], "VisitTask.Completed")
    trial.logs_lost = sum(1 for r in logs if recorded[r.key] < 1)
    trial.logs_duplicated = sum(1 for r in logs if recorded[r.key] > 1 or completed[r.who] > 1)
    return trial


# ---- the campaign ---------------------------------------------------------------------------------------


def recover(cluster: Cluster) -> None:
    """After a failed trial: the servers and every part running again, whatever state they were left in."""
    for server in (cluster.postgres, cluster.nats):
        if server.proc is None or server.proc.poll() is not None:
            server.start()
    cluster.revive_exited()


def schedule(trials: int, rng: random.Random, targets: list[str]) -> list[str]:
    """Targets in rounds (each round every target once, in a random order): with every target
    and the control, each kills one of eight and the ninth kills nothing."""
    order: list[str] = []
    while len(order) < trials:
        round_ = list(targets)
        rng.shuffle(round_)
        order += round_
    return order[:trials]


def table(trials: list[Trial], final: dict[str, str]) -> list[list[Any]]:
    rows = []
    for target in [*TARGETS, CONTROL, "all"]:
        chosen = [t for t in trials if target in ("all", t.target)]
        if not chosen:
            continue
        verdicts: Counter[str] = Counter()
        for t in chosen:
            verdicts.update(final.get(i, "unsettled") for i in t.accepted_ids)
        settle = [t.settle_seconds for t in chosen]
        restart = [t.restart_seconds for t in chosen]
        rows.append([
            target if target != CONTROL else "none (control)",
            len(chosen),
            sum(t.reports_accepted for t in chosen),
            verdicts["routed once"],
            verdicts["lost"],
            verdicts["routed twice"],
            verdicts["escalated twice"],
            verdicts["unsettled"],
            sum(t.claim_winners_over_one for t in chosen),
            sum(t.logs_duplicated for t in chosen),
            sum(t.logs_lost + t.claims_won_missing for t in chosen),
            f"{percentile(restart, 50):.1f}" if target != CONTROL else "",
            f"{percentile(settle, 50):.1f}",
            f"{max(settle):.1f}",
        ])  # fmt: skip
    return rows


HEADERS = ["killed", "trials", "reports accepted", "routed once", "lost", "routed twice", "escalated twice",
           "unsettled", "claim winners > 1", "duplicated logs", "lost claims/logs", "restart p50 s",
           "settle p50 s", "settle max s"]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=200, help="trials in all (default 200)")
    p.add_argument("--seed", type=int, default=1, help="random seed: targets, kill moments, load (default 1)")
    p.add_argument("--load-seconds", type=float, default=3.0, help="seconds of load per trial (default 3)")
    p.add_argument("--settle-timeout", type=float, default=120.0, help="most seconds a trial may take to settle")
    p.add_argument("--restart-timeout", type=float, default=120.0, help="most seconds a restart may take")
    p.add_argument("--targets", default=",".join([*TARGETS, CONTROL]), help="comma-separated targets to draw from")
    p.add_argument("--max-minutes", type=float, default=600.0, help="start no trial after this many minutes")
    p.add_argument("--json", help="write every trial and the totals to this file")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory with every process's log")
    args = p.parse_args(argv)
    sigterm_as_interrupt()
    rng = random.Random(args.seed)
    wanted = args.targets.split(",")
    unknown = set(wanted) - {*TARGETS, CONTROL}
    if unknown:
        p.error(f"unknown targets: {sorted(unknown)}; choose from {[*TARGETS, CONTROL]}")
    order = schedule(args.trials, rng, wanted)
    began = time.monotonic()
    facts = run_facts()
    env = {
        "GUANAI_REPORTS_PER_MINUTE": "0",
        "GUANAI_VISIT_CLAIM_LIMIT": "100000",
        "GUANAI_SCHEDULER_INTERVAL_SECONDS": "5",
        "GUANAI_AUTH_FAILURES_PER_MINUTE": "0",
    }
    trials: list[Trial] = []
    with own_cluster(env, keep=args.keep) as cluster:
        print(f"cluster up in {time.monotonic() - began:.0f} s; seeding", file=sys.stderr)
        t0 = time.monotonic()
        county = seed(cluster, tasks=args.trials * 2 * PER_TRIAL)
        print(f"seeded in {time.monotonic() - t0:.0f} s: {len(county.claim_tasks)} tasks to claim, "
              f"{len(county.log_tasks)} to log", file=sys.stderr)  # fmt: skip
        load = Load(cluster, county, rng, county.elders[:20])
        store = Store(cluster.postgres.url)
        try:
            for n, target in enumerate(order, 1):
                if time.monotonic() - began > args.max_minutes * 60:
                    print(f"stopping after {n - 1} trials: --max-minutes {args.max_minutes} reached", file=sys.stderr)
                    break
                try:
                    trial = run_trial(n, target, cluster, load, store, rng, args)
                except Exception as e:  # noqa: BLE001 - recorded as a failed trial, and the campaign goes on
                    trial = Trial(n, target, error=f"{type(e).__name__}: {e}")
                    print(f"trial {n} {target} failed: {trial.error}", file=sys.stderr)
                    recover(cluster)
                trials.append(trial)
                bad = {k: v for k, v in trial.verdicts.items() if k != "routed once"}
                print(
                    f"trial {n}/{len(order)} {target}: killed at {trial.kill_at:.1f} s, serving after "
                    f"{trial.restart_seconds:.1f} s, settled {trial.settled} in {trial.settle_seconds:.1f} s; "
                    f"reports {trial.reports_accepted}/{trial.reports_sent} {bad or ''} claims {trial.claim_tasks} "
                    f"(>1 winner {trial.claim_winners_over_one}) logs {trial.logs_accepted} "
                    f"(dup {trial.logs_duplicated}, lost {trial.logs_lost}) retried {trial.retried} "
                    f"revived {trial.revived or ''} answers {trial.answers}",
                    file=sys.stderr,
                    flush=True,
                )
            # Once more, after the last trial: a duplicate that came after its trial's check.
            time.sleep(args.load_seconds)
            every = [i for t in trials for i in t.accepted_ids]
            final = {i: f.verdict() for i, f in store.reports(every).items()}
        finally:
            store.close()
            load.close()
    elapsed = time.monotonic() - began
    rows = table(trials, final)
    print(f"\n## Fault campaign, {len(trials)} trials, {facts}; {elapsed / 60:.1f} min\n")
    print_table(HEADERS, rows)
    total = rows[-1]
    extra = {
        "trials not settled in time": sum(1 for t in trials if not t.settled),
        "trials that failed (a restart that timed out)": sum(1 for t in trials if t.error),
        "trials in which no request had been sent before the kill": sum(
            1 for t in trials if not t.error and t.requests_before_kill == 0
        ),
        "requests never answered after retries": sum(t.never_answered for t in trials),
        "requests retried after no answer or a 5xx": sum(t.retried for t in trials),
        "parts that exited on their own and were restarted": sum(len(t.revived) for t in trials),
        "reads (errors)": f"{sum(t.reads for t in trials)} ({sum(t.read_errors for t in trials)})",
        "claim races": sum(t.claim_tasks for t in trials),
        "visit logs accepted": sum(t.logs_accepted for t in trials),
    }
    print()
    for k, v in extra.items():
        print(f"- {k}: {v}")
    failures = sum(total[i] for i in (4, 5, 6, 7, 8, 9, 10)) + sum(1 for t in trials if t.error)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "headers": HEADERS,
                    "rows": rows,
                    "extra": extra,
                    "failures": failures,
                    "trials": [{k: v for k, v in asdict(t).items() if k != "accepted_ids"} for t in trials],
                },
                f,
                indent=1,
                default=str,
            )
    print(f"\nverdict: {'PASS' if failures == 0 else 'FAIL'} ({failures} lost, doubled or unsettled)")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
