"""The event store decides, the stream only carries (issue 17.1): reports whose messages the
stream lost are routed and escalated by the router's and escalator's reconcilers, once.

Real processes (relay and projector, router, escalator), a fresh database, streams of this
test's own on the test NATS. Messages are deleted from the stream before a worker could see
them, and the whole stream is deleted while reports are in flight; every accepted report is
then routed exactly once at the township, escalated exactly once past its deadline, and routed
exactly once at the county.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from application.care import CareApplication
from tests.app_support import make_care
from tests.e2e.test_emergency_crash import CHAIN_KEY, MASTER_KEY, World, all_routed, assert_exactly_once, counts, meta
from tests.emergency_support import Alerts, wait_until

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
RECONCILE_AFTER = 1.0
REALERT = 1.5

WORKERS = """
import sys
from guanai import bootstrap
from infrastructure.logs import configure_logging
from infrastructure.settings import load_settings
from workers.runtime import run_until_signalled
configure_logging("json", "info")
settings = load_settings()
kinds, database_url, nats_url, stream, prefix, tag = sys.argv[1:7]
common = {"stream": stream, "subject_prefix": prefix}
reconcile = {"reconcile_after": float(sys.argv[7]), "reconcile_interval": 0.3, "ack_wait": 2.0}
workers, projector = [], None
for kind in kinds.split(","):
    if kind == "relay":
        workers.append(bootstrap.relay(settings, database_url, nats_url, name=f"relay-{tag}", **common))
    elif kind == "projector":
        projector = bootstrap.projector(settings, database_url, pool_size=2, poll_interval=0.3).start()
    elif kind == "router":
        workers.append(bootstrap.router(settings, database_url, nats_url, durable=f"router-{tag}", **common, **reconcile))
    elif kind == "escalator":
        workers.append(bootstrap.escalator(settings, database_url, nats_url, durable=f"escalator-{tag}", **common,
                                           **reconcile, realert_seconds=float(sys.argv[8])))
print("workers_started", flush=True)
try:
    sys.exit(run_until_signalled(*workers))
finally:
    if projector is not None:
        projector.stop()
"""


class Processes:
    def __init__(self, tmp: Path, database_url: str, nats_url: str) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.stream, self.prefix = f"RECON_{self.tag}", f"recon{self.tag}.events"
        self.tmp, self.database_url, self.nats_url = tmp, database_url, nats_url
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, kinds: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GUANAI_")}
        env.update(PYTHONPATH=str(ROOT), GUANAI_CHAIN_KEY=CHAIN_KEY, GUANAI_MASTER_KEY=MASTER_KEY)
        args = [sys.executable, "-c", WORKERS, kinds, self.database_url, self.nats_url, self.stream, self.prefix, self.tag,
                str(RECONCILE_AFTER), str(REALERT)]  # fmt: skip
        with (self.tmp / f"{kinds}.log").open("ab") as log:
            self.procs[kinds] = subprocess.Popen(args, env=env, cwd=ROOT, stdout=log, stderr=log)

    def log(self, kinds: str) -> bytes:
        return (self.tmp / f"{kinds}.log").read_bytes()

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        asyncio.run(_delete_stream(self.nats_url, self.stream))


async def _delete_stream(nats_url: str, stream: str) -> bool:
    nc = await nats.connect(nats_url)
    try:
        return await nc.jetstream().delete_stream(stream)
    except nats.js.errors.NotFoundError:
        return False
    finally:
        await nc.close()


async def _delete_messages(nats_url: str, stream: str, subject_suffix: str) -> int:
    """Delete every message of the stream whose subject ends with ``subject_suffix``."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        deleted = 0
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                msg = await js.get_msg(stream, seq)
            except nats.js.errors.NotFoundError:
                continue
            if msg.subject.endswith(subject_suffix):
                await js.delete_msg(stream, seq)
                deleted += 1
        return deleted
    finally:
        await nc.close()


async def _subjects(nats_url: str, stream: str) -> Counter[str]:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            return Counter()
        found: Counter[str] = Counter()
        if not info.state.messages:
            return found
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            try:
                found[(await js.get_msg(stream, seq)).subject.rsplit(".", 1)[-1]] += 1
            except nats.js.errors.NotFoundError:
                continue
        return found
    finally:
        await nc.close()


@pytest.fixture
def app(fresh_database_url: str) -> Iterator[CareApplication]:
    care = make_care(
        fresh_database_url, pool_size=2, env={"GUANAI_CHAIN_KEY": CHAIN_KEY, "GUANAI_MASTER_KEY": MASTER_KEY}
    )
    yield care
    care.close()


@pytest.fixture
def processes(tmp_path: Path, fresh_database_url: str, nats_url: str) -> Iterator[Processes]:
    p = Processes(tmp_path, fresh_database_url, nats_url)
    try:
        yield p
    finally:
        p.stop()


