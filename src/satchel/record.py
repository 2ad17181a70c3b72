"""What a store holds for one session, and what one commit changes.

Stores see only these shapes: data values already encoded as JSON text (the codec
lives in the core, never in a store) and :class:`Meta`, the library's own fields,
kept apart from app data so app code cannot overwrite them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

from . import _json
from .errors import CorruptRecord


class Meta(NamedTuple):
    """Library-owned metadata of a session. Times are UTC epoch seconds.

    Immutable; a NamedTuple because it is built on every load (cheaper than a frozen
    dataclass on the hot path)."""

    handle: str
    created: float
    last_seen: float
    absolute_deadline: float
    idle_timeout: float
    user_id: str | None = None
    user_agent: str | None = None
    client_ip: str | None = None
    persistent: bool = False
    version: int = 1
    device: str | None = None
    """The session's device binding (:mod:`satchel.dbsc.state`), as compact JSON text;
    None for a session never asked to bind."""
    auth: str | None = None
    """How and when the user last proved who they are (:mod:`satchel.auth_facts`), as
    compact JSON text; None for an anonymous session (or one logged in by 0.1)."""

    @property
    def expires_at(self) -> float:
        """When the session ends unless used again: idle expiry, capped by the absolute one."""
        return min(self.last_seen + self.idle_timeout, self.absolute_deadline)

    def with_changes(self, **changes: Any) -> Meta:
        return self._replace(**changes)

    def to_json(self) -> str:
        return _json.dumps(self._asdict())

    @classmethod
    def from_dict(cls, raw: Any, **columns: Any) -> Meta:
        """Metadata read back from a store (``columns``, kept apart by some stores, win).
        Raises :class:`CorruptRecord` unless every field has its type: a record edited
        or damaged in the store must be discarded, not crash every request."""
        if not isinstance(raw, dict):
            raise CorruptRecord("session metadata is not an object")
        try:
            return cls(**{**raw, **columns})._checked()
        except TypeError as exc:
            raise CorruptRecord("session metadata cannot be decoded", exc) from exc

    @classmethod
    def from_json(cls, text: str | bytes, **columns: Any) -> Meta:
        try:
            raw = _json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise CorruptRecord("session metadata cannot be decoded", exc) from exc
        return cls.from_dict(raw, **columns)

    @classmethod
    def from_fields(cls, fields: Sequence[Any]) -> Meta:
        """Metadata from its fields by position (the cookie store); checked as above."""
        try:
            return cls(*fields)._checked()
        except TypeError as exc:
            raise CorruptRecord("session metadata cannot be decoded", exc) from exc

    def _checked(self) -> Meta:
        (
            handle,
            created,
            last_seen,
            deadline,
            idle,
            user,
            agent,
            ip,
            persistent,
            version,
            dev,
            au,
        ) = self
        if (
            type(handle) is str
            and (
                # the usual case in one test: four numbers, none inf or nan (a sum of
                # finite floats can overflow, hence the field-by-field check after it)
                (
                    type(created) is float
                    and type(last_seen) is float
                    and type(deadline) is float
                    and (type(idle) is float or (type(idle) is int and -(2**63) < idle < 2**63))
                    and math.isfinite(created + last_seen + deadline + idle)
                )
                or (_real(created) and _real(last_seen) and _real(deadline) and _real(idle))
            )
            and (user is None or type(user) is str)
            and (agent is None or type(agent) is str)
            and (ip is None or type(ip) is str)
            and type(persistent) is bool
            and type(version) is int
            and (dev is None or type(dev) is str)
            and (au is None or type(au) is str)
        ):
            return self
        for name, value in zip(self._fields, self, strict=True):
            kind = _FIELD_TYPES[name]
            if kind is float:
                ok = _real(value)
            elif kind is None:
                ok = value is None or type(value) is str
            else:
                ok = type(value) is kind
            if not ok:
                raise CorruptRecord(f"session metadata field {name!r} has the wrong type")
        raise AssertionError("unreachable")


def _real(value: Any) -> bool:
    """A finite float, or an int a float can hold (no bool; no OverflowError)."""
    if type(value) is float:
        return math.isfinite(value)
    return type(value) is int and -(2**63) < value < 2**63


# The type each field must have when read back: float, str, int, bool, or None (str or None).
_FIELD_TYPES: dict[str, type | None] = {
    "handle": str,
    "created": float,
    "last_seen": float,
    "absolute_deadline": float,
    "idle_timeout": float,
    "user_id": None,
    "user_agent": None,
    "client_ip": None,
    "persistent": bool,
    "version": int,
    "device": None,
    "auth": None,
}


BINDING_PREFIX = '{"k":'
"""How the text of a device binding (``Meta.device``) starts when it holds a key
(:meth:`satchel.dbsc.state.DeviceState.encode` writes the key first); stores compare it
as text, so a bound session's binding is never replaced by an unbound state."""


