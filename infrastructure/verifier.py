"""Check Guanai's event log from outside, with nothing but the log's public key.

This one module is all an outside party (a discipline inspection office, a court, the province's
civil affairs department) needs: it depends on the standard library and ``cryptography`` only,
plus ``gmssl`` for SM2 signatures when the log uses the ``gm`` suite. Copy it anywhere and run

    python verifier.py checkpoint --key log-key.json CHECKPOINT.json [--witness-key W.json ...]
    python verifier.py extends --key log-key.json OLD.json NEW.json PROOF.json
    python verifier.py export --key log-key.json CASE.json [--witness-key W.json ...]
    python verifier.py folder --key log-key.json FOLDER [--witness-key W.json ...]

Every command exits 0 when everything checks, and 1 with the reason otherwise.

What is checked (RFC 9162, Certificate Transparency 2.0, with the suite's hash H):
- the log is a Merkle tree; a leaf is H(0x00 || the event's canonical bytes: position, recorded
  time, version, stream id, topic, stored bytes), a node H(0x01 || left || right);
- a checkpoint (origin, suite, tree size, root, time) is signed by the log's key (Ed25519 or SM2),
  and optionally co-signed by witnesses, each of whom checked it extends the last one they saw;
- an inclusion proof shows one event is leaf i of the tree a checkpoint signs;
- a consistency proof shows a newer checkpoint's tree extends an older one's, leaf for leaf;
  two checkpoints of one size with different roots are a forked log.

The suites: ``international`` (SHA-256, Ed25519) and ``gm`` (SM3, SM2 with the default user id
1234567812345678, GB/T 32918 / GM/T 0009).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import struct
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

CHECKPOINT_FORMAT = "guanai-checkpoint/1"
WITNESS_FORMAT = "guanai-witness/1"
KEY_FORMAT = "guanai-public-key/1"
SUITES = ("international", "gm")
HASH_BYTES = 32
MAX_PROOF_HASHES = 64  # a tree of 2**63 leaves needs at most 63 (inclusion) or 64 (consistency)

# SM2's recommended curve (GB/T 32918.5): p, a, b, n and the base point.
SM2_P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
SM2_A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
SM2_B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
SM2_N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
SM2_DEFAULT_ID = b"1234567812345678"


class VerificationError(Exception):
    """The log, a proof, a checkpoint or an export does not check; the message says why."""


# ---- hashing -----------------------------------------------------------------------------------


def sm3(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hash_function(suite: str) -> Callable[[bytes], bytes]:
    if suite == "international":
        return sha256
    if suite == "gm":
        return sm3
    raise VerificationError(f"unknown suite {suite!r}: expected one of {', '.join(SUITES)}")


def leaf_bytes(
    position: int, recorded_us: int, version: int, stream: str | uuid.UUID, topic: str, state: bytes
) -> bytes:
    """The canonical bytes of one stored event: fixed-width integers, then length-prefixed
    fields, so no two events have the same bytes."""
    stream_bytes = (stream if isinstance(stream, uuid.UUID) else uuid.UUID(str(stream))).bytes
    top = topic.encode()
    return b"".join(
        (
            struct.pack(">qqq", position, recorded_us, version),
            stream_bytes,
            struct.pack(">I", len(top)),
            top,
            struct.pack(">I", len(state)),
            state,
        )
    )


def leaf_hash(h: Callable[[bytes], bytes], data: bytes) -> bytes:
    return h(b"\x00" + data)


def node_hash(h: Callable[[bytes], bytes], left: bytes, right: bytes) -> bytes:
    return h(b"\x01" + left + right)


def root_of(h: Callable[[bytes], bytes], leaves: Sequence[bytes]) -> bytes:
    """MTH of RFC 9162 over leaf hashes (for tests and small trees)."""
    if not leaves:
        return h(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(h, root_of(h, leaves[:k]), root_of(h, leaves[k:]))


# ---- proofs (RFC 9162 2.1.3.2 and 2.1.4.2) ----------------------------------------------------


def _hashes(proof: Sequence[str]) -> list[bytes]:
    if len(proof) > MAX_PROOF_HASHES:
        raise VerificationError(f"a proof of {len(proof)} hashes is longer than any tree needs")
    out = []
    for p in proof:
        try:
            raw = bytes.fromhex(p)
        except (TypeError, ValueError):
            raise VerificationError(f"proof element {p!r} is not hex") from None
        if len(raw) != HASH_BYTES:
            raise VerificationError(f"proof element {p[:16]}... is {len(raw)} bytes, not {HASH_BYTES}")
        out.append(raw)
    return out


def verify_inclusion(
    h: Callable[[bytes], bytes], index: int, size: int, leaf: bytes, proof: Sequence[str], root: bytes
) -> None:
    """Raise unless ``leaf`` is leaf ``index`` of the tree of ``size`` leaves whose root is ``root``."""
    path = _hashes(proof)
    if not 0 <= index < size:
        raise VerificationError(f"leaf {index} is not in a tree of {size} leaves")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise VerificationError(
                f"the inclusion proof has {len(path)} hashes, more than leaf {index} of {size} needs"
            )
        if fn & 1 or fn == sn:
            r = node_hash(h, p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(h, r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise VerificationError(
            f"the inclusion proof is truncated: {len(path)} hashes are too few for leaf {index} of a tree of {size}"
        )
    if r != root:
        raise VerificationError(
            f"the event is not leaf {index} of the tree of {size} leaves this checkpoint signs "
            "(changed, moved, or a proof for another tree)"
        )


def verify_consistency(
    h: Callable[[bytes], bytes], size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[str]
) -> None:
    """Raise unless the tree of ``size2`` leaves (``root2``) extends the tree of ``size1`` (``root1``)."""
    path = _hashes(proof)
    if size1 > size2:
        raise VerificationError(
            f"the older checkpoint ({size1} leaves) is larger than the newer ({size2}): the log shrank"
        )
    if size1 == size2:
        if root1 != root2:
            raise VerificationError(f"forked log: two checkpoints of {size1} leaves with different roots, both signed")
        if path:
            raise VerificationError("checkpoints of one size need an empty consistency proof")
        return
    if size1 == 0:
        return
    if not path:
        raise VerificationError(f"the consistency proof from {size1} to {size2} leaves is empty")
    if size1 & (size1 - 1) == 0:
        path = [root1, *path]
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError(
                f"the consistency proof from {size1} to {size2} leaves has more hashes than it needs"
            )
        if fn & 1 or fn == sn:
            fr, sr = node_hash(h, c, fr), node_hash(h, c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(h, sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise VerificationError(f"the consistency proof from {size1} to {size2} leaves is truncated")
    if fr != root1:
        raise VerificationError(
            f"the newer tree does not contain the older tree of {size1} leaves: "
            "events before the older checkpoint were changed, dropped or reordered (or the proof is for other checkpoints)"
        )
    if sr != root2:
        raise VerificationError(f"the consistency proof does not lead to the newer checkpoint's root ({size2} leaves)")


# ---- signatures ----------------------------------------------------------------------------------


def key_id(public_key: bytes) -> str:
    """Names a key (by SHA-256 of its bytes, whatever the suite: it is a name, not a proof)."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def sm2_on_curve(public_key: bytes) -> bool:
    if len(public_key) != 64:
        return False
    x, y = int.from_bytes(public_key[:32]), int.from_bytes(public_key[32:])
    return x < SM2_P and y < SM2_P and (y * y - (x * x * x + SM2_A * x + SM2_B)) % SM2_P == 0


