"""A write's body is decoded once (api/security.py ``check_json``) and its access check may run in
the handler's own thread (``Access.defer``/``settle``): neither may let through what the exact
checks refuse, nor answer differently from them."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace
from typing import Any

import pytest

from api.access.checks import Access
from api.common import CommandContext
from api.problems import ProblemError
from api.security import _NOT_DECODED, MAX_DEPTH, _check_exactly, check_json


def _outcome(check: Any, body: bytes) -> tuple[str, Any]:
    try:
        check(body)
    except ProblemError as refused:
        return "refused", str(refused)
    return "accepted", None


def _exactly(body: bytes) -> None:
    _check_exactly(body.decode("utf-8"))


NESTED = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
BODIES = [
    '{"a": 1, "a": 2}',
    '{"a": {"b": 1, "c": {"d": [1, {"e": 1, "e": 1}]}}}',
    '{"a:b": "c:d", "e": ["::", {"f:": ":"}]}',
    '{"a": "x\\u003a", "a": 1}',  # an escaped colon must not hide a duplicate
    '{"k\\u003A": 1, "k\\u003A": 2}',
    '{"a": "\\u0000"}',
    '{"a\\u0000": 1}',
    '{"a": [1, 2, "x\\u0000y"]}',
    NESTED,
    "[" * MAX_DEPTH + "]" * MAX_DEPTH,
    '{"a": NaN}',
    '{"a": 1e400}',
    "\ufeff{}",
    '{"a": 1,}',
    '{"a": "\\ud800"}',
    "[]",
    '"text: with a colon"',
    '{"a": {}, "b": {}}',
    '{"": 1, "": 2}',
]


@pytest.mark.parametrize("text", BODIES)
def test_decoding_once_answers_as_the_exact_check(text: str) -> None:
    body = text.encode("utf-8")
    assert _outcome(check_json, body) == _outcome(_exactly, body)


def test_a_duplicate_is_found_wherever_it_hides() -> None:
    rng = random.Random(19)
    keys = ["a", "b:c", ":", "d::e", "名字", "f"]
    for _ in range(300):
        value: dict[str, Any] = {k: rng.choice([1, "x:y", [":", {"g:": 1}], {"h": ":"}]) for k in rng.sample(keys, 4)}
        text = json.dumps(value, ensure_ascii=rng.random() < 0.5)
        accepted = check_json(text.encode())
        assert accepted == value  # the value Litestar and the guard are handed
        # The same key again, at the top or inside a nested object: always refused.
        dup = rng.choice(list(value))
        twice = text[:-1] + ", " + json.dumps(dup) + ": 0}"
        assert _outcome(check_json, twice.encode())[0] == "refused"
        assert _outcome(check_json, twice.encode()) == _outcome(_exactly, twice.encode())


def test_what_only_the_exact_check_reads_is_not_handed_on() -> None:
    assert check_json(b'{"a": NaN}') is _NOT_DECODED  # Litestar decodes (and refuses) it itself
    assert check_json(b'{"a": 1}') == {"a": 1}


def _access() -> Access:
    return Access(None, None, None)  # type: ignore[arg-type]


def test_a_deferred_check_runs_once_and_a_refusal_stays() -> None:
    access, runs = _access(), []
    access.defer(lambda: runs.append(1))
    access.settle()
    access.settle()
    assert runs == [1]

    refusing = _access()

    def refuse() -> None:
        runs.append(2)
        raise PermissionError("not yours")

    refusing.defer(refuse)
    for use in (refusing.settle, refusing.aggregates, lambda: refusing.loaded(object, None)):  # type: ignore[arg-type]
        with pytest.raises(PermissionError):
            use()
    assert runs == [1, 2, 2, 2]


def test_a_command_context_gives_nothing_out_before_the_check_passed() -> None:
    access = _access()

    def refuse() -> None:
        raise PermissionError("not yours")

    access.defer(refuse)
    request = SimpleNamespace(app=SimpleNamespace(state=SimpleNamespace(care="the application")))
    request.scope = {"state": {"access": access}}
    command = CommandContext(request)  # type: ignore[arg-type]
    ran = []
    for use in (
        lambda: command.care,
        lambda: command.accounts,
        lambda: command.meta(None),
        command.expected_version,
        command.record_access,
        lambda: command.run(lambda: ran.append(1)),
    ):
        with pytest.raises(PermissionError):
            use()
    assert ran == []


def test_the_hot_commands_settle_their_check_and_the_rest_do_not() -> None:
    from api.access.guard import _settles_check
    from guanai import bootstrap
    from infrastructure.settings import Settings

    app = bootstrap.api(
        Settings(), database_url="postgresql://nobody@127.0.0.1:1/none", nats_url=None, jwt_secret="x" * 48
    )
    settling = {
        (method, route.path)
        for route in app.routes
        for handler in getattr(route, "route_handlers", [])
        for method in handler.http_methods
        if _settles_check(handler, dict.fromkeys(route.path_parameters))
    }
    hot = {"/persons", "/helpers", "/pairings", "/visits/{task_id:uuid}/claim", "/visits/{task_id:uuid}/complete"}
    assert {("POST", path) for path in hot} <= settling
    units = {"/org-units", "/org-units/{unit_id:uuid}/rename"}
    accounts = {
        "/accounts",
        *(f"/accounts/{{account_id:uuid}}/{action}" for action in ("role", "lock", "unlock", "reset", "close")),
    }
    assert {("POST", path) for path in units | accounts} <= settling
    # takes the application itself: checked by the guard
    assert ("POST", "/pairings/{pairing_id:uuid}/end") not in settling
    assert all(method == "POST" for method, _ in settling)
