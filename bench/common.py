"""What every benchmark shares: latency statistics, Markdown tables, a scratch database, the
Guanai API and projector as real separate processes, CPU accounting per process, and the
plain-PostgreSQL baseline (single-row INSERT transactions) that figures are compared with.

Everything started here is stopped by the context managers that started it, also on Ctrl-C,
SIGTERM or an error (child processes get SIGKILL if this process dies without cleaning up).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Self, TextIO
from urllib.parse import quote, urlsplit

import httpx
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from application.care import CareApplication
from guanai import bootstrap
from guanai.bootstrap import Process
from infrastructure.settings import load_settings

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
# One master key for the bench process and every server it starts: they read each other's sealed
# personal data. Not written into os.environ: a test that imports a bench module must not change
# the key of every application the rest of the test run builds.
MASTER_KEY = os.environ.get("GUANAI_MASTER_KEY") or "bench-master-key-" + secrets.token_urlsafe(32)


def make_care(
    database_url: str, *, pool_size: int | None = None, env: dict[str, str] | None = None, kind: Process = Process.CLI
) -> CareApplication:
    """The application over ``database_url`` as a process of ``kind`` builds it (guanai/bootstrap.py),
    with the settings of the environment and ``env`` (GUANAI_* names) over them."""
    env = env or {}
    settings = load_settings({"GUANAI_MASTER_KEY": MASTER_KEY, **os.environ, **env})
    library = {k: v for k, v in env.items() if not k.startswith("GUANAI_")}  # the eventsourcing library's own
    return bootstrap.care_application(settings, kind, database_url, pool_size=pool_size, library_env=library)


# ---- statistics and tables ------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) with linear interpolation between ranks; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Summary:
    """Outcome of one measured phase (or one kind of request within it)."""

    name: str
    elapsed: float  # seconds of wall time of the phase the requests ran in
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    errors: int = 0

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.count / self.elapsed if self.elapsed > 0 else float("nan")

    def ms(self, p: float) -> float:
        return percentile(self.latencies, p) * 1000

    def row(self, *extra: Any) -> list[Any]:
        return [
            self.name,
            self.count,
            self.errors,
            f"{self.throughput:.1f}",
            *(f"{self.ms(p):.1f}" for p in (50, 95, 99)),
            *extra,
        ]


SUMMARY_HEADERS = ["phase", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms"]


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None, file: TextIO | None = None
) -> None:
    """A Markdown pipe table, aligned so that it reads well on a terminal too."""
    out = file or sys.stdout
    cells = [[str(h) for h in headers], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
            + " |"
        )

    if title:
        print(f"\n{title}\n", file=out)
    print(line(cells[0]), file=out)
    print("|" + "|".join("-" * (w + 1) + ("-" if i == 0 else ":") for i, w in enumerate(widths)) + "|", file=out)
    for r in cells[1:]:
        print(line(r), file=out)
    out.flush()


# ---- network and databases ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reachable(url: str, timeout: float = 1.0) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), timeout=timeout):
            return True
    except OSError:
        return False


def with_database(url: str, database: str) -> str:
    return urlsplit(url)._replace(path="/" + quote(database)).geturl()


def code_version() -> str:
    """The commit measured, and whether the work tree differed from it."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], check=False, cwd=root, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], check=False, cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return head.stdout.strip() + (" with uncommitted changes" if dirty.stdout.strip() else "")


def run_facts() -> str:
    """The commit, the time in China and the machine's load when a run starts, for a report."""
    china = datetime.now(timezone(timedelta(hours=8)))
    return f"code {code_version()}, {china:%Y-%m-%d %H:%M} (UTC+8), load average {os.getloadavg()[0]:.2f} at start"


def server_facts(server_url: str) -> str:
    """One line on the PostgreSQL server and how busy it and the machine are, for a report."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
        sync = conn.execute("SHOW synchronous_commit").fetchone()[0]
        limit = conn.execute("SHOW max_connections").fetchone()[0]
        used = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'").fetchone()[0]
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} cores, load average {load:.2f} at start; PostgreSQL {version} "
        f"(synchronous_commit {sync}, {used}/{limit} client connections in use at start)"
    )


@contextlib.contextmanager
def scratch_database(server_url: str = DEFAULT_SERVER_URL, prefix: str = "guanai_bench") -> Iterator[str]:
    """A new, uniquely named database on the server of ``server_url``; dropped afterwards."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# ---- processes -------------------------------------------------------------------------------


