"""What the API's access guard read for a request is handed to the command (``CareApplication.given``):
the command does not read it again, and a command re-decided after a concurrent write decides on
fresh state, never on what was handed to it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import pytest

from application.care import CareApplication
from domain.base import CommandMeta
from domain.helper import Helper
from domain.org_unit import OrgUnit
from domain.pairing import Pairing
from domain.person import Person
from domain.vocabulary import PairingShape, RiskTag
from guanai import bootstrap
from tests.integration.test_application import Org, elder_body, form, new_elder, new_helper, org  # noqa: F401


@pytest.fixture
def care_app() -> Iterator[CareApplication]:
    app = bootstrap.memory_application()
    try:
        yield app
    finally:
        app.close()


def counting_reads(app: CareApplication) -> list[UUID]:
    """The ids the application's repository reads from now on."""
    reads: list[UUID] = []
    get = app.repository.get

    def counted(aggregate_id: UUID, *args: Any, **kwargs: Any) -> Any:
        reads.append(aggregate_id)
        return get(aggregate_id, *args, **kwargs)

    app.repository.get = counted  # type: ignore[method-assign]
    return reads


def test_a_registration_given_its_village_reads_nothing(care_app: CareApplication, org: Org, meta: CommandMeta) -> None:
    village = care_app.load(OrgUnit, org.village)
    reads = counting_reads(care_app)
    with care_app.given([village]):
        result = care_app.register_person(id=uuid4(), meta=meta, **elder_body(org))
    assert reads == []
    assert care_app.load(Person, result.id).org_path == [org.county, org.township, org.village]


def test_a_pairing_given_its_members_reads_none_of_them(care_app: CareApplication, org: Org, meta: CommandMeta) -> None:
    helper_id, person_id = new_helper(care_app, org, meta), new_elder(care_app, org, meta)
    given = care_app.load_many(Helper, [helper_id]) | care_app.load_many(Person, [person_id])
    reads = counting_reads(care_app)
    with care_app.given(given.values()):
        pairing = form(care_app, PairingShape.ONE_TO_ONE, [helper_id], [person_id], meta)
    assert reads == []
    assert care_app.load(Helper, helper_id).version == 2
    assert care_app.load(Person, person_id).pairing_ids == [pairing.id]


def test_a_stale_aggregate_handed_over_is_decided_again_on_fresh_state(
    care_app: CareApplication, org: Org, meta: CommandMeta
) -> None:
    """The guard read the helper; another request changed it before this command saved: the save
    fails on the helper's version, and the second attempt loads the helper afresh."""
    helper_id, person_id = new_helper(care_app, org, meta), new_elder(care_app, org, meta)
    stale = care_app.load(Helper, helper_id)
    care_app.change_helper_capacity(helper_id, 3, meta)
    reads = counting_reads(care_app)
    with care_app.given([stale]):
        pairing = form(care_app, PairingShape.ONE_TO_ONE, [helper_id], [person_id], meta)
    assert helper_id in reads
    helper = care_app.load(Helper, helper_id)
    assert (helper.version, helper.capacity) == (3, 3)
    assert care_app.load(Pairing, pairing.id).helper_ids == [helper_id]


def test_only_the_first_command_inside_is_given_them(care_app: CareApplication, org: Org, meta: CommandMeta) -> None:
    person_id = new_elder(care_app, org, meta)
    person = care_app.load(Person, person_id)
    reads = counting_reads(care_app)
    with care_app.given([person]):
        care_app.add_risk_tag(person_id, RiskTag.DIBAO, meta)
        care_app.remove_risk_tag(person_id, RiskTag.DIBAO, meta)
    assert reads == [person_id]  # the second command loads the person the first one saved
    assert care_app.load(Person, person_id).version == 3
