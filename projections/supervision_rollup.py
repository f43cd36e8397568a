"""Counts per org unit kept by the supervision projection, so that a summary reads a handful of
rows instead of aggregating every person, helper, pairing and visit task beneath a unit.

``sv_rollup`` holds, for every unit on a row's ``org_path`` (village, township, county), how
many rows have each fact, per China day where a period or the clock decides (a registration,
a departure, the day a visit falls due, the day a task's window closes):

- people (active): ``elders``, ``children``, ``with_guardian``, ``agreements_signed`` (children),
  ``uncovered`` / ``with_cadence``, ``tag:<risk tag>``; ``registered`` (any status) and ``left``
  (left or erased) by day; ``due`` by the day the next visit is due;
- helpers (active): ``helpers``, ``helpers_with_people``, ``helper_load`` (the sum of their
  loads), ``at_capacity``, ``over_capacity``, ``load:<n>`` (how many carry n: the maximum);
- pairings (active): ``shape:<shape>``;
- visit tasks: ``visit:<cadence>:<outcome>`` by the day the window closes (a task is due in a
  period when its window closes after the period's start and no later than its end).

``sv_rollup_due`` counts active people by the exact instant their next visit is due: "overdue
now" is the ``due`` days before today plus today's instants before now.

A batch of events names the rows it may change (``Touched``); before its statements run, those
rows' facts are taken out of the counts, and afterwards the same rows' facts are counted in
again. Counts that reach zero are deleted. A superset of the rows that change is as exact as
the rows themselves (a row that did not change is taken out and put back), and the same ids
are used both times, so the counts stay equal to what the base rows say. A rebuild replays
the log into empty tables without moving any count, then counts every row once (``count_all``:
the same facts over all rows, what the batches' moves add up to); the events recorded
meanwhile move the counts as live batches do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg

from domain.helper import Helper
from domain.pairing import Pairing
from domain.person import Person
from domain.visit_log import VisitLog
from domain.visit_task import VisitTask

TABLES = ("sv_rollup", "sv_rollup_due")

# Facts that are no day's: their ``day`` is this (the first day Python's dates know, so that the
# rows read back as they do in a rebuild's comparison; a fact is timeless or by day by its name).
TIMELESS = "0001-01-01"

DDL = f"""
CREATE TABLE IF NOT EXISTS sv_rollup (
    unit_id uuid NOT NULL, fact text NOT NULL, day date NOT NULL DEFAULT '{TIMELESS}', n bigint NOT NULL,
    PRIMARY KEY (unit_id, fact, day)
);
CREATE TABLE IF NOT EXISTS sv_rollup_due (
    unit_id uuid NOT NULL, due_at timestamptz NOT NULL, n bigint NOT NULL, PRIMARY KEY (unit_id, due_at)
);
"""


def china_day(instant: str) -> str:
    """SQL: the calendar day in China time (UTC+8, no daylight saving) of a timestamptz."""
    return f"((({instant}) AT TIME ZONE 'UTC') + interval '8 hours')::date"


_T = f"'{TIMELESS}'::date"
_ACTIVE = "p.status = 'active'"
# Lists of ids go in binary (``%b``): psycopg's text dumper checks every element for quoting
# (about 3 ms for 500 UUIDs, and a batch of 500 visit logs sends about ten such lists), the
# binary one copies their bytes (about 0.1 ms).
_PERSONS = (
    "%(persons)b::uuid[] || ARRAY(SELECT unnest(person_ids) FROM sv_pairings WHERE id = ANY(%(pairings)b::uuid[]))"
)

_PERSON_FACTS = f"""
SELECT unit, f.fact, f.day, count(*) AS n
FROM sv_persons p CROSS JOIN LATERAL unnest(p.org_path) AS unit CROSS JOIN LATERAL (
    SELECT v.fact, v.day FROM (VALUES
        (CASE WHEN {_ACTIVE} THEN CASE p.kind WHEN 'elder' THEN 'elders' WHEN 'child' THEN 'children' END END, {_T}),
        (CASE WHEN {_ACTIVE} AND p.kind = 'child' AND p.has_guardian THEN 'with_guardian' END, {_T}),
        (CASE WHEN {_ACTIVE} AND p.kind = 'child' AND p.agreement_signed_on IS NOT NULL
              THEN 'agreements_signed' END, {_T}),
        (CASE WHEN {_ACTIVE} THEN CASE WHEN p.cadence_days IS NULL THEN 'uncovered' ELSE 'with_cadence' END END, {_T}),
        ('registered', {china_day("p.registered_at")}),
        (CASE WHEN p.status IN ('left', 'erased') AND p.left_at IS NOT NULL THEN 'left' END, {china_day("p.left_at")}),
        (CASE WHEN {_ACTIVE} AND p.due_at IS NOT NULL THEN 'due' END, {china_day("p.due_at")})
    ) AS v(fact, day) WHERE v.fact IS NOT NULL
    UNION ALL
    SELECT 'tag:' || tag, {_T} FROM unnest(p.risk_tags) AS tag WHERE {_ACTIVE}
) AS f
WHERE {{only}}
GROUP BY 1, 2, 3
"""

_HELPER_FACTS = f"""
SELECT unit, f.fact, {_T}, sum(f.n) AS n
FROM sv_helpers h CROSS JOIN LATERAL unnest(h.org_path) AS unit CROSS JOIN LATERAL (VALUES
    ('helpers', 1),
    (CASE WHEN h.load > 0 THEN 'helpers_with_people' END, 1),
    ('helper_load', h.load),
    (CASE WHEN h.load >= h.capacity THEN 'at_capacity' END, 1),
    (CASE WHEN h.load > h.capacity THEN 'over_capacity' END, 1),
    ('load:' || h.load, 1)
) AS f(fact, n)
WHERE h.status = 'active' AND f.fact IS NOT NULL AND {{only}}
GROUP BY 1, 2
"""

_PAIRING_FACTS = f"""
SELECT unit, 'shape:' || pr.shape, {_T}, count(*) AS n
FROM sv_pairings pr CROSS JOIN LATERAL unnest(pr.org_path) AS unit
WHERE pr.status = 'active' AND {{only}}
GROUP BY 1, 2
"""

# The outcome as the compliance figures name it; the day before the window's end (a window
# closing at 00:00 belongs to the day before: due_by in (start, end] is that day in the period).
_OUTCOME = "CASE WHEN v.status = 'completed' THEN CASE WHEN v.late THEN 'late' ELSE 'on_time' END ELSE v.status END"
_VISIT_FACTS = f"""
SELECT unit, 'visit:' || v.cadence || ':' || {_OUTCOME}, {china_day("v.due_by - interval '1 microsecond'")}, count(*)
FROM sv_visits v CROSS JOIN LATERAL unnest(v.org_path) AS unit
WHERE {{only}}
GROUP BY 1, 2, 3
"""

# The only fact of a person that a visit log moves (its statement sets ``last_visit_at`` and
# ``due_at``, nothing else): the day the next visit falls due, as ``_PERSON_FACTS`` counts it.
_VISITED_FACTS = f"""
SELECT unit, 'due', {china_day("p.due_at")}, count(*)
FROM sv_persons p CROSS JOIN LATERAL unnest(p.org_path) AS unit
WHERE {_ACTIVE} AND p.due_at IS NOT NULL AND {{only}}
GROUP BY 1, 2, 3
"""

_DUE_FACTS = f"""
SELECT unit, p.due_at, count(*) AS n
FROM sv_persons p CROSS JOIN LATERAL unnest(p.org_path) AS unit
WHERE {_ACTIVE} AND p.due_at IS NOT NULL AND {{only}}
GROUP BY 1, 2
"""


def _by_path(facts: str, alias: str, only: str = "true", key: tuple[str, ...] = ("fact", "day")) -> str:
    """A fact query (over the rows ``only`` selects), counted by the rows' whole ``org_path``
    first and only then spread over its units: the rows of one village share a path, so the
    units' counts add up a few groups instead of every row times its units, and each row's fact
    and day are worked out once instead of once per unit (the same counts: a sum of sums).
    ``key``: the query's columns after the unit."""
    grouped = facts.format(only=only).replace("SELECT unit, ", f"SELECT {alias}.org_path, ", 1)
    by_path = grouped.replace(f" CROSS JOIN LATERAL unnest({alias}.org_path) AS unit", "", 1)
    if by_path == grouped or grouped == facts.format(only=only):
        raise ValueError(f"not a fact query over unnest({alias}.org_path): {facts}")
    columns = ", ".join(f"g.{k}" for k in key)
    groups = ", ".join(str(n) for n in range(1, len(key) + 2))
    return (
        f"SELECT unit, {columns}, sum(g.n)::bigint FROM ({by_path}) AS g(path, {', '.join(key)}, n)"
        f" CROSS JOIN LATERAL unnest(g.path) AS unit GROUP BY {groups}"
    )


