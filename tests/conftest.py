"""Shared fixtures: real PostgreSQL and NATS servers, never mocks.

Where the servers come from:
- PostgreSQL: the machine's server at 127.0.0.1:5432 (user postgres) when it answers within
  about 2 s; otherwise an embedded pgserver in a temporary directory, started once per session
  and stopped at its end (``infrastructure.embedded``).
- NATS: the machine's server at 127.0.0.1:4222 when it answers and has JetStream enabled;
  otherwise an embedded nats-server (JetStream on) in a temporary directory, on a free port.
- ``GUANAI_TEST_EMBEDDED=1`` uses the embedded servers even when the machine's run, so the path
  a fresh machine takes can be tested anywhere.

The machine's servers are shared with others: every session works in its own database
(``guanai_test_<pid>_<random>``), dropped at the end, and tests name their NATS streams and
consumers uniquely.

Fixtures:
- ``pg_base_url`` (session): URL of the server's ``postgres`` database, for creating databases.
- ``database_url`` (session): a fresh database for the whole session.
- ``fresh_database_url`` (function): a brand-new database for one test, dropped after it.
- ``nats_url`` (session): a NATS server with JetStream.
- ``care_app`` (session): a ``CareApplication`` on ``database_url``.
- ``meta`` (function): a ``CommandMeta`` of an administrator, occurred now, unique correlation id.

The API, projector and workers that tests run in this process log through structlog: their lines
go to a file (its path is printed at the end of the run), not between pytest's dots.
``structlog.testing.capture_logs`` still sees them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import psycopg
import pytest
import structlog
from psycopg import sql

from application.care import CareApplication
from domain.base import CommandMeta
from infrastructure.embedded import jetstream_available, start_nats, start_postgres
from tests.app_support import make_care

MACHINE_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
LOG_PATH = Path(tempfile.gettempdir()) / f"guanai-tests-{os.getpid()}.log"


def pytest_configure(config: pytest.Config) -> None:
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=LOG_PATH.open("a", encoding="utf-8")))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if LOG_PATH.exists() and LOG_PATH.stat().st_size:
        terminalreporter.write_line(f"log lines of the servers run in this process: {LOG_PATH}")


MACHINE_NATS_URL = "nats://127.0.0.1:4222"


def force_embedded() -> bool:
    return os.environ.get("GUANAI_TEST_EMBEDDED", "") not in {"", "0"}


def with_database(url: str, database: str) -> str:
    """The same server URL, naming another database (works for host and unix-socket URLs)."""
    return urlsplit(url)._replace(path="/" + quote(database)).geturl()


def create_database(base_url: str, prefix: str = "guanai_test") -> str:
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(base_url, name)


def drop_database(base_url: str, url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def machine_postgres_answers() -> bool:
    try:
        with psycopg.connect(MACHINE_PG_URL, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


@pytest.fixture(scope="session")
def pg_base_url() -> Iterator[str]:
    if not force_embedded() and machine_postgres_answers():
        yield MACHINE_PG_URL
        return
    # A directory under /tmp rather than pytest's tmp_path: the server runs as another user and
    # must traverse the path, and pytest tightens its own directory's mode when a session starts.
    data_dir = tempfile.mkdtemp(prefix="guanai-test-pg-")
    server = start_postgres(data_dir, database="postgres")
    try:
        yield server.admin_url
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(pg_base_url: str) -> Iterator[str]:
    url = create_database(pg_base_url)
    try:
        yield url
    finally:
        drop_database(pg_base_url, url)


@pytest.fixture
def fresh_database_url(pg_base_url: str) -> Iterator[str]:
    url = create_database(pg_base_url, prefix="guanai_test_fresh")
    try:
        yield url
    finally:
        drop_database(pg_base_url, url)


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    if not force_embedded() and jetstream_available(MACHINE_NATS_URL, timeout=2.0):
        yield MACHINE_NATS_URL
        return
    data_dir = tempfile.mkdtemp(prefix="guanai-test-nats-")
    server = start_nats(data_dir)
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def care_app(database_url: str) -> Iterator[CareApplication]:
    app = make_care(database_url)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def meta() -> CommandMeta:
    return CommandMeta(
        actor_id="test-admin",
        actor_role="administrator",
        correlation_id=f"test-{uuid.uuid4()}",
        occurred_at=datetime.now(UTC),
    )
