"""``guanai backup`` and ``guanai restore``: an archive of the store that restores, and the
restore into an empty place (``infrastructure/backup.py`` has the archive and the pieces).

A restore does, in order, and undoes everything it did when a step fails (the target was empty):
check the archive (checksums) and open its keys (the passphrase), refuse a target that is not
empty, write the keys into the data directory, ``pg_restore`` in one transaction, erase again
every person the erasure log says was erased after the backup, rebuild every view, and verify
the audit chain up to the head the backup recorded. A marker file in the data directory
(``restore-in-progress``) makes every other command refuse the data directory until the restore
has finished, so that a restore killed half-way is never served.
"""

from __future__ import annotations

import argparse
import getpass
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg

from guanai import bootstrap
from guanai.bootstrap import Process
from guanai.cli.progress import ProgressBar
from guanai.cli.services import RESTORE_MARKER, migrate, services
from infrastructure import backup as bk
from infrastructure.audit import Audit
from infrastructure.erasure_log import ErasureLog, ErasureLogError, default_path
from infrastructure.personal_data import MasterKeyError, SealError
from infrastructure.settings import Settings
from infrastructure.verify import Checkpoint
from projections import all_projections
from projections.rebuild import REBUILD_GC_THRESHOLD


def _configured(settings: Settings) -> dict[str, str | None]:
    return {name: getattr(settings, name) for name in bk.SECRETS}


def _passphrase(settings: Settings, args: argparse.Namespace, *, confirm: bool) -> str | None:
    if args.passphrase_file is not None:
        try:
            return str(args.passphrase_file.read_text()).rstrip("\r\n")
        except OSError as e:
            raise bk.BackupError(f"the passphrase file {args.passphrase_file} cannot be read ({e.strerror})") from None
    if settings.backup_passphrase:
        return settings.backup_passphrase
    if sys.stdin.isatty():
        first = getpass.getpass("backup passphrase: ")
        if confirm and getpass.getpass("again: ") != first:
            raise bk.BackupError("the two passphrases differ")
        return first
    return None


def _erasure_log_path(settings: Settings) -> Path:
    return (
        Path(settings.erasure_log).expanduser().resolve() if settings.erasure_log else default_path(settings.data_path)
    )


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    """``backup --out FILE|DIR [--no-keys] [--passphrase-file F]``: the archive, with a progress bar."""
    try:
        passphrase = None if args.no_keys else bk.check_passphrase(_passphrase(settings, args, confirm=True))
        found = bk.gather_secrets(_configured(settings), settings.data_path, settings.previous_master_keys)
        with services(settings, need_nats=False) as (database_url, _):
            bar = ProgressBar("backup", unit="tables")
            result = bk.create_backup(
                database_url,
                args.out.expanduser().resolve(),
                found_secrets=found,
                passphrase=passphrase,
                include_keys=not args.no_keys,
                version=metadata.version("guanai"),
                progress=bar.update,
            )
    except (bk.BackupError, MasterKeyError) as e:
        print(f"guanai backup: {e}", file=sys.stderr)
        return 1
    except psycopg.Error as e:
        print(f"guanai backup: the database refused ({type(e).__name__}: {str(e).strip()})", file=sys.stderr)
        return 1
    store = result.manifest["store"]
    size = result.path.stat().st_size
    bar.finish(
        f"{store['events']:,} events up to position {store['last_position']:,}, {size / 1e6:,.1f} MB "
        f"in {result.seconds:.1f}s"
    )
    keys = (
        "left out (--no-keys): a restore takes them from the settings; keep them apart, and safe"
        if args.no_keys
        else f"{', '.join(result.manifest['keys'])} sealed under the passphrase: keep the passphrase apart from the backups"
    )
    print(result.path)
    print(f"guanai backup: keys {keys}", file=sys.stderr)
    return 0


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    """``restore FILE``: into an empty data directory (and an empty database when one is
    configured); exit 1 with nothing left behind when anything fails."""
    data_dir = settings.data_path
    log_path = _erasure_log_path(settings)
    started = time.monotonic()
    work_parent = data_dir.parent if data_dir.parent.exists() else Path(tempfile.gettempdir())
    try:
        with tempfile.TemporaryDirectory(prefix=".guanai-restore-", dir=work_parent) as work:
            return _restore(settings, args, Path(work), data_dir, log_path, started)
    except (bk.BackupError, ErasureLogError) as e:
        print(f"guanai restore: {e}", file=sys.stderr)
        return 1


