"""Every screen of the web client, for every role, at 360 and 1280 px: what each one sees, walked
in a real browser (tests/browser.py), measured and photographed.

``walk(browser, server, visitor)`` signs in as the visitor (the cookie session of
tests/web_support.py), opens the start page, every page of the visitor's menu and the first few
pages each one links to under its own address (a person, a unit one level down, an account, a
roster), and at each width records whether the page scrolls sideways (``scrollWidth``), which
English words a Chinese page still shows, and what the console said. Screenshots are written
when ``shots`` names a folder.

``tests/e2e/test_web_screens.py`` walks a small demo county with it; the screenshots in
``docs/screens/`` come from the full demo county (``./run demo``)::

    GUANAI_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/<demo db> GUANAI_DATA_DIR=<the demo's> \\
        .venv/bin/python -m tests.screens --out docs/screens
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from playwright.sync_api import Browser, Page, sync_playwright

from domain.base import derived_id
from domain.helper import Helper
from domain.vocabulary import ActorRole, HelperRole, OrgLevel
from guanai.demo.plan import plan_county
from infrastructure.settings import load_settings
from tests.api_support import ApiServer
from tests.app_support import make_care
from tests.browser import CHROMIUM_ARGS, chromium_path
from tests.web_support import WIDTHS, session

R = ActorRole
# Words a Chinese page may show in Latin letters: names of formats, standards and the language link.
LATIN_ALLOWED = {
    "English",
    "JSON",
    "CSV",
    "XLSX",
    "Excel",
    "SVG",
    "TOTP",
    "HMAC",
    "SM2",
    "SM3",
    "SM4",
    "QR",
    "App",
    "app",
}
LATIN_WORD = re.compile(r"(?<![A-Za-z0-9_./:-])[A-Za-z]{2,}(?![A-Za-z0-9_/:-])")
# How many pages under each menu item to follow (a chain: the first new link of each).
FOLLOW = 3
# Screenshots stop here: the top of a long page is what a person sees first, and what a review reads.
MAX_HEIGHT = 2000


@dataclass(frozen=True)
class Visitor:
    name: str  # file names: <name>-<screen>-<width>.png
    role: ActorRole | None
    org: uuid.UUID | None = None
    subject: str | None = None


@dataclass
class Screen:
    visitor: str
    name: str
    path: str
    scroll_width: dict[str, int] = field(default_factory=dict)
    latin: list[str] = field(default_factory=list)

    def too_wide(self) -> list[str]:
        return [f"{w} px: {sw}" for w, sw in self.scroll_width.items() if sw > int(w)]


def _slug(path: str) -> str:
    parts = [p for p in path.removeprefix("/app").split("?")[0].split("/") if p]
    words = ["id" if re.fullmatch(r"[0-9a-f-]{32,36}", p) else p for p in parts]
    return "-".join(words) or "home"


def _latin(page: Page) -> list[str]:
    text = page.evaluate("() => document.body.innerText")
    return sorted({w for w in LATIN_WORD.findall(text) if w not in LATIN_ALLOWED})


def measure(page: Page, visitor: str, name: str, shots: Path | None) -> Screen:
    """The page as it is now, at each width: sideways scroll, English words, a screenshot."""
    screen = Screen(visitor, name, page.url.split("://", 1)[1].split("/", 1)[1])
    before = page.viewport_size
    for width, size in WIDTHS.items():
        page.set_viewport_size(size)
        page.wait_for_timeout(50)
        screen.scroll_width[width] = page.evaluate(
            "() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        )
        if shots is not None:
            shots.mkdir(parents=True, exist_ok=True)
            height = min(page.evaluate("() => document.documentElement.scrollHeight"), MAX_HEIGHT)
            clip = {"x": 0, "y": 0, "width": size["width"], "height": height}
            page.screenshot(path=str(shots / f"{visitor}-{name}-{width}.png"), full_page=True, clip=clip)
    if before:
        page.set_viewport_size(before)
    if page.evaluate("() => document.documentElement.lang") == "zh-CN":
        screen.latin = _latin(page)
    return screen


def _links_under(page: Page, prefix: str) -> list[str]:
    hrefs = page.eval_on_selector_all("main a[href]", "els => els.map(e => e.getAttribute('href'))")
    found = []
    for href in hrefs:
        base, _, query = href.partition("?")
        # A unit one level down keeps the period chosen (?period=); a next page (?page=) is the same screen.
        if (
            base.startswith(prefix + "/")
            and not base.endswith((".csv", ".xlsx"))
            and (not query or query.startswith("period="))
        ):
            found.append(base)
    return list(dict.fromkeys(found))


def walk(
    browser: Browser, server: ApiServer, visitor: Visitor, shots: Path | None = None
) -> tuple[list[Screen], list[str]]:
    """Every page of the visitor's menu and a few it leads to; (screens, console errors)."""
    screens: list[Screen] = []
    errors: list[str] = []
    with session(browser, server, visitor.role, visitor.org, visitor.subject) as (_, watched):
        page = watched.page
        page.goto(server.base_url + "/app/")
        page.wait_for_load_state("networkidle")
        screens.append(measure(page, visitor.name, _slug(page.url.split(server.base_url, 1)[1]), shots))
        menu = page.eval_on_selector_all(
            "header nav a[href^='/app/']:not(#sign-out)", "els => els.map(e => e.getAttribute('href'))"
        )
        seen = {"/" + screens[0].path.split("?")[0]}

        def visit(address: str) -> None:
            page.goto(server.base_url + address)
            page.wait_for_load_state("networkidle")
            if watched.errors:
                errors.extend(f"on {address}: {e}" for e in watched.errors)
                watched.errors.clear()
            path = "/" + page.url.split("://", 1)[1].split("/", 1)[1].split("?")[0]
            seen.update((address, path))
            screens.append(measure(page, visitor.name, _slug(path), shots))

        for href in menu:
            if href in seen:  # the start page is this item's page
                continue
            visit(href)
            # One level down and on (the last link of a list: a township, then a village, ...),
            # and a unit's lists of names once.
            lists = [h for h in _links_under(page, href) if h.endswith(("/uncovered", "/overdue"))]
            for _ in range(FOLLOW):
                ahead = [h for h in _links_under(page, href) if h not in seen and h not in lists]
                if not ahead:
                    break
                visit(ahead[-1])
            for address in lists:
                if address not in seen:
                    visit(address)
        errors += watched.errors
    return screens, errors


