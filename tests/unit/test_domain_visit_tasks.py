"""Visit tasks (domain/visit_task.py): who may claim, one holder at a time, claims that lapse,
the claim book's bound, completion inside the window, missed and cancelled. Given, when, then."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from api.problems import problem_of
from domain.pairing import Pairing
from domain.schedule import Period, day_start
from domain.visit_task import (
    AlreadyClaimedError,
    ClaimedByOtherError,
    ClaimLimitError,
    HelperClaims,
    NotEligibleError,
    NotHolderError,
    NotOpenYetError,
    OutsideWindowError,
    TaskClosedError,
    VisitTask,
    claims_id,
)
from domain.vocabulary import Cadence, PairingShape, VisitMode
from tests.scenario import OrgTree, elder, given, group, helper, meta, names, nothing_emitted, pairing, refused, then

WEEK = Period(Cadence.WEEKLY, date(2025, 9, 15), date(2025, 9, 22))
NOW = day_start(WEEK.start) + timedelta(days=2, hours=9)  # Wednesday morning of that week
TTL = timedelta(hours=72)


class World:
    def __init__(self) -> None:
        tree = OrgTree()
        self.cadre, self.doctor, self.member, self.outsider = (helper(tree.village) for _ in range(4))
        self.team = group(tree.village, self.member)
        self.person = elder(tree.village)
        self.pairing: Pairing = pairing(
            PairingShape.MANY_TO_ONE, [self.cadre, self.doctor], [self.person], group=self.team
        )
        self.task = given(
            VisitTask.schedule(
                id=uuid4(),
                pairing=self.pairing,
                person_id=self.person.id,
                org_path=self.person.org_path,
                period=WEEK,
                meta=meta(role="system"),
            )
        )

    def claim(self, helper_id: UUID | None, at: datetime = NOW, *, via_group: bool = False) -> bool:
        return self.task.claim(
            pairing=self.pairing,
            helper_id=helper_id,
            group=self.team if via_group else None,
            now=at,
            expires_at=at + TTL,
            meta=meta(at=at),
        )


@pytest.fixture
def w() -> World:
    return World()


def test_scheduled_task_carries_its_window_mode_and_the_persons_place(w: World) -> None:
    t = w.task
    assert (t.status, t.mode, t.cadence) == ("scheduled", VisitMode.HOME_VISIT, Cadence.WEEKLY)
    assert (t.period_start, t.due_until, t.opens_at, t.closes_at) == (
        WEEK.start,
        WEEK.last_day,
        WEEK.opens_at,
        WEEK.closes_at,
    )
    assert t.org_path == w.person.org_path and t.group_id == w.team.id


def test_a_helper_of_the_pairing_claims_it(w: World) -> None:
    m = meta(at=NOW)
    assert w.task.claim(pairing=w.pairing, helper_id=w.cadre.id, group=None, now=NOW, expires_at=NOW + TTL, meta=m)
    [claimed] = then(m, w.task)
    assert names([claimed]) == ["VisitTask.Claimed"]
    assert (claimed.helper_id, claimed.group_id, claimed.expires_at) == (w.cadre.id, None, NOW + TTL)
    assert w.task.held_by(w.cadre.id, NOW)


def test_a_member_of_the_pairings_group_claims_through_it(w: World) -> None:
    assert w.claim(w.member.id, via_group=True)
    assert (w.task.holder_id, w.task.holder_group_id) == (w.member.id, w.team.id)


def test_someone_outside_pairing_and_group_may_not_claim(w: World) -> None:
    with refused(NotEligibleError, "helper_id"):
        w.claim(w.outsider.id, via_group=True)
    with refused(NotEligibleError, "helper_id"):
        w.claim(w.member.id)  # a member, but not claiming through the group
    nothing_emitted(w.task)


def test_the_second_claim_is_refused_naming_the_holder(w: World) -> None:
    assert w.claim(w.cadre.id)
    given(w.task)
    with refused(AlreadyClaimedError, None) as info:
        w.claim(w.doctor.id, NOW + timedelta(hours=1))
    assert info.value.extra["holder_helper_id"] == str(w.cadre.id)
    assert problem_of(info.value).status == 409
    nothing_emitted(w.task)


def test_claiming_again_what_one_holds_changes_nothing(w: World) -> None:
    assert w.claim(w.cadre.id)
    given(w.task)
    assert w.claim(w.cadre.id, NOW + timedelta(hours=1)) is False
    nothing_emitted(w.task)


OPENED = day_start(WEEK.start) + timedelta(hours=1)  # an early claim, an hour into the window
LAPSED = OPENED + TTL + timedelta(hours=8)  # Thursday morning: that claim has lapsed


def test_a_task_is_claimed_only_once_its_window_has_opened(w: World) -> None:
    with refused(NotOpenYetError, None):
        w.claim(w.cadre.id, day_start(WEEK.start) - timedelta(hours=8))  # Sunday evening before the week
    nothing_emitted(w.task)
    assert w.claim(w.cadre.id, day_start(WEEK.start))


def test_a_lapsed_claim_expires_when_someone_else_claims(w: World) -> None:
    w.claim(w.cadre.id, OPENED)
    given(w.task)
    m = meta(at=LAPSED)
    assert w.task.claim(
        pairing=w.pairing, helper_id=w.doctor.id, group=None, now=LAPSED, expires_at=LAPSED + TTL, meta=m
    )
    expired, claimed = w.task.collect_events()
    assert names([expired, claimed]) == ["VisitTask.ClaimExpired", "VisitTask.Claimed"]
    assert expired.occurred_at == OPENED + TTL  # it lapsed then, not when noticed
    assert (expired.helper_id, claimed.helper_id) == (w.cadre.id, w.doctor.id)


def test_the_sweeper_returns_a_lapsed_claim_to_the_pool(w: World) -> None:
    w.claim(w.cadre.id, OPENED)
    given(w.task)
    assert w.task.expire_claim(OPENED + TTL - timedelta(hours=10), meta()) is False  # not yet lapsed
    assert w.task.expire_claim(LAPSED, meta(at=LAPSED))
    assert names(w.task.collect_events()) == ["VisitTask.ClaimExpired"]
    assert (w.task.status, w.task.holder_id) == ("scheduled", None)


def test_the_group_claims_as_a_team_then_assigns_a_member(w: World) -> None:
    assert w.claim(None, via_group=True)
    assert (w.task.holder_id, w.task.holder_group_id) == (None, w.team.id)
    given(w.task)
    m = meta(at=NOW)
    w.task.assign(helper_id=w.member.id, group=w.team, now=NOW, expires_at=NOW + TTL, meta=m)
    [assigned] = then(m, w.task)
    assert names([assigned]) == ["VisitTask.Assigned"] and w.task.holder_id == w.member.id
    with refused(NotEligibleError, "helper_id"):
        w.task.assign(helper_id=w.outsider.id, group=w.team, now=NOW, expires_at=NOW + TTL, meta=m)


def test_only_the_holder_releases(w: World) -> None:
    w.claim(w.cadre.id)
    given(w.task)
    with refused(NotHolderError, None):
        w.task.release(by_helper_id=w.doctor.id, reason="", meta=meta())
    m = meta()
    w.task.release(by_helper_id=w.cadre.id, reason="住院了，下周再去", meta=m)
    [released] = then(m, w.task)
    assert names([released]) == ["VisitTask.ClaimReleased"] and released.helper_id == w.cadre.id
    assert w.task.status == "scheduled"


def test_no_claims_after_the_window_closed_or_the_pairing_ended(w: World) -> None:
    with refused(TaskClosedError, None):
        w.claim(w.cadre.id, WEEK.closes_at)
    w.pairing.ended = True
    with refused(TaskClosedError, None):
        w.claim(w.cadre.id)


def complete(w: World, visited: datetime, helpers: list[UUID], now: datetime = NOW, log_id: UUID | None = None) -> bool:
    return w.task.complete(
        log_id=log_id or uuid4(), helper_ids=helpers, mode=VisitMode.HOME_VISIT, now=now, meta=meta(at=visited)
    )


def test_a_visit_inside_the_window_completes_the_task(w: World) -> None:
    visited = NOW - timedelta(hours=20)
    log_id = uuid4()
    assert complete(w, visited, [w.cadre.id, w.doctor.id], log_id=log_id)
    [done] = w.task.collect_events()
    assert names([done]) == ["VisitTask.Completed"] and done.occurred_at == visited and done.late is False
    assert (w.task.status, w.task.log_id, w.task.completed_by) == ("completed", log_id, [w.cadre.id, w.doctor.id])
    assert complete(w, visited, [w.cadre.id], log_id=log_id) is False  # the same log again
    with refused(TaskClosedError, None):
        complete(w, visited, [w.cadre.id])  # another log


def test_a_visit_outside_the_window_does_not_count(w: World) -> None:
    with refused(OutsideWindowError, "occurred_at"):
        complete(w, WEEK.opens_at - timedelta(minutes=1), [w.cadre.id])
    with refused(OutsideWindowError, "occurred_at"):
        complete(w, WEEK.closes_at, [w.cadre.id], now=WEEK.closes_at + timedelta(days=1))


def test_a_log_for_a_task_someone_else_holds_is_refused(w: World) -> None:
    w.claim(w.cadre.id)
    given(w.task)
    with refused(ClaimedByOtherError, "helper_ids") as info:
        complete(w, NOW + timedelta(hours=1), [w.doctor.id], now=NOW + timedelta(hours=2))
    assert problem_of(info.value).status == 409 and info.value.extra["holder_helper_id"] == str(w.cadre.id)
    assert complete(w, NOW + timedelta(hours=1), [w.doctor.id, w.cadre.id], now=NOW + timedelta(hours=2))


def test_missed_when_the_window_closes_then_completed_late_by_a_log_from_inside_it(w: World) -> None:
    w.claim(w.cadre.id)
    given(w.task)
    assert w.task.mark_missed(WEEK.closes_at - timedelta(seconds=1), meta()) is False
    assert w.task.mark_missed(WEEK.closes_at + timedelta(hours=3), meta(role="system"))
    [missed] = w.task.collect_events()
    assert missed.occurred_at == WEEK.closes_at and missed.helper_id == w.cadre.id
    assert w.task.mark_missed(WEEK.closes_at + timedelta(hours=4), meta()) is False
    assert complete(w, WEEK.closes_at - timedelta(days=1), [w.cadre.id], now=WEEK.closes_at + timedelta(days=2))
    [done] = w.task.collect_events()
    assert done.late is True and w.task.status == "completed"


def test_cancelled_only_while_its_window_is_open_at_the_cutoff(w: World) -> None:
    assert w.task.cancel("pairing ended", WEEK.closes_at, meta()) is False
    m = meta()
    assert w.task.cancel("pairing ended", NOW, m)
    [cancelled] = then(m, w.task)
    assert cancelled.reason == "pairing ended" and w.task.status == "cancelled"
    with refused(TaskClosedError, None):
        complete(w, NOW, [w.cadre.id])


def test_the_claim_book_refuses_a_claim_beyond_the_bound_and_lists_unexpired_claims() -> None:
    helper_id, m = uuid4(), meta()
    book = HelperClaims.open(helper_id, "2025-09", m)
    assert book.id == claims_id(helper_id, "2025-09") != claims_id(helper_id, "2025-10")
    old, current = uuid4(), uuid4()
    book.take(old, NOW - timedelta(hours=1), open_claims=0, limit=2, meta=m)
    book.take(current, NOW + TTL, open_claims=1, limit=2, meta=m)
    with refused(ClaimLimitError, None) as info:
        book.take(uuid4(), NOW + TTL, open_claims=2, limit=2, meta=m)
    assert info.value.extra == {"limit": 2, "open_claims": 2}
    assert book.unexpired(NOW) == [current]
    assert names(book.collect_events()) == ["HelperClaims.Opened", "HelperClaims.Taken", "HelperClaims.Taken"]
