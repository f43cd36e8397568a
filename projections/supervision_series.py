"""Series for the supervision charts: visit outcomes week by week, and visits and response times
per unit one level down, over the same tables (``sv_visit_counts``, ``sv_emergencies``) and with
the same rules as ``SupervisionView.summary`` (a task counts in the period its window closes in;
a report linked as a duplicate counts once). The web client's supervisor page draws them; a
period's sums over units or weeks equal the summary's figures for it.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from uuid import UUID

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from projections.supervision_view import Period

_OUTCOMES = """
       coalesce(sum(c.n) FILTER (WHERE c.outcome = 'on_time'), 0)::int AS on_time,
       coalesce(sum(c.n) FILTER (WHERE c.outcome = 'late'), 0)::int AS late,
       coalesce(sum(c.n) FILTER (WHERE c.outcome = 'missed'), 0)::int AS missed,
       coalesce(sum(c.n) FILTER (WHERE c.outcome = 'open'), 0)::int AS open"""

# One row per week (given as start/end instants, end exclusive), in order, zeros included.
VISITS_BY_WEEK = f"""
SELECT w.i, {_OUTCOMES}
FROM unnest(%(starts)s::timestamptz[], %(ends)s::timestamptz[]) WITH ORDINALITY AS w(start_at, end_at, i)
LEFT JOIN sv_visit_counts c
       ON c.org_path @> ARRAY[%(root)s]::uuid[] AND c.due_by > w.start_at AND c.due_by <= w.end_at
GROUP BY w.i ORDER BY w.i
"""

VISITS_BY_UNIT = f"""
SELECT u.id, u.code, u.name, u.level, {_OUTCOMES}
FROM sv_units u
LEFT JOIN sv_visit_counts c
       ON c.org_path @> ARRAY[u.id]::uuid[] AND c.due_by > %(start)s AND c.due_by <= %(end)s
WHERE u.parent_id = %(root)s
GROUP BY u.id, u.code, u.name, u.level ORDER BY u.code
"""

_SECONDS = "extract(epoch FROM e.{} - e.reported_at)"
RESPONSE_BY_UNIT = f"""
SELECT u.id, u.code, u.name, u.level, count(e.id)::int AS reported,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY {_SECONDS.format("acknowledged_at")}) AS acknowledge_median_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY {_SECONDS.format("acknowledged_at")}) AS acknowledge_p90_s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY {_SECONDS.format("resolved_at")}) AS resolve_median_s
FROM sv_units u
LEFT JOIN sv_emergencies e
       ON e.org_path @> ARRAY[u.id]::uuid[] AND e.duplicate_of IS NULL
      AND e.reported_at >= %(start)s AND e.reported_at < %(end)s
WHERE u.parent_id = %(root)s
GROUP BY u.id, u.code, u.name, u.level ORDER BY u.code
"""


def weeks_up_to(today: date, count: int) -> list[Period]:
    """The ``count`` calendar weeks (Monday first) ending with the one that holds ``today``."""
    this_week = Period.named("week", today)
    return [
        Period("week", this_week.first - timedelta(weeks=n), this_week.last - timedelta(weeks=n))
        for n in range(count - 1, -1, -1)
    ]


class SupervisionSeries:
    """The charts' figures for one unit, read from the supervision view's tables."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    def _all(self, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(query, params).fetchall()

    def counties(self) -> list[dict[str, Any]]:
        """The root units (counties), in code order: where an administrator's reading starts."""
        return self._all("SELECT id, code, name, level FROM sv_units WHERE parent_id IS NULL ORDER BY code", {})

    def children(self, unit_id: UUID) -> list[dict[str, Any]]:
        """The units one level below, in code order."""
        return self._all(
            "SELECT id, code, name, level FROM sv_units WHERE parent_id = %(root)s ORDER BY code", {"root": unit_id}
        )

    def visits_by_week(self, unit_id: UUID, weeks: list[Period]) -> list[dict[str, Any]]:
        """Visit outcomes of the tasks whose window closed in each week: on time, late, missed, open."""
        params = {"root": unit_id, "starts": [w.start for w in weeks], "ends": [w.end for w in weeks]}
        rows = self._all(VISITS_BY_WEEK, params)
        return [
            {"week": week.first, **{k: v for k, v in row.items() if k != "i"}}
            for week, row in zip(weeks, rows, strict=True)
        ]

    def visits_by_unit(self, unit_id: UUID, period: Period) -> list[dict[str, Any]]:
        """Visit outcomes in the period per unit one level down (in code order, zeros included)."""
        return self._all(VISITS_BY_UNIT, {"root": unit_id, "start": period.start, "end": period.end})

    def response_by_unit(self, unit_id: UUID, period: Period) -> list[dict[str, Any]]:
        """Reports filed in the period per unit one level down, with acknowledge and resolve times
        (median and p90 of seconds from the report; none while nothing was acknowledged)."""
        rows = self._all(RESPONSE_BY_UNIT, {"root": unit_id, "start": period.start, "end": period.end})
        for row in rows:
            for key in ("acknowledge_median_s", "acknowledge_p90_s", "resolve_median_s"):
                row[key] = round(row[key], 1) if row[key] is not None else None
        return rows
