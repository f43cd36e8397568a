"""How long rotating the master key takes, beside what it is made of, in one run.

    python -m bench.key_rotation [--keys 1000000] [--rounds 2] [--database-url URL | --embedded]

A scratch database with the event store's tables and ``--keys`` data keys wrapped under one
master key (and one key in ten destroyed, as erasures leave them). Then, per round:

- **rotation**: ``guanai.personal_data.rotate_master_key``, as ``guanai keys rotate`` runs it
  (one transaction: read every live key, open it under the old master key, wrap it under the
  new one, write it back), to a new master key each round;
- **baseline, SQL alone**: the same transaction with the same statements and batches, writing
  back the bytes it read (no AES-GCM): what the database part of a rotation costs;
- **baseline, AES-GCM alone**: opening and re-wrapping as many keys in memory, no database.

Keys per second for each, and what the rotation adds to the sum of its parts. Uses the
PostgreSQL at ``--database-url`` (default: the machine's), or an embedded one with ``--embedded``
(also when the server refuses connections). The scratch database is dropped at the end.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from collections.abc import Callable

import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.audit import postgres
from bench.common import code_version, print_table, scratch_database, server_facts
from guanai.personal_data import KEYS_TABLE, MASTER_TABLE, MasterKey, Rotation, rotate_master_key

BATCH = 5_000


def seed(url: str, master: MasterKey, keys: int) -> int:
    """``keys`` rows wrapped under ``master``, one in ten destroyed; returns the live ones."""
    from guanai.application import CareApplication, event_store_env

    CareApplication(event_store_env(url, pool_size=1)).close()  # the event store's tables
    live = 0
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO {MASTER_TABLE} (key_id) VALUES (%s)", (master.key_id,))
        for start in range(0, keys, BATCH):
            subjects, wrapped = [], []
            for i in range(start, min(start + BATCH, keys)):
                subject = f"00000000-0000-4000-8000-{i:012d}"
                subjects.append(subject)
                wrapped.append(None if i % 10 == 9 else master.wrap(subject, AESGCM.generate_key(256)))
            live += sum(w is not None for w in wrapped)
            cur.execute(
                f"INSERT INTO {KEYS_TABLE} (subject, owner, wrapped, master_key_id) "
                "SELECT s, s, w, %s FROM unnest(%s::text[], %s::bytea[]) AS t(s, w)",
                (master.key_id, subjects, wrapped),
            )
        cur.execute(f"ANALYZE {KEYS_TABLE}")
    return live


def sql_alone(url: str, key_id: str) -> int:
    """The rotation's statements with the bytes written back as read."""
    done = 0
    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute(f"SELECT key_id FROM {MASTER_TABLE} FOR UPDATE")
        conn.execute(f"SELECT count(*) FILTER (WHERE wrapped IS NOT NULL) FROM {KEYS_TABLE}")
        conn.execute(
            "CREATE TEMP TABLE guanai_rewrapped (subject text PRIMARY KEY, wrapped bytea NOT NULL) ON COMMIT DROP"
        )
        with conn.cursor("baseline") as rows, conn.cursor() as out:
            rows.itersize = BATCH
            rows.execute(f"SELECT subject, wrapped FROM {KEYS_TABLE} WHERE wrapped IS NOT NULL")
            while chunk := rows.fetchmany(BATCH):
                out.execute(
                    "INSERT INTO guanai_rewrapped SELECT * FROM unnest(%s::text[], %s::bytea[])",
                    ([r[0] for r in chunk], [bytes(r[1]) for r in chunk]),
                )
                done += len(chunk)
        conn.execute(
            f"UPDATE {KEYS_TABLE} k SET wrapped = r.wrapped, master_key_id = %s FROM guanai_rewrapped r "
            "WHERE k.subject = r.subject AND k.wrapped IS NOT NULL",
            (key_id,),
        )
        conn.execute(f"SELECT count(*) FROM {KEYS_TABLE} WHERE wrapped IS NOT NULL AND master_key_id <> %s", (key_id,))
        conn.execute(f"UPDATE {MASTER_TABLE} SET key_id = %s", (key_id,))
    return done


def crypto_alone(old: MasterKey, new: MasterKey, count: int) -> None:
    samples = [(f"s-{i}", old.wrap(f"s-{i}", AESGCM.generate_key(256))) for i in range(min(count, 10_000))]
    done = 0
    while done < count:
        for subject, wrapped in samples[: count - done]:
            new.wrap(subject, old.unwrap(subject, wrapped, old.key_id))
        done += min(len(samples), count - done)


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", type=int, default=1_000_000, help="data keys in the store (one in ten destroyed)")
    p.add_argument("--rounds", type=int, default=2, help="rotations (each to a new master key)")
    p.add_argument("--database-url", help="a PostgreSQL server to make the scratch database on")
    p.add_argument("--embedded", action="store_true", help="use an embedded PostgreSQL under a temporary directory")
    args = p.parse_args(argv)
    with postgres(args.database_url, args.embedded) as server, scratch_database(server) as url:
        print(f"bench.key_rotation at {code_version()}; {server_facts(server)}")
        master = MasterKey(secrets.token_urlsafe(48))
        started = time.perf_counter()
        live = seed(url, master, args.keys)
        print(f"seeded {args.keys:,} keys ({live:,} live) in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        rows = []
        for round_ in range(1, args.rounds + 1):
            new = MasterKey(secrets.token_urlsafe(48))
            outcome: list[Rotation] = []
            rotate_s = timed(
                lambda old=master, new=new, out=outcome: out.append(rotate_master_key(url, old, new, by="bench"))
            )
            assert outcome[0].rewrapped == live, outcome
            sql_s = timed(lambda new=new: sql_alone(url, new.key_id))
            crypto_s = timed(lambda new=new: crypto_alone(new, MasterKey(secrets.token_urlsafe(48)), live))
            master = new
            rows.append((round_, rotate_s, sql_s, crypto_s))
        table = [
            [f"round {r}", f"{live:,}", f"{rot:.2f}", f"{live / rot:,.0f}", f"{live / sq:,.0f}", f"{live / cr:,.0f}",
             f"{rot / (sq + cr):.2f}"]
            for r, rot, sq, cr in rows
        ]  # fmt: skip
        print_table(
            ["round", "live keys", "rotation s", "rotation keys/s", "SQL alone keys/s", "AES-GCM alone keys/s",
             "rotation / (SQL + AES-GCM)"],
            table,
            title=f"Master key rotation, {args.keys:,} keys ({live:,} live)",
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
