"""``guanai accounts create-admin``: the first administrator of a store, from the command line,
then activated and signed in over HTTP like anyone."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pyotp

from infrastructure.settings import Settings
from tests.api_support import ApiServer, api_server  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[2]


def guanai(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GUANAI_")}
    # The server under test runs in this process with the default data directory: the CLI must
    # hold the same master key and lookup key.
    data_dir = str(Settings().data_path)
    return subprocess.run(
        [sys.executable, "-m", "guanai.cli", *args], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**clean, "PYTHONPATH": str(ROOT), "GUANAI_DATABASE_URL": url, "GUANAI_DATA_DIR": data_dir,
             "GUANAI_LOG_LEVEL": "warning"},
    )  # fmt: skip


def test_create_admin_prints_a_code_the_administrator_activates(api_server: ApiServer) -> None:
    phone = "186" + f"{uuid.uuid4().int % 10**8:08d}"
    done = guanai(
        api_server.database_url, "accounts", "create-admin", "--phone", f"+86 {phone}", "--name", "县民政局管理员"
    )
    assert done.returncode == 0, done.stderr
    code = re.search(r"activation code: (\d{4}-\d{4}-\d{4})", done.stdout)
    assert code, done.stdout
    with httpx.Client(base_url=api_server.base_url, timeout=30) as c:
        body = {"phone": phone, "activation_code": code.group(1), "password": "县里的第一把钥匙-2026"}
        activated = c.post("/auth/activate", json=body)
        assert activated.status_code == 200, activated.text
        assert activated.json()["account"]["role"] == "administrator"
        tokens = c.post("/auth/sign-in", json={"phone": phone, "password": body["password"]}).json()
        assert tokens["second_factor_enrolment_required"] is True  # administrators enrol TOTP first
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        secret = c.post("/auth/totp", headers=bearer).json()["secret"]
        assert (
            c.post("/auth/totp/confirm", headers=bearer, json={"totp_code": pyotp.TOTP(secret).now()}).status_code
            == 200
        )
        full = c.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).json()
        r = c.get("/org-units", headers={"Authorization": f"Bearer {full['access_token']}"}, params={"limit": 1})
        assert r.status_code == 200
    again = guanai(api_server.database_url, "accounts", "create-admin", "--phone", phone)
    assert again.returncode == 2 and "another account has this phone number" in again.stderr
    bad = guanai(api_server.database_url, "accounts", "create-admin", "--phone", "12345")
    assert bad.returncode == 2 and "phone" in bad.stderr
