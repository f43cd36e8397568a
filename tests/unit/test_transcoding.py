"""The event transcoder (infrastructure/transcoding.py) writes the bytes the eventsourcing library's
JSONTranscoder writes and reads every stored form as it reads it: the audit chain MACs those bytes
and the verifier reads them. Compared on the events the domain's commands make, on an instance of
every event class of the domain with values of its declared types, and on generated trees."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import math
import pkgutil
import types
import typing
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum, IntEnum, StrEnum
from typing import Any
from uuid import UUID, uuid4

import msgspec
import pytest
from eventsourcing.persistence import JSONTranscoder, TranscodingNotRegisteredError
from hypothesis import example, given, settings
from hypothesis import strategies as st

import domain
from application.care import CareApplication
from bench.transcoder import Township, registered, township
from domain.base import CareAggregate
from domain.pairing import Pairing
from guanai import bootstrap
from infrastructure.transcoding import EventTranscoder


class Colour(StrEnum):
    RED = "red"
    QUOTE = 'say "hi"\n'


class Level(IntEnum):
    HIGH = 3


@pytest.fixture(scope="module")
def town() -> Iterator[Township]:
    with township(12) as t:
        yield t


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[JSONTranscoder, EventTranscoder]]:
    app = bootstrap.memory_application()
    try:
        yield registered(JSONTranscoder(), app), registered(EventTranscoder(), app)  # type: ignore[return-value]
    finally:
        app.close()


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (NaN equal to NaN, tz-aware times by offset too)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, datetime):
        return a == b and a.utcoffset() == b.utcoffset() and a.isoformat() == b.isoformat()
    return bool(a == b)


def outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except Exception as e:  # noqa: BLE001 (the same failure, when the library fails)
        return "error", type(e)


def check_both_ways(pair: tuple[JSONTranscoder, EventTranscoder], obj: Any) -> None:
    library, fast = pair
    expected = outcome(library.encode, obj)
    got = outcome(fast.encode, obj)
    assert got[0] == expected[0] and (got[1] == expected[1]), (obj, got, expected)
    if expected[0] == "ok":
        check_decodes(pair, expected[1])


def check_decodes(pair: tuple[JSONTranscoder, EventTranscoder], data: bytes) -> None:
    library, fast = pair
    expected, got = outcome(library.decode, data), outcome(fast.decode, data)
    assert got[0] == expected[0], (data, got, expected)
    if expected[0] == "ok":
        assert same(got[1], expected[1]), (data, got[1], expected[1])
        assert outcome(fast.encode, got[1]) == outcome(library.encode, expected[1])
    else:
        assert got[1] is expected[1]


# ---- the domain's events ---------------------------------------------------------------------------


def test_the_states_the_commands_make_are_written_as_the_library_writes_them(
    town: Township, pair: tuple[JSONTranscoder, EventTranscoder]
) -> None:
    assert len(town.states) > 100
    for state in town.states:
        check_both_ways(pair, state)


def test_every_stored_state_is_read_as_the_library_reads_it(
    town: Township, pair: tuple[JSONTranscoder, EventTranscoder]
) -> None:
    topics = {s.topic for s in town.stored}
    assert {"domain.visit_log:VisitLog.Recorded", "domain.visit_task:VisitTask.Completed"} <= topics
    for stored in town.stored:
        check_decodes(pair, stored.state)


def test_an_application_reads_and_writes_through_the_event_transcoder(town: Township) -> None:
    inner = town.app.mapper.transcoder
    assert isinstance(getattr(inner, "inner", inner), EventTranscoder)


def event_classes() -> list[type]:
    found: dict[str, type] = {}
    for module in pkgutil.iter_modules(domain.__path__):
        for obj in vars(importlib.import_module(f"domain.{module.name}")).values():
            if inspect.isclass(obj) and issubclass(obj, CareAggregate) and obj is not CareAggregate:
                for inner in vars(obj).values():
                    if inspect.isclass(inner) and dataclasses.is_dataclass(inner) and hasattr(inner, "mutate"):
                        found[f"{inner.__module__}:{inner.__qualname__}"] = inner
    return [found[k] for k in sorted(found)]


def sample(hint: Any, n: int = 0) -> Any:
    """A value of a declared type, with the awkward cases of JSON in it."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return {"id": uuid4(), "at": [datetime(2026, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=8)))], "x": 1.5}
    if origin in (typing.Union, types.UnionType):
        return sample(next(a for a in args if a is not type(None)), n)
    if origin is list:
        return [sample(args[0], n), sample(args[0], n + 1)]
    if origin is tuple:
        return tuple(sample(a, n) for a in args if a is not Ellipsis)
    if origin is dict:
        return {"甲": sample(args[1], n), 'k"\n': sample(args[1], n + 1)}
    if origin is typing.Literal:
        return args[0]
    if inspect.isclass(hint) and issubclass(hint, Enum):
        return list(hint)[n % len(hint)]
    return {
        UUID: uuid4(),
        datetime: datetime(2026, 12, 3, 18, 0, 0, 123456 * (n % 2), tzinfo=UTC),
        date: date(1940, 2, 29),
        str: '王秀兰\t说: "好"\u2028\x00' if n % 2 else "",
        int: 2**70 if n % 2 else -3,
        bool: True,
        float: 1e16 if n % 2 else 36.6,
    }[hint]


