"""VisitTask: one visit due to one person of a pairing in one period of its cadence.

Lifecycle (each step an event): ``Scheduled`` (by the scheduler, with the due window and the
mode) -> ``Claimed`` (by a helper of the pairing or a member of its group; or by the group as a
whole, then ``Assigned`` to a member) -> ``Completed`` (by a visit log, see domain/visit_log.py).
A claim may be ``ClaimReleased`` or ``ClaimExpired`` (the task goes back to the pool); a task
whose window closes undone is ``Missed``; one whose pairing ended or whose person left it is
``Cancelled``. A missed task can still be completed by a log whose visit took place inside the
window (logged late, from a village without signal): ``Completed.late`` says so.

``HelperClaims`` is a helper's claim book for a month: the tasks they took, saved with each
claim, so that the bound on open claims holds under concurrency.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from uuid import UUID

import msgspec

from domain.base import CareAggregate, ClosedError, CommandMeta, DomainError, InvariantError, derived_id
from domain.group import VolunteerGroup
from domain.pairing import Pairing
from domain.schedule import Period
from domain.vocabulary import Cadence, VisitMode

OPEN = ("scheduled", "claimed")


class VisitTaskError(InvariantError):
    """The task cannot change as asked."""


class AlreadyClaimedError(DomainError):
    """Someone else holds the claim (the body names who, and until when)."""


class NotEligibleError(DomainError):
    """Only the pairing's helpers, or members of its volunteer group, may take this visit."""


class NotHolderError(DomainError):
    """Only the holder of a claim (or a coordinator) may release or reassign it."""


class ClaimLimitError(DomainError):
    """The helper already holds as many open claims as allowed (GUANAI_VISIT_CLAIM_LIMIT)."""


class ClaimedByOtherError(DomainError):
    """A visit log for a task that someone else holds."""


class TaskClosedError(ClosedError):
    """The task is completed, missed, cancelled, or its window has closed."""


class NotOpenYetError(DomainError):
    """The task's window has not opened: it may be claimed from its first day, so that a claim
    never lapses before the visit can even take place."""


class OutsideWindowError(InvariantError):
    """The visit did not take place within the task's due window."""


def _at(meta: CommandMeta, when: datetime) -> CommandMeta:
    """The command's meta with the time the fact took place in the world."""
    return msgspec.structs.replace(meta, occurred_at=when)


