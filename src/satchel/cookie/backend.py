"""The session rules for cookie sessions: the :class:`~satchel.backend.Backend` whose
records live in the browser.

A cookie session cannot be deleted on the server. With a revocation store, logout and
revocation write per-user markers there (:mod:`.revocation`); without one, logout leaves a
signed *logout tombstone* cookie in the browser (below), and nothing can stop a stolen
copy before it expires.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import ids, instrumentation
from ..auth_facts import impersonator_of
from ..backend import InfoSource, TokenAction
from ..cookies import TOMBSTONE_SUFFIX, CookieOptions, cookie_values
from ..digests import sha256
from ..engine import next_meta
from ..errors import ConfigurationError, SessionTooLarge
from ..events import EventHook, emit, emit_impersonation
from ..expiry import ExpiryPolicy, is_expired, refresh_due
from ..keyring import Keyring
from ..log import logger, security
from ..ops import Flow, Load
from ..record import Meta
from ..session import Session
from ..stores.base import Store
from ..user_sessions import SessionInfo
from . import revocation
from .format import CookieFormat, Payload, read_payload

__all__ = ["MAX_COOKIE_BYTES", "TOMBSTONE_SUFFIX", "CookieBackend"]

MAX_COOKIE_BYTES = 4096
PURPOSE_LOGOUT = b"satchel/logout-tombstone/v2"  # v2: bound to the user
_TOMBSTONE_AT = re.compile(r"[0-9]{1,16}")
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_new_tuple: Callable[[type[TokenAction], tuple[Any, ...]], TokenAction] = tuple.__new__


class CookieBackend:
    """Cookie sessions, behind the same interface as a server-side store's engine."""

    lists_other_sessions = False

    def __init__(
        self,
        *,
        secret_keys: Sequence[str] | None,
        cookie: CookieOptions,
        expiry: ExpiryPolicy,
        signed: bool = False,
        compress: bool = False,
        revocation_store: Store | None = None,
        clock: Callable[[], float] = time.time,
        on_event: EventHook | None = None,
    ) -> None:
        if not secret_keys:
            raise ConfigurationError(
                "the cookie store needs secret_keys (it encrypts or signs every cookie); "
                "make one with `satchel keygen`"
            )
        self.keyring: Keyring | None = Keyring(secret_keys)
        self._keyring = self.keyring
        self.cookie, self.expiry, self.clock, self.on_event = cookie, expiry, clock, on_event
        self.format = CookieFormat(self._keyring, cookie.name, signed, compress)
        self.revocation_store = revocation_store
        self._tombstone_name = cookie.name + TOMBSTONE_SUFFIX
        if revocation_store is None:
            logger.warning(
                "cookie sessions without a revocation store: logout cannot stop a stolen "
                "cookie, which stays valid until it expires; pass revocation_store="
            )

    @property
    def store(self) -> Store | None:
        return self.revocation_store

    # -- reading ---------------------------------------------------------------------------------

    def encode(self, data: dict[str, str], meta: Meta) -> str:
        return self.format.encode(data, meta)

    def decode(self, value: str) -> Payload | None:
        """The authenticated payload of a cookie value, or None for anything else."""
        found = self.format.authentic(value)
        if found is None:
            return None
        payload = read_payload(*found)
        if payload is None:  # authentic, yet unreadable: we wrote it wrong, or a key leaked
            security.warning("cookie session with a corrupt payload discarded")
            emit(self.on_event, "security", reason="corrupt_record")
        return payload

    def read(self, tokens: Sequence[str], cookie_header: str = "") -> tuple[Payload | None, bool]:
        for value in tokens:
            payload = self.decode(value)
            if payload is not None:
                if self._logged_out(payload.meta, cookie_header):
                    return None, False
                return payload, False
        if tokens:  # our cookie was there, and none of its values holds up
            security.warning(
                "cookie session rejected: tampered, malformed or made by a retired key"
            )
            emit(self.on_event, "security", reason="tampered_cookie")
        return None, False

    # -- the logout tombstone (cookie sessions without a revocation store) ---------------------
    # A request in flight during a logout answers after it and would set the logged-in
    # cookie again. Logout therefore also sets a small signed cookie, ``<name>-logout``,
    # holding the logged-out session's login time: a logged-in cookie session *of the same
    # user* that logged in at or before it is no session in this browser. The user is
    # bound by the signature (over a SHA-256 of the user ID, which the cookie does not
    # hold), so a genuine tombstone of one account, tossed into another user's browser
    # from a sibling subdomain, logs nobody else out. It lives as long as the sessions it
    # governs. It needs no server state, and stops only the browser that logged out: a
    # thief's copy of the cookie comes without it (that needs a revocation store).

    def _tombstone_message(self, at: str, user_id: str) -> str:
        user = sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self.cookie.name}.{at}.{user}"

    def _tombstone(self, gone: Meta, now: float) -> tuple[str, int]:
        assert gone.user_id is not None
        at = str(math.ceil(gone.created * 1000))  # ms, rounded up: "at or before" holds
        signature = self._keyring.sign(PURPOSE_LOGOUT, self._tombstone_message(at, gone.user_id))
        lifetime = max(gone.absolute_deadline - now, self.expiry.absolute_timeout)
        return f"{at}.{signature}", math.ceil(lifetime)

    def _logged_out(self, meta: Meta, header: str) -> bool:
        """Whether this browser logged out the logged-in session ``meta`` (or a later one
        of the same login) without a revocation store."""
        if (
            meta.user_id is None
            or self.revocation_store is not None
            or self._tombstone_name not in header  # (most requests: no header split)
        ):
            return False
        for value in cookie_values(header, self._tombstone_name):
            at, _, signature = value.partition(".")
            if (
                _TOMBSTONE_AT.fullmatch(at)
                and _SIGNATURE.fullmatch(signature)
                and self._keyring.verify(
                    PURPOSE_LOGOUT, self._tombstone_message(at, meta.user_id), signature
                )
                and meta.created * 1000 <= int(at)
            ):
                security.info("logged-out cookie session presented again (handle %s)", meta.handle)
                emit(self.on_event, "security", reason="logged_out_cookie", handle=meta.handle)
                return True
        return False

    # -- opening and committing -------------------------------------------------------------------

    def open(
        self, session: Session, ticket: Payload | None, refresh: bool = False
    ) -> Flow[Session]:
        if ticket is None:
            return session
        meta, now = ticket.meta, self.clock()
        if is_expired(meta, now):
            logger.info("cookie session expired")
            return session
        if meta.user_id is not None and self.revocation_store is not None:
            marker = yield Load(revocation.marker_key(meta.user_id), now)
            if not revocation.is_valid(marker, meta):
                security.info("revoked cookie session presented (handle %s)", meta.handle)
                emit(self.on_event, "security", meta=meta, reason="revoked_cookie")
                return session
            if not (yield from revocation.impersonation_valid(meta, now)):
                security.info(
                    "cookie session whose impersonator's sessions ended (handle %s)", meta.handle
                )
                emit(self.on_event, "security", meta=meta, reason="revoked_cookie")
                return session
        try:
            session.restore(meta.handle, meta.handle, ticket.data, meta)
        except ValueError:
            security.warning("cookie session with an undecodable value discarded")
            emit(self.on_event, "security", reason="corrupt_record")
            return session  # (restore decodes every value before it fills anything)
        due = refresh_due(meta, now, self.expiry.refresh_after)
        if due:
            session.mark_seen()
        if refresh or due:
            session.refresh_token()  # last seen lives in the cookie: write it again
        return session

    def commit(self, session: Session, info: InfoSource) -> Flow[TokenAction | None]:
        current = session.meta  # (loads a lazy session first; nothing below changes it)
        now = self.clock()
        destroyed, old_meta = session.take_destroyed()
        marker = None
        if destroyed and old_meta is not None and old_meta.user_id:
            if self.revocation_store is not None:
                yield from revocation.revoke_handle(
                    old_meta.user_id, old_meta.handle, old_meta.absolute_deadline, now
                )
            else:
                marker = self._tombstone(old_meta, now)
        if destroyed:
            emit(self.on_event, "destroyed", meta=old_meta)
        updates = session.pending_meta
        data: dict[str, str] | None = None
        logged_out = bool(destroyed) and old_meta is not None and old_meta.user_id is not None
        if (
            "auth" in updates
            and current is not None  # (a login of a new session, or no markers: nothing
            and self.revocation_store is not None  # to ask, and no flow to make)
            and not (yield from self._authority_held(current, updates, now))
        ):
            security.info("the administrator's sessions ended while this request ran")
            emit(self.on_event, "security", meta=current, reason="revoked_cookie")
            session.mark_lost()
            return TokenAction(None, logout_marker=marker, logout=True)
        if current is None:
            if not session.has_content:
                if not destroyed:
                    return None
                return TokenAction(None, logout_marker=marker, logout=logged_out)
            device = info()
            handle = updates.get("handle") or ids.new_handle()  # (a login chose one)
            base = self.expiry.new_meta(
                handle, now, user_agent=device.user_agent, client_ip=device.client_ip
            )
        elif session.regenerating:
            if current.user_id and self.revocation_store:
                # the same user's session under a new handle: a spare ("log out other
                # devices") follows it; a login by another user carries none over
                same_user = updates.get("user_id", current.user_id) == current.user_id
                yield from revocation.revoke_handle(
                    current.user_id,
                    current.handle,
                    current.absolute_deadline,
                    now,
                    keep=session.handle,
                    successor=session.handle if same_user else None,
                )
            base = current.with_changes(handle=ids.new_handle(), version=1)  # or the pending one
        else:
            refresh = session.take_token_refresh()
            data = session.encoded_if_changed()
            if data is None:
                if not refresh:
                    return None
                data = session.encoded()
            base = current
        meta = next_meta(self.expiry, base, updates, now, info)
        if (
            meta.user_id
            and self.revocation_store
            and (
                current is None
                or session.regenerating
                or meta.user_id != current.user_id
                or meta.absolute_deadline > current.absolute_deadline  # "remember me"
            )
        ):
            # the marker must outlive every session it governs
            yield from revocation.ensure(
                meta.user_id,
                meta.absolute_deadline,
                now,
                login=meta.created == now,
                # a handle this commit made (login, regeneration) cannot be listed yet
                handle=None if current is None or session.regenerating else meta.handle,
            )
            yield from revocation.hold_impersonation(meta, now)
        if data is None:
            data = session.encoded()
        value = self.format.encode(data, meta)
        max_age = int(meta.expires_at - now) if meta.persistent else None
        size = self.cookie.set_header_length(value, max_age)  # (ASCII: a name, base64url)
        if size > MAX_COOKIE_BYTES:
            raise SessionTooLarge(size, MAX_COOKIE_BYTES)
        renewed = current is None or session.regenerating
        session.mark_committed(meta.handle, meta.handle, meta, data)
        session.take_token_refresh()
        # (emit's own test, asked once: with no hook and no instrument, no calls at all)
        if self.on_event is not None or instrumentation.installed is not None:
            if renewed:  # (the events of the server stores)
                emit(self.on_event, "created" if current is None else "regenerated", meta=meta)
            if "auth" in updates:
                emit_impersonation(self.on_event, current, meta)
        # (the tuple made directly: a NamedTuple's own __new__ is a Python function, about
        # 2,500 instructions more)
        return _new_tuple(TokenAction, (value, max_age, marker, False, logged_out))

    def _authority_held(
        self, current: Meta | None, updates: Mapping[str, Any], now: float
    ) -> Flow[bool]:
        """Whether an impersonation starting (or handed back) in this commit still has
        its administrator: the session this request loaded was not ended by ending the
        administrator's sessions while the request ran (the new cookie, issued after that
        epoch, would otherwise be valid)."""
        if current is None or self.revocation_store is None:
            return True
        meta = current.with_changes(
            auth=updates["auth"], user_id=updates.get("user_id", current.user_id)
        )
        admin = impersonator_of(meta.auth)
        if admin is not None and admin == current.user_id != meta.user_id:  # impersonate
            marker = yield Load(revocation.marker_key(admin), now)
            return revocation.is_valid(marker, current)
        return (yield from revocation.handed_back(current, meta, now))

    # -- the user's other sessions: the browser holds them -------------------------------------

    def list_sessions(self, session: Session) -> Flow[list[SessionInfo]]:
        """Only this one: the server holds no list of a user's cookie sessions."""
        meta = session.meta
        return [SessionInfo.of(meta, meta.handle)] if meta is not None else []
        yield  # a flow without a store call

    def revoke(self, session: Session, handle: str) -> Flow[bool]:
        if self.revocation_store is None:
            return False
        # The browser holds the others: a well-formed handle is listed (capped per user)
        # for as long as the marker lives, since that session's deadline is unknown here.
        user = session.user_id or ""
        yield from revocation.revoke_handle(user, handle, None, self.clock(), keep=session.handle)
        return True

    def end_user(self, user_id: str, reason: str) -> Flow[int | None]:
        if self.revocation_store is None:
            raise ConfigurationError(
                "ending a user's cookie sessions needs revocation_store= (a server-side "
                "store for per-user revocation markers); without it a cookie stays valid "
                "until it expires"
            )
        yield from revocation.revoke_all(user_id, self.clock())
        emit(self.on_event, "revoked", user_id=user_id, reason=reason)
        return None  # the browsers hold them: no count

    def revoke_all(self, session: Session, keep_current: bool) -> Flow[int]:
        if self.revocation_store is None:
            # The other devices hold their cookies and nothing on the server can deny
            # them: answering 0 would let an app believe a password change logged a thief
            # out. Refused before anything changes, this session included.
            raise ConfigurationError(
                "logging other devices out of cookie sessions needs revocation_store= "
                "(a server-side store for per-user revocation markers); without it a "
                "cookie stays valid until it expires"
            )
        user = session.user_id or ""
        if keep_current:
            # Re-issue this session under a new handle that the epoch spares. Its absolute
            # deadline stays: only a fresh login starts one, or a thief holding a stolen
            # cookie could keep it alive for ever by calling this.
            session.regenerate()
            keep = session.handle
        else:
            session.destroy()
            keep = None
        yield from revocation.revoke_all(user, self.clock(), keep)
        return 0
