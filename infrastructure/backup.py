"""Backups that restore: one archive holding a consistent dump of the database, the keys sealed
under a passphrase, and a manifest; and the pieces of a restore into an empty place.

The archive (an uncompressed tar; the dump is compressed already):

- ``manifest.json`` (in the clear, no secrets): format, backup id, time, the store's origin,
  suite and master key id, the position of its last event and the chain's head at that position,
  counts, the ``pg_dump`` used, and the SHA-256 and size of every other member.
- ``database.dump``: ``pg_dump --format=custom`` of the whole database, taken inside a
  repeatable-read transaction whose snapshot the manifest's figures were read in
  (``pg_export_snapshot``): the dump and the manifest describe one instant.
- ``keys.sealed`` (unless ``--no-keys``): the secrets that are not in the database (master key,
  chain key, lookup key, token signing key, checkpoint signing key) as JSON, sealed with
  AES-256-GCM under a key derived from a passphrase by scrypt (n=2^17, r=8, p=1), the manifest's
  id and position bound in as associated data.

Why the keys may travel sealed in the backup: a restore needs them all (without the master key
every person's data is lost; without the chain key the log cannot be verified), and a backup
that restores only with secrets kept somewhere else fails exactly when that somewhere is gone
too. Sealed under a passphrase kept apart (an envelope in the county's safe, a password
manager), a stolen archive alone opens nothing personal. It is weaker than keys never leaving
their place (a weak passphrase can be guessed offline, hence scrypt and 16 characters at
least), so ``--no-keys`` leaves them out and the restore then takes them from the settings.

Erasure after a backup: the archive's key table still holds the erased person's wrapped key.
``erasures_since`` finds, in the erasure log kept apart (``infrastructure/erasure_log.py``),
every erasure of this store newer than the backup's last event; the restore erases those
people again before anything serves the restored store.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from uuid import UUID

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from psycopg import IsolationLevel, sql

from application.care import CareApplication
from application.errors import NotFoundError
from domain.base import CommandMeta
from domain.person import Person
from domain.vocabulary import ActorRole
from infrastructure.chain import CHAIN_SUFFIX, ChainKey
from infrastructure.erasure_log import Erasure, ErasureLog
from infrastructure.lookup_hash import LOOKUP_KEY_FILE
from infrastructure.merkle import SUITE_TABLE
from infrastructure.personal_data import KEYS_TABLE, MASTER_KEY_FILE, MASTER_TABLE, MasterKey
from infrastructure.suites import SIGNING_KEY_FILE, suite
from infrastructure.verify import EVENTS, Checkpoint

FORMAT = 1
KIND = "guanai-backup"
MANIFEST, DUMP, KEYS = "manifest.json", "database.dump", "keys.sealed"
MIN_PASSPHRASE = 16
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1
CHUNK = 1 << 20

# The secrets a store needs that are not in its database: the setting that gives each, and the
# file in the data directory that holds it when the setting is unset.
SECRETS: dict[str, tuple[str, str]] = {
    "master_key": ("GUANAI_MASTER_KEY", MASTER_KEY_FILE),
    "chain_key": ("GUANAI_CHAIN_KEY", "chain-key"),  # infrastructure/chain.py
    "lookup_key": ("GUANAI_LOOKUP_KEY", LOOKUP_KEY_FILE),
    "jwt_secret": ("GUANAI_JWT_SECRET", "jwt-secret"),  # api/auth.py
    "signing_key": ("GUANAI_SIGNING_KEY", SIGNING_KEY_FILE),
}


class BackupError(Exception):
    """A backup cannot be made or restored: the message says why and what to do."""


# ---- the keys --------------------------------------------------------------------------------------


def gather_secrets(configured: dict[str, str | None], data_dir: Path, previous_master_keys: str = "") -> dict[str, str]:
    """Each secret from its setting (``configured``, by name) or its data directory file; those
    that exist (a store that never signed a checkpoint has no signing key yet). The master key
    kept is the one the store is under (``select_master_key``)."""
    found: dict[str, str] = {}
    for name, (_, filename) in SECRETS.items():
        value = configured.get(name)
        if not value and (data_dir / filename).exists():
            value = (data_dir / filename).read_text().strip()
        if value:
            found[name] = value
    earlier = [s.strip() for s in previous_master_keys.split(",") if s.strip()]
    earlier += [p.read_text().strip() for p in sorted(data_dir.glob(f"{MASTER_KEY_FILE}.retired-*"))]
    if earlier:
        found["_earlier_master_keys"] = ",".join(earlier)
    return found


def select_master_key(found: dict[str, str], store_key_id: str | None, suite_name: str) -> dict[str, str]:
    """``found`` with ``master_key`` the secret the store's keys are wrapped by (during a rotation
    it may be a previous one): a restore brings back that store, so it needs that key."""
    out = {k: v for k, v in found.items() if not k.startswith("_")}
    if store_key_id is None:
        return out
    the_suite = suite(suite_name)
    candidates = [found.get("master_key", ""), *found.get("_earlier_master_keys", "").split(",")]
    for secret in candidates:
        if secret and MasterKey(secret, suite=the_suite).key_id == store_key_id:
            out["master_key"] = secret
            return out
    raise BackupError(
        f"the store's keys are wrapped by master key {store_key_id}, and neither GUANAI_MASTER_KEY, "
        "GUANAI_PREVIOUS_MASTER_KEYS nor the data directory holds it: a backup without it could never be read"
    )


def check_passphrase(passphrase: str | None) -> str:
    if not passphrase:
        raise BackupError(
            "no passphrase: set GUANAI_BACKUP_PASSPHRASE or give --passphrase-file (or --no-keys to leave the keys out)"
        )
    if len(passphrase) < MIN_PASSPHRASE:
        raise BackupError(f"the passphrase must be at least {MIN_PASSPHRASE} characters")
    return passphrase


def _kek(passphrase: str, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(passphrase.encode())


def _keys_aad(manifest: dict[str, Any]) -> bytes:
    return f"guanai-backup-keys-v1\0{manifest['id']}\0{manifest['store']['origin']}".encode()


def seal_secrets(found: dict[str, str], passphrase: str, manifest: dict[str, Any]) -> bytes:
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    sealed = AESGCM(_kek(passphrase, salt)).encrypt(nonce, json.dumps(found).encode(), _keys_aad(manifest))
    doc = {"kdf": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": salt.hex(), "aead": "AES-256-GCM",
           "nonce": nonce.hex(), "sealed": sealed.hex()}  # fmt: skip
    return json.dumps(doc).encode()


def open_secrets(data: bytes, passphrase: str, manifest: dict[str, Any]) -> dict[str, str]:
    try:
        doc = json.loads(data)
        if doc.get("kdf") != "scrypt":
            raise ValueError(f"unknown key derivation {doc.get('kdf')!r}")
        kek = Scrypt(salt=bytes.fromhex(doc["salt"]), length=32, n=doc["n"], r=doc["r"], p=doc["p"]).derive(
            passphrase.encode()
        )
        sealed, nonce = bytes.fromhex(doc["sealed"]), bytes.fromhex(doc["nonce"])
    except (ValueError, KeyError, TypeError) as e:
        raise BackupError(f"the keys of this backup are damaged ({e})") from None
    try:
        plain = AESGCM(kek).decrypt(nonce, sealed, _keys_aad(manifest))
    except InvalidTag:
        raise BackupError(
            "wrong passphrase: the keys of this backup do not open with it (or they were changed)"
        ) from None
    found = json.loads(plain)
    return {k: str(v) for k, v in found.items() if k in SECRETS}


# ---- PostgreSQL's tools ----------------------------------------------------------------------------


def _tool_candidates(name: str) -> Iterator[Path]:
    spec = importlib.util.find_spec("pgserver")  # the embedded PostgreSQL ships its tools
    if spec is not None and spec.origin is not None:
        yield Path(spec.origin).parent / "pginstall" / "bin" / name
    found = shutil.which(name)
    if found:
        yield Path(found)
    yield from sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))


def _major(tool: Path) -> int | None:
    try:
        out = subprocess.run([str(tool), "--version"], capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(m.group(1)) if m else None


def pg_tool(name: str, at_least: int) -> tuple[Path, int]:
    """``pg_dump`` or ``pg_restore`` of major version ``at_least`` if there is one, else the
    newest above it (a tool reads servers and archives of its own version and older)."""
    seen: dict[Path, int] = {}
    for path in _tool_candidates(name):
        if path.exists() and path not in seen and (major := _major(path)) is not None:
            seen[path] = major
    fitting = sorted(((m, p) for p, m in seen.items() if m >= at_least), key=lambda mp: (mp[0] != at_least, -mp[0]))
    if not fitting:
        have = ", ".join(f"{p} ({m})" for p, m in seen.items()) or "none"
        raise BackupError(f"no {name} of PostgreSQL {at_least} or newer (found: {have}); install the client tools")
    return fitting[0][1], fitting[0][0]


def server_major(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SHOW server_version_num").fetchone()
    assert row is not None
    return int(row[0]) // 10000


# ---- making a backup -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """For ``guanai.cli.progress.ProgressBar``: tables dumped or restored of all."""

    done: int
    total: int
    rate: float
    eta: float | None


@dataclass
class StoreFacts:
    origin: str
    suite: str
    master_key_id: str | None
    last_position: int
    events: int
    live_keys: int
    destroyed_keys: int
    tables: int
    chain_head: dict[str, Any] | None = None


def _store_facts(conn: psycopg.Connection[Any], chain_key: ChainKey | None) -> StoreFacts:
    def one(query: str | sql.Composed) -> Any:
        row = conn.execute(query).fetchone()
        return None if row is None else row[0]

    try:
        origin_suite = conn.execute(sql.SQL("SELECT origin, suite FROM {}").format(sql.Identifier(SUITE_TABLE)))
        row = origin_suite.fetchone()
    except psycopg.errors.UndefinedTable:
        raise BackupError("this database holds no Guanai store (run `guanai migrate` to create one)") from None
    if row is None:
        raise BackupError("this database's store records no origin: it was not created by this version")
    events = sql.Identifier(EVENTS)
    head = conn.execute(
        sql.SQL("SELECT notification_id, mac FROM {} ORDER BY notification_id DESC LIMIT 1").format(
            sql.Identifier(EVENTS + CHAIN_SUFFIX)
        )
    ).fetchone()
    chain_head = None
    if head is not None and chain_key is not None:
        at = datetime.now(UTC)
        cp = Checkpoint("events", head[0], bytes(head[1]).hex(), at, chain_key.fingerprint)
        chain_head = {"log": cp.log, "position": cp.position, "digest": cp.digest, "at": at.isoformat(), "key": cp.key}
    keys = conn.execute(
        sql.SQL("SELECT count(*) FILTER (WHERE wrapped IS NOT NULL), count(*) FILTER (WHERE wrapped IS NULL) FROM {}")
        .format(sql.Identifier(KEYS_TABLE))
    ).fetchone()  # fmt: skip
    assert keys is not None
    return StoreFacts(
        origin=row[0],
        suite=row[1],
        master_key_id=one(sql.SQL("SELECT key_id FROM {}").format(sql.Identifier(MASTER_TABLE))),
        last_position=one(sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(events)),
        events=one(sql.SQL("SELECT count(*) FROM {}").format(events)),
        live_keys=keys[0],
        destroyed_keys=keys[1],
        tables=one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_toast%'"
        ),
        chain_head=chain_head,
    )


@contextmanager
def store_snapshot(database_url: str) -> Iterator[tuple[psycopg.Connection[Any], str]]:
    """A repeatable-read transaction and its exported snapshot, held open while the dump runs."""
    with psycopg.connect(database_url) as conn:
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            row = conn.execute("SELECT pg_export_snapshot()").fetchone()
            assert row is not None
            yield conn, row[0]


def _run_with_progress(
    command: list[str], pattern: re.Pattern[str], total: int, progress: Callable[[Progress], None] | None
) -> str:
    """Run a PostgreSQL tool in verbose mode, counting the lines that mark a table done; its
    stderr (for an error message) when it fails."""
    started, done = time.monotonic(), 0
    tail: list[str] = []
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, errors="replace")
    assert proc.stderr is not None
    for line in proc.stderr:
        tail = [*tail[-20:], line.rstrip()]
        if pattern.search(line):
            done += 1
            if progress is not None:
                rate = done / max(time.monotonic() - started, 1e-9)
                progress(Progress(done, max(total, done), rate, max(total - done, 0) / rate if rate else None))
    if proc.wait() != 0:
        errors = [t for t in tail if "error" in t.lower()] or tail[-3:]
        raise BackupError(f"{Path(command[0]).name} failed: " + " | ".join(errors))
    return "\n".join(tail)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: dict[str, Any]
    seconds: float


def backup_name(facts_origin: str, last_position: int, at: datetime) -> str:
    short = facts_origin.rsplit("/", 1)[-1][:8]
    return f"guanai-backup-{short}-{at:%Y%m%dT%H%M%SZ}-{last_position}.tar"


def create_backup(
    database_url: str,
    out: Path,
    *,
    found_secrets: dict[str, str],
    passphrase: str | None,
    include_keys: bool = True,
    version: str = "",
    progress: Callable[[Progress], None] | None = None,
) -> BackupResult:
    """Dump the store and write the archive to ``out`` (a file, or a directory to name one in).
    Written under a temporary name and renamed once complete and flushed: an interrupted backup
    leaves no archive that looks whole."""
    started = time.monotonic()
    if include_keys:
        passphrase = check_passphrase(passphrase)
    chain_secret = found_secrets.get("chain_key")
    chain_key = ChainKey(chain_secret) if chain_secret else None
    at = datetime.now(UTC)
    target_dir = out if out.is_dir() else out.parent
    if not target_dir.exists():
        raise BackupError(f"{target_dir} does not exist")
    if out.exists() and not out.is_dir():
        raise BackupError(f"{out} exists already: a backup never overwrites another; name a new file or a directory")
    with tempfile.TemporaryDirectory(prefix=".guanai-backup-", dir=target_dir) as tmp:
        dump = Path(tmp) / DUMP
        with store_snapshot(database_url) as (conn, snapshot):
            facts = _store_facts(conn, chain_key)
            tool, _ = pg_tool("pg_dump", server_major(conn))
            tool_version = subprocess.run(
                [str(tool), "--version"], capture_output=True, text=True, check=True
            ).stdout.strip()
            _run_with_progress(
                [str(tool), "--format=custom", "--verbose", f"--snapshot={snapshot}", "--no-owner",
                 "--no-privileges", f"--file={dump}", f"--dbname={database_url}"],
                re.compile(r"dumping contents of table"), facts.tables, progress,
            )  # fmt: skip
        keep = select_master_key(found_secrets, facts.master_key_id, facts.suite) if include_keys else {}
        manifest: dict[str, Any] = {
            "kind": KIND,
            "format": FORMAT,
            "id": str(uuid.uuid4()),
            "created_at": at.isoformat(),
            "guanai_version": version,
            "pg_dump": tool_version,
            "store": {
                "origin": facts.origin,
                "suite": facts.suite,
                "master_key_id": facts.master_key_id,
                "last_position": facts.last_position,
                "events": facts.events,
                "live_keys": facts.live_keys,
                "destroyed_keys": facts.destroyed_keys,
                "tables": facts.tables,
                "chain_head": facts.chain_head,
            },
            "keys": sorted(keep) if include_keys else None,
            "files": {},
        }
        members = [dump]
        if include_keys:
            assert passphrase is not None
            sealed = Path(tmp) / KEYS
            sealed.write_bytes(seal_secrets(keep, passphrase, manifest))
            members.append(sealed)
        for member in members:
            manifest["files"][member.name] = {"sha256": _sha256(member), "bytes": member.stat().st_size}
        manifest_file = Path(tmp) / MANIFEST
        manifest_file.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        final = out / backup_name(facts.origin, facts.last_position, at) if out.is_dir() else out
        partial = Path(tmp) / (final.name + ".partial")
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            for member in (manifest_file, *members):
                tar.add(member, arcname=member.name)
        partial.chmod(0o600)  # sealed data and, sealed too, the keys: for the owner only
        _fsync(partial)
        os.replace(partial, final)
        _fsync(final.parent)
    return BackupResult(final, manifest, time.monotonic() - started)


# ---- reading a backup ----------------------------------------------------------------------------


@dataclass
class OpenedBackup:
    manifest: dict[str, Any]
    dump: Path
    sealed_keys: bytes | None
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def last_position(self) -> int:
        return int(self.manifest["store"]["last_position"])

    @property
    def origin(self) -> str:
        return str(self.manifest["store"]["origin"])


def open_backup(path: Path, workdir: Path) -> OpenedBackup:
    """Unpack ``path`` into ``workdir`` and check it: the manifest, every member's size and
    checksum. Anything amiss is a ``BackupError`` naming it; nothing outside ``workdir`` is touched."""
    if not path.exists():
        raise BackupError(f"{path}: no such file")
    if path.is_dir():
        raise BackupError(f"{path} is a directory: name the backup file (guanai-backup-*.tar)")
    try:
        with tarfile.open(path, "r:") as tar:
            names = tar.getnames()
            if MANIFEST not in names:
                raise BackupError(f"{path} is not a Guanai backup: it has no {MANIFEST}")
            for member in tar.getmembers():
                if member.name not in (MANIFEST, DUMP, KEYS) or not member.isfile():
                    raise BackupError(f"{path} holds an unexpected member {member.name!r}: not a Guanai backup")
                source = tar.extractfile(member)
                assert source is not None
                _copy(source, workdir / member.name)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise BackupError(f"{path} is damaged or not a backup archive ({e})") from None
    try:
        manifest = json.loads((workdir / MANIFEST).read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise BackupError(f"the manifest of {path} is damaged ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise BackupError(f"{path} is not a Guanai backup (its manifest names no {KIND})")
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path} is a backup of format {manifest.get('format')}; this version reads format {FORMAT}")
    files = manifest.get("files") or {}
    if DUMP not in files:
        raise BackupError(f"the manifest of {path} lists no {DUMP}")
    for name, expected in files.items():
        member = workdir / name
        if not member.exists():
            raise BackupError(f"{path} is incomplete: {name} is missing")
        if member.stat().st_size != expected["bytes"] or _sha256(member) != expected["sha256"]:
            raise BackupError(f"{path} is damaged: {name} does not match the checksum in its manifest")
    sealed = (workdir / KEYS).read_bytes() if KEYS in files else None
    return OpenedBackup(manifest, workdir / DUMP, sealed)


def _copy(source: IO[bytes], target: Path) -> None:
    with target.open("wb") as out:
        while chunk := source.read(CHUNK):
            out.write(chunk)


# ---- restoring -------------------------------------------------------------------------------------


def database_is_empty(database_url: str) -> tuple[bool, str]:
    """(empty, what is there): a restore goes only into a database without tables of its own."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1 LIMIT 4"
        ).fetchall()
    return not rows, ", ".join(r[0] for r in rows)


