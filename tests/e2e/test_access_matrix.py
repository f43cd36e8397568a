"""The access table tried cell by cell: for every route of the app and every role, over HTTP
against a real server on a database of its own.

The world: county A with township A and villages 1 and 2, county B with township B and village B;
elders P1, P2 (village 1), P3 (village 2), PB (village B) and a child K1 (village 1); helpers H1
(the volunteer's own record), H2, H3, HB; groups G1 (H1 a member), G2, G3, GB; one-to-one pairings
PA1 (H1 with P1), PA2 (H2, P2), PA3 (H3, P3), PAB (HB, PB) with their visit tasks and a visit log
each; emergency reports E1 about P1 (township level), E3 about P3 and EB about PB (both escalated
to their county), and one report filed by each role that may file; rosters for both townships
and counties. Tokens: township roles for township A, county roles and the auditor for county A,
village roles and the volunteer (sub = H1) for village 1.

For each (route, role) cell: a role the policy does not list gets 403 and nothing is written; a
listed role gets 404 for a target outside its scope, with the body an unknown id gets, and 422
``unknown-reference`` naming the field for each body reference outside its scope, again as an
unknown id, writing nothing; lists show exactly the rows in scope, and a filter naming something
outside it answers as an unknown one; the in-scope request succeeds. Writes run on objects made
for the cell, after every read, so no cell changes what another sees.

The whole matrix runs twice (``world`` is parametrized): with tokens minted as ``guanai token``
mints them, and with account sessions, each role an account opened over ``POST /accounts``,
activated, signed in with its second factor enrolled; the answers must be the same. Routes that
only an account has (its sessions, its second factor) answer a minted token 409 ``not-an-account``.

The expected answers come from ``POLICY`` below, the agreed table restated (docs/access.md),
never from api/access.py: the test would prove nothing if it asked the code what to expect.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pyotp
import pytest

from application.care import CareApplication
from domain.base import CommandMeta
from domain.schedule import PROGRAMME_TZ
from guanai import bootstrap
from infrastructure.settings import Settings
from tests.api_support import SECRET, ApiServer, child, elder, helper, own_server, token
from tests.app_support import make_care
from tests.emergency_support import wait_until
from tests.imports_support import HEADERS, child_row, fresh_seq

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("AD", "CS", "TS", "VC", "CD", "TR", "CR", "AU", "V")
ROLE_NAMES = {
    "AD": "administrator", "CS": "county_supervisor", "TS": "township_supervisor", "VC": "village_cadre",
    "CD": "child_director", "TR": "township_responder", "CR": "county_responder", "AU": "auditor", "V": "volunteer",
}  # fmt: skip
UNIT_OF = {"CS": "cA", "CR": "cA", "AU": "cA", "TS": "tA", "TR": "tA", "VC": "v1", "CD": "v1", "V": "v1"}
PATHS = {"v1": ("cA", "tA", "v1"), "v2": ("cA", "tA", "v2"), "vB": ("cB", "tB", "vB"), "tA": ("cA", "tA"), "cA": ("cA",),
         "none": ()}  # fmt: skip
MODES = ("tokens", "sessions")
PASSWORD = "矩阵里的每一格-2026"
Grants = dict[str, frozenset[str]]


def policy(text: str) -> Grants:
    """``"AD:all CS,TS:subtree+reporter"``: each role listed with its scopes."""
    out: Grants = {}
    for part in text.split():
        roles, _, scopes = part.partition(":")
        for role in roles.split(","):
            out[role] = frozenset(scopes.split("+"))
    return out


# ---- the policy, restated from the agreed table ----------------------------------------------

ANYONE = policy("AD,CS,TS,VC,CD,TR,CR,AU,V:any")
UNITS_WRITE = policy("AD:all CS:subtree")
PERSONS_READ = policy("AD:all CS,TS,VC,CD,AU:subtree TR,CR:area V:own")
PERSONS_WRITE = policy("AD:all CS,TS,VC,CD:subtree")
HELPERS_READ = policy("AD:all CS,TS,VC,CD,AU:subtree V:own")
HELPERS_WRITE = policy("AD:all CS,TS:subtree")
GROUPS_READ = policy("AD:all CS,TS,VC,CD,AU:subtree V:own")
GROUPS_WRITE = policy("AD:all CS,TS:subtree")
PAIRINGS_READ = policy("AD:all CS,TS,VC,CD,AU:subtree V:own")
PAIRINGS_WRITE = policy("AD:all CS,TS,VC,CD:subtree")
VISITS_READ = policy("AD:all CS,TS,VC,CD,AU:subtree V:own")
VISITS_WRITE = policy("AD:all CS,TS,VC,CD:subtree V:own")
FILE = policy("AD:all CS,TS,VC,CD,TR,CR,V:any")
REPORT_READ = policy("AD:all CS,TS:subtree+reporter VC,CD:reporter TR,CR:area+reporter AU:subtree V:reporter")
QUEUE = policy("AD:all CS,TS,AU:subtree TR,CR:area")
RESPOND = policy("AD:all CS,TS:subtree TR,CR:area")
CLOSE = policy("AD:all CS,TS:subtree")
ROSTERS_READ = policy("AD:all CS,TS,TR,CR,AU:subtree")
ROSTERS_WRITE = policy("AD:all CS,TS:subtree")
SUPERVISION = policy("AD:all CS,TS,VC,CD,TR,CR,AU:subtree")
SUPERVISION_PEOPLE = policy("AD:all CS,TS,VC,CD,AU:subtree")  # lists naming people: not responders
AUDIT_READ = policy("AD:all AU:subtree")
AUDIT_CHECK = policy("AD:all AU:any")
REVOKE = policy("AD:all")
ERASE = policy("AD:all")
ACCOUNTS_READ = policy("AD:all CS,TS,VC,AU:subtree")
ACCOUNTS_WRITE = policy("AD:all TS,VC:subtree")
SIGN_INS = policy("AD:all TS,AU:subtree")
SELF = ANYONE  # one's own session and second factor
IMPORTS = policy("AD:all CS,TS:subtree")  # a county's or township's registry sheet: its supervisors


# ---- the world -----------------------------------------------------------------------------------


@dataclass
class Report:
    id: str
    subject: str | None  # person name
    village: str
    level: int
    reporter: str  # role code


class World:
    """The fixture world, built over HTTP by an administrator (visit tasks by the scheduler's command)."""

    def __init__(self, server: ApiServer, care: CareApplication, mode: str = "tokens") -> None:
        self.server, self.care, self.mode = server, care, mode
        self.sessions: dict[str, dict[str, Any]] = {}  # role -> its account's session (sessions mode)
        self.a = httpx.Client(base_url=server.base_url, headers=self.minted("AD"), timeout=60)
        self.ids: dict[str, str] = {}  # name -> id of the standing objects
        self.village: dict[str, str] = {}  # name -> village of the standing objects
        self.reports: dict[str, Report] = {}
        self.codes: dict[str, str] = {}
        self._units()
        for name, village, kind in (("P1", "v1", "elder"), ("P2", "v1", "elder"), ("P3", "v2", "elder"),
                                    ("PB", "vB", "elder"), ("K1", "v1", "child")):  # fmt: skip
            self._keep(name, village, self.person(village, kind))
        for name, village in (("H1", "v1"), ("H2", "v1"), ("H3", "v2"), ("HB", "vB")):
            self._keep(name, village, self.helper(village))
        if mode == "sessions":
            self._sign_in_everyone()
            self.a.headers.update(self.auth("AD"))  # from here on, the administrator's own session
        for name, village in (("A1", "v1"), ("A2", "v1"), ("A3", "v2"), ("AB", "vB")):
            self._keep(name, village, self.account(village, helper_id=self.ids["H" + name[1]]))
        for name, member in (("G1", "H1"), ("G2", "H2"), ("G3", "H3"), ("GB", "HB")):
            self._keep(name, self.village[member], self.group(self.village[member], [self.ids[member]]))
        self.tasks: dict[str, list[str]] = {}
        for n in ("1", "2", "3", "B"):
            pairing = self.pairing([self.ids[f"H{n}"]], [self.ids[f"P{n}"]])
            self._keep(f"PA{n}", self.village[f"P{n}"], pairing)
            tasks = self.schedule(pairing)
            self.tasks[f"PA{n}"] = [t["id"] for t in tasks]
            self._keep(f"T{n}", self.village[f"P{n}"], tasks[0]["id"])  # this period's
            self._keep(f"L{n}", self.village[f"P{n}"], self.log(pairing, self.ids[f"P{n}"], self.ids[f"H{n}"]))
        self.ok(self.a.post(f"/visits/{self.ids['T1']}/claim", json={"helper_id": self.ids["H1"]}))  # H1 holds T1
        for unit in ("tA", "cA", "tB", "cB"):
            self.ok(self.a.post(f"/rosters/{self.ids[unit]}", json={}))
        further = {"responder_id": "county-further", "name": "民政局", "phone": "13900000001", "tier": "further"}
        self.ok(self.a.post(f"/rosters/{self.ids['cA']}/responders", json=further))  # so a county may hand up
        self.report_about("E1", "P1", "AD")
        self.report_about("E3", "P3", "AD", escalate=True)
        self.report_about("EB", "PB", "AD", escalate=True)
        self.settle()  # a responder's people are read from the report queue view
        for role in ("CS", "TS", "VC", "CD", "TR", "CR", "V"):  # each files one report: theirs to read
            self.report_about(f"E_{role}", "P3" if role == "CR" else "P1", role)
        self._keep("I1", "v1", self.import_job("tA"))  # dry runs of township A's and township B's sheets
        self._keep("IB", "vB", self.import_job("tB"))

    # -- building --

    def auth(self, role: str) -> dict[str, str]:
        if self.mode == "tokens":
            return self.minted(role)
        session = self.sessions[role]
        if session["expires"] - time.monotonic() < 120:  # a long run outlives an access token: refresh
            fresh = self.ok(
                self.a.post("/auth/refresh", json={"refresh_token": session["refresh"]}, headers={"Authorization": ""})
            )
            session.update(
                access=fresh["access_token"],
                refresh=fresh["refresh_token"],
                expires=time.monotonic() + fresh["expires_in"],
            )
        return {"Authorization": f"Bearer {session['access']}"}

    def spare_auth(self, role: str) -> dict[str, str]:
        """A second session of the role's account, for a cell that ends it (sign-out)."""
        if self.mode == "tokens":
            return self.minted(role)
        return {"Authorization": f"Bearer {self.sessions[role]['spare'][0]['access_token']}"}

    def spare_session(self, role: str) -> str:
        """A third session's id, for a cell that ends it by id."""
        return self.sessions[role]["spare"][1]["session_id"] if self.mode == "sessions" else str(uuid.uuid4())

    def _sign_in_everyone(self) -> None:
        """An account per role in its unit (the volunteer's linked to H1), activated, its second
        factor enrolled, signed in: the session the cells use, and two spare ones."""
        anon = {"Authorization": ""}
        for role in ROLES:
            phone = "188" + f"{uuid.uuid4().int % 10**8:08d}"
            body: dict[str, Any] = {"role": ROLE_NAMES[role], "phone": phone, "display_name": f"矩阵{role}"}
            if role != "AD":
                body["org_unit_id"] = self.ids[UNIT_OF[role]]
            if role == "V":
                body["helper_id"] = self.ids["H1"]
            account = self.ok(self.a.post("/accounts", json=body))
            self._keep(f"S_{role}", UNIT_OF.get(role, "none"), account["id"])
            self.ok(self.a.post("/auth/activate", headers=anon,
                                json={"phone": phone, "activation_code": account["activation_code"], "password": PASSWORD}))  # fmt: skip
            first = self.ok(self.a.post("/auth/sign-in", headers=anon, json={"phone": phone, "password": PASSWORD}))
            bearer = {"Authorization": f"Bearer {first['access_token']}"}
            secret = self.ok(self.a.post("/auth/totp", headers=bearer))["secret"]
            codes = self.ok(
                self.a.post("/auth/totp/confirm", headers=bearer, json={"totp_code": pyotp.TOTP(secret).now()})
            )
            main = self.ok(self.a.post("/auth/refresh", headers=anon, json={"refresh_token": first["refresh_token"]}))
            assert not main["second_factor_enrolment_required"]
            spare = [self.ok(self.a.post("/auth/sign-in", headers=anon,
                                         json={"phone": phone, "password": PASSWORD, "recovery_code": code}))
                     for code in codes["recovery_codes"][:2]]  # fmt: skip
            self.sessions[role] = {"access": main["access_token"], "refresh": main["refresh_token"],
                                   "expires": time.monotonic() + main["expires_in"], "spare": spare}  # fmt: skip

    def account(self, village: str = "v1", helper_id: str | None = None) -> str:
        """A volunteer's account in a village (a role every account-managing role may grant)."""
        body = {"role": "volunteer", "org_unit_id": self.ids[village], "helper_id": helper_id or self.helper(village),
                "phone": "189" + f"{uuid.uuid4().int % 10**8:08d}"}  # fmt: skip
        return self.ok(self.a.post("/accounts", json=body))["id"]

    def minted(self, role: str) -> dict[str, str]:
        if role == "AD":
            return {"Authorization": f"Bearer {token('administrator')}"}
        subject = self.ids["H1"] if role == "V" else f"{role.lower()}-matrix"
        return {"Authorization": f"Bearer {token(ROLE_NAMES[role], self.ids[UNIT_OF[role]], subject)}"}

    @staticmethod
    def ok(r: httpx.Response) -> dict[str, Any]:
        assert r.status_code in (200, 201), (r.request.method, r.request.url, r.status_code, r.text[:500])
        return r.json()

    def _keep(self, name: str, village: str, thing_id: str) -> None:
        self.ids[name], self.village[name] = thing_id, village

    def _units(self) -> None:
        for county, township, villages in (("cA", "tA", ("v1", "v2")), ("cB", "tB", ("vB",))):
            base = f"{uuid.uuid4().int % 10**6:06d}"
            self.ids[county] = self.ok(
                self.a.post("/org-units", json={"code": base + "000000", "name": "县", "level": "county"})
            )["id"]
            self.ids[township] = self.ok(self.a.post("/org-units", json={
                "code": base + "101000", "name": "镇", "level": "township", "parent_id": self.ids[county]}))["id"]  # fmt: skip
            for n, village in enumerate(villages, 1):
                self.ids[village] = self.ok(self.a.post("/org-units", json={
                    "code": base + f"101{n:03d}", "name": f"{n}村", "level": "village", "parent_id": self.ids[township]}))["id"]  # fmt: skip
            self.codes |= {county: base + "000000", township: base + "101000"}

    def person(self, village: str = "v1", kind: str = "elder") -> str:
        body = (elder if kind == "elder" else child)(self.ids[village])
        return self.ok(self.a.post("/persons", json=body))["id"]

    def helper(self, village: str = "v1") -> str:
        return self.ok(self.a.post("/helpers", json=helper(self.ids[village])))["id"]

    def group(self, village: str = "v1", members: list[str] | None = None) -> str:
        body = {"name": "志愿服务队", "org_unit_id": self.ids[village], "member_ids": members or []}
        return self.ok(self.a.post("/groups", json=body))["id"]

    def pairing(self, helpers: list[str], persons: list[str], group: str | None = None) -> str:
        shape = "many_to_one" if len(helpers) > 1 else "one_to_many" if len(persons) > 1 else "one_to_one"
        body = {"shape": shape, "helper_ids": helpers, "person_ids": persons, "cadence": "weekly", "visit_mode": "home_visit",
                "starts_on": (datetime.now(PROGRAMME_TZ).date() - timedelta(days=3)).isoformat(), "group_id": group}  # fmt: skip
        return self.ok(self.a.post("/pairings", json=body))["id"]

    def schedule(self, pairing: str) -> list[dict[str, Any]]:
        """The pairing's tasks (this period's first), scheduled by the scheduler's own command."""
        meta = CommandMeta(
            actor_id="scheduler", actor_role="system", correlation_id=uuid.uuid4().hex, occurred_at=datetime.now(UTC)
        )
        position = self.care.schedule_visits(uuid.UUID(pairing), meta).position
        return self.ok(self.a.get("/visits", params={"pairing_id": pairing, "min_position": position}))["items"]

    def log(self, pairing: str, person: str, helper_id: str) -> str:
        body = {"id": str(uuid.uuid4()), "occurred_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
                "mode": "phone_video", "pairing_id": pairing, "person_id": person, "helper_ids": [helper_id]}  # fmt: skip
        return self.ok(self.a.post("/visit-logs", json=body))["id"]

    def report_about(self, name: str, subject: str, role: str, *, escalate: bool = False) -> None:
        body = {"category": "neglect", "severity": "normal", "person_id": self.ids[subject]}
        report = self.ok(self.a.post("/emergencies", json=body, headers=self.auth(role)))
        if escalate:
            self.ok(self.a.post(f"/emergencies/{report['id']}/escalate", json={"notes": "县里协调"}))
        self.reports[name] = Report(report["id"], subject, self.village[subject], 1 if escalate else 0, role)
        self._keep(name, self.village[subject], report["id"])

    def report(self, *, escalate: bool = False, resolve: bool = False) -> str:
        """A fresh report at a place in village 1 (about no registered person)."""
        body = {
            "category": "wandering_missing",
            "severity": "high",
            "location": {"org_unit_id": self.ids["v1"], "address": "桥头"},
        }
        report_id = self.ok(self.a.post("/emergencies", json=body))["id"]
        if escalate:
            self.ok(self.a.post(f"/emergencies/{report_id}/escalate", json={"notes": "县里协调"}))
        if resolve:
            self.ok(self.a.post(f"/emergencies/{report_id}/resolve", json={"outcome": "help_given"}))
        return report_id

    def responder(self, unit_id: str) -> str:
        rid = f"r-{uuid.uuid4().hex[:8]}"
        body = {"responder_id": rid, "name": "值班员", "phone": "13900000000"}
        self.ok(self.a.post(f"/rosters/{unit_id}/responders", json=body))
        return rid

    def position(self) -> int:
        return self.care.recorder.max_notification_id() or 0

    def import_job(self, unit: str, *, failed: bool = False) -> str:
        """A finished dry run of a one-row sheet for the unit (or one marked failed, to resume)."""
        r = self.a.post(
            "/imports", params={"org_unit": self.ids[unit]}, files={"file": ("台账.csv", import_sheet(), "text/csv")}
        )
        assert r.status_code == 202, r.text[:300]
        job_id = r.json()["id"]
        wait_until(lambda: self.a.get(f"/imports/{job_id}").json()["status"] == "done", what="the import's dry run")
        if failed:
            with psycopg.connect(self.server.database_url) as conn:
                conn.execute("UPDATE guanai_import_jobs SET status = 'failed' WHERE id = %s", (job_id,))
        return job_id

    def settle(self) -> None:
        """Wait until the views have every event written so far."""
        self.ok(self.a.get("/org-units", params={"min_position": self.position(), "limit": 1}))

    # -- the policy's objects: in a role's scope and just outside it --

    def pick(self, kind: str, role: str, scopes: frozenset[str]) -> tuple[str, str | None]:
        """An object of ``kind`` in the role's scope and one outside it (None: nothing is outside)."""
        if scopes & {"all", "any"}:
            return self.ids[SAMPLE[kind]], None
        if kind == "unit":  # another county; the township's county; the other village
            unit = UNIT_OF[role]
            return self.ids[unit], self.ids[{"cA": "cB", "tA": "cA", "v1": "v2"}[unit]]
        if kind == "village":
            return self.ids["v1"], self.ids["v2" if UNIT_OF[role] == "v1" else "vB"]
        if kind == "report" and "subtree" not in scopes and "area" not in scopes:  # reporter only
            return self.ids[f"E_{role}"], self.ids["E1"]
        if "area" in scopes:
            return {"person": (self.ids["P1"], self.ids["P2"]), "report": (self.ids["E1"], self.ids["EB"])}[kind] if role == "TR" else \
                {"person": (self.ids["P3"], self.ids["P1"]), "report": (self.ids["E3"], self.ids["E1"])}[kind]  # fmt: skip
        letter = {"person": "P", "helper": "H", "group": "G", "pairing": "PA", "task": "T", "log": "L", "report": "E", "stream": "P",
                  "account": "A", "import": "I"}[kind]  # fmt: skip
        if "own" in scopes:
            return self.ids[f"{letter}1"], self.ids[f"{letter}2"]
        outside = f"{letter}3" if UNIT_OF[role] == "v1" else f"{letter}B"
        return self.ids[f"{letter}1"], self.ids[outside]

    def visible(self, kind: str, role: str, scopes: frozenset[str]) -> set[str]:
        """What a list of ``kind`` shows the role, worked out from the policy's definitions."""
        if kind == "report":
            return {r.id for r in self.reports.values() if self.sees_report(r, role, scopes)}
        names = {"person": ["P1", "P2", "P3", "PB", "K1"], "helper": ["H1", "H2", "H3", "HB"], "group": ["G1", "G2", "G3", "GB"],
                 "pairing": ["PA1", "PA2", "PA3", "PAB"], "log": ["L1", "L2", "L3", "LB"],
                 "account": ["A1", "A2", "A3", "AB", *(f"S_{r}" for r in self.sessions)]}  # fmt: skip
        if kind == "task":
            rows = [(t, p) for p, ts in self.tasks.items() for t in ts]
            return {t for t, p in rows if self.sees(p, role, scopes, own=p == "PA1")}
        seen = set()
        for name in names[kind]:
            own = name in ("P1", "H1", "G1", "PA1", "L1")
            area = (
                "area" in scopes
                and kind == "person"
                and any(r.subject == name and self.in_area(r, role) for r in self.reports.values())
            )
            if self.sees(name, role, scopes, own=own) or area:
                seen.add(self.ids[name])
        return seen

    def sees(self, name: str, role: str, scopes: frozenset[str], *, own: bool) -> bool:
        if scopes & {"all", "any"}:
            return True
        if "subtree" in scopes and UNIT_OF[role] in PATHS[self.village[name]]:
            return True
        return "own" in scopes and own

    def in_area(self, r: Report, role: str) -> bool:
        return UNIT_OF[role] in PATHS[r.village] and (role != "CR" or r.level >= 1)

    def sees_report(self, r: Report, role: str, scopes: frozenset[str]) -> bool:
        return (
            bool(scopes & {"all", "any"})
            or ("subtree" in scopes and UNIT_OF[role] in PATHS[r.village])
            or ("area" in scopes and self.in_area(r, role))
            or ("reporter" in scopes and r.reporter == role)
        )


SAMPLE = {"person": "P1", "helper": "H1", "group": "G1", "pairing": "PA1", "task": "T1", "log": "L1", "report": "E1",
          "unit": "tA", "village": "v1", "stream": "P1", "account": "A1", "import": "I1"}  # fmt: skip


def _import_finished(w: World, r: httpx.Response) -> None:
    """A committed import writes in the background: the next cell's "wrote nothing" needs it done."""
    job_id = r.headers["location"].rstrip("/").rsplit("/", 1)[1]
    wait_until(
        lambda: w.a.get(f"/imports/{job_id}").json()["status"] in {"done", "failed", "refused"},
        what="the committed import",
    )


def import_sheet() -> bytes:
    """A registry sheet of one child of village 1 (a fresh ID number each time)."""
    row = child_row("1村", fresh_seq(), 出生日期="2015-03-08")
    return (",".join(HEADERS) + "\r\n" + ",".join(str(v) for v in row) + "\r\n").encode("gb18030")


# ---- recipes: how to send each route's request ---------------------------------------------------

Body = Callable[[World, str, dict[str, Any]], dict[str, Any] | None]


@dataclass(frozen=True)
class Recipe:
    grants: Grants
    target: str | None = None  # the kind the path's first parameter names
    body: Body | None = None  # the in-scope body (world, role, the cell's fresh context)
    refs: dict[str, str] = field(default_factory=dict)  # body field -> kind ("helper[]": a list of ids)
    ref_grants: Grants | None = None  # whose scope the references are checked in (default: the route's)
    lists: str | None = None  # the kind of the rows
    filters: dict[str, str] = field(default_factory=dict)  # query parameter naming an object -> kind
    params: Callable[[World], dict[str, Any]] | None = None
    fresh: Callable[[World, str], dict[str, Any]] | None = None  # the cell's own target (and more), made first
    inside: Callable[[World, str], str] | None = None  # the in-scope target, when not the kind's pick
    more: Callable[[World, str, dict[str, Any]], dict[str, str]] | None = None  # other path parameters
    ok: tuple[int, ...] = (200,)
    stream: bool = False
    form: bool = False  # a web page's form: the body goes URL-encoded
    page_lists: str | None = None  # a web page listing these: each row links to /app/<page_lists>/<id>
    token_ok: tuple[int, ...] | None = None  # what a minted token gets in scope, when not ``ok`` (no account)
    spare_session: bool = False  # sent with a spare session of the role's account (the cell ends it)
    files: Callable[[], bytes] | None = None  # a multipart upload (field ``file``) instead of a JSON body
    query_target: str | None = None  # the target goes in this query parameter, not the path
    after: Callable[[World, httpx.Response], None] | None = None  # waits for what the request set going


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _helper_for(w: World, role: str) -> str:
    """The helper a fresh pairing of the cell gets: the volunteer themself, or a new helper."""
    return w.ids["H1"] if role == "V" else w.helper()


def _fresh_task(claim: bool = False) -> Callable[[World, str], dict[str, Any]]:
    def make(w: World, role: str) -> dict[str, Any]:
        helper_id = _helper_for(w, role)
        task = w.schedule(w.pairing([helper_id], [w.person()]))[0]
        if claim:
            w.ok(w.a.post(f"/visits/{task['id']}/claim", json={"helper_id": helper_id}))
        return {"id": task["id"], "helper": helper_id, "task": task}

    return make


def _group_task(w: World, role: str) -> dict[str, Any]:
    member = _helper_for(w, role)
    group = w.group("v1", [member])
    task = w.schedule(w.pairing([w.helper()], [w.person()], group=group))[0]
    w.ok(w.a.post(f"/visits/{task['id']}/claim", json={"group_id": group}))
    return {"id": task["id"], "helper": member}


def _log_body(w: World, role: str, ctx: dict[str, Any]) -> dict[str, Any]:
    task = ctx.get("task")
    opens = datetime.fromisoformat(task["opens_at"]) if task else datetime.now(UTC) - timedelta(days=1)
    visited = max(opens + timedelta(seconds=1), datetime.now(UTC) - timedelta(minutes=5))
    body: dict[str, Any] = {"id": str(uuid.uuid4()), "occurred_at": visited.isoformat(), "mode": "home_visit",
                            "services": ["daily_life_care"]}  # fmt: skip
    if role != "V":  # a volunteer's log names them by default
        body["helper_ids"] = [ctx.get("helper") or w.ids["H1"]]
    return body


def _pairing_with(helpers: int, persons: int) -> Callable[[World, str], dict[str, Any]]:
    def make(w: World, role: str) -> dict[str, Any]:
        hs, ps = [w.helper() for _ in range(helpers)], [w.person() for _ in range(persons)]
        return {"id": w.pairing(hs, ps), "helpers": hs, "persons": ps}

    return make


def _unit_code(w: World, role: str) -> str:
    return w.codes["cA"][:6] + f"{uuid.uuid4().int % 800 + 200:03d}000"  # township A is 101


def _report_body(w: World, role: str, ctx: dict[str, Any]) -> dict[str, Any]:
    inside, _ = w.pick("person", role, PERSONS_READ[role])
    return {"category": "neglect", "severity": "normal", "person_id": inside, "description": "无人照料"}


def _roster_unit(w: World, role: str) -> str:
    return w.pick("unit", role, ROSTERS_WRITE[role])[0]


def _fresh_report(**how: bool) -> Callable[[World, str], dict[str, Any]]:
    return lambda w, role: {
        "id": w.report(escalate=role == "CR" or how.get("escalate", False), resolve=how.get("resolve", False))
    }


def _fresh_person(w: World, role: str) -> dict[str, Any]:
    return {"id": w.person()}


def _left_person(w: World, role: str) -> dict[str, Any]:
    person = w.person()
    w.ok(w.a.post(f"/persons/{person}/leave", json={"reason": "随父母外出"}))
    return {"id": person}


def _fresh_responder(w: World, role: str) -> dict[str, Any]:
    unit = _roster_unit(w, role)
    return {"id": unit, "responder": w.responder(unit)}


SHIFTS = [{"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "18:00"}]


def _fresh_account(w: World, role: str) -> dict[str, Any]:
    return {"id": w.account("v1")}


def _locked_account(w: World, role: str) -> dict[str, Any]:
    account = w.account("v1")
    w.ok(w.a.post(f"/accounts/{account}/lock", json={"reason": "手机丢失"}))
    return {"id": account}


def _totp_started(w: World, role: str) -> dict[str, Any]:
    """An enrolment of a new authenticator app started by the role's account, and its code now."""
    if w.mode == "tokens":
        return {}
    secret = w.ok(w.a.post("/auth/totp", headers=w.auth(role)))["secret"]
    return {"code": pyotp.TOTP(secret).now()}


RECIPES: dict[tuple[str, str], Recipe] = {
    # org units
    ("GET", "/org-units"): Recipe(ANYONE, lists="unit"),
    ("GET", "/org-units/{unit_id:uuid}"): Recipe(ANYONE, target="unit"),
    ("POST", "/org-units"): Recipe(
        UNITS_WRITE, refs={"parent_id": "unit"}, ok=(201,),
        body=lambda w, role, ctx: {"code": _unit_code(w, role), "name": "新镇", "level": "township", "parent_id": w.ids["cA"]}),
    ("POST", "/org-units/{unit_id:uuid}/rename"): Recipe(UNITS_WRITE, target="unit", body=lambda w, role, ctx: {"name": f"县{role}"}),
    # persons
    ("GET", "/persons"): Recipe(PERSONS_READ, lists="person", filters={"org_unit_id": "unit"}),
    ("GET", "/persons/{person_id:uuid}"): Recipe(PERSONS_READ, target="person"),
    ("GET", "/persons/{person_id:uuid}/timeline"): Recipe(PERSONS_READ, target="person"),
    ("POST", "/persons"): Recipe(PERSONS_WRITE, refs={"village_id": "village"}, ok=(201,),
                                 body=lambda w, role, ctx: elder(w.ids["v1"])),
    ("POST", "/persons/{person_id:uuid}/risk-tags"): Recipe(PERSONS_WRITE, target="person", body=lambda w, role, ctx: {"tag": "advanced_age"}),
    ("POST", "/persons/{person_id:uuid}/risk-tags/remove"): Recipe(PERSONS_WRITE, target="person", body=lambda w, role, ctx: {"tag": "advanced_age"}),
    ("POST", "/persons/{person_id:uuid}/guardian"): Recipe(
        PERSONS_WRITE, target="person", inside=lambda w, role: w.ids["K1"],
        body=lambda w, role, ctx: {"guardian": {"name": "王奶奶", "relation": "grandmother"}}),
    ("POST", "/persons/{person_id:uuid}/care-agreement"): Recipe(
        PERSONS_WRITE, target="person", inside=lambda w, role: w.ids["K1"], body=lambda w, role, ctx: {"signed_on": "2026-01-05"}),
    ("POST", "/persons/{person_id:uuid}/leave"): Recipe(PERSONS_WRITE, target="person", fresh=_fresh_person,
                                                        body=lambda w, role, ctx: {"reason": "随父母外出"}),
    ("POST", "/persons/{person_id:uuid}/return"): Recipe(PERSONS_WRITE, target="person", fresh=_left_person, body=lambda w, role, ctx: {}),
    ("POST", "/persons/{person_id:uuid}/erase"): Recipe(ERASE, target="person", fresh=_fresh_person,
                                                        body=lambda w, role, ctx: {"reason": "监护人依法申请删除"}),
    # helpers and groups
    ("GET", "/helpers"): Recipe(HELPERS_READ, lists="helper", filters={"org_unit_id": "unit"}),
    ("GET", "/helpers/{helper_id:uuid}"): Recipe(HELPERS_READ, target="helper"),
    ("GET", "/helpers/{helper_id:uuid}/visits"): Recipe(HELPERS_READ, target="helper", lists="held"),
    ("POST", "/helpers"): Recipe(HELPERS_WRITE, refs={"org_unit_id": "village"}, ok=(201,), body=lambda w, role, ctx: helper(w.ids["v1"])),
    ("POST", "/helpers/{helper_id:uuid}/capacity"): Recipe(HELPERS_WRITE, target="helper", fresh=lambda w, role: {"id": w.helper()},
                                                           body=lambda w, role, ctx: {"capacity": 12}),
    ("POST", "/helpers/{helper_id:uuid}/deactivate"): Recipe(HELPERS_WRITE, target="helper", fresh=lambda w, role: {"id": w.helper()},
                                                             body=lambda w, role, ctx: {"reason": "外出务工"}),
    ("GET", "/groups"): Recipe(GROUPS_READ, lists="group", filters={"org_unit_id": "unit"}),
    ("GET", "/groups/{group_id:uuid}"): Recipe(GROUPS_READ, target="group"),
    ("POST", "/groups"): Recipe(GROUPS_WRITE, refs={"org_unit_id": "village", "member_ids": "helper[]"}, ok=(201,),
                                body=lambda w, role, ctx: {"name": "新队", "org_unit_id": w.ids["v1"], "member_ids": [w.helper()]}),
    ("POST", "/groups/{group_id:uuid}/members"): Recipe(GROUPS_WRITE, target="group", refs={"helper_id": "helper"},
                                                        body=lambda w, role, ctx: {"helper_id": w.helper()}),
    ("POST", "/groups/{group_id:uuid}/members/remove"): Recipe(
        GROUPS_WRITE, target="group", refs={"helper_id": "helper"},
        fresh=lambda w, role: (lambda m: {"id": w.group("v1", m), "members": m})([w.helper(), w.helper()]),  # noqa: PLC3002
        body=lambda w, role, ctx: {"helper_id": ctx["members"][0]}),
    ("POST", "/groups/{group_id:uuid}/disband"): Recipe(GROUPS_WRITE, target="group", fresh=lambda w, role: {"id": w.group("v1", [w.helper()])},
                                                        body=lambda w, role, ctx: {"reason": "队员外出"}),
    # pairings
    ("GET", "/pairings"): Recipe(PAIRINGS_READ, lists="pairing", filters={"org_unit_id": "unit", "helper_id": "helper", "person_id": "person"}),
    ("GET", "/pairings/{pairing_id:uuid}"): Recipe(PAIRINGS_READ, target="pairing"),
    ("POST", "/pairings"): Recipe(
        PAIRINGS_WRITE, refs={"helper_ids": "helper[]", "person_ids": "person[]", "group_id": "group"}, ok=(201,),
        body=lambda w, role, ctx: {"shape": "one_to_one", "helper_ids": [w.helper()], "person_ids": [w.person()], "group_id": w.group(),
                                   "cadence": "monthly", "visit_mode": "phone_video", "starts_on": "2026-01-05"}),
    ("POST", "/pairings/{pairing_id:uuid}/add-person"): Recipe(PAIRINGS_WRITE, target="pairing", refs={"person_id": "person"},
                                                               fresh=_pairing_with(1, 2), body=lambda w, role, ctx: {"person_id": w.person()}),
    ("POST", "/pairings/{pairing_id:uuid}/remove-person"): Recipe(
        PAIRINGS_WRITE, target="pairing", refs={"person_id": "person"}, fresh=_pairing_with(1, 3),
        body=lambda w, role, ctx: {"person_id": ctx["persons"][0], "reason": "随父母外出"}),
    ("POST", "/pairings/{pairing_id:uuid}/add-helper"): Recipe(PAIRINGS_WRITE, target="pairing", refs={"helper_id": "helper"},
                                                               fresh=_pairing_with(2, 1), body=lambda w, role, ctx: {"helper_id": w.helper()}),
    ("POST", "/pairings/{pairing_id:uuid}/remove-helper"): Recipe(PAIRINGS_WRITE, target="pairing", refs={"helper_id": "helper"},
                                                                  fresh=_pairing_with(3, 1), body=lambda w, role, ctx: {"helper_id": ctx["helpers"][0]}),
    ("POST", "/pairings/{pairing_id:uuid}/cadence"): Recipe(PAIRINGS_WRITE, target="pairing", fresh=_pairing_with(1, 1),
                                                            body=lambda w, role, ctx: {"cadence": "monthly", "visit_mode": "phone_video"}),
    ("POST", "/pairings/{pairing_id:uuid}/end"): Recipe(PAIRINGS_WRITE, target="pairing", fresh=_pairing_with(1, 1),
                                                        body=lambda w, role, ctx: {"reason": "老人随子女进城"}),
    # visit tasks and logs
    ("GET", "/visits"): Recipe(VISITS_READ, lists="task", filters={"org_unit_id": "unit", "pairing_id": "pairing", "person_id": "person"}),
    ("GET", "/visits/{task_id:uuid}"): Recipe(VISITS_READ, target="task"),
    ("POST", "/visits/{task_id:uuid}/claim"): Recipe(VISITS_WRITE, target="task", fresh=_fresh_task(), refs={"group_id": "group"},
                                                     body=lambda w, role, ctx: {} if role == "V" else {"helper_id": ctx["helper"]}),
    ("POST", "/visits/{task_id:uuid}/assign"): Recipe(VISITS_WRITE, target="task", fresh=_group_task,
                                                      body=lambda w, role, ctx: {"helper_id": ctx["helper"]}),
    ("POST", "/visits/{task_id:uuid}/release"): Recipe(VISITS_WRITE, target="task", fresh=_fresh_task(claim=True),
                                                       body=lambda w, role, ctx: {"reason": "老人去女儿家住一周"}),
    ("POST", "/visits/{task_id:uuid}/complete"): Recipe(VISITS_WRITE, target="task", fresh=_fresh_task(), body=_log_body, ok=(201,)),
    ("POST", "/visit-logs"): Recipe(VISITS_WRITE, refs={"pairing_id": "pairing", "person_id": "person"}, ok=(201,),
                                    body=lambda w, role, ctx: {**_log_body(w, role, ctx), "pairing_id": w.ids["PA1"], "person_id": w.ids["P1"]}),
    ("GET", "/visit-logs"): Recipe(VISITS_READ, lists="log", filters={"helper_id": "helper", "pairing_id": "pairing", "person_id": "person"}),
    ("GET", "/visit-logs/{log_id:uuid}"): Recipe(VISITS_READ, target="log"),
    # emergencies
    ("POST", "/emergencies"): Recipe(FILE, refs={"person_id": "person"}, ref_grants=PERSONS_READ, body=_report_body, ok=(201,)),
    ("GET", "/emergencies"): Recipe(QUEUE, lists="report", params=lambda w: {"status": "all"}),
    ("GET", "/emergencies/stream"): Recipe(QUEUE, stream=True),
    ("GET", "/emergencies/{report_id:uuid}"): Recipe(REPORT_READ, target="report"),
    ("POST", "/emergencies/{report_id:uuid}/acknowledge"): Recipe(RESPOND, target="report", fresh=_fresh_report(), body=lambda w, role, ctx: {}),
    ("POST", "/emergencies/{report_id:uuid}/actions"): Recipe(RESPOND, target="report", fresh=_fresh_report(),
                                                              body=lambda w, role, ctx: {"action": "dispatched", "notes": "村医出发"}),
    ("POST", "/emergencies/{report_id:uuid}/escalate"): Recipe(RESPOND, target="report", fresh=_fresh_report(),
                                                               body=lambda w, role, ctx: {"notes": "需要上级协调"}),
    ("POST", "/emergencies/{report_id:uuid}/resolve"): Recipe(RESPOND, target="report", fresh=_fresh_report(),
                                                              body=lambda w, role, ctx: {"outcome": "help_given"}),
    ("POST", "/emergencies/{report_id:uuid}/reopen"): Recipe(RESPOND, target="report", fresh=_fresh_report(resolve=True),
                                                             body=lambda w, role, ctx: {"notes": "老人又走失"}),
    ("POST", "/emergencies/{report_id:uuid}/link"): Recipe(
        RESPOND, target="report", refs={"duplicate_of": "report"}, fresh=_fresh_report(),
        body=lambda w, role, ctx: {"duplicate_of": w.pick("report", role, RESPOND[role])[0]}),
    ("POST", "/emergencies/{report_id:uuid}/close"): Recipe(CLOSE, target="report", fresh=_fresh_report(resolve=True), body=lambda w, role, ctx: {}),
    # rosters
    ("GET", "/rosters/{org_unit_id:uuid}"): Recipe(ROSTERS_READ, target="unit"),
    ("GET", "/rosters/{org_unit_id:uuid}/on-duty"): Recipe(ROSTERS_READ, target="unit"),
    ("POST", "/rosters/{org_unit_id:uuid}"): Recipe(ROSTERS_WRITE, target="unit", body=lambda w, role, ctx: {}),
    ("POST", "/rosters/{org_unit_id:uuid}/responders"): Recipe(
        ROSTERS_WRITE, target="unit", body=lambda w, role, ctx: {"responder_id": f"r-{uuid.uuid4().hex[:8]}", "name": "值班员", "phone": "13900000002"}),
    ("POST", "/rosters/{org_unit_id:uuid}/responders/{responder_id:str}/shifts"): Recipe(
        ROSTERS_WRITE, target="unit", fresh=_fresh_responder, more=lambda w, role, ctx: {"responder_id": ctx.get("responder", "nobody")},
        body=lambda w, role, ctx: {"shifts": SHIFTS}),
    ("DELETE", "/rosters/{org_unit_id:uuid}/responders/{responder_id:str}"): Recipe(
        ROSTERS_WRITE, target="unit", fresh=_fresh_responder, more=lambda w, role, ctx: {"responder_id": ctx.get("responder", "nobody")}),
    ("POST", "/rosters/{org_unit_id:uuid}/deadlines"): Recipe(ROSTERS_WRITE, target="unit", body=lambda w, role, ctx: {"high": 900}),
    # supervision
    **{("GET", f"/supervision/{{org_unit:str}}{tail}"): Recipe(SUPERVISION, target="unit")
       for tail in ("", "/emergencies-past-deadline", "/emergencies-past-deadline.csv")},
    **{("GET", f"/supervision/{{org_unit:str}}{tail}"): Recipe(SUPERVISION_PEOPLE, target="unit")
       for tail in ("/uncovered", "/overdue", "/uncovered.csv", "/overdue.csv")},
    **{("GET", f"/supervision/{{org_unit:str}}{tail}"): Recipe(SUPERVISION_PEOPLE, target="unit")
       for tail in ("/registry.xlsx", "/inspection.xlsx")},
    # registry imports
    ("GET", "/imports/template.xlsx"): Recipe(IMPORTS),
    ("POST", "/imports"): Recipe(IMPORTS, target="unit", query_target="org_unit", files=import_sheet, ok=(202,)),
    ("GET", "/imports/{import_id:uuid}"): Recipe(IMPORTS, target="import"),
    ("GET", "/imports/{import_id:uuid}/report"): Recipe(IMPORTS, target="import"),
    ("GET", "/imports/{import_id:uuid}/report.xlsx"): Recipe(IMPORTS, target="import"),
    ("POST", "/imports/{import_id:uuid}/commit"): Recipe(IMPORTS, target="import", ok=(202,), after=_import_finished),
    ("POST", "/imports/{import_id:uuid}/resume"): Recipe(IMPORTS, target="import", ok=(202,),
                                                         fresh=lambda w, role: {"id": w.import_job("tA", failed=True)}),
    # audit
    ("GET", "/audit/streams/{stream_id:uuid}"): Recipe(AUDIT_READ, target="stream"),
    ("GET", "/audit/streams/{stream_id:uuid}/state"): Recipe(AUDIT_READ, target="stream", params=lambda w: {"as_of": _now()}),
    ("GET", "/audit/streams/{stream_id:uuid}/export"): Recipe(AUDIT_READ, target="stream", params=lambda w: {"format": "json"}),
    ("GET", "/audit/persons/{person_id:uuid}/access-log"): Recipe(AUDIT_READ, target="person"),
    ("GET", "/audit/verify"): Recipe(AUDIT_CHECK),
    ("GET", "/audit/checkpoint"): Recipe(AUDIT_CHECK),
    ("GET", "/audit/checkpoints/latest"): Recipe(AUDIT_CHECK),
    ("GET", "/audit/public-key"): Recipe(AUDIT_CHECK),
    ("GET", "/audit/proofs/consistency"): Recipe(AUDIT_CHECK, params=lambda w: {"from": 1}),
    ("GET", "/audit/streams/{stream_id:uuid}/proofs"): Recipe(AUDIT_READ, target="stream"),
    # tokens
    ("POST", "/auth/revoke"): Recipe(REVOKE, body=lambda w, role, ctx: {"jti": uuid.uuid4().hex, "reason": "手机丢失"}),
    # web pages of supervisors, auditors and administrators: the grants of the API routes they show
    ("GET", "/app/supervision"): Recipe(SUPERVISION, ok=(303,)),
    ("GET", "/app/supervision/{org_unit:str}"): Recipe(SUPERVISION, target="unit"),
    ("GET", "/app/supervision/{org_unit:str}/uncovered"): Recipe(SUPERVISION_PEOPLE, target="unit"),
    ("GET", "/app/supervision/{org_unit:str}/overdue"): Recipe(SUPERVISION_PEOPLE, target="unit"),
    ("GET", "/app/audit"): Recipe(AUDIT_READ),
    ("GET", "/app/audit/persons/{person_id:uuid}"): Recipe(AUDIT_READ, target="person"),
    ("GET", "/app/audit/verify"): Recipe(AUDIT_CHECK),
    ("GET", "/app/rosters"): Recipe(ROSTERS_READ),
    ("GET", "/app/rosters/{org_unit_id:uuid}"): Recipe(ROSTERS_READ, target="unit"),
    # setting up a roster the unit keeps already, as it was set up, repeats it: nothing new is written
    ("GET", "/app/imports"): Recipe(IMPORTS, target="unit", query_target="org_unit"),
    ("POST", "/app/imports"): Recipe(IMPORTS, target="unit", query_target="org_unit", files=import_sheet, ok=(303,)),
    ("GET", "/app/imports/{import_id:uuid}"): Recipe(IMPORTS, target="import"),
    ("POST", "/app/imports/{import_id:uuid}/commit"): Recipe(IMPORTS, target="import", form=True, ok=(303,),
                                                             after=_import_finished),
    ("GET", "/app/accounts"): Recipe(ACCOUNTS_READ),
    ("GET", "/app/accounts/{account_id:uuid}"): Recipe(ACCOUNTS_READ, target="account"),
    ("POST", "/app/accounts"): Recipe(ACCOUNTS_WRITE, form=True, refs={"org_unit_id": "village", "helper_id": "helper"}, ok=(200,),
                                      body=lambda w, role, ctx: {"role": "volunteer", "org_unit_id": w.ids["v1"], "helper_id": w.helper(),
                                                                 "phone": "186" + f"{uuid.uuid4().int % 10**8:08d}"}),
    ("POST", "/app/accounts/{account_id:uuid}/role"): Recipe(
        ACCOUNTS_WRITE, form=True, target="account", refs={"org_unit_id": "village", "helper_id": "helper"}, fresh=_fresh_account, ok=(303,),
        body=lambda w, role, ctx: {"role": "volunteer", "org_unit_id": w.ids["v1"], "helper_id": w.helper()}),
    ("POST", "/app/accounts/{account_id:uuid}/lock"): Recipe(ACCOUNTS_WRITE, form=True, target="account", fresh=_fresh_account, ok=(303,),
                                                             body=lambda w, role, ctx: {"reason": "手机丢失"}),
    ("POST", "/app/accounts/{account_id:uuid}/unlock"): Recipe(ACCOUNTS_WRITE, form=True, target="account", fresh=_locked_account, ok=(303,),
                                                               body=lambda w, role, ctx: {"csrf_token": ""}),
    ("POST", "/app/accounts/{account_id:uuid}/reset"): Recipe(ACCOUNTS_WRITE, form=True, target="account", fresh=_fresh_account, ok=(200,),
                                                              body=lambda w, role, ctx: {"reason": "忘记密码"}),
    ("POST", "/app/accounts/{account_id:uuid}/close"): Recipe(ACCOUNTS_WRITE, form=True, target="account", fresh=_fresh_account, ok=(303,),
                                                              body=lambda w, role, ctx: {"reason": "外出务工不再服务"}),
    ("POST", "/app/rosters/{org_unit_id:uuid}"): Recipe(ROSTERS_WRITE, target="unit", form=True, ok=(303,),
                                                        body=lambda w, role, ctx: {"critical": ""}),
    ("POST", "/app/rosters/{org_unit_id:uuid}/deadlines"): Recipe(ROSTERS_WRITE, target="unit", form=True, ok=(303,),
                                                                  body=lambda w, role, ctx: {"critical": "600"}),
    ("POST", "/app/rosters/{org_unit_id:uuid}/responders"): Recipe(
        ROSTERS_WRITE, target="unit", form=True, ok=(303,),
        body=lambda w, role, ctx: {"responder_id": f"r-{uuid.uuid4().hex[:8]}", "name": "值班员", "phone": "13900000003", "tier": "primary"}),
    ("POST", "/app/rosters/{org_unit_id:uuid}/responders/{responder_id:str}/remove"): Recipe(
        ROSTERS_WRITE, target="unit", form=True, ok=(303,), fresh=_fresh_responder,
        more=lambda w, role, ctx: {"responder_id": ctx.get("responder", "nobody")}, body=lambda w, role, ctx: {"csrf_token": ""}),
    # accounts
    ("GET", "/accounts"): Recipe(ACCOUNTS_READ, lists="account", filters={"org_unit_id": "unit"}),
    ("GET", "/accounts/{account_id:uuid}"): Recipe(ACCOUNTS_READ, target="account"),
    ("GET", "/accounts/{account_id:uuid}/sign-ins"): Recipe(SIGN_INS, target="account"),
    ("POST", "/accounts"): Recipe(ACCOUNTS_WRITE, refs={"org_unit_id": "village", "helper_id": "helper"}, ok=(201,),
                                  body=lambda w, role, ctx: {"role": "volunteer", "org_unit_id": w.ids["v1"], "helper_id": w.helper(),
                                                             "phone": "187" + f"{uuid.uuid4().int % 10**8:08d}"}),
    ("POST", "/accounts/{account_id:uuid}/role"): Recipe(
        ACCOUNTS_WRITE, target="account", refs={"org_unit_id": "village", "helper_id": "helper"}, fresh=_fresh_account,
        body=lambda w, role, ctx: {"role": "volunteer", "org_unit_id": w.ids["v1"], "helper_id": w.helper()}),
    ("POST", "/accounts/{account_id:uuid}/lock"): Recipe(ACCOUNTS_WRITE, target="account", fresh=_fresh_account,
                                                         body=lambda w, role, ctx: {"reason": "手机丢失"}),
    ("POST", "/accounts/{account_id:uuid}/unlock"): Recipe(ACCOUNTS_WRITE, target="account", fresh=_locked_account,
                                                           body=lambda w, role, ctx: {}),
    ("POST", "/accounts/{account_id:uuid}/reset"): Recipe(ACCOUNTS_WRITE, target="account", fresh=_fresh_account,
                                                          body=lambda w, role, ctx: {"reason": "忘记密码"}),
    ("POST", "/accounts/{account_id:uuid}/close"): Recipe(ACCOUNTS_WRITE, target="account", fresh=_fresh_account,
                                                          body=lambda w, role, ctx: {"reason": "外出务工不再服务"}),
    # one's own sessions and second factor: an account's, so a minted token gets 409 not-an-account
    ("GET", "/auth/me"): Recipe(SELF),
    ("GET", "/auth/sessions"): Recipe(SELF, token_ok=(409,)),
    ("DELETE", "/auth/sessions/{session_id:uuid}"): Recipe(SELF, ok=(204,), token_ok=(409,),
                                                            fresh=lambda w, role: {"id": w.spare_session(role)}),
    ("POST", "/auth/sign-out"): Recipe(SELF, ok=(204,), token_ok=(409,), spare_session=True),
    ("POST", "/auth/totp"): Recipe(SELF, token_ok=(409,)),
    ("POST", "/auth/totp/confirm"): Recipe(SELF, token_ok=(409,), fresh=_totp_started,
                                           body=lambda w, role, ctx: {"totp_code": ctx.get("code", "000000")}),
    ("POST", "/auth/recovery-codes"): Recipe(SELF, token_ok=(409,)),
    # web pages: a page answers a program (no Accept: text/html) with the API's problem details
    ("GET", "/app"): Recipe(ANYONE, ok=(200, 303)),  # volunteers and responders go on to their screen
    ("GET", "/app/visits"): Recipe(VISITS_WRITE),  # the page lists what GET /visits lists (tests/test_web_volunteer.py)
    ("GET", "/app/people"): Recipe(PERSONS_READ, page_lists="people"),
    ("GET", "/app/people/{person_id:uuid}"): Recipe(PERSONS_READ, target="person"),
    ("GET", "/app/console"): Recipe(QUEUE),
}  # fmt: skip
# No token at all (and the /schema pages); signing in is tried in tests/e2e/test_accounts_api.py.
PUBLIC = {
    ("GET", "/health"),
    ("GET", "/metrics"),  # GUANAI_METRICS_TOKEN, not an account, guards it (tests/e2e/test_metrics.py)
    ("POST", "/auth/activate"),
    ("POST", "/auth/sign-in"),
    ("POST", "/auth/refresh"),
    ("GET", "/app/sign-in"),
    ("GET", "/app/second-factor"),
    ("GET", "/app/sw.js"),
    ("GET", "/app/manifest.webmanifest"),
    ("GET", "/app/{rest:path}"),
    ("GET", "/app/static/{file_path:path}"),
    ("HEAD", "/app/static/{file_path:path}"),
}


def app_routes() -> list[tuple[str, str]]:
    app = bootstrap.api(
        Settings(), database_url="postgresql://nobody@127.0.0.1:1/none", nats_url=None, jwt_secret=SECRET
    )
    return sorted(
        (method, route.path)
        for route in app.routes
        for method in getattr(route, "methods", ())
        if method != "OPTIONS" and not route.path.startswith("/schema")
    )


ROUTES = app_routes()
# Reads first: every write below happens after them, on objects made for its cell.
CELLS = [
    (m, p, role) for m, p in sorted(ROUTES, key=lambda k: (k[0] != "GET", k)) if (m, p) not in PUBLIC for role in ROLES
]


# ---- the tests ---------------------------------------------------------------------------------


def test_every_route_has_a_rule_and_a_recipe() -> None:
    from api.access import DOCS_PATH, RULES, WEB_STATIC_PATH, route_format, rule_for

    no_rule = [(m, p) for m, p in ROUTES if rule_for(m, route_format(p)) is None]
    assert not no_rule, f"routes without an access rule (the guard refuses them): {no_rule}"
    stale = [r.key for r in RULES if r.path not in (DOCS_PATH, WEB_STATIC_PATH) and (r.method, r.path) not in ROUTES]
    assert not stale, f"rules for routes that do not exist: {stale}"
    no_recipe = sorted(set(ROUTES) - set(RECIPES) - PUBLIC)
    assert not no_recipe, f"routes without a recipe in the access matrix: {no_recipe}"
    assert not set(RECIPES) - set(ROUTES), "recipes for routes that do not exist"


def test_no_rule_that_writes_names_the_auditor_or_the_workers() -> None:
    from api.access import RULES
    from domain.vocabulary import ActorRole

    # An auditor signs out and enrols a second factor like anyone: those write their own session,
    # never the care data, so the "sessions" rules are not writes in this sense.
    writers = {(r.method, r.path): sorted(r.grants) for r in RULES if r.writes and r.resource != "sessions"}
    assert writers and not [k for k, roles in writers.items() if ActorRole.AUDITOR in roles]
    assert not [r.path for r in RULES if ActorRole.SYSTEM in r.grants]


def test_the_access_document_is_the_table_in_the_code() -> None:
    from api.access import access_table
    from guanai.cli.access_table import access_document

    text = (ROOT / "docs" / "access.md").read_text(encoding="utf-8")
    assert access_document(text, access_table()) == text, "run `guanai access-table --update docs/access.md`"


@pytest.fixture(scope="module", params=MODES)
def world(pg_base_url: str, nats_url: str, request: pytest.FixtureRequest) -> Iterator[World]:
    settings = {
        "reports_per_minute": 0,
        "auth_failures_per_minute": 0,
        "visit_claim_limit": 50,
        "access_token_minutes": 60,
    }
    with own_server(pg_base_url, nats_url, **settings) as server:
        care = make_care(server.database_url)
        try:
            w = World(server, care, request.param)
            wait_until(lambda: w.a.get("/health").json()["nats"]["ok"], what="the API's NATS connection")
            yield w
            w.a.close()
        finally:
            care.close()


def _problem(r: httpx.Response) -> dict[str, Any]:
    assert r.headers["content-type"].startswith("application/problem+json"), r.text[:300]
    return r.json()


def _fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+):\w+\}", lambda m: values[m.group(1)], path)


def _first_param(path: str) -> str | None:
    m = re.search(r"\{(\w+):\w+\}", path)
    return m.group(1) if m else None


class Cell:
    def __init__(self, w: World, method: str, path: str, role: str) -> None:
        self.w, self.method, self.path, self.role = w, method, path, role
        self.recipe = RECIPES[(method, path)]
        self.scopes = self.recipe.grants.get(role)
        self.headers = w.auth(role)

    def send(
        self,
        target: str | None,
        body: Any = None,
        ctx: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        values = {name: "x" for name in re.findall(r"\{(\w+):\w+\}", self.path)}
        if target is not None and self.recipe.query_target is not None:
            params = {**(params or {}), self.recipe.query_target: target}
        elif target is not None:
            values[_first_param(self.path)] = target  # type: ignore[index]
        if self.recipe.more is not None:
            values.update(self.recipe.more(self.w, self.role, ctx or {}))
        query = {**(self.recipe.params(self.w) if self.recipe.params else {}), **(params or {})}
        kwargs: dict[str, Any] = {"headers": self.headers, "params": query}
        if self.recipe.files is not None:
            kwargs["files"] = {"file": ("台账.csv", self.recipe.files(), "text/csv")}
        elif self.method != "GET" and self.method != "DELETE":
            kwargs["data" if self.recipe.form else "json"] = {} if body is None else body
        return self.w.a.request(self.method, _fill(self.path, values), **kwargs)

    def refused_writing_nothing(
        self, target: str | None, body: Any = None, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        before = self.w.position()
        r = self.send(target, body, params=params)
        assert self.w.position() == before, f"a refused request wrote something: {r.status_code}"
        return r

    def sample_target(self) -> str | None:
        kind = self.recipe.target
        return None if kind is None else self.w.ids[SAMPLE[kind]]

    # -- the checks --

    def denied(self) -> None:
        r = self.refused_writing_nothing(self.sample_target())
        assert r.status_code == 403 and _problem(r)["type"] == "/problems/forbidden", r.text[:300]

    def target_outside(self) -> None:
        kind = self.recipe.target
        if kind is None:
            return
        _, outside = self.w.pick(kind, self.role, self.scopes)  # type: ignore[arg-type]
        if outside is None:
            return
        unknown = str(uuid.uuid4())
        theirs, nobodys = self.refused_writing_nothing(outside), self.refused_writing_nothing(unknown)
        # Named in the query, not the path: answered as an unknown id in a body is.
        status = 422 if self.recipe.query_target else 404
        assert (theirs.status_code, nobodys.status_code) == (status, status), (theirs.text[:300], nobodys.text[:300])
        a, b = _problem(theirs), _problem(nobodys)
        if self.recipe.query_target:
            assert a["type"] == "/problems/unknown-reference" and a["errors"][0]["field"] == self.recipe.query_target, a
        assert {**a, "instance": ""} == {**_swap(b, unknown, outside), "instance": ""}, (a, b)

    def refs_outside(self) -> None:
        target = self.inside_target()
        for name, kind in self.recipe.refs.items():
            listed = kind.endswith("[]")
            kind = kind.removesuffix("[]")
            scopes = (self.recipe.ref_grants or self.recipe.grants).get(self.role, frozenset())
            _, outside = self.w.pick(kind, self.role, scopes)
            if outside is None:
                continue
            unknown = str(uuid.uuid4())
            field_name = f"{name}[0]" if listed else name
            theirs = self.refused_writing_nothing(target, {name: [outside] if listed else outside})
            nobodys = self.refused_writing_nothing(target, {name: [unknown] if listed else unknown})
            assert (theirs.status_code, nobodys.status_code) == (422, 422), (
                name,
                theirs.text[:300],
                nobodys.text[:300],
            )
            a, b = _problem(theirs), _problem(nobodys)
            assert a["type"] == "/problems/unknown-reference" and a["errors"][0]["field"] == field_name, a
            assert {**a, "instance": ""} == {**_swap(b, unknown, outside), "instance": ""}, (a, b)

    def inside_target(self) -> str | None:
        if self.recipe.target is None:
            return None
        if self.recipe.inside is not None:
            return self.recipe.inside(self.w, self.role)
        return self.w.pick(self.recipe.target, self.role, self.scopes)[0]  # type: ignore[arg-type]

    def page_listed(self) -> None:
        """A web page shows exactly the rows of the list the API would answer."""
        if self.recipe.page_lists is None:
            return
        r = self.w.a.get(self.path, headers={**self.headers, "Accept": "text/html"},
                         params={"min_position": self.w.position()})  # fmt: skip
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), r.text[:300]
        shown = set(re.findall(rf'href="/app/{self.recipe.page_lists}/([0-9a-f-]{{36}})"', r.text))
        expected = self.w.visible("person", self.role, self.scopes)  # type: ignore[arg-type]
        assert expected, "every role that may read this page sees someone in the world"
        assert shown == expected, (sorted(self._names(shown - expected)), sorted(self._names(expected - shown)))

    def listed(self) -> None:
        self.page_listed()
        kind = self.recipe.lists
        if kind is None or kind == "unit":
            return
        params = {"min_position": self.w.position(), "limit": 500}
        r = self.send(self.inside_target(), params=params)
        assert r.status_code == 200, r.text[:300]
        shown = {row["id"] for row in r.json()["items"]}
        if kind == "held":  # the tasks the helper holds or completed, of those in scope
            expected = {self.w.ids["T1"]} & self.w.visible("task", self.role, self.scopes)  # type: ignore[arg-type]
        else:
            expected = self.w.visible(kind, self.role, self.scopes)  # type: ignore[arg-type]
        assert shown == expected, (sorted(self._names(shown - expected)), sorted(self._names(expected - shown)))
        for param, filter_kind in self.recipe.filters.items():
            if filter_kind == "unit" and "subtree" not in self.scopes:  # type: ignore[operator]
                continue  # the tree is public: a unit only narrows a volunteer's or responder's own list
            _, outside = self.w.pick(filter_kind, self.role, self.scopes)  # type: ignore[arg-type]
            if outside is None:
                continue
            theirs = self.send(None, params={**params, param: outside}).json()
            nobodys = self.send(None, params={**params, param: str(uuid.uuid4())}).json()
            assert (theirs["items"], theirs["total"]) == (nobodys["items"], nobodys["total"]) == ([], 0), (
                param,
                theirs,
            )

    def _names(self, ids: set[str]) -> list[str]:
        by_id = {v: k for k, v in self.w.ids.items()}
        return [by_id.get(i, i) for i in ids]

    def in_scope(self) -> None:
        if self.recipe.stream:
            return self.streams()
        ctx = self.recipe.fresh(self.w, self.role) if self.recipe.fresh else {}
        target = ctx.get("id") or self.inside_target()
        body = self.recipe.body(self.w, self.role, ctx) if self.recipe.body else None
        if self.recipe.spare_session:
            self.headers = self.w.spare_auth(self.role)
        r = self.send(target, body, ctx, params={"min_position": self.w.position()} if self.method == "GET" else None)
        ok = self.recipe.token_ok if self.w.mode == "tokens" and self.recipe.token_ok else self.recipe.ok
        assert r.status_code in ok, (r.status_code, r.text[:500])
        if self.recipe.after is not None:
            self.recipe.after(self.w, r)

    def streams(self) -> None:
        cA, tA = self.w.codes["cA"], self.w.codes["tA"]
        subject = {"AD": "alerts.>", "TR": f"alerts.{cA}.{tA}", "CR": f"alerts.{cA}.county"}.get(
            self.role, f"alerts.{cA}.>"
        )
        with (
            httpx.Client(base_url=self.w.server.base_url, timeout=20) as c,
            c.stream("GET", "/emergencies/stream", headers=self.headers) as s,
        ):
            assert s.status_code == 200
            assert next(s.iter_lines()) == f": following {subject}"


def _swap(body: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """The problem an unknown id got, as it reads for another id."""
    return {k: (v.replace(old, new) if isinstance(v, str) else _swap_list(v, old, new)) for k, v in body.items()}


def _swap_list(value: Any, old: str, new: str) -> Any:
    if isinstance(value, list):
        return [_swap(v, old, new) if isinstance(v, dict) else v for v in value]
    return value


@pytest.mark.parametrize(("method", "path", "role"), CELLS, ids=[f"{m} {p} {r}" for m, p, r in CELLS])
def test_cell(world: World, method: str, path: str, role: str) -> None:
    cell = Cell(world, method, path, role)
    if not cell.scopes:
        cell.denied()
        return
    cell.target_outside()
    cell.refs_outside()
    cell.listed()
    cell.in_scope()


def test_public_routes_need_no_token(world: World) -> None:
    assert httpx.get(f"{world.server.base_url}/health", timeout=10).status_code == 200
    assert httpx.get(f"{world.server.base_url}/schema/openapi.json", timeout=10).status_code == 200
    assert httpx.get(f"{world.server.base_url}/persons", timeout=10).status_code == 401


def test_a_county_supervisor_registers_units_only_beneath_their_county(world: World) -> None:
    body = {"code": f"{uuid.uuid4().int % 10**6:06d}000000", "name": "新县", "level": "county"}
    before = world.position()
    r = world.a.post("/org-units", json=body, headers=world.auth("CS"))
    assert (r.status_code, _problem(r)["type"], world.position()) == (403, "/problems/forbidden", before)


def test_workers_tokens_get_nothing_over_http(world: World) -> None:
    system = {"Authorization": f"Bearer {token('system', world.ids['cA'], 'scheduler')}"}
    for path in ("/org-units", "/persons", f"/persons/{world.ids['P1']}", "/audit/verify"):
        assert world.a.get(path, headers=system).status_code == 403, path


def _publish(nats_url: str, subject: str, *alerts: dict[str, Any]) -> None:
    import asyncio
    import json

    import nats

    async def send() -> None:
        nc = await nats.connect(nats_url)
        for alert in alerts:
            await nc.publish(subject, json.dumps(alert).encode())
        await nc.flush()
        await nc.close()

    asyncio.run(send())


@pytest.mark.parametrize(("role", "unit"), [("township_supervisor", "tA"), ("auditor", "v1")])
def test_a_console_shows_only_the_alerts_of_reports_in_scope(world: World, nats_url: str, role: str, unit: str) -> None:
    """A supervisor's or auditor's console below the county follows the county's subjects and
    shows only its own township's alerts, or for a village only the reports under it."""
    headers = {"Authorization": f"Bearer {token(role, world.ids[unit], f'{role}-console')}"}
    elsewhere = {"alert_id": "x:1", "report_id": world.ids["E3"], "township_code": "999999999000", "level": 1}
    if unit == "v1":  # the same township, another village
        elsewhere = {**elsewhere, "township_code": world.codes["tA"]}
    mine = {"alert_id": "y:1", "report_id": world.ids["E1"], "township_code": world.codes["tA"], "level": 1}
    with (
        httpx.Client(base_url=world.server.base_url, timeout=20) as c,
        c.stream("GET", "/emergencies/stream", headers=headers) as s,
    ):
        lines = s.iter_lines()
        assert next(lines) == f": following alerts.{world.codes['cA']}.>"
        _publish(nats_url, f"alerts.{world.codes['cA']}.county", elsewhere, mine)
        shown = next(line.partition(":")[2].strip() for line in lines if line.startswith("id:"))
    assert shown == "y:1", "the first alert shown is the one in scope; the other was never sent"


def test_a_route_without_a_rule_is_closed_to_everyone(world: World) -> None:
    from litestar import get
    from litestar.testing import TestClient

    @get("/unruled", sync_to_thread=False)
    def unruled() -> str:
        return "open"

    app = bootstrap.api(Settings(), database_url=world.server.database_url, nats_url=None, jwt_secret=SECRET)
    app.register(unruled)
    with TestClient(app) as c:
        r = c.get("/unruled", headers=world.auth("AD"))
    assert (r.status_code, r.json()["type"]) == (403, "/problems/forbidden") and "no access rule" in r.json()["detail"]
