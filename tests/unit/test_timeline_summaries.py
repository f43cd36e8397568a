"""A timeline entry's summary as the API answers it, from the JSON text the view holds: the same
JSON object as decoding it and leaving out every other cared-for person (``about_this_person``),
whether it is passed on undecoded or rewritten."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from api.timeline import TimelineEntry, about_this_person, summary_for

ME = uuid.uuid4()
OTHER = uuid.uuid4()

SUMMARIES: list[dict[str, Any]] = [
    {"tag": "empty_nest"},
    {},
    {"person_id": str(ME), "mode": "home_visit", "helper_ids": [str(uuid.uuid4())]},
    {"person_id": str(OTHER), "pairing_id": str(uuid.uuid4())},  # someone else joined a pairing
    {"person_id": None, "note": "nobody"},
    {"person_ids": [str(ME), str(OTHER), str(uuid.uuid4())], "shape": "one_to_many"},
    {"person_ids": [str(ME)], "person_id": str(OTHER)},
    {"person_ids": "not a list", "x": 1},
    {"text": 'quotes "person_id" inside a value', "nested": {"person_id": str(OTHER)}},
    {"services": ["a", "b"], "visited_at": "2026-09-03T12:00:00+08:00", "late": False, "n": 1.5},
]


@pytest.mark.parametrize("summary", SUMMARIES)
def test_a_summary_from_the_views_text_is_the_summary_about_this_person(summary: dict[str, Any]) -> None:
    # The view's JSON text as PostgreSQL gives jsonb back: a space after each colon and comma.
    raw = msgspec.json.encode(summary).replace(b'":', b'": ').replace(b',"', b', "')
    out = summary_for(raw, ME, str(ME))
    assert msgspec.json.decode(msgspec.json.encode(out)) == about_this_person(summary, ME)
    entry = TimelineEntry(1, "k", out, "a", "r", None, datetime(2026, 1, 1, tzinfo=UTC), ME, 1)
    assert msgspec.json.decode(msgspec.json.encode(entry))["summary"] == about_this_person(summary, ME)


def test_only_summaries_that_name_persons_are_decoded() -> None:
    assert isinstance(summary_for(b'{"tag": "empty_nest"}', ME, str(ME)), msgspec.Raw)
    assert isinstance(summary_for(f'{{"person_id": "{ME}"}}'.encode(), ME, str(ME)), msgspec.Raw)
    assert summary_for(f'{{"person_id": "{OTHER}"}}'.encode(), ME, str(ME)) == {"person_id": None}
    assert summary_for(f'{{"person_ids": ["{OTHER}"]}}'.encode(), ME, str(ME)) == {
        "person_ids": [],
        "other_persons": 1,
    }