# Each fact query over the rows a batch names (the counts it moves), grouped by path first (a
# batch of 500 visit logs: about a third of the rows to group, and each fact made once a row),
# and over every row: the counts of a whole view, ``_ALL_FACTS`` as plainly written, which what
# a rebuild runs once at its end (``ALL_FACTS_BY_PATH``, below, in ``count_all``) must equal
# (tests/integration/test_supervision_rollup.py compares the two, and the batches' moves with
# the counts of every row).
PERSON_FACTS = _by_path(_PERSON_FACTS, "p", f"p.id = ANY({_PERSONS})")
HELPER_FACTS = _by_path(_HELPER_FACTS, "h", "h.id = ANY(%(helpers)b::uuid[])")
PAIRING_FACTS = _by_path(_PAIRING_FACTS, "pr", "pr.id = ANY(%(pairings)b::uuid[])")
VISIT_FACTS = _by_path(_VISIT_FACTS, "v", "v.id = ANY(%(visits)b::uuid[])")
VISITED_FACTS = _by_path(_VISITED_FACTS, "p", "p.id = ANY(%(visited)b::uuid[])")
DUE_FACTS = _by_path(_DUE_FACTS, "p", f"p.id = ANY({_PERSONS} || %(visited)b::uuid[])", key=("due_at",))
_ALL_FACTS = " UNION ALL ".join(
    f"({q.format(only='true')})" for q in (_PERSON_FACTS, _HELPER_FACTS, _PAIRING_FACTS, _VISIT_FACTS)
)

