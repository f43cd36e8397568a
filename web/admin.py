"""The administrator's and supervisor's roster pages (值班表与响应时限): which townships and
counties keep a responder roster, who is on it and on duty now, and the acknowledgement deadline
per severity; forms to set a roster up, change its deadlines, add and remove responders.

Forms post to ``/app/rosters/...``, whose rules in ``api/access/rules.py`` are those of the API's
``/rosters`` routes, and run the same commands with the same validation (the API's request
Structs): a refused form is shown again with each field and reason (422), nothing written; a
saved one redirects back to the page (303, post/redirect/get).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath
from litestar.response import Redirect, Template

from api.auth import Actor
from api.rosters import AckDeadlines, ResponderIn
from application.care import CareApplication, NotFoundError
from domain.base import DomainError
from domain.roster import ResponderRoster, Severity, Tier
from projections.supervision_series import SupervisionSeries
from projections.supervision_view import SupervisionView
from web.frame import page
from web.ops import OPS, Ops

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]
SEVERITIES = [s.value for s in Severity]
# The shift choices a form offers; the API takes any list of shifts.
SHIFT_CHOICES = {"always": [], "weekdays": [{"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "18:00"}]}


# The catalogue key naming each form field in a refusal (the API's field names otherwise).
FIELD_LABELS = {
    "responder_id": "ro.responder_id", "name": "ro.name", "phone": "ro.phone", "tier": "ro.tier", "shifts": "ro.shifts",
    **{s: f"ro.severity.{s}" for s in SEVERITIES},
}  # fmt: skip


class FormError(Exception):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['reason']}" for e in errors))
        self.errors = errors


def roster_or_none(care: CareApplication, org_unit_id: UUID) -> ResponderRoster | None:
    try:
        return care.load_roster(org_unit_id)
    except NotFoundError:
        return None


def managed_units(view: SupervisionView, actor: Actor) -> list[dict[str, Any]]:
    """The counties and townships in the reader's unit (an administrator: every county and its
    townships): the units rosters are kept for and registries imported into."""
    series = SupervisionSeries(view.pool)
    roots = [actor.org_unit_id] if actor.org_unit_id else [c["id"] for c in series.counties()]
    units: list[dict[str, Any]] = []
    for root in roots:
        unit = view.unit(root)
        if unit is None or unit["level"] == "village":
            continue
        units.append({k: unit[k] for k in ("id", "code", "name", "level")})
        if unit["level"] == "county":
            units += [{k: c[k] for k in ("id", "code", "name", "level")} for c in series.children(unit["id"])]
    return units


def roster_units(ops: Ops) -> list[dict[str, Any]]:
    """The managed units, each with whether it keeps a roster."""
    units = managed_units(ops.supervision, ops.actor)
    for unit in units:
        unit["roster"] = roster_or_none(ops.care, unit["id"])
    return units


def decode(form: dict[str, str], fields: dict[str, str], target: type[Any]) -> Any:
    """Form fields into the API's request Struct (numbers as numbers, empty as absent)."""
    data: dict[str, Any] = {}
    for name, kind in fields.items():
        raw = (form.get(name) or "").strip()
        if not raw:
            continue
        if kind == "int":
            try:
                data[name] = int(raw)
            except ValueError:
                raise FormError([{"field": name, "reason": "not a whole number"}]) from None
        else:
            data[name] = raw
    try:
        return msgspec.convert(data, target)
    except msgspec.ValidationError as e:
        text = str(e)
        field = text.rpartition("$.")[2].rstrip("`") if "$." in text else "form"
        raise FormError([{"field": field, "reason": text.partition(" - at")[0]}]) from None


def roster_context(request: Request[Any, Any, Any], ops: Ops, org_unit_id: UUID) -> dict[str, Any]:
    unit = ops.supervision.unit(org_unit_id) or {"id": org_unit_id}
    roster = roster_or_none(ops.care, org_unit_id)
    now = datetime.now(UTC)
    return {
        "unit": unit,
        "roster": roster,
        "on_duty": roster.on_duty(now, Tier.PRIMARY) if roster else [],
        "severities": SEVERITIES,
        "tiers": [t.value for t in Tier],
        "may_edit": ops.actor.role.value in ("administrator", "county_supervisor", "township_supervisor"),
        "csrf": request.cookies.get("guanai_csrf", ""),
        "saved": request.query_params.get("saved") == "1",
        "errors": [],
    }


