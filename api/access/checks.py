"""What one caller may reach, worked out for one request (``Access``), and the answers a refusal
gives. Objects are read from the event store; what it cannot say (a volunteer's pairings, the
persons of a responder's area, an import job's unit) the views say."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic
from litestar.exceptions import PermissionDeniedException

from api.access.rules import CR, READS, REPORT_READ, Kind, Ref, Rule, Scope, V
from api.auth import Actor
from api.problems import ProblemError
from application.care import AlreadyExistsError, CareApplication, NotFoundError, UnknownReferenceError
from domain.account import Account
from domain.emergency import EmergencyReport
from domain.group import VolunteerGroup
from domain.helper import Helper
from domain.org_unit import OrgUnit, org_unit_id
from domain.pairing import Pairing
from domain.person import Person
from domain.visit_log import VisitLog
from domain.visit_task import HelperClaims, VisitTask
from infrastructure.import_jobs import ImportJobs
from projections.emergency_queue import EmergencyQueueView
from projections.registry import RegistryView
from projections.scope import EVERYTHING, NOTHING, Area, ListScope, Own

# The creation event of a kind whose reads may be checked inside the read (``Access.gate``).
FIRST_EVENTS: dict[Kind, type[Any]] = {Kind.PERSON: Person.Registered}

AGGREGATES: dict[Kind, type[Any]] = {
    Kind.ORG_UNIT: OrgUnit,
    Kind.PERSON: Person,
    Kind.HELPER: Helper,
    Kind.GROUP: VolunteerGroup,
    Kind.PAIRING: Pairing,
    Kind.VISIT_TASK: VisitTask,
    Kind.VISIT_LOG: VisitLog,
    Kind.EMERGENCY: EmergencyReport,
    Kind.ACCOUNT: Account,
}

# ---- answers --------------------------------------------------------------------------------


def not_found(kind: Kind, raw: Any) -> Exception:
    """What an unknown id in the path answers, word for word: an id out of scope answers the same."""
    if kind is Kind.STREAM:
        return ProblemError(404, "not-found", "Not found", f"no stream with id {raw}")
    if kind is Kind.ORG_UNIT and isinstance(raw, str) and not _is_uuid(raw):
        return ProblemError(404, "not-found", "Not found", f"no org unit with code {raw}", kind=str(kind))
    return NotFoundError(f"no {kind} with id {raw}", kind=str(kind), id=str(raw))


def unknown_reference(kind: Kind, value: UUID, field_name: str) -> Exception:
    return UnknownReferenceError(f"no {kind} with id {value}", field=field_name)


def already_exists(kind: Kind, value: UUID) -> Exception:
    """What a create under a taken id answers when the body differs: word for word the command's."""
    return AlreadyExistsError(f"a different {kind} already exists with id {value}", field="id", id=str(value))


def _is_uuid(value: str) -> bool:
    try:
        UUID(value)
    except ValueError:
        return False
    return True


_CODE = re.compile(r"^[0-9]{12}\Z")


def unit_id_of(raw: Any) -> UUID | None:
    """An org unit named by id or by 12-digit division code; None when it is neither."""
    if isinstance(raw, UUID):
        return raw
    text = str(raw)
    if _CODE.match(text):
        return org_unit_id(text)
    try:
        return UUID(text)
    except ValueError:
        return None


def _uuid(value: Any) -> UUID | None:
    """A body value as the handler would decode it; anything else is left to its validation."""
    if not isinstance(value, str):
        return None
    try:
        return msgspec.convert(value, UUID)
    except msgspec.ValidationError:
        return None


def _values(data: Any, name: str) -> list[tuple[str, Any]]:
    """(field as errors name it, value) for a top-level body field; one per element of a list."""
    if not isinstance(data, dict) or data.get(name) is None:
        return []
    value = data[name]
    if isinstance(value, list):
        return [(f"{name}[{n}]", v) for n, v in enumerate(value)]
    return [(name, value)]


# ---- one request's checks -------------------------------------------------------------------


