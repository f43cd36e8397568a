"""The API's read side: the views' tables and their tracked positions (read-your-writes).

The API never applies events; a projector (thread or process) does. The API reads the views and
waits on their tracking rows.
"""

from __future__ import annotations

from typing import Any

from psycopg_pool import ConnectionPool

from application.care import CareApplication
from projections import all_projections
from projections.emergency_queue import EmergencyQueueView
from projections.registry import RegistryView
from projections.runner import ProjectionRunner


class ReadSide:
    def __init__(self, runner: ProjectionRunner) -> None:
        self.runner = runner
        self.view = RegistryView(runner.pool)
        self.reports = EmergencyQueueView(runner.pool)

    @classmethod
    def open(cls, app: CareApplication, database_url: str, *, pool_size: int = 4) -> ReadSide:
        runner = ProjectionRunner(app, database_url, all_projections(), pool_size=pool_size)
        runner.open()
        return cls(runner)

    @property
    def pool(self) -> ConnectionPool:
        """The views' connection pool, for a view class of one query (``VisitTaskView(views.pool)``)."""
        return self.runner.pool

    def wait_for(self, position: int | None, timeout: float) -> bool:
        return self.runner.wait_for(position, timeout)

    def position(self) -> int:
        return self.runner.position()

    def lag(self) -> dict[str, Any]:
        return self.runner.lag()

    def close(self) -> None:
        self.runner.close()
