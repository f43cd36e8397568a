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
``access_table()`` renders ``RULES`` as the Markdown table of ``docs/access.md``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl
from uuid import UUID

import msgspec
from eventsourcing.application import AggregateNotFoundError
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from psycopg_pool import ConnectionPool

from api.auth import Actor, actor_of
from api.problems import ProblemError
from application.care import AlreadyExistsError, CareApplication, NotFoundError, UnknownReferenceError
from domain.account import Account
from domain.emergency import EmergencyReport
from domain.group import VolunteerGroup
from domain.helper import Helper
from domain.org_unit import OrgUnit, org_unit_id
from domain.pairing import Pairing
from domain.person import Person
from domain.visit_log import VisitLog
from domain.visit_task import HelperClaims, VisitTask
from domain.vocabulary import ActorRole
from projections.scope import EVERYTHING, NOTHING, Area, ListScope, Own

R = ActorRole
AD, CS, TS = R.ADMINISTRATOR, R.COUNTY_SUPERVISOR, R.TOWNSHIP_SUPERVISOR
VC, CD, TR, CR = R.VILLAGE_CADRE, R.CHILD_DIRECTOR, R.TOWNSHIP_RESPONDER, R.COUNTY_RESPONDER
AU, V = R.AUDITOR, R.VOLUNTEER
# The table's columns, in order; ``system`` tokens (the workers) get nothing over HTTP.
ROLES = (AD, CS, TS, VC, CD, TR, CR, AU, V)
ROLE_CODES = {AD: "AD", CS: "CS", TS: "TS", VC: "VC", CD: "CD", TR: "TR", CR: "CR", AU: "AU", V: "V"}
DOCS_PATH = "/schema"  # the OpenAPI pages: public, like /health
WEB_STATIC_PATH = "/app/static"  # the web client's scripts, styles and vendored files: public
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Scope(StrEnum):
    ANY = "any"
    ALL = "all"
    SUBTREE = "subtree"
    OWN = "own"
    REPORTER = "reporter"
    AREA = "area"


class Kind(StrEnum):
    """What an id names; the value is how answers name it ("no person with id ...")."""

    ORG_UNIT = "org unit"
    PERSON = "person"
    HELPER = "helper"
    GROUP = "group"
    PAIRING = "pairing"
    VISIT_TASK = "visit task"
    VISIT_LOG = "visit log"
    EMERGENCY = "emergency report"
    STREAM = "stream"  # any aggregate's events (the audit)
    ACCOUNT = "account"
    IMPORT = "import"  # an import job (guanai_import_jobs): its unit's org path decides


AGGREGATES: dict[Kind, type[Any]] = {
    Kind.ORG_UNIT: OrgUnit,
    Kind.PERSON: Person,
    Kind.HELPER: Helper,
    Kind.GROUP: VolunteerGroup,
    Kind.PAIRING: Pairing,
    Kind.VISIT_TASK: VisitTask,
    Kind.VISIT_LOG: VisitLog,
    Kind.EMERGENCY: EmergencyReport,
    Kind.ACCOUNT: Account,
}

Grants = Mapping[ActorRole, frozenset[Scope]]


def grants(**by_scope: Iterable[ActorRole]) -> dict[ActorRole, frozenset[Scope]]:
    """``grants(all=[AD], subtree=[CS, TS])``: each role with the union of its scopes."""
    out: dict[ActorRole, set[Scope]] = {}
    for name, roles in by_scope.items():
        for role in roles:
            out.setdefault(role, set()).add(Scope(name))
    return {role: frozenset(scopes) for role, scopes in out.items()}


@dataclass(frozen=True)
class Target:
    """The path parameter naming the object acted on."""

    param: str
    kind: Kind
    by_code: bool = False  # an org unit may be named by its 12-digit division code too
    in_query: bool = False  # a query parameter rather than a path parameter (absent: not checked)


@dataclass(frozen=True)
class Ref:
    """A body field naming another object (a list field names one per element)."""

    field: str
    kind: Kind
    scope: Grants | None = None  # whose scope applies: the rule's (None) or this one
    required: bool = False  # a caller without scope ``all`` must name it


@dataclass(frozen=True)
class Rule:
    method: str
    path: str
    resource: str
    action: str
    grants: Grants = field(default_factory=dict)
    target: Target | None = None
    refs: tuple[Ref, ...] = ()
    lists: Kind | None = None  # a list of these, narrowed to the caller's scope
    filters: tuple[Ref, ...] = ()  # query parameters of a list naming objects
    public: bool = False  # no token needed
    creates: Kind | None = None  # a create whose body may choose the new object's ``id``

    @property
    def key(self) -> tuple[str, str]:
        return self.method, route_format(self.path)

    @property
    def writes(self) -> bool:
        return self.method not in SAFE_METHODS


