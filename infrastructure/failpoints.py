"""Failpoints: named places where a process kills itself (SIGKILL), so that crash tests can
prove what survives a crash exactly there (after a command committed, before its message was
acknowledged, before an HTTP response was sent).

A test process sets ``GUANAI_FAILPOINTS="router.after_route=3,api.after_file=1"``: the process
dies the 3rd time it passes ``router.after_route``. It is read once, at import; unset (always, in
production) a failpoint is one dictionary lookup. It is not a setting: nobody configures it.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "GUANAI_FAILPOINTS"


def _parse(spec: str) -> dict[str, int]:
    points = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, count = item.partition("=")
        points[name.strip()] = int(count or 1)
    return points


_armed = _parse(os.environ.get(ENV, ""))
_passed: dict[str, int] = {}
_lock = threading.Lock()


def failpoint(name: str) -> None:
    """Die here (SIGKILL: no cleanup, no flush) when a test armed this point and its count is reached."""
    if name not in _armed:
        return
    with _lock:
        _passed[name] = _passed.get(name, 0) + 1
        if _passed[name] >= _armed[name]:
            os.kill(os.getpid(), signal.SIGKILL)
