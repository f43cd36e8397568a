"""A key ring remembers the tokens it verified (api/auth.py): the same token again is not decoded
and checked again, but it still expires on time, and any other text is verified in full."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from api import auth
from api.auth import KeyRing, TokenError, issue_token, verify_token
from domain.vocabulary import ActorRole

SECRET = "cache-test-secret-" + "x" * 40


def token(ring: KeyRing, ttl: timedelta = timedelta(hours=1)) -> str:
    return issue_token(ring, subject="admin-7", role=ActorRole.ADMINISTRATOR, org_unit_id=None, ttl=ttl)


def test_a_token_verified_once_is_not_decoded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    ring = KeyRing(SECRET)
    sent = token(ring)
    first = verify_token(ring, sent)

    def no_decoding(*_: Any, **__: Any) -> Any:
        raise AssertionError("decoded again")

    monkeypatch.setattr(auth.jwt, "decode", no_decoding)
    assert verify_token(ring, sent) == first


def test_a_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    ring = KeyRing(SECRET)
    sent = token(ring, ttl=timedelta(minutes=5))
    actor = verify_token(ring, sent)
    monkeypatch.setattr(auth.time, "time", lambda: actor.expires_at + 0.5)
    with pytest.raises(TokenError, match="expired"):
        verify_token(ring, sent)
    assert sent not in ring.verified


def test_another_text_is_verified_in_full() -> None:
    ring = KeyRing(SECRET)
    sent = token(ring)
    verify_token(ring, sent)
    head, payload, signature = sent.split(".")
    forged = f"{head}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    with pytest.raises(TokenError):
        verify_token(ring, forged)
    other_ring = KeyRing("another-secret-" + "y" * 40)
    with pytest.raises(TokenError):
        verify_token(other_ring, sent)  # what one ring verified, no other ring takes


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "VERIFIED_TOKENS", 3)
    ring = KeyRing(SECRET)
    for _ in range(7):
        verify_token(ring, token(ring))
    assert 1 <= len(ring.verified) <= 3
