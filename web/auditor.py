"""The auditor's pages (审计): choose a person, read their case history, look at the case as of
an instant on either time axis (what had happened by then; what the system knew then), see
whether the chain holds for the case (and, on request, for the whole log), and open the
printable export of ``GET /audit/streams/{id}/export``.

A case is the person's own record and every stream their timeline names (pairings, visit tasks,
visit logs, emergency reports). The as-of view replays each of them with ``Audit.state_as_of``,
the reads behind ``GET /audit/streams/{id}/state``; a visit logged offline counts on the
``occurred`` axis from when it happened and on the ``recorded`` axis only from when it arrived.
Each page that shows a person's data is written to their access log, as the API's reads are.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, get
from litestar.params import FromPath, QueryParameter
from litestar.response import Template

from api.access import loaded, timeline_hides
from api.auth import Actor
from api.dependencies import AuditTrail, Caller, Care, RecordAccess, Registry, Views, Visible
from api.names import with_names
from api.problems import ProblemError
from application.care import CareApplication
from domain.base import ERASED
from domain.person import Person
from infrastructure import verify
from infrastructure.audit import Audit
from projections.registry import RegistryView
from projections.scope import ListScope
from projections.supervision import CHINA
from projections.timeline import TimelineView
from web.frame import lang_of, page
from web.i18n import MESSAGES, translator
from web.supervisor import china_time

PAGE_SIZE = 50
PageNumber = Annotated[int, QueryParameter(name="page", ge=1, le=100_000)]
NameQuery = Annotated[str | None, QueryParameter(max_length=32, description="part of a name")]
# A name search compares the names of the people in scope in batches, up to a county's registry
# several times over; a wider scope is asked to narrow by unit instead.
SEARCH_BATCH = 2000
SEARCH_LIMIT = 20_000
# A date and time written year first (2026-12-03 18:04[:10], or with a T as a datetime-local field
# sends it), no offset; read as China time, where the work happens.
LocalInstant = Annotated[str | None, QueryParameter(pattern=r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d)?$")]
Axis = Annotated[str, QueryParameter(pattern="^(occurred|recorded)$")]
STREAM_TYPES = {
    "pairing": "Pairing",
    "visit_task": "VisitTask",
    "visit_log": "VisitLog",
    "emergency_report": "EmergencyReport",
}


def search_by_name(
    care: CareApplication, registry: RegistryView, visible: ListScope, wanted: str, offset: int
) -> tuple[list[dict[str, Any]], int, bool]:
    """(one page of the people in scope whose name contains ``wanted``, how many match, whether
    everyone in scope was compared). The views keep no names (they are sealed personal data), so
    the names of the people in scope are read from the store a batch at a time and compared here,
    up to ``SEARCH_LIMIT`` people."""
    needle = wanted.casefold()
    matches: list[dict[str, Any]] = []
    scanned = 0
    while scanned < SEARCH_LIMIT:
        batch, total = registry.list_persons(limit=SEARCH_BATCH, offset=scanned, scope=visible)
        names = care.names(r["id"] for r in batch)
        for row in batch:
            name = names.get(row["id"])
            if name and name != ERASED and needle in name.casefold():
                matches.append({**row, "name": name})
        scanned += len(batch)
        if scanned >= total or not batch:
            return matches[offset : offset + PAGE_SIZE], len(matches), True
    return matches[offset : offset + PAGE_SIZE], len(matches), False


def person_status(person: Person) -> str:
    return "erased" if person.erased else ("active" if person.active else "left")


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=CHINA)


def related_streams(timeline: list[dict[str, Any]]) -> list[tuple[UUID, str]]:
    """(id, type) of every other stream the timeline names, in the order they first appear."""
    seen: dict[UUID, str] = {}
    for entry in timeline:
        aggregate = entry["kind"].split(".", 1)[0]
        if aggregate in STREAM_TYPES and entry["aggregate_id"] not in seen:
            seen[entry["aggregate_id"]] = STREAM_TYPES[aggregate]
    return list(seen.items())


def chain_of(audit: Audit, stream_ids: list[UUID]) -> dict[str, Any]:
    """The chain check of each of the case's streams (as an export carries it), and the log's head."""
    checked, failures = 0, []
    with audit.app.recorder.datastore.get_connection() as conn:
        for stream_id in stream_ids:
            result = verify.verify_stream(conn, audit.key, stream_id, audit.events_table)
            checked += result.checked
            failures += [(stream_id, f) for f in result.failures]
        heads = verify.heads(conn, audit.key, audit.events_table)
    head = next((h for h in heads if h.log == "events"), None)
    return {"ok": not failures, "checked": checked, "failures": failures, "head": head}


def as_of_view(
    audit: Audit, person_id: UUID, streams: list[tuple[UUID, str]], at: datetime, axis: str
) -> dict[str, Any]:
    """The case at an instant on one axis: the person's record and which related records count."""
    person = audit.state_as_of(person_id, at, axis)
    rows: list[dict[str, Any]] = [{"id": person_id, "type": "Person", "state": person}]
    for stream_id, kind in streams:
        state = audit.state_as_of(stream_id, at, axis)
        rows.append({"id": stream_id, "type": kind, "state": state})
    return {
        "at": at,
        "axis": axis,
        "person": person,
        "rows": rows,
        "visit_logs": sum(1 for r in rows if r["type"] == "VisitLog" and r["state"].exists),
        "events": sum(r["state"].events_applied for r in rows),
    }


