"""/supervision/{org_unit}: the supervision view of a village, township or county, and the lists
behind its figures (uncovered people, people overdue for a visit, emergencies past deadline).

``org_unit`` is an org unit id or its 12-digit division code. A reader sees their own unit and
the units beneath it; an administrator sees every unit (``api/access/rules.py``). Figures for rates
cover a period: ``period=week|month|half_year|year`` (the current one, China time) or
``from``/``to`` dates.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, get
from litestar.params import FromPath, QueryParameter

from api.access import Access, Kind, not_found, unit_id_of
from api.common import Limit, MinPosition, Offset, Page
from api.common import wait_for_views as views_at
from api.dependencies import Care, Checked, RecordAccess, Supervision, WaitForViews
from api.names import with_names
from api.problems import ProblemError
from application.care import CareApplication
from domain.vocabulary import ActorRole
from projections.supervision import CHINA
from projections.supervision_view import Period, SupervisionView

PeriodName = Annotated[
    str | None, QueryParameter(pattern="^(week|month|half_year|year)$", description="the current week, month, ...")
]
From = Annotated[date | None, QueryParameter(name="from", description="first day of a custom period (with to)")]
To = Annotated[date | None, QueryParameter(name="to", description="last day of a custom period, inclusive")]


class UnitRef(msgspec.Struct):
    id: UUID
    code: str
    name: str
    level: str


class PeriodOut(msgspec.Struct):
    name: str
    from_: date = msgspec.field(name="from")
    to: date


class Base(msgspec.Struct):
    people: int
    elders: int
    children: int
    by_risk_tag: dict[str, int]
    registered_in_period: int
    left_in_period: int


class Coverage(msgspec.Struct):
    people: int
    covered: int
    uncovered: int
    covered_rate: float | None
    overdue: int  # covered people not visited within their cadence
    with_cadence: int
    within_cadence_rate: float | None


class Guardianship(msgspec.Struct):
    children: int
    with_guardian: int
    agreements_signed: int
    signed_rate: float | None


class HelperLoad(msgspec.Struct):
    active: int
    with_people: int
    people_per_helper: float | None
    max_load: int
    at_capacity: int
    over_capacity: int


class Pairings(msgspec.Struct):
    active: int
    by_shape: dict[str, int]


class VisitCounts(msgspec.Struct):
    due: int
    on_time: int
    late: int  # done within the window, logged only after the task had been marked missed
    missed: int
    open: int
    cancelled: int


class Visits(VisitCounts):
    done_rate: float | None
    on_time_rate: float | None
    by_cadence: dict[str, VisitCounts]


class Emergencies(msgspec.Struct):
    reported: int
    by_category: dict[str, int]
    by_severity: dict[str, int]
    escalated: int
    resolved: int
    open_past_deadline: int
    acknowledge_median_s: float | None
    acknowledge_p90_s: float | None
    resolve_median_s: float | None
    resolve_p90_s: float | None


class UnitFigures(msgspec.Struct):
    id: UUID
    code: str
    name: str
    level: str
    elders: int
    children: int
    uncovered: int
    overdue: int
    agreements_signed: int
    signed_rate: float | None
    helpers: int


class SupervisionOut(msgspec.Struct):
    unit: UnitRef
    period: PeriodOut
    as_of: datetime
    base: Base
    coverage: Coverage
    guardianship: Guardianship
    helpers: HelperLoad
    pairings: Pairings
    visits: Visits
    emergencies: Emergencies
    units: list[UnitFigures]  # one level down: townships of a county, villages of a township
    position: int = 0


class UncoveredRow(msgspec.Struct):
    id: UUID
    name: str
    kind: str
    village_id: UUID
    village_code: str | None
    village_name: str | None
    risk_tags: list[str]
    registered_at: datetime


class OverdueRow(msgspec.Struct):
    id: UUID
    name: str
    kind: str
    village_id: UUID
    village_code: str | None
    village_name: str | None
    risk_tags: list[str]
    cadence_days: int
    last_visit_at: datetime | None
    due_at: datetime
    days_overdue: int


class PastDeadlineRow(msgspec.Struct):
    id: UUID
    person_id: UUID | None
    person_name: str | None
    township_code: str | None
    township_name: str | None
    category: str
    severity: str
    level: int
    reported_at: datetime
    deadline: datetime
    escalations: int
    minutes_past_deadline: int


def view_of(request: Request[Any, Any, Any]) -> SupervisionView:
    return SupervisionView(request.app.state.read_side.runner.pool)


def with_person_names(
    app: CareApplication,
    record_access: Callable[..., None],
    rows: list[dict[str, Any]],
    id_key: str = "id",
    name_key: str = "name",
) -> list[dict[str, Any]]:
    """The rows with the names of the persons they list: a name is personal data, so each person
    named gets a row in their access log, as a read of ``GET /persons`` does."""
    rows = with_names(app, rows, id_key, name_key)
    record_access(*(row[id_key] for row in rows if row.get(id_key) is not None))
    return rows


def reports_from_level(access: Access) -> int:
    """The lowest level of the reports a reader sees beneath a unit: a county responder's are
    those handed up to the county (their area); everyone else's, every level."""
    area = access.area() if access.actor.role in (ActorRole.TOWNSHIP_RESPONDER, ActorRole.COUNTY_RESPONDER) else None
    return area.min_level if area is not None else 0


