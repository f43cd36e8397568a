"""As-of replays over random histories (hypothesis) against a real event store: at every
instant, on both axes, the replayed state is the state the aggregate had then, captured live
after each command. Also: events recorded out of their world order (a late record) land where
they happened on the occurred axis, and what cannot have happened yet is listed, not applied."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from application.care import CareApplication
from domain.base import CommandMeta, DomainError
from domain.org_unit import OrgUnit
from domain.person import Person
from domain.vocabulary import OrgLevel, PersonKind, RiskTag, Sex
from infrastructure.audit import Audit, aggregate_state
from tests.app_support import make_care

KEY = "properties-key-" + "p" * 32
US = timedelta(microseconds=1)


@dataclass
class World:
    app: CareApplication
    audit: Audit
    village: Any


@pytest.fixture(scope="module")
def world(pg_base_url: str) -> Iterator[World]:
    from tests.conftest import create_database, drop_database

    url = create_database(pg_base_url, prefix="guanai_test_asof")
    app = make_care(url, pool_size=2, env={"GUANAI_CHAIN_KEY": KEY})
    m = meta(datetime.now(UTC) - timedelta(days=400))
    county = app.register_org_unit(code="539900000000", name="县", level=OrgLevel.COUNTY, parent_id=None, meta=m)
    town = app.register_org_unit(code="539900101000", name="镇", level=OrgLevel.TOWNSHIP, parent_id=county.id, meta=m)
    village = app.register_org_unit(code="539900101001", name="村", level=OrgLevel.VILLAGE, parent_id=town.id, meta=m)
    try:
        yield World(app, Audit(app, url), app.load(OrgUnit, village.id))
    finally:
        app.close()
        drop_database(pg_base_url, url)


def meta(occurred_at: datetime) -> CommandMeta:
    return CommandMeta(
        actor_id="v1", actor_role="village_cadre", correlation_id=str(uuid.uuid4()), occurred_at=occurred_at
    )


COMMANDS = st.one_of(
    st.tuples(st.just("add_tag"), st.sampled_from([RiskTag.DISABLED, RiskTag.DIBAO, RiskTag.CHILD_IN_DIFFICULTY])),
    st.tuples(st.just("remove_tag"), st.sampled_from([RiskTag.DISABLED, RiskTag.DIBAO, RiskTag.CHILD_IN_DIFFICULTY])),
    st.tuples(st.just("guardian"), st.sampled_from(["祖母", "祖父", "姑姑"])),
    st.tuples(st.just("agreement"), st.integers(min_value=1, max_value=300)),
    st.tuples(st.just("leave"), st.just("随父母外出")),
    st.tuples(st.just("return"), st.none()),
)


def run(app: CareApplication, pid: uuid.UUID, command: tuple[str, Any], m: CommandMeta) -> bool:
    name, arg = command
    try:
        if name == "add_tag":
            app.add_risk_tag(pid, arg, m)
        elif name == "remove_tag":
            app.remove_risk_tag(pid, arg, m)
        elif name == "guardian":
            app.assign_guardian(pid, {"name": "王桂兰", "relation": arg}, m)
        elif name == "agreement":
            app.sign_care_agreement(pid, (m.occurred_at - timedelta(days=arg)).date(), m)
        elif name == "leave":
            app.person_leaves_programme(pid, arg, m)
        else:
            app.person_returns(pid, m)
    except DomainError:
        return False  # refused by the domain: nothing happened
    return True


def register(world: World, occurred: datetime) -> uuid.UUID:
    pid = uuid.uuid4()
    world.app.register_person(
        id=pid,
        kind=PersonKind.CHILD,
        name="李小花",
        sex=Sex.FEMALE,
        birth_date=date(2015, 3, 1),
        village_id=world.village.id,
        meta=meta(occurred),
    )
    return pid


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    commands=st.lists(st.tuples(COMMANDS, st.integers(min_value=0, max_value=3 * 24 * 60)), min_size=1, max_size=12),
    probes=st.lists(st.floats(min_value=0, max_value=1), max_size=6),
)
def test_as_of_replays_match_the_states_the_aggregate_had_then(
    world: World, commands: list, probes: list[float]
) -> None:
    occurred = datetime.now(UTC) - timedelta(days=60)
    pid = register(world, occurred)
    # (recorded at, occurred at, state) after each change, in the order it happened and was recorded.
    history = [(world.app.history(pid)[-1].timestamp, occurred, aggregate_state(world.app.load(Person, pid)))]
    for command, minutes_later in commands:
        occurred += timedelta(minutes=minutes_later)  # the world's order is the recording order here
        if run(world.app, pid, command, meta(occurred)):
            history.append(
                (world.app.history(pid)[-1].timestamp, occurred, aggregate_state(world.app.load(Person, pid)))
            )

    def expected(at: datetime, axis: int) -> dict[str, Any] | None:
        states = [h[2] for h in history if h[axis] <= at]
        return states[-1] if states else None

    def replayed(at: datetime, axis: str) -> dict[str, Any] | None:
        return world.audit.state_as_of(pid, at, axis).state

    span = (history[0][1], history[-1][1])
    for recorded_at, occurred_at, _ in history:
        for at in (recorded_at - US, recorded_at, recorded_at + US):
            assert replayed(at, "recorded") == expected(at, 0)
        for at in (occurred_at - US, occurred_at):
            assert replayed(at, "occurred") == expected(at, 1)
    for p in probes:
        at = span[0] + (span[1] - span[0]) * p
        assert replayed(at, "occurred") == expected(at, 1)
    # The application's own as-of read agrees on both axes.
    last_recorded = history[-1][0]
    assert aggregate_state(world.app.load_as_of(Person, pid, at=last_recorded, axis="recorded")) == history[-1][2]
    assert aggregate_state(world.app.load_as_of(Person, pid, at=history[-1][1], axis="occurred")) == history[-1][2]


def test_a_late_record_lands_where_it_happened_on_the_occurred_axis(world: World) -> None:
    t0 = datetime.now(UTC) - timedelta(days=10)
    pid = register(world, t0)
    world.app.add_risk_tag(pid, RiskTag.DIBAO, meta(t0 + timedelta(days=5)))
    # Logged today, offline three days after it happened (before the tag was added).
    world.app.assign_guardian(pid, {"name": "王桂兰", "relation": "祖母"}, meta(t0 + timedelta(days=2)))
    between = t0 + timedelta(days=3)
    known = world.audit.state_as_of(pid, between, "occurred")
    assert known.state["guardian"] == {"name": "王桂兰", "relation": "祖母"} and "dibao" not in known.state["risk_tags"]
    assert known.version == 3 and known.events_applied == 2
    # The system knew nothing of it at that instant: it was recorded later.
    assert world.audit.state_as_of(pid, between, "recorded").exists is False
    # The stream shows the record as late.
    records = world.audit.stream(pid).events
    assert records[2].recorded_after_seconds > 7 * 86400


def test_what_had_not_happened_yet_is_listed_not_applied(world: World) -> None:
    t0 = datetime.now(UTC) - timedelta(days=10)
    pid = register(world, t0)
    world.app.add_risk_tag(pid, RiskTag.DISABLED, meta(t0 - timedelta(days=1)))  # dated before the registration
    out = world.audit.state_as_of(pid, t0 - timedelta(hours=1), "occurred")
    assert out.exists is False and [(x.version, x.type) for x in out.left_out] == [(2, "Person.RiskTagAdded")]