def sm2_digest(public_key: bytes, message: bytes, user_id: bytes = SM2_DEFAULT_ID) -> bytes:
    """e = SM3(Z_A || M), Z_A = SM3(ENTL || ID || a || b || xG || yG || xA || yA) (GB/T 32918.2)."""
    gx = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
    gy = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0
    z = sm3(
        b"".join(
            (
                struct.pack(">H", len(user_id) * 8),
                user_id,
                *(v.to_bytes(32) for v in (SM2_A, SM2_B, gx, gy)),
                public_key,
            )
        )
    )
    return sm3(z + message)


def sm2_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """An SM2 signature (r || s, 64 bytes) over ``message`` with the default user id."""
    from gmssl import sm2  # type: ignore[import-untyped]  # only the gm suite needs it

    if len(signature) != 64 or not sm2_on_curve(public_key):
        return False
    r, s = int.from_bytes(signature[:32]), int.from_bytes(signature[32:])
    if not (1 <= r < SM2_N and 1 <= s < SM2_N):
        return False
    crypt = sm2.CryptSM2(private_key="", public_key=public_key.hex())
    return bool(crypt.verify(signature.hex(), sm2_digest(public_key, message)))


def verify_signature(suite: str, public_key: bytes, message: bytes, signature: bytes) -> bool:
    if suite == "international":
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True
    if suite == "gm":
        return sm2_verify(public_key, message, signature)
    raise VerificationError(f"unknown suite {suite!r}")


