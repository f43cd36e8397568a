"""What every screen owes its users: a volunteer's first load within 150 KB as transferred
(compressed), a later load from the cache with no network, and WCAG 2.1 AA as axe-core checks
it on every page of this part of the client, at 360 and 1280 px."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, Request, expect

from domain.vocabulary import ActorRole
from tests.api_support import ApiServer, api_server, client  # noqa: F401 - fixtures
from tests.browser import browser  # noqa: F401 - fixture
from tests.e2e.test_api_visits import Scene
from tests.web_support import WIDTHS, session

AXE = Path(__file__).resolve().parents[1] / "vendor" / "axe-4.14.1.min.js"
BUDGET = 150 * 1024
AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def test_a_volunteers_first_load_is_within_150_kb_and_a_later_one_needs_no_network(
    browser, api_server: ApiServer, client: httpx.Client, care_app
) -> None:
    scene = Scene(client, care_app, helpers=1, people=3)
    transferred: dict[str, int] = {}

    def count(request: Request) -> None:
        sizes = request.sizes()
        # Encoded (as sent: compressed) body and headers, of the page, its assets and what the
        # service worker fetches to keep the app shell: all of it is the first load's cost.
        transferred[f"{request.method} {request.url} {id(request)}"] = (
            sizes["responseBodySize"] + sizes["responseHeadersSize"]
        )

    with session(browser, api_server, ActorRole.VOLUNTEER, scene.tree.village["id"], subject=scene.helpers[0]) as (
        context,
        watched,
    ):
        context.on("requestfinished", count)
        page = watched.page
        page.goto(api_server.base_url + "/app/visits")
        page.wait_for_function("() => document.body.dataset.offlineReady === '1'")
        page.wait_for_load_state("networkidle")
        total = sum(transferred.values())
        print(f"first load: {len(transferred)} responses, {total} bytes transferred ({total / 1024:.1f} KiB)")
        assert total <= BUDGET, sorted(transferred.items(), key=lambda kv: -kv[1])[:8]
        assert len(page.locator(".task[data-task]").all()) == 6

        context.set_offline(True)
        page.goto(api_server.base_url + "/app/visits")
        expect(page.locator("h1")).to_have_text("我的走访")
        expect(page.locator(".task[data-task]")).to_have_count(6)
        assert page.evaluate("() => getComputedStyle(document.body).fontFamily").startswith('"Noto Sans CJK SC"')


def axe(page: Page) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async (tags) => await axe.run(document, { runOnly: { type: 'tag', values: tags } })", AA)
    return [
        {"id": v["id"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]][:3]} for v in result["violations"]
    ]


def check(page: Page, name: str) -> None:
    for width, size in WIDTHS.items():
        page.set_viewport_size(size)
        assert axe(page) == [], f"{name} at {width} px"


def test_every_screen_of_volunteers_and_responders_meets_wcag_21_aa(
    browser, api_server: ApiServer, client: httpx.Client, care_app
) -> None:
    scene = Scene(client, care_app, helpers=1, people=1)
    base = api_server.base_url
    # axe is injected as a script of the test's own: the pages' CSP (rightly) refuses it otherwise.
    with session(browser, api_server, bypass_csp=True) as (_, watched):
        watched.page.goto(base + "/app/sign-in")
        check(watched.page, "sign-in")
        # the second-factor page is checked where a real account enrols (tests/e2e/test_web_sign_in.py)
    with session(browser, api_server, ActorRole.VOLUNTEER, scene.tree.village["id"], subject=scene.helpers[0],
                 bypass_csp=True) as (_, watched):  # fmt: skip
        page = watched.page
        page.goto(base + "/app/visits")
        task = page.locator(".task[data-task]").first
        task.get_by_role("button", name="认领").click()
        expect(task.get_by_role("button", name="记录走访")).to_be_visible()
        check(page, "visits")
        task.get_by_role("button", name="记录走访").click()
        check(page, "visit log form")
        page.goto(base + "/app/people")
        check(page, "people")
        page.goto(f"{base}/app/people/{scene.people[0]}")
        check(page, "person")
        page.goto(base + "/app/nothing")
        check(page, "not found")
        page.goto(base + "/app/console")  # a volunteer may not: the forbidden page
        expect(page.locator("h1")).to_have_text("无权访问")
        check(page, "forbidden")
    with session(browser, api_server, ActorRole.TOWNSHIP_RESPONDER, scene.tree.township["id"], bypass_csp=True) as (
        _,
        watched,
    ):
        watched.page.goto(base + "/app/console")
        check(watched.page, "console")
