"""The import jobs' table is created by every API process as it starts; processes started together
must not collide (a CREATE ... IF NOT EXISTS of the same table in two sessions at once fails one of
them with a unique violation): the advisory lock is held until the table is committed."""

from __future__ import annotations

import threading
import time

import psycopg

from infrastructure.import_jobs import ImportJobs
from tests.app_support import make_care

LOCK = "SELECT pg_try_advisory_lock(hashtext('guanai_import_jobs ddl'))"


def test_the_lock_is_held_until_the_table_is_committed(fresh_database_url: str) -> None:
    app = make_care(fresh_database_url, pool_size=2)
    try:
        with (
            psycopg.connect(fresh_database_url) as blocker,
            psycopg.connect(fresh_database_url, autocommit=True) as probe,
        ):
            # Another session creating the same table, not committed yet: the DDL waits for it.
            blocker.execute("CREATE TABLE guanai_import_jobs (id uuid PRIMARY KEY)")
            failures: list[BaseException] = []

            def create() -> None:
                try:
                    ImportJobs(app).create_tables()
                except BaseException as e:  # noqa: BLE001 - reported by the test
                    failures.append(e)

            creating = threading.Thread(target=create, daemon=True)
            creating.start()
            deadline = time.monotonic() + 10
            while not probe.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()[0]:
                assert time.monotonic() < deadline, "create_tables did not reach the table"
                time.sleep(0.02)
            # While its DDL waits, the lock is still its own: another process would wait for it.
            assert probe.execute(LOCK).fetchone()[0] is False
            blocker.rollback()
            creating.join(10)
            assert not creating.is_alive()
            assert failures == []
            assert probe.execute(LOCK).fetchone()[0] is True
            assert probe.execute("SELECT to_regclass('guanai_import_jobs') IS NOT NULL").fetchone()[0] is True
    finally:
        app.close()