def route_format(path: str) -> str:
    """``/persons/{person_id:uuid}`` -> ``/persons/{person_id}`` (Litestar's path template)."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


# ---- the table ------------------------------------------------------------------------------

HUMANS = ROLES
SUPERVISORS = (CS, TS)
VILLAGE = (VC, CD)
RESPONDERS = (TR, CR)

PUBLIC_DATA = grants(any=HUMANS)
UNIT_WRITE = grants(all=[AD], subtree=[CS])
PERSON_READ = grants(all=[AD], subtree=[*SUPERVISORS, *VILLAGE, AU], area=RESPONDERS, own=[V])
PERSON_WRITE = grants(all=[AD], subtree=[*SUPERVISORS, *VILLAGE])
HELPER_READ = grants(all=[AD], subtree=[*SUPERVISORS, *VILLAGE, AU], own=[V])
HELPER_WRITE = grants(all=[AD], subtree=SUPERVISORS)
GROUP_READ = HELPER_READ
GROUP_WRITE = HELPER_WRITE
PAIRING_READ = HELPER_READ
PAIRING_WRITE = PERSON_WRITE
VISIT_READ = HELPER_READ
VISIT_WRITE = grants(all=[AD], subtree=[*SUPERVISORS, *VILLAGE], own=[V])
FILE_REPORT = grants(all=[AD], any=[*SUPERVISORS, *VILLAGE, *RESPONDERS, V])
REPORT_READ = grants(
    all=[AD], subtree=[*SUPERVISORS, AU], area=RESPONDERS, reporter=[*SUPERVISORS, *VILLAGE, *RESPONDERS, V]
)
QUEUE = grants(all=[AD], subtree=[*SUPERVISORS, AU], area=RESPONDERS)
RESPOND = grants(all=[AD], subtree=SUPERVISORS, area=RESPONDERS)
CLOSE = grants(all=[AD], subtree=SUPERVISORS)
ROSTER_READ = grants(all=[AD], subtree=[*SUPERVISORS, *RESPONDERS, AU])
ROSTER_WRITE = grants(all=[AD], subtree=SUPERVISORS)
SUPERVISION = grants(all=[AD], subtree=[*SUPERVISORS, *VILLAGE, *RESPONDERS, AU])
# The uncovered and overdue lists name everyone beneath a unit: responders, whose people are the
# subjects of their area's reports, read the figures and the reports past deadline, not these.
SUPERVISION_PEOPLE = grants(all=[AD], subtree=[*SUPERVISORS, *VILLAGE, AU])
AUDIT_READ = grants(all=[AD], subtree=[AU])
AUDIT_CHECK = grants(all=[AD], any=[AU])
TOKENS = grants(all=[AD])
# Accounts: a township supervisor opens and manages those of their township, a village cadre
# those of their village (which roles each may grant is the domain's GRANTS); auditors and
# county supervisors read them; sign-ins are for auditors.
ACCOUNT_WRITE = grants(all=[AD], subtree=[TS, VC])
ACCOUNT_READ = grants(all=[AD], subtree=[CS, TS, VC, AU])
SIGN_INS = grants(all=[AD], subtree=[TS, AU])
SELF = grants(any=HUMANS)  # one's own session and second factor
ERASE = grants(all=[AD])  # crypto-shredding is final: administrators only
# Onboarding a county's registry sheet writes thousands of people at once: the supervisors of the
# county or township imported into (and administrators), not village cadres; the job, its report
# and the marked-up workbook are theirs to read, within the same scope.
IMPORT = grants(all=[AD], subtree=SUPERVISORS)

UNIT = Target("unit_id", Kind.ORG_UNIT)
PERSON = Target("person_id", Kind.PERSON)
HELPER = Target("helper_id", Kind.HELPER)
GROUP = Target("group_id", Kind.GROUP)
PAIRING = Target("pairing_id", Kind.PAIRING)
TASK = Target("task_id", Kind.VISIT_TASK)
LOG = Target("log_id", Kind.VISIT_LOG)
REPORT = Target("report_id", Kind.EMERGENCY)
ROSTER = Target("org_unit_id", Kind.ORG_UNIT)
SUPERVISED = Target("org_unit", Kind.ORG_UNIT, by_code=True)
STREAM = Target("stream_id", Kind.STREAM)
ACCOUNT = Target("account_id", Kind.ACCOUNT)
IMPORT_UNIT = Target("org_unit", Kind.ORG_UNIT, by_code=True, in_query=True)
IMPORT_JOB = Target("import_id", Kind.IMPORT)


UNIT_FILTER = Ref("org_unit_id", Kind.ORG_UNIT)
PERSON_FILTER = Ref("person_id", Kind.PERSON)
PAIRING_FILTER = Ref("pairing_id", Kind.PAIRING)
HELPER_FILTER = Ref("helper_id", Kind.HELPER)


def _person(action: str, path: str) -> Rule:
    return Rule("POST", f"/persons/{{person_id:uuid}}{path}", "persons", action, PERSON_WRITE, PERSON)


def _pairing(action: str, path: str, *refs: Ref) -> Rule:
    return Rule("POST", f"/pairings/{{pairing_id:uuid}}/{path}", "pairings", action, PAIRING_WRITE, PAIRING, refs)


def _respond(action: str, *refs: Ref, allowed: Grants = RESPOND) -> Rule:
    return Rule("POST", f"/emergencies/{{report_id:uuid}}/{action}", "emergencies", action, allowed, REPORT, refs)


def _page(path: str, action: str, allowed: Grants | None = None, **how: Any) -> Rule:
    """A page of the web client (web/): read like the data it shows, by the same guard."""
    return Rule("GET", f"/app{path}", "web pages", action, allowed or {}, **how)


def _supervision(tail: str, action: str, allowed: Grants = SUPERVISION) -> Rule:
    return Rule("GET", f"/supervision/{{org_unit:str}}{tail}", "supervision", action, allowed, SUPERVISED)


RULES: tuple[Rule, ...] = (
    Rule("GET", "/health", "health", "read", public=True),
    # Figures for the monitoring host, no personal data; GUANAI_METRICS_TOKEN guards it (api/metrics.py).
    Rule("GET", "/metrics", "metrics", "read", public=True),
    Rule("GET", DOCS_PATH, "API docs", "read", public=True),  # and every page beneath it
    # org units: the tree is reference data everyone reads
    Rule("GET", "/org-units", "org units", "list", PUBLIC_DATA),
    Rule("GET", "/org-units/{unit_id:uuid}", "org units", "read", PUBLIC_DATA),
    Rule("POST", "/org-units", "org units", "register", UNIT_WRITE,
         refs=(Ref("parent_id", Kind.ORG_UNIT, required=True),)),
    Rule("POST", "/org-units/{unit_id:uuid}/rename", "org units", "rename", UNIT_WRITE, UNIT),
    # persons
    Rule("GET", "/persons", "persons", "list", PERSON_READ, lists=Kind.PERSON, filters=(UNIT_FILTER,)),
    Rule("GET", "/persons/{person_id:uuid}", "persons", "read", PERSON_READ, PERSON),
    Rule("GET", "/persons/{person_id:uuid}/timeline", "persons", "timeline", PERSON_READ, PERSON),
    Rule("POST", "/persons", "persons", "register", PERSON_WRITE, refs=(Ref("village_id", Kind.ORG_UNIT),),
         creates=Kind.PERSON),
    _person("add risk tag", "/risk-tags"),
    _person("remove risk tag", "/risk-tags/remove"),
    _person("assign guardian", "/guardian"),
    _person("sign care agreement", "/care-agreement"),
    _person("leave", "/leave"),
    _person("return", "/return"),
    Rule("POST", "/persons/{person_id:uuid}/erase", "persons", "erase", ERASE, PERSON),
    # helpers and groups
    Rule("GET", "/helpers", "helpers", "list", HELPER_READ, lists=Kind.HELPER, filters=(UNIT_FILTER,)),
    Rule("GET", "/helpers/{helper_id:uuid}", "helpers", "read", HELPER_READ, HELPER),
    Rule("GET", "/helpers/{helper_id:uuid}/visits", "helpers", "visits", HELPER_READ, HELPER, lists=Kind.VISIT_TASK),
    Rule("POST", "/helpers", "helpers", "register", HELPER_WRITE, refs=(Ref("org_unit_id", Kind.ORG_UNIT),),
         creates=Kind.HELPER),
    Rule("POST", "/helpers/{helper_id:uuid}/capacity", "helpers", "change capacity", HELPER_WRITE, HELPER),
    Rule("POST", "/helpers/{helper_id:uuid}/deactivate", "helpers", "deactivate", HELPER_WRITE, HELPER),
    Rule("GET", "/groups", "groups", "list", GROUP_READ, lists=Kind.GROUP, filters=(UNIT_FILTER,)),
    Rule("GET", "/groups/{group_id:uuid}", "groups", "read", GROUP_READ, GROUP),
    Rule("POST", "/groups", "groups", "form", GROUP_WRITE,
         refs=(Ref("org_unit_id", Kind.ORG_UNIT), Ref("member_ids", Kind.HELPER)), creates=Kind.GROUP),
    Rule("POST", "/groups/{group_id:uuid}/members", "groups", "add member", GROUP_WRITE, GROUP,
         (Ref("helper_id", Kind.HELPER),)),
    Rule("POST", "/groups/{group_id:uuid}/members/remove", "groups", "remove member", GROUP_WRITE, GROUP,
         (Ref("helper_id", Kind.HELPER),)),
    Rule("POST", "/groups/{group_id:uuid}/disband", "groups", "disband", GROUP_WRITE, GROUP),
    # pairings
    Rule("GET", "/pairings", "pairings", "list", PAIRING_READ, lists=Kind.PAIRING,
         filters=(UNIT_FILTER, HELPER_FILTER, PERSON_FILTER)),
    Rule("GET", "/pairings/{pairing_id:uuid}", "pairings", "read", PAIRING_READ, PAIRING),
    Rule("POST", "/pairings", "pairings", "form", PAIRING_WRITE,
         refs=(Ref("helper_ids", Kind.HELPER), Ref("person_ids", Kind.PERSON), Ref("group_id", Kind.GROUP)),
         creates=Kind.PAIRING),
    _pairing("add person", "add-person", Ref("person_id", Kind.PERSON)),
    _pairing("remove person", "remove-person", Ref("person_id", Kind.PERSON)),
    _pairing("add helper", "add-helper", Ref("helper_id", Kind.HELPER)),
    _pairing("remove helper", "remove-helper", Ref("helper_id", Kind.HELPER)),
    _pairing("change cadence", "cadence"),
    _pairing("end", "end"),
    # visit tasks and logs
    Rule("GET", "/visits", "visit tasks", "list", VISIT_READ, lists=Kind.VISIT_TASK,
         filters=(UNIT_FILTER, PAIRING_FILTER, PERSON_FILTER)),
    Rule("GET", "/visits/{task_id:uuid}", "visit tasks", "read", VISIT_READ, TASK),
    Rule("POST", "/visits/{task_id:uuid}/claim", "visit tasks", "claim", VISIT_WRITE, TASK,
         (Ref("group_id", Kind.GROUP),)),
    Rule("POST", "/visits/{task_id:uuid}/assign", "visit tasks", "assign", VISIT_WRITE, TASK),
    Rule("POST", "/visits/{task_id:uuid}/release", "visit tasks", "release", VISIT_WRITE, TASK),
    Rule("POST", "/visits/{task_id:uuid}/complete", "visit tasks", "complete", VISIT_WRITE, TASK,
         creates=Kind.VISIT_LOG),
    Rule("POST", "/visit-logs", "visit logs", "record", VISIT_WRITE,
         refs=(Ref("pairing_id", Kind.PAIRING), Ref("person_id", Kind.PERSON)), creates=Kind.VISIT_LOG),
    Rule("GET", "/visit-logs", "visit logs", "list", VISIT_READ, lists=Kind.VISIT_LOG,
         filters=(HELPER_FILTER, PAIRING_FILTER, PERSON_FILTER)),
    Rule("GET", "/visit-logs/{log_id:uuid}", "visit logs", "read", VISIT_READ, LOG),
    # emergencies: anyone who meets a person in danger reports (强制报告), about a person they may read
    Rule("POST", "/emergencies", "emergencies", "file", FILE_REPORT,
         refs=(Ref("person_id", Kind.PERSON, scope=PERSON_READ),), creates=Kind.EMERGENCY),
    Rule("GET", "/emergencies", "emergencies", "queue", QUEUE, lists=Kind.EMERGENCY),
    Rule("GET", "/emergencies/stream", "emergencies", "stream", QUEUE),
    Rule("GET", "/emergencies/{report_id:uuid}", "emergencies", "read", REPORT_READ, REPORT),
    _respond("acknowledge"),
    _respond("actions"),
    _respond("escalate"),
    _respond("resolve"),
    _respond("reopen"),
    _respond("link", Ref("duplicate_of", Kind.EMERGENCY)),
    _respond("close", allowed=CLOSE),
    # rosters
    Rule("GET", "/rosters/{org_unit_id:uuid}", "rosters", "read", ROSTER_READ, ROSTER),
    Rule("GET", "/rosters/{org_unit_id:uuid}/on-duty", "rosters", "on duty", ROSTER_READ, ROSTER),
    Rule("POST", "/rosters/{org_unit_id:uuid}", "rosters", "set up", ROSTER_WRITE, ROSTER),
    Rule("POST", "/rosters/{org_unit_id:uuid}/responders", "rosters", "add responder", ROSTER_WRITE, ROSTER),
    Rule("POST", "/rosters/{org_unit_id:uuid}/responders/{responder_id:str}/shifts", "rosters", "change shifts",
         ROSTER_WRITE, ROSTER),
    Rule("DELETE", "/rosters/{org_unit_id:uuid}/responders/{responder_id:str}", "rosters", "remove responder",
         ROSTER_WRITE, ROSTER),
    Rule("POST", "/rosters/{org_unit_id:uuid}/deadlines", "rosters", "change deadlines", ROSTER_WRITE, ROSTER),
    # supervision
    _supervision("", "summary"),
    _supervision("/uncovered", "uncovered", SUPERVISION_PEOPLE),
    _supervision("/overdue", "overdue", SUPERVISION_PEOPLE),
    _supervision("/emergencies-past-deadline", "past deadline"),
    _supervision("/uncovered.csv", "uncovered CSV", SUPERVISION_PEOPLE),
    _supervision("/overdue.csv", "overdue CSV", SUPERVISION_PEOPLE),
    _supervision("/emergencies-past-deadline.csv", "past deadline CSV"),
    _supervision("/registry.xlsx", "registry XLSX", SUPERVISION_PEOPLE),
    _supervision("/inspection.xlsx", "inspection XLSX", SUPERVISION_PEOPLE),
    # registry imports (台账)
    Rule("GET", "/imports/template.xlsx", "imports", "template", IMPORT),
    Rule("POST", "/imports", "imports", "import", IMPORT, IMPORT_UNIT),
    Rule("GET", "/imports/{import_id:uuid}", "imports", "progress", IMPORT, IMPORT_JOB),
    Rule("GET", "/imports/{import_id:uuid}/report", "imports", "report", IMPORT, IMPORT_JOB),
    Rule("GET", "/imports/{import_id:uuid}/report.xlsx", "imports", "report XLSX", IMPORT, IMPORT_JOB),
    Rule("POST", "/imports/{import_id:uuid}/commit", "imports", "commit a dry run", IMPORT, IMPORT_JOB),
    Rule("POST", "/imports/{import_id:uuid}/resume", "imports", "resume", IMPORT, IMPORT_JOB),
    # audit
    Rule("GET", "/audit/streams/{stream_id:uuid}", "audit", "replay", AUDIT_READ, STREAM),
    Rule("GET", "/audit/streams/{stream_id:uuid}/state", "audit", "state as of", AUDIT_READ, STREAM),
    Rule("GET", "/audit/streams/{stream_id:uuid}/export", "audit", "export", AUDIT_READ, STREAM),
    Rule("GET", "/audit/persons/{person_id:uuid}/access-log", "audit", "access log", AUDIT_READ, PERSON),
    Rule("GET", "/audit/verify", "audit", "verify", AUDIT_CHECK),
    Rule("GET", "/audit/checkpoint", "audit", "checkpoint", AUDIT_CHECK),
    Rule("GET", "/audit/checkpoints/latest", "audit", "signed checkpoint", AUDIT_CHECK),
    Rule("GET", "/audit/public-key", "audit", "log's public key", AUDIT_CHECK),
    Rule("GET", "/audit/proofs/consistency", "audit", "consistency proof", AUDIT_CHECK),
    Rule("GET", "/audit/streams/{stream_id:uuid}/proofs", "audit", "inclusion proofs", AUDIT_READ, STREAM),
    # tokens
    Rule("POST", "/auth/revoke", "tokens", "revoke", TOKENS),
    # accounts
    Rule("GET", "/accounts", "accounts", "list", ACCOUNT_READ, lists=Kind.ACCOUNT, filters=(UNIT_FILTER,)),
    Rule("GET", "/accounts/{account_id:uuid}", "accounts", "read", ACCOUNT_READ, ACCOUNT),
    Rule("POST", "/accounts", "accounts", "open", ACCOUNT_WRITE,
         refs=(Ref("helper_id", Kind.HELPER), Ref("org_unit_id", Kind.ORG_UNIT, required=True)), creates=Kind.ACCOUNT),
    Rule("POST", "/accounts/{account_id:uuid}/role", "accounts", "change role", ACCOUNT_WRITE, ACCOUNT,
         (Ref("helper_id", Kind.HELPER), Ref("org_unit_id", Kind.ORG_UNIT, required=True))),
    Rule("POST", "/accounts/{account_id:uuid}/lock", "accounts", "lock", ACCOUNT_WRITE, ACCOUNT),
    Rule("POST", "/accounts/{account_id:uuid}/unlock", "accounts", "unlock", ACCOUNT_WRITE, ACCOUNT),
    Rule("POST", "/accounts/{account_id:uuid}/reset", "accounts", "reset", ACCOUNT_WRITE, ACCOUNT),
    Rule("POST", "/accounts/{account_id:uuid}/close", "accounts", "close", ACCOUNT_WRITE, ACCOUNT),
    Rule("GET", "/accounts/{account_id:uuid}/sign-ins", "accounts", "sign-ins", SIGN_INS, ACCOUNT),
    # signing in, and one's own sessions (the session's account is the token's: no object to check)
    Rule("POST", "/auth/activate", "sessions", "activate", public=True),
    Rule("POST", "/auth/sign-in", "sessions", "sign in", public=True),
    Rule("POST", "/auth/refresh", "sessions", "refresh", public=True),
    Rule("POST", "/auth/sign-out", "sessions", "sign out", SELF),
    Rule("GET", "/auth/me", "sessions", "who am I", SELF),
    Rule("GET", "/auth/sessions", "sessions", "list own", SELF),
    Rule("DELETE", "/auth/sessions/{session_id:uuid}", "sessions", "end own", SELF),
    Rule("POST", "/auth/totp", "sessions", "enrol TOTP", SELF),
    Rule("POST", "/auth/totp/confirm", "sessions", "confirm TOTP", SELF),
    Rule("POST", "/auth/recovery-codes", "sessions", "new recovery codes", SELF),
    # web pages (web/): each page is granted as the data it shows is
    _page("", "start page", PUBLIC_DATA),
    _page("/visits", "my visits", VISIT_WRITE, lists=Kind.VISIT_TASK),
    _page("/people", "my people", PERSON_READ, lists=Kind.PERSON),
    _page("/people/{person_id:uuid}", "person and history", PERSON_READ, target=PERSON),
    _page("/console", "responder console", QUEUE, lists=Kind.EMERGENCY),
    _page("/sign-in", "sign in", public=True),
    _page("/second-factor", "enrol a second factor", public=True),  # its script calls /auth only
    _page("/sw.js", "service worker", public=True),
    _page("/manifest.webmanifest", "app manifest", public=True),
    Rule("GET", WEB_STATIC_PATH, "web pages", "static files", public=True),  # and every file beneath it
    # supervisors', auditors' and administrators' pages (web/supervisor.py, auditor.py, admin.py)
    _page("/supervision", "supervision home", SUPERVISION),
    _page("/supervision/{org_unit:str}", "supervision", SUPERVISION, target=SUPERVISED),
    _page("/supervision/{org_unit:str}/uncovered", "uncovered", SUPERVISION_PEOPLE, target=SUPERVISED),
    _page("/supervision/{org_unit:str}/overdue", "overdue", SUPERVISION_PEOPLE, target=SUPERVISED),
    _page("/audit", "audit persons", AUDIT_READ, lists=Kind.PERSON),
    _page("/audit/persons/{person_id:uuid}", "case history", AUDIT_READ, target=PERSON),
    _page("/audit/verify", "verify", AUDIT_CHECK),
    _page("/rosters", "rosters", ROSTER_READ),
    _page("/rosters/{org_unit_id:uuid}", "roster", ROSTER_READ, target=ROSTER),
    Rule("POST", "/app/rosters/{org_unit_id:uuid}", "web pages", "set up roster", ROSTER_WRITE, ROSTER),
    Rule("POST", "/app/rosters/{org_unit_id:uuid}/deadlines", "web pages", "change deadlines", ROSTER_WRITE, ROSTER),
    Rule("POST", "/app/rosters/{org_unit_id:uuid}/responders", "web pages", "add responder", ROSTER_WRITE, ROSTER),
    Rule("POST", "/app/rosters/{org_unit_id:uuid}/responders/{responder_id:str}/remove", "web pages",
         "remove responder", ROSTER_WRITE, ROSTER),
    _page("/accounts", "accounts", ACCOUNT_READ, lists=Kind.ACCOUNT),
    _page("/accounts/{account_id:uuid}", "account", ACCOUNT_READ, target=ACCOUNT),
    Rule("POST", "/app/accounts", "web pages", "open account", ACCOUNT_WRITE,
         refs=(Ref("helper_id", Kind.HELPER), Ref("org_unit_id", Kind.ORG_UNIT, required=True)), creates=Kind.ACCOUNT),
    Rule("POST", "/app/accounts/{account_id:uuid}/role", "web pages", "change account role", ACCOUNT_WRITE, ACCOUNT,
         (Ref("helper_id", Kind.HELPER), Ref("org_unit_id", Kind.ORG_UNIT, required=True))),
    *(Rule("POST", f"/app/accounts/{{account_id:uuid}}/{action}", "web pages", f"{action} account", ACCOUNT_WRITE, ACCOUNT)
      for action in ("lock", "unlock", "reset", "close")),
    _page("/imports", "import registry sheet", IMPORT, target=IMPORT_UNIT),
    Rule("POST", "/app/imports", "web pages", "upload registry sheet", IMPORT, IMPORT_UNIT),
    _page("/imports/{import_id:uuid}", "import job", IMPORT, target=IMPORT_JOB),
    Rule("POST", "/app/imports/{import_id:uuid}/commit", "web pages", "commit import", IMPORT, IMPORT_JOB),
    _page("/{rest:path}", "not found", public=True),  # any other address: the not-found page
)  # fmt: skip

BY_ROUTE: dict[tuple[str, str], Rule] = {rule.key: rule for rule in RULES}
# Who may read an object of each kind a create may name: a create repeated answers the object.
READS: dict[Kind, Grants] = {
    Kind.PERSON: PERSON_READ,
    Kind.HELPER: HELPER_READ,
    Kind.GROUP: GROUP_READ,
    Kind.PAIRING: PAIRING_READ,
    Kind.VISIT_LOG: VISIT_READ,
    Kind.EMERGENCY: REPORT_READ,
    Kind.ACCOUNT: ACCOUNT_READ,
}


def rule_for(method: str, path_template: str) -> Rule | None:
    if method == "GET" and (path_template == DOCS_PATH or path_template.startswith(DOCS_PATH + "/")):
        return BY_ROUTE[("GET", DOCS_PATH)]
    if method in ("GET", "HEAD") and path_template.startswith(WEB_STATIC_PATH + "/"):
        return BY_ROUTE[("GET", WEB_STATIC_PATH)]
    return BY_ROUTE.get((method, path_template))


# ---- answers --------------------------------------------------------------------------------


def not_found(kind: Kind, raw: Any) -> Exception:
    """What an unknown id in the path answers, word for word: an id out of scope answers the same."""
    if kind is Kind.STREAM:
        return ProblemError(404, "not-found", "Not found", f"no stream with id {raw}")
    if kind is Kind.ORG_UNIT and isinstance(raw, str) and not _is_uuid(raw):
        return ProblemError(404, "not-found", "Not found", f"no org unit with code {raw}", kind=str(kind))
    return NotFoundError(f"no {kind} with id {raw}", kind=str(kind), id=str(raw))


def unknown_reference(kind: Kind, value: UUID, field_name: str) -> Exception:
    return UnknownReferenceError(f"no {kind} with id {value}", field=field_name)


def already_exists(kind: Kind, value: UUID) -> Exception:
    """What a create under a taken id answers when the body differs: word for word the command's."""
    return AlreadyExistsError(f"a different {kind} already exists with id {value}", field="id", id=str(value))


