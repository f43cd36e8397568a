"""Bearer tokens: expiry, key rotation (several verifying keys, the newest signs), revocation
(API, command line, the process cache and its failure mode) and the limit on failed
authentications."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg
import pytest

from api.auth import MAX_TOKEN_TTL, KeyRing, TokenError, issue_token, key_id, key_ring, verify_token
from api.revocations import RevocationList, RevocationUnavailable, revoke_in
from domain.vocabulary import ActorRole
from infrastructure.settings import load_settings
from tests.api_support import SECRET, ApiServer, own_server

OLD = "old-signing-key-" + "o" * 40
STRANGER = "somebody-elses-key-" + "s" * 40
ROOT = Path(__file__).resolve().parents[2]


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    body = {
        "iss": "guanai",
        "sub": "u-1",
        "role": "administrator",
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def raw_token(header: dict[str, Any], payload: dict[str, Any], secret: str) -> str:
    """A token built by hand, for headers PyJWT will not write."""
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    signing_input = b64(json.dumps(header).encode()) + b"." + b64(json.dumps(payload).encode())
    digest = {"HS256": hashlib.sha256, "HS512": hashlib.sha512}[header["alg"]]
    return (signing_input + b"." + b64(hmac.new(secret.encode(), signing_input, digest).digest())).decode()


def admin_token(secret: str | KeyRing = SECRET, **kw: Any) -> str:
    return issue_token(
        secret, subject="admin-1", role=ActorRole.ADMINISTRATOR, org_unit_id=None, ttl=timedelta(hours=1), **kw
    )


def volunteer_token(secret: str | KeyRing = SECRET) -> str:
    return issue_token(
        secret,
        subject=f"v-{uuid.uuid4().hex[:6]}",
        role=ActorRole.VOLUNTEER,
        org_unit_id=uuid.uuid4(),
        ttl=timedelta(hours=1),
    )


# ---- tokens and keys (no I/O) -------------------------------------------------------------


def test_a_token_names_its_signing_key_and_carries_an_id_and_expiry() -> None:
    token = admin_token()
    assert jwt.get_unverified_header(token)["kid"] == key_id(SECRET)
    actor = verify_token(SECRET, token)
    assert actor.role == ActorRole.ADMINISTRATOR and len(actor.token_id) == 32
    assert 3590 <= actor.expires_at - time.time() <= 3600


def test_rotation_old_keys_verify_until_removed_and_the_newest_signs() -> None:
    old_token = admin_token(OLD)
    rotated = KeyRing(SECRET, [OLD])
    assert verify_token(rotated, old_token).subject == "admin-1"
    new_token = admin_token(rotated)
    assert jwt.get_unverified_header(new_token)["kid"] == key_id(SECRET)
    assert verify_token(KeyRing(SECRET), new_token).subject == "admin-1"
    with pytest.raises(TokenError, match="no longer accepted"):
        verify_token(KeyRing(SECRET), old_token)  # the old key was removed


def test_tokens_from_before_key_ids_are_tried_against_every_accepted_key() -> None:
    legacy = jwt.encode(claims(), OLD, algorithm="HS256")
    assert "kid" not in jwt.get_unverified_header(legacy)
    assert verify_token(KeyRing(SECRET, [OLD]), legacy).subject == "u-1"
    with pytest.raises(TokenError, match="not valid"):
        verify_token(KeyRing(SECRET), legacy)


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda: jwt.encode(claims(), None, algorithm="none"), id="alg-none"),
        pytest.param(lambda: raw_token({"alg": "HS512", "typ": "JWT"}, claims(), SECRET), id="another-algorithm"),
        pytest.param(
            lambda: jwt.encode(claims(), STRANGER, algorithm="HS256", headers={"kid": key_id(SECRET)}),
            id="borrowed-kid",
        ),
        pytest.param(lambda: raw_token({"alg": "HS256", "kid": 7}, claims(), SECRET), id="kid-not-a-string"),
        pytest.param(lambda: raw_token({"alg": "HS256", "kid": ["a"]}, claims(), SECRET), id="kid-a-list"),
        pytest.param(lambda: jwt.encode(claims(jti=None), SECRET, algorithm="HS256"), id="no-jti"),
        pytest.param(lambda: jwt.encode(claims(role="root"), SECRET, algorithm="HS256"), id="unknown-role"),
        pytest.param(lambda: jwt.encode(claims(iss="elsewhere"), SECRET, algorithm="HS256"), id="other-issuer"),
        pytest.param(
            lambda: jwt.encode(claims(exp=int(time.time()) + 40 * 86400), SECRET, algorithm="HS256"), id="too-long"
        ),
        pytest.param(
            lambda: jwt.encode(claims(iat=int(time.time()) + 3600), SECRET, algorithm="HS256"), id="issued-later"
        ),
        pytest.param(lambda: admin_token()[:-2] + "xx", id="tampered"),
    ],
)
def test_forged_tokens_are_refused(forge: Any) -> None:
    with pytest.raises(TokenError):
        verify_token(KeyRing(SECRET), forge())


def test_expired_tokens_are_refused_and_lifetimes_are_bounded() -> None:
    expired = admin_token(now=datetime.now(UTC) - timedelta(hours=2))
    with pytest.raises(TokenError, match="expired"):
        verify_token(SECRET, expired)
    with pytest.raises(TokenError, match="at most 31 days"):
        issue_token(
            SECRET, subject="a", role=ActorRole.ADMINISTRATOR, org_unit_id=None, ttl=MAX_TOKEN_TTL + timedelta(hours=1)
        )


def test_previous_keys_come_from_the_settings() -> None:
    other = "another-old-key-" + "a" * 40
    settings = load_settings({"GUANAI_JWT_PREVIOUS_SECRETS": f" {OLD} ,{other},"})
    ring = key_ring(SECRET, settings.jwt_previous_secrets)
    assert len(ring) == 3 and ring.current_kid == key_id(SECRET) and ring.get(key_id(other)) == other
    with pytest.raises(TokenError, match="PREVIOUS"):
        key_ring(SECRET, "too-short")


# ---- against a server -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(pg_base_url: str, nats_url: str) -> Iterator[ApiServer]:
    with own_server(
        pg_base_url, nats_url, jwt_previous_secrets=OLD, revocation_cache_seconds=0.1, auth_failures_per_minute=3
    ) as s:
        yield s


_addresses = iter(range(2, 250))


def client_from_new_address(server: ApiServer) -> httpx.Client:
    """A client with a loopback source address of its own: failure limits count per address."""
    transport = httpx.HTTPTransport(local_address=f"127.0.0.{next(_addresses)}")
    return httpx.Client(base_url=server.base_url, transport=transport, timeout=30)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return r.json()


def wait_until_refused(c: httpx.Client, token: str, timeout: float = 10.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        r = c.get("/persons", headers=bearer(token))
        if r.status_code != 200 or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


def test_a_token_signed_with_a_previous_key_is_accepted(server: ApiServer) -> None:
    with client_from_new_address(server) as c:
        assert c.get("/persons", headers=bearer(volunteer_token(OLD))).status_code == 200
        assert c.get("/persons", headers=bearer(volunteer_token())).status_code == 200
        body = assert_problem(c.get("/persons", headers=bearer(volunteer_token(STRANGER))), 401)
        assert "no longer accepted" in body["detail"]


def test_an_administrator_revokes_a_token_by_id(server: ApiServer) -> None:
    victim = volunteer_token()
    jti = verify_token(SECRET, victim).token_id
    with client_from_new_address(server) as c:
        assert c.get("/persons", headers=bearer(victim)).status_code == 200
        r = c.post("/auth/revoke", json={"jti": jti, "reason": "phone lost"}, headers=bearer(admin_token()))
        assert r.status_code == 200, r.text
        assert r.json()["jti"] == jti and r.json()["newly_revoked"] is True
        kept_until = datetime.fromisoformat(r.json()["expires_at"])
        assert kept_until > datetime.now(UTC) + MAX_TOKEN_TTL - timedelta(
            minutes=1
        )  # a jti alone: the longest lifetime
        body = assert_problem(c.get("/persons", headers=bearer(victim)), 401)  # at once in this process
        assert "revoked" in body["detail"]
        again = c.post("/auth/revoke", json={"jti": jti, "reason": "again"}, headers=bearer(admin_token()))
        assert again.status_code == 200 and again.json()["newly_revoked"] is False


def test_revoking_by_token_and_who_may_revoke(server: ApiServer) -> None:
    victim = volunteer_token(OLD)
    actor = verify_token(KeyRing(SECRET, [OLD]), victim)
    with client_from_new_address(server) as c:
        r = c.post(
            "/auth/revoke", json={"token": victim, "reason": "left the programme"}, headers=bearer(admin_token())
        )
        assert r.status_code == 200, r.text
        assert r.json()["jti"] == actor.token_id
        assert datetime.fromisoformat(r.json()["expires_at"]).timestamp() == actor.expires_at
        assert_problem(c.get("/persons", headers=bearer(victim)), 401)
        supervisor = issue_token(
            SECRET, subject="s", role=ActorRole.COUNTY_SUPERVISOR, org_unit_id=uuid.uuid4(), ttl=timedelta(hours=1)
        )
        assert_problem(c.post("/auth/revoke", json={"jti": "abc", "reason": "x"}, headers=bearer(supervisor)), 403)
        admin = bearer(admin_token())
        for body, field in [
            ({"reason": "x"}, "jti"),
            ({"reason": "x", "jti": "abc", "token": victim}, "jti"),
            ({"reason": "x", "token": "not.a.token"}, "token"),
            ({"reason": "x", "token": volunteer_token(STRANGER)}, "token"),
            ({"reason": "x", "jti": "../../etc"}, "jti"),
            ({"reason": "", "jti": "abc"}, "reason"),
        ]:
            problem = assert_problem(c.post("/auth/revoke", json=body, headers=admin), 422)
            assert field in [e["field"] for e in problem["errors"]], problem


def test_a_revocation_from_the_command_line_reaches_the_server(server: ApiServer, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "GUANAI_DATA_DIR": str(tmp_path),
        "GUANAI_JWT_SECRET": SECRET,
        "GUANAI_DATABASE_URL": server.database_url,
        "GUANAI_LOG_FORMAT": "json",
    }

    def guanai(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "guanai.cli", *args],
            check=False,
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    # A token names the one person it is for: tokens sharing a default subject would be one
    # account to the access table (each reading the reports the others filed, in any county).
    unnamed = guanai("token", "--role", "village_cadre", "--org-code", "530428101201")
    assert unnamed.returncode == 2 and "--subject" in unnamed.stderr and not unnamed.stdout
    issued = guanai("token", "--role", "township_responder", "--org-unit", str(uuid.uuid4()), "--subject", "resp-0042")
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    jti = verify_token(SECRET, token).token_id
    assert f"token revoke {jti}" in issued.stderr
    with client_from_new_address(server) as c:
        assert c.get("/persons", headers=bearer(token)).status_code == 200
        revoked = guanai("token", "revoke", jti, "--reason", "left the job", "--by", "admin-7")
        assert revoked.returncode == 0, revoked.stderr
        body = assert_problem(wait_until_refused(c, token), 401)  # within the cache interval
        assert "revoked" in body["detail"]
    with psycopg.connect(server.database_url) as conn:
        row = conn.execute("SELECT revoked_by, reason FROM revoked_tokens WHERE jti = %s", (jti,)).fetchone()
    assert row == ("admin-7", "left the job")
    assert guanai("token").returncode == 2  # neither --role nor an action
    wrong_level = guanai("token", "--role", "village_cadre", "--org-code", "530428000000", "--subject", "vc-7")
    assert wrong_level.returncode == 2 and "scoped to a village" in wrong_level.stderr  # a county's code


def test_expired_revocations_are_purged_and_not_reported(server: ApiServer) -> None:
    gone, kept = f"gone-{uuid.uuid4().hex[:8]}", f"kept-{uuid.uuid4().hex[:8]}"
    revoke_in(server.database_url, gone, datetime.now(UTC) - timedelta(minutes=1), revoked_by="t", reason="t")
    revocations = RevocationList(server.database_url).open()
    try:
        assert not revocations.is_revoked(gone)  # its token has expired anyway
        revoke_in(server.database_url, kept, None, revoked_by="t", reason="t")
        revocations.refresh()
        assert revocations.is_revoked(kept)
    finally:
        revocations.close()
    with psycopg.connect(server.database_url) as conn:
        jtis = {r[0] for r in conn.execute("SELECT jti FROM revoked_tokens")}
    assert kept in jtis and gone not in jtis


def test_a_stale_revocation_list_fails_closed(server: ApiServer) -> None:
    now = [1000.0]
    revocations = RevocationList(
        server.database_url, refresh_seconds=1, max_stale_seconds=30, clock=lambda: now[0]
    ).open()
    try:
        assert revocations.is_revoked("nobody") is False
        now[0] += 31  # no successful refresh for longer than allowed
        with pytest.raises(RevocationUnavailable):
            revocations.is_revoked("nobody")
        revocations.refresh()
        assert revocations.is_revoked("nobody") is False
    finally:
        revocations.close()


def test_failed_authentications_are_limited_per_address(server: ApiServer) -> None:
    good = volunteer_token()
    with client_from_new_address(server) as attacker, client_from_new_address(server) as neighbour:
        for _ in range(5):  # no token at all is not a failed authentication
            assert_problem(attacker.get("/persons"), 401)
        for _ in range(3):
            assert_problem(attacker.get("/persons", headers=bearer(volunteer_token(STRANGER))), 401)
        r = attacker.get("/persons", headers=bearer(volunteer_token(STRANGER)))
        body = assert_problem(r, 429)
        assert body["type"] == "/problems/too-many-requests"
        assert 1 <= int(r.headers["retry-after"]) <= 21 and body["retry_after"] == int(r.headers["retry-after"])
        assert_problem(attacker.get("/persons", headers=bearer(good)), 429)  # the address waits, whatever it sends
        assert neighbour.get("/persons", headers=bearer(good)).status_code == 200
