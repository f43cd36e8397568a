"""Applications for tests, built the way the composition root builds them (guanai/bootstrap.py)."""

from __future__ import annotations

import os

from application.care import CareApplication
from guanai import bootstrap
from guanai.bootstrap import Process
from infrastructure.settings import load_settings


def make_care(
    database_url: str, *, pool_size: int | None = None, env: dict[str, str] | None = None, kind: Process = Process.CLI
) -> CareApplication:
    """The application over the PostgreSQL store at ``database_url``, with the settings of the
    environment and ``env`` (GUANAI_* names) over them, as a process of ``kind`` builds it."""
    env = env or {}
    settings = load_settings({**os.environ, **env})
    library = {k: v for k, v in env.items() if not k.startswith("GUANAI_")}  # the eventsourcing library's own
    return bootstrap.care_application(settings, kind, database_url, pool_size=pool_size, library_env=library)