class RosterPages(Controller):
    path = "/rosters"
    dependencies = OPS

    def _page(
        self,
        request: Request[Any, Any, Any],
        ops: Ops,
        org_unit_id: UUID,
        errors: list[dict[str, str]] | None = None,
        sent: dict[str, str] | None = None,
    ) -> Template:
        """The roster page; after a refused form, with each field's reason and what was sent."""
        labelled = [{**e, "label": FIELD_LABELS.get(e["field"])} for e in errors or []]
        context = {**roster_context(request, ops, org_unit_id), "errors": labelled, "sent": sent or {}}
        return page(request, "admin/roster.html", status=422 if errors else 200, **context)

    def _run(
        self, request: Request[Any, Any, Any], ops: Ops, org_unit_id: UUID, command: Any, sent: dict[str, str]
    ) -> Template | Redirect:
        try:
            command()
        except FormError as e:
            return self._page(request, ops, org_unit_id, e.errors, sent)
        except DomainError as e:
            errors = [{"field": e.field or "form", "reason": e.detail}]
            return self._page(request, ops, org_unit_id, errors, sent)
        return Redirect(f"/app/rosters/{org_unit_id}?saved=1", status_code=303)

    @get("/", sync_to_thread=True)
    def units(self, request: Request[Any, Any, Any], ops: Ops) -> Template:
        return page(request, "admin/rosters.html", units=roster_units(ops))

    @get("/{org_unit_id:uuid}", sync_to_thread=True)
    def roster(self, request: Request[Any, Any, Any], ops: Ops, org_unit_id: FromPath[UUID]) -> Template:
        return self._page(request, ops, org_unit_id)

    @post("/{org_unit_id:uuid}", sync_to_thread=True)
    def set_up(
        self, request: Request[Any, Any, Any], ops: Ops, org_unit_id: FromPath[UUID], data: Form
    ) -> Template | Redirect:
        def command() -> None:
            deadlines = decode(data, dict.fromkeys(SEVERITIES, "int"), AckDeadlines)
            ops.care.set_up_roster(org_unit_id, deadlines.given(), ops.meta_for(None))

        return self._run(request, ops, org_unit_id, command, data)

    @post("/{org_unit_id:uuid}/deadlines", sync_to_thread=True)
    def deadlines(
        self, request: Request[Any, Any, Any], ops: Ops, org_unit_id: FromPath[UUID], data: Form
    ) -> Template | Redirect:
        def command() -> None:
            deadlines = decode(data, dict.fromkeys(SEVERITIES, "int"), AckDeadlines)
            if not deadlines.given():
                raise FormError([{"field": "critical", "reason": "give at least one deadline"}])
            ops.care.change_ack_deadlines(org_unit_id, deadlines.given(), ops.meta_for(None))

        return self._run(request, ops, org_unit_id, command, data)

    @post("/{org_unit_id:uuid}/responders", sync_to_thread=True)
    def add_responder(
        self, request: Request[Any, Any, Any], ops: Ops, org_unit_id: FromPath[UUID], data: Form
    ) -> Template | Redirect:
        def command() -> None:
            shifts = data.get("shifts", "always")
            if shifts not in SHIFT_CHOICES:
                raise FormError([{"field": "shifts", "reason": "choose one of the offered shifts"}])
            fields = {"responder_id": "str", "name": "str", "phone": "str", "tier": "str"}
            responder = decode(data, fields, ResponderIn)
            ops.care.add_roster_responder(
                org_unit_id, responder_id=responder.responder_id, name=responder.name, phone=responder.phone,
                tier=responder.tier, shifts=SHIFT_CHOICES[shifts], meta=ops.meta_for(None),
            )  # fmt: skip

        return self._run(request, ops, org_unit_id, command, data)

    @post("/{org_unit_id:uuid}/responders/{responder_id:str}/remove", sync_to_thread=True)
    def remove_responder(
        self,
        request: Request[Any, Any, Any],
        ops: Ops,
        org_unit_id: FromPath[UUID],
        responder_id: FromPath[str],
        data: Form,
    ) -> Template | Redirect:
        def command() -> None:
            ops.care.remove_roster_responder(org_unit_id, responder_id, "removed from the roster", ops.meta_for(None))

        return self._run(request, ops, org_unit_id, command, data)