class PublicKey:
    """A log's or a witness's public key, as published (``guanai-public-key/1`` JSON)."""

    def __init__(self, suite: str, key: bytes, name: str = "") -> None:
        hash_function(suite)
        self.suite, self.key, self.name = suite, key, name
        self.key_id = key_id(key)

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> PublicKey:
        if doc.get("format") != KEY_FORMAT:
            raise VerificationError(f"not a public key file (format {doc.get('format')!r})")
        key = cls(str(doc["suite"]), bytes.fromhex(str(doc["public_key"])), str(doc.get("name", "")))
        if doc.get("key_id") not in (None, key.key_id):
            raise VerificationError("the public key file's key_id does not name its key")
        return key

    def document(self) -> dict[str, Any]:
        algorithm = "ed25519" if self.suite == "international" else "sm2"
        return {
            "format": KEY_FORMAT,
            "suite": self.suite,
            "algorithm": algorithm,
            "public_key": self.key.hex(),
            "key_id": self.key_id,
            "name": self.name,
        }


# ---- checkpoints ----------------------------------------------------------------------------------


def checkpoint_body(cp: dict[str, Any]) -> bytes:
    """The bytes the log signs: every field a checkpoint asserts, one per line."""
    return (
        f"{CHECKPOINT_FORMAT}\norigin: {cp['origin']}\nsuite: {cp['suite']}\nsize: {int(cp['size'])}\n"
        f"root: {str(cp['root']).lower()}\ntime: {cp['time']}\n"
    ).encode()


def witness_body(cp: dict[str, Any], witnessed_at: str) -> bytes:
    """The bytes a witness signs: the checkpoint's body, and when the witness checked it."""
    return f"{WITNESS_FORMAT}\nwitnessed: {witnessed_at}\n".encode() + checkpoint_body(cp)


def verify_checkpoint(
    cp: dict[str, Any], log_key: PublicKey, witness_keys: Sequence[PublicKey] = (), require_witnesses: int = 0
) -> None:
    """Raise unless the checkpoint is signed by the log's key (and by enough of the witnesses)."""
    if cp.get("format") != CHECKPOINT_FORMAT:
        raise VerificationError(f"not a checkpoint (format {cp.get('format')!r})")
    if cp.get("suite") != log_key.suite:
        raise VerificationError(f"the checkpoint says suite {cp.get('suite')!r}, the log's key is {log_key.suite!r}")
    if cp.get("key_id") != log_key.key_id:
        raise VerificationError(
            f"the checkpoint is signed by key {cp.get('key_id')}, not by the log's key {log_key.key_id}"
        )
    root = _root(cp)
    if len(root) != HASH_BYTES or int(cp["size"]) < 0:
        raise VerificationError("the checkpoint's root or size is malformed")
    if not verify_signature(log_key.suite, log_key.key, checkpoint_body(cp), _unhex(cp.get("signature"))):
        raise VerificationError(
            f"the checkpoint's signature does not verify under the log's key {log_key.key_id}: "
            "signed with another key, or changed after signing"
        )
    good: set[str] = set()
    known = {k.key_id: k for k in witness_keys}
    for w in cp.get("witnesses") or []:
        wkey = known.get(str(w.get("key_id")))
        if wkey is None:
            continue
        if not verify_signature(wkey.suite, wkey.key, witness_body(cp, str(w.get("time"))), _unhex(w.get("signature"))):
            raise VerificationError(
                f"witness {wkey.name or wkey.key_id}'s signature is not over this checkpoint "
                f"(size {cp['size']}, root {cp['root']}): it co-signed another tree"
            )
        good.add(wkey.key_id)
    if len(good) < require_witnesses:
        raise VerificationError(
            f"the checkpoint carries {len(good)} valid witness signatures of the {require_witnesses} required"
        )


