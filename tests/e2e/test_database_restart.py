"""Every worker recovers on its own when PostgreSQL is killed and started again (issue 12, item 9).

The database here is an embedded PostgreSQL of this module's own (never the machine's, which
others share): SIGKILL to the postmaster's process group, as a crash or an OOM kill would do,
then started again on the same data directory and socket. The workers run as real processes.

- The relay is stopped (a ``:stop`` failpoint, SIGSTOP) at one point of its loop at a time:
  before it reads a batch, holding a batch not yet published, with a batch published but its
  position not saved (where it used to stay stuck for good), and waiting for NOTIFY. The
  database is killed and started again while it stands there and reports are filed, then the
  relay goes on with every connection it holds dead: every event stored reaches JetStream, once.
- The relay, router, escalator, scheduler and projector together, the database killed while
  reports flow and deadlines run: every accepted report is routed and escalated exactly once per
  level, the views catch up, the scheduler sweeps again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import nats
import psycopg
import pytest

from application.care import CareApplication
from bench.cluster import child_pids
from infrastructure.embedded import EmbeddedPostgres, _pid_alive, start_postgres
from tests.app_support import make_care
from tests.conftest import create_database
from tests.e2e.test_emergency_crash import (
    CHAIN_KEY,
    MASTER_KEY,
    OwnNats,
    World,
    all_routed,
    assert_exactly_once,
    counts,
)
from tests.emergency_support import wait_until

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]

RELAY = """
import sys
from guanai import bootstrap
from infrastructure.logs import configure_logging
from infrastructure.settings import load_settings
from workers.runtime import run_until_signalled
configure_logging("json", "info")
database_url, nats_url, stream, prefix, name = sys.argv[1:6]
sys.exit(run_until_signalled(bootstrap.relay(load_settings(), database_url, nats_url, stream=stream,
                                             subject_prefix=prefix, name=name, batch_size=5)))
"""

ALL_WORKERS = """
import sys
from guanai import bootstrap
from infrastructure.logs import configure_logging
from infrastructure.settings import load_settings
from workers.runtime import run_until_signalled
configure_logging("json", "info")
settings = load_settings()
database_url, nats_url, stream, prefix, tag = sys.argv[1:6]
common = {"stream": stream, "subject_prefix": prefix}
projector = bootstrap.projector(settings, database_url, pool_size=2, poll_interval=0.5).start()
try:
    sys.exit(run_until_signalled(
        bootstrap.relay(settings, database_url, nats_url, name=f"relay-{tag}", **common),
        bootstrap.router(settings, database_url, nats_url, durable=f"router-{tag}", ack_wait=2.0, **common),
        bootstrap.escalator(settings, database_url, nats_url, durable=f"escalator-{tag}", ack_wait=2.0, **common),
        bootstrap.scheduler(settings, database_url, nats_url, durable=f"scheduler-{tag}", interval=1.0, **common),
    ))
finally:
    projector.stop()
