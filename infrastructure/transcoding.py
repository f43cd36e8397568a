"""The event transcoder: the eventsourcing library's JSON, byte for byte, with less CPU.

Every event's state is stored as the library's ``JSONTranscoder`` writes it (compact separators,
UTF-8 unescaped, a UUID as ``{"_type_":"uuid_hex","_data_":"<hex>"}``, a datetime or a date as
its ``isoformat()`` in such a box), and the audit chain MACs those bytes: a faster transcoder must
write the very same bytes and read every stored form the same way. ``EventTranscoder`` does, and
spends its time in msgspec's C code instead of one Python call per UUID and datetime:

- **decode**: msgspec parses the JSON into plain dicts and lists, then one pass in Python turns
  the boxes back into objects: the UUIDs of a state in one msgspec call (the library's
  ``object_hook`` makes a Python call for every dict, box or not, and ``UUID(hex)`` costs more
  than the parse of its 60 bytes). What msgspec refuses and Python's ``json`` takes (``NaN``,
  ``1E400``, lone surrogates) and boxes within boxes are decoded by the library's path.
- **encode**: one pass in Python puts each UUID (which msgspec writes as its hex), datetime and
  date into its box, and a float or a subclass of str or int into the text Python's ``json``
  gives it; then msgspec writes the tree. Anything the pass does not know (an unregistered type,
  a key not a string) is encoded by the library's path, so the output never differs.

orjson was not taken: it writes UUIDs and datetimes its own way too, with no hook for them, so it
needs the same pass, and it is one more dependency; msgspec is in the stack already.

``tests/unit/test_transcoding.py`` compares both directions with the library's transcoder on the
events the domain's commands make, on every event class, and on generated trees.
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
import types
import typing
from collections.abc import Callable, Collection
from datetime import date, datetime, time
from typing import Any, Literal
from uuid import UUID

import msgspec
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, Transcoding, UUIDAsHex

_encode_json = msgspec.json.Encoder(uuid_format="hex").encode  # a UUID as UUIDAsHex writes it
_decode_json = msgspec.json.Decoder().decode
_Raw = msgspec.Raw
_from_iso_datetime = datetime.fromisoformat
_float_repr = float.__repr__
_int_repr = int.__repr__
_py_string = json.encoder.encode_basestring  # what Python's json writes for a str (ensure_ascii=False)
_SCALARS = (str, int, float, bool, type(None))


class _Unhandled(Exception):
    """Something the fast path leaves to the library's (which writes or reads it, or fails)."""


def _float(value: float) -> msgspec.Raw:
    # Python's json: repr for finite floats, NaN and +/-Infinity for the others (msgspec
    # writes exponents differently: 1e+16 against 1e16).
    if math.isnan(value):
        return _Raw(b"NaN")
    if value == float("inf"):
        return _Raw(b"Infinity")
    if value == float("-inf"):
        return _Raw(b"-Infinity")
    return _Raw(_float_repr(value).encode())


def _other(value: Any) -> Any:
    """What Python's json writes for a scalar of another type than the exact built-in ones."""
    if type(value) is float:
        return _float(value)
    if isinstance(value, str):  # a StrEnum member: Python's json writes its string
        return _Raw(_py_string(str.__str__(value)).encode())
    if isinstance(value, int) and not isinstance(value, bool):  # an IntEnum member: its number
        return _Raw(_int_repr(value).encode())
    if isinstance(value, float):
        return _float(float(value))
    raise _Unhandled


def _box(name: str, data: type, *, gc: bool = True) -> type:
    """A msgspec Struct for the box ``{"_type_": name, "_data_": <data>}`` (``gc``: tracked by the
    cyclic garbage collector; a box holds no container, so it need not be)."""
    return msgspec.defstruct(
        f"Box.{name}",
        [("name", Literal[name], msgspec.field(name="_type_")), ("data", data, msgspec.field(name="_data_"))],
        forbid_unknown_fields=True,
        gc=gc,
    )


_box_data = operator.attrgetter("data")  # a box's value, by C code


