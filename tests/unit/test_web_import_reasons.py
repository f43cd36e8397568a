"""The import page's Chinese reasons are for reasons the import really gives: a reason reworded in
the application would otherwise silently fall back to English on the page."""

from __future__ import annotations

from pathlib import Path

from web.imports import REASONS_ZH, reason_in

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("application/registry_import.py", "application/pairing_import.py", "domain/person.py")


def test_every_translated_reason_is_one_the_import_gives() -> None:
    text = "".join((ROOT / name).read_text(encoding="utf-8") for name in SOURCES)
    missing = [reason for reason in REASONS_ZH if f'"{reason}"' not in text]
    assert not missing, missing


def test_a_reason_is_chinese_on_a_chinese_page_and_as_given_otherwise() -> None:
    assert reason_in("zh", "write 男 or 女") == "请填写“男”或“女”"
    assert reason_in("en", "write 男 or 女") == "write 男 or 女"
    assert reason_in("zh", "does not match the ID number's birth date (2015-03-08)").startswith("does not match")
