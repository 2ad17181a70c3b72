"""The I/O-free core of server-side sessions: how a session is opened from its ID and
committed to a store.

Both flows are generators of store operations (:mod:`satchel.ops`), so the same rules
(strict mode, expiry, refresh, regeneration, no resurrection) serve the sync and the
async paths. The engine is the :class:`~satchel.backend.Backend` of every server-side
store; it knows no HTTP: a commit returns a :class:`~satchel.backend.TokenAction`, which
the request's transport renders.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from . import codec, ids
from .at_rest import AtRestCipher
from .auth_facts import AuthFacts, impersonator_of
from .backend import DELETE, LOGGED_OUT, WITHDRAWN, DeviceInfo, InfoSource, TokenAction
from .errors import ConfigurationError, CorruptRecord, StoreError
from .events import EventHook, emit, emit_impersonation
from .expiry import ExpiryPolicy, is_expired, refresh_due
from .keyring import PURPOSE_COOKIE, Keyring
from .log import logger, security
from .ops import (
    Create,
    CreateIndexed,
    Delete,
    Flow,
    IndexAdd,
    ListUser,
    Load,
    Op,
    Touch,
    Update,
    adrive,
    drive,
)
from .record import Change, Meta, Record, is_binding
from .session import Session
from .stores.base import Store
from .user_sessions import (
    SessionInfo,
    cap_flow,
    list_flow,
    own_sessions,
    revoke_all_flow,
    revoke_flow,
)

RequestInfo = DeviceInfo  # the name before 0.2

__all__ = [  # the engine, and the flows' vocabulary it re-exports
    "MAX_SESSIONS_PER_USER",
    "Create",
    "CreateIndexed",
    "Delete",
    "Engine",
    "Flow",
    "IndexAdd",
    "InfoSource",
    "ListUser",
    "Load",
    "Op",
    "RequestInfo",
    "Touch",
    "Update",
    "adrive",
    "cap_flow",
    "drive",
    "next_meta",
    "own_sessions",
]

MAX_SESSIONS_PER_USER = 1000
"""Hard cap on one user's live sessions in a server-side store (``max_sessions_per_user``
lowers it). A login past it ends that user's oldest sessions, and every login prunes the
user's index, so neither the sessions nor the index of one user grow without limit."""


