"""The message a stored event becomes on NATS: ids and facts, no personal data.

Subject ``<prefix>.<Aggregate>.<Event>`` (e.g. ``guanai.events.Pairing.Formed``), a JSON body
of the ``Envelope`` struct::

    {"position": 42, "id": "<aggregate id>", "version": 3, "kind": "Pairing", "event": "Formed",
     "occurred_at": "...", "recorded_at": "...", "actor_id": "...", "actor_role": "...",
     "correlation_id": "...", "data": {...the event's other fields, personal ones left out...}}

The header is typed (ids, positions and times are checked when a message is decoded; a message
that is not an envelope is refused at once, see workers/consumer.py); ``data`` stays a mapping,
as each event class has fields of its own. Workers that need more than the envelope carries
load the aggregate from the event store.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from domain.base import personal_fields

# What each event class declares personal (domain.base.Personal) stays in the event store, sealed
# there, and never travels over the broker. These names are left out of every message as well:
# a safety net for a field someone adds without declaring it.
PERSONAL_FIELDS = frozenset(
    {
        "name",
        "id_number",
        "phone",
        "household",
        "guardian",
        "parents",
        "absent_children",
        "description",
        "location",
        "address",
        "notes",
        "findings",
        "free_text",
        "observations",
        "outcome_notes",
    }
)
_HEADER = {
    "originator_id",
    "originator_version",
    "timestamp",
    "originator_topic",
    "occurred_at",
    "actor_id",
    "actor_role",
    "correlation_id",
}


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """One stored event on the broker: where it is in the log, whose it is, what it is."""

    position: int  # the notification id: the event's place in the store's log
    id: UUID  # the aggregate's
    version: int
    kind: str  # the aggregate's class: "EmergencyReport"
    event: str  # the event's class within it: "Reported"
    recorded_at: datetime
    occurred_at: datetime | None = None
    actor_id: str | None = None
    actor_role: str | None = None
    correlation_id: str | None = None
    data: dict[str, Any] = msgspec.field(default_factory=dict)

    def is_(self, kind: str, *events: str) -> bool:
        """Whether this is one of ``events`` (any, when none is named) of aggregate ``kind``."""
        return self.kind == kind and (not events or self.event in events)

    @property
    def correlation(self) -> str:
        """The correlation id a worker's command carries: the causing request's, or the event's place."""
        return self.correlation_id or f"event-{self.position}"


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Envelope)


def kind_and_event(event: Any) -> tuple[str, str]:
    """('Pairing', 'Formed') for a Pairing.Formed event."""
    parts = type(event).__qualname__.split(".")
    return parts[0], parts[-1]


def envelope(event: Any, position: int) -> Envelope:
    kind, name = kind_and_event(event)
    fields = event.__dict__
    left_out = PERSONAL_FIELDS | personal_fields(type(event))
    return Envelope(
        position=position,
        id=fields["originator_id"],
        version=fields["originator_version"],
        kind=kind,
        event=name,
        occurred_at=fields.get("occurred_at"),
        recorded_at=fields["timestamp"],
        actor_id=_text(fields.get("actor_id")),
        actor_role=_text(fields.get("actor_role")),
        correlation_id=fields.get("correlation_id"),
        data={k: v for k, v in fields.items() if k not in _HEADER and k not in left_out},
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def subject_for(prefix: str, event: Any) -> str:
    kind, name = kind_and_event(event)
    return f"{prefix}.{kind}.{name}"


def encode(message: Envelope | dict[str, Any]) -> bytes:
    """An envelope, or an alert (a mapping), as JSON."""
    return _encoder.encode(message)


def decode(data: bytes) -> Envelope:
    """The envelope in a message; ``msgspec.ValidationError`` / ``DecodeError`` when it is none."""
    return _decoder.decode(data)


def decode_raw(data: bytes) -> Any:
    """Whatever JSON a message holds, untyped: what a dead letter keeps of a message that is no envelope."""
    return msgspec.json.decode(data)
