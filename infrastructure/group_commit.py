"""Group commit: saves arriving together from many threads written in one transaction.

The event store serialises its inserts with an EXCLUSIVE table lock held until the commit has
been flushed (``infrastructure/chain.py``): while one save holds it, every other save of the
process waits for it anyway. Here the waiting saves queue instead, and the first of them to find
no transaction in flight (the leader) takes the whole queue and writes it in one transaction:
one lock, one NOTIFY, one read of the chain's and the Merkle tree's heads, one flush. The others
(followers) sleep until the leader hands them their own result. A save that finds no leader
leads at once with a group of one: a lone command never waits for company.

The transaction itself (``commit``) decides each save on its own and records its answer on
the save: ``ids`` (its notification ids) or ``error`` (raised in the caller's thread).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import StoredEvent

# A group larger than this is split: the rest waits for the next transaction, which the first of
# them leads (one transaction's lock and flush should not grow without bound).
MAX_GROUP = 256


@dataclass(eq=False)
class Save:
    """One caller's save: its events, what its thread had in scope for the insert hooks
    (``context``: the lookup rows of its ``recording_lookups`` block), and its answer."""

    events: Sequence[StoredEvent]
    context: Any = None
    ids: list[int] | None = None
    error: BaseException | None = None
    leads: bool = False  # set when a finishing leader hands the queue to this save's thread
    _woken: threading.Event = field(default_factory=threading.Event)

    def result(self) -> list[int]:
        if self.error is not None:
            raise self.error
        assert self.ids is not None
        return self.ids


class GroupCommitter:
    """Leader/follower queue in front of ``commit``, which writes a group of saves in one
    transaction and sets each one's ``ids`` or ``error`` (it must not raise: anything it raises
    is taken as every unanswered save's error)."""

    def __init__(self, commit: Callable[[list[Save]], None], *, max_group: int = MAX_GROUP) -> None:
        self._commit = commit
        self._max_group = max_group
        self._lock = threading.Lock()
        self._queue: list[Save] = []
        self._leading = False  # a thread is writing a group now (the queue waits for it)
        self.submitted = 0  # counted for benchmarks and tests: saves handed in,
        self.groups = 0  # transactions written,
        self.saves = 0  # and the saves they wrote

    def submit(self, save: Save) -> list[int]:
        with self._lock:
            self._queue.append(save)
            self.submitted += 1
            leads = not self._leading
            self._leading = True
        if not leads:
            save._woken.wait()
            if not save.leads:
                return save.result()
        self._lead()
        return save.result()

    def _lead(self) -> None:
        with self._lock:
            group = self._queue[: self._max_group]
            del self._queue[: self._max_group]
        try:
            self._commit(group)
        except BaseException as e:  # noqa: BLE001 (every waiting caller is told)
            for s in group:
                if s.ids is None and s.error is None:
                    s.error = e
            raise_later = e
        else:
            raise_later = None
        finally:
            with self._lock:
                self.groups += 1
                self.saves += len(group)
                if self._queue:
                    # The next leader: the oldest waiting save, whose own group it is.
                    nxt = self._queue[0]
                    nxt.leads = True
                    nxt._woken.set()
                else:
                    self._leading = False
            for s in group:
                s._woken.set()
        if raise_later is not None and not isinstance(raise_later, Exception):
            raise raise_later  # KeyboardInterrupt, SystemExit: not swallowed in the leader's thread
