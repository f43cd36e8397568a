"""The event store adapters behind ``application.ports.EventStore``, and the library settings
for a PostgreSQL URL.

- ``PostgresEventStore``: the library's PostgreSQL recorder with the audit chain
  (``infrastructure.chain``) and the access log's table, the sealing mapper with keys in the
  database (``infrastructure.personal_data``), and the two reads the library has no method for.
- ``InMemoryEventStore``: the library's in-memory (POPO) recorder, the same sealing mapper with
  keys in memory: the whole application without servers, for unit tests.

Keys come in explicitly (``StoreKeys``, made from typed settings by ``store_keys``): nothing here
reads the environment.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from uuid import UUID

import msgspec
from eventsourcing.persistence import (
    ApplicationRecorder,
    InfrastructureFactory,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    Transcoder,
)
from eventsourcing.postgres import PostgresFactory
from psycopg import sql

from application.ports import EventStore
from infrastructure import chain, erasure_log, personal_data
from infrastructure.access_log import access_log_ddl
from infrastructure.chain import ChainKey
from infrastructure.lookup_hash import LOOKUP_TABLE, keyed_hash, load_lookup_key, lookup_ddl, set_lookup_key
from infrastructure.personal_data import MasterKey
from infrastructure.settings import Settings
from infrastructure.suites import SigningKey, Suite, signing_key, suite
from infrastructure.transcoding import EventTranscoder


@dataclass(frozen=True)
class StoreKeys:
    """The secrets a store needs, each loaded on first use (a process that never seals or
    chains never creates a key file)."""

    master_key: Callable[[Suite], MasterKey]  # under the store's crypto suite
    chain_key: Callable[[], ChainKey]
    audit_chain: bool = True
    key_cache_seconds: float = 2.0
    crypto_suite: str | None = None  # GUANAI_CRYPTO_SUITE: recorded when a store is created
    signing_key: Callable[[Suite], SigningKey] | None = None  # signs the Merkle tree's checkpoints
    lookup_key: Callable[[], bytes] | None = None  # the keyed hashes of sealed numbers (imports)
    erasure_log: Path | None = None  # where erasures are logged for restores (None: not logged)


def store_keys(settings: Settings) -> StoreKeys:
    """The keys of GUANAI_MASTER_KEY / GUANAI_PREVIOUS_MASTER_KEYS / GUANAI_CHAIN_KEY, or the ones
    generated once into GUANAI_DATA_DIR; GUANAI_AUDIT_CHAIN and GUANAI_KEY_CACHE_SECONDS."""
    return StoreKeys(
        master_key=lambda suite: personal_data.load_or_create_master_key(
            settings.master_key, settings.data_path, settings.previous_master_keys, suite
        ),
        chain_key=lambda: chain.load_or_create_key(settings.chain_key, settings.data_path),
        audit_chain=settings.audit_chain,
        key_cache_seconds=settings.key_cache_seconds,
        crypto_suite=settings.crypto_suite,
        signing_key=lambda suite: signing_key(settings.signing_key, settings.data_path, suite),
        lookup_key=lambda: load_lookup_key(settings.lookup_key, settings.data_path),
        erasure_log=Path(settings.erasure_log).expanduser().resolve()
        if settings.erasure_log
        else erasure_log.default_path(settings.data_path),
    )


def event_store_env(database_url: str, *, pool_size: int = 10) -> dict[str, str]:
    """The eventsourcing library's PostgreSQL settings for a database URL."""
    url = urlsplit(database_url)
    if url.scheme not in {"postgresql", "postgres"}:
        msg = f"not a PostgreSQL URL: scheme {url.scheme!r}"
        raise ValueError(msg)
    query = dict(p.split("=", 1) for p in url.query.split("&") if "=" in p)
    host = query.get("host") or url.hostname or "127.0.0.1"
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": unquote(url.path.lstrip("/")) or "postgres",
        "POSTGRES_HOST": unquote(host),
        "POSTGRES_PORT": str(url.port or query.get("port") or 5432),
        "POSTGRES_USER": unquote(url.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(url.password or ""),
        "POSTGRES_SCHEMA": "public",
        # The pool keeps two connections open and grows on demand to pool_size (idle extra ones
        # close after ten minutes): several processes and workers share max_connections.
        "POSTGRES_POOL_SIZE": str(min(2, pool_size)),
        "POSTGRES_MAX_OVERFLOW": str(max(0, pool_size - 2)),
        "POSTGRES_CONNECT_TIMEOUT": "10",
        # No ping before each checkout (a round trip per command, ~15% of its CPU): the library
        # retries reads and inserts on a broken connection, and a command that still fails on
        # one answers 503 store-unavailable with nothing written.
        "POSTGRES_PRE_PING": "n",
    }