# Keys of a stored state besides the event's fields (the sealed data, an upcast's version).
_STATE_KEYS: dict[str, Any] = {"_sealed": list[str], "class_version": int}


class EventTranscoder(JSONTranscoder):
    """A ``JSONTranscoder`` (same registrations, same bytes) that encodes and decodes in C."""

    def __init__(self) -> None:
        super().__init__()
        self._uuid_name: str | None = None  # the name UUIDAsHex is registered under
        self._datetime_name: str | None = None  # and DatetimeAsISO
        self._decoders: dict[str, Any] = {}  # other box names -> their transcoding's decode
        self._encoders: dict[type, Any] = {}  # other types -> a function giving their box
        self._names: dict[type, str] = {}  # other types -> the name of their box

    def register(self, transcoding: Transcoding) -> None:
        super().register(transcoding)
        name, kind = transcoding.name, type(transcoding)
        for known in (self._uuid_name, self._datetime_name):
            if known == name:  # registered again under a name taken: the last one holds
                self._uuid_name = None if self._uuid_name == name else self._uuid_name
                self._datetime_name = None if self._datetime_name == name else self._datetime_name
        self._decoders.pop(name, None)
        self._encoders.pop(transcoding.type, None)
        self._names = {t: n for t, n in self._names.items() if n != name and t is not transcoding.type}
        # The library's UUID and datetime transcodings are done here in C (msgspec, fromisoformat);
        # any other (the application's date) is called as the library calls it.
        if kind is UUIDAsHex:
            self._uuid_name = name
        elif kind is DatetimeAsISO:
            self._datetime_name = name
        else:
            self._decoders[name] = transcoding.decode
            self._names[transcoding.type] = name
            encode = transcoding.encode
            self._encoders[transcoding.type] = lambda o: {"_type_": name, "_data_": encode(o)}

    # ---- encoding ------------------------------------------------------------------------------

    def encode(self, obj: Any) -> bytes:
        try:
            return _encode_json(self._plain([obj])[0])
        except (_Unhandled, msgspec.EncodeError, TypeError, ValueError, OverflowError, RecursionError):
            return super().encode(obj)

    def _plain(self, obj: dict[str, Any] | list[Any] | tuple[Any, ...]) -> Any:
        """A copy of a dict or a list with every value as msgspec writes it exactly as Python's
        json writes the original: UUIDs and datetimes in their boxes (a UUID itself, which
        msgspec writes as its hex), floats and enum members as raw JSON."""
        uuid_name, datetime_name, encoders = self._uuid_name, self._datetime_name, self._encoders
        plain = self._plain
        is_dict = type(obj) is dict
        out: Any = {} if is_dict else [None] * len(obj)
        for k, v in obj.items() if is_dict else enumerate(obj):  # type: ignore[union-attr]
            if is_dict and type(k) is not str:
                raise _Unhandled  # Python's json turns such keys into strings its own way
            t = type(v)
            if t is str or t is int or t is bool or v is None:
                out[k] = v
            elif t is UUID and uuid_name is not None:
                out[k] = {"_type_": uuid_name, "_data_": v}
            elif t is datetime and datetime_name is not None:
                out[k] = {"_type_": datetime_name, "_data_": v.isoformat()}
            elif t is dict or t is list or t is tuple:
                out[k] = plain(v)
            elif t in encoders:
                out[k] = plain([encoders[t](v)])[0]
            else:
                out[k] = _other(v)
        return out

    # ---- decoding ------------------------------------------------------------------------------

    def decode(self, data: bytes) -> Any:
        try:
            holder = [_decode_json(data)]
            uuids: list[tuple[Any, Any, str]] = []
            self._objects(holder, uuids)
            _fill_uuids(uuids)
            return holder[0]
        except Exception:  # noqa: BLE001 - whatever the fast path cannot read, the library decides:
            # it reads it, or raises its own error (for a state with two bad boxes, the first in
            # its order, not the fast path's, which makes the UUIDs last)
            return super().decode(data)

    def decode_fields(self, data: bytes, fields: Collection[str]) -> dict[str, Any]:
        """The top-level keys of a stored state that are in ``fields``, decoded as ``decode``
        decodes them; the other keys are parsed by msgspec and dropped without being turned into
        objects (the boxes of a state cost more than its parse). The state must be an object."""
        try:
            parsed = _decode_json(data)
            if type(parsed) is not dict:
                raise _Unhandled
            holder = [{k: v for k, v in parsed.items() if k in fields}]
            uuids: list[tuple[Any, Any, str]] = []
            self._objects(holder, uuids)
            _fill_uuids(uuids)
            return holder[0]  # type: ignore[no-any-return]
        except Exception:  # noqa: BLE001 - as in decode: the library decides, with its own error
            state = super().decode(data)
            if not isinstance(state, dict):
                raise TypeError(f"a stored state is an object, not {type(state).__name__}") from None
            return {k: v for k, v in state.items() if k in fields}

    def fields_decoder(self, event_class: type, fields: Collection[str]) -> Callable[[bytes], dict[str, Any]] | None:
        """A decoder of the stored states of ``event_class`` giving what ``decode_fields(data,
        fields)`` gives, typed by the class's annotations so that msgspec's C code makes the
        UUIDs, datetimes, strings and numbers of the wanted fields and skips the others: a
        msgspec Struct per class and fields, each UUID or datetime field a Struct of its box
        (``_type_`` checked against the registered name). A field of another type (a dict, Any,
        a float) is decoded by ``decode``. The decoder raises when a state does not fit the
        annotations (a field of another type, a box of another name): the caller then decodes
        it by ``decode_fields``. None when the class declares no fields or the library's UUID and
        datetime transcodings are not the ones registered."""
        if self._uuid_name is None or self._datetime_name is None or not dataclasses.is_dataclass(event_class):
            return None
        try:
            hints = typing.get_type_hints(event_class)
        except Exception:  # noqa: BLE001 - annotations that do not resolve: no typed decoder
            return None
        boxes = {
            UUID: _box(self._uuid_name, UUID),
            datetime: _box(self._datetime_name, datetime),
            **{t: _box(self._names[t], str) for t in self._names},
        }
        wanted = [(f.name, hints.get(f.name, Any)) for f in dataclasses.fields(event_class) if f.name in fields]
        wanted += [(name, tp) for name, tp in _STATE_KEYS.items() if name in fields]
        spec, converters = [], []
        for name, tp in wanted:
            typed, convert = self._typed(tp, boxes)
            attribute = f"f{len(spec)}"  # field names may start with "_": the Struct's own names do not
            spec.append((attribute, typed, msgspec.field(default=msgspec.UNSET, name=name)))
            converters.append((name, convert))
        struct = msgspec.defstruct(f"{event_class.__qualname__}.Fields", spec, kw_only=True)
        decode_struct = msgspec.json.Decoder(struct).decode
        unset, astuple = msgspec.UNSET, msgspec.structs.astuple

        def decode(data: bytes) -> dict[str, Any]:
            state = {}
            # The Struct's values in the order of its fields (one C call), each with its name and converter.
            for (name, convert), value in zip(converters, astuple(decode_struct(data))):
                if value is not unset:
                    state[name] = value if convert is None else convert(value)
            return state

        return decode

    def fields_reader(
        self, event_class: type, fields: Collection[str], optional: Collection[str] = ()
    ) -> FieldsReader | None:
        """A reader of the ``fields`` of ``event_class``'s stored states for code compiled per class
        (``FieldsReader``), typed as ``fields_decoder`` types them; each field must be in the state
        unless named in ``optional`` (then it is ``msgspec.UNSET`` when missing). None when the
        class declares no fields or the library's UUID and datetime transcodings are not the ones
        registered."""
        return _fields_reader(self, event_class, fields, optional)

    def _typed(self, tp: Any, boxes: dict[type, type]) -> tuple[Any, Callable[[Any], Any] | None]:
        """The msgspec type a field of annotation ``tp`` is decoded as, and the function turning
        what msgspec gives into the value ``decode`` gives (None: as it is)."""
        if tp in (str, int, bool):  # not float: msgspec takes 1 for 1.0 where json gives int
            return tp, None
        if tp in boxes:
            return boxes[tp], self._unbox(tp)
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in (types.UnionType, typing.Union) and len(args) == 2 and type(None) in args:
            inner = args[0] if args[1] is type(None) else args[1]
            typed, convert = self._typed(inner, boxes)
            if typed is not msgspec.Raw:
                if convert is None:
                    return typed | None, None
                return typed | None, lambda v: None if v is None else convert(v)  # type: ignore[misc]
        elif origin is list and len(args) == 1:
            typed, convert = self._typed(args[0], boxes)
            if typed is not msgspec.Raw:
                if convert is None:
                    return list[typed], None  # type: ignore[valid-type]
                return list[typed], lambda v: [convert(x) for x in v]  # type: ignore[valid-type,misc]
        decode = self.decode
        return msgspec.Raw, lambda raw: decode(bytes(raw))

    def _unbox(self, tp: type) -> Callable[[Any], Any]:
        if tp is UUID or tp is datetime:
            return _box_data
        decoder = self._decoders[self._names[tp]]
        return lambda box: decoder(box.data)

    def _objects(self, obj: dict[str, Any] | list[Any], uuids: list[tuple[Any, Any, str]]) -> None:
        """Turn the boxes in a dict or a list back into objects, in place, as the library's
        object_hook would; the UUIDs are collected and made in one msgspec call after."""
        uuid_name, datetime_name, decoders, objects = (
            self._uuid_name,
            self._datetime_name,
            self._decoders,
            self._objects,
        )
        for k, v in obj.items() if type(obj) is dict else enumerate(obj):  # type: ignore[union-attr]
            t = type(v)
            if t is dict:
                if len(v) == 2 and "_type_" in v and "_data_" in v:
                    name, value = v["_type_"], v["_data_"]
                    if type(name) is not str or type(value) is not str and not isinstance(value, _SCALARS):
                        raise _Unhandled  # a box within a box, a name that is no string
                    if name == uuid_name:
                        if type(value) is not str:
                            raise _Unhandled
                        uuids.append((obj, k, value))
                    elif name == datetime_name:
                        if type(value) is not str:
                            raise _Unhandled
                        obj[k] = _from_iso_datetime(value)  # type: ignore[index]
                    elif name in decoders:
                        obj[k] = decoders[name](value)  # type: ignore[index]
                    else:
                        raise _Unhandled  # not registered: the library's path raises its error
                else:
                    objects(v, uuids)
            elif t is list:
                objects(v, uuids)


