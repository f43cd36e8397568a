"""Names for list pages: the views keep none, so the rows of one page get theirs from the event
store at read time (``CareApplication.names``: one query per page). An erased person's name
reads as erased here as everywhere else."""

from __future__ import annotations

from typing import Any

from application.care import CareApplication


def with_names(
    app: CareApplication, rows: list[dict[str, Any]], id_key: str = "id", name_key: str = "name"
) -> list[dict[str, Any]]:
    names = app.names(row[id_key] for row in rows if row.get(id_key) is not None)
    for row in rows:
        row[name_key] = names.get(row[id_key]) if row.get(id_key) is not None else None
    return rows
