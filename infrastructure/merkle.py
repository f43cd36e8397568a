"""The event log as a Merkle tree (RFC 9162), kept in the store's write transaction, and what is
served from it: roots of any past size, inclusion and consistency proofs, signed checkpoints.

Each stored event becomes a leaf, H(0x00 || its canonical bytes) (``verifier.leaf_bytes``), in
the transaction that stores it, while the library's EXCLUSIVE lock on the events table is held:
leaves therefore follow the committed order of positions, whatever the number of writers, and a
row cannot be stored without its leaf. Leaf indexes are dense (0, 1, 2, ...) although positions
may have gaps (a rolled-back insert uses up its sequence values).

Stored: every node of every *complete* subtree, ``(level, index) -> hash`` in
``guanai_events_tree`` (a leaf is level 0; its row also names the event's position and recorded
time), about two rows per event, never updated; and one row ``guanai_events_tree_head``: the size
and the roots of the perfect subtrees the tree of that size splits into (its "frontier"), which
is all an append needs. A range [a, b) of leaves of any past tree splits into at most 64 perfect,
aligned subtrees, each one stored node, so the root of any past size, and every hash a proof needs,
are O(log n) rows read by primary key in one query.

Why in the write transaction rather than a follower: a follower could lag, and the log's
checkpoint would then not cover what was just stored; here a stored event is covered the moment
it commits. The cost is per insert: the head row is read in the same pipeline as the insert (no
extra round trip; in a group's transaction in the one statement that also reads the chain's
newest entry), one multi-row insert of ~2 rows per event, one update of the head (both folded
into one statement with the chain's entries and the new keys, ``infrastructure.folded``), and one
hash per leaf and per completed node (measured in ``bench/proofs.py``).
"""

from __future__ import annotations

import base64
import json
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from psycopg import Connection, Cursor
from psycopg.sql import SQL, Composable, Identifier, Literal

from infrastructure import folded, verifier
from infrastructure.suites import Suite, SuiteError, suite

TREE_SUFFIX = "_tree"
HEAD_SUFFIX = "_tree_head"
SUITE_TABLE = "guanai_crypto_suite"
CHECKPOINTS_TABLE = "guanai_checkpoints"


class ProofError(LookupError):
    """A proof cannot be given: a size beyond the tree, an unknown position."""


def tree_tables(events_table: str) -> tuple[str, str]:
    return events_table + TREE_SUFFIX, events_table + HEAD_SUFFIX


def tree_ddl(schema: str, events_table: str, suite_name: str, origin: str) -> list[Any]:
    tree, head = tree_tables(events_table)
    return [
        SQL(
            "CREATE TABLE IF NOT EXISTS {} (level smallint NOT NULL, idx bigint NOT NULL, hash bytea NOT NULL, "
            "notification_id bigint, recorded_us bigint, PRIMARY KEY (level, idx))"
        ).format(Identifier(schema, tree)),
        SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} (notification_id) WHERE level = 0").format(
            Identifier(tree + "_position"), Identifier(schema, tree)
        ),
        SQL(
            "CREATE TABLE IF NOT EXISTS {} (one boolean PRIMARY KEY DEFAULT true CHECK (one), size bigint NOT NULL, "
            "frontier bytea[] NOT NULL)"
        ).format(Identifier(schema, head)),
        SQL("INSERT INTO {} (size, frontier) VALUES (0, '{{}}') ON CONFLICT DO NOTHING").format(
            Identifier(schema, head)
        ),
        # The suite is chosen when the store is created; later processes take it from here.
        SQL(
            "CREATE TABLE IF NOT EXISTS {} (one boolean PRIMARY KEY DEFAULT true CHECK (one), suite text NOT NULL, "
            "origin text NOT NULL, since timestamptz NOT NULL DEFAULT now())"
        ).format(Identifier(schema, SUITE_TABLE)),
        SQL("INSERT INTO {} (suite, origin) VALUES ({}, {}) ON CONFLICT DO NOTHING").format(
            Identifier(schema, SUITE_TABLE), Literal(suite_name), Literal(origin)
        ),
        SQL(
            "CREATE TABLE IF NOT EXISTS {} (size bigint PRIMARY KEY, root bytea NOT NULL, at timestamptz NOT NULL, "
            "key_id text NOT NULL, document jsonb NOT NULL)"
        ).format(Identifier(schema, CHECKPOINTS_TABLE)),
    ]


