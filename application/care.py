"""The command side: one eventsourcing Application over an event store (``application/ports.py``).

Each command loads what it needs, lets the domain decide, and saves every touched aggregate
in one transaction. A save that loses a race with a concurrent write is re-decided on fresh
state (up to ``retries`` times); a command that names the version it expects fails with
``VersionConflictError`` instead. Creating with a client-chosen id is idempotent: the same
create again returns the first result, a different one under the same id is refused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent, Repository
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    JSONTranscoder,
    Mapper,
    Recording,
    Transcoder,
    Transcoding,
)

from application.accounts import AccountCommands
from application.asof import replay_as_of
from application.command_group import Change
from application.emergencies import EmergencyCommands
from application.errors import (
    AlreadyExistsError,
    InvalidTimeError,
    NotFoundError,
    UnknownReferenceError,
    VersionConflictError,
    kind_name,
)
from application.ports import EventStore
from application.results import CommandResult
from application.visits import VisitCommands
from domain.base import META_FIELDS, CareAggregate, CommandMeta, DomainError, derived_id
from domain.group import VolunteerGroup
from domain.helper import Helper
from domain.org_unit import OrgUnit, org_unit_id
from domain.pairing import Pairing, PairingError
from domain.person import Person
from domain.vocabulary import Cadence, HelperRole, OrgLevel, PairingShape, PersonKind, RiskTag, Sex, VisitMode

A = TypeVar("A", bound=Aggregate)

ID_NUMBER = "id_number"  # the lookup kind of resident ID numbers (the store keeps their keyed hashes)


class DateAsISO(Transcoding):
    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


def check_occurred_at(
    occurred_at: datetime, now: datetime, *, skew_seconds: int, max_backdate_days: int, field: str = "occurred_at"
) -> datetime:
    if occurred_at.tzinfo is None:
        raise InvalidTimeError("a time needs a UTC offset, e.g. 2026-03-01T09:30:00+08:00", field=field)
    if occurred_at > now + timedelta(seconds=skew_seconds):
        raise InvalidTimeError(f"lies in the future (now is {now.isoformat(timespec='seconds')})", field=field)
    if occurred_at < now - timedelta(days=max_backdate_days):
        raise InvalidTimeError(f"lies more than {max_backdate_days} days in the past", field=field)
    return occurred_at


def replay(aggregate: Any, events: Iterable[Any]) -> Any:
    """The library's ``project_aggregate`` without its per-event ``isinstance`` against a runtime
    ``Protocol``, which Python 3.11 answers by walking the protocol's members each time (30-90 µs
    an event on this machine): every event of this application is one of the domain's, which
    all have ``mutate`` (issue 19)."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


class _Repository(Repository[UUID]):
    """The library's repository, replaying with ``replay`` unless told otherwise."""

    def get(
        self, aggregate_id: UUID, *, version: int | None = None, projector_func: Any = replay, **kwargs: Any
    ) -> Any:
        return super().get(aggregate_id, version=version, projector_func=projector_func, **kwargs)


class _Collected(ProcessingEvent[UUID]):
    """The library's collection of a save's pending events, taking the domain's aggregates by
    their class instead of by two runtime ``Protocol`` checks each (as ``replay``)."""

    def collect_events(self, *objs: Any, **kwargs: Any) -> None:
        for obj in objs:
            if isinstance(obj, Aggregate):
                self.events.extend(obj.collect_events())
                self.aggregates[obj.id] = obj
            elif obj is not None:
                super().collect_events(obj)
        self.saved_kwargs.update(kwargs)


def _creation_fields(event: Any) -> dict[str, Any]:
    ignored = {*META_FIELDS, "timestamp"}
    return {k: v for k, v in event.__dict__.items() if k not in ignored}


