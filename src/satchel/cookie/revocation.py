"""Revocation for sessions that live in the browser (the cookie store).

A cookie session cannot be deleted on the server, so logging out needs a small server-side
record per user, kept in any satchel store: the *marker*. A logged-in cookie session is
valid only if

* the marker exists: a missing marker (never created, expired, evicted by Memcached,
  flushed) means revoked, so every failure fails closed;
* the session was logged in at or after the marker's creation time (``meta.created``):
  when a marker is lost and the next login makes a new one, every cookie issued before
  it stays dead, revoked ones included, instead of coming back to life;
* the session was logged in after ``epoch`` ("log out everywhere", "log out other
  devices"), unless it is the one session ``keep`` names (the device that asked to log
  the others out, re-issued under a new handle with its original deadline; ``keep``
  follows that session's later regenerations);
* its handle is not listed as ``h:<handle>`` (one logged-out session, for as long as the
  marker lived when it logged out: every copy of that cookie ends before then).

The marker lives as long as the longest cookie session it governs: its lifetime grows with
every login, "remember me" extension and revocation. At most :data:`MAX_REVOKED_HANDLES`
handles are listed; one more folds them all into the epoch (every session of the user
logged in until then is revoked, except the current one), so a user revoking junk cannot
grow the record. Each change is a per-key commit, so two devices logging out at once both
stick. The record is keyed like a session, by a SHA-256 (of the user ID here).
"""

from __future__ import annotations

from dataclasses import replace

from .. import codec, ids
from ..auth_facts import AuthFacts, impersonator_of
from ..digests import sha256
from ..errors import StoreError
from ..ops import Create, Flow, Load, Update
from ..record import Change, Meta, Record

EPOCH = "epoch"
KEEP = "keep"
HANDLE_PREFIX = "h:"
MAX_REVOKED_HANDLES = 100
"""Logged-out handles one marker lists (about 3.5 KB); past it they fold into the epoch."""


def marker_key(user_id: str) -> str:
    return sha256(b"satchel/revocation\0" + user_id.encode("utf-8")).hexdigest()


def _marker_meta(created: float, until: float) -> Meta:
    return Meta(
        handle="revocation",
        created=created,
        last_seen=created,
        absolute_deadline=until,
        idle_timeout=max(until - created, 1.0),
    )


def _lasting(meta: Meta, until: float, now: float) -> Meta:
    """``meta`` of a marker, seen at ``now`` and living at least until ``until``."""
    until = max(until, meta.expires_at)
    return meta.with_changes(
        last_seen=now, absolute_deadline=until, idle_timeout=max(until - now, 1.0)
    )


def is_valid(marker: Record | None, meta: Meta) -> bool:
    """Whether a logged-in cookie session with ``meta`` survives the user's marker."""
    if marker is None:
        return False  # fail closed: no marker, no session
    if meta.created < marker.meta.created:
        return False  # issued before this marker: the one that knew about it was lost
    epoch = marker.data.get(EPOCH)
    if epoch is not None and meta.created <= codec.decode(epoch):
        keep = marker.data.get(KEEP)
        if keep is None or codec.decode(keep) != meta.handle:
            return False
    return HANDLE_PREFIX + meta.handle not in marker.data


def impersonation_valid(meta: Meta, now: float) -> Flow[bool]:
    """Whether the administrator acting in the session ``meta`` (``Meta.auth`` names an
    impersonator) still holds it. An impersonation runs on the administrator's own
    authentication, so it ends with the administrator's sessions: ending them
    (``end_user_sessions``, "log out everywhere", "log out other devices" from another
    device) writes the administrator's marker, and an impersonation started before that
    is refused, on every store (the session itself is filed under the user it acts as,
    where no listing of the administrator's sessions finds it). True without an
    impersonator (no store call)."""
    impersonator = impersonator_of(meta.auth)
    if impersonator is None:
        return True
    marker = yield Load(marker_key(impersonator), now)
    return is_valid(marker, meta)


def handed_back(before: Meta | None, meta: Meta, now: float) -> Flow[bool]:
    """False when the commit of ``meta`` hands an impersonation (``before``, as this
    request loaded it) back to its administrator (:func:`satchel.stop_impersonating`:
    the same facts without the impersonator) after the administrator's sessions were
    ended, while the request ran. Read after the new session is written: an end that
    stamps the marker later lists the administrator's sessions later too, and finds the
    new one. True for every other commit (no store call)."""
    if before is None or (admin := impersonator_of(before.auth)) is None:
        return True
    facts, old = AuthFacts.from_json(meta.auth), AuthFacts.from_json(before.auth)
    if meta.user_id != admin or old is None or facts != replace(old, impersonator=None):
        return True  # (not a hand-back: a login, say, is a fresh authentication)
    return (yield from impersonation_valid(before, now))


def hold_impersonation(meta: Meta, now: float) -> Flow[None]:
    """Make sure the marker of the administrator acting in ``meta`` exists and outlives
    it (a missing marker refuses the impersonation): when a session starting or carrying
    an impersonation is written under a new handle."""
    impersonator = impersonator_of(meta.auth)
    if impersonator is not None:
        yield from ensure(impersonator, meta.absolute_deadline, now, login=meta.created == now)