def unit_id(org_unit: str) -> UUID:
    """The id of the unit named by id or code (400 when it is neither)."""
    found = unit_id_of(org_unit)
    if found is None:
        raise ProblemError(
            400,
            "validation-error",
            "Invalid request",
            "name the org unit by its id or its 12-digit division code",
            errors=[{"field": "org_unit", "reason": "neither an id nor a division code", "in": "path"}],
        )
    return found


def resolve_unit(view: SupervisionView, org_unit: str) -> dict[str, Any]:
    """The unit named by id or code (the access guard has checked the caller may see it)."""
    unit = view.unit(unit_id(org_unit))
    if unit is None:  # registered a moment ago and not yet in the views: as if unknown
        raise not_found(Kind.ORG_UNIT, org_unit)
    return unit


def period_of(name: str | None, first: date | None, last: date | None) -> Period:
    today = datetime.now(CHINA).date()
    if first is None and last is None:
        return Period.named(name or "month", today)
    if name is not None:
        raise ProblemError(
            400,
            "validation-error",
            "Invalid request",
            "give either period or from/to, not both",
            errors=[{"field": "period", "reason": "given with from/to", "in": "query"}],
        )
    try:
        return Period.between(first or last or today, last or today)
    except ValueError as e:
        raise ProblemError(
            400,
            "validation-error",
            "Invalid request",
            str(e),
            errors=[{"field": "to", "reason": str(e), "in": "query"}],
        ) from None


class SupervisionController(Controller):
    path = "/supervision"
    tags = ["supervision"]

    @get("/{org_unit:str}", sync_to_thread=True)
    def summary(
        self,
        request: Request[Any, Any, Any],
        org_unit: FromPath[str],
        period: PeriodName = None,
        from_: From = None,
        to: To = None,
        min_position: MinPosition = None,
    ) -> SupervisionOut:
        """The unit's figures, rolled up from everything beneath it; ``units`` breaks the basic
        figures down one level (the townships of a county, the villages of a township)."""
        # The view and the views' runner taken from the request, not given by name (as the
        # timeline's read: a provider's call and a signature's parse per value given).
        views = request.app.state.read_side
        supervision = SupervisionView(views.pool)
        span = period_of(period, from_, to)
        if min_position is not None:
            position = views_at(request, min_position)
            unit = resolve_unit(supervision, org_unit)
            figures = supervision.summary(unit["id"], span, unit=unit)
            return msgspec.convert({**figures, "position": position}, SupervisionOut)
        # Nothing to wait for: the unit, the figures and the views' position in one round trip.
        found = supervision.summary(unit_id(org_unit), span, views=[p.name for p in views.runner.projections])
        if found is None:  # registered a moment ago and not yet in the views: as if unknown
            raise not_found(Kind.ORG_UNIT, org_unit)
        return msgspec.convert(found, SupervisionOut)

    @get("/{org_unit:str}/uncovered", sync_to_thread=True)
    def uncovered(
        self,
        supervision: Supervision,
        care: Care,
        record_access: RecordAccess,
        wait_for_views: WaitForViews,
        org_unit: FromPath[str],
        limit: Limit = 50,
        offset: Offset = 0,
        min_position: MinPosition = None,
    ) -> Page[UncoveredRow]:
        """Active people under the unit whom no active pairing covers, longest registered first."""
        position = wait_for_views(min_position)
        rows, total = supervision.uncovered(resolve_unit(supervision, org_unit)["id"], limit=limit, offset=offset)
        items = msgspec.convert(with_person_names(care, record_access, rows), list[UncoveredRow])
        return Page(items, total, limit, offset, position)

    @get("/{org_unit:str}/overdue", sync_to_thread=True)
    def overdue(
        self,
        supervision: Supervision,
        care: Care,
        record_access: RecordAccess,
        wait_for_views: WaitForViews,
        org_unit: FromPath[str],
        limit: Limit = 50,
        offset: Offset = 0,
        min_position: MinPosition = None,
    ) -> Page[OverdueRow]:
        """Covered people not visited within their cadence (the strictest of their pairings),
        most overdue first."""
        position = wait_for_views(min_position)
        rows, total = supervision.overdue(resolve_unit(supervision, org_unit)["id"], limit=limit, offset=offset)
        items = msgspec.convert(with_person_names(care, record_access, rows), list[OverdueRow])
        return Page(items, total, limit, offset, position)

    @get("/{org_unit:str}/emergencies-past-deadline", sync_to_thread=True)
    def past_deadline(
        self,
        supervision: Supervision,
        care: Care,
        record_access: RecordAccess,
        access: Checked,
        wait_for_views: WaitForViews,
        org_unit: FromPath[str],
        limit: Limit = 50,
        offset: Offset = 0,
        min_position: MinPosition = None,
    ) -> Page[PastDeadlineRow]:
        """Emergency reports waiting for an acknowledgement past their deadline, longest first."""
        position = wait_for_views(min_position)
        unit_id = resolve_unit(supervision, org_unit)["id"]
        rows, total = supervision.emergencies_past_deadline(
            unit_id, limit=limit, offset=offset, min_level=reports_from_level(access)
        )
        rows = with_person_names(care, record_access, rows, id_key="person_id", name_key="person_name")
        return Page(msgspec.convert(rows, list[PastDeadlineRow]), total, limit, offset, position)
