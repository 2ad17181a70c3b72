"""Account lifecycle: end every session of a user from the app's account code.

Call :func:`end_user_sessions` where an account is disabled, deleted, or its credentials
are reset by someone else (an administrator, a recovery flow)::

    def disable_account(user):
        user.active = False
        user.save()
        satchel.end_user_sessions(app, user.id, reason="account_disabled")

Every session of the user ends on every server-side store (one listing of the user's
index, then one delete per session), and on the cookie store with ``revocation_store=``
(a revocation marker: every cookie of the user issued until now is refused). So does
every session where the user acts as someone else (:func:`satchel.impersonate`): the
user's marker is read, and if the user ever impersonated, stamped (one read, one write). Each ended
session raises a ``revoked`` event with ``reason`` (one event without a handle on cookie
sessions, which the server cannot count). For a user's own password change, from one of
their sessions, :func:`satchel.logout_other_devices` keeps the current one (OWASP ASVS
5.0, 7.4.2 and 7.4.3).

``app`` is satchel's ASGI or WSGI middleware, an app that holds it (a Starlette or
FastAPI app given it with ``add_middleware``), a Flask app with ``Satchel(app)``, or a
:class:`~satchel.options.Runtime`. Django: :func:`satchel.integrations.django.end_user_sessions`.
"""

from __future__ import annotations

from typing import Any

from .locate import backend_of
from .ops import adrive, drive


def end_user_sessions(app: Any, user_id: str, *, reason: str = "account") -> int | None:
    """End every session of ``user_id``; how many (None on cookie sessions, which the
    server cannot count). Raises :class:`~satchel.errors.ConfigurationError` on cookie
    sessions without ``revocation_store=``, where nothing could end them."""
    backend = backend_of(app)
    return drive(backend.end_user(user_id, reason), backend.store)


async def aend_user_sessions(app: Any, user_id: str, *, reason: str = "account") -> int | None:
    """:func:`end_user_sessions` for async code."""
    backend = backend_of(app)
    return await adrive(backend.end_user(user_id, reason), backend.store)