def verify_extends(old: dict[str, Any], new: dict[str, Any], proof: Sequence[str], log_key: PublicKey) -> None:
    """Raise unless ``new`` extends ``old`` (both checkpoints of this log, already signature-checked)."""
    if old.get("origin") != new.get("origin"):
        raise VerificationError(f"the checkpoints are of different logs ({old.get('origin')} and {new.get('origin')})")
    verify_consistency(hash_function(log_key.suite), int(old["size"]), int(new["size"]), _root(old), _root(new), proof)


def _root(cp: dict[str, Any]) -> bytes:
    return _unhex(cp.get("root"))


def _unhex(value: Any) -> bytes:
    try:
        return bytes.fromhex(str(value))
    except ValueError:
        raise VerificationError(f"{str(value)[:20]!r} is not hex") from None


# ---- case-history exports ----------------------------------------------------------------------------


def verify_export(
    doc: dict[str, Any], log_key: PublicKey, witness_keys: Sequence[PublicKey] = (), require_witnesses: int = 0
) -> int:
    """Check a case-history export's proofs: its checkpoint, and that each of its events is in the
    tree that checkpoint signs, as stored. Returns the number of events checked."""
    proofs = doc.get("proofs")
    if not isinstance(proofs, dict):
        raise VerificationError("the export carries no proofs")
    cp = proofs["checkpoint"]
    verify_checkpoint(cp, log_key, witness_keys, require_witnesses)
    h = hash_function(log_key.suite)
    size, root = int(cp["size"]), _root(cp)
    events = doc.get("events") or []
    leaves = proofs.get("leaves") or []
    stream = str(doc.get("stream", {}).get("id"))
    if len(leaves) != len(events):
        raise VerificationError(f"the export shows {len(events)} events and carries proofs for {len(leaves)}")
    expected_total = int(doc.get("stream", {}).get("events", len(events)))
    if len(events) != expected_total:
        raise VerificationError(
            f"the export says the stream has {expected_total} events and shows {len(events)}: one was dropped"
        )
    for n, (event, leaf) in enumerate(zip(events, leaves, strict=True), start=1):
        where = f"event {n} (version {event.get('version')}, position {event.get('position')})"
        if int(event.get("version", -1)) != n:
            raise VerificationError(
                f"{where}: the stream's versions are not 1..{len(events)} in order: an event is missing or moved"
            )
        if (int(leaf["position"]), int(leaf["version"])) != (int(event["position"]), int(event["version"])):
            raise VerificationError(f"{where}: its proof is for position {leaf['position']} version {leaf['version']}")
        if int(leaf["tree_size"]) != size:
            raise VerificationError(
                f"{where}: its proof is for a tree of {leaf['tree_size']} leaves, the checkpoint signs {size}"
            )
        state = base64.b64decode(leaf["stored"])
        data = leaf_bytes(
            int(leaf["position"]), int(leaf["recorded_us"]), int(leaf["version"]), stream, str(leaf["topic"]), state
        )
        if not str(leaf["topic"]).endswith(":" + str(event.get("type"))):
            raise VerificationError(f"{where}: shown as {event.get('type')}, stored as {leaf['topic']}")
        _check_shown_fields(where, event, state)
        try:
            verify_inclusion(h, int(leaf["index"]), size, leaf_hash(h, data), leaf["proof"], root)
        except VerificationError as e:
            raise VerificationError(f"{where}: {e}") from None
    return len(events)


