"""Session values as JSON, with tags for the types JSON lacks. Never pickle.

Plain JSON types pass through. Other supported types become a tagged object
``{"$t": tag, "v": payload}``; a user dict that itself holds the key ``"$t"`` is
escaped the same way, so decoding is unambiguous.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from .errors import SessionDataError

_TAG = "$t"


def _tag(name: str, payload: Any) -> dict[str, Any]:
    return {_TAG: name, "v": payload}


def _to_json(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise SessionDataError(f"cannot store {value!r}: JSON has no NaN or infinity")
        return value
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise SessionDataError("session dict keys must be strings")
        if _TAG in value:
            return _tag("dict", [[k, _to_json(v)] for k, v in value.items()])
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return _tag("tuple", [_to_json(v) for v in value])
    if isinstance(value, set | frozenset):
        name = "frozenset" if isinstance(value, frozenset) else "set"
        return _tag(name, [_to_json(v) for v in value])
    if isinstance(value, dt.datetime):
        return _tag("datetime", value.isoformat())
    if isinstance(value, dt.date):
        return _tag("date", value.isoformat())
    if isinstance(value, uuid.UUID):
        return _tag("uuid", str(value))
    if isinstance(value, bytes):
        return _tag("bytes", base64.b64encode(value).decode("ascii"))
    if isinstance(value, Decimal):
        return _tag("decimal", str(value))
    raise SessionDataError(
        f"cannot store a {type(value).__name__} in a session: use JSON types, datetime, "
        "date, UUID, bytes, Decimal, set, frozenset or tuple"
    )


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "uuid": uuid.UUID,
    "bytes": lambda v: base64.b64decode(v, validate=True),
    "decimal": Decimal,
    "dict": dict,
}


def _from_json(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, dict):
        if _TAG in value:
            name, payload = value[_TAG], value["v"]
            if name == "dict":
                return {k: _from_json(v) for k, v in payload}
            return _DECODERS[name](_from_json(payload) if isinstance(payload, list) else payload)
        return {k: _from_json(v) for k, v in value.items()}
    return value


# One encoder for every call: json.dumps with non-default options builds a new one each time.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
compact_json = _ENCODER.encode


def encode(value: Any) -> str:
    """One session value as compact JSON text. Raises :class:`SessionDataError`."""
    return _ENCODER.encode(_to_json(value))


def decode(text: str) -> Any:
    """The inverse of :func:`encode`. Raises ``ValueError`` on anything malformed."""
    try:
        return _from_json(json.loads(text))
    except (KeyError, TypeError, ArithmeticError) as exc:
        raise ValueError(f"malformed session value: {exc}") from exc