def walk_volunteer_actions(
    browser: Browser, server: ApiServer, visitor: Visitor, shots: Path | None = None
) -> list[Screen]:
    """A volunteer's visits after claiming the first open visit, and the visit log form open."""
    with session(browser, server, visitor.role, visitor.org, visitor.subject) as (_, watched):
        page = watched.page
        page.goto(server.base_url + "/app/visits")
        page.wait_for_load_state("networkidle")
        claim = page.locator("[data-section='claimable'] button[data-action='claim']").first
        if claim.count():
            task = claim.locator("xpath=ancestor::li[@data-task]").get_attribute("data-task")
            claim.click()
            page.locator(f"[data-section='mine'] [data-task='{task}']").wait_for()
        screens = [measure(page, visitor.name, "visits-claimed", shots)]
        more = page.locator("button[data-more='claimable']")
        if more.count():
            more.click()
            page.wait_for_load_state("networkidle")
        page.locator("button[data-action='log']").first.click()
        page.locator("#log-dialog[open]").wait_for()
        screens.append(measure(page, visitor.name, "visit-log-form", shots))
        return screens


def walk_admin_actions(
    browser: Browser, server: ApiServer, visitor: Visitor, shots: Path | None = None
) -> list[Screen]:
    """An administrator opens an account for a village cadre: the activation slip to print."""
    with session(browser, server, visitor.role, visitor.org, visitor.subject) as (_, watched):
        page = watched.page
        page.goto(server.base_url + "/app/accounts")
        form = page.locator("#open-account")
        form.locator("select[name=role]").select_option("village_cadre")
        units = form.locator("select[name=org_unit_id] option").evaluate_all(
            "os => os.map(o => o.value).filter(Boolean)"
        )
        form.locator("select[name=org_unit_id]").select_option(units[-1])
        form.locator("input[name=phone]").fill("135" + f"{uuid.uuid4().int % 10**8:08d}")
        form.locator("input[name=display_name]").fill("王村干")
        form.get_by_role("button", name="开通账号").click()
        page.wait_for_selector("[data-activation-code]")
        return [measure(page, visitor.name, "activation-slip", shots)]


