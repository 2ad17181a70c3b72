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
  ``handle``, ``all``, ``cap``, the one given to :func:`satchel.end_user_sessions`,
  ``session_ended``);
* ``impersonation``: reason ``started`` or ``stopped`` (:func:`satchel.impersonate`), with
  ``user_id`` the user impersonated and ``impersonator`` the administrator. Every event
  about an impersonated session carries its ``impersonator``.

No event carries a raw session ID: at most the public handle and ``ref``, 8 hex digits of
the store key's hash. A hook that raises is logged and ignored; it never breaks a request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import instrumentation
from .auth_facts import impersonator_of
from .log import logger
from .record import Meta


@dataclass(frozen=True, slots=True)
class SessionEvent:
    kind: str
    handle: str | None = None
    user_id: str | None = None
    reason: str | None = None
    ref: str | None = None
    impersonator: str | None = None
    """The administrator acting as ``user_id`` in this session (:func:`satchel.impersonate`)."""


EventHook = Callable[[SessionEvent], None]


def emit(
    hook: EventHook | None, kind: str, meta: Meta | None = None, **details: str | None
) -> None:
    """Hand the event to ``hook`` and to the installed instrument
    (:mod:`satchel.instrumentation`); with neither, nothing is built. ``meta``: the
    session it is about (its handle, user and impersonator)."""
    instrument = instrumentation.installed
    if hook is None and instrument is None:
        return
    if meta is not None:
        about = {"handle": meta.handle, "user_id": meta.user_id}
        details = {**about, "impersonator": impersonator_of(meta.auth), **details}
    event = SessionEvent(kind, **details)
    if instrument is not None:
        _deliver(instrument.event, event, "telemetry")
    if hook is not None:
        _deliver(hook, event, "session event hook")


def emit_impersonation(hook: EventHook | None, before: Meta | None, after: Meta) -> None:
    """The ``impersonation`` event of a commit that changed who impersonates the session's
    user (``before`` and ``after`` it): ``started``, or ``stopped`` (about the user who
    was impersonated)."""
    if hook is None and instrumentation.installed is None:
        return
    was = None if before is None else impersonator_of(before.auth)
    acting = impersonator_of(after.auth)
    if acting is not None and acting != was:
        emit(hook, "impersonation", meta=after, reason="started")
    elif was is not None and acting is None and before is not None:
        emit(hook, "impersonation", handle=after.handle, user_id=before.user_id,
             impersonator=was, reason="stopped")  # fmt: skip


def _deliver(receiver: EventHook, event: SessionEvent, what: str) -> None:
    try:
        receiver(event)
    except Exception:  # an app's hook (or telemetry) must never break a request
        logger.exception("%s failed for %s", what, event.kind)
