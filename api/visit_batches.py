"""POST /visit-logs/batch: a device's backlog of visit logs (走访日志) in one request.

A volunteer's phone that was offline for a week sends its logs at once, up to ``MAX_ITEMS``.
Each item is a visit log as ``POST /visits/{task_id}/complete`` (with ``task_id``) or
``POST /visit-logs`` (with ``pairing_id`` and ``person_id``) take it, and gets the answer that
route would give: ``status`` and ``body`` (201 recorded, 200 the same log again) or ``status``
and ``problem`` (its problem details, fields named ``items[n].<field>``).

What is refused as a whole, and what per item:
- A body that does not decode (not JSON, a field of the wrong type or unknown, no items, too
  many): 422 (400 when not JSON) naming ``items[n].<field>``, and nothing is written. Such a
  request is a bug of the client, and answering it item by item would hide that.
- Everything the one-log routes decide (access, unknown or out-of-scope ids, a task already
  done, a helper who was not there, a different log under a taken id, a time out of range): that
  item's own answer; the other items are recorded. The same id twice in a batch: the later item
  is refused (409 ``already-exists``).
- Each item is all or nothing: a log and the task it completes are saved together. The new logs
  of a batch are saved in one transaction (application/visits.py ``record_visits``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, post
from litestar.exceptions import HTTPException
from litestar.params import JSONBody

from api.access import Access, Rule, rule_for
from api.access.rules import V
from api.auth import Actor
from api.dependencies import Caller, Care, Checked, MetaFor
from api.problems import ProblemError, problem_of
from api.visits import VisitLogIn, VisitLogOut, _log_fields, acting, helper_id_of, log_out
from application.care import CareApplication
from application.visits import LogItem
from domain.base import DomainError
from domain.visit_log import VisitLog, VisitLogError

MAX_ITEMS = 1000
MAX_BATCH_BYTES = 4 * 1024 * 1024  # 1,000 logs with long notes; the API's other bodies: 256 KiB


class BatchItemIn(VisitLogIn, forbid_unknown_fields=True):
    task_id: UUID | None = None  # the task the visit completes; without it, an unplanned visit:
    pairing_id: UUID | None = None
    person_id: UUID | None = None


class VisitLogBatchIn(msgspec.Struct, forbid_unknown_fields=True):
    items: Annotated[list[BatchItemIn], msgspec.Meta(min_length=1, max_length=MAX_ITEMS)]


class BatchItemOut(msgspec.Struct, omit_defaults=True):
    index: int
    id: UUID
    status: int  # 201 recorded, 200 the same log again, 4xx refused (``problem`` says why)
    body: VisitLogOut | None = None
    problem: dict[str, Any] | None = None  # RFC 9457 problem details, as the one-log route answers


class VisitLogBatchOut(msgspec.Struct):
    items: list[BatchItemOut]
    recorded: int  # items answered 201
    refused: int  # items answered 4xx
    position: int | None  # the highest position written (read-your-writes for every item)


def _problem(n: int, e: Exception) -> dict[str, Any]:
    """An item's refusal as the one-log route answers it, its fields named within the batch."""
    if isinstance(e, DomainError):
        (status, slug, title), detail = problem_of(e), e.detail
        errors = [{"field": f"items[{n}].{e.field}", "reason": e.detail}] if e.field else []
        extra = e.extra
    elif isinstance(e, ProblemError):
        status, slug, title, detail, extra = e.status, e.slug, e.title, e.detail, e.extra
        errors = [{**x, "field": f"items[{n}].{x['field']}"} if "field" in x else x for x in e.errors]
    else:
        assert isinstance(e, HTTPException)
        status, slug, title, detail, errors, extra = e.status_code, "forbidden", "Not allowed", e.detail, [], {}
    body: dict[str, Any] = {"type": f"/problems/{slug}", "title": title, "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def _checked(
    access: Access, actor: Actor, care: CareApplication, items: list[BatchItemIn]
) -> tuple[list[Exception | None], dict[UUID, Any]]:
    """Each item through the access table as its one-log route (with the route's rule and the
    caller's scopes there). What the checks and the command read is read once, here, in three
    queries for the whole batch (``read_for_backlog``: everything the items name with the logs'
    own ids, which says which logs are stored already; the new logs' tasks' pairings,
    and the pairings of the logs stored; the groups), handed to the checks, whose every read it
    answers (``Access.hold``: none is made per item), and returned for the command."""
    me = helper_id_of(actor) if actor.role == V else None  # the checks read a volunteer's own record
    loaded = care.read_for_backlog(
        [(item.id, item.task_id, item.pairing_id, item.person_id) for item in items], [me] if me else []
    )
    access.hold(loaded)
    complete, unplanned = rule_for("POST", "/visits/{task_id}/complete"), rule_for("POST", "/visit-logs")
    assert isinstance(complete, Rule) and isinstance(unplanned, Rule)
    role = actor.role
    out: list[Exception | None] = []
    for item in items:
        body = {
            k: str(v) for k, v in (("id", item.id), ("pairing_id", item.pairing_id), ("person_id", item.person_id)) if v
        }
        try:
            if item.task_id is not None:
                access.check(complete, complete.grants.get(role, frozenset()), {"task_id": item.task_id}, body)
            else:
                access.check(unplanned, unplanned.grants.get(role, frozenset()), {}, body)
        except (DomainError, ProblemError, HTTPException) as e:
            out.append(e)
        else:
            out.append(None)
    return out, loaded


