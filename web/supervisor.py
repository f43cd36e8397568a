"""The supervisor's pages (督导): the supervision view of a village, township or county with its
charts, drill-down one level at a time down to a person, and the uncovered and overdue lists with
their CSV export.

Every figure comes from the same view and queries as ``GET /supervision/{org_unit}``
(``SupervisionView.summary``), and the charts' series from ``SupervisionSeries`` over the same
tables. The access guard checks each page against its rule in ``api/access/rules.py`` (the same grants
as the API route it shows), so a unit outside the reader's subtree is the not-found page.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, get
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from api.access import AUDIT_READ, PERSON_READ, SUPERVISION_PEOPLE, Access, Kind, not_found
from api.auth import Actor
from api.dependencies import Caller, Care, Checked, RecordAccess, Registry, Supervision, Views
from api.names import with_names
from api.supervision import period_of, resolve_unit, with_person_names
from application.care import CareApplication
from domain.vocabulary import RISK_TAG_LABELS, RiskTag
from projections.registry import RegistryView
from projections.supervision import CHINA
from projections.supervision_series import SupervisionSeries, weeks_up_to
from projections.supervision_view import SupervisionView
from web import charts
from web.frame import lang_of, page
from web.i18n import translator

PERIODS = ("week", "month", "half_year", "year")
PeriodName = Annotated[str, QueryParameter(pattern="^(week|month|half_year|year)$")]
PageNumber = Annotated[int, QueryParameter(name="page", ge=1, le=100_000)]
PAGE_SIZE = 50
CHILD_LEVEL = {"county": "township", "township": "village"}


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def minutes(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds / 60:.1f}"


def china_time(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")


def tag_labels(tags: list[str], lang: str) -> str:
    if lang != "zh":
        return ", ".join(t.replace("_", " ") for t in tags)
    return "、".join(RISK_TAG_LABELS.get(RiskTag(t), t) if t in RiskTag.__members__.values() else t for t in tags)


def breadcrumbs(actor: Actor, view: SupervisionView, unit: dict[str, Any]) -> list[dict[str, Any]]:
    """The units from the reader's own unit (an administrator: the county) down to this one."""
    path = list(unit["org_path"])
    start = path.index(actor.org_unit_id) if actor.org_unit_id in path else 0
    crumbs = []
    for unit_id in path[start:]:
        row = view.unit(unit_id)
        if row is not None:
            crumbs.append(row)
    return crumbs


def person_href(actor: Actor) -> str:
    """Where a person's name leads: an auditor's to the case history, everyone else's to the person."""
    return "/app/audit/persons/" if AUDIT_READ.get(actor.role) else "/app/people/"


def may_list_people(actor: Actor) -> bool:
    """Whether the reader may open the lists that name people (responders may not)."""
    return bool(SUPERVISION_PEOPLE.get(actor.role))


VILLAGE_PEOPLE_SHOWN = 200


def village_people(
    care: CareApplication,
    registry: RegistryView,
    access: Access,
    record_access: Callable[..., None],
    unit: dict[str, Any],
    lang: str,
) -> dict[str, Any]:
    """A village's people, the last step of the drill-down: the registry's list in the reader's
    scope for reading persons (as ``GET /persons?org_unit_id=``), names recorded as read."""
    scope = access.scope_of_lists(PERSON_READ.get(access.actor.role, frozenset()))
    rows, total = registry.list_persons(
        org_unit_id=unit["id"], status="active", limit=VILLAGE_PEOPLE_SHOWN, scope=scope
    )
    rows = with_names(care, rows)
    record_access(*(r["id"] for r in rows))
    for row in rows:
        row["tags"] = tag_labels(row["risk_tags"], lang)
    return {"rows": rows, "total": total}


