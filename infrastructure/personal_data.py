"""Personal data sealed at rest with a key per data subject, and erasure by destroying the key.

The fields an event class declares personal (``domain.base.Personal``) never reach the event
store in the clear: ``SealingMapper`` takes them out of the event's state and stores them as one
AES-GCM blob under the subject's data key, bound to the event's originator id, version, topic
and subject (a blob moved to another event does not open). Reading puts them back, or, once the
subject's key is destroyed, the declared erased values. Everything that reads events through the
application's mapper (aggregates, projections, the relay, audit replay and exports) therefore sees
plaintext or erased values, and nothing else changes: the stored bytes, and so the audit chain
over them, stay as they were when the key is destroyed.

Keys live in ``guanai_subject_keys``, one row per subject (a person, an emergency report, a
responder), each 256-bit data key wrapped by AES-GCM under the master key with the subject as
associated data (a wrapped key copied to another row does not unwrap). The master key comes
from ``GUANAI_MASTER_KEY`` or is generated once into the data directory; it is never stored in
the database, only its id: beside each wrapped key, and in ``guanai_master_key``, the one row that
names the master key every live key is wrapped by now. A process holding another master key stops
with a clear error instead of garbling data. Losing the master key loses every person's data.

A new subject's key is written in the event store's transaction that stores the first events
sealed with it (``PostgresKeyStore.key_for_saving``, ``key_hook``): the key and those events
commit together or not at all, with one flush. Keys asked for outside a save (``key_for_sealing``:
accounts, import jobs) are stored in a durable transaction of their own first.

Rotating the master key (``rotate_master_key``, ``guanai keys rotate``) re-wraps every live key
under a new master key in one transaction; the data keys, and so every sealed event and the audit
chain, stay as they are. The rotation holds the ``guanai_master_key`` row, which every key
creation shares while it inserts: a process still holding the old master key cannot add a key
under it afterwards, and fails with a clear error instead.

Erasing a person (``Person.Erased``) destroys, in the transaction that stores the event, the key of
the person and every key they own (their emergency reports). Each destruction takes the next
value of a sequence; every process polls for destructions newer than the last it saw at most
every ``GUANAI_KEY_CACHE_SECONDS`` and drops those keys from its cache. A destroyed subject
never gets a new key: sealing for it raises ``ErasedError`` (409 ``erased``).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import msgspec
import psycopg
import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eventsourcing.persistence import IntegrityError, Mapper, MapperDeserialisationError, StoredEvent, Transcoder
from eventsourcing.utils import TopicError, get_topic, resolve_topic
from psycopg import Cursor
from psycopg import errors as psycopg_errors
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier, Literal

from domain.base import ErasedError, Personal, personal_fields
from domain.person import Person
from infrastructure import folded
from infrastructure.chain import read_or_create_secret
from infrastructure.failpoints import failpoint
from infrastructure.metrics import KEY_CACHE
from infrastructure.suites import INTERNATIONAL, Aead, Suite

MIN_MASTER_KEY_LENGTH = 32
MASTER_KEY_FILE = "master-key"
NEXT_MASTER_KEY_FILE = "master-key.next"  # a rotation's new key, until the store is re-wrapped under it
KEYS_TABLE = "guanai_subject_keys"
MASTER_TABLE = "guanai_master_key"  # one row: the id of the master key every live key is wrapped by
DESTROYED_SEQUENCE = "guanai_subject_keys_destroyed"
SEALED_FIELD = "_sealed"  # [subject, base64 blob] in the stored state
BLOB_FORMAT = INTERNATIONAL.blob_format  # first byte of a blob: the suite's AEAD (1 AES-256-GCM, 2 SM4-GCM)
NONCE_BYTES = 12
ROTATION_WAIT_MS = 5_000  # how long a new key waits for a rotation in progress before giving up
DEFAULT_CACHE_SIZE = 20_000
# Counted on every look into the cache (infrastructure/metrics.py): a low hit rate says the
# cache is too small for the people a process opens, or GUANAI_KEY_CACHE_SECONDS too short.
_KEY_HIT = KEY_CACHE.labels("hit")
_KEY_MISS = KEY_CACHE.labels("miss")
ERASED_TOPIC = get_topic(Person.Erased)
REGISTERED_TOPIC = get_topic(Person.Registered)
_EMPTY: tuple[Any, ...] = (None, "", [], {})


class MasterKeyError(RuntimeError):
    """The master key is missing, too short, or not the one the keys were wrapped with."""


class KeysBusy(MasterKeyError):
    """A new key could not be written with its save: a master key rotation holds the store's
    master key row (``PostgresKeyStore.key_hook``)."""


class SealError(RuntimeError):
    """A sealed blob or a wrapped key does not open: it was changed or moved."""


class MasterKey:
    """The key-encryption key, derived from the configured secret; ``key_id`` names it."""

    def __init__(
        self,
        secret: str,
        *,
        hint: str = "",
        previous: Sequence[MasterKey] = (),
        setting: str = "GUANAI_MASTER_KEY",
        suite: Suite = INTERNATIONAL,
    ) -> None:
        if len(secret) < MIN_MASTER_KEY_LENGTH:
            raise MasterKeyError(f"{setting} must be at least {MIN_MASTER_KEY_LENGTH} characters")
        self.hint = hint  # added to a mismatch's message (an interrupted rotation of the data directory's key)
        # Earlier master keys this process still opens and wraps with while the store is under
        # one of them (GUANAI_PREVIOUS_MASTER_KEYS): a rotation without stopping anything.
        self.previous = tuple(previous)
        # The store's crypto suite: its AEAD wraps keys and seals data, its hash derives the key.
        self.suite = suite
        hkdf = HKDF(algorithm=suite.kdf_hash(), length=suite.data_key_bytes, salt=None, info=b"guanai master key v1")
        key = hkdf.derive(secret.encode())
        self._aead = suite.aead(key)
        self.key_id = suite.mac(key, b"guanai-master-key-id").hex()[:16]

    def wrap(self, subject: str, data_key: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, _key_aad(subject))

    def held(self, key_id: str | None) -> MasterKey | None:
        """This key or the previous one of that id, if this process holds it."""
        return next((k for k in (self, *self.previous) if k.key_id == key_id), None)

    def mismatch(self, store_key_id: str | None) -> MasterKeyError:
        held = ", ".join(k.key_id for k in (self, *self.previous))
        return MasterKeyError(
            f"the personal data keys are wrapped by master key {store_key_id}, and this process holds {held}: "
            "every process must be given the same GUANAI_MASTER_KEY (or share the data directory's master-key); "
            "after `guanai keys rotate`, restart every process with the new key" + self.hint
        )

    def unwrap(self, subject: str, wrapped: bytes, key_id: str | None) -> bytes:
        key = self.held(key_id)
        if key is None:
            raise self.mismatch(key_id)
        try:
            return key._aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _key_aad(subject))
        except InvalidTag:
            raise SealError(f"the wrapped key of subject {subject} does not unwrap: it was changed or moved") from None


def _key_aad(subject: str) -> bytes:
    return b"guanai-subject-key\0" + subject.encode()


def load_or_create_master_key(
    configured: str | None, data_dir: Path, previous: str = "", suite: Suite = INTERNATIONAL
) -> MasterKey:
    """The configured master key, or one generated once into the data directory (mode 0600,
    atomically: processes starting together agree on one key); with the earlier keys of
    ``previous`` (comma-separated) that it still opens."""
    earlier = [
        MasterKey(s.strip(), setting="every key of GUANAI_PREVIOUS_MASTER_KEYS", suite=suite)
        for s in previous.split(",")
        if s.strip()
    ]
    if configured:
        return MasterKey(configured, previous=earlier, suite=suite)
    hint = ""
    if (data_dir / NEXT_MASTER_KEY_FILE).exists():
        hint = f" ({data_dir / NEXT_MASTER_KEY_FILE} is left from a rotation: `guanai keys rotate` finishes it)"
    return MasterKey(read_or_create_secret(data_dir / MASTER_KEY_FILE), hint=hint, previous=earlier, suite=suite)


def keys_ddl(schema: str) -> list[Any]:
    table, master = Identifier(schema, KEYS_TABLE), Identifier(schema, MASTER_TABLE)
    return [
        SQL("CREATE SEQUENCE IF NOT EXISTS {}").format(Identifier(schema, DESTROYED_SEQUENCE)),
        SQL(
            "CREATE TABLE IF NOT EXISTS {} (subject text PRIMARY KEY, owner text, wrapped bytea, master_key_id text, "
            "created_at timestamptz NOT NULL DEFAULT now(), destroyed_at timestamptz, destroyed_by text, "
            "destroy_reason text, destroyed_seq bigint UNIQUE)"
        ).format(table),
        SQL("CREATE INDEX IF NOT EXISTS {} ON {} (owner)").format(Identifier(KEYS_TABLE + "_owner"), table),
        SQL(
            "CREATE TABLE IF NOT EXISTS {} (one boolean PRIMARY KEY DEFAULT true CHECK (one), key_id text NOT NULL, "
            "since timestamptz NOT NULL DEFAULT now(), rotated_by text)"
        ).format(master),
        # A store whose keys were made before this table existed: its keys name their master key.
        SQL(
            "INSERT INTO {} (key_id) SELECT master_key_id FROM {} WHERE master_key_id IS NOT NULL LIMIT 1 "
            "ON CONFLICT (one) DO NOTHING"
        ).format(master, table),
    ]


class KeyStore:
    """Data keys by subject, cached per process (bounded LRU). A cached ``None`` is a destroyed
    key: destruction is final, so it never needs reloading."""

    def __init__(self, master_key_loader: Any, *, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self._master_loader = master_key_loader
        self._master: MasterKey | None = None
        self._cache: OrderedDict[str, tuple[Aead | None, str | None]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        # Counts the destructions this process has taken in. A key looked up while one was taken
        # in is used for that one read and not cached: it may be a key destroyed meanwhile, whose
        # destruction this process will not be told again.
        self._generation = 0

    @property
    def master(self) -> MasterKey:
        """Loaded on first use, so processes that never touch personal data need no master key."""
        if self._master is None:
            with self._lock:
                if self._master is None:
                    self._master = self._master_loader()
        assert self._master is not None
        return self._master

    # ---- the cache -------------------------------------------------------------------------

    def _cached(self, subject: str) -> tuple[Aead | None, str | None] | None:
        with self._lock:
            entry = self._cache.get(subject)
            if entry is not None:
                self._cache.move_to_end(subject)
        (_KEY_HIT if entry is not None else _KEY_MISS).inc()
        return entry

    def _remember(self, subject: str, aead: Aead | None, owner: str | None, since: int | None = None) -> None:
        with self._lock:
            if since is not None and since != self._generation and aead is not None:
                return
            self._cache[subject] = (aead, owner)
            self._cache.move_to_end(subject)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def forget(self, subjects: Iterable[str]) -> None:
        """Mark keys destroyed in this process: the subjects named, and every key they own."""
        gone = set(subjects)
        with self._lock:
            self._generation += 1
            for subject, (_, owner) in list(self._cache.items()):
                if subject in gone or owner in gone:
                    self._cache[subject] = (None, owner)

    def _entry(
        self, subject: str, wrapped: bytes | None, key_id: str | None, owner: str | None, since: int | None = None
    ) -> Aead | None:
        """The key of a row read from the store; ``since``: the generation when the read began."""
        aead = None if wrapped is None else self.master.suite.aead(self.master.unwrap(subject, bytes(wrapped), key_id))
        self._remember(subject, aead, owner, since)
        return aead

    @property
    def generation(self) -> int:
        with self._lock:
            return self._generation

    # ---- what the mapper asks ----------------------------------------------------------------

    def key_for_sealing(self, subject: str, owner: str | None) -> Aead:
        self.refresh()
        entry = self._cached(subject)
        if entry is None:
            entry = (self._load_or_create(subject, owner), owner)
        if entry[0] is None:
            raise ErasedError(f"the personal data of {subject} was erased; nothing more can be recorded about it")
        return entry[0]

    def key_for_saving(self, subject: str, owner: str | None, *, new: bool = False) -> Aead:
        """The key the mapper seals a save's events with (``new``: the save creates the subject,
        so no stored key is looked for first). Here as ``key_for_sealing``; the PostgreSQL store
        makes a new key in the save's own transaction instead."""
        return self.key_for_sealing(subject, owner)

    def keys_for_opening(self, subjects: Iterable[str]) -> dict[str, Aead | None]:
        """Live keys (None: destroyed) of every subject named; unknown subjects raise."""
        self.refresh()
        found: dict[str, Aead | None] = {}
        missing = []
        for subject in set(subjects):
            entry = self._cached(subject)
            if entry is None:
                missing.append(subject)
            else:
                found[subject] = entry[0]
        if missing:
            found.update(self._load(missing))
        return found

    def is_destroyed(self, subject: str) -> bool:
        """True once the subject's key was destroyed (its personal data reads as erased)."""
        try:
            return self.keys_for_opening([subject])[subject] is None
        except SealError:
            return False

    # ---- storage (in memory here; PostgreSQL below) ---------------------------------------------

    def refresh(self) -> None:
        """Drop keys destroyed by other processes (the in-memory store has none)."""

    def _load_or_create(self, subject: str, owner: str | None) -> Aead | None:
        raise NotImplementedError

    def _load(self, subjects: Sequence[str]) -> dict[str, Aead | None]:
        raise NotImplementedError


