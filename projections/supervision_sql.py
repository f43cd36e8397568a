"""The supervision view's queries (``SupervisionView``). Parameters: ``root`` (an org unit id:
everything whose ``org_path`` contains it), ``at`` (the index in ``org_path`` of the units one
level below the root), ``start``/``end`` (the period, end exclusive), ``now``, and
``limit``/``offset`` for lists. Lists carry ``_total`` (a window count).

Figures come per unit one level down and for the root in one pass (``GROUPING SETS``): the row
whose ``unit`` is NULL is the root's total."""

from __future__ import annotations

UNDER = "org_path @> ARRAY[%(root)s]::uuid[]"
NOW = "%(now)s::timestamptz"
PAGE = "LIMIT %(limit)s OFFSET %(offset)s"
UNIT = "org_path[%(at)s]"
BY_UNIT = f"GROUP BY GROUPING SETS (({UNIT}), ())"
ACTIVE_P = "status = 'active'"

PEOPLE = f"""
SELECT {UNIT} AS unit, GROUPING({UNIT}) = 1 AS total,
       count(*) FILTER (WHERE {ACTIVE_P} AND kind = 'elder') AS elders,
       count(*) FILTER (WHERE {ACTIVE_P} AND kind = 'child') AS children,
       count(*) FILTER (WHERE {ACTIVE_P} AND kind = 'child' AND has_guardian) AS with_guardian,
       count(*) FILTER (WHERE {ACTIVE_P} AND kind = 'child' AND agreement_signed_on IS NOT NULL) AS agreements_signed,
       count(*) FILTER (WHERE registered_at >= %(start)s AND registered_at < %(end)s) AS registered_in_period,
       count(*) FILTER (WHERE status IN ('left', 'erased') AND left_at >= %(start)s AND left_at < %(end)s) AS left_in_period,
       count(*) FILTER (WHERE {ACTIVE_P} AND cadence_days IS NULL) AS uncovered,
       count(*) FILTER (WHERE {ACTIVE_P} AND cadence_days IS NOT NULL) AS with_cadence,
       count(*) FILTER (WHERE {ACTIVE_P} AND due_at < {NOW}) AS overdue
FROM sv_persons WHERE {UNDER} {BY_UNIT}
"""

TAGS = f"""
SELECT tag, count(*) AS n FROM sv_persons, unnest(risk_tags) AS tag
WHERE {ACTIVE_P} AND {UNDER} GROUP BY tag
"""

HELPERS = f"""
SELECT {UNIT} AS unit, GROUPING({UNIT}) = 1 AS total,
       count(*) AS active, count(*) FILTER (WHERE load > 0) AS with_people, coalesce(sum(load), 0)::bigint AS load,
       coalesce(max(load), 0) AS max_load, count(*) FILTER (WHERE load >= capacity) AS at_capacity,
       count(*) FILTER (WHERE load > capacity) AS over_capacity
FROM sv_helpers WHERE {ACTIVE_P} AND {UNDER} {BY_UNIT}
"""

SHAPES = f"SELECT shape, count(*) AS n FROM sv_pairings WHERE {ACTIVE_P} AND {UNDER} GROUP BY shape"

UNIT = "SELECT id, code, name, level, parent_id, org_path FROM sv_units WHERE id = %(root)s"
# The views' position (the lowest of ``views``, projection names) in the same round trip as a read.
VIEWS_POSITION = "SELECT min(position) AS position FROM projection_tracking WHERE name = ANY(%(views)s)"

CHILD_UNITS = "SELECT id, code, name, level FROM sv_units WHERE parent_id = %(root)s ORDER BY code"

OVERDUE = f"""
SELECT p.id, p.kind, p.village_id, u.code AS village_code, u.name AS village_name, p.risk_tags,
       p.cadence_days, p.last_visit_at, p.due_at,
       floor(extract(epoch FROM {NOW} - p.due_at) / 86400)::int AS days_overdue, count(*) OVER () AS _total
FROM sv_persons p LEFT JOIN sv_units u ON u.id = p.village_id
WHERE p.status = 'active' AND p.{UNDER} AND p.due_at < {NOW}
ORDER BY p.due_at, p.id {PAGE}
"""

UNCOVERED = f"""
SELECT p.id, p.kind, p.village_id, u.code AS village_code, u.name AS village_name, p.risk_tags,
       p.registered_at, count(*) OVER () AS _total
FROM sv_persons p LEFT JOIN sv_units u ON u.id = p.village_id
WHERE p.status = 'active' AND p.{UNDER} AND p.cadence_days IS NULL
ORDER BY p.registered_position {PAGE}
"""