# What ``_ALL_FACTS`` counts, grouped by path first: what a rebuild's ``count_all`` runs.
ALL_FACTS_BY_PATH = " UNION ALL ".join(
    f"({_by_path(q, alias)})"
    for q, alias in ((_PERSON_FACTS, "p"), (_HELPER_FACTS, "h"), (_PAIRING_FACTS, "pr"), (_VISIT_FACTS, "v"))
)
COUNT_ALL = (
    (
        f"INSERT INTO sv_rollup (unit_id, fact, day, n) SELECT * FROM ({ALL_FACTS_BY_PATH})"
        " AS f(unit_id, fact, day, n) WHERE n <> 0"
    ),
    f"INSERT INTO sv_rollup_due (unit_id, due_at, n) SELECT * FROM ({_DUE_FACTS.format(only='true')}) AS f WHERE n <> 0",
)


def _merge(table: str, key: tuple[str, ...], facts: str) -> str:
    """Add ``%(sign)s`` times the facts' counts to ``table``; a count that reaches zero goes."""
    columns = ", ".join(key)
    on = " AND ".join(f"r.{k} = d.{k}" for k in key)
    return f"""
MERGE INTO {table} r USING (
    SELECT * FROM (SELECT {columns}, n * %(sign)s AS n FROM ({facts}) AS f({columns}, n)) AS s WHERE n <> 0
) AS d ON {on}
WHEN MATCHED AND r.n + d.n = 0 THEN DELETE
WHEN MATCHED THEN UPDATE SET n = r.n + d.n
WHEN NOT MATCHED THEN INSERT ({columns}, n) VALUES ({", ".join(f"d.{k}" for k in key)}, d.n)
"""


def _facts(persons: bool, visited: bool, helpers: bool, pairings: bool, visits: bool) -> str:
    parts = [
        q
        for wanted, q in (
            (persons, PERSON_FACTS),
            (visited, VISITED_FACTS),
            (helpers, HELPER_FACTS),
            (pairings, PAIRING_FACTS),
            (visits, VISIT_FACTS),
        )
        if wanted
    ]
    return " UNION ALL ".join(f"({q})" for q in parts)


