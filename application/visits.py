"""Visit commands of CareApplication: scheduling from cadence, claims, visit logs, misses.

A mixin over CareApplication's ``load``, ``_create``, ``_update`` and ``_run``, so every command
here has the same guarantees as the registry's: one transaction per command, re-decided on
fresh state after a concurrent write, idempotent creates under client-chosen or derived ids.

``acting_helper_id`` is the helper behind the request (a volunteer's token ``sub``), or None
when a coordinator acts for others; helpers act only for themselves and their own groups.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

from eventsourcing.application import ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Recording
from eventsourcing.utils import get_topic

from application.command_group import CommandGroup
from application.errors import AlreadyExistsError, NotFoundError
from application.results import CommandResult
from domain.base import CommandMeta, DomainError
from domain.group import VolunteerGroup
from domain.pairing import Pairing
from domain.person import Person
from domain.schedule import Period, Timeline, day_start, local_day, plan, task_id
from domain.visit_log import VisitLog, VisitLogError, log_content
from domain.visit_task import MAX_CLAIM_TTL, HelperClaims, NotEligibleError, VisitTask, VisitTaskError, claims_id
from domain.vocabulary import Cadence

DEFAULT_CLAIM_LIMIT = 5
DEFAULT_CLAIM_TTL = timedelta(hours=72)


def _nothing_else(_: object) -> list[Aggregate]:
    """For a change that touches only the task itself."""
    return []


@dataclass
class ScheduleOutcome:
    pairing_id: UUID
    created: list[UUID] = field(default_factory=list)
    cancelled: list[UUID] = field(default_factory=list)
    position: int | None = None

    def wrote(self, position: int | None) -> None:
        if position is not None:
            self.position = max(self.position or 0, position)


class VisitCommands(CommandGroup):
    """A command group of CareApplication (application/care.py)."""

    # ---- scheduling ------------------------------------------------------------------------------

    def pairing_timeline(self, pairing_id: UUID) -> tuple[Pairing, Timeline]:
        """The pairing now, and the history scheduling needs (cadence changes, departures, end)."""
        pairing: Any = None
        formed: Any = None
        changes: list[tuple[Any, Cadence]] = []
        departed: dict[UUID, datetime] = {}
        ended_at = None
        for event in self.events.get(pairing_id):
            pairing = event.mutate(pairing)
            if isinstance(event, Pairing.Formed):
                formed = event
            elif isinstance(event, Pairing.CadenceChanged):
                changes.append((local_day(event.occurred_at), Cadence(event.cadence)))
            elif isinstance(event, Pairing.PersonRemoved):
                departed[event.person_id] = event.occurred_at
            elif isinstance(event, Pairing.PersonAdded):
                departed.pop(event.person_id, None)
            elif isinstance(event, Pairing.Ended):
                ended_at = event.occurred_at
        if not isinstance(pairing, Pairing) or formed is None:
            self.load(Pairing, pairing_id)  # raises NotFoundError
        timeline = Timeline(
            starts_on=formed.starts_on,
            cadence=Cadence(formed.cadence),
            changes=tuple(changes),
            persons=tuple(pairing.person_ids),
            departed=departed,
            ended_at=ended_at,
        )
        return pairing, timeline

    def _exists(self, aggregate_id: UUID) -> bool:
        return bool(self.recorder.select_events(aggregate_id, lte=1))

    def _maybe(self, cls: type[Any], aggregate_id: UUID) -> Any:
        """The aggregate, or None when there is none (one read either way)."""
        try:
            return self.load(cls, aggregate_id)
        except NotFoundError:
            return None

    def schedule_visits(self, pairing_id: UUID, meta: CommandMeta, known_open: Iterable[UUID] = ()) -> ScheduleOutcome:
        """Bring one pairing's tasks in line with its cadence at ``meta.occurred_at``: create the
        task of the period in progress and of the next one for each person (never twice), and
        cancel open tasks the plan no longer has (pairing ended, person left, cadence changed).
        ``known_open``: ids of the pairing's open tasks as a view lists them, checked too."""
        pairing, timeline = self.pairing_timeline(pairing_id)
        now = meta.occurred_at
        the_plan = plan(timeline, now)
        outcome = ScheduleOutcome(pairing_id)
        wanted: set[UUID] = set()
        for person_id, period in the_plan.wanted:
            tid = task_id(pairing_id, person_id, period)
            wanted.add(tid)
            if not self._exists(tid):
                self._schedule_one(pairing, tid, person_id, period, meta, outcome)
        candidates: dict[UUID, datetime | None] = {}
        for person_id, period, cutoff in the_plan.stale:
            candidates.setdefault(task_id(pairing_id, person_id, period), cutoff)
        for tid in known_open:
            candidates.setdefault(tid, None)
        for tid, until in candidates.items():
            task = None if tid in wanted else self._maybe(VisitTask, tid)
            if task is None or task.pairing_id != pairing_id:
                continue
            cut = until or the_plan.cutoffs.get(task.person_id, now)
            if task.cancellable(cut):
                reason = self._cancel_reason(pairing, timeline, task.person_id)

                def cancel(t: VisitTask, r: str = reason, c: datetime = cut) -> list[Aggregate]:
                    return _nothing_else(t.cancel(r, c, meta))

                result = self._update(VisitTask, tid, None, cancel)
                if result.position is not None:  # not closed meanwhile by someone else
                    outcome.cancelled.append(tid)
                    outcome.wrote(result.position)
        return outcome

    def _schedule_one(
        self, pairing: Pairing, tid: UUID, person_id: UUID, period: Period, meta: CommandMeta, outcome: ScheduleOutcome
    ) -> None:
        def build() -> tuple[VisitTask, list[Aggregate]]:
            person = self.load(Person, person_id)
            task = VisitTask.schedule(
                id=tid, pairing=pairing, person_id=person_id, org_path=person.org_path, period=period, meta=meta
            )
            return task, []

        try:
            result = self._create(VisitTask, tid, build)
        except AlreadyExistsError:
            return  # scheduled by an earlier state of the pairing (e.g. another group): it stands
        if result.created:
            outcome.created.append(tid)
            outcome.wrote(result.position)

    @staticmethod
    def _cancel_reason(pairing: Pairing, timeline: Timeline, person_id: UUID) -> str:
        if timeline.ended_at is not None:
            return f"pairing ended: {pairing.end_reason}"
        if person_id in timeline.departed:
            return "the person left the pairing"
        return "the pairing's cadence changed"

    # ---- claims ----------------------------------------------------------------------------------

    def _take(
        self, helper_id: UUID, task_id: UUID, now: datetime, expires_at: datetime, limit: int, meta: CommandMeta
    ) -> HelperClaims:
        """Write the claim into the helper's book of this month, within the bound on open claims."""
        first = local_day(now).replace(day=1)
        book = self._maybe(HelperClaims, claims_id(helper_id, f"{first:%Y-%m}")) or HelperClaims.open(
            helper_id, f"{first:%Y-%m}", meta
        )
        # Last month's claims (as long as this one) may still be open only early in this month.
        earlier = None
        if now - (expires_at - now) < day_start(first):
            earlier = self._maybe(HelperClaims, claims_id(helper_id, f"{first - timedelta(days=1):%Y-%m}"))
        recent = {t for b in (book, earlier) if b is not None for t in b.unexpired(now)} - {task_id}
        held = sum(1 for t in recent if self.load(VisitTask, t).held_by(helper_id, now))
        book.take(task_id, expires_at, open_claims=held, limit=limit, meta=meta)
        return book

    def claim_visit(
        self,
        task_id: UUID,
        meta: CommandMeta,
        *,
        helper_id: UUID | None = None,
        group_id: UUID | None = None,
        acting_helper_id: UUID | None = None,
        limit: int = DEFAULT_CLAIM_LIMIT,
        ttl: timedelta = DEFAULT_CLAIM_TTL,
    ) -> Any:
        """Claim for a helper, or (``group_id`` without ``helper_id``) for the pairing's group as a
        team. Exactly one of many concurrent claims wins; the others see who holds it."""
        if acting_helper_id is not None:
            if helper_id is not None and helper_id != acting_helper_id:
                raise NotEligibleError(
                    "a helper claims visits for themselves; a coordinator may claim for others", field="helper_id"
                )
            if group_id is None:
                helper_id = acting_helper_id
        if helper_id is None and group_id is None:
            raise VisitTaskError(
                "name the helper (helper_id) or the group (group_id) who takes the visit", field="helper_id"
            )
        now, expires_at = meta.occurred_at, meta.occurred_at + min(ttl, MAX_CLAIM_TTL)

        def decide() -> tuple[Aggregate, list[Aggregate]]:
            task = self.load(VisitTask, task_id)
            pairing = self.load(Pairing, task.pairing_id)
            group = None
            if group_id is not None:
                group = self.load(VolunteerGroup, group_id, field="group_id")
                if acting_helper_id is not None and acting_helper_id not in group.member_ids:
                    raise NotEligibleError(f"only members of group {group_id} may claim for it", field="group_id")
            elif pairing.group_id is not None and helper_id not in pairing.helper_ids:
                group = self.load(VolunteerGroup, pairing.group_id)
            taken = task.claim(
                pairing=pairing, helper_id=helper_id, group=group, now=now, expires_at=expires_at, meta=meta
            )
            touched: list[Aggregate] = [task]
            if taken and helper_id is not None:
                touched.append(self._take(helper_id, task.id, now, expires_at, limit, meta))
            return task, touched

        return self._run(decide)

    def assign_visit(
        self,
        task_id: UUID,
        helper_id: UUID,
        meta: CommandMeta,
        *,
        acting_helper_id: UUID | None = None,
        limit: int = DEFAULT_CLAIM_LIMIT,
        ttl: timedelta = DEFAULT_CLAIM_TTL,
    ) -> Any:
        """A visit its group claimed as a team goes to one member (chosen by a member or a coordinator)."""
        now, expires_at = meta.occurred_at, meta.occurred_at + min(ttl, MAX_CLAIM_TTL)

        def decide() -> tuple[Aggregate, list[Aggregate]]:
            task = self.load(VisitTask, task_id)
            if task.holder_group_id is None:
                raise VisitTaskError("this visit is not held by a group", field="helper_id")
            group = self.load(VolunteerGroup, task.holder_group_id)
            if acting_helper_id is not None and acting_helper_id not in group.member_ids:
                raise NotEligibleError(f"only members of group {group.id} may assign its visits", field="helper_id")
            task.assign(helper_id=helper_id, group=group, now=now, expires_at=expires_at, meta=meta)
            return task, [task, self._take(helper_id, task.id, now, expires_at, limit, meta)]

        return self._run(decide)

    def release_visit(
        self,
        task_id: UUID,
        reason: str,
        meta: CommandMeta,
        *,
        acting_helper_id: UUID | None = None,
        expected_version: int | None = None,
    ) -> Any:
        def change(task: VisitTask) -> list[Aggregate]:
            by = acting_helper_id
            team = task.holder_group_id if by is not None and task.holder_id is None else None
            if team is not None and by in self.load(VolunteerGroup, team).member_ids:
                by = None  # a member gives back what the team took
            task.release(by_helper_id=by, reason=reason.strip() or "released", meta=meta)
            return []

        return self._update(VisitTask, task_id, expected_version, change)

    def expire_visit_claim(self, task_id: UUID, meta: CommandMeta) -> Any:
        """Return a lapsed claim to the pool (nothing happens if it has not lapsed)."""
        return self._update(VisitTask, task_id, None, lambda t: _nothing_else(t.expire_claim(meta.occurred_at, meta)))

    def mark_visit_missed(self, task_id: UUID, meta: CommandMeta) -> Any:
        """Mark missed a task whose window closed undone (nothing happens otherwise)."""
        return self._update(VisitTask, task_id, None, lambda t: _nothing_else(t.mark_missed(meta.occurred_at, meta)))

    def cancel_visit_task(self, task_id: UUID, reason: str, meta: CommandMeta) -> Any:
        return self._update(VisitTask, task_id, None, lambda t: _nothing_else(t.cancel(reason, meta.occurred_at, meta)))

    # ---- visit logs ------------------------------------------------------------------------------

    def record_visit(
        self,
        log_id: UUID,
        meta: CommandMeta,
        *,
        pairing_id: UUID | None = None,
        person_id: UUID | None = None,
        acting_helper_id: UUID | None = None,
        now: datetime | None = None,
        **fields: Any,
    ) -> Any:
        """Record a visit log under the client's id (``fields``: see domain.visit_log.log_content),
        against its task (``task_id``) or unplanned (``pairing_id`` and ``person_id``). The same
        log again returns the first result and writes nothing; another under the same id is refused."""

        content = log_content(visited_at=meta.occurred_at, **fields)
        existing = self._maybe(VisitLog, log_id)
        if existing is not None:
            self._check_same_log(existing, content, pairing_id, person_id)
            return CommandResult(existing.id, existing.version, self._log_position(existing), created=False)
        self._check_helper_went(content, acting_helper_id)

        def build() -> tuple[VisitLog, list[Aggregate]]:
            return self._decide_log(log_id, meta, content, fields, pairing_id, person_id, now)

        return self._create(VisitLog, log_id, build)

    @staticmethod
    def _check_same_log(
        existing: VisitLog, content: dict[str, Any], pairing_id: UUID | None, person_id: UUID | None
    ) -> None:
        """A log sent again must be the same log: else the id is taken."""
        same = (
            existing.content() == content
            and pairing_id in (None, existing.pairing_id)
            and person_id in (None, existing.person_id)
        )
        if not same:
            raise AlreadyExistsError(
                f"a different visit log already exists with id {existing.id}", field="id", id=str(existing.id)
            )

    @staticmethod
    def _check_helper_went(content: dict[str, Any], acting_helper_id: UUID | None) -> None:
        if acting_helper_id is not None and acting_helper_id not in content["helper_ids"]:
            raise NotEligibleError("a helper logs visits they went on: add yourself to helper_ids", field="helper_ids")

    def _decide_log(
        self,
        log_id: UUID,
        meta: CommandMeta,
        content: dict[str, Any],
        fields: dict[str, Any],
        pairing_id: UUID | None,
        person_id: UUID | None,
        now: datetime | None,
        not_erased: Container[UUID] = (),
    ) -> tuple[VisitLog, list[Aggregate]]:
        """The new log and the task it completes (if any), decided on what ``load`` gives.
        ``not_erased``: persons known (from the store, now) to be registered and not erased,
        whom deciding need not load (a backlog's, ``_persons_not_erased``)."""
        task = None
        if content["task_id"] is not None:
            task = self.load(VisitTask, content["task_id"], field="task_id")
            if person_id not in (None, task.person_id):
                raise VisitLogError(f"the task is a visit to person {task.person_id}", field="person_id")
            pairing = self.load(Pairing, task.pairing_id)
            who, org_path = task.person_id, task.org_path
        else:
            if pairing_id is None or person_id is None:
                raise VisitLogError("an unplanned visit names its pairing_id and person_id", field="pairing_id")
            pairing = self.load(Pairing, pairing_id, field="pairing_id")
            if person_id not in pairing.person_ids:
                raise VisitLogError(f"person {person_id} is not in pairing {pairing_id}", field="person_id")
            who, org_path = person_id, self.load(Person, person_id).org_path
        # Nothing more is recorded about an erased person (a task may still be open for them).
        if who not in not_erased:
            self.load(Person, who).check_not_erased(field="person_id")
        self._check_went(pairing, content["helper_ids"])
        log = VisitLog.record(id=log_id, pairing_id=pairing.id, person_id=who, org_path=org_path, meta=meta, **fields)
        if task is not None:
            task.complete(
                log_id=log_id, helper_ids=content["helper_ids"], mode=log.mode, now=now or meta.occurred_at, meta=meta
            )
            return log, [task]
        return log, []

    def _check_went(self, pairing: Pairing, helper_ids: list[UUID]) -> None:
        group = None
        for n, helper_id in enumerate(helper_ids):
            if helper_id in pairing.helper_ids:
                continue
            if group is None and pairing.group_id is not None:
                group = self.load(VolunteerGroup, pairing.group_id)
            if group is None or helper_id not in group.member_ids:
                raise NotEligibleError(
                    f"helper {helper_id} is neither a helper of pairing {pairing.id} nor a member of its group",
                    field=f"helper_ids[{n}]",
                )

    def _log_position(self, log: VisitLog) -> int | None:
        """The position the first answer to this log gave: its transaction's last event."""
        keys = [(log.id, log.version)]
        if log.task_id is not None:
            for event in self.events.get(log.task_id):
                if isinstance(event, VisitTask.Completed) and event.log_id == log.id:
                    keys.append((log.task_id, event.originator_version))
        return self.store.last_position(keys)

    # ---- a device's backlog of visit logs at once -------------------------------------------------

    def record_visits(
        self,
        items: Sequence[LogItem],
        *,
        acting_helper_id: UUID | None = None,
        now: datetime | None = None,
        loaded: Mapping[UUID, Aggregate | None] | None = None,
        taken: Iterable[UUID] | None = None,
    ) -> list[CommandResult | DomainError]:
        """Record many visit logs (an offline device's backlog) with the guarantees of
        ``record_visit`` for each: each item's answer is its own result or the error that refused
        it, and a refused item leaves no trace. What the items read is loaded in one query per
        kind (``loaded``: what the caller read for them already, ``read_for_backlog``), and the new
        logs (each with the task it completes) are saved in one transaction; when that save loses
        a race with a concurrent write, each item is recorded on its own. ``taken``: the items'
        ids that name something stored already, as the caller read them (None: read here); a log
        stored since is caught by the save. The same id twice in one batch: the later item is
        refused."""
        answers: dict[int, CommandResult | DomainError] = {}
        contents: dict[int, dict[str, Any]] = {}
        seen: dict[UUID, int] = {}
        for n, item in enumerate(items):
            try:
                if item.log_id in seen:
                    raise AlreadyExistsError(
                        f"visit log {item.log_id} is item {seen[item.log_id]} of this batch too",
                        field="id",
                        id=str(item.log_id),
                    )
                seen[item.log_id] = n
                contents[n] = log_content(visited_at=item.meta.occurred_at, **item.fields)
            except DomainError as e:
                answers[n] = e
        if taken is None:
            taken = [cast(UUID, e.originator_id) for e in self.store.first_events([items[n].log_id for n in contents])]
        stored = set(taken)
        again = {n: contents.pop(n) for n in list(contents) if items[n].log_id in stored}
        if again:
            answers.update(self._logs_again(items, again, loaded or {}))
        decided: dict[int, tuple[VisitLog, list[Aggregate]]] = {}
        with self._fresh_unit_of_work():
            new = [items[n] for n in contents]
            held = dict(loaded or {})
            held.update(
                self.read_for_logs(
                    {i.fields["task_id"] for i in new if i.fields.get("task_id")},
                    {i.pairing_id for i in new if i.pairing_id is not None},
                    {i.person_id for i in new if i.person_id is not None},
                    known=held,
                )
            )
            self._unit_of_work.loaded.update((i, a) for i, a in held.items() if a is not None)
            tasks = [held.get(i.fields["task_id"]) for i in new if i.fields.get("task_id")]
            not_erased = self._persons_not_erased(
                t.person_id for t in tasks if isinstance(t, VisitTask) and not isinstance(held.get(t.person_id), Person)
            )
            for n, content in contents.items():
                item = items[n]
                try:
                    self._check_helper_went(content, acting_helper_id)
                    decided[n] = self._decide_log(
                        item.log_id, item.meta, content, item.fields, item.pairing_id, item.person_id, now, not_erased
                    )
                except DomainError as e:
                    answers[n] = e
        if decided:
            # The visited persons' keys seal the logs: read in one query, not one a person.
            self.store.load_keys([str(log.person_id) for log, _ in decided.values()])
            touched = {id(a): a for log, others in decided.values() for a in (log, *others)}
            try:
                recordings = self._save_all(touched.values())
            except IntegrityError:
                for n in decided:  # someone else wrote one of them meanwhile: each on its own
                    answers[n] = self._one_log(items[n], acting_helper_id, now)
            else:
                position = {r.domain_event.originator_id: r.notification.id for r in recordings}
                for n, (log, others) in decided.items():
                    last = max(position.get(a.id) or 0 for a in (log, *others)) or None
                    answers[n] = CommandResult(log.id, log.version, last, created=True, aggregate=log)
        return [answers[n] for n in range(len(items))]

    def read_for_backlog(
        self, named: Sequence[tuple[UUID, UUID | None, UUID | None, UUID | None]], also: Iterable[UUID] = ()
    ) -> dict[UUID, Aggregate | None]:
        """What checking and deciding a backlog of visit logs reads, now, in three queries.
        ``named``: each item's (log id, task id, pairing id, person id); ``also``: other ids the
        checks read (the caller's helper record). First everything named and ``also`` (a log
        id with something stored under it: a log sent before); then for the logs not stored yet
        what ``read_for_logs`` reads beyond their tasks, and for those stored their tasks'
        pairings (what checking a log sent again reads: whether it is the caller's); then the
        pairings' groups. Every id named maps to its aggregate, or None when none is stored."""
        first = list(dict.fromkeys([*(i for ids in named for i in ids if i is not None), *also]))
        got: dict[UUID, Aggregate | None] = dict.fromkeys(first)
        got.update(self._replay_many(first))
        new = [ids for ids in named if got[ids[0]] is None]
        again = [got[ids[1]] for ids in named if ids[1] is not None and got[ids[0]] is not None]
        got.update(
            self.read_for_logs(
                {i[1] for i in new if i[1] is not None},
                [*(i[2] for i in new if i[2] is not None), *(t.pairing_id for t in again if isinstance(t, VisitTask))],
                {i[3] for i in new if i[3] is not None},
                known=got,
            )
        )
        return got

    def read_for_logs(
        self,
        task_ids: Iterable[UUID],
        pairing_ids: Iterable[UUID] = (),
        person_ids: Iterable[UUID] = (),
        *,
        known: Mapping[UUID, Aggregate | None] | None = None,
    ) -> dict[UUID, Aggregate]:
        """What deciding visit logs reads, now: the tasks, their pairings (and the pairings and
        persons named), the pairings' groups; in three queries (tasks; pairings and persons;
        groups), each of a kind where the id names one. ``known``: already read (None: nothing
        stored under that id), not read again. The persons of the tasks are not read: deciding
        asks only whether they were erased (``_persons_not_erased``), not what they hold."""
        known = known or {}
        task_ids, pairing_ids, person_ids = list(task_ids), list(pairing_ids), list(person_ids)
        got: dict[UUID, Aggregate] = {}

        def read(ids: Iterable[UUID]) -> None:
            got.update(self._replay_many([i for i in dict.fromkeys(ids) if i not in known and i not in got]))

        def held(i: UUID) -> Any:
            return known.get(i) or got.get(i)

        read(task_ids)
        tasks = [t for t in map(held, task_ids) if isinstance(t, VisitTask)]
        read([*pairing_ids, *person_ids, *(t.pairing_id for t in tasks)])
        pairings = [p for p in map(held, [*pairing_ids, *(t.pairing_id for t in tasks)]) if isinstance(p, Pairing)]
        read(p.group_id for p in pairings if p.group_id is not None)
        return got

    def _persons_not_erased(self, person_ids: Iterable[UUID]) -> set[UUID]:
        """Which of these persons are registered and not erased, in one query of their events'
        topics: the same answer as loading each (``Person.check_not_erased``) without replaying
        them or opening their personal data."""
        wanted = list(dict.fromkeys(person_ids))
        if not wanted:
            return set()
        return self.store.started_without(wanted, get_topic(Person.Registered), get_topic(Person.Erased))

    def _replay_many(self, ids: Sequence[UUID]) -> dict[UUID, Aggregate]:
        """Aggregates from one read of all their events: the library's replay without its
        runtime protocol checks per event (isinstance against a Protocol, uncached on 3.11)."""
        if not ids:
            return {}
        by_id: dict[UUID, list[Any]] = {}
        for event in self.mapper.to_domain_events(self.store.events_of(ids)):  # type: ignore[attr-defined]
            by_id.setdefault(event.originator_id, []).append(event)
        out: dict[UUID, Aggregate] = {}
        for i, events in by_id.items():
            agg = None
            for event in events:
                agg = event.mutate(agg)
            if agg is not None:
                out[i] = agg
        return out

    def _save_all(self, aggregates: Iterable[Aggregate]) -> list[Recording[UUID]]:
        """``save`` of the library for aggregates only, without its runtime protocol checks per
        object: the same events recorded in one transaction, then the same notifications."""
        processing: ProcessingEvent[UUID] = ProcessingEvent()
        for aggregate in aggregates:
            processing.events.extend(aggregate.collect_events())
            processing.aggregates[aggregate.id] = aggregate
        app: Any = self  # the library's Application (CareApplication's base), as its save() goes on
        recordings: list[Recording[UUID]] = app._record(processing)
        app._take_snapshots(processing)
        app._notify(recordings)
        app.notify(processing.events)
        return recordings

    def _logs_again(
        self, items: Sequence[LogItem], contents: dict[int, dict[str, Any]], loaded: Mapping[UUID, Aggregate | None]
    ) -> dict[int, CommandResult | DomainError]:
        """Logs sent before: each the same log again (its first answer's result), or refused.
        ``loaded``: what the caller read (the logs themselves when it read them, not read again)."""
        ids = [items[n].log_id for n in contents]
        if all(i in loaded for i in ids):
            logs = {i: log for i in ids if isinstance(log := loaded[i], VisitLog)}
        else:
            logs = self.load_many(VisitLog, ids)
        task_ids = [log.task_id for log in logs.values() if log.task_id is not None]
        completed: dict[UUID, int] = {}  # log id -> version of the task's event it completed
        for event in self.mapper.to_domain_events(self.store.events_of(task_ids)):  # type: ignore[attr-defined]
            if isinstance(event, VisitTask.Completed):
                completed[event.log_id] = event.originator_version
        keys: dict[UUID, list[tuple[UUID, int]]] = {log.id: [(log.id, log.version)] for log in logs.values()}
        for log in logs.values():
            if log.task_id is not None and log.id in completed:
                keys[log.id].append((log.task_id, completed[log.id]))
        positions = self.store.positions([k for ks in keys.values() for k in ks])
        out: dict[int, CommandResult | DomainError] = {}
        for n, content in contents.items():
            item, found = items[n], logs.get(items[n].log_id)
            try:
                if found is None:  # another kind of thing under this id
                    raise AlreadyExistsError(
                        f"a different visit log already exists with id {item.log_id}", field="id", id=str(item.log_id)
                    )
                self._check_same_log(found, content, item.pairing_id, item.person_id)
            except DomainError as e:
                out[n] = e
                continue
            position = max((positions[k] for k in keys[found.id] if k in positions), default=None)
            out[n] = CommandResult(found.id, found.version, position, created=False, aggregate=found)
        return out

    def _one_log(
        self, item: LogItem, acting_helper_id: UUID | None, now: datetime | None
    ) -> CommandResult | DomainError:
        try:
            result: CommandResult = self.record_visit(
                item.log_id,
                item.meta,
                pairing_id=item.pairing_id,
                person_id=item.person_id,
                acting_helper_id=acting_helper_id,
                now=now,
                **item.fields,
            )
        except DomainError as e:
            return e
        return result


@dataclass(frozen=True)
class LogItem:
    """One visit log of a batch: its client-chosen id, its command's meta, the log's fields (as
    ``record_visit`` takes them, ``task_id`` among them), and for an unplanned visit its pairing
    and person."""

    log_id: UUID
    meta: CommandMeta
    fields: dict[str, Any]
    pairing_id: UUID | None = None
    person_id: UUID | None = None