def _fill_uuids(uuids: list[tuple[Any, Any, str]]) -> None:
    """Put the UUIDs ``_objects`` collected in their places, all made in one msgspec call."""
    if uuids:
        for (container, key, _), value in zip(uuids, msgspec.convert([u[2] for u in uuids], list[UUID]), strict=True):
            container[key] = value


class FieldsReader(typing.NamedTuple):
    """What ``EventTranscoder.fields_reader`` gives: ``decode(data)`` makes a Struct holding the
    wanted fields as they are stored (boxes and all; a field missing from the state, of another
    type or in a box of another name makes it raise ``msgspec.ValidationError``), and for each
    field a Python expression (over the name in ``attributes``, ``s.<attribute>``, with the names
    of ``namespace``) that gives the value ``decode_fields`` gives. Meant for code compiled once
    per event class: a replay reads a state's fields without a dict, a Python call per field or an
    event object."""

    decode: Callable[[bytes], Any]
    attributes: dict[str, str]  # field -> the Struct's attribute holding it
    expressions: dict[str, str]  # field -> an expression of its value
    namespace: dict[str, Any]  # what the expressions name besides ``s``


def _fields_reader(transcoder: EventTranscoder, event_class: type, fields: Collection[str],
                   optional: Collection[str] = ()) -> FieldsReader | None:  # fmt: skip
    if transcoder._uuid_name is None or transcoder._datetime_name is None or not dataclasses.is_dataclass(event_class):
        return None
    try:
        hints = typing.get_type_hints(event_class)
    except Exception:  # noqa: BLE001 - annotations that do not resolve: no reader
        return None
    boxes = {
        UUID: _box(transcoder._uuid_name, UUID, gc=False),
        datetime: _box(transcoder._datetime_name, datetime, gc=False),
        **{t: _box(transcoder._names[t], str, gc=False) for t in transcoder._names},
    }
    declared = {f.name: hints.get(f.name, Any) for f in dataclasses.fields(event_class)}
    namespace: dict[str, Any] = {}
    spec, attributes, expressions = [], {}, {}
    for name in fields:
        tp = declared[name] if name in declared else _STATE_KEYS[name]
        typed, template = _typed_expression(transcoder, tp, boxes, namespace, 0)
        attribute = f"f{len(spec)}"
        default = msgspec.UNSET if name in optional else msgspec.NODEFAULT
        spec.append((attribute, typed if default is msgspec.NODEFAULT else typed | msgspec.UnsetType,
                     msgspec.field(default=default, name=name)))  # fmt: skip
        attributes[name] = attribute
        expressions[name] = template.format(f"s.{attribute}")
    struct = msgspec.defstruct(f"{event_class.__qualname__}.Read", spec, kw_only=True, gc=False)
    return FieldsReader(msgspec.json.Decoder(struct).decode, attributes, expressions, namespace)


