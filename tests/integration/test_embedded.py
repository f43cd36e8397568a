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

from domain.base import CommandMeta
from domain.org_unit import OrgUnit
from domain.vocabulary import OrgLevel
from infrastructure.embedded import (
    EmbeddedServices,
    jetstream_available,
    jetstream_config,
    nats_server_binary,
    start_nats,
)
from tests.app_support import make_care


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

        app = make_care(services.database_url)
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
        app = make_care(services.database_url)
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


def test_the_embedded_jetstream_syncs_every_write_to_disk(tmp_path: Path) -> None:
    """Acknowledged means on disk (issue 17.2): the server is started from a configuration with
    ``sync_interval: always``, which the real nats-server accepts."""
    config = tmp_path / "nats.conf"
    config.write_text(jetstream_config(tmp_path / "store dir"))
    assert "sync_interval: always" in config.read_text()
    checked = subprocess.run(
        [str(nats_server_binary()), "-c", str(config), "-t"], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr + checked.stdout
    data_dir = tempfile.mkdtemp(prefix="guanai-test-sync-")
    server = start_nats(data_dir)
    try:
        argv = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
        used = Path(argv[argv.index(b"--config") + 1].decode())
        assert "sync_interval: always" in used.read_text(), "the running server was started from it"
        assert jetstream_available(server.url)
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