"""


class OwnPostgres:
    """An embedded PostgreSQL that a test may kill (SIGKILL, the postmaster's whole process group)
    and start again on the same data directory and socket, so its clients find it again."""

    def __init__(self) -> None:
        # Under /tmp, not pytest's tmp_path: the server may run as another user (see conftest).
        self.data_dir = tempfile.mkdtemp(prefix="guanai-test-restart-")
        self.server: EmbeddedPostgres = start_postgres(self.data_dir, database="postgres")
        self.url = self.server.admin_url

    def kill(self) -> None:
        pid = self.server._server.get_pid()
        assert pid, "the postmaster runs"
        # The postmaster leads its own process group, and each of its children (backends,
        # checkpointer, WAL writer) runs in a session of its own: every one is killed at once, as
        # a crash of the machine or of the container would, not left to notice the postmaster died.
        children = child_pids(pid)
        assert os.getpgid(pid) != os.getpgid(0), "never this test's own process group"
        os.killpg(os.getpgid(pid), signal.SIGKILL)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        # Gone, not merely dying: pgserver starts no new server while the old pid still runs.
        wait_until(lambda: not _pid_alive(pid), 20, "the postmaster to be gone")

    def start(self) -> None:
        pgdata = Path(self.server._server.pgdata)
        socket_dir = Path(unquote(parse_qs(urlsplit(self.url).query)["host"][0]))
        for lock in [pgdata / "postmaster.pid", *socket_dir.glob(".s.PGSQL.*.lock")]:
            with contextlib.suppress(OSError, ValueError, IndexError):
                if not _pid_alive(int(lock.read_text().split()[0])):
                    # A killed postmaster nobody reaps (in a container whose init does not) stays
                    # a zombie, which both pgserver and PostgreSQL take for a running server.
                    lock.unlink()
        with type(self.server._server)._lock:
            self.server._server.ensure_postgres_running()
        wait_until(lambda: _answers(self.url), 30, "PostgreSQL to answer again")

    def stop(self) -> None:
        self.server.stop()


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def _stopped(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "T"
    except OSError:
        return False


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[OwnPostgres]:
    server = OwnPostgres()
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.start()  # a failed test may have left it killed; stop() wants it running
        server.stop()


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[OwnNats]:
    server = OwnNats(tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.terminate()
            server.proc.wait(10)


class Filer:
    """Files reports in a thread, as fast as the store takes them; failures while the database
    is away are expected, and only the reports the store accepted count."""

    def __init__(self, app: CareApplication, world: World) -> None:
        self.accepted: list[uuid.UUID] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(app, world), daemon=True)
        self._thread.start()

    def _run(self, app: CareApplication, world: World) -> None:
        while not self._stop.is_set():
            try:
                self.accepted.append(world.file(app))
            except Exception:  # noqa: BLE001 - the database is down: try again
                self.failures += 1
                self._stop.wait(0.1)
                continue
            self._stop.wait(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)


def _app(database_url: str) -> CareApplication:
    return make_care(database_url, pool_size=2, env={"GUANAI_CHAIN_KEY": CHAIN_KEY, "GUANAI_MASTER_KEY": MASTER_KEY})


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUANAI_")}
    return {**env, "PYTHONPATH": str(ROOT), "GUANAI_CHAIN_KEY": CHAIN_KEY, "GUANAI_MASTER_KEY": MASTER_KEY}


def _log_after(path: Path, offset: int, marker: bytes) -> bool:
    return marker in path.read_bytes()[offset:]


async def _stream_ids(nats_url: str, stream: str) -> list[int]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        ids = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            ids.append(int(msg.headers["Nats-Msg-Id"]))
        return ids
    finally:
        await nc.close()


async def _stream_count(nats_url: str, stream: str) -> int:
    nc = await nats.connect(nats_url)
    try:
        return (await nc.jetstream().stream_info(stream)).state.messages
    except nats.js.errors.NotFoundError:
        return 0
    finally:
        await nc.close()


def _stored_ids(database_url: str) -> list[int]:
    with psycopg.connect(database_url) as conn:
        return [r[0] for r in conn.execute("SELECT notification_id FROM guanai_events ORDER BY 1").fetchall()]


RELAY_POINTS = ["relay.before_select", "relay.before_publish", "relay.before_save", "relay.idle"]


@pytest.mark.parametrize("point", RELAY_POINTS)
def test_the_relay_recovers_from_a_database_killed_while_it_is_at(
    point: str, own_postgres: OwnPostgres, own_nats: OwnNats, tmp_path: Path
) -> None:
    database_url = create_database(own_postgres.url, prefix="guanai_restart")
    app = _app(database_url)
    world = World(app)
    tag = uuid.uuid4().hex[:8]
    stream, prefix = f"RESTART_{tag}", f"restart{tag}.events"
    log_path = tmp_path / "relay.log"
    args = [sys.executable, "-c", RELAY, database_url, own_nats.url, stream, prefix, f"relay-{tag}"]
    with log_path.open("ab") as log:
        relay = subprocess.Popen(
            args, env={**_env(), "GUANAI_FAILPOINTS": f"{point}=3:stop"}, cwd=ROOT, stdout=log, stderr=log
        )
    filer = Filer(app, world)
    try:
        wait_until(lambda: _stopped(relay.pid) or relay.poll() is not None, 30, f"the relay to stop at {point}")
        assert relay.poll() is None, log_path.read_text()
        own_postgres.kill()
        before = len(filer.accepted)
        own_postgres.start()
        # It goes on from the failpoint with every connection it holds dead, as after the crash.
        offset = log_path.stat().st_size
        os.kill(relay.pid, signal.SIGCONT)
        wait_until(lambda: len(filer.accepted) >= before + 10, 60, "reports filed after the restart")
        filer.stop()
        assert relay.poll() is None, "the relay process is still running"
        stored = _stored_ids(database_url)
        wait_until(
            lambda: asyncio.run(_stream_count(own_nats.url, stream)) >= len(stored), 60, "every event on the stream"
        )
        on_stream = asyncio.run(_stream_ids(own_nats.url, stream))
    finally:
        filer.stop()
        relay.send_signal(signal.SIGCONT)
        relay.terminate()
        try:
            relay.wait(15)
        except subprocess.TimeoutExpired:
            relay.kill()
        app.close()
    assert b'"database": true' in log_path.read_bytes()[offset:], "the relay ran into the dead connections"
    assert Counter(on_stream) == Counter(stored), "every stored event reached JetStream exactly once"
    assert on_stream == sorted(on_stream), "in notification order"
    assert len(filer.accepted) >= 10


def test_every_worker_recovers_from_a_database_killed_while_reports_flow(
    own_postgres: OwnPostgres, own_nats: OwnNats, tmp_path: Path
) -> None:
    database_url = create_database(own_postgres.url, prefix="guanai_restart")
    app = _app(database_url)
    world = World(app, critical_seconds=2)  # escalations are due while the database is down
    tag = uuid.uuid4().hex[:8]
    stream, prefix = f"RESTART_{tag}", f"restart{tag}.events"
    log_path = tmp_path / "workers.log"
    args = [sys.executable, "-c", ALL_WORKERS, database_url, own_nats.url, stream, prefix, tag]
    with log_path.open("ab") as log:
        workers = subprocess.Popen(args, env=_env(), cwd=ROOT, stdout=log, stderr=log)
    filer = Filer(app, world)
    try:
        wait_until(lambda: len(filer.accepted) >= 5, 30, "reports flowing")
        wait_until(lambda: any(counts(app, i)[0][0] for i in filer.accepted), 30, "a report routed")
        offset = log_path.stat().st_size
        own_postgres.kill()
        own_postgres.start()
        before = len(filer.accepted)
        wait_until(lambda: len(filer.accepted) >= before + 10, 60, "reports filed after the restart")
        filer.stop()
        ids = list(filer.accepted)
        all_routed(app, ids, level=0, timeout=90)
        all_routed(app, ids, level=1, timeout=90)  # nobody acknowledges: each escalates to the county
        last = max(_stored_ids(database_url))

        def views_caught_up() -> bool:
            with psycopg.connect(database_url) as conn:
                return conn.execute("SELECT min(position) FROM projection_tracking").fetchone()[0] >= last

        wait_until(views_caught_up, 60, "the views to catch up")
        wait_until(lambda: _log_after(log_path, offset, b'"swept"'), 30, "the scheduler to sweep again")
        assert workers.poll() is None, "the workers' process is still running"
        assert _log_after(log_path, offset, b"relay_retry"), "the relay ran into the outage"
        assert _log_after(log_path, offset, b"projection database unavailable"), "the projector ran into it"
    finally:
        filer.stop()
        workers.terminate()
        try:
            workers.wait(20)
        except subprocess.TimeoutExpired:
            workers.kill()
        app.close()
    assert_exactly_once(app_again := _app(database_url), ids)
    for i in ids:
        routed, escalated = counts(app_again, i)
        assert escalated == Counter({0: 1}) and routed == Counter({0: 1, 1: 1}), f"report {i}: {routed} {escalated}"
    app_again.close()
