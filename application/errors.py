"""The command side's own errors (beyond the domain's): what a command refuses before or after
the domain decides. A leaf module: command groups and edges import it without importing
CareApplication."""

from __future__ import annotations

import re
from typing import Any

from eventsourcing.domain import Aggregate

from domain.base import DomainError
from domain.group import VolunteerGroup

KIND_NAMES: dict[type[Aggregate], str] = {VolunteerGroup: "group"}


def kind_name(cls: type[Any]) -> str:
    """'visit task' for VisitTask: how errors name a kind of thing."""
    return KIND_NAMES.get(cls) or re.sub(r"(?<!^)(?=[A-Z])", " ", cls.__name__).lower()


class NotFoundError(DomainError):
    """The thing named in the path does not exist (or did not exist at the asked time)."""


class UnknownReferenceError(DomainError):
    """A field of the request names something that does not exist."""


class VersionConflictError(DomainError):
    """The aggregate changed since the version the client based its command on."""


class AlreadyExistsError(DomainError):
    """A different thing was already created under this id (or code)."""


class InvalidTimeError(DomainError):
    """occurred_at lies too far in the future or the past."""
