"""What the emergency tests share: the relay, router and escalator under names of their own
(stream, subjects, durables, relay position), and a county with rosters set up over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import nats

from guanai import bootstrap
from infrastructure.settings import load_settings
from tests.api_support import Tree, auth, elder
from workers.runtime import BackgroundWorkers

ALWAYS = []  # no shifts: always on duty


class Names:
    """Unique NATS and tracking names: the machine's NATS and PostgreSQL are shared."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.stream = f"EMERG_{tag}"
        self.prefix = f"emerg{tag}.events"
        self.relay = f"relay-{tag}"
        self.router = f"router-{tag}"
        self.escalator = f"escalator-{tag}"


def emergency_workers(database_url: str, nats_url: str, names: Names) -> BackgroundWorkers:
    common = {"stream": names.stream, "subject_prefix": names.prefix}
    settings = load_settings()
    return BackgroundWorkers(
        bootstrap.relay(settings, database_url, nats_url, name=names.relay, **common),
        bootstrap.router(settings, database_url, nats_url, durable=names.router, **common),
        bootstrap.escalator(settings, database_url, nats_url, durable=names.escalator, **common),
        name="emergency-workers",
    )


async def delete_stream(nats_url: str, stream: str) -> None:
    nc = await nats.connect(nats_url)
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await nc.jetstream().delete_stream(stream)
    await nc.close()


class County:
    """A county, a township with two villages, an elder, and rosters: the township's responder
    always on duty, the county's too; ``critical`` seconds to acknowledge a critical report."""

    def __init__(self, c: httpx.Client, *, critical: int = 300, township_responders: int = 1) -> None:
        self.tree = Tree(c)
        self.county_id, self.township_id = self.tree.county["id"], self.tree.township["id"]
        self.county_code, self.township_code = self.tree.county["code"], self.tree.township["code"]
        self.person = c.post("/persons", json=elder(self.tree.village["id"])).json()
        self.township_responders = [f"t-{uuid.uuid4().hex[:6]}" for _ in range(township_responders)]
        self.county_responder = f"c-{uuid.uuid4().hex[:6]}"
        for unit, ids in ((self.township_id, self.township_responders), (self.county_id, [self.county_responder])):
            r = c.post(f"/rosters/{unit}", json={"ack_deadlines": {"critical": critical}})
            assert r.status_code == 201, r.text
            for rid in ids:
                body = {"responder_id": rid, "name": "值班员", "phone": "13900000000", "shifts": ALWAYS}
                assert c.post(f"/rosters/{unit}/responders", json=body).status_code == 200

    def reporter(self) -> dict[str, str]:
        """A village cadre of the village, who may read its elder and so report about them; a new
        one each time (reports are rate-limited per account)."""
        return auth("village_cadre", self.tree.village["id"])

    def responder(self, n: int = 0) -> dict[str, str]:
        return auth_as("township_responder", self.township_id, self.township_responders[n])

    def county_desk(self) -> dict[str, str]:
        return auth_as("county_responder", self.county_id, self.county_responder)

    def report(self, **overrides: Any) -> dict[str, Any]:
        body = {"category": "critical_illness", "severity": "critical", "person_id": self.person["id"],
                "description": "老人在家中跌倒，无法起身"}  # fmt: skip
        body.update(overrides)
        return body

    @property
    def township_subject(self) -> str:
        return f"alerts.{self.county_code}.{self.township_code}"


def auth_as(role: str, org_unit_id: str, subject: str) -> dict[str, str]:
    from tests.api_support import token

    return {"Authorization": f"Bearer {token(role, org_unit_id, subject=subject)}"}


def volunteer(org_unit_id: str) -> dict[str, str]:
    return auth("volunteer", org_unit_id)


def wait_until(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


class Alerts:
    """Alerts received on a subject, collected on a NATS connection in a thread of its own."""

    def __init__(self, nats_url: str, subject: str) -> None:
        self.received: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._nc: Any = None
        import threading

        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def subscribe() -> None:
            self._nc = await nats.connect(nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)

            async def on_alert(msg: Any) -> None:
                self.received.append(json.loads(msg.data))

            await self._nc.subscribe(subject, cb=on_alert)
            await self._nc.flush()

        asyncio.run_coroutine_threadsafe(subscribe(), self._loop).result(10)

    def for_report(self, report_id: str) -> list[dict[str, Any]]:
        return [a for a in list(self.received) if a["report_id"] == report_id]

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._nc.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
