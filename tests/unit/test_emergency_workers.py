"""The router's and escalator's message handlers against hand-written fakes of the application
and NATS: what each event leads to, and the outcome each message gets."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from application.care import CommandResult
from domain.emergency import EmergencyError
from infrastructure.personal_data import MasterKeyError
from workers.consumer import ACK, Nak, Term
from workers.envelope import Envelope, decode, encode
from workers.escalator import Escalator
from workers.router import Router


class FakeApp:
    """Records the commands it is given; answers as the real one would have."""

    def __init__(self, routed: dict[str, Any] | None = None, refuse: bool = False, stale_key: int = 0) -> None:
        self.calls: list[tuple[str, UUID, int, datetime]] = []
        self.routed, self.refuse, self.stale_key = routed, refuse, stale_key

    def route_emergency(self, report_id: UUID, level: int, meta: Any) -> tuple[CommandResult, dict[str, Any] | None]:
        self.calls.append(("route", report_id, level, meta.occurred_at))
        if len(self.calls) <= self.stale_key:
            raise MasterKeyError("the personal data keys are wrapped by master key b, and this process holds a")
        if self.refuse:
            raise EmergencyError("not escalated that far", field="level")
        return CommandResult(report_id, 2, 41 if self.routed else None), self.routed

    def escalate_overdue(self, report_id: UUID, level: int, meta: Any) -> CommandResult:
        self.calls.append(("escalate", report_id, level, meta.occurred_at))
        return CommandResult(report_id, 3, 42)


class FakeNats:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.published.append((subject, data))

    async def flush(self, timeout: float = 5) -> None:
        return None


def routed_fields(level: int = 0) -> dict[str, Any]:
    return {"level": level, "level_name": "township", "responder_ids": ["t-1"], "deadline": datetime.now(UTC),
            "category": "neglect", "severity": "high", "county_code": "530428000000", "township_code": "530428101000",
            "occurred_at": datetime.now(UTC)}  # fmt: skip


def envelope(event: str, report_id: UUID, **data: Any) -> Envelope:
    """The message as the relay sends it, decoded as a worker's consumer decodes it."""
    now = datetime.now(UTC)
    sent = Envelope(position=7, id=report_id, version=2, kind="EmergencyReport", event=event, recorded_at=now,
                    occurred_at=now, correlation_id="req-1", data=data)  # fmt: skip
    return decode(encode(sent))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_report_is_routed_and_alerted_at_once_and_its_routed_event_alerts_no_more() -> None:
    app, nc, rid = FakeApp(routed=routed_fields()), FakeNats(), uuid4()
    router = Router(app, nc, asyncio.Event())
    assert run(router.handle(envelope("Reported", rid), None)) is ACK
    assert [c[:3] for c in app.calls] == [("route", rid, 0)]
    [(subject, _)] = nc.published
    assert subject == "alerts.530428000000.530428101000"
    routed = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in routed_fields().items()}
    assert run(router.handle(envelope("Routed", rid, **routed), None)) is ACK
    assert len(nc.published) == 1, "the process that alerted does not alert again"
    # Another router (or this one after a restart) alerts from the stored event.
    other = Router(FakeApp(), FakeNats(), asyncio.Event())
    run(other.handle(envelope("Routed", rid, **routed), None))
    assert len(other.nc.published) == 1


def test_a_second_delivery_routes_nothing_and_alerts_nothing() -> None:
    app, nc = FakeApp(routed=None), FakeNats()
    assert run(Router(app, nc, asyncio.Event()).handle(envelope("Escalated", uuid4(), to_level=1), None)) is ACK
    assert app.calls[0][2] == 1 and nc.published == []


def test_a_refusal_is_terminated_into_the_dead_letters() -> None:
    outcome = run(Router(FakeApp(refuse=True), FakeNats(), asyncio.Event()).handle(envelope("Reported", uuid4()), None))
    assert isinstance(outcome, Term) and "EmergencyError" in outcome.reason


class FakeMsg:
    def __init__(self) -> None:
        self.in_progress_calls = 0

    async def in_progress(self) -> None:
        self.in_progress_calls += 1


def test_a_router_holding_another_master_key_keeps_the_report_in_progress_not_dead_lettered() -> None:
    """Not restarted after a rotation: the report waits (in progress, not counted against the
    deliveries) until a process can open the keys, here after two attempts."""
    app, nc, msg, rid = FakeApp(routed=routed_fields(), stale_key=2), FakeNats(), FakeMsg(), uuid4()
    assert run(Router(app, nc, asyncio.Event()).handle(envelope("Reported", rid), msg)) is ACK
    assert len(app.calls) == 3 and msg.in_progress_calls == 2 and len(nc.published) == 1


def test_the_escalator_waits_for_the_deadline_then_escalates() -> None:
    app, rid = FakeApp(), uuid4()
    escalator = Escalator(app, asyncio.Event())
    ahead = (datetime.now(UTC) + timedelta(seconds=90)).isoformat()
    outcome = run(escalator.handle(envelope("Routed", rid, level=0, deadline=ahead), None))
    assert isinstance(outcome, Nak) and 85 < outcome.delay <= 90 and app.calls == []
    passed = (datetime.now(UTC) - timedelta(milliseconds=1)).isoformat()
    assert run(escalator.handle(envelope("Routed", rid, level=0, deadline=passed), None)) is ACK
    [(what, report, level, at)] = app.calls
    assert (what, report, level) == ("escalate", rid, 0) and at >= datetime.fromisoformat(passed)


def test_the_escalator_ignores_other_events() -> None:
    app = FakeApp()
    assert run(Escalator(app, asyncio.Event()).handle(envelope("Acknowledged", uuid4(), level=0), None)) is ACK
    assert app.calls == []
