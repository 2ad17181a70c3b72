"""The session object apps use: a mutable mapping of JSON-safe data that tracks its changes.

It does no I/O of its own. The middleware loads it (eagerly for ASGI, on first access
for WSGI) and commits it when the response starts; :meth:`Session.save` commits early.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from . import codec, ids
from .errors import ConfigurationError, SessionDataError, SessionStateError
from .record import Change, Meta

if TYPE_CHECKING:
    from .backend import SessionBinding

# Values that cannot change in place: reading them cannot hide a nested modification.
_IMMUTABLE = (str, int, float, type(None), bytes, dt.date, uuid.UUID, Decimal)


class Session(dict[str, Any]):
    """Session data plus the state the core needs to commit it safely.

    It subclasses ``dict`` so code written for Starlette's and Flask's dict sessions keeps
    working (``isinstance(session, dict)``, ``json.dumps(dict(session))``); every mutating
    and reading method is routed through change tracking.
    """

    __slots__ = (
        "_accessed",
        "_baseline",
        "_binding",
        "_cleared",
        "_destroyed_keys",
        "_destroyed_meta",
        "_keep",
        "_key",
        "_lazy",
        "_maybe_modified",
        "_meta",
        "_meta_dirty",
        "_meta_updates",
        "_regenerate",
        "_session_id",
        "_token_refresh",
    )

    def __init__(self) -> None:
        super().__init__()
        self._session_id: str | None = None
        self._key: str | None = None
        self._meta: Meta | None = None
        self._baseline: dict[str, str] = {}
        self._accessed = False
        self._maybe_modified = False  # a write, or a mutable value handed out
        self._cleared = False
        self._regenerate = False
        self._meta_dirty = False
        self._token_refresh = False  # the token must be sent again (refresh, new key)
        self._destroyed_keys: list[str] = []
        self._destroyed_meta: Meta | None = None  # for cookie sessions: whom to revoke
        self._meta_updates: dict[str, Any] = {}
        self._binding: SessionBinding | None = None
        self._lazy = False  # loaded by the binding on first access
        self._keep = False  # store it even while it holds nothing (Django's create())

    # -- construction by the core -------------------------------------------------------

    def bind(self, binding: SessionBinding, *, lazy: bool = False) -> None:
        """Tie the session to the request that opened it; with ``lazy``, the binding
        loads it on first access (the sync paths)."""
        self._binding, self._lazy = binding, lazy

    @property
    def binding(self) -> SessionBinding | None:
        return self._binding

    def restore(self, session_id: str, key: str, data: Mapping[str, str], meta: Meta) -> None:
        """Fill from a stored record. Raises ``ValueError`` if a value cannot be decoded."""
        decoded = {name: codec.decode(text) for name, text in data.items()}
        dict.update(self, decoded)
        self._session_id, self._key, self._meta = session_id, key, meta
        self._baseline = dict(data)

    def ensure_loaded(self) -> None:
        """Load a lazily bound session now (a no-op once loaded)."""
        if self._lazy:
            self._lazy = False
            assert self._binding is not None
            self._binding.load(self)

    # -- reading --------------------------------------------------------------------------

    def _read(self, mutable: bool = False) -> None:
        self.ensure_loaded()
        self._accessed = True
        if mutable:  # e.g. session["cart"].append(x) after reading it
            self._maybe_modified = True

    def __getitem__(self, key: str) -> Any:
        self._read()
        value = dict.__getitem__(self, key)
        if not isinstance(value, _IMMUTABLE):
            self._maybe_modified = True
        return value

    def get(self, key: str, default: Any = None) -> Any:
        self._read()
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

    def __repr__(self) -> str:
        state = "new" if self.new else "loaded"
        return f"<Session {state} keys={sorted(dict.keys(self))!r}>"

    # -- writing ----------------------------------------------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise SessionDataError("session keys must be strings")
        codec.check_name(key, "session key")
        codec.encode(value)  # refuse what cannot be stored now, not at commit time
        self.ensure_loaded()
        self._accessed = self._maybe_modified = True
        dict.__setitem__(self, key, value)

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

    def __ior__(self, other: Any) -> Session:  # type: ignore[override,misc]
        self.update(other)
        return self

    def clear(self) -> None:
        """Empty the data, unbind the user and retire the ID: the record is deleted, and
        anything written afterwards starts a new session under a new ID. This is how many
        Flask and Starlette apps log out, so it is made safe to."""
        self.destroy()

    # -- lifecycle ----------------------------------------------------------------------------

    def regenerate(self) -> None:
        """Give the session a new ID at commit, keeping its data; the old record is deleted.
        Its new public handle is chosen now, so tokens bound to it can be made at once."""
        self.ensure_loaded()
        self._regenerate = True
        # one new ID per commit: a second regeneration in the same request keeps the handle
        # the first chose (tokens and a "spare" already bound to it stay valid)
        self._meta_updates.setdefault("handle", ids.new_handle())

    def start_over(self) -> None:
        """Drop every value and the metadata's per-session choices (expiry, persistence) at
        the next commit, keeping the record's place: what a login by another user needs."""
        self.ensure_loaded()
        dict.clear(self)
        self._cleared = True
        self._accessed = self._maybe_modified = True
        self._update_meta(fresh=True)

    def destroy(self) -> None:
        """Delete the record at commit and expire the cookie. Later writes start a new session."""
        self.ensure_loaded()
        if self._key is not None:
            self._destroyed_keys.append(self._key)
            self._destroyed_meta = self._meta
        dict.clear(self)
        self._session_id = self._key = self._meta = None
        self._baseline = {}
        self._cleared = self._regenerate = self._meta_dirty = self._token_refresh = False
        self._keep = False
        self._meta_updates = {}
        self._accessed = self._maybe_modified = True

    def set_expiry(
        self,
        *,
        idle_timeout: float | None = None,
        absolute_timeout: float | None = None,
        persistent: bool | None = None,
    ) -> None:
        """Per-session expiry, e.g. "remember me": a longer idle/absolute timeout and a
        persistent cookie. Takes effect when the session is committed."""
        for name, value in (
            ("idle_timeout", idle_timeout),
            ("absolute_timeout", absolute_timeout),
        ):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigurationError(f"{name} must be a positive, finite number of seconds")
        updates: dict[str, Any] = {
            "idle_timeout": idle_timeout,
            "absolute_timeout": absolute_timeout,
            "persistent": persistent,
        }
        self._update_meta(**{k: v for k, v in updates.items() if v is not None})

    def mark_accessed(self) -> None:
        """Record that the request looked at the session (Flask's ``accessed``)."""
        self._accessed = True

    def mark_modified(self) -> None:
        """Have the next commit compare every value with the one loaded, for a nested
        value changed in a way the session could not see (Flask's ``modified = True``)."""
        self.ensure_loaded()
        self._accessed = self._maybe_modified = True

    def bind_user(self, user_id: str) -> None:
        """Bind ``user_id`` at the next commit, restarting the absolute timeout and
        recording the device (the metadata half of :func:`satchel.auth.login`)."""
        self._update_meta(user_id=user_id, restart=True, device=True)

    def _update_meta(self, **changes: Any) -> None:
        """Queue library metadata changes (user, device, expiry) for the next commit."""
        self.ensure_loaded()
        self._meta_updates.update(changes)
        self._meta_dirty = True

    def save(self) -> None:
        """Commit now (sync apps), e.g. before streaming a response. The response start
        then commits only what changed after this call."""
        if self._binding is None:
            raise SessionStateError(
                "this session is not bound to a request (satchel's middleware did not open it)"
            )
        self._binding.save(self)

    async def asave(self) -> None:
        """Commit now (async apps)."""
        if self._binding is None:
            raise SessionStateError(
                "this session is not bound to a request (satchel's middleware did not open it)"
            )
        await self._binding.asave(self)

    # -- what the app and the core can ask --------------------------------------------------

    @property
    def new(self) -> bool:
        """True when no stored record backs this session (yet)."""
        self.ensure_loaded()
        return self._key is None

    @property
    def accessed(self) -> bool:
        return self._accessed

    @property
    def modified(self) -> bool:
        self.ensure_loaded()
        if self._cleared or self._regenerate or self._meta_dirty or self._destroyed_keys:
            return True
        return self._maybe_modified and self._diff() != ({}, frozenset())

    @property
    def meta(self) -> Meta | None:
        """The library's own metadata (handle, user, times, device); None for a new session."""
        self.ensure_loaded()
        return self._meta

    @property
    def handle(self) -> str | None:
        """The public handle: the one this session will have once committed, if a
        regeneration is pending."""
        pending = self._meta_updates.get("handle")
        if pending is not None:
            return str(pending)
        meta = self.meta
        return None if meta is None else meta.handle

    @property
    def user_id(self) -> str | None:
        """The bound user, including one bound by a login in this request."""
        self.ensure_loaded()
        return self._peek_user()

    def _peek_user(self) -> str | None:
        """The bound user as known so far, without loading a lazy session."""
        if "user_id" in self._meta_updates:
            value = self._meta_updates["user_id"]
            return None if value is None else str(value)
        meta = self._meta
        return None if meta is None else meta.user_id

    def _diff(self) -> tuple[dict[str, str], frozenset[str]]:
        """Keys whose encoded value differs from the one loaded, and keys removed.
        Comparing encodings catches nested changes such as ``session["cart"].append(x)``."""
        baseline = self._baseline
        changed = {}
        for name, value in dict.items(self):
            text = codec.encode_named(name, value)
            if baseline.get(name) != text:
                changed[name] = text
        removed = frozenset(baseline.keys() - dict.keys(self))
        return changed, removed

    # -- the commit state, for the core ------------------------------------------------------
    # The backends read and move this state only through the verbs below; nothing outside
    # this module touches a private attribute.

    @property
    def id(self) -> str | None:
        """The session ID the stored record answers to; None for a new session. Secret:
        never log it or put it in a page."""
        return self._session_id

    @property
    def store_key(self) -> str | None:
        """The key (a hash of the ID) of the stored record; None for a new session."""
        return self._key

    @property
    def stored_user_id(self) -> str | None:
        """The user bound in the record as loaded or committed, without loading a lazy
        session (a login still pending is not counted)."""
        return None if self._meta is None else self._meta.user_id

    @property
    def baseline(self) -> Mapping[str, str]:
        """The encoded values as last loaded or committed (read-only)."""
        return MappingProxyType(self._baseline)

    @property
    def regenerating(self) -> bool:
        """A new ID is due at the next commit."""
        return self._regenerate

    @property
    def pending_meta(self) -> Mapping[str, Any]:
        """Metadata changes queued for the next commit (read-only)."""
        return MappingProxyType(self._meta_updates)

    @property
    def has_content(self) -> bool:
        """What makes a new session worth storing: data, or a login. Expiry alone is not
        (Flask apps set ``session.permanent`` on every request): it is stored with the
        first data, or with :meth:`keep_empty`."""
        return bool(dict.__len__(self) or self._keep or "user_id" in self._meta_updates)

    def keep_empty(self) -> None:
        """Store this session at the next commit even if it holds nothing (Django's
        ``create()`` makes a record for an empty session)."""
        self._keep = True

    @property
    def needs_commit(self) -> bool:
        """False for a session the request never touched: the commit can be skipped."""
        return bool(
            self._maybe_modified
            or self._regenerate
            or self._cleared
            or self._meta_dirty
            or self._destroyed_keys
            or self._token_refresh
            or self._keep
        )

    @property
    def token_refresh_due(self) -> bool:
        """The token must be sent again although nothing else changed: opening the session
        moved a persistent lifetime, or its token was made with an old key."""
        return self._token_refresh

    def refresh_token(self) -> None:
        """Send the token again at the next commit (its lifetime moved, or it was made
        with a retired key)."""
        self._token_refresh = True

    def take_token_refresh(self) -> bool:
        """Whether the token must be sent again; the request is then consumed."""
        due, self._token_refresh = self._token_refresh, False
        return due

    def mark_seen(self, meta: Meta) -> None:
        """The store recorded activity: ``meta`` is the record's metadata now."""
        self._meta = meta

    def encoded(self) -> dict[str, str]:
        """Every value encoded for storage."""
        return {name: codec.encode_named(name, value) for name, value in dict.items(self)}

    def pending_change(self, meta: Callable[[], Meta]) -> Change | None:
        """The per-key change to commit, or None when nothing changed. ``meta`` makes the
        next metadata, only called when there is something to write."""
        if not (self._maybe_modified or self._meta_dirty):
            return None
        if self._cleared:
            return Change(meta=meta(), set=self.encoded(), clear=True)
        changed, removed = self._diff()
        if not changed and not removed and not self._meta_dirty:
            return None
        return Change(meta=meta(), set=changed, delete=removed)

    def take_destroyed(self) -> tuple[list[str], Meta | None]:
        """The store keys of records this request destroyed, and the metadata of the
        last one (whom a cookie session's revocation names); both are then forgotten."""
        taken = self._destroyed_keys, self._destroyed_meta
        self._destroyed_keys, self._destroyed_meta = [], None
        return taken

    def mark_committed(self, session_id: str, key: str, meta: Meta, stored: dict[str, str]) -> None:
        """Reset tracking after a successful commit: what is stored now is the baseline."""
        self._session_id, self._key, self._meta = session_id, key, meta
        self._baseline = stored
        self._cleared = self._regenerate = self._meta_dirty = self._keep = False
        self._meta_updates = {}
        self._destroyed_keys = []
        self._accessed = self._maybe_modified = False

    def mark_lost(self) -> None:
        """Another request destroyed or regenerated the record under us: drop this
        request's data and writes so nothing can bring the session back."""
        self.forget()

    def forget(self) -> None:
        """Drop the record this request loaded (or would load on first access), and every
        change, without touching the store: the session is new again."""
        self._lazy = self._keep = False
        dict.clear(self)
        self._session_id = self._key = self._meta = None
        self._baseline = {}
        self._meta_updates = {}
        self._cleared = self._regenerate = self._meta_dirty = self._token_refresh = False
