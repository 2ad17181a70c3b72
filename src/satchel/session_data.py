"""The mapping half of a session: JSON-safe values under valid names, in a ``dict`` that
records whether it was read and whether a value may have changed.

It subclasses ``dict`` so code written for Starlette's and Flask's dict sessions keeps
working (``isinstance(session, dict)``, ``json.dumps(dict(session))``); every reading and
mutating method is routed through the tracking, and loads a lazy session first
(:meth:`ensure_loaded`, which :class:`~satchel.session.Session` provides).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, Self

from . import codec
from .errors import SessionDataError

# Values that cannot change in place: reading them cannot hide a nested modification.
_IMMUTABLE = (str, int, float, type(None), bytes, dt.date, uuid.UUID, Decimal)


class SessionData(dict[str, Any]):
    """A dict of storable values that tracks its reads and writes."""

    __slots__ = ("_accessed", "_maybe_modified", "_texts")

    def __init__(self) -> None:
        super().__init__()
        self._accessed = False
        self._maybe_modified = False  # a write, or a mutable value handed out
        # The encoding made when a value that cannot change in place was assigned (the
        # commit reuses it); None until the first such assignment.
        self._texts: dict[str, str] | None = None

    def ensure_loaded(self) -> None:
        """Fill the mapping before its first use (a lazily loaded session)."""

    @property
    def accessed(self) -> bool:
        return self._accessed

    def mark_accessed(self) -> None:
        """Record that the request looked at the session (Flask's ``accessed``)."""
        self._accessed = True

    def mark_modified(self) -> None:
        """Have the next commit compare every value with the one loaded, for a nested
        value changed in a way the session could not see (Flask's ``modified = True``)."""
        self.ensure_loaded()
        self._accessed = self._maybe_modified = True

    # -- reading --------------------------------------------------------------------------

    def _read(self, mutable: bool = False) -> None:
        self.ensure_loaded()
        self._accessed = True
        if mutable:  # e.g. session["cart"].append(x) after reading it
            self._maybe_modified = True

    def __getitem__(self, key: str) -> Any:
        self.ensure_loaded()
        self._accessed = True
        value = dict.__getitem__(self, key)
        if not isinstance(value, _IMMUTABLE):
            self._maybe_modified = True
        return value

    def get(self, key: str, default: Any = None) -> Any:
        self.ensure_loaded()
        self._accessed = True
        value = dict.get(self, key, default)
        if not isinstance(value, _IMMUTABLE):
            self._maybe_modified = True
        return value

    def __contains__(self, key: object) -> bool:
        self._read()
        return dict.__contains__(self, key)

    def __iter__(self) -> Iterator[str]:
        self._read()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self._read()
        return dict.__len__(self)

    def __bool__(self) -> bool:
        return len(self) > 0

    def keys(self) -> Any:
        self._read()
        return dict.keys(self)

    def values(self) -> Any:
        self._read(mutable=True)
        return dict.values(self)

    def items(self) -> Any:
        self._read(mutable=True)
        return dict.items(self)

    def copy(self) -> dict[str, Any]:
        return dict(self.items())

    def __eq__(self, other: object) -> bool:
        return dict(self.items()) == other

    __hash__ = None

    # -- writing ----------------------------------------------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise SessionDataError("session keys must be strings")
        codec.check_name(key, "session key")
        text = codec.encode(value)  # refuse what cannot be stored now, not at commit time
        self.ensure_loaded()
        self._accessed = self._maybe_modified = True
        dict.__setitem__(self, key, value)
        texts = self._texts
        if isinstance(value, _IMMUTABLE):
            if texts is None:
                texts = self._texts = {}
            texts[key] = text
        elif texts:
            texts.pop(key, None)

    def _encoded_value(self, key: str, value: Any) -> str:
        """``value`` (under ``key``) encoded for commit: the encoding made when it was
        assigned, if it cannot have changed since."""
        texts = self._texts
        if texts:
            text = texts.get(key)
            if text is not None:
                return text
        return codec.encode_named(key, value)

    def __delitem__(self, key: str) -> None:
        self.ensure_loaded()
        self._accessed = self._maybe_modified = True
        dict.__delitem__(self, key)

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def pop(self, key: str, *default: Any) -> Any:
        self.ensure_loaded()
        self._accessed = self._maybe_modified = True
        return dict.pop(self, key, *default)

    def popitem(self) -> tuple[str, Any]:
        self.ensure_loaded()
        self._accessed = self._maybe_modified = True
        return dict.popitem(self)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __ior__(self, other: Any) -> Self:  # type: ignore[override,misc]
        self.update(other)
        return self
