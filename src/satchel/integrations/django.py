"""Django: a session engine on satchel's engine.

    # settings.py
    SESSION_ENGINE = "satchel.integrations.django"
    SATCHEL = {"store": "redis+cluster://node1:7000,node2:7001", "idle_timeout": 1800}

``request.session`` is a Django session over a :class:`satchel.session.Session`, opened and
committed by the same :class:`~satchel.engine.Engine` flows as the ASGI and WSGI paths, so
Django gets their rules: strict loading, per-key commits, no resurrection (a save into a
session another request deleted raises Django's ``UpdateError``, which its middleware turns
into ``SessionInterrupted``), idle and absolute timeouts, ``encrypt_at_rest``,
``max_sessions_per_user`` and ``on_event``. Django's ``login`` (``cycle_key``) is satchel's
regeneration plus the user binding (from ``_auth_user_id``), so the session is listed and
revocable with :class:`satchel.user_sessions.UserSessions`; ``logout`` (``flush``) destroys it.
Django's expiry is enforced on the server (:mod:`.django_expiry`); the settings are read
by :mod:`.django_config`. Django keeps its cookie handling (``SESSION_COOKIE_*``) and
CSRF. Add :class:`DeviceMiddleware` before Django's ``SessionMiddleware``: it records each
session's device and answers a plain 503 when the store fails (:mod:`.django_device`).
Device-bound sessions (``SATCHEL["dbsc"]``) need :class:`SessionMiddleware` in place of
Django's own (:mod:`.django_dbsc`).

A store failure is never Django's ``CreateError``: Django's ``create`` retries that with a
new key, so an outage turned into one would loop for as long as it lasts (every worker at
full CPU). Only :class:`~satchel.errors.KeyCollision` is, and a few collisions in a row are
an error too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from . import missing_framework

try:
    from asgiref.sync import sync_to_async
    from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
except ModuleNotFoundError as exc:
    raise missing_framework(exc, "django") from None

from .. import auth, ids
from ..engine import Engine, drive
from ..errors import ConfigurationError, KeyCollision
from ..guard import Policy, RecentAuth
from ..session import Session
from .django_config import APPLIED, reauth_max_age, runtime
from .django_dbsc import SessionMiddleware
from .django_device import DeviceMiddleware, device, failed, note_logout, recorded
from .django_expiry import UNSET, DjangoExpiry

__all__ = [
    "APPLIED",
    "DeviceMiddleware",
    "SessionMiddleware",
    "SessionStore",
    "end_user_sessions",
    "impersonate",
    "reauthenticate",
    "require_recent_auth",
    "runtime",
    "satchel_session",
    "stop_impersonating",
]


def reauthenticate(request: Any, *, methods: Iterable[str] = (), level: str | None = None) -> None:
    """The user proved who they are again (:func:`satchel.reauthenticate`): call it in the
    re-authentication view once the password (or second factor) checks out. The session
    gets a new key at save, keeps its data, and records the new authentication."""
    session = request.session
    auth.reauthenticate(session.satchel_session, methods=methods, level=level)
    session.modified = True


def impersonate(request: Any, user: Any, *, backend: str | None = None) -> None:
    """The logged-in administrator acts as ``user`` (a Django user object;
    :func:`satchel.impersonate`: who may is the app's check, made first, e.g.
    ``request.user.is_superuser``). The session gets a new key at save and empty data,
    then Django's login keys for ``user`` (``request.user`` is ``user`` from now on);
    Django's ``user_logged_in`` signal is not sent and ``last_login`` is not touched: the
    user did not log in. ``backend``: the authentication backend to record (default: the
    one ``user`` came from, or the only one configured)."""
    auth.impersonate(request.session.satchel_session, str(user.pk))
    _log_in_quietly(request, user, backend)


def stop_impersonating(request: Any, *, backend: str | None = None) -> Any:
    """Back to the administrator's own session without a new login
    (:func:`satchel.stop_impersonating`): a new key at save, empty data, Django's login
    keys for the administrator, who is returned (and is ``request.user``)."""
    from django.contrib.auth import get_user_model

    admin_id = auth.stop_impersonating(request.session.satchel_session)
    admin = get_user_model()._default_manager.get(pk=admin_id)
    _log_in_quietly(request, admin, backend)
    return admin


def _log_in_quietly(request: Any, user: Any, backend: str | None) -> None:
    """What ``django.contrib.auth.login`` writes into the session, without its flush
    (satchel has already started the session over under a new ID) or its signal."""
    from django.conf import settings as django_settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.middleware.csrf import rotate_token

    backend = backend or getattr(user, "backend", None)
    if backend is None:
        backends = list(django_settings.AUTHENTICATION_BACKENDS)
        if len(backends) != 1:
            raise ConfigurationError(
                "several authentication backends are configured: pass backend= (the "
                "dotted path of the one the user comes from)"
            )
        backend = backends[0]
    session = request.session
    session[SESSION_KEY] = user._meta.pk.value_to_string(user)
    session[BACKEND_SESSION_KEY] = backend
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    request.user = user
    rotate_token(request)


def require_recent_auth(
    *,
    max_age: float | None = None,
    level: str | None = None,
    reauth_url: str = "/reauth/",
    allow_impersonation: bool = False,
) -> Callable[[Any], Any]:
    """A view decorator: the user's latest authentication at most ``max_age`` seconds old,
    at ``level`` or stronger; else a browser is sent to ``reauth_url?next=...`` (or to
    ``settings.LOGIN_URL`` when nobody is logged in) and an API client gets 401 JSON
    ``{"error": "reauthentication_required", ...}`` (:class:`satchel.guard.RecentAuth`);
    403 while an administrator impersonates the user, unless ``allow_impersonation``."""
    from django.conf import settings as django_settings
    from django.http import HttpResponse

    needs = RecentAuth(max_age, level, allow_impersonation)

    def decorate(view: Any) -> Any:
        @functools.wraps(view)
        def guarded(request: Any, *args: Any, **kwargs: Any) -> Any:
            resolved = needs.resolved(reauth_max_age())
            reason = resolved.unmet(request.session.satchel_session)
            if reason is None:
                return view(request, *args, **kwargs)
            login_url = str(django_settings.LOGIN_URL)
            policy = Policy.recent_auth(login_url, reauth_url, resolved)
            status, headers, body = policy.refusal(
                request.path, request.META.get("QUERY_STRING", ""),
                request.headers.get("accept", ""), reason,
            )  # fmt: skip
            response = HttpResponse(body, status=status)
            for name, value in [*headers, ("cache-control", "no-store")]:
                response[name] = value
            return response

        return guarded

    return decorate


def end_user_sessions(user_id: str, *, reason: str = "account") -> int:
    """End every session of ``user_id`` (an account disabled, deleted, its password reset
    by an administrator): :func:`satchel.end_user_sessions` on ``settings.SATCHEL``'s store.
    Django's ``user_id`` is ``str(user.pk)``, as :class:`SessionStore` files it."""
    store, engine = runtime()
    ended = drive(engine.end_user(user_id, reason), store)
    return ended or 0