try:
    _LIBC: Any = ctypes.CDLL(None, use_errno=True)  # loaded before any fork
except OSError:  # pragma: no cover - not Linux
    _LIBC = None


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the benchmark dies (Linux); harmless elsewhere."""
    with contextlib.suppress(Exception):
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def sigterm_as_interrupt() -> None:
    """Let SIGTERM (and SIGINT, even where a shell ignored it) unwind like Ctrl-C, so that every
    ``finally`` stops what it started."""

    def handler(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)


class ManagedProcess:
    """A child in its own process group (so its own children stop with it), output to a log."""

    def __init__(self, name: str, args: Sequence[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            list(args),
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - started before any thread of ours
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            if not self.alive():
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)  # the group is ours: start_new_session made it
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers of the group (embedded servers)
        self._log.close()


@dataclass
class GuanaiServer:
    """The API (``guanai api``) and a projector (``guanai projector``) as separate processes; the
    API as one process, or several (``apis``, each on its own port, ``base_urls`` in the same order)
    as replicas behind a proxy would run. ``api`` and ``base_url`` are the first of them."""

    base_url: str
    jwt_secret: str
    api: ManagedProcess
    projector: ManagedProcess
    nats_url: str | None
    env: dict[str, str] = field(default_factory=dict)  # the processes' environment (GUANAI_* settings)
    apis: list[ManagedProcess] = field(default_factory=list)  # every API process; [api] when empty
    base_urls: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.apis:
            self.apis, self.base_urls = [self.api], [self.base_url]
        if len(self.base_urls) != len(self.apis) or self.apis[0] is not self.api:
            raise ValueError("apis and base_urls name the same processes, the first being api")

    @property
    def api_pids(self) -> list[int]:
        """The API processes' pids (each leads its own process group, as ``CpuMeter`` counts them)."""
        return [p.pid for p in self.apis]

    def token(self, role: str = "administrator", org_unit_id: str | None = None) -> str:
        from api.auth import issue_token
        from domain.vocabulary import ActorRole

        org = uuid.UUID(org_unit_id) if org_unit_id else None
        return issue_token(
            self.jwt_secret, subject="bench", role=ActorRole(role), org_unit_id=org, ttl=timedelta(hours=6)
        )

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.base_url}/health", timeout=10).json()

    def wait_for_views(self, timeout: float = 300.0) -> float:
        """Seconds until the projector has applied every recorded event (bounded by ``timeout``)."""
        started = time.monotonic()
        while True:
            views = self.health().get("views", {})
            if views.get("events_behind") == 0:
                return time.monotonic() - started
            if time.monotonic() - started > timeout or not self.projector.alive():
                raise RuntimeError(
                    f"the projector did not catch up within {timeout:.0f}s: {views}\n{self.projector.tail()}"
                )
            time.sleep(0.05)


