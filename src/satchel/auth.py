"""Log users in and out the safe way, and manage a user's sessions from request code.

``login`` and ``logout`` work on any session. The helpers that reach other sessions of the
user (``sessions_of``, ``revoke``, ``logout_everywhere``, ``logout_other_devices``) use the
store of the middleware that loaded the session; each has an ``a``-prefixed twin for async
apps (``await asessions_of(request.session)``).
"""

from __future__ import annotations

from typing import Any

from . import codec, ids, revocation
from .cookiestore import CookieEngine
from .engine import Flow, adrive, drive
from .errors import ConfigurationError, SessionDataError, SessionStateError
from .session import Session
from .users import SessionInfo, list_flow, revoke_all_flow, revoke_flow

MAX_USER_ID_BYTES = 1020
"""The longest user ID (UTF-8 bytes) that every store holds (MariaDB's column)."""


def login(session: Session, user_id: str) -> None:
    """Bind ``user_id`` to the session under a new ID (the pre-login ID then resolves to
    nothing), restart its absolute timeout, record the device it logged in from, and
    rotate its CSRF secret (bound to the new handle).

    The data is kept when an anonymous session logs in (a cart filled before signing in)
    and when the same user authenticates again. When the session belongs to *another*
    user, it starts from empty data and default expiry, as Django's ``login`` does: alice
    signing in on bob's browser never sees bob's data, and a logged-in cookie tossed into
    a victim's browser cannot plant values in the victim's session."""
    if not isinstance(user_id, str) or not user_id:
        raise ValueError("user_id must be a non-empty string")
    codec.check_name(user_id, "user_id")
    if len(user_id.encode("utf-8")) > MAX_USER_ID_BYTES:
        raise SessionDataError(
            f"user_id is {len(user_id.encode('utf-8'))} bytes long; at most "
            f"{MAX_USER_ID_BYTES} fit every store (use the account's ID, not a profile)"
        )
    previous = session.user_id
    session.regenerate()
    if previous is not None and previous != user_id:
        session._start_over()
    session._update_meta(user_id=user_id, restart=True, device=True)


def logout(session: Session) -> None:
    """Destroy the session: the record is deleted and the cookie expired."""
    session.destroy()


def regenerate_on_privilege_change(session: Session) -> None:
    """A new ID for the same user and data, e.g. after sudo-mode or a role change."""
    session.regenerate()


# -- a user's sessions, from request code ------------------------------------------------------


def _context(session: Session) -> Any:
    ctx = session._context
    if ctx is None:
        raise SessionStateError("this session was not loaded by satchel's middleware")
    if session.user_id is None:
        raise SessionStateError("no user is logged in on this session")
    return ctx


def _sessions_flow(session: Session) -> Flow[list[SessionInfo]]:
    ctx = _context(session)
    now = ctx.engine.clock()
    if isinstance(ctx.engine, CookieEngine):  # the browser holds the others: none to list
        meta = session.meta
        return [SessionInfo.of(meta, meta.handle)] if meta is not None else []
    return (yield from list_flow(session.user_id or "", now, current=session.handle))


def _revoke_flow(session: Session, handle: str) -> Flow[bool]:
    ctx = _context(session)
    now, user = ctx.engine.clock(), session.user_id or ""
    if not ids.is_handle(handle):
        return False  # refused before any store call: handles have one exact format
    if handle == session.handle:
        session.destroy()
        return True
    if isinstance(ctx.engine, CookieEngine):
        if ctx.engine.revocation_store is None:
            return False
        # The browser holds the others: a well-formed handle is listed (capped per user)
        # for as long as the marker lives, since that session's deadline is unknown here.
        yield from revocation.revoke_handle(user, handle, None, now, keep=session.handle)
        return True
    return (yield from revoke_flow(user, handle, now, ctx.engine.on_event))


def _revoke_all_flow(session: Session, keep_current: bool) -> Flow[int]:
    ctx = _context(session)
    now, user = ctx.engine.clock(), session.user_id or ""
    if isinstance(ctx.engine, CookieEngine):
        if ctx.engine.revocation_store is None:
            # The other devices hold their cookies and nothing on the server can deny
            # them: answering 0 would let an app believe a password change logged a thief
            # out. Refused before anything changes, this session included.
            raise ConfigurationError(
                "logging other devices out of cookie sessions needs revocation_store= "
                "(a server-side store for per-user revocation markers); without it a "
                "cookie stays valid until it expires"
            )
        if keep_current:
            # Re-issue this session under a new handle that the epoch spares. Its absolute
            # deadline stays: only a fresh login starts one, or a thief holding a stolen
            # cookie could keep it alive for ever by calling this.
            session.regenerate()
            keep = session.handle
        else:
            session.destroy()
            keep = None
        yield from revocation.revoke_all(user, now, keep)
        return 0
    keep = session.meta.handle if session.meta is not None else None
    revoked = yield from revoke_all_flow(user, now, keep, ctx.engine.on_event)
    if keep_current:
        # The current session moves to a new ID at commit, keeping user, data and
        # deadline: a thief holding a copy of *this* cookie (the reason to call this after
        # a password change) is logged out too; the old ID then resolves to nothing.
        session.regenerate()
    else:
        session.destroy()
        revoked += 1
    return revoked


def _run(session: Session, flow: Flow[Any]) -> Any:
    return drive(flow, _context(session).store)


async def _arun(session: Session, flow: Flow[Any]) -> Any:
    return await adrive(flow, _context(session).store)


def sessions_of(session: Session) -> list[SessionInfo]:
    """The logged-in user's active sessions (this one first, marked ``current``)."""
    return _run(session, _sessions_flow(session))  # type: ignore[no-any-return]


async def asessions_of(session: Session) -> list[SessionInfo]:
    return await _arun(session, _sessions_flow(session))  # type: ignore[no-any-return]


def revoke(session: Session, handle: str) -> bool:
    """Revoke one of the logged-in user's sessions by its public handle; other users'
    handles never match."""
    return _run(session, _revoke_flow(session, handle))  # type: ignore[no-any-return]


async def arevoke(session: Session, handle: str) -> bool:
    return await _arun(session, _revoke_flow(session, handle))  # type: ignore[no-any-return]


def logout_everywhere(session: Session) -> int:
    """End every session of the user, this one included; how many (always 0 on the
    cookie store, which cannot count them). Cookie sessions need ``revocation_store=``
    for this: without one it raises :class:`~satchel.errors.ConfigurationError`."""
    return _run(session, _revoke_all_flow(session, keep_current=False))  # type: ignore[no-any-return]


async def alogout_everywhere(session: Session) -> int:
    return await _arun(session, _revoke_all_flow(session, keep_current=False))  # type: ignore[no-any-return]


def logout_other_devices(session: Session) -> int:
    """End every other session of the user; call it after a password change. This
    session stays logged in, with its data and deadline, under a new ID (a new handle on
    the cookie store), so a stolen copy of its cookie ends too. Cookie sessions need
    ``revocation_store=`` for this: without one it raises
    :class:`~satchel.errors.ConfigurationError`."""
    return _run(session, _revoke_all_flow(session, keep_current=True))  # type: ignore[no-any-return]


async def alogout_other_devices(session: Session) -> int:
    return await _arun(session, _revoke_all_flow(session, keep_current=True))  # type: ignore[no-any-return]


end_other_sessions = logout_other_devices
aend_other_sessions = alogout_other_devices
