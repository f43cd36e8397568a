"""The supervision view's visit-task and emergency-report facts (see projections/supervision.py).

``sv_visits`` holds one row per visit task (its person, cadence, due window, outcome, when the
visit took place and whether it was logged only after being marked missed); visit logs move a person's last visit;
``sv_emergencies`` holds one row per emergency report (category, severity, when reported, first
acknowledged and resolved, escalations, the deadline it waits on, duplicates). Handlers
are keyed by event class; the events of these aggregates that do not change the view are
listed in ``VISIT_IGNORED`` and ``EMERGENCY_IGNORED``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from domain.emergency import EmergencyReport
from domain.visit_log import VisitLog
from domain.visit_task import VisitTask
from domain.vocabulary import CADENCE_DAYS, Cadence

# Days, weeks and periods are counted in China Standard Time, where the work happens.
CHINA = timezone(timedelta(hours=8))


def china_midnight(day: date) -> datetime:
    return datetime.combine(day, time(), CHINA).astimezone(UTC)


def cadence_days(cadence: str) -> int:
    return CADENCE_DAYS[Cadence(cadence)]


VISIT_DDL = """
CREATE TABLE IF NOT EXISTS sv_visits (
    id uuid PRIMARY KEY, person_id uuid NOT NULL, pairing_id uuid NOT NULL, org_path uuid[] NOT NULL,
    cadence text NOT NULL, mode text NOT NULL, due_from timestamptz NOT NULL, due_by timestamptz NOT NULL,
    status text NOT NULL, visited_at timestamptz, late boolean NOT NULL DEFAULT false
) WITH (fillfactor = 70);
CREATE INDEX IF NOT EXISTS sv_visits_path ON sv_visits USING gin (org_path);
CREATE TABLE IF NOT EXISTS sv_visit_counts (
    org_path uuid[] NOT NULL, cadence text NOT NULL, due_by timestamptz NOT NULL, outcome text NOT NULL,
    n int NOT NULL, PRIMARY KEY (org_path, cadence, due_by, outcome)
);
CREATE INDEX IF NOT EXISTS sv_visit_counts_path ON sv_visit_counts USING gin (org_path);
"""

EMERGENCY_DDL = """
CREATE TABLE IF NOT EXISTS sv_emergencies (
    id uuid PRIMARY KEY, person_id uuid, org_path uuid[] NOT NULL, category text NOT NULL, severity text NOT NULL,
    reported_at timestamptz NOT NULL, deadline timestamptz, acknowledged_at timestamptz, resolved_at timestamptz,
    escalations int NOT NULL DEFAULT 0, level int NOT NULL DEFAULT 0, status text NOT NULL, duplicate_of uuid
);
CREATE INDEX IF NOT EXISTS sv_emergencies_path ON sv_emergencies USING gin (org_path);
"""


def _set(table: str, assignments: str) -> str:
    return f"UPDATE {table} SET {assignments} WHERE id = %(originator_id)s"


# Compliance figures sum ``sv_visit_counts`` (tasks per place, cadence, window end and outcome)
# rather than scan every task: a task's change of outcome moves it from one count to another.
_OUTCOME = "CASE WHEN v.status = 'completed' THEN CASE WHEN v.late THEN 'late' ELSE 'on_time' END ELSE v.status END"
_UNCOUNT = (
    "UPDATE sv_visit_counts c SET n = c.n - 1 FROM sv_visits v WHERE v.id = %(originator_id)s"
    f" AND (c.org_path, c.cadence, c.due_by, c.outcome) = (v.org_path, v.cadence, v.due_by, {_OUTCOME})"
)
_COUNT = (
    f"INSERT INTO sv_visit_counts SELECT v.org_path, v.cadence, v.due_by, {_OUTCOME}, 1 FROM sv_visits v"
    " WHERE v.id = %(originator_id)s"
    " ON CONFLICT (org_path, cadence, due_by, outcome) DO UPDATE SET n = sv_visit_counts.n + 1"
)


# The statement of each visit-task event on the task's own row (``sv_visits``): one event at a
# time it is wrapped in the task's uncount and count (``VISIT_HANDLERS``); a batch instead takes
# the batch's tasks out of the counts once before its statements and counts them in once after
# (``UNCOUNT_TASKS``, ``COUNT_TASKS``).
VISIT_TASK_STATEMENTS: dict[type, str] = {
    # Claims come and go while a task stays open: compliance needs only the outcome.
    VisitTask.Scheduled: (
        "INSERT INTO sv_visits (id, person_id, pairing_id, org_path, cadence, mode, due_from, due_by, status)"
        " VALUES (%(originator_id)s, %(person_id)s, %(pairing_id)s, %(org_path)s, %(cadence)s, %(mode)s,"
        " %(opens_at)s, %(closes_at)s, 'open')"
    ),
    # A visit always takes place inside the window; it is late when its log came after the task
    # had been marked missed (logged later, from a village without signal), as the domain says.
    VisitTask.Completed: _set("sv_visits", "status = 'completed', visited_at = %(occurred_at)s, late = %(late)s"),
    VisitTask.Missed: _set("sv_visits", "status = 'missed'"),
    VisitTask.Cancelled: _set("sv_visits", "status = 'cancelled'"),
}
# The tasks ``%s`` (a uuid[]) grouped by the count they are in. A count that reaches zero is
# deleted (one event at a time it stays, at zero: the figures sum ``n``, so both read the same).
_ALL_TASK_COUNTS = (
    f"SELECT v.org_path, v.cadence, v.due_by, {_OUTCOME} AS outcome, count(*)::int AS k FROM sv_visits v"
    " {where} GROUP BY 1, 2, 3, 4"
)
_TASK_COUNTS = _ALL_TASK_COUNTS.format(where="WHERE v.id = ANY(%b::uuid[])")
UNCOUNT_TASKS = (
    f"MERGE INTO sv_visit_counts c USING ({_TASK_COUNTS}) g"
    " ON c.org_path = g.org_path AND c.cadence = g.cadence AND c.due_by = g.due_by AND c.outcome = g.outcome"
    " WHEN MATCHED AND c.n = g.k THEN DELETE WHEN MATCHED THEN UPDATE SET n = c.n - g.k"
)
COUNT_TASKS = (
    f"INSERT INTO sv_visit_counts SELECT org_path, cadence, due_by, outcome, k FROM ({_TASK_COUNTS}) g"
    " ON CONFLICT (org_path, cadence, due_by, outcome) DO UPDATE SET n = sv_visit_counts.n + EXCLUDED.n"
)

# Every task counted at once into the (empty) counts: what a rebuild makes from its finished rows.
COUNT_ALL_TASKS = f"INSERT INTO sv_visit_counts SELECT * FROM ({_ALL_TASK_COUNTS.format(where='')}) g"

VISIT_HANDLERS: dict[type, list[str]] = {
    VisitTask.Scheduled: [VISIT_TASK_STATEMENTS[VisitTask.Scheduled], _COUNT],
    **{
        cls: [_UNCOUNT, statement, _COUNT]
        for cls, statement in VISIT_TASK_STATEMENTS.items()
        if cls is not VisitTask.Scheduled
    },
    # Planned or not, a logged visit is the person's latest visit if none later is known.
    VisitLog.Recorded: [
        (
            "UPDATE sv_persons SET last_visit_at = greatest(last_visit_at, %(visited_at)s),"
            " due_at = greatest(last_visit_at, %(visited_at)s) + make_interval(days => cadence_days)"
            " WHERE id = %(person_id)s"
        )
    ],
}
VISIT_DERIVED: dict[type, Callable[[Any], dict[str, Any]]] = {}
# Claims come and go while a task stays open; an emergency flagged on a log is its own report.
VISIT_IGNORED: frozenset[type] = frozenset({
    VisitTask.Claimed, VisitTask.Assigned, VisitTask.ClaimReleased, VisitTask.ClaimExpired, VisitLog.EmergencyFlagged,
})  # fmt: skip

EMERGENCY_HANDLERS: dict[type, list[str]] = {
    EmergencyReport.Reported: [
        (
            "INSERT INTO sv_emergencies (id, person_id, org_path, category, severity, reported_at, status) VALUES"
            " (%(originator_id)s, %(person_id)s, %(org_path)s, %(category)s, %(severity)s, %(occurred_at)s, 'reported')"
        )
    ],
    EmergencyReport.Routed: [
        _set(
            "sv_emergencies",
            "status = CASE WHEN status IN ('reported', 'escalated') THEN 'routed' ELSE status END,"
            " deadline = %(deadline)s",
        )
    ],
    # Time to acknowledge is to the first acknowledgement, at whatever level.
    EmergencyReport.Acknowledged: [
        _set("sv_emergencies", "status = 'acknowledged', acknowledged_at = coalesce(acknowledged_at, %(occurred_at)s)")
    ],
    EmergencyReport.Escalated: [
        _set("sv_emergencies", "status = 'escalated', level = %(to_level)s, escalations = escalations + 1")
    ],
    EmergencyReport.Resolved: [_set("sv_emergencies", "status = 'resolved', resolved_at = %(occurred_at)s")],
    EmergencyReport.Reopened: [_set("sv_emergencies", "status = 'acknowledged', resolved_at = NULL")],
    EmergencyReport.Closed: [_set("sv_emergencies", "status = 'closed'")],
    EmergencyReport.LinkedAsDuplicate: [_set("sv_emergencies", "duplicate_of = %(duplicate_of)s")],
}
EMERGENCY_DERIVED: dict[type, Callable[[Any], dict[str, Any]]] = {}
# What responders did on the way is the report's own record, not a supervision figure.
EMERGENCY_IGNORED: frozenset[type] = frozenset({EmergencyReport.ActionRecorded})
