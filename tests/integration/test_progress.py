"""``/health`` and ``guanai lag`` say when the relay or a worker makes no progress while work
waits for it (issue 12, item 9), and say all is well again once it moves."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from litestar.testing import TestClient
from nats.js.api import AckPolicy, ConsumerConfig

from api.app import create_app
from domain.base import CommandMeta
from infrastructure.progress import CONSUMERS, RELAY, STREAM, Watch
from infrastructure.settings import Settings
from tests.api_support import SECRET
from tests.app_support import make_care
from tests.e2e.test_emergency_crash import OwnNats
from tests.emergency_support import wait_until
from tests.integration.test_relay import seed
from workers import escalator, relay, router, scheduler
from workers.relay import Relay

ROOT = Path(__file__).resolve().parents[2]


def test_the_watched_names_are_the_workers_own() -> None:
    assert (RELAY, STREAM) == ("relay", relay.STREAM)
    assert CONSUMERS == {
        "router": router.DURABLE,
        "router-visits": f"{router.DURABLE}-visits",
        "escalator": escalator.DURABLE,
        "scheduler": scheduler.DURABLE,
    }


class Names:
    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.stream, self.prefix, self.relay, self.router = (
            f"PROG_{tag}",
            f"prog{tag}.events",
            f"relay-{tag}",
            f"router-{tag}",
        )

    def watch(self) -> Watch:
        return Watch(relay=self.relay, stream=self.stream, consumers={"router": self.router}, stall_seconds=0.5)


@pytest.fixture
def names() -> Names:
    return Names()


async def _drop_stream(nats_url: str, stream: str) -> None:
    nc = await nats.connect(nats_url)
    with contextlib.suppress(nats.js.errors.NotFoundError):  # never made
        await nc.jetstream().delete_stream(stream)
    await nc.close()


async def _consume_all(nats_url: str, stream: str, durable: str) -> int:
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.jetstream().pull_subscribe_bind(durable=durable, stream=stream)
        done = 0
        while True:
            try:
                msgs = await sub.fetch(50, timeout=1)
            except TimeoutError:  # nothing left (nats' own TimeoutError is one too)
                return done
            for msg in msgs:
                await msg.ack()
                done += 1
    finally:
        await nc.close()


async def _add_idle_consumer(nats_url: str, stream: str, durable: str) -> None:
    """A worker's durable consumer whose worker never fetches: what a stuck worker leaves."""
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().add_consumer(stream, ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT))
    finally:
        await nc.close()


def test_health_says_when_the_relay_and_a_worker_are_stalled_and_when_they_move_again(
    fresh_database_url: str, nats_url: str, meta: CommandMeta, names: Names
) -> None:
    care = make_care(fresh_database_url, pool_size=2)
    seed(care, meta, 3)  # events stored, and no relay running
    app = create_app(
        Settings(),
        database_url=fresh_database_url,
        nats_url=nats_url,
        jwt_secret=SECRET,
        make_care=lambda: make_care(fresh_database_url),
        watch=names.watch(),
    )
    try:
        with TestClient(app) as client:
            wait_until(lambda: client.get("/health").json()["nats"]["ok"], what="the API's NATS connection")
            stalled = wait_until(
                lambda: (h := client.get("/health")).json()["relay"]["stalled"] and h, what="the relay seen stalled"
            )
            body = stalled.json()
            assert stalled.status_code == 200 and body["status"] == "degraded"
            assert body["relay"]["events_behind"] == 6 and body["relay"]["seconds_behind"] > 0.5
            assert body["workers"] == {"router": {"ok": True, "present": False}}, "a worker that never ran is absent"

            # The relay runs: it moves, and its consumer's worker never fetches.
            async def relay_once() -> None:
                r = Relay(care, fresh_database_url, nats_url, stream=names.stream, subject_prefix=names.prefix,
                          name=names.relay)  # fmt: skip
                await r.open()
                await r.publish_available()
                await r.close()

            asyncio.run(relay_once())
            asyncio.run(_add_idle_consumer(nats_url, names.stream, names.router))
            body = wait_until(
                lambda: (b := client.get("/health").json())["workers"]["router"]["stalled"] and b,
                what="the worker seen stalled",
            )
            assert body["status"] == "degraded" and body["relay"]["ok"] and body["relay"]["events_behind"] == 0
            assert body["workers"]["router"]["pending"] == 6

            assert asyncio.run(_consume_all(nats_url, names.stream, names.router)) == 6
            body = client.get("/health").json()
            assert body["status"] == "ok", body
            assert body["workers"]["router"] == {
                **body["workers"]["router"],
                "ok": True,
                "stalled": False,
                "pending": 0,
            }
    finally:
        care.close()
        asyncio.run(_drop_stream(nats_url, names.stream))


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[OwnNats]:
    """The CLI watches the default names, which the machine's shared NATS may hold for others."""
    server = OwnNats(tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.terminate()
            server.proc.wait(10)


def _lag(database_url: str, nats_url: str) -> tuple[int, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUANAI_")}
    env.update(GUANAI_DATABASE_URL=database_url, GUANAI_NATS_URL=nats_url, GUANAI_LOG_LEVEL="warning")
    out = subprocess.run(
        [sys.executable, "-m", "guanai.cli", "lag", "--stall-seconds", "0.5"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return out.returncode, json.loads(out.stdout.strip().splitlines()[-1])


def test_lag_exits_1_while_the_relay_is_stalled_and_0_once_it_caught_up(
    fresh_database_url: str, own_nats: OwnNats, meta: CommandMeta
) -> None:
    care = make_care(fresh_database_url, pool_size=2)
    try:
        seed(care, meta, 2)
        code, report = wait_until(
            lambda: (r := _lag(fresh_database_url, own_nats.url))[1]["relay"]["stalled"] and r, what="a stalled relay"
        )
        assert code == 1 and report["relay"]["events_behind"] == 5

        async def relay_once() -> None:
            r = Relay(care, fresh_database_url, own_nats.url)  # the default names, as the CLI watches them
            await r.open()
            await r.publish_available()
            await r.close()

        asyncio.run(relay_once())
        code, report = _lag(fresh_database_url, own_nats.url)
        assert report["relay"] == {**report["relay"], "stalled": False, "events_behind": 0}
        assert all(w == {"ok": True, "present": False} for w in report["workers"].values()), report["workers"]
        assert code == 0, report
    finally:
        care.close()
