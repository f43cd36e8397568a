"""The keyed lookup hash: stable for a key, apart per kind and per key, and refusing short keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from infrastructure.lookup_hash import LookupKeyError, keyed_hash, load_lookup_key


def test_the_same_value_hashes_alike_and_kinds_and_keys_apart(tmp_path: Path) -> None:
    key = load_lookup_key("k" * 40, tmp_path)
    phone = keyed_hash(key, "phone", "13912345678")
    assert phone == keyed_hash(key, "phone", "13912345678") and len(phone) == 32
    assert phone != keyed_hash(key, "id_number", "13912345678")
    assert b"13912345678" not in phone
    assert keyed_hash(load_lookup_key("another-key-" + "k" * 40, tmp_path), "phone", "13912345678") != phone


def test_without_a_setting_the_key_is_made_once_in_the_data_directory(tmp_path: Path) -> None:
    first = load_lookup_key(None, tmp_path)
    assert load_lookup_key(None, tmp_path) == first
    assert (tmp_path / "lookup-key").stat().st_mode & 0o777 == 0o600


def test_a_short_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LookupKeyError, match="GUANAI_LOOKUP_KEY"):
        load_lookup_key("short", tmp_path)
