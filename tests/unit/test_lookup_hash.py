"""The keyed lookup hash: stable for a key, apart per kind and per key, and refusing short keys."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infrastructure import lookup_hash as module
from infrastructure.lookup_hash import LookupKeyError, configure, lookup_hash


@pytest.fixture
def own_key() -> Iterator[None]:
    # The key is process-wide (the function takes none): give it back for the servers of other tests.
    saved = module._key
    try:
        yield
    finally:
        module._key = saved


def test_the_same_value_hashes_alike_and_kinds_and_keys_apart(own_key: None) -> None:
    configure("k" * 40)
    phone = lookup_hash("phone", "13912345678")
    assert phone == lookup_hash("phone", "13912345678") and len(phone) == 32
    assert phone != lookup_hash("id_number", "13912345678")
    assert b"13912345678" not in phone
    configure("another-key-" + "k" * 40)
    assert lookup_hash("phone", "13912345678") != phone


def test_a_short_key_is_refused(own_key: None) -> None:
    with pytest.raises(LookupKeyError, match="GUANAI_LOOKUP_KEY"):
        configure("short")
