"""Finding the embedded NATS (issue 12): a device or script that subscribes to alerts learns its
URL from what `guanai serve` prints, from `guanai status`, or from `/health` (administrators), and
an operator can fix its port with GUANAI_NATS_PORT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from api.auth import issue_token
from domain.vocabulary import ActorRole
from infrastructure.embedded import nats_info
from tests.api_support import free_port

ROOT = Path(__file__).resolve().parents[2]
SECRET = "nats-discovery-secret-" + "s" * 32


def guanai(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guanai.cli", *args], check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def wait_until(condition, timeout: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def env(fresh_database_url: str, tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GUANAI_")}
    return {
        **clean, "PYTHONPATH": str(ROOT), "GUANAI_DATABASE_URL": fresh_database_url, "GUANAI_DATA_DIR": str(tmp_path / "data"),
        "GUANAI_NATS_PORT": str(free_port()), "GUANAI_PORT": str(free_port()), "GUANAI_JWT_SECRET": SECRET,
        "GUANAI_LOG_LEVEL": "warning",
    }  # fmt: skip


@pytest.fixture
def served(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`guanai serve` with an embedded NATS on the fixed port: (the API's base URL, its stderr)."""
    stderr = tmp_path / "serve.stderr"
    with stderr.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "guanai.cli", "serve"], cwd=ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
    base = f"http://127.0.0.1:{env['GUANAI_PORT']}"

    def up() -> bool:
        assert proc.poll() is None, stderr.read_text()
        try:
            return httpx.get(base + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        assert wait_until(up, 120), stderr.read_text()
        yield base, stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_embedded_nats_on_a_fixed_port_is_named_at_start_by_status_and_to_administrators(
    env: dict[str, str], served: tuple[str, Path]
) -> None:
    base, stderr = served
    url = f"nats://127.0.0.1:{env['GUANAI_NATS_PORT']}"
    info = nats_info("127.0.0.1", int(env["GUANAI_NATS_PORT"]))
    assert info is not None and info.get("jetstream")  # the fixed port, with JetStream
    assert f"guanai: NATS on {url} (embedded" in stderr.read_text()
    status = guanai(env, "status", "--nats-url")
    assert (status.returncode, status.stdout.strip()) == (0, url), status.stderr
    status = guanai(env, "status")
    assert status.returncode == 0 and url in status.stdout and "running" in status.stdout
    admin = issue_token(
        SECRET, subject="admin-1", role=ActorRole.ADMINISTRATOR, org_unit_id=None, ttl=timedelta(minutes=5)
    )
    health = httpx.get(base + "/health", headers={"Authorization": f"Bearer {admin}"}, timeout=10).json()
    assert health["nats"]["url"] == url
    assert "url" not in httpx.get(base + "/health", timeout=10).json()["nats"]  # not to anyone else
    volunteer = issue_token(
        SECRET, subject="v-1", role=ActorRole.VOLUNTEER, org_unit_id=uuid.uuid4(), ttl=timedelta(minutes=5)
    )
    assert (
        "url"
        not in httpx.get(base + "/health", headers={"Authorization": f"Bearer {volunteer}"}, timeout=10).json()["nats"]
    )


def test_status_says_when_the_embedded_nats_is_not_running(env: dict[str, str]) -> None:
    status = guanai(env, "status", "--nats-url")
    assert (status.returncode, status.stdout) == (1, "")
    status = guanai(env, "status")
    assert (
        status.returncode == 1
        and f"not running (`guanai serve` starts it on port {env['GUANAI_NATS_PORT']})" in status.stdout
    )
