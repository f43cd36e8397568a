"""Keyed hashes that find a record by a secret-ish value without storing it: a phone number at
sign-in, an identity number (公民身份号码) on import, an activation or recovery code.

``lookup_hash(kind, normalised)`` is HMAC-SHA256 under the lookup key, over the kind and the
value (so a phone and an identity number with the same digits hash apart). A dump of the
database alone cannot be searched for a known phone number: that needs the key too.

The key: ``GUANAI_LOOKUP_KEY`` (32+ characters, every process that signs in or imports must
share it), or generated once into the data directory (``lookup-key``, mode 0600). It is apart
from the master key on purpose: rotating the master key (``guanai keys rotate``) re-wraps data
keys and leaves this key, and so every stored lookup hash, as it is. Changing the lookup key
itself would make every stored hash unfindable; it is not rotated (back it up with the master key).
"""

from __future__ import annotations

import hashlib
import hmac
import threading

from infrastructure.chain import read_or_create_secret
from infrastructure.settings import load_settings

MIN_KEY_LENGTH = 32
KEY_FILE = "lookup-key"

_lock = threading.Lock()
_key: bytes | None = None


class LookupKeyError(RuntimeError):
    """The configured lookup key cannot be used."""


def configure(secret: str) -> None:
    """Use this secret as the lookup key (from settings at startup, or a test's own)."""
    global _key
    if len(secret) < MIN_KEY_LENGTH:
        raise LookupKeyError(f"GUANAI_LOOKUP_KEY must be at least {MIN_KEY_LENGTH} characters")
    with _lock:
        _key = hashlib.sha256(b"guanai lookup key v1\0" + secret.encode()).digest()


def _loaded_key() -> bytes:
    if _key is None:
        settings = load_settings()
        configured = settings.lookup_key
        configure(configured or read_or_create_secret(settings.data_path / KEY_FILE))
    assert _key is not None
    return _key


def lookup_hash(kind: str, normalised: str) -> bytes:
    """HMAC-SHA256 of ``kind`` and an already normalised value, under the lookup key."""
    message = kind.encode() + b"\0" + normalised.encode()
    return hmac.new(_loaded_key(), message, hashlib.sha256).digest()