def is_binding(device: str | None) -> bool:
    return device is not None and device.startswith(BINDING_PREFIX)


@dataclass(frozen=True, slots=True)
class Record:
    """A stored session: encoded data values by key, and metadata.

    ``refreshed`` is True when the store refreshed "last seen" while loading (stores that
    fold the throttled refresh into their one read round trip)."""

    data: Mapping[str, str]
    meta: Meta
    refreshed: bool = False

    def __init__(self, data: Mapping[str, str], meta: Meta, refreshed: bool = False) -> None:
        # (every request builds one or two: the generated __init__ of a frozen dataclass
        # sets each field through object.__setattr__, about 1,900 instructions more
        # than the slots' own setters, callgrind)
        _SET_DATA(self, data)
        _SET_META(self, meta)
        _SET_REFRESHED(self, refreshed)

    def to_document(self) -> bytes:
        """The record as one JSON document (stores that keep a whole record per item)."""
        return _json.dumps_bytes({"data": dict(self.data), "meta": self.meta._asdict()})

    @classmethod
    def from_document(cls, raw: bytes | str) -> Record:
        """The inverse of :meth:`to_document`; raises :class:`CorruptRecord`."""
        try:
            doc = _json.loads(raw)
            data, meta = doc["data"], Meta.from_dict(doc["meta"])
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise CorruptRecord("session record cannot be decoded", exc) from exc
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise CorruptRecord("session record data is not an object of strings")
        return cls(data, meta)


_SET_DATA = Record.__dict__["data"].__set__  # (the slots' setters: see Record.__init__)
_SET_META = Record.__dict__["meta"].__set__
_SET_REFRESHED = Record.__dict__["refreshed"].__set__

_NOTHING: Mapping[str, str] = MappingProxyType({})


class Change(NamedTuple):
    """What one request changed: only these keys are written, atomically.

    ``clear`` drops every stored key first (``Session.start_over()``: a login by another
    user, Django's ``session.clear()``); then ``set`` is written
    and ``delete`` removed. ``meta`` replaces the metadata (the store sets its version).
    A store applies a Change only to a record that still exists and has not expired.
    The store gives the written record the version :meth:`version_over` names: one above
    the stored one, and never below ``meta.version`` (a request's change carries the
    version it loaded, so only a copy from another store, ``satchel sessions migrate``,
    raises it: the copy then keeps the version its original has).
    ``base`` is the metadata the change was made from (the record as loaded), when
    known: a store that keeps metadata field by field may write only the fields that
    differ from it (so parallel requests changing different fields both keep theirs).
    Every store keeps the stored device binding when the change did not touch it
    (:attr:`keeps_device`), and never replaces a stored binding by an unbound state
    (:attr:`unbinds`) but in a fresh start (``clear``).

    Immutable; a NamedTuple because it is built on every write (a frozen dataclass set
    each of its five fields through ``object.__setattr__``: about 6,000 instructions more
    per write, callgrind).
    """

    meta: Meta
    set: Mapping[str, str] = _NOTHING
    delete: frozenset[str] = frozenset()
    clear: bool = False
    base: Meta | None = None

    @property
    def keeps_device(self) -> bool:
        """This change leaves the device binding as it found it: the store keeps the
        binding it holds, whatever ``meta`` says (a registration or refresh that committed
        after this request loaded the session is never undone by its write)."""
        return not self.clear and self.base is not None and self.meta.device == self.base.device

    @property
    def unbinds(self) -> bool:
        """This change's device value is no binding: over a stored binding it is ignored
        (only a fresh start, ``clear``, drops a binding in place; logout deletes)."""
        return not self.clear and not is_binding(self.meta.device)

    def version_over(self, stored: int) -> int:
        """The version of the record this change writes over one at version ``stored``."""
        version = self.meta.version
        return stored + 1 if version <= stored else version

    def meta_over(self, stored: Meta) -> Meta:
        """The metadata to write over ``stored`` (stores that read the record first)."""
        if stored.device != self.meta.device and (
            self.keeps_device or (self.unbinds and is_binding(stored.device))
        ):
            return self.meta._replace(device=stored.device)
        return self.meta

    def apply(self, data: Mapping[str, str]) -> dict[str, str]:
        """The data after this change, for stores that merge in application code."""
        merged = {} if self.clear else dict(data)
        for key in self.delete:
            merged.pop(key, None)
        merged.update(self.set)
        return merged
