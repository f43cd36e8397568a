"""The embedded default on a machine with no services: Guanai's own PostgreSQL and NATS under a
data directory hold the event store and JetStream, survive a restart, and are shared by a second
process using the same directory."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import nats
import psycopg
import pytest

from application.care import CareApplication, event_store_env
from domain.base import CommandMeta
from domain.org_unit import OrgUnit
from domain.vocabulary import OrgLevel
from infrastructure.embedded import EmbeddedServices, jetstream_available


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Under /tmp, not pytest's tmp_path: the embedded PostgreSQL runs as another user that must
    # traverse the path.
    path = Path(tempfile.mkdtemp(prefix="guanai-test-embedded-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def postgres_answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


async def test_embedded_services_hold_events_and_messages_across_a_restart(data_dir: Path, meta: CommandMeta) -> None:
    stream = f"EMBEDDED_{uuid.uuid4().hex[:12].upper()}"
    with EmbeddedServices(data_dir) as services:
        assert urlsplit(services.nats_url).port != 4222
        assert (data_dir / "postgres" / "PG_VERSION").exists()
        with psycopg.connect(services.database_url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("guanai",)

        app = CareApplication(event_store_env(services.database_url))
        try:
            result = app.register_org_unit(
                code="530428000000", name="元江县", level=OrgLevel.COUNTY, parent_id=None, meta=meta
            )
        finally:
            app.close()
        assert result.created and result.position == 1

        nc = await nats.connect(services.nats_url, connect_timeout=5)
        try:
            js = nc.jetstream()
            await js.add_stream(name=stream, subjects=[f"{stream}.>"])
            ack = await js.publish(f"{stream}.events", b"org-unit-registered", headers={"Nats-Msg-Id": "1"})
            assert (await js.get_msg(stream, ack.seq)).data == b"org-unit-registered"
        finally:
            await nc.close()
        database_url, nats_url = services.database_url, services.nats_url

    assert not jetstream_available(nats_url, timeout=1.0)
    assert not postgres_answers(database_url)

    with EmbeddedServices(data_dir) as services:
        app = CareApplication(event_store_env(services.database_url))
        try:
            unit = app.load(OrgUnit, result.id)
        finally:
            app.close()
        assert (unit.code, unit.name) == ("530428000000", "元江县")

        nc = await nats.connect(services.nats_url, connect_timeout=5)
        try:
            kept = await nc.jetstream().get_msg(stream, ack.seq)
        finally:
            await nc.close()
        assert kept.data == b"org-unit-registered"


SECOND_PROCESS = textwrap.dedent(
    """
    import json, sys
    import psycopg
    from infrastructure.embedded import EmbeddedServices

    with EmbeddedServices(sys.argv[1]) as services:
        with psycopg.connect(services.database_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE written_by_second (n int)")
        print(json.dumps({"database_url": services.database_url, "nats_url": services.nats_url}))
    """
)


def test_a_second_process_shares_the_running_servers_and_leaves_them_running(data_dir: Path) -> None:
    with EmbeddedServices(data_dir) as services:
        second = subprocess.run(
            [sys.executable, "-c", SECOND_PROCESS, str(data_dir)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 0, second.stderr
        seen = json.loads(second.stdout)
        assert seen == {"database_url": services.database_url, "nats_url": services.nats_url}

        # The second process has stopped; the servers are still ours and still serve.
        assert jetstream_available(services.nats_url, timeout=2.0)
        with psycopg.connect(services.database_url) as conn:
            assert conn.execute("SELECT count(*) FROM written_by_second").fetchone() == (0,)
        nats_url = services.nats_url

    assert not jetstream_available(nats_url, timeout=1.0)