def walk_public(browser: Browser, server: ApiServer, shots: Path | None = None) -> list[Screen]:
    """The pages anyone sees: sign in, and an address that is nothing."""
    with session(browser, server) as (_, watched):
        page = watched.page
        page.goto(server.base_url + "/app/sign-in")
        screens = [measure(page, "public", "sign-in", shots)]
        page.goto(server.base_url + "/app/no-such-page")
        screens.append(measure(page, "public", "not-found", shots))
        return screens


# ---- the demo county's people ------------------------------------------------------------------


def demo_visitors(app: Any, plan: Any) -> list[Visitor]:
    """One visitor per role of the demo accounts (guanai/demo/accounts.py: the county, its first
    township and village, the first active village volunteer)."""
    township = next(u for u in plan.units if u.level == OrgLevel.TOWNSHIP)
    village = next(u for u in plan.units if u.level == OrgLevel.VILLAGE and u.parent_id == township.id)
    volunteer = next(
        h for h in plan.helpers
        if h.role == HelperRole.VOLUNTEER and h.unit.level == OrgLevel.VILLAGE and app.load(Helper, h.id).active
    )  # fmt: skip

    def account(role: ActorRole) -> str:
        return str(derived_id("demo-account", role.value))

    return [
        Visitor("volunteer", R.VOLUNTEER, volunteer.unit.id, str(volunteer.id)),
        Visitor("township-responder", R.TOWNSHIP_RESPONDER, township.id, account(R.TOWNSHIP_RESPONDER)),
        Visitor("county-responder", R.COUNTY_RESPONDER, plan.county.id, account(R.COUNTY_RESPONDER)),
        Visitor("village-cadre", R.VILLAGE_CADRE, village.id, account(R.VILLAGE_CADRE)),
        Visitor("township-supervisor", R.TOWNSHIP_SUPERVISOR, township.id, account(R.TOWNSHIP_SUPERVISOR)),
        Visitor("county-supervisor", R.COUNTY_SUPERVISOR, plan.county.id, account(R.COUNTY_SUPERVISOR)),
        Visitor("administrator", R.ADMINISTRATOR, None, account(R.ADMINISTRATOR)),
        Visitor("auditor", R.AUDITOR, plan.county.id, account(R.AUDITOR)),
    ]


@contextmanager
def _browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("GUANAI_DATABASE_URL"))
    parser.add_argument("--nats-url", default=os.environ.get("GUANAI_NATS_URL"), help="for the console's live alerts")
    parser.add_argument("--out", type=Path, default=Path("test-artifacts/screens/demo"))
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--only", nargs="*", help="visitor names")
    parser.add_argument("--max-height", type=int, default=2000, help="screenshots stop at this many px")
    args = parser.parse_args(argv)
    global MAX_HEIGHT
    MAX_HEIGHT = args.max_height
    app = make_care(args.database_url, pool_size=2)
    visitors = demo_visitors(app, plan_county(args.seed, args.scale))
    app.close()
    # The demo's own keys (GUANAI_DATA_DIR): its personal data and its chain were written with them.
    settings = msgspec.structs.replace(
        load_settings(dict(os.environ)), read_wait_seconds=5.0, auth_failures_per_minute=0, sign_in_failures_free=0
    )
    server = ApiServer(args.database_url, args.nats_url, settings).start()
    problems = 0
    try:
        with _browser() as browser:
            screens = walk_public(browser, server, args.out)
            for visitor in visitors:
                if args.only and visitor.name not in args.only:
                    continue
                found, errors = walk(browser, server, visitor, args.out)
                if visitor.role == R.VOLUNTEER:
                    found += walk_volunteer_actions(browser, server, visitor, args.out)
                if visitor.role == R.ADMINISTRATOR:
                    found += walk_admin_actions(browser, server, visitor, args.out)
                screens += found
                for error in errors:
                    print(f"{visitor.name}: console: {error}")
        for s in screens:
            flags = s.too_wide() + [f"English: {', '.join(s.latin)}"] * bool(s.latin)
            problems += bool(flags)
            print(f"{s.visitor:<20} {s.name:<36} {s.path:<60} {'; '.join(flags) or 'ok'}")
    finally:
        server.stop()
    print(f"{len(screens)} screens, {problems} with problems; screenshots in {args.out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
