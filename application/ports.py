"""The event store port: what CareApplication needs from its store beyond the eventsourcing
library's recorder (as in the library's searchable-timestamps example: an abstract recorder
here, the PostgreSQL implementation in ``infrastructure/store.py``).

The composition root (``guanai/bootstrap.py``) hands a store in, with its keys: the application
reads no settings and no environment of its own. ``infrastructure.store`` has two: the
PostgreSQL store (audit chain, sealed personal data, keys in the database) and an in-memory one
over the library's POPO recorder, for unit tests without servers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    ApplicationRecorder,
    InfrastructureFactory,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    Transcoder,
)


class EventStore(ABC):
    """Builds the application's mapper and recorder, and answers the few reads the library's
    recorder has no method for. ``construct_*`` are called once, by the application's
    constructor, mapper first; the other methods after that."""

    recorder: ApplicationRecorder

    def transcoder(self) -> JSONTranscoder:
        """The transcoder of event states (the application registers its types on it): the
        library's JSON, or one that writes the same bytes faster."""
        return JSONTranscoder()

    @abstractmethod
    def construct_mapper(self, factory: InfrastructureFactory[Any], transcoder: Transcoder) -> Mapper[UUID]:
        """The mapper between domain events and stored events (personal fields sealed)."""

    @abstractmethod
    def construct_recorder(self, factory: InfrastructureFactory[Any]) -> ApplicationRecorder:
        """The application recorder (every insert covered by the audit chain, where there is one)."""

    def first_events(self, ids: Sequence[UUID]) -> list[StoredEvent]:
        """The first stored event (the creation) of each of these aggregates that exists."""
        return [e for i in ids for e in self.recorder.select_events(i, lte=1)]

    def last_position(self, events: Sequence[tuple[UUID, int]]) -> int | None:
        """The highest log position among these (aggregate id, version) events; None if none is stored."""
        wanted = set(events)
        positions = [
            n.id
            for n in self.recorder.select_notifications(start=None, limit=2**62)
            if (n.originator_id, n.originator_version) in wanted
        ]
        return max(positions, default=None)

    def positions(self, events: Sequence[tuple[UUID, int]]) -> dict[tuple[UUID, int], int]:
        """The log position of each of these (aggregate id, version) events that is stored."""
        wanted = set(events)
        found: dict[tuple[UUID, int], int] = {}
        for n in self.recorder.select_notifications(start=None, limit=2**62):
            key = (UUID(str(n.originator_id)), n.originator_version)
            if key in wanted:
                found[key] = n.id
        return found

    @abstractmethod
    def is_erased(self, subject: str) -> bool:
        """Whether the personal data sealed for a subject (a person, an emergency report) was erased."""

    @abstractmethod
    def erased(self, person_id: str) -> None:
        """A person's erasure was committed: what this process holds of their keys goes."""

    def events_of(self, ids: Sequence[UUID]) -> list[StoredEvent]:
        """Every stored event of these aggregates, each aggregate's in version order."""
        return [e for i in ids for e in self.recorder.select_events(i)]

    def started_without(self, ids: Sequence[UUID], first_topic: str, without_topic: str) -> set[UUID]:
        """The ids among these whose stream begins with an event of ``first_topic`` and holds no
        event of ``without_topic``: read from the events' topics alone, nothing decoded or opened
        (persons registered and not erased, for instance)."""
        found: set[UUID] = set()
        for i in dict.fromkeys(ids):
            topics = [e.topic for e in self.recorder.select_events(i)]
            if topics and topics[0] == first_topic and without_topic not in topics:
                found.add(i)
        return found

    def first_event_condition(self, originator_id: UUID, topic: str, contains: bytes | None = None) -> Any:
        """An SQL condition (a ``psycopg.sql.Composable``), for a statement on this store's
        database, that holds while the stream's first event is of ``topic`` and, when
        ``contains`` is given (a JSON object, as the transcoder writes one), its state holds
        that object (a list in it holds each of the given list's elements): nothing decoded or
        opened. A read puts it in its own statement instead of reading the event first (a
        timeline's access check). None: this store has no SQL; the caller reads the event."""
        return None

    # Lookups: keyed hashes of sealed numbers (an ID number, a phone) -> the subject they belong
    # to, and the digest of the registry row last imported for them (imports find people by them).

    @abstractmethod
    def lookup_hash(self, kind: str, normalised: str) -> bytes:
        """The keyed hash of a normalised number of a kind ("id_number", "phone")."""

    @abstractmethod
    def find_lookups(self, kind: str, hashes: Sequence[bytes]) -> dict[bytes, tuple[UUID, bytes | None]]:
        """hash -> (subject id, digest) for the hashes known."""

    @abstractmethod
    @contextmanager
    def recording_lookups(self, rows: Sequence[tuple[str, bytes, UUID, bytes | None]]) -> Iterator[None]:
        """Saves of this thread inside the block also write these (kind, hash, subject, digest) rows,
        in the same transaction; an erasure's save deletes its person's rows."""

    @abstractmethod
    def pending_lookups(self) -> list[tuple[str, bytes, UUID, bytes | None]] | None:
        """The rows this thread's ``recording_lookups`` block holds, if it is in one."""

    @abstractmethod
    def rebuild_lookups(self, mapper: Mapper[UUID], kind: str) -> int:
        """Add the ID-number rows missing for registered people (a store from before lookups)."""

    def prepare_keys(self, subjects: Sequence[str]) -> None:
        """Make the data keys of many new subjects at once (each its own owner); optional."""

    def load_keys(self, subjects: Sequence[str]) -> None:
        """Read the stored data keys of many subjects at once, before events about them are
        sealed (a backlog's visits of hundreds of people); optional: without it, each key is
        read when it is first used."""

    def check(self) -> None:  # a store without keys has nothing to check
        """Refuse to start with keys that cannot open this store (a wrong master key)."""