ROLLUP_KEY = ("unit_id", "fact", "day")
DUE_KEY = ("unit_id", "due_at")
_MERGE_DUE = _merge("sv_rollup_due", DUE_KEY, DUE_FACTS)
_MERGES: dict[tuple[bool, ...], str] = {}


def _merge_rollup(persons: bool, visited: bool, helpers: bool, pairings: bool, visits: bool) -> str:
    key = (persons, visited, helpers, pairings, visits)
    if key not in _MERGES:
        _MERGES[key] = _merge("sv_rollup", ROLLUP_KEY, _facts(*key))
    return _MERGES[key]


@dataclass
class Touched:
    """The rows of the view a batch of events may change: people (with those of the pairings
    it touches), people whose only change is a visit logged (``visited``: only their due day
    moves, so only that fact is taken out and counted again), helpers, pairings, visit tasks."""

    persons: set[UUID] = field(default_factory=set)
    visited: set[UUID] = field(default_factory=set)
    helpers: set[UUID] = field(default_factory=set)
    pairings: set[UUID] = field(default_factory=set)
    visits: set[UUID] = field(default_factory=set)
    # Aggregates whose first event is in the batch: they have no row before it, so nothing of
    # theirs to take out of the counts (a registration's batch then skips the uncount's two MERGEs).
    created: set[UUID] = field(default_factory=set)

    @classmethod
    def of(cls, events: Iterable[Any]) -> Touched:
        t = cls()
        for e in events:
            if e.originator_version == 1:
                t.created.add(e.originator_id)
            if isinstance(e, Person.Event):
                t.persons.add(e.originator_id)
            elif isinstance(e, Pairing.Event):
                # Its people's coverage may change: those in it (looked up) and those it names.
                t.pairings.add(e.originator_id)
                if isinstance(e, Pairing.Formed):
                    t.persons.update(e.person_ids)
                elif isinstance(e, Pairing.PersonAdded | Pairing.PersonRemoved):
                    t.persons.add(e.person_id)
            elif isinstance(e, Helper.Event):
                t.helpers.add(e.originator_id)
            elif isinstance(e, VisitTask.Event):
                t.visits.add(e.originator_id)
            elif isinstance(e, VisitLog.Recorded):
                t.visited.add(e.person_id)
        if t.pairings:
            # The people of a pairing the batch touches are known only to the database, and one
            # of them may also be in ``visited``: count them all whole rather than one twice.
            t.persons |= t.visited
        t.visited -= t.persons
        return t

    def _run(self, cur: psycopg.Cursor[Any], sign: int, leave_out: set[UUID]) -> None:
        params = {
            "sign": sign,
            "persons": [i for i in self.persons if i not in leave_out],
            "visited": [i for i in self.visited if i not in leave_out],
            "helpers": [i for i in self.helpers if i not in leave_out],
            "pairings": [i for i in self.pairings if i not in leave_out],
            "visits": [i for i in self.visits if i not in leave_out],
        }
        persons = bool(params["persons"] or params["pairings"])
        visited = bool(params["visited"])
        if not (persons or visited or params["helpers"] or params["visits"]):
            return
        cur.execute(
            _merge_rollup(persons, visited, bool(params["helpers"]), bool(params["pairings"]), bool(params["visits"])),
            params,
        )
        if persons or visited:
            cur.execute(_MERGE_DUE, params)

    def uncount(self, cur: psycopg.Cursor[Any]) -> None:
        """Before the batch: take the touched rows out of the counts (those created in the batch
        have none yet)."""
        self._run(cur, -1, self.created)

    def count(self, cur: psycopg.Cursor[Any]) -> None:
        """After the batch: count the same rows in again, as they are now."""
        self._run(cur, 1, set())


def count_all(cur: psycopg.Cursor[Any]) -> None:
    """Count every row of the view into the (empty) rollups at once: what the batches' moves
    add up to, as a rebuild makes the counts once from its finished rows."""
    for statement in COUNT_ALL:
        cur.execute(statement)
