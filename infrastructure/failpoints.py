"""Failpoints: named places where a process kills itself (SIGKILL), so that crash tests can
prove what survives a crash exactly there (after a command committed, before its message was
acknowledged, before an HTTP response was sent).

A test process sets ``GUANAI_FAILPOINTS="router.after_route=3,api.after_file=1"``: the process
dies the 3rd time it passes ``router.after_route``. With ``:stop`` after the count
(``relay.before_save=2:stop``) it stops itself there instead (SIGSTOP), so that a test can break
something around it (kill the database) and then let it go on (SIGCONT) exactly from that point. It is read once, at import; unset (always, in
production) a failpoint is one dictionary lookup. It is not a setting: nobody configures it.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "GUANAI_FAILPOINTS"


def _parse(spec: str) -> dict[str, tuple[int, signal.Signals]]:
    points = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, value = item.partition("=")
        count, _, action = value.partition(":")
        points[name.strip()] = (int(count or 1), signal.SIGSTOP if action.strip() == "stop" else signal.SIGKILL)
    return points


_armed = _parse(os.environ.get(ENV, ""))
_passed: dict[str, int] = {}
_lock = threading.Lock()


def failpoint(name: str) -> None:
    """Die here (SIGKILL: no cleanup, no flush) when a test armed this point and its count is
    reached; or stop here (SIGSTOP) that once, when armed with ``:stop``."""
    if name not in _armed:
        return
    count, sig = _armed[name]
    with _lock:
        _passed[name] = _passed.get(name, 0) + 1
        reached = _passed[name] >= count if sig == signal.SIGKILL else _passed[name] == count
    if reached:
        os.kill(os.getpid(), sig)