def _restore(
    settings: Settings, args: argparse.Namespace, work: Path, data_dir: Path, log_path: Path, started: float
) -> int:
    opened = bk.open_backup(args.file.expanduser().resolve(), work)
    manifest, store = opened.manifest, opened.manifest["store"]
    print(
        f"guanai restore: backup {manifest['id']} of {manifest['created_at']}: {store['events']:,} events up to "
        f"position {store['last_position']:,} (checksums verified)",
        file=sys.stderr,
    )
    restored: dict[str, str] = {}
    if opened.sealed_keys is not None:
        passphrase = _passphrase(settings, args, confirm=False)
        if not passphrase:
            raise bk.BackupError(
                "this backup's keys are sealed: set GUANAI_BACKUP_PASSPHRASE or give --passphrase-file"
            )
        restored = bk.open_secrets(opened.sealed_keys, passphrase, manifest)

    # The target: nothing there but key files put in place by hand and the erasure log.
    key_files = {data_dir / filename for _, filename in bk.SECRETS.values()}
    leftovers = bk.data_dir_leftovers(data_dir, {log_path, *(p.resolve() for p in key_files)})
    if RESTORE_MARKER in leftovers:
        raise bk.BackupError(
            f"a restore into {data_dir} did not finish: remove the directory (rm -r {data_dir}) and restore again"
        )
    if leftovers:
        raise bk.BackupError(
            f"the data directory {data_dir} is not empty (it holds {', '.join(leftovers[:5])}): a restore goes into "
            "an empty one; move it away or set GUANAI_DATA_DIR to a new directory"
        )
    present = {n: (data_dir / f).read_text().strip() for n, (_, f) in bk.SECRETS.items() if (data_dir / f).exists()}
    held = {n: v or present.get(n) for n, v in _configured(settings).items()}
    bk.check_configured_secrets(restored, held, manifest)
    if missing := bk.missing_secrets(restored, held, data_dir):
        raise bk.BackupError(
            f"this backup holds no keys, and {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: "
            "set them to the keys of the backed-up store (or put their files in the data directory)"
        )
    if settings.database_url is not None:
        empty, what = bk.database_is_empty(settings.database_url)
        if not empty:
            raise bk.BackupError(
                f"the database of GUANAI_DATABASE_URL is not empty (it holds {what}): a restore goes into an empty "
                "database; create a new one (createdb) and point GUANAI_DATABASE_URL at it"
            )
    if not log_path.exists() and not args.no_erasure_log:
        raise bk.BackupError(
            f"there is no erasure log at {log_path}: erasures made after the backup could not be applied again. Point "
            "GUANAI_ERASURE_LOG at the log of the backed-up installation; only if no one was erased since the "
            "backup (or ever), run again with --no-erasure-log"
        )
    entries = bk.erasures_since(ErasureLog(log_path), opened)

    before = {p.resolve() for p in data_dir.iterdir()} if data_dir.exists() else None
    data_dir.mkdir(parents=True, exist_ok=True)
    marker = data_dir / RESTORE_MARKER
    marker.write_text(json.dumps({"backup": manifest["id"], "started": datetime.now().astimezone().isoformat()}))
    dumped = False
    try:
        bk.write_key_files(data_dir, {n: v for n, v in restored.items() if not held.get(n)})
        with services(settings, need_nats=False, restoring=True) as (database_url, _):
            if settings.database_url is None:
                empty, what = bk.database_is_empty(database_url)
                if not empty:
                    raise bk.BackupError(f"the embedded database is not empty (it holds {what})")
            bar = ProgressBar("restore", unit="tables")
            dumped = True
            bk.restore_dump(database_url, opened, progress=bar.update)
            bar.finish(f"{store['events']:,} events restored in one transaction")
            migrate(settings, database_url)  # what this version adds to an older store's tables
            replay = _replay(settings, database_url, opened, entries)
            _rebuild_views(settings, database_url)
            _verify(settings, database_url, store.get("chain_head"))
    except BaseException as e:
        _undo(settings, data_dir, before, dumped)
        if isinstance(e, bk.BackupError | ErasureLogError):
            raise
        if isinstance(e, MasterKeyError | SealError | psycopg.Error):
            raise bk.BackupError(f"{type(e).__name__}: {str(e).strip()}; nothing was restored") from None
        raise
    marker.unlink()
    print(
        f"guanai restore: done in {time.monotonic() - started:.1f}s into {data_dir}"
        + (" and the database of GUANAI_DATABASE_URL" if settings.database_url else "")
        + f"; erasures after the backup: {len(replay.erased)} applied again, {len(replay.already)} already in it, "
        f"{len(replay.absent)} of people registered after it",
        file=sys.stderr,
    )
    return 0


