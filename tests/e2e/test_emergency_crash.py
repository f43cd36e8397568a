"""Crash safety of the emergency path, proven with real processes and SIGKILL.

The relay, the router, the escalator and the API run as separate processes against a fresh
database and a NATS server of this test's own (never the machine's: that one is killed here).
Each scenario kills one of them at a chosen point of a report's life (a failpoint where the
process SIGKILLs itself, or a SIGKILL from outside), restarts it, and then checks the event
store: every accepted report was routed exactly once per level it reached, and escalated at most
once per level. Scenarios run several rounds so that CI runs them repeatedly.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from application.care import CareApplication
from bench.cluster import OwnNats
from domain.base import CommandMeta
from domain.emergency import Category, EmergencyReport, Severity
from domain.roster import Tier
from domain.vocabulary import ActorRole, OrgLevel, PersonKind, Sex
from tests.api_support import free_port
from tests.app_support import make_care
from tests.emergency_support import Alerts, wait_until

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 3
# Every process that writes events shares the audit chain's key (infrastructure/chain.py).
CHAIN_KEY = secrets.token_urlsafe(48)
MASTER_KEY = secrets.token_urlsafe(48)  # the processes and this test read each other's sealed data

WORKER = """
import sys
from guanai import bootstrap
from infrastructure.settings import load_settings
from workers.router import keep_running
from workers.runtime import run_until_signalled
settings = load_settings()
kind, database_url, nats_url, stream, prefix, name, max_deliver = sys.argv[1:8]
common = {"stream": stream, "subject_prefix": prefix}
options = {"max_deliver": int(max_deliver)} if max_deliver else {}
# A killed worker's message comes back after the ack wait: shorter here, so the test is quicker.
options["ack_wait"] = 2.0
if kind == "relay":
    relay = bootstrap.relay(settings, database_url, nats_url, name=name, **common)
    # As a supervisor would restart it: a relay that cannot start (a busy shared database) tries again.
    worker = lambda stop: keep_running("relay", stop, relay)
elif kind == "router":
    worker = bootstrap.router(settings, database_url, nats_url, durable=name, **common, **options)
else:
    worker = bootstrap.escalator(settings, database_url, nats_url, durable=name, **common, **options)
