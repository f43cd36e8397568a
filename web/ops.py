"""What the operations pages (accounts, rosters, imports) work with besides the request, handed to
a handler as one ``ops: Ops`` parameter (an ``Operations``): the application, the registry and supervision views, the
access guard's decision for the request (whose actor is the reader), the accounts service, the
import jobs, and the command metadata of this request. Each part is the API's injected dependency
(api/dependencies.py); a controller adds ``OPS`` to its dependencies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from litestar.di import NamedDependency, Provide
from litestar.params import SkipValidation

from api.access import Access
from api.auth import Actor
from api.dependencies import Accounts, Care, Checked, Jobs, MetaFor, Registry, Supervision
from application.accounts import AccountService
from application.care import CareApplication
from domain.base import CommandMeta
from infrastructure.import_jobs import ImportJobs
from projections.registry import RegistryView
from projections.supervision_view import SupervisionView


@dataclass(frozen=True)
class Operations:
    care: CareApplication
    registry: RegistryView
    supervision: SupervisionView
    access: Access
    accounts: AccountService
    jobs: ImportJobs
    meta_for: Callable[[datetime | None], CommandMeta]

    @property
    def actor(self) -> Actor:
        return self.access.actor


def ops_of(
    care: Care,
    registry: Registry,
    supervision: Supervision,
    access: Checked,
    accounts: Accounts,
    jobs: Jobs,
    meta_for: MetaFor,
) -> Operations:
    return Operations(care, registry, supervision, access, accounts, jobs, meta_for)


# The parameter's type: named, so that Litestar injects it rather than reading a request parameter.
Ops = NamedDependency[SkipValidation[Operations]]
OPS = {"ops": Provide(ops_of, sync_to_thread=False)}
