"""How long ``guanai backup`` and ``guanai restore`` take on a seeded store, beside plain
``pg_dump`` and ``pg_restore`` of the same database, in one run.

    python -m bench.backup DATA_DIR      # a data directory seeded by `guanai demo` (embedded default)

- **backup**: ``guanai backup --out DIR`` (a snapshot, pg_dump, the manifest, the keys sealed with
  scrypt and AES-GCM, the archive flushed); **baseline**: ``pg_dump --format=custom`` of the same
  database with the same tool.
- **restore**: ``guanai restore`` into an empty data directory (a new embedded PostgreSQL, the
  dump in one transaction, the erasure log read, every view rebuilt, the whole chain verified);
  **baseline**: ``pg_restore --single-transaction`` of the baseline dump into an empty database on
  the source's server (no server start, no rebuild, no verification).

Seconds for each and the ratio. The data directories made are removed at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from infrastructure.backup import pg_tool, server_major
from infrastructure.embedded import EmbeddedServices

PASSPHRASE = "the benchmark's passphrase, not a real one"


def guanai(data_dir: Path, log: Path, *argv: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUANAI_")}
    env |= {"GUANAI_DATA_DIR": str(data_dir), "GUANAI_ERASURE_LOG": str(log), "GUANAI_BACKUP_PASSPHRASE": PASSPHRASE}
    started = time.perf_counter()
    command = [sys.executable, "-m", "guanai.cli", *argv]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"guanai {' '.join(argv)} failed:\n{done.stderr}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="a data directory seeded by `guanai demo`")
    args = parser.parse_args()
    source = args.data_dir.resolve()
    work = Path(tempfile.mkdtemp(prefix="guanai-bench-backup-"))  # under /tmp: the server's user traverses it
    log = work / "erasures.jsonl"
    log.touch()
    try:
        with EmbeddedServices(source, nats=False) as servers:
            url = servers.database_url
            with psycopg.connect(url) as conn:
                major = server_major(conn)
                events = conn.execute("SELECT count(*) FROM guanai_events").fetchone()[0]  # type: ignore[index]
                size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
            dump_tool, _ = pg_tool("pg_dump", major)
            restore_tool, _ = pg_tool("pg_restore", major)
            plain = work / "plain.dump"
            started = time.perf_counter()
            subprocess.run([str(dump_tool), "--format=custom", f"--file={plain}", f"--dbname={url}"], check=True)
            dump_seconds = time.perf_counter() - started
            backup_seconds = guanai(source, log, "backup", "--out", str(work))
            archive = next(work.glob("guanai-backup-*.tar"))
            scratch = re.sub(r"/guanai(\?|$)", r"/guanai_bench_restore\1", url)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE DATABASE guanai_bench_restore")
            try:
                started = time.perf_counter()
                subprocess.run([str(restore_tool), "--single-transaction", "--exit-on-error", "--no-owner",
                                f"--dbname={scratch}", str(plain)], check=True)  # fmt: skip
                pg_restore_seconds = time.perf_counter() - started
            finally:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("DROP DATABASE guanai_bench_restore WITH (FORCE)")
        restore_seconds = guanai(work / "restored", log, "restore", str(archive))
        print(f"store: {events:,} events, database {size / 1e6:,.0f} MB; archive {archive.stat().st_size / 1e6:,.1f} MB "
              f"(plain dump {plain.stat().st_size / 1e6:,.1f} MB); PostgreSQL {major}, {dump_tool}")  # fmt: skip
        print(f"{'':24}{'seconds':>10}{'baseline':>10}{'ratio':>8}")
        for name, ours, base in (
            ("guanai backup", backup_seconds, dump_seconds),
            ("guanai restore", restore_seconds, pg_restore_seconds),
        ):
            print(f"{name:24}{ours:>10.1f}{base:>10.1f}{ours / base:>8.1f}")
        print("baselines: pg_dump --format=custom; pg_restore --single-transaction into an empty database")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