def _is_uuid(value: str) -> bool:
    try:
        UUID(value)
    except ValueError:
        return False
    return True


_CODE = re.compile(r"^[0-9]{12}\Z")


def unit_id_of(raw: Any) -> UUID | None:
    """An org unit named by id or by 12-digit division code; None when it is neither."""
    if isinstance(raw, UUID):
        return raw
    text = str(raw)
    if _CODE.match(text):
        return org_unit_id(text)
    try:
        return UUID(text)
    except ValueError:
        return None


def _uuid(value: Any) -> UUID | None:
    """A body value as the handler would decode it; anything else is left to its validation."""
    if not isinstance(value, str):
        return None
    try:
        return msgspec.convert(value, UUID)
    except msgspec.ValidationError:
        return None


def _values(data: Any, name: str) -> list[tuple[str, Any]]:
    """(field as errors name it, value) for a top-level body field; one per element of a list."""
    if not isinstance(data, dict) or data.get(name) is None:
        return []
    value = data[name]
    if isinstance(value, list):
        return [(f"{name}[{n}]", v) for n, v in enumerate(value)]
    return [(name, value)]


# ---- one request's checks -------------------------------------------------------------------


class Access:
    """What one caller may reach, worked out for one request; keeps what it loads."""

    def __init__(self, app: CareApplication, pool: ConnectionPool, actor: Actor) -> None:
        self.app, self.pool, self.actor = app, pool, actor
        self.list_scope: ListScope | None = None
        self._first: dict[UUID, Any] = {}
        self._loaded: dict[UUID, Any] = {}
        self._imports: dict[UUID, list[UUID] | None] = {}
        self._me: Any = ...

    # -- loading --

    def first(self, aggregate_id: UUID) -> Any:
        """The stream's first event (None: no such stream)."""
        if aggregate_id not in self._first:
            self._first[aggregate_id] = next(iter(self.app.events.get(aggregate_id, limit=1)), None)
        return self._first[aggregate_id]

    def aggregate(self, aggregate_id: UUID) -> Any:
        """The aggregate now (None: no such stream)."""
        if aggregate_id not in self._loaded:
            try:
                self._loaded[aggregate_id] = self.app.repository.get(aggregate_id)
            except AggregateNotFoundError:
                self._loaded[aggregate_id] = None
        return self._loaded[aggregate_id]

    def loaded(self, cls: type[Any], aggregate_id: UUID) -> Any:
        agg = self._loaded.get(aggregate_id)
        return agg if isinstance(agg, cls) else None

    def facts(self, aggregate_id: UUID) -> Any:
        """The aggregate when this request loaded it, else its first event: both carry the
        fields a check reads (org path, pairing, helpers) under the same names."""
        agg = self._loaded.get(aggregate_id)
        return agg if agg is not None else self.first(aggregate_id)

    def reporter(self, report_id: UUID) -> str:
        agg = self._loaded.get(report_id)
        return agg.reporter_id if agg is not None else self.first(report_id).actor_id

    def import_path(self, job_id: UUID) -> list[UUID] | None:
        """An import job's unit's org path (None: no such job)."""
        if job_id not in self._imports:
            with self.pool.connection() as conn:
                row = conn.execute("SELECT org_path FROM guanai_import_jobs WHERE id = %s", (job_id,)).fetchone()
            self._imports[job_id] = None if row is None else list(row[0])
        return self._imports[job_id]

    def is_a(self, kind: Kind, aggregate_id: UUID) -> bool:
        if kind is Kind.IMPORT:
            return self.import_path(aggregate_id) is not None
        if kind is Kind.STREAM:
            return self.first(aggregate_id) is not None
        cls = AGGREGATES[kind]
        if aggregate_id in self._loaded:
            return isinstance(self._loaded[aggregate_id], cls)
        first = self.first(aggregate_id)
        return first is not None and type(first).__qualname__.partition(".")[0] == cls.__name__

    def org_path(self, kind: Kind, aggregate_id: UUID) -> list[UUID]:
        if kind is Kind.IMPORT:
            return self.import_path(aggregate_id) or []
        source = self.facts(aggregate_id)
        if source is None:
            return []
        if isinstance(source, (OrgUnit, OrgUnit.Registered)):
            return list(source.path)
        if kind is Kind.ACCOUNT:
            agg = self.aggregate(aggregate_id)  # a role change moves an account: never its first event's
            return list(agg.org_path) if isinstance(agg, Account) else []
        if isinstance(source, (HelperClaims, HelperClaims.Opened)):
            return self.org_path(Kind.HELPER, source.helper_id)  # a claim book is its helper's
        return list(getattr(source, "org_path", None) or [])

    # -- scopes --

    def allows(self, scopes: frozenset[Scope], kind: Kind, aggregate_id: UUID) -> bool:
        """Whether the object exists, is of this kind, and lies in one of these scopes."""
        if not self.is_a(kind, aggregate_id):
            return False
        if Scope.ALL in scopes or Scope.ANY in scopes:
            return True
        if Scope.SUBTREE in scopes and self.actor.org_unit_id in self.org_path(kind, aggregate_id):
            return True
        if Scope.REPORTER in scopes and kind is Kind.EMERGENCY and self.reporter(aggregate_id) == self.actor.subject:
            return True
        if Scope.AREA in scopes and self.in_area(kind, aggregate_id):
            return True
        return Scope.OWN in scopes and self.owns(kind, aggregate_id)

    def area(self) -> Area | None:
        """A responder's area: under their unit; for a county responder, from the county level up."""
        if self.actor.org_unit_id is None:
            return None
        return Area(self.actor.org_unit_id, 1 if self.actor.role == CR else 0)

    def in_area(self, kind: Kind, aggregate_id: UUID) -> bool:
        area = self.area()
        if area is None:
            return False
        if kind is Kind.EMERGENCY:
            if area.unit not in self.org_path(kind, aggregate_id):
                return False
            return area.min_level == 0 or self.aggregate(aggregate_id).level >= area.min_level
        if kind is Kind.PERSON:
            with self.pool.connection() as conn:
                row = conn.execute(
                    "SELECT 1 FROM emergency_queue WHERE person_id = %s AND org_path @> ARRAY[%s]::uuid[]"
                    " AND level >= %s LIMIT 1",
                    (aggregate_id, area.unit, area.min_level),
                ).fetchone()
            return row is not None
        return False

    def me(self) -> Helper | None:
        """The volunteer's helper record (a volunteer token whose sub is no helper id owns nothing)."""
        if self._me is ...:
            self._me = None
            if self.actor.role == V:
                try:
                    helper_id = UUID(self.actor.subject)
                except ValueError:
                    helper_id = None
                agg = self.aggregate(helper_id) if helper_id is not None else None
                self._me = agg if isinstance(agg, Helper) else None
        return self._me

    def own_pairing(self, pairing_id: UUID) -> bool:
        me = self.me()
        pairing = self.aggregate(pairing_id)
        if me is None or not isinstance(pairing, Pairing) or pairing.ended:
            return False
        return me.id in pairing.helper_ids or (pairing.group_id is not None and pairing.group_id in me.group_ids)

    def owns(self, kind: Kind, aggregate_id: UUID) -> bool:
        me = self.me()
        if me is None:
            return False
        if kind is Kind.HELPER:
            return aggregate_id == me.id
        if kind is Kind.GROUP:
            return aggregate_id in me.group_ids
        if kind is Kind.PAIRING:
            return self.own_pairing(aggregate_id)
        if kind is Kind.PERSON:
            return any(self.own_pairing(p) for p in self.aggregate(aggregate_id).pairing_ids)
        if kind is Kind.VISIT_TASK:
            return self.own_pairing(self.facts(aggregate_id).pairing_id)
        if kind is Kind.VISIT_LOG:
            log = self.facts(aggregate_id)
            return me.id in log.helper_ids or self.own_pairing(log.pairing_id)
        return False

    def own(self) -> Own | None:
        """A volunteer's own things as the views have them: active pairings with them as helper
        or through one of their groups, and the people in those pairings."""
        me = self.me()
        if me is None:
            return None
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT id, person_ids FROM reg_pairings WHERE status = 'active'"
                " AND (helper_ids @> ARRAY[%s]::uuid[] OR group_id = ANY(%s::uuid[]))",
                (me.id, list(me.group_ids)),
            ).fetchall()
        persons = {p for _, ids in rows for p in ids}
        return Own(me.id, tuple(r[0] for r in rows), tuple(sorted(persons)), tuple(me.group_ids))

    def scope_of_lists(self, scopes: frozenset[Scope]) -> ListScope:
        if Scope.ALL in scopes or Scope.ANY in scopes:
            return EVERYTHING
        return ListScope(
            subtree=self.actor.org_unit_id if Scope.SUBTREE in scopes else None,
            own=self.own() if Scope.OWN in scopes else None,
            area=self.area() if Scope.AREA in scopes else None,
        )

    # -- the check of one request --

    def check(
        self,
        rule: Rule,
        scopes: frozenset[Scope],
        path_params: Mapping[str, Any],
        data: Any,
        query: Mapping[str, Any] | None = None,
    ) -> None:
        if rule.target is not None:
            raw = (query or {}).get(rule.target.param) if rule.target.in_query else path_params.get(rule.target.param)
            target = unit_id_of(raw) if rule.target.by_code else raw
            if not isinstance(target, UUID):
                return  # not an id at all: the handler's validation answers
            if rule.method == "GET" and rule.target.kind in AGGREGATES and not rule.target.in_query:
                self.aggregate(target)  # the read handler needs it whole: load it once, here
            if not self.allows(scopes, rule.target.kind, target):
                if rule.target.in_query:  # named in the request, not its path: as an unknown id in a body
                    raise unknown_reference(rule.target.kind, target, rule.target.param)
                raise not_found(rule.target.kind, raw)
        for ref in rule.refs:
            self.check_ref(ref, scopes, data)
        if rule.creates is not None:
            self.check_repeat(rule.creates, data)
        if rule.lists is not None:
            self.list_scope = self.scope_of_lists(scopes)
            if any(not self.filter_allows(f, scopes, (query or {}).get(f.field)) for f in rule.filters):
                self.list_scope = NOTHING  # as for an unknown id: no row matches

    def filter_allows(self, ref: Ref, scopes: frozenset[Scope], value: Any) -> bool:
        """Whether a list filter names something in scope (absent or not an id: the handler's)."""
        filter_id = _uuid(value)
        if filter_id is None:
            return True
        if ref.kind is Kind.ORG_UNIT and Scope.SUBTREE not in scopes:
            # The tree is public: a volunteer's or responder's list is narrowed by what they own
            # or their area, and a unit filter only narrows it further.
            return True
        return self.allows(scopes, ref.kind, filter_id)

    def check_repeat(self, kind: Kind, data: Any) -> None:
        """A create under an id that is taken answers the existing object when the body is the
        same again (an offline device's retry): only to a caller who may read that object. Anyone
        else gets what a different body gets, so the answer cannot confirm what the object holds."""
        new_id = _uuid(data.get("id")) if isinstance(data, dict) else None
        if new_id is None or self.first(new_id) is None:
            return
        if not self.allows(READS[kind].get(self.actor.role, frozenset()), kind, new_id):
            raise already_exists(kind, new_id)

    def check_ref(self, ref: Ref, scopes: frozenset[Scope], data: Any) -> None:
        ref_scopes = scopes if ref.scope is None else ref.scope.get(self.actor.role, frozenset())
        values = _values(data, ref.field)
        if ref.required and not values and Scope.ALL not in scopes and isinstance(data, dict):
            raise PermissionDeniedException(f"a {self.actor.role.value} names {ref.field} within their own area")
        for name, value in values:
            ref_id = _uuid(value)
            if ref_id is not None and not self.allows(ref_scopes, ref.kind, ref_id):
                raise unknown_reference(ref.kind, ref_id, name)