class CareApplication(AccountCommands, EmergencyCommands, VisitCommands, Application[UUID]):
    """Registry, helpers, groups and pairings: every change a domain event in PostgreSQL."""

    name = "Guanai"

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        store: EventStore,
        helper_capacity: int = 10,
        retries: int = 5,
    ) -> None:
        # The store brings the mapper (sealing), the recorder (audit chain) and their keys: built
        # by the composition root (guanai/bootstrap.py), so the application reads no settings.
        self.store = store
        super().__init__(env)
        self.helper_capacity = helper_capacity
        self.retries = retries
        # Per command attempt, per thread: one object per id, so that an aggregate reached twice
        # (a helper in two of a person's pairings) is changed and saved once.
        self._unit_of_work = threading.local()

    def construct_mapper(self) -> Mapper[UUID]:
        return self.store.construct_mapper(self.factory, self.construct_transcoder())

    def construct_recorder(self) -> ApplicationRecorder:
        return self.store.construct_recorder(self.factory)

    def construct_repository(self) -> Repository[UUID]:
        library = super().construct_repository()
        maxsize = self.env.get(self.AGGREGATE_CACHE_MAXSIZE)
        return _Repository(
            event_store=library.event_store,
            snapshot_store=library.snapshot_store,
            cache_maxsize=int(maxsize) if maxsize else None,
            fastforward=library.fastforward,
            fastforward_skipping=library.fastforward_skipping,
            deepcopy_from_cache=library.deepcopy_from_cache,
        )

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """The library's save, collecting events by ``_Collected``."""
        processing_event = _Collected()
        processing_event.collect_events(*objs, **kwargs)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        return recordings

    def names(self, ids: Iterable[UUID]) -> dict[UUID, str]:
        """The names of persons and helpers, from their creation events (one query for all, and
        one for the keys not cached): the views keep no names. An erased person's is ERASED."""
        wanted = list({i for i in ids if i is not None})
        if not wanted:
            return {}
        events = self.mapper.to_domain_events(self.store.first_events(wanted))  # type: ignore[attr-defined]
        return {e.originator_id: e.name for e in events if isinstance(e, Person.Registered | Helper.Registered)}

    def load_many(self, cls: type[A], ids: Iterable[UUID]) -> dict[UUID, A]:
        """Many aggregates now, from one read of all their events (and one for the keys not
        cached): an export of a county's registry reads thousands of people."""
        wanted = list(dict.fromkeys(ids))
        by_id: dict[UUID, list[Any]] = {}
        for event in self.mapper.to_domain_events(self.store.events_of(wanted)):  # type: ignore[attr-defined]
            by_id.setdefault(event.originator_id, []).append(event)
        loaded: dict[UUID, A] = {}
        for i, events in by_id.items():
            agg = replay(None, events)
            if isinstance(agg, cls):
                loaded[i] = agg
        return loaded

    # ---- finding people by a sealed number (imports) -------------------------------------------

    def lookup_hash(self, kind: str, normalised: str) -> bytes:
        """The keyed hash that finds a sealed number (an ID number, a phone) in the store's lookups."""
        return self.store.lookup_hash(kind, normalised)

    def person_id_for(self, id_number: str) -> UUID:
        """The id a person registered by import gets: derived from the keyed hash of their ID
        number, so importing them twice (two imports at once, a run resumed after a crash) names
        one person."""
        return derived_id("person-id-number", self.lookup_hash(ID_NUMBER, id_number).hex())

    def find_by_lookup(self, kind: str, hashes: Sequence[bytes]) -> dict[bytes, tuple[UUID, bytes | None]]:
        """hash -> (subject id, digest of the row last imported) for the hashes known."""
        return self.store.find_lookups(kind, hashes)

    def recording_lookups(self, rows: Sequence[tuple[str, bytes, UUID, bytes | None]]) -> Any:
        """A context: saves of this thread inside it also write these lookup rows, in their own
        transaction (a person and the hash that finds them commit together or not at all)."""
        return self.store.recording_lookups(rows)

    def rebuild_lookups(self) -> int:
        """Index the ID numbers of people registered before the store kept lookups; rows written."""
        return self.store.rebuild_lookups(self.mapper, ID_NUMBER)

    def prepare_keys(self, subject_ids: Iterable[UUID]) -> None:
        """Make the data keys of many new people in one transaction before they are saved (an
        import's batch); otherwise each is made on its own as its first event is sealed."""
        self.store.prepare_keys([str(i) for i in subject_ids])

    def saved(self, cls: type[A], result: CommandResult, aggregate_id: UUID | None = None) -> A:
        """The aggregate a command decided on and saved (``aggregate_id``: the one asked for), as
        loading it would give it; loaded when the command kept another or none."""
        held = result.aggregate
        if isinstance(held, cls) and (aggregate_id is None or held.id == aggregate_id):
            return held
        return self.load(cls, aggregate_id or result.id)

    def personal_data_erased(self, subject_id: UUID | str) -> bool:
        """Whether the personal data sealed for a subject (a person, an emergency report) was erased."""
        return self.store.is_erased(str(subject_id))

    def construct_transcoder(self) -> Transcoder:
        # The store's transcoder (infrastructure/transcoding.py: the library's JSON, byte for
        # byte, in C), with this application's types registered on it.
        transcoder = self.store.transcoder()
        self.register_transcodings(transcoder)
        return transcoder

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())

    # ---- loading -------------------------------------------------------------------------

    def load(self, cls: type[A], aggregate_id: UUID, *, field: str | None = None, version: int | None = None) -> A:
        """Load by id; a wrong kind counts as absent. ``field`` set: the id came in the body."""
        loaded: dict[UUID, Any] | None = getattr(self._unit_of_work, "loaded", None)
        if version is None and loaded is not None and aggregate_id in loaded:
            agg = loaded[aggregate_id]
        else:
            try:
                agg = self.repository.get(aggregate_id, version=version)
            except AggregateNotFoundError:
                agg = None
            if version is None and loaded is not None and agg is not None:
                loaded[aggregate_id] = agg
        if not isinstance(agg, cls):
            kind = kind_name(cls)
            if field is None:
                raise NotFoundError(f"no {kind} with id {aggregate_id}", kind=kind, id=str(aggregate_id))
            raise UnknownReferenceError(f"no {kind} with id {aggregate_id}", field=field)
        return agg

    def load_as_of(
        self,
        cls: type[A],
        aggregate_id: UUID,
        *,
        version: int | None = None,
        at: datetime | None = None,
        axis: str = "recorded",
    ) -> A:
        """State as of a version, or as of an instant: ``axis='recorded'`` is what the system knew
        at ``at``; ``axis='occurred'`` is what had happened in the world by ``at``."""
        if at is None:
            return self.load(cls, aggregate_id, version=version)
        events = self.events.get(aggregate_id, lte=version)
        agg: Any = replay_as_of(events, at, axis).aggregate  # also right when events were recorded out of world order
        if not isinstance(agg, cls):
            kind = kind_name(cls)
            raise NotFoundError(f"no {kind} with id {aggregate_id} as of {at.isoformat()}", id=str(aggregate_id))
        return agg

    def history(self, aggregate_id: UUID) -> list[Any]:
        return list(self.events.get(aggregate_id))

    def _load_all(self, cls: type[A], ids: Sequence[UUID], field: str) -> list[A]:
        return [self.load(cls, i, field=f"{field}[{n}]") for n, i in enumerate(ids)]

    # ---- the command loop ----------------------------------------------------------------

    @contextmanager
    def given(self, aggregates: Iterable[Aggregate]) -> Iterator[None]:
        """Commands of this thread inside it start from these aggregates instead of loading them
        again: what the API's access guard read for this request a moment before. Only a
        command's first attempt does: one re-decided after a concurrent write loads fresh state
        (an aggregate saved meanwhile fails the save, as one loaded by the command would)."""
        self._unit_of_work.given = {a.id: a for a in aggregates}
        try:
            yield
        finally:
            self._unit_of_work.given = None

    @contextmanager
    def _fresh_unit_of_work(self) -> Iterator[None]:
        given: dict[UUID, Any] | None = getattr(self._unit_of_work, "given", None)
        self._unit_of_work.given = None  # the first attempt only
        self._unit_of_work.loaded = dict(given) if given else {}
        try:
            yield
        finally:
            self._unit_of_work.loaded = None

    def _run(self, decide: Callable[[], tuple[Aggregate, Iterable[Aggregate]]]) -> CommandResult:
        """Decide on fresh state and save; re-decide when a concurrent write got there first."""
        for attempt in range(self.retries + 1):
            with self._fresh_unit_of_work():
                main, touched = decide()
            try:
                recordings = self.save(*touched)
            except IntegrityError:
                if attempt == self.retries:
                    raise VersionConflictError(
                        "too many concurrent changes; try again", current_version=self.load(type(main), main.id).version
                    ) from None
                continue
            position = max((r.notification.id for r in recordings if r.notification.id), default=None)
            return CommandResult(main.id, main.version, position, aggregate=main)
        raise AssertionError("unreachable")  # pragma: no cover

    def _update(
        self, cls: type[A], aggregate_id: UUID, expected_version: int | None, change: Change[A]
    ) -> CommandResult:
        def decide() -> tuple[Aggregate, Iterable[Aggregate]]:
            agg = self.load(cls, aggregate_id)
            if expected_version is not None and agg.version != expected_version:
                raise VersionConflictError(
                    f"changed since version {expected_version}; it is now at version {agg.version}",
                    current_version=agg.version,
                )
            return agg, [agg, *(change(agg) or [])]

        return self._run(decide)

    def _create(
        self, cls: type[A], aggregate_id: UUID, build: Callable[[], tuple[A, Iterable[Aggregate]]]
    ) -> CommandResult:
        """Save a new aggregate; the same create again (a retry after a lost answer) answers the
        stored one, a different one under a taken id is refused. The save finds a taken id
        (its first event exists): only then is that event read, so a new create costs no read."""
        for _ in range(self.retries + 1):
            with self._fresh_unit_of_work():
                new, touched = build()
            created = new.pending_events[0]
            try:
                recordings = self.save(new, *touched)
            except IntegrityError:
                first = next(iter(self.events.get(aggregate_id, lte=1)), None)
                if first is None:
                    continue  # another aggregate it touched changed meanwhile: decide again
                if type(first) is not type(created) or _creation_fields(first) != _creation_fields(created):
                    kind = kind_name(cls)
                    raise AlreadyExistsError(
                        f"a different {kind} already exists with id {aggregate_id}", field="id", id=str(aggregate_id)
                    ) from None
                existing = self.load(cls, aggregate_id)
                return CommandResult(existing.id, existing.version, None, created=False)
            position = max(r.notification.id for r in recordings if r.notification.id)
            return CommandResult(new.id, new.version, position, created=True, aggregate=new)
        raise VersionConflictError("too many concurrent changes; try again")

    # ---- org units -------------------------------------------------------------------------

    def register_org_unit(
        self, *, code: str, name: str, level: OrgLevel, parent_id: UUID | None, meta: CommandMeta
    ) -> CommandResult:
        def build() -> tuple[OrgUnit, list[Aggregate]]:
            parent = self.load(OrgUnit, parent_id, field="parent_id") if parent_id else None
            return OrgUnit.register(code=code, name=name, level=level, parent=parent, meta=meta), []

        return self._create(OrgUnit, org_unit_id(code), build)

    def rename_org_unit(
        self, unit_id: UUID, name: str, meta: CommandMeta, expected_version: int | None = None
    ) -> CommandResult:
        return self._update(OrgUnit, unit_id, expected_version, lambda u: u.rename(name, meta))

    # ---- persons -----------------------------------------------------------------------------

    def register_person(
        self,
        *,
        id: UUID,
        kind: PersonKind,
        name: str,
        sex: Sex,
        birth_date: date,
        village_id: UUID,
        meta: CommandMeta,
        id_number: str | None = None,
        household: str = "",
        risk_tags: Sequence[RiskTag] = (),
        guardian: dict[str, Any] | None = None,
        parents: Sequence[dict[str, Any]] = (),
        absent_children: Sequence[dict[str, Any]] = (),
        care_agreement_signed_on: date | None = None,
    ) -> CommandResult:
        def build() -> tuple[Person, list[Aggregate]]:
            village = self.load(OrgUnit, village_id, field="village_id")
            person = Person.register(
                id=id,
                kind=kind,
                name=name,
                sex=sex,
                birth_date=birth_date,
                id_number=id_number,
                household=household,
                village=village,
                risk_tags=list(risk_tags),
                guardian=guardian,
                parents=list(parents),
                absent_children=list(absent_children),
                care_agreement_signed_on=care_agreement_signed_on,
                meta=meta,
            )
            return person, []

        if id_number is None:
            return self._create(Person, id, build)
        # The ID number's keyed hash finds the person on import (the number itself is sealed);
        # an import sets its own rows (with the digest of its row) before it calls this.
        known = self.store.pending_lookups()
        rows = known if known is not None else [(ID_NUMBER, self.lookup_hash(ID_NUMBER, id_number.upper()), id, None)]
        with self.recording_lookups(rows):
            return self._create(Person, id, build)

    def add_risk_tag(
        self, person_id: UUID, tag: RiskTag, meta: CommandMeta, expected_version: int | None = None
    ) -> CommandResult:
        return self._update(Person, person_id, expected_version, lambda p: p.add_risk_tag(tag, meta))

    def remove_risk_tag(
        self, person_id: UUID, tag: RiskTag, meta: CommandMeta, expected_version: int | None = None
    ) -> CommandResult:
        return self._update(Person, person_id, expected_version, lambda p: p.remove_risk_tag(tag, meta))

    def assign_guardian(
        self, person_id: UUID, guardian: dict[str, Any], meta: CommandMeta, expected_version: int | None = None
    ) -> CommandResult:
        return self._update(Person, person_id, expected_version, lambda p: p.assign_guardian(guardian, meta))

    def sign_care_agreement(
        self, person_id: UUID, signed_on: date, meta: CommandMeta, expected_version: int | None = None
    ) -> CommandResult:
        return self._update(Person, person_id, expected_version, lambda p: p.sign_care_agreement(signed_on, meta))

    def _leave_pairings(self, person: Person, why: str, meta: CommandMeta) -> list[Aggregate]:
        """Each of the person's pairings drops them, or ends when it cannot keep its shape. The
        person's own words (a leave reason) stay on their record, sealed: the pairings get a
        fixed ``why``, so no personal text spreads into other aggregates' events."""
        touched: list[Aggregate] = []
        for pairing_id in list(person.pairing_ids):
            pairing = self.load(Pairing, pairing_id)
            helpers = self._load_all(Helper, pairing.helper_ids, "helper_ids")
            try:
                pairing.remove_person(person, helpers, why, meta)
            except PairingError:
                others = [self.load(Person, i) for i in pairing.person_ids if i != person.id]
                pairing.end(
                    reason=f"person {why}",
                    ends_on=meta.occurred_at.date(),
                    helpers=helpers,
                    persons=[person, *others],
                    meta=meta,
                )
                touched.extend(others)
            touched.extend([pairing, *helpers])
        return touched

    def person_leaves_programme(
        self, person_id: UUID, reason: str, meta: CommandMeta, expected_version: int | None = None
    ) -> CommandResult:
        """The person leaves; each pairing drops them, or ends when it cannot keep its shape."""

        def change(person: Person) -> list[Aggregate]:
            touched = self._leave_pairings(person, "left the programme", meta)
            person.leave_programme(reason, meta)
            return touched

        return self._update(Person, person_id, expected_version, change)

    def erase_person(self, person_id: UUID, reason: str, meta: CommandMeta) -> CommandResult:
        """Erase a person's personal data: drop them from their pairings as leaving does, then
        ``Person.Erased``, whose insert destroys their keys in the same transaction. Erasing an
        erased person writes nothing."""

        def change(person: Person) -> list[Aggregate]:
            touched = [] if person.erased else self._leave_pairings(person, "was erased from the registry", meta)
            person.erase(reason, meta)
            return touched

        result = self._update(Person, person_id, None, change)
        self.store.erased(str(person_id))  # committed: this process sees it at once
        # The person in memory still holds what the erasure made unreadable: answer from the store.
        return replace(result, aggregate=None)

    def person_returns(self, person_id: UUID, meta: CommandMeta, expected_version: int | None = None) -> CommandResult:
        return self._update(Person, person_id, expected_version, lambda p: p.return_to_programme(meta))

    # ---- helpers and groups ----------------------------------------------------------------

    def register_helper(
        self,
        *,
        id: UUID,
        role: HelperRole,
        name: str,
        phone: str,
        org_unit_id: UUID,
        meta: CommandMeta,
        capacity: int | None = None,
    ) -> CommandResult:
        def build() -> tuple[Helper, list[Aggregate]]:
            unit = self.load(OrgUnit, org_unit_id, field="org_unit_id")
            helper = Helper.register(
                id=id,
                role=role,
                name=name,
                phone=phone,
                org_unit=unit,
                capacity=capacity if capacity is not None else self.helper_capacity,
                meta=meta,
            )
            return helper, []

        return self._create(Helper, id, build)

    def change_helper_capacity(
        self, helper_id: UUID, capacity: int, meta: CommandMeta, expected_version: int | None = None
    ) -> CommandResult:
        return self._update(Helper, helper_id, expected_version, lambda h: h.change_capacity(capacity, meta))

    def deactivate_helper(
        self, helper_id: UUID, reason: str, meta: CommandMeta, expected_version: int | None = None
    ) -> CommandResult:
        return self._update(Helper, helper_id, expected_version, lambda h: h.deactivate(reason, meta))

    def form_group(
        self, *, id: UUID, name: str, org_unit_id: UUID, member_ids: Sequence[UUID], meta: CommandMeta
    ) -> CommandResult:
        def build() -> tuple[VolunteerGroup, list[Aggregate]]:
            unit = self.load(OrgUnit, org_unit_id, field="org_unit_id")
            members = self._load_all(Helper, member_ids, "member_ids")
            group = VolunteerGroup.form(id=id, name=name, org_unit=unit, meta=meta)
            for n, helper in enumerate(members):
                try:
                    group.add_member(helper, meta)
                except DomainError as e:
                    e.field = f"member_ids[{n}]"
                    raise
            return group, list[Aggregate](members)

        return self._create(VolunteerGroup, id, build)

    def add_group_member(
        self, group_id: UUID, helper_id: UUID, meta: CommandMeta, expected_version: int | None = None
    ) -> CommandResult:
        def change(group: VolunteerGroup) -> list[Aggregate]:
            helper = self.load(Helper, helper_id, field="helper_id")
            group.add_member(helper, meta)
            return [helper]

        return self._update(VolunteerGroup, group_id, expected_version, change)

    def remove_group_member(
        self, group_id: UUID, helper_id: UUID, meta: CommandMeta, expected_version: int | None = None
    ) -> CommandResult:
        def change(group: VolunteerGroup) -> list[Aggregate]:
            helper = self.load(Helper, helper_id, field="helper_id")
            group.remove_member(helper, meta)
            return [helper]

        return self._update(VolunteerGroup, group_id, expected_version, change)

    def disband_group(
        self, group_id: UUID, reason: str, meta: CommandMeta, expected_version: int | None = None
    ) -> CommandResult:
        def change(group: VolunteerGroup) -> list[Aggregate]:
            members = [self.load(Helper, m) for m in group.member_ids]
            group.disband(reason, members, meta)
            return list[Aggregate](members)

        return self._update(VolunteerGroup, group_id, expected_version, change)

    # ---- pairings -----------------------------------------------------------------------------

    def form_pairing(
        self,
        *,
        id: UUID,
        shape: PairingShape,
        helper_ids: Sequence[UUID],
        person_ids: Sequence[UUID],
        cadence: Cadence,
        visit_mode: VisitMode,
        starts_on: date,
        meta: CommandMeta,
        group_id: UUID | None = None,
    ) -> CommandResult:
        def build() -> tuple[Pairing, list[Aggregate]]:
            helpers = self._load_all(Helper, helper_ids, "helper_ids")
            persons = self._load_all(Person, person_ids, "person_ids")
            group = self.load(VolunteerGroup, group_id, field="group_id") if group_id else None
            pairing = Pairing.form(
                id=id,
                shape=shape,
                helpers=helpers,
                persons=persons,
                cadence=cadence,
                visit_mode=visit_mode,
                starts_on=starts_on,
                group=group,
                meta=meta,
            )
            # The same helper or person listed twice was refused above, so each is saved once.
            return pairing, [*helpers, *persons]

        return self._create(Pairing, id, build)

    def _pairing_change(
        self, pairing_id: UUID, expected_version: int | None, change: Callable[[Pairing, list[Helper]], list[Aggregate]]
    ) -> CommandResult:
        def wrapped(pairing: Pairing) -> list[Aggregate]:
            helpers = [self.load(Helper, h) for h in pairing.helper_ids]
            return [*helpers, *change(pairing, helpers)]

        return self._update(Pairing, pairing_id, expected_version, wrapped)

    def add_pairing_person(
        self, pairing_id: UUID, person_id: UUID, meta: CommandMeta, expected_version: int | None = None
    ) -> CommandResult:
        def change(pairing: Pairing, helpers: list[Helper]) -> list[Aggregate]:
            person = self.load(Person, person_id, field="person_id")
            pairing.add_person(person, helpers, meta)
            return [person]

        return self._pairing_change(pairing_id, expected_version, change)

    def remove_pairing_person(
        self, pairing_id: UUID, person_id: UUID, reason: str, meta: CommandMeta, expected_version: int | None = None
    ) -> CommandResult:
        def change(pairing: Pairing, helpers: list[Helper]) -> list[Aggregate]:
            person = self.load(Person, person_id, field="person_id")
            pairing.remove_person(person, helpers, reason, meta)
            return [person]

        return self._pairing_change(pairing_id, expected_version, change)

    def add_pairing_helper(
        self, pairing_id: UUID, helper_id: UUID, meta: CommandMeta, expected_version: int | None = None
    ) -> CommandResult:
        def change(pairing: Pairing, helpers: list[Helper]) -> list[Aggregate]:
            helper = self.load(Helper, helper_id, field="helper_id")
            pairing.add_helper(helper, meta)
            return [helper]

        return self._pairing_change(pairing_id, expected_version, change)

    def remove_pairing_helper(
        self, pairing_id: UUID, helper_id: UUID, meta: CommandMeta, expected_version: int | None = None
    ) -> CommandResult:
        def change(pairing: Pairing, helpers: list[Helper]) -> list[Aggregate]:
            helper = next((h for h in helpers if h.id == helper_id), None) or self.load(
                Helper, helper_id, field="helper_id"
            )
            pairing.remove_helper(helper, meta)
            return [helper]

        return self._pairing_change(pairing_id, expected_version, change)

    def change_pairing_cadence(
        self,
        pairing_id: UUID,
        cadence: Cadence,
        visit_mode: VisitMode,
        meta: CommandMeta,
        expected_version: int | None = None,
    ) -> CommandResult:
        return self._update(
            Pairing, pairing_id, expected_version, lambda p: p.change_cadence(cadence, visit_mode, meta)
        )

    def end_pairing(
        self, pairing_id: UUID, reason: str, ends_on: date, meta: CommandMeta, expected_version: int | None = None
    ) -> CommandResult:
        def change(pairing: Pairing, helpers: list[Helper]) -> list[Aggregate]:
            persons = [self.load(Person, p) for p in pairing.person_ids]
            pairing.end(reason=reason, ends_on=ends_on, helpers=helpers, persons=persons, meta=meta)
            return list[Aggregate](persons)

        return self._pairing_change(pairing_id, expected_version, change)


def kind_of(aggregate: CareAggregate) -> str:
    return kind_name(type(aggregate))
