"""The end of the supervisor's drill-down: one person's page (their record as far as the reader
may see it, and their timeline), at ``/app/persons/{id}`` under the API's rule for reading a
person, so a person outside the reader's scope is the not-found page. Read through the same
aggregate and timeline view as ``GET /persons/{id}`` and its timeline, and written to the
person's access log as those reads are."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Controller, Request, get
from litestar.params import FromPath
from litestar.response import Template

from api.access import AUDIT_READ, loaded, timeline_hides
from api.audit import record_access
from api.auth import actor_of
from api.common import app_of
from domain.person import Person
from projections.supervision_view import SupervisionView
from projections.timeline import TimelineView
from web.frame import lang_of, page
from web.supervisor import china_time, tag_labels


def person_status(person: Person) -> str:
    return "erased" if person.erased else ("active" if person.active else "left")


class PersonPage(Controller):
    path = "/persons"

    @get("/{person_id:uuid}", sync_to_thread=True)
    def person(self, request: Request[Any, Any, Any], person_id: FromPath[UUID]) -> Template:
        person = loaded(request, Person, person_id) or app_of(request).repository.get(person_id)
        pool = request.app.state.read_side.runner.pool
        timeline = TimelineView(pool).page(person_id, hidden=timeline_hides(actor_of(request)), limit=50)
        record_access(request, person_id)
        view = SupervisionView(pool)
        village = view.unit(person.village_id)
        return page(
            request, "supervisor/person.html",
            person=person,
            person_state=person_status(person),
            village=village,
            tags=tag_labels(list(person.risk_tags), lang_of(request)),
            timeline=timeline.rows,
            total=timeline.total,
            may_audit=bool(AUDIT_READ.get(actor_of(request).role)),
            china_time=china_time,
        )  # fmt: skip