def _check_shown_fields(where: str, event: dict[str, Any], state: bytes) -> None:
    """The fields an export shows must be those stored. Personal fields are stored sealed and
    typed values (times, ids) wrapped by the transcoder, so plain scalars are what is compared."""
    try:
        stored = json.loads(state)
    except ValueError:
        return
    if not isinstance(stored, dict):
        return
    for name, shown in (event.get("fields") or {}).items():
        value = stored.get(name)
        if isinstance(value, str | int | float | bool) and type(value) is type(shown) and value != shown:
            raise VerificationError(f"{where}: field {name!r} is shown as {shown!r} but stored as {value!r}")


# ---- published folders ----------------------------------------------------------------------------------


def verify_folder(
    folder: Path, log_key: PublicKey, witness_keys: Sequence[PublicKey] = (), require_witnesses: int = 0
) -> int:
    """Check every checkpoint in a published folder and that each extends the one before it
    (``checkpoint-<size>.json`` and ``consistency-<old>-<new>.json``). Returns how many."""
    checkpoints = sorted(folder.glob("checkpoint-*.json"), key=lambda p: int(p.stem.split("-")[1]))
    previous: dict[str, Any] | None = None
    for path in checkpoints:
        cp = json.loads(path.read_text())
        verify_checkpoint(cp, log_key, witness_keys, require_witnesses)
        if previous is not None:
            proof_file = folder / f"consistency-{previous['size']}-{cp['size']}.json"
            if not proof_file.exists():
                raise VerificationError(
                    f"{proof_file.name} is missing: nothing shows {path.name} extends the checkpoint before it"
                )
            verify_extends(previous, cp, json.loads(proof_file.read_text())["proof"], log_key)
        previous = cp
    return len(checkpoints)


def _load(path: str) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="verifier.py", description="Check Guanai's signed checkpoints and proofs.")
    p.add_argument("--key", required=True, help="the log's public key file (guanai-public-key/1 JSON)")
    p.add_argument("--witness-key", action="append", default=[], help="a witness's public key file (repeatable)")
    p.add_argument(
        "--require-witnesses",
        type=int,
        default=None,
        help="how many witness signatures a checkpoint needs (default: every --witness-key given)",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("checkpoint").add_argument("file")
    e = sub.add_parser("extends")
    e.add_argument("old")
    e.add_argument("new")
    e.add_argument("proof")
    sub.add_parser("export").add_argument("file")
    sub.add_parser("folder").add_argument("folder")
    args = p.parse_args(argv)
    try:
        log_key = PublicKey.from_document(_load(args.key))
        witnesses = [PublicKey.from_document(_load(w)) for w in args.witness_key]
        need = len(witnesses) if args.require_witnesses is None else args.require_witnesses
        if args.command == "checkpoint":
            cp = _load(args.file)
            verify_checkpoint(cp, log_key, witnesses, need)
            print(f"OK: checkpoint of {cp['size']} events, root {cp['root']}, signed by {log_key.key_id}")
        elif args.command == "extends":
            old, new = _load(args.old), _load(args.new)
            verify_checkpoint(old, log_key, witnesses, need)
            verify_checkpoint(new, log_key, witnesses, need)
            verify_extends(old, new, _load(args.proof)["proof"], log_key)
            print(f"OK: the log of {new['size']} events extends the log of {old['size']} events")
        elif args.command == "export":
            n = verify_export(_load(args.file), log_key, witnesses, need)
            print(f"OK: the {n} events of the case history are in the signed log, as stored")
        else:
            n = verify_folder(Path(args.folder), log_key, witnesses, need)
            print(f"OK: {n} checkpoints, each signed and extending the one before")
    except VerificationError as err:
        print(f"REFUSED: {err}", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError, TypeError) as err:
        print(f"REFUSED: unreadable input: {err!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