def store_suite(conn: Connection[Any], configured: str | None) -> tuple[Suite, str]:
    """(the store's suite, its origin); refuses a process configured with another suite."""
    row = conn.execute(SQL("SELECT suite, origin FROM {}").format(Identifier(SUITE_TABLE))).fetchone()
    if row is None:
        raise SuiteError("the store records no crypto suite: it was not created by this version")
    name, origin = (row["suite"], row["origin"]) if isinstance(row, dict) else row
    if configured and configured != name:
        raise SuiteError(
            f"GUANAI_CRYPTO_SUITE is {configured}, but this store was created with the {name} suite "
            "(a store keeps the suite it was created with)"
        )
    return suite(name), origin


def pieces(start: int, end: int) -> list[tuple[int, int]]:
    """The perfect subtrees (level, index) that leaves [start, end) split into, largest first.
    ``start`` is aligned as in RFC 9162's recursion (a multiple of a power of two >= end - start)."""
    out = []
    while start < end:
        level = (end - start).bit_length() - 1
        while start % (1 << level):
            level -= 1
        out.append((level, start >> level))
        start += 1 << level
    return out


def fold(h: Callable[[bytes], bytes], hashes: Sequence[bytes]) -> bytes:
    """MTH of a range from the hashes of its pieces (largest first): right to left."""
    if not hashes:
        return h(b"")
    acc = hashes[-1]
    for left in reversed(hashes[:-1]):
        acc = verifier.node_hash(h, left, acc)
    return acc


def _split(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The ranges whose roots make PATH(index, D[0:size]) (RFC 9162 2.1.3.1), in proof order."""
    out: list[tuple[int, int]] = []
    lo, hi, m = 0, size, index
    stack = []
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            stack.append((lo + k, hi))
            hi = lo + k
        else:
            stack.append((lo, lo + k))
            lo, m = lo + k, m - k
    out.extend(reversed(stack))
    return out


def consistency_ranges(old: int, size: int) -> list[tuple[int, int]]:
    """The ranges whose roots make PROOF(old, D[0:size]) (RFC 9162 2.1.4.1), in proof order."""
    if old == 0 or old >= size:
        return []
    stack: list[tuple[int, int]] = []
    lo, hi, m, whole = 0, size, old, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            stack.append((lo + k, hi))
            hi = lo + k
        else:
            stack.append((lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        stack.append((lo, hi))
    return list(reversed(stack))


class TreeWriter:
    """Appends stored events to the tree inside the recorder's insert transaction."""

    def __init__(self, schema: str, events_table: str, the_suite: Suite) -> None:
        tree, head = tree_tables(events_table)
        self.suite = the_suite
        self._select_head = SQL("SELECT size, frontier FROM {} FOR UPDATE").format(Identifier(schema, head))
        self._insert = SQL(
            "INSERT INTO {} (level, idx, hash, notification_id, recorded_us) "
            "SELECT * FROM unnest(%b::smallint[], %b::bigint[], %b::bytea[], %b::bigint[], %b::bigint[])"
        ).format(Identifier(schema, tree))
        self._update_head = SQL("UPDATE {} SET size = %s, frontier = %s").format(Identifier(schema, head))
        self._pending: weakref.WeakKeyDictionary[Any, Cursor[Any]] = weakref.WeakKeyDictionary()

    def after_lock(self, curs: Cursor[Any]) -> None:
        # Sent in the same pipeline as the insert: its answer comes back with the insert's.
        cur = curs.connection.cursor()
        cur.execute(self._select_head, prepare=True)
        self._pending[curs.connection] = cur

    @property
    def select_head(self) -> Composable:
        """The head row's query (locking it), for a caller that reads it with other things in
        one statement and hands the row to ``append``."""
        return self._select_head

    def append(
        self, curs: Cursor[Any], written: Sequence[tuple[int, StoredEvent]], head: tuple[Any, Any] | None = None
    ) -> None:
        """The leaves and completed nodes of ``written`` stored, and the head moved on. ``head``:
        the (size, frontier) already read under the lock in this transaction; otherwise the one
        ``after_lock`` asked for, or read now. The writes join the transaction's folded ones
        (``infrastructure.folded``) when there are any."""
        conn = curs.connection
        if head is None:
            pending = self._pending.pop(conn, None)
            if pending is None:
                pending = conn.cursor()
                pending.execute(self._select_head)
            with pending:
                row: Any = pending.fetchone()
            if row is not None:
                head = (row["size"], row["frontier"]) if isinstance(row, dict) else (row[0], row[1])
        if head is None or head[0] is None:
            raise ProofError("the tree's head row is missing: the store's tables were changed outside the application")
        size, nodes = head
        frontier = Frontier(self.suite.tree_hash, size, [bytes(n) for n in nodes])
        now_us = time.time_ns() // 1000
        columns: tuple[list[Any], ...] = ([], [], [], [], [])
        for position, e in sorted(written, key=lambda w: w[0]):
            _add_leaf(columns, frontier, position, now_us, e.originator_version, e.originator_id, e.topic, e.state)
        size, frontier_nodes = frontier.size, frontier.nodes
        writes = folded.pending(conn)
        if writes is not None:
            writes.add(self._insert, columns)
            writes.add(self._update_head, (size, frontier_nodes))
            return
        with conn.cursor() as cur:
            cur.execute(self._insert, columns, prepare=True)
            cur.execute(self._update_head, (size, frontier_nodes), prepare=True)


def _add_leaf(
    columns: tuple[list[Any], ...],
    frontier: Frontier,
    position: int,
    recorded_us: int,
    version: int,
    stream: Any,
    topic: str,
    state: bytes,
) -> None:
    """Append one event to ``frontier``; add the rows to store (its leaf, the subtrees it closes)."""
    h = frontier.h
    index = frontier.size
    leaf = verifier.leaf_hash(h, verifier.leaf_bytes(position, recorded_us, version, stream, topic, state))
    rows: list[tuple[int, int, bytes, int | None, int | None]] = [(0, index, leaf, position, recorded_us)]
    rows += [(level, idx, node, None, None) for level, idx, node in frontier.append(leaf)]
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)


