"""What a command group (``application/visits.py``, ``application/emergencies.py``) uses of the
application it is part of, typed: loading, the command loop, the event store. CareApplication
(``application/care.py``) lists the groups among its bases and provides every method here."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import ApplicationRecorder

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
