"""A progress bar on stderr for long operations (``guanai projections rebuild``, ``guanai keys
rotate``): items done,
rate and time left. On a terminal it redraws one line; in a log it writes a line every few
seconds, so that a log is not flooded."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

WIDTH = 24


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressBar:
    def __init__(
        self, label: str, file: TextIO | None = None, *, every: float | None = None, unit: str = "events"
    ) -> None:
        self.label = label
        self.unit = unit
        self.file = file or sys.stderr
        self.tty = self.file.isatty()
        self.every = every if every is not None else (0.2 if self.tty else 5.0)
        self._last = 0.0
        self._line = ""

    def line(self, done: int, total: int, rate: float, eta: float | None) -> str:
        filled = int(WIDTH * done / total) if total else WIDTH
        bar = "#" * min(filled, WIDTH) + "-" * max(WIDTH - filled, 0)
        return f"  {self.label:<14} [{bar}] {done:>11,}/{total:<11,} {self.unit} {rate:>9,.0f}/s  ETA {_clock(eta)}"

    def update(self, progress: Any) -> None:
        """Takes a ``projections.rebuild.Progress`` or anything with done, total, rate and eta."""
        self._line = self.line(progress.done, progress.total, progress.rate, progress.eta)
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self._write()

    def finish(self, summary: str = "") -> None:
        if self._line:
            self._write()
        if self.tty:
            print(file=self.file)
        if summary:
            print(f"  {self.label:<14} {summary}", file=self.file, flush=True)

    def _write(self) -> None:
        if self.tty:
            print("\r" + self._line, end="", file=self.file, flush=True)
        else:
            print(self._line, file=self.file, flush=True)