AUTH_USER_KEY = "_auth_user_id"  # django.contrib.auth.SESSION_KEY
_CREATE_ATTEMPTS = 3  # 256-bit keys: even two collisions in a row mean a broken store


class SessionStore(DjangoExpiry, SessionBase):
    """Django's session API over a satchel :class:`~satchel.session.Session`."""

    _session_key: str | None

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        self._satchel = Session()
        self._satchel.use_clock(runtime()[1].clock)  # the times of its authentication facts
        self._loaded = False

    # -- keys: satchel's 256-bit IDs, checked for the exact format before any store access --

    def _validate_session_key(self, key: str | None) -> bool:
        return bool(key) and ids.is_session_id(str(key))

    def _get_new_session_key(self) -> str:
        return ids.new_session_id()

    # -- the satchel session, opened and committed by the engine ------------------------------

    def _engine(self) -> Engine:
        return runtime()[1]

    def _get_session(self, no_load: bool = False) -> Session:
        self.accessed = True
        if not self._loaded:
            if self.session_key is not None and not no_load:
                self.load()
            self._loaded = True
        return self._satchel

    _session = property(_get_session)
    _satchel_session = _get_session

    @property
    def satchel_session(self) -> Session:
        """satchel's session behind Django's (``auth_time``, ``auth_level``, ...)."""
        return self._get_session()

    async def _aget_session(self, no_load: bool = False) -> Session:
        return await sync_to_async(self._get_session)(no_load)

    def _login_pending(self) -> bool:
        user = self._get_session().get(AUTH_USER_KEY)
        return user is not None and str(user) != self._satchel.user_id

    def is_empty(self) -> bool:
        # an expiry choice alone keeps nothing: no record per anonymous request
        return not self._session_key and not self._satchel

    def load(self) -> Session:
        """Open the session the key names. Strict: an unknown, expired or corrupt record is
        never adopted (the key is dropped); a session already open is kept as it is."""
        if self._loaded or self.session_key is None:
            return self._satchel
        if (failure := failed()) is not None:
            raise failure
        store, engine = runtime()
        with recorded():
            drive(engine.open(self._satchel, self.session_key), store)
        self._loaded = True
        if self._satchel.new:
            self._session_key = None
        elif self._satchel.token_refresh_due:
            self.modified = True  # Django re-sends the cookie with the new Max-Age
        return self._satchel

    def exists(self, session_key: str) -> bool:
        if not self._validate_session_key(session_key):
            return False
        if (failure := failed()) is not None:
            raise failure
        store, engine = runtime()
        with recorded():
            return not drive(engine.open(Session(), session_key), store).new

    def create(self) -> None:
        """A new record for the current data (on an open session: its new key, the old
        record deleted); a fresh key after a real key collision, a few times at most."""
        for _ in range(_CREATE_ATTEMPTS):
            try:
                self.save(must_create=True)
            except CreateError:
                continue
            self.modified = True
            return
        raise KeyCollision(f"{_CREATE_ATTEMPTS} session key collisions in a row")

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None and not must_create:
            self.create()
            return
        if failed() is not None:
            return  # the store already failed in this request: the response is the 503
        try:
            with recorded(swallow=True):
                self._commit(self._get_session(), must_create)
        except KeyCollision as exc:
            raise CreateError from exc  # only a real collision: Django tries a new key

    def _commit(self, session: Session, must_create: bool) -> None:
        store, engine = runtime()
        if must_create and not session.new:
            session.regenerate()
        elif must_create:
            session.keep_empty()  # Django's create() stores an empty session too
            if self._expiry_choice is UNSET:
                self._expiry_choice = None  # the defaults, written
        self._apply_expiry(session)
        if self._login_pending():  # a new ID, the user bound, the device recorded
            auth.login(session, str(session[AUTH_USER_KEY]))
        opened = session.id
        drive(engine.commit(session, device, self._get_new_session_key), store)
        if opened is not None and session.id is None:
            raise UpdateError  # another request deleted or regenerated it: never bring it back
        self._session_key = session.id

    def delete(self, session_key: str | None = None) -> None:
        key = session_key or self.session_key
        if key is None or not self._validate_session_key(key) or failed() is not None:
            return  # after a store failure in this request the response is the 503
        current = key == self.session_key
        with recorded(swallow=True):
            store, engine = runtime()
            session = self._get_session() if current else Session()
            if not current:
                drive(engine.open(session, key), store)
            logged_in = session.stored_user_id is not None
            session.destroy()
            drive(engine.commit(session, device), store)
            if current and logged_in:
                note_logout()
        if current:
            self._session_key, self._expiry_choice = None, UNSET

    def clear(self) -> None:
        """Django's ``clear``: no data, no user, the default expiry; the key stays."""
        self._get_session().start_over()
        self._expiry_choice = None
        self.modified = True

    def cycle_key(self) -> None:
        """A new key for the same data (Django's login calls this): satchel's regeneration
        at save, where the old record is deleted only once the new one exists."""
        session = self._get_session()
        if not session.new:
            session.regenerate()
        self.modified = True

    async def acycle_key(self) -> None:
        await sync_to_async(self.cycle_key)()

    async def aflush(self) -> None:
        await sync_to_async(self.flush)()

    @classmethod
    def clear_expired(cls) -> None:
        store, engine = runtime()
        store.purge_expired(engine.clock())


def satchel_session(session: object) -> Session:
    """The satchel session under Django's ``request.session`` (loaded on first access),
    for code that needs satchel's view of it: its public handle, its user, the engine's
    flows (``satchel.integrations.django_devices`` lists and revokes through it)."""
    if not isinstance(session, SessionStore):
        raise ConfigurationError(
            "request.session is not satchel's: set "
            "SESSION_ENGINE = 'satchel.integrations.django' in Django's settings"
        )
    return session._get_session()


def _check_at_start() -> None:
    """Django imports the session engine when it builds its middleware, as the server
    starts (``get_wsgi_application()``, ``get_asgi_application()``, ``runserver``):
    ``settings.SATCHEL`` is checked then, so a typo or an invalid value stops the start
    with a ConfigurationError naming the setting, not the first request with a 500."""
    from django.conf import settings as django_settings

    if django_settings.configured and __name__ == django_settings.SESSION_ENGINE:
        runtime()


_check_at_start()