class Engine:
    """The session rules of server-side stores, shared by every middleware and both I/O
    paths: the :class:`~satchel.backend.Backend` of a store."""

    lists_other_sessions = True

    def __init__(
        self,
        *,
        secret_keys: Sequence[str] | None,
        expiry: ExpiryPolicy,
        store: Store | None = None,
        insecure_unsigned_cookies: bool = False,
        encrypt_at_rest: bool = False,
        max_sessions_per_user: int | None = None,
        on_event: EventHook | None = None,
        clock: Callable[[], float] = time.time,
        device_binding: bool = False,
    ) -> None:
        if secret_keys:
            self.keyring: Keyring | None = Keyring(secret_keys)
        elif insecure_unsigned_cookies:
            self.keyring = None
        else:
            raise ConfigurationError(
                "secret_keys is required: pass a list of keys of 32+ characters, newest "
                "first (make one with `satchel keygen`), or opt out explicitly with "
                "insecure_unsigned_cookies=True"
            )
        if encrypt_at_rest and self.keyring is None:
            raise ConfigurationError("encrypt_at_rest needs secret_keys")
        self.encrypt_at_rest = encrypt_at_rest
        self.cipher = AtRestCipher(self.keyring, encrypt_at_rest)
        if max_sessions_per_user is not None and not 1 <= max_sessions_per_user <= (
            MAX_SESSIONS_PER_USER
        ):
            raise ConfigurationError(
                f"max_sessions_per_user must be between 1 and {MAX_SESSIONS_PER_USER} (or None)"
            )
        self.max_sessions_per_user = max_sessions_per_user
        self.on_event = on_event
        # device-bound sessions (dbsc): a regeneration carries the binding as stored now
        self.device_binding = device_binding
        self.expiry = expiry
        self.clock = clock
        self.store = store  # set by the runtime once the options are known to be valid

    # -- tokens -------------------------------------------------------------------------------

    def read(self, tokens: Sequence[str], cookie_header: str = "") -> tuple[str | None, bool]:
        """The session ID the request's tokens carry, checked for the exact format and
        signature before anything touches a store, and whether it must be re-signed
        (made with an older key). ``(None, False)`` for anything else."""
        for value in tokens:
            session_id, _, signature = value.partition(".")
            if not ids.is_session_id(session_id):
                continue
            keyring = self.keyring
            if keyring is None:
                if not signature:
                    return session_id, False
                continue
            if keyring.verify(PURPOSE_COOKIE, session_id, signature):
                return session_id, not keyring.signed_by_current(signature)
        if tokens:  # our token was there, and none of its values holds up
            security.info("session token rejected: malformed or bad signature")
            emit(self.on_event, "security", reason="tampered_cookie")
        return None, False

    def token_for(self, session_id: str) -> str:
        """The signed token that names ``session_id`` (cookie value or bearer token)."""
        if self.keyring is None:
            return session_id
        return f"{session_id}.{self.keyring.sign(PURPOSE_COOKIE, session_id)}"

    def _token(self, session_id: str, meta: Meta, now: float) -> TokenAction:
        max_age = int(meta.expires_at - now) if meta.persistent else None
        return TokenAction(self.token_for(session_id), max_age)

    # -- opening ----------------------------------------------------------------------------

    def open(
        self, session: Session, session_id: str | None, refresh: bool = False
    ) -> Flow[Session]:
        """Fill ``session`` from the record a (validated) token names. Strict: an ID the
        store does not hold, or one that expired, is never adopted; nothing is written
        for it, and ``session`` stays new."""
        if session_id is None:
            return session
        key = ids.store_key(session_id)
        now = self.clock()
        try:
            record = yield Load(key, now, self.expiry.refresh_after)
        except CorruptRecord:
            security.warning("session %s: corrupt record discarded", ids.log_ref(key))
            emit(self.on_event, "security", reason="corrupt_record", ref=ids.log_ref(key))
            yield Delete(key)
            return session
        if record is None:
            logger.debug("session %s: not found, starting a new one", ids.log_ref(key))
            if self.keyring is not None:  # we signed it: it expired, or was logged out
                emit(self.on_event, "expired", reason="not_found", ref=ids.log_ref(key))
            else:  # unsigned cookies: anyone could have planted it
                emit(self.on_event, "security", reason="unknown_session", ref=ids.log_ref(key))
            return session
        meta = record.meta
        if is_expired(meta, now):
            logger.info("session %s: expired", ids.log_ref(key))
            emit(self.on_event, "expired", meta=meta, reason="timeout")
            yield Delete(key)
            return session
        if impersonator_of(meta.auth) is not None:  # (rare: one more read)
            from .cookie import revocation  # (the cookie package imports this module)

            if not (yield from revocation.impersonation_valid(meta, now)):
                security.info("session %s: its impersonator's sessions ended", ids.log_ref(key))
                emit(self.on_event, "revoked", meta=meta, reason="impersonator")
                yield Delete(key)
                return session
        try:
            for name, text in record.data.items():  # (a loop: all() of a generator costs more)
                if type(text) is not str or not codec.is_valid_text(name):
                    raise ValueError("stored session values must be JSON text under valid names")
            session.restore(session_id, key, self.cipher.open(key, record.data), meta)
        except ValueError:
            security.warning("session %s: corrupt record discarded", ids.log_ref(key))
            emit(self.on_event, "security", reason="corrupt_record", ref=ids.log_ref(key))
            yield Delete(key)
            return session
        seen = record.refreshed  # the store recorded this visit while loading
        if seen:
            session.mark_seen()
        elif refresh_due(meta, now, self.expiry.refresh_after):
            if not (yield Touch(key, now)):
                session.mark_lost()
                return session
            session.mark_seen(meta.with_changes(last_seen=now))
            seen = True
        if (seen and meta.persistent) or refresh:  # a persistent lifetime moved, or a new key
            session.refresh_token()
        return session

    # -- committing ---------------------------------------------------------------------------

    def commit(
        self,
        session: Session,
        info: InfoSource,
        new_session_id: Callable[[], str] = ids.new_session_id,
    ) -> Flow[TokenAction | None]:
        """Write what the request changed; what the response must carry.
        ``new_session_id`` makes the ID of a record this commit creates (Django's own key
        hook, so a collision is retried with the key Django asks for)."""
        session.ensure_loaded()
        now = self.clock()
        destroyed, gone = session.take_destroyed()
        for old in destroyed:
            yield Delete(old)
            logger.info("session %s: destroyed", ids.log_ref(old))
            emit(self.on_event, "destroyed", meta=gone, ref=ids.log_ref(old))
            if gone is not None and gone.device is not None:
                emit(self.on_event, "device_unbound", meta=gone, reason="logout")

        key, session_id, current = session.store_key, session.id, session.meta
        if key is None or session_id is None or current is None:
            logged_out = bool(destroyed) and gone is not None and gone.user_id is not None
            if session.has_content:  # (a session started after a logout: a flash message)
                action = yield from self._create(session, info, now, None, new_session_id)
                return action._replace(logout=True) if logged_out and action else action
            if not destroyed:
                return None
            return LOGGED_OUT if logged_out else DELETE
        if session.regenerating:
            base = current
            if self.device_binding and current.user_id is not None:
                base = yield from self._stored_binding(key, current, now)
            return (yield from self._create(session, info, now, base, new_session_id, replaces=key))

        updates = session.pending_meta
        change = session.pending_change(lambda: self._next_meta(current, updates, now, info))
        if change is None:
            return self._token(session_id, current, now) if session.take_token_refresh() else None
        sealed = self.cipher.seal(key, change.set)
        stored = Change(change.meta, sealed, change.delete, change.clear, base=current)
        meta = change.meta
        # The user's index entry must never end before the record (a session the index
        # has dropped cannot be listed or revoked): a later deadline is filed before the
        # update, an earlier one after it, so a fault between the two errs on the long side.
        reindex = bool(meta.user_id) and meta.absolute_deadline != current.absolute_deadline
        if reindex and meta.absolute_deadline > current.absolute_deadline:
            reindex = False
            yield IndexAdd(meta.user_id or "", key, meta.absolute_deadline)
        version = yield Update(key, stored, now)
        if version is None:
            self._lost(session, key)
            return WITHDRAWN
        session.mark_committed(
            session_id, key, meta.with_changes(version=version), change.apply(session.baseline)
        )
        if reindex:
            yield IndexAdd(meta.user_id or "", key, meta.absolute_deadline)
        refresh = session.take_token_refresh()  # (set_expiry(persistent=False) re-sends it too)
        if meta.persistent or refresh or meta.persistent != current.persistent:
            return self._token(session_id, meta, now)
        return None

    def _create(
        self,
        session: Session,
        info: InfoSource,
        now: float,
        base: Meta | None,
        new_session_id: Callable[[], str] = ids.new_session_id,
        replaces: str | None = None,
    ) -> Flow[TokenAction]:
        """Create a record for the session; with ``replaces`` (a regeneration), retire the
        old record afterwards.

        The order is what keeps a session alive through a store fault at any step (a
        refused connection, a timeout, a reply lost after the server acted): the index
        entry first (one naming a record that never came is pruned when read), then the
        record, and only then the delete of the old one. Until the new record exists the
        old token still opens the old record; from the moment it exists its token is what
        the response must carry -- a store error after that point carries it as
        :attr:`StoreError.issued`, so a 503 delivers it too. If the old record was already
        gone (a logout or another regeneration won the race), the new one is undone:
        nothing brings a destroyed session back."""
        # a handle chosen by regenerate() (pending in the updates: a login's) is the new
        # record's; only a session never regenerated needs one made here
        updates, before = session.pending_meta, session.meta
        handle = updates.get("handle") or ids.new_handle()
        if base is None:
            device = info()
            base = self.expiry.new_meta(
                handle, now, user_agent=device.user_agent, client_ip=device.client_ip
            )
        else:
            base = base.with_changes(handle=handle, version=1)
        meta = self._next_meta(base, updates, now, info)
        if is_binding(base.device) and not is_binding(meta.device) and not updates.get("fresh"):
            meta = meta.with_changes(device=base.device)  # (as every store's update keeps it)
        if impersonator_of(meta.auth) is not None:
            from .cookie import revocation

            yield from revocation.hold_impersonation(meta, now)
        session_id = new_session_id()
        key = ids.store_key(session_id)
        data = session.encoded()
        record, indexed = Record(self.cipher.seal(key, data), meta), None
        if meta.user_id:
            indexed = yield CreateIndexed(key, record, meta.user_id)
        else:
            yield Create(key, record)
        kind = "created" if session.meta is None else "regenerated"
        session.mark_committed(session_id, key, meta, data)
        session.take_token_refresh()
        action = self._token(session_id, meta, now)
        try:
            replaced = True if replaces is None else (yield Delete(replaces))
        except StoreError as exc:
            exc.issued = action
            raise
        if not replaced:
            assert replaces is not None
            self._lost(session, replaces)
            yield Delete(key)
            return WITHDRAWN
        if before is not None and impersonator_of(before.auth) is not None:
            from .cookie import revocation

            if not (yield from revocation.handed_back(before, meta, now)):
                # the administrator's sessions ended while this request ran: no new one
                security.info("session %s: its impersonator's sessions ended", ids.log_ref(key))
                emit(self.on_event, "revoked", meta=before, reason="impersonator")
                yield Delete(key)
                session.mark_lost()
                return DELETE
        if replaces is not None:
            logger.info("session %s: regenerated", ids.log_ref(replaces))
        emit(self.on_event, kind, meta=meta)
        if "auth" in updates:
            emit_impersonation(self.on_event, before, meta)
        if meta.user_id:
            try:
                cap = self.max_sessions_per_user or MAX_SESSIONS_PER_USER
                yield from cap_flow(meta.user_id, key, now, cap, self.on_event, indexed)
            except StoreError as exc:
                exc.issued = action
                raise
        return action

    def _stored_binding(self, key: str, loaded: Meta, now: float) -> Flow[Meta]:
        """``loaded`` with the device binding the record holds now: a registration (or a
        refresh) may have committed since this request loaded it, and the regenerated
        record must carry it (one more read, only for a logged-in session's regeneration
        with device binding on)."""
        try:
            record = yield Load(key, now)
        except CorruptRecord:
            return loaded
        if record is None or record.meta.device == loaded.device:
            return loaded
        return loaded.with_changes(device=record.meta.device)

    def _next_meta(
        self, meta: Meta, updates: Mapping[str, Any], now: float, info: InfoSource
    ) -> Meta:
        return next_meta(self.expiry, meta, updates, now, info)

    def _lost(self, session: Session, key: str) -> None:
        security.warning(
            "session %s was destroyed or regenerated by another request while this one "
            "ran; its writes are dropped and no token is sent",
            ids.log_ref(key),
        )
        emit(self.on_event, "security", reason="dropped_write", ref=ids.log_ref(key))
        session.mark_lost()

    # -- the user's other sessions -------------------------------------------------------------

    def list_sessions(self, session: Session) -> Flow[list[SessionInfo]]:
        user = session.user_id or ""
        return (yield from list_flow(user, self.clock(), current=session.handle))

    def revoke(self, session: Session, handle: str) -> Flow[bool]:
        user = session.user_id or ""
        return (yield from revoke_flow(user, handle, self.clock(), self.on_event))

    def end_user(self, user_id: str, reason: str) -> Flow[int | None]:
        return (yield from revoke_all_flow(user_id, self.clock(), None, self.on_event, reason))

    def revoke_all(self, session: Session, keep_current: bool) -> Flow[int]:
        keep = session.meta.handle if session.meta is not None else None
        revoked = yield from revoke_all_flow(
            session.user_id or "", self.clock(), keep, self.on_event
        )
        if keep_current:
            # The current session moves to a new ID at commit, keeping user, data and
            # deadline: a thief holding a copy of *this* cookie (the reason to call this
            # after a password change) is logged out too; the old ID then resolves to nothing.
            session.regenerate()
        else:
            session.destroy()
            revoked += 1
        return revoked


