"""GET /persons/{id}/timeline: everything that happened to one elder or child, from the timeline
view; each entry names its kind, the actor and role, when it happened and when it was recorded.

A pairing's events are on the timeline of each person in it, and name the other people in it
too. Reading one person's timeline is no licence to learn who else is cared for, or where: the
answer keeps this person's id and counts the others (``other_persons``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, get
from litestar.params import FromPath, QueryParameter

from api.access import access_of, timeline_hides
from api.auth import actor_of
from api.common import Limit, MinPosition, access_fields, app_of, audit_of, record_access, wait_for_views
from api.problems import ProblemError
from domain.person import Person
from projections.timeline import RawTimelinePage, TimelineView

Order = Annotated[str, QueryParameter(pattern="^(newest|oldest)$", description="newest (default) or oldest first")]
Kinds = Annotated[
    list[Annotated[str, msgspec.Meta(pattern=r"^[a-z_]{1,40}(\.[a-z_]{1,60})?$")]] | None,
    QueryParameter(
        description="only these kinds: exact (pairing.formed) or a whole aggregate (pairing); repeat for several",
        max_items=20,
    ),
]
Cursor = Annotated[
    int | None, QueryParameter(ge=0, le=2**62, description="next_cursor of the previous page: continue after it")
]


class TimelineEntry(msgspec.Struct):
    position: int  # notification id: the order things were recorded in
    kind: str  # <aggregate>.<event>, e.g. person.risk_tag_added, pairing.formed, visit_log.recorded
    summary: dict[str, Any]  # the event's own fields, without personal data
    actor_id: str
    actor_role: str
    occurred_at: datetime | None  # when it happened in the world
    recorded_at: datetime  # when the system recorded it
    aggregate_id: UUID
    aggregate_version: int


class TimelineOut(msgspec.Struct):
    person_id: UUID
    items: list[TimelineEntry]
    total: int  # entries matching the kind filter
    limit: int
    order: str
    next_cursor: int | None  # pass as cursor for the next page; null on the last page
    position: int  # the views' position when read


def about_this_person(summary: dict[str, Any], person_id: UUID) -> dict[str, Any]:
    """An entry's summary with every other cared-for person's id left out."""
    me = str(person_id)
    out = dict(summary)
    ids = out.get("person_ids")
    if isinstance(ids, list):
        out["person_ids"] = [p for p in ids if str(p) == me]
        out["other_persons"] = len(ids) - len(out["person_ids"])
    if out.get("person_id") is not None and str(out["person_id"]) != me:
        out["person_id"] = None  # someone else joined or left a pairing this person is in
    return out


class _Ids(msgspec.Struct):
    person_id: Any = None
    person_ids: Any = None


_IDS = msgspec.json.Decoder(_Ids)


def summary_for(raw: bytes | str, person_id: UUID, me: str) -> dict[str, Any]:
    """``about_this_person`` of a summary as the view holds it (JSON text): decoded and encoded
    again only when it names another person or lists persons; otherwise passed on as it is
    (``msgspec.Raw``, encoded as the same JSON object)."""
    if ('"person_id' if type(raw) is str else b'"person_id') in raw:
        ids = _IDS.decode(raw)
        if isinstance(ids.person_ids, list) or (ids.person_id is not None and str(ids.person_id) != me):
            return about_this_person(msgspec.json.decode(raw), person_id)
    return msgspec.Raw(raw)  # type: ignore[return-value]  # encoded as the object it holds


class TimelineController(Controller):
    path = "/persons"
    tags = ["timelines"]

    @get("/{person_id:uuid}/timeline", sync_to_thread=True)
    def timeline(
        self,
        request: Request[Any, Any, Any],
        person_id: FromPath[UUID],
        order: Order = "newest",
        kind: Kinds = None,
        cursor: Cursor = None,
        limit: Limit = 50,
        min_position: MinPosition = None,
    ) -> TimelineOut:
        """A person's timeline, paged by cursor: registration and changes, risk tags, guardian and
        agreement, pairings formed, changed and ended, visit tasks and logs, emergency reports."""
        # What other handlers are given by name (api/dependencies.py) is taken from the request
        # here: each value given costs a provider's call and the parse of its own signature,
        # about 5% of this read's instructions for the five this handler used.
        actor, views = actor_of(request), request.app.state.read_side
        access = access_of(request)
        # The access check as a condition of the page's own statement, from the person's first
        # event (where one decides it; otherwise it is made here, now, before anything is read).
        gate = access.gate(person_id)
        # With nothing to wait for, the views' position is read with the page, in one statement.
        waited = wait_for_views(request, min_position) if min_position is not None else None
        view = TimelineView(views.pool)
        audit, fields = audit_of(request), access_fields(request)

        def read(gate: Any) -> tuple[RawTimelinePage, bool]:
            # The page and the access log's row in one round trip and one transaction, committed
            # (flushed) before the page is answered, as record_access does.
            return view.page_sent_with(
                person_id,
                lambda cur, query, only_if, params: audit.read_with_access(
                    cur, query, [person_id], **fields, only_if=only_if, params=params
                ),
                newest_first=order == "newest", kinds=kind or (), hidden=timeline_hides(actor), cursor=cursor,
                limit=limit, views=[p.name for p in views.runner.projections] if waited is None else (), gate=gate,
            )  # fmt: skip

        page, logged = read(gate)
        if gate is not None:
            if page.rows or logged:
                access.gate_held()  # rows and the row written only where the check allows
            else:  # refused, or nothing to read or log: the check itself decides, then as before
                access.settle()
                page, logged = read(None)
        if not logged:
            if page.total == 0 and not view.exists(person_id):
                first = next(iter(app_of(request).events.get(person_id, limit=1)), None)
                if not isinstance(first, Person.Registered):
                    raise ProblemError(404, "not-found", "Not found", f"no person with id {person_id}", kind="person")
            record_access(request, person_id)
        position = waited if waited is not None else page.views_position or 0
        me = str(person_id)
        # Built from the rows as read: no convert, summaries passed on undecoded where they can be.
        items = [
            TimelineEntry(r[0], r[1], summary_for(r[2], person_id, me), r[3], r[4], r[5], r[6], r[7], r[8])
            for r in page.rows
        ]
        return TimelineOut(
            person_id=person_id,
            items=items,
            total=page.total,
            limit=limit,
            order=order,
            next_cursor=page.next_cursor,
            position=position,
        )
