"""What a command answers: a leaf module, so that command groups, workers and the API import it
without importing CareApplication."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID


@dataclass(frozen=True)
class CommandResult:
    id: UUID
    version: int
    position: int | None  # notification id of the last event written; None when nothing was written
    created: bool = False
    # The aggregate the command decided on, as loading it now would give it (the API answers
    # with it instead of reading it back); None for a create repeated.
    aggregate: Any = field(default=None, compare=False, repr=False)