@dataclass(frozen=True)
class AccessViews:
    """The views the checks ask what the event store does not say at once."""

    registry: RegistryView  # a volunteer's active pairings
    reports: EmergencyQueueView  # the persons of a responder's area
    imports: ImportJobs | None  # an import job's unit (None: the app runs no imports)


class Access:
    """What one caller may reach, worked out for one request; keeps what it loads."""

    def __init__(self, app: CareApplication, views: AccessViews, actor: Actor) -> None:
        self.app, self.views, self.actor = app, views, actor
        self.list_scope: ListScope | None = None
        self._first: dict[UUID, Any] = {}
        self._loaded: dict[UUID, Any] = {}
        self._imports: dict[UUID, list[UUID] | None] = {}
        self._me: Any = ...
        self._pending: Callable[[], None] | None = None
        self._read: tuple[frozenset[Scope], Kind, UUID] | None = None  # a check left to a read (``gate``)

    # -- a check left to the handler's thread --

    def defer(self, check: Callable[[], None]) -> None:
        """Leave the request's check to the handler's own worker thread (``settle``), so that a
        write crosses to a thread once, not once for the check and again for the handler."""
        self._pending = check

    def settle(self) -> None:
        """Run the check the guard left here, before the handler does anything with the request.
        A refused check stays pending, so every later call refuses again."""
        if self._pending is not None:
            self._pending()
            self._pending = None
            self._read = None

    def defer_to_read(self, check: Callable[[], None], scopes: frozenset[Scope], kind: Kind, target: UUID) -> None:
        """Leave a read's check (``Rule.checked_with_read``) to its handler, which asks ``gate``
        for a condition to put in its own statement instead of a round trip for the check."""
        self.defer(check)
        self._read = (scopes, kind, target)

    def gate(self, target: UUID) -> Any:
        """For the check left to a read of ``target``: an SQL condition (``Composable``) that
        holds only where the check allows, from the target's first event in the store, for the
        handler to put in its read and in the access log's insert, in the same round trip. The
        handler then calls ``gate_held`` when the statement shows the condition held (rows came
        back, or the access log's row was written), else ``settle``: the check as the guard
        makes it (a refusal answers as an unknown id), and reads again without the gate.

        None when no such condition decides it (a volunteer's pairings, a responder's area, a
        store without SQL): then the check is made here, now, before anything is read.

        The condition is the check's own rule over the first event: the object exists and is of
        the kind (the first event's topic is the kind's creation), and for scope ``subtree``
        the caller's unit is on its ``org_path`` (a person's never changes after registration;
        ``tests/integration/test_timeline_gate.py`` compares the two)."""
        read = self._read
        if self._pending is None or read is None or read[2] != target:
            self.settle()
            return None
        scopes, kind, _ = read
        condition = None
        creation = FIRST_EVENTS.get(kind)
        if creation is not None:
            topic = get_topic(creation)
            if Scope.ALL in scopes or Scope.ANY in scopes:
                condition = self.app.store.first_event_condition(target, topic)
            elif Scope.SUBTREE in scopes and self.actor.org_unit_id is not None:
                path = self.app.mapper.transcoder.encode({"org_path": [self.actor.org_unit_id]})
                condition = self.app.store.first_event_condition(target, topic, path)
        if condition is None:
            self.settle()
        return condition

    def gate_held(self) -> None:
        """The read's statement showed the condition ``gate`` gave held: the check allows."""
        if self._read is None:
            raise RuntimeError("no check was left to a read")
        self._pending = None
        self._read = None

    # -- loading --

    def first(self, aggregate_id: UUID) -> Any:
        """The stream's first event (None: no such stream)."""
        if aggregate_id not in self._first:
            self._first[aggregate_id] = next(iter(self.app.events.get(aggregate_id, limit=1)), None)
        return self._first[aggregate_id]

    def hold(self, aggregates: Mapping[UUID, Any]) -> None:
        """Aggregates the request has read already (a batch's logs, tasks and pairings; None:
        nothing is stored under that id), used as the ones ``preload`` and ``aggregate`` would
        load: the checks read no first event of an id held."""
        self._loaded.update(aggregates)

    def preload(self, ids: Iterable[UUID]) -> None:
        """Load many aggregates now, from one read of all their events: what a write names (its
        target, the objects of its body, the id it creates). The checks read them instead of
        their first events, and the command is handed them (``aggregates``) instead of loading
        them again."""
        wanted = [i for i in dict.fromkeys(ids) if i not in self._loaded]
        if not wanted:
            return
        found = self.app.load_many(Aggregate, wanted)
        self._loaded.update({i: found.get(i) for i in wanted})

    def aggregates(self) -> list[Any]:
        """Every aggregate this request loaded (for the command: what it need not read again)."""
        self.settle()
        return [a for a in self._loaded.values() if a is not None]

    def exists(self, aggregate_id: UUID) -> bool:
        if aggregate_id in self._loaded:
            return self._loaded[aggregate_id] is not None
        return self.first(aggregate_id) is not None

    def aggregate(self, aggregate_id: UUID) -> Any:
        """The aggregate now (None: no such stream)."""
        if aggregate_id not in self._loaded:
            try:
                self._loaded[aggregate_id] = self.app.repository.get(aggregate_id)
            except AggregateNotFoundError:
                self._loaded[aggregate_id] = None
        return self._loaded[aggregate_id]

    def loaded(self, cls: type[Any], aggregate_id: UUID) -> Any:
        self.settle()
        agg = self._loaded.get(aggregate_id)
        return agg if isinstance(agg, cls) else None

    def facts(self, aggregate_id: UUID) -> Any:
        """The aggregate when this request loaded it, else its first event: both carry the
        fields a check reads (org path, pairing, helpers) under the same names."""
        agg = self._loaded.get(aggregate_id)
        return agg if agg is not None else self.first(aggregate_id)

    def reporter(self, report_id: UUID) -> str:
        agg = self._loaded.get(report_id)
        return agg.reporter_id if agg is not None else self.first(report_id).actor_id

    def import_path(self, job_id: UUID) -> list[UUID] | None:
        """An import job's unit's org path (None: no such job)."""
        if job_id not in self._imports:
            imports = self.views.imports
            self._imports[job_id] = None if imports is None else imports.org_path(job_id)
        return self._imports[job_id]

    def is_a(self, kind: Kind, aggregate_id: UUID) -> bool:
        if kind is Kind.IMPORT:
            return self.import_path(aggregate_id) is not None
        if kind is Kind.STREAM:
            return self.first(aggregate_id) is not None
        cls = AGGREGATES[kind]
        if aggregate_id in self._loaded:
            return isinstance(self._loaded[aggregate_id], cls)
        first = self.first(aggregate_id)
        return first is not None and type(first).__qualname__.partition(".")[0] == cls.__name__

    def org_path(self, kind: Kind, aggregate_id: UUID) -> list[UUID]:
        if kind is Kind.IMPORT:
            return self.import_path(aggregate_id) or []
        source = self.facts(aggregate_id)
        if source is None:
            return []
        if isinstance(source, (OrgUnit, OrgUnit.Registered)):
            return list(source.path)
        if kind is Kind.ACCOUNT:
            agg = self.aggregate(aggregate_id)  # a role change moves an account: never its first event's
            return list(agg.org_path) if isinstance(agg, Account) else []
        if isinstance(source, (HelperClaims, HelperClaims.Opened)):
            return self.org_path(Kind.HELPER, source.helper_id)  # a claim book is its helper's
        return list(getattr(source, "org_path", None) or [])

    # -- scopes --

    def allows(self, scopes: frozenset[Scope], kind: Kind, aggregate_id: UUID) -> bool:
        """Whether the object exists, is of this kind, and lies in one of these scopes."""
        if not self.is_a(kind, aggregate_id):
            return False
        if Scope.ALL in scopes or Scope.ANY in scopes:
            return True
        if Scope.SUBTREE in scopes and self.actor.org_unit_id in self.org_path(kind, aggregate_id):
            return True
        if Scope.REPORTER in scopes and kind is Kind.EMERGENCY and self.reporter(aggregate_id) == self.actor.subject:
            return True
        if Scope.AREA in scopes and self.in_area(kind, aggregate_id):
            return True
        return Scope.OWN in scopes and self.owns(kind, aggregate_id)

    def area(self) -> Area | None:
        """A responder's area: under their unit; for a county responder, from the county level up."""
        if self.actor.org_unit_id is None:
            return None
        return Area(self.actor.org_unit_id, 1 if self.actor.role == CR else 0)

    def in_area(self, kind: Kind, aggregate_id: UUID) -> bool:
        area = self.area()
        if area is None:
            return False
        if kind is Kind.EMERGENCY:
            if area.unit not in self.org_path(kind, aggregate_id):
                return False
            return area.min_level == 0 or self.aggregate(aggregate_id).level >= area.min_level
        if kind is Kind.PERSON:
            return self.views.reports.reported_in_area(aggregate_id, area)
        return False

    def me(self) -> Helper | None:
        """The volunteer's helper record (a volunteer token whose sub is no helper id owns nothing)."""
        if self._me is ...:
            self._me = None
            if self.actor.role == V:
                try:
                    helper_id = UUID(self.actor.subject)
                except ValueError:
                    helper_id = None
                agg = self.aggregate(helper_id) if helper_id is not None else None
                self._me = agg if isinstance(agg, Helper) else None
        return self._me

    def own_pairing(self, pairing_id: UUID) -> bool:
        me = self.me()
        pairing = self.aggregate(pairing_id)
        if me is None or not isinstance(pairing, Pairing) or pairing.ended:
            return False
        return me.id in pairing.helper_ids or (pairing.group_id is not None and pairing.group_id in me.group_ids)

    def owns(self, kind: Kind, aggregate_id: UUID) -> bool:
        me = self.me()
        if me is None:
            return False
        if kind is Kind.HELPER:
            return aggregate_id == me.id
        if kind is Kind.GROUP:
            return aggregate_id in me.group_ids
        if kind is Kind.PAIRING:
            return self.own_pairing(aggregate_id)
        if kind is Kind.PERSON:
            return any(self.own_pairing(p) for p in self.aggregate(aggregate_id).pairing_ids)
        if kind is Kind.VISIT_TASK:
            return self.own_pairing(self.facts(aggregate_id).pairing_id)
        if kind is Kind.VISIT_LOG:
            log = self.facts(aggregate_id)
            return me.id in log.helper_ids or self.own_pairing(log.pairing_id)
        return False

    def own(self) -> Own | None:
        """A volunteer's own things as the views have them: active pairings with them as helper
        or through one of their groups, and the people in those pairings."""
        me = self.me()
        if me is None:
            return None
        pairings = self.views.registry.own_pairings(me.id, me.group_ids)
        persons = {p for _, ids in pairings for p in ids}
        return Own(me.id, tuple(p for p, _ in pairings), tuple(sorted(persons)), tuple(me.group_ids))

    def scope_of_lists(self, scopes: frozenset[Scope]) -> ListScope:
        if Scope.ALL in scopes or Scope.ANY in scopes:
            return EVERYTHING
        return ListScope(
            subtree=self.actor.org_unit_id if Scope.SUBTREE in scopes else None,
            own=self.own() if Scope.OWN in scopes else None,
            area=self.area() if Scope.AREA in scopes else None,
        )

    # -- the check of one request --

    def check(
        self,
        rule: Rule,
        scopes: frozenset[Scope],
        path_params: Mapping[str, Any],
        data: Any,
        query: Mapping[str, Any] | None = None,
    ) -> None:
        target: Any = None
        if rule.target is not None:
            raw = (query or {}).get(rule.target.param) if rule.target.in_query else path_params.get(rule.target.param)
            target = unit_id_of(raw) if rule.target.by_code else raw
            if not isinstance(target, UUID):
                return  # not an id at all: the handler's validation answers
        if rule.writes:
            self.preload(self.named(rule, target, data))  # one read for all, handed to the command
        if rule.target is not None:
            whole = rule.method == "GET" and rule.target.kind in AGGREGATES and not rule.target.in_query
            if whole and not rule.checked_with_read:
                self.aggregate(target)  # the read handler needs it whole: load it once, here
            if not self.allows(scopes, rule.target.kind, target):
                if rule.target.in_query:  # named in the request, not its path: as an unknown id in a body
                    raise unknown_reference(rule.target.kind, target, rule.target.param)
                raise not_found(rule.target.kind, raw)
        for ref in rule.refs:
            self.check_ref(ref, scopes, data)
        if rule.creates is not None:
            self.check_repeat(rule.creates, data)
        if rule.lists is not None:
            self.list_scope = self.scope_of_lists(scopes)
            if any(not self.filter_allows(f, scopes, (query or {}).get(f.field)) for f in rule.filters):
                self.list_scope = NOTHING  # as for an unknown id: no row matches

    def named(self, rule: Rule, target: Any, data: Any) -> list[UUID]:
        """The aggregates a write names: its target, the objects of its body, the id it creates,
        and a volunteer's own helper record (whose pairings decide what they own)."""
        ids = [target] if isinstance(target, UUID) and rule.target and rule.target.kind in AGGREGATES else []
        for ref in rule.refs:
            if ref.kind in AGGREGATES:
                ids += [i for _, v in _values(data, ref.field) if (i := _uuid(v)) is not None]
        if rule.creates is not None and isinstance(data, dict) and (new_id := _uuid(data.get("id"))) is not None:
            ids.append(new_id)
        if self.actor.role == V and self._me is ...:
            ids += [i for i in (_uuid(self.actor.subject),) if i is not None]
        return ids

    def filter_allows(self, ref: Ref, scopes: frozenset[Scope], value: Any) -> bool:
        """Whether a list filter names something in scope (absent or not an id: the handler's)."""
        filter_id = _uuid(value)
        if filter_id is None:
            return True
        if ref.kind is Kind.ORG_UNIT and Scope.SUBTREE not in scopes:
            # The tree is public: a volunteer's or responder's list is narrowed by what they own
            # or their area, and a unit filter only narrows it further.
            return True
        return self.allows(scopes, ref.kind, filter_id)

    def check_repeat(self, kind: Kind, data: Any) -> None:
        """A create under an id that is taken answers the existing object when the body is the
        same again (an offline device's retry): only to a caller who may read that object. Anyone
        else gets what a different body gets, so the answer cannot confirm what the object holds."""
        new_id = _uuid(data.get("id")) if isinstance(data, dict) else None
        if new_id is None or not self.exists(new_id):
            return
        if not self.allows(READS[kind].get(self.actor.role, frozenset()), kind, new_id):
            raise already_exists(kind, new_id)

    def check_ref(self, ref: Ref, scopes: frozenset[Scope], data: Any) -> None:
        ref_scopes = scopes if ref.scope is None else ref.scope.get(self.actor.role, frozenset())
        values = _values(data, ref.field)
        if ref.required and not values and Scope.ALL not in scopes and isinstance(data, dict):
            raise PermissionDeniedException(f"a {self.actor.role.value} names {ref.field} within their own area")
        for name, value in values:
            ref_id = _uuid(value)
            if ref_id is not None and not self.allows(ref_scopes, ref.kind, ref_id):
                raise unknown_reference(ref.kind, ref_id, name)


def timeline_hides(actor: Actor) -> tuple[str, ...]:
    """The aggregates whose entries a person's timeline leaves out for this reader: emergency
    reports for a role that reads reports as their reporter only (a village cadre, a child
    director, a volunteer). A report about abuse or neglect of a child is for those who handle
    it; the timeline must not hand it to everyone who may read the child's record."""
    scopes = REPORT_READ.get(actor.role, frozenset())
    return () if scopes - {Scope.REPORTER} else ("emergency_report",)
