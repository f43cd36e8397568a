"""The message a stored event becomes on NATS: ids and facts, no personal data.

Subject ``<prefix>.<Aggregate>.<Event>`` (e.g. ``guanai.events.Pairing.Formed``), JSON body::

    {"position": 42, "id": "<aggregate id>", "version": 3, "kind": "Pairing", "event": "Formed",
     "occurred_at": "...", "recorded_at": "...", "actor_id": "...", "actor_role": "...",
     "correlation_id": "...", "data": {...the event's other fields, personal ones left out...}}

Workers that need more than the envelope carries load the aggregate from the event store.
"""

from __future__ import annotations

from typing import Any

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

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(dict[str, Any])


def kind_and_event(event: Any) -> tuple[str, str]:
    """('Pairing', 'Formed') for a Pairing.Formed event."""
    parts = type(event).__qualname__.split(".")
    return parts[0], parts[-1]


def envelope(event: Any, position: int) -> dict[str, Any]:
    kind, name = kind_and_event(event)
    fields = event.__dict__
    left_out = PERSONAL_FIELDS | personal_fields(type(event))
    return {
        "position": position,
        "id": fields["originator_id"],
        "version": fields["originator_version"],
        "kind": kind,
        "event": name,
        "occurred_at": fields.get("occurred_at"),
        "recorded_at": fields["timestamp"],
        "actor_id": fields.get("actor_id"),
        "actor_role": fields.get("actor_role"),
        "correlation_id": fields.get("correlation_id"),
        "data": {k: v for k, v in fields.items() if k not in _HEADER and k not in left_out},
    }


def subject_for(prefix: str, event: Any) -> str:
    kind, name = kind_and_event(event)
    return f"{prefix}.{kind}.{name}"


def encode(message: dict[str, Any]) -> bytes:
    return _encoder.encode(message)


def decode(data: bytes) -> dict[str, Any]:
    return _decoder.decode(data)
