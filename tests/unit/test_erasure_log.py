"""The erasure log a restore replays (infrastructure/erasure_log.py): what it keeps, what a crash
mid-append leaves, what it refuses."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from infrastructure.erasure_log import Erasure, ErasureLog, ErasureLogError, default_path

AT = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


def entry(person: str, position: int, store: str = "guanai/a") -> Erasure:
    return Erasure(store=store, person=person, position=position, at=AT, by="admin-1", role="administrator",
                   reason="监护人申请删除")  # fmt: skip


def test_entries_come_back_as_written_and_since_picks_one_store_after_a_position(tmp_path: Path) -> None:
    log = ErasureLog(tmp_path / "deep" / "erasures.jsonl")
    log.append([entry("p1", 10), entry("p2", 20, store="guanai/b")])
    log.append([entry("p3", 30), entry("p1", 40)])
    assert next(log.entries()) == entry("p1", 10) and len(list(log.entries())) == 4
    assert [(e.person, e.position) for e in log.since("guanai/a", 10)] == [("p3", 30), ("p1", 40)]
    assert [e.person for e in log.since("guanai/a", 0)] == ["p1", "p3"]  # one per person, the first
    assert log.since("guanai/b", 20) == []
    assert (tmp_path / "deep" / "erasures.jsonl").stat().st_mode & 0o077 == 0


def test_a_line_cut_short_at_the_end_is_skipped_and_one_damaged_elsewhere_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    log = ErasureLog(path)
    log.append([entry("p1", 10)])
    with path.open("ab") as f:
        f.write(entry("p2", 20).line()[:25])  # the process died mid-write, before its erasure committed
    assert [e.person for e in log.entries()] == ["p1"]
    with path.open("ab") as f:
        f.write(b"\n" + entry("p3", 30).line())
    with pytest.raises(ErasureLogError, match="line 2 .* is damaged"):
        list(log.entries())


def test_a_log_that_cannot_be_written_raises_naming_the_setting(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ErasureLogError, match="GUANAI_ERASURE_LOG"):
        ErasureLog(tmp_path / "a-file" / "log.jsonl").append([entry("p1", 1)])


def test_the_default_log_lies_beside_the_data_directory_not_in_it(tmp_path: Path) -> None:
    assert default_path(tmp_path / "guanai-data") == tmp_path / "guanai-data-erasures.jsonl"
    assert ErasureLog(tmp_path / "missing.jsonl").since("guanai/a", 0) == []