@pytest.mark.parametrize("cls", event_classes(), ids=lambda c: c.__qualname__)
def test_every_event_class_is_written_and_read_as_the_library_does(
    cls: type, pair: tuple[JSONTranscoder, EventTranscoder]
) -> None:
    hints = typing.get_type_hints(cls)
    for n in range(2):
        state = {
            f.name: sample(hints[f.name], n)
            for f in dataclasses.fields(cls)
            if f.name not in ("originator_id", "originator_version", "originator_topic")
        }
        check_both_ways(pair, state)


def test_the_domain_has_the_event_classes_counted() -> None:
    assert len(event_classes()) > 80


# ---- generated trees and stored forms -----------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text()
    | st.uuids()
    | st.datetimes(timezones=st.none() | st.timezones() | st.just(UTC))
    | st.dates()
    | st.decimals(allow_nan=False)
    | st.sampled_from([Colour.RED, Colour.QUOTE, Level.HIGH])
)
trees = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        | st.dictionaries(st.integers(), inner, max_size=2)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(trees)
def test_generated_trees_are_written_and_read_as_the_library_does(obj: Any) -> None:
    app = bootstrap.memory_application()
    try:
        check_both_ways((registered(JSONTranscoder(), app), registered(EventTranscoder(), app)), obj)
    finally:
        app.close()


boxes = st.fixed_dictionaries(
    {
        "_type_": st.sampled_from(["uuid_hex", "datetime_iso", "date_iso", "decimal_str", "nope"]) | st.integers(),
        "_data_": st.sampled_from([uuid4().hex, str(uuid4()), "urn:uuid:" + str(uuid4()), "0x" + "a" * 30])
        | st.datetimes(timezones=st.timezones()).map(datetime.isoformat)
        | st.text(max_size=40)
        | st.integers()
        | st.just({"_type_": "uuid_hex", "_data_": uuid4().hex}),
    }
)
stored_forms = st.recursive(
    boxes | st.none() | st.text(max_size=5) | st.floats(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "_type_", "_data_"]), inner),
    max_leaves=10,
)


@settings(max_examples=400, deadline=None)
@given(stored_forms)
# Two bad boxes in one state: the library's error is that of the first in its order (the UUID).
@example({"a": {"_type_": "uuid_hex", "_data_": ""}, "_type_": {"_type_": "decimal_str", "_data_": "bad"}})
def test_any_stored_form_is_read_as_the_library_reads_it(tree: Any) -> None:
    app = bootstrap.memory_application()
    try:
        pair = (registered(JSONTranscoder(), app), registered(EventTranscoder(), app))
        check_decodes(pair, json.dumps(tree, ensure_ascii=False).encode())
        check_decodes(pair, json.dumps(tree, ensure_ascii=True, separators=(", ", ": ")).encode())
    finally:
        app.close()


@pytest.mark.parametrize(
    "data",
    [b"NaN", b'{"a":Infinity}', b'"\\ud800"', b"1E400", b"[1,2", b"\xff", b"", b'{"_type_":"nope","_data_":1}'],
)
def test_what_msgspec_refuses_is_read_by_the_library(data: bytes, pair: tuple[JSONTranscoder, EventTranscoder]) -> None:
    check_decodes(pair, data)


def test_an_unregistered_type_fails_as_in_the_library(pair: tuple[JSONTranscoder, EventTranscoder]) -> None:
    with pytest.raises(TranscodingNotRegisteredError):
        pair[1].encode({"a": object()})
    with pytest.raises(TranscodingNotRegisteredError):
        pair[1].decode(b'{"_type_":"nope","_data_":1}')
    assert pair[1].encode({"d": Decimal("1.10")}) == b'{"d":{"_type_":"decimal_str","_data_":"1.10"}}'


def test_a_care_application_is_given_the_event_transcoder() -> None:
    app: CareApplication = bootstrap.memory_application()
    try:
        assert type(app.mapper.transcoder) is EventTranscoder
    finally:
        app.close()


