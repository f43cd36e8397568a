"""Keyed hashes for finding people by a number that is sealed personal data.

A resident ID number (公民身份号码) or a phone number is sealed with its owner's key, so the store
cannot be searched for it. ``lookup_hash(kind, normalised)`` is an HMAC-SHA256 of the normalised
number under the process's lookup key: the same number always gives the same bytes, and without
the key the bytes say nothing (an ID number has too little entropy for an unkeyed hash: its region,
birth date and check digit are guessable, leaving about a thousand candidates per birthday).

The key is ``GUANAI_LOOKUP_KEY`` (32+ characters), or ``lookup-key`` generated once into the data
directory (mode 0600), like the chain key; it is never stored in the database and, unlike the
master key, never rotated: a new key would orphan every stored hash. Every process that imports
or registers people (the API, the CLI) must share it. ``kind`` separates the namespaces
("id_number", "phone"), so one number never matches across kinds.
"""

from __future__ import annotations

import hashlib
import hmac
import threading

from infrastructure.chain import read_or_create_secret
from infrastructure.settings import SettingsError, load_settings

LOOKUP_KEY_FILE = "lookup-key"
MIN_KEY_LENGTH = 32

_lock = threading.Lock()
_key: bytes | None = None


def load_lookup_key(environ: dict[str, str] | None = None) -> bytes:
    """The configured key, or the one generated once into the data directory."""
    settings = load_settings(environ)
    secret = settings.lookup_key or read_or_create_secret(settings.data_path / LOOKUP_KEY_FILE)
    if len(secret) < MIN_KEY_LENGTH:
        raise SettingsError(f"GUANAI_LOOKUP_KEY must be at least {MIN_KEY_LENGTH} characters")
    return secret.encode()


def set_lookup_key(key: bytes | None) -> None:
    """Use this key from now on (a composition root with its own environment; tests); None:
    load it again from the environment on next use."""
    global _key
    with _lock:
        _key = key


def _process_key() -> bytes:
    global _key
    with _lock:
        if _key is None:
            _key = load_lookup_key()
        return _key


def lookup_hash(kind: str, normalised: str) -> bytes:
    """HMAC-SHA256 of ``kind`` and the normalised value under the process's lookup key (32 bytes)."""
    return hmac.new(_process_key(), f"{kind}\0{normalised}".encode(), hashlib.sha256).digest()