def memory_store_env() -> dict[str, str]:
    """The eventsourcing library's settings for its in-memory (POPO) store."""
    return {"PERSISTENCE_MODULE": "eventsourcing.popo"}


class _SealingStore(EventStore):
    """Personal fields sealed per data subject on the way into the store; ``seal`` false only to
    measure what sealing costs (bench/protections.py), ``opens`` false for processes that need
    no personal data (projector, relay): they never load the master key, read sealed fields as
    erased, and cannot record personal data."""

    key_store: personal_data.KeyStore

    def __init__(self, keys: StoreKeys, *, seal: bool = True, opens: bool = True, tree: bool = True) -> None:
        # tree false only to measure what keeping the Merkle tree costs (bench/proofs.py).
        self.keys, self.seal, self.opens, self.tree = keys, seal, opens, tree
        self._lookup_key: bytes | None = None
        self._pending = threading.local()  # this thread's lookup rows for its next save
        self._memory_lookups: dict[tuple[str, bytes], tuple[UUID, bytes | None]] = {}
        self._condition_texts: dict[tuple[str, bytes | None], tuple[str, str]] = {}  # first_event_condition
        self._events_of_query: bytes | None = None  # rendered once: psycopg converts a composed one at every execute

    def transcoder(self) -> JSONTranscoder:
        return EventTranscoder()  # the library's bytes, written and read in C (issue 19)

    def _mapper(self, transcoder: Transcoder) -> Mapper[UUID]:
        return personal_data.SealingMapper(transcoder, self.key_store, seal=self.seal, opens=self.opens)

    def is_erased(self, subject: str) -> bool:
        return self.key_store.is_destroyed(subject)

    def load_keys(self, subjects: Sequence[str]) -> None:
        if self.seal and self.opens and subjects:
            with suppress(personal_data.SealError):  # a subject without a key gets one when sealed
                self.key_store.keys_for_opening(subjects)

    # ---- lookups ---------------------------------------------------------------------------------

    def lookup_hash(self, kind: str, normalised: str) -> bytes:
        if self._lookup_key is None:
            if self.keys.lookup_key is None:
                raise RuntimeError("this store was built without a lookup key (StoreKeys.lookup_key)")
            self._lookup_key = self.keys.lookup_key()
            set_lookup_key(self._lookup_key)  # infrastructure.lookup_hash.lookup_hash: the same key
        return keyed_hash(self._lookup_key, kind, normalised)

    @contextmanager
    def recording_lookups(self, rows: Sequence[tuple[str, bytes, UUID, bytes | None]]) -> Iterator[None]:
        self._pending.rows = list(rows)
        try:
            yield
        finally:
            self._pending.rows = None

    def pending_lookups(self) -> list[tuple[str, bytes, UUID, bytes | None]] | None:
        rows: list[tuple[str, bytes, UUID, bytes | None]] | None = getattr(self._pending, "rows", None)
        return rows

    def find_lookups(self, kind: str, hashes: Sequence[bytes]) -> dict[bytes, tuple[UUID, bytes | None]]:
        return {h: self._memory_lookups[(kind, h)] for h in hashes if (kind, h) in self._memory_lookups}

    def rebuild_lookups(self, mapper: Mapper[UUID], kind: str) -> int:
        return 0  # the in-memory store has kept its lookups from its first event