class Tree:
    """Reads of the stored tree: roots, leaves and proofs (any snapshot of it)."""

    def __init__(self, the_suite: Suite, events_table: str = "guanai_events") -> None:
        self.suite = the_suite
        self.tree, self.head = tree_tables(events_table)

    def size(self, conn: Connection[Any]) -> int:
        row = conn.execute(SQL("SELECT size FROM {}").format(Identifier(self.head))).fetchone()
        return int(_first(row)) if row else 0

    def _nodes(self, conn: Connection[Any], wanted: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        if not wanted:
            return {}
        rows = conn.execute(
            SQL(
                "SELECT n.level, n.idx, n.hash FROM unnest(%s::smallint[], %s::bigint[]) AS w(level, idx) "
                "JOIN {} n ON n.level = w.level AND n.idx = w.idx"
            ).format(Identifier(self.tree)),
            ([w[0] for w in wanted], [w[1] for w in wanted]),
        ).fetchall()
        found = {(_get(r, 0, "level"), _get(r, 1, "idx")): bytes(_get(r, 2, "hash")) for r in rows}
        if len(found) != len(set(wanted)):
            raise ProofError("the stored tree is missing nodes: it was changed outside the application")
        return found

    def range_roots(self, conn: Connection[Any], ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        split = [pieces(a, b) for a, b in ranges]
        nodes = self._nodes(conn, sorted({p for ps in split for p in ps}))
        return [fold(self.suite.tree_hash, [nodes[p] for p in ps]) for ps in split]

    def root(self, conn: Connection[Any], size: int) -> bytes:
        return self.range_roots(conn, [(0, size)])[0]

    def _check_size(self, conn: Connection[Any], size: int) -> None:
        current = self.size(conn)
        if not 0 <= size <= current:
            raise ProofError(f"the tree has {current} leaves; there is no tree of {size}")

    def inclusion(self, conn: Connection[Any], index: int, size: int) -> list[bytes]:
        self._check_size(conn, size)
        if not 0 <= index < size:
            raise ProofError(f"leaf {index} is not in the tree of {size} leaves")
        return self.range_roots(conn, inclusion_ranges(index, size))

    def consistency(self, conn: Connection[Any], old: int, size: int) -> list[bytes]:
        self._check_size(conn, size)
        if not 0 <= old <= size:
            raise ProofError(f"a tree of {old} leaves cannot be extended into one of {size}")
        return self.range_roots(conn, consistency_ranges(old, size))

    def leaves_of(self, conn: Connection[Any], positions: Sequence[int]) -> dict[int, tuple[int, int]]:
        """position -> (leaf index, recorded time in microseconds)."""
        rows = conn.execute(
            SQL(
                "SELECT notification_id, idx, recorded_us FROM {} WHERE level = 0 AND notification_id = ANY(%s)"
            ).format(Identifier(self.tree)),
            (list(positions),),
        ).fetchall()
        return {_get(r, 0, "notification_id"): (_get(r, 1, "idx"), _get(r, 2, "recorded_us")) for r in rows}


def _first(row: Any) -> Any:
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


def _get(row: Any, i: int, name: str) -> Any:
    return row[name] if isinstance(row, dict) else row[i]


# ---- checkpoints ------------------------------------------------------------------------------------


def sign_checkpoint(key: Any, origin: str, size: int, root: bytes, at: datetime | None = None) -> dict[str, Any]:
    """A signed checkpoint document (``verifier.checkpoint_body`` is what is signed)."""
    cp: dict[str, Any] = {
        "format": verifier.CHECKPOINT_FORMAT,
        "origin": origin,
        "suite": key.suite,
        "size": size,
        "root": root.hex(),
        "time": (at or datetime.now(UTC)).isoformat(timespec="seconds"),
        "key_id": key.key_id,
    }
    cp["signature"] = key.sign(verifier.checkpoint_body(cp)).hex()
    cp["witnesses"] = []
    return cp


def cosign(key: Any, cp: dict[str, Any], at: datetime | None = None) -> dict[str, Any]:
    when = (at or datetime.now(UTC)).isoformat(timespec="seconds")
    return {
        "key_id": key.key_id,
        "name": key.public.name,
        "time": when,
        "signature": key.sign(verifier.witness_body(cp, when)).hex(),
    }


class Checkpoints:
    """Signed checkpoints of one store, kept in ``guanai_checkpoints`` (one per size)."""

    def __init__(self, tree: Tree, origin: str, key_loader: Callable[[], Any]) -> None:
        self.tree, self.origin, self._key_loader = tree, origin, key_loader
        self._key: Any = None

    @property
    def key(self) -> Any:
        if self._key is None:
            self._key = self._key_loader()
        return self._key

    def latest(self, conn: Connection[Any], *, sign_new: bool = True) -> dict[str, Any] | None:
        """The newest checkpoint; with ``sign_new``, a new one first if the tree grew since."""
        row = conn.execute(
            SQL("SELECT document FROM {} ORDER BY size DESC LIMIT 1").format(Identifier(CHECKPOINTS_TABLE))
        ).fetchone()
        newest = _first(row) if row else None
        if sign_new:
            size = self.tree.size(conn)
            if newest is None or int(newest["size"]) < size:
                newest = self.sign(conn, size)
        return newest

    def sign(self, conn: Connection[Any], size: int) -> dict[str, Any]:
        root = self.tree.root(conn, size)
        cp = sign_checkpoint(self.key, self.origin, size, root)
        row = conn.execute(
            SQL(
                "INSERT INTO {} (size, root, at, key_id, document) VALUES (%s, %s, %s, %s, %s::jsonb) "
                "ON CONFLICT (size) DO UPDATE SET size = EXCLUDED.size RETURNING document"
            ).format(Identifier(CHECKPOINTS_TABLE)),
            (size, root, datetime.fromisoformat(cp["time"]), cp["key_id"], _json(cp)),
        ).fetchone()
        if not conn.autocommit:
            conn.commit()
        return dict(_first(row))

    def at_size(self, conn: Connection[Any], size: int) -> dict[str, Any] | None:
        row = conn.execute(
            SQL("SELECT document FROM {} WHERE size = %s").format(Identifier(CHECKPOINTS_TABLE)), (size,)
        ).fetchone()
        return dict(_first(row)) if row else None

    def add_witness(self, conn: Connection[Any], size: int, signature: dict[str, Any]) -> None:
        conn.execute(
            SQL(
                "UPDATE {} SET document = jsonb_set(document, '{{witnesses}}', (document->'witnesses') || %s::jsonb) "
                "WHERE size = %s AND NOT (document->'witnesses') @> %s::jsonb"
            ).format(Identifier(CHECKPOINTS_TABLE)),
            (_json([signature]), size, _json([{"key_id": signature["key_id"]}])),
        )
        if not conn.autocommit:
            conn.commit()


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def stream_proofs(
    conn: Connection[Any],
    tree: Tree,
    checkpoint: dict[str, Any],
    stream: UUID,
    rows: Sequence[tuple[int, int, str, bytes]],
) -> dict[str, Any]:
    """What a case-history export carries: the checkpoint, and per event (position, version,
    topic, stored bytes) its leaf and inclusion proof against that checkpoint."""
    size = int(checkpoint["size"])
    leaves = tree.leaves_of(conn, [r[0] for r in rows])
    out = []
    for position, version, topic, state in rows:
        if position not in leaves:
            raise ProofError(f"the event at position {position} has no leaf: it was stored outside the application")
        index, recorded_us = leaves[position]
        if index >= size:
            raise ProofError(f"the event at position {position} is newer than the checkpoint")
        proof = tree.inclusion(conn, index, size)
        out.append(
            {
                "position": position,
                "version": version,
                "topic": topic,
                "recorded_us": recorded_us,
                "stored": _b64(state),
                "index": index,
                "tree_size": size,
                "proof": [p.hex() for p in proof],
            }
        )
    return {"checkpoint": checkpoint, "leaves": out, "stream": str(stream)}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ---- checking the stored tree against the events (the operator's side) ----------------------------


class Frontier:
    """Roots of the perfect subtrees of a growing tree (largest first): appends and the root in
    O(log n). This is what the tree's head row keeps."""

    def __init__(self, h: Callable[[bytes], bytes], size: int = 0, nodes: Sequence[bytes] = ()) -> None:
        self.h, self.size = h, size
        self.nodes: list[bytes] = list(nodes)
        self.levels: list[int] = [level for level, _ in pieces(0, size)]
        if len(self.levels) != len(self.nodes):
            raise ProofError(f"the tree's head is inconsistent: {size} leaves need {len(self.levels)} subtree roots")

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf; returns the (level, index, hash) of every subtree it completes."""
        node, level, index = leaf, 0, self.size
        closed = []
        while self.levels and self.levels[-1] == level:
            node = verifier.node_hash(self.h, self.nodes.pop(), node)
            self.levels.pop()
            level, index = level + 1, index >> 1
            closed.append((level, index, node))
        self.nodes.append(node)
        self.levels.append(level)
        self.size += 1
        return closed

    def root(self) -> bytes:
        return fold(self.h, self.nodes)


def check_tree(
    conn: Connection[Any], tree: Tree, events_table: str, checkpoint: dict[str, Any] | None = None, batch: int = 10_000
) -> tuple[int, list[tuple[int, str, str]]]:
    """Recompute every leaf from the stored events and the root from the leaves; compare with
    the stored tree and with a signed checkpoint. Returns (leaves checked, [(position, kind,
    detail)]): ``event-changed``, ``event-deleted``, ``event-unlogged``, ``tree-changed``,
    ``checkpoint-mismatch``."""
    h = tree.suite.tree_hash
    failures: list[tuple[int, str, str]] = []
    frontier = Frontier(h)
    checked_root: bytes | None = None
    cp_size = int(checkpoint["size"]) if checkpoint else -1
    with conn.cursor(name="check_tree") as rows:
        rows.itersize = batch
        rows.execute(
            SQL(
                "SELECT t.idx, t.notification_id, t.recorded_us, t.hash, e.originator_id, e.originator_version, e.topic, "
                "e.state FROM {} t LEFT JOIN {} e USING (notification_id) WHERE t.level = 0 ORDER BY t.idx"
            ).format(Identifier(tree.tree), Identifier(events_table))
        )
        for row in rows:
            idx, position, recorded_us, stored, oid, version, topic, state = (
                tuple(row.values()) if isinstance(row, dict) else row
            )
            if frontier.size == cp_size:
                checked_root = frontier.root()
            if idx != frontier.size:
                failures.append((position, "tree-changed", f"leaf {frontier.size} is missing from the stored tree"))
            stored = bytes(stored)
            if oid is None:
                failures.append((position, "event-deleted", f"the event at position {position} (leaf {idx}) is gone"))
                leaf = stored
            else:
                leaf = verifier.leaf_hash(
                    h, verifier.leaf_bytes(position, recorded_us, version, oid, topic, bytes(state))
                )
                if leaf != stored:
                    why = f"the event at position {position} is not as stored (changed, or moved from another position)"
                    failures.append((position, "event-changed", why))
            frontier.append(leaf)
    if frontier.size == cp_size:
        checked_root = frontier.root()
    unlogged = conn.execute(
        SQL(
            "SELECT e.notification_id FROM {} e WHERE NOT EXISTS (SELECT 1 FROM {} t WHERE t.level = 0 "
            "AND t.notification_id = e.notification_id) ORDER BY 1 LIMIT 100"
        ).format(Identifier(events_table), Identifier(tree.tree))
    ).fetchall()
    failures += [
        (_first(r), "event-unlogged", "an event with no leaf: stored behind the application's back") for r in unlogged
    ]
    size = tree.size(conn)
    if frontier.size != size:
        failures.append((0, "tree-changed", f"the tree's head says {size} leaves; {frontier.size} are stored"))
    elif size and not failures and frontier.root() != tree.root(conn, size):
        failures.append((0, "tree-changed", "the stored nodes do not hash to the stored leaves"))
    if checkpoint is not None:
        if checked_root is None:
            failures.append(
                (0, "checkpoint-mismatch", f"the checkpoint signs {cp_size} leaves; the tree has {frontier.size}")
            )
        elif checked_root.hex() != str(checkpoint["root"]):
            failures.append(
                (0, "checkpoint-mismatch", f"the events do not hash to the root signed at {cp_size} leaves")
            )
    return frontier.size, failures


def adopt(conn: Connection[Any], schema: str, events_table: str, the_suite: Suite, batch: int = 10_000) -> int:
    """Put every event stored before the tree existed into it, in log order, in one transaction
    under the events table's lock (writers wait). Only while the tree is empty: once it has a
    leaf, an event without one is what ``check_tree`` must report. Returns the leaves added."""
    tree, head = tree_tables(events_table)
    found = conn.execute(
        SQL("SELECT size = 0 AND EXISTS (SELECT 1 FROM {}) FROM {}").format(
            Identifier(schema, events_table), Identifier(schema, head)
        )
    ).fetchone()
    if not found or not _first(found):
        return 0
    with conn.transaction():
        conn.execute(SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(Identifier(schema, events_table)))
        row = conn.execute(SQL("SELECT size FROM {} FOR UPDATE").format(Identifier(schema, head))).fetchone()
        if row is None or _first(row) != 0:
            return 0
        insert = SQL(
            "INSERT INTO {} (level, idx, hash, notification_id, recorded_us) "
            "SELECT * FROM unnest(%b::smallint[], %b::bigint[], %b::bytea[], %b::bigint[], %b::bigint[])"
        ).format(Identifier(schema, tree))
        frontier = Frontier(the_suite.tree_hash)
        now_us = time.time_ns() // 1000  # when the tree recorded them: their own recording time is in their state
        columns: tuple[list[Any], ...] = ([], [], [], [], [])
        with conn.cursor(name="adopt_tree") as rows, conn.cursor() as out:
            rows.itersize = batch
            rows.execute(
                SQL(
                    "SELECT notification_id, originator_id, originator_version, topic, state FROM {} "
                    "ORDER BY notification_id"
                ).format(Identifier(schema, events_table))
            )
            for r in rows:
                position, oid, version, topic, state = tuple(r.values()) if isinstance(r, dict) else r
                _add_leaf(columns, frontier, position, now_us, version, oid, topic, bytes(state))
                if len(columns[0]) >= batch:
                    out.execute(insert, columns)
                    columns = ([], [], [], [], [])
            if columns[0]:
                out.execute(insert, columns)
        conn.execute(
            SQL("UPDATE {} SET size = %s, frontier = %s").format(Identifier(schema, head)),
            (frontier.size, frontier.nodes),
        )
    return frontier.size