def summary_context(
    care: CareApplication,
    registry: RegistryView,
    supervision: SupervisionView,
    access: Access,
    record_access: Callable[..., None],
    lang: str,
    org_unit: str,
    period: str,
) -> dict[str, Any]:
    """What the supervision page shows of a unit: the API's summary, the charts, drill-down links."""
    w = translator(lang)
    actor = access.actor
    unit = resolve_unit(supervision, org_unit)
    span = period_of(period, None, None)
    figures = supervision.summary(unit["id"], span)
    if figures is None:  # the unit left the views between two reads: as if unknown
        raise not_found(Kind.ORG_UNIT, org_unit)
    series = SupervisionSeries(supervision.pool)
    weeks = series.visits_by_week(unit["id"], weeks_up_to(datetime.now(CHINA).date(), 8))
    week_labels = [f"{row['week']:%m-%d}" for row in weeks]
    outcome_series = [
        (w("sv.on_time"), charts.ON_TIME, "on_time"),
        (w("sv.late"), charts.LATE, "late"),
        (w("sv.missed"), charts.MISSED, "missed"),
        (w("sv.open"), charts.OPEN, "open"),
    ]
    figure_list = [
        charts.stacked_columns(
            w("sv.chart.weeks"), w("sv.week_of"), week_labels,
            [charts.Series(label, colour, [row[key] for row in weeks]) for label, colour, key in outcome_series],
            data_label="visits-by-week",
        )
    ]  # fmt: skip
    below = figures["units"]
    if below:
        names = [u["name"] for u in below]
        by_unit = series.visits_by_unit(unit["id"], span)
        response = series.response_by_unit(unit["id"], span)
        figure_list += [
            charts.stacked_rows(
                w("sv.chart.coverage_by_unit"), w("sv.unit"), names,
                [charts.Series(w("sv.covered"), charts.ON_TIME, [u["elders"] + u["children"] - u["uncovered"] for u in below]),
                 charts.Series(w("sv.uncovered"), charts.MISSED, [u["uncovered"] for u in below])],
                data_label="coverage-by-unit",
            ),
            charts.stacked_rows(
                w("sv.chart.visits_by_unit"), w("sv.unit"), [r["name"] for r in by_unit],
                [charts.Series(label, colour, [r[key] for r in by_unit]) for label, colour, key in outcome_series],
                data_label="visits-by-unit",
            ),
            charts.stacked_rows(
                w("sv.chart.response_by_unit"), w("sv.unit"), [r["name"] for r in response],
                [charts.Series(w("sv.ack_median"), charts.BLUE,
                               [round((r["acknowledge_median_s"] or 0) / 60, 1) for r in response])],
                data_label="response-by-unit",
            ),
        ]  # fmt: skip
    return {
        "unit": unit,
        "crumbs": breadcrumbs(actor, supervision, unit),
        "person_href": person_href(actor),
        "people": village_people(care, registry, access, record_access, unit, lang)
        if unit["level"] == "village" and may_list_people(actor)
        else None,
        "period": span.name,
        "periods": PERIODS,
        "span": span,
        "f": figures,
        "charts": figure_list,
        "below_level": CHILD_LEVEL.get(unit["level"]),
        "lists": may_list_people(actor),
        "percent": percent,
        "minutes": minutes,
        "china_time": china_time,
    }


def list_context(
    care: CareApplication,
    view: SupervisionView,
    actor: Actor,
    record_access: Callable[..., None],
    lang: str,
    org_unit: str,
    which: str,
    page_no: int,
) -> dict[str, Any]:
    """One page of the uncovered or overdue list, with names (each read is in the access log)."""
    unit = resolve_unit(view, org_unit)
    query = view.uncovered if which == "uncovered" else view.overdue
    rows, total = query(unit["id"], limit=PAGE_SIZE, offset=(page_no - 1) * PAGE_SIZE)
    rows = with_person_names(care, record_access, rows)
    for row in rows:
        row["tags"] = tag_labels(row["risk_tags"], lang)
    return {
        "unit": unit,
        "crumbs": breadcrumbs(actor, view, unit),
        "which": which,
        "person_href": person_href(actor),
        "rows": rows,
        "total": total,
        "page_no": page_no,
        "pages": max(1, -(-total // PAGE_SIZE)),
        "china_time": china_time,
        "csv": f"/supervision/{unit['code']}/{which}.csv?lang={lang}",
    }


class SupervisionPages(Controller):
    path = "/supervision"

    @get("/", sync_to_thread=True)
    def home(self, actor: Caller, views: Views) -> Redirect:
        """The reader's own unit (an administrator's: the first county)."""
        unit_id: UUID | None = actor.org_unit_id
        if unit_id is None:
            counties = SupervisionSeries(views.pool).counties()
            if not counties:
                raise not_found(Kind.ORG_UNIT, "county")
            unit_id = counties[0]["id"]
        return Redirect(f"/app/supervision/{unit_id}", status_code=303)

    @get("/{org_unit:str}", sync_to_thread=True)
    def summary(
        self,
        request: Request[Any, Any, Any],
        care: Care,
        registry: Registry,
        supervision: Supervision,
        access: Checked,
        record_access: RecordAccess,
        org_unit: FromPath[str],
        period: PeriodName = "month",
    ) -> Template:
        """A unit's figures and charts, with the units one level down to drill into."""
        context = summary_context(
            care, registry, supervision, access, record_access, lang_of(request), org_unit, period
        )
        return page(request, "supervisor/summary.html", **context)

    @get("/{org_unit:str}/uncovered", sync_to_thread=True)
    def uncovered(
        self,
        request: Request[Any, Any, Any],
        care: Care,
        supervision: Supervision,
        actor: Caller,
        record_access: RecordAccess,
        org_unit: FromPath[str],
        page_no: PageNumber = 1,
    ) -> Template:
        context = list_context(
            care, supervision, actor, record_access, lang_of(request), org_unit, "uncovered", page_no
        )
        return page(request, "supervisor/list.html", **context)

    @get("/{org_unit:str}/overdue", sync_to_thread=True)
    def overdue(
        self,
        request: Request[Any, Any, Any],
        care: Care,
        supervision: Supervision,
        actor: Caller,
        record_access: RecordAccess,
        org_unit: FromPath[str],
        page_no: PageNumber = 1,
    ) -> Template:
        context = list_context(care, supervision, actor, record_access, lang_of(request), org_unit, "overdue", page_no)
        return page(request, "supervisor/list.html", **context)
