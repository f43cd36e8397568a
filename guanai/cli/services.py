"""What every ``guanai`` command that touches the store shares: the servers (configured, or
embedded under the data directory) and the migration."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from guanai import bootstrap
from guanai.bootstrap import Process
from infrastructure.embedded import EmbeddedServices
from infrastructure.settings import Settings, redacted_url

# Left in the data directory while `guanai restore` runs (guanai/cli/backup.py): a restore that
# did not finish may hold the keys of people erased since the backup; nothing serves it.
RESTORE_MARKER = "restore-in-progress"


@contextmanager
def services(
    settings: Settings, *, need_nats: bool = True, restoring: bool = False
) -> Iterator[tuple[str, str | None]]:
    """(database_url, nats_url): the configured servers, or embedded ones under the data dir."""
    if not restoring and (settings.data_path / RESTORE_MARKER).exists():
        raise SystemExit(
            f"guanai: a restore into {settings.data_path} did not finish ({RESTORE_MARKER} is there): nothing may use "
            f"it; remove the directory (and empty the database) and run `guanai restore` again"
        )
    embedded = EmbeddedServices(
        settings.data_path, postgres=settings.embedded_database, nats=need_nats and settings.embedded_nats,
        nats_port=settings.nats_port,
    )  # fmt: skip
    if settings.embedded_database or (need_nats and settings.embedded_nats):
        print(f"guanai: embedded servers under {settings.data_path}", file=sys.stderr)
        embedded.start()
    try:
        database_url = settings.database_url or embedded.database_url
        nats_url = settings.nats_url if not settings.embedded_nats else (embedded.nats_url if need_nats else None)
        if nats_url is not None:
            # Devices and scripts subscribe to alerts here (README: Emergency reports).
            where = "embedded" if settings.embedded_nats else "configured"
            print(
                f"guanai: NATS on {redacted_url(nats_url)} ({where}; alerts on alerts.<county>.<township>)",
                file=sys.stderr,
            )
        yield database_url, nats_url
    finally:
        embedded.stop()


def migrate(settings: Settings, database_url: str) -> None:
    """Create the event store's tables and every view's tables (idempotent)."""
    # Creating the tables opens no personal data: no master key is needed here.
    bootstrap.care_application(settings, Process.PROJECTOR, database_url, pool_size=2).close()
    projector = bootstrap.projector(settings, database_url, pool_size=2)
    projector.open()
    projector.close()