class VisitTask(CareAggregate):
    pairing_id: UUID
    person_id: UUID
    org_path: list[UUID]
    group_id: UUID | None
    cadence: Cadence
    mode: VisitMode
    period_start: date
    due_until: date  # last day of the window
    opens_at: datetime
    closes_at: datetime
    status: str  # scheduled | claimed | completed | missed | cancelled
    holder_id: UUID | None  # the helper holding the claim
    holder_group_id: UUID | None  # the group holding it (claimed as a team, or through membership)
    claim_expires_at: datetime | None
    log_id: UUID | None
    visited_at: datetime | None
    completed_by: list[UUID]  # who went, as the completing log says
    cancel_reason: str | None

    def __init__(self) -> None:
        """State is set by each event's ``apply``; the annotations above document it."""

    class Scheduled(CareAggregate.Created):
        pairing_id: UUID
        person_id: UUID
        org_path: list[UUID]
        group_id: UUID | None
        cadence: str
        mode: str
        period_start: date
        due_until: date
        opens_at: datetime
        closes_at: datetime

        def apply(self, t: VisitTask) -> None:
            t.pairing_id, t.person_id, t.org_path = self.pairing_id, self.person_id, list(self.org_path)
            t.group_id, t.cadence, t.mode = self.group_id, Cadence(self.cadence), VisitMode(self.mode)
            t.period_start, t.due_until = self.period_start, self.due_until
            t.opens_at, t.closes_at = self.opens_at, self.closes_at
            t.status = "scheduled"
            t.holder_id = t.holder_group_id = t.claim_expires_at = None
            t.log_id = t.visited_at = t.cancel_reason = None
            t.completed_by = []

    class Claimed(CareAggregate.Event):
        helper_id: UUID | None  # None: claimed by the group as a team, to be assigned
        group_id: UUID | None
        expires_at: datetime

        def apply(self, t: VisitTask) -> None:
            t.status = "claimed"
            t.holder_id, t.holder_group_id, t.claim_expires_at = self.helper_id, self.group_id, self.expires_at

    class Assigned(CareAggregate.Event):
        helper_id: UUID
        expires_at: datetime

        def apply(self, t: VisitTask) -> None:
            t.holder_id, t.claim_expires_at = self.helper_id, self.expires_at

    class ClaimReleased(CareAggregate.Event):
        helper_id: UUID | None
        group_id: UUID | None
        reason: str

        def apply(self, t: VisitTask) -> None:
            t._unclaim()

    class ClaimExpired(CareAggregate.Event):
        helper_id: UUID | None
        group_id: UUID | None

        def apply(self, t: VisitTask) -> None:
            t._unclaim()

    class Completed(CareAggregate.Event):
        log_id: UUID
        helper_ids: list[UUID]
        mode: str
        late: bool  # completed after the task had been marked missed

        def apply(self, t: VisitTask) -> None:
            t.status, t.log_id, t.visited_at = "completed", self.log_id, self.occurred_at
            t.completed_by, t.claim_expires_at = list(self.helper_ids), None

    class Missed(CareAggregate.Event):
        helper_id: UUID | None  # who held the claim when the window closed

        def apply(self, t: VisitTask) -> None:
            t.status, t.claim_expires_at = "missed", None

    class Cancelled(CareAggregate.Event):
        reason: str

        def apply(self, t: VisitTask) -> None:
            t.status, t.cancel_reason, t.claim_expires_at = "cancelled", self.reason, None

    def _unclaim(self) -> None:
        self.status, self.holder_id, self.holder_group_id, self.claim_expires_at = "scheduled", None, None, None

    # ---- scheduling -----------------------------------------------------------------------------

    @classmethod
    def schedule(
        cls, *, id: UUID, pairing: Pairing, person_id: UUID, org_path: list[UUID], period: Period, meta: CommandMeta
    ) -> VisitTask:
        return cls._create(
            cls.Scheduled,
            id=id,
            pairing_id=pairing.id,
            person_id=person_id,
            org_path=list(org_path),
            group_id=pairing.group_id,
            cadence=period.cadence.value,
            mode=pairing.visit_mode.value,
            period_start=period.start,
            due_until=period.last_day,
            opens_at=period.opens_at,
            closes_at=period.closes_at,
            **meta.fields(),
        )

    # ---- claims ---------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    def claim_lapsed(self, now: datetime) -> bool:
        return self.status == "claimed" and self.claim_expires_at is not None and now >= self.claim_expires_at

    def held_by(self, helper_id: UUID, now: datetime) -> bool:
        return self.status == "claimed" and self.holder_id == helper_id and not self.claim_lapsed(now)

    def _check_claimable(self, pairing: Pairing, now: datetime) -> None:
        if self.status not in OPEN:
            raise TaskClosedError(f"the visit task is {self.status}", status_now=self.status)
        if now >= self.closes_at:
            raise TaskClosedError(f"the task's window closed at {self.closes_at.isoformat()}", status_now=self.status)
        if now < self.opens_at:
            raise NotOpenYetError(
                f"the task's window opens at {self.opens_at.isoformat()}; claim it from then on",
                opens_at=self.opens_at.isoformat(),
            )
        if pairing.ended:
            raise TaskClosedError(f"pairing {pairing.id} has ended", status_now=self.status)

    def _refuse_if_held(self, helper_id: UUID | None, group_id: UUID | None, now: datetime) -> bool:
        """True when the requester already holds it; raises when someone else does."""
        if self.status != "claimed":
            return False
        if self.claim_lapsed(now):
            return False
        if helper_id is not None and self.holder_id == helper_id:
            return True
        if helper_id is None and self.holder_id is None and self.holder_group_id == group_id:
            return True
        holder = f"helper {self.holder_id}" if self.holder_id else f"group {self.holder_group_id}"
        raise AlreadyClaimedError(
            f"{holder} holds this visit until {self.claim_expires_at.isoformat() if self.claim_expires_at else '?'}",
            holder_helper_id=str(self.holder_id) if self.holder_id else None,
            holder_group_id=str(self.holder_group_id) if self.holder_group_id else None,
            claimed_until=self.claim_expires_at.isoformat() if self.claim_expires_at else None,
        )

    def claim(
        self,
        *,
        pairing: Pairing,
        helper_id: UUID | None,
        group: VolunteerGroup | None,
        now: datetime,
        expires_at: datetime,
        meta: CommandMeta,
    ) -> bool:
        """Claim for a helper (``helper_id``; through ``group`` when they are in it rather than in
        the pairing) or, with no helper, for the pairing's group as a team. False: already theirs."""
        self._check_claimable(pairing, now)
        group_id = group.id if group is not None else None
        if helper_id is None:
            if group is None or group.id != pairing.group_id:
                raise NotEligibleError("only the pairing's own volunteer group may claim as a team", field="group_id")
        elif helper_id not in pairing.helper_ids:
            if group is None or group.id != pairing.group_id or helper_id not in group.member_ids:
                raise NotEligibleError(
                    f"helper {helper_id} is neither a helper of pairing {pairing.id} nor a member of its group",
                    field="helper_id",
                )
        else:
            group_id = None
        if self._refuse_if_held(helper_id, group_id, now):
            return False
        if self.claim_lapsed(now):
            self._expire(meta)
        self._trigger(self.Claimed, meta, helper_id=helper_id, group_id=group_id, expires_at=expires_at)
        return True

    def assign(
        self, *, helper_id: UUID, group: VolunteerGroup, now: datetime, expires_at: datetime, meta: CommandMeta
    ) -> None:
        """A task its group claimed as a team goes to one member."""
        if self.status != "claimed" or self.holder_group_id != group.id or self.claim_lapsed(now):
            raise VisitTaskError(f"group {group.id} does not hold this visit", field="helper_id")
        if helper_id not in group.member_ids:
            raise NotEligibleError(f"helper {helper_id} is not a member of group {group.id}", field="helper_id")
        if self.holder_id != helper_id:
            self._trigger(self.Assigned, meta, helper_id=helper_id, expires_at=expires_at)

    def release(self, *, by_helper_id: UUID | None, reason: str, meta: CommandMeta) -> None:
        """Give the task back to the pool. ``by_helper_id`` None: a coordinator acts."""
        if self.status != "claimed":
            raise VisitTaskError(f"the visit task is {self.status}, not claimed")
        if by_helper_id is not None and by_helper_id != self.holder_id:
            raise NotHolderError(
                "only the holder of the claim may release it",
                holder_helper_id=str(self.holder_id) if self.holder_id else None,
            )
        self._trigger(self.ClaimReleased, meta, helper_id=self.holder_id, group_id=self.holder_group_id, reason=reason)

    def _expire(self, meta: CommandMeta) -> None:
        assert self.claim_expires_at is not None
        self._trigger(
            self.ClaimExpired, _at(meta, self.claim_expires_at), helper_id=self.holder_id, group_id=self.holder_group_id
        )

    def expire_claim(self, now: datetime, meta: CommandMeta) -> bool:
        if not self.claim_lapsed(now):
            return False
        self._expire(meta)
        return True

    # ---- outcomes -------------------------------------------------------------------------------

    def complete(
        self, *, log_id: UUID, helper_ids: list[UUID], mode: VisitMode, now: datetime, meta: CommandMeta
    ) -> bool:
        """Record the visit of log ``log_id`` (which took place at ``meta.occurred_at``) against
        this task. False: this very log completed it already."""
        if self.status == "completed":
            if self.log_id == log_id:
                return False
            raise TaskClosedError(f"visit log {self.log_id} already completed this task", log_id=str(self.log_id))
        if self.status == "cancelled":
            raise TaskClosedError(f"the task was cancelled ({self.cancel_reason}); record an unplanned visit instead")
        visited = meta.occurred_at
        if not self.opens_at <= visited < self.closes_at:
            raise OutsideWindowError(
                f"the visit took place at {visited.isoformat()}, outside the window"
                f" {self.opens_at.isoformat()} .. {self.closes_at.isoformat()}; record an unplanned visit instead",
                field="occurred_at",
            )
        if self.status == "claimed" and not self.claim_lapsed(now) and self.holder_id not in helper_ids:
            holder = f"helper {self.holder_id}" if self.holder_id else f"group {self.holder_group_id}"
            raise ClaimedByOtherError(
                f"{holder} holds this visit; only they may log it (or record an unplanned visit without task_id)",
                field="helper_ids",
                holder_helper_id=str(self.holder_id) if self.holder_id else None,
                holder_group_id=str(self.holder_group_id) if self.holder_group_id else None,
            )
        self._trigger(
            self.Completed,
            meta,
            log_id=log_id,
            helper_ids=list(helper_ids),
            mode=mode.value,
            late=self.status == "missed",
        )
        return True

    def mark_missed(self, now: datetime, meta: CommandMeta) -> bool:
        """After the window closed undone: missed (dated when the window closed)."""
        if self.status not in OPEN or now < self.closes_at:
            return False
        holder = self.holder_id if self.status == "claimed" else None
        self._trigger(self.Missed, _at(meta, self.closes_at), helper_id=holder)
        return True

    def cancellable(self, cutoff: datetime) -> bool:
        return self.status in OPEN and self.closes_at > cutoff

    def cancel(self, reason: str, cutoff: datetime, meta: CommandMeta) -> bool:
        """Cancel an open task whose window was still open at ``cutoff`` (when the pairing ended,
        the person left it, or the cadence changed)."""
        if not self.cancellable(cutoff):
            return False
        self._trigger(self.Cancelled, meta, reason=reason)
        return True


