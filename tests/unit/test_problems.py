"""Domain and application errors carry no HTTP: api/problems.py maps each to its answer."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import application
import domain
from api.problems import DOMAIN_PROBLEMS, Problem, problem_of
from application.errors import NotFoundError
from domain.base import ClosedError, DomainError
from domain.pairing import PairingEndedError
from domain.visit_task import OutsideWindowError
from infrastructure.spreadsheets import (
    Limits,
    UploadGone,
    UploadNotReadable,
    UploadRefused,
    UploadTooLarge,
    check_upload,
)


def domain_errors() -> list[type[DomainError]]:
    for package in (domain, application):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)
    found: list[type[DomainError]] = []
    pending: list[type[DomainError]] = [DomainError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return sorted(set(found), key=lambda c: f"{c.__module__}.{c.__qualname__}")


@pytest.mark.parametrize("cls", domain_errors(), ids=lambda c: c.__qualname__)
def test_a_domain_error_knows_nothing_of_http_and_is_answered_by_the_map(cls: type[DomainError]) -> None:
    assert not {"status", "slug", "title"} & set(vars(cls)), f"{cls.__qualname__} names an HTTP answer"
    answer = problem_of(cls)
    assert 400 <= answer.status < 500 and answer.slug and answer.title


def test_an_error_without_an_entry_is_answered_as_its_nearest_base() -> None:
    assert PairingEndedError not in DOMAIN_PROBLEMS
    assert problem_of(PairingEndedError("ended")) == DOMAIN_PROBLEMS[ClosedError] == Problem(409, "closed", "Closed")
    assert problem_of(OutsideWindowError("late")) == Problem(422, "outside-window", "Outside the due window")
    assert problem_of(NotFoundError("gone")).status == 404


def test_the_map_names_only_domain_application_and_infrastructure_errors() -> None:
    for cls in DOMAIN_PROBLEMS:
        assert cls.__module__.split(".")[0] in {"domain", "application", "infrastructure"}, cls


def test_an_upload_is_refused_by_kind_and_the_kind_says_the_answer() -> None:
    """An upload's refusal carries no status: too large is 413, a kind the import does not read
    415, a file deleted after its days 410, anything else unreadable 422."""
    with pytest.raises(UploadTooLarge) as large:
        check_upload(b"x" * 11, "a.csv", Limits(max_bytes=10))
    with pytest.raises(UploadNotReadable) as old:
        check_upload(b"\xd0\xcf\x11\xe0" + b"\0" * 600, "a.xls", Limits())
    with pytest.raises(UploadRefused) as empty:
        check_upload(b"", "a.csv", Limits())
    answers = [problem_of(e.value) for e in (large, old, empty)] + [problem_of(UploadGone("deleted"))]
    assert [(a.status, a.slug) for a in answers] == [
        (413, "body-too-large"),
        (415, "unsupported-media-type"),
        (422, "file-refused"),
        (410, "gone"),
    ]
    assert not {"status", "slug"} & set(vars(empty.value)), "the refusal names an HTTP answer"
