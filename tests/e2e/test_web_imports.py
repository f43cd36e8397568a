"""The registry-sheet import page (web/imports.py) in a real browser (Chromium through Playwright):
a township supervisor downloads nothing but uploads a sheet with one bad row, sees the row named in
the report (and the marked workbook linked), fixes it and uploads again, commits the clean dry run,
and the people are then in the registry (asked over the API). A village cadre, whom the import's
grants leave out, gets the forbidden page. Checked with axe-core; screenshots at 360 and 1280 px,
in Chinese and in English.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page

from domain.vocabulary import ActorRole
from tests.api_support import ApiServer, Tree, api_server, client  # noqa: F401 - fixtures
from tests.browser import browser  # noqa: F401 - fixture
from tests.imports_support import HEADERS, child_row, elder_row, fresh_seq, xlsx
from tests.web_support import both_widths, session

AXE = Path(__file__).resolve().parents[1] / "vendor" / "axe-4.14.1.min.js"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FINISHED = '#job[data-status="done"], #job[data-status="refused"], #job[data-status="failed"]'


def accessible(page: Page) -> None:
    """No WCAG 2.1 A/AA violation that axe-core finds on the page as it is now."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate("axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']})")
    problems = [(v["id"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"]]
    assert not problems, problems


def upload(page: Page, data: bytes) -> dict[str, Any]:
    """Choose the file, send it, and wait (the page polls the job) until the job is finished."""
    page.set_input_files('input[name="file"]', files=[{"name": "台账.xlsx", "mimeType": XLSX, "buffer": data}])
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector(FINISHED, timeout=60_000)
    return counts(page)


def counts(page: Page) -> dict[str, Any]:
    shown = page.eval_on_selector_all(
        "[data-count]", "els => Object.fromEntries(els.map(e => [e.dataset.count, +e.textContent]))"
    )
    return {"status": page.get_attribute("#job", "data-status"), **shown}


def test_a_supervisor_fixes_a_bad_row_commits_and_the_people_are_registered(
    browser, api_server: ApiServer, client: httpx.Client
) -> None:
    tree = Tree(client)
    seq = fresh_seq()
    good = [child_row("一村", seq + 1), elder_row("二村", seq + 2)]
    bad_sheet = xlsx([HEADERS, *good, child_row("一村", seq + 3, 性别="未知")])
    fixed_sheet = xlsx([HEADERS, *good, child_row("一村", seq + 3)])
    township = tree.township["id"]

    with session(browser, api_server, ActorRole.TOWNSHIP_SUPERVISOR, township, width="360") as (_, watched):
        page = watched.page
        r = page.goto(api_server.base_url + "/app/imports")
        assert r is not None and r.status == 200
        assert page.get_attribute("[data-template]", "href") == "/imports/template.xlsx"
        assert page.locator("nav").get_by_text("台账导入").count() >= 1
        accessible(page)
        both_widths(page, "imports-upload")
        page.goto(api_server.base_url + "/app/imports?lang=en")
        assert "Import a registry sheet" in page.inner_text("h1")
        both_widths(page, "imports-upload-en")
        page.goto(api_server.base_url + "/app/imports?lang=zh")

        shown = upload(page, bad_sheet)
        assert shown == {
            "status": "done",
            "errors": 1,
            "created": 2,
            "corrected": 0,
            "unchanged": 0,
            "left_programme": 0,
        }, shown
        row = page.inner_text('[data-report] tr[data-row="4"]')
        assert "性别" in row and "未知" in row and "请填写“男”或“女”" in row, row
        assert page.get_attribute("[data-marked]", "href", timeout=5_000).endswith("/report.xlsx")
        assert page.locator("#commit-form").count() == 0, "a dry run with errors is not committed"
        listed = client.get("/persons", params={"org_unit_id": township}).json()
        assert listed["total"] == 0, "a dry run writes nothing"
        accessible(page)
        both_widths(page, "imports-report")

        page.get_by_role("link", name="重新上传").click()
        page.wait_for_selector("#upload-form")
        shown = upload(page, fixed_sheet)
        assert (shown["errors"], shown["created"]) == (0, 3), shown
        assert page.locator("[data-clean]").count() == 1
        dry_run_id = page.get_attribute("#job", "data-job")
        page.click("#commit-form button")
        # The commit is a new job: its page (not the dry run's) polled until it is done.
        page.wait_for_selector(f'#job[data-status="done"]:not([data-job="{dry_run_id}"])', timeout=60_000)
        assert page.locator("[data-kind=import]").count() == 1 and page.locator("#commit-form").count() == 0
        assert "已导入台账" in page.inner_text("[data-clean]")
        done = counts(page)
        assert (done["created"], done["errors"]) == (3, 0), done
        accessible(page)
        both_widths(page, "imports-committed")

        job_id = page.get_attribute("#job", "data-job")
        watched.no_errors()

    job = client.get(f"/imports/{job_id}").json()
    assert (job["dry_run"], job["status"], job["created"]) == (False, "done", 3)
    listed = client.get("/persons", params={"org_unit_id": township, "min_position": job["position"]}).json()
    assert listed["total"] == 3, listed


def test_a_role_without_the_grant_gets_the_forbidden_page(browser, api_server: ApiServer, client: httpx.Client) -> None:
    tree = Tree(client)
    with session(browser, api_server, ActorRole.VILLAGE_CADRE, tree.village["id"]) as (_, watched):
        page = watched.page
        r = page.goto(api_server.base_url + "/app/imports")
        assert r is not None and r.status == 403
        assert page.locator("nav").get_by_text("台账导入").count() == 0
        r = page.goto(api_server.base_url + f"/app/imports?org_unit={tree.township['id']}")
        assert r is not None and r.status == 403


def test_the_supervision_page_links_the_workbooks_to_those_allowed_them(
    browser, api_server: ApiServer, client: httpx.Client
) -> None:
    tree = Tree(client)
    code = tree.township["code"]
    with session(browser, api_server, ActorRole.TOWNSHIP_SUPERVISOR, tree.township["id"]) as (context, watched):
        page = watched.page
        r = page.goto(api_server.base_url + f"/app/supervision/{code}")
        assert r is not None and r.status == 200
        links = page.eval_on_selector_all("[data-export=xlsx] a", "els => els.map(e => e.getAttribute('href'))")
        assert links == [f"/supervision/{code}/registry.xlsx", f"/supervision/{code}/inspection.xlsx?period=month"], (
            links
        )
        for href in links:  # the session's cookie opens them: they are the API's own routes
            got = context.request.get(api_server.base_url + href)
            assert got.status == 200 and got.body()[:2] == b"PK", (href, got.status)
    with session(browser, api_server, ActorRole.TOWNSHIP_RESPONDER, tree.township["id"]) as (_, watched):
        r = watched.page.goto(api_server.base_url + f"/app/supervision/{code}")
        assert r is not None and r.status == 200
        assert watched.page.locator("[data-export=xlsx]").count() == 0
