"""A Guanai cluster of its own for fault campaigns and soaks: a PostgreSQL and a nats-server that
this module starts on free ports in a scratch directory (never the machine's shared servers), and
each Guanai part as its own process (``guanai api``, ``projector``, ``relay``, ``router``,
``escalator``, ``scheduler``), every one of which can be SIGKILLed and started again by name.

Only processes started here are ever signalled, by their pid (or the process group each was
started in). Everything is stopped on exit; children also die with the parent (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.common import _die_with_parent, free_port
from infrastructure.embedded import jetstream_config, nats_info, nats_server_binary

ROOT = Path(__file__).resolve().parent.parent
WORKERS = ("projector", "relay", "router", "escalator", "scheduler")
PARTS = ("api", *WORKERS)
# The line each worker logs once it is consuming (the projector has none: its lag says it).
STARTED = {"relay": b"relay_started", "router": b"router_started", "escalator": b"escalator_started",
           "scheduler": b"scheduler_started"}  # fmt: skip


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def child_pids(pid: int) -> list[int]:
    """The pids of a process's children (every thread's), from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


class OwnPostgres:
    """PostgreSQL (the binaries of the ``pgserver`` package) on 127.0.0.1:<free port> over a data
    directory of its own. As root it runs as the ``pgserver`` user, as pgserver itself does."""

    def __init__(self, base: Path, settings: dict[str, str] | None = None) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH

        self.settings = {"max_connections": "200", "shared_buffers": "64MB", **(settings or {})}
        self.bin = Path(POSTGRES_BIN_PATH)
        self.pgdata = base / "pgdata"
        self.port = free_port()
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/guanai"
        self.log_path = base / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.user: str | None = None
        if os.geteuid() == 0:
            from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

            ensure_user_exists("pgserver")
            ensure_prefix_permissions(self.bin)
            ensure_folder_permissions(self.bin, 0o055)
            ensure_folder_permissions(self.bin.parent / "lib", 0o044)
            ensure_prefix_permissions(base)
            base.chmod(0o777)
            self.user = "pgserver"
        subprocess.run(
            [str(self.bin / "initdb"), "-D", str(self.pgdata), "--auth=trust", "--encoding=utf8", "-U", "postgres"],
            check=True, capture_output=True, user=self.user, timeout=120,
        )  # fmt: skip

    def start(self, timeout: float = 60) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.pgdata), "-h", "127.0.0.1", "-p", str(self.port),
             "-k", str(self.pgdata), *(a for k, v in self.settings.items() for a in ("-c", f"{k}={v}"))],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, user=self.user, start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - before any thread of the caller's
        )  # fmt: skip
        wait_for(self.answers, timeout, "PostgreSQL to accept connections", 0.1)

    def answers(self) -> bool:
        try:
            with psycopg.connect(self.admin_url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def create_database(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE guanai")

    def kill(self) -> None:
        """SIGKILL the postmaster and every process it started at once (a crash, an OOM kill):
        PostgreSQL recovers from its WAL when started again."""
        assert self.proc is not None
        pid = self.proc.pid
        children = child_pids(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        self.proc.wait(20)
        wait_for(lambda: not any(_alive(c) for c in children), 20, "PostgreSQL's processes to be gone")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


class OwnNats:
    """A nats-server with JetStream (``sync_interval: always``, as the embedded one runs) on a
    free port and a store of its own, restarted on the same port and store after a kill (the
    cluster's, and tests/e2e/test_emergency_crash.py's)."""

    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.config = base / "nats.conf"
        self.config.write_text(jetstream_config(base / "jetstream"))
        self.log_path = base / "nats.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        self.proc = subprocess.Popen(
            [str(nats_server_binary()), "--config", str(self.config), "--addr", "127.0.0.1", "--port", str(self.port),
             "--log", str(self.log_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )  # fmt: skip
        wait_for(lambda: (i := nats_info("127.0.0.1", self.port, 0.5)) and i.get("jetstream"), timeout, "NATS", 0.05)

    def kill(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(20)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


class Part:
    """One Guanai process (``python -m guanai.cli <kind>``), its output appended to a log."""

    def __init__(self, kind: str, env: dict[str, str], log_dir: Path) -> None:
        self.kind = kind
        self.env = env
        self.log_path = log_dir / f"{kind}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.offset = 0
        self.starts = 0

    def start(self) -> None:
        self.offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "guanai.cli", self.kind], env=self.env, cwd=ROOT, stdout=log, stderr=log,
            stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )  # fmt: skip
        log.close()
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def started_line_seen(self) -> bool:
        marker = STARTED.get(self.kind)
        if marker is None:
            return True
        try:
            with self.log_path.open("rb") as f:
                f.seek(self.offset)
                return marker in f.read()
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, the process group the part was started in (its own)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(20)

    def stop(self, grace: float = 10) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Cluster:
    """PostgreSQL, NATS and the six Guanai parts, each killable and restartable by name
    (``postgres``, ``nats``, or one of ``PARTS``)."""

    def __init__(self, base: Path, extra_env: dict[str, str] | None = None) -> None:
        self.base = base
        self.postgres = OwnPostgres(base)
        self.nats = OwnNats(base)
        self.api_port = free_port()
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        self.jwt_secret = secrets.token_urlsafe(48)
        self.keys = {
            "GUANAI_CHAIN_KEY": secrets.token_urlsafe(48),
            "GUANAI_MASTER_KEY": secrets.token_urlsafe(48),
            "GUANAI_LOOKUP_KEY": secrets.token_urlsafe(48),
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("GUANAI_")}
        env.update(self.keys)
        env.update(
            GUANAI_DATABASE_URL=self.postgres.url, GUANAI_NATS_URL=self.nats.url, GUANAI_JWT_SECRET=self.jwt_secret,
            GUANAI_HOST="127.0.0.1", GUANAI_PORT=str(self.api_port), GUANAI_DATA_DIR=str(base / "data"),
            GUANAI_LOG_FORMAT="json", GUANAI_LOG_LEVEL="info", GUANAI_DB_POOL_SIZE="4",
        )  # fmt: skip
        env.update(extra_env or {})
        self.env = env
        self.parts = {kind: Part(kind, env, base) for kind in PARTS}

    def start(self, timeout: float = 120) -> None:
        self.postgres.start()
        self.postgres.create_database()
        self.nats.start()
        subprocess.run(
            [sys.executable, "-m", "guanai.cli", "migrate"], env=self.env, cwd=ROOT, check=True,
            capture_output=True, timeout=300,
        )  # fmt: skip
        for part in self.parts.values():
            part.start()
        for kind in PARTS:
            self.wait_ready(kind, timeout)

    def pids(self) -> dict[str, int]:
        """The pid of every process of the cluster now (the postmaster for PostgreSQL)."""
        pids = {k: p.pid for k, p in self.parts.items() if p.alive()}
        if self.postgres.proc is not None and self.postgres.proc.poll() is None:
            pids["postgres"] = self.postgres.proc.pid
        if self.nats.proc is not None and self.nats.proc.poll() is None:
            pids["nats"] = self.nats.proc.pid
        return pids

    def kill(self, target: str) -> None:
        if target == "postgres":
            self.postgres.kill()
        elif target == "nats":
            self.nats.kill()
        else:
            self.parts[target].kill()

    def restart(self, target: str, timeout: float = 120) -> None:
        """Start ``target`` again and wait until it serves (the API answers /health, a worker has
        logged that it consumes, a server accepts connections)."""
        if target == "postgres":
            self.postgres.start(timeout)
        elif target == "nats":
            self.nats.start(timeout)
        else:
            self.parts[target].start()
            self.wait_ready(target, timeout)

    def wait_ready(self, kind: str, timeout: float) -> None:
        part = self.parts[kind]

        def ready() -> bool:
            if not part.alive():
                raise RuntimeError(f"{kind} exited with {part.proc.returncode if part.proc else None}:\n{part.tail()}")
            if kind == "api":
                with contextlib.suppress(httpx.HTTPError):
                    return httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200
                return False
            return part.started_line_seen()

        wait_for(ready, timeout, f"{kind} to serve", 0.05)

    def revive_exited(self) -> list[str]:
        """Start again any part that exited on its own (as a supervisor would); their names."""
        revived = []
        for kind, part in self.parts.items():
            if not part.alive():
                part.start()
                revived.append(kind)
        return revived

    def health(self) -> dict[str, Any]:
        return httpx.get(f"{self.base_url}/health", timeout=5).json()

    def stop(self) -> None:
        for part in reversed(list(self.parts.values())):
            with contextlib.suppress(Exception):
                part.stop()
        with contextlib.suppress(Exception):
            self.nats.stop()
        with contextlib.suppress(Exception):
            self.postgres.stop()


@contextlib.contextmanager
def own_cluster(extra_env: dict[str, str] | None = None, keep: bool = False) -> Iterator[Cluster]:
    """A started cluster in a scratch directory (under /tmp: the server user must traverse it),
    stopped and removed afterwards (``keep``: the directory, with every log, stays)."""
    base = Path(tempfile.mkdtemp(prefix="guanai-cluster-"))
    cluster = Cluster(base, extra_env)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        if keep:
            print(f"logs and data kept in {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)


def rss_kib(pid: int) -> int | None:
    """Resident memory of a process and its descendants (a postmaster's backends), KiB."""
    total = 0
    todo = [pid]
    seen = set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            if p == pid:
                return None
            continue
        todo += child_pids(p)
    return total


def dump(obj: Any) -> str:
    return json.dumps(obj, default=str, ensure_ascii=False)
