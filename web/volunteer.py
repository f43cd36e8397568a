"""The volunteer's screens: my visits this week and next (claim, release, log a visit, even
offline), my people and their histories.

Page data comes from the views the API reads (visit tasks, registry, timelines) narrowed by the
access table's list scope for the signed-in person, exactly as ``GET /visits``, ``GET /persons``
and ``GET /persons/{id}/timeline`` narrow them. Changes (claim, release, visit logs) are sent
by ``static/js/visits.js`` to the JSON API itself, so the same rules decide them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from litestar import Request, get
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Template

from api.access import loaded, timeline_hides
from api.auth import Actor
from api.common import MinPosition, Offset
from api.dependencies import Caller, Care, RecordAccess, Registry, Views, Visible, WaitForViews
from api.names import with_names
from api.timeline import about_this_person
from api.visits import helper_id_of
from application.care import CareApplication
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
from domain.vocabulary import ActorRole, VisitMode
from projections.registry import RegistryView
from projections.scope import ListScope
from projections.timeline import TimelineView
from projections.visit_tasks import VisitTaskView
from web.frame import lang_of, local, page
from web.i18n import MESSAGES, translator

TIMELINE_PAGE = 30


def _horizon() -> tuple[datetime, datetime]:
    """This week's Monday and the Monday after next, midnight China time."""
    today = datetime.now(PROGRAMME_TZ).date()
    monday = today - timedelta(days=today.weekday())
    start = datetime.combine(monday, datetime.min.time(), PROGRAMME_TZ)
    return start, start + timedelta(days=14)