def _replay(settings: Settings, database_url: str, opened: bk.OpenedBackup, entries: list[Any]) -> bk.Replay:
    app = bootstrap.care_application(settings, Process.CLI, database_url, pool_size=2)
    try:
        app.store.key_store.check_master_key()  # type: ignore[attr-defined]  # the key opens this store
        replay = bk.replay_erasures(app, entries, opened.manifest["id"])
    finally:
        app.close()
    for person in replay.erased:
        print(f"  erased again: person {person} (erased after the backup)", file=sys.stderr)
    return replay


def _rebuild_views(settings: Settings, database_url: str) -> None:
    with bootstrap.projector(settings, database_url, pool_size=2) as projector:
        for name in [p.name for p in all_projections()]:
            bar = ProgressBar(name)
            # Nothing else runs in this process while it restores: the collector's setting is safe.
            events = projector.runner.rebuild(name, progress=bar.update, gc_threshold=REBUILD_GC_THRESHOLD)
            bar.finish(f"view rebuilt from {events:,} events")


def _verify(settings: Settings, database_url: str, head: dict[str, Any] | None) -> None:
    app = bootstrap.care_application(settings, Process.CLI, database_url, pool_size=2)
    try:
        held = None
        if head is not None:
            held = Checkpoint(head["log"], head["position"], head["digest"], datetime.fromisoformat(head["at"]),
                              head["key"])  # fmt: skip
        bar = ProgressBar("audit chain", unit="rows")
        started = time.monotonic()

        def progress(position: int, end: int, checked: int) -> None:
            rate = checked / max(time.monotonic() - started, 1e-9)
            bar.update(bk.Progress(position, end, rate, (end - position) / rate if rate else None))

        result = Audit(app, database_url).verify(checkpoint=held, progress=progress)
        bar.finish()
    finally:
        app.close()
    if not result.ok:
        first = result.failures[0]
        raise bk.BackupError(
            f"the restored audit chain does not verify: at position {first.position}: {first.kind}: {first.detail}"
        )
    print(
        f"  audit chain    {result.checked:,} rows verified"
        + (f", the backup's head at position {head['position']:,} matches" if head else ""),
        file=sys.stderr,
    )


def _undo(settings: Settings, data_dir: Path, before: set[Path] | None, dumped: bool) -> None:
    """Leave the target as it was: what the data directory held before (``before``; None: it did
    not exist) stays, everything else goes; a configured database is emptied again."""
    if dumped and settings.database_url is not None:
        try:
            bk.wipe_database(settings.database_url)
        except psycopg.Error as e:
            print(f"guanai restore: could not empty the database again ({e}): drop it by hand", file=sys.stderr)
    for entry in data_dir.iterdir() if data_dir.exists() else []:
        if entry.resolve() in (before or set()):
            continue
        remove: Callable[[Path], Any] = shutil.rmtree if entry.is_dir() and not entry.is_symlink() else Path.unlink
        remove(entry)
    if before is None and data_dir.exists() and not any(data_dir.iterdir()):
        data_dir.rmdir()


def cmd_erasures(settings: Settings, args: argparse.Namespace) -> int:
    """``erasures replay``: erase again, in this store, every person the erasure log says was
    erased after the store's newest event (after a point-in-time recovery of the database, before
    anything serves it); ``erasures list``: the log's entries of this store."""
    log = ErasureLog(_erasure_log_path(settings))
    try:
        with services(settings, need_nats=False) as (database_url, _):
            with psycopg.connect(database_url) as conn:
                origin, position = bk.store_position(conn)
            if args.action == "list":
                for e in log.entries():
                    if e.store == origin:
                        print(f"{e.at.isoformat()}  position {e.position:>10,}  person {e.person}  by {e.by}")
                return 0
            entries = log.since(origin, position)
            app = bootstrap.care_application(settings, Process.CLI, database_url, pool_size=2)
            try:
                replay = bk.replay_erasures(app, entries, f"replay-{position}")
            finally:
                app.close()
    except (bk.BackupError, ErasureLogError) as e:
        print(f"guanai erasures: {e}", file=sys.stderr)
        return 1
    for person in replay.erased:
        print(f"  erased again: person {person}", file=sys.stderr)
    print(
        f"guanai erasures: {len(entries)} entries after position {position:,} in {log.path}: {len(replay.erased)} "
        f"erased again, {len(replay.already)} erased already, {len(replay.absent)} not in this store",
        file=sys.stderr,
    )
    return 0
