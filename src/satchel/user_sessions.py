"""A user's sessions: list them, revoke one, revoke all, revoke all but the current one.

The flows here run against any server-side store's per-user index; their cost grows with
that user's session count, never with the total. Listing exposes each session's public
handle, never its ID, and revoking by handle only reaches sessions of the user named, so
an app that passes the logged-in user cannot revoke anyone else's session.

For request code, :mod:`satchel.auth` wraps these around the current session
(``sessions_of``, ``revoke``, ``logout_everywhere``, ``logout_other_devices``); for an
admin path or a CLI, :class:`UserSessions` takes a store directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from . import ids
from .auth_facts import impersonator_of
from .dbsc.state import DeviceState
from .events import EventHook, emit
from .ops import Delete, Flow, ListUser, adrive, drive
from .record import Meta
from .stores.base import Store


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What a "your sessions" page shows. ``handle`` is public; the ID never appears."""

    handle: str
    user_id: str
    created: float
    last_seen: float
    expires_at: float
    user_agent: str | None
    client_ip: str | None
    current: bool = False
    device_bound: bool = False
    """Bound to the device it started on (DBSC): a copy of its cookies stops working."""
    impersonator: str | None = None
    """The administrator acting as the user in it (:func:`satchel.impersonate`), or None."""

    @classmethod
    def of(cls, meta: Meta, current: str | None = None) -> SessionInfo:
        return cls(
            handle=meta.handle,
            user_id=meta.user_id or "",
            created=meta.created,
            last_seen=meta.last_seen,
            expires_at=meta.expires_at,
            user_agent=meta.user_agent,
            client_ip=meta.client_ip,
            current=meta.handle == current,
            device_bound=meta.device is not None and DeviceState.decode(meta.device).bound,
            impersonator=impersonator_of(meta.auth),
        )


def own_sessions(user_id: str, now: float) -> Flow[list[tuple[str, Meta]]]:
    """The store's listing of ``user_id``'s sessions, keeping only records whose own
    metadata names exactly that user. Defence in depth: an index can hand back a foreign
    record (MariaDB's PAD SPACE collations once made ``"alice "`` list alice's sessions;
    a corrupt or hand-edited index can do the same), and nothing here may show, revoke or
    count another user's session because of it."""
    sessions = yield ListUser(user_id, now)
    return [(key, meta) for key, meta in sessions if meta.user_id == user_id]


INDEX_SLACK = 16
"""How many entries a user's index may hold before a login lists (and so prunes) it.
Below this many, and within the cap, the count the store returns when it files the new
session (an upper bound on the user's live sessions) proves the cap holds: the login
skips the listing, two Redis round trips. Dead entries (each login regenerates, leaving
one) are then pruned by the first login that finds more than this many, or by any
listing, so an index never holds more than this or the user's live sessions plus one."""


def cap_flow(
    user_id: str,
    newest: str,
    now: float,
    cap: int,
    on_event: EventHook | None = None,
    indexed: int | None = None,
) -> Flow[None]:
    """Keep at most ``cap`` sessions of ``user_id`` (``max_sessions_per_user``, at most
    :data:`MAX_SESSIONS_PER_USER`): evict the oldest others than ``newest``. Listing also
    prunes the store's per-user index of sessions that ended, so one user logging in again
    and again cannot grow it (each login regenerates, leaving a dead entry). Run after
    every login, on every path (the Django engine included). ``indexed`` is what the
    store's ``index_add`` returned: when it is within :data:`INDEX_SLACK` and ``cap``, no
    listing is needed."""
    if indexed is not None and indexed <= min(cap, INDEX_SLACK):
        return
    sessions = yield from own_sessions(user_id, now)  # never another's
    excess = len(sessions) - cap
    if excess <= 0:
        return
    others = sorted((m.created, k, m) for k, m in sessions if k != newest)
    for _, key, meta in others[:excess]:
        if (yield Delete(key)):
            ended_by_revocation(on_event, meta, "cap")


def ended_by_revocation(on_event: EventHook | None, meta: Meta, reason: str) -> None:
    """The events of a session ended by revocation: ``revoked``, and ``device_unbound``
    when it was bound to its device."""
    emit(on_event, "revoked", meta=meta, reason=reason)
    if meta.device is not None:
        emit(on_event, "device_unbound", meta=meta, reason=reason)


def list_flow(user_id: str, now: float, current: str | None = None) -> Flow[list[SessionInfo]]:
    sessions = yield from own_sessions(user_id, now)
    infos = [SessionInfo.of(meta, current) for _, meta in sessions]
    return sorted(infos, key=lambda i: (not i.current, -i.last_seen))


def revoke_flow(
    user_id: str, handle: str, now: float, on_event: EventHook | None = None
) -> Flow[bool]:
    """Revoke the session of ``user_id`` whose public handle is ``handle``; False if that
    user has no such session (another user's handle never matches)."""
    if not ids.is_handle(handle):
        return False  # not a handle at all: no store call
    for key, meta in (yield from own_sessions(user_id, now)):
        if meta.handle == handle:
            deleted = yield Delete(key)
            if deleted:
                ended_by_revocation(on_event, meta, "handle")
            return bool(deleted)
    return False


def revoke_all_flow(
    user_id: str,
    now: float,
    keep: str | None = None,
    on_event: EventHook | None = None,
    reason: str = "all",
) -> Flow[int]:
    """Revoke every session of ``user_id`` except the one with handle ``keep``; how many.
    ``reason``: of the ``revoked`` events (``all``, or the app's, e.g. ``account_disabled``)."""
    from .cookie import revocation  # (the cookie package imports this module)

    # the impersonations this user started, filed under the users they act as, end too
    yield from revocation.revoke_all(user_id, now, keep)
    revoked = 0
    for key, meta in (yield from own_sessions(user_id, now)):
        if meta.handle != keep and (yield Delete(key)):
            revoked += 1
            ended_by_revocation(on_event, meta, reason)
    return revoked


class UserSessions:
    """Admin access to users' sessions in a store, sync and async:
    ``UserSessions(store).sessions("alice")``, ``await UserSessions(store).arevoke_all("alice")``.
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        on_event: EventHook | None = None,
    ) -> None:
        self.store, self.clock, self.on_event = store, clock, on_event

    def sessions(self, user_id: str) -> list[SessionInfo]:
        return drive(list_flow(user_id, self.clock()), self.store)

    def revoke(self, user_id: str, handle: str) -> bool:
        return drive(revoke_flow(user_id, handle, self.clock(), self.on_event), self.store)

    def revoke_all(self, user_id: str, keep: str | None = None) -> int:
        flow = revoke_all_flow(user_id, self.clock(), keep, self.on_event)
        return drive(flow, self.store)

    async def asessions(self, user_id: str) -> list[SessionInfo]:
        return await adrive(list_flow(user_id, self.clock()), self.store)

    async def arevoke(self, user_id: str, handle: str) -> bool:
        return await adrive(revoke_flow(user_id, handle, self.clock(), self.on_event), self.store)

    async def arevoke_all(self, user_id: str, keep: str | None = None) -> int:
        flow = revoke_all_flow(user_id, self.clock(), keep, self.on_event)
        return await adrive(flow, self.store)
