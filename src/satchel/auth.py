"""Log users in and out the safe way, and manage a user's sessions from request code.

``login`` and ``logout`` work on any session. The helpers that reach other sessions of the
user (``sessions_of``, ``revoke``, ``logout_everywhere``, ``logout_other_devices``) use the
store of the middleware that loaded the session; each has an ``a``-prefixed twin for async
apps (``await asessions_of(request.session)``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TypeVar

from . import auth_facts, codec, ids
from .auth_facts import AuthFacts
from .errors import (
    ConfigurationError,
    ReauthenticationRequired,
    SessionDataError,
    SessionStateError,
)
from .ops import Flow, adrive, drive
from .request import RequestContext, context_of
from .session import Session
from .user_sessions import SessionInfo

T = TypeVar("T")

MAX_USER_ID_BYTES = 1020
"""The longest user ID (UTF-8 bytes) that every store holds (MariaDB's column)."""


def login(
    session: Session,
    user_id: str,
    *,
    methods: Iterable[str] = (),
    level: str | None = None,
) -> None:
    """Bind ``user_id`` to the session under a new ID (the pre-login ID then resolves to
    nothing), restart its absolute timeout, record the device it logged in from, and
    rotate its CSRF secret (bound to the new handle).

    The data is kept when an anonymous session logs in (a cart filled before signing in)
    and when the same user authenticates again. When the session belongs to *another*
    user, it starts from empty data and default expiry, as Django's ``login`` does: alice
    signing in on bob's browser never sees bob's data, and a logged-in cookie tossed into
    a victim's browser cannot plant values in the victim's session.

    ``methods`` (RFC 8176 ``amr`` values: ``"pwd"``, ``"otp"``, ...) and ``level`` (``"aal1"``,
    ``"aal2"``, ``"aal3"`` or the app's) say how the user authenticated; with the time, they
    are the session's authentication facts (``session.auth_time``, ``auth_level``, ...)."""
    facts_methods, facts_level = auth_facts.checked(methods, level)
    _check_user_id(user_id)
    session._log_in(user_id, facts_methods, facts_level)


def _check_user_id(user_id: object) -> None:
    if not isinstance(user_id, str) or not user_id:
        raise ConfigurationError("user_id must be a non-empty string")
    if user_id.isascii() and "\x00" not in user_id and len(user_id) <= MAX_USER_ID_BYTES:
        return  # the usual ID (ASCII: no surrogates, a byte a character), in C calls only
    codec.check_name(user_id, "user_id")
    if len(user_id.encode("utf-8")) > MAX_USER_ID_BYTES:
        raise SessionDataError(
            f"user_id is {len(user_id.encode('utf-8'))} bytes long; at most "
            f"{MAX_USER_ID_BYTES} fit every store (use the account's ID, not a profile)"
        )


def reauthenticate(
    session: Session, *, methods: Iterable[str] = (), level: str | None = None
) -> None:
    """The logged-in user proved who they are again (a password asked before a sensitive
    action, a step-up to a second factor): the session's authentication facts are replaced
    by these (time now, ``methods``, ``level``: a session never claims more than its latest
    authentication gave it), its ID is regenerated (OWASP ASVS 5.0 7.2.4) and its CSRF
    secret rotated with its handle; the data is kept. Raises
    :class:`~satchel.errors.SessionStateError` when nobody is logged in."""
    checked_methods, checked_level = auth_facts.checked(methods, level)
    if session.user_id is None:
        raise SessionStateError("reauthenticate needs a logged-in session: call login()")
    session.regenerate()
    impersonator = session.impersonator  # (still impersonating: guards still refuse it)
    facts = AuthFacts(session._now(), checked_methods, checked_level, impersonator)
    session.record_authentication(facts)


def impersonate(session: Session, user_id: str) -> None:
    """The logged-in user (an administrator: who may do this is the app's decision, made
    before the call) acts as ``user_id`` ("log in as"). At commit the session gets a new
    ID, starts from empty data (the administrator's data is not shown to, or mixed into,
    the other user's session), is bound to ``user_id`` and records who is impersonating:
    ``session.impersonator``, the ``impersonator`` of events and of
    :class:`~satchel.user_sessions.SessionInfo` (the user's "your sessions" list shows
    it, and the user can revoke it like any other), ``impersonation`` events (reason
    ``started``/``stopped``). Its authentication facts stay the administrator's own; it
    cannot pass :func:`satchel.guard.require_recent_auth` (403, reason ``impersonating``)
    unless that guard allows impersonation, and it ends no later than the
    administrator's session would have. :func:`stop_impersonating` returns to the
    administrator without a new login; :func:`login` ends it too.

    Raises :class:`~satchel.errors.SessionStateError` when nobody is logged in, when the
    session already impersonates someone (stop first), or for the user's own ID."""
    _check_user_id(user_id)
    acting, meta = session.user_id, session.meta
    if acting is None:
        raise SessionStateError("impersonate needs the administrator's logged-in session")
    # (a session logged in by satchel 0.1 has no facts: its login made the record)
    facts = session.auth or AuthFacts(session._now() if meta is None else meta.created)
    if facts.impersonator is not None:
        raise SessionStateError(
            f"this session already acts as {acting!r}: call stop_impersonating() first"
        )
    if user_id == acting:
        raise SessionStateError("a user cannot impersonate themselves")
    _switch_user(session, user_id, replace(facts, impersonator=acting))


def stop_impersonating(session: Session) -> str:
    """Return an impersonating session to the administrator, without a new login: a new
    ID, empty data, the administrator's own authentication facts (as they were: no fresher
    than before), the same absolute deadline. The administrator's user ID. Raises
    :class:`~satchel.errors.SessionStateError` when the session impersonates nobody."""
    facts = session.auth
    impersonator = None if facts is None else facts.impersonator
    if facts is None or impersonator is None:
        raise SessionStateError("this session is not impersonating anyone")
    _switch_user(session, impersonator, replace(facts, impersonator=None))
    return impersonator


def _switch_user(session: Session, user_id: str, facts: AuthFacts) -> None:
    meta = session.meta  # (None: a login earlier in this request, not yet committed)
    session.regenerate()
    session.start_over()
    session.bind_user(user_id, facts, until=None if meta is None else meta.absolute_deadline)


def logout(session: Session) -> None:
    """Destroy the session: the record is deleted and the cookie expired."""
    session.destroy()


def regenerate_on_privilege_change(session: Session) -> None:
    """A new ID for the same user and data, e.g. after sudo-mode or a role change."""
    session.regenerate()


# -- a user's sessions, from request code ------------------------------------------------------
# The backend does the work: a server-side store lists and deletes records; cookie sessions
# answer from the browser's one cookie and revoke through markers. Nothing here asks which.


def _context(session: Session) -> RequestContext:
    ctx = context_of(session)
    if session.user_id is None:
        raise SessionStateError("no user is logged in on this session")
    return ctx


def _sessions_flow(session: Session) -> Flow[list[SessionInfo]]:
    return (yield from _context(session).backend.list_sessions(session))


def _revoke_flow(session: Session, handle: str) -> Flow[bool]:
    ctx = _context(session)
    if not ids.is_handle(handle):
        return False  # refused before any store call: handles have one exact format
    if handle == session.handle:
        session.destroy()  # (a logout: needs no re-authentication)
        return True
    _check_recent(ctx, session)
    return (yield from ctx.backend.revoke(session, handle))


def _revoke_all_flow(session: Session, keep_current: bool) -> Flow[int]:
    ctx = _context(session)
    _check_recent(ctx, session)
    return (yield from ctx.backend.revoke_all(session, keep_current))


def _check_recent(ctx: RequestContext, session: Session) -> None:
    """``reauth_to_end_sessions``: ending other sessions needs a recent authentication
    (OWASP ASVS 5.0 7.5.2), checked before anything changes."""
    limit = ctx.policy.reauth_to_end_sessions
    if limit is not None:
        age = session.auth_age
        if age is None or age > limit or session.impersonator is not None:
            raise ReauthenticationRequired(limit)


def _run(session: Session, flow: Flow[T]) -> T:
    return drive(flow, _context(session).backend.store)


async def _arun(session: Session, flow: Flow[T]) -> T:
    return await adrive(flow, _context(session).backend.store)


def sessions_of(session: Session) -> list[SessionInfo]:
    """The logged-in user's active sessions (this one first, marked ``current``)."""
    return _run(session, _sessions_flow(session))


async def asessions_of(session: Session) -> list[SessionInfo]:
    return await _arun(session, _sessions_flow(session))


def revoke(session: Session, handle: str) -> bool:
    """Revoke one of the logged-in user's sessions by its public handle; other users'
    handles never match."""
    return _run(session, _revoke_flow(session, handle))


async def arevoke(session: Session, handle: str) -> bool:
    return await _arun(session, _revoke_flow(session, handle))


def logout_everywhere(session: Session) -> int:
    """End every session of the user, this one included; how many (always 0 on the
    cookie store, which cannot count them). Cookie sessions need ``revocation_store=``
    for this: without one it raises :class:`~satchel.errors.ConfigurationError`."""
    return _run(session, _revoke_all_flow(session, keep_current=False))


async def alogout_everywhere(session: Session) -> int:
    return await _arun(session, _revoke_all_flow(session, keep_current=False))


def logout_other_devices(session: Session) -> int:
    """End every other session of the user; call it after a password change. This
    session stays logged in, with its data and deadline, under a new ID (a new handle on
    the cookie store), so a stolen copy of its cookie ends too. Cookie sessions need
    ``revocation_store=`` for this: without one it raises
    :class:`~satchel.errors.ConfigurationError`."""
    return _run(session, _revoke_all_flow(session, keep_current=True))


async def alogout_other_devices(session: Session) -> int:
    return await _arun(session, _revoke_all_flow(session, keep_current=True))
