"""Who may do what to which objects: the whole authorization table as data, enforced in one place.

Every operation of the API (method and route path as Litestar knows it) has a ``Rule`` in
``RULES``: the resource and action it is, the roles allowed with their scopes, where its target
object is named (a path parameter) and which body fields name other objects. ``access_guard``,
the app's only guard, enforces it on every request:

- no rule for the route: 403, so an endpoint added without a rule stays closed;
- a role the rule does not list (and ``system`` tokens, always): 403, which says nothing about ids;
- the target named in the path unknown, or outside the caller's scope: 404 with the same body
  (an out-of-scope id cannot be told from one that does not exist);
- an id in the body unknown or outside the scope: 422 ``unknown-reference`` naming the field,
  as the command itself would answer for an unknown id;
- a create naming, as the new object's ``id``, one that exists but that the caller may not read:
  409 ``already-exists``, as for a different body under that id (the same body again answers
  the existing object, so only a caller who may read it gets that answer);
- a list: the ``ListScope`` the handler passes to its view query (``list_scope``), so lists never
  show rows outside the scope and a filter naming something outside it finds nothing.

Scopes (``Scope``): ``all`` (administrators: everything), ``subtree`` (the object's org path
holds the caller's org unit), ``own`` (a volunteer, whose token's ``sub`` is their helper id: a
pairing is theirs while ACTIVE with them among its helpers or in its volunteer group; a person
when in one of those pairings; a visit task when its pairing is theirs; a visit log too, or when
they are among its helpers; a helper record only their own; a group only one they belong to),
``reporter`` (the report's ``reporter_id`` is the token's ``sub``), ``area`` (a township
responder: the reports whose org path holds their unit; a county responder: the reports of their
county that were escalated to the county; for persons: the subjects of those reports) and
``any`` (reference data; for filing a report: any caller the rule lists).

Objects are resolved from the event store, so a check is right at once after a write; the org
path of persons, helpers, groups, pairings, tasks, logs and reports is in their first event and
never changes, so a subtree check reads one event. A responder's persons come from the
``emergency_queue`` view (which trails writes by milliseconds). Everything loaded is kept for
the request: a read handler takes the aggregate the guard loaded (``loaded``).

The package in four parts: ``rules`` (the table: who may do what, as data), ``checks`` (what one
caller may reach, worked out for one request; the views answer the questions the event store
does not), ``guard`` (the app's guard, and what handlers take from its decision) and
``document`` (``access_table()``: ``RULES`` as the Markdown table of ``docs/access.md``). The
names other modules use are re-exported here.
"""

from __future__ import annotations

from api.access.checks import Access, AccessViews, not_found, timeline_hides, unit_id_of
from api.access.document import access_table
from api.access.guard import access_guard, access_of, guards_in_place, list_scope, loaded, unchecked_guard
from api.access.rules import (
    AUDIT_READ,
    DOCS_PATH,
    HELPER_READ,
    PERSON_READ,
    RULES,
    SUPERVISION_PEOPLE,
    WEB_STATIC_PATH,
    Kind,
    Rule,
    Scope,
    route_format,
    rule_for,
)

__all__ = [
    "AUDIT_READ",
    "DOCS_PATH",
    "HELPER_READ",
    "PERSON_READ",
    "RULES",
    "SUPERVISION_PEOPLE",
    "WEB_STATIC_PATH",
    "Access",
    "AccessViews",
    "Kind",
    "Rule",
    "Scope",
    "access_guard",
    "access_of",
    "access_table",
    "guards_in_place",
    "list_scope",
    "loaded",
    "not_found",
    "route_format",
    "rule_for",
    "timeline_hides",
    "unchecked_guard",
    "unit_id_of",
]
