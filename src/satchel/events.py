"""Lifecycle and security events, for apps that log or alert.

Pass ``on_event=callable`` to the middleware; it receives a :class:`SessionEvent` for:

* ``created``, ``regenerated``, ``destroyed``;
* ``expired``: reason ``timeout`` when the core saw the session expire, ``not_found`` when a
  correctly signed ID names no record any more (expired in the store, logged out, revoked);
* ``revoked``: reason ``handle``, ``all``, ``cap``, or the one given to
  :func:`satchel.end_user_sessions` (``account`` by default);
* ``security``: reason ``tampered_cookie`` (forged, altered, or made by a retired key),
  ``unknown_session`` (unsigned cookies only: an ID the store never held, possibly
  planted), ``dropped_write``, ``corrupt_record``, ``revoked_cookie``, ``csrf_failure``,
  ``device_key`` (a refresh proof of a device-bound session signed by another key: a
  copied session);
* device-bound sessions (docs/device-binding.md): ``device_bound``, ``device_refreshed``,
  ``device_refused`` (reason ``unverified_request``, ``binding_required``, ``wrong_key``,
  ``stale_challenge``, ``reused_challenge``, ``bad_proof``, ``already_bound``,
  ``too_late``, ``no_session``, ``not_bound``), ``device_unbound`` (reason ``logout``,
  ``handle``, ``all``, ``cap``, ``session_ended``).

No event carries a raw session ID: at most the public handle and ``ref``, 8 hex digits of
the store key's hash. A hook that raises is logged and ignored; it never breaks a request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .log import logger


@dataclass(frozen=True, slots=True)
class SessionEvent:
    kind: str
    handle: str | None = None
    user_id: str | None = None
    reason: str | None = None
    ref: str | None = None


EventHook = Callable[[SessionEvent], None]


def emit(hook: EventHook | None, kind: str, **details: str | None) -> None:
    if hook is None:
        return
    try:
        hook(SessionEvent(kind, **details))
    except Exception:  # an app's hook must never break a request
        logger.exception("session event hook failed for %s", kind)
