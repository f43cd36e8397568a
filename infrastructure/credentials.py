"""The accounts' secrets and sessions in PostgreSQL: what must never be an event.

- ``account_logins``: per account, the phone number's lookup hash (unique: one account per
  number), the Argon2id password hash, the activation code's lookup hash and its wrong tries,
  the TOTP secret sealed under the account's own data key (and a pending one during enrolment),
  the last TOTP time step accepted (a code is accepted once) and the recovery codes' lookup hashes.
- ``account_sessions``: one row per signed-in device: its name, whether it is a browser's cookie
  session (with the CSRF token's hash), when it ends, and its one live access token's id.
- ``account_refresh_tokens``: SHA-256 of every refresh token issued, and when it was used.
- ``account_sign_ins``: sign-ins, failures, lockouts and session ends, for auditors (no phone,
  no address: the account id, or nothing when no account had the number).

Nothing here is plaintext personal data or a secret: a dump shows hashes and sealed blobs only.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from application.accounts import Login, Session

DDL = """
CREATE TABLE IF NOT EXISTS account_logins (
    account_id uuid PRIMARY KEY,
    phone_hash bytea NOT NULL UNIQUE,
    password_hash text,
    activation_hash bytea,
    activation_attempts int NOT NULL DEFAULT 0,
    totp_secret bytea,
    totp_pending bytea,
    totp_last_step bigint NOT NULL DEFAULT 0,
    recovery_hashes bytea[] NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS account_sessions (
    id uuid PRIMARY KEY,
    account_id uuid NOT NULL,
    device_name text NOT NULL,
    cookie boolean NOT NULL,
    csrf_hash bytea,
    created_at timestamptz NOT NULL,
    last_used_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    ended_at timestamptz,
    end_reason text,
    access_jti text,
    access_expires_at timestamptz
);
CREATE INDEX IF NOT EXISTS account_sessions_live ON account_sessions (account_id) WHERE ended_at IS NULL;
CREATE TABLE IF NOT EXISTS account_refresh_tokens (
    token_hash bytea PRIMARY KEY,
    session_id uuid NOT NULL,
    issued_at timestamptz NOT NULL DEFAULT now(),
    used_at timestamptz
);
CREATE INDEX IF NOT EXISTS account_refresh_tokens_session ON account_refresh_tokens (session_id);
CREATE TABLE IF NOT EXISTS account_sign_ins (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    account_id uuid,
    outcome text NOT NULL,
    session_id uuid
);
CREATE INDEX IF NOT EXISTS account_sign_ins_account ON account_sign_ins (account_id, id);
"""

SESSION_COLUMNS = (
    "id, account_id, device_name, cookie, csrf_hash, created_at, last_used_at, expires_at, ended_at, access_jti,"
    " access_expires_at"
)


def create_tables(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('guanai_account_tables'))")
        conn.execute(DDL)


def _session(row: dict[str, Any] | None) -> Session | None:
    if row is None:
        return None
    return Session(
        id=row["id"], account_id=row["account_id"], device_name=row["device_name"], cookie=row["cookie"],
        csrf_hash=bytes(row["csrf_hash"]) if row["csrf_hash"] is not None else None, created_at=row["created_at"],
        last_used_at=row["last_used_at"], expires_at=row["expires_at"], ended_at=row["ended_at"],
        access_jti=row["access_jti"], access_expires_at=row["access_expires_at"],
    )  # fmt: skip


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


class PostgresCredentials:
    """The ``Credentials`` port of ``application/accounts.py`` over PostgreSQL."""

    def __init__(self, database_url: str, *, pool_size: int = 3) -> None:
        # No connection kept open while nobody signs in (min_size 0): a process's connections are
        # the machine's to share, and a sign-in's Argon2 hash, not the pool, bounds its pace.
        self.pool: ConnectionPool[Any] = ConnectionPool(
            database_url, min_size=0, max_size=pool_size, kwargs={"autocommit": True, "row_factory": dict_row},
            open=True, name="credentials",
        )  # fmt: skip
        with self.pool.connection() as conn:
            create_tables(conn)

    def close(self) -> None:
        self.pool.close()

    def _one(self, query: str, params: Any = ()) -> dict[str, Any] | None:
        with self.pool.connection() as conn:
            return conn.execute(query, params).fetchone()  # type: ignore[return-value]

    def _run(self, query: str, params: Any = ()) -> int:
        with self.pool.connection() as conn:
            return conn.execute(query, params).rowcount

    # -- phone numbers --

    def reserve_phone(self, account_id: UUID, phone_hash: bytes) -> bool:
        row = self._one(
            "INSERT INTO account_logins (account_id, phone_hash) VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING 1",
            (account_id, phone_hash),
        )
        return row is not None

    def release_phone(self, account_id: UUID) -> None:
        self._run("DELETE FROM account_logins WHERE account_id = %s AND password_hash IS NULL", (account_id,))

    def account_by_phone(self, phone_hash: bytes) -> UUID | None:
        row = self._one("SELECT account_id FROM account_logins WHERE phone_hash = %s", (phone_hash,))
        return None if row is None else row["account_id"]

    def login(self, account_id: UUID) -> Login | None:
        row = self._one("SELECT * FROM account_logins WHERE account_id = %s", (account_id,))
        if row is None:
            return None
        return Login(
            account_id=row["account_id"], password_hash=row["password_hash"],
            activation_hash=_bytes(row["activation_hash"]), activation_attempts=row["activation_attempts"],
            totp_secret=_bytes(row["totp_secret"]), totp_pending=_bytes(row["totp_pending"]),
            totp_last_step=row["totp_last_step"], recovery_hashes=[bytes(h) for h in row["recovery_hashes"]],
        )  # fmt: skip

    # -- secrets --

    def set_activation(self, account_id: UUID, code_hash: bytes | None) -> None:
        self._run(
            "UPDATE account_logins SET activation_hash = %s, activation_attempts = 0, updated_at = now()"
            " WHERE account_id = %s",
            (code_hash, account_id),
        )

    def count_activation_failure(self, account_id: UUID) -> int:
        row = self._one(
            "UPDATE account_logins SET activation_attempts = activation_attempts + 1 WHERE account_id = %s"
            " RETURNING activation_attempts",
            (account_id,),
        )
        return 0 if row is None else int(row["activation_attempts"])

    def set_password(self, account_id: UUID, password_hash: str | None) -> None:
        self._run(
            "UPDATE account_logins SET password_hash = %s, updated_at = now() WHERE account_id = %s",
            (password_hash, account_id),
        )

    def clear_secrets(self, account_id: UUID) -> None:
        self._run(
            "UPDATE account_logins SET password_hash = NULL, activation_hash = NULL, activation_attempts = 0,"
            " totp_secret = NULL, totp_pending = NULL, recovery_hashes = '{}', updated_at = now()"
            " WHERE account_id = %s",
            (account_id,),
        )

    def set_totp_pending(self, account_id: UUID, sealed: bytes | None) -> None:
        self._run("UPDATE account_logins SET totp_pending = %s WHERE account_id = %s", (sealed, account_id))

    def confirm_totp(self, account_id: UUID, step: int, recovery_hashes: list[bytes]) -> None:
        self._run(
            "UPDATE account_logins SET totp_secret = totp_pending, totp_pending = NULL, totp_last_step = %s,"
            " recovery_hashes = %s, updated_at = now() WHERE account_id = %s",
            (step, recovery_hashes, account_id),
        )

    def use_totp_step(self, account_id: UUID, step: int) -> bool:
        # One statement: two sign-ins racing with one code cannot both win.
        return (
            self._run(
                "UPDATE account_logins SET totp_last_step = %s WHERE account_id = %s AND totp_last_step < %s",
                (step, account_id, step),
            )
            == 1
        )

    def use_recovery_code(self, account_id: UUID, code_hash: bytes) -> bool:
        return (
            self._run(
                "UPDATE account_logins SET recovery_hashes = array_remove(recovery_hashes, %s::bytea)"
                " WHERE account_id = %s AND %s::bytea = ANY(recovery_hashes)",
                (code_hash, account_id, code_hash),
            )
            == 1
        )

    def set_recovery_codes(self, account_id: UUID, hashes: list[bytes]) -> None:
        self._run("UPDATE account_logins SET recovery_hashes = %s WHERE account_id = %s", (hashes, account_id))

    # -- sessions --

    def open_session(self, session: Session, refresh_hash: bytes) -> None:
        with self.pool.connection() as conn, conn.transaction():
            conn.execute(
                f"INSERT INTO account_sessions ({SESSION_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (session.id, session.account_id, session.device_name, session.cookie, session.csrf_hash,
                 session.created_at, session.last_used_at, session.expires_at, session.ended_at, session.access_jti,
                 session.access_expires_at),
            )  # fmt: skip
            conn.execute(
                "INSERT INTO account_refresh_tokens (token_hash, session_id) VALUES (%s, %s)",
                (refresh_hash, session.id),
            )

    def session(self, session_id: UUID) -> Session | None:
        return _session(self._one(f"SELECT {SESSION_COLUMNS} FROM account_sessions WHERE id = %s", (session_id,)))

    def sessions(self, account_id: UUID) -> list[Session]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {SESSION_COLUMNS} FROM account_sessions WHERE account_id = %s AND ended_at IS NULL"
                " AND expires_at > now() ORDER BY created_at",
                (account_id,),
            ).fetchall()
        return [s for r in rows if (s := _session(r)) is not None]  # type: ignore[arg-type]

    def refresh(
        self, refresh_hash: bytes, decide: Callable[[Session], tuple[bytes, str, datetime] | None]
    ) -> tuple[Session | None, bool]:
        """(the session as it was, reused). ``decide`` returns the new refresh token's hash and the
        new access token's id and expiry, or None to refuse; it runs with the session row locked,
        so a role change racing the refresh either comes first (the refresh sees it) or revokes
        the new access token."""
        with self.pool.connection() as conn, conn.transaction():
            token = conn.execute(
                "SELECT session_id, used_at FROM account_refresh_tokens WHERE token_hash = %s FOR UPDATE",
                (refresh_hash,),
            ).fetchone()
            if token is None:
                return None, False
            row = conn.execute(
                f"SELECT {SESSION_COLUMNS} FROM account_sessions WHERE id = %s FOR UPDATE", (token["session_id"],)
            ).fetchone()
            session = _session(row)  # type: ignore[arg-type]
            if session is None:
                return None, False
            if token["used_at"] is not None:
                conn.execute(
                    "UPDATE account_sessions SET ended_at = coalesce(ended_at, now()),"
                    " end_reason = coalesce(end_reason, 'refresh token reused') WHERE id = %s",
                    (session.id,),
                )
                return session, True
            decided = decide(session)
            if decided is None:
                return session, False
            new_hash, jti, expires_at = decided
            conn.execute("UPDATE account_refresh_tokens SET used_at = now() WHERE token_hash = %s", (refresh_hash,))
            conn.execute(
                "INSERT INTO account_refresh_tokens (token_hash, session_id) VALUES (%s, %s)", (new_hash, session.id)
            )
            conn.execute(
                "UPDATE account_sessions SET last_used_at = now(), access_jti = %s, access_expires_at = %s WHERE id = %s",
                (jti, expires_at, session.id),
            )
            return session, False

    def end_session(self, session_id: UUID, reason: str) -> Session | None:
        row = self._one(
            f"UPDATE account_sessions SET ended_at = now(), end_reason = %s WHERE id = %s AND ended_at IS NULL"
            f" RETURNING {SESSION_COLUMNS}",
            (reason, session_id),
        )
        return _session(row)

    def end_sessions(self, account_id: UUID, reason: str) -> list[Session]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"UPDATE account_sessions SET ended_at = now(), end_reason = %s WHERE account_id = %s"
                f" AND ended_at IS NULL RETURNING {SESSION_COLUMNS}",
                (reason, account_id),
            ).fetchall()
        return [s for r in rows if (s := _session(r)) is not None]  # type: ignore[arg-type]

    # -- the sign-in record --

    def record_sign_in(self, account_id: UUID | None, outcome: str, session_id: UUID | None = None) -> None:
        self._run(
            "INSERT INTO account_sign_ins (account_id, outcome, session_id) VALUES (%s, %s, %s)",
            (account_id, outcome, session_id),
        )

    def sign_ins(self, account_id: UUID, limit: int) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return conn.execute(  # type: ignore[return-value]
                "SELECT at, outcome, session_id FROM account_sign_ins WHERE account_id = %s ORDER BY id DESC LIMIT %s",
                (account_id, limit),
            ).fetchall()


class KeyStoreSealer:
    """Seals account secrets (the TOTP secret) under the account's own data key, the one its
    phone number is sealed with: wrapped by the master key, so a master key rotation re-wraps it."""

    def __init__(self, key_store: Any) -> None:
        self.key_store = key_store

    def _key(self, account_id: UUID) -> AESGCM:
        key: AESGCM = self.key_store.key_for_sealing(f"account:{account_id}", None)
        return key

    def seal(self, account_id: UUID, secret: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self._key(account_id).encrypt(
            nonce, secret, b"guanai-account-secret\0" + str(account_id).encode()
        )

    def open(self, account_id: UUID, sealed: bytes) -> bytes:
        aad = b"guanai-account-secret\0" + str(account_id).encode()
        return self._key(account_id).decrypt(sealed[:12], sealed[12:], aad)
