"""Which rows of a list an actor may see, as SQL over the views.

The API works out a ``ListScope`` from the caller's token (``api/access/rules.py``) and passes it to
the view query methods, which AND its ``clause`` into their WHERE. A scope is the union of its
parts: everything (administrators), a subtree (rows whose ``org_path`` holds a unit), a
volunteer's own pairings, their people, groups and record, and a responder's area (emergency
reports under a unit, from a level up). A scope with no part lets nothing through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

# The list tables a scope knows how to narrow.
TABLES = frozenset(
    {
        "reg_persons",
        "reg_helpers",
        "reg_groups",
        "reg_pairings",
        "visit_tasks",
        "visit_logs",
        "emergency_queue",
        "accounts",
    }
)


@dataclass(frozen=True)
class Own:
    """A volunteer's own things: their helper record, active pairings, the people in them, groups."""

    helper_id: UUID
    pairing_ids: tuple[UUID, ...] = ()
    person_ids: tuple[UUID, ...] = ()
    group_ids: tuple[UUID, ...] = ()


@dataclass(frozen=True)
class Area:
    """A responder's reports: under ``unit``, at ``min_level`` or above at some point (levels
    only rise, so the current level says it)."""

    unit: UUID
    min_level: int = 0


@dataclass(frozen=True)
class ListScope:
    everything: bool = False
    subtree: UUID | None = None
    own: Own | None = None
    area: Area | None = None

    def clause(self, table: str) -> tuple[str, list[Any]]:
        """A condition on ``table``'s own columns (unqualified), with its ``%s`` parameters."""
        if table not in TABLES:
            raise ValueError(f"no scope rules for {table}")
        if self.everything:
            return "true", []
        parts: list[tuple[str, list[Any]]] = []
        if self.subtree is not None:
            parts.append(("org_path @> ARRAY[%s]::uuid[]", [self.subtree]))
        if self.own is not None and (own := _own(table, self.own)):
            parts.append(own)
        if self.area is not None and (area := _area(table, self.area)):
            parts.append(area)
        if not parts:
            return "false", []
        return "(" + " OR ".join(c for c, _ in parts) + ")", [p for _, ps in parts for p in ps]


EVERYTHING = ListScope(everything=True)
NOTHING = ListScope()


def _own(table: str, own: Own) -> tuple[str, list[Any]] | None:
    if table == "reg_persons":
        return "id = ANY(%s::uuid[])", [list(own.person_ids)]
    if table == "reg_helpers":
        return "id = %s", [own.helper_id]
    if table == "reg_groups":
        return "id = ANY(%s::uuid[])", [list(own.group_ids)]
    if table == "reg_pairings":
        return "id = ANY(%s::uuid[])", [list(own.pairing_ids)]
    if table == "visit_tasks":
        return "pairing_id = ANY(%s::uuid[])", [list(own.pairing_ids)]
    if table == "visit_logs":
        return (
            "(pairing_id = ANY(%s::uuid[]) OR helper_ids @> ARRAY[%s]::uuid[])",
            [list(own.pairing_ids), own.helper_id],
        )
    return None


def _area(table: str, area: Area) -> tuple[str, list[Any]] | None:
    if table == "emergency_queue":
        return "(org_path @> ARRAY[%s]::uuid[] AND level >= %s)", [area.unit, area.min_level]
    if table == "reg_persons":
        # The persons a responder may see are the subjects of the reports they may see.
        return (
            (
                "id IN (SELECT q.person_id FROM emergency_queue q WHERE q.person_id IS NOT NULL"
                " AND q.org_path @> ARRAY[%s]::uuid[] AND q.level >= %s)"
            ),
            [area.unit, area.min_level],
        )
    return None