# A window closes at 00:00 after its last day: a task is due in the period when that day is in it.
VISITS = f"""
SELECT cadence,
       coalesce(sum(n) FILTER (WHERE outcome <> 'cancelled'), 0) AS due,
       coalesce(sum(n) FILTER (WHERE outcome = 'on_time'), 0) AS on_time,
       coalesce(sum(n) FILTER (WHERE outcome = 'late'), 0) AS late,
       coalesce(sum(n) FILTER (WHERE outcome = 'missed'), 0) AS missed,
       coalesce(sum(n) FILTER (WHERE outcome = 'open'), 0) AS open,
       coalesce(sum(n) FILTER (WHERE outcome = 'cancelled'), 0) AS cancelled
FROM sv_visit_counts WHERE {UNDER} AND due_by > %(start)s AND due_by <= %(end)s
GROUP BY cadence HAVING sum(n) > 0 ORDER BY cadence
"""

# Routed and waiting for an acknowledgement at its current level past that level's deadline.
_OPEN_PAST_DEADLINE = f"status = 'routed' AND deadline < {NOW}"
# A report linked as a duplicate is the same incident: counted once, under the original.
_ORIGINAL = "duplicate_of IS NULL"
_SECONDS = "extract(epoch FROM {} - reported_at)"

EMERGENCY_TOTALS = f"""
SELECT count(*) AS reported, count(*) FILTER (WHERE escalations > 0) AS escalated,
       count(*) FILTER (WHERE resolved_at IS NOT NULL) AS resolved,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY {_SECONDS.format("acknowledged_at")}) AS acknowledge_median_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY {_SECONDS.format("acknowledged_at")}) AS acknowledge_p90_s,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY {_SECONDS.format("resolved_at")}) AS resolve_median_s,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY {_SECONDS.format("resolved_at")}) AS resolve_p90_s,
       (SELECT count(*) FROM sv_emergencies WHERE {UNDER} AND {_OPEN_PAST_DEADLINE}) AS open_past_deadline
FROM sv_emergencies WHERE {UNDER} AND {_ORIGINAL} AND reported_at >= %(start)s AND reported_at < %(end)s
"""

EMERGENCY_COUNTS = f"""
SELECT category, severity, count(*) AS n FROM sv_emergencies
WHERE {UNDER} AND {_ORIGINAL} AND reported_at >= %(start)s AND reported_at < %(end)s GROUP BY 1, 2
"""

PAST_DEADLINE = f"""
SELECT e.id, e.person_id, t.code AS township_code, t.name AS township_name, e.category,
       e.severity, e.level, e.reported_at, e.deadline, e.escalations,
       floor(extract(epoch FROM {NOW} - e.deadline) / 60)::int AS minutes_past_deadline, count(*) OVER () AS _total
FROM sv_emergencies e LEFT JOIN sv_units t ON t.id = e.org_path[2]
WHERE e.{UNDER} AND e.{_OPEN_PAST_DEADLINE} AND e.level >= %(min_level)s
ORDER BY e.deadline, e.id {PAGE}
"""

# The same figures from the counts the projection keeps per unit (projections/supervision_rollup.py):
# (unit, fact, n) rows for the root and the units one level down; the period's facts for the
# root alone (``unit`` NULL); people overdue now per unit (fact ``overdue``): due on a day
# before today, or today before now. Parameters also ``first``/``last`` (the period's days),
# ``today`` (China) and ``today_start`` (its first instant).
_UNITS = "unit_id = ANY(ARRAY(SELECT id FROM sv_units WHERE parent_id = %(root)s) || %(root)s::uuid)"
ROLLUP = f"""
SELECT unit_id AS unit, fact, n FROM sv_rollup WHERE {_UNITS} AND day = '0001-01-01'
UNION ALL
SELECT NULL, fact, sum(n)::bigint FROM sv_rollup
WHERE unit_id = %(root)s AND (fact IN ('registered', 'left') OR fact LIKE 'visit:%%')
  AND day >= %(first)s AND day <= %(last)s
GROUP BY fact
UNION ALL
SELECT unit_id, 'overdue', sum(n)::bigint FROM (
    SELECT unit_id, n FROM sv_rollup WHERE {_UNITS} AND fact = 'due' AND day < %(today)s
    UNION ALL
    SELECT unit_id, n FROM sv_rollup_due WHERE {_UNITS} AND due_at >= %(today_start)s AND due_at < {NOW}
) AS due GROUP BY unit_id
"""

# Visit compliance from the tasks themselves (what the counts must equal).
VISITS_FROM_TASKS = f"""
SELECT cadence,
       count(*) FILTER (WHERE status <> 'cancelled') AS due,
       count(*) FILTER (WHERE status = 'completed' AND NOT late) AS on_time,
       count(*) FILTER (WHERE status = 'completed' AND late) AS late,
       count(*) FILTER (WHERE status = 'missed') AS missed,
       count(*) FILTER (WHERE status = 'open') AS open,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled
FROM sv_visits WHERE {UNDER} AND due_by > %(start)s AND due_by <= %(end)s
GROUP BY cadence ORDER BY cadence
"""
