"""/audit: replay, as-of state, chain verification, checkpoints, exports and access logs, for
auditors (their org unit's cases; verification and checkpoints whole) and administrators.
Auditors read and never write: no write rule of the access table (``api/access/rules.py``) names them.

``record_access`` (api/common.py; handlers are given it) is what every endpoint that reads a
person's personal data or timeline calls before answering; it appends to the chained access log
and fails the request when it cannot (no personal data leaves without a record).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Response, get
from litestar.params import FromPath, QueryParameter

from api.common import Limit
from api.dependencies import AuditTrail, Caller, RecordAccess
from api.problems import ProblemError
from infrastructure.audit import NoSuchStreamError, StateAsOf, StreamPage
from infrastructure.audit_html import render
from infrastructure.verify import Checkpoint, Verification

Position = Annotated[int | None, QueryParameter(ge=1, le=2**62)]
Digest = Annotated[str | None, QueryParameter(pattern="^[0-9a-fA-F]{64}$", description="a checkpoint's digest")]


class AccessEntry(msgspec.Struct):
    id: int
    at: datetime
    actor_id: str
    actor_role: str
    endpoint: str
    request_id: str


class AccessLogPage(msgspec.Struct):
    person_id: UUID
    items: list[AccessEntry]
    total: int
    next_before_id: int | None  # pass as before_id for older entries; null on the last page


def _stream_or_404(call: Any) -> Any:
    try:
        return call()
    except NoSuchStreamError as e:
        raise ProblemError(404, "not-found", "Not found", str(e)) from None


class AuditController(Controller):
    path = "/audit"
    tags = ["audit"]

    @get("/streams/{stream_id:uuid}", sync_to_thread=True)
    def stream(
        self,
        record_access: RecordAccess,
        audit: AuditTrail,
        stream_id: FromPath[UUID],
        after_version: Annotated[int, QueryParameter(ge=0)] = 0,
        limit: Limit = 100,
    ) -> StreamPage:
        """A case history: the stream's events in order, each with its actor and role, when it
        occurred and was recorded, its position in the log, its fields, and lateness marks."""
        page = _stream_or_404(lambda: audit.stream(stream_id, after_version=after_version, limit=limit))
        record_access(*audit.persons_in(stream_id, page.type))
        return page

    @get("/streams/{stream_id:uuid}/state", sync_to_thread=True)
    def state(
        self,
        record_access: RecordAccess,
        audit: AuditTrail,
        stream_id: FromPath[UUID],
        as_of: Annotated[datetime, QueryParameter(description="the instant (RFC 3339 with offset)")],
        time: Annotated[str, QueryParameter(pattern="^(recorded|occurred)$")] = "recorded",
    ) -> StateAsOf:
        """The stream's state as of an instant: ``time=recorded`` is what the system knew then;
        ``time=occurred`` is what had happened in the world by then (late records included)."""
        if as_of.tzinfo is None:
            raise ProblemError(
                400,
                "validation-error",
                "Invalid request",
                "as_of needs a UTC offset",
                errors=[{"field": "as_of", "reason": "no UTC offset", "in": "query"}],
            )
        out = _stream_or_404(lambda: audit.state_as_of(stream_id, as_of, time))
        record_access(*audit.persons_in(stream_id, out.type))
        return out

    @get("/streams/{stream_id:uuid}/export", sync_to_thread=True, media_type="text/html")
    def export(
        self,
        record_access: RecordAccess,
        actor: Caller,
        audit: AuditTrail,
        stream_id: FromPath[UUID],
        format: Annotated[str, QueryParameter(pattern="^(json|html)$")] = "html",
    ) -> Response[Any]:
        """The case history as a document: ``format=json`` (machine-checkable) or ``html``
        (printable, in Chinese), with the verification result, checkpoint, digest and seal."""
        doc = _stream_or_404(lambda: audit.export(stream_id, actor_id=actor.subject, actor_role=actor.role.value))
        record_access(*audit.persons_in(stream_id, doc["stream"]["type"]))
        name = f"case-{stream_id}.{format}"
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        if format == "json":
            return Response(doc, media_type="application/json", headers=headers)
        return Response(render(doc), media_type="text/html", headers=headers)  # charset added by Litestar

    @get("/verify", sync_to_thread=True)
    def verify(
        self,
        audit: AuditTrail,
        from_: Annotated[
            int | None,
            QueryParameter(
                name="from", ge=-(2**62), le=2**62, description="first position (default: the lowest row, below 1 too)"
            ),
        ] = None,
        to: Position = None,
        log: Annotated[str, QueryParameter(pattern="^(events|access)$")] = "events",
        checkpoint_position: Position = None,
        checkpoint_digest: Digest = None,
    ) -> Verification:
        """Walk the chain (of the events, or of the access log) over ``from``..``to`` and name
        every position that fails and why; with a held checkpoint, also check the log still
        reaches it and matches it."""
        held = None
        if (checkpoint_position is None) != (checkpoint_digest is None):
            raise ProblemError(
                400, "validation-error", "Invalid request", "give checkpoint_position and checkpoint_digest together"
            )
        if checkpoint_position is not None and checkpoint_digest is not None:
            held = Checkpoint(
                log, checkpoint_position, checkpoint_digest.lower(), datetime.now().astimezone(), audit.key.fingerprint
            )
        if log == "access":
            return audit.verify_access_log(start=1 if from_ is None else from_, end=to, checkpoint=held)
        return audit.verify(start=from_, end=to, checkpoint=held)

    @get("/checkpoint", sync_to_thread=True)
    def checkpoint(self, audit: AuditTrail) -> list[Checkpoint]:
        """The newest entry of each chain (events, access log): keep it outside the system and
        hand it back to ``/audit/verify`` later."""
        return audit.checkpoint()

    @get("/persons/{person_id:uuid}/access-log", sync_to_thread=True)
    def access_log(
        self,
        audit: AuditTrail,
        person_id: FromPath[UUID],
        limit: Limit = 100,
        before_id: Annotated[int | None, QueryParameter(ge=1, le=2**62)] = None,
    ) -> AccessLogPage:
        """Who read this person's personal data or timeline: when, with which role, through which endpoint."""
        rows, total = audit.access_log(person_id, limit=limit, before_id=before_id)
        items = [AccessEntry(r.id, r.at, r.actor_id, r.actor_role, r.endpoint, r.request_id) for r in rows]
        return AccessLogPage(person_id, items, total, rows[-1].id if len(rows) == limit else None)
