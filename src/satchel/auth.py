"""Log users in and out the safe way, and manage a user's sessions from request code.

``login`` and ``logout`` work on any session. The helpers that reach other sessions of the
user (``sessions_of``, ``revoke``, ``logout_everywhere``, ``logout_other_devices``) use the
store of the middleware that loaded the session; each has an ``a``-prefixed twin for async
apps (``await asessions_of(request.session)``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from . import auth_facts, codec, ids
from .auth_facts import AuthFacts
from .errors import ConfigurationError, SessionDataError, SessionStateError
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
    if not isinstance(user_id, str) or not user_id:
        raise ConfigurationError("user_id must be a non-empty string")
    codec.check_name(user_id, "user_id")
    if len(user_id.encode("utf-8")) > MAX_USER_ID_BYTES:
        raise SessionDataError(
            f"user_id is {len(user_id.encode('utf-8'))} bytes long; at most "
            f"{MAX_USER_ID_BYTES} fit every store (use the account's ID, not a profile)"
        )
    previous = session.user_id
    session.regenerate()
    if previous is not None and previous != user_id:
        session.start_over()
    session.bind_user(user_id, AuthFacts(session._now(), facts_methods, facts_level))


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
    session.record_authentication(AuthFacts(session._now(), checked_methods, checked_level))


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
    backend = _context(session).backend
    if not ids.is_handle(handle):
        return False  # refused before any store call: handles have one exact format
    if handle == session.handle:
        session.destroy()
        return True
    return (yield from backend.revoke(session, handle))


def _revoke_all_flow(session: Session, keep_current: bool) -> Flow[int]:
    return (yield from _context(session).backend.revoke_all(session, keep_current))


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
