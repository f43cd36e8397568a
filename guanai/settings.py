"""Typed settings, read once from the environment. Every variable is documented here and in
README.md; a test keeps compose.yaml in line with this list.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec


class SettingsError(ValueError):
    """A setting in the environment has a value that cannot be used."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str | None = None
    """GUANAI_DATABASE_URL: PostgreSQL URL (postgresql://user:pass@host:port/db). Unset: embedded."""
    nats_url: str | None = None
    """GUANAI_NATS_URL: NATS server URL with JetStream enabled (nats://host:4222). Unset: embedded."""
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
    """GUANAI_TOKEN_TTL_HOURS: lifetime of tokens issued by ``guanai token``."""
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
    command_retries: int = 5
    """GUANAI_COMMAND_RETRIES: how often a command is re-decided after a concurrent write."""

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
