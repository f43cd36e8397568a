"""The volunteer's screens: my visits this week and next (claim, release, log a visit, even
offline), my people and their histories.

Page data comes from the views the API reads (visit tasks, registry, timelines) narrowed by the
access table's list scope for the signed-in person, exactly as ``GET /visits``, ``GET /persons``
and ``GET /persons/{id}/timeline`` narrow them. Changes (claim, release, visit logs) are sent
by ``static/js/visits.js`` to the JSON API itself, so the same rules decide them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

from litestar import Request, get
from litestar.params import FromPath, FromQuery
from litestar.response import Template

from api.access import list_scope, loaded, timeline_hides
from api.auth import actor_of
from api.common import MinPosition, app_of, record_access, wait_for_views
from api.names import with_names
from api.timeline import about_this_person
from api.visits import helper_id_of, task_view
from domain.person import Person
from domain.schedule import PROGRAMME_TZ
from domain.visit_log import (
    ITEM_CATEGORY,
    EmergencyKind,
    Health,
    LivingConditions,
    Mood,
    Need,
    SafetyRisk,
    ServiceCategory,
    ServiceItem,
)
from domain.vocabulary import VisitMode
from projections.timeline import TimelineView
from web.frame import lang_of, local, page
from web.i18n import MESSAGES, translator

OPEN_STATUSES = ("scheduled", "claimed")
TIMELINE_PAGE = 30


def _horizon() -> tuple[datetime, datetime]:
    """This week's Monday and the Monday after next, midnight China time."""
    today = datetime.now(PROGRAMME_TZ).date()
    monday = today - timedelta(days=today.weekday())
    start = datetime.combine(monday, datetime.min.time(), PROGRAMME_TZ)
    return start, start + timedelta(days=14)


def _card(row: dict[str, Any], me: UUID | None, t: Any) -> dict[str, Any]:
    status = row["status"]
    mine = status == "claimed" and me is not None and row["holder_id"] == me
    claim_open = row["claim_expires_at"] is None or row["claim_expires_at"] <= datetime.now(UTC)
    claimable = status == "scheduled" or (status == "claimed" and claim_open and not mine)
    label = "visits.status.mine" if mine else f"visits.status.{status}"
    tone = {"scheduled": "info", "claimed": "warn", "completed": "ok", "missed": "bad"}.get(status, "info")
    return {
        **row,
        "mine": mine,
        "claimable": claimable and row["closes_at"] > datetime.now(UTC),
        "status_label": t(label) if not (status == "completed" and row.get("late")) else t("visits.status.late"),
        "tone": "ok" if mine else tone,
        "window": t(
            "visits.window",
            start=local(row["opens_at"], False),
            end=local(row["closes_at"] - timedelta(seconds=1), False),
        ),
        "held_until": t("visits.held_until", time=local(row["claim_expires_at"])) if status == "claimed" else "",
        "visited": t("visits.completed_at", time=local(row["visited_at"])) if row.get("visited_at") else "",
        "cadence_label": t(f"cadence.{row['cadence']}"),
        "mode_label": t(f"mode.{row['mode']}"),
    }


def _choices(t: Any, prefix: str, values: Any) -> list[dict[str, str]]:
    return [{"value": v.value, "label": t(f"{prefix}.{v.value}")} for v in values]


def form_choices(t: Any) -> dict[str, list[dict[str, str]]]:
    """The visit log form's options: the domain's own vocabularies, labelled."""
    return {
        "modes": _choices(t, "mode", VisitMode),
        "living_conditions": _choices(t, "living_conditions", LivingConditions),
        "health": _choices(t, "health", Health),
        "mood": _choices(t, "mood", Mood),
        "safety_risks": _choices(t, "safety_risk", SafetyRisk),
        "needs": _choices(t, "need", Need),
        "services": _choices(t, "service", ServiceCategory),
        # Each item names its category, which the form ticks with it (the domain requires both).
        "service_items": [
            {**c, "category": ITEM_CATEGORY[ServiceItem(c["value"])].value} for c in _choices(t, "item", ServiceItem)
        ],
        "emergency_kinds": _choices(t, "emergency_kind", EmergencyKind),
    }


