"""Every word a page shows comes from the catalogue, in both languages, and the web client's
imports keep to its layer."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from web.i18n import MESSAGES, SHARED_KEYS, translate

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"


def test_every_key_the_templates_and_scripts_use_is_in_the_catalogue() -> None:
    used: set[str] = set()
    for path in (WEB / "templates").rglob("*.html"):
        used |= set(re.findall(r"""\bt\(\s*["']([a-z0-9_.]+)["']""", path.read_text(encoding="utf-8")))
    for path in (WEB / "static" / "js").rglob("*.js"):
        used |= set(re.findall(r"""\bmsg\(\s*["'](js\.[a-z0-9_.]+)["']""", path.read_text(encoding="utf-8")))
    for path in WEB.rglob("*.py"):
        used |= set(re.findall(r"""\bt\(\s*["']([a-z0-9_.]+)["']""", path.read_text(encoding="utf-8")))
    used = {k for k in used if not k.endswith(".")}  # a prefix completed at run time ("log." ~ name)
    assert used, "found no keys: the pattern no longer matches the templates"
    # ``t("kind." ~ value)``: a key built from a value; the catalogue must have keys under it.
    prefixes = {k for k in used if k.endswith(".")}
    assert not sorted(p for p in prefixes if not any(m.startswith(p) for m in MESSAGES)), "prefixes missing"
    assert not sorted(used - prefixes - set(MESSAGES)), "keys missing from web/i18n.py"


def test_every_message_has_chinese_first_and_english() -> None:
    for key, (zh, en) in MESSAGES.items():
        assert zh and en, key
        assert re.search(r"[\u4e00-\u9fff]", zh) or key == "lang.switch" or zh == en, f"{key}: not Chinese: {zh}"
    assert translate("signin.title", "zh") == "登录" and translate("signin.title", "en") == "Sign in"


def test_the_web_client_imports_no_workers_and_only_the_app_imports_it() -> None:
    def imported(package: str) -> list[tuple[Path, str]]:
        found = []
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.append((path, node.module))
                elif isinstance(node, ast.Import):
                    found += [(path, a.name) for a in node.names]
        return found

    assert not [m for _, m in imported("web") if m.split(".")[0] == "workers"]
    outside = [(p.name, m) for pkg in ("api", "domain", "projections", "workers") for p, m in imported(pkg)
               if m.split(".")[0] == "web" and p.name != "app.py"]  # fmt: skip
    assert not outside, outside


def test_no_key_is_in_both_catalogues() -> None:
    """The ops pages' catalogue is merged into the main one: a key defined in both would give one
    screen the other's word (an escalation level "县级" read as the org level "县")."""
    assert not SHARED_KEYS
