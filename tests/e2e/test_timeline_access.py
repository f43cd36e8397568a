"""Who may read a person's timeline, over HTTP, now that its access check is made inside the
page's own statement for the roles whose scope the person's first event decides (``Access.gate``)
and by the check itself, before the page, for the others: the answers are those of the access
table, a refused read answers as an unknown id and writes no access-log row, and every read
that is answered writes exactly one.

A person's village (and so their org path) is fixed at registration: the domain has no move.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import psycopg

from application.care import CareApplication
from tests.api_support import ApiServer, Tree, api_server, client, elder, helper, token  # noqa: F401 - fixtures
from tests.e2e.test_access_probes import ok, pairing, position


def as_role(c: httpx.Client, role: str, unit: str | None, subject: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token(role, unit, subject)}"}
    return httpx.Client(base_url=str(c.base_url), timeout=30, headers=headers)


def logged(server: ApiServer, person: str) -> int:
    with psycopg.connect(server.database_url) as conn:
        row = conn.execute("SELECT count(*) FROM guanai_access_log WHERE person_id = %s", (person,)).fetchone()
    assert row is not None
    return int(row[0])


def read(server: ApiServer, c: httpx.Client, person: str, at: int, **params: Any) -> httpx.Response:
    """The timeline read twice (the second read may chain its log row in the same statement as
    the page, the first may not), each checked against the access log's rows it wrote."""
    answers = []
    for _ in range(2):
        before = logged(server, person)
        r = c.get(f"/persons/{person}/timeline", params={"min_position": at, **params})
        assert logged(server, person) == before + (1 if r.status_code == 200 else 0), r.status_code
        answers.append(r)
    assert answers[0].status_code == answers[1].status_code
    return answers[1]


def refused_as_unknown(server: ApiServer, c: httpx.Client, person: str, at: int) -> None:
    """404, word for word what an id that names nothing answers (ids aside)."""
    r = read(server, c, person, at)
    assert r.status_code == 404, (r.status_code, r.text[:300])
    nobody = str(uuid.uuid4())
    unknown = c.get(f"/persons/{nobody}/timeline", params={"min_position": at})
    assert r.text.replace(person, "ID") == unknown.text.replace(nobody, "ID")


def test_supervisors_and_cadres_read_within_their_unit_and_an_erased_person_stays_so(
    api_server: ApiServer,
    client: httpx.Client,
    care_app: CareApplication,
) -> None:
    tree, other = Tree(client), Tree(client)
    v1, v2, township, county = tree.village["id"], tree.village2["id"], tree.township["id"], tree.county["id"]
    person = ok(client.post("/persons", json=elder(v1)))["id"]
    erased = ok(client.post("/persons", json=elder(v1, name="周大爷")))["id"]
    ok(client.post(f"/persons/{erased}/erase", json={"reason": "本人申请删除"}))
    at = position(care_app)
    allowed = [
        ("administrator", None), ("auditor", county), ("county_supervisor", county),
        ("township_supervisor", township), ("village_cadre", v1), ("child_director", v1),
    ]  # fmt: skip
    refused = [
        ("county_supervisor", other.county["id"]), ("township_supervisor", other.township["id"]),
        ("village_cadre", v2), ("child_director", other.village["id"]), ("auditor", other.county["id"]),
    ]  # fmt: skip
    for who in (person, erased):
        for role, unit in allowed:
            with as_role(client, role, unit) as c:
                r = read(api_server, c, who, at)
                assert r.status_code == 200, (role, r.text[:300])
                assert r.json()["person_id"] == who and r.json()["total"] >= 1
        for role, unit in refused:
            with as_role(client, role, unit) as c:
                refused_as_unknown(api_server, c, who, at)
    with as_role(client, "village_cadre", v1) as c:
        kinds = [e["kind"] for e in read(api_server, c, erased, at).json()["items"]]
    assert kinds[0] == "person.erased" and "person.registered" in kinds
    # Past the last entry the read is answered (and logged) as before, and refused alike.
    with as_role(client, "township_supervisor", township) as c:
        r = read(api_server, c, person, at, cursor=1)
        assert r.status_code == 200 and r.json()["items"] == [] and r.json()["total"] >= 1
    with as_role(client, "township_supervisor", other.township["id"]) as c:
        assert read(api_server, c, person, at, cursor=1).status_code == 404
        # A malformed query is refused before the check, alike for every id: nothing to tell apart.
        for anyone in (person, str(uuid.uuid4())):
            assert c.get(f"/persons/{anyone}/timeline", params={"order": "sideways"}).status_code == 400


def test_a_volunteer_reads_the_people_paired_with_them_while_the_pairing_lasts(
    api_server: ApiServer,
    client: httpx.Client,
    care_app: CareApplication,
) -> None:
    tree = Tree(client)
    v1 = tree.village["id"]
    person = ok(client.post("/persons", json=elder(v1)))["id"]
    paired = ok(client.post("/helpers", json=helper(v1)))["id"]
    unpaired = ok(client.post("/helpers", json=helper(v1, name="钱志愿")))["id"]
    shared = pairing(client, [paired], [person])
    at = position(care_app)
    with as_role(client, "volunteer", v1, paired) as c:
        assert read(api_server, c, person, at).status_code == 200
    with as_role(client, "volunteer", v1, unpaired) as c:
        refused_as_unknown(api_server, c, person, at)
    ok(client.post(f"/pairings/{shared['id']}/end", json={"reason": "志愿者外出务工"}))
    at = position(care_app)
    with as_role(client, "volunteer", v1, paired) as c:
        refused_as_unknown(api_server, c, person, at)


def test_ids_that_name_no_person_are_unknown_to_every_reader(
    api_server: ApiServer,
    client: httpx.Client,
    care_app: CareApplication,
) -> None:
    tree = Tree(client)
    v1, county = tree.village["id"], tree.county["id"]
    volunteer = ok(client.post("/helpers", json=helper(v1)))["id"]
    at = position(care_app)
    for role, unit in (("administrator", None), ("county_supervisor", county), ("village_cadre", v1)):
        with as_role(client, role, unit) as c:
            for not_a_person in (volunteer, v1, county, str(uuid.uuid4())):
                r = c.get(f"/persons/{not_a_person}/timeline", params={"min_position": at})
                assert r.status_code == 404, (role, not_a_person, r.text[:300])
                assert logged(api_server, not_a_person) == 0
