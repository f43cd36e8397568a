"""What every aggregate and event shares: who did it, when it happened, why it failed, and
which of its fields are personal data (``Personal``: sealed at rest, erasable).

Every event carries ``occurred_at`` (when it happened in the world, given by the command),
the actor (id and role) and the request's correlation id, besides the library's own
``timestamp`` (when it was recorded).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

import msgspec
from eventsourcing.domain import Aggregate

# Namespace for ids derived from natural keys (org-unit codes, demo records).
GUANAI_NAMESPACE = UUID("6f1c2a3e-3b5d-4f0a-9c1e-1a2b3c4d5e6f")


def derived_id(kind: str, key: str) -> UUID:
    """A stable id for a thing known by a natural key (e.g. an org unit by its code)."""
    return uuid5(GUANAI_NAMESPACE, f"{kind}:{key}")


class CommandMeta(msgspec.Struct, frozen=True, kw_only=True):
    """Who asks, on whose behalf, and when the thing happened in the world."""

    actor_id: str
    actor_role: str
    correlation_id: str
    occurred_at: datetime

    def fields(self) -> dict[str, Any]:
        return {
            "actor_id": self.actor_id,
            "actor_role": self.actor_role,
            "correlation_id": self.correlation_id,
            "occurred_at": self.occurred_at,
        }


META_FIELDS = ("actor_id", "actor_role", "correlation_id", "occurred_at")


class DomainError(Exception):
    """A command was refused by a rule of the domain. ``field`` names the offending input.

    The domain says what was refused and why; how an edge answers it (an HTTP status, a
    problem type) is the edge's to decide (api/problems.py)."""

    def __init__(self, detail: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra


class InvariantError(DomainError):
    """The command would break an invariant of an aggregate."""


class InactiveError(DomainError):
    """The command involves someone who is no longer active in the programme."""


class ClosedError(DomainError):
    """The aggregate is in a final state and accepts no more changes."""


class ErasedError(DomainError):
    """The person this command concerns was erased: their record accepts nothing more."""


# What an erased text field reads as.
ERASED = "[erased]"


class Personal:
    """Which fields of an event are personal data, and whose key seals them.

    Declared on an event class as an unannotated class attribute (``personal = Personal(...)``),
    so the event's dataclass machinery does not take it for a field. ``erased`` maps each
    personal field to what it reads as once the key is destroyed; ``subject`` names the field
    whose value identifies the key (``prefix`` is put before it, for keys of other kinds of
    people than persons); ``owner`` names the field holding the person the data is about, whose
    erasure destroys this key too (None: the subject's key row already names its owner, or the
    data is about no registered person). Empty values (None, "", [], {}) are not sealed: they
    say nothing about anyone, and keeping them clear keeps facts such as "has a guardian" the
    same before and after an erasure.
    """

    __slots__ = ("erased", "owner", "prefix", "subject")

    def __init__(
        self, erased: dict[str, Any], *, subject: str = "originator_id", owner: str | None = None, prefix: str = ""
    ) -> None:
        self.erased = erased
        self.subject = subject
        self.owner = owner
        self.prefix = prefix

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(self.erased)

    def subject_of(self, state: dict[str, Any]) -> str:
        value = str(state[self.subject])
        return f"{self.prefix}:{value}" if self.prefix else value

    def owner_of(self, state: dict[str, Any]) -> str | None:
        value = state.get(self.owner) if self.owner else None
        return None if value is None else str(value)


def personal_fields(event_class: type) -> frozenset[str]:
    """The personal fields an event class declares (none if it declares nothing)."""
    declared = getattr(event_class, "personal", None)
    return declared.fields if isinstance(declared, Personal) else frozenset()


class CareAggregate(Aggregate):
    """Base for Guanai aggregates: events carry actor, correlation id and occurred_at."""

    class Event(Aggregate.Event):
        occurred_at: datetime
        actor_id: str
        actor_role: str
        correlation_id: str

    class Created(Event, Aggregate.Created):
        pass

    def _trigger(self, event_class: type[Aggregate.Event], meta: CommandMeta, **kwargs: Any) -> None:
        self.trigger_event(event_class, **kwargs, **meta.fields())
