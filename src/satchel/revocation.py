"""Revocation for sessions that live in the browser (the cookie store).

A cookie session cannot be deleted on the server, so logging out needs a small server-side
record per user, kept in any satchel store: the *marker*. It holds

* ``epoch``: sessions of that user created (logged in) at or before this time are revoked
  ("log out everywhere", password change);
* ``h:<handle>``: one logged-out session, until its absolute deadline.

The marker is created at login and must exist for a logged-in cookie session to be valid:
a missing marker (never created, expired, or evicted by Memcached) means revoked, so every
failure fails closed. Each change is a per-key commit, so two devices logging out at once
both stick. The record is keyed like a session, by a SHA-256 (of the user ID here).
"""

from __future__ import annotations

import contextlib
import hashlib

from . import codec
from .engine import Create, Flow, Load, Update
from .errors import StoreError
from .record import Change, Meta, Record

EPOCH = "epoch"
HANDLE_PREFIX = "h:"


def marker_key(user_id: str) -> str:
    return hashlib.sha256(b"satchel/revocation\0" + user_id.encode("utf-8")).hexdigest()


def _marker_meta(now: float, until: float) -> Meta:
    lifetime = max(until - now, 1.0)
    return Meta(
        handle="revocation",
        created=now,
        last_seen=now,
        absolute_deadline=until,
        idle_timeout=lifetime,
    )


def is_valid(marker: Record | None, meta: Meta) -> bool:
    """Whether a logged-in cookie session with ``meta`` survives the user's marker."""
    if marker is None:
        return False  # fail closed: no marker, no session
    epoch = marker.data.get(EPOCH)
    if epoch is not None and meta.created <= codec.decode(epoch):
        return False
    return HANDLE_PREFIX + meta.handle not in marker.data


def ensure(user_id: str, until: float, now: float) -> Flow[None]:
    """At login: make sure the marker exists and lives at least until ``until``."""
    key = marker_key(user_id)
    marker = yield Load(key, now)
    if marker is None:
        with contextlib.suppress(StoreError):  # another login made it at the same moment
            yield Create(key, Record({}, _marker_meta(now, until)))
        return
    if marker.meta.expires_at < until:
        yield Update(key, Change(meta=_marker_meta(marker.meta.created, until)), now)


def revoke_handle(user_id: str, handle: str, until: float, now: float) -> Flow[None]:
    """Log one session out: its handle is denied until its own absolute deadline."""
    key = marker_key(user_id)
    marker = yield Load(key, now)
    if marker is None:
        return  # nothing to do: without a marker every session of the user is invalid
    stale = frozenset(
        name
        for name, value in marker.data.items()
        if name.startswith(HANDLE_PREFIX) and codec.decode(value) <= now
    )
    change = Change(
        meta=marker.meta.with_changes(last_seen=now),
        set={HANDLE_PREFIX + handle: codec.encode(until)},
        delete=stale,
    )
    yield Update(key, change, now)


def revoke_all(user_id: str, now: float) -> Flow[None]:
    """Log the user out everywhere: every cookie session created until now is revoked."""
    key = marker_key(user_id)
    marker = yield Load(key, now)
    if marker is None:
        return
    stale = frozenset(n for n in marker.data if n.startswith(HANDLE_PREFIX))
    change = Change(
        meta=marker.meta.with_changes(last_seen=now), set={EPOCH: codec.encode(now)}, delete=stale
    )
    yield Update(key, change, now)
