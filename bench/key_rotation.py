"""How long rotating the master key takes, beside what it is made of, in one run.

    python -m bench.key_rotation [--keys 1000000] [--rounds 2] [--database-url URL | --embedded]

A scratch database with the event store's tables and ``--keys`` data keys wrapped under one
master key (and one key in ten destroyed, as erasures leave them). Then, per round:

- **rotation**: ``infrastructure.personal_data.rotate_master_key``, as ``guanai keys rotate`` runs it
  (one transaction: read every live key, open it under the old master key, wrap it under the
  new one, write it back), to a new master key each round;
- **baseline, SQL alone**: the same transaction with the same statements and batches (the
  ordered row locks included), writing back the bytes it read (no AES-GCM): what the database
  part of a rotation costs;
- **baseline, AES-GCM alone**: opening and re-wrapping as many keys in memory, no database.

Keys per second for each, and what the rotation adds to the sum of its parts. And what the
rotation's guard costs every new key (a person, helper or report): ``--creations`` keys made one
after another through the key store (the insert shares the ``guanai_master_key`` row) beside the
same insert without that row (how keys were made before rotation existed), alternating. Uses the
PostgreSQL at ``--database-url`` (default: the machine's), or an embedded one with ``--embedded``
(also when the server refuses connections). The scratch database is dropped at the end.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.audit import postgres
from bench.common import code_version, print_table, scratch_database, server_facts
from infrastructure.personal_data import KEYS_TABLE, MASTER_TABLE, MasterKey, Rotation, rotate_master_key

BATCH = 5_000


def seed(url: str, master: MasterKey, keys: int) -> None:
    """``keys`` rows wrapped under ``master``, one in ten destroyed."""
    from application.care import CareApplication, event_store_env

    CareApplication(event_store_env(url, pool_size=1)).close()  # the event store's tables
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(f"INSERT INTO {MASTER_TABLE} (key_id) VALUES (%s) ON CONFLICT (one) DO NOTHING", (master.key_id,))
        for start in range(0, keys, BATCH):
            subjects, wrapped = [], []
            for i in range(start, min(start + BATCH, keys)):
                subject = f"00000000-0000-4000-8000-{i:012d}"
                subjects.append(subject)
                wrapped.append(None if i % 10 == 9 else master.wrap(subject, AESGCM.generate_key(256)))
            cur.execute(
                f"INSERT INTO {KEYS_TABLE} (subject, owner, wrapped, master_key_id) "
                "SELECT s, s, w, %s FROM unnest(%s::text[], %s::bytea[]) AS t(s, w)",
                (master.key_id, subjects, wrapped),
            )
        cur.execute(f"ANALYZE {KEYS_TABLE}")


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
            f"SELECT count(*) FROM (SELECT 1 FROM {KEYS_TABLE} WHERE wrapped IS NOT NULL ORDER BY coalesce(owner, "
            "subject), subject <> coalesce(owner, subject), subject FOR NO KEY UPDATE) AS locked"
        )
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


def creations(url: str, secret: str, count: int, rounds: int) -> list[tuple[str, float]]:
    """(label, keys/s) of key creation through the key store and of the unguarded insert."""
    from application.care import CareApplication, event_store_env

    app = CareApplication({**event_store_env(url, pool_size=2), "GUANAI_MASTER_KEY": secret})
    store: Any = app.key_store
    master = store.master
    plain = (
        f"INSERT INTO {KEYS_TABLE} (subject, owner, wrapped, master_key_id) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (subject) DO NOTHING"
    )
    select = f"SELECT subject, owner, wrapped, master_key_id FROM {KEYS_TABLE} WHERE subject = ANY(%s)"

    def unguarded(subject: str) -> None:
        wrapped = master.wrap(subject, AESGCM.generate_key(256))
        with store.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute("SET LOCAL synchronous_commit TO off")
            cur.execute(plain, (subject, None, wrapped, master.key_id))
            row = cur.execute(select, ([subject],)).fetchone()
        AESGCM(master.unwrap(subject, bytes(row["wrapped"]), row["master_key_id"]))

    store.key_for_sealing(str(uuid.uuid4()), None)  # checks the store's master key once
    results = []
    for round_ in range(rounds):
        modes = [("guarded", lambda s: store.key_for_sealing(s, None)), ("unguarded", unguarded)]
        for label, make in modes if round_ % 2 == 0 else modes[::-1]:  # the order alternates
            subjects = [str(uuid.uuid4()) for _ in range(count)]
            seconds = timed(lambda subjects=subjects, make=make: [make(x) for x in subjects])
            results.append((f"{label} (round {round_ + 1})", count / seconds))
    app.close()
    return results


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", type=int, default=1_000_000, help="data keys in the store (one in ten destroyed)")
    p.add_argument("--rounds", type=int, default=2, help="rotations (each to a new master key)")
    p.add_argument("--creations", type=int, default=2_000, help="keys made one by one per mode and round")
    p.add_argument("--database-url", help="a PostgreSQL server to make the scratch database on")
    p.add_argument("--embedded", action="store_true", help="use an embedded PostgreSQL under a temporary directory")
    args = p.parse_args(argv)
    with postgres(args.database_url, args.embedded) as server, scratch_database(server) as url:
        print(f"bench.key_rotation at {code_version()}; {server_facts(server)}")
        secret = secrets.token_urlsafe(48)
        master = MasterKey(secret)
        started = time.perf_counter()
        seed(url, master, args.keys)
        print(f"seeded {args.keys:,} keys in {time.perf_counter() - started:.1f}s", file=sys.stderr)
        # New keys next to the seeded ones (an index of their size), which the rotations then re-wrap too.
        made = creations(url, secret, args.creations, args.rounds) if args.creations else []
        with psycopg.connect(url) as conn:
            live = conn.execute(f"SELECT count(*) FROM {KEYS_TABLE} WHERE wrapped IS NOT NULL").fetchone()[0]
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
            title=f"Master key rotation, {args.keys:,} keys seeded ({live:,} live after the key creations)",
        )  # fmt: skip
        if made:
            print_table(
                ["key creation, one after another", "keys/s", "ms per key"],
                [[label, f"{rate:,.0f}", f"{1000 / rate:.3f}"] for label, rate in made],
                title=f"New keys with and without the rotation's guard, {args.creations:,} per mode and round",
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
