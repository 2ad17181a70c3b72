"""The work behind the views and the admin: a user's sessions listed, one revoked, the
others logged out. Each goes through the session engine's flows on its store (the rules
are :mod:`satchel.user_sessions`'), so a revoked session is deleted from the store and
its cookie opens nothing afterwards, and a handle of another user's session never
matches. A store failure is recorded for :class:`~satchel.integrations.django.DeviceMiddleware`,
which answers the 503.

Django's ``login`` stores the user's primary key as text (``_auth_user_id``); the engine
binds the session to that text, so it is the user ID here too (:func:`user_id_of`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .. import missing_framework

try:
    from django.utils.timesince import timesince
    from django.utils.translation import gettext
except ModuleNotFoundError as exc:
    raise missing_framework(exc, "django") from None

from ...device_names import device_label
from ...ops import drive
from ...session import Session
from ...user_sessions import SessionInfo, UserSessions, list_flow
from ..django import end_user_sessions, runtime, satchel_session
from ..django_device import recorded


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _ago(when: datetime) -> str:
    if (datetime.now(UTC) - when).total_seconds() < 60:
        return str(gettext("just now"))
    return str(gettext("%(delta)s ago") % {"delta": timesince(when)})


@dataclass(frozen=True, slots=True)
class Device:
    """One session as a template shows it. ``handle`` is public; the ID never appears."""

    handle: str
    name: str
    """"Chrome on Linux"; the raw user agent (cut) without ua-parser; "Unknown device"."""
    user_agent: str
    client_ip: str | None
    signed_in: datetime
    last_seen: datetime
    expires: datetime
    current: bool
    """The session of the request that asks: "this device"."""
    device_bound: bool

    @property
    def signed_in_ago(self) -> str:
        """ "3 hours ago", "just now" (Django's ``timesince``, translated as Django is)."""
        return _ago(self.signed_in)

    @property
    def last_seen_ago(self) -> str:
        return _ago(self.last_seen)

    @classmethod
    def of(cls, info: SessionInfo) -> Device:
        return cls(
            handle=info.handle,
            name=device_label(info.user_agent),
            user_agent=info.user_agent or "",
            client_ip=info.client_ip,
            signed_in=_when(info.created),
            last_seen=_when(info.last_seen),
            expires=_when(info.expires_at),
            current=info.current,
            device_bound=info.device_bound,
        )


def user_id_of(user: Any) -> str:
    """The user ID the engine files a Django user's sessions under (what ``login`` stores)."""
    return str(user._meta.pk.value_to_string(user))


def _own(request: Any) -> Session | None:
    """The request's satchel session when it is bound to the logged-in user; None
    otherwise (nobody logged in, or a login in this very request: nothing filed yet)."""
    session = satchel_session(request.session)
    if not request.user.is_authenticated or session.user_id != user_id_of(request.user):
        return None
    return session


def of_request(request: Any) -> list[Device]:
    """The logged-in user's sessions, this one first."""
    session = _own(request)
    if session is None:
        return []
    store, engine = runtime()
    with recorded():
        return [Device.of(info) for info in drive(engine.list_sessions(session), store)]


def is_current(request: Any, handle: str) -> bool:
    """Whether ``handle`` names the request's own session."""
    session = _own(request)
    return session is not None and session.handle == handle


def revoke(request: Any, handle: str) -> bool:
    """Revoke one of the logged-in user's other sessions; False when the user has no
    session with that handle (another user's, an ended one, not a handle at all)."""
    session = _own(request)
    if session is None:
        return False
    store, engine = runtime()
    with recorded():
        return drive(engine.revoke(session, handle), store)


def logout_others(request: Any) -> int:
    """End every other session of the logged-in user; this one stays logged in under a
    new ID (a stolen copy of its cookie ends too). How many were ended."""
    session = _own(request)
    if session is None:
        return 0
    store, engine = runtime()
    with recorded():
        ended = drive(engine.revoke_all(session, keep_current=True), store)
    request.session.modified = True  # the new ID is written and sent at the response
    return ended


def _users() -> UserSessions:
    store, engine = runtime()
    return UserSessions(store, clock=engine.clock, on_event=engine.on_event)


def of_user(user: Any, current: str | None = None) -> list[Device]:
    """``user``'s sessions for the admin, most recently seen first (``current``, the
    admin's own session, marked and first)."""
    store, engine = runtime()
    with recorded():
        infos = drive(list_flow(user_id_of(user), engine.clock(), current), store)
    return [Device.of(info) for info in infos]


def revoke_of_user(user: Any, handle: str) -> bool:
    """Revoke ``user``'s session with that handle; False when ``user`` has none."""
    with recorded():
        return _users().revoke(user_id_of(user), handle)


def revoke_all_of_user(user: Any) -> int:
    """End every session of ``user`` (``revoked`` events with reason ``admin``); how many."""
    with recorded():
        return end_user_sessions(user_id_of(user), reason="admin")