def test_reports_whose_messages_were_deleted_are_routed_and_escalated_once(
    processes: Processes, app: CareApplication
) -> None:
    world = World(app, critical_seconds=2)
    processes.start("relay,projector")
    ids = [world.file(app) for _ in range(5)]
    wait_until(lambda: asyncio.run(_subjects(processes.nats_url, processes.stream))["Reported"] == 5, 30,
               "the reports on the stream")  # fmt: skip
    # Lost before any router saw them: the router's consumer never delivers these.
    assert asyncio.run(_delete_messages(processes.nats_url, processes.stream, ".Reported")) == 5
    processes.start("router")
    all_routed(app, ids, level=0, timeout=30)
    assert processes.log("router").count(b"reconciled_routing") == 5, "each routed by the reconciler"
    wait_until(lambda: asyncio.run(_subjects(processes.nats_url, processes.stream))["Routed"] == 5, 30,
               "the routings on the stream")  # fmt: skip
    # And the routings are lost before any escalator saw them: no message holds their deadline.
    assert asyncio.run(_delete_messages(processes.nats_url, processes.stream, ".Routed")) == 5
    processes.start("escalator")
    all_routed(app, ids, level=1, timeout=30)
    assert processes.log("escalator").count(b"reconciled_escalation") == 5
    for i in ids:
        routed, escalated = counts(app, i)
        assert escalated == Counter({0: 1}) and routed == Counter({0: 1, 1: 1}), f"report {i}: {routed} {escalated}"


def test_reports_in_flight_when_the_stream_is_deleted_are_routed_and_escalated_once(
    processes: Processes, app: CareApplication
) -> None:
    world = World(app, critical_seconds=2)
    for kinds, marker in (("relay,projector", b"relay_started"), ("router", b"router_started"),
                          ("escalator", b"escalator_started")):  # fmt: skip
        processes.start(kinds)
        wait_until(lambda k=kinds, m=marker: m in processes.log(k), 60, f"{kinds} to start")
    ids: list[uuid.UUID] = []
    stop = threading.Event()

    def file() -> None:
        while not stop.is_set() and len(ids) < 30:
            ids.append(world.file(app))
            stop.wait(0.05)

    filing = threading.Thread(target=file)
    filing.start()
    try:
        wait_until(lambda: asyncio.run(_subjects(processes.nats_url, processes.stream))["Routed"] >= 3, 30,
                   "reports flowing through the stream")  # fmt: skip
        assert asyncio.run(_delete_stream(processes.nats_url, processes.stream)), "the stream existed"
        filing.join(60)
    finally:
        stop.set()
        filing.join(10)
    assert len(ids) == 30
    all_routed(app, ids, level=0, timeout=60)
    all_routed(app, ids, level=1, timeout=60)
    assert_exactly_once(app, ids)
    for i in ids:
        routed, escalated = counts(app, i)
        assert escalated == Counter({0: 1}) and routed == Counter({0: 1, 1: 1}), f"report {i}: {routed} {escalated}"
    # The stream and the consumers were made again: the workers consume it again.
    assert sum(asyncio.run(_subjects(processes.nats_url, processes.stream)).values()) > 0, "the stream was made again"
    for kinds in ("router", "escalator"):
        assert b"consumer_gone_recreating" in processes.log(kinds), f"the {kinds} made its consumer again"
    late = world.file(app)
    all_routed(app, [late], level=0, timeout=30)

    def by_message() -> bool:
        """The router's recreated consumer delivered a message of the late report: it handled
        the report more often than the reconciler did (under load the reconciler may route it
        first, and the message then finds it routed). The log's "level" is the log level."""
        lines = [line for line in processes.log("router").splitlines() if str(late).encode() in line]
        handled = sum(b'"event": "routed"' in line or b'"event": "already_routed"' in line for line in lines)
        return handled > sum(b"reconciled_routing" in line for line in lines)

    wait_until(by_message, 30, "the late report's message at the router")


def test_a_report_nobody_acknowledges_at_the_top_is_alerted_again_until_acknowledged(
    processes: Processes, app: CareApplication
) -> None:
    world = World(app, critical_seconds=1)  # the county (level 1) is the top: nobody further
    alerts = Alerts(processes.nats_url, f"alerts.{world.county_code}.>")
    try:
        for kinds in ("relay,projector", "router", "escalator"):
            processes.start(kinds)
        waiting, answered = world.file(app), world.file(app)
        all_routed(app, [waiting, answered], level=1, timeout=60)

        def reminders(report: uuid.UUID) -> list[int]:
            return [a["reminder"] for a in alerts.for_report(str(report)) if "reminder" in a]

        wait_until(lambda: reminders(answered), 30, "a reminder")
        app.acknowledge_emergency(answered, meta("c-desk", "county_responder"))
        after_ack = len(reminders(answered))
        # The report still waiting is the clock: two more reminders for it, none for the other.
        start = len(reminders(waiting))
        wait_until(lambda: len(reminders(waiting)) >= start + 2, 30, "two more reminders")
        assert len(reminders(answered)) <= after_ack + 1, "an acknowledged report is not alerted again"
        assert reminders(waiting) == sorted(set(reminders(waiting))), "each reminder once, in order"
        assert all(
            a["alert_id"] == f"{waiting}:1:r{a['reminder']}" for a in alerts.for_report(str(waiting)) if "reminder" in a
        )
        assert all(a["level"] == 1 for a in alerts.for_report(str(waiting)) if "reminder" in a)
    finally:
        alerts.close()
