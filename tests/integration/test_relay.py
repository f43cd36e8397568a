"""The relay puts every stored event on JetStream exactly once per notification id, in order,
without personal data, and loses nothing when killed; consumers answer every message
explicitly and dead-letter what cannot be handled."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import nats
import psycopg
import pytest

from application.care import CareApplication
from domain.base import CommandMeta
from domain.vocabulary import OrgLevel, PersonKind, Sex
from tests.app_support import make_care
from workers.consumer import Consumer, DeadLetters, Nak, Term, list_dead_letters
from workers.envelope import Envelope, decode
from workers.relay import Relay

ROOT = Path(__file__).resolve().parents[2]


class Names:
    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.stream = f"TEST_{tag}"
        self.prefix = f"test{tag}.events"


@pytest.fixture
def names() -> Names:
    return Names()


@pytest.fixture
async def js(nats_url: str, names: Names) -> AsyncIterator[Any]:
    nc = await nats.connect(nats_url)
    yield nc.jetstream()
    with contextlib.suppress(Exception):  # a test may never have made it
        await nc.jetstream().delete_stream(names.stream)
    await nc.close()


def seed(app: CareApplication, meta: CommandMeta, people: int) -> None:
    code = f"{uuid.uuid4().int % 10**6:06d}"
    county = app.register_org_unit(code=code + "000000", name="县", level=OrgLevel.COUNTY, parent_id=None, meta=meta)
    town = app.register_org_unit(
        code=code + "101000", name="镇", level=OrgLevel.TOWNSHIP, parent_id=county.id, meta=meta
    )
    village = app.register_org_unit(
        code=code + "101001", name="村", level=OrgLevel.VILLAGE, parent_id=town.id, meta=meta
    )
    for _ in range(people):
        app.register_person(
            id=uuid.uuid4(),
            kind=PersonKind.ELDER,
            name="隐私名字",
            sex=Sex.FEMALE,
            birth_date=date(1940, 1, 1),
            village_id=village.id,
            meta=meta,
        )


async def stream_messages(js: Any, stream: str) -> list[Any]:
    info = await js.stream_info(stream)
    return [await js.get_msg(stream, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)]


async def test_relay_publishes_every_event_once_in_order(
    fresh_database_url: str, nats_url: str, js: Any, names: Names, meta: CommandMeta
) -> None:
    app = make_care(fresh_database_url)
    seed(app, meta, 20)
    relay = Relay(app, fresh_database_url, nats_url, stream=names.stream, subject_prefix=names.prefix)
    await relay.open()
    assert await relay.publish_available() == 23
    # A crash after publishing but before saving the position: everything is sent again...
    async with await psycopg.AsyncConnection.connect(fresh_database_url, autocommit=True) as conn:
        await conn.execute("UPDATE relay_tracking SET position = 5")
    await relay.close()
    again = Relay(app, fresh_database_url, nats_url, stream=names.stream, subject_prefix=names.prefix)
    await again.open()
    assert again.position == 5
    assert await again.publish_available() == 18
    await again.close()
    # ...and JetStream keeps one copy per notification id.
    msgs = await stream_messages(js, names.stream)
    assert [m.headers["Nats-Msg-Id"] for m in msgs] == [str(i) for i in range(1, 24)]
    bodies = [decode(m.data) for m in msgs]
    assert [b.position for b in bodies] == list(range(1, 24))
    assert msgs[3].subject == f"{names.prefix}.Person.Registered"
    assert bodies[3].kind == "Person" and bodies[3].data["kind"] == "elder"
    assert all("隐私名字" not in m.data.decode() for m in msgs), "personal data stays out of the broker"
    app.close()


KILLED_RELAY = """
import asyncio, sys
from tests.app_support import make_care
from workers.relay import Relay
url, nats_url, stream, prefix = sys.argv[1:5]
async def main():
    app = make_care(url, pool_size=2)
    relay = Relay(app, url, nats_url, stream=stream, subject_prefix=prefix, batch_size=7)
    await relay.open()
    print("ready", flush=True)
    await relay.run(asyncio.Event())
asyncio.run(main())
"""


@pytest.mark.parametrize("round_", range(3))
async def test_a_killed_relay_loses_nothing(
    fresh_database_url: str, nats_url: str, js: Any, names: Names, meta: CommandMeta, round_: int
) -> None:
    app = make_care(fresh_database_url)
    seed(app, meta, 30)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-c", KILLED_RELAY, fresh_database_url, nats_url, names.stream, names.prefix]
    first = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "ready"
        seed(app, meta, 30)  # written while the relay runs
        await wait_until(lambda: stream_count(js, names.stream), lambda n: n >= 10 + round_ * 5)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        seed(app, meta, 10)  # written while no relay runs
        second = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
        try:
            last = app.recorder.max_notification_id()
            await wait_until(lambda: stream_count(js, names.stream), lambda n: n >= last)
        finally:
            second.send_signal(signal.SIGTERM)
            second.kill()
            second.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    msgs = await stream_messages(js, names.stream)
    ids = [int(m.headers["Nats-Msg-Id"]) for m in msgs]
    assert ids == list(range(1, last + 1)), "every event exactly once, in order"
    app.close()


async def stream_count(js: Any, stream: str) -> int:
    try:
        return (await js.stream_info(stream)).state.messages
    except Exception:  # noqa: BLE001 - not created yet
        return 0


async def wait_until(probe: Any, done: Any, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if done(value):
            return
        assert asyncio.get_running_loop().time() < deadline, f"timed out at {value}"
        await asyncio.sleep(0.05)


async def test_consumer_outcomes_and_dead_letters(
    fresh_database_url: str, nats_url: str, js: Any, names: Names, meta: CommandMeta
) -> None:
    app = make_care(fresh_database_url)
    seed(app, meta, 3)  # positions 1-3 org units, 4-6 persons
    relay = Relay(app, fresh_database_url, nats_url, stream=names.stream, subject_prefix=names.prefix)
    await relay.open()
    await relay.publish_available()
    seen: dict[int, int] = {}

    async def handler(env: Envelope, msg: Any) -> Any:
        position = env.position
        seen[position] = seen.get(position, 0) + 1
        if position == 4 and seen[position] == 1:
            return Nak(0.05)  # not yet: comes back
        if position == 5:
            return Term("cannot be handled")
        if position == 6:
            raise RuntimeError("always fails")
        return None

    nc = relay.nc
    consumer = Consumer(
        js,
        nc,
        stream=names.stream,
        durable=f"c_{uuid.uuid4().hex[:8]}",
        filter_subjects=[f"{names.prefix}.>"],
        handler=handler,
        dead_letters=DeadLetters(fresh_database_url),
        max_deliver=3,
        backoff=[0.05],
        ack_wait=5,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:

        async def dead() -> int:
            return len(await asyncio.to_thread(list_dead_letters, fresh_database_url))

        await wait_until(dead, lambda n: n >= 2)
    finally:
        stop.set()
        await task
        await consumer.close()
        await relay.close()
    letters = {d["stream_seq"]: d for d in list_dead_letters(fresh_database_url)}
    assert letters[5]["reason"] == "cannot be handled" and letters[5]["deliveries"] == 1
    assert letters[6]["reason"] == "max deliveries exceeded" and seen[6] == 3
    assert letters[6]["envelope"]["kind"] == "Person"
    assert seen[4] == 2 and seen[1] == seen[2] == seen[3] == 1
    app.close()
