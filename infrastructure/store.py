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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, InfrastructureFactory, Mapper, StoredEvent, Transcoder
from eventsourcing.postgres import PostgresFactory
from psycopg import sql

from application.ports import EventStore
from infrastructure import chain, personal_data
from infrastructure.access_log import access_log_ddl
from infrastructure.chain import ChainKey
from infrastructure.personal_data import MasterKey
from infrastructure.settings import Settings
from infrastructure.suites import SigningKey, Suite, signing_key, suite


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

    def _mapper(self, transcoder: Transcoder) -> Mapper[UUID]:
        return personal_data.SealingMapper(transcoder, self.key_store, seal=self.seal, opens=self.opens)

    def is_erased(self, subject: str) -> bool:
        return self.key_store.is_destroyed(subject)


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
            factory.datastore, lambda: self.keys.master_key(self.recorder.crypto_suite),
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
            extra_ddl=[*access_log_ddl(schema), *personal_data.keys_ddl(schema)],
            insert_hooks=[self.key_store.erasure_hook],
            suite_name=self.keys.crypto_suite,
            tree=self.tree,
        )
        assert isinstance(recorder, chain.ChainedRecorder)
        self.recorder = recorder
        return recorder

    def first_events(self, ids: Sequence[UUID]) -> list[StoredEvent]:
        table = sql.Identifier(self.recorder.datastore.schema, self.recorder.events_table_name)
        query = sql.SQL(
            "SELECT originator_id, originator_version, topic, state FROM {} WHERE originator_id = ANY(%s)"
            " AND originator_version = 1"
        ).format(table)
        with self.recorder.datastore.get_connection() as conn, conn.cursor() as cur:
            rows = cur.execute(query, (list(ids),)).fetchall()
        return [StoredEvent(r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"])) for r in rows]

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

    def erased(self, person_id: str) -> None:
        self.key_store.forget([person_id])  # the erasure's insert destroyed the keys

    def check(self) -> None:
        self.key_store.check_master_key()


class InMemoryEventStore(_SealingStore):
    """The library's in-memory (POPO) recorder and keys in memory: for unit tests. No audit
    chain (it guards rows in a database); an erasure destroys the keys when it is saved."""

    key_store: personal_data.InMemoryKeyStore

    def construct_mapper(self, factory: InfrastructureFactory[Any], transcoder: Transcoder) -> Mapper[UUID]:
        self.key_store = personal_data.InMemoryKeyStore(lambda: self.keys.master_key(suite(self.keys.crypto_suite or "international")))
        return self._mapper(transcoder)

    def construct_recorder(self, factory: InfrastructureFactory[Any]) -> ApplicationRecorder:
        self.recorder = factory.application_recorder()
        return self.recorder

    def erased(self, person_id: str) -> None:
        self.key_store.destroy(person_id)
