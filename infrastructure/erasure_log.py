"""The erasure log: one line per erasure, kept apart from the database and its backups, so that a
restore can erase again whoever was erased after the backup was taken.

Erasing a person destroys their data keys (``infrastructure/personal_data.py``). A backup taken
before that still holds those keys, wrapped under a master key the restore brings back too:
restored as it is, it would bring an erased child's data back. So every erasure also appends a
line here, in the erasure's own transaction, before it commits (flushed to disk, under a file
lock, one ``write`` per line): the store's origin, the person's id, the position of the
``Person.Erased`` event, who and when. ``guanai restore`` replays every line of its store whose
position is newer than the backup's last event (``infrastructure/backup.py``).

Written before the commit, a line may name an erasure that then rolled back (the process died
in between, the database refused): the restore then erases a person an administrator decided
to erase. That errs on the side the law asks for; the other order could lose an erasure.
A failed append refuses the erasure (``ErasureLogError``: 503, nothing written): an erasure the
log does not hold could come back with the next restore.

The log holds no personal data: ids, positions, times, the administrator's id and reason (which
is administrative text, stored in the clear in the event too). Keep it on another disk than the
database and away from the backups (``GUANAI_ERASURE_LOG``); back it up on its own, e.g. with
the erasure log of the standby.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infrastructure.personal_data import MasterKeyError

FORMAT = 1


class ErasureLogError(MasterKeyError):
    """The erasure log could not be written: the erasure is refused with nothing stored. A kind
    of ``MasterKeyError`` so that every edge answers it as the keys being unavailable (503, try
    again), which is what it is to the caller."""


def default_path(data_dir: Path) -> Path:
    """Beside the data directory, not in it: a data directory wiped or restored keeps its log."""
    return data_dir.parent / f"{data_dir.name}-erasures.jsonl"


@dataclass(frozen=True)
class Erasure:
    store: str  # the store's origin (infrastructure/merkle.py): a log may outlive one store
    person: str
    position: int  # notification id of the Person.Erased event
    at: datetime  # when the erasure was written (UTC)
    by: str | None = None
    role: str | None = None
    reason: str | None = None
    occurred_at: str | None = None

    def line(self) -> bytes:
        entry = {
            "v": FORMAT,
            "store": self.store,
            "person": self.person,
            "position": self.position,
            "at": self.at.isoformat(),
            "by": self.by,
            "role": self.role,
            "reason": self.reason,
            "occurred_at": self.occurred_at,
        }
        return (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode()

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Erasure:
        return cls(
            store=str(raw["store"]),
            person=str(raw["person"]),
            position=int(raw["position"]),
            at=datetime.fromisoformat(raw["at"]),
            by=raw.get("by"),
            role=raw.get("role"),
            reason=raw.get("reason"),
            occurred_at=raw.get("occurred_at"),
        )


class ErasureLog:
    """Append-only JSON lines at ``path`` (created with its folder on first append, mode 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, entries: list[Erasure]) -> None:
        if not entries:
            return
        data = b"".join(e.line() for e in entries)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # processes sharing the log never interleave lines
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(f"wrote {written} of {len(data)} bytes")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise ErasureLogError(
                f"the erasure log {self.path} cannot be written ({e.strerror or e}): the erasure is refused "
                "(a restore would bring back an erasure the log does not hold); fix GUANAI_ERASURE_LOG and try again"
            ) from None

    def entries(self) -> Iterator[Erasure]:
        """Every complete entry, oldest first. A last line cut short (a crash while appending,
        before its erasure committed) is skipped; a damaged line elsewhere is an error."""
        if not self.path.exists():
            return
        lines = self.path.read_bytes().split(b"\n")
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                yield Erasure.parse(json.loads(raw))
            except (ValueError, KeyError, TypeError):
                if number == len(lines):  # no newline after it: an append cut short
                    return
                raise ErasureLogError(f"line {number} of the erasure log {self.path} is damaged") from None

    def since(self, store: str, position: int) -> list[Erasure]:
        """The entries of ``store`` newer than ``position``, one per person (the first)."""
        seen: dict[str, Erasure] = {}
        for entry in self.entries():
            if entry.store == store and entry.position > position:
                seen.setdefault(entry.person, entry)
        return list(seen.values())


def now() -> datetime:
    return datetime.now(UTC)