def _needs_loading(rule: Rule, scopes: frozenset[Scope], query: Mapping[str, Any]) -> bool:
    return (
        rule.target is not None
        or bool(rule.refs)
        or rule.creates is not None
        or (rule.lists is not None and Scope.OWN in scopes)
        or any(f.field in query for f in rule.filters)
    )


def _takes_object(handler: BaseRouteHandler) -> bool:
    """Whether the handler decodes its body into a Struct (a JSON object) before it does anything."""
    data = handler.parsed_fn_signature.parameters.get("data")
    return data is not None and isinstance(data.annotation, type) and issubclass(data.annotation, msgspec.Struct)


def _is_form(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    content_type = connection.headers.get("content-type", "")
    return content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded"


def _form_object(body: bytes) -> dict[str, Any]:
    """A URL-encoded form as an object: an empty field is absent (the page handlers take it so),
    and a field sent more than once is a list, every value of which is checked."""
    out: dict[str, Any] = {}
    for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=False):
        if name not in out:
            out[name] = value
        else:
            out[name] = [*out[name], value] if isinstance(out[name], list) else [out[name], value]
    return out


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    return data if isinstance(data, dict) else None


async def access_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """The app's guard: every request is checked against its route's rule (module docstring)."""
    method = connection.scope.get("method", "GET")
    if method == "OPTIONS":
        return  # the allowed methods of a route: no data
    rule = rule_for(method, connection.scope.get("path_template", ""))
    if rule is None:
        raise PermissionDeniedException("this operation has no access rule, so it is closed to everyone")
    if rule.public:
        return
    actor = actor_of(connection)
    if actor.restricted and rule.resource != "sessions":  # its own session and second factor only
        raise PermissionDeniedException(
            f"a {actor.role.value} signs in with a second factor: enrol one first (POST /auth/totp), then refresh"
        )
    scopes = rule.grants.get(actor.role)
    if not scopes:
        raise PermissionDeniedException(f"a {actor.role.value} may not {rule.action} ({rule.resource})")
    state = connection.app.state
    access = Access(state.care, state.read_side.runner.pool, actor)
    connection.scope.setdefault("state", {})["access"] = access
    query = {f.field: connection.query_params.get(f.field) for f in rule.filters if f.field in connection.query_params}
    if rule.target is not None and rule.target.in_query and rule.target.param in connection.query_params:
        query[rule.target.param] = connection.query_params.get(rule.target.param)
    if not _needs_loading(rule, scopes, query):
        if rule.lists is not None:
            access.list_scope = access.scope_of_lists(scopes)
        return
    data = None
    if rule.writes and isinstance(connection, Request) and (body := await connection.body()):
        data = _json_object(body)
        if data is None and _is_form(connection):
            # A page's HTML form (web/): its fields name objects as a JSON body's would, and are
            # checked the same way, so a form is no way around the table.
            data = _form_object(body)
        if data is None and _takes_object(handler):
            # Not a JSON object: the handler refuses it (400/422) before it reads or writes
            # anything, whichever ids it names, so no answer here could tell ids apart.
            return
    path_params = dict(connection.path_params)
    await asyncio.get_running_loop().run_in_executor(None, access.check, rule, scopes, path_params, data, query)


