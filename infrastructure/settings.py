"""Typed settings, read once from the environment. Every variable is documented here and in
README.md; a test keeps compose.yaml in line with this list.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

import msgspec


class SettingsError(ValueError):
    """A setting in the environment has a value that cannot be used."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str | None = None
    """GUANAI_DATABASE_URL: PostgreSQL URL (postgresql://user:pass@host:port/db). Unset: embedded."""
    nats_url: str | None = None
    """GUANAI_NATS_URL: NATS server URL with JetStream enabled (nats://host:4222). Unset: embedded."""
    nats_port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None
    """GUANAI_NATS_PORT: the port the embedded NATS listens on (127.0.0.1), for devices and scripts
    that subscribe to alerts. Unset: a free port the system picks (``guanai status`` names it)."""
    data_dir: str = "guanai-data"
    """GUANAI_DATA_DIR: where the embedded servers and the generated signing key live."""
    host: str = "127.0.0.1"
    """GUANAI_HOST: address the API listens on."""
    port: int = 8000
    """GUANAI_PORT: port the API listens on."""
    jwt_secret: str | None = None
    """GUANAI_JWT_SECRET: HS256 signing key for bearer tokens (32+ chars). Unset: generated
    once into the data directory."""
    token_ttl_hours: int = 12
    """GUANAI_TOKEN_TTL_HOURS: lifetime of tokens issued by ``guanai token`` (at most 744)."""
    jwt_previous_secrets: str = ""
    """GUANAI_JWT_PREVIOUS_SECRETS: comma-separated earlier signing keys that still verify tokens
    (key rotation: move the old GUANAI_JWT_SECRET here, set a new one, remove it after the TTL)."""
    revocation_cache_seconds: float = 2.0
    """GUANAI_REVOCATION_CACHE_SECONDS: how often each API process reloads the revoked tokens."""
    auth_failures_per_minute: int = 20
    """GUANAI_AUTH_FAILURES_PER_MINUTE: refused tokens per client address before 429 (0: no limit)."""
    reports_per_minute: int = 10
    """GUANAI_REPORTS_PER_MINUTE: emergency reports one account may file per minute (0: no limit)."""
    cors_origins: str = ""
    """GUANAI_CORS_ORIGINS: comma-separated origins browsers may call the API from (empty: none)."""
    log_format: str = "auto"
    """GUANAI_LOG_FORMAT: json | console | auto (console on a terminal, json otherwise)."""
    log_level: str = "info"
    """GUANAI_LOG_LEVEL: debug | info | warning | error."""
    helper_capacity: int = 10
    """GUANAI_HELPER_CAPACITY: default maximum number of people one helper looks after."""
    clock_skew_seconds: int = 300
    """GUANAI_CLOCK_SKEW_SECONDS: how far in the future an occurred_at may lie (device clocks)."""
    max_backdate_days: int = 3650
    """GUANAI_MAX_BACKDATE_DAYS: how far in the past an occurred_at may lie."""
    db_pool_size: int = 10
    """GUANAI_DB_POOL_SIZE: PostgreSQL connections per process (commands run in threads)."""
    read_wait_seconds: float = 2.0
    """GUANAI_READ_WAIT_SECONDS: how long a read with min_position waits for the views."""
    views_batch_ms: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 50
    """GUANAI_VIEWS_BATCH_MS: while commands keep coming, the projector starts a batch at most this
    often (ms): one batch carries the commands of that time, which costs the projector and the
    database less CPU, and a read with min_position waits up to this much longer under load (0: a
    batch at every wake-up)."""
    command_retries: int = 5
    """GUANAI_COMMAND_RETRIES: how often a command is re-decided after a concurrent write."""
    visit_claim_limit: int = 5
    """GUANAI_VISIT_CLAIM_LIMIT: most visit tasks one helper may hold claimed at once."""
    visit_claim_hours: float = 72.0
    """GUANAI_VISIT_CLAIM_HOURS: a claim not completed within this time goes back to the pool (at most 672)."""
    scheduler_interval_seconds: float = 300.0
    """GUANAI_SCHEDULER_INTERVAL_SECONDS: how often the scheduler sweeps (next tasks, missed, lapsed claims)."""
    stream_replicas: int = 1
    """GUANAI_STREAM_REPLICAS: copies JetStream keeps of the event stream when it creates it (1 on
    one server; 3 on a three-node cluster, as compose.yaml runs). An existing stream keeps its own."""
    audit_chain: bool = True
    """GUANAI_AUDIT_CHAIN: cover every stored event by the tamper-evident HMAC chain (turn off
    only to measure its cost: events written without it fail ``guanai audit verify``)."""
    chain_key: str | None = None
    """GUANAI_CHAIN_KEY: secret key of the audit chain (32+ chars), never stored in the database;
    every process that writes events must share it. Unset: generated once into the data directory."""
    crypto_suite: str | None = None
    """GUANAI_CRYPTO_SUITE: international (AES-256-GCM, SHA-256, Ed25519) | gm (SM4-GCM, SM3, SM2),
    chosen when the store is created and recorded in it (unset: the store's, or international for
    a new store); a process set to another suite than its store's refuses to start."""
    signing_key: str | None = None
    """GUANAI_SIGNING_KEY: the key that signs checkpoints, ``<suite>:<hex>`` (``guanai audit
    keygen`` makes one), never stored in the database. Unset: generated once into the data
    directory (``checkpoint-signing-key``); its public half is what outside parties verify with."""
    master_key: str | None = None
    """GUANAI_MASTER_KEY: the key that wraps every person's data key (32+ chars), never stored in the
    database; every process must share it, and losing it loses all personal data. Unset:
    generated once into the data directory (``master-key``)."""
    previous_master_keys: str = ""
    """GUANAI_PREVIOUS_MASTER_KEYS: comma-separated earlier master keys a process still opens, and
    wraps new keys with while the store is under one of them (rotation without a stop: move the
    old GUANAI_MASTER_KEY here, set a new one, run ``guanai keys rotate``, then remove it)."""
    access_token_minutes: int = 15
    """GUANAI_ACCESS_TOKEN_MINUTES: lifetime of the access tokens of signed-in accounts (1 to 60)."""
    session_days: int = 30
    """GUANAI_SESSION_DAYS: how long a signed-in session lasts at most (refresh tokens rotate within it)."""
    sign_in_failures_free: int = 5
    """GUANAI_SIGN_IN_FAILURES_FREE: failed sign-ins per account (four times as many per address)
    before each further one doubles the wait (429 with Retry-After; 0: no throttle)."""
    key_cache_seconds: float = 2.0
    """GUANAI_KEY_CACHE_SECONDS: how often each process looks for keys erased by other processes
    (an erased person's data may still show in another process for up to this long)."""
    lookup_key: str | None = None
    """GUANAI_LOOKUP_KEY: key of the keyed hashes that find people by a sealed number (an ID
    number on import, an account's phone at sign-in: infrastructure/lookup_hash.py), 32+ chars, never stored in the database and
    never rotated; every process that imports or registers people must share it. Unset: generated
    once into the data directory (``lookup-key``)."""
    erasure_log: str | None = None
    """GUANAI_ERASURE_LOG: the file every erasure is appended to (person id, position, time) before
    it commits, kept apart from the database and its backups: ``guanai restore`` erases again
    whoever was erased after the backup. Unset: ``<data dir>-erasures.jsonl`` beside the data
    directory. Every process that erases (the API, the command line) must share it."""
    backup_passphrase: str | None = None
    """GUANAI_BACKUP_PASSPHRASE: the passphrase ``guanai backup`` seals the keys in a backup with
    and ``guanai restore`` opens them with (16+ chars); or ``--passphrase-file``."""
    import_max_bytes: int = 20 * 1024 * 1024
    """GUANAI_IMPORT_MAX_BYTES: largest spreadsheet an import accepts (bytes of the upload)."""
    import_max_unpacked_bytes: int = 200 * 1024 * 1024
    """GUANAI_IMPORT_MAX_UNPACKED_BYTES: largest uncompressed size of an XLSX's parts (a zip bomb
    is refused before it is parsed)."""
    import_keep_days: int = 7
    """GUANAI_IMPORT_KEEP_DAYS: how long an uploaded file is kept, encrypted, for its report
    workbook and for resuming its import; then it is deleted (the report's JSON stays)."""
    metrics_token: str | None = None
    """GUANAI_METRICS_TOKEN: when set, ``/metrics`` (the API's, and each worker's endpoint) answers
    only ``Authorization: Bearer <token>``; unset, whoever reaches the port may scrape."""
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] | None = None
    """GUANAI_METRICS_PORT: where a projector, relay, router, escalator or scheduler run as its own
    process serves ``/metrics`` (0: a free port). Unset: none (``guanai serve`` shows all on the API's)."""
    metrics_host: str = "127.0.0.1"
    """GUANAI_METRICS_HOST: the address a worker's metrics endpoint listens on (0.0.0.0 in a container)."""

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def embedded_nats(self) -> bool:
        return self.nats_url is None


ENV_PREFIX = "GUANAI_"


def env_names() -> dict[str, str]:
    """Environment variable name for every setting."""
    return {f: ENV_PREFIX + f.upper() for f in Settings.__struct_fields__}


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    environ = dict(os.environ if environ is None else environ)
    raw = {f: environ[name] for f, name in env_names().items() if environ.get(name, "") != ""}
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as e:
        # msgspec names the field as `$.port`; name the variable instead.
        message = str(e)
        for field, name in env_names().items():
            message = message.replace(f"`$.{field}`", name)
        raise SettingsError(f"invalid setting: {message}") from None


def nats_servers(url: str) -> list[str]:
    """GUANAI_NATS_URL names one server, or the servers of a cluster separated by commas
    (``nats://nats-1:4222,nats://nats-2:4222,nats://nats-3:4222``): a client starts on any of
    them that answers, and reconnects to another when its server goes away."""
    return [part.strip() for part in url.split(",") if part.strip()]


def redacted_url(url: str) -> str:
    """``url`` without its password (fit for a log line or an answer: the host and port are what
    a reader needs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