MAX_CLAIM_TTL = timedelta(days=28)  # a claim book covers a month, and the previous one is checked


def claims_id(helper_id: UUID, month: str) -> UUID:
    """The helper's claim book for the month (``YYYY-MM``) in which the claims were made."""
    return derived_id("visit-claims", f"{helper_id}:{month}")


class HelperClaims(CareAggregate):
    """The visit tasks one helper took in one month (their claim book for that month).

    The bound on open claims is checked against this month's and last month's books (a claim
    lives at most ``MAX_CLAIM_TTL``) and saved with the claim, so that concurrent claims by the
    same helper cannot exceed it. Books stay small: a new one starts every month.
    """

    helper_id: UUID
    month: str
    held: dict[UUID, datetime]  # task id -> when the claim lapses

    def __init__(self) -> None:
        """State is set by each event's ``apply``; the annotations above document it."""

    class Opened(CareAggregate.Created):
        helper_id: UUID
        month: str

        def apply(self, b: HelperClaims) -> None:
            b.helper_id, b.month, b.held = self.helper_id, self.month, {}

    class Taken(CareAggregate.Event):
        task_id: UUID
        expires_at: datetime

        def apply(self, b: HelperClaims) -> None:
            b.held = {**b.held, self.task_id: self.expires_at}

    @classmethod
    def open(cls, helper_id: UUID, month: str, meta: CommandMeta) -> HelperClaims:
        return cls._create(
            cls.Opened, id=claims_id(helper_id, month), helper_id=helper_id, month=month, **meta.fields()
        )

    def unexpired(self, now: datetime) -> list[UUID]:
        """Tasks whose claim, as taken here, has not lapsed at ``now`` (they may be done since)."""
        return [t for t, expires_at in self.held.items() if expires_at > now]

    def take(self, task_id: UUID, expires_at: datetime, *, open_claims: int, limit: int, meta: CommandMeta) -> None:
        """Record a claim; ``open_claims``: how many the helper holds now (across books)."""
        if open_claims >= limit:
            raise ClaimLimitError(
                f"helper {self.helper_id} already holds {open_claims} open visits (the limit is {limit});"
                " complete or release one first",
                limit=limit,
                open_claims=open_claims,
            )
        self._trigger(self.Taken, meta, task_id=task_id, expires_at=expires_at)