async def unchecked_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """The guard of an app built with ``protections=False`` (``bench/protections.py`` only): a
    valid token opens every route and every list is unscoped. It exists to measure what the
    access table costs; nothing a deployment configures selects it."""
    rule = rule_for(connection.scope.get("method", "GET"), connection.scope.get("path_template", ""))
    if rule is None or rule.public or connection.scope.get("method") == "OPTIONS":
        return
    state = connection.app.state
    access = Access(state.care, state.read_side.runner.pool, actor_of(connection))
    access.list_scope = EVERYTHING
    connection.scope.setdefault("state", {})["access"] = access


def access_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Access:
    access = connection.scope.get("state", {}).get("access")
    if access is None:  # only a route without the guard could get here: refuse rather than guess
        raise PermissionDeniedException("no access decision was made for this request")
    return access


def list_scope(connection: ASGIConnection[Any, Any, Any, Any]) -> ListScope:
    """The rows this request's caller may see, for the view query of a list."""
    scope = access_of(connection).list_scope
    if scope is None:
        raise PermissionDeniedException("this operation is not a list in the access table")
    return scope


def loaded(connection: ASGIConnection[Any, Any, Any, Any], cls: type[Any], aggregate_id: UUID) -> Any:
    """The aggregate the guard already loaded for this request, if it did."""
    access = connection.scope.get("state", {}).get("access")
    return access.loaded(cls, aggregate_id) if access is not None else None


