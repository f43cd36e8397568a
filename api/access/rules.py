"""The access table: every operation of the API and the web pages, the roles allowed with their
scopes, and the objects each names (``Rule``). Data only: ``checks`` works out a request against
it, ``guard`` enforces it, ``document`` renders it (api/access/__init__.py says how)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from domain.vocabulary import ActorRole

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
    checked_as: str = ""  # its items are checked by the handler under the rules of these routes
    # A read whose handler makes the target's check inside its own statement (``Access.gate``):
    # the guard leaves the check to it, and does not load the target whole.
    checked_with_read: bool = False

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
    Rule("GET", "/persons/{person_id:uuid}/timeline", "persons", "timeline", PERSON_READ, PERSON,
         checked_with_read=True),
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
    # A device's backlog: the guard checks the role; each item is checked as the one-log route
    # would check it (api/visit_batches.py), and a refused item gets that route's answer.
    Rule("POST", "/visit-logs/batch", "visit logs", "record many", VISIT_WRITE,
         checked_as="`POST /visits/{task_id}/complete` (items with `task_id`) or `POST /visit-logs`"),
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