_IMMUTABLE = (str, int, float, bool, type(None), bytes, datetime, date, time, UUID)


def _seen_by(decode: Callable[[Any], Any]) -> tuple[dict[Any, Any], Callable[[Any], Any]]:
    """A dict of what ``decode`` gave for each text, and the function that decodes a text not in
    it (keeping what it gives when immutable: the same object may then be given again)."""
    seen: dict[Any, Any] = {}

    def made(text: Any) -> Any:
        value = decode(text)
        if type(value) in _IMMUTABLE:
            if len(seen) >= 10_000:
                seen.clear()
            seen[text] = value
        return value

    return seen, made


def _typed_expression(
    transcoder: EventTranscoder, tp: Any, boxes: dict[type, type], namespace: dict[str, Any], depth: int
) -> tuple[Any, str]:
    """As ``EventTranscoder._typed``, the converter as an expression template (``{}``: the value)."""
    if tp in (str, int, bool):
        return tp, "{}"
    if tp in boxes:
        if tp is UUID or tp is datetime:
            return boxes[tp], "{}.data"
        # Another registered type (the application's date): its transcoding's decode, called once
        # per text met (a date recurs: a period's bounds) when what it gives is immutable.
        n = len(namespace)
        seen, made, text = f"_seen_{n}", f"_made_{n}", f"_t{depth}"
        namespace[seen], namespace[made] = _seen_by(transcoder._decoders[transcoder._names[tp]])
        return boxes[tp], f"({seen}[{text}] if ({text} := {{}}.data) in {seen} else {made}({text}))"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union) and len(args) == 2 and type(None) in args:
        inner = args[0] if args[1] is type(None) else args[1]
        typed, template = _typed_expression(transcoder, inner, boxes, namespace, depth + 1)
        if template == "{}":
            return typed | None, "{}"
        value = f"_v{depth}"  # a null is None as ``decode`` makes it, without a call (a Raw too)
        return typed | None, f"(None if ({value} := {{}}) is None else {template.format(value)})"
    elif origin is list and len(args) == 1:
        typed, template = _typed_expression(transcoder, args[0], boxes, namespace, depth + 1)
        if typed is not msgspec.Raw:
            if template == "{}":
                return list[typed], "{}"  # type: ignore[valid-type]
            item = f"_x{depth}"
            return list[typed], f"[{template.format(item)} for {item} in {{}}]"  # type: ignore[valid-type]
    namespace["_decode_raw"] = transcoder.decode
    return msgspec.Raw, "_decode_raw(bytes({}))"
