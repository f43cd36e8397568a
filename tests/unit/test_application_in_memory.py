"""The command side's scenarios of tests/integration/test_application.py again, on the eventsourcing library's
in-memory store (``guanai.bootstrap.memory_application``): the application needs nothing of
PostgreSQL beyond the store port (application/ports.py), so these run without any server."""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import pytest

from application.care import CareApplication
from domain.base import CommandMeta
from domain.person import Person
from domain.vocabulary import RiskTag
from guanai import bootstrap
from tests.integration.test_application import *
from tests.integration.test_application import Org, elder_body


@pytest.fixture
def care_app() -> Iterator[CareApplication]:
    app = bootstrap.memory_application()
    try:
        yield app
    finally:
        app.close()


def test_the_in_memory_store_seals_names_and_erases(care_app: CareApplication, org: Org, meta: CommandMeta) -> None:
    kept, erased = uuid4(), uuid4()
    care_app.register_person(id=kept, meta=meta, **elder_body(org, name="王秀兰"))
    done = care_app.register_person(id=erased, meta=meta, **elder_body(org, name="李秀英"))
    assert care_app.names([kept, erased]) == {kept: "王秀兰", erased: "李秀英"}
    assert care_app.store.last_position([(erased, 1)]) == done.position
    care_app.erase_person(erased, "监护人申请删除", meta)
    assert care_app.personal_data_erased(erased) and not care_app.personal_data_erased(kept)
    assert care_app.names([kept, erased])[kept] == "王秀兰"
    assert care_app.names([erased])[erased] != "李秀英"
    assert care_app.add_risk_tag(kept, RiskTag.DIBAO, meta).version == 2
    assert care_app.load(Person, kept).name == "王秀兰"


def test_commands_load_and_save_without_checking_events_against_runtime_protocols(
    care_app: CareApplication, org: Org, meta: CommandMeta, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python 3.11 answers ``isinstance`` against a runtime ``Protocol`` by walking its members
    (30-90 µs a check): the library's replay asks it of every event, its save of every aggregate.
    The application's own replay and save ask the domain's classes instead; the result is the same."""
    import typing

    from eventsourcing.domain import CanMutateProtocol, CollectEventsProtocol, DomainEventProtocol

    checked: list[type] = []
    protocol_meta = type(CanMutateProtocol)
    original = protocol_meta.__instancecheck__

    def counting(cls: type, instance: object) -> bool:
        if cls in (CanMutateProtocol, CollectEventsProtocol, DomainEventProtocol):
            checked.append(cls)
        return bool(original(cls, instance))

    assert protocol_meta is typing._ProtocolMeta  # type: ignore[attr-defined]
    monkeypatch.setattr(protocol_meta, "__instancecheck__", counting)
    pid = uuid4()
    care_app.register_person(id=pid, meta=meta, **elder_body(org, name="王秀兰"))
    care_app.add_risk_tag(pid, RiskTag.DIBAO, meta)
    care_app.add_risk_tag(pid, RiskTag.TEKUN, meta)
    loaded = care_app.load(Person, pid)
    by_repository = care_app.repository.get(pid)
    assert checked == []
    assert loaded.version == by_repository.version == 3
    assert set(loaded.risk_tags) >= {RiskTag.DIBAO, RiskTag.TEKUN}
    assert care_app.load(Person, pid, version=1).version == 1