def timeline_hides(actor: Actor) -> tuple[str, ...]:
    """The aggregates whose entries a person's timeline leaves out for this reader: emergency
    reports for a role that reads reports as their reporter only (a village cadre, a child
    director, a volunteer). A report about abuse or neglect of a child is for those who handle
    it; the timeline must not hand it to everyone who may read the child's record."""
    scopes = REPORT_READ.get(actor.role, frozenset())
    return () if scopes - {Scope.REPORTER} else ("emergency_report",)


# ---- the table as a document ------------------------------------------------------------------

SCOPE_WORDS = {
    Scope.ANY: "any",
    Scope.ALL: "all",
    Scope.SUBTREE: "subtree",
    Scope.OWN: "own",
    Scope.REPORTER: "reporter",
    Scope.AREA: "area",
}


def _cell(scopes: frozenset[Scope] | None) -> str:
    if not scopes:
        return "–"
    return " + ".join(SCOPE_WORDS[s] for s in Scope if s in scopes)


def _objects(rule: Rule) -> str:
    parts = []
    if rule.target is not None:
        parts.append(f"{'query' if rule.target.in_query else 'path'} `{rule.target.param}`: {rule.target.kind}")
    for ref in rule.refs:
        whose = "" if ref.scope is None else " (as readable)"
        parts.append(f"body `{ref.field}`: {ref.kind}{whose}")
    if rule.creates is not None:
        parts.append(f"body `id`: {rule.creates} (taken: as readable)")
    if rule.lists is not None:
        parts.append(f"lists {rule.lists}s in scope")
    if rule.filters:
        parts.append("filters " + ", ".join(f"`{f.field}`" for f in rule.filters))
    return "; ".join(parts)


def access_table() -> str:
    """``RULES`` as the Markdown table of docs/access.md (kept equal by a test)."""
    head = ["operation", "resource", "action", *(ROLE_CODES[r] for r in ROLES), "objects checked"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rule in RULES:
        path = rule.path + ("/…" if rule.path in (DOCS_PATH, WEB_STATIC_PATH) else "")
        cells = ["public"] * len(ROLES) if rule.public else [_cell(rule.grants.get(r)) for r in ROLES]
        row = [f"`{rule.method} {path}`", rule.resource, rule.action, *cells, _objects(rule)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