def data_dir_leftovers(data_dir: Path, keep: set[Path]) -> list[str]:
    """What a data directory holds, other than ``keep`` (the erasure log, if it was put there)."""
    if not data_dir.exists():
        return []
    return sorted(p.name for p in data_dir.iterdir() if p.resolve() not in keep)


def restore_dump(
    database_url: str, opened: OpenedBackup, *, progress: Callable[[Progress], None] | None = None
) -> None:
    """``pg_restore`` in one transaction, stopping at the first error: all or nothing."""
    dumped_by = re.search(r"(\d+)", str(opened.manifest.get("pg_dump", "")))
    with psycopg.connect(database_url) as conn:
        need = max(server_major(conn), int(dumped_by.group(1)) if dumped_by else 0)
    tool, _ = pg_tool("pg_restore", need)
    total = int(opened.manifest["store"].get("tables") or 0)
    _run_with_progress(
        [str(tool), "--verbose", "--single-transaction", "--exit-on-error", "--no-owner", "--no-privileges",
         f"--dbname={database_url}", str(opened.dump)],
        re.compile(r"processing data for table"), total, progress,
    )  # fmt: skip


def wipe_database(database_url: str) -> None:
    """Undo a restore that failed after ``pg_restore`` committed: the database was empty before."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public AUTHORIZATION pg_database_owner")
        conn.execute("GRANT USAGE ON SCHEMA public TO PUBLIC")


def write_key_files(data_dir: Path, restored: dict[str, str]) -> list[Path]:
    """The backup's secrets into the data directory's key files (mode 0600)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, value in restored.items():
        path = data_dir / SECRETS[name][1]
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, (value + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        written.append(path)
    return written


def check_configured_secrets(
    restored: dict[str, str], configured: dict[str, str | None], manifest: dict[str, Any]
) -> None:
    """A key set in the environment must be the backup's (else the restored store would not open
    or not verify); the master key is compared by its id, which the manifest names."""
    for name, value in configured.items():
        if not value:
            continue
        setting = SECRETS[name][0]
        if name == "master_key":
            wanted = manifest["store"].get("master_key_id")
            held = MasterKey(value, suite=suite(manifest["store"]["suite"])).key_id
            if wanted is not None and held != wanted:
                raise BackupError(
                    f"{setting} is master key {held}, and this backup's store is under {wanted}: set {setting} to "
                    "the backup's key (or unset it to use the one sealed in the backup)"
                )
        elif name in restored and restored[name] != value:
            raise BackupError(
                f"{setting} is not the key in this backup: unset it to use the backup's, or set it to the backup's key"
            )


def missing_secrets(restored: dict[str, str], configured: dict[str, str | None], data_dir: Path) -> list[str]:
    """The settings a restore still needs: the master, chain and lookup keys must come from
    somewhere (the backup, the environment, or files already put in the data directory)."""
    needed = ("master_key", "chain_key", "lookup_key")
    return [
        SECRETS[n][0]
        for n in needed
        if n not in restored and not configured.get(n) and not (data_dir / SECRETS[n][1]).exists()
    ]


# ---- erasures made after the backup ----------------------------------------------------------------


@dataclass
class Replay:
    erased: list[str] = field(default_factory=list)  # erased again now
    already: list[str] = field(default_factory=list)  # erased in the backup already (an entry cut short)
    absent: list[str] = field(default_factory=list)  # registered after the backup: not in it at all


def replay_erasures(app: CareApplication, entries: list[Erasure], backup_id: str) -> Replay:
    """Erase again, through the application (``Person.Erased`` stored, keys destroyed, pairings
    left, in one transaction each), every person of ``entries`` the restored store still holds
    unerased. Each replayed erasure is logged again, under its new position."""
    out = Replay()
    for entry in entries:
        try:
            person = app.load(Person, UUID(entry.person))
        except NotFoundError:
            out.absent.append(entry.person)
            continue
        if person.erased:
            out.already.append(entry.person)
            continue
        occurred = datetime.fromisoformat(entry.occurred_at) if entry.occurred_at else entry.at
        meta = CommandMeta(
            actor_id=entry.by or "restore",
            actor_role=entry.role or ActorRole.ADMINISTRATOR.value,
            correlation_id=f"restore:{backup_id}",
            occurred_at=occurred,
        )
        app.erase_person(person.id, entry.reason or "erased after the backup; replayed by guanai restore", meta)
        out.erased.append(entry.person)
    return out


def store_position(conn: psycopg.Connection[Any]) -> tuple[str, int]:
    """(the store's origin, the position of its newest event): where a replay of the erasure
    log starts for a store recovered to a point in time."""
    try:
        row = conn.execute(sql.SQL("SELECT origin FROM {}").format(sql.Identifier(SUITE_TABLE))).fetchone()
        newest = conn.execute(
            sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(sql.Identifier(EVENTS))
        ).fetchone()
    except psycopg.errors.UndefinedTable:
        raise BackupError("this database holds no Guanai store") from None
    if row is None or newest is None:
        raise BackupError("this database's store records no origin: it was not created by this version")
    return str(row[0]), int(newest[0])


def erasures_since(log: ErasureLog, opened: OpenedBackup) -> list[Erasure]:
    """The erasure log's entries of the backup's store newer than its last event."""
    return log.since(opened.origin, opened.last_position)