def case_context(
    care: CareApplication,
    audit: Audit,
    timelines: TimelineView,
    actor: Actor,
    record_access: Callable[..., None],
    person: Person | None,
    person_id: UUID,
    as_of: str | None,
    axis: str,
    lang: str,
) -> dict[str, Any]:
    """``person`` is the record the access guard loaded for this request, if it did."""
    person = person or care.repository.get(person_id)
    timeline = timelines.page(person_id, newest_first=False, hidden=timeline_hides(actor), limit=500)
    record_access(person_id)
    streams = related_streams(timeline.rows)
    chain = chain_of(audit, [person_id, *(s for s, _ in streams)])
    at = None
    if as_of:
        try:
            at = instant(as_of)
        except ValueError:
            raise ProblemError(
                400, "validation-error", "Invalid request", "as_of is not a date and time",
                errors=[{"field": "as_of", "reason": "not a date and time", "in": "query"}],
            ) from None  # fmt: skip
    default_at = (datetime.now(CHINA) - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
    return {
        "person": person,
        "person_state": person_status(person),
        "timeline": timeline.rows,
        "streams": streams,
        "chain": chain,
        "asof": as_of_view(audit, person_id, streams, at, axis) if at is not None else None,
        "as_of_value": (as_of or default_at).replace("T", " "),
        "as_of_example": default_at,
        "axis": axis,
        "china_time": china_time,
        "late_hours": late_hours,
        "kind_label": kind_label(lang),
    }


def kind_label(lang: str) -> Any:
    """A timeline entry's kind in words (the client's timeline labels)."""
    t = translator(lang)
    return lambda kind: t(f"tl.{kind}") if f"tl.{kind}" in MESSAGES else t("tl.other")


def late_hours(entry: dict[str, Any]) -> float | None:
    """Hours between occurring and being recorded, when a record came in an hour late or more."""
    occurred, recorded = entry.get("occurred_at"), entry.get("recorded_at")
    if occurred is None or recorded is None:
        return None
    hours = (recorded - occurred).total_seconds() / 3600
    return round(hours, 1) if hours >= 1 else None


class AuditPages(Controller):
    path = "/audit"

    @get("/", sync_to_thread=True)
    def people(
        self,
        request: Request[Any, Any, Any],
        care: Care,
        registry: Registry,
        visible: Visible,
        record_access: RecordAccess,
        page_no: PageNumber = 1,
        q: NameQuery = None,
    ) -> Template:
        """The people whose cases this auditor may open (their unit's subtree), by registration;
        with ``q``, those whose name contains it. Only the people a page shows are in the access
        log, as for ``GET /persons``: the names compared to find them are not shown."""
        wanted = (q or "").strip()
        offset = (page_no - 1) * PAGE_SIZE
        if wanted:
            rows, total, scanned_all = search_by_name(care, registry, visible, wanted, offset)
        else:
            rows, total = registry.list_persons(limit=PAGE_SIZE, offset=offset, scope=visible)
            rows, scanned_all = with_names(care, rows), True
        record_access(*(r["id"] for r in rows))
        pages = max(1, -(-total // PAGE_SIZE))
        return page(
            request, "auditor/people.html", rows=rows, total=total, page_no=page_no, pages=pages, q=wanted,
            scanned_all=scanned_all, search_limit=SEARCH_LIMIT,
        )  # fmt: skip

    @get("/persons/{person_id:uuid}", sync_to_thread=True)
    def case(
        self,
        request: Request[Any, Any, Any],
        care: Care,
        audit: AuditTrail,
        views: Views,
        actor: Caller,
        record_access: RecordAccess,
        person_id: FromPath[UUID],
        as_of: LocalInstant = None,
        axis: Axis = "occurred",
    ) -> Template:
        """A person's case history, its chain check, and the case as of an instant on one axis."""
        context = case_context(
            care, audit, TimelineView(views.pool), actor, record_access, loaded(request, Person, person_id),
            person_id, as_of, axis, lang_of(request),
        )  # fmt: skip
        return page(request, "auditor/case.html", **context)

    @get("/verify", sync_to_thread=True)
    def verify_all(self, request: Request[Any, Any, Any], audit: AuditTrail) -> Template:
        """The whole log's chain, walked once (an htmx request gets the result alone)."""
        result = audit.verify()
        if request.headers.get("HX-Request") == "true":
            return page(request, "auditor/_verify.html", result=result)
        return page(request, "auditor/verify.html", result=result)
