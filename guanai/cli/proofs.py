"""``guanai audit ...`` commands for signed checkpoints, proofs and witnesses.

    guanai audit checkpoint --publish DIR     sign the newest checkpoint; write it, the
                                              consistency proof from the folder's last one and
                                              the log's public key into DIR (the folder an
                                              outside party mirrors)
    guanai audit public-key [--out FILE]      the log's public key (guanai-public-key/1)
    guanai audit keygen --suite S --out FILE  a witness's (or a log's) signing key, and FILE.pub.json
    guanai audit witness DIR --key FILE       co-sign DIR's newest checkpoint after checking it
                                              extends the last one this witness saw

``keygen`` and ``witness`` need no database: a witness runs in another office, on its copy of
the published folder, with its own key.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

from infrastructure import merkle, verifier
from infrastructure.suites import SuiteError, load_or_create_signing_key, suite, write_private

OFFLINE = {"keygen", "witness"}  # commands that need no database
LOG_KEY_FILE = "log-key.json"


def publish(audit: Any, folder: Path) -> dict[str, Any]:
    """Sign the newest checkpoint and write it into ``folder`` with the consistency proof from the
    newest checkpoint already there, and the log's public key; co-signatures witnesses added to
    the folder's checkpoints since are kept with them in the store (the API then serves them)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOG_KEY_FILE).write_text(json.dumps(audit.public_key(), indent=1) + "\n")
    audit.collect_witnesses(folder)
    cp = audit.latest_checkpoint()
    sizes = sorted(int(p.stem.split("-")[1]) for p in folder.glob("checkpoint-*.json"))
    previous = sizes[-1] if sizes else None
    if previous is not None and previous != int(cp["size"]):
        proof = audit.consistency(previous, int(cp["size"]))
        _write(
            folder / f"consistency-{previous}-{cp['size']}.json",
            {"from": previous, "to": cp["size"], "proof": proof["proof"]},
        )
    target = folder / f"checkpoint-{cp['size']}.json"
    if not target.exists():
        _write(target, cp)
    return cp


def _write(path: Path, doc: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def run_online(audit: Any, args: argparse.Namespace) -> int | None:
    """The commands of this module that read the store; None for the others."""
    if args.audit_command == "public-key":
        text = json.dumps(audit.public_key(), indent=1)
        if args.out:
            args.out.write_text(text + "\n")
        print(text)
        return 0
    if args.audit_command == "checkpoint" and getattr(args, "publish", None):
        cp = publish(audit, args.publish)
        print(
            f"guanai audit: published the checkpoint of {cp['size']:,} events (root {cp['root']}) to {args.publish}",
            file=sys.stderr,
        )
        return 0
    return None


def run_offline(args: argparse.Namespace) -> int:
    try:
        if args.audit_command == "keygen":
            key = load_or_create_signing_key(args.out, suite(args.suite), args.name)
            pub = args.out.with_name(args.out.name + ".pub.json")
            pub.write_text(json.dumps(key.public.document(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            print(f"guanai audit: key {key.key_id} in {args.out}; its public key in {pub}")
            return 0
        return witness(
            args.folder, args.key, args.state or args.key.with_name(args.key.name + ".state.json"), args.log_key
        )
    except (verifier.VerificationError, SuiteError) as e:
        print(f"guanai audit: REFUSED: {e}", file=sys.stderr)
        return 1


def witness(folder: Path, key_file: Path, state_file: Path, log_key_file: Path | None) -> int:
    """Check the folder's newest checkpoint extends the last one this witness saw, co-sign it
    (into its file), and remember it. Refuses a fork, a shrink, a bad signature."""
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    if log_key_file is not None:
        log_doc = json.loads(log_key_file.read_text())
    elif "log_key" in state:
        log_doc = state["log_key"]
    else:
        log_doc = json.loads((folder / LOG_KEY_FILE).read_text())  # trust on first use, then pinned
    log_key = verifier.PublicKey.from_document(log_doc)
    own_suite = key_file.read_text().split(":", 1)[0]
    key = load_or_create_signing_key(key_file, suite(own_suite), "witness")
    paths = sorted(folder.glob("checkpoint-*.json"), key=lambda p: int(p.stem.split("-")[1]))
    if not paths:
        raise verifier.VerificationError(f"{folder} holds no checkpoint")
    last = state.get("last")
    chain = [json.loads(p.read_text()) for p in paths]
    if last is not None:
        for cp in chain:
            if int(cp["size"]) == int(last["size"]) and cp["root"] != last["root"]:
                verifier.verify_checkpoint(cp, log_key)
                raise verifier.VerificationError(
                    f"forked log: {cp['size']} events with root {cp['root']}, but this witness saw root {last['root']}"
                )
        chain = [last, *(cp for cp in chain if int(cp["size"]) > int(last["size"]))]
    for cp in chain:
        verifier.verify_checkpoint(cp, log_key)
    for older, newer in itertools.pairwise(chain):
        proof: list[str] = []
        if int(older["size"]) != int(newer["size"]):
            proof_file = folder / f"consistency-{older['size']}-{newer['size']}.json"
            if not proof_file.exists():
                raise verifier.VerificationError(
                    f"{proof_file.name} is missing: cannot check the log was only appended to"
                )
            proof = json.loads(proof_file.read_text())["proof"]
        verifier.verify_extends(older, newer, proof, log_key)
    newest = chain[-1]
    signature = merkle.cosign(key, newest)
    path = folder / f"checkpoint-{newest['size']}.json"
    doc = json.loads(path.read_text())
    doc["witnesses"] = [w for w in doc.get("witnesses") or [] if w.get("key_id") != key.key_id] + [signature]
    _write(path, doc)
    write_state = {"log_key": log_key.document(), "last": {k: v for k, v in newest.items() if k != "witnesses"}}
    if state_file.exists():
        _write(state_file, write_state)
    else:
        write_private(state_file, json.dumps(write_state))
    print(
        f"guanai audit: witness {key.key_id} co-signed the checkpoint of {newest['size']:,} events "
        f"(it extends the {chain[0]['size']:,} seen before)"
        if len(chain) > 1
        else f"guanai audit: witness {key.key_id} co-signed the checkpoint of {newest['size']:,} events (the first it saw)"
    )
    return 0