class InMemoryKeyStore(KeyStore):
    """For an application on the library's in-memory (POPO) store: keys live as long as it does."""

    def __init__(self, master_key_loader: Any) -> None:
        super().__init__(master_key_loader, cache_size=10**9)
        self._rows: dict[str, tuple[bytes | None, str | None]] = {}

    def _load_or_create(self, subject: str, owner: str | None) -> Aead | None:
        if owner and owner != subject and owner in self._rows and self._rows[owner][0] is None:
            self._rows.setdefault(subject, (None, owner))
        row = self._rows.setdefault(subject, (self.master.wrap(subject, self.master.suite.new_data_key()), owner))
        return self._entry(subject, row[0], self.master.key_id, row[1])

    def _load(self, subjects: Sequence[str]) -> dict[str, Aead | None]:
        unknown = [s for s in subjects if s not in self._rows]
        if unknown:
            raise SealError(f"no key for subject {unknown[0]}")
        return {s: self._entry(s, self._rows[s][0], self.master.key_id, self._rows[s][1]) for s in subjects}

    def destroy(self, person: str) -> None:
        for subject, (_, owner) in list(self._rows.items()):
            if subject == person or owner == person:
                self._rows[subject] = (None, owner)
        self._rows.setdefault(person, (None, person))
        self.forget([person])