class VisitLogBatchController(Controller):
    path = "/visit-logs/batch"
    tags = ["visits"]

    @post("/", sync_to_thread=True, status_code=200, request_max_body_size=MAX_BATCH_BYTES)
    def record_many(
        self, actor: Caller, access: Checked, care: Care, meta_for: MetaFor, data: JSONBody[VisitLogBatchIn]
    ) -> VisitLogBatchOut:
        """Record up to 1,000 visit logs at once (an offline device's backlog). Each item is a
        visit log with the client's ``id`` and the visit's ``occurred_at``, and either the
        ``task_id`` it completes or the ``pairing_id`` and ``person_id`` of an unplanned visit.
        The answer (200) lists every item in order with its own ``status``: 201 recorded, 200 the
        same log sent before (its first answer's body, nothing written), or 4xx with ``problem``,
        that item refused as its one-log route would refuse it (fields named
        ``items[n].<field>``) while the others are recorded. A body that does not validate is
        refused as a whole (422 naming ``items[n].<field>``) and nothing is written. Safe to
        resend whole."""
        me, actor_helper = acting(actor)
        refused, loaded = _checked(access, actor, care, data.items)
        answers: list[BatchItemOut | None] = [None] * len(data.items)
        wanted: list[int] = []
        commands: list[LogItem] = []
        for n, (item, denied) in enumerate(zip(data.items, refused, strict=True)):
            try:
                if denied is not None:
                    raise denied
                if item.task_id is not None and item.pairing_id is not None:
                    raise VisitLogError(
                        "an item names the task it completes (task_id) or, for an unplanned visit, its"
                        " pairing_id and person_id: not both",
                        field="pairing_id",
                    )
                meta = meta_for(item.occurred_at)
            except (DomainError, ProblemError, HTTPException) as e:
                problem = _problem(n, e)
                answers[n] = BatchItemOut(index=n, id=item.id, status=problem["status"], problem=problem)
                continue
            # With a task, person_id (if sent) must be the task's; without, both name the visit.
            link = {"pairing_id": item.pairing_id, "person_id": item.person_id}
            wanted.append(n)
            commands.append(LogItem(item.id, meta, _log_fields(item, me, item.task_id), **link))
        # The logs' ids stored already, as the checks read them (a log stored since is caught by the save).
        taken = [c.log_id for c in commands if loaded.get(c.log_id) is not None]
        results = care.record_visits(
            commands, acting_helper_id=actor_helper, now=datetime.now(UTC), loaded=loaded, taken=taken
        )
        for n, result in zip(wanted, results, strict=True):
            item = data.items[n]
            if isinstance(result, DomainError):
                problem = _problem(n, result)
                answers[n] = BatchItemOut(index=n, id=item.id, status=problem["status"], problem=problem)
            else:
                log = care.saved(VisitLog, result)
                body = log_out(log, result.position)
                answers[n] = BatchItemOut(index=n, id=item.id, status=201 if result.created else 200, body=body)
        items = [a for a in answers if a is not None]
        positions = [a.body.position for a in items if a.body is not None and a.body.position is not None]
        return VisitLogBatchOut(
            items=items,
            recorded=sum(1 for a in items if a.status == 201),
            refused=sum(1 for a in items if a.status >= 400),
            position=max(positions, default=None),
        )
