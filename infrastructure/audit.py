"""What auditors use: replay a case history, reconstruct it as of any instant, verify the
chains, export what was known, and record and list who read whose personal data.

A case history is one stream of the event store (a person, a pairing, a visit task, an
emergency report: any aggregate), read with each event's position in the global log, its
actor and role, when it occurred and when it was recorded. Lateness is shown where the record
proves it: an event recorded long after it occurred (``recorded_after_seconds``), and an event
that happened while its aggregate was waiting past a deadline (``late``: e.g. an emergency
report escalated, or acknowledged, after the acknowledgement deadline). An export carries the
stream's own chain check and the log's checkpoint at the time, and a SHA-256 digest of its
content with an HMAC seal, so a printed copy can be matched to its file and to this system.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import StoredEvent
from psycopg import ClientCursor
from psycopg.rows import tuple_row
from psycopg.sql import Composable

from application.asof import replay_as_of
from domain.base import META_FIELDS
from infrastructure import access_log, merkle, verify
from infrastructure.chain import ChainKey
from infrastructure.suites import INTERNATIONAL, Suite, SuiteError

EXPORT_FORMAT = "guanai-case-history/1"
FOREVER = datetime.max.replace(tzinfo=UTC)
_HIDDEN = {*META_FIELDS, "originator_id", "originator_version", "timestamp", "originator_topic"}


class Late(msgspec.Struct, frozen=True):
    deadline: datetime
    by_seconds: float


class EventRecord(msgspec.Struct):
    position: int
    version: int
    type: str  # <Aggregate>.<Event>, e.g. EmergencyReport.Escalated
    actor_id: str | None
    actor_role: str | None
    occurred_at: datetime | None
    recorded_at: datetime
    correlation_id: str | None
    fields: dict[str, Any]
    recorded_after_seconds: float | None  # recorded_at - occurred_at
    late: Late | None = None  # happened while the aggregate waited past this deadline


class StreamPage(msgspec.Struct):
    id: UUID
    type: str
    version: int
    total: int
    events: list[EventRecord]
    next_after_version: int | None


class LeftOut(msgspec.Struct):
    version: int
    position: int
    type: str
    reason: str


class StateAsOf(msgspec.Struct):
    id: UUID
    type: str
    as_of: datetime
    time: str
    exists: bool
    version: int | None
    position: int | None  # of the last event applied
    state: dict[str, Any] | None
    events_applied: int
    left_out: list[LeftOut]
    past_deadline: Late | None  # the aggregate was waiting past a deadline at that instant


def plain(value: Any) -> Any:
    """JSON-ready: ids, times, dates and enums as strings; dict keys as strings."""
    return msgspec.to_builtins(value, str_keys=True)


def aggregate_state(agg: Any) -> dict[str, Any]:
    state = {k.lstrip("_"): v for k, v in agg.__dict__.items() if k not in ("_pending_events",)}
    return plain(state)


def _deadline(agg: Any) -> datetime | None:
    when = getattr(agg, "deadline", None) if agg is not None else None
    return when if isinstance(when, datetime) else None


def _type_name(topic: str) -> str:
    return topic.rsplit(":", 1)[-1]


class NoSuchStreamError(LookupError):
    """Nothing was ever stored under this id."""


class Audit:
    """The auditors' reads over one CareApplication's store (and its chain key)."""

    def __init__(self, app: Any, database_url: str, events_table: str = "guanai_events") -> None:
        self.app, self.database_url, self.events_table = app, database_url, events_table
        self.access = access_log.AccessLog()  # this process's writer of the access log
        suite = getattr(app.recorder, "crypto_suite", INTERNATIONAL)
        self.tree = merkle.Tree(suite, events_table)
        # The store's keys bring the signing key (built by the composition root from the settings).
        keys = getattr(getattr(app, "store", None), "keys", None)
        loader = getattr(keys, "signing_key", None)
        if loader is None:
            raise SuiteError("this store has no checkpoint signing key")
        self.checkpoints = merkle.Checkpoints(self.tree, getattr(app.recorder, "origin", ""), lambda: loader(suite))

    @property
    def key(self) -> ChainKey:
        return self.app.recorder.key

    def _rows(self, aggregate_id: UUID) -> list[tuple[int, StoredEvent]]:
        with self.app.recorder.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(
                f"SELECT notification_id, originator_version, topic, state FROM {self.events_table} "
                "WHERE originator_id = %s ORDER BY originator_version",
                (aggregate_id,),
            )
            rows = cur.fetchall()
        if not rows:
            raise NoSuchStreamError(f"no stream with id {aggregate_id}")
        return [(pos, StoredEvent(aggregate_id, version, topic, bytes(state))) for pos, version, topic, state in rows]

    def events(self, aggregate_id: UUID, rows: list[tuple[int, StoredEvent]] | None = None) -> list[tuple[int, Any]]:
        """(position, domain event) of a stream, in version order."""
        rows = rows if rows is not None else self._rows(aggregate_id)
        return list(zip((pos for pos, _ in rows), self.app.mapper.to_domain_events([s for _, s in rows]), strict=True))

    # ---- replay ------------------------------------------------------------------------------

    def records(
        self, aggregate_id: UUID, rows: list[tuple[int, StoredEvent]] | None = None
    ) -> tuple[str, list[EventRecord]]:
        agg, out, kind = None, [], ""
        for pos, event in self.events(aggregate_id, rows):
            topic_name = _type_name(type(event).__module__ + ":" + type(event).__qualname__)
            kind = kind or topic_name.split(".", 1)[0]
            when = getattr(event, "occurred_at", None)
            deadline = _deadline(agg)
            late = Late(deadline, (when - deadline).total_seconds()) if deadline and when and when > deadline else None
            fields = {k: plain(v) for k, v in event.__dict__.items() if k not in _HIDDEN}
            out.append(
                EventRecord(
                    position=pos,
                    version=event.originator_version,
                    type=topic_name,
                    actor_id=getattr(event, "actor_id", None),
                    actor_role=getattr(event, "actor_role", None),
                    occurred_at=when,
                    recorded_at=event.timestamp,
                    correlation_id=getattr(event, "correlation_id", None),
                    fields=fields,
                    recorded_after_seconds=round((event.timestamp - when).total_seconds(), 3) if when else None,
                    late=late,
                )
            )
            agg = event.mutate(agg)
        return kind, out

    def stream(self, aggregate_id: UUID, *, after_version: int = 0, limit: int = 100) -> StreamPage:
        kind, records = self.records(aggregate_id)
        page = [r for r in records if r.version > after_version][:limit]
        more = bool(page) and page[-1].version < records[-1].version
        return StreamPage(
            aggregate_id, kind, records[-1].version, len(records), page, page[-1].version if more else None
        )

    def state_as_of(self, aggregate_id: UUID, at: datetime, axis: str = "recorded") -> StateAsOf:
        positioned = self.events(aggregate_id)
        position_of = {e.originator_version: pos for pos, e in positioned}
        replayed = replay_as_of((e for _, e in positioned), at, axis)
        agg = replayed.aggregate
        kind = _type_name(type(positioned[0][1]).__qualname__).split(".", 1)[0]
        last = replayed.applied[-1] if replayed.applied else None
        deadline = _deadline(agg)
        return StateAsOf(
            id=aggregate_id,
            type=kind,
            as_of=at,
            time=axis,
            exists=agg is not None,
            version=agg.version if agg is not None else None,
            position=position_of[last.originator_version] if last else None,
            state=aggregate_state(agg) if agg is not None else None,
            events_applied=len(replayed.applied),
            left_out=[
                LeftOut(e.originator_version, position_of[e.originator_version], type(e).__qualname__, why)
                for e, why in replayed.left_out
            ],
            past_deadline=Late(deadline, (at - deadline).total_seconds()) if deadline and at > deadline else None,
        )

    def persons_in(self, aggregate_id: UUID, kind: str) -> list[UUID]:
        """Whose personal data a stream shows: a person's own, or every person its events name. A
        case's history keeps those who left it (a pairing still tells why a person was removed),
        so its current members are not enough."""
        if kind == "Person":
            return [aggregate_id]
        named: dict[UUID, None] = {}
        for _, event in self.events(aggregate_id):
            fields = vars(event)
            for value in (fields.get("person_id"), *(fields.get("person_ids") or ())):
                if value:
                    named[UUID(str(value))] = None
        return list(named)

    # ---- verification ------------------------------------------------------------------------

    def verify(
        self,
        *,
        start: int | None = None,
        end: int | None = None,
        checkpoint: verify.Checkpoint | None = None,
        progress: verify.Progress | None = None,
    ) -> verify.Verification:
        return verify.verify_events(
            self.database_url, self.key, start=start, end=end, checkpoint=checkpoint, progress=progress
        )

    def verify_access_log(
        self, *, start: int = 1, end: int | None = None, checkpoint: verify.Checkpoint | None = None
    ) -> verify.Verification:
        return verify.verify_access_log(self.database_url, self.key, start=start, end=end, checkpoint=checkpoint)

    def checkpoint(self) -> list[verify.Checkpoint]:
        with self.app.recorder.datastore.get_connection() as conn:
            return verify.heads(conn, self.key, self.events_table)

    # ---- signed checkpoints and proofs (RFC 9162) -------------------------------------------------

    @property
    def suite(self) -> Suite:
        return self.tree.suite

    def public_key(self) -> dict[str, Any]:
        return self.checkpoints.key.public.document()

    def latest_checkpoint(self) -> dict[str, Any]:
        """The newest signed checkpoint; a new one is signed first when the log grew since."""
        with self.app.recorder.datastore.get_connection() as conn:
            latest = self.checkpoints.latest(conn)
        assert latest is not None
        return latest

    def checkpoint_at(self, size: int) -> dict[str, Any]:
        """The signed checkpoint of this size (signed now if none was, and the tree has reached it)."""
        with self.app.recorder.datastore.get_connection() as conn:
            found = self.checkpoints.at_size(conn, size)
            if found is None:
                self.tree.consistency(conn, 0, size)  # refuses a size beyond the tree
                found = self.checkpoints.sign(conn, size)
        return found

    def consistency(self, old: int, new: int | None = None) -> dict[str, Any]:
        """A consistency proof from the checkpoint of ``old`` leaves to that of ``new`` (default:
        the latest), with both checkpoints (signed now where none was: the root of a past size
        is fixed by the stored nodes)."""
        newer = self.latest_checkpoint() if new is None else self.checkpoint_at(new)
        size = int(newer["size"])
        with self.app.recorder.datastore.get_connection() as conn:
            proof = self.tree.consistency(conn, old, size)
        older = self.checkpoint_at(old) if old else None
        return {
            "from": old,
            "to": size,
            "proof": [p.hex() for p in proof],
            "old_checkpoint": older,
            "new_checkpoint": newer,
        }

    def collect_witnesses(self, folder: Path) -> int:
        """Keep the witness co-signatures found on a published folder's checkpoints with the
        store's checkpoints of the same size and root (who to trust is the verifier's choice)."""
        added = 0
        with self.app.recorder.datastore.get_connection() as conn:
            for path in folder.glob("checkpoint-*.json"):
                doc = json.loads(path.read_text(encoding="utf-8"))
                stored = self.checkpoints.at_size(conn, int(doc["size"]))
                if stored is None or stored["root"] != doc.get("root"):
                    continue
                known = {w["key_id"] for w in stored.get("witnesses") or []}
                for signature in doc.get("witnesses") or []:
                    if signature.get("key_id") not in known:
                        self.checkpoints.add_witness(conn, int(doc["size"]), signature)
                        added += 1
        return added

    def stream_proofs(
        self, aggregate_id: UUID, *, size: int | None = None, rows: list[tuple[int, StoredEvent]] | None = None
    ) -> dict[str, Any]:
        """Each event of a stream with its leaf and inclusion proof against a checkpoint (the
        latest, or the one of ``size``)."""
        rows = rows if rows is not None else self._rows(aggregate_id)
        checkpoint = self.latest_checkpoint() if size is None else self.checkpoint_at(size)
        with self.app.recorder.datastore.get_connection() as conn:
            return merkle.stream_proofs(
                conn,
                self.tree,
                checkpoint,
                aggregate_id,
                [(pos, s.originator_version, s.topic, s.state) for pos, s in rows],
            )

    # ---- export ------------------------------------------------------------------------------

    def export(
        self, aggregate_id: UUID, *, actor_id: str, actor_role: str, now: datetime | None = None
    ) -> dict[str, Any]:
        """A case history as one JSON-ready document, with its digest and seal."""
        rows = self._rows(aggregate_id)
        kind, records = self.records(aggregate_id, rows)
        now_state = self.state_as_of(aggregate_id, FOREVER, "recorded")
        # Signed after the rows were read, so the checkpoint covers every event shown.
        proofs = self.stream_proofs(aggregate_id, rows=rows)
        with self.app.recorder.datastore.get_connection() as conn:
            stream_check = verify.verify_stream(conn, self.key, aggregate_id, self.events_table)
            heads = verify.heads(conn, self.key, self.events_table)
        body = {
            "format": EXPORT_FORMAT,
            "exported_at": plain(now or datetime.now(UTC)),
            "exported_by": {"actor_id": actor_id, "actor_role": actor_role},
            "stream": {"id": str(aggregate_id), "type": kind, "version": now_state.version, "events": len(records)},
            "state": now_state.state,
            "events": plain(records),
            "verification": {
                "ok": stream_check.ok,
                "checked": stream_check.checked,
                "failures": plain(stream_check.failures),
                "key": self.key.fingerprint,
                "log_checkpoint": plain(next((h for h in heads if h.log == "events"), None)),
            },
            # What an outside party checks with infrastructure/verifier.py and the log's public key.
            "proofs": proofs,
        }
        digest = content_digest(body)
        return {**body, "digest": digest, "seal": self.seal(digest)}

    def seal(self, digest: str) -> str:
        return self.key.mac(b"guanai-export:" + digest.encode()).hex()

    def check_export(self, document: dict[str, Any]) -> bool:
        """Whether a document is an unaltered export of this system (its digest and seal match)."""
        body = {k: v for k, v in document.items() if k not in ("digest", "seal")}
        digest = content_digest(body)
        return hmac.compare_digest(digest, str(document.get("digest", ""))) and hmac.compare_digest(
            self.seal(digest), str(document.get("seal", ""))
        )

    # ---- access log --------------------------------------------------------------------------

    def record_access(
        self, person_ids: Sequence[UUID], *, actor_id: str, actor_role: str, endpoint: str, request_id: str
    ) -> None:
        with self.app.recorder.datastore.get_connection() as conn:
            self.access.record(conn, self.key, person_ids, (actor_id, actor_role, endpoint, request_id))

    def read_with_access(
        self,
        cur: ClientCursor[Any],
        read: str,
        person_ids: Sequence[UUID],
        *,
        actor_id: str,
        actor_role: str,
        endpoint: str,
        request_id: str,
        only_if: Composable | str | None = None,
        params: Sequence[Any] = (),
    ) -> tuple[list[Any], bool]:
        """A read and its access log rows in one round trip and one transaction
        (``access_log.AccessLog.read_with``): the read's rows, and whether the rows were written
        (False: record them with ``record_access``)."""
        fields = (actor_id, actor_role, endpoint, request_id)
        return self.access.read_with(cur, self.key, read, person_ids, fields, only_if=only_if, params=params)

    def access_log(
        self, person_id: UUID, *, limit: int = 100, before_id: int | None = None
    ) -> tuple[list[access_log.Access], int]:
        with self.app.recorder.datastore.get_connection() as conn:
            return access_log.for_person(conn, person_id, limit=limit, before_id=before_id)


def content_digest(body: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces) of an export's content."""
    return hashlib.sha256(msgspec.json.encode(body, order="sorted")).hexdigest()


__all__ = ["Audit", "EventRecord", "NoSuchStreamError", "StateAsOf", "StreamPage", "content_digest"]