class PostgresEventStore(_SealingStore):
    """The PostgreSQL event store: every insert extends the audit chain, and an erasure's insert
    destroys the person's keys, in the insert's own transaction."""

    recorder: chain.ChainedRecorder
    key_store: personal_data.PostgresKeyStore

    def construct_mapper(self, factory: InfrastructureFactory[Any], transcoder: Transcoder) -> Mapper[UUID]:
        if not isinstance(factory, PostgresFactory):
            raise TypeError(f"PostgresEventStore needs the library's PostgreSQL factory, not {type(factory).__name__}")
        # The master key is loaded on first use, after the recorder has read the store's suite.
        self.key_store = personal_data.PostgresKeyStore(
            factory.datastore,
            lambda: self.keys.master_key(self.recorder.crypto_suite),
            refresh_seconds=self.keys.key_cache_seconds,
        )
        return self._mapper(transcoder)

    def construct_recorder(self, factory: InfrastructureFactory[Any]) -> ApplicationRecorder:
        assert isinstance(factory, PostgresFactory)
        schema = factory.datastore.schema
        recorder = chain.construct_recorder(
            factory,
            key_loader=self.keys.chain_key,
            enabled=self.keys.audit_chain,
            # The access log and the keys are created with the store.
            extra_ddl=[*access_log_ddl(schema), *personal_data.keys_ddl(schema), *lookup_ddl(schema)],
            insert_hooks=[self.key_store.erasure_hook, self._erasure_log_hook, self._lookup_hook, self._key_hook],
            suite_name=self.keys.crypto_suite,
            tree=self.tree,
        )
        self._lookups = sql.Identifier(schema, LOOKUP_TABLE)
        assert isinstance(recorder, chain.ChainedRecorder)
        # A save carries its thread's lookup rows and the new keys its events were sealed with to
        # whichever thread writes it (group commit).
        recorder.context_of = self._save_context
        recorder.after_save = self._after_save
        recorder.after_failure = self._after_failure
        recorder.retry_save = self._retry_save
        recorder.predictable = lambda event: event.topic != personal_data.ERASED_TOPIC
        self.recorder = recorder
        return recorder

    @property
    def _id_type(self) -> sql.Identifier:
        """The events' id type, to which lists of ids sent in binary (``%b``) are cast: in text,
        psycopg escapes every element of a list (about 0.6 ms of CPU for 500 UUIDs, and a batch
        of 500 visit logs sends several such lists), in binary it copies their bytes."""
        return sql.Identifier(self.recorder.datastore.originator_id_type)

    def first_events(self, ids: Sequence[UUID]) -> list[StoredEvent]:
        table = sql.Identifier(self.recorder.datastore.schema, self.recorder.events_table_name)
        query = sql.SQL(
            "SELECT originator_id, originator_version, topic, state FROM {} WHERE originator_id = ANY(%b::{}[])"
            " AND originator_version = 1"
        ).format(table, self._id_type)
        with self.recorder.datastore.get_connection() as conn, conn.cursor() as cur:
            rows = cur.execute(query, (list(ids),)).fetchall()
        return [StoredEvent(r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"])) for r in rows]

    def first_event_condition(self, originator_id: UUID, topic: str, contains: bytes | None = None) -> Any:
        # Composed once per topic and ``contains`` (the same few on every read), the id put in as
        # text: composing and rendering the condition per read took a twentieth of a timeline
        # read's instructions. A UUID's text is hex digits and hyphens only, safe in quotes.
        head, tail = self._first_event_texts(topic, contains)
        return sql.SQL(f"{head}'{originator_id if type(originator_id) is UUID else UUID(str(originator_id))}'{tail}")

    def _first_event_texts(self, topic: str, contains: bytes | None) -> tuple[str, str]:
        """The condition of ``first_event_condition`` as the SQL text before and after its id."""
        key = (topic, contains)
        texts = self._condition_texts.get(key)
        if texts is not None:
            return texts
        table = sql.Identifier(self.recorder.datastore.schema, self.recorder.events_table_name)
        # The id and topic as untyped literals, taken as the columns' types (uuid or text ids).
        condition = sql.SQL("originator_id = {} AND originator_version = 1 AND topic = {}").format(
            sql.Placeholder("id"), sql.Literal(topic)
        )
        if contains is not None:
            # Parsed as json (which takes any string the transcoder writes, a NUL escape too),
            # then only the named fields as jsonb, for containment.
            fields = msgspec.json.decode(contains)
            if not isinstance(fields, dict) or not fields:
                raise ValueError("contains must be a JSON object with at least one field")
            for name, value in fields.items():
                condition += sql.SQL(" AND (convert_from(state, 'UTF8')::json -> {})::jsonb @> {}::jsonb").format(
                    sql.Literal(name), sql.Literal(msgspec.json.encode(value).decode())
                )
        text = sql.SQL("EXISTS (SELECT 1 FROM {} WHERE {})").format(table, condition).as_string(None)
        head, placeholder, tail = text.partition("%(id)s")
        assert placeholder and "%(id)s" not in tail, text
        if len(self._condition_texts) >= 256:  # a few topics and units; bounded all the same
            self._condition_texts.clear()
        self._condition_texts[key] = (head, tail)
        return head, tail

    def last_position(self, events: Sequence[tuple[UUID, int]]) -> int | None:
        if not events:
            return None
        table = sql.Identifier(self.recorder.datastore.schema, self.recorder.events_table_name)
        clause = sql.SQL(" OR ").join(sql.SQL("(originator_id = %s AND originator_version = %s)") for _ in events)
        query = sql.SQL("SELECT max(notification_id) FROM {} WHERE ").format(table) + clause
        with self.recorder.datastore.get_connection() as conn, conn.cursor() as cur:
            cur.execute(query, [v for e in events for v in e])
            row = cur.fetchone()
        return row["max"] if row else None

    def positions(self, events: Sequence[tuple[UUID, int]]) -> dict[tuple[UUID, int], int]:
        if not events:
            return {}
        table = sql.Identifier(self.recorder.datastore.schema, self.recorder.events_table_name)
        query = sql.SQL(
            "SELECT originator_id, originator_version, notification_id FROM {} WHERE (originator_id,"
            " originator_version) IN (SELECT * FROM unnest(%b::{}[], %b::bigint[]))"
        ).format(table, self._id_type)
        with self.recorder.datastore.get_connection() as conn, conn.cursor() as cur:
            rows = cur.execute(query, ([e[0] for e in events], [e[1] for e in events])).fetchall()
        return {(r["originator_id"], r["originator_version"]): r["notification_id"] for r in rows}

    def erased(self, person_id: str) -> None:
        self.key_store.forget([person_id])  # the erasure's insert destroyed the keys

    def events_of(self, ids: Sequence[UUID]) -> list[StoredEvent]:
        if not ids:
            return []
        with self.recorder.datastore.get_connection() as conn, conn.cursor() as cur:
            # Every write's access check reads here (``CareApplication.load_many``).
            query = self._events_of_query
            if query is None:
                table = sql.Identifier(self.recorder.datastore.schema, self.recorder.events_table_name)
                query = self._events_of_query = (
                    sql.SQL(
                        "SELECT originator_id, originator_version, topic, state FROM {}"
                        " WHERE originator_id = ANY(%b::{}[]) ORDER BY originator_id, originator_version"
                    )
                    .format(table, self._id_type)
                    .as_bytes(cur)
                )
            rows = cur.execute(query, (list(ids),)).fetchall()
        return [StoredEvent(r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"])) for r in rows]

    def started_without(self, ids: Sequence[UUID], first_topic: str, without_topic: str) -> set[UUID]:
        if not ids:
            return set()
        table = sql.Identifier(self.recorder.datastore.schema, self.recorder.events_table_name)
        query = sql.SQL(
            "SELECT originator_id FROM {} WHERE originator_id = ANY(%b::{}[]) GROUP BY originator_id"
            " HAVING bool_or(originator_version = 1 AND topic = %s) AND NOT bool_or(topic = %s)"
        ).format(table, self._id_type)
        with self.recorder.datastore.get_connection() as conn, conn.cursor() as cur:
            rows = cur.execute(query, (list(ids), first_topic, without_topic)).fetchall()
        return {r["originator_id"] for r in rows}

    def prepare_keys(self, subjects: Sequence[str]) -> None:
        if self.seal and self.opens:
            self.key_store.prepare_keys(subjects)

    def _erasure_log_hook(self, cur: Any, written: Sequence[tuple[int, StoredEvent]]) -> None:
        """In an erasure's transaction, before it commits: a line in the erasure log, so that a
        restore of an earlier backup erases the person again (infrastructure/erasure_log.py)."""
        if self.keys.erasure_log is None:
            return
        entries = []
        for position, event in written:
            if event.topic != personal_data.ERASED_TOPIC:
                continue
            state = json.loads(event.state)
            occurred = state.get("occurred_at")
            if isinstance(occurred, dict):  # the library's transcoding of a datetime
                occurred = occurred.get("_data_")
            entries.append(
                erasure_log.Erasure(
                    store=self.recorder.origin,
                    person=str(event.originator_id),
                    position=position,
                    at=erasure_log.now(),
                    by=state.get("actor_id"),
                    role=state.get("actor_role"),
                    reason=state.get("reason"),
                    occurred_at=occurred if isinstance(occurred, str) else None,
                )
            )
        erasure_log.ErasureLog(self.keys.erasure_log).append(entries)

    def _lookup_hook(self, cur: Any, written: Sequence[tuple[int, StoredEvent]]) -> None:
        """In every insert's transaction: the pending lookup rows of the saves being written (each
        taken in its own thread's ``recording_lookups`` block); an erasure deletes its person's rows
        (they can no longer be found by their numbers)."""
        rows = [row for context in self.recorder.hook_contexts() if context[0] for row in context[0]]
        if rows:
            cur.executemany(
                sql.SQL(
                    "INSERT INTO {t} (kind, hash, subject_id, digest) VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT (kind, hash) DO UPDATE SET digest = EXCLUDED.digest"
                    " WHERE {t}.subject_id = EXCLUDED.subject_id"
                ).format(t=self._lookups),
                rows,
            )
        erased = [e.originator_id for _, e in written if e.topic == personal_data.ERASED_TOPIC]
        if erased:
            cur.execute(sql.SQL("DELETE FROM {} WHERE subject_id = ANY(%s)").format(self._lookups), (erased,))

    # ---- new data keys, written with the save that first uses them -------------------------------

    def _save_context(self) -> tuple[Any, Any]:
        return self.pending_lookups(), self.key_store.carried_keys()

    def _key_hook(self, cur: Any, written: Sequence[tuple[int, StoredEvent]]) -> None:
        """In every insert's transaction, after the erasures: the new keys of the saves written
        (``PostgresKeyStore.key_hook``)."""
        carried = [row for context in self.recorder.hook_contexts() for row in context[1]]
        self.key_store.key_hook(cur, written, carried)

    def _after_save(self, context: tuple[Any, Any]) -> None:
        if context[1]:
            self.key_store.confirmed(context[1])

    def _after_failure(self, context: tuple[Any, Any]) -> None:
        """Keys made for a save that failed are let go: a repeated create (its id taken) made one
        for a subject that has a stored key already, which must not be cached in its place."""
        if context[1]:
            self.key_store.abandon(context[1])

    def _retry_save(self, context: tuple[Any, Any], error: Exception) -> bool:
        """A rotation held the master key row: the keys are stored on their own, waiting for it
        as a key's own transaction did, and the save tried once more."""
        if isinstance(error, personal_data.KeysBusy) and context[1]:
            self.key_store.store_carried(context[1])
            context[1].clear()  # stored now (perhaps wrapped anew after a rotation): not carried again
            return True
        return False

    def find_lookups(self, kind: str, hashes: Sequence[bytes]) -> dict[bytes, tuple[UUID, bytes | None]]:
        if not hashes:
            return {}
        query = sql.SQL("SELECT hash, subject_id, digest FROM {} WHERE kind = %s AND hash = ANY(%s)").format(
            self._lookups
        )
        with self.recorder.datastore.get_connection() as conn, conn.cursor() as cur:
            rows = cur.execute(query, (kind, list(hashes))).fetchall()
        return {bytes(r["hash"]): (r["subject_id"], bytes(r["digest"]) if r["digest"] else None) for r in rows}

    def rebuild_lookups(self, mapper: Mapper[UUID], kind: str, batch: int = 2000) -> int:
        table = sql.Identifier(self.recorder.datastore.schema, self.recorder.events_table_name)
        query = sql.SQL(
            "SELECT originator_id, originator_version, topic, state FROM {} WHERE originator_version = 1"
            " AND topic = %s AND originator_id > %s ORDER BY originator_id LIMIT %s"
        ).format(table)
        insert = sql.SQL(
            "INSERT INTO {} (kind, hash, subject_id) VALUES (%s, %s, %s) ON CONFLICT (kind, hash) DO NOTHING"
        ).format(self._lookups)
        after, written = UUID(int=0), 0
        while True:
            with self.recorder.datastore.get_connection() as conn, conn.cursor() as cur:
                rows = cur.execute(query, (personal_data.REGISTERED_TOPIC, after, batch)).fetchall()
            if not rows:
                return written
            after = rows[-1]["originator_id"]
            stored = [StoredEvent(r["originator_id"], 1, r["topic"], bytes(r["state"])) for r in rows]
            found = [
                (kind, self.lookup_hash(kind, e.id_number), e.originator_id)
                for e in mapper.to_domain_events(stored)  # type: ignore[attr-defined]
                if getattr(e, "id_number", None) and not self.is_erased(str(e.originator_id))
            ]
            with self.recorder.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as cur:
                cur.executemany(insert, found)
                written += max(cur.rowcount, 0)

    def check(self) -> None:
        self.key_store.check_master_key()


class InMemoryEventStore(_SealingStore):
    """The library's in-memory (POPO) recorder and keys in memory: for unit tests. No audit
    chain (it guards rows in a database); an erasure destroys the keys when it is saved."""

    key_store: personal_data.InMemoryKeyStore

    def construct_mapper(self, factory: InfrastructureFactory[Any], transcoder: Transcoder) -> Mapper[UUID]:
        self.key_store = personal_data.InMemoryKeyStore(
            lambda: self.keys.master_key(suite(self.keys.crypto_suite or "international"))
        )
        return self._mapper(transcoder)

    def construct_recorder(self, factory: InfrastructureFactory[Any]) -> ApplicationRecorder:
        self.recorder = factory.application_recorder()
        return self.recorder

    def erased(self, person_id: str) -> None:
        self.key_store.destroy(person_id)
        gone = UUID(person_id)
        self._memory_lookups = {k: v for k, v in self._memory_lookups.items() if v[0] != gone}

    @contextmanager
    def recording_lookups(self, rows: Sequence[tuple[str, bytes, UUID, bytes | None]]) -> Iterator[None]:
        # No transaction to join: the rows count once the block's saves went through.
        with super().recording_lookups(rows):
            yield
        for kind, h, subject, digest in rows:
            self._memory_lookups.setdefault((kind, h), (subject, digest))
