"""The session object apps use: a mutable mapping of JSON-safe data that tracks its changes.

It does no I/O of its own. The middleware loads it (eagerly for ASGI, on first access
for WSGI) and commits it when the response starts; :meth:`Session.save` commits early.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from . import codec, ids
from .auth_facts import AuthFacts, facts_json
from .errors import SessionStateError
from .expiry import check_timeout
from .record import Change, Meta
from .session_data import SessionData

if TYPE_CHECKING:
    from .backend import SessionBinding

_UNBOUND = (
    "this session is not bound to a request: satchel's middleware did not open it, or "
    "its request is over"
)

_NO_VALUES: Mapping[str, Any] = MappingProxyType({})
"""The empty baseline and the empty queue of metadata changes every session starts with."""


class Session(SessionData):
    """Session data (:class:`~satchel.session_data.SessionData`: a dict that records its
    reads and writes) plus the state the core needs to commit it safely, changed only
    through the verbs below."""

    __slots__ = (
        "_baseline",
        "_binding",
        "_cleared",
        "_clock",
        "_destroyed_keys",
        "_destroyed_meta",
        "_keep",
        "_key",
        "_lazy",
        "_meta",
        "_meta_dirty",
        "_meta_updates",
        "_regenerate",
        "_seen",
        "_session_id",
        "_token_refresh",
    )

    untouched = False
    """True only for a :meth:`pending` session nothing has used yet (a class attribute:
    the first use makes the session an ordinary one)."""

    def __init__(self) -> None:
        # Every request makes one, most never touch it: no call to the base class (the
        # dict needs none), and the empty collections are shared, immutable, and replaced
        # (never changed in place) when something is queued.
        self._accessed = self._maybe_modified = False  # (SessionData's tracking)
        self._texts = None
        self._session_id: str | None = None
        self._key: str | None = None
        self._meta: Meta | None = None
        self._baseline: Mapping[str, str] = _NO_VALUES
        self._cleared = self._regenerate = self._meta_dirty = False
        self._token_refresh = False  # the token must be sent again (refresh, new key)
        self._seen = False  # the store recorded this visit ("last seen" moved) on opening
        self._destroyed_keys: tuple[str, ...] = ()
        self._destroyed_meta: Meta | None = None  # for cookie sessions: whom to revoke
        self._meta_updates: Mapping[str, Any] = _NO_VALUES
        self._binding: SessionBinding | None = None
        self._lazy = False  # loaded by the binding on first access
        self._keep = False  # store it even while it holds nothing (Django's create())

    # -- construction by the core -------------------------------------------------------

    @staticmethod
    def pending(binding: SessionBinding) -> Session:
        """The session of a request that carries no token (the ASGI middleware's
        anonymous requests), bound to ``binding`` and not even set up: that happens on
        its first use of any kind (a read, a write, a question), which makes it an
        ordinary new session. Until then :attr:`untouched` is True: the response needs
        nothing from it."""
        session = Session.__new__(Session)
        session._binding = binding
        session.__class__ = _PendingSession  # (after: its hooks would see the write)
        return session

    def bind(self, binding: SessionBinding, *, lazy: bool = False) -> None:
        """Tie the session to the request that opened it; with ``lazy``, the binding
        loads it on first access (the sync paths)."""
        self._binding, self._lazy = binding, lazy

    @property
    def binding(self) -> SessionBinding | None:
        return self._binding

    def end_request(self, ended: SessionBinding | None) -> None:
        """Let go of the request (its middleware calls this when the request is over):
        ``ended`` replaces its context, to load the session if nothing did during the
        request (None: there is nothing to load). The session and its context referred
        to each other; now neither waits for the garbage collector. The session still
        reads what it holds, but it can no longer be saved (:class:`SessionStateError`)."""
        set_binding(self, ended)

    def restore(self, session_id: str, key: str, data: Mapping[str, str], meta: Meta) -> None:
        """Fill from a stored record. Raises ``ValueError`` if a value cannot be decoded."""
        decoded = {name: codec.decode(text) for name, text in data.items()}
        dict.update(self, decoded)
        self._texts = None
        self._session_id, self._key, self._meta = session_id, key, meta
        self._baseline = dict(data)

    def ensure_loaded(self) -> None:  # (SessionData calls it before every read and write)
        """Load a lazily bound session now (a no-op once loaded)."""
        if self._lazy:
            self._lazy = False
            assert self._binding is not None
            self._binding.load(self)

    def __repr__(self) -> str:  # (never loads: no store call, nor a refusal, in a repr)
        state = "not loaded" if self._lazy else "new" if self._key is None else "loaded"
        return f"<Session {state} keys={sorted(dict.keys(self))!r}>"

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
        changes: dict[str, Any] = {}
        self._choose_handle(changes)
        if changes:
            self._queue_meta(changes)

    def _choose_handle(self, changes: dict[str, Any]) -> None:
        """Add the new handle of a regeneration to ``changes``: one new ID per commit, so a
        second regeneration in the same request keeps the handle the first chose (tokens
        and a "spare" already bound to it stay valid)."""
        if "handle" not in self._meta_updates:
            changes["handle"] = ids.new_handle()

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
            self._destroyed_keys += (self._key,)
            self._destroyed_meta = self._meta
        dict.clear(self)
        self._session_id = self._key = self._meta = None
        self._baseline = _NO_VALUES
        self._cleared = self._regenerate = self._meta_dirty = self._token_refresh = False
        self._keep = False
        self._meta_updates = _NO_VALUES
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
            if value is not None:
                check_timeout(name, value)
        updates: dict[str, Any] = {
            "idle_timeout": idle_timeout,
            "absolute_timeout": absolute_timeout,
            "persistent": persistent,
        }
        self._update_meta(**{k: v for k, v in updates.items() if v is not None})

    def bind_user(
        self, user_id: str, authenticated: AuthFacts | None = None, *, until: float | None = None
    ) -> None:
        """Bind ``user_id`` at the next commit, restarting the absolute timeout and
        recording the device and the authentication (the metadata half of
        :func:`satchel.auth.login`). ``until``: an absolute deadline the restarted timeout
        may not pass (an impersonation ends when the impersonator's session would)."""
        facts = authenticated or AuthFacts(self._now())  # a login is an authentication
        changes = _bound(user_id, facts.to_json())
        if until is not None:
            changes["until"] = until
        self.ensure_loaded()
        self._queue_meta(changes)

    def _log_in(self, user_id: str, methods: tuple[str, ...], level: str | None) -> None:
        """:func:`satchel.auth.login`'s change of state, its arguments checked: what
        :meth:`regenerate`, :meth:`start_over` (another user's session) and
        :meth:`bind_user` do, with one load and one queue of metadata changes (those
        calls and their queues cost a login about 10,000 instructions more; callgrind)."""
        self.ensure_loaded()
        previous = self._peek_user()
        if previous is not None and previous != user_id:
            self.start_over()
        self._regenerate = True
        changes = _bound(user_id, facts_json(self._now(), methods, level))
        self._choose_handle(changes)
        self._queue_meta(changes)

    def record_authentication(self, authenticated: AuthFacts) -> None:
        """Replace the authentication facts at the next commit (the metadata half of
        :func:`satchel.auth.reauthenticate`)."""
        self._update_meta(auth=authenticated.to_json())

    # -- how and when the user proved who they are (satchel.auth_facts) -----------------------

    @property
    def auth(self) -> AuthFacts | None:
        """The latest authentication of the session's user, pending ones included; None
        for an anonymous session (or one logged in by satchel 0.1)."""
        if "auth" in self._meta_updates:
            return AuthFacts.from_json(self._meta_updates["auth"])
        meta = self.meta
        if meta is None or meta.user_id is None:
            return None
        return AuthFacts.from_json(meta.auth)

    @property
    def auth_time(self) -> float | None:
        """When the user last authenticated (UTC epoch seconds)."""
        facts = self.auth
        return None if facts is None else facts.time

    @property
    def auth_age(self) -> float | None:
        """Seconds since the user last authenticated (by the middleware's clock)."""
        facts = self.auth
        return None if facts is None else max(0.0, self._now() - facts.time)

    def _now(self) -> float:
        """The middleware's clock (the test's, in tests), else the one given to
        :meth:`use_clock` (Django's engine), else the system's."""
        binding = self._binding
        if binding is not None:
            return binding.backend.clock()
        clock: Callable[[], float] | None = getattr(self, "_clock", None)  # (rarely set)
        return clock() if clock is not None else time.time()

    def use_clock(self, clock: Callable[[], float]) -> None:
        """The clock of a session no middleware binds (Django's engine gives its own)."""
        self._clock = clock

    @property
    def impersonator(self) -> str | None:
        """The user acting as this session's user (:func:`satchel.impersonate`), or None."""
        facts = self.auth
        return None if facts is None else facts.impersonator

    @property
    def auth_methods(self) -> tuple[str, ...]:
        """How (RFC 8176 ``amr`` values the app gave: ``pwd``, ``otp``, ...)."""
        facts = self.auth
        return () if facts is None else facts.methods

    @property
    def auth_level(self) -> str | None:
        """The assurance level the latest authentication gave (``aal1``, ... or the app's)."""
        facts = self.auth
        return None if facts is None else facts.level

    def _update_meta(self, **changes: Any) -> None:
        """Queue library metadata changes (user, device, expiry) for the next commit."""
        self.ensure_loaded()
        self._queue_meta(changes)

    def _queue_meta(self, changes: dict[str, Any]) -> None:
        """Queue ``changes`` (a dict the caller made for this: it becomes the queue when
        nothing was queued yet) on top of those already queued. The queue is replaced,
        never changed in place: :attr:`pending_meta` hands out a view of it."""
        queued = self._meta_updates
        self._meta_updates = changes if queued is _NO_VALUES else {**queued, **changes}
        self._meta_dirty = True

    def save(self) -> None:
        """Commit now (sync apps), e.g. before streaming a response. The response start
        then commits only what changed after this call."""
        if self._binding is None:
            raise SessionStateError(_UNBOUND)
        self._binding.save(self)

    async def asave(self) -> None:
        """Commit now (async apps)."""
        if self._binding is None:
            raise SessionStateError(_UNBOUND)
        await self._binding.asave(self)

    # -- what the app and the core can ask --------------------------------------------------

    @property
    def new(self) -> bool:
        """True when no stored record backs this session (yet)."""
        self.ensure_loaded()
        return self._key is None

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
            text = self._encoded_value(name, value)
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
    def holds_changes(self) -> bool:
        """The app changed the session in this request: data, a login, a regeneration
        or a destruction (an expiry setting or a due token refresh alone do not count)."""
        return bool(
            self._cleared
            or self._regenerate
            or self._destroyed_keys
            or "user_id" in self._meta_updates
            or (self._maybe_modified and self._diff() != ({}, frozenset()))
        )

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

    def idle(self) -> bool:
        """Untouched by the request (not read, nothing to commit) and bound to no stored
        user: the response needs nothing from it. One call, for the hot path."""
        meta = self._meta
        return not (
            self._accessed or self.needs_commit or (meta is not None and meta.user_id is not None)
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

    def mark_seen(self, meta: Meta | None = None) -> None:
        """The store recorded activity while opening: ``meta``, when given, is the
        record's metadata now."""
        self._seen = True
        if meta is not None:
            self._meta = meta

    @property
    def seen_now(self) -> bool:
        """Whether opening the session recorded this visit (at most once per
        ``refresh_interval``): the rhythm of anything a session does now and then."""
        return self._seen

    def set_device(self, device: str | None) -> None:
        """Queue the session's device binding (:mod:`satchel.dbsc.state`, as text) for
        the next commit."""
        self._update_meta(device=device)

    def encoded(self) -> dict[str, str]:
        """Every value encoded for storage."""
        if not dict.__len__(self):  # (a login's session, often: no comprehension to run)
            return {}
        encoded = self._encoded_value
        return {name: encoded(name, value) for name, value in dict.items(self)}

    def encoded_if_changed(self) -> dict[str, str] | None:
        """Every value encoded, or None when nothing changed since the session was loaded
        or committed: :attr:`modified` and :meth:`encoded` in one pass (each value is
        encoded once)."""
        if self._cleared or self._regenerate or self._meta_dirty or self._destroyed_keys:
            return self.encoded()
        if not self._maybe_modified:
            return None
        encoded = self.encoded()
        return None if encoded == self._baseline else encoded

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
        if not self._destroyed_keys:  # (most commits)
            return [], None
        taken = list(self._destroyed_keys), self._destroyed_meta
        self._destroyed_keys, self._destroyed_meta = (), None
        return taken

    def mark_committed(self, session_id: str, key: str, meta: Meta, stored: dict[str, str]) -> None:
        """Reset tracking after a successful commit: what is stored now is the baseline."""
        self._session_id, self._key, self._meta = session_id, key, meta
        self._baseline = stored
        self._cleared = self._regenerate = self._meta_dirty = self._keep = False
        self._meta_updates = _NO_VALUES
        self._destroyed_keys = ()
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
        self._baseline = _NO_VALUES
        self._meta_updates = _NO_VALUES
        self._cleared = self._regenerate = self._meta_dirty = self._token_refresh = False


def _bound(user_id: str, auth: str) -> dict[str, Any]:
    """The metadata changes that bind ``user_id`` (:meth:`Session.bind_user`, a login):
    the absolute timeout restarts, the device and the authentication (``auth``, the facts'
    JSON text) are recorded."""
    return {"user_id": user_id, "restart": True, "login_device": True, "auth": auth}


class _PendingSession(Session):
    """A :meth:`Session.pending` session before its first use. Reading or writing any of
    its state first makes it an ordinary :class:`Session` (class and all), so this hook
    costs nothing to the requests that use their session."""

    __slots__ = ()
    untouched = True

    # Any attribute read on an instance of a class with __getattr__ takes CPython's slow
    # path (about 900 instructions, callgrind), so the hooks below reach what they need
    # through the classes: _settle itself, the binding's slot, the binding's load.

    def _settle(self) -> None:
        """Become an ordinary new session, and tell the binding (a pending context: its
        cue to read its request; there is nothing to load)."""
        binding: SessionBinding | None = _BINDING_SLOT.__get__(self, Session)
        object.__setattr__(self, "__class__", Session)
        Session.__init__(self)
        if binding is not None:  # (None: its request is over; it stays empty)
            self._binding = binding
            type(binding).load(binding, self)

    def __getattr__(self, name: str) -> Any:  # (only for state not set up yet)
        if name not in _STATE:
            raise AttributeError(name)
        _PendingSession._settle(self)
        return getattr(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        _PendingSession._settle(self)
        setattr(self, name, value)

    def ensure_loaded(self) -> None:  # every read and write of the data comes here first
        _PendingSession._settle(self)


_STATE = frozenset(Session.__slots__) | frozenset(SessionData.__slots__)
_BINDING_SLOT: Any = Session.__dict__["_binding"]  # (the slot's descriptor)
set_binding: Callable[[Session, SessionBinding | None], None] = _BINDING_SLOT.__set__
"""Set a session's binding (not an attribute write: a pending session's hook would take
it for a first use)."""
