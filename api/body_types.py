"""JSON bodies are read as their schema says, with no coercion: a number is never a time.

Litestar converts a decoded body to the handler's ``data`` type in msgspec's lax mode
(``strict=False``), which takes ``12345`` for a Unix time, ``"5"`` for 5 and ``"true"`` for
True. A client that sends ``"occurred_at": 12345`` would then be told its time lies in 1970,
not that it sent the wrong type. The security middleware calls ``check_types`` first: a body
the strict decoder refuses but the lax one would take is answered 422 ``validation-error``
naming the field and the type it must have. Every other error is left to Litestar, which names
it as it always has.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import msgspec
from litestar.types import Scope

from api.problems import ProblemError

_PATH = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_decoders: dict[int, tuple[Any, msgspec.json.Decoder[Any]] | None] = {}
_lock = threading.Lock()


def _decoder(handler: Any) -> tuple[Any, msgspec.json.Decoder[Any]] | None:
    """(the data type, its strict decoder) of a route handler that takes a body; cached."""
    key = id(handler)
    if key in _decoders:
        return _decoders[key]
    field = getattr(handler, "parsed_data_field", None)
    found = None
    if field is not None:
        try:
            found = (field.annotation, msgspec.json.Decoder(field.annotation, strict=True))
        except TypeError:  # a type msgspec cannot decode on its own: Litestar's own conversion decides
            found = None
    with _lock:
        _decoders[key] = found
    return found


def _field(path: str) -> str:
    return path.lstrip(".") or "body"


def check_types(scope: Scope, body: bytes) -> bool:
    """Refuse a body whose values have the wrong JSON type although lax conversion would take them.
    True when the body is what the handler takes (its data type decodes it strictly): Litestar's
    own validation then has nothing to refuse."""
    found = _decoder(scope.get("route_handler"))
    if found is None:
        return False
    target, strict = found
    try:
        strict.decode(body)
        return True
    except msgspec.ValidationError as refused:
        try:
            msgspec.convert(msgspec.json.decode(body), type=target, strict=False)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return False  # wrong in other ways too: Litestar answers as usual
        m = _PATH.match(str(refused))
        reason, field = (m["reason"], _field(m["path"] or "")) if m else (str(refused), "body")
        errors = [
            {
                "field": field,
                "reason": f"{reason} (JSON values are read as the schema's types: times and dates are strings)",
                "in": "body",
            }
        ]
        raise ProblemError(
            422, "validation-error", "Invalid request", f"invalid value for {field}", errors=errors
        ) from None
    except msgspec.DecodeError:
        return False  # not JSON: check_json has answered already
