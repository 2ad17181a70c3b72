"""Session values as JSON, with tags for the types JSON lacks. Never pickle.

Plain JSON types pass through. Other supported types become a tagged object
``{"$t": tag, "v": payload}``; a user dict that itself holds the key ``"$t"`` is
escaped the same way, so decoding is unambiguous.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from . import _json
from .errors import SessionDataError

_TAG = "$t"


def _tag(name: str, payload: Any) -> dict[str, Any]:
    return {_TAG: name, "v": payload}


MAX_DEPTH = 32
"""How deep values may nest (lists, dicts, tuples, sets inside one another). Deeper values
are refused when assigned, and a stored value nested deeper is treated as corrupt: no
value can exhaust the recursion limit of the encoder or the decoder."""


def _to_json(value: Any, depth: int = 0) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise SessionDataError(f"cannot store {value!r}: JSON has no NaN or infinity")
        return value
    if depth >= MAX_DEPTH and isinstance(value, list | dict | tuple | set | frozenset):
        raise SessionDataError(
            f"cannot store a value nested more than {MAX_DEPTH} levels deep in a session"
        )
    depth += 1
    if isinstance(value, list):
        return [_to_json(v, depth) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise SessionDataError("session dict keys must be strings")
        if _TAG in value:
            return _tag("dict", [[k, _to_json(v, depth)] for k, v in value.items()])
        return {k: _to_json(v, depth) for k, v in value.items()}
    if isinstance(value, tuple):
        return _tag("tuple", [_to_json(v, depth) for v in value])
    if isinstance(value, set | frozenset):
        name = "frozenset" if isinstance(value, frozenset) else "set"
        # in a canonical order (by encoded text), not iteration order: that depends on the
        # order members were added and on each process's hash seed, and two encodings of
        # one set must be equal, or a worker that only read it would write it back
        members = [_to_json(v, depth) for v in value]
        members.sort(key=_json.dumps)
        return _tag(name, members)
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


# Tags whose payload is text, and tags whose payload is a list of values.
_SCALAR_DECODERS: dict[str, Callable[[str], Any]] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "uuid": uuid.UUID,
    "bytes": lambda v: base64.b64decode(v, validate=True),
    "decimal": Decimal,
}
_COLLECTIONS: dict[str, Callable[[list[Any]], Any]] = {
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
}


def _is_scalar_tag(value: dict[str, Any]) -> bool:
    name = value.get(_TAG)
    return isinstance(name, str) and name in _SCALAR_DECODERS


def _from_json(value: Any, depth: int = 0) -> Any:
    """The value ``_to_json`` made this from. Raises ``ValueError`` on anything it cannot
    have made: an unknown tag, a payload of the wrong type, nesting past ``MAX_DEPTH``."""
    kind = type(value)  # (JSON decodes to exact types; isinstance of a union is slower)
    if kind is not list and kind is not dict:
        return value
    if depth >= MAX_DEPTH and not (isinstance(value, dict) and _is_scalar_tag(value)):
        raise ValueError(f"session value nested more than {MAX_DEPTH} levels deep")
    depth += 1
    if isinstance(value, list):
        return [_from_json(v, depth) for v in value]
    if _TAG not in value:
        return {k: _from_json(v, depth) for k, v in value.items()}
    if len(value) != 2 or "v" not in value:
        raise ValueError("malformed tagged value")
    name, payload = value[_TAG], value["v"]
    if name == "dict" and isinstance(payload, list):
        pairs = {}
        for pair in payload:
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
                raise ValueError("malformed tagged dict")
            pairs[pair[0]] = _from_json(pair[1], depth)
        return pairs
    collection = _COLLECTIONS.get(name)
    if collection is not None and isinstance(payload, list):
        return collection([_from_json(v, depth) for v in payload])
    scalar = _SCALAR_DECODERS.get(name)
    if scalar is not None and isinstance(payload, str):
        return scalar(payload)
    raise ValueError(f"unknown tag or malformed payload: {str(name)[:20]!r}")


compact_json = _json.dumps


def encode(value: Any) -> str:
    """One session value as compact JSON text. Raises :class:`SessionDataError`, also for
    text no store can hold (a lone surrogate such as ``"\\ud800"``, in a value or a key)."""
    try:
        return _json.dumps_bytes(_to_json(value)).decode()
    except UnicodeEncodeError:
        raise SessionDataError(
            "cannot store text holding a lone surrogate (such as '\\ud800'): "
            "it is not valid Unicode, and no store can encode it"
        ) from None
    except (ValueError, TypeError) as exc:
        raise SessionDataError(f"cannot store this value: {exc}") from None


def is_valid_text(text: str) -> bool:
    """False for text no store can encode: a lone surrogate, such as ``"\\ud800"``."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_name(name: str, what: str) -> None:
    """Refuse a name every store must hold as text (a session key, a user ID): a lone
    surrogate is not valid Unicode, and a NUL is refused by PostgreSQL (in a jsonb key or
    a text column). Raises :class:`SessionDataError` naming ``what``."""
    if "\x00" in name or not is_valid_text(name):
        raise SessionDataError(
            f"{what} {name!r} cannot be stored: no NUL characters or lone surrogates"
        )


def decode(text: str) -> Any:
    """The inverse of :func:`encode`. Raises ``ValueError`` on anything malformed: bad
    JSON, an unknown tag or a bad payload, nesting too deep for :data:`MAX_DEPTH` or the
    recursion limit, a lone surrogate. Stored data is never trusted to be well formed."""
    try:
        return _from_json(_json.loads(text))
    except (KeyError, TypeError, AttributeError, ArithmeticError, RecursionError) as exc:
        raise ValueError(f"malformed session value: {exc.__class__.__name__}") from None


def encode_named(name: str, value: Any) -> str:
    """``value`` of session key ``name`` encoded for commit. Assignment already refused
    what cannot be stored, so this fails only for a value changed in place after it was
    read (``session["cart"].append("\\ud800")``): say which key, with satchel's own error."""
    try:
        return encode(value)
    except SessionDataError as exc:
        raise SessionDataError(
            f"session[{name!r}] cannot be stored (was it changed in place after it was "
            f"read?): {exc}"
        ) from None
