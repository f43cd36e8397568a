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


def test_the_map_names_only_domain_and_application_errors() -> None:
    for cls in DOMAIN_PROBLEMS:
        assert cls.__module__.split(".")[0] in {"domain", "application"}, cls
