"""The responder's console: the open emergency reports of my area, oldest first, with the
acknowledgement deadline each waits on; live alerts (``static/js/console.js`` follows
``GET /emergencies/stream`` and reads this page's list again on each alert and after a lost
connection); acknowledge, hand over (escalate) and resolve through the JSON API.

The list is the queue view that ``GET /emergencies`` reads, narrowed by the same list scope (a
township responder: their township's reports; a county responder: those handed up to the county).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import Request, get
from litestar.response import Template

from api.common import MinPosition
from api.dependencies import Caller, Care, RecordAccess, Views, Visible, WaitForViews
from api.emergencies import queue_row
from application.care import CareApplication
from domain.emergency import EmergencyReport, Outcome, Severity
from domain.vocabulary import ActorRole
from projections.emergency_queue import OPEN, EmergencyQueueView
from web.frame import lang_of, local, page
from web.i18n import translator

R = ActorRole
# Who acts on reports (the access table's RESPOND grant); others (auditors) only watch.
ACTS = (R.ADMINISTRATOR, R.COUNTY_SUPERVISOR, R.TOWNSHIP_SUPERVISOR, R.TOWNSHIP_RESPONDER, R.COUNTY_RESPONDER)
SEVERITY_TONE = {Severity.CRITICAL.value: "bad", Severity.HIGH.value: "warn", Severity.NORMAL.value: "info"}
QUEUE_LIMIT = 100


def _card(care: CareApplication, row: dict[str, Any], now: datetime, t: Any) -> dict[str, Any]:
    out = queue_row(row, now)
    report = care.load(EmergencyReport, out.id)  # description and place: sealed, so read from the store
    erased = care.personal_data_erased(out.id)
    place = (report.location or {}).get("address", "") if report.location else ""
    return {
        "id": str(out.id),
        "category": t(f"category.{out.category}"),
        "severity": t(f"severity.{out.severity}"),
        "severity_tone": SEVERITY_TONE.get(out.severity, "info"),
        "status": out.status,
        "status_label": t(f"report_status.{out.status}"),
        "level_label": t(f"level.{out.level_name}"),
        "reported": local(out.reported_at),
        "reported_at": out.reported_at.isoformat(),
        "deadline": out.deadline.isoformat() if out.deadline else "",
        "overdue": out.overdue,
        "acknowledged": out.acknowledged_by is not None,
        "person_id": str(out.person_id) if out.person_id else "",
        "description": t("people.erased") if erased else report.description,
        "place": place,
        "escalations": out.escalations,
        "version": out.version,
    }


@get("/console", sync_to_thread=True)
def console_page(
    request: Request[Any, Any, Any],
    care: Care,
    views: Views,
    actor: Caller,
    visible: Visible,
    wait_for_views: WaitForViews,
    record_access: RecordAccess,
    min_position: MinPosition = None,
) -> Template:
    """The open reports of my area; htmx asks for the list alone (``HX-Request``)."""
    t = translator(lang_of(request))
    position = wait_for_views(min_position)
    rows, total = EmergencyQueueView(views.pool).list(statuses=OPEN, limit=QUEUE_LIMIT, scope=visible)
    now = datetime.now(UTC)
    person_ids = [r["person_id"] for r in rows if r["person_id"] is not None]
    names = care.names(person_ids)
    record_access(*person_ids)  # the list names them and tells of their situation
    cards = []
    for row in rows:
        card = _card(care, row, now, t)
        card["person_name"] = names.get(row["person_id"]) if row["person_id"] else ""
        cards.append(card)
    context = {
        "reports": cards,
        "total": total,
        "position": position,
        "acts": actor.role in ACTS,
        "outcomes": [{"value": o.value, "label": t(f"outcome.{o.value}")} for o in Outcome if o != Outcome.DUPLICATE],
    }
    if request.headers.get("hx-request"):
        return page(request, "console_list.html", **context)
    return page(request, "console.html", **context)


HANDLERS = [console_page]