def _card(row: dict[str, Any], me: UUID | None, t: Any) -> dict[str, Any]:
    status = row["status"]
    claim_open = row["claim_expires_at"] is None or row["claim_expires_at"] <= datetime.now(UTC)
    # A claim of mine that lapsed is no longer held (the sweep frees it): it is claimable again.
    mine = status == "claimed" and me is not None and row["holder_id"] == me and not claim_open
    claimable = status == "scheduled" or (status == "claimed" and claim_open and not mine)
    now = datetime.now(UTC)
    opens_later = status == "scheduled" and row["opens_at"] > now
    lapsed = status == "claimed" and not mine and row["claim_expires_at"] is not None and claim_open
    label = "visits.status.mine" if mine else ("visits.status.lapsed" if lapsed else f"visits.status.{status}")
    tone = {"scheduled": "info", "claimed": "warn", "completed": "ok", "missed": "bad"}.get(status, "info")
    return {
        **row,
        "mine": mine,
        "claimable": me is not None and claimable and row["opens_at"] <= now < row["closes_at"],
        "opens_later": t("visits.opens_at", time=local(row["opens_at"])) if opens_later else "",
        "status_label": t(label) if not (status == "completed" and row.get("late")) else t("visits.status.late"),
        "tone": "ok" if mine else ("info" if lapsed else tone),
        "window": t(
            "visits.window",
            start=local(row["opens_at"], False),
            end=local(row["closes_at"] - timedelta(seconds=1), False),
        ),
        "held_until": ""
        if status != "claimed"
        else t("visits.claim_lapsed" if claim_open else "visits.held_until", time=local(row["claim_expires_at"])),
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


# The sections of my visits: what I hold, what I may claim now, what I may claim once its window
# opens; a coordinator (village cadre, child director, administrator) sees the area's unclaimed
# and claimed tasks instead. Each long section is shown a page at a time ("load more").
HELPER_SECTIONS = ("claimable", "upcoming")
AREA_SECTIONS = ("unclaimed", "claimed")
SECTION_PAGE = 10
Section = Annotated[str | None, QueryParameter(pattern="^(claimable|upcoming|unclaimed|claimed)$")]


def _section_rows(
    view: VisitTaskView, scope: ListScope, name: str, me: UUID | None, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of a section of my visits, nearest window first, and the section's total."""
    _, horizon = _horizon()
    if name == "claimable" and me is not None:
        return view.list_tasks(claimable_by=me, limit=SECTION_PAGE, offset=offset, scope=scope)
    if name == "upcoming" and me is not None:
        return view.upcoming_for(me, horizon, limit=SECTION_PAGE, offset=offset, scope=scope)
    if name in AREA_SECTIONS:
        status = "scheduled" if name == "unclaimed" else "claimed"
        return view.list_tasks(status=status, due_before=horizon.date(), limit=SECTION_PAGE, offset=offset, scope=scope)
    return [], 0


def _section(
    care: CareApplication, view: VisitTaskView, scope: ListScope, name: str, me: UUID | None, offset: int, t: Any
) -> dict[str, Any]:
    rows, total = _section_rows(view, scope, name, me, offset)
    with_names(care, rows, "person_id", "person_name")
    shown = offset + len(rows)
    return {
        "name": name,
        "tasks": [_card(r, me, t) for r in rows],
        "total": total,
        "next_offset": shown if shown < total else None,
        "left": total - shown,
        "page_size": SECTION_PAGE,
    }


def _my_people(care: CareApplication, registry: RegistryView, scope: ListScope, me: UUID) -> list[dict[str, Any]]:
    """The people of my active pairings (for an unplanned visit), by name."""
    pairings, _ = registry.list_pairings(helper_id=me, status="active", limit=200, scope=scope)
    people = [{"pairing_id": p["id"], "person_id": pid} for p in pairings for pid in p["person_ids"]]
    with_names(care, people, "person_id", "person_name")
    return sorted(people, key=lambda p: p["person_name"] or "")


@get("/visits", sync_to_thread=True)
def visits_page(
    request: Request[Any, Any, Any],
    care: Care,
    registry: Registry,
    views: Views,
    actor: Caller,
    visible: Visible,
    wait_for_views: WaitForViews,
    record_access: RecordAccess,
    min_position: MinPosition = None,
    section: Section = None,
    offset: Offset = 0,
) -> Template:
    """My visits: the ones I claimed first, then those I may claim now (nearest window first), then
    those I may claim once their window opens this week or next, each a page at a time; then what
    I did lately and my people. htmx asks for the list alone (``HX-Request``) to refresh it after a
    change, and for the next page of one section (``?section=claimable&offset=20``)."""
    t = translator(lang_of(request))
    # My own tasks and claims if I am a helper (a volunteer; a cadre or child director who is one
    # too), else the area's tasks.
    me = helper_id_of(actor)
    if me is not None and actor.role != ActorRole.VOLUNTEER and registry.get_helper(me) is None:
        me = None
    wait_for_views(min_position)
    view, scope = VisitTaskView(views.pool), visible
    if section is not None and request.headers.get("hx-request"):
        more = _section(care, view, scope, section, me, offset, t)
        record_access(*{task["person_id"] for task in more["tasks"]})
        return page(request, "visits_more.html", section=more)
    start, _ = _horizon()
    mine: list[dict[str, Any]] = []
    done_rows: list[dict[str, Any]] = []
    people: list[dict[str, Any]] = []
    if me is not None:
        held, _ = view.helper_tasks(me, status="claimed", limit=50, scope=scope)
        now = datetime.now(UTC)
        mine = sorted(
            (r for r in held if r["holder_id"] == me and r["claim_expires_at"] and r["claim_expires_at"] > now),
            key=lambda r: (r["closes_at"], str(r["id"])),
        )
        done_rows, _ = view.helper_tasks(me, status="completed", limit=10, scope=scope)
        done_rows = [r for r in done_rows if r["closes_at"] >= start - timedelta(days=7)]
        with_names(care, mine + done_rows, "person_id", "person_name")
        people = _my_people(care, registry, scope, me)
    names = HELPER_SECTIONS if me is not None else AREA_SECTIONS
    sections = [_section(care, view, scope, name, me, 0, t) for name in names]
    # One entry in the access log for everyone this page names.
    shown = [*mine, *done_rows, *people, *(task for s in sections for task in s["tasks"])]
    record_access(*{r["person_id"] for r in shown})
    context: dict[str, Any] = {
        "helper": me is not None,
        "mine": [_card(r, me, t) for r in mine],
        "sections": sections,
        "done_tasks": [_card(r, me, t) for r in done_rows],
        "people": people,
        "choices": form_choices(t),
        "me": str(me) if me else "",
    }
    if request.headers.get("hx-request"):
        return page(request, "visits_list.html", **context)
    return page(request, "visits.html", **context)


def _age_line(t: Any, birth: date) -> str:
    return t("people.born", year=birth.year)


PEOPLE_PAGE = 30


def my_people_ids(registry: RegistryView, actor: Actor) -> list[UUID] | None:
    """The people of my active pairings, as a helper or through one of my volunteer teams, if I
    am a helper (a volunteer; a cadre or child director who is one too); else None."""
    me = helper_id_of(actor)
    helper = registry.get_helper(me) if me is not None else None
    if helper is None:
        return [] if actor.role == ActorRole.VOLUNTEER else None
    return sorted({p for _, people in registry.own_pairings(helper["id"], helper["group_ids"]) for p in people})


@get("/people", sync_to_thread=True)
def people_page(
    request: Request[Any, Any, Any],
    care: Care,
    registry: Registry,
    actor: Caller,
    visible: Visible,
    wait_for_views: WaitForViews,
    record_access: RecordAccess,
    min_position: MinPosition = None,
    offset: Offset = 0,
) -> Template:
    """My people: a helper's are those of their own active pairings, even where they may read more
    (a village cadre may read the whole village); anyone else's, the people of their area they may
    read. From the registry view, a page at a time (htmx asks for the next page alone: ``?offset=30``)."""
    t = translator(lang_of(request))
    wait_for_views(min_position)
    mine = my_people_ids(registry, actor)
    rows, total = registry.list_persons(status="active", ids=mine, limit=PEOPLE_PAGE, offset=offset, scope=visible)
    with_names(care, rows)
    record_access(*(r["id"] for r in rows))
    people = [
        {**r, "kind_label": t(f"kind.{r['kind']}"), "born": _age_line(t, r["birth_date"]),
         "tags": [t(f"risk_tag.{tag}") for tag in r["risk_tags"]]}
        for r in rows
    ]  # fmt: skip
    shown = offset + len(rows)
    more = {"next_offset": shown if shown < total else None, "left": total - shown, "page_size": PEOPLE_PAGE}
    name = "people_more.html" if offset and request.headers.get("hx-request") else "people.html"
    return page(request, name, people=people, total=total, more=more, area=mine is None)


@get("/people/{person_id:uuid}", sync_to_thread=True)
def person_page(
    request: Request[Any, Any, Any],
    care: Care,
    views: Views,
    actor: Caller,
    record_access: RecordAccess,
    person_id: FromPath[UUID],
    cursor: FromQuery[int | None] = None,
) -> Template:
    """One person and their history as far as I may see it (the timeline's own rules: no other
    cared-for person named, emergency reports only to those who handle them)."""
    t = translator(lang_of(request))
    person = loaded(request, Person, person_id) or care.repository.get(person_id)
    timeline = TimelineView(views.pool).page(
        person_id, newest_first=True, hidden=timeline_hides(actor), cursor=cursor, limit=TIMELINE_PAGE
    )
    record_access(person_id)
    erased = person.erased or care.personal_data_erased(person_id)
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