@contextlib.contextmanager
def guanai_server(
    database_url: str,
    *,
    nats_url: str | None = None,
    extra_env: dict[str, str] | None = None,
    api_command: Sequence[str] | None = None,
    api_processes: int = 1,
) -> Iterator[GuanaiServer]:
    """Migrate ``database_url``, start the API and the projector, wait for /health; stop both after.
    ``api_command`` replaces ``guanai api`` (a benchmark's own build of the app, same settings).
    ``api_processes`` > 1 starts that many API processes, each on its own port (``GUANAI_PORT``)
    with the same environment otherwise (one data directory, as processes of one deployment share
    it), /health checked on each; they need ``nats_url`` (each would start its own embedded NATS)."""
    if api_processes < 1:
        raise ValueError(f"api_processes must be at least 1, not {api_processes}")
    if api_processes > 1 and not nats_url:
        raise ValueError("several API processes need a NATS server (nats_url): each would embed its own")
    ports: list[int] = []
    while len(ports) < api_processes:
        if (port := free_port()) not in ports:
            ports.append(port)
    secret = secrets.token_urlsafe(48)
    with tempfile.TemporaryDirectory(prefix="guanai-bench-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GUANAI_")}
        env.update(
            GUANAI_DATABASE_URL=database_url,
            GUANAI_JWT_SECRET=secret,
            GUANAI_CHAIN_KEY=secrets.token_urlsafe(48),  # every process that writes events shares it
            GUANAI_MASTER_KEY=MASTER_KEY,
            GUANAI_PORT=str(ports[0]),
            GUANAI_HOST="127.0.0.1",
            GUANAI_LOG_LEVEL="warning",
            GUANAI_LOG_FORMAT="json",
            GUANAI_DATA_DIR=str(Path(tmp) / "data"),  # where `guanai api` puts an embedded NATS
        )
        env.update(extra_env or {})
        if nats_url:
            env["GUANAI_NATS_URL"] = nats_url
        cli = [sys.executable, "-m", "guanai.cli"]
        subprocess.run([*cli, "migrate"], env=env, check=True, capture_output=True, timeout=120)
        started: list[ManagedProcess] = []
        try:
            projector = ManagedProcess("projector", [*cli, "projector"], env, Path(tmp))
            started.append(projector)
            apis = []
            for n, port in enumerate(ports):
                name = "api" if n == 0 else f"api{n + 1}"
                apis.append(
                    ManagedProcess(
                        name, list(api_command or [*cli, "api"]), {**env, "GUANAI_PORT": str(port)}, Path(tmp)
                    )
                )
                started.append(apis[-1])
            urls = [f"http://127.0.0.1:{port}" for port in ports]
            server = GuanaiServer(urls[0], env["GUANAI_JWT_SECRET"], apis[0], projector, nats_url, env, apis, urls)
            _wait_healthy(server, timeout=60)
            yield server
        finally:
            for p in reversed(started):
                p.stop()


