"""What a long-running process made to start is kept out of the cyclic collector's full passes
(``bootstrap.freeze_startup``): its garbage collected first, the rest frozen; the API freezes it
before it serves, so a full pass walks only what requests made since."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from guanai import bootstrap
from guanai.cli import run
from infrastructure.settings import Settings


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


@pytest.fixture
def unfrozen() -> Iterator[None]:
    assert gc.get_freeze_count() == 0
    try:
        yield
    finally:
        gc.unfreeze()


def tracked(obj: Any) -> bool:
    """Whether a full collection would walk ``obj`` (frozen objects are in no generation)."""
    return any(o is obj for o in gc.get_objects())


def test_startup_garbage_is_collected_and_what_is_alive_is_frozen(unfrozen: None) -> None:
    kept, dropped = Node(), Node()
    gone = weakref.ref(dropped)
    del dropped
    assert tracked(kept) and gone() is not None
    bootstrap.freeze_startup()
    assert gone() is None  # collected, not frozen for ever
    assert gc.get_freeze_count() > 0 and not tracked(kept)
    made_later = Node()
    assert tracked(made_later)


def test_the_api_freezes_what_it_made_before_it_serves(
    unfrozen: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    served: list[int] = []
    app = Node()
    monkeypatch.setattr(bootstrap, "api", lambda *args, **kwargs: app)
    monkeypatch.setattr(run.uvicorn, "run", lambda *args, **kwargs: served.append(gc.get_freeze_count()))
    monkeypatch.setattr(run.signal, "signal", lambda *args: None)
    settings = Settings(jwt_secret="x" * 48, data_dir=str(tmp_path))
    run._serve_api(settings, "postgresql://unused", None, "127.0.0.1", 0)
    assert served and served[0] > 0 and not tracked(app)
