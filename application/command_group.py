"""What a command group (``application/visits.py``, ``application/emergencies.py``) uses of the
application it is part of, typed: loading, the command loop, the event store. CareApplication
(``application/care.py``) lists the groups among its bases and provides every method here."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import ApplicationRecorder, Mapper

from application.ports import EventStore
from application.results import CommandResult

A = TypeVar("A", bound=Aggregate)
# A command's change to a loaded aggregate: the other aggregates it touched (None: none).
Change = Callable[[A], Iterable[Aggregate] | None]


class CommandGroup:
    """The application's side a command group builds on."""

    store: EventStore
    recorder: ApplicationRecorder
    events: Any  # the library's EventStore of domain events

    def load(self, cls: type[A], aggregate_id: UUID, *, field: str | None = None, version: int | None = None) -> A:
        raise NotImplementedError

    _unit_of_work: Any  # per thread: ``loaded``, the aggregates of the command attempt in progress
    # The library's Application.save; an annotation only: a method here would come before it.
    save: Callable[..., Any]
    mapper: Mapper[UUID]

    def _fresh_unit_of_work(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def load_many(self, cls: type[A], ids: Iterable[UUID]) -> dict[UUID, A]:
        raise NotImplementedError

    def _run(self, decide: Callable[[], tuple[Aggregate, Iterable[Aggregate]]]) -> CommandResult:
        raise NotImplementedError

    def _update(
        self, cls: type[A], aggregate_id: UUID, expected_version: int | None, change: Change[A]
    ) -> CommandResult:
        raise NotImplementedError

    def _create(
        self, cls: type[A], aggregate_id: UUID, build: Callable[[], tuple[A, Iterable[Aggregate]]]
    ) -> CommandResult:
        raise NotImplementedError