AUTH_SLACK = 1.0
"""Seconds between a login's authentication time and its commit's ``created`` that still
count as the same moment (:func:`next_meta`)."""


def next_meta(
    expiry: ExpiryPolicy, meta: Meta, updates: Mapping[str, Any], now: float, info: InfoSource
) -> Meta:
    """The metadata after a commit applies the queued ``updates`` (shared by the cookie
    backend)."""
    if not updates:  # most commits: only "last seen" moves
        return Meta._make((*meta[:2], now, *meta[3:]))
    # (a session's pending_meta is a read-only view: its own copy() costs a sixth of
    # copying it key by key through the mapping protocol)
    changes = updates.copy() if type(updates) is MappingProxyType else dict(updates)
    if changes.pop("fresh", False):  # another user logs in: nothing of the last one's
        meta = expiry.new_meta(meta.handle, now, user_agent=None, client_ip=None)
    if changes.pop("login_device", False):  # a login records the device it happened on
        device = info()
        changes["user_agent"], changes["client_ip"] = device.user_agent, device.client_ip
    absolute = changes.pop("absolute_timeout", None)
    if expiry.ceiling is not None:  # (the assurance level bounds "remember me" too)
        longest_idle, longest = expiry.ceiling
        absolute = None if absolute is None else min(absolute, longest)
        if "idle_timeout" in changes:
            changes["idle_timeout"] = min(changes["idle_timeout"], longest_idle)
    if changes.pop("restart", False):  # a login starts the absolute timeout afresh
        changes["created"] = now
        absolute = absolute or (meta.absolute_deadline - meta.created)
    if absolute is not None:
        start = changes.get("created", meta.created)
        # counted from the authentication, not from a restart that proved nothing
        # (stop_impersonating restarts ``created`` and keeps the administrator's facts,
        # which never move on: so at most AUTH_SLACK is gained, once; a login reads its
        # clock a moment before its commit does; in the commit of a stop itself, ``until``
        # bounds the deadline)
        facts = None if "auth" in changes else AuthFacts.from_json(meta.auth)
        if facts is not None and facts.time < start - AUTH_SLACK:
            start = facts.time
        changes["absolute_deadline"] = start + absolute
    until = changes.pop("until", None)  # (an impersonation: never past the impersonator's)
    if until is None and impersonator_of(changes.get("auth", meta.auth)) is not None:
        until = meta.absolute_deadline  # an impersonation's deadline never moves later
    if until is not None:
        changes["absolute_deadline"] = min(
            changes.get("absolute_deadline", meta.absolute_deadline), until
        )
    changes["last_seen"] = now
    # by position (Meta._replace with keywords: about 16,000 instructions more a login);
    # map() calls pop(name, value) per field in C (a list comprehension: about 150
    # bytecodes a login)
    merged = Meta._make(map(changes.pop, _META_FIELDS, meta))
    if changes:
        raise TypeError(f"unknown metadata fields: {', '.join(sorted(changes))}")
    return merged


_META_FIELDS = Meta._fields
