"""Per-person timelines against a real PostgreSQL: the scripted county of tests/integration/test_supervision.py,
then what each person's timeline shows (in order, with actor and both times), pairing events on
every member's timeline, visits and emergencies, paging and kind filters, no personal data;
and GET /persons/{id}/timeline over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from psycopg import sql

from domain.vocabulary import Cadence, PersonKind, Sex, VisitMode
from infrastructure.audit import Audit
from projections.timeline import TimelineView
from tests.api_support import ApiServer, auth
from tests.integration.test_registry_view import GUARDIAN_PHONE, ID_NUMBER, new_meta
from tests.integration.test_supervision import Care, care_in
from workers.projector import Projector


@pytest.fixture
def care(fresh_database_url: str) -> Iterator[Care]:
    with care_in(fresh_database_url) as world:
        yield world


@pytest.fixture
def projector(care: Care) -> Iterator[Projector]:
    with Projector(care.world.url, app=care.world.app, batch_size=11) as p:
        p.catch_up()
        yield p


def entries(view: TimelineView, person: UUID, **options: Any) -> list[dict[str, Any]]:
    return view.page(person, newest_first=False, limit=500, **options).rows


def kinds(view: TimelineView, person: UUID, **options: Any) -> list[str]:
    return [e["kind"] for e in entries(view, person, **options)]


def test_a_childs_timeline_shows_what_happened_in_order_with_actors_and_both_times(
    care: Care, projector: Projector
) -> None:
    view = TimelineView(projector.pool)
    child = care.world.children[0]
    rows = entries(view, child)
    assert [r["kind"] for r in rows] == [
        "person.registered",
        "person.care_agreement_signed",
        "pairing.formed",  # the caring mother (one-to-one)
        "pairing.formed",  # the township supervisor (one-to-N)
        "emergency_report.reported",
        "emergency_report.routed",
        "emergency_report.escalated",
        "emergency_report.routed",
    ]
    assert [r["position"] for r in rows] == sorted(r["position"] for r in rows)
    registered, signed = rows[0], rows[1]
    assert (registered["actor_id"], registered["actor_role"], registered["aggregate_id"]) == (
        "cadre-1",
        "administrator",
        child,
    )
    assert registered["summary"]["kind"] == "child" and registered["summary"]["has_guardian"] is True
    assert signed["summary"] == {"signed_on": "2024-03-01"}
    assert rows[2]["summary"]["shape"] == "one_to_one" and rows[3]["summary"]["person_ids"] == [
        str(p) for p in care.world.children[:2]
    ]
    report = rows[4]
    assert (report["actor_id"], report["actor_role"], report["aggregate_id"]) == (
        "cadre-9",
        "village_cadre",
        care.reports["R2"],
    )
    assert report["summary"]["category"] == "abuse_violence" and report["summary"]["severity"] == "high"
    # Reported as happening ten minutes after t0, recorded hours later.
    assert report["occurred_at"] == care.t0 + timedelta(minutes=10)
    assert report["recorded_at"] - report["occurred_at"] > timedelta(hours=2)
    assert rows[6]["summary"]["to_level"] == 1 and rows[6]["actor_role"] == "system"
    # The same history newest first.
    assert kinds(view, child)[::-1] == [e["kind"] for e in view.page(child, limit=500).rows]


def test_visits_appear_with_who_went_and_what_was_found(care: Care, projector: Projector) -> None:
    view = TimelineView(projector.pool)
    w = care.world
    assert kinds(view, w.elders[0], kinds=["visit_task", "visit_log"]) == [
        "visit_task.scheduled",
        "visit_task.claimed",
        "visit_task.completed",
        "visit_log.recorded",
    ]
    log = entries(view, w.elders[0], kinds=["visit_log.recorded"])[0]
    assert log["summary"]["helper_ids"] == [str(w.helpers[1])]
    # What was found is health data about the person: sealed in the event store, not on the timeline.
    assert "findings" not in log["summary"]
    assert log["summary"]["services"] == ["daily_life_care"]
    late = entries(view, w.elders[1], kinds=["visit_task", "visit_log"])
    assert [e["kind"] for e in late] == [
        "visit_task.scheduled", "visit_task.missed", "visit_task.completed", "visit_log.recorded"
    ]  # fmt: skip
    assert late[2]["summary"]["late"] is True
    assert late[3]["occurred_at"] == care.late_visit_at and late[3]["recorded_at"] > care.now - timedelta(minutes=5)
    assert kinds(view, w.elders[3], kinds=["visit_task"]) == [
        "visit_task.scheduled", "visit_task.missed", "visit_task.scheduled", "visit_task.cancelled"
    ]  # fmt: skip
    # An elder outside the cadre's pairing has no visit entries, but R1 and its duplicate R3.
    assert kinds(view, w.elders[2], kinds=["visit_task", "visit_log"]) == []
    assert kinds(view, w.elders[2], kinds=["emergency_report"]).count("emergency_report.reported") == 2


def test_pairing_changes_appear_on_the_timeline_of_every_person_in_the_pairing(care: Care) -> None:
    w, app, m = care.world, care.world.app, new_meta
    supervisor = w.pairings["supervisor"]
    newcomer = uuid4()  # a child of the supervisor's township
    app.register_person(
        id=newcomer,
        kind=PersonKind.CHILD,
        name="白小兰",
        sex=Sex.FEMALE,
        birth_date=date(2017, 4, 2),
        village_id=w.v2,
        meta=m(),
    )
    with Projector(w.url, app=app, batch_size=4) as projector:
        projector.start()
        app.add_pairing_person(supervisor, newcomer, m())
        app.remove_pairing_person(supervisor, w.children[1], "moved to the county town", m())
        app.change_pairing_cadence(supervisor, Cadence.MONTHLY, VisitMode.PHONE_VIDEO, m())
        last = app.end_pairing(w.pairings["cadre"], "replaced by a team", date.today(), m())
        assert projector.wait_for(last.position, timeout=10.0)
        view = TimelineView(projector.pool)
        changes = ["pairing"]
        assert kinds(view, w.children[0], kinds=changes)[2:] == [
            "pairing.person_added", "pairing.person_removed", "pairing.cadence_changed"
        ]  # fmt: skip
        assert kinds(view, w.children[1], kinds=changes)[1:] == ["pairing.person_added", "pairing.person_removed"]
        # The newcomer joined before child 1 left: a member then, so that change is on their timeline too.
        assert kinds(view, newcomer, kinds=changes) == [
            "pairing.person_added", "pairing.person_removed", "pairing.cadence_changed"
        ]  # fmt: skip
        removed = entries(view, w.children[1], kinds=["pairing.person_removed"])[0]
        # The reason is about the person (declared personal): it stays sealed in the event store.
        assert removed["summary"] == {"person_id": str(w.children[1])}
        for elder in (w.elders[0], w.elders[1], w.elders[3]):
            assert kinds(view, elder, kinds=["pairing.ended"]) == ["pairing.ended"]
        assert kinds(view, w.elders[2], kinds=["pairing.ended"]) == []
        # The person's own bookkeeping of the same change is not a second entry.
        assert not [k for k in kinds(view, newcomer) if k.startswith("person.pairing")]


def test_pages_follow_the_cursor_in_either_order_and_filter_by_kind(care: Care, projector: Projector) -> None:
    view = TimelineView(projector.pool)
    child = care.world.children[0]
    everything = [e["position"] for e in entries(view, child)]
    for newest_first in (True, False):
        seen: list[int] = []
        cursor = None
        while True:
            page = view.page(child, newest_first=newest_first, cursor=cursor, limit=3)
            assert page.total == 8
            seen += [r["position"] for r in page.rows]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == (everything[::-1] if newest_first else everything)
    only = view.page(child, kinds=["pairing", "person.registered"], limit=10)
    assert only.total == 3 and {r["kind"] for r in only.rows} == {"pairing.formed", "person.registered"}
    assert view.page(child, kinds=["visit_log"]).total == 0
    assert view.page(uuid4()).total == 0


def test_no_names_id_numbers_or_phones_on_any_timeline(care: Care, projector: Projector) -> None:
    view = TimelineView(projector.pool)
    w = care.world
    text = json.dumps([e["summary"] for p in [*w.elders, *w.children] for e in entries(view, p)], ensure_ascii=False)
    for secret in (ID_NUMBER, GUARDIAN_PHONE, "王奶奶", "李秀英", "王小梅"):
        assert secret not in text
    assert entries(view, w.children[0])[0]["summary"]["has_guardian"] is True


def test_the_timeline_over_http(care: Care) -> None:
    w = care.world
    server = ApiServer(w.url, None).start()
    try:
        with httpx.Client(base_url=server.base_url, headers=auth(), timeout=30) as client:
            url = f"/persons/{w.children[0]}/timeline"
            r = client.get(url, params={"order": "oldest", "limit": 3, "min_position": w.last_position})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["total"] == 8 and body["position"] >= w.last_position and body["order"] == "oldest"
            assert [e["kind"] for e in body["items"]] == [
                "person.registered",
                "person.care_agreement_signed",
                "pairing.formed",
            ]
            assert body["items"][0]["actor_role"] == "administrator" and "recorded_at" in body["items"][0]
            rest = client.get(url, params={"order": "oldest", "cursor": body["next_cursor"], "limit": 50}).json()
            assert len(rest["items"]) == 5 and rest["next_cursor"] is None
            newest = client.get(url, params=[("kind", "emergency_report"), ("kind", "person.registered")]).json()
            assert [e["kind"] for e in newest["items"]][:2] == ["emergency_report.routed", "emergency_report.escalated"]
            assert newest["total"] == 5
            assert client.get(f"/persons/{uuid4()}/timeline").status_code == 404
            assert client.get(f"/persons/{w.county}/timeline").status_code == 404  # an org unit, not a person
            assert client.get(url, params={"kind": "Pairing Formed"}).status_code == 400
            assert client.get(url, params={"order": "sideways"}).status_code == 400
            assert httpx.get(server.base_url + url, timeout=10).status_code == 401
    finally:
        server.stop()


def test_a_page_and_its_access_log_row_only_where_the_gate_holds(care: Care, projector: Projector) -> None:
    """``page_sent_with``'s gate (the access check's condition) bounds both the page's rows and
    the access log's insert, a "%" in its text included (both statements are bound again)."""
    view, audit, child = TimelineView(projector.pool), Audit(care.world.app, care.world.url), care.world.children[0]
    fields = {"actor_id": "t", "actor_role": "administrator", "endpoint": "GET /t", "request_id": "r"}
    with projector.pool.connection() as conn:
        audit.access.record(conn, audit.key, [child], tuple(fields.values()))  # this process wrote last

    def send(cur: Any, query: str, only_if: Any, params: list[Any]) -> tuple[list[Any], bool]:
        return audit.read_with_access(cur, query, [child], **fields, only_if=only_if, params=params)

    def logged() -> int:
        with projector.pool.connection() as conn:
            row = conn.execute("SELECT count(*) FROM guanai_access_log WHERE person_id = %s", (child,)).fetchone()
        assert row is not None
        return int(row[0])

    for holds in (True, False):
        gate = sql.SQL("{} = {}").format(sql.Literal("50%"), sql.Literal("50%" if holds else "5%0"))
        before = logged()
        page, written = view.page_sent_with(child, send, gate=gate)
        assert written is holds and len(page.rows) == (8 if holds else 0), holds
        assert logged() == before + (1 if holds else 0)
    page, written = view.page_sent_with(child, send)
    assert written and len(page.rows) == 8