# ---- only the fields a reader wants (projections) -----------------------------------------------


def by_key(state: dict[str, Any]) -> dict[str, Any]:
    """The typed decoder gives the fields in the class's order, not the stored one."""
    return dict(sorted(state.items()))


def field_sets(cls: type) -> list[frozenset[str]]:
    names = [f.name for f in dataclasses.fields(cls) if f.name not in ("originator_id", "originator_version")]
    return [
        frozenset(names),
        frozenset(names[::2]),
        frozenset({"_sealed", "class_version", "no_such_field", *names[1::3]}),
        *(frozenset({n}) for n in names),
    ]


@pytest.mark.parametrize("cls", event_classes(), ids=lambda c: c.__qualname__)
def test_the_typed_decoder_of_some_fields_gives_what_decoding_them_box_by_box_gives(
    cls: type, pair: tuple[JSONTranscoder, EventTranscoder]
) -> None:
    _, fast = pair
    hints = typing.get_type_hints(cls)
    for n in range(2):
        state = {
            f.name: sample(hints[f.name], n)
            for f in dataclasses.fields(cls)
            if f.name not in ("originator_id", "originator_version")
        }
        state["_sealed"] = ["subject", "blob"]
        data = fast.encode(state)
        whole = fast.decode(data)
        for fields in field_sets(cls):
            expected = fast.decode_fields(data, fields)
            assert same(expected, {k: v for k, v in whole.items() if k in fields})
            decoder = fast.fields_decoder(cls, fields)
            assert decoder is not None
            assert same(by_key(decoder(data)), by_key(expected)), (fields, data)


@settings(max_examples=400, deadline=None)
@given(
    st.fixed_dictionaries(
        {}, optional={k: stored_forms for k in ("person_ids", "starts_on", "group_id", "cadence", "occurred_at")}
    )
)
def test_a_state_not_as_its_class_declares_is_refused_by_the_typed_decoder_or_read_alike(tree: Any) -> None:
    """Refused (the mapper then decodes it box by box), or read as box by box, never otherwise."""
    app = bootstrap.memory_application()
    try:
        fast = registered(EventTranscoder(), app)
        data = json.dumps(tree, ensure_ascii=False).encode()
        fields = frozenset(tree) | {"occurred_at", "cadence"}
        decoder = fast.fields_decoder(Pairing.Formed, fields)
        assert decoder is not None
        got, expected = outcome(decoder, data), outcome(fast.decode_fields, data, fields)
        if got[0] == "ok":
            assert expected[0] == "ok" and same(by_key(got[1]), by_key(expected[1])), (tree, got, expected)
        else:
            assert got[1] in (msgspec.ValidationError, msgspec.DecodeError), got
    finally:
        app.close()


def test_the_mapper_reads_only_the_wanted_fields_and_opens_sealed_data_only_for_wanted_personal_ones(
    town: Township,
) -> None:
    mapper = town.app.mapper
    whole = mapper.to_domain_events(town.stored)
    own = {"originator_id", "originator_version"}
    wanted = {"occurred_at", "actor_id", "org_path", "name", "person_ids", "tag"}
    opened: list[set[str]] = []
    real = mapper.keys.keys_for_opening

    def spy(subjects: set[str]) -> Any:
        opened.append(set(subjects))
        return real(subjects)

    mapper.keys.keys_for_opening = spy  # type: ignore[method-assign]
    try:
        for fields, personal in ((lambda topic: wanted, True), (lambda topic: wanted - {"name"}, False)):
            opened.clear()
            some = mapper.to_domain_events(town.stored, fields)
            for a, b in zip(whole, some, strict=True):
                assert type(a) is type(b)
                expected = {k: v for k, v in vars(a).items() if k in fields("") | own}
                assert by_key(vars(b)) == by_key(expected)
            assert any("name" in vars(e) for e in some) is personal
            assert bool(opened) is personal, "sealed data is opened only when a personal field is wanted"
    finally:
        del mapper.keys.keys_for_opening
    # A state not as its class declares (a tag that is a number) is read box by box.
    odd = dataclasses.replace(
        next(s for s in town.stored if s.topic.endswith("Person.Registered")),
        state=b'{"risk_tags":[1,{"_type_":"uuid_hex","_data_":"' + uuid4().hex.encode() + b'"}],"kind":"elder"}',
    )
    (event,) = mapper.to_domain_events([odd], lambda topic: {"risk_tags", "kind"})
    assert event.kind == "elder" and event.risk_tags[0] == 1 and isinstance(event.risk_tags[1], UUID)