def ensure(
    user_id: str, until: float, now: float, login: bool = False, handle: str | None = None
) -> Flow[None]:
    """Make sure the marker exists and lives at least until ``until`` (a session's
    absolute deadline). Called at login (``login=True``: the session was issued at
    ``now``) and whenever a logged-in cookie session's deadline grows.

    If ``handle`` (the session growing) is listed as logged out, its listing grows too: a
    "remember me" request that was already in flight when another copy of the same cookie
    logged out must not outlive the listing that denies it. A logout can also list the
    handle between this flow's read and its write, with the shorter deadline it read: so
    after growing the marker for a ``handle`` (a session that already had it; a login's or
    regeneration's handle is brand new and passes none), the marker is read once more.
    Every interleaving then either keeps the listing as long as the session, or leaves
    the marker itself ending first (every session refused: fail closed)."""
    key = marker_key(user_id)
    marker = yield Load(key, now)
    if marker is None:
        try:
            yield Create(key, Record({}, _marker_meta(now, until)))
            return
        except StoreError:  # another login made it at the same moment: check that one
            marker = yield Load(key, now)
            if marker is None:
                return  # fail closed: the session will not be honoured
    meta = marker.meta
    if login and meta.created > now:  # a concurrent login's clock read later than ours
        meta = meta.with_changes(created=now)
    if meta.expires_at < until:
        meta = _lasting(meta, until, now)
    grow = _grown_listing(marker, handle, until)
    if meta != marker.meta or grow:
        yield Update(key, Change(meta=meta, set=grow), now)
    if handle is not None and meta.expires_at > marker.meta.expires_at:
        again = yield Load(key, now)
        grow = _grown_listing(again, handle, until) if again is not None else {}
        if again is not None and grow:
            yield Update(key, Change(meta=_lasting(again.meta, until, now), set=grow), now)


def _grown_listing(marker: Record, handle: str | None, until: float) -> dict[str, str]:
    """The listing of ``handle`` moved to ``until``, if it is listed for less."""
    if handle is None:
        return {}
    name = HANDLE_PREFIX + handle
    listed = marker.data.get(name)
    if listed is None or codec.decode(listed) >= until:
        return {}
    return {name: codec.encode(until)}


def revoke_handle(
    user_id: str,
    handle: str,
    until: float | None,
    now: float,
    keep: str | None = None,
    successor: str | None = None,
) -> Flow[None]:
    """Log one session out: its handle is denied for as long as the marker lives now
    (at least ``until``, the deadline of the copy that logged out, when known). The
    marker outlives every session it governs, and copies of one cookie can have
    different deadlines (a stolen copy extended by "remember me" lives longer than the
    one that logged out), so only the marker's deadline bounds them all; an entry is
    pruned only once it has passed. Past :data:`MAX_REVOKED_HANDLES`, every session of
    the user logged in until ``now`` is revoked instead, except ``keep`` (the caller's
    current handle).

    ``successor`` is the new handle of a regeneration of ``handle``: if ``handle`` is the
    session "log out other devices" spared, the spare moves to its successor (the old
    handle is listed, so no other copy of it survives)."""
    if not ids.is_handle(handle):
        return  # not a handle satchel made: nothing to write
    key = marker_key(user_id)
    marker = yield Load(key, now)
    if marker is None:
        return  # nothing to do: without a marker every session of the user is invalid
    until = max(until or 0.0, marker.meta.expires_at)
    listed = {
        name
        for name, value in marker.data.items()
        if name.startswith(HANDLE_PREFIX) and codec.decode(value) > now
    }
    stale = frozenset(n for n in marker.data if n.startswith(HANDLE_PREFIX)) - listed
    listed.add(HANDLE_PREFIX + handle)
    if len(listed) > MAX_REVOKED_HANDLES:
        yield from revoke_all(user_id, now, keep, until, marker)
        return
    values = {HANDLE_PREFIX + handle: codec.encode(until)}
    spared = marker.data.get(KEEP)
    if successor is not None and spared is not None and codec.decode(spared) == handle:
        values[KEEP] = codec.encode(successor)
    change = Change(meta=_lasting(marker.meta, until, now), set=values, delete=stale)
    yield Update(key, change, now)


def revoke_all(
    user_id: str,
    now: float,
    keep: str | None = None,
    until: float = 0.0,
    marker: Record | None = None,
) -> Flow[None]:
    """Log the user out everywhere: every cookie session logged in until now is revoked,
    except the one whose handle is ``keep`` (log out the *other* devices)."""
    key = marker_key(user_id)
    if marker is None:
        marker = yield Load(key, now)
        if marker is None:
            return
    stale = frozenset(n for n in marker.data if n.startswith(HANDLE_PREFIX))
    values = {EPOCH: codec.encode(now)}
    if keep is not None:
        values[KEEP] = codec.encode(keep)
    else:
        stale |= {KEEP}
    change = Change(meta=_lasting(marker.meta, until, now), set=values, delete=stale)
    yield Update(key, change, now)
