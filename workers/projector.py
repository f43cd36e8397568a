"""The projector: keeps every read model up to date with the event store.

``Projector`` runs all projections on one runner, either in a background thread of another
process (the API embeds one) or as the standalone ``guanai projector`` process (``main``),
which stops cleanly on SIGTERM or SIGINT after finishing the batch in hand.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any, Self

import structlog
from psycopg_pool import ConnectionPool

from application.care import CareApplication
from projections import all_projections
from projections.registry import RegistryView
from projections.runner import Projection, ProjectionRunner

log = structlog.get_logger(__name__)


class Projector:
    """A runner over all projections, with a background thread and read-your-writes waits.

    Built from a database URL and either ``app``, an existing CareApplication to share (its
    recorder and mapper are only read), or ``make_app``, which builds the projector's own on
    first use (guanai/bootstrap.py: one that opens no personal data, as the views hold none).
    Connects on ``open()``/``start()``, not before. A batch is up to ``batch_size`` events read
    and applied in one transaction: 2,000, so that a device's backlog of 500 visit logs (1,000
    events, one save) is one read and one transaction, not two and a look for more.
    """

    def __init__(
        self,
        database_url: str,
        *,
        app: CareApplication | None = None,
        make_app: Callable[[], CareApplication] | None = None,
        projections: Sequence[Projection] | None = None,
        batch_size: int = 2000,
        poll_interval: float = 2.0,
        pool_size: int = 4,
        batch_interval: float = 0.05,
    ) -> None:
        if (app is None) == (make_app is None):
            raise ValueError("a Projector needs an app to share or make_app to build its own (one of them)")
        self.database_url = database_url
        self._app = app
        self._make_app = make_app
        self._own_app = app is None
        self._projections = list(projections) if projections is not None else all_projections()
        self._runner_options = {
            "batch_size": batch_size,
            "poll_interval": poll_interval,
            "pool_size": pool_size,
            "batch_interval": batch_interval,
        }
        self._runner: ProjectionRunner | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    @property
    def runner(self) -> ProjectionRunner:
        with self._lock:
            if self._runner is None:
                if self._app is None:
                    assert self._make_app is not None
                    self._app = self._make_app()
                self._runner = ProjectionRunner(self._app, self.database_url, self._projections, **self._runner_options)
            return self._runner

    @property
    def pool(self) -> ConnectionPool:
        """The projector's connection pool (for read views); opened by ``open()``."""
        return self.runner.pool

    @property
    def view(self) -> RegistryView:
        """The registry's read side, on the projector's own pool."""
        self.open()
        return RegistryView(self.runner.pool)

    def open(self) -> Self:
        self.runner.open()
        return self

    def start(self) -> Self:
        """Catch up and follow the log in a background thread."""
        self.open()
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self.runner.run, args=(self._stop,), name="projector", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop after the batch in hand; True when the thread ended within ``timeout``."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def close(self) -> None:
        self.stop()
        if self._runner is not None:
            self._runner.close()
        if self._own_app and self._app is not None:
            self._app.close()

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self, stop_event: threading.Event) -> None:
        """Follow the log in the calling thread until ``stop_event`` is set."""
        self.runner.run(stop_event)

    def catch_up(self, max_batches: int | None = None) -> int:
        return self.runner.catch_up(max_batches=max_batches)

    def wait_for(self, position: int | None, timeout: float = 2.0) -> bool:
        return self.runner.wait_for(position, timeout)

    def position(self, name: str | None = None) -> int:
        return self.runner.position(name)

    def lag(self) -> dict[str, Any]:
        return self.runner.lag()

    def rebuild(self, name: str) -> int:
        return self.runner.rebuild(name)


def main(projector: Projector, *, stop_event: threading.Event | None = None) -> int:
    """The standalone projector process (``guanai projector``, which builds the projector):
    runs until SIGTERM/SIGINT (or ``stop_event``), finishing the batch in hand."""
    stop = stop_event or threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("projector stopping", signal=signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    with projector:
        projector.run(stop)
    return 0