def _wait_healthy(server: GuanaiServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    waiting = dict(zip(server.base_urls, server.apis, strict=True))
    while True:
        for p in (*server.apis, server.projector):
            if not p.alive():
                raise RuntimeError(f"{p.name} exited with {p.proc.returncode}:\n{p.tail()}")
        for url in list(waiting):
            with contextlib.suppress(httpx.HTTPError, ValueError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    del waiting[url]
        if not waiting:
            return
        if time.monotonic() > deadline:
            late = next(iter(waiting.values()))
            raise RuntimeError(f"{late.name} did not become healthy within {timeout:.0f}s:\n{late.tail()}")
        time.sleep(0.1)


# ---- CPU accounting --------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def postmaster_pid(database_url: str) -> int | None:
    """The pid of the (local) PostgreSQL server behind ``database_url``: the parent of a backend."""
    with psycopg.connect(database_url) as conn:
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        try:
            raw = Path(f"/proc/{backend}/stat").read_text()
        except OSError:
            return None  # not on this machine
    return int(raw[raw.rindex(")") + 2 :].split()[1])


def backends_cpu(conn: psycopg.Connection[Any], database: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend connected to ``database`` (asked over ``conn``;
    their CPU from /proc: a local server's only, an empty figure otherwise). A backend that ends
    before it is read is missed."""
    pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,))]
    found = {}
    for pid in pids:
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        found[pid] = (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime
    return found


class BackendCpu:
    """CPU seconds of the PostgreSQL backends connected to one database during a phase: their
    pids from ``pg_stat_activity`` (asked over a connection to another database, so the asking
    is not counted) and their CPU from /proc, read at the start and the end and, with an
    ``interval``, every ``interval`` seconds between (from a thread of this process). A backend
    seen only after the start counts from zero; one that ends between two readings loses what it
    used since the last (without an interval: all of it, which suits pools that keep their
    connections). Local servers only (an empty figure otherwise)."""

    def __init__(self, url: str, interval: float | None = 0.02) -> None:
        self.url, self.interval = url, interval
        self.database = str(psycopg.conninfo.conninfo_to_dict(url)["dbname"])

    def _read(self) -> None:
        for pid, seconds in backends_cpu(self._conn, self.database).items():
            self._first.setdefault(pid, 0.0)
            self._last[pid] = seconds

    def __enter__(self) -> Self:
        self._stop = threading.Event()
        self._conn = psycopg.connect(self.url, dbname="postgres", autocommit=True)
        self._first = backends_cpu(self._conn, self.database)
        self._last = dict(self._first)
        self._thread: threading.Thread | None = None
        if self.interval is not None:
            interval = self.interval

            def run() -> None:
                while not self._stop.wait(interval):
                    self._read()

            self._thread = threading.Thread(target=run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._read()
        self._conn.close()
        self.seconds = sum(self._last[pid] - first for pid, first in self._first.items())


def _process_cpu(postmaster: int | None) -> tuple[dict[int, float], float]:
    """CPU seconds per process group, and of the PostgreSQL server (the postmaster and its
    children; without a postmaster pid, every process named postgres)."""
    groups: dict[int, float] = {}
    postgres = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime
        groups[int(fields[2])] = groups.get(int(fields[2]), 0.0) + seconds
        if (postmaster is None and comm == "postgres") or postmaster in (int(entry), int(fields[1])):
            postgres += seconds
    return groups, postgres


def _machine_busy() -> float:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / _TICK  # all but idle and iowait


class CpuMeter:
    """CPU seconds spent during a phase by named process groups (a name may stand for several
    groups, counted together: e.g. every API process), PostgreSQL, this process, the machine."""

    def __init__(self, groups: dict[str, int | Sequence[int]], postmaster: int | None = None) -> None:
        self.groups = {name: (ids,) if isinstance(ids, int) else tuple(ids) for name, ids in groups.items()}
        self.postmaster = postmaster

    def _sample(self) -> dict[str, float]:
        per_group, postgres = _process_cpu(self.postmaster)
        sample = {name: sum(per_group.get(pgid, 0.0) for pgid in ids) for name, ids in self.groups.items()}
        # This process's user + system time at the clock's resolution, not /proc's 10 ms ticks: a
        # lean load generator spends a tick in about a hundred requests.
        sample.update(postgres=postgres, load_generator=time.process_time(), machine=_machine_busy())
        return sample

    def __enter__(self) -> Self:
        self._start = self._sample()
        self.used: dict[str, float] = {}
        return self

    def __exit__(self, *_: object) -> None:
        end = self._sample()
        self.used = {k: end[k] - self._start[k] for k in end}
        self.used["other"] = self.used["machine"] - sum(v for k, v in self.used.items() if k != "machine")


# ---- the plain-PostgreSQL baseline -------------------------------------------------------------


def timed_connections(
    database_url: str, *, clients: int, requests: int, operation: Callable[[psycopg.Connection[Any], int], None]
) -> tuple[float, list[float], int]:
    """``clients`` autocommit connections, started together, each calling ``operation(conn, n)``
    until ``requests`` calls are made: (seconds, latency of every call that succeeded, errors)."""
    tickets = itertools.count()
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    conns = [psycopg.connect(database_url, autocommit=True) for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)

    def work(n: int) -> None:
        barrier.wait()
        while next(tickets) < requests:
            t0 = time.perf_counter()
            try:
                operation(conns[n], n)
            except psycopg.Error:
                errors[n] += 1
                continue
            latencies[n].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(clients)]
    try:
        for t in threads:
            t.start()
        barrier.wait()
        started = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
    finally:
        for c in conns:
            c.close()
    return elapsed, [x for per in latencies for x in per], sum(errors)


def insert_baseline(
    database_url: str,
    *,
    clients: int,
    requests: int,
    payload: dict[str, Any],
    lock_table: bool = False,
    name: str = "baseline",
) -> Summary:
    """``clients`` connections each committing single-row INSERT transactions of a JSONB payload
    into a scratch table until ``requests`` rows are in. ``lock_table`` adds what the event store
    does per transaction (EXCLUSIVE table lock and NOTIFY), which serialises the commits."""
    table = f"bench_baseline_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE {} (id bigserial PRIMARY KEY, payload jsonb NOT NULL)").format(sql.Identifier(table))
        )
    insert = sql.SQL("INSERT INTO {} (payload) VALUES (%s)").format(sql.Identifier(table))
    lock = sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.Identifier(table))
    notify = sql.SQL("NOTIFY {}").format(sql.Identifier(table))

    def one(conn: psycopg.Connection[Any], _: int) -> None:
        body = {**payload, "id": str(uuid.uuid4())}
        with conn.transaction():
            if lock_table:
                conn.execute(lock)
                conn.execute(notify)
            conn.execute(insert, (Jsonb(body),), prepare=True)

    try:
        elapsed, latencies, errors = timed_connections(database_url, clients=clients, requests=requests, operation=one)
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
    return Summary(name, elapsed, latencies, errors)