def test_the_views_position_read_with_the_page_is_the_lowest_of_the_views_named(
    care: Care, projector: Projector
) -> None:
    """The views' names are written into the page's text (rendered once per set of names), not
    bound per read: the position read with the page is still the lowest of exactly those views,
    and a name with a quote or a "%" in it is taken as it is."""
    view, child = TimelineView(projector.pool), care.world.children[0]
    with projector.pool.connection() as conn:
        tracked = dict(conn.execute("SELECT name, position FROM projection_tracking").fetchall())
    names = sorted(tracked)
    assert len(names) >= 2 and len(set(tracked.values())) >= 1
    for views in (names, names[:1], [*names[1:], "no'such%view"]):
        expected = min(tracked[n] for n in views if n in tracked)
        assert view.page(child, views=views).views_position == expected, views
        page, _ = view.page_sent_with(
            child, lambda cur, query, _c, _p: (cur.execute(query).fetchall(), False), views=views
        )
        assert page.views_position == expected and len(page.rows) == 8, views
    assert view.page(child, views=["no'such%view"]).views_position is None


def test_a_page_sent_with_its_values_put_in_is_the_statement_psycopg_would_bind(
    care: Care, projector: Projector
) -> None:
    """``page_sent_with`` puts its values into a text rendered once per combination of kinds,
    hidden aggregates and views instead of binding them per read: for every combination (both
    orders, a cursor, a gate with a quote and a "%" in it) the statement sent is exactly the
    one psycopg binds from ``_queries``, and its rows and total are ``page``'s."""
    from psycopg import ClientCursor

    from projections.timeline import _RAW_SELECT

    view, child = TimelineView(projector.pool), care.world.children[0]
    all_positions = [e["position"] for e in entries(view, child)]
    gate_text = "'it''s 50%' LIKE '%50\\%'"
    sent: list[str] = []

    def send(cur: Any, query: str, _only_if: Any, _params: list[Any]) -> tuple[list[Any], bool]:
        sent.append(query)
        return cur.execute(query).fetchall(), False

    checked = 0
    with projector.pool.connection() as conn:
        bind = ClientCursor(conn)
        for newest_first in (True, False):
            for kinds in ((), ("person",), ("person.registered", "pairing")):
                for hidden in ((), ("emergency_report",), ("pairing",)):
                    for cursor in (None, all_positions[2]):
                        for gate in (None, sql.SQL(gate_text)):
                            options: dict[str, Any] = {
                                "newest_first": newest_first, "kinds": kinds, "hidden": hidden, "cursor": cursor,
                                "limit": 3, "views": ["timeline"],
                            }  # fmt: skip
                            page, _ = view.page_sent_with(child, send, gate=gate, **options)
                            query, _, params = TimelineView._queries(
                                child, gate=gate_text.replace("%", "%%") if gate else "", columns=_RAW_SELECT, **options
                            )
                            assert sent[-1] == bind.mogrify(query, params), options
                            expected = view.page(child, **options)
                            assert [r[0] for r in page.rows] == [r["position"] for r in expected.rows], options
                            assert (page.total, page.next_cursor) == (expected.total, expected.next_cursor), options
                            checked += bool(page.rows)
    assert checked >= 20
