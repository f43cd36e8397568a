"""Keyed hashes for finding people by a number that is sealed personal data.

A resident ID number (公民身份号码) or a phone number is sealed with its owner's key, so the store
cannot be searched for it. ``lookup_hash(kind, normalised)`` is an HMAC-SHA256 of the normalised
number under the lookup key: the same number always gives the same bytes, and without the key
the bytes say nothing (an ID number has too little entropy for an unkeyed hash: its region,
birth date and check digit are guessable, leaving about a thousand candidates per birthday).
``kind`` separates the namespaces ("id_number", "phone"), so one number never matches across kinds.

The key is ``GUANAI_LOOKUP_KEY`` (32+ characters), or ``lookup-key`` generated once into the data
directory (mode 0600), like the chain key: never stored in the database and, unlike the master
key, never rotated (a new key would orphan every stored hash). Every process that imports or
registers people must share it. The composition root hands it to the event store
(``infrastructure.store.StoreKeys.lookup_key``), which sets it here when it first needs it; the
hashes live in ``guanai_lookup`` (kind, hash, subject id, digest of the row last imported).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from pathlib import Path
from typing import Any

from psycopg import sql

from infrastructure.chain import read_or_create_secret

LOOKUP_KEY_FILE = "lookup-key"
LOOKUP_TABLE = "guanai_lookup"
MIN_KEY_LENGTH = 32

_lock = threading.Lock()
_key: bytes | None = None


class LookupKeyError(RuntimeError):
    """No lookup key, or one too short."""


def load_lookup_key(configured: str | None, data_dir: Path) -> bytes:
    """The configured key, or the one generated once into the data directory."""
    secret = configured or read_or_create_secret(data_dir / LOOKUP_KEY_FILE)
    if len(secret) < MIN_KEY_LENGTH:
        raise LookupKeyError(f"GUANAI_LOOKUP_KEY must be at least {MIN_KEY_LENGTH} characters")
    return secret.encode()


def keyed_hash(key: bytes, kind: str, normalised: str) -> bytes:
    """HMAC-SHA256 of ``kind`` and the normalised value under ``key`` (32 bytes)."""
    return hmac.new(key, f"{kind}\0{normalised}".encode(), hashlib.sha256).digest()


def set_lookup_key(key: bytes) -> None:
    """The process's key (set by the event store when it first hashes)."""
    global _key
    with _lock:
        _key = key


def lookup_hash(kind: str, normalised: str) -> bytes:
    """``keyed_hash`` under the process's lookup key (the event store's, once it has used it)."""
    with _lock:
        key = _key
    if key is None:
        raise LookupKeyError("no lookup key yet: the event store sets it (StoreKeys.lookup_key)")
    return keyed_hash(key, kind, normalised)


def lookup_ddl(schema: str) -> list[Any]:
    table = sql.Identifier(schema, LOOKUP_TABLE)
    return [
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (kind text NOT NULL, hash bytea NOT NULL, subject_id uuid NOT NULL,"
            " digest bytea, PRIMARY KEY (kind, hash))"
        ).format(table),
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (subject_id)").format(
            sql.Identifier(f"{LOOKUP_TABLE}_subject"), table
        ),
    ]