class PostgresKeyStore(KeyStore):
    """Keys in ``guanai_subject_keys``, read and created through the event store's pool."""

    def __init__(
        self,
        datastore: Any,
        master_key_loader: Any,
        *,
        refresh_seconds: float = 2.0,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        super().__init__(master_key_loader, cache_size=cache_size)
        self.datastore = datastore
        self.refresh_seconds = refresh_seconds
        self._seen_seq: int | None = None
        self._checked_at = 0.0
        self._refresh_lock = threading.Lock()
        table = Identifier(datastore.schema, KEYS_TABLE)
        self._select = SQL(
            "SELECT subject, owner, wrapped, master_key_id FROM {} WHERE subject = ANY(%b::text[])"
        ).format(table)
        master_table = Identifier(datastore.schema, MASTER_TABLE)
        self._store_key_id: str | None = None  # the store's master key, as last seen
        self._claim_master = SQL("INSERT INTO {} (key_id) VALUES (%s) ON CONFLICT (one) DO NOTHING").format(
            master_table
        )
        self._store_master = SQL("SELECT key_id FROM {}").format(master_table)
        self._owner_state = SQL("SELECT destroyed_at FROM {} WHERE subject = %s FOR SHARE").format(table)
        # A key is inserted only while the store's master key is the one it was wrapped with,
        # sharing that row until the insert commits: a rotation (which holds the row for update)
        # waits for the insert, or the insert for the rotation and then finds another master key.
        # Committed durably (synchronous_commit as the server has it): the key is cached in this
        # process and events are sealed with it at once; the event store's insert, retried after
        # a lost connection, may commit them on a server that crashed in between, and a key row
        # committed without its flush would be gone with the crash (tests/e2e/test_key_durability.py).
        self._settings = SQL("SELECT set_config('lock_timeout', %s, true)")
        self._insert = SQL(
            "INSERT INTO {} (subject, owner, wrapped, master_key_id) SELECT %s, %s, %s, %s FROM {} "
            "WHERE key_id = %s FOR KEY SHARE ON CONFLICT (subject) DO NOTHING"
        ).format(table, master_table)
        self._destroyed_since = SQL(
            "SELECT subject, destroyed_seq FROM {} WHERE destroyed_seq > %s ORDER BY destroyed_seq"
        ).format(table)
        self._last_destroyed = SQL("SELECT coalesce(max(destroyed_seq), 0) AS seq FROM {}").format(table)
        # Keys made for a save and written in the save's own transaction (``key_for_saving``): not
        # stored until a save carrying them commits. Every save sealed with one carries its row
        # until then (subject -> (owner, data key, wrapped, master key id)).
        self._unconfirmed: dict[str, tuple[str | None, bytes, bytes, str]] = {}
        self.fold = True  # false: each new key in its own transaction first (to measure what folding saves)
        # False: a group's folded key check answers in the client, before the COMMIT is sent (one
        # wait on the server more; to measure what answering it in the server saves).
        self.check_in_server = True
        self._carried = threading.local()
        self._insert_carried = SQL(
            "INSERT INTO {} (subject, owner, wrapped, master_key_id) SELECT r.subject, r.owner, r.wrapped, r.key_id "
            "FROM unnest(%b::text[], %b::text[], %b::bytea[], %b::text[]) AS r(subject, owner, wrapped, key_id), {} m "
            "WHERE m.key_id = r.key_id FOR KEY SHARE OF m SKIP LOCKED ON CONFLICT (subject) DO NOTHING"
        ).format(table, master_table)
        self._insert_carried_returning = self._insert_carried + SQL(" RETURNING subject, owner")
        # The owner's row by one index probe per key (a correlated subquery on the primary key),
        # not a join: as a LEFT JOIN, the prepared statement's generic plan, made while the
        # table had no statistics yet, hashed a sequential scan of every key row, at every
        # save, until the next ANALYZE (issue 19). ``subject`` is the primary key: one row or none.
        owner_destroyed = SQL(
            "(SELECT o.destroyed_at FROM {} o WHERE o.subject = k.owner AND k.owner <> k.subject) AS owner_destroyed"
        ).format(table)
        self._select_new_keys = SQL("SELECT k.subject, {} FROM new_keys k").format(owner_destroyed)
        # The same check answered in the server: the statement fails (division by zero) unless
        # every key was inserted and no owner was erased. Its answer is then not awaited before
        # the COMMIT, which follows it in the group's pipeline and which the server skips after a
        # failed statement; the group is then written one save at a time, where the check above
        # tells each save its own error (issue 19: one wait on the server less a new key).
        self._check_new_keys = SQL(
            "SELECT 1 / (count(*) = %s::int AND coalesce(bool_and(owner_destroyed IS NULL), false))::int AS ok "
            "FROM (SELECT {} FROM new_keys k) checked"
        ).format(owner_destroyed)
        self._select_carried = SQL(
            "SELECT k.subject, k.owner, k.wrapped, k.master_key_id, {} FROM {} k WHERE k.subject = ANY(%b::text[])"
        ).format(owner_destroyed, table)
        sequence = Literal(f"{datastore.schema}.{DESTROYED_SEQUENCE}")
        # A person without a key row (nothing of theirs was ever sealed) gets a destroyed one.
        self._destroy_own = SQL(
            "INSERT INTO {t} AS k (subject, owner, destroyed_at, destroyed_by, destroy_reason, destroyed_seq) "
            "VALUES (%(p)s, %(p)s, now(), %(by)s, %(reason)s, nextval({s})) ON CONFLICT (subject) DO UPDATE SET "
            "wrapped = NULL, destroyed_at = EXCLUDED.destroyed_at, destroyed_by = EXCLUDED.destroyed_by, "
            "destroy_reason = EXCLUDED.destroy_reason, destroyed_seq = EXCLUDED.destroyed_seq"
            " WHERE k.destroyed_at IS NULL"
        ).format(t=table, s=sequence)
        self._destroy_owned = SQL(
            "UPDATE {t} SET wrapped = NULL, destroyed_at = now(), destroyed_by = %(by)s, destroy_reason = %(reason)s, "
            "destroyed_seq = nextval({s}) WHERE owner = %(p)s AND subject <> %(p)s AND destroyed_at IS NULL"
        ).format(t=table, s=sequence)

    def refresh(self, *, force: bool = False) -> None:
        """At most every ``refresh_seconds``: one query for the keys destroyed since the last
        one seen. Destructions are numbered under the event store's insert lock, so they commit
        in sequence order and none is skipped."""
        now = time.monotonic()
        if not force and now - self._checked_at < self.refresh_seconds:
            return
        with self._refresh_lock:
            if not force and now - self._checked_at < self.refresh_seconds:
                return
            with self.datastore.get_connection() as conn, conn.cursor() as cur:
                if self._seen_seq is None:
                    # Nothing is cached before the first look: only where to start matters.
                    self._seen_seq = cur.execute(self._last_destroyed).fetchone()["seq"]
                else:
                    rows = cur.execute(self._destroyed_since, (self._seen_seq,)).fetchall()
                    if rows:
                        self.forget(r["subject"] for r in rows)
                        self._seen_seq = rows[-1]["destroyed_seq"]
            self._checked_at = now

    def _load(self, subjects: Sequence[str]) -> dict[str, Aead | None]:
        since = self.generation
        with self.datastore.get_connection() as conn, conn.cursor() as cur:
            rows = cur.execute(self._select, (list(subjects),)).fetchall()
        found = {
            r["subject"]: self._entry(r["subject"], r["wrapped"], r["master_key_id"], r["owner"], since) for r in rows
        }
        for subject in subjects:
            if subject not in found:
                raise SealError(f"no key for subject {subject}: the key table does not match the event store")
        return found

    def check_master_key(self) -> None:
        """Refuse a master key the stored keys were not wrapped with, before anything is written
        under it (data sealed under two master keys could never all be read by one process)."""
        if self._store_key_id is not None:
            return
        master = self.master
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute(self._claim_master, (master.key_id,))  # the first process names it
            row = cur.execute(self._store_master).fetchone()
        if master.held(row["key_id"]) is None:
            raise master.mismatch(row["key_id"])
        self._store_key_id = row["key_id"]

    def _load_or_create(self, subject: str, owner: str | None) -> Aead | None:
        self.check_master_key()
        since = self.generation
        data_key = self.master.suite.new_data_key()
        row = None
        for _ in range(3):
            # Wrapped under the master key the store is under: this process's, or during a
            # rotation without a stop, a previous one it still holds.
            wrapping = self.master.held(self._store_key_id)
            if wrapping is None:
                raise self.master.mismatch(self._store_key_id)
            row, store_key_id = self._create(subject, owner, wrapping.key_id, wrapping.wrap(subject, data_key))
            if row is not None:
                break
            self._store_key_id = store_key_id  # nothing inserted: the store was rotated meanwhile
        else:
            raise MasterKeyError(f"the key of {subject} could not be made: the master key kept changing")
        return self._entry(subject, row["wrapped"], row["master_key_id"], row["owner"], since)

    def key_for_sealing(self, subject: str, owner: str | None) -> Aead:
        """As the base class does; a key made for a save that has not committed yet is stored
        first (callers of this method count on the key being on disk)."""
        aead = super().key_for_sealing(subject, owner)
        with self._lock:
            pending = self._unconfirmed.get(subject)
        if pending is not None:
            self.store_carried([(subject, pending[0], pending[2], pending[3])])
        return aead

    # ---- keys written with the save that first uses them ------------------------------------------

    def key_for_saving(self, subject: str, owner: str | None, *, new: bool = False) -> Aead:
        """A stored key, or a new one that this thread's next save carries into its own
        transaction (``carried_keys``, ``key_hook``): the key row and the events sealed with it
        commit together or not at all, with one flush instead of the key's own (the events'
        insert, retried on a reconnected server after a crash, writes the key again with them)."""
        if not self.fold:
            return self.key_for_sealing(subject, owner)
        self.refresh()
        entry = self._cached(subject)
        if entry is None and not new:
            try:
                self._load([subject])
            except SealError:
                pass  # none stored: made below
            entry = self._cached(subject)
        if entry is None:
            self.check_master_key()
            wrapping = self.master.held(self._store_key_id)
            if wrapping is None:
                raise self.master.mismatch(self._store_key_id)
            data_key = self.master.suite.new_data_key()
            made = (owner, data_key, wrapping.wrap(subject, data_key), wrapping.key_id)
            with self._lock:
                cached = self._cache.get(subject)
                pending = self._unconfirmed.get(subject)
                if cached is not None and pending is None:
                    entry = cached  # stored meanwhile, by another thread of this process
                else:
                    # This one, or the one another thread made for the subject first (kept in
                    # ``_unconfirmed`` even when the cache has let it go).
                    pending = pending or made
                    self._unconfirmed[subject] = pending
                    entry = self._cache[subject] = (self.master.suite.aead(pending[1]), pending[0])
        if entry[0] is None:
            raise ErasedError(f"the personal data of {subject} was erased; nothing more can be recorded about it")
        with self._lock:
            pending = self._unconfirmed.get(subject)
        if pending is not None:
            rows: list[tuple[str, str | None, bytes, str]] | None = getattr(self._carried, "rows", None)
            if rows is None:
                rows = self._carried.rows = []
            rows.append((subject, pending[0], pending[2], pending[3]))
        return entry[0]

    def carried_keys(self) -> list[tuple[str, str | None, bytes, str]]:
        """The new keys this thread's events were sealed with since its last save (taken)."""
        rows: list[tuple[str, str | None, bytes, str]] = getattr(self._carried, "rows", None) or []
        self._carried.rows = None
        return rows

    def confirmed(self, rows: Sequence[tuple[str, str | None, bytes, str]]) -> None:
        """A save carrying these keys committed: they are stored."""
        with self._lock:
            for subject, _, wrapped, _ in rows:
                pending = self._unconfirmed.get(subject)
                if pending is not None and pending[2] == wrapped:
                    del self._unconfirmed[subject]

    def abandon(self, rows: Sequence[tuple[str, str | None, bytes, str]]) -> None:
        """A save carrying these keys failed: those still not stored are forgotten (the next
        save of the subject looks for a stored key, or makes another)."""
        with self._lock:
            for subject, _, wrapped, _ in rows:
                pending = self._unconfirmed.get(subject)
                if pending is not None and pending[2] == wrapped:
                    del self._unconfirmed[subject]
                    self._cache.pop(subject, None)

    def _drop_unconfirmed(self, subject: str) -> None:
        with self._lock:
            self._unconfirmed.pop(subject, None)
            self._cache.pop(subject, None)

    def store_carried(self, rows: Sequence[tuple[str, str | None, bytes, str]]) -> None:
        """Store carried keys in their own transaction, waiting for a master key rotation as
        ``key_for_sealing`` does (the key's transaction before the save's, as before)."""
        for subject, owner, wrapped, key_id in rows:
            with self._lock:
                pending = self._unconfirmed.get(subject)
            if pending is None or pending[2] != wrapped:
                continue
            row, store_key_id = self._create(subject, owner, key_id, wrapped)
            if row is None:  # rotated meanwhile: the same data key under the store's master key now
                self._store_key_id = store_key_id
                wrapping = self.master.held(store_key_id)
                if wrapping is None:
                    raise self.master.mismatch(store_key_id)
                row, _ = self._create(subject, owner, wrapping.key_id, wrapping.wrap(subject, pending[1]))
            if (
                row is None
                or row["wrapped"] is None
                or self.master.unwrap(subject, bytes(row["wrapped"]), row["master_key_id"]) != pending[1]
            ):
                self._drop_unconfirmed(subject)
                raise IntegrityError(f"another key was stored for {subject} meanwhile: the save is decided again")
            self.confirmed([(subject, owner, wrapped, key_id)])

    def key_hook(self, cur: Cursor[Any], written: Sequence[tuple[int, StoredEvent]], carried: Sequence[Any]) -> None:
        """In the save's transaction, under the event store's lock: the new keys its events were
        sealed with. A key stored meanwhile by another process fails the save (IntegrityError:
        the application decides and seals again, with the stored key); an owner erased fails it
        (ErasedError); a master key rotation holding its row fails it with ``KeysBusy`` (the
        save is tried again after ``store_carried``)."""
        rows = list({r[0]: r for r in carried}.values())
        if not rows:
            return
        columns = [list(col) for col in zip(*rows, strict=True)]
        writes = folded.pending(cur.connection)
        with cur.connection.cursor() as c:
            if writes is not None and self.check_in_server:
                # With the transaction's other folded writes, in one statement that fails unless
                # every key was inserted (an inserted key is this save's own; one not inserted was
                # stored meanwhile, or a rotation holds the master key row) and no owner was
                # erased. Not awaited: the failure comes with the COMMIT's sync, and the group is
                # then written save by save, through the checks below (``_Unsorted``).
                writes.add(self._insert_carried_returning, columns, name="new_keys")
                writes.send(c, self._check_new_keys, (len(rows),))
                return
            if writes is not None:
                # With the transaction's other folded writes, in one statement: the keys inserted
                # (an inserted key is this save's own) and whether their owners were erased.
                writes.add(self._insert_carried_returning, columns, name="new_keys")
                writes.send(c, self._select_new_keys)
                inserted = {r["subject"]: r for r in c.fetchall()}
                for subject, _, _, _ in rows:
                    if subject in inserted and inserted[subject]["owner_destroyed"] is not None:
                        raise ErasedError(f"the owner of {subject} was erased", field="person_id")
                # Not inserted: a key stored meanwhile, or a rotation holding the master key row.
                rows = [r for r in rows if r[0] not in inserted]
                if not rows:
                    return
            else:
                c.execute(self._insert_carried, columns, prepare=True)
            c.execute(self._select_carried, ([r[0] for r in rows],), prepare=True)
            found = {r["subject"]: r for r in c.fetchall()}
        for subject, _, wrapped, _ in rows:
            stored = found.get(subject)
            if stored is None:
                raise KeysBusy(f"the key of {subject} waits for a master key rotation")
            if stored["wrapped"] is None or bytes(stored["wrapped"]) != wrapped:
                # The stored key (or its destruction) replaces this process's: the next try seals with it.
                with self._lock:
                    self._unconfirmed.pop(subject, None)
                self._entry(subject, stored["wrapped"], stored["master_key_id"], stored["owner"])
                if stored["wrapped"] is None:
                    raise ErasedError(
                        f"the personal data of {subject} was erased; nothing more can be recorded about it"
                    )
                raise IntegrityError(f"another key was stored for {subject} meanwhile: the save is decided again")
            if stored["owner_destroyed"] is not None:
                raise ErasedError(f"the owner of {subject} was erased", field="person_id")

    def prepare_keys(self, subjects: Sequence[str]) -> None:
        """Make the keys of many new subjects, each its own owner (people registered by an
        import's batch), in one transaction instead of one each: the keys ``key_for_sealing``
        then finds in the cache. As ``_create`` does for one key, under the master key row
        shared; anything unusual (a rotation meanwhile) leaves the rest to ``key_for_sealing``."""
        self.check_master_key()
        since = self.generation
        missing = [s for s in dict.fromkeys(subjects) if self._cached(s) is None]
        wrapping = self.master.held(self._store_key_id)
        if not missing or wrapping is None:
            return
        rows = [
            (s, s, wrapping.wrap(s, self.master.suite.new_data_key()), wrapping.key_id, wrapping.key_id)
            for s in missing
        ]
        try:
            with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as cur:
                cur.execute(self._settings, (f"{ROTATION_WAIT_MS}ms",))
                cur.executemany(self._insert, rows)
                found = cur.execute(self._select, (missing,)).fetchall()
        except psycopg_errors.LockNotAvailable:
            return
        for row in found:
            if row["wrapped"] is not None and self.master.held(row["master_key_id"]) is not None:
                self._entry(row["subject"], row["wrapped"], row["master_key_id"], row["owner"], since)

    def _create(self, subject: str, owner: str | None, key_id: str, wrapped: bytes) -> tuple[Any, str]:
        """Insert the key (unless the subject has one); (its row, or None if the store is not
        under ``key_id`` now; the store's master key id)."""
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as cur:
            # Its own flush: not left to the commit of the first event sealed with this key, since
            # that commit may be a retry on a server that crashed after this one and lost this row
            # (found by bench/chaos.py: a report stored sealed with a key no process could load,
            # never routed). Costs a disk flush per new person, helper and report. No long wait for a lock:
            # a rotation of a large store holds the master key row for seconds, and requests
            # waiting here would hold every pooled connection meanwhile. Both in one round trip.
            cur.execute(self._settings, (f"{ROTATION_WAIT_MS}ms",))
            try:
                # The master key row first, before any key row, as the rotation takes them (so
                # the two never wait for each other), shared until this transaction ends.
                cur.execute(self._insert, (subject, owner, wrapped, key_id, key_id))
                if owner and owner != subject:
                    # The owner's key row is locked by an erasure in progress: wait for it, so a
                    # key made for them now cannot slip past the erasure's sweep of their keys.
                    row = cur.execute(self._owner_state, (owner,)).fetchone()
                    if row is not None and row["destroyed_at"] is not None:
                        raise ErasedError(f"person {owner} was erased", field="person_id")
            except psycopg_errors.LockNotAvailable:
                raise MasterKeyError(
                    "the personal data keys are busy (a master key rotation, or an erasure waiting for one): "
                    "keys for new persons, helpers and reports wait for it; try again shortly"
                ) from None
            row = cur.execute(self._select, ([subject],)).fetchone()
            if row is not None:
                return row, key_id
            return None, cur.execute(self._store_master).fetchone()["key_id"]  # the store was rotated

    # ---- erasure, inside the event store's insert transaction ------------------------------------

    def erasure_hook(self, cur: Cursor[Any], written: Sequence[tuple[int, StoredEvent]]) -> None:
        """Destroy the keys of every person erased by this batch of stored events, in its own
        transaction: the event and the destruction commit together or not at all. The caller
        forgets the keys in this process once the transaction committed (a rolled-back erasure
        must not leave a person reading as erased here)."""
        erased = [e for _, e in written if e.topic == ERASED_TOPIC]
        if not erased:
            return
        with cur.connection.cursor() as c:
            for event in erased:
                state = json.loads(event.state)
                params = {"p": str(event.originator_id), "by": state.get("actor_id"), "reason": state.get("reason")}
                # The person's own row first: its lock makes a concurrent key creation for
                # something they own wait for this transaction (see _load_or_create).
                c.execute(self._destroy_own, params)
                c.execute(self._destroy_owned, params)


# ---- sealing ---------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _aad(originator_id: Any, version: int, topic: str, subject: str) -> bytes:
    return "\0".join(("guanai-sealed-v1", str(originator_id), str(version), topic, subject)).encode()


class SealingMapper(Mapper[UUID]):
    """The library's mapper, sealing the personal fields each event class declares. With
    ``seal`` false it stores them in the clear (to measure the cost of sealing) and still opens
    what was sealed. With ``opens`` false it never asks for a key: sealed fields read as erased
    and nothing personal can be recorded (the projector and relay: they need no personal data,
    so they hold no master key)."""

    def __init__(self, transcoder: Transcoder, keys: KeyStore, *, seal: bool = True, opens: bool = True) -> None:
        super().__init__(transcoder)
        self.keys = keys
        self.seal = seal
        self.opens = opens
        # (topic, keys) -> the transcoder's typed decoder of those keys (None: it has none)
        self._typed_decoders: dict[tuple[str, frozenset[str]], Callable[[bytes], dict[str, Any]] | None] = {}

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        declared = getattr(type(domain_event), "personal", None)
        if not self.seal or not isinstance(declared, Personal):
            return super().to_stored_event(domain_event)
        topic = get_topic(type(domain_event))
        state = dict(vars(domain_event))
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        secret = {f: state.pop(f) for f in declared.erased if f in state and state[f] not in _EMPTY}
        scope = {**state, "originator_id": originator_id}
        subject, owner = declared.subject_of(scope), declared.owner_of(scope)
        if not self.opens and (secret or owner not in (None, subject)):
            raise SealError(f"this process holds no personal data keys; it cannot record {topic}")
        if not secret and owner not in (None, subject):
            # Nothing to seal now, but later events of this subject (a report's notes) will be:
            # their key must already name whose erasure destroys it.
            self.keys.key_for_saving(subject, owner, new=originator_version == 1 and subject == str(originator_id))
        if secret:
            aead = self.keys.key_for_saving(
                subject, owner, new=originator_version == 1 and subject == str(originator_id)
            )
            nonce = secrets.token_bytes(NONCE_BYTES)
            aad = _aad(originator_id, originator_version, topic, subject)
            sealed = aead.encrypt(nonce, self.transcoder.encode(secret), aad)
            state[SEALED_FIELD] = [subject, _b64(bytes((self.keys.master.suite.blob_format,)) + nonce + sealed)]
        class_version = getattr(type(domain_event), "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        return StoredEvent(
            originator_id=originator_id,
            originator_version=originator_version,
            topic=topic,
            state=self.transcoder.encode(state),
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        return self.to_domain_events([stored_event])[0]

    def to_domain_events(
        self, stored_events: Sequence[StoredEvent], fields: Callable[[str], Collection[str] | None] | None = None
    ) -> list[Any]:
        """Decode many events with one key look-up for all the subjects they need.

        ``fields``, when given, names by topic the only fields a reader will look at (None: all
        of them): the events then hold those fields only (with ``originator_id`` and
        ``originator_version``), the rest of their state is parsed and dropped without being
        decoded, and sealed data is opened only for an event whose personal fields are wanted.
        An event of a class with upcasters is decoded whole (they rewrite the whole state)."""
        selected = self._selection(fields) if fields is not None else None
        states = []
        for stored in stored_events:
            wanted = None if selected is None else selected(stored.topic)
            try:
                if wanted is None:
                    states.append(self.transcoder.decode(stored.state))
                else:
                    states.append(self._decode_fields(stored.topic, stored.state, wanted))
            except Exception as e:
                msg = (
                    f"Failed to deserialise state of stored event with topic '{stored.topic}', originator_id "
                    f"'{stored.originator_id}' and originator_version {stored.originator_version}: {e}"
                )
                raise MapperDeserialisationError(msg) from e
        subjects = {s[SEALED_FIELD][0] for s in states if SEALED_FIELD in s}
        if not self.opens:
            keys: Mapping[str, Aead | None] = dict.fromkeys(subjects)  # as if every key were destroyed
        else:
            keys = self.keys.keys_for_opening(subjects) if subjects else {}
        if selected is None:
            return [self._event(stored, state, keys) for stored, state in zip(stored_events, states, strict=True)]
        return [
            self._event(stored, state, keys, selected(stored.topic))
            for stored, state in zip(stored_events, states, strict=True)
        ]

    def rows_decoder(
        self, fields: Callable[[str], Collection[str] | None]
    ) -> Callable[[Sequence[tuple[int, Any, int, str, bytes]]], list[tuple[int, Any]]]:
        """A decoder of the log's rows as a rebuild reads them, ``(notification id, originator id,
        originator version, topic, state)``, into ``(notification id, domain event)``: the events
        ``to_domain_events(stored, fields)`` gives, without a ``StoredEvent`` per row and with
        what is known of a topic (its class, the keys to decode, their typed decoder) looked up
        once per topic for every batch the decoder is given, not per event. An event whose state
        holds sealed data, or whose class upcasts, goes through the same steps as in
        ``to_domain_events``."""
        selected = self._selection(fields)
        # topic -> (class, the keys to decode or None for all, the typed decoder or None, whether
        # an event of it may be made without _event: only its wanted keys, no upcasting)
        plans: dict[str, tuple[type, frozenset[str] | None, Callable[[bytes], dict[str, Any]] | None, bool]] = {}
        decode_whole, new = self.transcoder.decode, object.__new__
        set_attribute = object.__setattr__

        def plan(topic: str) -> tuple[type, frozenset[str] | None, Callable[[bytes], dict[str, Any]] | None, bool]:
            keys = selected(topic)
            cls = resolve_topic(topic)  # a topic that does not resolve fails here, as in _event
            typed = None
            if keys is not None:
                typed = self._typed_decoders.get((topic, keys), False)  # type: ignore[assignment]
                if typed is False:
                    make = getattr(self.transcoder, "fields_decoder", None)
                    typed = None if make is None else make(cls, keys)
                    self._typed_decoders[topic, keys] = typed
            plans[topic] = found = (cls, keys, typed, keys is not None and getattr(cls, "class_version", 1) == 1)
            return found

        def decode(rows: Sequence[tuple[int, Any, int, str, bytes]]) -> list[tuple[int, Any]]:
            states = []
            for _, originator_id, originator_version, topic, data in rows:
                _cls, keys, typed, _fast = plans.get(topic) or plan(topic)
                try:
                    if keys is None:
                        state = decode_whole(data)
                    elif typed is not None:
                        try:
                            state = typed(data)
                        except (msgspec.ValidationError, msgspec.DecodeError):
                            state = self._decode_fields(topic, data, keys)
                    else:
                        state = self._decode_fields(topic, data, keys)
                except Exception as e:
                    msg = (
                        f"Failed to deserialise state of stored event with topic '{topic}', originator_id "
                        f"'{originator_id}' and originator_version {originator_version}: {e}"
                    )
                    raise MapperDeserialisationError(msg) from e
                states.append(state)
            subjects = {s[SEALED_FIELD][0] for s in states if SEALED_FIELD in s}
            if not self.opens:
                opened: Mapping[str, Aead | None] = dict.fromkeys(subjects)
            else:
                opened = self.keys.keys_for_opening(subjects) if subjects else {}
            out = []
            for (position, originator_id, originator_version, topic, _), state in zip(rows, states, strict=True):
                cls, keys, _typed, fast = plans[topic]
                if not fast or SEALED_FIELD in state:
                    stored = StoredEvent(originator_id, originator_version, topic, b"")
                    event = self._event(stored, state, opened, keys)
                else:  # what _event does with a state that holds nothing sealed and needs no upcast
                    state["originator_id"] = _uuid(originator_id)
                    state["originator_version"] = originator_version
                    state.pop("class_version", None)
                    event = new(cls)
                    set_attribute(event, "__dict__", state)
                out.append((position, event))
            return out

        return decode

    def fields_reader(self, topic: str, fields: Collection[str]) -> tuple[type, Any] | None:
        """For a replay compiled once per event class (a view's rebuild): the class of ``topic``
        and a reader (``EventTranscoder.fields_reader``) of ``fields`` of its stored states whose
        expressions give the values the event ``to_domain_events`` makes would hold, or None where
        the event must be made by ``rows_decoder`` (a class that upcasts, a personal field wanted by
        a mapper that opens sealed data, a transcoder without such readers). ``fields`` are fields
        the class declares, not the originator's id or version (the row's). A personal field (of a
        mapper that opens nothing) reads as stored when it was stored in the clear, else as its
        erased placeholder (a copy) when the state holds sealed data, as ``_event`` makes it; a
        state holding neither makes ``decode``'s caller's expression raise
        ``msgspec.ValidationError``, as a state that does not fit the class does: its event must
        then be made by ``rows_decoder`` too."""
        cls = resolve_topic(topic)
        make = getattr(self.transcoder, "fields_reader", None)
        personal = personal_fields(cls) & frozenset(fields)
        if make is None or getattr(cls, "class_version", 1) != 1 or (personal and self.opens):
            return None
        wanted = [*fields, SEALED_FIELD] if personal else list(fields)
        reader = make(cls, wanted, optional={*personal, SEALED_FIELD})
        if reader is None or not personal:
            return None if reader is None else (cls, reader)
        declared = getattr(cls, "personal", None)
        erased = declared.erased if isinstance(declared, Personal) else {}
        sealed = f"s.{reader.attributes[SEALED_FIELD]}"
        reader.namespace["_unset"], reader.namespace["_absent"] = msgspec.UNSET, _absent
        for n, name in enumerate(sorted(personal)):
            placeholder = f"_erased_{n}"
            reader.namespace[placeholder] = _copier(erased[name]) if name in erased else _absent
            reader.expressions[name] = (
                f"({reader.expressions[name]} if s.{reader.attributes[name]} is not _unset"
                f" else {placeholder}() if {sealed} is not _unset else _absent())"
            )
        return cls, reader

    def _selection(self, fields: Callable[[str], Collection[str] | None]) -> Callable[[str], frozenset[str] | None]:
        """By topic: the keys of the stored state to decode (the wanted fields, and the sealed
        data when a wanted field is personal), or None to decode all of it. Worked out once per
        topic and reader."""
        cache: dict[str, frozenset[str] | None] = {}

        def selected(topic: str) -> frozenset[str] | None:
            if topic in cache:
                return cache[topic]
            wanted = fields(topic)
            keys: frozenset[str] | None = None
            if wanted is not None:
                try:
                    cls = resolve_topic(topic)
                except TopicError:
                    cls = None  # decoded whole: resolving it again fails as it always did
                if cls is not None and getattr(cls, "class_version", 1) == 1:
                    keys = frozenset(wanted) | {"class_version"}
                    if personal_fields(cls) & keys:
                        keys |= {SEALED_FIELD}
            cache[topic] = keys
            return keys

        return selected

    def _decode_fields(self, topic: str, data: bytes, keys: frozenset[str]) -> dict[str, Any]:
        """The ``keys`` of a stored state: by the transcoder's decoder typed for the topic's
        class when it has one and the state fits it, else by its ``decode_fields``."""
        typed = self._typed_decoders.get((topic, keys), False)
        if typed is False:
            make = getattr(self.transcoder, "fields_decoder", None)
            typed = None if make is None else make(resolve_topic(topic), keys)
            self._typed_decoders[topic, keys] = typed
        if typed is not None:
            try:
                return typed(data)  # type: ignore[no-any-return]
            except (msgspec.ValidationError, msgspec.DecodeError):
                pass  # not as the class declares (an older shape): decoded box by box below
        decode_fields = getattr(self.transcoder, "decode_fields", None)
        if decode_fields is not None:
            return decode_fields(data, keys)  # type: ignore[no-any-return]
        state = self.transcoder.decode(data)
        return {k: v for k, v in state.items() if k in keys}

    def _event(
        self,
        stored: StoredEvent,
        state: dict[str, Any],
        keys: Mapping[str, Aead | None],
        selected: frozenset[str] | None = None,
    ) -> Any:
        cls = resolve_topic(stored.topic)
        sealed = state.pop(SEALED_FIELD, None)
        if sealed is not None:
            subject, blob = sealed
            aead = keys[subject]
            if aead is None:
                declared = getattr(cls, "personal", None)
                erased = declared.erased if isinstance(declared, Personal) else {}
                # Only the fields that were sealed: empty ones were stored in the clear.
                state.update(
                    {
                        f: copy.deepcopy(v)
                        for f, v in erased.items()
                        if f not in state and (selected is None or f in selected)
                    }
                )
            else:
                raw = base64.b64decode(blob)
                if raw[0] != self.keys.master.suite.blob_format:
                    raise SealError(
                        f"sealed data of format {raw[0]} is not of this store's {self.keys.master.suite.name} suite"
                    )
                try:
                    plain = aead.decrypt(
                        raw[1 : 1 + NONCE_BYTES],
                        raw[1 + NONCE_BYTES :],
                        _aad(stored.originator_id, stored.originator_version, stored.topic, subject),
                    )
                except InvalidTag:
                    raise SealError(
                        f"the sealed data of event {stored.originator_id} v{stored.originator_version} does not open: "
                        "it was changed or moved"
                    ) from None
                opened = self.transcoder.decode(plain)
                state.update(opened if selected is None else {f: v for f, v in opened.items() if f in selected})
        state["originator_id"] = _uuid(stored.originator_id)
        state["originator_version"] = stored.originator_version
        class_version = getattr(cls, "class_version", 1)
        from_version = state.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", state)
        return event


def _absent() -> Any:
    raise msgspec.ValidationError("a personal field neither in the clear nor sealed")


def _copier(value: Any) -> Callable[[], Any]:
    """A function giving a copy of ``value`` as ``copy.deepcopy`` makes it: a shallow copy of a
    dict or list of immutable scalars (an erased placeholder), the value itself when immutable."""
    scalars = (str, int, float, bool, type(None))
    if isinstance(value, scalars):
        return lambda: value
    if type(value) is dict and all(type(v) in scalars for v in value.values()) and all(type(k) is str for k in value):
        return value.copy
    if type(value) is list and all(type(v) in scalars for v in value):
        return value.copy
    return lambda: copy.deepcopy(value)


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


# ---- rotating the master key ---------------------------------------------------------------------


@dataclass(frozen=True)
class Rotation:
    old_key_id: str
    new_key_id: str
    rewrapped: int  # live keys re-wrapped (destroyed ones have nothing to re-wrap)
    destroyed: int
    already: bool = False  # the store was under the new key already: nothing was done


@dataclass(frozen=True)
class RotationProgress:
    done: int
    total: int
    rate: float
    eta: float | None


def rotate_master_key(
    database_url: str,
    old: MasterKey,
    new: MasterKey,
    *,
    by: str,
    batch: int = 5_000,
    progress: Callable[[RotationProgress], None] | None = None,
    before_commit: Callable[[], None] | None = None,
) -> Rotation:
    """Re-wrap every live data key under ``new``, in one transaction: all keys or none.

    Holds the ``guanai_master_key`` row from the start: key creations wait, and afterwards find
    another master key and insert nothing (a process still holding ``old`` fails with a clear
    error). An erasure may run meanwhile: a key it destroys is not re-wrapped. Every wrapped key
    is opened under ``old`` first, so a changed or moved one stops the rotation before anything
    is written. Run again after it was done, it finds the store under ``new`` and does nothing.
    """
    if old.key_id == new.key_id:
        raise MasterKeyError("the new master key is the one in use: rotating needs another secret")
    if old.suite is not new.suite:
        raise MasterKeyError(f"a rotation keeps the store's crypto suite ({old.suite.name}), not {new.suite.name}")
    with psycopg.connect(database_url, row_factory=dict_row) as conn, conn.transaction():
        # A store where no key was ever made is claimed by the old key first, like a process would.
        conn.execute(
            SQL("INSERT INTO {} (key_id) VALUES (%s) ON CONFLICT (one) DO NOTHING").format(Identifier(MASTER_TABLE)),
            (old.key_id,),
        )
        current = conn.execute(SQL("SELECT key_id FROM {} FOR UPDATE").format(Identifier(MASTER_TABLE))).fetchone()
        counts = conn.execute(
            SQL("SELECT count(*) FILTER (WHERE wrapped IS NOT NULL) AS live, count(*) FILTER (WHERE wrapped IS NULL) "
                "AS destroyed, count(*) FILTER (WHERE wrapped IS NOT NULL AND master_key_id <> %s) AS other FROM {}")
            .format(Identifier(KEYS_TABLE)), (old.key_id,)).fetchone()  # fmt: skip
        if current["key_id"] == new.key_id:
            return Rotation(old.key_id, new.key_id, 0, counts["destroyed"], already=True)
        if current["key_id"] != old.key_id:
            raise old.mismatch(current["key_id"])
        if counts["other"]:
            raise MasterKeyError(
                f"{counts['other']} keys are wrapped by another master key than {old.key_id}: "
                "this store mixes master keys and cannot be rotated as a whole"
            )
        conn.execute(
            "CREATE TEMP TABLE guanai_rewrapped (subject text PRIMARY KEY, wrapped bytea NOT NULL) ON COMMIT DROP"
        )
        insert = SQL("INSERT INTO guanai_rewrapped SELECT * FROM unnest(%s::text[], %s::bytea[])")
        total, done, started = counts["live"], 0, time.monotonic()
        with conn.cursor("guanai_rotate", row_factory=dict_row) as rows, conn.cursor() as out:
            rows.itersize = batch
            rows.execute(
                SQL("SELECT subject, wrapped FROM {} WHERE wrapped IS NOT NULL").format(Identifier(KEYS_TABLE))
            )
            while chunk := rows.fetchmany(batch):
                subjects = [r["subject"] for r in chunk]
                rewrapped = [new.wrap(r["subject"], old.unwrap(r["subject"], bytes(r["wrapped"]), old.key_id))
                             for r in chunk]  # fmt: skip
                out.execute(insert, (subjects, rewrapped))
                done += len(chunk)
                failpoint("keys.after_batch")
                if progress is not None:
                    rate = done / max(time.monotonic() - started, 1e-9)
                    progress(RotationProgress(done, total, rate, (total - done) / rate if rate else None))
        # Lock the live rows before writing them, in the order an erasure takes them (a person's
        # own row, then the rows the person owns): an erasure running now waits for this
        # transaction or this one for the erasure, never each for the other.
        conn.execute(
            SQL("SELECT count(*) FROM (SELECT 1 FROM {} WHERE wrapped IS NOT NULL ORDER BY coalesce(owner, subject), "
                "subject <> coalesce(owner, subject), subject FOR NO KEY UPDATE) AS locked").format(
                Identifier(KEYS_TABLE))
        )  # fmt: skip
        rewrapped_rows = conn.execute(
            SQL("UPDATE {} k SET wrapped = r.wrapped, master_key_id = %s FROM guanai_rewrapped r "
                "WHERE k.subject = r.subject AND k.wrapped IS NOT NULL").format(Identifier(KEYS_TABLE)),
            (new.key_id,),
        ).rowcount  # fmt: skip
        left = conn.execute(
            SQL("SELECT count(*) AS n FROM {} WHERE wrapped IS NOT NULL AND master_key_id <> %s").format(
                Identifier(KEYS_TABLE)), (new.key_id,)).fetchone()["n"]  # fmt: skip
        if left:
            raise MasterKeyError(f"{left} keys were still under the old master key at the end: nothing was changed")
        conn.execute(
            SQL("UPDATE {} SET key_id = %s, since = now(), rotated_by = %s").format(Identifier(MASTER_TABLE)),
            (new.key_id, by),
        )
        if before_commit is not None:
            before_commit()
        failpoint("keys.before_commit")
    # Live keys not re-wrapped were destroyed by an erasure meanwhile.
    destroyed = counts["destroyed"] + counts["live"] - rewrapped_rows
    structlog.get_logger("guanai.keys").warning(
        "master_key_rotated", old_key_id=old.key_id, new_key_id=new.key_id, rewrapped=rewrapped_rows, by=by
    )
    return Rotation(old.key_id, new.key_id, rewrapped_rows, destroyed)


def write_secret_file(path: Path, secret: str) -> None:
    """``secret`` into ``path`` (mode 0600), flushed to disk with its directory entry before it
    is used: a rotation must never commit under a key that a crash could lose."""
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secret.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def store_master_key_id(database_url: str) -> str | None:
    """The id of the master key the store's keys are wrapped by (None: no key was ever made)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(SQL("SELECT key_id FROM {}").format(Identifier(MASTER_TABLE))).fetchone()
    return None if row is None else row[0]


@dataclass(frozen=True)
class StoreKeyStatus:
    key_id: str | None  # the master key the store's keys are wrapped by; None: no key was ever made
    since: datetime | None
    rotated_by: str | None
    live: int
    destroyed: int  # by erasure


def store_key_status(database_url: str) -> StoreKeyStatus:
    """The store's master key and how many data keys are live or destroyed (``guanai keys status``)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(SQL("SELECT key_id, since, rotated_by FROM {}").format(Identifier(MASTER_TABLE))).fetchone()
        counts = conn.execute(
            SQL(
                "SELECT count(*) FILTER (WHERE wrapped IS NOT NULL), count(*) FILTER (WHERE wrapped IS NULL) FROM {}"
            ).format(Identifier(KEYS_TABLE))
        ).fetchone()
    live, destroyed = counts if counts else (0, 0)
    if row is None:
        return StoreKeyStatus(None, None, None, live, destroyed)
    return StoreKeyStatus(row[0], row[1], row[2], live, destroyed)


def rotate_to_configured_key(
    database_url: str,
    held: MasterKey,
    *,
    by: str,
    progress: Callable[[RotationProgress], None] | None = None,
) -> Rotation:
    """Rotate from the key of GUANAI_PREVIOUS_MASTER_KEYS the store is under to
    GUANAI_MASTER_KEY (``held`` with its previous keys). Under GUANAI_MASTER_KEY already: done
    when previous keys are given (a second run), refused with what to do when none are."""
    store_id = store_master_key_id(database_url)
    if store_id is None or (store_id == held.key_id and held.previous):
        return Rotation(store_id or held.key_id, held.key_id, 0, 0, already=True)
    if store_id == held.key_id:
        raise MasterKeyError(
            f"the store is under GUANAI_MASTER_KEY ({held.key_id}). To rotate: move it to "
            "GUANAI_PREVIOUS_MASTER_KEYS and set a new GUANAI_MASTER_KEY on every process (they keep "
            "working), then run this again; remove GUANAI_PREVIOUS_MASTER_KEYS after."
        )
    old = held.held(store_id)
    if old is None:
        raise held.mismatch(store_id)
    return rotate_master_key(database_url, old, held, by=by, progress=progress)


def rotate_data_dir_master_key(
    database_url: str,
    data_dir: Path,
    *,
    by: str,
    progress: Callable[[RotationProgress], None] | None = None,
    before_commit: Callable[[], None] | None = None,
    suite: Suite = INTERNATIONAL,
) -> tuple[Rotation, Path]:
    """Rotate the master key kept in the data directory (no GUANAI_MASTER_KEY): the new one is
    written to ``master-key.next`` and flushed before the store is re-wrapped; once that has
    committed, the old key is kept as ``master-key.retired-<id>`` (backups made before need it)
    and ``master-key.next`` becomes ``master-key``. Interrupted between the two, running it again
    finishes the renames. One rotation at a time per data directory (a lock file): two at once
    could otherwise commit under one new key and keep the other. Returns the rotation and the
    retired key's file."""
    import fcntl

    current_file, next_file = data_dir / MASTER_KEY_FILE, data_dir / NEXT_MASTER_KEY_FILE
    if not current_file.exists():
        raise MasterKeyError(f"no master key in {data_dir} and no GUANAI_MASTER_KEY: there is nothing to rotate")
    with (data_dir / f"{MASTER_KEY_FILE}.lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MasterKeyError(f"another rotation of {current_file} is running; wait for it") from None
        # What a killed rotation left half-written (complete files have no leading dot).
        for leftover in [*data_dir.glob(f".{NEXT_MASTER_KEY_FILE}.*"), *data_dir.glob(f".{MASTER_KEY_FILE}.retired-*")]:
            leftover.unlink()
        old_secret = current_file.read_text().strip()
        old = MasterKey(old_secret, suite=suite)
        pending = next_file.read_text().strip() if next_file.exists() else None
        if pending is not None and store_master_key_id(database_url) == MasterKey(pending, suite=suite).key_id:
            rotation = Rotation(old.key_id, MasterKey(pending, suite=suite).key_id, 0, 0, already=True)
        else:
            secret = pending or secrets.token_urlsafe(48)
            write_secret_file(next_file, secret)
            rotation = rotate_master_key(
                database_url, old, MasterKey(secret, suite=suite), by=by, progress=progress, before_commit=before_commit
            )
        failpoint("keys.after_commit")
        if MasterKey(next_file.read_text().strip(), suite=suite).key_id != rotation.new_key_id:
            raise MasterKeyError(f"{next_file} is not the key the store was rotated to; nothing was renamed")
        retired = data_dir / f"{MASTER_KEY_FILE}.retired-{old.key_id}"
        if not retired.exists():
            write_secret_file(retired, old_secret)
        os.replace(next_file, current_file)
        _fsync_dir(data_dir)
    return rotation, retired