sys.exit(run_until_signalled(worker))
"""


class System:
    """The processes of the emergency path, each started, killed and restarted by name."""

    def __init__(self, tmp: Path, database_url: str) -> None:
        tag = uuid.uuid4().hex[:8]
        self.tmp, self.database_url = tmp, database_url
        self.stream, self.prefix = f"CRASH_{tag}", f"crash{tag}.events"
        self.nats = OwnNats(tmp)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.secret = secrets.token_urlsafe(48)
        self.api_port = free_port()

    def env(self, failpoints: str = "", master_key: str = MASTER_KEY) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GUANAI_")}
        env.update(
            GUANAI_DATABASE_URL=self.database_url, GUANAI_NATS_URL=self.nats.url, GUANAI_JWT_SECRET=self.secret,
            GUANAI_PORT=str(self.api_port), GUANAI_LOG_FORMAT="json", GUANAI_LOG_LEVEL="warning",
            GUANAI_DATA_DIR=str(self.tmp / "data"), GUANAI_FAILPOINTS=failpoints, GUANAI_DB_POOL_SIZE="2",
            GUANAI_CHAIN_KEY=CHAIN_KEY, GUANAI_MASTER_KEY=master_key,
        )  # fmt: skip
        return env

    def start(
        self,
        name: str,
        *,
        kind: str | None = None,
        failpoints: str = "",
        max_deliver: int | None = None,
        master_key: str = MASTER_KEY,
    ) -> None:
        kind = kind or name
        if kind == "api":
            args = [sys.executable, "-m", "guanai.cli", "api"]
        else:
            args = [
                sys.executable,
                "-c",
                WORKER,
                kind,
                self.database_url,
                self.nats.url,
                self.stream,
                self.prefix,
                name,
                str(max_deliver or ""),
            ]
        log_path = self.tmp / f"{name}.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        log = log_path.open("ab")
        self.procs[name] = subprocess.Popen(
            args, env=self.env(failpoints, master_key), cwd=ROOT, stdout=log, stderr=log, start_new_session=True
        )
        # One at a time: processes creating the store's tables at the same moment collide in
        # PostgreSQL's catalog ("tuple concurrently updated"), which is not what is tested here.
        if kind == "api":
            wait_until(self._api_up, 30, "the API to start")
        else:
            marker = f"{kind}_started".encode()
            wait_until(
                lambda: marker in log_path.read_bytes()[offset:] or self.procs[name].poll() is not None,
                30,
                f"{name} to start",
            )

    def _api_up(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"http://127.0.0.1:{self.api_port}/health", timeout=1).status_code == 200
        return False

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def died(self, name: str, timeout: float = 30) -> int:
        """Wait for a process that a failpoint kills; its exit code (-9 for SIGKILL)."""
        wait_until(lambda: self.procs[name].poll() is not None, timeout, f"{name} to die at its failpoint")
        return self.procs[name].returncode

    def drained(self, durable: str, timeout: float = 30) -> None:
        """Wait until the consumer has every message of the stream acknowledged, redeliveries
        after the crash included: only then is "nothing happened twice" worth asserting."""
        import asyncio

        import nats

        async def done() -> bool:
            nc = await nats.connect(self.nats.url)
            try:
                info = await nc.jetstream().consumer_info(self.stream, durable)
            finally:
                await nc.close()
            return info.num_pending == 0 and info.num_ack_pending == 0 and info.num_redelivered == 0

        wait_until(lambda: asyncio.run(done()), timeout, f"{durable} to acknowledge everything")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.nats.stop()

    def token(self, role: ActorRole, org_unit_id: uuid.UUID) -> str:
        from api.auth import issue_token

        return issue_token(
            self.secret, subject=f"{role.value}-1", role=role, org_unit_id=org_unit_id, ttl=timedelta(hours=1)
        )


def meta(actor: str = "test-admin", role: str = "administrator") -> CommandMeta:
    return CommandMeta(
        actor_id=actor, actor_role=role, correlation_id=f"crash-{uuid.uuid4().hex[:8]}", occurred_at=datetime.now(UTC)
    )


class World:
    """A county, a township with a village and an elder, and rosters with responders always on duty."""

    def __init__(self, app: CareApplication, *, critical_seconds: int = 300) -> None:
        code = f"{uuid.uuid4().int % 10**6:06d}"
        m = meta()
        self.county = app.register_org_unit(
            code=code + "000000", name="县", level=OrgLevel.COUNTY, parent_id=None, meta=m
        ).id
        self.township = app.register_org_unit(
            code=code + "101000", name="镇", level=OrgLevel.TOWNSHIP, parent_id=self.county, meta=m
        ).id
        village = app.register_org_unit(
            code=code + "101001", name="村", level=OrgLevel.VILLAGE, parent_id=self.township, meta=m
        ).id
        self.county_code, self.township_code = code + "000000", code + "101000"
        self.person = app.register_person(
            id=uuid.uuid4(),
            kind=PersonKind.ELDER,
            name="老人",
            sex=Sex.FEMALE,
            birth_date=date(1940, 1, 1),
            village_id=village,
            meta=m,
        ).id
        for unit, responder in ((self.township, "t-desk"), (self.county, "c-desk")):
            app.set_up_roster(unit, {"critical": critical_seconds}, m)
            app.add_roster_responder(
                unit, responder_id=responder, name="值班", phone="13900000000", tier=Tier.PRIMARY, shifts=[], meta=m
            )

    def file(self, app: CareApplication) -> uuid.UUID:
        return app.file_emergency(
            id=uuid.uuid4(),
            category=Category.CRITICAL_ILLNESS,
            severity=Severity.CRITICAL,
            description="昏迷",
            meta=meta("vol-1", "volunteer"),
            person_id=self.person,
        ).id


def counts(app: CareApplication, report_id: uuid.UUID) -> tuple[Counter[int], Counter[int]]:
    """Routings per level and escalations per from-level, straight from the event store."""
    events = app.history(report_id)
    routed = Counter(e.level for e in events if isinstance(e, EmergencyReport.Routed))
    escalated = Counter(e.from_level for e in events if isinstance(e, EmergencyReport.Escalated))
    return routed, escalated


def all_routed(app: CareApplication, ids: list[uuid.UUID], level: int = 0, timeout: float = 45) -> None:
    wait_until(
        lambda: all(counts(app, i)[0][level] for i in ids), timeout, f"{len(ids)} reports routed at level {level}"
    )


def assert_exactly_once(app: CareApplication, ids: list[uuid.UUID]) -> None:
    for i in ids:
        routed, escalated = counts(app, i)
        assert routed[0] == 1, f"report {i} routed {routed[0]} times at the township"
        assert all(n == 1 for n in routed.values()), f"report {i} routed twice at a level: {routed}"
        assert all(n == 1 for n in escalated.values()), f"report {i} escalated twice from a level: {escalated}"
        assert set(routed) == {0, *(lv + 1 for lv in escalated)}, f"report {i}: every level reached was routed"


@pytest.fixture
def system(tmp_path: Path, fresh_database_url: str) -> Iterator[System]:
    s = System(tmp_path, fresh_database_url)
    s.nats.start()
    try:
        yield s
    finally:
        s.stop_all()


@pytest.fixture
def app(fresh_database_url: str) -> Iterator[CareApplication]:
    care = make_care(
        fresh_database_url, pool_size=2, env={"GUANAI_CHAIN_KEY": CHAIN_KEY, "GUANAI_MASTER_KEY": MASTER_KEY}
    )
    yield care
    care.close()


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_router_killed_between_routing_and_ack_routes_once_and_still_alerts(
    system: System, app: CareApplication, round_: int
) -> None:
    world = World(app)
    alerts = Alerts(system.nats.url, f"alerts.{world.county_code}.>")
    try:
        system.start("relay")
        # Dies right after its 3rd routing command commits, before the message is acknowledged.
        system.start("router", failpoints=f"router.after_route={3 + round_}")
        ids = [world.file(app) for _ in range(8)]
        assert system.died("router") == -signal.SIGKILL
        system.start("router")
        all_routed(app, ids)
        wait_until(lambda: all(alerts.for_report(str(i)) for i in ids), 30, "an alert for every report")
        system.drained("router")
    finally:
        alerts.close()
    assert_exactly_once(app, ids)


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_router_killed_after_the_alert_repeats_the_alert_not_the_routing(
    system: System, app: CareApplication, round_: int
) -> None:
    world = World(app)
    alerts = Alerts(system.nats.url, f"alerts.{world.county_code}.>")
    try:
        system.start("relay")
        system.start("router", failpoints=f"router.after_alert={2 + round_}")
        ids = [world.file(app) for _ in range(6)]
        system.died("router")
        system.start("router")
        all_routed(app, ids)
        # The routing whose ack died with the router is delivered again after the ack wait.
        repeated = wait_until(lambda: [i for i in ids if len(alerts.for_report(str(i))) > 1], 30, "a repeated alert")
        wait_until(lambda: all(alerts.for_report(str(i)) for i in ids), 30, "an alert for every report")
        system.drained("router")
    finally:
        alerts.close()
    assert_exactly_once(app, ids)
    for i in repeated:
        assert {a["alert_id"] for a in alerts.for_report(str(i))} == {f"{i}:0"}, "a repeat is recognisable"


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_two_racing_escalators_one_killed_escalate_each_report_once(
    system: System, app: CareApplication, round_: int
) -> None:
    world = World(app, critical_seconds=1)
    system.start("relay")
    system.start("router")
    # Two escalators with durables of their own: each sees every routing and tries to escalate it.
    system.start("escalator-a", kind="escalator", failpoints=f"escalator.after_escalate={1 + round_}")
    system.start("escalator-b", kind="escalator")
    ids = [world.file(app) for _ in range(6)]
    system.died("escalator-a")
    system.start("escalator-a", kind="escalator")
    all_routed(app, ids, level=1)
    for durable in ("escalator-a", "escalator-b", "router"):
        system.drained(durable)
    assert_exactly_once(app, ids)
    for i in ids:
        routed, escalated = counts(app, i)
        assert escalated == Counter({0: 1}) and routed == Counter({0: 1, 1: 1}), "the chain ends at the county"


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_api_killed_after_commit_before_answering_loses_nothing(
    system: System, app: CareApplication, round_: int
) -> None:
    world = World(app)
    system.start("relay")
    system.start("router")
    system.start("api", failpoints=f"api.after_file={3 + round_}")
    base = f"http://127.0.0.1:{system.api_port}"
    # Someone who may read the person: a report names only people its filer may see.
    headers = {"Authorization": f"Bearer {system.token(ActorRole.TOWNSHIP_SUPERVISOR, world.township)}"}
    accepted: list[uuid.UUID] = []
    lost_answer: list[dict[str, Any]] = []
    for _ in range(6):
        body = {
            "id": str(uuid.uuid4()),
            "category": "neglect",
            "severity": "high",
            "person_id": str(world.person),
            "description": "无人照料",
        }
        try:
            r = httpx.post(f"{base}/emergencies", json=body, headers=headers, timeout=10)
        except httpx.TransportError:
            lost_answer.append(body)  # the API died after the commit: the client does not know
            system.died("api")
            system.start("api")
            continue
        assert r.status_code == 201, r.text
        accepted.append(uuid.UUID(r.json()["id"]))
    assert len(lost_answer) == 1
    # The client retries what it got no answer for: the report was stored, so 200, not a second one.
    retry = httpx.post(f"{base}/emergencies", json=lost_answer[0], headers=headers, timeout=10)
    assert retry.status_code == 200 and retry.json()["id"] == lost_answer[0]["id"]
    accepted.append(uuid.UUID(retry.json()["id"]))
    all_routed(app, accepted)
    system.drained("router")
    assert_exactly_once(app, accepted)


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_nats_killed_mid_stream_loses_no_report(system: System, app: CareApplication, round_: int) -> None:
    world = World(app, critical_seconds=2)
    for name in ("relay", "router", "escalator"):
        system.start(name)
    ids: list[uuid.UUID] = []
    filing = threading.Thread(target=lambda: [ids.append(world.file(app)) or time.sleep(0.05) for _ in range(30)])
    filing.start()
    wait_until(lambda: len(ids) >= 8 + 4 * round_, 20, "reports flowing")
    system.nats.kill()
    killed_at = len(ids)
    system.nats.start()
    filing.join(30)
    assert killed_at < len(ids) == 30, "reports were filed before, during and after the outage"
    # The router is killed from outside too, at whatever it was doing.
    system.kill("router")
    system.start("router")
    all_routed(app, ids, level=0, timeout=60)
    # Nobody acknowledges: every report escalates once, and the county level is routed once.
    all_routed(app, ids, level=1, timeout=60)
    for durable in ("router", "escalator"):
        system.drained(durable, timeout=60)
    assert_exactly_once(app, ids)


def test_a_message_the_router_cannot_handle_ends_in_the_dead_letters_a_person_sees(
    system: System, app: CareApplication
) -> None:
    import asyncio

    import nats

    system.start("relay")
    system.start("router", max_deliver=3)
    World(app)  # events to relay, so the stream exists

    async def publish_garbage() -> None:
        nc = await nats.connect(system.nats.url)
        js = nc.jetstream()
        wait = time.monotonic() + 20
        while True:
            try:
                await js.stream_info(system.stream)
                break
            except Exception:  # noqa: BLE001 - not created yet
                assert time.monotonic() < wait, "the stream was never created"
                await asyncio.sleep(0.1)
        # No envelope at all (an id that is no UUID, no recording time): refused at once.
        bogus = {
            "position": 0,
            "id": "not-a-report-id",
            "version": 1,
            "kind": "EmergencyReport",
            "event": "Reported",
            "data": {},
        }
        await js.publish(f"{system.prefix}.EmergencyReport.Reported", json.dumps(bogus).encode(), stream=system.stream)
        # An envelope the handler fails on every time (an escalation without its level).
        failing = {**bogus, "id": str(uuid.uuid4()), "event": "Escalated", "recorded_at": "2026-01-01T00:00:00Z"}
        await js.publish(
            f"{system.prefix}.EmergencyReport.Escalated", json.dumps(failing).encode(), stream=system.stream
        )
        await nc.close()
        return failing["id"]

    failing_id = asyncio.run(publish_garbage())
    # Handler failures are nak'ed with a growing delay until max_deliver; then JetStream gives up.
    env = system.env()
    listed = wait_until(
        lambda: "not-a-report-id" in (out := subprocess.run(
            [sys.executable, "-m", "guanai.cli", "dead-letters"], check=False, env=env, cwd=ROOT, capture_output=True, text=True, timeout=30
        ).stdout) and failing_id in out and out,
        timeout=30,
        what="the dead letters",
    )  # fmt: skip
    letter = next(json.loads(line) for line in listed.splitlines() if "not-a-report-id" in line)
    assert letter["consumer"] == "router" and letter["reason"].startswith("undecodable: ")
    assert letter["deliveries"] == 1 and letter["envelope"]["id"] == "not-a-report-id", "kept as it came"
    letter = next(json.loads(line) for line in listed.splitlines() if failing_id in line)
    assert letter["consumer"] == "router" and letter["reason"] == "max deliveries exceeded"


def test_a_router_left_with_the_old_master_key_holds_reports_until_restarted_with_the_new_one(
    system: System, app: CareApplication, fresh_database_url: str
) -> None:
    """The master key is rotated and the router is not restarted: it cannot open the new
    reports' keys. The reports wait in progress (not counted against max_deliver, never dead
    letters); the router, killed and started with the new key, routes each once."""
    from infrastructure.personal_data import MasterKey, rotate_master_key

    world = World(app)
    system.start("relay")
    system.start("router", max_deliver=2)  # JetStream would give up after 2 deliveries
    new_key = secrets.token_urlsafe(48)
    rotate_master_key(fresh_database_url, MasterKey(MASTER_KEY), MasterKey(new_key), by="ops")
    rotated = make_care(
        fresh_database_url, pool_size=2, env={"GUANAI_CHAIN_KEY": CHAIN_KEY, "GUANAI_MASTER_KEY": new_key}
    )
    try:
        ids = [world.file(rotated) for _ in range(3)]
        time.sleep(2.0 * 2 + 4)  # past max_deliver deliveries with their ack waits and naks
        letters = subprocess.run(
            [sys.executable, "-m", "guanai.cli", "dead-letters"], check=False, env=system.env(master_key=new_key),
            cwd=ROOT, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert letters.returncode == 0 and not any(str(i) in letters.stdout for i in ids), letters.stdout
        assert not any(counts(rotated, i)[0] for i in ids)
        assert b"master_key_mismatch_waiting" in (system.tmp / "router.log").read_bytes()

        system.kill("router")
        system.start("router", master_key=new_key)
        all_routed(rotated, ids)
        system.drained("router")
        assert_exactly_once(rotated, ids)
    finally:
        rotated.close()
