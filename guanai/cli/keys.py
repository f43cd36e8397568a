"""``guanai keys status|rotate``: the personal data keys: which master key wraps them, and
re-wrapping every live key under a new one."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import psycopg

from guanai.cli.progress import ProgressBar
from guanai.cli.services import migrate, services
from infrastructure import personal_data as pd
from infrastructure.merkle import store_suite
from infrastructure.settings import Settings


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    """``keys status``: the master key the store's keys are wrapped by, and the ones this process
    holds. ``keys rotate``: re-wrap every live key under a new master key, in one transaction:
    from the GUANAI_PREVIOUS_MASTER_KEYS key the store is under to GUANAI_MASTER_KEY, or, when
    the key lives in the data directory, to one generated there."""
    data_key_file = settings.data_path / pd.MASTER_KEY_FILE
    try:
        with services(settings, need_nats=False) as (database_url, _):
            migrate(settings, database_url)
            with psycopg.connect(database_url) as conn:  # the store's crypto suite wraps its keys
                suite, _ = store_suite(conn, settings.crypto_suite)
            held = None
            if settings.master_key or data_key_file.exists():
                held = pd.load_or_create_master_key(
                    settings.master_key, settings.data_path, settings.previous_master_keys, suite
                )
            if args.action == "status":
                return _keys_status(settings, database_url, held)
            bar = ProgressBar("keys", unit="keys")
            started = time.monotonic()
            retired = None
            if held is not None and settings.master_key:
                rotation = pd.rotate_to_configured_key(database_url, held, by=args.by, progress=bar.update)
            else:
                rotation, retired = pd.rotate_data_dir_master_key(
                    database_url, settings.data_path, by=args.by, progress=bar.update, suite=suite
                )
    except (pd.MasterKeyError, pd.SealError) as e:
        print(f"guanai keys: {e}", file=sys.stderr)
        return 1
    except psycopg.Error as e:
        print(f"guanai keys: the database refused ({type(e).__name__}: {str(e).strip()}): the rotation did not "
              "complete; `guanai keys status` says which key the store is under; run it again", file=sys.stderr)  # fmt: skip
        return 1
    bar.finish(
        f"{rotation.rewrapped:,} keys re-wrapped from master key {rotation.old_key_id} to {rotation.new_key_id} "
        f"in {time.monotonic() - started:.1f}s ({rotation.destroyed:,} destroyed keys left as they are)"
        if not rotation.already
        else f"the store is under master key {rotation.new_key_id} already: nothing to re-wrap"
    )
    if retired is None:
        after = (
            "processes holding the old key in GUANAI_PREVIOUS_MASTER_KEYS keep working; remove it from them once "
            "every one holds the new GUANAI_MASTER_KEY. Keep the old key with the database backups made before now: "
            "they need it."
        )
    else:
        after = (
            f"the new key is {data_key_file}; the old one is kept as {retired} for the backups made before now: "
            "keep it with them, not here. Restart the processes that share this data directory."
        )
    print(f"guanai: {after}", file=sys.stderr)
    return 0


def _keys_status(settings: Settings, database_url: str, held: Any) -> int:
    status = pd.store_key_status(database_url)
    store = "none yet (no key was made)"
    if status.key_id is not None:
        store = f"{status.key_id} since {status.since:%Y-%m-%d %H:%M:%S %Z}" + (
            f", rotated by {status.rotated_by}" if status.rotated_by else ""
        )
    origin = "GUANAI_MASTER_KEY" if settings.master_key else settings.data_path / pd.MASTER_KEY_FILE
    own = "none" if held is None else f"{held.key_id} ({origin})"
    if held is not None and held.previous:
        own += ", and previous " + ", ".join(k.key_id for k in held.previous)
    print(f"store's master key:  {store}")
    print(f"this process holds:  {own}")
    print(f"data keys:           {status.live:,} live, {status.destroyed:,} destroyed by erasure")
    return 0 if status.key_id is None or (held is not None and held.held(status.key_id) is not None) else 1