@get("/visits", sync_to_thread=True)
def visits_page(request: Request[Any, Any, Any], min_position: MinPosition = None) -> Template:
    """My visits this week and next: open ones first (in due order), then those I did lately.
    htmx asks for the list alone (``HX-Request``) to refresh it after a change."""
    t = translator(lang_of(request))
    me = helper_id_of(actor_of(request))
    wait_for_views(request, min_position)
    scope = list_scope(request)
    view = task_view(request)
    start, horizon = _horizon()
    open_rows: list[dict[str, Any]] = []
    for status in OPEN_STATUSES:
        rows, _ = view.list_tasks(status=status, scope=scope, limit=200)
        open_rows += [r for r in rows if r["opens_at"] < horizon]
    open_rows.sort(key=lambda r: (r["closes_at"], str(r["id"])))
    done_rows: list[dict[str, Any]] = []
    if me is not None:
        done_rows, _ = view.helper_tasks(me, status="completed", limit=10, scope=scope)
        done_rows = [r for r in done_rows if r["closes_at"] >= start - timedelta(days=7)]
    rows = open_rows + done_rows
    with_names(app_of(request), rows, "person_id", "person_name")
    record_access(request, *{r["person_id"] for r in rows})
    people: dict[tuple[UUID, UUID], dict[str, Any]] = {}
    for r in rows:
        people.setdefault((r["pairing_id"], r["person_id"]), {"pairing_id": r["pairing_id"], "person_id": r["person_id"],
                                                              "person_name": r["person_name"]})  # fmt: skip
    context = {
        "open_tasks": [_card(r, me, t) for r in open_rows],
        "done_tasks": [_card(r, me, t) for r in done_rows],
        "people": list(people.values()),
        "choices": form_choices(t),
        "me": str(me) if me else "",
    }
    if request.headers.get("hx-request"):
        return page(request, "visits_list.html", **context)
    return page(request, "visits.html", **context)


def _age_line(t: Any, birth: date) -> str:
    return t("people.born", year=birth.year)


@get("/people", sync_to_thread=True)
def people_page(request: Request[Any, Any, Any], min_position: MinPosition = None) -> Template:
    """The people I may see (a volunteer: those of my pairings), from the registry view."""
    t = translator(lang_of(request))
    wait_for_views(request, min_position)
    rows, total = request.app.state.view.list_persons(status="active", limit=200, scope=list_scope(request))
    with_names(app_of(request), rows)
    record_access(request, *(r["id"] for r in rows))
    people = [
        {**r, "kind_label": t(f"kind.{r['kind']}"), "born": _age_line(t, r["birth_date"]),
         "tags": [t(f"risk_tag.{tag}") for tag in r["risk_tags"]]}
        for r in rows
    ]  # fmt: skip
    return page(request, "people.html", people=people, total=total)


@get("/people/{person_id:uuid}", sync_to_thread=True)
def person_page(
    request: Request[Any, Any, Any], person_id: FromPath[UUID], cursor: FromQuery[int | None] = None
) -> Template:
    """One person and their history as far as I may see it (the timeline's own rules: no other
    cared-for person named, emergency reports only to those who handle them)."""
    t = translator(lang_of(request))
    person = loaded(request, Person, person_id) or app_of(request).repository.get(person_id)
    view = TimelineView(request.app.state.read_side.runner.pool)
    timeline = view.page(
        person_id, newest_first=True, hidden=timeline_hides(actor_of(request)), cursor=cursor, limit=TIMELINE_PAGE
    )
    record_access(request, person_id)
    erased = person.erased or app_of(request).personal_data_erased(person_id)
    entries = []
    for row in timeline.rows:
        summary = about_this_person(row["summary"], person_id)
        key = f"tl.{row['kind']}"
        late = row["occurred_at"] is not None and row["recorded_at"] - row["occurred_at"] > timedelta(hours=1)
        entries.append({
            "label": t(key) if key in MESSAGES else t("tl.other"),
            "when": local(row["occurred_at"] or row["recorded_at"]),
            "recorded": t("people.recorded_late", time=local(row["recorded_at"])) if late else "",
            "by": t(f"role.{row['actor_role']}") if row["actor_role"] else "",
            "detail": _detail(t, row["kind"], summary),
        })  # fmt: skip
    return page(
        request, "person.html",
        person={"id": person_id, "name": t("people.erased") if erased else person.name, "kind_label": t(f"kind.{person.kind}"),
                "born": _age_line(t, person.birth_date), "tags": [t(f"risk_tag.{tag}") for tag in person.risk_tags],
                "active": person.active},
        entries=entries, next_cursor=timeline.next_cursor, total=timeline.total,
    )  # fmt: skip


def _detail(t: Any, kind: str, summary: dict[str, Any]) -> str:
    """A short line from an entry's (personal-data-free) summary, where one helps."""
    if kind in ("person.risk_tag_added", "person.risk_tag_removed") and summary.get("tag"):
        return t(f"risk_tag.{summary['tag']}")
    if kind == "visit_log.recorded" and summary.get("mode"):
        return t(f"mode.{summary['mode']}")
    if kind == "pairing.cadence_changed" and summary.get("cadence"):
        return t(f"cadence.{summary['cadence']}")
    if kind == "pairing.formed" and summary.get("cadence"):
        return t(f"cadence.{summary['cadence']}")
    return ""


HANDLERS = [visits_page, people_page, person_page]
